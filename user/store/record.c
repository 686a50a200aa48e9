/* record.c: the VM's source record, kept in the arena block after its tree.
 *
 * A partial update (`imds-loadmap update`) and a declarative apply need the
 * record each loaded VM was compiled from.  It travels in the same arena
 * block as the tree, after it (8-byte aligned) behind a small trailer, so it
 * switches with the tree in the one atomic store of tree_ref: a crash can
 * never leave a tree with another version's record.  Readers of the tree
 * (imdsd) never look past the tree's total_len.
 */
#include "store/store.h"

#include <errno.h>
#include <string.h>

#define RECORD_MAGIC 0x44524d49u /* "IMRD" */

struct record_trailer {
	uint32_t magic;
	uint32_t len; /* bytes of record text that follow */
};

static size_t record_align(size_t n)
{
	return (n + 7) & ~(size_t)7;
}

size_t store_block_len(size_t tree_len, size_t record_len)
{
	return record_align(tree_len) + sizeof(struct record_trailer) + record_len;
}

void store_record_write(void *block, const struct store_image *image)
{
	uint8_t *at = (uint8_t *)block + record_align(image->len);
	struct record_trailer t = { .magic = RECORD_MAGIC, .len = (uint32_t)image->record_len };

	memset((uint8_t *)block + image->len, 0, record_align(image->len) - image->len);
	memcpy(at, &t, sizeof(t));
	if (image->record_len)
		memcpy(at + sizeof(t), image->record, image->record_len);
}

int store_record(const struct store *s, uint32_t slot, const char **text, size_t *len)
{
	const struct imds_vm *r;
	struct tree_view v;
	struct record_trailer t;
	const uint8_t *data;
	uint32_t seq, block_len;
	size_t off;

	if (slot == 0 || slot >= s->max_slots || !store_vm_active(&s->vms[slot]))
		return -ENOENT;
	r = &s->vms[slot];
	data = arena_read_begin(&s->arena, (uint32_t)r->tree_ref, &seq, &block_len);
	if (!data || tree_view_init(&v, data, block_len) < 0)
		return -EINVAL;
	off = record_align(v.len);
	if (off + sizeof(t) > block_len)
		return -ENODATA; /* written by a version that kept no record */
	memcpy(&t, data + off, sizeof(t));
	if (t.magic != RECORD_MAGIC || t.len > block_len - off - sizeof(t))
		return -ENODATA;
	*text = (const char *)data + off + sizeof(t);
	*len = t.len;
	return 0;
}

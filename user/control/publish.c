/* publish.c: carrying a checked plan out.  Deletes come first (they free
 * slots, arena room and the MACs and addresses a record may take over),
 * then each changed VM is compiled, signed and published with one atomic
 * switch (store_put), its canonical record in the same arena block.  A VM
 * whose new MAC or IPv4 is still held by another VM of the plan (two VMs
 * trading addresses) is retried after the others; a true cycle fails. */
#include "control/control.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "compile/compile.h"

static uint8_t publish_binding(const struct vm_desc *vm)
{
	return vm->port[0] ? IMDS_BIND_PINNED : vm->first_use ? IMDS_BIND_FIRST_USE : IMDS_BIND_NONE;
}

/* keep_bindings: the record says nothing of the VM's port, so the port it
 * was bound to at run time stays its own; the pinned port's name, or NULL. */
static const char *publish_kept_port(const struct plan *p, struct store *s, const struct vm_desc *vm)
{
	int slot;

	if (!p->keep_bindings || publish_binding(vm) != IMDS_BIND_NONE)
		return NULL;
	slot = store_find(s, vm->instance_id);
	if (slot < 0 || s->vms[slot].binding != IMDS_BIND_PINNED)
		return NULL;
	return store_port_name(s, (uint32_t)slot);
}

/* Compiles the VM (signed, Last-Modified now) and hands the image and its
 * record to the store. */
static int publish_put(const struct plan *p, struct store *s, const struct identity_key *key,
		       const struct plan_step *st, char *err, size_t errlen)
{
	const struct vm_desc *vm = st->vm;
	const char *kept = publish_kept_port(p, s, vm);
	struct store_vm rec = {
		.ipv4 = vm->ipv4,
		.n_ipv6 = vm->n_ipv6,
		.ipv6_router = vm->ipv6_router,
		.http_tokens = vm->http_tokens,
		.hop_limit = vm->hop_limit,
		.rate_pps = vm->rate_pps,
		.rate_burst = vm->rate_burst,
		.binding = kept ? IMDS_BIND_PINNED : publish_binding(vm),
	};
	struct store_image image = { .record = st->record, .record_len = strlen(st->record) };
	struct tree_meta meta = {
		.last_modified = (uint64_t)time(NULL),
		.http_tokens = vm->http_tokens,
		.hop_limit = vm->hop_limit,
	};
	void *data = NULL;
	int ret;

	snprintf(meta.instance_id, sizeof(meta.instance_id), "%s", vm->instance_id);
	ret = vm_compile_signed(vm, &meta, key, &data, &image.len, err, errlen);
	if (ret)
		return ret;
	snprintf(rec.instance_id, sizeof(rec.instance_id), "%s", vm->instance_id);
	memcpy(rec.mac, vm->mac, sizeof(rec.mac));
	memcpy(rec.ipv6, vm->ipv6, sizeof(rec.ipv6));
	snprintf(rec.port, sizeof(rec.port), "%s", kept ? kept : vm->port);
	image.data = data;
	ret = store_put(s, &rec, &image, err, errlen);
	free(data);
	return ret;
}

/* An unchanged record still says which port the VM is served on: a runtime
 * `bind` or `unbind` since is undone, so the records stay the truth; but
 * with keep_bindings, a record that names no port leaves it alone. */
static void publish_rebind(const struct plan *p, struct store *s, const struct vm_desc *vm)
{
	int slot = store_find(s, vm->instance_id);
	uint8_t binding = publish_binding(vm);
	const char *now;

	if (slot < 0 || (p->keep_bindings && binding == IMDS_BIND_NONE))
		return;
	now = store_port_name(s, (uint32_t)slot);
	if (s->vms[slot].binding == binding && strcmp(now ? now : "", vm->port) == 0)
		return;
	store_set_binding(s, (uint32_t)slot, binding, vm->port);
}

static int publish_deletes(const struct plan *p, struct store *s, size_t *done, struct conf_error *err)
{
	for (size_t i = 0; i < p->n; i++) {
		int ret;

		if (p->steps[i].action != PLAN_DELETE)
			continue;
		ret = store_delete(s, p->steps[i].instance_id);
		if (ret && ret != -ENOENT) {
			snprintf(err->text, sizeof(err->text), "%s: cannot delete: %s", p->steps[i].instance_id,
				 strerror(-ret));
			return ret;
		}
		(*done)++;
	}
	return 0;
}

static int publish_puts(const struct plan *p, struct store *s, const struct identity_key *key, size_t *done,
			struct conf_error *err)
{
	uint8_t *pending = calloc(p->n ? p->n : 1, 1);
	size_t left = 0, progress = 1;
	int ret = 0;

	if (!pending)
		return -ENOMEM;
	for (size_t i = 0; i < p->n; i++) {
		pending[i] = p->steps[i].action == PLAN_ADD || p->steps[i].action == PLAN_UPDATE;
		left += pending[i];
		if (p->steps[i].action == PLAN_UNCHANGED)
			publish_rebind(p, s, p->steps[i].vm);
	}
	/* Each pass publishes what it can; -EEXIST (an address another VM of
	 * the plan still holds) waits for the next pass. */
	while (left && progress) {
		progress = 0;
		for (size_t i = 0; i < p->n; i++) {
			if (!pending[i])
				continue;
			ret = publish_put(p, s, key, &p->steps[i], err->text, sizeof(err->text));
			if (ret && ret != -EEXIST)
				goto out;
			if (ret == 0) {
				pending[i] = 0;
				left--;
				progress++;
				(*done)++;
			}
		}
	}
	ret = left ? -EEXIST : 0;
out:
	free(pending);
	return ret;
}

int plan_execute(const struct plan *p, struct store *s, const struct identity_key *key, struct conf_error *err)
{
	size_t done = 0, changes = (size_t)(p->count[PLAN_ADD] + p->count[PLAN_UPDATE] + p->count[PLAN_DELETE]);
	int ret = publish_deletes(p, s, &done, err);

	if (!ret)
		ret = publish_puts(p, s, key, &done, err);
	if (ret) {
		size_t n = strlen(err->text);

		/* Checked beforehand, so only a system error or an address
		 * cycle gets here. */
		snprintf(err->text + n, sizeof(err->text) - n, " (%zu of %zu changes were made)", done, changes);
	}
	return ret;
}

int control_recover(struct store *s)
{
	struct store_recovery r;
	int ret = store_recover(s, &r);

	if (ret == 0 && (r.pages_reclaimed || r.index_repairs))
		fprintf(stderr,
			"imds-loadmap: recovered from an interrupted change: %u arena pages reclaimed, %d index "
			"entries repaired\n",
			r.pages_reclaimed, r.index_repairs);
	return ret;
}

/* arena.c: page allocator and block seqlock of the shared-memory arena.
 *
 * One writer (imds-loadmap, under the store lock) and any number of lock-free
 * readers in other processes share the memory.  Everything a reader may look
 * at while the writer changes it (bitmap words, block headers) is accessed
 * with __atomic builtins, so the ordering holds on weakly ordered CPUs too,
 * not only on x86.  Readers never trust the header for bounds: they use the
 * size of their own mapping.
 */
#include "store/arena.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define ARENA_BLOCK_HDR sizeof(struct arena_block)

static struct arena_header *arena_hdr(const struct arena *a)
{
	return (struct arena_header *)a->base;
}

static uint32_t arena_total(const struct arena *a)
{
	return (uint32_t)(a->size / IMDS_ARENA_PAGE);
}

static struct arena_block *arena_block_at(const struct arena *a, uint32_t page)
{
	return (struct arena_block *)(a->base + (size_t)page * IMDS_ARENA_PAGE);
}

static bool arena_bit(const struct arena_header *h, uint32_t page)
{
	uint64_t word = __atomic_load_n(&h->bitmap[page / 64], __ATOMIC_RELAXED);

	return (word >> (page % 64)) & 1;
}

/* Marks pages [first, first+n) used or free and keeps used_pages in step.
 * Only the writer calls this; stores are atomic because readers test bits. */
static void arena_mark(struct arena_header *h, uint32_t first, uint32_t n, bool used)
{
	for (uint32_t p = first; p < first + n; p++) {
		uint64_t *w = &h->bitmap[p / 64];
		uint64_t bit = 1ull << (p % 64);
		uint64_t v = __atomic_load_n(w, __ATOMIC_RELAXED);

		__atomic_store_n(w, used ? (v | bit) : (v & ~bit), __ATOMIC_RELAXED);
	}
	h->used_pages = used ? h->used_pages + n : h->used_pages - n;
}

static size_t arena_header_bytes(uint32_t npages)
{
	return sizeof(struct arena_header) + ((size_t)npages + 63) / 64 * 8;
}

uint32_t arena_header_pages(uint32_t npages)
{
	return (uint32_t)((arena_header_bytes(npages) + IMDS_ARENA_PAGE - 1) / IMDS_ARENA_PAGE);
}

/* First fit: the lowest run of `need` free pages (the header's pages are
 * marked in use, so no run includes them). */
static int arena_find_run(const struct arena_header *h, uint32_t total, uint32_t need, uint32_t *first)
{
	uint32_t run = 0;

	for (uint32_t p = 1; p < total; p++) {
		if (p % 64 == 0 && p + 64 <= total && h->bitmap[p / 64] == ~0ull) {
			run = 0;
			p += 63; /* a full word: skip it whole */
			continue;
		}
		if (arena_bit(h, p)) {
			run = 0;
			continue;
		}
		if (++run == need) {
			*first = p + 1 - need;
			return 0;
		}
	}
	return -ENOSPC;
}

static void arena_format(struct arena_header *h, uint32_t npages)
{
	memset(h, 0, arena_header_bytes(npages));
	h->npages = npages;
	h->used_pages = 0;
	for (uint32_t p = 0; p < arena_header_pages(npages); p++)
		h->bitmap[p / 64] |= 1ull << (p % 64); /* the header itself */
	__atomic_store_n(&h->magic, ARENA_MAGIC, __ATOMIC_RELEASE);
}

int arena_attach(struct arena *a, void *base, size_t size)
{
	struct arena_header *h = base;
	uint32_t npages;

	if (!base || size % IMDS_ARENA_PAGE || size > (size_t)ARENA_MAX_PAGES * IMDS_ARENA_PAGE)
		return -EINVAL;
	npages = (uint32_t)(size / IMDS_ARENA_PAGE);
	if (npages < arena_header_pages(npages) + 1)
		return -EINVAL;
	if (__atomic_load_n(&h->magic, __ATOMIC_ACQUIRE) == 0)
		arena_format(h, npages);
	else if (h->magic != ARENA_MAGIC || h->npages != npages)
		return -EINVAL;
	a->base = base;
	a->size = size;
	a->first = arena_header_pages(npages);
	return 0;
}

uint32_t arena_pages_for(size_t len)
{
	/* Larger than any arena; also keeps the arithmetic below from overflowing. */
	if (len > (size_t)ARENA_MAX_PAGES * IMDS_ARENA_PAGE)
		return UINT32_MAX;
	return (uint32_t)((ARENA_BLOCK_HDR + len + IMDS_ARENA_PAGE - 1) / IMDS_ARENA_PAGE);
}

uint32_t arena_free_pages(const struct arena *a)
{
	return arena_total(a) - a->first - arena_hdr(a)->used_pages;
}

size_t arena_used_bytes(const struct arena *a)
{
	return (size_t)arena_hdr(a)->used_pages * IMDS_ARENA_PAGE;
}

/* Claims pages [first, first+need) as a block of `len` bytes for `slot`,
 * its seq odd and different from any value a reader may hold. */
static void arena_alloc_at(struct arena *a, uint32_t first, uint32_t need, uint32_t len, uint32_t slot)
{
	struct arena_block *b = arena_block_at(a, first);
	uint32_t seq;

	/* Odd and different from any value a reader may hold for this page:
	 * a freed block start is already odd, anything else (fresh memory, the
	 * middle of an old block) is moved past. */
	seq = __atomic_load_n(&b->seq, __ATOMIC_RELAXED);
	seq += (seq & 1) ? 2 : 1;
	__atomic_store_n(&b->seq, seq, __ATOMIC_RELAXED);
	/* Pairs with the reader's acquire fence in arena_read_valid: a reader
	 * that sees any later write to this block also sees seq odd. */
	__atomic_thread_fence(__ATOMIC_RELEASE);
	__atomic_store_n(&b->npages, need, __ATOMIC_RELAXED);
	__atomic_store_n(&b->slot, slot, __ATOMIC_RELAXED);
	__atomic_store_n(&b->len, len, __ATOMIC_RELAXED);
	arena_mark(arena_hdr(a), first, need, true);
}

bool arena_plan_fits(const struct arena *a, size_t len)
{
	uint32_t need = arena_pages_for(len), first;

	return need < arena_total(a) && arena_find_run(arena_hdr(a), arena_total(a), need, &first) == 0;
}

int arena_alloc(struct arena *a, size_t len, uint32_t slot, uint32_t *page)
{
	uint32_t need = arena_pages_for(len), first;
	int err;

	if (need >= arena_total(a))
		return -ENOSPC;
	err = arena_find_run(arena_hdr(a), arena_total(a), need, &first);
	if (err)
		return err;
	arena_alloc_at(a, first, need, (uint32_t)len, slot);
	*page = first;
	return 0;
}

void *arena_data(struct arena *a, uint32_t page)
{
	return arena_block_at(a, page) + 1;
}

void arena_publish(struct arena *a, uint32_t page)
{
	struct arena_block *b = arena_block_at(a, page);
	uint32_t seq = __atomic_load_n(&b->seq, __ATOMIC_RELAXED);

	/* Release: the data written since arena_alloc is visible to a reader
	 * whose acquire load sees the even value. */
	if (seq & 1)
		__atomic_store_n(&b->seq, seq + 1, __ATOMIC_RELEASE);
}

void arena_free(struct arena *a, uint32_t page)
{
	struct arena_header *h = arena_hdr(a);
	struct arena_block *b;
	uint32_t seq, n;

	if (page < a->first || page >= arena_total(a) || !arena_bit(h, page))
		return;
	b = arena_block_at(a, page);
	n = b->npages;
	if (n == 0 || n > arena_total(a) - page)
		return; /* not a block start: refuse rather than corrupt */
	seq = __atomic_load_n(&b->seq, __ATOMIC_RELAXED);
	if (!(seq & 1))
		__atomic_store_n(&b->seq, seq + 1, __ATOMIC_RELAXED);
	/* Readers must see the odd seq before the pages can be written again. */
	__atomic_thread_fence(__ATOMIC_RELEASE);
	arena_mark(h, page, n, false);
}

const void *arena_read_begin(const struct arena *a, uint32_t page, uint32_t *seq, uint32_t *len)
{
	uint32_t total = arena_total(a), s, n, l;
	const struct arena_block *b;

	if (page < a->first || page >= total || !arena_bit(arena_hdr(a), page))
		return NULL;
	b = arena_block_at(a, page);
	s = __atomic_load_n(&b->seq, __ATOMIC_ACQUIRE);
	if (s & 1)
		return NULL;
	n = __atomic_load_n(&b->npages, __ATOMIC_RELAXED);
	l = __atomic_load_n(&b->len, __ATOMIC_RELAXED);
	if (n == 0 || n > total - page || l > (uint64_t)n * IMDS_ARENA_PAGE - ARENA_BLOCK_HDR)
		return NULL;
	*seq = s;
	*len = l;
	return b + 1;
}

bool arena_read_valid(const struct arena *a, uint32_t page, uint32_t seq)
{
	const struct arena_block *b;

	if (page < a->first || page >= arena_total(a))
		return false;
	b = arena_block_at(a, page);
	/* Orders the reader's data loads before the second look at seq. */
	__atomic_thread_fence(__ATOMIC_ACQUIRE);
	return __atomic_load_n(&b->seq, __ATOMIC_RELAXED) == seq;
}

int arena_plan_init(const struct arena *a, struct arena_plan *p)
{
	size_t bytes = arena_header_bytes(arena_total(a));

	p->hdr = malloc(bytes);
	if (!p->hdr)
		return -ENOMEM;
	memcpy(p->hdr, arena_hdr(a), bytes);
	p->hdr->npages = arena_total(a);
	p->first = a->first;
	return 0;
}

void arena_plan_release(struct arena_plan *p)
{
	free(p->hdr);
	p->hdr = NULL;
}

int arena_plan_alloc(struct arena_plan *p, size_t len)
{
	uint32_t need = arena_pages_for(len), first;
	int err;

	if (need >= p->hdr->npages)
		return -ENOSPC;
	err = arena_find_run(p->hdr, p->hdr->npages, need, &first);
	if (err)
		return err;
	arena_mark(p->hdr, first, need, true);
	return 0;
}

void arena_plan_free(struct arena_plan *p, const struct arena *a, uint32_t page)
{
	uint32_t n;

	if (page < a->first || page >= arena_total(a) || !arena_bit(p->hdr, page))
		return;
	n = arena_block_at(a, page)->npages;
	if (n == 0 || n > arena_total(a) - page)
		return;
	arena_mark(p->hdr, page, n, false);
}

uint32_t arena_total_pages(const struct arena *a)
{
	return arena_total(a);
}

bool arena_page_used(const struct arena *a, uint32_t page)
{
	return page < arena_total(a) && arena_bit(arena_hdr(a), page);
}

int arena_block_info(const struct arena *a, uint32_t page, struct arena_block *out)
{
	const struct arena_block *b;

	if (page < a->first || !arena_page_used(a, page))
		return -EINVAL;
	b = arena_block_at(a, page);
	out->seq = __atomic_load_n(&b->seq, __ATOMIC_ACQUIRE);
	out->npages = b->npages;
	out->slot = b->slot;
	out->len = b->len;
	if (out->npages == 0 || out->npages > arena_total(a) - page ||
	    out->len > (uint64_t)out->npages * IMDS_ARENA_PAGE - ARENA_BLOCK_HDR)
		return -EINVAL;
	return 0;
}

uint32_t arena_bitmap_pages(const struct arena *a)
{
	uint32_t n = 0;

	for (uint32_t p = a->first; p < arena_total(a); p++)
		n += arena_bit(arena_hdr(a), p);
	return n;
}

uint32_t arena_counted_pages(const struct arena *a)
{
	return arena_hdr(a)->used_pages;
}

uint32_t arena_reclaim(struct arena *a, const uint8_t *owned)
{
	struct arena_header *h = arena_hdr(a);
	uint32_t freed = 0;

	for (uint32_t p = a->first; p < arena_total(a); p++) {
		if (!arena_bit(h, p) || owned[p])
			continue;
		arena_mark(h, p, 1, false);
		freed++;
	}
	h->used_pages = arena_bitmap_pages(a);
	return freed;
}

uint32_t arena_largest_free_run(const struct arena *a)
{
	uint32_t best = 0, run = 0;

	for (uint32_t p = 1; p < arena_total(a); p++) {
		run = arena_bit(arena_hdr(a), p) ? 0 : run + 1;
		if (run > best)
			best = run;
	}
	return best;
}

/* Block starts from the header up; *n of them, malloc'ed. */
static uint32_t *arena_block_starts(const struct arena *a, uint32_t *n)
{
	uint32_t total = arena_total(a), *starts = malloc(sizeof(*starts) * (total - a->first));
	struct arena_block b;

	*n = 0;
	for (uint32_t p = a->first; starts && p < total;) {
		if (arena_block_info(a, p, &b) < 0) {
			p++;
			continue;
		}
		starts[(*n)++] = p;
		p += b.npages;
	}
	return starts;
}

/* The window of `need` pages whose emptying moves the fewest pages: it
 * starts at a block start or just after a block, and every block reaching
 * into it must move.  *first and the pages to move, or UINT32_MAX. */
static uint32_t arena_cheapest_window(const struct arena *a, const uint32_t *starts, uint32_t n, uint32_t need,
				      uint32_t *first)
{
	uint32_t total = arena_total(a), best = UINT32_MAX, largest = arena_largest_free_run(a);

	for (uint32_t k = 0; k <= n; k++) {
		/* Windows starting at block k's start, and right after block k-1. */
		uint32_t cands[2] = { k < n ? starts[k] : total,
				      k ? starts[k - 1] + arena_block_at(a, starts[k - 1])->npages : a->first };

		for (int c = 0; c < 2; c++) {
			uint32_t x = cands[c], cost = 0;

			if (x < a->first || (uint64_t)x + need > total)
				continue;
			for (uint32_t j = k ? k - 1 : 0; j < n && starts[j] < x + need && cost < best; j++) {
				uint32_t np = arena_block_at(a, starts[j])->npages;

				/* A block longer than any free run cannot move. */
				if (starts[j] + np > x)
					cost = np > largest ? UINT32_MAX : cost + np;
			}
			if (cost < best) {
				best = cost;
				*first = x;
			}
		}
	}
	return best;
}

/* Marks the free pages of [x, x+n) used (reserve) or free again. */
static void arena_reserve(struct arena *a, uint32_t x, uint32_t n, bool reserve, uint8_t *was_free)
{
	for (uint32_t p = x; p < x + n; p++) {
		if (reserve)
			was_free[p - x] = !arena_bit(arena_hdr(a), p);
		if (was_free[p - x])
			arena_mark(arena_hdr(a), p, 1, reserve);
	}
}

int arena_relocation(struct arena *a, uint32_t need, uint32_t *from, uint32_t *to)
{
	uint32_t n, x = 0, dest, *starts = arena_block_starts(a, &n);
	uint8_t *was_free = malloc(need ? need : 1);
	int ret = -ENOENT;

	if (!starts || !was_free) {
		ret = -ENOMEM;
		goto out;
	}
	if (arena_cheapest_window(a, starts, n, need, &x) == UINT32_MAX)
		goto out;
	/* One block reaching into the window moves to a run outside it,
	 * never overlapping its old place, so its readers never see it
	 * change; the caller calls again until the window is empty. */
	arena_reserve(a, x, need, true, was_free);
	for (uint32_t k = 0; k < n && ret; k++) {
		const struct arena_block *old = arena_block_at(a, starts[k]);

		if (starts[k] >= x + need || starts[k] + old->npages <= x)
			continue;
		if (arena_find_run(arena_hdr(a), arena_total(a), old->npages, &dest) < 0)
			break;
		arena_alloc_at(a, dest, old->npages, old->len, old->slot);
		*from = starts[k];
		*to = dest;
		ret = 0;
	}
	arena_reserve(a, x, need, false, was_free);
out:
	free(starts);
	free(was_free);
	return ret;
}

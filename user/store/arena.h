/* arena.h: the shared-memory arena that holds compiled trees.
 *
 * The arena is the mmap of the pinned `arena` map (IMDS_ARENA_PAGES pages).
 * Page 0 holds struct arena_header (allocation bitmap); each allocation is a
 * run of whole pages starting with struct arena_block.  imds-loadmap is the
 * only writer (it holds the store lock); any number of imdsd workers read
 * in place without locks, using the block's seq as a seqlock:
 *   writer: seq odd while the block is being written or after it is freed,
 *           even once published;
 *   reader: s1 = seq (retry if odd); use the data; s2 = seq; valid iff s1 == s2.
 * The same code runs over a malloc'ed buffer in unit tests.
 */
#ifndef IMDS_ARENA_H
#define IMDS_ARENA_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "imds.h"

#define ARENA_MAGIC 0x41444d49u /* "IMDA" */

/* The header takes the first page, or as many as its bitmap needs (an
 * arena of up to 32,640 pages, 127.5 MiB, has a one-page header, so a
 * store made before arenas were sized reads the same). */
struct arena_header {
	uint32_t magic;
	uint32_t npages;
	uint32_t used_pages; /* allocated pages, the header's not counted */
	uint32_t pad;
	uint64_t bitmap[]; /* one bit per page, set = in use; the header's pages are set */
};
_Static_assert(sizeof(struct arena_header) == 16, "arena_header layout");
/* The most pages an arena may have: tree_ref keeps a page in 32 bits. */
#define ARENA_MAX_PAGES (1u << 24) /* 64 GiB */

struct arena_block {
	uint32_t seq;	 /* seqlock, see above */
	uint32_t npages; /* pages in this allocation */
	uint32_t slot;	 /* owning VM slot */
	uint32_t len;	 /* bytes of data after this header */
};
_Static_assert(sizeof(struct arena_block) == 16, "arena_block layout");

struct arena {
	uint8_t *base;
	size_t size;	 /* bytes; a multiple of IMDS_ARENA_PAGE */
	uint32_t first; /* the first page after the header: blocks start at or after it */
};

/* Pages the header of an arena of npages takes. */
uint32_t arena_header_pages(uint32_t npages);

/* Attaches to memory; formats the header if it has no magic yet.
 * -EINVAL if size is not a multiple of the page size or too small. */
int arena_attach(struct arena *a, void *base, size_t size);

/* Writer side.  arena_alloc finds `len` bytes (plus header) of free pages,
 * marks them used and returns the first page with the block's seq odd and
 * its data ready to write.  -ENOSPC when no run of pages is free. */
int arena_alloc(struct arena *a, size_t len, uint32_t slot, uint32_t *page);
void *arena_data(struct arena *a, uint32_t page);
void arena_publish(struct arena *a, uint32_t page);
void arena_free(struct arena *a, uint32_t page);
size_t arena_used_bytes(const struct arena *a);

/* Reader side.  Returns the data of a published block and its seq, or NULL
 * if `page` is out of range, free, or being written. */
const void *arena_read_begin(const struct arena *a, uint32_t page, uint32_t *seq, uint32_t *len);
bool arena_read_valid(const struct arena *a, uint32_t page, uint32_t seq);

/* True if a block of `len` bytes finds a run now (nothing is changed). */
bool arena_plan_fits(const struct arena *a, size_t len);
/* Pages an allocation of `len` data bytes takes (header included). */
uint32_t arena_pages_for(size_t len);
/* Pages not yet allocated (the header's excluded). */
uint32_t arena_free_pages(const struct arena *a);

/* --- consistency (the store's fsck and recovery) --- */
uint32_t arena_total_pages(const struct arena *a);
bool arena_page_used(const struct arena *a, uint32_t page);
/* The header of the block starting at `page`: 0, or -EINVAL when the page
 * is not in use or its header does not describe a run inside the arena. */
int arena_block_info(const struct arena *a, uint32_t page, struct arena_block *out);
/* Writer, under the store lock: frees every page in use whose owned[page] is
 * 0 (pages of a writer killed between allocating and switching, or between
 * switching and freeing) and recounts used_pages from the bitmap.  The
 * number of pages freed. */
uint32_t arena_reclaim(struct arena *a, const uint8_t *owned);
/* used_pages as the header says it, and as the bitmap says it. */
uint32_t arena_counted_pages(const struct arena *a);
uint32_t arena_bitmap_pages(const struct arena *a);
/* The longest run of free pages: the largest tree that fits now. */
uint32_t arena_largest_free_run(const struct arena *a);

/* --- compaction (docs/control-plane.md, "Fragmentation") --- */
/* One step of compaction, for a block of `need` pages that finds no run
 * although enough pages are free: of the windows of `need` pages, the one
 * whose blocks are the fewest pages to move is chosen, and one block
 * reaching into it gets a new block outside it (first fit), allocated like
 * arena_alloc (seq odd, same length and slot).  The caller copies the data,
 * publishes the new block, points its owner at it, frees the old one and
 * calls again until the run exists.  0 with *from and *to, -ENOENT when no
 * block can move, -ENOMEM. */
int arena_relocation(struct arena *a, uint32_t need, uint32_t *from, uint32_t *to);
/* The most blocks one allocation moves: compaction is bounded, so a change
 * that does not fit after it is refused rather than moving trees for ever. */
#define ARENA_COMPACT_MOVES 64

/* A dry run of allocations on a copy of the bitmap, so the control plane can
 * check that a whole batch of trees fits (first fit, fragmentation included)
 * before it changes anything. */
struct arena_plan {
	struct arena_header *hdr; /* a copy of the header and its bitmap */
	uint32_t first;
};
/* 0 or -ENOMEM; release it with arena_plan_release. */
int arena_plan_init(const struct arena *a, struct arena_plan *p);
void arena_plan_release(struct arena_plan *p);
/* 0 or -ENOSPC, exactly as arena_alloc would answer at this point. */
int arena_plan_alloc(struct arena_plan *p, size_t len);
/* Frees, in the plan, the block that starts at `page` in the real arena. */
void arena_plan_free(struct arena_plan *p, const struct arena *a, uint32_t page);

#endif

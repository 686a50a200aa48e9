/* bench_arena.c: fragmentation of the arena under a long run of random
 * updates (issue 13; docs/performance.md, "Arena fragmentation").
 *
 * VMS VMs of mixed sizes live in an arena of PAGES pages; each update gives
 * a random VM a tree of a new random size exactly as the store does: the
 * new block allocated first (first fit), then the old one freed; when no
 * run fits although enough pages are free, the store compacts (empties the
 * cheapest window of that size, arena_relocation) and tries again, and so
 * does this.
 *
 * Every SAMPLE updates it measures how much of the free space is usable:
 * on a copy of the allocation bitmap (arena_plan) it adds trees of the same
 * mix of sizes, first fit, skipping a size that does not fit, until 64
 * sizes in a row did not fit; the pages so placed, against the free pages
 * (the ideal: what a perfect allocator could hand out), is the ratio.  It
 * prints the worst and the mean ratio, and the compaction the updates
 * needed.  A benchmark, not a test: nothing is timed or asserted.
 *
 *   bench_arena [UPDATES [VMS [PAGES [SEED]]]]   (1000000 1000 16384 1)
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "store/arena.h"

#define SAMPLE 10000
#define FILL_MISSES 64

/* Tree sizes in pages, a host's mix: most VMs are small EC2 records (2-3
 * pages), some carry flavors, keys or larger user-data, a few the most
 * user-data a VM may have (1 MiB, about 260 pages). */
static const struct {
	int percent;
	uint32_t min, max;
} mix[] = { { 60, 2, 3 }, { 25, 4, 8 }, { 10, 9, 32 }, { 4, 33, 128 }, { 1, 129, 260 } };

static uint64_t rng_state;
static long moves, moved_pages;

static uint32_t rng(void)
{
	rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
	return (uint32_t)(rng_state >> 33);
}

static uint32_t random_pages(void)
{
	int roll = (int)(rng() % 100);

	for (size_t i = 0; i < sizeof(mix) / sizeof(mix[0]); i++) {
		if (roll < mix[i].percent)
			return mix[i].min + rng() % (mix[i].max - mix[i].min + 1);
		roll -= mix[i].percent;
	}
	return mix[0].min;
}

static size_t bytes_for(uint32_t pages)
{
	return (size_t)pages * IMDS_ARENA_PAGE - sizeof(struct arena_block);
}

/* What the store does to move a block (store_compact): copy, publish,
 * point the owner at the copy, free the old block. */
static bool relocate_one(struct arena *a, uint32_t need, uint32_t *at)
{
	uint32_t from, to;
	const struct arena_block *b;

	if (arena_relocation(a, need, &from, &to))
		return false;
	b = (const struct arena_block *)(a->base + (size_t)from * IMDS_ARENA_PAGE);
	memcpy(arena_data(a, to), arena_data(a, from), b->len);
	arena_publish(a, to);
	at[b->slot - 1] = to;
	moves++;
	moved_pages += b->npages;
	arena_free(a, from);
	return true;
}

/* Pages of the mix that still fit, on a copy of the bitmap. */
static uint32_t fill_pages(const struct arena *a)
{
	struct arena_plan plan;
	uint32_t placed = 0;
	int misses = 0;

	if (arena_plan_init(a, &plan))
		return 0;
	while (misses < FILL_MISSES) {
		uint32_t pages = random_pages();

		if (arena_plan_alloc(&plan, bytes_for(pages)) == 0) {
			placed += pages;
			misses = 0;
		} else {
			misses++;
		}
	}
	arena_plan_release(&plan);
	return placed;
}

int main(int argc, char **argv)
{
	long updates = argc > 1 ? atol(argv[1]) : 1000000;
	uint32_t vms = argc > 2 ? (uint32_t)atol(argv[2]) : 1000;
	uint32_t pages = argc > 3 ? (uint32_t)atol(argv[3]) : 16384;
	size_t size = (size_t)pages * IMDS_ARENA_PAGE;
	uint32_t *at = calloc(vms, sizeof(*at));
	void *mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	double worst = 1.0, sum = 0;
	long samples = 0, compacted = 0, refused = 0;
	struct arena a;
	clock_t t0;

	rng_state = argc > 4 ? (uint64_t)atoll(argv[4]) : 1;
	if (!at || mem == MAP_FAILED || arena_attach(&a, mem, size)) {
		fprintf(stderr, "bench_arena: cannot set up an arena of %u pages\n", pages);
		return 1;
	}
	for (uint32_t v = 0; v < vms; v++)
		if (arena_alloc(&a, bytes_for(random_pages()), v + 1, &at[v])) {
			fprintf(stderr, "bench_arena: %u VMs do not fit in %u pages\n", vms, pages);
			return 1;
		}
	t0 = clock();
	for (long i = 1; i <= updates; i++) {
		uint32_t v = rng() % vms, need = random_pages(), page;
		int ret = arena_alloc(&a, bytes_for(need), v + 1, &page);

		if (ret && arena_free_pages(&a) >= need)
			compacted++;
		for (int k = 0; ret && k < ARENA_COMPACT_MOVES && arena_free_pages(&a) >= need && relocate_one(&a, need, at);
		     k++)
			ret = arena_alloc(&a, bytes_for(need), v + 1, &page);
		if (ret == 0) {
			arena_free(&a, at[v]);
			at[v] = page;
		} else {
			refused++;
		}
		if (i % SAMPLE == 0) {
			uint32_t free_pages = arena_free_pages(&a);
			double ratio = free_pages ? (double)fill_pages(&a) / free_pages : 1.0;

			worst = ratio < worst ? ratio : worst;
			sum += ratio;
			samples++;
		}
	}
	printf("updates %ld, VMs %u, arena %u pages (%zu MiB), in use at the end %u pages\n", updates, vms, pages,
	       size >> 20, pages - a.first - arena_free_pages(&a));
	printf("usable free / ideal free: worst %.3f, mean %.3f over %ld samples\n", worst,
	       samples ? sum / samples : 1.0, samples);
	printf("updates that needed compaction %ld, refused %ld; blocks moved %ld (%ld pages)\n", compacted, refused,
	       moves, moved_pages);
	printf("cpu %.2f s\n", (double)(clock() - t0) / CLOCKS_PER_SEC);
	return 0;
}

/* test_arena.c: the arena allocator and its block seqlock, over malloc'ed
 * memory instead of the mmap'ed map. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <cmocka.h>

#include "store/arena.h"

#define TEST_PAGES 32

struct fixture {
	void *mem;
	struct arena a;
};

static int setup_pages(void **state, size_t npages)
{
	struct fixture *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	f->mem = aligned_alloc(IMDS_ARENA_PAGE, npages * IMDS_ARENA_PAGE);
	assert_non_null(f->mem);
	memset(f->mem, 0, npages * IMDS_ARENA_PAGE);
	assert_int_equal(arena_attach(&f->a, f->mem, npages * IMDS_ARENA_PAGE), 0);
	*state = f;
	return 0;
}

static int setup(void **state)
{
	return setup_pages(state, TEST_PAGES);
}

static int setup_200(void **state)
{
	return setup_pages(state, 200);
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	free(f->mem);
	free(f);
	return 0;
}

/* Allocates `len` bytes, fills them with `fill` and publishes. */
static uint32_t put(struct arena *a, size_t len, uint8_t fill)
{
	uint32_t page = 0;

	assert_int_equal(arena_alloc(a, len, 7, &page), 0);
	memset(arena_data(a, page), fill, len);
	arena_publish(a, page);
	return page;
}

static void test_attach_formats_and_validates(void **state)
{
	struct fixture *f = *state;
	struct arena_header *h = f->mem;
	struct arena b;

	assert_int_equal(h->magic, ARENA_MAGIC);
	assert_int_equal(h->npages, TEST_PAGES);
	assert_int_equal(arena_used_bytes(&f->a), 0);
	assert_int_equal(arena_free_pages(&f->a), TEST_PAGES - 1);
	assert_int_equal(arena_attach(&b, f->mem, 100), -EINVAL);
	assert_int_equal(arena_attach(&b, f->mem, IMDS_ARENA_PAGE), -EINVAL);
	/* An existing arena is attached as is, not reformatted. */
	put(&f->a, 10, 1);
	assert_int_equal(arena_attach(&b, f->mem, TEST_PAGES * IMDS_ARENA_PAGE), 0);
	assert_int_equal(arena_used_bytes(&b), IMDS_ARENA_PAGE);
	/* A header for another size or with a foreign magic is refused. */
	assert_int_equal(arena_attach(&b, f->mem, (TEST_PAGES - 1) * IMDS_ARENA_PAGE), -EINVAL);
	h->magic = 0x12345678;
	assert_int_equal(arena_attach(&b, f->mem, TEST_PAGES * IMDS_ARENA_PAGE), -EINVAL);
}

static void test_pages_for(void **state)
{
	(void)state;
	assert_int_equal(arena_pages_for(0), 1);
	assert_int_equal(arena_pages_for(IMDS_ARENA_PAGE - 16), 1);
	assert_int_equal(arena_pages_for(IMDS_ARENA_PAGE - 15), 2);
	assert_int_equal(arena_pages_for(3 * IMDS_ARENA_PAGE), 4);
	assert_int_equal(arena_pages_for(SIZE_MAX), UINT32_MAX);
}

static void test_alloc_free_reuse(void **state)
{
	struct fixture *f = *state;
	uint32_t p1, p2, p3, seq, len;
	const uint8_t *d;

	p1 = put(&f->a, 100, 0xa1);
	p2 = put(&f->a, IMDS_ARENA_PAGE, 0xa2); /* header pushes it to 2 pages */
	p3 = put(&f->a, 5000, 0xa3);
	assert_int_equal(p1, 1);
	assert_int_equal(p2, 2);
	assert_int_equal(p3, 4);
	assert_int_equal(arena_used_bytes(&f->a), 5 * IMDS_ARENA_PAGE);

	d = arena_read_begin(&f->a, p2, &seq, &len);
	assert_non_null(d);
	assert_int_equal(len, IMDS_ARENA_PAGE);
	assert_int_equal(d[0], 0xa2);
	assert_int_equal(d[len - 1], 0xa2);
	assert_true(arena_read_valid(&f->a, p2, seq));

	arena_free(&f->a, p2);
	assert_int_equal(arena_used_bytes(&f->a), 3 * IMDS_ARENA_PAGE);
	arena_free(&f->a, p2); /* a second free changes nothing */
	assert_int_equal(arena_used_bytes(&f->a), 3 * IMDS_ARENA_PAGE);
	/* First fit: the hole left by p2 is used again. */
	assert_int_equal(put(&f->a, 200, 0xb1), 2);
	assert_int_equal(put(&f->a, 200, 0xb2), 3);
	assert_int_equal(put(&f->a, 200, 0xb3), 6);
	/* The neighbours were not touched. */
	d = arena_read_begin(&f->a, p3, &seq, &len);
	assert_non_null(d);
	assert_int_equal(len, 5000);
	assert_int_equal(d[4999], 0xa3);
}

static void test_enospc(void **state)
{
	struct fixture *f = *state;
	uint32_t page, last = 0;

	assert_int_equal(arena_alloc(&f->a, TEST_PAGES * IMDS_ARENA_PAGE, 1, &page), -ENOSPC);
	/* The largest block is every page but page 0. */
	assert_int_equal(arena_alloc(&f->a, (TEST_PAGES - 1) * IMDS_ARENA_PAGE - 16, 1, &page), 0);
	assert_int_equal(page, 1);
	assert_int_equal(arena_free_pages(&f->a), 0);
	assert_int_equal(arena_alloc(&f->a, 0, 1, &last), -ENOSPC);
	arena_free(&f->a, page);
	for (int i = 1; i < TEST_PAGES; i++) {
		assert_int_equal(arena_alloc(&f->a, 1, 1, &last), 0);
		assert_int_equal(last, i);
	}
	assert_int_equal(arena_alloc(&f->a, 1, 1, &page), -ENOSPC);
	assert_int_equal(arena_used_bytes(&f->a), (TEST_PAGES - 1) * IMDS_ARENA_PAGE);
}

static void test_fragmentation(void **state)
{
	struct fixture *f = *state;
	uint32_t pages[TEST_PAGES], page;

	for (int i = 1; i < TEST_PAGES; i++)
		pages[i] = put(&f->a, 1, (uint8_t)i);
	/* Free every other page: 15 free pages, none adjacent. */
	for (int i = 2; i < TEST_PAGES; i += 2)
		arena_free(&f->a, pages[i]);
	assert_int_equal(arena_free_pages(&f->a), 15);
	assert_int_equal(arena_alloc(&f->a, IMDS_ARENA_PAGE, 1, &page), -ENOSPC);
	/* Freeing a neighbour joins two holes into a run of three. */
	arena_free(&f->a, pages[5]);
	assert_int_equal(arena_alloc(&f->a, 2 * IMDS_ARENA_PAGE, 1, &page), 0);
	assert_int_equal(page, 4);
	assert_int_equal(arena_alloc(&f->a, 1, 1, &page), 0);
	assert_int_equal(page, 2);
}

static void test_plan_matches_alloc(void **state)
{
	struct fixture *f = *state;
	struct arena_plan plan;
	uint32_t a, b, c, page;

	a = put(&f->a, 1, 1);
	b = put(&f->a, 3 * IMDS_ARENA_PAGE, 2); /* 4 pages: 2..5 */
	c = put(&f->a, 1, 3);
	(void)a;
	(void)c;
	assert_int_equal(arena_plan_init(&f->a, &plan), 0);
	arena_plan_free(&plan, &f->a, b);
	/* The plan frees b's four pages; the real arena still holds them. */
	assert_int_equal(arena_plan_alloc(&plan, 4 * IMDS_ARENA_PAGE - 16), 0);
	assert_int_equal(arena_plan_alloc(&plan, 22 * IMDS_ARENA_PAGE), 0); /* 23 pages: 7..29 */
	assert_int_equal(arena_plan_alloc(&plan, 2 * IMDS_ARENA_PAGE), -ENOSPC);
	assert_int_equal(arena_plan_alloc(&plan, IMDS_ARENA_PAGE), 0); /* 2 pages: 30..31 */
	assert_int_equal(arena_plan_alloc(&plan, 0), -ENOSPC);
	assert_int_equal(arena_used_bytes(&f->a), 6 * IMDS_ARENA_PAGE);
	arena_plan_release(&plan);
	/* Doing the same for real gives the same answers. */
	arena_free(&f->a, b);
	assert_int_equal(arena_alloc(&f->a, 4 * IMDS_ARENA_PAGE - 16, 1, &page), 0);
	assert_int_equal(page, b);
	assert_int_equal(arena_alloc(&f->a, 22 * IMDS_ARENA_PAGE, 1, &page), 0);
	assert_int_equal(arena_alloc(&f->a, 2 * IMDS_ARENA_PAGE, 1, &page), -ENOSPC);
}

static void test_reader_rejects_unpublished_and_freed(void **state)
{
	struct fixture *f = *state;
	uint32_t page, seq, len;

	assert_int_equal(arena_alloc(&f->a, 64, 3, &page), 0);
	assert_null(arena_read_begin(&f->a, page, &seq, &len)); /* being written */
	arena_publish(&f->a, page);
	assert_non_null(arena_read_begin(&f->a, page, &seq, &len));
	arena_free(&f->a, page);
	assert_null(arena_read_begin(&f->a, page, &seq, &len)); /* freed */
	assert_int_equal(arena_alloc(&f->a, 64, 3, &page), 0);
	assert_null(arena_read_begin(&f->a, page, &seq, &len)); /* reused, unpublished */
	assert_null(arena_read_begin(&f->a, 0, &seq, &len));
	assert_null(arena_read_begin(&f->a, TEST_PAGES, &seq, &len));
	assert_null(arena_read_begin(&f->a, UINT32_MAX, &seq, &len));
	assert_false(arena_read_valid(&f->a, 0, 0));
	assert_false(arena_read_valid(&f->a, TEST_PAGES, 0));
}

static void test_reader_rejects_bad_block_header(void **state)
{
	struct fixture *f = *state;
	uint32_t page, seq, len;
	struct arena_block *b;

	page = put(&f->a, 64, 1);
	b = (struct arena_block *)((uint8_t *)f->mem + (size_t)page * IMDS_ARENA_PAGE);
	b->len = IMDS_ARENA_PAGE - 15; /* longer than its one page */
	assert_null(arena_read_begin(&f->a, page, &seq, &len));
	b->len = 64;
	b->npages = TEST_PAGES; /* runs past the end */
	assert_null(arena_read_begin(&f->a, page, &seq, &len));
	b->npages = 0;
	assert_null(arena_read_begin(&f->a, page, &seq, &len));
	b->npages = 1;
	assert_non_null(arena_read_begin(&f->a, page, &seq, &len));
	/* The middle page of a block is in use but zero data is no header. */
	page = put(&f->a, 2 * IMDS_ARENA_PAGE, 0);
	assert_null(arena_read_begin(&f->a, page + 1, &seq, &len));
}

static void test_reader_straddling_free_realloc(void **state)
{
	struct fixture *f = *state;
	uint32_t page, again, seq, len, seq2;
	const uint8_t *d;

	page = put(&f->a, 100, 0x11);
	d = arena_read_begin(&f->a, page, &seq, &len);
	assert_non_null(d);
	assert_int_equal(d[0], 0x11);
	assert_true(arena_read_valid(&f->a, page, seq));
	/* While the reader uses the data, the block is freed and the same page
	 * is given to new data and published: the reader must notice. */
	arena_free(&f->a, page);
	again = put(&f->a, 100, 0x22);
	assert_int_equal(again, page);
	assert_false(arena_read_valid(&f->a, page, seq));
	/* A fresh reader sees the new block as valid. */
	d = arena_read_begin(&f->a, page, &seq2, &len);
	assert_non_null(d);
	assert_int_equal(d[0], 0x22);
	assert_int_not_equal(seq2, seq);
	assert_true(arena_read_valid(&f->a, page, seq2));
	/* Freed only, not reused: also detected. */
	arena_free(&f->a, page);
	assert_false(arena_read_valid(&f->a, page, seq2));
}

static void test_reader_straddling_unpublished_realloc(void **state)
{
	struct fixture *f = *state;
	uint32_t page, again, seq, len;

	page = put(&f->a, 100, 0x11);
	assert_non_null(arena_read_begin(&f->a, page, &seq, &len));
	arena_free(&f->a, page);
	assert_int_equal(arena_alloc(&f->a, 100, 1, &again), 0);
	assert_int_equal(again, page);
	assert_false(arena_read_valid(&f->a, page, seq)); /* mid-write */
	/* Freed before publication, then reused and published. */
	arena_free(&f->a, again);
	assert_int_equal(put(&f->a, 100, 0x33), page);
	assert_false(arena_read_valid(&f->a, page, seq));
}

/* Past the first 64 pages the search skips full bitmap words; holes after
 * them must still be found. */
static void test_full_bitmap_words(void **state)
{
	struct fixture *f = *state;
	uint32_t page;

	for (uint32_t i = 1; i <= 130; i++)
		assert_int_equal(put(&f->a, 1, 1), i);
	arena_free(&f->a, 70);
	arena_free(&f->a, 128);
	assert_int_equal(arena_alloc(&f->a, IMDS_ARENA_PAGE, 1, &page), 0); /* 2 pages */
	assert_int_equal(page, 131);
	assert_int_equal(put(&f->a, 1, 1), 70);
	assert_int_equal(put(&f->a, 1, 1), 128);
	/* 133..199 are free: 67 pages. */
	assert_int_equal(arena_alloc(&f->a, 67 * IMDS_ARENA_PAGE, 1, &page), -ENOSPC);
	assert_int_equal(arena_alloc(&f->a, 66 * IMDS_ARENA_PAGE - 16, 1, &page), 0);
	assert_int_equal(page, 133);
	assert_int_equal(put(&f->a, 1, 1), 199);
	assert_int_equal(arena_free_pages(&f->a), 0);
}

/* What a writer killed between allocating and switching leaves: pages in
 * use that no live VM owns.  arena_reclaim frees exactly those and
 * recounts; block headers are reported for a block start only. */
static void test_reclaim_frees_unowned_pages_only(void **state)
{
	struct fixture *f = *state;
	uint8_t owned[TEST_PAGES] = { 0 };
	struct arena_block b;
	uint32_t kept = put(&f->a, 2 * IMDS_ARENA_PAGE, 1); /* 3 pages */
	uint32_t orphan = 0;

	assert_int_equal(arena_alloc(&f->a, 100, 9, &orphan), 0); /* never published */
	assert_int_equal(arena_block_info(&f->a, kept, &b), 0);
	assert_int_equal(b.npages, 3);
	assert_int_equal(b.slot, 7);
	assert_int_equal(arena_block_info(&f->a, kept + 1, &b), -EINVAL); /* inside a block: no header */
	assert_int_equal(arena_block_info(&f->a, orphan + 1, &b), -EINVAL); /* free */
	for (uint32_t p = kept; p < kept + 3; p++)
		owned[p] = 1;
	assert_int_equal(arena_reclaim(&f->a, owned), 1);
	assert_false(arena_page_used(&f->a, orphan));
	assert_true(arena_page_used(&f->a, kept + 2));
	assert_int_equal(arena_counted_pages(&f->a), 3);
	assert_int_equal(arena_bitmap_pages(&f->a), 3);
	assert_int_equal(arena_largest_free_run(&f->a), TEST_PAGES - 1 - 3);
}

/* An arena larger than one page's bitmap covers: the header takes two
 * pages, blocks start after them, and attaching again reads the same.
 * Anonymous memory, so only the pages touched are resident. */
static void test_large_arena_has_a_longer_header(void **state)
{
	uint32_t npages = 33000, page = 0;
	size_t size = (size_t)npages * IMDS_ARENA_PAGE;
	void *mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct arena a, again;

	(void)state;
	assert_true(mem != MAP_FAILED);
	assert_int_equal(arena_header_pages(32640), 1);
	assert_int_equal(arena_header_pages(32641), 2);
	assert_int_equal(arena_attach(&a, mem, size), 0);
	assert_int_equal(a.first, 2);
	assert_int_equal(arena_free_pages(&a), npages - 2);
	assert_int_equal(arena_alloc(&a, 100, 1, &page), 0);
	assert_int_equal(page, 2);
	assert_int_equal(arena_alloc(&a, (size_t)(npages - 5) * IMDS_ARENA_PAGE, 1, &page), 0); /* npages - 4 pages */
	assert_int_equal(page, 3);
	assert_int_equal(arena_free_pages(&a), 1);
	assert_int_equal(arena_attach(&again, mem, size), 0);
	assert_int_equal(arena_free_pages(&again), 1);
	assert_null(arena_read_begin(&again, 1, &page, &page)); /* a header page is never a block */
	munmap(mem, size);
}

/* Free pages enough but scattered: compaction empties a window for the
 * request, moving blocks to runs outside it, never onto themselves. */
static void test_relocation_makes_a_run(void **state)
{
	struct fixture *f = *state;
	uint32_t pages[15], from, to, page, moves = 0;

	/* 15 blocks of 2 pages (1..30), then every other one freed: 7 holes of
	 * 2 pages and one of 3 (29..31), 17 free pages, no run of 4. */
	for (int i = 0; i < 15; i++)
		pages[i] = put(&f->a, IMDS_ARENA_PAGE, (uint8_t)i);
	for (int i = 0; i < 15; i += 2)
		arena_free(&f->a, pages[i]);
	assert_int_equal(arena_alloc(&f->a, 3 * IMDS_ARENA_PAGE, 1, &page), -ENOSPC);
	while (arena_alloc(&f->a, 3 * IMDS_ARENA_PAGE, 1, &page) == -ENOSPC) {
		const struct arena_block *b;

		assert_int_equal(arena_relocation(&f->a, 4, &from, &to), 0);
		b = (const struct arena_block *)(f->a.base + (size_t)from * IMDS_ARENA_PAGE);
		assert_true(to + 2 <= from || from + 2 <= to); /* never overlapping */
		memcpy(arena_data(&f->a, to), arena_data(&f->a, from), b->len);
		arena_publish(&f->a, to);
		arena_free(&f->a, from);
		assert_true(++moves <= 2);
	}
	assert_int_equal(moves, 1);
	assert_int_equal(arena_free_pages(&f->a), 17 - 4);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_attach_formats_and_validates, setup, teardown),
		cmocka_unit_test(test_pages_for),
		cmocka_unit_test_setup_teardown(test_alloc_free_reuse, setup, teardown),
		cmocka_unit_test_setup_teardown(test_enospc, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fragmentation, setup, teardown),
		cmocka_unit_test_setup_teardown(test_full_bitmap_words, setup_200, teardown),
		cmocka_unit_test_setup_teardown(test_plan_matches_alloc, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reader_rejects_unpublished_and_freed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reader_rejects_bad_block_header, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reader_straddling_free_realloc, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reader_straddling_unpublished_realloc, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reclaim_frees_unowned_pages_only, setup, teardown),
		cmocka_unit_test(test_large_arena_has_a_longer_header),
		cmocka_unit_test_setup_teardown(test_relocation_makes_a_run, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

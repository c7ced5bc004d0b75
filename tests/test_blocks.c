// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Blocks (src/blocks.c): small blocks freed on another thread come back to
 * the thread that allocates, without malloc(); what is kept idle is
 * bounded; a thread that exits gives its idle blocks back and
 * eventbuf_barrier() frees them. The binary wraps malloc(), calloc(),
 * realloc() and free() to count the library's live allocations exactly
 * (liburcu's and cmocka's own calls are not wrapped).
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "helpers.h"

void *__real_malloc(size_t size);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t size);
void __real_free(void *p);
void *__wrap_malloc(size_t size);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t size);
void __wrap_free(void *p);

static _Atomic long mallocs, frees;

void *__wrap_malloc(size_t size)
{
	void *p = __real_malloc(size);

	if (p)
		atomic_fetch_add(&mallocs, 1);
	return p;
}

void *__wrap_calloc(size_t n, size_t size)
{
	void *p = __real_calloc(n, size);

	if (p)
		atomic_fetch_add(&mallocs, 1);
	return p;
}

void *__wrap_realloc(void *p, size_t size)
{
	void *q = __real_realloc(p, size);

	if (!p && q)
		atomic_fetch_add(&mallocs, 1);
	return q;
}

void __wrap_free(void *p)
{
	if (p)
		atomic_fetch_add(&frees, 1);
	__real_free(p);
}

static long live(void)
{
	return atomic_load(&mallocs) - atomic_load(&frees);
}

enum { RECORD = 128, ROUND = 1000, ROUNDS = 50 };

/* The writer allocates, the freer frees: a publisher and reclamation. */
struct relay {
	pthread_barrier_t step;
	void *blocks[ROUND];
	size_t size;
	int rounds;
};

static void *freer(void *arg)
{
	struct relay *r = arg;

	for (int i = 0; i < r->rounds; i++) {
		pthread_barrier_wait(&r->step);	/* the writer filled them */
		for (int b = 0; b < ROUND; b++)
			__eventbuf_block_free(r->blocks[b], r->size);
		pthread_barrier_wait(&r->step);	/* all freed */
	}
	return NULL;
}

/* Run @rounds rounds; returns the mallocs the writer made after round 1. */
static long relay_run(struct relay *r, int rounds, size_t size)
{
	long after_first = 0;
	pthread_t t;

	r->size = size;
	r->rounds = rounds;
	assert_int_equal(pthread_barrier_init(&r->step, NULL, 2), 0);
	assert_int_equal(pthread_create(&t, NULL, freer, r), 0);
	for (int i = 0; i < rounds; i++) {
		long before = atomic_load(&mallocs);

		for (int b = 0; b < ROUND; b++)
			assert_non_null(r->blocks[b] = __eventbuf_block_alloc(size));
		if (i > 0)
			after_first += atomic_load(&mallocs) - before;
		pthread_barrier_wait(&r->step);
		pthread_barrier_wait(&r->step);
	}
	assert_int_equal(pthread_join(t, NULL), 0);
	pthread_barrier_destroy(&r->step);
	return after_first;
}

/*
 * Blocks freed by another thread are what the writer allocates next: after
 * the first round it calls malloc() only for what the freer still holds
 * in its own list (less than a batch per round), not once per block.
 */
static void test_blocks_come_back_from_another_thread(void **state)
{
	static struct relay r;
	long base = live(), made;

	(void)state;
	made = relay_run(&r, ROUNDS, RECORD);
	printf("# %d blocks freed on another thread: %ld mallocs after round 1 (%d allocations)\n",
	       ROUNDS * ROUND, made, (ROUNDS - 1) * ROUND);
	assert_true(made <= (long)((ROUNDS - 1) * __eventbuf_block_batch));
	eventbuf_barrier();
	/* The freer's lists went to the depot when it exited: all freed. */
	assert_int_equal(live(), base);
}

/* A size past the largest class is plain malloc() and free(). */
static void test_blocks_big_sizes_are_not_kept(void **state)
{
	static struct relay r;
	long base = live(), made;

	(void)state;
	made = relay_run(&r, 3, 4096);
	assert_int_equal(made, 2 * ROUND);
	assert_int_equal(live(), base);
}

struct frees {
	void **blocks;
	size_t n;
};

static void *free_all(void *arg)
{
	struct frees *f = arg;

	for (size_t i = 0; i < f->n; i++)
		__eventbuf_block_free(f->blocks[i], RECORD);
	return NULL;
}

/*
 * However many blocks die at once, the library keeps at most a depot's
 * worth idle, plus less than two batches per thread: the rest go back to
 * free(). Then eventbuf_barrier() frees the depot.
 */
static void test_blocks_idle_bounded(void **state)
{
	const size_t n = 3 * (size_t)__eventbuf_block_depot_max;
	struct frees f = { .n = n };
	long base = live(), kept;
	pthread_t t;

	(void)state;
	f.blocks = __real_malloc(n * sizeof(*f.blocks));
	assert_non_null(f.blocks);
	for (size_t i = 0; i < n; i++)
		assert_non_null(f.blocks[i] = __eventbuf_block_alloc(RECORD));
	assert_int_equal(pthread_create(&t, NULL, free_all, &f), 0);
	assert_int_equal(pthread_join(t, NULL), 0);
	__real_free(f.blocks);
	kept = live() - base;
	printf("# %zu blocks freed at once: %ld kept idle\n", n, kept);
	assert_true(kept > 0);
	assert_true(kept <= (long)(__eventbuf_block_depot_max +
				   2 * __eventbuf_block_batch));
	eventbuf_barrier();
	assert_int_equal(live(), base);
}

static void *alloc_free_exit(void *arg)
{
	void *b[8];

	(void)arg;
	for (int i = 0; i < 8; i++)
		b[i] = __eventbuf_block_alloc(RECORD);
	for (int i = 0; i < 8; i++)
		__eventbuf_block_free(b[i], RECORD);
	return NULL;
}

/*
 * A thread that exits with idle blocks in its lists (fewer than a batch:
 * they never reached the depot) gives them to the depot, where
 * eventbuf_barrier() frees them; they are not lost with the thread.
 */
static void test_blocks_thread_exit_gives_back(void **state)
{
	long base = live();
	pthread_t t;

	(void)state;
	assert_int_equal(pthread_create(&t, NULL, alloc_free_exit, NULL), 0);
	assert_int_equal(pthread_join(t, NULL), 0);
	assert_int_equal(live(), base + 8);
	eventbuf_barrier();
	assert_int_equal(live(), base);
}

static uint32_t saved_warmup;

static int slow_writer_setup(void **state)
{
	(void)state;
	saved_warmup = __eventbuf_slab_warmup;
	__eventbuf_slab_warmup = UINT32_MAX;	/* never carve slabs */
	return 0;
}

static int slow_writer_teardown(void **state)
{
	__eventbuf_slab_warmup = saved_warmup;
	return teardown_nothing_left(state);
}

static bool only_heads_live(void *arg)
{
	struct eventbuf_stats st;

	(void)arg;
	eventbuf_stats(&st);
	return st.live_items == 1;
}

/*
 * A writer whose items come from malloc() (no slabs: a slow writer, a key
 * among thousands) with reclamation freeing them on liburcu's thread:
 * once reclamation has caught up, the next items reuse those blocks.
 */
static void test_blocks_reclaimed_items_reused(void **state)
{
	/* A round's items fit the depot once reclaimed. */
	const uint64_t items = __eventbuf_block_depot_max / 2;
	enum { ROUNDS_ = 6 };
	struct eventbuf *buf;
	long made = 0;

	(void)state;
	assert_int_equal(eventbuf_new(&buf), 0);
	for (int r = 0; r < ROUNDS_; r++) {
		long before = atomic_load(&mallocs);

		for (uint64_t i = 0; i < items; i++)
			assert_int_equal(append_batch(buf, i, 1, NULL), 0);
		if (r > 0)
			made += atomic_load(&mallocs) - before;
		assert_true(wait_until(only_heads_live, NULL, 10000));
	}
	printf("# %llu items after the first round: %ld mallocs\n",
	       (unsigned long long)((ROUNDS_ - 1) * items), made);
	assert_true(made <= (long)((ROUNDS_ - 1) * 2 * __eventbuf_block_batch));
	eventbuf_drop(buf);
}

/* A 104-byte block is one of the 128-byte class: 104 is its end. */
static int write_past_size(void)
{
	volatile char *p = __eventbuf_block_alloc(104);

	p[104] = 1;
	return 0;
}

/* Freed, the block waits in this thread's list for reuse. */
static int write_after_free(void)
{
	volatile char *p = __eventbuf_block_alloc(RECORD);

	__eventbuf_block_free((void *)p, RECORD);
	p[64] = 1;
	return 0;
}

static const struct child_case child_cases[] = {
	{ "write_past_size", write_past_size },
	{ "write_after_free", write_after_free },
};

#ifdef EVENTBUF_SANITIZE	/* AddressSanitizer builds */
static void expect_asan_report(const char *name)
{
	char out[4096];
	int status = child_case_status(name, out, sizeof(out));

	/* An error exit, or an abort where ASAN_OPTIONS asks for one. */
	assert_true((WIFEXITED(status) && WEXITSTATUS(status) != 0) ||
		    (WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT));
	assert_non_null(strstr(out, "AddressSanitizer: use-after-poison"));
}
#endif

/*
 * Recycling keeps blocks away from the allocator, but not from
 * AddressSanitizer: a write past the size a block was asked for, and a
 * write to a block that waits for reuse, are reported.
 */
static void test_blocks_asan_sees_misuse(void **state)
{
	(void)state;
#ifdef EVENTBUF_SANITIZE	/* AddressSanitizer builds */
	expect_asan_report("write_past_size");
	expect_asan_report("write_after_free");
#else
	skip();
#endif
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_blocks_come_back_from_another_thread),
		cmocka_unit_test(test_blocks_big_sizes_are_not_kept),
		cmocka_unit_test(test_blocks_idle_bounded),
		cmocka_unit_test(test_blocks_thread_exit_gives_back),
		cmocka_unit_test_setup_teardown(test_blocks_reclaimed_items_reused,
						slow_writer_setup,
						slow_writer_teardown),
		cmocka_unit_test(test_blocks_asan_sees_misuse),
	};

	(void)argc;
	child_case_run(argv[0], child_cases, 2);

	/* warm_up_library() starts liburcu's call_rcu thread before ours:
	 * glibc gives a new thread the cached stack of a joined one, with
	 * its TLS vector, and valgrind would blame our pthread_create() for
	 * the vector that thread still holds at exit (tests/valgrind.supp
	 * covers it only as allocated for liburcu). */
	return cmocka_run_group_tests(tests, warm_up_library, NULL);
}

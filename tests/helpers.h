/* SPDX-License-Identifier: LGPL-2.1-or-later */
#ifndef _EVENTBUF_TESTS_HELPERS_H
#define _EVENTBUF_TESTS_HELPERS_H

/* cmocka 1.1.5 needs these before <cmocka.h>. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include <eventbuf/eventbuf.h>
#include <eventbuf/publisher.h>

/*
 * Release accounting: every appended item gets a release callback that
 * bumps a per-index counter, so a test can check "released exactly once",
 * "not while held" and "all after eventbuf_barrier()".
 */
struct release_log {
	size_t n;
	_Atomic unsigned int *count;	/* [n], indexed by event index */
	_Atomic uint64_t total;
	_Atomic uint64_t bad;		/* index out of range */
};

void release_log_init(struct release_log *log, size_t n);
void release_log_free(struct release_log *log);
void release_log_cb(struct eventbuf_event *events, size_t n, void *arg);
/* How many indexes in [from, to) were released exactly @times times. */
size_t release_log_count(struct release_log *log, size_t from, size_t to,
			 unsigned int times);

/*
 * The fixture of the buffer, item and reader tests: one buffer, a release
 * log, and (buf_fixture_setup_head) a reference on the buffer's head taken
 * before any append. The teardown drops @start if the test left it set,
 * drops the buffer, and fails the test on a leak or an out-of-range
 * release.
 */
struct buf_fixture {
	struct eventbuf *buf;
	struct release_log log;		/* indexes [0, 1024), or 100000 with the head */
	struct eventbuf_item *start;	/* NULL without the head */
};

int buf_fixture_setup(void **state);
int buf_fixture_setup_head(void **state);
int buf_fixture_teardown(void **state);
#define buf_fixture_test(fn) \
	cmocka_unit_test_setup_teardown(fn, buf_fixture_setup, buf_fixture_teardown)
#define buf_fixture_head_test(fn) \
	cmocka_unit_test_setup_teardown(fn, buf_fixture_setup_head, \
					buf_fixture_teardown)

/* Append one batch of @n events with indexes idx, idx+1, ... */
int append_batch(struct eventbuf *buf, uint64_t idx, size_t n,
		 struct release_log *log);

/*
 * What a reader thread saw. Workers never call assert_*(): they fill this
 * and the test thread asserts after joining.
 */
struct reader_result {
	uint64_t count;		/* events received */
	uint64_t next_expected;	/* index expected next */
	uint64_t out_of_order;	/* events whose index was not the expected */
	uint64_t first_bad;	/* first unexpected index (if any) */
	int error;		/* first unexpected return code, 0 if none */
};

void reader_result_init(struct reader_result *r, uint64_t first);
void reader_result_see(struct reader_result *r, const struct eventbuf_item *item);

/*
 * How many items a new buffer takes from malloc() before it carves slabs
 * (src/slab.c). Tests of the slab allocator itself set it to 0; it is a
 * variable in the testing library only (CONFIG_EVENTBUF_TESTING).
 */
extern uint32_t __eventbuf_slab_warmup;
/*
 * ... all within this many nanoseconds, or it starts counting again; and
 * whether an item was carved from a slab (testing library only).
 */
extern int64_t __eventbuf_slab_warmup_ns;
bool __eventbuf_item_in_slab(const struct eventbuf_item *item);

/*
 * Small blocks (src/blocks.c): the allocator itself, its batch size and
 * depot bound, and the idle blocks in the depot of @size's class
 * (testing library only).
 */
void *__eventbuf_block_alloc(size_t size);
void __eventbuf_block_free(void *p, size_t size);
extern const uint32_t __eventbuf_block_batch;
extern const uint32_t __eventbuf_block_depot_max;
uint32_t __eventbuf_blocks_idle(size_t size);

/*
 * A blocking reader's spin before it parks (src/reader.c): its length in
 * ns (0: none, the default), and the spins @reader began, with those that
 * found an item in *@hits (testing library only).
 */
extern _Atomic uint32_t __eventbuf_reader_spin_ns;
uint32_t __eventbuf_reader_spins(const struct eventbuf_reader *reader,
				 uint32_t *hits);

/*
 * Reader threads that start from a new buffer's head, before the writer:
 * the buffer, a reference to its head (the threads' start), their ids and
 * a barrier for them and the writer. head_readers_init() asserts each
 * step; head_readers_free() expects the threads joined.
 */
struct head_readers {
	struct eventbuf *buf;
	struct eventbuf_item *head;
	pthread_t *tids;	/* [nreaders] */
	pthread_barrier_t go;	/* nreaders + the writer */
};

void head_readers_init(struct head_readers *hr, int nreaders);
void head_readers_free(struct head_readers *hr);

/* Resident set size of this process, KiB. */
long rss_kb(void);

/* Milliseconds on CLOCK_MONOTONIC. */
int64_t now_ms(void);

/* count_eventfds(), count_fds() */
#include "fdcount.h"

/* @fd is readable now (poll() with no wait). */
bool fd_readable(int fd);

/* Seed from EVENTBUF_TEST_SEED or the clock; printed for reruns. */
unsigned int test_seed(void);

/* Scale factor for heavy tests (EVENTBUF_TEST_SCALE, default 1; valgrind
 * runs set it lower). Returns @n / scale, at least @min. */
uint64_t scaled(uint64_t n, uint64_t min);

/*
 * Teardown check: after eventbuf_barrier(), nothing may be left - no live
 * item, buffer, reader or eventfd. Returns 0, or -1 after printing what
 * leaked (a fixture's teardown returns it, which fails the test).
 */
int expect_nothing_left(void);

/* A teardown that only runs expect_nothing_left(). */
int teardown_nothing_left(void **state);

/*
 * A group setup: make a buffer and drop it, then expect_nothing_left().
 * That starts liburcu's call_rcu thread and the calling thread's block
 * lists (src/blocks.c), both once per process or thread, before the
 * group's tests count what they make.
 */
int warm_up_library(void **state);

/*
 * A snapshot handler (eventbuf_publisher_register()) that answers an empty
 * snapshot at the index its @arg carries: register it with
 * (void *)(uintptr_t)index, or NULL for index 0.
 */
int empty_snapshot(void *arg, const char *topic, const char *key,
		   struct eventbuf_snapshot *snap, uint64_t *index);

/*
 * Skipping: a test that a tool's run cannot judge calls skip_under() with
 * the tools (UNDER_TSAN, UNDER_VALGRIND) and the reason, printed with the
 * skip. under() says whether this run is one of them.
 */
enum test_tool {
	UNDER_TSAN = 1 << 0,		/* built with CONFIG_TSAN */
	UNDER_VALGRIND = 1 << 1,	/* EVENTBUF_UNDER_VALGRIND set by make check */
};

bool under(unsigned int tools);
/* Returns only when this run is none of @tools. */
void skip_under(unsigned int tools, const char *why);

/* Wait (bounded, polling every 100 us) until @pred(@arg) is true. */
bool wait_until(bool (*pred)(void *arg), void *arg, int timeout_ms);

/*
 * Child processes, for behaviour that ends a process (an abort with a
 * message). A child is this binary run again (fork, then exec: sanitizers
 * and valgrind follow it), told which case to run by the environment.
 * main() calls child_case_run() first: when the process is such a child it
 * runs the case and exits with its result.
 */
struct child_case {
	const char *name;
	int (*fn)(void);	/* returns only if the abort did not happen */
};

void child_case_run(const char *argv0, const struct child_case *cases,
		    size_t n);
/* Run case @name in a child; its stderr in @out; killed after 10 s.
 * Returns its wait status. */
int child_case_status(const char *name, char *out, size_t size);
/* The child died of SIGABRT and said @a and @b. */
void expect_child_abort(const char *name, const char *a, const char *b);

#endif /* _EVENTBUF_TESTS_HELPERS_H */

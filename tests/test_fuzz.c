// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The concurrency test, in the spirit of Consul's TestEventBufferFuzz:
 * many readers, all positioned at the head *before* the writer starts (the
 * fix upstream needed to stop the test from flaking), one writer appending
 * batches with random pauses so that readers both find items already there
 * and block waiting for them. Each reader records order and completeness;
 * the test thread asserts after joining. Every wait has a deadline.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "helpers.h"

#define WAIT_MS 30000

enum mode { BY_READER, BY_ITEM, BY_FOLLOW };

struct reader_ctx {
	struct eventbuf_item *start;	/* a reference, taken before the writer */
	enum mode mode;
	uint64_t want;
	pthread_barrier_t *go;
	struct reader_result res;
	uint32_t spins, spin_hits;	/* BY_READER: its spins before parks */
};

static void read_by_reader(struct reader_ctx *c)
{
	struct eventbuf_reader *r;
	const struct eventbuf_item *it;
	int ret = eventbuf_reader_new(c->start, &r);

	if (ret) {
		c->res.error = ret;
		return;
	}
	while (c->res.count < c->want) {
		ret = eventbuf_reader_next(r, WAIT_MS, -1, &it);
		if (ret) {
			c->res.error = ret;
			break;
		}
		reader_result_see(&c->res, it);
	}
	c->spins = __eventbuf_reader_spins(r, &c->spin_hits);
	eventbuf_reader_free(r);
}

/* The seed's loop: it = it.Next(ctx), one reference moved per item. */
static int next_blocking(struct eventbuf_item **it, struct eventbuf_item **next)
{
	return eventbuf_item_next(*it, WAIT_MS, -1, next);
}

/* Non-blocking reads, following after the tip when nothing is there. */
static int next_or_follow(struct eventbuf_item **it, struct eventbuf_item **next)
{
	int ret = eventbuf_item_next_nonblock(*it, next);

	if (ret == -EAGAIN) {
		ret = eventbuf_item_follow_after(*it, next);
		if (!ret && eventbuf_item_count(*next) == 0) {
			eventbuf_item_put(*it);
			*it = *next;
			ret = eventbuf_item_next(*it, WAIT_MS, -1, next);
		}
	}
	return ret;
}

/*
 * Item by item from c->start, holding one reference at a time; @step
 * gives the item after *it (and may move *it on, its reference with it).
 */
static void read_by_items(struct reader_ctx *c,
			  int (*step)(struct eventbuf_item **it,
				      struct eventbuf_item **next))
{
	struct eventbuf_item *it = c->start, *next;
	int ret;

	if (eventbuf_item_get(it))
		return;
	while (c->res.count < c->want) {
		ret = step(&it, &next);
		if (ret) {
			c->res.error = ret;
			break;
		}
		reader_result_see(&c->res, next);
		eventbuf_item_put(it);
		it = next;
	}
	eventbuf_item_put(it);
}

static void *reader_run(void *arg)
{
	struct reader_ctx *c = arg;

	pthread_barrier_wait(c->go);
	switch (c->mode) {
	case BY_READER:
		read_by_reader(c);
		break;
	case BY_ITEM:
		read_by_items(c, next_blocking);
		break;
	case BY_FOLLOW:
		read_by_items(c, next_or_follow);
		break;
	}
	return NULL;
}

/* Pauses skewed towards none, some up to 2 ms (a Zipf-like mix). */
static void writer_pause(unsigned int *seed)
{
	unsigned int r = (unsigned int)rand_r(seed) % 1000;
	struct timespec ts = { 0, 0 };

	if (r < 900)
		return;
	ts.tv_nsec = r < 990 ? (r - 900) * 1000 : (r - 990) * 200000;
	nanosleep(&ts, NULL);
}

/* Returns the spins that the readers began and, in *@hits, those that
 * found an item. */
static uint64_t readers_see_everything_in_order(uint64_t *hits)
{
	const int nreaders = 102;
	const uint64_t nbatches = scaled(10000, 500);
	struct reader_ctx *ctx = calloc(nreaders, sizeof(*ctx));
	unsigned int seed = test_seed();
	struct head_readers hr;
	uint64_t events = 0, spins = 0;
	int64_t t0;

	assert_non_null(ctx);
	head_readers_init(&hr, nreaders);
	for (int i = 0; i < nreaders; i++) {
		ctx[i].start = hr.head;
		ctx[i].mode = (enum mode)(i % 3);
		ctx[i].want = 0;
		ctx[i].go = &hr.go;
		reader_result_init(&ctx[i].res, 0);
		assert_int_equal(pthread_create(&hr.tids[i], NULL, reader_run, &ctx[i]), 0);
	}
	/* Batches of 1..3 events: the want is known before anyone starts. */
	for (uint64_t b = 0; b < nbatches; b++)
		events += 1 + b % 3;
	for (int i = 0; i < nreaders; i++)
		ctx[i].want = events;
	t0 = now_ms();
	pthread_barrier_wait(&hr.go);
	for (uint64_t b = 0, idx = 0; b < nbatches; b++) {
		assert_int_equal(append_batch(hr.buf, idx, 1 + b % 3, NULL), 0);
		idx += 1 + b % 3;
		writer_pause(&seed);
	}
	for (int i = 0; i < nreaders; i++)
		assert_int_equal(pthread_join(hr.tids[i], NULL), 0);
	printf("# %d readers x %llu batches (%llu events each): %lld ms\n",
	       nreaders, (unsigned long long)nbatches,
	       (unsigned long long)events, (long long)(now_ms() - t0));
	for (int i = 0; i < nreaders; i++) {
		if (ctx[i].res.error || ctx[i].res.out_of_order ||
		    ctx[i].res.count != events)
			printf("# reader %d (mode %d): error %d, %llu/%llu events, %llu out of order (first %llu)\n",
			       i, ctx[i].mode, ctx[i].res.error,
			       (unsigned long long)ctx[i].res.count,
			       (unsigned long long)events,
			       (unsigned long long)ctx[i].res.out_of_order,
			       (unsigned long long)ctx[i].res.first_bad);
		assert_int_equal(ctx[i].res.error, 0);
		assert_int_equal(ctx[i].res.out_of_order, 0);
		assert_int_equal(ctx[i].res.count, events);
		assert_int_equal(ctx[i].res.next_expected, events);
	}
	head_readers_free(&hr);
	*hits = 0;
	for (int i = 0; i < nreaders; i++) {
		spins += ctx[i].spins;
		*hits += ctx[i].spin_hits;
	}
	free(ctx);
	return spins;
}

static void test_fuzz_readers_see_everything_in_order(void **state)
{
	uint64_t hits;

	(void)state;
	assert_int_equal(readers_see_everything_in_order(&hits), 0);
}

/*
 * The same with blocking readers that spin 5 us before they park
 * (src/reader.c): the writer's pauses make them both find items while
 * they spin and park after it.
 */
static void test_fuzz_spinning_readers_see_everything_in_order(void **state)
{
	uint64_t spins, hits;

	(void)state;
	atomic_store(&__eventbuf_reader_spin_ns, 5000);
	spins = readers_see_everything_in_order(&hits);
	printf("# %llu spins, %llu found an item\n", (unsigned long long)spins,
	       (unsigned long long)hits);
	assert_true(hits > 0);
	assert_true(spins > hits);
}

static int teardown_spin_off(void **state)
{
	atomic_store(&__eventbuf_reader_spin_ns, 0);
	return teardown_nothing_left(state);
}

/*
 * Readers join while the writer runs and a snapshot chain is spliced in
 * front of them, as the publisher does: each starts from a snapshot
 * buffer's first item and must see the snapshot, then every live index
 * after the splice point, in order.
 */
struct joiner {
	struct eventbuf_item *first;	/* snapshot start (a reference) */
	uint64_t snap_len, first_live, last_live;
	struct reader_result res;
};

static void *joiner_run(void *arg)
{
	struct joiner *j = arg;
	const struct eventbuf_item *it;
	struct eventbuf_reader *r;
	uint64_t want = j->snap_len + (j->last_live - j->first_live);
	int ret = eventbuf_reader_new(j->first, &r);

	if (ret) {
		j->res.error = ret;
		return NULL;
	}
	reader_result_init(&j->res, 1000000000);
	while (j->res.count < want) {
		ret = eventbuf_reader_next(r, WAIT_MS, -1, &it);
		if (ret) {
			j->res.error = ret;
			break;
		}
		if (j->res.count == j->snap_len)
			j->res.next_expected = j->first_live;
		reader_result_see(&j->res, it);
	}
	eventbuf_reader_free(r);
	return NULL;
}

static void test_fuzz_joiners_during_writes(void **state)
{
	const int njoiners = 16;
	const uint64_t nlive = scaled(20000, 2000);
	struct joiner j[16];
	pthread_t tids[16];
	struct eventbuf *topic;
	uint64_t idx = 0;

	(void)state;
	assert_int_equal(eventbuf_new(&topic), 0);
	for (int k = 0; k < njoiners; k++) {
		struct eventbuf_item *head, *follow;
		struct eventbuf *snap;

		for (uint64_t i = 0; i < nlive / njoiners; i++, idx++)
			assert_int_equal(append_batch(topic, idx, 1, NULL), 0);
		assert_int_equal(eventbuf_new(&snap), 0);
		assert_int_equal(eventbuf_head(snap, &j[k].first), 0);
		j[k].snap_len = 3;
		for (uint64_t s = 0; s < j[k].snap_len; s++)
			assert_int_equal(append_batch(snap, 1000000000 + s, 1, NULL), 0);
		assert_int_equal(eventbuf_head(topic, &head), 0);
		assert_int_equal(eventbuf_item_follow_after(head, &follow), 0);
		assert_int_equal(eventbuf_append_item(snap, follow), 0);
		eventbuf_item_put(follow);
		eventbuf_item_put(head);
		eventbuf_drop(snap);
		j[k].first_live = idx;
		j[k].last_live = nlive;
		assert_int_equal(pthread_create(&tids[k], NULL, joiner_run, &j[k]), 0);
	}
	for (; idx < nlive; idx++)
		assert_int_equal(append_batch(topic, idx, 1, NULL), 0);
	for (int k = 0; k < njoiners; k++) {
		assert_int_equal(pthread_join(tids[k], NULL), 0);
		assert_int_equal(j[k].res.error, 0);
		assert_int_equal(j[k].res.out_of_order, 0);
		assert_int_equal(j[k].res.count,
				 j[k].snap_len + nlive - j[k].first_live);
		eventbuf_item_put(j[k].first);
	}
	eventbuf_drop(topic);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_fuzz_readers_see_everything_in_order, teardown_nothing_left),
		cmocka_unit_test_teardown(test_fuzz_spinning_readers_see_everything_in_order, teardown_spin_off),
		cmocka_unit_test_teardown(test_fuzz_joiners_during_writes, teardown_nothing_left),
	};

	return cmocka_run_group_tests_name("fuzz", tests, NULL, NULL);
}

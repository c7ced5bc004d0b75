// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The API fuzzer: each input is a program of operations on one buffer
 * chain and one publisher, run in one thread against a reference model
 * that knows what every call must return.
 *
 * Buffer side: append (0-3 events, or an empty item), append a terminal
 * error, splice a new buffer's chain in (the writer moves to it), try to
 * splice the head onto itself (-ELOOP), readers that start at the head,
 * read, park (wait fd) and go, held items that step with next and
 * follow-after. Model: the list of items since the start; a reader or a
 * held item is a position in it.
 *
 * Publisher side: three keys of one topic and its wildcard, publishes of
 * 1-3 events over one or two keys sharing one new index, some of them
 * carrying an old index instead (at or below what snapshots already
 * hold), subscriptions that start fresh, resume up to date or from a
 * stale index, reads, unsubscribes, force-closes by key, cache expiry.
 * Model: each key's history of batches (each event's index and key; the
 * wildcard's has every publish, sorted by key); each subscription's next
 * expected frame, its skip point and its place in the history, from which
 * its next batch is the next one with events above the skip point, those
 * alone, in order; which key buffers exist and what they cached.
 *
 * Poller: one poller made and freed, readers and subscriptions attached
 * and detached (-EBUSY twice, -ENOENT when not attached, -EISCONN for a
 * descriptor of an attached reader), and ready calls: every report names
 * an attached object with its data, once per call, and every attached
 * object that ran dry (-EAGAIN) and has something now (per the model) is
 * reported. With groups, a group may also be read one batch per
 * operation, so that publishes, reads on their own, detaches, closes and
 * ready calls come while it is open: each batch is the next of every
 * member still in it. Model: which objects are attached, and which ran
 * dry since they were last reported.
 *
 * Every result is compared; every release callback must run exactly once
 * (checked after a grace period every 64 inputs and at exit); parked
 * readers' descriptors must be readable after the next append. A check
 * that fails prints the operation and aborts, so libFuzzer keeps the input.
 *
 * Built two ways: with -fsanitize=fuzzer for "make fuzz", and with
 * FUZZ_REPLAY for the cmocka test test_fuzz_replay, which replays the
 * inputs kept in tests/fuzz-corpus/ and a fixed set of generated ones;
 * there a failed check fails the running test through cmocka instead, and
 * a batch released twice is caught by check_all_released() (the release
 * callback runs on liburcu's call_rcu thread, which must not fail a test).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <eventbuf/poller.h>
#include <eventbuf/publisher.h>

#include "pubsub/pubsub.h"

#ifdef FUZZ_REPLAY
#include "helpers.h"
#define CHECK_FAILED() fail()
#else
#define CHECK_FAILED() abort()
#endif

#define CHECK(cond)							\
	do {								\
		if (!(cond)) {						\
			fprintf(stderr, "fuzz_api: op %zu (%s): check failed: %s (%s:%d)\n", \
				op_no, op_name, #cond, __FILE__, __LINE__); \
			CHECK_FAILED();					\
		}							\
	} while (0)

#define MAX_OPS 512		/* operations per input */
#define MAX_ITEMS 512
#define NREADERS 4
#define NHELD 4
#define NKEYS 4		/* three keys and the wildcard */
#define NREAL 3		/* the keys a publish may name */
#define WILD 3		/* keys[WILD] is EVENTBUF_KEY_WILDCARD */
#define NSUBS 6
#define MAX_HIST MAX_OPS	/* a key's publishes: at most one per operation */

static size_t op_no;
static const char *op_name = "setup";

/* ------------------------------------------------------------------ */
/* Release accounting, across inputs                                   */
/* ------------------------------------------------------------------ */

struct release_rec {
	_Atomic int count;
	struct release_rec *next;
};

static struct release_rec *pending;
static unsigned long inputs;

static void release_cb(struct eventbuf_event *events, size_t n, void *arg)
{
	struct release_rec *r = arg;

	(void)events;
	(void)n;
	if (atomic_fetch_add(&r->count, 1) != 0) {
		fprintf(stderr, "fuzz_api: a batch released twice\n");
#ifndef FUZZ_REPLAY
		abort();
#endif
	}
}

static struct release_rec *release_rec_new(void)
{
	struct release_rec *r = calloc(1, sizeof(*r));

	CHECK(r);
	r->next = pending;
	pending = r;
	return r;
}

/* After a grace period, every batch of the inputs so far is released. */
static void check_all_released(void)
{
	eventbuf_barrier();
	while (pending) {
		struct release_rec *r = pending;

		pending = r->next;
		CHECK(atomic_load(&r->count) == 1);
		free(r);
	}
}

/* ------------------------------------------------------------------ */
/* The buffer model                                                    */
/* ------------------------------------------------------------------ */

struct mitem {
	uint32_t n;		/* events; 0: empty */
	uint64_t index;		/* of its first event */
	int error;		/* a terminal error item */
};

struct bstate {
	struct eventbuf *writer;
	struct mitem items[MAX_ITEMS];
	size_t nitems;		/* items[0] is the first buffer's sentinel */
	uint64_t next_index;
	int ended;		/* the error code once ended */
	struct {
		struct eventbuf_reader *r;
		size_t pos;	/* the item it read last (or started at) */
		int parked_fd;	/* -1 unless parked with a descriptor */
		int last_fd;	/* what wait_fd() handed out last, or -1 */
		bool polled;	/* attached to the poller */
		bool dry;	/* polled, read to -EAGAIN, not reported since */
	} readers[NREADERS];
	struct {
		struct eventbuf_item *it;
		size_t pos;
	} held[NHELD];
};

/* The item a reader at @pos returns next: its position, or nitems. */
static size_t model_next(const struct bstate *b, size_t pos)
{
	for (size_t i = pos + 1; i < b->nitems; i++)
		if (b->items[i].n || b->items[i].error)
			return i;
	return b->nitems;
}

/* Compare a read's result with the model's next item after @pos. */
static size_t check_read(const struct bstate *b, size_t pos, int ret,
			 const struct eventbuf_item *it)
{
	size_t want = model_next(b, pos);

	if (want == b->nitems) {
		CHECK(ret == -EAGAIN);
		return pos;
	}
	if (b->items[want].error) {
		CHECK(ret == b->items[want].error);
		return pos;	/* sticky: stays before the error */
	}
	CHECK(ret == 0);
	CHECK(eventbuf_item_count(it) == b->items[want].n);
	for (uint32_t e = 0; e < b->items[want].n; e++)
		CHECK(eventbuf_item_events(it)[e].index ==
		      b->items[want].index + e);
	return want;
}

static bool room(const struct bstate *b, size_t n)
{
	return b->nitems + n <= MAX_ITEMS;
}

/* Append @n events from @index on (0: an empty item) to @buf. */
static int append_to(struct eventbuf *buf, uint32_t n, uint64_t index)
{
	struct eventbuf_event ev[3];
	int ret;

	for (uint32_t i = 0; i < n; i++)
		ev[i] = (struct eventbuf_event){ .index = index + i };
	ret = eventbuf_append(buf, n ? ev : NULL, n, release_cb,
			      release_rec_new());
	if (ret) {
		/* Not published: the callback will never run. */
		struct release_rec *r = pending;

		pending = r->next;
		free(r);
	}
	return ret;
}

static void record_item(struct bstate *b, uint32_t n)
{
	b->items[b->nitems++] = (struct mitem){ .n = n, .index = b->next_index };
	b->next_index += n;
}

/* Every parked reader's descriptor fires once the next item is there. */
static void check_parked_woken(struct bstate *b)
{
	for (int i = 0; i < NREADERS; i++) {
		struct pollfd p = { .fd = b->readers[i].parked_fd,
				    .events = POLLIN };

		if (p.fd < 0)
			continue;
		CHECK(poll(&p, 1, 0) == 1);
		b->readers[i].parked_fd = -1;
	}
}

static void op_append(struct bstate *b, uint8_t arg)
{
	uint32_t n = arg % 4;
	int ret;

	op_name = "append";
	if (!room(b, 1))
		return;
	ret = append_to(b->writer, n, b->next_index);
	if (b->ended) {
		CHECK(ret == -EPIPE);
		return;
	}
	CHECK(ret == 0);
	record_item(b, n);
	check_parked_woken(b);
}

static void op_error(struct bstate *b, uint8_t arg)
{
	int code = -(int)(1 + arg % 30), ret;

	op_name = "append_error";
	if (!room(b, 1))
		return;
	ret = eventbuf_append_error(b->writer, code, "fuzz");
	if (code_is_reserved(code)) {
		CHECK(ret == -EINVAL);
		return;
	}
	if (b->ended) {
		CHECK(ret == -EPIPE);
		return;
	}
	CHECK(ret == 0);
	b->items[b->nitems++] = (struct mitem){ .error = code };
	b->ended = code;
	check_parked_woken(b);
}

/* A new buffer with @arg % 3 batches, spliced after the writer's head. */
static void op_splice(struct bstate *b, uint8_t arg)
{
	struct eventbuf *nb;
	struct eventbuf_item *start;
	uint32_t nbatches = arg % 3;
	int ret;

	op_name = "splice";
	if (!room(b, 1 + nbatches))
		return;
	CHECK(eventbuf_new(&nb) == 0);
	CHECK(eventbuf_head(nb, &start) == 0);
	for (uint32_t i = 0, index = b->next_index; i < nbatches; index += ++i)
		CHECK(append_to(nb, 1 + i, index) == 0);
	ret = eventbuf_append_item(b->writer, start);
	eventbuf_item_put(start);
	if (b->ended) {
		CHECK(ret == -EPIPE);
		/* Unspliced: its batches are released with it. */
		eventbuf_drop(nb);
		return;
	}
	CHECK(ret == 0);
	b->items[b->nitems++] = (struct mitem){ 0 };	/* nb's sentinel */
	for (uint32_t i = 0; i < nbatches; i++)
		record_item(b, 1 + i);
	eventbuf_drop(b->writer);
	b->writer = nb;
	check_parked_woken(b);
}

static void op_self_splice(struct bstate *b)
{
	struct eventbuf_item *head;
	int ret;

	op_name = "self_splice";
	CHECK(eventbuf_head(b->writer, &head) == 0);
	ret = eventbuf_append_item(b->writer, head);
	CHECK(ret == (b->ended ? -EPIPE : -ELOOP));
	eventbuf_item_put(head);
}

static void op_reader(struct bstate *b, uint8_t arg)
{
	int i = arg % NREADERS;
	struct eventbuf_item *head;

	if (b->readers[i].r) {
		op_name = "reader_free";
		eventbuf_reader_free(b->readers[i].r);
		b->readers[i].r = NULL;
		b->readers[i].parked_fd = -1;
		b->readers[i].last_fd = -1;
		b->readers[i].polled = b->readers[i].dry = false;
		return;
	}
	op_name = "reader_new";
	if (b->ended)
		return;		/* the head is the error item */
	CHECK(eventbuf_head(b->writer, &head) == 0);
	CHECK(eventbuf_reader_new(head, &b->readers[i].r) == 0);
	eventbuf_item_put(head);
	b->readers[i].pos = b->nitems - 1;
	b->readers[i].parked_fd = -1;
	b->readers[i].last_fd = -1;
}

static void op_read(struct bstate *b, uint8_t arg)
{
	int i = arg % NREADERS;
	const struct eventbuf_item *it = NULL;
	int ret;

	op_name = "reader_next";
	if (!b->readers[i].r)
		return;
	ret = eventbuf_reader_next_nonblock(b->readers[i].r, &it);
	b->readers[i].pos = check_read(b, b->readers[i].pos, ret, it);
	if (ret == -EAGAIN && b->readers[i].polled)
		b->readers[i].dry = true;
}

/* Park: a descriptor only when nothing is there to read. */
static void op_park(struct bstate *b, uint8_t arg)
{
	int i = arg % NREADERS, fd = -1, ret;
	size_t next;

	op_name = "reader_wait_fd";
	if (!b->readers[i].r)
		return;
	ret = eventbuf_reader_wait_fd(b->readers[i].r, &fd);
	if (b->readers[i].polled) {
		CHECK(ret == -EISCONN && fd == -1);
		return;
	}
	next = model_next(b, b->readers[i].pos);
	if (next < b->nitems) {
		CHECK(ret == -EALREADY);
		return;
	}
	if (ret == -EALREADY)
		return;		/* an empty item after it: read on */
	CHECK(ret == 0 || ret == 1);
	CHECK(fd >= 0);
	/* 0: the descriptor handed out last, still open (kept or same
	 * link), which the caller's epoll set watches already. */
	if (ret == 0)
		CHECK(fd == b->readers[i].last_fd &&
		      fcntl(fd, F_GETFD) >= 0);
	b->readers[i].last_fd = fd;
	b->readers[i].parked_fd = fd;
}

static void op_held(struct bstate *b, uint8_t arg)
{
	int i = arg % NHELD;
	struct eventbuf_item *next = NULL;
	size_t pos;
	int ret;

	if (!b->held[i].it) {
		op_name = "head";
		if (b->ended)
			return;
		CHECK(eventbuf_head(b->writer, &b->held[i].it) == 0);
		b->held[i].pos = b->nitems - 1;
		return;
	}
	switch ((arg / NHELD) % 3) {
	case 0:
		op_name = "item_put";
		eventbuf_item_put(b->held[i].it);
		b->held[i].it = NULL;
		return;
	case 1:
		op_name = "item_next_nonblock";
		ret = eventbuf_item_next_nonblock(b->held[i].it, &next);
		pos = check_read(b, b->held[i].pos, ret, next);
		if (ret == 0) {
			eventbuf_item_put(b->held[i].it);
			b->held[i].it = next;
			b->held[i].pos = pos;
		}
		return;
	default:
		/* The next batch, or an empty item that continues from here. */
		op_name = "item_follow_after";
		ret = eventbuf_item_follow_after(b->held[i].it, &next);
		pos = model_next(b, b->held[i].pos);
		if (pos < b->nitems && b->items[pos].error) {
			CHECK(ret == b->items[pos].error);
			return;
		}
		CHECK(ret == 0);
		if (pos < b->nitems) {
			CHECK(check_read(b, b->held[i].pos, ret, next) == pos);
			b->held[i].pos = pos;
		} else {
			CHECK(eventbuf_item_count(next) == 0);
		}
		eventbuf_item_put(b->held[i].it);
		b->held[i].it = next;
		return;
	}
}

static void bstate_init(struct bstate *b)
{
	memset(b, 0, sizeof(*b));
	CHECK(eventbuf_new(&b->writer) == 0);
	b->nitems = 1;
	b->next_index = 1;
	for (int i = 0; i < NREADERS; i++) {
		b->readers[i].parked_fd = -1;
		b->readers[i].last_fd = -1;
	}
}

static void bstate_free(struct bstate *b)
{
	for (int i = 0; i < NREADERS; i++)
		eventbuf_reader_free(b->readers[i].r);
	for (int i = 0; i < NHELD; i++)
		eventbuf_item_put(b->held[i].it);
	eventbuf_drop(b->writer);
}

/* ------------------------------------------------------------------ */
/* The publisher model                                                 */
/* ------------------------------------------------------------------ */

static const char *const keys[NKEYS] = { "a", "b", "c", EVENTBUF_KEY_WILDCARD };

enum { EXPECT_NEW_SNAPSHOT, EXPECT_SNAPSHOT, EXPECT_EOS, EXPECT_LIVE };

struct msub {
	struct eventbuf_subscription *sub;
	int key;
	int expect;
	uint64_t snap;		/* the snapshot's index */
	uint64_t skip;		/* live events at or below: seen */
	size_t h;		/* the next publish of its key's history */
	int closed;		/* the terminal code once closed */
	bool attached;		/* counted by its key buffer */
	bool polled;		/* attached to the poller */
	bool dry;		/* polled, read to -EAGAIN, not reported since */
};

struct mkey {
	uint64_t hist[MAX_HIST][3];	/* each publish's events' indexes */
	uint8_t hist_key[MAX_HIST][3];	/* and keys */
	uint32_t hist_n[MAX_HIST];	/* and how many */
	size_t nhist;
	uint64_t last;			/* the greatest published; 0: none */
	uint64_t head_hi;		/* the greatest of the last publish */
	bool buffer;			/* a key buffer exists */
	bool head_live;			/* its head is a publish, not the start */
	bool cached;
	uint64_t cache_index;
	size_t cache_h;			/* the history's length then */
};

struct pstate {
	struct eventbuf_publisher *pub;
	bool ttl;
	uint64_t next_index;
	struct mkey keys[NKEYS];
	struct msub subs[NSUBS];
};

/*
 * The handler writes the key's last publish (the topic's, for the
 * wildcard): one event, its index.
 */
static int handler(void *arg, const char *topic, const char *key,
		   struct eventbuf_snapshot *snap, uint64_t *index)
{
	struct pstate *p = arg;
	struct mkey *k = &p->keys[strcmp(key, EVENTBUF_KEY_WILDCARD) ?
				  key[0] - 'a' : WILD];
	struct eventbuf_event ev = { .index = k->last, .topic = topic,
				     .key = key, .payload = "snapshot" };

	*index = k->last;
	return k->last ? eventbuf_snapshot_append(snap, &ev, 1, NULL, NULL) : 0;
}

static int attached(const struct pstate *p, int key)
{
	int n = 0;

	for (int i = 0; i < NSUBS; i++)
		n += p->subs[i].sub && p->subs[i].attached &&
		     p->subs[i].key == key;
	return n;
}

/* Its last subscriber gone, a key buffer and its cache go too. */
static void key_detach(struct pstate *p, int key)
{
	if (attached(p, key))
		return;
	p->keys[key].buffer = false;
	p->keys[key].head_live = false;
	p->keys[key].cached = false;
}

static void op_subscribe(struct pstate *p, uint8_t arg, uint8_t arg2)
{
	int i = arg % NSUBS, key = (arg / NSUBS) % NKEYS;
	struct eventbuf_subscribe_req req = { .topic = "t", .key = keys[key] };
	struct msub *s = &p->subs[i];
	struct mkey *k = &p->keys[key];

	if (s->sub) {
		op_name = "unsubscribe";
		eventbuf_unsubscribe(s->sub);
		s->sub = NULL;
		s->polled = s->dry = false;
		if (s->attached) {
			s->attached = false;
			key_detach(p, s->key);
		}
		return;
	}
	op_name = "subscribe";
	/* 0: fresh; 1: up to date (if anything); 2: a stale index. */
	switch (arg2 % 3) {
	case 0:
		req.index = 0;
		break;
	case 1:
		req.index = k->last;
		break;
	default:
		req.index = k->last ? k->last - 1 : 7;
		break;
	}
	CHECK(eventbuf_subscribe(p->pub, &req, &s->sub) == 0);
	*s = (struct msub){ .sub = s->sub, .key = key, .attached = true,
			    .h = k->nhist };
	/* Up to date: the greatest index of the head's batch. */
	if (req.index && k->buffer && k->head_live && req.index == k->head_hi) {
		s->expect = EXPECT_LIVE;
		s->skip = req.index;
	} else {
		/* Every publish before the snapshot (or the cache) is at
		 * or below its index: the history after it is what is
		 * left to read. */
		s->expect = req.index ? EXPECT_NEW_SNAPSHOT : EXPECT_SNAPSHOT;
		s->snap = k->buffer && k->cached ? k->cache_index : k->last;
		if (k->buffer && k->cached)
			s->h = k->cache_h;
		if (!(k->buffer && k->cached) && p->ttl) {
			k->cached = true;
			k->cache_index = k->last;
			k->cache_h = k->nhist;
		}
	}
	if (!k->buffer) {
		k->buffer = true;
		k->head_live = false;
	}
}

/*
 * @s's next batch: the events above its skip point of the next publish
 * that has any, from its place on (*h): their indexes in @want, their
 * keys in @wkey; how many (0: none).
 */
static uint32_t next_batch(const struct mkey *k, const struct msub *s,
			   size_t *h, uint64_t *want, uint8_t *wkey)
{
	for (*h = s->h; *h < k->nhist; ++*h) {
		uint32_t n = 0;

		for (uint32_t e = 0; e < k->hist_n[*h]; e++) {
			if (k->hist[*h][e] <= s->skip)
				continue;
			wkey[n] = k->hist_key[*h][e];
			want[n++] = k->hist[*h][e];
		}
		if (n)
			return n;
	}
	return 0;
}

/*
 * @n events @ev are @s's next batch, per the model; @s moves past it.
 * Returns whether that was all of its publish.
 */
static bool live_seen(struct mkey *k, struct msub *s, int ret,
		      const struct eventbuf_event *ev, size_t n)
{
	uint64_t want[3];
	uint8_t wkey[3];
	uint32_t got = next_batch(k, s, &s->h, want, wkey);

	if (!got) {
		CHECK(ret == -EAGAIN);
		return false;
	}
	CHECK(ret == 0 && n == got);
	for (size_t e = 0; e < n; e++)
		CHECK(ev[e].index == want[e] &&
		      !strcmp(ev[e].key, keys[wkey[e]]) &&
		      !strcmp(ev[e].payload, "live"));
	return got == k->hist_n[s->h++];
}

static void op_sub_read(struct pstate *p, uint8_t arg)
{
	struct msub *s = &p->subs[arg % NSUBS];
	const struct eventbuf_event *ev = NULL;
	struct mkey *k;
	size_t n = 0;
	int ret;

	op_name = "sub_next";
	if (!s->sub)
		return;
	k = &p->keys[s->key];
	ret = eventbuf_sub_next_nonblock(s->sub, &ev, &n);
	if (ret == -EAGAIN && s->polled)
		s->dry = true;
	if (s->closed) {
		CHECK(ret == s->closed);
		return;
	}
	switch (s->expect) {
	case EXPECT_NEW_SNAPSHOT:
		CHECK(ret == 0 && n == 1 && eventbuf_event_is_new_snapshot(ev));
		CHECK(!strcmp(ev->key, keys[s->key]));
		s->expect = EXPECT_SNAPSHOT;
		return;
	case EXPECT_SNAPSHOT:
		if (s->snap) {
			CHECK(ret == 0 && n == 1 && ev->index == s->snap);
			CHECK(!strcmp(ev->payload, "snapshot"));
			s->expect = EXPECT_EOS;
			return;
		}
		/* An empty snapshot is its end alone. */
		__attribute__((fallthrough));
	case EXPECT_EOS:
		CHECK(ret == 0 && n == 1 && eventbuf_event_is_end_of_snapshot(ev));
		CHECK(ev->index == s->snap);
		CHECK(!strcmp(ev->key, keys[s->key]));
		s->skip = s->snap;
		s->expect = EXPECT_LIVE;
		return;
	default:
		live_seen(k, s, ret, ev, n);
	}
}

/*
 * A batch of what @key's buffer gets of @ev (the wildcard's: all of it,
 * sorted by key, stably), if it has a buffer. Its last index grows.
 */
static void key_gets(struct mkey *k, int key, const struct eventbuf_event *ev,
		     const uint8_t *evkey, uint32_t n)
{
	uint64_t hi = 0;
	uint32_t m = 0;

	for (int want = 0; want < NREAL; want++) {
		for (uint32_t e = 0; e < n; e++) {
			if (key == WILD ? evkey[e] != want : evkey[e] != key)
				continue;
			if (k->buffer) {
				CHECK(k->nhist < MAX_HIST);
				k->hist[k->nhist][m] = ev[e].index;
				k->hist_key[k->nhist][m] = evkey[e];
			}
			m++;
			hi = ev[e].index > hi ? ev[e].index : hi;
		}
		if (key != WILD)
			break;
	}
	if (!m)
		return;		/* nothing of this key */
	k->last = hi > k->last ? hi : k->last;
	if (!k->buffer)
		return;		/* nobody watches: not kept */
	k->hist_n[k->nhist++] = m;
	k->head_live = true;
	k->head_hi = hi;
}

/*
 * Event e of the batch is of key @arg % 3, or of the next key where bit e
 * of @keymix is set; it has the new index, or, where bit e of @old is
 * set, an old one (at or below what its key's snapshots hold): the
 * changes of several commits published together, late.
 */
static void op_publish(struct pstate *p, uint8_t arg, uint8_t keymix)
{
	uint32_t n = 1 + (arg / NREAL) % 3, old = arg / (NREAL * 3) % 8;
	struct eventbuf_event ev[3];
	uint64_t index = ++p->next_index;
	uint8_t evkey[3];

	op_name = "publish";
	for (uint32_t e = 0; e < n; e++) {
		int key = (arg % NREAL + ((keymix >> e) & 1)) % NREAL;
		uint64_t last = p->keys[key].last;
		uint64_t ix = (old >> e) & 1 ? last - (last && e) : index;

		evkey[e] = (uint8_t)key;
		ev[e] = (struct eventbuf_event){ .index = ix, .topic = "t",
						 .key = keys[key],
						 .payload = "live" };
	}
	CHECK(eventbuf_publish(p->pub, ev, n, release_cb,
			       release_rec_new()) == 0);
	/* The wildcard's last index is the topic's, old events included
	 * (its handler's snapshot index). */
	for (int key = 0; key < NKEYS; key++)
		key_gets(&p->keys[key], key, ev, evkey, n);
}

static void op_close_key(struct pstate *p, uint8_t arg)
{
	int key = arg % NKEYS, n = attached(p, key);

	op_name = "close_key";
	CHECK(eventbuf_publisher_close_key(p->pub, "t", keys[key]) == n);
	for (int i = 0; i < NSUBS; i++) {
		struct msub *s = &p->subs[i];

		if (s->sub && s->attached && s->key == key) {
			s->attached = false;
			s->closed = -ECONNRESET;
		}
	}
	key_detach(p, key);
}

static void op_expire(struct pstate *p)
{
	op_name = "expire_caches";
	__eventbuf_publisher_expire_all(p->pub);
	for (int key = 0; key < NKEYS; key++)
		p->keys[key].cached = false;
}

static void check_stats(struct pstate *p)
{
	struct eventbuf_publisher_stats st;
	uint64_t subs = 0, kbs = 0, cached = 0;

	op_name = "stats";
	for (int i = 0; i < NSUBS; i++)
		subs += p->subs[i].sub && p->subs[i].attached;
	for (int key = 0; key < NKEYS; key++) {
		kbs += p->keys[key].buffer;
		cached += p->keys[key].buffer && p->keys[key].cached;
	}
	CHECK(eventbuf_publisher_stats(p->pub, &st) == 0);
	CHECK(st.subscriptions == subs);
	CHECK(st.key_buffers == kbs);
	CHECK(st.cache_entries == cached);
}

static void pstate_init(struct pstate *p, bool ttl)
{
	struct eventbuf_publisher_config cfg = {
		.snapshot_ttl_ms = ttl ? 3600 * 1000 : 0,
	};

	memset(p, 0, sizeof(*p));
	p->ttl = ttl;
	CHECK(eventbuf_publisher_new(&cfg, &p->pub) == 0);
	CHECK(eventbuf_publisher_register(p->pub, "t", handler, p,
					  EVENTBUF_TOPIC_WILDCARD) == 0);
}

static void pstate_free(struct pstate *p)
{
	for (int i = 0; i < NSUBS; i++)
		eventbuf_unsubscribe(p->subs[i].sub);
	eventbuf_publisher_free(p->pub);
}


/* ------------------------------------------------------------------ */
/* The poller                                                          */
/* ------------------------------------------------------------------ */

static struct eventbuf_poller *poller;
static bool grouping;		/* the poller hands out cohorts */
static bool gopen;		/* op_group_step() left gcur open */
static struct eventbuf_poll_group gcur;
static bool gin[NSUBS];		/* its members as last seen */
static uint64_t group_batches_stepped;	/* test_fuzz_replay checks it */

static void poller_forget(struct bstate *b, struct pstate *p)
{
	for (int i = 0; i < NREADERS; i++)
		b->readers[i].polled = b->readers[i].dry = false;
	for (int i = 0; i < NSUBS; i++)
		p->subs[i].polled = p->subs[i].dry = false;
}

/* Has the model something for an object that ran dry? */
static bool reader_has_more(struct bstate *b, int i)
{
	return model_next(b, b->readers[i].pos) < b->nitems;
}

static bool sub_has_more(struct pstate *p, int i)
{
	struct msub *s = &p->subs[i];

	uint64_t want[3];
	uint8_t wkey[3];
	size_t h;

	return s->closed || (s->expect == EXPECT_LIVE &&
			     next_batch(&p->keys[s->key], s, &h, want, wkey));
}

/*
 * A batch a group handed to member @j: its next batch, and a whole
 * publish (a group never reads one the member's snapshot covered in part).
 */
static void group_batch_seen(struct pstate *p, int j,
			     const struct eventbuf_event *ev, size_t n)
{
	struct msub *s = &p->subs[j];
	struct mkey *k = &p->keys[s->key];

	CHECK(!s->closed && s->expect == EXPECT_LIVE);
	CHECK(live_seen(k, s, 0, ev, n));
}

/* A group just handed out: each member an attached subscription, once. */
static void group_check(struct pstate *p, const struct eventbuf_poll_group *g)
{
	bool in[NSUBS] = { false };

	CHECK(g->count > 0 && g->count <= NSUBS);
	for (size_t m = 0; m < g->count; m++) {
		int j = (int)((uintptr_t)g->members[m].data - 1 - NREADERS);

		CHECK(!g->members[m].reader);
		CHECK(j >= 0 && j < NSUBS && !in[j]);
		CHECK(p->subs[j].sub == g->members[m].sub);
		CHECK(p->subs[j].polled);
		in[j] = true;
		p->subs[j].dry = false;
	}
}

/*
 * The next batch of @g: 1 when read (the next of every member still in
 * it), 0 at its end, where they are dry. The members are taken from
 * @g's array before the call: the call that ends the group may free it.
 */
static int group_step(struct pstate *p, const struct eventbuf_poll_group *g)
{
	const struct eventbuf_event *ev;
	size_t n;
	int ret;

	memset(gin, 0, sizeof(gin));
	for (size_t m = 0; m < g->count; m++)
		if (g->members[m].sub)	/* cleared: it left */
			gin[(uintptr_t)g->members[m].data - 1 - NREADERS] = true;
	ret = eventbuf_poller_group_next(poller, &ev, &n);
	if (ret == 0) {
		for (int j = 0; j < NSUBS; j++)
			if (gin[j])
				group_batch_seen(p, j, ev, n);
		return 1;
	}
	CHECK(ret == -EAGAIN && !ev && !n);
	for (int j = 0; j < NSUBS; j++)
		if (gin[j])
			p->subs[j].dry = true;
	return 0;
}

/* Every group, each read to its end. */
static void poller_groups(struct pstate *p)
{
	struct eventbuf_poll_group g;
	int ret;

	op_name = "poller_group";
	while ((ret = eventbuf_poller_group(poller, &g)) > 0) {
		group_check(p, &g);
		while (group_step(p, &g))
			;
	}
	CHECK(ret == 0);
}

/*
 * One step of a group read across operations: collect and take one
 * group, or read one batch of the open one. A member the publisher closed
 * reads the group's batches to its end, which the model does not follow:
 * such a group is broken up by a ready call instead.
 */
static int poller_collect(struct bstate *b, struct pstate *p, size_t max);
static void poller_ready(struct bstate *b, struct pstate *p, size_t max);

static void op_group_step(struct bstate *b, struct pstate *p)
{
	int ret;

	if (!grouping) {
		poller_ready(b, p, NREADERS + NSUBS);
		return;
	}
	if (!gopen) {
		poller_collect(b, p, NREADERS + NSUBS);
		op_name = "poller_group_step";
		ret = eventbuf_poller_group(poller, &gcur);
		CHECK(ret >= 0);
		if (ret)
			group_check(p, &gcur);
		gopen = ret > 0;
		return;
	}
	op_name = "poller_group_step";
	for (size_t m = 0; m < gcur.count; m++) {
		if (gcur.members[m].sub &&
		    p->subs[(uintptr_t)gcur.members[m].data - 1 - NREADERS].closed) {
			poller_ready(b, p, NREADERS + NSUBS);
			return;
		}
	}
	gopen = group_step(p, &gcur);
	group_batches_stepped += gopen;
}

/* Collect every report: each names an attached object, with its data,
 * once. Returns how many. */
static int poller_collect(struct bstate *b, struct pstate *p, size_t max)
{
	struct eventbuf_poll_event evs[NREADERS + NSUBS];
	bool seen_r[NREADERS] = { false }, seen_s[NSUBS] = { false };
	int n, total = 0;

	op_name = "poller_ready";
	gopen = false;	/* the call breaks an open group up */
	do {
		n = eventbuf_poller_ready(poller, evs, max);
		CHECK(n >= 0 && (size_t)n <= max);
		for (int e = 0; e < n; e++) {
			CHECK(!evs[e].reader != !evs[e].sub);
			if (evs[e].reader) {
				int i = (int)((uintptr_t)evs[e].data - 1);

				CHECK(i >= 0 && i < NREADERS);
				CHECK(b->readers[i].r == evs[e].reader);
				CHECK(b->readers[i].polled && !seen_r[i]);
				seen_r[i] = true;
				b->readers[i].dry = false;
			} else {
				int i = (int)((uintptr_t)evs[e].data - 1 - NREADERS);

				CHECK(i >= 0 && i < NSUBS);
				CHECK(p->subs[i].sub == evs[e].sub);
				CHECK(p->subs[i].polled && !seen_s[i]);
				seen_s[i] = true;
				p->subs[i].dry = false;
			}
		}
		total += n > 0 ? n : 0;
	} while (n > 0);
	return total;
}

/*
 * Collect every report, then read every group, as a loop does until its
 * descriptor stops firing: a group may hand a waiter back to be reported
 * (one that read on its own while its link's entry waited to be taken),
 * and the next collect reports it. Then every dry object with something
 * to read was reported, or read in a group.
 */
static void poller_ready(struct bstate *b, struct pstate *p, size_t max)
{
	poller_collect(b, p, max);
	while (grouping) {
		poller_groups(p);
		if (!poller_collect(b, p, max))
			break;
	}
	for (int i = 0; i < NREADERS; i++)
		CHECK(!b->readers[i].dry || !reader_has_more(b, i));
	for (int i = 0; i < NSUBS; i++)
		CHECK(!p->subs[i].dry || !sub_has_more(p, i));
}

static void op_poller(struct bstate *b, struct pstate *p, uint8_t arg)
{
	int i = (arg >> 5) % NREADERS, j = (arg >> 5) % NSUBS;
	void *rdata = (void *)(uintptr_t)(1 + i);
	void *sdata = (void *)(uintptr_t)(1 + NREADERS + j);
	struct eventbuf_reader *r = b->readers[i].r;
	struct msub *s = &p->subs[j];
	int ret;

	if (!poller) {
		op_name = "poller_new";
		CHECK(eventbuf_poller_new(&poller) == 0);
		grouping = arg & 2;
		if (grouping)
			CHECK(eventbuf_poller_enable_groups(poller) == 0);
		return;
	}
	switch ((arg >> 1) % 8) {
	case 0:
		op_name = "poller_free";
		eventbuf_poller_free(poller);
		poller = NULL;
		gopen = false;
		poller_forget(b, p);
		return;
	case 1:
		op_name = "poller_add_reader";
		if (!r)
			return;
		ret = eventbuf_poller_add_reader(poller, r, rdata);
		CHECK(ret == (b->readers[i].polled ? -EBUSY : 0));
		b->readers[i].polled = true;
		b->readers[i].parked_fd = -1;
		return;
	case 2:
		op_name = "poller_del_reader";
		if (!r)
			return;
		ret = eventbuf_poller_del_reader(poller, r);
		CHECK(ret == (b->readers[i].polled ? 0 : -ENOENT));
		b->readers[i].polled = b->readers[i].dry = false;
		return;
	case 3:
		op_name = "poller_add_sub";
		if (!s->sub)
			return;
		ret = eventbuf_poller_add_sub(poller, s->sub, sdata);
		CHECK(ret == (s->polled ? -EBUSY : 0));
		s->polled = true;
		return;
	case 4:
		op_name = "poller_del_sub";
		if (!s->sub)
			return;
		ret = eventbuf_poller_del_sub(poller, s->sub);
		CHECK(ret == (s->polled ? 0 : -ENOENT));
		s->polled = s->dry = false;
		return;
	case 5:
		op_group_step(b, p);
		return;
	default:
		poller_ready(b, p, 1 + arg % (NREADERS + NSUBS));
		return;
	}
}

/* ------------------------------------------------------------------ */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct bstate b;
	static struct pstate p;

	op_no = 0;
	op_name = "setup";
	bstate_init(&b);
	pstate_init(&p, size && (data[0] & 1));
	for (size_t i = 1; i + 1 < size && op_no < MAX_OPS; i += 2, op_no++) {
		uint8_t arg = data[i + 1];

		switch (data[i] % 16) {
		case 0: case 1: case 2:	op_append(&b, arg); break;
		case 3:		op_error(&b, arg); break;
		case 4:		op_splice(&b, arg); break;
		case 5:		op_self_splice(&b); break;
		case 6:		op_reader(&b, arg); break;
		case 7: case 8:	op_read(&b, arg); break;
		case 9:		op_park(&b, arg); break;
		case 10:	op_held(&b, arg); break;
		case 11:	op_subscribe(&p, arg, data[i] / 16); break;
		case 12:	op_publish(&p, arg, data[i] / 16); break;
		case 13:	op_sub_read(&p, arg); break;
		case 14:	op_close_key(&p, arg); break;
		default:
			if (arg & 1)
				op_poller(&b, &p, arg);
			else if (arg & 2)
				op_expire(&p);
			else
				check_stats(&p);
			break;
		}
	}
	check_stats(&p);
	if (poller)
		poller_ready(&b, &p, NREADERS + NSUBS);
	op_name = "teardown";
	eventbuf_poller_free(poller);	/* detaches, then the objects go */
	poller = NULL;
	gopen = false;
	pstate_free(&p);
	bstate_free(&b);
	if (++inputs % 64 == 0)
		check_all_released();
	return 0;
}

#ifndef FUZZ_REPLAY
/* libFuzzer's exit hook is not portable: check what is left at exit. */
__attribute__((destructor)) static void fuzz_api_fini(void)
{
	check_all_released();
}
#endif

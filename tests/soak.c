// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * A bounded soak: make soak SOAK_SECONDS=N.
 *
 * For N seconds, at once:
 *  - a writer appends to a raw buffer; reader threads join at its head,
 *    read with eventbuf_reader_next() (timeout and a cancellation fd that
 *    another thread fires at random), check that indexes follow each
 *    other, and leave after a random number of batches;
 *  - a publisher thread commits changes to KEYS keys and publishes them;
 *    subscriber threads subscribe (fresh, or resuming from what they saw),
 *    check that every change of their key arrives once and in order after
 *    the snapshot, and unsubscribe after a random time; some carry a lag
 *    limit; a closer thread force-closes random keys; the snapshot cache
 *    has a short TTL, so entries come and go;
 *  - an event-loop thread makes a poller per round, attaches subscriptions
 *    and raw readers to it, waits with eventbuf_poller_wait(), reads each
 *    reported object until -EAGAIN with the same checks, detaches and
 *    re-attaches some, resubscribes closed ones, and frees the poller with
 *    everything still attached.
 * Every second it samples RSS, open descriptors and live items, and
 * prints the curve. It fails if a check failed, if RSS or descriptors
 * grew between the first and the last third of the run (beyond a fixed
 * slack), or if, after everything stopped and a grace period passed, any
 * batch was not released exactly once or anything is left.
 *
 * The RSS test sees only a fast leak: a struct lost per subscription
 * (about 20 KB/s here) stayed inside its slack. The AddressSanitizer
 * build (make soak CONFIG_ASAN=y, in CI) catches every leak at exit
 * instead (LeakSanitizer); there RSS is not judged, since ASan's
 * quarantine keeps freed memory resident.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <eventbuf/poller.h>
#include <eventbuf/publisher.h>

#include "helpers.h"

#define KEYS 8
#define NREADERS 4
#define NSUBSCRIBERS 6
#define MAX_SAMPLES 4096

static _Atomic bool stop;
static _Atomic uint64_t failures;
static _Atomic uint64_t released_batches, published_batches;
static _Atomic uint64_t reads_checked, sub_rounds, sub_events, closes;
static _Atomic uint64_t reader_rounds, cancels;
static _Atomic uint64_t poller_rounds, poller_reads;
static int cancel_fd;

#define FAIL(...)							\
	do {								\
		if (atomic_fetch_add(&failures, 1) < 10)		\
			fprintf(stderr, "soak: " __VA_ARGS__);		\
	} while (0)

static void pause_us(long us)
{
	struct timespec ts = { us / 1000000, (us % 1000000) * 1000 };

	nanosleep(&ts, NULL);
}

/* Each published batch carries one of these; its release checks it. */
struct token {
	_Atomic int released;
};

/*
 * Released tokens are kept a while before they are freed: a second
 * release of a batch released recently then finds its mark, instead of
 * freed memory (where it would be caught only by luck, if at all).
 */
#define TOKENS_KEPT 65536

static struct token *_Atomic tokens_kept[TOKENS_KEPT];
static _Atomic size_t tokens_next;

static void release_token(struct eventbuf_event *events, size_t n, void *arg)
{
	struct token *t = arg;
	size_t slot;

	(void)events;
	(void)n;
	if (atomic_fetch_add(&t->released, 1) != 0) {
		FAIL("a batch was released twice\n");
		return;		/* keep it: freeing twice would hide nothing */
	}
	atomic_fetch_add(&released_batches, 1);
	slot = atomic_fetch_add(&tokens_next, 1) % TOKENS_KEPT;
	free(atomic_exchange(&tokens_kept[slot], t));
}

static void tokens_free(void)
{
	for (size_t i = 0; i < TOKENS_KEPT; i++)
		free(atomic_exchange(&tokens_kept[i], NULL));
}

static struct token *token_new(void)
{
	struct token *t = calloc(1, sizeof(*t));

	if (t)
		atomic_fetch_add(&published_batches, 1);
	return t;
}

/* A batch that was not published: take it back off the books. */
static void token_unused(struct token *t)
{
	atomic_fetch_sub(&published_batches, 1);
	free(t);
}

/* ------------------------------------------------------------------ */
/* The raw buffer: a writer, readers joining and leaving               */
/* ------------------------------------------------------------------ */

static struct eventbuf *raw;

static void *raw_writer(void *arg)
{
	uint64_t index = 0;

	(void)arg;
	while (!atomic_load(&stop)) {
		for (int i = 0; i < 256; i++) {
			struct eventbuf_event ev = { .index = index + 1 };
			struct token *t = token_new();
			int ret;

			if (!t)
				continue;
			ret = eventbuf_append(raw, &ev, 1, release_token, t);
			if (ret) {
				token_unused(t);
				FAIL("append: %d\n", ret);
				continue;
			}
			index++;
		}
		pause_us(200);
	}
	return NULL;
}

static void raw_read_round(unsigned int *seed)
{
	uint64_t want = 0, limit = 1000 + rand_r(seed) % 20000;
	struct eventbuf_reader *r;
	struct eventbuf_item *head;
	int ret;

	/* Concurrently with the writer; the drop comes after the joins. */
	ret = eventbuf_head(raw, &head);
	if (ret) {
		FAIL("head: %d\n", ret);
		return;
	}
	if (eventbuf_item_count(head))
		want = eventbuf_item_events(head)[0].index + 1;
	ret = eventbuf_reader_new(head, &r);
	eventbuf_item_put(head);
	if (ret) {
		FAIL("reader_new: %d\n", ret);
		return;
	}
	for (uint64_t got = 0; got < limit && !atomic_load(&stop);) {
		const struct eventbuf_item *it;
		uint64_t index;

		ret = eventbuf_reader_next(r, 100, cancel_fd, &it);
		if (ret == -ETIMEDOUT)
			continue;
		if (ret == -ECANCELED) {
			atomic_fetch_add(&cancels, 1);
			break;	/* a cancelled reader leaves */
		}
		if (ret) {
			FAIL("reader_next: %d\n", ret);
			break;
		}
		index = eventbuf_item_events(it)[0].index;
		if (want && index != want)
			FAIL("reader: index %" PRIu64 " after %" PRIu64 "\n",
			     index, want - 1);
		want = index + 1;
		got++;
		atomic_fetch_add(&reads_checked, 1);
	}
	eventbuf_reader_free(r);
	atomic_fetch_add(&reader_rounds, 1);
}

static void *raw_reader(void *arg)
{
	unsigned int seed = (unsigned int)(uintptr_t)arg;

	while (!atomic_load(&stop)) {
		raw_read_round(&seed);
		pause_us(rand_r(&seed) % 5000);
	}
	return NULL;
}

/* Fires the shared cancellation fd now and then, then clears it. */
static void *canceller(void *arg)
{
	unsigned int seed = 7;

	(void)arg;
	while (!atomic_load(&stop)) {
		uint64_t one = 1;

		pause_us(20000 + rand_r(&seed) % 200000);
		if (write(cancel_fd, &one, sizeof(one)) != sizeof(one))
			FAIL("cancel write\n");
		pause_us(1000);
		if (read(cancel_fd, &one, sizeof(one)) != sizeof(one))
			FAIL("cancel read\n");
	}
	return NULL;
}

/* ------------------------------------------------------------------ */
/* The publisher                                                       */
/* ------------------------------------------------------------------ */

static const char *const keys[KEYS] = { "k0", "k1", "k2", "k3",
					"k4", "k5", "k6", "k7" };
static struct eventbuf_publisher *pub;

static struct {
	pthread_mutex_t lock;
	uint64_t index;			/* the last change's, any key */
	uint64_t key_index[KEYS], key_seq[KEYS];
} store = { .lock = PTHREAD_MUTEX_INITIALIZER };

static int key_no(const char *key)
{
	return key[1] - '0';
}

static int handler(void *arg, const char *topic, const char *key,
		   struct eventbuf_snapshot *snap, uint64_t *index)
{
	struct eventbuf_event ev = { .topic = topic, .key = key };
	int k = key_no(key);

	(void)arg;
	pthread_mutex_lock(&store.lock);
	ev.index = store.key_index[k];
	ev.payload = (void *)(uintptr_t)store.key_seq[k];
	pthread_mutex_unlock(&store.lock);
	*index = ev.index;
	return ev.index ? eventbuf_snapshot_append(snap, &ev, 1, NULL, NULL) : 0;
}

/* Commit, then publish: the snapshot may be ahead of the stream. */
static void *publisher(void *arg)
{
	unsigned int seed = 11;

	(void)arg;
	while (!atomic_load(&stop)) {
		for (int i = 0; i < 64; i++) {
			int k = (int)(rand_r(&seed) % KEYS);
			struct eventbuf_event ev = { .topic = "soak",
						     .key = keys[k] };
			struct token *t = token_new();
			int ret;

			if (!t)
				continue;
			pthread_mutex_lock(&store.lock);
			ev.index = ++store.index;
			store.key_index[k] = ev.index;
			ev.payload = (void *)(uintptr_t)++store.key_seq[k];
			pthread_mutex_unlock(&store.lock);
			ret = eventbuf_publish(pub, &ev, 1, release_token, t);
			if (ret) {
				token_unused(t);
				FAIL("publish: %d\n", ret);
			}
		}
		pause_us(500);
	}
	return NULL;
}

struct subscriber {
	unsigned int seed;
	uint64_t last_index[KEYS];	/* to resume from */
	uint64_t last_seq[KEYS];	/* its sequence number; 0: unknown */
};

/* One subscription: snapshot, then each sequence number once, in order. */
static void sub_round(struct subscriber *s)
{
	int k = (int)(rand_r(&s->seed) % KEYS);
	struct eventbuf_subscribe_req req = {
		.topic = "soak", .key = keys[k],
		.index = rand_r(&s->seed) % 2 ? s->last_index[k] : 0,
		.lag_limit = rand_r(&s->seed) % 3 ? 0 : 4096,
	};
	int64_t end = now_ms() + 10 + rand_r(&s->seed) % 300;
	struct eventbuf_subscription *sub;
	/* 0: not known until the snapshot; resumed, the one after the last
	 * event seen, so that a resume that loses an event is caught. */
	uint64_t want = req.index && s->last_seq[k] ? s->last_seq[k] + 1 : 0;
	bool live = req.index != 0;
	int ret = eventbuf_subscribe(pub, &req, &sub);

	if (ret) {
		FAIL("subscribe: %d\n", ret);
		return;
	}
	while (now_ms() < end && !atomic_load(&stop)) {
		const struct eventbuf_event *ev;
		size_t n;

		ret = eventbuf_sub_next(sub, 50, -1, &ev, &n);
		if (ret == -ETIMEDOUT)
			continue;
		if (ret == -ECONNRESET || ret == -ENOBUFS) {
			atomic_fetch_add(&closes, 1);
			break;
		}
		if (ret) {
			FAIL("sub_next: %d\n", ret);
			break;
		}
		if (eventbuf_event_is_new_snapshot(ev)) {
			live = false;
			want = 0;
			continue;
		}
		if (eventbuf_event_is_end_of_snapshot(ev)) {
			live = true;
			s->last_index[k] = ev->index;
			s->last_seq[k] = 0;
			continue;
		}
		for (size_t i = 0; i < n; i++) {
			uint64_t seq = (uint64_t)(uintptr_t)ev[i].payload;

			if (live && want && seq != want)
				FAIL("%s: seq %" PRIu64 " after %" PRIu64 "\n",
				     keys[k], seq, want - 1);
			want = seq + 1;
			if (live) {
				s->last_index[k] = ev[i].index;
				s->last_seq[k] = seq;
				atomic_fetch_add(&sub_events, 1);
			}
		}
	}
	eventbuf_unsubscribe(sub);
	atomic_fetch_add(&sub_rounds, 1);
}

static void *subscriber_run(void *arg)
{
	struct subscriber *s = arg;

	while (!atomic_load(&stop))
		sub_round(s);
	return NULL;
}

static void *closer(void *arg)
{
	unsigned int seed = 13;

	(void)arg;
	while (!atomic_load(&stop)) {
		pause_us(10000 + rand_r(&seed) % 90000);
		if (eventbuf_publisher_close_key(pub, "soak",
						 keys[rand_r(&seed) % KEYS]) < 0)
			FAIL("close_key\n");
	}
	return NULL;
}

/* ------------------------------------------------------------------ */
/* An event loop with a poller                                         */
/* ------------------------------------------------------------------ */

#define LOOP_SUBS 16
#define LOOP_READERS 2

struct loop_obj {
	struct eventbuf_subscription *sub;
	struct eventbuf_reader *r;
	int key;
	uint64_t want;		/* next seq (sub) or index (reader); 0: any */
	bool live, attached;
};

static void loop_sub_new(struct eventbuf_poller *p, struct loop_obj *o,
			 unsigned int *seed)
{
	struct eventbuf_subscribe_req req = { .topic = "soak" };
	int ret;

	o->key = (int)(rand_r(seed) % KEYS);
	req.key = keys[o->key];
	req.lag_limit = rand_r(seed) % 2 ? 0 : 4096;
	o->want = 0;
	o->live = false;
	o->attached = false;
	ret = eventbuf_subscribe(pub, &req, &o->sub);
	if (ret) {
		FAIL("loop subscribe: %d\n", ret);
		o->sub = NULL;
		return;
	}
	ret = eventbuf_poller_add_sub(p, o->sub, o);
	if (ret)
		FAIL("poller_add_sub: %d\n", ret);
	o->attached = !ret;
}

/* Events read by subscription @o: its key's sequence, in order. */
static void loop_seen(struct loop_obj *o, const struct eventbuf_event *ev,
		      size_t n)
{
	for (size_t i = 0; i < n; i++) {
		uint64_t seq = (uint64_t)(uintptr_t)ev[i].payload;

		if (o->live && o->want && seq != o->want)
			FAIL("loop %s: seq %" PRIu64 " after %" PRIu64 "\n",
			     keys[o->key], seq, o->want - 1);
		o->want = seq + 1;
		if (o->live)
			atomic_fetch_add(&poller_reads, 1);
	}
}

/* Read @o until -EAGAIN or the end; false once it ended (closed). */
static bool loop_drain(struct loop_obj *o)
{
	const struct eventbuf_event *ev;
	const struct eventbuf_item *it;
	size_t n;
	int ret;

	for (;;) {
		if (o->r) {
			ret = eventbuf_reader_next_nonblock(o->r, &it);
			if (ret == -EAGAIN)
				return true;
			if (ret) {
				FAIL("loop reader: %d\n", ret);
				return true;
			}
			ev = eventbuf_item_events(it);
			if (o->want && ev[0].index != o->want)
				FAIL("loop reader: index %" PRIu64 " after %" PRIu64 "\n",
				     ev[0].index, o->want - 1);
			o->want = ev[0].index + 1;
			atomic_fetch_add(&poller_reads, 1);
			continue;
		}
		ret = eventbuf_sub_next_nonblock(o->sub, &ev, &n);
		if (ret == -EAGAIN)
			return true;
		if (ret == -ECONNRESET || ret == -ENOBUFS) {
			atomic_fetch_add(&closes, 1);
			return false;
		}
		if (ret) {
			FAIL("loop sub_next: %d\n", ret);
			return false;
		}
		if (eventbuf_event_is_end_of_snapshot(ev)) {
			o->live = true;
			continue;
		}
		loop_seen(o, ev, n);
	}
}

/*
 * The groups of a poller with groups enabled: each batch handed to each
 * member still in its group, checked like a read of its own; now and then
 * a member is unsubscribed in the middle of its group (its entry must
 * read NULL from then on) and a new subscription takes its place.
 */
static void loop_groups(struct eventbuf_poller *p, unsigned int *seed)
{
	const struct eventbuf_event *ev;
	struct eventbuf_poll_group g;
	size_t n;
	int ret;

	while ((ret = eventbuf_poller_group(p, &g)) > 0) {
		while (!eventbuf_poller_group_next(p, &ev, &n)) {
			for (size_t m = 0; m < g.count; m++) {
				struct loop_obj *o = g.members[m].data;

				if (!g.members[m].sub)
					continue;
				if (g.members[m].sub != o->sub || !o->live)
					FAIL("poller: a group member not ours\n");
				loop_seen(o, ev, n);
			}
			if (rand_r(seed) % 64 == 0) {
				size_t m = (size_t)rand_r(seed) % g.count;
				struct loop_obj *o = g.members[m].data;

				if (!g.members[m].sub)
					continue;
				eventbuf_unsubscribe(o->sub);
				if (g.members[m].sub || g.members[m].data)
					FAIL("poller: a member left, still named\n");
				loop_sub_new(p, o, seed);
			}
		}
	}
	if (ret)
		FAIL("poller_group: %d\n", ret);
}

static void loop_round(unsigned int *seed)
{
	struct loop_obj objs[LOOP_SUBS + LOOP_READERS];
	struct eventbuf_poll_event evs[8];
	struct eventbuf_poller *p;
	int64_t end = now_ms() + 50 + rand_r(seed) % 500;
	bool groups = rand_r(seed) % 2;
	int ret;

	memset(objs, 0, sizeof(objs));
	ret = eventbuf_poller_new(&p);
	if (ret) {
		FAIL("poller_new: %d\n", ret);
		return;
	}
	if (groups && eventbuf_poller_enable_groups(p))
		FAIL("poller_enable_groups\n");
	for (int i = 0; i < LOOP_SUBS; i++)
		loop_sub_new(p, &objs[i], seed);
	for (int i = LOOP_SUBS; i < LOOP_SUBS + LOOP_READERS; i++) {
		struct eventbuf_item *head = NULL;

		if (eventbuf_head(raw, &head) ||
		    eventbuf_reader_new(head, &objs[i].r)) {
			FAIL("loop reader_new\n");
			eventbuf_item_put(head);
			continue;
		}
		if (eventbuf_item_count(head))
			objs[i].want = eventbuf_item_events(head)[0].index + 1;
		eventbuf_item_put(head);
		ret = eventbuf_poller_add_reader(p, objs[i].r, &objs[i]);
		if (ret)
			FAIL("poller_add_reader: %d\n", ret);
		objs[i].attached = !ret;
	}
	while (now_ms() < end && !atomic_load(&stop)) {
		struct loop_obj *o;
		int n = eventbuf_poller_wait(p, evs, 8, 20, -1);

		if (n == -ETIMEDOUT)
			continue;
		if (n < 0) {
			FAIL("poller_wait: %d\n", n);
			break;
		}
		for (int i = 0; i < n; i++) {
			o = evs[i].data;
			if (!o->attached || (o->r ? evs[i].reader != o->r :
						    evs[i].sub != o->sub))
				FAIL("poller: a report for the wrong object\n");
			if (!loop_drain(o)) {
				eventbuf_unsubscribe(o->sub);	/* detaches */
				loop_sub_new(p, o, seed);
			}
		}
		if (groups)
			loop_groups(p, seed);
		/* Now and then, detach one and attach it again. */
		o = &objs[rand_r(seed) % (LOOP_SUBS + LOOP_READERS)];
		if (rand_r(seed) % 8 == 0 && o->attached) {
			ret = o->r ? eventbuf_poller_del_reader(p, o->r) :
				     eventbuf_poller_del_sub(p, o->sub);
			if (ret)
				FAIL("poller_del: %d\n", ret);
			ret = o->r ? eventbuf_poller_add_reader(p, o->r, o) :
				     eventbuf_poller_add_sub(p, o->sub, o);
			if (ret)
				FAIL("poller_add again: %d\n", ret);
			o->attached = !ret;
		}
	}
	/* Freed with everything attached: detaches them. */
	eventbuf_poller_free(p);
	for (int i = 0; i < LOOP_SUBS + LOOP_READERS; i++) {
		eventbuf_unsubscribe(objs[i].sub);
		eventbuf_reader_free(objs[i].r);
	}
	atomic_fetch_add(&poller_rounds, 1);
}

static void *event_loop(void *arg)
{
	unsigned int seed = 17;

	(void)arg;
	while (!atomic_load(&stop))
		loop_round(&seed);
	return NULL;
}

/* ------------------------------------------------------------------ */
/* Sampling                                                            */
/* ------------------------------------------------------------------ */

struct sample {
	int64_t ms;
	long rss_kb;
	int fds;
	uint64_t live_items, eventfds;
};

static void take_sample(struct sample *s, int64_t t0)
{
	struct eventbuf_stats st;

	eventbuf_stats(&st);
	*s = (struct sample){ .ms = now_ms() - t0, .rss_kb = rss_kb(),
			      .fds = count_fds(), .live_items = st.live_items,
			      .eventfds = st.open_eventfds };
}

static int cmp_long(const void *a, const void *b)
{
	long x = *(const long *)a, y = *(const long *)b;

	return (x > y) - (x < y);
}

/* The median RSS and the largest descriptor count of samples [from, to). */
static void third_of(const struct sample *s, int from, int to, long *rss,
		     int *fds)
{
	long v[MAX_SAMPLES], f[MAX_SAMPLES];
	int n = 0;

	for (int i = from; i < to; i++) {
		v[n] = s[i].rss_kb;
		f[n++] = s[i].fds;
	}
	qsort(v, (size_t)n, sizeof(v[0]), cmp_long);
	qsort(f, (size_t)n, sizeof(f[0]), cmp_long);
	*rss = v[n / 2];
	*fds = (int)f[n / 2];
}

/*
 * Growth: the last third against the first (after a warm-up second). RSS
 * breathes with the readers' lag and the allocator, so the medians are
 * compared, with 25% + 8 MiB of slack; descriptors too (their medians),
 * with room for the readers and subscriptions that may be mid-way. The
 * peaks were compared once: a few seconds of pollers and links in flight
 * (31-39 descriptors in the first third of a 20 s run, one sample of 51
 * in the last) failed a run of code that leaks none, now and before.
 */
static bool grew(const struct sample *s, int n)
{
	long rss_first, rss_last;
	int fds_first, fds_last, third = (n - 1) / 3;

	if (third < 1)
		return false;	/* too short to say */
	third_of(s, 1, 1 + third, &rss_first, &fds_first);
	third_of(s, n - third, n, &rss_last, &fds_last);
	printf("soak: median RSS %ld KiB in the first third, %ld KiB in the last; median fds %d, %d\n",
	       rss_first, rss_last, fds_first, fds_last);
	return rss_last > rss_first + rss_first / 4 + 8192 ||
	       fds_last > fds_first + NREADERS + NSUBSCRIBERS;
}

int main(int argc, char **argv)
{
	int seconds = argc > 1 ? atoi(argv[1]) : 60;
	struct eventbuf_publisher_config cfg = { .snapshot_ttl_ms = 20 };
	static struct sample samples[MAX_SAMPLES];
	struct subscriber subs[NSUBSCRIBERS];
	pthread_t tid[NREADERS + NSUBSCRIBERS + 5];
	struct eventbuf_stats st;
	int nthreads = 0, n = 0;
	int64_t t0, end;
	bool growth;

	if (seconds < 1 || seconds > MAX_SAMPLES - 1) {
		fprintf(stderr, "usage: soak SECONDS (1..%d)\n", MAX_SAMPLES - 1);
		return 2;
	}
	cancel_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (cancel_fd < 0 || eventbuf_new(&raw) ||
	    eventbuf_publisher_new(&cfg, &pub) ||
	    eventbuf_publisher_register(pub, "soak", handler, NULL, 0)) {
		fprintf(stderr, "soak: set-up failed\n");
		return 1;
	}
	/*
	 * Its publisher gives each key fewer than the 100,000 events a
	 * second a buffer needs to take slabs: let every buffer take them
	 * after its first 1,024 items, so that key buffers' slab pools
	 * (trimmed, recycled, outliving a force-closed key) are soaked too.
	 */
	__eventbuf_slab_warmup_ns = INT64_MAX;
	t0 = now_ms();
	end = t0 + (int64_t)seconds * 1000;
	pthread_create(&tid[nthreads++], NULL, raw_writer, NULL);
	pthread_create(&tid[nthreads++], NULL, canceller, NULL);
	pthread_create(&tid[nthreads++], NULL, publisher, NULL);
	pthread_create(&tid[nthreads++], NULL, closer, NULL);
	pthread_create(&tid[nthreads++], NULL, event_loop, NULL);
	for (int i = 0; i < NREADERS; i++)
		pthread_create(&tid[nthreads++], NULL, raw_reader,
			       (void *)(uintptr_t)(100 + i));
	for (int i = 0; i < NSUBSCRIBERS; i++) {
		subs[i] = (struct subscriber){ .seed = 200 + (unsigned int)i };
		pthread_create(&tid[nthreads++], NULL, subscriber_run, &subs[i]);
	}
	printf("soak: %d s; t(s) RSS(KiB) fds live-items eventfds\n", seconds);
	for (int64_t next = t0; next <= end; next += 1000) {
		pause_us((long)(next - now_ms()) * 1000 > 0 ?
			 (long)(next - now_ms()) * 1000 : 0);
		take_sample(&samples[n], t0);
		printf("soak: %5.1f %8ld %4d %8" PRIu64 " %4" PRIu64 "\n",
		       samples[n].ms / 1000.0, samples[n].rss_kb,
		       samples[n].fds, samples[n].live_items,
		       samples[n].eventfds);
		fflush(stdout);
		n++;
	}
	atomic_store(&stop, true);
	for (int i = 0; i < nthreads; i++)
		pthread_join(tid[i], NULL);
	growth = grew(samples, n);

	eventbuf_publisher_free(pub);
	eventbuf_drop(raw);
	eventbuf_barrier();
	tokens_free();
	eventbuf_stats(&st);
	close(cancel_fd);
	printf("soak: %" PRIu64 " batches published, %" PRIu64 " released; "
	       "%" PRIu64 " reads checked by %" PRIu64 " reader rounds (%"
	       PRIu64 " cancelled); %" PRIu64 " subscriptions, %" PRIu64
	       " live events checked, %" PRIu64 " closed by the publisher; "
	       "%" PRIu64 " poller rounds, %" PRIu64 " reads through pollers\n",
	       atomic_load(&published_batches), atomic_load(&released_batches),
	       atomic_load(&reads_checked), atomic_load(&reader_rounds),
	       atomic_load(&cancels), atomic_load(&sub_rounds),
	       atomic_load(&sub_events), atomic_load(&closes),
	       atomic_load(&poller_rounds), atomic_load(&poller_reads));
	printf("soak: after: %" PRIu64 " live items, %" PRIu64 " eventfds\n",
	       st.live_items, st.open_eventfds);
	if (atomic_load(&released_batches) != atomic_load(&published_batches))
		FAIL("%" PRIu64 " batches never released\n",
		     atomic_load(&published_batches) -
		     atomic_load(&released_batches));
	if (st.live_items || st.open_eventfds)
		FAIL("left behind: %" PRIu64 " items, %" PRIu64 " eventfds\n",
		     st.live_items, st.open_eventfds);
#if defined(EVENTBUF_TSAN) || defined(EVENTBUF_SANITIZE)
	/* ThreadSanitizer's shadow of memory freed and reused stays
	 * resident, and so does AddressSanitizer's quarantine, so RSS grows
	 * under them whatever the library does: the plain run judges
	 * growth; these, the races and (LeakSanitizer, at exit) leaks. */
	if (growth)
		printf("soak: growth not judged under a sanitizer\n");
#else
	if (growth)
		FAIL("RSS or descriptors grew with time\n");
#endif
	if (!atomic_load(&reads_checked) || !atomic_load(&sub_events) ||
	    !atomic_load(&poller_reads))
		FAIL("nothing was read\n");
	if (atomic_load(&failures)) {
		printf("soak: FAILED (%" PRIu64 " failures)\n",
		       atomic_load(&failures));
		return 1;
	}
	printf("soak: OK\n");
	return 0;
}

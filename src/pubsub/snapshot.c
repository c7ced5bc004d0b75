// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * DOC: Theory of operation - snapshots, the splice and the cache
 *
 * Snapshots. A subscriber that is not up to date gets a snapshot: the topic's
 * handler writes the key's state into a fresh buffer (records again), the
 * publisher appends an end-of-snapshot item (index = the snapshot's, payload
 * = __eventbuf_end_of_snapshot) and splices: starting at the key buffer's
 * head itself (its events may be newer than the snapshot, and starting after
 * it would lose them), it links the first item with an event above the
 * snapshot's index, or, when none has one, an item that follows what the
 * head is followed by. All this happens under pub->lock, so no publish
 * can slip between the head and the splice.
 * Events at or below the snapshot's index in the items after the splice
 * (a batch that straddles it, or a caller publishing out of order) are
 * skipped one by one by the subscription (->skip_through): nothing in a
 * snapshot is delivered twice, and nothing above it is lost.
 *
 * Cache. With a TTL, the snapshot's first item is kept (a reference) for
 * the next subscribers of the key; a new-snapshot-to-follow event is
 * never cached, each subscriber that needs one gets its own. An expiry
 * thread drops entries whose own deadline has passed (each entry carries
 * its deadline, so a timer can never evict a newer entry) and the put
 * lets reclamation free the snapshot through call_rcu(). The entries wait
 * on a queue in deadline order - one TTL for all, a monotonic clock, so a
 * new entry goes last - and each expiry pass looks only at the entries
 * due and the next one, not at every key buffer: a publisher with 100,000
 * keys holds its lock for the keys that expire, not for all of them.
 *
 * Where a new subscriber starts (__eventbuf_start_of()): at the key
 * buffer's head when the caller's index says it is up to date, else at
 * the cached snapshot when there is a usable one, else at a new snapshot.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pubsub.h"

struct eventbuf_snapshot {
	struct eventbuf *buf;
	/* what the handler's events may point at: its key and its topic */
	struct keyname *kn;
	struct eventbuf_publisher *pub;
};

int eventbuf_snapshot_append(struct eventbuf_snapshot *snap,
			     const struct eventbuf_event *events, size_t n,
			     eventbuf_release_fn release, void *arg)
{
	struct record *rec;
	int ret;

	if (!snap || !events || !n || n > PUBLISH_MAX)
		return -EINVAL;
	rec = __eventbuf_record_new(n, 1, release, arg);
	if (!rec)
		return -ENOMEM;
	memcpy(rec->events, events, n * sizeof(*events));
	record_groups(rec)[0] = (struct group){ rec, 0, (uint32_t)n, 0 };
	rec->kn = __eventbuf_keyname_get(snap->kn);
	rec->pub = snap->pub;
	atomic_fetch_add_explicit(&snap->pub->refs, 1, memory_order_relaxed);
	ret = __eventbuf_append_group(snap->buf, &record_groups(rec)[0]);
	if (ret)
		rec->release = NULL;	/* not published: the caller keeps it */
	__eventbuf_record_put(rec);
	return ret;
}

/*
 * The handler's code as a terminal error. The library's own codes (the
 * reserved ones and the publisher's closes) become -EIO, so that a
 * subscriber never takes a handler's failure for a force-close, a lag
 * limit or a shutdown (the table in eventbuf.h).
 */
static int snapshot_fail(struct eventbuf *buf, int err)
{
	if (err >= 0 || code_is_reserved(err) || err == -ECONNRESET ||
	    err == -ENOBUFS || err == -ESHUTDOWN)
		err = -EIO;
	return eventbuf_append_error(buf, err, "snapshot handler failed");
}

/* The greatest index of a key buffer's live batch. */
static uint64_t batch_hi(const struct eventbuf_item *it)
{
	const struct group *g = eventbuf_item_events(it)[0].payload;
	const struct eventbuf_event *ev = &g->rec->events[g->off];
	uint64_t hi = 0;

	for (uint32_t i = 0; i < g->n; i++)
		hi = ev[i].index > hi ? ev[i].index : hi;
	return hi;
}

/*
 * Link the snapshot to the key buffer: from the head itself, the first
 * item with an event above @index, or else an item that yields exactly
 * what is published after the head.
 */
static int splice(struct eventbuf *snap, struct keybuf *kb, uint64_t index)
{
	struct eventbuf_item *cur = NULL, *next;
	int ret = eventbuf_head(kb->buf, &cur);

	while (!ret) {
		if (eventbuf_item_count(cur) && batch_hi(cur) > index)
			break;
		ret = eventbuf_item_follow_after(cur, &next);
		if (ret)
			break;
		eventbuf_item_put(cur);
		cur = next;
		if (!eventbuf_item_count(cur))
			break;	/* the tip: follows what comes next */
	}
	if (!ret)
		ret = eventbuf_append_item(snap, cur);
	eventbuf_item_put(cur);
	return ret;
}

/* Release callback of an end-of-snapshot item: its key. */
static void keyname_release(struct eventbuf_event *events, size_t n, void *arg)
{
	(void)events;
	(void)n;
	__eventbuf_keyname_put(arg);
}

/* The end-of-snapshot item: it holds the key its event points at. */
static int append_end_of_snapshot(struct eventbuf *buf, struct keybuf *kb,
				  uint64_t index)
{
	struct eventbuf_event eos = {
		.index = index, .topic = kb->topic->name, .key = kb->kn->s,
		.payload = (void *)__eventbuf_end_of_snapshot,
	};
	int ret = eventbuf_append(buf, &eos, 1, keyname_release,
				  __eventbuf_keyname_get(kb->kn));

	if (ret)
		__eventbuf_keyname_put(kb->kn);
	return ret;
}

/*
 * Build a snapshot of @kb's key; *firstp: a reference on its first item.
 * *indexp: the snapshot's index; *failedp: the handler failed, so the
 * snapshot is a terminal error, to be delivered but never cached.
 */
static int snapshot_build(struct eventbuf_publisher *pub, struct keybuf *kb,
			  struct eventbuf_item **firstp, uint64_t *indexp,
			  bool *failedp)
{
	struct eventbuf_snapshot snap = { .kn = kb->kn, .pub = pub };
	unsigned int saved;
	int ret;

	*indexp = 0;
	*failedp = false;
	ret = eventbuf_new(&snap.buf);
	if (ret)
		return ret;
	ret = eventbuf_head(snap.buf, firstp);
	if (ret)
		goto out_drop;
	pub->nbuilt++;
	saved = __eventbuf_callback;
	__eventbuf_callback = saved | EVENTBUF_IN_SNAPSHOT;
	ret = kb->topic->handler(kb->topic->arg, kb->topic->name, kb->kn->s,
				 &snap, indexp);
	__eventbuf_callback = saved;
	if (ret) {
		*failedp = true;
		*indexp = 0;
		ret = snapshot_fail(snap.buf, ret);
		goto out_drop;
	}
	ret = append_end_of_snapshot(snap.buf, kb, *indexp);
	if (!ret)
		ret = splice(snap.buf, kb, *indexp);
out_drop:
	eventbuf_drop(snap.buf);
	if (ret && *firstp) {
		eventbuf_item_put(*firstp);
		*firstp = NULL;
	}
	return ret;
}

static void *expiry_run(void *arg);

static void cache_store(struct eventbuf_publisher *pub, struct keybuf *kb,
			struct eventbuf_item *first, uint64_t index)
{
	if (!pub->ttl_ns || eventbuf_item_get(first))
		return;
	__eventbuf_cache_drop(pub, kb);
	kb->cache = first;
	kb->cache_index = index;
	kb->cache_seq = kb->seq;
	kb->cache_expires = __eventbuf_now_ns() + pub->ttl_ns;
	kb->cache_prev = pub->cache_last;
	kb->cache_next = NULL;
	if (pub->cache_last)
		pub->cache_last->cache_next = kb;
	else
		pub->cache_first = kb;
	pub->cache_last = kb;
	pub->ncache++;
	if (!pub->expiry_started &&
	    !pthread_create(&pub->expiry, NULL, expiry_run, pub))
		pub->expiry_started = true;
	/* A later deadline than the queue's first wakes nobody. */
	if (pub->cache_first == kb)
		pthread_cond_signal(&pub->expiry_cond);
}

/* The next deadline, or 0; drops the entries past theirs. */
static int64_t expire_locked(struct eventbuf_publisher *pub, int64_t now)
{
	struct keybuf *kb;

	while ((kb = pub->cache_first) && kb->cache_expires <= now)
		__eventbuf_cache_drop(pub, kb);
	return kb ? kb->cache_expires : 0;
}

#ifdef CONFIG_EVENTBUF_TESTING
/* Drop every cached snapshot now, as if their time had come (tests). */
void __eventbuf_publisher_expire_all(struct eventbuf_publisher *pub)
{
	pthread_mutex_lock(&pub->lock);
	expire_locked(pub, INT64_MAX);
	pthread_mutex_unlock(&pub->lock);
}
#endif

static void *expiry_run(void *arg)
{
	struct eventbuf_publisher *pub = arg;

	pthread_mutex_lock(&pub->lock);
	while (!pub->expiry_stop) {
		int64_t next = expire_locked(pub, __eventbuf_now_ns());

		if (!next) {
			pthread_cond_wait(&pub->expiry_cond, &pub->lock);
		} else {
			struct timespec ts = {
				.tv_sec = next / 1000000000,
				.tv_nsec = next % 1000000000,
			};

			pthread_cond_timedwait(&pub->expiry_cond, &pub->lock,
					       &ts);
		}
	}
	pthread_mutex_unlock(&pub->lock);
	return NULL;
}

/* Up to date: @index is the greatest of the head batch's, the last one
 * a subscriber that read everything was handed. */
static bool up_to_date(struct eventbuf_item *head, uint64_t index)
{
	return index && eventbuf_item_count(head) && batch_hi(head) == index;
}

/*
 * A cached snapshot is as old as the batches published since it was
 * spliced: a subscriber with a lag limit starts that far behind, so it is
 * given the cache only while that leaves it half its limit.
 */
static bool cache_usable(const struct keybuf *kb, uint64_t lag_limit)
{
	if (!kb->cache || kb->cache_expires <= __eventbuf_now_ns())
		return false;
	return !lag_limit || kb->seq - kb->cache_seq <= lag_limit / 2;
}

int __eventbuf_start_of(struct eventbuf_publisher *pub, struct keybuf *kb,
			const struct eventbuf_subscribe_req *req,
			struct start_point *st)
{
	struct eventbuf_item *head;
	int ret = eventbuf_head(kb->buf, &head);

	if (ret)
		return ret;
	st->seq = kb->seq;
	if (up_to_date(head, req->index)) {
		st->item = head;
		st->snapshot = false;
		st->skip_through = req->index;
		return 0;
	}
	eventbuf_item_put(head);
	st->snapshot = true;
	if (cache_usable(kb, req->lag_limit) && !eventbuf_item_get(kb->cache)) {
		st->item = kb->cache;
		st->skip_through = kb->cache_index;
		st->seq = kb->cache_seq;
		return 0;
	}
	ret = snapshot_build(pub, kb, &st->item, &st->skip_through,
			     &st->failed);
	if (!ret && !st->failed)
		cache_store(pub, kb, st->item, st->skip_through);
	return ret;
}


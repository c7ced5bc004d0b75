// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * DOC: Theory of operation - the publisher
 *
 * One mutex (pub->lock) serialises everything that writes: publishing,
 * subscribing (snapshot handlers included), closing, unsubscribing and
 * cache expiry. It makes the publisher the single writer of every key
 * buffer (buffer.c's rule), and of its tables. Subscriptions read their
 * buffers without it (subscription.c).
 *
 * Key buffers. A (topic, key) gets a buffer when its first subscriber
 * comes, and loses it, with its cached snapshot, when its last one goes:
 * a new subscriber must not be spliced onto a buffer that no longer
 * receives events. Events of keys without a buffer are not kept.
 *
 * Records. A publish call copies its events into one record, sorted by
 * (topic, key) so that each key's events - and each topic's, for wildcard
 * subscribers - are one contiguous slice (a *group*). Each key buffer gets
 * one item per call whose single event carries the group: its index is
 * the group's first, its payload points at the group. The record counts
 * the items made from it; the items' release callbacks drop those counts,
 * and the last one calls the caller's release with the record's events.
 * Subscribers hand out the record's slice, not the item: a subscription
 * closed by the publisher lets go of its items at once, but keeps the
 * record of the batch it last returned until its next call, so what the
 * caller holds stays valid (subscription.c).
 *
 * Snapshots. A subscriber that is not up to date gets a snapshot: the
 * topic's handler writes the key's state into a fresh buffer (records
 * again), the publisher appends an end-of-snapshot item (index = the
 * snapshot's, payload = __eventbuf_end_of_snapshot) and splices: starting
 * at the key buffer's head itself (upstream once missed the head), it
 * links the first item whose index is above the snapshot's, or, when none
 * is, an item that follows what the head is followed by. All this happens
 * under the lock, so no publish can slip between the head and the splice.
 * Should an event at or below the snapshot's index still be appended
 * later (a caller publishing out of order), the subscription skips it
 * (->skip_through): nothing in a snapshot is delivered twice.
 *
 * Cache. With a TTL, the snapshot's first item is kept (a reference) for
 * the next subscribers of the key; a new-snapshot-to-follow event is
 * never cached, each subscriber that needs one gets its own. An expiry
 * thread drops entries whose own deadline has passed (each entry carries
 * its deadline, so a timer can never evict a newer entry) and the put
 * lets reclamation free the snapshot through call_rcu().
 *
 * Closing. Force-close (by key, by tag), the lag limit and shutdown detach
 * the subscription from its key buffer under pub->lock, then, under the
 * subscription's own lock, set its terminal code, take a reference on the
 * record of its last batch, free its reader (its items go back to
 * reclamation now, not when the caller unsubscribes) and make its
 * descriptor readable. Lock order: pub->lock, then a subscription's lock.
 *
 * Lifetime. Subscriptions hold a reference on the publisher, so the topic
 * names they point at outlive eventbuf_publisher_free() until the last
 * eventbuf_unsubscribe(). A key buffer's key string (struct keyname) is
 * counted: the key buffer, each subscription of it, each snapshot record
 * (the handler's events may point at the key it was given) and each
 * end-of-snapshot item hold a reference, so an event handed out never
 * points at a key freed by a close or by the last unsubscribe. Snapshot
 * records also hold the publisher, whose topic name the handler's events
 * may point at, so their release callbacks may read it even after
 * eventbuf_publisher_free().
 *
 * Lag. A subscription's ->last_seq is the key buffer's batch count it has
 * read up to. A subscriber starting from a cached snapshot starts at the
 * count the cache was spliced at (->cache_seq), which is why a subscriber
 * with a lag limit is given the cache only while that is within half its
 * limit: otherwise it would be closed while reading as fast as it can.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include "pubsub.h"

#define PUBLISH_MAX 65536u
#define LAG_CHECK_EVERY 16u

/* Framing payloads: compared by address. */
const char __eventbuf_end_of_snapshot[] = "end of snapshot";
const char __eventbuf_new_snapshot[] = "new snapshot to follow";

bool eventbuf_event_is_end_of_snapshot(const struct eventbuf_event *ev)
{
	return ev && ev->payload == (void *)__eventbuf_end_of_snapshot;
}

bool eventbuf_event_is_new_snapshot(const struct eventbuf_event *ev)
{
	return ev && ev->payload == (void *)__eventbuf_new_snapshot;
}

/*
 * A snapshot handler runs under pub->lock, a release callback may run
 * under a subscription's lock: a publisher call from either would wait
 * for itself (context.c).
 */
static bool in_callback(void)
{
	return __eventbuf_callback != 0;
}

/*
 * ->magic: PUB_LIVE from eventbuf_publisher_new() to eventbuf_publisher_free(),
 * then PUB_FREED while subscriptions keep the memory, poisoned before it
 * is freed. CONFIG_EVENTBUF_DEBUG builds check it at every call's entry.
 */
#define PUB_LIVE	0x7075626cu
#define PUB_FREED	0xdeadb0b5u

static void pub_check(const struct eventbuf_publisher *pub, const char *fn)
{
#ifdef CONFIG_EVENTBUF_DEBUG
	if (pub->magic == PUB_LIVE)
		return;
	fprintf(stderr, "eventbuf: %s(): publisher %p was freed by eventbuf_publisher_free(); only its subscriptions may still be used (read, eventbuf_sub_fd(), eventbuf_unsubscribe())\n",
		fn, (const void *)pub);
	abort();
#else
	(void)pub;
	(void)fn;
#endif
}

static int64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ------------------------------------------------------------------ */
/* Records                                                             */
/* ------------------------------------------------------------------ */

/* A record for @n events and up to @ngroups groups, one allocation. */
static struct record *record_new(size_t n, size_t ngroups,
				 eventbuf_release_fn release, void *arg)
{
	struct record *rec;

	rec = malloc(sizeof(*rec) + n * sizeof(rec->events[0]) +
		     ngroups * sizeof(struct group));
	if (!rec)
		return NULL;
	atomic_init(&rec->refs, 1);	/* the publish call's, for now */
	rec->n = (uint32_t)n;
	rec->release = release;
	rec->arg = arg;
	rec->kn = NULL;
	rec->pub = NULL;
	rec->groups = (struct group *)(rec->events + n);
	return rec;
}

void __eventbuf_record_get(struct record *rec)
{
	atomic_fetch_add_explicit(&rec->refs, 1, memory_order_relaxed);
}

void __eventbuf_record_put(struct record *rec)
{
	/* acq_rel: every user's reads happen before the release. */
	if (atomic_fetch_sub_explicit(&rec->refs, 1, memory_order_acq_rel) != 1)
		return;
	if (rec->release)
		__eventbuf_release_call(rec->release, rec->events, rec->n,
					rec->arg);
	if (rec->kn)
		__eventbuf_keyname_put(rec->kn);
	if (rec->pub)
		__eventbuf_publisher_unref(rec->pub);
	free(rec);
}

static struct keyname *keyname_new(const char *key)
{
	size_t len = strlen(key) + 1;
	struct keyname *kn = malloc(sizeof(*kn) + len);

	if (kn) {
		atomic_init(&kn->refs, 1);
		memcpy(kn->s, key, len);
	}
	return kn;
}

static struct keyname *keyname_get(struct keyname *kn)
{
	atomic_fetch_add_explicit(&kn->refs, 1, memory_order_relaxed);
	return kn;
}

void __eventbuf_keyname_put(struct keyname *kn)
{
	if (atomic_fetch_sub_explicit(&kn->refs, 1, memory_order_acq_rel) == 1)
		free(kn);
}

/* Release callback of an end-of-snapshot item: its key. */
static void keyname_release(struct eventbuf_event *events, size_t n, void *arg)
{
	(void)events;
	(void)n;
	__eventbuf_keyname_put(arg);
}

/* Release callback of every publisher item: its group's record. */
static void group_release(struct eventbuf_event *events, size_t n, void *arg)
{
	(void)n;
	(void)arg;
	__eventbuf_record_put(((struct group *)events[0].payload)->rec);
}

/* Append @g as one item to @buf; the item takes a record reference. */
static int append_group(struct eventbuf *buf, struct group *g)
{
	const struct eventbuf_event *first = &g->rec->events[g->off];
	struct eventbuf_event ev = {
		.index = first->index,
		.topic = first->topic,
		.key = first->key,
		.payload = g,
	};
	int ret;

	__eventbuf_record_get(g->rec);
	ret = eventbuf_append(buf, &ev, 1, group_release, NULL);
	if (ret)
		__eventbuf_record_put(g->rec);
	return ret;
}

/* ------------------------------------------------------------------ */
/* Topics and key buffers                                              */
/* ------------------------------------------------------------------ */

static struct topic *topic_find(struct eventbuf_publisher *pub,
				const char *name)
{
	for (unsigned int i = 0; name && i < pub->ntopics; i++)
		if (!strcmp(pub->topics[i]->name, name))
			return pub->topics[i];
	return NULL;
}

static uint64_t key_hash(const struct topic *t, const char *key)
{
	uint64_t h = 1469598103934665603ull ^ t->id;	/* FNV-1a */

	for (; *key; key++)
		h = (h ^ (unsigned char)*key) * 1099511628211ull;
	return h;
}

static struct keybuf *kb_find(struct eventbuf_publisher *pub,
			      const struct topic *t, const char *key)
{
	uint64_t h = key_hash(t, key);
	struct keybuf *kb;

	if (!pub->nbuckets)
		return NULL;
	for (kb = pub->buckets[h & (pub->nbuckets - 1)]; kb; kb = kb->hnext)
		if (kb->hash == h && kb->topic == t && !strcmp(kb->kn->s, key))
			return kb;
	return NULL;
}

static int kb_table_grow(struct eventbuf_publisher *pub)
{
	unsigned int n = pub->nbuckets ? pub->nbuckets * 2 : 64;
	struct keybuf **b = calloc(n, sizeof(*b));

	if (!b)
		return -ENOMEM;
	for (unsigned int i = 0; i < pub->nbuckets; i++) {
		struct keybuf *kb, *next;

		for (kb = pub->buckets[i]; kb; kb = next) {
			next = kb->hnext;
			kb->hnext = b[kb->hash & (n - 1)];
			b[kb->hash & (n - 1)] = kb;
		}
	}
	free(pub->buckets);
	pub->buckets = b;
	pub->nbuckets = n;
	return 0;
}

static int kb_get(struct eventbuf_publisher *pub, struct topic *t,
		  const char *key, struct keybuf **kbp)
{
	struct keybuf *kb = kb_find(pub, t, key);
	unsigned int slot;

	if (kb) {
		*kbp = kb;
		return 0;
	}
	if (pub->nkeybufs >= pub->nbuckets && kb_table_grow(pub))
		return -ENOMEM;
	kb = calloc(1, sizeof(*kb));
	if (!kb)
		return -ENOMEM;
	kb->kn = keyname_new(key);
	if (!kb->kn || eventbuf_new(&kb->buf)) {
		free(kb->kn);
		free(kb);
		return -ENOMEM;
	}
	kb->topic = t;
	kb->hash = key_hash(t, key);
	slot = kb->hash & (pub->nbuckets - 1);
	kb->hnext = pub->buckets[slot];
	pub->buckets[slot] = kb;
	pub->nkeybufs++;
	*kbp = kb;
	return 0;
}

static void cache_drop(struct eventbuf_publisher *pub, struct keybuf *kb)
{
	if (!kb->cache)
		return;
	eventbuf_item_put(kb->cache);
	kb->cache = NULL;
	pub->ncache--;
}

/* Under pub->lock: the last subscriber left @kb. */
static void kb_free(struct eventbuf_publisher *pub, struct keybuf *kb)
{
	struct keybuf **pp = &pub->buckets[kb->hash & (pub->nbuckets - 1)];

	while (*pp != kb)
		pp = &(*pp)->hnext;
	*pp = kb->hnext;
	pub->nkeybufs--;
	cache_drop(pub, kb);
	eventbuf_drop(kb->buf);
	__eventbuf_keyname_put(kb->kn);
	free(kb);
}

/* ------------------------------------------------------------------ */
/* Subscriptions in the publisher's tables (under pub->lock)           */
/* ------------------------------------------------------------------ */

static struct eventbuf_subscription **tag_slot(struct eventbuf_publisher *pub,
					       uint64_t tag)
{
	return &pub->by_tag[(tag * 0x9e3779b97f4a7c15ull) >> 58];
}

static void sub_attach(struct eventbuf_publisher *pub, struct keybuf *kb,
		       struct eventbuf_subscription *sub)
{
	sub->kb = kb;
	sub->kb_prev = NULL;
	sub->kb_next = kb->subs;
	if (kb->subs)
		kb->subs->kb_prev = sub;
	kb->subs = sub;
	kb->nsubs++;
	kb->nlimited += sub->lag_limit != 0;
	if (sub->tag) {
		struct eventbuf_subscription **slot = tag_slot(pub, sub->tag);

		sub->tag_prev = NULL;
		sub->tag_next = *slot;
		if (*slot)
			(*slot)->tag_prev = sub;
		*slot = sub;
	}
	pub->nsubs++;
}

/* Take @sub out of every table; drop its key buffer if it was the last. */
static void sub_detach(struct eventbuf_publisher *pub,
		       struct eventbuf_subscription *sub)
{
	struct keybuf *kb = sub->kb;

	if (!kb)
		return;
	if (sub->kb_prev)
		sub->kb_prev->kb_next = sub->kb_next;
	else
		kb->subs = sub->kb_next;
	if (sub->kb_next)
		sub->kb_next->kb_prev = sub->kb_prev;
	kb->nsubs--;
	kb->nlimited -= sub->lag_limit != 0;
	if (sub->tag) {
		if (sub->tag_prev)
			sub->tag_prev->tag_next = sub->tag_next;
		else
			*tag_slot(pub, sub->tag) = sub->tag_next;
		if (sub->tag_next)
			sub->tag_next->tag_prev = sub->tag_prev;
	}
	sub->kb = NULL;
	pub->nsubs--;
	if (!kb->nsubs)
		kb_free(pub, kb);
}

/* 1 if this closed @sub, 0 if it was closed already (its error read). */
static int close_locked(struct eventbuf_publisher *pub,
			struct eventbuf_subscription *sub, int code)
{
	sub_detach(pub, sub);
	return __eventbuf_sub_close(sub, code);
}

/* ------------------------------------------------------------------ */
/* The publisher                                                       */
/* ------------------------------------------------------------------ */

int eventbuf_publisher_new(const struct eventbuf_publisher_config *config,
			   struct eventbuf_publisher **pubp)
{
	struct eventbuf_publisher *pub;
	pthread_condattr_t attr;

	if (!pubp)
		return -EINVAL;
	pub = calloc(1, sizeof(*pub));
	if (!pub)
		return -ENOMEM;
	pub->magic = PUB_LIVE;
	pub->ttl_ns = config ? (int64_t)config->snapshot_ttl_ms * 1000000 : 0;
	atomic_init(&pub->refs, 1);
	pthread_mutex_init(&pub->lock, NULL);
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&pub->expiry_cond, &attr);
	pthread_condattr_destroy(&attr);
	*pubp = pub;
	return 0;
}

void __eventbuf_publisher_unref(struct eventbuf_publisher *pub)
{
	if (atomic_fetch_sub_explicit(&pub->refs, 1, memory_order_acq_rel) != 1)
		return;
	for (unsigned int i = 0; i < pub->ntopics; i++) {
		free(pub->topics[i]->name);
		free(pub->topics[i]);
	}
	free(pub->topics);
	free(pub->buckets);
	pthread_cond_destroy(&pub->expiry_cond);
	pthread_mutex_destroy(&pub->lock);
	pub->magic = PUB_FREED;
	free(pub);
}

void eventbuf_publisher_free(struct eventbuf_publisher *pub)
{
	bool join;

	if (!pub)
		return;
	if (in_callback())
		__eventbuf_misuse(__func__, "called from a snapshot handler or a release callback");
	pub_check(pub, __func__);
	pthread_mutex_lock(&pub->lock);
	pub->magic = PUB_FREED;
	pub->shut_down = true;
	for (unsigned int i = 0; i < pub->nbuckets; i++) {
		while (pub->buckets[i]) {
			struct keybuf *kb = pub->buckets[i];

			cache_drop(pub, kb);
			if (!kb->subs) {
				kb_free(pub, kb);
				continue;
			}
			/* The last close frees kb and unlinks it. */
			while (pub->buckets[i] == kb)
				close_locked(pub, kb->subs, -ESHUTDOWN);
		}
	}
	pub->expiry_stop = true;
	pthread_cond_signal(&pub->expiry_cond);
	join = pub->expiry_started;
	pthread_mutex_unlock(&pub->lock);
	if (join)
		pthread_join(pub->expiry, NULL);
	__eventbuf_publisher_unref(pub);
}

int eventbuf_publisher_register(struct eventbuf_publisher *pub,
				const char *name, eventbuf_snapshot_fn handler,
				void *arg, unsigned int flags)
{
	struct topic *t, **topics;
	int ret = 0;

	if (!pub || !name || !*name || !handler ||
	    (flags & ~EVENTBUF_TOPIC_WILDCARD))
		return -EINVAL;
	if (in_callback())
		return -EDEADLK;
	pub_check(pub, __func__);
	t = calloc(1, sizeof(*t));
	if (!t || !(t->name = strdup(name))) {
		free(t);
		return -ENOMEM;
	}
	t->handler = handler;
	t->arg = arg;
	t->flags = flags;
	pthread_mutex_lock(&pub->lock);
	if (topic_find(pub, name)) {
		ret = -EEXIST;
		goto out_free;
	}
	topics = realloc(pub->topics, (pub->ntopics + 1) * sizeof(*topics));
	if (!topics) {
		ret = -ENOMEM;
		goto out_free;
	}
	t->id = pub->ntopics;
	topics[pub->ntopics++] = t;
	pub->topics = topics;
	pthread_mutex_unlock(&pub->lock);
	return 0;
out_free:
	pthread_mutex_unlock(&pub->lock);
	free(t->name);
	free(t);
	return ret;
}

/* ------------------------------------------------------------------ */
/* Publishing                                                          */
/* ------------------------------------------------------------------ */

struct sorted {
	struct topic *topic;
	const char *key;	/* "" for none */
	uint32_t pos;		/* in the caller's array */
};

static int cmp_sorted(const void *a, const void *b)
{
	const struct sorted *x = a, *y = b;
	int c;

	if (x->topic->id != y->topic->id)
		return x->topic->id < y->topic->id ? -1 : 1;
	c = strcmp(x->key, y->key);
	if (c)
		return c;
	return (x->pos > y->pos) - (x->pos < y->pos);	/* stable */
}

/* Resolve topics and keys; -EINVAL for unknown topics or wildcard keys. */
static int resolve(struct eventbuf_publisher *pub,
		   const struct eventbuf_event *events, size_t n,
		   struct sorted *s)
{
	for (size_t i = 0; i < n; i++) {
		const char *key = events[i].key ? events[i].key : "";

		s[i].topic = topic_find(pub, events[i].topic);
		if (!s[i].topic || !strcmp(key, EVENTBUF_KEY_WILDCARD))
			return -EINVAL;
		s[i].key = key;
		s[i].pos = (uint32_t)i;
	}
	qsort(s, n, sizeof(*s), cmp_sorted);
	return 0;
}

/* Close the lagging subscribers of @kb (every LAG_CHECK_EVERY batches). */
static void check_lag(struct eventbuf_publisher *pub, struct keybuf *kb)
{
	struct eventbuf_subscription *sub, *next;

	if (!kb->nlimited || kb->seq % LAG_CHECK_EVERY)
		return;
	for (sub = kb->subs; sub; sub = next) {
		uint64_t seen = atomic_load_explicit(&sub->last_seq,
						     memory_order_relaxed);

		next = sub->kb_next;
		/* Its last close may free kb: stop at the last subscriber. */
		if (sub->lag_limit && kb->seq - seen > sub->lag_limit) {
			bool last = kb->nsubs == 1;

			close_locked(pub, sub, -ENOBUFS);
			if (last)
				return;
		}
	}
}

/*
 * Append group @g to @kb. When that fails, the key's subscribers would
 * miss a batch: close them (-ECONNRESET) so that they resubscribe rather
 * than read a stream with a hole.
 */
static void publish_group(struct eventbuf_publisher *pub, struct keybuf *kb,
			  struct group *g)
{
	g->seq = kb->seq + 1;
	if (append_group(kb->buf, g)) {
		while (kb->nsubs > 1)
			close_locked(pub, kb->subs, -ECONNRESET);
		close_locked(pub, kb->subs, -ECONNRESET);	/* frees kb */
		return;
	}
	kb->seq++;
	check_lag(pub, kb);
}

/* Where a group goes: looked up again when it is appended, since an
 * earlier group's failure may have dropped a key buffer. */
struct target {
	struct topic *topic;
	const char *key;
};

/* Walk the sorted events: one group per key with a buffer, and one per
 * topic for its wildcard buffer. Returns how many groups were filled. */
static size_t fill_groups(struct eventbuf_publisher *pub, struct record *rec,
			  const struct sorted *s, size_t n,
			  struct target *to)
{
	size_t ngroups = 0;

	for (size_t i = 0; i < n;) {
		struct keybuf *wild = kb_find(pub, s[i].topic,
					      EVENTBUF_KEY_WILDCARD);
		size_t t_end = i;

		while (t_end < n && s[t_end].topic == s[i].topic)
			t_end++;
		if (wild) {
			rec->groups[ngroups] = (struct group){ rec, (uint32_t)i,
				(uint32_t)(t_end - i), 0 };
			to[ngroups++] = (struct target){ s[i].topic,
							 EVENTBUF_KEY_WILDCARD };
		}
		while (i < t_end) {
			struct keybuf *kb = kb_find(pub, s[i].topic, s[i].key);
			size_t k_end = i;

			while (k_end < t_end && !strcmp(s[k_end].key, s[i].key))
				k_end++;
			if (kb) {
				rec->groups[ngroups] = (struct group){ rec,
					(uint32_t)i, (uint32_t)(k_end - i), 0 };
				to[ngroups++] = (struct target){ s[i].topic,
								 s[i].key };
			}
			i = k_end;
		}
	}
	return ngroups;
}

int eventbuf_publish(struct eventbuf_publisher *pub,
		     const struct eventbuf_event *events, size_t n,
		     eventbuf_release_fn release, void *arg)
{
	struct target *to = NULL;
	struct sorted *s = NULL;
	struct record *rec;
	size_t ngroups;
	int ret;

	if (!pub || !events || !n || n > PUBLISH_MAX)
		return -EINVAL;
	if (in_callback())
		return -EDEADLK;
	pub_check(pub, __func__);
	s = malloc(n * sizeof(*s));
	to = malloc(2 * n * sizeof(*to));
	rec = record_new(n, 2 * n, release, arg);
	if (!s || !to || !rec) {
		ret = -ENOMEM;
		free(rec);
		goto out;
	}
	pthread_mutex_lock(&pub->lock);
	ret = pub->shut_down ? -ESHUTDOWN : resolve(pub, events, n, s);
	if (ret) {
		pthread_mutex_unlock(&pub->lock);
		free(rec);
		goto out;
	}
	for (size_t i = 0; i < n; i++)
		rec->events[i] = events[s[i].pos];
	ngroups = fill_groups(pub, rec, s, n, to);
	for (size_t g = 0; g < ngroups; g++) {
		struct keybuf *kb = kb_find(pub, to[g].topic, to[g].key);

		if (kb)
			publish_group(pub, kb, &rec->groups[g]);
	}
	pthread_mutex_unlock(&pub->lock);
	/* Drop the call's own reference: with no buffer, this releases. */
	__eventbuf_record_put(rec);
out:
	free(s);
	free(to);
	return ret;
}

/* ------------------------------------------------------------------ */
/* Snapshots                                                           */
/* ------------------------------------------------------------------ */

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
	rec = record_new(n, 1, release, arg);
	if (!rec)
		return -ENOMEM;
	memcpy(rec->events, events, n * sizeof(*events));
	rec->groups[0] = (struct group){ rec, 0, (uint32_t)n, 0 };
	rec->kn = keyname_get(snap->kn);
	rec->pub = snap->pub;
	atomic_fetch_add_explicit(&snap->pub->refs, 1, memory_order_relaxed);
	ret = append_group(snap->buf, &rec->groups[0]);
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

/*
 * Link the snapshot to the key buffer: from the head itself, the first
 * item with an index above @index, or else an item that yields exactly
 * what is published after the head.
 */
static int splice(struct eventbuf *snap, struct keybuf *kb, uint64_t index)
{
	struct eventbuf_item *cur = NULL, *next;
	int ret = eventbuf_head(kb->buf, &cur);

	while (!ret) {
		if (eventbuf_item_count(cur) &&
		    eventbuf_item_events(cur)[0].index > index)
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

/* The end-of-snapshot item: it holds the key its event points at. */
static int append_end_of_snapshot(struct eventbuf *buf, struct keybuf *kb,
				  uint64_t index)
{
	struct eventbuf_event eos = {
		.index = index, .topic = kb->topic->name, .key = kb->kn->s,
		.payload = (void *)__eventbuf_end_of_snapshot,
	};
	int ret = eventbuf_append(buf, &eos, 1, keyname_release,
				  keyname_get(kb->kn));

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
	cache_drop(pub, kb);
	kb->cache = first;
	kb->cache_index = index;
	kb->cache_seq = kb->seq;
	kb->cache_expires = mono_ns() + pub->ttl_ns;
	pub->ncache++;
	if (!pub->expiry_started &&
	    !pthread_create(&pub->expiry, NULL, expiry_run, pub))
		pub->expiry_started = true;
	pthread_cond_signal(&pub->expiry_cond);
}

/* The next deadline, or 0; drops the entries past theirs. */
static int64_t expire_locked(struct eventbuf_publisher *pub, int64_t now)
{
	int64_t next = 0;

	for (unsigned int i = 0; i < pub->nbuckets; i++) {
		for (struct keybuf *kb = pub->buckets[i]; kb; kb = kb->hnext) {
			if (!kb->cache)
				continue;
			if (kb->cache_expires <= now)
				cache_drop(pub, kb);
			else if (!next || kb->cache_expires < next)
				next = kb->cache_expires;
		}
	}
	return next;
}

/* Drop every cached snapshot now, as if their time had come (tests). */
void __eventbuf_publisher_expire_all(struct eventbuf_publisher *pub)
{
	pthread_mutex_lock(&pub->lock);
	expire_locked(pub, INT64_MAX);
	pthread_mutex_unlock(&pub->lock);
}

static void *expiry_run(void *arg)
{
	struct eventbuf_publisher *pub = arg;

	pthread_mutex_lock(&pub->lock);
	while (!pub->expiry_stop) {
		int64_t next = expire_locked(pub, mono_ns());

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

/* ------------------------------------------------------------------ */
/* Subscribing                                                         */
/* ------------------------------------------------------------------ */

static bool up_to_date(struct eventbuf_item *head, uint64_t index)
{
	return index && eventbuf_item_count(head) &&
	       eventbuf_item_events(head)[0].index == index;
}

/* Where a new subscriber starts, and what it has seen of its key. */
struct start {
	struct eventbuf_item *item;	/* a reference */
	bool snapshot;
	uint64_t skip_through;		/* live batches it must not repeat */
	uint64_t seq;			/* its key buffer's batches covered */
	bool failed;			/* the handler failed: an error to read */
};

/*
 * A cached snapshot is as old as the batches published since it was
 * spliced: a subscriber with a lag limit starts that far behind, so it is
 * given the cache only while that leaves it half its limit.
 */
static bool cache_usable(const struct keybuf *kb, uint64_t lag_limit)
{
	if (!kb->cache || kb->cache_expires <= mono_ns())
		return false;
	return !lag_limit || kb->seq - kb->cache_seq <= lag_limit / 2;
}

static int start_of(struct eventbuf_publisher *pub, struct keybuf *kb,
		    const struct eventbuf_subscribe_req *req, struct start *st)
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

int eventbuf_subscribe(struct eventbuf_publisher *pub,
		       const struct eventbuf_subscribe_req *req,
		       struct eventbuf_subscription **subp)
{
	struct eventbuf_subscription *sub = NULL;
	struct eventbuf_reader *reader = NULL;
	struct start st = { 0 };
	struct keybuf *kb;
	struct topic *t;
	int ret;

	if (!pub || !req || !req->key || !subp)
		return -EINVAL;
	if (in_callback())
		return -EDEADLK;
	pub_check(pub, __func__);
	ret = __eventbuf_sub_alloc(pub, req, &sub);
	if (ret)
		return ret;
	pthread_mutex_lock(&pub->lock);
	t = topic_find(pub, req->topic);
	ret = pub->shut_down ? -ESHUTDOWN : t ? 0 : -EINVAL;
	if (!ret && !strcmp(req->key, EVENTBUF_KEY_WILDCARD) &&
	    !(t->flags & EVENTBUF_TOPIC_WILDCARD))
		ret = -EINVAL;
	if (!ret)
		ret = kb_get(pub, t, req->key, &kb);
	if (ret)
		goto out_unlock;
	ret = start_of(pub, kb, req, &st);
	if (!ret)
		ret = eventbuf_reader_new(st.item, &reader);
	eventbuf_item_put(st.item);
	if (ret) {
		if (!kb->nsubs)
			kb_free(pub, kb);
		goto out_unlock;
	}
	sub->topic = t->name;
	/* It will read the handler's error, never a batch: the lag limit
	 * must not replace that error with -ENOBUFS. */
	if (st.failed)
		sub->lag_limit = 0;
	sub_attach(pub, kb, sub);
	atomic_store_explicit(&sub->last_seq, st.seq, memory_order_relaxed);
	__eventbuf_sub_start(sub, reader, keyname_get(kb->kn),
			     st.snapshot && req->index, st.skip_through);
	pthread_mutex_unlock(&pub->lock);
	*subp = sub;
	return 0;
out_unlock:
	pthread_mutex_unlock(&pub->lock);
	__eventbuf_sub_free(sub);
	return ret;
}

void eventbuf_unsubscribe(struct eventbuf_subscription *sub)
{
	struct eventbuf_publisher *pub;

	if (!sub)
		return;
	if (in_callback())
		__eventbuf_misuse(__func__, "called from a snapshot handler or a release callback");
	pub = sub->pub;
	pthread_mutex_lock(&pub->lock);
	sub_detach(pub, sub);
	pthread_mutex_unlock(&pub->lock);
	__eventbuf_sub_free(sub);
}

int eventbuf_publisher_close_key(struct eventbuf_publisher *pub,
				 const char *topic, const char *key)
{
	struct keybuf *kb;
	struct topic *t;
	int n = 0;

	if (!pub || !topic || !key)
		return -EINVAL;
	if (in_callback())
		return -EDEADLK;
	pub_check(pub, __func__);
	pthread_mutex_lock(&pub->lock);
	t = topic_find(pub, topic);
	kb = t ? kb_find(pub, t, key) : NULL;
	if (!t) {
		n = -EINVAL;
	} else if (kb) {
		cache_drop(pub, kb);
		while (kb->nsubs > 1)
			n += close_locked(pub, kb->subs, -ECONNRESET);
		n += close_locked(pub, kb->subs, -ECONNRESET);	/* frees kb */
	}
	pthread_mutex_unlock(&pub->lock);
	return n;
}

int eventbuf_publisher_close_tag(struct eventbuf_publisher *pub, uint64_t tag)
{
	struct eventbuf_subscription *sub, *next;
	int n = 0;

	if (!pub || !tag)
		return -EINVAL;
	if (in_callback())
		return -EDEADLK;
	pub_check(pub, __func__);
	pthread_mutex_lock(&pub->lock);
	for (sub = *tag_slot(pub, tag); sub; sub = next) {
		next = sub->tag_next;
		if (sub->tag != tag)
			continue;
		n += close_locked(pub, sub, -ECONNRESET);
	}
	pthread_mutex_unlock(&pub->lock);
	return n;
}

int eventbuf_publisher_stats(struct eventbuf_publisher *pub,
			     struct eventbuf_publisher_stats *stats)
{
	if (!pub || !stats)
		return -EINVAL;
	if (in_callback())
		return -EDEADLK;
	pub_check(pub, __func__);
	pthread_mutex_lock(&pub->lock);
	stats->subscriptions = pub->nsubs;
	stats->key_buffers = pub->nkeybufs;
	stats->cache_entries = pub->ncache;
	stats->snapshots_built = pub->nbuilt;
	pthread_mutex_unlock(&pub->lock);
	eventbuf_stats(&stats->lib);
	return 0;
}

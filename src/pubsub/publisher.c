// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * DOC: Theory of operation - the publisher
 *
 * The pub/sub layer is five files: this one (the calls, publishing,
 * subscribing, closing), record.c (records, key names, framing),
 * keytable.c (topics, key buffers, tags), snapshot.c (snapshots, the
 * splice, the cache) and subscription.c (reading). Only this file calls
 * into subscription.c, and subscription.c calls none of the others but
 * record.c and keytable.c.
 *
 * One mutex (pub->lock) serialises everything that writes: publishing,
 * subscribing (snapshot handlers included), closing, unsubscribing and
 * cache expiry. It makes the publisher the single writer of every key
 * buffer (buffer.c's rule), and of its tables. Subscriptions read their
 * buffers without it (subscription.c).
 *
 * Closing. Force-close (by key, by tag), the lag limit and shutdown detach
 * the subscription from its key buffer under pub->lock, then, under the
 * subscription's own lock, set its terminal code, take a reference on the
 * record of its last batch, free its reader (its items go back to
 * reclamation now, not when the caller unsubscribes) and make its
 * descriptor readable. Lock order: pub->lock, then a subscription's lock.
 *
 * Lag. A subscription's ->last_seq is the key buffer's batch count it has
 * read up to. A subscriber starting from a cached snapshot starts at the
 * count the cache was spliced at (->cache_seq), which is why a subscriber
 * with a lag limit is given the cache only while that is within half its
 * limit: otherwise it would be closed while reading as fast as it can.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pubsub.h"

#define LAG_CHECK_EVERY EVENTBUF_LAG_CHECK_EVERY

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

/* 1 if this closed @sub, 0 if it was closed already (its error read). */
static int close_locked(struct eventbuf_publisher *pub,
			struct eventbuf_subscription *sub, int code)
{
	__eventbuf_sub_detach(pub, sub);
	return __eventbuf_sub_close(sub, code);
}

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

			__eventbuf_cache_drop(pub, kb);
			if (!kb->subs) {
				__eventbuf_kb_free(pub, kb);
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
	if (__eventbuf_topic_find(pub, name)) {
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

struct resolved_event {
	struct topic *topic;
	const char *key;	/* "" for none */
	uint64_t hash;		/* __eventbuf_key_hash(topic, key) */
	uint32_t pos;		/* in the caller's array */
	uint32_t group;		/* shared by the events of one (topic, key) */
};

/* Orders distinct keys: by topic, then by key (strcmp). */
static int cmp_keys(const void *a, const void *b)
{
	const struct resolved_event *x = a, *y = b;

	if (x->topic->id != y->topic->id)
		return x->topic->id < y->topic->id ? -1 : 1;
	return strcmp(x->key, y->key);
}

/* Scratch for resolve(): one allocation per publish, made before the lock. */
struct resolve_scratch {
	struct resolved_event *out;	/* [n], sorted: what resolve() fills */
	struct resolved_event *in;	/* [n], the caller's order */
	struct resolved_event *keys;	/* [n], one per distinct key */
	uint32_t *rank;			/* [n], a group's place in keys[] */
	uint32_t *slots;		/* [nslots], 1 + an event of the key */
	size_t nslots;
	void *heap;			/* what to free(), or NULL */
};

/*
 * Most publish calls carry a few events (a service publishes each change
 * as it happens): their scratch and destinations live on the stack, and
 * the call allocates only its record. The two allocations and frees that
 * this saves were a quarter of a one-event publish's instructions
 * (docs/pollers.md).
 */
#define PUBLISH_STACK	8
#define STACK_SLOTS	16	/* scratch_alloc()'s nslots for n <= 8 */

_Static_assert(STACK_SLOTS >= 2 * PUBLISH_STACK, "slots for n <= 8 events");

struct resolve_stack {
	struct resolved_event ev[3 * PUBLISH_STACK];
	uint32_t idx[PUBLISH_STACK + STACK_SLOTS];
};

static int scratch_alloc(struct resolve_scratch *sc, size_t n,
			 struct resolve_stack *stack)
{
	char *p;

	for (sc->nslots = 4; sc->nslots < 2 * n; sc->nslots *= 2)
		;
	sc->heap = NULL;
	if (n <= PUBLISH_STACK) {
		p = (char *)stack->ev;
	} else {
		p = sc->heap = malloc(3 * n * sizeof(struct resolved_event) +
				      (n + sc->nslots) * sizeof(uint32_t));
		if (!p)
			return -ENOMEM;
	}
	sc->out = (struct resolved_event *)p;
	sc->in = sc->out + n;
	sc->keys = sc->in + n;
	sc->rank = sc->heap ? (uint32_t *)(sc->keys + n) : stack->idx;
	sc->slots = sc->rank + n;
	memset(sc->slots, 0, sc->nslots * sizeof(uint32_t));
	return 0;
}

/* The group of in[i]'s (topic, key): an earlier event's, or a new one. */
static uint32_t group_of(struct resolve_scratch *sc, size_t i, uint32_t *ngroups)
{
	struct resolved_event *e = &sc->in[i];
	size_t mask = sc->nslots - 1;

	for (size_t h = e->hash & mask;; h = (h + 1) & mask) {
		const struct resolved_event *o;

		if (!sc->slots[h]) {
			sc->slots[h] = (uint32_t)i + 1;
			e->group = (*ngroups)++;
			sc->keys[e->group] = *e;
			return e->group;
		}
		o = &sc->in[sc->slots[h] - 1];
		if (o->hash == e->hash && o->topic == e->topic &&
		    !strcmp(o->key, e->key))
			return o->group;
	}
}

/*
 * Resolve topics and keys into @scp->out, sorted by (topic, key), stable;
 * -EINVAL for unknown topics or wildcard keys. Batches repeat few keys
 * many times, so this groups the events by a hash of their key first and
 * sorts only the distinct keys: n hash probes and d log d string
 * compares, where a sort of the events would make n log n.
 */
static int resolve(struct eventbuf_publisher *pub,
		   const struct eventbuf_event *events, size_t n,
		   const struct resolve_scratch *scp)
{
	struct resolve_scratch sc = *scp;
	uint32_t ngroups = 0, *at;

	for (size_t i = 0; i < n; i++) {
		const char *key = events[i].key ? events[i].key : "";
		struct resolved_event *e = &sc.in[i];

		e->topic = i && events[i].topic == events[i - 1].topic ?
			sc.in[i - 1].topic :
			__eventbuf_topic_find(pub, events[i].topic);
		if (!e->topic || !strcmp(key, EVENTBUF_KEY_WILDCARD))
			return -EINVAL;
		e->key = key;
		e->hash = __eventbuf_key_hash(e->topic, key);
		e->pos = (uint32_t)i;
		e->group = group_of(&sc, i, &ngroups);
	}
	if (ngroups > 1)
		qsort(sc.keys, ngroups, sizeof(*sc.keys), cmp_keys);
	/* Count each sorted key's events, make the counts first places,
	 * then place each event after the earlier ones of its key. */
	at = sc.slots;	/* reused (nslots >= n >= ngroups): a key's next place */
	for (uint32_t r = 0; r < ngroups; r++) {
		sc.rank[sc.keys[r].group] = r;
		at[r] = 0;
	}
	for (size_t i = 0; i < n; i++)
		at[sc.rank[sc.in[i].group]]++;
	for (uint32_t r = 0, sum = 0; r < ngroups; r++) {
		uint32_t c = at[r];

		at[r] = sum;
		sum += c;
	}
	for (size_t i = 0; i < n; i++)
		sc.out[at[sc.rank[sc.in[i].group]]++] = sc.in[i];
	return 0;
}

/* @kb must walk its subscribers by the time it has @slack more batches. */
static void lag_check_by(struct keybuf *kb, uint64_t slack)
{
	uint64_t at = slack > UINT64_MAX - kb->seq ? UINT64_MAX : kb->seq + slack;

	if (at < kb->lag_check_seq)
		kb->lag_check_seq = at;
}

/*
 * Close the lagging subscribers of @kb. A walk reads every subscriber of
 * the key, so it runs only when one of them may be over its limit: a
 * subscriber's lag grows by at most one per batch, so none can pass its
 * limit before the smallest slack (limit - lag) the last walk saw is used
 * up, and new subscribers bring the date forward (lag_check_by()). Past
 * that, walks come every LAG_CHECK_EVERY batches while someone is that
 * close, so a subscriber is closed at most that many batches after it
 * passed its limit. With 100,000 limited subscribers of one key that keep
 * up, a walk every 16 batches made a publish 137 us instead of 0.25 us
 * (2-core VM); now 5 us, the first walk's cost spread over 1,600 publishes.
 */
static void check_lag(struct eventbuf_publisher *pub, struct keybuf *kb)
{
	struct eventbuf_subscription *sub, *next;
	uint64_t slack = UINT64_MAX;

	if (!kb->nlimited || kb->seq < kb->lag_check_seq)
		return;
	for (sub = kb->subs; sub; sub = next) {
		/* The reader's WRITE_ONCE() in subscription.c: a count
		 * to compare, which orders nothing. */
		uint64_t lag = kb->seq - READ_ONCE(sub->last_seq);

		next = sub->kb_next;
		if (!sub->lag_limit)
			continue;
		if (lag <= sub->lag_limit) {
			if (sub->lag_limit - lag < slack)
				slack = sub->lag_limit - lag;
			continue;
		}
		/* Its last close may free kb: stop at the last subscriber. */
		if (kb->nsubs == 1) {
			close_locked(pub, sub, -ENOBUFS);
			return;
		}
		close_locked(pub, sub, -ENOBUFS);
	}
	kb->lag_check_seq = UINT64_MAX;
	lag_check_by(kb, slack > LAG_CHECK_EVERY ? slack : LAG_CHECK_EVERY);
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
	if (__eventbuf_append_group(kb->buf, g)) {
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
struct group_dest {
	struct topic *topic;
	const char *key;
	uint64_t hash;
};

/* Walk the sorted events: one group per key with a buffer, and one per
 * topic for its wildcard buffer. Returns how many groups were filled. */
static size_t fill_groups(struct eventbuf_publisher *pub, struct record *rec,
			  const struct resolved_event *s, size_t n,
			  struct group_dest *to)
{
	size_t ngroups = 0;

	for (size_t i = 0; i < n;) {
		uint64_t wild_hash = __eventbuf_key_hash(s[i].topic,
							 EVENTBUF_KEY_WILDCARD);
		struct keybuf *wild = __eventbuf_kb_find_hashed(pub, s[i].topic,
					      EVENTBUF_KEY_WILDCARD, wild_hash);
		size_t t_end = i;

		while (t_end < n && s[t_end].topic == s[i].topic)
			t_end++;
		if (wild) {
			record_groups(rec)[ngroups] = (struct group){ rec, (uint32_t)i,
				(uint32_t)(t_end - i), 0 };
			to[ngroups++] = (struct group_dest){ s[i].topic,
				EVENTBUF_KEY_WILDCARD, wild_hash };
		}
		while (i < t_end) {
			struct keybuf *kb = __eventbuf_kb_find_hashed(pub,
					s[i].topic, s[i].key, s[i].hash);
			size_t k_end = i;

			while (k_end < t_end && s[k_end].group == s[i].group)
				k_end++;
			if (kb) {
				record_groups(rec)[ngroups] = (struct group){ rec,
					(uint32_t)i, (uint32_t)(k_end - i), 0 };
				to[ngroups++] = (struct group_dest){ s[i].topic,
						s[i].key, s[i].hash };
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
	struct group_dest to_stack[2 * PUBLISH_STACK], *to = to_stack;
	struct resolve_scratch sc = { 0 };
	struct resolve_stack stack;
	struct resolved_event *s;
	struct record *rec;
	size_t ngroups;
	int ret;

	if (!pub || !events || !n || n > PUBLISH_MAX)
		return -EINVAL;
	if (in_callback())
		return -EDEADLK;
	pub_check(pub, __func__);
	s = scratch_alloc(&sc, n, &stack) ? NULL : sc.out;
	if (n > PUBLISH_STACK)
		to = malloc(2 * n * sizeof(*to));
	rec = __eventbuf_record_new(n, 2 * n, release, arg);
	if (!s || !to || !rec) {
		ret = -ENOMEM;
		__eventbuf_record_free(rec);
		goto out;
	}
	pthread_mutex_lock(&pub->lock);
	ret = pub->shut_down ? -ESHUTDOWN : resolve(pub, events, n, &sc);
	if (ret) {
		pthread_mutex_unlock(&pub->lock);
		__eventbuf_record_free(rec);
		goto out;
	}
	for (size_t i = 0; i < n; i++)
		rec->events[i] = events[s[i].pos];
	ngroups = fill_groups(pub, rec, s, n, to);
	for (size_t g = 0; g < ngroups; g++) {
		struct keybuf *kb = __eventbuf_kb_find_hashed(pub, to[g].topic,
						to[g].key, to[g].hash);

		if (kb)
			publish_group(pub, kb, &record_groups(rec)[g]);
	}
	pthread_mutex_unlock(&pub->lock);
	/* Drop the call's own reference: with no buffer, this releases. */
	__eventbuf_record_put(rec);
out:
	free(sc.heap);
	if (to != to_stack)
		free(to);
	return ret;
}

int eventbuf_subscribe(struct eventbuf_publisher *pub,
		       const struct eventbuf_subscribe_req *req,
		       struct eventbuf_subscription **subp)
{
	struct eventbuf_subscription *sub = NULL;
	struct eventbuf_reader *reader = NULL;
	struct start_point st = { 0 };
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
	t = __eventbuf_topic_find(pub, req->topic);
	ret = pub->shut_down ? -ESHUTDOWN : t ? 0 : -EINVAL;
	if (!ret && !strcmp(req->key, EVENTBUF_KEY_WILDCARD) &&
	    !(t->flags & EVENTBUF_TOPIC_WILDCARD))
		ret = -EINVAL;
	if (!ret)
		ret = __eventbuf_kb_get(pub, t, req->key, &kb);
	if (ret)
		goto out_unlock;
	ret = __eventbuf_start_of(pub, kb, req, &st);
	if (!ret)
		ret = eventbuf_reader_new(st.item, &reader);
	eventbuf_item_put(st.item);
	if (ret) {
		if (!kb->nsubs)
			__eventbuf_kb_free(pub, kb);
		goto out_unlock;
	}
	sub->topic = t->name;
	/* It will read the handler's error, never a batch: the lag limit
	 * must not replace that error with -ENOBUFS. */
	if (st.failed)
		sub->lag_limit = 0;
	__eventbuf_sub_attach(pub, kb, sub);
	WRITE_ONCE(sub->last_seq, st.seq);	/* read by check_lag() */
	if (sub->lag_limit)	/* it starts kb->seq - st.seq behind */
		lag_check_by(kb, kb->seq - st.seq < sub->lag_limit ?
			     sub->lag_limit - (kb->seq - st.seq) : 0);
	__eventbuf_sub_start(sub, reader, __eventbuf_keyname_get(kb->kn),
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
	sub_check(sub, __func__);
	pub = sub->pub;
	pthread_mutex_lock(&pub->lock);
	__eventbuf_sub_detach(pub, sub);
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
	t = __eventbuf_topic_find(pub, topic);
	kb = t ? __eventbuf_kb_find(pub, t, key) : NULL;
	if (!t) {
		n = -EINVAL;
	} else if (kb) {
		__eventbuf_cache_drop(pub, kb);
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
	for (sub = *__eventbuf_tag_slot(pub, tag); sub; sub = next) {
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

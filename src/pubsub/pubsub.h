/* SPDX-License-Identifier: LGPL-2.1-or-later */
#ifndef _EVENTBUF_PUBSUB_H
#define _EVENTBUF_PUBSUB_H

/*
 * Structures shared by the pub/sub layer's files; publisher.c's theory of
 * operation says which file holds what, and each file has its own part.
 * The layer sees the core only through the public API and ../core.h
 * (with ../barrier.h for ordering): never an item's layout or its state
 * bits.
 */
#include <pthread.h>
#include <stdatomic.h>

#include <eventbuf/eventbuf.h>
#include <eventbuf/poller.h>
#include <eventbuf/publisher.h>

#include "../barrier.h"
#include "../core.h"

struct record;

/*
 * struct keyname - a key string shared by everything that hands it out:
 * its key buffer, each subscription of the key, and each item of the
 * key's snapshots (whose events may point at it). The last put frees it.
 */
struct keyname {
	_Atomic uint32_t refs;
	char s[];
};

/*
 * struct group - one batch as the buffers see it: @n events of @rec from
 * @off on. An item carries it as the payload of its single event.
 * @seq: the batch's sequence number in its key buffer (1, 2, ...), 0 in a
 *       snapshot.
 * The item's event carries the least index of the group's events
 * (__eventbuf_append_group()): a subscriber whose snapshot is below it has
 * seen none of the batch (subscription.c).
 */
struct group {
	struct record *rec;
	uint32_t off, n;
	uint64_t seq;
};

/*
 * struct record - the events of one publish call (or one snapshot append),
 * with the caller's release callback, and room for @ngroups groups after
 * the events (record_groups()); one block (blocks.c) of record_bytes().
 * Referenced by every item made from it (and by a closed subscription's
 * last batch); the last put releases.
 */
struct record {
	_Atomic uint32_t refs;
	uint32_t n;
	eventbuf_release_fn release;
	void *arg;
	size_t ngroups;
	struct keyname *kn;		/* a snapshot's key, else NULL */
	struct eventbuf_publisher *pub;	/* a snapshot's (its topic), else NULL */
	struct eventbuf_event events[];
};

static inline struct group *record_groups(struct record *rec)
{
	return (struct group *)(rec->events + rec->n);
}

struct topic {
	char *name;
	eventbuf_snapshot_fn handler;
	void *arg;
	unsigned int flags;
	unsigned int id;
};

/* A (topic, key) with subscribers: its buffer, subscribers and cache. */
struct keybuf {
	struct keybuf *hnext;
	uint64_t hash;
	struct topic *topic;
	struct keyname *kn;
	struct eventbuf *buf;
	uint64_t seq;			/* batches appended */
	unsigned int nsubs, nlimited;	/* subscribers; with a lag limit */
	uint64_t lag_check_seq;		/* ->seq at which check_lag() walks */
	struct eventbuf_subscription *subs;
	struct eventbuf_item *cache;	/* first item of the cached snapshot */
	uint64_t cache_index;
	uint64_t cache_seq;		/* ->seq when the snapshot was spliced */
	int64_t cache_expires;		/* CLOCK_MONOTONIC ns */
	/* On the publisher's expiry queue while @cache is set. */
	struct keybuf *cache_prev, *cache_next;
};

/*
 * ->magic: PUB_LIVE from eventbuf_publisher_new() to eventbuf_publisher_free(),
 * then PUB_FREED while subscriptions keep the memory, poisoned before it
 * is freed. CONFIG_EVENTBUF_DEBUG builds check it at every call's entry.
 */
#define PUB_LIVE	0x7075626cu
#define PUB_FREED	0xdeadb0b5u

/* The tag lists: by_tag[] has 2^PUB_TAG_BITS, indexed by a tag's hash. */
#define PUB_TAG_BITS 6

/* The most events one eventbuf_publish() or eventbuf_snapshot_append() takes. */
#define PUBLISH_MAX EVENTBUF_PUBLISH_MAX

struct eventbuf_publisher {
	uint32_t magic;		/* PUB_LIVE until eventbuf_publisher_free() */
	pthread_mutex_t lock;
	_Atomic uint32_t refs;	/* the owner, subscriptions, snapshot records */
	bool shut_down;
	int64_t ttl_ns;

	struct topic **topics;
	unsigned int ntopics;

	struct keybuf **buckets;
	unsigned int nbuckets, nkeybufs;

	struct eventbuf_subscription *by_tag[1u << PUB_TAG_BITS];
	uint64_t nsubs, ncache, nbuilt;
	/* The key buffers with a cache, by deadline: every entry gets the
	 * same TTL from a monotonic clock, so appending keeps the order. */
	struct keybuf *cache_first, *cache_last;

	pthread_t expiry;
	pthread_cond_t expiry_cond;
	bool expiry_started, expiry_stop;
};

enum { SUB_OPEN = 0 };

struct eventbuf_subscription {
	struct eventbuf_publisher *pub;
	/* the publisher's, under pub->lock */
	struct keybuf *kb;
	struct eventbuf_subscription *kb_next, *kb_prev;
	struct eventbuf_subscription *tag_next, *tag_prev;
	uint64_t tag, lag_limit;
	/* written by the reader, read by the publisher's lag check */
	_Atomic uint64_t last_seq;
	/* the reader's, under ->lock (closers take it too) */
	pthread_mutex_t lock;
	int state;			/* SUB_OPEN or the terminal code */
	struct eventbuf_reader *reader;
	struct record *cur;		/* record of the batch last returned */
	struct record *held;		/* a closer's reference on ->cur */
	bool new_snapshot_pending;
	uint64_t skip_through;		/* live events at or below: seen */
	/* the events of a live batch partly above ->skip_through, handed
	 * out as one batch (subscription.c); ours, freed at the next call */
	struct eventbuf_event *above;
	const struct group *retry;	/* such a batch not handed out yet */
	struct eventbuf_event frame;	/* framing events handed out */
	const char *topic;		/* the publisher's, which we hold */
	struct keyname *kn;		/* a reference */
	/* its own descriptors, made on demand; -1 until then */
	int epfd;
	int kick_fd;			/* readable: look (see subscription.c) */
	int epfd_link;			/* link fd registered in epfd, or -1 */
	/* its poller's, when attached (poller.c) */
	struct __eventbuf_pollnode pn;
	EVENTBUF_HANDLE_MAGIC		/* debug.c */
};

static inline void sub_check(const struct eventbuf_subscription *sub,
			     const char *fn)
{
	handle_check(sub, EVENTBUF_SUB_LIVE, "subscription",
		     "eventbuf_unsubscribe", fn);
}

/* Where a new subscriber starts, and what it has seen of its key. */
struct start_point {
	struct eventbuf_item *item;	/* a reference */
	bool snapshot;
	uint64_t skip_through;		/* live events it must not repeat */
	uint64_t seq;			/* its key buffer's batches covered */
	bool failed;			/* the handler failed: an error to read */
};

/* record.c */
__hidden struct record *__eventbuf_record_new(size_t n, size_t ngroups,
					      eventbuf_release_fn release,
					      void *arg);
__hidden void __eventbuf_record_get(struct record *rec);
__hidden void __eventbuf_record_put(struct record *rec);
__hidden void __eventbuf_record_free(struct record *rec);
__hidden struct keyname *__eventbuf_keyname_new(const char *key);
__hidden struct keyname *__eventbuf_keyname_get(struct keyname *kn);
__hidden void __eventbuf_keyname_put(struct keyname *kn);
__hidden int __eventbuf_append_group(struct eventbuf *buf, struct group *g);
__hidden extern const char __eventbuf_end_of_snapshot[];
__hidden extern const char __eventbuf_new_snapshot[];

/* keytable.c, under pub->lock */
__hidden struct topic *__eventbuf_topic_find(struct eventbuf_publisher *pub,
					     const char *name);
__hidden uint64_t __eventbuf_key_hash(const struct topic *t, const char *key);
__hidden struct keybuf *__eventbuf_kb_find(struct eventbuf_publisher *pub,
					   const struct topic *t,
					   const char *key);
/* The same, with @h = __eventbuf_key_hash(@t, @key) already computed. */
__hidden struct keybuf *__eventbuf_kb_find_hashed(struct eventbuf_publisher *pub,
						  const struct topic *t,
						  const char *key, uint64_t h);
__hidden int __eventbuf_kb_get(struct eventbuf_publisher *pub, struct topic *t,
			       const char *key, struct keybuf **kbp);
__hidden void __eventbuf_kb_free(struct eventbuf_publisher *pub,
				 struct keybuf *kb);
__hidden void __eventbuf_cache_drop(struct eventbuf_publisher *pub,
				    struct keybuf *kb);
__hidden struct eventbuf_subscription **
__eventbuf_tag_slot(struct eventbuf_publisher *pub, uint64_t tag);
__hidden void __eventbuf_sub_attach(struct eventbuf_publisher *pub,
				    struct keybuf *kb,
				    struct eventbuf_subscription *sub);
__hidden void __eventbuf_sub_detach(struct eventbuf_publisher *pub,
				    struct eventbuf_subscription *sub);
/* not under pub->lock: the last reference frees it */
__hidden void __eventbuf_publisher_unref(struct eventbuf_publisher *pub);

/* snapshot.c, under pub->lock but for expire_all (which takes it) */
__hidden int __eventbuf_start_of(struct eventbuf_publisher *pub,
				 struct keybuf *kb,
				 const struct eventbuf_subscribe_req *req,
				 struct start_point *st);
#ifdef CONFIG_EVENTBUF_TESTING
/* the tests' build only: drop every cached snapshot now */
__hidden void __eventbuf_publisher_expire_all(struct eventbuf_publisher *pub);
#endif

/* subscription.c */
__hidden int __eventbuf_sub_alloc(struct eventbuf_publisher *pub,
				  const struct eventbuf_subscribe_req *req,
				  struct eventbuf_subscription **subp);
__hidden void __eventbuf_sub_start(struct eventbuf_subscription *sub,
				   struct eventbuf_reader *reader,
				   struct keyname *kn, bool new_snapshot,
				   uint64_t skip_through);
__hidden bool __eventbuf_sub_close(struct eventbuf_subscription *sub,
				   int code);
__hidden void __eventbuf_sub_free(struct eventbuf_subscription *sub);

#endif /* _EVENTBUF_PUBSUB_H */

// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * DOC: Theory of operation - the publisher's tables
 *
 * Everything here runs under pub->lock (publisher.c): the tables have one
 * writer at a time and no lock-free reader.
 *
 * Topics are an array, registered once and never removed, so the topic
 * names subscriptions point at live as long as the publisher's memory.
 *
 * Key buffers. A (topic, key) gets a buffer when its first subscriber
 * comes, and loses it, with its cached snapshot, when its last one goes:
 * a new subscriber must not be spliced onto a buffer that no longer
 * receives events. Events of keys without a buffer are not kept. The key
 * buffers sit in a hash table of power-of-two size, doubled when it holds
 * as many entries as buckets.
 *
 * Tags. Subscriptions with a tag are also on one of the by_tag lists,
 * by a multiplicative hash of the tag, for eventbuf_publisher_close_tag().
 *
 * Lifetime. Subscriptions hold a reference on the publisher, so the topic
 * names they point at outlive eventbuf_publisher_free() until the last
 * eventbuf_unsubscribe(); the last reference frees the tables with the
 * publisher's memory.
 */
#include <stdlib.h>
#include <string.h>

#include "pubsub.h"

struct topic *__eventbuf_topic_find(struct eventbuf_publisher *pub,
				    const char *name)
{
	for (unsigned int i = 0; name && i < pub->ntopics; i++)
		if (!strcmp(pub->topics[i]->name, name))
			return pub->topics[i];
	return NULL;
}

uint64_t __eventbuf_key_hash(const struct topic *t, const char *key)
{
	uint64_t h = 1469598103934665603ull ^ t->id;	/* FNV-1a */

	for (; *key; key++)
		h = (h ^ (unsigned char)*key) * 1099511628211ull;
	return h;
}

struct keybuf *__eventbuf_kb_find_hashed(struct eventbuf_publisher *pub,
					 const struct topic *t, const char *key,
					 uint64_t h)
{
	struct keybuf *kb;

	if (!pub->nbuckets)
		return NULL;
	for (kb = pub->buckets[h & (pub->nbuckets - 1)]; kb; kb = kb->hnext)
		if (kb->hash == h && kb->topic == t && !strcmp(kb->kn->s, key))
			return kb;
	return NULL;
}

struct keybuf *__eventbuf_kb_find(struct eventbuf_publisher *pub,
				  const struct topic *t, const char *key)
{
	return __eventbuf_kb_find_hashed(pub, t, key, __eventbuf_key_hash(t, key));
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

int __eventbuf_kb_get(struct eventbuf_publisher *pub, struct topic *t,
		      const char *key, struct keybuf **kbp)
{
	struct keybuf *kb = __eventbuf_kb_find(pub, t, key);
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
	kb->kn = __eventbuf_keyname_new(key);
	if (!kb->kn || eventbuf_new(&kb->buf)) {
		free(kb->kn);
		free(kb);
		return -ENOMEM;
	}
	kb->topic = t;
	kb->hash = __eventbuf_key_hash(t, key);
	slot = kb->hash & (pub->nbuckets - 1);
	kb->hnext = pub->buckets[slot];
	pub->buckets[slot] = kb;
	pub->nkeybufs++;
	*kbp = kb;
	return 0;
}

void __eventbuf_cache_drop(struct eventbuf_publisher *pub, struct keybuf *kb)
{
	if (!kb->cache)
		return;
	if (kb->cache_prev)
		kb->cache_prev->cache_next = kb->cache_next;
	else
		pub->cache_first = kb->cache_next;
	if (kb->cache_next)
		kb->cache_next->cache_prev = kb->cache_prev;
	else
		pub->cache_last = kb->cache_prev;
	kb->cache_prev = kb->cache_next = NULL;
	eventbuf_item_put(kb->cache);
	kb->cache = NULL;
	pub->ncache--;
}

/* Under pub->lock: the last subscriber left @kb. */
void __eventbuf_kb_free(struct eventbuf_publisher *pub, struct keybuf *kb)
{
	struct keybuf **pp = &pub->buckets[kb->hash & (pub->nbuckets - 1)];

	while (*pp != kb)
		pp = &(*pp)->hnext;
	*pp = kb->hnext;
	pub->nkeybufs--;
	__eventbuf_cache_drop(pub, kb);
	eventbuf_drop(kb->buf);
	__eventbuf_keyname_put(kb->kn);
	free(kb);
}

struct eventbuf_subscription **
__eventbuf_tag_slot(struct eventbuf_publisher *pub, uint64_t tag)
{
	/* Fibonacci hashing: the top PUB_TAG_BITS bits of the product. */
	return &pub->by_tag[(tag * 0x9e3779b97f4a7c15ull) >> (64 - PUB_TAG_BITS)];
}

void __eventbuf_sub_attach(struct eventbuf_publisher *pub, struct keybuf *kb,
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
		struct eventbuf_subscription **slot = __eventbuf_tag_slot(pub, sub->tag);

		sub->tag_prev = NULL;
		sub->tag_next = *slot;
		if (*slot)
			(*slot)->tag_prev = sub;
		*slot = sub;
	}
	pub->nsubs++;
}

/* Take @sub out of every table; drop its key buffer if it was the last. */
void __eventbuf_sub_detach(struct eventbuf_publisher *pub,
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
			*__eventbuf_tag_slot(pub, sub->tag) = sub->tag_next;
		if (sub->tag_next)
			sub->tag_next->tag_prev = sub->tag_prev;
	}
	sub->kb = NULL;
	pub->nsubs--;
	if (!kb->nsubs)
		__eventbuf_kb_free(pub, kb);
}

void __eventbuf_publisher_unref(struct eventbuf_publisher *pub)
{
	/* acq_rel, as kref: every holder's use happens before the free. */
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


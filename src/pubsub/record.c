// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * DOC: Theory of operation - records and framing
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
 * Key names. A key buffer's key string (struct keyname) is counted: the
 * key buffer, each subscription of it, each snapshot record (the
 * handler's events may point at the key it was given) and each
 * end-of-snapshot item hold a reference, so an event handed out never
 * points at a key freed by a close or by the last unsubscribe. Snapshot
 * records also hold the publisher, whose topic name the handler's events
 * may point at, so their release callbacks may read it even after
 * eventbuf_publisher_free().
 *
 * Framing. The events a subscription makes up itself (end of snapshot,
 * new snapshot to follow) carry a payload that points at one of the two
 * strings below: callers tell them apart by address, never by content.
 *
 * Counts. A get is relaxed: its caller already holds a reference, which
 * keeps the object alive and orders nothing. A put is acq_rel, so every
 * holder's reads of the object happen before the last put frees it.
 */
#include <stdlib.h>
#include <string.h>

#include "pubsub.h"

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

static size_t record_bytes(size_t n, size_t ngroups)
{
	return sizeof(struct record) + n * sizeof(struct eventbuf_event) +
	       ngroups * sizeof(struct group);
}

/*
 * A record for @n events and up to @ngroups groups, one block: it is
 * made on the publishing thread and nearly always freed by reclamation's.
 */
struct record *__eventbuf_record_new(size_t n, size_t ngroups,
				     eventbuf_release_fn release, void *arg)
{
	struct record *rec = __eventbuf_block_alloc(record_bytes(n, ngroups));

	if (!rec)
		return NULL;
	atomic_init(&rec->refs, 1);	/* the publish call's, for now */
	rec->n = (uint32_t)n;
	rec->release = release;
	rec->arg = arg;
	rec->ngroups = ngroups;
	rec->kn = NULL;
	rec->pub = NULL;
	return rec;
}

/* Free a record nobody references (NULL: nothing), without releasing. */
void __eventbuf_record_free(struct record *rec)
{
	if (rec)
		__eventbuf_block_free(rec, record_bytes(rec->n, rec->ngroups));
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
	__eventbuf_record_free(rec);
}

struct keyname *__eventbuf_keyname_new(const char *key)
{
	size_t len = strlen(key) + 1;
	struct keyname *kn = malloc(sizeof(*kn) + len);

	if (kn) {
		atomic_init(&kn->refs, 1);
		memcpy(kn->s, key, len);
	}
	return kn;
}

struct keyname *__eventbuf_keyname_get(struct keyname *kn)
{
	atomic_fetch_add_explicit(&kn->refs, 1, memory_order_relaxed);
	return kn;
}

void __eventbuf_keyname_put(struct keyname *kn)
{
	/* acq_rel, as kref: every holder's use happens before the free. */
	if (atomic_fetch_sub_explicit(&kn->refs, 1, memory_order_acq_rel) == 1)
		free(kn);
}

/* Release callback of every publisher item: its group's record. */
static void group_release(struct eventbuf_event *events, size_t n, void *arg)
{
	(void)n;
	(void)arg;
	__eventbuf_record_put(((struct group *)events[0].payload)->rec);
}

/*
 * Append @g as one item to @buf; the item takes a record reference. The
 * item's index is the least of the group's (struct group).
 */
int __eventbuf_append_group(struct eventbuf *buf, struct group *g)
{
	const struct eventbuf_event *first = &g->rec->events[g->off];
	struct eventbuf_event ev = {
		.index = first->index,
		.topic = first->topic,
		.key = first->key,
		.payload = g,
	};
	int ret;

	for (uint32_t i = 1; i < g->n; i++)
		if (first[i].index < ev.index)
			ev.index = first[i].index;

	__eventbuf_record_get(g->rec);
	ret = eventbuf_append(buf, &ev, 1, group_release, NULL);
	if (ret)
		__eventbuf_record_put(g->rec);
	return ret;
}


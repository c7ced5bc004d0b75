// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Process-wide counters, kept off the append path: a writer counts what it
 * appends in its own buffer with plain load/store pairs (single writer, no
 * read-modify-write); reclamation adds what it freed once per walk. Reading
 * sums the live buffers under a mutex that only buffer creation, drop and
 * eventbuf_stats() take. Figures are exact once writers and reclamation are
 * quiet (eventbuf_barrier()), approximate while they run.
 */
#include <pthread.h>
#include <string.h>

#include "internal.h"

struct eventbuf_counters __eventbuf_counters;

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct eventbuf *registry;
static uint64_t nbuffers;

/* fork.c: held across fork() so that the child inherits it unlocked. */
void __eventbuf_stats_fork_lock(bool lock)
{
	if (lock)
		pthread_mutex_lock(&registry_lock);
	else
		pthread_mutex_unlock(&registry_lock);
}

void __eventbuf_stats_add_buffer(struct eventbuf *buf)
{
	pthread_mutex_lock(&registry_lock);
	buf->stats_prev = NULL;
	buf->stats_next = registry;
	if (registry)
		registry->stats_prev = buf;
	registry = buf;
	nbuffers++;
	pthread_mutex_unlock(&registry_lock);
}

/* The buffer's totals move to the process counters when it is dropped. */
void __eventbuf_stats_del_buffer(struct eventbuf *buf)
{
	pthread_mutex_lock(&registry_lock);
	if (buf->stats_prev)
		buf->stats_prev->stats_next = buf->stats_next;
	else
		registry = buf->stats_next;
	if (buf->stats_next)
		buf->stats_next->stats_prev = buf->stats_prev;
	nbuffers--;
	/* The writer's WRITE_ONCE()s in count_appended(): untorn, and a
	 * sum of counters orders nothing. */
	counter_add(&__eventbuf_counters.items, READ_ONCE(buf->appended_items));
	counter_add(&__eventbuf_counters.bytes, READ_ONCE(buf->appended_bytes));
	pthread_mutex_unlock(&registry_lock);
}

static uint64_t load(_Atomic uint64_t *c)
{
	return READ_ONCE(*c);	/* a counter: orders nothing */
}

void eventbuf_stats(struct eventbuf_stats *stats)
{
	struct eventbuf_counters *c = &__eventbuf_counters;
	uint64_t items, bytes, freed_items, freed_bytes;
	struct eventbuf *buf;

	if (!stats)
		return;
	memset(stats, 0, sizeof(*stats));
	/* Freed first: an item counted freed was counted allocated before. */
	freed_items = load(&c->freed_items);
	freed_bytes = load(&c->freed_bytes);
	pthread_mutex_lock(&registry_lock);
	items = load(&c->items);
	bytes = load(&c->bytes);
	for (buf = registry; buf; buf = buf->stats_next) {
		items += load(&buf->appended_items);
		bytes += load(&buf->appended_bytes);
	}
	stats->buffers = nbuffers;
	pthread_mutex_unlock(&registry_lock);
	stats->live_items = items - freed_items;
	stats->live_bytes = bytes - freed_bytes;
	stats->open_eventfds = load(&c->eventfds);
	stats->readers = load(&c->readers);
	stats->reclaim_passes = load(&c->reclaim_passes);
}

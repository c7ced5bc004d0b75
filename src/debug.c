// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * CONFIG_EVENTBUF_DEBUG=y: catch two appenders on one buffer at once. Each
 * append-family call swaps a per-buffer flag in and out; finding it already
 * set means another thread is inside an append on the same buffer, which
 * breaks the single-writer rule that the lock-free publication relies on.
 * The swap is an atomic read-modify-write per append, hence debug only.
 *
 * It also catches a reference dropped twice. An item's spare byte records
 * its end of life: the put that queues it for reclamation marks it
 * queued, the walk that frees it marks it freed (slab memory stays mapped
 * while its buffer's pool lives, so the mark stays readable; a malloc()ed
 * item's may be overwritten once freed, so that case is best effort). The
 * item calls check the mark, and a put also checks that a reference is
 * there to drop: a caller's put always has one.
 *
 * Handles - subscriptions, pollers, readers - are freed by one call each
 * (eventbuf_unsubscribe(), eventbuf_poller_free(), eventbuf_reader_free()),
 * and a second call, or any call after it, would read freed memory. Their
 * free calls clear a mark in the handle (core.h) and hand the memory to a
 * quarantine instead of free(): the last QUARANTINE handles freed stay
 * allocated, so the next call on one of them finds the mark cleared and
 * aborts naming the call. Beyond that window it is best effort, as for
 * malloc()ed items. The quarantine is a ring of slots taken with an
 * atomic increment and swapped with an atomic exchange: no lock, so a
 * fork() never inherits one held.
 */
#include <stdio.h>
#include <stdlib.h>

#include "internal.h"

void __eventbuf_writer_enter(struct eventbuf *buf, const char *fn)
{
	/* Acquire: pairs with the release in __eventbuf_writer_exit(), so a
	 * writer sees the previous writer's appends. */
	if (atomic_exchange_explicit(&buf->writer, 1, memory_order_acquire)) {
		fprintf(stderr,
			"eventbuf: %s(): two threads append to buffer %p at once; a buffer has a single writer (callers must serialise appends)\n",
			fn, (void *)buf);
		abort();
	}
}

void __eventbuf_writer_exit(struct eventbuf *buf)
{
	/* Release: pairs with the acquire exchange of the next appender's
	 * __eventbuf_writer_enter(). */
	smp_store_release(&buf->writer, 0);
}

void __eventbuf_item_check(const struct eventbuf_item *item, const char *fn,
			   bool put)
{
	const char *what = NULL;

	if (item->reserved == ITEM_DEBUG_FREED)
		what = "was freed: used after its last reference was dropped";
	else if (item->reserved == ITEM_DEBUG_QUEUED)
		what = "has no reference left: its last one was already dropped";
	else if (put && st_refs(READ_ONCE(item->state)) == 0)	/* a hint */
		what = "has no reference left to drop (reference underflow)";
	if (!what)
		return;
	fprintf(stderr, "eventbuf: %s(): item %p %s; each eventbuf_item_put() must drop a reference the caller holds, once\n",
		fn, (const void *)item, what);
	abort();
}

#define QUARANTINE 4096

static void *_Atomic quarantine[QUARANTINE];
static _Atomic size_t quarantine_next;

void __eventbuf_handle_free(void *h)
{
	size_t slot = atomic_fetch_add_explicit(&quarantine_next, 1,
						memory_order_relaxed) % QUARANTINE;

	/* acq_rel: the handle's last writes (its cleared mark) happen before
	 * whoever takes it out of the slot frees it. */
	free(atomic_exchange_explicit(&quarantine[slot], h,
				      memory_order_acq_rel));
}

void __eventbuf_handle_check(bool live, const void *h, const char *what,
			     const char *fn, const char *freer)
{
	if (live)
		return;
	fprintf(stderr, "eventbuf: %s(): %s %p was freed by %s(); a handle is freed once and not used after that\n",
		fn, what, h, freer);
	abort();
}

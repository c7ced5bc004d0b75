// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * DOC: Theory of operation - calls that would never return
 *
 * Some calls cannot complete from where they are made: eventbuf_barrier()
 * inside a read-side section (the grace period it waits for cannot end)
 * or inside a release callback (it waits for the callbacks, itself
 * included); a publisher call from a snapshot handler (the handler runs
 * under the publisher's mutex) or from a release callback (which may run
 * under a subscription's mutex, in eventbuf_sub_next*() or
 * eventbuf_unsubscribe()); fork() from a release callback (fork.c). Rather
 * than hang, they fail with -EDEADLK, or abort with a message naming the
 * rule where the call returns nothing.
 *
 * The library marks the thread while it runs a caller's callback: one
 * thread-local word, saved and restored around each call, so nested
 * callbacks (a release run inside a release) unwind correctly. Reading it
 * costs a thread-local load at the entry of the calls that check it.
 */
#include <stdio.h>
#include <stdlib.h>

#include "internal.h"

__thread unsigned int __eventbuf_callback;

void __eventbuf_misuse(const char *fn, const char *rule)
{
	fprintf(stderr, "eventbuf: %s() %s: it would never return\n", fn, rule);
	abort();
}

void __eventbuf_release_call(eventbuf_release_fn release,
			     struct eventbuf_event *events, size_t n, void *arg)
{
	unsigned int saved = __eventbuf_callback;

	__eventbuf_callback = saved | EVENTBUF_IN_RELEASE;
	release(events, n, arg);
	__eventbuf_callback = saved;
}

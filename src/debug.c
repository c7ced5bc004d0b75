// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * CONFIG_EVENTBUF_DEBUG=y: catch two appenders on one buffer at once. Each
 * append-family call swaps a per-buffer flag in and out; finding it already
 * set means another thread is inside an append on the same buffer, which
 * breaks the single-writer rule that the lock-free publication relies on.
 * The swap is an atomic read-modify-write per append, hence debug only.
 */
#include <stdio.h>
#include <stdlib.h>

#include "internal.h"

void __eventbuf_writer_enter(struct eventbuf *buf, const char *fn)
{
	if (atomic_exchange_explicit(&buf->writer, 1, memory_order_acquire)) {
		fprintf(stderr,
			"eventbuf: %s(): two threads append to buffer %p at once; a buffer has a single writer (callers must serialise appends)\n",
			fn, (void *)buf);
		abort();
	}
}

void __eventbuf_writer_exit(struct eventbuf *buf)
{
	atomic_store_explicit(&buf->writer, 0, memory_order_release);
}

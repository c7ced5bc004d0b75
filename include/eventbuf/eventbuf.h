/* SPDX-License-Identifier: LGPL-2.1-or-later */
#ifndef _EVENTBUF_EVENTBUF_H
#define _EVENTBUF_EVENTBUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <eventbuf/version.h>

#ifdef __cplusplus
extern "C" {
#endif

#define EVENTBUF_API __attribute__((visibility("default")))
#define EVENTBUF_MUST_CHECK __attribute__((warn_unused_result))

/**
 * DOC: eventbuf - a single-writer, multi-reader, unbounded event buffer
 *
 * A buffer is the head of a singly linked list of items; an item carries one
 * batch of events (one "index" of the writer's log). Readers never lock:
 * they follow next pointers published with rcu_assign_pointer() and wait on
 * an eventfd that becomes readable once the next item is published. One
 * eventfd write wakes every reader waiting on a link, however many.
 *
 * References. Every struct eventbuf_item pointer the API hands out is a
 * *reference* unless its documentation says *borrowed*. Holding an item
 * keeps that item and every item after it alive; an item is reclaimed
 * (its release callback runs, then its memory is freed) once nothing holds
 * it or anything before it. Reclamation runs in liburcu's call_rcu thread,
 * after a grace period.
 *
 * Threads. No thread needs to register with anything: the library uses the
 * liburcu "bp" flavor, which registers a thread on its first read-side
 * critical section and unregisters it when the thread exits.
 *
 * Who may call what concurrently ("-": no synchronisation needed, "W": the
 * caller serialises these calls, "O": one thread at a time per object):
 *
 *                        | append* | head | item_*  | reader_* | drop
 *   append*, same buffer |    W    |  -   |   -     |    -     |  W
 *   head, same buffer    |    -    |  -   |   -     |    -     |  W
 *   item_* (any items)   |    -    |  -   |   -     |    -     |  -
 *   reader_*, same reader|    -    |  -   |   -     |    O     |  -
 *   drop, same buffer    |    W    |  W   |   -     |    -     |  W
 *
 * "append*" is eventbuf_append(), eventbuf_append_item() and
 * eventbuf_append_error(): one buffer has one writer at a time (build with
 * CONFIG_EVENTBUF_DEBUG=y to have two concurrent appenders detected).
 * Items are immutable once published and may be shared by any number of
 * threads.
 *
 * Descriptors. A link that somebody waits on gets an eventfd; when the
 * link is done with it, the descriptor is reset and kept for the next link
 * (at most 32 are kept idle for any thread, and up to 516 more for each
 * thread that runs a poller, those its poller watches; a new one is made
 * only when none is idle, but for the 4 each thread that runs a poller
 * keeps at hand, which eventbuf_barrier() leaves to them while it closes
 * the rest), unless it was
 * handed to the caller by eventbuf_item_wait_fd() or
 * eventbuf_reader_wait_fd(): those are closed, as the caller may have left
 * them in an epoll set - unless the reader they were handed to was the
 * only one to take them, which then keeps its descriptor for its next link
 * (one per reader, closed by eventbuf_reader_free()). Pollers
 * (<eventbuf/poller.h>) rely on the reuse to park without a system call.
 * A link's eventfd must be numbered below 16,777,214 (the link records it
 * in 24 bits): past that, the call that needed one returns -EMFILE.
 *
 * Memory. The items of a buffer whose writer appends fewer than about
 * 100,000 a second (the rest come from slabs), a buffer's first item, a
 * follower (eventbuf_item_follow_after()), and the publisher's record of
 * each publish and snapshot are small blocks that are usually freed by
 * reclamation's thread, not by the thread that made them. Once
 * freed, the library keeps them for reuse rather than giving them back to
 * malloc(): at most 4,096 per size class (40, 72, 128 and 256 bytes:
 * 2 MB in all) shared by every thread, plus fewer than 64 per class in each
 * thread that made or freed one. A thread that exits gives its own to the
 * shared ones; eventbuf_barrier() frees the shared ones and the caller's.
 *
 * Errors. Actions return 0 or a negative errno. A next call (of an item,
 * a reader or a subscription) returns either one of the library's own codes
 * or a *user code*: the terminal error a writer appended
 * (eventbuf_append_error()) or a snapshot handler returned. The two sets
 * never overlap:
 *
 *   code         owner      meaning in a next call
 *   -EAGAIN      library    nothing yet (non-blocking calls)
 *   -ETIMEDOUT   library    the timeout passed; not terminal
 *   -ECANCELED   library    cancel_fd became readable; not terminal
 *   -EINVAL      library    bad argument, cancel_fd not open included
 *   -EOVERFLOW   library    too many references on an item
 *   -ENOMEM, -EMFILE, -ENFILE, -ENOSPC
 *                library    no memory or descriptor to wait with; retry
 *   -EDEADLK     library    the call would never return (see each call;
 *                           read-side sections: the bp flavor's only)
 *   -EISCONN     library    attached to a poller: wait through it
 *   -ECONNRESET  publisher  subscription force-closed (publisher.h)
 *   -ENOBUFS     publisher  subscription over its lag limit
 *   -ESHUTDOWN   publisher  the publisher was freed
 *   -EIO         publisher  the snapshot handler failed with a code of
 *                           this table (the handler's own -EIO too)
 *   any other    user       a terminal error item's code (sticky)
 *
 * eventbuf_append_error() refuses the library's codes (-EINVAL); a buffer
 * of one's own may use the publisher's (a subscription never reads one).
 * A descriptor the library waits on that reports an error (closed or
 * replaced behind its back) is a broken invariant: the process aborts
 * with a message, rather than return a code that looks like either set.
 */

/* The most events one item (one append) carries. */
#define EVENTBUF_MAX_EVENTS 16777215u

/* A reader moves its one reference forward every this many batches it
 * returns, besides when it parks (see DOC: readers). */
#define EVENTBUF_READER_ANCHOR_STRIDE 64u

struct eventbuf;
struct eventbuf_item;
struct eventbuf_reader;

/**
 * struct eventbuf_event - one event of a batch
 * @index:   the writer's log index of the event (Consul's raft index).
 * @topic:   topic name, or NULL. Stored as given, never copied or freed by
 *           the library: it must stay valid until the item's release
 *           callback runs (a static string, or one the callback frees).
 * @key:     key within the topic, or NULL; same lifetime rule as @topic.
 * @payload: the caller's data. The item owns it from a successful append
 *           until its release callback returns.
 */
struct eventbuf_event {
	uint64_t index;
	const char *topic;
	const char *key;
	void *payload;
};

/**
 * typedef eventbuf_release_fn - release the events of a reclaimed item
 * @events: the item's copy of the events (writable: the item is dead).
 * @n:      number of events.
 * @arg:    the argument given to eventbuf_append().
 *
 * This is the one statement of the rules for every release callback, the
 * publisher's included (publisher.h and the README refer here).
 *
 * Context: runs exactly once per appended item, after a grace period, once
 * nothing holds the item. Items of eventbuf_append() are released in
 * liburcu's call_rcu thread. The publisher's events (eventbuf_publish(),
 * eventbuf_snapshot_append()) are released by whichever thread drops the
 * last reference to them: the call_rcu thread, eventbuf_publish() itself
 * (nobody watches the keys), or a subscriber's thread inside
 * eventbuf_sub_next*() or eventbuf_unsubscribe(). So a release callback:
 *
 * * returns promptly and never blocks: in the call_rcu thread it delays
 *   all later reclamation;
 * * takes no lock that is held around an eventbuf or publisher call;
 * * does not call eventbuf_barrier() (it would wait for itself: the
 *   process aborts with a message) nor any publisher function (they
 *   return -EDEADLK; eventbuf_unsubscribe() and eventbuf_publisher_free()
 *   abort);
 * * does not fork(): in the call_rcu thread it would wait for that thread
 *   to pause, for ever, so it aborts with a message in any thread;
 * * may call the other eventbuf functions under their own rules - say
 *   eventbuf_item_put() of a reference it owns, or eventbuf_append() to a
 *   buffer it is the single writer of - but none that waits
 *   (eventbuf_item_next() or eventbuf_reader_next() with a timeout).
 */
typedef void (*eventbuf_release_fn)(struct eventbuf_event *events, size_t n,
				    void *arg);

/**
 * struct eventbuf_stats - process-wide counters (approximate while writers run)
 * @live_items:     items allocated and not yet reclaimed.
 * @live_bytes:     heap bytes those items occupy (as requested from malloc).
 * @open_eventfds:  wait eventfds currently open.
 * @buffers:        buffers created and not yet dropped.
 * @readers:        readers created and not yet freed.
 * @reclaim_passes: reclamation passes run so far (call_rcu callbacks).
 */
struct eventbuf_stats {
	uint64_t live_items;
	uint64_t live_bytes;
	uint64_t open_eventfds;
	uint64_t buffers;
	uint64_t readers;
	uint64_t reclaim_passes;
};

/* ------------------------------------------------------------------ */
/* Buffers (the writer's side)                                         */
/* ------------------------------------------------------------------ */

/**
 * eventbuf_new() - create a buffer
 * @bufp: where to store the new buffer.
 *
 * The buffer is born with a sentinel item (no events), so a reader can take
 * eventbuf_head() and wait for the first append at once.
 *
 * Context: any thread; may allocate.
 * Return:
 * * 0        - success, *@bufp owned by the caller (eventbuf_drop()).
 * * -EINVAL  - @bufp is NULL.
 * * -ENOMEM  - out of memory; nothing was created.
 */
EVENTBUF_API EVENTBUF_MUST_CHECK int eventbuf_new(struct eventbuf **bufp);

/**
 * eventbuf_drop() - drop the writer's buffer
 * @buf: buffer from eventbuf_new(), or NULL (no-op).
 *
 * The buffer itself is gone on return; its items live on while referenced
 * and are reclaimed after a grace period once nothing holds them.
 *
 * Context: the buffer's writer; no append or head on @buf may run
 * concurrently or follow.
 */
EVENTBUF_API void eventbuf_drop(struct eventbuf *buf);

/**
 * eventbuf_append() - publish one batch of events
 * @buf:     the buffer.
 * @events:  @n events, copied into the new item (one allocation holds the
 *           item and its events). May be NULL when @n is 0: an empty item,
 *           which readers skip.
 * @n:       number of events, at most EVENTBUF_MAX_EVENTS (16777215).
 * @release: called once with the item's events when the item is reclaimed,
 *           or NULL. On success the item owns the payloads; on failure
 *           @release is not called and they stay the caller's.
 * @arg:     passed to @release.
 *
 * Wakes every reader waiting on the previous head. With nobody waiting this
 * makes no system call, no atomic read-modify-write and no call_rcu().
 *
 * Context: the buffer's single writer; never waits for readers or for the
 * reclamation of earlier items. When it needs a new slab it takes the
 * buffer's slab-pool lock, which the pin chain holds while it hands an
 * idle writer's memory back to the system (madvise()): a writer resuming
 * just then waits that long.
 * Return:
 * * 0        - published.
 * * -EINVAL  - @buf is NULL, @events is NULL with @n > 0, or @n too large.
 * * -ENOMEM  - out of memory; nothing published.
 * * -EPIPE   - the buffer was ended by eventbuf_append_error().
 * * -EISCONN - the buffer was joined to another chain by
 *              eventbuf_append_item(); it takes no more items.
 */
EVENTBUF_API EVENTBUF_MUST_CHECK int
eventbuf_append(struct eventbuf *buf, const struct eventbuf_event *events,
		size_t n, eventbuf_release_fn release, void *arg);

/**
 * eventbuf_append_item() - link an existing item (and its chain) after the head
 * @buf:  the buffer.
 * @item: an item the caller holds a reference on, from any buffer: the
 *        start of another buffer's chain, an item in the middle of one, or a
 *        follower from eventbuf_item_follow_after(). The buffer takes its own
 *        reference; the caller keeps theirs.
 *
 * Readers of @buf continue into @item's chain: this is how a snapshot is
 * joined to a live topic buffer. @item becomes the head, so @buf is joined
 * for good: its next appends fail with -EISCONN (they would write a link
 * that belongs to another buffer).
 *
 * Context: the buffer's single writer; never waits for readers. Takes a
 * process-wide mutex, held only by other joins and across fork(), while
 * it walks @item's chain once to refuse a cycle.
 * Return:
 * * 0        - linked.
 * * -EINVAL  - @buf or @item is NULL.
 * * -ELOOP   - @item is @buf's head or leads to it: linking would make a
 *              cycle. Nothing changed.
 * * -EOVERFLOW - @item has too many references.
 * * -EPIPE, -EISCONN - as for eventbuf_append().
 */
EVENTBUF_API EVENTBUF_MUST_CHECK int
eventbuf_append_item(struct eventbuf *buf, struct eventbuf_item *item);

/**
 * eventbuf_append_error() - end the buffer with a terminal error
 * @buf:  the buffer.
 * @code: a negative errno, not one reserved by the library (see the DOC
 *        block): readers reaching the error item get it from every next call.
 * @msg:  a message, copied; NULL for none.
 *
 * Context: the buffer's single writer; never blocks.
 * Return:
 * * 0        - published; later appends fail with -EPIPE.
 * * -EINVAL  - @buf is NULL, or @code is not negative or is reserved.
 * * -ENOMEM  - out of memory; nothing published.
 * * -EPIPE, -EISCONN - as for eventbuf_append().
 */
EVENTBUF_API EVENTBUF_MUST_CHECK int
eventbuf_append_error(struct eventbuf *buf, int code, const char *msg);

/**
 * eventbuf_head() - take a reference on the current head
 * @buf:   the buffer.
 * @itemp: where to store the head: the sentinel, an empty item, an error
 *         item or the newest batch. A reference: eventbuf_item_put() it.
 *
 * Context: any thread, concurrently with the writer; never blocks.
 * Return:
 * * 0          - success.
 * * -EINVAL    - @buf or @itemp is NULL.
 * * -EOVERFLOW - the head has too many references.
 */
EVENTBUF_API EVENTBUF_MUST_CHECK int eventbuf_head(struct eventbuf *buf,
						   struct eventbuf_item **itemp);

/* ------------------------------------------------------------------ */
/* Items                                                               */
/* ------------------------------------------------------------------ */

/**
 * eventbuf_item_get() - take another reference on an item
 * @item: an item the caller holds, or reaches from an item it holds.
 *
 * Context: any thread; never blocks.
 * Return:
 * * 0          - success.
 * * -EINVAL    - @item is NULL.
 * * -EOVERFLOW - the item already has 2^25 references.
 */
EVENTBUF_API EVENTBUF_MUST_CHECK int
eventbuf_item_get(struct eventbuf_item *item);

/**
 * eventbuf_item_put() - drop a reference
 * @item: a reference, or NULL (no-op).
 *
 * When this was the last hold on the oldest items of a chain, their
 * reclamation is queued to call_rcu(); nothing is freed in the caller.
 *
 * Putting a reference twice, or using an item after its last put, is a
 * use-after-free. Build with CONFIG_EVENTBUF_DEBUG=y to have it caught: the
 * item calls (and eventbuf_reader_new()) then abort with a message naming
 * the call when the item has no reference left to drop or was already
 * queued or freed by reclamation (reliable for items carved from a live
 * buffer's slabs, best effort for the rest).
 *
 * Context: any thread, outside any eventbuf callback's own item; never blocks.
 */
EVENTBUF_API void eventbuf_item_put(struct eventbuf_item *item);

/**
 * eventbuf_item_count() - number of events in an item
 * @item: a held or borrowed item.
 *
 * Return: the count; 0 for sentinels, empty, follower and error items and
 * for NULL.
 */
EVENTBUF_API size_t eventbuf_item_count(const struct eventbuf_item *item);

/**
 * eventbuf_item_events() - the events of an item
 * @item: a held or borrowed item.
 *
 * Return: eventbuf_item_count() events, borrowed from @item (read only,
 * valid while @item is); NULL when there are none.
 */
EVENTBUF_API const struct eventbuf_event *
eventbuf_item_events(const struct eventbuf_item *item);

/**
 * eventbuf_item_error() - the terminal error at or right after an item
 * @item: a held or borrowed item.
 * @msg:  if not NULL, receives the error's message (borrowed, valid while
 *        @item is; "" when none was given), or NULL when there is no error.
 *
 * Looks at @item and, through published items without events, at what
 * follows it: after a next call returned an error code, this gives its
 * message.
 *
 * Context: any thread; never blocks.
 * Return: the error code (negative), or 0 when no error item is there.
 */
EVENTBUF_API int eventbuf_item_error(const struct eventbuf_item *item,
				     const char **msg);

/**
 * eventbuf_item_next_nonblock() - the next batch after an item, if published
 * @item:  a held item.
 * @nextp: receives a new reference on the next item that has events.
 *
 * Items without events are skipped.
 *
 * Context: any thread; never blocks.
 * Return:
 * * 0         - *@nextp is set.
 * * -EAGAIN   - nothing with events published yet after @item.
 * * -EINVAL   - @item or @nextp is NULL.
 * * -EOVERFLOW - the next item has too many references.
 * * other negative - the code of a terminal error item that follows @item
 *   (every later call returns it again; eventbuf_item_error() has the text).
 */
EVENTBUF_API EVENTBUF_MUST_CHECK int
eventbuf_item_next_nonblock(struct eventbuf_item *item,
			    struct eventbuf_item **nextp);

/**
 * eventbuf_item_next() - wait for the next batch after an item
 * @item:       a held item.
 * @timeout_ms: how long to wait: < 0 forever, 0 not at all.
 * @cancel_fd:  a file descriptor whose readability cancels the wait (an
 *              eventfd or pipe the caller writes), or -1. Never read.
 * @nextp:      receives a new reference on the next item that has events.
 *
 * Like a Go Next(ctx) (the API eventbuf's calls were modelled on):
 * cancellation and timeout are not terminal, @item stays valid and the call
 * may be repeated.
 *
 * Context: any thread; may block (must not be called under an eventbuf or
 * liburcu read-side critical section). While it waits it holds a reference
 * on the item it waits after.
 * Return:
 * * 0          - *@nextp is set.
 * * -ETIMEDOUT - @timeout_ms passed (at once when it is 0 and nothing is
 *                there).
 * * -ECANCELED - @cancel_fd became readable.
 * * -EDEADLK   - called inside a read-side critical section of liburcu's
 *                bp flavor (the library's own, or the caller's urcu-bp
 *                rcu_read_lock()). A section of another flavor (memb, mb,
 *                signal, qsbr) is not detected: the call waits, and stalls
 *                that flavor's grace periods meanwhile.
 * * -EMFILE, -ENFILE, -ENOMEM - no eventfd could be created to wait on;
 *                the buffer is intact, a later call may succeed.
 * * -EINVAL     - as eventbuf_item_next_nonblock(), or @cancel_fd is
 *                neither -1 nor an open descriptor (checked when nothing
 *                is there to return, whatever @timeout_ms: 0 too).
 * * -EOVERFLOW, terminal codes - as eventbuf_item_next_nonblock().
 */
EVENTBUF_API EVENTBUF_MUST_CHECK int
eventbuf_item_next(struct eventbuf_item *item, int timeout_ms, int cancel_fd,
		   struct eventbuf_item **nextp);

/**
 * eventbuf_item_follow_after() - an item that is followed by what comes next
 * @item: a held item.
 * @outp: receives a new reference: the next batch if one is published;
 *        otherwise an item without events whose link is the newest link
 *        after @item: the newest empty item already there, @item itself
 *        when it has no events, or else a new *follower* that shares
 *        @item's link. Reading from it yields exactly the items published
 *        after @item, never @item itself. This is what a new buffer joins
 *        (eventbuf_append_item()) to start where @item's buffer is now.
 *
 * Context: any thread; never blocks; may allocate.
 * Return:
 * * 0        - *@outp is set.
 * * -EINVAL  - @item or @outp is NULL.
 * * -ENOMEM  - out of memory.
 * * -EOVERFLOW, terminal codes - as eventbuf_item_next_nonblock().
 */
EVENTBUF_API EVENTBUF_MUST_CHECK int
eventbuf_item_follow_after(struct eventbuf_item *item,
			   struct eventbuf_item **outp);

/**
 * eventbuf_item_wait_fd() - the eventfd that signals the item after @item
 * @item: an item the caller holds a reference on itself (holding an earlier
 *        item is not enough: the eventfd lives as long as references on
 *        @item do).
 * @fdp:  receives the eventfd of @item's link. It becomes readable when the
 *        next item is published and then stays readable. Add it to epoll
 *        (EPOLLIN | EPOLLET is the natural choice), never read, write or
 *        close it. Every waiter on the same link gets the same descriptor.
 *
 * The descriptor stays the same while the caller holds @item; another
 * item's descriptor may reuse its number once it is closed, so add it to
 * epoll again after moving on (EEXIST then means it is still there).
 *
 * The link signals when *any* item follows, one without events included:
 * if eventbuf_item_next_nonblock() then says -EAGAIN, move to the item from
 * eventbuf_item_follow_after() and wait on its descriptor instead. The
 * reader API (below) does all of this itself.
 *
 * Context: any thread; never blocks; may create the eventfd.
 * Return:
 * * 0         - *@fdp is set; wait on it, then call a next function.
 * * -EALREADY - the next item (or the terminal error) is already there:
 *               read it now; *@fdp is -1.
 * * -EMFILE, -ENFILE, -ENOMEM - the eventfd could not be created.
 * * -EINVAL   - @item or @fdp is NULL.
 */
EVENTBUF_API EVENTBUF_MUST_CHECK int
eventbuf_item_wait_fd(struct eventbuf_item *item, int *fdp);

/* ------------------------------------------------------------------ */
/* Readers (cursors for high-rate consumers)                           */
/* ------------------------------------------------------------------ */

/**
 * DOC: readers
 *
 * A reader is a cursor over a chain that holds exactly one reference (its
 * *anchor*) and moves it only when it parks or every
 * EVENTBUF_READER_ANCHOR_STRIDE (64) returned batches, so
 * walking published items writes nothing to them. The items it returns are
 * borrowed: valid until the next call on the same reader (or its free).
 * A reader is used by one thread at a time.
 */

/**
 * eventbuf_reader_new() - create a reader positioned at an item
 * @start:   a held item; the first batch returned is the one after it.
 *           The reader takes its own reference; the caller keeps theirs.
 * @readerp: receives the reader.
 *
 * Context: any thread; may allocate.
 * Return:
 * * 0          - success; free it with eventbuf_reader_free().
 * * -EINVAL    - @start or @readerp is NULL.
 * * -ENOMEM    - out of memory.
 * * -EOVERFLOW - @start has too many references.
 */
EVENTBUF_API EVENTBUF_MUST_CHECK int
eventbuf_reader_new(struct eventbuf_item *start,
		    struct eventbuf_reader **readerp);

/**
 * eventbuf_reader_free() - drop a reader and its reference
 * @reader: the reader, or NULL (no-op).
 *
 * After this call @reader must be passed to no function, this one included
 * (a use-after-free); CONFIG_EVENTBUF_DEBUG=y builds abort with a message
 * naming the call for the last 4,096 handles freed.
 *
 * Context: the thread using the reader; never blocks.
 */
EVENTBUF_API void eventbuf_reader_free(struct eventbuf_reader *reader);

/**
 * eventbuf_reader_next_nonblock() - the next batch, if published
 * @reader: the reader.
 * @itemp:  receives the next item with events, borrowed until the next call
 *          on @reader.
 *
 * Context: the reader's thread; never blocks.
 * Return:
 * * 0        - *@itemp is set and the reader moved past it.
 * * -EAGAIN  - nothing new yet.
 * * -EINVAL  - @reader or @itemp is NULL.
 * * other negative - the terminal error code (sticky; see
 *   eventbuf_reader_error()).
 */
EVENTBUF_API EVENTBUF_MUST_CHECK int
eventbuf_reader_next_nonblock(struct eventbuf_reader *reader,
			      const struct eventbuf_item **itemp);

/**
 * eventbuf_reader_next() - wait for the next batch
 * @reader:     the reader.
 * @timeout_ms: < 0 forever, 0 not at all.
 * @cancel_fd:  readable to cancel, or -1.
 * @itemp:      as eventbuf_reader_next_nonblock().
 *
 * Context: the reader's thread; may block (not under a read-side critical
 * section).
 * Return: as eventbuf_reader_next_nonblock(), and -ETIMEDOUT, -ECANCELED
 * (not terminal: the reader stays where it was), -EINVAL (@cancel_fd not
 * open, as for eventbuf_item_next()), -EMFILE, -ENFILE, -ENOMEM
 * (no eventfd to wait on; retry later), -EDEADLK (called inside a bp
 * flavor read-side critical section; other flavors' are not detected, as
 * for eventbuf_item_next()).
 */
EVENTBUF_API EVENTBUF_MUST_CHECK int
eventbuf_reader_next(struct eventbuf_reader *reader, int timeout_ms,
		     int cancel_fd, const struct eventbuf_item **itemp);

/**
 * eventbuf_reader_wait_fd() - park the reader and get the eventfd to poll
 * @reader: the reader, which has drained what was published.
 * @fdp:    receives the eventfd that becomes readable when the next item is
 *          published (and then stays readable). Never read or close it.
 *
 * Moves the reader's reference to the item it waits after. The return
 * value says when to add the descriptor to epoll: register it with
 * EPOLLIN | EPOLLET when this returns 1. A reader that alone took its
 * link's descriptor keeps it when it moves on: the next call returns the
 * same descriptor, reset, with 0, so a reader polled on its own costs no
 * epoll_ctl() per batch. Otherwise the descriptor changes as the reader
 * moves, and a new one may reuse the number of one the library closed,
 * hence 1. A descriptor the reader has moved past and does not keep never
 * fires again under EPOLLET, and leaves the epoll set by itself when the
 * library closes it; a kept one may carry a wake-up from its last link
 * that is already queued in the set: treat a wake-up as "look", and call
 * this again when the look finds nothing. Readers waiting on the same
 * link share one descriptor: give each reader its own epoll instance, or
 * dup() it. eventbuf_reader_free() closes a kept descriptor, and so does
 * the first park through a poller.
 *
 * Context: the reader's thread; never blocks.
 * Return:
 * * 1         - wait on *@fdp, a descriptor this reader has not returned
 *               before: add it to the epoll set. After the reader was
 *               attached to a poller and detached, it may be the one
 *               returned last before that: EPOLL_CTL_ADD then fails with
 *               EEXIST, which means it is in the set already.
 * * 0         - wait on *@fdp, the same descriptor as the previous call
 *               that returned one: it is in the set already.
 * * -EALREADY - something is already there; call a next function.
 * * -EINVAL, -EMFILE, -ENFILE, -ENOMEM - as eventbuf_item_wait_fd().
 * * -EOVERFLOW - the item to wait after has too many references.
 */
EVENTBUF_API EVENTBUF_MUST_CHECK int
eventbuf_reader_wait_fd(struct eventbuf_reader *reader, int *fdp);

/**
 * eventbuf_reader_error() - the terminal error the reader reached
 * @reader: the reader.
 * @msg:    if not NULL, receives the message (borrowed, valid while the
 *          reader lives) or NULL.
 *
 * Return: the code, or 0 when the reader has not reached an error item.
 */
EVENTBUF_API int eventbuf_reader_error(const struct eventbuf_reader *reader,
				       const char **msg);

/* ------------------------------------------------------------------ */
/* Library                                                             */
/* ------------------------------------------------------------------ */

/**
 * DOC: fork
 *
 * The library registers liburcu's fork handlers (its call_rcu thread and
 * the bp flavor's thread registry) and its own process-wide locks with
 * pthread_atfork() when the first buffer is created. So a process may fork
 * at any time, from any thread, while other threads append, read, wait,
 * publish or subscribe - but not from inside a release callback (the
 * process aborts with a message, see eventbuf_release_fn):
 *
 * * the parent goes on unaffected;
 * * a child that calls exec starts afresh, as any new program;
 * * a child that does not exec may create and use buffers, readers,
 *   publishers and subscriptions of its own, and eventbuf_barrier() and
 *   eventbuf_stats() (whose counters include what it inherited): its
 *   reclamation runs in a fresh call_rcu thread. That holds for a child
 *   forked inside a snapshot handler too, from within the handler;
 * * objects the child inherited (buffers, items, readers, pollers,
 *   publishers, subscriptions created before the fork) must not be used or
 *   freed in the child: the threads that used them are gone, and the locks
 *   they held at the fork stay held. Inherited items that were already queued
 *   for reclamation are reclaimed in the child too, so their release
 *   callbacks may run there;
 * * eventfds that existed at the fork are open in both processes; neither
 *   reuses them for a new link (see "Descriptors" above), so one
 *   process's readers never consume the other's wake-ups.
 */

/**
 * eventbuf_barrier() - wait until every queued reclamation has run
 *
 * On return, every item that nothing held when the call began has had its
 * release callback run and been freed - the items of dropped buffers, and
 * of live buffers everything before their head. Call it before tearing down
 * what release callbacks use, and before unloading the library. It also
 * closes the eventfds the library keeps for reuse (see "Descriptors" in
 * the DOC block at the top), but for the 4 each other thread that runs a
 * poller keeps at hand, so that a program can check it leaks none, and
 * frees the memory blocks it keeps for reuse (see "Memory" there), but
 * for those each other thread holds.
 *
 * Context: may block for several callback periods (liburcu runs call_rcu()
 * callbacks every 10 ms or so). Called from a release callback or inside
 * a read-side critical section it could never return: it aborts the
 * process with a message naming the rule instead.
 */
EVENTBUF_API void eventbuf_barrier(void);

/**
 * eventbuf_stats() - read the process-wide counters
 * @stats: filled on return; nothing happens when NULL.
 *
 * Context: any thread; never blocks.
 */
EVENTBUF_API void eventbuf_stats(struct eventbuf_stats *stats);

#ifdef __cplusplus
}
#endif

#endif /* _EVENTBUF_EVENTBUF_H */

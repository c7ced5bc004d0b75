/* SPDX-License-Identifier: LGPL-2.1-or-later */
#ifndef _EVENTBUF_PUBLISHER_H
#define _EVENTBUF_PUBLISHER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <eventbuf/eventbuf.h>

#ifdef __cplusplus
extern "C" {
#endif

/**
 * DOC: publisher - topics, snapshots and subscriptions
 *
 * A publisher owns one buffer per (topic, key) that has subscribers, and
 * appends each published event to the buffer of its topic and key (and to
 * the topic's wildcard buffer, if the topic has one). Nothing is kept for a
 * key nobody watches: a new subscriber first gets a *snapshot* of the
 * key's state, written by the topic's snapshot handler, spliced onto the
 * live buffer so that it continues with exactly the events newer than the
 * snapshot. Snapshots are cached per (topic, key) for a configurable time,
 * so a herd of subscribers runs the handler once.
 *
 * A subscriber reads batches (the events of one publish call for its key)
 * from its subscription, blocking or not; its pollable descriptor
 * (eventbuf_sub_fd()) never changes, so an event loop registers it once.
 *
 * Framing. A snapshot ends with an *end of snapshot* event whose index is the
 * snapshot's (0 when the handler left it at 0, as for an empty snapshot of a
 * key with no change yet). A subscriber that asked to resume from an index
 * that the live buffer no longer starts at first gets a *new snapshot to
 * follow* event: it must reset its view. eventbuf_event_is_end_of_snapshot()
 * and eventbuf_event_is_new_snapshot() tell them apart.
 *
 * Errors returned by subscription reads, each terminal (the table of
 * every code and whose it is: "Errors" in eventbuf.h):
 * * -ECONNRESET - force-closed (eventbuf_publisher_close_key() or
 *                 eventbuf_publisher_close_tag()): resubscribe.
 * * -ENOBUFS    - fell more than its lag limit behind: resubscribe.
 * * -ESHUTDOWN  - the publisher was freed.
 * * -EIO        - the snapshot handler failed with one of the library's
 *                 codes (these three included) or with -EIO.
 * * any other   - the snapshot handler's error.
 * A closed subscription holds no items any more; the caller still frees it
 * with eventbuf_unsubscribe().
 *
 * Threads. Publishing, subscribing, closing and unsubscribing may come from
 * any threads (the publisher serialises them with one mutex, and runs
 * snapshot handlers under it); a subscription is read by one thread at a
 * time, without touching the publisher's mutex. Never call the publisher
 * while holding a lock that a snapshot handler takes.
 *
 * Release callbacks (of eventbuf_publish() and eventbuf_snapshot_append())
 * follow the rules stated once at eventbuf_release_fn in eventbuf.h, which
 * also says in which threads they run.
 *
 * Indexes. A wildcard subscriber's batch has its events sorted by key (a
 * NULL key sorts as "", before every other key; the sort is stable: events
 * of one key keep their order). Indexes of a key should grow with each
 * publish. After a snapshot, or when resuming up to date, a subscription
 * skips every live event whose index is not above the snapshot's index (or
 * the index it resumed from): those count as already seen. A batch with
 * events on both sides of that index (one publish of several commits'
 * changes) is handed out as one batch without the ones at or below it (a
 * copy the subscription owns, when they are not side by side); a batch
 * with none above it is skipped. A subscriber is up to date
 * (eventbuf_subscribe_req's @index) when it names the greatest index of
 * the key's last batch.
 */

/* The most events one eventbuf_publish() or eventbuf_snapshot_append()
 * call takes. */
#define EVENTBUF_PUBLISH_MAX 65536u

/* A subscription past its lag limit is closed within this many batches
 * of its key. */
#define EVENTBUF_LAG_CHECK_EVERY 16u

struct eventbuf_publisher;
struct eventbuf_subscription;
struct eventbuf_snapshot;

/* The key that subscribes to every key of a topic (see EVENTBUF_TOPIC_WILDCARD). */
#define EVENTBUF_KEY_WILDCARD "*"

/* eventbuf_publisher_register() flags */
#define EVENTBUF_TOPIC_WILDCARD 0x1	/* accept EVENTBUF_KEY_WILDCARD subscribers */

/**
 * typedef eventbuf_snapshot_fn - write the current state of a key
 * @arg:   the argument given to eventbuf_publisher_register().
 * @topic: the topic (the registered string): valid, like @key, until
 *         the snapshot's events are released.
 * @key:   the key, or EVENTBUF_KEY_WILDCARD for a wildcard subscriber;
 *         valid until the snapshot's events are released, so events may
 *         point at it.
 * @snap:  where to write it, with eventbuf_snapshot_append().
 * @index: receives the index the snapshot reflects: the index of the last
 *         change it includes (0 when there is none yet; it is 0 on entry). It
 *         must be at least the index of every event already published for the
 *         key: the subscriber continues with the first live batch above it.
 *
 * Context: called with the publisher's mutex held, and should be quick.
 * It may call eventbuf_snapshot_append() but no other publisher function:
 * those return -EDEADLK from a handler (eventbuf_unsubscribe() and
 * eventbuf_publisher_free(), which return nothing, abort the process).
 * Return: 0, or a negative errno that ends every subscription waiting on
 * this snapshot with that code; one of the library's codes (the table in
 * eventbuf.h: -ECONNRESET, -ENOBUFS, -ESHUTDOWN among them) is delivered as
 * -EIO instead.
 * Such a snapshot is not cached. Its subscriptions first deliver the
 * events the handler appended before it failed, then the error; they have
 * no lag limit. Once a subscription has returned the error it is closed
 * like a force-closed one: it holds nothing, its descriptor stays
 * readable, every read returns the same error, and later closes
 * (eventbuf_publisher_close_key(), _close_tag(), eventbuf_publisher_free())
 * neither replace nor count it. Until then a force-close or shutdown
 * replaces the error, as for any open subscription.
 */
typedef int (*eventbuf_snapshot_fn)(void *arg, const char *topic,
				    const char *key,
				    struct eventbuf_snapshot *snap,
				    uint64_t *index);

/**
 * struct eventbuf_publisher_config - publisher settings
 * @snapshot_ttl_ms: how long a snapshot stays cached for the next
 *                   subscribers of its key; 0 disables the cache. While
 *                   cached, a snapshot also keeps every event its key gets
 *                   after it (a new subscriber replays them): up to
 *                   snapshot_ttl_ms x the key's event rate events, about
 *                   220 bytes each for one-event publishes, per cached
 *                   key.
 */
struct eventbuf_publisher_config {
	uint32_t snapshot_ttl_ms;
};

/**
 * struct eventbuf_subscribe_req - what to subscribe to
 * @topic:     a registered topic.
 * @key:       the key (not NULL), or EVENTBUF_KEY_WILDCARD.
 * @index:     0 for a fresh subscription, or the greatest index the
 *             subscriber saw, to resume without a snapshot when nothing
 *             was missed.
 * @tag:       the caller's tag (a credential's id, say) for
 *             eventbuf_publisher_close_tag(); 0 for none.
 * @lag_limit: close the subscription with -ENOBUFS once it is this many
 *             batches behind its key's newest; 0 for no limit. It is
 *             closed at most EVENTBUF_LAG_CHECK_EVERY (16) batches after
 *             it passed the limit; the publisher reads the key's
 *             subscribers only when one of them may have. A cached
 *             snapshot older than half the limit (more than
 *             @lag_limit / 2 batches were published for the key since it
 *             was made) is not used for such a subscriber: it gets a
 *             fresh one.
 */
struct eventbuf_subscribe_req {
	const char *topic;
	const char *key;
	uint64_t index;
	uint64_t tag;
	uint64_t lag_limit;
};

/**
 * struct eventbuf_publisher_stats - counters
 * @subscriptions: subscriptions attached to a key: the open ones, and
 *                 those whose snapshot handler failed (until
 *                 eventbuf_unsubscribe(), even after their error was
 *                 read). Those closed by close_key, close_tag, their lag
 *                 limit or eventbuf_publisher_free() are not counted.
 * @key_buffers:   (topic, key) buffers, one per key with an attached
 *                 subscription; a topic's wildcard subscribers share one
 *                 (key EVENTBUF_KEY_WILDCARD), counted here too.
 * @cache_entries: cached snapshots (at most one per key buffer).
 * @snapshots_built: snapshot handler calls so far, failed ones included.
 * @lib:           the library's process-wide counters (live items,
 *                 retained bytes, open eventfds...). Its @open_eventfds
 *                 counts the wait eventfds of buffers only: each
 *                 subscription's epoll descriptor (eventbuf_sub_fd()) and
 *                 the publisher's own eventfd are not in it.
 */
struct eventbuf_publisher_stats {
	uint64_t subscriptions;
	uint64_t key_buffers;
	uint64_t cache_entries;
	uint64_t snapshots_built;
	struct eventbuf_stats lib;
};

/**
 * eventbuf_publisher_new() - create a publisher
 * @config: settings, or NULL for the defaults (no snapshot cache).
 * @pubp:   receives the publisher.
 *
 * Return: 0, -EINVAL, -ENOMEM, or -EMFILE (it needs one eventfd).
 */
EVENTBUF_API EVENTBUF_MUST_CHECK int
eventbuf_publisher_new(const struct eventbuf_publisher_config *config,
		       struct eventbuf_publisher **pubp);

/**
 * eventbuf_publisher_free() - shut a publisher down
 * @pub: the publisher, or NULL.
 *
 * Every open subscription is closed with -ESHUTDOWN (and lets go of its
 * items); cached snapshots are dropped.
 *
 * After this call @pub must be passed to no function, this one included.
 * Its memory stays while subscriptions remain (they hold it) and is freed
 * with the last eventbuf_unsubscribe(), at once if there is none, so a
 * later call is a use-after-free; CONFIG_EVENTBUF_DEBUG=y builds abort
 * with a message naming the call while the memory is still there. Each
 * subscription stays the caller's: it may still be read (every read
 * returns its terminal code, -ESHUTDOWN for those this call closed; the
 * batch returned last stays valid until then), its descriptor stays
 * readable, and it must be freed with eventbuf_unsubscribe(), from any
 * thread, in any order. Release callbacks of the publisher's events may
 * run after this call (they keep what they need).
 *
 * Context: not concurrently with other calls on @pub; may block briefly
 * (joins the cache's expiry thread).
 */
EVENTBUF_API void eventbuf_publisher_free(struct eventbuf_publisher *pub);

/**
 * eventbuf_publisher_register() - declare a topic and its snapshot handler
 * @pub:     the publisher.
 * @topic:   the topic's name, copied.
 * @handler: writes a key's current state for new subscribers.
 * @arg:     passed to @handler.
 * @flags:   0 or EVENTBUF_TOPIC_WILDCARD.
 *
 * Return: 0; -EINVAL (NULL or empty topic, no handler, unknown flags);
 * -EEXIST (already registered); -ENOMEM; -EDEADLK (called from a snapshot
 * handler or a release callback).
 */
EVENTBUF_API EVENTBUF_MUST_CHECK int
eventbuf_publisher_register(struct eventbuf_publisher *pub, const char *topic,
			    eventbuf_snapshot_fn handler, void *arg,
			    unsigned int flags);

/**
 * eventbuf_publish() - publish a batch of events
 * @pub:     the publisher.
 * @events:  @n events of registered topics; @key may be NULL (no key) but
 *           not EVENTBUF_KEY_WILDCARD. Copied; topic and key strings and
 *           payloads must stay valid until @release.
 * @n:       number of events (1 to EVENTBUF_PUBLISH_MAX, 65536).
 * @release: called once with (a copy of) the events, grouped by topic and
 *           key, when no subscriber or cache needs any of them, or NULL.
 *           That is at once, in this call, when nobody watches their keys.
 * @arg:     passed to @release.
 *
 * Each (topic, key) buffer with subscribers receives one batch with the
 * events of its key, in their order; each wildcard buffer one batch with
 * all the events of its topic.
 *
 * Context: any thread; takes the publisher's mutex.
 * Return: 0; -EINVAL (bad arguments, unknown topic, wildcard key);
 * -ENOMEM (nothing published); -ESHUTDOWN; -EDEADLK (called from a
 * snapshot handler or a release callback). On every error nothing is
 * published, @release is not called and the events stay the caller's.
 * When a
 * key's batch cannot be stored, that key's subscriptions are closed
 * (-ECONNRESET) rather than left with a hole in their stream.
 */
EVENTBUF_API EVENTBUF_MUST_CHECK int
eventbuf_publish(struct eventbuf_publisher *pub,
		 const struct eventbuf_event *events, size_t n,
		 eventbuf_release_fn release, void *arg);

/**
 * eventbuf_snapshot_append() - write a batch into a snapshot
 * @snap, @events, @n, @release, @arg: as eventbuf_publish(), for the
 *   handler's topic and key (the events' own topic and key are kept).
 *
 * Context: only from within the snapshot handler that received @snap.
 * Return: 0, -EINVAL, -ENOMEM.
 */
EVENTBUF_API EVENTBUF_MUST_CHECK int
eventbuf_snapshot_append(struct eventbuf_snapshot *snap,
			 const struct eventbuf_event *events, size_t n,
			 eventbuf_release_fn release, void *arg);

/**
 * eventbuf_subscribe() - subscribe to a topic and key
 * @pub:  the publisher.
 * @req:  what to subscribe to (copied).
 * @subp: receives the subscription, which the caller frees with
 *        eventbuf_unsubscribe().
 *
 * Up to date (@req->index is the greatest index of the key's newest
 * batch): the subscription continues with what comes next, no snapshot.
 * The newest batch is known only while the key has subscribers (nothing
 * is kept for a key nobody watches): a resume of a key without any gets a
 * snapshot, with a new-snapshot-to-follow event first. Otherwise it starts
 * with a snapshot (cached or built now) and its end of snapshot event,
 * preceded by a new-snapshot-to-follow event when @req->index was not 0.
 *
 * Context: any thread; takes the publisher's mutex and may run the
 * snapshot handler.
 * A subscription holds no descriptor of its own until eventbuf_sub_fd()
 * asks for one; attached to a poller (<eventbuf/poller.h>) it never does.
 *
 * Return: 0; -EINVAL (bad arguments, unknown topic, wildcard key on a
 * topic without EVENTBUF_TOPIC_WILDCARD); -ENOMEM; -ESHUTDOWN (the
 * publisher is freed); -EDEADLK (called from a snapshot handler or a
 * release callback).
 */
EVENTBUF_API EVENTBUF_MUST_CHECK int
eventbuf_subscribe(struct eventbuf_publisher *pub,
		   const struct eventbuf_subscribe_req *req,
		   struct eventbuf_subscription **subp);

/**
 * eventbuf_unsubscribe() - end and free a subscription
 * @sub: the subscription, or NULL.
 *
 * A subscription attached to a poller is detached first.
 *
 * After this call @sub must be passed to no function, this one included
 * (a use-after-free); CONFIG_EVENTBUF_DEBUG=y builds abort with a message
 * naming the call for the last 4,096 handles freed.
 *
 * Context: the subscription's owner, not concurrently with a read on it;
 * the poller's thread when it is attached to one; not from a snapshot
 * handler or a release callback (the process aborts).
 */
EVENTBUF_API void eventbuf_unsubscribe(struct eventbuf_subscription *sub);

/**
 * eventbuf_sub_next_nonblock() - the next batch, if there is one
 * @sub:    the subscription.
 * @events: receives the batch's events (borrowed: valid until the next
 *          call on @sub or eventbuf_unsubscribe(), even if the publisher
 *          closes the subscription meanwhile).
 * @n:      receives how many.
 *
 * Context: the subscription's reader thread (its poller's, when
 * attached); never blocks.
 * Return: 0; -EAGAIN (nothing yet: wait for eventbuf_sub_fd() or the
 * poller, with which the subscription is parked now); -EINVAL; -EMFILE,
 * -ENFILE, -ENOMEM, -ENOSPC, -EOVERFLOW (nothing yet, and no descriptor to
 * wait on, or -ENOMEM: no memory to copy a batch that straddles the
 * snapshot, see "Indexes" above: retry later; not terminal, nothing is
 * lost; an attached subscription is reported again); a terminal code
 * (see the DOC block above).
 */
EVENTBUF_API EVENTBUF_MUST_CHECK int
eventbuf_sub_next_nonblock(struct eventbuf_subscription *sub,
			   const struct eventbuf_event **events, size_t *n);

/**
 * eventbuf_sub_next() - wait for the next batch
 * @sub, @events, @n: as eventbuf_sub_next_nonblock().
 * @timeout_ms: < 0 forever, 0 not at all.
 * @cancel_fd:  a descriptor whose readability cancels the wait, or -1.
 *
 * With a timeout, the first call makes the subscription's own descriptor
 * (as eventbuf_sub_fd() does) to wait on.
 *
 * Context: the subscription's reader thread; may block.
 * Return: as eventbuf_sub_next_nonblock(), -ETIMEDOUT or -ECANCELED
 * instead of -EAGAIN (neither is terminal); -EISCONN (attached to a
 * poller, and @timeout_ms is not 0: wait through the poller); -EINVAL for
 * a @cancel_fd that is not open (whatever @timeout_ms, as
 * eventbuf_item_next()); -EDEADLK (called inside a bp flavor read-side
 * critical section; other flavors' are not detected).
 */
EVENTBUF_API EVENTBUF_MUST_CHECK int
eventbuf_sub_next(struct eventbuf_subscription *sub, int timeout_ms,
		  int cancel_fd, const struct eventbuf_event **events,
		  size_t *n);

/**
 * eventbuf_sub_fd() - the subscription's pollable descriptor
 * @sub: the subscription.
 *
 * Made on the first call: an epoll instance and an eventfd, two
 * descriptors per subscription, for small programs. A service with many
 * subscriptions attaches them to a poller instead (<eventbuf/poller.h>):
 * no descriptor per subscription, and no limit on subscribers per key.
 * Here the subscribers of one key share the eventfd of the link they park
 * on, and Linux refuses (EINVAL from epoll_ctl()) to add more than 500
 * epoll sets that watch one file to another epoll set: no more than 500
 * subscriptions of one key may be polled through their own descriptors
 * from one epoll set.
 *
 * Readable when eventbuf_sub_next_nonblock() may have something to say (a
 * batch or a terminal error), and right after it is made. It never
 * changes: register it once, with EPOLLIN (level- or edge-triggered), and
 * read until -EAGAIN each time it fires; the subscription re-arms itself
 * inside eventbuf_sub_next_nonblock() when it runs out (one epoll_ctl() on
 * its own epoll instance when it parks on a new link). Should that
 * epoll_ctl() fail, the read returns its error (-ENOMEM, -ENOSPC) instead
 * of -EAGAIN, and the next read retries it. Do not read or close it.
 *
 * Context: the subscription's reader thread; never blocks.
 * Return: the descriptor; -EINVAL (@sub is NULL); -EISCONN (@sub is
 * attached to a poller); -EMFILE, -ENFILE, -ENOMEM (it could not be made;
 * a later call tries again).
 */
EVENTBUF_API int eventbuf_sub_fd(const struct eventbuf_subscription *sub);

/**
 * eventbuf_publisher_close_key() - force-close every subscription of a key
 * @pub:   the publisher.
 * @topic: the topic.
 * @key:   the key (EVENTBUF_KEY_WILDCARD: the wildcard subscribers).
 *
 * The subscriptions' next read returns -ECONNRESET; they let go of their
 * items now (one attached to a poller, whose reader lends its reference to
 * the poller, at its next read or unsubscribe on the poller's thread, which
 * the poller reports it for); the key's cached snapshot is dropped. A
 * registered topic whose key has no subscribers gives 0; an unknown topic
 * -EINVAL.
 *
 * Return: the number of subscriptions this call closed (not those closed
 * already, a failed one whose error was read included), -EINVAL, or
 * -EDEADLK (called from a snapshot handler or a release callback).
 */
EVENTBUF_API int eventbuf_publisher_close_key(struct eventbuf_publisher *pub,
					      const char *topic,
					      const char *key);

/**
 * eventbuf_publisher_close_tag() - force-close the subscriptions of a tag
 * @pub: the publisher.
 * @tag: the tag given at subscribe time (not 0).
 *
 * Return: the number of subscriptions this call closed (not those closed
 * already, a failed one whose error was read included), -EINVAL, or
 * -EDEADLK (called from a snapshot handler or a release callback).
 */
EVENTBUF_API int eventbuf_publisher_close_tag(struct eventbuf_publisher *pub,
					      uint64_t tag);

/**
 * eventbuf_publisher_stats() - read the publisher's counters
 * @pub:   the publisher.
 * @stats: filled on return.
 *
 * Return: 0, -EINVAL, or -EDEADLK (called from a snapshot handler or a
 * release callback).
 */
EVENTBUF_API int eventbuf_publisher_stats(struct eventbuf_publisher *pub,
					  struct eventbuf_publisher_stats *stats);

/**
 * eventbuf_event_is_end_of_snapshot() - the framing event after a snapshot
 * @ev: an event read from a subscription.
 *
 * Return: true if @ev ends a snapshot; its index is the snapshot's.
 */
EVENTBUF_API bool
eventbuf_event_is_end_of_snapshot(const struct eventbuf_event *ev);

/**
 * eventbuf_event_is_new_snapshot() - the framing event before a snapshot
 * @ev: an event read from a subscription.
 *
 * Return: true if @ev says a new snapshot follows: reset your view.
 */
EVENTBUF_API bool eventbuf_event_is_new_snapshot(const struct eventbuf_event *ev);

#ifdef __cplusplus
}
#endif

#endif /* _EVENTBUF_PUBLISHER_H */

/* SPDX-License-Identifier: LGPL-2.1-or-later */
#ifndef _EVENTBUF_POLLER_H
#define _EVENTBUF_POLLER_H

#include <stddef.h>
#include <stdint.h>

#include <eventbuf/eventbuf.h>

#ifdef __cplusplus
extern "C" {
#endif

/**
 * DOC: pollers - many readers and subscriptions in one event loop
 *
 * A poller is one event loop's view of eventbuf: one descriptor for the
 * loop's own epoll set (or to wait on with eventbuf_poller_wait()), and
 * any number of readers and subscriptions attached to it. It is what a
 * service with thousands of subscribers uses instead of one descriptor
 * each:
 *
 * - An attached reader or subscription *parks* by itself when a read
 *   returns -EAGAIN. The poller registers the eventfd of each distinct link
 *   its parked objects wait on once, however many wait there, and keeps
 *   the registration when the link is done: eventfds are recycled
 *   (eventbuf.h), so the next link usually comes with a descriptor the
 *   poller already watches. A delivery then costs no eventfd(), no
 *   epoll_ctl() and no close().
 * - Descriptors in use: two per poller (its epoll instance and an eventfd
 *   for wake-ups from other threads) plus one per distinct link that
 *   something waits on, never one per subscription. The wake-up paths of
 *   one link's eventfd are the pollers watching it (Linux allows 500
 *   nested paths per file, see epoll(7) and fs/eventpoll.c), so any number
 *   of subscriptions of one key are fine.
 * - When its descriptor is readable, eventbuf_poller_ready() fills an
 *   array with the attached objects that may read now; read each until it
 *   returns -EAGAIN (which parks it again) or a terminal code. An object
 *   reported and not read to -EAGAIN is not reported again until it is.
 *   Reports are never stale: a reader is reported only once the link it
 *   parked on has a successor (or its subscription was closed), although
 *   the descriptor may fire without a report (eventbuf_poller_ready()
 *   then returns 0).
 * - A newly attached object is reported at once, so the first reads
 *   happen (and park it) without the caller keeping track.
 * - An object whose read could not park it (-EMFILE, -ENFILE, -ENOMEM,
 *   -ENOSPC, -EOVERFLOW: nothing to wait with) is reported again at once,
 *   so that no read is lost; a loop that reads it again at once spins
 *   while the process is out of descriptors. Rest it instead: detach it
 *   and attach it again on a later tick, when it is reported and read
 *   again (examples/service.c, rest()).
 * - The descriptor works with level- and edge-triggered registration:
 *   when eventbuf_poller_ready() leaves reports for the next call (the
 *   array was full), the poller makes its descriptor fire again.
 * - Quiet signals. A link that only pollers wait on, at most two of them
 *   (their objects, and no blocking reader, exported descriptor or third
 *   poller), is signalled through those pollers, not by a write of the
 *   link's eventfd: the writer queues the link's descriptor number in a
 *   ring of each poller's (1,024 entries) and writes a poller's own
 *   eventfd only if that poller took everything queued since its last
 *   write. While the loops work through a pass, publishes to the keys
 *   they wait on cost the writer no system call, and the loops no read to
 *   reset a descriptor. The first 15 pollers alive at a time get a ring;
 *   the others, a full ring, and links with other waiters fall back to
 *   the eventfd write. Nothing changes for the caller: the same reports,
 *   the same descriptor.
 *
 * Threads. A poller, and every reader and subscription attached to it,
 * is used by one thread at a time (the loop's): ready, wait, add, del,
 * free, and the reads, eventbuf_reader_free() and eventbuf_unsubscribe() of
 * attached objects. The publisher closes a subscription (force-close, lag
 * limit, eventbuf_publisher_free()) from any thread: the poller hears of
 * it through its own eventfd and reports the subscription, whose next
 * read returns the code.
 *
 * An attached object is waited on only through its poller: its own
 * blocking and descriptor calls (eventbuf_reader_next() with a timeout,
 * eventbuf_reader_wait_fd(), eventbuf_sub_next() with a timeout,
 * eventbuf_sub_fd()) return -EISCONN until it is detached.
 */

struct eventbuf_poller;
struct eventbuf_subscription;

/**
 * struct eventbuf_poll_event - one report of eventbuf_poller_ready()
 * @reader: the reader that may read now, or NULL.
 * @sub:    the subscription that may read now, or NULL (exactly one of
 *          @reader and @sub is set).
 * @data:   the value given when it was attached.
 *
 * Both pointers are the caller's own objects, as attached: a report holds
 * no reference. An object appears at most once per call; one the caller
 * frees while handling an earlier report of the same array is still named
 * by its own later report, which the caller must then skip.
 */
struct eventbuf_poll_event {
	struct eventbuf_reader *reader;
	struct eventbuf_subscription *sub;
	void *data;
};

/**
 * struct eventbuf_poller_stats - what one poller did (its thread's view)
 * @attached:   readers and subscriptions attached now.
 * @parked:     of those, parked on a link now.
 * @links:      distinct links they are parked on now (one registration
 *              and one reference each).
 * @epoll_adds: epoll_ctl(EPOLL_CTL_ADD) calls so far.
 * @wakeups:    link wake-ups that reported something.
 * @stale:      descriptor events that reported nothing (an eventfd that
 *              fired for a link nobody here waits on any more).
 * @reports:    objects handed out by eventbuf_poller_ready(), and
 *              members by eventbuf_poller_group().
 * @quiet:      of @wakeups, those whose writer signalled this poller
 *              directly instead of writing the link's eventfd: a link
 *              only this poller (and perhaps one other) waits on,
 *              signalled while it was awake (see "Quiet signals" above).
 */
struct eventbuf_poller_stats {
	uint64_t attached;
	uint64_t parked;
	uint64_t links;
	uint64_t epoll_adds;
	uint64_t wakeups;
	uint64_t stale;
	uint64_t reports;
	uint64_t quiet;
};

/**
 * eventbuf_poller_new() - create a poller
 * @pollerp: receives the poller, owned by the caller (eventbuf_poller_free()).
 *
 * Context: any thread; may allocate; creates two descriptors.
 * Return:
 * * 0        - success.
 * * -EINVAL  - @pollerp is NULL.
 * * -ENOMEM  - out of memory.
 * * -EMFILE, -ENFILE - no descriptor; nothing was created.
 */
EVENTBUF_API EVENTBUF_MUST_CHECK int
eventbuf_poller_new(struct eventbuf_poller **pollerp);

/**
 * eventbuf_poller_free() - free a poller
 * @poller: the poller, or NULL (no-op).
 *
 * Objects still attached are detached first: they are left as they were,
 * owned by the caller, no longer parked and usable on their own or with
 * another poller. Nothing attached is freed.
 *
 * The poller's epoll instance is closed at once; its own eventfd, which
 * writers may still be signalling, after an RCU grace period
 * (eventbuf_barrier() waits for it).
 *
 * After this call @poller must be passed to no function, this one included
 * (a use-after-free); CONFIG_EVENTBUF_DEBUG=y builds abort with a message
 * naming the call for the last 4,096 handles freed.
 *
 * Context: the poller's thread; never blocks.
 */
EVENTBUF_API void eventbuf_poller_free(struct eventbuf_poller *poller);

/**
 * eventbuf_poller_fd() - the descriptor to watch
 * @poller: the poller.
 *
 * Readable when eventbuf_poller_ready() may have something to report.
 * Register it with EPOLLIN, level- or edge-triggered. Never read, write
 * or close it. It stays the same for the poller's life.
 *
 * Return: the descriptor, or -EINVAL when @poller is NULL.
 */
EVENTBUF_API int eventbuf_poller_fd(const struct eventbuf_poller *poller);

/**
 * eventbuf_poller_add_reader() - attach a reader
 * @poller: the poller.
 * @reader: a reader not attached anywhere; it stays the caller's.
 * @data:   handed back in each report of @reader.
 *
 * @reader is reported by the next eventbuf_poller_ready().
 *
 * Context: the poller's thread; never blocks.
 * Return:
 * * 0       - attached.
 * * -EINVAL - @poller or @reader is NULL.
 * * -EBUSY  - @reader is already attached (to this poller or another).
 */
EVENTBUF_API EVENTBUF_MUST_CHECK int
eventbuf_poller_add_reader(struct eventbuf_poller *poller,
			   struct eventbuf_reader *reader, void *data);

/**
 * eventbuf_poller_add_sub() - attach a subscription
 * @poller: the poller.
 * @sub:    a subscription not attached anywhere, whose eventbuf_sub_fd()
 *          was never asked for; it stays the caller's.
 * @data:   handed back in each report of @sub.
 *
 * An attached subscription has no descriptor of its own. It is reported
 * by the next eventbuf_poller_ready(), and again whenever the publisher
 * closes it.
 *
 * Context: the poller's thread; never blocks.
 * Return:
 * * 0       - attached.
 * * -EINVAL - @poller or @sub is NULL.
 * * -EBUSY  - @sub is already attached, or has its own descriptor
 *             (eventbuf_sub_fd() was called, or eventbuf_sub_next() waited).
 */
EVENTBUF_API EVENTBUF_MUST_CHECK int
eventbuf_poller_add_sub(struct eventbuf_poller *poller,
			struct eventbuf_subscription *sub, void *data);

/**
 * eventbuf_poller_del_reader() - detach a reader
 * @poller: the poller @reader is attached to.
 * @reader: the reader; no longer parked or reported once this returns.
 *
 * eventbuf_reader_free() detaches by itself.
 *
 * Context: the poller's thread; never blocks.
 * Return: 0; -EINVAL (a NULL argument); -ENOENT (@reader is not attached
 * to @poller).
 */
EVENTBUF_API int eventbuf_poller_del_reader(struct eventbuf_poller *poller,
					    struct eventbuf_reader *reader);

/**
 * eventbuf_poller_del_sub() - detach a subscription
 * @poller: the poller @sub is attached to.
 * @sub:    the subscription; no longer parked or reported once this
 *          returns.
 *
 * eventbuf_unsubscribe() detaches by itself.
 *
 * Context: the poller's thread; never blocks.
 * Return: 0; -EINVAL (a NULL argument); -ENOENT (@sub is not attached to
 * @poller).
 */
EVENTBUF_API int eventbuf_poller_del_sub(struct eventbuf_poller *poller,
					 struct eventbuf_subscription *sub);

/**
 * eventbuf_poller_ready() - collect what may read now
 * @poller: the poller.
 * @evs:    array of @max reports to fill.
 * @max:    its size, at least 1.
 *
 * Never blocks. Each reported object was unparked: read it until -EAGAIN.
 * What does not fit in @evs is kept for the next call, and the poller's
 * descriptor fires again for it.
 *
 * Context: the poller's thread; never blocks.
 * Return: the number of reports (0: nothing now), or -EINVAL (a NULL
 * argument, @max 0).
 */
EVENTBUF_API EVENTBUF_MUST_CHECK int
eventbuf_poller_ready(struct eventbuf_poller *poller,
		      struct eventbuf_poll_event *evs, size_t max);

/**
 * eventbuf_poller_wait() - wait for something to report
 * @poller:     the poller.
 * @evs, @max:  as eventbuf_poller_ready().
 * @timeout_ms: < 0 forever, 0 not at all.
 * @cancel_fd:  a descriptor whose readability cancels the wait, or -1.
 *
 * For a thread that uses only the poller, with no epoll set of its own.
 *
 * Context: the poller's thread; may block (not under an RCU read-side
 * critical section).
 * Return: the number of reports (at least 1, or 0 when groups are
 * waiting, see eventbuf_poller_group()); -ETIMEDOUT; -ECANCELED;
 * -EINVAL as eventbuf_poller_ready() or for a @cancel_fd that is neither
 * -1 nor an open descriptor (checked when nothing is there to report,
 * whatever @timeout_ms: 0 too);
 * -EDEADLK (called inside an RCU read-side critical section of the
 * library's flavor).
 */
EVENTBUF_API EVENTBUF_MUST_CHECK int
eventbuf_poller_wait(struct eventbuf_poller *poller,
		     struct eventbuf_poll_event *evs, size_t max,
		     int timeout_ms, int cancel_fd);

/**
 * DOC: groups - one read for every subscription of a link
 *
 * Subscriptions of one key that have read everything wait on the same
 * link, and what they read next is the same batches. With groups enabled
 * (eventbuf_poller_enable_groups()), the poller keeps such subscriptions
 * together in *cohorts*, and hands a cohort out whole:
 * eventbuf_poller_group() gives its members, eventbuf_poller_group_next()
 * each new batch once for all of them. Reading a cohort costs the library
 * a walk of the new items and a few pointer moves, whatever its size; what
 * the caller does per member and event is its own. A service whose hot
 * keys have thousands of subscribers per loop reads them with no call,
 * lock or fence per subscription and event.
 *
 * The loop, after its descriptor fired (or eventbuf_poller_wait()
 * returned):
 *
 *	n = eventbuf_poller_ready(p, evs, max);  // read each until -EAGAIN
 *	while (eventbuf_poller_group(p, &g) > 0)
 *		while (!eventbuf_poller_group_next(p, &events, &nev))
 *			for (i = 0; i < g.count; i++)
 *				if (g.members[i].sub)
 *					handle(g.members[i].data, events, nev);
 *
 * - Call eventbuf_poller_group() until it returns 0 before the loop waits
 *   again: a cohort that has read everything is armed (its link's eventfd
 *   installed, as for any waiter) only then, so that while the loop falls
 *   behind the writer makes no system call for it. A cohort that already
 *   has something new when the poller would arm it makes the poller's
 *   descriptor fire, so the next wait returns at once. Before arming, the
 *   call yields the CPU once (sched_yield()) so that a writer sharing the
 *   core publishes more first; it never sleeps.
 * - A subscription reads in a cohort only when it has nothing of its own
 *   to hand out first; otherwise (a new snapshot frame, a batch its
 *   snapshot already covered, a close, an end-of-snapshot item or an
 *   error) it is reported by eventbuf_poller_ready() and read on its own.
 *   Raw readers are always reported one by one.
 * - The group's events stay valid until the next eventbuf_poller_group(),
 *   eventbuf_poller_group_next() or eventbuf_poller_ready() call on the
 *   poller. eventbuf_poller_group_next() returns -EAGAIN at the end of the
 *   group, when its members have read everything.
 * - A group that stays open while the writer keeps ahead of it holds what
 *   it read no longer than a lone reader would (at most
 *   EVENTBUF_READER_ANCHOR_STRIDE batches behind it), and its members'
 *   lag (eventbuf_subscribe_req's @lag_limit) counts from what it handed
 *   out, told to the publisher at least every 1/64 of the smallest limit
 *   among them: a member of a group may be closed up to that much early.
 * - A member that leaves while its group is open (unsubscribed, detached,
 *   closed by the publisher and collected, or read on its own with
 *   eventbuf_sub_next_nonblock()) has its entry in g.members cleared
 *   (@sub and @data NULL): skip those. A cohort's subscription read on
 *   its own (in a group or between groups) leaves its cohort, reads on
 *   from where the cohort got to, and is reported by the next
 *   eventbuf_poller_ready() unless that read parked it (-EAGAIN).
 * - A call to eventbuf_poller_group() or eventbuf_poller_ready() while a
 *   group is open breaks it up: its members are reported one by one and
 *   read on from where the group got to. A member closed by the publisher
 *   while its group is open reads the group's batches to the end, then is
 *   reported with its code.
 * - eventbuf_poller_wait() also returns (with 0) when cohorts are waiting
 *   to be looked at. A caller that leaves groups untaken has the poller's
 *   descriptor fire again at its next eventbuf_poller_ready().
 */

/**
 * struct eventbuf_poll_group - the subscriptions of one group
 * @members: one report per member (@reader NULL, @sub and @data set, or
 *           both NULL once the member left), the poller's array, valid
 *           until the group is closed.
 * @count:   how many entries.
 */
struct eventbuf_poll_group {
	const struct eventbuf_poll_event *members;
	size_t count;
};

/**
 * eventbuf_poller_enable_groups() - hand out subscriptions in groups
 * @poller: the poller.
 *
 * From now on, subscriptions waiting on a link that fires are handed out
 * by eventbuf_poller_group() when they can read together (see "groups"
 * above), instead of being reported by eventbuf_poller_ready(). There is
 * no way back: a poller's loop is written for one or the other.
 *
 * Context: the poller's thread; never blocks.
 * Return: 0, or -EINVAL when @poller is NULL.
 */
EVENTBUF_API int eventbuf_poller_enable_groups(struct eventbuf_poller *poller);

/**
 * eventbuf_poller_group() - the next group of subscriptions to read
 * @poller: the poller, with groups enabled.
 * @group:  filled with the members (or emptied when there is none).
 *
 * Breaks up the group that was open, if any (see above). Call after
 * eventbuf_poller_ready() (which collects what fired) until it returns 0,
 * reading each group with eventbuf_poller_group_next(); the call that
 * returns 0 arms the cohorts that read everything.
 *
 * Context: the poller's thread; never sleeps (may yield the CPU once).
 * Return: 1 (a group is open), 0 (none waiting), -EINVAL (a NULL
 * argument).
 */
EVENTBUF_API EVENTBUF_MUST_CHECK int
eventbuf_poller_group(struct eventbuf_poller *poller,
		      struct eventbuf_poll_group *group);

/**
 * eventbuf_poller_group_next() - the next batch every member reads
 * @poller: the poller.
 * @events: receives the batch, valid as the group's events (see above).
 * @n:      receives its size.
 *
 * Each member of the open group has read the batch once this returns 0:
 * hand it to each member whose entry is not cleared. At the end the
 * cohort waits for eventbuf_poller_group() to look at it again or arm it.
 *
 * Context: the poller's thread; never blocks.
 * Return: 0 (a batch); -EAGAIN (the group is done and closed, or none is
 * open; *@events NULL); -EINVAL (a NULL argument).
 */
EVENTBUF_API EVENTBUF_MUST_CHECK int
eventbuf_poller_group_next(struct eventbuf_poller *poller,
			   const struct eventbuf_event **events, size_t *n);

/**
 * eventbuf_poller_stats() - read a poller's counters
 * @poller: the poller.
 * @stats:  filled on return.
 *
 * Context: the poller's thread.
 * Return: 0, or -EINVAL when an argument is NULL.
 */
EVENTBUF_API int eventbuf_poller_stats(const struct eventbuf_poller *poller,
				       struct eventbuf_poller_stats *stats);

#ifdef __cplusplus
}
#endif

#endif /* _EVENTBUF_POLLER_H */

// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * DOC: Theory of operation - subscriptions
 *
 * A subscription is a reader (reader.c) over its key buffer, plus what the
 * publisher may change under it: its terminal state. Reads take only the
 * subscription's own mutex, never the publisher's; closers take it after
 * the publisher's (publisher.c), so a close never lands in the middle of a
 * read, and a read never waits for a publish.
 *
 * What a read hands out is a slice of a record (publisher.c), kept alive
 * by the items the reader holds. When a closer frees the reader it first
 * takes a reference on the record of the last batch handed out (->cur),
 * kept in ->held until the next call: the caller's events stay valid
 * until then, as promised, while the items themselves go back to
 * reclamation at once.
 *
 * A subscription is waited on in one of two ways, chosen by its owner:
 *
 * Through a poller (poller.c; eventbuf_poller_add_sub()): ->pn is the
 * poller's node. A read that runs dry parks the reader's link with the
 * poller; the subscription has no descriptor of its own. A closer (on any
 * thread, holding ->lock, which attach and detach take to change
 * ->pn.poller) pushes the subscription on the poller's inbox, and the
 * poller reports it.
 *
 * Through its own descriptor (eventbuf_sub_fd(), or a blocking
 * eventbuf_sub_next()): ->epfd, an epoll instance made on first demand,
 * so that it never changes for the caller. It holds:
 * - ->kick_fd, an eventfd of the subscription's own, written once when it
 *   is made and never read, registered edge-triggered: that one edge makes
 *   epfd readable at once, so a caller that waits before its first read
 *   does not sleep through a snapshot that is already there. A close turns
 *   it level-triggered (EPOLL_CTL_MOD: no allocation, so it cannot fail for
 *   lack of memory), and epfd stays readable for good. Being the
 *   subscription's own, it adds no wake-up path to any other set: a file
 *   shared by every subscription's epfd would hit the kernel's limit on
 *   nested wake-up paths (500 sets inside a set) long before a service's
 *   subscriber count;
 * - edge-triggered, the eventfd of the link the reader parks on, added
 *   whenever the reader parks on a link other than the one registered
 *   (->epfd_link), and marked exported so that it is never recycled
 *   (fdpool.c). A failed registration is returned to the caller and
 *   retried on the next park, never forgotten: the caller's next read
 *   retries instead of waiting on a descriptor nothing will wake.
 *   Subscribers of one key share that link's eventfd, so a hot key whose
 *   subscribers all sit in one epoll set through their own descriptors
 *   meets the same 500-path limit: that is what pollers are for.
 * A read that runs dry empties epfd's ready list before it parks again,
 * so epfd is readable exactly when something happened since. Descriptors
 * of links left behind stay in the set until their items are reclaimed
 * (closing an eventfd removes it from every epoll set).
 *
 * With neither, a read that runs dry does not park: nothing would wait.
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <eventbuf/poller.h>

#include "pubsub.h"

/*
 * Groups (poller.c): a subscription parked on its key's link with others
 * may read the next batches with them, handed out once for the whole
 * group, when it has nothing of its own to hand out first (open, no new
 * snapshot frame pending, the batch not one its snapshot already
 * covered) and the batches are plain live ones. Everything the group
 * reads is on the poller's thread, like the subscription's own reads; the
 * state, which a closer writes under ->lock on another thread, is read
 * with READ_ONCE(): a close that lands during a group read is reported
 * after it, as after a read of its own.
 */
static bool sub_batch(const struct eventbuf_item *it, uint64_t skip,
		      const struct eventbuf_event **events, size_t *n,
		      uint64_t *seqp)
{
	const struct eventbuf_event *ev = eventbuf_item_events(it);
	const struct group *g;

	/* Only a batch wholly above the snapshot (its least index, see
	 * struct group) is the group's: the members that read one it
	 * covered, even in part, filter it on their own (read_batch()). */
	if (!ev || eventbuf_event_is_end_of_snapshot(ev) || ev->index <= skip)
		return false;
	g = ev->payload;
	if (!g->seq)
		return false;
	*events = &g->rec->events[g->off];
	*n = g->n;
	*seqp = g->seq;
	return true;
}

static bool sub_may_join(struct __eventbuf_pollnode *node,
			 const struct eventbuf_item *first)
{
	struct eventbuf_subscription *sub = node->owner;
	const struct eventbuf_event *events;
	uint64_t seq;
	size_t n;

	if (READ_ONCE(sub->state) != SUB_OPEN || sub->new_snapshot_pending)
		return false;
	return !first ||
	       sub_batch(first, sub->skip_through, &events, &n, &seq);
}

static uint64_t sub_skip_through(const struct __eventbuf_pollnode *node)
{
	const struct eventbuf_subscription *sub = node->owner;

	return sub->skip_through;
}

static uint64_t sub_lag_limit(const struct __eventbuf_pollnode *node)
{
	const struct eventbuf_subscription *sub = node->owner;

	return sub->lag_limit;
}

static void sub_moved(struct __eventbuf_pollnode *node, uint64_t seq)
{
	struct eventbuf_subscription *sub = node->owner;

	WRITE_ONCE(sub->last_seq, seq);
}

static const struct __eventbuf_group_ops sub_group_ops = {
	.may_join = sub_may_join,
	.skip_through = sub_skip_through,
	.lag_limit = sub_lag_limit,
	.batch = sub_batch,
	.moved = sub_moved,
};

int __eventbuf_sub_alloc(struct eventbuf_publisher *pub,
			 const struct eventbuf_subscribe_req *req,
			 struct eventbuf_subscription **subp)
{
	struct eventbuf_subscription *sub = calloc(1, sizeof(*sub));

	if (!sub)
		return -ENOMEM;
	pthread_mutex_init(&sub->lock, NULL);
	handle_live(sub, EVENTBUF_SUB_LIVE);
	sub->pub = pub;
	sub->tag = req->tag;
	sub->lag_limit = req->lag_limit;
	sub->epfd = -1;
	sub->kick_fd = -1;
	sub->epfd_link = -1;
	sub->pn.owner = sub;
	sub->pn.lock = &sub->lock;
	sub->pn.is_sub = true;
	sub->pn.group_ops = &sub_group_ops;
	sub->pn.fd = -1;
	atomic_init(&sub->last_seq, 0);
	atomic_fetch_add_explicit(&pub->refs, 1, memory_order_relaxed);
	*subp = sub;
	return 0;
}

/* Under ->lock: make ->epfd and ->kick_fd (see the top of this file). */
static int make_fds(struct eventbuf_subscription *sub)
{
	struct epoll_event ev = { .events = EPOLLIN | EPOLLET };
	static const uint64_t one = 1;
	int ret;

	if (sub->epfd >= 0)
		return 0;
	if (sub->state != SUB_OPEN)
		ev.events = EPOLLIN;
	sub->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (sub->epfd < 0)
		goto fail;
	sub->kick_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (sub->kick_fd < 0 ||
	    write(sub->kick_fd, &one, sizeof(one)) != sizeof(one) ||
	    epoll_ctl(sub->epfd, EPOLL_CTL_ADD, sub->kick_fd, &ev))
		goto fail;
	return 0;
fail:
	ret = errno ? -errno : -EIO;
	if (sub->kick_fd >= 0)
		close(sub->kick_fd);
	if (sub->epfd >= 0)
		close(sub->epfd);
	sub->kick_fd = -1;
	sub->epfd = -1;
	return ret;
}

void __eventbuf_sub_start(struct eventbuf_subscription *sub,
			  struct eventbuf_reader *reader, struct keyname *kn,
			  bool new_snapshot, uint64_t skip_through)
{
	sub->reader = reader;
	sub->kn = kn;
	sub->new_snapshot_pending = new_snapshot;
	sub->skip_through = skip_through;
}

/* Under ->lock: let go of what protected the caller's last batch. */
static void drop_held(struct eventbuf_subscription *sub)
{
	if (sub->held)
		__eventbuf_record_put(sub->held);
	sub->held = NULL;
	sub->cur = NULL;
	free(sub->above);
	sub->above = NULL;
}

/*
 * Under ->lock, state open: end the subscription with @code. The reader's
 * items go back to reclamation now; the caller's own descriptor, if any,
 * stays readable for good.
 */
static void end_locked(struct eventbuf_subscription *sub, int code)
{
	struct epoll_event ev = { .events = EPOLLIN };

	WRITE_ONCE(sub->state, code);	/* read by sub_may_join() */
	/* A lending reader belongs to the poller's thread, which frees it
	 * at the next read or at unsubscribe. */
	if (!__eventbuf_reader_lending(sub->reader)) {
		eventbuf_reader_free(sub->reader);
		sub->reader = NULL;
	}
	/* The entry exists, so MOD cannot fail (no allocation). */
	if (sub->epfd >= 0)
		epoll_ctl(sub->epfd, EPOLL_CTL_MOD, sub->kick_fd, &ev);
}

/* Called by the publisher, under its lock: true if this closed @sub. */
bool __eventbuf_sub_close(struct eventbuf_subscription *sub, int code)
{
	bool closing;

	pthread_mutex_lock(&sub->lock);
	closing = sub->state == SUB_OPEN;
	if (closing) {
		if (sub->cur && !sub->held) {
			__eventbuf_record_get(sub->cur);
			sub->held = sub->cur;
		}
		end_locked(sub, code);
		if (sub->pn.poller)
			__eventbuf_poller_kick(&sub->pn);
	}
	pthread_mutex_unlock(&sub->lock);
	return closing;
}

/*
 * Under ->lock: the snapshot handler's error was read. From now on the
 * subscription is closed like one the publisher closed: the error is its
 * sticky state (so later closes neither replace nor count it), the
 * reader's items go back to reclamation, the descriptor stays readable.
 */
static int close_failed(struct eventbuf_subscription *sub, int code)
{
	end_locked(sub, code);
	return code;
}

void __eventbuf_sub_free(struct eventbuf_subscription *sub)
{
	__eventbuf_poller_detach(&sub->pn);
	pthread_mutex_lock(&sub->lock);
	drop_held(sub);
	eventbuf_reader_free(sub->reader);
	sub->reader = NULL;
	pthread_mutex_unlock(&sub->lock);
	pthread_mutex_destroy(&sub->lock);
	if (sub->kn)
		__eventbuf_keyname_put(sub->kn);
	if (sub->epfd >= 0) {
		close(sub->kick_fd);
		close(sub->epfd);
	}
	__eventbuf_publisher_unref(sub->pub);
	handle_free(sub);
}

/* Empty epfd's ready list (edge-triggered events already seen). */
static void drain_epfd(struct eventbuf_subscription *sub)
{
	struct epoll_event evs[8];
	const int max = (int)(sizeof(evs) / sizeof(evs[0]));

	/* A full batch may not be all of it: until one comes back short. */
	while (epoll_wait(sub->epfd, evs, max, 0) == max)
		;
}

/*
 * Out of batches: park on the tip's link. 0 to read again, -EAGAIN, or
 * the error that kept the link's descriptor out of epfd (retried next
 * time: ->epfd_link still names the old link).
 */
static int park_polled(struct eventbuf_subscription *sub)
{
	int ret;

	ret = __eventbuf_reader_park_polled(sub->reader, &sub->pn);
	if (ret == -EALREADY)
		return 0;
	if (!ret)
		return -EAGAIN;
	__eventbuf_poller_retry(&sub->pn);
	return ret;
}

static int park(struct eventbuf_subscription *sub)
{
	struct epoll_event ev = { .events = EPOLLIN | EPOLLET };
	int fd, ret;

	if (sub->pn.poller)
		return park_polled(sub);
	if (sub->epfd < 0)
		return -EAGAIN;		/* nobody can be waiting */
	drain_epfd(sub);
	ret = eventbuf_reader_wait_fd(sub->reader, &fd);
	if (ret == -EALREADY)
		return 0;
	if (ret < 0)
		return ret;
	if (ret == 1 || fd != sub->epfd_link) {
		if (epoll_ctl(sub->epfd, EPOLL_CTL_ADD, fd, &ev) &&
		    errno != EEXIST) {
			sub->epfd_link = -1;
			return -errno;
		}
		sub->epfd_link = fd;
	}
	return -EAGAIN;
}

static void hand_out_frame(struct eventbuf_subscription *sub,
			   const struct eventbuf_event *frame,
			   const struct eventbuf_event **events, size_t *n)
{
	sub->frame = *frame;
	*events = &sub->frame;
	*n = 1;
}

/*
 * Under ->lock: the events of live batch @g above ->skip_through, as one
 * batch. A batch published after the snapshot may still carry events the
 * snapshot covered (a caller that publishes several commits' changes
 * together): those are left out one by one, never the batch as a whole,
 * so nothing above the snapshot's index is lost and nothing at or below
 * it is repeated. One batch, not one per run of events above: a wildcard
 * batch is sorted by key, not index, and a subscriber that stopped
 * between runs and resumed from the greatest index it saw would be up to
 * date without the runs it missed.
 *
 * A contiguous slice is the record's, as for any batch; otherwise the
 * events are copied to ->above, ours until the next call frees it (kept,
 * a copy the size of the largest such batch would stay with each of
 * thousands of subscribers that met one after a snapshot). The record
 * stays the reader's item's, or the closer's (->cur). Returns 0, -EAGAIN
 * (nothing above: the batch is skipped), or -ENOMEM with @g kept in
 * ->retry for the next call (the reader still holds its item), which a
 * poller reports at once.
 */
static int hand_out_above(struct eventbuf_subscription *sub,
			  const struct group *g,
			  const struct eventbuf_event **events, size_t *n)
{
	const struct eventbuf_event *ev = &g->rec->events[g->off];
	uint64_t skip = sub->skip_through;
	uint32_t first = g->n, last = 0, count = 0;

	sub->retry = NULL;
	for (uint32_t i = 0; i < g->n; i++) {
		if (ev[i].index <= skip)
			continue;
		first = first < i ? first : i;
		last = i;
		count++;
	}
	if (!count)
		return -EAGAIN;
	if (count == last - first + 1) {
		*events = &ev[first];
	} else {
		sub->above = malloc(count * sizeof(*ev));
		if (!sub->above) {
			sub->retry = g;
			if (sub->pn.poller)
				__eventbuf_poller_retry(&sub->pn);
			return -ENOMEM;
		}
		count = 0;
		for (uint32_t i = first; i <= last; i++)
			if (ev[i].index > skip)
				sub->above[count++] = ev[i];
		*events = sub->above;
	}
	sub->cur = g->rec;
	*n = count;
	return 0;
}

/* Under ->lock, state open: the next batch, -EAGAIN, or an error. */
static int read_batch(struct eventbuf_subscription *sub,
		      const struct eventbuf_event **events, size_t *n)
{
	const struct eventbuf_item *it;
	const struct eventbuf_event *ev;
	struct group *g;
	int ret;

	for (;;) {
		ret = eventbuf_reader_next_nonblock(sub->reader, &it);
		if (ret == -EAGAIN) {
			ret = park(sub);
			if (ret)
				return ret;
			continue;
		}
		if (ret)	/* the snapshot handler's error */
			return close_failed(sub, ret);
		ev = eventbuf_item_events(it);
		if (eventbuf_event_is_end_of_snapshot(ev)) {
			struct eventbuf_event frame = *ev;

			sub->skip_through = ev->index;
			frame.key = sub->kn->s;
			hand_out_frame(sub, &frame, events, n);
			return 0;
		}
		g = ev->payload;
		/* read by check_lag() (publisher.c): a skipped batch is read too */
		if (g->seq)
			WRITE_ONCE(sub->last_seq, g->seq);
		/* A live batch the snapshot covered, wholly or in part: its
		 * least index is at or below the snapshot's. */
		if (g->seq && ev->index <= sub->skip_through) {
			ret = hand_out_above(sub, g, events, n);
			if (ret == -EAGAIN)
				continue;
			return ret;
		}
		sub->cur = g->rec;
		*events = &g->rec->events[g->off];
		*n = g->n;
		return 0;
	}
}

int eventbuf_sub_next_nonblock(struct eventbuf_subscription *sub,
			       const struct eventbuf_event **events, size_t *n)
{
	int ret;

	if (!sub || !events || !n)
		return -EINVAL;
	sub_check(sub, __func__);
	pthread_mutex_lock(&sub->lock);
	drop_held(sub);
	/*
	 * In a cohort: leave it, reading on from where it got to, and be
	 * reported again, so that a caller who stops before -EAGAIN (which
	 * would park it) still hears of it.
	 */
	if (sub->pn.where == NODE_GROUP) {
		__eventbuf_poller_unpark(&sub->pn);
		__eventbuf_poller_retry(&sub->pn);
	}
	if (sub->state != SUB_OPEN) {
		ret = sub->state;
		eventbuf_reader_free(sub->reader);	/* a lending one */
		sub->reader = NULL;
	} else if (sub->new_snapshot_pending) {
		struct eventbuf_event frame = {
			.topic = sub->topic, .key = sub->kn->s,
			.payload = (void *)__eventbuf_new_snapshot,
		};

		sub->new_snapshot_pending = false;
		hand_out_frame(sub, &frame, events, n);
		ret = 0;
	} else if (sub->retry) {
		ret = hand_out_above(sub, sub->retry, events, n);
	} else {
		ret = read_batch(sub, events, n);
	}
	pthread_mutex_unlock(&sub->lock);
	return ret;
}

int eventbuf_sub_next(struct eventbuf_subscription *sub, int timeout_ms,
		      int cancel_fd, const struct eventbuf_event **events,
		      size_t *n)
{
	int64_t deadline = __eventbuf_deadline(timeout_ms);
	int ret;

	if (sub)
		sub_check(sub, __func__);
	if (sub && timeout_ms != 0) {
		ret = eventbuf_sub_fd(sub);
		if (ret < 0)
			return ret;
	}
	for (;;) {
		ret = eventbuf_sub_next_nonblock(sub, events, n);
		if (ret != -EAGAIN)
			return ret;
		if (timeout_ms == 0)
			return __eventbuf_no_wait(cancel_fd);
		ret = __eventbuf_wait(sub->epfd, cancel_fd, deadline);
		if (ret)
			return ret;
	}
}

int eventbuf_sub_fd(const struct eventbuf_subscription *csub)
{
	/* Made on first demand: the handle is const to the caller only. */
	struct eventbuf_subscription *sub = (struct eventbuf_subscription *)csub;
	int ret;

	if (!sub)
		return -EINVAL;
	sub_check(sub, __func__);
	pthread_mutex_lock(&sub->lock);
	ret = sub->pn.poller ? -EISCONN : make_fds(sub);
	pthread_mutex_unlock(&sub->lock);
	return ret ? ret : sub->epfd;
}

int eventbuf_poller_add_sub(struct eventbuf_poller *poller,
			    struct eventbuf_subscription *sub, void *data)
{
	bool own_fd;

	if (!poller || !sub)
		return -EINVAL;
	__eventbuf_poller_check(poller, __func__);
	sub_check(sub, __func__);
	pthread_mutex_lock(&sub->lock);
	own_fd = sub->epfd >= 0;
	pthread_mutex_unlock(&sub->lock);
	if (own_fd || sub->pn.poller)
		return -EBUSY;
	sub->pn.data = data;
	return __eventbuf_poller_attach(poller, &sub->pn);
}

int eventbuf_poller_del_sub(struct eventbuf_poller *poller,
			    struct eventbuf_subscription *sub)
{
	if (!poller || !sub)
		return -EINVAL;
	__eventbuf_poller_check(poller, __func__);
	sub_check(sub, __func__);
	if (sub->pn.poller != poller)
		return -ENOENT;
	__eventbuf_poller_detach(&sub->pn);
	return 0;
}

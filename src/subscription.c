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
 * The pollable descriptor is an epoll instance of the subscription's own
 * (->epfd), so it never changes for the caller. It holds:
 * - the publisher's always-readable eventfd, registered edge-triggered
 *   when the subscription is made: that one edge makes epfd readable right
 *   after subscribe, so a caller that waits before its first read does not
 *   sleep through a snapshot that is already there. A close turns it
 *   level-triggered (EPOLL_CTL_MOD: no allocation, so it cannot fail for
 *   lack of memory), and epfd stays readable for good;
 * - edge-triggered, the eventfd of the link the reader parks on, added
 *   whenever the reader parks on a link other than the one registered
 *   (->epfd_link). A failed registration is returned to the caller and
 *   retried on the next park, never forgotten: the caller's next read
 *   retries instead of waiting on a descriptor nothing will wake.
 * A read that runs dry empties epfd's ready list before it parks again,
 * so epfd is readable exactly when something happened since. Descriptors
 * of links left behind stay in the set until their items are reclaimed
 * (closing an eventfd removes it from every epoll set).
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "pubsub.h"

int __eventbuf_sub_alloc(struct eventbuf_publisher *pub,
			 const struct eventbuf_subscribe_req *req,
			 struct eventbuf_subscription **subp)
{
	struct epoll_event first = { .events = EPOLLIN | EPOLLET };
	struct eventbuf_subscription *sub = calloc(1, sizeof(*sub));

	if (!sub)
		return -ENOMEM;
	sub->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (sub->epfd < 0 ||
	    epoll_ctl(sub->epfd, EPOLL_CTL_ADD, pub->closed_fd, &first)) {
		int ret = -errno;

		if (sub->epfd >= 0)
			close(sub->epfd);
		free(sub);
		return ret;
	}
	pthread_mutex_init(&sub->lock, NULL);
	sub->pub = pub;
	sub->tag = req->tag;
	sub->lag_limit = req->lag_limit;
	sub->epfd_link = -1;
	atomic_init(&sub->last_seq, 0);
	atomic_fetch_add_explicit(&pub->refs, 1, memory_order_relaxed);
	*subp = sub;
	return 0;
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
}

/* Called by the publisher, under its lock: true if this closed @sub. */
bool __eventbuf_sub_close(struct eventbuf_subscription *sub, int code)
{
	struct epoll_event ev = { .events = EPOLLIN };
	bool closing;

	pthread_mutex_lock(&sub->lock);
	closing = sub->state == SUB_OPEN;
	if (closing) {
		sub->state = code;
		if (sub->cur && !sub->held) {
			__eventbuf_record_get(sub->cur);
			sub->held = sub->cur;
		}
		eventbuf_reader_free(sub->reader);
		sub->reader = NULL;
		/* Readable for good: the entry exists, MOD cannot fail. */
		epoll_ctl(sub->epfd, EPOLL_CTL_MOD, sub->pub->closed_fd, &ev);
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
	struct epoll_event ev = { .events = EPOLLIN };

	sub->state = code;
	eventbuf_reader_free(sub->reader);
	sub->reader = NULL;
	epoll_ctl(sub->epfd, EPOLL_CTL_MOD, sub->pub->closed_fd, &ev);
	return code;
}

void __eventbuf_sub_free(struct eventbuf_subscription *sub)
{
	pthread_mutex_lock(&sub->lock);
	drop_held(sub);
	eventbuf_reader_free(sub->reader);
	sub->reader = NULL;
	pthread_mutex_unlock(&sub->lock);
	pthread_mutex_destroy(&sub->lock);
	if (sub->kn)
		__eventbuf_keyname_put(sub->kn);
	close(sub->epfd);
	__eventbuf_publisher_unref(sub->pub);
	free(sub);
}

/* Empty epfd's ready list (edge-triggered events already seen). */
static void drain_epfd(struct eventbuf_subscription *sub)
{
	struct epoll_event evs[8];

	while (epoll_wait(sub->epfd, evs, 8, 0) == 8)
		;
}

/*
 * Out of batches: park on the tip's link. 0 to read again, -EAGAIN, or
 * the error that kept the link's descriptor out of epfd (retried next
 * time: ->epfd_link still names the old link).
 */
static int park(struct eventbuf_subscription *sub)
{
	struct epoll_event ev = { .events = EPOLLIN | EPOLLET };
	int fd, ret;

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

static int hand_out_frame(struct eventbuf_subscription *sub,
			  const struct eventbuf_event *frame,
			  const struct eventbuf_event **events, size_t *n)
{
	sub->frame = *frame;
	*events = &sub->frame;
	*n = 1;
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
			return hand_out_frame(sub, &frame, events, n);
		}
		g = ev->payload;
		/* A live batch the snapshot already covered: skip it. */
		if (g->seq && ev->index <= sub->skip_through)
			continue;
		if (g->seq)
			atomic_store_explicit(&sub->last_seq, g->seq,
					      memory_order_relaxed);
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
	pthread_mutex_lock(&sub->lock);
	drop_held(sub);
	if (sub->state != SUB_OPEN) {
		ret = sub->state;
	} else if (sub->new_snapshot_pending) {
		struct eventbuf_event frame = {
			.topic = sub->topic, .key = sub->kn->s,
			.payload = (void *)__eventbuf_new_snapshot,
		};

		sub->new_snapshot_pending = false;
		ret = hand_out_frame(sub, &frame, events, n);
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

int eventbuf_sub_fd(const struct eventbuf_subscription *sub)
{
	return sub ? sub->epfd : -EINVAL;
}

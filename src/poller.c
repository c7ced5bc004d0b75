// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * DOC: Theory of operation - pollers
 *
 * A poller is an epoll instance (->epfd, the caller's descriptor) that
 * watches two kinds of descriptor: the eventfds of the links its parked
 * objects wait on, and ->kick_fd, an eventfd of its own that other threads
 * write. Both are registered edge-triggered, with the descriptor number as
 * the event's data.
 *
 * Registrations. ->regs is indexed by descriptor number (eventfds are small
 * integers): regs[fd] says which link its waiters are parked on, and
 * whether ->epfd watches fd (->watched, valid while fd's generation and
 * the global epoch are still ->gen and ->epoch, see fdpool.c). A link's
 * first waiter here takes one counted reference on the link for the
 * poller: while regs[fd].link is set, the link and so its eventfd stay
 * alive (the eventfd lives as long as references on its link, reclaim.c),
 * so fd cannot be recycled to another link under us, even if a
 * subscription's reader is freed by a closer on another thread. Readers
 * that park on the link itself also lend their anchors to that reference
 * (reader.c) and are counted in ->borrowers: the reference is dropped
 * once no waiter and no borrower is left, so a fired entry lives on until
 * its readers have moved to their next link. The registration in ->epfd
 * outlives the link: eventfds are recycled, and the next link usually
 * comes with a descriptor this poller already watches.
 *
 * Parking (__eventbuf_poller_park()) happens after the object's reader
 * armed the link (wait.c: R1 installed fd, R2 fence, R3 found no next), so
 * the writer's W3 will see fd and write it (the Dekker argument of
 * wait.c). The registration is made, if needed, after that: an eventfd
 * that is already readable when EPOLL_CTL_ADD runs is queued at once, so
 * the order does not lose the write.
 *
 * No stale report. A watched descriptor may fire for a link that is gone
 * (its old link was written, then the descriptor was recycled before this
 * poller consumed the event), or for a link whose waiters have all left.
 * ready() therefore reports the waiters of regs[fd] only when regs[fd].link
 * has a successor (->next, loaded with acquire: pairs with the writer's
 * rcu_assign_pointer()); otherwise it counts the event as stale. No missed
 * report: the writer writes fd after it published ->next; the write queues
 * fd in ->epfd's ready list unless it is queued already, and either way
 * the next epoll_wait() returns it after the write, when ->next is seen.
 *
 * Other threads. A subscription closed by the publisher (another thread)
 * is pushed on ->inbox under ->inbox_lock by the closer, which then writes
 * ->kick_fd; ready() reads ->kick_fd back to zero *before* it takes the
 * lock and empties the inbox, so a push that it misses comes with a write
 * after that read: a new event. The closer holds the subscription's lock,
 * which attach and detach take to change node->poller, so the poller it
 * pushes to is alive and is the subscription's.
 *
 * Reports that do not fit in the caller's array stay on ->ready, and the
 * poller writes ->kick_fd so that ->epfd is readable again (an
 * edge-triggered caller gets a new edge).
 *
 * Everything else (->regs, the lists, the nodes' list fields) belongs to
 * the poller's thread and takes no lock.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <eventbuf/poller.h>

#include "internal.h"

#define KICK_DATA UINT64_MAX
#define EPOLL_BATCH 64

struct reg {
	struct eventbuf_item *link;	/* a counted reference, or NULL */
	struct __eventbuf_pollnode *waiters;
	uint32_t borrowers;		/* readers whose anchor it holds */
	uint64_t epoch;			/* fd epoch and generation of */
	uint32_t gen;			/* the registration (fdpool.c) */
	bool watched;
};

struct eventbuf_poller {
	int epfd;
	int kick_fd;
	struct reg *regs;
	size_t nregs;
	struct __eventbuf_pollnode *ready_first, *ready_last;
	struct __eventbuf_pollnode *attached;
	pthread_mutex_t inbox_lock;
	struct __eventbuf_pollnode *inbox;
	struct eventbuf_poller_stats st;
};

static void kick(int fd)
{
	static const uint64_t one = 1;

	while (write(fd, &one, sizeof(one)) < 0 && errno == EINTR)
		;
}

int eventbuf_poller_new(struct eventbuf_poller **pollerp)
{
	struct epoll_event ev = { .events = EPOLLIN | EPOLLET,
				  .data.u64 = KICK_DATA };
	struct eventbuf_poller *p;
	int ret;

	if (!pollerp)
		return -EINVAL;
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->kick_fd = -1;
	p->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (p->epfd < 0)
		goto fail;
	p->kick_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (p->kick_fd < 0 || epoll_ctl(p->epfd, EPOLL_CTL_ADD, p->kick_fd, &ev))
		goto fail;
	pthread_mutex_init(&p->inbox_lock, NULL);
	*pollerp = p;
	return 0;
fail:
	ret = -errno;
	if (p->kick_fd >= 0)
		close(p->kick_fd);
	if (p->epfd >= 0)
		close(p->epfd);
	free(p);
	return ret;
}

void eventbuf_poller_free(struct eventbuf_poller *poller)
{
	if (!poller)
		return;
	while (poller->attached)
		__eventbuf_poller_detach(poller->attached);
	pthread_mutex_destroy(&poller->inbox_lock);
	close(poller->kick_fd);
	close(poller->epfd);
	free(poller->regs);
	free(poller);
}

int eventbuf_poller_fd(const struct eventbuf_poller *poller)
{
	return poller ? poller->epfd : -EINVAL;
}

int eventbuf_poller_stats(const struct eventbuf_poller *poller,
			  struct eventbuf_poller_stats *stats)
{
	if (!poller || !stats)
		return -EINVAL;
	*stats = poller->st;
	return 0;
}

/* ---- the ready list ------------------------------------------------ */

static void ready_push(struct eventbuf_poller *p, struct __eventbuf_pollnode *n)
{
	n->where = NODE_READY;
	n->next = NULL;
	n->prev = p->ready_last;
	if (p->ready_last)
		p->ready_last->next = n;
	else
		p->ready_first = n;
	p->ready_last = n;
}

static void ready_del(struct eventbuf_poller *p, struct __eventbuf_pollnode *n)
{
	if (n->prev)
		n->prev->next = n->next;
	else
		p->ready_first = n->next;
	if (n->next)
		n->next->prev = n->prev;
	else
		p->ready_last = n->prev;
	n->where = NODE_IDLE;
}

/* Report @n at the next ready(); make ->epfd readable if it was not. */
static void make_ready(struct eventbuf_poller *p, struct __eventbuf_pollnode *n)
{
	bool was_empty = !p->ready_first;

	if (n->where == NODE_READY)
		return;
	__eventbuf_poller_unpark(n);
	ready_push(p, n);
	if (was_empty)
		kick(p->kick_fd);
}

/* ---- registrations ------------------------------------------------- */

static int grow_regs(struct eventbuf_poller *p, int fd)
{
	size_t n = p->nregs ? p->nregs : 64;
	struct reg *regs;

	while (n <= (size_t)fd)
		n *= 2;
	regs = realloc(p->regs, n * sizeof(*regs));
	if (!regs)
		return -ENOMEM;
	memset(regs + p->nregs, 0, (n - p->nregs) * sizeof(*regs));
	p->regs = regs;
	p->nregs = n;
	return 0;
}

/* Make ->epfd watch @fd, unless it is known to already. */
static int watch(struct eventbuf_poller *p, struct reg *r, int fd)
{
	/* After the acquire load of the link's state that gave us @fd:
	 * see every close of an older file with this number (fdpool.c). */
	_Atomic uint32_t *genp = __eventbuf_fd_gen(fd);
	uint32_t gen = genp ? smp_load_acquire(genp) : 0;
	uint64_t epoch = smp_load_acquire(&__eventbuf_fd_epoch);
	struct epoll_event ev = { .events = EPOLLIN | EPOLLET,
				  .data.u64 = (uint64_t)fd };

	if (r->watched && r->gen == gen && r->epoch == epoch)
		return 0;
	p->st.epoll_adds++;
	if (epoll_ctl(p->epfd, EPOLL_CTL_ADD, fd, &ev) && errno != EEXIST)
		return -errno;
	r->watched = true;
	r->gen = gen;
	r->epoch = epoch;
	return 0;
}

/* Let go of @r's link once nobody waits or borrows (it stays watched). */
static void reg_release(struct eventbuf_poller *p, struct reg *r)
{
	struct eventbuf_item *link = r->link;

	if (!link || r->waiters || r->borrowers)
		return;
	r->link = NULL;
	p->st.links--;
	eventbuf_item_put(link);
}

/*
 * The descriptor of @link if this poller has an entry for it, or -1. With
 * an entry, @link was armed by the waiter that made it, and has not fired
 * (a fired link has a successor, and nobody parks on it any more).
 */
int __eventbuf_poller_joinable(struct __eventbuf_pollnode *n,
			       struct eventbuf_item *link)
{
	struct eventbuf_poller *p = n->poller;
	/* Acquire: pairs with the installer's CAS (wait.c, R1). */
	int fd = st_fd(smp_load_acquire(&link->state));

	if (fd >= 0 && (size_t)fd < p->nregs && p->regs[fd].link == link)
		return fd;
	return -1;
}

/* @reader, parked through @n, lends its anchor to the entry of @fd. */
void __eventbuf_poller_borrow(struct __eventbuf_pollnode *n, int fd,
			      struct eventbuf_reader *reader)
{
	n->poller->regs[fd].borrowers++;
	n->lending = reader;
}

/* ... and has taken it back, or moved on. */
void __eventbuf_poller_unborrow(struct __eventbuf_pollnode *n, int fd)
{
	struct eventbuf_poller *p = n->poller;
	struct reg *r = &p->regs[fd];

	n->lending = NULL;
	if (!r->borrowers)
		abort();	/* a borrow we never counted */
	r->borrowers--;
	reg_release(p, r);
}

int __eventbuf_poller_park(struct __eventbuf_pollnode *n,
			   struct eventbuf_item *link, int fd)
{
	struct eventbuf_poller *p = n->poller;
	struct reg *r;
	int ret;

	if (n->where == NODE_PARKED && n->fd == fd && p->regs[fd].link == link)
		return 0;
	__eventbuf_poller_unpark(n);
	if ((size_t)fd >= p->nregs && (ret = grow_regs(p, fd)))
		return ret;
	r = &p->regs[fd];
	if (!r->link) {
		ret = watch(p, r, fd);
		if (!ret)
			ret = __eventbuf_item_ref(link);
		if (ret)
			return ret;
		r->link = link;
		p->st.links++;
	} else if (r->link != link) {
		abort();	/* fd is held open by r->link: it cannot be ours */
	}
	n->fd = fd;
	n->where = NODE_PARKED;
	n->prev = NULL;
	n->next = r->waiters;
	if (r->waiters)
		r->waiters->prev = n;
	r->waiters = n;
	p->st.parked++;
	return 0;
}

void __eventbuf_poller_unpark(struct __eventbuf_pollnode *n)
{
	struct eventbuf_poller *p = n->poller;
	struct reg *r;

	if (n->where == NODE_READY) {
		ready_del(p, n);
		return;
	}
	if (n->where != NODE_PARKED)
		return;
	r = &p->regs[n->fd];
	if (n->prev)
		n->prev->next = n->next;
	else
		r->waiters = n->next;
	if (n->next)
		n->next->prev = n->prev;
	n->where = NODE_IDLE;
	n->fd = -1;
	p->st.parked--;
	reg_release(p, r);
}

/* A failed park: report @n again so that its read is retried. */
void __eventbuf_poller_retry(struct __eventbuf_pollnode *n)
{
	make_ready(n->poller, n);
}

/* ---- attach, detach, kick ------------------------------------------ */

int __eventbuf_poller_attach(struct eventbuf_poller *p,
			     struct __eventbuf_pollnode *n)
{
	if (n->poller)
		return -EBUSY;
	if (n->lock)
		pthread_mutex_lock(n->lock);
	n->poller = p;
	if (n->lock)
		pthread_mutex_unlock(n->lock);
	n->fd = -1;
	n->where = NODE_IDLE;
	n->kicked = false;
	n->aprev = NULL;
	n->anext = p->attached;
	if (p->attached)
		p->attached->aprev = n;
	p->attached = n;
	p->st.attached++;
	make_ready(p, n);
	return 0;
}

/* Doubly linked: a publisher that closes 20,000 subscriptions at once
 * must not make their detaching quadratic. */
static void inbox_del(struct eventbuf_poller *p, struct __eventbuf_pollnode *n)
{
	pthread_mutex_lock(&p->inbox_lock);
	if (n->kicked) {
		if (n->kick_prev)
			n->kick_prev->kick_next = n->kick_next;
		else
			p->inbox = n->kick_next;
		if (n->kick_next)
			n->kick_next->kick_prev = n->kick_prev;
		n->kicked = false;
	}
	pthread_mutex_unlock(&p->inbox_lock);
}

void __eventbuf_poller_detach(struct __eventbuf_pollnode *n)
{
	struct eventbuf_poller *p = n->poller;

	if (!p)
		return;
	/* A closer checks the reader's lending under this lock. */
	if (n->lock)
		pthread_mutex_lock(n->lock);
	if (n->lending)
		__eventbuf_reader_take_back(n->lending);
	__eventbuf_poller_unpark(n);
	if (n->aprev)
		n->aprev->anext = n->anext;
	else
		p->attached = n->anext;
	if (n->anext)
		n->anext->aprev = n->aprev;
	p->st.attached--;
	inbox_del(p, n);
	n->poller = NULL;
	if (n->lock)
		pthread_mutex_unlock(n->lock);
}

/* Another thread changed @n's state: have its poller report it. */
void __eventbuf_poller_kick(struct __eventbuf_pollnode *n)
{
	struct eventbuf_poller *p = n->poller;
	bool was_empty;

	pthread_mutex_lock(&p->inbox_lock);
	was_empty = !p->inbox;
	if (!n->kicked) {
		n->kicked = true;
		n->kick_prev = NULL;
		n->kick_next = p->inbox;
		if (p->inbox)
			p->inbox->kick_prev = n;
		p->inbox = n;
	}
	pthread_mutex_unlock(&p->inbox_lock);
	if (was_empty)
		kick(p->kick_fd);
}

int eventbuf_poller_add_reader(struct eventbuf_poller *poller,
			       struct eventbuf_reader *reader, void *data)
{
	struct __eventbuf_pollnode *n;

	if (!poller || !reader)
		return -EINVAL;
	n = __eventbuf_reader_node(reader);
	if (n->poller)
		return -EBUSY;
	n->data = data;
	return __eventbuf_poller_attach(poller, n);
}

int eventbuf_poller_del_reader(struct eventbuf_poller *poller,
			       struct eventbuf_reader *reader)
{
	struct __eventbuf_pollnode *n;

	if (!poller || !reader)
		return -EINVAL;
	n = __eventbuf_reader_node(reader);
	if (n->poller != poller)
		return -ENOENT;
	__eventbuf_poller_detach(n);
	return 0;
}

/* ---- collecting reports -------------------------------------------- */

static void take_inbox(struct eventbuf_poller *p)
{
	struct __eventbuf_pollnode *n, *next;
	uint64_t count;

	/* Before the inbox is emptied: a push we miss writes again. */
	if (read(p->kick_fd, &count, sizeof(count)) < 0 && errno != EAGAIN)
		abort();	/* our own eventfd: EBADF/EINVAL is a bug */
	pthread_mutex_lock(&p->inbox_lock);
	n = p->inbox;
	p->inbox = NULL;
	for (next = n; next; next = next->kick_next)
		next->kicked = false;
	pthread_mutex_unlock(&p->inbox_lock);
	for (; n; n = next) {
		next = n->kick_next;
		if (n->where != NODE_READY) {
			__eventbuf_poller_unpark(n);
			ready_push(p, n);
		}
	}
}

static bool has_successor(const struct eventbuf_item *link)
{
	/* Acquire: pairs with the writer's rcu_assign_pointer() (W1). */
	return smp_load_acquire(&link->next) != NULL;
}

/* @fd fired: its waiters may read, if their link has a successor. */
static void link_fired(struct eventbuf_poller *p, int fd)
{
	struct reg *r = (size_t)fd < p->nregs ? &p->regs[fd] : NULL;
	struct __eventbuf_pollnode *n, *next;

	if (!r || !r->link || !r->waiters || !has_successor(r->link)) {
		p->st.stale++;
		return;
	}
	p->st.wakeups++;
	for (n = r->waiters; n; n = next) {
		next = n->next;
		p->st.parked--;
		ready_push(p, n);
		n->fd = -1;
	}
	r->waiters = NULL;
	reg_release(p, r);	/* kept while its readers borrow it */
}

static int collect(struct eventbuf_poller *p)
{
	struct epoll_event evs[EPOLL_BATCH];
	int n, i;

	do {
		n = epoll_wait(p->epfd, evs, EPOLL_BATCH, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		for (i = 0; i < n; i++) {
			if (evs[i].data.u64 == KICK_DATA)
				take_inbox(p);
			else
				link_fired(p, (int)evs[i].data.u64);
		}
	} while (n == EPOLL_BATCH);
	return 0;
}

int eventbuf_poller_ready(struct eventbuf_poller *poller,
			  struct eventbuf_poll_event *evs, size_t max)
{
	struct __eventbuf_pollnode *n;
	size_t got = 0;
	int ret;

	if (!poller || !evs || !max)
		return -EINVAL;
	__eventbuf_fd_cache_enable();
	ret = collect(poller);
	if (ret)
		return ret;
	while (got < max && (n = poller->ready_first)) {
		ready_del(poller, n);
		evs[got].reader = n->is_sub ? NULL : n->owner;
		evs[got].sub = n->is_sub ? n->owner : NULL;
		evs[got].data = n->data;
		got++;
	}
	poller->st.reports += got;
	if (poller->ready_first)
		kick(poller->kick_fd);	/* the rest: fire again */
	return (int)got;
}

int eventbuf_poller_wait(struct eventbuf_poller *poller,
			 struct eventbuf_poll_event *evs, size_t max,
			 int timeout_ms, int cancel_fd)
{
	int64_t deadline = __eventbuf_deadline(timeout_ms);
	int ret;

	for (;;) {
		ret = eventbuf_poller_ready(poller, evs, max);
		if (ret != 0)
			return ret;
		if (timeout_ms == 0)
			return -ETIMEDOUT;
		ret = __eventbuf_wait(poller->epfd, cancel_fd, deadline);
		if (ret)
			return ret;
	}
}

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
 * Registrations. ->regs is indexed by descriptor number, in chunks made on
 * first use (poller_internal.h): reg_find(p, fd) says which link its
 * waiters are parked on, and
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
 * Groups (eventbuf_poller_enable_groups(), cohort.c). An entry may also
 * hold an armed cohort (->cohort): subscriptions that read as one and hold
 * no loan of their own. When a grouping poller's entry fires, its cohort
 * and the waiters that may join one stay in the entry, which is queued
 * (->fired) for eventbuf_poller_group(); other waiters are reported as
 * usual. cohort.c has the rest.
 *
 * Waiting. eventbuf_poller_wait() with no cancel descriptor sleeps in
 * epoll_wait() on ->epfd and handles what woke it in the same call; with
 * one, it polls both descriptors and then collects as ready() does.
 *
 * Everything else (->regs, the lists, the nodes' list fields) belongs to
 * the poller's thread and takes no lock.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <eventbuf/poller.h>

#include "poller_internal.h"
#include "quiet.h"
#include "wake.h"

#define KICK_DATA UINT64_MAX
#define EPOLL_BATCH 64


static void kick(int fd)
{
	static const uint64_t one = 1;

	while (write(fd, &one, sizeof(one)) < 0 && errno == EINTR)
		;
}

/* Make ->epfd readable (again): ready() has something to say. */
void __eventbuf_pl_kick(struct eventbuf_poller *p)
{
	kick(p->kick_fd);
}

int eventbuf_poller_new(struct eventbuf_poller **pollerp)
{
	struct epoll_event ev = { .events = EPOLLIN | EPOLLET,
				  .data.u64 = KICK_DATA };
	struct eventbuf_poller *p;
	int ret;

	if (!pollerp)
		return -EINVAL;
	/* A poller holds process-wide state (its ring's slot, quiet.c) and
	 * frees through call_rcu(): fork() must know (fork.c). */
	if (__eventbuf_fork_init())
		return -ENOMEM;
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
	p->quiet = __eventbuf_quiet_new(p->kick_fd);
	if (!p->quiet) {
		errno = ENOMEM;
		goto fail;
	}
	pthread_mutex_init(&p->inbox_lock, NULL);
	handle_live(p, EVENTBUF_POLLER_LIVE);
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
	poller_check(poller, __func__);
	__eventbuf_group_end(poller);
	while (poller->attached)
		__eventbuf_poller_detach(poller->attached);
	pthread_mutex_destroy(&poller->inbox_lock);
	close(poller->epfd);
	__eventbuf_quiet_free(poller->quiet);	/* and ->kick_fd */
	for (size_t c = 0; c < poller->nchunks; c++)
		free(poller->regs[c]);
	free(poller->regs);
	__eventbuf_groups_free(poller);
	handle_free(poller);
}

#ifdef CONFIG_EVENTBUF_DEBUG
void __eventbuf_poller_check(const struct eventbuf_poller *p, const char *fn)
{
	poller_check(p, fn);
}
#endif

int eventbuf_poller_fd(const struct eventbuf_poller *poller)
{
	if (!poller)
		return -EINVAL;
	poller_check(poller, __func__);
	return poller->epfd;
}

int eventbuf_poller_stats(const struct eventbuf_poller *poller,
			  struct eventbuf_poller_stats *stats)
{
	if (!poller || !stats)
		return -EINVAL;
	poller_check(poller, __func__);
	*stats = poller->st;
	return 0;
}

/* ---- the ready list ------------------------------------------------ */

void __eventbuf_pl_ready_push(struct eventbuf_poller *p,
			      struct __eventbuf_pollnode *n)
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
	__eventbuf_pl_ready_push(p, n);
	if (was_empty)
		kick(p->kick_fd);
}

/* ---- registrations ------------------------------------------------- */

/* The entry of @fd, made (zeroed, with its chunk) if it was not; NULL:
 * out of memory. */
static struct reg *reg_get(struct eventbuf_poller *p, int fd)
{
	size_t chunk = (size_t)fd >> REG_CHUNK_SHIFT;
	struct reg *r = reg_find(p, fd);

	if (r)
		return r;
	if (chunk >= p->nchunks) {
		size_t n = p->nchunks ? p->nchunks : 16;
		struct reg **regs;

		while (n <= chunk)
			n *= 2;
		regs = realloc(p->regs, n * sizeof(*regs));
		if (!regs)
			return NULL;
		memset(regs + p->nchunks, 0, (n - p->nchunks) * sizeof(*regs));
		p->regs = regs;
		p->nchunks = n;
	}
	p->regs[chunk] = calloc(REG_CHUNK, sizeof(struct reg));
	return reg_find(p, fd);
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
	__eventbuf_fd_watched(fd);
	r->gen = gen;
	r->epoch = epoch;
	return 0;
}

/* Let go of @r's link once nobody waits, borrows or parks a cohort there
 * (it stays watched). */
void __eventbuf_pl_reg_release(struct eventbuf_poller *p, struct reg *r)
{
	struct eventbuf_item *link = r->link;

	if (!link || r->waiters || r->borrowers || r->cohort)
		return;
	r->link = NULL;
	r->fired = false;
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
	struct reg *r = reg_find(p, fd);

	return r && r->link == link ? fd : -1;
}

/* @reader, parked through @n, lends its anchor to the entry of @fd. */
void __eventbuf_poller_borrow(struct __eventbuf_pollnode *n, int fd,
			      struct eventbuf_reader *reader)
{
	reg_find(n->poller, fd)->borrowers++;
	n->lending = reader;
}

/* ... and has taken it back, or moved on. */
void __eventbuf_poller_unborrow(struct __eventbuf_pollnode *n, int fd)
{
	struct eventbuf_poller *p = n->poller;
	struct reg *r = reg_find(p, fd);

	n->lending = NULL;
	if (!r->borrowers)
		abort();	/* a borrow we never counted */
	r->borrowers--;
	__eventbuf_pl_reg_release(p, r);
}

/* Make the entry of @fd hold @link (one counted reference) and watch @fd. */
int __eventbuf_pl_reg_claim(struct eventbuf_poller *p,
			    struct eventbuf_item *link, int fd)
{
	struct reg *r = reg_get(p, fd);
	int ret;

	if (!r)
		return -ENOMEM;
	if (r->link == link)
		return 0;
	if (r->link)
		abort();	/* fd is held open by r->link: it cannot be ours */
	ret = watch(p, r, fd);
	if (!ret)
		ret = __eventbuf_item_ref(link);
	if (ret)
		return ret;
	r->link = link;
	p->st.links++;
	return 0;
}

int __eventbuf_poller_park(struct __eventbuf_pollnode *n,
			   struct eventbuf_item *link, int fd)
{
	struct eventbuf_poller *p = n->poller;
	struct reg *r;
	int ret;

	if (n->where == NODE_PARKED && n->fd == fd &&
	    reg_find(p, fd)->link == link)
		return 0;
	__eventbuf_poller_unpark(n);
	ret = __eventbuf_pl_reg_claim(p, link, fd);
	if (ret)
		return ret;
	r = reg_find(p, fd);
	n->fd = fd;
	n->where = NODE_PARKED;
	node_push(&r->waiters, n);
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
	if (n->where == NODE_GROUP) {	/* callers hold n->lock */
		__eventbuf_cohort_leave(p, n, true);
		return;
	}
	if (n->where != NODE_PARKED)
		return;
	r = reg_find(p, n->fd);
	node_unlink(&r->waiters, n);
	n->where = NODE_IDLE;
	n->fd = -1;
	p->st.parked--;
	__eventbuf_pl_reg_release(p, r);
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
	/* Before a closer can see the poller (under n->lock) and kick. */
	n->kicked = false;
	if (n->lock)
		pthread_mutex_lock(n->lock);
	n->poller = p;
	if (n->lock)
		pthread_mutex_unlock(n->lock);
	n->fd = -1;
	n->where = NODE_IDLE;
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
	/* Unpark first: a group member learns where its group got to. */
	__eventbuf_poller_unpark(n);
	if (n->lending)
		__eventbuf_reader_take_back(n->lending);
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
	poller_check(poller, __func__);
	n = __eventbuf_reader_node(reader, __func__);
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
	poller_check(poller, __func__);
	n = __eventbuf_reader_node(reader, __func__);
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
		if (n->where == NODE_GROUP)
			__eventbuf_cohort_leave(p, n, false);
		if (n->where != NODE_READY) {
			__eventbuf_poller_unpark(n);
			__eventbuf_pl_ready_push(p, n);
		}
	}
}

/* @fd fired: its waiters may read, if their link has a successor. */
static void link_fired(struct eventbuf_poller *p, int fd)
{
	struct reg *r = reg_find(p, fd);
	struct __eventbuf_pollnode *n, *next;

	if (!r || !r->link || (!r->waiters && !r->cohort) ||
	    !has_successor(r->link)) {
		p->st.stale++;
		return;
	}
	p->st.wakeups++;
	if (p->grouping) {
		__eventbuf_cohort_fired(p, r, fd);
		return;
	}
	for (n = r->waiters; n; n = next) {
		next = n->next;
		p->st.parked--;
		__eventbuf_pl_ready_push(p, n);
		n->fd = -1;
	}
	r->waiters = NULL;
	__eventbuf_pl_reg_release(p, r);	/* kept while its readers borrow it */
}

/*
 * The links signalled through our ring (quiet.c) fired as their eventfds
 * would have; then tell the writers that we may sleep.
 */
static void take_quiet(struct eventbuf_poller *p)
{
	int fd;

	do {
		while ((fd = __eventbuf_quiet_take(p->quiet)) >= 0) {
			uint64_t wakeups = p->st.wakeups;

			link_fired(p, fd);
			p->st.quiet += p->st.wakeups - wakeups;
		}
	} while (__eventbuf_quiet_idle(p->quiet));
}

/*
 * The flag for __eventbuf_prepare_wait() with which @p's objects arm a
 * link: an eventfd they install is marked with @p's slot (quiet.c).
 */
unsigned int __eventbuf_poller_quiet_flags(const struct eventbuf_poller *p)
{
	return WAIT_QUIET(p->quiet->slot);
}

/*
 * Take what fired: every descriptor event waiting, after waiting up to
 * @timeout_ms (< 0: forever) for the first. A signal ends the wait early.
 */
static int collect(struct eventbuf_poller *p, int timeout_ms)
{
	struct epoll_event evs[EPOLL_BATCH];
	int n, i;

	do {
		n = epoll_wait(p->epfd, evs, EPOLL_BATCH, timeout_ms);
		if (n < 0 && errno == EINTR && !timeout_ms)
			continue;
		if (n < 0)
			return errno == EINTR ? 0 : -errno;
		timeout_ms = 0;
		for (i = 0; i < n; i++) {
			if (evs[i].data.u64 == KICK_DATA)
				take_inbox(p);
			else
				link_fired(p, (int)evs[i].data.u64);
		}
	} while (n == EPOLL_BATCH);
	take_quiet(p);
	return 0;
}

/* Fill @evs from the ready list; what does not fit fires again. */
static int take_reports(struct eventbuf_poller *p,
			struct eventbuf_poll_event *evs, size_t max)
{
	struct __eventbuf_pollnode *n;
	size_t got = 0;

	while (got < max && (n = p->ready_first)) {
		ready_del(p, n);
		evs[got].reader = n->is_sub ? NULL : n->owner;
		evs[got].sub = n->is_sub ? n->owner : NULL;
		evs[got].data = n->data;
		got++;
	}
	p->st.reports += got;
	if (p->ready_first)
		kick(p->kick_fd);	/* the rest: fire again */
	return (int)got;
}

int eventbuf_poller_ready(struct eventbuf_poller *poller,
			  struct eventbuf_poll_event *evs, size_t max)
{
	bool untaken;
	int ret;

	if (!poller || !evs || !max)
		return -EINVAL;
	poller_check(poller, __func__);
	__eventbuf_group_end(poller);
	untaken = __eventbuf_groups_untaken(poller);
	__eventbuf_fd_cache_enable();
	ret = collect(poller, 0);
	/* Groups left untaken since the last call: fire again for them
	 * (after collect(), which would read the kick back). */
	if (untaken)
		kick(poller->kick_fd);
	if (ret)
		return ret;
	__eventbuf_groups_new_pass(poller);
	return take_reports(poller, evs, max);
}

/* Milliseconds to @deadline (rounded up; < 0: none), for epoll_wait(). */
static int ms_left(int64_t deadline)
{
	int64_t left;

	if (deadline < 0)
		return -1;
	left = deadline - __eventbuf_now_ns();
	if (left <= 0)
		return 0;
	left = (left + 999999) / 1000000;
	return left > INT_MAX ? INT_MAX : (int)left;
}

int eventbuf_poller_wait(struct eventbuf_poller *poller,
			 struct eventbuf_poll_event *evs, size_t max,
			 int timeout_ms, int cancel_fd)
{
	int64_t deadline = __eventbuf_deadline(timeout_ms);
	int ret;

	for (;;) {
		ret = eventbuf_poller_ready(poller, evs, max);
		if (ret != 0 || __eventbuf_groups_pending(poller))
			return ret;
		if (timeout_ms == 0)
			return __eventbuf_no_wait(cancel_fd);
		if (cancel_fd != -1) {
			ret = __eventbuf_wait(poller->epfd, cancel_fd, deadline);
			if (ret)
				return ret;
			continue;
		}
		/*
		 * Nothing else to watch: sleep in epoll_wait() on the set
		 * itself, and take what woke us in the same call, instead
		 * of a poll() of the set and a second epoll_wait().
		 */
		if (rcu_read_ongoing())
			return -EDEADLK;
		timeout_ms = ms_left(deadline);
		if (timeout_ms == 0)
			return -ETIMEDOUT;
		ret = collect(poller, timeout_ms);
		if (!ret)
			ret = take_reports(poller, evs, max);
		if (ret != 0 || __eventbuf_groups_pending(poller))
			return ret;
	}
}

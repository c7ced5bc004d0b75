// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * DOC: Theory of operation - cohorts (a poller's groups)
 *
 * Subscriptions of one key that have read everything wait on the same
 * link, and what they read next is the same items. A cohort is a set of
 * such subscriptions of one poller that move together: the poller reads
 * the new items once for all of them (eventbuf_poller_group_next()) and
 * the caller hands each batch to each member. Reading a cohort costs a
 * walk of the new items and a few pointer moves, whatever its size.
 *
 * References. A cohort holds one counted reference, ->ref, on ->pos: the
 * last item it read, or the link it waits on. Every member's position is
 * ->pos, and that reference keeps it and everything after it alive, so
 * members hold none of their own: their readers lent their anchors to a
 * poller entry when they parked (reader.c), and joining a cohort moves
 * the loan to the cohort (__eventbuf_reader_group_join(): the entry
 * uncounts them). The members' reader fields are left as they were while
 * they are members; a member that leaves (detached, closed, read on its
 * own, or when its cohort breaks up) is given a reference of its own on
 * ->pos (__eventbuf_reader_group_own()) under its subscription's lock, the
 * lock under which a closer on another thread decides, from the reader's
 * lender, whether the reader is the poller thread's to free.
 *
 * States.
 * - COHORT_ARMED: ->pos is a link armed like any waiter's (wait.c: R1
 *   installed fd, R2 fence, R3 found no next), and regs[fd] holds a
 *   reference on it and points to the cohort. When fd fires and the link
 *   has a successor, the entry is queued (->fired) for
 *   eventbuf_poller_group(), which opens the cohort and lets the entry's
 *   other waiters join it.
 * - COHORT_OPEN: handed to the caller, ->pos advancing batch by batch. A
 *   member that leaves has its entry in the caller's array cleared.
 * - COHORT_IDLE: read to the tip, *not* armed, on ->idle. An idle cohort
 *   costs the writer nothing: it sees no eventfd on the link and makes no
 *   system call, however fast it publishes.
 *
 * Passes. eventbuf_poller_ready() starts a pass (->scan = ->idle). Each
 * eventbuf_poller_group() call hands out, in order: a fired entry's
 * cohort; else an idle cohort not yet looked at in this pass whose link
 * has a successor (cohorts that go idle during the pass are pushed in
 * front of ->scan, so a pass looks at each cohort once and ends); else it
 * ends the pass by arming every idle cohort, and returns 0. A cohort
 * whose link already has a successor cannot be armed (R3 sees it); it
 * stays idle and the poller writes its own eventfd, so that the caller's
 * next wait returns at once and the next pass reads it. So no cohort is
 * left unread and unarmed when the caller may sleep: while the loop keeps
 * up, every cohort is armed before it waits, and a wake-up comes as for
 * any waiter; while it falls behind, the cohorts are read pass after pass
 * with one eventfd write per pass instead of one per publish.
 *
 * Yield. Before it arms the cohorts it read, a pass yields the CPU once
 * (sched_yield()) and looks at them again. Where the loops and the writer
 * share cores, that lets the writer publish more before anyone arms a
 * link, so the next pass reads bigger batches and the writer makes fewer
 * eventfd writes; on an idle core the call returns at once. The same
 * trick as the blocking reader's (reader.c); measured in docs/pollers.md.
 *
 * The reference moves to ->pos when the pass ends (a reference on ->pos
 * is taken before the old one is put), right before the cohort is armed:
 * the link it fired from lets its eventfd go to this thread's cache
 * (fdpool.c) and arming takes it straight back, a descriptor the poller
 * already watches. Moving it earlier (per batch, or when the cohort goes
 * idle) released a pass's descriptors before it armed any: with two loops
 * over 1,000 keys the cache and the pool overflowed, descriptors were
 * closed and created all the time, each a new epoll registration, and the
 * p99 latency reached a millisecond (docs/pollers.md). A pass has no
 * end while the writer stays ahead of an open cohort, though, so the
 * reference also moves every EVENTBUF_READER_ANCHOR_STRIDE batches, as a
 * lone reader's anchor does (reader.c): an open cohort pins at most that
 * many batches behind it, or what it read in one pass. Two cohorts armed
 * at one link merge: the smaller one's members move.
 *
 * Lag limits. The publisher's lag check reads each subscription's last
 * sequence (publisher.c). Members that have a lag limit sit on ->lagged
 * and are told the cohort's sequence when it goes idle, and while it is
 * open every LAG_TELL_SHIFT-th part of the smallest of their limits
 * (->lag_min; every batch below 64): a cohort that stays open while the
 * writer publishes would otherwise look as far behind as the writer got,
 * and be closed for it. Telling them every batch cost a walk of the list
 * and a store per member and batch: 17 ns per delivery against 1.35 for
 * 10,000 members with limits (docs/pollers.md). So a member may be closed
 * up to 1/64 of its limit early. Others are told only when they leave.
 */
#include <errno.h>
#include <sched.h>
#include <stdlib.h>

#include "poller_internal.h"

/* Open cohorts tell lag-limited members every 1/64 of the limit. */
#define LAG_TELL_SHIFT	6
#include "wake.h"

/* ---- members ------------------------------------------------------- */

static void cohort_free(struct __eventbuf_cohort *c)
{
	if (c->ref)
		__eventbuf_put_deferred(c->ref);
	free(c->members);
	free(c->nodes);
	free(c);
}

/* A cohort at @pos (which the caller keeps alive meanwhile), or NULL. */
static struct __eventbuf_cohort *cohort_new(struct eventbuf_item *pos)
{
	struct __eventbuf_cohort *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	if (__eventbuf_item_ref(pos)) {
		free(c);
		return NULL;
	}
	c->ref = pos;
	c->pos = pos;
	c->state = COHORT_OPEN;
	c->fd = -1;
	return c;
}

static int cohort_grow(struct __eventbuf_cohort *c, size_t n)
{
	size_t cap = c->cap ? c->cap : 16;
	struct eventbuf_poll_event *m;
	struct __eventbuf_pollnode **v;

	if (n <= c->cap)
		return 0;
	while (cap < n)
		cap *= 2;
	m = realloc(c->members, cap * sizeof(*m));
	if (!m)
		return -ENOMEM;
	c->members = m;
	v = realloc(c->nodes, cap * sizeof(*v));
	if (!v)
		return -ENOMEM;
	c->nodes = v;
	c->cap = cap;
	return 0;
}

/* @n joins @c (room made by cohort_grow()). */
static void cohort_add(struct __eventbuf_cohort *c,
		       struct __eventbuf_pollnode *n)
{
	uint64_t skip = n->group_ops->skip_through(n), limit;

	c->ops = n->group_ops;
	c->members[c->count] = (struct eventbuf_poll_event){
		.sub = n->owner, .data = n->data };
	c->nodes[c->count] = n;
	n->cidx = c->count++;
	n->cohort = c;
	n->where = NODE_GROUP;
	n->fd = -1;
	if (skip > c->skip)
		c->skip = skip;
	limit = n->group_ops->lag_limit(n);
	n->lagged = limit != 0;
	n->prev = NULL;
	n->next = NULL;
	if (!n->lagged)
		return;
	node_push(&c->lagged, n);
	if (!c->lag_min || limit < c->lag_min)
		c->lag_min = limit;
}

/* Tell the lag-limited members how far the cohort read. */
static void tell_lagged(struct __eventbuf_cohort *c)
{
	for (struct __eventbuf_pollnode *n = c->lagged; n; n = n->next)
		n->group_ops->moved(n, c->seq);
	c->told = c->seq;
}

static void lagged_del(struct __eventbuf_cohort *c,
		       struct __eventbuf_pollnode *n)
{
	if (!n->lagged)
		return;
	node_unlink(&c->lagged, n);
	n->lagged = false;
}

/*
 * @n leaves @c: its reader takes a reference of its own where the cohort
 * is (see the top of this file), under its subscription's lock unless the
 * caller holds it (@locked).
 */
static void member_release(struct __eventbuf_cohort *c,
			   struct __eventbuf_pollnode *n, bool locked)
{
	lagged_del(c, n);
	if (!locked && n->lock)
		pthread_mutex_lock(n->lock);
	__eventbuf_reader_group_own(n->lending, c->pos);
	n->lending = NULL;
	if (!locked && n->lock)
		pthread_mutex_unlock(n->lock);
	if (c->seq)
		n->group_ops->moved(n, c->seq);
	n->cohort = NULL;
	n->where = NODE_IDLE;
	n->prev = NULL;
	n->next = NULL;
}

/* ---- the idle list ------------------------------------------------- */

static void idle_push(struct eventbuf_poller *p, struct __eventbuf_cohort *c)
{
	c->state = COHORT_IDLE;
	c->iprev = NULL;
	c->inext = p->idle;
	if (p->idle)
		p->idle->iprev = c;
	p->idle = c;
}

static void idle_del(struct eventbuf_poller *p, struct __eventbuf_cohort *c)
{
	if (p->scan == c)
		p->scan = c->inext;
	if (c->iprev)
		c->iprev->inext = c->inext;
	else
		p->idle = c->inext;
	if (c->inext)
		c->inext->iprev = c->iprev;
	c->inext = NULL;
	c->iprev = NULL;
}

/* ---- leaving and breaking up --------------------------------------- */

/* A cohort not open lost its last member. */
static void cohort_drop(struct eventbuf_poller *p, struct __eventbuf_cohort *c)
{
	struct reg *r;

	if (c->state == COHORT_IDLE) {
		idle_del(p, c);
		cohort_free(c);
		return;
	}
	r = reg_find(p, c->fd);
	r->cohort = NULL;
	cohort_free(c);
	__eventbuf_pl_reg_release(p, r);
}

void __eventbuf_cohort_leave(struct eventbuf_poller *p,
			     struct __eventbuf_pollnode *n, bool locked)
{
	struct __eventbuf_cohort *c = n->cohort;
	size_t i = n->cidx;

	member_release(c, n, locked);
	if (c->state == COHORT_OPEN) {
		c->members[i] = (struct eventbuf_poll_event){ 0 };
		c->nodes[i] = NULL;
		c->holes++;
		return;
	}
	c->count--;
	if (i != c->count) {
		c->members[i] = c->members[c->count];
		c->nodes[i] = c->nodes[c->count];
		c->nodes[i]->cidx = i;
	}
	p->st.parked--;
	if (!c->count)
		cohort_drop(p, c);
}

/*
 * Break @c up: every member is reported on its own and reads on from
 * where the cohort got to. @c is open, or already off its list.
 */
static void cohort_dissolve(struct eventbuf_poller *p,
			    struct __eventbuf_cohort *c)
{
	bool was_empty = !p->ready_first;

	for (size_t i = 0; i < c->count; i++) {
		struct __eventbuf_pollnode *n = c->nodes[i];

		if (!n)
			continue;
		member_release(c, n, false);
		__eventbuf_pl_ready_push(p, n);
	}
	cohort_free(c);
	if (was_empty && p->ready_first)
		__eventbuf_pl_kick(p);
}

void __eventbuf_group_end(struct eventbuf_poller *p)
{
	struct __eventbuf_cohort *c = p->open;

	if (!c)
		return;
	p->open = NULL;
	cohort_dissolve(p, c);
}

/* Close up the entries of members that left while @c was open. */
static void cohort_compact(struct __eventbuf_cohort *c)
{
	size_t to = 0;

	if (!c->holes)
		return;
	for (size_t i = 0; i < c->count; i++) {
		if (!c->nodes[i])
			continue;
		c->members[to] = c->members[i];
		c->nodes[to] = c->nodes[i];
		c->nodes[to]->cidx = to;
		to++;
	}
	c->count = to;
	c->holes = 0;
}

/* ---- fired entries ------------------------------------------------- */

static int fired_push(struct eventbuf_poller *p, int fd)
{
	if (p->fired_len == p->fired_cap) {
		size_t cap = p->fired_cap ? 2 * p->fired_cap : 64;
		int *v = realloc(p->fired, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		p->fired = v;
		p->fired_cap = cap;
	}
	p->fired[p->fired_len++] = fd;
	return 0;
}

/* The next entry queued for a group, or -1. */
static int fired_pop(struct eventbuf_poller *p)
{
	while (p->fired_head < p->fired_len) {
		int fd = p->fired[p->fired_head++];
		struct reg *r = reg_find(p, fd);

		/* Not fired any more: its waiters left, its link was let go. */
		if (r->fired) {
			r->fired = false;
			return fd;
		}
	}
	p->fired_head = p->fired_len = 0;
	return -1;
}

/*
 * May @n, waiting in the entry of @fd, join a cohort there to read @first?
 * Only a subscription lending its anchor to that entry, at its link.
 */
static bool may_join(struct __eventbuf_pollnode *n, int fd,
		     const struct eventbuf_item *link,
		     const struct eventbuf_item *first)
{
	return n->lending &&
	       __eventbuf_reader_at_lent(n->lending, n, fd, link) &&
	       n->group_ops->may_join(n, first);
}

/*
 * Grouping, @r fired: its cohort and the waiters that may join one
 * (subscriptions lending their anchor here, with nothing of their own to
 * read first) stay in @r, queued for eventbuf_poller_group(); the rest are
 * reported by the ready() call that collects this. group_open() checks
 * the waiters again: one read on its own in between is reported then.
 */
void __eventbuf_cohort_fired(struct eventbuf_poller *p, struct reg *r, int fd)
{
	struct __eventbuf_pollnode *n, *next, *keep = NULL;
	struct eventbuf_item *first, *tip;

	/* The entry's reference keeps r->link and all after it. */
	rcu_read_lock();
	first = __eventbuf_find_next(r->link, &tip);
	rcu_read_unlock();
	if (!r->fired && fired_push(p, fd) == 0)
		r->fired = true;
	if (!r->fired && r->cohort) {	/* no room to queue it */
		struct __eventbuf_cohort *c = r->cohort;

		r->cohort = NULL;
		p->st.parked -= c->count;
		cohort_dissolve(p, c);
	}
	for (n = r->waiters; n; n = next) {
		next = n->next;
		/* The others are reported by the ready() that collects this. */
		if (r->fired && n->group_ops && may_join(n, fd, r->link, first)) {
			node_push(&keep, n);
			continue;
		}
		p->st.parked--;
		__eventbuf_pl_ready_push(p, n);
		n->fd = -1;
	}
	r->waiters = keep;
	__eventbuf_pl_reg_release(p, r);
}

/* ---- opening ------------------------------------------------------- */

static size_t count_waiters(const struct reg *r)
{
	size_t n = 0;

	for (const struct __eventbuf_pollnode *w = r->waiters; w; w = w->next)
		n++;
	return n;
}

/*
 * The entry of @fd fired: its cohort (made if need be) takes in the
 * waiters that may join it, the rest are reported, and it is opened.
 */
static void group_open(struct eventbuf_poller *p, int fd)
{
	struct reg *r = reg_find(p, fd);
	struct __eventbuf_cohort *c = r->cohort;
	size_t parked_members = c ? c->count : 0;
	struct __eventbuf_pollnode *n, *next;
	struct eventbuf_item *first, *tip;
	bool was_empty = !p->ready_first, room;

	if (!c && r->waiters)
		c = cohort_new(r->link);	/* the entry keeps r->link */
	room = c && cohort_grow(c, c->count + count_waiters(r)) == 0;
	/* The entry's reference keeps r->link and all after it. */
	rcu_read_lock();
	first = __eventbuf_find_next(r->link, &tip);
	rcu_read_unlock();
	for (n = r->waiters; n; n = next) {
		next = n->next;
		p->st.parked--;
		if (room && may_join(n, fd, r->link, first)) {
			__eventbuf_reader_group_join(n->lending);
			r->borrowers--;
			cohort_add(c, n);
		} else {
			n->fd = -1;
			__eventbuf_pl_ready_push(p, n);
		}
	}
	r->waiters = NULL;
	r->cohort = NULL;
	p->st.parked -= parked_members;
	if (c && c->count) {
		c->state = COHORT_OPEN;
		c->fd = -1;
		p->open = c;
	} else if (c) {
		cohort_free(c);
	}
	__eventbuf_pl_reg_release(p, r);
	if (was_empty && p->ready_first)
		__eventbuf_pl_kick(p);
}

static bool has_news(const struct __eventbuf_cohort *c)
{
	struct eventbuf_item *found, *tip;

	/* ->ref keeps ->pos and all after it. */
	rcu_read_lock();
	found = __eventbuf_find_next(c->pos, &tip);
	rcu_read_unlock();
	return found != NULL;
}

/* Hand @c out: it is the open cohort now. */
static int hand_out(struct eventbuf_poller *p, struct __eventbuf_cohort *c,
		    struct eventbuf_poll_group *group)
{
	if (c->state == COHORT_IDLE) {
		idle_del(p, c);
		p->st.parked -= c->count;
	}
	c->state = COHORT_OPEN;
	p->open = c;
	p->pass_open = true;
	p->st.reports += c->count;
	group->members = c->members;
	group->count = c->count;
	return 1;
}

/* Move @c's reference forward to @to (taken before the old one goes). */
static int move_ref(struct __eventbuf_cohort *c, struct eventbuf_item *to)
{
	int ret = __eventbuf_item_ref(to);

	if (ret)
		return ret;
	__eventbuf_put_deferred(c->ref);
	c->ref = to;
	return 0;
}

/* ---- arming -------------------------------------------------------- */

/*
 * Arm @link, an idle cohort's, and make an entry hold it: 0 with *@fdp,
 * -EALREADY when something was published after it, or an error.
 */
static int arm_link(struct eventbuf_poller *p, struct eventbuf_item *link,
		    int *fdp)
{
	/* Acquire: pairs with the installer's CAS (wait.c, R1). */
	int fd = st_fd(smp_load_acquire(&link->state));
	struct reg *r = reg_find(p, fd);
	int ret;

	if (r && r->link == link) {
		*fdp = fd;	/* armed by a waiter here, not fired */
		return 0;
	}
	/* The cohort's reference on @link keeps its eventfd while armed. */
	ret = __eventbuf_prepare_wait(link, &fd,
				      __eventbuf_poller_quiet_flags(p), NULL);
	if (!ret)
		ret = __eventbuf_pl_reg_claim(p, link, fd);
	if (!ret)
		*fdp = fd;
	return ret;
}

/* Move the members of @from into @into, both at one link; NULL: no room. */
static struct __eventbuf_cohort *cohort_merge(struct __eventbuf_cohort *into,
					      struct __eventbuf_cohort *from)
{
	if (from->count > into->count) {
		struct __eventbuf_cohort *t = into;

		into = from;
		from = t;
	}
	if (cohort_grow(into, into->count + from->count))
		return NULL;
	for (size_t i = 0; i < from->count; i++) {
		struct __eventbuf_pollnode *n = from->nodes[i];

		lagged_del(from, n);
		cohort_add(into, n);
	}
	if (from->skip > into->skip)
		into->skip = from->skip;
	if (from->seq > into->seq)
		into->seq = from->seq;
	cohort_free(from);
	return into;
}

/*
 * Arm idle @c: 0 (armed), -EALREADY (news: it stays idle), or an error
 * (it was broken up).
 */
static int cohort_arm(struct eventbuf_poller *p, struct __eventbuf_cohort *c)
{
	struct __eventbuf_cohort *merged;
	struct reg *r;
	int fd = -1, ret;

	/*
	 * The reference moves to ->pos first: the link the cohort fired
	 * from lets its eventfd go (to this thread's cache), and arming
	 * ->pos right after takes it back, a descriptor this poller
	 * already watches.
	 */
	ret = c->ref != c->pos ? move_ref(c, c->pos) : 0;
	if (!ret)
		c->since_move = 0;
	if (!ret && link_of(c->pos) != c->pos)
		ret = -EINVAL;	/* not a writer's item: cannot happen */
	if (!ret)
		ret = arm_link(p, c->pos, &fd);
	if (ret == -EALREADY)
		return ret;
	idle_del(p, c);
	if (ret) {
		p->st.parked -= c->count;
		cohort_dissolve(p, c);
		return ret;
	}
	r = reg_find(p, fd);
	c->state = COHORT_ARMED;
	c->fd = fd;
	if (r->cohort) {
		merged = cohort_merge(r->cohort, c);
		if (!merged) {
			p->st.parked -= c->count;
			cohort_dissolve(p, c);
			return -ENOMEM;
		}
		c = merged;
	}
	r->cohort = c;
	return 0;
}

/* End of a pass: arm every idle cohort; those with news make us fire. */
static void arm_idle(struct eventbuf_poller *p)
{
	struct __eventbuf_cohort *c, *next;
	bool news = false;

	for (c = p->idle; c; c = next) {
		next = c->inext;
		if (cohort_arm(p, c) == -EALREADY)
			news = true;
	}
	p->scan = NULL;
	p->pass_open = false;
	if (news)
		__eventbuf_pl_kick(p);
}

/*
 * The open cohort read everything: it goes idle at its newest item (its
 * reference follows when it is armed, see the top of this file).
 */
static void go_idle(struct eventbuf_poller *p)
{
	struct __eventbuf_cohort *c = p->open;

	p->open = NULL;
	cohort_compact(c);
	tell_lagged(c);
	p->st.parked += c->count;
	idle_push(p, c);
}

/* ---- the calls ----------------------------------------------------- */

int eventbuf_poller_enable_groups(struct eventbuf_poller *poller)
{
	if (!poller)
		return -EINVAL;
	poller_check(poller, __func__);
	poller->grouping = true;
	return 0;
}

int eventbuf_poller_group(struct eventbuf_poller *poller,
			  struct eventbuf_poll_group *group)
{
	struct __eventbuf_cohort *c;
	int fd;

	if (!poller || !group)
		return -EINVAL;
	poller_check(poller, __func__);
	__eventbuf_group_end(poller);
	while ((fd = fired_pop(poller)) >= 0) {
		group_open(poller, fd);
		if (poller->open)
			return hand_out(poller, poller->open, group);
	}
	for (;;) {
		while ((c = poller->scan)) {
			poller->scan = c->inext;
			if (has_news(c))
				return hand_out(poller, c, group);
		}
		/* Before arming what this pass read: let the writer run. */
		if (poller->yielded || !poller->idle)
			break;
		poller->yielded = true;
		sched_yield();
		poller->scan = poller->idle;
	}
	poller->yielded = false;
	arm_idle(poller);
	group->members = NULL;
	group->count = 0;
	return 0;
}

int eventbuf_poller_group_next(struct eventbuf_poller *poller,
			       const struct eventbuf_event **events, size_t *n)
{
	struct __eventbuf_cohort *c;
	struct eventbuf_item *found, *tip = NULL;
	uint64_t seq;

	if (!poller || !events || !n)
		return -EINVAL;
	poller_check(poller, __func__);
	*events = NULL;
	*n = 0;
	c = poller->open;
	if (!c)
		return -EAGAIN;
	if (c->holes == c->count) {	/* every member left */
		__eventbuf_group_end(poller);
		return -EAGAIN;
	}
	/* ->ref keeps ->pos and all after it. */
	rcu_read_lock();
	found = __eventbuf_find_next(c->pos, &tip);
	rcu_read_unlock();
	if (found && c->ops->batch(found, c->skip, events, n, &seq)) {
		c->pos = found;
		c->seq = seq;
		/* Tell the lag check, and let go of what is behind (see
		 * the top of this file). A failed move keeps the old
		 * reference, which still covers ->pos. */
		if (c->lagged && seq - c->told >= (c->lag_min >> LAG_TELL_SHIFT))
			tell_lagged(c);
		if (++c->since_move >= EVENTBUF_READER_ANCHOR_STRIDE &&
		    move_ref(c, found) == 0)
			c->since_move = 0;
		return 0;
	}
	if (found) {	/* for each member to read on its own */
		__eventbuf_group_end(poller);
	} else {
		c->pos = tip;
		go_idle(poller);
	}
	return -EAGAIN;
}

/* ---- for poller.c -------------------------------------------------- */

bool __eventbuf_groups_pending(const struct eventbuf_poller *p)
{
	return p->fired_head < p->fired_len || p->idle;
}

bool __eventbuf_groups_untaken(const struct eventbuf_poller *p)
{
	return p->fired_head < p->fired_len || p->pass_open;
}

void __eventbuf_groups_new_pass(struct eventbuf_poller *p)
{
	p->scan = p->idle;
	if (p->idle)
		p->pass_open = true;
}

void __eventbuf_groups_free(struct eventbuf_poller *p)
{
	/* Detaching every member emptied (and freed) every cohort. */
	if (p->idle || p->open)
		abort();
	free(p->fired);
}

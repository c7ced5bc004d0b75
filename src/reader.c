// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * DOC: Theory of operation - readers
 *
 * A reader holds exactly one reference, on its *anchor*; its position @pos
 * (the last item it returned, or where it started) is at or after the
 * anchor in the chain, so the anchor keeps @pos and everything after it
 * alive (reclaim.c). Walking forward is rcu_dereference() of ->next under
 * rcu_read_lock() (__eventbuf_find_next(), paired with the writer's
 * rcu_assign_pointer()) and writes nothing to the items passed: N readers
 * streaming the same items share their cache lines read-only.
 *
 * The anchor moves (a reference taken on the new item, then the old one
 * dropped, so the reader is never without one) only
 *  - when the reader parks: a link's eventfd lives as long as references on
 *    the link's item (wait.c), so the waiter must hold the item it waits
 *    after, and holding nothing older lets the writer's reclamation free
 *    everything behind it while it sleeps;
 *  - every ANCHOR_STRIDE returned batches, so that a reader that never
 *    catches up does not pin everything it has read.
 * @armed remembers the link whose eventfd was handed out last, so that
 * eventbuf_reader_wait_fd() can tell an epoll caller whether the descriptor
 * is a new one to add: comparing numbers would not do, since a closed
 * descriptor's number is reused by the next eventfd. It is valid only while
 * the anchor stays where it was when the link was armed (the anchor keeps
 * that link, and so its eventfd, alive); moving the anchor forgets it,
 * because the link's memory may then be reused for a new item.
 *
 * Before parking, a blocking reader yields the CPU once and looks again
 * (eventbuf_reader_next()). When readers outnumber cores, that lets the
 * writer publish more before anyone sleeps, so one park-and-wake cycle -
 * an eventfd, a poll, a wake-up - is paid for by a bigger batch; on an
 * idle core sched_yield() returns at once, a cheap system call before a
 * park that costs several. It multiplied fan-out throughput with more
 * blocking readers than cores (docs/measurements.md).
 *
 * On a machine with idle cores the yield can return before the writer
 * has published again, and readers that each have a core may then park
 * on every item (docs/measurements.md, 16 vCPUs). A spin before the yield
 * (__eventbuf_reader_spin_ns) is built for measuring that case and is off
 * (0) unless the benchmark or a test sets it: it burns a core while it
 * lasts, and only a machine with many cores can show whether it pays.
 *
 * A terminal error item is remembered (@error) and returned again by every
 * later call; it sits after @pos, so the anchor keeps it alive too.
 *
 * Lent anchors. A reader attached to a poller parks through it, and the
 * poller holds one reference on each distinct link its objects park on
 * (poller.c). When the reader parks on a link that is an item of its own
 * (not a follower, whose link is another item), that reference keeps
 * @pos (the link itself) and everything after it alive, so the reader
 * needs none of its own: it drops its anchor (once) and *lends* it to the
 * poller's entry for that link (@lender, @lent_fd; the entry counts its
 * borrowers and keeps its reference until the last one has moved on).
 * Moving on to the next link is then two counter updates on the poller's
 * thread instead of an atomic increment and decrement on link items that
 * every subscriber of a hot key shares. @anchor is NULL while lent. Only
 * the poller's thread uses an attached reader, so @lender and @lent_fd
 * need no lock; a subscription's closer, on another thread, checks them
 * under the subscription's lock (held by the reads too) and leaves a
 * lending reader to be freed on the poller's thread.
 * The reader takes its own reference back (at @pos, still kept by the
 * entry) when it moves its anchor for the stride or parks without the
 * poller, and when it is detached.
 */
#include <errno.h>
#include <sched.h>
#include <stdlib.h>

#include "internal.h"
#include "wake.h"

#define ANCHOR_STRIDE EVENTBUF_READER_ANCHOR_STRIDE

struct eventbuf_reader {
	struct eventbuf_item *anchor;
	struct eventbuf_item *pos;
	struct eventbuf_item *error;
	struct eventbuf_item *armed;	/* link of the last fd handed out */
	int kept_fd;			/* that fd, kept for the next link */
	unsigned int since_move;
	struct __eventbuf_pollnode pn;	/* its poller's, when attached */
	struct __eventbuf_pollnode *lender;	/* holds the anchor, or NULL */
	int lent_fd;			/* ... in its entry for this fd */
	EVENTBUF_HANDLE_MAGIC		/* debug.c */
#ifdef CONFIG_EVENTBUF_TESTING
	/* Spins begun, and those that found an item: the tests read them. */
	_Atomic uint32_t spins, spin_hits;
#endif
};

static inline void reader_check(const struct eventbuf_reader *r,
				const char *fn)
{
	handle_check(r, EVENTBUF_READER_LIVE, "reader",
		     "eventbuf_reader_free", fn);
}

struct __eventbuf_pollnode *__eventbuf_reader_node(struct eventbuf_reader *r,
					       const char *fn)
{
	reader_check(r, fn);
	return &r->pn;
}

int eventbuf_reader_new(struct eventbuf_item *start,
			struct eventbuf_reader **readerp)
{
	struct eventbuf_reader *r;
	int ret;

	if (!start || !readerp)
		return -EINVAL;
	__eventbuf_item_check(start, __func__, false);
	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	ret = __eventbuf_item_ref(start);
	if (ret) {
		free(r);
		return ret;
	}
	r->anchor = start;
	r->pos = start;
	r->pn.owner = r;
	r->pn.fd = -1;
	r->kept_fd = -1;
	handle_live(r, EVENTBUF_READER_LIVE);
	counter_add(&__eventbuf_counters.readers, 1);
	*readerp = r;
	return 0;
}

void eventbuf_reader_free(struct eventbuf_reader *reader)
{
	if (!reader)
		return;
	reader_check(reader, __func__);
	if (reader->lender)
		__eventbuf_poller_unborrow(reader->lender, reader->lent_fd);
	else
		__eventbuf_put_deferred(reader->anchor);
	reader->lender = NULL;
	__eventbuf_fd_drop_kept(reader->kept_fd);
	__eventbuf_poller_detach(&reader->pn);
	counter_sub(&__eventbuf_counters.readers, 1);
	handle_free(reader);
}

/*
 * Move the reference to @pos (taken before the old one is dropped). @keep:
 * the caller hands descriptors out, and keeps the armed link's one if it
 * may (see "Kept descriptors" in fdpool.c).
 */
static int move_anchor_keep(struct eventbuf_reader *r, bool keep)
{
	struct eventbuf_item *old = r->anchor;
	int ret;

	keep = keep && old && r->armed == old && r->kept_fd < 0;

	r->since_move = 0;
	if (old == r->pos && !r->lender)
		return 0;
	ret = __eventbuf_item_ref(r->pos);
	if (ret)
		return ret;
	r->anchor = r->pos;
	/* The armed link may be freed now and its memory reused. */
	r->armed = NULL;
	if (r->lender) {	/* the entry kept @pos: ours now */
		__eventbuf_poller_unborrow(r->lender, r->lent_fd);
		r->lender = NULL;
	} else if (keep) {
		__eventbuf_put_keep_fd(old, &r->kept_fd);
	} else {
		__eventbuf_put_deferred(old);
	}
	return 0;
}

static int move_anchor(struct eventbuf_reader *r)
{
	return move_anchor_keep(r, false);
}

/*
 * @r's anchor is lent through @node, which is being detached: take a
 * reference of our own on @pos, which the entry still keeps alive.
 */
void __eventbuf_reader_take_back(struct eventbuf_reader *r)
{
	/* 2^25 references on one item: nothing to fall back on here. */
	if (r->lender && move_anchor(r))
		abort();
}

bool __eventbuf_reader_lending(const struct eventbuf_reader *r)
{
	return r && r->lender;
}

/* Parked on @link through @node at @fd: lend the anchor to its entry. */
static void lend_anchor(struct eventbuf_reader *r,
			struct __eventbuf_pollnode *node, int fd)
{
	if (r->lender == node && r->lent_fd == fd)
		return;
	/* The entry of @fd holds @link (= @pos) already: let go first. */
	if (r->lender)
		__eventbuf_poller_unborrow(r->lender, r->lent_fd);
	else
		__eventbuf_put_deferred(r->anchor);
	__eventbuf_poller_borrow(node, fd, r);
	r->anchor = NULL;
	r->armed = NULL;
	r->lender = node;
	r->lent_fd = fd;
	r->since_move = 0;
}

/*
 * Is @r parked on @link through @node, lending its anchor to @node's
 * entry for @fd? Only such a reader can move with a group (poller.c):
 * the entry's reference covers its position, wherever the group takes it.
 */
bool __eventbuf_reader_at_lent(const struct eventbuf_reader *r,
			       struct __eventbuf_pollnode *node, int fd,
			       const struct eventbuf_item *link)
{
	return !r->error && r->lender == node && r->lent_fd == fd &&
	       r->pos == link;
}

/*
 * @r joins a cohort (poller.c, cohort.c): the cohort's own reference
 * covers its position from now on, and the entry it lent to forgets it
 * (the caller uncounts it). @lender stays set: a closer on another thread
 * still leaves @r to the poller's thread.
 */
void __eventbuf_reader_group_join(struct eventbuf_reader *r)
{
	r->lent_fd = -1;
}

/*
 * @r leaves its cohort having read through @pos, which the cohort's
 * reference keeps alive: take a reference of our own there. Under the
 * subscription's lock, which a closer checks @lender under.
 */
void __eventbuf_reader_group_own(struct eventbuf_reader *r,
				 struct eventbuf_item *pos)
{
	/* 2^25 references on one item: nothing to fall back on here. */
	if (__eventbuf_item_ref(pos))
		abort();
	r->pos = pos;
	r->anchor = pos;
	r->lender = NULL;
	r->armed = NULL;
	r->since_move = 0;
}

/*
 * Park @r with @node's poller: 0 once parked, -EALREADY when there is
 * something to read, or the error that kept it from parking. A second
 * object of the same poller parking on a link joins the entry the first
 * one made (the link is armed and not yet fired: the writer will write
 * its eventfd), with no fence and no read-modify-write.
 */
int __eventbuf_reader_park_polled(struct eventbuf_reader *r,
				  struct __eventbuf_pollnode *node)
{
	struct eventbuf_item *found, *tip = NULL, *link;
	int fd, ret;

	if (r->error)
		return -EALREADY;
	/* Parked through the poller from now on: nobody watches it. */
	if (r->kept_fd >= 0) {
		__eventbuf_fd_drop_kept(r->kept_fd);
		r->kept_fd = -1;
	}
	rcu_read_lock();
	found = __eventbuf_find_next(r->pos, &tip);
	rcu_read_unlock();
	if (found)
		return -EALREADY;
	r->pos = tip;
	link = link_of(tip);
	if (tip != link) {	/* a follower: keep an anchor of our own */
		ret = move_anchor(r);
		if (!ret)
			ret = __eventbuf_prepare_wait(link, &fd,
				__eventbuf_poller_quiet_flags(node->poller),
				NULL);
		return ret ? ret : __eventbuf_poller_park(node, link, fd);
	}
	fd = __eventbuf_poller_joinable(node, link);
	if (fd >= 0) {
		ret = __eventbuf_poller_park(node, link, fd);
	} else {
		/*
		 * A link's eventfd lives as long as references on the link
		 * item itself (reclaim.c), and what keeps @link alive now is
		 * a reference on an item before it: hold one on @link while
		 * arming it, until the poller's entry holds its own.
		 */
		ret = __eventbuf_item_ref(link);
		if (ret)
			return ret;
		ret = __eventbuf_prepare_wait(link, &fd,
				__eventbuf_poller_quiet_flags(node->poller),
				NULL);
		if (!ret)
			ret = __eventbuf_poller_park(node, link, fd);
		__eventbuf_put_deferred(link);
	}
	if (ret)
		return ret;
	lend_anchor(r, node, fd);
	return 0;
}

static int read_one(struct eventbuf_reader *reader,
		    const struct eventbuf_item **itemp)
{
	struct eventbuf_item *found, *tip = NULL;

	if (reader->error)
		return reader->error->u.err.code;
	rcu_read_lock();
	found = __eventbuf_find_next(reader->pos, &tip);
	rcu_read_unlock();
	if (!found) {
		reader->pos = tip;	/* skip the empty items for good */
		return -EAGAIN;
	}
	if (item_is_error(found)) {
		reader->error = found;
		return found->u.err.code;
	}
	reader->pos = found;
	*itemp = found;
	/* On overflow the old anchor still covers @found: move later. */
	if (++reader->since_move >= ANCHOR_STRIDE)
		(void)move_anchor(reader);
	return 0;
}

/*
 * Move the anchor to the newest item and arm its link: 0 with *@linkp and
 * *@fdp set, -EALREADY (something to read), or an error. @exported: the
 * caller hands *@fdp out (fdpool.c); then 1 instead of 0 says that *@fdp
 * is the descriptor handed out last time, kept for this link.
 */
int __eventbuf_reader_park(struct eventbuf_reader *reader,
			   struct eventbuf_item **linkp, int *fdp, bool exported)
{
	struct eventbuf_item *found, *tip = NULL, *link;
	unsigned int flags = exported ? WAIT_EXPORTED : 0;
	int ret;

	if (reader->error)
		return -EALREADY;
	rcu_read_lock();
	found = __eventbuf_find_next(reader->pos, &tip);
	rcu_read_unlock();
	if (found)
		return -EALREADY;
	reader->pos = tip;
	ret = move_anchor_keep(reader, exported);
	if (ret)
		return ret;
	link = link_of(tip);
	if (exported && reader->armed == link)
		flags |= WAIT_AGAIN;
	/* Only a link of our own: we hold no reference on a follower's. */
	ret = __eventbuf_prepare_wait(link, fdp, flags,
				      exported && link == tip ?
				      &reader->kept_fd : NULL);
	if (ret < 0)
		return ret;
	*linkp = link;
	return ret;
}

/*
 * An attached reader ran dry: park it with its poller. -EAGAIN once parked,
 * -EALREADY to read again, or the error that kept it from parking (it is
 * then reported again, so that the caller retries).
 */
static int park_attached(struct eventbuf_reader *reader)
{
	int ret;

	ret = __eventbuf_reader_park_polled(reader, &reader->pn);
	if (!ret)
		return -EAGAIN;
	if (ret != -EALREADY)
		__eventbuf_poller_retry(&reader->pn);
	return ret;
}

int eventbuf_reader_next_nonblock(struct eventbuf_reader *reader,
				  const struct eventbuf_item **itemp)
{
	int ret;

	if (!reader || !itemp)
		return -EINVAL;
	reader_check(reader, __func__);
	for (;;) {
		ret = read_one(reader, itemp);
		if (ret != -EAGAIN || !reader->pn.poller)
			return ret;
		ret = park_attached(reader);
		if (ret != -EALREADY)
			return ret;
	}
}

int eventbuf_reader_wait_fd(struct eventbuf_reader *reader, int *fdp)
{
	struct eventbuf_item *link;
	int ret;

	if (!reader || !fdp)
		return -EINVAL;
	reader_check(reader, __func__);
	*fdp = -1;
	if (reader->pn.poller)
		return -EISCONN;
	ret = __eventbuf_reader_park(reader, &link, fdp, true);
	if (ret < 0)
		return ret;
	/*
	 * @armed survives only while the anchor has not moved, so the same
	 * link means the same open file; a new link may reuse the number of
	 * a descriptor closed meanwhile, so only the link tells them apart -
	 * or the park, when it installed the descriptor we kept.
	 */
	if (reader->armed == link)
		return 0;
	reader->armed = link;
	return ret ? 0 : 1;
}

_Atomic uint32_t __eventbuf_reader_spin_ns;

#ifdef CONFIG_EVENTBUF_TESTING
/* Only the reader's thread writes its counters: no read-modify-write. */
#define count_spin(reader, counter)					\
	atomic_store_explicit(&(reader)->counter,			\
		atomic_load_explicit(&(reader)->counter,		\
				     memory_order_relaxed) + 1,		\
		memory_order_relaxed)

uint32_t __eventbuf_reader_spins(const struct eventbuf_reader *reader,
				 uint32_t *hits)
{
	*hits = atomic_load_explicit(&reader->spin_hits, memory_order_relaxed);
	return atomic_load_explicit(&reader->spins, memory_order_relaxed);
}
#else
/* Not in the installed library: no counter in every subscription. */
#define count_spin(reader, counter) ((void)(reader))
#endif

/*
 * Look at @reader's position again and again until @until (CLOCK_MONOTONIC
 * ns): true once there is something after it. The clock is read every 16
 * looks.
 */
static bool spin_for_next(struct eventbuf_reader *reader, int64_t until)
{
	struct eventbuf_item *found, *tip;

	count_spin(reader, spins);
	for (unsigned int i = 1;; i++) {
		rcu_read_lock();
		found = __eventbuf_find_next(reader->pos, &tip);
		rcu_read_unlock();
		if (found) {
			count_spin(reader, spin_hits);
			return true;
		}
		caa_cpu_relax();
		if (i % 16 == 0 && __eventbuf_now_ns() >= until)
			return false;
	}
}

/*
 * Before the park: spin, if asked, but not past the caller's deadline
 * (-1: none); then yield (the theory above).
 */
static void before_park(struct eventbuf_reader *reader, int64_t deadline)
{
	uint32_t ns = atomic_load_explicit(&__eventbuf_reader_spin_ns,
					   memory_order_relaxed);
	int64_t until;

	if (ns) {
		until = __eventbuf_now_ns() + ns;
		if (deadline >= 0 && deadline < until)
			until = deadline;
		if (spin_for_next(reader, until))
			return;
	}
	sched_yield();
}

int eventbuf_reader_next(struct eventbuf_reader *reader, int timeout_ms,
			 int cancel_fd, const struct eventbuf_item **itemp)
{
	int64_t deadline = __eventbuf_deadline(timeout_ms);
	struct eventbuf_item *link;
	bool yielded = false;
	int ret, fd;

	if (reader)
		reader_check(reader, __func__);
	if (reader && reader->pn.poller && timeout_ms != 0)
		return -EISCONN;
	for (;;) {
		ret = eventbuf_reader_next_nonblock(reader, itemp);
		if (ret != -EAGAIN)
			return ret;
		if (timeout_ms == 0)
			return __eventbuf_no_wait(cancel_fd);
		if (!yielded) {
			yielded = true;
			before_park(reader, deadline);
			continue;
		}
		yielded = false;
		ret = __eventbuf_reader_park(reader, &link, &fd, false);
		if (ret == -EALREADY)
			continue;
		if (ret < 0)
			return ret;
		ret = __eventbuf_wait(fd, cancel_fd, deadline);
		if (ret)
			return ret;
	}
}

int eventbuf_reader_error(const struct eventbuf_reader *reader,
			  const char **msg)
{
	if (msg)
		*msg = NULL;
	if (!reader)
		return 0;
	reader_check(reader, __func__);
	if (!reader->error)
		return 0;
	if (msg)
		*msg = reader->error->u.err.msg;
	return reader->error->u.err.code;
}

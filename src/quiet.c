// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * DOC: Theory of operation - quiet signals
 *
 * Why. A poller watches the eventfd of each link its objects wait on
 * (poller.c), and the writer writes a link's eventfd after it publishes
 * the link's successor (wait.c). When a loop keeps up with a writer that
 * publishes to many keys, nearly every publish finds its key's link armed:
 * one write() per publish, and one read() later to reset the descriptor
 * for reuse (fdpool.c), about 200 ns each, while the loop was awake
 * anyway. A per-loop queue with one eventfd (libuv's uv_async) writes only
 * when the loop may be asleep. Quiet signals give a poller the same: while
 * it is awake, the links only it waits on are signalled through a ring of
 * its own, and its own eventfd (->kick_fd) is written only when it may be
 * about to sleep.
 *
 * Which links. A poller that installs a link's eventfd (R1, wait.c) sets
 * its slot in the state word (ST_QUIET, a number 1..15 that
 * __eventbuf_quiet_boxes[] maps to its ring) in the same compare-and-swap.
 * A second poller that takes the descriptor from the link adds its own
 * slot (ST_QUIET_B) with a compare-and-swap, before its R2 fence
 * (join_loud(), wait.c): services hand connections to loops whatever they
 * subscribe to, so a key's links are commonly waited on by two loops.
 * Everybody else who takes the descriptor (a blocking reader,
 * eventbuf_reader_wait_fd(), a subscription's own epoll set, a third
 * poller) clears both slots with one read-modify-write before its R2
 * fence: the link is then signalled by a write of its eventfd, as before,
 * which every poller that watches it sees too. So slots in the state word
 * mean "every waiter on this link is one of those pollers'". Only 15
 * pollers at a time have a slot; the others wait on eventfds alone.
 *
 * The writer (__eventbuf_signal_waiters(), W4): W3 loaded the state with
 * ST_QUIET (and perhaps ST_QUIET_B). Inside the read-side section it
 * publishes in, it
 *   Q1 reserves a cell in each slot's ring (a compare-and-swap on ->enq);
 *   Q2 sets ST_SIGNALED, the slots kept, with a compare-and-swap that
 *      expects both slot fields as W3 saw them, and a reference;
 *   Q3 stores the descriptor in each cell and releases it (->seq);
 *   Q4 smp_mb();
 *   Q5 loads each ring's ->armed; if set, exchanges it for 0 and, if it
 *      was still set, writes that poller's ->kick_fd.
 * It falls back to the write, which clears both slots, when a slot has
 * no ring, a ring is full, or Q2 finds the slots changed (cleared, or a
 * second poller joined since W3) or no reference left (then nobody waits
 * through the rings). Its reserved cells are then filled with -1, which
 * a poller skips, and still go through Q4 and Q5: a poller takes cells
 * in order, so another writer's cell behind ours may be waiting for it
 * (that writer's Q5 may have found ->armed clear while the poller was
 * still taking, and the poller's P3 looked at our cell).
 *
 * No lost wake-up, joiner against writer. Both change the state word with
 * read-modify-writes, so one comes first in its modification order. If
 * the joiner's (a clear, or a second poller's slot) does, Q2 fails and
 * the writer writes the eventfd, which both pollers watch. If Q2 does,
 * the joiner's read-modify-write (acq_rel) reads from it, so the writer's
 * W1 happens before the joiner's R3: it finds ->next and does not wait.
 * (The W2/R2 fences of wait.c alone would make that joiner find ->next
 * too; the compare of the slots is a second line.)
 *
 * No lost wake-up, poller against writer. The poller takes cells in order
 * (__eventbuf_quiet_take()) until the next is not filled, then (__eventbuf_
 * quiet_idle())
 *   P1 stores ->armed = 1;
 *   P2 smp_mb();
 *   P3 loads the next cell's ->seq: filled? Then it exchanges ->armed for
 *      0 and takes again.
 * Q3/Q4/Q5 against P1/P2/P3 is a Dekker pair: either P3 sees the cell
 * filled, or Q5 sees ->armed set and writes ->kick_fd, which the poller's
 * epoll set watches (edge-triggered: every write is a new event), so its
 * next epoll_wait() returns, and eventbuf_poller_ready() takes the cell.
 * The exchange makes at most one writer write per arming: while the loop
 * works through what it took, the writers make no system call for it.
 * The price of the order: a writer preempted between Q1 and Q3 holds
 * back the cells behind its own until it runs again.
 *
 * No stale report. A cell holds a descriptor number, never a pointer: the
 * poller handles it as an epoll event for that descriptor (link_fired(),
 * poller.c), which reports waiters only when the entry's link has a
 * successor. Q2 and Q3 come after W1, and the poller's acquire load of
 * ->seq pairs with Q3's release, so for the link the writer signalled the
 * successor is there; a cell for a descriptor recycled meanwhile is a look
 * that finds nothing, as a stale epoll event is.
 *
 * Recycling. A quietly signalled eventfd was never written: its state
 * word has ST_SIGNALED and a slot, and its release (fdpool.c) skips the
 * reset read. A write of it (the fallback) clears both slots in the
 * compare-and-swap that sets ST_SIGNALED, so that release resets it.
 * Either way the writer set ST_SIGNALED before anyone may release, as
 * before (wait.c), and the ring cell outlives nothing: it names a number.
 *
 * Lifetimes. A ring belongs to its poller; eventbuf_poller_free() empties
 * the slot, and frees the ring and closes ->kick_fd after a grace period
 * (call_rcu()): a writer loaded the ring inside its read-side section, so
 * it never writes a closed or reused descriptor. A link marked for a slot
 * whose poller is gone, or whose slot another poller took since, is either
 * signalled by the write (no ring) or reports a descriptor the new poller
 * looks up and finds stale; the gone poller's waiters were detached, and
 * any of them that waits on the link again is a joiner: it clears the
 * slots, or, through a new poller, adds that poller's slot beside the
 * stale one, which is as safe (the stale slot is signalled as above). tests/model/quiet.pml checks both Dekker pairs and the
 * recycling, and catches a writer that does not check ->armed, a poller
 * that sleeps without the second look, a joiner that does not clear
 * ST_QUIET, and a fallback write that leaves it set; quiet2.pml checks
 * two writers, one of which gives up its cell, and catches a given-up
 * cell that is not announced; quiet3.pml checks a second poller that
 * joins with its slot and a third party that clears both.
 */
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include "quiet.h"

struct __eventbuf_quiet *__eventbuf_quiet_boxes[QUIET_SLOTS];

struct __eventbuf_quiet *__eventbuf_quiet_new(int kick_fd)
{
	struct __eventbuf_quiet *q = calloc(1, sizeof(*q));

	if (!q)
		return NULL;
	q->kick_fd = kick_fd;
	for (uint32_t i = 0; i < QUIET_RING; i++) {
		q->cells[i].seq = i;
		q->cells[i].fd = -1;
	}
	for (unsigned int s = 1; s < QUIET_SLOTS && !q->slot; s++) {
		struct __eventbuf_quiet *none = NULL;

		/* Release: the ring is initialised before a writer finds it
		 * (rcu_dereference() in __eventbuf_quiet_signal()). */
		if (__atomic_compare_exchange_n(&__eventbuf_quiet_boxes[s],
				&none, q, false, __ATOMIC_RELEASE,
				__ATOMIC_RELAXED))
			q->slot = s;
	}
	return q;
}

/*
 * In a child of fork(), the pollers it inherited must not be used or
 * freed (eventbuf.h): forget their rings, so that its own pollers get
 * the slots.
 */
void __eventbuf_quiet_fork_child(void)
{
	for (unsigned int s = 1; s < QUIET_SLOTS; s++)
		WRITE_ONCE(__eventbuf_quiet_boxes[s], NULL);
}

static void quiet_free_rcu(struct rcu_head *head)
{
	struct __eventbuf_quiet *q =
		caa_container_of(head, struct __eventbuf_quiet, rcu);

	rcu_callback_enter(head);
	close(q->kick_fd);
	free(q);
	rcu_callback_exit();
}

void __eventbuf_quiet_free(struct __eventbuf_quiet *q)
{
	if (q->slot)
		rcu_assign_pointer(__eventbuf_quiet_boxes[q->slot], NULL);
	call_rcu(&q->rcu, quiet_free_rcu);
}

/* Q1: a cell position, or false when the ring is full. */
static bool ring_reserve(struct __eventbuf_quiet *q, uint32_t *posp)
{
	uint32_t pos = atomic_load_explicit(&q->enq, memory_order_relaxed);

	for (;;) {
		struct quiet_cell *c = &q->cells[pos & (QUIET_RING - 1)];
		/* Acquire: pairs with the poller's release in take(), so
		 * its read of ->fd happened before we overwrite it. */
		int32_t diff = (int32_t)(smp_load_acquire(&c->seq) - pos);

		if (diff < 0)
			return false;	/* a lap ahead of the poller */
		if (diff == 0 &&
		    atomic_compare_exchange_weak_explicit(&q->enq, &pos,
				pos + 1, memory_order_relaxed,
				memory_order_relaxed)) {
			*posp = pos;
			return true;
		}
		if (diff > 0)
			pos = atomic_load_explicit(&q->enq,
						   memory_order_relaxed);
	}
}

/* Q3: fill the reserved cell. Release: pairs with take()'s acquire. */
static void ring_fill(struct __eventbuf_quiet *q, uint32_t pos, int fd)
{
	struct quiet_cell *c = &q->cells[pos & (QUIET_RING - 1)];

	c->fd = fd;
	smp_store_release(&c->seq, pos + 1);
}

/* Q2: mark @link signalled, the slots kept; false if it is not to be. */
static bool mark_signalled(struct eventbuf_item *link, uint64_t *oldp)
{
	uint64_t old = *oldp, slots = old & (ST_QUIET | ST_QUIET_B);

	while ((old & (ST_QUIET | ST_QUIET_B)) == slots && st_refs(old)) {
		if (atomic_compare_exchange_weak_explicit(&link->state, &old,
				old | ST_SIGNALED, memory_order_acq_rel,
				memory_order_acquire))
			return true;
	}
	*oldp = old;
	return false;
}

static void announce(struct __eventbuf_quiet *q)
{
	if (READ_ONCE(q->armed) &&
	    atomic_exchange_explicit(&q->armed, 0, memory_order_relaxed)) {
		static const uint64_t one = 1;

		while (write(q->kick_fd, &one, sizeof(one)) < 0 &&
		       errno == EINTR)
			;
	}
}

bool __eventbuf_quiet_signal(struct eventbuf_item *link, uint64_t *oldp)
{
	struct __eventbuf_quiet *q[2];
	unsigned int slot[2] = { st_quiet(*oldp), st_quiet_b(*oldp) };
	uint32_t pos[2];
	int n = 0, fd;
	bool quiet;

	/* Inside the writer's read-side section (buffer.c, publish()). */
	for (int i = 0; i < 2; i++) {
		if (!slot[i])
			continue;
		q[n] = rcu_dereference(__eventbuf_quiet_boxes[slot[i]]);
		if (!q[n] || !ring_reserve(q[n], &pos[n]))
			break;
		n++;
	}
	quiet = n == (slot[1] ? 2 : 1) && mark_signalled(link, oldp);
	fd = quiet ? st_fd(*oldp) : -1;
	for (int i = 0; i < n; i++)
		ring_fill(q[i], pos[i], fd);
	smp_mb();	/* Q4 */
	for (int i = 0; i < n; i++)
		announce(q[i]);
	return quiet;
}

int __eventbuf_quiet_take(struct __eventbuf_quiet *q)
{
	for (;;) {
		struct quiet_cell *c = &q->cells[q->deq & (QUIET_RING - 1)];
		int fd;

		/* Acquire: pairs with ring_fill()'s release (Q3). */
		if (smp_load_acquire(&c->seq) != q->deq + 1)
			return -1;
		fd = c->fd;
		/* Release: our read of ->fd before a writer's next fill. */
		smp_store_release(&c->seq, q->deq + QUIET_RING);
		q->deq++;
		if (fd >= 0)
			return fd;
	}
}

bool __eventbuf_quiet_idle(struct __eventbuf_quiet *q)
{
	struct quiet_cell *c = &q->cells[q->deq & (QUIET_RING - 1)];

	atomic_store_explicit(&q->armed, 1, memory_order_relaxed);	/* P1 */
	smp_mb();	/* P2: pairs with Q4 in __eventbuf_quiet_signal() */
	if (READ_ONCE(c->seq) != q->deq + 1)				/* P3 */
		return false;
	atomic_exchange_explicit(&q->armed, 0, memory_order_relaxed);
	return true;
}

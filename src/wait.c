// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * DOC: Theory of operation - the lazy eventfd and why no wake-up is lost
 *
 * Each link (an item's ->next) may get one eventfd. It is created by the
 * first reader about to wait on that link (__eventbuf_prepare_wait()),
 * installed into the item's ->state with a compare-and-swap (the loser closes
 * its own), and written once by the writer after it publishes ->next
 * (__eventbuf_signal()). Nobody ever reads it, so it stays readable for every
 * waiter, present and future: one write wakes them all, like closing a Go
 * channel. With nobody waiting, the writer sees no eventfd and makes no
 * system call.
 *
 * No lost wake-up. It is a Dekker pattern between two threads:
 *
 *   writer (publish, signal)             reader (arm)
 *   W1 store link->next = item           R1 CAS: link->state gets the fd
 *   W2 smp_mb()                          R2 smp_mb()
 *   W3 load link->state: fd?             R3 load link->next: NULL?
 *   W4 if fd: write(fd), ST_SIGNALED     R4 if NULL: poll(fd)
 *   W5 link->signal_done = 1
 *
 * The two fences order each thread's store before its load, so at least one
 * load sees the other's store: either W3 sees the fd and W4 writes it, or R3
 * sees the item and the reader does not wait. If W3 misses an fd that R1
 * installs a moment later, R3 sees ->next and returns -EALREADY; nobody
 * will ever wait on that fd, and drop_orphan() closes it once W5 shows the
 * writer is done with the link (or reclamation does, if it is not yet).
 *
 * Both barriers are smp_mb() (barrier.h): on x86-64 a locked add to the stack
 * (as Linux's smp_mb() and liburcu's non-mfence cmm_mb() do), elsewhere
 * atomic_thread_fence(memory_order_seq_cst). Neither is a system call or a
 * read-modify-write of shared memory, and the locked add does not wait for
 * the stores' cache misses to complete the way MFENCE does, which made MFENCE
 * many times slower per append (docs/measurements.md).
 *
 * The asymmetric alternative - a compiler barrier for the writer and
 * sys_membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) for the reader,
 * liburcu's own "slave/master" pair - costs an IPI into the writer's busy
 * core for every reader that parks: it lost the fan-out benchmarks by far
 * (docs/measurements.md).
 *
 * The eventfd's lifetime is tied to references on the link's item
 * (reclaim.c): a waiter holds one, so its fd stays open while it waits; the
 * writer's signal sets ST_SIGNALED after the write, and only a signalled
 * link with no references is released eagerly ("closed" below and in
 * ST_CLOSED: the descriptor is closed, or reset and recycled for another
 * link, fdpool.c), so the writer never writes a closed or reused
 * descriptor. The writer itself needs no reference: it
 * signals its previous head inside the read-side section in which it
 * published the new one, and the pin chain frees nothing a grace period
 * earlier than that section's end (buffer.c, publish()).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "quiet.h"
#include "wake.h"

static bool published(const struct eventbuf_item *link)
{
	/* Acquire: pairs with the writer's rcu_assign_pointer() (W1). */
	return smp_load_acquire(&link->next) != NULL;
}

/*
 * A reset eventfd: the one the caller kept (*@keptp, which it gives up:
 * *@kept tells whether that is the one returned), a recycled one
 * (fdpool.c), else a new one.
 */
static int create_fd(int *keptp, bool *kept)
{
	int fd = keptp ? __eventbuf_fd_reuse_kept(*keptp) : -1;

	if (keptp)
		*keptp = -1;
	*kept = fd >= 0;
	if (fd < 0)
		fd = __eventbuf_fd_pool_get();
	return fd >= 0 ? fd : __eventbuf_fd_new();
}

/*
 * An eventfd from create_fd() that @link did not take. A kept one goes
 * back to the caller while its caller's caller still watches it as the
 * last descriptor handed out (@still_last: the call hands out none), and
 * is closed when the call hands out another, so that no epoll set is left
 * watching a descriptor nobody will write.
 */
static void uncreate_fd(int fd, bool kept, int *keptp, bool still_last)
{
	if (!kept)
		__eventbuf_fd_pool_put(fd);
	else if (still_last)
		*keptp = fd;
	else
		__eventbuf_fd_drop_kept(fd);
}

enum installed { JOINED, INSTALLED, INSTALLED_KEPT };

/*
 * We take @link's descriptor from the waiter that installed it (a join).
 * A quiet link (quiet.c) stays quiet for our own poller (@slot), and for a
 * second poller, which adds its slot; anyone else makes it loud: the
 * writer must write its eventfd. Before R2, acq_rel: it is our
 * read-modify-write the writer's Q2 must see, or whose writer's W1 we
 * must see.
 */
static void join_loud(struct eventbuf_item *link, uint64_t w, unsigned int slot)
{
	/* A second poller: add our slot while there is room for it. */
	while (slot && st_quiet(w) && st_quiet(w) != slot && !st_quiet_b(w)) {
		if (atomic_compare_exchange_weak_explicit(&link->state, &w,
				w | ((uint64_t)slot << ST_QUIET_B_SHIFT),
				memory_order_acq_rel, memory_order_acquire))
			return;
	}
	/* Loud already, or quiet for us already: nothing to change. */
	if (!st_quiet(w) ||
	    (slot && (st_quiet(w) == slot || st_quiet_b(w) == slot)))
		return;
	atomic_fetch_and_explicit(&link->state, ~(ST_QUIET | ST_QUIET_B),
				  memory_order_acq_rel);
}

/*
 * R1: make sure @link has an eventfd; return it, -EALREADY or -errno.
 * @set: what the installing compare-and-swap sets besides the descriptor
 * (ST_EXPORTED, ST_PRIVATE); @keptp: the caller's kept descriptor or NULL
 * (create_fd()); *@how tells whether we installed it, and which.
 *
 * An eventfd installed just after the writer's W3 is never signalled and
 * only closed with its item, so the window matters: the writer publishing
 * during our eventfd() call is the common case, hence the second look at
 * ->next right before the compare-and-swap.
 */
static int install_fd(struct eventbuf_item *link, uint64_t set, int *keptp,
		      enum installed *how)
{
	unsigned int slot = st_quiet(set);
	/* Acquire: pairs with another installer's CAS below. */
	uint64_t w = smp_load_acquire(&link->state);
	bool kept;
	int fd;

	*how = JOINED;
	if (w & ST_CLOSED)
		return -EALREADY;	/* closed => signalled => published */
	if (st_fd(w) >= 0) {
		join_loud(link, w, slot);
		return st_fd(w);
	}
	fd = create_fd(keptp, &kept);
	if (fd < 0)
		return fd;
	if (published(link)) {
		uncreate_fd(fd, kept, keptp, true);	/* second look */
		return -EALREADY;
	}
	/* R1. Release: the eventfd exists before its number is seen; pairs
	 * with the acquire loads of ->state (W3, other waiters, pollers). */
	do {
		if (st_fd(w) >= 0) {	/* another waiter won */
			uncreate_fd(fd, kept, keptp, w & ST_CLOSED);
			if (w & ST_CLOSED)
				return -EALREADY;
			join_loud(link, w, slot);
			return st_fd(w);
		}
	} while (!atomic_compare_exchange_weak_explicit(&link->state, &w,
			st_with_fd(w, fd) | set, memory_order_acq_rel,
			memory_order_acquire));
	*how = kept ? INSTALLED_KEPT : INSTALLED;
	return fd;
}

/*
 * R3 found ->next published after we made sure of an eventfd. If the writer
 * has finished signalling this link (W5) without setting ST_SIGNALED, its
 * W3 missed the eventfd, so it will never write it, and - by the Dekker
 * argument above, applied to every reader that loaded the descriptor -
 * nobody waits on it: close it now rather than when the item is freed.
 * If the writer is still between W1 and W5, leave it: the item's
 * reclamation closes it.
 */
static void drop_orphan(struct eventbuf_item *link)
{
	uint64_t w;

	/* Acquire: pairs with the release store of W5. */
	if (!smp_load_acquire(&link->signal_done))
		return;
	w = READ_ONCE(link->state);	/* the CAS below checks it */
	/* acq_rel: one release of the eventfd, decided against the
	 * writer's signalling CAS and the holders' unref() on this word. */
	do {
		if (st_fd(w) < 0 || (w & (ST_SIGNALED | ST_CLOSED)))
			return;
	} while (!atomic_compare_exchange_weak_explicit(&link->state, &w,
			w | ST_CLOSED, memory_order_acq_rel,
			memory_order_relaxed));
	__eventbuf_fd_release(w);	/* never written: no reset needed */
}

/*
 * We took @link's descriptor from the waiter that installed it. Before the
 * caller's reference can go, so that the releasing compare-and-swap sees
 * it (same word, later in its modification order; fdpool.c): mark it
 * exported if we hand it out, and no longer private, unless we are the
 * reader it is private to, arming the same link again.
 */
static void share_fd(struct eventbuf_item *link, unsigned int flags)
{
	uint64_t w = READ_ONCE(link->state);

	if ((flags & WAIT_EXPORTED) && !(w & ST_EXPORTED))
		atomic_fetch_or_explicit(&link->state, ST_EXPORTED,
					 memory_order_relaxed);
	if ((w & ST_PRIVATE) && !(flags & WAIT_AGAIN))
		atomic_fetch_and_explicit(&link->state, ~ST_PRIVATE,
					  memory_order_relaxed);
}

int __eventbuf_prepare_wait(struct eventbuf_item *link, int *fdp,
			    unsigned int flags, int *keptp)
{
	uint64_t set = ((flags & WAIT_EXPORTED) ? ST_EXPORTED : 0) |
		       (uint64_t)WAIT_QUIET_SLOT(flags) << ST_QUIET_SHIFT;
	enum installed how;
	int fd;

	/* Cheap early out: most readers that come to park find the writer
	 * has already moved on, and need neither an eventfd nor a fence. */
	if (published(link))
		return -EALREADY;
	if (keptp)
		set |= ST_PRIVATE;
	fd = install_fd(link, set, keptp, &how);
	if (fd < 0)
		return fd;
	/* R2: pairs with W2's smp_mb() in __eventbuf_signal() (wake.h). */
	smp_mb();
	if (published(link)) {	/* R3 */
		drop_orphan(link);
		return -EALREADY;
	}
	if (how == JOINED) {
		share_fd(link, flags);
		/* We hand out another waiter's descriptor: the caller's set
		 * must not go on watching the one we kept (uncreate_fd()). */
		if (keptp && *keptp >= 0) {
			__eventbuf_fd_drop_kept(*keptp);
			*keptp = -1;
		}
	}
	*fdp = fd;
	return how == INSTALLED_KEPT;
}

/*
 * W4: somebody armed @link (W3 saw eventfd + 1 in @old): wake every waiter,
 * then mark the link signalled. The fast path - nobody armed - is inline
 * in __eventbuf_signal() (wake.h), W5 included.
 */
void __eventbuf_signal_waiters(struct eventbuf_item *link, uint64_t old)
{
	static const uint64_t one = 1;
	int fd = st_fd(old);
	uint64_t new;

	if (st_quiet(old) && __eventbuf_quiet_signal(link, &old))
		return;
	while (write(fd, &one, sizeof(one)) < 0 && errno == EINTR)
		;
	/*
	 * Set SIGNALED; close now if nobody holds the link any more, unless
	 * the reader it was private to saw our write and kept it
	 * (ST_CLOSED already; __eventbuf_put_keep_fd()).
	 * Acquire: the last holder's put (release) happened before, so did its
	 * use of the descriptor (epoll_ctl, poll).
	 */
	do {
		/* Written: its release resets it (quiet.c, "Recycling"). */
		new = (old | ST_SIGNALED) & ~(ST_QUIET | ST_QUIET_B);
		if (st_refs(old) == 0)
			new |= ST_CLOSED;
	} while (!atomic_compare_exchange_weak_explicit(&link->state, &old,
			new, memory_order_acq_rel, memory_order_acquire));
	if ((new & ST_CLOSED) && !(old & ST_CLOSED))
		__eventbuf_fd_release(new);
}

/*
 * ppoll() on two descriptors fails only for lack of memory; anything else
 * (EFAULT, EINVAL) is a bug here. Never hand out the raw errno: a caller
 * would take it for a terminal error item's code.
 */
static int wait_failed(int err)
{
	if (err == ENOMEM)
		return -ENOMEM;
	fprintf(stderr, "eventbuf: ppoll() on the library's own descriptor failed: %s\n",
		strerror(err));
	abort();
}

/*
 * POLLERR, POLLHUP or POLLNVAL on a descriptor the library created and
 * keeps open while anyone waits on it: a broken invariant (or a caller that
 * closed or replaced it, which eventbuf.h forbids).
 */
static void broken_fd(int fd, short revents)
{
	fprintf(stderr, "eventbuf: the library's wait descriptor %d reports %s%s%s: it was closed or replaced behind the library's back (callers must never read, write or close the descriptors eventbuf hands out)\n",
		fd, revents & POLLNVAL ? "POLLNVAL " : "",
		revents & POLLERR ? "POLLERR " : "",
		revents & POLLHUP ? "POLLHUP" : "");
	abort();
}

int64_t __eventbuf_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t __eventbuf_deadline(int timeout_ms)
{
	if (timeout_ms < 0)
		return -1;
	return __eventbuf_now_ns() + (int64_t)timeout_ms * 1000000;
}

/*
 * Wait until @fd or @cancel_fd is readable, or the deadline passes.
 * Return 0 when @fd is readable (checked first: data wins over a
 * simultaneous cancel), -ECANCELED, -ETIMEDOUT, -EINVAL (@cancel_fd is
 * neither -1 nor open), -ENOMEM or -EDEADLK: only codes the library
 * reserves.
 */
int __eventbuf_wait(int fd, int cancel_fd, int64_t deadline)
{
	struct pollfd pfd[2] = {
		{ .fd = fd, .events = POLLIN },
		{ .fd = cancel_fd, .events = POLLIN },
	};
	struct timespec ts, *tsp = NULL;
	int ret;

	/* -1 is "none"; another negative number would wait uncancellable. */
	if (cancel_fd < -1)
		return -EINVAL;
	/* Sleeping here would stall every grace period, hence reclamation. */
	if (rcu_read_ongoing())
		return -EDEADLK;
	for (;;) {
		if (deadline >= 0) {
			int64_t left = deadline - __eventbuf_now_ns();

			if (left < 0)
				left = 0;
			ts.tv_sec = left / 1000000000;
			ts.tv_nsec = left % 1000000000;
			tsp = &ts;
		}
		ret = ppoll(pfd, cancel_fd >= 0 ? 2 : 1, tsp, NULL);
		if (ret < 0 && errno == EINTR)
			continue;
		if (ret < 0)
			return wait_failed(errno);
		if (pfd[0].revents & POLLIN)
			return 0;
		if (pfd[1].revents & POLLNVAL)
			return -EINVAL;
		if (pfd[1].revents)
			return -ECANCELED;
		if (ret == 0)
			return -ETIMEDOUT;
		broken_fd(fd, pfd[0].revents);
	}
}

/*
 * The result of a call that found nothing and may not wait (timeout 0):
 * -ETIMEDOUT, or -EINVAL for a @cancel_fd that is neither -1 nor open, the
 * answer a waiting call gives (POLLNVAL above).
 */
int __eventbuf_no_wait(int cancel_fd)
{
	if (cancel_fd < -1)
		return -EINVAL;
	if (cancel_fd >= 0 && fcntl(cancel_fd, F_GETFD) < 0 && errno == EBADF)
		return -EINVAL;
	return -ETIMEDOUT;
}

// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * DOC: Theory of operation - fork()
 *
 * A child created by fork() has one thread: liburcu's call_rcu thread is
 * gone, so reclamation stops and eventbuf_barrier() waits for ever, and
 * any lock another thread held at the fork stays held. liburcu provides
 * hooks for both of its parts that we use (the call_rcu threads and the bp
 * flavor's registry); the library registers them with pthread_atfork()
 * the first time it creates a buffer (or waits for reclamation), together
 * with its own process-wide locks, so that a child that does not exec
 * keeps a working library.
 *
 * Order. The prepare handler first pauses the call_rcu threads
 * (call_rcu_before_fork(): it waits until they are between callbacks, and
 * our callbacks take drain_lock, the stats registry's lock and the block
 * depots' locks (blocks.c), so we must not hold those yet), then takes our locks, and last the bp flavor's
 * registry and grace-period locks (rcu_bp_before_fork()): a thread holding
 * one of our locks may be about to enter its first read-side section,
 * which takes the bp registry lock. The parent and child handlers undo
 * this in reverse order; in the child, liburcu forgets the parent's other
 * threads and starts a fresh call_rcu thread that inherits the queued
 * callbacks.
 *
 * Per-object locks (a buffer's slab pool, a publisher's mutex, a
 * subscription's mutex) are not taken: the objects a child inherits are
 * documented as unusable there (eventbuf.h).
 *
 * Callbacks. A release callback may run in the call_rcu thread, and a
 * fork() from there would wait in call_rcu_before_fork() for that thread
 * to pause between callbacks - itself - for ever, and every later fork()
 * and eventbuf_barrier() in the process with it. Which thread runs a
 * release is not the caller's choice, so fork() from any release
 * callback aborts with a message (context.c), before anything is taken.
 * A fork() from a snapshot handler is allowed; the child's thread is no
 * longer in the parent's handler as far as the library is concerned (the
 * objects it could deadlock on are the inherited ones, unusable there),
 * so the child forgets the thread's callback mark and may use publishers
 * of its own. Likewise the inherited pollers' slots for quiet signals
 * (quiet.c) are forgotten, so that the child's own pollers get them.
 */
#include <pthread.h>

#include "internal.h"

static pthread_mutex_t register_lock = PTHREAD_MUTEX_INITIALIZER;
static _Atomic bool registered;

/* Our process-wide locks, in the order their users nest them. */
static void lock_all(bool lock)
{
	__eventbuf_join_fork_lock(lock);
	__eventbuf_stats_fork_lock(lock);
	__eventbuf_drain_fork_lock(lock);
	__eventbuf_fdpool_fork_lock(lock);	/* taken alone */
	__eventbuf_blocks_fork_lock(lock);	/* innermost: taken alone */
}

static void fork_prepare(void)
{
	if (__eventbuf_callback & EVENTBUF_IN_RELEASE)
		__eventbuf_misuse("fork", "called from a release callback");
	call_rcu_before_fork();
	lock_all(true);
	rcu_bp_before_fork();
}

static void fork_parent(void)
{
	__eventbuf_fd_fork();
	rcu_bp_after_fork_parent();
	lock_all(false);
	call_rcu_after_fork_parent();
}

static void fork_child(void)
{
	__eventbuf_callback = 0;
	__eventbuf_fd_fork();
	__eventbuf_fd_fork_child();
	__eventbuf_quiet_fork_child();
	__eventbuf_blocks_fork_child();
	rcu_bp_after_fork_child();
	lock_all(false);
	call_rcu_after_fork_child();
}

/* 0, or -ENOMEM when pthread_atfork() could not register (retried). */
int __eventbuf_fork_init(void)
{
	int ret = 0;

	/* Acquire: pairs with the release store below. */
	if (smp_load_acquire(&registered))
		return 0;
	pthread_mutex_lock(&register_lock);
	if (!READ_ONCE(registered)) {	/* the lock orders it */
		ret = -pthread_atfork(fork_prepare, fork_parent, fork_child);
		if (!ret)	/* pairs with the smp_load_acquire() above */
			smp_store_release(&registered, true);
	}
	pthread_mutex_unlock(&register_lock);
	return ret;
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
#ifndef _EVENTBUF_RCU_H
#define _EVENTBUF_RCU_H

/*
 * The one place that includes a liburcu flavor. Everything else writes the
 * kernel names: rcu_read_lock(), rcu_read_unlock(), rcu_dereference(),
 * rcu_assign_pointer(), call_rcu(), rcu_barrier(), rcu_read_ongoing().
 *
 * Flavor: bp ("bulletproof"). Its rcu_read_lock() registers the calling
 * thread on first use and liburcu unregisters it at thread exit, so a user
 * thread can never enter a read-side section unregistered, and threads that
 * also use another flavor themselves (or liburcu's own call_rcu thread, which
 * runs our release callbacks) are never registered twice. Its read side
 * costs what memb's does, within noise: both are a thread-local counter
 * store with a compiler barrier (both use sys_membarrier on the update
 * side). bp's synchronize_rcu() costs more, but eventbuf only reaches it
 * through call_rcu(), which liburcu batches every 10 ms anyway. The safety
 * is worth it (docs/measurements.md has the figures).
 *
 * Normal builds define _LGPL_SOURCE (eventbuf is LGPL-2.1-or-later), so the
 * read-side primitives are inlined. Sanitizer builds (EVENTBUF_SANITIZE,
 * EVENTBUF_TSAN) do not: they call liburcu's exported functions, so the
 * sanitizers judge eventbuf's code rather than liburcu's inlined code.
 * (UBSan does flag the latter: liburcu 0.13.2's bp registry places
 * struct urcu_bp_reader, declared 128-byte aligned, at 32-byte offsets -
 * "misaligned address ... requires 128 byte alignment" at urcu-bp.h:171.)
 *
 * ThreadSanitizer builds (CONFIG_TSAN=y, which defines EVENTBUF_TSAN):
 * liburcu 0.13 has no TSan annotations, so TSan cannot see that a grace
 * period orders every earlier read-side critical section before a call_rcu
 * callback. We tell it, and nothing else:
 *  - rcu_read_unlock() first releases &__eventbuf_gp_sync;
 *  - call_rcu(head, fn) first releases head, and every callback starts with
 *    rcu_callback_enter(head), which acquires &__eventbuf_gp_sync and head;
 *  - every callback ends with rcu_callback_exit(), which releases
 *    &__eventbuf_barrier_sync, and rcu_barrier() acquires it on return:
 *    what the callbacks did (release callbacks included) happens before
 *    eventbuf_barrier() returns;
 *  - rcu_dereference()/rcu_assign_pointer() become acquire loads and release
 *    stores that TSan understands.
 * _LGPL_SOURCE stays undefined there, so liburcu's code runs inside its own
 * shared libraries, which tests/tsan.supp names (and nothing else).
 */

#include "barrier.h"

#ifdef EVENTBUF_TSAN

#include <urcu-bp.h>

void __tsan_acquire(void *addr);
void __tsan_release(void *addr);

extern char __eventbuf_gp_sync __attribute__((visibility("hidden")));
extern char __eventbuf_barrier_sync __attribute__((visibility("hidden")));

#undef rcu_dereference
#undef rcu_assign_pointer
#undef rcu_read_unlock
#undef call_rcu
#undef rcu_barrier

#define rcu_dereference(p) smp_load_acquire(&(p))
#define rcu_assign_pointer(p, v) smp_store_release(&(p), (v))
#define rcu_read_unlock()                          \
	do {                                       \
		__tsan_release(&__eventbuf_gp_sync); \
		urcu_bp_read_unlock();             \
	} while (0)
#define call_rcu(head, fn)                   \
	do {                                 \
		__tsan_release(head);        \
		urcu_bp_call_rcu(head, fn);  \
	} while (0)
#define rcu_callback_enter(head)                   \
	do {                                       \
		__tsan_acquire(&__eventbuf_gp_sync); \
		__tsan_acquire(head);              \
	} while (0)
#define rcu_callback_exit() __tsan_release(&__eventbuf_barrier_sync)
#define rcu_barrier()                                 \
	do {                                          \
		urcu_bp_barrier();                    \
		__tsan_acquire(&__eventbuf_barrier_sync); \
	} while (0)

#else /* !EVENTBUF_TSAN */

#if !defined(_LGPL_SOURCE) && !defined(EVENTBUF_SANITIZE)
#define _LGPL_SOURCE
#endif
#include <urcu-bp.h>

#define rcu_callback_enter(head) ((void)(head))
#define rcu_callback_exit() ((void)0)

#endif /* EVENTBUF_TSAN */

#endif /* _EVENTBUF_RCU_H */

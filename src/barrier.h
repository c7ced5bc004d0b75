/* SPDX-License-Identifier: LGPL-2.1-or-later */
#ifndef _EVENTBUF_BARRIER_H
#define _EVENTBUF_BARRIER_H

/*
 * The one vocabulary for ordering outside RCU (rcu.h has that): the
 * kernel's names, mapped onto the compiler's atomics.
 *
 *   smp_mb()                 a full barrier: every load and store before
 *                            it is ordered before every one after it
 *   smp_load_acquire(p)      *p, and nothing after moves before it
 *   smp_store_release(p, v)  *p = v, and nothing before moves after it
 *   READ_ONCE(x)             x, one untorn load, no ordering
 *   WRITE_ONCE(x, v)         x = v, one untorn store, no ordering
 *
 * They take plain and _Atomic objects alike (the comma expression in
 * __unqual_ptr() drops the _Atomic qualifier, which both gcc's and clang's
 * builtins want gone), so a field keeps one spelling whatever its type.
 * Read-modify-write operations (counts, state-word compare-and-swaps)
 * stay C11 atomic_*_explicit() calls with their order written out. Every
 * use names, at its call site, the access or barrier it pairs with.
 *
 * smp_mb() on x86-64 is a locked add to the stack, as Linux's smp_mb()
 * and liburcu's non-mfence cmm_mb() are: it does not wait for pending
 * store misses the way MFENCE does (wait.c, docs/measurements.md).
 * Elsewhere it is atomic_thread_fence(memory_order_seq_cst). TSan does not
 * model fences (the Makefile's -Wno-tsan): every access they order is
 * itself atomic, so TSan has no data race to misjudge there.
 */
#include <stdatomic.h>

#define __unqual_ptr(p) ((__typeof__((void)0, *(p)) *)(p))

static inline void smp_mb(void)
{
#if defined(__x86_64__)
	__asm__ __volatile__("lock; addl $0,-4(%%rsp)" ::: "memory", "cc");
#else
	atomic_thread_fence(memory_order_seq_cst);
#endif
}

#define smp_load_acquire(p) __atomic_load_n(__unqual_ptr(p), __ATOMIC_ACQUIRE)
#define smp_store_release(p, v) \
	__atomic_store_n(__unqual_ptr(p), (v), __ATOMIC_RELEASE)
#define READ_ONCE(x) __atomic_load_n(__unqual_ptr(&(x)), __ATOMIC_RELAXED)
#define WRITE_ONCE(x, v) \
	__atomic_store_n(__unqual_ptr(&(x)), (v), __ATOMIC_RELAXED)

#endif /* _EVENTBUF_BARRIER_H */

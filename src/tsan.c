// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * ThreadSanitizer builds only: the addresses that stand for "a grace period
 * has elapsed" and "rcu_barrier() has waited for the callbacks" (see
 * rcu.h), which tell TSan what liburcu 0.13's unannotated grace periods
 * and barrier guarantee.
 */
#include "internal.h"

char __eventbuf_gp_sync;
char __eventbuf_barrier_sync;

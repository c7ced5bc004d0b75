// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * ThreadSanitizer builds only: the address that stands for "a grace period
 * has elapsed" (see rcu.h). Every rcu_read_unlock() releases it and every
 * call_rcu() callback acquires it, which tells TSan what liburcu 0.13's
 * unannotated grace periods guarantee.
 */
#include "internal.h"

char __eventbuf_gp_sync;

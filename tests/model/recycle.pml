/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Recycled eventfds (src/fdpool.c): a link is done with its eventfd when
 * the put, signal, orphan drop or reclamation that sets ST_CLOSED releases
 * it; the release reads a signalled descriptor back to zero and pushes it
 * on the pool, and the next link that needs an eventfd takes it from there.
 * tests/model/README.md maps every step to its line of C.
 *
 * Two links, each with its own writer (two buffers, or two keys; the
 * writers run concurrently). A poller's waiter parks on link 1, is
 * reported or reads it directly (leaving an event of link 1's write queued
 * in its epoll set), then moves to link 2, usually with link 1's recycled
 * descriptor, which its epoll set still watches. A blocking reader waits
 * on link 2 with poll(). Link 1's writer may still be between its W3 and
 * W5 all the while.
 *
 * Kept small so that every interleaving can be explored: a waiter holds
 * one reference on its link (a poller's own reference on a link it
 * watches comes and goes inside the reader's, so it changes nothing);
 * the blocking reader arms link 2 in one step up to its compare-and-swap
 * (the poller's waiter has the interleavings inside it); link 2 is the
 * last link of its descriptor here, so its writer's W3 to W5 are one step.
 *
 * The lazy eventfd protocol itself, with its store buffer, is wake.pml's
 * business: here a writer's W1 (store ->next) and W2 (full barrier) are
 * one step, which is what the barrier makes them; every other step is a
 * locked instruction, a system call or under the pool's lock.
 *
 * Checked, exhaustively:
 *  - no write on behalf of an old link: a writer writes its descriptor
 *    only while the descriptor is installed on its link (assertion in W4);
 *    nothing is released twice, nor pooled while in use;
 *  - no stale wake-up from a descriptor: a pooled descriptor reads zero,
 *    and the blocking reader's poll() returns only once its link has a
 *    successor (assertions);
 *  - no stale report: the poller reports its waiter only when the waiter's
 *    link has a successor, although its epoll set may return a descriptor
 *    for a write to the link it served before (assertion);
 *  - no missed wake-up on the recycled descriptor: both waiters finish (a
 *    waiter asleep when everything else has ended is an invalid end state;
 *    ltl all_waiters_finish under weak fairness);
 *  - every descriptor is back in the pool in the end, released once.
 *
 * The epoll set is modelled coarsely in one direction only: a queued event
 * is returned even if the descriptor was read back to zero since (Linux
 * re-polls the file and may drop it), which can only add stale events.
 * Pool overflow, exported descriptors and the close epoch are not here:
 * those descriptors are closed, as wake.pml models.
 *
 * -DEARLY_RECYCLE releases a descriptor when the last reference goes,
 * without requiring ST_SIGNALED or ->signal_done: link 1's writer may then
 * write a descriptor that link 2 owns. -DNO_RESET pushes a signalled
 * descriptor without reading it back to zero. -DNO_SUCCESSOR_CHECK makes
 * the poller report whatever its epoll set returns. make verify checks
 * that spin catches each of them.
 */
/* verify-mutants: EARLY_RECYCLE NO_RESET NO_SUCCESSOR_CHECK */

#define NFD 4			/* descriptors 1..3 (0: none) */

/* Links 1 and 2 (index 0 unused); ->state's fields, ->next, ->signal_done */
bit next[3];
byte fd[3];
bit signalled[3];
bit closed[3];
byte refs[3] = 1;	/* link 1: the poller's waiter; link 2: the reader */
bit writer_done[3];

/* Descriptors: the eventfd counter (readable or not), the link it is
 * installed on until released (0: none), whether the pool holds it. */
bit efd_created[NFD];
bit efd_count[NFD];
byte efd_owner[NFD];
bit in_pool[NFD];
byte nfds;

/* The poller's epoll set: watched, queued on its ready list, and regs[fd]:
 * the link its waiter is parked on under fd (0: none). */
bit watched[NFD];
bit queued[NFD];
byte regs[NFD];

byte waiters_done;

/* __eventbuf_fd_release(): reset a signalled one, then back to the pool. */
inline release(l)
{
	assert(fd[l] != 0 && efd_owner[fd[l]] == l && !in_pool[fd[l]]);
#ifndef NO_RESET
	if
	:: signalled[l] -> efd_count[fd[l]] = 0
	:: else -> skip
	fi;
#endif
	efd_owner[fd[l]] = 0;
	in_pool[fd[l]] = 1
}

/* create_fd(): a descriptor from the pool (any: the C pool is a stack),
 * else a new one. */
inline fd_get(m)
{
	if
	:: in_pool[1] -> in_pool[1] = 0; m = 1
	:: in_pool[2] -> in_pool[2] = 0; m = 2
	:: in_pool[3] -> in_pool[3] = 0; m = 3
	:: else -> nfds++; m = nfds; assert(m < NFD); efd_created[m] = 1
	fi;
	assert(efd_count[m] == 0 && efd_owner[m] == 0)	/* reset */
}

/* __eventbuf_fd_pool_put() of one never installed: it reads zero. */
inline fd_put(m)
{
	assert(efd_owner[m] == 0 && !in_pool[m]);
	in_pool[m] = 1
}

/* W4: write(fd); a write wakes the epoll sets that watch it. */
inline write_fd(l, f)
{
	assert(efd_owner[f] == l);	/* not recycled yet */
	efd_count[f] = 1;
	if
	:: watched[f] -> queued[f] = 1
	:: else -> skip
	fi
}

/* W4: CAS ST_SIGNALED, and ST_CLOSED if unheld: then release. */
inline set_signalled(l)
{
	signalled[l] = 1;
	if
	:: refs[l] == 0 && !closed[l] -> closed[l] = 1; release(l)
	:: else -> skip
	fi
}

active proctype writer1()
{
	byte f;

	/* W1, W2: publish ->next, full barrier */
	next[1] = 1;
	/* W3: load ->state */
	f = fd[1];
	if
	:: f != 0 ->
		atomic { write_fd(1, f) };
		atomic { set_signalled(1) }
	:: else -> skip
	fi;
	/* W5: ->signal_done = 1 */
	atomic { f = 0; writer_done[1] = 1 }
}

/* Link 2's descriptor is not recycled again here: W3 to W5 are one step. */
active proctype writer2()
{
	byte f;

	next[2] = 1;
	atomic {
		f = fd[2];
		if
		:: f != 0 -> write_fd(2, f); set_signalled(2)
		:: else -> skip
		fi;
		f = 0;
		writer_done[2] = 1
	}
}

/* unref() of the last holder: release if nobody can wait any more, which
 * needs the writer done with the descriptor: it wrote it (ST_SIGNALED) or
 * never will (->signal_done). */
#ifndef EARLY_RECYCLE
#define DONE_WITH_FD(l)	(signalled[l] || writer_done[l])
#else
#define DONE_WITH_FD(l)	1
#endif
inline reader_put(l)
{
	atomic {
		refs[l]--;
		if
		:: refs[l] == 0 && fd[l] != 0 && !closed[l] && DONE_WITH_FD(l) ->
			closed[l] = 1; release(l)
		:: else -> skip
		fi
	}
}

/*
 * __eventbuf_prepare_wait(), in two parts: install() up to R1, check() from R3.
 * They leave f set to the link's descriptor, or jump to read: when the
 * link has a successor. They use the caller's f and mine.
 */
inline install(l)
{
	if
	:: next[l] -> goto read		/* cheap early out */
	:: else -> skip
	fi;
	atomic {
		f = fd[l];
		if
		:: closed[l] -> goto read	/* closed => signalled => published */
		:: else -> skip
		fi
	}
	if
	:: f == 0 ->
		atomic { fd_get(mine) };
		if
		:: next[l] -> atomic { fd_put(mine); mine = 0 }; goto read	/* second look */
		:: else -> skip
		fi;
		/* R1: compare-and-swap installs it */
		atomic {
			if
			:: fd[l] == 0 -> fd[l] = mine; efd_owner[mine] = l; f = mine
			:: else -> f = fd[l]
			fi
		}
		atomic {
			if
			:: f != mine -> fd_put(mine)	/* another waiter won */
			:: else -> skip
			fi;
			mine = 0
		}
	:: else -> skip
	fi
}

inline check(l)
{
	/* R2 fence, R3: look at ->next again */
	if
	:: next[l] ->
		/* drop_orphan() */
		atomic {
			if
			:: writer_done[l] && !signalled[l] && !closed[l] && fd[l] != 0 ->
				closed[l] = 1; release(l)
			:: else -> skip
			fi
		}
		goto read
	:: else -> skip
	fi
}

/* epoll_wait() returns a queued descriptor g. */
#define EPOLL_TAKE(n)	atomic { queued[n] -> queued[n] = 0; g = n }

/* A reader attached to a poller: parks on link 1, then on link 2. */
active proctype poller_waiter()
{
	byte l = 1, f, mine, g;

	do
	:: l <= 2 ->
		install(l);
		check(l);
		/* __eventbuf_poller_park(): watch fd unless already watched;
		 * a descriptor added while readable is queued at once */
		atomic {
			assert(efd_owner[f] == l && regs[f] == 0);
			regs[f] = l;
			if
			:: !watched[f] -> watched[f] = 1; queued[f] = efd_count[f]
			:: else -> skip
			fi
		}
wait:
		if
		:: EPOLL_TAKE(1)
		:: EPOLL_TAKE(2)
		:: EPOLL_TAKE(3)
		:: l == 1 && next[l] ->
			/* the owner reads link 1 without a report (unpark); its
			 * event may still come, for a later link */
			regs[f] = 0; goto read
		fi;
		/* link_fired(g) */
		if
#ifndef NO_SUCCESSOR_CHECK
		:: regs[g] != 0 && next[regs[g]] ->
#else
		:: regs[g] != 0 ->
#endif
			assert(regs[g] == l);
			assert(next[l]);	/* no stale report */
			regs[g] = 0; g = 0
		:: else -> g = 0; goto wait	/* stale: counted, ignored */
		fi;
read:
		/* read; move_anchor(): a reference on the new tip, then the put */
		atomic {
			assert(next[l]);
			f = 0;
			if
			:: l == 1 -> refs[2]++
			:: else -> skip
			fi;
			reader_put(l);
			l++
		}
	:: else -> break
	od;
	waiters_done++
}

/* eventbuf_reader_next() on link 2: poll() the descriptor itself. The C
 * looks at ->next again after poll(); the assertion says it never has to
 * go back to sleep because of a recycled descriptor's old count. */
active proctype blocking_reader()
{
	byte l = 2, f, mine;

	/* One step up to R1: the poller's waiter and wake.pml have the
	 * interleavings inside it. */
	atomic { install(l) };
	check(l);
	/* R4: poll(fd) until readable */
	atomic {
		assert(efd_owner[f] == l);
		efd_count[f] -> assert(next[l])	/* no stale wake-up */
	}
read:
	atomic {
		f = 0;
		reader_put(l);
		waiters_done++
	}
}

/* Reclamation: of link 1 once nobody holds it and its writer is done,
 * of link 2 when all have ended; then every descriptor is in the pool. */
active proctype reclaim()
{
	byte i;

	(writer_done[1] && refs[1] == 0);
	atomic {
		if
		:: fd[1] != 0 && !closed[1] -> closed[1] = 1; release(1)
		:: else -> skip
		fi
	}
	(waiters_done == 2 && writer_done[2]);
	atomic {
		if
		:: fd[2] != 0 && !closed[2] -> closed[2] = 1; release(2)
		:: else -> skip
		fi;
		i = 1;
		do
		:: i <= nfds -> assert(in_pool[i]); i++
		:: else -> break
		od
	}
}

/* No missed wake-up, as a liveness claim (under weak fairness). */
ltl all_waiters_finish { <> (waiters_done == 2) }

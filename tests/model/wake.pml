/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The lazy eventfd wake-up protocol of src/wait.c, with x86-TSO store
 * buffering: the writer's store of ->next sits in its store buffer until
 * the buffer drains (any time, or at a barrier); locked instructions
 * (compare-and-swap) drain the buffer of the thread that runs them.
 * tests/model/README.md maps every step to its line of C.
 *
 * Checked, exhaustively:
 *  - no lost wake-up: a reader that sleeps on the eventfd is woken (a
 *    reader asleep when everything else has ended is an invalid end
 *    state, which spin reports);
 *  - an eventfd is never written, waited on, or closed after it was closed
 *    (assertions);
 *  - every eventfd that was created is closed in the end (the final
 *    assertion in cleanup).
 *
 * -DNO_W2 removes the writer's barrier, -DNO_R3 the reader's look at ->next
 * after it armed: spin must then find a lost wake-up (make verify checks
 * that it does, so that the model is known to catch what it claims).
 */
/* verify-mutants: NO_W2 NO_R3 */

#define NREADERS 2
#define MAXFD (2 * NREADERS + 1)

bit next_mem;		/* link->next as memory shows it */
bit next_buffered;	/* the writer's store of ->next, still in its buffer */

byte fd;		/* the link's eventfd (0: none) - in ->state */
bit signalled;		/* ST_SIGNALED */
bit closed;		/* ST_CLOSED */
byte refs = NREADERS;	/* each reader holds the link while it reads */
bit writer_done;	/* ->signal_done (W5) */

bit efd_created[MAXFD];
bit efd_readable[MAXFD];
bit efd_closed[MAXFD];
byte nfds;
byte readers_done;

/* The store buffer drains at some point, unless a barrier forces it. */
active proctype store_buffer()
{
	(next_buffered) -> atomic { next_mem = 1; next_buffered = 0 }
}

inline efd_close(f)
{
	assert(efd_created[f] && !efd_closed[f]);
	efd_closed[f] = 1
}

active proctype writer()
{
	byte f;

	/* W1: rcu_assign_pointer(old->next, item): a store, buffered */
	next_buffered = 1;
#ifndef NO_W2
	/* W2: smp_mb() in __eventbuf_signal(): the buffer drains first */
	(!next_buffered);
#endif
	/* W3: load ->state (the eventfd) */
	f = fd;
	if
	:: f != 0 ->
		/* W4: write(fd), then CAS SIGNALED (and CLOSED if unheld) */
		assert(!efd_closed[f]);
		efd_readable[f] = 1;
		atomic {
			signalled = 1;
			if
			:: refs == 0 && !closed -> closed = 1; efd_close(f)
			:: else -> skip
			fi
		}
	:: else -> skip
	fi;
	/* W5: ->signal_done = 1 */
	writer_done = 1
}

/* unref() of the last holder: close if nobody can wait any more. */
inline reader_put()
{
	atomic {
		refs--;
		if
		:: refs == 0 && fd != 0 && !closed && (signalled || writer_done) ->
			closed = 1; efd_close(fd)
		:: else -> skip
		fi
	}
}

proctype reader()
{
	byte mine, f;

	/* __eventbuf_arm(): cheap early out */
	if
	:: next_mem -> goto read
	:: else -> skip
	fi;
	/* install_fd(): an eventfd of our own, unless the link has one */
	atomic {
		f = fd;
		if
		:: closed -> goto read	/* closed => signalled => published */
		:: else -> skip
		fi
	}
	if
	:: f == 0 ->
		atomic { nfds++; mine = nfds; efd_created[mine] = 1 };
#ifndef NO_R_RECHECK
		/* the second look at ->next, right before the CAS */
		if
		:: next_mem -> efd_close(mine); goto read
		:: else -> skip
		fi;
#endif
		/* R1: compare-and-swap installs it (a locked instruction) */
		atomic {
			if
			:: fd == 0 -> fd = mine; f = mine
			:: else -> f = fd
			fi
		}
		if
		:: f != mine -> efd_close(mine)	/* another waiter won */
		:: else -> skip
		fi
	:: else -> skip
	fi;
	/* R2: smp_mb() in __eventbuf_arm() (nothing buffered on this side) */
#ifndef NO_R3
	/* R3: look at ->next again */
	if
	:: next_mem ->
		/* drop_orphan(): the writer is done and never saw it */
		atomic {
			if
			:: writer_done && !signalled && !closed && fd != 0 ->
				closed = 1; efd_close(fd)
			:: else -> skip
			fi
		}
		goto read
	:: else -> skip
	fi;
#endif
	/* R4: poll(fd): sleep until it is readable */
	assert(!efd_closed[f]);
	efd_readable[f];
	assert(!efd_closed[f]);
	assert(next_mem);	/* woken only once ->next is published */
read:
	assert(next_mem);
	reader_put();
	readers_done++
}

/* When all have ended: every eventfd created was closed (or, for one the
 * writer never saw, is closed when the item is reclaimed). */
active proctype cleanup()
{
	byte i;

	(readers_done == NREADERS && writer_done);
	atomic {
		if
		:: fd != 0 && !closed -> closed = 1; efd_close(fd)	/* reclamation */
		:: else -> skip
		fi;
		i = 1;
		do
		:: i <= nfds -> assert(!efd_created[i] || efd_closed[i]); i++
		:: else -> break
		od
	}
}

init
{
	atomic {
		run reader();
		run reader()
	}
}

/* No lost wake-up, as a liveness claim: every reader finishes (run with
 * weak fairness, so that the store buffer drains and each process moves). */
ltl all_readers_finish { <> (readers_done == NREADERS) }

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Quiet signals (src/quiet.c, "Theory of operation - quiet signals"): a
 * link whose eventfd a poller installed carries that poller's slot
 * (ST_QUIET), and its writer, instead of writing the eventfd, puts the
 * descriptor number in the poller's ring and writes the poller's own
 * ->kick_fd only if the poller has said it may sleep (->armed).
 * tests/model/README.md maps every step to its line of C.
 *
 * One link, one writer. A poller's waiter arms the link - installing its
 * eventfd with the poller's slot, or joining the one the blocking reader
 * installed - parks on it (its epoll set watches the eventfd,
 * edge-triggered) and runs the poller's loop: collect what the epoll set
 * returned (->kick_fd, read back to zero, and the link's eventfd), take
 * the ring's cells in order, P1 arm, P2 fence, P3 look at the next cell
 * again, and sleep in epoll_wait() until ->kick_fd or the eventfd is
 * readable. A blocking reader (the joiner, no slot) arms the link too:
 * installing the eventfd without a slot, or taking the poller's and
 * clearing ST_QUIET with a read-modify-write before its R2 fence; it then
 * polls the eventfd. The writer takes the quiet path when its W3 finds
 * ST_QUIET, and falls back to the write when the ring is full (a
 * nondeterministic choice: other writers' cells) or its Q2
 * compare-and-swap finds ST_QUIET cleared or no reference left (then it
 * fills its cell with -1, and still runs Q4 and Q5, before the write).
 *
 * The Dekker pair of the ring - Q3 (fill) Q4 (smp_mb) Q5 (load ->armed)
 * against P1 (store ->armed) P2 (smp_mb) P3 (load the cell) - is modelled
 * with x86-TSO store buffers, as wake.pml models W1/W2: Q3's and P1's
 * stores sit in their thread's buffer until it drains (any time, or at a
 * barrier or a locked instruction). Everything else is sequentially
 * consistent: W1 and W2 are one step (wake.pml has their store buffer),
 * the read-modify-writes of the state word (R1, the joiner's clear, Q2,
 * the write's compare-and-swap, the puts) are atomic steps, and the
 * joiner's load of the state and its clear are one step (only the
 * installer sets ST_QUIET, before anybody can load the descriptor, so a
 * load that finds it clear is not followed by a set).
 *
 * Checked, exhaustively:
 *  - no lost wake-up: the poller reports its waiter and the blocking reader
 *    returns (a waiter asleep when everything else has ended is an invalid
 *    end state; ltl all_waiters_finish under weak fairness);
 *  - a report, from the ring or from the eventfd, and a return from the
 *    blocking reader's poll() come only once ->next is published
 *    (assertions);
 *  - a descriptor released without the reset read was never written, and
 *    every released descriptor reads zero; the writer writes it only
 *    before its release (assertions in release and in the write);
 *  - the eventfd is released once, and in the end.
 *
 * One writer fills at most one cell, so a cell given up (-1) has no cell
 * behind it here (quiet2.pml has two writers, and the cell behind); the
 * ring's positions, laps and recycled descriptor numbers are not modelled
 * (a cell names a number, and link_fired()'s successor check is
 * recycle.pml's business).
 *
 * -DNO_Q5: the writer never looks at ->armed (never kicks). -DNO_P3: the
 * poller sleeps without its second look at the ring. -DNO_JOIN_CLEAR:
 * the joiner takes the poller's eventfd without clearing ST_QUIET.
 * -DFALLBACK_KEEPS_QUIET: the write's compare-and-swap keeps ST_QUIET, so
 * the release skips the reset of a written eventfd. -DNO_Q4 and -DNO_P2:
 * the writer's or the poller's fence is left out. make verify checks that
 * spin catches each of them.
 */
/* verify-mutants: NO_Q5 NO_P3 NO_JOIN_CLEAR FALLBACK_KEEPS_QUIET NO_Q4 NO_P2 */

/* The link: ->next, ->signal_done, and its ->state's fields. There is one
 * eventfd: whoever installs it first, it is this one (the loser of the
 * install race gives its own back, which wake.pml models). */
bit next;
bit writer_done;
bit installed;		/* the eventfd field is set */
bit quiet;		/* ST_QUIET: the poller's slot */
bit signalled;		/* ST_SIGNALED */
bit closed;		/* ST_CLOSED */
byte refs = 2;		/* the poller's waiter and the blocking reader */

/* The eventfd: its counter, released (reset and pooled, or closed). */
bit efd_count;
bit efd_released;
/* The poller's epoll set: watches the eventfd; an edge of it queued. */
bit watched;
bit efd_event;

/* The poller's ring: one cell (one writer), and the poller's side. */
#define EMPTY		0
#define FILLED		1	/* the link's descriptor number */
#define GIVEN_UP	2	/* -1: a reservation given up */
byte cell;		/* ->seq and ->fd, as memory shows them */
byte cell_buf;		/* Q3's store, still in the writer's store buffer */
bit deq;		/* the poller has taken the cell */
bit armed;		/* ->armed, as memory shows it */
bit armed_buf;		/* P1's store, still in the poller's store buffer */
bit kick;		/* ->kick_fd readable */

byte waiters_done;

/* The store buffers drain at some point, unless a barrier forces it. */
active proctype writer_buffer()
{
end:	(cell_buf != EMPTY) -> atomic { cell = cell_buf; cell_buf = EMPTY }
}

active proctype poller_buffer()
{
end:	do
	:: atomic { armed_buf -> armed = 1; armed_buf = 0 }
	od
}

/* __eventbuf_fd_release(): the reset read only for a written eventfd
 * (ST_SIGNALED without ST_QUIET); one released without it must read 0. */
inline release()
{
	assert(!efd_released);
	if
	:: signalled && !quiet -> efd_count = 0	/* fd_reset() */
	:: else -> assert(efd_count == 0)	/* never written */
	fi;
	efd_released = 1
}

/* unref() of a waiter's reference: release when the last goes and
 * nobody can wait any more (signalled, or the writer is done). */
inline put()
{
	atomic {
		refs--;
		if
		:: refs == 0 && installed && !closed &&
		   (signalled || writer_done) -> closed = 1; release()
		:: else -> skip
		fi;
		waiters_done++
	}
}

/* R3 found ->next: drop_orphan() */
inline drop_orphan()
{
	atomic {
		if
		:: writer_done && installed && !signalled && !closed ->
			closed = 1; release()
		:: else -> skip
		fi
	}
}

active proctype writer()
{
	bit f, q, ok, ex;

	/* W1: store ->next; W2: smp_mb() (one step, see above) */
	next = 1;
	/* W3: load ->state */
	atomic { f = installed; q = quiet };
	if
	:: !f -> goto w5
	:: else -> skip
	fi;
	if
	:: q ->
		/* Q1: ring_reserve(): a cell, or the ring is full */
		if
		:: goto write	/* full, or the slot has no ring */
		:: skip
		fi;
		/* Q2: mark_signalled(), a compare-and-swap that expects
		 * ST_QUIET and a reference */
		atomic {
			if
			:: quiet && refs > 0 -> signalled = 1; ok = 1
			:: else -> ok = 0
			fi
		};
		/* Q3: ring_fill(), a release store: buffered. The descriptor
		 * number, or -1 if Q2 failed (the poller skips it; what it is
		 * for, a cell behind it, is quiet2.pml's) */
		if
		:: ok -> cell_buf = FILLED
		:: else -> cell_buf = GIVEN_UP
		fi;
#ifndef NO_Q4
		/* Q4: smp_mb(): the buffer drains first */
		(cell_buf == EMPTY);
#endif
#ifndef NO_Q5
		/* Q5: load ->armed; if set, exchange it for 0 (a locked
		 * instruction: the buffer drains first), write ->kick_fd */
		if
		:: armed ->
			atomic { cell_buf == EMPTY -> ex = armed; armed = 0 };
			if
			:: ex -> kick = 1
			:: else -> skip
			fi
		:: else -> skip
		fi;
#endif
		if
		:: ok -> goto w5
		:: else -> skip	/* given up: the write */
		fi
	:: else -> skip
	fi;
write:
	/* W4: write(fd), which every epoll set that watches it sees (the
	 * eventfd's lock, a locked instruction: the buffer drains first) */
	assert(installed && !efd_released);
	atomic {
		cell_buf == EMPTY ->
		efd_count = 1;
		if
		:: watched -> efd_event = 1
		:: else -> skip
		fi
	};
	/* ... then the compare-and-swap: ST_SIGNALED, ST_QUIET cleared (it
	 * was written), ST_CLOSED and release if nobody holds the link */
	atomic {
		signalled = 1;
#ifndef FALLBACK_KEEPS_QUIET
		quiet = 0;
#endif
		if
		:: refs == 0 && !closed -> closed = 1; release()
		:: else -> skip
		fi
	};
w5:
	/* W5: ->signal_done = 1 */
	writer_done = 1
}

active proctype poller()
{
	byte taken;

	/* __eventbuf_prepare_wait(): cheap early out */
	if
	:: next -> goto done
	:: else -> skip
	fi;
	/* install_fd(): R1 installs the eventfd with our slot; or we join the
	 * blocking reader's, which has none (join_loud(): nothing to clear) */
	atomic {
		if
		:: closed -> goto done
		:: !installed -> installed = 1; quiet = 1
		:: else -> skip
		fi
	};
	/* R2: smp_mb(); R3: look at ->next again */
	if
	:: next -> drop_orphan(); goto done
	:: else -> skip
	fi;
	/* __eventbuf_poller_park(): watch (EPOLL_CTL_ADD of a readable
	 * eventfd queues it at once) */
	atomic {
		watched = 1;
		if
		:: efd_count -> efd_event = 1
		:: else -> skip
		fi
	};
	/* eventbuf_poller_wait(): ready() collects without waiting first */
	goto collect;
sleep:
	/* collect(): epoll_wait() until the set has an event */
	(kick || efd_event);
collect:
	atomic {
		/* take_inbox(): read ->kick_fd back to zero */
		if
		:: kick -> kick = 0
		:: else -> skip
		fi;
		/* link_fired(): the eventfd fired; report if ->next is there */
		if
		:: efd_event -> efd_event = 0; assert(next); goto reported
		:: else -> skip
		fi
	};
	/* take_quiet(): __eventbuf_quiet_take() - the cells in order */
take:
	if
	:: atomic { !deq && cell != EMPTY -> deq = 1; taken = cell };
		if
		:: taken == FILLED ->
			assert(next);	/* link_fired() reports */
			goto reported
		:: else -> goto take	/* -1: skipped */
		fi
	:: else -> skip
	fi;
	/* __eventbuf_quiet_idle(). P1: store ->armed = 1, buffered */
	armed_buf = 1;
#ifndef NO_P2
	/* P2: smp_mb(): the buffer drains first */
	(!armed_buf);
#endif
#ifndef NO_P3
	/* P3: the next cell filled meanwhile? Exchange ->armed for 0 (a
	 * locked instruction) and take again */
	if
	:: !deq && cell != EMPTY ->
		atomic { !armed_buf -> armed = 0 };
		goto take
	:: else -> skip
	fi;
#endif
	goto sleep;
reported:
done:
	assert(next);
	put()
}

active proctype joiner()
{
	/* __eventbuf_prepare_wait(): cheap early out */
	if
	:: next -> goto done
	:: else -> skip
	fi;
	/* install_fd(): R1 installs the eventfd without a slot, or we take
	 * the poller's and clear ST_QUIET (join_loud(), acq_rel) */
	atomic {
		if
		:: closed -> goto done
		:: !installed -> installed = 1
		:: else ->
#ifndef NO_JOIN_CLEAR
			quiet = 0
#else
			skip
#endif
		fi
	};
	/* R2: smp_mb(); R3: look at ->next again */
	if
	:: next -> drop_orphan(); goto done
	:: else -> skip
	fi;
	/* R4: ppoll() until the eventfd is readable */
	assert(!efd_released);
	efd_count;
	assert(next);	/* woken only once ->next is published */
done:
	assert(next);
	put()
}

/* Reclamation, when all have ended: release what is left (an eventfd the
 * writer's W3 missed); then the eventfd, if any, was released once. */
active proctype cleanup()
{
	(waiters_done == 2 && writer_done);
	atomic {
		if
		:: installed && !closed -> closed = 1; release()	/* close_owned() */
		:: else -> skip
		fi;
		assert(!installed || efd_released);
		assert(efd_count == 0)
	}
}

/* No lost wake-up, as a liveness claim: both waiters finish (run with
 * weak fairness, so that the store buffers drain and each process moves). */
ltl all_waiters_finish { <> (waiters_done == 2) }

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Quiet signals, two writers (src/quiet.c, "Theory of operation - quiet
 * signals"): a cell given up behind which another writer's cell waits.
 * quiet.pml has one writer and one cell; here two writers signal two links
 * through the same poller's ring, and the first may give its cell up.
 * tests/model/README.md maps every step to its line of C.
 *
 * Link 1 has writer A, link 2 writer B. The poller's waiter (a reader's
 * anchor) arms link 1 - installing its eventfd with the poller's slot
 * (ST_QUIET), or joining the blocking reader's, which has none - and parks
 * on it or finds ->next at its R3; once link 1 is reported or read, it
 * moves to link 2 (link 2's reference taken before link 1's put) and arms,
 * parks and waits there. The poller's loop: collect what its epoll set
 * returned (->kick_fd, read back to zero; an eventfd's event, which
 * reports the waiter if it is parked on that link, else is stale), take
 * the ring's cells in order (a descriptor number as such an event, -1
 * skipped), P1 arm, P2 fence, P3 look at the next cell again, and sleep in
 * epoll_wait() until ->kick_fd or a watched eventfd is readable. Its epoll
 * set keeps watching link 1's eventfd once it moved on (recycle.pml).
 * A blocking reader, the joiner, waits on link 1: it installs the eventfd
 * without a slot, or takes the poller's and clears ST_QUIET before its R2,
 * then polls the eventfd.
 *
 * Each writer: W1/W2 (one step), W3; with ST_QUIET, Q1 reserves the next
 * cell, Q2 sets ST_SIGNALED if ST_QUIET and a reference are still there,
 * Q3 fills the cell with the descriptor number or, if Q2 failed, -1, Q4
 * fence, Q5 ->armed and the kick; then, if Q2 failed, the write of the
 * eventfd. A's Q2 fails when the joiner cleared ST_QUIET, or when the
 * waiter found ->next at its R3 and moved on, dropping link 1's last
 * reference: its write then reaches an eventfd that no epoll set of this
 * poller may report, and B's cell, behind A's, must still wake the poller.
 * Q3/Q4/Q5 against P1/P2/P3 is modelled with x86-TSO store buffers, as in
 * quiet.pml; the state word's read-modify-writes are atomic steps.
 * Two cells, one per writer: laps, a full ring, and recycled descriptor
 * numbers are not modelled (quiet.pml has the full ring, recycle.pml the
 * recycling).
 *
 * Checked, exhaustively:
 *  - no lost wake-up: the poller's waiter is reported on link 2 and the
 *    blocking reader returns (a poller asleep when everything else has
 *    ended - with a filled cell in its ring, say - is an invalid end
 *    state; ltl all_waiters_finish under weak fairness);
 *  - a report, from the ring or from an eventfd, and the blocking
 *    reader's return come only once that link's ->next is published;
 *  - a descriptor released without the reset read was never written; each
 *    is released once, and in the end; a writer writes one only before its
 *    release (assertions).
 *
 * -DNO_GIVEUP_KICK: a writer whose Q2 failed fills its cell with -1 and
 * writes its eventfd without Q4 and Q5 (the bug of the first version).
 * -DNO_GIVEUP_Q4: the give-up checks ->armed without the fence first.
 * -DNO_GIVEUP_FILL: the cell given up is never filled. make verify checks
 * that spin catches each of them.
 */
/* verify-mutants: NO_GIVEUP_KICK NO_GIVEUP_Q4 NO_GIVEUP_FILL */

/* The links, 1 and 2 (index 0 unused): ->next, ->signal_done, and their
 * ->state's fields. Each has one eventfd, whose number is the link's. */
bit next[3];
bit writer_done[3];
bit installed[3];	/* the eventfd field is set */
bit quiet[3];		/* ST_QUIET: the poller's slot */
bit signalled[3];	/* ST_SIGNALED */
bit closed[3];		/* ST_CLOSED */
byte refs[3];		/* link 1: the waiter and the joiner; link 2: 0 */

/* The eventfds: their counters, released (reset and pooled, or closed). */
bit efd_count[3];
bit efd_released[3];
/* The poller's epoll set: watches an eventfd; an edge of it queued. */
bit watched[3];
bit efd_event[3];
byte parked;		/* the link whose entry holds the waiter, or 0 */

/* The poller's ring: two cells (cell[2] stays empty), and its side. */
#define EMPTY		0	/* 1, 2: that link's descriptor number */
#define GIVEN_UP	3	/* -1: a reservation given up */
byte cell[3];		/* ->seq and ->fd, as memory shows them */
byte enq;		/* ->enq */
byte deq;		/* ->deq */
byte buf_val[3];	/* writer l's Q3 store, still in its store buffer */
byte buf_pos[3];	/* ... and the cell it is for */
bit armed;		/* ->armed, as memory shows it */
bit armed_buf;		/* P1's store, still in the poller's store buffer */
bit kick;		/* ->kick_fd readable */

byte waiters_done;

/* The store buffers drain at some point, unless a barrier forces it. */
inline drain(l)
{
	atomic { buf_val[l] != EMPTY -> cell[buf_pos[l]] = buf_val[l]; buf_val[l] = EMPTY }
}

proctype writer_buffer(byte l)
{
end:	drain(l)
}

proctype poller_buffer()
{
end:	do
	:: atomic { armed_buf -> armed = 1; armed_buf = 0 }
	od
}

/* __eventbuf_fd_release(): the reset read only for a written eventfd
 * (ST_SIGNALED without ST_QUIET); one released without it must read 0. */
inline release(l)
{
	assert(!efd_released[l]);
	if
	:: signalled[l] && !quiet[l] -> efd_count[l] = 0	/* fd_reset() */
	:: else -> assert(efd_count[l] == 0)		/* never written */
	fi;
	efd_released[l] = 1
}

/* unref(): release when the last reference goes and nobody can wait any
 * more (signalled, or the writer is done). */
inline put(l)
{
	atomic {
		refs[l]--;
		if
		:: refs[l] == 0 && installed[l] && !closed[l] &&
		   (signalled[l] || writer_done[l]) -> closed[l] = 1; release(l)
		:: else -> skip
		fi
	}
}

/* R3 found ->next: drop_orphan() */
inline drop_orphan(l)
{
	atomic {
		if
		:: writer_done[l] && installed[l] && !signalled[l] && !closed[l] ->
			closed[l] = 1; release(l)
		:: else -> skip
		fi
	}
}

/* Q4 and Q5 */
inline fence_and_kick(l)
{
	/* Q4: smp_mb(): the buffer drains first */
	(buf_val[l] == EMPTY);
	/* Q5: load ->armed; if set, exchange it for 0 (a locked
	 * instruction: the buffer drains first), write ->kick_fd */
	if
	:: armed ->
		atomic { buf_val[l] == EMPTY -> ex = armed; armed = 0 };
		if
		:: ex -> kick = 1
		:: else -> skip
		fi
	:: else -> skip
	fi
}

/* __eventbuf_signal() and __eventbuf_signal_waiters() for link l */
inline signal(l)
{
	/* W1: store ->next; W2: smp_mb() (one step, see quiet.pml) */
	next[l] = 1;
	/* W3: load ->state */
	atomic { f = installed[l]; q = quiet[l] };
	if
	:: !f -> goto w5
	:: else -> skip
	fi;
	if
	:: q ->
		/* Q1: ring_reserve() */
		atomic { pos = enq; enq++ };
		/* Q2: mark_signalled(), a compare-and-swap that expects
		 * ST_QUIET and a reference */
		atomic {
			if
			:: quiet[l] && refs[l] > 0 -> signalled[l] = 1; ok = 1
			:: else -> ok = 0
			fi
		};
		/* Q3: ring_fill(), a release store: buffered. Our descriptor
		 * number, or -1 if Q2 failed. */
		if
		:: ok -> buf_pos[l] = pos; buf_val[l] = l
		:: else ->
#ifndef NO_GIVEUP_FILL
			buf_pos[l] = pos; buf_val[l] = GIVEN_UP;
#endif
#ifdef NO_GIVEUP_KICK
			goto write;
#endif
#ifdef NO_GIVEUP_Q4
			goto q5;
#endif
			skip
		fi;
		fence_and_kick(l);
		if
		:: ok -> goto w5
		:: else -> goto write
		fi
	:: else -> skip
	fi;
#ifdef NO_GIVEUP_Q4
q5:
	/* Q5 without Q4: ->armed may be loaded before the fill is seen */
	if
	:: armed ->
		atomic { buf_val[l] == EMPTY -> ex = armed; armed = 0 };
		if
		:: ex -> kick = 1
		:: else -> skip
		fi
	:: else -> skip
	fi;
#endif
write:
	/* W4: write(fd), which every epoll set that watches it sees (the
	 * eventfd's lock, a locked instruction: the buffer drains first) */
	assert(installed[l] && !efd_released[l]);
	atomic {
		buf_val[l] == EMPTY ->
		efd_count[l] = 1;
		if
		:: watched[l] -> efd_event[l] = 1
		:: else -> skip
		fi
	};
	/* ... then the compare-and-swap: ST_SIGNALED, ST_QUIET cleared (it
	 * was written), ST_CLOSED and the release if nobody holds the link */
	atomic {
		signalled[l] = 1;
		quiet[l] = 0;
		if
		:: refs[l] == 0 && !closed[l] -> closed[l] = 1; release(l)
		:: else -> skip
		fi
	};
w5:
	/* W5: ->signal_done = 1 */
	writer_done[l] = 1
}

proctype writer(byte l)
{
	bit f, q, ok, ex;
	byte pos;

	signal(l)
}

/* link_fired() for descriptor d: report the waiter if it is parked on
 * link d (its entry's link has a successor), else a stale event */
inline fired(d)
{
	if
	:: parked == d -> assert(next[d]); parked = 0
	:: else -> skip
	fi
}

proctype poller()
{
	byte l = 1;
	byte c;

arm:
	/* __eventbuf_prepare_wait(): cheap early out */
	if
	:: next[l] -> goto read
	:: else -> skip
	fi;
	/* install_fd(): R1 installs the eventfd with our slot; or we join the
	 * blocking reader's, which has none (join_loud(): nothing to clear) */
	atomic {
		if
		:: closed[l] -> goto read
		:: !installed[l] -> installed[l] = 1; quiet[l] = 1
		:: else -> skip
		fi
	};
	/* R2: smp_mb(); R3: look at ->next again */
	if
	:: next[l] -> drop_orphan(l); goto read
	:: else -> skip
	fi;
	/* __eventbuf_poller_park(): the entry holds the waiter; watch the
	 * eventfd (EPOLL_CTL_ADD of a readable one queues it at once) */
	atomic {
		parked = l;
		if
		:: !watched[l] -> watched[l] = 1;
			if
			:: efd_count[l] -> efd_event[l] = 1
			:: else -> skip
			fi
		:: else -> skip
		fi
	};
	/* eventbuf_poller_wait(): ready() collects without waiting first */
	goto collect;
sleep:
	/* collect(): epoll_wait() until the set has an event */
	(kick || efd_event[1] || efd_event[2]);
collect:
	atomic {
		/* take_inbox(): read ->kick_fd back to zero */
		kick = 0;
		/* link_fired() for each eventfd that fired */
		if
		:: efd_event[1] -> efd_event[1] = 0; fired(1)
		:: else -> skip
		fi;
		if
		:: efd_event[2] -> efd_event[2] = 0; fired(2)
		:: else -> skip
		fi
	};
	/* take_quiet(): __eventbuf_quiet_take() - the cells in order */
take:
	if
	:: atomic { cell[deq] != EMPTY -> c = cell[deq]; deq++ };
		if
		:: c != GIVEN_UP -> fired(c)	/* link_fired() */
		:: else -> skip			/* -1: skipped */
		fi;
		goto take
	:: else -> skip
	fi;
	/* __eventbuf_quiet_idle(). P1: store ->armed = 1, buffered */
	armed_buf = 1;
	/* P2: smp_mb(): the buffer drains first */
	(!armed_buf);
	/* P3: the next cell filled meanwhile? Exchange ->armed for 0 (a
	 * locked instruction) and take again */
	if
	:: cell[deq] != EMPTY ->
		atomic { !armed_buf -> armed = 0 };
		goto take
	:: else -> skip
	fi;
	/* eventbuf_poller_wait() returns the report, or sleeps */
	if
	:: parked != 0 -> goto sleep
	:: else -> skip
	fi;
read:
	/* reported, or ->next found: read the link, move on */
	assert(next[l]);
	if
	:: l == 1 ->
		/* move the anchor: link 2's reference first */
		refs[2]++;
		put(1);
		l = 2;
		goto arm
	:: else ->
		atomic { put(2); waiters_done++ }
	fi
}

proctype joiner()
{
	/* __eventbuf_prepare_wait(): cheap early out */
	if
	:: next[1] -> goto done
	:: else -> skip
	fi;
	/* install_fd(): R1 installs the eventfd without a slot, or we take
	 * the poller's and clear ST_QUIET (join_loud(), acq_rel) */
	atomic {
		if
		:: closed[1] -> goto done
		:: !installed[1] -> installed[1] = 1
		:: else -> quiet[1] = 0
		fi
	};
	/* R2: smp_mb(); R3: look at ->next again */
	if
	:: next[1] -> drop_orphan(1); goto done
	:: else -> skip
	fi;
	/* R4: ppoll() until the eventfd is readable */
	assert(!efd_released[1]);
	efd_count[1];
	assert(next[1]);	/* woken only once ->next is published */
done:
	assert(next[1]);
	atomic { put(1); waiters_done++ }
}

/* Reclamation, when all have ended: release what is left (an eventfd a
 * writer's W3 missed); then each eventfd, if any, was released once. */
proctype cleanup()
{
	(waiters_done == 2 && writer_done[1] && writer_done[2]);
	atomic {
		if
		:: installed[1] && !closed[1] -> closed[1] = 1; release(1)
		:: else -> skip
		fi;
		if
		:: installed[2] && !closed[2] -> closed[2] = 1; release(2)
		:: else -> skip
		fi;
		assert(!installed[1] || efd_released[1]);
		assert(!installed[2] || efd_released[2]);
		assert(efd_count[1] == 0 && efd_count[2] == 0)
	}
}

init
{
	atomic {
		refs[1] = 2;	/* the poller's waiter and the joiner */
		run writer_buffer(1); run writer_buffer(2); run poller_buffer();
		run writer(1); run writer(2); run poller(); run joiner();
		run cleanup()
	}
}

/* No lost wake-up, as a liveness claim: both waiters finish (run with
 * weak fairness, so that the store buffers drain and each process moves). */
ltl all_waiters_finish { <> (waiters_done == 2) }

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Quiet signals, two pollers on one link (src/quiet.c, "Theory of
 * operation - quiet signals"): the link's state word has two slots, the
 * installing poller's (ST_QUIET, "slot A") and that of a second poller
 * that joined it (ST_QUIET_B, "slot B"), and its writer signals both
 * pollers' rings instead of writing the eventfd. quiet.pml has one poller
 * and its Dekker pairs in detail; here the slots' state-word protocol is
 * checked against a writer and a third party that clears both.
 * tests/model/README.md maps every step to its line of C.
 *
 * One link, one writer, two pollers (1 and 2), each with one waiter on
 * the link, its own ring and ->kick_fd, and an epoll set that watches the
 * link's eventfd once it parks. Each poller's waiter arms the link: it
 * installs the eventfd with its slot in ST_QUIET, or joins the one another
 * waiter installed (join_loud()): a poller whose slot is in neither field
 * adds it as ST_QUIET_B with a compare-and-swap, when ST_QUIET is set and
 * ST_QUIET_B free, before its R2 fence (two pollers: the third poller,
 * which clears both, is the third party's path). It then parks and runs
 * the poller's loop as in quiet.pml: collect (->kick_fd read back to zero,
 * the eventfd's event), take its ring's cell, P1 arm, P2 fence, P3 look
 * again, sleep in epoll_wait(). A blocking reader, the third party, arms
 * the link too: it installs the eventfd without a slot, or takes the
 * installed one and clears both slots with one fetch_and before its R2
 * (its arrival is unordered with everything else: at any time); it then
 * polls the eventfd.
 *
 * The writer: W1/W2 (one step), W3 loads the state; with ST_QUIET, Q1
 * reserves a cell in the ring of each slot W3 found (either ring may be
 * full - other writers' cells, a nondeterministic choice; the first full
 * one ends the reservations), Q2 sets ST_SIGNALED only if every slot W3
 * found got a cell and both slot fields are as W3 saw them and a
 * reference is held; Q3 fills each reserved cell (the descriptor, or -1
 * when Q2 failed or was skipped), Q4 one fence, Q5 per ring ->armed and
 * the kick; if Q2 failed or was skipped, the eventfd write and the
 * compare-and-swap that sets ST_SIGNALED and clears both slots.
 *
 * Q3's stores sit in the writer's store buffer until they drain, one
 * buffer per cell drained in any order (x86-TSO drains the two in program
 * order: any order is more behaviours, so a pass holds for TSO too); P1's
 * store in its poller's buffer. Everything else is sequentially
 * consistent: W1 and W2 are one step (wake.pml), the read-modify-writes of
 * the state word (R1, the second poller's compare-and-swap, the third
 * party's clear, Q2, the write's compare-and-swap, the puts) are atomic
 * steps, and a joiner's load of the state and its read-modify-write are
 * one step (join_loud()'s loop retries on the current value; ST_QUIET is
 * set only by the installer, and ST_QUIET_B only while ST_QUIET is set,
 * so a load that finds a slot field clear is not followed by a set).
 *
 * Checked, exhaustively:
 *  - no lost wake-up: both pollers report their waiters and the blocking
 *    reader returns (a waiter asleep when everything else has ended is an
 *    invalid end state; ltl all_waiters_finish under weak fairness);
 *  - a report, from a ring or from the eventfd, and the blocking reader's
 *    return come only once ->next is published (assertions);
 *  - a descriptor released without the reset read (ST_SIGNALED with a
 *    slot set, src/fdpool.c) was never written, every released descriptor
 *    reads zero, and the writer writes it only before its release;
 *  - the eventfd is released once, and in the end;
 *  - a slot set means every waiter on the link is one of those pollers'
 *    (quiet.c, "Which links"): the blocking reader finds both slots clear
 *    when it goes to sleep on the eventfd.
 *
 * One cell per ring; laps, positions and recycled descriptor numbers are
 * not modelled (quiet.pml, quiet2.pml, recycle.pml).
 *
 * -DB_STORE_AFTER_R3: the second poller adds its slot with a plain store
 * after its R3, not a read-modify-write before R2. -DB_RMW_AFTER_R3: with
 * the compare-and-swap, but after R3 (the order alone: a lost wake-up).
 * -DFALLBACK_CLEARS_ONLY_A: the write's compare-and-swap clears ST_QUIET
 * alone. -DTHIRD_CLEARS_ONLY_A: the blocking reader clears ST_QUIET alone
 * (a writer's quiet path needs ST_QUIET, so only the slot invariant above
 * catches it). make verify checks that spin catches each of them.
 *
 * -DQ2_ONLY_A, Q2 expecting ST_QUIET alone as W3 saw it, is not caught,
 * and is not listed: a slot B added after W3 loaded the state was added
 * before the second poller's R2, so by the W2/R2 pair its R3 finds ->next
 * and it does not wait (quiet.pml's Q2 that ignores ST_QUIET passes too).
 * Q2's check of the slots is a second line, not one the wake-up needs.
 */
/* verify-mutants: B_STORE_AFTER_R3 B_RMW_AFTER_R3 FALLBACK_CLEARS_ONLY_A THIRD_CLEARS_ONLY_A */

/* The link: ->next, ->signal_done, and its ->state's fields. There is one
 * eventfd: whoever installs it first, it is this one (the loser of the
 * install race gives its own back, which wake.pml models). */
bit next;
bit writer_done;
bit installed;		/* the eventfd field is set */
byte qa;		/* ST_QUIET: 0, or the installing poller, 1 or 2 */
byte qb;		/* ST_QUIET_B: 0, or the poller that added its slot */
bit signalled;		/* ST_SIGNALED */
bit closed;		/* ST_CLOSED */
byte refs = 3;		/* the two pollers' waiters and the blocking reader */

/* The eventfd: its counter, released (reset and pooled, or closed). */
bit efd_count;
bit efd_released;

/* Per poller (index 1, 2; 0 unused): its epoll set, and its ring of one
 * cell, as in quiet.pml. */
#define EMPTY		0
#define FILLED		1	/* the link's descriptor number */
#define GIVEN_UP	2	/* -1: a reservation given up */
bit watched[3];		/* the epoll set watches the eventfd */
bit efd_event[3];	/* ... and an edge of it is queued */
byte cell[3];		/* ->seq and ->fd, as memory shows them */
byte cell_buf[3];	/* Q3's store, still in the writer's store buffer */
bit deq[3];		/* the poller has taken the cell */
bit armed[3];		/* ->armed, as memory shows it */
bit armed_buf[3];	/* P1's store, still in the poller's store buffer */
bit kick[3];		/* ->kick_fd readable */

byte waiters_done;

/* The store buffers drain at some point, unless a barrier forces it. */
proctype writer_buffer(byte p)
{
end:	(cell_buf[p] != EMPTY) -> atomic { cell[p] = cell_buf[p]; cell_buf[p] = EMPTY }
}

proctype poller_buffer(byte p)
{
end:	do
	:: atomic { armed_buf[p] -> armed[p] = 1; armed_buf[p] = 0 }
	od
}

/* __eventbuf_fd_release(): the reset read only for a written eventfd
 * (ST_SIGNALED and neither slot); one released without it must read 0. */
inline release()
{
	assert(!efd_released);
	if
	:: signalled && qa == 0 && qb == 0 -> efd_count = 0	/* fd_reset() */
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

/* Q5 for ring r: load ->armed; if set, exchange it for 0 (a locked
 * instruction: the buffer drains first), write ->kick_fd (announce()) */
inline announce(r)
{
	if
	:: armed[r] ->
		atomic {
			cell_buf[1] == EMPTY && cell_buf[2] == EMPTY ->
			ex = armed[r]; armed[r] = 0
		};
		if
		:: ex -> kick[r] = 1
		:: else -> skip
		fi
	:: else -> skip
	fi
}

active proctype writer()
{
	bit f, ok, ex, ra, rb;
	byte sa, sb;

	/* W1: store ->next; W2: smp_mb() (one step, see above) */
	next = 1;
	/* W3: load ->state */
	atomic { f = installed; sa = qa; sb = qb };
	if
	:: !f -> goto w5
	:: else -> skip
	fi;
	if
	:: sa != 0 ->
		/* Q1: ring_reserve() in each slot's ring, slot A first; the
		 * first full ring (or slot without one) ends the loop */
		if
		:: skip			/* ring sa full */
		:: ra = 1;
			if
			:: sb != 0 ->
				if
				:: skip		/* ring sb full */
				:: rb = 1
				fi
			:: else -> skip
			fi
		fi;
		/* Q2: mark_signalled(), only with every slot's cell: a
		 * compare-and-swap that expects both slot fields as W3 saw
		 * them, and a reference */
		atomic {
			if
			:: ra && (sb == 0 || rb) &&
#ifndef Q2_ONLY_A
			   qa == sa && qb == sb &&
#else
			   qa == sa &&
#endif
			   refs > 0 -> signalled = 1; ok = 1
			:: else -> ok = 0
			fi
		};
		/* Q3: ring_fill() of each reserved cell, a release store:
		 * buffered. The descriptor number, or -1 */
		if
		:: ra && ok -> cell_buf[sa] = FILLED
		:: ra && !ok -> cell_buf[sa] = GIVEN_UP
		:: else -> skip
		fi;
		if
		:: rb && ok -> cell_buf[sb] = FILLED
		:: rb && !ok -> cell_buf[sb] = GIVEN_UP
		:: else -> skip
		fi;
		/* Q4: smp_mb(): the buffer drains first */
		(cell_buf[1] == EMPTY && cell_buf[2] == EMPTY);
		/* Q5, per reserved ring */
		if
		:: ra -> announce(sa)
		:: else -> skip
		fi;
		if
		:: rb -> announce(sb)
		:: else -> skip
		fi;
		if
		:: ok -> goto w5
		:: else -> skip	/* given up: the write */
		fi
	:: else -> skip
	fi;
	/* W4: write(fd), which every epoll set that watches it sees (the
	 * eventfd's lock, a locked instruction: the buffer drains first) */
	assert(installed && !efd_released);
	atomic {
		cell_buf[1] == EMPTY && cell_buf[2] == EMPTY ->
		efd_count = 1;
		if
		:: watched[1] -> efd_event[1] = 1
		:: else -> skip
		fi;
		if
		:: watched[2] -> efd_event[2] = 1
		:: else -> skip
		fi
	};
	/* ... then the compare-and-swap: ST_SIGNALED, both slots cleared (it
	 * was written), ST_CLOSED and release if nobody holds the link */
	atomic {
		signalled = 1;
		qa = 0;
#ifndef FALLBACK_CLEARS_ONLY_A
		qb = 0;
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

proctype poller(byte p)
{
	bit taken_filled, add_late;

	/* __eventbuf_prepare_wait(): cheap early out */
	if
	:: next -> goto done
	:: else -> skip
	fi;
	/* install_fd(): R1 installs the eventfd with our slot; or we join
	 * the one installed (join_loud()): a poller's, whose slot field is
	 * not ours, with ST_QUIET_B free: add our slot (compare-and-swap,
	 * acq_rel); the blocking reader's (no slot): nothing */
	atomic {
		if
		:: closed -> goto done
		:: !installed -> installed = 1; qa = p
		:: installed && qa != 0 && qa != p && qb == 0 ->
#if !defined(B_STORE_AFTER_R3) && !defined(B_RMW_AFTER_R3)
			qb = p
#else
			add_late = 1
#endif
		:: else -> skip
		fi
	};
	/* R2: smp_mb(); R3: look at ->next again */
	if
	:: next -> drop_orphan(); goto done
	:: else -> skip
	fi;
#ifdef B_STORE_AFTER_R3
	/* a plain store of our slot after R3, decided on install_fd()'s
	 * load (the store of a stale word's other fields is not modelled) */
	if
	:: add_late -> qb = p
	:: else -> skip
	fi;
#endif
#ifdef B_RMW_AFTER_R3
	/* join_loud()'s compare-and-swap, but after R3 */
	if
	:: atomic { add_late && qa != 0 && qb == 0 -> qb = p }
	:: else -> skip
	fi;
#endif
	/* __eventbuf_poller_park(): watch (EPOLL_CTL_ADD of a readable
	 * eventfd queues it at once) */
	atomic {
		watched[p] = 1;
		if
		:: efd_count -> efd_event[p] = 1
		:: else -> skip
		fi
	};
	/* eventbuf_poller_wait(): ready() collects without waiting first */
	goto collect;
sleep:
	/* collect(): epoll_wait() until the set has an event */
	(kick[p] || efd_event[p]);
collect:
	atomic {
		/* take_inbox(): read ->kick_fd back to zero */
		if
		:: kick[p] -> kick[p] = 0
		:: else -> skip
		fi;
		/* link_fired(): the eventfd fired; report if ->next is there */
		if
		:: efd_event[p] -> efd_event[p] = 0; assert(next); goto done
		:: else -> skip
		fi
	};
	/* take_quiet(): __eventbuf_quiet_take() */
take:
	if
	:: atomic { !deq[p] && cell[p] != EMPTY -> deq[p] = 1;
		    taken_filled = (cell[p] == FILLED) };
		if
		:: taken_filled ->
			assert(next);	/* link_fired() reports */
			goto done
		:: else -> goto take	/* -1: skipped */
		fi
	:: else -> skip
	fi;
	/* __eventbuf_quiet_idle(). P1: store ->armed = 1, buffered */
	armed_buf[p] = 1;
	/* P2: smp_mb(): the buffer drains first */
	(!armed_buf[p]);
	/* P3: the cell filled meanwhile? Exchange ->armed for 0 (a locked
	 * instruction) and take again */
	if
	:: !deq[p] && cell[p] != EMPTY ->
		atomic { !armed_buf[p] -> armed[p] = 0 };
		goto take
	:: else -> skip
	fi;
	goto sleep;
done:
	assert(next);
	put()
}

active proctype third()
{
	/* __eventbuf_prepare_wait(): cheap early out */
	if
	:: next -> goto done
	:: else -> skip
	fi;
	/* install_fd(): R1 installs the eventfd without a slot, or we take
	 * the installed one and clear both slots (join_loud(): one
	 * fetch_and, acq_rel) */
	atomic {
		if
		:: closed -> goto done
		:: !installed -> installed = 1
		:: else ->
			qa = 0;
#ifndef THIRD_CLEARS_ONLY_A
			qb = 0
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
	/* R4: ppoll() until the eventfd is readable. We wait on the eventfd
	 * alone: no slot may say otherwise (quiet.c, "Which links") */
	assert(!efd_released);
	assert(qa == 0 && qb == 0);
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
	(waiters_done == 3 && writer_done);
	atomic {
		if
		:: installed && !closed -> closed = 1; release()	/* close_owned() */
		:: else -> skip
		fi;
		assert(!installed || efd_released);
		assert(efd_count == 0)
	}
}

init
{
	atomic {
		run writer_buffer(1); run writer_buffer(2);
		run poller_buffer(1); run poller_buffer(2);
		run poller(1); run poller(2)
	}
}

/* No lost wake-up, as a liveness claim: all three waiters finish (run
 * with weak fairness, so that the store buffers drain and each process
 * moves). */
ltl all_waiters_finish { <> (waiters_done == 3) }

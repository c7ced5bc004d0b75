/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Kept descriptors (src/fdpool.c, "Kept descriptors"): a reader that hands
 * its link's eventfd to its caller (eventbuf_reader_wait_fd()) keeps it for
 * its next link when nobody else ever took it from the link (ST_PRIVATE).
 * tests/model/README.md maps every step to its line of C.
 *
 * Two links, each with its own writer. Reader R arms link 1 (its caller's
 * epoll set watches the descriptor, edge-triggered), reads link 1 after a
 * wake-up or without one, then parks on link 2: its put of link 1 keeps
 * the descriptor when it releases it and the link is still private -
 * decided in the compare-and-swap, once the link is signalled, or before
 * that, when a read of the descriptor finds the writer's write (a reader
 * woken on the writer's CPU runs before the writer's compare-and-swap)
 * and a compare-and-swap finds the state the read was decided on (else
 * the read is written back).
 * R then installs the kept descriptor on link 2, which its caller's set
 * already watches. J, another holder of link 1 whose epoll set keeps
 * watching a descriptor after it moved on (a second exporting reader, a
 * poller), may take link 1's descriptor too, and then moves on. Link 1's
 * writer may be anywhere in W3..W5 all the while; link 2's writer does W3
 * to W5 in one step.
 *
 * Checked, exhaustively:
 *  - no write on behalf of an old link: a writer writes its descriptor
 *    only while it is installed on its link (assertion in W4), and nothing
 *    is released twice (assertion in release);
 *  - a set that moved on is never woken for another link: once J has let
 *    go of link 1, no write for link 2 reaches a descriptor J's set still
 *    watches (assertion in W4);
 *  - no stale wake-up carried over: a kept descriptor reads zero when it
 *    is installed on the next link (assertion);
 *  - no missed wake-up: R and J finish (invalid end states; ltl
 *    both_finish under weak fairness);
 *  - in the end every descriptor is closed and R keeps none.
 *
 * The model is sequentially consistent, so a reference J takes is seen by
 * R's first look at the state word. The C's exact compare-and-swap and
 * write-back also cover a first look that misses it (which C11 allows,
 * and x86 and ARMv8 do not): here they are reached when the writer's
 * compare-and-swap comes between R's read and R's, and are no mutant.
 *
 * As in recycle.pml, the epoll sets are modelled coarsely in one
 * direction: a queued event is returned even if the descriptor was read
 * back to zero since, which can only add stale events; descriptor numbers
 * are not reused (wake.pml and recycle.pml cover closing and pooling).
 *
 * -DNO_SHARE: J does not clear ST_PRIVATE when it takes the descriptor.
 * -DKEEP_UNWRITTEN: R keeps the descriptor at its last put without seeing
 * ST_SIGNALED or the write. -DNO_CLOSED_CHECK: the writer's
 * compare-and-swap releases a descriptor that R has kept. -DNO_KEEP_RESET:
 * R keeps a signalled descriptor without reading it back to zero. make
 * verify checks that spin catches each of them.
 */
/* verify-mutants: NO_SHARE KEEP_UNWRITTEN NO_CLOSED_CHECK NO_KEEP_RESET */

#define NFD 4			/* descriptors 1..3 (0: none) */

/* Links 1 and 2 (index 0 unused); ->state's fields, ->next, ->signal_done */
bit next[3];
byte fd[3];
bit signalled[3];
bit closed[3];
bit private[3];
byte refs[3];
bit writer_done[3];

/* Descriptors: the eventfd counter, the link it is installed on (0:
 * none), open or closed. */
bit efd_count[NFD];
byte efd_owner[NFD];
bit efd_open[NFD];
byte nfds;

/* The epoll sets of R's caller and of J: watched, queued. */
bit r_watch[NFD];
bit r_queued[NFD];
bit j_watch[NFD];
bit j_queued[NFD];
bit j_gone;			/* J has let go of link 1 */

byte kept;			/* R's kept descriptor (0: none) */
bit r_done;
bit j_done;

/* A descriptor is closed: it leaves every epoll set. */
inline close_fd(m)
{
	assert(efd_open[m]);
	efd_open[m] = 0;
	efd_owner[m] = 0;
	r_watch[m] = 0;
	r_queued[m] = 0;
	j_watch[m] = 0;
	j_queued[m] = 0
}

/* __eventbuf_fd_release() of an exported descriptor: closed. */
inline release(l)
{
	assert(fd[l] != 0 && efd_owner[fd[l]] == l);
	close_fd(fd[l])
}

/* W4: write(fd); a write wakes the epoll sets that watch it. */
inline write_fd(l, g)
{
	assert(efd_owner[g] == l);	/* not kept for another link yet */
	efd_count[g] = 1;
	if
	:: r_watch[g] -> r_queued[g] = 1
	:: else -> skip
	fi;
	if
	:: j_watch[g] -> assert(!(j_gone && l != 1)); j_queued[g] = 1
	:: else -> skip
	fi
}

/* W4's compare-and-swap: ST_SIGNALED, and ST_CLOSED if unheld; release
 * only if this step closed it (R may have kept it already). */
inline set_signalled(l)
{
	signalled[l] = 1;
	if
#ifndef NO_CLOSED_CHECK
	:: refs[l] == 0 && !closed[l] -> closed[l] = 1; release(l)
#else
	:: refs[l] == 0 -> closed[l] = 1; release(l)
#endif
	:: else -> skip
	fi
}

proctype writer1()
{
	byte g;

	/* W1, W2: publish ->next, full barrier (wake.pml has the rest) */
	next[1] = 1;
	/* W3: load ->state */
	g = fd[1];
	if
	:: g != 0 ->
		atomic { write_fd(1, g) };
		atomic { set_signalled(1) }
	:: else -> skip
	fi;
	/* W5: ->signal_done = 1 */
	atomic { g = 0; writer_done[1] = 1 }
}

proctype writer2()
{
	byte g;

	next[2] = 1;
	atomic {
		g = fd[2];
		if
		:: g != 0 -> write_fd(2, g); set_signalled(2)
		:: else -> skip
		fi;
		g = 0;
		writer_done[2] = 1
	}
}

/* unref() of a holder that keeps nothing: release if it was the last
 * reference and the writer is done with the descriptor. */
inline put(l)
{
	refs[l]--;
	if
	:: refs[l] == 0 && fd[l] != 0 && !closed[l] &&
	   (signalled[l] || writer_done[l]) ->
		closed[l] = 1; release(l)
	:: else -> skip
	fi
}

/* The link has a successor after R2: drop_orphan(), then read. */
inline drop_orphan(l)
{
	atomic {
		if
		:: writer_done[l] && !signalled[l] && !closed[l] && fd[l] != 0 ->
			closed[l] = 1; release(l)
		:: else -> skip
		fi
	}
}

/*
 * R: install_fd() and the rest of __eventbuf_prepare_wait() for link @l,
 * with ST_PRIVATE, taking the kept descriptor first. Leaves f set to the
 * descriptor to wait on, or 0 when the link has a successor already.
 */
inline r_arm(l)
{
	f = 0;
	if
	:: next[l] -> skip			/* cheap early out */
	:: else ->
		atomic {
			/* create_fd(): the kept one, else a new one */
			if
			:: kept != 0 ->
				mine = kept; kept = 0; was_kept = 1;
				assert(efd_count[mine] == 0 &&
				       efd_owner[mine] == 0)
			:: else ->
				nfds++; mine = nfds; assert(mine < NFD);
				efd_open[mine] = 1; was_kept = 0
			fi
		};
		if
		:: next[l] ->			/* second look */
			atomic {
				if
				:: was_kept -> kept = mine	/* still the last */
				:: else -> close_fd(mine)
				fi;
				mine = 0
			}
		:: else ->
			/* R1: nobody else installs on R's links (J only
			 * joins), so the compare-and-swap wins */
			atomic {
				assert(fd[l] == 0);
				fd[l] = mine; efd_owner[mine] = l;
				private[l] = 1; f = mine; mine = 0
			};
			/* R2, R3 */
			if
			:: next[l] -> drop_orphan(l); f = 0
			:: else ->
				/* the caller adds it unless its set watches
				 * it already (wait_fd() returned 0); added
				 * while readable, it is queued at once */
				atomic {
					if
					:: !r_watch[f] ->
						r_watch[f] = 1;
						r_queued[f] = efd_count[f]
					:: else -> skip
					fi
				}
			fi
		fi
	fi
}

/* R's caller: epoll_wait() until a wake-up for a link with a successor,
 * or a read without waiting once there is one. */
inline r_wait(l)
{
	do
	:: f == 0 -> break
	:: atomic { r_queued[f] -> r_queued[f] = 0 };
		if
		:: next[l] -> break
		:: else -> skip		/* stale: look, find nothing */
		fi
	:: next[l] -> break
	od
}

proctype reader_r()
{
	byte f, mine;
	bit was_kept, written;

	r_arm(1);
	r_wait(1);
	assert(next[1]);
	f = 0;
	/* park on link 2: a reference on the tip, then the put of link 1 */
	atomic { refs[2]++ };
	/* __eventbuf_put_keep_fd(): private, unsignalled and ours alone:
	 * read the descriptor to see whether the writer has written it */
	atomic {
		if
		:: private[1] && !signalled[1] && !closed[1] && refs[1] == 1 &&
		   fd[1] != 0 ->
#ifndef KEEP_UNWRITTEN
			written = efd_count[fd[1]];
#else
			written = 1;
#endif
			efd_count[fd[1]] = 0
		:: else -> written = 0
		fi
	}
	/* keep_written(): close from exactly the state decided on, or
	 * write back what was read and put as usual */
	if
	:: written ->
		atomic {
			if
			:: refs[1] == 1 && private[1] && !signalled[1] &&
			   !closed[1] ->
				refs[1] = 0; closed[1] = 1;
				kept = fd[1]; efd_owner[kept] = 0
			:: else -> write_fd(1, fd[1]); written = 0
			fi
		}
	:: else -> skip
	fi;
	/* unref_keep(): the compare-and-swap, unless kept above; it keeps
	 * a signalled private descriptor, reset */
	if
	:: written -> skip
	:: else ->
		atomic {
			refs[1]--;
			if
			:: refs[1] == 0 && fd[1] != 0 && !closed[1] &&
			   (signalled[1] || writer_done[1]) ->
				closed[1] = 1;
				if
				:: private[1] && signalled[1] ->
					kept = fd[1];
#ifndef NO_KEEP_RESET
					efd_count[kept] = 0;
#endif
					efd_owner[kept] = 0
				:: else -> release(1)
				fi
			:: else -> skip
			fi
		}
	fi;
	r_arm(2);
	r_wait(2);
	assert(next[2]);
	/* eventbuf_reader_free() closes a kept descriptor */
	atomic {
		f = 0;
		if
		:: kept != 0 -> close_fd(kept); kept = 0
		:: else -> skip
		fi;
		r_done = 1; put(2)
	}
}

/* J: holds link 1, may take its descriptor into its own set, moves on. */
proctype holder_j()
{
	byte g;

	/* J takes the descriptor R installed, once there is one (it joins:
	 * an installer of its own would not set ST_PRIVATE) */
	if
	:: atomic { fd[1] != 0 && !closed[1] && !next[1] ->
		g = fd[1];
#ifndef NO_SHARE
		private[1] = 0;		/* share_fd() */
#endif
		j_watch[g] = 1; j_queued[g] = efd_count[g] }
		do
		:: atomic { j_queued[g] -> j_queued[g] = 0 };
			if
			:: next[1] -> break
			:: else -> skip
			fi
		:: next[1] -> break
		od
	:: skip			/* or never waits on link 1 */
	fi;
	atomic { g = 0; j_gone = 1; put(1); j_done = 1 }
}

/* Reclamation: what is left of link 1 once nobody holds it and its writer
 * is done, of link 2 once all have ended; then nothing is open. */
proctype reclaim()
{
	byte i;

	(writer_done[1] && refs[1] == 0);
	atomic {
		if
		:: fd[1] != 0 && !closed[1] -> closed[1] = 1; release(1)
		:: else -> skip
		fi
	}
	(r_done && j_done && writer_done[2] && refs[2] == 0);
	atomic {
		if
		:: fd[2] != 0 && !closed[2] -> closed[2] = 1; release(2)
		:: else -> skip
		fi;
		assert(kept == 0);
		i = 1;
		do
		:: i < NFD -> assert(!efd_open[i]); i++
		:: else -> break
		od
	}
}

init
{
	atomic {
		refs[1] = 2;	/* R and J */
		run writer1(); run writer2(); run reader_r(); run holder_j();
		run reclaim()
	}
}

/* No missed wake-up, as a liveness claim (under weak fairness). */
ltl both_finish { <> (r_done && j_done) }

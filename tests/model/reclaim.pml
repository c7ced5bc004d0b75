/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * References, pins and reclamation (src/reclaim.c, src/buffer.c): a buffer
 * whose writer appends two items after its sentinel, the pin chain moving
 * its pin a grace period at a time, a reader that takes the head under
 * rcu_read_lock() and then walks forward moving its one reference, and the
 * walks that free what nobody holds. tests/model/README.md maps every step
 * to its line of C.
 *
 * Checked, exhaustively:
 *  - nothing is used after it was freed, and nothing is freed twice
 *    (assertions in get, the writer's signal, and free);
 *  - an item is freed only when nobody holds it and it is neither pinned
 *    nor after a live item (the ownership rule);
 *  - everything is freed in the end, once the buffer is dropped and the
 *    reader has let go (the final assertion).
 *
 * -DNO_WRITER_RS drops the read-side section around the writer's publish
 * and signal: spin must find the use-after-free that review found (the
 * chain pins the new item and frees the old one under the signal).
 * -DNO_GP makes the chain skip its grace period: spin must find a head
 * taken after it was freed.
 */
/* verify-mutants: NO_WRITER_RS NO_GP */

#define N 3			/* items 0 (the sentinel), 1, 2 */

byte refs[N];
bit root[N], pinned[N], freed[N], published[N];
byte head, last_own;

bit reader_rs, writer_rs;	/* inside rcu_read_lock() */
bit writer_done, dropped, reader_done, head_taken;

/* A grace period: every read-side section that had begun has ended. */
inline grace_period()
{
	(!reader_rs);
	(!writer_rs)
}

/* walk(): free @i, then own its successor if nobody holds it. */
inline walk(i)
{
	do
	:: atomic {
		assert(!freed[i] && refs[i] == 0 && root[i] && !pinned[i]);
		freed[i] = 1;
		/* inherit_root(next) */
		if
		:: i + 1 < N && published[i + 1] ->
			i++;
			root[i] = 1;
			if
			:: refs[i] == 0 && !pinned[i] -> skip	/* ours: go on */
			:: else -> break
			fi
		:: else -> break
		fi
	   }
	od
}

inline get(i)
{
	atomic { assert(!freed[i]); refs[i]++ }
}

/* unref(): the last holder of a ROOT, unpinned item owns it. */
inline put(i, owned)
{
	atomic {
		refs[i]--;
		owned = refs[i] == 0 && root[i] && !pinned[i]
	}
	if
	:: owned -> walk(i)
	:: else -> skip
	fi
}

inline unpin(i, owned)
{
	atomic {
		pinned[i] = 0;
		owned = refs[i] == 0 && root[i]
	}
	if
	:: owned -> walk(i)
	:: else -> skip
	fi
}

proctype writer()
{
	byte old, k = 1;

	do
	:: k < N ->
#ifndef NO_WRITER_RS
		writer_rs = 1;
#endif
		old = head;
		atomic { published[k] = 1; head = k; last_own = k };
		/* __eventbuf_signal(old): reads old's state, writes its done */
		assert(!freed[old]);
		writer_rs = 0;
		k++
	:: else -> break
	od;
	writer_done = 1;
	/* eventbuf_drop(): the caller's rule - no eventbuf_head() on the
	 * buffer may follow or overlap it - so after the reader's head */
	(head_taken);
	dropped = 1
}

/* pin_step(), one call_rcu() callback after another. */
proctype pin_chain()
{
	byte pin = 0, prev = N, last, owned, i;
	bit final;

	do
	:: true ->
#ifndef NO_GP
		grace_period();
#endif
		if
		:: prev != N -> i = prev; unpin(i, owned); prev = N
		:: else -> skip
		fi;
		if
		:: dropped && !final -> final = 1	/* one more period */
		:: dropped && final ->
			i = pin; unpin(i, owned); break
		:: !dropped ->
			last = last_own;
			if
			:: last != pin ->
				pinned[last] = 1; prev = pin; pin = last
			:: else -> skip	/* (caught up: it would stop and be kicked) */
			fi
		fi
	od
}

/* eventbuf_head(), then a reader moving its reference forward. */
proctype reader()
{
	byte h, next, owned;

	reader_rs = 1;
	h = head;
	get(h);
	reader_rs = 0;
	head_taken = 1;
	do
	:: h + 1 < N && published[h + 1] ->
		next = h + 1;
		get(next);	/* safe: h is held, so next is alive */
		put(h, owned);
		h = next
	:: else -> break
	od;
	put(h, owned);
	reader_done = 1
}

proctype final_check()
{
	byte i;

	(writer_done && reader_done && dropped);
	/* the chain's last step runs after the drop */
	timeout;
	i = 0;
	do
	:: i < N -> assert(!published[i] && i != 0 || freed[i]); i++
	:: else -> break
	od
}

/* eventbuf_new(): the sentinel, root and pinned, before anyone runs. */
init
{
	atomic {
		root[0] = 1;
		pinned[0] = 1;
		published[0] = 1;
		head = 0;
		last_own = 0;
		run writer();
		run pin_chain();
		run reader();
		run final_check()
	}
}

/* Everything is freed in the end (weak fairness: every process moves). */
ltl everything_freed { <> (freed[0] && freed[1] && freed[2]) }

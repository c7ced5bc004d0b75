// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * DOC: Theory of operation - recycled eventfds
 *
 * Every link that somebody waits on needs an eventfd (wait.c). Creating
 * one, registering it in an epoll set and closing it costs three system
 * calls and a kernel allocation per link; a subscriber of a quiet key
 * parks on a fresh link after every event, so that would be paid per
 * delivery. Instead, when a link is done with its eventfd, the descriptor
 * goes back to a small pool, reset to zero, and the next link that needs
 * one takes it. A poller (poller.c) that watched the descriptor keeps it
 * in its epoll set, so the next link usually arrives with a descriptor
 * the poller already watches.
 *
 * When a link is done with its eventfd. Exactly when the old code closed
 * it: the put, signal or walk that sets ST_CLOSED in the link's state word
 * (reclaim.c, wait.c) calls __eventbuf_fd_release() with that word, once.
 * Setting ST_CLOSED needs one of: the writer signalled the link (the write
 * came before ST_SIGNALED, in the writer's own compare-and-swap), or the
 * writer finished with the link without seeing the eventfd (->signal_done
 * and not signalled: it never will write it), or the item is owned by
 * reclamation; and in every case no reference is left, so nobody polls
 * it through this link. So after release nothing writes the descriptor on
 * behalf of its old link: it carries no old wake-up into its new one.
 *
 * Reset. A signalled eventfd holds a count; release reads it back to zero
 * (a read() that happens before the descriptor is pushed, and so before
 * any link can install it), so its next link starts unreadable. An
 * unsignalled one was never written and needs no read, nor does one
 * signalled quietly (ST_SIGNALED with ST_QUIET, quiet.c).
 *
 * What a recycled descriptor may still carry is a wake-up *already queued*
 * in an epoll ready list that watched it for the old link: an epoll set
 * that consumed nothing since the old write still lists it. Consumers must
 * treat a wake-up as "look", never as "there is something": the readers'
 * blocking waits re-check ->next after poll() returns, and a poller reports
 * a waiter only when its link has a successor (poller.c). So a stale event
 * costs a look, and never hides a new one: the new link's write is a new
 * event for every set that watches the descriptor (eventfd wakes its
 * waiters on every write, and an edge-triggered epoll item is queued again
 * unless it is still queued, in which case the next epoll_wait() reports
 * it after the write).
 *
 * Exported descriptors are never recycled. eventbuf_item_wait_fd() and
 * eventbuf_reader_wait_fd() hand the descriptor to the caller, who may
 * leave it in any epoll set: recycling it would wake that set for an
 * unrelated link for ever after. ST_EXPORTED marks such a link (set by the
 * holder that hands it out, before it drops its reference, so it is in
 * the word that the releasing compare-and-swap sees); its eventfd is
 * closed as before.
 *
 * Kept descriptors. A reader that hands its link's descriptor to its
 * caller (eventbuf_reader_wait_fd()) and is the only one that ever took it
 * from the link keeps it when it moves on, for its next link: the caller's
 * epoll set then watches the same open file, and a delivery costs one
 * read() to reset it instead of a close(), an eventfd() and an epoll_ctl().
 * The installer marks the link ST_PRIVATE in the compare-and-swap that
 * installs the descriptor; anyone else who takes the descriptor from the
 * link - another reader, a poller, eventbuf_item_wait_fd() - clears the
 * bit, before it can drop the reference it holds on the link. The reader's
 * own put then decides, in the compare-and-swap that drops its reference,
 * whether it is the releasing step (no reference left, ST_SIGNALED: the
 * writer is done writing) and whether the bit is still set
 * (__eventbuf_put_keep_fd(), reclaim.c). If both, nobody else ever had the
 * descriptor, nobody can take it from the link any more (ST_CLOSED), and
 * the writer will not write it again: it is the reader's, reset as a
 * release would (__eventbuf_fd_keep()), and carries no old wake-up into
 * the next link, by the argument above. A wake-up already queued in the
 * caller's set is a look that finds nothing, which the reader API's
 * callers already expect. Otherwise the descriptor is released as above,
 * and closed, since it is exported.
 *
 * A reader woken on the writer's CPU runs before the writer's
 * compare-and-swap sets ST_SIGNALED, so the reader's put also keeps the
 * descriptor when a read of it finds the writer's write (its only one)
 * and the state word is still the one it decided on (reclaim.c,
 * keep_written(); otherwise the read is written back); the writer's
 * compare-and-swap then finds ST_CLOSED set and releases nothing.
 * tests/model/keep.pml checks both ways of keeping against a
 * writer anywhere in W3..W5 and a second holder whose epoll set outlives
 * its hold, and catches a holder that does not clear ST_PRIVATE, a keep
 * that does not wait for the write, a writer that releases a kept
 * descriptor, and a keep without the reset.
 *
 * Generations. A poller remembers which descriptors its epoll set
 * watches; once a descriptor is closed, the kernel drops it from every
 * set, and its number may come back as a new eventfd that no set watches.
 * Every close of a library eventfd first increments the generation of its
 * number (fd_gen(), a seq_cst read-modify-write; for the rare number with
 * no slot, the global __eventbuf_fd_epoch instead), and a poller trusts its
 * memory of a registration only while both are what they were when it
 * registered. The new eventfd's number reaches a poller only through the
 * link's state word (installed with a release compare-and-swap after
 * eventfd() returned, itself after the close that freed the number, and
 * loaded with acquire), so a poller that sees the new descriptor sees the
 * increment too. Closing one descriptor thus costs the pollers nothing
 * for the others.
 *
 * tests/model/recycle.pml checks the release, reset, pool and the
 * poller's successor check against a writer still in W3..W5, and catches
 * a release that does not wait for the writer, a release without the
 * reset, and a poller that reports without the check.
 *
 * Descriptors go home. Where a descriptor waits for reuse does not matter
 * to the argument above (any reset descriptor may serve any link); it
 * matters to the cost. A descriptor that comes back to a poller that does
 * not watch it costs an epoll_ctl(), and one that is closed because a
 * pool is full costs a close(), an eventfd() and a registration in every
 * loop that then watches its successor. Both were common while one
 * shared pool of 32 took every release: two loops over 100 keys let
 * go of the old links' descriptors in bursts (the second loop to leave a
 * link releases it, or reclamation's thread does, a grace period later),
 * the pool overflowed, and the first loop made new ones for the next links
 * (0.35 registrations per event, 10,000 subscriptions over 100 keys,
 * docs/pollers.md). So:
 * - a thread that runs a poller claims a *shard* (one of NSHARDS, each
 *   holding up to SHARD_MAX descriptors under its own lock; past NSHARDS
 *   loop threads, the others have none) and keeps a few more in a
 *   thread-local cache (FD_CACHE_MAX), which takes no lock;
 * - a poller that registers a descriptor records its thread's shard in
 *   the descriptor's slot (->home, a hint: relaxed, read by any thread);
 * - a release goes home: to the releasing thread's cache if that is the
 *   home, else to the home shard, whichever thread releases it (the loop
 *   that leaves last, reclamation's thread); a descriptor with no home, or
 *   whose shard is full, goes to the shared pool (FD_POOL_MAX), or is
 *   closed when that is full too;
 * - a link takes the caller's cache, then its shard, then the shared pool,
 *   then another loop's shard (two loops that serve the same keys watch
 *   the same descriptors, and the loop that arms the next links first
 *   would otherwise make new ones while the other loop's shard fills; a
 *   thread without a shard, a blocking reader's, would make new ones
 *   while those it made and a loop released piled up in the loop's
 *   shard), and only then makes a new eventfd. A descriptor taken from a
 *   loop's shard by another thread may wake that loop once for nothing:
 *   a look, as for any stale wake-up above.
 * A new eventfd is made only when every shard and the shared pool are
 * empty, so the library holds at most as many as it once had in use at
 * the same time, plus the other loop threads' caches (FD_CACHE_MAX
 * each); idle ones are also bounded by SHARD_MAX per loop thread and
 * FD_POOL_MAX shared. A thread gives its shard back when it exits (its
 * descriptors go to the shared pool); in a child after fork() only the
 * forking thread's shard stays claimed, and what the others hold was
 * born before the fork and is closed when taken. Unsubscribing releases
 * like any other move. eventbuf_barrier() closes every idle descriptor:
 * the shared pool's, every shard's and the caller's cache.
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "internal.h"

#define FD_POOL_MAX 32
#define FD_CACHE_MAX 4

_Atomic uint64_t __eventbuf_fd_epoch;

static __thread struct {
	bool on;
	int n;
	int fds[FD_CACHE_MAX];
	int shard;		/* its loop shard's number + 1, 0: none */
} cache;

/*
 * A stack of reset descriptors under its own lock: the shared pool (up to
 * FD_POOL_MAX, always open), and the loop shards (see "Descriptors go
 * home" above), one per thread that runs a poller, claimed (->open) when
 * its cache is enabled and given back when the thread exits. ->open and
 * the descriptors are under ->lock, so two threads cannot claim one.
 */
#define NSHARDS 64
#define SHARD_MAX 512

struct shard {
	pthread_mutex_t lock;
	bool open;
	int n;
	int fds[SHARD_MAX];
};

static struct shard pool = {
	.lock = PTHREAD_MUTEX_INITIALIZER, .open = true,
};
static struct shard shards[NSHARDS] = {
	[0 ... NSHARDS - 1] = { .lock = PTHREAD_MUTEX_INITIALIZER },
};
static pthread_key_t cache_key;
static pthread_once_t cache_once = PTHREAD_ONCE_INIT;

/*
 * Generation slots: GEN_TOP chunks of GEN_CHUNK counters, made when a
 * descriptor of theirs is first created and kept for the process's life
 * (12 KiB per 1,024 descriptor numbers). Numbers past the table use the
 * global epoch.
 */
#define GEN_CHUNK 1024
#define GEN_TOP 1024

struct slot {
	_Atomic uint32_t gen;	/* closes of this number */
	_Atomic uint32_t birth;	/* fork_gen when it was created */
	_Atomic uint32_t home;	/* the shard (+ 1) of its last watcher */
};

static _Atomic(struct slot *) gen_chunks[GEN_TOP];

/*
 * Fork. A child shares every open eventfd with its parent: the same file.
 * Recycling one that the other process also uses would let one process's
 * reset read eat the other's wake-up. So a descriptor is recycled only by
 * the process that created it after the last fork, on either side:
 * fork_gen moves on in the parent and in the child after each fork
 * (fork.c), and a descriptor born before is closed on release, never
 * pooled, and closed if found in a pool or cache.
 */
static _Atomic uint32_t fork_gen;

static struct slot *slot_of(int fd)
{
	struct slot *chunk;

	if (fd < 0 || fd >= GEN_CHUNK * GEN_TOP)
		return NULL;
	/* Acquire: pairs with the release CAS that published the chunk. */
	chunk = smp_load_acquire(&gen_chunks[fd / GEN_CHUNK]);
	return chunk ? &chunk[fd % GEN_CHUNK] : NULL;
}

_Atomic uint32_t *__eventbuf_fd_gen(int fd)
{
	struct slot *slot = slot_of(fd);

	return slot ? &slot->gen : NULL;
}

/* Make @fd's slot if it has none (no slot: the epoch covers it). */
static void slot_make(int fd)
{
	struct slot *chunk, *none = NULL;

	if (fd < 0 || fd >= GEN_CHUNK * GEN_TOP || slot_of(fd))
		return;
	chunk = calloc(GEN_CHUNK, sizeof(*chunk));
	/* Release: the zeroed chunk before its pointer; pairs with the
	 * acquire load in slot_of(). */
	if (chunk && !atomic_compare_exchange_strong_explicit(
			&gen_chunks[fd / GEN_CHUNK], &none, chunk,
			memory_order_acq_rel, memory_order_acquire))
		free(chunk);	/* another thread made it */
}

/* @fd was created by this process since its last fork: it may be reused. */
static bool born_here(int fd)
{
	struct slot *slot = slot_of(fd);

	/* No order: both change only in fork handlers or in the creator's
	 * thread, which the caller's thread follows. */
	return slot && READ_ONCE(slot->birth) == READ_ONCE(fork_gen);
}

/* Either side of a fork, in its handler: what exists now is shared. */
void __eventbuf_fd_fork(void)
{
	atomic_fetch_add_explicit(&fork_gen, 1, memory_order_relaxed);
}

static void fd_close(int fd)
{
	_Atomic uint32_t *gen = __eventbuf_fd_gen(fd);

	/* Before the close: pairs with the poller's load after it loaded
	 * a descriptor from a link's state word (see above). */
	if (gen)
		atomic_fetch_add_explicit(gen, 1, memory_order_seq_cst);
	else
		atomic_fetch_add_explicit(&__eventbuf_fd_epoch, 1,
					  memory_order_seq_cst);
	close(fd);
	counter_sub(&__eventbuf_counters.eventfds, 1);
}

/* A new eventfd for a link, or -errno. */
int __eventbuf_fd_new(void)
{
	/* Before eventfd(): a fork between the two makes it look older,
	 * which only costs its reuse. */
	uint32_t birth = READ_ONCE(fork_gen);
	int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	struct slot *slot;

	if (fd < 0)
		return -errno;
	if (fd >= (int)(ST_FD_MASK >> ST_FD_SHIFT) - 1) {
		close(fd);
		return -EMFILE;
	}
	slot_make(fd);
	slot = slot_of(fd);
	if (slot)
		WRITE_ONCE(slot->birth, birth);	/* read in born_here() */
	counter_add(&__eventbuf_counters.eventfds, 1);
	return fd;
}

/* @sh takes @fd if it is open and holds fewer than @max. */
static bool shard_push(struct shard *sh, int max, int fd)
{
	bool taken = false;

	pthread_mutex_lock(&sh->lock);
	if (sh->open && sh->n < max) {
		sh->fds[sh->n] = fd;
		WRITE_ONCE(sh->n, sh->n + 1);	/* shard_steal() peeks */
		taken = true;
	}
	pthread_mutex_unlock(&sh->lock);
	return taken;
}

static int shard_pop(struct shard *sh)
{
	int fd = -1;

	pthread_mutex_lock(&sh->lock);
	if (sh->n > 0) {
		fd = sh->fds[sh->n - 1];
		WRITE_ONCE(sh->n, sh->n - 1);
	}
	pthread_mutex_unlock(&sh->lock);
	return fd;
}

/*
 * Another loop's spare descriptor, before a new one is made: two loops
 * that serve the same keys watch the same descriptors, and the one that
 * arms the next link first would otherwise make new ones while the
 * other's shard fills with what it lets go of. Threads without a shard
 * take them too, or what they made and a loop released would pile up in
 * the loop's shard while they made more.
 */
static int shard_steal(void)
{
	for (int i = 0; i < NSHARDS; i++) {
		int fd;

		/* Unlocked peek: a shard seen empty is skipped, no more. */
		if (i + 1 == cache.shard || !READ_ONCE(shards[i].n))
			continue;
		fd = shard_pop(&shards[i]);
		if (fd >= 0)
			return fd;
	}
	return -1;
}

static int pool_pop(void)
{
	int fd;

	if (cache.n > 0)
		return cache.fds[--cache.n];
	if (cache.shard && (fd = shard_pop(&shards[cache.shard - 1])) >= 0)
		return fd;
	fd = shard_pop(&pool);
	return fd >= 0 ? fd : shard_steal();
}

/* A reset eventfd from the pool, or -1 when the pool is empty. */
int __eventbuf_fd_pool_get(void)
{
	int fd;

	while ((fd = pool_pop()) >= 0 && !born_here(fd))
		fd_close(fd);	/* pooled before a fork: shared */
	return fd;
}

/* The shared pool, or closed when it is full. */
static void global_put(int fd)
{
	if (!shard_push(&pool, FD_POOL_MAX, fd))
		fd_close(fd);
}

static uint32_t home_of(int fd)
{
	struct slot *slot = slot_of(fd);

	/* A hint: any shard would be correct, its watcher's is cheapest. */
	return slot ? atomic_load_explicit(&slot->home, memory_order_relaxed)
		    : 0;
}

/*
 * Back to the pool, or closed when it is full. @fd reads as zero. Home
 * first: the calling thread's cache if that is its home, else its home
 * shard; a descriptor with no home (or a full one) as before.
 */
void __eventbuf_fd_pool_put(int fd)
{
	uint32_t home = home_of(fd);

	if (cache.on && cache.n < FD_CACHE_MAX &&
	    (home == (uint32_t)cache.shard || !home)) {
		cache.fds[cache.n++] = fd;
		return;
	}
	if (home && shard_push(&shards[home - 1], SHARD_MAX, fd))
		return;
	global_put(fd);
}

/* A poller of the calling thread watches @fd: this thread is its home. */
void __eventbuf_fd_watched(int fd)
{
	struct slot *slot = slot_of(fd);

	if (slot && cache.shard)
		atomic_store_explicit(&slot->home, (uint32_t)cache.shard,
				      memory_order_relaxed);
}

/*
 * Read a signalled descriptor back to zero. EAGAIN means it was zero: a
 * quiet signal whose slots a joiner cleared after it (quiet.c).
 */
static bool fd_reset(int fd)
{
	uint64_t count;

	return read(fd, &count, sizeof(count)) >= 0 || errno == EAGAIN;
}

void __eventbuf_fd_release(uint64_t w)
{
	int fd = st_fd(w);

	if ((w & ST_EXPORTED) || !born_here(fd)) {
		fd_close(fd);
		return;
	}
	/* Signalled quietly: never written (quiet.c). */
	if ((w & ST_SIGNALED) && !(w & (ST_QUIET | ST_QUIET_B)) && !fd_reset(fd)) {
		fd_close(fd);
		return;
	}
	__eventbuf_fd_pool_put(fd);
}

/*
 * The releasing step of a signalled link whose eventfd its reader keeps
 * (ST_PRIVATE, see "Kept descriptors" above): reset it and return it, or,
 * when the reset failed, close it and return -1. Whether it may be reused
 * after a fork is checked when it is installed again
 * (__eventbuf_fd_reuse_kept()).
 */
int __eventbuf_fd_keep(uint64_t w)
{
	int fd = st_fd(w);

	if (!fd_reset(fd)) {
		fd_close(fd);
		return -1;
	}
	return fd;
}

/*
 * Read @fd back to zero: true if it had been written, false if it had
 * not (or cannot be read, which the caller treats alike).
 */
bool __eventbuf_fd_consume(int fd)
{
	uint64_t count;

	return read(fd, &count, sizeof(count)) == (ssize_t)sizeof(count);
}

/* Undo __eventbuf_fd_consume(): @fd readable again, as its link wants. */
void __eventbuf_fd_restore(int fd)
{
	static const uint64_t one = 1;

	while (write(fd, &one, sizeof(one)) < 0 && errno == EINTR)
		;
}

/* A kept descriptor about to be installed: -1 (closed) if open at a fork. */
int __eventbuf_fd_reuse_kept(int fd)
{
	if (fd >= 0 && !born_here(fd)) {
		fd_close(fd);
		return -1;
	}
	return fd;
}

/* A kept descriptor its reader no longer wants. */
void __eventbuf_fd_drop_kept(int fd)
{
	if (fd >= 0)
		fd_close(fd);
}

/* Every pooled descriptor, the caller's cache and every shard's. */
void __eventbuf_fd_pool_drain(void)
{
	int fd;

	while ((fd = pool_pop()) >= 0)
		fd_close(fd);
	for (int i = 0; i < NSHARDS; i++)
		while ((fd = shard_pop(&shards[i])) >= 0)
			fd_close(fd);
}

void __eventbuf_fdpool_fork_lock(bool lock)
{
	if (lock) {
		for (int i = 0; i < NSHARDS; i++)
			pthread_mutex_lock(&shards[i].lock);
		pthread_mutex_lock(&pool.lock);
		return;
	}
	pthread_mutex_unlock(&pool.lock);
	for (int i = NSHARDS - 1; i >= 0; i--)
		pthread_mutex_unlock(&shards[i].lock);
}

/*
 * In the child, with the locks held: only the forking thread lives on,
 * so every other thread's shard is free to claim again. What they hold
 * was born before the fork and is closed when popped.
 */
void __eventbuf_fd_fork_child(void)
{
	for (int i = 0; i < NSHARDS; i++)
		if (i + 1 != cache.shard)
			shards[i].open = false;
}

/* The first shard nobody claimed, as its number + 1; 0: none left. */
static int shard_claim(void)
{
	for (int i = 0; i < NSHARDS; i++) {
		struct shard *sh = &shards[i];
		bool mine;

		pthread_mutex_lock(&sh->lock);
		mine = !sh->open;
		sh->open = true;
		pthread_mutex_unlock(&sh->lock);
		if (mine)
			return i + 1;
	}
	return 0;
}

/*
 * Give the calling thread's shard back; its descriptors go to the shared
 * pool. Once it is closed nothing is pushed on it, and whoever claims it
 * next only adds to what is moved.
 */
static void shard_unclaim(void)
{
	struct shard *sh = &shards[cache.shard - 1];
	int fd;

	pthread_mutex_lock(&sh->lock);
	sh->open = false;
	pthread_mutex_unlock(&sh->lock);
	cache.shard = 0;
	while ((fd = shard_pop(sh)) >= 0)
		global_put(fd);
}

/* The thread exits: its cache and shard go back to the shared pool. */
static void cache_exit(void *unused)
{
	(void)unused;
	cache.on = false;
	if (cache.shard)
		shard_unclaim();
	while (cache.n > 0)
		global_put(cache.fds[--cache.n]);
}

static void cache_key_init(void)
{
	if (pthread_key_create(&cache_key, cache_exit))
		cache_key = (pthread_key_t)-1;
}

/* The calling thread runs a poller: keep its descriptors near it. */
void __eventbuf_fd_cache_enable(void)
{
	if (cache.on)
		return;
	pthread_once(&cache_once, cache_key_init);
	/* Without a key the cache would not go back at exit: stay off. */
	if (cache_key == (pthread_key_t)-1 ||
	    pthread_setspecific(cache_key, &cache))
		return;
	cache.on = true;
	cache.shard = shard_claim();
}

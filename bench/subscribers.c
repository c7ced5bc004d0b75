// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The subscribers workload (bench-spec.md): N subscriptions over K keys of
 * one topic, attached to two event-loop threads (the first half of the
 * subscriptions to one, the second half to the other, so that a key of
 * K = 1 or 100 has subscribers on both); the harness's thread publishes
 * events round-robin over the keys, one event per publish, with indexes
 * 1, 2, 3... so that each subscriber of key k must see k + 1, k + 1 + K,
 * ... and nothing else. Each subscriber's record (next index expected,
 * count, out-of-order count) is written only by its loop thread and
 * checked by the harness after the join; any failure ends the run.
 *
 * Each run has two phases, paced by the same rule for every
 * implementation: at most W events are outstanding (published, not yet
 * read by all their subscribers), counted in deliveries: the loops add
 * what they read to one counter after each wake-up, and wake the publisher
 * through a mutex and condition variable once the count it waits for is
 * reached.
 * - Throughput: E events, W = max(2, 16384 / subscribers per key); when
 *   the publisher has to wait, it waits for a quarter of a window more
 *   than it needs, so that it is not woken per event. Figure: deliveries/s,
 *   every event read by every subscriber of its key, over the time from
 *   the first publish to the last read.
 * - Latency: L more events, W = 1: each is published once the previous
 *   one was read by all its subscribers and both loops are seen asleep
 *   in /proc (as in the wake workload), so that the figure is the
 *   wake-up and the fan-out, not the queue a saturating publisher builds
 *   nor a loop that happened to be still awake. An event's latency is that of its last subscriber
 *   (the max over both loops); p50, p99, p99.9 over the L events.
 * Also: descriptors and memory added by subscribing and parking all N
 * (after the loops have read every subscription dry), and how fast the N
 * subscriptions were made.
 *
 * Both phases measure long-lived subscriptions: what subscribing leaves
 * behind for a while is gone before the first publish (settle(): the
 * library's cached snapshots, which would otherwise hold every event
 * published until they expire, and so put off all reclamation past the
 * end of a short run).
 */
#include <errno.h>
#include <inttypes.h>
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "fdcount.h"
#include "subs.h"

#define NLOOPS 2
#define NSIMPL 3
#define LOOP_TIMEOUT_MS 20000

static const struct bench_subs_impl *simpls[NSIMPL] = {
	&bench_subs_rcu, &bench_subs_mutex_fd, &bench_subs_mutex_loop,
};

enum {
	M_DELIVERIES, M_P50, M_P99, M_P999, M_FDS, M_RSS, M_SUBSCRIBES, NMETRIC
};

static const struct {
	const char *name;
	bool higher_better;
} metrics[NMETRIC] = {
	[M_DELIVERIES] = { "deliveries_per_s", true },
	[M_P50] = { "p50_us", false },
	[M_P99] = { "p99_us", false },
	[M_P999] = { "p999_us", false },
	[M_FDS] = { "fds_per_1k_subs", false },
	[M_RSS] = { "rss_kib_per_sub", false },
	[M_SUBSCRIBES] = { "subscribes_per_s", true },
};

struct config {
	uint64_t nsubs, nkeys, nevents, nlat;
	bool skip[NSIMPL];
	double v[NSIMPL][NMETRIC][MAX_REPS];
	int nv[NSIMPL];
};

static struct config configs[9];
static int nconfigs;
static uint64_t fd_limit;

/* ------------------------------------------------------------------ */
/* One run                                                             */
/* ------------------------------------------------------------------ */

struct subrec {
	uint64_t expect;	/* the next index of its key */
	uint64_t count;
	uint64_t bad;
};

struct run;

struct loop_ctx {
	struct run *run;
	int id;
	uint64_t first, end;	/* its subscriptions */
	void *loop;
	uint64_t expected, done, credited;
	uint64_t expected_tput;	/* of those, in the throughput phase */
	uint64_t *lat_ns;	/* per latency event, its slowest reader here */
	uint64_t t_tput;	/* when it read its last throughput event */
	int error;
	const char *what;
	pthread_t tid;
	_Atomic pid_t task;
	_Atomic bool finished;	/* read all it expected, or failed */
};

struct run {
	const struct bench_subs_impl *impl;
	void *ps;
	uint64_t nsubs, nkeys, per_key;
	uint64_t nevents;	/* E, the throughput phase's */
	uint64_t nlat;		/* L, the latency phase's */
	void **subs;
	struct subrec *rec;
	pthread_barrier_t parked;
	/* credit */
	_Atomic uint64_t delivered;
	_Atomic uint64_t wait_target;
	_Atomic bool failed;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct loop_ctx loops[NLOOPS];
};

static int open_fds(void)
{
	int n = count_fds();

	if (n < 0)
		bench_die("/proc/self/fd", errno);
	return n;
}

/* How many of the first @nevents events are @key's. */
static uint64_t events_of_key(const struct run *r, uint64_t nevents,
			      uint64_t key)
{
	return key < nevents ? (nevents - key + r->nkeys - 1) / r->nkeys : 0;
}

static void on_event(void *loop_ctx, void *sub_data, uint64_t index,
		     uint64_t stamp)
{
	struct loop_ctx *l = loop_ctx;
	struct subrec *rec = sub_data;
	const struct run *r = l->run;

	if (index != rec->expect)
		rec->bad++;
	rec->expect = index + r->nkeys;
	rec->count++;
	l->done++;
	if (index > r->nevents && index <= r->nevents + r->nlat) {
		uint64_t slot = index - 1 - r->nevents;
		uint64_t ns = bench_now_ns() - stamp;

		if (ns > l->lat_ns[slot])
			l->lat_ns[slot] = ns;
	}
}

static void wake_publisher(struct run *r)
{
	pthread_mutex_lock(&r->lock);
	pthread_cond_broadcast(&r->cond);
	pthread_mutex_unlock(&r->lock);
}

static void credit(struct loop_ctx *l)
{
	struct run *r = l->run;
	uint64_t d = l->done - l->credited, total;

	if (!d)
		return;
	l->credited = l->done;
	/*
	 * seq_cst, pairs with the publisher's store of wait_target before
	 * its load of delivered in wait_credit(): one of the two sees the
	 * other, so a publisher about to sleep is woken.
	 */
	total = atomic_fetch_add(&r->delivered, d) + d;
	if (total >= atomic_load(&r->wait_target))
		wake_publisher(r);
}

static void loop_fail(struct loop_ctx *l, const char *what, int err)
{
	l->what = what;
	l->error = err ? err : -EPROTO;
	atomic_store(&l->run->failed, true);
	wake_publisher(l->run);
}

static void *loop_main(void *arg)
{
	struct loop_ctx *l = arg;
	struct run *r = l->run;
	const struct bench_subs_impl *impl = r->impl;
	long got;

	atomic_store(&l->task, gettid());
	l->loop = impl->loop_new(r->ps, l->id);
	if (!l->loop) {
		loop_fail(l, "loop_new", -ENOMEM);
		pthread_barrier_wait(&r->parked);
		return NULL;
	}
	for (uint64_t i = l->first; i < l->end; i++) {
		int ret = impl->loop_add(l->loop, r->subs[i], &r->rec[i]);

		if (ret) {
			loop_fail(l, "loop_add", ret);
			pthread_barrier_wait(&r->parked);
			return NULL;
		}
	}
	/* Read everything dry once, so that every subscription parks. */
	while ((got = impl->loop_run(l->loop, on_event, l, 0)) > 0)
		;
	if (got < 0 || l->done) {
		loop_fail(l, "parking", (int)got);
		pthread_barrier_wait(&r->parked);
		return NULL;
	}
	pthread_barrier_wait(&r->parked);
	while (l->done < l->expected && !atomic_load(&r->failed)) {
		got = impl->loop_run(l->loop, on_event, l, LOOP_TIMEOUT_MS);
		if (got <= 0) {
			loop_fail(l, "loop_run", got ? (int)got : -ETIMEDOUT);
			break;
		}
		if (!l->t_tput && l->done >= l->expected_tput)
			l->t_tput = bench_now_ns();
		credit(l);
	}
	atomic_store(&l->finished, true);
	return NULL;
}

/* Block until @r->delivered reaches @target (or a loop failed). */
static void wait_credit(struct run *r, uint64_t target)
{
	pthread_mutex_lock(&r->lock);
	/* seq_cst, pairs with the fetch_add in credit(). */
	atomic_store(&r->wait_target, target);
	while (atomic_load(&r->delivered) < target && !atomic_load(&r->failed))
		pthread_cond_wait(&r->cond, &r->lock);
	atomic_store(&r->wait_target, UINT64_MAX);
	pthread_mutex_unlock(&r->lock);
}

/*
 * Whether the thread @task sleeps in a system call other than futex(): in
 * its loop's wait, not on the credit mutex it takes for a moment.
 */
static bool in_loop_wait(pid_t task)
{
	char path[64], buf[256];
	bool asleep = false;
	long nr = -1;
	FILE *f;
	char *p;

	snprintf(path, sizeof(path), "/proc/self/task/%d/stat", (int)task);
	f = fopen(path, "r");
	if (!f)
		return true;
	p = fgets(buf, sizeof(buf), f) ? strrchr(buf, ')') : NULL;
	fclose(f);
	asleep = p && p[1] == ' ' && p[2] == 'S';
	snprintf(path, sizeof(path), "/proc/self/task/%d/syscall", (int)task);
	f = fopen(path, "r");
	if (!f)
		return asleep;
	if (fscanf(f, "%ld", &nr) != 1)
		nr = -1;
	fclose(f);
	return asleep && nr >= 0 && nr != SYS_futex;
}

/* Like the wake workload: pause, until the loop is seen asleep (bounded). */
static void wait_asleep(pid_t task)
{
	const struct timespec pause = { 0, 20000 };

	for (int tries = 0; tries < 5000; tries++) {
		nanosleep(&pause, NULL);
		if (in_loop_wait(task))
			return;
	}
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return (x > y) - (x < y);
}

static void check(const struct run *r)
{
	int failed = 0;

	for (int k = 0; k < NLOOPS; k++) {
		const struct loop_ctx *l = &r->loops[k];

		if (l->error) {
			fprintf(stderr, "bench: subscribers %s loop %d: %s: %s\n",
				r->impl->name, k, l->what, strerror(-l->error));
			failed = 1;
		}
	}
	for (uint64_t i = 0; i < r->nsubs && failed < 10; i++) {
		const struct subrec *rec = &r->rec[i];
		uint64_t want = events_of_key(r, r->nevents + r->nlat,
					      i % r->nkeys);

		if (rec->count != want || rec->bad) {
			fprintf(stderr, "bench: subscribers %s subs=%" PRIu64
				" keys=%" PRIu64 ": subscriber %" PRIu64 " saw %"
				PRIu64 "/%" PRIu64 " events, %" PRIu64
				" out of order\n", r->impl->name, r->nsubs,
				r->nkeys, i, rec->count, want, rec->bad);
			failed++;
		}
	}
	if (failed)
		exit(1);
}


/*
 * With CAP_SYS_RESOURCE (root) the hard limit itself may be raised, up to
 * the kernel's fs.nr_open; otherwise it stays as it is.
 */
static void raise_hard_limit(struct rlimit *rl)
{
	unsigned long nr_open = 0;
	FILE *f = fopen("/proc/sys/fs/nr_open", "r");
	struct rlimit want;

	if (f) {
		if (fscanf(f, "%lu", &nr_open) != 1)
			nr_open = 0;
		fclose(f);
	}
	if (nr_open <= rl->rlim_max)
		return;
	want.rlim_cur = want.rlim_max = nr_open;
	if (setrlimit(RLIMIT_NOFILE, &want) == 0)
		*rl = want;
}

/*
 * Once per configuration: how many epoll registrations the loops made for
 * how many deliveries (both phases), so that a registration per delivery
 * would show.
 */
static void print_loop_counts(const struct run *r, const struct config *c)
{
	uint64_t regs = 0, wakeups = 0, quiet = 0, deliveries;

	for (int k = 0; k < NLOOPS; k++) {
		uint64_t rg, wk, qt;

		r->impl->loop_counts(r->loops[k].loop, &rg, &wk, &qt);
		regs += rg;
		wakeups += wk;
		quiet += qt;
	}
	deliveries = (r->nevents + r->nlat) * r->per_key;
	printf("subscribers: %s subs=%" PRIu64 " keys=%" PRIu64 ": %" PRIu64
	       " epoll registrations (%" PRIu64 " subscriptions) for %" PRIu64
	       " deliveries and %" PRIu64 " wake-ups (%" PRIu64
	       " signalled quietly)\n", r->impl->name, c->nsubs, c->nkeys,
	       regs, r->nsubs, deliveries, wakeups, quiet);
}

static void run_one(struct config *c, int i)
{
	const struct bench_subs_impl *impl = simpls[i];
	struct run *r = calloc(1, sizeof(*r));
	uint64_t window, fds0, fds1, rss0, rss1, heap0, heap1, grew;
	uint64_t t0, t1, t_pub, t_end, *lat;
	int ret;

	if (!r)
		bench_die("subscribers", ENOMEM);
	r->impl = impl;
	r->nsubs = c->nsubs;
	r->nkeys = c->nkeys;
	r->nevents = c->nevents;
	r->nlat = c->nlat;
	r->per_key = c->nsubs / c->nkeys;
	r->wait_target = UINT64_MAX;
	window = 16384 / r->per_key > 2 ? 16384 / r->per_key : 2;
	pthread_mutex_init(&r->lock, NULL);
	pthread_cond_init(&r->cond, NULL);
	pthread_barrier_init(&r->parked, NULL, NLOOPS + 1);
	/* The harness's own arrays, touched now: not the subscriptions' cost. */
	r->subs = malloc(r->nsubs * sizeof(*r->subs));
	r->rec = malloc(r->nsubs * sizeof(*r->rec));
	if (!r->subs || !r->rec)
		bench_die("subscribers", ENOMEM);
	memset(r->subs, 0, r->nsubs * sizeof(*r->subs));
	for (uint64_t s = 0; s < r->nsubs; s++)
		r->rec[s] = (struct subrec){ .expect = s % r->nkeys + 1 };
	for (int k = 0; k < NLOOPS; k++) {
		struct loop_ctx *l = &r->loops[k];

		l->run = r;
		l->id = k;
		l->first = r->nsubs * k / NLOOPS;
		l->end = r->nsubs * (k + 1) / NLOOPS;
		for (uint64_t s = l->first; s < l->end; s++) {
			l->expected += events_of_key(r, r->nevents + r->nlat,
						     s % r->nkeys);
			l->expected_tput += events_of_key(r, r->nevents,
							  s % r->nkeys);
		}
		/* A loop with nothing to read in the throughput phase. */
		if (!l->expected_tput)
			l->t_tput = 1;
		l->lat_ns = calloc(r->nlat, sizeof(*l->lat_ns));
		if (!l->lat_ns)
			bench_die("subscribers", ENOMEM);
	}

	fds0 = open_fds();
	rss0 = bench_rss_kb();
	heap0 = bench_heap_bytes();
	r->ps = impl->create(r->nkeys, NLOOPS);
	if (!r->ps)
		bench_die("subscribers: create", ENOMEM);
	t0 = bench_now_ns();
	for (uint64_t s = 0; s < r->nsubs; s++) {
		r->subs[s] = impl->subscribe(r->ps, s % r->nkeys,
					     (int)(s * NLOOPS / r->nsubs));
		if (!r->subs[s])
			bench_die("subscribers: subscribe", errno ? errno : ENOMEM);
	}
	t1 = bench_now_ns();
	for (int k = 0; k < NLOOPS; k++)
		pthread_create(&r->loops[k].tid, NULL, loop_main, &r->loops[k]);
	pthread_barrier_wait(&r->parked);
	fds1 = open_fds();
	rss1 = bench_rss_kb();
	heap1 = bench_heap_bytes();
	if (impl->settle && (ret = impl->settle(r->ps)) != 0)
		bench_die("subscribers: settle", -ret);

	/* Throughput: at most @window events outstanding. */
	t_end = t_pub = bench_now_ns();
	for (uint64_t j = 0; j < r->nevents + r->nlat; j++) {
		uint64_t w = j < r->nevents ? window : 1;

		if (atomic_load(&r->failed))
			break;
		if (j + 1 > w) {
			uint64_t need = (j + 1 - w) * r->per_key;
			uint64_t more = need + w / 4 * r->per_key;

			if (atomic_load(&r->delivered) < need)
				wait_credit(r, more < j * r->per_key ? more
						: j * r->per_key);
		}
		for (int k = 0; j >= r->nevents && k < NLOOPS; k++)
			if (!atomic_load(&r->loops[k].finished))
				wait_asleep(atomic_load(&r->loops[k].task));
		ret = impl->publish(r->ps, j % r->nkeys, j + 1, bench_now_ns());
		if (ret)
			bench_die("subscribers: publish", ret);
	}
	for (int k = 0; k < NLOOPS; k++) {
		pthread_join(r->loops[k].tid, NULL);
		if (r->loops[k].t_tput > t_end)
			t_end = r->loops[k].t_tput;
	}
	check(r);

	/* Each latency event's slowest reader, over both loops. */
	lat = r->loops[0].lat_ns;
	for (uint64_t s = 0; s < r->nlat; s++)
		for (int k = 1; k < NLOOPS; k++)
			if (r->loops[k].lat_ns[s] > lat[s])
				lat[s] = r->loops[k].lat_ns[s];
	qsort(lat, r->nlat, sizeof(*lat), cmp_u64);

	/*
	 * Memory: malloc()'s in-use bytes or the resident set, whichever grew
	 * more (malloc() may reuse pages an earlier run made resident; the
	 * library's slabs are mapped directly).
	 */
	grew = heap1 > heap0 ? heap1 - heap0 : 0;
	if (rss1 > rss0 && (rss1 - rss0) * 1024 > grew)
		grew = (rss1 - rss0) * 1024;
	if (c->nv[i] < MAX_REPS) {
		double *v[NMETRIC];
		int n = c->nv[i]++;

		for (int m = 0; m < NMETRIC; m++)
			v[m] = &c->v[i][m][n];
		*v[M_DELIVERIES] = (double)(r->nevents * r->per_key) * 1e9 /
				   (double)(t_end - t_pub);
		*v[M_P50] = lat[bench_rank(r->nlat, 500)] / 1e3;
		*v[M_P99] = lat[bench_rank(r->nlat, 990)] / 1e3;
		*v[M_P999] = lat[bench_rank(r->nlat, 999)] / 1e3;
		*v[M_FDS] = fds1 > fds0 ? (double)(fds1 - fds0) * 1000.0 /
					  (double)r->nsubs : 0;
		*v[M_RSS] = (double)grew / 1024.0 / (double)r->nsubs;
		*v[M_SUBSCRIBES] = (double)r->nsubs * 1e9 / (double)(t1 - t0);
	}

	if (impl->loop_counts && c->nv[i] == 1)
		print_loop_counts(r, c);
	for (int k = 0; k < NLOOPS; k++) {
		impl->loop_free(r->loops[k].loop);
		free(r->loops[k].lat_ns);
	}
	for (uint64_t s = 0; s < r->nsubs; s++)
		impl->unsubscribe(r->subs[s]);
	impl->destroy(r->ps);
	if (impl->quiesce)
		impl->quiesce();
	free(r->subs);
	free(r->rec);
	pthread_barrier_destroy(&r->parked);
	pthread_cond_destroy(&r->cond);
	pthread_mutex_destroy(&r->lock);
	free(r);
	/* Give freed memory back, so that the next run's RSS delta shows. */
	malloc_trim(0);
}

/*
 * What the harness's own check costs per delivery, called the way the rcu
 * loop calls it (through a pointer, each event of a batch for each member
 * of a cohort; 500 members and 16 events, N = 1,000 and K = 1's shape).
 * Two loops that did nothing else could deliver at most two per that
 * time: a ceiling for every implementation on this machine, printed so
 * that the ratios can be read against it (docs/pollers.md).
 */
static void print_check_ceiling(void)
{
	enum { MEMBERS = 500, BATCH = 16, ROUNDS = 2000 };
	struct run r = { .nkeys = 1, .nevents = UINT64_MAX / 2 };
	struct loop_ctx l = { .run = &r };
	struct subrec *rec = calloc(MEMBERS, sizeof(*rec));
	bench_subs_fn volatile fnp = on_event;	/* not inlined, as in a loop */
	bench_subs_fn fn = fnp;
	uint64_t index = 1, best = UINT64_MAX;
	double ns;

	if (!rec)
		bench_die("subscribers", ENOMEM);
	for (int m = 0; m < MEMBERS; m++)
		rec[m].expect = 1;
	/* The fastest of 5 tries: a ceiling, not a typical figure. */
	for (int t = 0; t < 5; t++) {
		uint64_t t0 = bench_now_ns(), took;

		for (int k = 0; k < ROUNDS; k++, index += BATCH)
			for (int m = 0; m < MEMBERS; m++)
				for (uint64_t i = 0; i < BATCH; i++)
					fn(&l, &rec[m], index + i, 0);
		took = bench_now_ns() - t0;
		if (took < best)
			best = took;
	}
	for (int m = 0; m < MEMBERS; m++)
		if (rec[m].bad || rec[m].count != 5ull * ROUNDS * BATCH)
			bench_die("subscribers: the check's ceiling", EPROTO);
	free(rec);
	ns = (double)best / ((double)MEMBERS * BATCH * ROUNDS);
	printf("subscribers: the check alone costs %.2f ns per delivery on one "
	       "thread: two loops that did nothing else would deliver at most "
	       "%.0f M/s\n", ns, 2e3 / ns);
}

/*
 * What one write() of an eventfd costs when an epoll set watches it and
 * nobody sleeps on the set (no wake-up: the cheapest case), the fastest
 * of 5 tries of 100,000. A publisher that writes an eventfd per publish -
 * eventbuf's, whenever a subscriber is parked on the key's link - cannot
 * publish faster than one per that time (docs/pollers.md).
 */
static void print_write_ceiling(void)
{
	struct epoll_event ev = { .events = EPOLLIN | EPOLLET };
	int ep = epoll_create1(EPOLL_CLOEXEC);
	int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	const uint64_t one = 1;
	uint64_t best = UINT64_MAX, count;
	double ns;

	if (ep < 0 || fd < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev))
		bench_die("subscribers: the write's ceiling", errno);
	for (int t = 0; t < 5; t++) {
		uint64_t t0 = bench_now_ns(), took;

		for (int i = 0; i < 100000; i++)
			if (write(fd, &one, sizeof(one)) != sizeof(one))
				bench_die("subscribers: eventfd write", errno);
		took = bench_now_ns() - t0;
		if (took < best)
			best = took;
		if (read(fd, &count, sizeof(count)) != sizeof(count))
			bench_die("subscribers: eventfd read", errno);
	}
	close(fd);
	close(ep);
	ns = (double)best / 1e5;
	printf("subscribers: an eventfd write (watched, nobody waiting) costs "
	       "%.0f ns: a publisher that makes one per publish publishes at "
	       "most %.1f M/s\n", ns, 1e3 / ns);
}

/* ------------------------------------------------------------------ */
/* The workload's entry points                                          */
/* ------------------------------------------------------------------ */

/*
 * K = N parks every subscription of rcu on a link of its own, and
 * mutex-fd needs an eventfd per subscription whatever K: raise the
 * descriptor limit as far as allowed.
 */
void bench_subscribers_setup(void)
{
	struct rlimit rl;
	int top;

	if (getrlimit(RLIMIT_NOFILE, &rl))
		bench_die("getrlimit", errno);
	raise_hard_limit(&rl);
	if (rl.rlim_cur < rl.rlim_max) {
		struct rlimit want = { rl.rlim_max, rl.rlim_max };

		if (setrlimit(RLIMIT_NOFILE, &want) == 0)
			rl = want;
	}
	fd_limit = rl.rlim_cur;
	/*
	 * Grow the descriptor table to its full size now: the kernel grows
	 * it with a grace period of its own and never shrinks it, so the
	 * first run to open many descriptors would pay for every later one.
	 */
	top = fd_limit < (1u << 20) ? (int)fd_limit - 1 : (1 << 20) - 1;
	if (top > 2 && dup2(2, top) == top)
		close(top);
	printf("subscribers: descriptor limit %" PRIu64 " (hard limit %" PRIu64
	       ")\n", (uint64_t)rl.rlim_cur, (uint64_t)rl.rlim_max);
	print_check_ceiling();
	print_write_ceiling();
}

static struct config *config_get(uint64_t nsubs, uint64_t nkeys,
				 uint64_t nevents, uint64_t nlat)
{
	struct config *c;

	for (int k = 0; k < nconfigs; k++)
		if (configs[k].nsubs == nsubs && configs[k].nkeys == nkeys)
			return &configs[k];
	if (nconfigs == (int)(sizeof(configs) / sizeof(configs[0])))
		bench_die("subscribers: too many configurations", ENOSPC);
	c = &configs[nconfigs++];
	memset(c, 0, sizeof(*c));
	c->nsubs = nsubs;
	c->nkeys = nkeys;
	c->nevents = nevents;
	c->nlat = nlat;
	return c;
}

void bench_subscribers_run(int rep, bool quick)
{
	static const uint64_t subs[] = { 1000, 10000, 100000 };
	/*
	 * Deliveries in the throughput phase: at least a few events, and
	 * one per key. The latency phase: a quarter as many deliveries,
	 * 1,000 to 2,000 events (200 to 500 in the quick run), so that p99
	 * is not the worst sample and p99.9 is the worst of a few (it was
	 * the worst of 16 at N = 100,000 with fewer).
	 */
	const uint64_t deliveries = quick ? 200000 : 2000000;
	const uint64_t min_events = quick ? 16 : 32;
	const uint64_t min_lat = quick ? 200 : 1000;
	const uint64_t max_lat = quick ? 500 : 2000;

	for (int s = 0; s < (quick ? 2 : 3); s++) {
		const uint64_t keys[] = { 1, 100, subs[s] };

		for (int kk = 0; kk < 3; kk++) {
			uint64_t n = subs[s], k = keys[kk];
			uint64_t e = deliveries / (n / k);
			uint64_t lat = deliveries / 4 / (n / k);
			struct config *c;

			if (e < min_events)
				e = min_events;
			if (e < k)
				e = k;
			lat = lat < min_lat ? min_lat :
			      lat > max_lat ? max_lat : lat;
			c = config_get(n, k, e, lat);
			for (int j = 0; j < NSIMPL; j++) {
				int i = (rep + j) % NSIMPL;
				uint64_t need = simpls[i]->fds_needed(n, k, NLOOPS) +
						(uint64_t)open_fds() + 32;

				if (need > fd_limit) {
					if (!c->skip[i])
						printf("subscribers: skipped impl=%s subs=%"
						       PRIu64 " keys=%" PRIu64 ": needs about %"
						       PRIu64 " descriptors, the limit is %"
						       PRIu64 "\n", simpls[i]->name, n, k,
						       need, fd_limit);
					c->skip[i] = true;
					continue;
				}
				run_one(c, i);
			}
		}
	}
}

/*
 * rcu against the best baseline that ran, per repetition, so that > 1
 * always means rcu is better; the median of those ratios. 0: no ratio.
 */
static double ratio(const struct config *c, int m, double *lo, double *hi)
{
	double q[MAX_REPS];
	int n = c->nv[0];

	if (c->skip[0] || !n)
		return 0;
	for (int k = 0; k < n; k++) {
		bool up = metrics[m].higher_better;
		double best = -1;

		for (int i = 1; i < NSIMPL; i++) {
			double v;

			if (c->skip[i] || c->nv[i] <= k)
				continue;
			v = c->v[i][m][k];
			if (best < 0 || (up ? v > best : v < best))
				best = v;
		}
		if (best < 0)
			return 0;
		if (up)
			q[k] = best > 0 ? c->v[0][m][k] / best : 0;
		else
			q[k] = c->v[0][m][k] > 0 ? best / c->v[0][m][k] : 0;
	}
	return bench_median(q, n, lo, hi);
}

static void print_table(void)
{
	printf("\n%-8s %-7s %-17s", "subs", "keys", "metric");
	for (int i = 0; i < NSIMPL; i++)
		printf(" %-24s", simpls[i]->name);
	printf(" %s\n", "rcu vs best baseline (>1: rcu better)");
	for (int k = 0; k < nconfigs; k++) {
		const struct config *c = &configs[k];

		for (int m = 0; m < NMETRIC; m++) {
			double lo, hi, v;

			printf("%-8" PRIu64 " %-7" PRIu64 " %-17s", c->nsubs,
			       c->nkeys, metrics[m].name);
			for (int i = 0; i < NSIMPL; i++) {
				char cell[64] = "skipped";

				if (!c->skip[i]) {
					v = bench_median(c->v[i][m], c->nv[i], &lo, &hi);
					snprintf(cell, sizeof(cell), "%.4g [%.3g-%.3g]",
						 v, lo, hi);
				}
				printf(" %-24s", cell);
			}
			v = ratio(c, m, &lo, &hi);
			if (v > 0)
				printf(" %.2fx [%.2f-%.2f]\n", v, lo, hi);
			else
				printf(" -\n");
		}
	}
	printf("\n");
}

static void print_lines(void)
{
	for (int k = 0; k < nconfigs; k++) {
		const struct config *c = &configs[k];

		for (int m = 0; m < NMETRIC; m++)
			for (int i = 0; i < NSIMPL; i++) {
				if (c->skip[i] || !c->nv[i])
					continue;
				printf("bench workload=subscribers impl=%s subs=%"
				       PRIu64 " keys=%" PRIu64 " n=%" PRIu64
				       " metric=%s value=%.4g\n", simpls[i]->name,
				       c->nsubs, c->nkeys, c->nevents,
				       metrics[m].name,
				       bench_median(c->v[i][m], c->nv[i], NULL, NULL));
			}
	}
}

/* K as the plot names it: 1, 100, or N (a key per subscription). */
static int key_kind(const struct config *c)
{
	return c->nkeys == 1 ? 0 : c->nkeys == c->nsubs ? 2 : 1;
}

static FILE *open_out(const char *outdir, const char *name)
{
	char path[4096];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", outdir, name);
	f = fopen(path, "w");
	if (!f)
		bench_die(path, errno);
	return f;
}

static void write_csv_and_plot(const char *outdir, int reps)
{
	static const char *const kinds[] = { "K=1", "K=100", "K=N" };
	char cmd[4200];
	FILE *f = open_out(outdir, "subscribers.csv");

	fprintf(f, "subs,keys,impl,metric,value,min,max\n");
	for (int k = 0; k < nconfigs; k++) {
		const struct config *c = &configs[k];

		for (int i = 0; i < NSIMPL; i++) {
			if (c->skip[i] || !c->nv[i])
				continue;
			for (int m = 0; m < NMETRIC; m++) {
				double lo, hi;
				double v = bench_median(c->v[i][m], c->nv[i], &lo, &hi);

				fprintf(f, "%" PRIu64 ",%" PRIu64 ",%s,%s,%.4g,%.4g,%.4g\n",
					c->nsubs, c->nkeys, simpls[i]->name,
					metrics[m].name, v, lo, hi);
			}
		}
	}
	fclose(f);
	printf("wrote %s/subscribers.csv\n", outdir);

	/* One gnuplot data block per (implementation, K), N ascending. */
	f = open_out(outdir, "subscribers.dat");
	for (int i = 0; i < NSIMPL; i++)
		for (int kind = 0; kind < 3; kind++) {
			fprintf(f, "# %s %s\n", simpls[i]->name, kinds[kind]);
			for (int k = 0; k < nconfigs; k++) {
				const struct config *c = &configs[k];

				if (key_kind(c) != kind || c->skip[i] || !c->nv[i])
					continue;
				fprintf(f, "%" PRIu64 " %.4g\n", c->nsubs,
					bench_median(c->v[i][M_DELIVERIES],
						     c->nv[i], NULL, NULL));
			}
			fprintf(f, "\n\n");
		}
	fclose(f);

	f = open_out(outdir, "subscribers.gp");
	fprintf(f,
		"set terminal pngcairo size 900,560 font ',10'\n"
		"set output '%s/subscribers.png'\n"
		"set key outside right\n"
		"set grid\n"
		"set logscale x 10\n"
		"set logscale y 10\n"
		"set xrange [700:140000]\n"
		"set xlabel 'subscriptions (2 event loops)'\n"
		"set ylabel 'deliveries/s (median of %d)'\n"
		"set title 'eventbuf subscribers: one publisher, K keys'\n"
		"plot ", outdir, reps);
	for (int i = 0; i < NSIMPL; i++)
		for (int kind = 0; kind < 3; kind++)
			fprintf(f, "%s'%s/subscribers.dat' index %d with linespoints"
				" lw 2 pt 7 lc %d dt %d title '%s %s'",
				i || kind ? ", " : "", outdir, i * 3 + kind, i + 1,
				kind + 1, simpls[i]->name, kinds[kind]);
	fprintf(f, "\n");
	fclose(f);
	snprintf(cmd, sizeof(cmd), "gnuplot %s/subscribers.gp 2>&1", outdir);
	if (system(cmd) == 0)
		printf("wrote %s/subscribers.png\n", outdir);
	else
		printf("gnuplot failed: no subscribers plot (the CSV is there)\n");
}

void bench_subscribers_report(const char *outdir, int reps)
{
	if (!nconfigs)
		return;
	print_table();
	print_lines();
	write_csv_and_plot(outdir, reps);
}

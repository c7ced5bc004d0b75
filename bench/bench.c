// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The benchmark: every workload of bench-spec.md, written once against
 * struct bench_impl and run for every implementation in one process, the
 * implementations interleaved within each repetition (wake: sample by
 * sample, with the eventfd floor), so that every figure is a ratio measured
 * side by side. No busy-waiting anywhere: threads start on a pthread
 * barrier, readers block in the implementation's wait or in epoll_wait(),
 * the wake-up writer sleeps until the reader is seen asleep in /proc.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <malloc.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include <eventbuf/eventbuf.h>

#include "bench.h"
#include "fdcount.h"
#include "subs.h"

#ifndef URCU_VERSION
#define URCU_VERSION "unknown"
#endif

#define NIMPL 4
#define MAX_READER_COUNTS 8
#define MAX_READERS 64
#define MAX_SPIN_NS 1000000

/* src/reader.c: a blocking reader's spin before it parks (--spin-ns). */
extern _Atomic uint32_t __eventbuf_reader_spin_ns;

static const struct bench_impl *impls[NIMPL] = {
	&bench_impl_rcu, &bench_impl_mutex, &bench_impl_mutex_batch,
	&bench_impl_rwlock,
};

struct options {
	uint64_t n;
	int reps;
	uint64_t wake_samples;
	const char *out;
	const char *only;	/* comma-separated workloads; NULL: all */
	bool quick;
	bool progress;		/* each fan-out run's figure to stderr */
	int readers[MAX_READER_COUNTS];	/* fanout's reader counts */
	int nreaders;
};

static struct options opt = {
	.n = 2000000, .reps = 5, .wake_samples = 20000, .out = ".",
	.readers = { 1, 2, 4, 8 }, .nreaders = 4,
};

/* ------------------------------------------------------------------ */
/* Release accounting and clocks                                       */
/* ------------------------------------------------------------------ */

_Atomic uint64_t bench_release_count;
_Atomic uint64_t bench_release_last_ns;
static _Atomic uint64_t release_watch = UINT64_MAX;

/* Counts releases; stamps the time only near the count the harness waits
 * for, so that the clock is not read for every item. */
void bench_released(uint64_t n)
{
	uint64_t c = atomic_fetch_add_explicit(&bench_release_count, n,
					       memory_order_relaxed) + n;

	if (c >= atomic_load_explicit(&release_watch, memory_order_relaxed))
		atomic_store_explicit(&bench_release_last_ns, bench_now_ns(),
				      memory_order_relaxed);
}

static void quiesce(const struct bench_impl *impl)
{
	if (impl->quiesce)
		impl->quiesce();
}

/* ------------------------------------------------------------------ */
/* Results                                                             */
/* ------------------------------------------------------------------ */

struct result {
	char workload[16];
	int readers;		/* -1: the workload has none */
	uint64_t n;
	char metric[20];
	bool higher_better;
	int extra;		/* 1: an extra column (the wake floor) */
	double v[NIMPL + 1][MAX_REPS];
	int nv[NIMPL + 1];
};

static struct result results[64];
static int nresults;

static struct result *result_get(const char *workload, int readers,
				 uint64_t n, const char *metric,
				 bool higher_better)
{
	struct result *r;

	for (int i = 0; i < nresults; i++) {
		r = &results[i];
		if (!strcmp(r->workload, workload) && r->readers == readers &&
		    r->n == n && !strcmp(r->metric, metric))
			return r;
	}
	if (nresults == 64)
		bench_die("too many results", ENOSPC);
	r = &results[nresults++];
	memset(r, 0, sizeof(*r));
	snprintf(r->workload, sizeof(r->workload), "%s", workload);
	snprintf(r->metric, sizeof(r->metric), "%s", metric);
	r->readers = readers;
	r->n = n;
	r->higher_better = higher_better;
	return r;
}

static void record(const char *workload, int readers, uint64_t n,
		   const char *metric, bool higher_better, int impl, double v)
{
	struct result *r = result_get(workload, readers, n, metric,
				      higher_better);

	if (impl == NIMPL)
		r->extra = 1;
	if (r->nv[impl] < MAX_REPS)
		r->v[impl][r->nv[impl]++] = v;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

double bench_median(const double *v, int n, double *lo, double *hi)
{
	double s[MAX_REPS];

	if (n == 0)
		return 0;
	memcpy(s, v, n * sizeof(*v));
	qsort(s, n, sizeof(*s), cmp_double);
	if (lo)
		*lo = s[0];
	if (hi)
		*hi = s[n - 1];
	return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

/*
 * rcu against the best lock-based implementation, per repetition, so that
 * > 1 always means rcu is better; the median of those ratios.
 */
static double ratio(const struct result *r, double *lo, double *hi)
{
	double q[MAX_REPS];
	int n = r->nv[0];

	for (int k = 0; k < n; k++) {
		double best = r->higher_better ? 0 : 1e300;

		for (int i = 1; i < NIMPL; i++) {
			double v = r->v[i][k];

			best = r->higher_better ? (v > best ? v : best)
						: (v < best ? v : best);
		}
		if (r->higher_better)
			q[k] = best > 0 ? r->v[0][k] / best : 0;
		else
			q[k] = r->v[0][k] > 0 ? best / r->v[0][k] : 0;
	}
	return bench_median(q, n, lo, hi);
}

/* ------------------------------------------------------------------ */
/* append: 1 writer, no reader                                          */
/* ------------------------------------------------------------------ */

static void run_append(int i, uint64_t n)
{
	const struct bench_impl *impl = impls[i];
	void *list = impl->create();
	uint64_t t0, t1, rss0, rss1;
	int ret;

	if (!list)
		bench_die("create", ENOMEM);
	/*
	 * Warm up until the reclamation cycle has reached its steady state
	 * (a quarter of the run, and at least 200 ms: many callback periods),
	 * then measure; RSS must not grow from there on. The clock is read
	 * once per block of appends, not per append: a warm-up that appends
	 * slower than the timed loop leaves a pool sized for fewer items per
	 * callback period, and the timed loop then grows it.
	 */
	t0 = bench_now_ns();
	for (uint64_t k = 0; k < n / 4 || bench_now_ns() - t0 < 200000000;)
		for (uint64_t end = k + 4096; k < end; k++)
			if ((ret = impl->append(list, k, 0)))
				bench_die("append", ret);
	rss0 = bench_rss_kb();
	t0 = bench_now_ns();
	for (uint64_t k = 0; k < n; k++)
		if ((ret = impl->append(list, k, 0)))
			bench_die("append", ret);
	t1 = bench_now_ns();
	rss1 = bench_rss_kb();
	impl->destroy(list);
	quiesce(impl);
	record("append", -1, n, "ns_per_append", false, i,
	       (double)(t1 - t0) / (double)n);
	record("append", -1, n, "mappends_per_s", true, i,
	       (double)n * 1e3 / (double)(t1 - t0));
	record("append", -1, n, "rss_growth_kb", false, i,
	       rss1 > rss0 ? (double)(rss1 - rss0) : 0);
}

/* ------------------------------------------------------------------ */
/* fanout and fanout-epoll                                              */
/* ------------------------------------------------------------------ */

struct reader_ctx {
	const struct bench_impl *impl;
	void *reader;
	uint64_t n;
	bool epoll;
	pthread_barrier_t *go;
	/* what it saw */
	uint64_t count, expected, bad;
	int error;
	/* wake workload */
	uint64_t *lat_ns;
	int ready_fd;
	pid_t tid;
};

static void check_one(void *arg, uint64_t index, uint64_t stamp)
{
	struct reader_ctx *c = arg;

	(void)stamp;
	if (index != c->expected)
		c->bad++;
	c->expected = index + 1;
	c->count++;
}

static int epoll_loop(struct reader_ctx *c, bench_consume_fn fn)
{
	struct epoll_event ev;
	int ep = epoll_create1(EPOLL_CLOEXEC), fd, ret = 0;

	if (ep < 0)
		return -errno;
	while (c->count < c->n) {
		long got = c->impl->consume(c->reader, fn, c, false);

		if (got < 0) {
			ret = (int)got;
			break;
		}
		if (c->count >= c->n)
			break;
		ret = c->impl->wait_fd(c->reader, &fd);
		if (ret == -EALREADY) {
			ret = 0;
			continue;
		}
		if (ret < 0)
			break;
		if (ret == 1) {
			ev.events = EPOLLIN | EPOLLET;
			ev.data.ptr = c;
			if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev)) {
				ret = -errno;
				break;
			}
		}
		if (c->ready_fd >= 0) {
			static const uint64_t one = 1;

			if (write(c->ready_fd, &one, sizeof(one)) < 0)
				bench_die("ready", errno);
		}
		ret = epoll_wait(ep, &ev, 1, 60000);
		if (ret <= 0) {
			ret = ret ? -errno : -ETIMEDOUT;
			break;
		}
		c->impl->woken(c->reader);
		ret = 0;
	}
	close(ep);
	return ret < 0 ? ret : 0;
}

static void *fanout_reader(void *arg)
{
	struct reader_ctx *c = arg;

	pthread_barrier_wait(c->go);
	if (c->epoll) {
		c->error = epoll_loop(c, check_one);
		return NULL;
	}
	while (c->count < c->n) {
		long got = c->impl->consume(c->reader, check_one, c, true);

		if (got < 0) {
			c->error = (int)got;
			break;
		}
	}
	return NULL;
}

struct sampler {
	_Atomic bool stop;
	int peak;
};

static void *sample_eventfds(void *arg)
{
	struct sampler *s = arg;
	const struct timespec tick = { 0, 1000000 };

	while (!atomic_load(&s->stop)) {
		int n = count_eventfds();

		s->peak = n > s->peak ? n : s->peak;
		nanosleep(&tick, NULL);
	}
	return NULL;
}

/* Returns delivered Mevents/s; *writer_ns gets the writer's ns/append. */
static double run_fanout(int i, int nreaders, uint64_t n, bool epoll,
			 double *writer_ns, int *peak_fds)
{
	const struct bench_impl *impl = impls[i];
	struct reader_ctx ctx[64];
	pthread_t tid[64], stid;
	struct sampler smp = { .peak = 0 };
	pthread_barrier_t go;
	uint64_t t0, t1, t2;
	void *list = impl->create();
	int ret;

	if (!list)
		bench_die("create", ENOMEM);
	pthread_barrier_init(&go, NULL, nreaders + 1);
	for (int k = 0; k < nreaders; k++) {
		ctx[k] = (struct reader_ctx){
			.impl = impl, .n = n, .epoll = epoll, .go = &go,
			.expected = 0, .ready_fd = -1,
		};
		/* Positioned before the writer starts. */
		ctx[k].reader = impl->reader_new(list);
		if (!ctx[k].reader)
			bench_die("reader_new", ENOMEM);
		pthread_create(&tid[k], NULL, fanout_reader, &ctx[k]);
	}
	if (peak_fds)
		pthread_create(&stid, NULL, sample_eventfds, &smp);
	pthread_barrier_wait(&go);
	t0 = bench_now_ns();
	for (uint64_t k = 0; k < n; k++)
		if ((ret = impl->append(list, k, 0)))
			bench_die("append", ret);
	t1 = bench_now_ns();
	for (int k = 0; k < nreaders; k++)
		pthread_join(tid[k], NULL);
	t2 = bench_now_ns();
	if (peak_fds) {
		atomic_store(&smp.stop, true);
		pthread_join(stid, NULL);
		*peak_fds = smp.peak;
	}
	for (int k = 0; k < nreaders; k++) {
		if (ctx[k].error || ctx[k].bad || ctx[k].count != n) {
			fprintf(stderr, "bench: %s reader %d: error %d, %" PRIu64
				"/%" PRIu64 " events, %" PRIu64 " out of order\n",
				impl->name, k, ctx[k].error, ctx[k].count, n,
				ctx[k].bad);
			exit(1);
		}
		impl->reader_free(ctx[k].reader);
	}
	impl->destroy(list);
	quiesce(impl);
	pthread_barrier_destroy(&go);
	*writer_ns = (double)(t1 - t0) / (double)n;
	return (double)nreaders * (double)n * 1e3 / (double)(t2 - t0);
}

/* ------------------------------------------------------------------ */
/* wake: one idle reader blocked in epoll, one timestamped append        */
/* ------------------------------------------------------------------ */

static void take_latency(void *arg, uint64_t index, uint64_t stamp)
{
	struct reader_ctx *c = arg;

	c->lat_ns[index] = bench_now_ns() - stamp;
	c->count++;
}

static void *wake_reader(void *arg)
{
	struct reader_ctx *c = arg;

	c->tid = gettid();
	pthread_barrier_wait(c->go);
	c->error = epoll_loop(c, take_latency);
	return NULL;
}

/* The floor: a bare eventfd handed from one thread to another. */
struct floor_ctx {
	int efd, ready_fd;
	uint64_t n, *lat_ns;
	_Atomic uint64_t stamp;
	pthread_barrier_t *go;
	pid_t tid;
	int error;
};

static void *floor_reader(void *arg)
{
	struct floor_ctx *f = arg;
	struct epoll_event ev = { .events = EPOLLIN };
	int ep = epoll_create1(EPOLL_CLOEXEC);
	static const uint64_t one = 1;
	uint64_t v;

	f->tid = gettid();
	if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, f->efd, &ev)) {
		f->error = -errno;
		return NULL;
	}
	pthread_barrier_wait(f->go);
	for (uint64_t k = 0; k < f->n; k++) {
		if (write(f->ready_fd, &one, sizeof(one)) < 0 ||
		    epoll_wait(ep, &ev, 1, 60000) != 1) {
			f->error = -ETIMEDOUT;
			break;
		}
		f->lat_ns[k] = bench_now_ns() - atomic_load(&f->stamp);
		if (read(f->efd, &v, sizeof(v)) < 0)
			f->error = -errno;
	}
	close(ep);
	return NULL;
}

/* Block until the reader said it is about to sleep and is seen asleep. */
static void wait_reader_asleep(int ready_fd, pid_t tid)
{
	const struct timespec pause = { 0, 20000 };
	char path[64], buf[256];
	uint64_t v;

	if (read(ready_fd, &v, sizeof(v)) < 0)
		bench_die("ready", errno);
	snprintf(path, sizeof(path), "/proc/self/task/%d/stat", (int)tid);
	for (int tries = 0; tries < 5000; tries++) {
		FILE *f;
		char *p;

		nanosleep(&pause, NULL);
		f = fopen(path, "r");
		if (!f)
			return;
		p = fgets(buf, sizeof(buf), f) ? strrchr(buf, ')') : NULL;
		fclose(f);
		if (p && p[1] == ' ' && p[2] == 'S')
			return;
	}
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return (x > y) - (x < y);
}

static void record_latency(const char *wl, int i, uint64_t *lat, uint64_t n)
{
	qsort(lat, n, sizeof(*lat), cmp_u64);
	record(wl, -1, n, "p50_us", false, i, lat[bench_rank(n, 500)] / 1e3);
	record(wl, -1, n, "p99_us", false, i, lat[bench_rank(n, 990)] / 1e3);
	record(wl, -1, n, "p999_us", false, i, lat[bench_rank(n, 999)] / 1e3);
}

/*
 * One repetition of wake: every implementation and the floor at once, each
 * with its own reader blocked in epoll, sampled one of each per round in an
 * order that rotates from round to round. Scheduling drift on the VM lasts
 * longer than a round, so it hits every column alike instead of whichever
 * block of samples it fell into. Each sample starts with every reader
 * asleep: the one just woken is seen asleep again before the next append,
 * so that no wake-up competes with the previous reader for a core.
 *
 * Where a reader sleeps decides what its wake-up costs: onto the writer's
 * own CPU it takes no inter-processor interrupt, onto an idle vCPU of the
 * development VM about 27 us at p50. Unpinned, each reader's placement
 * was a lottery, and two of the five p99 columns sat at 30 us, the others
 * at 5-11, from one run to the next. So with two CPUs or more the threads
 * are pinned, twice per repetition: "wake", the writer on one CPU and
 * every reader on another (each wake-up crosses cores, as from a
 * publisher to event loops), and "wake-same", every thread on the
 * writer's CPU (the software path, without the interrupt).
 */
#define WAKE_SLOTS (NIMPL + 1)	/* the implementations, then the floor */

/* The first two CPUs this process may use; false if it has only one. */
static bool wake_cpus(int *writer, int *readers)
{
	cpu_set_t set;
	int found = 0;

	if (sched_getaffinity(0, sizeof(set), &set))
		return false;
	for (int cpu = 0; cpu < CPU_SETSIZE && found < 2; cpu++) {
		if (!CPU_ISSET(cpu, &set))
			continue;
		if (found++ == 0)
			*writer = cpu;
		else
			*readers = cpu;
	}
	return found == 2;
}

static void pin_thread(pthread_t t, int cpu)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	pthread_setaffinity_np(t, sizeof(set), &set);	/* best effort */
}

struct wake_slot {
	void *list;
	struct reader_ctx c;
	struct floor_ctx f;
	pthread_t tid;
	uint64_t *lat;
};

/*
 * The samples measure a writer in its steady state. A list's first
 * appends are not: the library's first slabs fault in their pages, one
 * fault per 57 items, and the lock-based lists' first nodes grow the
 * heap - about one sample in a hundred for the library, right where p99
 * sits. So each list first takes WAKE_WARM_UP appends, untimed, that its
 * reader (which starts after them) never sees; the samples follow at
 * once, before the library's pool can count the writer as idle and give
 * the pages back.
 */
#define WAKE_WARM_UP 5000

static void wake_warm_up(const struct bench_impl *impl, void *list)
{
	int ret;

	for (uint64_t k = 0; k < WAKE_WARM_UP; k++)
		if ((ret = impl->append(list, k, 0)))
			bench_die("append", ret);
}

static void wake_slot_start(struct wake_slot *w, int i, uint64_t n,
			    pthread_barrier_t *go)
{
	w->lat = calloc(n, sizeof(*w->lat));
	if (!w->lat)
		bench_die("wake", ENOMEM);
	if (i == NIMPL) {
		w->f = (struct floor_ctx){ .n = n, .lat_ns = w->lat, .go = go };
		w->f.efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		w->f.ready_fd = eventfd(0, EFD_CLOEXEC | EFD_SEMAPHORE);
		pthread_create(&w->tid, NULL, floor_reader, &w->f);
		return;
	}
	w->list = impls[i]->create();
	if (!w->list)
		bench_die("wake", ENOMEM);
	wake_warm_up(impls[i], w->list);
	w->c = (struct reader_ctx){ .impl = impls[i], .n = n,
				    .lat_ns = w->lat, .go = go };
	w->c.ready_fd = eventfd(0, EFD_CLOEXEC | EFD_SEMAPHORE);
	w->c.reader = impls[i]->reader_new(w->list);
	pthread_create(&w->tid, NULL, wake_reader, &w->c);
}

static void wake_slot_asleep(struct wake_slot *w, int i)
{
	if (i == NIMPL)
		wait_reader_asleep(w->f.ready_fd, w->f.tid);
	else
		wait_reader_asleep(w->c.ready_fd, w->c.tid);
}

static void wake_slot_signal(struct wake_slot *w, int i, uint64_t k)
{
	static const uint64_t one = 1;
	int ret;

	if (i == NIMPL) {
		atomic_store(&w->f.stamp, bench_now_ns());
		if (write(w->f.efd, &one, sizeof(one)) < 0)
			bench_die("floor", errno);
		return;
	}
	if ((ret = impls[i]->append(w->list, k, bench_now_ns())))
		bench_die("append", ret);
}

static void wake_slot_finish(const char *wl, struct wake_slot *w, int i,
			     uint64_t n)
{
	pthread_join(w->tid, NULL);
	if (i == NIMPL) {
		if (w->f.error)
			bench_die("floor reader", w->f.error);
		close(w->f.efd);
		close(w->f.ready_fd);
	} else {
		if (w->c.error || w->c.count != n)
			bench_die("wake reader",
				  w->c.error ? w->c.error : EPROTO);
		impls[i]->reader_free(w->c.reader);
		impls[i]->destroy(w->list);
		quiesce(impls[i]);
		close(w->c.ready_fd);
	}
	record_latency(wl, i, w->lat, n);
	free(w->lat);
}

/* @same: the readers on the writer's CPU rather than on another one. */
static void run_wake(uint64_t n, bool same)
{
	struct wake_slot slots[WAKE_SLOTS];
	int writer_cpu = 0, reader_cpu = 0;
	bool pinned = wake_cpus(&writer_cpu, &reader_cpu);
	const char *wl = same ? "wake-same" : "wake";
	pthread_barrier_t go;
	cpu_set_t saved;

	if (same && !pinned)
		return;		/* one CPU: "wake" is that case already */
	if (same)
		reader_cpu = writer_cpu;
	memset(slots, 0, sizeof(slots));
	sched_getaffinity(0, sizeof(saved), &saved);
	pthread_barrier_init(&go, NULL, WAKE_SLOTS + 1);
	for (int i = 0; i < WAKE_SLOTS; i++) {
		wake_slot_start(&slots[i], i, n, &go);
		if (pinned)
			pin_thread(slots[i].tid, reader_cpu);
	}
	if (pinned)
		pin_thread(pthread_self(), writer_cpu);
	pthread_barrier_wait(&go);
	for (int i = 0; i < WAKE_SLOTS; i++)
		wake_slot_asleep(&slots[i], i);
	for (uint64_t k = 0; k < n; k++) {
		for (int j = 0; j < WAKE_SLOTS; j++) {
			int i = (int)((k + (uint64_t)j) % WAKE_SLOTS);

			wake_slot_signal(&slots[i], i, k);
			if (k + 1 < n)
				wake_slot_asleep(&slots[i], i);
		}
	}
	for (int i = 0; i < WAKE_SLOTS; i++)
		wake_slot_finish(wl, &slots[i], i, n);
	pthread_barrier_destroy(&go);
	if (pinned)
		pthread_setaffinity_np(pthread_self(), sizeof(saved), &saved);
}

/* ------------------------------------------------------------------ */
/* retained: a reader holds the first item while N are appended         */
/* ------------------------------------------------------------------ */

static void run_retained(int i, uint64_t n)
{
	const struct bench_impl *impl = impls[i];
	uint64_t heap0, heap1, rss0, rss1, released0, t0, grew;
	void *list = impl->create(), *holder;
	int ret;

	if (!list)
		bench_die("create", ENOMEM);
	holder = impl->reader_new(list);
	if (!holder)
		bench_die("reader_new", ENOMEM);
	quiesce(impl);
	heap0 = bench_heap_bytes();
	rss0 = bench_rss_kb();
	for (uint64_t k = 0; k < n; k++)
		if ((ret = impl->append(list, k, 0)))
			bench_die("append", ret);
	heap1 = bench_heap_bytes();
	rss1 = bench_rss_kb();
	/*
	 * malloc()'s in-use bytes, or the resident memory if that grew more:
	 * eventbuf's slabs are mapped directly, and malloc() may reuse pages
	 * that were already resident.
	 */
	grew = heap1 > heap0 ? heap1 - heap0 : 0;	/* either may shrink */
	if (rss1 > rss0 && (rss1 - rss0) * 1024 > grew)
		grew = (rss1 - rss0) * 1024;
	released0 = atomic_load(&bench_release_count);
	/* Stamp the releases from the last few on. */
	atomic_store(&release_watch, released0 + n - 2);
	atomic_store(&bench_release_last_ns, 0);
	t0 = bench_now_ns();
	impl->reader_free(holder);
	quiesce(impl);
	if (atomic_load(&bench_release_count) - released0 < n - 1)
		bench_die("retained: not every item was released", EPROTO);
	record("retained", -1, n, "bytes_per_item", false, i,
	       (double)grew / (double)n);
	record("retained", -1, n, "reclaim_ms", false, i,
	       (double)(atomic_load(&bench_release_last_ns) - t0) / 1e6);
	record("retained", -1, n, "rss_after_kb", false, i, (double)bench_rss_kb());
	atomic_store(&release_watch, UINT64_MAX);
	impl->destroy(list);
	quiesce(impl);
}

/* ------------------------------------------------------------------ */
/* Output                                                              */
/* ------------------------------------------------------------------ */

static void banner(void)
{
	char model[256] = "unknown", line[512];
	struct utsname u;
	FILE *f = fopen("/proc/cpuinfo", "r");

	while (f && fgets(line, sizeof(line), f)) {
		char *colon = strchr(line, ':');

		if (!strncmp(line, "model name", 10) && colon) {
			snprintf(model, sizeof(model), "%s", colon + 2);
			model[strcspn(model, "\n")] = '\0';
			break;
		}
	}
	if (f)
		fclose(f);
	uname(&u);
	printf("eventbuf %s benchmark\n", EVENTBUF_VERSION_STRING);
	printf("machine: %ld cores, %s, kernel %s %s\n",
	       sysconf(_SC_NPROCESSORS_ONLN), model, u.sysname, u.release);
	printf("liburcu %s (bp flavor), compiler gcc %s\n", URCU_VERSION,
	       __VERSION__);
	if (__eventbuf_reader_spin_ns)
		printf("eventbuf's blocking readers spin up to %u ns before they park\n",
		       (unsigned int)__eventbuf_reader_spin_ns);
	printf("n=%" PRIu64 ", %d repetitions (median [min-max]), wake %"
	       PRIu64 " samples per implementation, one of each per round\n\n",
	       opt.n, opt.reps,
	       opt.wake_samples);
}

static const char *impl_name(int i)
{
	return i == NIMPL ? "floor" : impls[i]->name;
}

static void print_table(void)
{
	printf("\n%-13s %-3s %-15s", "workload", "R", "metric");
	for (int i = 0; i < NIMPL; i++)
		printf(" %-22s", impls[i]->name);
	printf(" %s\n", "rcu vs best lock (>1: rcu better)");
	for (int k = 0; k < nresults; k++) {
		struct result *r = &results[k];
		double lo, hi, m;
		char rd[12] = "-";

		if (r->readers >= 0)
			snprintf(rd, sizeof(rd), "%d", r->readers);
		printf("%-13s %-3s %-15s", r->workload, rd, r->metric);
		for (int i = 0; i < NIMPL; i++) {
			char cell[64];

			m = bench_median(r->v[i], r->nv[i], &lo, &hi);
			snprintf(cell, sizeof(cell), "%.4g [%.3g-%.3g]", m, lo, hi);
			printf(" %-22s", cell);
		}
		m = ratio(r, &lo, &hi);
		if (m > 0)
			printf(" %.2fx [%.2f-%.2f]", m, lo, hi);
		else
			printf(" -");
		if (r->extra) {
			double f = bench_median(r->v[NIMPL], r->nv[NIMPL], NULL, NULL);

			printf("  floor %.4g, rcu %.2fx the floor", f,
			       f > 0 ? bench_median(r->v[0], r->nv[0], NULL, NULL) / f : 0);
		}
		printf("\n");
	}
	printf("\n");
}

static void print_lines(void)
{
	for (int k = 0; k < nresults; k++) {
		struct result *r = &results[k];

		for (int i = 0; i <= NIMPL; i++) {
			char readers[32] = "";

			if (!r->nv[i])
				continue;
			if (r->readers >= 0)
				snprintf(readers, sizeof(readers), " readers=%d",
					 r->readers);
			printf("bench workload=%s impl=%s%s n=%" PRIu64
			       " metric=%s value=%.4g\n", r->workload,
			       impl_name(i), readers, r->n, r->metric,
			       bench_median(r->v[i], r->nv[i], NULL, NULL));
		}
	}
}

static bool want(const char *workload);

/* One panel per fan-out workload that ran, x ticks at the reader counts. */
static void write_plot_script(char *path, size_t size)
{
	bool ran[2] = { want("fanout"), want("fanout-epoll") };
	FILE *f;

	snprintf(path, size, "%s/fanout.gp", opt.out);
	f = fopen(path, "w");
	if (!f)
		bench_die(path, errno);
	fprintf(f,
		"set terminal pngcairo size %d,460 font ',10'\n"
		"set output '%s/fanout.png'\n"
		"set key top left\n"
		"set grid\n"
		"set logscale x 2\n"
		"set xtics (",
		ran[0] && ran[1] ? 1100 : 600, opt.out);
	for (int k = 0; k < opt.nreaders; k++)
		fprintf(f, "%s%d", k ? ", " : "", opt.readers[k]);
	fprintf(f, ")\n"
		"set xrange [%g:%g]\n"
		"set xlabel 'readers'\n"
		"set ylabel 'delivered Mevents/s (median of %d)'\n"
		"set yrange [0:*]\n"
		"set multiplot layout 1,%d title 'eventbuf fan-out, n=%" PRIu64 "'\n",
		opt.readers[0] * 0.8, opt.readers[opt.nreaders - 1] * 1.25,
		opt.reps, ran[0] + ran[1], opt.n);
	for (int w = 0; w < 2; w++) {
		if (!ran[w])
			continue;
		fprintf(f, "set title '%s'\nplot ", w ? "fanout-epoll" : "fanout");
		for (int i = 0; i < NIMPL; i++)
			fprintf(f, "%s'%s/fanout.dat' index %d with linespoints lw 2 pt 7 title '%s'",
				i ? ", " : "", opt.out, w * NIMPL + i,
				impls[i]->name);
		fprintf(f, "\n");
	}
	fprintf(f, "unset multiplot\n");
	fclose(f);
}

static void write_csv_and_plot(void)
{
	char path[4096];
	FILE *f;

	if (!want("fanout") && !want("fanout-epoll"))
		return;

	snprintf(path, sizeof(path), "%s/fanout.csv", opt.out);
	f = fopen(path, "w");
	if (!f)
		bench_die(path, errno);
	fprintf(f, "workload,readers,impl,mevents_per_s,min,max\n");
	for (int k = 0; k < nresults; k++) {
		struct result *r = &results[k];

		if (strcmp(r->metric, "mevents_per_s"))
			continue;
		for (int i = 0; i < NIMPL; i++) {
			double lo, hi, m = bench_median(r->v[i], r->nv[i], &lo, &hi);

			fprintf(f, "%s,%d,%s,%.4g,%.4g,%.4g\n", r->workload,
				r->readers, impls[i]->name, m, lo, hi);
		}
	}
	fclose(f);
	printf("wrote %s\n", path);

	/* The same figures as gnuplot data blocks, one per line drawn. */
	snprintf(path, sizeof(path), "%s/fanout.dat", opt.out);
	f = fopen(path, "w");
	if (!f)
		bench_die(path, errno);
	for (int w = 0; w < 2; w++) {
		for (int i = 0; i < NIMPL; i++) {
			fprintf(f, "# %s %s\n", w ? "fanout-epoll" : "fanout",
				impls[i]->name);
			for (int k = 0; k < nresults; k++) {
				struct result *r = &results[k];

				if (strcmp(r->metric, "mevents_per_s") ||
				    strcmp(r->workload, w ? "fanout-epoll" : "fanout"))
					continue;
				fprintf(f, "%d %.4g\n", r->readers,
					bench_median(r->v[i], r->nv[i], NULL, NULL));
			}
			fprintf(f, "\n\n");
		}
	}
	fclose(f);

	write_plot_script(path, sizeof(path));
	snprintf(path, sizeof(path), "gnuplot %s/fanout.gp 2>&1", opt.out);
	if (system(path) == 0)
		printf("wrote %s/fanout.png\n", opt.out);
	else
		printf("gnuplot failed: no plot (the CSV is there)\n");
}

/* ------------------------------------------------------------------ */

static bool want(const char *workload)
{
	size_t len = strlen(workload);

	if (!opt.only)
		return true;
	for (const char *p = opt.only; *p; p += strcspn(p, ",")) {
		p += *p == ',';
		if (!strncmp(p, workload, len) && (p[len] == ',' || !p[len]))
			return true;
	}
	return false;
}

/* "1,2,4,8,16": fanout's reader counts, ascending, 1..MAX_READERS. */
static bool parse_readers(const char *list)
{
	char *end;

	opt.nreaders = 0;
	for (const char *p = list; *p; p = end + (*end == ',')) {
		long r = strtol(p, &end, 10);

		if (end == p || (*end && *end != ',') || r < 1 ||
		    r > MAX_READERS || opt.nreaders == MAX_READER_COUNTS ||
		    (opt.nreaders && r <= opt.readers[opt.nreaders - 1]))
			return false;
		opt.readers[opt.nreaders++] = (int)r;
	}
	return opt.nreaders > 0;
}

static void usage(void)
{
	fprintf(stderr,
		"usage: bench [--quick] [--n N] [--reps R] [--out DIR] [--only W[,W...]]\n"
		"             [--readers R[,R...]] [--progress] [--spin-ns NS]\n"
		"workloads: append fanout fanout-epoll wake retained fds subscribers\n"
		"--readers: fanout's reader counts, ascending, at most %d of 1..%d\n"
		"           (default 1,2,4,8)\n"
		"--progress: each fan-out run's figure on stderr as it ends\n"
		"--spin-ns:  eventbuf's blocking readers spin up to NS (<= %d) before\n"
		"            they park (default 0: they only yield)\n",
		MAX_READER_COUNTS, MAX_READERS, MAX_SPIN_NS);
	exit(2);
}

static void parse(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "quick", no_argument, NULL, 'q' },
		{ "n", required_argument, NULL, 'n' },
		{ "reps", required_argument, NULL, 'r' },
		{ "out", required_argument, NULL, 'o' },
		{ "only", required_argument, NULL, 'w' },
		{ "readers", required_argument, NULL, 'R' },
		{ "progress", no_argument, NULL, 'p' },
		{ "spin-ns", required_argument, NULL, 's' },
		{ NULL, 0, NULL, 0 },
	};
	unsigned long spin_ns;
	char *end;
	int c;

	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case 'q':
			opt.quick = true;
			opt.n = 200000;
			opt.wake_samples = 2000;
			break;
		case 'n':
			opt.n = strtoull(optarg, NULL, 0);
			break;
		case 'r':
			opt.reps = atoi(optarg);
			break;
		case 'o':
			opt.out = optarg;
			break;
		case 'w':
			opt.only = optarg;
			break;
		case 'R':
			if (!parse_readers(optarg))
				usage();
			break;
		case 'p':
			opt.progress = true;
			break;
		case 's':
			spin_ns = strtoul(optarg, &end, 10);
			if (*end || end == optarg || spin_ns > MAX_SPIN_NS)
				usage();
			__eventbuf_reader_spin_ns = (uint32_t)spin_ns;
			break;
		default:
			usage();
		}
	}
	if (opt.reps < 1 || opt.reps > MAX_REPS || opt.n < 1000)
		usage();
	mkdir(opt.out, 0755);
}

/* The k-th implementation to run in repetition @rep: each one goes first
 * in turn, so that none always inherits the previous run's aftermath. */
static int order(int rep, int k)
{
	return (rep + k) % NIMPL;
}

/*
 * Before the latency workload: let the system settle after the throughput
 * runs (the kernel still unmaps and compacts their memory for a while).
 */
static void settle(void)
{
	const struct timespec pause = { 0, 200000000 };

	nanosleep(&pause, NULL);
}

static void warm_up(void)
{
	double ns;

	for (int i = 0; i < NIMPL; i++)
		run_fanout(i, 2, opt.n / 10, false, &ns, NULL);
	nresults = 0;
}

int main(int argc, char **argv)
{
	uint64_t wake_per_rep;

	parse(argc, argv);
	banner();
	if (want("subscribers"))
		bench_subscribers_setup();
	warm_up();
	wake_per_rep = opt.wake_samples / (uint64_t)opt.reps;
	for (int rep = 0; rep < opt.reps; rep++) {
		fprintf(stderr, "repetition %d/%d\n", rep + 1, opt.reps);
		for (int k = 0; want("append") && k < NIMPL; k++)
			run_append(order(rep, k), opt.n);
		for (int e = 0; e < 2; e++) {
			const char *wl = e ? "fanout-epoll" : "fanout";

			for (int k = 0; want(wl) && k < opt.nreaders; k++) {
				for (int j = 0; j < NIMPL; j++) {
					int i = order(rep, j);
					double ns, mev;

					mev = run_fanout(i, opt.readers[k], opt.n,
							 e, &ns, NULL);
					record(wl, opt.readers[k], opt.n,
					       "mevents_per_s", true, i, mev);
					record(wl, opt.readers[k], opt.n,
					       "writer_ns", false, i, ns);
					if (opt.progress)
						fprintf(stderr, "  %s readers=%d %s: %.4g Mevents/s, writer %.4g ns\n",
							wl, opt.readers[k],
							impls[i]->name, mev, ns);
				}
			}
		}
		if (want("wake"))
			settle();
		if (want("wake"))
			run_wake(wake_per_rep, false);
		if (want("wake"))
			run_wake(wake_per_rep, true);
		for (int k = 0; want("retained") && k < NIMPL; k++)
			run_retained(order(rep, k), opt.n);
		for (int s = 0; want("fds") && s < 2; s++) {
			uint64_t n = s ? opt.n : opt.n / 8;

			for (int j = 0; j < NIMPL; j++) {
				int i = order(rep, j);
				double ns;
				int peak = 0;

				run_fanout(i, 8, n, true, &ns, &peak);
				record("fds", 8, n, "peak_eventfds", false, i, peak);
			}
		}
		if (want("subscribers"))
			bench_subscribers_run(rep, opt.quick);
	}
	if (nresults) {
		print_table();
		print_lines();
		write_csv_and_plot();
	}
	bench_subscribers_report(opt.out, opt.reps);
	return 0;
}

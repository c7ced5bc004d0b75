// SPDX-License-Identifier: LGPL-2.1-or-later
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "helpers.h"

void release_log_init(struct release_log *log, size_t n)
{
	log->n = n;
	log->count = calloc(n ? n : 1, sizeof(*log->count));
	atomic_init(&log->total, 0);
	atomic_init(&log->bad, 0);
	if (!log->count)
		abort();
}

void release_log_free(struct release_log *log)
{
	free((void *)log->count);
	log->count = NULL;
}

void release_log_cb(struct eventbuf_event *events, size_t n, void *arg)
{
	struct release_log *log = arg;

	for (size_t i = 0; i < n; i++) {
		if (events[i].index >= log->n) {
			atomic_fetch_add(&log->bad, 1);
			continue;
		}
		atomic_fetch_add(&log->count[events[i].index], 1);
	}
	atomic_fetch_add(&log->total, 1);
}

size_t release_log_count(struct release_log *log, size_t from, size_t to,
			 unsigned int times)
{
	size_t hits = 0;

	for (size_t i = from; i < to && i < log->n; i++)
		hits += atomic_load(&log->count[i]) == times;
	return hits;
}

int append_batch(struct eventbuf *buf, uint64_t idx, size_t n,
		 struct release_log *log)
{
	struct eventbuf_event ev[16];

	if (n > 16)
		return -E2BIG;
	for (size_t i = 0; i < n; i++) {
		ev[i].index = idx + i;
		ev[i].topic = "topic";
		ev[i].key = "key";
		ev[i].payload = NULL;
	}
	return eventbuf_append(buf, ev, n, log ? release_log_cb : NULL, log);
}

static struct buf_fixture buf_fixture;

static int buf_fixture_open(void **state, size_t log_size, bool head)
{
	struct buf_fixture *f = &buf_fixture;

	memset(f, 0, sizeof(*f));
	release_log_init(&f->log, log_size);
	if (eventbuf_new(&f->buf) || (head && eventbuf_head(f->buf, &f->start)))
		return -1;
	*state = f;
	return 0;
}

int buf_fixture_setup(void **state)
{
	return buf_fixture_open(state, 1024, false);
}

int buf_fixture_setup_head(void **state)
{
	return buf_fixture_open(state, 100000, true);
}

int buf_fixture_teardown(void **state)
{
	struct buf_fixture *f = *state;
	int ret;

	eventbuf_item_put(f->start);
	eventbuf_drop(f->buf);
	ret = expect_nothing_left();
	if (atomic_load(&f->log.bad))
		ret = -1;
	release_log_free(&f->log);
	return ret;
}

void head_readers_init(struct head_readers *hr, int nreaders)
{
	hr->tids = calloc(nreaders, sizeof(*hr->tids));
	assert_non_null(hr->tids);
	assert_int_equal(eventbuf_new(&hr->buf), 0);
	assert_int_equal(eventbuf_head(hr->buf, &hr->head), 0);
	assert_int_equal(pthread_barrier_init(&hr->go, NULL, nreaders + 1), 0);
}

void head_readers_free(struct head_readers *hr)
{
	pthread_barrier_destroy(&hr->go);
	eventbuf_item_put(hr->head);
	eventbuf_drop(hr->buf);
	free(hr->tids);
}

void reader_result_init(struct reader_result *r, uint64_t first)
{
	memset(r, 0, sizeof(*r));
	r->next_expected = first;
}

void reader_result_see(struct reader_result *r, const struct eventbuf_item *item)
{
	const struct eventbuf_event *ev = eventbuf_item_events(item);
	size_t n = eventbuf_item_count(item);

	for (size_t i = 0; i < n; i++) {
		if (ev[i].index != r->next_expected) {
			if (!r->out_of_order)
				r->first_bad = ev[i].index;
			r->out_of_order++;
		}
		r->next_expected = ev[i].index + 1;
		r->count++;
	}
}

int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

bool fd_readable(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };

	return poll(&p, 1, 0) == 1;
}

unsigned int test_seed(void)
{
	const char *env = getenv("EVENTBUF_TEST_SEED");
	unsigned int seed = env ? (unsigned int)strtoul(env, NULL, 0)
				: (unsigned int)time(NULL);

	printf("# seed %u (EVENTBUF_TEST_SEED=%u reproduces)\n", seed, seed);
	return seed;
}

uint64_t scaled(uint64_t n, uint64_t min)
{
	const char *env = getenv("EVENTBUF_TEST_SCALE");
	uint64_t scale = env ? strtoull(env, NULL, 0) : 1;

	if (scale < 1)
		scale = 1;
	return n / scale < min ? min : n / scale;
}

bool wait_until(bool (*pred)(void *arg), void *arg, int timeout_ms)
{
	int64_t deadline = now_ms() + timeout_ms;
	const struct timespec tick = { 0, 100000 };

	while (!pred(arg)) {
		if (now_ms() > deadline)
			return false;
		nanosleep(&tick, NULL);
	}
	return true;
}

int teardown_nothing_left(void **state)
{
	(void)state;
	return expect_nothing_left();
}

int warm_up_library(void **state)
{
	struct eventbuf *buf;

	(void)state;
	if (eventbuf_new(&buf))
		return -1;
	eventbuf_drop(buf);
	return expect_nothing_left();
}

int empty_snapshot(void *arg, const char *topic, const char *key,
		   struct eventbuf_snapshot *snap, uint64_t *index)
{
	(void)topic;
	(void)key;
	(void)snap;
	*index = (uintptr_t)arg;
	return 0;
}

bool under(unsigned int tools)
{
	unsigned int now = 0;

#ifdef EVENTBUF_TSAN
	now |= UNDER_TSAN;
#endif
	if (getenv("EVENTBUF_UNDER_VALGRIND"))
		now |= UNDER_VALGRIND;
	return (now & tools) != 0;
}

void skip_under(unsigned int tools, const char *why)
{
	if (!under(tools))
		return;
	printf("# skipped: %s\n", why);
	skip();
}

int expect_nothing_left(void)
{
	struct eventbuf_stats st;

	eventbuf_barrier();
	eventbuf_stats(&st);
	if (!st.live_items && !st.buffers && !st.readers && !st.open_eventfds &&
	    count_eventfds() == 0)
		return 0;
	fprintf(stderr, "leak: %llu items (%llu bytes), %llu buffers, %llu readers, %llu eventfds (%d in /proc)\n",
		(unsigned long long)st.live_items,
		(unsigned long long)st.live_bytes,
		(unsigned long long)st.buffers, (unsigned long long)st.readers,
		(unsigned long long)st.open_eventfds, count_eventfds());
	return -1;
}

long rss_kb(void)
{
	long pages = 0, resident = 0;
	FILE *f = fopen("/proc/self/statm", "r");

	if (f) {
		if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
			resident = 0;
		fclose(f);
	}
	return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

extern char **environ;

static const char *child_self;	/* argv[0]: /proc/self/exe is valgrind under it */

void child_case_run(const char *argv0, const struct child_case *cases,
		    size_t n)
{
	const char *name = getenv("EVENTBUF_CHILD_CASE");

	child_self = argv0;
	if (!name)
		return;
	for (size_t i = 0; i < n; i++)
		if (!strcmp(cases[i].name, name))
			exit(cases[i].fn());
	exit(126);
}

int child_case_status(const char *name, char *out, size_t size)
{
	int64_t deadline = now_ms() + 10000;
	int errpipe[2], status;
	size_t len = 0;
	pid_t pid;

	assert_int_equal(pipe(errpipe), 0);
	/*
	 * posix_spawn(), not fork(): it runs no fork handlers, and the
	 * library's (liburcu's) start a thread in the child, which
	 * ThreadSanitizer does not allow before the exec.
	 */
	{
		char *argv[] = { (char *)child_self, NULL };
		posix_spawn_file_actions_t fa;
		char var[256];
		char **envp;
		size_t n = 0;

		snprintf(var, sizeof(var), "EVENTBUF_CHILD_CASE=%s", name);
		while (environ[n])
			n++;
		envp = calloc(n + 2, sizeof(*envp));
		assert_non_null(envp);
		memcpy(envp, environ, n * sizeof(*envp));
		envp[n] = var;
		assert_int_equal(posix_spawn_file_actions_init(&fa), 0);
		assert_int_equal(posix_spawn_file_actions_adddup2(&fa, errpipe[1], 2), 0);
		assert_int_equal(posix_spawn_file_actions_addclose(&fa, errpipe[0]), 0);
		assert_int_equal(posix_spawn(&pid, child_self, &fa, NULL, argv,
					     envp), 0);
		posix_spawn_file_actions_destroy(&fa);
		free(envp);
	}
	close(errpipe[1]);
	for (;;) {
		struct pollfd p = { .fd = errpipe[0], .events = POLLIN };
		int64_t left = deadline - now_ms();
		ssize_t n;

		if (left <= 0 || poll(&p, 1, (int)left) != 1) {
			printf("# child %s still running after 10 s: killed\n",
			       name);
			kill(pid, SIGKILL);
			break;
		}
		n = read(errpipe[0], out + len, size - 1 - len);
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	out[len] = 0;
	close(errpipe[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	printf("# child %s said: %s", name, out);
	return status;
}

void expect_child_abort(const char *name, const char *a, const char *b)
{
	char out[4096];
	int status = child_case_status(name, out, sizeof(out));

	assert_true(WIFSIGNALED(status));
	assert_int_equal(WTERMSIG(status), SIGABRT);
	assert_non_null(strstr(out, a));
	assert_non_null(strstr(out, b));
}

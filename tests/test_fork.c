// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * fork(): a process that has buffers, a reader parked in another thread
 * and a publisher with a subscription forks; the child, with or without
 * exec, creates its own buffer, appends many items with no reader and
 * waits for reclamation: every item before the head is released and
 * eventbuf_barrier() returns. The parent waits for the child with a
 * deadline (a pidfd), kills it if it hangs, then checks that its own
 * reader and subscription still work.
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <eventbuf/poller.h>
#include <eventbuf/publisher.h>

#include "helpers.h"

#define CHILD_ITEMS 100000
#define CHILD_DEADLINE_MS 10000

static const char *self;	/* argv[0], to exec */
static _Atomic uint64_t released;

static void count_release(struct eventbuf_event *events, size_t n, void *arg)
{
	(void)events;
	(void)arg;
	atomic_fetch_add(&released, n);
}

/*
 * The child's work: 0 on success, else the step that failed. Runs without
 * cmocka (a forked child must not report into the parent's test run).
 */
static int child_work(void)
{
	struct eventbuf_subscribe_req req = { .topic = "c", .key = "k" };
	struct eventbuf_event ev = { .topic = "c", .key = "k" };
	const struct eventbuf_event *got;
	struct eventbuf_subscription *sub;
	struct eventbuf_publisher *pub;
	struct eventbuf_stats before, after;
	struct eventbuf *buf;
	size_t n;

	atomic_store(&released, 0);
	eventbuf_stats(&before);
	if (eventbuf_new(&buf))
		return 10;
	for (uint64_t i = 1; i <= CHILD_ITEMS; i++) {
		ev.index = i;
		if (eventbuf_append(buf, &ev, 1, count_release, NULL))
			return 11;
	}
	eventbuf_barrier();
	/* Everything but the head was released and freed. */
	if (atomic_load(&released) != CHILD_ITEMS - 1)
		return 12;
	eventbuf_stats(&after);
	if (after.live_items > before.live_items + 2)
		return 13;
	eventbuf_drop(buf);
	/* A publisher of its own works too. */
	if (eventbuf_publisher_new(NULL, &pub) ||
	    eventbuf_publisher_register(pub, "c", empty_snapshot, NULL, 0) ||
	    eventbuf_subscribe(pub, &req, &sub))
		return 14;
	if (eventbuf_sub_next(sub, 1000, -1, &got, &n) ||
	    !eventbuf_event_is_end_of_snapshot(got))
		return 15;
	ev.index = 1;
	if (eventbuf_publish(pub, &ev, 1, NULL, NULL) ||
	    eventbuf_sub_next(sub, 1000, -1, &got, &n) || got->index != 1)
		return 16;
	eventbuf_unsubscribe(sub);
	eventbuf_publisher_free(pub);
	eventbuf_barrier();
	return 0;
}

/*
 * A pipe whose write end only the child keeps (across exec too): its read
 * end reports hang-up when the child is gone. (A pidfd would do, but
 * valgrind does not know pidfd_open().)
 */
static int exit_pipe[2];

static void child_pipe_open(void)
{
	assert_int_equal(pipe(exit_pipe), 0);
}

/*
 * The end of a child that did not exec: it reports its result through the
 * pipe and kills itself, so that no exit-time check (valgrind's leak
 * check) runs on the parent's objects it inherited and may not free.
 */
static void child_end(int result)
{
	unsigned char c = (unsigned char)result;

	if (write(exit_pipe[1], &c, 1) != 1)
		_exit(100);
	raise(SIGKILL);
}

/*
 * Wait for @pid until the deadline; kill it if it is still running. Its
 * result: the byte it wrote, else its exit status (128 + signal).
 */
static int reap(pid_t pid)
{
	struct pollfd pfd = { .fd = exit_pipe[0], .events = POLLIN };
	int64_t deadline = now_ms() + CHILD_DEADLINE_MS;
	int status, result = -1;

	close(exit_pipe[1]);
	for (;;) {
		int64_t left = deadline - now_ms();
		unsigned char c;

		if (left <= 0 || poll(&pfd, 1, (int)left) == 0) {
			printf("# child %d still running after %d ms: killed\n",
			       (int)pid, CHILD_DEADLINE_MS);
			kill(pid, SIGKILL);
			break;
		}
		if (read(exit_pipe[0], &c, 1) != 1)
			break;	/* hang-up: the child is gone */
		result = c;
	}
	close(exit_pipe[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	if (result < 0)
		result = WIFEXITED(status) ? WEXITSTATUS(status) :
			 128 + WTERMSIG(status);
	printf("# child result %d\n", result);
	return result;
}

/*
 * ThreadSanitizer makes a child die if it starts a thread after a
 * multi-threaded fork, before any exec - and liburcu's fork handler does
 * (the child's call_rcu thread): these tests run in the other builds.
 */
static void skip_under_tsan(void)
{
	skip_under(UNDER_TSAN, "TSan: a thread started in a forked child");
}

/*
 * What the parent keeps alive across the fork. Static, so that a child
 * exits with the inherited objects - which it must not free - reachable:
 * valgrind then does not count them as the child's leaks.
 */
static struct parent {
	struct eventbuf *buf;
	struct eventbuf_item *start;
	pthread_t tid;
	int reader_ret;
	uint64_t reader_index;
	struct eventbuf_publisher *pub;
	struct eventbuf_subscription *sub;
} parent;

/* A reader parked in eventbuf_item_next() while the process forks. */
static void *parked_reader(void *arg)
{
	struct parent *p = arg;
	struct eventbuf_item *next = NULL;

	p->reader_ret = eventbuf_item_next(p->start, 10000, -1, &next);
	if (!p->reader_ret) {
		p->reader_index = eventbuf_item_events(next)[0].index;
		eventbuf_item_put(next);
	}
	return NULL;
}

static void parent_setup(struct parent *p)
{
	struct eventbuf_subscribe_req req = { .topic = "p", .key = "k" };
	const struct eventbuf_event *got;
	size_t n;

	assert_int_equal(eventbuf_new(&p->buf), 0);
	for (uint64_t i = 1; i <= 1000; i++)
		assert_int_equal(append_batch(p->buf, i, 1, NULL), 0);
	assert_int_equal(eventbuf_head(p->buf, &p->start), 0);
	assert_int_equal(pthread_create(&p->tid, NULL, parked_reader, p), 0);
	assert_int_equal(eventbuf_publisher_new(NULL, &p->pub), 0);
	assert_int_equal(eventbuf_publisher_register(p->pub, "p", empty_snapshot,
						     NULL, 0), 0);
	assert_int_equal(eventbuf_subscribe(p->pub, &req, &p->sub), 0);
	assert_int_equal(eventbuf_sub_next(p->sub, 1000, -1, &got, &n), 0);
	assert_true(eventbuf_event_is_end_of_snapshot(got));
}

/* After the child: the parent's reader and subscription still work. */
static void parent_check(struct parent *p)
{
	struct eventbuf_event ev = { .index = 7, .topic = "p", .key = "k" };
	const struct eventbuf_event *got;
	size_t n;

	assert_int_equal(append_batch(p->buf, 1001, 1, NULL), 0);
	assert_int_equal(pthread_join(p->tid, NULL), 0);
	assert_int_equal(p->reader_ret, 0);
	assert_int_equal(p->reader_index, 1001);
	assert_int_equal(eventbuf_publish(p->pub, &ev, 1, NULL, NULL), 0);
	assert_int_equal(eventbuf_sub_next(p->sub, 1000, -1, &got, &n), 0);
	assert_int_equal(got->index, 7);
	eventbuf_unsubscribe(p->sub);
	eventbuf_publisher_free(p->pub);
	eventbuf_item_put(p->start);
	eventbuf_drop(p->buf);
}

/* A fork while the parent is busy with the library (0 in the child). */
static pid_t fork_busy_parent(struct parent *p)
{
	pid_t pid;

	skip_under_tsan();
	memset(p, 0, sizeof(*p));
	parent_setup(p);
	child_pipe_open();
	pid = fork();
	assert_true(pid >= 0);
	return pid;
}

static void test_fork_child_reclaims(void **state)
{
	struct parent *p = &parent;
	pid_t pid;

	(void)state;
	pid = fork_busy_parent(p);
	if (pid == 0)
		child_end(child_work());
	assert_int_equal(reap(pid), 0);
	parent_check(p);
}

static void test_fork_exec_child_reclaims(void **state)
{
	struct parent *p = &parent;
	pid_t pid;

	(void)state;
	pid = fork_busy_parent(p);
	if (pid == 0) {
		char *argv[] = { (char *)self, NULL };

		setenv("EVENTBUF_FORK_CHILD", "1", 1);
		execv(self, argv);
		_exit(127);
	}
	assert_int_equal(reap(pid), 0);
	parent_check(p);
}

/* Forks in a row, the library busy in the parent each time. */
static void test_fork_repeated(void **state)
{
	struct parent *p = &parent;

	(void)state;
	skip_under_tsan();
	memset(p, 0, sizeof(*p));
	parent_setup(p);
	for (int i = 0; i < 3; i++) {
		pid_t pid;

		child_pipe_open();
		pid = fork();

		assert_true(pid >= 0);
		if (pid == 0)
			child_end(child_work());
		assert_int_equal(reap(pid), 0);
	}
	parent_check(p);
}

/*
 * The eventfd-ids (Linux's serial number of each eventfd file, from
 * /proc/self/fdinfo) this process holds now: a file is told apart from
 * another that got the same descriptor number.
 */
static int eventfd_ids(uint64_t *ids, int *fds, int max)
{
	int n = 0;

	for (int fd = 0; fd < 1024 && n < max; fd++) {
		char path[64], line[128];
		FILE *f;

		snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
		f = fopen(path, "r");
		if (!f)
			continue;
		while (fgets(line, sizeof(line), f))
			if (sscanf(line, "eventfd-id: %" SCNu64, &ids[n]) == 1) {
				if (fds)
					fds[n] = fd;
				n++;
			}
		fclose(f);
	}
	return n;
}

static bool id_in(uint64_t id, const uint64_t *ids, int n)
{
	for (int i = 0; i < n; i++)
		if (ids[i] == id)
			return true;
	return false;
}

/* A reader of @buf parks with @p: its link takes an eventfd. */
static struct eventbuf_reader *park_one(struct eventbuf_poller *p,
					struct eventbuf *buf)
{
	struct eventbuf_poll_event pe;
	const struct eventbuf_item *it;
	struct eventbuf_reader *r;
	struct eventbuf_item *head;

	if (eventbuf_head(buf, &head) || eventbuf_reader_new(head, &r))
		abort();
	eventbuf_item_put(head);
	if (eventbuf_poller_add_reader(p, r, NULL) ||
	    eventbuf_poller_ready(p, &pe, 1) != 1 ||
	    eventbuf_reader_next_nonblock(r, &it) != -EAGAIN)
		abort();
	return r;
}

/*
 * Either side of a fork: a new link gets a new eventfd file, none of the
 * ones that existed at the fork (pooled ones included), which the other
 * process shares. 0 or a failure code (the child exits with it).
 */
static int new_link_gets_new_file(const uint64_t *before, int nbefore)
{
	uint64_t after[64];
	struct eventbuf_poller *p;
	struct eventbuf_reader *r;
	struct eventbuf *buf;
	int n, fresh = 0;

	if (eventbuf_new(&buf) || eventbuf_poller_new(&p))
		return 1;
	r = park_one(p, buf);
	n = eventfd_ids(after, NULL, 64);
	for (int i = 0; i < n; i++)
		fresh += !id_in(after[i], before, nbefore);
	/* The poller's own eventfd is new too: the link's makes two. */
	eventbuf_reader_free(r);
	eventbuf_poller_free(p);
	eventbuf_drop(buf);
	eventbuf_barrier();
	return fresh == 2 ? 0 : 2;
}

/* Recycled eventfds stay with the process that made them. */
#define POOLED_LINKS 8	/* more than a thread's cache: its shard too */

static void test_fork_pooled_eventfds_not_shared(void **state)
{
	struct eventbuf_reader *r[POOLED_LINKS];
	struct eventbuf *bufs[POOLED_LINKS];
	struct eventbuf_poller *p;
	uint64_t before[64];
	int fds[64], dups[64], nbefore;
	pid_t pid;

	(void)state;
	skip_under_tsan();
	/* Links' eventfds, written, then back in this thread's cache and
	 * (past the cache) its shard: fdpool.c, "Descriptors go home". */
	assert_int_equal(eventbuf_poller_new(&p), 0);
	for (int i = 0; i < POOLED_LINKS; i++) {
		assert_int_equal(eventbuf_new(&bufs[i]), 0);
		r[i] = park_one(p, bufs[i]);
	}
	for (int i = 0; i < POOLED_LINKS; i++) {
		assert_int_equal(append_batch(bufs[i], 1, 1, NULL), 0);
		eventbuf_reader_free(r[i]);
	}
	eventbuf_poller_free(p);
	/* The pooled ones. */
	assert_true(count_eventfds() >= POOLED_LINKS);
	nbefore = eventfd_ids(before, fds, 64);
	/* Keep those files open here, so that Linux cannot give their ids
	 * to new eventfds once the library closes its descriptors. */
	for (int i = 0; i < nbefore; i++)
		assert_true((dups[i] = dup(fds[i])) >= 0);
	child_pipe_open();
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		child_end(new_link_gets_new_file(before, nbefore));
	assert_int_equal(reap(pid), 0);
	assert_int_equal(new_link_gets_new_file(before, nbefore), 0);
	for (int i = 0; i < nbefore; i++)
		close(dups[i]);
	for (int i = 0; i < POOLED_LINKS; i++)
		eventbuf_drop(bufs[i]);
}

/* Linux's eventfd-id of @fd, or 0. */
static uint64_t eventfd_id(int fd)
{
	uint64_t ids[64];
	int fds[64], n = eventfd_ids(ids, fds, 64);

	for (int i = 0; i < n; i++)
		if (fds[i] == fd)
			return ids[i];
	return 0;
}

/*
 * A reader keeps its descriptor from link to link, but not across a fork:
 * the child shares the file, so the parent's next link gets a new one.
 */
static void test_fork_kept_eventfd_not_reused(void **state)
{
	const struct eventbuf_item *it;
	struct eventbuf_reader *r;
	struct eventbuf_item *head;
	struct eventbuf *buf;
	int fd, again, keep_open;
	uint64_t id;
	pid_t pid;

	(void)state;
	skip_under_tsan();
	assert_int_equal(eventbuf_new(&buf), 0);
	assert_int_equal(eventbuf_head(buf, &head), 0);
	assert_int_equal(eventbuf_reader_new(head, &r), 0);
	eventbuf_item_put(head);
	assert_int_equal(eventbuf_reader_wait_fd(r, &fd), 1);
	assert_int_equal(append_batch(buf, 1, 1, NULL), 0);
	assert_int_equal(eventbuf_reader_next_nonblock(r, &it), 0);
	assert_int_equal(eventbuf_reader_wait_fd(r, &again), 0);
	assert_int_equal(again, fd);	/* kept */
	id = eventfd_id(fd);
	assert_true(id != 0);
	/* Keep the file open here, so that its id stays taken. */
	assert_true((keep_open = dup(fd)) >= 0);
	assert_int_equal(append_batch(buf, 2, 1, NULL), 0);
	assert_int_equal(eventbuf_reader_next_nonblock(r, &it), 0);
	child_pipe_open();
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		child_end(0);
	assert_int_equal(reap(pid), 0);
	assert_int_equal(eventbuf_reader_wait_fd(r, &fd), 1);
	assert_true(eventfd_id(fd) != id);
	eventbuf_reader_free(r);
	eventbuf_drop(buf);
	close(keep_open);
}

enum { BIG = 256, HELD = 16 };	/* a class nothing else here uses */

static void *hold_idle_blocks(void *arg)
{
	pthread_barrier_t *step = arg;
	void *b[HELD];

	for (int i = 0; i < HELD; i++)
		b[i] = __eventbuf_block_alloc(BIG);
	for (int i = 0; i < HELD; i++)
		__eventbuf_block_free(b[i], BIG);
	pthread_barrier_wait(step);	/* idle in this thread's list */
	pthread_barrier_wait(step);	/* the fork is done: exit */
	return NULL;
}

/*
 * Idle blocks in the list of a thread that does not exist in the child
 * (fewer than a batch, so not in the depot) are given to the child's
 * depot, where eventbuf_barrier() can free them: they are not lost.
 */
static void test_fork_child_adopts_idle_blocks(void **state)
{
	pthread_barrier_t step;
	pthread_t t;
	pid_t pid;

	(void)state;
	skip_under_tsan();
	eventbuf_barrier();
	assert_int_equal(__eventbuf_blocks_idle(BIG), 0);
	assert_int_equal(pthread_barrier_init(&step, NULL, 2), 0);
	assert_int_equal(pthread_create(&t, NULL, hold_idle_blocks, &step), 0);
	pthread_barrier_wait(&step);
	assert_int_equal(__eventbuf_blocks_idle(BIG), 0);
	child_pipe_open();
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		child_end(__eventbuf_blocks_idle(BIG) == HELD ? 0 : 1);
	assert_int_equal(reap(pid), 0);
	pthread_barrier_wait(&step);
	assert_int_equal(pthread_join(t, NULL), 0);
	pthread_barrier_destroy(&step);
	/* The thread's exit gave them to the parent's depot. */
	assert_int_equal(__eventbuf_blocks_idle(BIG), HELD);
	eventbuf_barrier();
	assert_int_equal(__eventbuf_blocks_idle(BIG), 0);
}

/*
 * The pollers a child inherits hold no slot for quiet signals there: with
 * every slot taken in the parent, the child's own poller still gets one,
 * and its eventbuf_barrier() returns (a freed poller's eventfd is closed
 * through call_rcu(), whose thread the child must have). The parent makes
 * pollers only, no buffer: pollers alone must set up the fork handlers.
 */
static int grandchild_quiet_poller(void)
{
	struct eventbuf_poll_event pe;
	struct eventbuf_poller_stats st;
	const struct eventbuf_item *it;
	struct eventbuf_poller *p;
	struct eventbuf_reader *r;
	struct eventbuf_item *head;
	struct eventbuf *buf;
	int ret = 1;

	if (eventbuf_poller_new(&p) || eventbuf_new(&buf))
		return 2;
	if (eventbuf_head(buf, &head) || eventbuf_reader_new(head, &r))
		return 3;
	eventbuf_item_put(head);
	if (eventbuf_poller_add_reader(p, r, NULL) ||
	    eventbuf_poller_ready(p, &pe, 1) != 1 ||
	    eventbuf_reader_next_nonblock(r, &it) != -EAGAIN ||
	    append_batch(buf, 0, 1, NULL) ||
	    eventbuf_poller_wait(p, &pe, 1, 5000, -1) != 1 ||
	    eventbuf_reader_next_nonblock(r, &it) ||
	    eventbuf_poller_stats(p, &st))
		return 4;
	if (st.quiet == 1)
		ret = 0;
	eventbuf_reader_free(r);
	eventbuf_poller_free(p);
	eventbuf_drop(buf);
	alarm(5);	/* a barrier that hangs fails the case */
	eventbuf_barrier();
	return ret;
}

#define PARENT_POLLERS 15	/* every slot (src/quiet.h) */

/* A child case: a process that has made no buffer. */
static int pollers_then_fork(void)
{
	struct eventbuf_poller *p[PARENT_POLLERS];
	int status;
	pid_t pid;

	for (int i = 0; i < PARENT_POLLERS; i++)
		if (eventbuf_poller_new(&p[i]))
			return 10;
	/* One freed and made again: call_rcu()'s thread runs now. */
	eventbuf_poller_free(p[0]);
	if (eventbuf_poller_new(&p[0]))
		return 11;
	if (pipe(exit_pipe))
		return 12;
	pid = fork();
	if (pid < 0)
		return 13;
	if (pid == 0)
		child_end(grandchild_quiet_poller());
	close(exit_pipe[1]);
	{
		unsigned char c = 14;

		if (read(exit_pipe[0], &c, 1) != 1)
			c = 15;		/* died without a result */
		waitpid(pid, &status, 0);
		for (int i = 0; i < PARENT_POLLERS; i++)
			eventbuf_poller_free(p[i]);
		eventbuf_barrier();
		return c;
	}
}

static void test_fork_child_gets_quiet_slot(void **state)
{
	char out[4096];
	int status;

	(void)state;
	skip_under_tsan();
	status = child_case_status("pollers_then_fork", out, sizeof(out));
	if (!WIFEXITED(status) || WEXITSTATUS(status))
		printf("# child: status %#x, said: %s\n", status, out);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

/*
 * A fork() from inside a snapshot handler: the child, still inside the
 * handler, creates and uses a publisher of its own (child_work()), which
 * the thread's "in a handler" mark must not refuse.
 */
static int fork_snapshot(void *arg, const char *topic, const char *key,
			 struct eventbuf_snapshot *snap, uint64_t *index)
{
	pid_t *pid = arg;

	(void)topic;
	(void)key;
	(void)snap;
	*index = 1;
	child_pipe_open();
	*pid = fork();
	if (*pid == 0)
		child_end(child_work());
	return *pid < 0 ? -errno : 0;
}

static void test_fork_in_snapshot_handler(void **state)
{
	struct eventbuf_subscribe_req req = { .topic = "f", .key = "k" };
	struct eventbuf_subscription *sub;
	struct eventbuf_publisher *pub;
	pid_t pid = -1;

	(void)state;
	skip_under_tsan();
	assert_int_equal(eventbuf_publisher_new(NULL, &pub), 0);
	assert_int_equal(eventbuf_publisher_register(pub, "f", fork_snapshot,
						     &pid, 0), 0);
	assert_int_equal(eventbuf_subscribe(pub, &req, &sub), 0);
	assert_true(pid > 0);
	assert_int_equal(reap(pid), 0);
	eventbuf_unsubscribe(sub);
	eventbuf_publisher_free(pub);
}

/*
 * A fork() from a release callback aborts with a message: run in the
 * call_rcu thread (as here, after eventbuf_barrier() queued it), it would
 * wait for that thread to pause, for ever.
 */
static void fork_release(struct eventbuf_event *events, size_t n, void *arg)
{
	pid_t pid;

	(void)events;
	(void)n;
	(void)arg;
	pid = fork();
	if (pid == 0)
		_exit(0);
	if (pid > 0)
		waitpid(pid, NULL, 0);
}

static int fork_in_release(void)
{
	struct eventbuf_event ev = { .index = 1 };
	struct eventbuf *buf;

	if (eventbuf_new(&buf) ||
	    eventbuf_append(buf, &ev, 1, fork_release, NULL) ||
	    eventbuf_append(buf, &ev, 1, NULL, NULL))
		return 2;
	eventbuf_barrier();	/* runs fork_release() */
	eventbuf_drop(buf);
	eventbuf_barrier();
	return 3;
}

static void test_fork_in_release_aborts(void **state)
{
	(void)state;
	expect_child_abort("fork_in_release", "fork()",
			   "called from a release callback");
}

static const struct child_case child_cases[] = {
	{ "fork_in_release", fork_in_release },
	{ "pollers_then_fork", pollers_then_fork },
};

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_fork_child_reclaims, teardown_nothing_left),
		cmocka_unit_test_teardown(test_fork_exec_child_reclaims, teardown_nothing_left),
		cmocka_unit_test_teardown(test_fork_repeated, teardown_nothing_left),
		cmocka_unit_test_teardown(test_fork_pooled_eventfds_not_shared,
					  teardown_nothing_left),
		cmocka_unit_test_teardown(test_fork_kept_eventfd_not_reused,
					  teardown_nothing_left),
		cmocka_unit_test_teardown(test_fork_child_adopts_idle_blocks,
					  teardown_nothing_left),
		cmocka_unit_test_teardown(test_fork_in_snapshot_handler,
					  teardown_nothing_left),
		cmocka_unit_test_teardown(test_fork_child_gets_quiet_slot,
					  teardown_nothing_left),
		cmocka_unit_test_teardown(test_fork_in_release_aborts,
					  teardown_nothing_left),
	};

	(void)argc;
	self = argv[0];
	child_case_run(argv[0], child_cases,
		       sizeof(child_cases) / sizeof(child_cases[0]));
	if (getenv("EVENTBUF_FORK_CHILD"))
		return child_work();
	return cmocka_run_group_tests_name("fork", tests, NULL, NULL);
}

// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * CONFIG_EVENTBUF_DEBUG: two threads inside an append on one buffer at the
 * same time abort with a clear message; appends from several threads that
 * the caller serialises do not. Linked against libeventbuf-debug.a.
 *
 * The overlap is made certain, not hoped for: the binary wraps malloc, and
 * the first append - a batch too big for a slab, so its item comes from
 * malloc() - blocks inside that allocation until the second append has
 * started. The scenario runs in a child process, which
 * must die of SIGABRT after printing the message.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <eventbuf/poller.h>
#include <eventbuf/publisher.h>

#include "helpers.h"

void *__real_malloc(size_t size);
void *__wrap_malloc(size_t size);

static _Atomic bool block_next_malloc;
static const char *self;	/* argv[0]: /proc/self/exe is valgrind under it */
static int inside_pipe[2];

void *__wrap_malloc(size_t size)
{
	if (atomic_exchange(&block_next_malloc, false)) {
		char c = 'x';

		if (write(inside_pipe[1], &c, 1) != 1)
			abort();
		for (;;)
			pause();	/* the other append aborts the process */
	}
	return __real_malloc(size);
}

/* A batch too big for a slab: its item comes from malloc(). */
static void *first_appender(void *arg)
{
	static struct eventbuf_event big[100];

	atomic_store(&block_next_malloc, true);
	return (void *)(intptr_t)eventbuf_append(arg, big, 100, NULL, NULL);
}

/* The child: returns only if the second append was not caught. */
static int two_writers(void)
{
	struct eventbuf *buf;
	pthread_t tid;
	char c;

	if (pipe(inside_pipe) || eventbuf_new(&buf) ||
	    pthread_create(&tid, NULL, first_appender, buf) ||
	    read(inside_pipe[0], &c, 1) != 1)
		return 2;
	/* The first append is inside eventbuf_append(), holding the buffer. */
	return append_batch(buf, 2, 1, NULL) == 0 ? 3 : 4;
}

static void test_debug_two_appenders_abort(void **state)
{
	char out[1024] = "";
	int errpipe[2], status;
	ssize_t n, len = 0;
	pid_t pid;

	(void)state;
	assert_int_equal(pipe(errpipe), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		char *argv[] = { (char *)self, NULL };

		dup2(errpipe[1], 2);
		setenv("EVENTBUF_TWO_WRITERS", "1", 1);
		execv(self, argv);
		_exit(127);
	}
	close(errpipe[1]);
	while ((n = read(errpipe[0], out + len, sizeof(out) - 1 - len)) > 0)
		len += n;
	close(errpipe[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	printf("# child said: %s", out);
	assert_true(WIFSIGNALED(status));
	assert_int_equal(WTERMSIG(status), SIGABRT);
	assert_non_null(strstr(out, "eventbuf_append(): two threads append to buffer"));
	assert_non_null(strstr(out, "single writer"));
}

/* The head's reference dropped twice: the second put has none to drop. */
static int double_put(void)
{
	struct eventbuf_item *head;
	struct eventbuf *buf;

	__eventbuf_slab_warmup = 0;	/* a slab item, as most are */
	if (eventbuf_new(&buf) || append_batch(buf, 1, 1, NULL) ||
	    eventbuf_head(buf, &head))
		return 2;
	eventbuf_item_put(head);
	eventbuf_item_put(head);
	return 3;
}

/* An item read after its last put, once reclamation freed it. */
static int use_after_put(void)
{
	struct eventbuf_item *item, *next;
	struct eventbuf *buf;

	__eventbuf_slab_warmup = 0;
	if (eventbuf_new(&buf) || append_batch(buf, 1, 1, NULL) ||
	    eventbuf_head(buf, &item))
		return 2;
	for (uint64_t i = 2; i <= 100; i++)
		if (append_batch(buf, i, 1, NULL))
			return 2;
	eventbuf_item_put(item);
	eventbuf_barrier();	/* item is freed: its slab lives on */
	return eventbuf_item_next_nonblock(item, &next) == 0 ? 3 : 4;
}

/* A put right after the last one, before reclamation ran. */
static int put_after_last_put(void)
{
	struct eventbuf_item *item;
	struct eventbuf *buf;

	__eventbuf_slab_warmup = 0;
	if (eventbuf_new(&buf) || append_batch(buf, 1, 1, NULL) ||
	    eventbuf_head(buf, &item) || append_batch(buf, 2, 1, NULL))
		return 2;
	eventbuf_barrier();	/* the pin moves past item */
	eventbuf_item_put(item);	/* queued for reclamation */
	eventbuf_item_put(item);
	return 3;
}

/*
 * A reference dropped twice, and an item used after its last put, abort
 * naming the call, whichever state the item has reached: still pinned,
 * queued for reclamation, or freed.
 */
static void test_debug_double_put_aborts(void **state)
{
	(void)state;
	expect_child_abort("double_put", "eventbuf_item_put(): item",
			   "reference underflow");
	/* queued for reclamation, or freed already by the time of the put */
	expect_child_abort("put_after_last_put", "eventbuf_item_put(): item",
			   "must drop a reference the caller holds, once");
	expect_child_abort("use_after_put", "eventbuf_item_next_nonblock(): item",
			   "was freed");
}

/*
 * A publish after eventbuf_publisher_free(). A subscription keeps the
 * publisher's memory, so this is a call on a freed handle, not (yet) a
 * read of freed memory.
 */
static int publish_after_free(void)
{
	struct eventbuf_subscribe_req req = { .topic = "t", .key = "k" };
	struct eventbuf_event ev = { .index = 1, .topic = "t", .key = "k" };
	const struct eventbuf_event *got;
	struct eventbuf_subscription *sub;
	struct eventbuf_publisher *pub;
	size_t n;

	if (eventbuf_publisher_new(NULL, &pub) ||
	    eventbuf_publisher_register(pub, "t", empty_snapshot, NULL, 0) ||
	    eventbuf_subscribe(pub, &req, &sub))
		return 2;
	eventbuf_publisher_free(pub);
	/* What stays allowed: the subscription. */
	if (eventbuf_sub_next_nonblock(sub, &got, &n) != -ESHUTDOWN)
		return 5;
	return eventbuf_publish(pub, &ev, 1, NULL, NULL) == -ESHUTDOWN ? 3 : 4;
}

static void test_debug_freed_publisher_aborts(void **state)
{
	(void)state;
	expect_child_abort("publish_after_free", "eventbuf_publish(): publisher",
			   "was freed by eventbuf_publisher_free()");
}

/*
 * Handles freed twice or used after their free call: subscriptions,
 * pollers and readers. Each child returns only if the call was not caught.
 */
static struct eventbuf_publisher *child_pub;

static struct eventbuf_subscription *child_sub(void)
{
	struct eventbuf_subscribe_req req = { .topic = "t", .key = "k" };
	struct eventbuf_subscription *sub;

	if (eventbuf_publisher_new(NULL, &child_pub) ||
	    eventbuf_publisher_register(child_pub, "t", empty_snapshot, NULL, 0) ||
	    eventbuf_subscribe(child_pub, &req, &sub))
		exit(2);
	return sub;
}

static int double_unsubscribe(void)
{
	struct eventbuf_subscription *sub = child_sub();

	eventbuf_unsubscribe(sub);
	eventbuf_unsubscribe(sub);
	return 3;
}

static int read_after_unsubscribe(void)
{
	struct eventbuf_subscription *sub = child_sub();
	const struct eventbuf_event *got;
	size_t n;

	eventbuf_unsubscribe(sub);
	return eventbuf_sub_next_nonblock(sub, &got, &n) ? 3 : 4;
}

static int attach_after_unsubscribe(void)
{
	struct eventbuf_subscription *sub = child_sub();
	struct eventbuf_poller *p;

	if (eventbuf_poller_new(&p))
		return 2;
	eventbuf_unsubscribe(sub);
	return eventbuf_poller_add_sub(p, sub, NULL) ? 3 : 4;
}

static int double_poller_free(void)
{
	struct eventbuf_poller *p;

	if (eventbuf_poller_new(&p))
		return 2;
	eventbuf_poller_free(p);
	eventbuf_poller_free(p);
	return 3;
}

static int poller_ready_after_free(void)
{
	struct eventbuf_poll_event evs[4];
	struct eventbuf_poller *p;

	if (eventbuf_poller_new(&p))
		return 2;
	eventbuf_poller_free(p);
	return eventbuf_poller_ready(p, evs, 4) ? 3 : 4;
}

static int attach_to_freed_poller(void)
{
	struct eventbuf_subscription *sub = child_sub();
	struct eventbuf_poller *p;

	if (eventbuf_poller_new(&p))
		return 2;
	eventbuf_poller_free(p);
	return eventbuf_poller_add_sub(p, sub, NULL) ? 3 : 4;
}

static struct eventbuf_reader *child_reader(void)
{
	struct eventbuf_item *start;
	struct eventbuf_reader *r;
	struct eventbuf *buf;

	if (eventbuf_new(&buf) || eventbuf_head(buf, &start) ||
	    eventbuf_reader_new(start, &r))
		exit(2);
	return r;
}

static int double_reader_free(void)
{
	struct eventbuf_reader *r = child_reader();

	eventbuf_reader_free(r);
	eventbuf_reader_free(r);
	return 3;
}

static int read_after_reader_free(void)
{
	struct eventbuf_reader *r = child_reader();
	const struct eventbuf_item *it;

	eventbuf_reader_free(r);
	return eventbuf_reader_next_nonblock(r, &it) ? 3 : 4;
}

static void test_debug_freed_handles_abort(void **state)
{
	(void)state;
	expect_child_abort("double_unsubscribe",
			   "eventbuf_unsubscribe(): subscription",
			   "was freed by eventbuf_unsubscribe()");
	expect_child_abort("read_after_unsubscribe",
			   "eventbuf_sub_next_nonblock(): subscription",
			   "was freed by eventbuf_unsubscribe()");
	expect_child_abort("attach_after_unsubscribe",
			   "eventbuf_poller_add_sub(): subscription",
			   "was freed by eventbuf_unsubscribe()");
	expect_child_abort("double_poller_free",
			   "eventbuf_poller_free(): poller",
			   "was freed by eventbuf_poller_free()");
	expect_child_abort("poller_ready_after_free",
			   "eventbuf_poller_ready(): poller",
			   "was freed by eventbuf_poller_free()");
	expect_child_abort("attach_to_freed_poller",
			   "eventbuf_poller_add_sub(): poller",
			   "was freed by eventbuf_poller_free()");
	expect_child_abort("double_reader_free",
			   "eventbuf_reader_free(): reader",
			   "was freed by eventbuf_reader_free()");
	expect_child_abort("read_after_reader_free",
			   "eventbuf_reader_next_nonblock(): reader",
			   "was freed by eventbuf_reader_free()");
}

static const struct child_case child_cases[] = {
	{ "double_put", double_put },
	{ "put_after_last_put", put_after_last_put },
	{ "use_after_put", use_after_put },
	{ "publish_after_free", publish_after_free },
	{ "double_unsubscribe", double_unsubscribe },
	{ "read_after_unsubscribe", read_after_unsubscribe },
	{ "attach_after_unsubscribe", attach_after_unsubscribe },
	{ "double_poller_free", double_poller_free },
	{ "poller_ready_after_free", poller_ready_after_free },
	{ "attach_to_freed_poller", attach_to_freed_poller },
	{ "double_reader_free", double_reader_free },
	{ "read_after_reader_free", read_after_reader_free },
};

struct serial {
	struct eventbuf *buf;
	pthread_mutex_t *lock;
	_Atomic uint64_t *next_index;
	int ret;
};

static void *serial_appender(void *arg)
{
	struct serial *s = arg;

	for (int i = 0; i < 5000 && !s->ret; i++) {
		pthread_mutex_lock(s->lock);
		s->ret = append_batch(s->buf, atomic_fetch_add(s->next_index, 1),
				      1, NULL);
		pthread_mutex_unlock(s->lock);
	}
	return NULL;
}

static void test_debug_serialised_appenders_pass(void **state)
{
	pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
	_Atomic uint64_t next_index = 0;
	struct eventbuf_item *start;
	const struct eventbuf_item *it;
	struct eventbuf_reader *r;
	struct reader_result res;
	struct serial s[2];
	pthread_t tid[2];
	struct eventbuf *buf;

	(void)state;
	assert_int_equal(eventbuf_new(&buf), 0);
	assert_int_equal(eventbuf_head(buf, &start), 0);
	for (int i = 0; i < 2; i++) {
		s[i] = (struct serial){ buf, &lock, &next_index, 0 };
		assert_int_equal(pthread_create(&tid[i], NULL, serial_appender, &s[i]), 0);
	}
	for (int i = 0; i < 2; i++) {
		assert_int_equal(pthread_join(tid[i], NULL), 0);
		assert_int_equal(s[i].ret, 0);
	}
	assert_int_equal(eventbuf_reader_new(start, &r), 0);
	reader_result_init(&res, 0);
	while (eventbuf_reader_next_nonblock(r, &it) == 0)
		reader_result_see(&res, it);
	assert_int_equal(res.count, 10000);
	assert_int_equal(res.out_of_order, 0);
	eventbuf_reader_free(r);
	eventbuf_item_put(start);
	eventbuf_drop(buf);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_debug_two_appenders_abort, teardown_nothing_left),
		cmocka_unit_test_teardown(test_debug_serialised_appenders_pass, teardown_nothing_left),
		cmocka_unit_test_teardown(test_debug_double_put_aborts, teardown_nothing_left),
		cmocka_unit_test_teardown(test_debug_freed_publisher_aborts, teardown_nothing_left),
		cmocka_unit_test_teardown(test_debug_freed_handles_abort, teardown_nothing_left),
	};

	(void)argc;
	self = argv[0];
	child_case_run(argv[0], child_cases,
		       sizeof(child_cases) / sizeof(child_cases[0]));
	if (getenv("EVENTBUF_TWO_WRITERS"))
		return two_writers();
	return cmocka_run_group_tests_name("debug", tests, NULL, NULL);
}

// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * A subscriber in an epoll loop: one writer thread appends events, the main
 * thread reads them from its own epoll set, never blocking anywhere but in
 * epoll_wait(). Run it: ./epoll_reader [count]
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <eventbuf/eventbuf.h>

struct writer_args {
	struct eventbuf *buf;
	uint64_t count;
};

/* The writer: one thread owns appends to the buffer. */
static void *writer(void *arg)
{
	struct writer_args *w = arg;
	struct eventbuf_event ev = { .topic = "orders", .key = "eu-west" };

	for (ev.index = 1; ev.index <= w->count; ev.index++) {
		if (eventbuf_append(w->buf, &ev, 1, NULL, NULL)) {
			fprintf(stderr, "append failed\n");
			break;
		}
		if (ev.index % 1000 == 0)
			usleep(100);	/* a writer with pauses, as in life */
	}
	return NULL;
}

/* Drain what is there, park, wait in epoll, repeat. */
static int read_all(struct eventbuf_reader *r, uint64_t count)
{
	const struct eventbuf_item *it;
	struct epoll_event ev;
	uint64_t next = 1;
	int ep, fd, ret = 0;

	ep = epoll_create1(EPOLL_CLOEXEC);
	if (ep < 0)
		return -errno;
	while (next <= count) {
		while ((ret = eventbuf_reader_next_nonblock(r, &it)) == 0) {
			const struct eventbuf_event *e = eventbuf_item_events(it);

			for (size_t i = 0; i < eventbuf_item_count(it); i++)
				if (e[i].index != next++)
					ret = -EPROTO;
			if (ret)
				goto out;
		}
		if (ret != -EAGAIN || next > count)
			break;
		ret = eventbuf_reader_wait_fd(r, &fd);
		if (ret == -EALREADY)
			continue;	/* published meanwhile: read it */
		if (ret < 0)
			break;
		if (ret == 1) {		/* a new descriptor: add it */
			ev.events = EPOLLIN | EPOLLET;
			ev.data.ptr = r;
			if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev)) {
				ret = -errno;
				break;
			}
		}
		if (epoll_wait(ep, &ev, 1, 10000) != 1) {
			ret = -ETIMEDOUT;
			break;
		}
		ret = 0;
	}
out:
	close(ep);
	return ret < 0 && ret != -EAGAIN ? ret : 0;
}

int main(int argc, char **argv)
{
	struct writer_args w = { .count = argc > 1 ? strtoull(argv[1], NULL, 0) : 100000 };
	struct eventbuf_reader *r;
	struct eventbuf_item *head;
	pthread_t tid;
	int ret;

	if (eventbuf_new(&w.buf) || eventbuf_head(w.buf, &head))
		return 1;
	/* Position the reader before the writer starts: it sees everything. */
	ret = eventbuf_reader_new(head, &r);
	eventbuf_item_put(head);
	if (ret || pthread_create(&tid, NULL, writer, &w))
		return 1;
	ret = read_all(r, w.count);
	pthread_join(tid, NULL);
	eventbuf_reader_free(r);
	eventbuf_drop(w.buf);
	eventbuf_barrier();
	if (ret) {
		fprintf(stderr, "reader: %s\n", strerror(-ret));
		return 1;
	}
	printf("read %llu events in order\n", (unsigned long long)w.count);
	return 0;
}

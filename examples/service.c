// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * A change-feed service on loopback, the program to copy to start one.
 *
 *  - A publisher thread commits changes to a small state store (topics x
 *    keys, each key a sequence number) and publishes each change, at a
 *    steady rate.
 *  - A TCP server: an acceptor hands connections to epoll worker threads.
 *    Each worker is one event loop: its epoll set holds its connections'
 *    sockets and the descriptor of its poller (<eventbuf/poller.h>), to
 *    which every subscription of the worker is attached. The subscriptions
 *    need no descriptor each: however many a worker holds, it watches one
 *    descriptor for all of them, and the library one eventfd per distinct
 *    key position they wait at. A client says "SUB <topic> <key>"; the
 *    worker streams the key's snapshot, "S <index>" at its end, then every
 *    change as "E <index> <seq>", with back-pressure: while a socket is
 *    full, its subscription is not read.
 *  - Clients (a few threads of this program, each an epoll loop over its
 *    sockets) each verify that after the snapshot they get every sequence
 *    number of their key, in order, up to the final one the publisher
 *    announces ("E ... <seq> END").
 *
 * It raises its descriptor limit as far as it may (a connection costs a
 * descriptor; here two, both ends being in this process), runs for a
 * bounded time, prints the delivered events per second, the descriptors
 * and what the library held, and exits 0 only if every client saw
 * everything.
 *
 * Usage: service [clients] [seconds] [workers] [changes per second]
 *        service --resp [-p port] [-w workers] ...
 *
 * With --resp it is a server only, without this load: the Redis-protocol
 * pub/sub server of resp_server.c (the same code as the resp_server
 * program), which examples/resp_load measures beside redis-server.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <eventbuf/poller.h>
#include <eventbuf/publisher.h>

#include "resp_server.h"

#define NTOPICS 2
#define NKEYS 16
#define END_BIT ((uint64_t)1 << 62)

static const char *const topics[NTOPICS] = { "orders", "users" };
static char keys[NKEYS][16];

/* ------------------------------------------------------------------ */
/* The state store and the publisher thread                             */
/* ------------------------------------------------------------------ */

struct store {
	pthread_mutex_t lock;
	uint64_t index[NTOPICS][NKEYS], seq[NTOPICS][NKEYS];
	uint64_t next_index;
};

static struct store store = { .lock = PTHREAD_MUTEX_INITIALIZER };
static struct eventbuf_publisher *pub;
static _Atomic bool stopping;

static int topic_no(const char *topic)
{
	for (int t = 0; t < NTOPICS; t++)
		if (!strcmp(topic, topics[t]))
			return t;
	return -1;
}

/* "k<n>" with n < NKEYS, or -1: what a client may ask for. */
static int key_no(const char *key)
{
	for (int k = 0; k < NKEYS; k++)
		if (!strcmp(key, keys[k]))
			return k;
	return -1;
}

/*
 * A key's state: its last (index, sequence number). It runs under the
 * publisher's lock and takes store.lock: safe because change() releases
 * store.lock before it publishes, so no thread holds store.lock while it
 * waits for the publisher's.
 */
static int snapshot(void *arg, const char *topic, const char *key,
		    struct eventbuf_snapshot *snap, uint64_t *index)
{
	int t = topic_no(topic), k = key_no(key);
	struct eventbuf_event ev = { .topic = topic, .key = key };

	(void)arg;
	if (t < 0 || k < 0)
		return -ENOENT;
	pthread_mutex_lock(&store.lock);
	ev.index = store.index[t][k];
	ev.payload = (void *)(uintptr_t)store.seq[t][k];
	pthread_mutex_unlock(&store.lock);
	*index = ev.index;
	return ev.index ? eventbuf_snapshot_append(snap, &ev, 1, NULL, NULL) : 0;
}

/* Commit one change to (t, k), then publish it: the database's order. */
static int change(int t, int k, bool last)
{
	struct eventbuf_event ev = { .topic = topics[t], .key = keys[k] };

	pthread_mutex_lock(&store.lock);
	ev.index = ++store.next_index;
	store.index[t][k] = ev.index;
	store.seq[t][k]++;
	ev.payload = (void *)(uintptr_t)(store.seq[t][k] | (last ? END_BIT : 0));
	pthread_mutex_unlock(&store.lock);
	return eventbuf_publish(pub, &ev, 1, NULL, NULL);
}

struct publisher_args {
	int seconds;
	long rate;		/* changes per second */
	uint64_t published;
	int error;
};

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void *publisher(void *arg)
{
	struct publisher_args *p = arg;
	int64_t start = now_ns(), end = start + (int64_t)p->seconds * 1000000000;
	unsigned int seed = 42;
	const struct timespec breathe = { 0, 1000000 };
	int64_t now;

	/* Catch up with the rate every millisecond: a steady feed. */
	while (!p->error && (now = now_ns()) < end) {
		uint64_t due = (uint64_t)((now - start) / 1000 * p->rate / 1000000);

		for (; p->published < due && !p->error; p->published++)
			p->error = change(rand_r(&seed) % NTOPICS,
					  rand_r(&seed) % NKEYS, false);
		nanosleep(&breathe, NULL);
	}
	for (int t = 0; t < NTOPICS; t++)
		for (int k = 0; k < NKEYS && !p->error; k++, p->published++)
			p->error = change(t, k, true);
	return NULL;
}

/* ------------------------------------------------------------------ */
/* The server                                                          */
/* ------------------------------------------------------------------ */

struct conn {
	int fd;
	struct eventbuf_subscription *sub;
	bool stalled, closed;
	char in[128];
	size_t inlen;
	char out[16 * 1024];
	size_t outlen, outoff;
	const struct eventbuf_event *batch;	/* valid until the next read */
	size_t batch_n, batch_i;		/* its length, and what is out */
	struct conn *next, *prev;
	bool resting;				/* on the worker's @resting */
	struct conn *rest_next, *rest_prev;
};

struct worker {
	pthread_t tid;
	int ep;
	struct eventbuf_poller *poller;	/* its descriptor is in @ep */
	pthread_mutex_t lock;		/* the acceptor adds to @conns */
	struct conn *conns;
	struct conn *dead;		/* closed: freed after each wake-up */
	uint64_t delivered;
	uint64_t retries;		/* reads that said "later" */
	struct conn *resting;		/* could not park: retried each tick */
	int64_t next_retry;		/* CLOCK_MONOTONIC, ns */
};

/*
 * A subscription that could not park (no descriptor or memory left) is
 * reported again by the poller at once, and a worker that read it again
 * at once would spin until descriptors come back. It rests instead:
 * detached, so that the poller forgets it, and attached again on the
 * next tick, when the poller reports it and the read is retried
 * (retry_resting()).
 */
static void rest(struct worker *w, struct conn *c)
{
	if (c->resting)
		return;
	(void)eventbuf_poller_del_sub(w->poller, c->sub);
	c->resting = true;
	c->rest_prev = NULL;
	c->rest_next = w->resting;
	if (w->resting)
		w->resting->rest_prev = c;
	w->resting = c;
}

static void unrest(struct worker *w, struct conn *c)
{
	if (!c->resting)
		return;
	c->resting = false;
	if (c->rest_prev)
		c->rest_prev->rest_next = c->rest_next;
	else
		w->resting = c->rest_next;
	if (c->rest_next)
		c->rest_next->rest_prev = c->rest_prev;
}

static void retry_resting(struct worker *w)
{
	struct conn *c = w->resting;
	int64_t now;

	if (!c)
		return;
	now = now_ns();
	if (now < w->next_retry)
		return;
	w->next_retry = now + 100 * 1000000;
	w->resting = NULL;
	while (c) {
		struct conn *next = c->rest_next;

		c->resting = false;
		/* Reported by the poller's next ready(); no memory: later. */
		if (eventbuf_poller_add_sub(w->poller, c->sub, c))
			rest(w, c);
		c = next;
	}
}

static void conn_unlink(struct worker *w, struct conn *c)
{
	pthread_mutex_lock(&w->lock);
	if (c->prev)
		c->prev->next = c->next;
	else
		w->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	pthread_mutex_unlock(&w->lock);
}

/*
 * Close @c; it is freed once the worker has handled the rest of the
 * wake-up, whose epoll and poller events may still name it. close()
 * takes the socket out of the epoll set (nothing else refers to it), and
 * eventbuf_unsubscribe() detaches the subscription from the poller.
 */
static void conn_close(struct worker *w, struct conn *c)
{
	if (c->closed)
		return;
	c->closed = true;
	conn_unlink(w, c);
	c->next = w->dead;
	w->dead = c;
	unrest(w, c);
	eventbuf_unsubscribe(c->sub);
	c->sub = NULL;
	close(c->fd);
}

/* Write what is pending; false while the socket is full. */
static bool flush(struct worker *w, struct conn *c)
{
	while (c->outoff < c->outlen) {
		ssize_t n = send(c->fd, c->out + c->outoff, c->outlen - c->outoff,
				 MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0 && errno == EAGAIN) {
			struct epoll_event ev = { .events = EPOLLOUT,
						  .data.ptr = c };

			/* Without the EPOLLOUT wake-up it would stall for ever. */
			if (epoll_ctl(w->ep, EPOLL_CTL_MOD, c->fd, &ev))
				conn_close(w, c);
			return false;
		}
		if (n < 0) {
			conn_close(w, c);
			return false;
		}
		c->outoff += (size_t)n;
	}
	c->outoff = c->outlen = 0;
	return true;
}

/* One event as a line; false when the buffer has no room for it. */
static bool emit(struct conn *c, const struct eventbuf_event *ev)
{
	uint64_t seq = (uint64_t)(uintptr_t)ev->payload;
	size_t room = sizeof(c->out) - c->outlen;
	int len;

	if (eventbuf_event_is_end_of_snapshot(ev))
		len = snprintf(c->out + c->outlen, room, "S %" PRIu64 "\n",
			       ev->index);
	else
		len = snprintf(c->out + c->outlen, room,
			       "E %" PRIu64 " %" PRIu64 "%s\n", ev->index,
			       seq & ~END_BIT, seq & END_BIT ? " END" : "");
	if (len < 0 || (size_t)len >= room)
		return false;
	c->outlen += (size_t)len;
	return true;
}

/* Emit what is left of the current batch; false when the buffer is full. */
static bool emit_batch(struct worker *w, struct conn *c)
{
	for (; c->batch_i < c->batch_n; c->batch_i++, w->delivered++)
		if (!emit(c, &c->batch[c->batch_i]))
			return false;
	return true;
}

static void refuse(struct worker *w, struct conn *c, int err)
{
	size_t room = sizeof(c->out) - c->outlen;
	int len = snprintf(c->out + c->outlen, room, "ERR %d\n", -err);

	if (len > 0 && (size_t)len < room)
		c->outlen += (size_t)len;
	flush(w, c);
	conn_close(w, c);
}

/*
 * Nothing to read yet, and the library could not park the subscription
 * (no descriptor, no memory, a full poller): not the end of it. The
 * poller would report it again at once; it rests until the next tick
 * (rest()), and the read is retried then.
 */
static bool read_later(int err)
{
	switch (err) {
	case -EMFILE:
	case -ENFILE:
	case -ENOMEM:
	case -ENOSPC:
	case -EOVERFLOW:
		return true;
	default:
		return false;
	}
}

/*
 * Move batches from the subscription to the socket until either runs dry.
 * A subscription read to -EAGAIN is parked with the poller, which reports
 * it when its key moves on; one left unread while the socket is full is
 * not reported again: EPOLLOUT on the socket brings it back here.
 */
static void pump(struct worker *w, struct conn *c)
{
	size_t n;
	int ret;

	c->stalled = false;
	while (!c->closed) {
		while (!emit_batch(w, c)) {
			if (!flush(w, c)) {
				c->stalled = !c->closed;
				return;
			}
		}
		ret = eventbuf_sub_next_nonblock(c->sub, &c->batch, &n);
		if (ret == -EAGAIN)
			break;
		if (read_later(ret)) {
			w->retries++;
			rest(w, c);
			break;
		}
		if (ret) {
			refuse(w, c, ret);
			return;
		}
		c->batch_n = n;
		c->batch_i = 0;
	}
	if (!c->closed && !flush(w, c))
		c->stalled = !c->closed;
}

/*
 * The one request a client sends, "SUB <topic> <key>\n". Bytes after it
 * are read and ignored; a longer line or an unknown topic or key closes
 * the connection. The subscription is attached to the worker's poller,
 * which reports it at once: its first read happens in the next wake-up.
 */
static void handle_request(struct worker *w, struct conn *c)
{
	struct eventbuf_subscribe_req req = { .lag_limit = 1 << 16 };
	char topic[32], key[32];
	ssize_t n = recv(c->fd, c->in + c->inlen, sizeof(c->in) - 1 - c->inlen,
			 MSG_DONTWAIT);

	if (n <= 0) {
		if (n == 0 || errno != EAGAIN)
			conn_close(w, c);
		return;
	}
	if (c->sub)
		return;		/* subscribed: nothing more to read */
	c->inlen += (size_t)n;
	c->in[c->inlen] = '\0';
	if (!strchr(c->in, '\n')) {
		if (c->inlen == sizeof(c->in) - 1)
			conn_close(w, c);
		return;
	}
	if (sscanf(c->in, "SUB %31s %31s", topic, key) != 2 ||
	    topic_no(topic) < 0 || key_no(key) < 0) {
		conn_close(w, c);
		return;
	}
	c->inlen = 0;
	req.topic = topic;
	req.key = key;
	if (eventbuf_subscribe(pub, &req, &c->sub) ||
	    eventbuf_poller_add_sub(w->poller, c->sub, c))
		conn_close(w, c);
}

static void on_socket(struct worker *w, struct conn *c, uint32_t events)
{
	if (events & (EPOLLHUP | EPOLLERR)) {
		conn_close(w, c);
		return;
	}
	if (events & EPOLLOUT) {
		struct epoll_event ev = { .events = EPOLLIN, .data.ptr = c };

		if (!flush(w, c))
			return;
		if (epoll_ctl(w->ep, EPOLL_CTL_MOD, c->fd, &ev)) {
			conn_close(w, c);
			return;
		}
		if (c->stalled)
			pump(w, c);
	}
	if (events & EPOLLIN)
		handle_request(w, c);
}

/* The poller's descriptor fired: read every subscription it reports. */
static void on_poller(struct worker *w)
{
	struct eventbuf_poll_event evs[256];
	int n = eventbuf_poller_ready(w->poller, evs, 256);

	/* More than fit in @evs: the descriptor fires again for the rest. */
	for (int i = 0; i < n; i++) {
		struct conn *c = evs[i].data;

		if (!c->closed)
			pump(w, c);
	}
}

static void free_dead(struct worker *w)
{
	while (w->dead) {
		struct conn *c = w->dead;

		w->dead = c->next;
		free(c);
	}
}

static void *worker_run(void *arg)
{
	struct worker *w = arg;
	struct epoll_event evs[64];

	while (!atomic_load(&stopping)) {
		int n = epoll_wait(w->ep, evs, 64, 100);

		for (int i = 0; i < n; i++) {
			struct conn *c = evs[i].data.ptr;

			if (!c)
				on_poller(w);
			else if (!c->closed)
				on_socket(w, c, evs[i].events);
		}
		retry_resting(w);
		free_dead(w);
	}
	return NULL;
}

struct server {
	int lfd, nworkers;
	struct worker *workers;
	pthread_t acceptor;
};

static void *acceptor_run(void *arg)
{
	struct server *s = arg;

	for (int next = 0; !atomic_load(&stopping); next++) {
		int fd = accept4(s->lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		struct worker *w = &s->workers[next % s->nworkers];
		struct epoll_event ev = { .events = EPOLLIN };
		struct conn *c;

		if (fd < 0) {
			/* Out of descriptors: let the workers free some,
			 * rather than spin on a listening socket that stays
			 * readable. */
			if (errno == EMFILE || errno == ENFILE)
				usleep(10000);
			continue;	/* woken by shutdown() at the end */
		}
		c = calloc(1, sizeof(*c));
		if (!c) {
			close(fd);
			continue;
		}
		c->fd = fd;
		pthread_mutex_lock(&w->lock);
		c->next = w->conns;
		if (w->conns)
			w->conns->prev = c;
		w->conns = c;
		pthread_mutex_unlock(&w->lock);
		ev.data.ptr = c;
		/* Failed, it was never in the set: the worker never saw it. */
		if (epoll_ctl(w->ep, EPOLL_CTL_ADD, fd, &ev)) {
			conn_unlink(w, c);
			close(fd);
			free(c);
		}
	}
	return NULL;
}

/* ------------------------------------------------------------------ */
/* Clients                                                             */
/* ------------------------------------------------------------------ */

struct client {
	int fd, topic, key;
	bool live;			/* past the snapshot */
	uint64_t want, events, snapshot_seq;
	char part[64];			/* an incomplete line */
	size_t partlen;
	char error[128];
};

/* One client thread: an epoll loop over the sockets of @clients. */
struct client_loop {
	pthread_t tid;
	int port, n;
	struct client *clients;
	char buf[64 * 1024];
};

static pthread_mutex_t ready_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t ready_cond = PTHREAD_COND_INITIALIZER;
static int ready;

/* Check one line; returns 1 at the end, 0 to go on, -1 on an error. */
static int client_line(struct client *c, const char *line)
{
	uint64_t index, seq;
	char end[8] = "";

	if (!strncmp(line, "S ", 2)) {
		c->live = true;
		pthread_mutex_lock(&ready_lock);
		ready++;
		pthread_cond_broadcast(&ready_cond);
		pthread_mutex_unlock(&ready_lock);
		return 0;
	}
	if (sscanf(line, "E %" SCNu64 " %" SCNu64 " %7s", &index, &seq, end) < 2) {
		snprintf(c->error, sizeof(c->error), "bad line '%.60s'", line);
		return -1;
	}
	if (!c->live) {		/* the snapshot: where the key stands */
		c->snapshot_seq = seq;
		c->want = seq + 1;
		return 0;
	}
	if (seq != c->want) {
		snprintf(c->error, sizeof(c->error),
			 "%s/%s: sequence %" PRIu64 " after %" PRIu64,
			 topics[c->topic], keys[c->key], seq, c->want - 1);
		return -1;
	}
	c->want++;
	c->events++;
	return !strcmp(end, "END");
}

/* Connect and subscribe (blocking: loopback answers at once). */
static int client_start(struct client *c, int port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_port = htons((uint16_t)port),
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	char req[64];

	c->want = 1;
	c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&sa, sizeof(sa))) {
		snprintf(c->error, sizeof(c->error), "connect: %s", strerror(errno));
		return -1;
	}
	snprintf(req, sizeof(req), "SUB %s %s\n", topics[c->topic], keys[c->key]);
	if (send(c->fd, req, strlen(req), MSG_NOSIGNAL) < 0) {
		snprintf(c->error, sizeof(c->error), "send: %s", strerror(errno));
		return -1;
	}
	return 0;
}

/*
 * Read what @c's socket holds, through @buf (shared by the loop's
 * clients); returns 1 at the end, 0 to go on, -1 on an error.
 */
static int client_read(struct client *c, char *buf, size_t size)
{
	int ret = 0;

	while (ret == 0) {
		ssize_t n;
		size_t len;
		char *line = buf, *nl;

		memcpy(buf, c->part, c->partlen);
		n = recv(c->fd, buf + c->partlen, size - 1 - c->partlen,
			 MSG_DONTWAIT);
		if (n < 0 && errno == EAGAIN)
			return 0;
		if (n <= 0) {
			snprintf(c->error, sizeof(c->error), "%s",
				 n ? strerror(errno) : "connection closed");
			return -1;
		}
		len = c->partlen + (size_t)n;
		buf[len] = '\0';
		while (ret == 0 && (nl = strchr(line, '\n'))) {
			*nl = '\0';
			ret = client_line(c, line);
			line = nl + 1;
		}
		c->partlen = len - (size_t)(line - buf);
		if (ret == 0 && c->partlen >= sizeof(c->part)) {
			snprintf(c->error, sizeof(c->error), "line too long");
			return -1;
		}
		memcpy(c->part, line, c->partlen);
	}
	return ret;
}

/* A client that is done or failed leaves the loop (close() leaves the set). */
static void client_stop(struct client *c, int *open)
{
	close(c->fd);
	c->fd = -1;
	(*open)--;
}

static void *client_loop_run(void *arg)
{
	struct client_loop *l = arg;
	struct epoll_event evs[64];
	int64_t heard = now_ns();
	int ep = epoll_create1(EPOLL_CLOEXEC), open = 0;

	for (int i = 0; i < l->n; i++) {
		struct client *c = &l->clients[i];
		struct epoll_event ev = { .events = EPOLLIN, .data.ptr = c };

		if (ep >= 0 && client_start(c, l->port) == 0 &&
		    epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) == 0) {
			open++;
			continue;
		}
		if (!c->error[0])
			snprintf(c->error, sizeof(c->error), "epoll: %s",
				 strerror(errno));
		if (c->fd >= 0)
			close(c->fd);
		c->fd = -1;
	}
	/* Bounded, always: 20 s without a byte ends the wait. */
	while (open > 0) {
		int n = epoll_wait(ep, evs, 64, 1000);

		if (n > 0)
			heard = now_ns();
		else if (now_ns() - heard > (int64_t)20 * 1000000000)
			break;
		for (int i = 0; i < n; i++) {
			struct client *c = evs[i].data.ptr;

			if (client_read(c, l->buf, sizeof(l->buf)))
				client_stop(c, &open);
		}
	}
	for (int i = 0; i < l->n; i++) {
		struct client *c = &l->clients[i];

		if (c->fd < 0)
			continue;
		snprintf(c->error, sizeof(c->error), "nothing for 20 s");
		client_stop(c, &open);
	}
	if (ep >= 0)
		close(ep);
	return NULL;
}

/* ------------------------------------------------------------------ */

static int listen_loopback(int *port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) ||
	    listen(fd, SOMAXCONN) ||
	    getsockname(fd, (struct sockaddr *)&sa, &len))
		return -1;
	*port = ntohs(sa.sin_port);
	return fd;
}

static long rss_kb(void)
{
	long pages = 0, resident = 0;
	FILE *f = fopen("/proc/self/statm", "r");

	if (f && fscanf(f, "%ld %ld", &pages, &resident) != 2)
		resident = 0;
	if (f)
		fclose(f);
	return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

/* Descriptors open now (the directory's own is not counted). */
static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;

	if (!d)
		return -1;
	while (readdir(d))
		n++;
	closedir(d);
	return n - 3;		/* ".", ".." and the directory's */
}

/*
 * Every connection costs a descriptor at each end, both in this process;
 * the library needs a few per worker and per key. Raise the soft limit to
 * the hard one, which needs no privilege.
 */
static rlim_t raise_fd_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl))
		return 0;
	if (rl.rlim_cur < rl.rlim_max) {
		rlim_t was = rl.rlim_cur;

		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl))
			rl.rlim_cur = was;
	}
	return rl.rlim_cur;
}

/* ------------------------------------------------------------------ */
/* Running it                                                          */
/* ------------------------------------------------------------------ */

#define NCLIENT_LOOPS 2
/* Deliveries a second the default rate asks for, whatever the fan-out. */
#define DELIVERY_RATE 1000000L

/* What the run measured; peaks are sampled while the publisher runs. */
struct results {
	struct eventbuf_stats peak;
	int fds_before, fds_peak;
	long rss_peak;
	int64_t t0, t1;
	uint64_t delivered, retries;
	struct eventbuf_poller_stats polled;	/* summed over the workers */
};

/* Is the descriptor limit, raised as far as allowed, enough? */
static int check_fd_limit(int nclients, int nworkers)
{
	rlim_t limit = raise_fd_limit();
	rlim_t need = (rlim_t)nclients * 2 + (rlim_t)nworkers * 3 +
		NTOPICS * NKEYS * 2 + 64;

	printf("descriptor limit %llu (%d clients need about %llu)\n",
	       (unsigned long long)limit, nclients, (unsigned long long)need);
	if (limit < need) {
		fprintf(stderr, "descriptor limit too low for %d clients\n",
			nclients);
		return -1;
	}
	return 0;
}

static int publisher_start(void)
{
	struct eventbuf_publisher_config cfg = { .snapshot_ttl_ms = 1000 };

	for (int k = 0; k < NKEYS; k++)
		snprintf(keys[k], sizeof(keys[k]), "k%d", k);
	if (eventbuf_publisher_new(&cfg, &pub))
		return -1;
	for (int t = 0; t < NTOPICS; t++)
		if (eventbuf_publisher_register(pub, topics[t], snapshot, NULL, 0))
			return -1;
	return 0;
}

/* Each worker: an epoll set that holds its poller's descriptor. */
static int server_start(struct server *srv, int *port)
{
	srv->lfd = listen_loopback(port);
	srv->workers = calloc((size_t)srv->nworkers, sizeof(*srv->workers));
	if (srv->lfd < 0 || !srv->workers)
		return -1;
	for (int i = 0; i < srv->nworkers; i++) {
		struct worker *w = &srv->workers[i];
		struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };

		w->ep = epoll_create1(EPOLL_CLOEXEC);
		if (w->ep < 0 || eventbuf_poller_new(&w->poller) ||
		    epoll_ctl(w->ep, EPOLL_CTL_ADD, eventbuf_poller_fd(w->poller),
			      &ev))
			return -1;
		pthread_mutex_init(&w->lock, NULL);
		if (pthread_create(&w->tid, NULL, worker_run, w))
			return -1;
	}
	return pthread_create(&srv->acceptor, NULL, acceptor_run, srv) ? -1 : 0;
}

static void server_stop(struct server *srv, struct results *res)
{
	struct eventbuf_poller_stats ps;

	atomic_store(&stopping, true);
	shutdown(srv->lfd, SHUT_RDWR);
	pthread_join(srv->acceptor, NULL);
	for (int i = 0; i < srv->nworkers; i++) {
		struct worker *w = &srv->workers[i];

		/* Its thread is gone: this one may use the poller now. */
		pthread_join(w->tid, NULL);
		res->delivered += w->delivered;
		res->retries += w->retries;
		eventbuf_poller_stats(w->poller, &ps);
		res->polled.epoll_adds += ps.epoll_adds;
		res->polled.wakeups += ps.wakeups;
		res->polled.stale += ps.stale;
		res->polled.reports += ps.reports;
		while (w->conns)
			conn_close(w, w->conns);
		free_dead(w);
		eventbuf_poller_free(w->poller);
		close(w->ep);
	}
	close(srv->lfd);
	free(srv->workers);
}

/* Start the client loops; 0 once every client has its snapshot. */
static int clients_start(struct client_loop *loops, struct client *clients,
			 int nclients, int port)
{
	for (int i = 0; i < nclients; i++)
		clients[i] = (struct client){ .fd = -1, .topic = i % NTOPICS,
					      .key = (i / NTOPICS) % NKEYS };
	for (int i = 0; i < NCLIENT_LOOPS; i++) {
		struct client_loop *l = &loops[i];
		int from = nclients * i / NCLIENT_LOOPS;

		l->port = port;
		l->clients = clients + from;
		l->n = nclients * (i + 1) / NCLIENT_LOOPS - from;
		if (pthread_create(&l->tid, NULL, client_loop_run, l))
			return -1;
	}
	pthread_mutex_lock(&ready_lock);
	while (ready < nclients) {
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += 10;
		if (pthread_cond_timedwait(&ready_cond, &ready_lock, &ts))
			break;
	}
	pthread_mutex_unlock(&ready_lock);
	if (ready < nclients) {
		fprintf(stderr, "only %d of %d clients subscribed\n", ready,
			nclients);
		return -1;
	}
	return 0;
}

/* Publish for the run's time, sampling the peaks, until the clients end. */
static int run_feed(struct publisher_args *pa, struct client_loop *loops,
		    struct results *res)
{
	const struct timespec tick = { 0, 50000000 };
	struct eventbuf_publisher_stats st;
	pthread_t ptid;
	long rss;
	int fds;

	res->t0 = now_ns();
	if (pthread_create(&ptid, NULL, publisher, pa))
		return -1;
	while (pthread_tryjoin_np(ptid, NULL)) {
		eventbuf_publisher_stats(pub, &st);
		if (st.lib.live_items > res->peak.live_items)
			res->peak = st.lib;
		if (st.lib.open_eventfds > res->peak.open_eventfds)
			res->peak.open_eventfds = st.lib.open_eventfds;
		fds = count_fds();
		if (fds > res->fds_peak)
			res->fds_peak = fds;
		rss = rss_kb();
		if (rss > res->rss_peak)
			res->rss_peak = rss;
		nanosleep(&tick, NULL);
	}
	for (int i = 0; i < NCLIENT_LOOPS; i++)
		pthread_join(loops[i].tid, NULL);
	res->t1 = now_ns();
	return 0;
}

/* Print the report; 0 if every client saw everything and nothing leaked. */
static int report(const struct client *clients, int nclients, int nworkers,
		  const struct publisher_args *pa, const struct results *res)
{
	struct eventbuf_publisher_stats st;
	struct eventbuf_stats after;
	uint64_t checked = 0;
	int failed = 0, fds_used = res->fds_peak - res->fds_before, fds_after;

	for (int i = 0; i < nclients; i++) {
		checked += clients[i].events;
		if (clients[i].error[0]) {
			failed++;
			fprintf(stderr, "client %d: %s\n", i, clients[i].error);
		}
	}
	eventbuf_publisher_stats(pub, &st);
	printf("%d clients on %d workers, %d s of changes at %ld/s: %" PRIu64
	       " published, %" PRIu64 " delivered (%.0f events/s), %" PRIu64
	       " checked in order\n", nclients, nworkers, pa->seconds, pa->rate,
	       pa->published, res->delivered,
	       (double)res->delivered * 1e9 / (double)(res->t1 - res->t0),
	       checked);
	printf("peak while running: %" PRIu64 " live items (%" PRIu64
	       " KiB), %" PRIu64 " eventfds; RSS %ld KiB; snapshots built %"
	       PRIu64 "\n", res->peak.live_items, res->peak.live_bytes / 1024,
	       res->peak.open_eventfds, res->rss_peak, st.snapshots_built);
	printf("descriptors at peak: %d (%.2f per client), of which %" PRIu64
	       " eventfds (%.3f per client)\n", fds_used,
	       (double)fds_used / nclients, res->peak.open_eventfds,
	       (double)res->peak.open_eventfds / nclients);
	printf("pollers: %" PRIu64 " reports, %" PRIu64 " link wake-ups (%"
	       PRIu64 " stale), %" PRIu64 " epoll_ctl(ADD) calls, %" PRIu64
	       " reads retried\n", res->polled.reports, res->polled.wakeups,
	       res->polled.stale, res->polled.epoll_adds, res->retries);
	eventbuf_publisher_free(pub);
	eventbuf_barrier();
	eventbuf_stats(&after);
	fds_after = count_fds();
	printf("after shutdown: %" PRIu64 " live items, %" PRIu64
	       " eventfds, %d descriptors (%d before start)\n",
	       after.live_items, after.open_eventfds, fds_after,
	       res->fds_before);
	if (pa->error || failed || after.live_items || after.open_eventfds ||
	    fds_after > res->fds_before) {
		fprintf(stderr, "FAILED: %d clients, publisher %d\n", failed,
			pa->error);
		return -1;
	}
	printf("OK: every client saw every change of its key, in order\n");
	return 0;
}

static int run_with_clients(int argc, char **argv)
{
	int nclients = argc > 1 ? atoi(argv[1]) : 2000;
	int seconds = argc > 2 ? atoi(argv[2]) : 3;
	struct server srv = { .nworkers = argc > 3 ? atoi(argv[3]) : 2 };
	struct publisher_args pa = { .seconds = seconds };
	struct results res = { .fds_before = count_fds() };
	struct client_loop *loops;
	struct client *clients;
	int port, fanout, ret;

	if (nclients < 1 || seconds < 1 || srv.nworkers < 1)
		return 2;
	fanout = nclients > NTOPICS * NKEYS ? nclients / (NTOPICS * NKEYS) : 1;
	pa.rate = argc > 4 ? atol(argv[4]) : DELIVERY_RATE / fanout;
	if (pa.rate < 1)
		return 2;
	res.fds_peak = res.fds_before;
	clients = calloc((size_t)nclients, sizeof(*clients));
	loops = calloc(NCLIENT_LOOPS, sizeof(*loops));
	if (!clients || !loops || check_fd_limit(nclients, srv.nworkers) ||
	    publisher_start() || server_start(&srv, &port) ||
	    clients_start(loops, clients, nclients, port) ||
	    run_feed(&pa, loops, &res)) {
		fprintf(stderr, "FAILED to start\n");
		return 1;
	}
	server_stop(&srv, &res);
	ret = report(clients, nclients, srv.nworkers, &pa, &res);
	free(loops);
	free(clients);
	return ret ? 1 : 0;
}

int main(int argc, char **argv)
{
	if (argc > 1 && !strcmp(argv[1], "--resp")) {
		argv[1] = argv[0];	/* getopt's messages name the program */
		return resp_server_run(argc - 1, argv + 1);
	}
	return run_with_clients(argc, argv);
}

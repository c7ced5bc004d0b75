// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * A change-feed service on loopback, the program to copy to start one.
 *
 *  - A publisher thread commits changes to a small state store (topics x
 *    keys, each key a sequence number) and publishes each change.
 *  - A TCP server: an acceptor hands connections to epoll worker threads;
 *    each worker holds many connections and their subscriptions, and
 *    waits on both in one epoll set (a subscription's descriptor never
 *    changes). A client says "SUB <topic> <key>"; the worker streams the
 *    key's snapshot, "S <index>" at its end, then every change as
 *    "E <index> <seq>", with back-pressure: while a socket is full, its
 *    subscription is not read.
 *  - Clients (threads of this program) each verify that after the
 *    snapshot they get every sequence number of their key, in order, up to
 *    the final one the publisher announces ("E ... <seq> END").
 *
 * It runs for a bounded time, prints the delivered events per second and
 * what the library held, and exits 0 only if every client saw everything.
 *
 * Usage: service [clients] [seconds] [workers]
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <eventbuf/publisher.h>

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
	int64_t end = now_ns() + (int64_t)p->seconds * 1000000000;
	unsigned int seed = 42;
	const struct timespec breathe = { 0, 1000000 };

	while (!p->error && now_ns() < end) {
		/* About 400k changes a second: a busy, not a flooded, feed. */
		for (int i = 0; i < 400 && !p->error; i++, p->published++)
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

enum { ON_SOCKET, ON_SUB };

struct conn;

struct tag {
	struct conn *conn;
	int on;
};

struct conn {
	int fd;
	struct eventbuf_subscription *sub;
	struct tag sock_tag, sub_tag;
	bool sub_paused, closed;
	char in[128];
	size_t inlen;
	char out[64 * 1024];
	size_t outlen, outoff;
	const struct eventbuf_event *batch;	/* valid until the next read */
	size_t batch_n, batch_i;		/* its length, and what is out */
	struct conn *next, *prev;
};

struct worker {
	pthread_t tid;
	int ep;
	pthread_mutex_t lock;		/* the acceptor adds to @conns */
	struct conn *conns;
	struct conn *dead;		/* closed: freed after each wake-up */
	uint64_t delivered;
};

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
 * epoll_wait() batch, which may still name it.
 */
static void conn_close(struct worker *w, struct conn *c)
{
	if (c->closed)
		return;
	c->closed = true;
	conn_unlink(w, c);
	c->next = w->dead;
	w->dead = c;
	epoll_ctl(w->ep, EPOLL_CTL_DEL, c->fd, NULL);
	if (c->sub) {
		epoll_ctl(w->ep, EPOLL_CTL_DEL, eventbuf_sub_fd(c->sub), NULL);
		eventbuf_unsubscribe(c->sub);
		c->sub = NULL;
	}
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
						  .data.ptr = &c->sock_tag };

			epoll_ctl(w->ep, EPOLL_CTL_MOD, c->fd, &ev);
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

/* Watch the subscription, or stop watching it while the socket is full. */
static void watch_sub(struct worker *w, struct conn *c, bool on)
{
	struct epoll_event ev = { .events = on ? EPOLLIN : 0,
				  .data.ptr = &c->sub_tag };

	c->sub_paused = !on;
	epoll_ctl(w->ep, EPOLL_CTL_MOD, eventbuf_sub_fd(c->sub), &ev);
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

/* The socket is full: stop reading the subscription until it drains. */
static void stall(struct worker *w, struct conn *c)
{
	if (!c->closed)
		watch_sub(w, c, false);
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

/* Move batches from the subscription to the socket until either runs dry. */
static void pump(struct worker *w, struct conn *c)
{
	size_t n;
	int ret;

	while (!c->closed) {
		while (!emit_batch(w, c)) {
			if (!flush(w, c)) {
				stall(w, c);
				return;
			}
		}
		ret = eventbuf_sub_next_nonblock(c->sub, &c->batch, &n);
		if (ret == -EAGAIN)
			break;
		if (ret) {
			refuse(w, c, ret);
			return;
		}
		c->batch_n = n;
		c->batch_i = 0;
	}
	if (!c->closed && !flush(w, c))
		stall(w, c);
}

/*
 * The one request a client sends, "SUB <topic> <key>\n". Bytes after it
 * are read and ignored; a longer line or an unknown topic or key closes
 * the connection.
 */
static void handle_request(struct worker *w, struct conn *c)
{
	struct eventbuf_subscribe_req req = { .lag_limit = 1 << 16 };
	char topic[32], key[32];
	ssize_t n = recv(c->fd, c->in + c->inlen, sizeof(c->in) - 1 - c->inlen,
			 MSG_DONTWAIT);
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &c->sub_tag };

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
	    epoll_ctl(w->ep, EPOLL_CTL_ADD, eventbuf_sub_fd(c->sub), &ev)) {
		conn_close(w, c);
		return;
	}
	pump(w, c);
}

static void on_socket(struct worker *w, struct conn *c, uint32_t events)
{
	if (events & (EPOLLHUP | EPOLLERR)) {
		conn_close(w, c);
		return;
	}
	if (events & EPOLLOUT) {
		struct epoll_event ev = { .events = EPOLLIN,
					  .data.ptr = &c->sock_tag };

		if (!flush(w, c))
			return;
		epoll_ctl(w->ep, EPOLL_CTL_MOD, c->fd, &ev);
		if (c->sub_paused) {
			watch_sub(w, c, true);
			pump(w, c);
		}
	}
	if (events & EPOLLIN)
		handle_request(w, c);
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
			struct tag *t = evs[i].data.ptr;

			if (t->conn->closed)
				continue;
			if (t->on == ON_SUB)
				pump(w, t->conn);
			else
				on_socket(w, t->conn, evs[i].events);
		}
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

		if (fd < 0)
			continue;	/* woken by shutdown() at the end */
		c = calloc(1, sizeof(*c));
		if (!c) {
			close(fd);
			continue;
		}
		c->fd = fd;
		c->sock_tag = (struct tag){ c, ON_SOCKET };
		c->sub_tag = (struct tag){ c, ON_SUB };
		pthread_mutex_lock(&w->lock);
		c->next = w->conns;
		if (w->conns)
			w->conns->prev = c;
		w->conns = c;
		pthread_mutex_unlock(&w->lock);
		ev.data.ptr = &c->sock_tag;
		epoll_ctl(w->ep, EPOLL_CTL_ADD, fd, &ev);
	}
	return NULL;
}

/* ------------------------------------------------------------------ */
/* Clients                                                             */
/* ------------------------------------------------------------------ */

struct client {
	pthread_t tid;
	int port, topic, key;
	uint64_t events, snapshot_seq;
	char error[128];
};

static pthread_mutex_t ready_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t ready_cond = PTHREAD_COND_INITIALIZER;
static int ready;

/* Check one line; returns 1 at the end, 0 to go on, -1 on an error. */
static int client_line(struct client *c, const char *line, bool *live,
		       uint64_t *want)
{
	uint64_t index, seq;
	char end[8] = "";

	if (!strncmp(line, "S ", 2)) {
		*live = true;
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
	if (!*live) {		/* the snapshot: where the key stands */
		c->snapshot_seq = seq;
		*want = seq + 1;
		return 0;
	}
	if (seq != *want) {
		snprintf(c->error, sizeof(c->error),
			 "%s/%s: sequence %" PRIu64 " after %" PRIu64,
			 topics[c->topic], keys[c->key], seq, *want - 1);
		return -1;
	}
	(*want)++;
	c->events++;
	return !strcmp(end, "END");
}

static void *client_run(void *arg)
{
	struct client *c = arg;
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_port = htons((uint16_t)c->port),
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct timeval patience = { .tv_sec = 20 };	/* bounded, always */
	char buf[8192], req[64];
	size_t len = 0;
	uint64_t want = 1;
	bool live = false;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), ret = 0;

	if (fd < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &patience, sizeof(patience)) ||
	    connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		snprintf(c->error, sizeof(c->error), "connect: %s", strerror(errno));
		goto out;
	}
	snprintf(req, sizeof(req), "SUB %s %s\n", topics[c->topic], keys[c->key]);
	if (send(fd, req, strlen(req), MSG_NOSIGNAL) < 0)
		goto out;
	while (ret == 0) {
		ssize_t n = recv(fd, buf + len, sizeof(buf) - 1 - len, 0);
		char *line = buf, *nl;

		if (n <= 0) {
			snprintf(c->error, sizeof(c->error), "%s",
				 n ? strerror(errno) : "connection closed");
			break;
		}
		len += (size_t)n;
		buf[len] = '\0';
		while (ret == 0 && (nl = strchr(line, '\n'))) {
			*nl = '\0';
			ret = client_line(c, line, &live, &want);
			line = nl + 1;
		}
		len -= (size_t)(line - buf);
		memmove(buf, line, len);
	}
out:
	if (fd >= 0)
		close(fd);
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
	    listen(fd, 1024) || getsockname(fd, (struct sockaddr *)&sa, &len))
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

int main(int argc, char **argv)
{
	int nclients = argc > 1 ? atoi(argv[1]) : 64;
	int seconds = argc > 2 ? atoi(argv[2]) : 3;
	struct server srv = { .nworkers = argc > 3 ? atoi(argv[3]) : 4 };
	struct eventbuf_publisher_config cfg = { .snapshot_ttl_ms = 1000 };
	struct publisher_args pa = { .seconds = seconds };
	struct eventbuf_publisher_stats st, peak = { 0 };
	struct client *clients;
	uint64_t delivered = 0, checked = 0;
	int port, failed = 0;
	pthread_t ptid;
	int64_t t0, t1;

	if (nclients < 1 || seconds < 1 || srv.nworkers < 1)
		return 2;
	for (int k = 0; k < NKEYS; k++)
		snprintf(keys[k], sizeof(keys[k]), "k%d", k);
	if (eventbuf_publisher_new(&cfg, &pub))
		return 1;
	for (int t = 0; t < NTOPICS; t++)
		if (eventbuf_publisher_register(pub, topics[t], snapshot, NULL, 0))
			return 1;
	srv.lfd = listen_loopback(&port);
	srv.workers = calloc((size_t)srv.nworkers, sizeof(*srv.workers));
	clients = calloc((size_t)nclients, sizeof(*clients));
	if (srv.lfd < 0 || !srv.workers || !clients)
		return 1;
	for (int i = 0; i < srv.nworkers; i++) {
		srv.workers[i].ep = epoll_create1(EPOLL_CLOEXEC);
		pthread_mutex_init(&srv.workers[i].lock, NULL);
		pthread_create(&srv.workers[i].tid, NULL, worker_run, &srv.workers[i]);
	}
	pthread_create(&srv.acceptor, NULL, acceptor_run, &srv);

	/* Every client subscribed (snapshot received) before changes start. */
	for (int i = 0; i < nclients; i++) {
		clients[i] = (struct client){ .port = port, .topic = i % NTOPICS,
					      .key = (i / NTOPICS) % NKEYS };
		pthread_create(&clients[i].tid, NULL, client_run, &clients[i]);
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
		fprintf(stderr, "only %d of %d clients subscribed\n", ready, nclients);
		return 1;
	}

	t0 = now_ns();
	pthread_create(&ptid, NULL, publisher, &pa);
	while (pthread_tryjoin_np(ptid, NULL)) {
		const struct timespec tick = { 0, 50000000 };

		eventbuf_publisher_stats(pub, &st);
		if (st.lib.live_items > peak.lib.live_items)
			peak.lib = st.lib;
		if (st.lib.open_eventfds > peak.lib.open_eventfds)
			peak.lib.open_eventfds = st.lib.open_eventfds;
		nanosleep(&tick, NULL);
	}
	for (int i = 0; i < nclients; i++)
		pthread_join(clients[i].tid, NULL);
	t1 = now_ns();

	atomic_store(&stopping, true);
	shutdown(srv.lfd, SHUT_RDWR);
	pthread_join(srv.acceptor, NULL);
	for (int i = 0; i < srv.nworkers; i++) {
		struct worker *w = &srv.workers[i];

		pthread_join(w->tid, NULL);
		delivered += w->delivered;
		while (w->conns)
			conn_close(w, w->conns);
		free_dead(w);
		close(w->ep);
	}
	close(srv.lfd);
	eventbuf_publisher_stats(pub, &st);

	for (int i = 0; i < nclients; i++) {
		checked += clients[i].events;
		if (clients[i].error[0]) {
			failed++;
			fprintf(stderr, "client %d: %s\n", i, clients[i].error);
		}
	}
	printf("%d clients on %d workers, %d s of changes: %" PRIu64
	       " published, %" PRIu64 " delivered (%.0f events/s), %" PRIu64
	       " checked in order\n", nclients, srv.nworkers, seconds,
	       pa.published, delivered,
	       (double)delivered * 1e9 / (double)(t1 - t0), checked);
	printf("peak while running: %" PRIu64 " live items (%" PRIu64
	       " KiB), %" PRIu64 " eventfds; RSS %ld KiB; snapshots built %"
	       PRIu64 "\n", peak.lib.live_items, peak.lib.live_bytes / 1024,
	       peak.lib.open_eventfds, rss_kb(), st.snapshots_built);
	eventbuf_publisher_free(pub);
	eventbuf_barrier();
	eventbuf_stats(&st.lib);
	printf("after shutdown: %" PRIu64 " live items, %" PRIu64
	       " eventfds\n", st.lib.live_items, st.lib.open_eventfds);
	free(clients);
	free(srv.workers);
	if (pa.error || failed || st.lib.live_items) {
		fprintf(stderr, "FAILED: %d clients, publisher %d\n", failed,
			pa.error);
		return 1;
	}
	printf("OK: every client saw every change of its key, in order\n");
	return 0;
}

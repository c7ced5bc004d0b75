// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * A Redis-protocol (RESP2) pub/sub server on loopback: what Redis clients
 * speak (SUBSCRIBE, UNSUBSCRIBE, PUBLISH, PING, QUIT), served by eventbuf.
 * redis-cli and every Redis client library work against it, and
 * examples/resp_load.c measures it beside redis-server.
 *
 * Theory of operation.
 *
 *  - An acceptor thread hands connections round-robin to N epoll worker
 *    threads, as in service.c. Each worker's epoll set holds its clients'
 *    sockets and the descriptor of its own poller (<eventbuf/poller.h>),
 *    to which every subscription of its clients is attached: a worker
 *    watches one descriptor for all its subscriptions.
 *  - A channel is a key of topic "resp" of one publisher (its name behind
 *    KEY_PREFIX, so that "*" is a channel too). PUBLISH encodes
 *    the "message" push once, into a buffer that the event's payload points
 *    at and that its release callback frees once no subscription needs it;
 *    each subscriber's worker copies those bytes to the client's output.
 *    The PUBLISH commands of one read (up to PUB_BATCH) go out in one
 *    eventbuf_publish() call: each channel gets one batch with its
 *    messages, and its subscribers' workers are woken once for it.
 *  - The channel table counts the subscriptions of each channel, for
 *    PUBLISH's reply. Its lock (chan_lock) is held around
 *    eventbuf_subscribe() and around eventbuf_publish(), so a subscription
 *    falls between two publishes: the snapshot handler gives the index of
 *    the last publish (the table's @last_index), and the subscription
 *    delivers exactly the messages published after its SUBSCRIBE, which
 *    is what Redis does. The lock order is chan_lock, then the publisher's
 *    mutex; release callbacks only free memory and take neither.
 *  - Back-pressure: a client whose output holds more than OUT_HIGH bytes
 *    is not read from (its commands wait in its socket) and its
 *    subscriptions are not read (their messages wait in the publisher's
 *    buffers, shared by every subscriber of the channel, not copied per
 *    client); EPOLLOUT resumes both.
 *  - Output limit (-o, in bytes; Redis's client-output-buffer-limit for
 *    pub/sub clients). What a client is owed is its output buffer plus,
 *    for each of its channels, the bytes of the message pushes published
 *    there that it has not yet been given. Each channel counts its
 *    pushes' bytes (@bytes, under chan_lock, as last_index), and each
 *    subscription the bytes it copied out (@bytes_seen, which starts at
 *    the channel's count when it subscribes, under the same lock). A
 *    client whose output fills up (its socket takes no more) joins its
 *    worker's @full list; every LIMIT_CHECK_MS the worker closes those
 *    still full, owed more than the limit and sent nothing for STALL_MS
 *    (@sent, @sent_at), and lets the others go, so a check costs the
 *    stalled clients, not all 10,000 of a worker.
 *    A client that keeps reading is not closed, however far behind the
 *    publishers its worker is: that lag is the server's, as a client of
 *    Redis is not owed what Redis has not yet processed. The library's lag limit
 *    (-l, in messages) stays as a backstop: past it the publisher closes
 *    the subscription (-ENOBUFS) and the server closes the connection.
 *  - Bad input gets Redis's error text; a malformed or oversized frame
 *    (-b, the longest bulk string) also closes the connection, as Redis
 *    does, since the rest of the stream cannot be trusted.
 *
 * Objects a wake-up's events may still name (a closed client, an
 * unsubscribed channel's entry) are freed once the worker has handled the
 * whole wake-up.
 *
 * Usage: resp_server [-p port] [-w workers] [-b max_bulk] [-o out_limit]
 *                    [-l lag_limit]
 *        service --resp [the same options]
 * The example service's server mode is this code (resp_server_run(), see
 * resp_server.h); resp_main.c makes it a program of its own.
 * Port 0 (the default) picks a free one; the first line printed says
 * which. SIGINT or SIGTERM stops it.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <eventbuf/poller.h>
#include <eventbuf/publisher.h>

#include "resp.h"
#include "resp_server.h"

#define TOPIC "resp"
#define OUT_HIGH (256 * 1024)	/* stop reading a client past this output */
#define READ_CHUNK (64 * 1024)
#define READ_BUDGET (512 * 1024) /* input handled per wake-up and client */
#define PUB_BATCH 1024		/* PUBLISH commands per eventbuf_publish() */
#define LIMIT_CHECK_MS 100	/* how often each worker checks -o */
#define STALL_MS 1000		/* how long a full client sent nothing */

struct config {
	int port, workers;
	size_t max_bulk;
	uint64_t lag_limit;
	uint64_t out_limit;	/* bytes owed to a client; 0: none */
};

/* ------------------------------------------------------------------ */
/* Channels                                                            */
/* ------------------------------------------------------------------ */

struct channel {
	struct channel *next;
	uint64_t hash;
	size_t subs;		/* open subscriptions, under chan_lock */
	/* Bytes of the pushes published here: written under chan_lock,
	 * read by every worker for the output limit (a count, relaxed). */
	_Atomic uint64_t bytes;
	size_t len;
	char key[];		/* KEY_PREFIX, the name, NUL: the eventbuf key */
};

/*
 * A channel's eventbuf key is its name behind a prefix: any name is a
 * valid key then, "*" included (alone it is EVENTBUF_KEY_WILDCARD, which
 * subscribe and publish refuse).
 */
#define KEY_PREFIX	':'
#define chan_name(ch)	((ch)->key + 1)

static pthread_mutex_t chan_lock = PTHREAD_MUTEX_INITIALIZER;
static struct channel **chan_slots;
static size_t chan_nslots, chan_count;
static uint64_t last_index;	/* of the last publish, under chan_lock */
static struct eventbuf_publisher *pub;
static struct config cfg = { .workers = 2, .max_bulk = 1 << 20,
			     .lag_limit = 1 << 20, .out_limit = 32 << 20 };

static uint64_t hash(const char *s, size_t len)
{
	uint64_t h = 1469598103934665603ULL;	/* FNV-1a */

	for (size_t i = 0; i < len; i++)
		h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
	return h;
}

/* Called with chan_lock held. */
static struct channel *chan_find(const char *name, size_t len, uint64_t h)
{
	struct channel *ch;

	if (!chan_nslots)
		return NULL;
	for (ch = chan_slots[h & (chan_nslots - 1)]; ch; ch = ch->next)
		if (ch->hash == h && ch->len == len &&
		    !memcmp(chan_name(ch), name, len))
			return ch;
	return NULL;
}

/* Called with chan_lock held; NULL when out of memory. */
static struct channel *chan_get(const char *name, size_t len)
{
	uint64_t h = hash(name, len);
	struct channel *ch = chan_find(name, len, h);

	if (ch)
		return ch;
	if (chan_count >= chan_nslots) {
		size_t n = chan_nslots ? chan_nslots * 2 : 1024;
		struct channel **slots = calloc(n, sizeof(*slots));

		if (!slots)
			return NULL;
		for (size_t i = 0; i < chan_nslots; i++)
			while (chan_slots[i]) {
				struct channel *c = chan_slots[i];

				chan_slots[i] = c->next;
				c->next = slots[c->hash & (n - 1)];
				slots[c->hash & (n - 1)] = c;
			}
		free(chan_slots);
		chan_slots = slots;
		chan_nslots = n;
	}
	ch = malloc(sizeof(*ch) + 1 + len + 1);
	if (!ch)
		return NULL;
	ch->hash = h;
	ch->subs = 0;
	atomic_init(&ch->bytes, 0);
	ch->len = len;
	ch->key[0] = KEY_PREFIX;
	memcpy(chan_name(ch), name, len);
	chan_name(ch)[len] = '\0';
	ch->next = chan_slots[h & (chan_nslots - 1)];
	chan_slots[h & (chan_nslots - 1)] = ch;
	chan_count++;
	return ch;
}

/* One subscription fewer; the entry goes with its last one. */
static void chan_put(struct channel *ch)
{
	pthread_mutex_lock(&chan_lock);
	if (--ch->subs == 0) {
		struct channel **pp = &chan_slots[ch->hash & (chan_nslots - 1)];

		while (*pp != ch)
			pp = &(*pp)->next;
		*pp = ch->next;
		chan_count--;
		free(ch);
	}
	pthread_mutex_unlock(&chan_lock);
}

/*
 * Subscriptions start after the last publish (chan_lock is held by the
 * subscriber, see the top): an empty state at that index.
 */
static int snapshot(void *arg, const char *topic, const char *key,
		    struct eventbuf_snapshot *snap, uint64_t *index)
{
	(void)arg;
	(void)topic;
	(void)key;
	(void)snap;
	*index = last_index;
	return 0;
}

/* A published message: the push, encoded once, and the key it went to. */
struct pubmsg {
	size_t len;
	char *key;
	char frame[];
};

static void pubmsg_release(struct eventbuf_event *events, size_t n, void *arg)
{
	(void)events;
	(void)n;
	free(arg);
}

/* ------------------------------------------------------------------ */
/* Clients and workers                                                 */
/* ------------------------------------------------------------------ */

struct client;

/* One channel a client subscribes to; the poller reports it by @sub. */
struct csub {
	struct csub *next;	/* the client's, then the worker's dead list */
	struct client *c;
	struct channel *ch;	/* holds one of ch->subs */
	struct eventbuf_subscription *sub;
	uint64_t bytes_seen;	/* of ch->bytes, copied to the output */
	bool stalled;		/* reported, not read to -EAGAIN */
	bool resting;		/* on the worker's @resting, detached */
	struct csub *rest_next, *rest_prev;
};

struct client {
	int fd;
	uint32_t events;	/* what the epoll set waits for now */
	bool closed, paused;	/* paused: output is full, input waits */
	size_t nsubs;
	size_t nstalled;	/* subs stalled on the output: EPOLLOUT stays */
	struct csub *subs;
	char *in;		/* an incomplete command, or NULL */
	size_t inlen, incap;
	struct resp_out out;
	struct client *next, *prev;
	struct client *full_next, *full_prev;	/* on the worker's @full */
	bool on_full;
	uint64_t sent;		/* bytes it took, */
	uint64_t sent_checked;	/* how many at the last -o check, */
	int64_t sent_at;	/* and when that count last grew */
};

/* A PUBLISH waiting for its batch: it points into the input buffer. */
struct pubreq {
	const char *ch, *msg;
	size_t chlen, msglen;
};

struct worker {
	pthread_t tid;
	int ep;
	struct eventbuf_poller *poller;	/* its descriptor is in @ep */
	pthread_mutex_t lock;		/* the acceptor adds to @clients */
	struct client *clients;
	struct client *dead;		/* closed: freed after each wake-up */
	struct csub *dead_subs;
	struct client *full;		/* output was full: -o checks these */
	int64_t next_limit_check;	/* CLOCK_MONOTONIC, ns */
	struct csub *resting;		/* could not park: retried each tick */
	int64_t next_retry;		/* CLOCK_MONOTONIC, ns */
	struct resp_msg msg;
	/* PUBLISH commands of one read, published together. */
	struct pubreq pend[PUB_BATCH];
	size_t npend;
	struct eventbuf_event evs[PUB_BATCH];
	size_t receivers[PUB_BATCH];
	struct channel *to[PUB_BATCH];	/* evs[j]'s channel */
	char scratch[READ_CHUNK];
};

static _Atomic bool stopping;
static const struct resp_limits cmd_limits_init = { .max_args = RESP_ARGS_CAP,
						    .max_inline = 64 * 1024 };
static struct resp_limits cmd_limits;

/*
 * A subscription that could not park (no descriptor or memory left) is
 * reported again by the poller at once, and a worker that read it again
 * at once would spin until descriptors come back. It rests instead:
 * detached, so that the poller forgets it, and attached again on the
 * next tick, when the poller reports it and the read is retried
 * (retry_resting()).
 */
static void rest(struct worker *w, struct csub *s)
{
	if (s->resting)
		return;
	(void)eventbuf_poller_del_sub(w->poller, s->sub);
	s->resting = true;
	s->rest_prev = NULL;
	s->rest_next = w->resting;
	if (w->resting)
		w->resting->rest_prev = s;
	w->resting = s;
}

static void unrest(struct worker *w, struct csub *s)
{
	if (!s->resting)
		return;
	s->resting = false;
	if (s->rest_prev)
		s->rest_prev->rest_next = s->rest_next;
	else
		w->resting = s->rest_next;
	if (s->rest_next)
		s->rest_next->rest_prev = s->rest_prev;
}

static void unsubscribe(struct worker *w, struct client *c, struct csub *s)
{
	struct csub **pp = &c->subs;

	while (*pp != s)
		pp = &(*pp)->next;
	*pp = s->next;
	c->nsubs--;
	if (s->stalled)
		c->nstalled--;
	unrest(w, s);
	eventbuf_unsubscribe(s->sub);	/* detaches it from the poller */
	s->sub = NULL;
	chan_put(s->ch);
	s->ch = NULL;
	s->next = w->dead_subs;
	w->dead_subs = s;
}

/* Take @c off @w's client list (the acceptor adds to it). */
static void client_unlink(struct worker *w, struct client *c)
{
	pthread_mutex_lock(&w->lock);
	if (c->prev)
		c->prev->next = c->next;
	else
		w->clients = c->next;
	if (c->next)
		c->next->prev = c->prev;
	pthread_mutex_unlock(&w->lock);
}

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* @c's output filled up: the output limit checks it from now on. */
static void full_add(struct worker *w, struct client *c)
{
	if (c->on_full)
		return;
	c->on_full = true;
	c->sent_checked = c->sent;
	c->sent_at = now_ns();
	c->full_prev = NULL;
	c->full_next = w->full;
	if (w->full)
		w->full->full_prev = c;
	w->full = c;
}

static void full_del(struct worker *w, struct client *c)
{
	if (!c->on_full)
		return;
	c->on_full = false;
	if (c->full_prev)
		c->full_prev->full_next = c->full_next;
	else
		w->full = c->full_next;
	if (c->full_next)
		c->full_next->full_prev = c->full_prev;
}

static void client_close(struct worker *w, struct client *c)
{
	if (c->closed)
		return;
	c->closed = true;
	full_del(w, c);		/* before it goes to free_dead() */
	while (c->subs)
		unsubscribe(w, c, c->subs);
	client_unlink(w, c);
	close(c->fd);		/* leaves the epoll set */
	c->next = w->dead;
	w->dead = c;
}

static void free_dead(struct worker *w)
{
	while (w->dead) {
		struct client *c = w->dead;

		w->dead = c->next;
		free(c->in);
		resp_out_free(&c->out);
		free(c);
	}
	while (w->dead_subs) {
		struct csub *s = w->dead_subs;

		w->dead_subs = s->next;
		free(s);
	}
}

static void set_events(struct worker *w, struct client *c, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.ptr = c };

	if (c->events == events)
		return;
	if (epoll_ctl(w->ep, EPOLL_CTL_MOD, c->fd, &ev)) {
		client_close(w, c);
		return;
	}
	c->events = events;
}

/* Send what is pending; the buffer goes once empty (idle clients hold none). */
static void flush(struct worker *w, struct client *c)
{
	while (!c->closed && resp_out_pending(&c->out)) {
		ssize_t n = send(c->fd, c->out.buf + c->out.off,
				 resp_out_pending(&c->out),
				 MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0 && errno == EAGAIN) {
			set_events(w, c, c->paused ? EPOLLOUT : EPOLLIN | EPOLLOUT);
			return;
		}
		if (n < 0) {
			client_close(w, c);
			return;
		}
		resp_out_consume(&c->out, (size_t)n);
		c->sent += (uint64_t)n;
	}
	if (!c->closed) {
		resp_out_free(&c->out);
		/*
		 * A subscription that stalled on the full output is not
		 * reported by the poller again (it did not read to -EAGAIN):
		 * EPOLLOUT, which fires at once on an empty socket, brings
		 * it back to pump(). Without it, an output that drained here
		 * right after the stall left it unread for good.
		 */
		if (c->nstalled)
			set_events(w, c, c->paused ? EPOLLOUT : EPOLLIN | EPOLLOUT);
		else if (!c->paused)
			set_events(w, c, EPOLLIN);
	}
}

static bool full(const struct client *c)
{
	return resp_out_pending(&c->out) >= OUT_HIGH;
}

/* Codes after which an attached subscription is reported again: it
 * rests until the next tick instead (rest()). */
static bool read_later(int err)
{
	return err == -EMFILE || err == -ENFILE || err == -ENOMEM ||
		err == -ENOSPC || err == -EOVERFLOW;
}

/*
 * Copy @s's messages to the output until it runs dry or the output is
 * full. A stalled subscription is reported again only when the publisher
 * closes it (the lag limit): @reported reads one batch even into a full
 * output, so that the close is seen; the output then exceeds OUT_HIGH by
 * at most that batch.
 */
static void pump(struct worker *w, struct client *c, struct csub *s,
		 bool reported)
{
	if (s->stalled)
		c->nstalled--;
	s->stalled = false;
	while (!c->closed) {
		const struct eventbuf_event *evs;
		size_t n;
		int ret;

		if (full(c)) {
			flush(w, c);
			if (full(c) && !reported) {
				s->stalled = !c->closed;
				if (s->stalled) {
					c->nstalled++;
					full_add(w, c);
				}
				return;
			}
			reported = false;
		}
		ret = eventbuf_sub_next_nonblock(s->sub, &evs, &n);
		if (read_later(ret))
			rest(w, s);
		if (ret == -EAGAIN || read_later(ret))
			break;
		if (ret) {
			/* Lag limit (-ENOBUFS) or shutdown: like Redis, close. */
			client_close(w, c);
			return;
		}
		for (size_t i = 0; i < n; i++) {
			const struct pubmsg *m = evs[i].payload;

			if (eventbuf_event_is_end_of_snapshot(&evs[i]) ||
			    eventbuf_event_is_new_snapshot(&evs[i]))
				continue;
			if (resp_put_raw(&c->out, m->frame, m->len)) {
				client_close(w, c);
				return;
			}
			s->bytes_seen += m->len;
		}
	}
}

/* ------------------------------------------------------------------ */
/* Commands                                                            */
/* ------------------------------------------------------------------ */

static bool is(const struct resp_msg *m, size_t i, const char *name)
{
	return m->len[i] == strlen(name) && !strncasecmp(m->argv[i], name, m->len[i]);
}

/* "*3 $<kind> $<channel> :<count>" */
static int put_sub_reply(struct resp_out *o, const char *kind, const char *ch,
			 size_t len, size_t count)
{
	if (resp_put_array(o, 3) || resp_put_bulk(o, kind, strlen(kind)))
		return -ENOMEM;
	if (ch ? resp_put_bulk(o, ch, len) : resp_put_raw(o, "$-1\r\n", 5))
		return -ENOMEM;
	return resp_put_int(o, (long long)count);
}

static struct csub *find_sub(struct client *c, const char *name, size_t len)
{
	for (struct csub *s = c->subs; s; s = s->next)
		if (s->ch->len == len && !memcmp(chan_name(s->ch), name, len))
			return s;
	return NULL;
}

/* Subscribe @c to one channel; 0, or a negative errno (the reply says so). */
static int subscribe_one(struct worker *w, struct client *c, const char *name,
			 size_t len)
{
	struct eventbuf_subscribe_req req = { .topic = TOPIC,
					      .lag_limit = cfg.lag_limit };
	struct csub *s;
	int ret;

	if (find_sub(c, name, len))
		return 0;
	if (memchr(name, '\0', len))
		return -EINVAL;		/* an eventbuf key is a C string */
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	pthread_mutex_lock(&chan_lock);
	s->ch = chan_get(name, len);
	ret = s->ch ? 0 : -ENOMEM;
	if (!ret) {
		req.key = s->ch->key;
		ret = eventbuf_subscribe(pub, &req, &s->sub);
		/* Owed from here: what is published after the SUBSCRIBE. */
		s->bytes_seen = atomic_load_explicit(&s->ch->bytes,
						     memory_order_relaxed);
		/* Counted even when it failed: chan_put() below drops a new entry. */
		s->ch->subs++;
	}
	pthread_mutex_unlock(&chan_lock);
	if (!ret)
		ret = eventbuf_poller_add_sub(w->poller, s->sub, s);
	if (ret) {
		eventbuf_unsubscribe(s->sub);
		if (s->ch)
			chan_put(s->ch);
		free(s);
		return ret;
	}
	s->c = c;
	s->next = c->subs;
	c->subs = s;
	c->nsubs++;
	return 0;
}

/*
 * One reply per channel, in order: a channel that fails gets an error in
 * its place and the others are still subscribed, so a client that counts
 * a reply per channel never waits for one that will not come.
 */
static int cmd_subscribe(struct worker *w, struct client *c,
			 const struct resp_msg *m)
{
	for (size_t i = 1; i < m->argc; i++) {
		int ret = subscribe_one(w, c, m->argv[i], m->len[i]);

		if (ret) {
			char text[96];

			snprintf(text, sizeof(text), "ERR subscribe failed: %s",
				 strerror(-ret));
			ret = resp_put_error(&c->out, text);
		} else {
			ret = put_sub_reply(&c->out, "subscribe", m->argv[i],
					    m->len[i], c->nsubs);
		}
		if (ret)
			return -ENOMEM;
	}
	return 0;
}

static int cmd_unsubscribe(struct worker *w, struct client *c,
			   const struct resp_msg *m)
{
	if (m->argc == 1) {
		if (!c->subs)
			return put_sub_reply(&c->out, "unsubscribe", NULL, 0, 0);
		while (c->subs) {
			struct csub *s = c->subs;
			struct channel *ch = s->ch;
			int ret;

			/* Reply before the entry may go with the subscription. */
			ret = put_sub_reply(&c->out, "unsubscribe", chan_name(ch),
					    ch->len, c->nsubs - 1);
			unsubscribe(w, c, s);
			if (ret)
				return ret;
		}
		return 0;
	}
	for (size_t i = 1; i < m->argc; i++) {
		struct csub *s = find_sub(c, m->argv[i], m->len[i]);

		if (s)
			unsubscribe(w, c, s);
		if (put_sub_reply(&c->out, "unsubscribe", m->argv[i], m->len[i],
				  c->nsubs))
			return -ENOMEM;
	}
	return 0;
}

/* A published message's place in its block: header, push, key, aligned. */
static size_t pubmsg_size(size_t chlen, size_t msglen)
{
	size_t n = sizeof(struct pubmsg) + resp_message_len(chlen, msglen) +
		1 + chlen + 1;

	return (n + 7) & ~(size_t)7;
}

/*
 * Publish the PUBLISH commands queued from one read, as one batch: one
 * eventbuf_publish() call, so each channel's subscribers are woken once
 * for all of its messages in it, and one block of memory, freed by the
 * release callback once no subscription needs any of them. The replies
 * follow in the commands' order.
 */
static void publish_pending(struct worker *w, struct client *c)
{
	size_t n = w->npend, total = 0, m = 0;
	char *block, *p;
	int ret = 0;

	if (!n)
		return;
	w->npend = 0;
	for (size_t i = 0; i < n; i++)
		total += pubmsg_size(w->pend[i].chlen, w->pend[i].msglen);
	block = malloc(total);
	if (!block) {
		ret = -ENOMEM;
		goto reply;
	}
	p = block;
	for (size_t i = 0; i < n; i++) {
		const struct pubreq *r = &w->pend[i];
		struct pubmsg *pm = (struct pubmsg *)p;

		pm->len = resp_encode_message(pm->frame, r->ch, r->chlen, r->msg,
					      r->msglen);
		pm->key = pm->frame + pm->len;
		pm->key[0] = KEY_PREFIX;
		memcpy(pm->key + 1, r->ch, r->chlen);
		pm->key[1 + r->chlen] = '\0';
		w->evs[i] = (struct eventbuf_event){ .topic = TOPIC,
						     .key = pm->key,
						     .payload = pm };
		p += pubmsg_size(r->chlen, r->msglen);
	}
	pthread_mutex_lock(&chan_lock);
	for (size_t i = 0; i < n; i++) {
		const struct pubreq *r = &w->pend[i];
		struct channel *ch = chan_find(r->ch, r->chlen, hash(r->ch, r->chlen));

		/* Only channels with subscribers are published to. */
		w->receivers[i] = ch ? ch->subs : 0;
		if (ch) {
			w->to[m] = ch;
			w->evs[m] = w->evs[i];
			w->evs[m].index = last_index + 1 + m;
			m++;
		}
	}
	if (m) {
		ret = eventbuf_publish(pub, w->evs, m, pubmsg_release, block);
		if (!ret)
			last_index += m;
	}
	/* Counted under chan_lock, as the subscriptions start. */
	for (size_t j = 0; !ret && j < m; j++) {
		const struct pubmsg *pm = w->evs[j].payload;

		atomic_store_explicit(&w->to[j]->bytes,
			atomic_load_explicit(&w->to[j]->bytes, memory_order_relaxed) +
			pm->len, memory_order_relaxed);
	}
	pthread_mutex_unlock(&chan_lock);
	if (!m || ret)
		free(block);	/* not published: still ours */
reply:
	for (size_t i = 0; i < n; i++) {
		char text[96];
		int err;

		if (ret) {
			snprintf(text, sizeof(text), "ERR publish failed: %s",
				 strerror(-ret));
			err = resp_put_error(&c->out, text);
		} else {
			err = resp_put_int(&c->out, (long long)w->receivers[i]);
		}
		if (err) {
			client_close(w, c);
			return;
		}
	}
}

/* Queue a PUBLISH; the batch goes out when full or at the end of the read. */
static void queue_publish(struct worker *w, struct client *c,
			  const struct resp_msg *m)
{
	w->pend[w->npend++] = (struct pubreq){ .ch = m->argv[1], .chlen = m->len[1],
					       .msg = m->argv[2], .msglen = m->len[2] };
	if (w->npend == PUB_BATCH)
		publish_pending(w, c);
}

static int cmd_ping(struct client *c, const struct resp_msg *m)
{
	if (c->nsubs) {
		/* Subscribed (RESP2): a push-shaped reply, as Redis sends. */
		if (resp_put_array(&c->out, 2) || resp_put_bulk(&c->out, "pong", 4))
			return -ENOMEM;
		return resp_put_bulk(&c->out, m->argc > 1 ? m->argv[1] : "",
				     m->argc > 1 ? m->len[1] : 0);
	}
	if (m->argc > 1)
		return resp_put_bulk(&c->out, m->argv[1], m->len[1]);
	return resp_put_simple(&c->out, "PONG");
}

static int put_errorf(struct client *c, const char *fmt, const char *name,
		      size_t len)
{
	char text[160];

	snprintf(text, sizeof(text), fmt, (int)(len > 64 ? 64 : len), name);
	return resp_put_error(&c->out, text);
}

/* One command; false when the connection is to be closed after the reply. */
static bool command(struct worker *w, struct client *c, const struct resp_msg *m)
{
	const char *name = m->argv[0];
	size_t len = m->len[0];
	int ret;

	if (m->argc == 0)
		return true;
	if (!c->nsubs && m->argc == 3 && is(m, 0, "publish")) {
		queue_publish(w, c, m);
		return true;
	}
	/* Replies keep the commands' order. */
	publish_pending(w, c);
	if (c->closed)
		return true;
	if (is(m, 0, "subscribe") && m->argc >= 2)
		ret = cmd_subscribe(w, c, m);
	else if (is(m, 0, "unsubscribe"))
		ret = cmd_unsubscribe(w, c, m);
	else if (is(m, 0, "ping") && m->argc <= 2)
		ret = cmd_ping(c, m);
	else if (is(m, 0, "quit")) {
		resp_put_simple(&c->out, "OK");
		return false;
	} else if (!is(m, 0, "publish") && !is(m, 0, "subscribe") &&
		   !is(m, 0, "ping"))
		ret = put_errorf(c, "ERR unknown command '%.*s'", name, len);
	else if (c->nsubs)
		/* Subscribed (RESP2): Redis allows only these. */
		ret = put_errorf(c, "ERR Can't execute '%.*s': only (P|S)SUBSCRIBE / "
				 "(P|S)UNSUBSCRIBE / PING / QUIT / RESET are "
				 "allowed in this context", name, len);
	else
		ret = put_errorf(c, "ERR wrong number of arguments for '%.*s' command",
				 name, len);
	return ret == 0;
}

/*
 * Handle the complete commands of @data; returns the bytes used. Stops
 * when the output is full (the rest waits), or closes on bad input.
 */
static size_t run_commands(struct worker *w, struct client *c, const char *data,
			   size_t len)
{
	size_t used = 0;

	while (!c->closed && used < len) {
		const char *err;
		ssize_t n = resp_parse(data + used, len - used, &cmd_limits,
				       &w->msg, &err);

		if (n == 0)
			break;
		if (n < 0) {
			char text[96];

			publish_pending(w, c);
			snprintf(text, sizeof(text), "ERR %s", err);
			resp_put_error(&c->out, text);
			flush(w, c);
			client_close(w, c);
			break;
		}
		used += (size_t)n;
		if (!command(w, c, &w->msg)) {
			flush(w, c);
			client_close(w, c);
			break;
		}
		if (full(c)) {
			flush(w, c);
			if (full(c) && !c->closed) {
				c->paused = true;
				full_add(w, c);
				set_events(w, c, EPOLLOUT);
				break;
			}
		}
	}
	/* Even for a client gone meanwhile: it sent them. */
	publish_pending(w, c);
	return used;
}

/* Keep the bytes of @data after @used (of @len) as the client's input. */
static int keep_input(struct client *c, char *data, size_t used, size_t len)
{
	size_t n = len - used;

	if (n == 0) {
		free(c->in);
		c->in = NULL;
		c->inlen = c->incap = 0;
		return 0;
	}
	if (data != c->in && c->incap < n) {
		char *in = realloc(c->in, n);

		if (!in)
			return -ENOMEM;
		c->in = in;
		c->incap = n;
	}
	memmove(c->in, data + used, n);
	c->inlen = n;
	return 0;
}

/* Handle the input kept while the client was paused, if any. */
static void run_kept(struct worker *w, struct client *c)
{
	size_t used;

	if (!c->inlen)
		return;
	used = run_commands(w, c, c->in, c->inlen);
	if (!c->closed && keep_input(c, c->in, used, c->inlen))
		client_close(w, c);
}

static void on_readable(struct worker *w, struct client *c)
{
	/* A command can be no longer than its largest bulk string allows. */
	size_t most = cfg.max_bulk + 64 * 1024;

	for (size_t budget = 0; !c->closed && !c->paused && budget < READ_BUDGET;) {
		char *data;
		size_t room, used, len;
		ssize_t n;

		if (c->inlen) {
			/* An incomplete command: read on behind it. */
			if (c->incap - c->inlen < READ_CHUNK &&
			    c->incap < most + READ_CHUNK) {
				size_t cap = c->incap * 2 > c->inlen + READ_CHUNK ?
					c->incap * 2 : c->inlen + READ_CHUNK;
				char *in;

				/* Up to the longest command, not past it. */
				if (cap > most + READ_CHUNK)
					cap = most + READ_CHUNK;
				in = realloc(c->in, cap);
				if (!in) {
					client_close(w, c);
					return;
				}
				c->in = in;
				c->incap = cap;
			}
			data = c->in;
			room = c->incap - c->inlen;
			len = c->inlen;
		} else {
			data = w->scratch;
			room = sizeof(w->scratch);
			len = 0;
		}
		n = recv(c->fd, data + len, room, MSG_DONTWAIT);
		if (n < 0 && errno == EAGAIN)
			break;
		if (n <= 0) {
			client_close(w, c);
			return;
		}
		budget += (size_t)n;
		len += (size_t)n;
		used = run_commands(w, c, data, len);
		if (c->closed)
			return;
		if (keep_input(c, data, used, len)) {
			client_close(w, c);
			return;
		}
	}
	flush(w, c);
}

static void on_socket(struct worker *w, struct client *c, uint32_t events)
{
	if (events & EPOLLERR) {
		client_close(w, c);
		return;
	}
	if (events & EPOLLOUT) {
		flush(w, c);
		if (c->closed || full(c))
			return;
		if (c->paused) {
			c->paused = false;
			set_events(w, c, resp_out_pending(&c->out) ?
				   EPOLLIN | EPOLLOUT : EPOLLIN);
			run_kept(w, c);
		}
		for (struct csub *s = c->subs; s && !c->closed; s = s->next)
			if (s->stalled)
				pump(w, c, s, false);
		if (!c->closed)
			flush(w, c);
	}
	if (events & (EPOLLIN | EPOLLHUP) && !c->closed)
		on_readable(w, c);
}

/* The poller's descriptor fired: read every subscription it reports. */
static void on_poller(struct worker *w)
{
	struct eventbuf_poll_event evs[256];
	int n = eventbuf_poller_ready(w->poller, evs, 256);

	/* More than fit in @evs: the descriptor fires again for the rest. */
	for (int i = 0; i < n; i++) {
		struct csub *s = evs[i].data;

		if (s->sub && !s->c->closed) {
			pump(w, s->c, s, true);
			if (!s->c->closed)
				flush(w, s->c);
		}
	}
}

/* The bytes @c is owed: its output, and its channels' pushes not copied. */
static uint64_t owed(const struct client *c)
{
	uint64_t n = resp_out_pending(&c->out);

	for (const struct csub *s = c->subs; s; s = s->next) {
		uint64_t sent = atomic_load_explicit(&s->ch->bytes,
						     memory_order_relaxed);

		/* A publisher counts after eventbuf_publish() returns, and a
		 * subscriber may have copied the pushes by then. */
		if (sent > s->bytes_seen)
			n += sent - s->bytes_seen;
	}
	return n;
}

/*
 * Close the clients that stopped reading, owed more than the limit (-o):
 * full, and nothing sent for STALL_MS. A shorter stall is a busy client
 * or machine (a 2-core VM's load generator left sockets unread for over
 * 100 ms), not one that stopped.
 */
static void check_output_limit(struct worker *w)
{
	struct client *c, *next;
	int64_t now = now_ns();

	if (now < w->next_limit_check)
		return;
	w->next_limit_check = now + (int64_t)LIMIT_CHECK_MS * 1000000;
	for (c = w->full; c; c = next) {
		next = c->full_next;
		if (!full(c))
			full_del(w, c);		/* it read: no longer stalled */
		else if (c->sent != c->sent_checked) {
			c->sent_checked = c->sent;	/* it took some */
			c->sent_at = now;
		} else if (cfg.out_limit && now - c->sent_at >=
			 (int64_t)STALL_MS * 1000000 &&
			 owed(c) > cfg.out_limit)
			client_close(w, c);
	}
}

static void retry_resting(struct worker *w)
{
	struct csub *s = w->resting;
	int64_t now;

	if (!s)
		return;
	now = now_ns();
	if (now < w->next_retry)
		return;
	w->next_retry = now + (int64_t)LIMIT_CHECK_MS * 1000000;
	w->resting = NULL;
	while (s) {
		struct csub *next = s->rest_next;

		s->resting = false;
		/* Reported by the poller's next ready(); no memory: later. */
		if (eventbuf_poller_add_sub(w->poller, s->sub, s))
			rest(w, s);
		s = next;
	}
}

static void *worker_run(void *arg)
{
	struct worker *w = arg;
	struct epoll_event evs[128];

	while (!atomic_load(&stopping)) {
		int n = epoll_wait(w->ep, evs, 128, LIMIT_CHECK_MS);

		for (int i = 0; i < n; i++) {
			struct client *c = evs[i].data.ptr;

			if (!c)
				on_poller(w);
			else if (!c->closed)
				on_socket(w, c, evs[i].events);
		}
		check_output_limit(w);
		retry_resting(w);
		free_dead(w);
	}
	return NULL;
}

/* ------------------------------------------------------------------ */
/* The server                                                          */
/* ------------------------------------------------------------------ */

struct server {
	int lfd;
	struct worker *workers;
	pthread_t acceptor;
};

static void *acceptor_run(void *arg)
{
	struct server *s = arg;

	for (int next = 0; !atomic_load(&stopping); next++) {
		int fd = accept4(s->lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		struct worker *w = &s->workers[next % cfg.workers];
		struct epoll_event ev = { .events = EPOLLIN };
		struct client *c;
		int one = 1;

		if (fd < 0) {
			/* Out of descriptors: let the workers free some. */
			if (errno == EMFILE || errno == ENFILE)
				usleep(10000);
			continue;	/* woken by shutdown() at the end */
		}
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		c = calloc(1, sizeof(*c));
		if (!c) {
			close(fd);
			continue;
		}
		c->fd = fd;
		c->events = EPOLLIN;
		pthread_mutex_lock(&w->lock);
		c->next = w->clients;
		if (w->clients)
			w->clients->prev = c;
		w->clients = c;
		pthread_mutex_unlock(&w->lock);
		ev.data.ptr = c;
		/* Failed, it was never in the set: the worker never saw it. */
		if (epoll_ctl(w->ep, EPOLL_CTL_ADD, fd, &ev)) {
			client_unlink(w, c);
			close(fd);
			free(c);
		}
	}
	return NULL;
}

static int listen_loopback(int *port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_port = htons((uint16_t)*port),
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sa);
	int one = 1, fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) ||
	    listen(fd, 4096) || getsockname(fd, (struct sockaddr *)&sa, &len)) {
		close(fd);
		return -1;
	}
	*port = ntohs(sa.sin_port);
	return fd;
}

static int server_start(struct server *srv)
{
	srv->lfd = listen_loopback(&cfg.port);
	srv->workers = calloc((size_t)cfg.workers, sizeof(*srv->workers));
	if (srv->lfd < 0 || !srv->workers)
		return -1;
	for (int i = 0; i < cfg.workers; i++) {
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

static void server_stop(struct server *srv)
{
	atomic_store(&stopping, true);
	shutdown(srv->lfd, SHUT_RDWR);
	pthread_join(srv->acceptor, NULL);
	for (int i = 0; i < cfg.workers; i++) {
		struct worker *w = &srv->workers[i];

		/* Its thread is gone: this one may use the poller now. */
		pthread_join(w->tid, NULL);
		while (w->clients)
			client_close(w, w->clients);
		free_dead(w);
		eventbuf_poller_free(w->poller);
		close(w->ep);
		pthread_mutex_destroy(&w->lock);
	}
	close(srv->lfd);
	free(srv->workers);
	free(chan_slots);
}

/* Each connection costs a descriptor: go as high as allowed. */
static void raise_fd_limit(void)
{
	struct rlimit rl;

	if (!getrlimit(RLIMIT_NOFILE, &rl) && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

static void usage(void)
{
	fprintf(stderr, "usage: resp_server|service --resp [-p port] [-w workers] "
		"[-b max_bulk_bytes] [-o output_limit_bytes (0: none)]\n"
		"                   [-l lag_limit_messages (0: none)]\n");
	exit(2);
}

int resp_server_run(int argc, char **argv)
{
	struct eventbuf_publisher_config pcfg = { .snapshot_ttl_ms = 0 };
	struct server srv = { 0 };
	sigset_t set;
	int opt, sig;

	while ((opt = getopt(argc, argv, "p:w:b:l:o:")) != -1) {
		switch (opt) {
		case 'p': cfg.port = atoi(optarg); break;
		case 'w': cfg.workers = atoi(optarg); break;
		case 'b': cfg.max_bulk = strtoull(optarg, NULL, 0); break;
		case 'l': cfg.lag_limit = strtoull(optarg, NULL, 0); break;
		case 'o': cfg.out_limit = strtoull(optarg, NULL, 0); break;
		default: usage();
		}
	}
	if (cfg.port < 0 || cfg.port > 65535 || cfg.workers < 1 ||
	    cfg.workers > 256 || cfg.max_bulk < 1 || optind != argc)
		usage();
	cmd_limits = cmd_limits_init;
	cmd_limits.max_bulk = cfg.max_bulk;
	raise_fd_limit();

	/* Every thread inherits the mask: only sigwait() below takes them. */
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	if (eventbuf_publisher_new(&pcfg, &pub) ||
	    eventbuf_publisher_register(pub, TOPIC, snapshot, NULL, 0) ||
	    server_start(&srv)) {
		fprintf(stderr, "resp_server: cannot start: %s\n", strerror(errno));
		return 1;
	}
	printf("resp_server: listening on 127.0.0.1:%d, %d workers\n", cfg.port,
	       cfg.workers);
	fflush(stdout);
	sigwait(&set, &sig);
	server_stop(&srv);
	eventbuf_publisher_free(pub);
	eventbuf_barrier();
	return 0;
}

// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * A load generator for Redis-protocol pub/sub servers: examples/resp_server
 * or redis-server, unchanged (it speaks only RESP2).
 *
 *  - N subscriber connections over K channels ("ch<i % K>"), spread over a
 *    few epoll threads; each subscribes and checks that it then gets every
 *    message of its channel, in order, and nothing else.
 *  - One pipelined publisher connection sends M messages round-robin over
 *    the channels, each carrying its channel's sequence number, with at
 *    most a window of PUBLISH replies outstanding so that it cannot run
 *    away from the server; each reply must count the channel's
 *    subscribers.
 *  - It reports deliveries per second: the messages received by all the
 *    subscribers over the time from the first publish to the last
 *    delivery. With -r PID it also reads the server's VmRSS before and
 *    after connecting the (still idle) subscribers.
 *  - With -S, one more subscriber of ch0 never reads while the messages
 *    go out, nor for STALLED_MS after: the server must close it (its
 *    output limit: resp_server -o, Redis's client-output-buffer-limit
 *    pubsub), while the others still get every message. PUBLISH replies
 *    on ch0 may count it until then.
 *
 * Exit status: 0 when every check passed, 1 when one failed, 3 when the
 * descriptor limit cannot hold N connections (nothing was run).
 *
 * Usage: resp_load -p port [-n subs] [-k channels] [-m messages]
 *                  [-s message bytes] [-t threads] [-w window] [-r pid] [-S]
 *        resp_load -F  (print a free loopback port)
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
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

#include "resp.h"

#define STALL_NS ((int64_t)20 * 1000000000)	/* nothing heard: give up */

struct opts {
	int port, subs, chans, threads, window;
	long messages;
	size_t size;
	long pid;
	bool stalled;		/* -S */
};

static struct opts o = { .subs = 64, .chans = 1, .threads = 1, .window = 256,
			 .messages = 100000, .size = 20 };

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Messages channel @ch gets: those of index i < M with i % K == ch. */
static uint64_t per_channel(int ch)
{
	return ch < o.messages % o.chans ? (uint64_t)(o.messages / o.chans) + 1 :
		(uint64_t)(o.messages / o.chans);
}

struct sub {
	int fd, chan;
	bool subscribed, done;
	bool checked;		/* @error is a failed check, not a stop */
	uint64_t next;		/* the sequence number expected */
	char *part;		/* an incomplete frame */
	size_t partlen;
	char error[128];
};

struct loop {
	pthread_t tid;
	struct sub *subs;
	int n;
	int64_t last;		/* its last delivery */
	uint64_t received;
	char buf[256 * 1024];
	struct resp_msg msg;
};

static size_t frame_max;	/* the longest frame a subscriber may get */
/*
 * Each channel's message frame up to its payload: a frame that starts with
 * it is checked without the general parser (which the rest goes through).
 */
static char **prefix;
static size_t *prefix_len;
static _Atomic int subscribed, finished;
static _Atomic bool give_up;
static const struct resp_limits reply_limits = {
	.max_bulk = 1 << 20, .max_args = 8, .max_inline = 1024, .replies = true };

static bool eq(const char *p, size_t len, const char *s)
{
	return len == strlen(s) && !memcmp(p, s, len);
}

static int fail(struct sub *s, const char *what)
{
	if (!s->error[0])
		snprintf(s->error, sizeof(s->error), "%s", what);
	s->checked = true;
	return -1;
}

static int sub_message(struct loop *l, struct sub *s, const struct resp_msg *m);

/* One frame; -1 on a failed check. */
static int sub_frame(struct loop *l, struct sub *s, const struct resp_msg *m)
{
	char name[32];

	snprintf(name, sizeof(name), "ch%d", s->chan);
	if (m->type != RESP_ARRAY || m->argc != 3)
		return fail(s, "unexpected reply");
	if (eq(m->argv[0], m->len[0], "subscribe")) {
		if (s->subscribed || !eq(m->argv[1], m->len[1], name) ||
		    !eq(m->argv[2], m->len[2], "1"))
			return fail(s, "bad subscribe reply");
		s->subscribed = true;
		atomic_fetch_add(&subscribed, 1);
		return 0;
	}
	if (!eq(m->argv[0], m->len[0], "message") || !s->subscribed)
		return fail(s, "not a message");
	if (!eq(m->argv[1], m->len[1], name))
		return fail(s, "message of another channel");
	return sub_message(l, s, m);
}

/* A message of @s's channel (@m->argv[2]: its payload); -1 if not the one due. */
static int sub_message(struct loop *l, struct sub *s, const struct resp_msg *m)
{
	uint64_t seq = 0;
	size_t i;

	for (i = 0; i < m->len[2] && m->argv[2][i] >= '0' && m->argv[2][i] <= '9'; i++)
		seq = seq * 10 + (uint64_t)(m->argv[2][i] - '0');
	if (i == 0 || i != m->len[2] || m->len[2] != o.size || seq != s->next) {
		snprintf(s->error, sizeof(s->error),
			 "ch%d: message %" PRIu64 " when %" PRIu64 " was due",
			 s->chan, seq, s->next);
		s->checked = true;
		return -1;
	}
	s->next++;
	l->received++;
	if (s->next == per_channel(s->chan)) {
		s->done = true;
		l->last = now_ns();
		atomic_fetch_add(&finished, 1);
	}
	return 0;
}

/*
 * A few buffers' worth of what the socket holds, then the next socket
 * (the set is level-triggered: it reports this one again): a server that
 * refills one socket as fast as it is read must not starve the others,
 * which it would then see as readers that stopped. -1 on an error or a
 * failed check.
 */
#define READS_PER_TURN 4

static int sub_read(struct loop *l, struct sub *s)
{
	for (int turn = 0; turn < READS_PER_TURN; turn++) {
		size_t len, off = 0;
		ssize_t n;

		memcpy(l->buf, s->part, s->partlen);
		n = recv(s->fd, l->buf + s->partlen, sizeof(l->buf) - s->partlen,
			 MSG_DONTWAIT);
		if (n < 0 && errno == EAGAIN)
			return 0;
		if (n <= 0)
			return fail(s, n ? strerror(errno) : "connection closed");
		len = s->partlen + (size_t)n;
		while (off < len) {
			const char *err, *p = l->buf + off;
			size_t plen = prefix_len[s->chan], avail = len - off;
			ssize_t used;

			if (s->subscribed && avail >= plen &&
			    !memcmp(p, prefix[s->chan], plen)) {
				/* A message of this channel with a payload of o.size. */
				if (avail < plen + o.size + 2)
					break;
				if (p[plen + o.size] != '\r' || p[plen + o.size + 1] != '\n')
					return fail(s, "bad message frame");
				l->msg.argv[2] = p + plen;
				l->msg.len[2] = o.size;
				off += plen + o.size + 2;
				if (sub_message(l, s, &l->msg))
					return -1;
				continue;
			}
			used = resp_parse(p, avail, &reply_limits, &l->msg, &err);

			if (used < 0)
				return fail(s, err);
			if (used == 0)
				break;
			off += (size_t)used;
			if (sub_frame(l, s, &l->msg))
				return -1;
		}
		s->partlen = len - off;
		if (s->partlen > frame_max)
			return fail(s, "frame too long");
		memcpy(s->part, l->buf + off, s->partlen);
	}
	return 0;
}

static void *loop_run(void *arg)
{
	struct loop *l = arg;
	struct epoll_event evs[256];
	int ep = epoll_create1(EPOLL_CLOEXEC), open = 0;
	int64_t heard = now_ns();

	for (int i = 0; i < l->n && ep >= 0; i++) {
		struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &l->subs[i] };

		if (epoll_ctl(ep, EPOLL_CTL_ADD, l->subs[i].fd, &ev))
			fail(&l->subs[i], "epoll_ctl");
		else
			open++;
	}
	if (ep < 0 || open < l->n) {
		atomic_store(&give_up, true);
		open = 0;
	}
	while (open > 0 && !atomic_load(&give_up)) {
		int n = epoll_wait(ep, evs, 256, 1000);

		if (n > 0)
			heard = now_ns();
		else if (now_ns() - heard > STALL_NS)
			break;
		for (int i = 0; i < n; i++) {
			struct sub *s = evs[i].data.ptr;

			if (sub_read(l, s)) {
				atomic_store(&give_up, true);
				break;
			}
			if (s->done) {
				/* A further message would be a failure: keep reading. */
				s->done = false;
				s->next = per_channel(s->chan);
				open--;
			}
		}
	}
	for (int i = 0; i < l->n; i++)
		if (l->subs[i].next != per_channel(l->subs[i].chan) &&
		    !l->subs[i].error[0])
			snprintf(l->subs[i].error, sizeof(l->subs[i].error),
				 "ch%d: got %" PRIu64 " of %" PRIu64 " messages",
				 l->subs[i].chan, l->subs[i].next,
				 per_channel(l->subs[i].chan));
	if (ep >= 0)
		close(ep);
	return NULL;
}

static int connect_loopback(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_port = htons((uint16_t)o.port),
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int one = 1, fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		close(fd);
		return -1;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
}

/* Write all of @buf to a blocking socket. */
static int send_all(int fd, const char *buf, size_t len)
{
	while (len) {
		ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);

		if (n <= 0)
			return -1;
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

/* VmRSS of @pid in KiB, or -1. */
static long rss_kb(long pid)
{
	char path[64], line[256];
	long kb = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%ld/status", pid);
	f = fopen(path, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
			break;
	fclose(f);
	return kb;
}

/* ------------------------------------------------------------------ */
/* The publisher                                                       */
/* ------------------------------------------------------------------ */

/*
 * Send every message, at most o.window unanswered; each reply must count
 * the channel's subscribers. 0, or -1 with @error set.
 */
static int publish_all(int fd, const long *receivers, char *error, size_t size)
{
	long stalled = o.stalled;	/* counted on ch0 until it is closed */
	struct resp_out out = { 0 };
	struct resp_msg *m = malloc(sizeof(*m));
	char *in = malloc(64 * 1024), *payload = malloc(o.size + 1);
	size_t inlen = 0;
	long sent = 0, acked = 0;
	int64_t heard = now_ns();
	int ret = -1;

	if (!m || !in || !payload) {
		snprintf(error, size, "out of memory");
		goto out;
	}
	while (acked < o.messages) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };

		while (sent < o.messages && sent - acked < o.window) {
			int ch = (int)(sent % o.chans);
			char name[32];
			int len = snprintf(payload, o.size + 1, "%0*ld",
					   (int)o.size, sent / o.chans);

			(void)len;
			snprintf(name, sizeof(name), "ch%d", ch);
			if (resp_put_array(&out, 3) ||
			    resp_put_bulk(&out, "PUBLISH", 7) ||
			    resp_put_bulk(&out, name, strlen(name)) ||
			    resp_put_bulk(&out, payload, o.size)) {
				snprintf(error, size, "out of memory");
				goto out;
			}
			sent++;
		}
		if (resp_out_pending(&out))
			pfd.events |= POLLOUT;
		if (poll(&pfd, 1, 1000) < 0)
			continue;
		if (pfd.revents & POLLOUT) {
			ssize_t n = send(fd, out.buf + out.off, resp_out_pending(&out),
					 MSG_NOSIGNAL | MSG_DONTWAIT);

			if (n < 0 && errno != EAGAIN) {
				snprintf(error, size, "publisher: %s", strerror(errno));
				goto out;
			}
			if (n > 0)
				resp_out_consume(&out, (size_t)n);
		}
		if (pfd.revents & (POLLIN | POLLHUP | POLLERR)) {
			ssize_t n = recv(fd, in + inlen, 64 * 1024 - inlen, MSG_DONTWAIT);
			size_t off = 0;

			if (n == 0 || (n < 0 && errno != EAGAIN)) {
				snprintf(error, size, "publisher: connection closed");
				goto out;
			}
			if (n > 0) {
				inlen += (size_t)n;
				heard = now_ns();
			}
			while (off < inlen) {
				const char *err;
				ssize_t used = resp_parse(in + off, inlen - off,
							  &reply_limits, m, &err);
				long ch = acked % o.chans;

				if (used < 0) {
					snprintf(error, size, "publisher: %s", err);
					goto out;
				}
				if (used == 0)
					break;
				off += (size_t)used;
				if (ch == 0 && stalled && m->type == RESP_INT &&
				    m->num == receivers[0])
					stalled = 0;	/* closed, from now on */
				if (m->type != RESP_INT ||
				    m->num != receivers[ch] + (ch ? 0 : stalled)) {
					snprintf(error, size,
						 "PUBLISH ch%ld answered %.*s, not :%ld",
						 ch, (int)m->len[0], m->argv[0],
						 receivers[ch] + (ch ? 0 : stalled));
					goto out;
				}
				acked++;
			}
			memmove(in, in + off, inlen - off);
			inlen -= off;
		}
		if (now_ns() - heard > STALL_NS || atomic_load(&give_up)) {
			snprintf(error, size, "publisher: %ld of %ld answered",
				 acked, o.messages);
			goto out;
		}
	}
	ret = 0;
out:
	resp_out_free(&out);
	free(m);
	free(in);
	free(payload);
	return ret;
}

/* ------------------------------------------------------------------ */

static int free_port(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) ||
	    getsockname(fd, (struct sockaddr *)&sa, &len))
		return 1;
	printf("%d\n", ntohs(sa.sin_port));
	close(fd);
	return 0;
}

static void usage(void)
{
	fprintf(stderr, "usage: resp_load -p port [-n subs] [-k channels] "
		"[-m messages] [-s bytes] [-t threads] [-w window] [-r pid] [-S]\n"
		"       resp_load -F\n");
	exit(2);
}

/* -S: subscribe a connection to ch0, wait for the reply, then never read. */
static int stalled_connect(void)
{
	static const char cmd[] = "*2\r\n$9\r\nSUBSCRIBE\r\n$3\r\nch0\r\n";
	static const char reply[] = "*3\r\n$9\r\nsubscribe\r\n$3\r\nch0\r\n:1\r\n";
	char got[sizeof(reply)];
	size_t len = 0;
	int fd = connect_loopback();

	if (fd < 0)
		return -1;
	if (send_all(fd, cmd, sizeof(cmd) - 1))
		goto fail;
	while (len < sizeof(reply) - 1) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		ssize_t n;

		if (poll(&pfd, 1, 5000) <= 0)
			goto fail;
		n = recv(fd, got + len, sizeof(reply) - 1 - len, 0);
		if (n <= 0)
			goto fail;
		len += (size_t)n;
	}
	if (!memcmp(got, reply, len))
		return fd;
	errno = EPROTO;
fail:
	close(fd);
	return -1;
}

/*
 * Still not reading for STALLED_MS (resp_server closes a client that
 * took nothing for a second while owed more than its limit), then read
 * what the stalled subscriber was sent; true when the server closed the
 * connection, false when it stayed open with nothing more to send (5 s
 * without a byte).
 */
#define STALLED_MS 2000

static bool stalled_closed(int fd, uint64_t *bytes)
{
	const struct timespec stall = { STALLED_MS / 1000,
					(STALLED_MS % 1000) * 1000000L };
	char *buf = malloc(64 * 1024);
	bool closed = false;

	nanosleep(&stall, NULL);
	while (buf) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		ssize_t n;

		if (poll(&pfd, 1, 5000) <= 0)
			break;
		n = recv(fd, buf, 64 * 1024, MSG_DONTWAIT);
		if (n == 0 || (n < 0 && errno == ECONNRESET)) {
			closed = true;
			break;
		}
		if (n > 0)
			*bytes += (uint64_t)n;
	}
	free(buf);
	return closed;
}

/* Connect and subscribe every subscriber (blocking: loopback answers). */
static int connect_subs(struct sub *subs)
{
	for (int i = 0; i < o.subs; i++) {
		char cmd[96];
		int len;

		subs[i].chan = i % o.chans;
		subs[i].part = malloc(frame_max);
		subs[i].fd = connect_loopback();
		if (!subs[i].part || subs[i].fd < 0) {
			fprintf(stderr, "resp_load: subscriber %d: %s\n", i,
				strerror(errno));
			return -1;
		}
		len = snprintf(cmd, sizeof(cmd),
			       "*2\r\n$9\r\nSUBSCRIBE\r\n$%d\r\nch%d\r\n",
			       snprintf(NULL, 0, "ch%d", subs[i].chan),
			       subs[i].chan);
		if (send_all(subs[i].fd, cmd, (size_t)len)) {
			fprintf(stderr, "resp_load: subscriber %d: %s\n", i,
				strerror(errno));
			return -1;
		}
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct rlimit rl;
	struct loop *loops;
	struct sub *subs;
	long *receivers, rss_before = -1, rss_after = -1;
	char error[160] = "";
	int64_t t0, t1 = 0, deadline;
	uint64_t received = 0;
	int opt, pfd, sfd = -1, failed = 0;
	uint64_t stalled_bytes = 0;
	bool closed = false;

	while ((opt = getopt(argc, argv, "p:n:k:m:s:t:w:r:SF")) != -1) {
		switch (opt) {
		case 'p': o.port = atoi(optarg); break;
		case 'n': o.subs = atoi(optarg); break;
		case 'k': o.chans = atoi(optarg); break;
		case 'm': o.messages = atol(optarg); break;
		case 's': o.size = strtoul(optarg, NULL, 0); break;
		case 't': o.threads = atoi(optarg); break;
		case 'w': o.window = atoi(optarg); break;
		case 'r': o.pid = atol(optarg); break;
		case 'S': o.stalled = true; break;
		case 'F': return free_port();
		default: usage();
		}
	}
	if (o.port <= 0 || o.subs < 1 || o.chans < 1 || o.messages < 1 ||
	    o.size < 20 || o.size > 65536 || o.threads < 1 || o.window < 1 ||
	    o.messages < o.chans ||
	    optind != argc) {
		if (o.size < 20)
			fprintf(stderr, "resp_load: -s is at least 20 (the sequence number)\n");
		usage();
	}
	if (o.threads > o.subs)
		o.threads = o.subs;
	frame_max = o.size + 128;

	if (!getrlimit(RLIMIT_NOFILE, &rl)) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
		getrlimit(RLIMIT_NOFILE, &rl);
		if (rl.rlim_cur < (rlim_t)o.subs + 64) {
			fprintf(stderr, "resp_load: %d subscribers need %d descriptors, "
				"the limit is %llu\n", o.subs, o.subs + 64,
				(unsigned long long)rl.rlim_cur);
			return 3;
		}
	}
	subs = calloc((size_t)o.subs, sizeof(*subs));
	loops = calloc((size_t)o.threads, sizeof(*loops));
	receivers = calloc((size_t)o.chans, sizeof(*receivers));
	if (!subs || !loops || !receivers)
		return 1;
	prefix = calloc((size_t)o.chans, sizeof(*prefix));
	prefix_len = calloc((size_t)o.chans, sizeof(*prefix_len));
	if (!prefix || !prefix_len)
		return 1;
	for (int i = 0; i < o.chans; i++) {
		char name[32];
		int nl = snprintf(name, sizeof(name), "ch%d", i);

		prefix[i] = malloc(96);
		if (!prefix[i])
			return 1;
		prefix_len[i] = (size_t)snprintf(prefix[i], 96,
			"*3\r\n$7\r\nmessage\r\n$%d\r\n%s\r\n$%zu\r\n",
			nl, name, o.size);
	}
	for (int i = 0; i < o.subs; i++) {
		subs[i].fd = -1;
		receivers[i % o.chans]++;
	}
	if (o.pid)
		rss_before = rss_kb(o.pid);
	if (connect_subs(subs))
		return 1;
	for (int i = 0; i < o.threads; i++) {
		int from = (int)((long)o.subs * i / o.threads);

		loops[i].subs = subs + from;
		loops[i].n = (int)((long)o.subs * (i + 1) / o.threads) - from;
		if (pthread_create(&loops[i].tid, NULL, loop_run, &loops[i]))
			return 1;
	}
	/* Every subscription confirmed: the subscribers are idle and counted. */
	deadline = now_ns() + STALL_NS;
	while (atomic_load(&subscribed) < o.subs && !atomic_load(&give_up) &&
	       now_ns() < deadline) {
		const struct timespec ms = { 0, 1000000 };

		nanosleep(&ms, NULL);
	}
	if (atomic_load(&subscribed) < o.subs) {
		snprintf(error, sizeof(error), "%d of %d subscriptions confirmed",
			 atomic_load(&subscribed), o.subs);
		atomic_store(&give_up, true);
	}
	if (o.pid)
		rss_after = rss_kb(o.pid);
	if (!error[0] && o.stalled && (sfd = stalled_connect()) < 0)
		snprintf(error, sizeof(error), "stalled subscriber: %s",
			 strerror(errno));

	t0 = now_ns();
	pfd = error[0] ? -1 : connect_loopback();
	if (!error[0] && pfd < 0)
		snprintf(error, sizeof(error), "publisher: %s", strerror(errno));
	if (pfd >= 0 && publish_all(pfd, receivers, error, sizeof(error)))
		atomic_store(&give_up, true);
	for (int i = 0; i < o.threads; i++) {
		pthread_join(loops[i].tid, NULL);
		received += loops[i].received;
		if (loops[i].last > t1)
			t1 = loops[i].last;
	}
	if (sfd >= 0) {
		closed = stalled_closed(sfd, &stalled_bytes);
		close(sfd);
		if (!closed && !error[0])
			snprintf(error, sizeof(error), "the subscriber that does "
				 "not read was not closed (%" PRIu64 " bytes sent to it)",
				 stalled_bytes);
	}
	if (error[0]) {
		fprintf(stderr, "resp_load: %s\n", error);
		failed++;
	}
	/* The failed checks first, then those cut short by them. */
	for (int pass = 0; pass < 2; pass++)
		for (int i = 0; i < o.subs; i++)
			if (subs[i].error[0] && subs[i].checked == !pass &&
			    failed++ < 10)
				fprintf(stderr, "resp_load: subscriber %d: %s\n", i,
					subs[i].error);
	for (int i = 0; i < o.subs; i++) {
		close(subs[i].fd);
		free(subs[i].part);
	}
	if (t1 < t0)
		t1 = t0;
	if (pfd >= 0)
		close(pfd);
	printf("resp_load: subs=%d keys=%d n=%ld size=%zu deliveries=%" PRIu64
	       " seconds=%.3f deliveries_per_s=%.0f", o.subs, o.chans,
	       o.messages, o.size, received, (double)(t1 - t0) / 1e9,
	       t1 > t0 ? (double)received * 1e9 / (double)(t1 - t0) : 0.0);
	if (o.pid)
		printf(" rss_before_kb=%ld rss_after_kb=%ld rss_per_sub_bytes=%.0f",
		       rss_before, rss_after,
		       (double)(rss_after - rss_before) * 1024 / o.subs);
	if (o.stalled)
		printf(" stalled_closed=%d stalled_bytes=%" PRIu64, closed,
		       stalled_bytes);
	printf(" %s\n", failed ? "FAILED" : "ok");
	for (int i = 0; i < o.chans; i++)
		free(prefix[i]);
	free(prefix);
	free(prefix_len);
	free(subs);
	free(loops);
	free(receivers);
	return failed ? 1 : 0;
}

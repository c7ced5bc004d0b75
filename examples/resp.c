// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * RESP2 parsing and encoding (see resp.h).
 *
 * Theory of operation. The parser keeps no state between calls: it walks
 * the buffer from its start and either finds one whole message, reports
 * that more bytes are needed, or rejects the frame. A caller that reads a
 * socket appends to its input buffer and calls again; only the header
 * lines are walked twice, a large bulk string's body is checked by its
 * length alone. Every length is checked against the limits before it is
 * used, so no input makes it read past @len or overflow a size_t.
 *
 * The errors are Redis's own texts, so a client sees what it would see
 * from redis-server; after one the stream is lost (a bulk length cannot
 * be trusted), and the server closes the connection as Redis does.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "resp.h"

/* The longest length or integer line: "-9223372036854775808". */
#define NUM_MAX 20

/*
 * Find the CRLF that ends the line at @p; the line's length, or -1 when
 * it is not complete within @max bytes (-2 when it cannot be: too long).
 */
static ssize_t line_end(const char *p, const char *end, size_t max)
{
	size_t avail = (size_t)(end - p);
	const char *nl = memchr(p, '\n', avail < max + 2 ? avail : max + 2);

	if (!nl)
		return avail >= max + 2 ? -2 : -1;
	if (nl == p || nl[-1] != '\r')
		return -3;
	return nl - 1 - p;
}

/* A decimal integer, optionally negative, nothing else; false if not one. */
static bool parse_num(const char *p, size_t n, long long *v)
{
	bool neg = n > 0 && p[0] == '-';
	unsigned long long acc = 0;

	if (neg) {
		p++;
		n--;
	}
	if (n == 0 || n > 19)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (p[i] < '0' || p[i] > '9')
			return false;
		acc = acc * 10 + (unsigned long long)(p[i] - '0');
	}
	if (acc > (unsigned long long)LLONG_MAX)
		return false;
	*v = neg ? -(long long)acc : (long long)acc;
	return true;
}

/*
 * A "<type><number>\r\n" line at *@pp; 1 and the number (the cursor
 * moved past it), 0 when incomplete, -1 when malformed.
 */
static int num_line(const char **pp, const char *end, long long *v,
		    const char **digits, size_t *ndigits)
{
	const char *p = *pp + 1;
	ssize_t n = line_end(p, end, NUM_MAX);

	if (n == -1)
		return 0;
	if (n < 0 || !parse_num(p, (size_t)n, v))
		return -1;
	if (digits) {
		*digits = p;
		*ndigits = (size_t)n;
	}
	*pp = p + n + 2;
	return 1;
}

#define FAIL(code, text)			\
	do {					\
		*err = "Protocol error: " text;	\
		return (code);			\
	} while (0)

/* An inline command: words separated by spaces or tabs, up to "\n". */
static ssize_t parse_inline(const char *buf, size_t len,
			    const struct resp_limits *lim, struct resp_msg *msg,
			    const char **err)
{
	size_t scan = len < lim->max_inline + 1 ? len : lim->max_inline + 1;
	const char *nl = memchr(buf, '\n', scan), *p = buf, *end;

	if (!nl) {
		if (len > lim->max_inline)
			FAIL(-EMSGSIZE, "too big inline request");
		return 0;
	}
	end = nl > buf && nl[-1] == '\r' ? nl - 1 : nl;
	msg->type = RESP_ARRAY;
	msg->argc = 0;
	while (p < end) {
		const char *word;

		while (p < end && (*p == ' ' || *p == '\t'))
			p++;
		if (p == end)
			break;
		if (msg->argc == lim->max_args || msg->argc == RESP_ARGS_CAP)
			FAIL(-EMSGSIZE, "too many arguments");
		word = p;
		while (p < end && *p != ' ' && *p != '\t')
			p++;
		msg->argv[msg->argc] = word;
		msg->len[msg->argc++] = (size_t)(p - word);
	}
	return nl + 1 - buf;
}

ssize_t resp_parse(const char *buf, size_t len, const struct resp_limits *lim,
		   struct resp_msg *msg, const char **err)
{
	const char *p = buf, *end = buf + len;
	long long n;
	ssize_t ln;
	int ret;

	if (len == 0)
		return 0;
	if (lim->replies && (*p == '+' || *p == '-')) {
		ln = line_end(p + 1, end, lim->max_inline);
		if (ln == -1)
			return 0;
		if (ln < 0)
			FAIL(-EPROTO, "bad status line");
		msg->type = *p == '+' ? RESP_SIMPLE : RESP_ERROR;
		msg->argc = 1;
		msg->argv[0] = p + 1;
		msg->len[0] = (size_t)ln;
		return ln + 3;
	}
	if (lim->replies && *p == ':') {
		msg->type = RESP_INT;
		msg->argc = 1;
		ret = num_line(&p, end, &msg->num, &msg->argv[0], &msg->len[0]);
		if (ret < 0)
			FAIL(-EPROTO, "invalid integer");
		return ret ? p - buf : 0;
	}
	if (*p != '*') {
		if (lim->replies)
			FAIL(-EPROTO, "unexpected reply type");
		return parse_inline(buf, len, lim, msg, err);
	}
	ret = num_line(&p, end, &n, NULL, NULL);
	if (ret == 0)
		return 0;
	if (ret < 0 || n < -1)
		FAIL(-EPROTO, "invalid multibulk length");
	if (n > 0 && ((unsigned long long)n > lim->max_args ||
		      n > RESP_ARGS_CAP))
		FAIL(-EMSGSIZE, "too many arguments");
	msg->type = RESP_ARRAY;
	msg->argc = n > 0 ? (size_t)n : 0;
	for (size_t i = 0; i < msg->argc; i++) {
		long long blen;

		if (p == end)
			return 0;
		if (lim->replies && *p == ':') {
			long long v;

			ret = num_line(&p, end, &v, &msg->argv[i], &msg->len[i]);
			if (ret < 0)
				FAIL(-EPROTO, "invalid integer");
			if (ret == 0)
				return 0;
			continue;
		}
		if (*p != '$')
			FAIL(-EPROTO, "expected '$'");
		ret = num_line(&p, end, &blen, NULL, NULL);
		if (ret == 0)
			return 0;
		if (ret < 0 || blen < 0)
			FAIL(-EPROTO, "invalid bulk length");
		if ((unsigned long long)blen > lim->max_bulk)
			FAIL(-EMSGSIZE, "invalid bulk length");
		if ((size_t)(end - p) < (size_t)blen + 2)
			return 0;
		if (p[blen] != '\r' || p[blen + 1] != '\n')
			FAIL(-EPROTO, "expected CRLF after bulk string");
		msg->argv[i] = p;
		msg->len[i] = (size_t)blen;
		p += blen + 2;
	}
	return p - buf;
}

int resp_out_reserve(struct resp_out *o, size_t more)
{
	size_t cap;
	char *b;

	if (o->cap - o->len >= more)
		return 0;
	/* Slide the pending bytes down before growing. */
	if (o->off) {
		memmove(o->buf, o->buf + o->off, o->len - o->off);
		o->len -= o->off;
		o->off = 0;
		if (o->cap - o->len >= more)
			return 0;
	}
	cap = o->cap ? o->cap : 256;
	while (cap - o->len < more) {
		if (cap > SIZE_MAX / 2)
			return -ENOMEM;
		cap *= 2;
	}
	b = realloc(o->buf, cap);
	if (!b)
		return -ENOMEM;
	o->buf = b;
	o->cap = cap;
	return 0;
}

void resp_out_consume(struct resp_out *o, size_t n)
{
	o->off += n;
	if (o->off == o->len)
		o->off = o->len = 0;
}

void resp_out_free(struct resp_out *o)
{
	free(o->buf);
	*o = (struct resp_out){ 0 };
}

int resp_put_raw(struct resp_out *o, const char *s, size_t len)
{
	if (resp_out_reserve(o, len))
		return -ENOMEM;
	memcpy(o->buf + o->len, s, len);
	o->len += len;
	return 0;
}

/*
 * Write @v in decimal at @p; returns the end. Not snprintf(): every push
 * and reply has two or three numbers, and the format parser was a tenth of
 * a fan-out server's time.
 */
static char *put_dec(char *p, unsigned long long v)
{
	char tmp[NUM_MAX];
	size_t n = 0;

	do {
		tmp[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	while (n)
		*p++ = tmp[--n];
	return p;
}

/* "<type><n>\r\n" */
static int put_num(struct resp_out *o, char type, long long v)
{
	char tmp[NUM_MAX + 4], *p = tmp;

	*p++ = type;
	if (v < 0) {
		*p++ = '-';
		p = put_dec(p, 0ULL - (unsigned long long)v);
	} else {
		p = put_dec(p, (unsigned long long)v);
	}
	*p++ = '\r';
	*p++ = '\n';
	return resp_put_raw(o, tmp, (size_t)(p - tmp));
}

int resp_put_array(struct resp_out *o, size_t n)
{
	return put_num(o, '*', (long long)n);
}

int resp_put_int(struct resp_out *o, long long v)
{
	return put_num(o, ':', v);
}

int resp_put_bulk(struct resp_out *o, const char *s, size_t len)
{
	if (resp_out_reserve(o, len + NUM_MAX + 6))
		return -ENOMEM;
	o->buf[o->len] = '$';
	o->len = (size_t)(put_dec(o->buf + o->len + 1, len) - o->buf);
	memcpy(o->buf + o->len, "\r\n", 2);
	o->len += 2;
	memcpy(o->buf + o->len, s, len);
	memcpy(o->buf + o->len + len, "\r\n", 2);
	o->len += len + 2;
	return 0;
}

/* A status line; CR and LF in @s would end it early: they become spaces. */
static int put_line(struct resp_out *o, char type, const char *s)
{
	size_t len = strlen(s);

	if (resp_out_reserve(o, len + 3))
		return -ENOMEM;
	o->buf[o->len] = type;
	for (size_t i = 0; i < len; i++)
		o->buf[o->len + 1 + i] = s[i] == '\r' || s[i] == '\n' ? ' ' : s[i];
	memcpy(o->buf + o->len + 1 + len, "\r\n", 2);
	o->len += len + 3;
	return 0;
}

int resp_put_simple(struct resp_out *o, const char *s)
{
	return put_line(o, '+', s);
}

int resp_put_error(struct resp_out *o, const char *s)
{
	return put_line(o, '-', s);
}

static size_t digits(size_t v)
{
	size_t n = 1;

	while (v >= 10) {
		v /= 10;
		n++;
	}
	return n;
}

size_t resp_message_len(size_t chlen, size_t msglen)
{
	/* "*3\r\n$7\r\nmessage\r\n" "$<n>\r\n<ch>\r\n" "$<n>\r\n<msg>\r\n" */
	return 17 + 3 + digits(chlen) + chlen + 2 + 3 + digits(msglen) +
		msglen + 2;
}

/* "$<len>\r\n<data>\r\n" at @p; returns the end. */
static char *put_bulk_raw(char *p, const char *data, size_t len)
{
	*p++ = '$';
	p = put_dec(p, len);
	memcpy(p, "\r\n", 2);
	p += 2;
	memcpy(p, data, len);
	memcpy(p + len, "\r\n", 2);
	return p + len + 2;
}

size_t resp_encode_message(char *dst, const char *ch, size_t chlen,
			   const char *msg, size_t msglen)
{
	char *p = dst;

	memcpy(p, "*3\r\n$7\r\nmessage\r\n", 17);
	p = put_bulk_raw(p + 17, ch, chlen);
	p = put_bulk_raw(p, msg, msglen);
	return (size_t)(p - dst);
}

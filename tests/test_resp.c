// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The examples' RESP2 parser and encoder (examples/resp.c), without
 * sockets: frames cut at every byte boundary, pipelined commands, inline
 * commands, malformed and oversized input, replies as the load generator
 * reads them, and the bytes of each encoded reply and push.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "../examples/resp.h"

static const struct resp_limits cmds = {
	.max_bulk = 1024, .max_args = 16, .max_inline = 256 };
static const struct resp_limits replies = {
	.max_bulk = 1024, .max_args = 16, .max_inline = 256, .replies = true };

static struct resp_msg msg;

/* A stream of commands and the arguments each should give, "|"-joined. */
static const char stream[] =
	"*3\r\n$7\r\nPUBLISH\r\n$2\r\nch\r\n$5\r\nhello\r\n"
	"*2\r\n$9\r\nSUBSCRIBE\r\n$0\r\n\r\n"
	"*0\r\n"
	"PING  a\tb\r\n"
	"*1\r\n$4\r\nPI\r\n\r\n"
	"QUIT\n";
static const char *const want[] = {
	"PUBLISH|ch|hello", "SUBSCRIBE|", "", "PING|a|b", "PI\r\n", "QUIT",
};
#define NWANT (sizeof(want) / sizeof(want[0]))

static void joined(const struct resp_msg *m, char *out, size_t size)
{
	size_t len = 0;

	out[0] = '\0';
	for (size_t i = 0; i < m->argc; i++)
		len += (size_t)snprintf(out + len, size - len, "%s%.*s",
					i ? "|" : "", (int)m->len[i], m->argv[i]);
}

/*
 * Feed @stream to a receiver whose input grows by the chunk sizes that
 * @cut gives, parsing whenever bytes arrive; check every command.
 */
static void feed(size_t (*cut)(size_t got, size_t arg), size_t arg)
{
	char buf[sizeof(stream)], text[128];
	size_t have = 0, used = 0, total = sizeof(stream) - 1, seen = 0;

	while (have < total) {
		size_t n = cut(have, arg);

		if (n > total - have)
			n = total - have;
		memcpy(buf + have, stream + have, n);
		have += n;
		for (;;) {
			const char *err = NULL;
			ssize_t r = resp_parse(buf + used, have - used, &cmds, &msg,
					       &err);

			assert_true(r >= 0);
			assert_null(err);
			if (r == 0)
				break;
			assert_true(seen < NWANT);
			joined(&msg, text, sizeof(text));
			assert_string_equal(text, want[seen]);
			assert_int_equal(msg.type, RESP_ARRAY);
			seen++;
			used += (size_t)r;
		}
	}
	assert_int_equal(used, total);
	assert_int_equal(seen, NWANT);
}

static size_t one_byte(size_t got, size_t arg)
{
	(void)got;
	(void)arg;
	return 1;
}

/* Two chunks: the first @arg bytes, then the rest. */
static size_t split_at(size_t got, size_t arg)
{
	return got < arg ? arg - got : sizeof(stream);
}

static void test_resp_split_every_byte(void **state)
{
	(void)state;
	feed(one_byte, 0);
	for (size_t at = 1; at < sizeof(stream) - 1; at++)
		feed(split_at, at);
}

static void test_resp_pipelined(void **state)
{
	char *buf = malloc(100 * (sizeof(stream) - 1));
	size_t len = 0, used = 0;
	const char *err;
	int n = 0;

	(void)state;
	assert_non_null(buf);
	for (int i = 0; i < 100; i++) {
		memcpy(buf + len, stream, sizeof(stream) - 1);
		len += sizeof(stream) - 1;
	}
	for (ssize_t r; (r = resp_parse(buf + used, len - used, &cmds, &msg, &err)) > 0;
	     n++)
		used += (size_t)r;
	assert_int_equal(used, len);
	assert_int_equal(n, 100 * (int)NWANT);
	free(buf);
}

/* Each input must be rejected with @code (checked for every prefix too). */
static void expect_error(const struct resp_limits *lim, const char *in,
			 size_t len, int code, const char *text)
{
	const char *err = NULL;
	ssize_t r = resp_parse(in, len, lim, &msg, &err);

	if (r != code)
		fail_msg("'%.*s': %zd, expected %d", (int)len, in, r, code);
	assert_non_null(err);
	assert_non_null(strstr(err, "Protocol error: "));
	if (text && !strstr(err, text))
		fail_msg("'%.*s': '%s', expected '%s'", (int)len, in, err, text);
}

#define BAD(in, code, text) expect_error(&cmds, in, sizeof(in) - 1, code, text)

static void test_resp_malformed(void **state)
{
	(void)state;
	/* Bad type bytes where a bulk string is due. */
	BAD("*1\r\n:5\r\n", -EPROTO, "expected '$'");
	BAD("*2\r\n$1\r\na\r\n+x\r\n", -EPROTO, "expected '$'");
	/* Negative and non-digit lengths. */
	BAD("*-2\r\n", -EPROTO, "invalid multibulk length");
	BAD("*1\r\n$-1\r\n", -EPROTO, "invalid bulk length");
	BAD("*1a\r\n", -EPROTO, "invalid multibulk length");
	BAD("*\r\n", -EPROTO, "invalid multibulk length");
	BAD("*1\r\n$x\r\n", -EPROTO, "invalid bulk length");
	BAD("*1\r\n$ 1\r\nx\r\n", -EPROTO, "invalid bulk length");
	BAD("*1\r\n$99999999999999999999\r\n", -EPROTO, "invalid bulk length");
	/* Missing CR or CRLF. */
	BAD("*1\n$1\r\na\r\n", -EPROTO, "invalid multibulk length");
	BAD("*1\r\n$3\r\nabcX\r\n", -EPROTO, "expected CRLF");
	BAD("*1\r\n$3\r\nabc\rX", -EPROTO, "expected CRLF");
	/* A length line that never ends. */
	BAD("*111111111111111111111111111111", -EPROTO, "invalid multibulk length");
	/* Oversized: a bulk string, an array, an inline line. */
	BAD("*1\r\n$1025\r\n", -EMSGSIZE, "invalid bulk length");
	BAD("*17\r\n", -EMSGSIZE, "too many arguments");
	BAD("a a a a a a a a a a a a a a a a a\r\n", -EMSGSIZE, "too many arguments");
	{
		char line[300];

		memset(line, 'x', sizeof(line));
		expect_error(&cmds, line, sizeof(line), -EMSGSIZE,
			     "too big inline request");
	}
	/* Replies mode: what a server never sends. */
	expect_error(&replies, "$3\r\nabc\r\n", 9, -EPROTO, "unexpected reply");
	expect_error(&replies, ":1x\r\n", 5, -EPROTO, "invalid integer");
	expect_error(&replies, "*1\r\n:x\r\n", 8, -EPROTO, "invalid integer");
}

/* The largest accepted sizes are accepted. */
static void test_resp_limits_inclusive(void **state)
{
	size_t len = 16 + 1024 + 2;
	char *in = malloc(len);
	const char *err;
	int hdr;

	(void)state;
	assert_non_null(in);
	hdr = sprintf(in, "*1\r\n$1024\r\n");
	memset(in + hdr, 'b', 1024);
	memcpy(in + hdr + 1024, "\r\n", 2);
	assert_int_equal(resp_parse(in, (size_t)hdr + 1026, &cmds, &msg, &err),
			 hdr + 1026);
	assert_int_equal(msg.len[0], 1024);
	/* One byte short: incomplete, not an error. */
	assert_int_equal(resp_parse(in, (size_t)hdr + 1025, &cmds, &msg, &err), 0);
	free(in);
	assert_int_equal(resp_parse("*16\r\n", 5, &cmds, &msg, &err), 0);
}

/* Random bytes: never past the buffer, never a crash (ASan checks reads). */
static void test_resp_random_input(void **state)
{
	static const char alphabet[] = "*$:+-\r\n0123456789-ab ";
	unsigned int seed = 7;
	char buf[64];

	(void)state;
	for (int round = 0; round < 200000; round++) {
		size_t len = (size_t)rand_r(&seed) % sizeof(buf) + 1;
		const char *err;
		ssize_t r;

		for (size_t i = 0; i < len; i++)
			buf[i] = alphabet[rand_r(&seed) % (sizeof(alphabet) - 1)];
		r = resp_parse(buf, len, round & 1 ? &replies : &cmds, &msg, &err);
		assert_true(r == 0 || r == -EPROTO || r == -EMSGSIZE ||
			    (r > 0 && (size_t)r <= len));
		for (size_t i = 0; r > 0 && i < msg.argc; i++)
			assert_true(msg.argv[i] >= buf &&
				    msg.argv[i] + msg.len[i] <= buf + r);
	}
}

static void test_resp_replies(void **state)
{
	static const char in[] =
		":12\r\n+OK\r\n-ERR no\r\n"
		"*3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n";
	const char *err;
	size_t off = 0;
	ssize_t r;

	(void)state;
	r = resp_parse(in, sizeof(in) - 1, &replies, &msg, &err);
	assert_int_equal(r, 5);
	assert_int_equal(msg.type, RESP_INT);
	assert_int_equal(msg.num, 12);
	off += (size_t)r;
	r = resp_parse(in + off, sizeof(in) - 1 - off, &replies, &msg, &err);
	assert_int_equal(msg.type, RESP_SIMPLE);
	assert_memory_equal(msg.argv[0], "OK", 2);
	off += (size_t)r;
	r = resp_parse(in + off, sizeof(in) - 1 - off, &replies, &msg, &err);
	assert_int_equal(msg.type, RESP_ERROR);
	assert_int_equal(msg.len[0], 6);
	off += (size_t)r;
	r = resp_parse(in + off, sizeof(in) - 1 - off, &replies, &msg, &err);
	assert_int_equal(off + (size_t)r, sizeof(in) - 1);
	assert_int_equal(msg.type, RESP_ARRAY);
	assert_int_equal(msg.argc, 3);
	assert_memory_equal(msg.argv[2], "1", 1);
	/* Commands mode reads ":12" as an inline command, not an integer. */
	r = resp_parse(in, sizeof(in) - 1, &cmds, &msg, &err);
	assert_int_equal(r, 5);
	assert_int_equal(msg.type, RESP_ARRAY);
}

static void test_resp_encode(void **state)
{
	static const char want_out[] =
		"*3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:-7\r\n+PONG\r\n"
		"-ERR a b\r\n";
	struct resp_out o = { 0 };
	char frame[128];
	size_t len;
	const char *err;

	(void)state;
	assert_int_equal(resp_put_array(&o, 3), 0);
	assert_int_equal(resp_put_bulk(&o, "subscribe", 9), 0);
	assert_int_equal(resp_put_bulk(&o, "ch", 2), 0);
	assert_int_equal(resp_put_int(&o, -7), 0);
	assert_int_equal(resp_put_simple(&o, "PONG"), 0);
	/* A CR or LF in an error would end the line: it becomes a space. */
	assert_int_equal(resp_put_error(&o, "ERR a\nb"), 0);
	assert_int_equal(resp_out_pending(&o), sizeof(want_out) - 1);
	assert_memory_equal(o.buf, want_out, sizeof(want_out) - 1);

	/* Consumed bytes slide out before the buffer grows. */
	resp_out_consume(&o, 4);
	assert_int_equal(resp_out_pending(&o), sizeof(want_out) - 5);
	assert_int_equal(resp_out_reserve(&o, 4096), 0);
	assert_int_equal(o.off, 0);
	assert_memory_equal(o.buf, want_out + 4, sizeof(want_out) - 5);
	resp_out_consume(&o, resp_out_pending(&o));
	assert_int_equal(o.len, 0);
	resp_out_free(&o);
	assert_null(o.buf);

	/* Numbers at both ends of their range. */
	assert_int_equal(resp_put_int(&o, LLONG_MIN), 0);
	assert_int_equal(resp_put_int(&o, 1234567890), 0);
	assert_int_equal(resp_put_array(&o, 0), 0);
	assert_int_equal(resp_put_bulk(&o, "", 0), 0);
	assert_int_equal(o.len, sizeof(":-9223372036854775808\r\n:1234567890\r\n*0\r\n$0\r\n\r\n") - 1);
	assert_memory_equal(o.buf, ":-9223372036854775808\r\n:1234567890\r\n*0\r\n$0\r\n\r\n", o.len);
	resp_out_free(&o);

	/* The push, encoded once per publish: its length, its bytes, parsed back. */
	len = resp_encode_message(frame, "news", 4, "0123456789", 10);
	assert_int_equal(len, resp_message_len(4, 10));
	assert_int_equal(len, sizeof("*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$10\r\n0123456789\r\n") - 1);
	assert_memory_equal(frame, "*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$10\r\n0123456789\r\n", len);
	assert_int_equal(resp_parse(frame, len, &replies, &msg, &err), (ssize_t)len);
	assert_int_equal(msg.argc, 3);
	assert_memory_equal(msg.argv[2], "0123456789", 10);
	len = resp_encode_message(frame, "", 0, "", 0);
	assert_int_equal(len, resp_message_len(0, 0));
	assert_memory_equal(frame, "*3\r\n$7\r\nmessage\r\n$0\r\n\r\n$0\r\n\r\n", len);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_resp_split_every_byte),
		cmocka_unit_test(test_resp_pipelined),
		cmocka_unit_test(test_resp_malformed),
		cmocka_unit_test(test_resp_limits_inclusive),
		cmocka_unit_test(test_resp_random_input),
		cmocka_unit_test(test_resp_replies),
		cmocka_unit_test(test_resp_encode),
	};

	return cmocka_run_group_tests_name("resp", tests, NULL, NULL);
}

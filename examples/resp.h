/* SPDX-License-Identifier: LGPL-2.1-or-later */
#ifndef _EVENTBUF_EXAMPLES_RESP_H
#define _EVENTBUF_EXAMPLES_RESP_H

/*
 * The Redis protocol (RESP2), as much of it as pub/sub needs: a parser that
 * takes bytes and gives one complete message or an error, and encoders for
 * the replies and pushes. No sockets, no allocation in the parser: the
 * examples' server and load generator share it, and tests/test_resp.c
 * checks it on its own.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* The most arguments a message may have (resp_limits.max_args is at most this). */
#define RESP_ARGS_CAP 1024

/**
 * struct resp_limits - what the parser accepts
 * @max_bulk:   longest bulk string, in bytes.
 * @max_args:   most elements of an array (1 to RESP_ARGS_CAP).
 * @max_inline: longest inline command line (commands only).
 * @replies:    parse what a server sends (integers, simple strings and
 *              errors at the top, integers inside arrays) instead of
 *              commands (arrays of bulk strings, or inline lines).
 */
struct resp_limits {
	size_t max_bulk;
	size_t max_args;
	size_t max_inline;
	bool replies;
};

enum resp_type {
	RESP_ARRAY,	/* a command, or an array reply: @argv */
	RESP_INT,	/* ":<n>": the digits in @argv[0], the value in @num */
	RESP_SIMPLE,	/* "+<text>": @argv[0] */
	RESP_ERROR,	/* "-<text>": @argv[0] */
};

/**
 * struct resp_msg - one parsed message
 * @type: what it is.
 * @argc: its elements (0 for an empty command: "*0", "*-1", an empty line).
 * @argv: each element's bytes, pointing into the parsed buffer (not
 *        NUL-terminated); an integer element's digits.
 * @len:  each element's length.
 * @num:  the value of a RESP_INT.
 */
struct resp_msg {
	enum resp_type type;
	size_t argc;
	long long num;
	const char *argv[RESP_ARGS_CAP];
	size_t len[RESP_ARGS_CAP];
};

/**
 * resp_parse() - parse the first message of a buffer
 * @buf: the bytes received and not consumed yet.
 * @len: how many.
 * @lim: what is accepted.
 * @msg: filled when a message is complete.
 * @err: on an error, receives the text of the RESP error to send
 *       (a static string, "Protocol error: ...").
 *
 * Stateless: call it again with the same bytes and more once it returns 0.
 *
 * Return: the bytes the message took (> 0, @msg filled); 0 (incomplete:
 * read more); -EPROTO (malformed); -EMSGSIZE (longer than @lim allows).
 * After an error the stream cannot be resynchronised: close it.
 */
ssize_t resp_parse(const char *buf, size_t len, const struct resp_limits *lim,
		   struct resp_msg *msg, const char **err);

/**
 * struct resp_out - an output buffer
 * @buf: the bytes; [@off, @len) are pending.
 * @off: what was sent already.
 * @len: what was written.
 * @cap: the allocation.
 */
struct resp_out {
	char *buf;
	size_t off, len, cap;
};

/* The bytes waiting to be sent. */
static inline size_t resp_out_pending(const struct resp_out *o)
{
	return o->len - o->off;
}

/* Make room for @more bytes at the end; 0 or -ENOMEM. */
int resp_out_reserve(struct resp_out *o, size_t more);
/* @n bytes were sent. */
void resp_out_consume(struct resp_out *o, size_t n);
void resp_out_free(struct resp_out *o);

/* Each appends one element or header and returns 0 or -ENOMEM. */
int resp_put_array(struct resp_out *o, size_t n);
int resp_put_bulk(struct resp_out *o, const char *s, size_t len);
int resp_put_int(struct resp_out *o, long long v);
int resp_put_simple(struct resp_out *o, const char *s);
int resp_put_error(struct resp_out *o, const char *s);
int resp_put_raw(struct resp_out *o, const char *s, size_t len);

/* The length of a "message" push of channel and message of these lengths. */
size_t resp_message_len(size_t chlen, size_t msglen);
/*
 * Write the push "*3 $7 message $<ch> $<msg>" to @dst, which has
 * resp_message_len() bytes; returns that length.
 */
size_t resp_encode_message(char *dst, const char *ch, size_t chlen,
			   const char *msg, size_t msglen);

#endif /* _EVENTBUF_EXAMPLES_RESP_H */

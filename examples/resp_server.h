/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The Redis-protocol server of resp_server.c, callable from a program's
 * main(): the example service's server mode (service --resp) and the
 * resp_server program are the same code.
 */
#ifndef EVENTBUF_EXAMPLES_RESP_SERVER_H
#define EVENTBUF_EXAMPLES_RESP_SERVER_H

/**
 * resp_server_run() - Serve RESP pub/sub on loopback until SIGINT or SIGTERM.
 * @argc: the number of @argv's options, counting @argv[0] (getopt's argc).
 * @argv: the options, after a program name: -p port, -w workers,
 *        -b max_bulk, -o output limit (bytes), -l lag limit (messages).
 *
 * Prints "resp_server: listening on 127.0.0.1:PORT, N workers" once it
 * accepts connections. Blocks SIGINT and SIGTERM in every thread and waits
 * for one of them; ignores SIGPIPE.
 *
 * Context: once per process, from its main thread.
 * Return: 0 after a clean stop; 1 when the server could not start; exits
 * with status 2 on a bad option.
 */
int resp_server_run(int argc, char **argv);

#endif

// SPDX-License-Identifier: LGPL-2.1-or-later
/* resp_server: the Redis-protocol server of resp_server.c as a program. */
#include "resp_server.h"

int main(int argc, char **argv)
{
	return resp_server_run(argc, argv);
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Descriptor counts from /proc/self/fd, shared by the tests (helpers.h) and
 * the benchmark (bench/), which links neither cmocka nor tests/helpers.o:
 * hence a header of static functions.
 */
#ifndef _EVENTBUF_TESTS_FDCOUNT_H
#define _EVENTBUF_TESTS_FDCOUNT_H

#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* Number of eventfds this process holds, or -1 if /proc cannot be read. */
static inline int count_eventfds(void)
{
	char path[PATH_MAX], target[64];
	struct dirent *de;
	int n = 0;
	DIR *dir = opendir("/proc/self/fd");

	if (!dir)
		return -1;
	while ((de = readdir(dir))) {
		ssize_t len;

		snprintf(path, sizeof(path), "/proc/self/fd/%s", de->d_name);
		len = readlink(path, target, sizeof(target) - 1);
		if (len < 0)
			continue;
		target[len] = '\0';
		n += strcmp(target, "anon_inode:[eventfd]") == 0;
	}
	closedir(dir);
	return n;
}

/*
 * Number of descriptors this process holds, of any kind, or -1 if /proc
 * cannot be read.
 */
static inline int count_fds(void)
{
	struct dirent *de;
	int n = 0;
	DIR *dir = opendir("/proc/self/fd");

	if (!dir)
		return -1;
	while ((de = readdir(dir)))
		n += de->d_name[0] != '.';
	closedir(dir);
	return n - 1;	/* the directory's own descriptor */
}

#endif /* _EVENTBUF_TESTS_FDCOUNT_H */

// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The API fuzzer's checks (fuzz_api.c) in make check: every input kept in
 * tests/fuzz-corpus/ (crashes once found, and seeds), then inputs drawn
 * from a seeded generator. A failed check fails the test (fuzz_api.c's
 * CHECK() calls cmocka's fail() when built with FUZZ_REPLAY).
 */
#define FUZZ_REPLAY
#include "fuzz_api.c"

#include <dirent.h>

static void run_file(const char *path)
{
	uint8_t buf[4096];
	FILE *f = fopen(path, "rb");
	size_t n;

	assert_non_null(f);
	n = fread(buf, 1, sizeof(buf), f);
	fclose(f);
	LLVMFuzzerTestOneInput(buf, n);
}

static void test_fuzz_replay_corpus(void **state)
{
	DIR *dir = opendir(FUZZ_CORPUS);
	struct dirent *de;
	char path[4096];
	int files = 0;

	(void)state;
	assert_non_null(dir);
	while ((de = readdir(dir))) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", FUZZ_CORPUS, de->d_name);
		run_file(path);
		files++;
	}
	closedir(dir);
	check_all_released();
	printf("# %d corpus inputs replayed\n", files);
	assert_true(files > 0);
	/* seed-group-steps reads groups a batch at a time while other
	 * operations run. */
	printf("# %llu group batches read one per operation\n",
	       (unsigned long long)group_batches_stepped);
	assert_true(group_batches_stepped > 0);
}

static void test_fuzz_replay_generated(void **state)
{
	unsigned int seed = test_seed();
	int rounds = (int)scaled(2000, 100);
	uint8_t buf[600];

	(void)state;
	for (int r = 0; r < rounds; r++) {
		size_t n = 1 + (size_t)rand_r(&seed) % sizeof(buf);

		for (size_t i = 0; i < n; i++)
			buf[i] = (uint8_t)rand_r(&seed);
		LLVMFuzzerTestOneInput(buf, n);
	}
	check_all_released();
	assert_int_equal(expect_nothing_left(), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fuzz_replay_corpus),
		cmocka_unit_test(test_fuzz_replay_generated),
	};

	return cmocka_run_group_tests_name("fuzz_replay", tests, NULL, NULL);
}

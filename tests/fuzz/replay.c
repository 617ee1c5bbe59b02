/*
 * replay.c - the main() of a fuzz target in a build without libFuzzer
 * (gcc, SPOTTRAIN_FUZZ=OFF): runs LLVMFuzzerTestOneInput once on every
 * file named on the command line, and on every file of each directory
 * named. So the corpus (seeds and every past finding) is a regression test
 * of every build. Exit 0 when all inputs ran, 1 when one could not be read.
 */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));

/* Run the target on one file. */
static int run_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
		return 1;
	}
	size_t cap = 1 << 16, n = 0;
	uint8_t *buf = malloc(cap);
	for (size_t got; buf && (got = fread(buf + n, 1, cap - n, f)) > 0;) {
		n += got;
		if (n == cap)
			buf = realloc(buf, cap *= 2);
	}
	fclose(f);
	if (!buf) {
		fprintf(stderr, "replay: %s: out of memory\n", path);
		return 1;
	}
	/* an exact-size copy, so that reading past the input is caught under ASan */
	uint8_t *in = malloc(n ? n : 1);
	memcpy(in, buf, n);
	free(buf);
	LLVMFuzzerTestOneInput(in, n);
	free(in);
	return 0;
}

int main(int argc, char **argv)
{
	int bad = 0, runs = 0;
	if (LLVMFuzzerInitialize)
		LLVMFuzzerInitialize(&argc, &argv);
	for (int i = 1; i < argc; i++) {
		struct stat st;
		if (argv[i][0] == '-')
			continue; /* libFuzzer flags: ignored here */
		if (stat(argv[i], &st) != 0 || !S_ISDIR(st.st_mode)) {
			bad |= run_file(argv[i]);
			runs++;
			continue;
		}
		struct dirent **names;
		int k = scandir(argv[i], &names, NULL, alphasort);
		for (int j = 0; j < k; j++) {
			char p[4096];
			snprintf(p, sizeof p, "%s/%s", argv[i], names[j]->d_name);
			if (names[j]->d_name[0] != '.' && stat(p, &st) == 0 && S_ISREG(st.st_mode)) {
				bad |= run_file(p);
				runs++;
			}
			free(names[j]);
		}
		free(names);
	}
	fprintf(stderr, "replay: %d input(s) ran\n", runs);
	return bad;
}

/*
 * fuzz_config.c - the INI config through the text checks, the key table and
 * --set. Input: the file's text, then optionally --set assignments, each
 * introduced by a 0x1e byte (so an assignment may hold a newline, as a shell
 * argument may). Oracle beyond the sanitizers: a config that loads and
 * validates must survive its own canonical dump (the text a checkpoint keeps
 * and a resume parses again): the dump loads, validates, and dumps the same
 * (but for a value too long for a line, which the dump leaves out on purpose).
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "fuzz_util.h"

/* Load dump into a fresh config and compare its dump with the first one; abort on a mismatch. */
static void check_round_trip(const char *dump)
{
	config c2;
	config_defaults(&c2);
	if (config_load_string(&c2, dump, "dump") != 0 || config_validate(&c2) != 0) {
		fprintf(stderr, "fuzz_config: the dump of a valid config does not load:\n%s\n", dump);
		abort();
	}
	char *again = config_dump(&c2);
	/* (a value longer than a line is left out of the dump, as documented: no exact round trip) */
	bool left_out = strstr(dump, "longer than a config line may be") != NULL;
	if (!again || (!left_out && strcmp(again, dump) != 0)) {
		fprintf(stderr, "fuzz_config: the dump changes on a round trip:\n%s\n--- became\n%s\n", dump,
			again ? again : "(null)");
		abort();
	}
	free(again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *rs = memchr(data, 0x1e, size);
	size_t text_len = rs ? (size_t)(rs - data) : size;
	char *text = fuzz_strndup(data, text_len);
	config c;
	config_defaults(&c);
	int rc = config_check_text(text, text_len, "fuzz.ini");
	if (rc == 0)
		rc = config_load_string(&c, text, "fuzz.ini");
	free(text);
	while (rc == 0 && rs) {
		const uint8_t *start = rs + 1, *end = data + size;
		rs = memchr(start, 0x1e, (size_t)(end - start));
		char *set = fuzz_strndup(start, (size_t)((rs ? rs : end) - start));
		rc = config_set(&c, set);
		free(set);
	}
	if (rc == 0 && config_validate(&c) == 0) {
		char *dump = config_dump(&c);
		if (!dump)
			abort();
		check_round_trip(dump);
		free(dump);
	}
	return 0;
}

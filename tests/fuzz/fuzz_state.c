/*
 * fuzz_state.c - the launcher's RUN/launcher/state.json: the JSON reader,
 * and (selector bit 0) the file reader state_load. Oracle beyond the
 * sanitizers: a state that loads must survive its own serialisation (load,
 * save, load again: the same text).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "state.h"

/* Serialise s, read it back, serialise again: the two texts must be equal. */
static void check_round_trip(const launcher_state *s)
{
	char err[256];
	char *json = state_to_json(s);
	if (!json)
		abort();
	launcher_state s2;
	state_init(&s2);
	if (state_from_json(json, &s2, err, sizeof err) != 0) {
		fprintf(stderr, "fuzz_state: own output refused (%s):\n%s\n", err, json);
		abort();
	}
	char *again = state_to_json(&s2);
	if (!again || strcmp(json, again) != 0) {
		fprintf(stderr, "fuzz_state: round trip changed the state:\n%s\n--- became\n%s\n", json,
			again ? again : "(null)");
		abort();
	}
	free(again);
	free(json);
	state_free(&s2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	launcher_state s;
	char err[256];
	int rc;
	state_init(&s);
	if (data[0] & 1) {
		char path[512];
		fuzz_path(path, sizeof path, "state.json");
		fuzz_write(path, data + 1, size - 1);
		rc = state_load(path, &s);
	} else {
		char *text = fuzz_strndup(data + 1, size - 1);
		rc = state_from_json(text, &s, err, sizeof err);
		free(text);
	}
	if (rc == 0)
		check_round_trip(&s);
	state_free(&s);
	return 0;
}

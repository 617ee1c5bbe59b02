/*
 * fuzz_events.c - what the launcher reads of a run directory that the
 * workers write: events.jsonl followed as it grows (event_tail), and rank 0's
 * heartbeat file. Input: chunks separated by 0x1e bytes; each is appended to
 * events.jsonl and the tail polled (a chunk starting with 0x1d truncates the
 * file first: a replaced file); the last chunk is also the heartbeat file.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "events.h"
#include "fuzz_util.h"

/* Read the fields the supervisor reads of an event. */
static void on_event(const cJSON *obj, void *ctx)
{
	int *n = ctx;
	const char *ev = json_str(obj, "event", "");
	double g = json_num(obj, "generation", -1);
	double step = json_num(obj, "step", -1);
	*n += (int)strlen(ev) + (g > 0) + (step > 0);
}

/* Append (or, after a 0x1d, replace with) one chunk. */
static void put_chunk(const char *path, const uint8_t *c, size_t n)
{
	bool replace = n > 0 && c[0] == 0x1d;
	FILE *f = fopen(path, replace ? "wb" : "ab");
	if (!f)
		abort();
	if (replace) {
		c++;
		n--;
	}
	if (n && fwrite(c, 1, n, f) != n)
		abort();
	if (fclose(f) != 0)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char path[512], hb_path[512];
	fuzz_path(path, sizeof path, "events.jsonl");
	fuzz_path(hb_path, sizeof hb_path, "heartbeat");
	fuzz_write(path, "", 0);
	event_tail t;
	event_tail_init(&t, path);
	int seen = 0;
	const uint8_t *at = data, *end = data + size;
	for (;;) {
		const uint8_t *rs = memchr(at, 0x1e, (size_t)(end - at));
		const uint8_t *stop = rs ? rs : end;
		put_chunk(path, at, (size_t)(stop - at));
		event_tail_poll(&t, on_event, &seen);
		if (!rs) {
			fuzz_write(hb_path, at, (size_t)(stop - at));
			break;
		}
		at = rs + 1;
	}
	event_tail_free(&t);
	heartbeat hb;
	(void)heartbeat_read(fuzz_dir(), &hb);
	return 0;
}

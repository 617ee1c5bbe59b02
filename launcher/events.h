/*
 * events.h - the run directory's shared logs as the launcher sees them:
 * appending its own events to events.jsonl (one cJSON object per line, the
 * same format the workers use), following the file as it grows, and reading
 * rank 0's heartbeat file.
 */
#ifndef SPOTLAUNCH_EVENTS_H
#define SPOTLAUNCH_EVENTS_H

#include <stdbool.h>
#include <stddef.h>

#include <cjson/cJSON.h>

#include "contract.h"

/*
 * Launcher events not (yet) named in contract.h.
 * EV_FIRST_STEP: the launcher saw a generation's first step in the heartbeat
 * {generation, step, step_time}.
 */
#ifndef EV_FIRST_STEP
#define EV_FIRST_STEP "first_step"
#endif

/* Append {"event":event,"time":now,...obj} as one line (obj is consumed). Returns 0 or -1. */
int events_append(const char *run_dir, const char *event, cJSON *obj);

/* Follows a JSON-lines file: each poll hands over the complete lines added since the last. */
typedef struct event_tail {
	char path[4096];
	long long off;       /* bytes consumed */
	char *part;          /* an incomplete last line */
	size_t part_len;
} event_tail;

void event_tail_init(event_tail *t, const char *path);
void event_tail_free(event_tail *t);
/*
 * Calls fn for each new line that parses as a JSON object (obj is borrowed).
 * A file that shrank (replaced) is read again from the start. Returns the
 * number of objects handed over.
 */
int event_tail_poll(event_tail *t, void (*fn)(const cJSON *obj, void *ctx), void *ctx);

/* RUN/heartbeat: "STEP GENERATION WALLTIME" written by rank 0 after every step. */
typedef struct heartbeat {
	long step;
	int generation;
	double wall;
} heartbeat;

/* Returns true and fills hb when the file exists and parses. */
bool heartbeat_read(const char *run_dir, heartbeat *hb);

/* Field accessors that tolerate missing or mistyped fields. */
double json_num(const cJSON *obj, const char *key, double dflt);
const char *json_str(const cJSON *obj, const char *key, const char *dflt);

#endif

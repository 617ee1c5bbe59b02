/*
 * runlog.h - the run directory's logs: events.jsonl (every rank and the
 * launcher append whole lines with O_APPEND), metrics.jsonl and the heartbeat
 * file (rank 0). The records themselves are built in one place, events.c
 * (events.h), with cJSON so strings are always escaped; this module appends them.
 */
#ifndef SPOTTRAIN_RUNLOG_H
#define SPOTTRAIN_RUNLOG_H

#include <cjson/cJSON.h>

/* Create RUN and RUN/checkpoints (mkdir -p). Returns 0 or EXIT_IOERR. */
int runlog_prepare_dir(const char *run_dir);

/* Append one event: obj gets "event" and "time" added, is written as one line, and freed. */
void runlog_event(const char *run_dir, const char *event, cJSON *obj);
/* Append one metrics line (obj is freed). */
void runlog_metrics(const char *run_dir, cJSON *obj);
/* Rewrite RUN/heartbeat with "STEP GENERATION WALLTIME\n" (cheap: one pwrite on a kept fd). */
void runlog_heartbeat(const char *run_dir, long step, int generation);
void runlog_close(void);

/* Write a whole file atomically (fs_write_atomic: tmp, fsync, rename, fsync dir), logging a
 * failure. Returns 0 or EXIT_IOERR. */
int write_file_atomic(const char *path, const char *data, size_t len);

#endif

/*
 * ckpt_policy.h - when and how training writes checkpoints: asynchronously
 * (periodic, epoch end, checkpoint-now) without ever stalling on a slow
 * volume, synchronously at a stop and at the end, and the final model. Only
 * the writer ranks write (rank 0, or each node's first rank with
 * checkpoint.scope = node); a durable write is reported as a "checkpoint"
 * event. Uses ckpt.h's writer.
 */
#ifndef SPOTTRAIN_CKPT_POLICY_H
#define SPOTTRAIN_CKPT_POLICY_H

#include <stdbool.h>
#include <stddef.h>

#include "ckpt.h"
#include "run.h"

typedef struct ckpt_policy {
	ckpt_writer *writer;     /* asynchronous writes (writer ranks, checkpoint.async); NULL: synchronous */
	char pending[4096];      /* submitted asynchronously, not yet reported ("": none) */
	long pending_step;
	double pending_blocked;  /* seconds training waited to hand that write over */
} ckpt_policy;

/* Collective: the asynchronous writer on the writer ranks (when checkpoint.async). */
int ckpt_policy_open(ckpt_policy *p, run *r);
/* Wait for a write in flight, report it, free the writer. Returns that write's status. */
int ckpt_policy_close(ckpt_policy *p, run *r);

/* Report a finished asynchronous write as soon as it is durable (wait: wait for it first).
 * Returns its status (0 while still writing). */
int ckpt_policy_poll(ckpt_policy *p, run *r, bool wait);

/* Periodic checkpoint due after this step (checkpoint.every_steps)? */
bool ckpt_policy_due(const run *r);

/* Checkpoint the current state: sync (stop, end) or asynchronously; out_path (may be NULL) gets
 * its path on every rank. Returns 0 or this rank's error (the caller agrees where it matters). */
int ckpt_policy_save(ckpt_policy *p, run *r, bool sync, bool epoch_end, char *out_path, size_t len);

/* Collective, at the end of training: the last step's checkpoint (unless on disk) and
 * RUN/final.h5, agreed. Returns 0 or an exit code. */
int ckpt_policy_finish(ckpt_policy *p, run *r);

#endif

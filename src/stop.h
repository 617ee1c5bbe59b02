/*
 * stop.h - the stop protocol (DESIGN.md invariant 3) in one place.
 *
 * Every step, each rank writes its local requests into the first integers of
 * the stop tail, which rides after the gradients in the same all-reduce. The
 * sums are the same on every rank, so stop_decide() gives every rank the same
 * decision for the same step without an extra round trip:
 *
 *   source (this rank)                          tail slot        decision
 *   SIGTERM / SIGINT (signals.h)                TAIL_SIGNAL      stop, "sigterm" / "sigint", exit 75
 *   SIGUSR1 from the launcher                   TAIL_RESCALE     stop, "rescale", exit 75
 *   interruption notice (node's spot watcher)   TAIL_NOTICE      stop, "notice", exit 75
 *   rebalance recommendation (spot watcher)     TAIL_CKPT_NOW    checkpoint now, go on
 *   failed asynchronous checkpoint write        TAIL_IOERR       exit 74 at once
 *
 * Precedence: an I/O failure beats a stop, a stop beats checkpoint-now, and a
 * notice names the stop before a signal, a signal before a rescale.
 */
#ifndef SPOTTRAIN_STOP_H
#define SPOTTRAIN_STOP_H

#include <stdbool.h>
#include <stdint.h>

#include "signals.h"
#include "spot.h"

/* The stop tail: integers summed over ranks after the gradients. */
enum {
	TAIL_NOTICE,    /* ranks that saw an interruption notice */
	TAIL_SIGNAL,    /* ranks that got SIGTERM/SIGINT */
	TAIL_RESCALE,   /* ranks that got SIGUSR1 */
	TAIL_CKPT_NOW,  /* ranks that got a rebalance recommendation */
	TAIL_IOERR,     /* ranks whose asynchronous checkpoint write failed */
	TAIL_LOSS,      /* summed loss in 2^-GRAD_FIX_BITS units (grad.h) */
	TAIL_CORRECT,   /* correct predictions */
	TAIL_OVERFLOW,  /* gradient values that saturated */
	TAIL_NONFINITE, /* NaN or infinite gradient values */
	TAIL_N
};
/* The request flags are the slots before TAIL_LOSS; the step's counters follow them. */
#define TAIL_REQUESTS TAIL_LOSS

/* What this rank has seen so far. Zero-initialise (or stop_init) before the first step. */
typedef struct stop_state {
	double first_wall;   /* wall time of the first notice or signal this rank saw (0: none) */
	const char *reason;  /* this rank's own reason (STOP_NOTICE, STOP_SIGTERM, ...), NULL: none */
	bool notice_seen;    /* this node's watcher reported an interruption notice (sticky) */
	bool signalled;      /* SIGTERM or SIGINT arrived (sticky) */
	bool rescale;        /* SIGUSR1 arrived (sticky) */
	bool ckpt_now;       /* a rebalance recommendation since the last stop_requests (one-shot) */
	int io_rc;           /* the first failed asynchronous checkpoint write's code (sticky) */
} stop_state;

typedef enum {
	STOP_ACT_CONTINUE = 0, /* train on */
	STOP_ACT_CHECKPOINT,   /* write a checkpoint now and train on */
	STOP_ACT_STOP,         /* checkpoint synchronously, exit 75 */
	STOP_ACT_IOERR,        /* exit 74 at once, earlier checkpoints intact */
} stop_action;

typedef struct stop_decision {
	stop_action action;
	const char *reason; /* STOP_ACT_STOP: STOP_NOTICE | STOP_SIGTERM | STOP_SIGINT | STOP_RESCALE */
	int exit_code;      /* EXIT_TEMPFAIL (stop), EXIT_IOERR (I/O failure), 0 otherwise */
} stop_decision;

void stop_init(stop_state *s);

/* A signal request (signals_pending) seen at wall time when. SIG_REQ_NONE changes nothing. */
void stop_note_signal(stop_state *s, signal_request req, double when_wall);
/* An event of this node's spot watcher: a notice stops, a rebalance asks for a checkpoint. */
void stop_note_watcher(stop_state *s, const spot_event *ev);
/* A checkpoint write of this rank failed with rc (0 changes nothing; the first code is kept). */
void stop_note_io_failure(stop_state *s, int rc);

/* Called with each watcher event before it is noted (to log and record it). */
typedef void (*stop_report_fn)(void *ctx, const spot_event *ev);
/* Read the process signals and drain the watcher (NULL-safe) into s. Never blocks. */
void stop_poll(stop_state *s, spot_watcher *w, stop_report_fn report, void *ctx);

/* This rank's requests into tail[0, TAIL_REQUESTS) (the rest is left alone); the one-shot
 * checkpoint-now request is consumed. */
void stop_requests(stop_state *s, int64_t *tail);

/* The decision every rank takes from the summed tail; local only names SIGINT vs SIGTERM. */
stop_decision stop_decide(const int64_t *tail, const stop_state *local);

#endif

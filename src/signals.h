/*
 * signals.h - the process signals that ask a worker to stop: SIGTERM and
 * SIGINT (stop at an agreed step with a checkpoint) and SIGUSR1 (the
 * launcher's rescale request). The handlers only record the first request;
 * the stop protocol (stop.h) reads it once per step.
 */
#ifndef SPOTTRAIN_SIGNALS_H
#define SPOTTRAIN_SIGNALS_H

typedef enum {
	SIG_REQ_NONE = 0,
	SIG_REQ_TERM,    /* SIGTERM */
	SIG_REQ_INT,     /* SIGINT (a second SIGINT exits at once with 130) */
	SIG_REQ_RESCALE, /* SIGUSR1 from the launcher */
} signal_request;

/* Install handlers for SIGTERM, SIGINT and SIGUSR1 (async-signal-safe flag setting only) and
 * forget any earlier request. Returns 0 or EXIT_OSERR. */
int signals_install(void);
/* The first pending request since install (not cleared), and the wall time it arrived. */
signal_request signals_pending(double *when_wall);

#endif

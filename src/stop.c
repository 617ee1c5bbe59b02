/*
 * stop.c - the stop protocol: local requests into the tail, the tail's sums
 * into one decision (see stop.h for the table).
 */
#include "stop.h"

#include <string.h>

#include "contract.h"

void stop_init(stop_state *s)
{
	memset(s, 0, sizeof *s);
}

/* The first notice or signal names this rank's reason and time; later ones keep them. */
void stop_note_signal(stop_state *s, signal_request req, double when_wall)
{
	if (req == SIG_REQ_NONE)
		return;
	if (req == SIG_REQ_RESCALE)
		s->rescale = true;
	else
		s->signalled = true;
	if (!s->first_wall) {
		s->first_wall = when_wall;
		s->reason = req == SIG_REQ_TERM ? STOP_SIGTERM : req == SIG_REQ_INT ? STOP_SIGINT : STOP_RESCALE;
	}
}

/* A notice names the reason even after a signal, and its time counts if it is earlier. */
void stop_note_watcher(stop_state *s, const spot_event *ev)
{
	if (ev->kind == SPOT_EVENT_STOP) {
		if (!s->first_wall || ev->received_wall < s->first_wall)
			s->first_wall = ev->received_wall;
		s->reason = STOP_NOTICE;
		s->notice_seen = true;
	} else if (ev->kind == SPOT_EVENT_REBALANCE) {
		s->ckpt_now = true;
	}
}

void stop_note_io_failure(stop_state *s, int rc)
{
	if (rc && !s->io_rc)
		s->io_rc = rc;
}

void stop_poll(stop_state *s, spot_watcher *w, stop_report_fn report, void *ctx)
{
	double when = 0;
	signal_request req = signals_pending(&when);
	stop_note_signal(s, req, when);
	spot_event ev;
	while (spot_watcher_poll(w, &ev)) {
		if (report)
			report(ctx, &ev);
		stop_note_watcher(s, &ev);
	}
}

void stop_requests(stop_state *s, int64_t *tail)
{
	tail[TAIL_NOTICE] = s->notice_seen;
	tail[TAIL_SIGNAL] = s->signalled;
	tail[TAIL_RESCALE] = s->rescale;
	tail[TAIL_CKPT_NOW] = s->ckpt_now;
	tail[TAIL_IOERR] = s->io_rc != 0;
	s->ckpt_now = false;
}

stop_decision stop_decide(const int64_t *tail, const stop_state *local)
{
	stop_decision d = {STOP_ACT_CONTINUE, NULL, 0};
	if (tail[TAIL_IOERR] > 0) {
		d.action = STOP_ACT_IOERR;
		d.exit_code = EXIT_IOERR;
	} else if (tail[TAIL_NOTICE] > 0 || tail[TAIL_SIGNAL] > 0 || tail[TAIL_RESCALE] > 0) {
		d.action = STOP_ACT_STOP;
		d.exit_code = EXIT_TEMPFAIL;
		if (tail[TAIL_NOTICE] > 0)
			d.reason = STOP_NOTICE;
		else if (tail[TAIL_SIGNAL] > 0)
			d.reason = local->reason && strcmp(local->reason, STOP_SIGINT) == 0 ? STOP_SIGINT
											: STOP_SIGTERM;
		else
			d.reason = STOP_RESCALE;
	} else if (tail[TAIL_CKPT_NOW] > 0) {
		d.action = STOP_ACT_CHECKPOINT;
	}
	return d;
}

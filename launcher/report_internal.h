/*
 * report_internal.h - what report.c (loading, figures, text, JSON, the command)
 * shares with report_plot.c (the data files and the gnuplot script of report.png).
 * Not a public interface: report.h is.
 */
#ifndef SPOTLAUNCH_REPORT_INTERNAL_H
#define SPOTLAUNCH_REPORT_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>

#include "account.h"
#include "advice.h"

#define REPORT_PNG_W 1200
#define REPORT_PNG_H 1300

typedef struct point {
	double t;
	long step;
	double v;
	int gen;
} point;

typedef struct pvec {
	point *p;
	int n, cap;
} pvec;

typedef struct ckpt_ev {
	double t;
	long step;
	double write_s;
	int gen;
} ckpt_ev;

typedef struct report_opts {
	const char *run_dir;
	const char *out_png;
	const char *gnuplot;
	bool no_plot, json;
	double spot, ondemand;     /* < 0: not given */
	const char *currency;
	double write_s, mtbf_h, rate, step_s;
	long interval_steps;
} report_opts;

/* Everything the report shows. Arrays per session are indexed like a.s. */
typedef struct report {
	run_account a;
	pvec loss, acc;             /* metrics.jsonl: training loss lines, test accuracy lines */
	pvec acc_ev;                /* epoch events with test_accuracy (used when metrics.jsonl has none) */
	ckpt_ev *ck;
	int n_ck, cap_ck;
	double *nodes, *t0, *billed, *useful, *sess_step_s;
	bool nodes_guessed;
	double node_s, useful_node_s, billed_s;
	double step_s;              /* median seconds per step over the run (NAN unknown) */
	long interval_steps;        /* inferred from the checkpoint events (-1 unknown) */
	double write_s;             /* median blocked_s (else write_s) of the checkpoint events (NAN unknown) */
	int *prev, *next;           /* per incident: session indices */
	double *down, *rework, *lost;
	bool *rework_from_metrics;  /* rework timed from the run's records (else steps lost x step time) */
	double lost_s;
	/* prices and their source */
	double spot, ondemand;
	char currency[32];
	char price_source[64];
	/* advice */
	bool have_advice;
	char no_advice[256];
	advice_in adv_in;
	advice adv;
	char mtbf_source[64];
} report;

/* The same rules as account.c: where a session began and the furthest step it reached. */
long report_begin_step(const session *s);
long report_end_step(const session *s);
/* "1.23", or "-" for an unknown (NAN) duration. */
const char *report_fmt_s(double v, char *buf, size_t len);

/* PREFIX-{loss,acc,progress,world,marks}.dat, times in seconds since the first launch. Returns 0 or an exit code. */
int report_write_data(const report *r, const char *prefix);
/* PREFIX.gp: draws png from the data files (REPORT_PNG_W x REPORT_PNG_H). Returns 0 or an exit code. */
int report_write_gp(const report *r, const report_opts *o, const char *prefix, const char *png, const char *gp_path);

#endif

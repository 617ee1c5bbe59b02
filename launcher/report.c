#include "report.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "account.h"
#include "advice.h"
#include "contract.h"
#include "events.h"
#include "plot.h"
#include "report_internal.h"
#include "util.h"

#define REPORT_MAX_FILE (1L << 30)
#define PRICES_FILE "launcher/prices.json"

static const char report_usage[] =
	"usage: spotlaunch report RUN_DIR [--spot-price P] [--ondemand-price P] [--currency NAME] [--out FILE.png]\n"
	"                         [--json] [--write-s D] [--mtbf-hours M | --rate-per-node-hour R]\n"
	"                         [--interval-steps K] [--step-s S] [--gnuplot PATH] [--no-plot]\n"
	"\n"
	"What a run did and what it cost, from RUN_DIR/events.jsonl and metrics.jsonl: the accounting of\n"
	"`spotlaunch status` (generations, incidents, steps lost, goodput), the time lost per incident,\n"
	"the cost on spot nodes against the same useful work on on-demand nodes, checkpoint interval advice,\n"
	"and report.png (loss and test accuracy, global step, world size and interruptions over wall time).\n"
	"\n"
	"  --spot-price P          price of one spot node-hour; --ondemand-price P: of an on-demand node-hour\n"
	"                          (default: RUN_DIR/launcher/prices.json {\"spot_per_node_hour\": P,\n"
	"                          \"ondemand_per_node_hour\": P, \"currency\": \"USD\"}; the command line wins)\n"
	"  --currency NAME         printed after prices (default: the file's, else none)\n"
	"  --out FILE.png          the picture (default RUN_DIR/report.png); FILE.json, FILE.gp and\n"
	"                          FILE-*.dat are written beside it\n"
	"  --json                  print the report as one JSON object (the same as FILE.json) instead of text\n"
	"  --write-s D             checkpoint write time for the advice (default: the median of the run's\n"
	"                          checkpoint events' blocked_s, else write_s)\n"
	"  --mtbf-hours M          mean time between interruptions of the world (default: from the run)\n"
	"  --rate-per-node-hour R  interruptions per node-hour (with the run's mean node count)\n"
	"  --interval-steps K      the checkpoint interval (default: from the checkpoint events)\n"
	"  --step-s S              seconds per step (default: the median from metrics.jsonl)\n"
	"  --gnuplot PATH          the gnuplot program (gnuplot); --no-plot: data and script only\n"
	"\n"
	"cost: spot = sum over generations of nodes x (its launch -> the next launch) x spot price;\n"
	"on-demand = sum over generations of useful training time x nodes x on-demand price.\n"
	"advice: T* = sqrt(2 D M), waste = D/T + T/(2M) + R/M (see spotlaunch advise --help).\n"
	"exit codes: 0 done; 64 usage; 66 no RUN_DIR/events.jsonl; 74 cannot read the run or write the files; 83 gnuplot\n"
	"missing or failed (all else written; 'gnuplot FILE.gp' draws it later).\n";

/* The same rules as account.c: where a session began and the furthest step it reached. */
long report_begin_step(const session *s)
{
	return s->resumed ? s->resume_step : s->start_step;
}

long report_end_step(const session *s)
{
	long e = s->last_step;
	if (s->stopped && s->stop_step > e)
		e = s->stop_step;
	return e < report_begin_step(s) ? report_begin_step(s) : e;
}

const char *report_fmt_s(double v, char *buf, size_t len)
{
	if (isfinite(v))
		snprintf(buf, len, "%.2f", v);
	else
		snprintf(buf, len, "-");
	return buf;
}

static int usage(const char *fmt, const char *arg)
{
	fprintf(stderr, "spotlaunch report: ");
	fprintf(stderr, fmt, arg);
	fprintf(stderr, "\nTry 'spotlaunch report --help'.\n");
	return EXIT_USAGE;
}

static int push(pvec *v, point p)
{
	if (v->n == v->cap) {
		int cap = v->cap ? v->cap * 2 : 256;
		point *np = realloc(v->p, (size_t)cap * sizeof *np);
		if (!np)
			return ENOMEM;
		v->p = np;
		v->cap = cap;
	}
	v->p[v->n++] = p;
	return 0;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double median_of(double *v, int n)
{
	if (n <= 0)
		return NAN;
	qsort(v, (size_t)n, sizeof *v, cmp_double);
	return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* Calls fn on each JSON object line of text. */
static int each_object(const char *text, int (*fn)(const cJSON *, report *), report *r)
{
	for (const char *p = text; p && *p;) {
		const char *eol = strchr(p, '\n');
		size_t len = eol ? (size_t)(eol - p) : strlen(p);
		cJSON *o = cJSON_ParseWithLength(p, len);
		int rc = cJSON_IsObject(o) ? fn(o, r) : 0;
		cJSON_Delete(o);
		if (rc)
			return rc;
		p += len;
		if (*p)
			p++;
	}
	return 0;
}

static int on_metrics(const cJSON *m, report *r)
{
	const cJSON *loss = cJSON_GetObjectItemCaseSensitive(m, "loss");
	const cJSON *acc = cJSON_GetObjectItemCaseSensitive(m, "test_accuracy");
	point p = {json_num(m, "time", 0), (long)json_num(m, "step", -1), 0, (int)json_num(m, "generation", 0)};
	if (p.t <= 0)
		return 0;
	if (cJSON_IsNumber(loss)) {
		p.v = loss->valuedouble;
		if (push(&r->loss, p))
			return ENOMEM;
	}
	if (cJSON_IsNumber(acc)) {
		p.v = acc->valuedouble;
		if (push(&r->acc, p))
			return ENOMEM;
	}
	return 0;
}

/* Checkpoints (write_s, steps), and epoch events as the test accuracy when metrics.jsonl has none. */
static int on_event(const cJSON *e, report *r)
{
	const char *name = json_str(e, "event", "");
	if (strcmp(name, EV_CHECKPOINT) == 0) {
		if (r->n_ck == r->cap_ck) {
			int cap = r->cap_ck ? r->cap_ck * 2 : 64;
			ckpt_ev *v = realloc(r->ck, (size_t)cap * sizeof *v);
			if (!v)
				return ENOMEM;
			r->ck = v;
			r->cap_ck = cap;
		}
		ckpt_ev *c = &r->ck[r->n_ck++];
		c->t = json_num(e, "time", 0);
		c->step = (long)json_num(e, "step", -1);
		/* blocked_s: the time training waited (the worker may report it beside write_s) */
		c->write_s = json_num(e, "blocked_s", json_num(e, "write_s", -1));
		c->gen = (int)json_num(e, "generation", 0);
	} else if (strcmp(name, EV_EPOCH) == 0 && cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(e, "test_accuracy"))) {
		point p = {json_num(e, "time", 0), (long)json_num(e, "step", -1), json_num(e, "test_accuracy", 0),
			   (int)json_num(e, "generation", 0)};
		if (push(&r->acc_ev, p))
			return ENOMEM;
	}
	return 0;
}

/* Distinct host names in "a,b,c". */
static int count_hosts(const char *hosts)
{
	char buf[512];
	snprintf(buf, sizeof buf, "%s", hosts);
	char *names[128];
	int n = 0;
	char *save = NULL;
	for (char *t = strtok_r(buf, ",", &save); t && n < 128; t = strtok_r(NULL, ",", &save)) {
		bool dup = false;
		for (int i = 0; i < n && !dup; i++)
			dup = strcmp(names[i], t) == 0;
		if (!dup)
			names[n++] = t;
	}
	return n;
}

/* Seconds per step: median of (time, step) differences of consecutive loss lines of one world. */
static void step_times(report *r)
{
	int n = r->loss.n;
	double *all = malloc((size_t)(n > 0 ? n : 1) * sizeof *all);
	double *mine = malloc((size_t)(n > 0 ? n : 1) * sizeof *mine);
	int k = 0;
	for (int i = 1; all && i < n; i++) {
		const point *a = &r->loss.p[i - 1], *b = &r->loss.p[i];
		if (a->gen == b->gen && b->step > a->step && b->t > a->t)
			all[k++] = (b->t - a->t) / (double)(b->step - a->step);
	}
	r->step_s = all ? median_of(all, k) : NAN;
	for (int s = 0; mine && s < r->a.n; s++) {
		const session *ss = &r->a.s[s];
		int m = 0;
		for (int i = 1; i < n; i++) {
			const point *a = &r->loss.p[i - 1], *b = &r->loss.p[i];
			if (a->gen != ss->generation || b->gen != ss->generation || !(b->step > a->step && b->t > a->t))
				continue;
			if (a->t < ss->t_start - 1e-6 || b->t > ss->t_last + 1e-6)
				continue;
			mine[m++] = (b->t - a->t) / (double)(b->step - a->step);
		}
		r->sess_step_s[s] = m ? median_of(mine, m) : r->step_s;
	}
	free(all);
	free(mine);
}

/* The checkpoint interval: the most common step difference of consecutive checkpoints of one generation. */
static long infer_interval(const report *r)
{
	long best = -1;
	int best_n = 0;
	for (int i = 1; i < r->n_ck; i++) {
		if (r->ck[i].gen != r->ck[i - 1].gen)
			continue;
		long d = r->ck[i].step - r->ck[i - 1].step;
		if (d <= 0)
			continue;
		int cnt = 0;
		for (int j = 1; j < r->n_ck; j++)
			if (r->ck[j].gen == r->ck[j - 1].gen && r->ck[j].step - r->ck[j - 1].step == d)
				cnt++;
		if (cnt > best_n || (cnt == best_n && d > best)) {
			best_n = cnt;
			best = d;
		}
	}
	return best;
}

/* Node counts, billed time and useful time per session (useful: the walk back of account.c). */
static void per_session(report *r)
{
	run_account *a = &r->a;
	r->node_s = r->useful_node_s = r->billed_s = 0;
	for (int i = 0; i < a->n; i++) {
		const session *s = &a->s[i];
		int h = count_hosts(s->hosts);
		if (h > 0) {
			r->nodes[i] = h;
		} else {
			r->nodes[i] = s->np > 0 ? s->np : 1;
			r->nodes_guessed = true;
		}
		r->t0[i] = s->launched ? s->t_launch : s->started ? s->t_start : 0;
	}
	for (int i = 0; i < a->n; i++) {
		r->billed[i] = 0;
		if (r->t0[i] <= 0)
			continue;
		double t1 = a->t_end;
		for (int j = i + 1; j < a->n; j++)
			if (r->t0[j] > 0) {
				t1 = r->t0[j];
				break;
			}
		r->billed[i] = t1 > r->t0[i] ? t1 - r->t0[i] : 0;
		r->billed_s += r->billed[i];
		r->node_s += r->billed[i] * r->nodes[i];
	}
	long bound = -1;
	for (int i = a->n - 1; i >= 0; i--) {
		const session *s = &a->s[i];
		r->useful[i] = 0;
		if (!s->started)
			continue;
		long b = report_begin_step(s), e = report_end_step(s);
		long hi = bound >= 0 && bound < e ? bound : e;
		double step_s = e > b && s->t_last > s->t_start ? (s->t_last - s->t_start) / (double)(e - b) : 0;
		if (hi > b)
			r->useful[i] = (double)(hi - b) * step_s;
		if (bound < 0 || b < bound)
			bound = b;
		r->useful_node_s += r->useful[i] * r->nodes[i];
	}
}

/*
 * When session si reached step: the metrics line of that step, else a linear
 * interpolation between its lines around it; its first step when the step is
 * where it began. NAN when its records do not cover the step.
 */
static double time_at_step(const report *r, int si, long step)
{
	const session *s = &r->a.s[si];
	const point *lo = NULL, *hi = NULL;
	for (int i = 0; i < r->loss.n; i++) {
		const point *p = &r->loss.p[i];
		if (p->gen != s->generation || p->t < s->t_start - 1e-6 || p->t > s->t_last + 1e-6)
			continue;
		if (p->step == step)
			return p->t;
		if (p->step < step && (!lo || p->step > lo->step))
			lo = p;
		if (p->step > step && (!hi || p->step < hi->step))
			hi = p;
	}
	if (lo && hi)
		return lo->t + (hi->t - lo->t) * (double)(step - lo->step) / (double)(hi->step - lo->step);
	if (step == report_begin_step(s))
		return s->t_first > 0 ? s->t_first : s->t_start;
	return NAN;
}

/*
 * Time lost per incident: down (account's total) + rework, the training time
 * spent on the steps after the checkpoint the next world resumed from.
 */
static void per_incident(report *r)
{
	run_account *a = &r->a;
	int k = 0, prev = -1;
	for (int i = 0; i < a->n && k < a->n_inc; i++) {
		if (!a->s[i].started)
			continue;
		if (prev >= 0) {
			r->prev[k] = prev;
			r->next[k] = i;
			k++;
		}
		prev = i;
	}
	r->lost_s = 0;
	for (k = 0; k < a->n_inc; k++) {
		const incident *x = &a->inc[k];
		const session *p = &a->s[r->prev[k]];
		r->down[k] = x->total_s;
		r->rework[k] = 0;
		r->rework_from_metrics[k] = false;
		if (x->steps_lost > 0) {
			double t_r = time_at_step(r, r->prev[k], x->resumed_step);
			if (isfinite(t_r) && p->t_last >= t_r) {
				r->rework[k] = p->t_last - t_r;
				r->rework_from_metrics[k] = true;
			} else {
				double st = r->sess_step_s[r->prev[k]];
				r->rework[k] = isfinite(st) ? (double)x->steps_lost * st : NAN;
			}
		}
		r->lost[k] = (isfinite(r->down[k]) ? r->down[k] : 0) + (isfinite(r->rework[k]) ? r->rework[k] : 0);
		r->lost_s += r->lost[k];
	}
}

static void load_prices(report *r, const report_opts *o)
{
	r->spot = r->ondemand = -1;
	r->currency[0] = 0;
	snprintf(r->price_source, sizeof r->price_source, "none given");
	char path[4200];
	char *text = NULL;
	bool from_file = false;
	if (fmt_path(path, sizeof path, "%s/%s", o->run_dir, PRICES_FILE) && read_file(path, 1 << 20, &text, NULL) == 0) {
		cJSON *j = cJSON_Parse(text);
		if (cJSON_IsObject(j)) {
			double s = json_num(j, "spot_per_node_hour", -1), d = json_num(j, "ondemand_per_node_hour", -1);
			if (s >= 0)
				r->spot = s, from_file = true;
			if (d >= 0)
				r->ondemand = d, from_file = true;
			snprintf(r->currency, sizeof r->currency, "%s", json_str(j, "currency", ""));
		} else {
			say_warn("%s is not a JSON object: prices ignored", path);
		}
		cJSON_Delete(j);
		free(text);
	}
	bool from_cli = false;
	if (o->spot >= 0)
		r->spot = o->spot, from_cli = true;
	if (o->ondemand >= 0)
		r->ondemand = o->ondemand, from_cli = true;
	if (o->currency)
		snprintf(r->currency, sizeof r->currency, "%s", o->currency);
	if (from_cli && from_file)
		snprintf(r->price_source, sizeof r->price_source, "command line and %s", PRICES_FILE);
	else if (from_cli)
		snprintf(r->price_source, sizeof r->price_source, "command line");
	else if (from_file)
		snprintf(r->price_source, sizeof r->price_source, "%s", PRICES_FILE);
}

static void make_advice(report *r, const report_opts *o)
{
	advice_in *in = &r->adv_in;
	memset(in, 0, sizeof *in);
	in->restart_s = in->step_s = -1;
	in->interval_steps = -1;
	in->rate_per_node_hour = in->nodes = -1;
	in->write_s = o->write_s > 0 ? o->write_s : r->write_s;
	double mean_nodes = r->billed_s > 0 ? r->node_s / r->billed_s : NAN;
	if (o->mtbf_h > 0) {
		in->mtbf_s = o->mtbf_h * 3600;
		snprintf(r->mtbf_source, sizeof r->mtbf_source, "given");
	} else if (o->rate > 0 && isfinite(mean_nodes)) {
		in->rate_per_node_hour = o->rate;
		in->nodes = mean_nodes;
		in->mtbf_s = 3600.0 / (o->rate * mean_nodes);
		snprintf(r->mtbf_source, sizeof r->mtbf_source, "given rate x the run's mean nodes");
	} else if (r->a.n_inc > 0 && r->billed_s > 0 && r->node_s > 0) {
		in->rate_per_node_hour = r->a.n_inc / (r->node_s / 3600.0);
		in->nodes = mean_nodes;
		in->mtbf_s = r->billed_s / r->a.n_inc;
		snprintf(r->mtbf_source, sizeof r->mtbf_source, "this run");
	} else {
		in->mtbf_s = -1;
	}
	double restart = 0;
	int n = 0;
	for (int k = 0; k < r->a.n_inc; k++)
		if (isfinite(r->down[k])) {
			restart += r->down[k];
			n++;
		}
	in->restart_s = n ? restart / n : -1;
	in->step_s = o->step_s > 0 ? o->step_s : isfinite(r->step_s) ? r->step_s : -1;
	in->interval_steps = o->interval_steps > 0 ? o->interval_steps : r->interval_steps;
	if (!(in->write_s > 0))
		snprintf(r->no_advice, sizeof r->no_advice,
			 "no checkpoint write time in the run (events without write_s): give --write-s D");
	else if (!(in->mtbf_s > 0))
		snprintf(r->no_advice, sizeof r->no_advice,
			 "no interruptions in this run: give --rate-per-node-hour R or --mtbf-hours M");
	else {
		r->have_advice = true;
		advice_compute(in, &r->adv);
	}
}

static int load_report(const report_opts *o, report *r)
{
	memset(r, 0, sizeof *r);
	r->step_s = r->write_s = NAN;
	r->interval_steps = -1;
	int e = account_load(o->run_dir, &r->a);
	if (e)
		return e;
	char path[4200];
	char *text = NULL;
	if (!fmt_path(path, sizeof path, "%s/%s", o->run_dir, RUN_EVENTS_FILE))
		return ENAMETOOLONG;
	if ((e = read_file(path, REPORT_MAX_FILE, &text, NULL)))
		return e;
	e = each_object(text, on_event, r);
	free(text);
	text = NULL;
	if (e)
		return e;
	if (fmt_path(path, sizeof path, "%s/%s", o->run_dir, RUN_METRICS_FILE) &&
	    read_file(path, REPORT_MAX_FILE, &text, NULL) == 0) {
		e = each_object(text, on_metrics, r);
		free(text);
		if (e)
			return e;
	}
	/* epoch events stand for the test accuracy only when metrics.jsonl has none */
	if (!r->acc.n) {
		pvec t = r->acc;
		r->acc = r->acc_ev;
		r->acc_ev = t;
	}
	int ns = r->a.n > 0 ? r->a.n : 1, ni = r->a.n_inc > 0 ? r->a.n_inc : 1;
	r->nodes = calloc((size_t)ns, sizeof(double));
	r->t0 = calloc((size_t)ns, sizeof(double));
	r->billed = calloc((size_t)ns, sizeof(double));
	r->useful = calloc((size_t)ns, sizeof(double));
	r->sess_step_s = calloc((size_t)ns, sizeof(double));
	r->prev = calloc((size_t)ni, sizeof(int));
	r->next = calloc((size_t)ni, sizeof(int));
	r->down = calloc((size_t)ni, sizeof(double));
	r->rework = calloc((size_t)ni, sizeof(double));
	r->lost = calloc((size_t)ni, sizeof(double));
	r->rework_from_metrics = calloc((size_t)ni, sizeof(bool));
	if (!r->nodes || !r->t0 || !r->billed || !r->useful || !r->sess_step_s || !r->prev || !r->next || !r->down ||
	    !r->rework || !r->lost || !r->rework_from_metrics)
		return ENOMEM;
	double *ws = malloc((size_t)(r->n_ck > 0 ? r->n_ck : 1) * sizeof *ws);
	int nw = 0;
	for (int i = 0; ws && i < r->n_ck; i++)
		if (r->ck[i].write_s > 0)
			ws[nw++] = r->ck[i].write_s;
	r->write_s = ws ? median_of(ws, nw) : NAN;
	free(ws);
	r->interval_steps = infer_interval(r);
	step_times(r);
	per_session(r);
	per_incident(r);
	load_prices(r, o);
	make_advice(r, o);
	return 0;
}

static void free_report(report *r)
{
	account_free(&r->a);
	free(r->loss.p);
	free(r->acc.p);
	free(r->acc_ev.p);
	free(r->ck);
	free(r->nodes);
	free(r->t0);
	free(r->billed);
	free(r->useful);
	free(r->sess_step_s);
	free(r->prev);
	free(r->next);
	free(r->down);
	free(r->rework);
	free(r->lost);
	free(r->rework_from_metrics);
}

static bool have_cost(const report *r)
{
	return r->spot >= 0 || r->ondemand >= 0;
}

/* ------------------------------------------------------------------ text */

static void print_text(const report *r, const report_opts *o, const char *files, FILE *f)
{
	const run_account *a = &r->a;
	account_print_text(a, o->run_dir, f);
	if (a->n_inc) {
		fprintf(f, "time lost per incident (down: fault or agreed stop -> first step of the next generation;\n"
			   "rework: training redone, from the step resumed from to the last step reached):\n");
		fprintf(f, "  %-3s %-9s %-13s %-10s %-9s %-9s %-9s %s\n", "#", "gen", "kind", "node", "down(s)",
			"rework(s)", "lost(s)", "steps lost");
		for (int k = 0; k < a->n_inc; k++) {
			const incident *x = &a->inc[k];
			const session *p = &a->s[r->prev[k]];
			char g[32], b1[32], b2[32], b3[32];
			snprintf(g, sizeof g, "%d->%d", x->generation, x->next_generation);
			fprintf(f, "  %-3d %-9s %-13s %-10s %-9s %-9s %-9s %ld\n", k + 1, g, x->kind,
				p->notices ? p->notice_node : "-", report_fmt_s(r->down[k], b1, sizeof b1),
				report_fmt_s(r->rework[k], b2, sizeof b2), report_fmt_s(r->lost[k], b3, sizeof b3), x->steps_lost);
		}
		fprintf(f, "  time lost in all: %.2f s of %.2f s wall (%.1f%%)\n", r->lost_s, a->wall_s,
			a->wall_s > 0 ? 100 * r->lost_s / a->wall_s : 0);
	}
	if (isfinite(r->step_s))
		fprintf(f, "step time: median %.4g s (metrics.jsonl)\n", r->step_s);
	fprintf(f, "node-hours: %.6g held (%.4g s x nodes of each generation, launch to next launch%s), "
		   "%.6g useful\n",
		r->node_s / 3600, r->billed_s, r->nodes_guessed ? "; a world without host names counts a node per rank" : "",
		r->useful_node_s / 3600);
	if (have_cost(r)) {
		const char *cur = r->currency;
		fprintf(f, "cost (prices per node-hour from %s):\n", r->price_source);
		if (r->spot >= 0)
			fprintf(f, "  spot: %.6g node-hours x %.4g = %.6g %s\n", r->node_s / 3600, r->spot,
				r->node_s / 3600 * r->spot, cur);
		if (r->ondemand >= 0)
			fprintf(f, "  on-demand, the same useful work without interruptions: %.6g node-hours x %.4g = %.6g %s\n",
				r->useful_node_s / 3600, r->ondemand, r->useful_node_s / 3600 * r->ondemand, cur);
		if (r->spot >= 0 && r->ondemand > 0 && r->useful_node_s > 0) {
			double sc = r->node_s / 3600 * r->spot, oc = r->useful_node_s / 3600 * r->ondemand;
			fprintf(f, "  spot costs %.3gx the on-demand price of the work (%s %.1f%%); %.4g %s per useful node-hour\n",
				sc / oc, sc <= oc ? "saves" : "costs more by", 100 * fabs(1 - sc / oc),
				sc / (r->useful_node_s / 3600), cur);
		}
	} else {
		fprintf(f, "cost: no prices (--spot-price P --ondemand-price P, or %s/%s)\n", o->run_dir, PRICES_FILE);
	}
	if (r->have_advice) {
		fprintf(f, "M from %s; D %s; R = mean time down\n", r->mtbf_source,
			o->write_s > 0 ? "given"
				       : "= median of the checkpoint events' blocked_s (the time training waited; "
					 "write_s for workers that do not report it)");
		advice_print_text(&r->adv_in, &r->adv, f);
	} else {
		fprintf(f, "checkpoint interval: %s\n", r->no_advice);
	}
	if (files)
		fprintf(f, "%s", files);
}

/* ------------------------------------------------------------------ JSON */

static void num_or_null(cJSON *o, const char *k, double v)
{
	if (isfinite(v))
		cJSON_AddNumberToObject(o, k, v);
	else
		cJSON_AddNullToObject(o, k);
}

static cJSON *report_json(const report *r, const report_opts *o, const char *png, bool drawn)
{
	const run_account *a = &r->a;
	cJSON *j = cJSON_CreateObject();
	if (!j)
		return NULL;
	cJSON_AddStringToObject(j, "run_dir", o->run_dir);
	cJSON_AddItemToObject(j, "status", account_to_json(a, o->run_dir));
	cJSON_AddNumberToObject(j, "goodput", a->goodput);
	cJSON_AddNumberToObject(j, "wall_s", a->wall_s);
	cJSON_AddNumberToObject(j, "useful_s", a->useful_s);
	cJSON_AddNumberToObject(j, "t_begin", a->t_begin);
	cJSON_AddNumberToObject(j, "lost_s", r->lost_s);
	num_or_null(j, "step_s", r->step_s);
	cJSON *inc = cJSON_AddArrayToObject(j, "incidents");
	for (int k = 0; inc && k < a->n_inc; k++) {
		const incident *x = &a->inc[k];
		const session *p = &a->s[r->prev[k]], *n = &a->s[r->next[k]];
		cJSON *i = cJSON_CreateObject();
		if (!i)
			break;
		cJSON_AddNumberToObject(i, "generation", x->generation);
		cJSON_AddNumberToObject(i, "next_generation", x->next_generation);
		cJSON_AddStringToObject(i, "kind", x->kind);
		if (p->notices)
			cJSON_AddStringToObject(i, "node", p->notice_node);
		else
			cJSON_AddNullToObject(i, "node");
		cJSON_AddNumberToObject(i, "last_step", (double)x->last_step);
		cJSON_AddNumberToObject(i, "resumed_step", (double)x->resumed_step);
		cJSON_AddNumberToObject(i, "steps_lost", (double)x->steps_lost);
		num_or_null(i, "down_s", r->down[k]);
		num_or_null(i, "rework_s", r->rework[k]);
		cJSON_AddStringToObject(i, "rework_from", r->rework_from_metrics[k] ? "metrics" : "step_time");
		cJSON_AddNumberToObject(i, "lost_s", r->lost[k]);
		cJSON *m = cJSON_AddObjectToObject(i, "marks");
		if (m) {
			num_or_null(m, "notice", p->notices ? p->t_notice : NAN);
			num_or_null(m, "stop", p->stopped ? p->t_stop : NAN);
			num_or_null(m, "fault", x->t_fault);
			num_or_null(m, "detected", p->relaunched ? p->t_detect : NAN);
			num_or_null(m, "relaunch", n->launched ? n->t_launch : NAN);
			num_or_null(m, "first_step", n->t_first > 0 ? n->t_first : NAN);
		}
		cJSON_AddItemToArray(inc, i);
	}
	cJSON *gens = cJSON_AddArrayToObject(j, "generations");
	for (int i = 0; gens && i < a->n; i++) {
		const session *s = &a->s[i];
		cJSON *g = cJSON_CreateObject();
		if (!g)
			break;
		cJSON_AddNumberToObject(g, "generation", s->generation);
		cJSON_AddNumberToObject(g, "np", s->np);
		cJSON_AddNumberToObject(g, "nodes", r->nodes[i]);
		cJSON_AddNumberToObject(g, "billed_s", r->billed[i]);
		cJSON_AddNumberToObject(g, "useful_s", r->useful[i]);
		num_or_null(g, "step_s", r->sess_step_s[i]);
		cJSON_AddItemToArray(gens, g);
	}
	cJSON_AddNumberToObject(j, "node_hours", r->node_s / 3600);
	cJSON_AddNumberToObject(j, "useful_node_hours", r->useful_node_s / 3600);
	if (have_cost(r)) {
		cJSON *c = cJSON_AddObjectToObject(j, "cost");
		if (c) {
			cJSON_AddStringToObject(c, "prices_from", r->price_source);
			cJSON_AddStringToObject(c, "currency", r->currency);
			num_or_null(c, "spot_per_node_hour", r->spot >= 0 ? r->spot : NAN);
			num_or_null(c, "ondemand_per_node_hour", r->ondemand >= 0 ? r->ondemand : NAN);
			num_or_null(c, "spot", r->spot >= 0 ? r->node_s / 3600 * r->spot : NAN);
			num_or_null(c, "ondemand", r->ondemand >= 0 ? r->useful_node_s / 3600 * r->ondemand : NAN);
			num_or_null(c, "spot_over_ondemand", r->spot >= 0 && r->ondemand > 0 && r->useful_node_s > 0
								  ? (r->node_s * r->spot) / (r->useful_node_s * r->ondemand)
								  : NAN);
		}
	} else {
		cJSON_AddNullToObject(j, "cost");
	}
	if (r->have_advice) {
		cJSON *adv = advice_to_json(&r->adv_in, &r->adv);
		if (adv)
			cJSON_AddStringToObject(adv, "mtbf_from", r->mtbf_source);
		cJSON_AddItemToObject(j, "advice", adv);
	} else {
		cJSON_AddNullToObject(j, "advice");
		cJSON_AddStringToObject(j, "advice_missing", r->no_advice);
	}
	if (drawn)
		cJSON_AddStringToObject(j, "png", png);
	else
		cJSON_AddNullToObject(j, "png");
	return j;
}

/* ------------------------------------------------------------------ command */

enum {
	R_SPOT = 256, R_ONDEMAND, R_CURRENCY, R_OUT, R_JSON, R_WRITE, R_MTBF, R_RATE, R_INTERVAL, R_STEP, R_GNUPLOT,
	R_NO_PLOT,
};

static const struct option report_opts_long[] = {
	{"spot-price", required_argument, NULL, R_SPOT},
	{"ondemand-price", required_argument, NULL, R_ONDEMAND},
	{"currency", required_argument, NULL, R_CURRENCY},
	{"out", required_argument, NULL, R_OUT},
	{"json", no_argument, NULL, R_JSON},
	{"write-s", required_argument, NULL, R_WRITE},
	{"mtbf-hours", required_argument, NULL, R_MTBF},
	{"rate-per-node-hour", required_argument, NULL, R_RATE},
	{"interval-steps", required_argument, NULL, R_INTERVAL},
	{"step-s", required_argument, NULL, R_STEP},
	{"gnuplot", required_argument, NULL, R_GNUPLOT},
	{"no-plot", no_argument, NULL, R_NO_PLOT},
	{"help", no_argument, NULL, 'h'},
	{NULL, 0, NULL, 0},
};

static int parse_opts(int argc, char **argv, report_opts *o)
{
	memset(o, 0, sizeof *o);
	o->spot = o->ondemand = -1;
	o->write_s = o->mtbf_h = o->rate = o->step_s = -1;
	o->interval_steps = -1;
	long v;
	int c;
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":h", report_opts_long, NULL)) != -1) {
		switch (c) {
		case R_SPOT:
			if (!parse_seconds(optarg, 0, 1e9, &o->spot))
				return usage("--spot-price needs a price >= 0 per node-hour, not '%s'", optarg);
			break;
		case R_ONDEMAND:
			if (!parse_seconds(optarg, 0, 1e9, &o->ondemand))
				return usage("--ondemand-price needs a price >= 0 per node-hour, not '%s'", optarg);
			break;
		case R_CURRENCY: o->currency = optarg; break;
		case R_OUT: o->out_png = optarg; break;
		case R_JSON: o->json = true; break;
		case R_WRITE:
			if (!parse_seconds(optarg, 0, 1e9, &o->write_s) || o->write_s <= 0)
				return usage("--write-s needs seconds > 0, not '%s'", optarg);
			break;
		case R_MTBF:
			if (!parse_seconds(optarg, 0, 1e9, &o->mtbf_h) || o->mtbf_h <= 0)
				return usage("--mtbf-hours needs hours > 0, not '%s'", optarg);
			break;
		case R_RATE:
			if (!parse_seconds(optarg, 0, 1e9, &o->rate) || o->rate <= 0)
				return usage("--rate-per-node-hour needs a rate > 0, not '%s'", optarg);
			break;
		case R_INTERVAL:
			if (!parse_long(optarg, 1, 1000000000000L, &v))
				return usage("--interval-steps needs a whole number >= 1, not '%s'", optarg);
			o->interval_steps = v;
			break;
		case R_STEP:
			if (!parse_seconds(optarg, 0, 1e9, &o->step_s) || o->step_s <= 0)
				return usage("--step-s needs seconds > 0, not '%s'", optarg);
			break;
		case R_GNUPLOT: o->gnuplot = optarg; break;
		case R_NO_PLOT: o->no_plot = true; break;
		case 'h': fputs(report_usage, stdout); return -1;
		case ':': return usage("option %s needs a value", argv[optind - 1]);
		default: return usage("unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind >= argc)
		return usage("%s", "which run? spotlaunch report RUN_DIR");
	if (optind + 1 < argc)
		return usage("one run directory only, not also '%s'", argv[optind + 1]);
	o->run_dir = argv[optind];
	if (o->mtbf_h > 0 && o->rate > 0)
		return usage("%s", "give --mtbf-hours or --rate-per-node-hour, not both");
	return 0;
}

int report_main(int argc, char **argv)
{
	report_opts o;
	int rc = parse_opts(argc, argv, &o);
	if (rc)
		return rc < 0 ? 0 : rc;
	/* PREFIX: the PNG's path without ".png" */
	/* PREFIX (absolute, so that the .gp script draws from any directory): the PNG's path without ".png" */
	char prefix[4096], png[4200], gp[4200], json_path[4200], log[4200], given[4096];
	if (o.out_png) {
		size_t n = strlen(o.out_png);
		if (n > 4 && strcmp(o.out_png + n - 4, ".png") == 0)
			n -= 4;
		if (n >= sizeof given)
			return usage("--out path too long: %s", o.out_png);
		snprintf(given, sizeof given, "%.*s", (int)n, o.out_png);
	} else if (!fmt_path(given, sizeof given, "%s/report", o.run_dir)) {
		return usage("run directory path too long: %s", o.run_dir);
	}
	if (!abs_path(given, prefix, sizeof prefix))
		return usage("path too long: %s", given);
	if (!fmt_path(png, sizeof png, "%s.png", prefix) || !fmt_path(gp, sizeof gp, "%s.gp", prefix) ||
	    !fmt_path(json_path, sizeof json_path, "%s.json", prefix) ||
	    !fmt_path(log, sizeof log, "%s-gnuplot.log", prefix))
		return usage("path too long: %s", prefix);

	report r;
	int e = load_report(&o, &r);
	if (e) {
		fprintf(stderr, "spotlaunch report: cannot read the run %s (%s/%s): %s\n", o.run_dir, o.run_dir,
			RUN_EVENTS_FILE, strerror(e));
		free_report(&r);
		return e == ENOENT ? EXIT_NOINPUT : e == ENOMEM ? EXIT_OSERR : EXIT_IOERR;
	}
	rc = report_write_data(&r, prefix);
	if (!rc)
		rc = report_write_gp(&r, &o, prefix, png, gp);
	if (rc) {
		fprintf(stderr, "spotlaunch report: cannot write the report files %s.*\n", prefix);
		free_report(&r);
		return rc;
	}
	bool drawn = false;
	int plot_rc = 0;
	if (!o.no_plot) {
		drawn = plot_draw(o.gnuplot, gp, png, REPORT_PNG_W, REPORT_PNG_H, log) == PLOT_DRAWN;
		plot_rc = drawn ? 0 : EXIT_NO_PICTURE;
	}
	cJSON *j = report_json(&r, &o, png, drawn);
	char *text = j ? cJSON_Print(j) : NULL;
	char *line = j ? cJSON_PrintUnformatted(j) : NULL;
	cJSON_Delete(j);
	if (!text || !line) {
		free(text);
		free(line);
		free_report(&r);
		return EXIT_OSERR;
	}
	size_t tl = strlen(text);
	text[tl] = '\n'; /* a newline over the terminator: tl + 1 bytes written */
	rc = write_file_atomic(json_path, text, tl + 1) == 0 ? 0 : EXIT_IOERR;
	free(text);
	if (o.json) {
		printf("%s\n", line);
	} else {
		char files[17000];
		snprintf(files, sizeof files, "files: %s%s, %s, %s, %s-{loss,acc,progress,world,marks}.dat\n",
			 drawn ? png : "no picture ", drawn ? "" : o.no_plot ? "(--no-plot)" : "(see above)", json_path, gp,
			 prefix);
		print_text(&r, &o, files, stdout);
	}
	fflush(stdout);
	free(line);
	free_report(&r);
	return rc ? rc : plot_rc;
}

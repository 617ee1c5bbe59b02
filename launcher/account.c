#include "account.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "contract.h"
#include "events.h"
#include "util.h"

#define ACCOUNT_MAX_FILE (1L << 30)

static session *new_session(run_account *a, int generation)
{
	if (a->n == a->cap) {
		int cap = a->cap ? a->cap * 2 : 16;
		session *v = realloc(a->s, (size_t)cap * sizeof *v);
		if (!v)
			return NULL;
		a->s = v;
		a->cap = cap;
	}
	session *s = &a->s[a->n++];
	memset(s, 0, sizeof *s);
	s->generation = generation;
	s->start_step = s->resume_step = s->stop_step = s->first_step = -1;
	s->last_step = -1;
	s->load_s = -1;
	s->notice_to_durable_s = -1;
	s->exit_code = -1;
	s->launcher_exit = -1;
	return s;
}

/*
 * The newest session of a generation (NULL if none). With unstarted_only, only
 * if it has neither started nor ended: "resume" and "start" open a new session
 * otherwise (worker runs without a launcher all have generation 0).
 */
static session *latest(run_account *a, int generation, bool unstarted_only)
{
	for (int i = a->n - 1; i >= 0; i--) {
		session *s = &a->s[i];
		if (s->generation != generation)
			continue;
		if (unstarted_only && (s->ended || s->started))
			return NULL;
		return s;
	}
	return NULL;
}

static session *session_for(run_account *a, int generation, bool unstarted_only)
{
	session *s = latest(a, generation, unstarted_only);
	return s ? s : new_session(a, generation);
}

/* The furthest step, and the earliest record of it (when it was reached). */
static void progress(session *s, long step, double t)
{
	if (step > s->last_step || (step == s->last_step && t < s->t_last)) {
		s->last_step = step;
		s->t_last = t;
	}
}

typedef struct load_ctx {
	run_account *a;
	bool oom;
	double t_max;
} load_ctx;

static void on_event(const cJSON *ev, void *p)
{
	load_ctx *c = p;
	run_account *a = c->a;
	const char *name = json_str(ev, "event", "");
	double t = json_num(ev, "time", 0);
	int gen = (int)json_num(ev, "generation", 0);
	long step = (long)json_num(ev, "step", -1);
	if (t > c->t_max)
		c->t_max = t;
	session *s = NULL;
	if (strcmp(name, EV_GENERATION) == 0) {
		s = new_session(a, gen);
		if (!s)
			goto oom;
		s->launched = true;
		s->t_launch = t;
		a->launcher_exited = false; /* a launcher runs (again) */
		s->np = (int)json_num(ev, "np", 0);
		const cJSON *hosts = cJSON_GetObjectItemCaseSensitive(ev, "hosts");
		const cJSON *h;
		size_t used = 0;
		cJSON_ArrayForEach(h, hosts)
		{
			if (cJSON_IsString(h) && used + 2 < sizeof s->hosts) {
				int w = snprintf(s->hosts + used, sizeof s->hosts - used, "%s%s", used ? "," : "",
						 h->valuestring);
				used = w > 0 ? used + (size_t)w : used;
				if (used >= sizeof s->hosts)
					used = sizeof s->hosts - 1;
			}
		}
	} else if (strcmp(name, EV_RESUME) == 0) {
		if (!(s = session_for(a, gen, true)))
			goto oom;
		s->resumed = true;
		s->t_resume = t;
		s->resume_step = step;
		s->load_s = json_num(ev, "load_s", json_num(ev, "read_s", -1));
	} else if (strcmp(name, EV_START) == 0) {
		if (!(s = session_for(a, gen, true)))
			goto oom;
		s->started = true;
		s->t_start = t;
		s->start_step = step < 0 ? 0 : step;
		if (json_num(ev, "world_size", 0) > 0)
			s->np = (int)json_num(ev, "world_size", 0);
		progress(s, s->start_step, t);
	} else if (strcmp(name, EV_FIRST_STEP) == 0) {
		if (!(s = session_for(a, gen, false)))
			goto oom;
		double st = json_num(ev, "step_time", t);
		if (s->t_first == 0 || st < s->t_first) {
			s->t_first = st;
			s->first_step = step;
		}
		progress(s, step, st);
	} else if (strcmp(name, EV_CHECKPOINT) == 0 || strcmp(name, EV_EPOCH) == 0) {
		if (!(s = session_for(a, gen, false)))
			goto oom;
		if (step >= 0)
			progress(s, step, t);
	} else if (strcmp(name, EV_NOTICE) == 0) {
		if (!(s = session_for(a, gen, false)))
			goto oom;
		double rcv = json_num(ev, "received", t);
		if (s->notices++ == 0 || rcv < s->t_notice) {
			s->t_notice = rcv;
			snprintf(s->notice_node, sizeof s->notice_node, "%s", json_str(ev, "node", "?"));
		}
	} else if (strcmp(name, EV_STOP) == 0) {
		if (!(s = session_for(a, gen, false)))
			goto oom;
		s->stopped = true;
		s->stop_step = step;
		s->t_stop = t;
		snprintf(s->stop_reason, sizeof s->stop_reason, "%s", json_str(ev, "reason", "?"));
		s->notice_to_durable_s = json_num(ev, "notice_to_durable_s", -1);
		if (step >= 0)
			progress(s, step, t);
	} else if (strcmp(name, EV_EXIT) == 0) {
		if (!(s = session_for(a, gen, false)))
			goto oom;
		s->exited = true;
		s->exit_code = (int)json_num(ev, "code", -1);
		s->t_exit = t;
		s->ended = true;
		if (step >= 0)
			progress(s, step, t);
	} else if (strcmp(name, EV_RELAUNCH) == 0) {
		if (!(s = session_for(a, gen, false)))
			goto oom;
		s->relaunched = true;
		s->ended = true;
		s->relaunch_code = (int)json_num(ev, "exit_code", -1);
		snprintf(s->relaunch_reason, sizeof s->relaunch_reason, "%s", json_str(ev, "reason", "?"));
		const cJSON *f = cJSON_GetObjectItemCaseSensitive(ev, "failure");
		s->relaunch_failure = cJSON_IsTrue(f);
		s->t_detect = json_num(ev, "detected", t);
		s->t_ended = json_num(ev, "ended", s->t_detect);
		s->last_progress = json_num(ev, "last_progress", 0);
		long ls = (long)json_num(ev, "last_step", -1);
		if (ls >= 0 && s->last_progress > 0)
			progress(s, ls, s->last_progress);
	} else if (strcmp(name, EV_LAUNCHER_EXIT) == 0) {
		s = latest(a, gen, false);
		if (s)
			s->launcher_exit = (int)json_num(ev, "code", -1);
		a->launcher_exited = true;
		a->launcher_code = (int)json_num(ev, "code", -1);
		snprintf(a->launcher_reason, sizeof a->launcher_reason, "%s", json_str(ev, "reason", ""));
	}
	return;
oom:
	c->oom = true;
}

static void on_metrics(const cJSON *m, void *p)
{
	load_ctx *c = p;
	run_account *a = c->a;
	if (!cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(m, "loss")))
		return; /* per-epoch test lines carry no training step of their own */
	int gen = (int)json_num(m, "generation", 0);
	long step = (long)json_num(m, "step", -1);
	double t = json_num(m, "time", 0);
	if (t > c->t_max)
		c->t_max = t;
	/* the newest session of the generation that had started by then */
	for (int i = a->n - 1; i >= 0; i--) {
		session *s = &a->s[i];
		if (s->generation != gen || !s->started || s->t_start > t + 1e-6)
			continue;
		if (s->t_first == 0 || t < s->t_first) {
			s->t_first = t;
			s->first_step = step;
		}
		progress(s, step, t);
		return;
	}
}

/* Parse JSON lines of text, calling fn for each object. */
static void each_line(const char *text, void (*fn)(const cJSON *, void *), void *ctx)
{
	for (const char *p = text; p && *p;) {
		const char *eol = strchr(p, '\n');
		size_t len = eol ? (size_t)(eol - p) : strlen(p);
		cJSON *o = cJSON_ParseWithLength(p, len);
		if (cJSON_IsObject(o))
			fn(o, ctx);
		cJSON_Delete(o);
		p += len;
		if (*p)
			p++;
	}
}

static long begin_step(const session *s)
{
	return s->resumed ? s->resume_step : s->start_step;
}

static long end_step(const session *s)
{
	long e = s->last_step;
	if (s->stopped && s->stop_step > e)
		e = s->stop_step;
	return e < begin_step(s) ? begin_step(s) : e;
}

static int add_incident(run_account *a, const session *prev, const session *next, int failed_launches)
{
	incident *v = realloc(a->inc, (size_t)(a->n_inc + 1) * sizeof *v);
	if (!v)
		return ENOMEM;
	a->inc = v;
	incident *x = &a->inc[a->n_inc++];
	memset(x, 0, sizeof *x);
	x->generation = prev->generation;
	x->next_generation = next->generation;
	x->failed_launches = failed_launches;
	x->load_s = next->load_s;
	x->notice_to_durable_s = prev->notice_to_durable_s;
	bool planned = prev->stopped && (!prev->exited || prev->exit_code == EXIT_TEMPFAIL) &&
		       !(prev->relaunched && prev->relaunch_failure);
	if (planned) {
		snprintf(x->kind, sizeof x->kind, "%s",
			 prev->launcher_exit == EXIT_TEMPFAIL ? "launcher_stop" : prev->stop_reason);
		x->t_fault = prev->t_stop;
	} else {
		snprintf(x->kind, sizeof x->kind, "failure");
		x->t_fault = prev->last_progress > 0 ? prev->last_progress : prev->t_last;
	}
	if (prev->relaunched)
		snprintf(x->reason, sizeof x->reason, "%s", prev->relaunch_reason);
	else if (prev->launcher_exit >= 0)
		snprintf(x->reason, sizeof x->reason, "launcher exit %d", prev->launcher_exit);
	else
		snprintf(x->reason, sizeof x->reason, "%s", prev->exited ? "worker exit" : "unknown");
	x->exit_code = prev->relaunched ? prev->relaunch_code : prev->exit_code;
	x->last_step = end_step(prev);
	x->resumed_step = begin_step(next);
	x->steps_lost = x->last_step > x->resumed_step ? x->last_step - x->resumed_step : 0;
	double t_detect = prev->relaunched ? prev->t_detect : (prev->exited ? prev->t_exit : prev->t_last);
	double t_ended = prev->relaunched ? prev->t_ended : t_detect;
	double t_ready = next->resumed ? next->t_resume : next->t_start;
	x->detect_s = t_detect - x->t_fault;
	x->kill_s = t_ended - t_detect;
	x->relaunch_s = next->launched ? next->t_launch - t_ended : NAN;
	x->start_s = next->launched ? t_ready - next->t_launch : NAN;
	x->first_step_s = next->t_first > 0 ? next->t_first - t_ready : NAN;
	x->total_s = next->t_first > 0 ? next->t_first - x->t_fault : NAN;
	if (planned)
		a->planned++;
	else
		a->failures++;
	a->steps_lost += x->steps_lost;
	return 0;
}

/* Incidents, goodput and totals from the sessions. */
static int derive(run_account *a, double t_max)
{
	int prev = -1, failed_launches = 0;
	a->generations = 0;
	a->t_begin = 0;
	for (int i = 0; i < a->n; i++) {
		session *s = &a->s[i];
		if (s->launched || s->started)
			a->generations++;
		double t0 = s->launched ? s->t_launch : s->t_start;
		if (t0 > 0 && (a->t_begin == 0 || t0 < a->t_begin))
			a->t_begin = t0;
		if (!s->started) {
			if (s->launched)
				failed_launches++;
			continue;
		}
		if (prev >= 0) {
			if (add_incident(a, &a->s[prev], s, failed_launches))
				return ENOMEM;
		}
		a->failed_launches += failed_launches;
		failed_launches = 0;
		prev = i;
	}
	a->failed_launches += failed_launches;
	if (prev >= 0) {
		const session *last = &a->s[prev];
		a->last_step = end_step(last);
		a->finished = last->exited && last->exit_code == 0;
		a->final_step = a->finished ? end_step(last) : -1;
	}
	/* goodput: walk back from the end; a session's surviving steps are those below the next resume point */
	long r = -1; /* no bound yet */
	a->useful_s = 0;
	for (int i = a->n - 1; i >= 0; i--) {
		const session *s = &a->s[i];
		if (!s->started)
			continue;
		long b = begin_step(s), e = end_step(s);
		long hi = r >= 0 && r < e ? r : e;
		double step_s = e > b && s->t_last > s->t_start ? (s->t_last - s->t_start) / (double)(e - b) : 0;
		if (hi > b)
			a->useful_s += (double)(hi - b) * step_s;
		if (r < 0 || b < r)
			r = b;
	}
	a->t_end = t_max;
	a->wall_s = a->t_begin > 0 && t_max > a->t_begin ? t_max - a->t_begin : 0;
	a->goodput = a->wall_s > 0 ? a->useful_s / a->wall_s : 0;
	return 0;
}

int account_from_text(const char *events, const char *metrics, run_account *a)
{
	memset(a, 0, sizeof *a);
	a->final_step = a->last_step = -1;
	load_ctx c = {a, false, 0};
	each_line(events, on_event, &c);
	if (metrics)
		each_line(metrics, on_metrics, &c);
	if (c.oom)
		return ENOMEM;
	return derive(a, c.t_max);
}

int account_load(const char *run_dir, run_account *a)
{
	char path[4096];
	char *events = NULL, *metrics = NULL;
	memset(a, 0, sizeof *a);
	if (!fmt_path(path, sizeof path, "%s/%s", run_dir, RUN_EVENTS_FILE))
		return ENAMETOOLONG;
	int e = read_file(path, ACCOUNT_MAX_FILE, &events, NULL);
	if (e)
		return e;
	if (fmt_path(path, sizeof path, "%s/%s", run_dir, RUN_METRICS_FILE))
		read_file(path, ACCOUNT_MAX_FILE, &metrics, NULL);
	e = account_from_text(events, metrics, a);
	free(events);
	free(metrics);
	return e;
}

void account_free(run_account *a)
{
	free(a->s);
	free(a->inc);
	memset(a, 0, sizeof *a);
}

/* "1.23 s" or "-" for an unknown duration. */
static const char *dur(double s, char *buf, size_t len)
{
	if (isnan(s))
		snprintf(buf, len, "-");
	else
		snprintf(buf, len, "%.2f", s);
	return buf;
}

static const char *session_outcome(const session *s, char *buf, size_t len)
{
	if (s->exited && s->exit_code == 0)
		snprintf(buf, len, "finished");
	else if (s->stopped)
		snprintf(buf, len, "stop:%s", s->stop_reason);
	else if (s->relaunched)
		snprintf(buf, len, "%s", s->relaunch_reason);
	else if (s->exited)
		snprintf(buf, len, "exit %d", s->exit_code);
	else if (!s->started && s->launched && s->ended)
		snprintf(buf, len, "launch failed");
	else
		snprintf(buf, len, "running?");
	return buf;
}

void account_print_text(const run_account *a, const char *run_dir, FILE *f)
{
	fprintf(f, "run %s: ", run_dir);
	if (a->finished)
		fprintf(f, "finished at step %ld", a->final_step);
	else
		fprintf(f, "not finished, last step %ld", a->last_step);
	fprintf(f, "; %d generation(s), %d interruption(s) (%d planned stop(s), %d failure(s)), %d failed launch(es)\n",
		a->generations, a->n_inc, a->planned, a->failures, a->failed_launches);
	fprintf(f, "  %-4s %-8s %-3s %-13s %-28s %s\n", "gen", "at(s)", "np", "steps", "hosts", "outcome");
	for (int i = 0; i < a->n; i++) {
		const session *s = &a->s[i];
		double t0 = s->launched ? s->t_launch : s->t_start;
		char out[256], steps[48];
		if (s->started)
			snprintf(steps, sizeof steps, "%ld -> %ld", begin_step(s), end_step(s));
		else
			snprintf(steps, sizeof steps, "-");
		fprintf(f, "  %-4d %-8.2f %-3d %-13s %-28s %s\n", s->generation, t0 > 0 ? t0 - a->t_begin : 0, s->np,
			steps, s->hosts, session_outcome(s, out, sizeof out));
	}
	if (a->n_inc) {
		fprintf(f, "  incidents (times in seconds):\n");
		fprintf(f, "  %-4s %-13s %-6s %-7s %-5s %-7s %-6s %-8s %-13s %-6s %s\n", "gen", "kind", "last",
			"resumed", "lost", "detect", "kill", "relaunch", "start(load)", "first", "total");
		for (int i = 0; i < a->n_inc; i++) {
			const incident *x = &a->inc[i];
			char b1[32], b2[32], b3[32], b4[32], b5[32], b6[32], load[40] = "", start[80];
			if (x->load_s >= 0)
				snprintf(load, sizeof load, "(%.2f)", x->load_s);
			snprintf(start, sizeof start, "%s%s", dur(x->start_s, b3, sizeof b3), load);
			fprintf(f, "  %-4d %-13s %-6ld %-7ld %-5ld %-7s %-6s %-8s %-13s %-6s %s\n", x->generation, x->kind,
				x->last_step, x->resumed_step, x->steps_lost, dur(x->detect_s, b1, sizeof b1),
				dur(x->kill_s, b6, sizeof b6), dur(x->relaunch_s, b2, sizeof b2), start,
				dur(x->first_step_s, b4, sizeof b4), dur(x->total_s, b5, sizeof b5));
		}
	}
	fprintf(f, "  steps lost in all: %ld; goodput %.1f%% (%.1f s of training kept in %.1f s wall)\n", a->steps_lost,
		100.0 * a->goodput, a->useful_s, a->wall_s);
	if (a->launcher_exited)
		fprintf(f, "  launcher exit %d: %s\n", a->launcher_code, a->launcher_reason);
}

static void add_dur(cJSON *o, const char *key, double v)
{
	if (isnan(v))
		cJSON_AddNullToObject(o, key);
	else
		cJSON_AddNumberToObject(o, key, v);
}

cJSON *account_to_json(const run_account *a, const char *run_dir)
{
	cJSON *o = cJSON_CreateObject();
	if (!o)
		return NULL;
	cJSON_AddStringToObject(o, "run_dir", run_dir);
	cJSON_AddBoolToObject(o, "finished", a->finished);
	cJSON_AddNumberToObject(o, "final_step", (double)a->final_step);
	cJSON_AddNumberToObject(o, "last_step", (double)a->last_step);
	cJSON_AddNumberToObject(o, "generations", a->generations);
	cJSON_AddNumberToObject(o, "interruptions", a->n_inc);
	cJSON_AddNumberToObject(o, "planned_stops", a->planned);
	cJSON_AddNumberToObject(o, "failures", a->failures);
	cJSON_AddNumberToObject(o, "failed_launches", a->failed_launches);
	cJSON_AddNumberToObject(o, "steps_lost", (double)a->steps_lost);
	cJSON_AddNumberToObject(o, "useful_s", a->useful_s);
	cJSON_AddNumberToObject(o, "wall_s", a->wall_s);
	cJSON_AddNumberToObject(o, "goodput", a->goodput);
	if (a->launcher_exited) {
		cJSON_AddNumberToObject(o, "launcher_exit_code", a->launcher_code);
		cJSON_AddStringToObject(o, "launcher_exit_reason", a->launcher_reason);
	}
	cJSON *world = cJSON_AddArrayToObject(o, "world");
	for (int i = 0; world && i < a->n; i++) {
		const session *s = &a->s[i];
		cJSON *w = cJSON_CreateObject();
		if (!w)
			break;
		char out[256];
		cJSON_AddNumberToObject(w, "generation", s->generation);
		cJSON_AddNumberToObject(w, "time", s->launched ? s->t_launch : s->t_start);
		cJSON_AddNumberToObject(w, "np", s->np);
		cJSON_AddStringToObject(w, "hosts", s->hosts);
		cJSON_AddBoolToObject(w, "started", s->started);
		cJSON_AddNumberToObject(w, "begin_step", s->started ? (double)begin_step(s) : -1);
		cJSON_AddNumberToObject(w, "end_step", s->started ? (double)end_step(s) : -1);
		cJSON_AddStringToObject(w, "outcome", session_outcome(s, out, sizeof out));
		cJSON_AddItemToArray(world, w);
	}
	cJSON *inc = cJSON_AddArrayToObject(o, "incidents");
	for (int i = 0; inc && i < a->n_inc; i++) {
		const incident *x = &a->inc[i];
		cJSON *j = cJSON_CreateObject();
		if (!j)
			break;
		cJSON_AddNumberToObject(j, "generation", x->generation);
		cJSON_AddNumberToObject(j, "next_generation", x->next_generation);
		cJSON_AddStringToObject(j, "kind", x->kind);
		cJSON_AddStringToObject(j, "reason", x->reason);
		cJSON_AddNumberToObject(j, "exit_code", x->exit_code);
		cJSON_AddNumberToObject(j, "last_step", (double)x->last_step);
		cJSON_AddNumberToObject(j, "resumed_step", (double)x->resumed_step);
		cJSON_AddNumberToObject(j, "steps_lost", (double)x->steps_lost);
		cJSON_AddNumberToObject(j, "failed_launches", x->failed_launches);
		cJSON_AddNumberToObject(j, "fault_time", x->t_fault);
		add_dur(j, "detect_s", x->detect_s);
		add_dur(j, "kill_s", x->kill_s);
		add_dur(j, "relaunch_s", x->relaunch_s);
		add_dur(j, "start_s", x->start_s);
		add_dur(j, "load_s", x->load_s >= 0 ? x->load_s : NAN);
		add_dur(j, "first_step_s", x->first_step_s);
		add_dur(j, "total_s", x->total_s);
		add_dur(j, "notice_to_durable_s", x->notice_to_durable_s >= 0 ? x->notice_to_durable_s : NAN);
		cJSON_AddItemToArray(inc, j);
	}
	return o;
}

#include "sweep.h"

#include <errno.h>
#include <limits.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "contract.h"
#include "fsutil.h"
#include "events.h"
#include "plot.h"
#include "proc.h"
#include "util.h"

#define MAX_SIZES 64
#define SWEEP_PNG_W 1000
#define SWEEP_PNG_H 1100

static const char sweep_usage[] =
	"usage: spotlaunch sweep --np 1,2,4,8 [--hostfile FILE] [--run-dir DIR] [--mode strong|weak]\n"
	"                        [--per-rank-batch B] [--repeat N] [--mpirun PATH] [--mpirun-arg ARG ...]\n"
	"                        [--timeout S] [--gnuplot PATH] [--no-plot] -- spottrain bench ARGS...\n"
	"\n"
	"Runs the benchmark at each world size (mpirun [--hostfile FILE] -np W ... WORKER, no shell) and writes\n"
	"into the run directory sweep.csv, sweep.json, sweep.gp and sweep.png (throughput, efficiency and step\n"
	"times against world size). The last stdout line of each run must be the benchmark's JSON object.\n"
	"\n"
	"  --np LIST              world sizes, comma-separated (1,2,4,8)\n"
	"  --hostfile FILE        Open MPI hostfile of the hosts to use; without it mpirun runs locally and\n"
	"                         gets --oversubscribe when W exceeds this machine's cores\n"
	"  --run-dir DIR          where the results go (default runs/sweep-YYYYmmdd-HHMMSS)\n"
	"  --mode strong|weak     strong (default): the worker's global batch for every W; weak: a fixed batch\n"
	"                         per rank, adding --set train.global_batch=B*W (needs --per-rank-batch B)\n"
	"  --per-rank-batch B     the per-rank batch of weak scaling\n"
	"  --repeat N             runs per world size (1); the CSV holds medians, min and max of images/s\n"
	"  --mpirun PATH          the mpirun program (mpirun)\n"
	"  --mpirun-arg ARG       one extra mpirun argument (repeat for each)\n"
	"  --timeout S            longest run of one benchmark before it is stopped (600)\n"
	"  --gnuplot PATH         the gnuplot program (gnuplot); --no-plot: write the data and script only\n"
	"\n"
	"efficiency = images_per_s(W) / (images_per_s(W0) x W / W0), W0 the smallest world size measured.\n"
	"exit codes: 0 done; 64 usage; 66 no such hostfile; 74 cannot write the run directory; 75 stopped\n"
	"by a signal (the sizes measured so far are written); 81 mpirun could not be started; 82 a benchmark\n"
	"run failed, timed out or printed no JSON line (the other sizes are in the files); 83 gnuplot\n"
	"missing or failed (everything but sweep.png written; 'gnuplot RUN/sweep.gp' draws it later).\n";

typedef struct sweep_opts {
	int np[MAX_SIZES];        /* world sizes, ascending, distinct */
	int n_np;
	const char *hostfile;     /* NULL: local */
	const char *run_dir;
	const char *mpirun;
	const char *gnuplot;
	bool weak;
	long per_rank_batch;      /* weak scaling: B; 0 otherwise */
	int repeat;
	double timeout_s;
	bool no_plot;
	char **margs;             /* --mpirun-arg values */
	int n_margs;
	char **worker;            /* after "--" */
	int n_worker;
} sweep_opts;

typedef struct bench_run {
	int world;
	int rep;                  /* 1.. */
	bool ok;
	char status[128];         /* "exit 0", "timed out", "no JSON line", ... */
	double seconds;
	cJSON *json;              /* the benchmark's object (owned); NULL if none */
} bench_run;

typedef struct sweep_row {
	int world;
	int runs;                 /* successful runs of this size */
	double global_batch;
	double ips, ips_min, ips_max, ips_per_rank, efficiency;
	double step_ms, p50, p90, p99;
	bool pct_from_bench;      /* the benchmark gave step_ms_p50/p90/p99 (else they are step_ms) */
	double allreduce_ms, busbw, fwd_ms, bwd_ms, opt_ms;
} sweep_row;

static volatile sig_atomic_t stop_flag;

static void on_signal(int sig)
{
	stop_flag = sig;
}

static int usage(const char *fmt, const char *arg)
{
	fprintf(stderr, "spotlaunch sweep: ");
	fprintf(stderr, fmt, arg);
	fprintf(stderr, "\nTry 'spotlaunch sweep --help'.\n");
	return EXIT_USAGE;
}

static int cmp_int(const void *a, const void *b)
{
	return *(const int *)a - *(const int *)b;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* "1,2,4,8" into o->np (sorted); false on anything else. */
static bool parse_np_list(const char *s, sweep_opts *o)
{
	char buf[1024];
	if (!fmt_path(buf, sizeof buf, "%s", s))
		return false;
	o->n_np = 0;
	char *save = NULL;
	for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		long v;
		if (o->n_np == MAX_SIZES || !parse_long(t, 1, 1 << 20, &v))
			return false;
		o->np[o->n_np++] = (int)v;
	}
	if (!o->n_np)
		return false;
	qsort(o->np, (size_t)o->n_np, sizeof o->np[0], cmp_int);
	for (int i = 1; i < o->n_np; i++)
		if (o->np[i] == o->np[i - 1])
			return false;
	return true;
}

static bool has_arg(char **v, int n, const char *a)
{
	for (int i = 0; i < n; i++)
		if (strcmp(v[i], a) == 0)
			return true;
	return false;
}

/* The worker names train.global_batch itself (--set train.global_batch=..). */
static bool worker_sets_batch(const sweep_opts *o)
{
	for (int i = 0; i < o->n_worker; i++) {
		const char *a = o->worker[i];
		if (strncmp(a, "--set=", 6) == 0)
			a += 6;
		else if (strcmp(a, "--set") == 0 && i + 1 < o->n_worker)
			a = o->worker[++i];
		else
			continue;
		if (strncmp(a, "train.global_batch=", 19) == 0)
			return true;
	}
	return false;
}

/*
 * The mpirun argv of one world size (malloc'd vector of borrowed strings plus
 * the two it owns in np_buf and set_buf).
 */
static char **build_argv(const sweep_opts *o, int world, char *np_buf, size_t np_len, char *set_buf, size_t set_len,
			 bool *oversubscribed)
{
	char **v = calloc((size_t)(o->n_margs + o->n_worker + 12), sizeof *v);
	if (!v)
		return NULL;
	int n = 0;
	v[n++] = (char *)o->mpirun;
	if (o->hostfile) {
		v[n++] = "--hostfile";
		v[n++] = (char *)o->hostfile;
	}
	snprintf(np_buf, np_len, "%d", world);
	v[n++] = "-np";
	v[n++] = np_buf;
	long cores = sysconf(_SC_NPROCESSORS_ONLN);
	*oversubscribed = false;
	if (!o->hostfile && world > cores && !has_arg(o->margs, o->n_margs, "--oversubscribe") &&
	    !has_arg(o->margs, o->n_margs, "-oversubscribe")) {
		v[n++] = "--oversubscribe";
		*oversubscribed = true;
	}
	for (int i = 0; i < o->n_margs; i++)
		v[n++] = o->margs[i];
	for (int i = 0; i < o->n_worker; i++)
		v[n++] = o->worker[i];
	if (o->weak) {
		snprintf(set_buf, set_len, "train.global_batch=%ld", o->per_rank_batch * world);
		v[n++] = "--set";
		v[n++] = set_buf;
	}
	v[n] = NULL;
	return v;
}

static cJSON *argv_json(char **v)
{
	cJSON *a = cJSON_CreateArray();
	for (int i = 0; a && v[i]; i++)
		cJSON_AddItemToArray(a, cJSON_CreateString(v[i]));
	return a;
}

/* The last non-blank line of a file as a JSON object (NULL if none). */
static cJSON *last_json_line(const char *path)
{
	char *text = NULL;
	size_t len = 0;
	if (read_file(path, 64u << 20, &text, &len) != 0)
		return NULL;
	while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r' || text[len - 1] == ' '))
		text[--len] = 0;
	char *line = strrchr(text, '\n');
	line = line ? line + 1 : text;
	cJSON *o = cJSON_Parse(line);
	free(text);
	if (o && !cJSON_IsObject(o)) {
		cJSON_Delete(o);
		o = NULL;
	}
	return o;
}

/* One benchmark run. Returns 0, or an exit code that ends the sweep (71 mpirun not started, 74, 75). */
static int run_one(const sweep_opts *o, const char *logs, bench_run *r)
{
	char np_buf[32], set_buf[64], out_path[4200], err_path[4200];
	bool over;
	char **argv = build_argv(o, r->world, np_buf, sizeof np_buf, set_buf, sizeof set_buf, &over);
	if (!argv)
		return EXIT_OSERR;
	if (!fmt_path(out_path, sizeof out_path, "%s/np-%04d-r%d.out", logs, r->world, r->rep) ||
	    !fmt_path(err_path, sizeof err_path, "%s/np-%04d-r%d.err", logs, r->world, r->rep)) {
		free(argv);
		say_error("path too long: %s", logs);
		return EXIT_IOERR;
	}
	unlink(out_path);
	unlink(err_path);
	say_info("sweep: np %d, run %d of %d%s", r->world, r->rep, o->repeat, over ? " (--oversubscribe)" : "");
	double t0 = now_mono();
	int st;
	int rc = run_logged(argv, out_path, err_path, o->timeout_s, &stop_flag, &st);
	r->seconds = now_mono() - t0;
	free(argv);
	if (rc == ENOENT || rc == EACCES) {
		say_error("cannot start %s: %s", o->mpirun, strerror(rc));
		snprintf(r->status, sizeof r->status, "mpirun not started: %s", strerror(rc));
		return EXIT_NOSTART;
	}
	if (rc) {
		snprintf(r->status, sizeof r->status, "not started: %s", strerror(rc));
		say_error("np %d: cannot run %s: %s", r->world, o->mpirun, strerror(rc));
		return rc == EMFILE || rc == ENFILE || rc == ENOMEM || rc == EAGAIN ? EXIT_OSERR : EXIT_IOERR;
	}
	if (stop_flag) {
		snprintf(r->status, sizeof r->status, "stopped by signal %d", (int)stop_flag);
		return EXIT_TEMPFAIL;
	}
	if (st != 0) {
		if (st < 0)
			snprintf(r->status, sizeof r->status, "timed out after %.0f s", o->timeout_s);
		else
			proc_describe_status(st, r->status, sizeof r->status);
		say_error("np %d run %d: mpirun %s; see %s", r->world, r->rep, r->status, err_path);
		return 0;
	}
	r->json = last_json_line(out_path);
	double ips = r->json ? json_num(r->json, "images_per_s", -1) : -1;
	double w = r->json ? json_num(r->json, "world_size", -1) : -1;
	if (!r->json || !(ips > 0)) {
		snprintf(r->status, sizeof r->status, "no JSON line with images_per_s on stdout");
		say_error("np %d run %d: the last line of %s is not the benchmark's JSON object (with images_per_s)",
			  r->world, r->rep, out_path);
		return 0;
	}
	if ((int)w != r->world) {
		snprintf(r->status, sizeof r->status, "world_size %g, not %d", w, r->world);
		say_error("np %d run %d: the benchmark says world_size %g: did the worker run under this mpirun?",
			  r->world, r->rep, w);
		return 0;
	}
	snprintf(r->status, sizeof r->status, "exit 0");
	r->ok = true;
	say_info("sweep: np %d: %.0f images/s, step %.3f ms (p99 %.3f ms), all-reduce %.3f ms [%.1f s]", r->world, ips,
		 json_num(r->json, "step_ms", 0), json_num(r->json, "step_ms_p99", json_num(r->json, "step_ms", 0)),
		 json_num(r->json, "allreduce_ms", 0), r->seconds);
	return 0;
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof *v, cmp_double);
	return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* The median of a field over the successful runs of a world size (dflt_key when key is absent). */
static double field_median(const bench_run *runs, int n, int world, const char *key, const char *dflt_key,
			   bool *all_had_key)
{
	double v[256];
	int k = 0;
	if (all_had_key)
		*all_had_key = true;
	for (int i = 0; i < n && k < 256; i++) {
		if (!runs[i].ok || runs[i].world != world)
			continue;
		const cJSON *x = cJSON_GetObjectItemCaseSensitive(runs[i].json, key);
		if (cJSON_IsNumber(x)) {
			v[k++] = x->valuedouble;
		} else {
			if (all_had_key)
				*all_had_key = false;
			v[k++] = dflt_key ? json_num(runs[i].json, dflt_key, NAN) : NAN;
		}
	}
	return k ? median(v, k) : NAN;
}

static int make_rows(const sweep_opts *o, const bench_run *runs, int n_runs, sweep_row *rows)
{
	int n = 0;
	for (int s = 0; s < o->n_np; s++) {
		sweep_row *r = &rows[n];
		memset(r, 0, sizeof *r);
		r->world = o->np[s];
		r->ips_min = INFINITY;
		r->ips_max = 0;
		for (int i = 0; i < n_runs; i++) {
			if (!runs[i].ok || runs[i].world != r->world)
				continue;
			double ips = json_num(runs[i].json, "images_per_s", 0);
			r->runs++;
			r->ips_min = ips < r->ips_min ? ips : r->ips_min;
			r->ips_max = ips > r->ips_max ? ips : r->ips_max;
		}
		if (!r->runs)
			continue;
		r->global_batch = field_median(runs, n_runs, r->world, "global_batch", NULL, NULL);
		r->ips = field_median(runs, n_runs, r->world, "images_per_s", NULL, NULL);
		r->ips_per_rank = r->ips / r->world;
		r->step_ms = field_median(runs, n_runs, r->world, "step_ms", NULL, NULL);
		bool a, b, c;
		r->p50 = field_median(runs, n_runs, r->world, "step_ms_p50", "step_ms", &a);
		r->p90 = field_median(runs, n_runs, r->world, "step_ms_p90", "step_ms", &b);
		r->p99 = field_median(runs, n_runs, r->world, "step_ms_p99", "step_ms", &c);
		r->pct_from_bench = a && b && c;
		r->allreduce_ms = field_median(runs, n_runs, r->world, "allreduce_ms", NULL, NULL);
		r->busbw = field_median(runs, n_runs, r->world, "allreduce_busbw_gbs", NULL, NULL);
		r->fwd_ms = field_median(runs, n_runs, r->world, "forward_ms", NULL, NULL);
		r->bwd_ms = field_median(runs, n_runs, r->world, "backward_ms", NULL, NULL);
		r->opt_ms = field_median(runs, n_runs, r->world, "optimizer_ms", NULL, NULL);
		n++;
	}
	for (int i = 0; i < n; i++)
		rows[i].efficiency = rows[i].ips * rows[0].world / ((double)rows[i].world * rows[0].ips);
	return n;
}

static const char csv_header[] =
	"world_size,global_batch,images_per_s,images_per_s_min,images_per_s_max,images_per_s_per_rank,efficiency,"
	"step_ms,step_ms_p50,step_ms_p90,step_ms_p99,allreduce_ms,allreduce_busbw_gbs,forward_ms,backward_ms,"
	"optimizer_ms,runs,step_percentiles\n";

/* A number for the CSV: "nan" is not written; an empty field stands for unknown. */
static void csv_num(FILE *f, double v, const char *fmt)
{
	if (isfinite(v))
		fprintf(f, fmt, v);
}

static int write_csv(const char *path, const sweep_row *rows, int n)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	if (!f)
		return EXIT_OSERR;
	fputs(csv_header, f);
	for (int i = 0; i < n; i++) {
		const sweep_row *r = &rows[i];
		fprintf(f, "%d,", r->world);
		csv_num(f, r->global_batch, "%.0f");
		fprintf(f, ",%.6g,%.6g,%.6g,%.6g,%.4f,", r->ips, r->ips_min, r->ips_max, r->ips_per_rank, r->efficiency);
		double v[] = {r->step_ms, r->p50, r->p90, r->p99, r->allreduce_ms, r->busbw, r->fwd_ms, r->bwd_ms, r->opt_ms};
		for (size_t k = 0; k < sizeof v / sizeof v[0]; k++) {
			csv_num(f, v[k], "%.6g");
			fputc(',', f);
		}
		fprintf(f, "%d,%s\n", r->runs, r->pct_from_bench ? "bench" : "step_ms");
	}
	fclose(f);
	int rc = buf && write_file_atomic(path, buf, len) == 0 ? 0 : EXIT_IOERR;
	free(buf);
	return rc;
}

static void add_num_or_null(cJSON *o, const char *k, double v)
{
	if (isfinite(v))
		cJSON_AddNumberToObject(o, k, v);
	else
		cJSON_AddNullToObject(o, k);
}

static cJSON *rows_json(const sweep_row *rows, int n)
{
	cJSON *a = cJSON_CreateArray();
	for (int i = 0; a && i < n; i++) {
		const sweep_row *r = &rows[i];
		cJSON *j = cJSON_CreateObject();
		if (!j)
			break;
		cJSON_AddNumberToObject(j, "world_size", r->world);
		add_num_or_null(j, "global_batch", r->global_batch);
		cJSON_AddNumberToObject(j, "images_per_s", r->ips);
		cJSON_AddNumberToObject(j, "images_per_s_min", r->ips_min);
		cJSON_AddNumberToObject(j, "images_per_s_max", r->ips_max);
		cJSON_AddNumberToObject(j, "images_per_s_per_rank", r->ips_per_rank);
		cJSON_AddNumberToObject(j, "efficiency", r->efficiency);
		add_num_or_null(j, "step_ms", r->step_ms);
		add_num_or_null(j, "step_ms_p50", r->p50);
		add_num_or_null(j, "step_ms_p90", r->p90);
		add_num_or_null(j, "step_ms_p99", r->p99);
		add_num_or_null(j, "allreduce_ms", r->allreduce_ms);
		add_num_or_null(j, "allreduce_busbw_gbs", r->busbw);
		add_num_or_null(j, "forward_ms", r->fwd_ms);
		add_num_or_null(j, "backward_ms", r->bwd_ms);
		add_num_or_null(j, "optimizer_ms", r->opt_ms);
		cJSON_AddNumberToObject(j, "runs", r->runs);
		cJSON_AddStringToObject(j, "step_percentiles", r->pct_from_bench ? "bench" : "step_ms");
		cJSON_AddItemToArray(a, j);
	}
	return a;
}

static int write_json(const char *path, const sweep_opts *o, const bench_run *runs, int n_runs, const sweep_row *rows,
		      int n_rows)
{
	cJSON *j = cJSON_CreateObject();
	if (!j)
		return EXIT_OSERR;
	cJSON_AddStringToObject(j, "mode", o->weak ? "weak" : "strong");
	if (o->weak)
		cJSON_AddNumberToObject(j, "per_rank_batch", (double)o->per_rank_batch);
	cJSON *np = cJSON_AddArrayToObject(j, "np");
	for (int i = 0; np && i < o->n_np; i++)
		cJSON_AddItemToArray(np, cJSON_CreateNumber(o->np[i]));
	cJSON_AddNumberToObject(j, "repeat", o->repeat);
	if (o->hostfile)
		cJSON_AddStringToObject(j, "hostfile", o->hostfile);
	else
		cJSON_AddNullToObject(j, "hostfile");
	cJSON_AddNumberToObject(j, "local_cores", (double)sysconf(_SC_NPROCESSORS_ONLN));
	if (n_rows)
		cJSON_AddNumberToObject(j, "reference_world_size", rows[0].world);
	cJSON *cmds = cJSON_AddArrayToObject(j, "commands");
	for (int i = 0; cmds && i < o->n_np; i++) {
		char a[32], b[64];
		bool over;
		char **v = build_argv(o, o->np[i], a, sizeof a, b, sizeof b, &over);
		if (v)
			cJSON_AddItemToArray(cmds, argv_json(v));
		free(v);
	}
	cJSON_AddItemToObject(j, "rows", rows_json(rows, n_rows));
	cJSON *ra = cJSON_AddArrayToObject(j, "runs");
	for (int i = 0; ra && i < n_runs; i++) {
		const bench_run *r = &runs[i];
		cJSON *x = cJSON_CreateObject();
		if (!x)
			break;
		cJSON_AddNumberToObject(x, "world_size", r->world);
		cJSON_AddNumberToObject(x, "repeat", r->rep);
		cJSON_AddBoolToObject(x, "ok", r->ok);
		cJSON_AddStringToObject(x, "status", r->status);
		cJSON_AddNumberToObject(x, "seconds", r->seconds);
		if (r->json)
			cJSON_AddItemToObject(x, "bench", cJSON_Duplicate(r->json, true));
		else
			cJSON_AddNullToObject(x, "bench");
		cJSON_AddItemToArray(ra, x);
	}
	char *text = cJSON_Print(j);
	cJSON_Delete(j);
	if (!text)
		return EXIT_OSERR;
	size_t len = strlen(text);
	text[len] = '\n'; /* cJSON_Print ends without a newline: one over the terminator (len + 1 bytes written) */
	int rc = write_file_atomic(path, text, len + 1) == 0 ? 0 : EXIT_IOERR;
	free(text);
	return rc;
}

static const char *basename_of(const char *p)
{
	const char *s = strrchr(p, '/');
	return s ? s + 1 : p;
}

/* The gnuplot script of sweep.png: throughput (with linear scaling), efficiency, step times. */
static int write_gp(const char *gp_path, const char *csv, const char *png, const sweep_opts *o, const bench_run *runs,
		    int n_runs, const sweep_row *rows, int n)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	if (!f)
		return EXIT_OSERR;
	const cJSON *first = NULL;
	for (int i = 0; i < n_runs && !first; i++)
		if (runs[i].ok)
			first = runs[i].json;
	char host[256] = "this machine";
	if (o->hostfile)
		snprintf(host, sizeof host, "hosts of %s", basename_of(o->hostfile));
	else if (gethostname(host, sizeof host) == 0)
		host[sizeof host - 1] = 0;
	char title[1024];
	if (o->weak)
		snprintf(title, sizeof title, "spottrain bench, weak scaling (%ld images per rank per step)",
			 o->per_rank_batch);
	else
		snprintf(title, sizeof title, "spottrain bench, strong scaling (global batch %.0f)",
			 n ? rows[0].global_batch : 0);
	char sub[1024];
	snprintf(sub, sizeof sub, "%s, backend %s, %d thread(s) per rank, %s; %d run(s) per size, medians",
		 basename_of(json_str(first, "config", "?")), json_str(first, "backend", "?"),
		 (int)json_num(first, "threads", 0), host, o->repeat);

	fprintf(f, "# sweep.gp - written by spotlaunch sweep; draw again with: gnuplot sweep.gp\n");
	fprintf(f, "# data: sweep.csv (columns: 1 world_size, 3 images_per_s, 4/5 min/max, 7 efficiency,\n"
		   "#       9/10/11 step_ms p50/p90/p99, 12 allreduce_ms)\n");
	gp_terminal(f, png, SWEEP_PNG_W, SWEEP_PNG_H);
	fprintf(f, "set datafile separator ','\n");
	fprintf(f, "csv = ");
	gp_quote(f, csv);
	fprintf(f, "\n");
	int wmin = n ? rows[0].world : 1, wmax = n ? rows[n - 1].world : 1;
	double ref = n ? rows[0].ips / rows[0].world : 0; /* images/s per rank at W0, for the linear line */
	bool logx = wmax >= 8 * wmin;
	fprintf(f, "W0 = %d\nref = %.9g\n", wmin, ref);
	if (logx)
		fprintf(f, "set logscale x 2\nset xrange [%g:%g]\n", wmin / 1.4, wmax * 1.4);
	else
		fprintf(f, "set xrange [%g:%g]\n", wmin - 0.5 < 0.5 ? 0.5 : wmin - 0.5, wmax + 0.5);
	fprintf(f, "set xtics (");
	for (int i = 0; i < n; i++)
		fprintf(f, "%s%d", i ? ", " : "", rows[i].world);
	if (!n)
		fprintf(f, "1");
	fprintf(f, ")\n");
	fprintf(f, "set grid xtics ytics lc rgb '#dddddd'\nset key top left box opaque\n");
	fprintf(f, "set lmargin at screen 0.10\nset rmargin at screen 0.96\n");
	fprintf(f, "set multiplot title ");
	char full[2100];
	snprintf(full, sizeof full, "%s\n%s", title, sub);
	/* gnuplot single quotes keep "\n" literally: use a double-quoted title with the line break */
	fputc('"', f);
	for (const char *p = full; *p; p++) {
		if (*p == '\n')
			fputs("\\n", f);
		else if (*p == '"' || *p == '\\')
			fprintf(f, "\\%c", *p);
		else if ((unsigned char)*p >= 0x20)
			fputc(*p, f);
	}
	fprintf(f, "\" font \"sans,12\"\n");

	double ymax = 0;
	for (int i = 0; i < n; i++) {
		double lin = ref * rows[i].world;
		ymax = rows[i].ips_max > ymax ? rows[i].ips_max : ymax;
		ymax = lin > ymax ? lin : ymax;
	}
	/* panel 1: throughput */
	fprintf(f, "\nset tmargin at screen 0.90\nset bmargin at screen 0.64\n");
	fprintf(f, "set title 'Throughput against world size' font 'sans,11'\n");
	fprintf(f, "set ylabel 'throughput (images/s)'\nunset xlabel\nset format y '%%.0f'\n");
	fprintf(f, "set yrange [0:%g]\n", ymax > 0 ? ymax * 1.15 : 1);
	if (n) {
		fprintf(f, "plot ref * x with lines dt 2 lw 1.5 lc rgb '#888888' title sprintf('linear scaling from W=%%d', W0), \\\n");
		if (o->repeat > 1)
			fprintf(f, "     csv skip 1 using 1:3:4:5 with yerrorlines pt 7 ps 1.2 lw 2 lc rgb '#1f77b4' "
				   "title 'measured (median, bars: min-max)', \\\n");
		else
			fprintf(f, "     csv skip 1 using 1:3 with linespoints pt 7 ps 1.2 lw 2 lc rgb '#1f77b4' "
				   "title 'measured', \\\n");
		fprintf(f, "     csv skip 1 using 1:3:(sprintf('%%.0f', $3)) with labels offset 0,1.2 notitle\n");
	} else {
		fprintf(f, "plot NaN notitle\n");
	}
	/* panel 2: efficiency */
	double emax = 1.0;
	for (int i = 0; i < n; i++)
		emax = rows[i].efficiency > emax ? rows[i].efficiency : emax;
	fprintf(f, "\nset tmargin at screen 0.57\nset bmargin at screen 0.35\n");
	fprintf(f, "set title 'Scaling efficiency: images_per_s(W) / (images_per_s(W0) x W/W0)' font 'sans,11'\n");
	fprintf(f, "set ylabel 'efficiency (%%)'\nset yrange [0:%g]\nset key top right box opaque\n",
		ceil(emax * 100 * 1.15 / 10) * 10);
	if (n) {
		fprintf(f, "plot 100 with lines dt 2 lw 1.5 lc rgb '#888888' title 'linear scaling (100%%)', \\\n");
		fprintf(f, "     csv skip 1 using 1:($7*100) with linespoints pt 5 ps 1.2 lw 2 lc rgb '#2ca02c' "
			   "title 'efficiency', \\\n");
		fprintf(f, "     csv skip 1 using 1:($7*100):(sprintf('%%.0f%%%%', $7*100)) with labels offset 0,1.2 "
			   "notitle\n");
	} else {
		fprintf(f, "plot NaN notitle\n");
	}
	/* panel 3: step times */
	double smax = 0;
	for (int i = 0; i < n; i++) {
		double v[] = {rows[i].p99, rows[i].p90, rows[i].step_ms, rows[i].allreduce_ms};
		for (size_t k = 0; k < 4; k++)
			smax = isfinite(v[k]) && v[k] > smax ? v[k] : smax;
	}
	bool pct = n > 0;
	for (int i = 0; i < n; i++)
		pct = pct && rows[i].pct_from_bench;
	fprintf(f, "\nset tmargin at screen 0.28\nset bmargin at screen 0.05\nset xlabel 'world size W (ranks)'\n");
	fprintf(f, "set title '%s' font 'sans,11'\n",
		pct ? "Step time percentiles over the timed steps, and the all-reduce (slowest rank)"
		    : "Step time (mean; the benchmark gave no percentiles) and the all-reduce");
	fprintf(f, "set ylabel 'time per step (ms)'\nset yrange [0:%g]\nset format y '%%g'\nset key top left box opaque\n",
		smax > 0 ? smax * 1.2 : 1);
	if (n) {
		if (pct)
			fprintf(f, "plot csv skip 1 using 1:9 with linespoints pt 7 lw 2 lc rgb '#1f77b4' title 'step p50', \\\n"
				   "     csv skip 1 using 1:10 with linespoints pt 9 lw 1.5 lc rgb '#ff7f0e' title 'step p90', \\\n"
				   "     csv skip 1 using 1:11 with linespoints pt 11 lw 1.5 lc rgb '#d62728' title 'step p99', \\\n");
		else
			fprintf(f, "plot csv skip 1 using 1:8 with linespoints pt 7 lw 2 lc rgb '#1f77b4' title 'step (mean)', \\\n");
		fprintf(f, "     csv skip 1 using 1:12 with linespoints pt 5 lw 1.5 dt 3 lc rgb '#9467bd' "
			   "title 'all-reduce (mean)'\n");
	} else {
		fprintf(f, "plot NaN notitle\n");
	}
	fprintf(f, "\nunset multiplot\n");
	fclose(f);
	int rc = buf && write_file_atomic(gp_path, buf, len) == 0 ? 0 : EXIT_IOERR;
	free(buf);
	return rc;
}

static void print_table(const sweep_row *rows, int n, FILE *f)
{
	fprintf(f, "%6s %8s %12s %12s %7s %9s %9s %9s %9s %12s %11s\n", "W", "batch", "images/s", "per rank", "eff",
		"step ms", "p50 ms", "p90 ms", "p99 ms", "allreduce ms", "busbw GB/s");
	for (int i = 0; i < n; i++) {
		const sweep_row *r = &rows[i];
		fprintf(f, "%6d %8.0f %12.1f %12.1f %6.1f%% %9.3f %9.3f %9.3f %9.3f %12.3f %11.3f\n", r->world,
			r->global_batch, r->ips, r->ips_per_rank, 100 * r->efficiency, r->step_ms, r->p50, r->p90, r->p99,
			r->allreduce_ms, r->busbw);
	}
}

enum {
	S_NP = 256, S_HOSTFILE, S_RUN_DIR, S_MODE, S_PER_RANK, S_REPEAT, S_MPIRUN, S_MPIRUN_ARG, S_TIMEOUT, S_GNUPLOT,
	S_NO_PLOT,
};

static const struct option sweep_opts_long[] = {
	{"np", required_argument, NULL, S_NP},
	{"hostfile", required_argument, NULL, S_HOSTFILE},
	{"run-dir", required_argument, NULL, S_RUN_DIR},
	{"mode", required_argument, NULL, S_MODE},
	{"per-rank-batch", required_argument, NULL, S_PER_RANK},
	{"repeat", required_argument, NULL, S_REPEAT},
	{"mpirun", required_argument, NULL, S_MPIRUN},
	{"mpirun-arg", required_argument, NULL, S_MPIRUN_ARG},
	{"timeout", required_argument, NULL, S_TIMEOUT},
	{"gnuplot", required_argument, NULL, S_GNUPLOT},
	{"no-plot", no_argument, NULL, S_NO_PLOT},
	{"help", no_argument, NULL, 'h'},
	{NULL, 0, NULL, 0},
};

static int parse_opts(int argc, char **argv, sweep_opts *o, char **margs)
{
	memset(o, 0, sizeof *o);
	o->mpirun = "mpirun";
	o->repeat = 1;
	o->timeout_s = 600;
	o->margs = margs;
	bool have_np = false;
	const char *mode = "strong";
	long v;
	int c;
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "+:h", sweep_opts_long, NULL)) != -1) {
		switch (c) {
		case S_NP:
			if (!parse_np_list(optarg, o))
				return usage("--np needs distinct world sizes >= 1 separated by commas (1,2,4,8), not '%s'",
					     optarg);
			have_np = true;
			break;
		case S_HOSTFILE: o->hostfile = optarg; break;
		case S_RUN_DIR: o->run_dir = optarg; break;
		case S_MODE: mode = optarg; break;
		case S_PER_RANK:
			if (!parse_long(optarg, 1, 1 << 24, &v))
				return usage("--per-rank-batch needs a whole number >= 1, not '%s'", optarg);
			o->per_rank_batch = v;
			break;
		case S_REPEAT:
			if (!parse_long(optarg, 1, 100, &v))
				return usage("--repeat needs a whole number from 1 to 100, not '%s'", optarg);
			o->repeat = (int)v;
			break;
		case S_MPIRUN: o->mpirun = optarg; break;
		case S_MPIRUN_ARG: margs[o->n_margs++] = optarg; break;
		case S_TIMEOUT:
			if (!parse_seconds(optarg, 1, 1e7, &o->timeout_s))
				return usage("--timeout needs seconds from 1, not '%s'", optarg);
			break;
		case S_GNUPLOT: o->gnuplot = optarg; break;
		case S_NO_PLOT: o->no_plot = true; break;
		case 'h': fputs(sweep_usage, stdout); return -1;
		case ':': return usage("option %s needs a value", argv[optind - 1]);
		default: return usage("unknown option '%s'", argv[optind - 1]);
		}
	}
	if (!have_np)
		return usage("%s", "--np LIST is required (for example --np 1,2,4,8)");
	if (strcmp(mode, "weak") == 0)
		o->weak = true;
	else if (strcmp(mode, "strong") != 0)
		return usage("--mode is strong or weak, not '%s'", mode);
	if (o->weak && !o->per_rank_batch)
		return usage("%s", "--mode weak needs --per-rank-batch B (the batch of one rank)");
	if (!o->weak && o->per_rank_batch)
		return usage("%s", "--per-rank-batch is for --mode weak (strong scaling keeps the worker's global batch)");
	if (optind >= argc)
		return usage("%s", "no benchmark command: spotlaunch sweep --np 1,2,4 -- spottrain bench --config FILE");
	o->worker = argv + optind;
	o->n_worker = argc - optind;
	if (o->weak && worker_sets_batch(o))
		return usage("%s", "--mode weak sets train.global_batch itself: leave it out of the worker's arguments");
	return 0;
}

int sweep_main(int argc, char **argv)
{
	char **margs = calloc((size_t)argc + 1, sizeof *margs);
	if (!margs)
		return EXIT_OSERR;
	sweep_opts o;
	int rc = parse_opts(argc, argv, &o, margs);
	if (rc) {
		free(margs);
		return rc < 0 ? 0 : rc;
	}
	char def_dir[64], dir[4096], logs[4200], csv[4200], json[4200], gp[4200], png[4200], gplog[4200];
	if (!o.run_dir) {
		time_t t = time(NULL);
		struct tm tm;
		localtime_r(&t, &tm);
		strftime(def_dir, sizeof def_dir, "runs/sweep-%Y%m%d-%H%M%S", &tm);
		o.run_dir = def_dir;
	}
	/* absolute, so that sweep.gp draws from any directory */
	if (!abs_path(o.run_dir, dir, sizeof dir)) {
		free(margs);
		return usage("run directory path too long: %s", o.run_dir);
	}
	o.run_dir = dir;
	if (o.hostfile && access(o.hostfile, R_OK) != 0) {
		fprintf(stderr, "spotlaunch sweep: cannot read the hostfile %s: %s\n", o.hostfile, strerror(errno));
		free(margs);
		return EXIT_NOINPUT;
	}
	if (!fmt_path(logs, sizeof logs, "%s/sweep-logs", o.run_dir) ||
	    !fmt_path(csv, sizeof csv, "%s/sweep.csv", o.run_dir) ||
	    !fmt_path(json, sizeof json, "%s/sweep.json", o.run_dir) ||
	    !fmt_path(gp, sizeof gp, "%s/sweep.gp", o.run_dir) || !fmt_path(png, sizeof png, "%s/sweep.png", o.run_dir) ||
	    !fmt_path(gplog, sizeof gplog, "%s/sweep-logs/gnuplot.log", o.run_dir)) {
		free(margs);
		return usage("run directory path too long: %s", o.run_dir);
	}
	char why[PATH_MAX + 256];
	if (fs_mkdir_p(logs, why, sizeof why)) {
		fprintf(stderr, "spotlaunch sweep: %s\n", why);
		free(margs);
		return EXIT_IOERR;
	}
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);

	int n_runs = 0, cap = o.n_np * o.repeat;
	bench_run *runs = calloc((size_t)cap, sizeof *runs);
	sweep_row *rows = calloc((size_t)o.n_np, sizeof *rows);
	if (!runs || !rows) {
		free(runs);
		free(rows);
		free(margs);
		return EXIT_OSERR;
	}
	int fatal = 0, failed = 0;
	for (int s = 0; s < o.n_np && !fatal; s++) {
		for (int r = 1; r <= o.repeat && !fatal; r++) {
			bench_run *b = &runs[n_runs++];
			b->world = o.np[s];
			b->rep = r;
			fatal = run_one(&o, logs, b);
			if (!b->ok)
				failed++;
		}
	}
	int n_rows = make_rows(&o, runs, n_runs, rows);
	rc = write_csv(csv, rows, n_rows);
	if (!rc)
		rc = write_json(json, &o, runs, n_runs, rows, n_rows);
	if (!rc)
		rc = write_gp(gp, csv, png, &o, runs, n_runs, rows, n_rows);
	int plot_rc = 0;
	if (!rc && !o.no_plot && n_rows) {
		plot_result pr = plot_draw(o.gnuplot, gp, png, SWEEP_PNG_W, SWEEP_PNG_H, gplog);
		plot_rc = pr == PLOT_DRAWN ? 0 : EXIT_NO_PICTURE;
	}
	if (!rc) {
		print_table(rows, n_rows, stdout);
		cJSON *sum = cJSON_CreateObject();
		if (sum) {
			cJSON_AddStringToObject(sum, "run_dir", o.run_dir);
			cJSON_AddStringToObject(sum, "csv", csv);
			cJSON_AddStringToObject(sum, "json", json);
			cJSON_AddStringToObject(sum, "gp", gp);
			if (!o.no_plot && n_rows && !plot_rc)
				cJSON_AddStringToObject(sum, "png", png);
			else
				cJSON_AddNullToObject(sum, "png");
			cJSON_AddNumberToObject(sum, "failed_runs", failed);
			cJSON_AddItemToObject(sum, "rows", rows_json(rows, n_rows));
			char *t = cJSON_PrintUnformatted(sum);
			if (t)
				printf("%s\n", t);
			free(t);
			cJSON_Delete(sum);
		}
		fflush(stdout);
	} else {
		fprintf(stderr, "spotlaunch sweep: cannot write the results into %s\n", o.run_dir);
	}
	for (int i = 0; i < n_runs; i++)
		cJSON_Delete(runs[i].json);
	free(runs);
	free(rows);
	free(margs);
	if (fatal)
		return fatal;
	if (rc)
		return rc;
	if (failed) {
		fprintf(stderr, "spotlaunch sweep: %d benchmark run(s) failed (see %s)\n", failed, logs);
		return EXIT_BENCH_FAILED;
	}
	return plot_rc;
}

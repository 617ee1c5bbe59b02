#include "advice.h"

#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "contract.h"
#include "util.h"

static const char advise_usage[] =
	"usage: spotlaunch advise --write-s D (--mtbf-hours M | --rate-per-node-hour R --nodes N)\n"
	"                         [--interval-steps K --step-s S] [--restart-s R] [--json]\n"
	"\n"
	"How often to checkpoint (Young/Daly, first order):\n"
	"  M  = 1 / (R x N)                    mean time between interruptions of the world of N nodes\n"
	"  T* = sqrt(2 x D x M)                the interval that wastes least\n"
	"  waste(T) = D/T + T/(2M) [+ R/M]     checkpoint writes + work redone + restarts; goodput = 1 - waste\n"
	"\n"
	"  --write-s D               seconds training waits for one checkpoint (events.jsonl: write_s)\n"
	"  --mtbf-hours M            mean time between interruptions of the whole world, in hours\n"
	"  --rate-per-node-hour R    interruptions per node-hour (e.g. 0.05), with --nodes N\n"
	"  --nodes N                 nodes in the world\n"
	"  --step-s S                seconds per training step: intervals are also given in steps\n"
	"  --interval-steps K        the configured checkpoint.every_steps: its expected goodput (needs --step-s)\n"
	"  --restart-s R             seconds from an interruption to training again (adds R/M to the waste)\n"
	"  --json                    one JSON object instead of text\n"
	"exit codes: 0 done; 64 usage.\n";

double advice_waste(double interval_s, double write_s, double mtbf_s, double restart_s)
{
	double w = write_s / interval_s + interval_s / (2.0 * mtbf_s);
	if (restart_s > 0)
		w += restart_s / mtbf_s;
	return w;
}

static double clamp01(double x)
{
	return x < 0 ? 0 : x > 1 ? 1 : x;
}

void advice_compute(const advice_in *in, advice *out)
{
	memset(out, 0, sizeof *out);
	double d = in->write_s, M = in->mtbf_s;
	out->opt_interval_s = sqrt(2.0 * d * M);
	out->opt_interval_steps = -1;
	if (in->step_s > 0) {
		double k = round(out->opt_interval_s / in->step_s);
		out->opt_interval_steps = k < 1 ? 1 : k > 1e15 ? (long)1e15 : (long)k;
	}
	out->opt_waste_ckpt = d / out->opt_interval_s;
	out->opt_waste_rework = out->opt_interval_s / (2.0 * M);
	out->waste_restart = in->restart_s > 0 ? in->restart_s / M : 0;
	out->opt_goodput = clamp01(1.0 - out->opt_waste_ckpt - out->opt_waste_rework - out->waste_restart);
	if (in->interval_steps > 0 && in->step_s > 0) {
		out->have_current = true;
		out->cur_interval_s = (double)in->interval_steps * in->step_s;
		out->cur_waste_ckpt = d / out->cur_interval_s;
		out->cur_waste_rework = out->cur_interval_s / (2.0 * M);
		out->cur_goodput = clamp01(1.0 - out->cur_waste_ckpt - out->cur_waste_rework - out->waste_restart);
	}
	out->model_holds = d < M / 10.0;
}

/* "268.3 s (4.5 min)" */
static const char *secs(double s, char *buf, size_t len)
{
	if (s >= 7200)
		snprintf(buf, len, "%.1f s (%.2f h)", s, s / 3600);
	else if (s >= 120)
		snprintf(buf, len, "%.1f s (%.1f min)", s, s / 60);
	else
		snprintf(buf, len, "%.3g s", s);
	return buf;
}

void advice_print_text(const advice_in *in, const advice *a, FILE *f)
{
	char b1[64], b2[64];
	fprintf(f, "checkpoint interval (Young/Daly, first order; waste = D/T + T/(2M) + R/M):\n");
	fprintf(f, "  D checkpoint write time %s\n", secs(in->write_s, b1, sizeof b1));
	if (in->rate_per_node_hour > 0 && in->nodes > 0)
		fprintf(f, "  M between interruptions of the world %s = 1/(%.4g per node-hour x %.3g nodes)\n",
			secs(in->mtbf_s, b1, sizeof b1), in->rate_per_node_hour, in->nodes);
	else
		fprintf(f, "  M between interruptions of the world %s\n", secs(in->mtbf_s, b1, sizeof b1));
	if (in->restart_s > 0)
		fprintf(f, "  R restart per interruption %s: R/M = %.2f%% whatever the interval\n",
			secs(in->restart_s, b1, sizeof b1), 100 * a->waste_restart);
	fprintf(f, "  best interval T* = sqrt(2 D M) = %s", secs(a->opt_interval_s, b2, sizeof b2));
	if (a->opt_interval_steps > 0)
		fprintf(f, " = %ld steps of %.4g s (checkpoint.every_steps = %ld)", a->opt_interval_steps, in->step_s,
			a->opt_interval_steps);
	fprintf(f, "\n  expected at T*: writes %.2f%% + rework %.2f%% + restarts %.2f%% -> goodput %.1f%%\n",
		100 * a->opt_waste_ckpt, 100 * a->opt_waste_rework, 100 * a->waste_restart, 100 * a->opt_goodput);
	if (a->have_current)
		fprintf(f,
			"  configured every %ld steps = %s: writes %.2f%% + rework %.2f%% + restarts %.2f%% -> "
			"goodput %.1f%%\n",
			in->interval_steps, secs(a->cur_interval_s, b1, sizeof b1), 100 * a->cur_waste_ckpt,
			100 * a->cur_waste_rework, 100 * a->waste_restart, 100 * a->cur_goodput);
	if (!a->model_holds)
		fprintf(f, "  note: D is not small against M (D >= M/10): the first-order model is rough here\n");
	if (in->step_s > 0 && a->opt_interval_s < in->step_s)
		fprintf(f, "  note: T* is shorter than one step: checkpoint every step, or make writes cheaper\n");
}

cJSON *advice_to_json(const advice_in *in, const advice *a)
{
	cJSON *o = cJSON_CreateObject();
	if (!o)
		return NULL;
	cJSON_AddStringToObject(o, "model", "young_daly_first_order");
	cJSON_AddNumberToObject(o, "write_s", in->write_s);
	cJSON_AddNumberToObject(o, "mtbf_s", in->mtbf_s);
	if (in->rate_per_node_hour > 0)
		cJSON_AddNumberToObject(o, "rate_per_node_hour", in->rate_per_node_hour);
	if (in->nodes > 0)
		cJSON_AddNumberToObject(o, "nodes", in->nodes);
	if (in->restart_s > 0)
		cJSON_AddNumberToObject(o, "restart_s", in->restart_s);
	else
		cJSON_AddNullToObject(o, "restart_s");
	if (in->step_s > 0)
		cJSON_AddNumberToObject(o, "step_s", in->step_s);
	else
		cJSON_AddNullToObject(o, "step_s");
	cJSON_AddNumberToObject(o, "optimal_interval_s", a->opt_interval_s);
	if (a->opt_interval_steps > 0)
		cJSON_AddNumberToObject(o, "optimal_interval_steps", (double)a->opt_interval_steps);
	else
		cJSON_AddNullToObject(o, "optimal_interval_steps");
	cJSON_AddNumberToObject(o, "optimal_waste_checkpoint", a->opt_waste_ckpt);
	cJSON_AddNumberToObject(o, "optimal_waste_rework", a->opt_waste_rework);
	cJSON_AddNumberToObject(o, "waste_restart", a->waste_restart);
	cJSON_AddNumberToObject(o, "optimal_goodput", a->opt_goodput);
	if (a->have_current) {
		cJSON_AddNumberToObject(o, "interval_steps", (double)in->interval_steps);
		cJSON_AddNumberToObject(o, "interval_s", a->cur_interval_s);
		cJSON_AddNumberToObject(o, "waste_checkpoint", a->cur_waste_ckpt);
		cJSON_AddNumberToObject(o, "waste_rework", a->cur_waste_rework);
		cJSON_AddNumberToObject(o, "expected_goodput", a->cur_goodput);
	} else {
		cJSON_AddNullToObject(o, "interval_steps");
		cJSON_AddNullToObject(o, "expected_goodput");
	}
	cJSON_AddBoolToObject(o, "model_holds", a->model_holds);
	return o;
}

static int usage(const char *fmt, const char *arg)
{
	fprintf(stderr, "spotlaunch advise: ");
	fprintf(stderr, fmt, arg);
	fprintf(stderr, "\nTry 'spotlaunch advise --help'.\n");
	return EXIT_USAGE;
}

enum { A_WRITE = 256, A_MTBF_H, A_RATE, A_NODES, A_STEP, A_INTERVAL, A_RESTART, A_JSON };

static const struct option advise_opts[] = {
	{"write-s", required_argument, NULL, A_WRITE},
	{"mtbf-hours", required_argument, NULL, A_MTBF_H},
	{"rate-per-node-hour", required_argument, NULL, A_RATE},
	{"nodes", required_argument, NULL, A_NODES},
	{"step-s", required_argument, NULL, A_STEP},
	{"interval-steps", required_argument, NULL, A_INTERVAL},
	{"restart-s", required_argument, NULL, A_RESTART},
	{"json", no_argument, NULL, A_JSON},
	{"help", no_argument, NULL, 'h'},
	{NULL, 0, NULL, 0},
};

/* A positive number option (lo < value <= hi). */
static bool positive(const char *arg, double hi, double *out)
{
	return parse_seconds(arg, 0, hi, out) && *out > 0;
}

int advise_main(int argc, char **argv)
{
	advice_in in = {.write_s = -1, .mtbf_s = -1, .restart_s = -1, .step_s = -1, .interval_steps = -1,
			.rate_per_node_hour = -1, .nodes = -1};
	double mtbf_h = -1;
	long k;
	bool json = false;
	int c;
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":h", advise_opts, NULL)) != -1) {
		switch (c) {
		case A_WRITE:
			if (!positive(optarg, 1e9, &in.write_s))
				return usage("--write-s needs seconds > 0, not '%s'", optarg);
			break;
		case A_MTBF_H:
			if (!positive(optarg, 1e9, &mtbf_h))
				return usage("--mtbf-hours needs hours > 0, not '%s'", optarg);
			break;
		case A_RATE:
			if (!positive(optarg, 1e9, &in.rate_per_node_hour))
				return usage("--rate-per-node-hour needs a rate > 0, not '%s'", optarg);
			break;
		case A_NODES:
			if (!positive(optarg, 1e9, &in.nodes))
				return usage("--nodes needs a number > 0, not '%s'", optarg);
			break;
		case A_STEP:
			if (!positive(optarg, 1e9, &in.step_s))
				return usage("--step-s needs seconds > 0, not '%s'", optarg);
			break;
		case A_INTERVAL:
			if (!parse_long(optarg, 1, 1000000000000L, &k))
				return usage("--interval-steps needs a whole number >= 1, not '%s'", optarg);
			in.interval_steps = k;
			break;
		case A_RESTART:
			if (!parse_seconds(optarg, 0, 1e9, &in.restart_s))
				return usage("--restart-s needs seconds >= 0, not '%s'", optarg);
			break;
		case A_JSON: json = true; break;
		case 'h': fputs(advise_usage, stdout); return 0;
		case ':': return usage("option %s needs a value", argv[optind - 1]);
		default: return usage("unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind < argc)
		return usage("unexpected argument '%s'", argv[optind]);
	if (in.write_s <= 0)
		return usage("%s", "--write-s D is required");
	bool by_rate = in.rate_per_node_hour > 0 || in.nodes > 0;
	if ((mtbf_h > 0) == by_rate)
		return usage("%s", "give either --mtbf-hours M or --rate-per-node-hour R with --nodes N");
	if (by_rate && !(in.rate_per_node_hour > 0 && in.nodes > 0))
		return usage("%s", "--rate-per-node-hour and --nodes go together");
	if (in.interval_steps > 0 && in.step_s <= 0)
		return usage("%s", "--interval-steps needs --step-s (the time of one step)");
	in.mtbf_s = by_rate ? 3600.0 / (in.rate_per_node_hour * in.nodes) : mtbf_h * 3600.0;
	advice a;
	advice_compute(&in, &a);
	if (json) {
		cJSON *o = advice_to_json(&in, &a);
		char *text = o ? cJSON_PrintUnformatted(o) : NULL;
		if (!text) {
			cJSON_Delete(o);
			fprintf(stderr, "spotlaunch advise: out of memory\n");
			return EXIT_OSERR;
		}
		printf("%s\n", text);
		free(text);
		cJSON_Delete(o);
	} else {
		advice_print_text(&in, &a, stdout);
	}
	return 0;
}

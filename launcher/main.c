/*
 * main.c - the spotlaunch command line: `run` supervises a training run on a
 * changing fleet, `status` accounts for a run directory; `report` (report.c),
 * `sweep` (sweep.c) and `advise` (advice.c) parse their own options. Options are parsed
 * with getopt_long; everything after "--" is the worker's argv, passed to
 * mpirun as separate arguments (no shell anywhere, invariant 7).
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "account.h"
#include "advice.h"
#include "contract.h"
#include "report.h"
#include "supervise.h"
#include "sweep.h"
#include "util.h"

static const char usage_text[] =
	"usage: spotlaunch run (--hostfile FILE | --discover CMD) [--min-np N] [--max-np M] [OPTIONS]\n"
	"                     -- spottrain train ARGS...\n"
	"       spotlaunch status RUN_DIR [--json]\n"
	"       spotlaunch report RUN_DIR [--spot-price P --ondemand-price P] [--out FILE.png] [OPTIONS]\n"
	"       spotlaunch sweep --np 1,2,4,8 [--hostfile FILE] [--run-dir DIR] [--mode strong|weak] [OPTIONS]\n"
	"                     -- spottrain bench ARGS...\n"
	"       spotlaunch advise --write-s D (--mtbf-hours M | --rate-per-node-hour R --nodes N)\n"
	"                     [--interval-steps K --step-s S] [--restart-s R] [--json]\n"
	"       spotlaunch --help | --version   (spotlaunch COMMAND --help: the options of report, sweep, advise)\n"
	"\n"
	"run: start mpirun on the hosts of the fleet, watch it, and re-form the world when spot nodes\n"
	"are interrupted, lost, replaced or added, resuming from the newest checkpoint each time.\n"
	"\n"
	"discovery (one of):\n"
	"  --hostfile FILE          an Open MPI hostfile ('host slots=N' lines) kept current by an\n"
	"                           autoscaler; re-read when it changes\n"
	"  --discover CMD           a command printing 'host[:slots]' lines, run every second; CMD is\n"
	"                           split at blanks and run without a shell\n"
	"  --discover-timeout S     kill the discovery command after S seconds (10)\n"
	"world:\n"
	"  --min-np N               fewest ranks to train with (1)\n"
	"  --max-np M               most ranks (no limit)\n"
	"  --slots-per-host K       ranks on a host that names no slot count (1)\n"
	"  --run-dir DIR            run directory (default: the worker's --run-dir); given to the workers\n"
	"supervision:\n"
	"  --max-failures N         failed generations tolerated (10); planned stops do not count\n"
	"  --wait-timeout S         wait this long for --min-np usable slots, then exit 69 (300)\n"
	"  --start-timeout S        launch -> first training step, else the world is killed (600; 0 off)\n"
	"  --progress-timeout S     no new step for S seconds: frozen or partitioned, killed (600; 0 off)\n"
	"  --stop-timeout S         an agreed stop (SIGUSR1) must end within S seconds (300)\n"
	"  --kill-grace S           SIGTERM -> SIGKILL to mpirun (10)\n"
	"  --backoff S              delay after a failure, doubling per failure in a row (1)\n"
	"  --backoff-max S          longest delay (60)\n"
	"  --quarantine S           first cooldown of a host in repeated failed generations; doubles (30)\n"
	"  --quarantine-strikes N   failed generations in a row, each naming the host, before it is\n"
	"                           quarantined (2)\n"
	"  --probe-timeout S        after a failure mpirun does not explain (a hang), run `true` on each\n"
	"                           host through mpirun; a host failing within S s is quarantined (15; 0 off)\n"
	"mpirun:\n"
	"  --mpirun PATH            the mpirun program (mpirun)\n"
	"  --mpirun-arg ARG         one extra mpirun argument (repeat for each: --mpirun-arg --mca\n"
	"                           --mpirun-arg btl --mpirun-arg self,tcp)\n"
	"  -q, --quiet              do not copy mpirun's output (RUN/launcher/gen-NNNN.log) to stderr\n"
	"\n"
	"status: generations, world size over time, interruptions, steps lost, recovery times and\n"
	"goodput of a run, from RUN_DIR/events.jsonl and metrics.jsonl (--json: one JSON object).\n"
	"\n"
	"report: the same accounting plus report.png (loss and test accuracy, steps and world size over wall\n"
	"time, every interruption marked), the time lost per incident, the cost on spot against on-demand\n"
	"machines (prices per node-hour from the command line or RUN_DIR/launcher/prices.json), and advice\n"
	"on the checkpoint interval. sweep: the benchmark at each world size: sweep.csv, sweep.json,\n"
	"sweep.png. advise: the Young/Daly checkpoint interval T* = sqrt(2 x D x M) and the expected goodput.\n"
	"report and sweep exit 83 when gnuplot is missing or fails (all else is written).\n"
	"\n"
	"signals: SIGTERM, SIGINT or SIGHUP make the workers stop at an agreed step with a checkpoint\n"
	"(SIGUSR1 through mpirun), then spotlaunch exits 75; a second signal terminates them now.\n"
	"Running the same command again continues the run (a still running mpirun is adopted).\n"
	"\n"
	"exit codes: 0 training finished; 75 stopped on a signal, resumable; 64 usage; 65, 66 the\n"
	"workers' bad data or missing input (not retried); 69 fewer than --min-np slots for\n"
	"--wait-timeout; 71 the OS refused (memory); 73 another spotlaunch supervises the run directory;\n"
	"74 I/O error in the run directory; 80 more failed generations than --max-failures; 81 mpirun\n"
	"could not be started. (README.md \"Exit codes\" has the whole table.)\n";

static int usage_error(const char *fmt, const char *arg)
{
	fprintf(stderr, "spotlaunch: ");
	fprintf(stderr, fmt, arg);
	fprintf(stderr, "\nTry 'spotlaunch --help'.\n");
	return EXIT_USAGE;
}

enum {
	OPT_HOSTFILE = 256, OPT_DISCOVER, OPT_DISCOVER_TIMEOUT, OPT_MIN_NP, OPT_MAX_NP, OPT_SLOTS, OPT_RUN_DIR,
	OPT_MAX_FAILURES, OPT_WAIT_TIMEOUT, OPT_START_TIMEOUT, OPT_PROGRESS_TIMEOUT, OPT_STOP_TIMEOUT,
	OPT_KILL_GRACE, OPT_BACKOFF, OPT_BACKOFF_MAX, OPT_QUARANTINE, OPT_QUARANTINE_STRIKES, OPT_MPIRUN,
	OPT_MPIRUN_ARG, OPT_PROBE_TIMEOUT,
};

static const struct option run_opts_long[] = {
	{"hostfile", required_argument, NULL, OPT_HOSTFILE},
	{"discover", required_argument, NULL, OPT_DISCOVER},
	{"discover-timeout", required_argument, NULL, OPT_DISCOVER_TIMEOUT},
	{"min-np", required_argument, NULL, OPT_MIN_NP},
	{"max-np", required_argument, NULL, OPT_MAX_NP},
	{"slots-per-host", required_argument, NULL, OPT_SLOTS},
	{"run-dir", required_argument, NULL, OPT_RUN_DIR},
	{"max-failures", required_argument, NULL, OPT_MAX_FAILURES},
	{"wait-timeout", required_argument, NULL, OPT_WAIT_TIMEOUT},
	{"start-timeout", required_argument, NULL, OPT_START_TIMEOUT},
	{"progress-timeout", required_argument, NULL, OPT_PROGRESS_TIMEOUT},
	{"stop-timeout", required_argument, NULL, OPT_STOP_TIMEOUT},
	{"kill-grace", required_argument, NULL, OPT_KILL_GRACE},
	{"backoff", required_argument, NULL, OPT_BACKOFF},
	{"backoff-max", required_argument, NULL, OPT_BACKOFF_MAX},
	{"quarantine", required_argument, NULL, OPT_QUARANTINE},
	{"quarantine-strikes", required_argument, NULL, OPT_QUARANTINE_STRIKES},
	{"probe-timeout", required_argument, NULL, OPT_PROBE_TIMEOUT},
	{"mpirun", required_argument, NULL, OPT_MPIRUN},
	{"mpirun-arg", required_argument, NULL, OPT_MPIRUN_ARG},
	{"quiet", no_argument, NULL, 'q'},
	{"help", no_argument, NULL, 'h'},
	{NULL, 0, NULL, 0},
};

/* A number option: seconds (lo..hi) into *out. */
static int seconds_opt(const char *name, const char *arg, double lo, double hi, double *out)
{
	if (parse_seconds(arg, lo, hi, out))
		return 0;
	fprintf(stderr, "spotlaunch: %s needs seconds from %g to %g, not '%s'\nTry 'spotlaunch --help'.\n", name,
		lo, hi, arg);
	return EXIT_USAGE;
}

static int count_opt(const char *name, const char *arg, long lo, long hi, int *out)
{
	long v;
	if (parse_long(arg, lo, hi, &v)) {
		*out = (int)v;
		return 0;
	}
	fprintf(stderr, "spotlaunch: %s needs a whole number from %ld to %ld, not '%s'\nTry 'spotlaunch --help'.\n",
		name, lo, hi, arg);
	return EXIT_USAGE;
}

static int cmd_run(int argc, char **argv)
{
	run_opts o;
	run_opts_defaults(&o);
	o.max_np = 1 << 20;
	char **margs = calloc((size_t)argc + 1, sizeof *margs);
	if (!margs)
		return usage_error("%s", "out of memory");
	int rc = 0, c;
	optind = 1;
	opterr = 0;
	/* '+': stop at the first non-option (the worker's program when "--" is left out) */
	while (!rc && (c = getopt_long(argc, argv, "+:qh", run_opts_long, NULL)) != -1) {
		switch (c) {
		case OPT_HOSTFILE: o.hostfile = optarg; break;
		case OPT_DISCOVER: o.discover_cmd = optarg; break;
		case OPT_DISCOVER_TIMEOUT: rc = seconds_opt("--discover-timeout", optarg, 0.1, 3600, &o.discover_timeout_s); break;
		case OPT_MIN_NP: rc = count_opt("--min-np", optarg, 1, 1 << 20, &o.min_np); break;
		case OPT_MAX_NP: rc = count_opt("--max-np", optarg, 1, 1 << 20, &o.max_np); break;
		case OPT_SLOTS: rc = count_opt("--slots-per-host", optarg, 1, 4096, &o.slots_per_host); break;
		case OPT_RUN_DIR: o.run_dir = optarg; break;
		case OPT_MAX_FAILURES: rc = count_opt("--max-failures", optarg, 0, 1000000, &o.max_failures); break;
		case OPT_WAIT_TIMEOUT: rc = seconds_opt("--wait-timeout", optarg, 0, 1e7, &o.wait_timeout_s); break;
		case OPT_START_TIMEOUT: rc = seconds_opt("--start-timeout", optarg, 0, 1e7, &o.start_timeout_s); break;
		case OPT_PROGRESS_TIMEOUT: rc = seconds_opt("--progress-timeout", optarg, 0, 1e7, &o.progress_timeout_s); break;
		case OPT_STOP_TIMEOUT: rc = seconds_opt("--stop-timeout", optarg, 0, 1e7, &o.stop_timeout_s); break;
		case OPT_KILL_GRACE: rc = seconds_opt("--kill-grace", optarg, 0, 3600, &o.kill_grace_s); break;
		case OPT_BACKOFF: rc = seconds_opt("--backoff", optarg, 0, 3600, &o.backoff_s); break;
		case OPT_BACKOFF_MAX: rc = seconds_opt("--backoff-max", optarg, 0, 86400, &o.backoff_max_s); break;
		case OPT_QUARANTINE: rc = seconds_opt("--quarantine", optarg, 0, 1e7, &o.quarantine.base_s); break;
		case OPT_QUARANTINE_STRIKES: rc = count_opt("--quarantine-strikes", optarg, 1, 1000, &o.quarantine.strikes); break;
		case OPT_PROBE_TIMEOUT: rc = seconds_opt("--probe-timeout", optarg, 0, 3600, &o.probe_timeout_s); break;
		case OPT_MPIRUN: o.mpirun = optarg; break;
		case OPT_MPIRUN_ARG: margs[o.n_mpirun_args++] = optarg; break;
		case 'q': o.quiet = true; break;
		case 'h': fputs(usage_text, stdout); free(margs); return 0;
		case ':': rc = usage_error("option %s needs a value", argv[optind - 1]); break;
		default: rc = usage_error("unknown option '%s'", argv[optind - 1]); break;
		}
	}
	if (!rc && !o.hostfile == !o.discover_cmd)
		rc = usage_error("%s", "give exactly one of --hostfile FILE and --discover CMD");
	if (!rc && o.min_np > o.max_np)
		rc = usage_error("%s", "--min-np is larger than --max-np");
	if (!rc && optind >= argc)
		rc = usage_error("%s", "no worker command: spotlaunch run ... -- spottrain train --config FILE ...");
	if (!rc && o.quarantine.max_s < o.quarantine.base_s)
		o.quarantine.max_s = o.quarantine.base_s;
	if (!rc) {
		o.mpirun_args = margs;
		o.worker = argv + optind;
		o.n_worker = argc - optind;
		rc = supervise_run(&o);
	}
	free(margs);
	return rc;
}

static int cmd_status(int argc, char **argv)
{
	const char *dir = NULL;
	bool json = false;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0)
			json = true;
		else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
			fputs(usage_text, stdout);
			return 0;
		} else if (argv[i][0] == '-' || dir)
			return usage_error("usage: spotlaunch status RUN_DIR [--json] (not '%s')", argv[i]);
		else
			dir = argv[i];
	}
	if (!dir)
		return usage_error("%s", "usage: spotlaunch status RUN_DIR [--json]");
	run_account a;
	int e = account_load(dir, &a);
	if (e) {
		fprintf(stderr, "spotlaunch: cannot read %s/%s: %s\n", dir, RUN_EVENTS_FILE, strerror(e));
		return e == ENOENT ? EXIT_NOINPUT : EXIT_IOERR;
	}
	if (json) {
		cJSON *o = account_to_json(&a, dir);
		char *text = o ? cJSON_PrintUnformatted(o) : NULL;
		if (text)
			printf("%s\n", text);
		free(text);
		cJSON_Delete(o);
	} else {
		account_print_text(&a, dir, stdout);
	}
	account_free(&a);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return usage_error("%s", "no command given (run, status, report, sweep, advise)");
	const char *cmd = argv[1];
	if (strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "help") == 0) {
		fputs(usage_text, stdout);
		return 0;
	}
	if (strcmp(cmd, "-V") == 0 || strcmp(cmd, "--version") == 0) {
		printf("spotlaunch %s\n", SPOTTRAIN_VERSION);
		return 0;
	}
	if (strcmp(cmd, "run") == 0)
		return cmd_run(argc - 1, argv + 1);
	if (strcmp(cmd, "status") == 0)
		return cmd_status(argc - 1, argv + 1);
	if (strcmp(cmd, "report") == 0)
		return report_main(argc - 1, argv + 1);
	if (strcmp(cmd, "sweep") == 0)
		return sweep_main(argc - 1, argv + 1);
	if (strcmp(cmd, "advise") == 0)
		return advise_main(argc - 1, argv + 1);
	return usage_error("unknown command '%s' (run, status, report, sweep, advise)", cmd);
}

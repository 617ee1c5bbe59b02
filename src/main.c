/*
 * main.c - the spottrain command line. It parses arguments (before MPI is
 * started, so that usage errors exit 64 without a world) into a run_args
 * (config.h) and calls the command (train.h: train.c, eval.c, bench.c).
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ckpt.h"
#include "contract.h"
#include "log.h"
#include "train.h"

static const char usage_text[] =
	"usage: spottrain COMMAND [OPTIONS]\n"
	"\n"
	"Data-parallel CNN training for cloud spot fleets. Run under mpirun for several ranks.\n"
	"\n"
	"commands:\n"
	"  train   --config FILE [--set section.key=value ...] [--data-dir DIR] [--run-dir DIR]\n"
	"          [--epochs N] [--max-steps N] [--threads N] [--seed N] [--device auto|cpu|cuda]\n"
	"          [--init-from CKPT] [--verbose]\n"
	"          train, resuming from the newest valid checkpoint in RUN_DIR/checkpoints\n"
	"  eval    --ckpt FILE [--config FILE] [--data-dir DIR] [--threads N] [--device ...]\n"
	"          test accuracy of a checkpoint (its own stored config is used unless --config)\n"
	"  inspect FILE\n"
	"          print a checkpoint's attributes and tensors and validate it\n"
	"  bench   --config FILE [--steps N] [--warmup N] [--threads N] [--device ...] [--set ...]\n"
	"          [--data [--data-dir DIR]]\n"
	"          time training steps on synthetic data: per-phase times, images/s, GFLOP/s\n"
	"          next to this machine's sgemm rate; --data: on the training set's epoch order\n"
	"          instead (the data's read and input time in data_ms)\n"
	"\n"
	"options:\n"
	"  -h, --help       this text\n"
	"  -V, --version    print the version\n"
	"\n"
	"The last line on stdout of train, eval and bench is one JSON object.\n"
	"exit codes: 0 done, 75 stopped at an agreed step with a checkpoint (notice, SIGTERM,\n"
	"rescale), 64 usage or config error, 65 bad data or checkpoint, 66 missing input,\n"
	"74 I/O error (volume full, write failed).\n";

static int usage_error(const char *fmt, const char *arg)
{
	fprintf(stderr, "spottrain: ");
	fprintf(stderr, fmt, arg);
	fprintf(stderr, "\nTry 'spottrain --help'.\n");
	return EXIT_USAGE;
}

static bool parse_long(const char *s, long lo, long hi, long *out)
{
	char *end;
	long v = strtol(s, &end, 10);
	if (end == s || *end || v < lo || v > hi)
		return false;
	*out = v;
	return true;
}

enum { OPT_SET = 256, OPT_DATA_DIR, OPT_RUN_DIR, OPT_EPOCHS, OPT_MAX_STEPS, OPT_THREADS, OPT_SEED,
       OPT_DEVICE, OPT_INIT_FROM, OPT_CKPT, OPT_STEPS, OPT_WARMUP, OPT_DATA };

static const struct option long_opts[] = {
	{"config", required_argument, NULL, 'c'},
	{"set", required_argument, NULL, OPT_SET},
	{"data-dir", required_argument, NULL, OPT_DATA_DIR},
	{"run-dir", required_argument, NULL, OPT_RUN_DIR},
	{"epochs", required_argument, NULL, OPT_EPOCHS},
	{"max-steps", required_argument, NULL, OPT_MAX_STEPS},
	{"threads", required_argument, NULL, OPT_THREADS},
	{"seed", required_argument, NULL, OPT_SEED},
	{"device", required_argument, NULL, OPT_DEVICE},
	{"init-from", required_argument, NULL, OPT_INIT_FROM},
	{"ckpt", required_argument, NULL, OPT_CKPT},
	{"steps", required_argument, NULL, OPT_STEPS},
	{"warmup", required_argument, NULL, OPT_WARMUP},
	{"data", no_argument, NULL, OPT_DATA},
	{"verbose", no_argument, NULL, 'v'},
	{"help", no_argument, NULL, 'h'},
	{NULL, 0, NULL, 0},
};

/* Parse the options of a command (argv[0] is the command). Returns 0, -1 for help, or 64. */
static int parse_options(int argc, char **argv, run_args *a)
{
	long v;
	optind = 1;
	opterr = 0;
	int c;
	while ((c = getopt_long(argc, argv, ":c:vh", long_opts, NULL)) != -1) {
		switch (c) {
		case 'c': a->config_path = optarg; break;
		case OPT_SET:
			if (a->n_sets >= MAX_SETS)
				return usage_error("too many --set options (at most %s)", "64");
			a->sets[a->n_sets++] = optarg;
			break;
		case OPT_DATA_DIR: a->data_dir = optarg; break;
		case OPT_RUN_DIR: a->run_dir = optarg; break;
		case OPT_INIT_FROM: a->init_from = optarg; break;
		case OPT_CKPT: a->ckpt = optarg; break;
		case OPT_EPOCHS:
			if (!parse_long(optarg, 1, 1000000, &a->epochs))
				return usage_error("--epochs needs a number from 1 to 1000000, not '%s'", optarg);
			break;
		case OPT_MAX_STEPS:
			if (!parse_long(optarg, 1, 1000000000000L, &a->max_steps))
				return usage_error("--max-steps needs a positive number, not '%s'", optarg);
			break;
		case OPT_THREADS:
			if (!parse_long(optarg, 0, 4096, &v))
				return usage_error("--threads needs a number from 0 (all cores) to 4096, not '%s'", optarg);
			a->threads = (int)v;
			break;
		case OPT_SEED:
			if (!parse_long(optarg, 0, 4294967295L, &a->seed))
				return usage_error("--seed needs a number from 0 to 4294967295, not '%s'", optarg);
			break;
		case OPT_STEPS:
			if (!parse_long(optarg, 1, 1000000, &v))
				return usage_error("--steps needs a number from 1 to 1000000, not '%s'", optarg);
			a->steps = (int)v;
			break;
		case OPT_WARMUP:
			if (!parse_long(optarg, 0, 1000000, &v))
				return usage_error("--warmup needs a number from 0 to 1000000, not '%s'", optarg);
			a->warmup = (int)v;
			break;
		case OPT_DEVICE:
			a->device_given = true;
			if (strcmp(optarg, "auto") == 0)
				a->device = DEVICE_AUTO;
			else if (strcmp(optarg, "cpu") == 0)
				a->device = DEVICE_CPU;
			else if (strcmp(optarg, "cuda") == 0)
				a->device = DEVICE_CUDA;
			else
				return usage_error("--device must be auto, cpu or cuda, not '%s'", optarg);
			break;
		case OPT_DATA: a->bench_data = true; break;
		case 'v': a->verbose = true; break;
		case 'h': return -1;
		case ':': return usage_error("option %s needs a value", argv[optind - 1]);
		default: return usage_error("unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind < argc)
		return usage_error("unexpected argument '%s'", argv[optind]);
	return 0;
}

int main(int argc, char **argv)
{
	log_never_block_under_mpirun();
	if (argc < 2)
		return usage_error("%s", "no command given (train, eval, inspect, bench)");
	const char *cmd = argv[1];
	if (strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "help") == 0) {
		fputs(usage_text, stdout);
		return 0;
	}
	if (strcmp(cmd, "-V") == 0 || strcmp(cmd, "--version") == 0) {
		printf("spottrain %s\n", SPOTTRAIN_VERSION);
		return 0;
	}
	if (strcmp(cmd, "inspect") == 0) {
		if (argc != 3 || argv[2][0] == '-')
			return usage_error("%s", "usage: spottrain inspect FILE");
		return ckpt_inspect(argv[2], stdout);
	}
	run_args a = {.threads = -1, .seed = -1, .steps = 50, .warmup = 5};
	int rc = parse_options(argc - 1, argv + 1, &a);
	if (rc == -1) {
		fputs(usage_text, stdout);
		return 0;
	}
	if (rc)
		return rc;
	if (strcmp(cmd, "train") == 0) {
		if (!a.config_path)
			return usage_error("%s", "train needs --config FILE");
		return train_main(&argc, &argv, &a);
	}
	if (strcmp(cmd, "eval") == 0) {
		if (!a.ckpt)
			return usage_error("%s", "eval needs --ckpt FILE");
		return eval_main(&argc, &argv, &a);
	}
	if (strcmp(cmd, "bench") == 0) {
		if (!a.config_path)
			return usage_error("%s", "bench needs --config FILE");
		return bench_main(&argc, &argv, &a);
	}
	return usage_error("unknown command '%s' (train, eval, inspect, bench)", cmd);
}

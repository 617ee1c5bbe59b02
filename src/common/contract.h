/*
 * contract.h - the contract between the worker (spottrain) and the launcher
 * (spotlaunch): exit codes, event names and the files of a run directory.
 * This is the only worker header the launcher includes; the code they share
 * is src/common (this table, fsutil.h), built as spottrain_common.
 */
#ifndef SPOTTRAIN_CONTRACT_H
#define SPOTTRAIN_CONTRACT_H

#include <stddef.h>

#define SPOTTRAIN_VERSION "0.1.0"

/*
 * Exit codes: ONE table for the worker (spottrain) and the launcher (spotlaunch, its sweep
 * and report), each number with one meaning. sysexits.h values where one fits (DESIGN.md
 * "Exit codes"); the launcher's own outcomes from 80 up. exit_codes[] (src/common/
 * exit_codes.c) holds, for each, its meaning, who returns it and what the launcher does when
 * mpirun ends with it; README.md's table is checked against it (unit.test_contract).
 */
enum {
	EXIT_OK = 0,              /* finished */
	EXIT_USAGE = 64,          /* bad command line or config */
	EXIT_DATAERR = 65,        /* bad input data or unusable checkpoint */
	EXIT_NOINPUT = 66,        /* missing input file */
	EXIT_UNAVAILABLE = 69,    /* launcher: fewer than --min-np usable slots for --wait-timeout */
	EXIT_SOFTWARE = 70,       /* worker: internal error, or a collective timed out */
	EXIT_OSERR = 71,          /* the OS refused something (memory, threads) */
	EXIT_BUSY = 73,           /* launcher: another launcher supervises this run directory */
	EXIT_IOERR = 74,          /* I/O error: volume full, write failed */
	EXIT_TEMPFAIL = 75,       /* stopped at an agreed step after a checkpoint / on a signal */
	EXIT_FAILURE_BUDGET = 80, /* launcher: more failed generations than --max-failures */
	EXIT_NOSTART = 81,        /* launcher, sweep: mpirun could not be started */
	EXIT_BENCH_FAILED = 82,   /* sweep: a benchmark run failed, timed out or printed no JSON */
	EXIT_NO_PICTURE = 83,     /* sweep, report: gnuplot missing or failed; the data is written */
};

/* What the launcher does when mpirun (the workers) ends with a code. */
typedef enum {
	EXIT_REACT_DONE,   /* the run is finished: exit 0 */
	EXIT_REACT_RESUME, /* re-form at once and resume; not a failure */
	EXIT_REACT_STOP,   /* stop and exit with the same code; not retried */
	EXIT_REACT_RETRY,  /* re-form from the newest checkpoint after a backoff; a failure */
} exit_reaction;

/* One row of the table. */
typedef struct exit_code_info {
	int code;
	const char *name;        /* the symbol above, "EXIT_USAGE" */
	const char *meaning;
	const char *returned_by; /* "worker", "launcher", "sweep", "report", comma-separated */
	exit_reaction reaction;  /* when mpirun ends with it (codes the workers never return: RETRY) */
} exit_code_info;

extern const exit_code_info exit_codes[];
extern const int exit_codes_n;

/* The row of code, or NULL for a code that is not in the table (a crash, a signal). */
const exit_code_info *exit_code_find(int code);
/* The launcher's reaction to mpirun ending with code (RETRY for codes not in the table). */
exit_reaction exit_code_reaction(int code);
/* The reaction in words, as README.md's table says it. */
const char *exit_reaction_text(exit_reaction r);
/* README.md's exit-code table (header and rows, one line each, '\n'-terminated) into buf;
 * returns the length it needs (as snprintf). */
int exit_codes_markdown(char *buf, size_t len);

/* Files and folders inside a run directory. */
#define RUN_CONFIG_FILE "config.ini"
#define RUN_CKPT_DIR "checkpoints"
#define RUN_METRICS_FILE "metrics.jsonl"
#define RUN_EVENTS_FILE "events.jsonl"
#define RUN_LAUNCHER_DIR "launcher"
#define RUN_STATE_FILE "launcher/state.json"
#define RUN_FINAL_FILE "final.h5"
#define RUN_HEARTBEAT_FILE "heartbeat" /* rank 0 rewrites it every step (and during evaluation) */

/* Environment: the launcher's generation, and a per-node metadata service URL
 * (overrides spot.metadata_url; the fleet simulator gives each fake node its own mock). */
#define ENV_GENERATION "SPOTLAUNCH_GENERATION"
#define ENV_METADATA_URL "SPOTTRAIN_METADATA_URL"

/*
 * events.jsonl: one JSON object per line, always with "event" (one of the
 * names below), "time" (seconds since the epoch, double), and where known
 * "step", "generation", "world_size", "node", "rank".
 */
#define EV_START "start"             /* worker world started: world_size, step */
#define EV_RESUME "resume"           /* resumed from checkpoint: path, step */
#define EV_CHECKPOINT "checkpoint"   /* a checkpoint is durable: path, step, write_s */
#define EV_NOTICE "notice"           /* node, provider, action, notice_time */
#define EV_REBALANCE "rebalance"     /* early warning: node, provider */
#define EV_STOP "stop"               /* agreed stop: step, reason, path, notice_to_durable_s */
#define EV_EXIT "exit"               /* worker exit: code, step */
#define EV_EPOCH "epoch"             /* epoch end: epoch, step, test_accuracy */
#define EV_GENERATION "generation"   /* launcher: generation, np, hosts */
#define EV_RELAUNCH "relaunch"       /* launcher: reason, exit_code */
#define EV_LAUNCHER_EXIT "launcher_exit"
#define EV_FIRST_STEP "first_step"     /* launcher: a generation's first step seen in the heartbeat */

/* Stop reasons recorded in EV_STOP. */
#define STOP_NOTICE "notice"
#define STOP_SIGTERM "sigterm"
#define STOP_SIGINT "sigint"
#define STOP_RESCALE "rescale"
#define STOP_MAX_STEPS "max_steps"

#endif

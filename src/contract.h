/*
 * contract.h - the contract between the worker (spottrain) and the launcher
 * (spotlaunch): exit codes, event names and the files of a run directory.
 * This is the only header the launcher shares with the worker.
 */
#ifndef SPOTTRAIN_CONTRACT_H
#define SPOTTRAIN_CONTRACT_H

#define SPOTTRAIN_VERSION "0.1.0"

/* Exit codes (sysexits.h values; see DESIGN.md). */
enum {
	EXIT_OK = 0,        /* training finished */
	EXIT_USAGE = 64,    /* bad command line or config */
	EXIT_DATAERR = 65,  /* bad input data or unusable checkpoint */
	EXIT_NOINPUT = 66,  /* missing input file */
	EXIT_SOFTWARE = 70, /* internal error (a bug) */
	EXIT_OSERR = 71,    /* the OS refused something (memory, threads) */
	EXIT_IOERR = 74,    /* I/O error: volume full, write failed */
	EXIT_TEMPFAIL = 75, /* stopped at an agreed step after a checkpoint */
};

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

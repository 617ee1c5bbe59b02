/*
 * supervise.h - `spotlaunch run`: form a world from the hosts discovered now,
 * start mpirun for it, watch it (exit, heartbeat progress, notices, discovery
 * changes), and re-form it until training finishes. See DESIGN.md and the
 * comment at the top of supervise.c for the policy.
 */
#ifndef SPOTLAUNCH_SUPERVISE_H
#define SPOTLAUNCH_SUPERVISE_H

#include <stdbool.h>

#include "world.h"

/* Exit codes: the one table of contract.h (EXIT_UNAVAILABLE, EXIT_FAILURE_BUDGET, EXIT_NOSTART,
 * EXIT_BUSY are the launcher's own; what follows a worker's code is its exit_code_reaction). */

typedef struct run_opts {
	const char *hostfile;         /* one of hostfile and discover_cmd */
	const char *discover_cmd;
	double discover_timeout_s;    /* longest run of the discovery command */
	double discover_interval_s;   /* between runs of it */
	int min_np, max_np;
	int slots_per_host;           /* for hosts that name no slot count */
	const char *run_dir;          /* NULL: the worker's --run-dir */
	int max_failures;             /* failed generations tolerated */
	double wait_timeout_s;        /* longest wait for min_np usable slots */
	double start_timeout_s;       /* mpirun start -> first step; 0: no limit */
	double progress_timeout_s;    /* no new step for this long -> frozen; 0: no limit */
	double stop_timeout_s;        /* agreed stop (SIGUSR1) -> give up and kill */
	double kill_grace_s;          /* SIGTERM -> SIGKILL */
	double backoff_s;             /* first delay after a failure; doubles */
	double backoff_max_s;
	quarantine_policy quarantine;
	double probe_timeout_s;       /* health probe of each host after an unexplained failure; 0: none */
	const char *mpirun;
	char *const *mpirun_args;
	int n_mpirun_args;
	char *const *worker;          /* spottrain train ... */
	int n_worker;
	bool quiet;                   /* do not copy mpirun's output to stderr */
} run_opts;

void run_opts_defaults(run_opts *o);

/* Supervise the run until it finishes or cannot go on. Returns the launcher's exit code. */
int supervise_run(const run_opts *o);

#endif

/*
 * account.h - what happened to a run, from its records alone (events.jsonl
 * and metrics.jsonl): generations and their world sizes, interruptions, steps
 * lost per incident (the last step reached minus the step the next generation
 * resumed from), the time from the fault to the next generation's first step
 * split into detection, relaunch wait, start (mpirun, MPI, data, checkpoint
 * load) and first step; and goodput (training time that survived / wall time).
 * `spotlaunch status RUN_DIR [--json]` prints it; the launcher prints it at its end.
 */
#ifndef SPOTLAUNCH_ACCOUNT_H
#define SPOTLAUNCH_ACCOUNT_H

#include <stdbool.h>
#include <stdio.h>

#include <cjson/cJSON.h>

/* One process world: a launcher generation and/or one worker start. */
typedef struct session {
	int generation;
	bool launched;            /* the launcher started it ("generation" event) */
	double t_launch;
	int np;
	char hosts[512];
	bool started;             /* the workers reached training ("start" event) */
	double t_start;
	long start_step;
	bool resumed;             /* "resume" event: loaded a checkpoint */
	double t_resume;
	long resume_step;
	double load_s;            /* checkpoint load time if the worker reported it; < 0 if not */
	double t_first;           /* first step seen (launcher first_step or first metrics line); 0 if none */
	long first_step;
	long last_step;           /* the furthest step any record of it names */
	double t_last;            /* the time of that record */
	bool stopped;             /* agreed stop */
	long stop_step;
	char stop_reason[16];
	double t_stop;
	double notice_to_durable_s; /* < 0 if not given */
	int notices;
	char notice_node[128];
	double t_notice;          /* earliest notice received */
	bool exited;              /* the workers' "exit" event */
	int exit_code;
	double t_exit;
	bool ended;               /* exit or relaunch seen: later events of its number start a new one */
	bool relaunched;          /* the launcher's "relaunch" event */
	int relaunch_code;
	char relaunch_reason[256];
	bool relaunch_failure;
	double t_detect;          /* the launcher saw mpirun end, or decided to kill it */
	double t_ended;           /* mpirun had ended (after the kill, when it was killed) */
	double last_progress;     /* wall time of the last heartbeat the launcher saw; 0 if none */
	int launcher_exit;        /* the launcher exited with this code after it (75: stopped on a signal); -1 */
} session;

typedef struct incident {
	int generation;           /* the generation interrupted */
	int next_generation;      /* the one that continued */
	char kind[24];            /* notice, rescale, sigterm, sigint (the workers' stop reason), launcher_stop
				     (the launcher stopped on a signal and was started again), failure */
	char reason[256];
	int exit_code;
	long last_step, resumed_step, steps_lost;
	int failed_launches;      /* launches in between that never reached training */
	double t_fault;           /* the world's last progress (failure) or its stop (planned) */
	double detect_s;          /* fault -> launcher saw mpirun end or declared it frozen */
	double kill_s;            /* detection -> mpirun ended (killing a frozen world); 0 when it ended by itself */
	double relaunch_s;        /* mpirun ended -> next mpirun started (probes, backoff, waiting for hosts,
				     failed launches) */
	double start_s;           /* mpirun started -> checkpoint loaded (mpirun, MPI init, data, load) */
	double load_s;            /* the checkpoint load within start_s, if the worker reported it; < 0 if not */
	double first_step_s;      /* checkpoint loaded -> first step seen */
	double total_s;           /* fault -> first step of the next generation */
	double notice_to_durable_s; /* notice -> stop checkpoint durable (notices), < 0 otherwise */
} incident;

typedef struct run_account {
	session *s;
	int n, cap;
	incident *inc;
	int n_inc;
	int generations;          /* launcher generations (or worker starts without a launcher) */
	int planned, failures, failed_launches;
	long steps_lost;
	bool finished;
	long final_step;
	long last_step;
	double t_begin, t_end;
	double useful_s, wall_s, goodput;
	bool launcher_exited;
	int launcher_code;
	char launcher_reason[512];
} run_account;

/* Read RUN/events.jsonl (and metrics.jsonl if present). Returns 0 or an errno value (ENOENT: no events). */
int account_load(const char *run_dir, run_account *a);
/* The same from text (for tests); metrics may be NULL. Returns 0 or ENOMEM. */
int account_from_text(const char *events, const char *metrics, run_account *a);
void account_free(run_account *a);

void account_print_text(const run_account *a, const char *run_dir, FILE *f);
cJSON *account_to_json(const run_account *a, const char *run_dir);

#endif

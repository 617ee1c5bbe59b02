/*
 * world.h - forming a world: which discovered hosts are usable (not
 * quarantined, not named by a recent interruption notice), how many ranks
 * (np <= max-np, slots per host), the generation's hostfile and the mpirun
 * argv; and after a generation, which hosts to blame for a failure and when
 * to quarantine them.
 */
#ifndef SPOTLAUNCH_WORLD_H
#define SPOTLAUNCH_WORLD_H

#include <stdbool.h>

#include "hosts.h"
#include "state.h"

/* A host named by an interruption notice stays out this long unless it leaves discovery first. */
#define NOTICE_HOLD_S 600.0

typedef struct world_plan {
	host_list hosts;    /* chosen hosts with the slots used on each */
	int np;             /* world size: min(max_np, usable_slots) */
	int usable_slots;   /* all usable slots discovered now */
} world_plan;

typedef struct quarantine_policy {
	int strikes;        /* failed generations with a host before it is quarantined */
	double base_s;      /* first cooldown; doubles with each quarantine of the host */
	double max_s;       /* longest cooldown */
} quarantine_policy;

void world_plan_init(world_plan *p);
void world_plan_free(world_plan *p);

/* Usable now: not quarantined, no interruption notice within NOTICE_HOLD_S. */
bool world_host_usable(const launcher_state *s, const char *name, double now);

/*
 * Choose the hosts in discovery order, default_slots for hosts that name no
 * slot count, up to max_np ranks (the last host may get fewer slots).
 * Returns 0 or -1 (memory).
 */
int world_plan_make(const host_list *discovered, const launcher_state *s, double now, int default_slots,
		    int max_np, world_plan *out);

/*
 * A host that left discovery is gone: forget its notice (a later host of the
 * same name is a new machine). Returns the number of notices forgotten.
 */
int world_forget_departed(launcher_state *s, const host_list *discovered);

/*
 * After a failed generation: each host to blame (named by mpirun's output or
 * by a failed probe) gets a strike; at policy->strikes it is quarantined.
 * A failure nobody is to blame for gives no strikes (it still counts against
 * --max-failures). Returns how many hosts were quarantined.
 */
int world_record_failure(launcher_state *s, const host_list *blamed, double now, const quarantine_policy *policy);
/* Quarantine a host now for base_s * 2^(its earlier quarantines), at most max_s; says why. */
void world_quarantine(launcher_state *s, const char *name, double now, const quarantine_policy *policy,
		      const char *why);
/* After a generation that ended well (0 or 75): its hosts' strikes are cleared. */
void world_record_good(launcher_state *s, const host_list *world);

/*
 * Hosts of the world that mpirun's output names as failed: a rank that
 * "exited on signal" on it, a "Remote daemon" lost on it, or an rsh/ssh
 * agent that could not "connect to host" / "resolve hostname" it.
 * Returns the number found (0: the failure is not attributed).
 */
int world_blame_from_log(const char *log, const host_list *world, host_list *blamed);

/* Write the generation's hostfile ("host slots=N" lines). Returns 0 or -1 (said why). */
int world_write_hostfile(const char *path, const world_plan *p);

/* Does the worker argv name a run directory (--run-dir DIR or --run-dir=DIR)? value may be NULL. */
bool worker_names_run_dir(char *const *worker, int n_worker, const char **value);

/*
 * The mpirun argv (NULL-terminated, malloc'd; free the array only, the
 * strings are borrowed except the np text kept in np_buf):
 *   MPIRUN --hostfile HOSTFILE -np N [user args] -x SPOTLAUNCH_GENERATION WORKER... [--run-dir DIR]
 * add_run_dir is NULL when the worker names its own.
 */
char **world_mpirun_argv(const char *mpirun, const char *hostfile, char *np_buf, size_t np_len, int np,
			 char *const *user_args, int n_user, char *const *worker, int n_worker,
			 const char *add_run_dir);

#endif

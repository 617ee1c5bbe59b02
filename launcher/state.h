/*
 * state.h - the launcher's state in RUN/launcher/state.json, written
 * atomically whenever it changes, so that a launcher started again on the same
 * run directory continues the run: generation counter, failure budget, host
 * quarantine and notices, and the mpirun of the current generation (pid, start
 * time and environment token, to find it again and never start a second one).
 */
#ifndef SPOTLAUNCH_STATE_H
#define SPOTLAUNCH_STATE_H

#include <stdbool.h>

#include "hosts.h"

#define STATE_VERSION 1
#define STATE_TOKEN_LEN 48

typedef struct host_record {
	char name[HOST_NAME_LEN];
	int strikes;              /* failed generations with this host since its last good one */
	int quarantines;          /* times quarantined so far (the cooldown doubles each time) */
	double quarantined_until; /* wall time the quarantine ends; 0: not quarantined */
	double noticed;           /* wall time an interruption notice named this host; 0: none */
} host_record;

typedef struct launcher_state {
	int generation;            /* the last generation started; 0: none yet */
	int failures;              /* failed generations, counted against --max-failures */
	int consecutive_failures;  /* failures since the last generation that ended well (backoff) */
	double run_started;        /* wall time the first launcher started on this run */
	/* the mpirun of the current generation; pid 0: none running */
	long mpirun_pid;
	unsigned long long mpirun_start_ticks;
	double mpirun_started;     /* wall time it was started */
	char token[STATE_TOKEN_LEN]; /* SPOTLAUNCH_TOKEN in its environment */
	int np;                    /* its world size */
	host_list world;           /* its hosts, with the slots used on each */
	host_record *hosts;        /* what the launcher knows about each host it has seen */
	int n_hosts, cap_hosts;
} launcher_state;

void state_init(launcher_state *s);
void state_free(launcher_state *s);

/* Serialise to JSON text (malloc'd) and back. from_json returns 0 or -1 with a reason in err. */
char *state_to_json(const launcher_state *s);
int state_from_json(const char *text, launcher_state *s, char *err, size_t err_len);

/* Returns 0 (loaded), 1 (no file: a fresh run), -1 (damaged) or -2 (cannot be read: an I/O
 * error, EXIT_IOERR); said why. */
int state_load(const char *path, launcher_state *s);
/* Atomic write (tmp, fsync, rename, fsync dir). Returns 0 or -1 (said why). */
int state_save(const char *path, const launcher_state *s);

/* The record of a host; created (zeroed) when create is set. NULL if absent (or out of memory). */
host_record *state_host(launcher_state *s, const char *name, bool create);

#endif

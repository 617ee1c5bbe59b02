/*
 * discovery.h - where the hosts of the fleet come from: a hostfile kept
 * current by an autoscaler (re-read when its inode, size or mtime changes) or a
 * command printing "host[:slots]" lines, run every interval without a shell
 * (CMD is split at blanks into an argv; invariant 7) and killed after a timeout.
 * A failed read keeps the last good list.
 */
#ifndef SPOTLAUNCH_DISCOVERY_H
#define SPOTLAUNCH_DISCOVERY_H

#include <stdbool.h>
#include <sys/types.h>
#include <time.h>

#include "hosts.h"

typedef struct discovery {
	bool is_command;
	char path[4096];          /* the hostfile */
	dev_t dev;                /* its identity at the last read */
	ino_t ino;
	off_t size;
	struct timespec mtime;
	bool have_stat;
	char **argv;              /* the command (NULL-terminated, points into argv_buf) */
	char *argv_buf;
	double timeout_s;         /* longest run of the command */
	double interval_s;        /* between runs of the command */
	double last_run;          /* monotonic time of the last run */
	char *last_text;          /* the text last parsed (warnings are said once per new text) */
	bool failing;             /* the last read failed (said once until it works again) */
	host_list hosts;          /* the current list */
	bool have;                /* at least one good read */
} discovery;

int discovery_init_hostfile(discovery *d, const char *path);
/* Returns 0, or -1 when the command is empty or too long (said why). */
int discovery_init_command(discovery *d, const char *cmd, double timeout_s, double interval_s);
void discovery_free(discovery *d);

/*
 * Refresh when due (force: now). Sets *changed when the list changed.
 * Returns 0, or -1 when this read failed (the last good list stays).
 */
int discovery_poll(discovery *d, double now_mono, bool force, bool *changed);

/* "hostfile PATH" or "command ARGV0 ..." for messages. */
void discovery_describe(const discovery *d, char *buf, size_t len);

#endif

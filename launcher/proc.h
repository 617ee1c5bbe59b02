/*
 * proc.h - processes: spawning argv vectors (never a shell, invariant 7) in
 * their own process group, running a command with a timeout and capturing its
 * output, and recognising a process again after a launcher restart by its pid
 * and start time (/proc/PID/stat) or by a token in its environment.
 */
#ifndef SPOTLAUNCH_PROC_H
#define SPOTLAUNCH_PROC_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

typedef struct spawn_opts {
	char *const *argv;    /* argv[0] is looked up in PATH when it has no '/' */
	char *const *envp;    /* NULL: this process's environment */
	int stdout_fd;        /* -1: inherit */
	int stderr_fd;        /* -1: inherit */
	bool new_group;       /* setsid() in the child: a new session and group, both with id pid; signals
			       * to -pid reach its group, proc_signal_session() all its descendants that
			       * left the group (Open MPI puts each rsh agent in a group of its own) */
} spawn_opts;

/*
 * Start a process: stdin from /dev/null, default signal dispositions and an
 * empty signal mask (the launcher blocks the signals it waits for).
 * Returns 0 or an errno value (ENOENT: the program was not found).
 */
int proc_spawn(const spawn_opts *o, pid_t *pid);

/*
 * Run argv with stdout captured, waiting at most timeout_s; on timeout its
 * process group is killed. *status is a waitpid status, or -1 on timeout.
 * Returns 0 or an errno value: a spawn failure, or EFBIG as soon as the output
 * passes max_out bytes (the group is killed then, *out stays NULL).
 */
int proc_run_capture(char *const *argv, double timeout_s, size_t max_out, char **out, int *status);

/* The same, with the length of the output (which may hold NUL bytes) in *out_len. */
int proc_run_capture_n(char *const *argv, double timeout_s, size_t max_out, char **out, size_t *out_len,
		       int *status);

/* The start time of a process in clock ticks since boot (/proc/PID/stat field 22); 0 if gone or a zombie. */
unsigned long long proc_start_ticks(pid_t pid);
/* The process exists, is not a zombie, and started at start_ticks. */
bool proc_alive(pid_t pid, unsigned long long start_ticks);
/* The parent pid (0 if unknown). */
pid_t proc_ppid(pid_t pid);

/*
 * The processes whose environment holds the exact string "NAME=VALUE" and whose
 * parent does not: the roots of the process trees started with that variable.
 * Fills up to max pids; returns how many were found.
 */
int proc_find_env_roots(const char *name_value, pid_t *pids, int max);

/* The process's argv holds a, immediately followed by b. */
bool proc_cmdline_has_pair(pid_t pid, const char *a, const char *b);

/* Send sig to the process group pgid (the group of a process spawned with new_group), else to the pid. */
int proc_signal_group(pid_t pgid, int sig);

/*
 * Send sig to every live process of session sid other than this one (the
 * descendants of a process spawned with new_group, whatever their group);
 * returns how many were signalled. Only safe while sid's leader is not yet
 * reaped, or while a member of its session is known to live (a pid that is a
 * session id is never reused).
 */
int proc_signal_session(pid_t sid, int sig);

/* The session id of a process (0 if unknown). */
pid_t proc_session(pid_t pid);

/*
 * SIGKILL what is left of the session led by a process that is not our child
 * (an mpirun adopted after a launcher restart, spawned with new_group) once
 * that leader has ended: its members are found by session id in /proc. The
 * leader is named by pid and start time (proc_start_ticks), so a reused pid
 * is told apart: when another process holds the number, nothing is touched.
 * Only processes started no earlier than the leader are signalled. Returns
 * how many were killed.
 */
int proc_kill_orphan_session(pid_t leader, unsigned long long leader_ticks);

/*
 * If child pid (spawned with new_group) has ended: SIGKILL whatever is left of
 * its session (an rsh agent hung on an unreachable host outlives mpirun),
 * reap it, set *status (a waitpid status, -1 if it was not our child) and
 * return true. Returns false while it runs. The session is killed before the
 * reap (waitid WNOWAIT), so its id cannot meanwhile belong to another process.
 */
bool proc_reap_session(pid_t pid, int *status);

/* "exit 3", "signal 9 (Killed)" for a waitpid status. */
void proc_describe_status(int status, char *buf, size_t len);
/* 0..255 for an exit, 128+N for a signal: the launcher's view of a waitpid status. */
int proc_status_code(int status);

#endif

#define _GNU_SOURCE /* POSIX_SPAWN_SETSID (glibc 2.26) */
#include "proc.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

extern char **environ;

int proc_spawn(const spawn_opts *o, pid_t *pid)
{
	posix_spawnattr_t attr;
	posix_spawn_file_actions_t fa;
	sigset_t none, all;
	int rc = posix_spawnattr_init(&attr);
	if (rc)
		return rc;
	rc = posix_spawn_file_actions_init(&fa);
	if (rc) {
		posix_spawnattr_destroy(&attr);
		return rc;
	}
	sigemptyset(&none);
	sigfillset(&all);
	short flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
	if (o->new_group)
		flags |= POSIX_SPAWN_SETSID; /* a new session, hence also a new group led by the child */
	if (!rc)
		rc = posix_spawnattr_setflags(&attr, flags);
	if (!rc)
		rc = posix_spawnattr_setsigmask(&attr, &none);
	if (!rc)
		rc = posix_spawnattr_setsigdefault(&attr, &all);
	if (!rc)
		rc = posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
	if (!rc && o->stdout_fd >= 0)
		rc = posix_spawn_file_actions_adddup2(&fa, o->stdout_fd, STDOUT_FILENO);
	if (!rc && o->stderr_fd >= 0)
		rc = posix_spawn_file_actions_adddup2(&fa, o->stderr_fd, STDERR_FILENO);
	if (!rc)
		rc = posix_spawnp(pid, o->argv[0], &fa, &attr, o->argv, o->envp ? o->envp : environ);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&attr);
	return rc;
}

int proc_run_capture(char *const *argv, double timeout_s, size_t max_out, char **out, int *status)
{
	size_t len;
	return proc_run_capture_n(argv, timeout_s, max_out, out, &len, status);
}

int proc_run_capture_n(char *const *argv, double timeout_s, size_t max_out, char **out, size_t *out_len,
		       int *status)
{
	*out_len = 0;
	int p[2];
	*out = NULL;
	*status = -1;
	if (pipe(p) != 0)
		return errno;
	fcntl(p[0], F_SETFD, FD_CLOEXEC);
	fcntl(p[1], F_SETFD, FD_CLOEXEC);
	pid_t pid;
	spawn_opts o = {.argv = argv, .stdout_fd = p[1], .stderr_fd = -1, .new_group = true};
	int rc = proc_spawn(&o, &pid);
	close(p[1]);
	if (rc) {
		close(p[0]);
		return rc;
	}
	size_t cap = 4096, n = 0;
	char *buf = malloc(cap + 1);
	bool timed_out = false, oversize = false;
	double deadline = now_mono() + timeout_s;
	for (;;) {
		double left = deadline - now_mono();
		if (left <= 0) {
			timed_out = true;
			break;
		}
		struct pollfd pfd = {p[0], POLLIN, 0};
		int pr = poll(&pfd, 1, (int)(left * 1000) + 1);
		if (pr < 0 && errno == EINTR)
			continue;
		if (pr <= 0)
			continue; /* timeout: re-checked above */
		char tmp[4096];
		ssize_t r = read(p[0], tmp, sizeof tmp);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		if ((size_t)r > max_out - n) {
			oversize = true; /* more than the caller takes: stop it now, not at the timeout */
			break;
		}
		if (buf) {
			size_t take = (size_t)r;
			if (take > max_out - n)
				take = max_out - n;
			if (n + take > cap) {
				size_t ncap = cap;
				while (ncap < n + take)
					ncap *= 2;
				char *nb = realloc(buf, ncap + 1);
				if (!nb) {
					free(buf);
					buf = NULL;
					continue;
				}
				buf = nb;
				cap = ncap;
			}
			memcpy(buf + n, tmp, take);
			n += take;
		}
	}
	close(p[0]);
	/*
	 * Wait for the exit without reaping (waitid WNOWAIT), so the group id cannot
	 * be reused while its leftovers (children of the command) are killed.
	 */
	siginfo_t si;
	for (;;) {
		memset(&si, 0, sizeof si);
		int wr = waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT);
		if (wr == 0 && si.si_pid == pid)
			break;
		if (wr != 0 && errno != EINTR)
			break;
		if (timed_out || oversize || now_mono() >= deadline) {
			timed_out = true;
			break;
		}
		struct timespec ts = {0, 10 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	proc_signal_group(pid, SIGKILL);
	proc_signal_session(pid, SIGKILL); /* children that left its group (an rsh agent) */
	int st = 0;
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	if (oversize) {
		free(buf);
		return EFBIG;
	}
	if (buf)
		buf[n] = 0;
	*out = buf;
	*out_len = buf ? n : 0;
	*status = timed_out ? -1 : st;
	return buf ? 0 : ENOMEM;
}

/* The fields of /proc/PID/stat after the command name: [0] is the state (field 3). */
static int read_stat_fields(pid_t pid, char *buf, size_t len, char **fields, int max)
{
	char path[64];
	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	ssize_t r = read(fd, buf, len - 1);
	close(fd);
	if (r <= 0)
		return 0;
	buf[r] = 0;
	char *p = strrchr(buf, ')');
	if (!p)
		return 0;
	int n = 0;
	char *save = NULL;
	for (char *t = strtok_r(p + 1, " ", &save); t && n < max; t = strtok_r(NULL, " ", &save))
		fields[n++] = t;
	return n;
}

unsigned long long proc_start_ticks(pid_t pid)
{
	char buf[1024];
	char *f[24];
	if (pid <= 0 || read_stat_fields(pid, buf, sizeof buf, f, 24) < 20)
		return 0;
	if (f[0][0] == 'Z' || f[0][0] == 'X')
		return 0;
	return strtoull(f[19], NULL, 10);
}

bool proc_alive(pid_t pid, unsigned long long start_ticks)
{
	return start_ticks != 0 && proc_start_ticks(pid) == start_ticks;
}

/* Field i (0: the state) of /proc/PID/stat after the command name, as a number; 0 if unreadable. */
static long stat_field(pid_t pid, int i)
{
	char buf[1024];
	char *f[4];
	if (i >= 4 || read_stat_fields(pid, buf, sizeof buf, f, 4) < i + 1)
		return 0;
	return atol(f[i]);
}

pid_t proc_ppid(pid_t pid)
{
	return (pid_t)stat_field(pid, 1);
}

static bool environ_has(pid_t pid, const char *name_value)
{
	char path[64];
	snprintf(path, sizeof path, "/proc/%d/environ", (int)pid);
	char *env = NULL;
	size_t len = 0;
	if (read_file(path, 1 << 20, &env, &len) != 0)
		return false;
	bool found = false;
	for (size_t i = 0; i < len && !found; i += strlen(env + i) + 1)
		found = strcmp(env + i, name_value) == 0;
	free(env);
	return found;
}

int proc_find_env_roots(const char *name_value, pid_t *pids, int max)
{
	DIR *d = opendir("/proc");
	if (!d)
		return 0;
	pid_t *set = NULL;
	int n = 0, cap = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		long v;
		if (!parse_long(de->d_name, 1, 1L << 30, &v) || v == (long)getpid())
			continue;
		if (!environ_has((pid_t)v, name_value) || proc_start_ticks((pid_t)v) == 0)
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 16;
			pid_t *ns = realloc(set, (size_t)cap * sizeof *ns);
			if (!ns)
				break;
			set = ns;
		}
		set[n++] = (pid_t)v;
	}
	closedir(d);
	int found = 0;
	for (int i = 0; i < n; i++) {
		pid_t pp = proc_ppid(set[i]);
		bool parent_in = false;
		for (int j = 0; j < n && !parent_in; j++)
			parent_in = set[j] == pp;
		if (!parent_in && found < max)
			pids[found++] = set[i];
	}
	free(set);
	return found;
}

bool proc_cmdline_has_pair(pid_t pid, const char *a, const char *b)
{
	char path[64];
	snprintf(path, sizeof path, "/proc/%d/cmdline", (int)pid);
	char *cmd = NULL;
	size_t len = 0;
	if (read_file(path, 1 << 20, &cmd, &len) != 0)
		return false;
	bool found = false;
	const char *prev = NULL;
	for (size_t i = 0; i < len && !found; i += strlen(cmd + i) + 1) {
		found = prev && strcmp(prev, a) == 0 && strcmp(cmd + i, b) == 0;
		prev = cmd + i;
	}
	free(cmd);
	return found;
}

int proc_signal_group(pid_t pgid, int sig)
{
	if (pgid <= 1)
		return -1;
	if (kill(-pgid, sig) == 0)
		return 0;
	return kill(pgid, sig);
}

/* Send sig to every live process of session sid (not this one) started at min_ticks or later. */
static int signal_session_since(pid_t sid, unsigned long long min_ticks, int sig)
{
	if (sid <= 1)
		return 0;
	DIR *d = opendir("/proc");
	if (!d)
		return 0;
	int n = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		long v;
		char buf[1024];
		char *f[24];
		if (!parse_long(de->d_name, 1, 1L << 30, &v) || v == (long)getpid())
			continue;
		if (read_stat_fields((pid_t)v, buf, sizeof buf, f, 24) < 20 || f[0][0] == 'Z' || f[0][0] == 'X')
			continue;
		if (atol(f[3]) != (long)sid || strtoull(f[19], NULL, 10) < min_ticks)
			continue;
		if (kill((pid_t)v, sig) == 0)
			n++;
	}
	closedir(d);
	return n;
}

int proc_signal_session(pid_t sid, int sig)
{
	return signal_session_since(sid, 0, sig);
}

pid_t proc_session(pid_t pid)
{
	return (pid_t)stat_field(pid, 3);
}

int proc_kill_orphan_session(pid_t leader, unsigned long long leader_ticks)
{
	if (leader <= 1 || leader_ticks == 0)
		return 0;
	int total = 0;
	/* a few passes: a member may fork between the scan and its kill (the shim's sleep loop) */
	for (int pass = 0; pass < 20; pass++) {
		/*
		 * Linux frees a pid number only when no process uses it as pid,
		 * group or session id. So while the leader's number is free or
		 * still held by the leader (a zombie included: same start time),
		 * every process of session `leader` is a member of the leader's
		 * own session. A process with that pid and another start time
		 * means the number was free once, the old session empty then:
		 * whatever now carries that session id is somebody else's.
		 */
		char buf[1024];
		char *f[24];
		if (read_stat_fields(leader, buf, sizeof buf, f, 24) >= 20 &&
		    strtoull(f[19], NULL, 10) != leader_ticks)
			break;
		int n = signal_session_since(leader, leader_ticks, SIGKILL);
		if (n == 0)
			break;
		total += n;
		struct timespec ts = {0, 20 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	return total;
}

bool proc_reap_session(pid_t pid, int *status)
{
	siginfo_t si;
	memset(&si, 0, sizeof si);
	int wr = waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT);
	if (wr != 0 && errno == ECHILD) {
		*status = -1;
		return true;
	}
	if (wr != 0 || si.si_pid != pid)
		return false;
	/* not reaped yet: the session id cannot have been reused by another process */
	proc_signal_session(pid, SIGKILL);
	int st = 0;
	pid_t r;
	while ((r = waitpid(pid, &st, 0)) < 0 && errno == EINTR)
		;
	*status = r == pid ? st : -1;
	return true;
}

void proc_describe_status(int status, char *buf, size_t len)
{
	if (status < 0)
		snprintf(buf, len, "timed out");
	else if (WIFEXITED(status))
		snprintf(buf, len, "exit %d", WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		snprintf(buf, len, "signal %d (%s)", WTERMSIG(status), strsignal(WTERMSIG(status)));
	else
		snprintf(buf, len, "status 0x%x", (unsigned)status);
}

int proc_status_code(int status)
{
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return 255;
}

#include "probe.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "proc.h"
#include "util.h"

extern char **environ;

/* environ without SPOTLAUNCH_* (a probe is not a generation). */
static char **probe_env(void)
{
	size_t n = 0;
	while (environ[n])
		n++;
	char **env = calloc(n + 1, sizeof *env);
	if (!env)
		return NULL;
	size_t k = 0;
	for (size_t i = 0; i < n; i++)
		if (strncmp(environ[i], "SPOTLAUNCH_", 11) != 0)
			env[k++] = environ[i];
	env[k] = NULL;
	return env;
}

static pid_t start_probe(const char *mpirun, char *const *user_args, int n_user, const char *host, const char *dir,
			 char **env)
{
	char hostfile[PATH_MAX], log[PATH_MAX];
	if (!fmt_path(hostfile, sizeof hostfile, "%s/probe-%s.hosts", dir, host) ||
	    !fmt_path(log, sizeof log, "%s/probe-%s.log", dir, host))
		return -1;
	char line[HOST_NAME_LEN + 16];
	int len = snprintf(line, sizeof line, "%s slots=1\n", host);
	if (write_file_atomic(hostfile, line, (size_t)len))
		return -1;
	int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (fd < 0)
		return -1;
	char **argv = calloc((size_t)n_user + 8, sizeof *argv);
	if (!argv) {
		close(fd);
		return -1;
	}
	size_t k = 0;
	argv[k++] = (char *)mpirun;
	argv[k++] = "--hostfile";
	argv[k++] = hostfile;
	argv[k++] = "-np";
	argv[k++] = "1";
	for (int i = 0; i < n_user; i++)
		argv[k++] = user_args[i];
	argv[k++] = "true";
	argv[k] = NULL;
	pid_t pid = -1;
	spawn_opts o = {.argv = argv, .envp = env, .stdout_fd = fd, .stderr_fd = fd, .new_group = true};
	int e = proc_spawn(&o, &pid);
	if (e) {
		say_warn("cannot start a probe of %s: %s", host, strerror(e));
		pid = -1;
	}
	free(argv);
	close(fd);
	return pid;
}

int probe_hosts(const char *mpirun, char *const *user_args, int n_user, const host_list *hosts, const char *dir,
		double timeout_s, bool *failed)
{
	int n = hosts->n;
	pid_t *pids = calloc((size_t)(n ? n : 1), sizeof *pids);
	char **env = probe_env();
	if (!pids || !env) {
		free(pids);
		free(env);
		return -1;
	}
	int started = 0;
	for (int i = 0; i < n; i++) {
		failed[i] = true;
		pids[i] = start_probe(mpirun, user_args, n_user, hosts->v[i].name, dir, env);
		started += pids[i] > 0;
	}
	free(env);
	if (!started) {
		free(pids);
		return -1;
	}
	double deadline = now_mono() + timeout_s;
	int running = started;
	bool termed = false;
	while (running > 0) {
		for (int i = 0; i < n; i++) {
			if (pids[i] <= 0)
				continue;
			int st;
			if (proc_reap_session(pids[i], &st)) { /* with its hung rsh agent, if any */
				failed[i] = !(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
				pids[i] = 0;
				running--;
			}
		}
		double now = now_mono();
		if (running > 0 && now > deadline && !termed) {
			for (int i = 0; i < n; i++)
				if (pids[i] > 0)
					proc_signal_group(pids[i], SIGTERM);
			termed = true;
			deadline = now + 2; /* then SIGKILL */
		} else if (running > 0 && now > deadline) {
			for (int i = 0; i < n; i++)
				if (pids[i] > 0)
					proc_signal_group(pids[i], SIGKILL);
			deadline = now + 3600;
		}
		struct timespec ts = {0, 20 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	free(pids);
	int bad = 0;
	for (int i = 0; i < n; i++)
		bad += failed[i];
	return bad;
}

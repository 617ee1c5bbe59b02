/*
 * guard.c - work that may crash or stall, run in a forked child with a bound (guard.h).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* MAP_ANONYMOUS, strsignal */
#endif

#include "guard.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "contract.h"
#include "log.h"

bool guard_enabled(void)
{
	const char *off = getenv("SPOTTRAIN_H5_GUARD");
	return !(off && !strcmp(off, "0"));
}

double guard_bound_s(uint64_t bytes)
{
	const char *t = getenv("SPOTTRAIN_GUARD_BOUND_S"); /* test-only: a stall seen in seconds */
	double v = t ? strtod(t, NULL) : 0.0;
	return v > 0.0 ? v : 120.0 + (double)bytes / 2e6;
}

pid_t guard_fork(void)
{
	fflush(stdout); /* what the parent buffered is not written twice */
	fflush(stderr);
	pid_t parent = getpid();
	pid_t pid = fork();
	if (pid == 0) {
		/* never outlive the parent (its forking thread: every caller forks from the thread
		 * that lives as long as the process, or waits for the child itself) */
		if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
			_exit(EXIT_OSERR);
		/* a crash ends the child: the parent's handlers (MPI's backtrace, a test framework's
		 * longjmp) must not run on in a copy of the parent */
		static const int fatal[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT};
		for (size_t i = 0; i < sizeof fatal / sizeof fatal[0]; i++)
			signal(fatal[i], SIG_DFL);
	}
	return pid;
}

static void classify(int status, guard_end *end)
{
	end->broken = true;
	end->code = EXIT_DATAERR;
	if (WIFSIGNALED(status)) {
		snprintf(end->how, sizeof end->how, "crashed (signal %d, %s)", WTERMSIG(status),
			 strsignal(WTERMSIG(status)));
		return;
	}
	int rc = WIFEXITED(status) ? WEXITSTATUS(status) : EXIT_SOFTWARE;
	if (rc == 0 || exit_code_find(rc)) { /* a documented code: the child said what and where */
		end->broken = false;
		end->code = rc;
		end->how[0] = '\0';
		return;
	}
	snprintf(end->how, sizeof end->how, "failed (the reader ended with %d, a sanitizer's report or an abort)", rc);
}

int guard_wait(pid_t pid, double bound_s, guard_end *end)
{
	const double t0 = now_mono();
	int status = 0;
	pid_t got;
	/* naps that grow with the time waited: a child done in a millisecond costs about that */
	while ((got = waitpid(pid, &status, WNOHANG)) == 0) {
		double waited = now_mono() - t0;
		if (waited >= bound_s)
			break;
		double nap = waited / 8 < 50e-6 ? 50e-6 : waited / 8 > 0.02 ? 0.02 : waited / 8;
		struct timespec ts = {0, (long)(nap * 1e9)};
		nanosleep(&ts, NULL);
	}
	if (got == 0) {
		guard_stop(pid);
		end->broken = true;
		end->code = EXIT_DATAERR;
		snprintf(end->how, sizeof end->how, "did not finish within %.0f s (stalled)", bound_s);
	} else if (got < 0) {
		end->broken = true;
		end->code = EXIT_DATAERR;
		snprintf(end->how, sizeof end->how, "could not be waited for (%s)", strerror(errno));
	} else {
		classify(status, end);
	}
	return end->code;
}

void guard_stop(pid_t pid)
{
	if (pid <= 0)
		return;
	kill(pid, SIGKILL);
	while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
		;
}

int guard_run(int (*fn)(void *arg), void *arg, double bound_s, guard_end *end)
{
	pid_t pid = guard_fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		int rc = fn(arg);
		fflush(stderr);
		_exit(rc);
	}
	return guard_wait(pid, bound_s, end);
}

void *guard_shared(size_t len)
{
	void *p = mmap(NULL, len ? len : 1, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	return p == MAP_FAILED ? NULL : p;
}

void guard_shared_free(void *p, size_t len)
{
	if (p)
		munmap(p, len ? len : 1);
}

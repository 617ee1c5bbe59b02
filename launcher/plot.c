#include "plot.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "proc.h"
#include "util.h"

#define GNUPLOT_TIMEOUT_S 120
#define TERM_GRACE_S 5

static int open_log(const char *path)
{
	if (!path)
		return -1;
	return open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0644);
}

static void sleep_s(double s)
{
	struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* Wait (without reaping) until pid has exited or deadline (monotonic; 0: none) passes or *stop is set. */
static bool exited_by(pid_t pid, double deadline, volatile sig_atomic_t *stop)
{
	for (;;) {
		siginfo_t si;
		memset(&si, 0, sizeof si);
		int wr = waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT);
		if (wr == 0 && si.si_pid == pid)
			return true;
		if (wr != 0 && errno != EINTR)
			return true; /* not our child any more: nothing to wait for */
		if ((deadline > 0 && now_mono() >= deadline) || (stop && *stop))
			return false;
		sleep_s(0.01);
	}
}

int run_logged(char *const *argv, const char *stdout_path, const char *stderr_path, double timeout_s,
	       volatile sig_atomic_t *stop, int *status)
{
	*status = -1;
	int out = open_log(stdout_path), err = open_log(stderr_path);
	if ((stdout_path && out < 0) || (stderr_path && err < 0)) {
		int e = errno;
		say_error("cannot open %s: %s", out < 0 && stdout_path ? stdout_path : stderr_path, strerror(e));
		if (out >= 0)
			close(out);
		if (err >= 0)
			close(err);
		return e ? e : EIO;
	}
	pid_t pid;
	spawn_opts o = {.argv = argv, .stdout_fd = out, .stderr_fd = err, .new_group = true};
	int rc = proc_spawn(&o, &pid);
	if (out >= 0)
		close(out);
	if (err >= 0)
		close(err);
	if (rc)
		return rc;
	double deadline = timeout_s > 0 ? now_mono() + timeout_s : 0;
	bool ended = exited_by(pid, deadline, stop);
	if (!ended) {
		proc_signal_group(pid, SIGCONT);
		proc_signal_group(pid, SIGTERM);
		exited_by(pid, now_mono() + TERM_GRACE_S, NULL);
	}
	/* the group's leftovers (none normally), before reaping frees the group id */
	proc_signal_group(pid, SIGKILL);
	int st = 0;
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	*status = ended ? st : -1;
	return 0;
}

void gp_quote(FILE *gp, const char *s)
{
	fputc('\'', gp);
	for (; s && *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '\'')
			fputs("''", gp);
		else if (c < 0x20 || c == 0x7f)
			fputc(' ', gp);
		else
			fputc(c, gp);
	}
	fputc('\'', gp);
}

void gp_terminal(FILE *gp, const char *png_path, int w, int h)
{
	fprintf(gp, "# pngcairo where this gnuplot has it (Debian gnuplot-nox does), else the libgd png terminal\n");
	fprintf(gp, "if (strstrt(GPVAL_TERMINALS, \"pngcairo\") > 0) {\n");
	fprintf(gp, "  set terminal pngcairo size %d,%d noenhanced font \"sans,10\" linewidth 1.2\n", w, h);
	fprintf(gp, "} else {\n");
	fprintf(gp, "  set terminal png size %d,%d noenhanced\n", w, h);
	fprintf(gp, "}\n");
	fprintf(gp, "set output ");
	gp_quote(gp, png_path);
	fprintf(gp, "\n");
}

bool abs_path(const char *path, char *out, size_t len)
{
	if (path[0] == '/')
		return fmt_path(out, len, "%s", path);
	char cwd[4096];
	if (!getcwd(cwd, sizeof cwd))
		return false;
	if (strcmp(path, ".") == 0)
		return fmt_path(out, len, "%s", cwd);
	if (strncmp(path, "./", 2) == 0)
		path += 2;
	return fmt_path(out, len, "%s/%s", strcmp(cwd, "/") == 0 ? "" : cwd, path);
}

bool png_size(const char *path, int *w, int *h)
{
	static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
	unsigned char b[24];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	ssize_t r = read(fd, b, sizeof b);
	close(fd);
	if (r != (ssize_t)sizeof b || memcmp(b, sig, 8) != 0 || memcmp(b + 12, "IHDR", 4) != 0)
		return false;
	uint32_t W = (uint32_t)b[16] << 24 | (uint32_t)b[17] << 16 | (uint32_t)b[18] << 8 | b[19];
	uint32_t H = (uint32_t)b[20] << 24 | (uint32_t)b[21] << 16 | (uint32_t)b[22] << 8 | b[23];
	*w = (int)W;
	*h = (int)H;
	return true;
}

/* The last lines of a log file to stderr (gnuplot's own words on what it did not like). */
static void show_tail(const char *path)
{
	char *text = NULL;
	size_t len = 0;
	if (read_file(path, 1 << 20, &text, &len) != 0 || !len) {
		free(text);
		return;
	}
	size_t from = len > 1500 ? len - 1500 : 0;
	fprintf(stderr, "---- %s (end)\n%s%s", path, text + from, text[len - 1] == '\n' ? "" : "\n");
	free(text);
}

plot_result plot_draw(const char *gnuplot, const char *script, const char *png_path, int w, int h,
		      const char *log_path)
{
	const char *prog = gnuplot && *gnuplot ? gnuplot : "gnuplot";
	char *argv[] = {(char *)prog, (char *)script, NULL};
	unlink(png_path); /* a picture from an earlier run must not pass for this one */
	if (log_path) {
		int fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
		if (fd >= 0)
			close(fd);
	}
	int st;
	int rc = run_logged(argv, log_path, log_path, GNUPLOT_TIMEOUT_S, NULL, &st);
	if (rc == ENOENT || rc == EACCES) {
		say_error("cannot draw %s: gnuplot (%s) is not installed (Debian: apt-get install gnuplot-nox); "
			  "the data and %s are written: run 'gnuplot %s' to draw it later",
			  png_path, prog, script, script);
		return PLOT_NO_GNUPLOT;
	}
	if (rc) {
		say_error("cannot start %s: %s; the data and %s are written", prog, strerror(rc), script);
		return PLOT_FAILED;
	}
	if (st != 0) {
		char how[64];
		proc_describe_status(st, how, sizeof how);
		say_error("%s %s failed (%s): no %s; see %s", prog, script, how, png_path, log_path ? log_path : "stderr");
		if (log_path)
			show_tail(log_path);
		return PLOT_FAILED;
	}
	int pw = 0, ph = 0;
	if (!png_size(png_path, &pw, &ph)) {
		say_error("%s %s exited 0 but %s is missing or not a PNG", prog, script, png_path);
		return PLOT_FAILED;
	}
	if (pw != w || ph != h) {
		say_error("%s is %dx%d pixels, expected %dx%d", png_path, pw, ph, w, h);
		return PLOT_FAILED;
	}
	return PLOT_DRAWN;
}

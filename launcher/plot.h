/*
 * plot.h - what `spotlaunch sweep` and `spotlaunch report` share: running a
 * command by posix_spawn with its output in files and a time limit (never a
 * shell, invariant 7), drawing a gnuplot script into a PNG (gnuplot SCRIPT as
 * an argv; its exit status and the PNG's signature and size are checked), and
 * writing gnuplot text safely.
 *
 * Exit codes of sweep and report when drawing is not possible (documented in
 * launcher/README.md and --help): EXIT_NO_PICTURE (83, contract.h) when gnuplot is not
 * installed or failed; the data files and the .gp script are written anyway,
 * so `gnuplot FILE.gp` draws the picture later.
 */
#ifndef SPOTLAUNCH_PLOT_H
#define SPOTLAUNCH_PLOT_H

#include <signal.h>
#include <stdbool.h>
#include <stdio.h>


/* The outcome of plot_draw. */
typedef enum plot_result {
	PLOT_DRAWN = 0,      /* gnuplot exited 0 and the PNG is a PNG of the promised size */
	PLOT_NO_GNUPLOT = 1, /* the gnuplot program was not found */
	PLOT_FAILED = 2,     /* gnuplot failed, timed out, or wrote no (or a wrong) PNG */
} plot_result;

/*
 * Run argv (argv[0] looked up in PATH when it has no '/') with stdin from
 * /dev/null, stdout and stderr appended to the files given (NULL: inherited),
 * in a process group of its own; wait at most timeout_s (0: no limit), then
 * SIGTERM its group and SIGKILL it 5 s later. When *stop becomes non-zero (a
 * signal handler's flag; stop may be NULL) the same happens at once.
 * *status is a waitpid status, or -1 when it was timed out or stopped.
 * Returns 0, or an errno value when it could not be started (ENOENT: not found).
 */
int run_logged(char *const *argv, const char *stdout_path, const char *stderr_path, double timeout_s,
	       volatile sig_atomic_t *stop, int *status);

/*
 * The head of a gnuplot script that draws into png_path, w x h pixels:
 * pngcairo when this gnuplot has it, else png (libgd); text is not "enhanced"
 * (an underscore stays an underscore).
 */
void gp_terminal(FILE *gp, const char *png_path, int w, int h);

/* s as a gnuplot single-quoted string ('' for a quote; control characters become blanks). */
void gp_quote(FILE *gp, const char *s);

/*
 * Draw: run `gnuplot SCRIPT` (gnuplot: a path or a name looked up in PATH;
 * NULL: "gnuplot") with its output in log_path, then check that png_path is a
 * PNG of w x h pixels. Says what went wrong (and how to draw later) on stderr.
 */
plot_result plot_draw(const char *gnuplot, const char *script, const char *png_path, int w, int h,
		      const char *log_path);

/*
 * path made absolute (the current directory in front of a relative one), so
 * that a script written with it draws from any directory. False if it does not fit.
 */
bool abs_path(const char *path, char *out, size_t len);

/* The width and height from a PNG file's signature and IHDR chunk; false when it is not a PNG. */
bool png_size(const char *path, int *w, int *h);

#endif

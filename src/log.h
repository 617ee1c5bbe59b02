/*
 * log.h - diagnostics. Every message goes to stderr with a "spottrain" prefix
 * naming the rank, so that messages of several ranks can be told apart.
 */
#ifndef SPOTTRAIN_LOG_H
#define SPOTTRAIN_LOG_H

#include <stdbool.h>

/* Remember this process's rank for message prefixes (-1: not known yet). */
void log_set_rank(int rank);
/* Only rank 0 prints info messages unless verbose is set. */
void log_set_verbose(bool verbose);
int log_rank(void);

void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*
 * Under mpirun, stdout and stderr are a pty and a pipe read by mpirun, which
 * stops reading when it is told to shut down (SIGTERM) while the ranks keep
 * running until their own SIGTERM comes odls_base_sigkill_timeout later. A
 * rank blocked writing a log line then never reaches its agreed stop. So under
 * mpirun both are made non-blocking: a line nobody reads is dropped instead.
 * (Events and metrics go to files in the run directory, never lost this way.)
 */
void log_never_block_under_mpirun(void);

/* Wall-clock seconds (CLOCK_REALTIME) and monotonic seconds. */
double now_wall(void);
double now_mono(void);

#endif

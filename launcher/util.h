/*
 * util.h - small helpers of the launcher: messages, clocks and files.
 * The launcher shares no code with the worker (DESIGN.md) beyond the contract and
 * src/common (spottrain_common: the exit-code table; fsutil.h, whose fs_mkdir_p and
 * fs_write_atomic the launcher uses directly or through write_file_atomic below).
 */
#ifndef SPOTLAUNCH_UTIL_H
#define SPOTLAUNCH_UTIL_H

#include <stdbool.h>
#include <stddef.h>

/* Messages go to stderr as "spotlaunch: [level: ]text" with the wall time. */
void say_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void say_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void say_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Seconds since the epoch (CLOCK_REALTIME) and monotonic seconds. */
double now_wall(void);
double now_mono(void);

/*
 * Write a whole file atomically (fs_write_atomic: PATH.tmp, fsync, rename over PATH, fsync
 * the directory). Returns 0 or -1 after saying which operation failed.
 */
int write_file_atomic(const char *path, const char *data, size_t len);

/*
 * Read a whole file (at most max_bytes) into a NUL-terminated malloc'd buffer.
 * Returns 0, or an errno value (EFBIG when the file is larger than max_bytes).
 */
int read_file(const char *path, size_t max_bytes, char **out, size_t *len);

/* Strict number parsing: the whole string, within [lo, hi]. */
bool parse_long(const char *s, long lo, long hi, long *out);
bool parse_seconds(const char *s, double lo, double hi, double *out);

/* snprintf into a fixed buffer; false when the result did not fit. */
bool fmt_path(char *out, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif

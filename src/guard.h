/*
 * guard.h - work that may crash or stall, run in a forked child with a bound.
 *
 * HDF5 1.10.8 crashes (NULL reads, over-reads), asks for absurd allocations or loops on some
 * damaged or forged files (tests/fuzz/findings/README.md), inside the library, where no check
 * of ours can come first. Whatever reads such a file with HDF5 does it in a child process: a
 * one-shot child (guard_run: data_guard.c's whole-set load, ckpt_guard.c's checkpoint reads)
 * or a persistent one (data_stream.c's block reader, which uses guard_fork/guard_wait). How the
 * child ended is classified here, once: a documented exit code (contract.h) is the child's
 * answer; a signal, any other code (a sanitizer's report) or no end within the bound is a
 * broken read, which the caller turns into exit 65 naming its file.
 *
 * The child inherits the parent's memory (HDF5's state included) and its one forking thread;
 * it calls no MPI and leaves with _exit (no atexit handlers of MPI or HDF5 run), and it dies
 * with its parent (PR_SET_PDEATHSIG). SPOTTRAIN_H5_GUARD=0 in the environment turns guarding
 * off (guard_enabled): the fuzz targets read in-process, to fuzz HDF5 itself; debuggers too.
 */
#ifndef SPOTTRAIN_GUARD_H
#define SPOTTRAIN_GUARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* How a guarded child ended. */
typedef struct guard_end {
	int code;      /* its documented exit code (0: done), or EXIT_DATAERR when broken */
	bool broken;   /* killed by a signal, ended with a code that is not ours, or out of time */
	char how[160]; /* for messages when broken: "crashed (signal 11, Segmentation fault)" */
} guard_end;

/* False when SPOTTRAIN_H5_GUARD=0: read in this process. */
bool guard_enabled(void);
/* Seconds a child may take over `bytes` of input: generous for a slow volume (2 MB/s) and a
 * loaded machine (SPOTTRAIN_GUARD_BOUND_S, test-only, sets it: a test of a stall). */
double guard_bound_s(uint64_t bytes);
/* Flush stdio and fork. In the child (0 returned) the child dies with its parent. -1: errno. */
pid_t guard_fork(void);
/* Wait for child pid at most bound_s (then SIGKILL it) and classify its end into *end.
 * Returns end->code. */
int guard_wait(pid_t pid, double bound_s, guard_end *end);
/* SIGKILL child pid and reap it (a persistent child at close). */
void guard_stop(pid_t pid);
/* fn(arg) in a forked child, whose return value is its exit code; waited for at most bound_s.
 * Returns end->code, or -1 when no child could be started (errno; the caller decides). */
int guard_run(int (*fn)(void *arg), void *arg, double bound_s, guard_end *end);
/* len bytes of zeroed memory that a child writes and its parent reads (a reason, a result);
 * NULL when none. Free with guard_shared_free. */
void *guard_shared(size_t len);
void guard_shared_free(void *p, size_t len);

#endif

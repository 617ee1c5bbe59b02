/*
 * sweep.h - `spotlaunch sweep`: the benchmark at each world size, and how it scales.
 *
 *   spotlaunch sweep --np 1,2,4,8 [--hostfile FILE] [--run-dir DIR] [--mode strong|weak]
 *                    [--per-rank-batch B] [--repeat N] [--mpirun PATH] [--mpirun-arg ARG ...]
 *                    [--timeout S] [--gnuplot PATH] [--no-plot] -- spottrain bench ARGS...
 *
 * For each world size W (and each repeat) it runs
 *   mpirun [--hostfile FILE] -np W [--oversubscribe] [--mpirun-arg ...] WORKER... [--set train.global_batch=B*W]
 * by posix_spawn (no shell), with stdout and stderr in RUN/sweep-logs/, and
 * takes the last stdout line as the benchmark's JSON object. --oversubscribe
 * is added only without a hostfile, when W exceeds this machine's cores (and
 * the user did not pass it). Strong scaling passes the worker's arguments
 * through (fixed global batch); weak scaling adds --set train.global_batch=B*W.
 *
 * Writes RUN/sweep.csv (one row per W: medians over the repeats), sweep.json
 * (every run's JSON, the rows, the command lines), sweep.gp and sweep.png.
 * efficiency(W) = images_per_s(W) / (images_per_s(W0) x W / W0), W0 the
 * smallest world size measured.
 */
#ifndef SPOTLAUNCH_SWEEP_H
#define SPOTLAUNCH_SWEEP_H

/* The command (argv[0] is "sweep"). Returns the exit code. */
int sweep_main(int argc, char **argv);

#endif

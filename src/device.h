/*
 * device.h - the backend registry: choosing the compute backend at start
 * (DESIGN.md: chosen once, a table of function pointers with capability
 * flags). device.c is the only file of src/ that knows which backends exist;
 * callers get a table and ask its caps, hooks and ctx, never which one it is.
 */
#ifndef SPOTTRAIN_DEVICE_H
#define SPOTTRAIN_DEVICE_H

#include "config.h"
#include "ops.h"

/*
 * DEVICE_CPU: the CPU backend. DEVICE_CUDA: the GPU of this local rank, or
 * EXIT_USAGE (64) when there is none or the build has no CUDA. DEVICE_AUTO:
 * the GPU when one is present, else the CPU with one line saying so.
 * cpu_threads: the CPU backend's threads when it is chosen (<= 0: all cores).
 */
int device_select(device_kind want, int local_rank, int cpu_threads, const backend **out);

/* Number of usable GPUs (0 without CUDA or without a driver); never fails. */
int device_gpu_count(void);

#endif

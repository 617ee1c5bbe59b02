/*
 * cuda_backend.h - the GPU backend's whole public face (DESIGN.md: cuda/ holds
 * the kernels, the NCCL communicator and device memory). C-callable from the
 * C core; in src/ only the backend registry (device.c) includes it, guarded by
 * SPOTTRAIN_HAVE_CUDA, and tests/gpu. Everything else reaches the backend
 * through the table cuda_backend_open() returns: its ops, capabilities, hooks
 * (synchronize, threads, peak_gflops), its memory copies and its collective
 * (backend.comm: NCCL, driven by dist.c).
 *
 * One backend instance per process (one MPI rank per GPU): the device, its
 * stream and its cuBLAS handle are made once by cuda_backend_open(); the
 * table's ctx points at them.
 *
 * Nothing here touches the CUDA driver before cuda_device_count() or
 * cuda_backend_open() is called, and when cuda_device_count() returns 0 no
 * function below makes any further CUDA call (TESTING.md: a machine without a
 * driver answers 35 and must then be left alone). The CUDA runtime is linked
 * statically; cuBLAS and NCCL are loaded with dlopen() when first needed, so
 * a CUDA build starts, and runs on the CPU, where they are not installed.
 */
#ifndef SPOTTRAIN_CUDA_BACKEND_H
#define SPOTTRAIN_CUDA_BACKEND_H

#include <stddef.h>

#include "ops.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Usable CUDA devices: 0 without a driver, without a GPU or on any error (never fails). */
int cuda_device_count(void);

/* Why cuda_device_count() returned 0, in a few words (e.g. "CUDA driver missing (error 35)"). */
const char *cuda_probe_error(void);

/*
 * The backend on GPU `device`: sets the device, makes a stream and a cuBLAS
 * handle. NULL (with a message) when the device cannot be used. Opening the
 * same device again returns the same table; another device is refused.
 */
const backend *cuda_backend_open(int device);

/* The device of the open backend, or -1 when none is open (no CUDA call). */
int cuda_backend_device(void);

/* Tests: whether p is device memory of the open backend (0 when none is open; no CUDA call then). */
int cuda_is_device_pointer(const void *p);

/*
 * Best-of-5 GFLOP/s of an n x n x n cublasSgemm (FP32, no TF32) on the open
 * backend's device, timed with events after a warm-up; 0 on any failure.
 */
double cuda_measure_sgemm_gflops(int n);

/* The device's name (for logs and bench); "" when none is open. */
const char *cuda_device_name(void);

/*
 * Tests: the largest conv2d workspace in bytes (a batch is cut into chunks of
 * samples that fit); 0 restores the default, 512 MiB. Query conv2d_workspace
 * again after changing it.
 */
void cuda_set_conv_workspace_cap(size_t bytes);

#ifdef __cplusplus
}
#endif

#endif

/*
 * cuda_backend.h - the GPU backend's whole public face (DESIGN.md: cuda/ holds
 * the kernels, the NCCL communicator and device memory). C-callable from the
 * C core; only device.c, dist.c and bench.c include it, guarded by
 * SPOTTRAIN_HAVE_CUDA.
 *
 * One backend instance per process (one MPI rank per GPU): the table of ops.h
 * carries no context pointer, so the device, its stream and its cuBLAS handle
 * are process state of this module, made once by cuda_backend_open().
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

/* Wait until every operation queued on the backend's stream is done (no-op when none is open). */
void cuda_synchronize(void);

/* Whether p is device memory of the open backend (0 when no backend is open; no CUDA call then). */
int cuda_is_device_pointer(const void *p);

/* Blocking copies between host and device memory on the backend's stream. */
void cuda_copy_to_host(void *dst, const void *src, size_t bytes);
void cuda_copy_to_device(void *dst, const void *src, size_t bytes);

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

/* ---- NCCL (used only by dist.c, the module that owns collectives) ---- */

typedef struct cuda_comm cuda_comm;

#define CUDA_NCCL_ID_BYTES 128

/* A new NCCL unique id (rank 0 only; then broadcast it). 0 or -1 with msg filled. */
int cuda_nccl_unique_id(unsigned char id[CUDA_NCCL_ID_BYTES], char *msg, size_t msg_len);

/*
 * Join the NCCL communicator of `world` ranks on the open backend's device.
 * Non-blocking initialisation polled against timeout_s: past it the
 * communicator is aborted and -2 is returned (the caller aborts the world).
 * 0 on success, -1 on an NCCL error; msg says what happened.
 */
int cuda_nccl_init(const unsigned char id[CUDA_NCCL_ID_BYTES], int world, int rank, double timeout_s,
		   cuda_comm **out, char *msg, size_t msg_len);

/*
 * In-place sum of n floats of device memory across the communicator, on the
 * backend's stream after the work already queued there (the backward pass).
 * Waits until it is done, polling cudaStreamQuery and ncclCommGetAsyncError;
 * past timeout_s the communicator is aborted and -2 is returned. 0 on success,
 * -1 on an NCCL or CUDA error; msg says what happened.
 */
int cuda_nccl_allreduce_sum_f(cuda_comm *c, float *buf, size_t n, double timeout_s, char *msg, size_t msg_len);

/* Tear the communicator down (NULL is fine). */
void cuda_nccl_destroy(cuda_comm *c);

/* "NCCL 2.28.9" or similar, for logs. */
const char *cuda_nccl_version(void);

#ifdef __cplusplus
}
#endif

#endif

/*
 * cuda_internal.h - what the files of cuda/ share: the process's backend
 * context (device, stream, cuBLAS handle, staging buffers) and the checks.
 * Included by backend.c, nccl.c (C) and ops.cu (C++): C linkage throughout.
 */
#ifndef SPOTTRAIN_CUDA_INTERNAL_H
#define SPOTTRAIN_CUDA_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

#include "log.h"
#include "ops.h"

/*
 * A small host array the ops receive in host memory (sample indices, labels)
 * and the kernels need on the device: a pinned host copy, a device copy and an
 * event recorded after the copy, so that the pinned buffer is never rewritten
 * while the DMA engine still reads it.
 */
typedef struct cuda_stage {
	void *host;           /* pinned host memory, cap bytes */
	void *dev;            /* device memory, cap bytes */
	size_t cap;
	size_t valid;         /* bytes of host[] that dev[] holds too (0: nothing) */
	cudaEvent_t copied;   /* recorded after the last copy out of host[] */
	int has_event;
} cuda_stage;

/*
 * The backend instance: the open table's ctx (be->ctx). One per process (one
 * GPU per rank), so it is also g_cuda below; hooks that receive the table
 * (synchronize, peak_gflops, the NCCL hooks) use be->ctx, the op entries of
 * ops.cu, which take no table, use g_cuda.
 */
typedef struct cuda_ctx {
	int open;             /* cuda_backend_open() succeeded */
	int device;
	cudaStream_t stream;  /* every launch, copy, cuBLAS call and NCCL call goes here */
	cublasHandle_t blas;
	int sms;              /* multiprocessors, to size grids */
	char name[256];
	cuda_stage samples;   /* dataset indices (gather_images, dropout) */
	cuda_stage labels;    /* softmax_xent labels */
	/* softmax_xent results: per-sample loss and correct flag, on the device and pinned on the host */
	double *d_loss, *h_loss;
	int *d_correct, *h_correct;
	size_t loss_cap;      /* samples */
	/* partial sums of the bias-gradient reductions */
	float *d_partial;
	size_t partial_cap;   /* floats */
} cuda_ctx;

extern cuda_ctx g_cuda;

/*
 * cuBLAS, loaded with dlopen() when the backend opens (backend.c), so that a
 * CUDA build starts on machines without a GPU or without the CUDA libraries
 * (and does not map their hundreds of MB into every CPU process). The
 * signatures are those of cublas_v2.h.
 */
typedef struct cuda_blas_api {
	__typeof__(&cublasCreate_v2) create;
	__typeof__(&cublasDestroy_v2) destroy;
	__typeof__(&cublasSetStream_v2) set_stream;
	__typeof__(&cublasSetMathMode) set_math_mode;
	__typeof__(&cublasSetPointerMode_v2) set_pointer_mode;
	__typeof__(&cublasGetStatusString) status_string;
	__typeof__(&cublasSgemm_v2) sgemm;
	__typeof__(&cublasSgemmStridedBatched) sgemm_strided_batched;
} cuda_blas_api;

extern cuda_blas_api g_blas;

/*
 * dlopen() the first of names[] (NULL-terminated) that loads and resolve
 * n_syms symbols into slots. 0, or -1 with msg saying what was tried.
 */
int cuda_dlopen(const char *const *names, const char *const *syms, void **slots, int n_syms, void **handle,
		char *msg, size_t msg_len);

/* cuBLAS's text for a status (works before cuBLAS is loaded). */
const char *cuda_blas_status(cublasStatus_t st);

/* Report a failed CUDA/cuBLAS call (file:line, the call, the reason) and end this rank. */
void cuda_fail(const char *file, int line, const char *call, const char *why) __attribute__((noreturn));

#define CUDA_CHECK(call)                                                              \
	do {                                                                          \
		cudaError_t cuda_check_err_ = (call);                                 \
		if (cuda_check_err_ != cudaSuccess)                                   \
			cuda_fail(__FILE__, __LINE__, #call, cudaGetErrorString(cuda_check_err_)); \
	} while (0)

#define CUBLAS_CHECK(call)                                                            \
	do {                                                                          \
		cublasStatus_t cublas_check_st_ = (call);                             \
		if (cublas_check_st_ != CUBLAS_STATUS_SUCCESS)                        \
			cuda_fail(__FILE__, __LINE__, #call, cuda_blas_status(cublas_check_st_)); \
	} while (0)

/* After a kernel launch: a bad configuration shows up here, faults at the next sync. */
#define CUDA_CHECK_LAUNCH() CUDA_CHECK(cudaGetLastError())

/* The device copy of src[0, bytes), uploaded on the stream unless it already holds these bytes. */
const void *cuda_stage_upload(cuda_stage *s, const void *src, size_t bytes);

/* Grow the softmax result buffers to n samples and the partial-sum buffer to floats (0: leave). */
void cuda_reserve_loss(size_t n);
void cuda_reserve_partial(size_t floats);

/* nccl.c: the table's collective (backend_comm_ops over NCCL); dlopen()s NCCL when first used. */
extern const backend_comm_ops cuda_nccl_ops;

/* ops.cu: fill the op members of the table; run a tiny kernel (0 or the cudaError_t of the launch). */
void cuda_ops_fill(backend *be);
int cuda_ops_selftest(void);
/* ops.cu: fill n floats of device memory with a pseudo-random pattern in [-1, 1) (for the sgemm measurement). */
void cuda_fill_pattern(float *x, size_t n, uint32_t seed);

#ifdef __cplusplus
}
#endif

#endif

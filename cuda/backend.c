/*
 * backend.c - the GPU backend's device handling: probing for a GPU without
 * disturbing a machine that has none, opening the device (stream, cuBLAS),
 * device memory (cudaMalloc only, never managed memory), host<->device copies,
 * the staging of small per-step host arrays, the reference sgemm rate, and
 * the table that puts them together with the ops (ops.cu) and the NCCL
 * collective (nccl.c). The table's ctx is the instance, g_cuda; its hooks take
 * the table and use be->ctx.
 */
#include "cuda_backend.h"
#include "cuda_internal.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "contract.h"

cuda_ctx g_cuda;
cuda_blas_api g_blas;

/* ---------------------------------------------------------------- libraries */

int cuda_dlopen(const char *const *names, const char *const *syms, void **slots, int n_syms, void **handle,
		char *msg, size_t msg_len)
{
	void *h = NULL;
	size_t used = 0;
	msg[0] = 0;
	for (int i = 0; names[i] && !h; i++) {
		if (!names[i][0])
			continue;
		h = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
		if (!h && used < msg_len) {
			const char *e = dlerror();
			int k = snprintf(msg + used, msg_len - used, "%s%s", used ? "; " : "", e ? e : names[i]);
			used += k > 0 ? (size_t)k : 0;
		}
	}
	if (!h)
		return -1;
	for (int i = 0; i < n_syms; i++) {
		slots[i] = dlsym(h, syms[i]);
		if (!slots[i]) {
			snprintf(msg, msg_len, "%s has no symbol %s (too old a version?)", names[0], syms[i]);
			dlclose(h);
			return -1;
		}
	}
	*handle = h;
	return 0;
}

/* cuBLAS: the soname of the toolkit built against first, then its directory, then any libcublas.so. */
static int load_cublas(char *msg, size_t msg_len)
{
	static void *handle;
	if (handle)
		return 0;
	static const char *const names[] = {SPOTTRAIN_CUBLAS_SONAME, SPOTTRAIN_CUDA_LIBDIR "/" SPOTTRAIN_CUBLAS_SONAME,
					    "libcublas.so", NULL};
	static const char *const syms[] = {"cublasCreate_v2",	 "cublasDestroy_v2",	    "cublasSetStream_v2",
					   "cublasSetMathMode",	 "cublasSetPointerMode_v2", "cublasGetStatusString",
					   "cublasSgemm_v2",	 "cublasSgemmStridedBatched"};
	void *slots[sizeof syms / sizeof *syms];
	if (cuda_dlopen(names, syms, slots, (int)(sizeof syms / sizeof *syms), &handle, msg, msg_len))
		return -1;
	/* the slots are in the order of cuda_blas_api's members */
	_Static_assert(sizeof(cuda_blas_api) == sizeof slots, "one slot per cuBLAS function");
	memcpy(&g_blas, slots, sizeof g_blas);
	return 0;
}

const char *cuda_blas_status(cublasStatus_t st)
{
	static char buf[48];
	if (g_blas.status_string)
		return g_blas.status_string(st);
	snprintf(buf, sizeof buf, "cuBLAS status %d", (int)st);
	return buf;
}

/* What the first cudaGetDeviceCount() answered; -1 until asked. */
static int g_count = -1;
static char g_probe_error[160] = "not probed";

void cuda_fail(const char *file, int line, const char *call, const char *why)
{
	log_error("CUDA error at %s:%d: %s failed: %s. The GPU state cannot be trusted after this; "
		  "rank exits with code %d so that the launcher re-forms the world from the newest checkpoint",
		  file, line, call, why ? why : "(no reason given)", EXIT_SOFTWARE);
	fflush(stdout);
	fflush(stderr);
	/* _exit: the CUDA runtime's exit handlers may hang on a device in an error state */
	_exit(EXIT_SOFTWARE);
}

int cuda_device_count(void)
{
	if (g_count >= 0)
		return g_count;
	int n = 0;
	cudaError_t e = cudaGetDeviceCount(&n);
	if (e != cudaSuccess) {
		const char *what = e == cudaErrorInsufficientDriver ? "no CUDA driver, or one older than the runtime"
				   : e == cudaErrorNoDevice	     ? "no CUDA device"
								     : cudaGetErrorString(e);
		snprintf(g_probe_error, sizeof g_probe_error, "%s: cudaGetDeviceCount error %d", what, (int)e);
		(void)cudaGetLastError(); /* clear it; no further CUDA call is made on this path */
		g_count = 0;
		return 0;
	}
	if (n <= 0)
		snprintf(g_probe_error, sizeof g_probe_error, "the CUDA driver reports no device");
	else
		snprintf(g_probe_error, sizeof g_probe_error, "%d device%s", n, n == 1 ? "" : "s");
	g_count = n > 0 ? n : 0;
	return g_count;
}

const char *cuda_probe_error(void)
{
	return g_probe_error;
}

int cuda_backend_device(void)
{
	return g_cuda.open ? g_cuda.device : -1;
}

const char *cuda_device_name(void)
{
	return g_cuda.open ? g_cuda.name : "";
}

int cuda_is_device_pointer(const void *p)
{
	if (!g_cuda.open || !p)
		return 0;
	struct cudaPointerAttributes a;
	if (cudaPointerGetAttributes(&a, p) != cudaSuccess) {
		(void)cudaGetLastError();
		return 0;
	}
	return a.type == cudaMemoryTypeDevice;
}

/* ---------------------------------------------------------------- memory */

/*
 * Device memory, zeroed like the CPU backend's (fresh buffers never hold
 * garbage). The memset is queued on the stream, so every later op sees it.
 * NULL when the device is out of memory (the caller reports it).
 */
static void *cu_alloc(size_t bytes)
{
	size_t rounded = (bytes + 255) & ~(size_t)255;
	if (rounded == 0)
		rounded = 256;
	void *p = NULL;
	cudaError_t e = cudaMalloc(&p, rounded);
	if (e != cudaSuccess) {
		(void)cudaGetLastError();
		log_error("cudaMalloc of %zu bytes on GPU %d failed: %s", rounded, g_cuda.device,
			  cudaGetErrorString(e));
		return NULL;
	}
	CUDA_CHECK(cudaMemsetAsync(p, 0, rounded, g_cuda.stream));
	return p;
}

/* Queued work that still reads p finishes first. */
static void cu_release(void *p)
{
	if (!p)
		return;
	CUDA_CHECK(cudaStreamSynchronize(g_cuda.stream));
	CUDA_CHECK(cudaFree(p));
}

/* Blocking copies on the stream: on return the host buffer may be reused or read. */
static void cu_upload(void *dst, const void *src, size_t bytes)
{
	if (bytes == 0)
		return;
	CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, g_cuda.stream));
	CUDA_CHECK(cudaStreamSynchronize(g_cuda.stream));
}

static void cu_download(void *dst, const void *src, size_t bytes)
{
	if (bytes == 0)
		return;
	CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, g_cuda.stream));
	CUDA_CHECK(cudaStreamSynchronize(g_cuda.stream));
}

/* ---------------------------------------------------------------- staging */

static void stage_grow(cuda_stage *s, size_t bytes)
{
	size_t cap = s->cap ? s->cap : 4096;
	while (cap < bytes)
		cap *= 2;
	/* the old buffers may still be read by queued copies and kernels */
	CUDA_CHECK(cudaStreamSynchronize(g_cuda.stream));
	if (s->host)
		CUDA_CHECK(cudaFreeHost(s->host));
	if (s->dev)
		CUDA_CHECK(cudaFree(s->dev));
	s->host = s->dev = NULL;
	s->cap = s->valid = 0;
	CUDA_CHECK(cudaMallocHost(&s->host, cap));
	CUDA_CHECK(cudaMalloc(&s->dev, cap));
	s->cap = cap;
	if (!s->has_event) {
		CUDA_CHECK(cudaEventCreateWithFlags(&s->copied, cudaEventDisableTiming));
		s->has_event = 1;
	}
}

/*
 * The same bytes are often staged twice in a row (gather_images and each
 * dropout layer get the same sample indices): then the device copy is reused.
 */
const void *cuda_stage_upload(cuda_stage *s, const void *src, size_t bytes)
{
	if (bytes == 0)
		bytes = 1; /* a valid pointer for n = 0 launches that do nothing */
	if (bytes > s->cap)
		stage_grow(s, bytes);
	if (src && s->valid == bytes && memcmp(s->host, src, bytes) == 0)
		return s->dev;
	/* the DMA engine may still read the previous contents */
	CUDA_CHECK(cudaEventSynchronize(s->copied));
	if (src)
		memcpy(s->host, src, bytes);
	else
		memset(s->host, 0, bytes);
	CUDA_CHECK(cudaMemcpyAsync(s->dev, s->host, bytes, cudaMemcpyHostToDevice, g_cuda.stream));
	CUDA_CHECK(cudaEventRecord(s->copied, g_cuda.stream));
	s->valid = src ? bytes : 0;
	return s->dev;
}

void cuda_reserve_loss(size_t n)
{
	if (n <= g_cuda.loss_cap)
		return;
	size_t cap = g_cuda.loss_cap ? g_cuda.loss_cap : 256;
	while (cap < n)
		cap *= 2;
	CUDA_CHECK(cudaStreamSynchronize(g_cuda.stream));
	if (g_cuda.d_loss)
		CUDA_CHECK(cudaFree(g_cuda.d_loss));
	if (g_cuda.d_correct)
		CUDA_CHECK(cudaFree(g_cuda.d_correct));
	if (g_cuda.h_loss)
		CUDA_CHECK(cudaFreeHost(g_cuda.h_loss));
	if (g_cuda.h_correct)
		CUDA_CHECK(cudaFreeHost(g_cuda.h_correct));
	CUDA_CHECK(cudaMalloc((void **)&g_cuda.d_loss, cap * sizeof(double)));
	CUDA_CHECK(cudaMalloc((void **)&g_cuda.d_correct, cap * sizeof(int)));
	CUDA_CHECK(cudaMallocHost((void **)&g_cuda.h_loss, cap * sizeof(double)));
	CUDA_CHECK(cudaMallocHost((void **)&g_cuda.h_correct, cap * sizeof(int)));
	g_cuda.loss_cap = cap;
}

void cuda_reserve_partial(size_t floats)
{
	if (floats <= g_cuda.partial_cap)
		return;
	size_t cap = g_cuda.partial_cap ? g_cuda.partial_cap : 4096;
	while (cap < floats)
		cap *= 2;
	CUDA_CHECK(cudaStreamSynchronize(g_cuda.stream));
	if (g_cuda.d_partial)
		CUDA_CHECK(cudaFree(g_cuda.d_partial));
	CUDA_CHECK(cudaMalloc((void **)&g_cuda.d_partial, cap * sizeof(float)));
	g_cuda.partial_cap = cap;
}

/* ---------------------------------------------------------------- open */

static backend g_table;

/* Wait until every operation queued on be's stream is done. */
static void cu_synchronize(const backend *be)
{
	const cuda_ctx *cx = be->ctx;
	if (cx->open)
		CUDA_CHECK(cudaStreamSynchronize(cx->stream));
}

/* One host thread drives the GPU. */
static int cu_threads(const backend *be)
{
	(void)be;
	return 1;
}

static double measure_sgemm(const cuda_ctx *cx, int n);

/* cuBLAS FP32 sgemm 8192^3 on be's GPU: the precision of the backend's products. */
static double cu_peak_gflops(const backend *be)
{
	return measure_sgemm(be->ctx, 8192);
}

const backend *cuda_backend_open(int device)
{
	if (g_cuda.open) {
		if (device == g_cuda.device)
			return &g_table;
		log_error("the CUDA backend is already open on GPU %d; one GPU per process (asked for GPU %d)",
			  g_cuda.device, device);
		return NULL;
	}
	if (device < 0 || device >= cuda_device_count()) {
		log_error("GPU %d does not exist (%s)", device, cuda_probe_error());
		return NULL;
	}
	cudaError_t e = cudaSetDevice(device);
	struct cudaDeviceProp prop;
	if (e == cudaSuccess)
		e = cudaGetDeviceProperties(&prop, device);
	if (e == cudaSuccess)
		e = cudaFree(NULL); /* creates the context now, so that its errors show here */
	if (e != cudaSuccess) {
		(void)cudaGetLastError();
		log_error("GPU %d cannot be used: %s", device, cudaGetErrorString(e));
		return NULL;
	}
	char msg[1024];
	if (load_cublas(msg, sizeof msg)) {
		log_error("GPU %d: cannot load cuBLAS, which the CUDA backend needs: %s", device, msg);
		return NULL;
	}
	cudaStream_t stream;
	if ((e = cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking)) != cudaSuccess) {
		log_error("GPU %d: cudaStreamCreate failed: %s", device, cudaGetErrorString(e));
		return NULL;
	}
	cublasHandle_t blas;
	cublasStatus_t st = g_blas.create(&blas);
	if (st != CUBLAS_STATUS_SUCCESS) {
		log_error("GPU %d: cublasCreate failed: %s", device, cuda_blas_status(st));
		cudaStreamDestroy(stream);
		return NULL;
	}
	/*
	 * FP32 products by default: the GPU path is tested against the CPU at 1e-4.
	 * SPOTTRAIN_TF32=1 lets cuBLAS use TF32 tensor cores (about 10 bits of
	 * mantissa in the products; PyTorch's default for convolutions).
	 */
	const char *tf32 = getenv("SPOTTRAIN_TF32");
	cublasMath_t math = tf32 && strcmp(tf32, "1") == 0 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH;
	if ((st = g_blas.set_stream(blas, stream)) != CUBLAS_STATUS_SUCCESS ||
	    (st = g_blas.set_math_mode(blas, math)) != CUBLAS_STATUS_SUCCESS ||
	    (st = g_blas.set_pointer_mode(blas, CUBLAS_POINTER_MODE_HOST)) != CUBLAS_STATUS_SUCCESS) {
		log_error("GPU %d: cuBLAS setup failed: %s", device, cuda_blas_status(st));
		g_blas.destroy(blas);
		cudaStreamDestroy(stream);
		return NULL;
	}
	memset(&g_cuda, 0, sizeof g_cuda);
	g_cuda.device = device;
	g_cuda.stream = stream;
	g_cuda.blas = blas;
	g_cuda.sms = prop.multiProcessorCount > 0 ? prop.multiProcessorCount : 1;
	snprintf(g_cuda.name, sizeof g_cuda.name, "%s", prop.name);
	g_cuda.open = 1;
	/* a build without machine code or PTX for this GPU fails its first launch: find out now */
	int k = cuda_ops_selftest();
	if (k != 0) {
		log_error("GPU %d (%s, compute capability %d.%d): a test kernel did not run: %s. "
			  "Rebuild with -DCMAKE_CUDA_ARCHITECTURES=%d%d (or add it to the list)",
			  device, prop.name, prop.major, prop.minor, cudaGetErrorString((cudaError_t)k), prop.major,
			  prop.minor);
		g_cuda.open = 0;
		g_blas.destroy(blas);
		cudaStreamDestroy(stream);
		return NULL;
	}
	memset(&g_table, 0, sizeof g_table);
	g_table.name = "cuda";
	g_table.caps = 0; /* device memory; gradients summed in float (NCCL or staged MPI) */
	g_table.ctx = &g_cuda;
	g_table.comm = &cuda_nccl_ops;
	g_table.synchronize = cu_synchronize;
	g_table.threads = cu_threads;
	g_table.peak_gflops = cu_peak_gflops;
	g_table.alloc = cu_alloc;
	g_table.release = cu_release;
	g_table.upload = cu_upload;
	g_table.download = cu_download;
	cuda_ops_fill(&g_table);
	int rt = 0, drv = 0;
	cudaRuntimeGetVersion(&rt);
	cudaDriverGetVersion(&drv);
	log_info("GPU %d: %s, %.1f GiB, compute capability %d.%d, %d SMs (CUDA runtime %d.%d, driver %d.%d%s)",
		 device, prop.name, (double)prop.totalGlobalMem / (1024.0 * 1024 * 1024), prop.major, prop.minor,
		 prop.multiProcessorCount, rt / 1000, rt % 1000 / 10, drv / 1000, drv % 1000 / 10,
		 math == CUBLAS_TF32_TENSOR_OP_MATH ? ", TF32 products" : "");
	return &g_table;
}

/* ---------------------------------------------------------------- sgemm reference */

/* Best-of-5 GFLOP/s of an n^3 cublasSgemm on cx's stream after two warm-ups; 0 on failure. */
static double measure_sgemm(const cuda_ctx *cx, int n)
{
	if (!cx->open || n <= 0)
		return 0;
	size_t sz = (size_t)n * (size_t)n;
	float *a = NULL, *b = NULL, *c = NULL;
	cudaEvent_t e0 = NULL, e1 = NULL;
	double best = 0;
	if (cudaMalloc((void **)&a, sz * sizeof(float)) != cudaSuccess ||
	    cudaMalloc((void **)&b, sz * sizeof(float)) != cudaSuccess ||
	    cudaMalloc((void **)&c, sz * sizeof(float)) != cudaSuccess) {
		(void)cudaGetLastError();
		log_warn("no GPU memory for the %dx%d reference sgemm; reporting 0", n, n);
		goto out;
	}
	/* random data: zeros can run faster than real data */
	cuda_fill_pattern(a, sz, 1);
	cuda_fill_pattern(b, sz, 2);
	CUDA_CHECK(cudaEventCreate(&e0));
	CUDA_CHECK(cudaEventCreate(&e1));
	const float one = 1.0f, zero = 0.0f;
	for (int r = 0; r < 7; r++) {
		CUDA_CHECK(cudaEventRecord(e0, cx->stream));
		CUBLAS_CHECK(g_blas.sgemm(cx->blas, CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, &one, a, n, b, n, &zero, c, n));
		CUDA_CHECK(cudaEventRecord(e1, cx->stream));
		CUDA_CHECK(cudaEventSynchronize(e1));
		float ms = 0;
		CUDA_CHECK(cudaEventElapsedTime(&ms, e0, e1));
		if (r < 2 || ms <= 0)
			continue; /* warm-up: cuBLAS picks and loads its kernel */
		double g = 2.0 * (double)n * (double)n * (double)n / (ms * 1e-3) / 1e9;
		best = g > best ? g : best;
	}
out:
	if (e0)
		cudaEventDestroy(e0);
	if (e1)
		cudaEventDestroy(e1);
	cudaFree(a);
	cudaFree(b);
	cudaFree(c);
	return best;
}

double cuda_measure_sgemm_gflops(int n)
{
	return measure_sgemm(&g_cuda, n);
}

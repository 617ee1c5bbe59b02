/*
 * ops.cu - the GPU implementation of the ops of ops.h, side by side with
 * src/ops_cpu.c (the reference it is tested against: tests/gpu/).
 *
 * Every launch, copy and cuBLAS call goes to the one stream of the backend,
 * so the ops run in the order the model calls them and need no other
 * synchronisation. Host-side arrays that ops receive (sample indices, labels)
 * are staged through pinned buffers (backend.c). The only op that waits for
 * the GPU is softmax_xent: it returns the loss sum and correct count to the
 * host, as the interface asks (one sync per forward pass).
 *
 * Exactness against the CPU (this file is compiled with --fmad=false, so a*b+c
 * is rounded twice, as the C11 CPU code does):
 *   bit-identical: relu, dropout (the same Philox masks), maxpool (same argmax,
 *     same summation order in backward), gather_images, scale, the optimizers
 *     (same float expressions; scalars computed on the host as optim.c does);
 *   summation order differs (float rounding only): conv2d and dense (cuBLAS,
 *     FP32 without TF32 unless SPOTTRAIN_TF32=1), bias gradients (tree sums),
 *     softmax_xent's sum of exponentials (in double).
 *
 * Convolution: im2col over a chunk of c samples into col[K][c*P] (K = in_c*kh*kw
 * rows, P = out_h*out_w), then
 *   forward   y_i[oc,P]  = W[oc,K] . col_i[K,P]        one strided-batched sgemm
 *   dW        dW[oc,K]  += dyT[oc,cP] . col[K,cP]^T     one sgemm over the chunk
 *             (dyT: dy of the chunk transposed to channel-major)
 *   din       dcol_i     = W^T . dy_i, then col2im       strided-batched sgemm + gather
 * Chunks keep the workspace under CONV_WS_CAP bytes.
 */
#include "cuda_internal.h"

#include <math.h>
#include <string.h>

extern "C" {
#include "optim.h"
#include "philox.h"
}

/* Largest conv workspace: im2col buffer + transposed output gradient of one chunk. */
#define CONV_WS_CAP ((size_t)512 << 20)
#define THREADS 256

static size_t g_conv_ws_cap = CONV_WS_CAP;

extern "C" void cuda_set_conv_workspace_cap(size_t bytes)
{
	g_conv_ws_cap = bytes ? bytes : CONV_WS_CAP;
}

/* Blocks for a grid-stride loop over n items: enough to fill the GPU, no more. */
static unsigned grid_for(size_t n)
{
	size_t b = (n + THREADS - 1) / THREADS;
	size_t cap = (size_t)g_cuda.sms * 16;
	if (b > cap)
		b = cap;
	return (unsigned)(b ? b : 1);
}

#define GRID_STRIDE(i, n) \
	for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (size_t)gridDim.x * blockDim.x)

/*
 * Kernels that split a flat index into coordinates are templates on the index
 * type: 64-bit division costs several times 32-bit division on the GPU, so they
 * run on uint32_t whenever every index and offset stays below 2^31 (then
 * i + stride cannot wrap either), on size_t otherwise.
 */
#define GRID_STRIDE_I(I, i, n) for (I i = (I)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (I)gridDim.x * blockDim.x)
#define FITS32(x) ((size_t)(x) <= ((size_t)1 << 31))
#define LAUNCH_IDX(kernel, fits, grid, ...)                                                          \
	do {                                                                                         \
		if (fits)                                                                            \
			kernel<uint32_t><<<(grid), THREADS, 0, g_cuda.stream>>>(__VA_ARGS__);       \
		else                                                                                 \
			kernel<size_t><<<(grid), THREADS, 0, g_cuda.stream>>>(__VA_ARGS__);         \
		CUDA_CHECK_LAUNCH();                                                                 \
	} while (0)

/* ---------------------------------------------------------------- small kernels */

__global__ void k_selftest(int *x)
{
	if (threadIdx.x == 0 && blockIdx.x == 0)
		*x = 42;
}

extern "C" int cuda_ops_selftest(void)
{
	int *d = NULL, h = 0;
	cudaError_t e = cudaMalloc((void **)&d, sizeof(int));
	if (e == cudaSuccess) {
		k_selftest<<<1, 32, 0, g_cuda.stream>>>(d);
		e = cudaGetLastError();
	}
	if (e == cudaSuccess)
		e = cudaMemcpyAsync(&h, d, sizeof h, cudaMemcpyDeviceToHost, g_cuda.stream);
	if (e == cudaSuccess)
		e = cudaStreamSynchronize(g_cuda.stream);
	if (e == cudaSuccess && h != 42)
		e = cudaErrorUnknown;
	if (d)
		cudaFree(d);
	if (e != cudaSuccess)
		(void)cudaGetLastError();
	return (int)e;
}

__global__ void k_fill_pattern(float *x, size_t n, uint32_t seed)
{
	GRID_STRIDE(i, n)
	{
		uint32_t h = (uint32_t)i * 0x9E3779B1u ^ seed * 0x85EBCA77u;
		h ^= h >> 15;
		h *= 0x2C1B3C6Du;
		h ^= h >> 12;
		x[i] = (float)(h >> 8) * (2.0f / 16777216.0f) - 1.0f;
	}
}

extern "C" void cuda_fill_pattern(float *x, size_t n, uint32_t seed)
{
	k_fill_pattern<<<grid_for(n), THREADS, 0, g_cuda.stream>>>(x, n, seed);
	CUDA_CHECK_LAUNCH();
}

/* ---------------------------------------------------------------- element-wise */

__global__ void k_relu_fwd(size_t n, const float *in, float *out)
{
	GRID_STRIDE(i, n)
	{
		float v = in[i];
		out[i] = v > 0.0f ? v : 0.0f;
	}
}

__global__ void k_relu_bwd(size_t n, const float *out, const float *dout, float *din)
{
	GRID_STRIDE(i, n)
	din[i] = out[i] > 0.0f ? dout[i] : 0.0f;
}

__global__ void k_mul(size_t n, const float *a, const float *b, float *out)
{
	GRID_STRIDE(i, n)
	out[i] = a[i] * b[i];
}

__global__ void k_scale(size_t n, float a, float *x)
{
	GRID_STRIDE(i, n)
	x[i] *= a;
}

__global__ void k_copy_ones(size_t n, const float *in, float *out, float *mask)
{
	GRID_STRIDE(i, n)
	{
		out[i] = in[i];
		mask[i] = 1.0f;
	}
}

static void cu_relu_forward(size_t count, const float *in, float *out)
{
	if (!count)
		return;
	k_relu_fwd<<<grid_for(count), THREADS, 0, g_cuda.stream>>>(count, in, out);
	CUDA_CHECK_LAUNCH();
}

static void cu_relu_backward(size_t count, const float *out, const float *dout, float *din)
{
	if (!count)
		return;
	k_relu_bwd<<<grid_for(count), THREADS, 0, g_cuda.stream>>>(count, out, dout, din);
	CUDA_CHECK_LAUNCH();
}

static void cu_dropout_backward(size_t count, const float *mask, const float *dout, float *din)
{
	if (!count)
		return;
	/* dout[i] * mask[i], the CPU's operand order */
	k_mul<<<grid_for(count), THREADS, 0, g_cuda.stream>>>(count, dout, mask, din);
	CUDA_CHECK_LAUNCH();
}

static void cu_scale(size_t count, float a, float *x)
{
	if (!count)
		return;
	k_scale<<<grid_for(count), THREADS, 0, g_cuda.stream>>>(count, a, x);
	CUDA_CHECK_LAUNCH();
}

static void cu_zero(size_t count, float *x)
{
	if (count)
		CUDA_CHECK(cudaMemsetAsync(x, 0, count * sizeof(float), g_cuda.stream));
}

/* ---------------------------------------------------------------- dropout */

/*
 * One thread per group of four elements of a sample: one Philox4x32-10 call
 * gives the four random words, exactly as philox_dropout_keep() draws them
 * (counter {sample, element/4, epoch, PHILOX_DROPOUT}, key {seed, layer}).
 */
template <typename I>
__global__ void k_dropout_fwd(I total, I groups, I ps, const uint32_t *samples, uint32_t seed, uint32_t layer,
			      uint32_t epoch, float rate, float scale, const float *in, float *out, float *mask)
{
	GRID_STRIDE_I(I, t, total)
	{
		const I i = t / groups, g = t - i * groups;
		philox_key k = {{seed, layer}};
		philox_ctr c = {{samples[i], (uint32_t)g, epoch, (uint32_t)PHILOX_DROPOUT}};
		philox_ctr r = philox4x32(c, k);
		const size_t base = (size_t)i * ps + (size_t)g * 4;
#pragma unroll
		for (int w = 0; w < 4; w++) {
			if ((size_t)g * 4 + (size_t)w >= (size_t)ps)
				break;
			float s = philox_uniform(r.v[w]) >= rate ? scale : 0.0f;
			mask[base + w] = s;
			out[base + w] = in[base + w] * s;
		}
	}
}

static void cu_dropout_forward(const dropout_desc *d, int n, const uint32_t *samples, const float *in, float *out,
			       float *mask)
{
	const size_t ps = d->per_sample, total = (size_t)(n > 0 ? n : 0) * ps;
	if (total == 0)
		return;
	const float rate = d->rate;
	if (!(rate > 0.0f)) { /* rate 0 (or nonsense): identity, as the CPU */
		k_copy_ones<<<grid_for(total), THREADS, 0, g_cuda.stream>>>(total, in, out, mask);
		CUDA_CHECK_LAUNCH();
		return;
	}
	const float scale = rate < 1.0f ? 1.0f / (1.0f - rate) : 0.0f;
	const uint32_t *ds = (const uint32_t *)cuda_stage_upload(&g_cuda.samples, samples, (size_t)n * sizeof(uint32_t));
	const size_t groups = (ps + 3) / 4, work = (size_t)n * groups;
	LAUNCH_IDX(k_dropout_fwd, FITS32(total + 4), grid_for(work), work, groups, ps, ds, d->seed, d->layer, d->epoch,
		   rate, scale, in, out, mask);
}

/* ---------------------------------------------------------------- bias gradients */

/*
 * Segmented row sums: row r of x is { x[i*stride + r*P + p] : i < n, p < P }
 * (conv: stride = oc*P; dense: P = 1, stride = out_f). Stage 1: block (r, s)
 * sums samples [n*s/S, n*(s+1)/S) of row r by a fixed tree; stage 2 adds the S
 * partials of each row in order to out[r]. Deterministic: the same bits on
 * every run.
 */
__global__ void k_rowsum_partial(const float *x, int n, int P, size_t stride, int S, float *partial)
{
	__shared__ float sh[THREADS];
	const int r = blockIdx.x, s = blockIdx.y; /* rows in x: gridDim.y stops at 65535 */
	const int i0 = (int)((long long)n * s / S), i1 = (int)((long long)n * (s + 1) / S);
	const size_t cnt = (size_t)(i1 - i0) * (size_t)P;
	float acc = 0.0f;
	for (size_t t = threadIdx.x; t < cnt; t += blockDim.x) {
		size_t i = (size_t)i0 + t / (size_t)P, p = t % (size_t)P;
		acc += x[i * stride + (size_t)r * P + p];
	}
	sh[threadIdx.x] = acc;
	__syncthreads();
	for (int w = THREADS / 2; w > 0; w >>= 1) {
		if ((int)threadIdx.x < w)
			sh[threadIdx.x] += sh[threadIdx.x + w];
		__syncthreads();
	}
	if (threadIdx.x == 0)
		partial[(size_t)r * S + s] = sh[0];
}

__global__ void k_rowsum_final(const float *partial, int rows, int S, float *out)
{
	int r = blockIdx.x * blockDim.x + threadIdx.x;
	if (r >= rows)
		return;
	float acc = 0.0f;
	for (int s = 0; s < S; s++)
		acc += partial[(size_t)r * S + s];
	out[r] += acc;
}

/* out[r] += sum of row r (see k_rowsum_partial). */
static void rowsum_add(const float *x, int n, int rows, int P, size_t stride, float *out)
{
	if (n <= 0 || rows <= 0 || P <= 0)
		return;
	size_t total = (size_t)n * (size_t)P;
	size_t S = total / 8192;
	if (S < 1)
		S = 1;
	if (S > 128)
		S = 128;
	if (S > (size_t)n)
		S = (size_t)n;
	cuda_reserve_partial((size_t)rows * S);
	dim3 grid((unsigned)rows, (unsigned)S);
	k_rowsum_partial<<<grid, THREADS, 0, g_cuda.stream>>>(x, n, P, stride, (int)S, g_cuda.d_partial);
	CUDA_CHECK_LAUNCH();
	k_rowsum_final<<<(rows + 127) / 128, 128, 0, g_cuda.stream>>>(g_cuda.d_partial, rows, (int)S, out);
	CUDA_CHECK_LAUNCH();
}

/* ---------------------------------------------------------------- conv2d */

static bool conv_desc_ok(const conv_desc *d)
{
	return d->in_c > 0 && d->in_h > 0 && d->in_w > 0 && d->out_c > 0 && d->out_h > 0 && d->out_w > 0 &&
	       d->k_h > 0 && d->k_w > 0 && d->stride_h > 0 && d->stride_w > 0;
}

typedef struct conv_geom {
	size_t K, P;       /* rows of col (in_c*kh*kw), output pixels per channel */
	size_t in_sz, out_sz; /* floats per sample */
	int chunk;         /* samples per im2col pass */
	size_t col_floats; /* col buffer of a full chunk, rounded to 64 floats */
} conv_geom;

static conv_geom conv_geometry(const conv_desc *d, int n)
{
	conv_geom g;
	g.K = (size_t)d->in_c * d->k_h * d->k_w;
	g.P = (size_t)d->out_h * d->out_w;
	g.in_sz = (size_t)d->in_c * d->in_h * d->in_w;
	g.out_sz = (size_t)d->out_c * g.P;
	size_t per = (g.K + (size_t)d->out_c) * g.P * sizeof(float);
	size_t c = g_conv_ws_cap / (per ? per : 1);
	size_t int_cap = (size_t)0x7fffffff / (g.P * (g.K > (size_t)d->out_c ? g.K : (size_t)d->out_c));
	if (c > int_cap)
		c = int_cap; /* cuBLAS leading dimensions are ints */
	if (c < 1)
		c = 1;
	if (c > (size_t)(n > 0 ? n : 1))
		c = (size_t)(n > 0 ? n : 1);
	g.chunk = (int)c;
	g.col_floats = (g.K * c * g.P + 63) & ~(size_t)63;
	return g;
}

/* Bytes for col (K x c*P) and dyT (oc x c*P) of one chunk. Monotone in n: a call with fewer samples fits. */
static size_t cu_conv2d_workspace(const conv_desc *d, int n)
{
	if (!conv_desc_ok(d))
		return 0;
	conv_geom g = conv_geometry(d, n);
	return (g.col_floats + (size_t)d->out_c * (size_t)g.chunk * g.P) * sizeof(float);
}

/* col[k][i*P + p] for the c samples at x; zero outside the image (the CPU's im2col, batched). */
template <typename I> __global__ void k_im2col(conv_desc d, const float *x, int c, float *col)
{
	const I P = (I)d.out_h * d.out_w, cP = (I)c * P, kwh = (I)d.k_w * d.k_h;
	const I total = (I)d.in_c * kwh * cP;
	const size_t plane = (size_t)d.in_h * d.in_w, in_sz = (size_t)d.in_c * plane;
	GRID_STRIDE_I(I, idx, total)
	{
		const I k = idx / cP, q = idx - k * cP;
		const I i = q / P, p = q - i * P;
		const int oh = (int)(p / (I)d.out_w), ow = (int)(p - (I)oh * d.out_w);
		const int ci = (int)(k / kwh);
		const I kr = k - (I)ci * kwh;
		const int ki = (int)(kr / (I)d.k_w), kj = (int)(kr - (I)ki * d.k_w);
		const int ih = oh * d.stride_h - d.pad_top + ki, iw = ow * d.stride_w - d.pad_left + kj;
		float v = 0.0f;
		if (ih >= 0 && ih < d.in_h && iw >= 0 && iw < d.in_w)
			v = x[(size_t)i * in_sz + (size_t)ci * plane + (size_t)ih * d.in_w + iw];
		col[idx] = v;
	}
}

/*
 * The adjoint of im2col, as a gather: each input element sums its taps in
 * (ki, kj) order, the order in which the CPU's col2im adds them.
 */
template <typename I> __global__ void k_col2im(conv_desc d, const float *col, int c, float *dx)
{
	const size_t P = (size_t)d.out_h * d.out_w, cP = (size_t)c * P;
	const I plane = (I)d.in_h * d.in_w, in_sz = (I)d.in_c * plane, total = (I)c * in_sz;
	GRID_STRIDE_I(I, idx, total)
	{
		const I i = idx / in_sz, r = idx - i * in_sz;
		const int ci = (int)(r / plane);
		const I rp = r - (I)ci * plane;
		const int ih = (int)(rp / (I)d.in_w), iw = (int)(rp - (I)ih * d.in_w);
		float s = 0.0f;
		for (int ki = 0; ki < d.k_h; ki++) {
			int hn = ih + d.pad_top - ki; /* = oh * stride_h */
			if (hn < 0 || hn % d.stride_h)
				continue;
			int oh = hn / d.stride_h;
			if (oh >= d.out_h)
				continue;
			for (int kj = 0; kj < d.k_w; kj++) {
				int wn = iw + d.pad_left - kj;
				if (wn < 0 || wn % d.stride_w)
					continue;
				int ow = wn / d.stride_w;
				if (ow >= d.out_w)
					continue;
				size_t k = ((size_t)ci * d.k_h + ki) * d.k_w + kj;
				s += col[k * cP + (size_t)i * P + (size_t)oh * d.out_w + ow];
			}
		}
		dx[idx] = s;
	}
}

/* dyT[o][i*P + p] = dy[i][o][p] for the c samples at dy. */
template <typename I> __global__ void k_to_channel_major(const float *dy, int c, int oc, I P, float *dyT)
{
	const I cP = (I)c * P, total = (I)oc * cP;
	GRID_STRIDE_I(I, idx, total)
	{
		const I o = idx / cP, q = idx - o * cP;
		const I i = q / P, p = q - i * P;
		dyT[idx] = dy[((size_t)i * oc + o) * P + p];
	}
}

/* y[i][o][p] = b[o] for c samples (the CPU fills the bias, then sgemm adds with beta 1). */
template <typename I> __global__ void k_fill_bias_nchw(float *y, const float *b, int c, int oc, I P)
{
	const I total = (I)c * oc * P;
	GRID_STRIDE_I(I, idx, total)
	y[idx] = b[(idx / P) % (I)oc];
}

static void cu_conv2d_forward(const conv_desc *d, int n, const float *in, const float *w, const float *b, float *out,
			      float *ws)
{
	if (n <= 0 || !conv_desc_ok(d))
		return;
	const conv_geom g = conv_geometry(d, n);
	const int oc = d->out_c, K = (int)g.K, P = (int)g.P;
	const float one = 1.0f;
	float *col = ws;
	for (int i0 = 0; i0 < n; i0 += g.chunk) {
		const int c = n - i0 < g.chunk ? n - i0 : g.chunk;
		const size_t cP = (size_t)c * g.P;
		LAUNCH_IDX(k_im2col, FITS32(g.K * cP) && FITS32((size_t)c * g.in_sz), grid_for(g.K * cP), *d,
			   in + (size_t)i0 * g.in_sz, c, col);
		float *y = out + (size_t)i0 * g.out_sz;
		float beta = 0.0f;
		if (b) {
			LAUNCH_IDX(k_fill_bias_nchw, FITS32((size_t)c * g.out_sz), grid_for((size_t)c * g.out_sz), y, b, c,
				   oc, g.P);
			beta = 1.0f;
		}
		/* column-major: y_i[P x oc] = col_i[P x K] (ld cP, stride P) . W[K x oc] (ld K, shared) */
		CUBLAS_CHECK(g_blas.sgemm_strided_batched(g_cuda.blas, CUBLAS_OP_N, CUBLAS_OP_N, P, oc, K, &one, col,
						       (int)cP, (long long)P, w, K, 0, &beta, y, P,
						       (long long)g.out_sz, c));
	}
}

static void cu_conv2d_backward(const conv_desc *d, int n, const float *in, const float *w, const float *dout,
			       float *din, float *dw, float *db, float *ws)
{
	if (n <= 0 || !conv_desc_ok(d))
		return;
	const conv_geom g = conv_geometry(d, n);
	const int oc = d->out_c, K = (int)g.K, P = (int)g.P;
	const float one = 1.0f, zero = 0.0f;
	float *col = ws, *dyT = ws + g.col_floats;
	if (db)
		rowsum_add(dout, n, oc, P, g.out_sz, db);
	for (int i0 = 0; i0 < n; i0 += g.chunk) {
		const int c = n - i0 < g.chunk ? n - i0 : g.chunk;
		const size_t cP = (size_t)c * g.P;
		const float *dy = dout + (size_t)i0 * g.out_sz;
		if (dw) {
			LAUNCH_IDX(k_im2col, FITS32(g.K * cP) && FITS32((size_t)c * g.in_sz), grid_for(g.K * cP), *d,
				   in + (size_t)i0 * g.in_sz, c, col);
			LAUNCH_IDX(k_to_channel_major, FITS32((size_t)c * g.out_sz), grid_for((size_t)oc * cP), dy, c, oc,
				   g.P, dyT);
			/* column-major: dW[K x oc] += col[cP x K]^T . dyT[cP x oc] */
			CUBLAS_CHECK(g_blas.sgemm(g_cuda.blas, CUBLAS_OP_T, CUBLAS_OP_N, K, oc, (int)cP, &one, col,
						 (int)cP, dyT, (int)cP, &one, dw, K));
		}
		if (din) {
			/* column-major: dcol_i[P x K] (ld cP, stride P) = dy_i[P x oc] . W[K x oc]^T */
			CUBLAS_CHECK(g_blas.sgemm_strided_batched(g_cuda.blas, CUBLAS_OP_N, CUBLAS_OP_T, P, K, oc, &one,
							       dy, P, (long long)g.out_sz, w, K, 0, &zero, col,
							       (int)cP, (long long)P, c));
			LAUNCH_IDX(k_col2im, FITS32((size_t)c * g.in_sz), grid_for((size_t)c * g.in_sz), *d, col, c,
				   din + (size_t)i0 * g.in_sz);
		}
	}
}

/* ---------------------------------------------------------------- maxpool */

/* The CPU's general loop: the first maximum in scan order wins; argmax indexes the channel plane. */
template <typename I> __global__ void k_maxpool_fwd(pool_desc d, I planes, const float *in, float *out, int32_t *argmax)
{
	const I opl = (I)d.out_h * d.out_w, total = planes * opl;
	const size_t ipl = (size_t)d.in_h * d.in_w;
	GRID_STRIDE_I(I, idx, total)
	{
		const I p = idx / opl, o = idx - p * opl;
		const int oh = (int)(o / (I)d.out_w), ow = (int)(o - (I)oh * d.out_w);
		const float *x = in + (size_t)p * ipl;
		int h0 = oh * d.stride_h, w0 = ow * d.stride_w;
		int h1 = h0 + d.k_h < d.in_h ? h0 + d.k_h : d.in_h;
		int w1 = w0 + d.k_w < d.in_w ? w0 + d.k_w : d.in_w;
		float best = 0.0f;
		int32_t bi = -1;
		for (int ih = h0; ih < h1; ih++)
			for (int iw = w0; iw < w1; iw++) {
				float v = x[(size_t)ih * d.in_w + iw];
				if (bi < 0 || v > best) {
					best = v;
					bi = ih * d.in_w + iw;
				}
			}
		out[idx] = best;
		argmax[idx] = bi;
	}
}

/*
 * Gather form of the CPU's scatter "dx[argmax[o]] += dy[o] for o in order":
 * each input element adds, in increasing o, the outputs whose window holds it
 * and chose it. Same sums in the same order, no atomics.
 */
template <typename I>
__global__ void k_maxpool_bwd(pool_desc d, I planes, const float *dout, const int32_t *argmax, float *din)
{
	const I ipl = (I)d.in_h * d.in_w, total = planes * ipl;
	const size_t opl = (size_t)d.out_h * d.out_w;
	GRID_STRIDE_I(I, idx, total)
	{
		const I p = idx / ipl;
		const int j = (int)(idx - p * ipl);
		int ih = j / d.in_w, iw = j % d.in_w;
		int oh0 = ih - d.k_h + 1 <= 0 ? 0 : (ih - d.k_h + 1 + d.stride_h - 1) / d.stride_h;
		int oh1 = ih / d.stride_h < d.out_h - 1 ? ih / d.stride_h : d.out_h - 1;
		int ow0 = iw - d.k_w + 1 <= 0 ? 0 : (iw - d.k_w + 1 + d.stride_w - 1) / d.stride_w;
		int ow1 = iw / d.stride_w < d.out_w - 1 ? iw / d.stride_w : d.out_w - 1;
		const int32_t *a = argmax + (size_t)p * opl;
		const float *dy = dout + (size_t)p * opl;
		float s = 0.0f;
		for (int oh = oh0; oh <= oh1; oh++)
			for (int ow = ow0; ow <= ow1; ow++) {
				size_t o = (size_t)oh * d.out_w + ow;
				if (a[o] == j)
					s += dy[o];
			}
		din[idx] = s;
	}
}

static void cu_maxpool_forward(const pool_desc *d, int n, const float *in, float *out, int32_t *argmax)
{
	size_t planes = (size_t)(n > 0 ? n : 0) * (size_t)d->c, total = planes * d->out_h * d->out_w;
	if (!total || d->stride_h <= 0 || d->stride_w <= 0)
		return;
	LAUNCH_IDX(k_maxpool_fwd, FITS32(total) && FITS32(planes * d->in_h * d->in_w), grid_for(total), *d, planes, in,
		   out, argmax);
}

static void cu_maxpool_backward(const pool_desc *d, int n, const float *dout, const int32_t *argmax, float *din)
{
	size_t planes = (size_t)(n > 0 ? n : 0) * (size_t)d->c, total = planes * d->in_h * d->in_w;
	if (!total || d->stride_h <= 0 || d->stride_w <= 0)
		return;
	LAUNCH_IDX(k_maxpool_bwd, FITS32(total), grid_for(total), *d, planes, dout, argmax, din);
}

/* ---------------------------------------------------------------- dense */

/* out[i][o] = b[o] (filled first, then sgemm adds with beta 1, as the CPU does). */
__global__ void k_fill_rows(float *out, const float *b, int n, int out_f)
{
	const size_t total = (size_t)n * out_f;
	GRID_STRIDE(idx, total)
	out[idx] = b[idx % (size_t)out_f];
}

static void cu_dense_forward(int n, int in_f, int out_f, const float *in, const float *w, const float *b, float *out)
{
	if (n <= 0 || out_f <= 0)
		return;
	const float one = 1.0f;
	float beta = 0.0f;
	if (b) {
		k_fill_rows<<<grid_for((size_t)n * out_f), THREADS, 0, g_cuda.stream>>>(out, b, n, out_f);
		CUDA_CHECK_LAUNCH();
		beta = 1.0f;
	}
	if (in_f <= 0) {
		if (!b)
			CUDA_CHECK(cudaMemsetAsync(out, 0, (size_t)n * out_f * sizeof(float), g_cuda.stream));
		return;
	}
	/* column-major: out[out_f x n] = w[in_f x out_f]^T . in[in_f x n] */
	CUBLAS_CHECK(g_blas.sgemm(g_cuda.blas, CUBLAS_OP_T, CUBLAS_OP_N, out_f, n, in_f, &one, w, in_f, in, in_f, &beta,
				 out, out_f));
}

static void cu_dense_backward(int n, int in_f, int out_f, const float *in, const float *w, const float *dout,
			      float *din, float *dw, float *db)
{
	if (n <= 0 || out_f <= 0 || in_f <= 0)
		return;
	const float one = 1.0f, zero = 0.0f;
	if (db)
		rowsum_add(dout, n, out_f, 1, (size_t)out_f, db);
	/* column-major: dw[in_f x out_f] += in[in_f x n] . dout[out_f x n]^T */
	if (dw)
		CUBLAS_CHECK(g_blas.sgemm(g_cuda.blas, CUBLAS_OP_N, CUBLAS_OP_T, in_f, out_f, n, &one, in, in_f, dout,
					 out_f, &one, dw, in_f));
	/* column-major: din[in_f x n] = w[in_f x out_f] . dout[out_f x n] */
	if (din)
		CUBLAS_CHECK(g_blas.sgemm(g_cuda.blas, CUBLAS_OP_N, CUBLAS_OP_N, in_f, n, out_f, &one, w, in_f, dout,
					 out_f, &zero, din, in_f));
}

/* ---------------------------------------------------------------- loss */

/*
 * One warp per sample. The maximum and its first index (the CPU's strict '>'
 * scan from z[0]: NaNs never win unless z[0] is one), the sum of exponentials
 * in double, the per-sample loss log(s) - (z[y] - m), and the gradient
 * (float)(exp(z_j - m) / s) - onehot, each with the CPU's expressions.
 */
__global__ void k_softmax_xent(int n, int classes, const float *logits, const uint8_t *labels, float *dlogits,
			       double *loss, int *correct)
{
	const int warp = (int)(((size_t)blockIdx.x * blockDim.x + threadIdx.x) / 32), lane = threadIdx.x & 31;
	if (warp >= n)
		return; /* whole warps leave together: blockDim is a multiple of 32 */
	const float *z = logits + (size_t)warp * classes;
	float m = -INFINITY;
	int am = 0x7fffffff;
	for (int j = lane; j < classes; j += 32) {
		float v = z[j];
		if (v > m || (v == m && j < am)) {
			m = v;
			am = j;
		}
	}
	for (int off = 16; off > 0; off >>= 1) {
		float m2 = __shfl_xor_sync(0xffffffffu, m, off);
		int a2 = __shfl_xor_sync(0xffffffffu, am, off);
		if (m2 > m || (m2 == m && a2 < am)) {
			m = m2;
			am = a2;
		}
	}
	const float z0 = z[0];
	if (z0 != z0 || am == 0x7fffffff) { /* z[0] NaN, or every logit NaN: the CPU keeps z[0] */
		m = z0;
		am = 0;
	}
	const double md = (double)m;
	double s = 0.0;
	for (int j = lane; j < classes; j += 32)
		s += exp((double)z[j] - md);
	for (int off = 16; off > 0; off >>= 1)
		s += __shfl_xor_sync(0xffffffffu, s, off);
	const int y = labels[warp];
	if (dlogits) {
		float *g = dlogits + (size_t)warp * classes;
		for (int j = lane; j < classes; j += 32)
			g[j] = (float)(exp((double)z[j] - md) / s) - (j == y ? 1.0f : 0.0f);
	}
	if (lane == 0) {
		loss[warp] = log(s) - ((double)z[y] - md);
		correct[warp] = am == y;
	}
}

/* Sync point: the per-sample results come back to the host and are summed in sample order, as on the CPU. */
static void cu_softmax_xent(int n, int classes, const float *logits, const uint8_t *labels, float *dlogits,
			    double *loss_sum, int *correct)
{
	double loss = 0.0;
	int ok = 0;
	if (n > 0 && classes > 0) {
		cuda_reserve_loss((size_t)n);
		const uint8_t *dl = (const uint8_t *)cuda_stage_upload(&g_cuda.labels, labels, (size_t)n);
		const int per_block = THREADS / 32;
		k_softmax_xent<<<(unsigned)((n + per_block - 1) / per_block), THREADS, 0, g_cuda.stream>>>(
			n, classes, logits, dl, dlogits, g_cuda.d_loss, g_cuda.d_correct);
		CUDA_CHECK_LAUNCH();
		CUDA_CHECK(cudaMemcpyAsync(g_cuda.h_loss, g_cuda.d_loss, (size_t)n * sizeof(double),
					   cudaMemcpyDeviceToHost, g_cuda.stream));
		CUDA_CHECK(cudaMemcpyAsync(g_cuda.h_correct, g_cuda.d_correct, (size_t)n * sizeof(int),
					   cudaMemcpyDeviceToHost, g_cuda.stream));
		CUDA_CHECK(cudaStreamSynchronize(g_cuda.stream));
		for (int i = 0; i < n; i++) {
			loss += g_cuda.h_loss[i];
			ok += g_cuda.h_correct[i];
		}
	}
	if (loss_sum)
		*loss_sum = loss;
	if (correct)
		*correct = ok;
}

/* ---------------------------------------------------------------- gather */

template <typename I>
__global__ void k_gather(const uint8_t *images, const uint32_t *idx, int n, I pixels, float scale, float *out)
{
	const I total = (I)n * pixels;
	GRID_STRIDE_I(I, t, total)
	{
		const I i = t / pixels, j = t - i * pixels;
		out[t] = (float)images[(size_t)idx[i] * pixels + j] * scale;
	}
}

static void cu_gather_images(const uint8_t *images, const uint32_t *idx, int n, size_t pixels, float scale,
			     float *out)
{
	if (n <= 0 || pixels == 0)
		return;
	const uint32_t *di = (const uint32_t *)cuda_stage_upload(&g_cuda.samples, idx, (size_t)n * sizeof(uint32_t));
	LAUNCH_IDX(k_gather, FITS32((size_t)n * pixels), grid_for((size_t)n * pixels), images, di, n, pixels, scale, out);
}

/* ---------------------------------------------------------------- optimizers */

/*
 * optim.c's element functions, operation for operation (see its comments for
 * the torch.optim formulas). mode: 0 plain, 1 momentum, 2 Nesterov.
 */
__global__ void k_sgd(size_t n, float *__restrict__ p, const float *__restrict__ g, float *__restrict__ b, float wd,
		      float mu, float neg_lr, int decay, int mode)
{
	GRID_STRIDE(i, n)
	{
		const float gi = decay ? g[i] + wd * p[i] : g[i];
		float di = gi;
		if (mode != 0) {
			const float bi = mu * b[i] + gi;
			b[i] = bi;
			di = mode == 2 ? gi + mu * bi : bi;
		}
		p[i] = p[i] + neg_lr * di;
	}
}

typedef struct adam_k {
	float keep, wd, b1, one_b1, b2, one_b2, eps, neg_step, bc2_sqrt;
} adam_k;

__global__ void k_adam(size_t n, float *__restrict__ p, const float *__restrict__ g, float *__restrict__ m,
		       float *__restrict__ v, adam_k k, int l2)
{
	GRID_STRIDE(i, n)
	{
		const float pd = l2 ? p[i] : p[i] * k.keep;
		const float gi = l2 ? g[i] + k.wd * pd : g[i];
		const float mi = k.b1 * m[i] + k.one_b1 * gi;
		const float vi = k.b2 * v[i] + k.one_b2 * gi * gi;
		m[i] = mi;
		v[i] = vi;
		const float denom = sqrtf(vi) / k.bc2_sqrt + k.eps;
		p[i] = pd + k.neg_step * mi / denom;
	}
}

__global__ void k_adadelta(size_t n, float *__restrict__ p, const float *__restrict__ g, float *__restrict__ sq,
			   float *__restrict__ acc, float wd, float rho, float one_rho, float eps, float neg_lr,
			   int decay)
{
	GRID_STRIDE(i, n)
	{
		const float gi = decay ? g[i] + wd * p[i] : g[i];
		const float si = rho * sq[i] + one_rho * gi * gi;
		sq[i] = si;
		const float std = sqrtf(si + eps);
		const float di = sqrtf(acc[i] + eps) / std * gi;
		acc[i] = rho * acc[i] + one_rho * di * di;
		p[i] = p[i] + neg_lr * di;
	}
}

/* optim_step() of optim.c on device buffers: same checks, same host-side scalars. */
static void cu_optim_step(const optim_config *c, float lr, long t, size_t n, float *params, const float *grads,
			  float *const *states)
{
	if (n == 0)
		return;
	if (!c || !params || !grads) {
		log_error("optim_step (cuda): NULL %s (a bug in the caller); parameters left unchanged",
			  !c ? "config" : !params ? "parameters" : "gradients");
		return;
	}
	const int ns = optim_n_states(c);
	for (int i = 0; i < ns; i++) {
		if (!states || !states[i]) {
			log_error("optim_step (cuda): %s state buffer %d (%s) missing (a bug in the caller); "
				  "parameters left unchanged",
				  optim_kind_name(c->kind), i, optim_state_name(c, i));
			return;
		}
	}
	if (t < 1)
		t = 1;
	const unsigned grid = grid_for(n);
	switch (c->kind) {
	case OPT_SGD: {
		const int mode = ns == 0 ? 0 : c->nesterov ? 2 : 1;
		k_sgd<<<grid, THREADS, 0, g_cuda.stream>>>(n, params, grads, ns ? states[0] : NULL, c->weight_decay,
							   c->momentum, -lr, c->weight_decay != 0.0f, mode);
		CUDA_CHECK_LAUNCH();
		return;
	}
	case OPT_ADAM:
	case OPT_ADAMW: {
		const bool decoupled = c->kind == OPT_ADAMW;
		const double bc1 = 1.0 - pow((double)c->beta1, (double)t);
		const double bc2 = 1.0 - pow((double)c->beta2, (double)t);
		adam_k k;
		k.keep = decoupled ? (float)(1.0 - (double)lr * (double)c->weight_decay) : 1.0f;
		k.wd = c->weight_decay;
		k.b1 = c->beta1;
		k.one_b1 = (float)(1.0 - (double)c->beta1);
		k.b2 = c->beta2;
		k.one_b2 = (float)(1.0 - (double)c->beta2);
		k.eps = c->eps;
		k.neg_step = (float)(-(double)lr / bc1);
		k.bc2_sqrt = (float)sqrt(bc2);
		k_adam<<<grid, THREADS, 0, g_cuda.stream>>>(n, params, grads, states[0], states[1], k,
							    !decoupled && k.wd != 0.0f);
		CUDA_CHECK_LAUNCH();
		return;
	}
	case OPT_ADADELTA: {
		const float one_rho = (float)(1.0 - (double)c->rho);
		k_adadelta<<<grid, THREADS, 0, g_cuda.stream>>>(n, params, grads, states[0], states[1],
								c->weight_decay, c->rho, one_rho, c->eps, -lr,
								c->weight_decay != 0.0f);
		CUDA_CHECK_LAUNCH();
		return;
	}
	}
	log_error("optim_step (cuda): unknown optimizer kind %d (a bug in the caller); parameters left unchanged",
		  (int)c->kind);
}

/* ---------------------------------------------------------------- layer kinds by name */

/*
 * Kernels of the layer kinds outside the fixed entries of the backend table
 * (src/layers/README.md), one section per kind with the contract of its
 * file in src/layers/, and one row per kind in cu_layer_table below.
 */

/* leaky_relu (src/layers/leaky_relu.c): attr[0] = slope; the CPU's expressions, bit for bit. */
__global__ void k_leaky_relu_fwd(size_t n, float slope, const float *in, float *out)
{
	GRID_STRIDE(i, n)
	{
		float v = in[i];
		out[i] = v > 0.0f ? v : v * slope;
	}
}

__global__ void k_leaky_relu_bwd(size_t n, float slope, const float *in, const float *dout, float *din)
{
	GRID_STRIDE(i, n)
	{
		float g = dout[i];
		din[i] = in[i] > 0.0f ? g : g * slope;
	}
}

static void cu_leaky_relu_forward(const backend *be, const layer_call *c)
{
	(void)be;
	const size_t count = (size_t)(c->n > 0 ? c->n : 0) * c->out_numel;
	if (!count)
		return;
	k_leaky_relu_fwd<<<grid_for(count), THREADS, 0, g_cuda.stream>>>(count, c->attr[0], c->in, c->y);
	CUDA_CHECK_LAUNCH();
}

static void cu_leaky_relu_backward(const backend *be, const layer_call *c)
{
	(void)be;
	const size_t count = (size_t)(c->n > 0 ? c->n : 0) * c->out_numel;
	if (!count || !c->din)
		return;
	k_leaky_relu_bwd<<<grid_for(count), THREADS, 0, g_cuda.stream>>>(count, c->attr[0], c->in, c->dout, c->din);
	CUDA_CHECK_LAUNCH();
}

static const layer_kernels cu_leaky_relu = {cu_leaky_relu_forward, cu_leaky_relu_backward};

/* add (src/layers/add.c): y = ins[0] + ins[1] (+ ins[2]) (+ ins[3]), added in the CPU's order
 * (y may be ins[0]); backward copies dout into each d(input) asked for. */
__global__ void k_add_fwd(size_t n, int n_in, const float *a, const float *b, const float *c, const float *d,
			  float *y)
{
	GRID_STRIDE(i, n)
	{
		float s = a[i] + b[i];
		if (n_in > 2)
			s += c[i];
		if (n_in > 3)
			s += d[i];
		y[i] = s;
	}
}

__global__ void k_copy(size_t n, const float *src, float *dst)
{
	GRID_STRIDE(i, n)
	dst[i] = src[i];
}

static void cu_add_forward(const backend *be, const layer_call *c)
{
	(void)be;
	const size_t count = (size_t)(c->n > 0 ? c->n : 0) * c->out_numel;
	if (!count || c->n_in < 2 || c->n_in > LAYER_CALL_MAX_IN)
		return;
	k_add_fwd<<<grid_for(count), THREADS, 0, g_cuda.stream>>>(count, c->n_in, c->ins[0], c->ins[1], c->ins[2],
								     c->ins[3], c->y);
	CUDA_CHECK_LAUNCH();
}

static void cu_add_backward(const backend *be, const layer_call *c)
{
	(void)be;
	const size_t count = (size_t)(c->n > 0 ? c->n : 0) * c->out_numel;
	for (int k = 0; count && k < c->n_in && k < LAYER_CALL_MAX_IN; k++) {
		if (!c->dins[k] || c->dins[k] == c->dout)
			continue;
		k_copy<<<grid_for(count), THREADS, 0, g_cuda.stream>>>(count, c->dout, c->dins[k]);
		CUDA_CHECK_LAUNCH();
	}
}

static const layer_kernels cu_add = {cu_add_forward, cu_add_backward};

/* concat (src/layers/concat.c): per sample, input k's ins_numel[k] floats at offset off of the
 * output's out_numel; put copies them in (forward), take copies them out (backward). */
__global__ void k_slice_put(size_t total, size_t per, size_t out_numel, size_t off, const float *src, float *y)
{
	GRID_STRIDE(i, total)
	y[(i / per) * out_numel + off + i % per] = src[i];
}

__global__ void k_slice_take(size_t total, size_t per, size_t out_numel, size_t off, const float *dy, float *dst)
{
	GRID_STRIDE(i, total)
	dst[i] = dy[(i / per) * out_numel + off + i % per];
}

static void cu_concat_forward(const backend *be, const layer_call *c)
{
	(void)be;
	size_t off = 0;
	for (int k = 0; c->n > 0 && k < c->n_in && k < LAYER_CALL_MAX_IN; k++) {
		const size_t per = c->ins_numel[k], total = (size_t)c->n * per;
		if (total) {
			k_slice_put<<<grid_for(total), THREADS, 0, g_cuda.stream>>>(total, per, c->out_numel, off,
										    c->ins[k], c->y);
			CUDA_CHECK_LAUNCH();
		}
		off += per;
	}
}

static void cu_concat_backward(const backend *be, const layer_call *c)
{
	(void)be;
	size_t off = 0;
	for (int k = 0; c->n > 0 && k < c->n_in && k < LAYER_CALL_MAX_IN; k++) {
		const size_t per = c->ins_numel[k], total = (size_t)c->n * per;
		if (total && c->dins[k]) {
			k_slice_take<<<grid_for(total), THREADS, 0, g_cuda.stream>>>(total, per, c->out_numel, off,
										     c->dout, c->dins[k]);
			CUDA_CHECK_LAUNCH();
		}
		off += per;
	}
}

static const layer_kernels cu_concat = {cu_concat_forward, cu_concat_backward};

/* The kinds this backend runs by name; a kind missing here is refused at start, naming the layer. */
static const struct {
	const char *kind;
	const layer_kernels *k;
} cu_layer_table[] = {
	{"leaky_relu", &cu_leaky_relu},
	{"add", &cu_add},
	{"concat", &cu_concat},
};

static const layer_kernels *cu_layer_kernels(const backend *be, const char *kind)
{
	(void)be;
	for (size_t i = 0; i < sizeof cu_layer_table / sizeof cu_layer_table[0]; i++)
		if (strcmp(cu_layer_table[i].kind, kind) == 0)
			return cu_layer_table[i].k;
	return NULL;
}

/* ---------------------------------------------------------------- table */

extern "C" void cuda_ops_fill(backend *be)
{
	be->conv2d_workspace = cu_conv2d_workspace;
	be->conv2d_forward = cu_conv2d_forward;
	be->conv2d_backward = cu_conv2d_backward;
	be->maxpool_forward = cu_maxpool_forward;
	be->maxpool_backward = cu_maxpool_backward;
	be->relu_forward = cu_relu_forward;
	be->relu_backward = cu_relu_backward;
	be->dropout_forward = cu_dropout_forward;
	be->dropout_backward = cu_dropout_backward;
	be->dense_forward = cu_dense_forward;
	be->dense_backward = cu_dense_backward;
	be->softmax_xent = cu_softmax_xent;
	be->gather_images = cu_gather_images;
	be->optim_step = cu_optim_step;
	be->layer_kernels = cu_layer_kernels;
	be->scale = cu_scale;
	be->zero = cu_zero;
}

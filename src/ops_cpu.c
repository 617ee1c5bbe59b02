/*
 * ops_cpu.c - the CPU backend: the reference the GPU backend is tested
 * against, and fast enough to train on its own.
 *
 * Arithmetic: every product (conv as im2col + GEMM, dense) is kern_gemm of
 * src/kernels/, whose one summation order gives the same bits on every ISA
 * (portable, AVX2, AVX-512) and thread count; exp and log of the loss are
 * kern_exp and kern_log (DESIGN.md invariant 1). No BLAS in the compute path.
 *
 * Threading: in training each gradient shard runs on one thread alone
 * (grad.c), so these ops run single-threaded there. Called with a team,
 * conv splits the samples of a batch for the forward and the input
 * gradient; weight and bias gradients accumulate sample after sample with
 * the team splitting the columns of the product, and dense layers split
 * the columns of theirs: never a sum, so the bits do not depend on it.
 *
 * Layouts and conventions: see ops.h.
 */
#define _GNU_SOURCE /* sched_getaffinity, CPU_COUNT */

#include "ops.h"
#include "optim.h"
#include "philox.h"
#include "kernels/kernels.h"

#include <immintrin.h>
#include <math.h>
#include <omp.h>
#include <sched.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Element-wise loops below this size run on one thread: a parallel region costs microseconds. */
#define PAR_MIN_ELEMS ((size_t)1 << 15)
/* Dense layers below this many multiply-adds run on one thread. */
#define PAR_MIN_MACS ((size_t)1 << 18)

/* The thread count of this backend; 0 until first resolved. */
static int g_threads;

static int cpus_available(void)
{
	cpu_set_t set;
	if (sched_getaffinity(0, sizeof set, &set) == 0) {
		int c = CPU_COUNT(&set);
		if (c > 0)
			return c;
	}
	long c = sysconf(_SC_NPROCESSORS_ONLN);
	return c > 0 ? (int)c : 1;
}

void backend_cpu_set_threads(int threads)
{
	if (threads <= 0)
		threads = cpus_available();
	g_threads = threads;
	/* A fixed team size: the sample partition (and so the summation order) depends on it. */
	omp_set_dynamic(0);
	omp_set_num_threads(threads);
}

int backend_cpu_threads(void)
{
	if (g_threads <= 0)
		backend_cpu_set_threads(0);
	return g_threads;
}

/* First index of part t of [0, n) split into nt contiguous parts of sizes differing by at most one. */
static inline size_t part_lo(size_t n, int t, int nt)
{
	return n * (size_t)t / (size_t)nt;
}

/* Whether a parallel region opened here would run on one thread (a shard's thread in grad.c). */
static bool nested_serial(void)
{
	return omp_get_active_level() >= omp_get_max_active_levels();
}

/* Floats rounded up to whole 64-byte lines, so per-thread slices stay aligned and apart. */
static inline size_t round_line(size_t floats)
{
	return (floats + 15) & ~(size_t)15;
}

/* ---------------------------------------------------------------- conv2d */

static size_t conv_k(const conv_desc *d)
{
	return (size_t)d->in_c * (size_t)d->k_h * (size_t)d->k_w;
}

static size_t conv_in_numel(const conv_desc *d)
{
	return (size_t)d->in_c * (size_t)d->in_h * (size_t)d->in_w;
}

static size_t conv_out_plane(const conv_desc *d)
{
	return (size_t)d->out_h * (size_t)d->out_w;
}

/* A descriptor the loops below can run on without dividing by zero or indexing out of bounds. */
static bool conv_desc_ok(const conv_desc *d)
{
	return d->in_c > 0 && d->in_h > 0 && d->in_w > 0 && d->out_c > 0 && d->out_h > 0 &&
	       d->out_w > 0 && d->k_h > 0 && d->k_w > 0 && d->stride_h > 0 && d->stride_w > 0;
}

/* A 1x1, stride-1, unpadded conv is a plain matrix product on the input: no im2col. */
static bool conv_is_pointwise(const conv_desc *d)
{
	return d->k_h == 1 && d->k_w == 1 && d->stride_h == 1 && d->stride_w == 1 &&
	       d->pad_top == 0 && d->pad_left == 0 && d->out_h == d->in_h && d->out_w == d->in_w;
}

/* The im2col buffer: K rows of the patches. */
static size_t conv_col_floats(const conv_desc *d)
{
	return round_line(conv_k(d) * conv_out_plane(d));
}

/* Outputs [lo, hi) (of n_out) whose input o*stride + off lies in [0, n_in); lo <= hi. */
static void conv_valid_range(int n_in, int n_out, int stride, int off, int *lo, int *hi)
{
	int l = off >= 0 ? 0 : (-off + stride - 1) / stride;
	int h = n_in - off <= 0 ? 0 : (n_in - off - 1) / stride + 1;
	if (h > n_out)
		h = n_out;
	if (l > h)
		l = h;
	*lo = l;
	*hi = h;
}

/* Output columns [lo, hi) whose input column for kernel column kj lies inside the image. */
static void conv_valid_cols(const conv_desc *d, int kj, int *lo, int *hi)
{
	conv_valid_range(d->in_w, d->out_w, d->stride_w, kj - d->pad_left, lo, hi);
}

/*
 * Implicit GEMM on column-shifted planes (stride 1, padding at most kernel - 1 on each side):
 * for each kernel column kj, S_kj[c][r][ow] = x[c][r - pad_top][ow + kj - pad_left] (zero
 * outside the image), hp = out_h + k_h - 1 rows of out_w floats. Patch row (c, ki, kj) of the
 * patch matrix is then S_kj from one offset, ((kj * in_c + c) * hp + ki) * out_w, read over the
 * P = out_h * out_w output positions in order: the values im2col would copy, at a copy of k_w
 * times the input instead of k_h * k_w times (kernels.h's row table: brow/arow), and no column
 * computed and thrown away (a 32-column panel runs on from one output row into the next), so
 * the forward writes y in place and the weight gradient reads dy as it is. The same B (or A)
 * values as im2col's, hence the same bits. When out_w == in_w ('same' convs) a channel's
 * shifted plane is one contiguous copy of its image moved by kj - pad_left floats, then the
 * columns that wrapped in from the neighbouring row are zeroed; otherwise one row copy call.
 * The zero rows above and below the image (and, for the row copy, the zero columns beside it)
 * are the same for every sample: written with a call's first sample only.
 */
typedef struct conv_geom {
	int hp;       /* rows of a shifted plane */
	size_t plane; /* floats of one channel's shifted plane: hp * out_w */
} conv_geom;

static bool conv_implicit_geom(const conv_desc *d, conv_geom *g)
{
	if (d->stride_h != 1 || d->stride_w != 1 || conv_is_pointwise(d))
		return false;
	const int pb = d->out_h + d->k_h - 1 - d->in_h - d->pad_top, pr = d->out_w + d->k_w - 1 - d->in_w - d->pad_left;
	if (d->pad_top < 0 || d->pad_left < 0 || pb < 0 || pr < 0 || d->pad_top >= d->k_h || d->pad_left >= d->k_w ||
	    pb >= d->k_h || pr >= d->k_w)
		return false;
	g->hp = d->out_h + d->k_h - 1;
	g->plane = (size_t)g->hp * (size_t)d->out_w;
	return true;
}

/* Floats of the shifted planes: k_w sets of in_c planes. */
static size_t conv_planes_floats(const conv_desc *d, const conv_geom *g)
{
	return (size_t)d->k_w * (size_t)d->in_c * g->plane;
}

/* Floats after the col and gT parts: the shifted planes and the row table. */
static size_t conv_implicit_floats(const conv_desc *d)
{
	conv_geom g;
	if (!conv_implicit_geom(d, &g))
		return 0;
	return round_line(conv_planes_floats(d, &g)) + round_line(conv_k(d) * (sizeof(ptrdiff_t) / sizeof(float)));
}

/* The im2col buffer (reused for the column gradient), then the transposed weight gradient
 * [K][oc] that backward accumulates in, then the implicit parts. */
static size_t conv_slot_base_floats(const conv_desc *d)
{
	return conv_col_floats(d) + round_line(conv_k(d) * (size_t)d->out_c) + conv_implicit_floats(d);
}

/* Columns rounded up to whole panels of the widest tile (32): what a product over them costs. */
static size_t conv_panel_cols(size_t cols)
{
	return (cols + 31) / 32 * 32;
}

/*
 * The input gradient of a stride-1 conv as a convolution of its own: dx is dy correlated
 * with the kernel transposed and flipped, wf[c][o][k_h-1-ki][k_w-1-kj] = w[o][c][ki][kj],
 * over dy padded by k-1-pad. Each dx element is then one fma chain over (o, ki, kj) of the
 * flipped kernel from +0.0 (a tap in the padding adds fma(w, 0): the chain's value stays as
 * it is), run by the forward's implicit GEMM with K = oc*k_h*k_w, instead of a product with
 * K = oc and a col2im pass. Taken when the correlation's outputs (the conv's input plane) are
 * at most 9/8 of the conv's outputs in whole 32-column panels: 'same' convs, not mnist_cnn's
 * 'valid' ones, whose full correlation would multiply the zero border too. *t is the
 * correlation.
 */
static bool conv_dx_by_correlation(const conv_desc *d, conv_desc *t)
{
	conv_geom g, tg;
	if (!conv_implicit_geom(d, &g))
		return false;
	*t = (conv_desc){d->out_c, d->out_h, d->out_w, d->in_c, d->in_h, d->in_w, d->k_h, d->k_w, 1, 1,
			 d->k_h - 1 - d->pad_top, d->k_w - 1 - d->pad_left, 0};
	if (!conv_implicit_geom(t, &tg))
		return false;
	return conv_panel_cols(conv_out_plane(t)) * 8 <= conv_panel_cols(conv_out_plane(d)) * 9;
}

bool cpu_conv2d_dx_by_correlation(const conv_desc *d)
{
	conv_desc t;
	return conv_desc_ok(d) && conv_dx_by_correlation(d, &t);
}

/* One thread's slice: the base parts, then (when dx is a correlation) the correlation's base
 * parts, its flipped kernel (read from slice 0 by every thread) and the weight gradient's row
 * table into the correlation's planes (conv_bwd_weights_dy). */
static size_t conv_slot_floats(const conv_desc *d)
{
	conv_desc t;
	size_t f = conv_slot_base_floats(d);
	if (conv_dx_by_correlation(d, &t))
		f += conv_slot_base_floats(&t) + round_line(conv_k(d) * (size_t)d->out_c) +
		     round_line(conv_k(&t) * (sizeof(ptrdiff_t) / sizeof(float)));
	return f;
}

/* The implicit parts of a slot: the shifted planes, then the row table. */
static float *conv_slot_planes(const conv_desc *d, float *slot)
{
	return slot + conv_col_floats(d) + round_line(conv_k(d) * (size_t)d->out_c);
}

static ptrdiff_t *conv_slot_table(const conv_desc *d, const conv_geom *g, float *slot)
{
	return (ptrdiff_t *)(void *)(conv_slot_planes(d, slot) + round_line(conv_planes_floats(d, g)));
}

/* Column j of rows rows of w floats = 0. */
static void zero_column(float *p, int rows, int w, int j)
{
	for (int r = 0; r < rows; r++)
		p[(size_t)r * w + j] = 0.0f;
}

/* Columns [0, lo) and [hi, w) = 0, a column at a time (usually one float a row: as a loop per
 * row, GCC made each a memset call). */
static void zero_row_ends(float *p, int rows, int w, int lo, int hi)
{
	for (int j = 0; j < lo; j++)
		zero_column(p, rows, w, j);
	for (int j = hi; j < w; j++)
		zero_column(p, rows, w, j);
}

/* The shifted planes of x (conv_geom) in s; borders: also the zeros around the image. */
static void conv_shift_planes(const conv_desc *d, const conv_geom *g, const float *x, float *s, bool borders)
{
	const int W = d->out_w, H = d->in_h, pt = d->pad_top;
	const size_t in_plane = (size_t)H * d->in_w;
	for (int kj = 0; kj < d->k_w; kj++) {
		int lo, hi;
		conv_valid_cols(d, kj, &lo, &hi);
		const ptrdiff_t sh = kj - d->pad_left;
		for (int c = 0; c < d->in_c; c++) {
			float *p = s + ((size_t)kj * d->in_c + c) * g->plane, *r0 = p + (size_t)pt * W;
			const float *xc = x + (size_t)c * in_plane;
			if (borders) {
				memset(p, 0, sizeof(float) * (size_t)pt * W);
				memset(r0 + (size_t)H * W, 0, sizeof(float) * (size_t)(g->hp - pt - H) * W);
			}
			if (lo >= hi) {
				if (borders)
					memset(r0, 0, sizeof(float) * (size_t)H * W);
			} else if (W == d->in_w) {
				/* |sh| < W here: the floats the copy leaves out at either end are wrapped columns */
				const size_t a = sh < 0 ? (size_t)-sh : 0, b = sh > 0 ? in_plane - (size_t)sh : in_plane;
				memcpy(r0 + a, xc + (ptrdiff_t)a + sh, sizeof(float) * (b - a));
				zero_row_ends(r0, H, W, lo, hi);
			} else {
				kern_copy_rows(H, hi - lo, xc + lo + sh, d->in_w, r0 + lo, W);
				if (borders)
					zero_row_ends(r0, H, W, lo, hi);
			}
		}
	}
}

/* tab[k] = the offset in the shifted planes of patch row k = (c, ki, kj). */
static void conv_row_table(const conv_desc *d, const conv_geom *g, ptrdiff_t *tab)
{
	ptrdiff_t *t = tab;
	for (int c = 0; c < d->in_c; c++)
		for (int ki = 0; ki < d->k_h; ki++)
			for (int kj = 0; kj < d->k_w; kj++)
				*t++ = (ptrdiff_t)(((size_t)kj * d->in_c + c) * g->plane) + (ptrdiff_t)ki * d->out_w;
}

/* Row o of y (n floats each) = b[o], the value every output's chain starts from. */
static void fill_bias_rows(float *y, int rows, size_t n, const float *b)
{
	for (int o = 0; o < rows; o++) {
		float *yo = y + (size_t)o * n, bo = b[o];
		for (size_t p = 0; p < n; p++)
			yo[p] = bo;
	}
}

/* Threads a conv call over n samples uses: never more than samples. */
static int conv_team(int n)
{
	int t = nested_serial() ? 1 : backend_cpu_threads();
	return n < t ? (n < 1 ? 1 : n) : t;
}

/* x[0, n) = 0: short runs inline (im2col has many of one or two floats), long ones by memset. */
static inline void zero_floats(float *x, size_t n)
{
	if (n > 16) {
		memset(x, 0, sizeof(float) * n);
		return;
	}
	for (size_t i = 0; i < n; i++)
		x[i] = 0.0f;
}

/* Output rows [oh0, oh1) whose input row for kernel row ki lies inside the image; 0 if none. */
static bool conv_valid_rows(const conv_desc *d, int ki, int *oh0, int *oh1)
{
	conv_valid_range(d->in_h, d->out_h, d->stride_h, ki - d->pad_top, oh0, oh1);
	return *oh0 < *oh1;
}

/*
 * col[(c*kh + ki)*kw + kj][oh*out_w + ow] = x[c][oh*sh - pad_top + ki][ow*sw - pad_left + kj],
 * zero outside the image. Reads only inside x, whatever the descriptor says.
 */
static void im2col(const conv_desc *d, const float *x, float *col)
{
	const int ow_n = d->out_w, sw = d->stride_w;
	const size_t plane = (size_t)d->in_h * d->in_w, opl = conv_out_plane(d);
	for (int c = 0; c < d->in_c; c++) {
		const float *xc = x + (size_t)c * plane;
		for (int ki = 0; ki < d->k_h; ki++) {
			for (int kj = 0; kj < d->k_w; kj++) {
				float *row = col + ((size_t)(c * d->k_h + ki) * d->k_w + kj) * opl;
				int lo, hi;
				conv_valid_cols(d, kj, &lo, &hi);
				const int off = kj - d->pad_left;
				int oh0, oh1;
				if ((sw == 1 || sw == 2) && lo < hi && conv_valid_rows(d, ki, &oh0, &oh1)) {
					/* the rows inside the image in one call of the ISA's row copy (stride 2:
					 * of every other float) */
					zero_floats(row, (size_t)oh0 * ow_n);
					zero_floats(row + (size_t)oh1 * ow_n, (size_t)(d->out_h - oh1) * ow_n);
					const int ih0 = oh0 * d->stride_h - d->pad_top + ki;
					(sw == 1 ? kern_copy_rows : kern_copy_rows_s2)(
						oh1 - oh0, hi - lo, xc + (ptrdiff_t)ih0 * d->in_w + off + sw * lo,
						(ptrdiff_t)d->stride_h * d->in_w, row + (size_t)oh0 * ow_n + lo, ow_n);
					for (int oh = oh0; oh < oh1 && (lo > 0 || hi < ow_n); oh++) {
						float *r = row + (size_t)oh * ow_n;
						for (int ow = 0; ow < lo; ow++)
							r[ow] = 0.0f;
						for (int ow = hi; ow < ow_n; ow++)
							r[ow] = 0.0f;
					}
					continue;
				}
				for (int oh = 0; oh < d->out_h; oh++) {
					float *r = row + (size_t)oh * ow_n;
					int ih = oh * d->stride_h - d->pad_top + ki;
					if (ih < 0 || ih >= d->in_h || lo >= hi) {
						memset(r, 0, sizeof(float) * (size_t)ow_n);
						continue;
					}
					/* strides 1 and 2 never get here with an in-image row: the row copy above */
					const float *xr = xc + (size_t)ih * d->in_w;
					for (int ow = 0; ow < lo; ow++)
						r[ow] = 0.0f;
					for (int ow = lo; ow < hi; ow++)
						r[ow] = xr[ow * sw + off];
					for (int ow = hi; ow < ow_n; ow++)
						r[ow] = 0.0f;
				}
			}
		}
	}
}

/* The adjoint of im2col: dx = 0, then dx[...] += col[...] for every in-image tap. */
static void col2im(const conv_desc *d, const float *col, float *dx)
{
	const int ow_n = d->out_w, sw = d->stride_w;
	const size_t plane = (size_t)d->in_h * d->in_w, opl = conv_out_plane(d);
	if (d->stride_h == 1 && d->stride_w == 1) { /* a gather: each dx element summed and written once */
		kern_col2im_s1(&(kern_col2im_args){d->in_c, d->in_h, d->in_w, d->out_h, d->out_w, d->k_h, d->k_w,
						   d->pad_top, d->pad_left, col, dx});
		return;
	}
	memset(dx, 0, sizeof(float) * conv_in_numel(d));
	for (int c = 0; c < d->in_c; c++) {
		float *xc = dx + (size_t)c * plane;
		for (int ki = 0; ki < d->k_h; ki++) {
			for (int kj = 0; kj < d->k_w; kj++) {
				const float *row = col + ((size_t)(c * d->k_h + ki) * d->k_w + kj) * opl;
				int lo, hi;
				conv_valid_cols(d, kj, &lo, &hi);
				const int off = kj - d->pad_left;
				int oh0, oh1;
				if ((sw == 1 || sw == 2) && lo < hi && conv_valid_rows(d, ki, &oh0, &oh1)) {
					/* one input row per output row: one call of the ISA's row add (stride 2: to
					 * every other float) */
					const int ih0 = oh0 * d->stride_h - d->pad_top + ki;
					(sw == 1 ? kern_add_rows : kern_add_rows_s2)(
						oh1 - oh0, hi - lo, row + (size_t)oh0 * ow_n + lo, ow_n,
						xc + (ptrdiff_t)ih0 * d->in_w + off + sw * lo, (ptrdiff_t)d->stride_h * d->in_w);
					continue;
				}
				for (int oh = 0; oh < d->out_h; oh++) {
					int ih = oh * d->stride_h - d->pad_top + ki;
					if (ih < 0 || ih >= d->in_h)
						continue;
					const float *r = row + (size_t)oh * ow_n;
					float *xr = xc + (size_t)ih * d->in_w;
					if (sw == 1) {
						float *xo = xr + off;
#pragma omp simd
						for (int ow = lo; ow < hi; ow++)
							xo[ow] += r[ow];
					} else {
						for (int ow = lo; ow < hi; ow++)
							xr[ow * sw + off] += r[ow];
					}
				}
			}
		}
	}
}

/*
 * Bytes of workspace for a call over n samples: one slice per thread of
 * min(n, backend_cpu_threads()), so it depends on the thread count at the time
 * of the query. Query again after backend_cpu_set_threads().
 */
static size_t cpu_conv2d_workspace(const conv_desc *d, int n)
{
	if (!conv_desc_ok(d))
		return 0;
	return sizeof(float) * conv_slot_floats(d) * (size_t)conv_team(n);
}

/*
 * One sample's patch matrix [K][P], for a product: the shifted planes with *rows their row
 * table (implicit), else col filled by im2col, else x itself (pointwise), *rows NULL. col is
 * the thread's slot; first: the call's first sample on it (the planes' borders and the table
 * are written then and stay for the next samples).
 */
static const float *conv_patches(const conv_desc *d, const float *x, float *col, bool first, const ptrdiff_t **rows)
{
	*rows = NULL;
	conv_geom g;
	if (conv_implicit_geom(d, &g)) {
		float *s = conv_slot_planes(d, col);
		ptrdiff_t *tab = conv_slot_table(d, &g, col);
		conv_shift_planes(d, &g, x, s, first);
		if (first)
			conv_row_table(d, &g, tab);
		*rows = tab;
		return s;
	}
	if (conv_is_pointwise(d))
		return x;
	im2col(d, x, col);
	return col;
}

/* y[oc, P] = b (or 0) + w[oc, K] . col[K, P], one sample (kernels.h's order); first as in
 * conv_patches. */
static void conv_fwd_sample(const conv_desc *d, const float *x, const float *w, const float *b, float *y,
			    float *col, bool first)
{
	const int oc = d->out_c, K = (int)conv_k(d), P = (int)conv_out_plane(d);
	const ptrdiff_t *brow;
	const float *B = conv_patches(d, x, col, first, &brow);
	if (b)
		fill_bias_rows(y, oc, (size_t)P, b);
	/* without a bias every chain starts from +0.0, as if y had been zeroed */
	kern_gemm(&(kern_gemm_args){oc, P, K, w, K, 1, B, brow ? 0 : P, 1, y, P, 1, b == NULL, NULL, brow}, 1);
}

/* y = max(y, 0) over one sample's output, while it is in cache (a fused relu layer). */
static void conv_relu_sample(const conv_desc *d, float *y)
{
	const size_t count = (size_t)d->out_c * conv_out_plane(d);
#pragma omp simd
	for (size_t i = 0; i < count; i++)
		y[i] = y[i] > 0.0f ? y[i] : 0.0f;
}

static void cpu_conv2d_forward(const conv_desc *d, int n, const float *in, const float *w,
			       const float *b, float *out, float *ws)
{
	if (n <= 0 || !conv_desc_ok(d))
		return;
	const size_t in_sz = conv_in_numel(d), out_sz = (size_t)d->out_c * conv_out_plane(d);
	const size_t slot = conv_slot_floats(d);

#pragma omp parallel num_threads(conv_team(n))
	{
		const int t = omp_get_thread_num(), nt = omp_get_num_threads();
		for (size_t i = part_lo((size_t)n, t, nt); i < part_lo((size_t)n, t + 1, nt); i++) {
			conv_fwd_sample(d, in + i * in_sz, w, b, out + i * out_sz, ws + (size_t)t * slot,
					i == part_lo((size_t)n, t, nt));
			if (d->relu)
				conv_relu_sample(d, out + i * out_sz);
		}
	}
}

/*
 * gT[K][oc] += col[K, P] . dy[oc, P]^T for one sample: the weight gradient (transposed),
 * each element a chain of one fma per term in p order. col holds the sample's patches
 * (conv_patches; first as there).
 */
static void conv_bwd_weights(const conv_desc *d, const float *x, const float *dy, float *col, float *gT,
			     int threads, bool first)
{
	const int oc = d->out_c, K = (int)conv_k(d), P = (int)conv_out_plane(d);
	const ptrdiff_t *arow;
	const float *A = conv_patches(d, x, col, first, &arow);
	kern_gemm(&(kern_gemm_args){K, oc, P, A, arow ? 0 : P, 1, dy, 1, P, gT, oc, 1, 0, arow, NULL}, threads);
}

/*
 * db[o] += dy[o, p] over p in increasing order, one rounding per term: the chain a
 * row of ones in the weight product would give (fma(1, dy, s) is the rounded s + dy),
 * eight channels at a time so that the chains overlap.
 */
static void conv_bias_grad(const conv_desc *d, const float *dy, float *db)
{
	const int oc = d->out_c;
	const size_t P = conv_out_plane(d);
	int o = 0;
	for (; o + 8 <= oc; o += 8) {
		float s[8];
		const float *r[8];
		for (int j = 0; j < 8; j++) {
			s[j] = db[o + j];
			r[j] = dy + (size_t)(o + j) * P;
		}
		for (size_t p = 0; p < P; p++)
			for (int j = 0; j < 8; j++)
				s[j] += r[j][p];
		for (int j = 0; j < 8; j++)
			db[o + j] = s[j];
	}
	for (; o < oc; o++) {
		float s = db[o];
		const float *r = dy + (size_t)o * P;
		for (size_t p = 0; p < P; p++)
			s += r[p];
		db[o] = s;
	}
}

/* gT = dw^T (load = 1) or back (load = 0), in 16 x 16 blocks (a whole row of one against a
 * column of the other walked a cache line per element). */
static void conv_grad_transpose(const conv_desc *d, float *dw, float *gT, int load)
{
	const int oc = d->out_c, K = (int)conv_k(d);
	for (int o0 = 0; o0 < oc; o0 += 16)
		for (int k0 = 0; k0 < K; k0 += 16) {
			const int o1 = o0 + 16 < oc ? o0 + 16 : oc, k1 = k0 + 16 < K ? k0 + 16 : K;
			for (int o = o0; o < o1; o++)
				for (int k = k0; k < k1; k++) {
					if (load)
						gT[(size_t)k * oc + o] = dw[(size_t)o * K + k];
					else
						dw[(size_t)o * K + k] = gT[(size_t)k * oc + o];
				}
		}
}

/* g[(o*k_h + ki)*k_w + kj][c] = dw[o][c][ki][kj] (load = 1) or back (load = 0): the layout of
 * conv_bwd_weights_dy's product. */
static void conv_grad_regroup(const conv_desc *d, float *dw, float *g, int load)
{
	const int taps = d->k_h * d->k_w, C = d->in_c;
	for (int o = 0; o < d->out_c; o++)
		for (int c = 0; c < C; c++)
			for (int k = 0; k < taps; k++) {
				float *a = &dw[((size_t)o * C + c) * taps + k], *b = &g[((size_t)o * taps + k) * C + c];
				if (load)
					*b = *a;
				else
					*a = *b;
			}
}

/* wf = the correlation's kernel (conv_dx_by_correlation) in slice 0 of ws; NULL when dx is
 * not a correlation. */
static const float *conv_flip_weights(const conv_desc *d, const float *w, float *ws)
{
	conv_desc t;
	if (!conv_dx_by_correlation(d, &t))
		return NULL;
	float *wf = ws + conv_slot_base_floats(d) + conv_slot_base_floats(&t);
	const int kh = d->k_h, kw = d->k_w, K = (int)conv_k(d), Kt = (int)conv_k(&t);
	for (int o = 0; o < d->out_c; o++)
		for (int c = 0; c < d->in_c; c++)
			for (int ki = 0; ki < kh; ki++)
				for (int kj = 0; kj < kw; kj++)
					wf[(size_t)c * Kt + ((size_t)o * kh + (kh - 1 - ki)) * kw + (kw - 1 - kj)] =
						w[(size_t)o * K + ((size_t)c * kh + ki) * kw + kj];
	return wf;
}

/* dx for one sample: the correlation with wf when given, else col2im(w[oc, K]^T . dy[oc, P]);
 * slot is the thread's slice (col is its start, scratch; unused when pointwise); first as in
 * conv_fwd_sample. */
static void conv_bwd_input(const conv_desc *d, const float *w, const float *wf, const float *dy, float *dx,
			   float *slot, bool first)
{
	const int oc = d->out_c, K = (int)conv_k(d), P = (int)conv_out_plane(d);
	if (wf) {
		conv_desc t;
		conv_dx_by_correlation(d, &t);
		conv_fwd_sample(&t, dy, wf, NULL, dx, slot + conv_slot_base_floats(d), first);
		return;
	}
	float *col = slot;
	const bool pw = conv_is_pointwise(d);
	float *dcol = pw ? dx : col;
	/* every chain starts from +0.0: no pass zeroing dcol */
	kern_gemm(&(kern_gemm_args){K, P, oc, w, 1, K, dy, P, 1, dcol, P, 1, 1, NULL, NULL}, 1);
	if (!pw)
		col2im(d, dcol, dx);
}

/*
 * The weight gradient of a conv whose dx is a correlation, from the correlation's shifted planes
 * of dy (just built by conv_bwd_input for the same sample) instead of planes of x:
 * g[(o, ki, kj)][c] += sum over input positions q of T(o, ki, kj)[q] * x[c][q], where T(o, ki, kj)[q]
 * = dy[o][ih - ki + pad_top][iw - kj + pad_left] (zero outside dy) is the correlation's patch
 * row (o, k_h-1-ki, k_w-1-kj). The terms with both factors inside the image are the ones of
 * the product over output positions, in the same order (q and p differ by the tap's shift);
 * the others are fma(x, +0.0) or fma(+0.0, dy) here and fma(+0.0, dy) there, and none of them
 * changes a chain that does not hold -0.0, which one started from +0.0 never does. So the
 * bits are conv_bwd_weights', without building x's planes (a third of the backward's copies).
 * slot is the thread's (the training path: team 1); first as in conv_patches.
 */
static void conv_bwd_weights_dy(const conv_desc *d, const float *x, float *g, float *slot, bool first)
{
	conv_desc t;
	conv_dx_by_correlation(d, &t);
	conv_geom tg = {0, 0};
	conv_implicit_geom(&t, &tg); /* true: t is a correlation */
	float *tslot = slot + conv_slot_base_floats(d);
	const ptrdiff_t *ttab = conv_slot_table(&t, &tg, tslot);
	ptrdiff_t *rows = (ptrdiff_t *)(void *)(slot + conv_slot_floats(d) -
						 round_line(conv_k(&t) * (sizeof(ptrdiff_t) / sizeof(float))));
	const int kh = d->k_h, kw = d->k_w, M = (int)conv_k(&t), Q = d->in_h * d->in_w;
	if (first)
		for (int o = 0; o < d->out_c; o++)
			for (int ki = 0; ki < kh; ki++)
				for (int kj = 0; kj < kw; kj++)
					rows[(o * kh + ki) * kw + kj] = ttab[(o * kh + (kh - 1 - ki)) * kw + (kw - 1 - kj)];
	kern_gemm(&(kern_gemm_args){M, d->in_c, Q, conv_slot_planes(&t, tslot), 0, 1, x, 1, Q, g, d->in_c, 1, 0,
				    rows, NULL},
		  1);
}

/*
 * Weight and bias gradients accumulate sample after sample, one chain per
 * element (no per-thread partial sums: the same bits for every thread count;
 * a team splits the columns of each product); input gradients are per sample
 * and run on the team.
 */
static void cpu_conv2d_backward(const conv_desc *d, int n, const float *in, const float *w,
				const float *dout, float *din, float *dw, float *db, float *ws)
{
	if (n <= 0 || !conv_desc_ok(d))
		return;
	const size_t in_sz = conv_in_numel(d), out_sz = (size_t)d->out_c * conv_out_plane(d);
	const size_t slot = conv_slot_floats(d);
	const int team = conv_team(n);
	float *col = ws, *gT = ws + conv_col_floats(d);

	const float *wf = din ? conv_flip_weights(d, w, ws) : NULL;
	const bool from_dy = wf && team == 1; /* conv_bwd_weights_dy */
	(from_dy ? conv_grad_regroup : conv_grad_transpose)(d, dw, gT, 1);
	for (size_t i = 0; i < (size_t)n; i++) {
		if (db)
			conv_bias_grad(d, dout + i * out_sz, db);
		if (from_dy) {
			conv_bwd_input(d, w, wf, dout + i * out_sz, din + i * in_sz, ws, i == 0);
			conv_bwd_weights_dy(d, in + i * in_sz, gT, ws, i == 0);
			continue;
		}
		conv_bwd_weights(d, in + i * in_sz, dout + i * out_sz, col, gT, team, i == 0);
		if (din && team == 1) /* the training path: one shard per thread, col is free again */
			conv_bwd_input(d, w, wf, dout + i * out_sz, din + i * in_sz, ws, i == 0);
	}
	(from_dy ? conv_grad_regroup : conv_grad_transpose)(d, dw, gT, 0);
	if (!din || team == 1)
		return;
#pragma omp parallel num_threads(team)
	{
		const int t = omp_get_thread_num(), nt = omp_get_num_threads();
		for (size_t i = part_lo((size_t)n, t, nt); i < part_lo((size_t)n, t + 1, nt); i++)
			conv_bwd_input(d, w, wf, dout + i * out_sz, din + i * in_sz, ws + (size_t)t * slot,
				       i == part_lo((size_t)n, t, nt));
	}
}

/* ---------------------------------------------------------------- maxpool */

static void cpu_maxpool_forward(const pool_desc *d, int n, const float *in, float *out,
				int32_t *argmax)
{
	const size_t planes = (size_t)n * d->c;
	const size_t ipl = (size_t)d->in_h * d->in_w, opl = (size_t)d->out_h * d->out_w;
	const bool k2s2 = d->k_h == 2 && d->k_w == 2 && d->stride_h == 2 && d->stride_w == 2 &&
			  2 * d->out_h <= d->in_h && 2 * d->out_w <= d->in_w;

#pragma omp parallel for schedule(static) num_threads(backend_cpu_threads()) if (planes * opl >= PAR_MIN_ELEMS)
	for (size_t p = 0; p < planes; p++) {
		const float *x = in + p * ipl;
		float *y = out + p * opl;
		int32_t *a = argmax + p * opl;
		for (int oh = 0; oh < d->out_h; oh++) {
			if (k2s2) {
				/* Branch-free; ties keep the first element in scan order, like the general loop. */
				const int iw = d->in_w;
				const float *r0 = x + (size_t)(2 * oh) * iw, *r1 = r0 + iw;
				float *yo = y + (size_t)oh * d->out_w;
				int32_t *ao = a + (size_t)oh * d->out_w;
				const int32_t base = 2 * oh * iw;
#pragma omp simd
				for (int ow = 0; ow < d->out_w; ow++) {
					const int j = 2 * ow;
					float a0 = r0[j], a1 = r0[j + 1], a2 = r1[j], a3 = r1[j + 1];
					float m0 = a1 > a0 ? a1 : a0, m1 = a3 > a2 ? a3 : a2;
					int32_t i0 = a1 > a0 ? j + 1 : j, i1 = a3 > a2 ? iw + j + 1 : iw + j;
					yo[ow] = m1 > m0 ? m1 : m0;
					ao[ow] = base + (m1 > m0 ? i1 : i0);
				}
				continue;
			}
			for (int ow = 0; ow < d->out_w; ow++) {
				int h0 = oh * d->stride_h, w0 = ow * d->stride_w;
				int h1 = h0 + d->k_h < d->in_h ? h0 + d->k_h : d->in_h;
				int w1 = w0 + d->k_w < d->in_w ? w0 + d->k_w : d->in_w;
				float best = 0.0f;
				int32_t bi = -1;
				for (int ih = h0; ih < h1; ih++)
					for (int iw = w0; iw < w1; iw++) {
						float v = x[(size_t)ih * d->in_w + iw];
						if (bi < 0 || v > best) {
							best = v;
							bi = ih * d->in_w + iw;
						}
					}
				y[(size_t)oh * d->out_w + ow] = best;
				a[(size_t)oh * d->out_w + ow] = bi;
			}
		}
	}
}

static void cpu_maxpool_backward(const pool_desc *d, int n, const float *dout,
				 const int32_t *argmax, float *din)
{
	const size_t planes = (size_t)n * d->c;
	const size_t ipl = (size_t)d->in_h * d->in_w, opl = (size_t)d->out_h * d->out_w;

#pragma omp parallel for schedule(static) num_threads(backend_cpu_threads()) if (planes * ipl >= PAR_MIN_ELEMS)
	for (size_t p = 0; p < planes; p++) {
		float *dx = din + p * ipl;
		const float *dy = dout + p * opl;
		const int32_t *a = argmax + p * opl;
		memset(dx, 0, sizeof(float) * ipl);
		for (size_t o = 0; o < opl; o++) {
			int32_t j = a[o];
			if (j >= 0 && (size_t)j < ipl)
				dx[j] += dy[o];
		}
	}
}

/* ---------------------------------------------------------------- element-wise */

static void cpu_relu_forward(size_t count, const float *in, float *out)
{
#pragma omp parallel for simd schedule(static) num_threads(backend_cpu_threads()) if (count >= PAR_MIN_ELEMS)
	for (size_t i = 0; i < count; i++)
		out[i] = in[i] > 0.0f ? in[i] : 0.0f;
}

static void cpu_relu_backward(size_t count, const float *out, const float *dout, float *din)
{
#pragma omp parallel for simd schedule(static) num_threads(backend_cpu_threads()) if (count >= PAR_MIN_ELEMS)
	for (size_t i = 0; i < count; i++) {
		const float g = dout[i]; /* read unconditionally: a select, no branch, vectorised */
		din[i] = out[i] > 0.0f ? g : 0.0f;
	}
}

/* Counters per batch of the lane-parallel Philox below (each counter covers four elements). */
#define PHILOX_LANES 16

/*
 * Philox4x32-10 of philox.h on the PHILOX_LANES dropout counters
 * {sample, g0 + l, epoch, PHILOX_DROPOUT}, written lane-parallel so that the
 * compiler vectorises it. bits[4*l + w] receives word w of counter l, i.e. the
 * random word of element 4*(g0 + l) + w: exactly what philox_dropout_keep()
 * draws for that element. The AVX2 and AVX-512 versions below compute the same
 * integers with explicit 32x32 -> 64-bit multiplies of even and odd lanes.
 */
static void philox_dropout_bits(philox_key k, uint32_t sample, uint32_t g0, uint32_t epoch,
				uint32_t bits[4 * PHILOX_LANES])
{
	uint32_t v0[PHILOX_LANES], v1[PHILOX_LANES], v2[PHILOX_LANES], v3[PHILOX_LANES];
	for (int l = 0; l < PHILOX_LANES; l++) {
		v0[l] = sample;
		v1[l] = g0 + (uint32_t)l;
		v2[l] = epoch;
		v3[l] = PHILOX_DROPOUT;
	}
	uint32_t k0 = k.k[0], k1 = k.k[1];
	for (int r = 0; r < 10; r++) {
#pragma omp simd
		for (int l = 0; l < PHILOX_LANES; l++) {
			uint64_t p0 = (uint64_t)PHILOX_M0 * v0[l];
			uint64_t p1 = (uint64_t)PHILOX_M1 * v2[l];
			uint32_t n0 = (uint32_t)(p1 >> 32) ^ v1[l] ^ k0;
			uint32_t n2 = (uint32_t)(p0 >> 32) ^ v3[l] ^ k1;
			v1[l] = (uint32_t)p1;
			v3[l] = (uint32_t)p0;
			v0[l] = n0;
			v2[l] = n2;
		}
		k0 += PHILOX_W0;
		k1 += PHILOX_W1;
	}
	for (int l = 0; l < PHILOX_LANES; l++) {
		bits[4 * l + 0] = v0[l];
		bits[4 * l + 1] = v1[l];
		bits[4 * l + 2] = v2[l];
		bits[4 * l + 3] = v3[l];
	}
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
/* hi and lo 32 bits of m * v per 32-bit lane: even lanes' products, then odd lanes' (AVX-512). */
__attribute__((target("avx512f"))) static inline void philox_mulhilo16(__m512i v, __m512i m, __m512i *hi,
									 __m512i *lo)
{
	const __m512i e = _mm512_mul_epu32(v, m), o = _mm512_mul_epu32(_mm512_srli_epi64(v, 32), m);
	*lo = _mm512_mask_blend_epi32(0xAAAA, e, _mm512_slli_epi64(o, 32));
	*hi = _mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64(e, 32), o);
}

__attribute__((target("avx512f"))) static void philox_dropout_bits_avx512(philox_key k, uint32_t sample, uint32_t g0,
									  uint32_t epoch, uint32_t bits[4 * PHILOX_LANES])
{
	const __m512i m0 = _mm512_set1_epi32((int)PHILOX_M0), m1 = _mm512_set1_epi32((int)PHILOX_M1);
	__m512i v0 = _mm512_set1_epi32((int)sample), v2 = _mm512_set1_epi32((int)epoch);
	__m512i v3 = _mm512_set1_epi32(PHILOX_DROPOUT);
	__m512i v1 = _mm512_add_epi32(_mm512_set1_epi32((int)g0),
				      _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
	uint32_t k0 = k.k[0], k1 = k.k[1];
	for (int r = 0; r < 10; r++) {
		__m512i hi0, lo0, hi1, lo1;
		philox_mulhilo16(v0, m0, &hi0, &lo0);
		philox_mulhilo16(v2, m1, &hi1, &lo1);
		v0 = _mm512_xor_si512(_mm512_xor_si512(hi1, v1), _mm512_set1_epi32((int)k0));
		v2 = _mm512_xor_si512(_mm512_xor_si512(hi0, v3), _mm512_set1_epi32((int)k1));
		v1 = lo1;
		v3 = lo0;
		k0 += PHILOX_W0;
		k1 += PHILOX_W1;
	}
	/* to bits[4*l + w]: a 4x4 transpose in each 128-bit block (counters 4b .. 4b+3), then the blocks */
	const __m512i t0 = _mm512_unpacklo_epi32(v0, v1), t1 = _mm512_unpacklo_epi32(v2, v3);
	const __m512i t2 = _mm512_unpackhi_epi32(v0, v1), t3 = _mm512_unpackhi_epi32(v2, v3);
	const __m512i c0 = _mm512_unpacklo_epi64(t0, t1), c1 = _mm512_unpackhi_epi64(t0, t1);
	const __m512i c2 = _mm512_unpacklo_epi64(t2, t3), c3 = _mm512_unpackhi_epi64(t2, t3);
	uint32_t q[4][16];
	_mm512_storeu_si512(q[0], c0);
	_mm512_storeu_si512(q[1], c1);
	_mm512_storeu_si512(q[2], c2);
	_mm512_storeu_si512(q[3], c3);
	for (int b = 0; b < 4; b++)
		for (int c = 0; c < 4; c++)
			memcpy(bits + 16 * b + 4 * c, &q[c][4 * b], 4 * sizeof(uint32_t));
}

/* The same on 8 lanes (AVX2), twice. */
__attribute__((target("avx2"))) static inline void philox_mulhilo8(__m256i v, __m256i m, __m256i *hi, __m256i *lo)
{
	const __m256i e = _mm256_mul_epu32(v, m), o = _mm256_mul_epu32(_mm256_srli_epi64(v, 32), m);
	*lo = _mm256_blend_epi32(e, _mm256_slli_epi64(o, 32), 0xAA);
	*hi = _mm256_blend_epi32(_mm256_srli_epi64(e, 32), o, 0xAA);
}

__attribute__((target("avx2"))) static void philox_dropout_bits_avx2(philox_key k, uint32_t sample, uint32_t g0,
								     uint32_t epoch, uint32_t bits[4 * PHILOX_LANES])
{
	const __m256i m0 = _mm256_set1_epi32((int)PHILOX_M0), m1 = _mm256_set1_epi32((int)PHILOX_M1);
	for (int half = 0; half < 2; half++) {
		__m256i v0 = _mm256_set1_epi32((int)sample), v2 = _mm256_set1_epi32((int)epoch);
		__m256i v3 = _mm256_set1_epi32(PHILOX_DROPOUT);
		__m256i v1 = _mm256_add_epi32(_mm256_set1_epi32((int)(g0 + 8u * (uint32_t)half)),
					      _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
		uint32_t k0 = k.k[0], k1 = k.k[1];
		for (int r = 0; r < 10; r++) {
			__m256i hi0, lo0, hi1, lo1;
			philox_mulhilo8(v0, m0, &hi0, &lo0);
			philox_mulhilo8(v2, m1, &hi1, &lo1);
			v0 = _mm256_xor_si256(_mm256_xor_si256(hi1, v1), _mm256_set1_epi32((int)k0));
			v2 = _mm256_xor_si256(_mm256_xor_si256(hi0, v3), _mm256_set1_epi32((int)k1));
			v1 = lo1;
			v3 = lo0;
			k0 += PHILOX_W0;
			k1 += PHILOX_W1;
		}
		const __m256i t0 = _mm256_unpacklo_epi32(v0, v1), t1 = _mm256_unpacklo_epi32(v2, v3);
		const __m256i t2 = _mm256_unpackhi_epi32(v0, v1), t3 = _mm256_unpackhi_epi32(v2, v3);
		const __m256i c0 = _mm256_unpacklo_epi64(t0, t1), c1 = _mm256_unpackhi_epi64(t0, t1);
		const __m256i c2 = _mm256_unpacklo_epi64(t2, t3), c3 = _mm256_unpackhi_epi64(t2, t3);
		uint32_t q[4][8];
		_mm256_storeu_si256((__m256i *)q[0], c0);
		_mm256_storeu_si256((__m256i *)q[1], c1);
		_mm256_storeu_si256((__m256i *)q[2], c2);
		_mm256_storeu_si256((__m256i *)q[3], c3);
		uint32_t *o = bits + 32 * half;
		for (int b = 0; b < 2; b++)
			for (int c = 0; c < 4; c++)
				memcpy(o + 16 * b + 4 * c, &q[c][4 * b], 4 * sizeof(uint32_t));
	}
}
#endif

static void cpu_dropout_forward(const dropout_desc *d, int n, const uint32_t *samples,
				const float *in, float *out, float *mask)
{
	const size_t ps = d->per_sample, total = (size_t)(n > 0 ? n : 0) * ps;
	const float rate = d->rate;
	if (!(rate > 0.0f)) { /* rate 0 (or nonsense): identity */
#pragma omp parallel for simd schedule(static) num_threads(backend_cpu_threads()) if (total >= PAR_MIN_ELEMS)
		for (size_t i = 0; i < total; i++) {
			out[i] = in[i];
			mask[i] = 1.0f;
		}
		return;
	}
	const float scale = rate < 1.0f ? 1.0f / (1.0f - rate) : 0.0f;
	const philox_key key = {{d->seed, d->layer}};
	const size_t chunk = 4 * PHILOX_LANES;
	/* the kernels' ISA (kern_current): the same integers on each */
	void (*bits_fn)(philox_key, uint32_t, uint32_t, uint32_t, uint32_t *) = philox_dropout_bits;
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
	if (kern_current() == KERN_ISA_AVX512)
		bits_fn = philox_dropout_bits_avx512;
	else if (kern_current() == KERN_ISA_AVX2)
		bits_fn = philox_dropout_bits_avx2;
#endif

#pragma omp parallel for schedule(static) num_threads(backend_cpu_threads()) if (total >= PAR_MIN_ELEMS / 4)
	for (int i = 0; i < n; i++) {
		const float *x = in + (size_t)i * ps;
		float *y = out + (size_t)i * ps, *m = mask + (size_t)i * ps;
		for (size_t e0 = 0; e0 < ps; e0 += chunk) {
			uint32_t bits[4 * PHILOX_LANES];
			bits_fn(key, samples[i], (uint32_t)(e0 >> 2), d->epoch, bits);
			const size_t len = ps - e0 < chunk ? ps - e0 : chunk;
#pragma omp simd
			for (size_t e = 0; e < len; e++) {
				float s = philox_uniform(bits[e]) >= rate ? scale : 0.0f;
				m[e0 + e] = s;
				y[e0 + e] = x[e0 + e] * s;
			}
		}
	}
}

static void cpu_dropout_backward(size_t count, const float *mask, const float *dout, float *din)
{
#pragma omp parallel for simd schedule(static) num_threads(backend_cpu_threads()) if (count >= PAR_MIN_ELEMS)
	for (size_t i = 0; i < count; i++)
		din[i] = dout[i] * mask[i];
}

static void cpu_scale(size_t count, float a, float *x)
{
#pragma omp parallel for simd schedule(static) num_threads(backend_cpu_threads()) if (count >= PAR_MIN_ELEMS)
	for (size_t i = 0; i < count; i++)
		x[i] *= a;
}

static void cpu_zero(size_t count, float *x)
{
	if (count < PAR_MIN_ELEMS * 4) {
		memset(x, 0, sizeof(float) * count);
		return;
	}
#pragma omp parallel num_threads(backend_cpu_threads())
	{
		int t = omp_get_thread_num(), nt = omp_get_num_threads();
		size_t lo = part_lo(count, t, nt), hi = part_lo(count, t + 1, nt);
		memset(x + lo, 0, sizeof(float) * (hi - lo));
	}
}

/* ---------------------------------------------------------------- dense */

/* Threads for a dense product of this many multiply-adds. */
static int dense_team(size_t macs)
{
	return macs >= PAR_MIN_MACS && !nested_serial() ? backend_cpu_threads() : 1;
}

/*
 * out[s, o] = b[o] (or 0) + sum_i in[s, i] w[o, i], computed as out^T = w . in^T
 * so that the vectors run across samples and w is read once per panel of samples.
 */
static void cpu_dense_forward(int n, int in_f, int out_f, const float *in, const float *w,
			      const float *b, float *out)
{
	if (n <= 0 || out_f <= 0)
		return;
	for (int s = 0; b && s < n; s++)
		memcpy(out + (size_t)s * out_f, b, sizeof(float) * (size_t)out_f);
	kern_gemm(&(kern_gemm_args){out_f, n, in_f, w, in_f, 1, in, 1, in_f, out, 1, out_f, b == NULL, NULL, NULL},
		  dense_team((size_t)n * in_f * out_f));
}

static void cpu_dense_backward(int n, int in_f, int out_f, const float *in, const float *w,
			       const float *dout, float *din, float *dw, float *db)
{
	if (n <= 0 || out_f <= 0 || in_f <= 0)
		return;
	const int team = dense_team((size_t)n * in_f * out_f);
	/* db[o] += sum_n dout[n, o], summed in sample order. */
	if (db) {
		for (int i = 0; i < n; i++) {
			const float *dy = dout + (size_t)i * out_f;
#pragma omp simd
			for (int o = 0; o < out_f; o++)
				db[o] += dy[o];
		}
	}
	/* dw[o, i] += sum_s dout[s, o] in[s, i] */
	kern_gemm(&(kern_gemm_args){out_f, in_f, n, dout, 1, out_f, in, in_f, 1, dw, in_f, 1, 0, NULL, NULL}, team);
	/* din[s, i] = sum_o dout[s, o] w[o, i] */
	if (din) {
		kern_gemm(&(kern_gemm_args){n, in_f, out_f, dout, out_f, 1, w, in_f, 1, din, in_f, 1, 1, NULL, NULL}, team);
	}
}

/* ---------------------------------------------------------------- loss */

/* exp and log are kern_exp and kern_log: the same bits on every CPU (kernels.h). */
static void cpu_softmax_xent(int n, int classes, const float *logits, const uint8_t *labels,
			     float *dlogits, double *loss_sum, int *correct)
{
	double loss = 0.0;
	int ok = 0;
	for (int i = 0; i < n && classes > 0; i++) {
		const float *z = logits + (size_t)i * classes;
		const int y = labels[i];
		float m = z[0];
		int am = 0;
		for (int j = 1; j < classes; j++)
			if (z[j] > m) {
				m = z[j];
				am = j;
			}
		double s = 0.0;
		for (int j = 0; j < classes; j++)
			s += kern_exp((double)z[j] - (double)m);
		loss += kern_log(s) - ((double)z[y] - (double)m);
		ok += am == y;
		if (dlogits) {
			float *g = dlogits + (size_t)i * classes;
			for (int j = 0; j < classes; j++)
				g[j] = (float)(kern_exp((double)z[j] - (double)m) / s) - (j == y ? 1.0f : 0.0f);
		}
	}
	if (loss_sum)
		*loss_sum = loss;
	if (correct)
		*correct = ok;
}

/* ---------------------------------------------------------------- memory */

/* 64-byte aligned host memory, zeroed (so that fresh buffers never hold garbage). */
static void *cpu_alloc(size_t bytes)
{
	size_t rounded = (bytes + 63) & ~(size_t)63;
	void *p = aligned_alloc(64, rounded ? rounded : 64);
	if (p)
		memset(p, 0, rounded);
	return p;
}

static void cpu_release(void *p) { free(p); }

static void cpu_copy(void *dst, const void *src, size_t bytes)
{
	if (dst != src)
		memcpy(dst, src, bytes);
}

static void cpu_gather_images(const uint8_t *images, const uint32_t *idx, int n, size_t pixels, float scale,
			      float *out)
{
#pragma omp parallel for schedule(static) if (n * pixels > PAR_MIN_ELEMS)
	for (int i = 0; i < n; i++) {
		const uint8_t *src = images + (size_t)idx[i] * pixels;
		float *o = out + (size_t)i * pixels;
#pragma omp simd
		for (size_t j = 0; j < pixels; j++)
			o[j] = (float)src[j] * scale;
	}
}

/* ---------------------------------------------------------------- hooks */

static void cpu_synchronize(const backend *be)
{
	(void)be; /* every op has returned when its results are there */
}

static int cpu_threads(const backend *be)
{
	(void)be;
	return backend_cpu_threads();
}

/*
 * The measured peak of the chosen kernels' ISA with the rank's threads: the best of 25
 * runs of independent FMA chains (kernels.h), about 0.02 s each (short runs, so that one
 * of them likely finds the cores free on a shared machine).
 */
static double cpu_peak_gflops(const backend *be)
{
	return kern_peak_gflops(kern_current(), cpu_threads(be), 0.02, 25);
}

/* ---------------------------------------------------------------- table */

static const backend cpu_backend = {
	.name = "cpu",
	.caps = BACKEND_CAP_HOST_MEMORY | BACKEND_CAP_EXACT_SUM | BACKEND_CAP_FUSED_RELU,
	.synchronize = cpu_synchronize,
	.threads = cpu_threads,
	.peak_gflops = cpu_peak_gflops,
	.alloc = cpu_alloc,
	.release = cpu_release,
	.upload = cpu_copy,
	.download = cpu_copy,
	.conv2d_workspace = cpu_conv2d_workspace,
	.conv2d_forward = cpu_conv2d_forward,
	.conv2d_backward = cpu_conv2d_backward,
	.maxpool_forward = cpu_maxpool_forward,
	.maxpool_backward = cpu_maxpool_backward,
	.relu_forward = cpu_relu_forward,
	.relu_backward = cpu_relu_backward,
	.dropout_forward = cpu_dropout_forward,
	.dropout_backward = cpu_dropout_backward,
	.dense_forward = cpu_dense_forward,
	.dense_backward = cpu_dense_backward,
	.softmax_xent = cpu_softmax_xent,
	.gather_images = cpu_gather_images,
	.optim_step = optim_step,
	.layer_kernels = layer_cpu_kernels,
	.scale = cpu_scale,
	.zero = cpu_zero,
};

const backend *backend_cpu(void)
{
	backend_cpu_threads(); /* resolve the thread count */
	return &cpu_backend;
}

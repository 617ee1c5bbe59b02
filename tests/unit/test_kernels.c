/*
 * test_kernels.c - the CPU kernels (src/kernels/): every ISA this machine runs,
 * and the AVX-512 tile shapes on portable arithmetic, give the bits of one
 * plain fmaf chain per output element (odd sizes, strides, transposes, k
 * blocks, thread counts); the products agree with a double-precision
 * reference within a tolerance; every layer's forward and backward through a
 * whole network gives identical bits on each ISA; conv with stride and
 * padding matches a direct reference; kern_exp/kern_log are accurate; the
 * ISA choice refuses unknown names and ISAs this CPU lacks.
 *
 * AVX-512 itself runs here only on a CPU that has it; elsewhere its tile
 * shapes, tails and order are checked through kern_impl_avx512_shape (the
 * same micro-kernel template on fmaf), not its intrinsics.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "config.h"
#include "grad.h"
#include "contract.h"
#include "kernels/kernels.h"
#include "kernels/kernels_internal.h"
#include "model.h"
#include "ops.h"

static uint64_t rng_state = 0x243F6A8885A308D3ull;

static float rnd(void) /* [-1, 1), xorshift64* */
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return (float)((double)((rng_state * 2685821657736338717ull) >> 11) / 9007199254740992.0 * 2 - 1);
}

static float *rnd_buf(size_t n)
{
	float *p = malloc((n ? n : 1) * sizeof(float));
	for (size_t i = 0; i < n; i++)
		p[i] = rnd();
	return p;
}

/* n random floats that end where an inaccessible page starts: a kernel that reads or writes
 * one float past them faults (masked vector loads and stores are not seen by ASan). */
typedef struct guarded {
	void *map;
	size_t bytes;
	float *p;
} guarded;

static guarded guarded_buf(size_t n)
{
	const size_t page = (size_t)sysconf(_SC_PAGESIZE), data = n * sizeof(float);
	guarded g = {NULL, ((data + page - 1) / page + 1) * page, NULL};
	g.map = mmap(NULL, g.bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(g.map != MAP_FAILED);
	char *guard = (char *)g.map + g.bytes - page;
	assert_int_equal(mprotect(guard, page, PROT_NONE), 0);
	g.p = (float *)(void *)(guard - data);
	for (size_t i = 0; i < n; i++)
		g.p[i] = rnd();
	return g;
}

static void guarded_free(guarded *g)
{
	munmap(g->map, g->bytes);
}

/* The kernels under test: each ISA this CPU runs, and the AVX-512 shapes on fmaf. */
static int impls(const kern_impl *out[4])
{
	int n = 0;
	out[n++] = &kern_impl_portable;
	out[n++] = &kern_impl_avx512_shape;
	if (kern_isa_supported(KERN_ISA_AVX2))
		out[n++] = &kern_impl_avx2;
	if (kern_isa_supported(KERN_ISA_AVX512))
		out[n++] = &kern_impl_avx512;
	return n;
}

/* The rule itself: C[i, j] = fmaf chain over k in increasing order, from C's value. */
static void gemm_chain(const kern_gemm_args *g)
{
	for (int i = 0; i < g->m; i++)
		for (int j = 0; j < g->n; j++) {
			float *c = &g->c[i * g->rsc + j * g->csc];
			float acc = *c;
			for (int k = 0; k < g->k; k++) {
				const ptrdiff_t ai = (g->arow ? g->arow[i] : i * g->rsa) + k * g->csa;
				const ptrdiff_t bi = (g->brow ? g->brow[k] : k * g->rsb) + j * g->csb;
				acc = fmaf(g->a[ai], g->b[bi], acc);
			}
			*c = acc;
		}
}

typedef struct shape {
	int m, n, k;
	int at, bt, ct; /* transposed layouts of A, B, C */
} shape;

static const shape shapes[] = {
	{1, 1, 1, 0, 0, 0},    {7, 13, 5, 0, 0, 0},   {4, 24, 9, 0, 0, 0},   {6, 16, 300, 0, 0, 0},
	{13, 50, 777, 0, 0, 0}, {33, 71, 17, 1, 0, 0}, {9, 40, 385, 0, 1, 0}, {25, 23, 64, 0, 0, 1},
	{17, 9, 129, 1, 1, 1}, {64, 288, 40, 1, 1, 0}, {3, 100, 2, 0, 1, 1},  {50, 3, 1000, 1, 0, 1},
};

/* Builds the product of s (row strides padded by 3, to catch stride bugs) with a random C. */
static kern_gemm_args make_args(const shape *s, float **a, float **b, float **c)
{
	const int lda = (s->at ? s->m : s->k) + 3, ldb = (s->bt ? s->k : s->n) + 3, ldc = (s->ct ? s->m : s->n) + 3;
	*a = rnd_buf((size_t)(s->at ? s->k : s->m) * lda);
	*b = rnd_buf((size_t)(s->bt ? s->n : s->k) * ldb);
	*c = rnd_buf((size_t)(s->ct ? s->n : s->m) * ldc);
	kern_gemm_args g = {s->m, s->n, s->k, *a, s->at ? 1 : lda, s->at ? lda : 1, *b, s->bt ? 1 : ldb,
			    s->bt ? ldb : 1, *c, s->ct ? 1 : ldc, s->ct ? ldc : 1, 0, NULL, NULL};
	return g;
}

static size_t c_floats(const shape *s)
{
	return (size_t)(s->ct ? s->n : s->m) * (size_t)((s->ct ? s->m : s->n) + 3);
}

/* Runs g on the kernels of every ISA here (and the AVX-512 tiles on fmaf) with 1 and 3 threads,
 * C starting each time as c0 (NULL: every float NaN), and fails unless C's cn floats end as want,
 * bit for bit; what names the case in the message. */
static void expect_every_impl(kern_gemm_args g, const float *c0, const float *want, size_t cn, const char *what)
{
	const kern_impl *im[4];
	const int ni = impls(im);
	float *got = malloc(cn * sizeof(float));
	for (int i = 0; i < ni; i++)
		for (int threads = 1; threads <= 3; threads += 2) {
			for (size_t e = 0; e < cn; e++)
				got[e] = c0 ? c0[e] : NAN;
			g.c = got;
			kern_gemm_impl(im[i], &g, threads);
			if (memcmp(got, want, cn * sizeof(float)))
				fail_msg("%s, %d threads, %s: not the fma chain", im[i]->name, threads, what);
		}
	free(got);
}

static void test_gemm_every_isa_is_the_fma_chain_bit_for_bit(void **state)
{
	(void)state;
	for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
		const shape *s = &shapes[si];
		float *a, *b, *c0;
		kern_gemm_args g = make_args(s, &a, &b, &c0);
		const size_t cn = c_floats(s);
		float *want = malloc(cn * sizeof(float));
		memcpy(want, c0, cn * sizeof(float));
		g.c = want;
		gemm_chain(&g);
		char what[96];
		snprintf(what, sizeof what, "%dx%dx%d (at %d bt %d ct %d)", s->m, s->n, s->k, s->at, s->bt, s->ct);
		expect_every_impl(g, c0, want, cn, what);
		free(a);
		free(b);
		free(c0);
		free(want);
	}
}

/* c_zero: C's old values (NaN here) are never read; the result is the chain from +0.0 (the same
 * bits as zeroing C first) on every ISA and thread count, and C's padding is left alone. */
static void test_gemm_c_zero_is_zeroing_c_first(void **state)
{
	(void)state;
	for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
		const shape *s = &shapes[si];
		float *a, *b, *c0;
		kern_gemm_args g = make_args(s, &a, &b, &c0);
		const size_t cn = c_floats(s);
		float *want = malloc(cn * sizeof(float));
		for (size_t i = 0; i < cn; i++)
			want[i] = NAN;
		for (int i = 0; i < s->m; i++)
			for (int j = 0; j < s->n; j++)
				want[i * g.rsc + j * g.csc] = 0.0f;
		g.c = want;
		gemm_chain(&g);
		g.c_zero = 1;
		char what[96];
		snprintf(what, sizeof what, "c_zero, %dx%dx%d (at %d bt %d ct %d), C all NaN", s->m, s->n, s->k, s->at,
			 s->bt, s->ct);
		expect_every_impl(g, NULL, want, cn, what);
		free(a);
		free(b);
		free(c0);
		free(want);
	}
}

/* The exact sum's conversions (grad.c) give the same integers, counts and floats on every ISA,
 * over values that hit each branch: NaN, infinities, saturation, ties, -0, denormals, tails;
 * grad_fix_take adds the same and leaves its input all +0.0 (vector part and tail). */
static void test_fixed_point_is_the_same_on_every_isa(void **state)
{
	(void)state;
	enum { N = 203 };
	float x[N];
	for (int i = 0; i < N; i++)
		x[i] = (float)((double)(rand() % 20001 - 10000) * 1e-4 * pow(2.0, rand() % 40 - 30));
	const float special[] = {NAN, INFINITY, -INFINITY, 1e30f, -1e30f, 524288.0f, -524288.0f, 0x1p-33f,
				 -0x1p-33f, 0x3p-34f, -0.0f, 1e-40f, 0x1p19f, 0x1.fffffep18f};
	for (size_t i = 0; i < sizeof special / sizeof special[0]; i++)
		x[i * 13] = special[i];
	int64_t want[N], got[N], of0 = 0, nf0 = 0;
	float fwant[N], fgot[N];
	const kern_isa saved = kern_current();
	kern_force(KERN_ISA_PORTABLE);
	for (int i = 0; i < N; i++)
		want[i] = i * 1000003LL - (1LL << 40);
	grad_fix_add(N, x, want, &of0, &nf0);
	grad_fix_add(N, x, want, &of0, &nf0);
	want[7] = (1LL << 52) + 5; /* out of the fast range: the scalar fallback */
	grad_fix_scale_out(N, want, 1.0 / 4294967296.0 / 3.0, fwant);
	assert_int_equal(nf0, 2 * 3);
	assert_true(of0 >= 2 * 4);
	for (int isa = KERN_ISA_PORTABLE; isa < KERN_ISA_N; isa++) {
		if (!kern_isa_supported((kern_isa)isa))
			continue;
		kern_force((kern_isa)isa);
		int64_t of = 0, nf = 0;
		float xt[N];
		memcpy(xt, x, sizeof xt);
		for (int i = 0; i < N; i++)
			got[i] = i * 1000003LL - (1LL << 40);
		grad_fix_add(N, x, got, &of, &nf);
		grad_fix_take(N, xt, got, &of, &nf); /* the same sum, and xt left all +0.0 */
		got[7] = (1LL << 52) + 5;
		grad_fix_scale_out(N, got, 1.0 / 4294967296.0 / 3.0, fgot);
		if (memcmp(got, want, sizeof got) || of != of0 || nf != nf0 || memcmp(fgot, fwant, sizeof fgot))
			fail_msg("%s: the fixed-point conversions differ from the scalar path", kern_isa_name((kern_isa)isa));
		for (int i = 0; i < N; i++)
			if (memcmp(&xt[i], &(float){0.0f}, sizeof(float)))
				fail_msg("%s: grad_fix_take left x[%d] = %g, not +0.0", kern_isa_name((kern_isa)isa), i,
					 (double)xt[i]);
	}
	kern_force(saved);
}

/* Row tables (implicit-GEMM convolutions): rows of A and B at arbitrary, overlapping offsets of
 * one buffer, B's columns unit-stride or not, with and without c_zero: the fma chain, bit for bit,
 * on every ISA and thread count. */
static void test_gemm_row_tables_are_the_fma_chain(void **state)
{
	(void)state;
	const int dims[][3] = {{16, 1086, 27}, {7, 100, 33}, {64, 622, 40}, {13, 31, 300}, {3, 17, 5}};
	for (size_t di = 0; di < sizeof dims / sizeof dims[0]; di++)
		for (int variant = 0; variant < 4; variant++) {
			const int m = dims[di][0], n = dims[di][1], k = dims[di][2];
			const int csb = variant & 1 ? 2 : 1, use_arow = variant >= 2;
			const size_t span = (size_t)(n * csb + 4 * k + 64);
			float *buf = rnd_buf(span), *a = rnd_buf((size_t)m * (k + 5) + 64);
			ptrdiff_t *brow = malloc((size_t)k * sizeof *brow), *arow = malloc((size_t)m * sizeof *arow);
			for (int r = 0; r < k; r++)
				brow[r] = (ptrdiff_t)((r * 7 + (r % 3) * 13) % (4 * k + 1)); /* shifted, overlapping */
			for (int r = 0; r < m; r++)
				arow[r] = (ptrdiff_t)((r * 5 + 3) % (m + 4)) * (k + 5) / 2;
			const size_t cn = (size_t)m * (n + 3);
			float *c0 = rnd_buf(cn), *want = malloc(cn * 4);
			kern_gemm_args g = {m, n, k, a, k + 5, 1, buf, 0, csb, NULL, n + 3, 1, variant == 1, NULL, brow};
			if (use_arow)
				g.arow = arow;
			memcpy(want, c0, cn * 4);
			if (g.c_zero)
				for (int i = 0; i < m; i++)
					for (int j = 0; j < n; j++)
						want[(size_t)i * (n + 3) + j] = 0.0f;
			g.c = want;
			g.c_zero = 0;
			gemm_chain(&g);
			g.c_zero = variant == 1;
			char what[96];
			snprintf(what, sizeof what, "row tables, %dx%dx%d variant %d", m, n, k, variant);
			expect_every_impl(g, c0, want, cn, what);
			free(buf), free(a), free(brow), free(arow), free(c0), free(want);
		}
}

static void test_gemm_matches_a_double_reference(void **state)
{
	(void)state;
	for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
		const shape *s = &shapes[si];
		float *a, *b, *c;
		kern_gemm_args g = make_args(s, &a, &b, &c);
		const size_t cn = c_floats(s);
		float *c0 = malloc(cn * sizeof(float));
		memcpy(c0, c, cn * sizeof(float));
		kern_gemm(&g, 2);
		for (int i = 0; i < s->m; i++)
			for (int j = 0; j < s->n; j++) {
				const ptrdiff_t ci = i * g.rsc + j * g.csc;
				double ref = c0[ci], mag = fabs(c0[ci]);
				for (int k = 0; k < s->k; k++) {
					double t = (double)a[i * g.rsa + k * g.csa] * b[k * g.rsb + j * g.csb];
					ref += t;
					mag += fabs(t);
				}
				if (fabs(c[ci] - ref) > 1e-6 * mag + 1e-30)
					fail_msg("%dx%dx%d [%d, %d]: %.9g, reference %.9g", s->m, s->n, s->k, i, j,
						 (double)c[ci], ref);
			}
		/* outside the matrix (the stride padding) nothing was written */
		for (int r = 0; r < (s->ct ? s->n : s->m); r++)
			for (int j = s->ct ? s->m : s->n; j < (s->ct ? s->m : s->n) + 3; j++) {
				size_t ix = (size_t)r * ((s->ct ? s->m : s->n) + 3) + j;
				assert_memory_equal(&c[ix], &c0[ix], sizeof(float));
			}
		free(a);
		free(b);
		free(c);
		free(c0);
	}
}

/* The direct definition of conv2d (ops.h) in double, for one sample batch. */
static void conv_ref(const conv_desc *d, int n, const float *x, const float *w, const float *b, double *y)
{
	for (int s = 0; s < n; s++)
		for (int o = 0; o < d->out_c; o++)
			for (int oh = 0; oh < d->out_h; oh++)
				for (int ow = 0; ow < d->out_w; ow++) {
					double acc = b ? b[o] : 0;
					for (int c = 0; c < d->in_c; c++)
						for (int ki = 0; ki < d->k_h; ki++)
							for (int kj = 0; kj < d->k_w; kj++) {
								int ih = oh * d->stride_h - d->pad_top + ki;
								int iw = ow * d->stride_w - d->pad_left + kj;
								if (ih < 0 || iw < 0 || ih >= d->in_h || iw >= d->in_w)
									continue;
								acc += (double)x[((size_t)(s * d->in_c + c) * d->in_h + ih) * d->in_w + iw] *
								       w[((size_t)(o * d->in_c + c) * d->k_h + ki) * d->k_w + kj];
							}
					y[((size_t)(s * d->out_c + o) * d->out_h + oh) * d->out_w + ow] = acc;
				}
}

static const conv_desc convs[] = {
	{3, 11, 9, 5, 6, 5, 3, 3, 2, 2, 1, 1, 0}, /* stride 2, padding 1, odd sizes */
	{2, 7, 8, 7, 7, 8, 1, 1, 1, 1, 0, 0, 0},  /* pointwise */
	{4, 9, 7, 3, 5, 3, 3, 5, 2, 1, 2, 0, 0},  /* 3x5 kernel, strides 2x1, padding 2 on top */
	{2, 11, 13, 3, 4, 5, 3, 3, 3, 3, 1, 1, 0}, /* stride 3: im2col's element-by-element rows */
	{2, 9, 37, 3, 5, 19, 3, 3, 2, 2, 1, 1, 0}, /* stride 2, rows of several vectors: col2im's gather */
	{2, 6, 21, 3, 6, 10, 3, 4, 1, 2, 1, 1, 0}, /* strides 1x2, an even kernel width */
	{2, 3, 20, 2, 3, 3, 1, 18, 1, 1, 0, 0, 0}, /* a kernel wider than col2im's kept columns (16) */
	{2, 7, 6, 3, 4, 4, 3, 3, 1, 1, 0, 0, 0},  /* stride 1, outputs short of the input: im2col's row copy */
	{1, 28, 28, 6, 26, 26, 3, 3, 1, 1, 0, 0, 0},
};

/* Forward against the reference; forward and backward bit-identical on every ISA and thread count. */
static void test_conv_reference_and_identity_across_isas(void **state)
{
	(void)state;
	const kern_impl *im[4];
	const int ni = impls(im), n = 3;
	for (size_t ci = 0; ci < sizeof convs / sizeof convs[0]; ci++) {
		const conv_desc *d = &convs[ci];
		const size_t in = (size_t)n * d->in_c * d->in_h * d->in_w, out = (size_t)n * d->out_c * d->out_h * d->out_w;
		const size_t wn = (size_t)d->out_c * d->in_c * d->k_h * d->k_w;
		float *x = rnd_buf(in), *w = rnd_buf(wn), *b = rnd_buf(d->out_c), *dy = rnd_buf(out);
		double *ref = malloc(out * sizeof(double));
		conv_ref(d, n, x, w, b, ref);
		float *y0 = NULL, *dx0 = NULL, *dw0 = NULL, *db0 = NULL;
		for (int i = 0; i < ni; i++)
			for (int threads = 1; threads <= 2; threads++) {
				backend_cpu_set_threads(threads);
				const backend *be = backend_cpu();
				kern_test_use_impl(im[i]);
				const size_t wsb = be->conv2d_workspace(d, n);
				float *ws = be->alloc(wsb);
				memset(ws, 0xff, wsb); /* NaNs: no path may count on a zeroed workspace */
				float *y = calloc(out, sizeof(float)), *dx = calloc(in, sizeof(float));
				float *dw = calloc(wn, sizeof(float)), *db = calloc(d->out_c, sizeof(float));
				dw[0] = 0.5f; /* gradients are added to */
				be->conv2d_forward(d, n, x, w, b, y, ws);
				be->conv2d_backward(d, n, x, w, dy, dx, dw, db, ws);
				for (size_t e = 0; e < out; e++)
					if (fabs(y[e] - ref[e]) > 1e-5 * (1 + fabs(ref[e])))
						fail_msg("conv %zu: y[%zu] = %.9g, reference %.9g", ci, e, (double)y[e], ref[e]);
				if (!y0) {
					y0 = y, dx0 = dx, dw0 = dw, db0 = db;
				} else {
					if (memcmp(y, y0, out * 4) || memcmp(dx, dx0, in * 4) || memcmp(dw, dw0, wn * 4) ||
					    memcmp(db, db0, d->out_c * 4u))
						fail_msg("conv %zu: %s with %d threads differs from portable", ci, im[i]->name,
							 threads);
					free(y);
					free(dx);
					free(dw);
					free(db);
				}
				be->release(ws);
			}
		kern_test_use_impl(NULL);
		/* the weight gradient against the reference: dw[o, c, ki, kj] = 0.5 [0] + sum dy * x */
		for (int o = 0; o < d->out_c; o++) {
			double s = o == 0 ? 0.5 : 0;
			for (int sm = 0; sm < n; sm++)
				for (int oh = 0; oh < d->out_h; oh++)
					for (int ow = 0; ow < d->out_w; ow++) {
						int ih = oh * d->stride_h - d->pad_top, iw = ow * d->stride_w - d->pad_left;
						if (ih < 0 || iw < 0)
							continue;
						s += (double)dy[((size_t)(sm * d->out_c + o) * d->out_h + oh) * d->out_w + ow] *
						     x[((size_t)(sm * d->in_c) * d->in_h + ih) * d->in_w + iw];
					}
			/* tap (c 0, ki 0, kj 0) with padding: only where the input exists */
			assert_true(fabs(dw0[(size_t)o * d->in_c * d->k_h * d->k_w] - s) < 1e-4 * (1 + fabs(s)));
		}
		free(x), free(w), free(b), free(dy), free(ref), free(y0), free(dx0), free(dw0), free(db0);
	}
	backend_cpu_set_threads(0);
}

/* x[s][c][ih][iw], or 0.0f outside the image: what im2col puts in a patch. */
static float conv_tap(const conv_desc *d, const float *x, int s, int c, int oh, int ow, int ki, int kj)
{
	const int ih = oh * d->stride_h - d->pad_top + ki, iw = ow * d->stride_w - d->pad_left + kj;
	if (ih < 0 || iw < 0 || ih >= d->in_h || iw >= d->in_w)
		return 0.0f;
	return x[((size_t)(s * d->in_c + c) * d->in_h + ih) * d->in_w + iw];
}

/* Stride-1 convs take the plane-shift im2col/col2im (ops_cpu.c); these shapes cover its edges:
 * 'same' 3x3 and 5x5, asymmetric padding, 1x3 and 3x1, and wraps too many to put back. */
static const conv_desc shift_convs[] = {
	{3, 7, 9, 4, 7, 9, 3, 3, 1, 1, 1, 1, 0},   {2, 6, 6, 3, 6, 6, 5, 5, 1, 1, 2, 2, 0},
	{2, 8, 5, 3, 6, 5, 3, 3, 1, 1, 0, 1, 0},   {2, 5, 7, 2, 5, 7, 1, 3, 1, 1, 0, 1, 0},
	{2, 7, 4, 2, 7, 4, 3, 1, 1, 1, 1, 0, 0},   {1, 40, 4, 2, 40, 4, 7, 7, 1, 1, 3, 3, 0},
	{16, 8, 8, 5, 8, 8, 3, 3, 1, 1, 1, 1, 0},
	/* large enough for the implicit GEMM (ops_cpu.c): 'same', asymmetric padding */
	{3, 20, 24, 5, 20, 24, 3, 3, 1, 1, 1, 1, 0}, {2, 17, 21, 4, 16, 21, 3, 3, 1, 1, 0, 1, 0},
	{3, 9, 34, 4, 9, 34, 3, 3, 1, 1, 1, 1, 0},  {2, 6, 33, 3, 5, 32, 2, 2, 1, 1, 0, 0, 0}, /* rows of 32+ */
	/* padding only on the right, only on the left, 5x5 'same': the plane's shared zero columns */
	{3, 12, 20, 4, 12, 19, 3, 3, 1, 1, 1, 0, 0}, {2, 10, 20, 3, 10, 20, 3, 3, 1, 1, 1, 2, 0},
	{2, 12, 30, 3, 12, 30, 5, 5, 1, 1, 2, 2, 0},
	/* one column: the outer kernel columns see only padding (their shifted planes all zero) */
	{2, 5, 1, 3, 5, 1, 3, 3, 1, 1, 1, 1, 0},
};

/* The input gradient of a stride-1 conv the CPU backend computes as a correlation
 * (cpu_conv2d_dx_by_correlation): dx[c][ih][iw] = the fma chain from +0.0 over o, then the
 * flipped kernel's rows and columns (ki = k_h-1 .. 0, kj = k_w-1 .. 0), of
 * w[o][c][ki][kj] * dy[o][ih + pad_top - ki][iw + pad_left - kj] (zero outside dy). */
static void correlation_dx(const conv_desc *d, const float *w, const float *dy, float *dx)
{
	const int K = d->in_c * d->k_h * d->k_w, P = d->out_h * d->out_w;
	for (int c = 0; c < d->in_c; c++)
		for (int ih = 0; ih < d->in_h; ih++)
			for (int iw = 0; iw < d->in_w; iw++) {
				float acc = 0.0f;
				for (int o = 0; o < d->out_c; o++)
					for (int ki = d->k_h - 1; ki >= 0; ki--)
						for (int kj = d->k_w - 1; kj >= 0; kj--) {
							const int oh = ih + d->pad_top - ki, ow = iw + d->pad_left - kj;
							const float v = oh < 0 || ow < 0 || oh >= d->out_h || ow >= d->out_w
										? 0.0f
										: dy[(size_t)o * P + (size_t)oh * d->out_w + ow];
							acc = fmaf(w[(size_t)o * K + ((size_t)c * d->k_h + ki) * d->k_w + kj], v, acc);
						}
				dx[((size_t)c * d->in_h + ih) * d->in_w + iw] = acc;
			}
}

/* Any other conv's input gradient: dcol = the fma chain over output channels for each patch
 * entry, added into dx (zeroed by the caller) in (c, ki, kj, oh, ow) order. */
static void col2im_dx(const conv_desc *d, const float *w, const float *dy, float *dcol, float *dx)
{
	const int K = d->in_c * d->k_h * d->k_w, P = d->out_h * d->out_w;
	for (int k = 0; k < K; k++)
		for (int p = 0; p < P; p++) {
			float acc = 0.0f;
			for (int o = 0; o < d->out_c; o++)
				acc = fmaf(w[(size_t)o * K + k], dy[(size_t)o * P + p], acc);
			dcol[(size_t)k * P + p] = acc;
		}
	for (int k = 0; k < K; k++) {
		const int c = k / (d->k_h * d->k_w), ki = k / d->k_w % d->k_h, kj = k % d->k_w;
		for (int p = 0; p < P; p++) {
			const int ih = p / d->out_w * d->stride_h - d->pad_top + ki;
			const int iw = p % d->out_w * d->stride_w - d->pad_left + kj;
			if (ih >= 0 && iw >= 0 && ih < d->in_h && iw < d->in_w)
				dx[((size_t)c * d->in_h + ih) * d->in_w + iw] += dcol[(size_t)k * P + p];
		}
	}
}

/*
 * Every conv path (shifted planes, im2col's row copies and element loops, pointwise) is exactly the
 * rule's arithmetic (with two samples: the second reuses the shifted planes' zero borders):
 * y = fma chain over (c, ki, kj) from the bias; dx = correlation_dx or col2im_dx (which one the
 * backend says); dw = the fma chain over samples and positions from dw's value; db = the rounded sums in sample and position order. Bit for bit.
 */
static void test_conv_paths_are_the_plain_loops_bit_for_bit(void **state)
{
	(void)state;
	const int n = 2;
	int correlations = 0, others = 0;
	for (size_t ci = 0; ci < sizeof shift_convs / sizeof shift_convs[0] + sizeof convs / sizeof convs[0]; ci++) {
		const size_t ns = sizeof shift_convs / sizeof shift_convs[0];
		const conv_desc *d = ci < ns ? &shift_convs[ci] : &convs[ci - ns];
		*(cpu_conv2d_dx_by_correlation(d) ? &correlations : &others) += 1;
		const int K = d->in_c * d->k_h * d->k_w, P = d->out_h * d->out_w;
		const size_t in = (size_t)n * d->in_c * d->in_h * d->in_w, out = (size_t)n * d->out_c * P;
		const size_t wn = (size_t)d->out_c * K;
		float *x = rnd_buf(in), *w = rnd_buf(wn), *b = rnd_buf(d->out_c), *dy = rnd_buf(out);
		float *y = calloc(out, 4), *dx = calloc(in, 4), *dw = calloc(wn, 4), *db = calloc(d->out_c, 4);
		float *ry = calloc(out, 4), *rdx = calloc(in, 4), *rdw = calloc(wn, 4), *rdb = calloc(d->out_c, 4);
		float *dcol = calloc((size_t)K * P, 4);
		for (size_t e = 0; e < wn; e++)
			rdw[e] = (float)e * 0.01f;
		for (int o = 0; o < d->out_c; o++)
			rdb[o] = 0.25f;
		for (int sm = 0; sm < n; sm++) {
			const float *dys = dy + (size_t)sm * d->out_c * P;
			for (int o = 0; o < d->out_c; o++)
				for (int p = 0; p < P; p++) {
					float acc = b[o];
					for (int k = 0; k < K; k++) {
						const int c = k / (d->k_h * d->k_w), ki = k / d->k_w % d->k_h, kj = k % d->k_w;
						acc = fmaf(w[(size_t)o * K + k], conv_tap(d, x, sm, c, p / d->out_w, p % d->out_w, ki, kj),
							   acc);
					}
					ry[((size_t)sm * d->out_c + o) * P + p] = acc;
				}
			float *dxs = rdx + (size_t)sm * d->in_c * d->in_h * d->in_w;
			if (cpu_conv2d_dx_by_correlation(d))
				correlation_dx(d, w, dys, dxs);
			else
				col2im_dx(d, w, dys, dcol, dxs);
			for (int o = 0; o < d->out_c; o++) {
				for (int k = 0; k < K; k++) {
					const int c = k / (d->k_h * d->k_w), ki = k / d->k_w % d->k_h, kj = k % d->k_w;
					float acc = rdw[(size_t)o * K + k];
					for (int p = 0; p < P; p++)
						acc = fmaf(conv_tap(d, x, sm, c, p / d->out_w, p % d->out_w, ki, kj),
							   dys[(size_t)o * P + p], acc);
					rdw[(size_t)o * K + k] = acc;
				}
				for (int p = 0; p < P; p++)
					rdb[o] += dys[(size_t)o * P + p];
			}
		}
		backend_cpu_set_threads(1);
		const backend *be = backend_cpu();
		const size_t wsb = be->conv2d_workspace(d, n);
		float *ws = be->alloc(wsb);
		memset(ws, 0xff, wsb); /* NaNs: no path may count on a zeroed workspace */
		const kern_isa saved = kern_current();
		for (int isa = 0; isa < KERN_ISA_N; isa++) { /* every ISA this CPU runs, for everything */
			if (!kern_isa_supported((kern_isa)isa))
				continue;
			kern_force((kern_isa)isa);
			for (size_t e = 0; e < wn; e++)
				dw[e] = (float)e * 0.01f;
			for (int o = 0; o < d->out_c; o++)
				db[o] = 0.25f;
			be->conv2d_forward(d, n, x, w, b, y, ws);
			be->conv2d_backward(d, n, x, w, dy, dx, dw, db, ws);
			if (memcmp(y, ry, out * 4) || memcmp(dx, rdx, in * 4) || memcmp(dw, rdw, wn * 4) ||
			    memcmp(db, rdb, d->out_c * 4u))
				fail_msg("conv %zu (%dx%d k %dx%d stride %dx%d pad %d,%d) on %s: y %d dx %d dw %d db %d differ "
					 "from the rule",
					 ci, d->in_h, d->in_w, d->k_h, d->k_w, d->stride_h, d->stride_w, d->pad_top, d->pad_left,
					 kern_isa_name((kern_isa)isa), memcmp(y, ry, out * 4) != 0, memcmp(dx, rdx, in * 4) != 0,
					 memcmp(dw, rdw, wn * 4) != 0, memcmp(db, rdb, d->out_c * 4u) != 0);
		}
		kern_force(saved);
		be->release(ws);
		free(x), free(w), free(b), free(dy), free(y), free(dx), free(dw), free(db);
		free(ry), free(rdx), free(rdw), free(rdb), free(dcol);
	}
	/* both input-gradient rules stay covered: 'same' convs as correlations, the rest by col2im */
	assert_true(correlations >= 4 && others >= 4);
	backend_cpu_set_threads(0);
}

static const char net_text[] =
	"[model]\ninput = 3x13x11\n"
	"[layer.c1]\ntype = conv2d\nfilters = 6\nkernel = 3\nstride = 2\npadding = same\nactivation = relu\n"
	"[layer.bn]\ntype = batchnorm\n"
	"[layer.br]\ntype = relu\n" /* batchnorm's fused relu: its backward's masked sums too */
	"[layer.c2]\ntype = conv2d\nfilters = 5\nkernel = 1\nbias = false\n"
	"[layer.ap]\ntype = avgpool\npool = 1\n"
	"[layer.lr]\ntype = leaky_relu\nslope = 0.1\n"
	"[layer.p]\ntype = maxpool\npool = 2\n"
	"[layer.d]\ntype = dropout\nrate = 0.25\n"
	"[layer.f]\ntype = flatten\n"
	"[layer.fc1]\ntype = dense\nunits = 19\nactivation = relu\n"
	"[layer.fc2]\ntype = dense\nunits = 7\n"
	"[layer.loss]\ntype = softmax_xent\n";

/* A whole network: every layer's output and every gradient identical on every ISA (batchnorm's
 * 7x6 planes: whole groups of its lanes and a tail of 2). */
static void test_network_forward_and_backward_identical_on_every_isa(void **state)
{
	(void)state;
	config c;
	model m;
	net_workspace ws;
	const int n = 5;
	config_defaults(&c);
	assert_int_equal(config_load_string(&c, net_text, "test.ini"), 0);
	assert_int_equal(config_validate(&c), 0);
	assert_int_equal(model_build(&c, &m), 0);
	backend_cpu_set_threads(1);
	const backend *be = backend_cpu();
	assert_int_equal(net_workspace_alloc(&m, be, n, &ws), 0);
	float *p = malloc(m.n_params * sizeof(float)), *g = malloc(m.n_params * sizeof(float));
	float *g0 = malloc(m.n_params * sizeof(float));
	model_init_params(&m, 7, p);
	const size_t in = (size_t)n * 3 * 13 * 11;
	float *x = rnd_buf(in);
	uint32_t samples[5] = {3, 1, 4, 1, 5};
	uint8_t labels[5] = {0, 6, 2, 3, 1};
	batch_info b = {n, samples, labels, 1, 0, 1, NULL, NULL};
	const kern_impl *im[4];
	const int ni = impls(im);
	double loss0 = 0;
	float **act0 = calloc((size_t)m.n_layers, sizeof(float *));
	const kern_isa saved_isa = kern_current();
	for (int i = 0; i < ni; i++) {
		kern_test_use_impl(im[i]);
		/* the rest of the ISA's code too (batchnorm's loops, the adds): forced like the products */
		kern_isa isa = KERN_ISA_PORTABLE;
		if (kern_isa_parse(im[i]->name, &isa) != 0)
			isa = KERN_ISA_PORTABLE; /* the AVX-512 tiles on fmaf */
		kern_force(isa);
		memcpy(ws.input, x, in * sizeof(float));
		memset(g, 0, m.n_params * sizeof(float));
		double loss;
		int correct;
		net_forward(&m, be, p, &ws, &b, &loss, &correct);
		net_backward(&m, be, p, g, &ws, &b);
		for (int l = 0; l < m.n_layers; l++) {
			size_t bytes = (size_t)n * m.layers[l].out_numel * sizeof(float);
			if (!act0[l]) {
				act0[l] = malloc(bytes);
				memcpy(act0[l], ws.act[l], bytes);
			} else if (memcmp(act0[l], ws.act[l], bytes)) {
				fail_msg("%s: layer %s's output differs from portable", im[i]->name, m.layers[l].spec.name);
			}
		}
		if (i == 0) {
			memcpy(g0, g, m.n_params * sizeof(float));
			loss0 = loss;
			continue;
		}
		assert_memory_equal(&loss, &loss0, sizeof loss);
		for (int t = 0; t < m.n_tensors; t++) {
			const tensor_view *v = &m.tensors[t];
			if (memcmp(g + v->offset, g0 + v->offset, v->numel * sizeof(float)))
				fail_msg("%s: gradient of %s differs from portable", im[i]->name, v->name);
		}
	}
	kern_test_use_impl(NULL);
	kern_force(saved_isa);
	for (int l = 0; l < m.n_layers; l++)
		free(act0[l]);
	free(act0);
	net_workspace_free(&m, be, &ws);
	free(p);
	free(g);
	free(g0);
	free(x);
	backend_cpu_set_threads(0);
}

/* The stride-2 row copy (a stride-2 conv's im2col), rows of len floats: from a source that ends
 * at the last float a row needs, where a guard page starts (a read past it faults), into rows
 * whose floats past len stay as they were. */
static void check_copy_rows_s2(const char *isa, int len, int rows)
{
	const ptrdiff_t spitch = 2 * len + 3, dpitch = len + 2;
	const size_t sn = (size_t)(rows - 1) * (size_t)spitch + 2 * (size_t)len - 1, dn = (size_t)rows * (size_t)dpitch;
	guarded gs = guarded_buf(sn);
	float *src = gs.p, *dst = rnd_buf(dn), *keep = malloc(dn * sizeof(float));
	memcpy(keep, dst, dn * sizeof(float));
	kern_copy_rows_s2(rows, len, src, spitch, dst, dpitch);
	for (size_t e = 0; e < dn; e++) {
		const ptrdiff_t r = (ptrdiff_t)e / dpitch, i = (ptrdiff_t)e % dpitch;
		const float want = i < len ? src[r * spitch + 2 * i] : keep[e];
		if (memcmp(&dst[e], &want, sizeof want))
			fail_msg("copy_rows_s2 on %s: len %d row %td float %td is %g, not %g", isa, len, r, i,
				 (double)dst[e], (double)want);
	}
	guarded_free(&gs);
	free(dst), free(keep);
}

/* The stride-2 row add (its col2im): dst's even floats get src added (one IEEE add), its odd
 * ones and the floats between rows keep their bits, and a row's last piece touches nothing
 * past the last even float (the buffer ends there, at a guard page). */
static void check_add_rows_s2(const char *isa, int len, int rows)
{
	const ptrdiff_t spitch = len + 3, dpitch = 2 * len + 2;
	const size_t dn = (size_t)(rows - 1) * (size_t)dpitch + 2 * (size_t)len - 1;
	guarded gd = guarded_buf(dn);
	float *src = rnd_buf((size_t)rows * (size_t)spitch), *dst = gd.p, *keep = malloc(dn * sizeof(float));
	memcpy(keep, dst, dn * sizeof(float));
	kern_add_rows_s2(rows, len, src, spitch, dst, dpitch);
	for (size_t e = 0; e < dn; e++) {
		const ptrdiff_t r = (ptrdiff_t)e / dpitch, i = (ptrdiff_t)e % dpitch;
		const float want = i % 2 == 0 && i < 2 * len ? keep[e] + src[r * spitch + i / 2] : keep[e];
		if (memcmp(&dst[e], &want, sizeof want))
			fail_msg("add_rows_s2 on %s: len %d row %td float %td is %g, not %g", isa, len, r, i,
				 (double)dst[e], (double)want);
	}
	guarded_free(&gd);
	free(src), free(keep);
}

/* Both stride-2 row kernels on each ISA, every length up to three vectors and 1 to 3 rows. */
static void test_stride2_row_kernels_every_length_on_every_isa(void **state)
{
	(void)state;
	const kern_isa saved = kern_current();
	for (int isa = KERN_ISA_PORTABLE; isa < KERN_ISA_N; isa++) {
		if (!kern_isa_supported((kern_isa)isa))
			continue;
		kern_force((kern_isa)isa);
		for (int len = 1; len <= 49; len++)
			for (int rows = 1; rows <= 3; rows++) {
				check_copy_rows_s2(kern_isa_name((kern_isa)isa), len, rows);
				check_add_rows_s2(kern_isa_name((kern_isa)isa), len, rows);
			}
	}
	kern_force(saved);
}

/* Dense forward and backward: identical on every ISA and thread count, close to the formula. */
static void test_dense_identity_and_reference(void **state)
{
	(void)state;
	const int n = 17, in_f = 301, out_f = 37;
	float *x = rnd_buf((size_t)n * in_f), *w = rnd_buf((size_t)out_f * in_f), *b = rnd_buf(out_f);
	float *dy = rnd_buf((size_t)n * out_f);
	const kern_impl *im[4];
	const int ni = impls(im);
	float *y0 = NULL, *dx0 = NULL, *dw0 = NULL;
	for (int i = 0; i < ni; i++)
		for (int threads = 1; threads <= 3; threads += 2) {
			backend_cpu_set_threads(threads);
			const backend *be = backend_cpu();
			kern_test_use_impl(im[i]);
			float *y = calloc((size_t)n * out_f, 4), *dx = calloc((size_t)n * in_f, 4);
			float *dw = calloc((size_t)out_f * in_f, 4), *db = calloc(out_f, 4);
			be->dense_forward(n, in_f, out_f, x, w, b, y);
			be->dense_backward(n, in_f, out_f, x, w, dy, dx, dw, db);
			if (!y0) {
				y0 = y, dx0 = dx, dw0 = dw;
				for (int s = 0; s < n; s++)
					for (int o = 0; o < out_f; o++) {
						double r = b[o];
						for (int k = 0; k < in_f; k++)
							r += (double)x[s * in_f + k] * w[o * in_f + k];
						assert_true(fabs(y[s * out_f + o] - r) < 1e-5 * (1 + fabs(r)));
					}
			} else {
				if (memcmp(y, y0, (size_t)n * out_f * 4) || memcmp(dx, dx0, (size_t)n * in_f * 4) ||
				    memcmp(dw, dw0, (size_t)out_f * in_f * 4))
					fail_msg("dense: %s with %d threads differs from portable", im[i]->name, threads);
				free(y), free(dx), free(dw);
			}
			free(db);
		}
	kern_test_use_impl(NULL);
	backend_cpu_set_threads(0);
	free(x), free(w), free(b), free(dy), free(y0), free(dx0), free(dw0);
}

static void test_exp_and_log_are_accurate(void **state)
{
	(void)state;
	for (double x = -700; x < 700; x += 0.37) {
		double e = exp(x), k = kern_exp(x);
		if (fabs(k - e) > 2e-15 * e)
			fail_msg("kern_exp(%.17g) = %.17g, libm %.17g", x, k, e);
	}
	for (double x = -30; x < 0; x += 0.0013) {
		double e = exp(x), k = kern_exp(x);
		if (fabs(k - e) > 2e-15 * e)
			fail_msg("kern_exp(%.17g) = %.17g, libm %.17g", x, k, e);
	}
	for (double x = 1e-300; x < 1e300; x *= 1.7) {
		double l = log(x), k = kern_log(x);
		if (fabs(k - l) > 2e-15 * fabs(l) + 1e-300)
			fail_msg("kern_log(%.17g) = %.17g, libm %.17g", x, k, l);
	}
	for (double x = 0.5; x < 4; x += 0.001) {
		double l = log(x), k = kern_log(x);
		if (fabs(k - l) > 4e-16 + 2e-15 * fabs(l))
			fail_msg("kern_log(%.17g) = %.17g, libm %.17g", x, k, l);
	}
	assert_true(kern_exp(0) == 1.0);
	assert_true(kern_log(1) == 0.0);
	assert_true(kern_exp(800) == INFINITY && kern_exp(-800) == 0.0);
	assert_true(kern_log(0) == -INFINITY && isnan(kern_log(-1)));
}

static void test_powi_and_cos_are_accurate(void **state)
{
	(void)state;
	const double bases[] = {0.9, 0.999, 0.95, 0.1, 0.5, 1.0, 2.0, 0.9999};
	for (size_t i = 0; i < sizeof bases / sizeof bases[0]; i++)
		for (long n = 0; n < 200000; n = n < 64 ? n + 1 : n * 3 / 2) {
			double want = pow(bases[i], (double)n), got = kern_powi(bases[i], n);
			if (fabs(got - want) > (double)(n + 1) * 4e-16 * want + 1e-300) /* squarings: ~n ulps */
				fail_msg("kern_powi(%.17g, %ld) = %.17g, libm %.17g", bases[i], n, got, want);
		}
	assert_true(kern_powi(0.5, -2) == 4.0 && kern_powi(3.0, 0) == 1.0 && kern_powi(0.0, 3) == 0.0);
	for (double x = -10; x < 10; x += 0.000731) {
		double want = cos(x), got = kern_cos(x);
		if (fabs(got - want) > 1e-15)
			fail_msg("kern_cos(%.17g) = %.17g, libm %.17g", x, got, want);
	}
	const double pi = 3.14159265358979323846;
	for (long e = 0; e <= 1000; e++) { /* a cosine schedule's points */
		double x = pi * (double)e / 1000.0;
		if (fabs(kern_cos(x) - cos(x)) > 1e-15)
			fail_msg("kern_cos(pi * %ld / 1000) = %.17g, libm %.17g", e, kern_cos(x), cos(x));
	}
	assert_true(kern_cos(0) == 1.0 && isnan(kern_cos(NAN)) && isnan(kern_cos(INFINITY)));
}

static void test_isa_choice_refuses_unknown_and_missing(void **state)
{
	(void)state;
	const kern_isa best = kern_isa_best();
	unsetenv("SPOTTRAIN_CPU_ISA");
	assert_int_equal(kern_select("sse9"), EXIT_USAGE);
	assert_int_equal(kern_select("portable"), 0);
	assert_int_equal(kern_current(), KERN_ISA_PORTABLE);
	setenv("SPOTTRAIN_CPU_ISA", "bogus", 1);
	assert_int_equal(kern_select(NULL), EXIT_USAGE);
	for (int i = 0; i < KERN_ISA_N; i++) {
		setenv("SPOTTRAIN_CPU_ISA", kern_isa_name((kern_isa)i), 1);
		assert_int_equal(kern_select("portable"), kern_isa_supported((kern_isa)i) ? 0 : EXIT_USAGE);
		if (kern_isa_supported((kern_isa)i))
			assert_int_equal(kern_current(), i); /* the environment wins over the config */
	}
	unsetenv("SPOTTRAIN_CPU_ISA");
	assert_int_equal(kern_select("auto"), 0);
	assert_int_equal(kern_current(), best);
	assert_true(kern_isa_supported(KERN_ISA_PORTABLE));
	char buf[256];
	assert_non_null(strstr(kern_describe(buf, sizeof buf), kern_isa_name(best)));
}

/* The peak loop runs and reports a positive rate (a figure for bench, never timed here). */
static void test_peak_loop_reports_a_rate(void **state)
{
	(void)state;
	assert_true(kern_peak_gflops(kern_current(), 1, 0.01, 1) > 0);
	assert_true(kern_peak_gflops(KERN_ISA_PORTABLE, 2, 0.01, 1) > 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_gemm_every_isa_is_the_fma_chain_bit_for_bit),
		cmocka_unit_test(test_gemm_c_zero_is_zeroing_c_first),
		cmocka_unit_test(test_fixed_point_is_the_same_on_every_isa),
		cmocka_unit_test(test_gemm_row_tables_are_the_fma_chain),
		cmocka_unit_test(test_gemm_matches_a_double_reference),
		cmocka_unit_test(test_conv_reference_and_identity_across_isas),
		cmocka_unit_test(test_conv_paths_are_the_plain_loops_bit_for_bit),
		cmocka_unit_test(test_stride2_row_kernels_every_length_on_every_isa),
		cmocka_unit_test(test_dense_identity_and_reference),
		cmocka_unit_test(test_network_forward_and_backward_identical_on_every_isa),
		cmocka_unit_test(test_exp_and_log_are_accurate),
		cmocka_unit_test(test_powi_and_cos_are_accurate),
		cmocka_unit_test(test_isa_choice_refuses_unknown_and_missing),
		cmocka_unit_test(test_peak_loop_reports_a_rate),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

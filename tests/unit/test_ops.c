/*
 * test_ops.c - the CPU backend (src/ops_cpu.c) against direct double
 * precision references and central finite differences.
 *
 * Gradient checks: every op is checked on L = sum_j out_j * r_j with a fixed
 * random r, so dL/dout = r is what the backward pass receives. The numerical
 * derivative (L(x + h) - L(x - h)) / (x+h - (x-h)) is taken in double over the
 * float forward pass, with the step actually represented in float. Conv and
 * dense are linear in each input, so the difference quotient is exact up to
 * float rounding in the few touched outputs; maxpool and relu get inputs at
 * least 2h away from their kinks and ties; softmax-xent is smooth (O(h^2)).
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

#include "kernels/kernels.h"
#include "ops.h"
#include "philox.h"

#define FD_STEP 1e-2f

/* ---------------------------------------------------------------- helpers */

/* A small deterministic generator for test data (xorshift64*). */
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static void rng_seed(uint64_t s)
{
	rng_state = s * 0x9E3779B97F4A7C15ull + 1;
}

static double rng_uniform(void) /* [0, 1) */
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return (double)((rng_state * 0x2545F4914F6CDD1Dull) >> 11) * (1.0 / 9007199254740992.0);
}

static float *rand_floats(size_t n, float lo, float hi)
{
	float *p = malloc(sizeof(float) * (n ? n : 1));
	assert_non_null(p);
	for (size_t i = 0; i < n; i++)
		p[i] = lo + (hi - lo) * (float)rng_uniform();
	return p;
}

static float *filled_floats(size_t n, float v)
{
	float *p = malloc(sizeof(float) * (n ? n : 1));
	assert_non_null(p);
	for (size_t i = 0; i < n; i++)
		p[i] = v;
	return p;
}

static float *copy_floats(const float *src, size_t n)
{
	float *p = malloc(sizeof(float) * (n ? n : 1));
	assert_non_null(p);
	memcpy(p, src, sizeof(float) * n);
	return p;
}

/* Workspace as the trainer allocates it: once, 64-byte aligned. */
static float *ws_alloc(size_t bytes)
{
	size_t sz = (bytes + 63) / 64 * 64;
	float *p = aligned_alloc(64, sz ? sz : 64);
	assert_non_null(p);
	return p;
}

static double dot_out(const float *out, const float *r, size_t n)
{
	double s = 0.0;
	for (size_t i = 0; i < n; i++)
		s += (double)out[i] * (double)r[i];
	return s;
}

/* |got - want| <= atol + rtol*|want|, with a message naming the tensor and the element. */
static void expect_close(double got, double want, double atol, double rtol, const char *what,
			 size_t idx)
{
	double err = fabs(got - want);
	if (!(err <= atol + rtol * fabs(want)))
		fail_msg("%s[%zu]: got %.9g, want %.9g (error %.3g)", what, idx, got, want, err);
}

/* The loss as a function of the current contents of all buffers. */
typedef double (*loss_fn)(void *ctx);

/*
 * Compare analytic gradient g of loss f with respect to x[0..n) with central
 * differences. x is perturbed in place and restored.
 */
static void check_fd(loss_fn f, void *ctx, float *x, const float *g, size_t n, double atol,
		     double rtol, const char *what)
{
	for (size_t i = 0; i < n; i++) {
		const float x0 = x[i];
		const float xp = x0 + FD_STEP, xm = x0 - FD_STEP;
		x[i] = xp;
		double lp = f(ctx);
		x[i] = xm;
		double lm = f(ctx);
		x[i] = x0;
		double num = (lp - lm) / ((double)xp - (double)xm);
		expect_close(g[i], num, atol, rtol, what, i);
	}
}

static const backend *be(void)
{
	const backend *b = backend_cpu();
	assert_non_null(b);
	return b;
}

/* ---------------------------------------------------------------- conv2d */

static conv_desc conv_make(int ic, int ih, int iw, int oc, int kh, int kw, int sh, int sw,
			   int pt, int pl, int pb, int pr)
{
	conv_desc d = {
		.in_c = ic, .in_h = ih, .in_w = iw, .out_c = oc,
		.out_h = (ih + pt + pb - kh) / sh + 1, .out_w = (iw + pl + pr - kw) / sw + 1,
		.k_h = kh, .k_w = kw, .stride_h = sh, .stride_w = sw, .pad_top = pt, .pad_left = pl,
	};
	return d;
}

static size_t conv_in_n(const conv_desc *d) { return (size_t)d->in_c * d->in_h * d->in_w; }
static size_t conv_out_n(const conv_desc *d) { return (size_t)d->out_c * d->out_h * d->out_w; }
static size_t conv_w_n(const conv_desc *d) { return (size_t)d->out_c * d->in_c * d->k_h * d->k_w; }

/* Shapes covering valid and same padding, strides 1 and 2, non-square kernels, 1x1. */
static conv_desc conv_case(int k)
{
	switch (k) {
	case 0: return conv_make(3, 7, 6, 4, 3, 2, 1, 1, 0, 0, 0, 0);  /* valid, 3x2 kernel */
	case 1: return conv_make(2, 6, 5, 3, 3, 3, 1, 1, 1, 1, 1, 1);  /* same */
	case 2: return conv_make(3, 9, 8, 2, 3, 3, 2, 2, 1, 1, 1, 1);  /* stride 2, padded */
	case 3: return conv_make(2, 7, 6, 3, 2, 3, 2, 1, 0, 1, 0, 1);  /* strides 2x1, 2x3 kernel */
	case 4: return conv_make(5, 4, 3, 3, 1, 1, 1, 1, 0, 0, 0, 0);  /* pointwise (no im2col) */
	case 5: return conv_make(2, 5, 5, 2, 1, 1, 2, 2, 0, 0, 0, 0);  /* 1x1 stride 2 */
	case 6: return conv_make(2, 4, 4, 3, 5, 5, 1, 1, 2, 2, 2, 2);  /* kernel larger than input */
	default: return conv_make(1, 28, 28, 4, 3, 3, 1, 1, 0, 0, 0, 0); /* mnist conv1-like */
	}
}
#define CONV_CASES 8

/* Direct convolution in double. */
static void conv_direct(const conv_desc *d, int n, const float *in, const float *w,
			const float *b, double *out)
{
	for (int i = 0; i < n; i++)
		for (int o = 0; o < d->out_c; o++)
			for (int oh = 0; oh < d->out_h; oh++)
				for (int ow = 0; ow < d->out_w; ow++) {
					double s = b ? b[o] : 0.0;
					for (int c = 0; c < d->in_c; c++)
						for (int ki = 0; ki < d->k_h; ki++)
							for (int kj = 0; kj < d->k_w; kj++) {
								int ih = oh * d->stride_h - d->pad_top + ki;
								int iw = ow * d->stride_w - d->pad_left + kj;
								if (ih < 0 || ih >= d->in_h || iw < 0 || iw >= d->in_w)
									continue;
								s += (double)in[(((size_t)i * d->in_c + c) * d->in_h + ih) * d->in_w + iw] *
								     w[(((size_t)o * d->in_c + c) * d->k_h + ki) * d->k_w + kj];
							}
					out[(((size_t)i * d->out_c + o) * d->out_h + oh) * d->out_w + ow] = s;
				}
}

static void test_conv_forward_matches_direct_convolution(void **state)
{
	(void)state;
	backend_cpu_set_threads(3);
	for (int k = 0; k < CONV_CASES; k++) {
		conv_desc d = conv_case(k);
		const int n = 5;
		rng_seed(100 + k);
		float *in = rand_floats(n * conv_in_n(&d), -1, 1), *w = rand_floats(conv_w_n(&d), -1, 1);
		float *b = rand_floats(d.out_c, -1, 1), *out = filled_floats(n * conv_out_n(&d), NAN);
		double *ref = malloc(sizeof(double) * n * conv_out_n(&d));
		float *ws = ws_alloc(be()->conv2d_workspace(&d, n));
		be()->conv2d_forward(&d, n, in, w, b, out, ws);
		conv_direct(&d, n, in, w, b, ref);
		for (size_t j = 0; j < n * conv_out_n(&d); j++)
			expect_close(out[j], ref[j], 1e-5, 1e-5, "conv out", j);
		free(in), free(w), free(b), free(out), free(ref), free(ws);
	}
}

struct conv_ctx {
	conv_desc d;
	int n;
	float *in, *w, *b, *out, *r, *ws;
};

static double conv_loss(void *p)
{
	struct conv_ctx *c = p;
	be()->conv2d_forward(&c->d, c->n, c->in, c->w, c->b, c->out, c->ws);
	return dot_out(c->out, c->r, c->n * conv_out_n(&c->d));
}

static void test_conv_backward_matches_finite_differences(void **state)
{
	(void)state;
	backend_cpu_set_threads(2);
	for (int k = 0; k < CONV_CASES - 1; k++) {
		struct conv_ctx c = {.d = conv_case(k), .n = 3};
		const conv_desc *d = &c.d;
		rng_seed(200 + k);
		c.in = rand_floats(c.n * conv_in_n(d), -1, 1);
		c.w = rand_floats(conv_w_n(d), -1, 1);
		c.b = rand_floats(d->out_c, -1, 1);
		c.r = rand_floats(c.n * conv_out_n(d), -1, 1);
		c.out = filled_floats(c.n * conv_out_n(d), 0);
		c.ws = ws_alloc(be()->conv2d_workspace(d, c.n));
		/* dw and db are added to what is there; din is overwritten. */
		float *dw0 = rand_floats(conv_w_n(d), -1, 1), *db0 = rand_floats(d->out_c, -1, 1);
		float *dw = copy_floats(dw0, conv_w_n(d)), *db = copy_floats(db0, d->out_c);
		float *din = filled_floats(c.n * conv_in_n(d), NAN);
		be()->conv2d_backward(d, c.n, c.in, c.w, c.r, din, dw, db, c.ws);
		for (size_t j = 0; j < conv_w_n(d); j++)
			dw[j] -= dw0[j];
		for (int j = 0; j < d->out_c; j++)
			db[j] -= db0[j];
		check_fd(conv_loss, &c, c.in, din, c.n * conv_in_n(d), 1e-3, 1e-3, "conv din");
		check_fd(conv_loss, &c, c.w, dw, conv_w_n(d), 1e-3, 1e-3, "conv dw");
		check_fd(conv_loss, &c, c.b, db, d->out_c, 1e-3, 1e-3, "conv db");
		free(c.in), free(c.w), free(c.b), free(c.r), free(c.out), free(c.ws);
		free(dw0), free(db0), free(dw), free(db), free(din);
	}
}

static void test_conv_backward_without_din_gives_same_weight_gradients(void **state)
{
	(void)state;
	backend_cpu_set_threads(2);
	for (int k = 0; k < CONV_CASES; k++) {
		conv_desc d = conv_case(k);
		const int n = 4;
		rng_seed(300 + k);
		float *in = rand_floats(n * conv_in_n(&d), -1, 1), *w = rand_floats(conv_w_n(&d), -1, 1);
		float *dy = rand_floats(n * conv_out_n(&d), -1, 1), *din = malloc(sizeof(float) * n * conv_in_n(&d));
		float *dw1 = filled_floats(conv_w_n(&d), 0), *db1 = filled_floats(d.out_c, 0);
		float *dw2 = filled_floats(conv_w_n(&d), 0), *db2 = filled_floats(d.out_c, 0);
		float *ws = ws_alloc(be()->conv2d_workspace(&d, n));
		be()->conv2d_backward(&d, n, in, w, dy, din, dw1, db1, ws);
		be()->conv2d_backward(&d, n, in, w, dy, NULL, dw2, db2, ws);
		assert_memory_equal(dw1, dw2, sizeof(float) * conv_w_n(&d));
		assert_memory_equal(db1, db2, sizeof(float) * d.out_c);
		free(in), free(w), free(dy), free(din), free(dw1), free(db1), free(dw2), free(db2), free(ws);
	}
}

/* Two identical calls give identical bits (no race-order sums), for several team sizes. */
static void test_conv_is_bitwise_deterministic(void **state)
{
	(void)state;
	for (int threads = 1; threads <= 3; threads++) {
		backend_cpu_set_threads(threads);
		conv_desc d = conv_make(4, 10, 9, 6, 3, 3, 1, 1, 1, 1, 1, 1);
		const int n = 7;
		rng_seed(400 + threads);
		size_t ni = n * conv_in_n(&d), no = n * conv_out_n(&d), nw = conv_w_n(&d);
		float *in = rand_floats(ni, -1, 1), *w = rand_floats(nw, -1, 1), *b = rand_floats(d.out_c, -1, 1);
		float *dy = rand_floats(no, -1, 1), *ws = ws_alloc(be()->conv2d_workspace(&d, n));
		float *out[2], *din[2], *dw[2], *db[2];
		for (int r = 0; r < 2; r++) {
			out[r] = filled_floats(no, 0), din[r] = filled_floats(ni, 0);
			dw[r] = filled_floats(nw, 0.5f), db[r] = filled_floats(d.out_c, 0.5f);
			be()->conv2d_forward(&d, n, in, w, b, out[r], ws);
			be()->conv2d_backward(&d, n, in, w, dy, din[r], dw[r], db[r], ws);
		}
		assert_memory_equal(out[0], out[1], sizeof(float) * no);
		assert_memory_equal(din[0], din[1], sizeof(float) * ni);
		assert_memory_equal(dw[0], dw[1], sizeof(float) * nw);
		assert_memory_equal(db[0], db[1], sizeof(float) * d.out_c);
		for (int r = 0; r < 2; r++)
			free(out[r]), free(din[r]), free(dw[r]), free(db[r]);
		free(in), free(w), free(b), free(dy), free(ws);
	}
}

/* More samples than threads, fewer samples than threads, one sample: all the same answer. */
static void test_conv_thread_counts_agree(void **state)
{
	(void)state;
	conv_desc d = conv_make(3, 8, 8, 5, 3, 3, 1, 1, 0, 0, 0, 0);
	rng_seed(500);
	const int n = 4;
	size_t ni = n * conv_in_n(&d), no = n * conv_out_n(&d), nw = conv_w_n(&d);
	float *in = rand_floats(ni, -1, 1), *w = rand_floats(nw, -1, 1), *b = rand_floats(d.out_c, -1, 1);
	float *dy = rand_floats(no, -1, 1);
	float *out1 = filled_floats(no, 0), *dw1 = filled_floats(nw, 0), *db1 = filled_floats(d.out_c, 0);
	backend_cpu_set_threads(1);
	float *ws = ws_alloc(be()->conv2d_workspace(&d, n));
	be()->conv2d_forward(&d, n, in, w, b, out1, ws);
	be()->conv2d_backward(&d, n, in, w, dy, NULL, dw1, db1, ws);
	free(ws);
	for (int threads = 2; threads <= 6; threads += 4) {
		backend_cpu_set_threads(threads);
		assert_int_equal(backend_cpu_threads(), threads);
		ws = ws_alloc(be()->conv2d_workspace(&d, n));
		float *out = filled_floats(no, 0), *dw = filled_floats(nw, 0), *db = filled_floats(d.out_c, 0);
		be()->conv2d_forward(&d, n, in, w, b, out, ws);
		be()->conv2d_backward(&d, n, in, w, dy, NULL, dw, db, ws);
		/* Forward does the same per-sample products: identical. Sums are regrouped: close. */
		assert_memory_equal(out, out1, sizeof(float) * no);
		for (size_t j = 0; j < nw; j++)
			expect_close(dw[j], dw1[j], 1e-5, 1e-5, "dw across thread counts", j);
		for (int j = 0; j < d.out_c; j++)
			expect_close(db[j], db1[j], 1e-5, 1e-5, "db across thread counts", (size_t)j);
		free(out), free(dw), free(db), free(ws);
	}
	free(in), free(w), free(b), free(dy), free(out1), free(dw1), free(db1);
}

/* ---------------------------------------------------------------- maxpool */

/* Distinct values 0.05 apart (shuffled), so a step of 0.01 never changes an argmax. */
static float *pool_input(size_t count)
{
	float *x = malloc(sizeof(float) * count);
	assert_non_null(x);
	for (size_t i = 0; i < count; i++)
		x[i] = 0.05f * (float)i - 0.025f * (float)count;
	for (size_t i = count - 1; i > 0; i--) {
		size_t j = (size_t)(rng_uniform() * (double)(i + 1));
		float t = x[i];
		x[i] = x[j];
		x[j] = t;
	}
	return x;
}

static pool_desc pool_make(int c, int ih, int iw, int kh, int kw, int sh, int sw)
{
	pool_desc p = {.c = c, .in_h = ih, .in_w = iw, .k_h = kh, .k_w = kw, .stride_h = sh,
		       .stride_w = sw, .out_h = (ih - kh) / sh + 1, .out_w = (iw - kw) / sw + 1};
	return p;
}

static void test_maxpool_forward_takes_first_maximum_and_records_argmax(void **state)
{
	(void)state;
	backend_cpu_set_threads(2);
	/* One 4x4 plane, 2x2 stride 2 (the fast path) and 3x3 stride 1 (the general path). */
	const float x[16] = {1, 5, 2, 2, 3, 4, 2, 2, 0, -1, 7, 6, 9, 9, 6, 7};
	pool_desc d = pool_make(1, 4, 4, 2, 2, 2, 2);
	float y[4];
	int32_t a[4];
	be()->maxpool_forward(&d, 1, x, y, a);
	const float want_y[4] = {5, 2, 9, 7};
	const int32_t want_a[4] = {1, 2, 12, 10};
	assert_memory_equal(y, want_y, sizeof y);
	assert_memory_equal(a, want_a, sizeof a);

	pool_desc g = pool_make(1, 4, 4, 3, 3, 1, 1);
	be()->maxpool_forward(&g, 1, x, y, a);
	const float want_gy[4] = {7, 7, 9, 9};
	const int32_t want_ga[4] = {10, 10, 12, 13};
	assert_memory_equal(y, want_gy, sizeof want_gy);
	assert_memory_equal(a, want_ga, sizeof want_ga);
}

struct pool_ctx {
	pool_desc d;
	int n;
	float *in, *out, *r;
	int32_t *am;
};

static double pool_loss(void *p)
{
	struct pool_ctx *c = p;
	be()->maxpool_forward(&c->d, c->n, c->in, c->out, c->am);
	return dot_out(c->out, c->r, (size_t)c->n * c->d.c * c->d.out_h * c->d.out_w);
}

static void test_maxpool_backward_matches_finite_differences(void **state)
{
	(void)state;
	backend_cpu_set_threads(2);
	const pool_desc cases[] = {
		pool_make(3, 6, 8, 2, 2, 2, 2), /* the mnist_cnn pool */
		pool_make(2, 7, 7, 2, 2, 2, 2), /* odd size: last row and column unused */
		pool_make(2, 7, 9, 3, 3, 2, 2), /* stride < kernel: overlapping windows */
		pool_make(2, 6, 6, 2, 2, 1, 1), /* stride 1 */
		pool_make(1, 9, 8, 2, 3, 3, 2), /* stride > kernel, non-square */
	};
	for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
		struct pool_ctx c = {.d = cases[k], .n = 3};
		rng_seed(600 + k);
		size_t ni = (size_t)c.n * c.d.c * c.d.in_h * c.d.in_w;
		size_t no = (size_t)c.n * c.d.c * c.d.out_h * c.d.out_w;
		c.in = pool_input(ni);
		c.out = filled_floats(no, 0);
		c.r = rand_floats(no, -1, 1);
		c.am = malloc(sizeof(int32_t) * no);
		float *din = filled_floats(ni, NAN);
		pool_loss(&c);
		be()->maxpool_backward(&c.d, c.n, c.r, c.am, din);
		check_fd(pool_loss, &c, c.in, din, ni, 1e-4, 1e-4, "maxpool din");
		free(c.in), free(c.out), free(c.r), free(c.am), free(din);
	}
}

/* ---------------------------------------------------------------- relu */

struct ew_ctx {
	size_t n;
	float *in, *out, *r;
};

static double relu_loss(void *p)
{
	struct ew_ctx *c = p;
	be()->relu_forward(c->n, c->in, c->out);
	return dot_out(c->out, c->r, c->n);
}

static void test_relu_matches_finite_differences_and_runs_in_place(void **state)
{
	(void)state;
	backend_cpu_set_threads(2);
	struct ew_ctx c = {.n = 301};
	rng_seed(700);
	c.in = rand_floats(c.n, -1, 1);
	for (size_t i = 0; i < c.n; i++) /* keep away from the kink */
		c.in[i] += c.in[i] >= 0 ? 0.05f : -0.05f;
	c.out = filled_floats(c.n, 0);
	c.r = rand_floats(c.n, -1, 1);
	relu_loss(&c);
	for (size_t i = 0; i < c.n; i++)
		assert_true(c.out[i] == (c.in[i] > 0 ? c.in[i] : 0.0f));
	float *din = filled_floats(c.n, NAN);
	be()->relu_backward(c.n, c.out, c.r, din);
	check_fd(relu_loss, &c, c.in, din, c.n, 1e-4, 1e-4, "relu din");
	float *inplace = copy_floats(c.r, c.n);
	be()->relu_backward(c.n, c.out, inplace, inplace);
	assert_memory_equal(inplace, din, sizeof(float) * c.n);
	free(c.in), free(c.out), free(c.r), free(din), free(inplace);
}

/* Large enough for the parallel path. */
static void test_relu_large_matches_scalar(void **state)
{
	(void)state;
	backend_cpu_set_threads(2);
	size_t n = 200003;
	rng_seed(701);
	float *x = rand_floats(n, -1, 1), *y = filled_floats(n, NAN), *g = rand_floats(n, -1, 1);
	be()->relu_forward(n, x, y);
	be()->relu_backward(n, y, g, g);
	for (size_t i = 0; i < n; i++) {
		assert_true(y[i] == (x[i] > 0 ? x[i] : 0.0f));
		if (!(y[i] > 0))
			assert_true(g[i] == 0.0f);
	}
	free(x), free(y), free(g);
}

/* ---------------------------------------------------------------- dense */

struct dense_ctx {
	int n, in_f, out_f;
	float *in, *w, *b, *out, *r;
};

static double dense_loss(void *p)
{
	struct dense_ctx *c = p;
	be()->dense_forward(c->n, c->in_f, c->out_f, c->in, c->w, c->b, c->out);
	return dot_out(c->out, c->r, (size_t)c->n * c->out_f);
}

static void test_dense_forward_matches_naive_product(void **state)
{
	(void)state;
	backend_cpu_set_threads(3);
	/* Small (one thread), split by rows, split by columns. */
	const int shapes[][3] = {{3, 7, 5}, {64, 300, 40}, {5, 400, 150}};
	for (size_t k = 0; k < 3; k++) {
		int n = shapes[k][0], in_f = shapes[k][1], out_f = shapes[k][2];
		rng_seed(800 + k);
		float *in = rand_floats((size_t)n * in_f, -1, 1), *w = rand_floats((size_t)out_f * in_f, -1, 1);
		float *b = rand_floats(out_f, -1, 1), *out = filled_floats((size_t)n * out_f, NAN);
		be()->dense_forward(n, in_f, out_f, in, w, b, out);
		for (int i = 0; i < n; i++)
			for (int o = 0; o < out_f; o++) {
				double s = b[o];
				for (int j = 0; j < in_f; j++)
					s += (double)in[(size_t)i * in_f + j] * w[(size_t)o * in_f + j];
				expect_close(out[(size_t)i * out_f + o], s, 1e-4, 1e-5, "dense out",
					     (size_t)i * out_f + o);
			}
		free(in), free(w), free(b), free(out);
	}
}

static void test_dense_backward_matches_finite_differences(void **state)
{
	(void)state;
	backend_cpu_set_threads(2);
	const int shapes[][3] = {{3, 7, 5}, {4, 40, 3}, {2, 9, 33}};
	for (size_t k = 0; k < 3; k++) {
		struct dense_ctx c = {.n = shapes[k][0], .in_f = shapes[k][1], .out_f = shapes[k][2]};
		rng_seed(900 + k);
		size_t ni = (size_t)c.n * c.in_f, nw = (size_t)c.out_f * c.in_f, no = (size_t)c.n * c.out_f;
		c.in = rand_floats(ni, -1, 1), c.w = rand_floats(nw, -1, 1), c.b = rand_floats(c.out_f, -1, 1);
		c.out = filled_floats(no, 0), c.r = rand_floats(no, -1, 1);
		float *dw0 = rand_floats(nw, -1, 1), *db0 = rand_floats(c.out_f, -1, 1);
		float *dw = copy_floats(dw0, nw), *db = copy_floats(db0, c.out_f), *din = filled_floats(ni, NAN);
		be()->dense_backward(c.n, c.in_f, c.out_f, c.in, c.w, c.r, din, dw, db);
		/* Without din: the same weight gradients. */
		float *dw2 = copy_floats(dw0, nw), *db2 = copy_floats(db0, c.out_f);
		be()->dense_backward(c.n, c.in_f, c.out_f, c.in, c.w, c.r, NULL, dw2, db2);
		assert_memory_equal(dw, dw2, sizeof(float) * nw);
		assert_memory_equal(db, db2, sizeof(float) * c.out_f);
		for (size_t j = 0; j < nw; j++)
			dw[j] -= dw0[j];
		for (int j = 0; j < c.out_f; j++)
			db[j] -= db0[j];
		check_fd(dense_loss, &c, c.in, din, ni, 1e-3, 1e-3, "dense din");
		check_fd(dense_loss, &c, c.w, dw, nw, 1e-3, 1e-3, "dense dw");
		check_fd(dense_loss, &c, c.b, db, c.out_f, 1e-3, 1e-3, "dense db");
		free(c.in), free(c.w), free(c.b), free(c.out), free(c.r);
		free(dw0), free(db0), free(dw), free(db), free(din), free(dw2), free(db2);
	}
}

/* The mnist_cnn fc1 shape takes the threaded path: check it against doubles, and its bits twice. */
static void test_dense_large_backward_is_correct_and_deterministic(void **state)
{
	(void)state;
	backend_cpu_set_threads(2);
	const int n = 16, in_f = 1000, out_f = 64;
	rng_seed(950);
	size_t ni = (size_t)n * in_f, nw = (size_t)out_f * in_f;
	float *in = rand_floats(ni, -1, 1), *w = rand_floats(nw, -1, 1), *dy = rand_floats((size_t)n * out_f, -1, 1);
	float *dw[2], *db[2], *din[2];
	for (int r = 0; r < 2; r++) {
		dw[r] = filled_floats(nw, 0), db[r] = filled_floats(out_f, 0), din[r] = filled_floats(ni, NAN);
		be()->dense_backward(n, in_f, out_f, in, w, dy, din[r], dw[r], db[r]);
	}
	assert_memory_equal(dw[0], dw[1], sizeof(float) * nw);
	assert_memory_equal(din[0], din[1], sizeof(float) * ni);
	for (int o = 0; o < out_f; o += 7)
		for (int j = 0; j < in_f; j += 13) {
			double s = 0;
			for (int i = 0; i < n; i++)
				s += (double)dy[(size_t)i * out_f + o] * in[(size_t)i * in_f + j];
			expect_close(dw[0][(size_t)o * in_f + j], s, 1e-4, 1e-5, "dense dw", (size_t)o * in_f + j);
		}
	for (int i = 0; i < n; i++)
		for (int j = 0; j < in_f; j += 11) {
			double s = 0;
			for (int o = 0; o < out_f; o++)
				s += (double)dy[(size_t)i * out_f + o] * w[(size_t)o * in_f + j];
			expect_close(din[0][(size_t)i * in_f + j], s, 1e-4, 1e-5, "dense din", (size_t)i * in_f + j);
		}
	for (int r = 0; r < 2; r++)
		free(dw[r]), free(db[r]), free(din[r]);
	free(in), free(w), free(dy);
}

/* ---------------------------------------------------------------- dropout */

static dropout_desc drop_make(float rate, uint32_t layer, uint32_t epoch, size_t per_sample)
{
	dropout_desc d = {.rate = rate, .seed = 1234, .layer = layer, .epoch = epoch, .per_sample = per_sample};
	return d;
}

static void test_dropout_mask_is_philox_dropout_keep_per_element(void **state)
{
	(void)state;
	backend_cpu_set_threads(2);
	const size_t ps_cases[] = {37, 32, 1, 9216, 131}; /* tails of 4 and of the 64-element batch */
	const float rates[] = {0.25f, 0.5f, 0.9f};
	const uint32_t samples[] = {0, 17, 59999, 3, 4000000000u};
	const int n = 5;
	const kern_isa saved = kern_current();
	for (int isa = KERN_ISA_PORTABLE; isa < KERN_ISA_N; isa++) /* each ISA's Philox */
	for (size_t a = 0; a < 5; a++)
		for (size_t b = 0; b < 3; b++) {
			if (!kern_isa_supported((kern_isa)isa))
				continue;
			kern_force((kern_isa)isa);
			dropout_desc d = drop_make(rates[b], 3, 7, ps_cases[a]);
			size_t total = n * d.per_sample;
			float *in = rand_floats(total, -1, 1), *out = filled_floats(total, NAN), *mask = filled_floats(total, NAN);
			be()->dropout_forward(&d, n, samples, in, out, mask);
			const float scale = 1.0f / (1.0f - d.rate);
			for (int i = 0; i < n; i++)
				for (size_t e = 0; e < d.per_sample; e++) {
					size_t j = i * d.per_sample + e;
					int keep = philox_dropout_keep(d.seed, d.layer, d.epoch, samples[i], (uint32_t)e, d.rate);
					if (mask[j] != (keep ? scale : 0.0f) || out[j] != in[j] * mask[j])
						fail_msg("dropout on %s, sample %d element %zu: mask %g out %g, want keep=%d",
							 kern_isa_name((kern_isa)isa), i, e, mask[j], out[j], keep);
				}
			free(in), free(out), free(mask);
		}
	kern_force(saved);
}

/* A sample's mask depends on its dataset index, not its position in the batch (any world size). */
static void test_dropout_mask_follows_the_sample_not_the_batch_position(void **state)
{
	(void)state;
	backend_cpu_set_threads(2);
	dropout_desc d = drop_make(0.5f, 6, 2, 128);
	const uint32_t batch_a[] = {5, 99, 42}, batch_b[] = {42, 7};
	float *in = filled_floats(3 * 128, 1.0f), *out = filled_floats(3 * 128, 0);
	float *ma = filled_floats(3 * 128, 0), *mb = filled_floats(2 * 128, 0);
	be()->dropout_forward(&d, 3, batch_a, in, out, ma);
	be()->dropout_forward(&d, 2, batch_b, in, out, mb);
	assert_memory_equal(ma + 2 * 128, mb, sizeof(float) * 128);
	/* And again: reproducible bits. */
	float *ma2 = filled_floats(3 * 128, 0);
	be()->dropout_forward(&d, 3, batch_a, in, out, ma2);
	assert_memory_equal(ma, ma2, sizeof(float) * 3 * 128);
	free(in), free(out), free(ma), free(mb), free(ma2);
}

static void test_dropout_masks_differ_across_layers_epochs_and_samples(void **state)
{
	(void)state;
	backend_cpu_set_threads(2);
	const size_t ps = 4096;
	const uint32_t s1[] = {10}, s2[] = {11};
	float *in = filled_floats(ps, 1.0f), *out = filled_floats(ps, 0);
	float *base = filled_floats(ps, 0), *other = filled_floats(ps, 0);
	dropout_desc d = drop_make(0.5f, 3, 1, ps);
	be()->dropout_forward(&d, 1, s1, in, out, base);
	struct {
		dropout_desc d;
		const uint32_t *s;
		const char *what;
	} variants[] = {
		{drop_make(0.5f, 4, 1, ps), s1, "another layer"},
		{drop_make(0.5f, 3, 2, ps), s1, "another epoch"},
		{drop_make(0.5f, 3, 1, ps), s2, "another sample"},
	};
	for (size_t v = 0; v < 3; v++) {
		be()->dropout_forward(&variants[v].d, 1, variants[v].s, in, out, other);
		size_t differ = 0;
		for (size_t e = 0; e < ps; e++)
			differ += base[e] != other[e];
		/* Independent masks at rate 0.5 differ in about half the elements. */
		if (differ < ps / 2 - ps / 16 || differ > ps / 2 + ps / 16)
			fail_msg("mask for %s differs in %zu of %zu elements", variants[v].what, differ, ps);
	}
	free(in), free(out), free(base), free(other);
}

static void test_dropout_keeps_one_minus_rate_and_rate_zero_is_identity(void **state)
{
	(void)state;
	backend_cpu_set_threads(2);
	const int n = 64;
	const size_t ps = 1000;
	uint32_t samples[64];
	for (int i = 0; i < n; i++)
		samples[i] = 1000 + 3 * (uint32_t)i;
	float *in = rand_floats(n * ps, -1, 1), *out = filled_floats(n * ps, 0), *mask = filled_floats(n * ps, 0);
	const float rates[] = {0.1f, 0.25f, 0.5f, 0.75f};
	for (int k = 0; k < 4; k++) {
		dropout_desc d = drop_make(rates[k], 1, 0, ps);
		be()->dropout_forward(&d, n, samples, in, out, mask);
		size_t kept = 0;
		for (size_t j = 0; j < n * ps; j++)
			kept += mask[j] != 0.0f;
		double frac = (double)kept / (double)(n * ps);
		/* 64000 Bernoulli draws: standard deviation below 0.002. */
		if (fabs(frac - (1.0 - rates[k])) > 0.01)
			fail_msg("rate %.2f kept %.4f of elements", rates[k], frac);
	}
	dropout_desc d0 = drop_make(0.0f, 1, 0, ps);
	be()->dropout_forward(&d0, n, samples, in, out, mask);
	assert_memory_equal(out, in, sizeof(float) * n * ps);
	for (size_t j = 0; j < n * ps; j++)
		assert_true(mask[j] == 1.0f);
	free(in), free(out), free(mask);
}

static void test_dropout_backward_applies_the_mask(void **state)
{
	(void)state;
	backend_cpu_set_threads(2);
	const size_t ps = 50;
	const uint32_t samples[] = {1, 2};
	dropout_desc d = drop_make(0.3f, 2, 5, ps);
	rng_seed(1000);
	float *in = rand_floats(2 * ps, -1, 1), *out = filled_floats(2 * ps, 0), *mask = filled_floats(2 * ps, 0);
	float *dy = rand_floats(2 * ps, -1, 1), *dx = filled_floats(2 * ps, NAN);
	be()->dropout_forward(&d, 2, samples, in, out, mask);
	be()->dropout_backward(2 * ps, mask, dy, dx);
	/* The layer is linear: dL/din_j = dy_j * mask_j is the exact gradient of sum(out * dy). */
	for (size_t j = 0; j < 2 * ps; j++) {
		assert_true(dx[j] == dy[j] * mask[j]);
		assert_true(out[j] == in[j] * mask[j]);
	}
	be()->dropout_backward(2 * ps, mask, dy, dy); /* in place */
	assert_memory_equal(dy, dx, sizeof(float) * 2 * ps);
	free(in), free(out), free(mask), free(dy), free(dx);
}

/* ---------------------------------------------------------------- softmax-xent */

static void test_softmax_xent_hand_computed_loss_and_gradient(void **state)
{
	(void)state;
	/* Row 0: uniform logits, loss ln 4. Row 1: a huge margin, loss 0 without overflow.
	 * Row 2: the label 1000 below the maximum, loss 1000. Row 3: logits {0, ~ln 3, -1e4, -1e4},
	 * label 0: loss ln(1 + e^z1) ~ ln 4, the other two classes contribute exp(-1e4) = 0. */
	const float logits[16] = {
		2, 2, 2, 2,
		1000, 0, 0, 0,
		0, 1000, 0, 0,
		0, 1.0986123f, -1e4f, -1e4f,
	};
	const uint8_t labels[4] = {1, 0, 0, 0};
	float g[16];
	double loss = -1;
	int correct = -1;
	be()->softmax_xent(4, 4, logits, labels, g, &loss, &correct);
	double l3 = log(1.0 + exp((double)logits[13]));
	expect_close(loss, log(4.0) + 0.0 + 1000.0 + l3, 1e-9, 1e-9, "loss", 0);
	assert_int_equal(correct, 1); /* row 0 ties pick class 0 (label 1), row 1 right, rows 2, 3 wrong */
	const float want0[4] = {0.25f, -0.75f, 0.25f, 0.25f};
	for (int j = 0; j < 4; j++)
		expect_close(g[j], want0[j], 1e-7, 0, "dlogits row 0", (size_t)j);
	for (int j = 0; j < 4; j++)
		expect_close(g[4 + j], 0.0, 1e-7, 0, "dlogits row 1", (size_t)j);
	expect_close(g[8], -1.0, 1e-7, 0, "dlogits row 2", 0);
	expect_close(g[9], 1.0, 1e-7, 0, "dlogits row 2", 1);
	double p1 = exp((double)logits[13]) / (1.0 + exp((double)logits[13]));
	expect_close(g[12], (1.0 - p1) - 1.0, 1e-6, 0, "dlogits row 3", 0);
	expect_close(g[13], p1, 1e-6, 0, "dlogits row 3", 1);
	for (int j = 0; j < 16; j++)
		assert_true(isfinite(g[j]));

	/* NULL dlogits: the same loss, nothing written. */
	double loss2 = -1;
	int correct2 = -1;
	be()->softmax_xent(4, 4, logits, labels, NULL, &loss2, &correct2);
	assert_true(loss2 == loss);
	assert_int_equal(correct2, correct);
}

struct xent_ctx {
	int n, classes;
	float *z;
	uint8_t *y;
};

static double xent_loss(void *p)
{
	struct xent_ctx *c = p;
	double loss;
	int correct;
	be()->softmax_xent(c->n, c->classes, c->z, c->y, NULL, &loss, &correct);
	return loss;
}

static void test_softmax_xent_gradient_matches_finite_differences(void **state)
{
	(void)state;
	struct xent_ctx c = {.n = 6, .classes = 10};
	rng_seed(1100);
	c.z = rand_floats((size_t)c.n * c.classes, -3, 3);
	c.y = malloc((size_t)c.n);
	for (int i = 0; i < c.n; i++)
		c.y[i] = (uint8_t)((i * 7) % c.classes);
	float *g = filled_floats((size_t)c.n * c.classes, NAN);
	double loss;
	int correct;
	be()->softmax_xent(c.n, c.classes, c.z, c.y, g, &loss, &correct);
	check_fd(xent_loss, &c, c.z, g, (size_t)c.n * c.classes, 1e-4, 1e-3, "dlogits");
	/* Each row of softmax - onehot sums to zero. */
	for (int i = 0; i < c.n; i++) {
		double s = 0;
		for (int j = 0; j < c.classes; j++)
			s += g[i * c.classes + j];
		expect_close(s, 0.0, 1e-6, 0, "row sum of dlogits", (size_t)i);
	}
	free(c.z), free(c.y), free(g);
}

/* ---------------------------------------------------------------- scale, zero, threads */

static void test_scale_and_zero_small_and_large(void **state)
{
	(void)state;
	backend_cpu_set_threads(2);
	const size_t sizes[] = {0, 5, 1 << 20};
	for (size_t k = 0; k < 3; k++) {
		size_t n = sizes[k];
		rng_seed(1200 + k);
		float *x = rand_floats(n, -1, 1), *y = copy_floats(x, n);
		be()->scale(n, 0.5f, x);
		for (size_t i = 0; i < n; i++)
			assert_true(x[i] == y[i] * 0.5f);
		be()->zero(n, x);
		for (size_t i = 0; i < n; i++)
			assert_true(x[i] == 0.0f);
		free(x), free(y);
	}
}

static void test_threads_default_to_available_cores(void **state)
{
	(void)state;
	backend_cpu_set_threads(0);
	int t = backend_cpu_threads();
	assert_true(t >= 1);
	backend_cpu_set_threads(-3);
	assert_int_equal(backend_cpu_threads(), t);
	backend_cpu_set_threads(5);
	assert_int_equal(backend_cpu_threads(), 5);
	assert_string_equal(be()->name, "cpu");
	/* More threads need at least as much conv workspace (one slice each). */
	conv_desc d = conv_case(0);
	size_t w5 = be()->conv2d_workspace(&d, 8);
	backend_cpu_set_threads(1);
	size_t w1 = be()->conv2d_workspace(&d, 8);
	assert_true(w1 > 0 && w5 >= w1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_conv_forward_matches_direct_convolution),
		cmocka_unit_test(test_conv_backward_matches_finite_differences),
		cmocka_unit_test(test_conv_backward_without_din_gives_same_weight_gradients),
		cmocka_unit_test(test_conv_is_bitwise_deterministic),
		cmocka_unit_test(test_conv_thread_counts_agree),
		cmocka_unit_test(test_maxpool_forward_takes_first_maximum_and_records_argmax),
		cmocka_unit_test(test_maxpool_backward_matches_finite_differences),
		cmocka_unit_test(test_relu_matches_finite_differences_and_runs_in_place),
		cmocka_unit_test(test_relu_large_matches_scalar),
		cmocka_unit_test(test_dense_forward_matches_naive_product),
		cmocka_unit_test(test_dense_backward_matches_finite_differences),
		cmocka_unit_test(test_dense_large_backward_is_correct_and_deterministic),
		cmocka_unit_test(test_dropout_mask_is_philox_dropout_keep_per_element),
		cmocka_unit_test(test_dropout_mask_follows_the_sample_not_the_batch_position),
		cmocka_unit_test(test_dropout_masks_differ_across_layers_epochs_and_samples),
		cmocka_unit_test(test_dropout_keeps_one_minus_rate_and_rate_zero_is_identity),
		cmocka_unit_test(test_dropout_backward_applies_the_mask),
		cmocka_unit_test(test_softmax_xent_hand_computed_loss_and_gradient),
		cmocka_unit_test(test_softmax_xent_gradient_matches_finite_differences),
		cmocka_unit_test(test_scale_and_zero_small_and_large),
		cmocka_unit_test(test_threads_default_to_available_cores),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * test_gpu_ops.c - the GPU backend (cuda/) against the CPU backend (the
 * reference, src/ops_cpu.c) on random inputs: every op forward and backward,
 * and the optimizer kernels against optim.c.
 *
 * Tolerances: ops whose sums cuBLAS or a tree reduction orders differently
 * (conv2d, dense, bias gradients, softmax_xent) must agree within a relative
 * error ||gpu - cpu|| / ||cpu|| < 1e-4; ops with no sums or the same sums in
 * the same order (relu, dropout, maxpool, gather, scale, zero) and the
 * optimizer steps (same float expressions, --fmad=false) must agree bit for
 * bit.
 *
 * Exits 77 (CTest: skipped) when no CUDA GPU is usable. `test_gpu_ops --count`
 * prints the number of usable GPUs and exits 0 (for the scripts of tests/gpu).
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

#include "../../cuda/cuda_backend.h"
#include "ops.h"
#include "optim.h"

#define SKIP_CODE 77
#define REL_TOL 1e-4

static const backend *G; /* the GPU backend */
static const backend *C; /* the CPU backend */

/* ---------------------------------------------------------------- helpers */

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

static float *host_floats(size_t n)
{
	float *p = malloc(sizeof(float) * (n ? n : 1));
	assert_non_null(p);
	return p;
}

static float *rand_floats(size_t n, float lo, float hi)
{
	float *p = host_floats(n);
	for (size_t i = 0; i < n; i++)
		p[i] = lo + (hi - lo) * (float)rng_uniform();
	return p;
}

/* Values on a coarse grid, so that max-pool windows hold ties. */
static float *grid_floats(size_t n, int levels)
{
	float *p = host_floats(n);
	for (size_t i = 0; i < n; i++)
		p[i] = (float)(int)(rng_uniform() * levels) - (float)levels / 2;
	return p;
}

/* CPU backend memory holding a copy of h (the CPU backend wants its own aligned memory). */
static float *cpu_copy(const float *h, size_t n)
{
	float *p = C->alloc(sizeof(float) * (n ? n : 1));
	assert_non_null(p);
	memcpy(p, h, sizeof(float) * n);
	return p;
}

/* Device memory holding a copy of h. */
static void *gpu_copy(const void *h, size_t bytes)
{
	void *d = G->alloc(bytes ? bytes : 4);
	assert_non_null(d);
	if (bytes)
		G->upload(d, h, bytes);
	return d;
}

static float *gpu_floats(const float *h, size_t n)
{
	return gpu_copy(h, n * sizeof(float));
}

/* A fresh host copy of n floats of device memory. */
static float *fetch(const float *d, size_t n)
{
	float *h = host_floats(n);
	G->download(h, d, n * sizeof(float));
	return h;
}

/* Poison device memory, so that an element the op forgets to write shows up. */
static void poison(float *d, size_t n)
{
	float *h = host_floats(n);
	for (size_t i = 0; i < n; i++)
		h[i] = NAN;
	G->upload(d, h, n * sizeof(float));
	free(h);
}

/* ||got - ref|| / ||ref|| in double (||ref|| = 0: the absolute norm); NaN anywhere fails. */
static void expect_close(const char *what, const float *got, const float *ref, size_t n, double tol)
{
	double num = 0, den = 0;
	size_t worst = 0;
	double wd = -1;
	for (size_t i = 0; i < n; i++) {
		double g = got[i], r = ref[i], e = g - r;
		if (isnan(g) != isnan(r) || (isnan(g) && isnan(r))) {
			fail_msg("%s: element %zu is %g on the GPU and %g on the CPU", what, i, g, r);
		}
		num += e * e;
		den += r * r;
		if (fabs(e) > wd) {
			wd = fabs(e);
			worst = i;
		}
	}
	double rel = den > 0 ? sqrt(num / den) : sqrt(num);
	if (!(rel <= tol))
		fail_msg("%s: relative error %.3g > %.3g (worst element %zu: GPU %.9g, CPU %.9g)", what, rel, tol,
			 worst, (double)got[worst], (double)ref[worst]);
}

static void expect_bitwise(const char *what, const void *got, const void *ref, size_t bytes)
{
	if (memcmp(got, ref, bytes) != 0) {
		const unsigned char *a = got, *b = ref;
		size_t i = 0;
		while (i < bytes && a[i] == b[i])
			i++;
		fail_msg("%s: differs from the CPU at byte %zu of %zu", what, i, bytes);
	}
}

/* ---------------------------------------------------------------- conv2d */

typedef struct conv_case {
	const char *name;
	conv_desc d;
	int n;
} conv_case;

static conv_desc conv_make(int ic, int ih, int iw, int oc, int k, int s, int pad)
{
	conv_desc d = {0};
	d.in_c = ic;
	d.in_h = ih;
	d.in_w = iw;
	d.out_c = oc;
	d.k_h = d.k_w = k;
	d.stride_h = d.stride_w = s;
	d.pad_top = d.pad_left = pad;
	d.out_h = (ih + 2 * pad - k) / s + 1;
	d.out_w = (iw + 2 * pad - k) / s + 1;
	return d;
}

static void conv_case_run(const conv_case *cc, bool with_din)
{
	const conv_desc *d = &cc->d;
	const int n = cc->n;
	const size_t in_n = (size_t)n * d->in_c * d->in_h * d->in_w;
	const size_t out_n = (size_t)n * d->out_c * d->out_h * d->out_w;
	const size_t w_n = (size_t)d->out_c * d->in_c * d->k_h * d->k_w, b_n = (size_t)d->out_c;
	char what[160];

	float *x = rand_floats(in_n, -1, 1), *w = rand_floats(w_n, -0.5f, 0.5f), *b = rand_floats(b_n, -1, 1);
	float *dy = rand_floats(out_n, -1, 1);
	/* gradients are ADDED: start both sides from the same nonzero values */
	float *dw0 = rand_floats(w_n, -0.1f, 0.1f), *db0 = rand_floats(b_n, -0.1f, 0.1f);

	/* CPU */
	float *cx = cpu_copy(x, in_n), *cw = cpu_copy(w, w_n), *cb = cpu_copy(b, b_n), *cdy = cpu_copy(dy, out_n);
	float *cy = cpu_copy(dy, out_n), *cdx = cpu_copy(x, in_n), *cdw = cpu_copy(dw0, w_n), *cdb = cpu_copy(db0, b_n);
	float *cws = C->alloc(C->conv2d_workspace(d, n) + 64);
	C->conv2d_forward(d, n, cx, cw, cb, cy, cws);
	C->conv2d_backward(d, n, cx, cw, cdy, with_din ? cdx : NULL, cdw, cdb, cws);

	/* GPU */
	float *gx = gpu_floats(x, in_n), *gw = gpu_floats(w, w_n), *gb = gpu_floats(b, b_n), *gdy = gpu_floats(dy, out_n);
	float *gy = gpu_floats(dy, out_n), *gdx = gpu_floats(x, in_n), *gdw = gpu_floats(dw0, w_n),
	      *gdb = gpu_floats(db0, b_n);
	float *gws = G->alloc(G->conv2d_workspace(d, n) + 64);
	assert_non_null(gws);
	poison(gy, out_n);
	poison(gdx, in_n);
	G->conv2d_forward(d, n, gx, gw, gb, gy, gws);
	G->conv2d_backward(d, n, gx, gw, gdy, with_din ? gdx : NULL, gdw, gdb, gws);

	float *hy = fetch(gy, out_n), *hdw = fetch(gdw, w_n), *hdb = fetch(gdb, b_n);
	snprintf(what, sizeof what, "conv2d %s forward", cc->name);
	expect_close(what, hy, cy, out_n, REL_TOL);
	snprintf(what, sizeof what, "conv2d %s dw", cc->name);
	expect_close(what, hdw, cdw, w_n, REL_TOL);
	snprintf(what, sizeof what, "conv2d %s db", cc->name);
	expect_close(what, hdb, cdb, b_n, REL_TOL);
	if (with_din) {
		float *hdx = fetch(gdx, in_n);
		snprintf(what, sizeof what, "conv2d %s din", cc->name);
		expect_close(what, hdx, cdx, in_n, REL_TOL);
		free(hdx);
	}
	/* without a bias: the forward pass must not read one */
	poison(gy, out_n);
	G->conv2d_forward(d, n, gx, gw, NULL, gy, gws);
	C->conv2d_forward(d, n, cx, cw, NULL, cy, cws);
	free(hy);
	hy = fetch(gy, out_n);
	snprintf(what, sizeof what, "conv2d %s forward without bias", cc->name);
	expect_close(what, hy, cy, out_n, REL_TOL);

	free(hy);
	free(hdw);
	free(hdb);
	float *cbufs[] = {cx, cw, cb, cdy, cy, cdx, cdw, cdb, cws};
	for (size_t i = 0; i < sizeof cbufs / sizeof *cbufs; i++)
		C->release(cbufs[i]);
	float *gbufs[] = {gx, gw, gb, gdy, gy, gdx, gdw, gdb, gws};
	for (size_t i = 0; i < sizeof gbufs / sizeof *gbufs; i++)
		G->release(gbufs[i]);
	free(x);
	free(w);
	free(b);
	free(dy);
	free(dw0);
	free(db0);
}

static const conv_case *conv_cases(size_t *count)
{
	static conv_case cases[8];
	cases[0] = (conv_case){"mnist conv1 1x28x28->32 k3", conv_make(1, 28, 28, 32, 3, 1, 0), 7};
	cases[1] = (conv_case){"mnist conv2 32x26x26->64 k3", conv_make(32, 26, 26, 64, 3, 1, 0), 5};
	cases[2] = (conv_case){"tiny conv 1x28x28->8 k3 s2", conv_make(1, 28, 28, 8, 3, 2, 0), 33};
	cases[3] = (conv_case){"same padding 3x9x7->5 k3 p1", conv_make(3, 9, 7, 5, 3, 1, 1), 4};
	cases[4] = (conv_case){"pointwise 4x8x8->6 k1", conv_make(4, 8, 8, 6, 1, 1, 0), 3};
	cases[5] = (conv_case){"k5 s3 p2 2x10x11->3", conv_make(2, 10, 11, 3, 5, 3, 2), 6};
	cases[6] = (conv_case){"one sample 2x5x5->1 k2 s2", conv_make(2, 5, 5, 1, 2, 2, 0), 1};
	/* asymmetric 'same' padding: pad only before (Keras pads the extra row after) */
	conv_desc asym = conv_make(3, 8, 8, 4, 4, 1, 1);
	asym.out_h = asym.out_w = 8; /* pad_top/left 1, the extra row/column after is implicit */
	cases[7] = (conv_case){"same padding k4 (implicit pad after)", asym, 3};
	*count = sizeof cases / sizeof *cases;
	return cases;
}

static void test_conv2d_matches_cpu(void **state)
{
	(void)state;
	rng_seed(11);
	size_t nc;
	const conv_case *cases = conv_cases(&nc);
	for (size_t i = 0; i < nc; i++) {
		conv_case_run(&cases[i], true);
		conv_case_run(&cases[i], false);
	}
}

static void test_conv2d_chunked_workspace_matches_cpu(void **state)
{
	(void)state;
	rng_seed(12);
	/* a cap of a few samples' worth: every batch below runs in several im2col chunks */
	cuda_set_conv_workspace_cap(3 * (32 * 9 + 64) * 24 * 24 * sizeof(float));
	size_t nc;
	const conv_case *cases = conv_cases(&nc);
	for (size_t i = 0; i < nc; i++)
		conv_case_run(&cases[i], true);
	conv_case big = {"mnist conv2, 40 samples in chunks", conv_make(32, 26, 26, 64, 3, 1, 0), 40};
	conv_case_run(&big, true);
	cuda_set_conv_workspace_cap(0);
}

/* ---------------------------------------------------------------- maxpool */

static void pool_case_run(const char *name, pool_desc d, int n)
{
	const size_t in_n = (size_t)n * d.c * d.in_h * d.in_w, out_n = (size_t)n * d.c * d.out_h * d.out_w;
	char what[160];
	float *x = grid_floats(in_n, 7), *dy = rand_floats(out_n, -1, 1);
	float *cx = cpu_copy(x, in_n), *cy = cpu_copy(dy, out_n), *cdy = cpu_copy(dy, out_n), *cdx = cpu_copy(x, in_n);
	int32_t *ca = C->alloc(out_n * sizeof(int32_t) + 4);
	C->maxpool_forward(&d, n, cx, cy, ca);
	C->maxpool_backward(&d, n, cdy, ca, cdx);

	float *gx = gpu_floats(x, in_n), *gy = gpu_floats(dy, out_n), *gdy = gpu_floats(dy, out_n),
	      *gdx = gpu_floats(x, in_n);
	int32_t *ga = G->alloc(out_n * sizeof(int32_t) + 4);
	poison(gy, out_n);
	poison(gdx, in_n);
	G->maxpool_forward(&d, n, gx, gy, ga);
	G->maxpool_backward(&d, n, gdy, ga, gdx);
	float *hy = fetch(gy, out_n), *hdx = fetch(gdx, in_n);
	int32_t *ha = malloc(out_n * sizeof(int32_t) + 4);
	G->download(ha, ga, out_n * sizeof(int32_t));
	snprintf(what, sizeof what, "maxpool %s forward", name);
	expect_bitwise(what, hy, cy, out_n * sizeof(float));
	snprintf(what, sizeof what, "maxpool %s argmax", name);
	expect_bitwise(what, ha, ca, out_n * sizeof(int32_t));
	snprintf(what, sizeof what, "maxpool %s backward", name);
	expect_bitwise(what, hdx, cdx, in_n * sizeof(float));
	free(hy);
	free(hdx);
	free(ha);
	C->release(cx);
	C->release(cy);
	C->release(cdy);
	C->release(cdx);
	C->release(ca);
	G->release(gx);
	G->release(gy);
	G->release(gdy);
	G->release(gdx);
	G->release(ga);
	free(x);
	free(dy);
}

static void test_maxpool_matches_cpu_bitwise(void **state)
{
	(void)state;
	rng_seed(21);
	pool_case_run("2x2 s2 on 64x24x24", (pool_desc){64, 24, 24, 12, 12, 2, 2, 2, 2}, 5);
	pool_case_run("2x2 s2 on odd 3x7x9", (pool_desc){3, 7, 9, 3, 4, 2, 2, 2, 2}, 4);
	/* overlapping windows: one input can be the maximum of several outputs */
	pool_case_run("3x3 s2 on 4x9x9", (pool_desc){4, 9, 9, 4, 4, 3, 3, 2, 2}, 3);
	pool_case_run("2x2 s1 on 2x6x5", (pool_desc){2, 6, 5, 5, 4, 2, 2, 1, 1}, 3);
	pool_case_run("3x2 s(1,2) on 2x7x8", (pool_desc){2, 7, 8, 5, 4, 3, 2, 1, 2}, 2);
}

/* ---------------------------------------------------------------- element-wise */

static void test_relu_matches_cpu_bitwise(void **state)
{
	(void)state;
	rng_seed(31);
	const size_t n = 100003;
	float *x = grid_floats(n, 9), *dy = rand_floats(n, -1, 1);
	float *cx = cpu_copy(x, n), *cy = cpu_copy(x, n), *cdy = cpu_copy(dy, n), *cdx = cpu_copy(x, n);
	C->relu_forward(n, cx, cy);
	C->relu_backward(n, cy, cdy, cdx);
	float *gx = gpu_floats(x, n), *gy = gpu_floats(x, n), *gdy = gpu_floats(dy, n), *gdx = gpu_floats(x, n);
	poison(gy, n);
	poison(gdx, n);
	G->relu_forward(n, gx, gy);
	G->relu_backward(n, gy, gdy, gdx);
	float *hy = fetch(gy, n), *hdx = fetch(gdx, n);
	expect_bitwise("relu forward", hy, cy, n * sizeof(float));
	expect_bitwise("relu backward", hdx, cdx, n * sizeof(float));
	/* in place (din == dout), as the model may call it */
	G->relu_backward(n, gy, gdy, gdy);
	free(hdx);
	hdx = fetch(gdy, n);
	expect_bitwise("relu backward in place", hdx, cdx, n * sizeof(float));
	free(hy);
	free(hdx);
	C->release(cx);
	C->release(cy);
	C->release(cdy);
	C->release(cdx);
	G->release(gx);
	G->release(gy);
	G->release(gdy);
	G->release(gdx);
	free(x);
	free(dy);
}

/* A layer kind found by name (src/layers/README.md): leaky_relu, the same bits as the CPU. */
/* Kinds with CPU kernels only: the GPU backend has none, so networks with them are refused at start. */
static void test_cpu_only_kinds_have_no_gpu_kernels(void **state)
{
	(void)state;
	const char *kinds[] = {"batchnorm", "batchnorm2d", "avgpool", "global_avgpool"};
	for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
		if (!C->layer_kernels(C, kinds[i]))
			fail_msg("the CPU backend has no %s kernels", kinds[i]);
		if (G->layer_kernels(G, kinds[i]))
			fail_msg("the GPU backend claims %s kernels: check them here against the CPU's", kinds[i]);
	}
}

static void test_leaky_relu_matches_cpu_bitwise(void **state)
{
	(void)state;
	rng_seed(37);
	const int n = 7;
	const size_t per = 14287, total = n * per;
	const layer_kernels *ck = C->layer_kernels(C, "leaky_relu"), *gk = G->layer_kernels(G, "leaky_relu");
	if (!ck || !gk)
		fail_msg("leaky_relu kernels: CPU %p, GPU %p", (const void *)ck, (const void *)gk);
	if (G->layer_kernels(G, "no_such_kind"))
		fail_msg("the GPU backend claims kernels for an unknown layer kind");
	float *x = grid_floats(total, 9), *dy = rand_floats(total, -1, 1);
	float *cx = cpu_copy(x, total), *cy = cpu_copy(x, total), *cdy = cpu_copy(dy, total), *cdx = cpu_copy(x, total);
	layer_call c = {.n = n, .in_numel = per, .out_numel = per, .attr = {0.125f}, .in = cx, .out = cy, .y = cy,
			.dout = cdy, .din = cdx};
	ck->forward(C, &c);
	ck->backward(C, &c);
	float *gx = gpu_floats(x, total), *gy = gpu_floats(x, total), *gdy = gpu_floats(dy, total),
	      *gdx = gpu_floats(x, total);
	poison(gy, total);
	poison(gdx, total);
	layer_call g = {.n = n, .in_numel = per, .out_numel = per, .attr = {0.125f}, .in = gx, .out = gy, .y = gy,
			.dout = gdy, .din = gdx};
	gk->forward(G, &g);
	gk->backward(G, &g);
	float *hy = fetch(gy, total), *hdx = fetch(gdx, total);
	expect_bitwise("leaky_relu forward", hy, cy, total * sizeof(float));
	expect_bitwise("leaky_relu backward", hdx, cdx, total * sizeof(float));
	/* in place (din == dout) */
	g.din = gdy;
	gk->backward(G, &g);
	free(hdx);
	hdx = fetch(gdy, total);
	expect_bitwise("leaky_relu backward in place", hdx, cdx, total * sizeof(float));
	free(hy);
	free(hdx);
	C->release(cx);
	C->release(cy);
	C->release(cdy);
	C->release(cdx);
	G->release(gx);
	G->release(gy);
	G->release(gdy);
	G->release(gdx);
	free(x);
	free(dy);
}

static void dropout_case_run(float rate, size_t per_sample, int n)
{
	char what[160];
	const size_t total = (size_t)n * per_sample;
	dropout_desc d = {.rate = rate, .seed = 1234, .layer = 3, .epoch = 2, .per_sample = per_sample};
	uint32_t *samples = malloc((size_t)n * sizeof *samples);
	for (int i = 0; i < n; i++)
		samples[i] = (uint32_t)(rng_uniform() * 60000);
	float *x = rand_floats(total, -1, 1), *dy = rand_floats(total, -1, 1);
	float *cx = cpu_copy(x, total), *cy = cpu_copy(x, total), *cm = cpu_copy(x, total), *cdy = cpu_copy(dy, total),
	      *cdx = cpu_copy(x, total);
	C->dropout_forward(&d, n, samples, cx, cy, cm);
	C->dropout_backward(total, cm, cdy, cdx);
	float *gx = gpu_floats(x, total), *gy = gpu_floats(x, total), *gm = gpu_floats(x, total),
	      *gdy = gpu_floats(dy, total), *gdx = gpu_floats(x, total);
	poison(gy, total);
	poison(gm, total);
	poison(gdx, total);
	G->dropout_forward(&d, n, samples, gx, gy, gm);
	G->dropout_backward(total, gm, gdy, gdx);
	float *hy = fetch(gy, total), *hm = fetch(gm, total), *hdx = fetch(gdx, total);
	snprintf(what, sizeof what, "dropout rate %g, %zu per sample: mask", (double)rate, per_sample);
	expect_bitwise(what, hm, cm, total * sizeof(float));
	snprintf(what, sizeof what, "dropout rate %g, %zu per sample: forward", (double)rate, per_sample);
	expect_bitwise(what, hy, cy, total * sizeof(float));
	snprintf(what, sizeof what, "dropout rate %g, %zu per sample: backward", (double)rate, per_sample);
	expect_bitwise(what, hdx, cdx, total * sizeof(float));
	free(hy);
	free(hm);
	free(hdx);
	C->release(cx);
	C->release(cy);
	C->release(cm);
	C->release(cdy);
	C->release(cdx);
	G->release(gx);
	G->release(gy);
	G->release(gm);
	G->release(gdy);
	G->release(gdx);
	free(x);
	free(dy);
	free(samples);
}

static void test_dropout_uses_the_same_philox_masks(void **state)
{
	(void)state;
	rng_seed(41);
	dropout_case_run(0.25f, 9216, 5);
	dropout_case_run(0.5f, 128, 33);
	dropout_case_run(0.1f, 37, 7); /* per-sample count not a multiple of 4 */
	dropout_case_run(0.0f, 50, 3);
	dropout_case_run(1.0f, 13, 2);
}

static void test_scale_and_zero_match_cpu(void **state)
{
	(void)state;
	rng_seed(51);
	const size_t n = 70001;
	float *x = rand_floats(n, -3, 3);
	float *cx = cpu_copy(x, n), *gx = gpu_floats(x, n);
	C->scale(n, 1.0f / 128.0f, cx);
	G->scale(n, 1.0f / 128.0f, gx);
	C->scale(n, 0.3f, cx);
	G->scale(n, 0.3f, gx);
	float *h = fetch(gx, n);
	expect_bitwise("scale", h, cx, n * sizeof(float));
	G->zero(n - 5, gx + 2);
	free(h);
	h = fetch(gx, n);
	for (size_t i = 0; i < n; i++) {
		float want = i < 2 || i >= n - 3 ? cx[i] : 0.0f;
		if (memcmp(&h[i], &want, sizeof want) != 0)
			fail_msg("zero: element %zu is %g, want %g", i, (double)h[i], (double)want);
	}
	free(h);
	free(x);
	C->release(cx);
	G->release(gx);
}

static void test_gather_images_matches_cpu_bitwise(void **state)
{
	(void)state;
	rng_seed(61);
	const size_t count = 300, pixels = 28 * 28;
	const int n = 77;
	uint8_t *images = malloc(count * pixels);
	for (size_t i = 0; i < count * pixels; i++)
		images[i] = (uint8_t)(rng_uniform() * 256);
	uint32_t idx[77];
	for (int i = 0; i < n; i++)
		idx[i] = (uint32_t)(rng_uniform() * count);
	float *cout = C->alloc((size_t)n * pixels * sizeof(float));
	C->gather_images(images, idx, n, pixels, 1.0f / 255.0f, cout);
	uint8_t *gimg = gpu_copy(images, count * pixels);
	float *gout = G->alloc((size_t)n * pixels * sizeof(float));
	poison(gout, (size_t)n * pixels);
	G->gather_images(gimg, idx, n, pixels, 1.0f / 255.0f, gout);
	float *h = fetch(gout, (size_t)n * pixels);
	expect_bitwise("gather_images", h, cout, (size_t)n * pixels * sizeof(float));
	/* the same host index array again, changed in place: the staged copy must follow */
	idx[5] = (idx[5] + 1) % count;
	C->gather_images(images, idx, n, pixels, 1.0f / 255.0f, cout);
	G->gather_images(gimg, idx, n, pixels, 1.0f / 255.0f, gout);
	free(h);
	h = fetch(gout, (size_t)n * pixels);
	expect_bitwise("gather_images after the indices changed", h, cout, (size_t)n * pixels * sizeof(float));
	free(h);
	free(images);
	C->release(cout);
	G->release(gimg);
	G->release(gout);
}

/* ---------------------------------------------------------------- dense */

static void dense_case_run(int n, int in_f, int out_f, bool bias, bool with_din)
{
	char what[160];
	const size_t in_n = (size_t)n * in_f, out_n = (size_t)n * out_f, w_n = (size_t)in_f * out_f;
	float *x = rand_floats(in_n, -1, 1), *w = rand_floats(w_n, -0.3f, 0.3f), *b = rand_floats((size_t)out_f, -1, 1);
	float *dy = rand_floats(out_n, -1, 1), *dw0 = rand_floats(w_n, -0.1f, 0.1f), *db0 = rand_floats((size_t)out_f, -0.1f, 0.1f);
	float *cx = cpu_copy(x, in_n), *cw = cpu_copy(w, w_n), *cb = cpu_copy(b, (size_t)out_f), *cy = cpu_copy(dy, out_n),
	      *cdy = cpu_copy(dy, out_n), *cdx = cpu_copy(x, in_n), *cdw = cpu_copy(dw0, w_n),
	      *cdb = cpu_copy(db0, (size_t)out_f);
	C->dense_forward(n, in_f, out_f, cx, cw, bias ? cb : NULL, cy);
	C->dense_backward(n, in_f, out_f, cx, cw, cdy, with_din ? cdx : NULL, cdw, bias ? cdb : NULL);
	float *gx = gpu_floats(x, in_n), *gw = gpu_floats(w, w_n), *gb = gpu_floats(b, (size_t)out_f),
	      *gy = gpu_floats(dy, out_n), *gdy = gpu_floats(dy, out_n), *gdx = gpu_floats(x, in_n),
	      *gdw = gpu_floats(dw0, w_n), *gdb = gpu_floats(db0, (size_t)out_f);
	poison(gy, out_n);
	poison(gdx, in_n);
	G->dense_forward(n, in_f, out_f, gx, gw, bias ? gb : NULL, gy);
	G->dense_backward(n, in_f, out_f, gx, gw, gdy, with_din ? gdx : NULL, gdw, bias ? gdb : NULL);
	float *hy = fetch(gy, out_n), *hdw = fetch(gdw, w_n), *hdb = fetch(gdb, (size_t)out_f);
	snprintf(what, sizeof what, "dense %dx%d->%d%s forward", n, in_f, out_f, bias ? "" : " (no bias)");
	expect_close(what, hy, cy, out_n, REL_TOL);
	snprintf(what, sizeof what, "dense %dx%d->%d dw", n, in_f, out_f);
	expect_close(what, hdw, cdw, w_n, REL_TOL);
	snprintf(what, sizeof what, "dense %dx%d->%d db", n, in_f, out_f);
	expect_close(what, hdb, cdb, (size_t)out_f, REL_TOL);
	if (with_din) {
		float *hdx = fetch(gdx, in_n);
		snprintf(what, sizeof what, "dense %dx%d->%d din", n, in_f, out_f);
		expect_close(what, hdx, cdx, in_n, REL_TOL);
		free(hdx);
	}
	free(hy);
	free(hdw);
	free(hdb);
	float *cbufs[] = {cx, cw, cb, cy, cdy, cdx, cdw, cdb};
	for (size_t i = 0; i < sizeof cbufs / sizeof *cbufs; i++)
		C->release(cbufs[i]);
	float *gbufs[] = {gx, gw, gb, gy, gdy, gdx, gdw, gdb};
	for (size_t i = 0; i < sizeof gbufs / sizeof *gbufs; i++)
		G->release(gbufs[i]);
	free(x);
	free(w);
	free(b);
	free(dy);
	free(dw0);
	free(db0);
}

static void test_dense_matches_cpu(void **state)
{
	(void)state;
	rng_seed(71);
	dense_case_run(128, 9216, 128, true, true); /* mnist_cnn fc1 */
	dense_case_run(128, 128, 10, true, true);   /* mnist_cnn fc2 */
	dense_case_run(1000, 392, 10, true, true);
	dense_case_run(1, 17, 3, true, true);
	dense_case_run(33, 64, 65, false, true);
	dense_case_run(7, 5, 9, true, false);
}

/* ---------------------------------------------------------------- loss */

static void xent_case_run(int n, int classes, bool ties)
{
	char what[160];
	const size_t total = (size_t)n * classes;
	float *z = ties ? grid_floats(total, 3) : rand_floats(total, -8, 8);
	uint8_t *labels = malloc((size_t)n);
	for (int i = 0; i < n; i++)
		labels[i] = (uint8_t)(rng_uniform() * classes);
	float *cz = cpu_copy(z, total), *cg = cpu_copy(z, total);
	double closs = 0;
	int cok = 0;
	C->softmax_xent(n, classes, cz, labels, cg, &closs, &cok);
	float *gz = gpu_floats(z, total), *gg = gpu_floats(z, total);
	poison(gg, total);
	double gloss = -1;
	int gok = -1;
	G->softmax_xent(n, classes, gz, labels, gg, &gloss, &gok);
	float *hg = fetch(gg, total);
	snprintf(what, sizeof what, "softmax_xent %dx%d%s dlogits", n, classes, ties ? " (ties)" : "");
	expect_close(what, hg, cg, total, 1e-6);
	if (!(fabs(gloss - closs) <= 1e-9 * fabs(closs) + 1e-12))
		fail_msg("softmax_xent %dx%d: loss sum %.17g on the GPU, %.17g on the CPU", n, classes, gloss, closs);
	if (gok != cok)
		fail_msg("softmax_xent %dx%d: %d correct on the GPU, %d on the CPU", n, classes, gok, cok);
	/* evaluation: no gradient, same sums */
	G->softmax_xent(n, classes, gz, labels, NULL, &gloss, &gok);
	if (!(fabs(gloss - closs) <= 1e-9 * fabs(closs) + 1e-12) || gok != cok)
		fail_msg("softmax_xent %dx%d without dlogits: loss %.17g / %d correct, CPU %.17g / %d", n, classes,
			 gloss, gok, closs, cok);
	free(hg);
	C->release(cz);
	C->release(cg);
	G->release(gz);
	G->release(gg);
	free(z);
	free(labels);
}

static void test_softmax_xent_matches_cpu(void **state)
{
	(void)state;
	rng_seed(81);
	xent_case_run(128, 10, false);
	xent_case_run(1024, 10, true); /* ties: the first maximum is the prediction */
	xent_case_run(5, 37, false);   /* more classes than a warp has lanes */
	xent_case_run(3, 100, true);
	xent_case_run(1, 2, false);
}

/* ---------------------------------------------------------------- optimizers */

static void optim_case_run(const char *name, const optim_config *c)
{
	char what[160];
	const size_t n = 50017;
	const int ns = optim_n_states(c);
	float *p = rand_floats(n, -1, 1);
	float *cp = cpu_copy(p, n), *gp = gpu_floats(p, n);
	float *cs[4] = {0}, *gs[4] = {0};
	for (int i = 0; i < ns; i++) {
		float *z = host_floats(n);
		memset(z, 0, n * sizeof(float));
		cs[i] = cpu_copy(z, n);
		gs[i] = gpu_floats(z, n);
		free(z);
	}
	for (long t = 1; t <= 6; t++) {
		/* a gradient with exact zeros and tiny values, as real ones have */
		float *g = rand_floats(n, -0.01f, 0.01f);
		for (size_t i = 0; i < n; i += 7)
			g[i] = 0.0f;
		for (size_t i = 3; i < n; i += 11)
			g[i] *= 1e-6f;
		float *cg = cpu_copy(g, n), *gg = gpu_floats(g, n);
		float lr = optim_lr_at(c, t, 6);
		C->optim_step(c, lr, t, n, cp, cg, cs);
		G->optim_step(c, lr, t, n, gp, gg, gs);
		C->release(cg);
		G->release(gg);
		free(g);
	}
	float *hp = fetch(gp, n);
	snprintf(what, sizeof what, "%s parameters after 6 steps", name);
	expect_bitwise(what, hp, cp, n * sizeof(float));
	free(hp);
	for (int i = 0; i < ns; i++) {
		float *hs = fetch(gs[i], n);
		snprintf(what, sizeof what, "%s state %s after 6 steps", name, optim_state_name(c, i));
		expect_bitwise(what, hs, cs[i], n * sizeof(float));
		free(hs);
		C->release(cs[i]);
		G->release(gs[i]);
	}
	C->release(cp);
	G->release(gp);
	free(p);
}

static void test_optimizers_match_optim_c_bitwise(void **state)
{
	(void)state;
	rng_seed(91);
	optim_config c;
	optim_config_defaults(&c, OPT_SGD);
	optim_case_run("sgd", &c);
	c.weight_decay = 1e-3f;
	optim_case_run("sgd + weight decay", &c);
	c.momentum = 0.9f;
	optim_case_run("sgd momentum + weight decay", &c);
	c.weight_decay = 0;
	optim_case_run("sgd momentum", &c);
	c.nesterov = true;
	optim_case_run("sgd nesterov", &c);
	optim_config_defaults(&c, OPT_ADAM);
	optim_case_run("adam", &c);
	c.weight_decay = 1e-2f;
	optim_case_run("adam + L2", &c);
	optim_config_defaults(&c, OPT_ADAMW);
	optim_case_run("adamw", &c);
	c.schedule = SCHED_COSINE;
	c.warmup_steps = 2;
	optim_case_run("adamw, warm-up and cosine schedule", &c);
	optim_config_defaults(&c, OPT_ADADELTA);
	optim_case_run("adadelta", &c);
	c.weight_decay = 1e-4f;
	optim_case_run("adadelta + weight decay", &c);
}

/* ---------------------------------------------------------------- backend */

static void test_backend_reports_memory_kinds_and_sgemm_rate(void **state)
{
	(void)state;
	float host[4] = {1, 2, 3, 4};
	float *dev = gpu_floats(host, 4);
	assert_true(cuda_is_device_pointer(dev));
	assert_false(cuda_is_device_pointer(host));
	assert_int_equal(cuda_backend_device() >= 0, 1);
	G->release(dev);
	/* the table says what the backend is: device memory, float sums, one host thread, a context */
	assert_false(G->caps & BACKEND_CAP_HOST_MEMORY);
	assert_false(G->caps & BACKEND_CAP_EXACT_SUM);
	assert_non_null(G->ctx);
	assert_int_equal(G->threads(G), 1);
	G->synchronize(G);
	double g = cuda_measure_sgemm_gflops(2048);
	print_message("cuBLAS sgemm 2048^3 on %s: %.0f GFLOP/s\n", cuda_device_name(), g);
	assert_true(g > 0);
}

/*
 * The table's collective (NCCL), as dist drives it: an id, a communicator of
 * one rank, a sum over it (the identity), teardown. The GPU emulation's NCCL
 * refuses to start, as NCCL does for ranks sharing a GPU: then init must say
 * so with -1, a message and no communicator, never a timeout.
 */
static void test_backend_collective_of_one_rank(void **state)
{
	(void)state;
	const backend_comm_ops *c = G->comm;
	assert_non_null(c);
	assert_null(C->comm);
	unsigned char id[BACKEND_COMM_ID_BYTES] = {0};
	char msg[512] = "";
	assert_int_equal(c->unique_id(G, id, msg, sizeof msg), 0);
	backend_comm *comm = (backend_comm *)&msg; /* must be overwritten */
	int r = c->init(G, id, 1, 0, 30.0, &comm, msg, sizeof msg);
	print_message("%s: init %d: %s\n", c->version(G), r, msg);
	assert_true(msg[0] != 0);
	if (r != 0) {
		assert_int_equal(r, -1);
		assert_null(comm);
		return;
	}
	float host[5] = {1.5f, -2, 3, 0.25f, 7}, back[5];
	float *dev = gpu_floats(host, 5);
	assert_int_equal(c->allreduce_sum_f(G, comm, dev, 5, 30.0, msg, sizeof msg), 0);
	G->download(back, dev, sizeof back);
	assert_memory_equal(back, host, sizeof host);
	c->destroy(G, comm);
	G->release(dev);
}

int main(int argc, char **argv)
{
	int n = cuda_device_count();
	if (argc > 1 && strcmp(argv[1], "--count") == 0) {
		printf("%d\n", n);
		return 0;
	}
	if (n == 0) {
		printf("test_gpu_ops: SKIPPED: no usable CUDA GPU (%s)\n", cuda_probe_error());
		return SKIP_CODE;
	}
	const char *dev = getenv("SPOTTRAIN_TEST_GPU");
	G = cuda_backend_open(dev ? atoi(dev) : 0);
	if (!G) {
		fprintf(stderr, "test_gpu_ops: a GPU is present but the CUDA backend does not open\n");
		return 1;
	}
	backend_cpu_set_threads(0);
	C = backend_cpu();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_conv2d_matches_cpu),
		cmocka_unit_test(test_conv2d_chunked_workspace_matches_cpu),
		cmocka_unit_test(test_maxpool_matches_cpu_bitwise),
		cmocka_unit_test(test_relu_matches_cpu_bitwise),
		cmocka_unit_test(test_leaky_relu_matches_cpu_bitwise),
		cmocka_unit_test(test_cpu_only_kinds_have_no_gpu_kernels),
		cmocka_unit_test(test_dropout_uses_the_same_philox_masks),
		cmocka_unit_test(test_scale_and_zero_match_cpu),
		cmocka_unit_test(test_gather_images_matches_cpu_bitwise),
		cmocka_unit_test(test_dense_matches_cpu),
		cmocka_unit_test(test_softmax_xent_matches_cpu),
		cmocka_unit_test(test_optimizers_match_optim_c_bitwise),
		cmocka_unit_test(test_backend_reports_memory_kinds_and_sgemm_rate),
		cmocka_unit_test(test_backend_collective_of_one_rank),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

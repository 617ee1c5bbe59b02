/*
 * gemm.c - the driver around the micro-kernels (kernels_internal.h): B is
 * packed into [KERN_KC][nr] panels (any strides, zero-padded columns), C is
 * walked in register tiles; a tile whose rows are not contiguous or that
 * hangs over an edge goes through a small contiguous copy. The k blocks of
 * one tile run in increasing k and each continues from the value stored by
 * the block before (storing a float and loading it back changes nothing),
 * so blocking keeps the one order of kernels.h.
 */
#include <omp.h>
#include <string.h>

#include "kernels.h"
#include "kernels_internal.h"

/* panel[k][j] = B[k0 + k, j0 + j] for j < cols, 0 for cols <= j < nr. */
static void pack_b(const kern_gemm_args *g, int k0, int kc, int j0, int cols, int nr, float *panel)
{
	const float *b = g->b + (ptrdiff_t)k0 * g->rsb + (ptrdiff_t)j0 * g->csb;
	if (g->csb == 1) {
		for (int k = 0; k < kc; k++) {
			float *p = panel + (ptrdiff_t)k * nr;
			memcpy(p, b + (ptrdiff_t)k * g->rsb, sizeof(float) * (size_t)cols);
			memset(p + cols, 0, sizeof(float) * (size_t)(nr - cols));
		}
		return;
	}
	for (int j = 0; j < cols; j++) {
		const float *bj = b + (ptrdiff_t)j * g->csb;
		for (int k = 0; k < kc; k++)
			panel[(ptrdiff_t)k * nr + j] = bj[(ptrdiff_t)k * g->rsb];
	}
	for (int k = 0; k < kc && cols < nr; k++)
		memset(panel + (ptrdiff_t)k * nr + cols, 0, sizeof(float) * (size_t)(nr - cols));
}

/* One tile of C (rows i0.., columns j0..) over the k block k0..k0+kc, from the packed panel. */
static void tile(const kern_impl *im, const kern_gemm_args *g, int i0, int j0, int k0, int kc, int cols,
		 const float *panel)
{
	const int mr = im->mr, nr = im->nr;
	const int rows = g->m - i0 < mr ? g->m - i0 : mr;
	const float *ap[KERN_MR_MAX];
	for (int r = 0; r < mr; r++) /* rows past the edge repeat the last one; their results are dropped */
		ap[r] = g->a + (ptrdiff_t)(i0 + (r < rows ? r : rows - 1)) * g->rsa + (ptrdiff_t)k0 * g->csa;
	float *c = g->c + (ptrdiff_t)i0 * g->rsc + (ptrdiff_t)j0 * g->csc;
	if (g->csc == 1 && rows == mr && cols == nr) {
		im->ukr(kc, ap, g->csa, panel, c, g->rsc);
		return;
	}
	float t[KERN_MR_MAX * KERN_NR_MAX];
	for (int r = 0; r < mr; r++)
		for (int j = 0; j < nr; j++)
			t[r * nr + j] = r < rows && j < cols ? c[(ptrdiff_t)r * g->rsc + (ptrdiff_t)j * g->csc] : 0.0f;
	im->ukr(kc, ap, g->csa, panel, t, nr);
	for (int r = 0; r < rows; r++)
		for (int j = 0; j < cols; j++)
			c[(ptrdiff_t)r * g->rsc + (ptrdiff_t)j * g->csc] = t[r * nr + j];
}

/* Column panels [p0, p1) of C, all rows, all k: one thread's share. */
static void gemm_panels(const kern_impl *im, const kern_gemm_args *g, int p0, int p1)
{
	_Alignas(64) float panel[KERN_KC * KERN_NR_MAX];
	const int nr = im->nr;
	for (int p = p0; p < p1; p++) {
		const int j0 = p * nr, cols = g->n - j0 < nr ? g->n - j0 : nr;
		for (int k0 = 0; k0 < g->k; k0 += KERN_KC) {
			const int kc = g->k - k0 < KERN_KC ? g->k - k0 : KERN_KC;
			pack_b(g, k0, kc, j0, cols, nr, panel);
			for (int i0 = 0; i0 < g->m; i0 += im->mr)
				tile(im, g, i0, j0, k0, kc, cols, panel);
		}
	}
}

void kern_gemm_impl(const kern_impl *im, const kern_gemm_args *g, int threads)
{
	if (g->m <= 0 || g->n <= 0 || g->k <= 0)
		return;
	const int panels = (g->n + im->nr - 1) / im->nr;
	if (threads > panels)
		threads = panels;
	if (threads <= 1) {
		gemm_panels(im, g, 0, panels);
		return;
	}
#pragma omp parallel num_threads(threads)
	{
		const int t = omp_get_thread_num(), nt = omp_get_num_threads();
		gemm_panels(im, g, (int)((long)panels * t / nt), (int)((long)panels * (t + 1) / nt));
	}
}

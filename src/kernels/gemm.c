/*
 * gemm.c - the driver around the micro-kernels (kernels_internal.h). C is
 * walked in panels of nr columns and, inside, k blocks and register tiles.
 * B is read in place when its rows are contiguous and the panel is whole,
 * else packed into a [kc][nr] panel (any strides, zero-padded columns). A
 * tile of C whose rows are not contiguous or that hangs over an edge goes
 * through a small contiguous copy. The k blocks of one tile run in
 * increasing k and each continues from the value stored by the block before
 * (storing a float and loading it back changes nothing), so blocking keeps
 * the one order of kernels.h.
 */
#include <omp.h>
#include <stdbool.h>
#include <string.h>

#include "kernels.h"
#include "kernels_internal.h"

/* panel[k][j] = B[k0 + k, j0 + j] for j < cols, 0 for cols <= j < nr. */
static void pack_b(const kern_impl *im, const kern_gemm_args *g, int k0, int kc, int j0, int cols, int nr,
		   float *panel)
{
	if (g->brow) { /* rows from the table */
		for (int k = 0; k < kc; k++) {
			const float *src = g->b + g->brow[k0 + k] + (ptrdiff_t)j0 * g->csb;
			float *p = panel + (ptrdiff_t)k * nr;
			if (g->csb == 1)
				memcpy(p, src, sizeof(float) * (size_t)cols);
			else
				for (int j = 0; j < cols; j++)
					p[j] = src[(ptrdiff_t)j * g->csb];
			for (int j = cols; j < nr; j++)
				p[j] = 0.0f;
		}
		return;
	}
	const float *b = g->b + (ptrdiff_t)k0 * g->rsb + (ptrdiff_t)j0 * g->csb;
	if (g->rsb == 1 && g->csb != 1 && im->pack_t) { /* B^T stored: blocks transposed in registers */
		im->pack_t(kc, cols, nr, b, g->csb, panel);
		return;
	}
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

/* One tile of C (rows i0.., columns j0..) over the k block k0..k0+kc; B rows at b + k * ldb. */
static void tile(const kern_tile *tl, const kern_gemm_args *g, int i0, int j0, int k0, int kc, int cols,
		 const float *b, ptrdiff_t ldb, const ptrdiff_t *boff)
{
	const int zero = g->c_zero && k0 == 0; /* the first k block of a c_zero product writes only */
	const int mr = tl->mr, nr = tl->nr;
	const int rows = g->m - i0 < mr ? g->m - i0 : mr;
	const float *ap[KERN_MR_MAX];
	for (int r = 0; r < mr; r++) /* rows past the edge repeat the last one; their results are dropped */
	{
		const int i = i0 + (r < rows ? r : rows - 1);
		ap[r] = g->a + (g->arow ? g->arow[i] : (ptrdiff_t)i * g->rsa) + (ptrdiff_t)k0 * g->csa;
	}
	float *c = g->c + (ptrdiff_t)i0 * g->rsc + (ptrdiff_t)j0 * g->csc;
	if (g->csc == 1 && rows == mr && cols == nr) {
		if (boff)
			tl->ukr_ix(kc, ap, g->csa, b, boff, c, g->rsc, zero);
		else
			tl->ukr(kc, ap, g->csa, b, ldb, c, g->rsc, zero);
		return;
	}
	float t[KERN_MR_MAX * KERN_NR_MAX];
	for (int r = 0; r < mr; r++)
		for (int j = 0; j < nr; j++)
			t[r * nr + j] = !zero && r < rows && j < cols ? c[(ptrdiff_t)r * g->rsc + (ptrdiff_t)j * g->csc]
								: 0.0f;
	if (boff)
		tl->ukr_ix(kc, ap, g->csa, b, boff, t, nr, zero);
	else
		tl->ukr(kc, ap, g->csa, b, ldb, t, nr, zero);
	for (int r = 0; r < rows; r++)
		for (int j = 0; j < cols; j++)
			c[(ptrdiff_t)r * g->rsc + (ptrdiff_t)j * g->csc] = t[r * nr + j];
}

/* The k block size: k itself up to KERN_KC_MAX, else equal blocks of about KERN_KC. */
static int k_block(int k)
{
	if (k <= KERN_KC_MAX)
		return k;
	int blocks = (k + KERN_KC - 1) / KERN_KC;
	return (k + blocks - 1) / blocks;
}

/* Floats of packed panels one thread keeps: a group of panels whose B stays in L1/L2. */
#define GROUP_FLOATS 16384

/*
 * Column panels [p0, p1) of C, all rows, all k: one thread's share. Panels
 * go in groups whose B fits GROUP_FLOATS; inside a group the rows of C run
 * outermost, so C streams row after row even when k is short.
 */
static void gemm_panels(const kern_impl *im, const kern_tile *tl, const kern_gemm_args *g, int p0, int p1)
{
	_Alignas(64) float panel[GROUP_FLOATS > KERN_KC_MAX * KERN_NR_MAX ? GROUP_FLOATS : KERN_KC_MAX * KERN_NR_MAX];
	const int nr = tl->nr, kb = k_block(g->k);
	int group = GROUP_FLOATS / (kb * nr);
	group = group < 1 ? 1 : (group > 64 ? 64 : group);
	const bool direct = g->csb == 1 && (g->rsb != 0 || g->brow);
	for (int q0 = p0; q0 < p1; q0 += group) {
		const int q1 = q0 + group < p1 ? q0 + group : p1;
		for (int k0 = 0; k0 < g->k; k0 += kb) {
			const int kc = g->k - k0 < kb ? g->k - k0 : kb;
			const float *b[64];
			ptrdiff_t ldb[64];
			const ptrdiff_t *boff[64];
			for (int q = q0; q < q1; q++) {
				const int j0 = q * nr, cols = g->n - j0 < nr ? g->n - j0 : nr;
				boff[q - q0] = NULL;
				if (direct && cols == nr && g->brow) { /* in place, rows from the table */
					b[q - q0] = g->b + j0;
					ldb[q - q0] = 0;
					boff[q - q0] = g->brow + k0;
				} else if (direct && cols == nr) {
					b[q - q0] = g->b + (ptrdiff_t)k0 * g->rsb + j0;
					ldb[q - q0] = g->rsb;
				} else {
					float *pp = panel + (ptrdiff_t)(q - q0) * kc * nr;
					pack_b(im, g, k0, kc, j0, cols, nr, pp);
					b[q - q0] = pp;
					ldb[q - q0] = nr;
				}
			}
			for (int i0 = 0; i0 < g->m; i0 += tl->mr)
				for (int q = q0; q < q1; q++) {
					const int j0 = q * nr, cols = g->n - j0 < nr ? g->n - j0 : nr;
					tile(tl, g, i0, j0, k0, kc, cols, b[q - q0], ldb[q - q0], boff[q - q0]);
				}
		}
	}
}

/* Multiply-adds a tile shape spends on an m x n product, padding included. */
static double tile_cost(const kern_tile *tl, int m, int n)
{
	return (double)((m + tl->mr - 1) / tl->mr * tl->mr) * (double)((n + tl->nr - 1) / tl->nr * tl->nr);
}

/* The tile for g and a rough cost in multiply-add units: padding, packing, staging. */
static double plan_cost(const kern_impl *im, const kern_gemm_args *g, const kern_tile **tl)
{
	*tl = tile_cost(&im->narrow, g->m, g->n) < tile_cost(&im->wide, g->m, g->n) ? &im->narrow : &im->wide;
	const double k = g->k, blocks = (g->k + k_block(g->k) - 1) / k_block(g->k);
	double cost = tile_cost(*tl, g->m, g->n) * k;
	if (!(g->csb == 1 && g->rsb != 0))
		cost += 8.0 * k * g->n; /* a strided pack: about half a cycle per element */
	if (g->csc != 1)
		cost += 16.0 * (double)g->m * g->n * blocks; /* a strided copy of C per k block */
	return cost;
}

void kern_gemm_impl(const kern_impl *im, const kern_gemm_args *g0, int threads)
{
	if (g0->m <= 0 || g0->n <= 0 || g0->k <= 0)
		return;
	/* C^T = B^T A^T has the same terms in the same order: take the cheaper way round. */
	const kern_gemm_args gt = {g0->n, g0->m, g0->k, g0->b, g0->csb, g0->rsb, g0->a, g0->csa, g0->rsa,
				   g0->c, g0->csc, g0->rsc, g0->c_zero, NULL, NULL};
	const kern_tile *tl, *tlt;
	const double c0 = plan_cost(im, g0, &tl), ct = plan_cost(im, &gt, &tlt);
	const kern_gemm_args *g = g0;
	if (ct < c0 && !g0->arow && !g0->brow) { /* row tables fix the orientation */
		g = &gt;
		tl = tlt;
	}
	const int panels = (g->n + tl->nr - 1) / tl->nr;
	if (threads > panels)
		threads = panels;
	if (threads <= 1) {
		gemm_panels(im, tl, g, 0, panels);
		return;
	}
#pragma omp parallel num_threads(threads)
	{
		const int t = omp_get_thread_num(), nt = omp_get_num_threads();
		gemm_panels(im, tl, g, (int)((long)panels * t / nt), (int)((long)panels * (t + 1) / nt));
	}
}

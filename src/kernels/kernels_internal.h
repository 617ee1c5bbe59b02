/*
 * kernels_internal.h - what the ISA files give the dispatcher (kernels.c,
 * gemm.c): one register-tile micro-kernel and one peak loop per ISA.
 * The ISA files include nothing else of the project, so that no inline
 * function of a shared header is compiled with their instruction set.
 */
#ifndef SPOTTRAIN_KERNELS_INTERNAL_H
#define SPOTTRAIN_KERNELS_INTERNAL_H

#include <stddef.h>

#include "kernels.h"

/* Rows of the largest register tile (the array of A row pointers is this long). */
#define KERN_MR_MAX 12
/* Reduction terms per k block: at most KERN_KC_MAX, as equal as possible, of about KERN_KC. */
#define KERN_KC 192
#define KERN_KC_MAX 256
/* Columns of the widest panel. */
#define KERN_NR_MAX 32

/*
 * The micro-kernel: for r < mr and j < nr,
 *   c[r * ldc + j] = fma(a[r][(kc-1) * csa], bp[(kc-1) * nr + j], ... fma(a[r][0], bp[j], c[r * ldc + j]))
 * i.e. the terms in increasing k, one fma each. Row k of the panel is
 * b + k * ldb, nr floats; c rows are nr floats (any alignment). zero = 1:
 * the chains start from +0.0 and c is only written (the same bits as zeroing c first).
 */
typedef void (*kern_ukr_fn)(int kc, const float *const *a, ptrdiff_t csa, const float *b, ptrdiff_t ldb,
			    float *c, ptrdiff_t ldc, int zero);

/* Runs iters rounds of 12 independent FMA chains of the ISA's vectors (each chain starts from its
 * own value); returns a sum of the chains (so that nothing is dead code) and the flops in *flops. */
typedef float (*kern_peak_fn)(long iters, double *flops);

/* The same with row k of the panel at b + boff[k] (kern_gemm_args.brow). */
typedef void (*kern_ukr_ix_fn)(int kc, const float *const *a, ptrdiff_t csa, const float *b, const ptrdiff_t *boff,
			       float *c, ptrdiff_t ldc, int zero);

/* A register tile: mr rows of nr columns. */
typedef struct kern_tile {
	int mr, nr;
	kern_ukr_fn ukr;
	kern_ukr_ix_fn ukr_ix;
} kern_tile;

/* An ISA's kernels: a wide tile and a narrow one (for products with few columns, such as a
 * dense layer over a 16-sample shard), and the peak loop. */
typedef struct kern_impl {
	const char *name;
	kern_tile wide, narrow;
	kern_peak_fn peak;
	/* panel[k * nr + j] = b[j * csb + k] for k < kc, j < cols; 0 for cols <= j < nr (NULL: gemm.c's loop) */
	void (*pack_t)(int kc, int cols, int nr, const float *b, ptrdiff_t csb, float *panel);
	/* rows of len floats: dst = src, dst += src (kernels.h's kern_copy_rows, kern_add_rows) */
	void (*copy_rows)(int rows, int len, const float *src, ptrdiff_t spitch, float *dst, ptrdiff_t dpitch);
	void (*add_rows)(int rows, int len, const float *src, ptrdiff_t spitch, float *dst, ptrdiff_t dpitch);
	void (*col2im_s1)(const struct kern_col2im_args *a); /* kernels.h's kern_col2im_s1 */
	/* rows of len floats: dst = the even floats of src (kernels.h's kern_copy_rows_s2) */
	void (*copy_rows_s2)(int rows, int len, const float *src, ptrdiff_t spitch, float *dst, ptrdiff_t dpitch);
	/* rows of len floats: the even floats of dst += src (kernels.h's kern_add_rows_s2) */
	void (*add_rows_s2)(int rows, int len, const float *src, ptrdiff_t spitch, float *dst, ptrdiff_t dpitch);
} kern_impl;

extern const kern_impl kern_impl_portable;
extern const kern_impl kern_impl_avx2;
extern const kern_impl kern_impl_avx512;
/* The AVX-512 tiles on portable fmaf arithmetic: the tests run the AVX-512 driver
 * shapes, tails and order on machines without AVX-512. */
extern const kern_impl kern_impl_avx512_shape;

/* kern_gemm on the kernels of im (gemm.c). */
struct kern_gemm_args;
void kern_gemm_impl(const kern_impl *im, const struct kern_gemm_args *g, int threads);
/* Tests: run kern_gemm on im (such as kern_impl_avx512_shape) until called with NULL. */
void kern_test_use_impl(const kern_impl *im);
/* The kernels of an ISA (kernels.c). */
const kern_impl *kern_impl_of(int isa);

#endif

/*
 * isa_portable.c - the kernels for any x86-64 (and any other CPU): the
 * micro-kernel of ukr_body.h on arrays of floats with fmaf(), which IEEE 754
 * defines as the exactly rounded a * b + c, so these give the bits of the
 * vector kernels. Two instances: the portable tile (4 x 8) and the AVX-512
 * tile (8 x 32), with which the tests run the AVX-512 shapes, tails and
 * order on a machine without AVX-512. Built with -ffp-contract=off.
 */
#include <math.h>

#include "kernels_internal.h"

#define DEFINE_VEC(T, W)                                                                           \
	typedef struct {                                                                           \
		float f[W];                                                                        \
	} T;                                                                                       \
	static inline T T##_load(const float *p)                                                   \
	{                                                                                          \
		T v;                                                                               \
		for (int l = 0; l < W; l++)                                                        \
			v.f[l] = p[l];                                                             \
		return v;                                                                          \
	}                                                                                          \
	static inline void T##_store(float *p, T v)                                                \
	{                                                                                          \
		for (int l = 0; l < W; l++)                                                        \
			p[l] = v.f[l];                                                             \
	}                                                                                          \
	static inline T T##_set1(float x)                                                          \
	{                                                                                          \
		T v;                                                                               \
		for (int l = 0; l < W; l++)                                                        \
			v.f[l] = x;                                                                \
		return v;                                                                          \
	}                                                                                          \
	static inline T T##_fma(T a, T b, T c)                                                     \
	{                                                                                          \
		for (int l = 0; l < W; l++)                                                        \
			c.f[l] = fmaf(a.f[l], b.f[l], c.f[l]);                                     \
		return c;                                                                          \
	}

/* No unrolling: these are arrays in memory anyway (and fully unrolled 8 x 32 tiles of
 * arrays cost minutes of compile time under the sanitizers). */
#define UKR_UNROLL _Pragma("GCC unroll 1")

DEFINE_VEC(vec4, 4)
DEFINE_VEC(vec16, 16)

/* The portable tiles: 4 x 8 and 6 x 4 on vectors of 4. */
#define VT vec4
#define VW 4
#define VLOADU(p) vec4_load(p)
#define VSTOREU(p, v) vec4_store((p), (v))
#define VBCAST(x) vec4_set1(x)
#define VSET1(x) vec4_set1(x)
#define VFMA(a, b, c) vec4_fma((a), (b), (c))

#define UKR_MR 4
#define UKR_NV 2
#define UKR_FN ukr_portable_4x8
#define PEAK_FN peak_portable
#include "ukr_body.h"

#define UKR_MR 6
#define UKR_NV 1
#define UKR_FN ukr_portable_6x4
#include "ukr_body.h"

/* Rows one float at a time (copies, and one add each). */
static void copy_rows_portable(int rows, int len, const float *src, ptrdiff_t spitch, float *dst, ptrdiff_t dpitch)
{
	for (int r = 0; r < rows; r++)
		for (int i = 0; i < len; i++)
			dst[(ptrdiff_t)r * dpitch + i] = src[(ptrdiff_t)r * spitch + i];
}

static void copy_rows_s2_portable(int rows, int len, const float *src, ptrdiff_t spitch, float *dst,
				  ptrdiff_t dpitch)
{
	for (int r = 0; r < rows; r++)
		for (int i = 0; i < len; i++)
			dst[(ptrdiff_t)r * dpitch + i] = src[(ptrdiff_t)r * spitch + 2 * i];
}

static void add_rows_portable(int rows, int len, const float *src, ptrdiff_t spitch, float *dst, ptrdiff_t dpitch)
{
	for (int r = 0; r < rows; r++)
		for (int i = 0; i < len; i++)
			dst[(ptrdiff_t)r * dpitch + i] += src[(ptrdiff_t)r * spitch + i];
}

static void add_rows_s2_portable(int rows, int len, const float *src, ptrdiff_t spitch, float *dst,
				 ptrdiff_t dpitch)
{
	for (int r = 0; r < rows; r++)
		for (int i = 0; i < len; i++)
			dst[(ptrdiff_t)r * dpitch + 2 * i] += src[(ptrdiff_t)r * spitch + i];
}

/* kern_col2im_s1 one float at a time: each element summed over its in-image taps in order from +0.0. */
static void col2im_s1_portable(const kern_col2im_args *a)
{
	const ptrdiff_t P = (ptrdiff_t)a->out_h * a->out_w, plane = (ptrdiff_t)a->in_h * a->in_w;
	for (int c = 0; c < a->in_c; c++)
		for (int ih = 0; ih < a->in_h; ih++)
			for (int iw = 0; iw < a->in_w; iw++) {
				float acc = 0.0f;
				for (int ki = 0; ki < a->k_h; ki++) {
					const int oh = ih + a->pad_top - ki;
					if (oh < 0 || oh >= a->out_h)
						continue;
					for (int kj = 0; kj < a->k_w; kj++) {
						const int ow = iw + a->pad_left - kj;
						if (ow >= 0 && ow < a->out_w)
							acc += a->col[((ptrdiff_t)(c * a->k_h + ki) * a->k_w + kj) * P +
								      (ptrdiff_t)oh * a->out_w + ow];
					}
				}
				a->dx[c * plane + (ptrdiff_t)ih * a->in_w + iw] = acc;
			}
}

const kern_impl kern_impl_portable = {"portable", {4, 8, ukr_portable_4x8, ukr_portable_4x8_ix}, {6, 4, ukr_portable_6x4, ukr_portable_6x4_ix}, peak_portable,
				      NULL, copy_rows_portable, add_rows_portable,
				      col2im_s1_portable, copy_rows_s2_portable, add_rows_s2_portable};

#undef VT
#undef VW
#undef VLOADU
#undef VSTOREU
#undef VBCAST
#undef VSET1
#undef VFMA

/* The AVX-512 tiles of isa_avx512.c (8 x 32 and 12 x 16) on fmaf. */
#define VT vec16
#define VW 16
#define VLOADU(p) vec16_load(p)
#define VSTOREU(p, v) vec16_store((p), (v))
#define VBCAST(x) vec16_set1(x)
#define VSET1(x) vec16_set1(x)
#define VFMA(a, b, c) vec16_fma((a), (b), (c))

#define UKR_MR 8
#define UKR_NV 2
#define UKR_FN ukr_shape_8x32
#define PEAK_FN peak_shape
#include "ukr_body.h"

#define UKR_MR 12
#define UKR_NV 1
#define UKR_FN ukr_shape_12x16
#include "ukr_body.h"

const kern_impl kern_impl_avx512_shape = {"avx512-shape", {8, 32, ukr_shape_8x32, ukr_shape_8x32_ix}, {12, 16, ukr_shape_12x16, ukr_shape_12x16_ix},
					  peak_shape, NULL, copy_rows_portable, add_rows_portable,
				      col2im_s1_portable, copy_rows_s2_portable, add_rows_s2_portable};

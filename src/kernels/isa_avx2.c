/*
 * isa_avx2.c - the AVX2+FMA kernels: a 4 x 24 register tile and a 6 x 16
 * one (12 ymm accumulators each). Built with -mavx2 -mfma -ffp-contract=off
 * (src/CMakeLists.txt) and called only after CPUID said yes (kernels.c).
 * Includes nothing of the project but the kernel headers: no shared inline
 * code gets AVX2 here.
 */
#include <immintrin.h>

#include "kernels_internal.h"

#define PACK_T_FN pack_t_avx2
#include "pack_t_avx2.h"

#define VT __m256
#define VW 8
#define VLOADU(p) _mm256_loadu_ps(p)
#define VSTOREU(p, v) _mm256_storeu_ps((p), (v))
#define VBCAST(x) _mm256_broadcast_ss(&(x))
#define VSET1(x) _mm256_set1_ps(x)
#define VADD(a, b) _mm256_add_ps((a), (b))
#define VFMA(a, b, c) _mm256_fmadd_ps((a), (b), (c))

#define UKR_MR 4
#define UKR_NV 3
#define UKR_FN ukr_avx2_4x24
#define PEAK_FN peak_avx2
#include "ukr_body.h"


/* lanes [lo, hi) of p through vmaskmov (the others read as +0.0; masked-off lanes never fault) */
static inline __m256i lane_mask(int lo, int hi)
{
	const __m256i l = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
	return _mm256_and_si256(_mm256_cmpgt_epi32(l, _mm256_set1_epi32(lo - 1)), _mm256_cmpgt_epi32(_mm256_set1_epi32(hi), l));
}
#define VMASK_T __m256i
#define VMASKOF(lo, hi) lane_mask((lo), (hi))
#define VMASKLOADM(p, m) _mm256_maskload_ps((p), (m))
#define VMASKLOAD(p, lo, hi) VMASKLOADM((p), VMASKOF((lo), (hi)))
#define VMASKSTORE(p, n, v) _mm256_maskstore_ps((p), lane_mask(0, (n)), (v))
#define COL2IM_FN col2im_s1_avx2
#define ROWS_COPY_FN copy_rows_avx2
#define ROWS_ADD_FN add_rows_avx2
/* the even floats of lo then hi: [lo0 lo2 hi0 hi2 | lo4 lo6 hi4 hi6], its 64-bit pairs reordered */
static inline __m256 even_avx2(__m256 lo, __m256 hi)
{
	const __m256 t = _mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(2, 0, 2, 0));
	return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(t), _MM_SHUFFLE(3, 1, 2, 0)));
}
#define VEVEN(lo, hi) even_avx2((lo), (hi))
#define ROWS_COPY_S2_FN copy_rows_s2_avx2
/* p[j] for j < n (n <= 4) into lane 2j, +0.0 elsewhere */
static inline __m256 expand_even_avx2(const float *p, int n)
{
	const __m128i m = _mm_cmpgt_epi32(_mm_set1_epi32(n), _mm_setr_epi32(0, 1, 2, 3));
	const __m256 e = _mm256_permutevar8x32_ps(_mm256_castps128_ps256(_mm_maskload_ps(p, m)),
						  _mm256_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3));
	return _mm256_blend_ps(_mm256_setzero_ps(), e, 0x55);
}
#define VEXPAND_EVEN(p, n) expand_even_avx2((p), (n))
#define ROWS_ADD_S2_FN add_rows_s2_avx2
#include "rows_body.h"

#define UKR_MR 6
#define UKR_NV 2
#define UKR_FN ukr_avx2_6x16
#include "ukr_body.h"

const kern_impl kern_impl_avx2 = {"avx2", {4, 24, ukr_avx2_4x24, ukr_avx2_4x24_ix}, {6, 16, ukr_avx2_6x16, ukr_avx2_6x16_ix}, peak_avx2, pack_t_avx2, copy_rows_avx2, add_rows_avx2,
				    col2im_s1_avx2, copy_rows_s2_avx2, add_rows_s2_avx2};

/*
 * isa_avx512.c - the AVX-512F kernels: an 8 x 32 register tile (16 zmm
 * accumulators) and a 12 x 16 one. Built with -mavx512f -mfma
 * -ffp-contract=off (src/CMakeLists.txt) and called only after CPUID (and
 * the OS's XSAVE state, which __builtin_cpu_supports checks) said yes
 * (kernels.c). Includes nothing of the project but the kernel headers.
 */
#include <immintrin.h>

#include "kernels_internal.h"

#define PACK_T_FN pack_t_avx512
#include "pack_t_avx2.h"

#define VT __m512
#define VW 16
#define VLOADU(p) _mm512_loadu_ps(p)
#define VSTOREU(p, v) _mm512_storeu_ps((p), (v))
#define VBCAST(x) _mm512_set1_ps(x)
#define VSET1(x) _mm512_set1_ps(x)
#define VADD(a, b) _mm512_add_ps((a), (b))
#define VFMA(a, b, c) _mm512_fmadd_ps((a), (b), (c))

#define UKR_MR 8
#define UKR_NV 2
#define UKR_FN ukr_avx512_8x32
#define PEAK_FN peak_avx512
#include "ukr_body.h"


#define ROWS_MASKED
/* the mask of lanes [lo, hi), and a load of those lanes of p (the others read as +0.0 and are
 * not touched: no fault past the ends) */
#define VMASK_T __mmask16
#define VMASKOF(lo, hi) ((__mmask16)(((1u << (hi)) - 1u) & ~((1u << (lo)) - 1u)))
#define VMASKLOADM(p, m) _mm512_maskz_loadu_ps((m), (p))
#define VMASKLOAD(p, lo, hi) VMASKLOADM((p), VMASKOF((lo), (hi)))
#define VMASKSTORE(p, n, v) _mm512_mask_storeu_ps((p), (__mmask16)((1u << (n)) - 1u), (v))
#define COL2IM_FN col2im_s1_avx512
#define ROWS_COPY_FN copy_rows_avx512
#define ROWS_ADD_FN add_rows_avx512
#define VEVEN(lo, hi) \
	_mm512_permutex2var_ps((lo), _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30), (hi))
#define ROWS_COPY_S2_FN copy_rows_s2_avx512
/* p[j] for j < n (n <= 8) into lane 2j, +0.0 elsewhere */
#define VEXPAND_EVEN(p, n) _mm512_maskz_expand_ps((__mmask16)0x5555, VMASKLOAD((p), 0, (n)))
#define ROWS_ADD_S2_FN add_rows_s2_avx512
#include "rows_body.h"

#define UKR_MR 12
#define UKR_NV 1
#define UKR_FN ukr_avx512_12x16
#include "ukr_body.h"

const kern_impl kern_impl_avx512 = {"avx512", {8, 32, ukr_avx512_8x32, ukr_avx512_8x32_ix}, {12, 16, ukr_avx512_12x16, ukr_avx512_12x16_ix}, peak_avx512, pack_t_avx512, copy_rows_avx512, add_rows_avx512,
				    col2im_s1_avx512, copy_rows_s2_avx512, add_rows_s2_avx512};

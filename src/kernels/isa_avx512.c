/*
 * isa_avx512.c - the AVX-512F kernels: an 8 x 32 register tile (16 zmm
 * accumulators). Built with -mavx512f -mfma -ffp-contract=off
 * (src/CMakeLists.txt) and called only after CPUID and XGETBV said yes
 * (kernels.c). Includes nothing of the project but the kernel headers.
 */
#include <immintrin.h>

#include "kernels_internal.h"

#define VT __m512
#define VW 16
#define UKR_MR 8
#define UKR_NV 2
#define VLOADU(p) _mm512_loadu_ps(p)
#define VLOAD(p) _mm512_load_ps(p)
#define VSTOREU(p, v) _mm512_storeu_ps((p), (v))
#define VBCAST(x) _mm512_set1_ps(x)
#define VSET1(x) _mm512_set1_ps(x)
#define VFMA(a, b, c) _mm512_fmadd_ps((a), (b), (c))
#define UKR_FN ukr_avx512
#define PEAK_FN peak_avx512
#include "ukr_body.h"

const kern_impl kern_impl_avx512 = {"avx512", UKR_MR, UKR_NR, ukr_avx512, peak_avx512};

/*
 * isa_avx2.c - the AVX2+FMA kernels: a 4 x 24 register tile (12 ymm
 * accumulators). Built with -mavx2 -mfma -ffp-contract=off (src/CMakeLists.txt)
 * and called only after CPUID said yes (kernels.c). Includes nothing of the
 * project but the kernel headers: no shared inline code gets AVX2 here.
 */
#include <immintrin.h>

#include "kernels_internal.h"

#define VT __m256
#define VW 8
#define UKR_MR 4
#define UKR_NV 3
#define VLOADU(p) _mm256_loadu_ps(p)
#define VLOAD(p) _mm256_load_ps(p)
#define VSTOREU(p, v) _mm256_storeu_ps((p), (v))
#define VBCAST(x) _mm256_broadcast_ss(&(x))
#define VSET1(x) _mm256_set1_ps(x)
#define VFMA(a, b, c) _mm256_fmadd_ps((a), (b), (c))
#define UKR_FN ukr_avx2
#define PEAK_FN peak_avx2
#include "ukr_body.h"

const kern_impl kern_impl_avx2 = {"avx2", UKR_MR, UKR_NR, ukr_avx2, peak_avx2};

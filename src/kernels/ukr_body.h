/*
 * ukr_body.h - the micro-kernel and the peak loop, written once for every
 * ISA. The including file defines the vector type and operations:
 *   VT, VW (lanes), UKR_MR (rows), UKR_NV (vectors per row),
 *   VLOADU(p), VSTOREU(p, v),
 *   VBCAST(x), VFMA(a, b, c) = a * b + c with one rounding, VSET1(x),
 *   UKR_FN and (optional) PEAK_FN: the names of the functions.
 * UKR_UNROLL (optional) prefixes the loops over rows, vectors and chains; by default
 * they are unrolled in full, so that the accumulators live in registers.
 * It undefines UKR_MR, UKR_NV, UKR_FN and PEAK_FN at its end, so that a file can
 * include it once per tile shape.
 * Each accumulator is one output element per lane; k runs outermost, in order.
 */
#ifndef UKR_UNROLL
#define UKR_UNROLL _Pragma("GCC unroll 16")
#endif
#ifndef UKR_CAT
#define UKR_CAT2(a, b) a##b
#define UKR_CAT(a, b) UKR_CAT2(a, b)
#endif
#ifndef UKR_NR
#define UKR_NR (UKR_NV * VW)
#endif

/* The tile's body: row k of B at b + boff[k] when indexed (implicit-GEMM convolutions: rows are
 * shifted views of one input plane), else at b + k * ldb. Inlined into the two functions below
 * with indexed a constant, so each gets its own loop. */
static inline __attribute__((always_inline)) void UKR_CAT(UKR_FN, _body)(int kc, const float *const *a,
									   ptrdiff_t csa, const float *b,
									   ptrdiff_t ldb, const ptrdiff_t *boff,
									   int indexed, float *c, ptrdiff_t ldc,
									   int zero)
{
	VT acc[UKR_MR][UKR_NV];
	if (zero) {
		UKR_UNROLL for (int r = 0; r < UKR_MR; r++)
			UKR_UNROLL for (int v = 0; v < UKR_NV; v++)
				acc[r][v] = VSET1(0.0f);
	} else {
		UKR_UNROLL for (int r = 0; r < UKR_MR; r++)
			UKR_UNROLL for (int v = 0; v < UKR_NV; v++)
				acc[r][v] = VLOADU(c + r * ldc + v * VW);
	}
	for (int k = 0; k < kc; k++) {
		const float *bk = indexed ? b + boff[k] : b + (ptrdiff_t)k * ldb;
		VT bv[UKR_NV];
		UKR_UNROLL for (int v = 0; v < UKR_NV; v++)
			bv[v] = VLOADU(bk + v * VW);
		const ptrdiff_t o = (ptrdiff_t)k * csa;
		UKR_UNROLL for (int r = 0; r < UKR_MR; r++) {
			VT ar = VBCAST(a[r][o]);
			UKR_UNROLL for (int v = 0; v < UKR_NV; v++)
				acc[r][v] = VFMA(ar, bv[v], acc[r][v]);
		}
	}
	UKR_UNROLL for (int r = 0; r < UKR_MR; r++)
		UKR_UNROLL for (int v = 0; v < UKR_NV; v++)
			VSTOREU(c + r * ldc + v * VW, acc[r][v]);
}

static void UKR_FN(int kc, const float *const *a, ptrdiff_t csa, const float *b, ptrdiff_t ldb, float *c,
		   ptrdiff_t ldc, int zero)
{
	UKR_CAT(UKR_FN, _body)(kc, a, csa, b, ldb, NULL, 0, c, ldc, zero);
}

static void UKR_CAT(UKR_FN, _ix)(int kc, const float *const *a, ptrdiff_t csa, const float *b,
				 const ptrdiff_t *boff, float *c, ptrdiff_t ldc, int zero)
{
	UKR_CAT(UKR_FN, _body)(kc, a, csa, b, 0, boff, 1, c, ldc, zero);
}

#ifdef PEAK_FN
static float PEAK_FN(long iters, double *flops)
{
	VT acc[12];
	const VT m = VSET1(0.999999f), s = VSET1(1e-6f);
	UKR_UNROLL for (int i = 0; i < 12; i++)
		acc[i] = VSET1(0.5f + 0.01f * (float)i); /* a different start per chain */
	for (long it = 0; it < iters; it++) {
		UKR_UNROLL for (int i = 0; i < 12; i++)
			acc[i] = VFMA(acc[i], m, s);
	}
	float out[VW], sum = 0.0f;
	for (int i = 0; i < 12; i++) {
		VSTOREU(out, acc[i]);
		for (int l = 0; l < VW; l++)
			sum += out[l];
	}
	*flops = 2.0 * 12.0 * VW * (double)iters;
	return sum;
}
#endif

#undef UKR_NR
#undef UKR_MR
#undef UKR_NV
#undef UKR_FN
#undef PEAK_FN

/*
 * pack_t_avx2.h - the transposing pack of gemm.c (a panel of B whose columns are
 * contiguous: B[k][j] = b[j * csb + k]) in 8 x 8 blocks transposed in AVX registers.
 * Included by the ISA files built with -mavx2 (isa_avx2.c, isa_avx512.c), under the name
 * PACK_T_FN. Only moves floats: the same panel on every ISA.
 */
static void PACK_T_FN(int kc, int cols, int nr, const float *b, ptrdiff_t csb, float *panel)
{
	int j = 0;
	for (; j + 8 <= cols; j += 8) {
		const float *bj = b + (ptrdiff_t)j * csb;
		int k = 0;
		for (; k + 8 <= kc; k += 8) {
			__m256 r0 = _mm256_loadu_ps(bj + k), r1 = _mm256_loadu_ps(bj + csb + k);
			__m256 r2 = _mm256_loadu_ps(bj + 2 * csb + k), r3 = _mm256_loadu_ps(bj + 3 * csb + k);
			__m256 r4 = _mm256_loadu_ps(bj + 4 * csb + k), r5 = _mm256_loadu_ps(bj + 5 * csb + k);
			__m256 r6 = _mm256_loadu_ps(bj + 6 * csb + k), r7 = _mm256_loadu_ps(bj + 7 * csb + k);
			__m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
			__m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
			__m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
			__m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
			__m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xEE);
			__m256 s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xEE);
			__m256 s4 = _mm256_shuffle_ps(t4, t6, 0x44), s5 = _mm256_shuffle_ps(t4, t6, 0xEE);
			__m256 s6 = _mm256_shuffle_ps(t5, t7, 0x44), s7 = _mm256_shuffle_ps(t5, t7, 0xEE);
			float *p = panel + (ptrdiff_t)k * nr + j;
			_mm256_storeu_ps(p, _mm256_permute2f128_ps(s0, s4, 0x20));
			_mm256_storeu_ps(p + nr, _mm256_permute2f128_ps(s1, s5, 0x20));
			_mm256_storeu_ps(p + 2 * nr, _mm256_permute2f128_ps(s2, s6, 0x20));
			_mm256_storeu_ps(p + 3 * nr, _mm256_permute2f128_ps(s3, s7, 0x20));
			_mm256_storeu_ps(p + 4 * nr, _mm256_permute2f128_ps(s0, s4, 0x31));
			_mm256_storeu_ps(p + 5 * nr, _mm256_permute2f128_ps(s1, s5, 0x31));
			_mm256_storeu_ps(p + 6 * nr, _mm256_permute2f128_ps(s2, s6, 0x31));
			_mm256_storeu_ps(p + 7 * nr, _mm256_permute2f128_ps(s3, s7, 0x31));
		}
		for (; k < kc; k++)
			for (int jj = 0; jj < 8; jj++)
				panel[(ptrdiff_t)k * nr + j + jj] = bj[(ptrdiff_t)jj * csb + k];
	}
	for (; j < cols; j++)
		for (int k = 0; k < kc; k++)
			panel[(ptrdiff_t)k * nr + j] = b[(ptrdiff_t)j * csb + k];
	for (int k = 0; k < kc && cols < nr; k++)
		for (int jj = cols; jj < nr; jj++)
			panel[(ptrdiff_t)k * nr + jj] = 0.0f;
}

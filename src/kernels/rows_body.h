/*
 * rows_body.h - row copies and row adds for im2col / col2im (ops_cpu.c), written once for
 * the ISA files: the including file defines VT, VW, VLOADU, VSTOREU, VADD and the names
 * ROWS_COPY_FN, ROWS_ADD_FN; with ROWS_MASKED (AVX-512) the tail of a row is one masked
 * vector, else it is done one float at a time. Copies move floats, adds are one IEEE add per
 * element: the same bits on every ISA.
 */
static void ROWS_COPY_FN(int rows, int len, const float *src, ptrdiff_t spitch, float *dst, ptrdiff_t dpitch)
{
#ifdef ROWS_MASKED
	const __mmask16 tail = (__mmask16)((1u << (len % VW)) - 1u);
#endif
	for (int r = 0; r < rows; r++) {
		const float *s = src + (ptrdiff_t)r * spitch;
		float *d = dst + (ptrdiff_t)r * dpitch;
		int i = 0;
		for (; i + VW <= len; i += VW)
			VSTOREU(d + i, VLOADU(s + i));
#ifdef ROWS_MASKED
		if (i < len)
			_mm512_mask_storeu_ps(d + i, tail, _mm512_maskz_loadu_ps(tail, s + i));
#else
		for (; i < len; i++)
			d[i] = s[i];
#endif
	}
}

static void ROWS_ADD_FN(int rows, int len, const float *src, ptrdiff_t spitch, float *dst, ptrdiff_t dpitch)
{
#ifdef ROWS_MASKED
	const __mmask16 tail = (__mmask16)((1u << (len % VW)) - 1u);
#endif
	for (int r = 0; r < rows; r++) {
		const float *s = src + (ptrdiff_t)r * spitch;
		float *d = dst + (ptrdiff_t)r * dpitch;
		int i = 0;
		for (; i + VW <= len; i += VW)
			VSTOREU(d + i, VADD(VLOADU(d + i), VLOADU(s + i)));
#ifdef ROWS_MASKED
		if (i < len)
			_mm512_mask_storeu_ps(d + i, tail,
					      VADD(_mm512_maskz_loadu_ps(tail, d + i), _mm512_maskz_loadu_ps(tail, s + i)));
#else
		for (; i < len; i++)
			d[i] += s[i];
#endif
	}
}

#undef ROWS_COPY_FN
#undef ROWS_ADD_FN

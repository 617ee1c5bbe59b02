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

#ifdef ROWS_COPY_S2_FN
/*
 * dst[r * dpitch + i] = src[r * spitch + 2 * i]: the even floats, VW at a time from two vectors
 * (VEVEN). A row's last piece (its last VW outputs or fewer) loads only the 2n - 1 floats its n
 * outputs need, masked, and stores n: nothing past src[2 * (len - 1)] is read and short rows
 * (8x8 planes) take one piece. A copy: the same bits on every ISA.
 */
static void ROWS_COPY_S2_FN(int rows, int len, const float *src, ptrdiff_t spitch, float *dst, ptrdiff_t dpitch)
{
	for (int r = 0; r < rows; r++) {
		const float *s = src + (ptrdiff_t)r * spitch;
		float *d = dst + (ptrdiff_t)r * dpitch;
		int i = 0;
		for (; i + VW < len; i += VW)
			VSTOREU(d + i, VEVEN(VLOADU(s + 2 * i), VLOADU(s + 2 * i + VW)));
		if (i < len) {
			const int n = len - i, need = 2 * n - 1; /* need <= 2 VW - 1 */
			const VT lo = need >= VW ? VLOADU(s + 2 * i) : VMASKLOAD(s + 2 * i, 0, need);
			const VT hi = need > VW ? VMASKLOAD(s + 2 * i + VW, 0, need - VW) : VSET1(0.0f);
			const VT v = VEVEN(lo, hi);
			if (n == VW)
				VSTOREU(d + i, v);
			else
				VMASKSTORE(d + i, n, v);
		}
	}
}
#endif

#ifdef ROWS_ADD_S2_FN
/*
 * dst[r * dpitch + 2 * i] += src[r * spitch + i] (the adjoint of ROWS_COPY_S2_FN: a stride-2
 * conv's col2im), VW / 2 sources at a time spread over the even lanes of a vector (VEXPAND_EVEN)
 * and added to VW floats of dst: the odd lanes add +0.0, which leaves a sum that started from
 * +0.0 as it is (it is never -0.0 in round-to-nearest). A row's last piece adds to the 2n - 1
 * floats its n sources reach, masked: nothing past dst[2 * (len - 1)] is read or written. One
 * IEEE add per element in the caller's order: the same bits on every ISA.
 */
static void ROWS_ADD_S2_FN(int rows, int len, const float *src, ptrdiff_t spitch, float *dst, ptrdiff_t dpitch)
{
	for (int r = 0; r < rows; r++) {
		const float *s = src + (ptrdiff_t)r * spitch;
		float *d = dst + (ptrdiff_t)r * dpitch;
		int i = 0;
		for (; i + VW / 2 < len; i += VW / 2)
			VSTOREU(d + 2 * i, VADD(VLOADU(d + 2 * i), VEXPAND_EVEN(s + i, VW / 2)));
		if (i < len) {
			const int n = 2 * (len - i) - 1;
			VMASKSTORE(d + 2 * i, n, VADD(VMASKLOAD(d + 2 * i, 0, n), VEXPAND_EVEN(s + i, len - i)));
		}
	}
}
#endif

#ifdef COL2IM_FN
/*
 * col2im of a stride-1 conv as a gather (kernels.h's kern_col2im_s1): each VW-wide piece of a
 * dx row is summed in a register over the taps (ki, kj) in increasing order, from +0.0, and
 * stored once. A tap's lanes outside the image are loaded as +0.0 (masked), and adding +0.0
 * to a sum that started from +0.0 changes no bit, so this is exactly zeroing dx and adding the
 * in-image taps in (c, ki, kj) order. Each dx element is written once: no store is read back.
 * Pieces run outermost: a piece's column offsets and lane masks, one per kernel column, are the
 * same for every channel and row, so they are worked out once (computed per tap they were about
 * half of the instructions).
 */
#define COL2IM_KW 16 /* kernel columns whose offsets and masks are kept; wider kernels recompute */
static void COL2IM_FN(const kern_col2im_args *a)
{
	const ptrdiff_t P = (ptrdiff_t)a->out_h * a->out_w, plane = (ptrdiff_t)a->in_h * a->in_w;
	const int kept = a->k_w <= COL2IM_KW;
	for (int iw0 = 0; iw0 < a->in_w; iw0 += VW) {
		const int nl = a->in_w - iw0 < VW ? a->in_w - iw0 : VW;
		int off[COL2IM_KW], use[COL2IM_KW], whole[COL2IM_KW];
		VMASK_T mask[COL2IM_KW];
		for (int kj = 0; kept && kj < a->k_w; kj++) {
			const int ow0 = iw0 + a->pad_left - kj; /* lane l reads column ow0 + l */
			const int lo = ow0 < 0 ? -ow0 : 0, hi = a->out_w - ow0 < nl ? a->out_w - ow0 : nl;
			off[kj] = ow0;
			use[kj] = lo < hi;
			whole[kj] = lo == 0 && hi == VW;
			mask[kj] = VMASKOF(lo < hi ? lo : 0, lo < hi ? hi : 0);
		}
		for (int c = 0; c < a->in_c; c++)
			for (int ih = 0; ih < a->in_h; ih++) {
				VT acc = VSET1(0.0f);
				for (int ki = 0; ki < a->k_h; ki++) {
					const int oh = ih + a->pad_top - ki;
					if (oh < 0 || oh >= a->out_h)
						continue;
					const float *row = a->col + (ptrdiff_t)(c * a->k_h + ki) * a->k_w * P +
							   (ptrdiff_t)oh * a->out_w;
					for (int kj = 0; kj < a->k_w; kj++, row += P) {
						if (kept) {
							if (use[kj])
								acc = VADD(acc, whole[kj] ? VLOADU(row + off[kj])
											  : VMASKLOADM(row + off[kj], mask[kj]));
							continue;
						}
						const int ow0 = iw0 + a->pad_left - kj;
						const int lo = ow0 < 0 ? -ow0 : 0;
						const int hi = a->out_w - ow0 < nl ? a->out_w - ow0 : nl;
						if (lo < hi)
							acc = VADD(acc, lo == 0 && hi == VW ? VLOADU(row + ow0)
											 : VMASKLOAD(row + ow0, lo, hi));
					}
				}
				float *d = a->dx + c * plane + (ptrdiff_t)ih * a->in_w + iw0;
				if (nl == VW)
					VSTOREU(d, acc);
				else
					VMASKSTORE(d, nl, acc);
			}
	}
}
#undef COL2IM_KW
#undef COL2IM_FN
#endif

#undef ROWS_COPY_FN
#undef ROWS_ADD_FN
#undef ROWS_COPY_S2_FN
#undef VEVEN
#undef VEXPAND_EVEN
#undef ROWS_ADD_S2_FN

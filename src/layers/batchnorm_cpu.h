/*
 * batchnorm_cpu.h - the batchnorm CPU kernels' per-channel loops, included by batchnorm.c
 * once per instruction set: BN_FN(name) names this copy's functions, BN_TARGET is its
 * target attribute (empty for the baseline), BN_VW its vector width in doubles. Sums run in
 * BN_LANES fixed double lanes (batchnorm.c), held as BN_LANES / BN_VW vectors of the copy's
 * width (GCC's vector extension: a zmm, two ymm or four xmm registers, lane for lane the same
 * operations); every copy does the same operations in the same order, so the bits do not
 * depend on which one runs (and -ffp-contract=off keeps a*b+c two roundings).
 */

/* This copy's vectors: BN_VW doubles (its register width) and as many floats and ints. The
 * BN_LANES lanes of a sum are BN_NV of them, lane l in vector l / BN_VW, element l % BN_VW,
 * each held in a register of its own (a vector of all the lanes is wider than the register
 * and GCC keeps it in memory, one store and reload per step). */
#define BN_NV (BN_LANES / BN_VW)
typedef double BN_FN(bn_vd) __attribute__((vector_size(BN_VW * sizeof(double))));
typedef float BN_FN(bn_vf) __attribute__((vector_size(BN_VW * sizeof(float))));
typedef int32_t BN_FN(bn_vi) __attribute__((vector_size(BN_VW * sizeof(int32_t))));

/* BN_VW floats from x (any alignment), as floats or as doubles. */
BN_TARGET static inline BN_FN(bn_vf) BN_FN(bn_load_f)(const float *x)
{
	BN_FN(bn_vf) v;
	memcpy(&v, x, sizeof v);
	return v;
}

BN_TARGET static inline BN_FN(bn_vd) BN_FN(bn_load_d)(const float *x)
{
	return __builtin_convertvector(BN_FN(bn_load_f)(x), BN_FN(bn_vd));
}

/* The lanes' total: lanes 0, 1, ..., BN_LANES - 1 added in order. */
BN_TARGET static inline double BN_FN(bn_lanes_total)(const BN_FN(bn_vd) * acc)
{
	double t = 0.0;
	for (int l = 0; l < BN_LANES; l++)
		t += acc[l / BN_VW][l % BN_VW];
	return t;
}

/* A plane's tail, element l (< BN_LANES) of it into lane l: through memory, once per plane. */
BN_TARGET static inline void BN_FN(bn_tail)(BN_FN(bn_vd) * acc, const double *d, int count)
{
	double lanes[BN_LANES];
	memcpy(lanes, acc, sizeof lanes);
	for (int l = 0; l < count; l++)
		lanes[l] += d[l];
	memcpy(acc, lanes, sizeof lanes);
}

/* sum over the channel's n planes (stride apart, hw each) of x - shift (sq = 0) or its square:
 * element j of a plane into lane j % BN_LANES (a plane's tail element l into lane l). */
BN_TARGET static double BN_FN(bn_sum)(const float *in, int n, size_t stride, size_t hw, double shift, int sq)
{
	BN_FN(bn_vd) acc[BN_NV] = {{0}};
	for (int i = 0; i < n; i++) {
		const float *x = in + (size_t)i * stride;
		size_t j = 0;
		if (sq)
			for (; j + BN_LANES <= hw; j += BN_LANES) {
#pragma GCC unroll 8
				for (int v = 0; v < BN_NV; v++) {
					const BN_FN(bn_vd) d = BN_FN(bn_load_d)(x + j + v * BN_VW) - shift;
					acc[v] += d * d;
				}
			}
		else /* the first pass over x, from memory: its next plane asked for ahead (the channel's
		      * planes lie stride apart, where the hardware's stream prefetch starts over) */
			for (; j + BN_LANES <= hw; j += BN_LANES) {
				if (i + 1 < n)
					__builtin_prefetch(x + stride + j, 0, 3);
#pragma GCC unroll 8
				for (int v = 0; v < BN_NV; v++)
					acc[v] += BN_FN(bn_load_d)(x + j + v * BN_VW) - shift;
			}
		if (j < hw) {
			double t[BN_LANES];
			int l = 0;
			for (; j < hw; j++, l++) {
				const double d = (double)x[j] - shift;
				t[l] = sq ? d * d : d;
			}
			BN_FN(bn_tail)(acc, t, l);
		}
	}
	return BN_FN(bn_lanes_total)(acc);
}

/* y = (x - mu) * is * g + b over the channel's planes; relu: max(that, 0) (a fused relu layer). */
BN_TARGET static void BN_FN(bn_apply)(const float *in, float *y, int n, size_t stride, size_t hw, float mu,
				      float is, float g, float b, int relu)
{
	for (int i = 0; i < n; i++) {
		const float *x = in + (size_t)i * stride;
		float *yo = y + (size_t)i * stride;
		if (relu)
			for (size_t j = 0; j < hw; j++) {
				const float v = (x[j] - mu) * is * g + b;
				yo[j] = v > 0.0f ? v : 0.0f;
			}
		else
			for (size_t j = 0; j < hw; j++)
				yo[j] = (x[j] - mu) * is * g + b;
	}
}

/*
 * A fused relu's gradient (relu set): dy where the forward's output was above 0, else +0.0, what
 * the relu layer's backward would have written. That output is not read back: it is
 * xh * g + b with xh = (x - mu) * is, the operations of bn_apply in its order, so the same
 * value and the same decision, from x, which the sums read anyway.
 */
BN_TARGET static inline BN_FN(bn_vf) BN_FN(bn_masked_f)(BN_FN(bn_vf) dy, BN_FN(bn_vf) xh, int relu, float g, float b)
{
	if (relu) {
		const BN_FN(bn_vi) keep = xh * g + b > 0.0f;
		dy = (BN_FN(bn_vf))((BN_FN(bn_vi))dy & keep);
	}
	return dy;
}

static inline float BN_FN(bn_masked)(float dy, float xh, int relu, float g, float b)
{
	return !relu || xh * g + b > 0.0f ? dy : 0.0f;
}

/* sum dy and sum dy * xhat, in lanes as bn_sum (dy masked by the fused relu when relu is set). */
BN_TARGET static void BN_FN(bn_grad_sums)(const float *in, const float *dyc, int relu, float g, float b, int n,
					  size_t stride, size_t hw, float mu, float is, double *sdy, double *sdyx)
{
	BN_FN(bn_vd) ady[BN_NV] = {{0}}, adyx[BN_NV] = {{0}};
	for (int i = 0; i < n; i++) {
		const float *x = in + (size_t)i * stride, *dy = dyc + (size_t)i * stride;
		size_t j = 0;
		for (; j + BN_LANES <= hw; j += BN_LANES) {
			if (i + 1 < n) { /* x from memory: as bn_sum's first pass */
				__builtin_prefetch(x + stride + j, 0, 3);
				__builtin_prefetch(dy + stride + j, 0, 3);
			}
#pragma GCC unroll 8
			for (int v = 0; v < BN_NV; v++) {
				const size_t jv = j + (size_t)v * BN_VW;
				const BN_FN(bn_vf) xh = (BN_FN(bn_load_f)(x + jv) - mu) * is;
				const BN_FN(bn_vd) d = __builtin_convertvector(
					BN_FN(bn_masked_f)(BN_FN(bn_load_f)(dy + jv), xh, relu, g, b), BN_FN(bn_vd));
				ady[v] += d;
				adyx[v] += d * __builtin_convertvector(xh, BN_FN(bn_vd));
			}
		}
		if (j < hw) {
			double t[BN_LANES], tx[BN_LANES];
			int l = 0;
			for (; j < hw; j++, l++) {
				const float xh = (x[j] - mu) * is, d = BN_FN(bn_masked)(dy[j], xh, relu, g, b);
				t[l] = d;
				tx[l] = (double)d * xh;
			}
			BN_FN(bn_tail)(ady, t, l);
			BN_FN(bn_tail)(adyx, tx, l);
		}
	}
	*sdy = BN_FN(bn_lanes_total)(ady);
	*sdyx = BN_FN(bn_lanes_total)(adyx);
}

/* dx = k * (dy - mdy - xhat * mdyx) (training) or dy * k (evaluation); dy masked as above. */
BN_TARGET static void BN_FN(bn_grad_apply)(const float *in, const float *dyc, int relu, float g, float b, float *dxc,
					   int n, size_t stride, size_t hw, float mu, float is, float k, float mdy,
					   float mdyx, int training)
{
	for (int i = 0; i < n; i++) {
		const float *x = in + (size_t)i * stride, *dy = dyc + (size_t)i * stride;
		float *dx = dxc + (size_t)i * stride;
		if (!training) {
			for (size_t j = 0; j < hw; j++)
				dx[j] = BN_FN(bn_masked)(dy[j], (x[j] - mu) * is, relu, g, b) * k;
			continue;
		}
		for (size_t j = 0; j < hw; j++) {
			const float xh = (x[j] - mu) * is;
			dx[j] = k * (BN_FN(bn_masked)(dy[j], xh, relu, g, b) - mdy - xh * mdyx);
		}
	}
}

#undef BN_NV
#undef BN_VW
#undef BN_FN
#undef BN_TARGET

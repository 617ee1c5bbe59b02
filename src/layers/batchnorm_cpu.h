/*
 * batchnorm_cpu.h - the batchnorm CPU kernels' per-channel loops, included by batchnorm.c
 * once per instruction set: BN_FN(name) names this copy's functions, BN_TARGET is its
 * target attribute (empty for the baseline). Sums run in BN_LANES fixed double lanes
 * (batchnorm.c), written as one vector of them (GCC's vector extension: a zmm, two ymm or four
 * xmm registers, lane for lane the same operations); every copy does the same operations in the same order, so the bits do
 * not depend on which one runs (and -ffp-contract=off keeps a*b+c two roundings).
 */

/* BN_LANES floats from x (any alignment), as floats or as doubles. */
BN_TARGET static inline bn_v8f BN_FN(bn_load_f)(const float *x)
{
	bn_v8f v;
	memcpy(&v, x, sizeof v);
	return v;
}

BN_TARGET static inline bn_v8d BN_FN(bn_load_d)(const float *x)
{
	return __builtin_convertvector(BN_FN(bn_load_f)(x), bn_v8d);
}

/* The lanes' total: lanes 0, 1, ..., BN_LANES - 1 added in order. */
BN_TARGET static inline double BN_FN(bn_lanes_total)(bn_v8d acc)
{
	double t = 0.0;
	for (int l = 0; l < BN_LANES; l++)
		t += acc[l];
	return t;
}

/* sum over the channel's n planes (stride apart, hw each) of x - shift (sq = 0) or its square:
 * lane l of the vector is lane l of BN_LANES; a plane's tail element l goes into it too. */
BN_TARGET static double BN_FN(bn_sum)(const float *in, int n, size_t stride, size_t hw, double shift, int sq)
{
	bn_v8d acc = {0};
	for (int i = 0; i < n; i++) {
		const float *x = in + (size_t)i * stride;
		size_t j = 0;
		if (sq)
			for (; j + BN_LANES <= hw; j += BN_LANES) {
				const bn_v8d d = BN_FN(bn_load_d)(x + j) - shift;
				acc += d * d;
			}
		else
			for (; j + BN_LANES <= hw; j += BN_LANES)
				acc += BN_FN(bn_load_d)(x + j) - shift;
		for (int l = 0; j < hw; j++, l++) {
			const double d = (double)x[j] - shift;
			acc[l] += sq ? d * d : d;
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

/* dy[j] where out[j] > 0, else +0.0 (a fused relu's gradient; out NULL: dy as it is): what the
 * relu layer's backward would have written. */
BN_TARGET static inline bn_v8f BN_FN(bn_masked_f)(const float *dy, const float *out, size_t j)
{
	bn_v8f d = BN_FN(bn_load_f)(dy + j);
	if (out) {
		const bn_v8si keep = BN_FN(bn_load_f)(out + j) > 0.0f;
		d = (bn_v8f)((bn_v8si)d & keep);
	}
	return d;
}

static inline float BN_FN(bn_masked)(const float *dy, const float *out, size_t j)
{
	const float g = dy[j];
	return !out || out[j] > 0.0f ? g : 0.0f;
}

/* sum dy and sum dy * xhat, in lanes as bn_sum (dy masked by outc > 0 when outc is given). */
BN_TARGET static void BN_FN(bn_grad_sums)(const float *in, const float *dyc, const float *outc, int n,
					  size_t stride, size_t hw, float mu, float is, double *sdy, double *sdyx)
{
	bn_v8d ady = {0}, adyx = {0};
	for (int i = 0; i < n; i++) {
		const float *x = in + (size_t)i * stride, *dy = dyc + (size_t)i * stride;
		const float *out = outc ? outc + (size_t)i * stride : NULL;
		size_t j = 0;
		for (; j + BN_LANES <= hw; j += BN_LANES) {
			const bn_v8f xh = (BN_FN(bn_load_f)(x + j) - mu) * is;
			const bn_v8d d = __builtin_convertvector(BN_FN(bn_masked_f)(dy, out, j), bn_v8d);
			ady += d;
			adyx += d * __builtin_convertvector(xh, bn_v8d);
		}
		for (int l = 0; j < hw; j++, l++) {
			const float xh = (x[j] - mu) * is, g = BN_FN(bn_masked)(dy, out, j);
			ady[l] += g;
			adyx[l] += (double)g * xh;
		}
	}
	*sdy = BN_FN(bn_lanes_total)(ady);
	*sdyx = BN_FN(bn_lanes_total)(adyx);
}

/* dx = k * (dy - mdy - xhat * mdyx) (training) or dy * k (evaluation); dy masked as above. */
BN_TARGET static void BN_FN(bn_grad_apply)(const float *in, const float *dyc, const float *outc, float *dxc, int n,
					   size_t stride, size_t hw, float mu, float is, float k, float mdy,
					   float mdyx, int training)
{
	for (int i = 0; i < n; i++) {
		const float *x = in + (size_t)i * stride, *dy = dyc + (size_t)i * stride;
		const float *out = outc ? outc + (size_t)i * stride : NULL;
		float *dx = dxc + (size_t)i * stride;
		if (!training) {
			for (size_t j = 0; j < hw; j++)
				dx[j] = BN_FN(bn_masked)(dy, out, j) * k;
			continue;
		}
		for (size_t j = 0; j < hw; j++) {
			const float xh = (x[j] - mu) * is;
			dx[j] = k * (BN_FN(bn_masked)(dy, out, j) - mdy - xh * mdyx);
		}
	}
}

#undef BN_FN
#undef BN_TARGET

/*
 * batchnorm_cpu.h - the batchnorm CPU kernels' per-channel loops, included by batchnorm.c
 * once per instruction set: BN_FN(name) names this copy's functions, BN_TARGET is its
 * target attribute (empty for the baseline). Sums run in BN_LANES fixed double lanes
 * (batchnorm.c); every copy does the same operations in the same order, so the bits do
 * not depend on which one runs (and -ffp-contract=off keeps a*b+c two roundings).
 */

/* sum over the channel's n planes (stride apart, hw each) of x - shift, or its square. */
BN_TARGET static double BN_FN(bn_sum)(const float *in, int n, size_t stride, size_t hw, double shift, int sq)
{
	double acc[BN_LANES] = {0};
	for (int i = 0; i < n; i++) {
		const float *x = in + (size_t)i * stride;
		size_t j = 0;
		for (; j + BN_LANES <= hw; j += BN_LANES)
			for (int l = 0; l < BN_LANES; l++) {
				const double d = (double)x[j + l] - shift;
				acc[l] += sq ? d * d : d;
			}
		for (int l = 0; j < hw; j++, l++) {
			const double d = (double)x[j] - shift;
			acc[l] += sq ? d * d : d;
		}
	}
	return bn_lanes_total(acc);
}

/* y = (x - mu) * is * g + b over the channel's planes. */
BN_TARGET static void BN_FN(bn_apply)(const float *in, float *y, int n, size_t stride, size_t hw, float mu,
				      float is, float g, float b)
{
	for (int i = 0; i < n; i++) {
		const float *x = in + (size_t)i * stride;
		float *yo = y + (size_t)i * stride;
		for (size_t j = 0; j < hw; j++)
			yo[j] = (x[j] - mu) * is * g + b;
	}
}

/* sum dy and sum dy * xhat, in lanes as bn_sum. */
BN_TARGET static void BN_FN(bn_grad_sums)(const float *in, const float *dyc, int n, size_t stride, size_t hw,
					  float mu, float is, double *sdy, double *sdyx)
{
	double ady[BN_LANES] = {0}, adyx[BN_LANES] = {0};
	for (int i = 0; i < n; i++) {
		const float *x = in + (size_t)i * stride, *dy = dyc + (size_t)i * stride;
		size_t j = 0;
		for (; j + BN_LANES <= hw; j += BN_LANES)
			for (int l = 0; l < BN_LANES; l++) {
				const float xh = (x[j + l] - mu) * is;
				ady[l] += dy[j + l];
				adyx[l] += (double)dy[j + l] * xh;
			}
		for (int l = 0; j < hw; j++, l++) {
			const float xh = (x[j] - mu) * is;
			ady[l] += dy[j];
			adyx[l] += (double)dy[j] * xh;
		}
	}
	*sdy = bn_lanes_total(ady);
	*sdyx = bn_lanes_total(adyx);
}

/* dx = k * (dy - mdy - xhat * mdyx) (training) or dy * k (evaluation). */
BN_TARGET static void BN_FN(bn_grad_apply)(const float *in, const float *dyc, float *dxc, int n, size_t stride,
					   size_t hw, float mu, float is, float k, float mdy, float mdyx, int training)
{
	for (int i = 0; i < n; i++) {
		const float *x = in + (size_t)i * stride, *dy = dyc + (size_t)i * stride;
		float *dx = dxc + (size_t)i * stride;
		if (!training) {
			for (size_t j = 0; j < hw; j++)
				dx[j] = dy[j] * k;
			continue;
		}
		for (size_t j = 0; j < hw; j++) {
			const float xh = (x[j] - mu) * is;
			dx[j] = k * (dy[j] - mdy - xh * mdyx);
		}
	}
}

#undef BN_FN
#undef BN_TARGET

/*
 * fmath.c - exp and log for the loss, an integer power and a cosine for the
 * optimizers' and schedules' per-step scalars (kernels.h): range reduction and a
 * fixed polynomial in plain IEEE double operations, built with
 * -ffp-contract=off, so that every CPU gets the same bits (a libm may pick a
 * different variant per CPU). ldexp and frexp only move the exponent.
 */
#include <math.h>

#include "kernels.h"

/* ln 2 split so that k * LN2_HI is exact for |k| < 2^11 (Cody and Waite). */
#define LN2_HI 6.93147180369123816490e-01
#define LN2_LO 1.90821492927058770002e-10
#define INV_LN2 1.44269504088896338700e+00

double kern_exp(double x)
{
	if (x != x)
		return x;
	if (x > 709.782712893384)
		return INFINITY;
	if (x < -745.2)
		return 0.0;
	const double kd = x * INV_LN2;
	const long k = (long)(kd + (kd >= 0 ? 0.5 : -0.5));
	const double r = (x - (double)k * LN2_HI) - (double)k * LN2_LO; /* |r| <= ~0.347 */
	/* sum of r^i / i! for i <= 13, Horner from the top: the error term is below 1e-17 */
	double p = 1.0 / 6227020800.0;
	static const double inv_fact[13] = {
		1.0 / 479001600.0, 1.0 / 39916800.0, 1.0 / 3628800.0, 1.0 / 362880.0, 1.0 / 40320.0,
		1.0 / 5040.0, 1.0 / 720.0, 1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0,
	};
	for (int i = 0; i < 13; i++)
		p = p * r + inv_fact[i];
	return ldexp(p, (int)k);
}

double kern_log(double x)
{
	if (x != x || x < 0)
		return NAN;
	if (x == 0)
		return -INFINITY;
	if (x == INFINITY)
		return x;
	int e;
	double m = frexp(x, &e); /* x = m * 2^e, 0.5 <= m < 1 */
	if (m < 0.70710678118654752440) {
		m *= 2.0;
		e--;
	}
	/* log(m) = 2 atanh(t), t = (m - 1) / (m + 1), |t| < 0.172: odd series to t^27 */
	const double t = (m - 1.0) / (m + 1.0), t2 = t * t;
	double s = 2.0 / 27.0;
	for (int i = 25; i >= 1; i -= 2)
		s = s * t2 + 2.0 / (double)i;
	s = s * t;
	return (double)e * LN2_HI + ((double)e * LN2_LO + s);
}

double kern_powi(double x, long n)
{
	if (n < 0)
		return 1.0 / kern_powi(x, -n);
	double r = 1.0, b = x; /* square and multiply, from the lowest bit of n */
	while (n > 0) {
		if (n & 1)
			r *= b;
		n >>= 1;
		if (n > 0)
			b *= b;
	}
	return r;
}

/* pi/2 split so that k * PIO2_HI is exact for the k a schedule meets (Cody and Waite). */
#define PIO2_HI 1.57079632673412561417e+00
#define PIO2_LO 6.07710050650619224932e-11
#define INV_PIO2 6.36619772367581382433e-01

/* Taylor series of sin and cos on |r| <= pi/4, to r^23 and r^22: terms below 1e-24. */
static double sin_poly(double r)
{
	const double r2 = r * r;
	double s = 0.0;
	for (int i = 23; i >= 3; i -= 2) {
		double inv = 1.0;
		for (int j = 2; j <= i; j++)
			inv /= (double)j;
		s = (s + (((i / 2) & 1) ? -inv : inv)) * r2;
	}
	return r + s * r;
}

static double cos_poly(double r)
{
	const double r2 = r * r;
	double s = 0.0;
	for (int i = 22; i >= 2; i -= 2) {
		double inv = 1.0;
		for (int j = 2; j <= i; j++)
			inv /= (double)j;
		s = (s + (((i / 2) & 1) ? -inv : inv)) * r2;
	}
	return 1.0 + s;
}

double kern_cos(double x)
{
	if (x != x || x == INFINITY || x == -INFINITY)
		return NAN;
	x = fabs(x);
	if (x > 1e6) /* far beyond what a schedule asks (pi at most); not reduced exactly here */
		return NAN;
	const long k = (long)(x * INV_PIO2 + 0.5);
	const double r = (x - (double)k * PIO2_HI) - (double)k * PIO2_LO; /* |r| <= ~pi/4 */
	switch (k & 3) {
	case 0:
		return cos_poly(r);
	case 1:
		return -sin_poly(r);
	case 2:
		return -cos_poly(r);
	default:
		return sin_poly(r);
	}
}

/*
 * kernels.h - the CPU compute kernels behind one dispatch table, chosen once
 * per process from CPUID (or forced with run.cpu_isa / SPOTTRAIN_CPU_ISA).
 *
 * The rule that keeps every ISA on the same bits (DESIGN.md invariant 1):
 * every output element of kern_gemm starts from the value already in C and
 * adds its reduction terms in increasing k, one fused multiply-add (one
 * rounding) per term. Vectors run across output elements, never across k, so
 * the vector width, the blocking and the thread count cannot change a bit.
 * The portable kernels do the same with fmaf(), which IEEE defines exactly.
 * Elementwise math (kern_exp, kern_log) is the project's own code on plain
 * IEEE double arithmetic, never a libm variant the loader picks by CPU.
 */
#ifndef SPOTTRAIN_KERNELS_H
#define SPOTTRAIN_KERNELS_H

#include <stddef.h>

typedef enum { KERN_ISA_PORTABLE, KERN_ISA_AVX2, KERN_ISA_AVX512, KERN_ISA_N } kern_isa;

/* The ISA name as written in run.cpu_isa ("portable", "avx2", "avx512"). */
const char *kern_isa_name(kern_isa isa);
/* "portable|avx2|avx512" -> 0 and *out; anything else -> -1. */
int kern_isa_parse(const char *s, kern_isa *out);
/* Whether this CPU (and its OS, for the vector registers' state) runs the ISA. */
int kern_isa_supported(kern_isa isa);
/* The best ISA this CPU runs. */
kern_isa kern_isa_best(void);

/*
 * Choose the kernels of the process: SPOTTRAIN_CPU_ISA from the environment if
 * set and not empty, else want ("auto", NULL or an ISA name). 0 on success;
 * EXIT_USAGE (64) with a message naming the source for an unknown name or an
 * ISA this CPU lacks. Without a call the best ISA runs.
 */
int kern_select(const char *want);
/* The ISA the kernels run now. */
kern_isa kern_current(void);
/* Force the ISA for tests (must be supported); returns the previous one. */
kern_isa kern_force(kern_isa isa);
/* One line for logs and bench: "avx2 (gemm 4x24, CPU: AMD EPYC ...)". */
const char *kern_describe(char *buf, size_t len);

/*
 * C[i, j] = C[i, j] + sum over k of A[i, k] * B[k, j], for i < m, j < n,
 * the terms in increasing k, one fma each (the rule above). Every matrix is
 * addressed through a row and a column stride (elements; 0 repeats one value),
 * so transposes need no copies: X[r, c] = x[r * rs + c * cs]. C must not
 * overlap A or B. threads > 1 splits the columns of C into blocks of whole
 * panels (never the sum): the result does not depend on it.
 * c_zero = 1: C's old values are not read; every chain starts from +0.0
 * instead (the same bits as zeroing C first, without the pass over memory).
 */
typedef struct kern_gemm_args {
	int m, n, k;
	const float *a;
	ptrdiff_t rsa, csa;
	const float *b;
	ptrdiff_t rsb, csb;
	float *c;
	ptrdiff_t rsc, csc;
	int c_zero;
	/* Optional row tables (implicit-GEMM convolutions): when set, row i of A starts at
	 * a + arow[i] (rsa unused) and row k of B at b + brow[k] (rsb unused). The product is
	 * then never computed transposed. */
	const ptrdiff_t *arow, *brow;
} kern_gemm_args;

void kern_gemm(const kern_gemm_args *g, int threads);
/* The same with the kernels of one ISA (tests compare them; isa must be supported). */
void kern_gemm_isa(kern_isa isa, const kern_gemm_args *g, int threads);

/*
 * The measured peak of this CPU with the ISA: GFLOP/s of independent FMA
 * chains (each started from a different value, so no compiler can merge
 * them) on `threads` threads for about seconds_each per try, the best of tries.
 */
/* For r < rows, i < len: dst[r * dpitch + i] = src[r * spitch + i] (copy_rows) or
 * dst[...] += src[...] (add_rows, one IEEE add each); rows must not overlap. */
/* A stride-1 conv's col2im (ops_cpu.c): dx[c][ih][iw] = the sum over in-image taps (ki, kj),
 * in increasing order from +0.0, of col[(c*k_h + ki)*k_w + kj][oh][ow] (oh = ih + pad_top - ki,
 * ow = iw + pad_left - kj): the same bits as zeroing dx and adding row after row. */
typedef struct kern_col2im_args {
	int in_c, in_h, in_w, out_h, out_w, k_h, k_w, pad_top, pad_left;
	const float *col;
	float *dx;
} kern_col2im_args;
void kern_col2im_s1(const kern_col2im_args *a);
void kern_copy_rows(int rows, int len, const float *src, ptrdiff_t spitch, float *dst, ptrdiff_t dpitch);
/* For r < rows, i < len: dst[r * dpitch + i] = src[r * spitch + 2 * i] (a stride-2 conv's im2col);
 * reads nothing of a row past src[r * spitch + 2 * (len - 1)]. */
void kern_copy_rows_s2(int rows, int len, const float *src, ptrdiff_t spitch, float *dst, ptrdiff_t dpitch);
void kern_add_rows(int rows, int len, const float *src, ptrdiff_t spitch, float *dst, ptrdiff_t dpitch);
/* For r < rows, i < len: dst[r * dpitch + 2 * i] += src[r * spitch + i] (a stride-2 conv's
 * col2im; dst's values must not be -0.0, as in a sum that started from +0.0: its odd floats
 * may be added +0.0); touches nothing of a row past dst[r * dpitch + 2 * (len - 1)]. */
void kern_add_rows_s2(int rows, int len, const float *src, ptrdiff_t spitch, float *dst, ptrdiff_t dpitch);

double kern_peak_gflops(kern_isa isa, int threads, double seconds_each, int tries);

/* exp(x) and log(x) in double, from +, *, / only: the same bits on every CPU (relative error < 1e-15). */
double kern_exp(double x);
double kern_log(double x);
/* x^n by squaring (the schedules' gamma^k, Adam's beta^t; relative error below n * 4e-16) and
 * cos(x) for |x| <= 1e6 (NaN beyond; absolute error < 1e-15 on [-10, 10]): the same bits on
 * every CPU, unlike a libm that picks an FMA variant on some CPUs. */
double kern_powi(double x, long n);
double kern_cos(double x);

#endif

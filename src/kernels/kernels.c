/*
 * kernels.c - which kernels run: CPUID (through the compiler's
 * __builtin_cpu_supports, which also checks that the OS saves the vector
 * registers), the run.cpu_isa / SPOTTRAIN_CPU_ISA override, the dispatch to
 * the micro-kernels, and the peak-FMA measurement.
 */
#include <cpuid.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "contract.h"
#include "kernels.h"
#include "kernels_internal.h"
#include "log.h"

static const char *const isa_names[KERN_ISA_N] = {"portable", "avx2", "avx512"};

/* The ISA of the process: chosen once at start (kern_select) or by a test (kern_force). */
static int g_isa = -1;
/* Tests only (kern_test_use_impl): kernels that replace the ISA's, NULL normally. */
static const kern_impl *g_test_impl;

const char *kern_isa_name(kern_isa isa)
{
	return (unsigned)isa < KERN_ISA_N ? isa_names[isa] : "?";
}

int kern_isa_parse(const char *s, kern_isa *out)
{
	for (int i = 0; i < KERN_ISA_N; i++)
		if (s && !strcmp(s, isa_names[i])) {
			*out = (kern_isa)i;
			return 0;
		}
	return -1;
}

int kern_isa_supported(kern_isa isa)
{
	__builtin_cpu_init();
	switch (isa) {
	case KERN_ISA_PORTABLE:
		return 1;
	case KERN_ISA_AVX2:
		return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
	case KERN_ISA_AVX512:
		return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma");
	default:
		return 0;
	}
}

kern_isa kern_isa_best(void)
{
	if (kern_isa_supported(KERN_ISA_AVX512))
		return KERN_ISA_AVX512;
	if (kern_isa_supported(KERN_ISA_AVX2))
		return KERN_ISA_AVX2;
	return KERN_ISA_PORTABLE;
}

kern_isa kern_current(void)
{
	if (g_isa < 0)
		g_isa = kern_isa_best();
	return (kern_isa)g_isa;
}

kern_isa kern_force(kern_isa isa)
{
	kern_isa old = kern_current();
	if (kern_isa_supported(isa))
		g_isa = isa;
	return old;
}

int kern_select(const char *want)
{
	const char *env = getenv("SPOTTRAIN_CPU_ISA");
	const char *src = "run.cpu_isa";
	if (env && *env) {
		want = env;
		src = "SPOTTRAIN_CPU_ISA";
	}
	if (!want || !*want || !strcmp(want, "auto")) {
		g_isa = kern_isa_best();
		return 0;
	}
	kern_isa isa;
	if (kern_isa_parse(want, &isa)) {
		log_error("%s = '%s': not an ISA (auto, portable, avx2 or avx512)", src, want);
		return EXIT_USAGE;
	}
	if (!kern_isa_supported(isa)) {
		log_error("%s = %s: this CPU does not have it (best here: %s)", src, want,
			  kern_isa_name(kern_isa_best()));
		return EXIT_USAGE;
	}
	g_isa = isa;
	return 0;
}

const kern_impl *kern_impl_of(int isa)
{
	switch (isa) {
	case KERN_ISA_AVX512:
		return &kern_impl_avx512;
	case KERN_ISA_AVX2:
		return &kern_impl_avx2;
	default:
		return &kern_impl_portable;
	}
}

/* The CPU's brand string from CPUID leaves 0x80000002..4, trimmed; "" when absent. */
static void cpu_brand(char out[49])
{
	unsigned r[12] = {0};
	out[0] = 0;
	if ((unsigned)__get_cpuid_max(0x80000000u, NULL) < 0x80000004u)
		return;
	for (unsigned i = 0; i < 3; i++)
		__get_cpuid(0x80000002u + i, &r[4 * i], &r[4 * i + 1], &r[4 * i + 2], &r[4 * i + 3]);
	memcpy(out, r, 48);
	out[48] = 0;
	size_t n = strlen(out);
	while (n > 0 && out[n - 1] == ' ')
		out[--n] = 0;
	char *s = out;
	while (*s == ' ')
		s++;
	memmove(out, s, strlen(s) + 1);
}

const char *kern_describe(char *buf, size_t len)
{
	const kern_impl *im = kern_impl_of(kern_current());
	char brand[49];
	cpu_brand(brand);
	snprintf(buf, len, "%s (gemm tiles %dx%d and %dx%d; best on this CPU: %s; CPU: %s)", im->name, im->wide.mr, im->wide.nr, im->narrow.mr, im->narrow.nr,
		 kern_isa_name(kern_isa_best()), brand[0] ? brand : "unknown");
	return buf;
}

void kern_test_use_impl(const kern_impl *im)
{
	g_test_impl = im;
}

void kern_col2im_s1(const kern_col2im_args *a)
{
	kern_impl_of(kern_current())->col2im_s1(a);
}

void kern_copy_rows(int rows, int len, const float *src, ptrdiff_t spitch, float *dst, ptrdiff_t dpitch)
{
	kern_impl_of(kern_current())->copy_rows(rows, len, src, spitch, dst, dpitch);
}

void kern_copy_rows_s2(int rows, int len, const float *src, ptrdiff_t spitch, float *dst, ptrdiff_t dpitch)
{
	kern_impl_of(kern_current())->copy_rows_s2(rows, len, src, spitch, dst, dpitch);
}

void kern_add_rows_s2(int rows, int len, const float *src, ptrdiff_t spitch, float *dst, ptrdiff_t dpitch)
{
	kern_impl_of(kern_current())->add_rows_s2(rows, len, src, spitch, dst, dpitch);
}

void kern_add_rows(int rows, int len, const float *src, ptrdiff_t spitch, float *dst, ptrdiff_t dpitch)
{
	kern_impl_of(kern_current())->add_rows(rows, len, src, spitch, dst, dpitch);
}

void kern_gemm(const kern_gemm_args *g, int threads)
{
	kern_gemm_impl(g_test_impl ? g_test_impl : kern_impl_of(kern_current()), g, threads);
}

void kern_gemm_isa(kern_isa isa, const kern_gemm_args *g, int threads)
{
	kern_gemm_impl(kern_impl_of(isa), g, threads);
}

static double now_s(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

double kern_peak_gflops(kern_isa isa, int threads, double seconds_each, int tries)
{
	if (!kern_isa_supported(isa))
		return 0;
	const kern_impl *im = kern_impl_of(isa);
	double f = 0;
	/* calibrate: rounds per second of one thread */
	long iters = 1 << 16;
	double t0 = now_s();
	volatile float sink = im->peak(iters, &f); /* the sums keep the loops alive */
	double dt = now_s() - t0;
	if (dt > 0)
		iters = (long)(iters * seconds_each / dt) + 1;
	double best = 0;
	for (int r = 0; r < tries; r++) {
		double flops = 0, t1 = now_s();
#pragma omp parallel num_threads(threads < 1 ? 1 : threads) reduction(+ : flops)
		{
			double fl = 0;
			volatile float s = im->peak(iters, &fl);
			(void)s;
			flops += fl;
		}
		double g = flops / (now_s() - t1) / 1e9;
		best = g > best ? g : best;
	}
	(void)sink;
	return best;
}

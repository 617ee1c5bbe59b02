/*
 * grad.c - exact, grouping-independent gradient sums (see grad.h).
 */
#include "grad.h"

#include <immintrin.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "contract.h"
#include "kernels/kernels.h"
#include "log.h"

/* 1.5 * 2^52: adding it to a double of magnitude < 2^51 leaves the rounded integer in the low mantissa bits. */
#define MAGIC 6755399441055744.0
#define MAGIC_BITS 0x4338000000000000LL
#define FIX_SCALE 4294967296.0        /* 2^GRAD_FIX_BITS */
#define FIX_LIMIT 2251799813685247.0  /* 2^51 - 1 */

static int64_t dbl_bits(double d)
{
	int64_t b;
	memcpy(&b, &d, sizeof b);
	return b;
}

static double bits_dbl(int64_t b)
{
	double d;
	memcpy(&d, &b, sizeof d);
	return d;
}

/* One value: round(x * 2^32) saturated at +-(2^51 - 1); NaN and +-inf give 0 and are counted. */
static int64_t fix_one(float x, int64_t *of, int64_t *nf)
{
	double v = (double)x * FIX_SCALE;
	if (!(v == v) || v == INFINITY || v == -INFINITY) {
		(*nf)++;
		return 0;
	}
	if (v > FIX_LIMIT || v < -FIX_LIMIT) {
		(*of)++;
		v = v > 0 ? FIX_LIMIT : -FIX_LIMIT;
	}
	return dbl_bits(v + MAGIC) - MAGIC_BITS;
}

/*
 * The AVX2 part of fix_add: the first n - n % 4 values, exactly the scalar
 * path's double arithmetic four values at a time (compilers do not vectorise
 * the bit cast). Integer sums: the same result whichever path ran. Called only
 * when the CPU has AVX2 (kern_isa_supported; the build is for any x86-64).
 */
__attribute__((target("avx2"))) static size_t fix_add_avx2(size_t n, float *x, int take, int64_t *acc,
							    int64_t *overflow, int64_t *nonfinite)
{
	size_t i = 0;
	int64_t of = 0, nf = 0;
	const __m256d scale = _mm256_set1_pd(FIX_SCALE), lim = _mm256_set1_pd(FIX_LIMIT);
	const __m256d nlim = _mm256_set1_pd(-FIX_LIMIT), magic = _mm256_set1_pd(MAGIC);
	const __m256d inf = _mm256_set1_pd(INFINITY), sign = _mm256_set1_pd(-0.0), zero = _mm256_setzero_pd();
	const __m256i mbits = _mm256_set1_epi64x(MAGIC_BITS);
	__m256i ofv = _mm256_setzero_si256(), nfv = _mm256_setzero_si256();
	for (; i + 4 <= n; i += 4) {
		__m256d v = _mm256_mul_pd(_mm256_cvtps_pd(_mm_loadu_ps(x + i)), scale);
		if (take)
			_mm_storeu_ps(x + i, _mm_setzero_ps());
		__m256d a = _mm256_andnot_pd(sign, v);
		__m256d bad = _mm256_or_pd(_mm256_cmp_pd(v, v, _CMP_UNORD_Q), _mm256_cmp_pd(a, inf, _CMP_EQ_OQ));
		__m256d over = _mm256_andnot_pd(bad, _mm256_cmp_pd(a, lim, _CMP_GT_OQ));
		v = _mm256_blendv_pd(v, zero, bad);
		v = _mm256_min_pd(_mm256_max_pd(v, nlim), lim);
		__m256i q = _mm256_sub_epi64(_mm256_castpd_si256(_mm256_add_pd(v, magic)), mbits);
		__m256i *p = (__m256i *)(acc + i);
		_mm256_storeu_si256(p, _mm256_add_epi64(_mm256_loadu_si256(p), q));
		ofv = _mm256_sub_epi64(ofv, _mm256_castpd_si256(over));
		nfv = _mm256_sub_epi64(nfv, _mm256_castpd_si256(bad));
	}
	int64_t lanes[4];
	_mm256_storeu_si256((__m256i *)lanes, ofv);
	of += lanes[0] + lanes[1] + lanes[2] + lanes[3];
	_mm256_storeu_si256((__m256i *)lanes, nfv);
	nf += lanes[0] + lanes[1] + lanes[2] + lanes[3];
	*overflow += of;
	*nonfinite += nf;
	return i;
}

/* The AVX-512 part of fix_add: the same double arithmetic eight values at a time. */
__attribute__((target("avx512f"))) static size_t fix_add_avx512(size_t n, float *x, int take, int64_t *acc,
								 int64_t *overflow, int64_t *nonfinite)
{
	size_t i = 0;
	int64_t of = 0, nf = 0;
	const __m512d scale = _mm512_set1_pd(FIX_SCALE), lim = _mm512_set1_pd(FIX_LIMIT);
	const __m512d nlim = _mm512_set1_pd(-FIX_LIMIT), magic = _mm512_set1_pd(MAGIC);
	const __m512d inf = _mm512_set1_pd(INFINITY), zero = _mm512_setzero_pd();
	const __m512i mbits = _mm512_set1_epi64(MAGIC_BITS);
	for (; i + 8 <= n; i += 8) {
		__m512d v = _mm512_mul_pd(_mm512_cvtps_pd(_mm256_loadu_ps(x + i)), scale);
		if (take)
			_mm256_storeu_ps(x + i, _mm256_setzero_ps());
		__m512d a = _mm512_abs_pd(v);
		__mmask8 bad = _mm512_cmp_pd_mask(v, v, _CMP_UNORD_Q) | _mm512_cmp_pd_mask(a, inf, _CMP_EQ_OQ);
		__mmask8 over = (__mmask8)(~bad & _mm512_cmp_pd_mask(a, lim, _CMP_GT_OQ));
		v = _mm512_mask_mov_pd(v, bad, zero);
		v = _mm512_min_pd(_mm512_max_pd(v, nlim), lim);
		__m512i q = _mm512_sub_epi64(_mm512_castpd_si512(_mm512_add_pd(v, magic)), mbits);
		_mm512_storeu_si512(acc + i, _mm512_add_epi64(_mm512_loadu_si512(acc + i), q));
		of += __builtin_popcount(over);
		nf += __builtin_popcount(bad);
	}
	*overflow += of;
	*nonfinite += nf;
	return i;
}

/*
 * acc += round(x * 2^32) over n values, saturating; counts saturated and
 * non-finite values; take = 1: x is left all +0.0 (read and zeroed in one pass).
 * The vector paths run the scalar path's double arithmetic (exact integer sums:
 * the same result whichever ran), chosen by the kernels' ISA.
 */
static void fix_add(size_t n, float *x, int take, int64_t *acc, int64_t *overflow, int64_t *nonfinite)
{
	size_t i = 0;
	int64_t of = 0, nf = 0;
	const kern_isa isa = kern_current();
	if (isa == KERN_ISA_AVX512)
		i = fix_add_avx512(n, x, take, acc, overflow, nonfinite);
	else if (isa == KERN_ISA_AVX2)
		i = fix_add_avx2(n, x, take, acc, overflow, nonfinite);
	for (; i < n; i++) {
		acc[i] += fix_one(x[i], &of, &nf);
		if (take)
			x[i] = 0.0f;
	}
	*overflow += of;
	*nonfinite += nf;
}

void grad_fix_add(size_t n, const float *x, int64_t *acc, int64_t *overflow, int64_t *nonfinite)
{
	fix_add(n, (float *)x, 0, acc, overflow, nonfinite); /* take = 0: x only read */
}

void grad_fix_take(size_t n, float *x, int64_t *acc, int64_t *overflow, int64_t *nonfinite)
{
	fix_add(n, x, 1, acc, overflow, nonfinite);
}

/* The AVX2 part of fix_scale_out: returns how many values it did (it stops at a rare large one). */
__attribute__((target("avx2"))) static size_t fix_scale_out_avx2(size_t n, const int64_t *acc, double s, float *out)
{
	size_t i = 0;
	const __m256d magic = _mm256_set1_pd(MAGIC), sv = _mm256_set1_pd(s);
	const __m256i mbits = _mm256_set1_epi64x(MAGIC_BITS);
	const __m256i lo = _mm256_set1_epi64x(-2251799813685248LL), hi = _mm256_set1_epi64x(2251799813685248LL);
	for (; i + 4 <= n; i += 4) {
		__m256i a = _mm256_loadu_si256((const __m256i *)(acc + i));
		__m256i inrange = _mm256_and_si256(_mm256_cmpgt_epi64(a, lo), _mm256_cmpgt_epi64(hi, a));
		if (_mm256_movemask_epi8(inrange) != -1)
			break; /* rare: finish this and the rest on the scalar path */
		__m256d d = _mm256_sub_pd(_mm256_castsi256_pd(_mm256_add_epi64(a, mbits)), magic);
		_mm_storeu_ps(out + i, _mm256_cvtpd_ps(_mm256_mul_pd(d, sv)));
	}
	return i;
}

/* The AVX-512 part of fix_scale_out (it too stops at a rare large value). */
__attribute__((target("avx512f"))) static size_t fix_scale_out_avx512(size_t n, const int64_t *acc, double s,
								       float *out)
{
	size_t i = 0;
	const __m512d magic = _mm512_set1_pd(MAGIC), sv = _mm512_set1_pd(s);
	const __m512i mbits = _mm512_set1_epi64(MAGIC_BITS);
	const __m512i lo = _mm512_set1_epi64(-2251799813685248LL), hi = _mm512_set1_epi64(2251799813685248LL);
	for (; i + 8 <= n; i += 8) {
		__m512i a = _mm512_loadu_si512(acc + i);
		if ((__mmask8)(_mm512_cmpgt_epi64_mask(a, lo) & _mm512_cmpgt_epi64_mask(hi, a)) != 0xff)
			break;
		__m512d d = _mm512_sub_pd(_mm512_castsi512_pd(_mm512_add_epi64(a, mbits)), magic);
		_mm256_storeu_ps(out + i, _mm512_cvtpd_ps(_mm512_mul_pd(d, sv)));
	}
	return i;
}

/* out = acc * s over n values (exact int64 -> double for |acc| < 2^51, the common case). */
void grad_fix_scale_out(size_t n, const int64_t *acc, double s, float *out)
{
	size_t i = 0;
	const kern_isa isa = kern_current();
	if (isa == KERN_ISA_AVX512)
		i = fix_scale_out_avx512(n, acc, s, out);
	else if (isa == KERN_ISA_AVX2)
		i = fix_scale_out_avx2(n, acc, s, out);
	for (; i < n; i++) {
		int64_t a = acc[i];
		double d = (a > -2251799813685248LL && a < 2251799813685248LL) ? bits_dbl(a + MAGIC_BITS) - MAGIC
										: (double)a;
		out[i] = (float)(d * s);
	}
}

static int64_t fix_of(double v)
{
	if (!(v == v))
		return 0;
	v *= FIX_SCALE;
	v = v > FIX_LIMIT ? FIX_LIMIT : (v < -FIX_LIMIT ? -FIX_LIMIT : v);
	return dbl_bits(v + MAGIC) - MAGIC_BITS;
}

void grad_rank_shards(int bsz, int shard, int rank, int world, int *k0, int *k1)
{
	long K = (bsz + shard - 1) / shard;
	*k0 = (int)(K * rank / world);
	*k1 = (int)(K * (rank + 1) / world);
}

int grad_engine_init(grad_engine *e, const model *m, const backend *be, int shard, int threads)
{
	memset(e, 0, sizeof *e);
	e->m = m;
	e->be = be;
	e->shard = shard;
	e->threads = threads < 1 ? 1 : threads;
	int T = e->threads;
	size_t n = m->n_params, nb = m->n_buffers;
	e->ws = calloc((size_t)T, sizeof *e->ws);
	e->g = calloc((size_t)T, sizeof *e->g);
	e->st = nb ? calloc((size_t)T, sizeof *e->st) : NULL;
	e->acc = calloc((size_t)T, sizeof *e->acc);
	e->samples = calloc((size_t)T, sizeof *e->samples);
	e->labels = calloc((size_t)T, sizeof *e->labels);
	if (!e->ws || !e->g || !e->acc || !e->samples || !e->labels || (nb && !e->st))
		goto oom;
	for (int t = 0; t < T; t++) {
		e->g[t] = be->alloc(n * sizeof(float));
		e->acc[t] = be->alloc((n + nb + TAIL_N) * sizeof(int64_t));
		if (nb && !(e->st[t] = be->alloc(nb * sizeof(float))))
			goto oom;
		if (e->g[t]) /* zero once: grad_compute's grad_fix_take leaves them zero after each shard */
			be->zero(n, e->g[t]);
		if (nb)
			be->zero(nb, e->st[t]);
		e->samples[t] = calloc((size_t)shard, sizeof(uint32_t));
		e->labels[t] = calloc((size_t)shard, 1);
		if (!e->g[t] || !e->acc[t] || !e->samples[t] || !e->labels[t])
			goto oom;
		if (net_workspace_alloc(m, be, shard, &e->ws[t]))
			goto oom;
	}
	return 0;
oom:
	log_error("out of memory for %d gradient threads of %zu parameters", T, n);
	grad_engine_free(e);
	return EXIT_OSERR;
}

void grad_engine_free(grad_engine *e)
{
	for (int t = 0; t < e->threads && e->ws; t++) {
		if (e->ws[t].act)
			net_workspace_free(e->m, e->be, &e->ws[t]);
		if (e->g && e->g[t])
			e->be->release(e->g[t]);
		if (e->acc && e->acc[t])
			e->be->release(e->acc[t]);
		if (e->st && e->st[t])
			e->be->release(e->st[t]);
		if (e->samples)
			free(e->samples[t]);
		if (e->labels)
			free(e->labels[t]);
	}
	free(e->ws);
	free(e->g);
	free(e->st);
	free(e->acc);
	free(e->samples);
	free(e->labels);
	memset(e, 0, sizeof *e);
}

size_t grad_tail_offset(const grad_engine *e)
{
	return e->m->n_params + e->m->n_buffers;
}

void grad_compute(grad_engine *e, const float *params, int bsz, int rank, int world, uint32_t seed,
		  uint32_t epoch, shard_fill_fn fill, void *ctx)
{
	const size_t np = e->m->n_params, nb = e->m->n_buffers, nacc = np + nb;
	int k0, k1;
	grad_rank_shards(bsz, e->shard, rank, world, &k0, &k1);
	double t0 = now_mono();
	double t_fwd = 0, t_bwd = 0, t_fix = 0;
	int64_t tail[TAIL_N] = {0};
	/* ops called inside run single-threaded: one shard, one thread, a fixed order */
	omp_set_max_active_levels(1);
#pragma omp parallel num_threads(e->threads)
	{
		const int t = omp_get_thread_num();
		int64_t *acc = e->acc[t];
		net_workspace *ws = &e->ws[t];
		double loss_t = 0;
		int64_t correct_t = 0, of_t = 0, nf_t = 0;
		memset(acc, 0, (nacc + TAIL_N) * sizeof(int64_t));
#pragma omp for schedule(static)
		for (int k = k0; k < k1; k++) {
			long first = (long)k * e->shard;
			int n = (int)(bsz - first < e->shard ? bsz - first : e->shard);
			double a = now_mono();
			fill(ctx, first, n, ws->input, e->samples[t], e->labels[t]);
			batch_info b = {n, e->samples[t], e->labels[t], seed, epoch, 1, NULL, nb ? e->st[t] : NULL};
			double l;
			int c;
			/* g and st are all zero here: zeroed at init, then taken by each shard's conversion */
			net_forward(e->m, e->be, params, ws, &b, &l, &c);
			double bt = now_mono();
			net_backward(e->m, e->be, params, e->g[t], ws, &b);
			double ct = now_mono();
			grad_fix_take(np, e->g[t], acc, &of_t, &nf_t);
			if (nb) /* the shard's statistics, summed exactly like its gradient */
				grad_fix_take(nb, e->st[t], acc + np, &of_t, &nf_t);
			if (t == 0) {
				t_fwd += bt - a;
				t_bwd += ct - bt;
				t_fix += now_mono() - ct;
			}
			/* each shard's loss is rounded to fixed point on its own: exact in any grouping */
			loss_t += (double)fix_of(l);
			correct_t += c;
		}
#pragma omp critical
		{
			tail[TAIL_LOSS] += (int64_t)loss_t;
			tail[TAIL_CORRECT] += correct_t;
			tail[TAIL_OVERFLOW] += of_t;
			tail[TAIL_NONFINITE] += nf_t;
		}
		/* the threads' integer sums into acc[0]: exact, any order */
#pragma omp barrier
#pragma omp for schedule(static)
		for (size_t i = 0; i < nacc; i++) {
			int64_t s = e->acc[0][i];
			for (int u = 1; u < e->threads; u++)
				s += e->acc[u][i];
			e->acc[0][i] = s;
		}
	}
	memcpy(e->acc[0] + nacc, tail, sizeof tail);
	e->t_compute = now_mono() - t0;
	e->t_fwd = t_fwd;
	e->t_bwd = t_bwd;
	e->t_fix = t_fix;
}

void grad_finish(grad_engine *e, int bsz, float *grads)
{
	const size_t np = e->m->n_params;
	const int64_t *acc = e->acc[0];
	if (acc[grad_tail_offset(e) + TAIL_NONFINITE] > 0) {
		for (size_t i = 0; i < np; i++)
			grads[i] = NAN;
		return;
	}
	const double s = 1.0 / FIX_SCALE / (double)bsz;
	const int T = e->threads;
#pragma omp parallel num_threads(T) if (np > (1u << 16))
	{
		const int t = omp_get_thread_num(), nt = omp_get_num_threads();
		size_t lo = np * (size_t)t / (size_t)nt, hi = np * (size_t)(t + 1) / (size_t)nt;
		grad_fix_scale_out(hi - lo, acc + lo, s, grads + lo);
	}
}

void grad_finish_stats(grad_engine *e, int bsz, float *stats)
{
	const size_t np = e->m->n_params, nb = e->m->n_buffers;
	if (nb == 0)
		return;
	const long K = (bsz + e->shard - 1) / e->shard;
	grad_fix_scale_out(nb, e->acc[0] + np, 1.0 / FIX_SCALE / (double)(K > 0 ? K : 1), stats);
}

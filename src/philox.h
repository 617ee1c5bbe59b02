/*
 * philox.h - Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy
 * as 1, 2, 3", SC'11), a counter-based generator: the output is a pure
 * function of (key, counter), so any element of any random stream can be
 * drawn in any order, on any rank, on the CPU or the GPU, with equal results.
 *
 * Usage in spottrain (DESIGN.md invariant 1):
 *   dropout:     key = (seed, layer index), counter = (sample, element/4, epoch, PHILOX_DROPOUT)
 *   permutation: key = (seed, epoch),       counter = (i, 0, 0, PHILOX_PERMUTE)
 *   init:        key = (seed, tensor index), counter = (i/4, 0, 0, PHILOX_INIT)
 *   augmentation: key = (seed, epoch),      counter = (sample, 0, 0, PHILOX_AUGMENT)
 */
#ifndef SPOTTRAIN_PHILOX_H
#define SPOTTRAIN_PHILOX_H

#include <stdint.h>

#ifdef __CUDACC__
#define PHILOX_FN __host__ __device__ static inline
#else
#define PHILOX_FN static inline
#endif

enum { PHILOX_DROPOUT = 1, PHILOX_PERMUTE = 2, PHILOX_INIT = 3, PHILOX_AUGMENT = 4 };

/* Philox4x32's round multipliers and key increments (Salmon et al.): every version of the
 * rounds (here, and ops_cpu.c's lane-parallel and vector ones) uses these. */
#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

typedef struct {
	uint32_t v[4];
} philox_ctr;

typedef struct {
	uint32_t k[2];
} philox_key;

PHILOX_FN void philox_mulhilo(uint32_t a, uint32_t b, uint32_t *hi, uint32_t *lo)
{
	uint64_t p = (uint64_t)a * (uint64_t)b;
	*hi = (uint32_t)(p >> 32);
	*lo = (uint32_t)p;
}

/* Ten rounds of Philox4x32 on counter c under key k. */
PHILOX_FN philox_ctr philox4x32(philox_ctr c, philox_key k)
{
	for (int r = 0; r < 10; r++) {
		uint32_t hi0, lo0, hi1, lo1;
		philox_mulhilo(PHILOX_M0, c.v[0], &hi0, &lo0);
		philox_mulhilo(PHILOX_M1, c.v[2], &hi1, &lo1);
		philox_ctr n;
		n.v[0] = hi1 ^ c.v[1] ^ k.k[0];
		n.v[1] = lo1;
		n.v[2] = hi0 ^ c.v[3] ^ k.k[1];
		n.v[3] = lo0;
		c = n;
		k.k[0] += PHILOX_W0;
		k.k[1] += PHILOX_W1;
	}
	return c;
}

/* A uniform float in [0, 1) from 24 random bits. */
PHILOX_FN float philox_uniform(uint32_t x)
{
	return (float)(x >> 8) * (1.0f / 16777216.0f);
}

/*
 * The dropout keep/drop decision for one element: element e of sample s
 * (dataset index) in layer l of epoch ep. Returns 1 to keep, 0 to drop.
 * Identical on every backend and world size.
 */
PHILOX_FN int philox_dropout_keep(uint32_t seed, uint32_t layer, uint32_t epoch,
				  uint32_t sample, uint32_t element, float rate)
{
	philox_key k = {{seed, layer}};
	philox_ctr c = {{sample, element >> 2, epoch, PHILOX_DROPOUT}};
	philox_ctr r = philox4x32(c, k);
	return philox_uniform(r.v[element & 3]) >= rate;
}

#endif

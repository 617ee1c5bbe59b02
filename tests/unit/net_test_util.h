/*
 * net_test_util.h - what the network tests (test_graph, test_layers,
 * test_layer_grads) share, in net_test_util.c, linked into each of them:
 * a seeded xorshift64* stream, parsing a config text and building its
 * model, a network's summed training loss, a type's CPU kernels, and a
 * layer_kernels lookup that has none (a backend lacking the new kinds).
 */
#ifndef SPOTTRAIN_NET_TEST_UTIL_H
#define SPOTTRAIN_NET_TEST_UTIL_H

#include <stdint.h>

#include "config.h"
#include "model.h"
#include "ops.h"

/* Restart the stream at seed (default 0x9E3779B97F4A7C15). */
void ntu_rng_seed(uint64_t seed);
/* The next value in [0, 1) (xorshift64*). */
double ntu_uniform(void);
/* Defaults, then text as "test.ini", then validation: 0 or the first error's exit code. */
int ntu_parse(config *c, const char *text);
/* ntu_parse, then model_build. */
int ntu_build(config *c, model *m, const char *text);
/* Summed loss of the network on the workspace's inputs (forward in training mode, CPU). */
double ntu_net_loss(const model *m, const float *params, net_workspace *ws, const batch_info *b);
/* The CPU backend's kernels of type kind (fails the test when it has none). */
const layer_kernels *ntu_cpu_kernels(const char *kind);
/* A backend's layer_kernels that answers NULL for every kind. */
const layer_kernels *ntu_no_kernels(const backend *be, const char *kind);

#endif

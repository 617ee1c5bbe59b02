/*
 * pool.h - what the pooling types share (pool.c): the keys pool = P or PHxPW
 * and stride = S or SHxSW (default: the pool size), their check and dump, the
 * output shape out = floor((in - pool) / stride) + 1 with the layer's
 * pool_desc, and the attributes of the architecture hash. maxpool.c and
 * avgpool.c point their rows at these; global_avgpool has no keys.
 */
#ifndef SPOTTRAIN_LAYERS_POOL_H
#define SPOTTRAIN_LAYERS_POOL_H

#include "layer.h"

typedef struct pool_params {
	int pool_h, pool_w;
	int stride_h, stride_w; /* 0: the pool size */
} pool_params;

/* "pool" and "stride"; any other key is unknown. */
bool pool_set(layer_spec *s, const char *key, const char *value, char *err, size_t errlen);
/* pool is required: "[layer.NAME] TYPE needs pool". */
bool pool_check(const layer_spec *s, char *err, size_t errlen);
/* "pool = PHxPW\nstride = SHxSW\n" (the stride resolved). */
int pool_dump(const layer_spec *s, char *buf, size_t len);
/* Output shape and pool_desc; EXIT_USAGE when the pool is larger than the input. */
int pool_shape(model *m, layer *l);
/* Stride and pool size, in the common hash format. */
void pool_hash_attrs(const layer *l, char *buf, size_t len);

#endif

/*
 * pool.c - the keys, check, dump, shape and hash attributes of the pooling
 * types (pool.h), one copy for maxpool.c and avgpool.c: their params are
 * the same pool_params, so a spec's bytes and the model hash are as before.
 */
#include "pool.h"

#include <stdio.h>
#include <string.h>

#include "contract.h"
#include "log.h"

_Static_assert(sizeof(pool_params) <= LAYER_PARAMS_BYTES, "pool_params too large");
_Static_assert(sizeof(pool_desc) <= LAYER_STATE_BYTES, "pool_desc too large");

bool pool_set(layer_spec *s, const char *key, const char *value, char *err, size_t errlen)
{
	pool_params *p = LAYER_PARAMS(pool_params, s);
	if (strcmp(key, "pool") == 0)
		return layer_key_pair(s, key, value, &p->pool_h, &p->pool_w, err, errlen);
	if (strcmp(key, "stride") == 0)
		return layer_key_pair(s, key, value, &p->stride_h, &p->stride_w, err, errlen);
	return layer_key_unknown(s, key, err, errlen);
}

bool pool_check(const layer_spec *s, char *err, size_t errlen)
{
	if (LAYER_PARAMS(const pool_params, s)->pool_h < 1) {
		snprintf(err, errlen, "[layer.%s] %s needs pool", s->name, s->type->name);
		return false;
	}
	return true;
}

int pool_dump(const layer_spec *s, char *buf, size_t len)
{
	const pool_params *p = LAYER_PARAMS(const pool_params, s);
	return snprintf(buf, len, "pool = %dx%d\nstride = %dx%d\n", p->pool_h, p->pool_w,
			p->stride_h ? p->stride_h : p->pool_h, p->stride_w ? p->stride_w : p->pool_w);
}

int pool_shape(model *m, layer *l)
{
	(void)m;
	const pool_params *p = LAYER_PARAMS(const pool_params, &l->spec);
	int sh = p->stride_h ? p->stride_h : p->pool_h, sw = p->stride_w ? p->stride_w : p->pool_w;
	if (p->pool_h > l->in_h || p->pool_w > l->in_w) {
		log_error("[layer.%s] pool %dx%d is larger than its %dx%d input", l->spec.name, p->pool_h,
			  p->pool_w, l->in_h, l->in_w);
		return EXIT_USAGE;
	}
	l->out_h = (l->in_h - p->pool_h) / sh + 1;
	l->out_w = (l->in_w - p->pool_w) / sw + 1;
	*LAYER_STATE(pool_desc, l) = (pool_desc){l->in_c, l->in_h, l->in_w, l->out_h, l->out_w, p->pool_h,
						 p->pool_w, sh, sw};
	return 0;
}

void pool_hash_attrs(const layer *l, char *buf, size_t len)
{
	const pool_desc *d = LAYER_STATE(const pool_desc, l);
	snprintf(buf, len, "k0x0 s%dx%d p0,0 p%dx%d r0", d->stride_h, d->stride_w, d->k_h, d->k_w);
}

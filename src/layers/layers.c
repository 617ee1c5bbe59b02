/*
 * layers.c - the table of layer types, and what every type shares: the
 * "type" and "activation" keys, the checks and the dump of one [layer.NAME]
 * section, and the key parsers the type files use.
 */
#include "layer.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern const layer_type layer_conv2d, layer_maxpool, layer_relu, layer_leaky_relu, layer_dropout,
	layer_flatten, layer_dense, layer_softmax_xent, layer_batchnorm, layer_batchnorm2d,
	layer_avgpool, layer_global_avgpool;

/* Every layer type, one row each (a new type: one file in this folder, one row here). */
static const layer_type *const types[] = {
	&layer_conv2d,
	&layer_maxpool,
	&layer_relu,
	&layer_leaky_relu,
	&layer_dropout,
	&layer_flatten,
	&layer_dense,
	&layer_softmax_xent,
	&layer_batchnorm,
	&layer_batchnorm2d,
	&layer_avgpool,
	&layer_global_avgpool,
};

#define N_TYPES (sizeof types / sizeof types[0])

const layer_type *layer_type_find(const char *name)
{
	for (size_t i = 0; i < N_TYPES; i++)
		if (strcmp(types[i]->name, name) == 0)
			return types[i];
	return NULL;
}

/* The CPU backend's layer_kernels entry: the kernels the type's own file defines. */
const layer_kernels *layer_cpu_kernels(const backend *be, const char *kind)
{
	(void)be;
	const layer_type *t = layer_type_find(kind);
	return t ? t->cpu : NULL;
}

/* "conv2d, maxpool, ..." for messages. */
static void type_names(char *buf, size_t len)
{
	size_t used = 0;
	buf[0] = 0;
	for (size_t i = 0; i < N_TYPES && used < len; i++) {
		int n = snprintf(buf + used, len - used, "%s%s", i ? ", " : "", types[i]->name);
		if (n < 0)
			break;
		used += (size_t)n;
	}
}

/* "type = NAME": a new type starts from its defaults; the same type keeps its keys. */
static bool set_type(layer_spec *s, const char *value, char *err, size_t errlen)
{
	const layer_type *t = layer_type_find(value);
	if (!t) {
		char names[256];
		type_names(names, sizeof names);
		snprintf(err, errlen, "unknown layer type '%s' in [layer.%s] (%s)", value, s->name, names);
		return false;
	}
	if (t == s->type)
		return true;
	s->type = t;
	memset(&s->params, 0, sizeof s->params);
	if (!(t->flags & LT_ACTIVATION))
		s->relu_after = false;
	if (t->defaults)
		t->defaults(s);
	return true;
}

static bool set_activation(layer_spec *s, const char *value, char *err, size_t errlen)
{
	if (strcmp(value, "relu") == 0)
		s->relu_after = true;
	else if (strcmp(value, "none") == 0 || strcmp(value, "linear") == 0)
		s->relu_after = false;
	else {
		snprintf(err, errlen, "[layer.%s] activation must be relu or none, not '%s'", s->name, value);
		return false;
	}
	return true;
}

bool layer_spec_set(layer_spec *s, const char *key, const char *value, char *err, size_t errlen)
{
	if (strcmp(key, "type") == 0)
		return set_type(s, value, err, errlen);
	if (!s->type) {
		snprintf(err, errlen, "[layer.%s]: 'type' must come before '%s'", s->name, key);
		return false;
	}
	if ((s->type->flags & LT_ACTIVATION) && strcmp(key, "activation") == 0)
		return set_activation(s, value, err, errlen);
	if (!s->type->set)
		return layer_key_unknown(s, key, err, errlen);
	return s->type->set(s, key, value, err, errlen);
}

bool layer_spec_check(const layer_spec *s, bool last, char *err, size_t errlen)
{
	if (!s->type) {
		snprintf(err, errlen, "[layer.%s] has no type", s->name);
		return false;
	}
	if (s->type->check && !s->type->check(s, err, errlen))
		return false;
	if ((s->type->flags & LT_LOSS) && !last) {
		snprintf(err, errlen, "[layer.%s] %s must be the last layer", s->name, s->type->name);
		return false;
	}
	if (last && !(s->type->flags & LT_LOSS)) {
		snprintf(err, errlen, "the last layer must be softmax_xent (it is [layer.%s], a %s)", s->name,
			 s->type->name);
		return false;
	}
	return true;
}

int layer_spec_dump(const layer_spec *s, char *buf, size_t len)
{
	int n = snprintf(buf, len, "type = %s\n", s->type ? s->type->name : "?");
	if (n < 0 || (size_t)n >= len || !s->type)
		return n;
	if (s->type->dump) {
		int k = s->type->dump(s, buf + n, len - (size_t)n);
		if (k < 0 || (size_t)(n + k) >= len)
			return k < 0 ? k : n + k;
		n += k;
	}
	if (s->type->flags & LT_ACTIVATION)
		n += snprintf(buf + n, len - (size_t)n, "activation = %s\n", s->relu_after ? "relu" : "none");
	return n;
}

/* ---- key parsers ---- */

bool layer_key_int(const layer_spec *s, const char *key, const char *value, int lo, int hi, int *out,
		   char *err, size_t errlen)
{
	double v;
	if (!config_parse_number(value, &v) || v < lo || v > hi || v != floor(v)) {
		snprintf(err, errlen, "[layer.%s] %s must be an integer in [%d, %d], not '%s'", s->name, key, lo,
			 hi, value);
		return false;
	}
	*out = (int)v;
	return true;
}

/* "3" -> 3x3, "3x5" -> 3x5, each in [lo, hi]. */
static bool parse_pair(const char *s, int *a, int *b, int lo, int hi)
{
	char *end;
	errno = 0;
	long x = strtol(s, &end, 10), y;
	if (errno || end == s || x < lo || x > hi)
		return false;
	if (*end == 0) {
		*a = *b = (int)x;
		return true;
	}
	if (*end != 'x' && *end != 'X')
		return false;
	const char *p = end + 1;
	y = strtol(p, &end, 10);
	if (errno || end == p || *end || y < lo || y > hi)
		return false;
	*a = (int)x;
	*b = (int)y;
	return true;
}

bool layer_key_pair(const layer_spec *s, const char *key, const char *value, int *h, int *w, char *err,
		    size_t errlen)
{
	if (!parse_pair(value, h, w, 1, 4096)) {
		snprintf(err, errlen, "[layer.%s] %s must be N or HxW with values in [1, 4096], not '%s'", s->name,
			 key, value);
		return false;
	}
	return true;
}

bool layer_key_float(const layer_spec *s, const char *key, const char *value, double lo, double hi,
		     bool hi_open, float *out, char *err, size_t errlen)
{
	double v;
	if (!config_parse_number(value, &v) || v < lo || v > hi || (hi_open && v == hi)) {
		snprintf(err, errlen, "[layer.%s] %s must be in [%g, %g%c, not '%s'", s->name, key, lo, hi,
			 hi_open ? ')' : ']', value);
		return false;
	}
	*out = (float)v;
	return true;
}

bool layer_key_unknown(const layer_spec *s, const char *key, char *err, size_t errlen)
{
	snprintf(err, errlen, "unknown key '%s' for a %s layer in [layer.%s]", key, s->type->name, s->name);
	return false;
}

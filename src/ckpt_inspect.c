/*
 * ckpt_inspect.c - `spottrain inspect FILE`: what a checkpoint holds, and
 * whether it is valid, without the config that wrote it. The walk and the
 * validation are ckpt_scan() (ckpt_read.c); this file only prints, with
 * the field table (ckpt_format.c) saying which attributes are shown in hex.
 */
#include "ckpt.h"

#include <inttypes.h>
#include <math.h>
#include <string.h>
#include <sys/stat.h>

#include "ckpt_format.h"
#include "ckpt_internal.h"
#include "contract.h"

typedef struct stats {
	size_t n;         /* values seen */
	size_t nonfinite; /* NaN or infinite values (left out of the figures below) */
	double min, max;
	double sum, sumsq;
} stats;

typedef struct printer {
	FILE *out;
	char group[96];   /* the group being walked */
	bool per_tensor;  /* /params, /buffers: one line per tensor; optimizer states: one line per group */
	int n_tensors;    /* of the current group */
	stats group_stats;
} printer;

static void stats_add(stats *s, const float *x, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		double v = x[i];
		if (!isfinite(v)) {
			s->nonfinite++;
			continue;
		}
		if (s->n == 0 || v < s->min)
			s->min = v;
		if (s->n == 0 || v > s->max)
			s->max = v;
		s->sum += v;
		s->sumsq += v * v;
		s->n++;
	}
}

static void stats_print(FILE *out, const stats *s)
{
	if (s->n > 0)
		fprintf(out, "min %.6g  max %.6g  mean %.6g  l2 %.6g", s->min, s->max, s->sum / (double)s->n, sqrt(s->sumsq));
	if (s->nonfinite > 0)
		fprintf(out, "%snon-finite %zu", s->n > 0 ? "  " : "", s->nonfinite);
}

/* The summary line of an optimizer state group, once its tensors are all seen. */
static void flush_group(printer *p)
{
	if (p->group[0] && !p->per_tensor) {
		fprintf(p->out, "%s: %d tensors, %zu values  ", p->group, p->n_tensors,
			p->group_stats.n + p->group_stats.nonfinite);
		stats_print(p->out, &p->group_stats);
		fputc('\n', p->out);
	}
	p->group[0] = '\0';
}

static void on_attr(void *ctx, const char *object, const char *name, const ckpt_attr_value *v)
{
	printer *p = ctx;
	const ckpt_field *f = ckpt_field_find(object, name);
	bool hex = f && (f->flags & CKPT_F_HEX);
	fprintf(p->out, "  %s%s%s =", strcmp(object, "/") == 0 ? "" : object, strcmp(object, "/") == 0 ? "" : ":", name);
	switch (v->kind) {
	case CKPT_ATTR_INT:
		fprintf(p->out, " %" PRId64 "\n", v->i);
		break;
	case CKPT_ATTR_UINT:
		fprintf(p->out, hex ? " 0x%" PRIx64 "\n" : " %" PRIu64 "\n", v->u);
		break;
	case CKPT_ATTR_FLOAT:
		fprintf(p->out, " %.9g\n", v->f);
		break;
	case CKPT_ATTR_STRING:
		if (strchr(v->s, '\n')) {
			/* the config text: one indented line per line */
			fputc('\n', p->out);
			const char *s = v->s;
			while (*s) {
				size_t n = strcspn(s, "\n");
				fprintf(p->out, n ? "      %.*s\n" : "%.*s\n", (int)n, s);
				s += n;
				if (*s == '\n')
					s++;
			}
		} else {
			fprintf(p->out, " \"%s\"\n", v->s);
		}
		break;
	default:
		fprintf(p->out, " (%" PRIu64 " value%s, not shown)\n", v->n, v->n == 1 ? "" : "s");
		break;
	}
}

static void on_group(void *ctx, const char *group, int n_tensors)
{
	printer *p = ctx;
	flush_group(p);
	snprintf(p->group, sizeof p->group, "%s", group);
	p->per_tensor = strcmp(group, "/params") == 0 || strcmp(group, "/buffers") == 0;
	p->n_tensors = n_tensors;
	memset(&p->group_stats, 0, sizeof p->group_stats);
	if (p->per_tensor)
		fprintf(p->out, "%s: %d tensors\n", group, n_tensors);
}

static void on_tensor(void *ctx, const char *group, const char *name, int ndim, const int *dims, const float *data,
		      size_t numel)
{
	printer *p = ctx;
	(void)group;
	stats s = { 0 };
	stats_add(&s, data, numel);
	stats_add(&p->group_stats, data, numel);
	if (!p->per_tensor)
		return;
	char shape[64];
	size_t k = 0;
	for (int d = 0; d < ndim && k < sizeof shape; d++)
		k += (size_t)snprintf(shape + k, sizeof shape - k, "%s%d", d ? "," : "[", dims[d]);
	if (k < sizeof shape)
		snprintf(shape + k, sizeof shape - k, "]");
	fprintf(p->out, "  %-24s %-16s ", name, shape);
	stats_print(p->out, &s);
	fputc('\n', p->out);
}

int ckpt_inspect(const char *path, FILE *out)
{
	char why[1024];
	struct stat st;
	printer p = { .out = out };
	ckpt_scan_visitor vis = { &p, on_attr, on_group, on_tensor };
	if (!path || !out)
		return EXIT_SOFTWARE;
	if (stat(path, &st) == 0 && S_ISREG(st.st_mode))
		fprintf(out, "checkpoint %s (%lld bytes)\n", path, (long long)st.st_size);
	else
		fprintf(out, "checkpoint %s\n", path);
	fprintf(out, "attributes:\n");
	int rc = ckpt_scan(path, &vis, NULL, why, sizeof why);
	flush_group(&p);
	if (rc == 0)
		fprintf(out, "valid: yes\n");
	else
		fprintf(out, "valid: no: %s\n", why);
	return rc;
}

/*
 * config.c - INI configuration through inih. Plain keys are described by one
 * table (section, key, type, field) used for parsing, --set overrides and the
 * canonical dump alike, so the three can never disagree.
 */
#include "config.h"

#include <ctype.h>
#include <stdarg.h>
#include <errno.h>
#include <ini.h>
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_block.h"
#include "contract.h"
#include "layers/layer.h"
#include "log.h"

typedef enum { K_INT, K_LONG, K_U32, K_FLOAT, K_DOUBLE, K_BOOL, K_STR, K_ENUM, K_SIZE } key_type;

typedef struct key_desc {
	const char *section;
	const char *key;
	key_type type;
	size_t offset;
	size_t size;                 /* K_STR: buffer size */
	double min, max;             /* numeric range (inclusive) */
	const char *const *names;    /* K_ENUM: NULL-terminated names, value = index */
} key_desc;

static const char *const optim_names[] = {"sgd", "adam", "adamw", "adadelta", NULL};
static const char *const sched_names[] = {"constant", "step", "cosine", "onecycle", NULL};
static const char *const wd_skip_names[] = {"none", "bn", "bias", "bn,bias", NULL}; /* value = OPTIM_WD_SKIP_* bits */
static const char *const scope_names[] = {"shared", "node", NULL};
static const char *const dist_names[] = {"auto", "mpi", "nccl", NULL};
static const char *const device_names[] = {"auto", "cpu", "cuda", NULL};
static const char *const data_format_names[] = {"auto", "idx", "cifar10", "cifar100", "hdf5", NULL};
static const char *const data_label_names[] = {"fine", "coarse", NULL};
static const char *const pad_mode_names[] = {"zero", "reflect", NULL};
static const char *const cpu_isa_names[] = {"auto", "portable", "avx2", "avx512", NULL};
static const char *const provider_names[] = {"none", "auto", "aws", "gcp", "azure", NULL};

#define OFF(f) offsetof(config, f)
#define STR(f) OFF(f), sizeof(((config *)0)->f)
static const key_desc keys[] = {
	{"data", "dir", K_STR, STR(data_dir), 0, 0, NULL},
	{"data", "url", K_STR, STR(data_url), 0, 0, NULL},
	{"data", "sha256_train_images", K_STR, STR(data_sha256[0]), 0, 0, NULL},
	{"data", "sha256_train_labels", K_STR, STR(data_sha256[1]), 0, 0, NULL},
	{"data", "sha256_test_images", K_STR, STR(data_sha256[2]), 0, 0, NULL},
	{"data", "sha256_test_labels", K_STR, STR(data_sha256[3]), 0, 0, NULL},
	{"data", "archive_digest", K_STR, STR(data_archive_digest), 0, 0, NULL},
	{"data", "format", K_ENUM, OFF(data_format), 0, 0, 0, data_format_names},
	{"data", "label", K_ENUM, OFF(data_label), 0, 0, 0, data_label_names},
	{"data", "crop_pad", K_INT, OFF(aug_crop_pad), 0, 0, 1024, NULL},
	{"data", "pad_mode", K_ENUM, OFF(aug_pad_mode), 0, 0, 0, pad_mode_names},
	{"data", "flip", K_BOOL, OFF(aug_flip), 0, 0, 0, NULL},
	{"data", "cutout", K_INT, OFF(aug_cutout), 0, 0, 4096, NULL},
	{"data", "mean", K_STR, STR(data_mean), 0, 0, NULL},
	{"data", "std", K_STR, STR(data_std), 0, 0, NULL},
	{"data", "prefetch", K_BOOL, OFF(data_prefetch), 0, 0, 0, NULL},
	{"data", "cache_mb", K_DOUBLE, OFF(data_cache_mb), 0, 0, 1 << 30, NULL},
	{"data", "stream", K_BOOL, OFF(data_stream), 0, 0, 0, NULL},
	{"train", "epochs", K_INT, OFF(epochs), 0, 0, 1e6, NULL},
	{"train", "global_batch", K_INT, OFF(global_batch), 0, 1, 1 << 20, NULL},
	{"train", "optimizer", K_ENUM, OFF(optim.kind), 0, 0, 0, optim_names},
	{"train", "lr", K_FLOAT, OFF(optim.lr), 0, 0, 1e6, NULL},
	{"train", "momentum", K_FLOAT, OFF(optim.momentum), 0, 0, 1, NULL},
	{"train", "nesterov", K_BOOL, OFF(optim.nesterov), 0, 0, 0, NULL},
	{"train", "weight_decay", K_FLOAT, OFF(optim.weight_decay), 0, 0, 1e3, NULL},
	{"train", "wd_skip", K_ENUM, OFF(optim.wd_skip), 0, 0, 0, wd_skip_names},
	{"train", "beta1", K_FLOAT, OFF(optim.beta1), 0, 0, 1, NULL},
	{"train", "beta2", K_FLOAT, OFF(optim.beta2), 0, 0, 1, NULL},
	{"train", "eps", K_FLOAT, OFF(optim.eps), 0, 0, 1, NULL},
	{"train", "rho", K_FLOAT, OFF(optim.rho), 0, 0, 1, NULL},
	{"train", "schedule", K_ENUM, OFF(optim.schedule), 0, 0, 0, sched_names},
	{"train", "warmup_steps", K_LONG, OFF(optim.warmup_steps), 0, 0, 1e12, NULL},
	{"train", "warmup_epochs", K_FLOAT, OFF(optim.warmup_epochs), 0, 0, 1e6, NULL},
	{"train", "step_every", K_LONG, OFF(optim.step_every), 0, 0, 1e12, NULL},
	{"train", "gamma", K_FLOAT, OFF(optim.gamma), 0, 0, 1e3, NULL},
	{"train", "min_lr", K_FLOAT, OFF(optim.min_lr), 0, 0, 1e6, NULL},
	{"train", "seed", K_U32, OFF(seed), 0, 0, 4294967295.0, NULL},
	{"train", "max_steps", K_LONG, OFF(max_steps), 0, 0, 1e15, NULL},
	{"train", "eval_each_epoch", K_BOOL, OFF(eval_each_epoch), 0, 0, 0, NULL},
	{"checkpoint", "every_steps", K_INT, OFF(ckpt_every_steps), 0, 0, 1e9, NULL},
	{"checkpoint", "keep", K_INT, OFF(ckpt_keep), 0, 1, 1e6, NULL},
	{"checkpoint", "keep_epoch_ends", K_BOOL, OFF(ckpt_keep_epoch_ends), 0, 0, 0, NULL},
	{"checkpoint", "async", K_BOOL, OFF(ckpt_async), 0, 0, 0, NULL},
	{"checkpoint", "scope", K_ENUM, OFF(ckpt_scope), 0, 0, 0, scope_names},
	{"run", "dir", K_STR, STR(run_dir), 0, 0, NULL},
	{"run", "log_every", K_INT, OFF(log_every), 0, 1, 1e9, NULL},
	{"run", "min_step_ms", K_INT, OFF(min_step_ms), 0, 0, 6e5, NULL},
	{"run", "threads", K_INT, OFF(threads), 0, 0, 4096, NULL},
	{"run", "device", K_ENUM, OFF(device), 0, 0, 0, device_names},
	{"run", "cpu_isa", K_ENUM, OFF(cpu_isa), 0, 0, 0, cpu_isa_names},
	{"spot", "provider", K_ENUM, OFF(spot.provider), 0, 0, 0, provider_names},
	{"spot", "metadata_url", K_STR, STR(spot.metadata_url), 0, 0, NULL},
	{"spot", "poll_ms", K_INT, OFF(spot.poll_ms), 0, 10, 3.6e6, NULL},
	{"spot", "connect_timeout_ms", K_INT, OFF(spot.connect_timeout_ms), 0, 1, 6e5, NULL},
	{"spot", "timeout_ms", K_INT, OFF(spot.timeout_ms), 0, 1, 6e5, NULL},
	{"spot", "max_response", K_SIZE, OFF(spot.max_response), 0, 256, 1 << 26, NULL},
	{"spot", "vm_name", K_STR, STR(spot.vm_name), 0, 0, NULL},
	{"dist", "backend", K_ENUM, OFF(dist_backend), 0, 0, 0, dist_names},
	{"dist", "collective_timeout_s", K_DOUBLE, OFF(collective_timeout_s), 0, 0.1, 1e7, NULL},
	{"dist", "shard_samples", K_INT, OFF(shard_samples), 0, 1, 1 << 16, NULL},
};
#undef OFF
#undef STR

#define N_KEYS (sizeof keys / sizeof keys[0])
_Static_assert(N_KEYS <= 64, "config.explicit_keys has one bit per key");

/* Parse state shared by the inih handler and its caller. */
typedef struct parse_ctx {
	config *c;
	const char *name;     /* file name for messages */
	char err[512];        /* first error */
	config_blocks *blocks; /* [block.*] templates and the [repeat.*] being read (config_block.c) */
} parse_ctx;

void config_defaults(config *c)
{
	memset(c, 0, sizeof *c);
	c->in_c = 1;
	c->in_h = 28;
	c->in_w = 28;
	snprintf(c->data_dir, sizeof c->data_dir, "%s", "/usr/share/datasets/fashion-mnist");
	c->epochs = 12;
	c->global_batch = 128;
	optim_config_defaults(&c->optim, OPT_ADADELTA);
	c->seed = 1;
	c->eval_each_epoch = true;
	c->ckpt_every_steps = 200;
	c->ckpt_keep = 3;
	c->ckpt_keep_epoch_ends = true;
	c->ckpt_async = true;
	snprintf(c->run_dir, sizeof c->run_dir, "%s", "runs/default");
	c->log_every = 10;
	spot_config_defaults(&c->spot);
	c->collective_timeout_s = 300.0;
	c->shard_samples = 16;
}

static const key_desc *find_key(const char *section, const char *key)
{
	for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
		if (strcmp(keys[i].section, section) == 0 && strcmp(keys[i].key, key) == 0)
			return &keys[i];
	return NULL;
}

bool config_parse_number(const char *s, double *out)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	while (isspace((unsigned char)*end))
		end++;
	if (errno || end == s || *end || !isfinite(v))
		return false;
	*out = v;
	return true;
}

static bool parse_bool(const char *s, bool *out)
{
	static const char *const t[] = {"1", "true", "yes", "on"};
	static const char *const f[] = {"0", "false", "no", "off"};
	for (int i = 0; i < 4; i++) {
		if (strcasecmp(s, t[i]) == 0) {
			*out = true;
			return true;
		}
		if (strcasecmp(s, f[i]) == 0) {
			*out = false;
			return true;
		}
	}
	return false;
}

/*
 * A text value must read back the same from the canonical dump, which a checkpoint keeps and a
 * resume parses: no control character (a newline from --set would start a line of its own, even
 * a [section]), no blank at either end (the parser trims them) and no " ;" (the parser takes the
 * rest as a comment). Of these, a value from a file can hold only a tab.
 */
static bool str_value_ok(const char *value, char *err, size_t errlen, const key_desc *k)
{
	size_t n = strlen(value);
	const char *why = NULL;
	for (size_t i = 0; i < n && !why; i++)
		if ((unsigned char)value[i] < 0x20 || value[i] == 0x7f)
			why = "holds a control character (a newline, a tab, ...)";
	if (!why && n > 0 && (isspace((unsigned char)value[0]) || isspace((unsigned char)value[n - 1])))
		why = "starts or ends with a blank";
	if (!why && (strstr(value, " ;") || strstr(value, "\t;")))
		why = "holds \" ;\", which a config file reads as the start of a comment";
	if (why)
		snprintf(err, errlen, "value of %s.%s %s: it could not be stored in a config file as given",
			 k->section, k->key, why);
	return why == NULL;
}

/* Store value into the field k describes; on failure writes a message to err. */
static bool set_key(config *c, const key_desc *k, const char *value, char *err, size_t errlen)
{
	char *field = (char *)c + k->offset;
	double v;
	switch (k->type) {
	case K_STR:
		if (strlen(value) >= k->size) {
			snprintf(err, errlen, "value of %s.%s is longer than %zu characters", k->section,
				 k->key, k->size - 1);
			return false;
		}
		if (!str_value_ok(value, err, errlen, k))
			return false;
		memcpy(field, value, strlen(value) + 1);
		return true;
	case K_BOOL:
		if (!parse_bool(value, (bool *)field)) {
			snprintf(err, errlen, "%s.%s must be true or false, not '%s'", k->section, k->key, value);
			return false;
		}
		return true;
	case K_ENUM:
		for (int i = 0; k->names[i]; i++) {
			if (strcasecmp(value, k->names[i]) == 0) {
				memcpy(field, &i, sizeof i); /* all enums here are int-sized */
				return true;
			}
		}
		{
			char choices[256] = "";
			for (int i = 0; k->names[i]; i++) {
				strncat(choices, i ? ", " : "", sizeof choices - strlen(choices) - 1);
				strncat(choices, k->names[i], sizeof choices - strlen(choices) - 1);
			}
			snprintf(err, errlen, "%s.%s must be one of %s, not '%s'", k->section, k->key, choices,
				 value);
		}
		return false;
	default:
		break;
	}
	if (!config_parse_number(value, &v) || v < k->min || v > k->max ||
	    (k->type != K_FLOAT && k->type != K_DOUBLE && v != floor(v))) {
		snprintf(err, errlen, "%s.%s must be a%s number in [%g, %g], not '%s'", k->section, k->key,
			 (k->type == K_FLOAT || k->type == K_DOUBLE) ? "" : "n integer", k->min, k->max,
			 value);
		return false;
	}
	switch (k->type) {
	case K_INT: *(int *)field = (int)v; break;
	case K_LONG: *(long *)field = (long)v; break;
	case K_U32: *(uint32_t *)field = (uint32_t)v; break;
	case K_SIZE: *(size_t *)field = (size_t)v; break;
	case K_FLOAT: *(float *)field = (float)v; break;
	case K_DOUBLE: *(double *)field = v; break;
	default: break;
	}
	return true;
}

static layer_spec *find_or_add_layer(config *c, const char *name, char *err, size_t errlen)
{
	int i = config_find_layer(c, name, c->n_layers);
	if (i >= 0)
		return &c->layers[i];
	if (c->n_layers >= CONFIG_MAX_LAYERS) {
		snprintf(err, errlen, "too many layers (at most %d)", CONFIG_MAX_LAYERS);
		return NULL;
	}
	if (strlen(name) == 0 || strlen(name) >= sizeof c->layers[0].name - 6) {
		snprintf(err, errlen, "layer name '%s' must have 1 to %zu characters", name,
			 sizeof c->layers[0].name - 7);
		return NULL;
	}
	for (const char *p = name; *p; p++) {
		if (!isalnum((unsigned char)*p) && *p != '_' && *p != '-' && *p != '.') {
			snprintf(err, errlen, "layer name '%s' may hold only letters, digits, '_', '-' and '.'",
				 name);
			return NULL;
		}
	}
	layer_spec *l = &c->layers[c->n_layers++];
	memset(l, 0, sizeof *l); /* no type yet */
	snprintf(l->name, sizeof l->name, "%s", name);
	return l;
}

int config_find_layer(const config *c, const char *name, int before)
{
	for (int i = 0; i < before && i < c->n_layers; i++)
		if (strcmp(c->layers[i].name, name) == 0)
			return i;
	return -1;
}

/* "inputs = a, b": earlier layers by name ("input": the network's input), each once. */
static bool set_inputs(config *c, layer_spec *l, const char *value, char *err, size_t errlen)
{
	const int self = (int)(l - c->layers);
	char buf[CONFIG_LINE_MAX + 2];
	int n = 0;
	snprintf(buf, sizeof buf, "%s", value);
	for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		while (isspace((unsigned char)*tok))
			tok++;
		for (char *e = tok + strlen(tok); e > tok && isspace((unsigned char)e[-1]);)
			*--e = 0;
		int idx = config_find_layer(c, tok, self);
		if (idx < 0 && strcmp(tok, "input") != 0) {
			snprintf(err, errlen, "[layer.%s] inputs: '%s' is not a layer before it (nor 'input')",
				 l->name, tok);
			return false;
		}
		if (n == LAYER_MAX_IN) {
			snprintf(err, errlen, "[layer.%s] inputs: at most %d", l->name, LAYER_MAX_IN);
			return false;
		}
		for (int k = 0; k < n; k++) {
			if (l->inputs[k] == idx) {
				snprintf(err, errlen, "[layer.%s] inputs: '%s' is named twice", l->name, tok);
				return false;
			}
		}
		l->inputs[n++] = (int16_t)idx;
	}
	if (n == 0) {
		snprintf(err, errlen, "[layer.%s] inputs: name at least one layer", l->name);
		return false;
	}
	l->n_inputs = n;
	return true;
}

bool config_layer_key(config *c, const char *lname, const char *key, const char *value, char *err,
		      size_t errlen)
{
	layer_spec *l = find_or_add_layer(c, lname, err, errlen);
	if (l && strcmp(key, "inputs") == 0)
		return set_inputs(c, l, value, err, errlen);
	return l && layer_spec_set(l, key, value, err, errlen);
}

static bool set_model_key(config *c, const char *key, const char *value, char *err, size_t errlen)
{
	if (strcmp(key, "input") == 0) {
		int ch, h, w;
		char tail;
		if (sscanf(value, "%dx%dx%d%c", &ch, &h, &w, &tail) != 3 || ch < 1 || h < 1 || w < 1 ||
		    ch > 4096 || h > 4096 || w > 4096) {
			snprintf(err, errlen, "model.input must be CxHxW (e.g. 1x28x28), not '%s'", value);
			return false;
		}
		c->in_c = ch;
		c->in_h = h;
		c->in_w = w;
		return true;
	}
	if (strcmp(key, "name") == 0)
		return true; /* informational */
	snprintf(err, errlen, "unknown key '%s' in section [model]", key);
	return false;
}

/* Bytes of the field a (non-string) key stores into. */
static size_t key_field_size(const key_desc *k)
{
	switch (k->type) {
	case K_INT: return sizeof(int);
	case K_LONG: return sizeof(long);
	case K_U32: return sizeof(uint32_t);
	case K_FLOAT: return sizeof(float);
	case K_DOUBLE: return sizeof(double);
	case K_BOOL: return sizeof(bool);
	case K_ENUM: return sizeof(int);
	case K_SIZE: return sizeof(size_t);
	case K_STR: return k->size;
	}
	return 0;
}

/*
 * train.optimizer was set: every optimizer key the user did not set takes the
 * new optimizer's default (Adam's lr is 0.001, Adadelta's 1.0 ...); every key
 * the user set, in the file or with --set, before or after, keeps its value.
 */
static void apply_optimizer_defaults(config *c)
{
	const size_t base = offsetof(config, optim);
	optim_config old = c->optim;
	optim_config_defaults(&c->optim, old.kind);
	for (size_t i = 0; i < N_KEYS; i++) {
		const key_desc *k = &keys[i];
		bool in_optim = k->offset >= base && k->offset < base + sizeof(optim_config);
		if (in_optim && (c->explicit_keys >> i & 1))
			memcpy((char *)c + k->offset, (const char *)&old + (k->offset - base), key_field_size(k));
	}
}

/* One key = value, from a file or from --set. */
static bool apply(config *c, const char *section, const char *key, const char *value, char *err,
		  size_t errlen)
{
	if (strncmp(section, "layer.", 6) == 0)
		return config_layer_key(c, section + 6, key, value, err, errlen);
	if (strncmp(section, "block.", 6) == 0 || strncmp(section, "repeat.", 7) == 0) {
		snprintf(err, errlen, "[%s] is expanded when the file is read: set the layers it made "
			 "(layer.NAME.key=value)", section);
		return false;
	}
	if (strcmp(section, "model") == 0)
		return set_model_key(c, key, value, err, errlen);
	const key_desc *k = find_key(section, key);
	if (!k) {
		bool known_section = false;
		for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
			known_section |= strcmp(keys[i].section, section) == 0;
		if (known_section)
			snprintf(err, errlen, "unknown key '%s' in section [%s]", key, section);
		else
			snprintf(err, errlen, "unknown section [%s] (key '%s')", section, key);
		return false;
	}
	if (!set_key(c, k, value, err, errlen))
		return false;
	c->explicit_keys |= (uint64_t)1 << (k - keys);
	if (k->offset == offsetof(config, optim.kind))
		apply_optimizer_defaults(c);
	return true;
}

static int on_ini_key(void *user, const char *section, const char *name, const char *value)
{
	parse_ctx *p = user;
	if (p->err[0])
		return 1; /* report only the first error */
	int r = config_block_key(&p->blocks, p->c, section, name, value, p->err, sizeof p->err);
	if (r > 0)
		return 1;
	if (r < 0 || !apply(p->c, section, name, value, p->err, sizeof p->err))
		return 0;
	return 1;
}

static int finish_parse(parse_ctx *p, int rc)
{
	if (rc == 0 && !p->err[0])
		return 0;
	if (rc < 0) {
		log_error("cannot read config %s", p->name);
		return EXIT_NOINPUT;
	}
	if (p->err[0])
		log_error("%s:%d: %s", p->name, rc, p->err);
	else
		log_error("%s:%d: syntax error (expected [section] or key = value)", p->name, rc);
	return EXIT_USAGE;
}

/* inih over text, then the [repeat.*] left open at the end; finish_parse's result. */
static int parse_text(parse_ctx *p, const char *text)
{
	int rc = ini_parse_string(text, on_ini_key, p);
	if (rc == 0 && !p->err[0] && !config_block_finish(p->blocks, p->c, p->err, sizeof p->err)) {
		log_error("%s: %s", p->name, p->err);
		config_blocks_free(p->blocks);
		return EXIT_USAGE;
	}
	config_blocks_free(p->blocks);
	p->blocks = NULL;
	return finish_parse(p, rc);
}

int config_load_file(config *c, const char *path)
{
	char *text;
	size_t len;
	int rc = config_read_text(path, &text, &len);
	if (rc)
		return rc;
	if (!(rc = config_check_text(text, len, path))) {
		parse_ctx p = {.c = c, .name = path};
		rc = parse_text(&p, text);
		if (!rc)
			snprintf(c->source, sizeof c->source, "%s", path);
	}
	free(text);
	return rc;
}

int config_load_string(config *c, const char *text, const char *name)
{
	int rc = config_check_text(text, strlen(text), name);
	if (rc)
		return rc;
	parse_ctx p = {.c = c, .name = name};
	return parse_text(&p, text);
}

int config_set(config *c, const char *assignment)
{
	char buf[CONFIG_PATH_MAX + 128];
	char err[512] = "";
	if (strlen(assignment) >= sizeof buf) {
		log_error("--set %.40s...: too long", assignment);
		return EXIT_USAGE;
	}
	snprintf(buf, sizeof buf, "%s", assignment);
	char *eq = strchr(buf, '=');
	char *dot = NULL;
	for (char *q = buf; eq && q < eq; q++)
		if (*q == '.')
			dot = q;
	if (!eq || !dot || dot == buf || dot + 1 == eq) {
		log_error("--set %s: expected section.key=value (e.g. train.lr=0.5)", assignment);
		return EXIT_USAGE;
	}
	*eq = 0;
	*dot = 0;
	if (!apply(c, buf, dot + 1, eq + 1, err, sizeof err)) {
		log_error("--set %s: %s", assignment, err);
		return EXIT_USAGE;
	}
	return 0;
}

int config_validate(const config *c)
{
	if (c->n_layers == 0) {
		log_error("%s: the config defines no layers ([layer.NAME] sections)",
			  c->source[0] ? c->source : "config");
		return EXIT_USAGE;
	}
	for (int i = 0; i < c->n_layers; i++) {
		char err[512];
		if (!layer_spec_check(&c->layers[i], i == c->n_layers - 1, err, sizeof err)) {
			log_error("%s", err);
			return EXIT_USAGE;
		}
	}
	if (c->optim.nesterov && c->optim.momentum <= 0) {
		log_error("train.nesterov needs train.momentum > 0");
		return EXIT_USAGE;
	}
	if (c->optim.schedule == SCHED_STEP && c->optim.step_every < 1) {
		log_error("train.schedule = step needs train.step_every >= 1");
		return EXIT_USAGE;
	}
	if (c->epochs < 1 && c->max_steps < 1) {
		log_error("train.epochs must be at least 1");
		return EXIT_USAGE;
	}
	return 0;
}

/* Append to a growing string; returns false on allocation failure. */
typedef struct sbuf {
	char *s;
	size_t len, cap;
} sbuf;

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...)
{
	va_list ap;
	for (;;) {
		if (!b->s)
			return;
		va_start(ap, fmt);
		int n = vsnprintf(b->s + b->len, b->cap - b->len, fmt, ap);
		va_end(ap);
		if (n < 0)
			return;
		if ((size_t)n < b->cap - b->len) {
			b->len += (size_t)n;
			return;
		}
		size_t cap = b->cap * 2 + (size_t)n;
		char *s = realloc(b->s, cap);
		if (!s) {
			free(b->s);
			b->s = NULL;
			return;
		}
		b->s = s;
		b->cap = cap;
	}
}

/* Keys added after checkpoints of version 1: dumped only when set to something other than
 * their zero default, so that the resolved config (kept in checkpoints) of older configs is
 * unchanged. */
static bool dumped_only_when_set(const key_desc *k)
{
	return strcmp(k->section, "train") == 0 &&
	       (strcmp(k->key, "wd_skip") == 0 || strcmp(k->key, "warmup_epochs") == 0);
}

static void dump_key(sbuf *b, const config *c, const key_desc *k)
{
	const char *field = (const char *)c + k->offset;
	if (dumped_only_when_set(k) && (k->type == K_ENUM ? *(const int *)field == 0 : *(const float *)field == 0.0f))
		return;
	switch (k->type) {
	case K_STR:
		if (strlen(k->key) + 3 + strlen(field) > CONFIG_LINE_MAX) /* a file cannot hold it */
			sb_printf(b, "# %s: longer than a config line may be, not stored (give it with --set)\n",
				  k->key);
		else
			sb_printf(b, "%s = %s\n", k->key, field);
		break;
	case K_BOOL: sb_printf(b, "%s = %s\n", k->key, *(const bool *)field ? "true" : "false"); break;
	case K_ENUM: sb_printf(b, "%s = %s\n", k->key, k->names[*(const int *)field]); break;
	case K_INT: sb_printf(b, "%s = %d\n", k->key, *(const int *)field); break;
	case K_LONG: sb_printf(b, "%s = %ld\n", k->key, *(const long *)field); break;
	case K_U32: sb_printf(b, "%s = %u\n", k->key, *(const uint32_t *)field); break;
	case K_SIZE: sb_printf(b, "%s = %zu\n", k->key, *(const size_t *)field); break;
	case K_FLOAT: sb_printf(b, "%s = %.9g\n", k->key, (double)*(const float *)field); break;
	case K_DOUBLE: sb_printf(b, "%s = %.17g\n", k->key, *(const double *)field); break;
	}
}

char *config_dump(const config *c)
{
	sbuf b = {malloc(4096), 0, 4096};
	if (!b.s)
		return NULL;
	b.s[0] = 0;
	sb_printf(&b, "# resolved spottrain config (from %s)\n[model]\ninput = %dx%dx%d\n",
		  c->source[0] ? c->source : "defaults", c->in_c, c->in_h, c->in_w);
	for (int i = 0; i < c->n_layers; i++) {
		const layer_spec *l = &c->layers[i];
		char keys_text[1024];
		layer_spec_dump(l, keys_text, sizeof keys_text);
		sb_printf(&b, "\n[layer.%s]\n%s", l->name, keys_text);
		for (int k = 0; k < l->n_inputs; k++)
			sb_printf(&b, "%s%s", k ? ", " : "inputs = ",
				  l->inputs[k] < 0 ? "input" : c->layers[l->inputs[k]].name);
		if (l->n_inputs)
			sb_printf(&b, "\n");
	}
	const char *section = "";
	for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
		if (strcmp(section, keys[i].section) != 0) {
			section = keys[i].section;
			sb_printf(&b, "\n[%s]\n", section);
		}
		dump_key(&b, c, &keys[i]);
	}
	return b.s;
}

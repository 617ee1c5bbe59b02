/*
 * config_block.c - templates of layers ([block.T.NAME]) and their repeats
 * ([repeat.R]: block = T, count = N, VAR = value, VAR.K = value), expanded
 * into ordinary [layer.R.K.NAME] layers in file order. The syntax is in
 * config.h's header comment; an example is configs/resnet20.ini.
 */
#include "config_block.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NAME_MAX_CHARS 48
#define VALUE_MAX (CONFIG_LINE_MAX + 2)
#define MAX_REPEAT 64
#define MAX_VARS 32

/* One "key = value" of a template layer, as written. */
typedef struct tmpl_entry {
	char tmpl[NAME_MAX_CHARS];
	char layer[NAME_MAX_CHARS];
	char key[64];
	char value[VALUE_MAX];
} tmpl_entry;

/* One variable of the open [repeat.*]: instance -1 is every instance's value. */
typedef struct repeat_var {
	char name[NAME_MAX_CHARS];
	int instance;
	char value[VALUE_MAX];
} repeat_var;

struct config_blocks {
	tmpl_entry *entries;
	int n_entries, cap;
	bool open;                       /* a [repeat.*] is being read */
	char section[NAME_MAX_CHARS + 8]; /* its section, "repeat.R" */
	char name[NAME_MAX_CHARS];       /* R */
	char block[NAME_MAX_CHARS];      /* T */
	int count;
	int n_vars;
	repeat_var vars[MAX_VARS];
};

void config_blocks_free(config_blocks *b)
{
	if (!b)
		return;
	free(b->entries);
	free(b);
}

static bool copy_name(char *dst, const char *src, size_t len)
{
	return (size_t)snprintf(dst, NAME_MAX_CHARS, "%.*s", (int)len, src) == len && len < NAME_MAX_CHARS;
}

/* [block.T.NAME] key = value: kept as written. */
static int block_key(config_blocks *b, const char *section, const char *key, const char *value, char *err,
		     size_t errlen)
{
	const char *t = section + 6, *dot = strchr(t, '.');
	if (!dot || dot == t || !dot[1]) {
		snprintf(err, errlen, "[%s]: a template layer is written [block.TEMPLATE.LAYER]", section);
		return -1;
	}
	if (b->n_entries == b->cap) {
		int cap = b->cap ? 2 * b->cap : 64;
		tmpl_entry *e = realloc(b->entries, (size_t)cap * sizeof *e);
		if (!e) {
			snprintf(err, errlen, "[%s]: out of memory", section);
			return -1;
		}
		b->entries = e;
		b->cap = cap;
	}
	tmpl_entry *e = &b->entries[b->n_entries];
	if (!copy_name(e->tmpl, t, (size_t)(dot - t)) || !copy_name(e->layer, dot + 1, strlen(dot + 1)) ||
	    strlen(key) >= sizeof e->key || strlen(value) >= sizeof e->value) {
		snprintf(err, errlen, "[%s] %s: a name or value is too long", section, key);
		return -1;
	}
	snprintf(e->key, sizeof e->key, "%s", key);
	snprintf(e->value, sizeof e->value, "%s", value);
	b->n_entries++;
	return 1;
}

/* A variable name: a letter or '_', then letters, digits and '_'. */
static bool var_name_ok(const char *s, size_t len)
{
	if (len == 0 || len >= NAME_MAX_CHARS || !(isalpha((unsigned char)s[0]) || s[0] == '_'))
		return false;
	for (size_t i = 1; i < len; i++)
		if (!isalnum((unsigned char)s[i]) && s[i] != '_')
			return false;
	return true;
}

/* [repeat.R] key = value: block, count, or a variable (VAR or VAR.K). */
static int repeat_key(config_blocks *b, const char *key, const char *value, char *err, size_t errlen)
{
	if (strcmp(key, "block") == 0) {
		if (!copy_name(b->block, value, strlen(value))) {
			snprintf(err, errlen, "[%s] block: name too long", b->section);
			return -1;
		}
		return 1;
	}
	if (strcmp(key, "count") == 0) {
		char *end;
		long n = strtol(value, &end, 10);
		if (end == value || *end || n < 1 || n > MAX_REPEAT) {
			snprintf(err, errlen, "[%s] count must be an integer in [1, %d], not '%s'", b->section,
				 MAX_REPEAT, value);
			return -1;
		}
		b->count = (int)n;
		return 1;
	}
	const char *dot = strchr(key, '.');
	size_t len = dot ? (size_t)(dot - key) : strlen(key);
	int instance = -1;
	if (dot) {
		char *end;
		long k = strtol(dot + 1, &end, 10);
		if (end == dot + 1 || *end || k < 0 || k >= MAX_REPEAT) {
			snprintf(err, errlen, "[%s] %s: an instance's value is written VAR.K, K in [0, %d)",
				 b->section, key, MAX_REPEAT);
			return -1;
		}
		instance = (int)k;
	}
	if (!var_name_ok(key, len) || b->n_vars == MAX_VARS || strlen(value) >= VALUE_MAX) {
		snprintf(err, errlen, "[%s] %s: not a variable name, too many variables (%d) or too long a "
			 "value", b->section, key, MAX_VARS);
		return -1;
	}
	repeat_var *v = &b->vars[b->n_vars++];
	snprintf(v->name, sizeof v->name, "%.*s", (int)len, key);
	v->instance = instance;
	snprintf(v->value, sizeof v->value, "%s", value);
	return 1;
}

/* The value of ${name} in instance k, NULL if the repeat does not set it. */
static const char *var_value(const config_blocks *b, const char *name, size_t len, int k)
{
	const char *any = NULL;
	for (int i = 0; i < b->n_vars; i++) {
		const repeat_var *v = &b->vars[i];
		if (strlen(v->name) != len || strncmp(v->name, name, len) != 0)
			continue;
		if (v->instance == k)
			return v->value;
		if (v->instance < 0)
			any = v->value;
	}
	return any;
}

/* value with every ${VAR} replaced by instance k's value into out; false with a message. */
static bool substitute(const config_blocks *b, const tmpl_entry *e, int k, char *out, char *err, size_t errlen)
{
	size_t n = 0;
	for (const char *s = e->value; *s;) {
		const char *v = NULL, *close = NULL;
		size_t vlen = 1;
		if (s[0] == '$' && s[1] == '{' && (close = strchr(s + 2, '}'))) {
			v = var_value(b, s + 2, (size_t)(close - s - 2), k);
			if (!v) {
				snprintf(err, errlen, "[block.%s.%s] %s: ${%.*s} is not set by [%s] (instance %d)",
					 e->tmpl, e->layer, e->key, (int)(close - s - 2), s + 2, b->section, k);
				return false;
			}
			vlen = strlen(v);
		} else {
			v = s;
		}
		if (n + vlen >= VALUE_MAX) {
			snprintf(err, errlen, "[block.%s.%s] %s: the value grows too long", e->tmpl, e->layer, e->key);
			return false;
		}
		memcpy(out + n, v, vlen);
		n += vlen;
		s = close ? close + 1 : s + 1;
	}
	out[n] = 0;
	return true;
}

/* "true"/"yes"/"1" or "false"/"no"/"0" into *on. */
static bool parse_bool(const char *s, bool *on)
{
	static const char *const yes[] = {"true", "yes", "on", "1"}, *const no[] = {"false", "no", "off", "0"};
	for (int i = 0; i < 4; i++) {
		if (strcmp(s, yes[i]) == 0 || strcmp(s, no[i]) == 0) {
			*on = strcmp(s, yes[i]) == 0;
			return true;
		}
	}
	return false;
}

/* Whether template layer `layer` is in instance k ("when"); -1 with a message on error. */
static int included(const config_blocks *b, const char *layer, int k, char *err, size_t errlen)
{
	bool on = true;
	for (int i = 0; i < b->n_entries; i++) {
		const tmpl_entry *e = &b->entries[i];
		if (strcmp(e->tmpl, b->block) || strcmp(e->layer, layer) || strcmp(e->key, "when"))
			continue;
		char v[VALUE_MAX];
		if (!substitute(b, e, k, v, err, errlen))
			return -1;
		if (!parse_bool(v, &on)) {
			snprintf(err, errlen, "[block.%s.%s] when must be true or false, not '%s'", e->tmpl,
				 e->layer, v);
			return -1;
		}
	}
	return on;
}

/* Instance k's names in an inputs list: template layers become R.k.NAME, "@in" the block's input. */
static bool rewrite_inputs(const config_blocks *b, const tmpl_entry *e, int k, const char *block_in,
			   const char *value, char *out, char *err, size_t errlen)
{
	char buf[VALUE_MAX];
	size_t n = 0;
	snprintf(buf, sizeof buf, "%s", value);
	out[0] = 0;
	for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		while (isspace((unsigned char)*tok))
			tok++;
		for (char *end = tok + strlen(tok); end > tok && isspace((unsigned char)end[-1]);)
			*--end = 0;
		char name[2 * NAME_MAX_CHARS + 16];
		bool local = false;
		for (int i = 0; i < b->n_entries && !local; i++)
			local = strcmp(b->entries[i].tmpl, b->block) == 0 && strcmp(b->entries[i].layer, tok) == 0;
		if (strcmp(tok, "@in") == 0)
			snprintf(name, sizeof name, "%s", block_in);
		else if (local)
			snprintf(name, sizeof name, "%s.%d.%s", b->name, k, tok);
		else
			snprintf(name, sizeof name, "%s", tok);
		int w = snprintf(out + n, VALUE_MAX - n, "%s%s", n ? ", " : "", name);
		if (w < 0 || (size_t)w >= VALUE_MAX - n) {
			snprintf(err, errlen, "[block.%s.%s] inputs: too long", e->tmpl, e->layer);
			return false;
		}
		n += (size_t)w;
	}
	return true;
}

/* The layers of instance k of the open repeat, appended to c. */
static bool expand_instance(config_blocks *b, config *c, int k, char *err, size_t errlen)
{
	char block_in[NAME_MAX_CHARS];
	snprintf(block_in, sizeof block_in, "%s", c->n_layers ? c->layers[c->n_layers - 1].name : "input");
	for (int i = 0; i < b->n_entries; i++) {
		const tmpl_entry *e = &b->entries[i];
		if (strcmp(e->tmpl, b->block) || strcmp(e->key, "when") == 0)
			continue;
		int on = included(b, e->layer, k, err, errlen);
		if (on <= 0) {
			if (on < 0)
				return false;
			continue;
		}
		char name[2 * NAME_MAX_CHARS + 16], v[VALUE_MAX], r[VALUE_MAX];
		if (snprintf(name, sizeof name, "%s.%d.%s", b->name, k, e->layer) >= NAME_MAX_CHARS - 6) {
			snprintf(err, errlen, "[%s] makes layer %s.%d.%s: names have at most %d characters",
				 b->section, b->name, k, e->layer, NAME_MAX_CHARS - 7);
			return false;
		}
		bool first_key = true;
		for (int j = 0; j < i; j++)
			first_key &= strcmp(b->entries[j].tmpl, b->block) || strcmp(b->entries[j].layer, e->layer);
		if (first_key && config_find_layer(c, name, c->n_layers) >= 0) {
			snprintf(err, errlen, "[%s] makes layer %s, which exists already", b->section, name);
			return false;
		}
		if (!substitute(b, e, k, v, err, errlen))
			return false;
		if (strcmp(e->key, "inputs") == 0 && !rewrite_inputs(b, e, k, block_in, v, r, err, errlen))
			return false;
		if (!config_layer_key(c, name, e->key, strcmp(e->key, "inputs") == 0 ? r : v, err, errlen))
			return false;
	}
	return true;
}

/* Expand the open [repeat.*] (if any) into c and close it. */
static bool flush(config_blocks *b, config *c, char *err, size_t errlen)
{
	if (!b || !b->open)
		return true;
	b->open = false;
	bool known = false;
	for (int i = 0; i < b->n_entries && !known; i++)
		known = strcmp(b->entries[i].tmpl, b->block) == 0;
	if (!known || b->count < 1) {
		snprintf(err, errlen, "[%s] needs block = a template written before it ([block.%s.LAYER]) and "
			 "count = N", b->section, b->block[0] ? b->block : "T");
		return false;
	}
	for (int k = 0; k < b->count; k++)
		if (!expand_instance(b, c, k, err, errlen))
			return false;
	return true;
}

int config_block_key(config_blocks **bp, config *c, const char *section, const char *key, const char *value,
		     char *err, size_t errlen)
{
	bool is_block = strncmp(section, "block.", 6) == 0, is_repeat = strncmp(section, "repeat.", 7) == 0;
	config_blocks *b = *bp;
	if (b && b->open && strcmp(section, b->section) != 0 && !flush(b, c, err, errlen))
		return -1;
	if (!is_block && !is_repeat)
		return 0;
	if (!b && !(b = *bp = calloc(1, sizeof *b))) {
		snprintf(err, errlen, "[%s]: out of memory", section);
		return -1;
	}
	if (is_block)
		return block_key(b, section, key, value, err, errlen);
	if (!b->open) {
		if (!section[7] || !copy_name(b->name, section + 7, strlen(section + 7))) {
			snprintf(err, errlen, "[%s]: the repeat's name must have 1 to %d characters", section,
				 NAME_MAX_CHARS - 1);
			return -1;
		}
		snprintf(b->section, sizeof b->section, "%s", section);
		b->open = true;
		b->block[0] = 0;
		b->count = 0;
		b->n_vars = 0;
	}
	return repeat_key(b, key, value, err, errlen);
}

bool config_block_finish(config_blocks *b, config *c, char *err, size_t errlen)
{
	return flush(b, c, err, errlen);
}

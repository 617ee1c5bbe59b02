/*
 * test_config_keys.c - explicit keys win: a key the user sets, in the file or
 * with --set, is never overwritten by the defaults another key brings along,
 * whatever the order. The only keys with dependent defaults are the optimizer's
 * hyper-parameters (train.optimizer = adam brings lr = 0.001 ...); each of them
 * is checked in every order, for every optimizer, through the file and --set.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "config.h"
#include "contract.h"
#include "optim.h"

static const char layers[] = "[model]\ninput = 1x28x28\n"
			     "[layer.flat]\ntype = flatten\n"
			     "[layer.fc]\ntype = dense\nunits = 10\n"
			     "[layer.loss]\ntype = softmax_xent\n";

/* An optimizer hyper-parameter: its key, a value no optimizer has as default, and its field. */
typedef struct dep_key {
	const char *key;
	const char *value;
	double expect;
	size_t offset; /* into optim_config; float fields unless is_long */
	int is_long;
} dep_key;

#define F(f) offsetof(optim_config, f)
static const dep_key dep_keys[] = {
	{"lr", "0.5", 0.5, F(lr), 0},
	{"momentum", "0.7", 0.7, F(momentum), 0},
	{"weight_decay", "0.25", 0.25, F(weight_decay), 0},
	{"beta1", "0.8", 0.8, F(beta1), 0},
	{"beta2", "0.75", 0.75, F(beta2), 0},
	{"eps", "0.125", 0.125, F(eps), 0},
	{"rho", "0.5", 0.5, F(rho), 0},
	{"gamma", "0.375", 0.375, F(gamma), 0},
	{"min_lr", "0.0625", 0.0625, F(min_lr), 0},
	{"warmup_steps", "17", 17, F(warmup_steps), 1},
	{"step_every", "23", 23, F(step_every), 1},
};
#undef F
#define N_DEP (sizeof dep_keys / sizeof dep_keys[0])

static const char *const optimizers[] = {"sgd", "adam", "adamw", "adadelta"};

/* The value as the field stores it (a float field holds 0.7 as 0.699999988). */
static double want(const dep_key *k)
{
	return k->is_long ? k->expect : (double)(float)k->expect;
}

static double field(const config *c, const dep_key *k)
{
	const char *p = (const char *)&c->optim + k->offset;
	return k->is_long ? (double)*(const long *)p : (double)*(const float *)p;
}

static void load(config *c, const char *train_section)
{
	char text[2048];
	snprintf(text, sizeof text, "%s[train]\n%s", layers, train_section);
	config_defaults(c);
	assert_int_equal(config_load_string(c, text, "keys.ini"), 0);
}

/* key before optimizer, key after optimizer, in one file: the key's value stays. */
static void test_file_keys_win_over_optimizer_defaults_in_any_order(void **state)
{
	(void)state;
	for (size_t o = 0; o < 4; o++) {
		for (size_t i = 0; i < N_DEP; i++) {
			const dep_key *k = &dep_keys[i];
			char text[256];
			config c;
			snprintf(text, sizeof text, "%s = %s\noptimizer = %s\n", k->key, k->value, optimizers[o]);
			load(&c, text);
			assert_int_equal(c.optim.kind, (int)o);
			if (field(&c, k) != want(k))
				fail_msg("%s before optimizer = %s: got %g, want %g", k->key, optimizers[o],
					 field(&c, k), want(k));
			snprintf(text, sizeof text, "optimizer = %s\n%s = %s\n", optimizers[o], k->key, k->value);
			load(&c, text);
			assert_true(field(&c, k) == want(k));
		}
	}
}

/* --set in either order, and --set of the optimizer over a file that set the key. */
static void test_set_keys_win_over_optimizer_defaults_in_any_order(void **state)
{
	(void)state;
	for (size_t o = 0; o < 4; o++) {
		for (size_t i = 0; i < N_DEP; i++) {
			const dep_key *k = &dep_keys[i];
			char kv[128], opt[64], text[128];
			snprintf(kv, sizeof kv, "train.%s=%s", k->key, k->value);
			snprintf(opt, sizeof opt, "train.optimizer=%s", optimizers[o]);
			config c;
			load(&c, "");
			assert_int_equal(config_set(&c, kv), 0);
			assert_int_equal(config_set(&c, opt), 0);
			if (field(&c, k) != want(k))
				fail_msg("--set %s --set %s: got %g, want %g", kv, opt, field(&c, k), want(k));
			load(&c, "");
			assert_int_equal(config_set(&c, opt), 0);
			assert_int_equal(config_set(&c, kv), 0);
			assert_true(field(&c, k) == want(k));
			snprintf(text, sizeof text, "%s = %s\n", k->key, k->value);
			load(&c, text);
			assert_int_equal(config_set(&c, opt), 0);
			assert_true(field(&c, k) == want(k));
		}
	}
}

/* The trap, spelled out: --set train.lr=0.5 --set train.optimizer=adam trains with 0.5. */
static void test_lr_then_adam_keeps_lr(void **state)
{
	(void)state;
	config c;
	load(&c, "optimizer = adadelta\n");
	assert_int_equal(config_set(&c, "train.lr=0.5"), 0);
	assert_int_equal(config_set(&c, "train.optimizer=adam"), 0);
	assert_int_equal(config_validate(&c), 0);
	assert_true(c.optim.lr == 0.5f);
	assert_true(c.optim.beta2 == 0.999f); /* not set: Adam's default */
}

/* Keys nobody set follow the optimizer chosen last. */
static void test_unset_keys_take_the_last_optimizers_defaults(void **state)
{
	(void)state;
	for (size_t o = 0; o < 4; o++) {
		char text[128];
		config c;
		optim_config want;
		optim_config_defaults(&want, (optim_kind)o);
		/* (a file gives a key once: the second optimizer comes from --set) */
		load(&c, "optimizer = adam\n");
		snprintf(text, sizeof text, "train.optimizer=%s", optimizers[o]);
		assert_int_equal(config_set(&c, text), 0);
		for (size_t i = 0; i < N_DEP; i++) {
			const char *p = (const char *)&want + dep_keys[i].offset;
			double w = dep_keys[i].is_long ? (double)*(const long *)p : (double)*(const float *)p;
			if (field(&c, &dep_keys[i]) != w)
				fail_msg("optimizer = %s: %s is %g, its default is %g", optimizers[o], dep_keys[i].key,
					 field(&c, &dep_keys[i]), w);
		}
	}
	/* a key set once stays through later optimizer changes */
	config c;
	load(&c, "lr = 0.5\noptimizer = sgd\n");
	assert_int_equal(config_set(&c, "train.optimizer=adam"), 0);
	assert_true(c.optim.lr == 0.5f);
	assert_true(c.optim.beta1 == 0.9f);
}

/* The resolved dump of a config parses back to the same optimizer settings. */
static void test_dump_keeps_explicit_values(void **state)
{
	(void)state;
	config c, d;
	load(&c, "lr = 0.5\noptimizer = adam\n");
	char *text = config_dump(&c);
	assert_non_null(text);
	config_defaults(&d);
	assert_int_equal(config_load_string(&d, text, "dump"), 0);
	free(text);
	assert_true(d.optim.lr == 0.5f);
	assert_int_equal(d.optim.kind, OPT_ADAM);
	assert_true(d.optim.beta1 == c.optim.beta1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_file_keys_win_over_optimizer_defaults_in_any_order),
		cmocka_unit_test(test_set_keys_win_over_optimizer_defaults_in_any_order),
		cmocka_unit_test(test_lr_then_adam_keeps_lr),
		cmocka_unit_test(test_unset_keys_take_the_last_optimizers_defaults),
		cmocka_unit_test(test_dump_keeps_explicit_values),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

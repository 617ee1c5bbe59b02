/*
 * config_args.c - the command line's share of the config: --set overrides
 * and the flags of train, eval and bench applied on top of a loaded config.
 */
#include <stdio.h>

#include "config.h"

int config_apply_args(const run_args *a, config *c)
{
	int rc;
	for (int i = 0; i < a->n_sets; i++)
		if ((rc = config_set(c, a->sets[i])))
			return rc;
	if (a->data_dir)
		snprintf(c->data_dir, sizeof c->data_dir, "%s", a->data_dir);
	if (a->run_dir)
		snprintf(c->run_dir, sizeof c->run_dir, "%s", a->run_dir);
	if (a->epochs > 0)
		c->epochs = (int)a->epochs;
	if (a->max_steps > 0)
		c->max_steps = a->max_steps;
	if (a->threads >= 0)
		c->threads = a->threads;
	if (a->seed >= 0)
		c->seed = (uint32_t)a->seed;
	if (a->device_given)
		c->device = a->device;
	return config_validate(c);
}

int config_load_run(const run_args *a, config *c)
{
	config_defaults(c);
	int rc;
	if (a->config_path && (rc = config_load_file(c, a->config_path)))
		return rc;
	return config_apply_args(a, c);
}

/*
 * advice.h - how often to checkpoint: the Young/Daly first-order model.
 *
 *   delta  checkpoint write time (s): how long training waits for a checkpoint
 *   M      mean time between interruptions of the world (s) = 1 / (rate x nodes),
 *          rate = interruptions per node-hour (each node fails independently)
 *   R      restart cost per interruption (s): fault -> first step again (optional)
 *   T      checkpoint interval (s of training between checkpoints)
 *
 *   waste(T)   = delta/T           (time spent writing checkpoints)
 *              + T/(2M)            (work redone: on average half an interval per interruption)
 *              + R/M               (restarts; independent of T)
 *   goodput(T) = 1 - waste(T)      (clamped to [0, 1])
 *   T*         = sqrt(2 delta M)   (Young 1974; minimises waste(T); Daly 2006 is the same to first order)
 *   waste(T*)  = sqrt(2 delta / M) + R/M
 *
 * The model holds for delta << M (then T* << M); advice_compute says when it
 * does not. An interruption that comes with a notice the workers can act on
 * (an agreed stop) loses no work, so the T/(2M) term is a bound from above:
 * with notices in time, rare checkpoints cost little.
 */
#ifndef SPOTLAUNCH_ADVICE_H
#define SPOTLAUNCH_ADVICE_H

#include <stdbool.h>
#include <stdio.h>

#include <cjson/cJSON.h>

typedef struct advice_in {
	double write_s;       /* delta > 0 */
	double mtbf_s;        /* M > 0: the world's mean time between interruptions */
	double restart_s;     /* R; < 0: unknown (left out of the waste) */
	double step_s;        /* seconds per training step; <= 0: unknown (no intervals in steps) */
	long interval_steps;  /* the configured interval in steps; <= 0: none given */
	double rate_per_node_hour; /* where M came from, for the text; <= 0: M was given */
	double nodes;              /* the same; <= 0 unknown */
} advice_in;

typedef struct advice {
	double opt_interval_s;    /* T* = sqrt(2 delta M) */
	long opt_interval_steps;  /* round(T* / step_s), at least 1; -1 without a step time */
	double opt_waste_ckpt;    /* delta / T* */
	double opt_waste_rework;  /* T* / (2M) */
	double waste_restart;     /* R / M (0 when R is unknown) */
	double opt_goodput;       /* 1 - the three above, clamped */
	bool have_current;        /* interval_steps and step_s given */
	double cur_interval_s;    /* interval_steps x step_s */
	double cur_waste_ckpt, cur_waste_rework, cur_goodput;
	bool model_holds;         /* delta < M / 10: the first-order model is a good approximation */
} advice;

/* waste(T) as above (R < 0: no restart term); T, delta, M > 0. */
double advice_waste(double interval_s, double write_s, double mtbf_s, double restart_s);

/* Fills out from in (write_s, mtbf_s > 0; checked by the callers). */
void advice_compute(const advice_in *in, advice *out);

void advice_print_text(const advice_in *in, const advice *a, FILE *f);
cJSON *advice_to_json(const advice_in *in, const advice *a);

/* `spotlaunch advise ...`: the command (argv[0] is "advise"). Returns the exit code. */
int advise_main(int argc, char **argv);

#endif

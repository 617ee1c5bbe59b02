/*
 * optim.h - optimizers over flat buffers (DESIGN.md invariant 2) and
 * learning-rate schedules. One call updates every parameter; each optimizer
 * moment is one flat buffer of the same length as the parameters.
 */
#ifndef SPOTTRAIN_OPTIM_H
#define SPOTTRAIN_OPTIM_H

#include <stdbool.h>
#include <stddef.h>

typedef enum { OPT_SGD = 0, OPT_ADAM, OPT_ADAMW, OPT_ADADELTA } optim_kind;
typedef enum { SCHED_CONSTANT = 0, SCHED_STEP, SCHED_COSINE, SCHED_ONECYCLE } sched_kind;

/* train.wd_skip: which parameters weight decay leaves alone (bits). */
enum { OPTIM_WD_SKIP_BN = 1, OPTIM_WD_SKIP_BIAS = 2 };

typedef struct optim_config {
	optim_kind kind;
	float lr;           /* base learning rate */
	float momentum;     /* SGD */
	bool nesterov;      /* SGD: Nesterov momentum (needs momentum > 0) */
	float weight_decay; /* SGD, Adam: L2 added to the gradient; AdamW: decoupled */
	int wd_skip;        /* OPTIM_WD_SKIP_* bits: no weight decay for BatchNorm / bias parameters */
	float beta1, beta2; /* Adam, AdamW */
	float eps;          /* Adam, AdamW, Adadelta */
	float rho;          /* Adadelta */
	/* schedule */
	sched_kind schedule;
	long warmup_steps;  /* linear warm-up from 0 to lr over these steps (0: none); onecycle: its rise */
	float warmup_epochs; /* > 0: the warm-up in epochs, turned into warmup_steps once the run
			      * knows its steps per epoch (optim_apply_warmup_epochs) */
	long step_every;    /* SCHED_STEP: multiply by gamma every this many steps */
	float gamma;        /* SCHED_STEP factor */
	float min_lr;       /* SCHED_COSINE floor */
} optim_config;

/* Fill in the defaults of each kind (PyTorch's, Adadelta as Keras' mnist_cnn: lr 1, rho 0.95, eps 1e-7). */
void optim_config_defaults(optim_config *c, optim_kind kind);

/* Name of a kind ("sgd", "adam", "adamw", "adadelta") and the reverse (-1 if unknown). */
const char *optim_kind_name(optim_kind k);
int optim_kind_parse(const char *s);
const char *sched_kind_name(sched_kind k);
int sched_kind_parse(const char *s);

/* Number of state buffers the optimizer keeps (SGD: 1 with momentum else 0; Adam(W): 2; Adadelta: 2). */
int optim_n_states(const optim_config *c);
/* Name of state buffer i, as used in checkpoints: "momentum_buffer", "exp_avg", "exp_avg_sq",
 * "square_avg", "acc_delta" (PyTorch's names). */
const char *optim_state_name(const optim_config *c, int i);

/* warmup_epochs > 0: warmup_steps = round(warmup_epochs * steps_per_epoch), at least 1. */
void optim_apply_warmup_epochs(optim_config *c, long steps_per_epoch);

/* Learning rate at 1-based optimizer step t of total_steps. */
float optim_lr_at(const optim_config *c, long t, long total_steps);

/*
 * One optimizer step at 1-based step t (Adam's bias correction uses t) with learning
 * rate lr over n elements. states has optim_n_states(c) buffers of n floats, zeroed
 * before the first step. Deterministic and elementwise: the result does not depend on
 * threads. Semantics match torch.optim (SGD, Adam, AdamW, Adadelta).
 */
void optim_step(const optim_config *c, float lr, long t, size_t n, float *params, const float *grads,
		float *const *states);

#endif

/*
 * optim_steps.h - the optimizers' step loops, included by optim.c once per instruction
 * set: OPT_FN(name) names this copy's functions, OPT_TARGET is its target attribute
 * (empty for the baseline). Every element runs the same float operations in the same
 * order in every copy (the *_elem functions of optim.c; -ffp-contract=off everywhere),
 * and vector sqrt and division are correctly rounded like scalar ones, so every copy
 * gives the same bits; only the vector width differs.
 */
OPT_TARGET static void OPT_FN(sgd_step)(const optim_config *c, float lr, size_t n, float *restrict p,
		     const float *restrict g, float *restrict b)
{
	const float wd = c->weight_decay, mu = c->momentum, neg_lr = -lr;
	const enum sgd_mode mode = !b ? SGD_PLAIN : c->nesterov ? SGD_NESTEROV : SGD_MOMENTUM;

	if (wd != 0.0f) {
		switch (mode) {
		case SGD_PLAIN:
#pragma omp parallel for simd schedule(static) if (parallel : n > OPTIM_PAR_MIN)
			for (size_t i = 0; i < n; i++)
				sgd_elem(i, p, g, b, wd, mu, neg_lr, true, SGD_PLAIN);
			return;
		case SGD_MOMENTUM:
#pragma omp parallel for simd schedule(static) if (parallel : n > OPTIM_PAR_MIN)
			for (size_t i = 0; i < n; i++)
				sgd_elem(i, p, g, b, wd, mu, neg_lr, true, SGD_MOMENTUM);
			return;
		case SGD_NESTEROV:
#pragma omp parallel for simd schedule(static) if (parallel : n > OPTIM_PAR_MIN)
			for (size_t i = 0; i < n; i++)
				sgd_elem(i, p, g, b, wd, mu, neg_lr, true, SGD_NESTEROV);
			return;
		}
	}
	switch (mode) {
	case SGD_PLAIN:
#pragma omp parallel for simd schedule(static) if (parallel : n > OPTIM_PAR_MIN)
		for (size_t i = 0; i < n; i++)
			sgd_elem(i, p, g, b, wd, mu, neg_lr, false, SGD_PLAIN);
		return;
	case SGD_MOMENTUM:
#pragma omp parallel for simd schedule(static) if (parallel : n > OPTIM_PAR_MIN)
		for (size_t i = 0; i < n; i++)
			sgd_elem(i, p, g, b, wd, mu, neg_lr, false, SGD_MOMENTUM);
		return;
	case SGD_NESTEROV:
#pragma omp parallel for simd schedule(static) if (parallel : n > OPTIM_PAR_MIN)
		for (size_t i = 0; i < n; i++)
			sgd_elem(i, p, g, b, wd, mu, neg_lr, false, SGD_NESTEROV);
		return;
	}
}

OPT_TARGET static void OPT_FN(adam_step)(const optim_config *c, float lr, long t, size_t n, float *restrict p,
		      const float *restrict g, float *restrict m, float *restrict v)
{
	const bool decoupled = c->kind == OPT_ADAMW;
	const double bc1 = 1.0 - kern_powi((double)c->beta1, t);
	const double bc2 = 1.0 - kern_powi((double)c->beta2, t);
	const struct adam_k k = {
		/* p * 1.0f is exact, so plain Adam shares AdamW's loop. */
		.keep = decoupled ? (float)(1.0 - (double)lr * (double)c->weight_decay) : 1.0f,
		.wd = c->weight_decay,
		.b1 = c->beta1,
		.one_b1 = (float)(1.0 - (double)c->beta1),
		.b2 = c->beta2,
		.one_b2 = (float)(1.0 - (double)c->beta2),
		.eps = c->eps,
		.neg_step = (float)(-(double)lr / bc1),
		.bc2_sqrt = (float)sqrt(bc2),
	};

	if (!decoupled && k.wd != 0.0f) {
#pragma omp parallel for simd schedule(static) if (parallel : n > OPTIM_PAR_MIN)
		for (size_t i = 0; i < n; i++)
			adam_elem(i, p, g, m, v, k, true);
	} else {
#pragma omp parallel for simd schedule(static) if (parallel : n > OPTIM_PAR_MIN)
		for (size_t i = 0; i < n; i++)
			adam_elem(i, p, g, m, v, k, false);
	}
}

OPT_TARGET static void OPT_FN(adadelta_step)(const optim_config *c, float lr, size_t n, float *restrict p,
			  const float *restrict g, float *restrict sq, float *restrict acc)
{
	const float wd = c->weight_decay, rho = c->rho, eps = c->eps, neg_lr = -lr;
	const float one_rho = (float)(1.0 - (double)rho);

	if (wd != 0.0f) {
#pragma omp parallel for simd schedule(static) if (parallel : n > OPTIM_PAR_MIN)
		for (size_t i = 0; i < n; i++)
			adadelta_elem(i, p, g, sq, acc, wd, rho, one_rho, eps, neg_lr, true);
	} else {
#pragma omp parallel for simd schedule(static) if (parallel : n > OPTIM_PAR_MIN)
		for (size_t i = 0; i < n; i++)
			adadelta_elem(i, p, g, sq, acc, wd, rho, one_rho, eps, neg_lr, false);
	}
}

#undef OPT_FN
#undef OPT_TARGET

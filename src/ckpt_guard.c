/*
 * ckpt_guard.c - every read of a checkpoint by HDF5 runs first in a forked child (guard.h).
 *
 * The seal makes a damaged file unreachable for HDF5 by accident (odds of 2^-32), but not a
 * forged one: a file changed and sealed again reaches HDF5, and HDF5 1.10.8 crashes inside
 * H5Dopen2 on some such files (tests/fuzz/findings/ckpt/hdf5_shared_message_segv: a message
 * marked shared in a file without a shared-message table), before any check of ours can see
 * the header it decodes. So the read runs in a child first, holding the library lock that the
 * parent holds (the child inherits HDF5's exact state and runs the same calls on the same
 * file); only when the child finished cleanly does the parent repeat it, and the parent's
 * results are the ones used. A child that crashed, stalled or ended with a code that is not
 * ours makes the read EXIT_DATAERR naming the file, like any damaged checkpoint (resume skips
 * it and falls back to the one before); a child's own refusal (a documented code) is handed
 * back with its reason, and the parent does not repeat it.
 * Cost: one fork and the read twice (a resnet20 checkpoint: README, Reliability).
 */
#include "ckpt_h5.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include "contract.h"
#include "guard.h"
#include "log.h"

typedef struct guarded_read {
	int (*read)(void *ctx, bool child, char *why, size_t len);
	void *ctx;
	char *why; /* shared with the parent */
	size_t len;
} guarded_read;

static int child_read(void *arg)
{
	guarded_read *g = arg;
	return g->read(g->ctx, true, g->why, g->len);
}

int ckpt_guarded(const char *path, int (*read)(void *ctx, bool child, char *why, size_t len), void *ctx, char *why,
		 size_t len)
{
	if (!guard_enabled())
		return read(ctx, false, why, len);
	guarded_read g = {read, ctx, guard_shared(len), len};
	struct stat st;
	guard_end end;
	int rc = g.why ? guard_run(child_read, &g, guard_bound_s(stat(path, &st) == 0 ? (uint64_t)st.st_size : 0), &end)
		       : -1;
	if (rc < 0) {
		log_warn("checkpoint %s: cannot read it in a child process first (%s): reading it in this process", path,
			 strerror(errno));
		guard_shared_free(g.why, len);
		return read(ctx, false, why, len);
	}
	if (end.broken)
		rc = ckpt_fail(why, len, EXIT_DATAERR, "checkpoint %s: HDF5 %s reading it: the file is damaged or forged "
			       "(changed and sealed again)", path, end.how);
	else if (rc != 0)
		snprintf(why, len, "%s", g.why); /* the child's refusal, with its reason */
	guard_shared_free(g.why, len);
	return rc ? rc : read(ctx, false, why, len);
}

/*
 * ckpt_guard.c - every read of a checkpoint by HDF5 runs first in a forked child (guard.h).
 *
 * The seal makes a damaged file unreachable for HDF5 by accident (odds of 2^-32), but not a
 * forged one: a file changed and sealed again reaches HDF5, and HDF5 1.10.8 crashes inside
 * H5Dopen2 on some such files (tests/fuzz/findings/ckpt/hdf5_shared_message_segv: a message
 * marked shared in a file without a shared-message table), before any check of ours can see
 * the header it decodes. So the read runs in a child first, holding the library lock that the
 * parent holds (the child inherits HDF5's exact state and runs the same calls on the same
 * file); only when the child finished (read it, or refused it with a documented code) does
 * the parent repeat it, and the parent's result, reason and output are the ones used (inspect
 * shows as much of a damaged file as before). A child that crashed, stalled or ended with a
 * code that is not ours makes the read EXIT_DATAERR naming the file, like any damaged
 * checkpoint (resume skips it and falls back to the one before).
 * A file refused before HDF5 sees it (missing, not regular, its seal or crc wrong) is refused
 * here, without a child. Cost otherwise: one fork and the read twice (README, Checkpoints).
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
} guarded_read;

static int child_read(void *arg)
{
	guarded_read *g = arg;
	char why[CKPT_WHY_LEN];
	return g->read(g->ctx, true, why, sizeof why);
}

int ckpt_guarded(const char *path, int (*read)(void *ctx, bool child, char *why, size_t len), void *ctx, char *why,
		 size_t len)
{
	if (!guard_enabled())
		return read(ctx, false, why, len);
	/* a file refused before HDF5 would see it (missing, damaged: the seal) needs no child, and
	 * its refusal is final (read again, a file changed since could reach HDF5 unguarded) */
	ckpt_seal_info seal;
	int rc = ckpt_check_input(path, &seal, why, len);
	if (rc)
		return rc;
	guarded_read g = {read, ctx};
	struct stat st;
	guard_end end;
	rc = guard_run(child_read, &g, guard_bound_s(stat(path, &st) == 0 ? (uint64_t)st.st_size : 0), &end);
	if (rc < 0)
		log_warn("checkpoint %s: cannot read it in a child process first (%s): reading it in this process", path,
			 strerror(errno));
	else if (end.broken)
		return ckpt_fail(why, len, EXIT_DATAERR, "checkpoint %s: HDF5 %s reading it: the file is damaged or forged "
				 "(changed and sealed again)", path, end.how);
	return read(ctx, false, why, len);
}

/*
 * probe.h - health probes of hosts after a failure that mpirun's output does
 * not explain (a frozen or partitioned node makes the world hang without a
 * word): `MPIRUN --hostfile ONE_HOST -np 1 [user mpirun args] true` on every
 * host of the failed world at once, each bounded by a timeout. A host whose
 * probe fails or hangs is to blame; when all pass, no host is.
 */
#ifndef SPOTLAUNCH_PROBE_H
#define SPOTLAUNCH_PROBE_H

#include <stdbool.h>

#include "hosts.h"

/*
 * Probe each host of hosts; failed[i] is set for host i when its probe did not
 * exit 0 within timeout_s. Files go to dir/probe-HOST.{hosts,log}.
 * Returns the number of failed hosts, or -1 when no probe could be started.
 */
int probe_hosts(const char *mpirun, char *const *user_args, int n_user, const host_list *hosts, const char *dir,
		double timeout_s, bool *failed);

#endif

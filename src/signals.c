/*
 * signals.c - SIGTERM, SIGINT and SIGUSR1 become a stop request (signals.h).
 *
 * The handler only touches lock-free C11 atomics (async-signal-safe, like
 * volatile sig_atomic_t, and also ordered across threads: the signal may land
 * on any thread) and calls clock_gettime and _exit, both async-signal-safe.
 * The flags are process-wide by nature: signal dispositions are process state.
 */
#include "signals.h"

#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "contract.h"
#include "log.h"

_Static_assert(ATOMIC_INT_LOCK_FREE == 2, "signal flags need lock-free atomic int");
_Static_assert(ATOMIC_LLONG_LOCK_FREE == 2, "signal time needs lock-free atomic long long");

static atomic_int g_sig_claimed;   /* 0 until the first request claims the slot */
static atomic_int g_sig_first;     /* signal_request of the first request */
static atomic_llong g_sig_when_ns; /* its CLOCK_REALTIME in ns */
static atomic_int g_sigint_count;

/* Records the first request and its time; a second SIGINT exits with 130 at once. */
static void on_signal(int sig)
{
	int saved_errno = errno;
	signal_request req = sig == SIGTERM ? SIG_REQ_TERM
			   : sig == SIGINT  ? SIG_REQ_INT
			   : sig == SIGUSR1 ? SIG_REQ_RESCALE : SIG_REQ_NONE;
	if (sig == SIGINT && atomic_fetch_add(&g_sigint_count, 1) >= 1)
		_exit(130); /* second SIGINT: the user insists */
	int expected = 0;
	if (req != SIG_REQ_NONE && atomic_compare_exchange_strong(&g_sig_claimed, &expected, 1)) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		atomic_store(&g_sig_when_ns, (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec);
		atomic_store(&g_sig_first, (int)req);
	}
	errno = saved_errno;
}

int signals_install(void)
{
	atomic_store(&g_sig_first, SIG_REQ_NONE);
	atomic_store(&g_sig_when_ns, 0);
	atomic_store(&g_sigint_count, 0);
	atomic_store(&g_sig_claimed, 0);

	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sa.sa_flags = SA_RESTART;
	sigemptyset(&sa.sa_mask);
	sigaddset(&sa.sa_mask, SIGTERM);
	sigaddset(&sa.sa_mask, SIGINT);
	sigaddset(&sa.sa_mask, SIGUSR1);
	static const int sigs[] = {SIGTERM, SIGINT, SIGUSR1};
	for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) {
		if (sigaction(sigs[i], &sa, NULL) != 0) {
			log_error("signals: cannot install the handler for signal %d: %s", sigs[i],
				  strerror(errno));
			return EXIT_OSERR;
		}
	}
	return 0;
}

signal_request signals_pending(double *when_wall)
{
	int req = atomic_load(&g_sig_first);
	if (when_wall)
		*when_wall = req != SIG_REQ_NONE ? (double)atomic_load(&g_sig_when_ns) * 1e-9 : 0.0;
	return (signal_request)req;
}

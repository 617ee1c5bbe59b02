#include "log.h"

#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <stdio.h>
#include <time.h>

static int g_rank = -1;      /* mirrors MPI's own global rank */
static bool g_verbose = false;

void log_set_rank(int rank) { g_rank = rank; }
void log_set_verbose(bool verbose) { g_verbose = verbose; }
int log_rank(void) { return g_rank; }

static void vlog(const char *level, const char *fmt, va_list ap)
{
	char msg[2048];
	vsnprintf(msg, sizeof msg, fmt, ap);
	if (g_rank >= 0)
		fprintf(stderr, "spottrain[%d]: %s%s\n", g_rank, level, msg);
	else
		fprintf(stderr, "spottrain: %s%s\n", level, msg);
}

void log_info(const char *fmt, ...)
{
	if (g_rank > 0 && !g_verbose)
		return;
	va_list ap;
	va_start(ap, fmt);
	vlog("", fmt, ap);
	va_end(ap);
}

void log_warn(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vlog("warning: ", fmt, ap);
	va_end(ap);
}

void log_error(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vlog("error: ", fmt, ap);
	va_end(ap);
}

double now_wall(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

double now_mono(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void log_never_block_under_mpirun(void)
{
	if (!getenv("OMPI_COMM_WORLD_RANK") && !getenv("PMIX_RANK"))
		return;
	for (int fd = 1; fd <= 2; fd++) {
		int fl = fcntl(fd, F_GETFL);
		if (fl >= 0)
			fcntl(fd, F_SETFL, fl | O_NONBLOCK);
	}
}

#include "runlog.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "contract.h"
#include "fsutil.h"
#include "log.h"

static int g_heartbeat_fd = -1; /* kept open by rank 0; closed by runlog_close */

int runlog_prepare_dir(const char *run_dir)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/%s", run_dir, RUN_CKPT_DIR);
	char why[4200];
	if (fs_mkdir_p(path, why, sizeof why)) {
		log_error("cannot create the run directory: %s", why);
		return EXIT_IOERR;
	}
	return 0;
}

static void append_line(const char *run_dir, const char *file, cJSON *obj)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/%s", run_dir, file);
	char *text = cJSON_PrintUnformatted(obj);
	cJSON_Delete(obj);
	if (!text)
		return;
	size_t len = strlen(text);
	char *line = realloc(text, len + 2);
	if (!line) {
		free(text);
		return;
	}
	line[len] = '\n';
	line[len + 1] = 0;
	int fd = open(path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644); /* read: fs_end_torn_line */
	if (fd < 0) {
		log_warn("cannot append to %s: %s", path, strerror(errno));
	} else {
		int torn = fs_end_torn_line(fd); /* a line torn earlier (volume full) stays alone */
		if (torn)
			log_warn("cannot end a torn line of %s: %s", path, strerror(torn));
		ssize_t w = write(fd, line, len + 1);
		if (w != (ssize_t)(len + 1))
			log_warn("cannot append to %s: %s", path, w < 0 ? strerror(errno) : "short write");
		if (close(fd) != 0)
			log_warn("cannot append to %s: close: %s", path, strerror(errno));
	}
	free(line);
}

void runlog_event(const char *run_dir, const char *event, cJSON *obj)
{
	if (!obj)
		obj = cJSON_CreateObject();
	if (!obj)
		return;
	/* "event" and "time" first, for people reading the file */
	cJSON *line = cJSON_CreateObject();
	cJSON_AddStringToObject(line, "event", event);
	cJSON_AddNumberToObject(line, "time", now_wall());
	cJSON *item = obj->child;
	while (item) {
		cJSON *next = item->next;
		cJSON_AddItemToObject(line, item->string, cJSON_DetachItemViaPointer(obj, item));
		item = next;
	}
	cJSON_Delete(obj);
	append_line(run_dir, RUN_EVENTS_FILE, line);
}

void runlog_metrics(const char *run_dir, cJSON *obj)
{
	append_line(run_dir, RUN_METRICS_FILE, obj);
}

void runlog_heartbeat(const char *run_dir, long step, int generation)
{
	if (g_heartbeat_fd < 0) {
		char path[4096];
		snprintf(path, sizeof path, "%s/%s", run_dir, RUN_HEARTBEAT_FILE);
		g_heartbeat_fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
		if (g_heartbeat_fd < 0)
			return;
	}
	char buf[96];
	int n = snprintf(buf, sizeof buf, "%ld %d %.3f\n", step, generation, now_wall());
	if (pwrite(g_heartbeat_fd, buf, (size_t)n, 0) == n && ftruncate(g_heartbeat_fd, n) == 0)
		return;
}

void runlog_close(void)
{
	if (g_heartbeat_fd >= 0)
		close(g_heartbeat_fd);
	g_heartbeat_fd = -1;
}

int write_file_atomic(const char *path, const char *data, size_t len)
{
	char why[4200];
	if (fs_write_atomic(path, data, len, why, sizeof why)) {
		log_error("%s", why);
		return EXIT_IOERR;
	}
	return 0;
}

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
#include "log.h"

static int g_heartbeat_fd = -1; /* kept open by rank 0; closed by runlog_close */

int mkdir_p(const char *path)
{
	char buf[4096];
	if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
		return ENAMETOOLONG;
	for (char *p = buf + 1;; p++) {
		if (*p == '/' || *p == 0) {
			char c = *p;
			*p = 0;
			if (mkdir(buf, 0777) != 0 && errno != EEXIST)
				return errno;
			struct stat st;
			if (stat(buf, &st) != 0)
				return errno;
			if (!S_ISDIR(st.st_mode))
				return ENOTDIR;
			*p = c;
			if (c == 0)
				break;
		}
	}
	return 0;
}

int runlog_prepare_dir(const char *run_dir)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/%s", run_dir, RUN_CKPT_DIR);
	int e = mkdir_p(path);
	if (e) {
		log_error("cannot create run directory %s: %s", path, strerror(e));
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
	int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0666);
	if (fd < 0) {
		log_warn("cannot append to %s: %s", path, strerror(errno));
	} else {
		if (write(fd, line, len + 1) != (ssize_t)(len + 1))
			log_warn("short write to %s", path);
		close(fd);
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
		g_heartbeat_fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0666);
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
	char tmp[4200], dir[4096];
	snprintf(tmp, sizeof tmp, "%s.tmp", path);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
	if (fd < 0) {
		log_error("cannot create %s: %s", tmp, strerror(errno));
		return EXIT_IOERR;
	}
	const char *op = NULL;
	if (write(fd, data, len) != (ssize_t)len)
		op = "write";
	else if (fsync(fd) != 0)
		op = "fsync";
	if (close(fd) != 0 && !op)
		op = "close";
	if (!op && rename(tmp, path) != 0)
		op = "rename";
	if (op) {
		log_error("%s of %s failed: %s", op, tmp, strerror(errno));
		unlink(tmp);
		return EXIT_IOERR;
	}
	snprintf(dir, sizeof dir, "%s", path);
	int dfd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		fsync(dfd);
		close(dfd);
	}
	return 0;
}

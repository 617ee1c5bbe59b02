#include "events.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fsutil.h"
#include "util.h"

int events_append(const char *run_dir, const char *event, cJSON *obj)
{
	char path[4096];
	cJSON *line = cJSON_CreateObject();
	if (!line || !fmt_path(path, sizeof path, "%s/%s", run_dir, RUN_EVENTS_FILE)) {
		cJSON_Delete(line);
		cJSON_Delete(obj);
		return -1;
	}
	/* "event" and "time" first, like the workers' lines */
	cJSON_AddStringToObject(line, "event", event);
	cJSON_AddNumberToObject(line, "time", now_wall());
	cJSON_AddStringToObject(line, "source", "launcher");
	if (obj) {
		cJSON *item = obj->child;
		while (item) {
			cJSON *next = item->next;
			cJSON_AddItemToObject(line, item->string, cJSON_DetachItemViaPointer(obj, item));
			item = next;
		}
		cJSON_Delete(obj);
	}
	char *text = cJSON_PrintUnformatted(line);
	cJSON_Delete(line);
	if (!text)
		return -1;
	size_t len = strlen(text);
	char *buf = realloc(text, len + 2);
	if (!buf) {
		free(text);
		return -1;
	}
	buf[len] = '\n';
	buf[len + 1] = 0;
	int rc = -1;
	int fd = open(path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644); /* read: fs_end_torn_line */
	if (fd < 0) {
		say_warn("cannot append to %s: %s", path, strerror(errno));
	} else {
		int torn = fs_end_torn_line(fd); /* a line torn earlier (volume full) stays alone */
		if (torn)
			say_warn("cannot end a torn line of %s: %s", path, strerror(torn));
		ssize_t w = write(fd, buf, len + 1);
		if (w == (ssize_t)(len + 1)) {
			rc = 0;
		} else {
			say_warn("cannot append to %s: %s", path, w < 0 ? strerror(errno) : "short write");
		}
		if (close(fd) != 0) {
			say_warn("cannot append to %s: close: %s", path, strerror(errno));
			rc = -1;
		}
	}
	free(buf);
	return rc;
}

void event_tail_init(event_tail *t, const char *path)
{
	memset(t, 0, sizeof *t);
	snprintf(t->path, sizeof t->path, "%s", path);
}

void event_tail_free(event_tail *t)
{
	free(t->part);
	t->part = NULL;
	t->part_len = 0;
}

static int deliver(char *line, void (*fn)(const cJSON *, void *), void *ctx)
{
	cJSON *obj = cJSON_Parse(line);
	int n = 0;
	if (obj && cJSON_IsObject(obj)) {
		fn(obj, ctx);
		n = 1;
	}
	cJSON_Delete(obj);
	return n;
}

int event_tail_poll(event_tail *t, void (*fn)(const cJSON *obj, void *ctx), void *ctx)
{
	int fd = open(t->path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	struct stat st;
	if (fstat(fd, &st) != 0 || (long long)st.st_size == t->off) {
		close(fd);
		return 0;
	}
	if ((long long)st.st_size < t->off) {
		t->off = 0;
		t->part_len = 0;
	}
	int count = 0;
	char buf[65536];
	for (;;) {
		ssize_t r = pread(fd, buf, sizeof buf, (off_t)t->off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		t->off += r;
		size_t start = 0;
		for (size_t i = 0; i < (size_t)r; i++) {
			if (buf[i] != '\n')
				continue;
			size_t seg = i - start;
			char *line = malloc(t->part_len + seg + 1);
			if (line) {
				if (t->part_len)
					memcpy(line, t->part, t->part_len);
				memcpy(line + t->part_len, buf + start, seg);
				line[t->part_len + seg] = 0;
				count += deliver(line, fn, ctx);
				free(line);
			}
			t->part_len = 0;
			start = i + 1;
		}
		if (start < (size_t)r) {
			size_t seg = (size_t)r - start;
			char *np = realloc(t->part, t->part_len + seg);
			if (np) {
				memcpy(np + t->part_len, buf + start, seg);
				t->part = np;
				t->part_len += seg;
			}
		}
	}
	close(fd);
	return count;
}

bool heartbeat_read(const char *run_dir, heartbeat *hb)
{
	char path[4096], buf[128];
	if (!fmt_path(path, sizeof path, "%s/%s", run_dir, RUN_HEARTBEAT_FILE))
		return false;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	ssize_t r = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (r <= 0)
		return false;
	buf[r] = 0;
	heartbeat h;
	if (sscanf(buf, "%ld %d %lf", &h.step, &h.generation, &h.wall) != 3)
		return false;
	*hb = h;
	return true;
}

double json_num(const cJSON *obj, const char *key, double dflt)
{
	const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
	return cJSON_IsNumber(it) ? it->valuedouble : dflt;
}

const char *json_str(const cJSON *obj, const char *key, const char *dflt)
{
	const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
	return cJSON_IsString(it) && it->valuestring ? it->valuestring : dflt;
}

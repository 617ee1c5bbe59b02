/*
 * test_events.c - the records of events.h keep the field names, order and
 * values that the launcher, the report and DESIGN.md rely on: each emitter is
 * called once into a temporary run directory and its line is read back.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "contract.h"
#include "events.h"

static char g_dir[256];

static int setup(void **state)
{
	(void)state;
	snprintf(g_dir, sizeof g_dir, "/tmp/test_events.XXXXXX");
	return mkdtemp(g_dir) ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	char cmd[300];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
	return system(cmd) == 0 ? 0 : -1;
}

/* The last line of RUN/file, parsed (caller deletes). */
static cJSON *last_line(const char *file)
{
	char path[512], line[4096], last[4096] = "";
	snprintf(path, sizeof path, "%s/%s", g_dir, file);
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	while (fgets(line, sizeof line, f))
		memcpy(last, line, sizeof last);
	fclose(f);
	cJSON *o = cJSON_Parse(last);
	assert_non_null(o);
	return o;
}

/* o's keys are exactly keys, in order (comma-separated). */
static void assert_keys(const cJSON *o, const char *keys)
{
	char got[1024] = "";
	for (const cJSON *it = o->child; it; it = it->next) {
		if (got[0])
			strcat(got, ",");
		strcat(got, it->string);
	}
	assert_string_equal(got, keys);
}

static double num(const cJSON *o, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
	assert_true(cJSON_IsNumber(v));
	return v->valuedouble;
}

static const char *str(const cJSON *o, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
	assert_true(cJSON_IsString(v));
	return v->valuestring;
}

static ev_source source(void)
{
	return (ev_source){g_dir, "node-a", 3, 4, 7};
}

static void test_start_resume_checkpoint_exit_fields(void **state)
{
	(void)state;
	ev_source s = source();
	emit_start(&s, 2, 40);
	cJSON *o = last_line(RUN_EVENTS_FILE);
	assert_keys(o, "event,time,world_size,nodes,step,generation,pid");
	assert_string_equal(str(o, "event"), EV_START);
	assert_true(num(o, "world_size") == 4 && num(o, "nodes") == 2 && num(o, "step") == 40);
	assert_true(num(o, "pid") == (double)getpid());
	cJSON_Delete(o);
	emit_resume(&s, "/ck/ckpt-40.h5", 40, 3, 0.5);
	o = last_line(RUN_EVENTS_FILE);
	assert_keys(o, "event,time,path,step,from_world_size,world_size,generation,load_s");
	assert_true(num(o, "from_world_size") == 3 && num(o, "generation") == 7 && num(o, "load_s") == 0.5);
	cJSON_Delete(o);
	emit_checkpoint(&s, "/ck/ckpt-50.h5", 50, 1.5, 0.25);
	o = last_line(RUN_EVENTS_FILE);
	assert_keys(o, "event,time,path,step,write_s,blocked_s,generation,world_size,node");
	assert_string_equal(str(o, "event"), EV_CHECKPOINT);
	assert_string_equal(str(o, "node"), "node-a");
	cJSON_Delete(o);
	emit_exit(&s, 75, 51);
	o = last_line(RUN_EVENTS_FILE);
	assert_keys(o, "event,time,code,step,rank,node,generation");
	assert_true(num(o, "code") == 75 && num(o, "rank") == 3);
	cJSON_Delete(o);
}

static void test_notice_rebalance_and_stop_fields(void **state)
{
	(void)state;
	ev_source s = source();
	spot_event ev = {.kind = SPOT_EVENT_STOP, .provider = "aws", .action = "terminate",
			 .notice_time = "2030-01-01T00:00:00Z", .received_wall = 12.5};
	emit_notice(&s, &ev, 9);
	cJSON *o = last_line(RUN_EVENTS_FILE);
	assert_keys(o, "event,time,node,provider,action,notice_time,received,step,generation,rank");
	assert_string_equal(str(o, "event"), EV_NOTICE);
	cJSON_Delete(o);
	ev.kind = SPOT_EVENT_REBALANCE;
	emit_notice(&s, &ev, 9);
	o = last_line(RUN_EVENTS_FILE);
	assert_string_equal(str(o, "event"), EV_REBALANCE);
	cJSON_Delete(o);
	double delay = 1.25;
	emit_stop(&s, 10, STOP_SIGTERM, "/ck/ckpt-10.h5", &delay);
	o = last_line(RUN_EVENTS_FILE);
	assert_keys(o, "event,time,step,reason,path,notice_to_durable_s,generation,world_size");
	assert_string_equal(str(o, "reason"), STOP_SIGTERM);
	cJSON_Delete(o);
	emit_stop(&s, 10, STOP_RESCALE, "", NULL);
	o = last_line(RUN_EVENTS_FILE);
	assert_keys(o, "event,time,step,reason,path,generation,world_size");
	cJSON_Delete(o);
}

static void test_epoch_writes_event_and_metrics_line(void **state)
{
	(void)state;
	ev_source s = source();
	emit_epoch(&s, 469, 1, 0.98, 0.05);
	cJSON *o = last_line(RUN_EVENTS_FILE);
	assert_string_equal(str(o, "event"), EV_EPOCH);
	assert_true(num(o, "test_accuracy") == 0.98 && num(o, "epoch") == 1);
	cJSON_Delete(o);
	o = last_line(RUN_METRICS_FILE);
	assert_keys(o, "step,epoch,test_accuracy,test_loss,world_size,generation,time");
	cJSON_Delete(o);
	metrics_line m = {.step = 470, .epoch = 1.002, .loss = 0.1, .accuracy = 0.97, .images_per_s = 900,
			  .lr = 0.001f, .wall_time_s = 60};
	emit_metrics(&s, &m);
	o = last_line(RUN_METRICS_FILE);
	assert_keys(o, "step,epoch,loss,accuracy,images_per_s,lr,world_size,generation,time,wall_time_s");
	assert_true(num(o, "images_per_s") == 900 && num(o, "lr") == (double)0.001f);
	cJSON_Delete(o);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_start_resume_checkpoint_exit_fields),
		cmocka_unit_test(test_notice_rebalance_and_stop_fields),
		cmocka_unit_test(test_epoch_writes_event_and_metrics_line),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}

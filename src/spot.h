/*
 * spot.h - interruption notices: cloud metadata watchers (AWS IMDSv2, GCP,
 * Azure Scheduled Events) through libcurl in a background thread (the
 * process signals are in signals.h). The training loop only ever
 * calls the non-blocking functions here; it never waits on the network.
 * spot_*.c are the only files that include curl.h (besides fetch.c).
 */
#ifndef SPOTTRAIN_SPOT_H
#define SPOTTRAIN_SPOT_H

#include <stdbool.h>
#include <stddef.h>

typedef enum {
	SPOT_PROVIDER_NONE = 0,
	SPOT_PROVIDER_AUTO,
	SPOT_PROVIDER_AWS,
	SPOT_PROVIDER_GCP,
	SPOT_PROVIDER_AZURE,
} spot_provider;

typedef struct spot_config {
	spot_provider provider;   /* AUTO decides from DMI vendor files, no network probe */
	char metadata_url[256];   /* base URL, default http://169.254.169.254 */
	int poll_ms;              /* poll interval, default 1000 */
	int connect_timeout_ms;   /* default 500 */
	int timeout_ms;           /* total per request, default 2000 (GCP hanging GET: timeout_sec + this) */
	size_t max_response;      /* bytes, default 65536; larger bodies are rejected */
	char dmi_dir[256];        /* default /sys/class/dmi/id (tests point it elsewhere) */
	char vm_name[128];        /* Azure: this VM's name as in Resources; default: hostname */
	char node[128];           /* node name for events (SIM_NODE or hostname) */
} spot_config;

typedef enum {
	SPOT_EVENT_NONE = 0,
	SPOT_EVENT_STOP,      /* interruption notice: stop at an agreed step with a checkpoint */
	SPOT_EVENT_REBALANCE, /* early warning (AWS rebalance recommendation): checkpoint, keep going */
} spot_event_kind;

typedef struct spot_event {
	spot_event_kind kind;
	char provider[16];     /* "aws", "gcp", "azure" */
	char action[32];       /* terminate, stop, hibernate, preempt, Preempt, Terminate, rebalance */
	char notice_time[64];  /* as the service gave it (RFC 3339 / RFC 1123), "" if none */
	double received_wall;  /* when the watcher saw it (seconds since the epoch) */
} spot_event;

typedef struct spot_watcher spot_watcher;

void spot_config_defaults(spot_config *c);
const char *spot_provider_name(spot_provider p);
int spot_provider_parse(const char *s); /* -1 if unknown */
/* Resolve AUTO from DMI vendor files (sys_vendor, bios_vendor, product_name, chassis_asset_tag). */
spot_provider spot_detect_provider(const char *dmi_dir);

/* Start a watcher thread (provider NONE: returns 0 and *out = NULL). Returns 0 or EXIT_OSERR. */
int spot_watcher_start(const spot_config *c, spot_watcher **out);
/* Non-blocking. Returns true and fills *ev once per new event since the last call. NULL-safe. */
bool spot_watcher_poll(spot_watcher *w, spot_event *ev);
/* After the emergency checkpoint is durable: acknowledge (Azure StartRequests); no-op elsewhere. */
int spot_watcher_ack(spot_watcher *w);
/* Stop the thread (bounded by the request timeouts) and free. NULL-safe. */
void spot_watcher_stop(spot_watcher *w);

#endif

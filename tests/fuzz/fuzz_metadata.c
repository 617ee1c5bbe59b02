/*
 * fuzz_metadata.c - the bodies the cloud metadata services answer, through
 * the providers' own handlers: AWS instance-action, rebalance and IMDSv2
 * token, Azure scheduled events (twice, to reach the incarnation compare),
 * GCP's preempted value and ETag. The handlers are static, so this file
 * includes the three provider files (their ops tables then come from here,
 * and the library's copies are not linked in). No network: the response is
 * built from the input.
 * Input: one selector byte, one status byte (even: 200, odd: 404, then 500 and
 * a failed transfer now and then), then the body.
 */
#include "spot_aws.c"
#include "spot_azure.c"
#include "spot_gcp.c"

#include "fuzz_util.h"

/* A watcher with what the handlers touch: config, provider ops, the mutex. */
static void watcher_init(spot_watcher *w, const spot_provider_ops *ops)
{
	memset(w, 0, sizeof *w);
	snprintf(w->cfg.metadata_url, sizeof w->cfg.metadata_url, "http://169.254.169.254");
	snprintf(w->cfg.vm_name, sizeof w->cfg.vm_name, "vm-7");
	w->ops = ops;
	pthread_mutex_init(&w->mu, NULL);
}

/* The response: body copied with a 0 after it, as spot_http leaves it. */
static void response(spot_http_resp *r, uint8_t status, const uint8_t *body, size_t n)
{
	memset(r, 0, sizeof *r);
	r->result = status % 17 == 16 ? SPOT_HTTP_ERROR : SPOT_HTTP_OK;
	r->status = status % 11 == 10 ? 500 : status & 1 ? 404 : 200;
	r->body = fuzz_strndup(body, n);
	r->len = r->cap = n;
	r->max = n + 1;
	r->flavor_google = status & 2;
	snprintf(r->etag, sizeof r->etag, "%.*s", (int)(n < 64 ? n : 64), (const char *)body);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	spot_watcher w;
	spot_http_resp r;
	aws_state aws = { 0 };
	azure_state az = { .imds_name = "VM-7-imds" };
	response(&r, data[1], data + 2, size - 2);
	switch (data[0] % 5) {
	case 0: watcher_init(&w, &spot_aws_ops); aws_handle_action(&w, &aws, &r); break;
	case 1: watcher_init(&w, &spot_aws_ops); aws_handle_rebalance(&w, &aws, &r); break;
	case 2: watcher_init(&w, &spot_aws_ops); take_token(&aws, &r); break;
	case 3:
		watcher_init(&w, &spot_azure_ops);
		azure_handle_doc(&w, &az, &r);
		azure_handle_doc(&w, &az, &r);
		break;
	case 4:
		watcher_init(&w, &spot_gcp_ops);
		if (!spot_body_is(&r, "TRUE") && !spot_body_is(&r, "FALSE"))
			spot_http_warn(&w, "GET preempted", &r);
		(void)etag_ok(r.etag);
		break;
	}
	pthread_mutex_destroy(&w.mu);
	free(r.body);
	return 0;
}

/*
 * fetch_response.c - what the responses of one request of the dataset
 * download do to the .part: the libcurl header and write callbacks.
 *
 * At the end of a response's headers the header callback decides: 206
 * starting at our offset appends, 200 cuts the .part to 0 and takes the
 * whole body, anything else writes nothing. The body of a response that is
 * not 200/206 never reaches the file; up to FETCH_MAX_DROPPED bytes of it
 * are read and dropped (libcurl only reports the Location of a transfer that
 * completes), beyond that the transfer is cut. A body that would make the
 * file larger than max_bytes stops the transfer.
 */
#include "fetch_internal.h"

#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define FETCH_MAX_DROPPED (64u << 10) /* longest body of a redirect or error read */

_Static_assert(sizeof(curl_off_t) == sizeof(int64_t), "curl_off_t is 64-bit");

/* Parse a non-negative decimal at *s (leading blanks skipped); advances *s. */
static bool parse_off(const char **s, curl_off_t *v)
{
	const char *p = *s;
	while (*p == ' ' || *p == '\t')
		p++;
	if (!isdigit((unsigned char)*p))
		return false;
	curl_off_t x = 0;
	for (; isdigit((unsigned char)*p); p++) {
		int d = *p - '0';
		if (x > (INT64_MAX - d) / 10)
			return false;
		x = x * 10 + d;
	}
	*v = x;
	*s = p;
	return true;
}

/* Content-Range: "bytes START-END/TOTAL" or "bytes * /TOTAL" (no blank) */
static void parse_content_range(const char *s, xfer *x)
{
	curl_off_t start, end, total;
	while (*s == ' ' || *s == '\t')
		s++;
	if (strncasecmp(s, "bytes", 5) != 0)
		return;
	s += 5;
	while (*s == ' ' || *s == '\t')
		s++;
	if (*s == '*') {
		s++;
	} else {
		if (!parse_off(&s, &start) || *s++ != '-' || !parse_off(&s, &end) || end < start)
			return;
		x->range_start = start;
	}
	if (*s++ != '/')
		return;
	if (parse_off(&s, &total))
		x->range_total = total;
}

/* At the end of a response's headers: decide where its body goes. */
static bool begin_body(xfer *x)
{
	x->to_file = false;
	if (x->status == 200) {
		if (x->length > x->max) {
			x->stop = XF_OVERSIZE;
			return false;
		}
		if (x->off != 0) {
			/* the server ignored the Range (or sent the whole file again) */
			if (ftruncate(x->fd, 0) != 0) {
				x->err = errno;
				x->stop = XF_WRITE;
				return false;
			}
			x->off = 0;
			x->restarted = true;
		}
		x->to_file = true;
	} else if (x->status == 206) {
		if (x->range_start != x->asked) {
			x->stop = XF_BAD_RANGE;
			return false;
		}
		if (x->range_total > x->max) {
			x->stop = XF_OVERSIZE;
			return false;
		}
		x->appended = x->asked > 0;
		x->to_file = true;
	}
	return true;
}

size_t fetch_header_cb(char *data, size_t size, size_t nmemb, void *ud)
{
	xfer *x = ud;
	size_t len = size * nmemb;
	char line[512]; /* the headers read here are short; longer lines are cut */
	size_t n = len < sizeof line - 1 ? len : sizeof line - 1;
	memcpy(line, data, n);
	while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
		n--;
	line[n] = '\0';

	if (strncmp(line, "HTTP/", 5) == 0) { /* a new response (redirect, 1xx, final) */
		const char *sp = strchr(line, ' ');
		x->status = sp ? strtol(sp + 1, NULL, 10) : 0;
		x->in_headers = true;
		x->to_file = false;
		x->length = x->range_start = x->range_total = -1;
		return len;
	}
	if (!x->in_headers) /* trailers after a chunked body */
		return len;
	if (line[0] == '\0') {
		x->in_headers = false;
		return begin_body(x) ? len : 0;
	}
	if (strncasecmp(line, "content-length:", 15) == 0) {
		const char *p = line + 15;
		curl_off_t v;
		if (parse_off(&p, &v))
			x->length = v;
	} else if (strncasecmp(line, "content-range:", 14) == 0) {
		parse_content_range(line + 14, x);
	}
	return len;
}

size_t fetch_write_cb(char *data, size_t size, size_t nmemb, void *ud)
{
	xfer *x = ud;
	size_t len = size * nmemb;
	if (!x->to_file) {
		/* read and drop: libcurl only reports the Location of a transfer that
		 * completes; a long body of a redirect or error is cut */
		x->dropped += len;
		if (x->dropped > FETCH_MAX_DROPPED) {
			x->stop = XF_NOT_BODY;
			return 0; /* anything but len stops the transfer */
		}
		return len;
	}
	if ((curl_off_t)len > x->max - x->off) {
		x->stop = XF_OVERSIZE;
		return 0;
	}
	for (size_t done = 0; done < len;) {
		ssize_t w = pwrite(x->fd, data + done, len - done, (off_t)(x->off + (curl_off_t)done));
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			x->err = w < 0 ? errno : EIO;
			x->stop = XF_WRITE;
			return 0;
		}
		done += (size_t)w;
	}
	x->off += (curl_off_t)len;
	return len;
}

/*
 * fetch_url.c - the URLs of the dataset download: which redirects are
 * followed, what data.url may be, and how a URL is shown in a log message
 * (libcurl's URL API).
 *
 * Redirects are followed only to https:// or to the same scheme, host and
 * port as the URL that redirected, so an http mirror cannot send us to
 * another plain-http host (the checksum would catch bad data, but not a
 * request to an internal address).
 */
#include "fetch_internal.h"

#include "contract.h"
#include "log.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* Scheme (lowercase), host and port (default port filled in) of a URL. */
typedef struct url_origin {
	char scheme[16];
	char host[256];
	char port[8];
} url_origin;

static bool parse_origin(const char *url, url_origin *o)
{
	CURLU *u = curl_url();
	char *scheme = NULL, *host = NULL, *port = NULL;
	bool ok = u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
		  curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
		  curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK &&
		  curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) == CURLUE_OK &&
		  strlen(scheme) < sizeof o->scheme && strlen(host) < sizeof o->host &&
		  strlen(port) < sizeof o->port && host[0];
	if (ok) {
		size_t i = 0;
		for (; scheme[i]; i++)
			o->scheme[i] = (char)tolower((unsigned char)scheme[i]);
		o->scheme[i] = '\0';
		snprintf(o->host, sizeof o->host, "%s", host);
		snprintf(o->port, sizeof o->port, "%s", port);
	}
	curl_free(scheme);
	curl_free(host);
	curl_free(port);
	curl_url_cleanup(u);
	return ok;
}

/* The redirect rule: to https:// anywhere, or to the same scheme, host and port. */
bool fetch_redirect_allowed(const char *from, const char *to)
{
	url_origin a, b;
	if (!parse_origin(from, &a) || !parse_origin(to, &b))
		return false;
	if (strcmp(b.scheme, "https") == 0)
		return true;
	return strcmp(a.scheme, b.scheme) == 0 && strcasecmp(a.host, b.host) == 0 &&
	       strcmp(a.port, b.port) == 0;
}

/* url for a log message: without a password, and with the query (signed URLs
 * carry credentials there) shown as "?...". */
void fetch_url_for_log(const char *url, char *out, size_t size)
{
	CURLU *u = curl_url();
	char *s = NULL, *q = NULL;
	if (u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK) {
		curl_url_set(u, CURLUPART_PASSWORD, NULL, 0);
		bool has_query = curl_url_get(u, CURLUPART_QUERY, &q, 0) == CURLUE_OK;
		curl_url_set(u, CURLUPART_QUERY, NULL, 0);
		if (curl_url_get(u, CURLUPART_URL, &s, 0) == CURLUE_OK)
			snprintf(out, size, "%s%s", s, has_query ? "?..." : "");
		else
			snprintf(out, size, "(unprintable URL)");
	} else {
		snprintf(out, size, "(unparsable URL)");
	}
	curl_free(q);
	curl_free(s);
	curl_url_cleanup(u);
}

/* Check base_url: http(s)://host[:port][/path], no query or fragment. */
int fetch_check_base_url(const char *base_url)
{
	url_origin o;
	if (strpbrk(base_url, "?# \t\r\n") || !parse_origin(base_url, &o) ||
	    (strcmp(o.scheme, "http") != 0 && strcmp(o.scheme, "https") != 0)) {
		char shown[FETCH_URL_MAX];
		fetch_url_for_log(base_url, shown, sizeof shown);
		log_error("data.url must be an http:// or https:// URL of the folder holding the IDX "
			  "files, without ? or #: %s",
			  shown);
		return EXIT_USAGE;
	}
	return 0;
}

/*
 * spot_detect.c - what comes before a watcher: the configuration defaults,
 * the provider names and the provider's detection from the DMI files.
 */
#include "spot_internal.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define DEFAULT_METADATA_URL "http://169.254.169.254"
#define AZURE_CHASSIS_ASSET_TAG "7783-7084-3265-9085-8269-3286-77"

/* ------------------------------------------------------------------ */
/* configuration and provider names                                    */
/* ------------------------------------------------------------------ */

void spot_strlcpy(char *dst, size_t n, const char *src)
{
	size_t len = src ? strnlen(src, n - 1) : 0;
	if (len)
		memcpy(dst, src, len);
	dst[len] = '\0';
}

/* Host name up to the first '.', or "" when it cannot be read. */
static void short_hostname(char *buf, size_t n)
{
	char host[256];
	if (gethostname(host, sizeof host) != 0) {
		buf[0] = '\0';
		return;
	}
	host[sizeof host - 1] = '\0';
	host[strcspn(host, ".")] = '\0';
	spot_strlcpy(buf, n, host);
}

void spot_config_defaults(spot_config *c)
{
	memset(c, 0, sizeof *c);
	c->provider = SPOT_PROVIDER_AUTO;
	spot_strlcpy(c->metadata_url, sizeof c->metadata_url, DEFAULT_METADATA_URL);
	c->poll_ms = 1000;
	c->connect_timeout_ms = 500;
	c->timeout_ms = 2000;
	c->max_response = 65536;
	spot_strlcpy(c->dmi_dir, sizeof c->dmi_dir, SPOT_DEFAULT_DMI_DIR);
	short_hostname(c->vm_name, sizeof c->vm_name);
	const char *sim = getenv("SIM_NODE");
	if (sim && sim[0])
		spot_strlcpy(c->node, sizeof c->node, sim);
	else
		spot_strlcpy(c->node, sizeof c->node, c->vm_name);
}

const char *spot_provider_name(spot_provider p)
{
	switch (p) {
	case SPOT_PROVIDER_NONE: return "none";
	case SPOT_PROVIDER_AUTO: return "auto";
	case SPOT_PROVIDER_AWS: return "aws";
	case SPOT_PROVIDER_GCP: return "gcp";
	case SPOT_PROVIDER_AZURE: return "azure";
	}
	return "unknown";
}

int spot_provider_parse(const char *s)
{
	static const struct {
		const char *name;
		spot_provider p;
	} names[] = {
		{"none", SPOT_PROVIDER_NONE}, {"auto", SPOT_PROVIDER_AUTO},
		{"aws", SPOT_PROVIDER_AWS},   {"gcp", SPOT_PROVIDER_GCP},
		{"azure", SPOT_PROVIDER_AZURE},
	};
	if (!s)
		return -1;
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
		if (strcasecmp(s, names[i].name) == 0)
			return (int)names[i].p;
	return -1;
}

/* ------------------------------------------------------------------ */
/* DMI detection                                                       */
/* ------------------------------------------------------------------ */

/*
 * Read dir/name into buf, trimmed of surrounding whitespace. Returns 0, or
 * the errno of the failure (ENOENT, EACCES, ...), buf then "".
 */
static int dmi_read(const char *dir, const char *name, char *buf, size_t n)
{
	char path[512];
	buf[0] = '\0';
	if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path)
		return ENAMETOOLONG;
	FILE *f = fopen(path, "r");
	if (!f)
		return errno ? errno : EIO;
	size_t got = fread(buf, 1, n - 1, f);
	int err = ferror(f) ? EIO : 0;
	fclose(f);
	buf[got] = '\0';
	size_t len = strlen(buf); /* stops at an embedded NUL */
	while (len > 0 && isspace((unsigned char)buf[len - 1]))
		buf[--len] = '\0';
	size_t lead = 0;
	while (isspace((unsigned char)buf[lead]))
		lead++;
	memmove(buf, buf + lead, len - lead + 1);
	return err;
}

/*
 * AWS: "Amazon EC2" as sys_vendor, bios_vendor or board_vendor (Nitro), or
 * "amazon" in bios_version (older Xen instances). GCP: bios_vendor or
 * sys_vendor "Google", or product_name "Google Compute Engine". Azure: the
 * Azure chassis asset tag; or sys_vendor "Microsoft Corporation" when the tag
 * cannot be read (a readable different tag means Hyper-V outside Azure).
 */
spot_provider spot_detect_provider(const char *dmi_dir)
{
	const char *dir = (dmi_dir && dmi_dir[0]) ? dmi_dir : SPOT_DEFAULT_DMI_DIR;
	char sys_vendor[256], bios_vendor[256], board_vendor[256], bios_version[256];
	char product[256], tag[256];
	dmi_read(dir, "sys_vendor", sys_vendor, sizeof sys_vendor);
	dmi_read(dir, "bios_vendor", bios_vendor, sizeof bios_vendor);
	dmi_read(dir, "board_vendor", board_vendor, sizeof board_vendor);
	dmi_read(dir, "bios_version", bios_version, sizeof bios_version);
	dmi_read(dir, "product_name", product, sizeof product);
	int tag_err = dmi_read(dir, "chassis_asset_tag", tag, sizeof tag);

	if (strcmp(sys_vendor, "Amazon EC2") == 0 || strcmp(bios_vendor, "Amazon EC2") == 0 ||
	    strcmp(board_vendor, "Amazon EC2") == 0)
		return SPOT_PROVIDER_AWS;
	for (char *p = bios_version; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	if (strstr(bios_version, "amazon"))
		return SPOT_PROVIDER_AWS;
	if (strcmp(bios_vendor, "Google") == 0 || strcmp(sys_vendor, "Google") == 0 ||
	    strcmp(product, "Google Compute Engine") == 0)
		return SPOT_PROVIDER_GCP;
	if (strcmp(tag, AZURE_CHASSIS_ASSET_TAG) == 0)
		return SPOT_PROVIDER_AZURE;
	if (strcmp(sys_vendor, "Microsoft Corporation") == 0 && tag_err != 0)
		return SPOT_PROVIDER_AZURE;
	return SPOT_PROVIDER_NONE;
}

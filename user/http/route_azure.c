/* route_azure.c: Azure IMDS's request rules (/metadata/instance/...,
 * /metadata/versions) over the "azure/" and "azure-json/" subtrees
 * (lib/flavor_layout.h): JSON by default, each directory's precompiled,
 * leaves with format=text.  The managed identities' token endpoint meets
 * the same header rules here, with its own error bodies, and is answered
 * by route_azure_identity.c.  Rules and sources: docs/flavors.md. */
#include "http/route_azure.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "http/route_azure_identity.h"
#include "lib/flavor_layout.h"

/* Azure's answers keep the shared layer's Server: EC2ws (their headers
 * are not specified, shared/spec); errors are JSON. */
const struct fr_style azure_style = {
	.not_found_ct = CT_JSON,
	.not_found = "{\"error\":\"Not found\"}",
	.not_allowed_ct = CT_JSON,
	.not_allowed = "{\"error\":\"Method not allowed\"}",
	.no_token_key = FLAVOR_NO_TOKEN_PREFIX "azure",
	.forbidden_ct = CT_JSON,
	.forbidden = "{\"error\":\"Forbidden. This VM requires IMDSv2 session tokens; its Azure metadata is not served "
		     "to this request\"}",
};

static const char *const azure_versions[] = {
	"2017-03-01", "2017-04-02", "2017-08-01", "2017-10-01", "2017-12-01", "2018-02-01", "2018-04-02",
	"2018-10-01", "2019-02-01", "2019-03-11", "2019-04-30", "2019-06-01", "2019-06-04", "2019-08-01",
	"2019-08-15", "2019-11-01", "2020-06-01", "2020-07-15", "2020-09-01", "2020-10-01", "2020-12-01",
	"2021-01-01", "2021-02-01", "2021-03-01", "2021-05-01", "2021-10-01", "2021-11-01", "2021-11-15",
	"2021-12-13", "2022-02-01", "2022-03-01", "2022-05-01", "2022-07-01", "2022-08-01", "2022-09-01",
	"2022-11-01", "2023-07-01",
};
#define AZURE_N_VERSIONS (sizeof(azure_versions) / sizeof(azure_versions[0]))

static void azure_error(struct fr_call *f, int status, const char *msg)
{
	outbuf_reset(&f->body);
	if (outbuf_printf(&f->body, "{\"error\":\"%s\"}", msg) == 0)
		fr_reply(f, status, CT_JSON, f->body.data, f->body.len);
	else
		fr_reply_str(f, status, CT_JSON, "{}");
}

static int azure_versions_doc(struct fr_call *f)
{
	int rc = outbuf_puts(&f->body, "{\"apiVersions\":[");

	for (size_t i = 0; !rc && i < AZURE_N_VERSIONS; i++)
		rc = outbuf_printf(&f->body, "%s\"%s\"", i ? "," : "", azure_versions[i]);
	if (!rc)
		rc = outbuf_puts(&f->body, "]}");
	if (!rc)
		fr_reply_body(f, CT_JSON, false);
	return rc;
}

/* A 400 in the style of the endpoint asked: the instance endpoint's
 * {"error":"Bad request. <msg>"}, the token endpoint's error code and
 * description. */
static void azure_bad_request(struct fr_call *f, bool identity, const char *code, const char *msg)
{
	char text[256];

	if (identity) {
		azure_mi_error(f, 400, code, msg);
		return;
	}
	snprintf(text, sizeof(text), "Bad request. %s", msg);
	azure_error(f, 400, text);
}

/* 0 when the request names a known api-version (for tokens, one from
 * AZURE_MI_MIN_VERSION on), else the 400 is set. */
static int azure_check_version(struct fr_call *f, bool identity)
{
	char v[FR_PARAM_CAP];

	if (!fr_param(f, "api-version", v, sizeof(v))) {
		azure_bad_request(f, identity, "invalid_request",
				  identity ? "Required query variable 'api-version' is missing"
					   : "api-version was not specified in the request. "
					     "For more information refer to aka.ms/azureimds");
		return -EINVAL;
	}
	for (size_t i = 0; i < AZURE_N_VERSIONS; i++)
		if (!strcmp(v, azure_versions[i]) && (!identity || strcmp(v, AZURE_MI_MIN_VERSION) >= 0))
			return 0;
	azure_bad_request(f, identity, "invalid_request",
			  "api-version is invalid or was not specified in the request. "
			  "For more information refer to aka.ms/azureimds");
	return -EINVAL;
}

static int azure_data(struct fr_call *f, const char *rel)
{
	char format[FR_PARAM_CAP] = "json";
	struct tree_entry e;
	size_t n;

	fr_param(f, "format", format, sizeof(format));
	if (strcmp(format, "json") && strcmp(format, "text")) {
		azure_error(f, 400, "Bad request. The format must be json or text");
		return 0;
	}
	if (fr_find(f, AZURE_PREFIX, rel, &n, &e)) {
		fr_not_found(f);
		return 0;
	}
	if (!strcmp(format, "text")) {
		fr_serve(f, &e, CT_TEXT);
		return 0;
	}
	/* IMDS answers leaves only as text. */
	if (e.kind == TREE_LEAF) {
		azure_error(f, 400, "Bad request. Leaf nodes are served with format=text");
		return 0;
	}
	/* Every directory's JSON is precompiled (compile/azure.c). */
	if (fr_lookup(f, AZURE_JSON_PREFIX, rel, n, "/" FLAVOR_JSON_LEAF, &e)) {
		fr_not_found(f);
		return 0;
	}
	fr_serve(f, &e, CT_JSON);
	return 0;
}

/* Azure requires "Metadata: true" (400 without), refuses proxied requests
 * and needs a known api-version for everything but /metadata/versions;
 * the token endpoint answers these with its own error bodies. */
int azure_route(struct fr_call *f)
{
	static const char inst[] = "/metadata/instance";
	const struct http_request *req = f->c->req;
	const char *path = f->c->path;
	bool identity = !strcmp(path, AZURE_MI_TOKEN_PATH);

	if (!req->metadata.present || req->metadata.count != 1 || strcasecmp(req->metadata.value, "true")) {
		azure_bad_request(f, identity, "bad_request_102", "Required metadata header not specified");
		return 0;
	}
	if (req->forwarded_for.present) {
		azure_bad_request(f, identity, "invalid_request", "Requests with X-Forwarded-For are not accepted");
		return 0;
	}
	if (!strcmp(path, "/metadata/versions"))
		return azure_versions_doc(f);
	if (identity)
		return azure_check_version(f, true) ? 0 : azure_mi_route(f);
	if (strncmp(path, inst, sizeof(inst) - 1) || (path[sizeof(inst) - 1] && path[sizeof(inst) - 1] != '/')) {
		fr_not_found(f);
		return 0;
	}
	if (azure_check_version(f, false))
		return 0;
	return azure_data(f, path + strlen("/metadata/"));
}

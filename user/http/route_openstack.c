/* route_openstack.c: OpenStack's request rules (Nova's metadata API,
 * /openstack/<version>/...) over the "openstack/" subtree, which holds one
 * copy of each document for every version.  Rules and sources:
 * docs/flavors.md. */
#include "http/route_openstack.h"

#include <errno.h>
#include <string.h>

#include "lib/flavor_layout.h"

/* Nova's 404, as its webob page reads. */
static const char os_404[] = "<html>\n <head>\n  <title>404 Not Found</title>\n </head>\n <body>\n"
			     "  <h1>404 Not Found</h1>\n  The resource could not be found.<br /><br />\n\n\n\n"
			     " </body>\n</html>";

/* Nova's 403 page (webob's, with Nova's message). */
static const char os_403[] = "<html>\n <head>\n  <title>403 Forbidden</title>\n </head>\n <body>\n"
			     "  <h1>403 Forbidden</h1>\n  Access was denied to this resource.<br /><br />\n\n\n\n"
			     " </body>\n</html>";

/* Nova's answers are not specified beyond their bodies (shared/spec), so
 * they keep the shared layer's Server: EC2ws. */
const struct fr_style os_style = {
	.not_found_ct = CT_HTML,
	.not_found = os_404,
	.not_allowed_ct = CT_TEXT,
	.not_allowed = "",
	.no_token_key = FLAVOR_NO_TOKEN_PREFIX "openstack",
	.forbidden_ct = CT_HTML,
	.forbidden = os_403,
};

/* Nova's versions (cloud-init reads the list and picks the newest it knows). */
static const char os_versions[] = "2012-08-10\n2013-04-04\n2013-10-17\n2015-10-15\n2016-06-30\n2016-10-06\n"
				  "2017-02-22\n2018-08-27\n2020-10-14\nlatest";

/* Each document and the first version that has it, in Nova's listing order. */
static const struct {
	const char *name;
	const char *since;
} os_files[] = {
	{ "meta_data.json", "2012-08-10" },    { "user_data", "2012-08-10" },
	{ "vendor_data.json", "2013-10-17" },  { "network_data.json", "2015-10-15" },
	{ "vendor_data2.json", "2016-10-06" },
};

static bool os_is_version(const char *v, size_t n)
{
	for (const char *p = os_versions; *p;) {
		size_t len = strcspn(p, "\n");

		if (len == n && !memcmp(p, v, n))
			return true;
		p += len + (p[len] == '\n');
	}
	return false;
}

/* "latest" sorts after every date. */
static bool os_has(const char *version, size_t vlen, const char *since)
{
	return (vlen == 6 && !memcmp(version, "latest", 6)) || memcmp(version, since, 10) >= 0;
}

static int os_listing(struct fr_call *f, const char *version, size_t vlen)
{
	struct tree_entry e;

	for (size_t i = 0; i < sizeof(os_files) / sizeof(os_files[0]); i++) {
		if (!os_has(version, vlen, os_files[i].since) ||
		    fr_lookup(f, OPENSTACK_PREFIX, os_files[i].name, strlen(os_files[i].name), "", &e))
			continue;
		if (outbuf_printf(&f->body, "%s%s", f->body.len ? "\n" : "", os_files[i].name))
			return -ENOMEM;
	}
	fr_reply_body(f, CT_TEXT, true);
	return 0;
}

int os_route(struct fr_call *f)
{
	const char *v = f->c->path + strlen("/openstack"), *file;
	size_t vlen;
	struct tree_entry e;

	if (*v == '\0' || !strcmp(v, "/")) {
		fr_reply(f, 200, CT_TEXT, os_versions, sizeof(os_versions) - 1);
		return 0;
	}
	v++;
	vlen = strcspn(v, "/");
	if (!os_is_version(v, vlen)) {
		fr_not_found(f);
		return 0;
	}
	file = v + vlen + (v[vlen] == '/');
	if (*file == '\0')
		return os_listing(f, v, vlen);
	for (size_t i = 0; i < sizeof(os_files) / sizeof(os_files[0]); i++) {
		size_t n = strlen(os_files[i].name);

		/* a trailing '/' after a document still names it */
		if (strncmp(file, os_files[i].name, n) || (file[n] && strcmp(file + n, "/")))
			continue;
		if (os_has(v, vlen, os_files[i].since) && !fr_lookup(f, OPENSTACK_PREFIX, file, n, "", &e)) {
			fr_serve(f, &e, e.ctype);
			return 0;
		}
		break;
	}
	fr_not_found(f);
	return 0;
}

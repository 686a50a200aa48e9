/* domxml.c: owns reading a libvirt domain's XML into a VM record: finding
 * the <imds:vm> element, parsing its JSON text, and completing `mac`,
 * `port` and `ipv4` from the domain's interfaces and the XML files of its
 * libvirt networks.  libxml2 parses; nothing here talks to libvirtd.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <libxml/parser.h>
#include <libxml/tree.h>

#include "lib/namelist.h"
#include "libvirt/domxml.h"

#define DOMXML_MAX_IFACES 32

/* One <interface> of type bridge or network. */
struct domxml_iface {
	char mac[32];
	char bridge[64];  /* "" when not known yet */
	char network[256]; /* "" for type bridge */
	char target[64];  /* "" before the tap exists */
	long line;
};

struct domxml_ifaces {
	struct domxml_iface v[DOMXML_MAX_IFACES];
	size_t n;
};

static int domxml_err(struct domxml_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int domxml_err(struct domxml_error *err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err->text, sizeof(err->text), fmt, ap);
	va_end(ap);
	return -EINVAL;
}

static bool domxml_is(const xmlNode *n, const char *name)
{
	return n->type == XML_ELEMENT_NODE && strcmp((const char *)n->name, name) == 0;
}

static xmlNode *domxml_child(const xmlNode *parent, const char *name)
{
	for (xmlNode *c = parent->children; c; c = c->next)
		if (domxml_is(c, name) && !c->ns)
			return c;
	return NULL;
}

/* Copies attribute `attr` of parent's child `name` into buf ("" if absent). */
static void domxml_attr(const xmlNode *parent, const char *name, const char *attr, char *buf, size_t cap)
{
	xmlNode *c = parent ? (name ? domxml_child(parent, name) : (xmlNode *)parent) : NULL;
	xmlChar *v = c ? xmlGetProp(c, (const xmlChar *)attr) : NULL;

	snprintf(buf, cap, "%s", v ? (const char *)v : "");
	xmlFree(v);
}

static xmlDoc *domxml_read(const char *text, size_t len, const char *what, struct domxml_error *err)
{
	xmlDoc *doc = xmlReadMemory(text, (int)len, what, NULL, XML_PARSE_NONET | XML_PARSE_NOERROR |
				    XML_PARSE_NOWARNING);
	const xmlError *e;

	if (doc)
		return doc;
	e = xmlGetLastError();
	domxml_err(err, "%s: line %d: %s", what, e ? e->line : 0, e && e->message ? e->message : "not XML");
	/* libxml2's messages end in a newline */
	err->text[strcspn(err->text, "\n")] = '\0';
	return NULL;
}

/* The <imds:vm> element, NULL when absent; -EINVAL via *rc when repeated. */
static xmlNode *domxml_find_vm(xmlNode *root, int *rc, struct domxml_error *err)
{
	xmlNode *meta = domxml_child(root, "metadata"), *found = NULL;

	*rc = 0;
	if (!meta)
		return NULL;
	for (xmlNode *c = meta->children; c; c = c->next) {
		if (!domxml_is(c, "vm") || !c->ns || strcmp((const char *)c->ns->href, DOMXML_NS) != 0)
			continue;
		if (found) {
			*rc = domxml_err(err, "<metadata> has two <vm xmlns=\"%s\"> elements (lines %ld and %ld)",
					 DOMXML_NS, xmlGetLineNo(found), xmlGetLineNo(c));
			return NULL;
		}
		found = c;
	}
	return found;
}

/* The element's text (CDATA included) as one JSON object. */
static int domxml_parse_json(xmlNode *vm, json_t **out, struct domxml_error *err)
{
	xmlChar *text = xmlNodeGetContent(vm);
	json_error_t je;
	json_t *j;

	if (!text)
		return -ENOMEM;
	j = json_loads((const char *)text, JSON_REJECT_DUPLICATES, &je);
	xmlFree(text);
	if (!j)
		return domxml_err(err, "<imds:vm> (line %ld): JSON line %d column %d: %s", xmlGetLineNo(vm),
				  je.line, je.column, je.text);
	if (!json_is_object(j)) {
		json_decref(j);
		return domxml_err(err, "<imds:vm> (line %ld): the text must be one JSON object (a VM record)",
				  xmlGetLineNo(vm));
	}
	*out = j;
	return 0;
}

/* A network name as a file name: libvirt's names never hold '/'. */
static bool domxml_network_name_ok(const char *name)
{
	return name[0] && name[0] != '.' && !strchr(name, '/');
}

/* The parsed NAME.xml of a libvirt network from the first directory that
 * has it (the running state first by default: it is what dnsmasq uses). */
static xmlDoc *domxml_network(const struct domxml_conf *conf, const char *name, struct domxml_error *err)
{
	char path[4096];
	FILE *f;

	if (!domxml_network_name_ok(name)) {
		domxml_err(err, "network '%s': not a usable network name", name);
		return NULL;
	}
	for (size_t i = 0; i < conf->n_network_dirs; i++) {
		snprintf(path, sizeof(path), "%s/%s.xml", conf->network_dirs[i], name);
		f = fopen(path, "r");
		if (!f)
			continue;
		fclose(f);
		xmlDoc *doc = xmlReadFile(path, NULL, XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
		if (!doc)
			domxml_err(err, "network '%s': %s is not XML", name, path);
		return doc;
	}
	domxml_err(err, "network '%s': no %s.xml in the network directories (IMDS_LIBVIRT_NETWORK_DIRS)", name, name);
	return NULL;
}

/* Depth-first search for the first element called `name` below n. */
static xmlNode *domxml_descendant(xmlNode *n, const char *name)
{
	for (xmlNode *c = n->children; c; c = c->next) {
		if (domxml_is(c, name))
			return c;
		xmlNode *d = domxml_descendant(c, name);
		if (d)
			return d;
	}
	return NULL;
}

/* The ip of <dhcp><host mac=MAC ip=…/> anywhere in the network (under
 * any <ip>, also inside the state file's <networkstatus>). */
static bool domxml_dhcp_ip(xmlNode *n, const char *mac, char *ip, size_t cap)
{
	for (xmlNode *c = n->children; c; c = c->next) {
		if (domxml_is(c, "host") && c->parent && domxml_is(c->parent, "dhcp")) {
			char m[32];
			domxml_attr(c, NULL, "mac", m, sizeof(m));
			domxml_attr(c, NULL, "ip", ip, cap);
			if (strcasecmp(m, mac) == 0 && ip[0])
				return true;
		}
		if (domxml_dhcp_ip(c, mac, ip, cap))
			return true;
	}
	return false;
}

static int domxml_network_bridge(const struct domxml_conf *conf, struct domxml_iface *ifc,
				 struct domxml_error *err)
{
	xmlDoc *doc = domxml_network(conf, ifc->network, err);
	xmlNode *br;

	if (!doc)
		return -EINVAL;
	br = domxml_descendant(xmlDocGetRootElement(doc), "bridge");
	domxml_attr(br, NULL, "name", ifc->bridge, sizeof(ifc->bridge));
	xmlFreeDoc(doc);
	return 0;
}

static bool domxml_served(const struct domxml_conf *conf, const char *bridge)
{
	for (size_t i = 0; bridge[0] && i < conf->n_bridges; i++)
		if (namelist_entry_matches(conf->bridges[i], bridge)) /* imdsd's rule: names or patterns */
			return true;
	return false;
}

/* Reads one <interface>; 1 when it is on a served bridge. */
static int domxml_iface_read(const struct domxml_conf *conf, xmlNode *n, struct domxml_iface *ifc,
			     struct domxml_error *note)
{
	char type[16];
	xmlNode *src = domxml_child(n, "source");

	memset(ifc, 0, sizeof(*ifc));
	ifc->line = xmlGetLineNo(n);
	domxml_attr(n, NULL, "type", type, sizeof(type));
	domxml_attr(n, "mac", "address", ifc->mac, sizeof(ifc->mac));
	domxml_attr(n, "target", "dev", ifc->target, sizeof(ifc->target));
	domxml_attr(src, NULL, "bridge", ifc->bridge, sizeof(ifc->bridge));
	if (strcmp(type, "network") == 0) {
		domxml_attr(src, NULL, "network", ifc->network, sizeof(ifc->network));
		/* Before the start, libvirt has not written the bridge in yet. */
		if (!ifc->bridge[0] && domxml_network_bridge(conf, ifc, note) < 0)
			return 0;
	} else if (strcmp(type, "bridge") != 0) {
		return 0;
	}
	return domxml_served(conf, ifc->bridge);
}

/* Every interface of the domain on a bridge imdsd serves. */
static void domxml_ifaces(const struct domxml_conf *conf, xmlNode *root, struct domxml_ifaces *out,
			  struct domxml_error *note)
{
	xmlNode *devices = domxml_child(root, "devices");

	out->n = 0;
	note->text[0] = '\0';
	for (xmlNode *c = devices ? devices->children : NULL; c && out->n < DOMXML_MAX_IFACES; c = c->next)
		if (domxml_is(c, "interface") && domxml_iface_read(conf, c, &out->v[out->n], note) == 1)
			out->n++;
}

static const char *domxml_record_str(json_t *record, const char *key, struct domxml_error *err, int *rc)
{
	json_t *v = json_object_get(record, key);

	*rc = 0;
	if (v && !json_is_string(v))
		*rc = domxml_err(err, "<imds:vm>: \"%s\" must be a string", key);
	return v ? json_string_value(v) : NULL;
}

/* The interface the record is about: the one whose MAC the record gives,
 * or the only one on a served bridge. */
static int domxml_pick(json_t *record, const struct domxml_ifaces *ifs, const struct domxml_error *note,
		       const struct domxml_iface **out, struct domxml_error *err)
{
	int rc;
	const char *mac = domxml_record_str(record, "mac", err, &rc);

	if (rc < 0)
		return rc;
	for (size_t i = 0; mac && i < ifs->n; i++)
		if (strcasecmp(ifs->v[i].mac, mac) == 0) {
			*out = &ifs->v[i];
			return 0;
		}
	if (mac)
		return domxml_err(err, "<imds:vm>: \"mac\" %s is not the <mac address> of any <interface> on a "
				  "served bridge (IMDS_BRIDGES)%s%s", mac, note->text[0] ? "; " : "", note->text);
	if (ifs->n == 1) {
		*out = &ifs->v[0];
		return 0;
	}
	if (ifs->n == 0)
		return domxml_err(err, "no <interface type='bridge'|'network'> of the domain is on a served bridge "
				  "(IMDS_BRIDGES)%s%s", note->text[0] ? "; " : "", note->text);
	return domxml_err(err, "%zu <interface>s are on served bridges (lines %ld and %ld): give \"mac\" in "
			  "<imds:vm> to pick one", ifs->n, ifs->v[0].line, ifs->v[1].line);
}

static int domxml_set(json_t *record, const char *key, const char *value)
{
	return json_object_set_new(record, key, json_string(value)) == 0 ? 0 : -ENOMEM;
}

static int domxml_fill_ipv4(const struct domxml_conf *conf, json_t *record, const struct domxml_iface *ifc,
			    struct domxml_error *err)
{
	char ip[64];
	xmlDoc *doc;
	bool found;

	if (!ifc->network[0])
		return domxml_err(err, "<imds:vm>: \"ipv4\" is missing and the <interface> (line %ld) is on bridge "
				  "%s, not on a libvirt network whose DHCP could name it", ifc->line, ifc->bridge);
	doc = domxml_network(conf, ifc->network, err);
	if (!doc)
		return -EINVAL;
	found = domxml_dhcp_ip(xmlDocGetRootElement(doc), ifc->mac, ip, sizeof(ip));
	xmlFreeDoc(doc);
	if (!found)
		return domxml_err(err, "<imds:vm>: \"ipv4\" is missing and network '%s' has no <dhcp><host mac='%s' "
				  "ip=…/>", ifc->network, ifc->mac);
	return domxml_set(record, "ipv4", ip);
}

/* Fills in what the record leaves out from the chosen interface. */
static int domxml_complete(const struct domxml_conf *conf, json_t *record, const struct domxml_iface *ifc,
			   struct domxml_error *err)
{
	int rc;
	const char *port = domxml_record_str(record, "port", err, &rc);

	if (rc < 0)
		return rc;
	domxml_record_str(record, "ipv4", err, &rc);
	if (rc < 0)
		return rc;
	if (!json_object_get(record, "mac") && (rc = domxml_set(record, "mac", ifc->mac)) < 0)
		return rc;
	if (!port && conf->need_port) {
		if (!ifc->target[0])
			return domxml_err(err, "<interface> (line %ld, mac %s) has no <target dev=…>: no tap to pin",
					  ifc->line, ifc->mac);
		if ((rc = domxml_set(record, "port", ifc->target)) < 0)
			return rc;
	}
	if (!json_object_get(record, "ipv4") && !conf->tap_only)
		return domxml_fill_ipv4(conf, record, ifc, err);
	return 0;
}

int domxml_record(const char *xml, size_t len, const struct domxml_conf *conf, json_t **record,
		  struct domxml_error *err)
{
	struct domxml_ifaces *ifs = NULL;
	struct domxml_error note;
	const struct domxml_iface *ifc = NULL;
	xmlDoc *doc = domxml_read(xml, len, "domain XML", err);
	xmlNode *root, *vm;
	int rc;

	*record = NULL;
	if (!doc)
		return -EINVAL;
	root = xmlDocGetRootElement(doc);
	if (!root || !domxml_is(root, "domain")) {
		rc = domxml_err(err, "domain XML: the top element is not <domain>");
		goto out;
	}
	vm = domxml_find_vm(root, &rc, err);
	if (!vm)
		goto out;
	if ((rc = domxml_parse_json(vm, record, err)) < 0 || conf->json_only) {
		rc = rc < 0 ? rc : 1;
		goto out;
	}
	ifs = malloc(sizeof(*ifs));
	rc = -ENOMEM;
	if (!ifs)
		goto out;
	domxml_ifaces(conf, root, ifs, &note);
	if ((rc = domxml_pick(*record, ifs, &note, &ifc, err)) < 0 || (rc = domxml_complete(conf, *record, ifc, err)) < 0)
		goto out;
	rc = 1;
out:
	if (rc < 0 && *record) {
		json_decref(*record);
		*record = NULL;
	}
	free(ifs);
	xmlFreeDoc(doc);
	return rc;
}

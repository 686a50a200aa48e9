/* domxml.h: the VM record of a libvirt domain, from its XML.
 *
 * A domain is "ours" when its <metadata> holds
 * <imds:vm xmlns:imds="urn:imds:libvirt:v1">, whose text (CDATA allowed) is
 * one VM object of docs/vm-schema.md.  `mac`, `port` and `ipv4` may be left
 * out: they are taken from the domain's <interface> on a bridge imdsd
 * serves, and `ipv4` from the <dhcp><host> of its libvirt network, read
 * from the network's XML file (a hook must never ask libvirtd).
 * Full validation of the record is the loader's job (`imds-loadmap check`).
 */
#ifndef IMDS_DOMXML_H
#define IMDS_DOMXML_H
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#define DOMXML_NS "urn:imds:libvirt:v1"

struct domxml_conf {
	const char *const *bridges; /* the bridges imdsd serves: names or patterns (lib/namelist.h) */
	size_t n_bridges;
	const char *const *network_dirs; /* where NAME.xml of a network is, in order */
	size_t n_network_dirs;
	bool need_port; /* the tap exists (started, reconnect): `port` is required */
	bool json_only; /* just the record as written (release: the instance-id) */
	bool tap_only;	/* the record is etcd's: only its interface and tap, no ipv4 looked up */
};

/* Error text, e.g. "<imds:vm> (line 12): JSON line 3 column 7: ..." */
struct domxml_error {
	char text[512];
};

/* 1 with *record (a new reference) completed, 0 when the domain has no
 * <imds:vm> (not ours; *record NULL), -EINVAL (bad XML, bad or incomplete
 * record) or -ENOMEM with err set. */
int domxml_record(const char *xml, size_t len, const struct domxml_conf *conf, json_t **record,
		  struct domxml_error *err);

#endif

/* vmconf.h: VM descriptions, read from JSON and validated as a whole.
 * Schema: docs/vm-schema.md.  Errors name the input precisely:
 *   vms.json:7:12: vms[2].mac: "52:54:00:zz:00:01" is not a MAC address
 */
#ifndef IMDS_VMCONF_H
#define IMDS_VMCONF_H
#include <jansson.h>
#include <stddef.h>

#include "compile/vmconf_desc.h"

/* The most VMs one file may describe: the largest VM table a store can be
 * created with (store.h, STORE_MAX_VMS_LIMIT); whether they fit the store
 * at hand is the loader's check. */
#define VMCONF_VMS_MAX 1048575

struct vm_set {
	char *source; /* file name as given, for messages */
	char *text;   /* the whole input, for error positions */
	size_t text_len;
	json_t *root;
	struct vm_desc *vms;
	size_t n;
};

struct conf_error {
	char text[1024];
};

/* 0, or -EINVAL with err->text set; on error *out is left empty. */
int vmconf_parse(const char *source, const char *text, size_t len, struct vm_set *out, struct conf_error *err);
int vmconf_load_file(const char *path, struct vm_set *out, struct conf_error *err);
void vmconf_free(struct vm_set *set);

/* Formats "source:line:col: json_path: message" for a value of the set, for
 * checks made later (e.g. a MAC already used by another loaded VM).
 * json_path is like "vms[2].mac".  Returns -EINVAL for convenience. */
int vmconf_error_at(const struct vm_set *set, struct conf_error *err, const char *json_path, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

#endif

/* vmconf.c: loads a file of VM descriptions (schema: docs/vm-schema.md):
 * each VM record is checked against one schema table, its EC2 fields
 * (vmconf_ec2.c) and a section per metadata flavor (flavor_table.c), and
 * the file as a whole (no two VMs share an instance-id, MAC or IPv4).  The
 * first error is reported as
 *   SOURCE:LINE:COL: JSON_PATH: message
 * (lib/schema.h). */
#include "compile/vmconf.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "compile/flavor_table.h"
#include "compile/vmconf_ec2.h"
#include "compile/vmconf_iam.h"
#include "lib/schema.h"

#define VC_FILE_MAX (256u << 20) /* a whole host's VMs with maximal user-data fit easily */

static void vc_ctx(const struct vm_set *set, struct conf_error *err, struct schema_ctx *c)
{
	*c = (struct schema_ctx){
		.source = set->source,
		.text = set->text,
		.text_len = set->text_len,
		.err = err->text,
		.errlen = sizeof(err->text),
	};
}

int vmconf_error_at(const struct vm_set *set, struct conf_error *err, const char *json_path, const char *fmt, ...)
{
	struct schema_ctx c;
	va_list ap;

	vc_ctx(set, err, &c);
	va_start(ap, fmt);
	schema_vfail(&c, json_path ? json_path : "", fmt, ap);
	va_end(ap);
	return -EINVAL;
}

/* --- a VM, the file --- */

/* One record: EC2's fields in their order, then each flavor's section.
 * Built per load (the two tables live in separate modules); free it. */
static struct schema_field *vc_record_fields(size_t *n)
{
	struct schema_field *f = calloc(vmconf_ec2_nfields + flavor_count, sizeof(*f));

	if (!f)
		return NULL;
	memcpy(f, vmconf_ec2_fields, vmconf_ec2_nfields * sizeof(*f));
	for (size_t i = 0; i < flavor_count; i++)
		f[vmconf_ec2_nfields + i] = (struct schema_field){ flavor_table[i].name, false, flavor_table[i].check };
	*n = vmconf_ec2_nfields + flavor_count;
	return f;
}

static int vc_parse_vms(struct schema_ctx *c, void *target, json_t *vms, const char *path)
{
	struct vm_set *set = target;
	struct schema_field *f;
	size_t i, n = 0;
	json_t *val;
	int rc = 0;

	if (!json_is_array(vms))
		return schema_expect(c, path, vms, "an array");
	if (json_array_size(vms) > VMCONF_VMS_MAX)
		return schema_fail(c, path, "%zu VMs, more than the %d the largest store holds", json_array_size(vms),
				   VMCONF_VMS_MAX);
	set->vms = calloc(json_array_size(vms) ? json_array_size(vms) : 1, sizeof(*set->vms));
	f = vc_record_fields(&n);
	if (!set->vms || !f) {
		free(f);
		return -ENOMEM;
	}
	json_array_foreach(vms, i, val) {
		struct vm_desc *vm = &set->vms[i];

		set->n++;
		snprintf(vm->json_path, sizeof(vm->json_path), "vms[%zu]", i);
		vm->record = val;
		vm->http_tokens = IMDS_TOKENS_OPTIONAL;
		vm->hop_limit = 1;
		rc = schema_object(c, vm, val, vm->json_path, f, n, "field");
		if (rc)
			break;
	}
	free(f);
	return rc;
}

static int vc_parse_root(struct schema_ctx *c, struct vm_set *set)
{
	static const struct schema_field root[] = {
		{ "vms", true, vc_parse_vms },
	};

	if (!json_is_object(set->root))
		return schema_fail(c, "", "expected an object with a \"vms\" array, not %s", schema_type_name(set->root));
	return schema_object(c, set, set->root, "", root, 1, "field");
}

static int vc_duplicate(struct schema_ctx *c, const struct vm_set *set, size_t i, size_t j, const char *field)
{
	const struct vm_desc *a = &set->vms[i];
	char path[64], q[SCHEMA_QUOTE_MAX];

	snprintf(path, sizeof(path), "%s.%s", a->json_path, field);
	schema_quote_json(json_object_get(a->record, field), q);
	return schema_fail(c, path, "%s duplicates %s.%s", q, set->vms[j].json_path, field);
}

/* One IPv6 address in two VMs' "ipv6" lists: the second is reported. */
static int vc_check_ipv6_shared(struct schema_ctx *c, const struct vm_desc *v, size_t i, size_t j)
{
	char path[64], text[INET6_ADDRSTRLEN];

	for (unsigned a = 0; a < v[i].n_ipv6; a++)
		for (unsigned b = 0; b < v[j].n_ipv6; b++) {
			if (memcmp(v[i].ipv6[a], v[j].ipv6[b], 16))
				continue;
			snprintf(path, sizeof(path), "%s.ipv6[%u]", v[i].json_path, a);
			inet_ntop(AF_INET6, v[i].ipv6[a], text, sizeof(text));
			return schema_fail(c, path, "\"%s\" duplicates %s.ipv6[%u]", text, v[j].json_path, b);
		}
	return 0;
}

/* Two VMs with one MAC or IPv4 would make the data plane's binding
 * ambiguous; one instance-id would make them one VM to the store. */
static int vc_check_duplicates(struct schema_ctx *c, const struct vm_set *set)
{
	const struct vm_desc *v = set->vms;

	for (size_t i = 1; i < set->n; i++) {
		for (size_t j = 0; j < i; j++) {
			if (!strcmp(v[i].instance_id, v[j].instance_id))
				return vc_duplicate(c, set, i, j, "instance-id");
			if (!memcmp(v[i].mac, v[j].mac, 6))
				return vc_duplicate(c, set, i, j, "mac");
			if (v[i].ipv4 == v[j].ipv4)
				return vc_duplicate(c, set, i, j, "ipv4");
			if (vc_check_ipv6_shared(c, v, i, j))
				return -EINVAL;
		}
	}
	return 0;
}

static int vc_load_json(struct vm_set *set, struct conf_error *err)
{
	json_error_t jerr;

	set->root = json_loadb(set->text, set->text_len, JSON_REJECT_DUPLICATES, &jerr);
	if (set->root)
		return 0;
	snprintf(err->text, sizeof(err->text), "%s:%d:%d: %s", set->source, jerr.line, jerr.column, jerr.text);
	return -EINVAL;
}

static int vc_check_set(struct vm_set *set, struct conf_error *err)
{
	struct vmconf_env env = { .now = "" };
	time_t now = time(NULL);
	struct schema_ctx c;
	struct tm tm;
	int rc;

	if (gmtime_r(&now, &tm))
		strftime(env.now, sizeof(env.now), "%Y-%m-%dT%H:%M:%SZ", &tm);
	vc_ctx(set, err, &c);
	c.env = &env;
	rc = vc_parse_root(&c, set);
	if (!rc)
		rc = vc_check_duplicates(&c, set);
	return rc;
}

int vmconf_parse(const char *source, const char *text, size_t len, struct vm_set *out, struct conf_error *err)
{
	int rc = -ENOMEM;

	memset(out, 0, sizeof(*out));
	err->text[0] = '\0';
	out->source = strdup(source ? source : "<input>");
	out->text = malloc(len + 1);
	if (!out->source || !out->text)
		goto out;
	memcpy(out->text, text, len);
	out->text[len] = '\0';
	out->text_len = len;
	rc = vc_load_json(out, err);
	if (!rc)
		rc = vc_check_set(out, err);
out:
	if (rc == -ENOMEM && !err->text[0])
		snprintf(err->text, sizeof(err->text), "%s: out of memory", source ? source : "<input>");
	if (rc)
		vmconf_free(out);
	return rc;
}

static int vc_read_file(const char *path, char **text, size_t *len)
{
	struct stat st;
	char *buf = NULL;
	size_t got = 0;
	int fd, rc = 0;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st)) {
		rc = -errno;
		goto out;
	}
	if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size > VC_FILE_MAX) {
		rc = S_ISREG(st.st_mode) ? -EFBIG : -EINVAL;
		goto out;
	}
	buf = malloc((size_t)st.st_size + 1);
	if (!buf) {
		rc = -ENOMEM;
		goto out;
	}
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			rc = n < 0 ? -errno : -EIO;
			goto out;
		}
		got += (size_t)n;
	}
	*text = buf;
	*len = got;
	buf = NULL;
out:
	free(buf);
	close(fd);
	return rc;
}

int vmconf_load_file(const char *path, struct vm_set *out, struct conf_error *err)
{
	char *text = NULL;
	size_t len = 0;
	int rc = vc_read_file(path, &text, &len);

	memset(out, 0, sizeof(*out));
	if (rc) {
		snprintf(err->text, sizeof(err->text), "%s: %s", path,
			 rc == -EINVAL ? "not a regular file" : strerror(-rc));
		return rc;
	}
	rc = vmconf_parse(path, text, len, out, err);
	free(text);
	return rc;
}

void vmconf_free(struct vm_set *set)
{
	for (size_t i = 0; set->vms && i < set->n; i++) {
		struct vm_desc *vm = &set->vms[i];

		for (size_t k = 0; k < vm->n_keys; k++) {
			free(vm->keys[k].name);
			free(vm->keys[k].openssh_key);
		}
		free(vm->keys);
		free(vm->user_data);
		free(vm->name);
		vmconf_free_iam(vm->iam);
	}
	free(set->vms);
	json_decref(set->root);
	free(set->text);
	free(set->source);
	memset(set, 0, sizeof(*set));
}


/* schema.c: the field-table walk and the positioned error messages every
 * input check shares (schema.h). */
#include "lib/schema.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "lib/jsonpos.h"

int schema_vfail(struct schema_ctx *c, const char *path, const char *fmt, va_list ap)
{
	const char *src = c->source ? c->source : "<input>";
	const char *sep = *path ? ": " : "";
	int line, col, n;
	size_t off;

	if (!c->errlen)
		return -EINVAL;
	if (c->text && jsonpos_find(c->text, c->text_len, path, &off) == 0) {
		jsonpos_line_col(c->text, c->text_len, off, &line, &col);
		n = snprintf(c->err, c->errlen, "%s:%d:%d: %s%s", src, line, col, path, sep);
	} else {
		n = snprintf(c->err, c->errlen, "%s: %s%s", src, path, sep);
	}
	if (n >= 0 && (size_t)n < c->errlen)
		vsnprintf(c->err + n, c->errlen - (size_t)n, fmt, ap);
	return -EINVAL;
}

int schema_fail(struct schema_ctx *c, const char *path, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	schema_vfail(c, path, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

const char *schema_type_name(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT:
		return "an object";
	case JSON_ARRAY:
		return "an array";
	case JSON_STRING:
		return "a string";
	case JSON_INTEGER:
		return "an integer";
	case JSON_REAL:
		return "a number";
	case JSON_TRUE:
		return "true";
	case JSON_FALSE:
		return "false";
	default:
		return "null";
	}
}

int schema_expect(struct schema_ctx *c, const char *path, const json_t *v, const char *want)
{
	return schema_fail(c, path, "expected %s, not %s", want, schema_type_name(v));
}

void schema_quote(const char *s, size_t len, char out[SCHEMA_QUOTE_MAX])
{
	size_t o = 0, i;

	out[o++] = '"';
	for (i = 0; i < len && o + 10 < SCHEMA_QUOTE_MAX; i++) {
		unsigned char ch = (unsigned char)s[i];

		if (ch == '"' || ch == '\\')
			o += (size_t)sprintf(out + o, "\\%c", ch);
		else if (ch < 0x20 || ch == 0x7f)
			o += (size_t)sprintf(out + o, "\\u%04x", ch);
		else
			out[o++] = (char)ch;
	}
	if (i < len) {
		/* back to the start of a cut UTF-8 sequence */
		while (o > 1 && ((unsigned char)out[o - 1] & 0xc0) == 0x80)
			o--;
		if (o > 1 && ((unsigned char)out[o - 1] & 0xc0) == 0xc0)
			o--;
		memcpy(out + o, "...", 3);
		o += 3;
	}
	out[o++] = '"';
	out[o] = '\0';
}

void schema_quote_json(const json_t *v, char out[SCHEMA_QUOTE_MAX])
{
	schema_quote(json_string_value(v), json_string_length(v), out);
}

void schema_key_path(char *out, size_t cap, const char *path, const char *key)
{
	size_t len = (size_t)snprintf(out, cap, "%s", path);

	if (len < cap)
		jsonpos_append_key(out, cap, len, key);
}

void schema_index_path(char *out, size_t cap, const char *path, size_t i)
{
	snprintf(out, cap, "%s[%zu]", path, i);
}

static const struct schema_field *schema_find(const struct schema_field *f, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(f[i].name, name))
			return &f[i];
	return NULL;
}

int schema_object(struct schema_ctx *c, void *target, json_t *obj, const char *path, const struct schema_field *f,
		  size_t n, const char *what)
{
	char sub[SCHEMA_PATH_MAX];
	const char *key;
	json_t *val;

	if (!json_is_object(obj))
		return schema_expect(c, path, obj, "an object");
	json_object_foreach(obj, key, val) {
		if (!schema_find(f, n, key)) {
			schema_key_path(sub, sizeof(sub), path, key);
			return schema_fail(c, sub, "unknown %s", what);
		}
	}
	for (size_t i = 0; i < n; i++) {
		int rc;

		val = json_object_get(obj, f[i].name);
		if (!val) {
			if (f[i].required)
				return schema_fail(c, path, "missing required %s \"%s\"", what, f[i].name);
			continue;
		}
		if (!f[i].check)
			continue;
		schema_key_path(sub, sizeof(sub), path, f[i].name);
		rc = f[i].check(c, target, val, sub);
		if (rc)
			return rc;
	}
	return 0;
}

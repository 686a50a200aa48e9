/* schema.h: checking a JSON document against tables of fields, with errors
 * that point at the offending value:
 *   SOURCE:LINE:COL: JSON_PATH: message
 * LINE:COL are found by rescanning the input text (jsonpos.h), since
 * jansson keeps no positions of values.  JSON paths are written as
 * jsonpos.h describes ("vms[2].meta-data.placement").  The VM record's
 * EC2 fields and every metadata flavor's section are checked with it. */
#ifndef IMDS_SCHEMA_H
#define IMDS_SCHEMA_H
#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

#define SCHEMA_PATH_MAX 2048 /* JSON paths in messages */
#define SCHEMA_QUOTE_MAX 80  /* a value quoted in a message, "..." included */
/* Letters and digits, for the allowed-character sets of checks. */
#define SCHEMA_ALNUM "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

/* One check of one input.  The first error's message goes to err. */
struct schema_ctx {
	const char *source; /* the input's name; NULL: "<input>" */
	const char *text;   /* the input, for positions; NULL: none */
	size_t text_len;
	char *err;
	size_t errlen;
	void *env; /* the caller's, for its checks */
};

/* Checks (and may take in) the value `v` found at `path`; `target` is
 * what the enclosing object describes, passed through.  0, -EINVAL after
 * schema_fail, or -ENOMEM. */
typedef int schema_check_fn(struct schema_ctx *c, void *target, json_t *v, const char *path);

struct schema_field {
	const char *name;
	bool required;
	schema_check_fn *check; /* NULL: any value */
};

/* Writes "SOURCE:LINE:COL: PATH: message" (without LINE:COL when the
 * path is not found in the text, without "PATH: " when it is "").
 * Returns -EINVAL. */
int schema_fail(struct schema_ctx *c, const char *path, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int schema_vfail(struct schema_ctx *c, const char *path, const char *fmt, va_list ap);

/* "expected WANT, not an array": -EINVAL. */
int schema_expect(struct schema_ctx *c, const char *path, const json_t *v, const char *want);

/* "an object", "a string", "null", ...: a JSON value's type for messages. */
const char *schema_type_name(const json_t *v);

/* A value for a message: JSON-quoted, control characters escaped, cut to
 * about SCHEMA_QUOTE_MAX bytes on a character boundary ("abc..."). */
void schema_quote(const char *s, size_t len, char out[SCHEMA_QUOTE_MAX]);
void schema_quote_json(const json_t *v, char out[SCHEMA_QUOTE_MAX]);

/* `obj` must be an object whose keys are all in fields[0..n): an unknown
 * key is reported first ("unknown WHAT", typo protection), then each field
 * is checked in table order, so a check may rely on the fields before it;
 * a missing required one is reported at the object itself ("missing
 * required WHAT \"name\""). */
int schema_object(struct schema_ctx *c, void *target, json_t *obj, const char *path, const struct schema_field *f,
		  size_t n, const char *what);

/* The path of member `key` below `path` (as jsonpos_append_key writes
 * it) and of element `i` ("path[i]"); truncated to fit `cap`. */
void schema_key_path(char *out, size_t cap, const char *path, const char *key);
void schema_index_path(char *out, size_t cap, const char *path, size_t i);

#endif

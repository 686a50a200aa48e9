/* awsjson.c: renders jansson values in EC2's document layout (see
 * awsjson.h), and JSON numbers as text for metadata leaves. */
#include "lib/awsjson.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int aj_value(const json_t *v, int depth, struct outbuf *out);

int awsjson_string(const char *s, size_t len, struct outbuf *out)
{
	static const char short_esc[] = { ['\b'] = 'b', ['\t'] = 't', ['\n'] = 'n', ['\f'] = 'f', ['\r'] = 'r' };
	size_t start = 0;

	if (outbuf_append(out, "\"", 1))
		return -ENOMEM;
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)s[i];
		char esc[8];

		if (ch >= 0x20 && ch != '"' && ch != '\\')
			continue;
		if (ch == '"' || ch == '\\')
			snprintf(esc, sizeof(esc), "\\%c", ch);
		else if (ch < sizeof(short_esc) && short_esc[ch])
			snprintf(esc, sizeof(esc), "\\%c", short_esc[ch]);
		else
			snprintf(esc, sizeof(esc), "\\u%04x", ch);
		if (outbuf_append(out, s + start, i - start) || outbuf_puts(out, esc))
			return -ENOMEM;
		start = i + 1;
	}
	if (outbuf_append(out, s + start, len - start) || outbuf_append(out, "\"", 1))
		return -ENOMEM;
	return 0;
}

int awsjson_number(const json_t *v, char *buf, size_t cap)
{
	double d;
	int n = 0;

	if (json_is_integer(v))
		return snprintf(buf, cap, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
	if (!json_is_real(v))
		return -EINVAL;
	d = json_real_value(v);
	/* Fewest digits that read back as the same double (17 always do). */
	for (int prec = 1; prec <= 17; prec++) {
		n = snprintf(buf, cap, "%.*g", prec, d);
		if (strtod(buf, NULL) == d)
			break;
	}
	/* %g switches to an exponent once the digits run out (100 -> "1e+02");
	 * whole numbers of a plausible size read better written out. */
	if (n > 0 && strchr(buf, 'e') && d > -1e17 && d < 1e17 && d == (double)(long long)d)
		n = snprintf(buf, cap, "%.0f", d);
	if (n > 0 && (size_t)n + 2 < cap && !strpbrk(buf, ".eEn")) {
		memcpy(buf + n, ".0", 3); /* still a real: 2.0, not 2 */
		n += 2;
	}
	return n;
}

static int aj_indent(int depth, struct outbuf *out)
{
	if (outbuf_append(out, "\n", 1))
		return -ENOMEM;
	for (int i = 0; i < depth; i++)
		if (outbuf_append(out, "  ", 2))
			return -ENOMEM;
	return 0;
}

static int aj_object(const json_t *v, int depth, struct outbuf *out)
{
	const char *key;
	json_t *val;
	int first = 1;

	if (json_object_size(v) == 0)
		return outbuf_puts(out, "{ }");
	if (outbuf_append(out, "{", 1))
		return -ENOMEM;
	json_object_foreach((json_t *)v, key, val) {
		if ((!first && outbuf_append(out, ",", 1)) || aj_indent(depth + 1, out) ||
		    awsjson_string(key, strlen(key), out) || outbuf_puts(out, " : ") || aj_value(val, depth + 1, out))
			return -ENOMEM;
		first = 0;
	}
	if (aj_indent(depth, out) || outbuf_append(out, "}", 1))
		return -ENOMEM;
	return 0;
}

/* Arrays stay on one line and do not deepen the indentation of objects
 * inside them (Jackson's inline array indenter). */
static int aj_array(const json_t *v, int depth, struct outbuf *out)
{
	size_t i;
	json_t *el;

	if (json_array_size(v) == 0)
		return outbuf_puts(out, "[ ]");
	if (outbuf_puts(out, "[ "))
		return -ENOMEM;
	json_array_foreach((json_t *)v, i, el) {
		if ((i && outbuf_puts(out, ", ")) || aj_value(el, depth, out))
			return -ENOMEM;
	}
	return outbuf_puts(out, " ]");
}

static int aj_value(const json_t *v, int depth, struct outbuf *out)
{
	char num[40];

	switch (json_typeof(v)) {
	case JSON_OBJECT:
		return aj_object(v, depth, out);
	case JSON_ARRAY:
		return aj_array(v, depth, out);
	case JSON_STRING:
		return awsjson_string(json_string_value(v), json_string_length(v), out);
	case JSON_INTEGER:
	case JSON_REAL:
		awsjson_number(v, num, sizeof(num));
		return outbuf_puts(out, num);
	case JSON_TRUE:
		return outbuf_puts(out, "true");
	case JSON_FALSE:
		return outbuf_puts(out, "false");
	default:
		return outbuf_puts(out, "null");
	}
}

int awsjson_render(const json_t *v, struct outbuf *out)
{
	return aj_value(v, 0, out);
}

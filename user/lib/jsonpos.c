/* jsonpos.c: finds the byte position of a value in JSON text by path, for
 * error messages (see jsonpos.h).  A small scanner over text jansson has
 * already accepted; every read is still bounds-checked, so text that is not
 * JSON makes a lookup fail, never overrun. */
#include "lib/jsonpos.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

struct jp {
	const char *t;
	size_t len;
	size_t pos;
};

static int jp_peek(const struct jp *s)
{
	return s->pos < s->len ? (unsigned char)s->t[s->pos] : -1;
}

static bool jp_is_ws(int c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static void jp_skip_ws(struct jp *s)
{
	while (jp_is_ws(jp_peek(s)))
		s->pos++;
}

/* From the opening quote to just past the closing one. */
static int jp_skip_string(struct jp *s)
{
	s->pos++;
	while (s->pos < s->len) {
		char c = s->t[s->pos++];

		if (c == '"')
			return 0;
		if (c == '\\')
			s->pos++;
	}
	return -ENOENT;
}

/* Skips one value of any kind: containers by depth counting (strings
 * skipped whole, so brackets inside them do not count), scalars up to the
 * next separator. */
static int jp_skip_value(struct jp *s)
{
	size_t depth = 0;

	jp_skip_ws(s);
	for (;;) {
		int c = jp_peek(s);

		if (c < 0)
			return depth ? -ENOENT : 0;
		if (c == '"') {
			if (jp_skip_string(s))
				return -ENOENT;
			if (!depth)
				return 0;
			continue;
		}
		if (!depth && (c == ',' || c == '}' || c == ']' || jp_is_ws(c)))
			return 0;
		s->pos++;
		if (c == '{' || c == '[')
			depth++;
		else if ((c == '}' || c == ']') && --depth == 0)
			return 0;
	}
}

static int jp_hex4(struct jp *s, uint32_t *out)
{
	uint32_t v = 0;

	for (int i = 0; i < 4; i++) {
		int c = jp_peek(s);

		if (c >= '0' && c <= '9')
			v = v * 16 + (uint32_t)(c - '0');
		else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f')
			v = v * 16 + (uint32_t)((c | 0x20) - 'a' + 10);
		else
			return -ENOENT;
		s->pos++;
	}
	*out = v;
	return 0;
}

static int jp_utf8(uint32_t cp, uint8_t out[4])
{
	if (cp < 0x80) {
		out[0] = (uint8_t)cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = (uint8_t)(0xc0 | cp >> 6);
		out[1] = (uint8_t)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		out[0] = (uint8_t)(0xe0 | cp >> 12);
		out[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
		out[2] = (uint8_t)(0x80 | (cp & 0x3f));
		return 3;
	}
	out[0] = (uint8_t)(0xf0 | cp >> 18);
	out[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3f));
	out[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
	out[3] = (uint8_t)(0x80 | (cp & 0x3f));
	return 4;
}

/* A \uXXXX escape (the "\u" already consumed), joining a surrogate pair. */
static int jp_unicode_escape(struct jp *s, uint8_t out[4])
{
	uint32_t cp, lo;

	if (jp_hex4(s, &cp))
		return -1;
	if (cp >= 0xd800 && cp < 0xdc00 && s->pos + 1 < s->len && s->t[s->pos] == '\\' && s->t[s->pos + 1] == 'u') {
		s->pos += 2;
		if (jp_hex4(s, &lo) || lo < 0xdc00 || lo > 0xdfff)
			return -1;
		cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
	}
	return jp_utf8(cp, out);
}

/* Next decoded bytes of a string body: 1..4 bytes, 0 at the closing quote
 * (consumed), -1 on malformed text. */
static int jp_string_next(struct jp *s, uint8_t out[4])
{
	static const char esc_in[] = "\"\\/bfnrt";
	static const char esc_out[] = "\"\\/\b\f\n\r\t";
	const char *e;
	int c = jp_peek(s);

	if (c < 0)
		return -1;
	s->pos++;
	if (c == '"')
		return 0;
	if (c != '\\') {
		out[0] = (uint8_t)c;
		return 1;
	}
	c = jp_peek(s);
	s->pos++;
	if (c == 'u')
		return jp_unicode_escape(s, out);
	e = c > 0 ? strchr(esc_in, c) : NULL;
	if (!e)
		return -1;
	out[0] = (uint8_t)esc_out[e - esc_in];
	return 1;
}

/* Reads a key (at its opening quote); returns how many bytes of `path` it
 * equals as a whole, or -1 if it is not a prefix of `path`. */
static ssize_t jp_key_match(struct jp *s, const char *path, size_t plen)
{
	uint8_t buf[4];
	size_t m = 0;
	bool ok = true;
	int n;

	s->pos++;
	while ((n = jp_string_next(s, buf)) > 0) {
		if (ok && m + (size_t)n <= plen && !memcmp(path + m, buf, (size_t)n))
			m += (size_t)n;
		else
			ok = false;
	}
	return n == 0 && ok ? (ssize_t)m : -1;
}

static int jp_find(struct jp *s, const char *p, size_t plen, bool root, size_t *off);

/* Skips the value at s->pos and the ',' after it, landing on the next
 * element of an array or member of an object; -ENOENT at the end. */
static int jp_skip_element(struct jp *s)
{
	if (jp_skip_value(s))
		return -ENOENT;
	jp_skip_ws(s);
	if (jp_peek(s) != ',')
		return -ENOENT;
	s->pos++;
	return 0;
}

static int jp_find_index(struct jp *s, const char *p, size_t plen, size_t *off)
{
	size_t i = 1, idx = 0;

	for (; i < plen && p[i] >= '0' && p[i] <= '9'; i++)
		idx = idx * 10 + (size_t)(p[i] - '0');
	if (i == 1 || i >= plen || p[i] != ']' || jp_peek(s) != '[')
		return -ENOENT;
	s->pos++;
	for (size_t n = 0;; n++) {
		jp_skip_ws(s);
		if (jp_peek(s) == ']' || jp_peek(s) < 0)
			return -ENOENT;
		if (n == idx)
			return jp_find(s, p + i + 1, plen - i - 1, false, off);
		if (jp_skip_element(s))
			return -ENOENT;
	}
}

/* Finds a member of the object at s->pos and goes on with the rest of the
 * path in its value.  Exact mode (rest != NULL): the key equals p[0..plen)
 * and the search continues with `rest`.  Prefix mode (rest == NULL): the
 * key is a prefix of p ending at a separator, and the search continues
 * after it; a key that fails is skipped and the next one tried. */
static int jp_find_member(struct jp *s, const char *p, size_t plen, const char *rest, size_t rlen, size_t *off)
{
	if (jp_peek(s) != '{')
		return -ENOENT;
	s->pos++;
	for (;;) {
		ssize_t m;
		size_t value;
		bool fits;

		jp_skip_ws(s);
		if (jp_peek(s) != '"')
			return -ENOENT;
		m = jp_key_match(s, p, plen);
		jp_skip_ws(s);
		if (jp_peek(s) != ':')
			return -ENOENT;
		s->pos++;
		jp_skip_ws(s);
		value = s->pos;
		fits = m >= 0 && ((size_t)m == plen || (!rest && (p[m] == '.' || p[m] == '[')));
		if (fits && jp_find(s, rest ? rest : p + m, rest ? rlen : plen - (size_t)m, false, off) == 0)
			return 0;
		s->pos = value; /* not this member: skip its value */
		if (jp_skip_element(s))
			return -ENOENT;
	}
}

/* A ["quoted key"] component: decoded, then matched exactly. */
static int jp_find_quoted(struct jp *s, const char *p, size_t plen, size_t *off)
{
	struct jp q = { .t = p, .len = plen, .pos = 2 }; /* after '["' */
	char *key = malloc(plen);
	size_t klen = 0;
	uint8_t buf[4];
	int n, rc = -ENOENT;

	if (!key)
		return -ENOMEM;
	/* Decoding never grows a string, so plen bytes are enough. */
	while ((n = jp_string_next(&q, buf)) > 0) {
		memcpy(key + klen, buf, (size_t)n);
		klen += (size_t)n;
	}
	if (n == 0 && q.pos < plen && p[q.pos] == ']')
		rc = jp_find_member(s, key, klen, p + q.pos + 1, plen - q.pos - 1, off);
	free(key);
	return rc;
}

static int jp_find(struct jp *s, const char *p, size_t plen, bool root, size_t *off)
{
	jp_skip_ws(s);
	if (plen == 0) {
		*off = s->pos;
		return s->pos < s->len ? 0 : -ENOENT;
	}
	if (p[0] == '[' && plen > 1 && p[1] == '"')
		return jp_find_quoted(s, p, plen, off);
	if (p[0] == '[')
		return jp_find_index(s, p, plen, off);
	if (!root) {
		if (p[0] != '.')
			return -ENOENT;
		p++;
		plen--;
	}
	return jp_find_member(s, p, plen, NULL, 0, off);
}

int jsonpos_find(const char *text, size_t len, const char *path, size_t *offset)
{
	struct jp s = { .t = text, .len = len, .pos = 0 };

	return jp_find(&s, path, strlen(path), true, offset);
}

static void jp_put(char *buf, size_t cap, size_t *len, const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++, (*len)++)
		if (*len + 1 < cap)
			buf[*len] = s[i];
}

static bool jp_key_is_plain(const char *key)
{
	if (!*key)
		return false;
	for (; *key; key++)
		if (strchr(".[]\"", *key) || (unsigned char)*key < 0x20 || *key == 0x7f)
			return false;
	return true;
}

size_t jsonpos_append_key(char *buf, size_t cap, size_t len, const char *key)
{
	if (jp_key_is_plain(key)) {
		if (len)
			jp_put(buf, cap, &len, ".", 1);
		jp_put(buf, cap, &len, key, strlen(key));
	} else {
		jp_put(buf, cap, &len, "[\"", 2);
		for (; *key; key++) {
			unsigned char ch = (unsigned char)*key;
			char esc[8];

			if (ch == '"' || ch == '\\')
				snprintf(esc, sizeof(esc), "\\%c", ch);
			else if (ch < 0x20 || ch == 0x7f)
				snprintf(esc, sizeof(esc), "\\u%04x", ch);
			else
				snprintf(esc, sizeof(esc), "%c", ch);
			jp_put(buf, cap, &len, esc, strlen(esc));
		}
		jp_put(buf, cap, &len, "\"]", 2);
	}
	if (cap)
		buf[len < cap ? len : cap - 1] = '\0';
	return len;
}

void jsonpos_line_col(const char *text, size_t len, size_t offset, int *line, int *col)
{
	int l = 1, c = 1;

	for (size_t i = 0; i < offset && i < len; i++) {
		unsigned char ch = (unsigned char)text[i];

		if (ch == '\n') {
			l++;
			c = 1;
		} else if ((ch & 0xc0) != 0x80) { /* not a UTF-8 continuation byte */
			c++;
		}
	}
	*line = l;
	*col = c;
}

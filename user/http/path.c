/* path.c: request target to lookup path (path.h): the absolute form's
 * authority skipped, the query and fragment dropped, %HH escapes decoded,
 * then "//", "." and ".." resolved (RFC 3986 §5.2.4).  Runs once per
 * request, before the router picks EC2 or a flavor, so it is written for
 * speed: direct byte compares, no printf, one copy into a stack buffer. */
#include "http/path.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>
#include <strings.h>

/* Skips "http://host" of an absolute-form target (RFC 7230 §5.3.2), which
 * a client sends when it believes it talks to a proxy. */
static size_t path_skip_authority(const char *url, size_t len)
{
	static const char *const schemes[] = { "http://", "https://" };

	/* The origin form, nearly every request's, starts with its path. */
	if (len > 0 && url[0] == '/')
		return 0;
	for (size_t i = 0; i < 2; i++) {
		size_t n = strlen(schemes[i]);

		if (len >= n && strncasecmp(url, schemes[i], n) == 0) {
			const char *slash = memchr(url + n, '/', len - n);

			return slash ? (size_t)(slash - url) : len;
		}
	}
	return 0;
}

/* Applies one segment to out ("/a/b/" form, always ending in '/'). */
static int path_push_segment(char *out, size_t *olen, size_t cap, const char *seg, size_t n)
{
	if (n == 0 || (n == 1 && seg[0] == '.'))
		return 0;
	if (n == 2 && seg[0] == '.' && seg[1] == '.') {
		/* Drop the last segment; at the root ".." stays at the root. */
		if (*olen > 1) {
			(*olen)--;
			while (out[*olen - 1] != '/')
				(*olen)--;
		}
		return 0;
	}
	/* The '/' may take the NUL's place for now: the caller drops it or
	 * checks that the NUL still fits. */
	if (*olen + n + 1 > cap)
		return -EINVAL;
	memcpy(out + *olen, seg, n);
	*olen += n;
	out[(*olen)++] = '/';
	return 0;
}

/* Length of the run of url[0..len) before the first `a`, `b` or NUL
 * (compared directly: strchr per byte cost more than the rest of the
 * normalisation). */
static size_t path_span(const char *url, size_t len, char a, char b)
{
	size_t i = 0;

	while (i < len && url[i] && url[i] != a && url[i] != b)
		i++;
	return i;
}

int path_hex(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	ch = (char)(ch | 0x20);
	return ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
}

/* Decodes %HH escapes (RFC 3986 §2.1) of in[0..len) into out, which holds
 * cap bytes.  Clients escape what is unsafe in a URL (Python's requests
 * sends a key "a b" as "a%20b", "100%" as "100%25"), and tree lookups are
 * exact, so decoding reaches only what is in the tree.  A '%' without two
 * hex digits stays as is; %00 is refused.  The length, or -EINVAL. */
static int path_percent_decode(const char *in, size_t len, char *out, size_t cap)
{
	size_t o = 0;

	if (len >= cap)
		return -EINVAL;
	for (size_t i = 0; i < len; i++) {
		int hi = in[i] == '%' && i + 2 < len ? path_hex(in[i + 1]) : -1;
		int lo = hi >= 0 ? path_hex(in[i + 2]) : -1;

		if (lo < 0) {
			out[o++] = in[i];
			continue;
		}
		if (hi == 0 && lo == 0)
			return -EINVAL;
		out[o++] = (char)(hi << 4 | lo);
		i += 2;
	}
	out[o] = '\0';
	return (int)o;
}

/* Whether p[0..n) (p[0] == '/', no NUL) is its own normal form: no
 * escape, no empty segment but a trailing one, no "." or "..".  What
 * clients send nearly always is, and is then copied as it is. */
static bool path_is_normal(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		const char *seg = p + i + 1;
		size_t rest = n - i - 1;

		if (p[i] == '%')
			return false;
		if (p[i] != '/' || rest == 0)
			continue;
		if (seg[0] == '/' || (seg[0] == '.' && (rest == 1 || seg[1] == '/' ||
							(seg[1] == '.' && (rest == 2 || seg[2] == '/')))))
			return false;
	}
	return true;
}

int path_normalize(const char *url, size_t url_len, char *out, size_t cap)
{
	size_t i, olen = 1, start = path_skip_authority(url, url_len);
	size_t end = start + path_span(url + start, url_len - start, '?', '#');
	bool keep_slash = true; /* "http://host" alone means "/" */
	char path[PATH_TARGET_MAX + 1];
	int plen;

	if (cap < 2 || (start == 0 && (end == 0 || url[0] != '/')))
		return -EINVAL;
	if (end < url_len && url[end] == '\0')
		return -EINVAL;
	/* Within the bounds the full way checks (the decode buffer, then
	 * cap), a normal path comes out as it went in. */
	if (end > start && url[start] == '/' && end - start < cap && end - start <= PATH_TARGET_MAX &&
	    path_is_normal(url + start, end - start)) {
		memcpy(out, url + start, end - start);
		out[end - start] = '\0';
		return (int)(end - start);
	}
	/* Escapes are decoded first, so "%2e%2e" is ".." (RFC 3986 §6.2.2.2). */
	plen = path_percent_decode(url + start, end - start, path, sizeof(path));
	if (plen < 0)
		return -EINVAL;
	out[0] = '/';
	/* i == plen visits the empty segment after a trailing '/'. */
	for (i = 0; i <= (size_t)plen;) {
		size_t n = path_span(path + i, (size_t)plen - i, '/', '/');

		if (path_push_segment(out, &olen, cap, path + i, n))
			return -EINVAL;
		/* A trailing "/", "." or ".." names a directory (RFC 3986 §5.2.4). */
		keep_slash = n == 0 || (n == 1 && path[i] == '.') || (n == 2 && path[i] == '.' && path[i + 1] == '.');
		i += n + 1;
	}
	if (olen > 1 && !keep_slash)
		olen--;
	if (olen >= cap)
		return -EINVAL;
	out[olen] = '\0';
	return (int)olen;
}

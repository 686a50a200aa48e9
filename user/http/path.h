/* path.h: a request target to the path the routes look up, normalised
 * once per request.  Depends on nothing, so every route (EC2's and each
 * flavor's) may use it without a cycle. */
#ifndef IMDS_PATH_H
#define IMDS_PATH_H
#include <stddef.h>

#define PATH_TARGET_MAX 2048 /* longest request target (http.h: HTTP_URL_MAX) */

/* Normalises a request target: drops the query, collapses "//", decodes
 * %HH escapes and then resolves "." and "..", keeps a trailing '/'.
 * Writes at most cap-1 bytes and a NUL; returns the length or -EINVAL. */
int path_normalize(const char *url, size_t url_len, char *out, size_t cap);

/* The value of hex digit `ch`, or -1. */
int path_hex(char ch);

#endif

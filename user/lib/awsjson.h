/* awsjson.h: JSON rendered the way EC2's metadata service prints its
 * documents (identity document, iam/info, credentials).  EC2 uses Jackson's
 * default pretty printer:
 *   {
 *     "accountId" : null,
 *     "marketplaceProductCodes" : [ "abc" ],
 *     "nested" : {
 *       "k" : 1
 *     }
 *   }
 * 2-space indent per object level, " : " between key and value, arrays on
 * one line ("[ a, b ]"), empty containers "{ }" and "[ ]", no trailing
 * newline.  Strings are JSON-escaped; non-ASCII UTF-8 is kept as is. */
#ifndef IMDS_AWSJSON_H
#define IMDS_AWSJSON_H
#include <jansson.h>
#include <stddef.h>

#include "lib/outbuf.h"

/* Appends `v` to `out`.  0 or -ENOMEM. */
int awsjson_render(const json_t *v, struct outbuf *out);

/* A JSON number as JSON writes it: integers as such, reals in the shortest
 * form that reads back to the same double (with ".0" if it would otherwise
 * look like an integer).  Returns the length, or -EINVAL if `v` is not a
 * number.  32 bytes are always enough. */
int awsjson_number(const json_t *v, char *buf, size_t cap);

/* Appends `s` (len bytes) as a quoted JSON string.  0 or -ENOMEM. */
int awsjson_string(const char *s, size_t len, struct outbuf *out);

#endif

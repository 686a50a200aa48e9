/* jsonpos.h: where a value sits in JSON text.
 *
 * Jansson keeps no source positions for values, so error messages that point
 * at "vms.json:7:12" rescan the raw text.  The text must already be valid
 * JSON (jansson accepted it); on anything else the lookup just fails.
 *
 * A path is written as in error messages: object keys joined by '.', array
 * indices as "[N]", e.g. "vms[2].meta-data.placement.region"; "" is the top
 * value.  A key that is empty or contains '.', '[', ']', '"' or a control
 * character is written as a quoted JSON string in brackets:
 * vms[0].meta-data["a.b"].c (jsonpos_append_key does this).  Keys are
 * compared after JSON unescaping; a plain key that still contains '.' or
 * '[' (a path written by hand) matches too: every key that is a prefix of
 * the rest of the path at a separator is tried.
 */
#ifndef IMDS_JSONPOS_H
#define IMDS_JSONPOS_H
#include <stddef.h>

/* 0 with *offset = byte offset of the value's first character, or -ENOENT. */
int jsonpos_find(const char *text, size_t len, const char *path, size_t *offset);

/* 1-based line and column of a byte offset.  Columns count characters
 * (UTF-8 sequences), as jansson's own error columns do. */
/* Appends a key to the path in buf[0..len): ".key" (plain "key" at the
 * start) or ["key"].  Always NUL-terminates within cap; returns the length
 * the full path has (>= cap: truncated), like snprintf. */
size_t jsonpos_append_key(char *buf, size_t cap, size_t len, const char *key);

void jsonpos_line_col(const char *text, size_t len, size_t offset, int *line, int *col);

#endif

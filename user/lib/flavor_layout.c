/* flavor_layout.c: the functions of the tree layout contract
 * (flavor_layout.h) that both the compiler and the router run. */
#include "lib/flavor_layout.h"

#include <stdio.h>
#include <string.h>

/* ?recursive=true JSON uses camelCase ("machineType", "networkInterfaces")
 * except for names chosen by the user: attribute keys and account e-mails. */
void gce_json_key(const char *parent, const char *key, char *out, size_t cap)
{
	size_t n = 0;

	if (!strcmp(parent, "attributes") || !strcmp(parent, "service-accounts")) {
		snprintf(out, cap, "%s", key);
		return;
	}
	for (const char *p = key; *p && n + 1 < cap; p++) {
		if (*p == '-' && p[1]) {
			p++;
			out[n++] = (char)(*p >= 'a' && *p <= 'z' ? *p - 'a' + 'A' : *p);
		} else {
			out[n++] = *p;
		}
	}
	out[n] = '\0';
}

int azure_mi_segment(enum azure_mi_kind kind, const char *s, size_t len, char *out, size_t cap)
{
	size_t n = 0;

	if (kind == AZURE_MI_RESOURCE && len > 1 && s[len - 1] == '/')
		len--;
	for (size_t i = 0; i < len; i++) {
		char ch = s[i];

		if (n + 4 > cap)
			return -1;
		if (ch == '/' || ch == '%') {
			out[n++] = '%';
			out[n++] = '2';
			out[n++] = ch == '/' ? 'F' : '5';
			continue;
		}
		if (kind == AZURE_MI_ID && ch >= 'A' && ch <= 'Z')
			ch = (char)(ch - 'A' + 'a');
		out[n++] = ch;
	}
	if (n >= cap)
		return -1;
	out[n] = '\0';
	return (int)n;
}

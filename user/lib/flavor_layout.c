/* flavor_layout.c: the one function of the tree layout contract
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

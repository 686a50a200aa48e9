/* namelist.c: parsing and matching lists of interface names and patterns
 * (namelist.h). */
#include "lib/namelist.h"

#include <errno.h>
#include <fnmatch.h>
#include <net/if.h>
#include <stdio.h>
#include <string.h>

bool namelist_is_pattern(const char *entry)
{
	return strpbrk(entry, "*?[") != NULL;
}

bool namelist_entry_matches(const char *entry, const char *name)
{
	/* No FNM_PATHNAME or FNM_PERIOD: interface names have no paths, and
	 * "*" should match every name, dots included. */
	return fnmatch(entry, name, 0) == 0;
}

bool namelist_matches(const struct namelist *l, const char *name)
{
	for (size_t i = 0; i < l->n; i++)
		if (namelist_entry_matches(l->entry[i], name))
			return true;
	return false;
}

/* What is wrong with one entry, or NULL. */
static const char *namelist_entry_problem(const char *entry)
{
	size_t len = strlen(entry);

	if (namelist_is_pattern(entry))
		return NULL;
	if (len >= IF_NAMESIZE)
		return "is longer than an interface name (15 bytes)";
	if (strchr(entry, '/') || !strcmp(entry, ".") || !strcmp(entry, ".."))
		return "is not an interface name";
	return NULL;
}

int namelist_add(struct namelist *l, const char *text, char *err, size_t errlen)
{
	for (const char *p = text + strspn(text, NAMELIST_SEPARATORS); *p; p += strspn(p, NAMELIST_SEPARATORS)) {
		size_t len = strcspn(p, NAMELIST_SEPARATORS);
		const char *problem = "is too long";

		if (l->n == NAMELIST_MAX) {
			snprintf(err, errlen, "\"%.*s\": more than %d names", (int)len, p, NAMELIST_MAX);
			return -E2BIG;
		}
		if (len < NAMELIST_ENTRY_MAX) {
			snprintf(l->entry[l->n], NAMELIST_ENTRY_MAX, "%.*s", (int)len, p);
			problem = namelist_entry_problem(l->entry[l->n]);
		}
		if (problem) {
			snprintf(err, errlen, "\"%.*s\" %s", (int)len, p, problem);
			return -EINVAL;
		}
		l->n++;
		p += len;
	}
	return 0;
}

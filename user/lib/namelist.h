/* namelist.h: lists of interface names and shell patterns, as imdsd's
 * --bridge and /etc/default/imds's IMDS_BRIDGES give them ("virbr0 br0",
 * "virbr*,br-vlan[0-9]*"): one syntax and one matching rule for imdsd and
 * the libvirt hook, so both agree on which bridges are served. */
#ifndef IMDS_NAMELIST_H
#define IMDS_NAMELIST_H
#include <stdbool.h>
#include <stddef.h>

/* Entries are separated by any run of these: a systemd unit passes
 * --bridge ${IMDS_BRIDGES} as one argument, spaces and all, and the
 * configuration file may use commas as well. */
#define NAMELIST_SEPARATORS ", \t\n"
#define NAMELIST_MAX 32	      /* entries in one list */
#define NAMELIST_ENTRY_MAX 64 /* bytes of one entry, with its NUL */

struct namelist {
	size_t n;
	char entry[NAMELIST_MAX][NAMELIST_ENTRY_MAX];
};

/* Appends the entries of `text` (a list as above) to l.  A name without
 * pattern characters must be a possible interface name (1..15 bytes, no
 * '/', not "." or ".."); a pattern is an fnmatch(3) pattern.  0, or -EINVAL
 * / -E2BIG with err naming the entry; l keeps what came before it. */
int namelist_add(struct namelist *l, const char *text, char *err, size_t errlen);
/* True when `entry` has fnmatch pattern characters (*, ?, [). */
bool namelist_is_pattern(const char *entry);
/* True when `name` is `entry` or matches it as a pattern. */
bool namelist_entry_matches(const char *entry, const char *name);
/* True when `name` matches any entry of l. */
bool namelist_matches(const struct namelist *l, const char *name);

#endif

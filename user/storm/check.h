/* check.h: is an answer the one the VM was loaded with?  The checker
 * compares a status and body with the VM's description (the JSON given to
 * imds-loadmap); it is a function of the VM, the path, the status and the
 * body alone, so a caller may remember a verdict per (path, status, body).
 * The rules are docs/storm.md's table. */
#ifndef IMDS_STORM_CHECK_H
#define IMDS_STORM_CHECK_H
#include <arpa/inet.h>

#include "lib/outbuf.h"
#include "compile/vmconf.h"

/* A VM of the storm: its description and the identity the compiler
 * derives answers from, spelled as the server spells them. */
struct storm_vm {
	const struct vm_desc *d;
	unsigned index; /* 1-based, names the namespace */
	int nsfd;	/* its network namespace; -1 when not open */
	char ipv4[INET_ADDRSTRLEN];
	char mac[18];
};

/* Fills vm from d; nsfd is left -1. */
void storm_vm_init(struct storm_vm *vm, const struct vm_desc *d, unsigned index);

/* The part of a path after "/VERSION/" (the path itself when it has no
 * such prefix). */
const char *storm_rel_path(const char *api_version, const char *path);

/* Whether rel (relative to the version) names a listing: it ends in '/',
 * or is "dynamic/instance-identity", which is listed without one. */
int storm_is_listing(const char *rel);

/* Whether checking rel costs more than a memcmp of the body (meta-data,
 * listings, the identity document): worth remembering its verdict. */
int storm_check_is_costly(const char *rel);

/* The verdict on a GET of rel that got status and body: 0 when right (or
 * nothing to compare), else SE_STATUS or SE_WRONG_DATA. */
int storm_check_answer(const struct storm_vm *vm, const char *rel, int status, const struct outbuf *body);

/* Whether two bodies are the same bytes. */
int storm_body_is(const struct outbuf *b, const void *want, size_t len);

/* A body for a message: at most 100 bytes, escaped to one line. */
void storm_check_escape(const struct outbuf *b, char *out, size_t size);

#endif

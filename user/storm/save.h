/* save.h: --save, the bodies of 200 answers as files. */
#ifndef IMDS_STORM_SAVE_H
#define IMDS_STORM_SAVE_H
#include <stdint.h>

#include "lib/outbuf.h"

/* Writes body at DIR/<ipv4>/<path>, a listing at <path>/_index.  A failure
 * is counted in *errors, and the first one is printed on stderr. */
void storm_save(const char *dir, const char *ipv4, const char *path, int is_listing, const struct outbuf *body,
		uint64_t *errors);

/* The listing at path as --save wrote it under DIR/<ipv4>, into body;
 * empty when there is none (the server did not answer it with 200).  0 or
 * a negative errno. */
int storm_saved_listing(const char *dir, const char *ipv4, const char *path, struct outbuf *body);

#endif

/* etcd.h: a client of etcd's v3 HTTP/JSON gateway (etcd 3.4, paths under
 * /v3/), as `imds-loadmap sync` needs it: read every key under a prefix,
 * then follow the prefix with a watch stream.  Keys and values travel
 * base64 in JSON; 64-bit numbers as JSON strings.  Why the gateway and not
 * gRPC: docs/control-plane.md, "etcd".  libcurl does HTTP and TLS. */
#ifndef IMDS_CONTROL_ETCD_H
#define IMDS_CONTROL_ETCD_H
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ETCD_ERRLEN 512

struct etcd_opts {
	char **endpoints; /* "http://127.0.0.1:2379", "https://...", "unix:/PATH" */
	size_t n_endpoints;
	const char *cacert, *cert, *key; /* PEM files for TLS, or NULL */
	const char *user, *password;	 /* both or neither */
	volatile sig_atomic_t *stop;	 /* set: a request in progress gives up */
};

struct etcd_kv {
	char *key;
	char *value; /* NUL-terminated; value_len bytes before it */
	size_t value_len;
	int64_t mod_revision;
	bool deleted; /* a watch's DELETE event (no value) */
};

struct etcd_kvs {
	struct etcd_kv *kv;
	size_t n;
};

enum etcd_watch_state {
	ETCD_WATCH_RUNNING,   /* events may come */
	ETCD_WATCH_COMPACTED, /* the start revision is compacted: read the prefix again */
	ETCD_WATCH_ENDED,     /* the stream ended or failed: reconnect */
};

struct etcd_client;

int etcd_client_new(struct etcd_client **out, const struct etcd_opts *o, char *err, size_t errlen);
void etcd_client_free(struct etcd_client *c);
/* The endpoint requests go to now; the next one after a failure. */
const char *etcd_endpoint(const struct etcd_client *c);
void etcd_next_endpoint(struct etcd_client *c);

/* Every key under `prefix` at one revision (*revision), read in pages of
 * `page` keys.  0, or -errno with err. */
int etcd_range_prefix(struct etcd_client *c, const char *prefix, size_t page, struct etcd_kvs *out, int64_t *revision,
		      char *err, size_t errlen);

/* Opens a watch of `prefix` from `start_revision` (no wait). */
int etcd_watch_start(struct etcd_client *c, const char *prefix, int64_t start_revision, char *err, size_t errlen);
/* Waits up to timeout_ms for the stream, then appends every event that
 * has arrived to *events (in revision order).  *created turns true once
 * etcd confirmed the watch.  Returns the watch's state; with
 * ETCD_WATCH_COMPACTED *compact_revision is etcd's oldest revision, with
 * ETCD_WATCH_ENDED err says why. */
enum etcd_watch_state etcd_watch_poll(struct etcd_client *c, int timeout_ms, struct etcd_kvs *events, bool *created,
				      int64_t *compact_revision, char *err, size_t errlen);
void etcd_watch_stop(struct etcd_client *c);

void etcd_kvs_free(struct etcd_kvs *kvs);

/* The gateway's framing and JSON, apart from the transport (etcd_json.c). */
/* The first key after every key starting with prefix (etcd's range_end). */
int etcd_prefix_end(const char *prefix, char **out);
/* One message of a watch stream: appends its events; see etcd_watch_poll. */
enum etcd_watch_state etcd_parse_watch_message(const char *line, size_t len, struct etcd_kvs *events, bool *created,
					       int64_t *compact_revision, char *err, size_t errlen);
/* A range response: appends its kvs; *more, *revision from it. */
int etcd_parse_range(const char *body, size_t len, struct etcd_kvs *out, bool *more, int64_t *revision, char *err,
		     size_t errlen);
/* base64 of bytes, and back; malloc'ed, NUL-terminated; NULL if invalid. */
char *etcd_b64_encode(const void *data, size_t len);
char *etcd_b64_decode(const char *text, size_t *len);

#endif

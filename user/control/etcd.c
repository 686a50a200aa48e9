/* etcd.c: the transport of the etcd client (etcd.h): HTTP POSTs to the
 * gateway with libcurl, TLS client certificates and a user's token.  A
 * range is a blocking request with a timeout; the watch is one long POST
 * driven by a curl multi handle, so the caller waits on it with a timeout
 * and handles whatever events arrived together. */
#include "control/etcd.h"

#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ETCD_CONNECT_TIMEOUT_MS 2000L
#define ETCD_REQUEST_TIMEOUT_MS 10000L
/* An etcd that vanished without closing (a partition, a powered-off host)
 * is found by TCP keepalive: probes after 10 s of silence, every 5 s, the
 * kernel's count of them (9 by default): about a minute. */
#define ETCD_KEEPIDLE_S 10L
#define ETCD_KEEPINTVL_S 5L
#define ETCD_TOKEN_MAX 512

struct etcd_buf {
	char *data;
	size_t len;
};

struct etcd_client {
	struct etcd_opts o;
	size_t endpoint;
	char token[ETCD_TOKEN_MAX]; /* "" without a user */
	CURLM *multi;
	CURL *watch;
	struct curl_slist *watch_headers;
	char *watch_body;
	struct etcd_buf stream; /* what the watch sent, not yet parsed */
};

static size_t etcd_collect(char *data, size_t size, size_t n, void *arg)
{
	struct etcd_buf *b = arg;
	char *grown = realloc(b->data, b->len + size * n + 1);

	if (!grown)
		return 0; /* curl fails the transfer */
	memcpy(grown + b->len, data, size * n);
	b->data = grown;
	b->len += size * n;
	b->data[b->len] = '\0';
	return size * n;
}

int etcd_client_new(struct etcd_client **out, const struct etcd_opts *o, char *err, size_t errlen)
{
	static bool curl_ready;
	struct etcd_client *c;

	if (!curl_ready && curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		snprintf(err, errlen, "cannot initialize libcurl");
		return -ENOMEM;
	}
	curl_ready = true;
	c = calloc(1, sizeof(*c));
	if (!c || !(c->multi = curl_multi_init())) {
		free(c);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	c->o = *o;
	*out = c;
	return 0;
}

void etcd_client_free(struct etcd_client *c)
{
	if (!c)
		return;
	etcd_watch_stop(c);
	curl_multi_cleanup(c->multi);
	free(c);
}

const char *etcd_endpoint(const struct etcd_client *c)
{
	return c->o.endpoints[c->endpoint];
}

void etcd_next_endpoint(struct etcd_client *c)
{
	c->endpoint = (c->endpoint + 1) % c->o.n_endpoints;
}

/* libcurl asks this now and then during a transfer: nonzero aborts it,
 * so SIGTERM does not wait for a request's timeout. */
static int etcd_progress(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow)
{
	const struct etcd_client *c = arg;

	(void)dltotal;
	(void)dlnow;
	(void)ultotal;
	(void)ulnow;
	return c->o.stop && *c->o.stop;
}

/* A POST of JSON to PATH at the current endpoint, TLS and token set. */
static CURL *etcd_easy(struct etcd_client *c, const char *path, const char *body, struct curl_slist **headers,
		       struct etcd_buf *into)
{
	char url[1024], auth[ETCD_TOKEN_MAX + 32];
	CURL *e = curl_easy_init();

	if (!e)
		return NULL;
	/* "unix:PATH": HTTP over a local socket, reachable from any network
	 * namespace (etcd listens on one with unix://NAME:PORT). */
	if (strncmp(etcd_endpoint(c), "unix:", 5) == 0) {
		curl_easy_setopt(e, CURLOPT_UNIX_SOCKET_PATH, etcd_endpoint(c) + 5);
		snprintf(url, sizeof(url), "http://localhost%s", path);
	} else
		snprintf(url, sizeof(url), "%s%s", etcd_endpoint(c), path);
	*headers = curl_slist_append(NULL, "Content-Type: application/json");
	if (c->token[0]) {
		snprintf(auth, sizeof(auth), "Authorization: %s", c->token);
		*headers = curl_slist_append(*headers, auth);
	}
	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, *headers);
	curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, ETCD_CONNECT_TIMEOUT_MS);
	curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(e, CURLOPT_TCP_KEEPIDLE, ETCD_KEEPIDLE_S);
	curl_easy_setopt(e, CURLOPT_TCP_KEEPINTVL, ETCD_KEEPINTVL_S);
	curl_easy_setopt(e, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(e, CURLOPT_XFERINFOFUNCTION, etcd_progress);
	curl_easy_setopt(e, CURLOPT_XFERINFODATA, c);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, etcd_collect);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, into);
	if (c->o.cacert)
		curl_easy_setopt(e, CURLOPT_CAINFO, c->o.cacert);
	if (c->o.cert)
		curl_easy_setopt(e, CURLOPT_SSLCERT, c->o.cert);
	if (c->o.key)
		curl_easy_setopt(e, CURLOPT_SSLKEY, c->o.key);
	return e;
}

/* A blocking request; the answer's body in *resp (free it). */
static int etcd_post(struct etcd_client *c, const char *path, const char *body, struct etcd_buf *resp, char *err,
		     size_t errlen)
{
	struct curl_slist *headers = NULL;
	CURL *e = etcd_easy(c, path, body, &headers, resp);
	CURLcode rc;

	if (!e) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, ETCD_REQUEST_TIMEOUT_MS);
	rc = curl_easy_perform(e);
	curl_easy_cleanup(e);
	curl_slist_free_all(headers);
	if (rc == CURLE_OK && resp->data)
		return 0;
	snprintf(err, errlen, "%s%s: %s", etcd_endpoint(c), path, rc == CURLE_OK ? "empty answer" : curl_easy_strerror(rc));
	free(resp->data);
	resp->data = NULL;
	return -EIO;
}

/* A user's token, asked for at each (re)connection: the watch is
 * authorized when it is created, and a fresh token never expires under it. */
static int etcd_authenticate(struct etcd_client *c, char *err, size_t errlen)
{
	struct etcd_buf resp = { 0 };
	json_t *req, *doc;
	char *body;
	const char *token;
	int ret;

	c->token[0] = '\0';
	if (!c->o.user)
		return 0;
	req = json_pack("{s:s, s:s}", "name", c->o.user, "password", c->o.password);
	body = req ? json_dumps(req, JSON_COMPACT) : NULL;
	json_decref(req);
	ret = body ? etcd_post(c, "/v3/auth/authenticate", body, &resp, err, errlen) : -ENOMEM;
	free(body);
	if (ret)
		return ret;
	doc = json_loads(resp.data, 0, NULL);
	token = json_string_value(json_object_get(doc, "token"));
	if (token && strlen(token) < sizeof(c->token))
		snprintf(c->token, sizeof(c->token), "%s", token);
	else {
		snprintf(err, errlen, "%s: user %s: %s", etcd_endpoint(c), c->o.user,
			 doc ? json_string_value(json_object_get(doc, "message")) ?: "no token in the answer"
			     : "the answer is not JSON");
		ret = -EACCES;
	}
	json_decref(doc);
	free(resp.data);
	return ret;
}

/* {"key":b64, "range_end":b64}: the keys under prefix from `from`
 * (from_len bytes: the next page starts at the last key plus a NUL byte,
 * the first key after it). */
static json_t *etcd_prefix_request(const char *from, size_t from_len, const char *prefix)
{
	char *key = etcd_b64_encode(from, from_len), *end_text = NULL, *end = NULL;
	json_t *req = NULL;

	if (key && etcd_prefix_end(prefix, &end_text) == 0 && (end = etcd_b64_encode(end_text, strlen(end_text))))
		req = json_pack("{s:s, s:s}", "key", key, "range_end", end);
	free(key);
	free(end_text);
	free(end);
	return req;
}

static int etcd_range_page(struct etcd_client *c, const char *from, size_t from_len, const char *prefix, size_t page,
			   struct etcd_kvs *out, bool *more, int64_t *revision, char *err, size_t errlen)
{
	struct etcd_buf resp = { 0 };
	json_t *req = etcd_prefix_request(from, from_len, prefix);
	char *body = NULL;
	int ret = -ENOMEM;

	if (req && json_object_set_new(req, "limit", json_integer((json_int_t)page)) == 0 &&
	    (!*revision || json_object_set_new(req, "revision", json_integer(*revision)) == 0))
		body = json_dumps(req, JSON_COMPACT);
	if (body)
		ret = etcd_post(c, "/v3/kv/range", body, &resp, err, errlen);
	if (!ret)
		ret = etcd_parse_range(resp.data, resp.len, out, more, revision, err, errlen);
	json_decref(req);
	free(body);
	free(resp.data);
	return ret;
}

int etcd_range_prefix(struct etcd_client *c, const char *prefix, size_t page, struct etcd_kvs *out, int64_t *revision,
		      char *err, size_t errlen)
{
	char *from = strdup(prefix);
	size_t from_len = strlen(prefix);
	bool more = true;
	int ret = from ? etcd_authenticate(c, err, errlen) : -ENOMEM;

	*revision = 0; /* the first page's; every later page is read at it: one snapshot */
	while (!ret && more) {
		size_t n = out->n;
		const char *last;

		ret = etcd_range_page(c, from, from_len, prefix, page, out, &more, revision, err, errlen);
		if (ret || !more || out->n == n)
			break;
		last = out->kv[out->n - 1].key;
		from_len = strlen(last) + 1;
		free(from);
		if (!(from = calloc(1, from_len + 1)))
			ret = -ENOMEM;
		else
			memcpy(from, last, from_len - 1);
	}
	free(from);
	if (ret)
		etcd_kvs_free(out);
	return ret;
}

/* ---- the watch stream ---- */

int etcd_watch_start(struct etcd_client *c, const char *prefix, int64_t start_revision, char *err, size_t errlen)
{
	json_t *req, *create = etcd_prefix_request(prefix, strlen(prefix), prefix);
	int ret;

	etcd_watch_stop(c);
	ret = etcd_authenticate(c, err, errlen);
	if (ret) {
		json_decref(create);
		return ret;
	}
	req = create ? json_pack("{s:o}", "create_request", create) : NULL;
	if (req && json_object_set_new(create, "start_revision", json_integer(start_revision)) == 0)
		c->watch_body = json_dumps(req, JSON_COMPACT);
	json_decref(req);
	if (c->watch_body)
		c->watch = etcd_easy(c, "/v3/watch", c->watch_body, &c->watch_headers, &c->stream);
	if (!c->watch || curl_multi_add_handle(c->multi, c->watch) != CURLM_OK) {
		etcd_watch_stop(c);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	return 0;
}

void etcd_watch_stop(struct etcd_client *c)
{
	if (c->watch) {
		curl_multi_remove_handle(c->multi, c->watch);
		curl_easy_cleanup(c->watch);
	}
	curl_slist_free_all(c->watch_headers);
	free(c->watch_body);
	free(c->stream.data);
	c->watch = NULL;
	c->watch_headers = NULL;
	c->watch_body = NULL;
	c->stream = (struct etcd_buf){ 0 };
}

/* Why the transfer ended, once curl says it did. */
static bool etcd_watch_done(struct etcd_client *c, char *err, size_t errlen)
{
	CURLMsg *m;
	int left;

	while ((m = curl_multi_info_read(c->multi, &left)))
		if (m->msg == CURLMSG_DONE) {
			snprintf(err, errlen, "%s/v3/watch: %s", etcd_endpoint(c),
				 m->data.result == CURLE_OK ? "the stream ended" : curl_easy_strerror(m->data.result));
			return true;
		}
	return false;
}

/* Parses every complete line the stream holds; keeps a partial one. */
static enum etcd_watch_state etcd_watch_lines(struct etcd_client *c, struct etcd_kvs *events, bool *created,
					      int64_t *compact_revision, char *err, size_t errlen)
{
	enum etcd_watch_state state = ETCD_WATCH_RUNNING;
	size_t used = 0;
	char *nl;

	while (state == ETCD_WATCH_RUNNING && (nl = memchr(c->stream.data + used, '\n', c->stream.len - used))) {
		size_t len = (size_t)(nl - (c->stream.data + used));

		if (len)
			state = etcd_parse_watch_message(c->stream.data + used, len, events, created, compact_revision,
							 err, errlen);
		used += len + 1;
	}
	memmove(c->stream.data, c->stream.data + used, c->stream.len - used);
	c->stream.len -= used;
	return state;
}

enum etcd_watch_state etcd_watch_poll(struct etcd_client *c, int timeout_ms, struct etcd_kvs *events, bool *created,
				      int64_t *compact_revision, char *err, size_t errlen)
{
	enum etcd_watch_state state;
	int running = 0;
	bool done;

	if (!c->watch) {
		snprintf(err, errlen, "no watch");
		return ETCD_WATCH_ENDED;
	}
	if (curl_multi_poll(c->multi, NULL, 0, timeout_ms, NULL) != CURLM_OK ||
	    curl_multi_perform(c->multi, &running) != CURLM_OK) {
		snprintf(err, errlen, "%s/v3/watch: libcurl failed", etcd_endpoint(c));
		return ETCD_WATCH_ENDED;
	}
	done = etcd_watch_done(c, err, errlen);
	if (done && c->stream.len && c->stream.data[c->stream.len - 1] != '\n')
		etcd_collect("\n", 1, 1, &c->stream); /* an error answer without a line end */
	state = c->stream.data ? etcd_watch_lines(c, events, created, compact_revision, err, errlen)
			       : ETCD_WATCH_RUNNING;
	if (state == ETCD_WATCH_RUNNING && (done || !running)) {
		if (!done)
			snprintf(err, errlen, "%s/v3/watch: the stream ended", etcd_endpoint(c));
		state = ETCD_WATCH_ENDED;
	}
	return state;
}

/* etcd_json.c: what etcd's HTTP/JSON gateway sends, parsed apart from the
 * transport.  The gateway writes protobuf messages as JSON: bytes fields
 * (keys, values) base64, int64 fields as strings ("revision":"42"), enum
 * fields by name and left out when zero (a PUT event has no "type").  A
 * watch stream is one JSON object per line, {"result":{...}} or
 * {"error":{...}}. */
#include "control/etcd.h"

#include <errno.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *etcd_b64_encode(const void *data, size_t len)
{
	char *out = malloc(4 * ((len + 2) / 3) + 1);

	if (out)
		EVP_EncodeBlock((unsigned char *)out, data, (int)len);
	return out;
}

char *etcd_b64_decode(const char *text, size_t *len)
{
	size_t n = strlen(text), pad = 0;
	unsigned char *out;
	int got;

	if (n % 4)
		return NULL;
	out = malloc(n / 4 * 3 + 1);
	if (!out)
		return NULL;
	/* EVP_DecodeBlock counts the padding's bytes as data: take them off. */
	got = n ? EVP_DecodeBlock(out, (const unsigned char *)text, (int)n) : 0;
	if (got < 0) {
		free(out);
		return NULL;
	}
	while (pad < 2 && n > pad && text[n - 1 - pad] == '=')
		pad++;
	*len = (size_t)got - pad;
	out[*len] = '\0';
	return (char *)out;
}

int etcd_prefix_end(const char *prefix, char **out)
{
	size_t n = strlen(prefix);
	char *end = strdup(prefix);

	if (!end)
		return -ENOMEM;
	/* The last byte that can be incremented is, and the rest dropped. */
	while (n > 0 && (unsigned char)end[n - 1] == 0xff)
		n--;
	if (n == 0) {
		free(end);
		return -EINVAL;
	}
	end[n - 1]++;
	end[n] = '\0';
	*out = end;
	return 0;
}

/* An int64 field: a string of digits (the gateway's form) or a number. */
static int64_t etcd_int64(const json_t *v)
{
	if (json_is_integer(v))
		return (int64_t)json_integer_value(v);
	if (json_is_string(v))
		return strtoll(json_string_value(v), NULL, 10);
	return 0;
}

static int etcd_push_kv(struct etcd_kvs *out, const json_t *kv, bool deleted, char *err, size_t errlen)
{
	const char *key = json_string_value(json_object_get(kv, "key"));
	const char *value = json_string_value(json_object_get(kv, "value"));
	struct etcd_kv *grown, *e;

	if (!key) {
		snprintf(err, errlen, "etcd sent a key-value without a key");
		return -EPROTO;
	}
	grown = realloc(out->kv, (out->n + 1) * sizeof(*grown));
	if (!grown)
		return -ENOMEM;
	out->kv = grown;
	e = &out->kv[out->n];
	*e = (struct etcd_kv){ .deleted = deleted, .mod_revision = etcd_int64(json_object_get(kv, "mod_revision")) };
	e->key = etcd_b64_decode(key, &(size_t){ 0 });
	e->value = etcd_b64_decode(value ? value : "", &e->value_len);
	if (!e->key || !e->value) {
		free(e->key);
		free(e->value);
		snprintf(err, errlen, "etcd sent a key or value that is not base64");
		return -EPROTO;
	}
	out->n++;
	return 0;
}

/* {"error":"...","message":"...","code":N} or {"error":{"message":...}}. */
static void etcd_error_text(const json_t *doc, char *err, size_t errlen)
{
	const json_t *e = json_object_get(doc, "error");
	const char *msg = json_string_value(json_object_get(doc, "message"));

	if (!msg && json_is_object(e))
		msg = json_string_value(json_object_get(e, "message"));
	if (!msg)
		msg = json_string_value(e);
	snprintf(err, errlen, "etcd: %s", msg ? msg : "an error without a message");
}

int etcd_parse_range(const char *body, size_t len, struct etcd_kvs *out, bool *more, int64_t *revision, char *err,
		     size_t errlen)
{
	json_t *doc = json_loadb(body, len, 0, NULL), *kvs, *kv;
	size_t i;
	int ret = 0;

	if (!doc || json_object_get(doc, "error")) {
		if (doc)
			etcd_error_text(doc, err, errlen);
		else
			snprintf(err, errlen, "etcd's range answer is not JSON: %.80s", body);
		json_decref(doc);
		return -EPROTO;
	}
	*more = json_is_true(json_object_get(doc, "more"));
	*revision = etcd_int64(json_object_get(json_object_get(doc, "header"), "revision"));
	kvs = json_object_get(doc, "kvs");
	json_array_foreach(kvs, i, kv) {
		if ((ret = etcd_push_kv(out, kv, false, err, errlen)))
			break;
	}
	json_decref(doc);
	return ret;
}

static enum etcd_watch_state etcd_watch_events(const json_t *result, struct etcd_kvs *events, char *err,
					       size_t errlen)
{
	const json_t *ev;
	size_t i;

	json_array_foreach(json_object_get(result, "events"), i, ev) {
		const char *type = json_string_value(json_object_get(ev, "type"));

		if (etcd_push_kv(events, json_object_get(ev, "kv"), type && strcmp(type, "DELETE") == 0, err, errlen))
			return ETCD_WATCH_ENDED;
	}
	return ETCD_WATCH_RUNNING;
}

enum etcd_watch_state etcd_parse_watch_message(const char *line, size_t len, struct etcd_kvs *events, bool *created,
					       int64_t *compact_revision, char *err, size_t errlen)
{
	json_t *doc = json_loadb(line, len, 0, NULL), *result;
	enum etcd_watch_state state = ETCD_WATCH_ENDED;

	result = json_object_get(doc, "result");
	if (!doc)
		snprintf(err, errlen, "etcd's watch stream sent a line that is not JSON: %.80s", line);
	else if (!result)
		etcd_error_text(doc, err, errlen);
	else if ((*compact_revision = etcd_int64(json_object_get(result, "compact_revision"))) > 0)
		state = ETCD_WATCH_COMPACTED;
	else if (json_is_true(json_object_get(result, "canceled"))) {
		const char *why = json_string_value(json_object_get(result, "cancel_reason"));

		snprintf(err, errlen, "etcd canceled the watch: %s", why ? why : "no reason given");
	} else {
		if (json_is_true(json_object_get(result, "created")))
			*created = true;
		state = etcd_watch_events(result, events, err, errlen);
	}
	json_decref(doc);
	return state;
}

void etcd_kvs_free(struct etcd_kvs *kvs)
{
	for (size_t i = 0; i < kvs->n; i++) {
		free(kvs->kv[i].key);
		free(kvs->kv[i].value);
	}
	free(kvs->kv);
	kvs->kv = NULL;
	kvs->n = 0;
}

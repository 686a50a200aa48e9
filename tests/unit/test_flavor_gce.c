/* test_flavor_gce.c: the GCE flavor (route_gce.c) without sockets: the
 * Metadata-Flavor rules, data and directories, recursive and alt= answers,
 * service-account tokens, and the defaults of a bare record.  VM records
 * go through the real parser and compiler, requests through the real HTTP
 * parser into route_request (flavor_fixture.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flavor_fixture.h"

static void test_gce_headers(void **state)
{
	struct reply r;

	(void)state;
	get("/computeMetadata/v1/instance/id", NULL, &r);
	expect(&r, 403, NULL);
	expect_header(&r, "Metadata-Flavor", "Google");
	reply_free(&r);
	get("/computeMetadata/v1/instance/id", "Metadata-Flavor: google\r\n", &r);
	expect(&r, 403, NULL);
	reply_free(&r);
	get("/computeMetadata/v1/instance/id", GOOGLE "X-Forwarded-For: 10.0.0.9\r\n", &r);
	expect(&r, 403, NULL);
	expect_header(&r, "Metadata-Flavor", "Google");
	reply_free(&r);
	get("/computeMetadata/v1/instance/id", GOOGLE, &r);
	expect(&r, 200, "4520031799277581759");
	expect_header(&r, "Metadata-Flavor", "Google");
	expect_header(&r, "ETag", "0000000000000000"); /* slot generation 0, tree generation 0 */
	reply_free(&r);
	/* google-auth pings the root with the header: GCE's answer, not EC2's. */
	get("/", "metadata-flavor: Google\r\n", &r);
	expect(&r, 200, "computeMetadata/");
	expect_header(&r, "Metadata-Flavor", "Google");
	reply_free(&r);
	get("/", NULL, &r);
	expect(&r, 200, NULL);
	assert_non_null(strstr(r.body, "2009-04-04"));
	reply_free(&r);
	get("/", "Metadata-Flavor: Other\r\n", &r);
	expect(&r, 200, NULL);
	assert_non_null(strstr(r.body, "2009-04-04"));
	reply_free(&r);
	get_vm(&full_vm, "PUT", "/computeMetadata/v1/instance/id", GOOGLE, &r);
	expect(&r, 405, NULL);
	expect_header(&r, "Metadata-Flavor", "Google");
	reply_free(&r);
}

static void test_gce_data(void **state)
{
	struct reply r;

	(void)state;
	/* gcp-metadata's probe: a directory without its slash. */
	get("/computeMetadata/v1/instance", GOOGLE, &r);
	expect(&r, 200, "attributes/\nhostname\nid\nmachine-type\nname\nnetwork-interfaces/\nservice-accounts/\nzone");
	reply_free(&r);
	get("/computeMetadata/v1/", GOOGLE, &r);
	expect(&r, 200, "instance/\nproject/");
	reply_free(&r);
	get("/computeMetadata/v1/instance/zone", GOOGLE, &r);
	expect(&r, 200, "projects/123456789012/zones/eu-west-1a");
	reply_free(&r);
	get("/computeMetadata/v1/instance/machine-type", GOOGLE, &r);
	expect(&r, 200, "projects/123456789012/machineTypes/e2-standard-2");
	reply_free(&r);
	get("/computeMetadata/v1/instance/attributes/ssh-keys", GOOGLE, &r);
	expect(&r, 200, "alice:ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ+rx8ErVWVUA97vKtmNiu7Dd0cOMhK18lt6ooPHyyWU alice@workstation");
	reply_free(&r);
	get("/computeMetadata/v1/project/project-id", GOOGLE, &r);
	expect(&r, 200, "example-project");
	reply_free(&r);
	get("/computeMetadata/v1/instance/network-interfaces/0/ip", GOOGLE, &r);
	expect(&r, 200, "10.78.0.11");
	reply_free(&r);
	get("/computeMetadata/v1/instance/nothing", GOOGLE, &r);
	expect(&r, 404, NULL);
	expect_header(&r, "Metadata-Flavor", "Google");
	reply_free(&r);
	get("/computeMetadata/v2/instance/id", GOOGLE, &r);
	expect(&r, 404, NULL);
	reply_free(&r);
	get("/computeMetadata/v1/instance/id?alt=xml", GOOGLE, &r);
	expect(&r, 400, NULL);
	reply_free(&r);
}

static void test_gce_recursive(void **state)
{
	struct reply r;
	json_t *v;

	(void)state;
	/* cloud-init's spelling: capital T. */
	get("/computeMetadata/v1/project/attributes/?recursive=True", GOOGLE, &r);
	expect(&r, 200,
	       "{\"ssh-keys\":\"bob:ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICohzMs6WuOc/3G0kxLKOPQCDb72sk2QfjjydJN2/3Rt bob@laptop\"}");
	expect_header(&r, "Content-Type", "application/json");
	expect_header(&r, "Metadata-Flavor", "Google");
	reply_free(&r);
	get("/computeMetadata/v1/instance/?recursive=TRUE&wait_for_change=false", GOOGLE, &r);
	expect(&r, 200, NULL);
	expect_header(&r, "Content-Type", "application/json");
	v = body_json(&r);
	assert_int_equal(json_integer_value(json_object_get(v, "id")), 4520031799277581759LL);
	assert_string_equal(json_string_value(json_object_get(v, "machineType")),
			    "projects/123456789012/machineTypes/e2-standard-2");
	assert_string_equal(
		json_string_value(json_object_get(json_array_get(json_object_get(v, "networkInterfaces"), 0), "mac")),
		"52:54:00:78:00:01");
	assert_non_null(json_object_get(json_object_get(v, "serviceAccounts"), SA_EMAIL));
	assert_non_null(json_object_get(json_object_get(v, "attributes"), "startup-script"));
	json_decref(v);
	reply_free(&r);
	get("/computeMetadata/v1/project?recursive=true&alt=text", GOOGLE, &r);
	expect(&r, 200,
	       "attributes/ssh-keys bob:ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICohzMs6WuOc/3G0kxLKOPQCDb72sk2QfjjydJN2/3Rt bob@laptop\n"
	       "numeric-project-id 123456789012\nproject-id example-project");
	expect_header(&r, "Content-Type", "text/plain");
	reply_free(&r);
	get("/computeMetadata/v1/instance/service-accounts/default/?recursive=true&alt=text", GOOGLE, &r);
	expect(&r, 200,
	       "aliases default\nemail " SA_EMAIL "\nscopes https://www.googleapis.com/auth/cloud-platform\n"
	       "scopes https://www.googleapis.com/auth/logging.write");
	reply_free(&r);
	/* alt=json on leaves: numbers stay numbers, lists become arrays. */
	get("/computeMetadata/v1/project/numeric-project-id?alt=json", GOOGLE, &r);
	expect(&r, 200, "123456789012");
	expect_header(&r, "Content-Type", "application/json");
	reply_free(&r);
	get("/computeMetadata/v1/instance/hostname?alt=json", GOOGLE, &r);
	expect(&r, 200, "\"web-1.example.internal\"");
	reply_free(&r);
	get("/computeMetadata/v1/instance/service-accounts/default/scopes?alt=json", GOOGLE, &r);
	expect(&r, 200,
	       "[\"https://www.googleapis.com/auth/cloud-platform\",\"https://www.googleapis.com/auth/logging.write\"]");
	reply_free(&r);
	get("/computeMetadata/v1/instance/network-interfaces/?alt=json", GOOGLE, &r);
	expect(&r, 200, "[\"0/\"]");
	reply_free(&r);
	/* recursive on a leaf is the leaf */
	get("/computeMetadata/v1/instance/name?recursive=true", GOOGLE, &r);
	expect(&r, 200, NULL);
	reply_free(&r);
}

static void token_of(const struct vm_tree *vm, time_t now, const char *acct, char *out, size_t cap, long long *expires)
{
	char raw[512];
	struct reply r;
	json_t *v;

	snprintf(raw, sizeof(raw),
		 "GET /computeMetadata/v1/instance/service-accounts/%s/token HTTP/1.1\r\nHost: x\r\n" GOOGLE "\r\n", acct);
	route_at(vm, now, raw, &r);
	expect(&r, 200, NULL);
	expect_header(&r, "Content-Type", "application/json");
	v = body_json(&r);
	assert_string_equal(json_string_value(json_object_get(v, "token_type")), "Bearer");
	snprintf(out, cap, "%s", json_string_value(json_object_get(v, "access_token")));
	*expires = json_integer_value(json_object_get(v, "expires_in"));
	json_decref(v);
	reply_free(&r);
}

static void test_gce_token(void **state)
{
	char a[128], b[128], c[128], d[128];
	long long ea, eb, ec, ed;

	(void)state;
	token_of(&full_vm, NOW, "default", a, sizeof(a), &ea);
	token_of(&full_vm, NOW + 60, SA_EMAIL, b, sizeof(b), &eb);
	assert_int_equal(ea, 2800);
	assert_int_equal(eb, 2740);
	assert_string_equal(a, b); /* default is an alias of the e-mail */
	assert_int_equal(strncmp(a, "ya29.", 5), 0);
	/* Near the end of the hour the next hour's token is handed out,
	 * announced with at most GCE's 3599 s. */
	token_of(&full_vm, NOW + 2600, "default", c, sizeof(c), &ec);
	assert_int_equal(ec, 3599);
	assert_string_not_equal(a, c);
	/* Another VM's token differs. */
	token_of(&bare_vm, NOW, "default", d, sizeof(d), &ed);
	assert_string_not_equal(a, d);
}

#define HOUR_START (NOW - 800) /* 22:00:00 UTC */

/* expires_in never exceeds 3599, GCE's own bound, at any second of the
 * hour: at hh:57 (the next hour's token, valid for 3780 s), at hh:00:00
 * (3600 s left) and around the switch to the next hour's token (with
 * fewer than 300 s left). */
static void test_gce_token_hour_edges(void **state)
{
	char now[128], next[128], later[128];
	long long e;

	(void)state;
	token_of(&full_vm, HOUR_START + 57 * 60, "default", next, sizeof(next), &e);
	assert_int_equal(e, 3599);
	token_of(&full_vm, HOUR_START + 3600, "default", later, sizeof(later), &e);
	assert_int_equal(e, 3599);
	assert_string_equal(next, later); /* the same token, the next hour's */
	token_of(&full_vm, HOUR_START + 3600 - 301, "default", now, sizeof(now), &e);
	assert_int_equal(e, 301);
	assert_string_not_equal(now, next);
	token_of(&full_vm, HOUR_START + 3600 - 300, "default", later, sizeof(later), &e);
	assert_int_equal(e, 300);
	assert_string_equal(now, later);
	token_of(&full_vm, HOUR_START + 3600 - 299, "default", now, sizeof(now), &e);
	assert_int_equal(e, 3599);
	assert_string_equal(now, next);
	for (time_t t = HOUR_START; t < HOUR_START + 3600; t += 7) {
		token_of(&full_vm, t, "default", now, sizeof(now), &e);
		assert_true(e > 0 && e <= 3599);
	}
}

/* An account's own token, from the operator: served as given with
 * expires_in counting down to its expires-at (0 once past, at most 3599);
 * the other account keeps the synthesized one; "default" is the first
 * account's. */
static void test_gce_operator_token(void **state)
{
	struct vm_tree vm;
	char tok[128];
	long long e;
	struct reply r;

	(void)state;
	compile_record("\"gce\": {\"service-accounts\": [{\"email\": \"a@p\", \"token\": {\"access-token\": "
		       "\"ya29.c.Given-token_0/+=\", \"expires-at\": \"2023-11-14T22:30:00Z\"}}, {\"email\": \"b@p\"}]}\n",
		       &vm);
	/* 2023-11-14T22:30:00Z is NOW + 1000 */
	token_of(&vm, NOW, "a@p", tok, sizeof(tok), &e);
	assert_string_equal(tok, "ya29.c.Given-token_0/+=");
	assert_int_equal(e, 1000);
	token_of(&vm, NOW + 999, "default", tok, sizeof(tok), &e);
	assert_string_equal(tok, "ya29.c.Given-token_0/+=");
	assert_int_equal(e, 1);
	token_of(&vm, NOW + 5000, "a@p", tok, sizeof(tok), &e);
	assert_string_equal(tok, "ya29.c.Given-token_0/+=");
	assert_int_equal(e, 0);
	token_of(&vm, NOW - 3000, "a@p", tok, sizeof(tok), &e);
	assert_int_equal(e, 3599);
	token_of(&vm, NOW, "b@p", tok, sizeof(tok), &e);
	assert_int_equal(strncmp(tok, "ya29.imds.", 10), 0);
	assert_int_equal(e, 2800);
	/* The exact answer, and the token stays out of the documents. */
	route_at(&vm, NOW, "GET /computeMetadata/v1/instance/service-accounts/a@p/token HTTP/1.1\r\nHost: x\r\n" GOOGLE
			   "\r\n", &r);
	expect(&r, 200, "{\"access_token\":\"ya29.c.Given-token_0/+=\",\"expires_in\":1000,\"token_type\":\"Bearer\"}");
	reply_free(&r);
	route_at(&vm, NOW, "GET /computeMetadata/v1/?recursive=true HTTP/1.1\r\nHost: x\r\n" GOOGLE "\r\n", &r);
	expect(&r, 200, NULL);
	assert_null(memmem(r.body, r.body_len, "Given-token", 11));
	reply_free(&r);
	route_at(&vm, NOW, "GET /computeMetadata/v1/?recursive=true&alt=text HTTP/1.1\r\nHost: x\r\n" GOOGLE "\r\n", &r);
	expect(&r, 200, NULL);
	assert_null(memmem(r.body, r.body_len, "Given-token", 11));
	reply_free(&r);
	free(vm.img);
}

/* The bare VM's defaults: the name from the instance-id, the default
 * compute account, binary-safe user data. */
static void test_gce_defaults(void **state)
{
	struct reply r;

	(void)state;
	get_vm(&bare_vm, "GET", "/computeMetadata/v1/instance/service-accounts/", GOOGLE, &r);
	expect(&r, 200, "0-compute@developer.gserviceaccount.com/\ndefault/");
	reply_free(&r);
	get_vm(&bare_vm, "GET", "/computeMetadata/v1/instance/zone", GOOGLE, &r);
	expect(&r, 200, "projects/0/zones/local");
	reply_free(&r);
	get_vm(&bare_vm, "GET", "/computeMetadata/v1/instance/attributes/", GOOGLE, &r);
	expect(&r, 200, "");
	reply_free(&r);
	get_vm(&bare_vm, "GET", "/computeMetadata/v1/instance/name", GOOGLE, &r);
	expect(&r, 200, "i-0f1a2b3c4d5e60002");
	reply_free(&r);
}

/* alt=json of a string leaf and of a listing is made per request, without
 * parsing: exactly what jansson writes, for every ASCII character and
 * multi-byte UTF-8 (issue 12). */
static void test_gce_json_strings(void **state)
{
	static const char utf8[] = "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\x7f";
	char value[128 * 6 + sizeof(utf8)], members[sizeof(value) + 128], *want;
	size_t n = 0, vn = 0;
	struct vm_tree vm;
	struct reply r;
	json_t *str;

	(void)state;
	for (int ch = 1; ch < 0x80; ch++)
		n += (size_t)(ch < 0x20 || ch == '"' || ch == '\\' ? sprintf(value + n, "\\u%04x", ch)
								  : sprintf(value + n, "%c", ch));
	n += (size_t)sprintf(value + n, "%s", utf8);
	snprintf(members, sizeof(members), "\"gce\": {\"attributes\": {\"all\": \"%s\", \"b\": \"x\"}}\n", value);
	compile_record(members, &vm);
	get_vm(&vm, "GET", "/computeMetadata/v1/instance/attributes/all", GOOGLE, &r);
	expect(&r, 200, NULL);
	str = json_stringn(r.body, r.body_len);
	vn = r.body_len;
	reply_free(&r);
	assert_int_equal(vn, 127 + strlen(utf8));
	want = json_dumps(str, JSON_ENCODE_ANY);
	get_vm(&vm, "GET", "/computeMetadata/v1/instance/attributes/all?alt=json", GOOGLE, &r);
	expect(&r, 200, want);
	expect_header(&r, "Content-Type", "application/json");
	reply_free(&r);
	free(want);
	json_decref(str);
	get_vm(&vm, "GET", "/computeMetadata/v1/instance/attributes/?alt=json", GOOGLE, &r);
	expect(&r, 200, "[\"all\",\"b\"]");
	reply_free(&r);
	free(vm.img);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_gce_headers),
		cmocka_unit_test(test_gce_data),
		cmocka_unit_test(test_gce_recursive),
		cmocka_unit_test(test_gce_token),
		cmocka_unit_test(test_gce_token_hour_edges),
		cmocka_unit_test(test_gce_operator_token),
		cmocka_unit_test(test_gce_json_strings),
		cmocka_unit_test(test_gce_defaults),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}

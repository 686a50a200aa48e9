/* test_flavor_tokens.c: the flavors of a VM whose EC2 metadata needs a
 * token (options.http-tokens "required"): refused (403) unless the
 * section says "serve-without-token", refused through a proxy, and when
 * served, every 200 leaves as a token reply does (under the VM's hop
 * limit, closing the connection).  A VM with optional tokens is served as
 * before.  docs/flavors.md, "Tokens and the hop limit". */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "flavor_fixture.h"

/* Every flavor section; opt-in per flavor as `optin` names them (Azure's
 * after its managed identity, whose token is a secret too). */
#define SECTIONS(os, gce, az)                                                                                   \
	"\"user-data\": \"#cloud-config secret\",\n"                                                            \
	"\"openstack\": {" os "},\n\"gce\": {" gce "},\n\"azure\": {" AZ_MI az "}\n"
#define OPTIN "\"serve-without-token\": true"
#define AZ_OPTIN ", " OPTIN
#define AZ_MI                                                                                                   \
	"\"managed-identities\": {\"system-assigned\": {\"client-id\": \"11111111-1111-4111-8111-111111111111\", " \
	"\"object-id\": \"22222222-2222-4222-8222-222222222222\", \"tokens\": {\"https://management.azure.com/\": " \
	"{\"access-token\": \"eyJ.secret\", \"expires-on\": \"2030-01-01T00:00:00Z\"}}}}"

static struct vm_tree required_vm, optin_vm, optional_vm, proxy_vm;

static void compile_text(const char *options, const char *sections, struct vm_tree *t)
{
	char *members;

	assert_true(asprintf(&members, "\"options\": {%s},\n%s", options, sections) > 0);
	compile_record(members, t);
	free(members);
}

static int tokens_setup(void **state)
{
	setup(state);
	compile_text("\"http-tokens\": \"required\"", SECTIONS("", "", ""), &required_vm);
	compile_text("\"http-tokens\": \"required\", \"hop-limit\": 2", SECTIONS(OPTIN, OPTIN, AZ_OPTIN), &optin_vm);
	compile_text("\"http-tokens\": \"optional\"", SECTIONS(OPTIN, "", ""), &optional_vm);
	compile_text("\"http-tokens\": \"required\", \"proxied-token-requests\": \"allow\"", SECTIONS(OPTIN, "", ""),
		     &proxy_vm);
	return 0;
}

static int tokens_teardown(void **state)
{
	free(required_vm.img);
	free(optin_vm.img);
	free(optional_vm.img);
	free(proxy_vm.img);
	return teardown(state);
}

static const char os_403[] = "<html>\n <head>\n  <title>403 Forbidden</title>\n </head>\n <body>\n"
			     "  <h1>403 Forbidden</h1>\n  Access was denied to this resource.<br /><br />\n\n\n\n"
			     " </body>\n</html>";
static const char gce_403[] = "This VM requires IMDSv2 session tokens; its GCE metadata is not served to this request";
static const char az_403[] = "{\"error\":\"Forbidden. This VM requires IMDSv2 session tokens; its Azure metadata is "
			     "not served to this request\"}";

/* One request per flavor: a secret (user data) in each. */
static const struct {
	const char *path, *headers, *refusal, *ctype;
} flavor_reqs[] = {
	{ "/openstack/latest/user_data", "", os_403, "text/html" },
	{ "/computeMetadata/v1/instance/attributes/user-data", GOOGLE, gce_403, "text/plain" },
	{ "/metadata/instance/compute/userData" AZV "&format=text", AZ, az_403, "application/json" },
	{ "/computeMetadata/v1/?recursive=true", GOOGLE, gce_403, "text/plain" },
	{ "/metadata/instance" AZV, AZ, az_403, "application/json" },
	{ "/openstack", "", os_403, "text/html" },
	{ "/", GOOGLE, gce_403, "text/plain" },
	{ "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://management.azure.com/", AZ, az_403,
	  "application/json" },
};
#define N_REQS (sizeof(flavor_reqs) / sizeof(flavor_reqs[0]))

static void expect_refused(const struct vm_tree *vm, const char *method, size_t i)
{
	struct reply r;

	get_vm(vm, method, flavor_reqs[i].path, flavor_reqs[i].headers, &r);
	expect(&r, 403, strcmp(method, "HEAD") ? flavor_reqs[i].refusal : NULL);
	expect_header(&r, "Content-Type", flavor_reqs[i].ctype);
	expect_header(&r, "Connection", "close");
	assert_false(r.res.token_reply);
	reply_free(&r);
}

/* Tokens required, no opt-in: every flavor request is refused, whatever
 * the path or method; EC2 keeps its own rule (401 without a token). */
static void test_required_refuses_every_flavor(void **state)
{
	struct reply r;

	(void)state;
	for (size_t i = 0; i < N_REQS; i++) {
		expect_refused(&required_vm, "GET", i);
		expect_refused(&required_vm, "HEAD", i);
		expect_refused(&required_vm, "POST", i);
	}
	get_vm(&required_vm, "GET", "/latest/user-data", "", &r);
	expect(&r, 401, NULL);
	reply_free(&r);
	/* The GCE header rule still decides what "/" is. */
	get_vm(&required_vm, "GET", "/", "", &r);
	expect(&r, 401, NULL);
	reply_free(&r);
}

/* Opted in: served, and every 200 is a hop-limited reply that closes. */
static void test_optin_serves_hop_limited(void **state)
{
	struct reply r;

	(void)state;
	for (size_t i = 0; i < N_REQS; i++) {
		get_vm(&optin_vm, "GET", flavor_reqs[i].path, flavor_reqs[i].headers, &r);
		expect(&r, 200, NULL);
		assert_true(r.res.token_reply);
		assert_true(r.res.close);
		expect_header(&r, "Connection", "close");
		reply_free(&r);
	}
	get_vm(&optin_vm, "GET", "/openstack/latest/user_data", "", &r);
	expect(&r, 200, "#cloud-config secret");
	reply_free(&r);
	/* Errors carry nothing of the VM: no hop limit (they close anyway). */
	get_vm(&optin_vm, "GET", "/openstack/latest/no-such", "", &r);
	expect(&r, 404, NULL);
	assert_false(r.res.token_reply);
	reply_free(&r);
	get_vm(&optin_vm, "GET", "/computeMetadata/v1/instance/id", "", &r);
	expect(&r, 403, "Missing required header \"Metadata-Flavor\": \"Google\"");
	assert_false(r.res.token_reply);
	reply_free(&r);
}

/* The opt-in is per flavor. */
static void test_optin_is_per_flavor(void **state)
{
	struct reply r;

	(void)state;
	get_vm(&proxy_vm, "GET", "/openstack/latest/user_data", "", &r);
	expect(&r, 200, "#cloud-config secret");
	assert_true(r.res.token_reply);
	reply_free(&r);
	expect_refused(&proxy_vm, "GET", 1);
	expect_refused(&proxy_vm, "GET", 2);
}

/* As a token PUT: X-Forwarded-For is always refused, Forwarded and Via
 * unless the VM allows proxied token requests. */
static void test_optin_refuses_proxies(void **state)
{
	static const char *const proxies[] = { "X-Forwarded-For: 10.0.0.9\r\n", "Forwarded: for=10.0.0.9\r\n",
					       "Via: 1.1 squid\r\n" };
	char headers[256];
	struct reply r;

	(void)state;
	for (size_t p = 0; p < 3; p++) {
		for (size_t i = 0; i < N_REQS; i++) {
			snprintf(headers, sizeof(headers), "%s%s", flavor_reqs[i].headers, proxies[p]);
			get_vm(&optin_vm, "GET", flavor_reqs[i].path, headers, &r);
			expect(&r, 403, flavor_reqs[i].refusal);
			assert_false(r.res.token_reply);
			reply_free(&r);
		}
		get_vm(&proxy_vm, "GET", "/openstack/latest/user_data", proxies[p], &r);
		expect(&r, p == 0 ? 403 : 200, NULL);
		reply_free(&r);
	}
}

/* Optional tokens: served as before, keep-alive, no hop limit; the
 * opt-in changes nothing there. */
static void test_optional_unchanged(void **state)
{
	struct reply r;

	(void)state;
	for (size_t i = 0; i < N_REQS; i++) {
		get_vm(&optional_vm, "GET", flavor_reqs[i].path, flavor_reqs[i].headers, &r);
		expect(&r, 200, NULL);
		assert_false(r.res.token_reply);
		assert_false(r.res.close);
		reply_free(&r);
	}
	get_vm(&optional_vm, "GET", "/openstack/latest/user_data", "X-Forwarded-For: 10.0.0.9\r\n", &r);
	expect(&r, 200, "#cloud-config secret");
	reply_free(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_required_refuses_every_flavor),
		cmocka_unit_test(test_optin_serves_hop_limited),
		cmocka_unit_test(test_optin_is_per_flavor),
		cmocka_unit_test(test_optin_refuses_proxies),
		cmocka_unit_test(test_optional_unchanged),
	};

	return cmocka_run_group_tests(tests, tokens_setup, tokens_teardown);
}

/* test_flavor_azure_identity.c: the Azure flavor's managed identity token
 * endpoint (route_azure_identity.c, compile/azure_identity.c) without
 * sockets: the answer field by field, the identity chosen by each id and
 * by default, resources with and without their trailing '/', expires_in
 * counting down, and every error with its status and body.  VM records
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

#define SYS_CLIENT "11111111-1111-4111-8111-111111111111"
#define SYS_OBJECT "22222222-2222-4222-8222-222222222222"
#define APP_CLIENT "aaaaaaaa-0000-4000-8000-00000000000a"
#define APP_OBJECT "bbbbbbbb-0000-4000-8000-00000000000b"
#define APP_RES "/subscriptions/1d2c3b4a-5e6f-4a0b-9c8d-7e6f5a4b3c2d/resourceGroups/web/providers/" \
		"Microsoft.ManagedIdentity/userAssignedIdentities/app"
#define TENANT "72f988bf-86f1-41af-91ab-2d7cd011db47"
#define ARM "https://management.azure.com/"
/* NOW + 3600 and NOW + 7200 */
#define IN_1H "2023-11-14T23:13:20Z"
#define IN_2H "2023-11-15T00:13:20Z"

#define TOKEN_PATH "/metadata/identity/oauth2/token?api-version=2018-02-01"

/* The identities of one VM: a system-assigned one with tokens for ARM and
 * Key Vault (given without its '/'), two user-assigned ones. */
static const char identities[] =
	"\"azure\": {\"managed-identities\": {\n"
	"\"tenant-id\": \"" TENANT "\",\n"
	"\"system-assigned\": {\"client-id\": \"" SYS_CLIENT "\", \"object-id\": \"" SYS_OBJECT "\",\n"
	"  \"tokens\": {\"" ARM "\": {\"access-token\": \"eyJ.sys-arm.sig\", \"expires-on\": \"" IN_1H "\"},\n"
	"             \"https://vault.azure.net\": {\"access-token\": \"eyJ.sys-kv.sig\", \"expires-on\": \"" IN_2H "\"}}},\n"
	"\"user-assigned\": [\n"
	"  {\"client-id\": \"" APP_CLIENT "\", \"object-id\": \"" APP_OBJECT "\", \"resource-id\": \"" APP_RES "\",\n"
	"   \"tokens\": {\"" ARM "\": {\"access-token\": \"eyJ.app-arm.sig\", \"expires-on\": \"" IN_2H "\"}}},\n"
	"  {\"client-id\": \"cccccccc-0000-4000-8000-00000000000c\", \"object-id\": \"dddddddd-0000-4000-8000-00000000000d\",\n"
	"   \"resource-id\": \"/subscriptions/x/resourceGroups/web/providers/Microsoft.ManagedIdentity/"
	"userAssignedIdentities/idle\"}]}}\n";

static struct vm_tree mi_vm, one_user_vm, two_users_vm, no_mi_vm;

static int mi_setup(void **state)
{
	setup(state);
	compile_record(identities, &mi_vm);
	compile_record("\"azure\": {\"managed-identities\": {\"user-assigned\": [{\"client-id\": \"" APP_CLIENT
		       "\", \"object-id\": \"" APP_OBJECT "\", \"resource-id\": \"/r/app\", \"tokens\": {\"" ARM
		       "\": {\"access-token\": \"only-user\", \"expires-on\": \"" IN_1H "\"}}}]}}\n",
		       &one_user_vm);
	compile_record("\"azure\": {\"managed-identities\": {\"user-assigned\": [\n"
		       "{\"client-id\": \"" APP_CLIENT "\", \"object-id\": \"" APP_OBJECT "\", \"resource-id\": \"/r/a\"},\n"
		       "{\"client-id\": \"" SYS_CLIENT "\", \"object-id\": \"" SYS_OBJECT "\", \"resource-id\": \"/r/b\"}]}}\n",
		       &two_users_vm);
	compile_record("\"azure\": {}\n", &no_mi_vm);
	return 0;
}

static int mi_teardown(void **state)
{
	free(mi_vm.img);
	free(one_user_vm.img);
	free(two_users_vm.img);
	free(no_mi_vm.img);
	return teardown(state);
}

/* GET `query` (after the token path and its api-version) at `now`. */
static void token_at(const struct vm_tree *vm, time_t now, const char *query, const char *headers, struct reply *r)
{
	char raw[4096];

	snprintf(raw, sizeof(raw), "GET " TOKEN_PATH "%s HTTP/1.1\r\nHost: 169.254.169.254\r\n%s\r\n", query, headers);
	route_at(vm, now, raw, r);
}

/* The access token and expires_in of a 200. */
static void expect_token(const struct vm_tree *vm, time_t now, const char *query, const char *token,
			 const char *expires_in)
{
	struct reply r;
	json_t *v;

	token_at(vm, now, query, AZ, &r);
	expect(&r, 200, NULL);
	v = body_json(&r);
	assert_string_equal(json_string_value(json_object_get(v, "access_token")), token);
	if (expires_in)
		assert_string_equal(json_string_value(json_object_get(v, "expires_in")), expires_in);
	json_decref(v);
	reply_free(&r);
}

static void expect_error(const struct vm_tree *vm, const char *query, const char *headers, int status,
			 const char *body)
{
	struct reply r;

	token_at(vm, NOW, query, headers, &r);
	expect(&r, status, body);
	expect_header(&r, "Content-Type", "application/json");
	expect_header(&r, "Connection", "close");
	reply_free(&r);
}

/* The whole answer, every value a string as IMDS writes it. */
static void test_token_answer(void **state)
{
	struct reply r;

	(void)state;
	token_at(&mi_vm, NOW, "&resource=" ARM, AZ, &r);
	expect(&r, 200,
	       "{\"access_token\":\"eyJ.sys-arm.sig\",\"client_id\":\"" SYS_CLIENT "\",\"expires_in\":\"3600\","
	       "\"expires_on\":\"1700003600\",\"ext_expires_in\":\"3600\",\"not_before\":\"1699999900\","
	       "\"resource\":\"" ARM "\",\"token_type\":\"Bearer\"}");
	expect_header(&r, "Content-Type", "application/json");
	assert_false(r.res.close);
	reply_free(&r);
	/* resource is echoed as asked, JSON-escaped */
	token_at(&mi_vm, NOW, "&resource=https%3A%2F%2Fmanagement.azure.com", AZ, &r);
	expect(&r, 200, NULL);
	assert_non_null(strstr(r.body, "\"resource\":\"https://management.azure.com\","));
	reply_free(&r);
}

/* "https://x/" and "https://x" are one resource, either way round; other
 * spellings are other resources. */
static void test_resource_trailing_slash(void **state)
{
	(void)state;
	expect_token(&mi_vm, NOW, "&resource=https://management.azure.com", "eyJ.sys-arm.sig", "3600");
	expect_token(&mi_vm, NOW, "&resource=https://vault.azure.net/", "eyJ.sys-kv.sig", "7200");
	expect_token(&mi_vm, NOW, "&resource=https://vault.azure.net", "eyJ.sys-kv.sig", "7200");
	expect_error(&mi_vm, "&resource=https://management.azure.com//", AZ, 400, NULL);
	expect_error(&mi_vm, "&resource=https://management.azure.com/.default", AZ, 400, NULL);
}

/* Each id selects its identity, in any letter case; the system-assigned
 * one is also found by its own ids. */
static void test_select_identity(void **state)
{
	(void)state;
	expect_token(&mi_vm, NOW, "&resource=" ARM "&client_id=" APP_CLIENT, "eyJ.app-arm.sig", "7200");
	expect_token(&mi_vm, NOW, "&resource=" ARM "&client_id=AAAAAAAA-0000-4000-8000-00000000000A", "eyJ.app-arm.sig",
		     NULL);
	expect_token(&mi_vm, NOW, "&client_id=" APP_CLIENT "&resource=" ARM, "eyJ.app-arm.sig", NULL);
	expect_token(&mi_vm, NOW, "&resource=" ARM "&object_id=" APP_OBJECT, "eyJ.app-arm.sig", NULL);
	expect_token(&mi_vm, NOW, "&resource=" ARM "&msi_res_id=" APP_RES, "eyJ.app-arm.sig", NULL);
	expect_token(&mi_vm, NOW,
		     "&resource=" ARM "&msi_res_id=%2Fsubscriptions%2F1D2C3B4A-5e6f-4a0b-9c8d-7e6f5a4b3c2d%2F"
		     "resourcegroups%2Fweb%2Fproviders%2FMicrosoft.ManagedIdentity%2FuserAssignedIdentities%2Fapp",
		     "eyJ.app-arm.sig", NULL);
	expect_token(&mi_vm, NOW, "&resource=" ARM "&mi_res_id=" APP_RES, "eyJ.app-arm.sig", NULL);
	expect_token(&mi_vm, NOW, "&resource=" ARM "&client_id=" SYS_CLIENT, "eyJ.sys-arm.sig", NULL);
	expect_token(&mi_vm, NOW, "&resource=" ARM "&object_id=" SYS_OBJECT, "eyJ.sys-arm.sig", NULL);
	/* the client_id field names the identity that answered */
	{
		struct reply r;

		token_at(&mi_vm, NOW, "&resource=" ARM "&object_id=" APP_OBJECT, AZ, &r);
		assert_non_null(strstr(r.body, "\"client_id\":\"" APP_CLIENT "\""));
		reply_free(&r);
	}
}

/* Without an id: the system-assigned identity, else the only user-assigned
 * one; with several user-assigned and none system-assigned, Azure asks
 * which; without identities there is none. */
static void test_default_identity(void **state)
{
	(void)state;
	expect_token(&mi_vm, NOW, "&resource=" ARM, "eyJ.sys-arm.sig", NULL);
	expect_token(&one_user_vm, NOW, "&resource=" ARM, "only-user", NULL);
	expect_error(&two_users_vm, "&resource=" ARM, AZ, 400,
		     "{\"error\":\"invalid_request\",\"error_description\":\"Multiple user assigned identities exist, "
		     "please specify the clientId / resourceId of the identity in the token request\"}");
	expect_error(&no_mi_vm, "&resource=" ARM, AZ, 400,
		     "{\"error\":\"invalid_request\",\"error_description\":\"Identity not found\"}");
}

/* expires_in counts down to expires-on and stops at 0; the rest stays. */
static void test_expiry(void **state)
{
	struct reply r;

	(void)state;
	expect_token(&mi_vm, NOW + 3000, "&resource=" ARM, "eyJ.sys-arm.sig", "600");
	expect_token(&mi_vm, NOW + 3599, "&resource=" ARM, "eyJ.sys-arm.sig", "1");
	expect_token(&mi_vm, NOW + 3600, "&resource=" ARM, "eyJ.sys-arm.sig", "0");
	token_at(&mi_vm, NOW + 9000, "&resource=" ARM, AZ, &r);
	expect(&r, 200, NULL);
	assert_non_null(strstr(r.body, "\"expires_in\":\"0\",\"expires_on\":\"1700003600\",\"ext_expires_in\":\"0\","));
	reply_free(&r);
}

static void test_errors(void **state)
{
	(void)state;
	expect_error(&mi_vm, "&resource=" ARM, "", 400,
		     "{\"error\":\"bad_request_102\",\"error_description\":\"Required metadata header not specified\"}");
	expect_error(&mi_vm, "&resource=" ARM, "Metadata: false\r\n", 400, NULL);
	expect_error(&mi_vm, "&resource=" ARM, AZ "X-Forwarded-For: 10.0.0.9\r\n", 400,
		     "{\"error\":\"invalid_request\",\"error_description\":\"Requests with X-Forwarded-For are not "
		     "accepted\"}");
	expect_error(&mi_vm, "", AZ, 400,
		     "{\"error\":\"invalid_request\",\"error_description\":\"Required query variable 'resource' is "
		     "missing\"}");
	expect_error(&mi_vm, "&resource=", AZ, 400, NULL);
	expect_error(&mi_vm, "&resource=" ARM "&client_id=99999999-0000-4000-8000-000000000009", AZ, 400,
		     "{\"error\":\"invalid_request\",\"error_description\":\"Identity not found\"}");
	expect_error(&mi_vm, "&resource=" ARM "&client_id=", AZ, 400, NULL);
	expect_error(&mi_vm, "&resource=" ARM "&msi_res_id=/r/none", AZ, 400, NULL);
	expect_error(&mi_vm, "&resource=" ARM "&client_id=" APP_CLIENT "&object_id=" APP_OBJECT, AZ, 400,
		     "{\"error\":\"invalid_request\",\"error_description\":\"Only one of client_id, object_id or "
		     "msi_res_id may be given\"}");
	/* A resource the identity has no token for: Entra's answer, with the
	 * requested name escaped. */
	expect_error(&mi_vm, "&resource=https://storage.azure.com/%22x", AZ, 400,
		     "{\"error\":\"invalid_resource\",\"error_description\":\"AADSTS50001: The application named "
		     "https://storage.azure.com/\\\"x was not found in the tenant named " TENANT ". This can happen if "
		     "the application has not been installed by the administrator of the tenant or consented to by "
		     "any user in the tenant. You might have sent your authentication request to the wrong tenant.\"}");
	/* the idle identity has none at all */
	expect_error(&mi_vm, "&resource=" ARM "&client_id=cccccccc-0000-4000-8000-00000000000c", AZ, 400, NULL);
}

static void test_api_version(void **state)
{
	struct reply r;

	(void)state;
	route_at(&mi_vm, NOW,
		 "GET /metadata/identity/oauth2/token?resource=" ARM " HTTP/1.1\r\nHost: x\r\n" AZ "\r\n", &r);
	expect(&r, 400,
	       "{\"error\":\"invalid_request\",\"error_description\":\"Required query variable 'api-version' is "
	       "missing\"}");
	reply_free(&r);
	/* The token endpoint began with 2018-02-01. */
	route_at(&mi_vm, NOW,
		 "GET /metadata/identity/oauth2/token?api-version=2017-12-01&resource=" ARM " HTTP/1.1\r\nHost: x\r\n" AZ
		 "\r\n",
		 &r);
	expect(&r, 400, NULL);
	assert_non_null(strstr(r.body, "\"error\":\"invalid_request\""));
	reply_free(&r);
	route_at(&mi_vm, NOW,
		 "GET /metadata/identity/oauth2/token?api-version=2019-08-01&resource=" ARM " HTTP/1.1\r\nHost: x\r\n" AZ
		 "\r\n",
		 &r);
	expect(&r, 200, NULL);
	reply_free(&r);
}

/* A VM not served as Azure has no Azure paths; other methods are 405. */
static void test_not_azure(void **state)
{
	struct reply r;

	(void)state;
	token_at(&ec2_vm, NOW, "&resource=" ARM, AZ, &r);
	expect(&r, 404, "{\"error\":\"Not found\"}");
	reply_free(&r);
	route_at(&mi_vm, NOW, "POST " TOKEN_PATH "&resource=" ARM " HTTP/1.1\r\nHost: x\r\n" AZ "\r\n", &r);
	expect(&r, 405, NULL);
	reply_free(&r);
	/* Tokens are not part of the instance document. */
	get_vm(&mi_vm, "GET", "/metadata/instance" AZV, AZ, &r);
	expect(&r, 200, NULL);
	assert_null(memmem(r.body, r.body_len, "eyJ", 3));
	assert_null(memmem(r.body, r.body_len, SYS_CLIENT, strlen(SYS_CLIENT)));
	reply_free(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_token_answer),  cmocka_unit_test(test_resource_trailing_slash),
		cmocka_unit_test(test_select_identity), cmocka_unit_test(test_default_identity),
		cmocka_unit_test(test_expiry),	      cmocka_unit_test(test_errors),
		cmocka_unit_test(test_api_version),   cmocka_unit_test(test_not_azure),
	};

	return cmocka_run_group_tests(tests, mi_setup, mi_teardown);
}

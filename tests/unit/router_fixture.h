/* router_fixture.h: three VMs with a small EC2 tree built with
 * tree_builder (tokens optional, tokens required, proxied token requests
 * allowed), requests to them through route_harness.h, and byte-exact
 * checks on the replies, for the EC2 router unit tests.  Include after
 * cmocka.h. */
#ifndef IMDS_TEST_ROUTER_FIXTURE_H
#define IMDS_TEST_ROUTER_FIXTURE_H
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/router.h"
#include "imds.h"
#include "lib/tree.h"
#include "route_harness.h"

#define NOW 1700000000
#define LAST_MODIFIED 1699990000
#define IID "i-0123456789abcdef0"
#define DATE_OF_NOW "Date: Tue, 14 Nov 2023 22:13:20 GMT\r\n"

static const uint8_t key[IMDS_TOKEN_KEY_LEN] = { 42, 1, 2, 3 };

static struct vm_tree optional_vm, required_vm, proxied_vm;

static void build_vm(struct vm_tree *vm, uint8_t tokens, uint8_t allow_proxied)
{
	struct tree_builder *b = tree_builder_new();
	struct tree_meta meta = { .slot = 1, .last_modified = LAST_MODIFIED, .http_tokens = tokens, .hop_limit = 1,
				  .allow_proxied = allow_proxied };
	static const char doc[] = "{\n  \"instanceId\" : \"" IID "\"\n}";

	assert_non_null(b);
	snprintf(meta.instance_id, sizeof(meta.instance_id), "%s", IID);
	assert_int_equal(tree_add_leaf(b, "ec2/meta-data/instance-id", IID, strlen(IID), CT_TEXT), 0);
	assert_int_equal(tree_add_leaf(b, "ec2/meta-data/placement/availability-zone", "us-east-1a", 10, CT_TEXT), 0);
	assert_int_equal(tree_add_leaf(b, "ec2/dynamic/instance-identity/document", doc, strlen(doc), CT_TEXT), 0);
	assert_int_equal(tree_add_leaf(b, "ec2/dynamic/instance-identity/signature", "c2ln", 4, CT_TEXT), 0);
	assert_int_equal(tree_add_leaf(b, "ec2/user-data", "#cloud-config\n", 14, CT_OCTET), 0);
	/* EC2's version root lists "dynamic" without a slash (§1.5). */
	assert_int_equal(tree_set_listing(b, "ec2/", "dynamic\nmeta-data\nuser-data"), 0);
	assert_int_equal(tree_build(b, &meta, &vm->img, &vm->len), 0);
	assert_int_equal(tree_view_init(&vm->view, vm->img, vm->len), 0);
	tree_builder_free(b);
}

static int setup(void **state)
{
	(void)state;
	build_vm(&optional_vm, IMDS_TOKENS_OPTIONAL, 0);
	build_vm(&required_vm, IMDS_TOKENS_REQUIRED, 0);
	build_vm(&proxied_vm, IMDS_TOKENS_OPTIONAL, 1);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	free(optional_vm.img);
	free(required_vm.img);
	free(proxied_vm.img);
	return 0;
}

static void route_at(const struct vm_tree *vm, time_t now, const char *raw, struct reply *r)
{
	route_with_key(vm, key, now, raw, r);
}

static void route(const char *raw, struct reply *r)
{
	route_at(&optional_vm, NOW, raw, r);
}

static void expect_status_line(const struct reply *r, const char *line)
{
	size_t n = strlen(line);

	if (strncmp(r->out.data, line, n) != 0 || strncmp(r->out.data + n, "\r\n", 2) != 0)
		fail_msg("status line: want \"%s\", got \"%.40s\"", line, r->out.data);
}

static void expect_no_header(const struct reply *r, const char *name)
{
	char buf[256];

	assert_null(header(r, name, buf, sizeof(buf)));
}

static void expect_body(const struct reply *r, const char *body)
{
	char len[32];

	snprintf(len, sizeof(len), "%zu", strlen(body));
	assert_int_equal(r->body_len, strlen(body));
	assert_memory_equal(r->body, body, strlen(body));
	expect_header(r, "Content-Length", len);
}

/* Full reply of a GET for `path` with optional extra request headers. */
static void get(const char *path, const char *headers, struct reply *r)
{
	char raw[1024];

	snprintf(raw, sizeof(raw), "GET %s HTTP/1.1\r\nHost: 169.254.169.254\r\n%s\r\n", path, headers ? headers : "");
	route(raw, r);
}

static void put_token(const char *ttl_header, struct reply *r)
{
	char raw[512];

	snprintf(raw, sizeof(raw), "PUT /latest/api/token HTTP/1.1\r\nHost: 169.254.169.254\r\n%s\r\n", ttl_header);
	route(raw, r);
}

#endif

/* compile_harness.h: one VM document through the real parser (vmconf.c)
 * and compiler, and checks on the resulting tree, for the compile and EC2
 * unit tests.  The including file defines VM_HEAD (the document up to the
 * VM's extra fields) first; include after cmocka.h. */
#ifndef IMDS_TEST_COMPILE_HARNESS_H
#define IMDS_TEST_COMPILE_HARNESS_H
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compile/compile.h"
#include "lib/tree.h"
#include "compile/vmconf.h"

struct compiled {
	struct vm_set set;
	void *img;
	size_t len;
	struct tree_view v;
};

/* Parses a one-VM document (VM_HEAD + extra fields) and compiles it. */
static void compile_doc(const char *extra, struct compiled *c)
{
	struct conf_error cerr;
	char *text, err[256];
	int rc;

	assert_true(asprintf(&text, VM_HEAD "%s}]}", extra) > 0);
	rc = vmconf_parse("t.json", text, strlen(text), &c->set, &cerr);
	free(text);
	if (rc)
		fail_msg("parse: %s", cerr.text);
	rc = vm_compile(&c->set.vms[0], NULL, &c->img, &c->len, err, sizeof(err));
	if (rc)
		fail_msg("compile %d: %s", rc, err);
	assert_int_equal(tree_view_init(&c->v, c->img, c->len), 0);
}

static void compiled_free(struct compiled *c)
{
	free(c->img);
	vmconf_free(&c->set);
}

/* `path` is in the tree with exactly `body`. */
static void expect_node(const struct compiled *c, const char *path, const char *body)
{
	struct tree_entry e;

	if (tree_lookup(&c->v, path, strlen(path), &e))
		fail_msg("%s: not in the tree", path);
	if (e.body_len != strlen(body) || memcmp(e.body, body, e.body_len))
		fail_msg("%s: got \"%.*s\", want \"%s\"", path, (int)e.body_len, e.body, body);
}

#endif

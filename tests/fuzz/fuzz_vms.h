/* fuzz_vms.h: the rich VMs the fuzz targets and the seed generator share:
 * tests/fuzz/rich-vms.json (every section of every flavor: IAM, tags,
 * OpenStack, GCE with an operator's token, Azure; one VM optional, one
 * tokens-required with serve-without-token) compiled once into trees, the
 * host key and the clock the requests are routed with. */
#ifndef IMDS_FUZZ_VMS_H
#define IMDS_FUZZ_VMS_H
#include <stdio.h>
#include <stdlib.h>

#include "compile/compile.h"
#include "compile/vmconf.h"
#include "imds.h"
#include "lib/tree.h"

#ifndef FUZZ_DIR
#define FUZZ_DIR "tests/fuzz"
#endif
#define FUZZ_VMS_FILE FUZZ_DIR "/rich-vms.json"
#define FUZZ_VMS_MAX 4
#define FUZZ_NOW 1700000000 /* 2023-11-14T22:13:20Z */

static const uint8_t fuzz_key[IMDS_TOKEN_KEY_LEN] = { 0x66, 0x75, 0x7a, 0x7a, 7, 1, 2, 3 };

struct fuzz_vm {
	void *img;
	size_t len;
	struct tree_view view;
	char instance_id[64];
};

/* Compiles every VM of the fixture into vms[]; exits on failure (the
 * fixture is part of the harness: a broken one is not a finding). */
static inline size_t fuzz_vms_load(struct fuzz_vm vms[FUZZ_VMS_MAX])
{
	struct tree_meta meta = { .slot = 1, .vm_generation = 1, .last_modified = FUZZ_NOW - 100 };
	struct conf_error cerr;
	struct vm_set set;
	char err[512] = "";
	size_t n;

	if (vmconf_load_file(FUZZ_VMS_FILE, &set, &cerr)) {
		fprintf(stderr, "fuzz: %s\n", cerr.text);
		exit(2);
	}
	for (n = 0; n < set.n && n < FUZZ_VMS_MAX; n++) {
		if (vm_compile(&set.vms[n], &meta, &vms[n].img, &vms[n].len, err, sizeof(err)) ||
		    tree_view_init(&vms[n].view, vms[n].img, vms[n].len)) {
			fprintf(stderr, "fuzz: %s: cannot compile VM %zu: %s\n", FUZZ_VMS_FILE, n, err);
			exit(2);
		}
		snprintf(vms[n].instance_id, sizeof(vms[n].instance_id), "%s", tree_view_meta(&vms[n].view)->instance_id);
	}
	vmconf_free(&set);
	return n;
}

#endif

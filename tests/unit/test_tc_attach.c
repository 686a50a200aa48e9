/* test_tc_attach.c: how imdsd chooses between TCX links and cls_bpf
 * (user/ports/dataplane.c, dataplane_set_tc_attach) and what it says when
 * it cannot have TCX.  The kernel is asked for real: as root on a 6.6+
 * kernel TCX is chosen; a process without CAP_NET_ADMIN and CAP_SYS_ADMIN
 * is refused the query, which must not be reported as a kernel without
 * TCX. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/capability.h>

#include <cmocka.h>

#include "ports/dataplane.h"

/* Drops CAP_NET_ADMIN, CAP_SYS_ADMIN and CAP_BPF from this process's
 * effective set (the permitted set keeps them; nothing here needs more). */
static int drop_net_caps(void)
{
	struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct data[2];

	if (syscall(SYS_capget, &hdr, data) < 0)
		return -errno;
	data[CAP_NET_ADMIN / 32].effective &= ~(1u << (CAP_NET_ADMIN % 32));
	data[CAP_SYS_ADMIN / 32].effective &= ~(1u << (CAP_SYS_ADMIN % 32));
	data[CAP_BPF / 32].effective &= ~(1u << (CAP_BPF % 32));
	return syscall(SYS_capset, &hdr, data) < 0 ? -errno : 0;
}

/* In a child without the capabilities: auto falls back to cls_bpf and
 * says the query was refused; tcx fails with the same reason.  Exit
 * status 0 when every check held, else the number of the failed one. */
static int refused_probe_child(void)
{
	char err[256];

	if (drop_net_caps() < 0)
		return 1;
	if (dataplane_set_tc_attach(DATAPLANE_TC_AUTO, err, sizeof(err)) != 0)
		return 2;
	if (strcmp(dataplane_tc_attach_name(), "cls") != 0)
		return 3;
	if (!strstr(err, "cannot query TCX links") || strstr(err, "no TCX links") || !strstr(err, "cls_bpf"))
		return 4;
	if (dataplane_set_tc_attach(DATAPLANE_TC_TCX, err, sizeof(err)) != -EPERM)
		return 5;
	if (strncmp(err, "--tc-attach tcx: cannot query TCX links: ", 41) != 0)
		return 6;
	return 0;
}

static void test_a_refused_probe_is_not_a_kernel_without_tcx(void **state)
{
	int status;
	pid_t pid;

	(void)state;
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		_exit(refused_probe_child());
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

/* TCX came in Linux 6.6. */
static bool kernel_has_tcx(void)
{
	struct utsname u;
	int major = 0, minor = 0;

	return uname(&u) == 0 && sscanf(u.release, "%d.%d", &major, &minor) == 2 &&
	       (major > 6 || (major == 6 && minor >= 6));
}

static void test_root_on_this_kernel_gets_tcx(void **state)
{
	char err[256];

	(void)state;
	if (!kernel_has_tcx())
		skip();
	assert_int_equal(dataplane_set_tc_attach(DATAPLANE_TC_AUTO, err, sizeof(err)), 0);
	assert_string_equal(dataplane_tc_attach_name(), "tcx");
	assert_string_equal(err, "");
	assert_int_equal(dataplane_set_tc_attach(DATAPLANE_TC_CLS, err, sizeof(err)), 0);
	assert_string_equal(dataplane_tc_attach_name(), "cls");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_a_refused_probe_is_not_a_kernel_without_tcx),
		cmocka_unit_test(test_root_on_this_kernel_gets_tcx),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

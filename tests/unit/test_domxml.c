/* test_domxml.c: the VM record of a libvirt domain (user/libvirt/domxml.c):
 * a complete record, mac and port from the interface, ipv4 from the
 * network's DHCP hosts, CDATA, no element (not ours), bad JSON with its
 * position, and the choice between two interfaces. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "libvirt/domxml.h"

/* As IMDS_BRIDGES="br-imds virbr9 tenant-*" gives them: names and a pattern. */
static const char *const bridges[] = { "br-imds", "virbr9", "tenant-*" };
static char netdir[64];
static const char *dirs[] = { "/nonexistent", netdir };

#define DOM_HEAD "<domain type='qemu'>\n  <name>t</name>\n  <metadata>\n"
#define DOM_VM(json) "    <imds:vm xmlns:imds='urn:imds:libvirt:v1'>" json "</imds:vm>\n"
#define DOM_DEVICES "  </metadata>\n  <devices>\n"
#define IF_BRIDGE(mac, br, tap) \
	"    <interface type='bridge'><mac address='" mac "'/><source bridge='" br "'/>" tap "</interface>\n"
#define IF_NETWORK(mac, net) "    <interface type='network'><mac address='" mac "'/><source network='" net "'/></interface>\n"
#define TARGET(dev) "<target dev='" dev "'/>"
#define DOM_TAIL "  </devices>\n</domain>\n"

static int make_network(void **state)
{
	char path[128];
	FILE *f;

	(void)state;
	snprintf(netdir, sizeof(netdir), "/tmp/test_domxml.XXXXXX");
	assert_non_null(mkdtemp(netdir));
	snprintf(path, sizeof(path), "%s/lab.xml", netdir);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs("<network><name>lab</name><bridge name='virbr9'/><ip address='10.9.0.1' netmask='255.255.255.0'>"
	      "<dhcp><range start='10.9.0.100' end='10.9.0.200'/>"
	      "<host mac='52:54:00:00:00:01' ip='10.9.0.11'/><host mac='52:54:00:00:00:02' ip='10.9.0.12'/>"
	      "</dhcp></ip></network>\n", f);
	fclose(f);
	return 0;
}

static int remove_network(void **state)
{
	char path[128];

	(void)state;
	snprintf(path, sizeof(path), "%s/lab.xml", netdir);
	unlink(path);
	rmdir(netdir);
	return 0;
}

static int record_of(const char *xml, bool need_port, json_t **rec, struct domxml_error *err)
{
	struct domxml_conf conf = { bridges, 3, dirs, 2, need_port, false, false };

	err->text[0] = '\0';
	return domxml_record(xml, strlen(xml), &conf, rec, err);
}

static const char *str(json_t *rec, const char *key)
{
	return json_string_value(json_object_get(rec, key));
}

/* Succeeds and returns the record. */
static json_t *good(const char *xml, bool need_port)
{
	struct domxml_error err;
	json_t *rec = NULL;
	int rc = record_of(xml, need_port, &rec, &err);

	if (rc != 1)
		fail_msg("rc %d: %s", rc, err.text);
	return rec;
}

/* Fails with -EINVAL and a message containing `want`. */
static void bad(const char *xml, bool need_port, const char *want)
{
	struct domxml_error err;
	json_t *rec = NULL;
	int rc = record_of(xml, need_port, &rec, &err);

	assert_int_equal(rc, -EINVAL);
	assert_null(rec);
	if (!strstr(err.text, want))
		fail_msg("error \"%s\" lacks \"%s\"", err.text, want);
}

static void test_complete_record_is_kept(void **state)
{
	json_t *rec = good(DOM_HEAD DOM_VM("{\"instance-id\":\"i-1\",\"mac\":\"52:54:00:00:00:07\","
					   "\"ipv4\":\"10.0.0.7\",\"port\":\"tap7\"}")
			   DOM_DEVICES IF_BRIDGE("52:54:00:00:00:07", "br-imds", TARGET("vnet0")) DOM_TAIL, true);

	(void)state;
	assert_string_equal(str(rec, "port"), "tap7");
	assert_string_equal(str(rec, "mac"), "52:54:00:00:00:07");
	assert_string_equal(str(rec, "ipv4"), "10.0.0.7");
	json_decref(rec);
}

static void test_mac_and_port_from_the_interface(void **state)
{
	const char *xml = DOM_HEAD DOM_VM("{\"instance-id\":\"i-1\",\"ipv4\":\"10.0.0.7\"}") DOM_DEVICES
		IF_BRIDGE("52:54:00:00:00:08", "br-other", TARGET("vnet1"))
		IF_BRIDGE("52:54:00:00:00:07", "br-imds", TARGET("vnet3")) DOM_TAIL;
	json_t *rec = good(xml, true);

	(void)state;
	assert_string_equal(str(rec, "mac"), "52:54:00:00:00:07");
	assert_string_equal(str(rec, "port"), "vnet3");
	json_decref(rec);
	/* At prepare there is no tap yet: no port, and none needed. */
	rec = good(DOM_HEAD DOM_VM("{\"instance-id\":\"i-1\",\"ipv4\":\"10.0.0.7\"}") DOM_DEVICES
		   IF_BRIDGE("52:54:00:00:00:07", "br-imds", "") DOM_TAIL, false);
	assert_null(json_object_get(rec, "port"));
	json_decref(rec);
	bad(DOM_HEAD DOM_VM("{\"instance-id\":\"i-1\",\"ipv4\":\"10.0.0.7\"}") DOM_DEVICES
	    IF_BRIDGE("52:54:00:00:00:07", "br-imds", "") DOM_TAIL, true, "has no <target dev=…>");
	bad(DOM_HEAD DOM_VM("{\"instance-id\":\"i-1\",\"ipv4\":\"10.0.0.7\"}") DOM_DEVICES
	    IF_BRIDGE("52:54:00:00:00:07", "br-other", "") DOM_TAIL, false, "no <interface type='bridge'|'network'>");
}

/* A bridge matched by a pattern is served as imdsd serves it (the same
 * rule, lib/namelist.c); one that only looks alike is not. */
static void test_bridge_matched_by_a_pattern(void **state)
{
	json_t *rec = good(DOM_HEAD DOM_VM("{\"instance-id\":\"i-1\",\"ipv4\":\"10.0.0.7\"}") DOM_DEVICES
			   IF_BRIDGE("52:54:00:00:00:08", "tenant", TARGET("vnet1"))
			   IF_BRIDGE("52:54:00:00:00:07", "tenant-42", TARGET("vnet4")) DOM_TAIL, true);

	(void)state;
	assert_string_equal(str(rec, "mac"), "52:54:00:00:00:07");
	assert_string_equal(str(rec, "port"), "vnet4");
	json_decref(rec);
}

static void test_ipv4_from_the_network_dhcp_host(void **state)
{
	json_t *rec = good(DOM_HEAD DOM_VM("{\"instance-id\":\"i-1\"}") DOM_DEVICES
			   IF_NETWORK("52:54:00:00:00:02", "lab") DOM_TAIL, false);

	(void)state;
	assert_string_equal(str(rec, "ipv4"), "10.9.0.12");
	assert_string_equal(str(rec, "mac"), "52:54:00:00:00:02");
	json_decref(rec);
	bad(DOM_HEAD DOM_VM("{\"instance-id\":\"i-1\"}") DOM_DEVICES IF_NETWORK("52:54:00:00:00:09", "lab") DOM_TAIL,
	    false, "network 'lab' has no <dhcp><host mac='52:54:00:00:00:09'");
	bad(DOM_HEAD DOM_VM("{\"instance-id\":\"i-1\"}") DOM_DEVICES
	    IF_BRIDGE("52:54:00:00:00:07", "br-imds", "") DOM_TAIL, false, "\"ipv4\" is missing");
	bad(DOM_HEAD DOM_VM("{\"instance-id\":\"i-1\"}") DOM_DEVICES IF_NETWORK("52:54:00:00:00:02", "gone") DOM_TAIL,
	    false, "no gone.xml in the network directories");
}

/* IMDS_LIBVIRT_RECORDS=etcd: the object names the VM only; the tap is
 * found, and no ipv4 is asked for (etcd's record has it). */
static void test_tap_only_needs_no_ipv4(void **state)
{
	const char *xml = DOM_HEAD DOM_VM("{\"instance-id\":\"i-1\"}") DOM_DEVICES
		IF_BRIDGE("52:54:00:00:00:07", "br-imds", TARGET("vnet5")) DOM_TAIL;
	struct domxml_conf conf = { bridges, 3, dirs, 2, true, false, true };
	struct domxml_error err;
	json_t *rec = NULL;

	(void)state;
	assert_int_equal(domxml_record(xml, strlen(xml), &conf, &rec, &err), 1);
	assert_string_equal(str(rec, "port"), "vnet5");
	assert_null(json_object_get(rec, "ipv4"));
	json_decref(rec);
	bad(xml, true, "\"ipv4\" is missing"); /* the same domain, records from <imds:vm> */
}

static void test_cdata(void **state)
{
	json_t *rec = good(DOM_HEAD DOM_VM("<![CDATA[\n{\"instance-id\":\"i-1\",\"ipv4\":\"10.0.0.7\","
					   "\"user-data\":\"a<b && c>d\"}\n]]>")
			   DOM_DEVICES IF_BRIDGE("52:54:00:00:00:07", "br-imds", "") DOM_TAIL, false);

	(void)state;
	assert_string_equal(str(rec, "user-data"), "a<b && c>d");
	json_decref(rec);
}

static void test_no_element_is_not_ours(void **state)
{
	/* the right name in another namespace is not ours either */
	const char *xml = "<domain><name>t</name><metadata><vm xmlns='urn:other'>{}</vm></metadata></domain>";
	struct domxml_error err;
	json_t *rec = (json_t *)1;

	(void)state;
	assert_int_equal(record_of(xml, true, &rec, &err), 0);
	assert_null(rec);
	assert_int_equal(record_of("<domain><name>t</name></domain>", true, &rec, &err), 0);
	bad("<domain><name>t</name>", false, "domain XML: line");
	bad(DOM_HEAD DOM_VM("{}") DOM_VM("{}") DOM_DEVICES DOM_TAIL, false, "two <vm xmlns=\"urn:imds:libvirt:v1\">");
}

static void test_bad_json_says_where(void **state)
{
	(void)state;
	bad(DOM_HEAD DOM_VM("\n{\"instance-id\": \"i-1\",\n  \"ipv4\": 10.0.0.7}") DOM_DEVICES DOM_TAIL, false,
	    "<imds:vm> (line 4): JSON line 3 column");
	bad(DOM_HEAD DOM_VM("[1]") DOM_DEVICES DOM_TAIL, false, "must be one JSON object");
	bad(DOM_HEAD DOM_VM("{\"a\":1,\"a\":2}") DOM_DEVICES DOM_TAIL, false, "duplicate object key");
	bad(DOM_HEAD DOM_VM("{\"instance-id\":\"i-1\",\"mac\":7}") DOM_DEVICES DOM_TAIL, false,
	    "\"mac\" must be a string");
}

static void test_two_interfaces_need_a_mac(void **state)
{
	const char *ifs = IF_BRIDGE("52:54:00:00:00:07", "br-imds", TARGET("vnet0"))
		IF_NETWORK("52:54:00:00:00:01", "lab") DOM_TAIL;
	char xml[2048];
	json_t *rec;

	(void)state;
	snprintf(xml, sizeof(xml), "%s%s", DOM_HEAD DOM_VM("{\"instance-id\":\"i-1\"}") DOM_DEVICES, ifs);
	bad(xml, false, "2 <interface>s are on served bridges (lines 7 and 8): give \"mac\"");
	snprintf(xml, sizeof(xml), "%s%s", DOM_HEAD DOM_VM("{\"instance-id\":\"i-1\",\"mac\":\"52:54:00:00:00:01\"}")
		 DOM_DEVICES, ifs);
	rec = good(xml, false);
	assert_string_equal(str(rec, "ipv4"), "10.9.0.11");
	json_decref(rec);
	snprintf(xml, sizeof(xml), "%s%s", DOM_HEAD DOM_VM("{\"instance-id\":\"i-1\",\"mac\":\"52:54:00:00:00:09\"}")
		 DOM_DEVICES, ifs);
	bad(xml, false, "\"mac\" 52:54:00:00:00:09 is not the <mac address> of any <interface>");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_complete_record_is_kept),
		cmocka_unit_test(test_mac_and_port_from_the_interface),
		cmocka_unit_test(test_bridge_matched_by_a_pattern),
		cmocka_unit_test(test_ipv4_from_the_network_dhcp_host),
		cmocka_unit_test(test_tap_only_needs_no_ipv4),
		cmocka_unit_test(test_cdata),
		cmocka_unit_test(test_no_element_is_not_ours),
		cmocka_unit_test(test_bad_json_says_where),
		cmocka_unit_test(test_two_interfaces_need_a_mac),
	};

	return cmocka_run_group_tests(tests, make_network, remove_network);
}

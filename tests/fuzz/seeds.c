/* seeds.c: the seed files of the fuzz corpora that are built rather than
 * written: compiled trees of the fuzz VMs (corpus/tree), tokens minted
 * with the fuzz key (corpus/token) and frames made with the packet tests'
 * builder (corpus/bpf).  `make fuzz-seeds` runs it from the repository
 * root: fuzz-seeds tests/fuzz/corpus.  The HTTP requests and VM records
 * (corpus/route, corpus/vmconf) are plain files, kept as they are. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bpf_frames.h"
#include "fuzz_vm_net.h"
#include "fuzz_vms.h"
#include "http/token.h"

static const char *seeds_dir;

static void seeds_write(const char *target, const char *name, const void *data, size_t len)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s/%s", seeds_dir, target, name);
	f = fopen(path, "wb");
	if (!f || fwrite(data, 1, len, f) != len || fclose(f)) {
		fprintf(stderr, "fuzz-seeds: %s: %s\n", path, strerror(errno));
		exit(1);
	}
}

static void seeds_trees(const struct fuzz_vm *vms, size_t n)
{
	char name[48];

	for (size_t i = 0; i < n; i++) {
		snprintf(name, sizeof(name), "tree-vm%zu", i + 1);
		seeds_write("tree", name, vms[i].img, vms[i].len);
	}
}

static void seeds_token(const char *name, const uint8_t *key, const char *iid, uint64_t expiry)
{
	char text[TOKEN_TEXT_LEN + 1];

	if (token_mint(key, iid, expiry, text)) {
		fprintf(stderr, "fuzz-seeds: cannot mint a token\n");
		exit(1);
	}
	seeds_write("token", name, text, TOKEN_TEXT_LEN);
}

static void seeds_tokens(const struct fuzz_vm *vms, size_t n)
{
	static const uint8_t other_key[IMDS_TOKEN_KEY_LEN] = { 1 };
	char name[48];

	for (size_t i = 0; i < n; i++) {
		snprintf(name, sizeof(name), "token-vm%zu-21600", i + 1);
		seeds_token(name, fuzz_key, vms[i].instance_id, FUZZ_NOW + 21600);
		snprintf(name, sizeof(name), "token-vm%zu-900", i + 1);
		seeds_token(name, fuzz_key, vms[i].instance_id, FUZZ_NOW + 900);
	}
	seeds_token("token-expired", fuzz_key, vms[0].instance_id, FUZZ_NOW - 1);
	seeds_token("token-other-key", other_key, vms[0].instance_id, FUZZ_NOW + 60);
}

/* A SYN from VM 1 to 169.254.169.254:80, as bpf_frames.h's tests start. */
static struct bpf_frame_spec seeds_syn(void)
{
	struct bpf_frame_spec s = {
		.src_mac = FUZZ_VM1_MAC, .dst_mac = FUZZ_BRIDGE_MAC,
		.saddr = FUZZ_VM1_IPV4, .daddr = FUZZ_METADATA_IPV4,
		.ttl = 64, .protocol = 6, .frag_off = 0x4000,
		.sport = FUZZ_VM1_SPORT, .dport = 80, .tcp_flags = BPF_TCP_SYN,
	};

	return s;
}

/* A reply from 169.254.169.254:80 to VM 1 carrying data, for egress. */
static struct bpf_frame_spec seeds_reply(void)
{
	struct bpf_frame_spec s = {
		.src_mac = FUZZ_BRIDGE_MAC, .dst_mac = FUZZ_VM1_MAC,
		.saddr = FUZZ_METADATA_IPV4, .daddr = FUZZ_VM1_IPV4,
		.ttl = 64, .protocol = 6, .frag_off = 0x4000,
		.sport = 80, .dport = FUZZ_VM1_SPORT, .tcp_flags = BPF_TCP_ACK | BPF_TCP_PSH, .payload = 56,
	};

	return s;
}

static void seeds_frame(const char *name, const struct bpf_frame_spec *s)
{
	struct bpf_frame f;

	bpf_frame_build(s, &f);
	seeds_write("bpf", name, f.b, f.len);
}

static void seeds_arp(const char *name, const uint8_t sha[6], uint32_t spa, uint32_t tpa, uint16_t op)
{
	struct bpf_frame_spec eth = seeds_syn();
	struct bpf_arp_spec a = { .op = op, .spa = spa, .tpa = tpa };
	struct bpf_frame f;

	memcpy(eth.src_mac, sha, 6);
	memset(eth.dst_mac, 0xff, 6);
	memcpy(a.sha, sha, 6);
	bpf_frame_build_arp(&eth, &a, &f);
	seeds_write("bpf", name, f.b, f.len);
}

static void seeds_tagged(void)
{
	struct bpf_frame_spec s = seeds_syn();

	s.vlan = 1; /* VID 0: priority tag */
	seeds_frame("syn-vlan0", &s);
	s.vlan_tci = 5;
	seeds_frame("syn-vlan5", &s);
	s.vlan = 2;
	s.vlan_outer = 0x88a8;
	seeds_frame("syn-qinq", &s);
}

static void seeds_frame6(const char *name, const struct bpf_frame_spec *eth, const struct bpf_frame6_spec *s)
{
	struct bpf_frame f;

	bpf_frame_build6(eth, s, &f);
	seeds_write("bpf", name, f.b, f.len);
}

/* IPv6 (docs/ipv6.md): a SYN to [fd00:ec2::254]:80 and what the guard
 * judges: a wrong source, a fragment header, ND claims, an RA, a reply. */
static void seeds_frames6(void)
{
	static const uint8_t vm2[6] = FUZZ_VM2_MAC, metadata[16] = IMDS_IPV6_ADDR_BYTES;
	struct bpf_frame_spec eth = seeds_syn(), reply = seeds_reply();
	struct bpf_frame6_spec s = { .saddr = FUZZ_VM1_IPV6, .daddr = IMDS_IPV6_ADDR_BYTES };
	struct bpf_frame6_spec nd = { .saddr = FUZZ_VM1_IPV6, .daddr = IMDS_IPV6_ADDR_BYTES, .icmp_type = 136,
				      .target = FUZZ_VM2_IPV6, .opt_type = 2, .opt_mac = FUZZ_VM1_MAC };

	seeds_frame6("syn6-metadata-80", &eth, &s);
	memcpy(s.saddr, (uint8_t[16])FUZZ_VM2_IPV6, 16);
	seeds_frame6("syn6-wrong-ipv6", &eth, &s);
	s = (struct bpf_frame6_spec){ .saddr = FUZZ_VM1_IPV6, .daddr = IMDS_IPV6_ADDR_BYTES, .nexthdr = 44 };
	seeds_frame6("syn6-fragment-header", &eth, &s);
	seeds_frame6("na-claims-vm2", &eth, &nd);
	memcpy(nd.target, metadata, 16);
	seeds_frame6("na-claims-metadata", &eth, &nd);
	nd.icmp_type = 135, nd.opt_type = 1;
	seeds_frame6("ns-for-metadata", &eth, &nd);
	nd = (struct bpf_frame6_spec){ .saddr = { 0xfe, 0x80, [15] = 1 }, .daddr = { 0xff, 0x02, [15] = 1 },
				       .icmp_type = 134, .opt_type = 1, .opt_mac = FUZZ_VM1_MAC };
	seeds_frame6("ra-from-vm1", &eth, &nd);
	s = (struct bpf_frame6_spec){ .saddr = IMDS_IPV6_ADDR_BYTES, .daddr = FUZZ_VM1_IPV6 };
	seeds_frame6("reply6-to-vm1", &reply, &s);
	memcpy(s.daddr, (uint8_t[16])FUZZ_VM2_IPV6, 16), memcpy(reply.dst_mac, vm2, 6);
	seeds_frame6("reply6-to-vm2", &reply, &s);
}

static void seeds_frames(void)
{
	static const uint8_t vm1[6] = FUZZ_VM1_MAC, vm2[6] = FUZZ_VM2_MAC;
	struct bpf_frame_spec s = seeds_syn();

	seeds_frame("syn-metadata-80", &s);
	s.tcp_flags = BPF_TCP_ACK | BPF_TCP_PSH, s.payload = 80;
	seeds_frame("get-data", &s);
	s = seeds_syn(), s.ihl = 7;
	seeds_frame("syn-ip-options", &s);
	s = seeds_syn(), s.frag_off = 0x2000;
	seeds_frame("syn-first-fragment", &s);
	s.frag_off = 0x2000 | 8;
	seeds_frame("fragment-not-first", &s);
	s = seeds_syn(), s.dport = 2222;
	seeds_frame("syn-port-2222", &s);
	s = seeds_syn(), s.protocol = 17;
	seeds_frame("udp-metadata", &s);
	s = seeds_syn(), s.saddr = FUZZ_VM2_IPV4;
	seeds_frame("syn-wrong-ipv4", &s);
	s = seeds_syn(), memcpy(s.src_mac, vm2, 6), s.saddr = FUZZ_VM2_IPV4;
	seeds_frame("syn-vm2-wrong-port", &s);
	s = seeds_syn(), s.saddr = FUZZ_METADATA_IPV4, s.daddr = FUZZ_VM2_IPV4;
	seeds_frame("forged-metadata-source", &s);
	seeds_tagged();
	s = seeds_reply();
	seeds_frame("reply-to-vm1", &s);
	s.daddr = FUZZ_VM2_IPV4, memcpy(s.dst_mac, vm2, 6);
	seeds_frame("reply-to-vm2", &s);
	seeds_arp("arp-who-has-metadata", vm1, FUZZ_VM1_IPV4, FUZZ_METADATA_IPV4, 1);
	seeds_arp("arp-claims-vm2", vm1, FUZZ_VM2_IPV4, FUZZ_VM1_IPV4, 2);
	seeds_arp("arp-claims-metadata", vm1, FUZZ_METADATA_IPV4, FUZZ_VM2_IPV4, 2);
	seeds_frames6();
}

int main(int argc, char **argv)
{
	struct fuzz_vm vms[FUZZ_VMS_MAX];
	size_t n;

	if (argc != 2) {
		fprintf(stderr, "usage: %s CORPUS-DIR\n", argv[0]);
		return 2;
	}
	seeds_dir = argv[1];
	n = fuzz_vms_load(vms);
	seeds_trees(vms, n);
	seeds_tokens(vms, n);
	seeds_frames();
	for (size_t i = 0; i < n; i++)
		free(vms[i].img);
	return 0;
}

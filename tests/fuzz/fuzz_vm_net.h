/* fuzz_vm_net.h: the VMs of the data-plane fuzz target and of its seed
 * frames (seeds.c), as test_bpf_packets.c has them: VM 1 pinned to the
 * loopback device (the port the test runs arrive on), VM 2 pinned to a port
 * the frames never arrive on. */
#ifndef IMDS_FUZZ_VM_NET_H
#define IMDS_FUZZ_VM_NET_H

#define FUZZ_LO_IFINDEX 1
#define FUZZ_OTHER_PORT 7
#define FUZZ_VM1_SLOT 1
#define FUZZ_VM2_SLOT 2
#define FUZZ_VM1_IPV4 0x0a00000bu /* 10.0.0.11 */
#define FUZZ_VM2_IPV4 0x0a00000du /* 10.0.0.13 */
#define FUZZ_VM1_SPORT 40000
#define FUZZ_METADATA_IPV4 0xa9fea9feu /* 169.254.169.254 */
/* 2001:db8:1::11 and ::13: each VM's IPv6 in ipv6_index */
#define FUZZ_VM1_IPV6 { 0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x11 }
#define FUZZ_VM2_IPV6 { 0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x13 }
#define FUZZ_VM1_MAC { 0x52, 0x54, 0x00, 0x00, 0x00, 0x01 }
#define FUZZ_VM2_MAC { 0x52, 0x54, 0x00, 0x00, 0x00, 0x02 }
#define FUZZ_BRIDGE_MAC { 0x02, 0x00, 0x0a, 0x00, 0x00, 0x01 }

#endif

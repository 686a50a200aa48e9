#!/usr/bin/env bash
# Installs every Debian package that the build, the demo and the tests need.
# Idempotent: does nothing (not even apt-get update) when all are present.
set -euo pipefail

packages=(
	make gcc clang llvm bpftool libbpf-dev libelf-dev zlib1g-dev
	liburing-dev libjansson-dev libssl-dev node-llhttp libcmocka-dev
	iproute2 nftables curl python3 python3-pytest python3-scapy tcpdump
	# real metadata clients (tests/system/test_clients_*.py)
	cloud-init python3-botocore cloud-guest-utils
	# make bench: the comparison server and the latency plot
	nginx-light gnuplot-nox iperf3
	# tests/e2e: QEMU guests on TAP devices
	qemu-system-x86 busybox-static cpio
	# the libvirt hook (user/libvirt) and its system test
	libxml2-dev pkg-config libvirt-daemon-system libvirt-clients
	# make fuzz and make test's fuzz smoke: libFuzzer for Debian's clang 14
	libclang-rt-14-dev
	# issue 14, metrics: the real Prometheus and promtool of tests/system/test_metrics.py
	prometheus
	# issue 14: man pages (make), make deb, lintian, systemd-analyze (docs/operations.md)
	help2man debhelper dpkg-dev lintian systemd man-db
	# issue 13, etcd sync: libcurl for its client (user/control/etcd.c); the etcd
	# server, etcdctl and openssl (test certificates) of tests/system/test_etcd_sync.py
	libcurl4-openssl-dev etcd-server etcd-client openssl
	# issue 15: strace counts imdsd's getpeername() calls (tests/system/test_peer_address.py)
	strace
)

missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done

if [ "${#missing[@]}" -gt 0 ]; then
	echo "install-deps: installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# BPF maps are pinned under /sys/fs/bpf; a fresh machine may not have it mounted.
if ! mountpoint -q /sys/fs/bpf; then
	mount -t bpf bpf /sys/fs/bpf
fi
# npm clients for the system tests, where the registry is reachable.
"$(dirname "${BASH_SOURCE[0]}")/install-npm-clients.sh"
echo "install-deps: all dependencies present"

#!/usr/bin/env bash
# demo.sh: three VMs on a lab bridge ask 169.254.169.254 who they are.
#
# Builds the lab of scripts/lab.sh (suffix "demo": everything lives in
# network namespaces, the machine's own network is untouched), loads
# examples/vms.json, pins each VM to its lab port (the example names the
# vnetN taps of a libvirt host; the lab's ports are the veths vm1..vm3),
# starts imdsd, and shows what each VM is served with IMDSv2, one IMDSv1
# fetch, and two spoofing attempts being refused.  The lab is
# torn down on exit, on error and on Ctrl-C.  Run by `make demo` after the
# build; needs root.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LAB=$ROOT/scripts/lab.sh
SFX=demo
NS_PREFIX=${IMDS_LAB_PREFIX:-imds} # as in lab.sh
VMS_JSON=$ROOT/examples/vms.json
URL=http://169.254.169.254
TTL_HEADER="X-aws-ec2-metadata-token-ttl-seconds: 21600"

if [ "$(id -u)" -ne 0 ]; then
	echo "demo: needs root (network namespaces, XDP, BPF maps)" >&2
	exit 1
fi
for f in "$ROOT/build/imdsd" "$ROOT/build/imds-loadmap" "$VMS_JSON"; do
	[ -e "$f" ] || { echo "demo: $f is missing (run 'make' first)" >&2; exit 1; }
done

cleanup() {
	"$LAB" down "$SFX" >/dev/null 2>&1 || true
}
trap cleanup EXIT
trap 'echo; echo "demo: interrupted"; exit 130' INT TERM

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
vm() { local i=$1; shift; "$LAB" vm "$SFX" "$i" "$@"; }
indent() { sed 's/^/      | /'; }

show_imdsd_log() {
	echo "--- imdsd log ---" >&2
	cat "$("$LAB" info "$SFX" | sed -n 's/^LAB_RUN_DIR=//p')/imdsd.log" >&2 || true
}

# What VM $1 gets with IMDSv2: a token first, then its data with the token.
show_vm() {
	local i=$1 token mac ip
	mac=$(printf '52:54:00:77:00:%02x' "$i")
	ip=10.77.0.$((10 + i))
	token=$(vm "$i" curl -sS --fail -X PUT -H "$TTL_HEADER" "$URL/latest/api/token")
	say "vm$i  (MAC $mac, IPv4 $ip) over IMDSv2"
	printf '  %-12s %s\n' "token" "${token:0:20}... (${#token} characters, TTL 21600 s)"
	printf '  %-12s %s\n' "instance-id" "$(vm "$i" curl -sS --fail -H "X-aws-ec2-metadata-token: $token" \
		"$URL/latest/meta-data/instance-id")"
	printf '  %-12s %s\n' "hostname" "$(vm "$i" curl -sS --fail -H "X-aws-ec2-metadata-token: $token" \
		"$URL/latest/meta-data/hostname")"
	printf '  %-12s %s\n' "public key" "$(vm "$i" curl -sS --fail -H "X-aws-ec2-metadata-token: $token" \
		"$URL/latest/meta-data/public-keys/0/openssh-key")"
	printf '  %s\n' "user-data"
	vm "$i" curl -sS --fail -H "X-aws-ec2-metadata-token: $token" "$URL/latest/user-data" | indent
}

show_imdsv1() {
	local code
	say "IMDSv1 (no token)"
	printf '  vm1 GET instance-id  -> %s\n' "$(vm 1 curl -sS --fail "$URL/latest/meta-data/instance-id")"
	code=$(vm 3 curl -sS -o /dev/null -w '%{http_code}' "$URL/latest/meta-data/instance-id")
	printf '  vm3 GET instance-id  -> HTTP %s (vm3 has http-tokens "required")\n' "$code"
}

# The instance-ids of examples/vms.json, in order: VM I is on the lab's port vmI.
pin_vms() {
	local i=0 id
	sed -n 's/^ *"instance-id": "\(i-[0-9a-f]*\)",$/\1/p' "$VMS_JSON" | while read -r id; do
		i=$((i + 1))
		"$LAB" loadmap "$SFX" bind "$id" "vm$i" | sed 's/^/  /'
	done
}

set_vm1_ipv4() {
	local ns=$NS_PREFIX-vm1-$SFX
	ip -n "$ns" addr flush dev eth0
	ip -n "$ns" addr add "$1/24" dev eth0
	# Removing a device's last IPv4 address flushed its routes too.
	ip -n "$ns" route replace 169.254.169.254 dev eth0
}

set_vm1_mac() {
	local ns=$NS_PREFIX-vm1-$SFX
	ip -n "$ns" link set eth0 down
	ip -n "$ns" link set eth0 address "$1"
	ip -n "$ns" link set eth0 up
}

# vm1 takes vm2's IPv4 on its own port and asks again: the data plane sees
# vm1's MAC with an address that is not vm1's, drops the SYN and counts it.
show_spoof() {
	local rc=0 out
	say "spoof: vm1 takes vm2's IPv4 (10.77.0.12) and asks for vm2's instance-id"
	set_vm1_ipv4 10.77.0.12
	out=$(vm 1 curl -sS --max-time 2 "$URL/latest/meta-data/instance-id" 2>&1) || rc=$?
	set_vm1_ipv4 10.77.0.11
	# The host learned 10.77.0.12 at vm1's MAC from vm1's ARP: forget it.
	ip -n "$NS_PREFIX-host-$SFX" neigh flush all
	if [ "$rc" -eq 0 ]; then
		echo "  NOT REFUSED: vm1 got '$out'" >&2
		return 1
	fi
	echo "  refused: curl exit $rc ($out)"
	echo "  drop counters (imds-loadmap stats):"
	"$LAB" loadmap "$SFX" stats | { grep -E 'drop_' || echo "(none)"; } | sed 's/^/    /'
}

# vm1 takes vm2's MAC and IPv4, as a neighbour can from ARP: the data plane
# finds vm2, which is pinned to port vm2, asked on port vm1, and drops it.
# Without the pin, whoever asked first would have been served as vm2.  Its
# ARP under vm2's identity is dropped too (drop_arp_spoof), so vm1 is given
# the metadata address's MAC by hand, for its SYNs to reach the port check.
show_spoof_mac() {
	local rc=0 out ns=$NS_PREFIX-vm1-$SFX
	local bridge_mac
	bridge_mac=$("$LAB" info "$SFX" | sed -n 's/^LAB_BRIDGE_MAC=//p')
	say "spoof: vm1 takes vm2's MAC and IPv4 and asks for vm2's instance-id"
	set_vm1_mac 52:54:00:77:00:02
	set_vm1_ipv4 10.77.0.12
	ip -n "$ns" neigh replace 169.254.169.254 lladdr "$bridge_mac" dev eth0 nud permanent
	out=$(vm 1 curl -sS --max-time 2 "$URL/latest/meta-data/instance-id" 2>&1) || rc=$?
	ip -n "$ns" neigh del 169.254.169.254 dev eth0 2>/dev/null || true
	set_vm1_mac 52:54:00:77:00:01
	set_vm1_ipv4 10.77.0.11
	# The host and the bridge learned vm2's addresses on port vm1: forget.
	ip -n "$NS_PREFIX-host-$SFX" neigh flush all
	bridge -n "$NS_PREFIX-host-$SFX" fdb del 52:54:00:77:00:02 dev vm1 master 2>/dev/null || true
	if [ "$rc" -eq 0 ]; then
		echo "  NOT REFUSED: vm1 got '$out'" >&2
		return 1
	fi
	echo "  refused: curl exit $rc ($out)"
	echo "  drop counters (imds-loadmap stats):"
	"$LAB" loadmap "$SFX" stats | { grep -E 'drop_wrong_port|drop_arp_spoof' || echo "(none)"; } | sed 's/^/    /'
	printf '  vm2 itself, on its port: instance-id -> %s\n' \
		"$(vm 2 curl -sS --fail --max-time 5 "$URL/latest/meta-data/instance-id")"
}

"$LAB" down "$SFX" >/dev/null 2>&1 || true # leftovers of an interrupted run
say "lab: host namespace $NS_PREFIX-host-$SFX with bridge br-imds, VMs 1..3 on veth ports"
"$LAB" up "$SFX" 3
say "imds-loadmap load $(basename "$VMS_JSON")"
"$LAB" loadmap "$SFX" load "$VMS_JSON"
"$LAB" loadmap "$SFX" list | sed 's/^/  /'
say "imds-loadmap bind: each VM is served only on its port (this lab's veth vmI, not the example's vnetN)"
pin_vms
"$LAB" loadmap "$SFX" list | sed 's/^/  /'
say "imdsd --bridge br-imds"
"$LAB" start-imdsd "$SFX" || exit 1
echo "  ready"
trap 'rc=$?; [ $rc -ne 0 ] && show_imdsd_log; cleanup' EXIT

for i in 1 2 3; do
	show_vm "$i"
done
show_imdsv1
show_spoof
show_spoof_mac

say "stopping imdsd (SIGTERM)"
"$LAB" stop-imdsd "$SFX" | sed 's/^/  /'
say "demo: OK"

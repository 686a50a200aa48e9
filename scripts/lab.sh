#!/usr/bin/env bash
# lab.sh: the test lab shared by scripts/demo.sh and tests/system/.
#
# One lab = one "host" network namespace holding the bridge the daemons
# attach to, plus one namespace per VM joined to the bridge by a veth pair.
# The machine's own network is never touched (a cloud host keeps its own
# 169.254.169.254), and every name carries the lab's suffix SFX so two labs
# never collide:
#
#   netns imds-host-SFX   bridge br-imds 10.77.0.1/24 (MAC 02:00:0a:4d:00:01),
#                         host ends vm1..vmN: VM I's bridge port is vmI, the
#                         name its record pins it to ("port": "vmI";
#                         scripts/gen-vms.py, tests/system/vmdata.py)
#   netns imds-vmI-SFX    eth0 52:54:00:77:HH:LL (I = 0xHHLL),
#                         10.77.B.(10+K)  with B = (I-1) / 244, K = (I-1) % 244 + 1,
#                         route 169.254.169.254 dev eth0
#   pin dir               /sys/fs/bpf/imds-t-SFX
#
# More bridges (`add-bridge SFX BR`, tests of several bridges) live in the
# same host namespace; a VM added on one (`add-vm SFX I BR`) keeps its
# 10.77 address, and the host reaches it by a /32 route on BR.
#
# Address plan.  VMs 1..244 fill 10.77.0.11-254/24, as they always have.
# A bigger lab (up to LAB_MAX_VM = 4000 VMs; the store holds 4095)
# continues in blocks of 244 addresses: VM 245 is 10.77.1.11, VM 1000 is
# 10.77.4.34.  Those VMs take a /16 prefix, and the host namespace gets a
# route for 10.77.0.0/16 on the bridge when the first of them is added.
#
# `up SFX N` builds the lab with two `ip -batch` runs plus one short
# nsenter + `ip -batch` per VM (its addresses and sysctls), so a lab of 1,000 VMs takes
# seconds, not minutes.  `up SFX N --static-neigh` also writes permanent
# neighbour entries both ways (VM -> 169.254.169.254, host -> VM): the
# kernel's neighbour table is shared by every namespace (gc_thresh3 is 1024
# by default), and a storm of 1,000 VMs resolving at once would overflow it;
# permanent entries are exempt from that limit.
#
# The daemons run in the host namespace through nsenter --net, never
# `ip netns exec`: the latter remounts /sys, which hides the pins under
# /sys/fs/bpf from them.
set -euo pipefail

LAB_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LAB_BUILD=${IMDS_BUILD:-$LAB_ROOT/build}
LAB_BRIDGE=br-imds
LAB_BRIDGE_MAC=02:00:0a:4d:00:01

usage() {
	cat >&2 <<'EOF'
usage: lab.sh COMMAND SFX [ARGS]
  up SFX N [--static-neigh]  create the host namespace, the bridge and VMs 1..N
  add-vm SFX I [BR]     add VM I (1..4000) to a lab that is up, on bridge BR (default br-imds)
  del-vm SFX I          remove VM I (its port leaves the bridge)
  add-bridge SFX BR     add another bridge BR to the host namespace (several bridges, issue 17)
  del-bridge SFX BR     delete bridge BR (its ports leave it)
  down SFX              stop what the lab runs, delete namespaces and pins (idempotent)
  host SFX CMD...       run CMD in the host namespace (nsenter --net)
  vm SFX I CMD...       run CMD in VM I's namespace (ip netns exec)
  start-imdsd SFX [ARG...]  start build/imdsd on the lab bridge, wait for "imdsd: ready"
  stop-imdsd SFX        SIGTERM imdsd and wait for it; prints its exit status
  loadmap SFX ARG...    run build/imds-loadmap with the lab's pin dir
  info SFX              print the lab's names as shell assignments
EOF
	exit 2
}

# IMDS_LAB_PREFIX replaces "imds" in every name (for experiments beside a
# running test suite); the tests and the demo use the default.
LAB_PREFIX=${IMDS_LAB_PREFIX:-imds}

lab_host_ns() { echo "$LAB_PREFIX-host-$1"; }
lab_vm_ns() { echo "$LAB_PREFIX-vm$2-$1"; }
lab_pin_dir() { echo "/sys/fs/bpf/$LAB_PREFIX-t-$1"; }
lab_run_dir() { echo "${TMPDIR:-/tmp}/$LAB_PREFIX-lab-$1"; }
lab_vm_mac() { printf '52:54:00:77:%02x:%02x' $(($1 >> 8)) $(($1 & 255)); }
lab_vm_ip() { echo "10.77.$((($1 - 1) / 244)).$((10 + ($1 - 1) % 244 + 1))"; }
# VMs of the first block keep the /24 they always had; later blocks share a /16.
lab_vm_prefixlen() { if [ "$1" -le 244 ]; then echo 24; else echo 16; fi; }
LAB_MAX_VM=4000

lab_check_suffix() {
	[[ "$1" =~ ^[A-Za-z0-9_.-]+$ ]] || { echo "lab.sh: bad suffix '$1'" >&2; exit 2; }
}

lab_check_vm_index() {
	if ! [[ "$1" =~ ^[0-9]+$ ]] || [ "$1" -lt 1 ] || [ "$1" -gt "$LAB_MAX_VM" ]; then
		echo "lab.sh: bad VM index '$1' (1..$LAB_MAX_VM)" >&2
		exit 2
	fi
}

lab_ns_exists() { # NAME
	ip netns list | awk '{print $1}' | grep -qxF -- "$1"
}

lab_host() { # SFX CMD...
	local ns
	ns=$(lab_host_ns "$1")
	shift
	nsenter --net="/run/netns/$ns" "$@"
}

lab_up() { # SFX N [--static-neigh]
	local sfx=$1 n=$2 neigh=${3:-} host
	[[ "$n" =~ ^[0-9]+$ ]] && [ "$n" -le "$LAB_MAX_VM" ] || usage
	[ -z "$neigh" ] || [ "$neigh" = --static-neigh ] || usage
	host=$(lab_host_ns "$sfx")
	if lab_ns_exists "$host"; then
		echo "lab.sh: $host exists; run 'lab.sh down $sfx' first" >&2
		exit 1
	fi
	mkdir -p "$(lab_run_dir "$sfx")"
	ip netns add "$host"
	ip -n "$host" link set lo up
	# A fixed MAC: a bridge without one takes the lowest MAC of its ports and
	# changes it when ports come and go, which strands every VM's ARP entry
	# for 169.254.169.254 (libvirt pins virbr0's MAC the same way).
	ip -n "$host" link add "$LAB_BRIDGE" address "$LAB_BRIDGE_MAC" type bridge
	ip -n "$host" addr add 10.77.0.1/24 dev "$LAB_BRIDGE"
	ip -n "$host" link set "$LAB_BRIDGE" up
	[ "$n" -le 244 ] || ip -n "$host" route replace 10.77.0.0/16 dev "$LAB_BRIDGE"
	[ "$n" -eq 0 ] || lab_add_vms "$sfx" "$n" "$neigh"
}

# VMs 1..N at once: the same result as add-vm for each, in batches.
lab_add_vms() { # SFX N NEIGH
	local sfx=$1 n=$2 neigh=$3 host batch i vm
	host=$(lab_host_ns "$sfx")
	batch=$(lab_run_dir "$sfx")/up.batch
	for ((i = 1; i <= n; i++)); do
		echo "netns add $(lab_vm_ns "$sfx" "$i")"
	done >"$batch"
	ip -batch "$batch"
	# Both ends are born in their namespaces: no name ever exists in the
	# machine's own namespace.
	for ((i = 1; i <= n; i++)); do
		vm=$(lab_vm_ns "$sfx" "$i")
		echo "link add vm$i type veth peer name eth0 address $(lab_vm_mac "$i") netns $vm"
		echo "link set vm$i master $LAB_BRIDGE"
		echo "link set vm$i up"
		[ -z "$neigh" ] || echo "neigh replace $(lab_vm_ip "$i") lladdr $(lab_vm_mac "$i") dev $LAB_BRIDGE nud permanent"
	done >"$batch"
	ip -n "$host" -batch "$batch"
	for ((i = 1; i <= n; i++)); do
		lab_vm_batch "$i" "$neigh" >"$batch"
		nsenter --net="/run/netns/$(lab_vm_ns "$sfx" "$i")" sh -c \
			'echo 1 >/proc/sys/net/ipv6/conf/all/disable_ipv6; echo 1 >/proc/sys/net/ipv6/conf/default/disable_ipv6; exec ip -batch "$1"' \
			sh "$batch"
	done
	rm -f "$batch"
}

# The commands that configure VM I inside its namespace.
lab_vm_batch() { # I NEIGH
	echo "link set lo up"
	echo "addr add $(lab_vm_ip "$1")/$(lab_vm_prefixlen "$1") dev eth0"
	echo "link set eth0 up"
	echo "route add 169.254.169.254 dev eth0"
	[ -z "$2" ] || echo "neigh replace 169.254.169.254 lladdr $LAB_BRIDGE_MAC dev eth0 nud permanent"
}

# Another bridge in the host namespace, up, without an address of its own:
# its VMs keep their 10.77 addresses, and the host reaches each through a
# /32 route on their bridge (add-vm), as a routed libvirt network would.
# A fixed MAC derived from the name, for the reason lab_up gives.
lab_add_bridge() { # SFX BR
	local host sum
	host=$(lab_host_ns "$1")
	sum=$(printf '%s' "$2" | cksum | cut -d' ' -f1)
	ip -n "$host" link add "$2" address "$(printf '02:00:0a:4e:%02x:%02x' $((sum >> 8 & 255)) $((sum & 255)))" type bridge
	ip -n "$host" link set "$2" up
}

lab_add_vm() { # SFX I [BR]
	local sfx=$1 i=$2 br=${3:-$LAB_BRIDGE} host vm
	lab_check_vm_index "$i"
	host=$(lab_host_ns "$sfx")
	vm=$(lab_vm_ns "$sfx" "$i")
	ip netns add "$vm"
	ip -n "$vm" link set lo up
	# Created in the host namespace with its peer born inside the VM's, so
	# neither name ever exists in the machine's own namespace.
	ip -n "$host" link add "vm$i" type veth peer name eth0 netns "$vm"
	ip -n "$vm" link set eth0 address "$(lab_vm_mac "$i")"
	ip -n "$vm" addr add "$(lab_vm_ip "$i")/$(lab_vm_prefixlen "$i")" dev eth0
	ip -n "$vm" link set eth0 up
	ip -n "$vm" route add 169.254.169.254 dev eth0
	# No IPv6 chatter (router solicitations, DAD) in captures of the tests.
	ip netns exec "$vm" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1 || true
	ip -n "$host" link set "vm$i" master "$br"
	ip -n "$host" link set "vm$i" up
	if [ "$br" != "$LAB_BRIDGE" ]; then
		ip -n "$host" route replace "$(lab_vm_ip "$i")/32" dev "$br"
	elif [ "$i" -gt 244 ]; then
		ip -n "$host" route replace 10.77.0.0/16 dev "$LAB_BRIDGE"
	fi
}

lab_del_vm() { # SFX I
	local sfx=$1 i=$2
	lab_check_vm_index "$i"
	ip -n "$(lab_host_ns "$sfx")" link del "vm$i" 2>/dev/null || true
	lab_kill_ns "$(lab_vm_ns "$sfx" "$i")"
	ip netns del "$(lab_vm_ns "$sfx" "$i")" 2>/dev/null || true
}

# Ends every process left in namespace $1 (only processes of this lab can be
# there: the namespace was made for it), TERM first, then KILL.
lab_kill_ns() {
	local ns=$1 try
	local -a pids
	lab_ns_exists "$ns" || return 0
	for try in 1 2 3 4 5 6 7 8 9 10; do
		mapfile -t pids < <(ip netns pids "$ns" 2>/dev/null || true)
		[ "${#pids[@]}" -eq 0 ] && return 0
		if [ "$try" -lt 10 ]; then
			kill -TERM "${pids[@]}" 2>/dev/null || true
		else
			kill -KILL "${pids[@]}" 2>/dev/null || true
		fi
		sleep 0.2
	done
}

lab_down() { # SFX
	local sfx=$1 ns batch
	local -a names
	lab_stop_imdsd "$sfx" >/dev/null 2>&1 || true
	mapfile -t names < <(ip netns list | awk '{print $1}' | grep -E "^$LAB_PREFIX-(host|vm[0-9]+)-$sfx\$" || true)
	if [ "${#names[@]}" -gt 0 ]; then
		lab_kill_in_namespaces "${names[@]}"
		batch=$(mktemp)
		for ns in "${names[@]}"; do
			echo "netns del $ns"
		done >"$batch"
		ip -force -batch "$batch" 2>/dev/null || true
		rm -f "$batch"
	fi
	rm -rf "$(lab_pin_dir "$sfx")"
	rm -rf "$(lab_run_dir "$sfx")"
}

# Ends every process left in the namespaces named (only processes of this
# lab can be there), TERM first, then KILL; one scan of /proc per round
# rather than `ip netns pids` per namespace, which matters with 1,000 VMs.
lab_kill_in_namespaces() { # NAME...
	local try ino path
	local -A lab_inodes=()
	local -a pids
	while read -r ino; do
		lab_inodes[$ino]=1
	done < <(cd /run/netns && stat -L -c %i -- "$@" 2>/dev/null || true)
	for try in 1 2 3 4 5 6 7 8 9 10; do
		pids=()
		while read -r ino path; do
			[ -n "${lab_inodes[$ino]:-}" ] || continue
			path=${path#/proc/}
			pids+=("${path%%/*}")
		done < <(stat -L -c '%i %n' /proc/[0-9]*/ns/net 2>/dev/null || true)
		[ "${#pids[@]}" -eq 0 ] && return 0
		if [ "$try" -lt 10 ]; then
			kill -TERM "${pids[@]}" 2>/dev/null || true
		else
			kill -KILL "${pids[@]}" 2>/dev/null || true
		fi
		sleep 0.2
	done
}

lab_start_imdsd() { # SFX [ARG...]
	local sfx=$1 run pid i
	shift
	run=$(lab_run_dir "$sfx")
	mkdir -p "$run"
	if [ -f "$run/imdsd.pid" ] && kill -0 "$(cat "$run/imdsd.pid")" 2>/dev/null; then
		echo "lab.sh: imdsd of lab $sfx already runs" >&2
		return 1
	fi
	rm -f "$run/imdsd.pid" "$run/imdsd.rc"
	: >"$run/imdsd.log"
	# A watcher subshell records imdsd's exit status, so stop-imdsd (another
	# process, which cannot wait for it) can report it.  nsenter (started
	# directly, not through a shell function, which would fork a subshell)
	# execs the program, so $! is imdsd itself.
	(
		nsenter --net="/run/netns/$(lab_host_ns "$sfx")" \
			"$LAB_BUILD/imdsd" --bridge "$LAB_BRIDGE" --pin-dir "$(lab_pin_dir "$sfx")" "$@" \
			>>"$run/imdsd.log" 2>&1 &
		echo $! >"$run/imdsd.pid.tmp"
		mv "$run/imdsd.pid.tmp" "$run/imdsd.pid"
		# set -e is inherited: a bare `wait` returning imdsd's failure
		# would end the subshell before it records the status.
		rc=0
		wait $! || rc=$?
		echo "$rc" >"$run/imdsd.rc.tmp"
		mv "$run/imdsd.rc.tmp" "$run/imdsd.rc"
	) </dev/null >/dev/null 2>&1 &
	for ((i = 0; i < 200; i++)); do
		grep -q 'imdsd: ready' "$run/imdsd.log" && return 0
		if [ -f "$run/imdsd.rc" ]; then
			echo "lab.sh: imdsd exited ($(cat "$run/imdsd.rc")) before ready; its log:" >&2
			cat "$run/imdsd.log" >&2
			return 1
		fi
		sleep 0.1
	done
	echo "lab.sh: imdsd not ready after 20 s; its log:" >&2
	cat "$run/imdsd.log" >&2
	return 1
}

lab_stop_imdsd() { # SFX
	local run pid i
	run=$(lab_run_dir "$1")
	[ -f "$run/imdsd.pid" ] || return 0
	pid=$(cat "$run/imdsd.pid")
	rm -f "$run/imdsd.pid"
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < 50; i++)); do
		[ -f "$run/imdsd.rc" ] && break
		sleep 0.1
	done
	if [ ! -f "$run/imdsd.rc" ]; then
		echo "lab.sh: imdsd ($pid) ignored SIGTERM for 5 s; killing it" >&2
		kill -KILL "$pid" 2>/dev/null || true
		for ((i = 0; i < 20; i++)); do
			[ -f "$run/imdsd.rc" ] && break
			sleep 0.1
		done
	fi
	echo "imdsd exit status $(cat "$run/imdsd.rc" 2>/dev/null || echo unknown)"
	[ "$(cat "$run/imdsd.rc" 2>/dev/null)" = 0 ]
}

lab_info() { # SFX
	echo "LAB_PREFIX=$LAB_PREFIX"
	echo "LAB_HOST_NS=$(lab_host_ns "$1")"
	echo "LAB_BRIDGE=$LAB_BRIDGE"
	echo "LAB_BRIDGE_MAC=$LAB_BRIDGE_MAC"
	echo "LAB_PIN_DIR=$(lab_pin_dir "$1")"
	echo "LAB_RUN_DIR=$(lab_run_dir "$1")"
}

[ $# -ge 2 ] || usage
cmd=$1 sfx=$2
shift 2
lab_check_suffix "$sfx"
case "$cmd" in
up) [ $# -eq 1 ] || [ $# -eq 2 ] || usage; lab_up "$sfx" "$@" ;;
add-vm) [ $# -eq 1 ] || [ $# -eq 2 ] || usage; lab_add_vm "$sfx" "$@" ;;
add-bridge) [ $# -eq 1 ] || usage; lab_add_bridge "$sfx" "$1" ;;
del-bridge) [ $# -eq 1 ] || usage; ip -n "$(lab_host_ns "$sfx")" link del "$1" ;;
del-vm) [ $# -eq 1 ] || usage; lab_del_vm "$sfx" "$1" ;;
down) [ $# -eq 0 ] || usage; lab_down "$sfx" ;;
host) [ $# -ge 1 ] || usage; lab_host "$sfx" "$@" ;;
vm) [ $# -ge 2 ] || usage; lab_check_vm_index "$1"; vm=$(lab_vm_ns "$sfx" "$1"); shift; exec ip netns exec "$vm" "$@" ;;
start-imdsd) lab_start_imdsd "$sfx" "$@" ;;
stop-imdsd) [ $# -eq 0 ] || usage; lab_stop_imdsd "$sfx" ;;
loadmap) [ $# -ge 1 ] || usage; lab_host "$sfx" "$LAB_BUILD/imds-loadmap" --pin-dir "$(lab_pin_dir "$sfx")" "$@" ;;
info) lab_info "$sfx" ;;
*) usage ;;
esac

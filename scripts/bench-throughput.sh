#!/usr/bin/env bash
# bench-throughput.sh: what the data plane costs other traffic.
#
# Two VM namespaces on a lab bridge (scripts/lab.sh) run bulk TCP with
# iperf3, VM 1 -> VM 2 across the bridge, alternately with imdsd attached
# (its ingress check, XDP or TC, and TC egress on both ports) and without
# it (imdsd stopped and the clsact qdiscs removed: nothing on the ports).  Both VMs are loaded, so the data
# plane sees real VMs; the bulk flow is not metadata traffic, so it takes
# the "other traffic" path.  Prints every run, the ratio of the medians and
# the median of the per-repetition ratios.
#
# usage: scripts/bench-throughput.sh [REPS [SECONDS]]   (default 5 reps of 5 s)
# Environment: IMDS_LAB_PREFIX (default "imdsbench") names the namespaces;
# IMDSD_ARGS adds imdsd options ("--ingress xdp", "--ingress xdp --xdp-mode native");
# IMDS_BENCH_FAMILY=6 runs the flow over IPv6 (2001:db8:77::11 -> ::12, both
# addresses in the VMs' records: the IPv6 path of the data plane, docs/ipv6.md).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LAB=$ROOT/scripts/lab.sh
REPS=${1:-5}
SECS=${2:-5}
export IMDS_LAB_PREFIX=${IMDS_LAB_PREFIX:-imdsbench}
SFX=tp$$
FAMILY=${IMDS_BENCH_FAMILY:-4}
[[ "$FAMILY" = 4 || "$FAMILY" = 6 ]] || { echo "bench-throughput: IMDS_BENCH_FAMILY is 4 or 6" >&2; exit 2; }

[ "$(id -u)" -eq 0 ] || { echo "bench-throughput: needs root" >&2; exit 1; }
for f in "$ROOT/build/imdsd" "$ROOT/build/imds-loadmap"; do
	[ -x "$f" ] || { echo "bench-throughput: $f is missing (run 'make')" >&2; exit 1; }
done
command -v iperf3 >/dev/null || { echo "bench-throughput: iperf3 is not installed" >&2; exit 1; }
[[ "$REPS" =~ ^[1-9][0-9]*$ && "$SECS" =~ ^[1-9][0-9]*$ ]] ||
	{ echo "usage: $0 [REPS [SECONDS]]" >&2; exit 2; }

WORK=$(mktemp -d)
cleanup() {
	"$LAB" down "$SFX" >/dev/null 2>&1 || true
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

vm_ip() { # I
	if [ "$FAMILY" = 6 ]; then echo "2001:db8:77::$((10 + $1))"; else echo "10.77.0.$((10 + $1))"; fi
}

vm_record() { # I
	local v6=""
	[ "$FAMILY" = 4 ] || v6=$(printf ',"ipv6":["%s"]' "$(vm_ip "$1")")
	printf '{"instance-id":"i-bench%012d","mac":"52:54:00:77:00:%02x","ipv4":"10.77.0.%d","port":"vm%d"%s,"meta-data":{}}' \
		"$1" "$1" "$((10 + $1))" "$1" "$v6"
}

"$LAB" up "$SFX" 2
if [ "$FAMILY" = 6 ]; then # the lab switches IPv6 off in its VMs
	for i in 1 2; do
		"$LAB" vm "$SFX" "$i" sysctl -qw net.ipv6.conf.all.disable_ipv6=0 net.ipv6.conf.eth0.disable_ipv6=0
		"$LAB" vm "$SFX" "$i" ip -6 addr add "$(vm_ip "$i")/64" dev eth0 nodad
	done
fi
printf '{"vms":[%s,%s]}\n' "$(vm_record 1)" "$(vm_record 2)" >"$WORK/vms.json"
"$LAB" loadmap "$SFX" load "$WORK/vms.json" >/dev/null

# One iperf3 run from VM 1 to VM 2; prints Gbit/s received.
run_once() {
	local out
	"$LAB" vm "$SFX" 2 iperf3 -s -D -1 >/dev/null 2>&1
	sleep 0.3
	out=$("$LAB" vm "$SFX" 1 iperf3 -c "$(vm_ip 2)" -t "$SECS" -O 1 -J)
	printf '%s' "$out" | /usr/bin/python3 -c \
		'import json,sys; print("%.3f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"] / 1e9))'
}

attached() {
	"$LAB" host "$SFX" ip -d link show vm1 | grep -q 'prog/xdp' ||
		"$LAB" host "$SFX" tc filter show dev vm1 ingress | grep -q imds_tc_ingress
}

hook() {
	"$LAB" host "$SFX" ip -d link show vm1 | grep -o 'xdp[a-z]* ' | head -1 | sed 's/^xdp /xdp (native) /'
	"$LAB" host "$SFX" tc filter show dev vm1 ingress | grep -o 'imds_tc_ingress' | head -1
}

with=() without=()
for ((r = 1; r <= REPS; r++)); do
	# Alternate which comes first, so a drift in machine load hits both.
	for mode in $( ((r % 2)) && echo "off on" || echo "on off"); do
		if [ "$mode" = on ]; then
			# shellcheck disable=SC2086 # IMDSD_ARGS is a list of words
			"$LAB" start-imdsd "$SFX" ${IMDSD_ARGS:-} >/dev/null
			attached || { echo "bench-throughput: the data plane is not attached to vm1" >&2; exit 1; }
			[ "$r" -gt 1 ] || echo "IPv$FAMILY; ingress check on the ports: $(hook | tr '\n' ' ')"
			g=$(run_once)
			"$LAB" stop-imdsd "$SFX" >/dev/null
			# imdsd leaves the clsact qdisc (other filters may use it);
			# the lab's are only ours, and "without" means nothing.
			for p in vm1 vm2; do
				"$LAB" host "$SFX" tc qdisc del dev "$p" clsact 2>/dev/null || true
			done
			with+=("$g")
		else
			! attached || { echo "bench-throughput: the data plane is still attached to vm1" >&2; exit 1; }
			g=$(run_once)
			without+=("$g")
		fi
		printf 'rep %d  %-8s %s Gbit/s\n' "$r" "$([ "$mode" = on ] && echo with || echo without)" "$g"
	done
done

/usr/bin/python3 - "${with[*]}" "${without[*]}" <<'EOF'
import statistics, sys
w = [float(x) for x in sys.argv[1].split()]
o = [float(x) for x in sys.argv[2].split()]
mw, mo = statistics.median(w), statistics.median(o)
print(f"with data plane:    median {mw:.3f} Gbit/s  (min {min(w):.3f}, max {max(w):.3f})")
print(f"without data plane: median {mo:.3f} Gbit/s  (min {min(o):.3f}, max {max(o):.3f})")
print(f"ratio with/without: {mw / mo * 100:.1f} %  (ratio of the medians)")
# Each repetition's pair ran back to back, so its ratio cancels the slow
# drift of a shared machine's load; the spread shows what is left.
pairs = sorted(a / b * 100 for a, b in zip(w, o))
print(f"paired ratios:      median {statistics.median(pairs):.1f} %  "
      f"(each repetition: {' '.join(f'{p:.0f}' for p in pairs)})")
EOF

#!/usr/bin/env bash
# bench-ports.sh: how fast imdsd follows the bridge (docs/ports.md).
#
# In a lab (scripts/lab.sh) with imdsd running, measures
#   - N veth ports added with one `ip -batch`: time until imdsd has
#     attached the last one;
#   - a single port joining with N on the bridge: time from `ip link set
#     master` returning to imdsd's "attached" line (REPS samples);
#   - imdsd restart with N ports: time to "ready" (all attached before);
#   - all ports removed at once (their peer namespace deleted): time until
#     imdsd has forgotten the last one.
# imdsd's log is the clock's other end: it writes each line right after the
# attach or detach returned, so the figures include no polling of the
# kernel's state (the poll itself runs every 2 ms).
#
# usage: scripts/bench-ports.sh [N [REPS]]   (default 1000 ports, 20 samples)
# Environment: IMDS_LAB_PREFIX (default "imdsports") names the namespaces;
# IMDSD_ARGS adds imdsd options ("--ingress xdp", "--ingress xdp --xdp-mode native").
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LAB=$ROOT/scripts/lab.sh
N=${1:-1000}
REPS=${2:-20}
export IMDS_LAB_PREFIX=${IMDS_LAB_PREFIX:-imdsports}
SFX=bp$$

[ "$(id -u)" -eq 0 ] || { echo "bench-ports: needs root" >&2; exit 1; }
[ -x "$ROOT/build/imdsd" ] || { echo "bench-ports: build/imdsd is missing (run 'make')" >&2; exit 1; }
[[ "$N" =~ ^[1-9][0-9]*$ && "$REPS" =~ ^[1-9][0-9]*$ ]] || { echo "usage: $0 [N [REPS]]" >&2; exit 2; }

HOST=$IMDS_LAB_PREFIX-host-$SFX
PEERS=$IMDS_LAB_PREFIX-peers-$SFX
WORK=$(mktemp -d)
cleanup() {
	ip netns del "$PEERS" 2>/dev/null || true
	"$LAB" down "$SFX" >/dev/null 2>&1 || true
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$LAB" up "$SFX" 0
ip netns add "$PEERS"
LOG=$("$LAB" info "$SFX" | sed -n 's/^LAB_RUN_DIR=//p')/imdsd.log
# shellcheck disable=SC2086 # IMDSD_ARGS is a list of words
"$LAB" start-imdsd "$SFX" ${IMDSD_ARGS:-} >/dev/null

now() { date +%s.%N; }
count() { grep -c -- "$1" "$LOG" || true; }
# Waits until the log holds at least $2 lines matching $1; prints the time.
wait_log() {
	while [ "$(count "$1")" -lt "$2" ]; do sleep 0.002; done
	now
}
ms() { /usr/bin/python3 -c "print(f'{($2 - $1) * 1000:.0f}')" ; }

for ((i = 0; i < N; i++)); do echo "link add bp$i type veth peer name qbp$i netns $PEERS"; done >"$WORK/add"
for ((i = 0; i < N; i++)); do echo "link set bp$i master br-imds up"; done >>"$WORK/add"

base=$(count ' attached (')
t0=$(now)
ip -n "$HOST" -batch "$WORK/add"
t1=$(now)
t2=$(wait_log ' attached (' $((base + N)))
echo "bulk add:    ip -batch of $N ports took $(ms "$t0" "$t1") ms; last attached $(ms "$t1" "$t2") ms later"

samples=()
for ((k = 0; k < REPS; k++)); do
	ip -n "$HOST" link add "bs$k" type veth peer name "qbs$k" netns "$PEERS"
	base=$(count ' attached (')
	t0=$(now)
	ip -n "$HOST" link set "bs$k" master br-imds up
	t1=$(wait_log ' attached (' $((base + 1)))
	samples+=("$(ms "$t0" "$t1")")
done
echo "single port: attached after ${samples[*]} ms"
/usr/bin/python3 -c 'import statistics,sys; v=[float(x) for x in sys.argv[1:]]; print(f"             median {statistics.median(v):.0f} ms, max {max(v):.0f} ms ({len(v)} samples)")' "${samples[@]}"

total=$((N + REPS))
"$LAB" stop-imdsd "$SFX" >/dev/null
t0=$(now)
# shellcheck disable=SC2086
"$LAB" start-imdsd "$SFX" ${IMDSD_ARGS:-} >/dev/null
t1=$(now)
echo "restart:     imdsd ready with $total ports attached $(ms "$t0" "$t1") ms after start (lab.sh polls every 100 ms)"

base=$(count 'left the bridge')
t0=$(now)
ip netns del "$PEERS"
t1=$(wait_log 'left the bridge' $((base + total)))
echo "bulk remove: $total ports deleted at once, all forgotten $(ms "$t0" "$t1") ms after the delete began"
left=$("$LAB" host "$SFX" bpftool -j net show | /usr/bin/python3 -c \
	'import json,sys; d=json.load(sys.stdin)[0]; print(len(d["xdp"]) + len(d["tc"]))')
# TCX links (bpftool 7.1 does not show them) and their pins.
tcx=$("$LAB" host "$SFX" /usr/bin/python3 "$ROOT/tests/system/tcxquery.py" --all | /usr/bin/python3 -c \
	'import json,sys; print(sum(len(h["ingress"]) + len(h["egress"]) for h in json.load(sys.stdin).values()))')
left=$((left + tcx))
echo "             programs left on ports: $left"

#!/usr/bin/env bash
# bench-abuse.sh: issue 12, acceptance 2, as a benchmark.  imdsd starts
# with RLIMIT_NOFILE 1024 (soft and hard: raising the soft limit gains
# nothing).  VM 2 tries to hold 10,000 idle connections (its own
# max-connections raised to 65535, its packet budget the default) and
# reopens each one imdsd closes; VMs 3..18 hold 64 connections each and send
# one byte of a never-ending request every 5 s (default limits).  VM 1, the
# quiet VM (bench limits), crawls its metadata with imds-storm, with and
# without the abusers, in alternating runs: keep-alive crawls for DURATION
# s (its p99 is the acceptance's number) and cloud-init's connection per
# request (every request a new connection that must get in at the cap).
# The abusers' excess must show in imdsd's counts (evicted, refused at the
# total cap, header timeouts) and the quiet VM must lose nothing.  Prints a
# summary and writes OUT/result.json.
#
# The abusers open a connection again REOPEN s after imdsd closed it
# (default 1, a client's retry back-off; 0: at once, as fast as the packet
# budget lets them).
#
# usage: scripts/bench-abuse.sh [--out DIR] [--reps R] [--duration S] [--hoard N] [--nofile N] [--reopen S]
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${IMDS_BUILD:-$ROOT/build}
LAB_SH=$ROOT/scripts/lab.sh
PYTHON=/usr/bin/python3
OUT=
REPS=3
DURATION=10
HOARD=10000
NOFILE=1024
TRICKLERS=16
TRICKLE_CONNS=64
TRICKLE_PERIOD=5
CONN_CRAWLS=10
REOPEN=1

while [ $# -gt 0 ]; do
	case "$1" in
	--out) OUT=$2; shift 2 ;;
	--reps) REPS=$2; shift 2 ;;
	--duration) DURATION=$2; shift 2 ;;
	--hoard) HOARD=$2; shift 2 ;;
	--nofile) NOFILE=$2; shift 2 ;;
	--reopen) REOPEN=$2; shift 2 ;;
	*) sed -n '/^# usage:/p' "$0" | sed 's/^# //' >&2; exit 2 ;;
	esac
done
[ "$(id -u)" = 0 ] || { echo "bench-abuse.sh: needs root" >&2; exit 1; }
export IMDS_LAB_PREFIX=${IMDS_LAB_PREFIX:-imdsb}
SFX=a$$
N=$((2 + TRICKLERS))
[ -n "$OUT" ] || OUT=${TMPDIR:-/tmp}/imds-bench-abuse-$$
mkdir -p "$OUT"
eval "$("$LAB_SH" info "$SFX")"
ABUSER=
cleanup() {
	[ -z "$ABUSER" ] || kill "$ABUSER" 2>/dev/null || true
	"$LAB_SH" down "$SFX"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$LAB_SH" up "$SFX" "$N" --static-neigh
"$PYTHON" "$ROOT/scripts/gen-vms.py" "$N" --bench --default-limits "$(seq -s, 2 "$N")" -o "$OUT/vms.json"
"$PYTHON" - "$OUT/vms.json" <<'EOF'
import json, sys
vms = json.load(open(sys.argv[1]))
vms["vms"][1].setdefault("options", {})["max-connections"] = 65535  # VM 2: only the total cap stops it
json.dump(vms, open(sys.argv[1], "w"), indent=1)
EOF
"$LAB_SH" loadmap "$SFX" load "$OUT/vms.json" >/dev/null
# prlimit sets the limit on lab.sh, whose children (nsenter, imdsd) inherit it.
prlimit --nofile="$NOFILE:$NOFILE" "$LAB_SH" start-imdsd "$SFX" >/dev/null
PID=$(cat "$LAB_RUN_DIR/imdsd.pid")
grep -E 'open files|at most' "$LAB_RUN_DIR/imdsd.log"

steady() { # OUTFILE
	"$BUILD/imds-storm" --vms "$OUT/vms.json" --netns-prefix "$IMDS_LAB_PREFIX-vm" --suffix "$SFX" --count 1 \
		--mode steady --conns 1 --duration "$DURATION" --server-pid "$PID" --quiet --json >"$1" || true
}

conn_crawls() { # PREFIX
	local k
	for ((k = 1; k <= CONN_CRAWLS; k++)); do
		"$BUILD/imds-storm" --vms "$OUT/vms.json" --netns-prefix "$IMDS_LAB_PREFIX-vm" --suffix "$SFX" --count 1 \
			--mode conn --quiet --json >"$1-$k.json" || true
	done
}

start_abusers() { # REP
	local groups=(--group "$IMDS_LAB_PREFIX-vm2-$SFX:$HOARD") i
	for ((i = 3; i <= N; i++)); do
		groups+=(--group "$IMDS_LAB_PREFIX-vm$i-$SFX:$TRICKLE_CONNS:$TRICKLE_PERIOD")
	done
	rm -f "$OUT/ready-$1"
	"$PYTHON" "$ROOT/scripts/abuse-conns.py" --duration 3600 --ready "$OUT/ready-$1" --ready-after 10 --reopen-delay "$REOPEN" \
		"${groups[@]}" >"$OUT/abuse-$1.json" 2>"$OUT/abuse-$1.err" &
	ABUSER=$!
	while [ ! -f "$OUT/ready-$1" ]; do
		kill -0 "$ABUSER" 2>/dev/null || { cat "$OUT/abuse-$1.err" >&2; exit 1; }
		sleep 0.2
	done
}

stop_abusers() {
	kill -TERM "$ABUSER"
	wait "$ABUSER" || true
	ABUSER=
	sleep 2 # imdsd sees the EOFs and frees
}

steady "$OUT/warmup.json"
for ((rep = 1; rep <= REPS; rep++)); do
	steady "$OUT/unloaded-$rep.json"
	conn_crawls "$OUT/unloaded-conn-$rep"
	start_abusers "$rep"
	steady "$OUT/loaded-$rep.json"
	conn_crawls "$OUT/loaded-conn-$rep"
	stop_abusers
done
sleep 11 # worker 0 logs the counts every 10 s
"$LAB_SH" stop-imdsd "$SFX" >/dev/null
cp "$LAB_RUN_DIR/imdsd.log" "$OUT/imdsd.log"

"$PYTHON" - "$OUT" "$REPS" "$CONN_CRAWLS" "$HOARD" "$NOFILE" "$REOPEN" <<'EOF'
import json, re, statistics, sys
out, reps, crawls, hoard, nofile = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
reopen = float(sys.argv[6])
ld = lambda p: json.load(open(p))
def steady(kind):
    runs = [ld(f"{out}/{kind}-{r}.json") for r in range(1, reps + 1)]
    return {"p99": statistics.median(r["latency_us"]["p99"] for r in runs),
            "p50": statistics.median(r["latency_us"]["p50"] for r in runs),
            "rps": statistics.median(r["requests_per_s"] for r in runs),
            "errors": sum(r["errors"]["total"] for r in runs),
            "p99_each": [r["latency_us"]["p99"] for r in runs]}
def conn(kind):
    runs = [ld(f"{out}/{kind}-conn-{r}-{k}.json") for r in range(1, reps + 1) for k in range(1, crawls + 1)]
    return {"crawls": len(runs), "requests": sum(r["requests"] for r in runs),
            "completion_s_median": statistics.median(r["completion_s"] for r in runs),
            "p99_median": statistics.median(r["latency_us"]["p99"] for r in runs),
            "errors": sum(r["errors"]["total"] for r in runs)}
log = open(f"{out}/imdsd.log").read()
totals = re.findall(r"since start (\d+) evicted, (\d+) refused at the total cap, (\d+) header timeouts, (\d+) idle", log)
cap = re.search(r"at most (\d+) connections", log)
gated = re.findall(r"(\d+) refusals gated in the data plane", log)
quiet_lost = [ln for ln in log.splitlines() if ln.startswith("warn imdsd: descriptors: ") and "(slot 1)" in ln]
abuse = [ld(f"{out}/abuse-{r}.json")["groups"] for r in range(1, reps + 1)]
res = {"nofile": nofile, "reopen_delay": reopen, "cap": int(cap.group(1)) if cap else None, "hoard": hoard,
       "unloaded": steady("unloaded"), "loaded": steady("loaded"),
       "unloaded_conn": conn("unloaded"), "loaded_conn": conn("loaded"),
       "evicted": int(totals[-1][0]) if totals else 0, "refused_total": int(totals[-1][1]) if totals else 0,
       "header_timeouts": int(totals[-1][2]) if totals else 0, "idle_timeouts": int(totals[-1][3]) if totals else 0,
       "hoarder_closed": sum(g[0]["closed_by_server"] for g in abuse),
       "tricklers_closed": sum(x["closed_by_server"] for g in abuse for x in g[1:]),
       "gated": int(gated[-1]) if gated else 0, "quiet_vm_lines": quiet_lost}
res["p99_ratio"] = res["loaded"]["p99"] / res["unloaded"]["p99"]
res["ok"] = (res["p99_ratio"] <= 1.20 and res["loaded"]["errors"] == 0 and res["loaded_conn"]["errors"] == 0
             and not quiet_lost and res["evicted"] + res["refused_total"] > 0 and res["header_timeouts"] > 0)
json.dump(res, open(f"{out}/result.json", "w"), indent=2)
u, l, uc, lc = res["unloaded"], res["loaded"], res["unloaded_conn"], res["loaded_conn"]
print(f"abuse: RLIMIT_NOFILE {nofile}, total cap {res['cap']}, reopen delay {reopen} s")
print(f"abuse: keep-alive crawl p99 unloaded {u['p99']:.0f} us, loaded {l['p99']:.0f} us (ratio {res['p99_ratio']:.2f}, "
      f"target <= 1.20); p50 {u['p50']:.0f} / {l['p50']:.0f} us; runs {u['p99_each']} / {l['p99_each']}; "
      f"errors {u['errors']} / {l['errors']}")
print(f"abuse: connection-per-request crawls ({lc['crawls']} loaded): p99 median {uc['p99_median']:.0f} / "
      f"{lc['p99_median']:.0f} us, completion median {uc['completion_s_median'] * 1000:.1f} / "
      f"{lc['completion_s_median'] * 1000:.1f} ms, errors {uc['errors']} / {lc['errors']}")
print(f"abuse: imdsd closed {res['evicted']} evicted, {res['refused_total']} refused at the cap, "
      f"{res['header_timeouts']} header timeouts, {res['idle_timeouts']} idle timeouts, {res['gated']} refusals "
      f"gated in the data plane; the hoarder saw "
      f"{res['hoarder_closed']} of its connections closed, the tricklers {res['tricklers_closed']}")
print(f"abuse: quiet VM lost nothing: {'yes' if not quiet_lost else 'NO: ' + '; '.join(quiet_lost)}")
sys.exit(0 if res["ok"] else 1)
EOF

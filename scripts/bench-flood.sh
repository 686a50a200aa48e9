#!/usr/bin/env bash
# bench-flood.sh: issue 4, acceptance 2, as a benchmark.  VM 2 floods
# 169.254.169.254:80 with TCP SYNs at 10x its packet budget (the default
# 1024 packets/s, so 10240/s) while VM 1 crawls its metadata; VM 1's crawl
# latency is measured with and without the flood, in alternating runs, and
# VM 2's drop_budget counter (imds-loadmap stats) must account for the
# excess.  VM 1 has bench limits (gen-vms.py --bench) so its own crawl is
# never limited; VM 2 keeps the defaults.  Prints a summary and writes
# OUT/result.json (read by scripts/bench-report.py).
#
# usage: scripts/bench-flood.sh [--out DIR] [--reps R] [--duration S] [--pps R]
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${IMDS_BUILD:-$ROOT/build}
LAB_SH=$ROOT/scripts/lab.sh
PYTHON=/usr/bin/python3
OUT=
REPS=3
DURATION=5
PPS=10240
BUDGET=1024 # the default rate-pps of a VM (docs/vm-schema.md)

while [ $# -gt 0 ]; do
	case "$1" in
	--out) OUT=$2; shift 2 ;;
	--reps) REPS=$2; shift 2 ;;
	--duration) DURATION=$2; shift 2 ;;
	--pps) PPS=$2; shift 2 ;;
	*) sed -n '/^# usage:/p' "$0" | sed 's/^# //' >&2; exit 2 ;;
	esac
done
[ "$(id -u)" = 0 ] || { echo "bench-flood.sh: needs root" >&2; exit 1; }
export IMDS_LAB_PREFIX=${IMDS_LAB_PREFIX:-imdsb}
SFX=f$$
[ -n "$OUT" ] || OUT=${TMPDIR:-/tmp}/imds-bench-flood-$$
mkdir -p "$OUT"
eval "$("$LAB_SH" info "$SFX")"
trap '"$LAB_SH" down "$SFX"' EXIT
trap 'exit 130' INT TERM

"$LAB_SH" up "$SFX" 2 --static-neigh
"$PYTHON" "$ROOT/scripts/gen-vms.py" 2 --bench --default-limits 2 -o "$OUT/vms.json"
"$LAB_SH" loadmap "$SFX" load "$OUT/vms.json" >/dev/null
"$LAB_SH" start-imdsd "$SFX" >/dev/null
PID=$(cat "$LAB_RUN_DIR/imdsd.pid")
ID1=$("$PYTHON" -c 'import json,sys; print(json.load(open(sys.argv[1]))["vms"][0]["instance-id"])' "$OUT/vms.json")
ID2=$("$PYTHON" -c 'import json,sys; print(json.load(open(sys.argv[1]))["vms"][1]["instance-id"])' "$OUT/vms.json")

counter() { # INSTANCE-ID COUNTER
	"$LAB_SH" loadmap "$SFX" stats "$1" | awk -v c="$2" '$2 == c {n = $3} END {print n + 0}'
}

crawl() { # OUTFILE [ARGS...]
	local out=$1
	shift
	"$BUILD/imds-storm" --vms "$OUT/vms.json" --netns-prefix "$IMDS_LAB_PREFIX-vm" --suffix "$SFX" --count 1 \
		--mode steady --conns 1 --duration "$DURATION" --server-pid "$PID" --quiet --json "$@" >"$out" || true
}

# A first crawl warms imdsd and the caches; not counted.
crawl "$OUT/warmup.json"
for ((rep = 1; rep <= REPS; rep++)); do
	crawl "$OUT/unloaded-$rep.json"
	d1=$(counter "$ID1" drop_budget) d2=$(counter "$ID2" drop_budget) p2=$(counter "$ID2" pass_verified)
	crawl "$OUT/loaded-$rep.json" --flood-vm 2 --flood-pps "$PPS"
	echo "$(($(counter "$ID1" drop_budget) - d1)) $(($(counter "$ID2" drop_budget) - d2))" \
		"$(($(counter "$ID2" pass_verified) - p2))" >"$OUT/drops-$rep.txt"
done
"$LAB_SH" stop-imdsd "$SFX" >/dev/null

"$PYTHON" - "$OUT" "$REPS" "$PPS" "$BUDGET" "$DURATION" <<'EOF'
import json, statistics, sys
out, reps, pps, budget, duration = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
def load(kind):
    return [json.load(open(f"{out}/{kind}-{r}.json")) for r in range(1, reps + 1)]
def summary(runs):
    return {"p99": statistics.median(r["latency_us"]["p99"] for r in runs),
            "p50": statistics.median(r["latency_us"]["p50"] for r in runs),
            "rps": statistics.median(r["requests_per_s"] for r in runs),
            "errors": sum(r["errors"]["total"] for r in runs)}
unloaded, loaded = load("unloaded"), load("loaded")
drops = [tuple(int(x) for x in open(f"{out}/drops-{r}.txt").read().split()) for r in range(1, reps + 1)]
sent = sum(r["flood"]["sent"] for r in loaded)
seconds = sum(r["flood"]["seconds"] for r in loaded)
dropped = sum(d[1] for d in drops)
passed = sum(d[2] for d in drops)
res = {"flood_vm": 2, "crawl_vm": 1, "flood_pps": pps, "budget_pps": budget, "mode": "steady keep-alive crawls",
       "duration": duration, "reps": reps, "unloaded": summary(unloaded), "loaded": summary(loaded),
       "sent": sent, "seconds": seconds, "drop_budget": dropped, "passed": passed,
       "passed_pps": passed / seconds if seconds else 0,
       "crawler_drop_budget": sum(d[0] for d in drops),
       "p99_each": {"unloaded": [r["latency_us"]["p99"] for r in unloaded],
                    "loaded": [r["latency_us"]["p99"] for r in loaded]}}
res["p99_ratio"] = res["loaded"]["p99"] / res["unloaded"]["p99"]
# The bucket lets through at most budget/s plus one burst (= budget, the
# default) per run (it refills between runs); everything else the VM sent
# must show as drop_budget.
allowed = budget * seconds + budget * reps
res["allowed_max"] = allowed
res["budget_held"] = passed <= allowed * 1.05 and dropped >= sent - allowed * 1.05
json.dump(res, open(f"{out}/result.json", "w"), indent=2)
print(f"flood: crawl p99 unloaded {res['unloaded']['p99']:.0f} us, loaded {res['loaded']['p99']:.0f} us "
      f"(ratio {res['p99_ratio']:.2f}, target <= 1.20); runs {res['p99_each']}")
print(f"flood: VM 2 sent {sent} SYNs at {pps}/s for {seconds:.1f} s; its drop_budget +{dropped}, "
      f"pass_verified +{passed} ({res['passed_pps']:.0f}/s against a budget of {budget}/s); "
      f"VM 1 drop_budget +{res['crawler_drop_budget']}; crawl errors {res['unloaded']['errors']} / {res['loaded']['errors']}")
print(f"flood: budget held: {'yes' if res['budget_held'] else 'NO'} (at most {allowed:.0f} packets could pass)")
sys.exit(0 if res["budget_held"] and res["crawler_drop_budget"] == 0 else 1)
EOF

#!/usr/bin/env bash
# Runs libFuzzer targets (tests/fuzz) one after another, each for SECONDS,
# under nice: fuzz.sh BIN-DIR SECONDS TARGET...  (make fuzz FUZZ_SECONDS=N).
# Each target starts from its seeds in tests/fuzz/corpus/TARGET (read only)
# and keeps what it finds in $FUZZ_WORK/corpus/TARGET (default
# BIN-DIR/work); a crash, leak, timeout or failed check is written to
# $FUZZ_WORK/artifacts/ and fails the run.  One line per target at the end:
# executions, corpus (files and bytes, seeds included) and result.
set -uo pipefail

[ $# -ge 3 ] || { echo "usage: $0 BIN-DIR SECONDS TARGET..." >&2; exit 2; }
bin_dir=$1 seconds=$2
shift 2
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
work=${FUZZ_WORK:-$bin_dir/work}
failed=0 summary=()

for t in "$@"; do
	corpus=$work/corpus/$t log=$work/fuzz_$t.log
	mkdir -p "$corpus" "$work/artifacts"
	echo "fuzz: fuzz_$t for ${seconds}s"
	nice -n 19 "$bin_dir/fuzz_$t" "$corpus" "$root/tests/fuzz/corpus/$t" -max_total_time="$seconds" \
		-timeout=10 -artifact_prefix="$work/artifacts/$t-" -print_final_stats=1 >"$log" 2>&1
	rc=$?
	if grep -q '^fuzz_bpf: skipped' "$log"; then
		summary+=("fuzz_$t: $(grep '^fuzz_bpf: skipped' "$log")")
		continue
	fi
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
	corp=$(grep -oE 'corp: [0-9]+/[0-9]+[a-zA-Z]*' "$log" | tail -1 | cut -d' ' -f2)
	result=ok
	if [ "$rc" -ne 0 ]; then
		result="FAILED (exit $rc; log $log)"
		failed=1
		grep -E 'ERROR|runtime error|SUMMARY|Test unit written|fuzz_' "$log" | head -20
	fi
	summary+=("fuzz_$t: ${seconds}s, ${execs:-?} executions, corpus ${corp:-?}: $result")
done
printf '%s\n' "${summary[@]}"
exit "$failed"

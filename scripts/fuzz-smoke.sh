#!/usr/bin/env bash
# make test's short run of every fuzz target (FUZZ_SMOKE_SECONDS each,
# default 8) from its seeds, in a scratch corpus; fails on any finding.
# The targets are $IMDS_BUILD/fuzz/fuzz_* (default build/, as make test
# builds them).
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin_dir=${IMDS_BUILD:-$root/build}/fuzz
targets=(route vmconf tree token bpf)
for t in "${targets[@]}"; do
	[ -x "$bin_dir/fuzz_$t" ] || { echo "fuzz-smoke: $bin_dir/fuzz_$t missing (make first)"; exit 1; }
done
FUZZ_WORK=$(mktemp -d)
export FUZZ_WORK
trap 'rm -rf "$FUZZ_WORK"' EXIT
"$root/scripts/fuzz.sh" "$bin_dir" "${FUZZ_SMOKE_SECONDS:-8}" "${targets[@]}"

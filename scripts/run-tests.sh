#!/usr/bin/env bash
# Runs unit test binaries (cmocka) and/or the system tests (pytest) and ends
# with one line: "N passed, N failed[, N skipped]".
#   run-tests.sh [--unit BIN...] [--system [PYTEST ARGS...]]
set -uo pipefail

python=${PYTHON:-/usr/bin/python3}
passed=0 failed=0 skipped=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT

count() { # $1 = regex with one group; reads $log
	grep -oE "$1" "$log" | grep -oE '[0-9]+' | awk '{s+=$1} END {print s+0}'
}

run_unit() {
	for bin in "$@"; do
		: >"$log"
		"$bin" 2>&1 | tee "$log"
		local rc=${PIPESTATUS[0]} p f
		p=$(count '\[  PASSED  \] [0-9]+')
		f=$(count '\[  FAILED  \] [0-9]+')
		if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
			echo "run-tests: $bin exited $rc without a cmocka summary"
			f=1
		fi
		passed=$((passed + p)) failed=$((failed + f))
	done
}

run_system() {
	: >"$log"
	"$python" -m pytest -p no:cacheprovider -rs tests/system "$@" 2>&1 | tee "$log"
	local rc=${PIPESTATUS[0]} p f e s
	p=$(count '[0-9]+ passed')
	f=$(count '[0-9]+ failed')
	e=$(count '[0-9]+ errors?')
	s=$(count '[0-9]+ skipped')
	if [ "$rc" -ne 0 ] && [ "$rc" -ne 5 ] && [ $((f + e)) -eq 0 ]; then
		echo "run-tests: pytest exited $rc"
		f=1
	fi
	passed=$((passed + p)) failed=$((failed + f + e)) skipped=$((skipped + s))
}

units=()
system=0
system_args=()
while [ $# -gt 0 ]; do
	case "$1" in
	--unit) ;;
	--system) system=1; shift; system_args=("$@"); break ;;
	*) units+=("$1") ;;
	esac
	shift
done
[ "${#units[@]}" -gt 0 ] && run_unit "${units[@]}"
[ "$system" -eq 1 ] && run_system "${system_args[@]}"

if [ "$skipped" -gt 0 ]; then
	echo "$passed passed, $failed failed, $skipped skipped"
else
	echo "$passed passed, $failed failed"
fi
[ "$failed" -eq 0 ]

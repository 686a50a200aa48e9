#!/usr/bin/env bash
# Runs unit test binaries (cmocka), the system tests and/or the e2e tests
# (pytest) and ends with one line: "N passed, N failed[, N skipped]".
#   run-tests.sh [--check CMD...] [--unit BIN...] [--system [PYTEST ARGS...]] [--e2e [PYTEST ARGS...]]
# --check runs each CMD (one word, no arguments) as one test: exit 0 passes.
# --e2e boots QEMU guests (tests/e2e, docs/e2e.md); its first run downloads
# the guest kernel package with apt-get into build/e2e/.
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
		# make's dependency files beside the binaries (a build/tests/test_* glob)
		case "$bin" in *.d) continue ;; esac
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

run_checks() {
	for cmd in "$@"; do
		if "$cmd"; then
			passed=$((passed + 1))
		else
			echo "run-tests: $cmd failed"
			failed=$((failed + 1))
		fi
	done
}

run_pytest() { # DIR [PYTEST ARGS...]
	local dir=$1
	shift
	: >"$log"
	"$python" -m pytest -p no:cacheprovider -rs "$dir" "$@" 2>&1 | tee "$log"
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

units=() checks=()
system=0 e2e=0
system_args=() e2e_args=()
part=unit
while [ $# -gt 0 ]; do
	case "$part:$1" in
	*:--unit) part=unit ;;
	*:--check) part=check ;;
	*:--system) part=system system=1 ;;
	*:--e2e) part=e2e e2e=1 ;;
	unit:*) units+=("$1") ;;
	check:*) checks+=("$1") ;;
	system:*) system_args+=("$1") ;;
	e2e:*) e2e_args+=("$1") ;;
	esac
	shift
done
[ "${#checks[@]}" -gt 0 ] && run_checks "${checks[@]}"
[ "${#units[@]}" -gt 0 ] && run_unit "${units[@]}"
[ "$system" -eq 1 ] && run_pytest tests/system "${system_args[@]}"
[ "$e2e" -eq 1 ] && run_pytest tests/e2e "${e2e_args[@]}"

if [ "$skipped" -gt 0 ]; then
	echo "$passed passed, $failed failed, $skipped skipped"
else
	echo "$passed passed, $failed failed"
fi
[ "$failed" -eq 0 ]

#!/usr/bin/env bash
# The sanitizers under load (issue 12): the system tests that push imdsd
# hardest, run against an imdsd built with ASan and UBSan (make san-test
# builds it as build/san-bin/imdsd).  imdslab.py runs $IMDS_IMDSD in place of
# build/imdsd, with sanitizer reports going to its log, and fails a test
# whose imdsd logged one (a leak is reported when imdsd exits).
#   san-test.sh [PYTEST ARGS...]
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export IMDS_IMDSD=${IMDS_IMDSD:-${IMDS_BUILD:-$root/build}/san-bin/imdsd}
[ -x "$IMDS_IMDSD" ] || { echo "san-test: $IMDS_IMDSD missing (make san-bin)" >&2; exit 1; }
modules=()
for m in storm spoof limits hostile fairness serving; do
	[ -f "$root/tests/system/test_$m.py" ] && modules+=("tests/system/test_$m.py")
done
cd "$root" && exec "${PYTHON:-/usr/bin/python3}" -m pytest -p no:cacheprovider -rs "${modules[@]}" "$@"

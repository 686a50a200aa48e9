#!/usr/bin/env bash
# e2e.sh: `make e2e`.  Builds the guest (scripts/e2e-guest.sh: Debian kernel
# and busybox initramfs, cached under build/e2e/) and boots real QEMU guests
# on TAP devices of a lab bridge served by imdsd (tests/e2e, docs/e2e.md).
# Ends with "N passed, N failed"; extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# A failure here shows again, counted, in the tests that need the guest.
./scripts/e2e-guest.sh >/dev/null || echo "e2e: building the guest failed"
exec ./scripts/run-tests.sh --e2e "$@"

#!/usr/bin/env bash
# Installs the npm metadata clients that the system tests run (the AWS SDK
# for JavaScript v3 IMDS packages, gcp-metadata and @azure/identity) into
# build/clients, from tests/clients/package.json and its package-lock.json
# (exact versions).
#
# The npm registry is not reachable everywhere the tests run (CI has only
# Debian's repositories): then this prints why and exits 0, and the tests
# that need these clients skip with that reason.  Idempotent: nothing is
# fetched when build/clients already holds this lock file's packages.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
src=$root/tests/clients
dest=${IMDS_BUILD:-$root/build}/clients

say() { echo "install-npm-clients: $*"; }

if ! command -v npm >/dev/null || ! command -v node >/dev/null; then
	say "node or npm is not installed; the JavaScript client tests will skip"
	exit 0
fi

mkdir -p "$dest"
if [ -d "$dest/node_modules" ] && cmp -s "$src/package-lock.json" "$dest/installed-lock.json"; then
	say "up to date in $dest"
	exit 0
fi

# One quick question first, so an unreachable registry costs seconds, not
# npm's minutes of retries.
if ! timeout 30 npm ping --fetch-retries=0 --fetch-timeout=15000 >/dev/null 2>&1; then
	say "the npm registry is not reachable; not installing (the JavaScript client tests will skip)"
	exit 0
fi

cp "$src/package.json" "$src/package-lock.json" "$dest/"
rm -f "$dest/installed-lock.json"
if ! (cd "$dest" && npm ci --no-audit --no-fund --loglevel=error); then
	# No half-installed tree: the tests would run against it.
	rm -rf "$dest/node_modules"
	say "npm ci failed in $dest"
	exit 1
fi
cp "$src/package-lock.json" "$dest/installed-lock.json"
say "installed into $dest/node_modules"

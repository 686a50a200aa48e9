#!/usr/bin/env bash
# Proves that every header in bpf/ includes what it uses: each one is
# compiled alone, as the only line of a translation unit, and then all of
# them together in name order and in reverse name order.  clang checks the
# syntax only (-fsyntax-only: no object, no verifier), so this takes about a
# second per header.
#   check-bpf-headers.sh   exit 0 clean, 1 with clang's errors per header
# vmlinux.h is taken from $BUILD (default build/) when make made it there,
# otherwise dumped from the running kernel's BTF into a temporary directory.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD:-$root/build}
clang=${CLANG:-clang}
arch=$(uname -m | sed -e 's/x86_64/x86/' -e 's/aarch64/arm64/')
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

case "$build" in /*) ;; *) build=$root/$build ;; esac
vmlinux_dir=$build
if [ ! -s "$build/vmlinux.h" ]; then
	vmlinux_dir=$tmp
	"${BPFTOOL:-bpftool}" btf dump file /sys/kernel/btf/vmlinux format c >"$tmp/vmlinux.h"
fi

# One translation unit per argument list: the headers included in that order.
compile() { # NAME HEADER...
	local name=$1 src=$tmp/$1.c
	shift
	printf '#include "%s"\n' "$@" >"$src"
	if ! "$clang" -target bpf -mcpu=v3 -D__TARGET_ARCH_"$arch" -Wall -Werror -fsyntax-only \
		-I"$root/bpf" -I"$root/include" -I"$vmlinux_dir" "$src" 2>"$tmp/$name.err"; then
		echo "check-bpf-headers: $name does not compile:"
		sed 's/^/  /' "$tmp/$name.err"
		return 1
	fi
}

cd "$root/bpf"
headers=(*.h)
failed=0
for h in "${headers[@]}"; do
	compile "alone-${h%.h}" "$h" || failed=1
done
compile all-forward "${headers[@]}" || failed=1
reversed=()
for ((i = ${#headers[@]} - 1; i >= 0; i--)); do
	reversed+=("${headers[$i]}")
done
compile all-reverse "${reversed[@]}" || failed=1
[ "$failed" -eq 0 ] && echo "check-bpf-headers: ${#headers[@]} headers compile alone, all in name order and reversed"
exit "$failed"

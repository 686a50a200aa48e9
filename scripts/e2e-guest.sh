#!/usr/bin/env bash
# e2e-guest.sh: builds what the QEMU guests of tests/e2e boot, under
# build/e2e/ (cached: a second run only rebuilds what changed):
#
#   build/e2e/kernel.version   the Debian kernel release, e.g. 6.1.0-57-amd64
#   build/e2e/vmlinuz          that kernel, from the linux-image package
#   build/e2e/initramfs.gz     busybox-static, the virtio modules of that
#                              kernel and tests/e2e/guest-init.sh as /init
#
# The kernel package is fetched with `apt-get download` and unpacked with
# dpkg-deb into build/e2e/kernel/: nothing is installed on the host.
# IMDS_E2E_KERNEL=6.1.0-NN-amd64 picks the kernel (default: the one
# linux-image-amd64 depends on).  Prints the paths as shell assignments.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=${IMDS_BUILD:-$root/build}/e2e
init_src=$root/tests/e2e/guest-init.sh
busybox=/bin/busybox
# virtio-net over PCI; their dependencies are added from the modules' own
# depends= fields, so the list survives a kernel that splits them otherwise.
want_modules=(virtio_pci virtio_net)

die() { echo "e2e-guest: $*" >&2; exit 1; }

# The release linux-image-amd64 points at, e.g. 6.1.0-57-amd64.
pick_kernel() {
	local dep
	dep=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-/ {print $2; exit}')
	if [ -z "$dep" ]; then
		apt-get update -qq >&2 || die "apt-get update failed"
		dep=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-/ {print $2; exit}')
	fi
	[ -n "$dep" ] || die "apt knows no linux-image-amd64: cannot pick a kernel (set IMDS_E2E_KERNEL)"
	echo "${dep#linux-image-}"
}

fetch_kernel() { # RELEASE
	local rel=$1 deb
	deb=$(ls "$out"/linux-image-"$rel"_*.deb 2>/dev/null | head -n 1 || true)
	if [ -z "$deb" ]; then
		echo "e2e-guest: downloading linux-image-$rel" >&2
		(cd "$out" && apt-get download "linux-image-$rel" >&2 2>/dev/null) ||
			(apt-get update -qq >&2 && cd "$out" && apt-get download "linux-image-$rel" >&2) ||
			die "apt-get download linux-image-$rel failed"
		deb=$(ls "$out"/linux-image-"$rel"_*.deb | head -n 1)
	fi
	rm -rf "$out/kernel.tmp"
	mkdir -p "$out/kernel.tmp"
	dpkg-deb -x "$deb" "$out/kernel.tmp"
	[ -f "$out/kernel.tmp/boot/vmlinuz-$rel" ] || die "$deb holds no boot/vmlinuz-$rel"
	rm -rf "$out/kernel"
	mv "$out/kernel.tmp" "$out/kernel"
	cp "$out/kernel/boot/vmlinuz-$rel" "$out/vmlinuz"
	echo "$rel" >"$out/kernel.version"
}

# Module name -> path of its .ko under the unpacked kernel (- and _ are one).
module_path() { # MODDIR NAME
	find "$1/kernel" -name "$(echo "$2" | tr - _).ko" -o -name "$(echo "$2" | tr _ -).ko" | head -n 1
}

# Appends NAME to the load order after its dependencies (depth first, from
# the depends= field of the module's .modinfo section).
declare -A seen
order=()
resolve() { # MODDIR NAME
	local dir=$1 name=$2 ko dep
	name=$(echo "$name" | tr - _)
	[ -n "${seen[$name]:-}" ] && return 0
	seen[$name]=1
	if grep -qE "/$name\.ko\$" "$dir/modules.builtin"; then
		return 0
	fi
	ko=$(module_path "$dir" "$name")
	[ -n "$ko" ] || die "module $name not found in $dir"
	for dep in $(grep -a -o 'depends=[A-Za-z0-9_,-]*' "$ko" | head -n 1 | cut -d= -f2 | tr , ' '); do
		resolve "$dir" "$dep"
	done
	order+=("$name")
}

build_initramfs() { # RELEASE
	local rel=$1 moddir stage m
	moddir=$out/kernel/lib/modules/$rel
	# busybox (dynamic) and busybox-static both ship /bin/busybox; the
	# initramfs has no libc, so it must be the static one.
	dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'ok installed' ||
		die "busybox-static is not installed (scripts/install-deps.sh installs it)"
	stage=$out/initramfs.d
	rm -rf "$stage"
	mkdir -p "$stage"/{bin,dev,proc,sys,tmp,lib/modules}
	cp "$busybox" "$stage/bin/busybox"
	ln -s busybox "$stage/bin/sh"
	cp "$init_src" "$stage/init"
	chmod 755 "$stage/init"
	# The kernel opens /dev/console before /init runs.
	mknod -m 600 "$stage/dev/console" c 5 1
	for m in "${want_modules[@]}"; do
		resolve "$moddir" "$m"
	done
	for m in "${order[@]}"; do
		cp "$(module_path "$moddir" "$m")" "$stage/lib/modules/$m.ko"
	done
	printf '%s\n' "${order[@]}" >"$stage/lib/modules/order"
	(cd "$stage" && find . -print0 | sort -z | cpio --null -o -H newc --quiet) | gzip -9 >"$out/initramfs.gz.tmp"
	mv "$out/initramfs.gz.tmp" "$out/initramfs.gz"
	rm -rf "$stage"
	echo "e2e-guest: initramfs for $rel: modules ${order[*]}" >&2
}

mkdir -p "$out"
# Two test runs at once build one guest, one after the other.
exec 9>"$out/.lock"
flock 9
rel=${IMDS_E2E_KERNEL:-}
if [ -z "$rel" ]; then
	if [ -f "$out/kernel.version" ] && [ -f "$out/vmlinuz" ]; then
		rel=$(cat "$out/kernel.version")
	else
		rel=$(pick_kernel)
	fi
fi
if [ ! -f "$out/vmlinuz" ] || [ "$(cat "$out/kernel.version" 2>/dev/null)" != "$rel" ] ||
	[ ! -d "$out/kernel/lib/modules/$rel" ]; then
	fetch_kernel "$rel"
fi
if [ ! -f "$out/initramfs.gz" ] || [ "$init_src" -nt "$out/initramfs.gz" ] ||
	[ "${BASH_SOURCE[0]}" -nt "$out/initramfs.gz" ] || [ "$out/vmlinuz" -nt "$out/initramfs.gz" ]; then
	build_initramfs "$rel"
fi
echo "E2E_KERNEL=$out/vmlinuz"
echo "E2E_INITRAMFS=$out/initramfs.gz"
echo "E2E_KERNEL_RELEASE=$rel"

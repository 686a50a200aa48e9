#!/usr/bin/env bash
# make-deb.sh OUTDIR: builds imds_<VERSION>_<arch>.deb into OUTDIR with
# Debian's own tools (dpkg-buildpackage, debhelper), then runs lintian on it.
#
# dpkg-buildpackage builds in place and writes beside the source tree, so
# it runs on a copy in OUTDIR/imds-<VERSION> (the files git tracks or would
# track; the whole tree minus build/ outside a git checkout): the tree stays
# clean.  debian/changelog is written there from the VERSION file, the
# version's one place.  Prints the .deb's path last.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=${1:?usage: make-deb.sh OUTDIR}
mkdir -p "$out"
out=$(cd "$out" && pwd)
version=$(cat "$root/VERSION")
arch=$(dpkg-architecture -qDEB_HOST_ARCH)
src=$out/imds-$version
deb=$out/imds_${version}_${arch}.deb

rm -rf "$src" "$deb"
mkdir -p "$src"
if git -C "$root" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
	# (a file deleted but not yet committed is still listed: skip it)
	(cd "$root" && git ls-files -z --cached --others --exclude-standard |
		while IFS= read -r -d '' f; do [ ! -e "$f" ] || printf '%s\0' "$f"; done |
		tar --null -T - -cf -) | tar -C "$src" -xf -
else
	tar -C "$root" --exclude=./build -cf - . | tar -C "$src" -xf -
fi

# The date of the last commit (or now): the same sources give the same entry.
date=$(git -C "$root" log -1 --format=%cD 2>/dev/null || date -R)
maintainer=$(sed -n 's/^Maintainer: //p' "$src/debian/control")
cat >"$src/debian/changelog" <<EOT
imds ($version) unstable; urgency=medium

  * Version $version, from the VERSION file (written by scripts/make-deb.sh).

 -- $maintainer  $date
EOT

# The package builds with its own defaults: nothing of a calling make
# (BUILD=... on its command line reaches sub-makes through MAKEFLAGS, and
# debian/rules clean would remove that directory).
unset MAKEFLAGS MAKEOVERRIDES MFLAGS MAKELEVEL BUILD
export DEB_BUILD_OPTIONS=${DEB_BUILD_OPTIONS:-parallel=$(nproc)}
(cd "$src" && dpkg-buildpackage -us -uc -b)
test -f "$deb"
echo "make-deb: lintian $deb"
lintian --info "$deb" || true
echo "$deb"

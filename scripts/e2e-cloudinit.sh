#!/usr/bin/env bash
# e2e-cloudinit.sh: `make e2e-cloudinit` (docs/e2e.md).  A real Debian
# bookworm guest with Debian's cloud-init boots under QEMU on a TAP port of a
# lab bridge served by imdsd, takes the EC2 identity from SMBIOS, and must
# get its hostname, SSH key and user-data from imdsd over IMDSv2 (the VM
# requires tokens) with cloud-init reporting no error.
#
#   e2e-cloudinit.sh            build what is missing, boot, check
#   e2e-cloudinit.sh build      only build the cached root tree
#
# Cached under build/e2e/cloudinit/: the debootstrap tree (root/, made once,
# minutes), then per run a fresh ext4 image made from it (mkfs.ext4 -d), so
# every boot is a first boot.  Not in CI: it takes minutes under TCG.
# IMDS_E2E_MIRROR picks the Debian mirror; IMDS_E2E_ACCEL=kvm uses KVM.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${IMDS_BUILD:-$root/build}
out=$build/e2e/cloudinit
tree=$out/root
mirror=${IMDS_E2E_MIRROR:-http://deb.debian.org/debian}
accel=${IMDS_E2E_ACCEL:-tcg}
boot_timeout=${IMDS_E2E_TIMEOUT:-900}
lab=$root/scripts/lab.sh
sfx=ci$$
mark="IMDS-E2E "

# The VM imdsd serves (the lab's VM 1 addresses); every value is unique to
# this test so the checks below cannot match anything else.
vm_mac=52:54:00:77:00:01
vm_ip=10.77.0.11
instance_id=i-0e2ec1a0000000001
vm_host=imds-e2e-ci
vm_fqdn=$vm_host.lab.internal
vm_key="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ+rx8ErVWVUA97vKtmNiu7Dd0cOMhK18lt6ooPHyyWU imds-e2e@lab"
ud_mark="user-data of $instance_id ran"
# SMBIOS type 1: cloud-init (identify_aws) takes a machine whose system UUID
# starts with "ec2" and equals its serial number for EC2, and on EC2 always
# fetches an IMDSv2 token first.
smbios_uuid=ec2e2e00-0000-4000-8000-000000000001

die() { echo "e2e-cloudinit: $*" >&2; exit 1; }
say() { echo "e2e-cloudinit: $*"; }

packages=(
	systemd-sysv udev kmod dbus iproute2 procps netbase
	linux-image-amd64 initramfs-tools
	cloud-init openssh-server sudo locales
	# a dependency of cloud-init's that debootstrap does not resolve
	python3-cffi-backend
)

# The root tree, made once: debootstrap, the en_US.UTF-8 locale (cloud-init's
# locale module fails without it).
build_tree() {
	[ -f "$tree/.e2e-complete" ] && return 0
	if ! command -v debootstrap >/dev/null; then
		say "installing debootstrap"
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null ||
			{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null; } ||
			die "cannot install debootstrap"
	fi
	# A debootstrap killed half way can leave its /proc and /sys mounted.
	local m
	for m in $(awk -v t="$tree/" 'index($2, t) == 1 {print $2}' /proc/self/mounts | sort -r); do
		umount -l "$m"
	done
	rm -rf --one-file-system "$tree"
	mkdir -p "$out"
	say "debootstrap bookworm into $tree (minutes)"
	local list
	list=$(printf '%s,' "${packages[@]}")
	debootstrap --variant=minbase --include="${list%,}" bookworm "$tree" "$mirror" >"$out/debootstrap.log" 2>&1 ||
		{ tail -n 30 "$out/debootstrap.log" >&2; die "debootstrap failed (log: $out/debootstrap.log)"; }
	echo "en_US.UTF-8 UTF-8" >"$tree/etc/locale.gen"
	chroot "$tree" locale-gen >/dev/null
	echo "LANG=en_US.UTF-8" >"$tree/etc/default/locale"
	rm -f "$tree"/var/cache/apt/archives/*.deb
	ls "$tree"/boot/vmlinuz-* "$tree"/boot/initrd.img-* >/dev/null || die "no kernel or initrd in $tree/boot"
	touch "$tree/.e2e-complete"
}


# ---- the guest's own files (rewritten into the tree on every run) ----------

# No DHCP on the lab bridge: eth0 gets its static IPv4 (e2e_ip= on the kernel
# command line) before cloud-init-local runs, so the Ec2 datasource reaches
# 169.254.169.254 from its first stage.  cloud-init writes no network config.
write_guest_net() {
	cat >"$tree/usr/local/sbin/imds-e2e-net" <<'EOF'
#!/bin/sh
ip=$(sed -n 's/.*e2e_ip=\([0-9.]*\).*/\1/p' /proc/cmdline)
ip link set eth0 up
ip addr add "$ip/24" dev eth0
ip route add 169.254.169.254 dev eth0
EOF
	cat >"$tree/etc/systemd/system/imds-e2e-net.service" <<'EOF'
[Unit]
Description=imds e2e: static IPv4 on eth0 before cloud-init
DefaultDependencies=no
Wants=network-pre.target
Before=network-pre.target cloud-init-local.service
BindsTo=sys-subsystem-net-devices-eth0.device
After=sys-subsystem-net-devices-eth0.device

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/imds-e2e-net

[Install]
WantedBy=multi-user.target
EOF
}

# After cloud-final: what cloud-init did, one base64 value a line, on the
# second serial port (the first carries the kernel's and systemd's chatter),
# then power off.
write_guest_report() {
	cat >"$tree/usr/local/sbin/imds-e2e-report" <<'EOF'
#!/bin/sh
b64() { base64 -w 0 "$@" 2>/dev/null; }
cloud-init status --wait >/dev/null 2>&1
{
	echo "IMDS-E2E begin"
	echo "IMDS-E2E status $(cloud-init status --long 2>&1 | b64)"
	echo "IMDS-E2E result $(b64 /run/cloud-init/result.json)"
	echo "IMDS-E2E cloud-id $(cloud-id 2>&1 | b64)"
	echo "IMDS-E2E hostname $(hostname | b64)"
	echo "IMDS-E2E authorized-keys $(b64 /home/debian/.ssh/authorized_keys)"
	echo "IMDS-E2E user-data-ran $(b64 /var/tmp/imds-e2e-user-data)"
	echo "IMDS-E2E host-keys $(ls /etc/ssh/ | grep '^ssh_host_.*_key$' | b64)"
	echo "IMDS-E2E tokens $(grep -c 'Read from http://169.254.169.254/latest/api/token (200' /var/log/cloud-init.log)"
	echo "IMDS-E2E warnings $(grep -E '\[(WARNING|ERROR|CRITICAL)\]' /var/log/cloud-init.log | b64)"
	echo "IMDS-E2E end"
} >/dev/ttyS1
systemctl poweroff --no-block
EOF
	cat >"$tree/etc/systemd/system/imds-e2e-report.service" <<'EOF'
[Unit]
Description=imds e2e: report cloud-init's results and power off
After=cloud-final.service multi-user.target

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/imds-e2e-report

[Install]
WantedBy=multi-user.target
EOF
}

write_guest_cloud_cfg() {
	cat >"$tree/etc/cloud/cloud.cfg.d/90-imds-e2e.cfg" <<'EOF'
# imds e2e: only the Ec2 datasource, so a miss is a failure, not a fallback.
datasource_list: [ Ec2 ]
# The lab bridge has no DHCP: the static config of imds-e2e-net.service stays.
network: {config: disabled}
# The default four host key types cost ~16 s under TCG.
ssh_genkeytypes: [ed25519]
EOF
}

customize_tree() {
	local u
	mkdir -p "$tree/usr/local/sbin" "$tree/etc/systemd/system/multi-user.target.wants"
	write_guest_net
	write_guest_report
	write_guest_cloud_cfg
	chmod 755 "$tree"/usr/local/sbin/imds-e2e-*
	for u in imds-e2e-net imds-e2e-report; do
		ln -sf "/etc/systemd/system/$u.service" "$tree/etc/systemd/system/multi-user.target.wants/$u.service"
	done
	# Without a DHCP client cloud-init-local's Ec2 source skips its DHCP
	# attempt (a minute of DHCPDISCOVER and a warning on a bridge without a
	# DHCP server) and crawls over the static route at once.
	if ! chroot "$tree" dpkg-divert --list /sbin/dhclient | grep -q .; then
		chroot "$tree" dpkg-divert --local --rename --add /sbin/dhclient >/dev/null
	fi
	echo "/dev/vda / ext4 defaults 0 1" >"$tree/etc/fstab"
	# Whatever cloud-init sets must come from imdsd, and every boot is a first.
	echo debootstrapped >"$tree/etc/hostname"
	rm -rf "$tree"/var/lib/cloud/* "$tree"/etc/ssh/ssh_host_*
}

make_image() { # IMAGE
	rm -f "$1"
	mkfs.ext4 -q -F -L root -d "$tree" "$1" 3G >/dev/null || die "mkfs.ext4 -d $tree failed"
}

# ---- the host side: a lab, imdsd, the VM record ----------------------------

vm_json() {
	cat <<EOF
{
  "vms": [
    {
      "instance-id": "$instance_id",
      "mac": "$vm_mac",
      "ipv4": "$vm_ip",
      "options": {"http-tokens": "required"},
      "meta-data": {
        "hostname": "$vm_fqdn",
        "local-hostname": "$vm_fqdn",
        "instance-type": "t3.micro",
        "placement": {"availability-zone": "lab-1a", "region": "lab-1"}
      },
      "public-keys": [{"name": "imds-e2e", "openssh-key": "$vm_key"}],
      "user-data": "#!/bin/sh\\necho '$ud_mark' >/var/tmp/imds-e2e-user-data\\n"
    }
  ]
}
EOF
}

lab_up() {
	"$lab" up "$sfx" 0
	eval "$("$lab" info "$sfx")"
	ip -n "$LAB_HOST_NS" tuntap add dev tap0 mode tap
	ip -n "$LAB_HOST_NS" link set tap0 master "$LAB_BRIDGE"
	ip -n "$LAB_HOST_NS" link set tap0 up
	vm_json >"$run/vms.json"
	"$lab" loadmap "$sfx" load "$run/vms.json" >/dev/null
	"$lab" start-imdsd "$sfx"
}

cleanup() {
	[ -n "${qemu_pid:-}" ] && kill "$qemu_pid" 2>/dev/null
	"$lab" down "$sfx" >/dev/null 2>&1 || true
}

boot() { # IMAGE
	local kernel initrd
	kernel=$(ls "$tree"/boot/vmlinuz-* | head -n 1)
	initrd=$(ls "$tree"/boot/initrd.img-* | head -n 1)
	: >"$run/console.log"
	: >"$run/report.log"
	nsenter --net="/run/netns/$LAB_HOST_NS" qemu-system-x86_64 \
		-accel "$accel" -m 1024 -smp 2 -nodefaults -no-user-config \
		-display none -monitor none -no-reboot \
		-kernel "$kernel" -initrd "$initrd" \
		-append "root=/dev/vda rw console=ttyS0 net.ifnames=0 panic=-1 e2e_ip=$vm_ip" \
		-drive "file=$1,format=raw,if=virtio" \
		-serial "file:$run/console.log" -serial "file:$run/report.log" \
		-smbios "type=1,manufacturer=Amazon EC2,product=t3.micro,serial=$smbios_uuid,uuid=$smbios_uuid" \
		-netdev tap,id=n0,ifname=tap0,script=no,downscript=no \
		-device "virtio-net-pci,netdev=n0,mac=$vm_mac" \
		</dev/null >"$run/qemu.log" 2>&1 &
	qemu_pid=$!
	local waited=0
	while kill -0 "$qemu_pid" 2>/dev/null; do
		if [ "$waited" -ge "$boot_timeout" ]; then
			kill "$qemu_pid"
			wait "$qemu_pid" || true
			qemu_pid=
			tail -n 40 "$run/console.log" >&2
			die "the guest still ran after $boot_timeout s (console: $run/console.log)"
		fi
		sleep 1
		waited=$((waited + 1))
	done
	wait "$qemu_pid" || { cat "$run/qemu.log" >&2; die "QEMU failed"; }
	qemu_pid=
}

# ---- the checks -------------------------------------------------------------

passed=0 failed=0
check() { # NAME COMMAND...
	local name=$1
	shift
	if "$@"; then
		passed=$((passed + 1))
		echo "PASS $name"
	else
		failed=$((failed + 1))
		echo "FAIL $name"
	fi
}

field() { # NAME: the decoded value the guest reported
	sed -n "s/^.*${mark}$1 //p" "$run/report.log" | tr -d '\r' | head -n 1 | base64 -d 2>/dev/null
}

raw_field() { sed -n "s/^.*${mark}$1 //p" "$run/report.log" | tr -d '\r' | head -n 1; }

has_report() { grep -q "${mark}end" "$run/report.log"; }
is_aws() { [ "$(field cloud-id)" = aws ]; }
no_errors() {
	field result | /usr/bin/python3 -c '
import json, sys
v1 = json.load(sys.stdin)["v1"]
print("  datasource:", v1.get("datasource"), "errors:", v1.get("errors"))
sys.exit(0 if v1.get("errors") == [] and "Ec2" in (v1.get("datasource") or "") else 1)'
}
status_done() { field status | grep -q '^status: done'; }
hostname_set() { [ "$(field hostname)" = "$vm_host" ]; }
key_installed() { field authorized-keys | grep -qF "$vm_key"; }
user_data_ran() { [ "$(field user-data-ran)" = "$ud_mark" ]; }
ed25519_only() { [ "$(field host-keys)" = ssh_host_ed25519_key ]; }
used_tokens() { [ "$(raw_field tokens)" -gt 0 ] 2>/dev/null; }
no_warnings() { [ -z "$(field warnings)" ]; }
served_by_data_plane() {
	"$lab" loadmap "$sfx" stats "$instance_id" | awk '$2 == "syn_recorded" && $3 > 0 {ok = 1} END {exit !ok}'
}

preflight() {
	[ "$(id -u)" -eq 0 ] || die "needs root (debootstrap, network namespaces, TAP devices, XDP)"
	command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 missing: scripts/install-deps.sh"
	[ -e /dev/net/tun ] || die "/dev/net/tun is missing: TAP devices cannot be made"
	[ -x "$build/imdsd" ] && [ -x "$build/imds-loadmap" ] || die "$build/imdsd or imds-loadmap missing: run make"
	mkdir -p "$out"
	# One run at a time: they share the tree and the run directory.
	exec 9>"$out/.lock"
	flock -n 9 || die "another e2e-cloudinit.sh runs"
}

main() {
	local img t0 t1
	preflight
	build_tree
	customize_tree
	run=$out/run
	rm -rf "$run"
	mkdir -p "$run"
	img=$run/disk.img
	make_image "$img"
	trap cleanup EXIT
	lab_up
	say "booting the guest ($accel; console: $run/console.log)"
	t0=$(date +%s)
	boot "$img"
	t1=$(date +%s)
	say "the guest powered off after $((t1 - t0)) s"
	check "the guest reported (cloud-final ran)" has_report
	check "cloud-init identified the platform as aws (SMBIOS)" is_aws
	check "cloud-init status: done" status_done
	check "cloud-init result: Ec2 datasource, no errors" no_errors
	check "hostname $vm_host from imdsd" hostname_set
	check "SSH key from imdsd in ~debian/.ssh/authorized_keys" key_installed
	check "user-data from imdsd ran" user_data_ran
	check "only an ed25519 host key was generated" ed25519_only
	check "cloud-init fetched IMDSv2 tokens" used_tokens
	check "cloud-init.log has no warning or error" no_warnings
	check "the guest's connections were verified by the data plane" served_by_data_plane
	if [ -n "$(field warnings)" ]; then
		echo "cloud-init.log warnings:"
		field warnings | sed 's/^/  /'
	fi
	[ "$failed" -eq 0 ] || field status | sed 's/^/  /'
	echo "$passed passed, $failed failed"
	[ "$failed" -eq 0 ]
}

case "${1:-}" in
build) preflight; build_tree ;;
"") main ;;
*) echo "usage: e2e-cloudinit.sh [build]" >&2; exit 2 ;;
esac

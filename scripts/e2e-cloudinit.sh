#!/usr/bin/env bash
# e2e-cloudinit.sh: `make e2e-cloudinit` (docs/e2e.md).  A real Debian
# bookworm guest with Debian's cloud-init boots under QEMU on a TAP port of a
# lab bridge served by imdsd, takes the EC2 identity from SMBIOS, and must
# get its hostname, SSH key and user-data from imdsd over IMDSv2 (the VM
# requires tokens) with cloud-init reporting no error.
#
#   e2e-cloudinit.sh            build what is missing, boot, check: the guest
#                               is dual-stack, cloud-init takes its data from
#                               169.254.169.254 (its first default URL)
#   e2e-cloudinit.sh ipv6       the same, but cloud-init's only metadata URL
#                               is http://[fd00:ec2::254] (docs/ipv6.md)
#   e2e-cloudinit.sh libvirt    the same guest as a libvirt domain: the imds
#                               hook loads and pins it, its SMBIOS is the
#                               block of `imds-loadmap sysinfo`
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
# Its IPv6 and the bridge's (as in tests/e2e/test_qemu_guests.py); empty in
# the libvirt mode, whose guest is IPv4-only.
vm_ip6=2001:db8:77::11
host_ip6=2001:db8:77::1
imds4=http://169.254.169.254
imds6='http://[fd00:ec2::254]'
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
# command line), and with e2e_ip6= its IPv6 and an on-link route to
# fd00:ec2::254, before cloud-init-local runs, so the Ec2 datasource reaches
# both service addresses from its first stage.  cloud-init writes no network
# config: from IMDS it would render DHCPv4 and DHCPv6 (docs/ipv6.md).
write_guest_net() {
	cat >"$tree/usr/local/sbin/imds-e2e-net" <<'EOF'
#!/bin/sh
ip=$(sed -n 's/.*e2e_ip=\([0-9.]*\).*/\1/p' /proc/cmdline)
ip6=$(sed -n 's/.*e2e_ip6=\([0-9a-f:]*\).*/\1/p' /proc/cmdline)
ip link set eth0 up
ip addr add "$ip/24" dev eth0
ip route add 169.254.169.254 dev eth0
[ -n "$ip6" ] || exit 0
ip -6 addr add "$ip6/64" dev eth0 nodad
ip -6 route add fd00:ec2::254 dev eth0
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
	echo "IMDS-E2E source $(grep -o "Using metadata source: '[^']*'" /var/log/cloud-init.log | b64)"
	for a in 4:169.254.169.254 6:[fd00:ec2::254]; do
		echo "IMDS-E2E tokens${a%%:*} $(grep -cF "Read from http://${a#*:}/latest/api/token (200" /var/log/cloud-init.log)"
		echo "IMDS-E2E reads${a%%:*} $(grep -cF "Read from http://${a#*:}/" /var/log/cloud-init.log)"
	done
	echo "IMDS-E2E both-addresses $(b64 /var/tmp/imds-e2e-both-addresses)"
	echo "IMDS-E2E net-from-imds $(/usr/local/sbin/imds-e2e-netcfg 2>&1 | b64)"
	echo "IMDS-E2E dmi $(cat /sys/class/dmi/id/product_uuid /sys/class/dmi/id/product_serial 2>&1 | b64)"
	echo "IMDS-E2E warnings $(grep -E '\[(WARNING|ERROR|CRITICAL)\]' /var/log/cloud-init.log | b64)"
	echo "IMDS-E2E end"
} >/dev/ttyS1
# e2e_stay=1: the host looks at the running VM, then ends it.
grep -q 'e2e_stay=1' /proc/cmdline || systemctl poweroff --no-block
EOF
	# The network config cloud-init would render from IMDS (it is disabled).
	cat >"$tree/usr/local/sbin/imds-e2e-netcfg" <<'EOF'
#!/usr/bin/python3
import json
from cloudinit.sources.DataSourceEc2 import convert_ec2_metadata_network_config
with open("/run/cloud-init/instance-data.json") as f:
    ds = json.load(f)["ds"]
network = (ds.get("meta-data") or ds["meta_data"])["network"]
print(json.dumps(convert_ec2_metadata_network_config(network), sort_keys=True))
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
	local v6only=$tree/etc/cloud/cloud.cfg.d/91-imds-e2e-ipv6.cfg
	cat >"$tree/etc/cloud/cloud.cfg.d/90-imds-e2e.cfg" <<'EOF'
# imds e2e: only the Ec2 datasource, so a miss is a failure, not a fallback.
datasource_list: [ Ec2 ]
# The lab bridge has no DHCP: the static config of imds-e2e-net.service stays.
network: {config: disabled}
# The default four host key types cost ~16 s under TCG.
ssh_genkeytypes: [ed25519]
EOF
	rm -f "$v6only"
	[ "$mode" = ipv6 ] || return 0
	cat >"$v6only" <<EOF
# imds e2e, ipv6 mode: the Ec2 datasource's only metadata URL is IPv6
# (its default list starts with $imds4, which it would take).
datasource:
  Ec2:
    metadata_urls: ["$imds6"]
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

# The VM's record (docs/vm-schema.md), pinned to PORT if given.  Without
# MAC and PORT for a libvirt domain, whose hook takes both from its
# interface.
vm_record() { # [MAC [PORT]]
	local mac_field='' ip6_field=''
	[ -z "${1:-}" ] || mac_field="\"mac\": \"$1\", "
	[ -z "${2:-}" ] || mac_field+="\"port\": \"$2\", "
	[ -z "$vm_ip6" ] || ip6_field=", \"ipv6\": [\"$vm_ip6\"]"
	cat <<EOF
{
  "instance-id": "$instance_id",
  ${mac_field}"ipv4": "$vm_ip"$ip6_field,
  "options": {"http-tokens": "required"},
  "meta-data": {
    "hostname": "$vm_fqdn",
    "local-hostname": "$vm_fqdn",
    "instance-type": "t3.micro",
    "placement": {"availability-zone": "lab-1a", "region": "lab-1"}
  },
  "public-keys": [{"name": "imds-e2e", "openssh-key": "$vm_key"}],
  "user-data": $(user_data | /usr/bin/python3 -c 'import json, sys; print(json.dumps(sys.stdin.read()))')
}
EOF
}

# The user-data script: marks that it ran, then asks both service addresses
# with and without an IMDSv2 token, one line each (the report's
# both-addresses).  Any interpreter runs, cloud-init execs the #! line.
# Not without a token in the libvirt mode, whose capture checks that the
# guest sent no tokenless request.
user_data() {
	local tokenless=True
	[ "$mode" != libvirt ] || tokenless=False
	cat <<EOF
#!/usr/bin/python3
import urllib.error, urllib.request
with open("/var/tmp/imds-e2e-user-data", "w") as f:
    f.write("$ud_mark\\n")

def ask(base, path, method="GET", **headers):
    req = urllib.request.Request(base + path, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, ""
    except OSError as e:
        return "error", str(e).replace(" ", "_")

with open("/var/tmp/imds-e2e-both-addresses", "w") as f:
    for base in ("$imds4", "$imds6"):
        tokenless, _ = ask(base, "/latest/meta-data/instance-id") if $tokenless else ("skipped", "")
        code, token = ask(base, "/latest/api/token", "PUT", **{"X-aws-ec2-metadata-token-ttl-seconds": "60"})
        iid = ask(base, "/latest/meta-data/instance-id", **{"X-aws-ec2-metadata-token": token}) \\
            if code == 200 else ("no-token", "")
        f.write(f"{base} tokenless={tokenless} token={code}:{len(token)} instance-id={iid[0]}:{iid[1]}\\n")
EOF
}

vm_json() { # [PORT]
	printf '{"vms": [\n%s\n]}\n' "$(vm_record "$vm_mac" "${1:-}")"
}

lab_up() {
	"$lab" up "$sfx" 0
	eval "$("$lab" info "$sfx")"
	ip -n "$LAB_HOST_NS" tuntap add dev tap0 mode tap
	ip -n "$LAB_HOST_NS" link set tap0 master "$LAB_BRIDGE"
	ip -n "$LAB_HOST_NS" link set tap0 up
	# The host routes replies to the guest's IPv6 through its on-link prefix.
	ip -n "$LAB_HOST_NS" -6 addr add "$host_ip6/64" dev "$LAB_BRIDGE" nodad
	vm_json tap0 >"$run/vms.json"
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
		-append "root=/dev/vda rw console=ttyS0 net.ifnames=0 panic=-1 e2e_ip=$vm_ip e2e_ip6=$vm_ip6" \
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

# ---- libvirt mode: the guest as a domain the imds hook loads and pins ------
#
# The same guest and record, but nothing is loaded by hand: the record is
# the domain's <imds:vm> metadata (without its MAC, which the hook takes
# from the interface), the hook loads it at `started` pinned to the tap
# libvirt made, and deletes it at `release`.  The domain's <uuid>, <sysinfo>
# and <os><smbios> are the lines `imds-loadmap sysinfo` prints, nothing
# written by hand.  The guest stays up after its report (e2e_stay=1) so the
# VM can be looked at while it runs; then it is destroyed.  Its HTTP traffic
# is captured on its tap: imdsd keeps no per-VM count of requests with and
# without tokens, the wire shows what it was asked and what it answered.

lv_domain=imds-e2e-ci-$$
tcpdump_pid=

# sysinfo names a loaded VM: the record is loaded (not pinned, so not
# served) just long enough to ask, then deleted; the hook loads it for real.
lv_sysinfo() {
	vm_json >"$run/vms.json"
	"$lab" loadmap "$sfx" load "$run/vms.json" >/dev/null
	"$lab" loadmap "$sfx" sysinfo "$instance_id" t3.micro >"$run/sysinfo.xml"
	"$lab" loadmap "$sfx" delete "$instance_id" >/dev/null
	sysinfo_uuid=$(sed -n 's:^<uuid>\(.*\)</uuid>$:\1:p' "$run/sysinfo.xml")
	[ -n "$sysinfo_uuid" ] || die "no <uuid> in the output of imds-loadmap sysinfo"
}

lv_domain_xml() {
	local kernel initrd type=qemu
	[ "$accel" != kvm ] || type=kvm
	kernel=$(ls "$tree"/boot/vmlinuz-* | head -n 1)
	initrd=$(ls "$tree"/boot/initrd.img-* | head -n 1)
	cat <<EOF
<domain type='$type'>
  <name>$lv_domain</name>
$(sed -n '/^<uuid>/p; /^<sysinfo /,/^<\/sysinfo>/p' "$run/sysinfo.xml")
  <memory unit='MiB'>1024</memory>
  <vcpu>2</vcpu>
  <metadata>
    <imds:vm xmlns:imds="urn:imds:libvirt:v1"><![CDATA[
$(vm_record)
    ]]></imds:vm>
  </metadata>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>$kernel</kernel>
    <initrd>$initrd</initrd>
    <cmdline>root=/dev/vda rw console=ttyS0 net.ifnames=0 panic=-1 e2e_ip=$vm_ip e2e_stay=1</cmdline>
    $(grep -o "<smbios mode='sysinfo'/>" "$run/sysinfo.xml")
  </os>
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file='$run/disk.img'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <interface type='bridge'>
      <mac address='$vm_mac'/>
      <source bridge='$LAB_BRIDGE'/>
      <model type='virtio'/>
    </interface>
    <serial type='file'><source path='$run/console.log'/><target port='0'/></serial>
    <serial type='file'><source path='$run/report.log'/><target port='1'/></serial>
    <memballoon model='none'/>
  </devices>
  <!-- QEMU as root: the image and the tree's kernel stay where they are -->
  <seclabel type='static' model='dac' relabel='no'><label>+0:+0</label></seclabel>
</domain>
EOF
}

lv_up() {
	"$lab" up "$sfx" 0
	eval "$("$lab" info "$sfx")"
	"$lab" start-imdsd "$sfx"
	lv_sysinfo
	lv_domain_xml >"$run/domain.xml"
	lvlab_install_hook "$build/imds-libvirt-hook" "$build/imds-loadmap" "$LAB_PIN_DIR" "$LAB_BRIDGE" "$run"
	lvlab_start "$LAB_HOST_NS" "$run" || die "libvirtd did not start"
}

cleanup_libvirt() {
	[ -z "$tcpdump_pid" ] || kill "$tcpdump_pid" 2>/dev/null
	lvlab_cleanup
	"$lab" down "$sfx" >/dev/null 2>&1 || true
}

# The capture starts before the guest's first instruction: the domain starts
# paused (the hook has run, the tap exists), resumes once tcpdump listens.
lv_capture() { # TAP
	local i
	nsenter --net="/run/netns/$LAB_HOST_NS" tcpdump -i "$1" -U -Z root -w "$run/guest.pcap" 'tcp port 80' \
		</dev/null >/dev/null 2>"$run/tcpdump.log" &
	tcpdump_pid=$!
	for ((i = 0; i < 100; i++)); do
		grep -qs 'listening on' "$run/tcpdump.log" && return 0
		sleep 0.1
	done
	die "tcpdump on $1 did not start: $(cat "$run/tcpdump.log")"
}

lv_stop_capture() {
	kill -INT "$tcpdump_pid" 2>/dev/null || true
	wait "$tcpdump_pid" || true
	tcpdump_pid=
	python3 "$root/scripts/pcap-http.py" "$run/guest.pcap" >"$run/http.txt"
}

lv_wait_report() {
	local waited=0
	until grep -q "${mark}end" "$run/report.log" 2>/dev/null; do
		[ "$(lvlab_virsh domstate "$lv_domain")" = running ] || { tail -n 40 "$run/console.log" >&2; die "the domain stopped before the guest reported"; }
		if [ "$waited" -ge "$boot_timeout" ]; then
			tail -n 40 "$run/console.log" >&2
			die "no report after $boot_timeout s (console: $run/console.log)"
		fi
		sleep 1
		waited=$((waited + 1))
	done
}

lv_boot() {
	: >"$run/console.log"
	: >"$run/report.log"
	lvlab_define "$lv_domain" "$run/domain.xml"
	lvlab_virsh start --paused "$lv_domain" >/dev/null
	tap=$(lvlab_tap "$lv_domain")
	[ -n "$tap" ] || die "the domain has no vnet interface"
	"$lab" loadmap "$sfx" list >"$run/list-started.txt"
	lv_capture "$tap"
	lvlab_virsh resume "$lv_domain" >/dev/null
	lv_wait_report
	# What the operator sees while the VM runs, then the end of it.
	"$lab" loadmap "$sfx" list >"$run/list.txt"
	"$lab" loadmap "$sfx" stats "$instance_id" >"$run/stats.txt"
	lv_stop_capture
	lvlab_virsh destroy "$lv_domain" >/dev/null
	"$lab" loadmap "$sfx" list >"$run/list-destroyed.txt"
}

lv_list_row() { awk -v id="$instance_id" '$1 == id' "$1"; }
lv_pinned() { # LIST-FILE: pinned to the domain's tap
	lv_list_row "$1" | awk -v tap="$tap" -v mac="$vm_mac" -v ip="$vm_ip" \
		'$2 == mac && $3 == ip && $5 == tap && $6 == "pinned" && $7 == "required" {ok = 1} END {exit !ok}'
}
lv_pinned_at_start() { lv_pinned "$run/list-started.txt"; }
lv_pinned_running() { lv_pinned "$run/list.txt"; }
lv_removed() { [ -z "$(lv_list_row "$run/list-destroyed.txt")" ]; }
lv_dmi_is_sysinfo() { [ "$(field dmi | tr 'A-F\n' 'a-f ')" = "$sysinfo_uuid $sysinfo_uuid " ]; }
lv_data_plane() {
	awk '$2 == "syn_recorded" && $3 > 0 {syn = 1} $2 ~ /^drop_/ {drop = 1} END {exit !(syn && !drop)}' "$run/stats.txt"
}
lv_token_requests() {
	awk '/^request PUT \/latest\/api\/token / {n++} END {exit !(n > 0)}' "$run/http.txt"
}
lv_no_tokenless() {
	awk '/^request / && !/^request PUT \/latest\/api\/token / && /token=no$/ {bad++} /^request / {n++}
		END {exit !(n > 0 && bad == 0)}' "$run/http.txt"
}
lv_no_401() { ! grep -qE '^response (401|403)$' "$run/http.txt"; }

lv_summary() {
	echo "  imds-loadmap list (running):"
	sed 's/^/    /' "$run/list.txt"
	echo "  imds-loadmap stats $instance_id:"
	sed 's/^/    /' "$run/stats.txt"
	echo "  on the wire ($tap): $(grep -c '^request ' "$run/http.txt") requests:" \
		"$(grep -c '^request PUT /latest/api/token ' "$run/http.txt") token PUTs," \
		"$(grep -c '^request .* token=yes$' "$run/http.txt") with a token," \
		"$(grep -v '^request PUT /latest/api/token ' "$run/http.txt" | grep -c '^request .* token=no$') tokenless;" \
		"answers: $(sed -n 's/^response //p' "$run/http.txt" | sort | uniq -c | awk '{printf "%s%s x%s", sep, $2, $1; sep = ", "}')"
}

lv_checks() {
	check "the domain's SMBIOS is imds-loadmap sysinfo's (guest DMI uuid = serial = $sysinfo_uuid)" lv_dmi_is_sysinfo
	check "the hook loaded the VM at start, pinned to $tap" lv_pinned_at_start
	check "imds-loadmap list: pinned to $tap while the guest ran" lv_pinned_running
	check "imds-loadmap stats: SYNs recorded, nothing dropped" lv_data_plane
	check "on the wire: the guest asked for IMDSv2 tokens (PUT /latest/api/token)" lv_token_requests
	check "on the wire: every other request carried the token (none tokenless)" lv_no_tokenless
	check "on the wire: imdsd answered no 401 or 403" lv_no_401
	check "virsh destroy: the hook deleted the VM" lv_removed
	lv_summary
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
# cloud-init's own requests: a token from the address it chose, nothing
# from the other; `Using metadata source` names it.
used_tokens() { [ "$(raw_field "tokens$1")" -gt 0 ] 2>/dev/null; }
read_none_from() { [ "$(raw_field "reads$1")" = 0 ]; }
chose_source() { [ "$(field source)" = "Using metadata source: '$1'" ]; }
# The user-data's line for BASE: 401 without a token (not asked in the
# libvirt mode), then a token and the VM's instance-id with it.
user_data_reached() { # BASE
	local tokenless=401
	[ "$mode" != libvirt ] || tokenless=skipped
	field both-addresses | grep -qxF "$1 tokenless=$tokenless token=200:56 instance-id=200:$instance_id"
}
no_warnings() { [ -z "$(field warnings)" ]; }
served_by_data_plane() {
	"$lab" loadmap "$sfx" stats "$instance_id" >"$run/stats.txt"
	awk '$2 == "syn_recorded" && $3 > 0 {ok = 1} END {exit !ok}' "$run/stats.txt"
}
nothing_dropped() { ! awk '$2 ~ /^drop_/ && $3 > 0 {bad = 1} END {exit !bad}' "$run/stats.txt"; }

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

preflight_libvirt() {
	local why
	why=$(lvlab_why_not) || die "$why"
	[ -x "$build/imds-libvirt-hook" ] || die "$build/imds-libvirt-hook missing: run make"
	command -v tcpdump >/dev/null || die "tcpdump missing: scripts/install-deps.sh"
}

# The tree, then this run's directory (RUN) and its fresh image.
prepare_run() { # RUN
	preflight
	build_tree
	customize_tree
	run=$out/$1
	rm -rf "$run"
	mkdir -p "$run"
	make_image "$run/disk.img"
}

guest_checks() {
	check "the guest reported (cloud-final ran)" has_report
	check "cloud-init identified the platform as aws (SMBIOS)" is_aws
	check "cloud-init status: done" status_done
	check "cloud-init result: Ec2 datasource, no errors" no_errors
	check "hostname $vm_host from imdsd" hostname_set
	check "SSH key from imdsd in ~debian/.ssh/authorized_keys" key_installed
	check "user-data from imdsd ran" user_data_ran
	check "only an ed25519 host key was generated" ed25519_only
	check "cloud-init.log has no warning or error" no_warnings
	if [ "$mode" = ipv6 ]; then
		check "cloud-init used $imds6 (its only metadata URL)" chose_source "$imds6"
		check "cloud-init fetched IMDSv2 tokens from $imds6" used_tokens 6
		check "cloud-init read nothing from $imds4" read_none_from 4
	else
		check "cloud-init used $imds4 (its first default URL)" chose_source "$imds4"
		check "cloud-init fetched IMDSv2 tokens from $imds4" used_tokens 4
	fi
	local what="401 without a token, its instance-id with one"
	[ "$mode" != libvirt ] || what="its instance-id with a token"
	check "user-data over $imds4: $what" user_data_reached "$imds4"
	[ -z "$vm_ip6" ] || check "user-data over $imds6: $what" user_data_reached "$imds6"
}

# What the guest saw and what cloud-init would have done with the network.
guest_summary() {
	echo "  cloud-init: $(field source); token replies: $(raw_field tokens4) from $imds4," \
		"$(raw_field tokens6) from $imds6; reads: $(raw_field reads4) and $(raw_field reads6)"
	echo "  user-data, IMDSv2 over both addresses:"
	field both-addresses | sed 's/^/    /'
	echo "  network config cloud-init would render from IMDS (disabled here):"
	echo "    $(field net-from-imds)"
}

finish() {
	if [ -n "$(field warnings)" ]; then
		echo "cloud-init.log warnings:"
		field warnings | sed 's/^/  /'
	fi
	[ "$failed" -eq 0 ] || field status | sed 's/^/  /'
	echo "$passed passed, $failed failed"
	[ "$failed" -eq 0 ]
}

main() {
	local t0 t1 dir=run
	[ "$mode" = default ] || dir=run-$mode
	prepare_run "$dir"
	trap cleanup EXIT
	lab_up
	say "booting the guest ($accel; console: $run/console.log)"
	t0=$(date +%s)
	boot "$run/disk.img"
	t1=$(date +%s)
	say "the guest powered off after $((t1 - t0)) s"
	guest_checks
	check "the guest's connections were verified by the data plane" served_by_data_plane
	check "imds-loadmap stats: no drop_* counter grew" nothing_dropped
	guest_summary
	sed 's/^/    /' "$run/stats.txt"
	finish
}

main_libvirt() {
	local t0 t1
	# shellcheck source=scripts/libvirt-lab.sh
	. "$root/scripts/libvirt-lab.sh"
	preflight_libvirt
	prepare_run run-libvirt
	trap cleanup_libvirt EXIT
	lv_up
	say "starting domain $lv_domain ($accel; console: $run/console.log)"
	t0=$(date +%s)
	lv_boot
	t1=$(date +%s)
	say "the guest reported after $((t1 - t0)) s; destroyed"
	guest_checks
	lv_checks
	guest_summary
	finish
}

mode=${1:-default}
case "$mode" in
build) preflight; build_tree ;;
libvirt) vm_ip6=''; main_libvirt ;;
default | ipv6) main ;;
*) echo "usage: e2e-cloudinit.sh [build|ipv6|libvirt]" >&2; exit 2 ;;
esac

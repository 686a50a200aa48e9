#!/bin/busybox sh
# /init of the e2e guest's initramfs (built by scripts/e2e-guest.sh).
#
# Brings eth0 up with the addresses given on the kernel command line, asks
# http://169.254.169.254/ for an IMDSv2 token and then for this VM's data,
# prints every answer on the serial console between markers, and powers off.
#
# Kernel command line (parameters without dots: the kernel keeps dotted ones
# for modules):
#   e2e_ip=A.B.C.D      IPv4 (/24) of eth0
#   e2e_mac=MAC         optional: replace the MAC QEMU gave eth0 (spoofing)
#   e2e_wait=SEC        per-request time limit (default 10)
#   e2e_ip6=ADDR        optional: also an IPv6 (/64) on eth0 and the on-link
#                       route to fd00:ec2::254 (docs/ipv6.md): the guest is
#                       dual-stack and asks over IPv6 too
#
# Output, one line each, bodies in base64 so any byte survives the console:
#   IMDS-E2E begin
#   IMDS-E2E eth0 MAC IPV4
#   IMDS-E2E notoken STATUS-LINE     (a GET without a token, raw HTTP)
#   IMDS-E2E token RC BASE64
#   IMDS-E2E get NAME RC BASE64      (for each path below, with the token)
#   IMDS-E2E token6 RC BASE64        (with e2e_ip6: a token over IPv6)
#   IMDS-E2E get6 NAME RC BASE64     (with e2e_ip6: instance-id and user-data
#                                     over IPv6, with that token)
#   IMDS-E2E end
# busybox 1.35's `wget -T` crashes, so every request runs under `timeout`;
# its wget cannot send PUT, so the token request is raw HTTP through nc.

/bin/busybox mkdir -p /proc /sys /dev /tmp
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs devtmpfs /dev
/bin/busybox --install -s /bin
export PATH=/bin
exec >/dev/console 2>&1 </dev/null

say() { echo "IMDS-E2E $*"; }
die() { say "error $*"; say end; poweroff -f; }

arg() { # NAME DEFAULT: value of NAME= on the kernel command line
	local a
	for a in $(cat /proc/cmdline); do
		case "$a" in "$1"=*) echo "${a#*=}"; return ;; esac
	done
	echo "$2"
}

# In dependency order (scripts/e2e-guest.sh resolved it from each module's
# depends= field): virtio_ring before virtio, ..., virtio_net last.
for m in $(cat /lib/modules/order); do
	insmod "/lib/modules/$m.ko" || die "insmod $m failed"
done

ip=$(arg e2e_ip "")
ip6=$(arg e2e_ip6 "")
imds6=fd00:ec2::254
mac=$(arg e2e_mac "")
wait=$(arg e2e_wait 10)
imds=169.254.169.254
[ -n "$ip" ] || die "no e2e_ip= on the kernel command line"

i=0
while [ ! -e /sys/class/net/eth0 ]; do
	i=$((i + 1))
	[ "$i" -gt 100 ] && die "no eth0 after 10 s"
	sleep 0.1
done
ip link set lo up
[ -n "$mac" ] && { ip link set eth0 address "$mac" || die "cannot set MAC $mac"; }
ip addr add "$ip/24" dev eth0 || die "cannot add $ip"
ip link set eth0 up
ip route add "$imds" dev eth0
if [ -n "$ip6" ]; then
	# No duplicate address detection: the address is usable at once.
	echo 0 >/proc/sys/net/ipv6/conf/eth0/accept_dad
	ip -6 addr add "$ip6/64" dev eth0 || die "cannot add $ip6"
	ip -6 route add "$imds6" dev eth0 || die "cannot route $imds6"
fi

say begin
say eth0 "$(cat /sys/class/net/eth0/address)" "$ip"

# raw HTTP over nc to $to (default 169.254.169.254); prints the whole reply
raw() { # REQUEST-LINE [HEADER...]
	local dst="${to:-$imds}" host req h
	host=$dst
	case "$dst" in *:*) host="[$dst]" ;; esac
	req="$1\r\nHost: $host\r\n"
	shift
	for h in "$@"; do req="$req$h\r\n"; done
	printf "$req\r\n" | timeout "$wait" nc "$dst" 80
}

# A token: "RC TOKEN" from a PUT to $to
put_token() {
	local reply rc
	reply=$(raw "PUT /latest/api/token HTTP/1.1" "X-aws-ec2-metadata-token-ttl-seconds: 300" "Connection: close")
	rc=$?
	case "$reply" in "HTTP/1.1 200"*) ;; *) rc=1 ;; esac
	# the body is what follows the first empty (CRLF) line
	echo "$rc $(echo "$reply" | tr -d '\r' | sed '1,/^$/d')"
}

status=$(raw "GET /latest/meta-data/instance-id HTTP/1.0" | head -n 1 | tr -d '\r')
say notoken "${status:-none}"

set -- $(put_token)
rc=$1 token=${2:-}
say token "$rc" "$(printf %s "$token" | base64 -w 0)"

get() { # NAME PATH [KIND HOST]: KIND get6 and HOST [fd00:ec2::254] over IPv6
	local out=/tmp/body rc
	rm -f "$out"
	timeout "$wait" wget -q -O "$out" --header "X-aws-ec2-metadata-token: $token" "http://${4:-$imds}$2"
	rc=$?
	say "${3:-get}" "$1" "$rc" "$(cat "$out" 2>/dev/null | base64 -w 0)"
}

get instance-id /latest/meta-data/instance-id
get hostname /latest/meta-data/hostname
get public-keys /latest/meta-data/public-keys/
get openssh-key /latest/meta-data/public-keys/0/openssh-key
get user-data /latest/user-data
if [ -n "$ip6" ]; then
	set -- $(to=$imds6 put_token)
	rc=$1 token=${2:-}
	say token6 "$rc" "$(printf %s "$token" | base64 -w 0)"
	get instance-id /latest/meta-data/instance-id get6 "[$imds6]"
	get user-data /latest/user-data get6 "[$imds6]"
fi
say end
poweroff -f

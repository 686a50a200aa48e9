#!/usr/bin/python3
"""hostile6.py: what a guest with root sends over IPv6 to get another VM's
metadata or steer its traffic (test_ipv6.py), run inside a VM's namespace
with `ip netns exec`.  Prints one JSON object on stdout.

  hostile6.py syn --src-mac M --src-ip A --dst-mac D --first-port P --count N --listen S
      Sends N TCP SYNs to [fd00:ec2::254]:80 from A, ports P.., with M as
      Ethernet source, and reports every segment from [fd00:ec2::254]:80 to
      those ports seen on eth0 within S seconds.
  hostile6.py na --src-mac M --src-ip A --target T --count N
      Sends N unsolicited Neighbour Advertisements (override set) to
      ff02::1 saying "T is at M".
  hostile6.py ra --src-mac M --count N
      Sends N Router Advertisements from M's link-local address, offering
      itself as default router with prefix 2001:db8:bad::/64.
  hostile6.py sniff --seconds S (--ip-src A --ip-dst B | --ra)
      Prints "ready", then reports the IPv6 packets from A to B, or the
      Router Advertisements, seen on eth0 in promiscuous mode within S
      seconds: run it in the VM that must not see them.
"""

import argparse
import json
import time

from scapy.all import (TCP, Ether, ICMPv6NDOptPrefixInfo, ICMPv6NDOptSrcLLAddr,
                       ICMPv6NDOptDstLLAddr, ICMPv6ND_NA, ICMPv6ND_RA, IPv6, conf, sendp)
from scapy.utils6 import in6_mactoifaceid
from scapytool import add_syn_options, collect, sniff_for, start_sniffer, syn_ports

IMDS6 = "fd00:ec2::254"


def cmd_syn(a):
    ports = syn_ports(a)

    def ours(p):
        return (IPv6 in p and TCP in p and p[IPv6].src == IMDS6 and p[TCP].sport == 80
                and p[TCP].dport in ports)

    sniffer = start_sniffer(ours)
    for port in ports:
        sendp(Ether(src=a.src_mac, dst=a.dst_mac) / IPv6(src=a.src_ip, dst=IMDS6) /
              TCP(sport=port, dport=80, flags="S", seq=1000), iface="eth0", verbose=False)
    got = collect(sniffer, a.listen)
    return {"sent": a.count, "replies": [{"dst": p[IPv6].dst, "flags": str(p[TCP].flags)} for p in got]}


def cmd_na(a):
    frame = (Ether(src=a.src_mac, dst="33:33:00:00:00:01") / IPv6(src=a.src_ip, dst="ff02::1", hlim=255) /
             ICMPv6ND_NA(tgt=a.target, R=0, S=0, O=1) / ICMPv6NDOptDstLLAddr(lladdr=a.src_mac))
    for _ in range(a.count):
        sendp(frame, iface="eth0", verbose=False)
        time.sleep(0.05)
    return {"sent": a.count}


def cmd_ra(a):
    link_local = "fe80::" + in6_mactoifaceid(a.src_mac)
    frame = (Ether(src=a.src_mac, dst="33:33:00:00:00:01") / IPv6(src=link_local, dst="ff02::1", hlim=255) /
             ICMPv6ND_RA(routerlifetime=1800) / ICMPv6NDOptSrcLLAddr(lladdr=a.src_mac) /
             ICMPv6NDOptPrefixInfo(prefix="2001:db8:bad::", prefixlen=64))
    for _ in range(a.count):
        sendp(frame, iface="eth0", verbose=False)
        time.sleep(0.05)
    return {"sent": a.count}


def cmd_sniff(a):
    if a.ra:
        def match(p):
            return ICMPv6ND_RA in p
    else:
        def match(p):
            return IPv6 in p and p[IPv6].src == a.ip_src and p[IPv6].dst == a.ip_dst
    got = sniff_for(match, a.seconds)
    return {"seen": [p.summary() for p in got]}


def main():
    conf.verb = 0
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    add_syn_options(sub.add_parser("syn"))
    n = sub.add_parser("na")
    n.add_argument("--src-mac", required=True)
    n.add_argument("--src-ip", required=True)
    n.add_argument("--target", required=True)
    n.add_argument("--count", type=int, default=3)
    r = sub.add_parser("ra")
    r.add_argument("--src-mac", required=True)
    r.add_argument("--count", type=int, default=3)
    f = sub.add_parser("sniff")
    f.add_argument("--seconds", type=float, required=True)
    f.add_argument("--ip-src")
    f.add_argument("--ip-dst")
    f.add_argument("--ra", action="store_true")
    a = ap.parse_args()
    out = {"syn": cmd_syn, "na": cmd_na, "ra": cmd_ra, "sniff": cmd_sniff}[a.cmd](a)
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()

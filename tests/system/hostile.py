#!/usr/bin/python3
"""hostile.py: what a guest with root sends to hijack or get around the
metadata service (test_hostile.py), run inside a VM's namespace with `ip
netns exec`.  Prints one JSON object on stdout.

  hostile.py arp --op OP --dst-mac D --hwsrc M --psrc A --pdst B [--hwdst H] [--count N]
      Sends N ARP packets (OP "request" or "reply") from this VM's eth0,
      with M as Ethernet source and sender hardware address.
  hostile.py tagged-syn --src-mac M --src-ip A --dst-mac D --first-port P --tags T --count N --listen S
      Sends N TCP SYNs to 169.254.169.254:80 from ports P.. in VLAN tags T
      (outermost first, "ad:5" for an 802.1ad tag, "5" for 802.1Q), and
      reports every segment from 169.254.169.254:80 to those ports seen on
      eth0 within S seconds.
  hostile.py echo --dst A --dst-mac D --count N --listen S
      Sends N ICMP echo requests to A from this VM's own address and
      reports the echo replies from A seen within S seconds.
  hostile.py sniff --seconds S (--ip-src A --ip-dst B | --arp-psrc A [--not-hwsrc M])
      Prints "ready", then reports the IPv4 packets from A to B (any
      protocol), or the ARP packets whose sender address is A (and whose
      sender MAC is not M), seen on eth0 in promiscuous mode within S
      seconds: run it in the VM that must not see them.
"""

import argparse
import json
import random
import sys

from scapy.all import ARP, ICMP, IP, TCP, Dot1AD, Dot1Q, Ether, conf, get_if_addr, get_if_hwaddr, sendp
from scapytool import add_syn_options, collect, sniff_for, start_sniffer, syn_ports

IMDS = "169.254.169.254"


def describe(pkt):
    if ARP in pkt:
        a = pkt[ARP]
        return {"arp": a.op, "hwsrc": a.hwsrc, "psrc": a.psrc, "pdst": a.pdst, "eth_src": pkt[Ether].src}
    out = {"src": pkt[IP].src, "dst": pkt[IP].dst, "proto": pkt[IP].proto, "dst_mac": pkt[Ether].dst}
    if TCP in pkt:
        out.update(sport=pkt[TCP].sport, dport=pkt[TCP].dport, flags=str(pkt[TCP].flags))
    return out


def tags(spec):
    """"ad:5,0" -> Dot1AD(vlan=5)/Dot1Q(vlan=0) (outermost first)."""
    layers = None
    for t in spec.split(","):
        kind, _, vid = t.rpartition(":")
        layer = (Dot1AD if kind == "ad" else Dot1Q)(vlan=int(vid))
        layers = layer if layers is None else layers / layer
    return layers


def cmd_arp(a):
    op = {"request": 1, "reply": 2}[a.op]
    frame = Ether(src=a.hwsrc, dst=a.dst_mac) / ARP(op=op, hwsrc=a.hwsrc, psrc=a.psrc, pdst=a.pdst, hwdst=a.hwdst)
    sendp([frame] * a.count, iface="eth0", verbose=False, inter=0.05)
    json.dump({"sent": a.count}, sys.stdout)


def cmd_tagged_syn(a):
    ports = syn_ports(a)
    sniffer = start_sniffer(lambda p: IP in p and TCP in p and p[IP].src == IMDS and p[TCP].dport in ports)
    frames = [Ether(src=a.src_mac, dst=a.dst_mac) / tags(a.tags) / IP(src=a.src_ip, dst=IMDS, ttl=64) /
              TCP(sport=port, dport=80, flags="S", seq=random.getrandbits(32), window=64240)
              for port in ports]
    sendp(frames, iface="eth0", verbose=False)
    pkts = collect(sniffer, a.listen)
    json.dump({"sent": len(frames), "replies": [describe(p) for p in pkts]}, sys.stdout)


def cmd_echo(a):
    ident = random.getrandbits(16)
    sniffer = start_sniffer(lambda p: IP in p and ICMP in p and p[IP].src == a.dst and p[ICMP].type == 0
                            and p[ICMP].id == ident)
    frame = (Ether(src=get_if_hwaddr("eth0"), dst=a.dst_mac) / IP(src=get_if_addr("eth0"), dst=a.dst) /
             ICMP(type=8, id=ident))
    sendp([frame.copy() for _ in range(a.count)], iface="eth0", verbose=False, inter=0.05)
    pkts = collect(sniffer, a.listen)
    json.dump({"sent": a.count, "replies": [describe(p) for p in pkts]}, sys.stdout)


def cmd_sniff(a):
    if a.ip_src:
        def match(p):
            return IP in p and p[IP].src == a.ip_src and p[IP].dst == a.ip_dst
    else:
        def match(p):
            return ARP in p and p[ARP].psrc == a.arp_psrc and p[ARP].hwsrc.lower() != (a.not_hwsrc or "").lower()
    pkts = sniff_for(match, a.seconds)
    json.dump({"seen": [describe(p) for p in pkts]}, sys.stdout)


def main():
    conf.verb = 0
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("arp")
    p.add_argument("--op", choices=("request", "reply"), required=True)
    p.add_argument("--dst-mac", required=True)
    p.add_argument("--hwsrc", required=True)
    p.add_argument("--psrc", required=True)
    p.add_argument("--pdst", required=True)
    p.add_argument("--hwdst", default="00:00:00:00:00:00")
    p.add_argument("--count", type=int, default=1)
    p = add_syn_options(sub.add_parser("tagged-syn"))
    p.add_argument("--tags", required=True)
    p = sub.add_parser("echo")
    p.add_argument("--dst", required=True)
    p.add_argument("--dst-mac", required=True)
    p.add_argument("--count", type=int, default=3)
    p.add_argument("--listen", type=float, default=1.0)
    p = sub.add_parser("sniff")
    p.add_argument("--seconds", type=float, required=True)
    p.add_argument("--ip-src")
    p.add_argument("--ip-dst")
    p.add_argument("--arp-psrc")
    p.add_argument("--not-hwsrc")
    a = ap.parse_args()
    {"arp": cmd_arp, "tagged-syn": cmd_tagged_syn, "echo": cmd_echo, "sniff": cmd_sniff}[a.cmd](a)


if __name__ == "__main__":
    main()

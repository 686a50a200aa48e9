#!/usr/bin/python3
"""spoof.py: crafted traffic for the anti-spoofing tests, run inside a VM's
namespace with `ip netns exec`.  Prints one JSON object on stdout.

  spoof.py syn --src-mac M --src-ip A --dst-mac B --first-port P --count N --listen S
             [--dst-ip D --dst-port Q]
      Sends N TCP SYNs to 169.254.169.254:80 (or D:Q) from ports P..P+N-1 with the
      given (possibly forged) source MAC and IPv4, and reports every TCP
      segment from that address and port to those ports seen on eth0 within S
      seconds (eth0 is put in promiscuous mode: an answer addressed to the
      forged MAC still shows up if the bridge sends it here).
  spoof.py sniff --ports LO-HI --seconds S
      Prints "ready", then reports the same kind of segments addressed to
      ports LO..HI that reach this VM within S seconds (run in the VM whose
      identity is being forged: answers to a forged IPv4 would go there).

Ports from 61000 up are outside Linux's ephemeral range (32768-60999), so no
real client of the VM shares them.
"""

import argparse
import json
import random
import sys

from scapy.all import IP, TCP, Ether, conf, sendp
from scapytool import add_syn_options, collect, sniff_for, start_sniffer, syn_ports

IMDS = "169.254.169.254"


def is_answer(pkt, lo, hi, src=IMDS, sport=80):
    return (IP in pkt and TCP in pkt and pkt[IP].src == src and pkt[TCP].sport == sport
            and lo <= pkt[TCP].dport <= hi)


def describe(pkt):
    return {"dst_mac": pkt[Ether].dst, "dst_ip": pkt[IP].dst, "dport": pkt[TCP].dport,
            "flags": str(pkt[TCP].flags), "payload": len(pkt[TCP].payload)}


def cmd_syn(a):
    ports = syn_ports(a)
    sniffer = start_sniffer(lambda p: is_answer(p, ports[0], ports[-1], a.dst_ip, a.dst_port))
    frames = [Ether(src=a.src_mac, dst=a.dst_mac) / IP(src=a.src_ip, dst=a.dst_ip, ttl=64) /
              TCP(sport=port, dport=a.dst_port, flags="S", seq=random.getrandbits(32), window=64240)
              for port in ports]
    sendp(frames, iface="eth0", verbose=False)
    pkts = collect(sniffer, a.listen)
    json.dump({"sent": len(frames), "replies": [describe(p) for p in pkts]}, sys.stdout)


def cmd_sniff(a):
    lo, hi = (int(x) for x in a.ports.split("-"))
    pkts = sniff_for(lambda p: is_answer(p, lo, hi), a.seconds)
    json.dump({"replies": [describe(p) for p in pkts]}, sys.stdout)


def main():
    conf.verb = 0
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = add_syn_options(sub.add_parser("syn"))
    s.add_argument("--dst-ip", default=IMDS)
    s.add_argument("--dst-port", type=int, default=80)
    f = sub.add_parser("sniff")
    f.add_argument("--ports", required=True)
    f.add_argument("--seconds", type=float, required=True)
    a = ap.parse_args()
    if a.cmd == "syn":
        cmd_syn(a)
    else:
        cmd_sniff(a)


if __name__ == "__main__":
    main()

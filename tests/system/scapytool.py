"""scapytool.py: what the scapy tools share (spoof.py, hostile.py,
hostile6.py; each runs inside a VM's namespace with `ip netns exec` and
imports this from its own directory): the capture on eth0, the options of a
burst of forged SYNs, and the "ready, then what came" of a sniff command."""

import os
import sys
import threading
import time

from scapy.all import AsyncSniffer


def start_sniffer(lfilter):
    """Captures on eth0 in promiscuous mode (an answer addressed to a forged
    MAC still shows up if the bridge sends it here), keeping the packets
    lfilter accepts; capturing once this returns."""
    started = threading.Event()
    sniffer = AsyncSniffer(iface="eth0", promisc=True, store=True, lfilter=lfilter, started_callback=started.set)
    sniffer.start()
    # The capture socket is opened in the sniffer's thread: wait for it.
    if not started.wait(10):
        sys.exit(f"{os.path.basename(sys.argv[0])}: the sniffer did not start")
    return sniffer


def collect(sniffer, seconds):
    """The packets the sniffer kept after `seconds` more."""
    time.sleep(seconds)
    return sniffer.stop() or []


def sniff_for(lfilter, seconds):
    """A sniff command: prints "ready" once capturing (the test waits for it
    before the attacker sends), then returns what came within `seconds`."""
    sniffer = start_sniffer(lfilter)
    print("ready", flush=True)
    return collect(sniffer, seconds)


def add_syn_options(parser):
    """The options of a burst of forged SYNs: Ethernet source and
    destination, IP source, the first of `--count` source ports, and how
    long to listen for answers."""
    for name in ("--src-mac", "--src-ip", "--dst-mac"):
        parser.add_argument(name, required=True)
    parser.add_argument("--first-port", type=int, required=True)
    parser.add_argument("--count", type=int, default=3)
    parser.add_argument("--listen", type=float, default=1.0)
    return parser


def syn_ports(a):
    """The source ports of the burst: --first-port and the next --count - 1."""
    return range(a.first_port, a.first_port + a.count)

"""Issue 12, findings 1-3: a guest with root sends what it likes, and none
of it gets another VM's data or reaches anything of the host's but the
metadata service.  Each test performs one attack with raw frames (scapy,
tests/system/hostile.py, inside the attacker's namespace) and shows that it
fails: nothing of the victim's reaches the attacker (a capture on the
attacker's interface), the forged frames are dropped and counted, and the
victim is still served.

1. Reply hijack by ARP: VM 1 tells the host that VM 2's address is at VM
   1's MAC; VM 1 tells VM 2 that 169.254.169.254 is at VM 1's MAC; the host's
   neighbour entry for VM 2 is forced to VM 1's MAC (a poisoned table).
2. Tagged frames: SYNs to 169.254.169.254 in one tag (VID 0, VID 5) and in
   two tags.
3. Other host services: a TCP listener on another port of the host, UDP
   and ICMP echo to 169.254.169.254.

The module runs twice: with imdsd's default ingress check (TC ingress) and
with --ingress xdp (the egress guard is TC egress in both)."""

import itertools
import json
import os
import subprocess
import time

import pytest

import vmdata
from imdslab import INGRESS_ARGS, INGRESS_IDS, PYTHON, assert_served, counter_delta, vm_curl

mac, ip, iid = vmdata.vm_mac, vmdata.vm_ipv4, vmdata.instance_id
IMDS = "169.254.169.254"
HOST_IP = "10.77.0.1"  # the bridge's address in the lab (scripts/lab.sh)
HOSTILE_PY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "hostile.py")
_ports = itertools.count(62000, 20)  # outside the ephemeral range, as in test_spoof
delta = counter_delta


@pytest.fixture(scope="module", params=INGRESS_ARGS, ids=INGRESS_IDS)
def lab(make_lab, request):
    lab = make_lab(2)
    lab.load([vmdata.vm_record(i) for i in lab.vms])
    lab.start_imdsd(*request.param)
    lab.bind_ports()
    return lab


@pytest.fixture
def clean(lab):
    """Every test leaves the neighbour tables and the bridge as it found them."""
    yield lab
    lab.forget_neighbours()


def hostile(lab, i, *args):
    p = lab.in_vm(i, PYTHON, HOSTILE_PY, *args, timeout=60)
    return json.loads(p.stdout)


class Capture:
    """hostile.py sniff in VM i's namespace; result() waits for its end."""

    def __init__(self, lab, i, seconds, *filters):
        cmd = ["ip", "netns", "exec", lab.vm_ns(i), PYTHON, HOSTILE_PY, "sniff", "--seconds", str(seconds),
               *filters]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if line.strip() != "ready":
            self.proc.kill()
            raise AssertionError(f"capture in vm{i} did not start: {line!r} {self.proc.stderr.read()}")

    def result(self):
        out, err = self.proc.communicate(timeout=60)
        assert self.proc.returncode == 0, f"capture failed: {err}"
        return json.loads(out)["seen"]


def host_neigh_mac(lab, addr):
    entries = json.loads(lab.ip_host("-j", "neigh", "show", addr, "dev", lab.bridge).stdout or "[]")
    return entries[0].get("lladdr") if entries else None


# --- 1. reply hijack by ARP ------------------------------------------------

def test_arp_claiming_another_vms_address_is_dropped(clean):
    """VM 1: "10.77.0.12 is-at VM 1's MAC", as a gratuitous ARP, as a reply
    to the host and as a request to the host (each of which makes Linux
    update its entry).  The host keeps sending VM 2's replies to VM 2."""
    lab = clean
    assert_served(lab, 2)  # the host has a neighbour entry for VM 2
    time.sleep(1.2)  # past the entry's locktime: a forged reply would now replace it
    before = lab.stats()
    seen = Capture(lab, 1, 5, "--ip-src", IMDS, "--ip-dst", ip(2))
    forged = [
        ("request", "ff:ff:ff:ff:ff:ff", ip(2), "00:00:00:00:00:00"),  # gratuitous
        ("reply", lab.bridge_mac(), HOST_IP, lab.bridge_mac()),
        ("request", lab.bridge_mac(), IMDS, "00:00:00:00:00:00"),
    ]
    for op, dst, pdst, hwdst in forged:
        hostile(lab, 1, "arp", "--op", op, "--dst-mac", dst, "--hwsrc", mac(1), "--psrc", ip(2), "--pdst", pdst,
                "--hwdst", hwdst, "--count", "3")
    assert host_neigh_mac(lab, ip(2)) != mac(1), "the host believed VM 1"
    assert_served(lab, 2)
    after = lab.stats()
    assert seen.result() == [], "replies to VM 2 reached VM 1"
    assert delta(before, after, iid(2), "drop_arp_spoof") == 9, after
    assert delta(before, after, "total", "drop_arp_spoof") == 9, after


def test_arp_answering_for_the_metadata_address_is_dropped(clean):
    """VM 1 to VM 2: "169.254.169.254 is-at VM 1's MAC" (a reply, and a
    gratuitous announcement).  Neither leaves VM 1's port, and VM 2's
    requests keep reaching imdsd."""
    lab = clean
    assert_served(lab, 2)
    seen = Capture(lab, 2, 3, "--arp-psrc", IMDS, "--not-hwsrc", lab.bridge_mac())
    before = lab.stats()
    hostile(lab, 1, "arp", "--op", "reply", "--dst-mac", mac(2), "--hwsrc", mac(1), "--psrc", IMDS, "--pdst", ip(2),
            "--hwdst", mac(2), "--count", "3")
    hostile(lab, 1, "arp", "--op", "request", "--dst-mac", "ff:ff:ff:ff:ff:ff", "--hwsrc", mac(1), "--psrc", IMDS,
            "--pdst", IMDS, "--count", "2")
    after = lab.stats()
    assert seen.result() == [], "VM 2 heard VM 1 claim 169.254.169.254"
    assert delta(before, after, iid(1), "drop_arp_spoof") == 5, after
    assert_served(lab, 2)


def test_reply_misdirected_by_the_host_is_dropped_at_egress(clean):
    """The host's neighbour entry for VM 2 says VM 1's MAC (a poisoned
    table, whatever poisoned it): the bridge sends VM 2's replies to VM 1's
    port, and TC egress there drops them.  VM 2 gets no answer while the
    table lies, then is served again."""
    lab = clean
    seen = Capture(lab, 1, 5, "--ip-src", IMDS, "--ip-dst", ip(2))
    before = lab.stats()
    lab.ip_host("neigh", "replace", ip(2), "lladdr", mac(1), "dev", lab.bridge, "nud", "permanent")
    try:
        p = vm_curl(lab, 2, "--max-time", "3", "http://169.254.169.254/latest/meta-data/instance-id")
    finally:
        lab.ip_host("neigh", "del", ip(2), "dev", lab.bridge, check=False)
    after = lab.stats()
    assert p.returncode != 0 and p.stdout == "", p
    assert seen.result() == [], "replies to VM 2 reached VM 1"
    assert delta(before, after, iid(2), "drop_misdirected_reply") >= 1, after
    assert delta(before, after, iid(1), "drop_misdirected_reply") == 0, after
    assert_served(lab, 2)


# --- 2. tagged frames ------------------------------------------------------

TAGS = [("vid0", "0"), ("vid5", "5"), ("qinq", "ad:5,0"), ("two-dot1q", "5,7")]


@pytest.mark.parametrize("name,tags", TAGS, ids=[t[0] for t in TAGS])
def test_tagged_syns_to_the_metadata_address_are_dropped(clean, name, tags):
    """VM 1's own MAC and address, in a VLAN tag: on TC the stack takes the
    outer tag off before the program (skb->vlan_present), on XDP every tag
    is in the frame; both drop it."""
    lab = clean
    before = lab.stats()
    res = hostile(lab, 1, "tagged-syn", "--src-mac", mac(1), "--src-ip", ip(1), "--dst-mac", lab.bridge_mac(),
                  "--first-port", str(next(_ports)), "--tags", tags, "--count", "3", "--listen", "1.0")
    after = lab.stats()
    assert res["replies"] == [], f"{name}: answered {res}"
    assert delta(before, after, iid(1), "drop_tagged") == 3, (name, after)
    assert delta(before, after, iid(1), "syn_recorded") == 0, (name, after)
    assert_served(lab, 1)


# --- 3. the host's other services --------------------------------------------

LISTENER = r"""
import socket, sys, time
kind, port, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM if kind == "tcp" else socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", port))
got = []
if kind == "tcp":
    s.listen(8)
s.settimeout(0.2)
print("ready", flush=True)
end = time.monotonic() + seconds
while time.monotonic() < end:
    try:
        if kind == "tcp":
            c, _ = s.accept()
            c.sendall(b"host-service\n")
            c.close()
            got.append("conn")
        else:
            data, _ = s.recvfrom(100)
            got.append(data.decode())
    except socket.timeout:
        pass
print(" ".join(got), flush=True)
"""

CLIENT = r"""
import socket, sys
kind, addr, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
if kind == "udp":
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for _ in range(3):
        s.sendto(("via-" + addr).encode(), (addr, port))
    print("sent")
else:
    try:
        c = socket.create_connection((addr, port), timeout=2)
        print(c.recv(100).decode().strip() or "empty")
    except OSError as e:
        print("failed", type(e).__name__)
"""


class HostListener:
    """A listener on 0.0.0.0:PORT in the lab's host namespace, as sshd or a
    database would be."""

    def __init__(self, lab, kind, port, seconds):
        cmd = ["nsenter", f"--net=/run/netns/{lab.host_ns}", PYTHON, "-c", LISTENER, kind, str(port), str(seconds)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == "ready", self.proc.stderr.read()

    def result(self):
        out, err = self.proc.communicate(timeout=60)
        assert self.proc.returncode == 0, err
        return out.split()


def client(lab, i, kind, addr, port):
    return lab.in_vm(i, PYTHON, "-c", CLIENT, kind, addr, str(port)).stdout.strip()


def test_other_tcp_ports_of_the_metadata_address_are_unreachable(clean):
    """A host service on port 2222 answers the VM at the host's own address
    (the control) but not at 169.254.169.254; port 80 there still works."""
    lab = clean
    listener = HostListener(lab, "tcp", 2222, 4)
    before = lab.stats()
    via_host = client(lab, 1, "tcp", HOST_IP, 2222)
    via_imds = client(lab, 1, "tcp", IMDS, 2222)
    after = lab.stats()
    assert via_host == "host-service", via_host
    assert via_imds.startswith("failed"), via_imds
    assert listener.result() == ["conn"]
    assert delta(before, after, iid(1), "drop_not_metadata_port") >= 1, after
    assert_served(lab, 1)


def test_udp_and_icmp_to_the_metadata_address_are_dropped(clean):
    lab = clean
    listener = HostListener(lab, "udp", 2223, 3)
    before = lab.stats()
    client(lab, 1, "udp", HOST_IP, 2223)
    client(lab, 1, "udp", IMDS, 2223)
    echo_host = hostile(lab, 1, "echo", "--dst", HOST_IP, "--dst-mac", lab.bridge_mac(), "--count", "3")
    echo_imds = hostile(lab, 1, "echo", "--dst", IMDS, "--dst-mac", lab.bridge_mac(), "--count", "3")
    after = lab.stats()
    assert listener.result() == [f"via-{HOST_IP}"] * 3
    assert len(echo_host["replies"]) == 3, echo_host
    assert echo_imds["replies"] == [], echo_imds
    assert delta(before, after, iid(1), "drop_not_metadata_port") == 6, after
    assert_served(lab, 1)

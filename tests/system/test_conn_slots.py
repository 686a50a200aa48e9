"""Issue 15: verified SYNs that imdsd takes without a syscall (conn_slots).

The ingress program records a verified SYN in conn_slots, an mmap-able array
imdsd reads and consumes in place, or in conn_table (an LRU hash: one bpf()
to take an entry) when the endpoint's entry holds another endpoint's fresh
SYN (include/imds.h, struct imds_conn_slot).  This lab's store is made with
IMDS_TEST_CONN_SLOTS=2, so endpoints collide:

- one connection at a time, every SYN finds its entry free: each VM is
  served its own instance-id and imdsd makes no conn_table lookup (strace
  counts BPF_MAP_LOOKUP_AND_DELETE_ELEM);
- SYNs crafted in VM 1 that no connection follows hold both entries: every
  VM is still served, each connection through conn_table;
- a connection from the host itself, from the endpoint VM 1 has just used
  (VM 1's address put on the host's loopback), gets no byte, both when
  VM 1's SYN went to conn_slots and when it went to conn_table: its entry
  was consumed, and nothing of the endpoint is left in either table.
"""

import json
import os
import socket
import subprocess

import pytest

import vmdata
from imdslab import count_calls
from vmhttp import IMDS_ADDR, Connection, get, netns

iid = vmdata.instance_id
CONNS = 5  # connections per VM while strace counts
TAKE = "BPF_MAP_LOOKUP_AND_DELETE_ELEM"


@pytest.fixture(scope="module")
def lab(make_lab):
    lab = make_lab(3)
    path = lab.write_json("vms.json", vmdata.dumps([vmdata.vm_record(i) for i in lab.vms]))
    p = lab.host("env", "IMDS_TEST_CONN_SLOTS=2", lab.loadmap_bin, "--pin-dir", lab.pin_dir, "load", path,
                 check=False)
    assert p.returncode == 0, p.stderr
    lab.start_imdsd()
    lab.bind_ports()
    return lab


def entries(lab):
    out = subprocess.run(["bpftool", "-j", "map", "show", "pinned", os.path.join(lab.pin_dir, "conn_slots")],
                         capture_output=True, text=True, check=True).stdout
    return int(json.loads(out)["max_entries"])


def served_with_takes(lab, name):
    """Every VM served CONNS times; the conn_table lookups imdsd made."""
    def serve():
        for _ in range(CONNS):
            for i in lab.vms:
                r = get(lab.vm_ns(i), "/latest/meta-data/instance-id")
                assert (r.status, r.body.decode()) == (200, iid(i))

    return count_calls(lab, "bpf", name, serve, TAKE)


def test_store_has_two_entries(lab):
    assert entries(lab) == 2


def test_free_entries_need_no_lookup(lab):
    assert served_with_takes(lab, "free") == 0


def host_from_a_used_endpoint(lab, name):
    """VM 1 is served once on a connection it closes first (no TIME_WAIT on
    imdsd's side to catch the host's SYN); then the host connects from that
    endpoint and must get nothing.  Returns the conn_table lookups of VM 1's
    connection."""
    port = []

    def vm1_served():
        with Connection(lab.vm_ns(1)) as c:
            port.append(c.local_port)
            assert c.request("GET", "/latest/meta-data/instance-id").body.decode() == iid(1)

    takes = count_calls(lab, "bpf", f"host-{name}", vm1_served, TAKE)
    port = port[0]
    addr = vmdata.vm_ipv4(1)
    lab.ip_host("addr", "add", f"{addr}/32", "dev", "lo")
    try:
        with netns(lab.host_ns):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.settimeout(3)
            s.bind((addr, port))
            s.connect((IMDS_ADDR, 80))
            s.sendall(b"GET /latest/meta-data/instance-id HTTP/1.1\r\nHost: x\r\n\r\n")
            try:
                data = s.recv(4096)
            except ConnectionResetError:
                data = b""
            assert data == b"", data
        finally:
            s.close()
    finally:
        lab.ip_host("addr", "del", f"{addr}/32", "dev", "lo")
    assert get(lab.vm_ns(1), "/latest/meta-data/instance-id").body.decode() == iid(1)
    return takes


def test_host_from_an_endpoint_taken_in_slots(lab):
    assert host_from_a_used_endpoint(lab, "slots") == 0


def test_taken_entries_send_syns_to_the_table(lab):
    res = lab.spoof_syns(1, vmdata.vm_mac(1), vmdata.vm_ipv4(1), 62000, count=12)
    assert sum(1 for r in res["replies"] if r["flags"] == "SA") == 12, res
    assert served_with_takes(lab, "taken") == CONNS * len(lab.vms)


def test_host_from_an_endpoint_taken_in_table(lab):
    assert host_from_a_used_endpoint(lab, "table") == 1

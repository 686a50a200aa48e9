"""Port lifecycle (issue 4, acceptance 3): imdsd follows the bridge.

- 1,000 veth ports added in bulk are all attached (XDP and TC egress), a
  single new port is attached quickly (the latency is printed; the bound
  asserted is generous, this is not a timing test), and after bulk removal
  no program is left on any of them and imdsd has forgotten them all.
- A VM whose port leaves is released: its port binding and the
  conn_table entries it left behind are gone, and back on a new port (a
  restarted VM gets a new vnetN) it is served again.
- A TAP device (what libvirt gives a VM) is attached when enslaved and
  forgotten, with nothing left on it, when it leaves the bridge.
- A port that already carries somebody else's XDP program is reported and
  left as it is.

Everything created here by hand (the peer namespace, the TAP device, the
foreign program) carries the prefix "h5p" and is removed even on failure."""

import json
import os
import statistics
import tempfile
import time

import pytest

import vmdata
from imdslab import run
from vmhttp import get

BULK = 1000
SINGLE = 10
OUR_XDP = "imds_xdp"
OUR_TC = "imds_tc_egress"


@pytest.fixture(scope="module")
def lab(make_lab):
    lab = make_lab(2)
    lab.load([vmdata.vm_record(1), vmdata.vm_record(2)])
    lab.start_imdsd()
    lab.bind_ports()
    return lab


@pytest.fixture
def peers(lab):
    """A namespace for the far ends of the test's veth pairs: deleting it
    removes every pair in one kernel batch (deleting 1,000 veths one by one
    takes the kernel about 20 s)."""
    name = f"h5p-peers-{lab.suffix}"
    run(["ip", "netns", "add", name])
    yield name
    run(["ip", "netns", "del", name], check=False)


def attachments(lab):
    """{devname: {"xdp": prog id or None, "tc": [tc program names]}} of the
    host namespace, from one `bpftool net` (one call for every port)."""
    out = json.loads(lab.host("bpftool", "-j", "net", "show").stdout)[0]
    devs = {}
    for x in out.get("xdp", []):
        devs.setdefault(x["devname"], {"xdp": None, "tc": []})["xdp"] = x["id"]
    for t in out.get("tc", []):
        if t.get("kind") == "clsact/egress":
            devs.setdefault(t["devname"], {"xdp": None, "tc": []})["tc"].append(t.get("name", ""))
    return devs


def prog_name(lab, prog_id):
    return json.loads(lab.host("bpftool", "-j", "prog", "show", "id", str(prog_id)).stdout)["name"]


def ours(lab, att, dev, our_xdp_id):
    a = att.get(dev)
    return bool(a and a["xdp"] == our_xdp_id and any(n.startswith(OUR_TC) for n in a["tc"]))


def port_attached(lab, dev, xdp_id):
    """Our XDP and TC egress on one port (two quick queries of that port
    alone, for latency polling: `bpftool net` walks every port)."""
    link = json.loads(lab.ip_host("-j", "-d", "link", "show", "dev", dev).stdout)[0]
    if (link.get("xdp") or {}).get("prog", {}).get("id") != xdp_id:
        return False
    filters = json.loads(lab.host("tc", "-j", "filter", "show", "dev", dev, "egress").stdout or "[]")
    return any(f.get("options", {}).get("bpf_name", "").startswith(OUR_TC) for f in filters)


def our_xdp_id(lab):
    att = attachments(lab)
    pid = att["vm1"]["xdp"]
    assert pid and prog_name(lab, pid) == OUR_XDP, f"vm1 does not carry {OUR_XDP}: {att.get('vm1')}"
    return pid


def ip_batch(lab, lines):
    with tempfile.NamedTemporaryFile("w", prefix="h5p-", suffix=".batch", delete=False) as f:
        f.write("\n".join(lines) + "\n")
    try:
        run(["ip", "-n", lab.host_ns, "-batch", f.name], timeout=300)
    finally:
        os.unlink(f.name)


def wait_until(what, pred, timeout, interval=0.1):
    deadline = time.monotonic() + timeout
    while True:
        if pred():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not true after {timeout} s")
        time.sleep(interval)


def left_count(lab):
    return lab.log_text().count("left the bridge")


def test_bulk_ports_attached_then_forgotten(lab, peers):
    xdp_id = our_xdp_id(lab)
    names = [f"h5p{i}" for i in range(BULK)]
    left_before = left_count(lab)

    t0 = time.monotonic()
    ip_batch(lab, [f"link add {n} type veth peer name q{n} netns {peers}" for n in names]
             + [f"link set {n} master {lab.bridge} up" for n in names])
    added = time.monotonic()

    def all_attached():
        att = attachments(lab)
        return all(ours(lab, att, n, xdp_id) for n in names)

    wait_until(f"{BULK} ports attached", all_attached, timeout=60, interval=0.2)
    done = time.monotonic()
    print(f"\n{BULK} veth ports: ip -batch took {added - t0:.2f} s, all attached "
          f"{done - added:.2f} s after it returned")

    # Single ports joining one at a time: time from `ip link set master`
    # returning to XDP and TC egress seen on the port.
    lat = []
    for k in range(SINGLE):
        n = f"h5p1{k:03d}x"
        run(["ip", "-n", lab.host_ns, "link", "add", n, "type", "veth", "peer", "name", f"q{n}",
             "netns", peers])
        t = time.monotonic()
        run(["ip", "-n", lab.host_ns, "link", "set", n, "master", lab.bridge, "up"])
        wait_until(f"{n} attached", lambda: port_attached(lab, n, xdp_id), timeout=5, interval=0.002)
        lat.append(time.monotonic() - t)
        names.append(n)
    print(f"single port attach latency with {BULK} ports on the bridge (incl. polling): "
          f"median {statistics.median(lat) * 1000:.0f} ms, max {max(lat) * 1000:.0f} ms")
    assert max(lat) < 2.0, f"single-port attach latencies {lat}"

    # Bulk removal: deleting the peer namespace deletes every pair.
    t0 = time.monotonic()
    run(["ip", "netns", "del", peers], timeout=300)
    wait_until("imdsd forgot every port", lambda: left_count(lab) - left_before >= len(names), timeout=60)
    print(f"{len(names)} ports removed; imdsd forgot them {time.monotonic() - t0:.2f} s after the delete began")
    att = attachments(lab)
    stray = sorted(d for d in att if d not in ("vm1", "vm2"))
    assert not stray, f"attachments left on {stray[:10]}"
    assert ours(lab, att, "vm1", xdp_id) and ours(lab, att, "vm2", xdp_id), "the VMs' ports lost the data plane"
    assert lab.imdsd.poll() is None, "imdsd died"
    # The VMs are still served after the churn.
    for i in (1, 2):
        assert get(lab.vm_ns(i), "/latest/meta-data/instance-id").body == vmdata.instance_id(i).encode()


def vm_port(lab, i):
    """The PORT column of `imds-loadmap list` for VM i."""
    rows = {r[0]: r for r in lab.list_rows()}
    return rows[vmdata.instance_id(i)][3]


def conn_entries(lab):
    path = os.path.join(lab.pin_dir, "conn_table")
    out = run(["bpftool", "-j", "map", "dump", "pinned", path]).stdout
    return json.loads(out)


def conn_slots(lab):
    """Slots named by conn_table entries (the value's first u32)."""
    slots = []
    for e in conn_entries(lab):
        v = e.get("value")
        if isinstance(v, dict):
            slots.append(int(v["slot"]))
        else:  # no BTF: raw bytes as hex strings, little endian
            slots.append(int.from_bytes(bytes(int(b, 16) for b in v[:4]), "little"))
    return slots


def test_vm_released_when_its_port_leaves(lab):
    lab.add_vm(3)
    try:
        lab.load([vmdata.vm_record(1), vmdata.vm_record(2), vmdata.vm_record(3)])
        r = get(lab.vm_ns(3), "/latest/meta-data/instance-id")
        assert r.body == vmdata.instance_id(3).encode()
        port = vm_port(lab, 3)
        assert port == "vm3", f"VM 3 bound to {port!r}"
        before = set(conn_slots(lab))
        # Verified SYNs that never complete: conn_table entries nobody will
        # ever consume, unless imdsd forgets them with the port.
        res = lab.spoof_syns(3, vmdata.vm_mac(3), vmdata.vm_ipv4(3), 41000, count=3, listen=0.5)
        assert any(r["flags"] == "SA" for r in res["replies"]), f"VM 3's own SYNs were not answered: {res}"
        new = set(conn_slots(lab)) - before
        assert len(new) == 1, f"expected VM 3's slot among conn_table values, got {new}"
        slot3 = new.pop()

        left_before = left_count(lab)
        lab.del_vm(3)
        wait_until("imdsd saw vm3 leave", lambda: left_count(lab) > left_before, timeout=5)
        wait_until("VM 3 released", lambda: vm_port(lab, 3) == "-", timeout=5)
        assert slot3 not in conn_slots(lab), "conn_table still holds entries of the departed VM"

        # The VM "restarts" on a new port: it binds there and is served.
        lab.add_vm(3)
        r = get(lab.vm_ns(3), "/latest/meta-data/instance-id")
        assert r.body == vmdata.instance_id(3).encode(), f"VM 3 on its new port: {r!r}"
        assert vm_port(lab, 3) == "vm3"
    finally:
        if 3 in lab.vms:
            lab.del_vm(3)


def test_tap_port_attached_and_forgotten(lab):
    xdp_id = our_xdp_id(lab)
    tap = f"h5pt{os.getpid() % 100000}"
    lab.ip_host("tuntap", "add", "dev", tap, "mode", "tap")
    try:
        assert run(["ip", "-n", lab.host_ns, "-d", "link", "show", tap]).stdout.count("tun type tap")
        lab.ip_host("link", "set", tap, "master", lab.bridge, "up")
        wait_until(f"{tap} attached", lambda: port_attached(lab, tap, xdp_id), timeout=5, interval=0.02)

        # Leaves the bridge but lives on: imdsd takes its programs off.
        lab.ip_host("link", "set", tap, "nomaster")
        wait_until(f"{tap} forgotten", lambda: tap not in attachments(lab), timeout=5, interval=0.02)

        # Joins again (a known port that came back is attached again).
        lab.ip_host("link", "set", tap, "master", lab.bridge)
        wait_until(f"{tap} attached again", lambda: port_attached(lab, tap, xdp_id), timeout=5, interval=0.02)
        left_before = left_count(lab)
        lab.ip_host("link", "del", tap)
        wait_until(f"{tap} forgotten after delete", lambda: left_count(lab) > left_before, timeout=5)
    finally:
        lab.ip_host("link", "del", tap, check=False)
    assert tap not in attachments(lab)


FOREIGN_C = """
#define SEC(s) __attribute__((section(s), used))
SEC("xdp") int h5p_foreign(void *ctx) { return 2; /* XDP_PASS */ }
char _license[] SEC("license") = "GPL";
"""


@pytest.fixture(scope="module")
def foreign_obj(tmp_path_factory):
    d = tmp_path_factory.mktemp("foreign")
    src, obj = d / "foreign.c", d / "foreign.o"
    src.write_text(FOREIGN_C)
    run(["clang", "-O2", "-g", "-target", "bpf", "-c", str(src), "-o", str(obj)])
    return str(obj)


def test_foreign_xdp_program_reported_and_left(lab, peers, foreign_obj):
    port = "h5pf0"
    lab.ip_host("link", "add", port, "type", "veth", "peer", "name", f"q{port}", "netns", peers)
    lab.ip_host("link", "set", "dev", port, "xdpgeneric", "obj", foreign_obj, "sec", "xdp")
    before = attachments(lab)[port]["xdp"]
    assert prog_name(lab, before) == "h5p_foreign"
    log_start = len(lab.log_text())

    lab.ip_host("link", "set", port, "master", lab.bridge, "up")
    wait_until("imdsd reports the foreign program",
               lambda: f"port {port}" in lab.log_text()[log_start:], timeout=5, interval=0.02)
    line = [ln for ln in lab.log_text()[log_start:].splitlines() if f"port {port}" in ln][0]
    assert "another XDP program" in line and "h5p_foreign" in line, line
    att = attachments(lab)[port]
    assert att["xdp"] == before, f"the foreign program was replaced: {att}"
    assert not any(n.startswith(OUR_TC) for n in att["tc"]), "TC egress attached on a port imds does not serve"

    # Leaving the bridge does not touch it either.
    lab.ip_host("link", "set", port, "nomaster")
    time.sleep(0.3)
    assert attachments(lab)[port]["xdp"] == before
    assert lab.imdsd.poll() is None


def test_foreign_xdp_program_coexists_with_tc_ingress(make_lab, foreign_obj):
    """With --ingress tc the foreign XDP program stays and runs first; imds
    checks at TC ingress, and says so."""
    lab = make_lab(1)
    port = "vm1"
    lab.ip_host("link", "set", "dev", port, "xdpgeneric", "obj", foreign_obj, "sec", "xdp")
    foreign = attachments(lab)[port]["xdp"]
    lab.load([vmdata.vm_record(1)])
    lab.start_imdsd("--ingress", "tc")
    log = lab.log_text()
    assert f'XDP program "h5p_foreign" (id {foreign}) is attached and runs before imds' in log, log
    assert attachments(lab)[port]["xdp"] == foreign, "the foreign program was replaced"
    filters = json.loads(lab.host("tc", "-j", "filter", "show", "dev", port, "ingress").stdout or "[]")
    assert any(f.get("options", {}).get("bpf_name", "").startswith("imds_tc_ingress") for f in filters), filters
    r = get(lab.vm_ns(1), "/latest/meta-data/instance-id")
    assert r.body == vmdata.instance_id(1).encode(), r
    assert lab.stop_imdsd() == 0
    assert attachments(lab)[port]["xdp"] == foreign, "imdsd's exit touched the foreign program"


def tc_ingress_names(lab, port):
    filters = json.loads(lab.host("tc", "-j", "filter", "show", "dev", port, "ingress").stdout or "[]")
    return [f["options"]["bpf_name"] for f in filters if f.get("options", {}).get("bpf_name")]


def test_switching_ingress_hook_leaves_no_stale_copy(make_lab):
    """An imdsd killed with SIGKILL leaves its programs on the ports.  The
    next imdsd, whichever hook it uses, must not let a stale copy of the
    other hook check and charge every packet a second time."""
    lab = make_lab(1)
    lab.load([vmdata.vm_record(1)])
    lab.start_imdsd("--ingress", "tc")
    lab.imdsd.kill()
    lab.imdsd.wait()
    lab.imdsd = None
    assert any(n.startswith("imds_tc_ingress") for n in tc_ingress_names(lab, "vm1"))

    lab.start_imdsd()  # XDP
    xdp = attachments(lab)["vm1"]["xdp"]
    assert xdp and prog_name(lab, xdp) == OUR_XDP
    assert not any(n.startswith("imds_tc_ingress") for n in tc_ingress_names(lab, "vm1")), \
        "a stale TC ingress copy survived next to XDP"
    lab.imdsd.kill()
    lab.imdsd.wait()
    lab.imdsd = None

    lab.start_imdsd("--ingress", "tc")
    assert attachments(lab)["vm1"]["xdp"] is None, "a stale imds_xdp survived next to TC ingress"
    assert any(n.startswith("imds_tc_ingress") for n in tc_ingress_names(lab, "vm1"))
    r = get(lab.vm_ns(1), "/latest/meta-data/instance-id")
    assert r.body == vmdata.instance_id(1).encode(), r
    assert lab.stop_imdsd() == 0
    assert attachments(lab).get("vm1") is None, "imdsd left programs on vm1"

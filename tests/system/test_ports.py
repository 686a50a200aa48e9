"""Port lifecycle (issue 4, acceptance 3): imdsd follows the bridge.

The tests on the module's lab run twice: with imdsd's default ingress
check (TC ingress) and with --ingress xdp.

- 1,000 veth ports added in bulk are all attached (the ingress check and
  TC egress), a single new port is attached quickly (the latency is
  printed; the bound asserted is generous, this is not a timing test), and
  after bulk removal no program is left on any of them and imdsd has
  forgotten them all.
- A VM whose port leaves is released: its port binding and the
  verified SYNs it left behind (conn_slots, conn_table) are gone, it stays pinned to the port's
  name (waiting), and when a port of that name joins again (a VM restarted
  under the same name) it is served there without a reload.  Restarted on a
  port of another name it is not served until `imds-loadmap bind` pins it
  there.
- A TAP device (what libvirt gives a VM) is attached when enslaved and
  forgotten, with nothing left on it, when it leaves the bridge.
- A port that already carries somebody else's XDP program: with the
  default TC ingress both run and the VM is served; with --ingress xdp the
  port is reported and left as it is.
- Switching hooks across a SIGKILL leaves no stale copy of the other hook.

Everything created here by hand (the peer namespace, the TAP device, the
foreign program) carries the prefix "h5p" and is removed even on failure."""

import json
import os
import statistics
import tempfile
import time

import pytest

import vmdata
from imdslab import INGRESS_ARGS, INGRESS_IDS, TC_EGRESS_PROG, TC_INGRESS_PROG, XDP_PROG, run
from vmhttp import NoResponse, fetch, get

BULK = 1000
SINGLE = 10


@pytest.fixture(scope="module", params=INGRESS_ARGS, ids=INGRESS_IDS)
def lab(make_lab, request):
    """The tests on this lab run twice: with imdsd's default ingress check
    (TC ingress) and with --ingress xdp."""
    lab = make_lab(2)
    lab.load([vmdata.vm_record(1), vmdata.vm_record(2)])
    lab.start_imdsd(*request.param)
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
    """{devname: {"xdp": prog id or None, "ingress": [TC program names],
    "egress": [TC program names]}} of the host namespace, from one
    `bpftool net` (XDP and cls_bpf: one call for every port) and one
    tcxquery.py --all (TCX, which bpftool 7.1 does not show)."""
    out = json.loads(lab.host("bpftool", "-j", "net", "show").stdout)[0]
    devs = {}

    def dev(name):
        return devs.setdefault(name, {"xdp": None, "ingress": [], "egress": []})

    for x in out.get("xdp", []):
        dev(x["devname"])["xdp"] = x["id"]
    for name, hooks in lab.tcx_programs("--all").items():
        for d in ("ingress", "egress"):
            if hooks[d]:
                dev(name)[d].extend(p for p, _ in hooks[d])
    for t in out.get("tc", []):
        if t.get("kind") in ("clsact/ingress", "clsact/egress"):
            dev(t["devname"])[t["kind"].split("/")[1]].append(t.get("name", ""))
    return devs


def prog_name(lab, prog_id):
    return json.loads(lab.host("bpftool", "-j", "prog", "show", "id", str(prog_id)).stdout)["name"]


def named(names, prog):
    return any(n.startswith(prog) for n in names)


def our_xdp_id(lab):
    """The id of imdsd's XDP program (None with TC ingress), from vm1."""
    if lab.ingress_hook != "xdp":
        return None
    pid = attachments(lab)["vm1"]["xdp"]
    assert pid and prog_name(lab, pid) == XDP_PROG, f"vm1 does not carry {XDP_PROG}: {pid}"
    return pid


def ours(att, dev, xdp_id):
    """The whole data plane on `dev`: TC egress and the ingress check, our
    XDP program `xdp_id` or (xdp_id None) TC ingress, and only that one."""
    a = att.get(dev)
    if not a or not named(a["egress"], TC_EGRESS_PROG):
        return False
    if xdp_id is None:
        return a["xdp"] is None and named(a["ingress"], TC_INGRESS_PROG)
    return a["xdp"] == xdp_id and not named(a["ingress"], TC_INGRESS_PROG)


def port_attached(lab, dev, xdp_id):
    """Our ingress check (as in ours()) and TC egress on one port (quick
    queries of that port alone, for latency polling: `bpftool net` walks
    every port)."""
    if not named(lab.tc_filter_names(dev, "egress"), TC_EGRESS_PROG):
        return False
    if xdp_id is None:
        return named(lab.tc_filter_names(dev, "ingress"), TC_INGRESS_PROG)
    return (lab.port_xdp(dev) or {}).get("prog", {}).get("id") == xdp_id


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
    assert ours(attachments(lab), "vm1", xdp_id), f"vm1 lacks the data plane: {attachments(lab).get('vm1')}"
    names = [f"h5p{i}" for i in range(BULK)]
    left_before = left_count(lab)

    t0 = time.monotonic()
    ip_batch(lab, [f"link add {n} type veth peer name q{n} netns {peers}" for n in names]
             + [f"link set {n} master {lab.bridge} up" for n in names])
    added = time.monotonic()

    def all_attached():
        att = attachments(lab)
        return all(ours(att, n, xdp_id) for n in names)

    wait_until(f"{BULK} ports attached", all_attached, timeout=60, interval=0.2)
    done = time.monotonic()
    print(f"\n{BULK} veth ports: ip -batch took {added - t0:.2f} s, all attached "
          f"{done - added:.2f} s after it returned")

    # Single ports joining one at a time: time from `ip link set master`
    # returning to the ingress check and TC egress seen on the port.
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
    assert ours(att, "vm1", xdp_id) and ours(att, "vm2", xdp_id), "the VMs' ports lost the data plane"
    assert lab.imdsd.poll() is None, "imdsd died"
    # The VMs are still served after the churn.
    for i in (1, 2):
        assert get(lab.vm_ns(i), "/latest/meta-data/instance-id").body == vmdata.instance_id(i).encode()


def vm_port(lab, i):
    """(PORT, BINDING) of `imds-loadmap list` for VM i."""
    return lab.port_binding(vmdata.instance_id(i))


def map_dump(lab, name):
    path = os.path.join(lab.pin_dir, name)
    return json.loads(run(["bpftool", "-j", "map", "dump", "pinned", path]).stdout)


def value_u32(v, field, offset):
    if isinstance(v, dict):
        return int(v[field])
    # no BTF: raw bytes as hex strings, little endian
    return int.from_bytes(bytes(int(b, 16) for b in v[offset:offset + 4]), "little")


def conn_slots(lab):
    """Slots named by verified SYNs waiting for imdsd: conn_table entries
    (the value's first u32) and READY conn_slots entries (include/imds.h)."""
    slots = [value_u32(e.get("value"), "slot", 0) for e in map_dump(lab, "conn_table_v2")]
    for e in map_dump(lab, "conn_slots"):
        v = e.get("value")
        if value_u32(v, "seq_state", 0) & 3 == 2:  # IMDS_CONN_READY
            slots.append(value_u32(v, "slot", 4))
    return slots


def test_vm_released_when_its_port_leaves(lab):
    lab.add_vm(3)
    try:
        lab.load([vmdata.vm_record(1), vmdata.vm_record(2), vmdata.vm_record(3)])
        r = get(lab.vm_ns(3), "/latest/meta-data/instance-id")
        assert r.body == vmdata.instance_id(3).encode()
        port = vm_port(lab, 3)
        assert port == ("vm3", "pinned"), f"VM 3 bound to {port!r}"
        before = set(conn_slots(lab))
        # Verified SYNs that never complete: entries nobody will ever
        # consume, unless imdsd forgets them with the port.
        res = lab.spoof_syns(3, vmdata.vm_mac(3), vmdata.vm_ipv4(3), 41000, count=3, listen=0.5)
        assert any(r["flags"] == "SA" for r in res["replies"]), f"VM 3's own SYNs were not answered: {res}"
        new = set(conn_slots(lab)) - before
        assert len(new) == 1, f"expected VM 3's slot among the verified SYNs, got {new}"
        slot3 = new.pop()

        left_before = left_count(lab)
        lab.del_vm(3)
        wait_until("imdsd saw vm3 leave", lambda: left_count(lab) > left_before, timeout=5)
        wait_until("VM 3 released", lambda: vm_port(lab, 3) == ("vm3", "waiting"), timeout=5)
        assert slot3 not in conn_slots(lab), "verified SYNs of the departed VM are left"

        # The VM "restarts" on a new port of the same name (a new ifindex):
        # its pin binds it there as the port joins, no reload needed.
        lab.add_vm(3)
        r = get(lab.vm_ns(3), "/latest/meta-data/instance-id")
        assert r.body == vmdata.instance_id(3).encode(), f"VM 3 on its new port: {r!r}"
        assert vm_port(lab, 3) == ("vm3", "pinned")

        # Restarted on a port of another name (libvirt gave it another
        # vnetN): not served there until it is pinned to that port.
        renamed = f"h5pr{os.getpid() % 100000}"
        lab.ip_host("link", "set", "vm3", "nomaster")
        lab.ip_host("link", "set", "vm3", "down")
        lab.ip_host("link", "set", "vm3", "name", renamed)
        lab.ip_host("link", "set", renamed, "master", lab.bridge, "up")
        wait_until("VM 3 released from its renamed port", lambda: vm_port(lab, 3) == ("vm3", "waiting"), timeout=5)
        unbound = lab.stats().get((vmdata.instance_id(3), "drop_unbound"), 0)
        with pytest.raises(NoResponse):
            fetch(lab.vm_ns(3), "GET", "/latest/meta-data/instance-id", timeout=1.5)
        assert lab.stats().get((vmdata.instance_id(3), "drop_unbound"), 0) > unbound
        p = lab.loadmap("bind", vmdata.instance_id(3), renamed)
        assert p.returncode == 0, p.stderr
        r = get(lab.vm_ns(3), "/latest/meta-data/instance-id")
        assert r.body == vmdata.instance_id(3).encode(), f"VM 3 pinned to {renamed}: {r!r}"
        assert vm_port(lab, 3) == (renamed, "pinned")
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


def add_foreign_port(lab, port, peer_ns, foreign_obj):
    """A veth port (not yet on the bridge) carrying the foreign XDP program;
    returns the program's id."""
    lab.ip_host("link", "add", port, "type", "veth", "peer", "name", f"q{port}", "netns", peer_ns)
    lab.ip_host("link", "set", "dev", port, "xdpgeneric", "obj", foreign_obj, "sec", "xdp")
    foreign = attachments(lab)[port]["xdp"]
    assert prog_name(lab, foreign) == "h5p_foreign"
    return foreign


def join_and_read_log(lab, port):
    """Puts `port` on the bridge; imdsd's log lines about it."""
    log_start = len(lab.log_text())
    lab.ip_host("link", "set", port, "master", lab.bridge, "up")
    wait_until(f"imdsd logs {port}", lambda: f"port {port}" in lab.log_text()[log_start:], timeout=5,
               interval=0.02)
    return [ln for ln in lab.log_text()[log_start:].splitlines() if f"port {port}" in ln]


def test_foreign_xdp_program_on_a_joining_port(lab, peers, foreign_obj):
    """A port joins with somebody else's XDP program.  With the default TC
    ingress the program stays and runs first, imds checks at TC ingress and
    says so.  With --ingress xdp the port is reported and left as it is, no
    program of ours goes on it.  Leaving the bridge never touches it."""
    port = "h5pf0"
    foreign = add_foreign_port(lab, port, peers, foreign_obj)
    lines = join_and_read_log(lab, port)
    if lab.ingress_hook == "tc":
        assert any(f'XDP program "h5p_foreign" (id {foreign}) is attached and runs before imds' in ln
                   for ln in lines), lines
        wait_until(f"{port} attached", lambda: port_attached(lab, port, None), timeout=5, interval=0.02)
    else:
        assert any("another XDP program" in ln and "h5p_foreign" in ln for ln in lines), lines
        att = attachments(lab)[port]
        assert not att["ingress"] and not att["egress"], f"TC programs on a port imds does not serve: {att}"
    assert attachments(lab)[port]["xdp"] == foreign, "the foreign program was replaced"

    lab.ip_host("link", "set", port, "nomaster")
    wait_until(f"{port} left", lambda: not port_attached(lab, port, None), timeout=5, interval=0.02)
    time.sleep(0.3)
    att = attachments(lab)[port]
    assert att["xdp"] == foreign and not att["ingress"] and not att["egress"], att
    assert lab.imdsd.poll() is None


def test_foreign_xdp_program_coexists_at_startup(make_lab, foreign_obj):
    """The same at startup, with a VM behind the port: with the default TC
    ingress the foreign XDP program stays and runs first, and the VM is
    served through both."""
    lab = make_lab(1)
    port = "vm1"
    lab.ip_host("link", "set", "dev", port, "xdpgeneric", "obj", foreign_obj, "sec", "xdp")
    foreign = attachments(lab)[port]["xdp"]
    lab.load([vmdata.vm_record(1)])
    lab.start_imdsd()
    log = lab.log_text()
    assert f'XDP program "h5p_foreign" (id {foreign}) is attached and runs before imds' in log, log
    assert attachments(lab)[port]["xdp"] == foreign, "the foreign program was replaced"
    assert port_attached(lab, port, None)
    r = get(lab.vm_ns(1), "/latest/meta-data/instance-id")
    assert r.body == vmdata.instance_id(1).encode(), r
    assert lab.stop_imdsd() == 0
    assert attachments(lab)[port]["xdp"] == foreign, "imdsd's exit touched the foreign program"


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
    assert lab.port_ingress_hooks("vm1") == {"tc"}

    lab.start_imdsd("--ingress", "xdp")
    xdp = attachments(lab)["vm1"]["xdp"]
    assert xdp and prog_name(lab, xdp) == XDP_PROG
    assert lab.port_ingress_hooks("vm1") == {"xdp"}, "a stale TC ingress copy survived next to XDP"
    lab.imdsd.kill()
    lab.imdsd.wait()
    lab.imdsd = None

    lab.start_imdsd()  # the default: TC ingress
    assert attachments(lab)["vm1"]["xdp"] is None, "a stale imds_xdp survived next to TC ingress"
    assert lab.port_ingress_hooks("vm1") == {"tc"}
    r = get(lab.vm_ns(1), "/latest/meta-data/instance-id")
    assert r.body == vmdata.instance_id(1).encode(), r
    assert lab.stop_imdsd() == 0
    assert attachments(lab).get("vm1") is None, "imdsd left programs on vm1"

"""The TC programs as TCX links (docs/ports.md, "TCX links or cls_bpf").

- By default (--tc-attach auto on this kernel) each port carries one TCX
  link per hook, pinned under the pin directory as links/tcx-IFINDEX-HOOK,
  and no cls_bpf filter of ours; a cls_bpf filter somebody else put on the
  port still sees the traffic imdsd lets through (imdsd passes with
  TCX_NEXT, never TCX_PASS).
- A SIGKILL leaves the links on: a VM's forged SYN is still dropped and
  counted with no imdsd running, and the next imdsd takes the same links
  over (same link ids) and serves the verified VM again.
- Switching --tc-attach across restarts (tcx -> cls -> tcx, each after a
  SIGKILL) leaves exactly one copy of ours per hook each time.
- A port that leaves the bridge loses its links and their pins; a port
  deleted while no imdsd runs leaves a defunct pin that the next imdsd
  removes; SIGTERM removes every link and pin.
- --tc-attach names no other way: a usage error."""

import json
import signal
import subprocess

import pytest

import imdslab
import vmdata
from imdslab import assert_served, counter_delta

mac, ip, iid = vmdata.vm_mac, vmdata.vm_ipv4, vmdata.instance_id

TCX_ONLY = {("tcx", "ingress"): 1, ("tcx", "egress"): 1}
CLS_ONLY = {("cls", "ingress"): 1, ("cls", "egress"): 1}


@pytest.fixture(scope="module")
def lab(make_lab):
    lab = make_lab(3)
    lab.load([vmdata.vm_record(i) for i in lab.vms])
    lab.start_imdsd()
    lab.bind_ports()
    return lab


def ifindex(lab, port):
    return json.loads(lab.ip_host("-j", "link", "show", port).stdout)[0]["ifindex"]


def pins_of(lab, port):
    n = ifindex(lab, port)
    return [p for p in lab.tcx_pins() if p in (f"tcx-{n}-ingress", f"tcx-{n}-egress")]


def link_ids(lab, port):
    hooks = lab.tcx_programs(port)[port]
    return {d: [link for _, link in hooks[d]] for d in ("ingress", "egress")}


def kill9(lab):
    lab.imdsd.send_signal(signal.SIGKILL)
    lab.imdsd.wait(10)
    lab.imdsd = None


def test_default_is_one_pinned_tcx_link_per_hook(lab):
    assert "TC ingress and TC egress attached (tcx)" in lab.log_text()
    for i in lab.vms:
        port = f"vm{i}"
        assert lab.tc_copies(port) == TCX_ONLY, port
        assert len(pins_of(lab, port)) == 2, lab.tcx_pins()
        assert all(link for ids in link_ids(lab, port).values() for link in ids), "attached without a link"
        assert_served(lab, i)


def action_packets(lab, port):
    """Packets counted by the actions of the filters on PORT's clsact ingress."""
    out = json.loads(lab.host("tc", "-s", "-j", "filter", "show", "dev", port, "ingress").stdout or "[]")
    return sum(a.get("stats", {}).get("packets", 0) for f in out for a in f.get("options", {}).get("actions", []))


def test_filters_of_others_still_see_what_imdsd_passes(lab):
    """A u32 filter mirroring vm1's IPv4 traffic to a sink (cls_matchall is
    not in this kernel) counts the VM's request: had imdsd's TCX program
    returned TCX_PASS, the clsact filters would never run."""
    sink = f"snk{lab.suffix[-8:]}"
    lab.ip_host("link", "add", sink, "type", "veth", "peer", "name", f"{sink}p")
    try:
        lab.ip_host("link", "set", sink, "up")
        lab.host("tc", "qdisc", "add", "dev", "vm1", "clsact")
        lab.host("tc", "filter", "add", "dev", "vm1", "ingress", "pref", "1", "protocol", "ip", "u32", "match",
                 "u32", "0", "0", "action", "mirred", "egress", "mirror", "dev", sink)
        before = action_packets(lab, "vm1")
        assert_served(lab, 1)
        assert action_packets(lab, "vm1") - before >= 3, "the clsact filter did not see vm1's packets"
        assert lab.tc_copies("vm1") == TCX_ONLY
    finally:
        lab.host("tc", "qdisc", "del", "dev", "vm1", "clsact", check=False)
        lab.ip_host("link", "del", sink, check=False)


def test_sigkill_leaves_the_check_on_and_restart_takes_the_links_over(lab):
    before_ids = link_ids(lab, "vm1")
    kill9(lab)
    assert lab.tc_copies("vm1") == TCX_ONLY
    # No imdsd: the kernel would answer SYNs to the address left on the
    # bridge with a reset, unless the ingress program drops them.
    first = 62000
    before = lab.stats()
    res = lab.spoof_syns(1, mac(1), ip(2), first, count=4, listen=1.0)
    after = lab.stats()
    lab.forget_neighbours()
    assert res["replies"] == [], f"a forged SYN got through with imdsd dead: {res}"
    assert counter_delta(before, after, iid(1), "drop_wrong_ipv4") == 4, after

    lab.start_imdsd()
    assert link_ids(lab, "vm1") == before_ids, "the restarted imdsd made new links instead of taking them over"
    assert lab.tc_copies("vm1") == TCX_ONLY
    assert_served(lab, 1)
    res = lab.spoof_syns(1, mac(1), ip(2), first + 10, count=2, listen=1.0)
    lab.forget_neighbours()
    assert res["replies"] == [], res


def test_switching_modes_leaves_exactly_one_copy(lab):
    kill9(lab)
    lab.start_imdsd("--tc-attach", "cls")
    assert "TC ingress and TC egress attached (cls)" in lab._log_since(lab.imdsd_log_start)
    for port in ("vm1", "vm2", "vm3"):
        assert lab.tc_copies(port) == CLS_ONLY, port
    assert lab.tcx_pins() == [], "the TCX links stayed beside the cls_bpf filters"
    assert_served(lab, 2)

    kill9(lab)
    lab.start_imdsd()
    for port in ("vm1", "vm2", "vm3"):
        assert lab.tc_copies(port) == TCX_ONLY, port
        assert len(pins_of(lab, port)) == 2
    assert_served(lab, 2)


def test_port_leaving_removes_its_links_and_pins(lab):
    assert len(pins_of(lab, "vm3")) == 2 and lab.tc_copies("vm3") == TCX_ONLY
    lab.ip_host("link", "set", "vm3", "nomaster")
    imdslab.wait_until("vm3 forgotten", lambda: not pins_of(lab, "vm3"), 5)
    assert lab.tc_copies("vm3") == {}
    lab.ip_host("link", "set", "vm3", "master", lab.bridge)
    imdslab.wait_until("vm3 attached again", lambda: lab.tc_copies("vm3") == TCX_ONLY, 5)
    assert len(pins_of(lab, "vm3")) == 2
    assert_served(lab, 3)


def test_port_deleted_while_imdsd_is_dead_loses_its_pin(lab):
    lab.add_vm(4)
    gone = ifindex(lab, "vm4")
    imdslab.wait_until("vm4 attached", lambda: len(pins_of(lab, "vm4")) == 2, 5)
    kill9(lab)
    lab.del_vm(4)
    assert f"tcx-{gone}-ingress" in lab.tcx_pins(), "the pin went with the port: nothing left to test"
    lab.start_imdsd()
    assert "removed 2 pinned TCX link(s) of ports no longer served" in lab._log_since(lab.imdsd_log_start)
    assert not [p for p in lab.tcx_pins() if p.startswith(f"tcx-{gone}-")]


def test_sigterm_removes_every_link_and_pin(lab):
    assert lab.stop_imdsd() == 0
    for port in ("vm1", "vm2", "vm3"):
        assert lab.tc_copies(port) == {}, port
    assert lab.tcx_pins() == []
    lab.start_imdsd()


def test_tc_attach_other_value_is_a_usage_error():
    p = subprocess.run([imdslab.IMDSD, "--bridge", "br0", "--tc-attach", "bpf"], capture_output=True, text=True)
    assert p.returncode == 2, p
    assert '--tc-attach: "bpf" is not auto, tcx or cls' in p.stderr, p.stderr

"""Acceptance 2 and 3: identity comes from the (port, MAC, IPv4) binding the
data plane verified, never from the source address alone.

2. VM 1 forges VM 2's IPv4, VM 2's MAC, or both, from its own port: first
   with SYNs crafted by scapy, then with a real curl after taking VM 2's
   address/MAC on its eth0.  No answer reaches either VM, and the drop
   counter of the matching reason grows by exactly what was sent.
3. A client on a bridge port whose ingress check was taken off (VM 4) is
   accepted by TCP but gets no byte of metadata; the others are still served.

The module runs three times: with imdsd's default ingress check (TC
ingress, as TCX links on this kernel), with --ingress xdp, and with TC
ingress as cls_bpf filters (--tc-attach cls).

Every VM is pinned to its own port by its record (vmdata.vm_record), so
nobody can take a VM's port by speaking first (test_pinning.py); each still
fetches once first, so every VM is known to be served before anyone forges
it."""

import itertools
import time

import pytest

import vmdata
from imdslab import INGRESS_ARGS, INGRESS_IDS, assert_served, counter_delta, vm_curl
from vmhttp import NoResponse, get

mac, ip, iid = vmdata.vm_mac, vmdata.vm_ipv4, vmdata.instance_id
_ports = itertools.count(61000, 20)  # 20 fresh source ports per attempt


@pytest.fixture(scope="module", params=[*INGRESS_ARGS, ("--tc-attach", "cls")], ids=[*INGRESS_IDS, "tc-cls"])
def lab(make_lab, request):
    lab = make_lab(4)
    lab.load([vmdata.vm_record(i) for i in lab.vms])
    lab.start_imdsd(*request.param)
    assert lab.port_ingress_hooks("vm4") == {lab.ingress_hook}
    lab.bind_ports()
    return lab


delta = counter_delta


def test_crafted_syn_with_own_identity_is_answered(lab):
    """The control for the cases below: the same crafted SYN, unforged, is
    verified, recorded and answered, so an empty capture below means a drop."""
    before = lab.stats()
    res = lab.spoof_syns(1, mac(1), ip(1), next(_ports), count=3)
    after = lab.stats()
    answered = {r["dport"] for r in res["replies"] if r["flags"] == "SA" and r["dst_ip"] == ip(1)}
    assert len(answered) == 3, res
    assert delta(before, after, iid(1), "syn_recorded") == 3


# (name, forged source MAC, forged source IPv4, counted on VM, reason)
FORGERIES = [
    ("other-ipv4", mac(1), ip(2), 1, "drop_wrong_ipv4"),
    ("other-mac", mac(2), ip(1), 2, "drop_wrong_port"),
    ("other-mac-and-ipv4", mac(2), ip(2), 2, "drop_wrong_port"),
]


@pytest.mark.parametrize("name,src_mac,src_ip,owner,reason", FORGERIES, ids=[f[0] for f in FORGERIES])
def test_crafted_forged_syns_are_dropped_and_counted(lab, name, src_mac, src_ip, owner, reason):
    first = next(_ports)
    before = lab.stats()
    victim = lab.sniffer(2, (first, first + 19), seconds=2.5)
    res = lab.spoof_syns(1, src_mac, src_ip, first, count=5, listen=1.0)
    seen_by_victim = victim.result()
    after = lab.stats()
    lab.forget_neighbours()
    assert res["replies"] == [], f"{name}: the forger got answers {res}"
    assert seen_by_victim["replies"] == [], f"{name}: answers went to vm2 {seen_by_victim}"
    assert delta(before, after, iid(owner), reason) == 5, (name, after)
    assert delta(before, after, "total", reason) >= 5, (name, after)
    for quiet in ("pass_verified", "syn_recorded"):
        assert delta(before, after, iid(2), quiet) == 0, (name, quiet, after)


def test_crafted_syn_from_unknown_mac_is_dropped_and_counted(lab):
    first = next(_ports)
    before = lab.stats()
    res = lab.spoof_syns(1, "52:54:00:77:00:ee", ip(1), first, count=4)
    after = lab.stats()
    lab.forget_neighbours()
    assert res["replies"] == [], res
    assert delta(before, after, "total", "drop_unknown_mac") >= 4, after


CURL_FORGERIES = [
    ("other-ipv4", None, ip(2), 1, "drop_wrong_ipv4"),
    ("other-mac", mac(2), None, 2, "drop_wrong_port"),
    ("other-mac-and-ipv4", mac(2), ip(2), 2, "drop_wrong_port"),
]


@pytest.mark.parametrize("name,new_mac,new_ip,owner,reason", CURL_FORGERIES, ids=[f[0] for f in CURL_FORGERIES])
def test_curl_with_another_vms_identity_gets_nothing(lab, name, new_mac, new_ip, owner, reason):
    before = lab.stats()
    with lab.vm_identity(1, mac=new_mac, ipv4=new_ip):
        v1 = vm_curl(lab, 1, "--max-time", "2", "http://169.254.169.254/latest/meta-data/instance-id")
        v2 = vm_curl(lab, 1, "--max-time", "2", "-X", "PUT", "-H", "X-aws-ec2-metadata-token-ttl-seconds: 60",
                     "http://169.254.169.254/latest/api/token")
    after = lab.stats()
    for what, p in (("IMDSv1 GET", v1), ("token PUT", v2)):
        assert p.returncode != 0 and p.stdout == "", f"{name}: {what} got {p.returncode} {p.stdout!r}"
    assert delta(before, after, iid(owner), reason) >= 1, (name, after)
    # Both VMs are served their own data again once VM 1 is itself again.
    assert_served(lab, 1)
    assert_served(lab, 2)


def test_port_without_data_plane_is_not_served(lab):
    lab.detach_ingress_check("vm4")
    p = vm_curl(lab, 4, "--max-time", "3", "http://169.254.169.254/latest/meta-data/instance-id")
    # 52: empty reply; 56: reset.  Either way TCP connected and nothing came.
    assert p.returncode in (52, 56) and p.stdout == "", p
    with pytest.raises(NoResponse) as e:
        get(lab.vm_ns(4), "/latest/meta-data/instance-id")
    assert e.value.kind in ("closed", "reset") and e.value.partial == b"", e.value
    for i in (1, 2, 3):
        assert_served(lab, i)
    time.sleep(1)
    assert not lab.port_ingress_hooks("vm4"), "imdsd attached its ingress check again to a port it had seen"
    with pytest.raises(NoResponse):
        get(lab.vm_ns(4), "/latest/meta-data/instance-id")


def test_client_in_the_host_namespace_is_not_served(lab):
    """Local traffic never crosses a port's ingress check, so it is never
    verified."""
    p = lab.host("curl", "-sS", "--max-time", "3", "http://169.254.169.254/latest/meta-data/instance-id",
                 check=False)
    assert p.returncode in (52, 56) and p.stdout == "", p

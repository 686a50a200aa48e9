"""Real VMs on TAP devices (issue 6): QEMU guests, each with a virtio-net NIC
on a TAP port of the bridge imdsd serves, fetch their metadata with IMDSv2
from inside the guest kernel, through the data plane (imdsd's default
ingress check, TC ingress, on each TAP).

- vm1 (tokens optional, tap1) and vm2 (tokens required, tap2) boot at once
  and each gets exactly its own instance-id, hostname, key and user-data.
  Each record is pinned to its TAP (VM I's `port` is tapI).  vm1 is
  dual-stack (issue 16, acceptance 4, with the lab's busybox guest rather
  than cloud-init): it also gets a token, its instance-id and its user-data
  from [fd00:ec2::254] (docs/ipv6.md).
- Then two guests lie: one with vm3's own MAC on tap3 takes vm1's IPv4, one
  on tap4 takes vm2's MAC and IPv4 in its init.  Neither gets a token or a
  byte of anyone's data, and the data plane counts their drops.

Every value differs between VMs (tests/system/vmdata.py), so a leak shows as
another VM's string anywhere on a guest's console."""

import pytest

import guests
import vmdata
from imdslab import counter_delta

# Per-request time limit inside the lying guests: their SYNs are dropped, so
# every request runs into it.
SPOOF_WAIT = 2
# The VMs whose records are loaded.
VMS = [1, 2, 3]
# vm1's IPv6 (its record's "ipv6") and the bridge's, as in tests/system/ipv6lab.py
VM1_IPV6 = "2001:db8:77::11"
HOST6 = "2001:db8:77::1"


def record(i, **kw):
    """VM i's record, pinned to its TAP (not the veth of a lab VM)."""
    rec = vmdata.vm_record(i, port=False, **kw)
    rec["port"] = f"tap{i}"
    return rec


@pytest.fixture(scope="module")
def lab(make_lab):
    lab = make_lab()
    for i in (1, 2, 3, 4):
        guests.add_tap(lab, f"tap{i}")
    lab.ip_host("-6", "addr", "add", f"{HOST6}/64", "dev", lab.bridge, "nodad")
    vm1 = record(1)
    vm1["ipv6"] = [VM1_IPV6]
    lab.load([vm1, record(2, tokens="required"), record(3)])
    lab.start_imdsd()
    return lab


@pytest.fixture(scope="module")
def served(lab, guest_image, tmp_path_factory):
    """vm1 and vm2 boot at once on their own TAPs; {i: Report}."""
    work = tmp_path_factory.mktemp("guests")
    before = lab.stats()
    gs = [guests.Guest(lab, work, f"vm{i}", f"tap{i}", vmdata.vm_mac(i), vmdata.vm_ipv4(i),
                       ipv6=VM1_IPV6 if i == 1 else None) for i in (1, 2)]
    reports = guests.run_guests(gs, *guest_image)
    return {1: reports[0], 2: reports[1]}, before, lab.stats()


@pytest.fixture(scope="module")
def spoofed(lab, served, guest_image, tmp_path_factory):
    """After vm1 and vm2 have run (each on the TAP it is pinned to), two
    lying guests boot at once; returns their reports and the counters
    around them."""
    work = tmp_path_factory.mktemp("spoof")
    before = lab.stats()
    by_ip = guests.Guest(lab, work, "spoof-ip", "tap3", vmdata.vm_mac(3), vmdata.vm_ipv4(1), wait=SPOOF_WAIT)
    by_mac = guests.Guest(lab, work, "spoof-mac", "tap4", "52:54:00:77:e2:04", vmdata.vm_ipv4(2),
                          spoof_mac=vmdata.vm_mac(2), wait=SPOOF_WAIT)
    reports = guests.run_guests([by_ip, by_mac], *guest_image)
    return {"ip": reports[0], "mac": reports[1]}, before, lab.stats()


@pytest.mark.parametrize("i", [1, 2])
def test_guest_gets_its_own_metadata(lab, served, i):
    r = served[0][i]
    assert not r.errors, r
    assert r.eth0 == (vmdata.vm_mac(i), vmdata.vm_ipv4(i)), r
    rc, token = r.token
    assert rc == 0 and len(token) == 56, f"vm{i} token: {r!r}"
    want = {
        "instance-id": vmdata.instance_id(i).encode(),
        "hostname": vmdata.hostname(i).encode(),
        "public-keys": f"0={vmdata.key_name(i)}".encode(),
        "openssh-key": vmdata.openssh_key(i).encode(),
        "user-data": vmdata.user_data(i),
    }
    for name, body in want.items():
        assert r.bodies.get(name) == (0, body), f"vm{i} {name}: {r.bodies.get(name)!r}, want {body!r}"
    vmdata.assert_no_leak(i, r.text.encode(), VMS, "on the serial console")


def test_dual_stack_guest_over_ipv6(served):
    """vm1 asks [fd00:ec2::254] too: a token and its own data."""
    r = served[0][1]
    rc, token = r.token6 or (None, b"")
    assert rc == 0 and len(token) == 56, f"vm1 token over IPv6: {r!r}"
    assert r.bodies6.get("instance-id") == (0, vmdata.instance_id(1).encode()), r
    assert r.bodies6.get("user-data") == (0, vmdata.user_data(1)), r
    assert served[0][2].token6 is None, "vm2 is IPv4-only"


def test_tokens_required_is_enforced_for_the_guest(served):
    """vm2 requires tokens: its tokenless GET is refused, vm1's is served."""
    reports = served[0]
    assert reports[1].notoken == "HTTP/1.1 200 OK", reports[1]
    assert reports[2].notoken == "HTTP/1.1 401 Unauthorized", reports[2]


def test_guests_went_through_the_data_plane(lab, served):
    """Each guest's connections were verified and recorded by the data
    plane on its own TAP, and each VM is pinned and bound to that TAP."""
    _, before, after = served
    for i in (1, 2):
        iid = vmdata.instance_id(i)
        # 7 connections: the tokenless GET, the token PUT and 5 GETs
        # (vm1: 3 more over IPv6)
        assert counter_delta(before, after, iid, "syn_recorded") >= 7 + 3 * (i == 1), after
    for tap in ("tap1", "tap2"):
        assert lab.port_ingress_hooks(tap) == {"tc"}, f"{tap}: not checked at TC ingress"
    for i in (1, 2):
        row = lab.list_row(vmdata.instance_id(i))
        assert (row["BRIDGE"], row["PORT"], row["BINDING"]) == (lab.bridge, f"tap{i}", "pinned"), row
    for reason in ("drop_unknown_mac", "drop_wrong_port", "drop_wrong_ipv4", "drop_unbound"):
        assert counter_delta(before, after, "total", reason) == 0, after


def assert_got_nothing(r, victim):
    assert r.token[1] == b"" and r.token[0] != 0, f"{r.name} got a token: {r!r}"
    assert r.notoken == "none", r
    for name, (rc, body) in r.bodies.items():
        assert rc != 0 and body == b"", f"{r.name} {name}: {rc} {body!r}"
    for s in vmdata.identifying_strings(victim):
        assert s not in r.text.encode(), f"{r.name} has vm{victim}'s {s!r} on its console"


def dropped(before, after, syn, arp):
    """The lying guest's drops were counted: (VM, reason) of its SYNs, or
    (VM, reason) of its ARP.  The guest resolves 169.254.169.254 first, and
    the data plane drops an ARP claiming a loaded VM's IPv4 from another port
    (drop_arp_spoof, counted on the owner), so its SYNs may never be sent."""
    return sum(counter_delta(before, after, vmdata.instance_id(i), reason) for i, reason in (syn, arp)) > 0


def test_guest_taking_another_ipv4_gets_nothing(spoofed):
    reports, before, after = spoofed
    r = reports["ip"]
    assert r.eth0 == (vmdata.vm_mac(3), vmdata.vm_ipv4(1)), r
    assert_got_nothing(r, 1)
    assert dropped(before, after, (3, "drop_wrong_ipv4"), (1, "drop_arp_spoof")), after


def test_guest_taking_another_mac_gets_nothing(spoofed):
    reports, before, after = spoofed
    r = reports["mac"]
    assert r.eth0 == (vmdata.vm_mac(2), vmdata.vm_ipv4(2)), r
    assert_got_nothing(r, 2)
    assert dropped(before, after, (2, "drop_wrong_port"), (2, "drop_arp_spoof")), after


def test_lying_guests_were_dropped_not_served(spoofed):
    """No connection of theirs reached imdsd: nothing was recorded."""
    _, before, after = spoofed
    assert counter_delta(before, after, "total", "syn_recorded") == 0, after
    assert counter_delta(before, after, "total", "pass_verified") == 0, after

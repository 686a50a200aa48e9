"""Issue 11: a VM is served only on the port named for it, from its first
packet; identity never depends on who speaks first.

VM 1 and VM 2 are pinned to their lab ports (vm1, vm2); VM 3 is loaded
without a port.  VM 2 stays silent until the attack has been tried: before
pinning, whoever spoke first with VM 2's MAC and IPv4 took VM 2's port and
data (the attack of acceptance 2).  The same attack against a VM that opted
into first-use binding succeeds, which is the documented risk of that
option.  Runs with both ingress hooks."""

import json
import time

import pytest

import vmdata
from imdslab import INGRESS_ARGS, INGRESS_IDS, assert_served, counter_delta, vm_curl
from vmhttp import NoResponse, get

mac, ip, iid = vmdata.vm_mac, vmdata.vm_ipv4, vmdata.instance_id
delta = counter_delta


def unpinned_record(i, first_use=False):
    rec = vmdata.vm_record(i, port=False)
    if first_use:
        rec["options"]["port-binding"] = "first-use"
    return rec


@pytest.fixture(scope="module", params=INGRESS_ARGS, ids=INGRESS_IDS)
def lab(make_lab, request):
    lab = make_lab(3)
    lab.load([vmdata.vm_record(1), vmdata.vm_record(2), unpinned_record(3)])
    lab.start_imdsd(*request.param)
    lab.imdsd_args = request.param
    return lab


def row_of(lab, i):
    """[PORT, BINDING] of VM i in `imds-loadmap list`."""
    return list(lab.port_binding(iid(i)))


def curl_as(lab, i):
    """IMDSv1 GET and token PUT from VM i; both CompletedProcess."""
    url = "http://169.254.169.254/latest/"
    return (vm_curl(lab, i, "--max-time", "2", url + "meta-data/instance-id"),
            vm_curl(lab, i, "--max-time", "2", "-X", "PUT", "-H", "X-aws-ec2-metadata-token-ttl-seconds: 60",
                    url + "api/token"))


def assert_nothing(procs, what):
    for p in procs:
        assert p.returncode != 0 and p.stdout == "", f"{what}: got {p.returncode} {p.stdout!r}"


def wait_served(lab, i, seconds=5.0):
    deadline = time.monotonic() + seconds
    while True:
        try:
            r = get(lab.vm_ns(i), "/latest/meta-data/instance-id", timeout=1.0)
            if (r.status, r.body) == (200, iid(i).encode()):
                return
        except NoResponse:
            pass
        assert time.monotonic() < deadline, f"vm{i} not served within {seconds} s"
        time.sleep(0.1)


def test_list_shows_each_vms_port_and_binding(lab):
    assert row_of(lab, 1) == ["vm1", "pinned"]
    assert row_of(lab, 2) == ["vm2", "pinned"]
    assert row_of(lab, 3) == ["-", "unbound"]
    shown = json.loads(lab.loadmap("show", iid(2)).stdout)
    assert (shown["port"], shown["binding"]) == ("vm2", "pinned")


def test_first_speaker_cannot_take_a_silent_pinned_vm(lab):
    """Acceptance 2: VM 2 is loaded and pinned but has never spoken; VM 1
    takes VM 2's MAC and IPv4 and gets nothing, counted as a drop on VM 2;
    then VM 2 is served normally, on its own port."""
    before = lab.stats()
    assert delta({}, before, iid(2), "pass_verified") == 0, "vm2 was not silent"
    with lab.vm_identity(1, mac=mac(2), ipv4=ip(2)):
        assert_nothing(curl_as(lab, 1), "vm1 posing as vm2")
    after = lab.stats()
    assert delta(before, after, iid(2), "drop_wrong_port") >= 2, after
    assert delta(before, after, iid(2), "syn_recorded") == 0, after
    assert row_of(lab, 2) == ["vm2", "pinned"]
    assert_served(lab, 2)
    assert_served(lab, 1)


def test_unpinned_vm_is_not_served_until_bound(lab):
    before = lab.stats()
    assert_nothing(curl_as(lab, 3), "unpinned vm3")
    after = lab.stats()
    assert delta(before, after, iid(3), "drop_unbound") >= 2, after
    assert delta(before, after, iid(3), "syn_recorded") == 0, after

    p = lab.loadmap("bind", iid(3), "vm3")
    assert p.returncode == 0 and "pinned to vm3 (pinned)" in p.stdout, (p.stdout, p.stderr)
    assert row_of(lab, 3) == ["vm3", "pinned"]
    assert_served(lab, 3)

    p = lab.loadmap("unbind", iid(3))
    assert p.returncode == 0, p.stderr
    assert row_of(lab, 3) == ["-", "unbound"]
    assert_nothing(curl_as(lab, 3)[:1], "unbound again")


def test_bind_refuses_bad_input(lab):
    p = lab.loadmap("bind", "i-doesnotexist", "vm3")
    assert p.returncode == 1 and "no VM i-doesnotexist is loaded" in p.stderr, p.stderr
    p = lab.loadmap("bind", iid(3), "a/b")
    assert p.returncode == 1 and '"a/b" is not a port name' in p.stderr, p.stderr
    assert row_of(lab, 3) == ["-", "unbound"]


def test_record_with_a_bad_port_is_refused(lab):
    rec = vmdata.vm_record(3)
    rec["port"] = "bad port"
    p = lab.loadmap("load", lab.write_json("bad-port.json", vmdata.dumps([rec])))
    assert p.returncode == 1, p
    assert ".port: \"bad port\" must be a network interface name" in p.stderr, p.stderr
    assert row_of(lab, 3) == ["-", "unbound"]


def test_first_use_opt_in_shows_the_risk(lab):
    """With options.port-binding "first-use", whoever speaks first with the
    VM's MAC and IPv4 takes it: VM 1 posing as VM 3 is served VM 3's data,
    and the real VM 3 is then dropped.  This is why it is opt-in only."""
    lab.load([unpinned_record(3, first_use=True)], name="first-use.json")
    before = lab.stats()
    with lab.vm_identity(1, mac=mac(3), ipv4=ip(3)):
        stolen = vm_curl(lab, 1, "--max-time", "3", "http://169.254.169.254/latest/meta-data/instance-id")
        assert row_of(lab, 3) == ["vm1", "first-use"]
    assert (stolen.returncode, stolen.stdout) == (0, iid(3)), stolen
    assert_nothing(curl_as(lab, 3)[:1], "the real vm3 after the theft")
    # Its ARP is dropped (its address now belongs to the thief's port,
    # issue 12) unless it still knew 169.254.169.254's MAC; else its SYNs.
    after = lab.stats()
    assert delta(before, after, iid(3), "drop_wrong_port") + delta(before, after, iid(3), "drop_arp_spoof") >= 1
    # Pinning it again ends the theft at once.
    lab.load([vmdata.vm_record(3)], name="pinned.json")
    assert row_of(lab, 3) == ["vm3", "pinned"]
    assert_served(lab, 3)


def test_port_back_with_the_same_name_is_served_without_reload(lab):
    """A VM restarted under the same port name (libvirt's vnetN, or here the
    lab's veth deleted and made again: a new ifindex)."""
    lab.del_vm(2)
    assert row_of(lab, 2) == ["vm2", "waiting"]
    lab.add_vm(2)
    wait_served(lab, 2)
    assert row_of(lab, 2) == ["vm2", "pinned"]
    assert_served(lab, 2)


def test_restart_reconciles_bindings_with_the_bridge(lab):
    """Ports that changed while imdsd was down: a pinned VM whose port came
    back under a new ifindex is bound to the new one, and a first-use VM's
    binding to a port that is gone is released (it would otherwise be
    dropped as drop_wrong_port forever)."""
    lab.load([unpinned_record(3, first_use=True)], name="first-use.json")
    wait_served(lab, 3)
    assert row_of(lab, 3) == ["vm3", "first-use"]
    lab.stop_imdsd()
    lab.del_vm(2)
    lab.add_vm(2)
    lab.del_vm(3)
    lab.start_imdsd(*lab.imdsd_args)
    assert row_of(lab, 3) == ["-", "first-use"]
    assert row_of(lab, 2) == ["vm2", "pinned"]
    assert_served(lab, 2)
    lab.add_vm(3)
    wait_served(lab, 3)  # first use on its own port again
    lab.load([vmdata.vm_record(3)], name="pinned.json")


def test_host_wide_first_use(lab):
    """imdsd --bind-first-use: a VM with no port and no option of its own
    binds on first use (unsafe; documented), pinned VMs stay pinned."""
    lab.load([unpinned_record(3)], name="unpinned.json")
    lab.stop_imdsd()
    lab.start_imdsd(*lab.imdsd_args, "--bind-first-use")
    try:
        wait_served(lab, 3)
        assert row_of(lab, 3) == ["vm3", "bound"]
        with lab.vm_identity(1, mac=mac(2), ipv4=ip(2)):
            assert_nothing(curl_as(lab, 1)[:1], "vm1 posing as pinned vm2")
    finally:
        lab.stop_imdsd()
        lab.start_imdsd(*lab.imdsd_args)
    lab.load([vmdata.vm_record(3)], name="pinned.json")
    assert_served(lab, 3)

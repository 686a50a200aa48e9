"""Acceptance 1: three VMs each get their own instance-id, hostname,
user-data and public key through 169.254.169.254, with IMDSv2 and IMDSv1,
and never another VM's.  Also: dated versions, keep-alive and pipelining,
VMs loaded or deleted while imdsd runs, the loader's list/show/stats.

One lab for the module per ingress hook (imdsd's default, TC ingress, then
--ingress xdp): VMs 1..3 are loaded *before* imdsd starts (the pins exist
first), VM 4 joins later."""

import json
import time

import pytest

import vmdata
from imdslab import INGRESS_ARGS, INGRESS_IDS, assert_served, vm_curl
from vmhttp import Connection, NoResponse, fetch, get, token_for

DATED = ["2009-04-04", "2016-09-02", "2018-09-24", "2021-03-23"]
FIRST = [1, 2, 3]


@pytest.fixture(scope="module", params=INGRESS_ARGS, ids=INGRESS_IDS)
def lab(make_lab, request):
    """Every test runs twice: with imdsd's default ingress check (TC) and
    with --ingress xdp."""
    lab = make_lab(3)
    lab.load([vmdata.vm_record(i) for i in FIRST])
    lab.start_imdsd(*request.param)
    return lab


def test_each_vm_gets_only_its_own_data_with_imdsv2(lab):
    for i in FIRST:
        token = token_for(lab.vm_ns(i))
        assert len(token) == 56, token
        assert_served(lab, i, token)


def test_each_vm_gets_only_its_own_data_with_imdsv1(lab):
    for i in FIRST:
        assert_served(lab, i)


@pytest.mark.parametrize("i", FIRST)
def test_curl_token_flow(lab, i):
    """The way an operator (and the demo) asks: curl -X PUT, then GETs."""
    p = vm_curl(lab, i, "-X", "PUT", "-H", "X-aws-ec2-metadata-token-ttl-seconds: 300",
                "http://169.254.169.254/latest/api/token")
    assert p.returncode == 0 and len(p.stdout) == 56, p
    for path, want in vmdata.expected_paths(i).items():
        if b"\0" in want:
            continue  # binary user-data: checked byte-exact by the socket client tests
        q = lab.in_vm(i, "curl", "-sS", "--fail", "-H", f"X-aws-ec2-metadata-token: {p.stdout}",
                      f"http://169.254.169.254{path}", check=False)
        assert q.returncode == 0, q
        assert q.stdout.encode() == want, f"vm{i} {path}: {q.stdout!r}"


@pytest.mark.parametrize("version", DATED)
def test_dated_versions_serve_the_same_data(lab, version):
    for i in FIRST:
        assert_served(lab, i, prefix="/" + version)


def test_version_list(lab):
    r = get(lab.vm_ns(1), "/")
    assert r.status == 200
    versions = r.text.split("\n")
    assert versions[-1] == "latest" and set(DATED) <= set(versions), r.text


def test_every_listed_entry_answers_and_nothing_leaks(lab):
    """A cloud-init-like crawl of meta-data/: each listed entry must answer
    200 (one failing leaf makes cloud-init drop everything) and no body may
    hold another VM's data."""
    for i in FIRST:
        ns = lab.vm_ns(i)
        todo, seen = ["/latest/meta-data/"], 0
        while todo:
            path = todo.pop()
            r = get(ns, path)
            seen += 1
            assert r.status == 200, f"vm{i} {path}: {r!r}"
            vmdata.assert_no_leak(i, r.body, lab.vms, path)
            if path.endswith("/"):
                for entry in r.text.split("\n"):
                    assert entry, f"vm{i} {path}: empty entry in listing {r.text!r}"
                    if "=" in entry:  # public-keys/: "0=name"
                        entry = entry.split("=", 1)[0] + "/"
                    todo.append(path + entry)
            assert seen < 300, "listing does not end"
        assert seen >= 6


def test_unknown_path_is_404(lab):
    r = get(lab.vm_ns(1), "/latest/meta-data/no-such-thing")
    assert r.status == 404, r


def test_keep_alive_two_requests_on_one_connection(lab):
    with Connection(lab.vm_ns(2)) as c:
        r1 = c.request("GET", "/latest/meta-data/instance-id")
        r2 = c.request("GET", "/latest/meta-data/hostname")
    assert (r1.status, r1.body) == (200, vmdata.instance_id(2).encode())
    assert (r2.status, r2.body) == (200, vmdata.hostname(2).encode())


def test_pipelined_requests_are_answered_in_order(lab):
    req = ("GET /latest/meta-data/{} HTTP/1.1\r\nHost: 169.254.169.254\r\n\r\n")
    with Connection(lab.vm_ns(3)) as c:
        c.send_raw((req.format("hostname") + req.format("instance-id")).encode())
        r1 = c.read_response()
        r2 = c.read_response()
    assert r1.body == vmdata.hostname(3).encode()
    assert r2.body == vmdata.instance_id(3).encode()


@pytest.mark.parametrize("raw,status", [
    (b"THIS IS NOT HTTP\r\n\r\n", 400),
    (b"GET /latest/meta-data/ HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n", 431),
], ids=["garbage", "oversized-headers"])
def test_bad_request_gets_an_error_and_others_are_still_served(lab, raw, status):
    with Connection(lab.vm_ns(1)) as c:
        c.send_raw(raw)
        r = c.read_response()
    assert r.status == status, r
    for i in FIRST:
        r = get(lab.vm_ns(i), "/latest/meta-data/instance-id")
        assert (r.status, r.body) == (200, vmdata.instance_id(i).encode())


def test_counters_after_serving(lab):
    for i in FIRST:
        get(lab.vm_ns(i), "/latest/meta-data/instance-id")
    stats = lab.stats()
    for i in FIRST:
        assert stats.get((vmdata.instance_id(i), "pass_verified"), 0) > 0, stats
        assert stats.get((vmdata.instance_id(i), "syn_recorded"), 0) > 0, stats
    total = stats.get(("total", "syn_recorded"), 0)
    assert total >= sum(stats.get((vmdata.instance_id(i), "syn_recorded"), 0) for i in FIRST)
    one = lab.stats(vmdata.instance_id(1))
    assert set(who for who, _ in one) == {vmdata.instance_id(1)}, one


def test_list_and_show(lab):
    for i in FIRST:
        row = lab.list_row(vmdata.instance_id(i))
        assert row["MAC"].lower() == vmdata.vm_mac(i) and row["IPV4"] == vmdata.vm_ipv4(i), row
        # pinned to its lab port by its record, and bound since that port is on the bridge
        assert row["PORT"] == vmdata.vm_port(i) and row["BINDING"] == "pinned", row
        assert row["BRIDGE"] == lab.bridge, row
        assert row["TOKENS"] == "optional" and row["HOP-LIMIT"] == "1", row
    p = lab.loadmap("show", vmdata.instance_id(2))
    assert p.returncode == 0, p.stderr
    shown = json.loads(p.stdout)
    assert vmdata.instance_id(2) in json.dumps(shown)
    assert shown["binding"] == "pinned", shown
    assert lab.loadmap("show", "i-doesnotexist").returncode == 1


def wait_for_ingress_check(lab, port, seconds=5.0):
    """imdsd put its check of what the VM sends on PORT, which joined the
    bridge after imdsd started, on the hook imdsd was started with."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        hooks = lab.port_ingress_hooks(port)
        if hooks:
            assert hooks == {lab.ingress_hook}, f"{port}: ingress check on {hooks}, not {lab.ingress_hook}"
            return
        time.sleep(0.05)
    raise AssertionError(f"imdsd did not attach its ingress check to {port}, which joined the bridge later")


def test_vm_loaded_while_running_is_served_and_delete_removes_it(lab):
    lab.add_vm(4)
    wait_for_ingress_check(lab, "vm4")
    ns = lab.vm_ns(4)
    before = lab.stats().get(("total", "drop_unknown_mac"), 0)
    with pytest.raises(NoResponse):
        fetch(ns, "GET", "/latest/meta-data/instance-id", timeout=1.5)
    assert lab.stats().get(("total", "drop_unknown_mac"), 0) > before, "unknown VM's SYN not counted"

    lab.load([vmdata.vm_record(4)], name="vm4.json")
    assert_served(lab, 4, token_for(ns))
    assert_served(lab, 1)

    p = lab.loadmap("delete", vmdata.instance_id(4))
    assert p.returncode == 0, p.stderr
    with pytest.raises(NoResponse):
        fetch(ns, "GET", "/latest/meta-data/instance-id", timeout=1.5)
    assert vmdata.instance_id(4) not in [r[0] for r in lab.list_rows()]
    assert lab.loadmap("delete", vmdata.instance_id(4)).returncode == 1
    for i in FIRST:
        assert_served(lab, i)


def test_update_while_running_is_served(lab):
    try:
        lab.load([vmdata.vm_record(1, host="renamed-vm01.lab.internal")], name="vm1-new.json")
        r = get(lab.vm_ns(1), "/latest/meta-data/hostname")
        assert (r.status, r.body) == (200, b"renamed-vm01.lab.internal")
        assert_served(lab, 2)
    finally:
        lab.load([vmdata.vm_record(1)], name="vm1-back.json")
    assert_served(lab, 1)


def test_vm_on_a_new_port_is_served_once_the_old_port_left(lab):
    """A VM is pinned to its port's name, not to the device: when its port
    left the bridge and a new one of the same name joins (the VM restarted
    under the same name), it is bound there again without a reload."""
    assert_served(lab, 2)  # bound to its pinned port
    lab.del_vm(2)
    lab.add_vm(2)
    wait_for_ingress_check(lab, "vm2")
    assert_served(lab, 2)
    for i in (1, 3):
        assert_served(lab, i)



def test_ingress_check_is_on_the_chosen_hook_only(lab):
    """TC ingress unless imdsd was told --ingress xdp; TC egress (the hop
    limit) either way; never both ingress hooks (every packet would be
    checked and charged twice)."""
    for port in ("vm1", "vm3"):
        assert lab.port_ingress_hooks(port) == {lab.ingress_hook}, port
        assert any(n.startswith("imds_tc_egress") for n in lab.tc_filter_names(port, "egress")), port
    if lab.ingress_hook == "tc":
        assert lab.port_xdp("vm1") is None, "the default TC ingress came with an XDP program"

"""Acceptance 4: IMDSv2 token rules, as EC2 and the real clients expect them
(shared/spec/ec2-imds-behaviour.md 1.1, 1.2).

VMs 1 and 2 have http-tokens optional (VM 2 with hop limit 3), VM 3 has
http-tokens required."""

import time

import pytest

import vmdata
from vmhttp import Capture, Connection, get, put_token, token_for

iid = vmdata.instance_id
TTL_HEADER = "X-Aws-Ec2-Metadata-Token-Ttl-Seconds"


@pytest.fixture(scope="module")
def lab(make_lab):
    lab = make_lab(3)
    lab.load([vmdata.vm_record(1), vmdata.vm_record(2, hop_limit=3), vmdata.vm_record(3, tokens="required")])
    lab.start_imdsd()
    return lab


@pytest.mark.parametrize("ttl", ["1", "60", "21600"])
def test_valid_ttl_gets_a_token_and_is_echoed(lab, ttl):
    r = put_token(lab.vm_ns(1), ttl)
    assert r.status == 200, r
    assert len(r.body) == 56 and r.body.endswith(b"=="), r.body
    assert r.header(TTL_HEADER) == ttl, r.headers


@pytest.mark.parametrize("ttl", ["0", "21601", "-1", "abc", "12abc", "1.5", "", None],
                         ids=["0", "21601", "negative", "alpha", "digits-then-alpha", "fraction", "empty", "missing"])
def test_bad_or_missing_ttl_is_400(lab, ttl):
    r = put_token(lab.vm_ns(1), ttl)
    assert r.status == 400, r
    assert len(r.body) != 56, "a token came with a 400"


def test_token_put_with_x_forwarded_for_is_403(lab):
    r = put_token(lab.vm_ns(1), "21600", extra={"X-Forwarded-For": "10.77.0.99"})
    assert r.status == 403, r
    assert len(r.body) != 56


def test_get_on_token_path_is_405(lab):
    r = get(lab.vm_ns(1), "/latest/api/token")
    assert r.status == 405, r
    assert r.header("Allow") == "OPTIONS, PUT", r.headers


def test_put_on_dated_token_path_is_403(lab):
    r = put_token(lab.vm_ns(1), "21600", path="/2021-03-23/api/token")
    assert r.status == 403, r


def test_token_works_for_its_own_vm(lab):
    for i in (1, 2, 3):
        token = token_for(lab.vm_ns(i))
        r = get(lab.vm_ns(i), "/latest/meta-data/instance-id", token)
        assert (r.status, r.body) == (200, iid(i).encode()), (i, r)


def test_token_of_another_vm_is_401(lab):
    token1 = token_for(lab.vm_ns(1))
    for other in (2, 3):
        r = get(lab.vm_ns(other), "/latest/meta-data/instance-id", token1)
        assert r.status == 401, (other, r)
        vmdata.assert_no_leak(other, r.body, [1, 2, 3])
        assert iid(other).encode() not in r.body


def test_made_up_token_is_401(lab):
    forged = "AQAEA" + "A" * 49 + "=="
    for i in (1, 3):
        r = get(lab.vm_ns(i), "/latest/meta-data/instance-id", forged)
        assert r.status == 401, (i, r)


def _just_after_a_second_boundary():
    # The server counts whole seconds: start right after a tick, so a 1 s
    # token is certainly valid for the next few hundred milliseconds.
    time.sleep(1.02 - (time.time() % 1.0))


def test_expired_token_is_401(lab):
    ns = lab.vm_ns(1)
    _just_after_a_second_boundary()
    token = token_for(ns, ttl=1)
    r = get(ns, "/latest/meta-data/instance-id", token)
    assert (r.status, r.body) == (200, iid(1).encode()), "a fresh 1 s token must work at once"
    time.sleep(2.2)
    r = get(ns, "/latest/meta-data/instance-id", token)
    assert r.status == 401, r


def test_required_mode_needs_a_token(lab):
    ns = lab.vm_ns(3)
    r = get(ns, "/latest/meta-data/instance-id")
    assert r.status == 401, r
    assert iid(3).encode() not in r.body
    r = get(ns, "/latest/user-data")
    assert r.status == 401, r
    token = token_for(ns)
    for path, want in vmdata.expected_paths(3).items():
        r = get(ns, path, token)
        assert (r.status, r.body) == (200, want), (path, r)


def test_optional_mode_serves_imdsv1(lab):
    r = get(lab.vm_ns(1), "/latest/meta-data/instance-id")
    assert (r.status, r.body) == (200, iid(1).encode())


def _reply_ttls(lab, i, method, path, headers):
    """IP TTLs of the data-carrying segments of one reply, as seen in VM i."""
    with Capture(lab.vm_ns(i)) as cap:
        with Connection(lab.vm_ns(i)) as c:
            r = c.request(method, path, headers)
            port = c.local_port
        segs = cap.tcp_segments(seconds=0.3)
    assert r.status == 200, r
    ttls = {ttl for ttl, dport, _flags, payload in segs if dport == port and payload > 0}
    assert ttls, f"no reply segment captured: {segs}"
    return ttls


@pytest.mark.parametrize("i,hop_limit", [(1, 1), (2, 3)])
def test_token_reply_leaves_with_the_hop_limit_as_ttl(lab, i, hop_limit):
    ttls = _reply_ttls(lab, i, "PUT", "/latest/api/token", {"X-aws-ec2-metadata-token-ttl-seconds": "60"})
    assert ttls == {hop_limit}, ttls
    ttls = _reply_ttls(lab, i, "GET", "/latest/meta-data/instance-id", None)
    assert min(ttls) > hop_limit, f"data replies must not be hop-limited: {ttls}"

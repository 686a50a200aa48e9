"""User data beyond EC2's 16 KiB (issue 3: "larger only when configured").

VM 1 allows 1 MiB with options.user-data-max and is loaded with 300,000
random bytes; VM 2 keeps EC2's limit.  Through the bridge, VM 1 gets its
user data byte for byte (one answer larger than imdsd's bound on unread
output, which must not be mistaken for a client that stopped reading), and
VM 2 is still served.  Loading more than 16 KiB
without the option is refused, naming the value, and changes nothing."""

import base64
import os

import pytest

import vmdata
from vmhttp import get

BIG = os.urandom(300_000)


@pytest.fixture(scope="module")
def lab(make_lab):
    lab = make_lab(2)
    big = vmdata.vm_record(1)
    big.pop("user-data", None)
    big["options"]["user-data-max"] = 1 << 20
    big["user-data-base64"] = base64.b64encode(BIG).decode()
    lab.load([big, vmdata.vm_record(2)])
    lab.start_imdsd()
    return lab


def test_large_user_data_is_served_whole(lab):
    r = get(lab.vm_ns(1), "/latest/user-data", timeout=10)
    assert r.status == 200
    assert r.header("Content-Type") == "application/octet-stream"
    assert r.body == BIG


def test_other_vm_is_served(lab):
    r = get(lab.vm_ns(2), "/latest/meta-data/instance-id")
    assert (r.status, r.text) == (200, vmdata.instance_id(2))


def test_more_than_16_kib_without_the_option_is_refused(lab):
    rec = vmdata.vm_record(2)
    rec.pop("user-data", None)
    rec["user-data-base64"] = base64.b64encode(b"x" * 16385).decode()
    path = lab.write_json("too-big.json", vmdata.dumps([rec]))
    p = lab.loadmap("load", path)
    assert p.returncode == 1
    assert "vms[0].user-data-base64: user data is 16385 bytes, more than the 16384 allowed" in p.stderr
    r = get(lab.vm_ns(2), "/latest/user-data")
    assert (r.status, r.body) == (200, vmdata.user_data(2))

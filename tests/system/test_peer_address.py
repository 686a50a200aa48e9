"""Issue 15: an accepted socket's peer address read on the io_uring ring.

imdsd learns which VM made a connection from the data plane's verified SYN,
keyed by the VM-side endpoint.  On Linux 6.7+ it reads that endpoint with
an IORING_OP_URING_CMD getsockopt(SO_PEERNAME) instead of a getpeername()
per connection (user/serve/peer.c); elsewhere, and with
IMDS_TEST_PEERNAME=syscall, by getpeername().  The module runs in both
modes, over IPv4 and IPv6:

- each VM gets its own instance-id, and strace attached to every imdsd
  thread counts the getpeername() calls: none on the ring, one per
  connection without it;
- a connection from the host itself (its SYN never crossed a VM's port,
  so the data plane verified nothing) gets no byte, and the VMs are served
  after it.
"""

import os

import pytest

import vmdata
from imdslab import count_calls
from ipv6lab import HOST6, IMDS6, curl6, enable_ipv6, record
from vmhttp import NoResponse, get

iid = vmdata.instance_id
MODES = ["ring", "syscall"]
CONNS = 6  # connections of each VM while strace counts


def kernel_has_socket_cmds():
    major, minor = (int(x) for x in os.uname().release.split(".")[:2])
    return (major, minor) >= (6, 7)


@pytest.fixture(scope="module", params=MODES)
def lab(make_lab, request):
    if request.param == "ring" and not kernel_has_socket_cmds():
        pytest.skip(f"Linux {os.uname().release} has no io_uring socket commands (6.7+)")
    lab = make_lab(2)
    lab.ip_host("-6", "addr", "add", f"{HOST6}/64", "dev", lab.bridge, "nodad")
    lab.load([record(i) for i in lab.vms])
    wrapper = ["env", "IMDS_TEST_PEERNAME=syscall"] if request.param == "syscall" else []
    lab.start_imdsd(wrapper=wrapper)
    enable_ipv6(lab, 1)
    enable_ipv6(lab, 2)
    lab.mode = request.param
    return lab


def test_log_names_the_mode(lab):
    want = "read on the ring (io_uring getsockopt)" if lab.mode == "ring" else "getpeername()"
    assert f"peer addresses: {want}" in lab.log_text()


def test_vms_served_and_getpeername_counted(lab):
    def serve():
        for _ in range(CONNS):
            for i in lab.vms:
                r = get(lab.vm_ns(i), "/latest/meta-data/instance-id")
                assert (r.status, r.body.decode()) == (200, iid(i))
                assert curl6(lab, i, "/latest/meta-data/instance-id") == (0, iid(i))

    calls = count_calls(lab, "getpeername", lab.mode, serve)
    conns = CONNS * len(lab.vms) * 2
    assert calls == (0 if lab.mode == "ring" else conns), f"{calls} getpeername() for {conns} connections"


def test_host_local_connection_gets_nothing(lab):
    with pytest.raises(NoResponse) as e:
        get(lab.host_ns, "/latest/meta-data/instance-id")
    assert e.value.kind in ("closed", "reset"), e.value
    p = lab.host("curl", "-sS", "-g", "--max-time", "5", f"http://[{IMDS6}]/latest/meta-data/instance-id",
                 check=False, timeout=20)
    assert p.returncode in (52, 56) and p.stdout == "", (p.returncode, p.stdout, p.stderr)
    for i in lab.vms:
        assert get(lab.vm_ns(i), "/latest/meta-data/instance-id").body.decode() == iid(i)
        assert curl6(lab, i, "/latest/meta-data/instance-id") == (0, iid(i))

"""Acceptance 6: restarting imdsd loses nothing.  VMs loaded before are
served again without running the loader, and tokens issued before the
restart still work (the token key is pinned).  Also what SIGTERM must leave
behind: exit status 0, its programs off the ports (TC ingress, the default,
or XDP, and TC egress), 169.254.169.254 removed, pins kept.

VM 1 http-tokens optional, VM 2 required."""

import os
import signal

import pytest

import vmdata
from imdslab import assert_served
from vmhttp import NoResponse, get, token_for

iid = vmdata.instance_id
IMDS_ADDR = "169.254.169.254"


@pytest.fixture(scope="module")
def lab(make_lab):
    lab = make_lab(2)
    lab.load([vmdata.vm_record(1), vmdata.vm_record(2, tokens="required")])
    lab.start_imdsd()
    return lab


def assert_nothing_left(lab):
    for port in ("vm1", "vm2"):
        assert lab.port_xdp(port) is None, f"imdsd left XDP on {port}"
        for direction in ("ingress", "egress"):
            names = lab.tc_filter_names(port, direction)
            assert not any(n.startswith("imds_") for n in names), f"imdsd left {names} on {port} {direction}"
    assert lab.tcx_pins() == [], "imdsd left pinned TCX links"


def test_restart_keeps_data_and_tokens(lab):
    assert lab.port_ingress_hooks("vm1") == {"tc"}, "the default ingress check is TC"
    tokens = {i: token_for(lab.vm_ns(i)) for i in (1, 2)}
    for i in (1, 2):
        assert_served(lab, i, tokens[i])

    assert lab.stop_imdsd(signal.SIGTERM) == 0, "imdsd must exit 0 on SIGTERM"
    assert IMDS_ADDR not in lab.host_addresses(), "imdsd left 169.254.169.254 on the bridge"
    assert_nothing_left(lab)
    assert os.listdir(lab.pin_dir), "pinned maps must stay"
    with pytest.raises(NoResponse):
        get(lab.vm_ns(1), "/latest/meta-data/instance-id", timeout=1.0)

    lab.start_imdsd()
    assert IMDS_ADDR in lab.host_addresses()
    for i in (1, 2):
        assert_served(lab, i, tokens[i])
    r = get(lab.vm_ns(2), "/latest/meta-data/instance-id")
    assert r.status == 401, "VM 2 still requires a token after the restart"
    assert_served(lab, 1)


def test_sigint_also_stops_cleanly_and_restart_serves(lab):
    token = token_for(lab.vm_ns(2))
    assert lab.stop_imdsd(signal.SIGINT) == 0, "imdsd must exit 0 on SIGINT"
    assert IMDS_ADDR not in lab.host_addresses()
    assert_nothing_left(lab)
    lab.start_imdsd("--workers", "2", "--ingress", "xdp")
    assert lab.port_ingress_hooks("vm1") == {"xdp"}
    assert_served(lab, 2, token)
    assert_served(lab, 1)
    assert lab.stop_imdsd() == 0
    assert_nothing_left(lab)
    rows = {r[0] for r in lab.list_rows()}
    assert rows == {iid(1), iid(2)}

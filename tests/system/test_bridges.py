"""Issue 17: one imdsd serves several bridges of a host.

The lab's bridge br-imds carries VMs 1 and 2, a second bridge br-imds-b VMs
3 and 4, all in the lab's host namespace; imdsd is started with
`--bridge br-imds,br-imds-b --bridge "br-imds-c br-x*"`: two bridges that
exist, one named that does not exist yet, and a pattern.  VMs 5 (for
br-imds-c) and 6 (for br-x1) are loaded, pinned to ports that come later.

1. Every VM on either bridge is served its own data; a VM of br-imds-b
   taking the MAC and IPv4 of a VM of br-imds gets nothing, and the drop is
   counted on the VM it posed as.
2. A bridge created while imdsd runs, named in the configuration or
   matched by the pattern, is served within 1 s (the metadata address on
   it, the data plane on its port); deleting it leaves the others served.
3. A second imdsd on the same store, or on the same address with another
   store, exits non-zero naming the first one's PID; the first keeps
   serving.
"""

import json
import os
import re
import shutil
import time

import pytest

import vmdata
from imdslab import assert_served, counter_delta, run, vm_curl, wait_until

iid = vmdata.instance_id
IMDS_ADDR = "169.254.169.254"
BRIDGE_B = "br-imds-b"
BRIDGE_C = "br-imds-c"  # named in the configuration, made while imdsd runs
PATTERN = "br-x*"
BRIDGE_X = "br-x1"  # matched by the pattern, made while imdsd runs
ON_A, ON_B = (1, 2), (3, 4)
VM_C, VM_X = 5, 6
ATTACH_BOUND_S = 1.0


@pytest.fixture(scope="module")
def lab(make_lab):
    lab = make_lab(2)
    lab.add_bridge(BRIDGE_B)
    for i in ON_B:
        lab.add_vm(i, BRIDGE_B)
    lab.load([vmdata.vm_record(i) for i in range(1, 7)])
    # One value with a comma, one with a space: both list separators.
    lab.start_imdsd(bridges=[f"{lab.bridge},{BRIDGE_B}", f"{BRIDGE_C} {PATTERN}"])
    return lab


def addresses(lab, bridge):
    p = lab.ip_host("-j", "addr", "show", "dev", bridge, check=False)
    if p.returncode != 0:
        return []
    info = json.loads(p.stdout)
    return [a["local"] for a in info[0].get("addr_info", []) if a.get("family") == "inet"]


def served_here(lab, bridge, port):
    """imdsd has put the metadata address on `bridge` and its check on `port`."""
    return IMDS_ADDR in addresses(lab, bridge) and lab.port_ingress_hooks(port) == {"tc"}


def assert_nothing(procs, what):
    for p in procs:
        assert p.returncode != 0 and p.stdout == "", f"{what}: got {p.returncode} {p.stdout!r}"


def test_every_vm_of_both_bridges_is_served_its_own_data(lab):
    for bridge in (lab.bridge, BRIDGE_B):
        assert IMDS_ADDR in addresses(lab, bridge), f"no metadata address on {bridge}"
    for i in ON_A + ON_B:
        assert_served(lab, i)
    for i, bridge in [(1, lab.bridge), (2, lab.bridge), (3, BRIDGE_B), (4, BRIDGE_B)]:
        row = lab.list_row(iid(i))
        assert (row["BRIDGE"], row["PORT"], row["BINDING"]) == (bridge, f"vm{i}", "pinned"), row
    for i in (VM_C, VM_X):
        row = lab.list_row(iid(i))
        assert (row["BRIDGE"], row["PORT"], row["BINDING"]) == ("-", f"vm{i}", "waiting"), row
    shown = json.loads(lab.loadmap("show", iid(3)).stdout)
    assert (shown["bridge"], shown["port"]) == (BRIDGE_B, "vm3"), shown
    assert json.loads(lab.loadmap("show", iid(VM_C)).stdout)["bridge"] is None
    log = lab.log_text()
    assert f"no bridge named {BRIDGE_C} yet" in log and f"no bridge matches {PATTERN} yet" in log, log


def test_vm_of_one_bridge_posing_as_a_vm_of_the_other_gets_nothing(lab):
    """VM 3 (br-imds-b) takes VM 1's (br-imds) MAC and IPv4: its port is not
    VM 1's pinned port, so nothing it sends is verified."""
    url = "http://169.254.169.254/latest/"
    before = lab.stats()
    with lab.vm_identity(3, mac=vmdata.vm_mac(1), ipv4=vmdata.vm_ipv4(1)):
        procs = (vm_curl(lab, 3, "--max-time", "2", url + "meta-data/instance-id"),
                 vm_curl(lab, 3, "--max-time", "2", "-X", "PUT", "-H",
                         "X-aws-ec2-metadata-token-ttl-seconds: 60", url + "api/token"))
    assert_nothing(procs, "vm3 posing as vm1")
    after = lab.stats()
    assert counter_delta(before, after, iid(1), "drop_wrong_port") >= 2, after
    assert counter_delta(before, after, iid(1), "syn_recorded") == 0, after
    assert lab.port_binding(iid(1)) == ("vm1", "pinned")
    assert_served(lab, 1)
    assert_served(lab, 3)


@pytest.mark.parametrize("bridge,vm", [(BRIDGE_C, VM_C), (BRIDGE_X, VM_X)], ids=["named", "pattern"])
def test_bridge_made_while_imdsd_runs_is_served_within_1s(lab, bridge, vm):
    t0 = time.monotonic()
    lab.add_bridge(bridge)
    made = time.monotonic()
    addr_s = wait_until(f"metadata address on {bridge}", lambda: IMDS_ADDR in addresses(lab, bridge),
                        timeout=5)
    lab.add_vm(vm, bridge)
    port_s = wait_until(f"vm{vm} attached", lambda: served_here(lab, bridge, f"vm{vm}"), timeout=5)
    print(f"\n{bridge}: address {addr_s * 1000:.0f} ms after the bridge was made "
          f"({(made - t0) * 1000:.0f} ms to make it); port vm{vm} attached {port_s * 1000:.0f} ms "
          f"after it joined")
    assert addr_s < ATTACH_BOUND_S and port_s < ATTACH_BOUND_S, (addr_s, port_s)
    assert_served(lab, vm)
    row = lab.list_row(iid(vm))
    assert (row["BRIDGE"], row["BINDING"]) == (bridge, "pinned"), row


def test_deleting_a_bridge_leaves_the_others_served(lab):
    lab.del_bridge(BRIDGE_C)
    wait_until("vm5 released", lambda: lab.port_binding(iid(VM_C)) == (f"vm{VM_C}", "waiting"), timeout=5)
    wait_until(f"imdsd forgot {BRIDGE_C}", lambda: re.search(
        rf"imdsd: bridge {BRIDGE_C} \(ifindex \d+\) is gone: no longer served", lab.log_text()), timeout=5)
    assert re.search(rf"port vm{VM_C} \(ifindex \d+\) left the bridge {BRIDGE_C}", lab.log_text())
    assert lab.imdsd.poll() is None, "imdsd died"
    for i in ON_A + ON_B + (VM_X,):
        assert_served(lab, i)
    assert lab.list_row(iid(VM_C))["BRIDGE"] == "-"


@pytest.mark.parametrize("value,message", [
    ("br0 a-name-of-16-bytes", '--bridge: "a-name-of-16-bytes" is longer than an interface name'),
    ("br/0", '--bridge: "br/0" is not an interface name'),
    (" , ", "--bridge is required (and names no bridge when empty)"),
], ids=["too-long", "slash", "empty"])
def test_bad_bridge_lists_are_refused_naming_the_entry(lab, value, message):
    """What an IMDS_BRIDGES with a typo, or an empty one, gives: exit 2
    before anything is touched, the entry named."""
    never = lab.pin_dir + "-never"
    p = run(lab.imdsd_cmd(bridges=[value], pin_dir=never), check=False, timeout=20)
    assert p.returncode == 2 and message in p.stderr, (p.returncode, p.stderr)
    assert not os.path.exists(never), "a refused imdsd created its pin directory"


def test_second_imdsd_on_the_same_store_is_refused(lab):
    first = lab.imdsd.pid
    p = run(lab.imdsd_cmd(bridges=[lab.bridge]), check=False, timeout=20)
    assert p.returncode == 1, (p.returncode, p.stderr)
    assert f"another imdsd (PID {first}) already serves the store {lab.pin_dir}" in p.stderr, p.stderr
    assert "bridge br-imds" not in p.stderr and "attached" not in p.stderr, "the refused imdsd touched ports"
    assert lab.imdsd.poll() is None
    for i in ON_A + ON_B:
        assert lab.port_ingress_hooks(f"vm{i}") == {"tc"}
        assert_served(lab, i)


def test_second_imdsd_on_the_same_address_is_refused(lab):
    """Another store, the same network namespace: it would share
    169.254.169.254:80 with the first through SO_REUSEPORT."""
    first = lab.imdsd.pid
    other = lab.pin_dir + "-second"
    try:
        p = run(lab.imdsd_cmd(bridges=[BRIDGE_B], pin_dir=other), check=False, timeout=20)
    finally:
        shutil.rmtree(other, ignore_errors=True)
    assert p.returncode == 1, (p.returncode, p.stderr)
    assert f"169.254.169.254:80 is already served in this network namespace by PID {first}" in p.stderr, p.stderr
    assert "attached" not in p.stderr, "the refused imdsd touched ports"
    for i in ON_B:
        assert lab.port_ingress_hooks(f"vm{i}") == {"tc"}
        assert_served(lab, i)


def test_stop_takes_the_address_off_every_bridge(lab):
    assert lab.stop_imdsd() == 0
    for bridge in (lab.bridge, BRIDGE_B, BRIDGE_X):
        assert IMDS_ADDR not in addresses(lab, bridge), f"imdsd left the metadata address on {bridge}"
    for i in ON_A + ON_B + (VM_X,):
        assert lab.port_ingress_hooks(f"vm{i}") == set(), f"imdsd left its check on vm{i}"
    # The claim went with the process: a new imdsd takes the store.  It
    # serves br-imds only, so the VMs bound on the other bridges' ports
    # are released at its start (waiting), and br-imds's VMs are served.
    lab.start_imdsd(bridges=[lab.bridge])
    assert_served(lab, 1)
    for i in ON_B + (VM_X,):
        row = lab.list_row(iid(i))
        assert (row["BRIDGE"], row["BINDING"]) == ("-", "waiting"), row

"""The per-VM packet budget in XDP (issue 4): a VM that floods the metadata
address is held to its token bucket (options rate-pps / rate-burst), its
excess is dropped and counted as drop_budget, and another VM is served
meanwhile without losing a packet to the budget.

VM 1 gets rate-pps 100 and rate-burst 50 and sends ~1000 crafted SYNs with
its own (verified) identity as fast as scapy can; VM 2 keeps the default
budget and fetches normally at the same time.  The admitted count is bounded
by what the bucket can give over the measured window (burst + rate x
window), so the test does not depend on how fast scapy sends."""

import itertools
import threading
import time

import pytest

import vmdata
from imdslab import counter_delta
from vmhttp import get

mac, ip, iid = vmdata.vm_mac, vmdata.vm_ipv4, vmdata.instance_id
RATE, BURST = 100, 50
FLOOD = 1000
_ports = itertools.count(62000, FLOOD)  # outside the ephemeral range, see spoof.py


@pytest.fixture(scope="module")
def lab(make_lab):
    lab = make_lab(2)
    limited = vmdata.vm_record(1)
    limited["options"].update({"rate-pps": RATE, "rate-burst": BURST})
    lab.load([limited, vmdata.vm_record(2)])
    lab.start_imdsd()
    lab.bind_ports()
    return lab


delta = counter_delta


def fetch_until(lab, i, stop, results):
    """VM i's normal client: one GET at a time until `stop` is set."""
    while not stop.is_set():
        results.append(get(lab.vm_ns(i), "/latest/meta-data/instance-id"))
        time.sleep(0.05)


def test_flood_is_held_to_the_budget_and_other_vm_is_served(lab):
    time.sleep(BURST / RATE + 0.2)  # VM 1's bucket is full again after its first fetch
    stop, served = threading.Event(), []
    other = threading.Thread(target=fetch_until, args=(lab, 2, stop, served))
    before = lab.stats()
    t0 = time.monotonic()
    other.start()
    try:
        res = lab.spoof_syns(1, mac(1), ip(1), next(_ports), count=FLOOD, listen=0.3)
    finally:
        stop.set()
        other.join(30)
    after = lab.stats()
    window = time.monotonic() - t0
    assert res["sent"] == FLOOD
    dropped = delta(before, after, iid(1), "drop_budget")
    passed = delta(before, after, iid(1), "pass_verified")
    # Everything VM 1 sent to the service (SYNs, and its kernel's RSTs to
    # the SYN-ACKs it had no socket for) is either admitted or dropped.
    assert dropped > FLOOD // 2, (dropped, passed, window, after)
    assert passed <= BURST + RATE * window + 10, (dropped, passed, window, after)
    assert passed >= BURST, (dropped, passed, window, after)
    assert delta(before, after, "total", "drop_budget") == dropped
    # VM 2 was served throughout and lost nothing to the budget.
    assert served and all((r.status, r.body) == (200, iid(2).encode()) for r in served), served
    assert delta(before, after, iid(2), "drop_budget") == 0, after
    assert delta(before, after, iid(2), "pass_verified") > 0, after


def test_budget_refills_after_the_flood(lab):
    """The budget only delays: once VM 1 is quiet it is served again."""
    time.sleep(BURST / RATE + 0.2)
    before = lab.stats()
    r = get(lab.vm_ns(1), "/latest/meta-data/instance-id")
    after = lab.stats()
    assert (r.status, r.body) == (200, iid(1).encode()), r
    assert delta(before, after, iid(1), "drop_budget") == 0, after

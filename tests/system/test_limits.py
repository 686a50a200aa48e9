"""imdsd's per-VM HTTP limits (issue 4, docs/limits.md), through the real
bridge, XDP and imdsd with several workers.

VM 1 has request-rate 20 and request-burst 20: after its burst it gets 429
with Retry-After, whichever worker serves its connection, while VM 2 (the
defaults) is served 200 throughout.  VM 3 has max-connections 4: a fifth
connection is closed without a byte while four are open, its next SYNs
are dropped in the data plane for a second (drop_conn_limit), and it is
let in again once one of them closes.  The data-plane packet budget of VMs 1 and 3
is raised so that only imdsd's limits are under test."""

import time

import pytest

import vmdata
from imdslab import counter_delta
from vmhttp import Connection, NoResponse, get

iid = vmdata.instance_id
RATE, BURST = 20, 20
MAX_CONNS = 4
WORKERS = 4
PATH = "/latest/meta-data/instance-id"
NO_PACKET_BUDGET = {"rate-pps": 100000, "rate-burst": 100000}


@pytest.fixture(scope="module")
def lab(make_lab):
    lab = make_lab(3)
    limited = vmdata.vm_record(1)
    limited["options"].update({"request-rate": RATE, "request-burst": BURST, **NO_PACKET_BUDGET})
    capped = vmdata.vm_record(3)
    capped["options"].update({"max-connections": MAX_CONNS, **NO_PACKET_BUDGET})
    lab.load([limited, vmdata.vm_record(2), capped])
    lab.start_imdsd("--workers", str(WORKERS))
    lab.bind_ports()
    return lab


def full_bucket():
    """VM 1's bucket is full again after any earlier use."""
    time.sleep(BURST / RATE + 0.2)


def pipeline(conn, requests):
    """Sends every (method, headers) request at once, then reads the
    answers: imdsd handles them back to back, well within one refill
    interval (50 ms), so the test does not depend on the client's speed."""
    for method, headers in requests:
        conn.send(method, PATH, headers)
    return [conn.read_response(head_request=(m == "HEAD")) for m, _ in requests]


def gets(n):
    return [("GET", None)] * n


def test_burst_then_429_while_other_vm_is_served(lab):
    full_bucket()
    # Eight connections, which the kernel spreads over imdsd's four workers:
    # the budget is the VM's, not a worker's.
    conns = [Connection(lab.vm_ns(1)) for _ in range(8)]
    try:
        t0 = time.monotonic()
        for c in conns:
            for _ in range(8):
                c.send("GET", PATH)
        got = [c.read_response() for c in conns for _ in range(8)]
        window = time.monotonic() - t0
        # VM 2 asks for more than VM 1's whole burst meanwhile: it has its own budget.
        with Connection(lab.vm_ns(2)) as other:
            others = pipeline(other, gets(2 * BURST))
    finally:
        for c in conns:
            c.close()
    served = [r for r in got if r.status == 200]
    throttled = [r for r in got if r.status == 429]
    assert len(served) + len(throttled) == len(got), [r.status for r in got]
    # The full bucket serves BURST requests; after that, no more than the
    # refill over the window, summed over every worker.
    assert all(r.body == iid(1).encode() for r in served), served
    assert BURST <= len(served) <= BURST + RATE * window + 1, (len(served), window)
    assert all((r.status, r.body) == (200, iid(2).encode()) for r in others), others
    r = throttled[0]
    assert r.reason == "Too Many Requests", r
    assert r.header("Retry-After") == "1", r.headers
    assert r.header("Connection") == "keep-alive", r.headers
    assert r.header("Content-Type") == "text/plain", r.headers
    assert r.body == b"Too Many Requests", r


def test_throttled_connection_close_and_head(lab):
    """A 429 keeps to what the request asked: Connection: close closes,
    HEAD gets no body."""
    full_bucket()
    with Connection(lab.vm_ns(1)) as c:
        got = pipeline(c, gets(BURST) + [("HEAD", None), ("GET", {"Connection": "close"})])
        assert all(r.status == 200 for r in got[:BURST]), got
        head, last = got[BURST:]
        assert head.status == 429 and head.body == b"", head
        assert head.header("Content-Length") == str(len(b"Too Many Requests")), head.headers
        assert last.status == 429 and last.header("Connection") == "close", last
        with pytest.raises(NoResponse) as e:
            c.request("GET", PATH)
        assert e.value.kind in ("closed", "reset"), e.value


def test_budget_refills_after_retry_after(lab):
    """Waiting as Retry-After says is enough to be served again."""
    full_bucket()
    with Connection(lab.vm_ns(1)) as c:
        got = pipeline(c, gets(BURST + 1))
        assert got[-1].status == 429, got[-1]
        time.sleep(int(got[-1].header("Retry-After")))
        r = c.request("GET", PATH)
    assert (r.status, r.body) == (200, iid(1).encode()), r


def try_open(lab, i):
    """A connection of VM i that imdsd accepted and counted (its first
    request was answered), or None if imdsd closed it without a byte."""
    c = Connection(lab.vm_ns(i))
    try:
        r = c.request("GET", PATH)
    except NoResponse as e:
        c.close()
        assert e.kind in ("closed", "reset") and not e.partial, e
        return None
    except (ConnectionResetError, BrokenPipeError):  # the close beat our send
        c.close()
        return None
    assert (r.status, r.body) == (200, iid(i).encode()), r
    return c


def refused(lab, i):
    c = try_open(lab, i)
    if c is None:
        return True
    c.close()
    return False


def fill_cap(lab, held):
    """VM 3 opens connections up to its cap, each kept in held."""
    for _ in range(MAX_CONNS):
        c = try_open(lab, 3)
        assert c is not None, f"connection {len(held) + 1} of {MAX_CONNS} refused"
        held.append(c)


def test_connection_cap(lab):
    held = []
    try:
        fill_cap(lab, held)
        assert refused(lab, 3)
        assert refused(lab, 3)
        # Other VMs are not held to VM 3's cap.
        assert get(lab.vm_ns(2), PATH).status == 200
        # Once one closes, imdsd sees the EOF and frees its place.  (The
        # connection that gets in is kept: closing it would hold a place
        # until imdsd sees that close too.)
        held.pop().close()
        deadline = time.monotonic() + 3
        while (c := try_open(lab, 3)) is None:
            assert time.monotonic() < deadline, "the cap was not released after a close"
            time.sleep(0.05)
        held.append(c)
        assert refused(lab, 3)
        # The held connections are still served.
        for c in held:
            r = c.request("GET", PATH)
            assert (r.status, r.body) == (200, iid(3).encode()), r
    finally:
        for c in held:
            c.close()


def test_refusal_gates_the_vm_in_the_data_plane(lab):
    """A refused connection closes the door for a while (conn_gate): the
    VM's next SYN is dropped before the kernel answers it, so a client
    that reconnects at once costs imdsd no accept; other VMs are not held,
    and the VM's connections reach imdsd again once the gate runs out."""
    held = []
    try:
        fill_cap(lab, held)
        before = lab.stats()
        assert refused(lab, 3)
        with pytest.raises(NoResponse) as e:
            Connection(lab.vm_ns(3), timeout=0.5).close()
        assert e.value.kind == "timeout", e.value
        assert get(lab.vm_ns(2), PATH).status == 200
        after = lab.stats()
        assert counter_delta(before, after, iid(3), "drop_conn_limit") >= 1, after
        assert counter_delta(before, after, iid(2), "drop_conn_limit") == 0, after
        held.pop().close()
        time.sleep(1.2)  # the gate (1 s) has run out
        c = try_open(lab, 3)
        assert c is not None, "VM 3 still refused after its gate and a free place"
        held.append(c)
    finally:
        for c in held:
            c.close()


def test_operator_log_names_the_vms(lab):
    """imdsd logs, every few seconds, who was answered 429 or refused."""
    deadline = time.monotonic() + 15
    want = [f"warn imdsd: limits: {iid(1)} ", f"warn imdsd: limits: {iid(3)} "]
    while True:
        lines = [ln for ln in lab.log_text().splitlines() if ln.startswith("warn imdsd: limits:")]
        if all(any(ln.startswith(w) for ln in lines) for w in want):
            break
        assert time.monotonic() < deadline, lines
        time.sleep(0.5)
    assert not any(iid(2) in ln for ln in lines), lines
    vm1 = [ln for ln in lines if ln.startswith(want[0])]
    assert any("requests answered 429" in ln and " 0 requests" not in ln for ln in vm1), vm1
    vm3 = [ln for ln in lines if ln.startswith(want[1])]
    assert sum(int(ln.split(", ")[1].split()[0]) for ln in vm3) >= 3, vm3

"""Issue 4, acceptance 1: the IMDSv2 hop limit, enforced at TC egress.

Nested NAT: inside VM 1's namespace a "container" namespace is routed and
masqueraded through the VM, one hop further away.  The token reply leaves
the host with IP TTL = the VM's hop limit, so with hop-limit 1 it dies in
the VM's forwarding path (the container gets no token, the VM itself does),
and with hop-limit 2 it reaches the container.  Every other reply (the
SYN-ACK, IMDSv1 data) keeps the host's normal TTL of 64.  A capture on the
VM's eth0 checks the TTLs themselves.

A token reply that never arrives is never acknowledged: imdsd then resets
the connection, and the RST leaves at the normal TTL, so the container's
client gets "Connection reset by peer" within seconds, as on EC2, instead
of waiting forever.  A client that got the reply keeps its connection if
it asked to (its later replies leave at the normal TTL), or sees it end in
a normal close."""

import json
import os
import shutil
import socket
import subprocess
import time

import pytest

import imdslab
import vmdata
from vmhttp import IMDS_ADDR, Capture, Connection, NoResponse, fetch, get, put_token

VM = 1
CTR_NET = "10.88.0"  # the container link inside the VM
NORMAL_TTL = 64  # net.ipv4.ip_default_ttl of the host namespace
TTL_HEADER = {"X-aws-ec2-metadata-token-ttl-seconds": "60"}
SYN_ACK = 0x12
FIN = 0x01
RST = 0x04
ACK_WAIT = 2.0  # imdsd's SRV_ACK_WAIT_MS: how long a token reply may stay unacknowledged


def _nat_rules(lab):
    """Commands that masquerade the container behind the VM's eth0, with
    whichever of nft and iptables is installed."""
    src = f"{CTR_NET}.0/24"
    if shutil.which("nft"):
        path = lab.write_json("h7-ctr-nat.nft", (
            "table ip ctrnat {\n"
            "  chain post {\n"
            "    type nat hook postrouting priority 100;\n"
            f"    ip saddr {src} oifname \"eth0\" masquerade\n"
            "  }\n"
            "}\n"))
        return [["nft", "-f", path]]
    if shutil.which("iptables"):
        return [["iptables", "-t", "nat", "-A", "POSTROUTING", "-s", src, "-o", "eth0", "-j", "MASQUERADE"]]
    return None


@pytest.fixture(scope="module")
def lab(make_lab):
    lab = make_lab(1)
    lab.load([vmdata.vm_record(VM)])
    lab.start_imdsd()
    return lab


@pytest.fixture(scope="module")
def container(lab):
    """A namespace behind VM 1.  Its name carries the lab's suffix in the
    lab's VM pattern, so `lab.sh down` removes it even if this fixture's own
    cleanup does not run."""
    rules = _nat_rules(lab)
    if rules is None:
        pytest.skip("neither nft nor iptables is installed (Debian package nftables or iptables)")
    ns = f"{lab.prefix}-vm99-{lab.suffix}"
    imdslab.run(["ip", "netns", "add", ns])
    try:
        lab.ip_vm(VM, "link", "add", "ctr0", "type", "veth", "peer", "name", "eth0", "netns", ns)
        lab.ip_vm(VM, "addr", "add", f"{CTR_NET}.1/24", "dev", "ctr0")
        lab.ip_vm(VM, "link", "set", "ctr0", "up")
        imdslab.run(["ip", "-n", ns, "link", "set", "lo", "up"])
        imdslab.run(["ip", "-n", ns, "addr", "add", f"{CTR_NET}.2/24", "dev", "eth0"])
        imdslab.run(["ip", "-n", ns, "link", "set", "eth0", "up"])
        imdslab.run(["ip", "-n", ns, "route", "add", "default", "via", f"{CTR_NET}.1"])
        lab.in_vm(VM, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        for cmd in rules:
            lab.in_vm(VM, *cmd)
        yield ns
    finally:
        imdslab.run(["ip", "netns", "del", ns], check=False)


def _set_hop_limit(lab, hop_limit):
    lab.load([vmdata.vm_record(VM, hop_limit=hop_limit)])


def _connection_segments(segs):
    """The captured segments of the one connection whose SYN-ACK was
    captured: after NAT the port seen on eth0 may differ from the client's,
    and an old connection's retransmissions carry no SYN."""
    ports = {dport for _ttl, dport, flags, _len in segs if flags & SYN_ACK == SYN_ACK}
    assert len(ports) == 1, f"expected one SYN-ACK: {segs}"
    port = ports.pop()
    return [(ttl, flags, length) for ttl, dport, flags, length in segs if dport == port]


def _ttls(conn, flag=None, data=None):
    """TTLs of the segments with `flag` set, or of those carrying data."""
    return {ttl for ttl, flags, length in conn if (flag is None or flags & flag) and (data is None or length > 0)}


def _end_of_stream(c):
    """What follows a complete response on connection c: "eof" (the
    server's FIN), "reset", "timeout" or the unexpected bytes."""
    try:
        rest = c.sock.recv(4096)
    except ConnectionResetError:
        return "reset"
    except socket.timeout:
        return "timeout"
    return "eof" if rest == b"" else rest


def _curl_token(ns, max_time):
    return subprocess.run(["nsenter", f"--net=/run/netns/{ns}", "curl", "-sS", "-m", str(max_time), "-X", "PUT",
                           "-H", "X-aws-ec2-metadata-token-ttl-seconds: 60", f"http://{IMDS_ADDR}/latest/api/token"],
                          capture_output=True, text=True, timeout=max_time + 10)


def _captured_request(lab, ns, method, path, headers, timeout=3.0):
    """One request from namespace `ns` on a fresh connection, captured on
    the VM's eth0.  Returns (response or NoResponse, SYN-ACK TTLs, TTLs of
    the data segments), for the connection whose SYN-ACK was captured."""
    with Capture(lab.vm_ns(VM)) as cap:
        try:
            with Connection(ns, timeout=timeout) as c:
                result = c.request(method, path, headers)
        except NoResponse as e:
            result = e
        conn = _connection_segments(cap.tcp_segments(seconds=0.5))
    syn_acks = {ttl for ttl, flags, _len in conn if flags & SYN_ACK == SYN_ACK}
    data = _ttls(conn, data=True)
    assert data, f"no reply data captured: {conn}"
    return result, syn_acks, data


def test_hop_limit_1_keeps_the_token_inside_the_vm(lab, container):
    _set_hop_limit(lab, 1)
    result, syn_acks, data = _captured_request(lab, container, "PUT", "/latest/api/token", TTL_HEADER,
                                               timeout=2.0)
    assert isinstance(result, NoResponse), f"the container got a token reply through the VM: {result!r}"
    assert syn_acks == {NORMAL_TTL}, syn_acks
    assert data == {1}, f"token reply TTLs on the VM's eth0: {data}"
    # The VM itself, one hop away, gets its token.
    r = put_token(lab.vm_ns(VM), "60")
    assert r.status == 200 and len(r.body) == 56, r


def test_hop_limit_1_still_serves_imdsv1_to_the_container(lab, container):
    _set_hop_limit(lab, 1)
    result, syn_acks, data = _captured_request(lab, container, "GET", "/latest/meta-data/instance-id", None)
    assert (result.status, result.body) == (200, vmdata.instance_id(VM).encode()), result
    assert syn_acks == {NORMAL_TTL}, syn_acks
    assert data == {NORMAL_TTL}, f"IMDSv1 reply TTLs: {data}"


def test_hop_limit_2_gives_the_container_a_token(lab, container):
    _set_hop_limit(lab, 2)
    result, syn_acks, data = _captured_request(lab, container, "PUT", "/latest/api/token", TTL_HEADER)
    assert result.status == 200 and len(result.body) == 56, result
    assert syn_acks == {NORMAL_TTL}, syn_acks
    assert data == {2}, f"token reply TTLs on the VM's eth0: {data}"
    token = result.text
    # The token is good, and replies to requests that carry it are normal.
    result, syn_acks, data = _captured_request(lab, container, "GET", "/latest/meta-data/instance-id",
                                               {"X-aws-ec2-metadata-token": token})
    assert (result.status, result.body) == (200, vmdata.instance_id(VM).encode()), result
    assert data == {NORMAL_TTL}, f"data reply TTLs: {data}"


def test_hop_limited_replies_are_counted(lab, container):
    _set_hop_limit(lab, 2)
    before = sum(n for (_who, reason), n in lab.stats().items() if reason == "hop_limited")
    r = fetch(container, "PUT", "/latest/api/token", TTL_HEADER)
    assert r.status == 200, r
    after = sum(n for (_who, reason), n in lab.stats().items() if reason == "hop_limited")
    assert after > before, f"hop_limited counter: {before} -> {after}"
    # A data reply is not counted.
    assert get(container, "/latest/meta-data/instance-id").status == 200
    assert sum(n for (_who, reason), n in lab.stats().items() if reason == "hop_limited") == after


def test_hop_limit_1_resets_the_containers_token_put(lab, container):
    """EC2 (ec2-imds-behaviour.md §1.4, capture C3): a client one hop too
    far completes the handshake, then gets "Connection reset by peer" on the
    PUT, so clients without a read timeout (ec2metadata, cloud-init 22.4's
    last wait_for_url attempt) fail instead of hanging.  The reset leaves at
    the normal TTL; the reply's data only with TTL 1."""
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed (Debian package curl)")
    _set_hop_limit(lab, 1)
    with Capture(lab.vm_ns(VM)) as cap:
        start = time.monotonic()
        p = _curl_token(container, 20)
        elapsed = time.monotonic() - start
        conn = _connection_segments(cap.tcp_segments(seconds=0.5))
    assert p.returncode == 56 and "Connection reset by peer" in p.stderr, \
        f"curl exited {p.returncode}: {p.stderr.strip()}"
    assert p.stdout == "", p.stdout
    assert elapsed < ACK_WAIT + 3, f"the reset came after {elapsed:.1f} s"
    assert _ttls(conn, data=True) == {1}, f"token reply TTLs on the VM's eth0: {conn}"
    assert _ttls(conn, flag=RST) == {NORMAL_TTL}, f"RST TTLs on the VM's eth0: {conn}"


def _data_ttls(conn):
    """TTLs of the captured segments that carry data, in order."""
    return [ttl for ttl, _flags, length in conn if length > 0]


@pytest.mark.parametrize("who,hop_limit", [("container", 2), ("vm", 1)])
def test_a_delivered_token_keeps_its_connection(lab, container, who, hop_limit):
    """A client in reach that asked for keep-alive keeps its connection
    after the token reply: the reply alone leaves with TTL = hop limit,
    the next request's reply (which acknowledges the token) and one sent
    after the deadline at which an unacknowledged reply is reset leave at
    the normal TTL, and no reset ever comes."""
    _set_hop_limit(lab, hop_limit)
    ns = container if who == "container" else lab.vm_ns(VM)
    with Capture(lab.vm_ns(VM)) as cap:
        with Connection(ns, timeout=1.0) as c:
            r = c.request("PUT", "/latest/api/token", TTL_HEADER)
            assert r.status == 200 and len(r.body) == 56, r
            auth = {"X-aws-ec2-metadata-token": r.text}
            first = c.request("GET", "/latest/meta-data/instance-id", auth)
            time.sleep(ACK_WAIT + 0.5)
            later = c.request("GET", "/latest/meta-data/instance-id", auth)
            conn = _connection_segments(cap.tcp_segments(seconds=0.5))
    for got in (first, later):
        assert (got.status, got.body) == (200, vmdata.instance_id(VM).encode()), got
    assert _data_ttls(conn) == [hop_limit, NORMAL_TTL, NORMAL_TTL], f"reply TTLs on the VM's eth0: {conn}"
    assert _ttls(conn, flag=FIN) == set(), f"a FIN on a kept connection: {conn}"
    assert _ttls(conn, flag=RST) == set(), f"a reset after a delivered token reply: {conn}"


def test_a_token_put_that_says_close_ends_in_a_normal_close(lab, container):
    """A client that sends Connection: close gets the token reply followed
    by a FIN at once, and never a reset: imdsd waits for its ACK before
    letting the socket go.  Segments without data keep the normal TTL."""
    _set_hop_limit(lab, 1)
    with Capture(lab.vm_ns(VM)) as cap:
        with Connection(lab.vm_ns(VM), timeout=1.0) as c:
            r = c.request("PUT", "/latest/api/token", {**TTL_HEADER, "Connection": "close"})
            end = _end_of_stream(c)
            # Open past the deadline at which an unacknowledged reply is
            # reset: only the ACK it got keeps this one from a reset.
            conn = _connection_segments(cap.tcp_segments(seconds=ACK_WAIT + 0.5))
    assert r.status == 200 and len(r.body) == 56, r
    assert end == "eof", f"after the token reply: {end!r}"
    assert _ttls(conn, data=True) == {1}, f"token reply TTLs on the VM's eth0: {conn}"
    assert _ttls(conn, flag=FIN) == {NORMAL_TTL}, f"FIN TTLs on the VM's eth0: {conn}"
    assert _ttls(conn, flag=RST) == set(), f"a reset after a delivered token reply: {conn}"


def _hop_gate_ns(lab):
    """hop_gate[0]: the CLOCK_MONOTONIC time until which the egress program
    looks token replies' marks up (bpf/hoplimit.h)."""
    path = os.path.join(lab.pin_dir, "hop_gate")
    out = json.loads(imdslab.run(["bpftool", "-j", "map", "lookup", "pinned", path,
                                  "key", "0", "0", "0", "0"]).stdout)
    if "formatted" in out:
        return int(out["formatted"]["value"])
    return int.from_bytes(bytes(int(b, 16) for b in out["value"]), "little")


def _gate_open(lab):
    return _hop_gate_ns(lab) >= time.monotonic_ns()


def test_the_egress_gate_is_open_only_while_a_token_reply_is_in_flight(lab, container):
    """Replies are looked up in hop_marks only while hop_gate says a mark
    may be live: the gate opens before a token reply leaves, stays open
    while the reply waits for its ACK, and closes once no mark is live,
    after a reset too (the zero-linger close drops the reply, so its mark
    goes at once rather than at its expiry minutes later)."""
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed (Debian package curl)")
    _set_hop_limit(lab, 1)
    imdslab.wait_until("hop_gate closed after the earlier tests", lambda: not _gate_open(lab), ACK_WAIT + 3)
    with subprocess.Popen(["nsenter", f"--net=/run/netns/{container}", "curl", "-sS", "-m", "20", "-X", "PUT",
                           "-H", "X-aws-ec2-metadata-token-ttl-seconds: 60", f"http://{IMDS_ADDR}/latest/api/token"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as p:
        imdslab.wait_until("hop_gate open while the token reply waits for its ACK", lambda: _gate_open(lab), 2)
        time.sleep(ACK_WAIT / 2)
        assert _gate_open(lab), "hop_gate closed while the token reply was unacknowledged"
        _out, err = p.communicate(timeout=ACK_WAIT + 10)
    assert p.returncode == 56 and "Connection reset by peer" in err, f"curl exited {p.returncode}: {err.strip()}"
    imdslab.wait_until("hop_gate closed after the reset", lambda: not _gate_open(lab), 1)
    # A delivered token: open until the client acknowledged it, then closed.
    r = put_token(lab.vm_ns(VM), "60")
    assert r.status == 200 and len(r.body) == 56, r
    imdslab.wait_until("hop_gate closed after the acknowledged token reply", lambda: not _gate_open(lab), 1)

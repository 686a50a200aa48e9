"""Issue 4, acceptance 1: the IMDSv2 hop limit, enforced at TC egress.

Nested NAT: inside VM 1's namespace a "container" namespace is routed and
masqueraded through the VM, one hop further away.  The token reply leaves
the host with IP TTL = the VM's hop limit, so with hop-limit 1 it dies in
the VM's forwarding path (the container gets no token, the VM itself does),
and with hop-limit 2 it reaches the container.  Every other reply (the
SYN-ACK, IMDSv1 data) keeps the host's normal TTL of 64.  A capture on the
VM's eth0 checks the TTLs themselves."""

import shutil

import pytest

import imdslab
import vmdata
from vmhttp import Capture, Connection, NoResponse, fetch, get, put_token

VM = 1
CTR_NET = "10.88.0"  # the container link inside the VM
NORMAL_TTL = 64  # net.ipv4.ip_default_ttl of the host namespace
TTL_HEADER = {"X-aws-ec2-metadata-token-ttl-seconds": "60"}
SYN_ACK = 0x12


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
        segs = cap.tcp_segments(seconds=0.5)
    # After NAT the port seen on eth0 may differ from the client's: the
    # SYN-ACK names the connection (an old connection's retransmissions
    # carry no SYN).
    ports = {dport for _ttl, dport, flags, _len in segs if flags & SYN_ACK == SYN_ACK}
    assert len(ports) == 1, f"expected one SYN-ACK: {segs}"
    port = ports.pop()
    syn_acks = {ttl for ttl, dport, flags, _len in segs if dport == port and flags & SYN_ACK == SYN_ACK}
    data = {ttl for ttl, dport, _flags, length in segs if dport == port and length > 0}
    assert data, f"no reply data captured on port {port}: {segs}"
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

"""Issue 16, acceptance 3: the hop limit over IPv6.

A "container" namespace is routed behind VM 1 with NAT66 (its IPv6 is
masqueraded to VM 1's, the only source the data plane lets reach
[fd00:ec2::254]), one hop further away than the VM.  A token reply leaves
the host with IPv6 Hop Limit = the VM's hop limit: with 1 it dies in the
VM's forwarding path (the container gets no token, the VM itself does);
with 2 it reaches the container.  IMDSv1 data keeps the normal hop limit,
so the container is served without a token either way."""

import shutil
import subprocess

import pytest

import imdslab
import vmdata
from ipv6lab import CTR6, HOST6, IMDS6, curl6, enable_ipv6, record

VM = 1


@pytest.fixture(scope="module")
def lab(make_lab):
    lab = make_lab(1)
    lab.ip_host("-6", "addr", "add", f"{HOST6}/64", "dev", lab.bridge, "nodad")
    lab.load([record(VM)])
    lab.start_imdsd()
    enable_ipv6(lab, VM, ipv4=False)
    return lab


@pytest.fixture(scope="module")
def container(lab):
    """A namespace behind VM 1, named in the lab's VM pattern so `lab.sh
    down` removes it whatever happens here."""
    if shutil.which("nft") is None:
        pytest.skip("nft is not installed (Debian package nftables): NAT66 needs it")
    ns = f"{lab.prefix}-vm98-{lab.suffix}"
    imdslab.run(["ip", "netns", "add", ns])
    try:
        lab.ip_vm(VM, "link", "add", "ctr0", "type", "veth", "peer", "name", "eth0", "netns", ns)
        lab.ip_vm(VM, "-6", "addr", "add", f"{CTR6}1/64", "dev", "ctr0", "nodad")
        lab.ip_vm(VM, "link", "set", "ctr0", "up")
        lab.in_vm(VM, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
        nat = lab.write_json("v6-ctr-nat.nft", (
            "table ip6 ctrnat6 {\n"
            "  chain post {\n"
            "    type nat hook postrouting priority 100;\n"
            f"    ip6 saddr {CTR6}/64 oifname \"eth0\" masquerade\n"
            "  }\n"
            "}\n"))
        lab.in_vm(VM, "nft", "-f", nat)
        ctr = ["ip", "netns", "exec", ns]
        imdslab.run([*ctr, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=0",
                     "net.ipv6.conf.eth0.disable_ipv6=0"])
        imdslab.run(["ip", "-n", ns, "link", "set", "lo", "up"])
        imdslab.run(["ip", "-n", ns, "-6", "addr", "add", f"{CTR6}2/64", "dev", "eth0", "nodad"])
        imdslab.run(["ip", "-n", ns, "link", "set", "eth0", "up"])
        imdslab.run(["ip", "-n", ns, "-6", "route", "add", "default", "via", f"{CTR6}1"])
        yield ns
    finally:
        imdslab.run(["ip", "netns", "del", ns], check=False)


def ctr_curl(ns, *args, max_time=4):
    p = subprocess.run(["nsenter", f"--net=/run/netns/{ns}", "curl", "-sS", "-g", "-m", str(max_time), *args],
                       capture_output=True, text=True, timeout=max_time + 10)
    return p.returncode, p.stdout


def ctr_token(ns):
    return ctr_curl(ns, "-X", "PUT", "-H", "X-aws-ec2-metadata-token-ttl-seconds: 60",
                    f"http://[{IMDS6}]/latest/api/token")


def hop_limited(lab):
    return sum(n for (who, reason), n in lab.stats().items() if who == "total" and reason == "hop_limited")


def test_hop_limit_1_keeps_the_token_inside_the_vm(lab, container):
    lab.load([record(VM, hop_limit=1)])
    rc, body = ctr_token(container)
    assert rc != 0 and not body, f"the container got a token through the VM: {body!r}"
    rc, token = curl6(lab, VM, "/latest/api/token", "-X", "PUT", "-H", "X-aws-ec2-metadata-token-ttl-seconds: 60")
    assert rc == 0 and len(token) == 56, (rc, token)
    # IMDSv1 replies are not limited: the container is served without a token.
    assert ctr_curl(container, f"http://[{IMDS6}]/latest/meta-data/instance-id") == (0, vmdata.instance_id(VM))


def test_hop_limit_2_gives_the_container_a_token(lab, container):
    lab.load([record(VM, hop_limit=2)])
    before = hop_limited(lab)
    rc, token = ctr_token(container)
    assert rc == 0 and len(token) == 56, (rc, token)
    assert hop_limited(lab) > before
    rc, body = ctr_curl(container, "-H", f"X-aws-ec2-metadata-token: {token}",
                        f"http://[{IMDS6}]/latest/meta-data/instance-id")
    assert (rc, body) == (0, vmdata.instance_id(VM))

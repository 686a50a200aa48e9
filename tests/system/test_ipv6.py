"""Issue 16: IMDS over IPv6 at [fd00:ec2::254] (docs/ipv6.md).

A lab of two VMs with IPv6 on their eth0 (2001:db8:77::1N/64, the bridge
2001:db8:77::1/64, each VM an on-link route to fd00:ec2::254 as
docs/ipv6.md tells guests); VM 1 has no IPv4 address at all.

- Acceptance 1: the IPv6-only VM gets its instance-id, a token and its
  user-data, and its IPv6 in EC2's tree; botocore (endpoint mode ipv6) and
  the AWS SDK for JavaScript v3 (AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE=
  IPv6; @aws-sdk/ec2-metadata-service, which has no endpoint mode, with
  AWS_EC2_METADATA_SERVICE_ENDPOINT=http://[fd00:ec2::254]) get its
  credentials and region.
- Acceptance 2: VM 2 taking VM 1's IPv6, with its own MAC and with VM 1's
  MAC, gets no answer and is counted; its Neighbour Advertisements
  claiming VM 1's address or fd00:ec2::254 change nothing for VM 1 (a
  capture on VM 2 sees none of VM 1's replies while VM 1 is served); its
  Router Advertisement reaches nobody.

Acceptance 3 (the hop limit over IPv6, a container behind a VM with
NAT66) is test_ipv6_hoplimit.py.
"""

import json
import os
import shutil
import socket
import subprocess

import pytest

import imdslab
import vmdata
from imdslab import BUILD, PYTHON, ROOT, Sniffer, counter_delta
from ipv6lab import HOST6, IMDS6, credentials, curl6, enable_ipv6, ipv6_of, record, region

HOSTILE6_PY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "hostile6.py")
CLIENTS = os.path.join(ROOT, "tests", "clients")
NODE_MODULES = os.path.join(BUILD, "clients", "node_modules")
iid = vmdata.instance_id


@pytest.fixture(scope="module")
def lab(make_lab):
    lab = make_lab(2)
    lab.ip_host("-6", "addr", "add", f"{HOST6}/64", "dev", lab.bridge, "nodad")
    lab.load([record(i) for i in lab.vms])
    lab.start_imdsd()
    enable_ipv6(lab, 1, ipv4=False)
    enable_ipv6(lab, 2)
    return lab


def token6(lab, i):
    rc, body = curl6(lab, i, "/latest/api/token", "-X", "PUT",
                     "-H", "X-aws-ec2-metadata-token-ttl-seconds: 60")
    assert rc == 0 and body, f"vm{i}: token PUT over IPv6 failed ({rc})"
    return body


def test_address_on_the_bridge(lab):
    out = lab.ip_host("-6", "-j", "addr", "show", lab.bridge).stdout
    addrs = [(a["local"], a["prefixlen"]) for link in json.loads(out) for a in link.get("addr_info", [])]
    assert (IMDS6, 128) in addrs, addrs


def test_ipv6_only_vm_gets_its_metadata(lab):
    assert lab.ip_vm(1, "-4", "-j", "addr", "show", "dev", "eth0").stdout.count('"local"') == 0
    assert curl6(lab, 1, "/latest/meta-data/instance-id") == (0, iid(1))
    token = token6(lab, 1)
    rc, body = curl6(lab, 1, "/latest/user-data", token=token)
    assert (rc, body.encode()) == (0, vmdata.user_data(1))
    rc, body = curl6(lab, 1, "/latest/meta-data/instance-id", token="not-a-token")
    assert rc == 0 and body != iid(1)


def test_ipv6_in_the_tree(lab):
    mac = vmdata.vm_mac(1)
    eni = f"/latest/meta-data/network/interfaces/macs/{mac}"
    assert curl6(lab, 1, "/latest/meta-data/ipv6") == (0, ipv6_of(1))
    assert curl6(lab, 1, f"{eni}/ipv6s") == (0, ipv6_of(1))
    assert curl6(lab, 1, f"{eni}/subnet-ipv6-cidr-blocks") == (0, "2001:db8:77::/64")
    assert curl6(lab, 1, f"{eni}/vpc-ipv6-cidr-blocks") == (0, "2001:db8:77::/56")
    rc, listing = curl6(lab, 1, f"{eni}/")
    assert rc == 0 and "ipv6s" in listing.split("\n"), listing


def test_dual_stack_vm_over_either_address(lab):
    assert curl6(lab, 2, "/latest/meta-data/instance-id") == (0, iid(2))
    p = lab.in_vm(2, "curl", "-sS", "--max-time", "10", "http://169.254.169.254/latest/meta-data/instance-id",
                  check=False)
    assert (p.returncode, p.stdout) == (0, iid(2))


def client_env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy") and not k.startswith("AWS_")}
    env["HOME"] = "/nonexistent"
    env.update(extra)
    return env


def in_vm(lab, i, *cmd, timeout=90, **env):
    return subprocess.run(["nsenter", f"--net=/run/netns/{lab.vm_ns(i)}", *cmd], capture_output=True,
                          timeout=timeout, env=client_env(**env))


def json_from(p, what):
    assert p.returncode == 0, f"{what} exited {p.returncode}: {p.stderr.decode()[-3000:]}"
    return json.loads(p.stdout)


def test_botocore_endpoint_mode_ipv6(lab):
    if subprocess.run([PYTHON, "-c", "import botocore"], capture_output=True).returncode != 0:
        pytest.skip("python3-botocore is not installed")
    out = json_from(in_vm(lab, 1, PYTHON, os.path.join(CLIENTS, "botocore_ec2.py"), "--endpoint-mode", "ipv6"),
                    "botocore")
    c = credentials(1)
    assert out["credentials"]["access_key"] == c["access-key-id"], out
    assert out["credentials"]["token"] == c["token"], out
    assert out["provider"]["secret_key"] == c["secret-access-key"], out
    assert out["region"] == region(1)


def test_aws_sdk_js_endpoint_mode_ipv6(lab):
    node = shutil.which("node")
    if node is None or not os.path.isdir(NODE_MODULES):
        pytest.skip(f"node or {NODE_MODULES} missing (scripts/install-npm-clients.sh)")
    env = {"NODE_PATH": NODE_MODULES, "AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE": "IPv6"}
    driver = os.path.join(CLIENTS, "aws_sdk_js.js")
    for module in ("@aws-sdk/credential-provider-imds", "@smithy/credential-provider-imds"):
        out = json_from(in_vm(lab, 1, node, driver, "creds", module, **env), f"js creds {module}")
        assert out["ok"] and out["accessKeyId"] == credentials(1)["access-key-id"], out
        assert out["sessionToken"] == credentials(1)["token"], out
    # @aws-sdk/ec2-metadata-service reads no endpoint mode: its IPv6 setting
    # is the endpoint itself (AWS_EC2_METADATA_SERVICE_ENDPOINT).
    env["AWS_EC2_METADATA_SERVICE_ENDPOINT"] = f"http://[{IMDS6}]"
    out = json_from(in_vm(lab, 1, node, driver, "request", "/latest/meta-data/placement/region", **env),
                    "js request")
    assert json.dumps(out).count(region(1)) == 1, out


# --- VM 2 against VM 1 --------------------------------------------------

def hostile(lab, i, *args):
    p = lab.in_vm(i, PYTHON, HOSTILE6_PY, *args, timeout=60)
    return json.loads(p.stdout)


def Sniffer6(lab, i, *args):
    return Sniffer(lab, i, None, None, script=HOSTILE6_PY, args=["sniff", *args])


def test_taking_another_vms_ipv6_gets_nothing(lab):
    before = lab.stats()
    own = hostile(lab, 2, "syn", "--src-mac", vmdata.vm_mac(2), "--src-ip", ipv6_of(1), "--dst-mac",
                  lab.bridge_mac(), "--first-port", "61000", "--count", "3", "--listen", "1")
    borrowed = hostile(lab, 2, "syn", "--src-mac", vmdata.vm_mac(1), "--src-ip", ipv6_of(1), "--dst-mac",
                       lab.bridge_mac(), "--first-port", "61100", "--count", "3", "--listen", "1")
    after = lab.stats()
    assert own["replies"] == [] and borrowed["replies"] == [], (own, borrowed)
    assert counter_delta(before, after, iid(2), "drop_wrong_ipv6") >= 3, after
    assert counter_delta(before, after, iid(1), "drop_wrong_port") >= 3, after
    assert curl6(lab, 1, "/latest/meta-data/instance-id") == (0, iid(1))


def test_neighbour_advertisements_change_nothing(lab):
    before = lab.stats()
    sniff = Sniffer6(lab, 2, "--seconds", "6", "--ip-src", IMDS6, "--ip-dst", ipv6_of(1))
    hostile(lab, 2, "na", "--src-mac", vmdata.vm_mac(2), "--src-ip", ipv6_of(2), "--target", ipv6_of(1))
    hostile(lab, 2, "na", "--src-mac", vmdata.vm_mac(2), "--src-ip", ipv6_of(2), "--target", IMDS6)
    token = token6(lab, 1)
    rc, body = curl6(lab, 1, "/latest/user-data", token=token)
    assert (rc, body.encode()) == (0, vmdata.user_data(1))
    seen = sniff.result()["seen"]
    after = lab.stats()
    assert seen == [], f"vm2 saw vm1's replies: {seen}"
    assert counter_delta(before, after, iid(1), "drop_nd_spoof") >= 3, after
    assert counter_delta(before, after, "total", "drop_nd_spoof") >= 6, after


def test_router_advertisement_reaches_nobody(lab):
    """VM 2's RAs, with its own MAC and with a MAC no VM has (the port
    decides), reach neither VM 1 nor the host."""
    before = lab.stats()
    sniff = Sniffer6(lab, 1, "--seconds", "4", "--ra")
    hostile(lab, 2, "ra", "--src-mac", vmdata.vm_mac(2), "--count", "3")
    hostile(lab, 2, "ra", "--src-mac", "52:54:00:aa:bb:cc", "--count", "3")
    seen = sniff.result()["seen"]
    after = lab.stats()
    assert seen == [], f"vm1 saw a router advertisement: {seen}"
    assert counter_delta(before, after, iid(2), "drop_router_message") >= 6, after


def test_loaded_vms_never_share_an_ipv6(lab):
    rec = record(3)
    rec["ipv6"] = ["2001:db8:77::99", "2001:DB8:77::11"]
    path = lab.write_json("v6-clash.json", vmdata.dumps([rec]))
    p = lab.loadmap("load", path)
    assert p.returncode != 0
    assert f"vms[0].ipv6[1]: 2001:db8:77::11 is already used by loaded VM {iid(1)}" in p.stderr, p.stderr
    assert iid(3) not in lab.loadmap("list").stdout


def test_recovery_covers_the_ipv6_index(lab):
    """A lost ipv6_index entry (a writer killed mid-change leaves such
    gaps) is put back by the next writer's recovery (fsck's, here), and
    the VM is served over IPv6 again."""
    key = [f"{b:02x}" for b in socket.inet_pton(socket.AF_INET6, ipv6_of(1))]
    imdslab.run(["bpftool", "map", "delete", "pinned", os.path.join(lab.pin_dir, "ipv6_index"), "key", "hex", *key])
    assert curl6(lab, 1, "/latest/meta-data/instance-id", timeout=3)[1] != iid(1)
    p = lab.loadmap("fsck")
    assert p.returncode == 0 and "1 index entries repaired" in p.stderr, (p.stdout, p.stderr)
    assert curl6(lab, 1, "/latest/meta-data/instance-id") == (0, iid(1))

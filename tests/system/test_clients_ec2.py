"""Issue 3, acceptance 1 (EC2 clients): real metadata clients, unchanged,
run inside a VM's network namespace against imdsd through the bridge path,
each getting exactly what the VM was loaded with.  One module over 800
lines: every client shares one lab and one set of records, and each
client's driver is a few lines beside the same checks.

- cloud-init's EC2 datasource crawl (Debian's cloud-init), on the AWS path
  (IMDSv2: token PUT, tokens on every GET, identity document) and on the
  path of any other guest (IMDSv1, no token), plus its refresh of a token
  the server does not know (401, PUT again);
- botocore's InstanceMetadataFetcher, InstanceMetadataProvider and
  InstanceMetadataRegionFetcher (Debian's python3-botocore);
- cloud-guest-utils `ec2metadata`;
- the AWS SDK for JavaScript v3: fromInstanceMetadata of
  @aws-sdk/credential-provider-imds (the package the acceptance names) and
  of @smithy/credential-provider-imds (the one the SDK uses today), and
  @aws-sdk/ec2-metadata-service MetadataService.request.  These come from
  npm (scripts/install-npm-clients.sh); without build/clients/node_modules
  their tests skip and say why.

Then the same clients where IMDSv2 is out of reach, and each falls back (or
not) in its own way: from a "container" behind a NAT in the guest, one hop
too far for the token reply (hop limit 1), and through an HTTP proxy in the
guest that adds Via and X-Forwarded-For (token PUT refused with 403).

The client programs are small drivers in tests/clients/ that call the
clients' own code and print JSON; see each driver for what it sets (only
what a namespace lacks compared with a guest: cloud-init's DMI platform
check, its DNS probe).

What "exactly" means here, in two parts:
- every value a VM record gives, and every value docs/vm-schema.md says is
  derived from it, is what the client reports (written out below from the
  records and the doc, never read back from imdsd);
- beyond that, a client reports exactly what the server's own listings
  hold: the test walks the tree with a raw HTTP client (vmhttp) and the
  client's view must equal it, so nothing listed is lost, mangled or
  invented on the way.  (The synthetic ids imdsd derives, such as
  reservation-id or a subnet-id, are hashes: they are checked only this
  way.)"""

import base64
import datetime
import json
import os
import re
import shutil
import subprocess
import time

import pytest

import vmdata
from imdslab import BUILD, PYTHON, ROOT
from vmhttp import get, token_for

CLIENTS = os.path.join(ROOT, "tests", "clients")
NODE_MODULES = os.path.join(BUILD, "clients", "node_modules")

# VM 3's user-data is binary (vmdata) and its iam section gives only the
# required keys; VM 4 is loaded with nothing but the three required fields
# (no user-data, keys, zone or role); VM 5 has the largest user-data EC2
# allows (16 KiB, every byte value) and no role.
OPTIONAL, REQUIRED, BINARY, MINIMAL, LARGE = 1, 2, 3, 4, 5
TOKENS = {OPTIONAL: "optional", REQUIRED: "required", BINARY: "optional", LARGE: "optional"}
ALL = [OPTIONAL, REQUIRED, BINARY, MINIMAL, LARGE]
WITH_ROLE = [OPTIONAL, REQUIRED, BINARY]

NOW = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
AWS_TIME = "%Y-%m-%dT%H:%M:%SZ"
ISSUED = (NOW - datetime.timedelta(minutes=5)).strftime(AWS_TIME)
EXPIRES = (NOW + datetime.timedelta(hours=6)).strftime(AWS_TIME)
ACCOUNT = "123456789012"


# --- what each VM is loaded with ------------------------------------------

def zone(i):
    return f"lab-{i}b"


def role(i):
    return f"lab-role-{i:02d}"


def profile_arn(i):
    return f"arn:aws:iam::{ACCOUNT}:instance-profile/{role(i)}"


def access_key(i):
    return f"ASIALAB0000000000{i:03d}"


def secret_key(i):
    return f"lab/secret/key/of/vm/{i:02d}/0123456789abcdefABCDEF"


def session_token(i):
    return base64.b64encode(f"session-token-of-vm-{i:02d}".encode() * 4).decode()


def iam_section(i):
    section = {
        "role": role(i),
        "instance-profile-arn": profile_arn(i),
        "credentials": {"access-key-id": access_key(i), "secret-access-key": secret_key(i),
                        "token": session_token(i), "expiration": EXPIRES},
    }
    if i != BINARY:
        section.update({"instance-profile-id": f"AIPALAB{i:014d}", "account-id": ACCOUNT,
                        "last-updated": ISSUED})
    return section


def record(i):
    if i == MINIMAL:
        return {"instance-id": vmdata.instance_id(i), "mac": vmdata.vm_mac(i), "ipv4": vmdata.vm_ipv4(i),
                "port": vmdata.vm_port(i)}
    rec = vmdata.vm_record(i, tokens=TOKENS[i])
    rec["meta-data"].update({
        "ami-id": f"ami-0a77{i:013x}",
        "ami-launch-index": 0,
        "instance-type": f"lab{i}.large",
        "local-hostname": f"ip-10-77-0-{10 + i}.lab.internal",
        "placement": {"availability-zone": zone(i)},
        "security-groups": [f"sg-lab-{i:02d}-web", f"sg-lab-{i:02d}-ssh"],
        "services": {"domain": "amazonaws.com", "partition": "aws"},
        "block-device-mapping": {"ami": "/dev/xvda", "root": "/dev/xvda"},
    })
    rec["public-keys"].append({"name": f"{vmdata.key_name(i)}-b",
                               "openssh-key": f"ssh-rsa AAAAB3NzaC1yc2EAAAADAQABlab{i:02d} second@lab"})
    if i == LARGE:
        del rec["user-data"]
        rec["user-data-base64"] = base64.b64encode(bytes(range(256)) * 64).decode()
        return rec
    rec["iam"] = iam_section(i)
    # Tags, served only where the option enables them (VM 1; VM 2 has
    # tags but the option off, EC2's default).
    rec["tags"] = {"Name": f"vm{i:02d}-web", "aws:autoscaling:groupName": f"lab-asg-{i:02d}", "env": "lab"}
    if i == OPTIONAL:
        rec["options"]["instance-metadata-tags"] = "enabled"
    elif i != REQUIRED:
        del rec["tags"]
    return rec


RECORDS = {i: record(i) for i in ALL}


# --- what each VM must then be served ---------------------------------------

def aws_json(obj):
    """EC2's layout for JSON leaves: two-space indent, ' : '."""
    return json.dumps(obj, indent=2, separators=(",", " : "))


def credentials(i, issued=ISSUED):
    """iam/security-credentials/ROLE, field order and all
    (docs/vm-schema.md, "iam")."""
    return {"Code": "Success", "LastUpdated": issued, "Type": "AWS-HMAC", "AccessKeyId": access_key(i),
            "SecretAccessKey": secret_key(i), "Token": session_token(i), "Expiration": EXPIRES}


def iam_info(i):
    return {"Code": "Success", "LastUpdated": ISSUED, "InstanceProfileArn": profile_arn(i),
            "InstanceProfileId": f"AIPALAB{i:014d}"}


def leaf_text(value):
    """A meta-data leaf's body, per docs/vm-schema.md."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "\n".join(value)
    return json.dumps(value)


def loaded_tree(i):
    """The part of meta-data/ of VM i that its record and docs/vm-schema.md fix:
    the record's tree as text leaves, the documented derived values, the
    public keys (listing entry "N=name" -> {"openssh-key": key}) and, when
    all its fields are given, iam/."""
    def text_tree(node):
        return {k: text_tree(v) if isinstance(v, dict) else leaf_text(v) for k, v in node.items()}

    rec = RECORDS[i]
    tree = text_tree(rec.get("meta-data", {}))
    mac = rec["mac"].lower()
    tree.setdefault("instance-id", rec["instance-id"])
    tree.setdefault("mac", mac)
    tree.setdefault("local-ipv4", rec["ipv4"])
    nic = tree.setdefault("network", {}).setdefault("interfaces", {}).setdefault("macs", {}).setdefault(mac, {})
    nic.setdefault("device-number", "0")
    nic.setdefault("local-ipv4s", rec["ipv4"])
    nic.setdefault("mac", mac)
    az = tree.get("placement", {}).get("availability-zone")
    if az and az[-1].isalpha():
        tree["placement"].setdefault("region", az[:-1])
    # The categories every EC2 instance has ("Derived values").  The lab's
    # zones are not AWS-shaped, so there is no availability-zone-id; the
    # private DNS name is needed only for a VM without hostnames, zone or
    # region, where it is ip-A-B-C-D.ec2.internal.
    for name, value in [("ami-launch-index", "0"), ("ami-manifest-path", "(unknown)"),
                        ("instance-action", "none"), ("instance-life-cycle", "on-demand"),
                        ("profile", "default-hvm"), ("security-groups", "default")]:
        tree.setdefault(name, value)
    bdm = tree.setdefault("block-device-mapping", {})
    bdm.setdefault("root", "/dev/xvda")
    bdm.setdefault("ami", bdm["root"])
    events = tree.setdefault("events", {}).setdefault("maintenance", {})
    events.setdefault("history", "[]")
    events.setdefault("scheduled", "[]")
    services = tree.setdefault("services", {})
    services.setdefault("domain", "amazonaws.com")
    services.setdefault("partition", "aws")
    if "local-hostname" not in tree and "hostname" not in tree and "placement" not in tree:
        private_dns = "ip-%s.ec2.internal" % rec["ipv4"].replace(".", "-")
        tree["local-hostname"] = tree["hostname"] = private_dns
    keys = rec.get("public-keys", [])
    if keys:
        tree["public-keys"] = {f"{n}={k['name']}": {"openssh-key": k["openssh-key"]} for n, k in enumerate(keys)}
    if rec.get("options", {}).get("instance-metadata-tags") == "enabled":
        tree["tags"] = {"instance": dict(rec.get("tags", {}))}
    iam = rec.get("iam")
    if iam and "last-updated" in iam:
        tree["iam"] = {"info": aws_json(iam_info(i)),
                       "security-credentials": {iam["role"]: aws_json(credentials(i))}}
    return tree


def region(i):
    return loaded_tree(i).get("placement", {}).get("region")


def zone_of(i):
    return loaded_tree(i).get("placement", {}).get("availability-zone")


def user_data_of(i):
    """VM i's user-data bytes, or None when it has none."""
    rec = RECORDS[i]
    if "user-data" in rec:
        return rec["user-data"].encode()
    if "user-data-base64" in rec:
        return base64.b64decode(rec["user-data-base64"])
    return None


def keys_of(i):
    return RECORDS[i].get("public-keys", [])


def identity_document(i):
    """docs/vm-schema.md, "Identity document" (accountId: "iam")."""
    rec = RECORDS[i]
    md = rec.get("meta-data", {})
    iam = rec.get("iam")
    return {
        "accountId": ACCOUNT if iam else None,
        "architecture": "x86_64",
        "availabilityZone": zone_of(i),
        "billingProducts": None,
        "devpayProductCodes": None,
        "imageId": md.get("ami-id"),
        "instanceId": rec["instance-id"],
        "instanceType": md.get("instance-type"),
        "kernelId": md.get("kernel-id"),
        "marketplaceProductCodes": None,
        "pendingTime": None,
        "privateIp": rec["ipv4"],
        "ramdiskId": md.get("ramdisk-id"),
        "region": region(i),
        "version": "2017-09-30",
    }


def as_cloudinit(tree):
    """The dict cloud-init's MetadataMaterializer builds from a meta-data
    tree: a leaf that looks like a JSON object becomes the object, a
    multi-line leaf a list of lines; public-keys/ becomes {name: key}; it
    never fetches iam/security-credentials."""
    def decode(text):
        s = text.strip()
        if s.startswith("{") and s.endswith("}"):
            return json.loads(text)
        return text.splitlines() if "\n" in text else text

    def convert(node, path):
        out = {}
        for name, value in node.items():
            if name == "security-credentials":
                continue
            if path == () and name == "public-keys":
                out[name] = {entry.split("=", 1)[1]: key["openssh-key"] for entry, key in value.items()}
            elif isinstance(value, dict):
                out[name] = convert(value, path + (name,))
            else:
                out[name] = decode(value)
        return out

    return convert(tree, ())


def assert_holds(got, want, where="meta-data"):
    """Every path of `want` is in `got` with the same value."""
    for name, value in want.items():
        assert name in got, f"{where}/{name} is missing"
        if isinstance(value, dict):
            assert isinstance(got[name], dict), f"{where}/{name}: got {got[name]!r}, want a directory"
            assert_holds(got[name], value, f"{where}/{name}")
        else:
            assert got[name] == value, f"{where}/{name}: got {got[name]!r}, want {value!r}"


def walk(lab, i, prefix="/latest"):
    """meta-data/ as imdsd lists it, fetched entry by entry with a raw HTTP
    client (and a token, so it works for every VM): {name: text or {...}},
    public-keys entries kept as "N=name".  Every listed entry must answer
    200."""
    ns = lab.vm_ns(i)
    token = token_for(ns)

    def fetch(path):
        r = get(ns, path, token)
        assert r.status == 200, f"vm{i}: {path} is listed but answers {r!r}"
        return r.body.decode()

    def listing(path):
        out = {}
        for entry in filter(None, fetch(path).split("\n")):
            if entry.endswith("/"):
                out[entry[:-1]] = listing(path + entry)
            elif "=" in entry:
                out[entry] = listing(path + entry.split("=", 1)[0] + "/")
            else:
                out[entry] = fetch(path + entry)
        return out

    return listing(f"{prefix}/meta-data/")


# --- running clients in a VM's namespace ------------------------------------

def client_env(**extra):
    """The test's environment without proxies (a client must go straight
    to 169.254.169.254) and without AWS settings that would redirect it."""
    env = {k: v for k, v in os.environ.items()
           if not k.lower().endswith("_proxy") and not k.startswith("AWS_")}
    env["HOME"] = "/nonexistent"  # no ~/.aws/config
    env.update(extra)
    return env


def in_vm(lab, i, *cmd, timeout=120, ns=None, **env):
    """Runs cmd in VM i's namespace (or in `ns`, a namespace behind it)."""
    return subprocess.run(["nsenter", f"--net=/run/netns/{ns or lab.vm_ns(i)}", *cmd],
                          capture_output=True, timeout=timeout, env=client_env(**env))


def json_from(p, what):
    assert p.returncode == 0, f"{what} exited {p.returncode}\nstderr (tail): {p.stderr.decode()[-4000:]}"
    try:
        return json.loads(p.stdout)
    except ValueError:
        raise AssertionError(f"{what} printed no JSON: {p.stdout[:2000]!r}\nstderr: {p.stderr.decode()[-3000:]}")


def _importable(module):
    return subprocess.run([PYTHON, "-c", f"import {module}"], capture_output=True).returncode == 0


@pytest.fixture(scope="module")
def cloudinit_ready():
    if not _importable("cloudinit.sources.DataSourceEc2"):
        pytest.skip("cloud-init is not installed for /usr/bin/python3 (scripts/install-deps.sh installs it)")


@pytest.fixture(scope="module")
def botocore_ready():
    if not _importable("botocore.utils"):
        pytest.skip("python3-botocore is not installed (scripts/install-deps.sh installs it)")


@pytest.fixture(scope="module")
def lab(make_lab):
    lab = make_lab(len(ALL))
    lab.load([RECORDS[i] for i in ALL])
    lab.start_imdsd()
    return lab


@pytest.fixture(scope="module")
def served(lab):
    """{i: meta-data/ of VM i as imdsd lists it} (see walk)."""
    return {i: walk(lab, i) for i in ALL}


# --- the tree the clients read ------------------------------------------------

@pytest.mark.parametrize("i", ALL)
def test_served_tree_holds_what_the_vm_was_loaded_with(served, i):
    """The anchor of the client tests below: the record's values, the
    documented derived ones, and iam/ as docs/vm-schema.md describes it."""
    tree = served[i]
    assert_holds(tree, loaded_tree(i))
    if i == OPTIONAL:
        assert sorted(tree["tags"]["instance"]) == sorted(RECORDS[i]["tags"]), "tags/instance/ lists every key"
    else:
        assert "tags" not in tree, "tags are served only when instance-metadata-tags is enabled"
    if i not in WITH_ROLE:
        assert "iam" not in tree
        return
    assert list(tree["iam"]) == ["info", "security-credentials"], "iam/ lists exactly these two"
    assert list(tree["iam"]["security-credentials"]) == [role(i)]
    info = json.loads(tree["iam"]["info"])
    if i == BINARY:  # profile id and time derived (docs/vm-schema.md, "iam")
        assert re.fullmatch(r"AIPA[A-Z0-9]{17}", info["InstanceProfileId"]), info
        issued = datetime.datetime.strptime(info["LastUpdated"], AWS_TIME).replace(tzinfo=datetime.timezone.utc)
        assert abs(issued - NOW) < datetime.timedelta(minutes=30), info
        assert info == {"Code": "Success", "LastUpdated": info["LastUpdated"], "InstanceProfileArn": profile_arn(i),
                        "InstanceProfileId": info["InstanceProfileId"]}
        assert tree["iam"]["security-credentials"][role(i)] == aws_json(credentials(i, info["LastUpdated"]))


# --- cloud-init -------------------------------------------------------------

def cloudinit(lab, i, platform, mode="crawl", max_wait=20, ns=None):
    p = in_vm(lab, i, PYTHON, os.path.join(CLIENTS, "cloudinit_ec2.py"), "--platform", platform,
              "--mode", mode, "--max-wait", str(max_wait), "--mac", vmdata.vm_mac(i), ns=ns)
    return json_from(p, f"cloud-init ({platform}) in vm{i}")


def path_of(url):
    return re.sub(r"^http://169\.254\.169\.254", "", url)


def assert_crawl_matches(out, i, served):
    assert out["ok"] is True, out
    assert out["api_version"] == "2021-03-23", out["api_version"]
    assert_holds(out["meta_data"], as_cloudinit(loaded_tree(i)))
    assert out["meta_data"] == as_cloudinit(served[i])
    # Without user-data the server says 404 and cloud-init keeps b"".
    assert base64.b64decode(out["user_data_b64"]) == (user_data_of(i) or b"")
    assert sorted(out["public_keys"]) == sorted(k["openssh-key"] for k in keys_of(i))
    assert out["instance_id"] == RECORDS[i]["instance-id"]
    assert out["availability_zone"] == zone_of(i)
    assert out["region"] == region(i)
    # The guest's hostname: local-hostname's first label.
    assert out["hostname"] == served[i]["local-hostname"].split(".")[0]
    # One interface, one address: DHCP on eth0, matched by the MAC the
    # guest really has (the macs/ key must be its lower-case MAC).
    mac = vmdata.vm_mac(i)
    assert out["network_config"] == {"version": 2, "ethernets": {"eth0": {
        "dhcp4": True, "dhcp6": False, "match": {"macaddress": mac}, "set-name": "eth0"}}}
    if i in WITH_ROLE:
        text = json.dumps(out)
        for secret in (secret_key(i), session_token(i)):
            assert secret not in text, "cloud-init must not crawl the role's credentials"
    failed = [(path_of(r["url"]), r["status"]) for r in out["requests"] if r["status"] != 200]
    if user_data_of(i) is None:
        assert failed == [(f"/{out['api_version']}/user-data", 404)]
    else:
        assert not failed, f"requests that did not answer 200: {failed}"


@pytest.mark.parametrize("i", ALL)
def test_cloudinit_crawl_imdsv2(lab, served, i, cloudinit_ready):
    """The AWS path: one token PUT, then every GET carries the token;
    meta-data, user-data and the identity document are exactly the VM's."""
    out = cloudinit(lab, i, "aws")
    assert_crawl_matches(out, i, served)
    reqs = out["requests"]
    assert (reqs[0]["method"], path_of(reqs[0]["url"])) == ("PUT", "/latest/api/token"), reqs[0]
    assert [r for r in reqs if r["method"] == "PUT"] == [reqs[0]], "one token for the whole crawl"
    untokened = [r["url"] for r in reqs[1:] if not r["token"]]
    assert not untokened, f"GETs without the token: {untokened}"
    assert path_of(reqs[1]["url"]) == "/2021-03-23/meta-data/instance-id"

    dynamic = out["dynamic"]["instance-identity"]
    assert dynamic["document"] == identity_document(i)
    assert out["identity"] == identity_document(i)
    ns = lab.vm_ns(i)
    listed = get(ns, "/2021-03-23/dynamic/instance-identity/", token_for(ns)).text.split("\n")
    assert sorted(dynamic) == sorted(listed), "cloud-init fetches every entry listed"
    for name in listed:
        assert dynamic[name], f"dynamic/instance-identity/{name} came back empty"


@pytest.mark.parametrize("i", [OPTIONAL, BINARY, MINIMAL, LARGE])
def test_cloudinit_crawl_imdsv1(lab, served, i, cloudinit_ready):
    """The path of a guest whose DMI does not say EC2: no token at all,
    liveness probe on 2009-04-04, then the same crawl (no identity
    document: cloud-init reads it only on AWS)."""
    out = cloudinit(lab, i, "unknown")
    assert_crawl_matches(out, i, served)
    reqs = out["requests"]
    assert all(r["method"] == "GET" and not r["token"] for r in reqs), reqs
    assert path_of(reqs[0]["url"]) == "/2009-04-04/meta-data/instance-id"
    assert out["dynamic"] is None


def test_cloudinit_imdsv1_gets_nothing_from_a_tokens_required_vm(lab, cloudinit_ready):
    """docs/vm-schema.md: http-tokens required breaks cloud-init on guests
    whose DMI does not say EC2.  Its probe gets 401 until it gives up."""
    out = cloudinit(lab, REQUIRED, "unknown", max_wait=3)
    assert out["ok"] is False, out
    reqs = out["requests"]
    assert reqs, "cloud-init sent nothing"
    assert {(r["method"], path_of(r["url"]), r["status"]) for r in reqs} == \
        {("GET", "/2009-04-04/meta-data/instance-id", 401)}


def test_cloudinit_replaces_a_token_the_server_does_not_know(lab, cloudinit_ready):
    """cloud-init drops its token on 401 and PUTs again (its
    _refresh_stale_aws_token_cb): the server must answer an unknown token
    with 401, not 403 or 404."""
    out = cloudinit(lab, REQUIRED, "aws", mode="stale-token")
    assert out["ok"] is True, out
    refetch = out["refetch"]
    got = [(r["method"], path_of(r["url"]), r["token"], r["status"]) for r in refetch["requests"]]
    assert got == [("GET", "/2021-03-23/user-data", True, 401),
                   ("PUT", "/latest/api/token", False, 200),
                   ("GET", "/2021-03-23/user-data", True, 200)], got
    assert base64.b64decode(refetch["user_data_b64"]) == user_data_of(REQUIRED)


# --- botocore ---------------------------------------------------------------

def botocore(lab, i, ns=None, timeout=5):
    p = in_vm(lab, i, PYTHON, os.path.join(CLIENTS, "botocore_ec2.py"), "--timeout", str(timeout), ns=ns)
    return json_from(p, f"botocore in {ns or f'vm{i}'}")


@pytest.mark.parametrize("i", WITH_ROLE)
def test_botocore_credentials_and_region(lab, i, botocore_ready):
    out = botocore(lab, i)
    assert out["credentials"] == {"role_name": role(i), "access_key": access_key(i),
                                  "secret_key": secret_key(i), "token": session_token(i),
                                  "expiry_time": EXPIRES}
    assert out["provider"] == {"method": "iam-role", "access_key": access_key(i),
                               "secret_key": secret_key(i), "token": session_token(i)}
    assert out["region"] == region(i)


def test_botocore_without_role_or_zone_finds_nothing(lab, botocore_ready):
    """No role: iam/security-credentials/ is 404 and botocore has no
    credentials (not an exception); no zone: no region."""
    assert botocore(lab, MINIMAL) == {"credentials": {}, "provider": None, "region": None}


# --- cloud-guest-utils ec2metadata ------------------------------------------

EC2METADATA = "/usr/bin/ec2metadata"
# ec2metadata's options in the order it prints them without options (its
# METAOPTS); the placement ones are read under meta-data/placement/.
EC2METADATA_OPTS = [
    "ami-id", "ami-launch-index", "ami-manifest-path", "ancestor-ami-ids", "availability-zone",
    "block-device-mapping", "instance-action", "instance-id", "instance-type", "local-hostname",
    "local-ipv4", "kernel-id", "mac", "profile", "product-codes", "public-hostname", "public-ipv4",
    "public-keys", "ramdisk-id", "reservation-id", "security-groups", "user-data",
    "availability-zone-id", "region", "host-id", "group-name", "partition-number",
]
PLACEMENT_OPTS = {"availability-zone", "availability-zone-id", "region", "host-id", "group-name",
                  "partition-number"}


def ec2metadata_value(tree, i, opt):
    """What ec2metadata prints after "opt: " (its display() with prefix),
    given the tree the server serves."""
    if opt == "user-data":
        return repr(user_data_of(i)) if user_data_of(i) is not None else "unavailable"
    if opt == "public-keys":
        keys = [k["openssh-key"] for k in tree.get("public-keys", {}).values()]
        return repr(keys) if keys else "unavailable"
    node = tree.get("placement", {}) if opt in PLACEMENT_OPTS else tree
    value = node.get(opt)
    if isinstance(value, dict):  # a directory asked without a slash: its listing
        value = "\n".join(k + "/" if isinstance(v, dict) else k for k, v in value.items())
    return value if value else "unavailable"


def ec2metadata(lab, i, *args):
    p = in_vm(lab, i, EC2METADATA, *args, timeout=60)
    assert p.returncode == 0, f"ec2metadata {' '.join(args)} in vm{i}: {p.returncode} {p.stderr.decode()}"
    return p.stdout


@pytest.fixture(scope="module")
def ec2metadata_ready():
    if not os.access(EC2METADATA, os.X_OK):
        pytest.skip("cloud-guest-utils is not installed (scripts/install-deps.sh installs it)")


@pytest.mark.parametrize("i", ALL)
def test_ec2metadata_prints_everything(lab, ec2metadata_ready, i):
    """ec2metadata reads /2009-04-04/ and asks for directories without a
    slash (public-keys, block-device-mapping)."""
    tree = walk(lab, i, "/2009-04-04")
    assert_holds(tree, loaded_tree(i))
    want = "".join(f"{opt}: {ec2metadata_value(tree, i, opt)}\n" for opt in EC2METADATA_OPTS)
    got = ec2metadata(lab, i).decode("utf-8", "replace")
    assert got.splitlines() == want.splitlines()


@pytest.mark.parametrize("i", WITH_ROLE + [LARGE])
def test_ec2metadata_single_values(lab, ec2metadata_ready, i):
    """One option at a time: user-data comes out byte for byte (binary
    too), the rest as lines."""
    assert ec2metadata(lab, i, "--user-data") == user_data_of(i)
    assert ec2metadata(lab, i, "--instance-id") == RECORDS[i]["instance-id"].encode() + b"\n"
    assert ec2metadata(lab, i, "--region") == region(i).encode() + b"\n"
    keys = [k["openssh-key"] for k in keys_of(i)]
    assert ec2metadata(lab, i, "--public-keys") == repr(keys).encode() + b"\n"


# --- AWS SDK for JavaScript v3 ------------------------------------------------

CREDENTIAL_PROVIDERS = ["@aws-sdk/credential-provider-imds", "@smithy/credential-provider-imds"]


@pytest.fixture(scope="module")
def node_clients():
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: the AWS SDK for JavaScript tests need Node 20")
    if not os.path.isdir(NODE_MODULES):
        pytest.skip(f"{NODE_MODULES} is missing: scripts/install-npm-clients.sh installs the npm "
                    "clients (it needs the npm registry, which CI does not reach)")
    return node


def aws_js(lab, node, i, *args, quick=False, ns=None, timeout_ms=5000):
    """Runs the driver in VM i.  quick: the process must end well before
    imdsd's idle timeout (10 s).  MetadataService never reads the body of
    an error answer, so after one Node lives until the server closes the
    connection (real-clients.md item 15): imdsd closes after 4xx/5xx."""
    start = time.monotonic()
    p = in_vm(lab, i, node, os.path.join(CLIENTS, "aws_sdk_js.js"), *args, timeout=60, ns=ns,
              NODE_PATH=NODE_MODULES, IMDS_JS_TIMEOUT_MS=str(timeout_ms))
    took = time.monotonic() - start
    out = json_from(p, f"aws_sdk_js.js {' '.join(args)} in vm{i}")
    assert not quick or took < 5, f"node ran {took:.1f} s: the connection of an error answer stayed open"
    return out


@pytest.mark.parametrize("module", CREDENTIAL_PROVIDERS)
@pytest.mark.parametrize("i", WITH_ROLE)
def test_js_credential_provider(lab, node_clients, module, i):
    out = aws_js(lab, node_clients, i, "creds", module)
    # The legacy path carries no AccountId, so the SDK reports none.
    assert out == {"ok": True, "accessKeyId": access_key(i), "secretAccessKey": secret_key(i),
                   "sessionToken": session_token(i), "expiration": EXPIRES.replace("Z", ".000Z"),
                   "accountId": None}


def js_paths(i):
    """path -> body MetadataService.request must return for VM i."""
    tree = loaded_tree(i)
    paths = {
        "/latest/meta-data/instance-id": RECORDS[i]["instance-id"],
        "/latest/meta-data/hostname": tree["hostname"],
        "/latest/meta-data/placement/region": region(i),
        "/latest/meta-data/security-groups": tree["security-groups"],
        "/latest/meta-data/public-keys/1/openssh-key": keys_of(i)[1]["openssh-key"],
    }
    if b"\0" not in user_data_of(i):  # request() returns text: binary cannot round-trip
        paths["/latest/user-data"] = user_data_of(i).decode()
    if "iam" in tree:
        paths[f"/latest/meta-data/iam/security-credentials/{role(i)}"] = \
            tree["iam"]["security-credentials"][role(i)]
    for key, value in tree.get("tags", {}).get("instance", {}).items():
        paths[f"/latest/meta-data/tags/instance/{key}"] = value
    return paths


@pytest.mark.parametrize("i", [OPTIONAL, REQUIRED])
def test_js_metadata_service_with_tokens(lab, node_clients, i):
    """MetadataService sends "//latest/..." (endpoint path "/" + path) and
    a fresh token PUT before every request."""
    want = js_paths(i)
    doc = "/latest/dynamic/instance-identity/document"
    out = aws_js(lab, node_clients, i, "request", *want, doc)
    for path, body in want.items():
        assert out[path] == {"ok": True, "body": body}, path
    assert out[doc]["ok"], out[doc]
    assert json.loads(out[doc]["body"]) == identity_document(i)


def test_js_metadata_service_imdsv1(lab, node_clients):
    want = js_paths(OPTIONAL)
    out = aws_js(lab, node_clients, OPTIONAL, "request", "--no-token", *want)
    assert out == {path: {"ok": True, "body": body} for path, body in want.items()}


def test_js_metadata_service_imdsv1_on_a_tokens_required_vm_gets_401(lab, node_clients):
    path = "/latest/meta-data/instance-id"
    out = aws_js(lab, node_clients, REQUIRED, "request", "--no-token", path, quick=True)
    assert out[path]["ok"] is False and out[path]["status"] == 401, out


def test_js_without_role_or_zone(lab, node_clients):
    """A VM loaded with nothing optional: the credential providers fail
    (no role), the region is missing (placement/region 404: the JS SDK
    reads no other source), user-data is 404, and the identity document
    keeps its unknowns as null."""
    for module in CREDENTIAL_PROVIDERS:
        out = aws_js(lab, node_clients, MINIMAL, "creds", module)
        assert out["ok"] is False, (module, out)
    paths = ["/latest/meta-data/instance-id", "/latest/meta-data/placement/region", "/latest/user-data",
             "/latest/dynamic/instance-identity/document"]
    out = aws_js(lab, node_clients, MINIMAL, "request", *paths, quick=True)
    assert out[paths[0]] == {"ok": True, "body": RECORDS[MINIMAL]["instance-id"]}
    assert (out[paths[1]]["ok"], out[paths[1]]["status"]) == (False, 404), out[paths[1]]
    assert (out[paths[2]]["ok"], out[paths[2]]["status"]) == (False, 404), out[paths[2]]
    assert json.loads(out[paths[3]]["body"]) == identity_document(MINIMAL)


# --- behind a NAT in the guest: no token, IMDSv1 fallback -------------------

CTR_NET = "10.88.0"  # the container link inside VM 1


@pytest.fixture(scope="module")
def container(lab):
    """A "container" namespace behind VM OPTIONAL, routed and masqueraded
    through it: one hop further away, so with the VM's hop limit of 1 the
    token reply dies in the VM's forwarding path (EC2's container case,
    ec2-imds-behaviour §1.4), while tokenless GETs still work.  Named in the
    lab's VM pattern, so `lab.sh down` removes it whatever happens here."""
    if shutil.which("nft") is None:
        pytest.skip("nft is not installed (Debian package nftables; scripts/install-deps.sh installs it)")
    ns = f"{lab.prefix}-vm98-{lab.suffix}"
    vm = ["nsenter", f"--net=/run/netns/{lab.vm_ns(OPTIONAL)}"]
    rules = lab.write_json("clients-ctr-nat.nft", (
        "table ip clientsctr {\n  chain post {\n    type nat hook postrouting priority 100;\n"
        f"    ip saddr {CTR_NET}.0/24 oifname \"eth0\" masquerade\n  }}\n}}\n"))
    steps = [
        ["ip", "netns", "add", ns],
        ["ip", "-n", lab.vm_ns(OPTIONAL), "link", "add", "ctr0", "type", "veth", "peer", "name", "eth0", "netns", ns],
        ["ip", "-n", lab.vm_ns(OPTIONAL), "addr", "add", f"{CTR_NET}.1/24", "dev", "ctr0"],
        ["ip", "-n", lab.vm_ns(OPTIONAL), "link", "set", "ctr0", "up"],
        ["ip", "-n", ns, "link", "set", "lo", "up"],
        ["ip", "-n", ns, "addr", "add", f"{CTR_NET}.2/24", "dev", "eth0"],
        ["ip", "-n", ns, "link", "set", "eth0", "up"],
        ["ip", "-n", ns, "route", "add", "default", "via", f"{CTR_NET}.1"],
        vm + ["sysctl", "-qw", "net.ipv4.ip_forward=1"],
        vm + ["nft", "-f", rules],
    ]
    try:
        for cmd in steps:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
            assert p.returncode == 0, f"{' '.join(cmd)}: {p.stderr}"
        yield ns
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def test_container_gets_no_token(lab, container):
    """The premise of the tests below: from the container the PUT's answer
    never arrives (hop limit 1), a tokenless GET does."""
    p = in_vm(lab, OPTIONAL, "curl", "-sS", "-m", "2", "-X", "PUT", "-H", "X-aws-ec2-metadata-token-ttl-seconds: 60",
              "http://169.254.169.254/latest/api/token", ns=container)
    assert p.returncode != 0 and p.stdout == b"", p
    p = in_vm(lab, OPTIONAL, "curl", "-sS", "-m", "5", "http://169.254.169.254/latest/meta-data/instance-id",
              ns=container)
    assert p.stdout == RECORDS[OPTIONAL]["instance-id"].encode(), p


def test_container_token_put_is_reset_as_on_ec2(lab, container):
    """On EC2 a pod one hop too far completes the handshake and then gets
    "Connection reset by peer" on the PUT (ec2-imds-behaviour.md §1.4,
    capture C3), so clients without a read timeout (ec2metadata, cloud-init
    22.4's last wait_for_url attempt) fail instead of hanging."""
    p = in_vm(lab, OPTIONAL, "curl", "-sS", "-m", "8", "-X", "PUT", "-H", "X-aws-ec2-metadata-token-ttl-seconds: 60",
              "http://169.254.169.254/latest/api/token", ns=container)
    assert p.returncode == 56, f"curl exited {p.returncode}: {p.stderr.decode().strip()}"


def test_botocore_in_a_container_falls_back_to_imdsv1(lab, container, botocore_ready):
    """botocore: a token PUT that times out means IMDSv1 (BC
    _fetch_metadata_token: ReadTimeoutError -> None)."""
    out = botocore(lab, OPTIONAL, ns=container, timeout=2)
    i = OPTIONAL
    assert out["credentials"] == {"role_name": role(i), "access_key": access_key(i),
                                  "secret_key": secret_key(i), "token": session_token(i),
                                  "expiry_time": EXPIRES}
    assert out["region"] == region(i)


def test_js_in_a_container_falls_back_to_imdsv1(lab, node_clients, container):
    """The JS credential providers and MetadataService: a token timeout
    means IMDSv1."""
    i = OPTIONAL
    for module in CREDENTIAL_PROVIDERS:
        out = aws_js(lab, node_clients, i, "creds", module, ns=container, timeout_ms=2000)
        assert out.get("accessKeyId") == access_key(i) and out["sessionToken"] == session_token(i), (module, out)
    # MetadataService 3.1164.0 tries a token again before every request: its
    # check for a timeout (error.message === "TimeoutError") does not match
    # what NodeHttpHandler throws, so each path costs one timeout.  A few.
    want = {path: body for path, body in js_paths(i).items()
            if path.endswith(("/instance-id", "/region", f"/security-credentials/{role(i)}"))}
    assert len(want) == 3
    out = aws_js(lab, node_clients, i, "request", *want, ns=container, timeout_ms=2000)
    assert out == {path: {"ok": True, "body": body} for path, body in want.items()}


def test_cloudinit_in_a_container(lab, served, container, cloudinit_ready):
    """cloud-init's IMDSv1 path works from behind the NAT; its AWS path
    finds no token and, as on EC2, does not fall back: no datasource.
    (max-wait below the 5 s request timeout: one PUT, then give up.  A
    longer wait hits cloud-init 22.4's wait_for_url, which turns a
    remaining time under 1 s into "no timeout" and then waits forever for
    an answer that never comes.)"""
    out = cloudinit(lab, OPTIONAL, "unknown", ns=container)
    assert_crawl_matches(out, OPTIONAL, served)
    out = cloudinit(lab, OPTIONAL, "aws", max_wait=2, ns=container)
    assert out["ok"] is False, out
    assert [(r["method"], path_of(r["url"]), r["status"]) for r in out["requests"]] == \
        [("PUT", "/latest/api/token", None)]


# --- through an HTTP proxy in the guest -----------------------------------------

PROXY_PORT = 3128


@pytest.fixture(scope="module")
def proxy(lab):
    """proxy(i) -> the URL of a forwarding proxy running in VM i that adds
    Via and X-Forwarded-For (tests/clients/http_proxy.py).  imdsd refuses
    token PUTs carrying either with 403 (docs/vm-schema.md, "Token
    requests through a proxy"); each client then reacts in its own way."""
    running = {}

    def start(i):
        if i not in running:
            p = subprocess.Popen(["nsenter", f"--net=/run/netns/{lab.vm_ns(i)}", PYTHON,
                                  os.path.join(CLIENTS, "http_proxy.py"), "--port", str(PROXY_PORT)],
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            running[i] = p
            line = p.stdout.readline()
            assert line.strip() == "ready", f"proxy in vm{i} did not start: {line!r}"
        return f"http://127.0.0.1:{PROXY_PORT}"

    yield start
    for p in running.values():
        p.terminate()
        p.wait(10)


@pytest.mark.parametrize("i", [OPTIONAL, REQUIRED])
def test_botocore_through_a_proxy(lab, proxy, i, botocore_ready):
    """botocore reads the 403 on its token PUT as "no IMDSv2" and goes on
    without a token: it gets everything from a VM that allows IMDSv1, and
    nothing (but no exception either) from one that requires tokens."""
    url = proxy(i)
    p = in_vm(lab, i, PYTHON, os.path.join(CLIENTS, "botocore_ec2.py"), http_proxy=url)
    out = json_from(p, f"botocore through a proxy in vm{i}")
    if i == REQUIRED:
        assert out == {"credentials": {}, "provider": None, "region": None}
        return
    assert out["credentials"] == {"role_name": role(i), "access_key": access_key(i),
                                  "secret_key": secret_key(i), "token": session_token(i),
                                  "expiry_time": EXPIRES}
    assert out["region"] == region(i)


def test_cloudinit_through_a_proxy(lab, served, proxy, cloudinit_ready):
    """cloud-init on AWS takes a 403 on the token PUT as "IMDS disabled"
    and stops (no IMDSv1 fallback, as on EC2); its IMDSv1 path crawls
    through the proxy as usual."""
    url = proxy(OPTIONAL)
    p = in_vm(lab, OPTIONAL, PYTHON, os.path.join(CLIENTS, "cloudinit_ec2.py"), "--platform", "aws",
              "--max-wait", "5", "--mac", vmdata.vm_mac(OPTIONAL), http_proxy=url)
    out = json_from(p, "cloud-init (aws) through a proxy")
    assert out["ok"] is False, out
    assert [(r["method"], path_of(r["url"]), r["status"]) for r in out["requests"]] == \
        [("PUT", "/latest/api/token", 403)]
    p = in_vm(lab, OPTIONAL, PYTHON, os.path.join(CLIENTS, "cloudinit_ec2.py"), "--platform", "unknown",
              "--mac", vmdata.vm_mac(OPTIONAL), http_proxy=url)
    assert_crawl_matches(json_from(p, "cloud-init (unknown) through a proxy"), OPTIONAL, served)

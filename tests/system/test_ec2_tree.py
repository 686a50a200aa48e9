"""Acceptance 2 (EC2): a VM with every section of the record (meta-data,
public keys, user-data, iam, tags) is walked through the real bridge path
the way cloud-init crawls it, under `latest` and dated versions: every
entry a listing shows answers 200 with EC2's framing, and paths no listing
shows answer 404 with EC2's XHTML page.  Also: tags only when the VM
enables them, iam/ only with a role, Forwarded/Via on token requests."""

import email.utils
import json
import re
import urllib.parse

import pytest

import vmdata
from vmhttp import Connection, NoResponse, get, put_token, token_for

VERSIONS = ["latest", "2009-04-04", "2016-09-02", "2021-03-23"]
RICH, PLAIN = 1, 2
ROLE = "lab-role-01"
ACCOUNT = "123456789012"
CREDS = {
    "access-key-id": "ASIALABEXAMPLE000001",
    "secret-access-key": "labSecretAccessKey/0001+example",
    "token": "IQoJb3JpZ2luX2VjLabSessionToken0001==",
    "expiration": "2036-01-01T06:00:00Z",
}
TAGS = {"Name": "vm01-web", "env": "lab", "aws:cloudformation:stack-name": "st=a,b@c"}
# A budget far above the walk's needs: this test is about content.
UNLIMITED = {"rate-pps": 1000000, "rate-burst": 1000000, "request-rate": 1000000, "request-burst": 1000000}


def rich_record(i):
    rec = vmdata.vm_record(i)
    rec["options"].update(UNLIMITED)
    rec["options"]["instance-metadata-tags"] = "enabled"
    rec["meta-data"].update({
        "ami-id": "ami-0123456789abcdef0",
        "instance-type": "t3.micro",
        "public-ipv4": "203.0.113.21",
        "placement": {"availability-zone": "eu-west-1a"},
        "security-groups": ["default", "web"],
        "spot": {"termination-time": "2036-01-01T05:58:00Z"},
        # keys a client must escape in the URL (requests sends "a%20b")
        "custom": {"a b": "spaced", "100%": "percent"},
    })
    rec["iam"] = {
        "role": ROLE,
        "instance-profile-arn": f"arn:aws:iam::{ACCOUNT}:instance-profile/lab-profile",
        "last-updated": "2036-01-01T00:00:00Z",
        "credentials": dict(CREDS),
    }
    rec["tags"] = dict(TAGS)
    return rec


def plain_record(i):
    rec = vmdata.vm_record(i)
    rec["options"].update(UNLIMITED)
    rec["tags"] = {"Name": "hidden"}  # given, but tags are not enabled
    return rec


@pytest.fixture(scope="module")
def lab(make_lab):
    lab = make_lab(2)
    lab.load([rich_record(RICH), plain_record(PLAIN)])
    lab.start_imdsd()
    return lab


class Walker:
    """GETs over one keep-alive connection (reopened when the server
    closes), checking EC2's framing on every reply."""

    def __init__(self, ns, token=None):
        self.ns = ns
        self.token = token
        self.conn = None
        self.fetched = {}

    def get(self, path):
        headers = {"X-aws-ec2-metadata-token": self.token} if self.token else {}
        target = urllib.parse.quote(path, safe="/:@,+=;")  # as requests does
        for attempt in range(2):
            if self.conn is None:
                self.conn = Connection(self.ns)
            try:
                r = self.conn.request("GET", target, headers)
            except NoResponse:
                self.conn.close()
                self.conn = None
                if attempt:
                    raise
                continue
            if (r.header("Connection") or "").lower() == "close":
                self.conn.close()
                self.conn = None
            return r

    def close(self):
        if self.conn:
            self.conn.close()

    def check_ok(self, path, r):
        assert r.status == 200, f"{path}: listed but {r!r}"
        assert r.header("Server") == "EC2ws", path
        want_type = "application/octet-stream" if path.endswith("/user-data") else "text/plain"
        assert r.header("Content-Type") == want_type, f"{path}: {r.headers}"
        assert int(r.header("Content-Length")) == len(r.body), path
        modified = r.header("Last-Modified")
        assert modified and email.utils.parsedate_to_datetime(modified), f"{path}: Last-Modified {modified!r}"
        if not path.endswith("/user-data"):
            assert not r.body.endswith(b"\n"), f"{path}: trailing newline in {r.body[-40:]!r}"

    def walk(self, path):
        """Walks the directory at `path` (ending in '/'); records every
        leaf's body in self.fetched."""
        r = self.get(path)
        self.check_ok(path, r)
        self.fetched[path] = r.body
        for entry in r.text.split("\n") if r.body else []:
            assert entry and entry == entry.strip(), f"{path}: bad entry {entry!r}"
            if path.endswith("/public-keys/") and "=" in entry:
                # cloud-init turns N=name into N/openssh-key
                self.walk(path + entry.split("=", 1)[0] + "/")
            elif entry.endswith("/"):
                self.walk(path + entry)
            elif path.count("/") == 2 and entry in ("dynamic", "meta-data"):
                self.walk(path + entry + "/")  # EC2 lists these without '/'
            else:
                leaf = self.get(path + entry)
                self.check_ok(path + entry, leaf)
                self.fetched[path + entry] = leaf.body


def expect_404(walker, path):
    r = walker.get(path)
    assert r.status == 404, f"{path}: {r!r}"
    assert r.header("Content-Type") == "text/html", path
    assert r.header("Server") == "EC2ws", path
    assert b"<title>404 - Not Found</title>" in r.body and r.body.startswith(b"<?xml"), r.body
    assert r.header("Connection") == "close", f"{path}: error replies close, as EC2's"


@pytest.mark.parametrize("version", VERSIONS)
def test_whole_tree_walks(lab, version):
    ns = lab.vm_ns(RICH)
    token = token_for(ns) if version == "latest" else None  # one IMDSv2 walk, the rest v1
    w = Walker(ns, token)
    try:
        w.walk(f"/{version}/")
        got = w.fetched
        assert len(got) > 60, sorted(got)
        md = f"/{version}/meta-data/"
        eni = f"{md}network/interfaces/macs/{vmdata.vm_mac(RICH)}/"
        # What cloud-init and the SDKs read, with the values the VM was loaded with.
        assert got[md + "instance-id"] == vmdata.instance_id(RICH).encode()
        assert got[md + "hostname"] == vmdata.hostname(RICH).encode()
        assert got[md + "placement/region"] == b"eu-west-1"
        assert got[md + "placement/availability-zone-id"] == b"euw1-az1"
        assert got[md + "services/domain"] == b"amazonaws.com"
        assert got[md + "services/partition"] == b"aws"
        assert got[md + "instance-life-cycle"] == b"spot"
        assert got[md + "spot/termination-time"] == b"2036-01-01T05:58:00Z"
        assert got[md + "public-hostname"] == b"ec2-203-0-113-21.eu-west-1.compute.amazonaws.com"
        assert got[eni + "local-ipv4s"] == vmdata.vm_ipv4(RICH).encode()
        assert got[eni + "owner-id"] == ACCOUNT.encode()
        assert got[eni + "security-groups"] == b"default\nweb"
        assert re.fullmatch(rb"sg-[0-9a-f]{17}\nsg-[0-9a-f]{17}", got[eni + "security-group-ids"])
        assert re.fullmatch(rb"eni-[0-9a-f]{17}", got[eni + "interface-id"])
        assert got[eni + "ipv4-associations/203.0.113.21"] == vmdata.vm_ipv4(RICH).encode()
        assert got[md + "custom/a b"] == b"spaced" and got[md + "custom/100%"] == b"percent"
        assert got[md + "iam/"] == b"info\nsecurity-credentials/"
        assert got[md + "iam/security-credentials/"] == ROLE.encode()
        info = json.loads(got[md + "iam/info"])
        assert info["Code"] == "Success" and info["InstanceProfileArn"].endswith(":instance-profile/lab-profile")
        assert got[md + "tags/instance/"] == b"Name\naws:cloudformation:stack-name\nenv"
        for key, value in TAGS.items():
            assert got[md + "tags/instance/" + key] == value.encode()
        doc = json.loads(got[f"/{version}/dynamic/instance-identity/document"])
        assert doc["accountId"] == ACCOUNT and doc["region"] == "eu-west-1"
        assert got[f"/{version}/user-data"] == vmdata.user_data(RICH)
        # The listings cover the categories EC2 shows (spec 1.6/1.7).
        top = set(got[md].decode().split("\n"))
        for category in ("ami-id", "ami-launch-index", "ami-manifest-path", "block-device-mapping/", "events/",
                         "hostname", "iam/", "instance-action", "instance-id", "instance-life-cycle",
                         "instance-type", "local-hostname", "local-ipv4", "mac", "network/", "placement/",
                         "profile", "public-hostname", "public-ipv4", "public-keys/", "reservation-id",
                         "security-groups", "services/", "spot/", "tags/"):
            assert category in top, f"{category} not in {sorted(top)}"
        # Unlisted paths are 404, at every level.
        for d in [p for p in got if p.endswith("/")]:
            expect_404(w, d + "no-such-entry")
        for path in (md + "iam/security-credentials/other-role", md + "tags/instance/nope",
                     md + "public-keys/1/openssh-key", md + "network/interfaces/macs/52:54:00:00:00:00/mac",
                     f"/{version}/dynamic/instance-identity/dsa2048x"):
            expect_404(w, path)
    finally:
        w.close()


def test_credentials_documents(lab):
    ns = lab.vm_ns(RICH)
    token = token_for(ns)
    for path in (f"/latest/meta-data/iam/security-credentials/{ROLE}",
                 f"/latest/meta-data/iam/security-credentials-extended/{ROLE}"):
        r = get(ns, path, token)
        assert r.status == 200 and r.header("Content-Type") == "text/plain", r
        # EC2's layout: two-space indent, '"Key" : value', no trailing newline
        assert r.body.startswith(b'{\n  "Code" : "Success",\n  "LastUpdated" : "2036-01-01T00:00:00Z",\n'), r.body
        doc = json.loads(r.body)
        assert doc["Type"] == "AWS-HMAC"
        assert doc["AccessKeyId"] == CREDS["access-key-id"]
        assert doc["SecretAccessKey"] == CREDS["secret-access-key"]
        assert doc["Token"] == CREDS["token"]
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", doc["Expiration"]), doc
        if "extended" in path:
            assert doc["AccountId"] == ACCOUNT
        else:
            assert "AccountId" not in doc


def test_plain_vm_has_no_tags_and_no_iam(lab):
    ns = lab.vm_ns(PLAIN)
    w = Walker(ns)
    try:
        listing = w.get("/latest/meta-data/")
        assert listing.status == 200
        entries = listing.text.split("\n")
        assert "tags/" not in entries and "iam/" not in entries, entries
        for path in ("/latest/meta-data/tags/", "/latest/meta-data/tags/instance", "/latest/meta-data/tags/instance/",
                     "/latest/meta-data/tags/instance/Name", "/latest/meta-data/iam/",
                     "/latest/meta-data/iam/info", "/latest/meta-data/iam/security-credentials/",
                     f"/latest/meta-data/iam/security-credentials-extended/{ROLE}"):
            expect_404(w, path)
        w.walk("/2009-04-04/")  # and the rest walks cleanly
    finally:
        w.close()


@pytest.mark.parametrize("header", ["Forwarded: for=192.0.2.60;proto=http", "Via: 1.1 squid"])
def test_proxied_token_requests(lab, header):
    name, value = header.split(": ", 1)
    for i in (RICH, PLAIN):
        r = put_token(lab.vm_ns(i), extra={name: value})
        assert r.status == 403 and r.body == b"", f"vm{i} {header}: {r!r}"
    # The VM that allows them gets a token; X-Forwarded-For stays refused.
    recs = [rich_record(RICH), plain_record(PLAIN)]
    recs[1]["options"]["proxied-token-requests"] = "allow"
    lab.load(recs)
    try:
        r = put_token(lab.vm_ns(PLAIN), extra={name: value})
        assert r.status == 200 and len(r.body) == 56, r
        r = put_token(lab.vm_ns(PLAIN), extra={name: value, "X-Forwarded-For": "10.0.0.9"})
        assert r.status == 403, r
        r = put_token(lab.vm_ns(RICH), extra={name: value})
        assert r.status == 403, r
    finally:
        lab.load([rich_record(RICH), plain_record(PLAIN)])

"""Acceptance 4: IAM credentials replaced while a client polls them.  A
poller in the VM fetches the role's credentials (legacy and extended
paths, IMDSv2) over fresh connections while the VM is loaded again and
again with new credential sets; every document it gets is entirely one
set, sets never go backwards, and right after `imds-loadmap load`
returns the new set is what the VM gets (never stale).  The same with
botocore's own fetcher as the polling client."""

import email.utils
import json
import threading
import time

import pytest

import vmdata
from vmhttp import NoResponse, get, netns, token_for

VM = 1
ROLE = "rotating-role"
ROUNDS = 40
# Tokens of real STS sessions are ~1 KB; a longer one makes each document
# span several TCP segments, so a torn read could not hide in one packet.
FILLER = "Q" * 3000


def creds(k):
    return {
        "access-key-id": f"ASIAROTATION{k:08d}",
        "secret-access-key": f"secret-{k:06d}-" + "s" * 30,
        "token": f"token-{k:06d}-" + FILLER,
        "expiration": f"2036-01-01T{6 + k // 3600:02d}:{k // 60 % 60:02d}:{k % 60:02d}Z",
    }


def last_updated(k):
    return f"2036-01-01T{k // 3600:02d}:{k // 60 % 60:02d}:{k % 60:02d}Z"


def record(k):
    rec = vmdata.vm_record(VM)
    rec["options"].update({"rate-pps": 1000000, "rate-burst": 1000000,
                           "request-rate": 1000000, "request-burst": 1000000})
    rec["iam"] = {
        "role": ROLE,
        "instance-profile-arn": "arn:aws:iam::123456789012:instance-profile/rotating",
        "last-updated": last_updated(k),
        "credentials": creds(k),
    }
    return rec


def set_of(body):
    """The credential set a document belongs to; fails unless every field
    comes from that one set."""
    doc = json.loads(body)
    k = int(doc["AccessKeyId"][len("ASIAROTATION"):])
    want = creds(k)
    assert doc["Code"] == "Success" and doc["Type"] == "AWS-HMAC", doc
    assert doc["SecretAccessKey"] == want["secret-access-key"], f"set {k}: {doc['SecretAccessKey']!r}"
    assert doc["Token"] == want["token"], f"set {k}: token {doc['Token'][:20]!r}"
    assert doc["Expiration"] == want["expiration"], f"set {k}: {doc['Expiration']}"
    assert doc["LastUpdated"] == last_updated(k), f"set {k}: {doc['LastUpdated']}"
    return k


@pytest.fixture(scope="module")
def lab(make_lab):
    lab = make_lab(1)
    lab.load([record(0)])
    lab.start_imdsd()
    return lab


class Poller(threading.Thread):
    def __init__(self, ns, token):
        super().__init__(daemon=True)
        self.ns, self.token = ns, token
        self.stop = threading.Event()
        self.seen = []  # set number of each document, in order
        self.errors = []

    def run(self):
        paths = [f"/latest/meta-data/iam/security-credentials/{ROLE}",
                 f"/latest/meta-data/iam/security-credentials-extended/{ROLE}"]
        n = 0
        while not self.stop.is_set():
            path = paths[n % 2]
            n += 1
            try:
                r = get(self.ns, path, self.token)
                assert r.status == 200, f"{path}: {r!r}"
                self.seen.append(set_of(r.body))
            except (AssertionError, ValueError, KeyError, NoResponse) as e:
                self.errors.append(f"{path}: {e!r}")
                return


def test_rotation_while_polling(lab):
    ns = lab.vm_ns(VM)
    token = token_for(ns)
    poller = Poller(ns, token)
    poller.start()
    try:
        for k in range(1, ROUNDS + 1):
            lab.load([record(k)])
            # Not stale: a request made after the load returned gets set k.
            r = get(ns, f"/latest/meta-data/iam/security-credentials/{ROLE}", token)
            assert r.status == 200, r
            assert set_of(r.body) == k
            time.sleep(0.01)
    finally:
        poller.stop.set()
        poller.join(30)
    assert not poller.errors, poller.errors
    seen = poller.seen
    # The poll really overlapped the reloads.
    assert len(seen) >= ROUNDS and len(set(seen)) >= ROUNDS // 4, (len(seen), sorted(set(seen)))
    backwards = [(a, b) for a, b in zip(seen, seen[1:]) if b < a]
    assert not backwards, f"credentials went back to an older set: {backwards[:5]}"


class BotocorePoller(threading.Thread):
    """botocore's own credential fetcher (what boto3 uses on EC2), run in
    the VM's namespace: token PUT, role listing, credentials, parsed."""

    def __init__(self, ns):
        super().__init__(daemon=True)
        self.ns = ns
        self.stop = threading.Event()
        self.seen = []
        self.errors = []

    def run(self):
        from botocore.utils import InstanceMetadataFetcher

        fetcher = InstanceMetadataFetcher(timeout=2, num_attempts=1)
        # Sockets belong to the namespace of the thread that creates them.
        with netns(self.ns):
            while not self.stop.is_set():
                got = fetcher.retrieve_iam_role_credentials()
                if not got:
                    self.errors.append("botocore found no credentials")
                    return
                k = int(got["access_key"][len("ASIAROTATION"):])
                want = creds(k)
                if (got["role_name"], got["secret_key"], got["token"], got["expiry_time"]) != (
                        ROLE, want["secret-access-key"], want["token"], want["expiration"]):
                    self.errors.append(f"botocore got a mixed set around {k}: {got['secret_key']!r}")
                    return
                self.seen.append(k)


def test_rotation_seen_by_botocore(lab):
    pytest.importorskip("botocore.utils", reason="python3-botocore is not installed")
    poller = BotocorePoller(lab.vm_ns(VM))
    poller.start()
    try:
        for k in range(ROUNDS + 1, 2 * ROUNDS + 1):
            lab.load([record(k)])
            time.sleep(0.02)
    finally:
        poller.stop.set()
        poller.join(30)
    assert not poller.errors, poller.errors
    seen = poller.seen
    assert len(set(seen)) >= ROUNDS // 4, sorted(set(seen))
    assert all(b >= a for a, b in zip(seen, seen[1:])), seen


def test_role_removed_and_back(lab):
    """A reload without iam removes the role (404, SDKs read "no role");
    loading it again brings it back."""
    ns = lab.vm_ns(VM)
    rec = record(3 * ROUNDS)
    del rec["iam"]
    lab.load([rec])
    for path in ("/latest/meta-data/iam/info", f"/latest/meta-data/iam/security-credentials/{ROLE}",
                 "/latest/meta-data/iam/security-credentials/"):
        assert get(ns, path).status == 404, path
    before = int(time.time())
    lab.load([record(3 * ROUNDS + 1)])
    r = get(ns, f"/latest/meta-data/iam/security-credentials/{ROLE}")
    assert r.status == 200 and set_of(r.body) == 3 * ROUNDS + 1
    # Last-Modified is the time of the VM's last load.
    modified = email.utils.parsedate_to_datetime(r.header("Last-Modified")).timestamp()
    assert before <= modified <= time.time() + 1, (before, r.header("Last-Modified"))

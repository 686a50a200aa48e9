"""Issue 13, acceptance 1: while VMs 1..3 crawl without pause, on kept-alive
connections and on a new connection per request, every VM's record is
updated 100 times, a third each through `apply`, `update --set` and
`watch`.  Each version's leaves carry its number (hostname, user-data,
instance-type, ami-id, availability zone), so every response is checked
against one version: no request fails, the identity document (built from
three of those leaves) never mixes two versions, and no crawler ever sees
a version older than one it saw before."""

import json
import os
import re
import signal
import subprocess
import threading
import time

import pytest

import imdslab
import vmdata
from vmhttp import Connection, NoResponse, fetch

iid = vmdata.instance_id
VERSIONS = 100
VMS = (1, 2, 3)
PATHS = ("/latest/meta-data/hostname", "/latest/user-data", "/latest/dynamic/instance-identity/document",
         "/latest/meta-data/instance-type")


def leaves(i, v):
    return {"meta-data.hostname": f"vm{i}-v{v}.lab.internal",
            "meta-data.instance-type": f"v{v}.large",
            "meta-data.ami-id": "ami-%08x" % v,
            "meta-data.placement.availability-zone": f"lab-v{v}a",
            "user-data": f"#!/bin/sh\necho version {v}\n"}


def record(i, v):
    rec = vmdata.vm_record(i)
    rec.pop("user-data-base64", None)
    for path, value in leaves(i, v).items():
        at = rec
        keys = path.split(".")
        for k in keys[:-1]:
            at = at.setdefault(k, {})
        at[keys[-1]] = value
    return rec


def dumps(v):
    return vmdata.dumps([record(i, v) for i in VMS])


def version_of(path, body):
    """The version a response carries; raises on a response of none or of
    two versions."""
    text = body.decode()
    if path.endswith("/hostname"):
        return int(re.fullmatch(r"vm\d-v(\d+)\.lab\.internal", text).group(1))
    if path.endswith("/instance-type"):
        return int(re.fullmatch(r"v(\d+)\.large", text).group(1))
    if path.endswith("/user-data"):
        return int(re.fullmatch(r"#!/bin/sh\necho version (\d+)\n", text).group(1))
    doc = json.loads(text)
    found = {int(doc["instanceType"][1:-len(".large")]), int(doc["imageId"][4:], 16),
             int(doc["availabilityZone"][len("lab-v"):-1])}
    if len(found) != 1:
        raise AssertionError(f"identity document mixes versions {sorted(found)}: {text}")
    return found.pop()


class Crawler(threading.Thread):
    """VM i's crawl, kept alive or a connection per request, until stopped."""

    def __init__(self, lab, i, keep_alive, stop):
        super().__init__()
        self.ns, self.keep_alive, self.stop = lab.vm_ns(i), keep_alive, stop
        self.requests, self.errors, self.latest, self.seen = 0, [], 0, set()

    def one(self, conn, path):
        r = conn.request("GET", path) if conn else fetch(self.ns, "GET", path)
        self.requests += 1
        if r.status != 200:
            raise AssertionError(f"{path}: {r.status}")
        v = version_of(path, r.body)
        if v < self.latest:
            raise AssertionError(f"{path}: version {v} after {self.latest}")
        self.latest = v
        self.seen.add(v)

    def run(self):
        conn = None
        while not self.stop.is_set():
            try:
                if self.keep_alive and conn is None:
                    conn = Connection(self.ns)
                for path in PATHS:
                    self.one(conn, path)
            except (AssertionError, NoResponse, OSError, ValueError, KeyError, AttributeError) as e:
                self.errors.append(f"{'keep-alive' if self.keep_alive else 'per-request'}: {e!r}")
                if conn:
                    conn.close()
                    conn = None
        if conn:
            conn.close()


@pytest.fixture(scope="module")
def lab(make_lab):
    lab = make_lab(len(VMS))
    lab.load([record(i, 0) for i in VMS])
    lab.start_imdsd()
    return lab


def ok(p):
    assert p.returncode == 0, f"exit {p.returncode}: {p.stderr}"


def test_every_vm_updated_100_times_while_crawling(lab):
    applied = os.path.join(lab.workdir, "applied")
    watched = os.path.join(lab.workdir, "watched")
    for d in (applied, watched):
        os.makedirs(d)
        with open(os.path.join(d, "vms.json"), "w") as f:
            f.write(dumps(0))
    watch = subprocess.Popen(["nsenter", f"--net=/run/netns/{lab.host_ns}", imdslab.LOADMAP,
                              "--pin-dir", lab.pin_dir, "watch", watched],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stop = threading.Event()
    crawlers = [Crawler(lab, i, keep_alive, stop) for i in VMS for keep_alive in (True, False)]
    try:
        assert watch.stdout.readline().endswith("0 added, 0 updated, 0 deleted, 3 unchanged\n")
        for c in crawlers:
            c.start()
        t0 = time.monotonic()
        for v in range(1, VERSIONS + 1):
            how = ("apply", "update", "watch")[v % 3]
            if how == "apply":
                with open(os.path.join(applied, "vms.json"), "w") as f:
                    f.write(dumps(v))
                ok(lab.loadmap("apply", applied))
            elif how == "update":
                for i in VMS:
                    sets = [a for path, value in leaves(i, v).items() for a in ("--set", f"{path}={value}")]
                    ok(lab.loadmap("update", iid(i), *sets))
            else:
                target = os.path.join(watched, "vms.json")
                if v % 2:
                    with open(target + ".tmp", "w") as f:  # written, then renamed in
                        f.write(dumps(v))
                    os.rename(target + ".tmp", target)
                else:
                    with open(target, "w") as f:  # written in place
                        f.write(dumps(v))
                line = watch.stdout.readline()
                assert line.endswith("0 added, 3 updated, 0 deleted, 0 unchanged\n"), (line, watch.stderr)
        took = time.monotonic() - t0
        time.sleep(0.5)
    finally:
        stop.set()
        for c in crawlers:
            c.join()
        watch.send_signal(signal.SIGTERM)
        watch.wait(10)
    requests = sum(c.requests for c in crawlers)
    print(f"\n{VERSIONS} versions of {len(VMS)} VMs in {took:.1f} s; {requests} requests by "
          f"{len(crawlers)} crawlers, {sum(len(c.errors) for c in crawlers)} failed")
    for c in crawlers:
        assert not c.errors, c.errors[:5]
        assert c.latest == VERSIONS, f"a crawler's last version is {c.latest}"
        # The crawl ran through the updates, not beside them.  How many
        # versions a crawler meets depends on how fast the updates go
        # against a round of requests (a crawler with a connection per
        # request met 14 of 100 when the updates took 10 s): the last and
        # three before it show it crawled through them.
        between = {v for v in c.seen if 0 < v < VERSIONS}
        assert len(between) >= 3, \
            f"a crawler met only versions {sorted(c.seen)} in {c.requests} requests"

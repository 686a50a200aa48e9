"""Issue 13, the local control plane: `apply` makes the loaded set equal to
a directory of records (only changed VMs republished, the rest deleted, a
summary line, --dry-run changing nothing), an invalid record anywhere
changes nothing, `update --set/--unset` edits one VM's kept record, `watch`
follows a directory with inotify, and `fsck` finds the store consistent
after all of it.  The store is created small (--max-vms 8, --arena-size
1M) before imdsd starts, so imdsd serves a store of another size than the
default, and a full VM table or arena is refused precisely.  imdsd runs the
whole time; VMs 1..3."""

import json
import os
import re
import signal
import subprocess
import time

import pytest

import imdslab
import vmdata
from imdslab import assert_served
from vmhttp import get

iid = vmdata.instance_id
HOSTNAME = "/latest/meta-data/hostname"
MAX_VMS = 8


@pytest.fixture(scope="module")
def lab(make_lab):
    lab = make_lab(3)
    ok(lab.loadmap("--max-vms", str(MAX_VMS), "--arena-size", "1M", "usage"))
    lab.start_imdsd()
    return lab


def write_dir(lab, name, files):
    """files: {file name: [records]} written under a fresh directory."""
    d = os.path.join(lab.workdir, name)
    os.makedirs(d, exist_ok=True)
    for f in os.listdir(d):
        os.unlink(os.path.join(d, f))
    for fname, records in files.items():
        with open(os.path.join(d, fname), "w") as f:
            f.write(vmdata.dumps(records))
    return d


def hostname_of(lab, i):
    r = get(lab.vm_ns(i), HOSTNAME)
    return r.body.decode() if r.status == 200 else r.status


def ok(p):
    assert p.returncode == 0, f"exit {p.returncode}: {p.stderr}"
    return p.stdout


def show(lab, i):
    return json.loads(ok(lab.loadmap("show", iid(i))))


def test_apply_directory_adds_updates_deletes_only_what_changed(lab):
    d = write_dir(lab, "apply1", {"a.json": [vmdata.vm_record(1)],
                                  "b.json": [vmdata.vm_record(2), vmdata.vm_record(3)]})
    assert ok(lab.loadmap("apply", d)).strip() == "3 added, 0 updated, 0 deleted, 0 unchanged"
    for i in (1, 2, 3):
        assert_served(lab, i)
    gen = {i: show(lab, i)["tree-generation"] for i in (1, 2, 3)}

    # VM 2 changes, VM 3 leaves the records, VM 1 stays as it is.
    write_dir(lab, "apply1", {"a.json": [vmdata.vm_record(1)],
                              "b.json": [vmdata.vm_record(2, host="vm02-new.lab.internal")]})
    before = lab.list_rows()
    plan = ok(lab.loadmap("apply", "--dry-run", d))
    assert plan.splitlines() == [f"update {iid(2)}", f"delete {iid(3)}",
                                 "0 added, 1 updated, 1 deleted, 1 unchanged (dry run: nothing changed)"]
    assert lab.list_rows() == before, "--dry-run changed the store"
    assert ok(lab.loadmap("apply", d)).strip() == "0 added, 1 updated, 1 deleted, 1 unchanged"
    assert hostname_of(lab, 2) == "vm02-new.lab.internal"
    assert show(lab, 1)["tree-generation"] == gen[1], "an unchanged record was republished"
    assert show(lab, 2)["tree-generation"] == gen[2] + 1
    assert {r[0] for r in lab.list_rows()} == {iid(1), iid(2)}
    assert ok(lab.loadmap("apply", d)).strip() == "0 added, 0 updated, 0 deleted, 2 unchanged"


def test_an_invalid_record_anywhere_changes_nothing(lab):
    d = write_dir(lab, "apply2", {"a.json": [vmdata.vm_record(1, host="must-not-appear.lab.internal")],
                                  "b.json": [vmdata.vm_record(2), vmdata.vm_record(3, hop_limit=65)]})
    before = lab.list_rows()
    host1 = hostname_of(lab, 1)
    p = lab.loadmap("apply", d)
    assert p.returncode == 1
    text = open(os.path.join(d, "b.json")).read()
    line = text[:text.index('"hop-limit": 65')].count("\n") + 1
    assert re.match(re.escape(os.path.join(d, "b.json")) + rf":{line}:\d+: vms\[1\]\.options\.hop-limit: ",
                    p.stderr), p.stderr
    assert lab.list_rows() == before
    assert hostname_of(lab, 1) == host1


def test_the_same_vm_in_two_files_is_an_error(lab):
    d = write_dir(lab, "apply3", {"a.json": [vmdata.vm_record(1)], "b.json": [vmdata.vm_record(1)]})
    p = lab.loadmap("apply", d)
    assert p.returncode == 1
    assert p.stderr.startswith(os.path.join(d, "b.json") + ":"), p.stderr
    assert "vms[0].instance-id: instance-id is also in " in p.stderr, p.stderr


def test_update_sets_and_unsets_members_of_the_kept_record(lab):
    lab.load([vmdata.vm_record(1)], name="update.json")
    out = ok(lab.loadmap("update", iid(1), "--set", "meta-data.hostname=patched.lab.internal",
                         "--set", "options.hop-limit=3", "--set", "user-data=#!/bin/sh\necho patched\n"))
    assert out.strip() == f"{iid(1)} updated"
    assert hostname_of(lab, 1) == "patched.lab.internal"
    assert get(lab.vm_ns(1), "/latest/user-data").body == b"#!/bin/sh\necho patched\n"
    row = next(r for r in lab.list_rows() if r[0] == iid(1))
    assert row[-1] == "3"
    ok(lab.loadmap("update", iid(1), "--unset", "meta-data.placement"))
    assert get(lab.vm_ns(1), "/latest/meta-data/placement/availability-zone").status == 404
    assert hostname_of(lab, 1) == "patched.lab.internal", "an update kept the earlier update"

    p = lab.loadmap("update", iid(1), "--set", "options.hop-limit=99")
    assert p.returncode == 1
    assert re.search(r"\(record after update\):\d+:\d+: vms\[0\]\.options\.hop-limit: ", p.stderr), p.stderr
    assert next(r for r in lab.list_rows() if r[0] == iid(1))[-1] == "3"
    p = lab.loadmap("update", iid(1), "--set", "instance-id=i-other")
    assert p.returncode == 1 and "cannot be updated" in p.stderr, p.stderr
    p = lab.loadmap("update", "i-notloaded", "--set", "options.hop-limit=2")
    assert p.returncode == 1 and "no VM i-notloaded is loaded" in p.stderr, p.stderr


def wait_for(what, predicate, timeout=5.0):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if predicate():
            return time.monotonic() - t0
        time.sleep(0.01)
    raise AssertionError(f"{what}: not within {timeout} s")


def test_watch_follows_a_directory(lab):
    lab.loadmap("apply", write_dir(lab, "empty", {}))
    d = write_dir(lab, "watched", {"one.json": [vmdata.vm_record(1)]})
    err_path = os.path.join(lab.workdir, "watch.err")
    with open(err_path, "w") as err:
        watch = subprocess.Popen(["nsenter", f"--net=/run/netns/{lab.host_ns}", imdslab.LOADMAP,
                                  "--pin-dir", lab.pin_dir, "watch", d],
                                 stdout=subprocess.DEVNULL, stderr=err)
    try:
        wait_for("the first scan", lambda: hostname_of(lab, 1) == vmdata.hostname(1))

        # Renamed in (an atomic writer): a new file's VMs appear.
        tmp = os.path.join(d, ".two.json.tmp")
        with open(tmp, "w") as f:
            f.write(vmdata.dumps([vmdata.vm_record(2), vmdata.vm_record(3)]))
        os.rename(tmp, os.path.join(d, "two.json"))
        took = wait_for("two.json renamed in", lambda: iid(3) in {r[0] for r in lab.list_rows()})
        print(f"\nwatch: a renamed-in file's VMs listed after {took * 1000:.0f} ms")
        wait_for("vm3 served", lambda: hostname_of(lab, 3) == vmdata.hostname(3))

        # Written in place: the change, and a VM dropped from the file goes.
        with open(os.path.join(d, "two.json"), "w") as f:
            f.write(vmdata.dumps([vmdata.vm_record(2, host="vm02-watched.lab.internal")]))
        took = wait_for("two.json rewritten", lambda: hostname_of(lab, 2) == "vm02-watched.lab.internal")
        print(f"watch: a rewritten file's change served after {took * 1000:.0f} ms")
        wait_for("vm3 dropped", lambda: iid(3) not in {r[0] for r in lab.list_rows()})

        # An invalid file: reported precisely, its VMs keep their data.
        with open(os.path.join(d, "two.json"), "w") as f:
            f.write(vmdata.dumps([vmdata.vm_record(2, hop_limit=0)]))
        wait_for("the error", lambda: "vms[0].options.hop-limit" in open(err_path).read())
        assert re.search(re.escape(os.path.join(d, "two.json")) + r":\d+:\d+: vms\[0\]\.options\.hop-limit: ",
                         open(err_path).read())
        assert hostname_of(lab, 2) == "vm02-watched.lab.internal"

        # Removed: its VMs go; the other file's stay.
        os.unlink(os.path.join(d, "two.json"))
        wait_for("two.json removed", lambda: {r[0] for r in lab.list_rows()} == {iid(1)})
        assert hostname_of(lab, 1) == vmdata.hostname(1)
    finally:
        watch.send_signal(signal.SIGTERM)
        assert watch.wait(10) == 0


def test_fsck_finds_the_store_consistent(lab):
    out = ok(lab.loadmap("fsck"))
    assert out.startswith("fsck: consistent:"), out


def usage(lab):
    return dict((line.split()[0], int(line.split()[1])) for line in ok(lab.loadmap("usage")).splitlines())


def test_the_store_has_the_size_it_was_created_with(lab):
    out = ok(lab.loadmap("usage"))
    assert re.match(rf"vms \d+ of {MAX_VMS}\n", out), out
    assert usage(lab)["arena_bytes"] == 1 << 20
    p = lab.loadmap("--max-vms", "100", "usage")
    assert p.returncode == 1
    assert f"was created with --max-vms {MAX_VMS}; it cannot be changed to 100" in p.stderr, p.stderr
    assert "remove " + lab.pin_dir in p.stderr, p.stderr


def test_a_full_vm_table_or_arena_changes_nothing(lab):
    d = write_dir(lab, "full", {"a.json": [vmdata.vm_record(i, port=(i <= 3)) for i in range(1, MAX_VMS + 2)]})
    ok(lab.loadmap("apply", write_dir(lab, "three", {"a.json": [vmdata.vm_record(i) for i in (1, 2, 3)]})))
    before = lab.list_rows()
    p = lab.loadmap("apply", d)
    assert p.returncode == 1
    assert p.stderr.startswith(f"VM table full: this change adds {MAX_VMS - 2} VMs, {MAX_VMS - 3} slots are free "
                               f"(at most {MAX_VMS} VMs)"), p.stderr
    assert lab.list_rows() == before

    big = vmdata.vm_record(1)
    big["options"]["user-data-max"] = 1048576
    big.pop("user-data", None)
    big["user-data"] = "x" * 1000000
    p = lab.loadmap("apply", write_dir(lab, "big", {"a.json": [big, vmdata.vm_record(2), vmdata.vm_record(3)]}))
    assert p.returncode == 1
    assert re.search(r"a\.json:\d+:\d+: vms\[0\]: arena full: " + re.escape(iid(1)) +
                     r" needs \d+ bytes \(\d+ pages of 4096\), \d+ bytes are free", p.stderr), p.stderr
    assert lab.list_rows() == before
    assert hostname_of(lab, 1) == vmdata.hostname(1)
    ok(lab.loadmap("fsck"))

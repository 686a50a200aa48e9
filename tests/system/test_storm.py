"""imds-storm's correctness check (issue 5, acceptance 3): every body a VM
gets is compared with what that VM was loaded with.  Against a correctly
loaded store a storm reports no error; against a deliberately mis-loaded one
(VMs 2 and 3 loaded with each other's identities, `gen-vms.py --swap 2,3`,
their MACs and IPv4s unchanged) it reports wrong-data for exactly those VMs
and exits 1.  Small labs, a few hundred requests: fast."""

import json
import os
import re
import subprocess

import pytest

import imdslab

STORM = os.path.join(imdslab.BUILD, "imds-storm")
GEN_VMS = os.path.join(imdslab.ROOT, "scripts", "gen-vms.py")
N = 4


def gen_vms(lab, name, *args):
    path = os.path.join(lab.workdir, name)
    imdslab.run([imdslab.PYTHON, GEN_VMS, str(N), "-o", path, *args])
    return path


def instance_ids(path):
    with open(path) as f:
        return [vm["instance-id"] for vm in json.load(f)["vms"]]


def storm(lab, vms, *args):
    """Runs imds-storm over the lab's VMs; (exit status, report, stderr)."""
    p = imdslab.run([STORM, "--vms", vms, "--netns-prefix", f"{lab.prefix}-vm", "--suffix", lab.suffix,
                     "--quiet", "--json", "--timeout", "3000", *args], check=False, timeout=120)
    assert p.returncode in (0, 1), f"imds-storm exited {p.returncode}\n{p.stderr}"
    return p.returncode, json.loads(p.stdout), p.stderr


@pytest.fixture(scope="module")
def lab(make_lab):
    if not os.access(STORM, os.X_OK):
        pytest.fail(f"{STORM} is missing: run `make` first", pytrace=False)
    lab = make_lab(N)
    lab.vms_file = gen_vms(lab, "vms.json")
    lab.loadmap("load", lab.vms_file, check=True)
    lab.start_imdsd()
    return lab


@pytest.mark.parametrize("mode", ["conn", "keepalive"])
def test_correct_store_has_no_errors(lab, mode):
    rc, rep, err = storm(lab, lab.vms_file, "--mode", mode)
    assert rc == 0, err
    assert rep["errors"]["total"] == 0, rep
    assert rep["crawls"] == N
    # the crawl walks every listing: far more than the fixed roots
    assert rep["requests"] >= N * 40, rep
    assert "wrong data" not in err


def test_misloaded_store_is_caught(lab):
    swapped = gen_vms(lab, "vms-swapped.json", "--swap", "2,3")
    ids = instance_ids(lab.vms_file)
    # The loader keys VMs by instance-id and refuses a MAC already in use:
    # VMs 2 and 3 leave before their swapped records come in.
    for iid in ids[1:3]:
        lab.loadmap("delete", iid, check=True)
    lab.loadmap("load", swapped, check=True)
    try:
        rc, rep, err = storm(lab, lab.vms_file, "--mode", "keepalive")
    finally:
        for iid in ids[1:3]:
            lab.loadmap("delete", iid, check=True)
        lab.loadmap("load", lab.vms_file, check=True)
    assert rc == 1, err
    # instance-id, hostname, local-hostname, the key listing, the key, the
    # identity document, user-data: at least 7 wrong answers per VM
    assert rep["errors"]["wrong-data"] >= 2 * 7, rep
    assert rep["errors"]["total"] == rep["errors"]["wrong-data"], rep
    shown = re.findall(r"wrong data: vm(\d+) \(expected (i-[0-9a-f]+)\)", err)
    assert shown, err
    assert {int(vm) for vm, _ in shown} == {2, 3}, err
    assert {iid for _, iid in shown} == set(ids[1:3]), err
    # VM 2 was served VM 3's identity, and the other way round
    assert ids[2] in err and ids[1] in err


def test_store_restored_is_correct_again(lab):
    """The same check passes once the right records are back: what failed
    above was the data, not the lab."""
    rc, rep, err = storm(lab, lab.vms_file, "--mode", "conn")
    assert rc == 0, err
    assert rep["errors"]["total"] == 0, rep


def test_status_only_walks_the_saved_listings(lab):
    """--status-only (make bench's null responder, issue 15): a server with
    one fixed answer gets the very requests imdsd got, walked from the
    listings a --save crawl of imdsd wrote, and only statuses are checked;
    without it the fixed answer is caught as wrong data."""
    tree = os.path.join(lab.workdir, "tree")
    rc, saved, err = storm(lab, lab.vms_file, "--mode", "keepalive", "--save", tree)
    assert rc == 0, err
    null = os.path.join(imdslab.BUILD, "bench", "null_responder")
    lab.stop_imdsd()
    lab.ip_host("addr", "replace", "169.254.169.254/32", "dev", lab.bridge)
    proc = subprocess.Popen(["nsenter", f"--net=/run/netns/{lab.host_ns}", null, "--workers", "2"],
                            stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        ready = proc.stderr.readline()
        assert "null_responder: ready" in ready, ready + proc.stderr.read()
        for mode in ("conn", "keepalive"):
            rc, rep, err = storm(lab, lab.vms_file, "--mode", mode, "--status-only", tree)
            assert rc == 0, err
            assert rep["errors"]["total"] == 0, rep
            assert rep["requests"] == saved["requests"], (rep, saved)
        rc, rep, err = storm(lab, lab.vms_file, "--mode", "keepalive")
        assert rc == 1 and rep["errors"]["wrong-data"] >= N, rep
    finally:
        proc.terminate()
        proc.wait(5)
        lab.ip_host("addr", "del", "169.254.169.254/32", "dev", lab.bridge, check=False)
        lab.start_imdsd()


def test_status_only_needs_a_saved_tree(lab):
    p = imdslab.run([STORM, "--vms", lab.vms_file, "--status-only", os.path.join(lab.workdir, "none")],
                    check=False)
    assert p.returncode == 2
    assert "--status-only" in p.stderr and "none" in p.stderr, p.stderr

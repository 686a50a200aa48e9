"""Issue 13, etcd as the fleet's source of truth: `imds-loadmap sync`.

A real etcd (started here, temp data dir, loopback and a unix socket) holds
1,000 VM records for two simulated hosts: host A's under
/imds/hosts/a/vms/ (VMs 1..500), host B's under /imds/hosts/b/vms/ (VMs
501..1000).  Each host is a lab (its own host namespace, bridge, pin
directory and imdsd) with a `sync` process following its prefix; a few VMs
of each have a namespace to ask from (VMs 401 and 450 have one on both
hosts: they move).

1. Each host's store holds exactly its 500 VMs (`list`), and the VMs with
   a namespace are served their record by their host only.
2. 100 VMs move from A's prefix to B's in one etcd transaction: B serves
   them and A drops them within 1 s (stores polled with `list`).
3. An invalid record is reported (a log line naming the key and the
   loader's error, the counter of the metrics file) and its VM keeps
   serving its last good data; a valid record after it applies.
4. etcd killed for 10 s and started again; meanwhile sync A is stopped
   (SIGSTOP) while updates are made and the history is compacted past its
   revision: both hosts end with every update (A by reading the prefix
   again, as its counters say).
   A VM whose record names no port keeps the port `bind` gave it (the
   libvirt hook's, IMDS_LIBVIRT_RECORDS=etcd) through a changed record and
   through sync's re-read at its restart.
5. TLS with client certificates, and user/password authentication: each
   connects (a small etcd of its own each, no lab needed).
"""

import json
import os
import re
import signal
import subprocess
import time

import pytest

import imdslab
from etcdlab import Etcd, Sync
from imdslab import wait_until
from vmhttp import NoResponse, get

N_VMS = 1000
A_VMS, B_VMS = range(1, 501), range(501, 1001)
MOVERS = range(401, 501)
A_PROBES, B_PROBES, MOVER_PROBES = (1, 250), (501, 999), (401, 450)
PREFIX = {"a": "/imds/hosts/a/vms/", "b": "/imds/hosts/b/vms/"}
HOSTNAME = "/latest/meta-data/hostname"
MOVE_BOUND_S = 1.0


def iid(i):
    return "i-0e7c%013x" % i


def record(i, version=0):
    """VM i of the lab's address plan (scripts/lab.sh), pinned to its port."""
    return {"instance-id": iid(i), "mac": "52:54:00:77:%02x:%02x" % (i >> 8, i & 255),
            "ipv4": f"10.77.{(i - 1) // 244}.{10 + (i - 1) % 244 + 1}", "port": f"vm{i}",
            "meta-data": {"hostname": f"vm{i}-v{version}.etcd.lab"}}


def value(i, version=0):
    return json.dumps(record(i, version))


def key(host, i):
    return PREFIX[host] + iid(i)


def hostname_of(lab, i, timeout=1.0):
    try:
        r = get(lab.vm_ns(i), HOSTNAME, timeout=timeout)
    except NoResponse as e:
        return e.kind
    return r.body.decode() if r.status == 200 else r.status


def listed(lab):
    return {row[0] for row in lab.list_rows()}


@pytest.fixture(scope="module")
def fleet(make_lab, tmp_path_factory):
    """etcd, two labs with imdsd, and a sync per lab; everything stopped by
    PID at the end whatever happened."""
    workdir = tmp_path_factory.mktemp("etcd")
    etcd = Etcd(workdir)
    syncs = {}
    try:
        etcd.start()
        etcd.txn(puts={key("a", i): value(i) for i in A_VMS})
        etcd.txn(puts={key("b", i): value(i) for i in B_VMS})
        labs = {"a": make_lab(0), "b": make_lab(0)}
        for host, probes in (("a", A_PROBES + MOVER_PROBES), ("b", B_PROBES + MOVER_PROBES)):
            lab = labs[host]
            for i in probes:
                lab.add_vm(i)
            lab.start_imdsd()
            syncs[host] = Sync(workdir, host, lab.pin_dir, netns=lab.host_ns)
            # A's first endpoint answers nothing: sync goes on to the next.
            endpoints = [f"unix:{workdir}/no-etcd-here", f"unix:{etcd.socket}"] if host == "a" else \
                [f"unix:{etcd.socket}"]
            syncs[host].start(endpoints, PREFIX[host])
        yield etcd, labs, syncs
    finally:
        for s in syncs.values():
            s.stop()
        etcd.stop()


def test_each_host_serves_exactly_its_own_vms(fleet):
    etcd, labs, syncs = fleet
    assert listed(labs["a"]) == {iid(i) for i in A_VMS}
    assert listed(labs["b"]) == {iid(i) for i in B_VMS}
    for host, probes in (("a", A_PROBES + MOVER_PROBES), ("b", B_PROBES)):
        for i in probes:
            assert hostname_of(labs[host], i) == f"vm{i}-v0.etcd.lab", (host, i)
    for i in MOVER_PROBES:  # their namespaces on B: B holds no record of them yet
        assert hostname_of(labs["b"], i, timeout=0.5) == "timeout", i
    log = syncs["a"].log_text()
    assert "no-etcd-here" in log and f"watching {PREFIX['a']} at unix:{etcd.socket}" in log, log
    assert "read at revision" in log and "500 added" in log, log


def test_moving_100_vms_between_hosts_takes_effect_within_1s(fleet):
    """Timed from sending the transaction to both syncs' log lines for its
    revision, each written once its store has changed (cheaper to poll
    than `list`, which checks the stores exactly afterwards)."""
    etcd, labs, syncs = fleet
    want_a = {iid(i) for i in A_VMS if i not in MOVERS}
    want_b = {iid(i) for i in B_VMS} | {iid(i) for i in MOVERS}
    t0 = time.monotonic()
    rev = etcd.txn(deletes=[key("a", i) for i in MOVERS], puts={key("b", i): value(i) for i in MOVERS})
    done = {h: f"watch revision {rev}: " for h in ("a", "b")}
    took = wait_until("the move", lambda: all(done[h] in syncs[h].log_text() for h in done), 5)
    print(f"\netcd: 100 VMs moved from host A to host B: both stores changed {took * 1000:.0f} ms after the "
          f"transaction was sent; {[line for h in done for line in syncs[h].log_text().splitlines() if done[h] in line]}")
    assert listed(labs["a"]) == want_a and listed(labs["b"]) == want_b
    assert took <= MOVE_BOUND_S, f"the move took {took:.2f} s"
    for i in MOVER_PROBES:
        assert hostname_of(labs["b"], i) == f"vm{i}-v0.etcd.lab", i
        assert hostname_of(labs["a"], i, timeout=0.5) == "timeout", i
    assert f"{done['a']}0 added, 0 updated, 100 deleted" in syncs["a"].log_text()
    assert f"{done['b']}100 added, 0 updated, 0 deleted" in syncs["b"].log_text()


def test_invalid_record_is_reported_and_its_vm_keeps_serving(fleet):
    etcd, labs, syncs = fleet
    i, lab, sync = A_PROBES[0], labs["a"], syncs["a"]
    before = sync.counters()["imds_sync_invalid_records_total"]
    bad = value(i, 1).replace('"port"', '"prot"')
    etcd.put(key("a", i), bad)
    want = re.escape(key("a", i)) + r":1:\d+: vms\[0\]\.prot: unknown field \(its VM keeps its last good data\)"
    wait_until("the invalid record's log line", lambda: re.search(want, sync.log_text()), 2)
    wait_until("the counter", lambda: sync.counters()["imds_sync_invalid_records_total"] == before + 1, 2)
    assert hostname_of(lab, i) == f"vm{i}-v0.etcd.lab"
    assert iid(i) in listed(lab)
    t0 = time.monotonic()
    etcd.put(key("a", i), value(i, 1))
    wait_until("the valid record after it", lambda: hostname_of(lab, i) == f"vm{i}-v1.etcd.lab", 2)
    took = time.monotonic() - t0
    print(f"\netcd: a put served {took * 1000:.0f} ms after it was sent (HTTP polling from the VM)")
    assert took <= 1.0


def test_a_batch_of_events_applies_the_last_of_each_key(fleet):
    """Events that arrive together become one plan, the last event of each
    key winning: two puts of a VM give the second; a put then a delete of
    a new key leaves nothing.  Sync is stopped while they happen, so they
    wait for it in one stream."""
    etcd, labs, syncs = fleet
    i, lab, sync = A_PROBES[1], labs["a"], syncs["a"]
    sync.signal(signal.SIGSTOP)
    try:
        etcd.put(key("a", i), value(i, 3))
        etcd.put(key("a", 1299), value(1299))
        etcd.put(key("a", i), value(i, 4))
        rev = etcd.txn(deletes=[key("a", 1299)])
    finally:
        sync.signal(signal.SIGCONT)
    sync.wait_log(f"watch revision {rev}: ", 5)
    assert hostname_of(lab, i) == f"vm{i}-v4.etcd.lab"
    assert iid(1299) not in listed(lab)
    assert lab.loadmap("show", iid(1299)).returncode != 0


def test_etcd_down_10s_and_a_compaction_lose_no_update(fleet):
    """etcd is killed; after 10 s it starts again.  Sync A is stopped while
    host A's and host B's updates are made and etcd compacts its history
    past A's revision; then A goes on: it must read the prefix again."""
    etcd, labs, syncs = fleet
    a, b = syncs["a"], syncs["b"]
    reads_before = a.counters()["imds_sync_full_reads_total"]
    etcd.stop(signal.SIGKILL)
    wait_until("sync A to see etcd gone", lambda: a.counters()["imds_sync_connected"] == 0, 5)
    time.sleep(10)
    a.signal(signal.SIGSTOP)
    try:
        etcd.start()
        etcd.put(key("a", A_PROBES[1]), value(A_PROBES[1], 2))  # an update
        etcd.txn(deletes=[key("a", 300)], puts={key("a", 300 + 1000): value(300 + 1000)})  # a delete, an add
        etcd.put(key("b", B_PROBES[0]), value(B_PROBES[0], 2))
        rev = etcd.revision()
        etcd.etcdctl("compact", str(rev))
    finally:
        a.signal(signal.SIGCONT)
    want_a = {iid(i) for i in A_VMS if i not in MOVERS and i != 300} | {iid(1300)}
    wait_until("host A's updates", lambda: listed(labs["a"]) == want_a, 10)
    wait_until("host A serves the update", lambda: hostname_of(labs["a"], A_PROBES[1]) == f"vm{A_PROBES[1]}-v2.etcd.lab", 5)
    wait_until("host B serves the update", lambda: hostname_of(labs["b"], B_PROBES[0]) == f"vm{B_PROBES[0]}-v2.etcd.lab", 10)
    c = a.counters()
    assert c["imds_sync_compactions_total"] >= 1 and c["imds_sync_full_reads_total"] > reads_before, c
    assert c["imds_sync_reconnects_total"] >= 1 and c["imds_sync_revision"] >= rev, c
    assert "is compacted" in a.log_text()
    # Nothing stale: host A's store is exactly its prefix, B's too.
    assert listed(labs["b"]) == {iid(i) for i in B_VMS} | {iid(i) for i in MOVERS}


def test_a_runtime_bind_survives_publishes_and_rereads(fleet):
    """What the libvirt hook does on an etcd host (IMDS_LIBVIRT_RECORDS=etcd,
    docs/libvirt.md): the record in etcd names no port, and `bind` pins the
    VM to its tap.  A changed record from etcd keeps the pin (and an unbind),
    and so does sync's re-read at its restart."""
    etcd, labs, syncs = fleet
    i, lab, sync = A_PROBES[0], labs["a"], syncs["a"]

    def put_unported(version):
        rev = etcd.put(key("a", i), json.dumps({k: v for k, v in record(i, version).items() if k != "port"}))
        sync.wait_log(f"watch revision {rev}: ", 5)

    assert lab.loadmap("unbind", iid(i)).returncode == 0
    put_unported(3)
    assert lab.port_binding(iid(i)) == ("-", "unbound"), "the unbind was undone"
    assert hostname_of(lab, i, timeout=0.5) == "timeout"
    assert lab.loadmap("bind", iid(i), f"vm{i}").returncode == 0
    assert hostname_of(lab, i) == f"vm{i}-v3.etcd.lab"
    put_unported(4)
    assert lab.port_binding(iid(i)) == (f"vm{i}", "pinned"), "the bind was undone by a publish"
    assert hostname_of(lab, i) == f"vm{i}-v4.etcd.lab"
    sync.stop()
    after = len(sync.log_text())
    sync.start([f"unix:{etcd.socket}"], PREFIX["a"])
    assert re.search(r"read at revision \d+: 0 added, 0 updated, 0 deleted", sync.log_text()[after:]), sync.log_text()[after:]
    assert lab.port_binding(iid(i)) == (f"vm{i}", "pinned"), "the bind was undone by the re-read"
    assert hostname_of(lab, i) == f"vm{i}-v4.etcd.lab"
    # A record that names its port again sets it (here the same one).
    rev = etcd.put(key("a", i), value(i, 5))
    sync.wait_log(f"watch revision {rev}: ", 5)
    assert lab.port_binding(iid(i)) == (f"vm{i}", "pinned")


# ---- TLS and user/password: an etcd of their own each ----

def openssl(*args, cwd):
    imdslab.run(["openssl", *args], cwd=cwd)


def make_pki(d):
    """A CA, etcd's server certificate for 127.0.0.1 and a client's."""
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            "-subj", "/CN=imds test CA", cwd=d)
    # The server's certificate allows client auth too: etcd 3.4's gateway
    # presents it to etcd's own gRPC port (docs/control-plane.md, "etcd").
    for name, ext in (("server", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth"),
                      ("client", "extendedKeyUsage=clientAuth")):
        with open(os.path.join(d, f"{name}.ext"), "w") as f:
            f.write(ext + "\n")
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                "-subj", f"/CN=imds-{name}", cwd=d)
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext", cwd=d)
    pki = {n: os.path.join(d, n) for n in ("server.pem", "server.key", "client.pem", "client.key")}
    pki["ca"] = os.path.join(d, "ca.pem")
    return pki


@pytest.fixture
def bare_store(system_ready):
    """A pin directory of its own (no lab: sync needs no network here)."""
    pin = f"/sys/fs/bpf/imds-t-etcd-{os.getpid()}-{time.monotonic_ns()}"
    yield pin
    subprocess.run(["rm", "-rf", pin])


def loaded(pin):
    p = imdslab.run([imdslab.LOADMAP, "--pin-dir", pin, "list"])
    return {line.split()[0] for line in p.stdout.splitlines()[1:] if line.strip()}


def test_tls_client_certificate(tmp_path, bare_store):
    pki = make_pki(str(tmp_path))
    etcd = Etcd(tmp_path, tls=pki)
    sync = Sync(tmp_path, "tls", bare_store)
    nocert = Sync(tmp_path, "nocert", bare_store)
    try:
        etcd.start()
        etcd.etcdctl("put", key("a", 1), value(1))
        nocert.start([etcd.url], PREFIX["a"], "--cacert", pki["ca"], wait="retrying")
        assert nocert.counters()["imds_sync_full_reads_total"] == 0
        nocert.stop()
        assert loaded(bare_store) == set()
        sync.start([etcd.url], PREFIX["a"], "--cacert", pki["ca"], "--cert", pki["client.pem"],
                   "--key", pki["client.key"])
        assert loaded(bare_store) == {iid(1)}
        etcd.etcdctl("put", key("a", 2), value(2))
        wait_until("a watched put over TLS", lambda: loaded(bare_store) == {iid(1), iid(2)}, 2)
    finally:
        nocert.stop()
        sync.stop()
        etcd.stop()


def test_user_and_password(tmp_path, bare_store):
    etcd = Etcd(tmp_path)
    sync = Sync(tmp_path, "auth", bare_store)
    wrong = Sync(tmp_path, "wrong", bare_store)
    password = tmp_path / "password"
    password.write_text("s3cret-imds\n")
    try:
        etcd.start()
        etcd.etcdctl("put", key("a", 1), value(1))
        for args in (("user", "add", "root:rootpw"), ("user", "add", "imds:s3cret-imds"),
                     ("role", "add", "imds-reader"),
                     ("role", "grant-permission", "imds-reader", "--prefix=true", "read", PREFIX["a"]),
                     ("user", "grant-role", "imds", "imds-reader"), ("auth", "enable")):
            etcd.etcdctl(*args)
        wrong.start([etcd.url], PREFIX["a"], "--user", "imds", env={"IMDS_ETCD_PASSWORD": "not-it"},
                    wait="authentication failed")
        wrong.stop()
        assert loaded(bare_store) == set()
        sync.start([etcd.url], PREFIX["a"], "--user", "imds", "--password-file", str(password))
        assert loaded(bare_store) == {iid(1)}
        etcd.etcdctl("--user", "root:rootpw", "put", key("a", 2), value(2))
        wait_until("a watched put with a token", lambda: loaded(bare_store) == {iid(1), iid(2)}, 2)
        assert "s3cret" not in " ".join(open(f"/proc/{sync.proc.pid}/cmdline").read().split("\0"))
    finally:
        wrong.stop()
        sync.stop()
        etcd.stop()


def test_a_full_store_refuses_only_what_does_not_fit(tmp_path, bare_store):
    """Six keys for a store of fewer slots, one of them with another key's
    MAC: the batch is refused as a whole, then each key is tried alone;
    the ones that fit are applied, each other one is reported precisely."""
    usage = imdslab.run([imdslab.LOADMAP, "--pin-dir", bare_store, "--max-vms", "4", "usage"]).stdout
    slots = int(re.search(r"^vms 0 of (\d+)$", usage, re.M).group(1))
    assert slots < 5, usage
    etcd = Etcd(tmp_path)
    sync = Sync(tmp_path, "full", bare_store)
    clash = dict(record(6), mac=record(1)["mac"])
    try:
        etcd.start()
        etcd.txn(puts={**{key("a", i): value(i) for i in range(1, 6)}, key("a", 6): json.dumps(clash)})
        sync.start([etcd.url], PREFIX["a"])
        log = sync.log_text()
        assert re.search(r"the change as a whole is refused \(" + re.escape(key("a", 6)) +
                         r":1:\d+: vms\[0\]\.mac: mac is also in " + re.escape(key("a", 1)), log), log
        assert loaded(bare_store) == {iid(i) for i in range(1, slots + 1)}
        assert re.search(re.escape(key("a", 6)) + r':1:\d+: vms\[0\]\.mac: 52:54:00:77:00:01 is already used by '
                         r'loaded VM ' + iid(1), log), log
        for i in range(slots + 1, 6):
            assert f"{key('a', i)}: " in log and "VM table full" in log, log
        assert sync.counters()["imds_sync_invalid_records_total"] == 6 - slots
    finally:
        sync.stop()
        etcd.stop()


def test_sigterm_ends_a_request_that_hangs(tmp_path, bare_store):
    """An endpoint that accepts and never answers: sync is inside a request
    (up to its 10 s timeout) and must still stop promptly on SIGTERM."""
    import socket
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        sync = Sync(tmp_path, "hang", bare_store)
        sync.start([f"http://127.0.0.1:{silent.getsockname()[1]}"], PREFIX["a"], wait=f"sync: {PREFIX['a']} from")
        try:
            time.sleep(0.5)
            assert sync.proc.poll() is None and "cannot read" not in sync.log_text(), sync.log_text()
            t0 = time.monotonic()
            sync.proc.terminate()
            sync.proc.wait(5)
            took = time.monotonic() - t0
        finally:
            sync.stop()
    assert took < 2.0, f"sync took {took:.1f} s to stop"
    assert "aborted by an application callback" in sync.log_text()


def test_sync_owns_the_store_and_a_restart_republishes_nothing(tmp_path, bare_store):
    """A VM loaded by other means is deleted at sync's read (docs/control-
    plane.md, "What sync owns"); sync started again over unchanged keys
    changes nothing, not even a VM's tree generation."""
    path = tmp_path / "by-hand.json"
    path.write_text(json.dumps({"vms": [record(9)]}))
    imdslab.run([imdslab.LOADMAP, "--pin-dir", bare_store, "load", str(path)])
    etcd = Etcd(tmp_path)
    sync = Sync(tmp_path, "owner", bare_store)
    try:
        etcd.start()
        etcd.txn(puts={key("a", i): value(i) for i in (1, 2)})
        sync.start([etcd.url], PREFIX["a"])
        assert "read at revision 2: 2 added, 0 updated, 1 deleted, 0 unchanged" in sync.log_text()
        assert loaded(bare_store) == {iid(1), iid(2)}
        show = [imdslab.LOADMAP, "--pin-dir", bare_store, "show", iid(1)]
        generation = json.loads(imdslab.run(show).stdout)["tree-generation"]
        sync.stop()
        start = len(sync.log_text())
        sync.start([etcd.url], PREFIX["a"])
        assert "read at revision 2: 0 added, 0 updated, 0 deleted, 2 unchanged" in sync.log_text()[start:]
        assert json.loads(imdslab.run(show).stdout)["tree-generation"] == generation
    finally:
        sync.stop()
        etcd.stop()

"""imdsd's metrics and logs (issue 14, docs/metrics.md), with the real
daemon, a real Prometheus (Debian's) and traffic from lab VMs.

imdsd serves /metrics on 127.0.0.1 of the lab's host namespace; Prometheus,
started here in the same namespace with its own temporary storage, scrapes
it every second.  The VMs make served, tokenless, 401, 403, 405, 404, 429
and spoofed traffic; the per-VM counters Prometheus reports through its
HTTP API must be exactly what the VMs saw (the data plane's, what
`imds-loadmap stats` reads).  A raw scrape passes `promtool check metrics`,
a deleted VM leaves the next scrape, and no address a VM can send to
reaches the endpoint.  A VM flooding spoofed frames costs the log one line.
"""

import json
import os
import re
import shutil
import subprocess
import time
import urllib.parse

import pytest

import imdslab
import vmdata
from imdslab import PYTHON, SPOOF_PY
from vmhttp import Connection, fetch, get, put_token, token_for

iid, mac, ip = vmdata.instance_id, vmdata.vm_mac, vmdata.vm_ipv4
METRICS_PORT = 9464
PROM_PORT = 9090
PATH = "/latest/meta-data/instance-id"
RATE = 5  # VM 2's request-rate and request-burst: it gets 429 quickly
SPOOF_IP = "10.99.99.99"  # not any VM's: VM 3's frames from it are drop_wrong_ipv4
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"


def wait_until(what, cond, timeout=15.0, every=0.2):
    deadline = time.monotonic() + timeout
    while True:
        got = cond()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(every)


class Prometheus:
    """Debian's prometheus in the lab's host namespace, scraping imdsd."""

    def __init__(self, lab, workdir):
        self.lab = lab
        self.dir = os.path.join(workdir, "prometheus")
        os.makedirs(os.path.join(self.dir, "data"), exist_ok=True)
        config = os.path.join(self.dir, "prometheus.yml")
        with open(config, "w") as f:
            f.write("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n"
                    "scrape_configs:\n  - job_name: imdsd\n    static_configs:\n"
                    f"      - targets: ['127.0.0.1:{METRICS_PORT}']\n")
        self.log = open(os.path.join(self.dir, "prometheus.log"), "w")
        self.proc = subprocess.Popen(
            ["nsenter", f"--net=/run/netns/{lab.host_ns}", PROMETHEUS, f"--config.file={config}",
             f"--storage.tsdb.path={self.dir}/data", f"--web.listen-address=127.0.0.1:{PROM_PORT}"],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log)

    def stop(self):
        imdslab.stop_process(self.proc, 10)
        self.log.close()

    def query(self, q):
        """The instant vector of PromQL q: {frozenset(labels): value}."""
        url = f"http://127.0.0.1:{PROM_PORT}/api/v1/query?" + urllib.parse.urlencode({"query": q})
        p = self.lab.host("curl", "-sS", "--max-time", "5", url, check=False)
        try:
            doc = json.loads(p.stdout) if p.returncode == 0 else None
        except ValueError:
            doc = None  # "Service Unavailable" while Prometheus starts
        if doc is None:
            return None
        assert doc["status"] == "success", doc
        return {frozenset(r["metric"].items()): float(r["value"][1]) for r in doc["data"]["result"]}

    def value(self, q):
        """The one value of q, or None when it has no series."""
        v = self.query(q)
        assert v is None or len(v) <= 1, (q, v)
        return next(iter(v.values())) if v else None

    def wait_for(self, q, want, timeout=15.0):
        """Waits until q's one value is `want` (a scrape or two)."""
        got = []

        def check():
            got.append(self.value(q))
            return got[-1] == want

        try:
            wait_until(f"{q} == {want}", check, timeout)
        except AssertionError:
            raise AssertionError(f"{q}: want {want}, Prometheus says {got[-1]} (last of {len(got)} queries)")


def scrape(lab, path="/metrics", unix=None):
    cmd = ["curl", "-sS", "--max-time", "5", "-o", "-", "-w", "\n%{http_code}"]
    cmd += ["--unix-socket", unix, f"http://imdsd{path}"] if unix else [f"http://127.0.0.1:{METRICS_PORT}{path}"]
    p = lab.host(*cmd, check=False)
    assert p.returncode == 0, p.stderr
    body, _, code = p.stdout.rpartition("\n")
    return int(code), body


def series(text, name, **labels):
    """Values of metric `name` in exposition text whose labels include these."""
    out = []
    for line in text.splitlines():
        m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$", line)
        if not m or m.group(1) != name:
            continue
        have = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(3) or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            out.append(float(m.group(4)))
    return out


@pytest.fixture(scope="module")
def lab(make_lab):
    if not os.access(PROMETHEUS, os.X_OK) or not os.access(PROMTOOL, os.X_OK):
        pytest.fail("prometheus is not installed (scripts/install-deps.sh installs it)", pytrace=False)
    lab = make_lab(4)
    limited = vmdata.vm_record(2)
    limited["options"].update({"request-rate": RATE, "request-burst": RATE})
    flavored = vmdata.vm_record(1)
    flavored["openstack"] = {"uuid": "00000001-aaaa-4bbb-8ccc-dddddddddddd"}
    lab.load([flavored, limited, vmdata.vm_record(3), vmdata.vm_record(4)])
    lab.start_imdsd("--metrics", f"127.0.0.1:{METRICS_PORT}", "--workers", "2")
    lab.bind_ports()
    return lab


@pytest.fixture(scope="module")
def prom(lab):
    p = Prometheus(lab, lab.workdir)
    try:
        wait_until("Prometheus scrapes imdsd", lambda: p.value('up{job="imdsd"}') == 1.0, timeout=30)
        yield p
    finally:
        p.stop()


def vm_q(name, i, **labels):
    sel = ",".join([f'instance_id="{iid(i)}"'] + [f'{k}="{v}"' for k, v in labels.items()])
    return f"{name}{{{sel}}}"


def test_request_counters_move_as_the_vms_saw(lab, prom):
    ns = lab.vm_ns(1)
    # bind_ports made one tokenless 200 already.
    for _ in range(3):
        assert get(ns, PATH).status == 200
    token = token_for(ns)
    for _ in range(2):
        assert get(ns, PATH, token).status == 200
    assert get(ns, PATH, "not-a-token").status == 401
    assert put_token(ns, extra={"X-Forwarded-For": "10.0.0.9"}).status == 403
    assert fetch(ns, "POST", PATH).status == 405
    assert get(ns, "/latest/meta-data/no-such-thing").status == 404
    assert get(ns, "/openstack/latest/meta_data.json").status == 200
    want = {"200": 1 + 3 + 1 + 2, "401": 1, "403": 1, "405": 1, "404": 1}
    for code, n in want.items():
        prom.wait_for(vm_q("imds_vm_requests_total", 1, flavor="ec2", code=code), n)
    prom.wait_for(vm_q("imds_vm_requests_total", 1, flavor="openstack", code="200"), 1)
    # IMDSv1: the tokenless 200s and the tokenless 404, not the rest.
    prom.wait_for(vm_q("imds_vm_tokenless_requests_total", 1), 1 + 3 + 1)
    prom.wait_for(vm_q("imds_vm_tokens_issued_total", 1), 1)
    # Another VM's counters did not move with VM 1's.
    prom.wait_for(vm_q("imds_vm_requests_total", 4, flavor="ec2", code="200"), 1)
    assert prom.value(vm_q("imds_vm_tokens_issued_total", 4)) == 0
    # Every answer is in the latency histogram: VM 1's 12 and the other
    # VMs' first fetches.
    prom.wait_for("imds_request_duration_seconds_count", 12 + 3)
    assert prom.value('imds_request_duration_seconds_bucket{le="+Inf"}') == 12 + 3


def test_429_counted_for_the_vm_over_its_budget(lab, prom):
    time.sleep(1.2)  # VM 2's bucket is full again after bind_ports
    with Connection(lab.vm_ns(2)) as c:
        for _ in range(3 * RATE):
            c.send("GET", PATH)
        got = [c.read_response().status for _ in range(3 * RATE)]
    assert set(got) <= {200, 429} and got.count(429) >= RATE, got
    prom.wait_for(vm_q("imds_vm_requests_total", 2, flavor="ec2", code="429"), got.count(429))
    prom.wait_for(vm_q("imds_vm_requests_total", 2, flavor="ec2", code="200"), 1 + got.count(200))


def spoof(lab, i, src_ip, first_port, count, dst_ip="169.254.169.254", dst_port=80, listen=0.3, src_mac=None):
    args = ["syn", "--src-mac", src_mac or mac(i), "--src-ip", src_ip, "--dst-mac", lab.bridge_mac(),
            "--first-port", str(first_port), "--count", str(count), "--listen", str(listen),
            "--dst-ip", dst_ip, "--dst-port", str(dst_port)]
    return json.loads(lab.in_vm(i, PYTHON, SPOOF_PY, *args, timeout=60).stdout)


def test_spoofed_drops_counted_and_logged_once(lab, prom):
    """VM 3 sends SYNs from an address not its own, in bursts over several
    of imdsd's one-second looks: Prometheus reports exactly the data
    plane's count, and the log has one line about it (the next may come a
    minute later)."""
    log_start = len(lab.log_text())
    sent = 0
    for burst in range(3):
        sent += spoof(lab, 3, SPOOF_IP, 61000 + 100 * burst, 40)["sent"]
        time.sleep(1.1)
    stats = lab.stats()
    dropped = stats.get((iid(3), "drop_wrong_ipv4"), 0)
    assert dropped >= sent, stats
    prom.wait_for(vm_q("imds_vm_packets_dropped_total", 3, reason="wrong_ipv4"), dropped)
    assert prom.value(vm_q("imds_vm_packets_dropped_total", 4, reason="wrong_ipv4")) == 0
    assert prom.value(vm_q("imds_vm_packets_passed_total", 3, reason="verified")) >= 1
    lines = wait_until("the drop line", lambda: [ln for ln in lab.log_text()[log_start:].splitlines()
                                                 if f"vm {iid(3)} " in ln and "data plane dropped" in ln])
    time.sleep(2.5)  # more looks at counters that grew: still one line
    lines = [ln for ln in lab.log_text()[log_start:].splitlines()
             if f"vm {iid(3)} " in ln and "data plane dropped" in ln]
    assert len(lines) == 1, lines
    assert lines[0].startswith("warn imdsd: ") and "drop_wrong_ipv4" in lines[0], lines


def test_429_flood_logs_a_bounded_number_of_lines(lab):
    """A VM asking far over its request budget for ~3 s: the log holds at
    most one 'limits' line for it per 10 s, however many 429s it got."""
    log_start = len(lab.log_text())
    n429 = 0
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        with Connection(lab.vm_ns(2)) as c:
            for _ in range(20):
                c.send("GET", PATH)
            n429 += sum(c.read_response().status == 429 for _ in range(20))
    assert n429 > 100, n429
    time.sleep(10.5)  # worker 0 logs the limits every 10 s
    lines = [ln for ln in lab.log_text()[log_start:].splitlines() if f"limits: {iid(2)} " in ln]
    assert 1 <= len(lines) <= 2, lines


def test_promtool_accepts_a_raw_scrape(lab, prom):
    code, body = scrape(lab)
    assert code == 200
    p = subprocess.run([PROMTOOL, "check", "metrics"], input=body, capture_output=True, text=True, timeout=30)
    assert p.returncode == 0 and not p.stdout.strip() and not p.stderr.strip(), (p.stdout, p.stderr)
    for name in ("process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds",
                 "process_max_fds", "process_start_time_seconds", "imds_arena_used_bytes",
                 "imds_arena_free_bytes", "imds_vms_loaded", "imds_connections_open",
                 "imds_connections_refused_total", "imds_connections_evicted_total", "imds_header_timeouts_total",
                 "imds_connections_gated_total"):
        assert len(series(body, name)) == 1, name
    assert series(body, "imds_vms_loaded") == [4.0]
    assert series(body, "imds_vms", binding="pinned") == [4.0]
    assert series(body, "imds_arena_used_bytes")[0] > 0
    assert series(body, "imds_vm_connections", instance_id=iid(1)) == [0.0]
    # Every loaded VM has its tokenless and token series, used or not.
    for i in range(1, 5):
        assert len(series(body, "imds_vm_tokenless_requests_total", instance_id=iid(i))) == 1, i
        assert len(series(body, "imds_vm_tokens_issued_total", instance_id=iid(i))) == 1, i


def test_healthz(lab):
    assert scrape(lab, "/healthz") == (200, "ok\n")
    assert scrape(lab, "/nothing")[0] == 404


def test_no_vm_reaches_the_metrics_endpoint(lab):
    """From VM 4: every address of the host on its side (the bridge's, the
    metadata address, IPv6 ones: the service's and every link-local) by
    TCP, and 127.0.0.1 sent to the host's MAC (a loopback-routed attempt),
    on the metrics port.  The endpoint does
    answer in the host's namespace, so the test can fail."""
    assert scrape(lab)[0] == 200
    # Every IPv4 address of every interface of the host's namespace but
    # loopback (tried below as a VM can: sent to the host's MAC).
    links = json.loads(lab.ip_host("-j", "-4", "addr", "show").stdout)
    addrs = {a["local"] for link in links if link["ifname"] != "lo" for a in link.get("addr_info", [])}
    assert {"169.254.169.254", *lab.host_addresses()} <= addrs and len(addrs) >= 2, addrs
    # IPv6 too: the bridge's link-local address always, the metadata
    # service's IPv6 address when imdsd has one.
    links6 = json.loads(lab.ip_host("-j", "-6", "addr", "show").stdout)
    addrs6 = {a["local"] for link in links6 if link["ifname"] != "lo" for a in link.get("addr_info", [])}
    assert any(a.startswith("fe80:") for a in addrs6), links6
    urls = [f"http://{a}:{METRICS_PORT}/metrics" for a in sorted(addrs)]
    urls += [f"http://[{a}%25eth0]:{METRICS_PORT}/metrics" if a.startswith("fe80:")
             else f"http://[{a}]:{METRICS_PORT}/metrics" for a in sorted(addrs6)]
    for url in urls:
        p = lab.in_vm(4, "curl", "-sS", "-g", "--max-time", "2", url, check=False)
        assert p.returncode != 0 and "imds_" not in p.stdout, (url, p.stdout, p.stderr)
    res = spoof(lab, 4, ip(4), 61500, 3, dst_ip="127.0.0.1", dst_port=METRICS_PORT, listen=1.0)
    assert res["replies"] == [], res


def test_deleted_vm_leaves_the_metrics(lab, prom):
    assert series(scrape(lab)[1], "imds_vm_requests_total", instance_id=iid(1))
    p = lab.loadmap("delete", iid(1))
    assert p.returncode == 0, p.stderr
    body = scrape(lab)[1]
    assert f'instance_id="{iid(1)}"' not in body
    assert series(body, "imds_vms_loaded") == [3.0]
    # Prometheus marks the series stale at its next scrape.
    wait_until("VM 1's series gone from Prometheus",
               lambda: prom.query(vm_q("imds_vm_requests_total", 1)) == {}, timeout=10)
    assert prom.query(vm_q("imds_vm_requests_total", 4))


def test_port_flaps_logged_once_per_kind(lab):
    """VM 4's port leaves the bridge and comes back three times, each seen
    by imdsd's once-a-second look: one 'lost' and one 'bound' line, the
    later flaps held back (at most one line a minute per VM and kind)."""
    port = vmdata.vm_port(4)
    log_start = len(lab.log_text())

    def lines(kind):
        return [ln for ln in lab.log_text()[log_start:].splitlines() if f"vm {iid(4)} " in ln and kind in ln]

    for _ in range(3):
        lab.ip_host("link", "set", port, "nomaster")
        wait_until("VM 4 lost its port", lambda: lab.list_rows() and
                   [r for r in lab.list_rows() if r[0] == iid(4) and "waiting" in r], timeout=5)
        time.sleep(1.1)
        lab.ip_host("link", "set", port, "master", lab.bridge, "up")
        wait_until("VM 4 bound again", lambda: [r for r in lab.list_rows() if r[0] == iid(4) and "pinned" in r],
                   timeout=5)
        time.sleep(1.1)
    assert len(lines("lost its port")) == 1, lines("lost its port")
    bound = lines("bound to port")
    assert len(bound) == 1 and bound[0].startswith("info imdsd: ") and f"port {port} " in bound[0], bound
    r = get(lab.vm_ns(4), PATH)
    assert (r.status, r.body) == (200, iid(4).encode())


FOREIGN_C = """
#define SEC(s) __attribute__((section(s), used))
SEC("xdp") int h14_foreign(void *ctx) { return 2; /* XDP_PASS */ }
char _license[] SEC("license") = "GPL";
"""


def test_healthz_503_while_a_port_lacks_the_data_plane(lab):
    """With --ingress xdp, a port joining with somebody else's XDP program
    is left without imds (docs/ports.md): /healthz says 503 and why, and
    200 again once that port is gone."""
    src, obj = os.path.join(lab.workdir, "foreign.c"), os.path.join(lab.workdir, "foreign.o")
    with open(src, "w") as f:
        f.write(FOREIGN_C)
    imdslab.run(["clang", "-O2", "-g", "-target", "bpf", "-c", src, "-o", obj])
    lab.stop_imdsd()
    lab.start_imdsd("--metrics", f"127.0.0.1:{METRICS_PORT}", "--ingress", "xdp")
    port = "h14m0"
    try:
        lab.ip_host("link", "add", port, "type", "veth", "peer", "name", "h14m1")
        lab.ip_host("link", "set", "dev", port, "xdpgeneric", "obj", obj, "sec", "xdp")
        assert scrape(lab, "/healthz") == (200, "ok\n")
        lab.ip_host("link", "set", port, "master", lab.bridge, "up")
        code, body = wait_until("/healthz 503", lambda: (lambda r: r if r[0] == 503 else None)(
            scrape(lab, "/healthz")), timeout=5)
        assert "the data plane is not attached to 1 port(s) of the served bridges" in body, body
        assert any("error imdsd: port h14m0" in ln and "data plane not attached" in ln
                   for ln in lab.log_text().splitlines())
    finally:
        lab.ip_host("link", "del", port, check=False)
    wait_until("/healthz 200", lambda: scrape(lab, "/healthz") == (200, "ok\n"), timeout=5)


def test_unix_socket_endpoint(lab):
    sock = os.path.join(lab.workdir, "metrics.sock")
    lab.stop_imdsd()
    try:
        lab.start_imdsd("--metrics", f"unix:{sock}", "--log-level", "warn")
        code, body = scrape(lab, unix=sock)
        assert code == 200 and series(body, "imds_vms_loaded") == [3.0]
        assert oct(os.stat(sock).st_mode & 0o777) == "0o660"
        run_log = lab.log_text()[lab.imdsd_log_start:]
        assert "info imdsd: ready" in run_log  # written at any level: scripts wait for it
        assert "info imdsd: port " not in run_log and "info imdsd: metrics on" not in run_log, run_log
    finally:
        lab.stop_imdsd()
    assert not os.path.exists(sock)


def test_metrics_address_must_be_loopback(lab):
    for bad, why in (("0.0.0.0:9464", "is not a loopback address"), ("10.0.0.1:1", "is not a loopback address"),
                     ("localhost:9464", "is not an IPv4 address"), ("127.0.0.1:0", "is not a port"),
                     ("unix:rel/path", "must be absolute")):
        p = lab.host(imdslab.IMDSD, "--bridge", lab.bridge, "--pin-dir", lab.pin_dir, "--metrics", bad,
                     check=False)
        assert p.returncode == 2 and f'imdsd: --metrics: "{bad}"' in p.stderr and why in p.stderr, (bad, p.stderr)


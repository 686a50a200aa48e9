"""imdslab: one lab (scripts/lab.sh) plus the real daemons, driven from
pytest.  lab.sh builds and removes the namespaces, so the demo and the tests
share one topology; this module adds what tests need around it: starting
and stopping imdsd with its exit status and log, running imds-loadmap,
reading counters, and changing a VM's addresses for spoofing tests."""

import contextlib
import itertools
import json
import os
import signal
import subprocess
import time

import vmdata
from vmhttp import get

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("IMDS_BUILD", os.path.join(ROOT, "build"))
LAB_SH = os.path.join(ROOT, "scripts", "lab.sh")
# IMDS_IMDSD: another imdsd binary, such as make san-test's build with ASan
# and UBSan (scripts/san-test.sh).
IMDSD = os.environ.get("IMDS_IMDSD") or os.path.join(BUILD, "imdsd")
# A sanitizer build of imdsd reports to stderr (the log), stops at the first
# error and looks for leaks at exit; a report found at stop fails the test.
SANITIZER_ENV = {"ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0:halt_on_error=1",
                 "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1"}
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "runtime error:", "LeakSanitizer")
LOADMAP = os.path.join(BUILD, "imds-loadmap")
PYTHON = "/usr/bin/python3"
SPOOF_PY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "spoof.py")
TCXQUERY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tcxquery.py")
# The data plane's programs and the place of its TC filters (user/dataplane.c).
XDP_PROG = "imds_xdp"
TC_INGRESS_PROG = "imds_tc_ingress"
TC_EGRESS_PROG = "imds_tc_egress"
TC_PREF = 0xc1d5  # 49621
TC_HANDLE = 0x696d6473  # "imds"

_counter = itertools.count(1)


def stop_process(proc, timeout=5, sig=signal.SIGTERM, cont=False):
    """Stops a daemon the test started: sig (SIGCONT first when cont, for
    one a test may have stopped), then SIGKILL after timeout seconds.
    Returns its exit status."""
    if proc.poll() is None:
        if cont:
            proc.send_signal(signal.SIGCONT)
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def run(cmd, check=True, timeout=60, **kw):
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {p.returncode}\nstdout: {p.stdout}\nstderr: {p.stderr}")
    return p


class Lab:
    """A lab with VMs 1..n, named with a suffix unique to this run."""

    def __init__(self, n, workdir):
        self.suffix = f"{os.getpid()}-{next(_counter)}"
        self.n = n
        self.workdir = str(workdir)
        self.vms = []
        self.imdsd = None
        self.imdsd_log = os.path.join(self.workdir, "imdsd.log")
        self.imdsd_runs = 0
        self.imdsd_log_start = 0  # where the current run's part of the log starts
        self.ingress_hook = None  # where the running imdsd checks VMs: "tc" or "xdp"
        # The programs this lab runs: the build's, or installed ones
        # (test_packaging.py); imdsd_prog may start with a wrapper (setpriv).
        self.imdsd_prog = [IMDSD]
        self.loadmap_bin = LOADMAP
        info = run([LAB_SH, "info", self.suffix]).stdout
        names = dict(line.split("=", 1) for line in info.split())
        self.host_ns = names["LAB_HOST_NS"]
        self.bridge = names["LAB_BRIDGE"]
        self.pin_dir = names["LAB_PIN_DIR"]
        self.prefix = names["LAB_PREFIX"]

    # --- topology -------------------------------------------------------
    def up(self):
        run([LAB_SH, "up", self.suffix, str(self.n)])
        self.vms = list(range(1, self.n + 1))

    def add_vm(self, i, bridge=None):
        """VM i joins the lab's bridge, or `bridge` (made by add_bridge)."""
        run([LAB_SH, "add-vm", self.suffix, str(i), *([bridge] if bridge else [])])
        self.vms.append(i)

    def add_bridge(self, name):
        """Another bridge in the host namespace (up, no address)."""
        run([LAB_SH, "add-bridge", self.suffix, name])

    def del_bridge(self, name):
        run([LAB_SH, "del-bridge", self.suffix, name])

    def del_vm(self, i):
        run([LAB_SH, "del-vm", self.suffix, str(i)])
        self.vms.remove(i)

    def down(self):
        try:
            self.kill_imdsd()
        finally:
            run([LAB_SH, "down", self.suffix], check=False)

    def vm_ns(self, i):
        return f"{self.prefix}-vm{i}-{self.suffix}"

    def host(self, *cmd, check=True, timeout=60):
        return run(["nsenter", f"--net=/run/netns/{self.host_ns}", *cmd], check=check, timeout=timeout)

    def in_vm(self, i, *cmd, check=True, timeout=60):
        return run(["ip", "netns", "exec", self.vm_ns(i), *cmd], check=check, timeout=timeout)

    def ip_host(self, *args, check=True):
        return run(["ip", "-n", self.host_ns, *args], check=check)

    def ip_vm(self, i, *args, check=True):
        return run(["ip", "-n", self.vm_ns(i), *args], check=check)

    def bridge_mac(self):
        info = json.loads(self.ip_host("-j", "link", "show", self.bridge).stdout)
        return info[0]["address"]

    def port_xdp(self, port):
        """The 'xdp' section of `ip -d link show PORT`: any XDP program,
        ours or not (None: nothing attached)."""
        info = json.loads(self.ip_host("-j", "-d", "link", "show", port).stdout)
        return info[0].get("xdp")

    def cls_filter_names(self, port, direction):
        """Names of the BPF programs in PORT's cls_bpf filters, direction
        "ingress" or "egress" ([] also when the port has no clsact)."""
        p = self.host("tc", "-j", "filter", "show", "dev", port, direction, check=False)
        filters = json.loads(p.stdout or "[]") if p.returncode == 0 else []
        return [f["options"]["bpf_name"] for f in filters if f.get("options", {}).get("bpf_name")]

    def tcx_programs(self, *ports):
        """{port: {"ingress": [[name, link id], ...], "egress": [...]}}: the
        programs on the ports' TCX hooks, in the order they run
        (tests/system/tcxquery.py; "--all" for every link)."""
        return json.loads(self.host(PYTHON, TCXQUERY, *ports).stdout)

    def tc_filter_names(self, port, direction):
        """Names of the BPF programs on PORT's TC hook, direction "ingress"
        or "egress": TCX programs first (they run first), then cls_bpf
        filters."""
        tcx = self.tcx_programs(port).get(port, {}).get(direction, [])
        return [name for name, _ in tcx] + self.cls_filter_names(port, direction)

    def tc_copies(self, port):
        """How many of imdsd's TC programs PORT carries, by way and hook:
        {("tcx" or "cls", "ingress" or "egress"): n}, zeros left out."""
        copies = {}
        tcx = self.tcx_programs(port).get(port, {})
        for d in ("ingress", "egress"):
            prog = TC_INGRESS_PROG if d == "ingress" else TC_EGRESS_PROG
            for way, names in (("tcx", [n for n, _ in tcx.get(d, [])]), ("cls", self.cls_filter_names(port, d))):
                n = sum(1 for name in names if name.startswith(prog))
                if n:
                    copies[(way, d)] = n
        return copies

    def tcx_pins(self):
        """The pinned TCX links under the lab's pin directory (names)."""
        d = os.path.join(self.pin_dir, "links")
        return sorted(os.listdir(d)) if os.path.isdir(d) else []

    def port_ingress_hooks(self, port):
        """Which of imdsd's checks of what the VM sends are on PORT: a subset
        of {"tc", "xdp"} (TC ingress is imdsd's default, XDP with --ingress
        xdp; both at once would check every packet twice)."""
        hooks = set()
        if any(n.startswith(TC_INGRESS_PROG) for n in self.tc_filter_names(port, "ingress")):
            hooks.add("tc")
        prog = (self.port_xdp(port) or {}).get("prog", {})
        if prog.get("name", "").startswith(XDP_PROG):
            hooks.add("xdp")
        return hooks

    def detach_ingress_check(self, port):
        """Takes imdsd's check of what the VM sends off PORT behind imdsd's
        back, whichever hook it is on (TC egress, the hop limit, stays)."""
        self.ip_host("link", "set", "dev", port, "xdp", "off", check=False)
        self.ip_host("link", "set", "dev", port, "xdpgeneric", "off", check=False)
        # Our filter's place: dataplane.c's DATAPLANE_TC_PRIO and _HANDLE.
        self.host("tc", "filter", "del", "dev", port, "ingress", "pref", str(TC_PREF), "handle",
                  hex(TC_HANDLE), "bpf", check=False)
        # Our TCX link lives as long as its pin (imdsd holds no descriptor).
        ifindex = json.loads(self.ip_host("-j", "link", "show", port).stdout)[0]["ifindex"]
        pin = os.path.join(self.pin_dir, "links", f"tcx-{ifindex}-ingress")
        if os.path.exists(pin):
            os.unlink(pin)
        hooks = self.port_ingress_hooks(port)
        assert not hooks, f"imdsd's ingress check still on {port}: {hooks}"

    def host_addresses(self):
        info = json.loads(self.ip_host("-j", "addr", "show", self.bridge).stdout)
        return [a["local"] for a in info[0].get("addr_info", []) if a.get("family") == "inet"]

    def forget_neighbours(self):
        """After a VM spoofed addresses, ARP and the bridge have learned
        lies: flush them so later tests start from the truth."""
        self.ip_host("neigh", "flush", "all", check=False)
        for i in self.vms:
            self.ip_vm(i, "neigh", "flush", "all", check=False)
        run(["bridge", "-n", self.host_ns, "fdb", "flush", "dev", self.bridge, "dynamic"], check=False)

    @contextlib.contextmanager
    def vm_identity(self, i, mac=None, ipv4=None):
        """VM i temporarily takes another MAC and/or IPv4 on its eth0.  Its
        ARP under a borrowed identity is dropped at the port (issue 12), so
        it is given 169.254.169.254's MAC as a static entry, as if cached
        from before: its TCP segments then reach the data plane's checks,
        which is what the tests using this are about."""
        try:
            if mac:
                self.ip_vm(i, "link", "set", "dev", "eth0", "address", mac)
            if ipv4:
                self.ip_vm(i, "addr", "flush", "dev", "eth0")
                self.ip_vm(i, "addr", "add", f"{ipv4}/24", "dev", "eth0")
                # Removing the last IPv4 address flushed eth0's routes.
                self.ip_vm(i, "route", "replace", "169.254.169.254", "dev", "eth0")
            self.ip_vm(i, "neigh", "flush", "all", check=False)
            self.ip_vm(i, "neigh", "replace", "169.254.169.254", "lladdr", self.bridge_mac(), "dev", "eth0",
                       "nud", "permanent")
            yield
        finally:
            self.ip_vm(i, "neigh", "del", "169.254.169.254", "dev", "eth0", check=False)
            self.ip_vm(i, "link", "set", "dev", "eth0", "address", vmdata.vm_mac(i))
            self.ip_vm(i, "addr", "flush", "dev", "eth0")
            self.ip_vm(i, "addr", "add", f"{vmdata.vm_ipv4(i)}/24", "dev", "eth0")
            self.ip_vm(i, "route", "replace", "169.254.169.254", "dev", "eth0")
            self.forget_neighbours()

    # --- imdsd ----------------------------------------------------------
    def imdsd_cmd(self, *args, bridges=None, pin_dir=None):
        """The imdsd command line in the host namespace: the lab's bridge
        and pin directory unless `bridges` (each one --bridge value) or
        `pin_dir` say otherwise."""
        bridge_args = [a for b in (bridges or [self.bridge]) for a in ("--bridge", b)]
        return ["nsenter", f"--net=/run/netns/{self.host_ns}", *self.imdsd_prog, *bridge_args,
                "--pin-dir", pin_dir or self.pin_dir, *args]

    def start_imdsd(self, *args, timeout=20, wrapper=(), bridges=None):
        """wrapper: a command imdsd runs under (e.g. prlimit ... --);
        bridges: the --bridge values (default: the lab's bridge)."""
        assert self.imdsd is None, "imdsd already runs"
        self.imdsd_runs += 1
        self.ingress_hook = ingress_hook(args)
        log = open(self.imdsd_log, "a")
        log.write(f"--- imdsd run {self.imdsd_runs} ---\n")
        log.flush()
        start = self.imdsd_log_start = os.path.getsize(self.imdsd_log)
        cmd = [*wrapper, *self.imdsd_cmd(*args, bridges=bridges)]
        self.imdsd = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                      env=dict(SANITIZER_ENV, **os.environ))
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "imdsd: ready" in self._log_since(start):
                return
            if self.imdsd.poll() is not None:
                rc, self.imdsd = self.imdsd.returncode, None
                raise AssertionError(f"imdsd exited {rc} before ready:\n{self._log_since(start)}")
            time.sleep(0.05)
        self.kill_imdsd()
        raise AssertionError(f"imdsd not ready after {timeout} s:\n{self._log_since(start)}")

    def _log_since(self, start):
        with open(self.imdsd_log, errors="replace") as f:
            f.seek(start)
            return f.read()

    def log_text(self):
        if not os.path.exists(self.imdsd_log):
            return ""
        with open(self.imdsd_log, errors="replace") as f:
            return f.read()

    def stop_imdsd(self, sig=signal.SIGTERM, timeout=10):
        """Signals imdsd and returns its exit status."""
        proc, self.imdsd = self.imdsd, None
        assert proc is not None, "imdsd is not running"
        proc.send_signal(sig)
        try:
            rc = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise AssertionError(f"imdsd ignored signal {sig} for {timeout} s")
        self.check_sanitizers()
        return rc

    def kill_imdsd(self):
        proc, self.imdsd = self.imdsd, None
        if proc is None:
            return
        stop_process(proc)
        self.check_sanitizers()

    def check_sanitizers(self):
        """Fails if imdsd's last run logged an ASan, UBSan or LSan report."""
        text = self._log_since(self.imdsd_log_start)
        found = [m for m in SANITIZER_MARKS if m in text]
        if found:
            raise AssertionError(f"imdsd's sanitizers reported ({', '.join(found)}):\n{text[-8000:]}")

    # --- imds-loadmap ---------------------------------------------------
    def loadmap(self, *args, check=False):
        return self.host(self.loadmap_bin, "--pin-dir", self.pin_dir, *args, check=check)

    def write_json(self, name, text):
        path = os.path.join(self.workdir, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def load(self, records, name="vms.json"):
        path = self.write_json(name, vmdata.dumps(records))
        p = self.loadmap("load", path)
        assert p.returncode == 0, f"load {path} exited {p.returncode}: {p.stderr}"
        return path

    def stats(self, *args):
        """{(who, reason): count} from `imds-loadmap stats`."""
        p = self.loadmap("stats", *args)
        assert p.returncode == 0, f"stats exited {p.returncode}: {p.stderr}"
        out = {}
        for line in p.stdout.splitlines():
            fields = line.split()
            if len(fields) == 3 and fields[2].isdigit():
                out[(fields[0], fields[1])] = int(fields[2])
        return out

    LIST_COLUMNS = ["INSTANCE-ID", "MAC", "IPV4", "BRIDGE", "PORT", "BINDING", "TOKENS", "HOP-LIMIT"]

    def list_rows(self):
        p = self.loadmap("list")
        assert p.returncode == 0, f"list exited {p.returncode}: {p.stderr}"
        lines = p.stdout.splitlines()
        assert lines and lines[0].split() == self.LIST_COLUMNS, p.stdout
        return [line.split() for line in lines[1:] if line.strip()]

    def list_row(self, instance_id):
        """VM instance_id's row of `imds-loadmap list` by column name."""
        rows = {r[0]: dict(zip(self.LIST_COLUMNS, r)) for r in self.list_rows()}
        return rows[instance_id]

    def port_binding(self, instance_id):
        """(PORT, BINDING) of `imds-loadmap list` for one VM."""
        row = self.list_row(instance_id)
        return (row["PORT"], row["BINDING"])

    # --- crafted frames (scapy, in a VM's namespace) --------------------
    def bind_ports(self):
        """Every VM fetches its instance-id once: each is served on the port
        it is pinned to before a test forges anything."""
        for i in self.vms:
            r = get(self.vm_ns(i), "/latest/meta-data/instance-id")
            want = (200, vmdata.instance_id(i).encode())
            assert (r.status, r.body) == want, f"vm{i} first fetch: {r!r}"

    def spoof_syns(self, i, src_mac, src_ip, first_port, count=3, listen=1.0):
        args = ["syn", "--src-mac", src_mac, "--src-ip", src_ip, "--dst-mac", self.bridge_mac(),
                "--first-port", str(first_port), "--count", str(count), "--listen", str(listen)]
        p = self.in_vm(i, PYTHON, SPOOF_PY, *args, timeout=60)
        return json.loads(p.stdout)

    def sniffer(self, i, ports, seconds):
        """Starts a scapy sniffer in VM i; returns it once it listens."""
        return Sniffer(self, i, ports, seconds)


class Sniffer:
    """A capture script in VM i that prints "ready", then its JSON result:
    spoof.py's sniff of ports, or `script` with `args` (hostile6.py)."""

    def __init__(self, lab, i, ports, seconds, script=None, args=()):
        if script is None:
            script, args = SPOOF_PY, ["sniff", "--ports", f"{ports[0]}-{ports[1]}", "--seconds", str(seconds)]
        cmd = ["ip", "netns", "exec", lab.vm_ns(i), PYTHON, script, *args]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if line.strip() != "ready":
            self.proc.kill()
            raise AssertionError(f"sniffer in vm{i} did not start: {line!r} {self.proc.stderr.read()}")

    def result(self):
        out, err = self.proc.communicate(timeout=60)
        assert self.proc.returncode == 0, f"sniffer failed: {err}"
        return json.loads(out)


def ingress_hook(imdsd_args):
    """The hook imdsd with these arguments checks VMs at: its --ingress
    ("tc" when not given: the default)."""
    args = list(imdsd_args)
    for k, a in enumerate(args):
        if a == "--ingress" and k + 1 < len(args):
            return args[k + 1]
        if a.startswith("--ingress="):
            return a.split("=", 1)[1]
    return "tc"


# imdsd arguments for tests that run once per ingress hook: the default
# (TC ingress) and XDP.
INGRESS_ARGS = [(), ("--ingress", "xdp")]
INGRESS_IDS = ["tc-default", "xdp"]


def counter_delta(before, after, who, reason):
    """Growth of one `imds-loadmap stats` counter between two readings."""
    return after.get((who, reason), 0) - before.get((who, reason), 0)


def wait_until(what, pred, timeout, interval=0.01):
    """Polls pred until it is true; the seconds it took, or fails."""
    start = time.monotonic()
    while not pred():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"{what}: not true after {timeout} s")
        time.sleep(interval)
    return time.monotonic() - start


def vm_curl(lab, i, *args, timeout=30):
    """curl from VM i; returns CompletedProcess (text)."""
    return lab.in_vm(i, "curl", "-sS", *args, check=False, timeout=timeout)


def assert_served(lab, i, token=None, prefix="/latest"):
    """VM i gets exactly its own data at the usual paths, and nothing of
    another VM."""
    ns = lab.vm_ns(i)
    for path, want in vmdata.expected_paths(i, prefix).items():
        r = get(ns, path, token)
        assert r.status == 200, f"vm{i} {path}: {r!r}"
        assert r.body == want, f"vm{i} {path}: got {r.body!r}, want {want!r}"
        vmdata.assert_no_leak(i, r.body, lab.vms, path)
    r = get(ns, f"{prefix}/dynamic/instance-identity/document", token)
    assert r.status == 200, f"vm{i} identity document: {r!r}"
    doc = json.loads(r.body)
    assert doc["instanceId"] == vmdata.instance_id(i)
    if "privateIp" in doc:
        assert doc["privateIp"] == vmdata.vm_ipv4(i)
    vmdata.assert_no_leak(i, r.body, lab.vms, "identity document")


class Strace:
    """strace on every thread of a process, counting the calls of one
    syscall whose line holds `match` (e.g. a bpf() command's name)."""

    def __init__(self, pid, syscall, out):
        tids = os.listdir(f"/proc/{pid}/task")
        args = [a for t in tids for a in ("-p", t)]
        self.out = out
        self.syscall = syscall
        self.proc = subprocess.Popen(["strace", "-qq", "-e", f"trace={syscall}", "-o", out, *args],
                                     stderr=subprocess.PIPE, text=True)
        time.sleep(0.5)  # every thread attached (strace has no ready signal)
        assert self.proc.poll() is None, self.proc.stderr.read()

    def stop(self, match=""):
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(10)
        with open(self.out) as f:
            return sum(1 for line in f if self.syscall + "(" in line and match in line)


def count_calls(lab, syscall, name, body, match=""):
    """Runs body() while strace counts imdsd's calls of `syscall` (whose
    line holds `match`); returns the count."""
    strace = Strace(lab.imdsd.pid, syscall, os.path.join(lab.workdir, f"strace-{name}.txt"))
    try:
        body()
    finally:
        calls = strace.stop(match)
    return calls

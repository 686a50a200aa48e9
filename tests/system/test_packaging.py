"""Issue 14: imds installed and run as an operator does (docs/operations.md).

- The version comes from the VERSION file; the man pages come from --help.
- `make install DESTDIR=...`: the installed programs serve a VM from there,
  and `make uninstall` takes every file away again (acceptance 2).
- `make install PREFIX=...`: the unit names the installed paths and
  `systemd-analyze verify` passes on it (acceptance 5); its security
  exposure stays what docs/operations.md records.
- The unit's CapabilityBoundingSet is what imdsd needs: under exactly that
  set it serves, also after a SIGKILL left its programs on the ports;
  without CAP_SYS_ADMIN it cannot take over cls_bpf filters (--tc-attach
  cls, and kernels before 6.6) but does take over its pinned TCX links,
  and without any one of the others it does not serve.
- `make deb`, `apt-get install ./imds_*.deb`: the installed /usr/sbin/imdsd
  serves a VM on a lab bridge, the installed unit verifies, and `apt-get
  purge` leaves nothing (files, pins, programs on ports, hook, keys)
  (acceptance 1).
- The second unit, imds-sync.service (docs/operations.md, "The sync
  unit"): installed by make install and the package, verified and scored
  like imdsd's; its ExecStart=, expanded by the test from the installed
  /etc/default/imds as systemd would, runs the installed imds-loadmap
  sync under exactly the unit's bounding set against a real etcd, and the
  lab VM is served the record etcd holds; with the file as installed it is
  a usage error (exit 2, not restarted); without CAP_BPF it cannot open
  the store."""

import json
import os
import re
import subprocess

import pytest

import imdslab
import vmdata
from etcdlab import Etcd
from imdslab import assert_served, run
from vmhttp import NoResponse, get

ROOT = imdslab.ROOT
BUILD = imdslab.BUILD
VERSION = open(os.path.join(ROOT, "VERSION")).read().strip()
UNIT_IN = os.path.join(ROOT, "dist", "imdsd.service.in")
UNITS = ("imdsd.service", "imds-sync.service")
PROGS = ("imdsd", "imds-loadmap", "imds-storm")
# What `systemd-analyze security` scores the unit (docs/operations.md).
EXPOSURE_MAX = 4.5
DEFAULT_PIN_DIR = "/sys/fs/bpf/imds"
DEFAULT_KEY_DIR = "/var/lib/imds"
HOOK_PATH = "/etc/libvirt/hooks/qemu.d/imds"
APT = ["apt-get", "-y", "-q", "-o", "DPkg::Lock::Timeout=120"]


def make(*args, timeout=600):
    return run(["make", "-s", "-C", ROOT, f"BUILD={BUILD}", *args], timeout=timeout)


def files_under(top):
    """Every non-directory below top (files and symlinks), relative."""
    out = []
    for d, _, names in os.walk(top):
        out += [os.path.relpath(os.path.join(d, n), top) for n in names]
    return sorted(out)


def assert_ports_clean(lab, port="vm1"):
    assert lab.port_xdp(port) is None, f"XDP left on {port}"
    for direction in ("ingress", "egress"):
        names = lab.tc_filter_names(port, direction)
        assert not any(n.startswith("imds_") for n in names), f"{names} left on {port} {direction}"


def unit_caps(path=UNIT_IN):
    """The unit's CapabilityBoundingSet, lower case without CAP_."""
    m = re.search(r"^CapabilityBoundingSet=(.+)$", open(path).read(), re.M)
    assert m, f"{path}: no CapabilityBoundingSet="
    return [c.lower().removeprefix("cap_") for c in m.group(1).split()]


def setpriv(caps, prog=os.path.join(BUILD, "imdsd")):
    """prog (imdsd) as root under this bounding set and no new privileges:
    what the unit gives it (root's effective set is its bounding set)."""
    return ["setpriv", "--bounding-set", ",".join(["-all"] + [f"+{c}" for c in caps]), "--no-new-privs",
            "--", prog]


@pytest.fixture(scope="module")
def lab(make_lab):
    lab = make_lab(1)
    lab.load([vmdata.vm_record(1)])
    return lab


def test_version_and_man_pages_come_from_one_place():
    for prog in PROGS:
        out = run([os.path.join(BUILD, prog), "--version"]).stdout
        assert out == f"{prog} {VERSION}\n", f"{prog} --version: {out!r}"
        page = open(os.path.join(BUILD, "man", f"{prog}.8")).read().replace("\\-", "-")
        assert f'"{prog} {VERSION}"' in page, f"{prog}.8 does not carry the version"
        helptext = run([os.path.join(BUILD, prog), "--help"]).stdout
        options = set(re.findall(r"--[a-z][a-z-]+", helptext))
        assert len(options) >= 3, helptext
        missing = sorted(o for o in options if o not in page)
        assert not missing, f"{prog}.8 lacks {missing}: run make"


def test_destdir_install_serves_and_uninstall_removes_all(lab, tmp_path):
    dest = str(tmp_path / "dest")
    make("install", f"DESTDIR={dest}")
    sbin = os.path.join(dest, "usr/local/sbin")
    for prog in PROGS:
        assert run([os.path.join(sbin, prog), "--version"]).stdout == f"{prog} {VERSION}\n"
    assert os.readlink(os.path.join(dest, HOOK_PATH.lstrip("/"))) == "/usr/local/libexec/imds/imds-libvirt-hook"
    conf = open(os.path.join(dest, "etc/default/imds")).read()
    assert "IMDS_LOADMAP=/usr/local/sbin/imds-loadmap" in conf, conf
    for path in ("usr/local/lib/systemd/system/imdsd.service", "usr/local/lib/systemd/system/imds-sync.service",
                 "usr/local/share/man/man8/imdsd.8",
                 "usr/local/share/doc/imds/operations.md",):
        assert os.path.exists(os.path.join(dest, path)), f"make install left out {path}"

    lab.imdsd_prog = [os.path.join(sbin, "imdsd")]
    lab.loadmap_bin = os.path.join(sbin, "imds-loadmap")
    try:
        lab.load([vmdata.vm_record(1)])
        lab.start_imdsd()
        assert_served(lab, 1)
        assert lab.stop_imdsd() == 0
    finally:
        lab.kill_imdsd()
        lab.imdsd_prog, lab.loadmap_bin = [imdslab.IMDSD], imdslab.LOADMAP
    assert_ports_clean(lab)

    make("uninstall", f"DESTDIR={dest}")
    assert files_under(dest) == [], "make uninstall left files"


def test_prefix_install_unit_verifies(tmp_path):
    prefix = str(tmp_path / "usr")
    etc = str(tmp_path / "etc")
    make("install", f"PREFIX={prefix}", f"SYSCONFDIR={etc}")
    units = [os.path.join(prefix, "lib/systemd/system", u) for u in UNITS]
    text = open(units[0]).read()
    assert f"ExecStart={prefix}/sbin/imdsd --bridge ${{IMDS_BRIDGES}}" in text, text
    sync_text = open(units[1]).read()
    assert f"ExecStart={prefix}/sbin/imds-loadmap --pin-dir ${{IMDS_PIN_DIR}} sync " in sync_text, sync_text
    for t in (text, sync_text):
        assert f"EnvironmentFile=-{etc}/default/imds" in t, t
    assert os.readlink(os.path.join(etc, "libvirt/hooks/qemu.d/imds")) == f"{prefix}/libexec/imds/imds-libvirt-hook"
    env = dict(os.environ, MANPATH=os.path.join(prefix, "share/man"))
    for unit, name in zip(units, UNITS):
        p = run(["systemd-analyze", "verify", unit], check=False, env=env)
        assert p.returncode == 0 and not p.stderr.strip(), f"verify {name}: {p.returncode}\n{p.stderr}"
        p = run(["systemd-analyze", "security", "--offline=true", unit], check=False)
        m = re.search(rf"Overall exposure level for {name}: ([0-9.]+)", p.stdout)
        assert m, f"security: {p.returncode}\n{p.stdout}\n{p.stderr}"
        print(f"\n{name}: exposure {m.group(1)}")
        assert float(m.group(1)) <= EXPOSURE_MAX, p.stdout

    # The check can fail: without the program ExecStart names, verify refuses.
    os.rename(f"{prefix}/sbin/imdsd", f"{prefix}/sbin/imdsd.away")
    p = run(["systemd-analyze", "verify", units[0]], check=False, env=env)
    assert p.returncode != 0 and "imdsd" in p.stderr, p.stderr
    os.rename(f"{prefix}/sbin/imdsd.away", f"{prefix}/sbin/imdsd")

    make("uninstall", f"PREFIX={prefix}", f"SYSCONFDIR={etc}")
    assert files_under(str(tmp_path)) == [], "make uninstall left files"


def kill9(lab):
    """SIGKILL: imdsd cannot detach, its programs stay on the ports."""
    proc, lab.imdsd = lab.imdsd, None
    proc.kill()
    proc.wait(10)


def serves(lab, i=1):
    try:
        r = get(lab.vm_ns(i), "/latest/meta-data/instance-id", timeout=2.0)
    except NoResponse:
        return False
    return (r.status, r.body) == (200, vmdata.instance_id(i).encode())


def test_unit_capabilities_are_what_imdsd_needs(lab):
    caps = unit_caps()
    assert "bpf" in caps and "net_admin" in caps, caps
    try:
        lab.imdsd_prog = setpriv(caps)
        lab.start_imdsd()
        assert serves(lab), "imdsd under the unit's capabilities does not serve"
        kill9(lab)
        assert lab.port_ingress_hooks("vm1") == {"tc"}, "SIGKILL should leave the program on the port"
        # Restart=on-failure: the next imdsd takes over the left program.
        lab.start_imdsd()
        assert "cannot be inspected" not in lab.log_text()
        assert serves(lab)
        kill9(lab)

        # CAP_SYS_ADMIN passes the kernel's CAP_BPF and CAP_PERFMON checks
        # too, so each of the others is shown needed without it, on clean
        # ports (the SIGTERM of the last run detached).
        lab.imdsd_prog = setpriv(caps)
        lab.start_imdsd()
        lab.stop_imdsd()
        base = [c for c in caps if c != "sys_admin"]
        lab.imdsd_prog = setpriv(base)
        lab.start_imdsd()
        assert serves(lab), f"imdsd under {base} does not serve on clean ports"
        lab.stop_imdsd()
        for cap in base:
            lab.imdsd_prog = setpriv([c for c in base if c != cap])
            try:
                lab.start_imdsd()
            except AssertionError:
                continue  # exited before ready: cap is needed to start
            assert not serves(lab), f"imdsd served without CAP_{cap.upper()}: is it needed?"
            lab.stop_imdsd()

        # CAP_SYS_ADMIN: with cls_bpf filters (--tc-attach cls, and what
        # auto falls back to before Linux 6.6, e.g. Debian 12's 6.1), for
        # BPF_PROG_GET_FD_BY_ID, to recognise the program a killed imdsd
        # left on a port before taking it over.
        lab.imdsd_prog = setpriv(caps)
        lab.start_imdsd("--tc-attach", "cls")
        kill9(lab)
        lab.imdsd_prog = setpriv([c for c in caps if c != "sys_admin"])
        lab.start_imdsd("--tc-attach", "cls")
        this_run = lab._log_since(lab.imdsd_log_start)
        assert "cannot be inspected: Operation not permitted" in this_run, this_run
        lab.stop_imdsd()
        # With TCX links (the default on 6.6+) the pins identify the links
        # a killed imdsd left: no id lookup, so no CAP_SYS_ADMIN.  (The
        # full set first clears the cls_bpf filters the run above kept.)
        lab.imdsd_prog = setpriv(caps)
        lab.start_imdsd()
        kill9(lab)
        assert lab.tc_copies("vm1") == {("tcx", "ingress"): 1, ("tcx", "egress"): 1}
        lab.imdsd_prog = setpriv([c for c in caps if c != "sys_admin"])
        lab.start_imdsd()
        this_run = lab._log_since(lab.imdsd_log_start)
        assert "cannot" not in this_run, this_run
        assert serves(lab), "imdsd without CAP_SYS_ADMIN does not take the TCX links over"
        assert lab.tc_copies("vm1") == {("tcx", "ingress"): 1, ("tcx", "egress"): 1}
        lab.stop_imdsd()
        assert lab.tcx_pins() == []
    finally:
        lab.kill_imdsd()
        # Clean ports for the next test: a full imdsd takes over and detaches.
        lab.imdsd_prog = setpriv(caps)
        lab.start_imdsd()
        lab.stop_imdsd()
        lab.imdsd_prog = [imdslab.IMDSD]
    assert_ports_clean(lab)


# ---- the Debian package ----------------------------------------------------

def package_installed():
    p = run(["dpkg-query", "-W", "-f=${Status}", "imds"], check=False)
    return "ok installed" in p.stdout or "config-files" in p.stdout


class PrivateBpffs:
    """A mount namespace with a bpffs of its own on /sys/fs/bpf, held open
    by a sleeping process: what runs in it (imdsd, the loader, dpkg's
    purge) sees a /sys/fs/bpf/imds that no other test or daemon on this
    machine can touch, and it goes away with the process."""

    def __init__(self):
        script = "mount -t bpf bpf /sys/fs/bpf && echo ready && exec sleep 3600"
        self.proc = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                                     stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if line.strip() != "ready":
            self.close()
            raise AssertionError(f"no private bpffs: {line!r}")
        self.enter = ["nsenter", f"--mount=/proc/{self.proc.pid}/ns/mnt", "--"]

    def close(self):
        self.proc.kill()
        self.proc.wait()


@pytest.fixture
def host_without_imds():
    """The package test installs into this machine and purges: it refuses
    where an operator's imds is (the package, or a hook of another test
    run), moves an existing /var/lib/imds aside for its run and puts it
    back, and works on a private bpffs (PrivateBpffs)."""
    if package_installed():
        pytest.skip("the imds package is installed here: the test would purge it")
    if os.path.lexists(HOOK_PATH):
        pytest.skip(f"{HOOK_PATH} exists (an install or test_libvirt.py running): the package would replace it")
    saved = None
    if os.path.lexists(DEFAULT_KEY_DIR):
        saved = f"{DEFAULT_KEY_DIR}.saved-by-test-{os.getpid()}"
        os.rename(DEFAULT_KEY_DIR, saved)
    bpffs = PrivateBpffs()
    try:
        yield bpffs
    finally:
        if package_installed():
            run([*bpffs.enter, *APT, "purge", "imds"], check=False, timeout=300)
        bpffs.close()
        if saved:
            subprocess.run(["rm", "-rf", DEFAULT_KEY_DIR])
            os.rename(saved, DEFAULT_KEY_DIR)


def assert_units_not_enabled(deb, tmp_path):
    """dh_installsystemd --no-enable handled both units: the postinst enables
    a unit only where it was enabled before (an upgrade), and the start it
    asks for is refused by deb-systemd-invoke for a disabled unit."""
    ctl = str(tmp_path / "control")
    run(["dpkg-deb", "-e", deb, ctl])
    postinst = open(os.path.join(ctl, "postinst")).read()
    for unit in UNITS:
        assert f"if deb-systemd-helper debian-installed '{unit}'" in postinst, f"{unit} enabled at install?\n{postinst}"
        assert re.search(rf"deb-systemd-invoke .*'{unit}'", postinst), f"{unit} not restarted on upgrade\n{postinst}"


def default_file_values(text):
    """KEY=VALUE lines of /etc/default/imds, values unquoted."""
    out = {}
    for m in re.finditer(r"^([A-Z_]+)=(.*)$", text, re.M):
        v = m.group(2)
        out[m.group(1)] = v[1:-1] if len(v) >= 2 and v[0] == v[-1] and v[0] in "\"'" else v
    return out


def unit_exec_start(unit_text, conf_text):
    """A unit's ExecStart= as systemd runs it (systemd.service(5), "Command
    lines"): Environment= then the EnvironmentFile's values; ${VAR} is one
    argument, even empty; $VAR is split at whitespace, into zero or more."""
    env = dict(re.findall(r"^Environment=([A-Z_]+)=(.*)$", unit_text, re.M))
    env.update(default_file_values(conf_text))
    m = re.search(r"^ExecStart=(.+)$", unit_text, re.M)
    assert m and "'" not in m.group(1) and '"' not in m.group(1), "the expansion here handles no quotes"
    argv = []
    for word in m.group(1).split():
        if v := re.fullmatch(r"\$\{([A-Z_]+)\}", word):
            argv.append(env.get(v.group(1), ""))
        elif v := re.fullmatch(r"\$([A-Z_]+)", word):
            argv += env.get(v.group(1), "").split()
        else:
            assert "$" not in word, word
            argv.append(word)
    return argv


def run_unit_command(lab, enter, unit, caps, log, wait=None):
    """The unit's command as the installed /etc/default/imds makes it, under
    the unit's bounding set, on the private bpffs and in the lab's host
    namespace (where the records' port names resolve)."""
    argv = unit_exec_start(open(unit).read(), open("/etc/default/imds").read())
    cmd = [*enter, "nsenter", f"--net=/run/netns/{lab.host_ns}", *setpriv(caps, argv[0]), *argv[1:]]
    env = {k: v for k, v in os.environ.items() if k not in ("IMDS_KEY_DIR", "IMDS_ETCD_PASSWORD")}
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env)
    if wait:
        imdslab.wait_until(f"{wait!r} in the log", lambda: wait in open(log.name).read() or proc.poll() is not None, 30)
    return proc


def check_sync_unit(lab, enter, unit, tmp_path):
    """imds-sync.service without systemd: the installed file as it is, then
    with etcd named in it, then without CAP_BPF."""
    caps = unit_caps(unit)
    assert caps == ["bpf"], caps
    log = open(tmp_path / "sync.log", "w+")
    proc = run_unit_command(lab, enter, unit, caps, log)
    assert proc.wait(30) == 2, open(log.name).read()  # RestartPreventExitStatus=2: not restarted
    assert "--etcd and --prefix are required" in open(log.name).read()

    (tmp_path / "etcd").mkdir()
    etcd = Etcd(tmp_path / "etcd")
    pristine = open("/etc/default/imds").read()
    prefix = "/imds/hosts/pkg-host/vms/"
    rec = dict(vmdata.vm_record(1), **{"meta-data": dict(vmdata.vm_record(1)["meta-data"], hostname="from-etcd")})
    proc = None
    try:
        etcd.start()
        etcd.put(prefix + vmdata.instance_id(1), json.dumps(rec))
        with open("/etc/default/imds", "a") as f:
            f.write(f'IMDS_ETCD_ENDPOINTS="unix:{etcd.socket}"\nIMDS_ETCD_PREFIX="{prefix}"\n'
                    f'IMDS_SYNC_ARGS="--metrics-file {tmp_path}/sync.prom"\n')
        proc = run_unit_command(lab, enter, unit, caps, log, wait="sync: watching")
        assert proc.poll() is None, open(log.name).read()
        r = get(lab.vm_ns(1), "/latest/meta-data/hostname")
        assert (r.status, r.body) == (200, b"from-etcd"), r
        assert "imds_sync_connected 1" in open(tmp_path / "sync.prom").read()
        proc.terminate()
        assert proc.wait(10) == 0, open(log.name).read()

        # The bounding set is what limits it: without CAP_BPF, no store.
        proc = run_unit_command(lab, enter, unit, [], log)
        assert proc.wait(30) == 1 and "cannot open pinned maps" in open(log.name).read()
    finally:
        if proc and proc.poll() is None:
            proc.kill()
            proc.wait()
        etcd.stop()
        open("/etc/default/imds", "w").write(pristine)
        log.close()


def test_deb_installs_serves_and_purges_clean(lab, host_without_imds, tmp_path):
    enter = host_without_imds.enter
    out = make("deb", timeout=900).stdout
    deb = out.strip().splitlines()[-1]
    assert deb == os.path.join(BUILD, "deb", f"imds_{VERSION}_amd64.deb"), out[-2000:]
    assert not re.search(r"^E: ", out, re.M), f"lintian errors:\n{out[-4000:]}"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    run([*APT, "install", deb], timeout=300, env=env)
    contents = [line.split()[5].removeprefix(".") for line in run(["dpkg-deb", "-c", deb]).stdout.splitlines()]
    units = [f"/lib/systemd/system/{u}" for u in UNITS]
    for path in ("/usr/sbin/imdsd", "/usr/sbin/imds-loadmap", *units,
                 "/etc/default/imds", HOOK_PATH, "/usr/share/man/man8/imdsd.8.gz"):
        assert path in contents, f"the package lacks {path}"
    files = [f for f in run(["dpkg-query", "-L", "imds"]).stdout.split() if not os.path.isdir(f)]
    # verify also checks Documentation=man:imdsd(8), unless a dpkg
    # path-exclude (minimal images) kept the man pages out.
    man = [] if os.path.exists("/usr/share/man/man8/imdsd.8.gz") else ["--man=no"]
    for unit in units:
        p = run(["systemd-analyze", "verify", *man, unit], check=False)
        assert p.returncode == 0 and not p.stderr.strip(), f"verify {unit}: {p.returncode}\n{p.stderr}"
    assert_units_not_enabled(deb, tmp_path)
    assert run(["/usr/sbin/imdsd", "--version"]).stdout == f"imdsd {VERSION}\n"
    # The hook as libvirt runs it: a domain without <imds:vm> is left alone.
    p = run([HOOK_PATH, "web1", "prepare", "begin", "-"], check=False, input="<domain><name>web1</name></domain>")
    assert p.returncode == 0, p.stderr

    # Served by the installed programs, with the default pin and key dirs.
    lab.imdsd_prog, lab_pin_dir = ["/usr/sbin/imdsd"], lab.pin_dir
    lab.pin_dir = DEFAULT_PIN_DIR
    try:
        path = lab.write_json("pkg-vms.json", vmdata.dumps([vmdata.vm_record(1)]))
        env_keys = {k: v for k, v in os.environ.items() if k != "IMDS_KEY_DIR"}
        run([*enter, "nsenter", f"--net=/run/netns/{lab.host_ns}", "/usr/sbin/imds-loadmap", "load", path],
            env=env_keys)
        lab.start_imdsd(wrapper=enter)
        assert_served(lab, 1)
        check_sync_unit(lab, enter, "/lib/systemd/system/imds-sync.service", tmp_path)
        assert lab.stop_imdsd() == 0
    finally:
        lab.kill_imdsd()
        lab.imdsd_prog, lab.pin_dir = [imdslab.IMDSD], lab_pin_dir
    state = [DEFAULT_PIN_DIR, DEFAULT_KEY_DIR]
    assert run([*enter, "ls", "-d", *state], check=False).returncode == 0, "the state the purge must remove"

    run([*enter, *APT, "purge", "imds"], timeout=300, env=env)
    assert not package_installed()
    left = [f for f in files if os.path.lexists(f)]
    assert not left, f"purge left {left}"
    for path in (HOOK_PATH, "/etc/default/imds"):
        assert not os.path.lexists(path), f"purge left {path}"
    for path in state:
        assert run([*enter, "test", "-e", path], check=False).returncode == 1, f"purge left {path}"
    assert_ports_clean(lab)

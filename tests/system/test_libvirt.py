"""libvirt hosts (issue 11): a real libvirtd runs the imds hook
(imds-libvirt-hook, docs/libvirt.md) for a QEMU (TCG) domain whose
<metadata> holds an <imds:vm> record, on a bridge imdsd serves.

- Started, the domain is loaded (`imds-loadmap list` shows it) and its guest
  (the e2e busybox guest) fetches a token, its instance-id and user-data
  from 169.254.169.254; when it powers off, it is removed.
- `virsh destroy` removes it; started again, it is served again.
- A domain with an invalid record does not start, and `virsh start` shows
  the loader's error.
- While it runs it is pinned to its vnetN (the hook names the tap as the
  record's port); started again it is pinned to its new tap.
- On an etcd host (IMDS_LIBVIRT_RECORDS=etcd, a real etcd and
  `imds-loadmap sync`): the domain names its VM by instance-id only; the
  hook pins the VM sync loaded to the tap, the pin survives a changed record
  from etcd, the guest is served, and at release the VM is unpinned, not
  deleted (it is etcd's).

The machines have no systemd: the test starts virtlogd and libvirtd itself,
inside the lab's host network namespace (libvirtd creates the taps where it
runs, and they must be ports of the lab's bridge), with pid files of its
own, and stops them by PID.  libvirtd's directories are the system ones (a
privileged libvirtd has no others), so the test refuses to run beside a
libvirtd that already runs, and removes what it made: domains, their logs,
the hook."""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

import imdslab
import vmdata
from etcdlab import Etcd, Sync

sys.path.insert(0, os.path.join(imdslab.ROOT, "tests", "e2e"))
import guests  # noqa: E402

HOOK = os.path.join(imdslab.BUILD, "imds-libvirt-hook")
HOOK_DIR = "/etc/libvirt/hooks/qemu.d"
HOOK_PATH = os.path.join(HOOK_DIR, "imds")
VIRSH = ["virsh", "-c", "qemu:///system"]
QEMU_LOG_DIR = "/var/log/libvirt/qemu"
BOOT_TIMEOUT = guests.BOOT_TIMEOUT
VM = 1


def why_not_runnable():
    for tool in ("libvirtd", "virtlogd", "virsh"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (scripts/install-deps.sh installs libvirt-daemon-system)"
    if shutil.which(guests.QEMU) is None:
        return f"{guests.QEMU} is not installed (scripts/install-deps.sh installs qemu-system-x86)"
    if subprocess.run(["pgrep", "-x", "libvirtd"], capture_output=True).returncode == 0:
        return "a libvirtd already runs on this host: the test needs its own (system paths)"
    if os.path.lexists(HOOK_PATH):
        # An installed package links its hook here: writing through the link
        # would overwrite the packaged program, and the cleanup would remove it.
        return f"{HOOK_PATH} already exists (an installed imds package?): the test does not replace it"
    return None


def virsh(*args, check=True, timeout=120):
    return imdslab.run(VIRSH + list(args), check=check, timeout=timeout)


class Libvirt:
    """virtlogd and libvirtd in the lab's host namespace, and the hook."""

    def __init__(self, lab, workdir):
        self.lab, self.workdir = lab, workdir
        self.pids = {}
        self.domains = []

    def install_hook(self, **settings):
        # libvirt gives hooks a bare environment: the wrapper sets ours.
        env = {"IMDS_CONFIG": "/dev/null", "IMDS_LOADMAP": imdslab.LOADMAP, "IMDS_PIN_DIR": self.lab.pin_dir,
               "IMDS_BRIDGES": self.lab.bridge, "IMDS_KEY_DIR": os.environ.get("IMDS_KEY_DIR", ""), "TMPDIR": self.workdir,
               **settings}
        lines = ["#!/bin/sh", "# imds system test (tests/system/test_libvirt.py); removed at its end"]
        lines += [f"export {k}='{v}'" for k, v in env.items()]
        lines += [f"echo \"$(date +%T.%N) $*\" >> '{self.workdir}/hook-calls.log'", f"exec '{HOOK}' \"$@\""]
        os.makedirs(HOOK_DIR, exist_ok=True)
        with open(HOOK_PATH, "w") as f:
            f.write("\n".join(lines) + "\n")
        os.chmod(HOOK_PATH, 0o755)

    def start_daemon(self, name):
        pid_file = os.path.join(self.workdir, f"{name}.pid")
        self.lab.host(name, "-d", "--pid-file", pid_file)
        with open(pid_file) as f:
            self.pids[name] = int(f.read().strip())

    def start(self):
        # The hook is in place first: libvirtd looks for hooks when it starts.
        self.start_daemon("virtlogd")
        self.start_daemon("libvirtd")
        deadline = time.monotonic() + 30
        while virsh("version", check=False).returncode != 0:
            assert time.monotonic() < deadline, "libvirtd did not answer within 30 s"
            time.sleep(0.2)

    def stop(self):
        for name in ("libvirtd", "virtlogd"):
            pid = self.pids.pop(name, None)
            if pid is not None:
                stop_pid(pid)

    def define(self, name, xml):
        path = os.path.join(self.workdir, f"{name}.xml")
        with open(path, "w") as f:
            f.write(xml)
        self.domains.append(name)
        virsh("define", path)

    def cleanup(self):
        for name in self.domains:
            virsh("destroy", name, check=False)
            virsh("undefine", name, check=False)
            for suffix in (".log", ".log.0"):
                try:
                    os.unlink(os.path.join(QEMU_LOG_DIR, name + suffix))
                except FileNotFoundError:
                    pass

    def state(self, name):
        return virsh("domstate", name).stdout.strip()

    def wait_shut_off(self, name, timeout=BOOT_TIMEOUT):
        deadline = time.monotonic() + timeout
        while self.state(name) != "shut off":
            if time.monotonic() > deadline:
                virsh("destroy", name, check=False)
                raise AssertionError(f"domain {name} still ran after {timeout} s")
            time.sleep(0.5)

    def hook_calls(self):
        path = os.path.join(self.workdir, "hook-calls.log")
        return open(path).read() if os.path.exists(path) else ""


def stop_pid(pid, timeout=15):
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)


def domain_xml(name, record, mac, ipv4, kernel, initramfs, serial):
    """A TCG domain booting the e2e guest, with the record in <imds:vm>;
    the guest's IPv4 on its kernel command line (guest-init.sh).  The
    guest's `poweroff -f` ends the domain only with ACPI."""
    mac_line = f"<mac address='{mac}'/>" if mac else ""
    return f"""<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>192</memory>
  <vcpu>1</vcpu>
  <metadata>
    <imds:vm xmlns:imds="urn:imds:libvirt:v1"><![CDATA[
{json.dumps(record, indent=2)}
    ]]></imds:vm>
  </metadata>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{kernel}</kernel>
    <initrd>{initramfs}</initrd>
    <cmdline>console=ttyS0 panic=-1 e2e_ip={ipv4} e2e_wait=10</cmdline>
  </os>
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <interface type='bridge'>
      {mac_line}
      <source bridge='br-imds'/>
      <model type='virtio'/>
    </interface>
    <serial type='file'><source path='{serial}'/></serial>
  </devices>
  <seclabel type='none' model='dac'/>
</domain>
"""


@pytest.fixture(scope="module")
def env(make_lab):
    why = why_not_runnable() or guests.why_not_runnable()
    if why:
        pytest.skip(why)
    if not os.access(HOOK, os.X_OK):
        pytest.fail(f"{HOOK} is missing: run `make` first", pytrace=False)
    # QEMU runs as libvirt's user (libvirt-qemu) and must reach the kernel:
    # pytest's own temp dirs are private to root.
    work = tempfile.mkdtemp(prefix="imds-libvirt-")
    os.chmod(work, 0o755)
    kernel, initramfs = guests.build_guest()
    for src in (kernel, initramfs):
        shutil.copy(src, work)
    lab = make_lab(0)
    lab.start_imdsd()
    lv = Libvirt(lab, work)
    try:
        lv.install_hook()
        lv.start()
        yield lab, lv, os.path.join(work, os.path.basename(kernel)), os.path.join(work, os.path.basename(initramfs))
    finally:
        try:
            lv.cleanup()
        finally:
            lv.stop()
            if os.path.exists(HOOK_PATH):
                os.unlink(HOOK_PATH)
            shutil.rmtree(work, ignore_errors=True)


def list_rows(lab):
    """`imds-loadmap list` as dicts by column name."""
    p = lab.loadmap("list")
    assert p.returncode == 0, f"list exited {p.returncode}: {p.stderr}"
    lines = [line.split() for line in p.stdout.splitlines() if line.strip()]
    return [dict(zip(lines[0], row)) for row in lines[1:]]


def row_of(lab, instance_id):
    rows = [r for r in list_rows(lab) if r.get("INSTANCE-ID") == instance_id]
    return rows[0] if rows else None


def tap_of(name):
    """The vnetN libvirt gave the domain's interface."""
    p = virsh("domiflist", name)
    taps = [line.split()[0] for line in p.stdout.splitlines() if line.strip().startswith("vnet")]
    assert len(taps) == 1, p.stdout
    return taps[0]


def the_record():
    # mac and port left out: the hook takes them from the domain's
    # <interface> (its MAC, and its tap once libvirt made it)
    rec = vmdata.vm_record(VM, port=False)
    del rec["mac"]
    return rec


@pytest.fixture(scope="module")
def domain(env):
    lab, lv, kernel, initramfs = env
    name = f"imds-test-{lab.suffix}"
    serial = os.path.join(lv.workdir, f"serial-{name}.log")
    lv.define(name, domain_xml(name, the_record(), vmdata.vm_mac(VM), vmdata.vm_ipv4(VM), kernel, initramfs, serial))
    return name, serial


def read_report(serial, name):
    with open(serial, errors="replace") as f:
        return guests.Report(name, f.read(), 0)


def assert_served(report):
    assert not report.errors, report
    assert report.eth0 == (vmdata.vm_mac(VM), vmdata.vm_ipv4(VM)), report
    rc, token = report.token
    assert rc == 0 and len(token) == 56, report
    assert report.bodies.get("instance-id") == (0, vmdata.instance_id(VM).encode()), report
    assert report.bodies.get("user-data") == (0, vmdata.user_data(VM)), report


def test_started_domain_is_loaded_served_and_removed(env, domain):
    lab, lv, _, _ = env
    name, serial = domain
    virsh("start", name)
    # The `started` hook ran before `virsh start` returned.
    row = row_of(lab, vmdata.instance_id(VM))
    assert row is not None, f"not loaded after start; hook calls:\n{lv.hook_calls()}"
    assert row["MAC"] == vmdata.vm_mac(VM) and row["IPV4"] == vmdata.vm_ipv4(VM), row
    assert (row["PORT"], row["BINDING"]) == (tap_of(name), "pinned"), row
    lv.wait_shut_off(name)
    assert_served(read_report(serial, name))
    assert row_of(lab, vmdata.instance_id(VM)) is None, "still loaded after the domain stopped"


def test_destroy_removes_and_a_restart_serves_again(env, domain):
    lab, lv, _, _ = env
    name, serial = domain
    virsh("start", name)
    first_tap = tap_of(name)
    assert row_of(lab, vmdata.instance_id(VM)) is not None
    virsh("destroy", name)
    assert row_of(lab, vmdata.instance_id(VM)) is None, "still loaded after virsh destroy"
    os.unlink(serial)
    virsh("start", name)
    # pinned to the tap of this start (libvirt numbers taps anew: vnetN+1)
    row = row_of(lab, vmdata.instance_id(VM))
    tap = tap_of(name)
    assert row is not None and (row["PORT"], row["BINDING"]) == (tap, "pinned"), (row, first_tap)
    lv.wait_shut_off(name)
    assert_served(read_report(serial, name))


def test_invalid_record_stops_the_start(env):
    lab, lv, kernel, initramfs = env
    name = f"imds-bad-{lab.suffix}"
    rec = the_record()
    rec["options"]["http-tokens"] = "sometimes"
    rec["instance-id"] = "i-0badbadbadbadbad0"
    lv.define(name, domain_xml(name, rec, None, "10.77.0.99", kernel, initramfs, os.path.join(lv.workdir, "bad.log")))
    p = virsh("start", name, check=False)
    assert p.returncode != 0, p.stdout
    assert 'vms[0].options.http-tokens: "sometimes" is not "optional" or "required"' in p.stderr, p.stderr
    assert f"imds hook: domain {name}: not starting" in p.stderr, p.stderr
    assert lv.state(name) == "shut off"
    assert row_of(lab, rec["instance-id"]) is None


def test_sysinfo_block_is_accepted_by_libvirt(env, domain):
    """`imds-loadmap sysinfo` of a loaded VM gives an EC2-looking identity
    (uuid = serial, starting with ec2) that libvirt takes as it is."""
    lab, lv, kernel, initramfs = env
    rec = dict(the_record(), mac=vmdata.vm_mac(VM))
    lab.load([rec], name="sysinfo.json")
    try:
        p = lab.loadmap("sysinfo", rec["instance-id"])
        assert p.returncode == 0, p.stderr
    finally:
        lab.loadmap("delete", rec["instance-id"])
    block = p.stdout
    uuid = block.split("<uuid>")[1].split("</uuid>")[0]
    assert uuid.startswith("ec2") and len(uuid) == 36, block
    assert f"<entry name='serial'>{uuid}</entry>" in block and f"<entry name='uuid'>{uuid}</entry>" in block
    assert "<entry name='manufacturer'>Amazon EC2</entry>" in block
    name = f"imds-smbios-{lab.suffix}"
    xml = domain_xml(name, rec, vmdata.vm_mac(VM), vmdata.vm_ipv4(VM), kernel, initramfs, "/dev/null")
    os_part = "<smbios mode='sysinfo'/>\n  </os>"
    sysinfo = block[block.index("<uuid>"):block.index("</sysinfo>") + len("</sysinfo>")]
    xml = xml.replace("  </os>", "  " + os_part, 1).replace("  <vcpu>", sysinfo + "\n  <vcpu>", 1)
    lv.define(name, xml)
    dumped = virsh("dumpxml", name).stdout
    assert f"<uuid>{uuid}</uuid>" in dumped and f"<entry name='serial'>{uuid}</entry>" in dumped, dumped
    assert "<smbios mode='sysinfo'/>" in dumped, dumped


def test_etcd_host_hook_pins_the_tap_and_sync_keeps_it(env, tmp_path):
    """IMDS_LIBVIRT_RECORDS=etcd: sync loads the VM from etcd, the hook only
    binds it to the tap libvirt made, and unbinds it at release."""
    lab, lv, kernel, initramfs = env
    iid, prefix = vmdata.instance_id(VM), "/imds/hosts/libvirt-lab/vms/"
    rec = vmdata.vm_record(VM, port=False)
    changed = dict(rec, **{"meta-data": dict(rec["meta-data"], hostname="changed-in-etcd")})
    name = f"imds-etcd-{lab.suffix}"
    serial = os.path.join(lv.workdir, f"serial-{name}.log")
    etcd, sync = Etcd(tmp_path), Sync(tmp_path, "libvirt", lab.pin_dir, netns=lab.host_ns)
    try:
        etcd.start()
        etcd.put(prefix + iid, json.dumps(rec))
        sync.start([f"unix:{etcd.socket}"], prefix)
        assert lab.port_binding(iid) == ("-", "unbound")
        lv.install_hook(IMDS_LIBVIRT_RECORDS="etcd")
        lv.define(name, domain_xml(name, {"instance-id": iid}, vmdata.vm_mac(VM), vmdata.vm_ipv4(VM), kernel,
                                   initramfs, serial))
        # A VM etcd does not hold for this host: the hook, run as libvirt runs
        # it at `started`, refuses (libvirtd then stops the domain).
        xml = domain_xml(name, {"instance-id": "i-0e7cabsentabsent0"}, vmdata.vm_mac(VM), vmdata.vm_ipv4(VM),
                         kernel, initramfs, serial).replace("<model type='virtio'/>", "<target dev='vnet99'/>")
        p = imdslab.run([HOOK_PATH, name, "started", "begin", "-"], check=False, input=xml)
        assert p.returncode == 1 and "no VM i-0e7cabsentabsent0 is loaded" in p.stderr, p.stderr
        assert "not starting: the VM cannot be pinned to its tap" in p.stderr, p.stderr

        virsh("start", name)
        tap = tap_of(name)
        assert lab.port_binding(iid) == (tap, "pinned"), lv.hook_calls()
        rev = etcd.put(prefix + iid, json.dumps(changed))
        sync.wait_log(f"watch revision {rev}: 0 added, 1 updated", 5)
        assert lab.port_binding(iid) == (tap, "pinned"), "a changed record from etcd undid the hook's bind"
        lv.wait_shut_off(name)
        assert_served(read_report(serial, name))
        imdslab.wait_until("the release's unbind", lambda: lab.port_binding(iid) == ("-", "unbound"), 5)
    finally:
        lv.install_hook()
        sync.stop()
        etcd.stop()
        lab.loadmap("delete", iid)

"""guests: QEMU guests on TAP devices of a lab's bridge.

A TAP device is created in the lab's host namespace and enslaved to the
bridge imdsd serves, as libvirt does with vnetN; QEMU runs in that namespace
(nsenter --net, so it finds the TAP by name) with a virtio-net NIC on it.
The guest boots the Debian kernel and the initramfs of scripts/e2e-guest.sh,
whose /init (guest-init.sh) fetches its metadata and prints it on the serial
console, which QEMU writes to a file."""

import base64
import os
import shutil
import subprocess
import time

import imdslab

ROOT = imdslab.ROOT
GUEST_SH = os.path.join(ROOT, "scripts", "e2e-guest.sh")
QEMU = "qemu-system-x86_64"
MARK = "IMDS-E2E "
# KVM is used only when asked for: nested KVM in a VM can hang at boot.
ACCEL = os.environ.get("IMDS_E2E_ACCEL", "tcg")
BOOT_TIMEOUT = float(os.environ.get("IMDS_E2E_TIMEOUT", "180"))
# (name, seconds from QEMU's start to its exit) of every guest that finished
TIMINGS = []
# every guest started, for failure reports
STARTED = []


def build_guest():
    """Runs scripts/e2e-guest.sh (cached) and returns (kernel, initramfs)."""
    p = subprocess.run([GUEST_SH], capture_output=True, text=True, timeout=900)
    if p.returncode != 0:
        raise AssertionError(f"{GUEST_SH} exited {p.returncode}:\n{p.stderr}")
    paths = dict(line.split("=", 1) for line in p.stdout.split())
    return paths["E2E_KERNEL"], paths["E2E_INITRAMFS"]


def why_not_runnable():
    if shutil.which(QEMU) is None:
        return f"{QEMU} is not installed (scripts/install-deps.sh installs qemu-system-x86)"
    if not os.path.exists("/dev/net/tun"):
        return "/dev/net/tun is missing: TAP devices cannot be made"
    return None


def add_tap(lab, name):
    """A persistent TAP in the lab's host namespace, a port of its bridge."""
    lab.ip_host("tuntap", "add", "dev", name, "mode", "tap")
    lab.ip_host("link", "set", name, "master", lab.bridge)
    lab.ip_host("link", "set", name, "up")


class Guest:
    """One QEMU guest: started by start(), finished by wait()."""

    def __init__(self, lab, workdir, name, tap, nic_mac, ipv4, spoof_mac=None, wait=10, ipv6=None):
        self.lab, self.name, self.tap, self.ipv6 = lab, name, tap, ipv6
        self.nic_mac, self.ipv4, self.spoof_mac, self.wait_s = nic_mac, ipv4, spoof_mac, wait
        self.serial = os.path.join(str(workdir), f"serial-{name}.log")
        self.proc = None
        self.seconds = None

    def cmdline(self, kernel, initramfs):
        append = f"console=ttyS0 panic=-1 e2e_ip={self.ipv4} e2e_wait={self.wait_s}"
        if self.spoof_mac:
            append += f" e2e_mac={self.spoof_mac}"
        if self.ipv6:
            append += f" e2e_ip6={self.ipv6}"
        return ["nsenter", f"--net=/run/netns/{self.lab.host_ns}", QEMU,
                "-accel", ACCEL, "-m", "192", "-nodefaults", "-no-user-config",
                "-display", "none", "-monitor", "none", "-no-reboot",
                "-kernel", kernel, "-initrd", initramfs, "-append", append,
                "-serial", f"file:{self.serial}",
                "-netdev", f"tap,id=n0,ifname={self.tap},script=no,downscript=no",
                "-device", f"virtio-net-pci,netdev=n0,mac={self.nic_mac}"]

    def start(self, kernel, initramfs):
        STARTED.append(self)
        self.started = time.monotonic()
        self.qemu_log = open(self.serial + ".qemu", "w")
        self.proc = subprocess.Popen(self.cmdline(kernel, initramfs), stdin=subprocess.DEVNULL,
                                     stdout=self.qemu_log, stderr=subprocess.STDOUT)
        return self

    def wait(self, timeout=BOOT_TIMEOUT):
        """Waits for QEMU to exit (the guest powers off); returns the parsed
        report.  A guest still running after `timeout` is killed."""
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"guest {self.name} still ran after {timeout} s; serial:\n{self.tail()}")
        finally:
            self.qemu_log.close()
        self.seconds = time.monotonic() - self.started
        TIMINGS.append((self.name, self.seconds))
        if rc != 0:
            with open(self.serial + ".qemu", errors="replace") as f:
                raise AssertionError(f"QEMU of {self.name} exited {rc}: {f.read()}\nserial:\n{self.tail()}")
        return Report(self.name, self.text(), self.seconds)

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def text(self):
        if not os.path.exists(self.serial):
            return ""
        with open(self.serial, errors="replace") as f:
            return f.read()

    def tail(self, n=4000):
        return self.text()[-n:]


class Report:
    """What guest-init.sh printed: eth0, the token and each fetched body."""

    def __init__(self, name, text, seconds):
        self.name, self.text, self.seconds = name, text, seconds
        self.eth0 = None
        self.notoken = None
        self.token = None  # (rc, bytes)
        self.bodies = {}  # name -> (rc, bytes)
        self.token6 = None  # (rc, bytes), over IPv6 (a dual-stack guest)
        self.bodies6 = {}  # name -> (rc, bytes), over IPv6
        self.errors = []
        lines = [line[line.index(MARK) + len(MARK):].strip() for line in text.splitlines() if MARK in line]
        assert "begin" in lines and "end" in lines, f"guest {name}: no complete report on the console:\n{text[-4000:]}"
        for line in lines[lines.index("begin") + 1:lines.index("end")]:
            self._parse(line.split(" "))

    def _parse(self, f):
        if f[0] == "eth0":
            self.eth0 = (f[1], f[2])
        elif f[0] == "notoken":
            self.notoken = " ".join(f[1:])
        elif f[0] == "token":
            self.token = (int(f[1]), _b64(f, 2))
        elif f[0] == "get":
            self.bodies[f[1]] = (int(f[2]), _b64(f, 3))
        elif f[0] == "token6":
            self.token6 = (int(f[1]), _b64(f, 2))
        elif f[0] == "get6":
            self.bodies6[f[1]] = (int(f[2]), _b64(f, 3))
        elif f[0] == "error":
            self.errors.append(" ".join(f[1:]))

    def all_bytes(self):
        """Every byte the guest received from the metadata service."""
        out = [self.token[1] if self.token else b"", (self.notoken or "").encode(),
               self.token6[1] if self.token6 else b""]
        return b"\n".join(out + [body for _, body in [*self.bodies.values(), *self.bodies6.values()]])

    def __repr__(self):
        return f"<guest {self.name} eth0={self.eth0} token={self.token} bodies={self.bodies} errors={self.errors}>"


def _b64(fields, i):
    return base64.b64decode(fields[i]) if len(fields) > i and fields[i] else b""


def run_guests(guests, kernel, initramfs):
    """Boots every guest at once and returns their reports, in order."""
    try:
        for g in guests:
            g.start(kernel, initramfs)
        return [g.wait() for g in guests]
    finally:
        for g in guests:
            g.kill()

"""System tests: fixtures that build a lab (scripts/lab.sh) with the real
imdsd and imds-loadmap, and always tear it down.

A test that cannot run here (not root, no BTF, no bpffs) is skipped with the
reason; a missing build output is a failure, not a skip (`make` first)."""

import os
import shutil
import subprocess

import pytest

import imdslab

_live_labs = []


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failing test's report carries the tail of each live lab's imdsd log."""
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        for lab in _live_labs:
            rep.sections.append((f"imdsd log, lab {lab.suffix}", lab.log_text()[-6000:]))


def _why_not_runnable():
    if os.geteuid() != 0:
        return "system tests need root (network namespaces, XDP, pinned BPF maps)"
    if not os.path.exists("/sys/kernel/btf/vmlinux"):
        return "the kernel has no BTF (/sys/kernel/btf/vmlinux): the data plane cannot load"
    if subprocess.run(["mountpoint", "-q", "/sys/fs/bpf"]).returncode != 0:
        return "bpffs is not mounted on /sys/fs/bpf (scripts/install-deps.sh mounts it)"
    for tool in ("ip", "nsenter", "curl", "bridge"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (scripts/install-deps.sh installs it)"
    try:
        import scapy  # noqa: F401
    except ImportError:
        return "python3-scapy is not installed for /usr/bin/python3"
    return None


@pytest.fixture(scope="session")
def system_ready(tmp_path_factory):
    # Identity signing keys of this run, never the host's /var/lib/imds.
    os.environ["IMDS_KEY_DIR"] = str(tmp_path_factory.mktemp("identity-keys") / "keys")
    why = _why_not_runnable()
    if why:
        pytest.skip(why)
    for prog in (imdslab.IMDSD, imdslab.LOADMAP):
        if not os.access(prog, os.X_OK):
            pytest.fail(f"{prog} is missing: run `make` first", pytrace=False)


@pytest.fixture(scope="module")
def make_lab(system_ready, tmp_path_factory):
    """Factory: make_lab(n) -> a Lab with VMs 1..n up.  Every lab made is
    torn down when the module ends, whatever happened."""
    labs = []

    def make(n):
        lab = imdslab.Lab(n, tmp_path_factory.mktemp("lab"))
        labs.append(lab)
        _live_labs.append(lab)
        lab.up()
        return lab

    yield make
    for lab in labs:
        _live_labs.remove(lab)
        lab.down()

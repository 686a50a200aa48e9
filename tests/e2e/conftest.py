"""e2e tests: real QEMU guests on TAP devices of a lab's bridge, served by
the real imdsd.  The lab and daemon helpers are the system tests' own
(tests/system/imdslab.py); guests.py adds the guests.

A test that cannot run here (not root, no QEMU, no /dev/net/tun, ...) is
skipped with the reason; a missing build output is a failure (`make`)."""

import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "system"))

import guests  # noqa: E402
import imdslab  # noqa: E402

_live_labs = []


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failing test's report carries the tail of each live lab's imdsd log
    and of every guest's serial console."""
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        for lab in _live_labs:
            rep.sections.append((f"imdsd log, lab {lab.suffix}", lab.log_text()[-6000:]))
        for g in guests.STARTED:
            rep.sections.append((f"console of guest {g.name} ({g.serial})", g.tail(3000)))


def pytest_terminal_summary(terminalreporter):
    """How long each guest ran, QEMU start to power-off (docs/e2e.md)."""
    if guests.TIMINGS:
        terminalreporter.write_line("e2e guests, QEMU start to power-off: " +
                                    ", ".join(f"{n} {s:.1f} s" for n, s in guests.TIMINGS))


@pytest.fixture(scope="session")
def guest_image():
    """(kernel, initramfs) of the guest, built or taken from build/e2e/."""
    if os.geteuid() != 0:
        pytest.skip("e2e tests need root (network namespaces, TAP devices, XDP)")
    why = guests.why_not_runnable()
    if why:
        pytest.skip(why)
    for prog in (imdslab.IMDSD, imdslab.LOADMAP):
        if not os.access(prog, os.X_OK):
            pytest.fail(f"{prog} is missing: run `make` first", pytrace=False)
    return guests.build_guest()


@pytest.fixture(scope="module")
def make_lab(guest_image, tmp_path_factory):
    """Factory: make_lab() -> a Lab with the bridge and no veth VMs (the
    guests bring TAP ports).  Torn down when the module ends, whatever
    happened."""
    labs = []

    def make():
        lab = imdslab.Lab(0, tmp_path_factory.mktemp("e2e"))
        labs.append(lab)
        _live_labs.append(lab)
        lab.up()
        return lab

    yield make
    for lab in labs:
        _live_labs.remove(lab)
        lab.down()

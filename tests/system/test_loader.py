"""Acceptance 5: `imds-loadmap load` of an invalid file fails with a precise
message, FILE:LINE:COL: json.path: message, pointing at the offending value,
and changes nothing: the VMs loaded before are served exactly as before
(even when the bad file also carries an update for one of them).

VMs 1 and 2 are loaded; imdsd runs the whole time."""

import json
import re

import pytest

import vmdata
from imdslab import assert_served
from vmhttp import get

CHANGED_HOST = "must-not-appear.lab.internal"


@pytest.fixture(scope="module")
def lab(make_lab):
    lab = make_lab(2)
    lab.load([vmdata.vm_record(1), vmdata.vm_record(2)])
    lab.start_imdsd()
    assert_served(lab, 1)  # ports learned first: `list` shows them
    assert_served(lab, 2)
    lab.rows_before = lab.list_rows()
    return lab


def position(text, needle, nth=1):
    """1-based (line, column) of the nth occurrence of needle in text."""
    at = -1
    for _ in range(nth):
        at = text.index(needle, at + 1)
    line = text.count("\n", 0, at) + 1
    col = at - (text.rfind("\n", 0, at) + 1) + 1
    return line, col


def with_fields(i, **changes):
    """VM i's record with fields replaced (None removes a field); keys use
    '_' for '-' and 'options__x' for options.x."""
    rec = vmdata.vm_record(i)
    for key, value in changes.items():
        parts = key.replace("_", "-").split("--")
        target = rec
        for p in parts[:-1]:
            target = target[p]
        if value is None:
            del target[parts[-1]]
        else:
            target[parts[-1]] = value
    return rec


def update_of_vm1():
    return vmdata.vm_record(1, host=CHANGED_HOST)


# name -> (records, json path of the culprit, its key, its value as JSON text,
# which occurrence of `"key": value` in the file it is)
CASES = {
    "bad-mac": ([update_of_vm1(), with_fields(5, mac="52:54:00:zz:00:05")],
                "vms[1].mac", "mac", '"52:54:00:zz:00:05"', 1),
    "duplicate-instance-id": ([with_fields(5), with_fields(6, instance_id=vmdata.instance_id(5))],
                              "vms[1].instance-id", "instance-id", json.dumps(vmdata.instance_id(5)), 2),
    "duplicate-mac": ([update_of_vm1(), with_fields(5), with_fields(6, mac=vmdata.vm_mac(5))],
                      "vms[2].mac", "mac", json.dumps(vmdata.vm_mac(5)), 2),
    "mac-of-a-loaded-vm": ([with_fields(5, mac=vmdata.vm_mac(2))],
                           "vms[0].mac", "mac", json.dumps(vmdata.vm_mac(2)), 1),
    "ipv4-of-a-loaded-vm": ([with_fields(5, ipv4=vmdata.vm_ipv4(2))],
                            "vms[0].ipv4", "ipv4", json.dumps(vmdata.vm_ipv4(2)), 1),
    "bad-ipv4": ([update_of_vm1(), with_fields(5, ipv4="10.77.0.300")],
                 "vms[1].ipv4", "ipv4", '"10.77.0.300"', 1),
    "hop-limit-out-of-range": ([with_fields(5, options__hop_limit=65)],
                               "vms[0].options.hop-limit", "hop-limit", "65", 1),
    "bad-http-tokens": ([with_fields(5, options__http_tokens="sometimes")],
                        "vms[0].options.http-tokens", "http-tokens", '"sometimes"', 1),
    "user-data-too-large": ([with_fields(5, user_data="x" * 16385)],
                            "vms[0].user-data", "user-data", json.dumps("x" * 16385), 1),
}


def value_position(text, key, value_json, nth):
    """(line, column) of the value in the nth `"key": value` of text."""
    member = f'"{key}": {value_json}'
    line, col = position(text, member, nth)
    return line, col + len(f'"{key}": ')


def vm_object_position(text, index):
    """(line, column) of the '{' opening vms[index] in vmdata.dumps output."""
    starts = [n + 1 for n, s in enumerate(text.split("\n")) if s == "    {"]
    return starts[index], 5


def assert_nothing_changed(lab):
    assert lab.list_rows() == lab.rows_before
    assert_served(lab, 1)
    assert_served(lab, 2)


def first_error_line(p):
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    assert lines, f"no message on stderr (stdout: {p.stdout!r})"
    return lines[0]


@pytest.mark.parametrize("case", list(CASES))
def test_invalid_file_is_rejected_precisely_and_changes_nothing(lab, case):
    records, jpath, key, value_json, nth = CASES[case]
    text = vmdata.dumps(records)
    path = lab.write_json(f"{case}.json", text)
    p = lab.loadmap("load", path)
    assert p.returncode == 1, (p.returncode, p.stderr)
    line, col = value_position(text, key, value_json, nth)
    want = f"{path}:{line}:{col}: {jpath}: "
    msg = first_error_line(p)
    assert msg.startswith(want), f"want a message starting {want!r}, got {msg!r}"
    assert len(msg) > len(want) + 5, f"no explanation in {msg!r}"
    assert_nothing_changed(lab)


@pytest.mark.parametrize("missing", ["instance-id", "mac", "ipv4"])
def test_missing_field_is_rejected_precisely(lab, missing):
    records = [update_of_vm1(), with_fields(5, **{missing.replace("-", "_"): None})]
    text = vmdata.dumps(records)
    path = lab.write_json(f"missing-{missing}.json", text)
    p = lab.loadmap("load", path)
    assert p.returncode == 1, (p.returncode, p.stderr)
    msg = first_error_line(p)
    # The field does not exist, so the message points at the object that
    # lacks it: vms[1], whose '{' is the second VM object of the file.
    m = re.match(re.escape(path) + r":(\d+):(\d+): (vms\[1\](?:\.[a-z-]+)?): (.*)", msg)
    assert m, f"not FILE:LINE:COL: vms[1]...: message: {msg!r}"
    line, col = int(m.group(1)), int(m.group(2))
    obj_line, obj_col = vm_object_position(text, 1)
    assert (line, col) == (obj_line, obj_col), f"{msg!r}: want {obj_line}:{obj_col} (the '{{' of vms[1])"
    assert missing in msg, f"the message does not name {missing}: {msg!r}"
    assert_nothing_changed(lab)


def break_json(text, breakage):
    """Breaks valid JSON text; returns the broken text and where a parser
    must stop: (line, first column, last column) of the offending token."""
    lines = text.split("\n")
    if breakage == "missing-comma":
        k = next(n for n, s in enumerate(lines) if '"mac":' in s)
        lines[k] = lines[k].rstrip(",")
        token = lines[k + 1].index('"ipv4"') + 1  # the next member, unexpected
        return "\n".join(lines), (k + 2, token, token + len('"ipv4"') - 1)
    if breakage == "unterminated-string":
        k = next(n for n, s in enumerate(lines) if '"ipv4":' in s)
        lines[k] = lines[k].rstrip(",").rstrip('"')
        start = lines[k].index('"10.77') + 1  # the string runs into the newline
        return "\n".join(lines), (k + 1, start, len(lines[k]) + 1)
    lines[-1:] = ["}", ""]  # trailing garbage after the document
    return "\n".join(lines), (len(lines) - 1, 1, 1)


@pytest.mark.parametrize("breakage", ["missing-comma", "unterminated-string", "trailing-garbage"])
def test_malformed_json_is_rejected_with_its_position(lab, breakage):
    text, (want_line, col_lo, col_hi) = break_json(vmdata.dumps([update_of_vm1()]), breakage)
    path = lab.write_json(f"{breakage}.json", text)
    p = lab.loadmap("load", path)
    assert p.returncode == 1, (p.returncode, p.stderr)
    msg = first_error_line(p)
    m = re.match(re.escape(path) + r":(\d+):(\d+): (.+)", msg)
    assert m, f"not FILE:LINE:COL: message: {msg!r}"
    line, col = int(m.group(1)), int(m.group(2))
    assert line == want_line and col_lo <= col <= col_hi, \
        f"{msg!r}: want line {want_line}, column {col_lo}..{col_hi} (the offending token)"
    assert_nothing_changed(lab)


def test_empty_file_and_missing_file(lab):
    path = lab.write_json("empty.json", "")
    p = lab.loadmap("load", path)
    assert p.returncode == 1 and path in first_error_line(p), p.stderr
    p = lab.loadmap("load", "/nonexistent/vms.json")
    assert p.returncode == 1 and "/nonexistent/vms.json" in first_error_line(p), p.stderr
    assert_nothing_changed(lab)


def test_usage_errors_exit_2(lab):
    assert lab.loadmap().returncode == 2
    assert lab.loadmap("frobnicate").returncode == 2
    assert lab.loadmap("load").returncode == 2


def test_a_valid_file_after_the_failures_loads(lab):
    try:
        lab.load([update_of_vm1()], name="good-update.json")
        r = get(lab.vm_ns(1), "/latest/meta-data/hostname")
        assert (r.status, r.body) == (200, CHANGED_HOST.encode())
    finally:
        lab.load([vmdata.vm_record(1)], name="restore.json")
    assert_served(lab, 1)

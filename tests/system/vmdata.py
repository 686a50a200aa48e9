"""vmdata: the VM descriptions the system tests load, and what each VM must
then be served.  Every value differs between VMs (and none is a substring of
another VM's), so a body can be checked both exactly and for leaks."""

import base64
import json


def vm_mac(i):
    return "52:54:00:77:00:%02x" % i


def vm_ipv4(i):
    return f"10.77.0.{10 + i}"


def instance_id(i):
    return "i-0a77%013x" % (0xC0FFEE000 + i * 0x1111)


def hostname(i):
    return f"vm{i:02d}-host.lab.internal"


def key_name(i):
    return f"lab-key-{i:02d}"


def openssh_key(i):
    blob = base64.b64encode(f"not-a-real-key-for-vm-{i:02d}".encode() * 2).decode()
    return f"ssh-ed25519 {blob} operator{i:02d}@lab"


def user_data(i):
    """Raw bytes of VM i's user-data.  Every third VM has binary user-data
    (a NUL, bytes >= 0x80, CRLF), given to the loader as user-data-base64."""
    text = f"#cloud-config\nhostname: vm{i:02d}\nruncmd:\n  - echo user-data-of-vm-{i:02d}\n"
    if i % 3 == 0:
        return text.encode() + b"\x00\xff\xfe\r\nbinary-tail-" + bytes([i])
    return text.encode()


def vm_port(i):
    """The host end of VM i's veth in the lab (scripts/lab.sh)."""
    return f"vm{i}"


def vm_record(i, tokens="optional", hop_limit=1, host=None, port=True):
    """VM i's description, pinned to its lab port unless port is False."""
    rec = {
        "instance-id": instance_id(i),
        "mac": vm_mac(i),
        "ipv4": vm_ipv4(i),
        "options": {"http-tokens": tokens, "hop-limit": hop_limit},
        "meta-data": {
            "hostname": host or hostname(i),
            "local-ipv4": vm_ipv4(i),
            "placement": {"availability-zone": "lab-1a"},
        },
        "public-keys": [{"name": key_name(i), "openssh-key": openssh_key(i)}],
    }
    if port:
        rec["port"] = vm_port(i)
    raw = user_data(i)
    if i % 3 == 0:
        rec["user-data-base64"] = base64.b64encode(raw).decode()
    else:
        rec["user-data"] = raw.decode()
    return rec


def document(records):
    return {"vms": records}


def dumps(records):
    """Pretty JSON, one key per line, so error positions are easy to find."""
    return json.dumps(document(records), indent=2) + "\n"


def expected_paths(i, prefix="/latest"):
    """path -> exact body VM i must get."""
    return {
        f"{prefix}/meta-data/instance-id": instance_id(i).encode(),
        f"{prefix}/meta-data/hostname": hostname(i).encode(),
        f"{prefix}/meta-data/public-keys/": f"0={key_name(i)}".encode(),
        f"{prefix}/meta-data/public-keys/0/openssh-key": openssh_key(i).encode(),
        f"{prefix}/user-data": user_data(i),
    }


def identifying_strings(i):
    """Byte strings that only VM i's data contains."""
    return [instance_id(i).encode(), hostname(i).encode(), key_name(i).encode(),
            openssh_key(i).split()[1].encode(), f"user-data-of-vm-{i:02d}".encode()]


def assert_no_leak(i, body, vms, where=""):
    """Fails if `body` (bytes), received by VM i, holds another VM's data."""
    for j in vms:
        if j == i:
            continue
        for s in identifying_strings(j):
            assert s not in body, f"vm{i} got vm{j}'s {s!r} {where}: {body[:200]!r}"

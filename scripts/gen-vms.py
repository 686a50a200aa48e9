#!/usr/bin/python3
"""gen-vms.py: VM descriptions for N VMs of a lab (scripts/lab.sh), for
imds-loadmap and imds-storm.

VM I (1..N) gets the lab's MAC 52:54:00:77:HH:LL (I = 0xHHLL) and IPv4
10.77.B.(10+K), B = (I-1) // 244, K = (I-1) % 244 + 1 (scripts/lab.sh's
address plan: VMs 1..244 are 10.77.0.11-254), is pinned to the lab's port
of VM I, the host end of its veth, vmI (docs/vm-schema.md, "port"), and has
EC2-like meta-data rich enough that a cloud-init crawl of it makes
about 45 requests (nested directories, multi-valued leaves, a public key,
user-data).  Every identifying value differs between VMs, so a body served
to the wrong VM is caught.

--swap I,J writes the file with VM I's and VM J's identities (instance-id,
hostname, key, user-data) exchanged while their MACs, IPv4s and ports stay: loaded
into the store, it is a deliberately mis-loaded host, which imds-storm, given
the correct file, must report as wrong-data.

--bench gives every VM limits far above what a storm asks for (packet
budget, request budget, connection cap), so a benchmark measures the server
and not the limits; --default-limits I,J,... leaves those VMs on the
defaults (the flooding VM of scripts/bench-flood.sh).

usage: gen-vms.py N [-o FILE] [--tokens optional|required] [--swap I,J]
                  [--bench [--default-limits I,...]]
"""

import argparse
import json
import sys


MAX_VMS = 4000  # scripts/lab.sh's LAB_MAX_VM

# --bench: limits a storm never reaches.  A crawl from 1,000 VMs sends
# each VM's 43 requests within a second or two, every one a new connection
# in conn mode (about 6 packets each); steady mode keeps going for seconds.
BENCH_OPTIONS = {
    "rate-pps": 1000000,
    "rate-burst": 1000000,
    "request-rate": 1000000,
    "request-burst": 1000000,
    "max-connections": 4096,
}


def lab_mac(i):
    return "52:54:00:77:%02x:%02x" % (i >> 8, i & 0xFF)


def lab_ipv4(i):
    return f"10.77.{(i - 1) // 244}.{10 + (i - 1) % 244 + 1}"


def lab_port(i):
    return f"vm{i}"


def identity(i):
    """What names VM i, apart from its addresses."""
    return {
        "instance-id": "i-0a77%013x" % (0xC0FFEE000 + i * 0x1111),
        "hostname": f"vm{i:03d}-host.lab.internal",
        "key": f"storm-key-{i:03d}",
        "openssh-key": f"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAstorm{i:05d} operator@vm{i:03d}",
        "user-data": f"#cloud-config\nhostname: vm{i:03d}\nruncmd:\n  - echo user-data-of-vm-{i:03d}\n",
    }


def meta_data(i, ident):
    return {
        "ami-id": "ami-0%016x" % (0xA000 + i),
        "ami-launch-index": "0",
        "ami-manifest-path": "(unknown)",
        "hostname": ident["hostname"],
        "local-hostname": ident["hostname"],
        "instance-type": "m5.large",
        "instance-action": "none",
        "profile": "default-hvm",
        "reservation-id": "r-0%016x" % (0xB000 + i),
        "security-groups": ["default", f"storm-sg-{i:03d}"],
        "block-device-mapping": {"ami": "/dev/vda", "root": "/dev/vda", "ephemeral0": "sdb"},
        "placement": {"availability-zone": "lab-1a", "availability-zone-id": "lab1-az1"},
        "services": {"domain": "amazonaws.com", "partition": "aws"},
        "events": {"maintenance": {"history": "[]", "scheduled": "[]"}},
    }


def vm_record(i, ident, tokens, bench):
    options = {"http-tokens": tokens, "hop-limit": 1}
    if bench:
        options.update(BENCH_OPTIONS)
    return {
        "instance-id": ident["instance-id"],
        "mac": lab_mac(i),
        "ipv4": lab_ipv4(i),
        "port": lab_port(i),
        "options": options,
        "meta-data": meta_data(i, ident),
        "public-keys": [{"name": ident["key"], "openssh-key": ident["openssh-key"]}],
        "user-data": ident["user-data"],
    }


def main():
    ap = argparse.ArgumentParser(description="VM descriptions for a lab of N VMs")
    ap.add_argument("n", type=int, help=f"number of VMs (1..{MAX_VMS}, the lab's limit)")
    ap.add_argument("-o", "--output", help="file to write (default stdout)")
    ap.add_argument("--tokens", choices=["optional", "required"], default="optional")
    ap.add_argument("--swap", help="I,J: exchange the identities of VMs I and J (a mis-loaded store)")
    ap.add_argument("--bench", action="store_true", help="limits far above a storm's needs (benchmarks)")
    ap.add_argument("--default-limits", default="", help="I,J,...: with --bench, VMs left on the default limits")
    a = ap.parse_args()
    if not 1 <= a.n <= MAX_VMS:
        ap.error(f"N must be in 1..{MAX_VMS}")
    try:
        plain = {int(x) for x in a.default_limits.split(",") if x}
    except ValueError:
        ap.error(f"--default-limits: '{a.default_limits}' is not a list of VM numbers")
    idents = {i: identity(i) for i in range(1, a.n + 1)}
    if a.swap:
        i, j = (int(x) for x in a.swap.split(","))
        if i not in idents or j not in idents or i == j:
            ap.error("--swap needs two different VMs of 1..N")
        idents[i], idents[j] = idents[j], idents[i]
    doc = {"vms": [vm_record(i, idents[i], a.tokens, a.bench and i not in plain) for i in range(1, a.n + 1)]}
    text = json.dumps(doc, indent=2) + "\n"
    if a.output:
        with open(a.output, "w") as f:
            f.write(text)
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    main()

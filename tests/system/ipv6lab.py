"""ipv6lab.py: IPv6 in the lab for the IPv6 tests (test_ipv6*.py;
docs/ipv6.md).  The lab switches IPv6 off in its VMs; these helpers give a
VM its address in 2001:db8:77::/64 (the bridge is 2001:db8:77::1/64) and
the on-link route to fd00:ec2::254 that docs/ipv6.md tells guests to add,
and load records that carry "ipv6"."""

import base64

import vmdata

IMDS6 = "fd00:ec2::254"
HOST6 = "2001:db8:77::1"
CTR6 = "2001:db8:88::"  # a container link inside a VM


def ipv6_of(i):
    return f"2001:db8:77::{10 + i}"


def region(i):
    return f"lab-{i}"


def credentials(i):
    return {"access-key-id": f"ASIALAB6000000000{i:03d}", "secret-access-key": f"lab/v6/secret/{i:02d}",
            "token": base64.b64encode(f"v6-session-{i:02d}".encode()).decode(),
            "expiration": "2099-01-01T00:00:00Z"}


def record(i, hop_limit=1):
    """vmdata's record of VM i with its IPv6, a zone and a role."""
    rec = vmdata.vm_record(i, hop_limit=hop_limit)
    rec["ipv6"] = [ipv6_of(i)]
    rec["meta-data"]["placement"] = {"availability-zone": region(i) + "b"}
    rec["iam"] = {"role": f"lab-v6-role-{i:02d}",
                  "instance-profile-arn": f"arn:aws:iam::123456789012:instance-profile/lab-v6-role-{i:02d}",
                  "credentials": credentials(i)}
    return rec


def enable_ipv6(lab, i, ipv4=True):
    """IPv6 on VM i's eth0, its address and the on-link route to the
    service; without ipv4, no IPv4 address at all."""
    lab.in_vm(i, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=0", "net.ipv6.conf.eth0.disable_ipv6=0",
              "net.ipv6.conf.all.accept_ra=0", "net.ipv6.conf.eth0.accept_ra=0")
    lab.ip_vm(i, "-6", "addr", "add", f"{ipv6_of(i)}/64", "dev", "eth0", "nodad")
    lab.ip_vm(i, "-6", "route", "add", IMDS6, "dev", "eth0")
    if not ipv4:
        lab.ip_vm(i, "-4", "addr", "flush", "dev", "eth0")


def curl6(lab, i, path, *args, token=None, timeout=10):
    """curl in VM i to http://[fd00:ec2::254]PATH: (exit code, body)."""
    cmd = ["curl", "-sS", "-g", "--max-time", str(timeout), *args]
    if token:
        cmd += ["-H", f"X-aws-ec2-metadata-token: {token}"]
    p = lab.in_vm(i, *cmd, f"http://[{IMDS6}]{path}", check=False, timeout=timeout + 20)
    return p.returncode, p.stdout

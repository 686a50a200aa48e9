#!/usr/bin/python3
"""Runs cloud-init's own EC2 datasource crawl (Debian's cloud-init, from
/usr/bin/python3) and prints what it got as one JSON object.

Meant to run inside a VM's network namespace (nsenter --net=...), where
169.254.169.254 is imdsd.  Everything cloud-init does on the wire is its own
code: wait_for_metadata_service, the token PUT, the version probe, the
meta-data walk, user-data and the identity document.  Two things are set
from outside, because a namespace is not a guest:

- the platform check: cloud-init decides between IMDSv2 and IMDSv1 from the
  guest's DMI (identify_platform).  --platform aws makes it take the AWS
  path (token PUT, tokens on every GET, identity document), --platform
  unknown the path of any other guest (no token, IMDSv1 only).
- DNS: is_resolvable_url first resolves made-up names to detect DNS
  redirection.  The namespace has no resolver, so that cache is set empty
  instead of sending queries to the machine's resolver.

Every HTTP request is recorded where requests sends it (method, URL,
whether a token header went along, status), so the caller can check the
IMDS version cloud-init really used.

Modes:
  crawl         get_data(), as cloud-init does at boot
  stale-token   crawl, then replace the cached token with one the server
                never issued and fetch user-data again with cloud-init's
                refresh callback: it must see 401, PUT again and succeed
"""

import argparse
import base64
import json
import logging
import sys
import tempfile

import requests

from cloudinit import distros, helpers, util
from cloudinit import log as cilog
from cloudinit.sources import DataSourceEc2 as ds_ec2
from cloudinit.sources.helpers import ec2 as ec2_helper

TOKEN_HEADER = "X-aws-ec2-metadata-token"

wire = []


def record_requests():
    real_send = requests.Session.send

    def send(self, request, **kw):
        entry = {"method": request.method, "url": request.url,
                 "token": TOKEN_HEADER in request.headers, "status": None}
        wire.append(entry)
        resp = real_send(self, request, **kw)
        entry["status"] = resp.status_code
        return resp

    requests.Session.send = send


def make_datasource(platform, url, max_wait, workdir):
    class Ec2OnPlatform(ds_ec2.DataSourceEc2):
        def _get_cloud_name(self):
            return platform

    sys_cfg = {"datasource": {"Ec2": {"metadata_urls": [url], "max_wait": max_wait, "timeout": 5}}}
    paths = helpers.Paths({"cloud_dir": f"{workdir}/cloud", "run_dir": f"{workdir}/run"})
    distro = distros.fetch("debian")("debian", {}, paths)
    return Ec2OnPlatform(sys_cfg, distro, paths)


def as_b64(data):
    if data is None:
        return None
    if isinstance(data, str):
        data = data.encode()
    return base64.b64encode(data).decode()


def guest_network_config(ds, mac):
    """cloud-init's network config (v2) from the crawled network/ tree, for
    a guest whose eth0 has `mac`.  The guest's interfaces are given rather
    than read from /sys/class/net, which under nsenter --net still shows
    the machine's own namespace."""
    if not mac or not isinstance(ds.metadata.get("network"), dict):
        return None
    return ds_ec2.convert_ec2_metadata_network_config(
        ds.metadata["network"], macs_to_nics={mac: "eth0"}, fallback_nic="eth0")


def refetch_user_data_with_stale_token(ds):
    ds._api_token = "AQAEAbogus-token-the-server-never-issued-0000000000000=="
    before = len(wire)
    data = ec2_helper.get_instance_userdata(
        ds._crawled_metadata["_metadata_api_version"], ds.metadata_address,
        headers_cb=ds._get_headers, headers_redact=ds_ec2.AWS_TOKEN_REDACT,
        exception_cb=ds._skip_or_refresh_stale_aws_token_cb)
    return {"user_data_b64": as_b64(data), "requests": wire[before:]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--platform", choices=["aws", "unknown"], required=True)
    ap.add_argument("--url", default="http://169.254.169.254")
    ap.add_argument("--max-wait", type=int, default=20)
    ap.add_argument("--mode", choices=["crawl", "stale-token"], default="crawl")
    ap.add_argument("--mac", help="the guest's eth0 MAC, for the network config")
    args = ap.parse_args()

    cilog.setupBasicLogging(logging.DEBUG)
    util._DNS_REDIRECT_IP = set()
    record_requests()

    with tempfile.TemporaryDirectory(prefix="imds-cloudinit-") as workdir:
        ds = make_datasource(args.platform, args.url, args.max_wait, workdir)
        ok = ds.get_data()
        out = {"ok": ok, "cloud_name": ds.cloud_name, "requests": list(wire)}
        if ok:
            crawled = ds._crawled_metadata
            out.update({
                "api_version": crawled.get("_metadata_api_version"),
                "metadata_address": ds.metadata_address,
                "meta_data": ds.metadata,
                "user_data_b64": as_b64(ds.get_userdata_raw()),
                "dynamic": crawled.get("dynamic"),
                "identity": ds.identity,
                "public_keys": ds.get_public_ssh_keys(),
                "instance_id": ds.get_instance_id(),
                "availability_zone": ds.availability_zone,
                "region": ds.region,
                "hostname": ds.get_hostname().hostname,
                "network_config": guest_network_config(ds, args.mac),
            })
            if args.mode == "stale-token":
                out["refetch"] = refetch_user_data_with_stale_token(ds)
    json.dump(out, sys.stdout, indent=1, default=repr)
    print()


if __name__ == "__main__":
    main()

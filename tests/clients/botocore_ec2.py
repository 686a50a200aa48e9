#!/usr/bin/python3
"""Runs botocore's own IMDS clients (Debian's python3-botocore) and prints
what they got as one JSON object.  Meant to run inside a VM's network
namespace, where 169.254.169.254 is imdsd; botocore's default endpoint is
used unchanged.

- InstanceMetadataFetcher.retrieve_iam_role_credentials(): token PUT, role
  name from iam/security-credentials/, then the role's credentials JSON.
- InstanceMetadataProvider.load(): what a botocore session gets from the
  same fetcher (RefreshableCredentials, frozen here).
- InstanceMetadataRegionFetcher.retrieve_region(): placement/
  availability-zone/ (a leaf with a trailing slash) minus its last letter.

--endpoint-mode ipv6 gives the fetchers botocore's
ec2_metadata_service_endpoint_mode setting (what a session passes them from
AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE or the config file): the base URL is
then http://[fd00:ec2::254]/.

--timeout raises botocore's 1 s default (metadata_service_timeout), so a
busy test machine does not turn a slow answer into "no credentials".
"""

import argparse
import json
import logging
import sys

from botocore.credentials import InstanceMetadataProvider
from botocore.utils import InstanceMetadataFetcher, InstanceMetadataRegionFetcher


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--timeout", type=float, default=5.0)
    ap.add_argument("--endpoint-mode", choices=["ipv4", "ipv6"], default=None)
    args = ap.parse_args()
    config = {"ec2_metadata_service_endpoint_mode": args.endpoint_mode} if args.endpoint_mode else None
    logging.basicConfig(stream=sys.stderr, level=logging.DEBUG)

    out = {}
    fetcher = InstanceMetadataFetcher(timeout=args.timeout, num_attempts=1, config=config)
    out["credentials"] = fetcher.retrieve_iam_role_credentials()

    provider = InstanceMetadataProvider(
        iam_role_fetcher=InstanceMetadataFetcher(timeout=args.timeout, num_attempts=1, config=config))
    creds = provider.load()
    if creds is None:
        out["provider"] = None
    else:
        frozen = creds.get_frozen_credentials()
        out["provider"] = {"method": creds.method, "access_key": frozen.access_key,
                           "secret_key": frozen.secret_key, "token": frozen.token}

    region = InstanceMetadataRegionFetcher(timeout=args.timeout, num_attempts=1, config=config)
    out["region"] = region.retrieve_region()
    json.dump(out, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()

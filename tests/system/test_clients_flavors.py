"""Acceptance 1, the other flavors: real clients, run from inside a VM's
network namespace against imdsd through the bridge path, each get exactly
what the VM was loaded with.

- cloud-init's OpenStack datasource (DataSourceOpenStack.get_data: the
  wait for /openstack, the version pick, meta_data.json, user_data, vendor
  data, network_data through helpers.openstack.MetadataReader, and its
  tokenless EC2 crawl of 169.254.169.254), then its network_data.json
  converter;
- cloud-init's GCE datasource (DataSourceGCE.get_data and read_md: id,
  zone, hostname, recursive instance and project attributes, SSH keys and
  user data);
- npm gcp-metadata (isAvailable, instance and project values, recursive
  attributes, the token), installed by scripts/install-npm-clients.sh into
  build/clients; skipped with the reason when it is not installed (CI has no
  npm registry).

The client code is Debian's cloud-init and the npm package as installed;
the drivers below only call it and print what it returned as JSON.  Only
cloud-init's platform checks are bypassed (a namespace has no OpenStack or
Google DMI)."""

import base64
import json
import os
import shutil
import subprocess

import pytest

import imdslab
import vmdata

NODE_MODULES = os.path.join(imdslab.BUILD, "clients", "node_modules")
GCP_METADATA = os.path.join(NODE_MODULES, "gcp-metadata")
VMS = [1, 2, 3]  # VM 3 has binary user-data (vmdata)

CLOUDINIT_DRIVER = r'''
import base64, json, sys, tempfile
import requests
from cloudinit import distros, helpers, util
from cloudinit.sources import DataSourceGCE as ds_gce
from cloudinit.sources import DataSourceOpenStack as ds_os
from cloudinit.sources.helpers import openstack

# A namespace is not a guest: no DMI saying OpenStack or Google (the
# platform checks are bypassed), and no resolver (cloud-init's DNS-redirect
# probe would resolve made-up names through the machine's resolver).
ds_os.detect_openstack = lambda accept_oracle=False: True
ds_gce.platform_reports_gce = lambda: True
util._DNS_REDIRECT_IP = set()

wire = []
real_send = requests.Session.send


def send(self, request, **kw):
    entry = {"method": request.method, "url": request.url,
             "flavor": request.headers.get("Metadata-Flavor"), "status": None}
    wire.append(entry)
    resp = real_send(self, request, **kw)
    entry["status"] = resp.status_code
    return resp


requests.Session.send = send


def b64(data):
    if isinstance(data, str):
        data = data.encode()
    return base64.b64encode(data).decode() if data is not None else None


mode, mac, user = sys.argv[1], sys.argv[2], sys.argv[3]
out = {}
with tempfile.TemporaryDirectory(prefix="h3-cloudinit-") as workdir:
    paths = helpers.Paths({"cloud_dir": workdir + "/cloud", "run_dir": workdir + "/run"})
    distro = distros.fetch("debian")("debian", {"default_user": {"name": user}}, paths)
    if mode == "openstack":
        sys_cfg = {"datasource_list": ["OpenStack"],
                   "datasource": {"OpenStack": {"metadata_urls": ["http://169.254.169.254"],
                                                "max_wait": 10, "timeout": 5, "retries": 0}}}
        ds = ds_os.DataSourceOpenStack(sys_cfg, distro, paths)
        out["ok"] = ds.get_data()
        out["metadata_address"] = ds.metadata_address
        out["version"] = ds.version
        out["metadata"] = ds.metadata
        out["vendordata"] = ds.vendordata_pure
        out["vendordata2"] = ds.vendordata2_pure
        out["networkdata"] = ds.network_json
        # Guest NICs are given: /sys/class/net under nsenter --net is the machine's.
        out["net_config"] = openstack.convert_net_json(ds.network_json, known_macs={mac: "eth0"})
        out["ec2_instance_id"] = (ds.ec2_metadata or {}).get("instance-id")
    else:
        sys_cfg = {"users": ["default"],  # as Debian's cloud.cfg: the distro's default user
                   "datasource": {"GCE": {"metadata_url": "http://169.254.169.254/computeMetadata/v1/",
                                          "max_wait": 10, "timeout": 5, "retries": 0}}}
        ds = ds_gce.DataSourceGCE(sys_cfg, distro, paths)
        out["ok"] = ds.get_data()
        out["metadata"] = ds.metadata
        out["region"] = ds.region
    out["instance_id"] = ds.get_instance_id()
    out["hostname"] = ds.get_hostname().hostname
    out["public_keys"] = ds.get_public_ssh_keys()
    out["availability_zone"] = ds.availability_zone
    out["userdata"] = b64(ds.get_userdata_raw())
out["wire"] = wire
print(json.dumps(out, default=repr))
'''

GCP_DRIVER = r'''
const gcp = require(process.argv[2]);
(async () => {
  const out = {};
  out.available = await gcp.isAvailable();
  out.name = String(await gcp.instance('name'));
  out.id = String(await gcp.instance('id'));
  out.hostname = String(await gcp.instance('hostname'));
  out.zone = String(await gcp.instance('zone'));
  out.attributes = await gcp.instance({property: 'attributes/', params: {recursive: true}});
  out.projectId = String(await gcp.project('project-id'));
  out.numericProjectId = String(await gcp.project('numeric-project-id'));
  out.email = String(await gcp.instance('service-accounts/default/email'));
  out.token = await gcp.instance('service-accounts/default/token');
  out.mac = String(await gcp.instance('network-interfaces/0/mac'));
  console.log(JSON.stringify(out));
})().catch((e) => { console.error(e && e.stack ? e.stack : e); process.exit(1); });
'''


def flavor_record(i):
    rec = vmdata.vm_record(i)
    rec["name"] = f"vm{i:02d}-name"
    rec["tags"] = {"vm": str(i)}  # cloud-init sees them in OpenStack's meta
    rec["openstack"] = {"uuid": f"1111111{i}-2222-4333-8444-555555555555", "project-id": f"proj{i:02d}",
                        "meta": {"dsmode": "net"},
                        "vendor-data": {"cloud-init": f"#cloud-config\nvendor: vm{i:02d}\n"},
                        "vendor-data2": [f"vendor2-{i}"]}
    rec["gce"] = {"id": 7000 + i, "project-id": f"lab-proj-{i}", "numeric-project-id": 9000 + i,
                  "attributes": {"enable-oslogin": "FALSE"},
                  "project-attributes": {"ssh-keys": f"cloudinit:ssh-ed25519 PROJECTKEY{i} proj"}}
    return rec


@pytest.fixture(scope="module")
def lab(make_lab, tmp_path_factory):
    lab = make_lab(3)
    lab.load([flavor_record(i) for i in VMS])
    lab.start_imdsd()
    d = tmp_path_factory.mktemp("drivers")
    lab.cloudinit_driver = str(d / "cloudinit_flavors.py")
    lab.gcp_driver = str(d / "gcp_metadata.js")
    with open(lab.cloudinit_driver, "w") as f:
        f.write(CLOUDINIT_DRIVER)
    with open(lab.gcp_driver, "w") as f:
        f.write(GCP_DRIVER)
    return lab


def in_vm(lab, i, *cmd, env=None, timeout=120):
    full = ["nsenter", f"--net=/run/netns/{lab.vm_ns(i)}", *cmd]
    p = subprocess.run(full, capture_output=True, text=True, timeout=timeout,
                       env={**os.environ, **(env or {})})
    assert p.returncode == 0, f"{' '.join(cmd)} in vm{i} exited {p.returncode}\n{p.stdout}\n{p.stderr}"
    return json.loads(p.stdout)


def cloudinit(lab, i, mode):
    return in_vm(lab, i, imdslab.PYTHON, lab.cloudinit_driver, mode, vmdata.vm_mac(i), vmdata.key_name(i))


@pytest.mark.parametrize("i", VMS)
def test_cloudinit_openstack(lab, i):
    out = cloudinit(lab, i, "openstack")
    assert out["ok"] is True, out
    assert out["metadata_address"] == "http://169.254.169.254"
    assert out["version"] == 2
    md = out["metadata"]
    assert md["uuid"] == f"1111111{i}-2222-4333-8444-555555555555"
    assert out["instance_id"] == md["uuid"]  # cloud-init's KEY_COPIES
    assert md["name"] == f"vm{i:02d}-name"
    assert md["local-hostname"] == vmdata.hostname(i)
    assert out["hostname"] == vmdata.hostname(i).split(".")[0]
    assert out["availability_zone"] == "lab-1a"
    assert md["project_id"] == f"proj{i:02d}"
    assert md["keys"] == [{"name": vmdata.key_name(i), "type": "ssh", "data": vmdata.openssh_key(i)}]
    assert out["public_keys"] == [vmdata.openssh_key(i)]
    assert md["meta"] == {"dsmode": "net", "vm": str(i)}
    assert base64.b64decode(out["userdata"]) == vmdata.user_data(i)
    assert out["vendordata"] == {"cloud-init": f"#cloud-config\nvendor: vm{i:02d}\n"}
    assert out["vendordata2"] == [f"vendor2-{i}"]
    assert out["networkdata"]["links"][0]["ethernet_mac_address"] == vmdata.vm_mac(i)
    eth0 = out["net_config"]["config"][0]
    assert (eth0["name"], eth0["mac_address"]) == ("eth0", vmdata.vm_mac(i))
    assert eth0["subnets"][0]["type"] == "static"
    assert eth0["subnets"][0]["address"] == vmdata.vm_ipv4(i)
    # The reader's own EC2 crawl (hard-coded 169.254.169.254, tokenless).
    assert out["ec2_instance_id"] == vmdata.instance_id(i)
    urls = [w["url"] for w in out["wire"]]
    assert urls[0] == "http://169.254.169.254/openstack"  # wait_for_metadata_service
    assert "http://169.254.169.254/openstack/2018-08-27/meta_data.json" in urls  # newest it knows
    assert all(w["status"] == 200 for w in out["wire"] if "/openstack" in w["url"]), out["wire"]
    vmdata.assert_no_leak(i, json.dumps(out).encode(), lab.vms, "cloud-init OpenStack")


@pytest.mark.parametrize("i", VMS)
def test_cloudinit_gce(lab, i):
    out = cloudinit(lab, i, "gce")
    assert out["ok"] is True, out
    assert out["instance_id"] == str(7000 + i)
    assert out["availability_zone"] == "lab-1a"
    assert out["region"] == "lab"
    assert out["hostname"] == vmdata.hostname(i).split(".")[0]  # GCE: short names
    # Instance keys of the default user (the VM's key name here), then the
    # project's "cloudinit:" key (not blocked).
    assert out["metadata"]["public-keys-data"] == [f"{vmdata.key_name(i)}:{vmdata.openssh_key(i)}",
                                                   f"cloudinit:ssh-ed25519 PROJECTKEY{i} proj"]
    assert out["public_keys"] == [vmdata.openssh_key(i), f"ssh-ed25519 PROJECTKEY{i} proj"]
    # Binary user data travels base64-encoded with user-data-encoding.
    assert base64.b64decode(out["userdata"]) == vmdata.user_data(i)
    wire = out["wire"]
    assert all(w["flavor"] == "Google" and w["status"] == 200 for w in wire), wire
    assert any(w["url"].endswith("/instance/attributes/?recursive=True") for w in wire), wire
    vmdata.assert_no_leak(i, json.dumps(out).encode(), lab.vms, "cloud-init GCE")


def _gcp_metadata_missing():
    if not os.path.exists(os.path.join(GCP_METADATA, "package.json")):
        return (f"npm gcp-metadata is not installed in {NODE_MODULES} "
                "(scripts/install-npm-clients.sh; needs the npm registry)")
    if shutil.which("node") is None:
        return "node is not installed"
    return None


@pytest.mark.parametrize("i", VMS)
def test_gcp_metadata(lab, i):
    why = _gcp_metadata_missing()
    if why:
        pytest.skip(why)
    env = {"GCE_METADATA_HOST": "169.254.169.254", "METADATA_SERVER_DETECTION": "ping-only"}
    out = in_vm(lab, i, "node", lab.gcp_driver, GCP_METADATA, env=env)
    assert out["available"] is True
    assert out["name"] == f"vm{i:02d}-name"
    assert out["id"] == str(7000 + i)
    assert out["hostname"] == vmdata.hostname(i)
    assert out["zone"] == f"projects/{9000 + i}/zones/lab-1a"
    assert out["projectId"] == f"lab-proj-{i}"
    assert out["numericProjectId"] == str(9000 + i)
    assert out["email"] == f"{9000 + i}-compute@developer.gserviceaccount.com"
    assert out["mac"] == vmdata.vm_mac(i)
    attrs = out["attributes"]
    assert attrs["enable-oslogin"] == "FALSE"
    assert attrs["ssh-keys"] == f"{vmdata.key_name(i)}:{vmdata.openssh_key(i)}"
    ud = vmdata.user_data(i)
    if attrs.get("user-data-encoding") == "base64":
        assert base64.b64decode(attrs["user-data"]) == ud
    else:
        assert attrs["user-data"].encode() == ud
    tok = out["token"]
    assert tok["token_type"] == "Bearer" and tok["access_token"] and 0 < tok["expires_in"] <= 3600, tok
    vmdata.assert_no_leak(i, json.dumps(out).encode(), lab.vms, "gcp-metadata")

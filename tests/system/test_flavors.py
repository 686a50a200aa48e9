"""Acceptance 2 for the OpenStack, GCE and Azure flavors: through the real
bridge path (XDP on the VM's port, imdsd, the pinned store), a walk of each
flavor's whole tree answers 200 for every listed entry and 404 for names
that no listing shows, every body is the VM's own, and each flavor's header
rules hold (Metadata-Flavor for GCE, Metadata and api-version for Azure),
every flavor's errors close the connection and GCE names its own Server.

One lab for the module: VMs 1 and 2, each with every flavor section."""

import base64
import json

import pytest

import vmdata
from vmhttp import Connection, NoResponse, fetch

GOOGLE = {"Metadata-Flavor": "Google"}
AZURE = {"Metadata": "true"}
AZV = "api-version=2021-02-01"
VMS = [1, 2]


def flavor_record(i):
    """vmdata's record plus every flavor section; VM 2 binary-safe user
    data comes from vmdata (every third VM), so VM 3 is not used here."""
    rec = vmdata.vm_record(i)
    rec["name"] = f"vm{i:02d}-name"
    rec["meta-data"]["instance-type"] = "t3.small"
    rec["tags"] = {"vm": str(i)}  # Azure's tags and OpenStack's meta come from here
    rec["openstack"] = {"uuid": f"0000000{i}-aaaa-4bbb-8ccc-dddddddddddd", "meta": {"dsmode": "net"}}
    rec["gce"] = {"id": 1000 + i, "project-id": f"lab-project-{i}", "numeric-project-id": 5000 + i,
                  "attributes": {"role": f"role-{i}"},
                  "service-accounts": [{"email": f"sa-{i}@lab.iam.gserviceaccount.com"}]}
    rec["azure"] = {"location": "labregion", "resource-group": f"rg-{i}"}
    return rec


@pytest.fixture(scope="module")
def lab(make_lab):
    lab = make_lab(2)
    lab.load([flavor_record(i) for i in VMS])
    lab.start_imdsd()
    return lab


def get(lab, i, path, headers=None):
    return fetch(lab.vm_ns(i), "GET", path, headers)


def walk(lab, i, root, query="", headers=None):
    """Every entry reachable through listings from root: {path: Response}.
    Fails on the first listed entry that does not answer 200."""
    seen, todo = {}, [root]
    while todo:
        d = todo.pop()
        r = get(lab, i, d + query, headers)
        assert r.status == 200, f"vm{i} {d}{query}: {r!r}"
        seen[d] = r
        for entry in r.text.split("\n") if r.body else []:
            path = d + entry
            if entry.endswith("/"):
                todo.append(path)
                continue
            leaf = get(lab, i, path + query, headers)
            assert leaf.status == 200, f"vm{i} {path}{query} (listed in {d}): {leaf!r}"
            seen[path] = leaf
        # A name no listing shows is not served.
        missing = get(lab, i, d + "no-such-entry" + query, headers)
        assert missing.status == 404, f"vm{i} {d}no-such-entry: {missing!r}"
    return seen


def assert_own(lab, i, seen):
    for path, r in seen.items():
        vmdata.assert_no_leak(i, r.body, lab.vms, path)


@pytest.mark.parametrize("i", VMS)
def test_openstack_walk(lab, i):
    r = get(lab, i, "/openstack")
    assert r.status == 200 and r.text.split("\n")[-1] == "latest" and "2018-08-27" in r.text, r
    for version in r.text.split("\n"):
        seen = walk(lab, i, f"/openstack/{version}/")
        assert_own(lab, i, seen)
    seen = walk(lab, i, "/openstack/latest/")
    assert set(seen) == {f"/openstack/latest/{n}" for n in
                         ("", "meta_data.json", "user_data", "vendor_data.json", "network_data.json",
                          "vendor_data2.json")}
    md = json.loads(seen["/openstack/latest/meta_data.json"].body)
    assert md["uuid"] == f"0000000{i}-aaaa-4bbb-8ccc-dddddddddddd"
    assert md["name"] == f"vm{i:02d}-name"
    assert md["hostname"] == vmdata.hostname(i)
    assert md["availability_zone"] == "lab-1a"
    assert md["public_keys"] == {vmdata.key_name(i): vmdata.openssh_key(i)}
    assert md["meta"] == {"vm": str(i), "dsmode": "net"}
    assert seen["/openstack/latest/user_data"].body == vmdata.user_data(i)
    nd = json.loads(seen["/openstack/latest/network_data.json"].body)
    assert nd["links"][0]["ethernet_mac_address"] == vmdata.vm_mac(i)
    assert nd["networks"][0]["ip_address"] == vmdata.vm_ipv4(i)
    # Older versions predate some documents.
    assert get(lab, i, "/openstack/2012-08-10/network_data.json").status == 404
    assert get(lab, i, "/openstack/2099-01-01/meta_data.json").status == 404


@pytest.mark.parametrize("i", VMS)
def test_gce_walk(lab, i):
    seen = walk(lab, i, "/computeMetadata/v1/", headers=GOOGLE)
    assert len(seen) >= 30, sorted(seen)
    assert_own(lab, i, seen)
    for path, r in seen.items():
        assert r.header("Metadata-Flavor") == "Google", path
    v1 = "/computeMetadata/v1/"
    assert seen[v1 + "instance/id"].text == str(1000 + i)
    assert seen[v1 + "instance/name"].text == f"vm{i:02d}-name"
    assert seen[v1 + "instance/hostname"].text == vmdata.hostname(i)
    assert seen[v1 + "instance/zone"].text == f"projects/{5000 + i}/zones/lab-1a"
    assert seen[v1 + "instance/machine-type"].text == f"projects/{5000 + i}/machineTypes/t3.small"
    assert seen[v1 + "instance/network-interfaces/0/mac"].text == vmdata.vm_mac(i)
    assert seen[v1 + "instance/attributes/ssh-keys"].text == f"{vmdata.key_name(i)}:{vmdata.openssh_key(i)}"
    assert seen[v1 + "project/project-id"].text == f"lab-project-{i}"
    assert seen[v1 + "project/numeric-project-id"].text == str(5000 + i)
    # user-data: text as is, binary base64 with user-data-encoding
    ud = seen[v1 + "instance/attributes/user-data"].body
    enc = seen.get(v1 + "instance/attributes/user-data-encoding")
    if enc is None:
        assert ud == vmdata.user_data(i)
    else:
        assert enc.text == "base64" and base64.b64decode(ud) == vmdata.user_data(i)
    for acct in ("default", f"sa-{i}@lab.iam.gserviceaccount.com"):
        tok = json.loads(seen[f"{v1}instance/service-accounts/{acct}/token"].body)
        # GCE never announces more than 3599 s, even in the last minutes of
        # the hour when the next hour's token is handed out.
        assert tok["token_type"] == "Bearer" and 0 < tok["expires_in"] <= 3599 and tok["access_token"]


def test_gce_header_rules(lab):
    ns = lab.vm_ns(1)
    r = fetch(ns, "GET", "/computeMetadata/v1/instance/id")
    assert r.status == 403 and r.header("Metadata-Flavor") == "Google", r
    r = fetch(ns, "GET", "/computeMetadata/v1/instance/id", {**GOOGLE, "X-Forwarded-For": "10.0.0.1"})
    assert r.status == 403 and r.header("Metadata-Flavor") == "Google", r
    r = fetch(ns, "GET", "/", {"metadata-flavor": "Google"})
    assert (r.status, r.text, r.header("Metadata-Flavor")) == (200, "computeMetadata/", "Google"), r
    r = fetch(ns, "GET", "/")
    assert r.status == 200 and "latest" in r.text.split("\n"), r  # EC2's version list without the header
    for q in ("recursive=true", "recursive=True", "recursive=TRUE", "alt=json&recursive=true"):
        r = fetch(ns, "GET", f"/computeMetadata/v1/instance/?{q}", GOOGLE)
        assert r.status == 200 and r.header("Content-Type") == "application/json", (q, r)
        doc = json.loads(r.body)
        assert doc["id"] == 1001 and doc["name"] == "vm01-name", doc
        assert doc["networkInterfaces"][0]["ip"] == vmdata.vm_ipv4(1)
        assert "default" in doc["serviceAccounts"]
    r = fetch(ns, "GET", "/computeMetadata/v1/project?recursive=true&alt=text", GOOGLE)
    assert r.status == 200 and "project-id lab-project-1" in r.text.split("\n"), r
    r = fetch(ns, "GET", "/computeMetadata/v1/instance/id?alt=json", GOOGLE)
    assert (r.status, r.text, r.header("Content-Type")) == (200, "1001", "application/json"), r
    r = fetch(ns, "GET", "/computeMetadata/v1/instance/service-accounts/default/token", GOOGLE)
    assert r.header("Content-Type") == "application/json" and "access_token" in json.loads(r.body), r
    # The tokens of two VMs differ.
    r2 = fetch(lab.vm_ns(2), "GET", "/computeMetadata/v1/instance/service-accounts/default/token", GOOGLE)
    assert json.loads(r.body)["access_token"] != json.loads(r2.body)["access_token"]


@pytest.mark.parametrize("i", VMS)
def test_azure_walk(lab, i):
    seen = walk(lab, i, "/metadata/instance/", query=f"?{AZV}&format=text", headers=AZURE)
    assert len(seen) >= 40, sorted(seen)
    assert_own(lab, i, seen)
    base = "/metadata/instance/"
    leaf = {p.split("?")[0]: r.text for p, r in seen.items()}
    assert leaf[base + "compute/name"] == f"vm{i:02d}-name"
    assert leaf[base + "compute/resourceGroupName"] == f"rg-{i}"
    assert leaf[base + "compute/publicKeys/0/keyData"] == vmdata.openssh_key(i)
    assert leaf[base + "network/interface/0/ipv4/ipAddress/0/privateIpAddress"] == vmdata.vm_ipv4(i)
    assert leaf[base + "network/interface/0/macAddress"] == vmdata.vm_mac(i).replace(":", "").upper()
    assert base64.b64decode(leaf[base + "compute/userData"]) == vmdata.user_data(i)
    r = get(lab, i, f"/metadata/instance?{AZV}", AZURE)
    assert r.status == 200 and r.header("Content-Type") == "application/json", r
    doc = json.loads(r.body)
    assert doc["compute"]["name"] == f"vm{i:02d}-name" and doc["compute"]["tagsList"] == [{"name": "vm", "value": str(i)}]
    vmdata.assert_no_leak(i, r.body, lab.vms, "azure instance document")


def test_azure_header_rules(lab):
    ns = lab.vm_ns(1)
    r = fetch(ns, "GET", f"/metadata/instance?{AZV}")
    assert r.status == 400 and "metadata header" in json.loads(r.body)["error"], r
    r = fetch(ns, "GET", "/metadata/instance", AZURE)
    assert r.status == 400 and "api-version" in json.loads(r.body)["error"], r
    r = fetch(ns, "GET", "/metadata/instance?api-version=1999-01-01", AZURE)
    assert r.status == 400, r
    r = fetch(ns, "GET", f"/metadata/instance/compute/name?{AZV}", AZURE)
    assert r.status == 400, r  # leaves only as format=text
    r = fetch(ns, "GET", f"/metadata/instance/compute?{AZV}", AZURE)
    assert r.status == 200 and json.loads(r.body)["name"] == "vm01-name", r
    r = fetch(ns, "GET", f"/metadata/instance/compute/nope?{AZV}", AZURE)
    assert r.status == 404, r


def test_flavors_share_a_connection_with_ec2(lab):
    """One keep-alive connection: EC2, OpenStack, GCE and Azure requests in
    turn, each answered by its own rules."""
    with Connection(lab.vm_ns(2)) as c:
        assert c.request("GET", "/latest/meta-data/instance-id").body == vmdata.instance_id(2).encode()
        assert c.request("GET", "/openstack/latest/user_data").body == vmdata.user_data(2)
        assert c.request("GET", "/computeMetadata/v1/instance/name", GOOGLE).text == "vm02-name"
        assert c.request("GET", f"/metadata/instance/compute/name?{AZV}&format=text", AZURE).text == "vm02-name"
        assert c.request("GET", "/latest/meta-data/hostname").text == vmdata.hostname(2)


def test_update_reaches_every_flavor(lab):
    """A reload with changed sections is served at once in every flavor,
    and GCE's ETag changes with it."""
    ns = lab.vm_ns(2)
    before = fetch(ns, "GET", "/computeMetadata/v1/instance/attributes/role", GOOGLE)
    assert before.text == "role-2", before
    rec = flavor_record(2)
    rec["gce"]["attributes"]["role"] = "role-2-updated"
    rec["tags"]["vm"] = "2-updated"
    rec["azure"]["location"] = "otherregion"
    try:
        lab.load([rec], name="update.json")
        after = fetch(ns, "GET", "/computeMetadata/v1/instance/attributes/role", GOOGLE)
        assert after.text == "role-2-updated", after
        assert after.header("ETag") != before.header("ETag")
        md = json.loads(fetch(ns, "GET", "/openstack/latest/meta_data.json").body)
        assert md["meta"] == {"vm": "2-updated", "dsmode": "net"}
        r = fetch(ns, "GET", f"/metadata/instance/compute/location?{AZV}&format=text", AZURE)
        assert r.text == "otherregion", r
        r = fetch(ns, "GET", f"/metadata/instance/compute/tags?{AZV}&format=text", AZURE)
        assert r.text == "vm:2-updated", r
    finally:
        lab.load([flavor_record(2)], name="restore.json")
    assert fetch(ns, "GET", "/computeMetadata/v1/instance/attributes/role", GOOGLE).text == "role-2"


def test_bad_sections_are_refused_whole(lab):
    """A section error (at parse time, with its position) or a conflict with
    the common fields (at compile time) refuses the file; what was loaded
    stays served."""
    bad = flavor_record(1)
    bad["gce"]["attributes"]["ssh-keys"] = "someone:ssh-ed25519 AAAA"
    path = lab.write_json("conflict.json", vmdata.dumps([bad]))
    p = lab.loadmap("load", path)
    assert p.returncode != 0
    assert "vms[0].gce.attributes.ssh-keys: ssh-keys is also given in vms[0].public-keys; keep one" in p.stderr, p.stderr
    bad = flavor_record(1)
    bad["azure"]["os-type"] = "Plan9"
    path = lab.write_json("badtype.json", vmdata.dumps([bad]))
    p = lab.loadmap("load", path)
    assert p.returncode != 0
    assert ": vms[0].azure.os-type: \"Plan9\" is not \"Linux\" or \"Windows\"" in p.stderr, p.stderr
    bad = flavor_record(1)
    bad["azure"]["tags"] = {"vm": "1"}
    path = lab.write_json("azuretags.json", vmdata.dumps([bad]))
    p = lab.loadmap("load", path)
    assert p.returncode != 0
    assert ": vms[0].azure.tags: give tags in vms[0].tags" in p.stderr, p.stderr
    bad = flavor_record(1)
    bad["openstack"]["meta"]["vm"] = "again"
    path = lab.write_json("metaconflict.json", vmdata.dumps([bad]))
    p = lab.loadmap("load", path)
    assert p.returncode != 0
    assert "vms[0].openstack.meta.vm: vm is also given in vms[0].tags; keep one" in p.stderr, p.stderr
    r = fetch(lab.vm_ns(1), "GET", "/computeMetadata/v1/instance/attributes/ssh-keys", GOOGLE)
    assert r.text == f"{vmdata.key_name(1)}:{vmdata.openssh_key(1)}", r


def test_server_header(lab):
    """GCE answers as "Metadata Server for VM" (errors too); OpenStack and
    Azure keep the shared layer's EC2ws."""
    ns = lab.vm_ns(1)
    gce = "Metadata Server for VM"
    for path, headers, status, server in (
            ("/computeMetadata/v1/instance/name", GOOGLE, 200, gce),
            ("/computeMetadata/v1/instance/name", None, 403, gce),
            ("/", GOOGLE, 200, gce),
            ("/", None, 200, "EC2ws"),
            ("/openstack/latest/meta_data.json", None, 200, "EC2ws"),
            (f"/metadata/instance?{AZV}", AZURE, 200, "EC2ws")):
        r = fetch(ns, "GET", path, headers)
        assert (r.status, r.header("Server")) == (status, server), (path, r)


@pytest.mark.parametrize("method,path,headers,status", [
    ("GET", "/openstack/latest/password", None, 404),
    ("POST", "/openstack/latest/meta_data.json", None, 405),
    ("GET", "/computeMetadata/v1/instance/id", None, 403),
    ("GET", "/computeMetadata/v1/instance/id?alt=xml", GOOGLE, 400),
    ("GET", "/computeMetadata/v1/instance/nothing", GOOGLE, 404),
    ("GET", f"/metadata/instance?{AZV}", None, 400),
    ("GET", f"/metadata/instance/compute/nothing?{AZV}", AZURE, 404),
])
def test_errors_close_the_connection(lab, method, path, headers, status):
    """Like EC2's, every flavor's error closes a keep-alive connection (a
    client that skips the error body keeps no idle socket); a 200 first
    shows the connection was kept until then."""
    with Connection(lab.vm_ns(1)) as c:
        assert c.request("GET", "/openstack/latest/user_data").header("Connection") == "keep-alive"
        r = c.request(method, path, headers)
        assert (r.status, r.header("Connection")) == (status, "close"), r
        with pytest.raises(NoResponse) as e:
            c.read_response()  # nothing more: the server closes (not a timeout)
        assert e.value.kind in ("closed", "reset"), e.value

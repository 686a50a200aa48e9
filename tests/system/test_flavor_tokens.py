"""Issue 12, finding 5: a VM's token and hop-limit settings cover every
flavor (docs/flavors.md, "Tokens and the hop limit").

The attack: VM 1 requires IMDSv2 tokens and has an `openstack` section.
Its EC2 user data needs a token, and the token reply leaves with TTL = the
hop limit, so a container behind a NAT inside the VM (one hop further)
never gets it.  OpenStack (and GCE, Azure) have no token step: before the
fix, `GET /openstack/latest/user_data` handed the user data to anyone in
the guest, the container included.

Now a tokens-required VM's flavors are refused (403) unless the section
says "serve-without-token": true, and then every 200 leaves under the hop
limit, as a token reply does: with hop limit 1 the VM gets its user data,
the container gets no reply (a capture on the VM's eth0 sees the reply's
data at TTL 1); with hop limit 2 the container gets it.  A VM with
optional tokens is served as before, at the normal TTL, as its IMDSv1 is.

The Azure managed identity's token (issue 18) is one of those secrets:
refused (403) without the opt-in, hop-limited with it.

The nested-NAT "container" is test_hoplimit.py's fixture."""

import json

import pytest

import vmdata
from test_hoplimit import NORMAL_TTL, VM, _captured_request, container  # noqa: F401 (container: a fixture)
from vmhttp import NoResponse, fetch

GOOGLE = {"Metadata-Flavor": "Google"}
AZURE = {"Metadata": "true"}
OS_USER_DATA = "/openstack/latest/user_data"
GCE_ALL = "/computeMetadata/v1/?recursive=true"
# Issue 18: the Azure managed identity's token is a secret too.
AZ_TOKEN = "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://management.azure.com/"
MI_TOKEN = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.managed-identity.c2lnbmF0dXJl"
MANAGED_IDENTITIES = {"system-assigned": {
    "client-id": "11111111-1111-4111-8111-111111111111", "object-id": "22222222-2222-4222-8222-222222222222",
    "tokens": {"https://management.azure.com/": {"access-token": MI_TOKEN, "expires-on": "2099-01-01T00:00:00Z"}}}}


def record(tokens="required", hop_limit=1, optin=False):
    rec = vmdata.vm_record(VM, tokens=tokens, hop_limit=hop_limit)
    section = {"serve-without-token": True} if optin else {}
    rec["openstack"] = dict(section)
    rec["gce"] = dict(section)
    rec["azure"] = {**section, "managed-identities": MANAGED_IDENTITIES}
    return rec


@pytest.fixture(scope="module")
def lab(make_lab):
    lab = make_lab(1)
    lab.load([record()])
    lab.start_imdsd()
    return lab


def _user_data():
    return vmdata.user_data(VM)


def test_tokens_required_refuses_openstack_user_data(lab, container):
    lab.load([record()])
    ns = lab.vm_ns(VM)
    assert fetch(ns, "GET", "/latest/user-data").status == 401
    for who in (ns, container):
        r = fetch(who, "GET", OS_USER_DATA)
        assert r.status == 403, r
        assert _user_data() not in r.body, r
        r = fetch(who, "GET", GCE_ALL, GOOGLE)
        assert r.status == 403 and r.header("Metadata-Flavor") == "Google", r
        assert _user_data().decode() not in r.text, r
        r = fetch(who, "GET", AZ_TOKEN, AZURE)
        assert r.status == 403 and MI_TOKEN not in r.text, r


def test_optin_hop_limit_1_keeps_user_data_inside_the_vm(lab, container):
    lab.load([record(optin=True, hop_limit=1)])
    # The VM itself, one hop away, is served; the answer closes.
    r = fetch(lab.vm_ns(VM), "GET", OS_USER_DATA)
    assert (r.status, r.body) == (200, _user_data()), r
    assert r.header("Connection") == "close", r
    r = fetch(lab.vm_ns(VM), "GET", GCE_ALL, GOOGLE)
    assert r.status == 200, r
    assert json.loads(r.body)["instance"]["attributes"]["user-data"] == _user_data().decode()
    r = fetch(lab.vm_ns(VM), "GET", AZ_TOKEN, AZURE)
    assert r.status == 200 and json.loads(r.body)["access_token"] == MI_TOKEN, r
    # The container, behind the VM's NAT: no reply for any flavor.
    for path, headers in ((OS_USER_DATA, None), (GCE_ALL, GOOGLE), (AZ_TOKEN, AZURE)):
        result, syn_acks, data = _captured_request(lab, container, "GET", path, headers, timeout=2.0)
        assert isinstance(result, NoResponse), f"the container got {path} through the VM: {result!r}"
        assert syn_acks == {NORMAL_TTL}, syn_acks
        assert data == {1}, f"{path}: reply TTLs on the VM's eth0: {data}"


def test_optin_hop_limit_2_reaches_the_container(lab, container):
    lab.load([record(optin=True, hop_limit=2)])
    result, _syn_acks, data = _captured_request(lab, container, "GET", OS_USER_DATA, None)
    assert (result.status, result.body) == (200, _user_data()), result
    assert data == {2}, f"reply TTLs on the VM's eth0: {data}"


def test_optin_refuses_a_proxy(lab, container):
    lab.load([record(optin=True, hop_limit=2)])
    r = fetch(lab.vm_ns(VM), "GET", OS_USER_DATA, {"X-Forwarded-For": "10.88.0.2"})
    assert r.status == 403 and _user_data() not in r.body, r


def test_tokens_optional_is_served_as_imdsv1_is(lab, container):
    """Optional tokens: EC2 serves the user data to the container without a
    token (IMDSv1), so the flavors do too, at the normal TTL."""
    lab.load([record(tokens="optional", hop_limit=1)])
    assert fetch(container, "GET", "/latest/user-data").body == _user_data()
    result, _syn_acks, data = _captured_request(lab, container, "GET", OS_USER_DATA, None)
    assert (result.status, result.body) == (200, _user_data()), result
    assert data == {NORMAL_TTL}, f"reply TTLs on the VM's eth0: {data}"

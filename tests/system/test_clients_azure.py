"""Issue 18: Azure managed identity tokens through @azure/identity, the
client every Azure SDK uses on a VM, run from inside a VM's network
namespace against imdsd through the bridge path.

- ManagedIdentityCredential.getToken("https://management.azure.com/.default")
  returns the operator's token and its expiry: for the system-assigned
  identity by default, and for a user-assigned one selected by client id
  (object id and resource id too); DefaultAzureCredential (its probe of the
  endpoint without the Metadata header first) gets the same;
- after a reload with a new token, a new client gets the new one, and
  after `imds-loadmap update --set` of one identity's tokens too;
- Azure's status codes and error bodies without the Metadata header, for
  an unknown identity and for a resource the identity has no token for,
  both on the wire and as the client reports them;
- no VM gets another VM's identities or tokens.

The client is the npm package as installed by scripts/install-npm-clients.sh
(tests/clients/azure_identity.js only calls it); skipped with the reason
when node or the package is missing (CI has no npm registry)."""

import datetime
import json
import os
import shutil
import subprocess

import pytest

import imdslab
import vmdata
from vmhttp import fetch

CLIENTS = os.path.join(imdslab.ROOT, "tests", "clients")
NODE_MODULES = os.path.join(imdslab.BUILD, "clients", "node_modules")
ARM = "https://management.azure.com/"
ARM_SCOPE = "https://management.azure.com/.default"
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
TOKEN_PATH = "/metadata/identity/oauth2/token?api-version=2018-02-01"
META = {"Metadata": "true"}
VMS = [1, 2]

NOW = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)


def guid(i, kind):
    """A distinct GUID per VM and identity ("sys-client", "app-object", ...)."""
    n = {"sys-client": 1, "sys-object": 2, "app-client": 3, "app-object": 4, "idle-client": 5,
         "idle-object": 6}[kind]
    return f"{n:08x}-{i:04x}-4000-8000-{i * 16 + n:012x}"


def app_resource_id(i):
    return (f"/subscriptions/1d2c3b4a-5e6f-4a0b-9c8d-7e6f5a4b3c2d/resourceGroups/lab-{i}/providers/"
            f"Microsoft.ManagedIdentity/userAssignedIdentities/app-{i}")


def token(i, who, gen):
    # JWT-shaped, unique per VM, identity and reload
    return f"eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.vm{i}-{who}-gen{gen}.c2lnbmF0dXJl"


def expiry(gen):
    return NOW + datetime.timedelta(hours=gen)


def utc(t):
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def record(i, gen=1):
    rec = vmdata.vm_record(i)
    tok = lambda who: {ARM: {"access-token": token(i, who, gen), "expires-on": utc(expiry(gen))}}  # noqa: E731
    rec["azure"] = {"managed-identities": {
        "tenant-id": TENANT,
        "system-assigned": {"client-id": guid(i, "sys-client"), "object-id": guid(i, "sys-object"),
                            "tokens": tok("sys")},
        "user-assigned": [
            {"client-id": guid(i, "app-client"), "object-id": guid(i, "app-object"),
             "resource-id": app_resource_id(i), "tokens": tok("app")},
            {"client-id": guid(i, "idle-client"), "object-id": guid(i, "idle-object"),
             "resource-id": f"/subscriptions/x/resourceGroups/lab-{i}/providers/"
                            f"Microsoft.ManagedIdentity/userAssignedIdentities/idle-{i}"},
        ]}}
    return rec


@pytest.fixture(scope="module")
def lab(make_lab):
    lab = make_lab(len(VMS))
    lab.load([record(i) for i in VMS])
    lab.start_imdsd()
    return lab


@pytest.fixture(scope="module")
def node():
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: the @azure/identity tests need Node 20")
    if not os.path.exists(os.path.join(NODE_MODULES, "@azure", "identity", "package.json")):
        pytest.skip(f"npm @azure/identity is not installed in {NODE_MODULES} "
                    "(scripts/install-npm-clients.sh; needs the npm registry)")
    return node


def client_env():
    """No proxies, and nothing that points the client elsewhere than
    169.254.169.254 or at another credential."""
    env = {k: v for k, v in os.environ.items()
           if not k.lower().endswith("_proxy") and not k.startswith(("AZURE_", "IDENTITY_", "MSI_", "IMDS_"))}
    env.update(NODE_PATH=NODE_MODULES, HOME="/nonexistent", AZURE_TOKEN_CREDENTIALS="prod")
    return env


def identity(lab, node, i, *jobs):
    """Runs the jobs (tests/clients/azure_identity.js) in VM i: one result each."""
    p = subprocess.run(["nsenter", f"--net=/run/netns/{lab.vm_ns(i)}", node,
                        os.path.join(CLIENTS, "azure_identity.js"), json.dumps(list(jobs))],
                       capture_output=True, text=True, timeout=120, env=client_env())
    assert p.returncode == 0, f"azure_identity.js in vm{i} exited {p.returncode}\n{p.stderr[-3000:]}"
    out = json.loads(p.stdout)
    assert len(out) == len(jobs)
    for theirs in VMS:
        if theirs != i:
            for who in ("sys", "app"):
                for gen in (1, 2, 3):
                    assert token(theirs, who, gen) not in p.stdout, f"vm{i} got vm{theirs}'s {who} token"
    return out


def expect_token(got, i, who, gen):
    assert got["ok"] is True, got
    assert got["token"] == token(i, who, gen)
    assert got["tokenType"] == "Bearer"
    # MSAL turns expires_on into now + expires_in: the same second, give or
    # take the one the request took.
    want = expiry(gen).timestamp() * 1000
    assert abs(got["expiresOnTimestamp"] - want) <= 1000, (got["expiresOnTimestamp"], want)


@pytest.mark.parametrize("i", VMS)
def test_system_assigned(lab, node, i):
    lab.load([record(v) for v in VMS])
    mi, dac = identity(lab, node, i, {"cred": "mi", "scope": ARM_SCOPE}, {"cred": "dac", "scope": ARM_SCOPE})
    expect_token(mi, i, "sys", 1)
    expect_token(dac, i, "sys", 1)


def test_user_assigned(lab, node):
    lab.load([record(v) for v in VMS])
    by_client, dac, by_object, by_resource = identity(
        lab, node, 1,
        {"cred": "mi", "scope": ARM_SCOPE, "clientId": guid(1, "app-client")},
        {"cred": "dac", "scope": ARM_SCOPE, "clientId": guid(1, "app-client")},
        {"cred": "mi", "scope": ARM_SCOPE, "objectId": guid(1, "app-object")},
        {"cred": "mi", "scope": ARM_SCOPE, "resourceId": app_resource_id(1)})
    for got in (by_client, dac, by_object, by_resource):
        expect_token(got, 1, "app", 1)


def test_reload_gives_the_new_token(lab, node):
    lab.load([record(v) for v in VMS])
    expect_token(identity(lab, node, 1, {"cred": "mi", "scope": ARM_SCOPE})[0], 1, "sys", 1)
    lab.load([record(v, gen=2) for v in VMS])
    sys_tok, app_tok = identity(lab, node, 1, {"cred": "mi", "scope": ARM_SCOPE},
                                {"cred": "mi", "scope": ARM_SCOPE, "clientId": guid(1, "app-client")})
    expect_token(sys_tok, 1, "sys", 2)
    expect_token(app_tok, 1, "app", 2)
    r = fetch(lab.vm_ns(2), "GET", f"{TOKEN_PATH}&resource={ARM}", META)
    assert json.loads(r.body)["access_token"] == token(2, "sys", 2)
    # A rotation of one identity's tokens alone, as docs/flavors.md shows it.
    tokens = {ARM: {"access-token": token(1, "sys", 3), "expires-on": utc(expiry(3))}}
    lab.loadmap("update", vmdata.instance_id(1), "--set",
                f"azure.managed-identities.system-assigned.tokens={json.dumps(tokens)}", check=True)
    sys_tok, app_tok = identity(lab, node, 1, {"cred": "mi", "scope": ARM_SCOPE},
                                {"cred": "mi", "scope": ARM_SCOPE, "clientId": guid(1, "app-client")})
    expect_token(sys_tok, 1, "sys", 3)
    expect_token(app_tok, 1, "app", 2)


def expect_error(r, status, body):
    assert r.status == status, r
    assert r.header("Content-Type") == "application/json", r
    assert r.header("Connection") == "close", r
    assert json.loads(r.body) == body, r.body


def test_errors_on_the_wire(lab):
    lab.load([record(v) for v in VMS])
    ns = lab.vm_ns(1)
    r = fetch(ns, "GET", f"{TOKEN_PATH}&resource={ARM}")
    expect_error(r, 400, {"error": "bad_request_102", "error_description": "Required metadata header not specified"})
    # the probe of DefaultAzureCredential: no query, no header
    r = fetch(ns, "GET", "/metadata/identity/oauth2/token")
    expect_error(r, 400, {"error": "bad_request_102", "error_description": "Required metadata header not specified"})
    not_found = {"error": "invalid_request", "error_description": "Identity not found"}
    r = fetch(ns, "GET", f"{TOKEN_PATH}&resource={ARM}&client_id=99999999-0000-4000-8000-000000000009", META)
    expect_error(r, 400, not_found)
    # another VM's identity is unknown here
    r = fetch(ns, "GET", f"{TOKEN_PATH}&resource={ARM}&client_id={guid(2, 'app-client')}", META)
    expect_error(r, 400, not_found)
    r = fetch(ns, "GET", f"{TOKEN_PATH}&resource=https://storage.azure.com/", META)
    expect_error(r, 400, {"error": "invalid_resource", "error_description": (
        f"AADSTS50001: The application named https://storage.azure.com/ was not found in the tenant named {TENANT}. "
        "This can happen if the application has not been installed by the administrator of the tenant or "
        "consented to by any user in the tenant. You might have sent your authentication request to the wrong "
        "tenant.")})
    r = fetch(ns, "GET", f"{TOKEN_PATH}&resource={ARM}", {**META, "X-Forwarded-For": "10.88.0.2"})
    expect_error(r, 400, {"error": "invalid_request",
                          "error_description": "Requests with X-Forwarded-For are not accepted"})
    # the idle identity has no token for any resource
    r = fetch(ns, "GET", f"{TOKEN_PATH}&resource={ARM}&client_id={guid(1, 'idle-client')}", META)
    assert r.status == 400 and json.loads(r.body)["error"] == "invalid_resource", r


def test_errors_as_the_client_reports_them(lab, node):
    lab.load([record(v) for v in VMS])
    unknown, other_vm, no_token = identity(
        lab, node, 1,
        {"cred": "mi", "scope": ARM_SCOPE, "clientId": "99999999-0000-4000-8000-000000000009"},
        {"cred": "mi", "scope": ARM_SCOPE, "clientId": guid(2, "app-client")},
        {"cred": "mi", "scope": "https://storage.azure.com/.default"})
    # MSAL reports the error code and the description it was given.
    for got in (unknown, other_vm):
        assert got["ok"] is False and "invalid_request" in got["error"], got
        assert "Description: Identity not found -" in got["error"], got
    assert no_token["ok"] is False and "invalid_resource" in no_token["error"], no_token
    assert ("AADSTS50001: The application named https://storage.azure.com was not found in the tenant named "
            f"{TENANT}.") in no_token["error"], no_token

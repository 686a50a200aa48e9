"""Issue 3, acceptance 3: the signed instance identity.

Two VMs fetch their identity document and its three signatures (signature,
pkcs7, rsa2048) from inside their namespaces over the bridge; the host
certificate comes from `imds-loadmap cert`; the `openssl` command line (the
relying party of docs/identity.md) verifies each signature, and rejects a
tampered document, another VM's document and a tampered PKCS#7.

Also (issue 4): imdsd's first TC attach on each port no longer logs libbpf's
"Cannot find specified filter chain"."""

import base64
import json
import os
import stat
import subprocess

import pytest

import vmdata
from vmhttp import get, token_for

VMS = [1, 2]
IID = "/latest/dynamic/instance-identity/"


def openssl(*args, stdin=None):
    return subprocess.run(["openssl", *args], input=stdin, capture_output=True, timeout=30)


@pytest.fixture(scope="module")
def lab(make_lab, tmp_path_factory):
    lab = make_lab(len(VMS))
    # A key directory of this lab's own, made by the loader on first use.
    lab.key_dir = str(tmp_path_factory.mktemp("identity") / "keys")
    path = lab.write_json("vms.json", vmdata.dumps([vmdata.vm_record(i) for i in VMS]))
    p = lab.loadmap("--key-dir", lab.key_dir, "load", path)
    assert p.returncode == 0, p.stderr
    lab.start_imdsd()
    return lab


@pytest.fixture(scope="module")
def cert(lab):
    """The host certificates, as an operator hands them to relying parties."""
    p = lab.loadmap("--key-dir", lab.key_dir, "cert")
    assert p.returncode == 0, p.stderr
    assert p.stdout.count("-----BEGIN CERTIFICATE-----") == 2, p.stdout
    return lab.write_json("host-cert.pem", p.stdout)


def fetch_identity(lab, i):
    """{name: bytes} of VM i's identity entries, fetched with IMDSv2."""
    ns = lab.vm_ns(i)
    token = token_for(ns)
    out = {}
    for name in ("", "document", "signature", "pkcs7", "rsa2048"):
        r = get(ns, IID + name, token)
        assert r.status == 200, f"vm{i} {IID}{name}: {r!r}"
        assert r.header("Content-Type") == "text/plain", r.headers
        out[name] = r.body
    return out


def write(lab, name, data):
    path = os.path.join(lab.workdir, name)
    with open(path, "wb") as f:
        f.write(data)
    return path


def pkcs7_pem(lab, name, body):
    """What docs/identity.md (and AWS's guide) tell the relying party to do:
    the body between PKCS7 armour lines."""
    return write(lab, name, b"-----BEGIN PKCS7-----\n" + body + b"\n-----END PKCS7-----\n")


def smime_verify(pem, cert, content=None):
    args = ["smime", "-verify", "-in", pem, "-inform", "PEM", "-certfile", cert, "-CAfile", cert, "-nointern"]
    if content:
        args += ["-content", content]
    return openssl(*args)


def tampered(doc):
    """The same document claiming another instance."""
    d = json.loads(doc)
    d["instanceId"] = "i-0fffffffffffffff0"
    return json.dumps(d, indent=2).encode()


@pytest.fixture(scope="module")
def ids(lab):
    return {i: fetch_identity(lab, i) for i in VMS}


def test_listing_and_layout(ids):
    for i in VMS:
        got = ids[i]
        assert got[""] == b"document\npkcs7\nrsa2048\nsignature"
        assert json.loads(got["document"])["instanceId"] == vmdata.instance_id(i)
        # EC2's layout: base64 in lines of 76, no armour, no final newline.
        for name in ("signature", "pkcs7", "rsa2048"):
            body = got[name]
            lines = body.split(b"\n")
            assert all(len(line) == 76 for line in lines[:-1]), (name, lines)
            assert 0 < len(lines[-1]) <= 76 and not body.endswith(b"\n"), name
            assert b"BEGIN" not in body
            base64.b64decode(body)
        # RSA-2048 over the document: 256 bytes.
        assert len(base64.b64decode(got["signature"])) == 256


def test_dated_versions_serve_the_same_signatures(lab, ids):
    ns = lab.vm_ns(1)
    for name in ("signature", "pkcs7", "rsa2048"):
        r = get(ns, f"/2009-04-04/dynamic/instance-identity/{name}")
        assert (r.status, r.body) == (200, ids[1][name])


@pytest.mark.parametrize("kind", ["rsa2048", "pkcs7"])
def test_openssl_verifies_pkcs7(lab, ids, cert, kind):
    for i in VMS:
        doc = ids[i]["document"]
        pem = pkcs7_pem(lab, f"vm{i}.{kind}", ids[i][kind])
        p = smime_verify(pem, cert)
        assert p.returncode == 0, p.stderr
        assert b"Verification successful" in p.stderr
        assert p.stdout == doc  # the document is inside, byte for byte
        # The relying party's own copy of the document, checked directly.
        p = smime_verify(pem, cert, content=write(lab, f"vm{i}.document", doc))
        assert p.returncode == 0, p.stderr
        # openssl cms, as docs/identity.md gives it.
        p = openssl("cms", "-verify", "-in", pem, "-inform", "PEM", "-content", write(lab, f"vm{i}.document", doc),
                    "-certfile", cert, "-CAfile", cert, "-nointern", "-binary")
        assert p.returncode == 0 and b"Verification successful" in p.stderr, p.stderr
        # AWS's guide verbatim (-noverify) works too.
        p = openssl("smime", "-verify", "-in", pem, "-inform", "PEM", "-certfile", cert, "-noverify")
        assert p.returncode == 0 and p.stdout == doc, p.stderr


def test_pkcs7_algorithms(lab, ids):
    """pkcs7 is DSA over SHA-1 and rsa2048 RSA over SHA-256, as EC2's; neither
    carries a certificate."""
    for kind, want in (("pkcs7", (b"sha1", b"dsaWithSHA1")), ("rsa2048", (b"sha256", b"rsaEncryption"))):
        pem = pkcs7_pem(lab, f"shape.{kind}", ids[1][kind])
        p = openssl("pkcs7", "-in", pem, "-print")
        assert p.returncode == 0, p.stderr
        for alg in want:
            assert b"algorithm: " + alg + b" " in p.stdout, (kind, alg)
        assert b"cert:\n      <ABSENT>" in p.stdout, p.stdout[:600]
        assert b"signingTime" in p.stdout


def test_openssl_verifies_signature(lab, ids, cert):
    """AWS's recipe for `signature`: the RSA certificate's public key and
    openssl dgst."""
    p = openssl("x509", "-pubkey", "-noout", "-in", cert)
    assert p.returncode == 0, p.stderr
    key = write(lab, "host-key.pub", p.stdout)
    for i in VMS:
        sig = write(lab, f"vm{i}.sig", base64.b64decode(ids[i]["signature"]))
        doc = write(lab, f"vm{i}.document", ids[i]["document"])
        p = openssl("dgst", "-sha256", "-verify", key, "-signature", sig, doc)
        assert p.returncode == 0 and p.stdout.strip() == b"Verified OK", p
        bad = write(lab, f"vm{i}.tampered", tampered(ids[i]["document"]))
        p = openssl("dgst", "-sha256", "-verify", key, "-signature", sig, bad)
        assert p.returncode != 0 and b"Verification failure" in p.stdout, p


@pytest.mark.parametrize("kind", ["rsa2048", "pkcs7"])
def test_tampered_document_fails(lab, ids, cert, kind):
    doc = ids[1]["document"]
    pem = pkcs7_pem(lab, f"t.{kind}", ids[1][kind])
    # A document that is not the one signed.
    p = smime_verify(pem, cert, content=write(lab, "t.document", tampered(doc)))
    assert p.returncode != 0 and b"Verification failure" in p.stderr, p
    # Another VM's genuine document against this VM's signature.
    p = smime_verify(pem, cert, content=write(lab, "t.other", ids[2]["document"]))
    assert p.returncode != 0, p
    # The document changed inside the PKCS#7 (same length: still valid DER).
    der = base64.b64decode(ids[1][kind])
    old = vmdata.instance_id(1).encode()
    assert der.count(old) == 1
    forged = der.replace(old, vmdata.instance_id(2).encode())
    pem = pkcs7_pem(lab, f"forged.{kind}", base64.encodebytes(forged).rstrip(b"\n"))
    p = smime_verify(pem, cert)
    assert p.returncode != 0 and b"Verification failure" in p.stderr, p


def test_forgery_with_embedded_certificate_fails(lab, cert, tmp_path):
    """A forger signs her own document with her own key and ships her
    certificate inside the PKCS#7: the documented command rejects it (AWS's
    -noverify recipe would not; docs/identity.md)."""
    key, crt = str(tmp_path / "forger.key"), str(tmp_path / "forger.crt")
    p = openssl("req", "-new", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-subj", "/CN=forger",
                "-days", "2", "-out", crt)
    assert p.returncode == 0, p.stderr
    doc = write(lab, "forged.document", b'{\n  "instanceId" : "i-0fffffffffffffff0"\n}')
    pem = str(tmp_path / "forged.p7")
    p = openssl("smime", "-sign", "-in", doc, "-binary", "-nodetach", "-signer", crt, "-inkey", key,
                "-outform", "PEM", "-out", pem)
    assert p.returncode == 0, p.stderr
    p = smime_verify(pem, cert)
    assert p.returncode != 0 and b"Verification failure" in p.stderr, p
    p = smime_verify(pem, cert, content=doc)
    assert p.returncode != 0, p
    # The same forgery against AWS's recipe, to show why the flags matter.
    p = openssl("smime", "-verify", "-in", pem, "-inform", "PEM", "-certfile", cert, "-noverify")
    assert p.returncode == 0, "AWS's -noverify recipe now rejects embedded certificates: update docs/identity.md"


def test_other_certificate_fails(lab, ids, tmp_path):
    """A certificate of another key (a fresh key directory) verifies nothing."""
    p = lab.loadmap("--key-dir", str(tmp_path / "other"), "cert")
    assert p.returncode == 0, p.stderr
    other = write(lab, "other-cert.pem", p.stdout.encode())
    for kind in ("rsa2048", "pkcs7"):
        p = smime_verify(pkcs7_pem(lab, f"o.{kind}", ids[1][kind]), other)
        assert p.returncode != 0, p


def test_key_files(lab):
    for name, mode in (("identity-rsa.key", 0o600), ("identity-dsa.key", 0o600),
                       ("identity-rsa.crt", 0o644), ("identity-dsa.crt", 0o644)):
        st = os.stat(os.path.join(lab.key_dir, name))
        assert stat.S_IMODE(st.st_mode) == mode, name


def test_reload_keeps_the_key(lab, ids, cert):
    """An update re-signs with the same key: the certificate relying parties
    hold keeps verifying."""
    rec = vmdata.vm_record(1)
    rec["meta-data"]["instance-type"] = "m5.large"
    path = lab.write_json("update.json", vmdata.dumps([rec]))
    p = lab.loadmap("--key-dir", lab.key_dir, "load", path)
    assert p.returncode == 0, p.stderr
    got = fetch_identity(lab, 1)
    assert json.loads(got["document"])["instanceType"] == "m5.large"
    p = smime_verify(pkcs7_pem(lab, "reload.rsa2048", got["rsa2048"]), cert)
    assert p.returncode == 0 and p.stdout == got["document"], p.stderr


def test_no_filter_chain_noise(lab):
    """libbpf's "Cannot find specified filter chain" on the first TC attach
    of each port is not logged; imdsd did attach to the ports."""
    log = lab.log_text()
    assert "imdsd: ready" in log
    assert "Cannot find specified filter chain" not in log, log
    for port in ("vm1", "vm2"):
        assert lab.port_ingress_hooks(port) == {"tc"}, f"no ingress check on {port}"

"""`ntari-admin federation`: agreements drafted, signed by both parties,
verified, tampered with, revoked; the audit log checked — the real binary,
as an operator uses it.

The signatures are also checked here independently of the Rust code: the
canonical form is rebuilt in Python (RFC 8785 JCS of the document without
`signatures`; for our integer/string-only documents that is
``json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False)``)
and verified with a small pure-Python Ed25519 (RFC 8032 §5.1.7), since the
test venv has neither `cryptography` nor `nacl`. The audit log test writes
its chain in Python from the spec, so the format is checked both ways.
"""

import hashlib
import json
import re
import subprocess
from pathlib import Path

import pytest

from conftest import find_binary

WG_A = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg="
WG_B = "TrMvSoP4jYQlY6RIzBgbssQqY3vxI2Pi+y71lOWWXX0="
ID = "riverside-hillside"


# --- Ed25519 verification (RFC 8032 §5.1.7), did:key decoding ---------------

_P = 2**255 - 19
_L = 2**252 + 27742317777372353535851937790883648493
_D = -121665 * pow(121666, _P - 2, _P) % _P
_SQRT_M1 = pow(2, (_P - 1) // 4, _P)


def _add(a, b):
    x = (a[1] - a[0]) * (b[1] - b[0]) % _P
    y = (a[1] + a[0]) * (b[1] + b[0]) % _P
    c = 2 * a[3] * b[3] * _D % _P
    d = 2 * a[2] * b[2] % _P
    e, f, g, h = y - x, d - c, d + c, y + x
    return (e * f % _P, g * h % _P, f * g % _P, e * h % _P)


def _mul(s, pt):
    q = (0, 1, 1, 0)
    while s:
        if s & 1:
            q = _add(q, pt)
        pt = _add(pt, pt)
        s >>= 1
    return q


def _recover_x(y, sign):
    if y >= _P:
        return None
    x2 = (y * y - 1) * pow(_D * y * y + 1, _P - 2, _P)
    if x2 % _P == 0:
        return None if sign else 0
    x = pow(x2, (_P + 3) // 8, _P)
    if (x * x - x2) % _P:
        x = x * _SQRT_M1 % _P
    if (x * x - x2) % _P:
        return None
    return _P - x if (x & 1) != sign else x


def _decompress(b):
    y = int.from_bytes(b, "little")
    sign, y = y >> 255, y & ((1 << 255) - 1)
    x = _recover_x(y, sign)
    return None if x is None else (x, y, 1, x * y % _P)


_GY = 4 * pow(5, _P - 2, _P) % _P
_G = (_recover_x(_GY, 0), _GY, 1, _recover_x(_GY, 0) * _GY % _P)


def ed25519_verify(public: bytes, message: bytes, signature: bytes) -> bool:
    a, r = _decompress(public), _decompress(signature[:32])
    s = int.from_bytes(signature[32:], "little")
    if a is None or r is None or s >= _L:
        return False
    h = int.from_bytes(hashlib.sha512(signature[:32] + public + message).digest(), "little") % _L
    lhs, rhs = _mul(s, _G), _add(r, _mul(h, a))
    return (lhs[0] * rhs[2] - rhs[0] * lhs[2]) % _P == 0 and (lhs[1] * rhs[2] - rhs[1] * lhs[2]) % _P == 0


_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def did_public_key(did: str) -> bytes:
    assert did.startswith("did:key:z")
    n = 0
    for c in did[len("did:key:z"):]:
        n = n * 58 + _B58.index(c)
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    assert raw[:2] == b"\xed\x01", "not an Ed25519 did:key"
    return raw[2:]


def jcs(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


# --- fixtures ----------------------------------------------------------------

@pytest.fixture
def admin(tmp_path):
    """``admin(*args)`` runs ntari-admin in tmp_path; (exit code, stdout, stderr)."""
    binary = find_binary("ntari-admin")

    def _run(*args):
        out = subprocess.run([str(binary), "--node-config", str(tmp_path / "absent-ntari.toml"), *args],
                             cwd=tmp_path, capture_output=True, text=True, timeout=60)
        return out.returncode, out.stdout, out.stderr

    return _run


@pytest.fixture
def keys(admin, tmp_path):
    """Three node keys (riverside, hillside, a stranger): [(path, did)]."""
    out = []
    for name in ("riverside", "hillside", "stranger"):
        path = tmp_path / f"{name}.key"
        rc, stdout, stderr = admin("key", "init", "--key", str(path))
        assert rc == 0, stderr
        out.append((str(path), re.search(r"did:\s+(did:key:\S+)", stdout).group(1)))
    return out


def draft(admin, tmp_path, keys, *extra, name=f"{ID}.yaml"):
    path = tmp_path / name
    rc, _, stderr = admin("federation", "agreement", "draft", "--id", ID, "--ours", "riverside",
                          "--theirs", "hillside", "--key", keys[0][0], "--our-wireguard-key", WG_A,
                          "--our-tunnel-address", "10.77.0.1", "--our-endpoint", "192.0.2.1:51820",
                          "--their-did", keys[1][1], "--their-wireguard-key", WG_B,
                          "--their-tunnel-address", "10.77.0.2", "--out", str(path), *extra)
    assert rc == 0, stderr
    return path


def sign(admin, path, key):
    rc, stdout, stderr = admin("federation", "agreement", "sign", str(path), "--key", key)
    assert rc == 0, stderr
    return stdout


def verify(admin, path, *extra):
    return admin("federation", "agreement", "verify", str(path), *extra)


def signed(admin, tmp_path, keys, *extra):
    path = draft(admin, tmp_path, keys, *extra)
    sign(admin, path, keys[0][0])
    sign(admin, path, keys[1][0])
    return path


# --- agreements ----------------------------------------------------------------

def test_draft_sign_by_both_verifies_and_python_agrees(admin, tmp_path, keys):
    path = draft(admin, tmp_path, keys, "--not-before", "2026-01-01T00:00:00Z", "--days", "3650")
    text = path.read_text()
    assert text.startswith("# Federation agreement between riverside and hillside")
    rc, _, stderr = verify(admin, path)
    assert rc == 1 and f"{path.name}: signatures: missing signature of riverside ({keys[0][1]})" in stderr, stderr

    out = sign(admin, path, keys[1][0])
    assert "signed as hillside" in out and "1 of the 2" in out, out
    out = sign(admin, path, keys[0][0])
    assert "2 of the 2" in out, out
    rc, stdout, stderr = verify(admin, path)
    assert rc == 0, stderr
    assert "in force" in stdout
    assert path.read_text().startswith(text.rstrip("\n").split("\nrelay: false")[0]), "only the signatures were added"

    rc, stdout, _ = admin("federation", "agreement", "show", str(path))
    assert rc == 0
    assert "status: in force" in stdout
    assert re.search(r"riverside\s+ok", stdout) and re.search(r"hillside\s+ok", stdout), stdout
    assert "riverside -> hillside (as observer: topics only)" in stdout, stdout

    # Signing again with the same key replaces its entry.
    sign(admin, path, keys[0][0])
    assert path.read_text().count("- did:") == 2

    # Independently: the document as the spec defines it, JCS, Ed25519.
    document = {
        "kind": "ntari/federation-agreement/v1", "id": ID, "version": 1,
        "parties": [
            {"coop": "riverside", "did": keys[0][1], "wireguard_key": WG_A,
             "tunnel_address": "10.77.0.1", "endpoint": "192.0.2.1:51820"},
            {"coop": "hillside", "did": keys[1][1], "wireguard_key": WG_B, "tunnel_address": "10.77.0.2"},
        ],
        "valid": {"not_before": "2026-01-01T00:00:00Z", "not_after": "2035-12-30T00:00:00Z"},
        "federation_domain": 77,
        "exports": {"riverside": {"topics": [], "services": []}, "hillside": {"topics": [], "services": []}},
        "trust": {"riverside": "observer", "hillside": "observer"},
        "relay": False,
    }
    sigs = dict(re.findall(r"- did: (did:key:\S+)\n\s+signature: ([0-9a-f]{128})", path.read_text()))
    assert set(sigs) == {keys[0][1], keys[1][1]}
    for did, sig in sigs.items():
        assert ed25519_verify(did_public_key(did), jcs(document), bytes.fromhex(sig)), did
        assert not ed25519_verify(did_public_key(did), jcs({**document, "version": 2}), bytes.fromhex(sig))


def test_one_byte_changed_is_tampering(admin, tmp_path, keys):
    path = signed(admin, tmp_path, keys)
    assert verify(admin, path)[0] == 0
    text = path.read_text()
    path.write_text(text.replace("tunnel_address: 10.77.0.2", "tunnel_address: 10.77.0.3"))
    rc, _, stderr = verify(admin, path)
    assert rc == 1
    assert (f"{path.name}: signatures: the signature of {keys[0][1]} does not verify over the "
            f"canonical form: the file changed after it was signed") in stderr, stderr
    rc, stdout, _ = admin("federation", "agreement", "show", str(path))
    assert rc == 1 and "(tampered)" in stdout and re.search(r"riverside\s+BAD", stdout), stdout

    # Comments are not signed content.
    path.write_text(text.replace("# DDS domain id", "# The DDS domain id"))
    assert verify(admin, path)[0] == 0

    # A broken value is a parse error with its YAML path.
    path.write_text(text.replace("tunnel_address: 10.77.0.2", "tunnel_address: 10.77.0.x"))
    rc, _, stderr = verify(admin, path)
    assert rc == 1 and f"{path.name}: parties[1].tunnel_address: invalid IP address" in stderr, stderr


def test_one_signature_missing(admin, tmp_path, keys):
    path = draft(admin, tmp_path, keys)
    sign(admin, path, keys[0][0])
    rc, _, stderr = verify(admin, path)
    assert rc == 1
    assert f"{path.name}: signatures: missing signature of hillside ({keys[1][1]})" in stderr, stderr


def test_signature_by_a_third_key(admin, tmp_path, keys):
    path = signed(admin, tmp_path, keys)
    # The tool refuses to sign with a key that is not a party...
    rc, _, stderr = admin("federation", "agreement", "sign", str(path), "--key", keys[2][0])
    assert rc == 1 and f"signature by {keys[2][1]}, which is not a party" in stderr, stderr
    # ...and a hand-added signature of a stranger makes it not in force.
    with path.open("a") as f:
        f.write(f"  - did: {keys[2][1]}\n    signature: {'ab' * 64}\n")
    rc, _, stderr = verify(admin, path)
    assert rc == 1
    assert f"{path.name}: signatures: signature by {keys[2][1]}, which is not a party" in stderr, stderr


def test_expired_and_not_yet_valid(admin, tmp_path, keys):
    path = signed(admin, tmp_path, keys, "--not-before", "2020-01-01T00:00:00Z", "--days", "1")
    rc, _, stderr = verify(admin, path)
    assert rc == 1 and f"{path.name}: valid.not_after: expired (since 2020-01-02T00:00:00Z)" in stderr, stderr
    rc, _, stderr = verify(admin, path, "--at", "2020-01-01T12:00:00Z")
    assert rc == 0, stderr

    path.unlink()   # draft never overwrites
    path = signed(admin, tmp_path, keys, "--not-before", "2099-01-01T00:00:00Z")
    rc, _, stderr = verify(admin, path)
    assert rc == 1 and f"{path.name}: valid.not_before: not yet valid (until 2099-01-01T00:00:00Z)" in stderr, stderr


def test_revoked(admin, tmp_path, keys):
    path = signed(admin, tmp_path, keys)
    # Into another directory first: only counts when that one is given.
    elsewhere = tmp_path / "received"
    rc, stdout, stderr = admin("federation", "agreement", "revoke", str(path), "--key", keys[1][0],
                               "--reason", "the partnership ended", "--out", str(elsewhere))
    assert rc == 0, stderr
    revocation = elsewhere / f"{ID}.revoked.yaml"
    assert revocation.is_file(), stdout
    assert verify(admin, path)[0] == 0
    rc, _, stderr = verify(admin, path, "--revocations", str(elsewhere))
    assert rc == 1 and re.search(
        rf"{path.name}: revoked by hillside at \S+Z, reason: the partnership ended", stderr), stderr

    # Beside the agreement (the default): always counts.
    revocation.unlink()
    rc, _, stderr = admin("federation", "agreement", "revoke", str(path), "--key", keys[0][0],
                          "--reason", "moving on")
    assert rc == 0, stderr
    assert (tmp_path / f"{ID}.revoked.yaml").is_file()
    rc, _, stderr = verify(admin, path)
    assert rc == 1 and "revoked by riverside" in stderr and "reason: moving on" in stderr, stderr

    # The revocation's own signature, independently.
    text = (tmp_path / f"{ID}.revoked.yaml").read_text()
    fields = dict(re.findall(r"^(\w+): (.*)$", text, re.M))
    doc = {k: (json.loads(v) if k in ("reason", "version", "revoked_at") else v) for k, v in fields.items() if k != "signature"}
    assert ed25519_verify(did_public_key(doc["by"]), jcs(doc), bytes.fromhex(fields["signature"]))

    # A stranger cannot revoke.
    rc, _, stderr = admin("federation", "agreement", "revoke", str(path), "--key", keys[2][0], "--reason", "x",
                          "--out", str(tmp_path / "stranger"))
    assert rc == 1 and "not a party" in stderr, stderr


# --- audit log -------------------------------------------------------------

def write_chain(path: Path, events):
    """A log as the spec defines it, written by Python."""
    prev = "0" * 64
    lines = []
    for seq, (event, detail) in enumerate(events, start=1):
        line = jcs({"seq": seq, "time": f"2026-12-01T12:00:0{seq}.000Z", "event": event,
                    "detail": detail, "prev": prev})
        prev = hashlib.sha256(line).hexdigest()
        lines.append(line)
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    return lines


def test_log_verifies_and_catches_an_edited_line(admin, tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    log = state / "audit.log"
    lines = write_chain(log, [("agreement_seen", {"id": ID}),
                              ("agreement_in_force", {"id": ID}),
                              ("route_up", {"topic": "/ntari/dns/health", "samples": 3}),
                              ("revoked", {"id": ID, "by": "hillside"})])
    rc, stdout, stderr = admin("federation", "log", "--state-dir", str(state))
    assert rc == 0, stderr
    assert "4 entries, hash chain intact" in stderr
    assert "route_up" in stdout and "agreement_in_force" in stdout
    rc, stdout, _ = admin("federation", "log", "--state-dir", str(state), "--json")
    assert rc == 0
    assert [json.loads(x)["event"] for x in stdout.splitlines()] == [
        "agreement_seen", "agreement_in_force", "route_up", "revoked"]

    # A changed value in line 3: the chain breaks at line 4.
    edited = list(lines)
    edited[2] = edited[2].replace(b'"samples":3', b'"samples":9')
    log.write_bytes(b"".join(x + b"\n" for x in edited))
    rc, _, stderr = admin("federation", "log", "--state-dir", str(state))
    assert rc == 1 and "audit.log: line 4: `prev` does not match the hash of line 3" in stderr, stderr

    # A line removed: caught where it was.
    log.write_bytes(b"".join(x + b"\n" for x in lines[:1] + lines[2:]))
    rc, _, stderr = admin("federation", "log", "--state-dir", str(state))
    assert rc == 1 and "line 2:" in stderr, stderr

    # No log at all is a file error, not a broken chain.
    rc, _, stderr = admin("federation", "log", "--state-dir", str(tmp_path / "none"))
    assert rc == 6 and "audit.log" in stderr, stderr

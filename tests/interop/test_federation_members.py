"""`ntari-admin federation invite | join | approve | refuse | set-trust |
remove`, on the files, without a running bridge: what each writes, what
it refuses and how it says so. The invite code's signature and the
record's proof key are checked here independently of the Rust code,
from docs/schemas.md (Ed25519, did:key and JCS from test_federation_admin).
The exchange itself runs in services/federation/tests/join.rs and, end to
end with rclpy, in tests/ros2/test_federation_join.py.
"""

import base64
import hashlib
import json
from pathlib import Path

import pytest

from test_federation_admin import (ID, WG_A, WG_B, admin, did_public_key, draft, ed25519_verify,  # noqa: F401
                                   jcs, keys, sign, verify)


@pytest.fixture
def hub(tmp_path, keys):
    """riverside's federation.toml, agreements dir and state dir."""
    agreements = tmp_path / "agreements"
    agreements.mkdir()
    config = tmp_path / "federation.toml"
    config.write_text(f'coop = "riverside"\ninterface = "wg-test"\nagreements_dir = "{agreements}"\n'
                      f'node_key = "{keys[0][0]}"\n')
    state = tmp_path / "state"
    return {"config": config, "agreements": agreements, "state": state,
            "args": ["--config", str(config), "--state-dir", str(state), "--run-dir", str(tmp_path / "run")]}


def fed(admin, hub, *args):
    return admin("federation", *args, *hub["args"])


def invite(admin, hub, *extra):
    return fed(admin, hub, "invite", "--coop", "hillside", "--trust", "observer", "--address", "192.0.2.1",
               "--wireguard-key", WG_A, "--tunnel-address", "10.77.0.1", "--no-qr", *extra)


def b64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def events(admin, hub):
    rc, stdout, stderr = admin("federation", "log", "--state-dir", str(hub["state"]), "--json")
    assert rc == 0, stderr          # the chain holds
    return [json.loads(line)["event"] for line in stdout.splitlines()]


def test_the_invite_code_and_record_are_as_documented(admin, hub, keys):
    rc, stdout, stderr = invite(admin, hub, "--expires", "2h")
    assert rc == 0, stderr
    # No bridge runs here: the admin is told the endpoint is not open.
    assert "has not opened the join endpoint" in stderr
    code = stdout.strip().splitlines()[-1]
    assert code.startswith("ntari-invite-1.") and len(code) < 600
    payload = json.loads(b64(code[len("ntari-invite-1."):]))
    sig = b64(payload.pop("sig"))
    assert payload["did"] == keys[0][1] and payload["for"] == "hillside" and payload["trust"] == "observer"
    assert payload["join"] == "192.0.2.1:9708"
    assert ed25519_verify(did_public_key(payload["did"]), b"ntari-invite-v1\n" + jcs(payload), sig)

    (record_file,) = (hub["state"] / "invites").glob("*.json")
    assert record_file.stat().st_mode & 0o777 == 0o600
    record = json.loads(record_file.read_text())
    secret = b64(payload["secret"])
    assert record["proof_key"] == hashlib.sha256(b"ntari-invite-proof-v1\n" + secret).hexdigest()
    assert payload["secret"] not in record_file.read_text()
    assert record["state"] == "pending" and record["id"] == payload["id"]
    assert record["federation_domain"] == 77
    assert record["inviter"]["endpoint"] == "192.0.2.1:51820"
    assert "invite_created" in events(admin, hub)

    # withdraw: refused from now on, and only once.
    assert fed(admin, hub, "withdraw", record["id"])[0] == 0
    assert json.loads(record_file.read_text())["state"] == "withdrawn"
    rc, _, stderr = fed(admin, hub, "withdraw", record["id"])
    assert rc != 0 and "no longer pending" in stderr
    assert "invite_withdrawn" in events(admin, hub)


@pytest.mark.parametrize("extra, message", [
    (["--coop", "riverside"], "this hub's own cooperative"),
    (["--coop", "Hill Side"], "not a cooperative name"),
    (["--expires", "10s"], "between 1m and 30d"),
    (["--expires", "60d"], "between 1m and 30d"),
    (["--domain", "500"], "0..=232"),
    (["--trust", "untrusted"], "invalid value 'untrusted'"),
])
def test_invite_refuses_bad_arguments(admin, hub, extra, message):
    args = {"--coop": "hillside", "--trust": "observer", "--address": "192.0.2.1"}
    for flag, value in zip(extra[::2], extra[1::2]):
        args[flag] = value
    rc, _, stderr = fed(admin, hub, "invite", *[x for kv in args.items() for x in kv],
                        "--wireguard-key", WG_A, "--tunnel-address", "10.77.0.1", "--no-qr")
    assert rc != 0 and message in stderr, stderr
    invites = hub["state"] / "invites"
    assert not invites.exists() or not list(invites.glob("*.json")), "a refused invite left a record"


def test_a_bad_template_is_refused_naming_the_field(admin, hub, tmp_path):
    template = tmp_path / "template.yaml"
    template.write_text("kind: ntari/federation-template/v1\nexports:\n  joiner:\n    topics:\n"
                        "      - name: not a topic\n        type: std_msgs/msg/Bool\n")
    rc, _, stderr = invite(admin, hub, "--template", str(template))
    assert rc != 0 and "exports.joiner.topics[0].name" in stderr and str(template) in stderr, stderr
    rc, _, _ = invite(admin, hub, "--template", str(Path(__file__).parents[2] / "examples" / "federation"
                                                     / "template.yaml"))
    assert rc == 0


def test_join_refuses_changed_and_foreign_codes_before_connecting(admin, hub, tmp_path, keys):
    rc, stdout, _ = invite(admin, hub)
    code = stdout.strip().splitlines()[-1]
    # hillside's hub
    b_agreements = tmp_path / "b-agreements"
    b_agreements.mkdir()
    b_config = tmp_path / "b.toml"
    b_config.write_text(f'coop = "hillside"\ninterface = "wg-b"\nagreements_dir = "{b_agreements}"\n'
                        f'node_key = "{keys[1][0]}"\n')
    b_args = ["--config", str(b_config), "--state-dir", str(tmp_path / "b-state"), "--wireguard-key", WG_B,
              "--tunnel-address", "10.77.0.2"]
    i = len(code) // 2
    changed = code[:i] + ("A" if code[i] != "A" else "B") + code[i + 1:]
    rc, _, stderr = admin("federation", "join", changed, *b_args)
    assert rc != 0 and "changed or damaged" in stderr, stderr
    rc, _, stderr = admin("federation", "join", "hello", *b_args)
    assert rc != 0 and "does not start with `ntari-invite-1.`" in stderr, stderr
    # A code for hillside, joined from a hub that is lakeside.
    b_config.write_text(b_config.read_text().replace('"hillside"', '"lakeside"'))
    rc, _, stderr = admin("federation", "join", code, *b_args)
    assert rc != 0 and "this invite is for cooperative `hillside`" in stderr, stderr
    assert not list(b_agreements.iterdir())


def test_approve_refuse_set_trust_and_remove(admin, hub, tmp_path, keys):
    pending = hub["state"] / "pending"
    pending.mkdir(parents=True)
    # A join's draft, as the bridge leaves it: signed by hillside only.
    path = draft(admin, tmp_path, keys)
    sign(admin, path, keys[1][0])
    (pending / f"{ID}.yaml").write_text(path.read_text())
    listed = json.loads(fed(admin, hub, "list", "--json")[1])
    assert [(p["partner"], p["state"], p["we_grant"]) for p in listed["partners"]] == \
        [("hillside", "awaiting_approval", "untrusted (pending)")]

    rc, _, stderr = fed(admin, hub, "approve", ID)
    assert rc == 0, stderr
    installed = hub["agreements"] / f"{ID}.yaml"
    assert verify(admin, installed)[0] == 0 and not (pending / f"{ID}.yaml").exists()
    rc, _, stderr = fed(admin, hub, "approve", ID)
    assert rc != 0 and "no draft" in stderr

    # A draft whose joiner signature does not hold is not approved.
    forged = path.read_text().replace("10.77.0.2", "10.77.0.9")
    (pending / "forged.yaml").write_text(forged.replace(f"id: {ID}", "id: forged"))
    rc, _, stderr = fed(admin, hub, "approve", "forged")
    assert rc != 0 and "does not verify" in stderr, stderr
    rc, _, stderr = fed(admin, hub, "refuse", "forged", "--reason", "not what we agreed")
    assert rc == 0 and not (pending / "forged.yaml").exists()

    # set-trust: never above the agreement (observer), lowering is signed.
    rc, _, stderr = fed(admin, hub, "set-trust", "hillside", "trusted")
    assert rc != 0 and "at most observer" in stderr, stderr
    assert fed(admin, hub, "set-trust", "hillside", "untrusted")[0] == 0
    trust_file = hub["state"] / "trust" / f"{ID}.json"
    envelope = json.loads(trust_file.read_text())
    assert envelope["issuer"] == keys[0][1] and envelope["payload"]["trust"] == "untrusted"
    listed = json.loads(fed(admin, hub, "list", "--json")[1])
    assert listed["partners"][0]["we_grant"] == "untrusted"
    assert fed(admin, hub, "set-trust", "hillside", "observer")[0] == 0
    assert not trust_file.exists(), "back to the agreement's level: no override left"
    rc, _, stderr = fed(admin, hub, "set-trust", "nobody", "untrusted")
    assert rc != 0 and "no agreement with `nobody`" in stderr

    # remove: the co-signed agreement is revoked, a never co-signed draft
    # simply goes.
    rc, _, stderr = fed(admin, hub, "remove", "hillside", "--reason", "the test ends")
    assert rc == 0, stderr
    assert (hub["agreements"] / f"{ID}.revoked.yaml").exists()
    assert verify(admin, installed)[0] != 0
    lonely = draft(admin, tmp_path, keys, name="lakeside.yaml")
    text = lonely.read_text().replace(f"id: {ID}", "id: riverside-lakeside").replace("hillside", "lakeside")
    (hub["agreements"] / "riverside-lakeside.yaml").write_text(text)
    sign(admin, hub["agreements"] / "riverside-lakeside.yaml", keys[0][0])
    rc, _, stderr = fed(admin, hub, "remove", "lakeside", "--reason", "never approved")
    assert rc == 0 and "Removed the draft" in stderr, stderr
    assert not (hub["agreements"] / "riverside-lakeside.yaml").exists()
    assert not (hub["agreements"] / "riverside-lakeside.revoked.yaml").exists()

    logged = events(admin, hub)
    for e in ("agreement_approved", "agreement_refused_by_admin", "trust_set", "partner_removed", "draft_removed"):
        assert e in logged, (e, logged)

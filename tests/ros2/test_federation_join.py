"""Joining a federation by invite, end to end, seen by real rclpy.

coop_a invites coop_b with the real `ntari-admin federation invite`; coop_b
joins with `ntari-admin federation join <code>`; coop_a's admin approves.
No key is copied by hand: the WireGuard keys, tunnel addresses and DIDs
travel in the join, the agreement is drafted from the invite's template
and co-signed, and coop_b's bridge installs coop_a's co-signed copy when
it arrives over the tunnel. Real rclpy in coop_b then sees coop_a's nodes
under /remote/coop_a/. Then what a volunteer admin does next (list,
set-trust, remove) and the bad input a join endpoint meets. Harness:
tests/interop/federation_net.py, fixtures from test_federation.py.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time

from test_federation import domain_id, federation, pytestmark, wait_for  # noqa: F401 (fixtures)

JOIN_PORT = 9708
AGREEMENT = "coop-a-coop-b"


def admin(coop, *argv, check=True):
    """`ntari-admin federation …` inside the cooperative's namespace, on
    its own files."""
    hub = ["--config", coop.dir / "federation.toml", "--state-dir", coop.fed_state, "--run-dir", coop.fed_run]
    out = coop.run([coop.fed.bin / "ntari-admin", "federation", *argv, *hub], check=False, timeout=60)
    if check and out.returncode != 0:
        raise AssertionError(f"ntari-admin federation {' '.join(map(str, argv))} failed:\n{out.stdout}\n{out.stderr}")
    return out


def listening(coop) -> bool:
    out = coop.run(["ss", "-Hltn", f"sport = :{JOIN_PORT}"], check=False)
    return bool(out.stdout.strip())


def audit_events(coop):
    out = subprocess.run([coop.fed.bin / "ntari-admin", "federation", "log", "--state-dir", coop.fed_state,
                          "--json"], capture_output=True, text=True, timeout=20)
    assert out.returncode == 0, out.stderr   # the hash chain holds with two writers
    return [json.loads(line) for line in out.stdout.splitlines()]


def send_raw(coop, host: str, payload: bytes) -> str:
    """Bytes to a join endpoint from inside `coop`'s namespace; the answer."""
    script = ("import socket,sys\ns=socket.create_connection((sys.argv[1],int(sys.argv[2])),5)\n"
              "s.sendall(sys.stdin.buffer.read())\ns.settimeout(15)\nb=b''\n"
              "while True:\n  d=s.recv(65536)\n  if not d: break\n  b+=d\nprint(b.decode(errors='replace'))")
    out = coop.run(["python3", "-c", script, host, str(JOIN_PORT)], check=False, input=payload.decode(),
                   timeout=30)
    return out.stdout


def wg_up(coop) -> bool:
    return coop.run(["wg", "show", coop.iface, "public-key"], check=False).returncode == 0


def test_invite_join_approve_then_rclpy_sees_the_partner_and_admin_changes_take_effect(federation):
    fed = federation
    a = fed.add("coop_a", services=("dns",))
    b = fed.add("coop_b")
    wait_for(lambda: wg_up(a) and wg_up(b), 20, "both tunnels' interfaces")
    wait_for(lambda: a.bridge_state().get("join") is not None, 20, "coop_a's bridge")
    assert not listening(a), "the join endpoint listens with no invite pending"

    # The invite: a code and a QR code, with keys and addresses read from
    # the running interface (nothing given by hand but the public address).
    out = admin(a, "invite", "--coop", "coop_b", "--trust", "observer", "--expires", "1h",
                "--address", a.address)
    code = out.stdout.strip().splitlines()[-1]
    assert code.startswith("ntari-invite-1."), out.stdout
    assert "█" in out.stdout or "▀" in out.stdout, "no QR code printed"
    record = json.loads(next((a.fed_state / "invites").glob("*.json")).read_text())
    assert record["state"] == "pending" and "secret" not in record
    wait_for(lambda: listening(a), 5, "the join endpoint to open")

    # A tampered code is refused before anything is sent.
    i = len(code) // 2
    tampered = code[:i] + ("A" if code[i] != "A" else "B") + code[i + 1:]
    out = admin(b, "join", tampered, check=False)
    assert out.returncode != 0 and "changed or damaged" in out.stderr, out.stderr

    started = time.monotonic()
    admin(b, "join", code)
    joined_s = time.monotonic() - started
    assert (b.agreements / f"{AGREEMENT}.yaml").exists()
    wait_for(lambda: not listening(a), 5, "the join endpoint to close after the last invite was used")

    # Until approval: coop_a has no WireGuard peer for coop_b, nothing flows.
    wait_for(lambda: b.link(AGREEMENT).get("state") == "awaiting_partner", 10, "coop_b awaiting approval")
    time.sleep(2)
    assert a.wg_peers() == [], "a peer before approval"
    assert b.wg_peers() == [a.wg_public]
    assert (a.fed_state / "pending" / f"{AGREEMENT}.yaml").exists()
    listed = json.loads(admin(a, "list", "--json").stdout)
    assert [(p["partner"], p["state"]) for p in listed["partners"]] == [("coop_b", "awaiting_approval")], listed

    obs = fed.new_observer("coop_b")
    obs.subscribe("/remote/coop_a/ntari/dns/health", "std_msgs/msg/Bool")
    approved = time.monotonic()
    admin(a, "approve", AGREEMENT)
    first = obs.wait_message("/remote/coop_a/ntari/dns/health", 40)
    took = time.monotonic() - approved
    assert first is not None and first["data"] is True, fed.logs()
    print(f"join took {joined_s:.2f} s; approve to first /remote sample on coop_b: {took:.1f} s")
    assert "/remote/coop_a/ntari/ntari_dns_node" in obs.nodes()

    # coop_b's bridge installed coop_a's co-signed copy: both signatures.
    verify = subprocess.run([fed.bin / "ntari-admin", "federation", "agreement", "verify",
                             b.agreements / f"{AGREEMENT}.yaml"], capture_output=True, text=True, timeout=20)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    wait_for(lambda: b.link(AGREEMENT).get("state") == "in_force", 5, "coop_b's bridge to use it")
    listed = json.loads(admin(b, "list", "--json").stdout)
    row = listed["partners"][0]
    assert (row["partner"], row["we_grant"], row["they_grant"]) == ("coop_a", "observer", "observer"), row
    assert row["handshake_age_s"] is not None and row["handshake_age_s"] < 180, row
    assert "coop_a" in admin(b, "list").stdout
    events = [e["event"] for e in audit_events(a)]
    for e in ("invite_created", "join_endpoint_opened", "invite_redeemed", "join_endpoint_closed",
              "agreement_approved", "agreement_in_force"):
        assert e in events, (e, events)
    assert "agreement_approved_by_partner" in [e["event"] for e in audit_events(b)]

    # A second invite keeps the endpoint open; the used code is refused
    # (and audited); garbage is refused; the endpoint keeps serving.
    admin(a, "invite", "--coop", "coop_c", "--trust", "observer", "--address", a.address, "--no-qr")
    wait_for(lambda: listening(a), 5, "the endpoint to open again")
    out = admin(b, "join", code, check=False)
    assert out.returncode != 0 and "redeemed" in out.stderr, out.stderr
    assert "refused" in send_raw(b, a.address, b"this is not json\n")
    assert "oversized" in send_raw(b, a.address, b"x" * 70000 + b"\n")
    refused = [e["detail"]["reason"] for e in audit_events(a) if e["event"] == "join_refused"]
    assert refused[-3:] == ["redeemed", "malformed", "oversized"], refused
    assert listening(a) and a.procs["federation"].poll() is None
    invite_c = next(r for r in (json.loads(p.read_text()) for p in (a.fed_state / "invites").glob("*.json"))
                    if r["for_coop"] == "coop_c")
    admin(a, "withdraw", invite_c["id"])
    wait_for(lambda: not listening(a), 5, "the endpoint to close once the last invite is withdrawn")

    # set-trust: coop_a stops sending at once, and cannot grant more than agreed.
    out = admin(a, "set-trust", "coop_b", "trusted", check=False)
    assert out.returncode != 0 and "at most observer" in out.stderr, out.stderr
    admin(a, "set-trust", "coop_b", "untrusted")
    wait_for(lambda: (b.link(AGREEMENT).get("link") or {}).get("routes_in", 1) == 0, 15,
             "coop_b's imports to stop")
    admin(a, "set-trust", "coop_b", "observer")
    wait_for(lambda: (b.link(AGREEMENT).get("link") or {}).get("routes_in", 0) > 0, 30,
             "coop_b's imports to come back")

    # remove: the agreement is revoked and coop_b is told over the tunnel.
    admin(a, "remove", "coop_b", "--reason", "the test ends")
    wait_for(lambda: b.link(AGREEMENT).get("state") == "revoked", 10, "coop_b told of the removal")
    wait_for(lambda: a.wg_peers() == [], 5, "coop_a's peer for coop_b to go")
    events = [e["event"] for e in audit_events(a)]
    assert "trust_set" in events and "partner_removed" in events and "invite_withdrawn" in events

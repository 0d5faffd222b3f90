"""A hub relaying between members that cannot reach each other, seen by
real rclpy.

Three cooperatives (tests/interop/federation_net.py): coop_a and coop_c
reach only coop_h (a blackhole route stands for the NATs between them).
coop_h has an agreement with each; coop_a and coop_c have one with each
other, without endpoints (neither can be reached). The hub forwards their
WireGuard traffic only when both of its agreements allow relaying; then
coop_c's real rclpy sees coop_a's nodes, the hub's ntari-vpn counts the
bytes relayed per member, and both members' bridges say "relayed via
coop_h".
"""

from __future__ import annotations

import json
import time

from test_federation import domain_id, federation, pytestmark, wait_for  # noqa: F401 (fixtures)

HEALTH = """    topics:
      - name: /ntari/*/health
        type: std_msgs/msg/Bool"""


def relay_table(hub) -> bool:
    out = hub.run(["nft", "list", "tables"], check=False)
    return "ntari_relay" in out.stdout


def vpn_relay(obs) -> list:
    """The relay detail of the latest /ntari/vpn/status coop_h's observer has."""
    statuses = obs.received("/ntari/vpn/status")
    if not statuses:
        return []
    payload = json.loads(statuses[-1]["data"])["payload"]
    return (payload.get("detail") or {}).get("relay") or []


def test_a_hub_relays_between_members_only_when_both_allow_it(federation):
    fed = federation
    a = fed.add("coop_a", services=("dns",))
    h = fed.add("coop_h")
    c = fed.add("coop_c")
    a.unreachable(c)
    assert a.run(["ping", "-c", "1", "-W", "1", c.address], check=False).returncode != 0
    fed.agreement("coop_h", "coop_a", domain=41, relay=True)
    fed.agreement("coop_h", "coop_c", domain=42, relay=False)
    fed.agreement("coop_a", "coop_c", domain=43, exports_a=HEALTH, endpoints=False)
    obs = fed.new_observer("coop_c")
    obs.subscribe("/remote/coop_a/ntari/dns/health", "std_msgs/msg/Bool")
    seen = lambda coop, agreement: (coop.link(agreement).get("link") or {}).get("partner_seen")
    wait_for(lambda: seen(h, "coop-h-coop-a") and seen(h, "coop-h-coop-c"), 40, "the hub's two links")

    # coop_c's agreement with the hub does not allow relaying: nothing is.
    obs.pump(5)
    assert obs.received("/remote/coop_a/ntari/dns/health") == []
    assert not relay_table(h)
    assert h.run(["cat", f"/proc/sys/net/ipv4/conf/{h.iface}/forwarding"]).stdout.strip() == "0"
    assert a.link("coop-a-coop-c").get("relayed_via") is None

    # coop_c agrees (version 2, co-signed): the hub relays.
    consented = time.monotonic()
    fed.agreement("coop_h", "coop_c", domain=42, relay=True, version=2)
    first = obs.wait_message("/remote/coop_a/ntari/dns/health", 45)
    assert first is not None and first["data"] is True, fed.logs()
    print(f"consent to first relayed sample: {time.monotonic() - consented:.1f} s")
    assert a.link("coop-a-coop-c").get("relayed_via") == "coop_h"
    assert c.link("coop-a-coop-c").get("relayed_via") == "coop_h"
    assert relay_table(h)
    # Still no direct path: the traffic went through the hub.
    assert a.run(["ping", "-c", "1", "-W", "1", c.address], check=False).returncode != 0
    assert a.wg_peers() == [h.wg_public] and c.wg_peers() == [h.wg_public]

    # The hub counts what it relays, per member, in ntari-vpn's status.
    hub_obs = fed.new_observer("coop_h")
    hub_obs.subscribe("/ntari/vpn/status", "std_msgs/msg/String", latched=True)

    def counted():
        hub_obs.pump(0.5)
        relay = {m["peer"]: m for m in vpn_relay(hub_obs)}
        both = [relay.get("federation:coop-h-coop-a"), relay.get("federation:coop-h-coop-c")]
        return all(m and m["relayed_sent_bytes"] > 0 and m["relayed_received_bytes"] > 0 for m in both) and relay
    relay = wait_for(counted, 30, "relayed bytes per member in coop_h's vpn status")
    print("relayed bytes:", {k: (v["relayed_sent_bytes"], v["relayed_received_bytes"]) for k, v in relay.items()})

    # The member's `list` says so.
    hub_args = ["--config", a.dir / "federation.toml", "--state-dir", a.fed_state, "--run-dir", a.fed_run]
    out = a.run([fed.bin / "ntari-admin", "federation", "list", *hub_args])
    assert "relayed via coop_h" in out.stdout, out.stdout

    # The hub withdraws relaying for coop_a (version 2, relay: false): it stops.
    fed.agreement("coop_h", "coop_a", domain=41, relay=False, version=2)
    wait_for(lambda: not relay_table(h), 15, "the hub's relay to go")
    assert h.run(["cat", f"/proc/sys/net/ipv4/conf/{h.iface}/forwarding"]).stdout.strip() == "0"
    wait_for(lambda: a.link("coop-a-coop-c").get("relayed_via") is None, 15, "coop_a to stop routing via the hub")

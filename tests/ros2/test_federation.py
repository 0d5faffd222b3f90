"""Federation between cooperatives, end to end, seen by real rclpy.

Two (then three) cooperatives, each in its own network namespace with its
own loopback and so its own local DDS domain, joined by veth pairs on a
bridge that stands for the internet (tests/interop/federation_net.py).
In each: ntari-vpn (boringtun), ntari-federation and, in coop_a, real
ntari-dns and ntari-ntp nodes. The agreements are signed with the real
`ntari-admin federation agreement sign`; the WireGuard peers come only
from them. From coop_b, real rclpy (netns_observer.py) sees coop_a's
nodes under /remote/coop_a/; service calls use the Python cyclonedds
client in rmw_cyclonedds' format (ROS 2 services do not cross RMW
vendors), also inside coop_b.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

import netns
from federation_net import REPO, Federation

pytestmark = pytest.mark.skipif(
    netns.available() is not None or not os.path.exists("/dev/net/tun") or shutil.which("wg") is None,
    reason=f"needs root, ip netns, /dev/net/tun and wg: {netns.available()}")

HEALTH_EXPORTS = """    topics:
      - name: /ntari/*/health
        type: std_msgs/msg/Bool
      - name: /ntari/dns/status
        type: std_msgs/msg/String
    services:
      - name: /ntari/ntari_dns_node/get_state
        type: lifecycle_msgs/srv/GetState"""

GET_STATE = """
import sys
sys.path.insert(0, {interop!r})
from rosgraph import Graph
g = Graph({domain})
c = g.service_client({service!r}, "lifecycle_msgs/srv/GetState")
if not c.wait_for_service({wait}):
    print("unavailable")
else:
    print(c.call(5).current_state.label)
"""


def get_state(coop, service: str, domain: int, wait: float) -> str:
    script = GET_STATE.format(interop=str(REPO / "tests" / "interop"), domain=domain, service=service, wait=wait)
    out = coop.run([REPO / ".venv" / "bin" / "python", "-c", script], check=False, timeout=wait + 20,
                   env=coop.fed.env)
    return (out.stdout.strip().splitlines() or [out.stderr.strip()])[-1]


def wait_for(cond, timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture
def federation(tmp_path, domain_id, request):
    fed = Federation(tmp_path, Path(os.environ.get("NTARI_BIN_DIR", REPO / "target" / "debug")), domain_id)
    observers = []
    fed.create()
    fed.new_observer = lambda coop: observers.append(fed.observer(coop)) or observers[-1]
    try:
        yield fed
    finally:
        for o in observers:
            o.close()
        print(fed.logs())   # pytest shows it only for a failing test
        fed.remove()


@pytest.fixture
def domain_id():
    """The cooperatives' local domain: random, but never one of the
    federation domains these tests use (41-49; the bridge rightly refuses
    an agreement on the hub's own domain)."""
    import random
    return random.SystemRandom().randrange(100, 200)


def routes_in(coop, agreement: str) -> int:
    return (coop.link(agreement).get("link") or {}).get("routes_in", 0)


def test_two_cooperatives_health_status_nodes_services_and_a_link_cut(federation):
    fed = federation
    a = fed.add("coop_a", services=("dns", "ntp"))
    b = fed.add("coop_b")
    fed.agreement("coop_a", "coop_b", domain=41, exports_a=HEALTH_EXPORTS, trust_a="observer")
    obs = fed.new_observer("coop_b")
    obs.subscribe("/remote/coop_a/ntari/dns/health", "std_msgs/msg/Bool")
    try:
        wait_for(lambda: routes_in(b, "coop-a-coop-b") >= 4, 40, "coop_b importing coop_a's routes")
        first = obs.wait_message("/remote/coop_a/ntari/dns/health", 15)
    except AssertionError:
        print(fed.logs())
        raise
    assert first is not None and first["data"] is True, fed.logs()

    # The WireGuard peer came from the agreement, nowhere else.
    assert a.wg_peers() == [b.wg_public] and b.wg_peers() == [a.wg_public]

    # A late subscriber gets the latched status (one sample, the last).
    late = fed.new_observer("coop_b")
    late.subscribe("/remote/coop_a/ntari/dns/status", "std_msgs/msg/String", latched=True)
    status = late.wait_message("/remote/coop_a/ntari/dns/status", 10)
    assert status is not None and json.loads(status["data"])["payload"]["service"] == "dns"

    # ros2 node list: the partner's nodes as proxies under /remote/coop_a.
    nodes = obs.nodes()
    assert "/remote/coop_a/ntari/ntari_dns_node" in nodes and "/remote/coop_a/ntari/ntari_ntp_node" in nodes
    pubs = obs.ask(op="publishers", topic="/remote/coop_a/ntari/dns/health")["publishers"]
    assert [p["node"] for p in pubs] == ["/remote/coop_a/ntari/ntari_dns_node"]

    # Not in the agreement: a topic published in coop_a for the purpose,
    # and ntp's status (only dns/status is listed). Never on coop_b's graph.
    pub = fed.new_observer("coop_a")
    assert pub.ask(op="publish", topic="/ntari/secret/minutes", type="std_msgs/msg/String",
                   data="board minutes", latched=True).get("ok")
    time.sleep(3)
    topics = obs.topics()
    assert not any("secret" in t for t in topics), topics
    assert "/remote/coop_a/ntari/ntp/status" not in topics
    assert "/remote/coop_a/ntari/ntp/health" in topics

    # As an observer, coop_b's lifecycle call is not forwarded.
    assert get_state(b, "/remote/coop_a/ntari/ntari_dns_node/get_state", fed.domain_id, 4) == "unavailable"

    # Link cut for 10 s, then restored: samples again within 5 s, none twice.
    obs.subscribe("/remote/coop_a/ntari/dns/status", "std_msgs/msg/String", latched=True)
    obs.pump(2)
    a.cut()
    obs.pump(10)
    a.restore()
    restored = time.monotonic()
    again = obs.wait_message("/remote/coop_a/ntari/dns/health", 5, after=restored)
    assert again is not None, "no health sample within 5 s of the link coming back"
    obs.pump(12)   # a status (every 10 s) after the cut
    statuses = [m["data"] for m in obs.received("/remote/coop_a/ntari/dns/status")]
    assert len(statuses) == len(set(statuses)), "a status sample arrived twice"
    after_cut = fed.new_observer("coop_b")
    after_cut.subscribe("/remote/coop_a/ntari/dns/status", "std_msgs/msg/String", latched=True)
    assert after_cut.wait_message("/remote/coop_a/ntari/dns/status", 10) is not None

    # Now trusted (version 2 replaces version 1): get_state is forwarded.
    text = fed.agreement("coop_a", "coop_b", domain=41, exports_a=HEALTH_EXPORTS, trust_a="trusted", sign=(),
                          install=False)
    text = text.replace("version: 1", "version: 2", 1)
    path = fed.root / "coop-a-coop-b.yaml"
    path.write_text(text)
    for signer in ("coop_a", "coop_b"):
        subprocess.run([fed.bin / "ntari-admin", "federation", "agreement", "sign", path, "--key",
                        fed.coops[signer].key, "--node-config", fed.coops[signer].dir / "ntari.toml"], check=True,
                       capture_output=True)
    fed.install(path.read_text(), "coop-a-coop-b", "coop_a", "coop_b")
    assert get_state(b, "/remote/coop_a/ntari/ntari_dns_node/get_state", fed.domain_id, 20) == "active", fed.logs()

    # The audit log verifies and recorded the routes.
    log = subprocess.run([fed.bin / "ntari-admin", "federation", "log", "--state-dir", b.fed_state, "--json"],
                         capture_output=True, text=True)
    assert log.returncode == 0, log.stdout + log.stderr
    events = [json.loads(l)["event"] for l in log.stdout.splitlines() if l.startswith("{")]
    assert {"agreement_seen", "signatures_checked", "agreement_in_force", "route_up", "peer_added"} <= set(events), events


def test_expiry_tamper_missing_signature_and_wrong_key(federation):
    fed = federation
    a = fed.add("coop_a", services=("ntp",))
    b = fed.add("coop_b")
    ends = time.time() + 25
    fed.agreement("coop_a", "coop_b", domain=42, exports_a=HEALTH_EXPORTS, not_after=ends)
    wait_for(lambda: routes_in(b, "coop-a-coop-b") >= 1, 20, "routes up")
    assert b.wg_peers() == [a.wg_public]
    obs = fed.new_observer("coop_b")
    wait_for(lambda: "/remote/coop_a/ntari/ntari_ntp_node" in obs.nodes(), 10, "the proxy node")

    # Broken copies beside it, each refused with its own message.
    good = (b.agreements / "coop-a-coop-b.yaml").read_text()
    tampered = good.replace("federation_domain: 42", "federation_domain: 43", 1)   # one byte
    fed.install(tampered.replace("id: coop-a-coop-b", "id: tampered", 1), "tampered", "coop_b")
    one = fed.agreement("coop_a", "coop_b", domain=47, exports_a=HEALTH_EXPORTS, agreement_id="one-signature",
                        sign=("coop_a",), install=False)
    fed.install(one, "one-signature", "coop_b")
    c = fed.add("coop_c")
    # A signature entry by a key that is no party (ntari-admin refuses to
    # make one: checked in tests/interop/test_federation_admin.py).
    stranger = one + f"  - did: {c.did}\n    signature: {'ab' * 64}\n"
    fed.install(stranger.replace("id: one-signature", "id: wrong-key", 1), "wrong-key", "coop_b")

    def states():
        return {x["id"]: (x["state"], x.get("message") or "") for x in b.bridge_state().get("agreements", [])}

    wait_for(lambda: {"tampered", "one-signature", "wrong-key"} <= set(states()), 10, "the broken agreements checked")
    s = states()
    assert s["tampered"][0] == "tampered" and "tampered.yaml" in s["tampered"][1], s
    assert s["one-signature"][0] == "missing_signature" and "coop_b" in s["one-signature"][1], s
    assert s["wrong-key"][0] in ("unknown_signer", "tampered"), s
    assert c.did in s["wrong-key"][1] or s["wrong-key"][0] == "tampered", s
    assert s["coop-a-coop-b"][0] == "in_force", s

    # Expiry: routes, proxy nodes and the WireGuard peer go.
    wait_for(lambda: time.time() >= ends, 30, "the end of the window", interval=0.1)
    wait_for(lambda: states()["coop-a-coop-b"][0] == "expired", 3, "expired in the bridge state", interval=0.05)
    wait_for(lambda: b.wg_peers() == [] and a.wg_peers() == [], 3, "WireGuard peers removed", interval=0.1)
    gone_after = time.time() - ends
    assert not any(n.startswith("/remote/") for n in obs.nodes())
    assert gone_after < 3.0, gone_after


def test_a_revocation_reaches_the_partner_over_the_link_and_ends_everything(federation):
    fed = federation
    a = fed.add("coop_a", services=("ntp",))
    b = fed.add("coop_b")
    fed.agreement("coop_a", "coop_b", domain=49, exports_a=HEALTH_EXPORTS)
    obs = fed.new_observer("coop_b")
    proxy = "/remote/coop_a/ntari/ntari_ntp_node"
    wait_for(lambda: proxy in obs.nodes(), 40, "coop_a's proxy node on coop_b")
    # coop_a's operator revokes; only coop_a's agreements dir gets the file.
    out = subprocess.run([fed.bin / "ntari-admin", "federation", "agreement", "revoke",
                          a.agreements / "coop-a-coop-b.yaml", "--reason", "the partnership ended",
                          "--key", a.key, "--node-config", a.dir / "ntari.toml"], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    revoked = time.monotonic()
    # coop_b learns it over the link: saved in its state dir, verified, honoured.
    saved = b.fed_state / "revocations" / "coop-a-coop-b.revoked.yaml"
    wait_for(saved.exists, 5, "the revocation saved by coop_b's bridge")
    state = wait_for(lambda: b.link("coop-a-coop-b").get("state") == "revoked" and b.link("coop-a-coop-b"), 5,
                     "coop_b's bridge calling the agreement revoked")
    assert "partnership ended" in state["message"], state
    wait_for(lambda: b.wg_peers() == [] and a.wg_peers() == [], 5, "both WireGuard peers removed")
    wait_for(lambda: proxy not in obs.nodes(), 5, "the proxy node gone from coop_b's graph")
    took = time.monotonic() - revoked
    assert took < 5, took
    log = subprocess.run([fed.bin / "ntari-admin", "federation", "log", "--state-dir", b.fed_state, "--json"],
                         capture_output=True, text=True)
    assert log.returncode == 0, log.stdout + log.stderr
    events = [json.loads(l)["event"] for l in log.stdout.splitlines() if l.startswith("{")]
    assert "revocation_received" in events and "revoked" in events and "peer_removed" in events, events
    # Even with the bridge restarted, the saved revocation holds (offline).
    old_bridge = b.bridge_state()["pid"]
    os.killpg(b.procs["federation"].pid, signal.SIGKILL)
    b.procs["federation"].wait(5)
    fed.start_federation(b)
    wait_for(lambda: b.bridge_state().get("pid") not in (None, old_bridge), 20, "the new bridge's state")
    assert b.link("coop-a-coop-b").get("state") == "revoked", b.bridge_state()
    assert b.wg_peers() == []


def test_a_partner_gone_for_good_leaves_the_graph_and_comes_back(federation):
    fed = federation
    a = fed.add("coop_a", services=("ntp",))
    b = fed.add("coop_b", federation_extra="partner_timeout = 3\n")
    fed.agreement("coop_a", "coop_b", domain=48, exports_a=HEALTH_EXPORTS)
    obs = fed.new_observer("coop_b")
    proxy = "/remote/coop_a/ntari/ntari_ntp_node"
    wait_for(lambda: proxy in obs.nodes(), 40, "coop_a's proxy node on coop_b")

    def partner_seen():
        return (b.link("coop-a-coop-b").get("link") or {}).get("partner_seen")

    wait_for(lambda: partner_seen() is True, 10, "coop_b seeing coop_a's bridge")
    # coop_a's federation node (and with it, its guard and bridge) killed:
    # no goodbye, so coop_b only sees the partner go when its lease ends.
    os.killpg(a.procs["federation"].pid, signal.SIGKILL)
    a.procs["federation"].wait(5)
    killed = time.monotonic()
    wait_for(lambda: partner_seen() is False, 30, "coop_b noticing the partner is gone (its lease, 20 s)")
    lost = time.monotonic()
    assert proxy in obs.nodes(), "the proxies went before partner_timeout"
    wait_for(lambda: proxy not in obs.nodes(), 10, "the proxy node leaving coop_b's graph")
    # partner_timeout = 3 s after the loss (which the state file shows up
    # to a second late), never before.
    assert time.monotonic() - lost >= 1.5 and time.monotonic() - killed >= 3
    fed.start_federation(a)
    wait_for(lambda: proxy in obs.nodes(), 40, "the proxy node back with the partner")


def test_three_cooperatives_nothing_of_a_reaches_c(federation):
    fed = federation
    fed.add("coop_a", services=("ntp",))
    b = fed.add("coop_b")
    c = fed.add("coop_c")
    everything = """    topics:
      - name: /**
        type: std_msgs/msg/Bool
      - name: /**
        type: std_msgs/msg/String"""
    fed.agreement("coop_a", "coop_b", domain=45, exports_a=everything, exports_b=everything)
    fed.agreement("coop_b", "coop_c", domain=46, exports_a=everything, exports_b=everything)
    wait_for(lambda: routes_in(b, "coop-a-coop-b") >= 2, 40, "coop_b importing from coop_a")
    wait_for(lambda: routes_in(c, "coop-b-coop-c") >= 2, 40, "coop_c importing from coop_b")
    obs = fed.new_observer("coop_c")
    topics = wait_for(lambda: [t for t in obs.topics() if t.startswith("/remote/")], 15,
                      "coop_b's topics on coop_c's graph")
    time.sleep(3)   # time for anything of coop_a's to show up, if it ever would
    topics = list(obs.topics())
    nodes = obs.nodes()
    assert any(t.startswith("/remote/coop_b/") for t in topics), topics
    assert not any("coop_a" in t for t in topics), topics
    assert not any("coop_a" in n for n in nodes), nodes
    # And coop_b does see coop_a, so the filter is the reason.
    obs_b = fed.new_observer("coop_b")
    wait_for(lambda: any(t.startswith("/remote/coop_a/") for t in obs_b.topics()), 15, "coop_a's topics on coop_b")

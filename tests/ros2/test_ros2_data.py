"""Data as real ROS 2 decodes it (rclpy subscriptions, ROS's own type
support): `ros2 topic echo` of health, status, /diagnostics and the DHCP
leases, and the other way round, a lease an rclpy publisher sends makes
ntari-dns answer for the name.
"""

import json
import os
import re
import shutil
import statistics
import subprocess
import time

import pytest

from contract import (BY_KEY, LATCHED, LEASES, NODES, RELIABLE, SERVICE_NODES, TRANSIENT_LOCAL, Qos,
                      ids)

READY = 20.0                                  # process start -> Active, debug build, with discovery
LATE = Qos(RELIABLE, TRANSIENT_LOCAL, 10)     # a late `ros2 topic echo --qos-durability transient_local`
DIG = shutil.which("dig") or "/usr/bin/dig"
UDHCPC = shutil.which("udhcpc") or "/usr/sbin/udhcpc"


def envelope(msg):
    return json.loads(msg.data)


def start_healthy(c, ros, nodes, *args, **kw):
    """Start ``c`` with an rclpy health subscription in place; wait for health=true."""
    health = ros.subscribe(c.health, "std_msgs/msg/Bool")
    running = nodes.start(c, *args, **kw)
    health.wait_for(lambda m: m.data is True, READY, "health=true")
    return running, health


def late_subscriber(ros, topic, predicate, what, attempts=5):
    """A transient-local subscriber created now: the sample it gets first,
    which must have been written before it existed, and every sample written
    before it existed that it got (a keep-last-1 writer keeps one).

    Matching takes a while (up to ~1 s between Cyclone and Fast DDS): a
    sample the node writes between the subscriber's creation and the match
    replaces the old one in a keep-last-1 history, and then nothing proves
    the old one would have come. That attempt is dropped and a new
    subscriber made. Without a writer history no attempt can pass: every
    sample would be written after the subscriber existed."""
    for attempt in range(attempts):
        created_ns = time.time_ns()
        late = ros.subscribe(topic, "std_msgs/msg/String", LATE)
        first = late.wait_for(lambda m: True, 5, f"the latched {what} (history of a transient-local writer)")
        late.collect(1.0)  # history arrives in one burst on matching
        if first.source_ns < created_ns:
            break
        print(f"attempt {attempt + 1}: the node wrote a new {what} while the late subscriber matched; again")
        ros.node.destroy_subscription(late.sub)
    else:
        raise AssertionError(f"{attempts} late subscribers only got {what} samples written after they were "
                             f"created: not the writer's history")
    assert predicate(first.msg), first.msg
    history = [s for s in late.samples if s.source_ns < created_ns]
    return first, history


@pytest.mark.parametrize("c", NODES, ids=ids(NODES))
def test_health_at_1hz_to_a_default_qos_subscriber(c, ros, nodes):
    _, health = start_healthy(c, ros, nodes)
    window = health.collect(5.0)
    values = [s.msg.data for s in window]
    assert all(v is True for v in values), values
    assert 3 <= len(window) <= 8, f"{len(window)} health samples in 5 s (1 Hz expected)"
    gaps = [b.t - a.t for a, b in zip(window, window[1:])]
    assert 0.6 <= statistics.median(gaps) <= 1.4, gaps
    print(f"{c.health}: {len(window)} samples in 5 s, median gap {statistics.median(gaps):.3f} s")


@pytest.mark.parametrize("c", SERVICE_NODES, ids=ids(SERVICE_NODES))
def test_latched_status_reaches_a_late_transient_local_subscriber(c, ros, nodes):
    early = ros.subscribe(c.status, "std_msgs/msg/String")      # volatile, there from the start
    # Probes every 5 s (the default): ntari-dns and ntari-dhcp republish status
    # after most probes (counters in the detail change), see late_subscriber.
    start_healthy(c, ros, nodes, probe_interval=5)

    def active_and_healthy(msg):
        p = envelope(msg)["payload"]
        return p["healthy"] is True and p["lifecycle_state"] == "active"
    early.wait_for(active_and_healthy, 15, "a healthy, active status (on change, or the 10 s period)")

    first, history = late_subscriber(ros, c.status, active_and_healthy, "status")
    env = envelope(first.msg)
    assert env["payload"]["node"] == c.fqn and env["payload"]["service"] == c.service, env["payload"]
    assert env["issuer"].startswith("did:key:") and len(env["signature"]) == 128, env
    assert len(history) == 1, f"a late subscriber got {len(history)} old status samples; keep-last 1 keeps one"
    # The same document that went out live (nonce and signature are unique).
    deadline = time.monotonic() + 3
    while env["nonce"] not in [envelope(s.msg)["nonce"] for s in early.since(0)]:
        assert time.monotonic() < deadline, "the latched status is not one the node published live"
        time.sleep(0.05)


@pytest.mark.parametrize("c", SERVICE_NODES, ids=ids(SERVICE_NODES))
def test_diagnostics_is_a_diagnostic_array_matching_the_status(c, ros, nodes):
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
    diag = ros.subscribe("/diagnostics", "diagnostic_msgs/msg/DiagnosticArray")
    status = ros.subscribe(c.status, "std_msgs/msg/String")
    start_healthy(c, ros, nodes)
    name = f"ntari/{c.service}"

    level = getattr(DiagnosticStatus, c.healthy_level)

    def ours_healthy(m):
        return any(st.name == name and st.level == level for st in m.status)
    d = diag.wait_for(ours_healthy, 15, f"/diagnostics with {name} at level {c.healthy_level}")
    assert isinstance(d.msg, DiagnosticArray)
    assert abs(d.msg.header.stamp.sec - time.time()) < 60, d.msg.header
    st = next(st for st in d.msg.status if st.name == name)
    assert st.hardware_id == c.fqn, st
    if c.healthy_level == "OK":
        assert st.message == "healthy", st
    else:   # healthy with warnings: the message is the status's warnings
        assert st.message == "; ".join(envelope(status.wait_for(lambda m: envelope(m)["payload"]["warnings"], 15,
                                                                "warnings in status").msg)["payload"]["warnings"]), st
    kv = {v.key: v.value for v in st.values}
    assert kv["lifecycle_state"] == "active", kv

    # The status published with it says the same.
    def same_daemon(msg):
        p = envelope(msg)["payload"]
        return p["healthy"] and str(p["daemon"]["pid"]) == kv.get("daemon.pid")
    p = envelope(status.wait_for(same_daemon, 15, f"the status naming daemon pid {kv.get('daemon.pid')}").msg)["payload"]
    assert kv["lifecycle_state"] == p["lifecycle_state"]
    assert kv["daemon.pid"] == str(p["daemon"]["pid"])
    assert kv["daemon.restarts"] == str(p["daemon"]["restarts"])
    if p["daemon"].get("version"):
        assert kv["daemon.version"] == p["daemon"]["version"]
    assert open(f"/proc/{p['daemon']['pid']}/comm").read().strip() == c.daemon


UDHCPC_SCRIPT = """#!/bin/sh
[ "$1" = bound ] && printf '%s %s\\n' "$ip" "$hostname" >> "$UDHCPC_OUT"
exit 0
"""


def test_dhcp_leases_of_a_real_client_reach_a_late_subscriber(ros, nodes):
    c = BY_KEY["dhcp"]
    early = ros.subscribe(LEASES, "std_msgs/msg/String")
    running, _ = start_healthy(c, ros, nodes)
    net = running.extra["net"]
    mac = "52:54:00:%02x:%02x:%02x" % tuple(os.urandom(3))
    net.set_mac(mac)
    script, out = running.dir / "udhcpc.sh", running.dir / "udhcpc.out"
    script.write_text(UDHCPC_SCRIPT)
    script.chmod(0o755)
    r = net.run([UDHCPC, "-i", net.client_if, "-n", "-q", "-t", "5", "-T", "1", "-x", "hostname:ros2-laptop",
                 "-s", str(script)], timeout=30, env=dict(os.environ, UDHCPC_OUT=str(out)))
    assert out.exists() and out.read_text().strip(), f"udhcpc got no lease ({r.returncode}):\n{r.stdout}{r.stderr}"
    ip = out.read_text().split()[0]
    assert ip.startswith(net.net + "."), ip

    def has_client(msg):
        doc = json.loads(msg.data)
        return doc.get("version") == 1 and any(l["ip"] == ip and l["mac"] == mac for l in doc["leases"])
    early.wait_for(has_client, 10, f"a lease message with {ip}")

    first, history = late_subscriber(ros, LEASES, has_client, "lease table")
    lease = next(l for l in json.loads(first.msg.data)["leases"] if l["ip"] == ip)
    assert lease["hostname"] == "ros2-laptop" and lease["expiry"] > time.time(), lease
    assert len(history) == 1, f"a late subscriber got {len(history)} old lease messages; keep-last 1 keeps one"


def dig(port, name):
    out = subprocess.run([DIG, "+time=1", "+tries=1", "+short", "-p", str(port), "@127.0.0.1", name, "A"],
                         capture_output=True, text=True, timeout=10)
    return sorted(line for line in out.stdout.split() if re.fullmatch(r"[\d.]+", line))


def wait_resolves(port, name, expected, timeout=5.0):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = dig(port, name)
        if last == expected:
            return
        time.sleep(0.1)
    raise AssertionError(f"{name} did not resolve to {expected} within {timeout} s (last: {last})")


def lease_doc(leases, event=None):
    return json.dumps({"version": 1, "snapshot": event is None,
                       "events": [dict(event[1], event=event[0])] if event else [], "leases": leases})


def test_a_lease_published_by_rclpy_makes_ntari_dns_resolve_it(ros, nodes):
    from std_msgs.msg import String
    c = BY_KEY["dns"]
    expiry = int(time.time()) + 3600
    early = {"ip": "127.0.0.23", "mac": "52:54:00:00:00:23", "hostname": "ros2-early", "expiry": expiry}
    late = {"ip": "127.0.0.24", "mac": "52:54:00:00:00:24", "hostname": "ros2-late", "expiry": expiry}
    pub = ros.publisher(LEASES, "std_msgs/msg/String", LATCHED)
    # Published before ntari-dns exists: only the writer's transient-local history can bring it.
    pub.publish(String(data=lease_doc([early])))
    running, _ = start_healthy(c, ros, nodes)
    port, domain = running.extra["port"], running.extra["domain"]
    wait_resolves(port, f"ros2-early.{domain}", ["127.0.0.23"])
    assert pub.get_subscription_count() >= 1
    pub.publish(String(data=lease_doc([early, late], ("granted", late))))
    wait_resolves(port, f"ros2-late.{domain}", ["127.0.0.24"])
    wait_resolves(port, f"ros2-early.{domain}", ["127.0.0.23"])

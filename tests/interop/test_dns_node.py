"""ntari-dns against the real dnsmasq, seen from an independent DDS client.

Two dnsmasq instances on loopback high ports: an "upstream" one the test
starts itself (answers ``*.up.example`` with 10.1.1.1, TTL 300 so answers
are cacheable, and logs every query it gets, so a test can count what the
node's dnsmasq forwarded) and the one the node manages. Queries are made with
``dig``; leases are published on ``/ntari/dhcp/leases`` the way ntari-dhcp
does (std_msgs/String JSON, reliable, transient-local, keep-last 1). The node
is driven and watched through the graph exactly as ``ros2 lifecycle`` /
``ros2 topic echo`` would.

dnsmasq drops privileges to user ``dnsmasq``, which must be able to read
the hosts files the node writes into its run dir. pytest's tmp dirs sit
under ``/tmp/pytest-of-root`` (mode 0700, re-tightened by pytest on every
run), so the node's directories live in a separate ``/tmp/ntari-dns-test-*``
(0755) that the test removes again; process logs stay under tmp_path.
"""

import json
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from conftest import find_binary
from helpers import assert_configure_refused, envelope, free_dns_port, free_port, kill_daemon_and_see_restart, metric, metrics, pid_alive, wait_health, wait_status, wait_until
from rosgraph import Graph, ros_qos
from ros_types import S, T, Bool, String

NODE = "/ntari/ntari_dns_node"
HEALTH = "/ntari/dns/health"
STATUS = "/ntari/dns/status"
LEASES = "/ntari/dhcp/leases"
DNSMASQ = "/usr/sbin/dnsmasq"
DIG = "/usr/bin/dig"
READY_TIMEOUT = 20.0
DOMAIN = "coop.lan"
HUB = ("hub", "192.168.50.1")             # the static [[hosts]] record of every config
APPS = ("apps.coop.lan", "192.168.50.2")  # the [[wildcards]] record
UP_ADDRESS = "10.1.1.1"                   # what the upstream answers for *.up.example
NAME_DELAY = 3.0                          # "within about a second", with slack


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------

def is_dnsmasq(pid: int) -> bool:
    try:
        return pid_alive(pid) and Path(f"/proc/{pid}/comm").read_text().strip() == "dnsmasq"
    except FileNotFoundError:
        return False


def dig(port: int, name: str, qtype: str = "A"):
    """One query with dig (1 s timeout, no retry): status (NOERROR, NXDOMAIN,
    ..., or TIMEOUT when nothing came back), the answers of type ``qtype``,
    and how long it took."""
    t0 = time.monotonic()
    out = subprocess.run([DIG, "+time=1", "+tries=1", "+noall", "+comments", "+answer",
                          "-p", str(port), "@127.0.0.1", name, qtype],
                         capture_output=True, text=True, timeout=10)
    elapsed = time.monotonic() - t0
    m = re.search(r"status: ([A-Z]+)", out.stdout)
    answers = []
    for line in out.stdout.splitlines():
        cols = line.split()
        if line and not line.startswith(";") and len(cols) >= 5 and cols[3] == qtype:
            answers.append(cols[4])
    return SimpleNamespace(status=m.group(1) if m else "TIMEOUT", answers=sorted(answers),
                           elapsed=elapsed, text=out.stdout + out.stderr)


def resolve(port: int, name: str):
    """The A records for ``name``, or the status when there are none."""
    r = dig(port, name)
    return r.answers if r.answers else r.status


def wait_resolves(port: int, name: str, expected, timeout: float = NAME_DELAY):
    """Wait until ``name`` resolves to ``expected`` (list of addresses, or a
    status like "NXDOMAIN")."""
    expected = sorted(expected) if isinstance(expected, (list, tuple)) else expected
    last = [None]

    def check():
        last[0] = resolve(port, name)
        return last[0] == expected

    try:
        wait_until(check, timeout, f"{name} -> {expected}")
    except AssertionError:
        raise AssertionError(f"{name} did not resolve to {expected} within {timeout} s; last: {last[0]}")


def dns_toml(port: int, *, upstream=None, cache_size: int = 1000, hosts=(HUB,), extra: str = "") -> str:
    """A node config: loopback ``port``, domain coop.lan, the hub host and the
    apps wildcard; ``upstream`` is a list of server strings (None: offline)."""
    text = f'listen_addresses = ["127.0.0.1"]\nport = {port}\ndomain = "{DOMAIN}"\ncache_size = {cache_size}\n'
    if upstream is not None:
        text += "upstream_servers = [" + ", ".join(json.dumps(s) for s in upstream) + "]\n"
    text += extra
    for name, address in hosts:
        text += f'\n[[hosts]]\nname = "{name}"\naddresses = ["{address}"]\n'
    text += f'\n[[wildcards]]\ndomain = "{APPS[0]}"\naddresses = ["{APPS[1]}"]\n'
    return text


def lease(ip: str, hostname=None, expiry=None) -> dict:
    """One lease as ntari-dhcp publishes it (MAC derived from the address)."""
    octets = [int(o) for o in ip.split(".")]
    d = {"ip": ip, "mac": "52:54:00:%02x:%02x:%02x" % tuple(octets[1:]),
         "expiry": int(expiry if expiry is not None else time.time() + 3600)}
    if hostname is not None:
        d["hostname"] = hostname
    return d


class LeasePublisher:
    """ntari-dhcp's side of ``/ntari/dhcp/leases``: reliable, transient-local,
    keep-last 1, so a node that starts later still gets the last message."""

    def __init__(self, graph: Graph):
        self.writer = graph.publisher(LEASES, String, ros_qos(1, transient_local=True))

    def publish(self, event: str, leases, about=None) -> None:
        """``event`` ("snapshot" or what happened to ``about``); ``leases``
        is the whole table afterwards (docs/schemas.md)."""
        msg = {"version": 1, "snapshot": event == "snapshot", "events": [], "leases": list(leases)}
        if about is not None:
            msg["events"] = [dict(about, event=event)]
        self.raw(json.dumps(msg))

    def raw(self, text: str) -> None:
        self.writer.write(String(data=text))

    def wait_matched(self, timeout: float = 10.0) -> None:
        assert Graph.wait_matched(self.writer, timeout), f"ntari-dns never subscribed to {LEASES}"


def upstream_queries(upstream, name: str) -> int:
    """How many A queries for ``name`` the upstream dnsmasq has logged."""
    try:
        text = upstream.log.read_text(errors="replace")
    except FileNotFoundError:
        return 0
    return len(re.findall(r"query\[A\] " + re.escape(name) + r" from ", text))


# ---------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------

@pytest.fixture
def public_dir(tmp_path):
    """A 0755 directory outside pytest's 0700 tree (see the module docstring);
    its contents are copied to tmp_path/public at teardown, then removed.
    Fixtures using it list it before ``launch``, so it is torn down after
    every process is stopped."""
    d = Path(tempfile.mkdtemp(prefix="ntari-dns-test-"))
    d.chmod(0o755)
    try:
        yield d
    finally:
        shutil.copytree(d, tmp_path / "public", symlinks=True, dirs_exist_ok=True,
                        ignore_dangling_symlinks=True)
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def upstream(public_dir, launch):
    """The cooperative's upstream resolver: a plain dnsmasq answering
    ``*.up.example`` with 10.1.1.1 (TTL 300) and logging every query."""
    if not Path(DNSMASQ).exists():
        pytest.fail("dnsmasq is not installed (ci/setup.sh installs dnsmasq-base)")
    port = free_dns_port()
    d = public_dir / "upstream"
    d.mkdir()
    d.chmod(0o755)
    log = d / "queries.log"
    conf = d / "dnsmasq.conf"
    conf.write_text(
        f"port={port}\nlisten-address=127.0.0.1\nbind-interfaces\nno-resolv\nno-hosts\n"
        f"pid-file=\naddress=/up.example/{UP_ADDRESS}\nlocal-ttl=300\n"
        f"log-queries\nlog-facility={log}\n")
    proc = launch(DNSMASQ, "-k", f"--conf-file={conf}", name="upstream-dnsmasq")
    wait_until(lambda: dig(port, "ready.up.example").answers == [UP_ADDRESS] or not proc.alive(),
               10, "the upstream dnsmasq to answer")
    assert proc.alive(), proc.logs()
    return SimpleNamespace(port=port, proc=proc, log=log, server=f"127.0.0.1#{port}")


@pytest.fixture
def dns_node(public_dir, launch, graph):
    """``dns_node(*args, config=None, port=None)`` starts ntari-dns (config
    default: offline, on a free port) with its health/status subscriptions
    and lifecycle client already in place."""
    binary = find_binary("ntari-dns")
    if not Path(DNSMASQ).exists():
        pytest.fail("dnsmasq is not installed (ci/setup.sh installs dnsmasq-base)")
    count = [0]

    def _start(*args, config=None, port=None, wait_ready=True):
        count[0] += 1
        node_dir = public_dir / f"node{count[0]}"
        (node_dir / "state").mkdir(parents=True)
        node_dir.chmod(0o755)
        port = port or free_dns_port()
        cfg = node_dir / "dns.toml"
        cfg.write_text(config if config is not None else dns_toml(port))
        metrics_port = free_port(socket.SOCK_STREAM)
        health = graph.subscribe(HEALTH, Bool)
        status = graph.subscribe(STATUS, String)
        lc = graph.lifecycle_client(NODE)
        proc = launch(binary, "--config", str(cfg), "--state-dir", str(node_dir / "state"),
                      "--run-dir", str(node_dir / "run"), "--key", str(node_dir / "node.key"),
                      "--node-config", str(node_dir / "absent-ntari.toml"),
                      "--metrics-port", str(metrics_port), "--probe-interval", "0.5", *args,
                      name=f"ntari-dns-{count[0]}")
        if wait_ready:
            assert lc.wait_ready(READY_TIMEOUT), "lifecycle services of ntari-dns never appeared"
        return SimpleNamespace(proc=proc, lc=lc, health=health, status=status, config=cfg, port=port,
                               metrics_port=metrics_port, dir=node_dir)

    return _start


@pytest.fixture
def leases(graph):
    return LeasePublisher(graph)


def latest_payload(node):
    """The most recent status payload received so far (None if none yet)."""
    node.status.poll()
    return envelope(node.status.history[-1])["payload"] if node.status.history else None


def daemon_pid(node) -> int:
    """The pid of the running dnsmasq: from the latest status if it shows one
    running, else from the next status that does."""
    p = latest_payload(node)
    if p is not None and p["daemon"]["running"] and p["daemon"]["pid"] and is_dnsmasq(p["daemon"]["pid"]):
        return p["daemon"]["pid"]
    env = wait_status(node, lambda p: p["daemon"]["running"], 10, "a running dnsmasq in status")
    return env["payload"]["daemon"]["pid"]


def lease_input(payload) -> dict:
    return payload["inputs"][LEASES]


def start_active(dns_node, **kw):
    node = dns_node("--autostart", **kw)
    wait_health(node, True, 15)
    return node


# ---------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------

def test_autostart_resolves_static_wildcard_and_forwarded_names(dns_node, upstream):
    port = free_dns_port()
    node = start_active(dns_node, port=port, config=dns_toml(port, upstream=[upstream.server]))
    env = wait_status(node, lambda p: p["lifecycle_state"] == "active" and p["healthy"], 10, "healthy status")
    payload = env["payload"]
    assert payload["service"] == "dns" and payload["node"] == NODE
    assert payload["daemon"]["name"] == "dnsmasq" and is_dnsmasq(payload["daemon"]["pid"])
    assert (payload["daemon"]["version"] or "").startswith("Dnsmasq version"), payload["daemon"]
    assert lease_input(payload) == {"accepted": 0, "rejected": 0, "last_error": None}, payload["inputs"]
    assert isinstance(payload["detail"], dict) and payload["detail"], "no probe detail in status"
    assert payload["last_error"] is None
    # A signed envelope, as for every service.
    assert env["issuer"].startswith("did:key:z6Mk") and len(env["signature"]) == 128
    assert resolve(port, f"hub.{DOMAIN}") == [HUB[1]]
    assert resolve(port, APPS[0]) == [APPS[1]]
    assert resolve(port, f"x.y.{APPS[0]}") == [APPS[1]]
    assert resolve(port, "www.up.example") == [UP_ADDRESS]
    wait_until(lambda: upstream_queries(upstream, "www.up.example") == 1, 2, "the upstream to log the query")
    # The local domain is never forwarded: unknown names are NXDOMAIN here.
    r = dig(port, f"nobody.{DOMAIN}")
    assert r.status == "NXDOMAIN", r.text
    time.sleep(0.3)
    assert upstream_queries(upstream, f"nobody.{DOMAIN}") == 0


def test_offline_mode_answers_local_names_and_nxdomain_at_once(dns_node):
    node = start_active(dns_node)       # default config: no upstream_servers
    assert "upstream_servers" not in node.config.read_text()
    assert resolve(node.port, f"hub.{DOMAIN}") == [HUB[1]]
    assert resolve(node.port, f"deep.{APPS[0]}") == [APPS[1]]
    r = dig(node.port, f"unknown.{DOMAIN}")
    assert r.status == "NXDOMAIN", r.text
    assert r.elapsed < 0.5, f"NXDOMAIN took {r.elapsed:.2f} s"


def test_lease_names_appear_change_disappear_and_expire(dns_node, leases):
    node = start_active(dns_node)
    port = node.port
    pid = daemon_pid(node)
    leases.wait_matched()
    laptop = lease("192.168.50.23", "laptop")
    leases.publish("granted", [laptop], laptop)
    wait_resolves(port, f"laptop.{DOMAIN}", [laptop["ip"]])

    # Case-folded, the domain suffix stripped; an invalid name skipped, the
    # others still published; static [[hosts]] win over a lease's name.
    phone = lease("192.168.50.24", f"Phone.{DOMAIN}")
    bad = lease("192.168.50.25", "bad_name!")
    nameless = lease("192.168.50.26")
    impostor = lease("192.168.50.27", "HUB")
    table = [laptop, phone, bad, nameless, impostor]
    leases.publish("granted", table, impostor)
    wait_resolves(port, f"phone.{DOMAIN}", [phone["ip"]])
    assert resolve(port, f"laptop.{DOMAIN}") == [laptop["ip"]]
    assert resolve(port, f"hub.{DOMAIN}") == [HUB[1]]
    assert dig(port, f"bad_name.{DOMAIN}").answers == []
    wait_until(lambda: lease_input(latest_payload(node))["accepted"] == 2, 3, "2 accepted messages in status")

    # A renewal that moves the laptop to another address.
    laptop = lease("192.168.50.33", "laptop")
    table = [laptop, phone, bad, nameless, impostor]
    leases.publish("renewed", table, laptop)
    wait_resolves(port, f"laptop.{DOMAIN}", [laptop["ip"]])

    # Released: dropped from the table, the name goes.
    table.remove(phone)
    leases.publish("released", table, phone)
    wait_resolves(port, f"phone.{DOMAIN}", "NXDOMAIN")
    assert resolve(port, f"laptop.{DOMAIN}") == [laptop["ip"]]

    # Expiry by time alone, no further message.
    soon = lease("192.168.50.40", "tablet", expiry=time.time() + 3)
    table.append(soon)
    leases.publish("granted", table, soon)
    wait_resolves(port, f"tablet.{DOMAIN}", [soon["ip"]], timeout=2.5)
    wait_until(lambda: time.time() >= soon["expiry"], 5, "the tablet's expiry")
    wait_resolves(port, f"tablet.{DOMAIN}", "NXDOMAIN", timeout=3)
    assert resolve(port, f"laptop.{DOMAIN}") == [laptop["ip"]]

    # None of this restarted dnsmasq.
    assert is_dnsmasq(pid) and daemon_pid(node) == pid
    payload = latest_payload(node)
    assert payload["daemon"]["restarts"] == 0 and lease_input(payload)["rejected"] == 0, payload


def test_late_node_gets_the_latched_table_and_rejects_bad_messages(dns_node, leases, graph):
    # Published before the node exists: only transient-local delivers it.
    early = lease("192.168.50.50", "early-bird")
    leases.publish("snapshot", [early])
    node = start_active(dns_node)
    port = node.port
    wait_resolves(port, f"early-bird.{DOMAIN}", [early["ip"]])
    wait_until(lambda: lease_input(latest_payload(node))["accepted"] == 1, 3, "1 accepted message")

    bad_messages = [
        ("{", "."),
        (json.dumps({"version": 2, "event": "snapshot", "leases": []}), "version"),
        (json.dumps({"version": 1, "event": "snapshot",
                     "leases": [lease("192.168.50.51", "fine"), dict(lease("192.168.50.52", "x"), ip="10.0.0.300")]}),
         "leases[1].ip"),
    ]
    for i, (text, where) in enumerate(bad_messages, start=1):
        leases.raw(text)
        env = wait_status(node, lambda p, i=i: lease_input(p)["rejected"] == i, 5, f"rejection #{i}")
        err = lease_input(env["payload"])["last_error"] or ""
        assert err.startswith(where + ":") or f"{where}:" in err, (where, err)
    assert node.proc.alive()
    # The previous names stay; nothing of the rejected message was applied.
    assert resolve(port, f"early-bird.{DOMAIN}") == [early["ip"]]
    assert resolve(port, f"fine.{DOMAIN}") == "NXDOMAIN"
    payload = latest_payload(node)
    assert lease_input(payload)["accepted"] == 1 and payload["healthy"], payload
    # And a good message after the bad ones is taken again.
    leases.publish("snapshot", [early, lease("192.168.50.53", "after")])
    wait_resolves(port, f"after.{DOMAIN}", ["192.168.50.53"])


def test_cache_survives_lease_and_host_changes_but_not_a_restart(dns_node, leases, upstream):
    port = free_dns_port()
    node = start_active(dns_node, port=port, config=dns_toml(port, upstream=[upstream.server]))
    pid = daemon_pid(node)
    name = "cached.up.example"
    assert resolve(port, name) == [UP_ADDRESS]
    wait_until(lambda: upstream_queries(upstream, name) == 1, 3, "the upstream to see the first query")

    # A lease name appears (hostsdir file changes).
    leases.wait_matched()
    laptop = lease("192.168.50.23", "laptop")
    leases.publish("granted", [laptop], laptop)
    wait_resolves(port, f"laptop.{DOMAIN}", [laptop["ip"]])
    # A static host is added; SIGHUP.
    node.config.write_text(dns_toml(port, upstream=[upstream.server], hosts=(HUB, ("nas", "192.168.50.9"))))
    node.proc.send_signal(signal.SIGHUP)
    wait_resolves(port, f"nas.{DOMAIN}", ["192.168.50.9"])
    # ...and the lease goes again.
    leases.publish("released", [], laptop)
    wait_resolves(port, f"laptop.{DOMAIN}", "NXDOMAIN")

    assert resolve(port, name) == [UP_ADDRESS]
    time.sleep(0.5)   # dnsmasq writes its log asynchronously
    assert upstream_queries(upstream, name) == 1, "the cache was dropped: the upstream saw the name again"
    assert is_dnsmasq(pid), "dnsmasq was restarted by a lease or host change"
    assert daemon_pid(node) == pid
    assert latest_payload(node)["last_error"] is None

    # A dnsmasq option that needs a restart: new pid, names still there.
    leases.publish("granted", [laptop], laptop)
    wait_resolves(port, f"laptop.{DOMAIN}", [laptop["ip"]])
    node.config.write_text(dns_toml(port, upstream=[upstream.server], cache_size=500,
                                    hosts=(HUB, ("nas", "192.168.50.9"))))
    node.proc.send_signal(signal.SIGHUP)
    env = wait_status(node, lambda p: p["daemon"]["running"] and p["daemon"]["pid"] != pid, 10, "a new dnsmasq")
    assert not pid_alive(pid)
    wait_health(node, True, 10)
    wait_resolves(port, f"nas.{DOMAIN}", ["192.168.50.9"])
    assert resolve(port, f"laptop.{DOMAIN}") == [laptop["ip"]]
    assert resolve(port, f"hub.{DOMAIN}") == [HUB[1]]
    # A fresh dnsmasq has an empty cache: the upstream sees the name again.
    assert resolve(port, name) == [UP_ADDRESS]
    wait_until(lambda: upstream_queries(upstream, name) == 2, 3, "the upstream to see the query after the restart")
    assert "cache-size=500" in (node.dir / "run" / "dnsmasq.conf").read_text().replace(" ", "")
    assert env["payload"]["daemon"]["restarts"] == 0   # a planned restart is not a crash


def test_kill_9_of_dnsmasq_health_false_at_once_and_restarted(dns_node, leases):
    node = start_active(dns_node)
    leases.wait_matched()
    leases.publish("snapshot", [lease("192.168.50.23", "laptop")])
    wait_resolves(node.port, f"laptop.{DOMAIN}", ["192.168.50.23"])
    kill_daemon_and_see_restart(node, daemon_pid(node), "dnsmasq")
    assert resolve(node.port, f"hub.{DOMAIN}") == [HUB[1]]
    assert resolve(node.port, f"laptop.{DOMAIN}") == ["192.168.50.23"]


def test_invalid_config_fails_configure_with_the_reason_and_the_node_stays_up(dns_node):
    port = free_dns_port()
    node = dns_node(config="this is not toml\n", port=port)
    cases = [
        ("this is not toml\n", "dns.toml:1"),
        (dns_toml(port, upstream=["not-an-ip"]), "upstream_servers"),
        (dns_toml(70000), "port"),
        (dns_toml(port, extra='colour = "blue"\n'), "colour"),
        (dns_toml(port, hosts=(("hub", "192.168.50.300"),)), "addresses"),
    ]
    for text, where in cases:
        assert_configure_refused(node, text, where, "dns.toml")
    wait_health(node, False, 3)
    # A valid file then configures and activates.
    node.config.write_text(dns_toml(port))
    assert node.lc.change_state(T.CONFIGURE) is True
    assert node.lc.change_state(T.ACTIVATE) is True
    wait_health(node, True, 10)
    assert resolve(port, f"hub.{DOMAIN}") == [HUB[1]]


def test_sighup_with_invalid_config_leaves_dnsmasq_untouched(dns_node):
    node = start_active(dns_node)
    port = node.port
    pid = daemon_pid(node)
    rendered = (node.dir / "run" / "dnsmasq.conf").read_text()
    for bad, where in [(dns_toml(port, upstream=["not-an-ip"]), "upstream_servers"),
                       (dns_toml(70000), "port"),
                       (dns_toml(port, extra="tyop = 1\n"), "tyop")]:
        node.config.write_text(bad)
        node.proc.send_signal(signal.SIGHUP)
        env = wait_status(node, lambda p: (p["last_error"] or "").startswith("reload refused")
                          and where in p["last_error"], 5, f"reload refused naming {where}")
        assert "dns.toml" in env["payload"]["last_error"]
        assert is_dnsmasq(pid), "the running dnsmasq must be untouched"
        assert (node.dir / "run" / "dnsmasq.conf").read_text() == rendered
        assert resolve(port, f"hub.{DOMAIN}") == [HUB[1]]
    assert daemon_pid(node) == pid
    assert latest_payload(node)["healthy"] is True


def test_metrics_have_dnsmasq_exporter_names(dns_node, leases, upstream):
    port = free_dns_port()
    node = start_active(dns_node, port=port, config=dns_toml(port, upstream=[upstream.server], cache_size=1234))
    mp = node.metrics_port
    assert resolve(port, "m.up.example") == [UP_ADDRESS]
    wait_until(lambda: (metric(mp, "dnsmasq_servers_queries", server=upstream.server) or 0) >= 1, 5,
               f'dnsmasq_servers_queries{{server="{upstream.server}"}} >= 1')
    m = metrics(mp)
    assert metric(mp, "dnsmasq_cachesize") == 1234, m.get("dnsmasq_cachesize")
    assert metric(mp, "dnsmasq_servers_queries_failed", server=upstream.server) is not None, m
    for name in ("dnsmasq_hits", "dnsmasq_misses", "dnsmasq_insertions", "dnsmasq_evictions", "dnsmasq_auth"):
        assert name in m, f"{name} missing; have {sorted(k for k in m if k.startswith('dnsmasq'))}"
    assert metric(mp, "ntari_node_healthy", service="dns") == 1
    # dnsmasq_leases: lease names published (an invalid and a missing
    # hostname publish nothing).
    leases.wait_matched()
    leases.publish("snapshot", [lease("192.168.50.23", "laptop"), lease("192.168.50.24", "phone"),
                                lease("192.168.50.25", "bad_name!"), lease("192.168.50.26")])
    wait_resolves(port, f"phone.{DOMAIN}", ["192.168.50.24"])
    wait_until(lambda: metric(mp, "dnsmasq_leases") == 2, 3, "dnsmasq_leases == 2")
    leases.publish("snapshot", [lease("192.168.50.23", "laptop")])
    wait_until(lambda: metric(mp, "dnsmasq_leases") == 1, 3, "dnsmasq_leases == 1")


def test_deactivate_stops_dnsmasq_and_sigterm_too(dns_node, graph):
    node = start_active(dns_node)
    pid = daemon_pid(node)
    assert node.lc.change_state(T.DEACTIVATE) is True
    assert not pid_alive(pid), "dnsmasq still running after deactivate"
    wait_health(node, False, 2)
    assert node.lc.get_state().id == S.INACTIVE
    assert dig(node.port, f"hub.{DOMAIN}").status in ("TIMEOUT", "REFUSED")   # nobody there
    assert node.lc.change_state(T.ACTIVATE) is True
    wait_health(node, True, 5)
    pid = daemon_pid(node)
    assert resolve(node.port, f"hub.{DOMAIN}") == [HUB[1]]
    assert node.proc.stop(signal.SIGTERM, timeout=15) == 0
    assert not pid_alive(pid), "dnsmasq outlived its node's SIGTERM"
    assert graph.wait_node_gone(NODE, timeout=10)


def test_check_config_subcommand(public_dir):
    binary = find_binary("ntari-dns")
    good = public_dir / "good.toml"
    good.write_text(dns_toml(free_dns_port(), upstream=["127.0.0.1#15354", "[::1]:5353", "9.9.9.9"]))
    bad = public_dir / "bad.toml"
    bad.write_text(dns_toml(free_dns_port(), upstream=["not-an-ip"]))
    common = ["--node-config", str(public_dir / "absent.toml"), "--key", str(public_dir / "k")]
    ok = subprocess.run([str(binary), "--config", str(good), *common, "check-config"],
                        capture_output=True, text=True, timeout=30)
    assert ok.returncode == 0, ok.stderr
    assert f"{good}: ok" in ok.stdout, ok.stdout
    ko = subprocess.run([str(binary), "--config", str(bad), *common, "check-config"],
                        capture_output=True, text=True, timeout=30)
    assert ko.returncode != 0
    assert "bad.toml" in ko.stderr and "upstream_servers" in ko.stderr, ko.stderr

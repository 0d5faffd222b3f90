"""ntari-dhcp against the real Kea DHCPv4 server, seen from an independent
DDS client, with real DHCP clients (busybox udhcpc) in a network namespace.

Each test gets its own client network (tests/interop/netns.py): a namespace
``ntd-<hex>`` and a veth pair whose server end ``ntd<hex>s`` (with
192.168.<n>.1/24) stays in the root namespace, where the node, its Kea and
the test's DDS participant live (DDS stays on loopback), and whose client
end ``ntd<hex>c`` is in the namespace. Kea answers on the server end only;
udhcpc runs in the namespace, so no DHCP packet leaves the veth pair. The
namespace and the veth are removed at teardown, after every process the
test started has been stopped.

Clients: a one-shot ``udhcpc -q`` (gets a lease, configures it, exits
without releasing) or a long-running ``udhcpc -f`` started with ``launch``
(SIGUSR1 renews, SIGUSR2 releases; the release is a unicast, so the address
must be configured on the client interface, which the event script does).
The event script appends one JSON line per event (bound, renew, deconfig,
...) with what the server sent (ip, router, dns, domain, lease time...).

The node's directories live in a short ``/tmp/ntd-test-*`` (Kea's control
socket path must stay within the 107 bytes of a unix socket address; pytest's
tmp_path can be longer); it is copied to tmp_path/public at teardown.
Kea's control socket is also used directly (one JSON command per
connection) to cross-check what the node reports.
"""

import json
import os
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

import netns
from conftest import find_binary
from helpers import assert_configure_refused, envelope, free_port, kea_command, kill_daemon_and_see_restart, metric, metrics, pid_alive, wait_health, wait_status, wait_until
from rosgraph import Graph, ros_qos
from ros_types import S, T, Bool, String

NODE = "/ntari/ntari_dhcp_node"
HEALTH = "/ntari/dhcp/health"
STATUS = "/ntari/dhcp/status"
LEASES = "/ntari/dhcp/leases"
KEA = "/usr/sbin/kea-dhcp4"
UDHCPC = shutil.which("udhcpc") or "/usr/sbin/udhcpc"
IP = netns.IP
READY_TIMEOUT = 20.0
DOMAIN = "coop.lan"
POOL = (100, 150)            # last octets of the default pool
POOL_SIZE = POOL[1] - POOL[0] + 1
EVENT_DELAY = 3.0            # "within about a second" after Kea's write, with slack


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------

def is_kea(pid) -> bool:
    try:
        return bool(pid) and pid_alive(pid) and Path(f"/proc/{pid}/comm").read_text().strip() == "kea-dhcp4"
    except FileNotFoundError:
        return False


def kea_leases(node) -> dict:
    """ip -> lease (Kea's JSON) from lease4-get-all on the node's Kea."""
    reply = kea_command(node.run / "kea4-ctrl.sock", "lease4-get-all")
    assert reply["result"] in (0, 3), reply    # 3: "0 IPv4 lease(s) found."
    return {l["ip-address"]: l for l in reply.get("arguments", {}).get("leases", [])}


def dhcp_toml(net, *, lease_time: int = 3600, reclaim_interval=None, reservations=(), extra: str = "",
              pools=None, subnet_extra: str = "", interfaces=None) -> str:
    """A node config for ``net``: the server end, domain coop.lan, the server
    as router, DNS and NTP server, pool .100-.150; ``reservations`` are
    (mac, ip, hostname-or-None)."""
    n = net.net
    ifs = interfaces if interfaces is not None else [net.server_if]
    pools = pools if pools is not None else [f"{n}.{POOL[0]} - {n}.{POOL[1]}"]
    text = (f"interfaces = {json.dumps(ifs)}\nlease_time = {lease_time}\n"
            f'domain_name = "{DOMAIN}"\ndns_servers = ["{net.server_ip}"]\nntp_servers = ["{net.server_ip}"]\n')
    if reclaim_interval is not None:
        text += f"reclaim_interval = {reclaim_interval}\n"
    text += extra
    text += (f'\n[[subnets]]\nid = 1\nsubnet = "{net.subnet}"\npools = {json.dumps(pools)}\n'
             f'router = "{net.server_ip}"\n{subnet_extra}')
    for mac, ip, hostname in reservations:
        text += f'\n[[subnets.reservations]]\nmac = "{mac}"\nip = "{ip}"\n'
        if hostname:
            text += f'hostname = "{hostname}"\n'
    return text


def random_mac() -> str:
    b = os.urandom(3)
    return "52:54:00:%02x:%02x:%02x" % tuple(b)


def in_pool(net, ip: str) -> bool:
    head, _, last = ip.rpartition(".")
    return head == net.net and POOL[0] <= int(last) <= POOL[1]


EVENT_SCRIPT = r"""#!/bin/sh
# udhcpc event script (test_dhcp_node.py): configure the address, then log.
case "$1" in
  bound|renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/$mask" dev "$interface"
    ;;
  deconfig|leasefail|nak)
    ip addr flush dev "$interface"
    ;;
esac
printf '{"event":"%s","ip":"%s","mask":"%s","router":"%s","dns":"%s","domain":"%s","ntpsrv":"%s","lease":"%s","hostname":"%s","serverid":"%s"}\n' \
  "$1" "$ip" "$mask" "$router" "$dns" "$domain" "$ntpsrv" "$lease" "$hostname" "$serverid" >> "$UDHCPC_EVENTS"
"""


class DhcpClients:
    """udhcpc in the test's namespace: one-shot (:meth:`once`) or long-running
    (:meth:`start`, a :class:`Client`)."""

    def __init__(self, net, work: Path, launch):
        self.net = net
        self.work = work
        self.launch = launch
        self.script = work / "udhcpc-event.sh"
        self.script.write_text(EVENT_SCRIPT)
        self.script.chmod(0o755)
        self.count = 0

    def _argv(self, hostname, extra):
        argv = [UDHCPC, "-i", self.net.client_if, "-n", "-t", "5", "-T", "1", "-O", "ntpsrv",
                "-s", str(self.script), *extra]
        if hostname:
            argv += ["-x", f"hostname:{hostname}"]
        return argv

    def _events_file(self, tag):
        self.count += 1
        path = self.work / f"udhcpc-{self.count}-{tag}.events"
        path.touch()
        return path

    def once(self, hostname=None, mac=None, expect=True):
        """A fresh client (new MAC unless ``mac``) gets a lease and exits
        without releasing it. Returns its bound event (ip, router, ...) plus
        ``mac``; None if no lease came (only with ``expect=False``)."""
        mac = mac or random_mac()
        self.net.flush()
        self.net.set_mac(mac)
        events = self._events_file(hostname or "anon")
        out = self.net.run(self._argv(hostname, ["-q"]), timeout=20, env=dict(os.environ, UDHCPC_EVENTS=str(events)))
        bound = [e for e in read_events(events) if e["event"] == "bound"]
        if not bound:
            if expect:
                raise AssertionError(f"udhcpc got no lease (exit {out.returncode}):\n{out.stdout}{out.stderr}")
            return None
        return dict(bound[-1], mac=mac)

    def start(self, hostname=None, mac=None) -> "Client":
        """A long-running client (own PID, stopped at teardown) with its lease."""
        mac = mac or random_mac()
        self.net.flush()
        self.net.set_mac(mac)
        events = self._events_file(hostname or "anon")
        proc = self.launch(IP, "netns", "exec", self.net.ns, *self._argv(hostname, ["-f"]),
                           env={"UDHCPC_EVENTS": str(events)}, name=f"udhcpc-{self.count}")
        c = Client(proc, events, mac)
        c.wait_event("bound", 10)
        return c


def read_events(path: Path):
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            pass
    return out


class Client:
    """A long-running udhcpc (``ip netns exec`` execs it, so the PID is udhcpc's)."""

    def __init__(self, proc, events: Path, mac: str):
        self.proc = proc
        self.events = events
        self.mac = mac
        self.seen = 0
        self.lease = None

    def wait_event(self, kind: str, timeout: float) -> dict:
        def check():
            evs = read_events(self.events)
            for i in range(self.seen, len(evs)):
                if evs[i]["event"] == kind:
                    self.seen = i + 1
                    return evs[i]
            return None
        ev = wait_until(lambda: check() or (not self.proc.alive() and "dead"), timeout, f"udhcpc event {kind}")
        assert ev != "dead", f"udhcpc exited ({self.proc.returncode}) before {kind}:\n{self.proc.logs()}"
        if kind in ("bound", "renew"):
            self.lease = ev
        return ev

    @property
    def ip(self):
        return self.lease["ip"]

    def renew(self) -> dict:
        """SIGUSR1: unicast REQUEST to the server; the renew event."""
        self.proc.send_signal(signal.SIGUSR1)
        return self.wait_event("renew", 10)

    def release(self) -> None:
        """SIGUSR2: unicast DHCPRELEASE, then the address is dropped."""
        self.proc.send_signal(signal.SIGUSR2)
        self.wait_event("deconfig", 10)


def lease_message(sample) -> dict:
    return json.loads(sample.data)


def wait_lease_event(node, event: str, ip: str, timeout: float = EVENT_DELAY):
    """The next /ntari/dhcp/leases message with ``event`` for ``ip``: (message, event)."""
    def has(s):
        return any(e["event"] == event and e["ip"] == ip for e in lease_message(s)["events"])
    msg = lease_message(node.leases.wait_for(has, timeout=timeout, what=f"{event} for {ip}"))
    ev = next(e for e in msg["events"] if e["event"] == event and e["ip"] == ip)
    return msg, ev


def table(msg) -> dict:
    return {l["ip"]: l for l in msg["leases"]}


def check_message_shape(msg) -> None:
    assert msg["version"] == 1 and isinstance(msg["snapshot"], bool), msg
    for l in msg["leases"] + msg["events"]:
        assert re.fullmatch(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}", l["mac"]), l
        assert isinstance(l["expiry"], int) and l["expiry"] > 1_600_000_000, l
    assert all(e["event"] in ("granted", "renewed", "released", "expired") for e in msg["events"]), msg


# ---------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------

@pytest.fixture
def client_net():
    """The test's client namespace and veth pair (removed at teardown).
    Listed before ``launch`` by the fixtures that use it, so it goes after
    every process is stopped."""
    why = netns.available()
    if why:
        if os.environ.get("NTARI_REQUIRE_BINARIES"):
            pytest.fail(f"client namespace: {why}", pytrace=False)
        pytest.skip(f"client namespace: {why}")
    with netns.ClientNet() as net:
        yield net


@pytest.fixture
def work_dir(tmp_path):
    """A short directory for the node's files (see the module docstring),
    copied to tmp_path/public at teardown, then removed."""
    d = Path(tempfile.mkdtemp(prefix="ntd-test-"))
    try:
        yield d
    finally:
        shutil.copytree(d, tmp_path / "public", symlinks=True, dirs_exist_ok=True,
                        ignore_dangling_symlinks=True, ignore=shutil.ignore_patterns("*.sock"))
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def clients(client_net, work_dir, launch):
    for tool in (UDHCPC, KEA):
        if not Path(tool).exists():
            pytest.fail(f"{tool} is not installed (ci/setup.sh installs udhcpc and kea-dhcp4-server)")
    return DhcpClients(client_net, work_dir, launch)


@pytest.fixture
def dhcp_node(client_net, work_dir, launch, graph):
    """``dhcp_node(*args, config=None, reuse=None)`` starts ntari-dhcp
    (config default: :func:`dhcp_toml` for the test's network) with its
    health/status/leases subscriptions and lifecycle client in place.
    ``reuse``: a node from before whose directories (config, state, run,
    key) the new process takes over."""
    binary = find_binary("ntari-dhcp")
    if not Path(KEA).exists():
        pytest.fail("kea-dhcp4 is not installed (ci/setup.sh installs kea-dhcp4-server)")
    count = [0]

    def _start(*args, config=None, reuse=None, wait_ready=True):
        count[0] += 1
        if reuse is not None:
            node_dir = reuse.dir
            cfg = reuse.config
            if config is not None:
                cfg.write_text(config)
        else:
            node_dir = work_dir / f"node{count[0]}"
            (node_dir / "state").mkdir(parents=True)
            cfg = node_dir / "dhcp.toml"
            cfg.write_text(config if config is not None else dhcp_toml(client_net))
        metrics_port = free_port(socket.SOCK_STREAM)
        health = graph.subscribe(HEALTH, Bool)
        status = graph.subscribe(STATUS, String)
        # Transient-local like `ros2 topic echo --qos-durability transient_local`,
        # deeper than the writer's 1 so no message is lost between two takes.
        leases = graph.subscribe(LEASES, String, ros_qos(100, transient_local=True))
        lc = graph.lifecycle_client(NODE)
        proc = launch(binary, "--config", str(cfg), "--state-dir", str(node_dir / "state"),
                      "--run-dir", str(node_dir / "run"), "--key", str(node_dir / "node.key"),
                      "--node-config", str(node_dir / "absent-ntari.toml"),
                      "--metrics-port", str(metrics_port), "--probe-interval", "0.5", *args,
                      name=f"ntari-dhcp-{count[0]}")
        if wait_ready:
            assert lc.wait_ready(READY_TIMEOUT), "lifecycle services of ntari-dhcp never appeared"
        return SimpleNamespace(proc=proc, lc=lc, health=health, status=status, leases=leases, config=cfg,
                               dir=node_dir, run=node_dir / "run", state=node_dir / "state",
                               metrics_port=metrics_port)

    return _start


def start_active(dhcp_node, **kw):
    node = dhcp_node("--autostart", **kw)
    wait_health(node, True, 15)
    return node


def latest_payload(node):
    node.status.poll()
    return envelope(node.status.history[-1])["payload"] if node.status.history else None


def kea_pid(node) -> int:
    """The pid of the running kea-dhcp4, from the latest status showing one."""
    p = latest_payload(node)
    if p is not None and p["daemon"]["running"] and is_kea(p["daemon"]["pid"]):
        return p["daemon"]["pid"]
    env = wait_status(node, lambda p: p["daemon"]["running"] and is_kea(p["daemon"]["pid"]), 10,
                      "a running kea-dhcp4 in status")
    return env["payload"]["daemon"]["pid"]


def wait_snapshot(node, timeout: float = 5.0) -> dict:
    msg = lease_message(node.leases.wait_for(lambda s: lease_message(s)["snapshot"], timeout=timeout,
                                             what="a snapshot"))
    check_message_shape(msg)
    assert msg["events"] == [], msg
    return msg


# ---------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------

def test_client_gets_a_pool_address_with_the_configured_options(dhcp_node, clients, client_net):
    net = client_net
    node = start_active(dhcp_node)
    env = wait_status(node, lambda p: p["lifecycle_state"] == "active" and p["healthy"], 10, "healthy status")
    payload = env["payload"]
    assert payload["service"] == "dhcp" and payload["node"] == NODE
    assert payload["daemon"]["name"] == "kea-dhcp4" and is_kea(payload["daemon"]["pid"]), payload["daemon"]
    assert "2." in (payload["daemon"]["version"] or ""), payload["daemon"]
    assert payload["last_error"] is None
    assert env["issuer"].startswith("did:key:z6Mk") and len(env["signature"]) == 128

    got = clients.once(hostname="laptop")
    assert in_pool(net, got["ip"]), got
    assert got["mask"] == "24" and got["serverid"] == net.server_ip, got
    assert got["router"] == net.server_ip, got
    assert got["dns"].split() == [net.server_ip], got
    assert got["domain"] == DOMAIN, got
    assert got["ntpsrv"].split() == [net.server_ip], got
    assert got["lease"] == "3600", got
    assert f"{got['ip']}/24" in net.client_addresses()

    # Kea has it, and the node's status counts it.
    lease = kea_leases(node)[got["ip"]]
    assert lease["hw-address"] == got["mac"] and lease["hostname"] == "laptop" and lease["valid-lft"] == 3600, lease
    env = wait_status(node, lambda p: any(s.get("assigned") == 1 for s in p["detail"].get("subnets", [])), 5,
                      "assigned=1 in the status detail")
    detail = env["payload"]["detail"]
    [row] = detail["subnets"]
    assert {k: row.get(k) for k in ("id", "subnet", "assigned", "total")} == \
        {"id": 1, "subnet": net.subnet, "assigned": 1, "total": POOL_SIZE}, detail
    assert detail["leases"] == 1, detail
    assert isinstance(detail.get("summary"), str) and detail["summary"], detail
    assert env["payload"]["healthy"] is True


def test_reservation_by_mac_gets_its_fixed_address_and_name(dhcp_node, clients, client_net):
    net = client_net
    mac = random_mac()
    reserved = f"{net.net}.10"              # outside the pool
    node = start_active(dhcp_node, config=dhcp_toml(net, reservations=[(mac, reserved, "printer")]))
    got = clients.once(mac=mac)             # sends no hostname of its own
    assert got["ip"] == reserved, got
    assert got["hostname"] == "printer", got
    _, ev = wait_lease_event(node, "granted", reserved)
    assert ev["mac"] == mac and ev.get("hostname") == "printer", ev
    # Again (a reboot): the same address.
    assert clients.once(mac=mac)["ip"] == reserved
    # Anyone else gets a pool address, never the reserved one.
    other = clients.once(hostname="guest")
    assert in_pool(net, other["ip"]), other
    leases = kea_leases(node)
    assert leases[reserved]["hw-address"] == mac and leases[other["ip"]]["hw-address"] == other["mac"], leases


def test_lease_events_granted_renewed_released_and_late_subscriber(dhcp_node, clients, client_net, domain_id):
    net = client_net
    node = start_active(dhcp_node)
    snap = wait_snapshot(node)
    assert snap["leases"] == [], snap

    # granted
    laptop = clients.start(hostname="laptop")
    t_bound = time.time()
    msg, granted = wait_lease_event(node, "granted", laptop.ip)
    print(f"granted seen {(time.time() - t_bound) * 1000:.0f} ms after udhcpc logged bound")
    check_message_shape(msg)
    assert msg["snapshot"] is False
    assert granted["mac"] == laptop.mac and granted["hostname"] == "laptop", granted
    assert abs(granted["expiry"] - (t_bound + 3600)) <= 5, (granted, t_bound)
    assert table(msg) == {laptop.ip: {k: granted[k] for k in ("ip", "mac", "hostname", "expiry")}}, msg

    # renewed: the same address and client, a later expiry.
    time.sleep(1.1)     # expiry has a resolution of one second
    assert laptop.renew()["ip"] == laptop.ip
    msg, renewed = wait_lease_event(node, "renewed", laptop.ip)
    check_message_shape(msg)
    assert renewed["mac"] == laptop.mac and renewed["expiry"] > granted["expiry"], (granted, renewed)
    assert table(msg)[laptop.ip]["expiry"] == renewed["expiry"], msg
    assert not any(e["event"] == "granted" and e["ip"] == laptop.ip for e in msg["events"]), msg

    # A second client, then the first one releases.
    phone = clients.once(hostname="phone")
    assert phone["ip"] != laptop.ip
    msg, _ = wait_lease_event(node, "granted", phone["ip"])
    assert set(table(msg)) == {laptop.ip, phone["ip"]}, msg
    # The one-shot client changed the interface's MAC: give the laptop its own
    # back, and its address, so its unicast release goes out as it should.
    net.flush()
    net.set_mac(laptop.mac)
    net.ip("addr", "add", f"{laptop.ip}/24", "dev", net.client_if)
    laptop.release()
    msg, released = wait_lease_event(node, "released", laptop.ip)
    check_message_shape(msg)
    assert released["mac"] == laptop.mac, released
    assert set(table(msg)) == {phone["ip"]}, msg
    held = kea_leases(node).get(laptop.ip)
    assert held is None or held["state"] == 2, held    # gone, or kept as expired-reclaimed

    # A late subscriber (its own participant, like a `ros2 topic echo`
    # started now) gets the last message: the whole table.
    with Graph(domain_id) as late:
        sub = late.subscribe(LEASES, String, ros_qos(1, transient_local=True))
        last = lease_message(sub.wait_for(timeout=5, what="the latched lease message"))
    assert last == msg, (last, msg)
    assert set(table(last)) == {phone["ip"]} and table(last)[phone["ip"]]["hostname"] == "phone", last


def test_expired_event_after_the_lease_ends(dhcp_node, clients, client_net):
    node = start_active(dhcp_node, config=dhcp_toml(client_net, lease_time=3, reclaim_interval=1))
    wait_snapshot(node)
    got = clients.once(hostname="brief")    # exits without renewing or releasing
    assert got["lease"] == "3", got
    _, granted = wait_lease_event(node, "granted", got["ip"])
    # Kea reclaims within reclaim_interval (1 s) after the end; the event
    # follows within about a second.
    remaining = granted["expiry"] - time.time()
    assert 0 < remaining <= 4, granted
    msg, expired = wait_lease_event(node, "expired", got["ip"], timeout=remaining + 1 + EVENT_DELAY)
    late = time.time() - granted["expiry"]
    print(f"expired seen {late:.2f} s after the lease's end")
    assert expired["mac"] == got["mac"] and expired.get("hostname") == "brief", expired
    assert msg["leases"] == [], msg
    held = kea_leases(node).get(got["ip"])
    assert held is None or held["state"] == 2, held    # gone, or kept as expired-reclaimed


def test_leases_survive_kill_9_of_kea_and_of_the_node(dhcp_node, clients, client_net):
    node = start_active(dhcp_node)
    laptop = clients.start(hostname="laptop")
    wait_lease_event(node, "granted", laptop.ip)
    pid = kea_pid(node)

    # kill -9 of kea-dhcp4: health false, restarted after ~1 s, lease kept.
    payload = kill_daemon_and_see_restart(node, pid, "kea-dhcp4", false_within=2)
    new_pid = payload["daemon"]["pid"]
    assert is_kea(new_pid)
    assert kea_leases(node)[laptop.ip]["hw-address"] == laptop.mac
    # Whatever the node published since carries the lease in its table.
    for s in node.leases.collect(1.0):
        assert laptop.ip in table(lease_message(s)), lease_message(s)
    time.sleep(1.1)
    assert laptop.renew()["ip"] == laptop.ip, "the same client got another address after the restart"
    msg, _ = wait_lease_event(node, "renewed", laptop.ip)
    assert table(msg)[laptop.ip]["mac"] == laptop.mac

    # kill -9 of the node: its Kea goes with it (parent-death signal).
    node.proc.send_signal(signal.SIGKILL)
    assert node.proc.wait(5) is not None
    wait_until(lambda: not pid_alive(new_pid), 3, "kea-dhcp4 to die with its node")
    # Started again on the same directories: the lease is in the snapshot.
    again = start_active(dhcp_node, reuse=node)
    snap = wait_snapshot(again)
    assert table(snap)[laptop.ip]["mac"] == laptop.mac and table(snap)[laptop.ip]["hostname"] == "laptop", snap
    assert kea_leases(again)[laptop.ip]["hw-address"] == laptop.mac
    time.sleep(1.1)
    assert laptop.renew()["ip"] == laptop.ip


def test_sighup_refuses_an_invalid_config_and_applies_a_valid_one_live(dhcp_node, clients, client_net):
    net = client_net
    node = start_active(dhcp_node)
    first = clients.once(hostname="first")
    pid = kea_pid(node)
    rendered_path = node.run / "kea-dhcp4.conf"
    rendered = rendered_path.read_text()
    n = net.net
    cases = [
        (dhcp_toml(net, pools=["10.9.9.100 - 10.9.9.150"]), "pools"),
        (dhcp_toml(net, extra='colour = "blue"\n'), "colour"),
        (dhcp_toml(net, reservations=[(random_mac(), "10.9.9.10", None)]), "ip"),
        (dhcp_toml(net, reservations=[("52:54:00:zz:00:01", f"{n}.10", None)]), "mac"),
        # Valid as far as the node can tell; Kea's config-test refuses it.
        (dhcp_toml(net, interfaces=[net.server_if[:-1] + "x"]), ""),
    ]
    for i, (text, where) in enumerate(cases, start=1):
        node.status.skip()
        node.config.write_text(text)
        node.proc.send_signal(signal.SIGHUP)
        env = wait_status(node, lambda p: (p["last_error"] or "").startswith("reload refused")
                          and where in p["last_error"], 5, f"reload refused (case {i}, naming {where!r})")
        assert is_kea(pid), f"case {i}: the running kea-dhcp4 must be untouched"
        assert rendered_path.read_text() == rendered, f"case {i}: the rendered kea-dhcp4.conf changed"
        assert env["payload"]["daemon"]["pid"] == pid
        print(f"case {i}: {env['payload']['last_error']}")
        if where:
            assert "dhcp.toml" in env["payload"]["last_error"], env["payload"]["last_error"]
    # Still serving: a new client gets an address.
    second = clients.once(hostname="second")
    assert in_pool(net, second["ip"]) and second["ip"] != first["ip"]

    # A valid change: a new reservation and another lease time, applied by
    # config-reload, same pid.
    mac = random_mac()
    node.status.skip()
    node.config.write_text(dhcp_toml(net, lease_time=1800, reservations=[(mac, f"{n}.20", "nas")]))
    node.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: f"{n}.20" in rendered_path.read_text(), 5, "the reservation in kea-dhcp4.conf")
    wait_status(node, lambda p: p["last_error"] is None and p["healthy"], 5, "a healthy status without error")
    got = clients.once(mac=mac)
    assert got["ip"] == f"{n}.20" and got["hostname"] == "nas" and got["lease"] == "1800", got
    third = clients.once(hostname="third")
    assert in_pool(net, third["ip"]) and third["lease"] == "1800", third
    assert is_kea(pid) and kea_pid(node) == pid, "kea-dhcp4 was restarted by a reload"
    leases = kea_leases(node)
    assert first["ip"] in leases and second["ip"] in leases, leases
    assert leases[first["ip"]]["valid-lft"] == 3600, leases[first["ip"]]   # untouched by the reload
    assert latest_payload(node)["daemon"]["restarts"] == 0


def test_invalid_config_fails_configure_with_the_reason(dhcp_node, client_net):
    net = client_net
    node = dhcp_node(config="this is not toml\n")
    n = net.net
    cases = [
        ("this is not toml\n", "dhcp.toml:1"),
        (dhcp_toml(net, extra='colour = "blue"\n'), "colour"),
        (dhcp_toml(net, interfaces=[]), "interfaces"),
        (dhcp_toml(net, pools=["10.9.9.100 - 10.9.9.150"]), "pools"),
        (dhcp_toml(net, reservations=[(random_mac(), "10.9.9.10", None)]), "reservations"),
        (dhcp_toml(net, reservations=[("52:54:00:zz:00:01", f"{n}.10", None)]), "mac"),
        (dhcp_toml(net, reclaim_interval=0), "reclaim_interval"),
    ]
    for text, where in cases:
        assert_configure_refused(node, text, where, "dhcp.toml")
    assert not (node.run / "kea-dhcp4.conf").exists() or "10.9.9" not in (node.run / "kea-dhcp4.conf").read_text()
    wait_health(node, False, 3)
    node.config.write_text(dhcp_toml(net))
    assert node.lc.change_state(T.CONFIGURE) is True
    assert node.lc.change_state(T.ACTIVATE) is True
    wait_health(node, True, 10)


def test_check_config_subcommand(work_dir, client_net):
    binary = find_binary("ntari-dhcp")
    good = work_dir / "good.toml"
    good.write_text(dhcp_toml(client_net, reservations=[(random_mac(), f"{client_net.net}.10", "printer")]))
    bad = work_dir / "bad.toml"
    bad.write_text(dhcp_toml(client_net, pools=["10.9.9.100 - 10.9.9.150"]))
    common = ["--state-dir", str(work_dir / "state")]
    ok = subprocess.run([str(binary), "--config", str(good), *common, "check-config"],
                        capture_output=True, text=True, timeout=30)
    assert ok.returncode == 0, ok.stderr
    assert f"{good}: ok" in ok.stdout, ok.stdout
    ko = subprocess.run([str(binary), "--config", str(bad), *common, "check-config"],
                        capture_output=True, text=True, timeout=30)
    assert ko.returncode != 0
    assert "bad.toml:" in ko.stderr and "pools" in ko.stderr, ko.stderr


def test_metrics_have_kea_exporter_names(dhcp_node, clients, client_net):
    net = client_net
    node = start_active(dhcp_node)
    mp = node.metrics_port
    clients.once(hostname="m")
    sub = {"subnet": net.subnet, "subnet_id": "1"}
    wait_until(lambda: metric(mp, "kea_dhcp4_addresses_assigned_total", **sub, pool="") == 1, 5,
               "kea_dhcp4_addresses_assigned_total == 1")
    wait_until(lambda: (metric(mp, "kea_dhcp4_packets_sent_total", operation="ack") or 0) >= 1, 5,
               'kea_dhcp4_packets_sent_total{operation="ack"} >= 1')
    m = metrics(mp)
    names = sorted(k for k in m if k.startswith("kea_"))
    assert metric(mp, "kea_dhcp4_packets_received_total", operation="discover") >= 1, names
    assert metric(mp, "kea_dhcp4_packets_received_total", operation="request") >= 1, names
    assert metric(mp, "kea_dhcp4_packets_sent_total", operation="offer") >= 1, names
    assert metric(mp, "kea_dhcp4_packets_sent_total", operation="nak") == 0, names
    assert metric(mp, "kea_dhcp4_addresses_total", **sub, pool="") == POOL_SIZE, m.get("kea_dhcp4_addresses_total")
    assert metric(mp, "kea_dhcp4_addresses_reclaimed_total", **sub, pool="") == 0, names
    failed = m.get("kea_dhcp4_allocations_failed_total", [])
    assert failed and all("context" in labels for labels, _ in failed), (failed, names)
    assert all(v == 0 for _, v in failed), failed
    assert metric(mp, "ntari_node_healthy", service="dhcp") == 1


def test_deactivate_stops_kea_and_sigterm_too_the_leases_stay(dhcp_node, clients, graph):
    node = start_active(dhcp_node)
    got = clients.once(hostname="keep")
    wait_lease_event(node, "granted", got["ip"])
    pid = kea_pid(node)
    csv = node.state / "leases4.csv"

    assert node.lc.change_state(T.DEACTIVATE) is True
    assert not pid_alive(pid), "kea-dhcp4 still running after deactivate"
    wait_health(node, False, 2)
    assert node.lc.get_state().id == S.INACTIVE
    assert got["ip"] in csv.read_text()
    assert node.lc.change_state(T.CLEANUP) is True
    assert node.lc.get_state().id == S.UNCONFIGURED
    assert csv.exists() and got["ip"] in csv.read_text(), "cleanup must keep the lease database"

    node.leases.skip()
    assert node.lc.change_state(T.CONFIGURE) is True
    assert node.lc.change_state(T.ACTIVATE) is True
    wait_health(node, True, 10)
    snap = wait_snapshot(node)
    assert table(snap)[got["ip"]]["mac"] == got["mac"], snap
    pid = kea_pid(node)

    assert node.proc.stop(signal.SIGTERM, timeout=15) == 0
    assert not pid_alive(pid), "kea-dhcp4 outlived its node's SIGTERM"
    assert graph.wait_node_gone(NODE, timeout=10)
    assert csv.exists() and got["ip"] in csv.read_text()

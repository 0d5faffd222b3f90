"""ntari-vpn against real WireGuard tunnels, seen from an independent DDS client.

The node runs in the root namespace (its DDS traffic on loopback next to
the test's graph client), with a WireGuard interface of a unique name. Each
peer lives in a network namespace of its own, reached over a veth pair
(tests/interop/netns.py): a plain wireguard-go or boringtun tunnel there,
configured with `wg set`, as another cooperative's hub would be. Every
packet stays on the veth pairs and tunnels the test creates; each test
removes its namespaces, interfaces and processes.

Needs root, /dev/net/tun, wireguard-tools (wg) and wireguard-go.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

import netns
from conftest import find_binary
from helpers import (free_port, kill_daemon_and_see_restart, pid_alive, wait_health, wait_status, wait_until,
                     wg_key, write_key)
from ros_types import S, T, Bool, String

NODE = "/ntari/ntari_vpn_node"
HEALTH = "/ntari/vpn/health"
STATUS = "/ntari/vpn/status"
PEERS = "/ntari/vpn/peers"
READY_TIMEOUT = 20.0
WG = shutil.which("wg") or "/usr/bin/wg"

pytestmark = pytest.mark.skipif(
    netns.available() is not None or not os.path.exists("/dev/net/tun") or shutil.which("wg") is None,
    reason=f"needs root, ip netns, /dev/net/tun and wg: {netns.available()}",
)




def tag() -> str:
    return "%05x" % random.SystemRandom().randrange(1 << 20)


class Peer:
    """A WireGuard peer in a namespace of its own: ``impl`` is
    ``wireguard-go`` or ``boringtun`` (ntari-vpn's tunnel process alone)."""

    def __init__(self, tmp: Path, impl: str, tunnel_net: str, host: int, third_octet: int):
        self.net = netns.ClientNet(third_octet=third_octet, prefix="ntv")
        self.impl = impl
        self.iface = f"ntvp{tag()}"
        self.private, self.public = wg_key(WG)
        self.key_file = write_key(tmp / f"{self.iface}.key", self.private)
        self.tunnel_ip = f"{tunnel_net}.{host}"
        self.port = free_port()
        self.proc = None

    def start(self, hub_public: str, hub_endpoint: str, hub_tunnel_ip: str, vpn_bin: Path) -> "Peer":
        self.net.create()
        self.veth_ip = f"{self.net.net}.2"
        self.net.ip("addr", "add", f"{self.veth_ip}/24", "dev", self.net.client_if)
        argv = ["wireguard-go", "-f", self.iface] if self.impl == "wireguard-go" else [vpn_bin, "__boringtun", self.iface]
        self.proc = self.net.popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(lambda: Path(f"/var/run/wireguard/{self.iface}.sock").exists(), 10, f"{self.impl} socket")
        self.net.run([WG, "set", self.iface, "private-key", self.key_file, "listen-port", str(self.port),
                      "peer", hub_public, "allowed-ips", f"{hub_tunnel_ip}/32", "endpoint", hub_endpoint],
                     check=True)
        self.net.ip("addr", "add", f"{self.tunnel_ip}/32", "dev", self.iface)
        self.net.ip("link", "set", self.iface, "up")
        self.net.ip("route", "add", f"{hub_tunnel_ip}/32", "dev", self.iface)
        return self

    @property
    def endpoint(self) -> str:
        return f"{self.net.net}.2:{self.port}"

    def ping(self, target: str, count: int = 3, interval: float = 0.2) -> subprocess.CompletedProcess:
        return self.net.run(["ping", "-c", str(count), "-i", str(interval), "-W", "1", target], timeout=30)

    def remove(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.net.remove()
        try:
            os.unlink(f"/var/run/wireguard/{self.iface}.sock")
        except FileNotFoundError:
            pass


def hub_toml(iface: str, port: int, tunnel_net: str, peers, extra: str = "") -> str:
    blocks = "".join(
        f"""
[[peers]]
name = "{name}"
public_key = "{p.public}"
endpoint = "{p.endpoint}"
allowed_ips = ["{p.tunnel_ip}/32"]
""" for name, p in peers)
    return f"""interface = "{iface}"
backend = "boringtun"
addresses = ["{tunnel_net}.1/24"]
listen_port = {port}
{extra}
{blocks}"""


@pytest.fixture
def vpn(launch, graph, tmp_path):
    """A hub (``vpn.start(peers, ...)``) and the peers the test makes
    (``vpn.peer(impl)``), all removed at the end."""
    binary = find_binary("ntari-vpn")
    n = random.SystemRandom().randrange(100, 250)
    made = []
    hub = SimpleNamespace(iface=f"ntvh{tag()}", port=free_port(), net=f"10.{n}.0", binary=binary,
                          private=None, public=None, dir=tmp_path / "hub")
    (hub.dir / "state").mkdir(parents=True)
    hub.private, hub.public = wg_key(WG)
    write_key(hub.dir / "state" / "private.key", hub.private)

    octets = random.SystemRandom().sample(range(100, 251), 8)

    def peer(impl: str = "wireguard-go", host: int = None) -> Peer:
        p = Peer(tmp_path, impl, hub.net, host or (2 + len(made)), octets[len(made)])
        made.append(p)
        return p

    def config(peers, extra: str = "") -> str:
        return hub_toml(hub.iface, hub.port, hub.net, peers, extra)

    def start(peers, *args, config_text: str = None, autostart: bool = True):
        cfg = hub.dir / "vpn.toml"
        cfg.write_text(config_text if config_text is not None else config(peers))
        node = SimpleNamespace(
            health=graph.subscribe(HEALTH, Bool), status=graph.subscribe(STATUS, String),
            peers=graph.subscribe(PEERS, String), lc=graph.lifecycle_client(NODE), config=cfg,
            metrics_port=free_port(socket.SOCK_STREAM), dir=hub.dir)
        node.proc = launch(binary, "--config", cfg, "--state-dir", hub.dir / "state", "--run-dir", hub.dir / "run",
                           "--key", hub.dir / "node.key", "--node-config", hub.dir / "absent-ntari.toml",
                           "--metrics-port", str(node.metrics_port), "--probe-interval", "0.5",
                           *(["--autostart"] if autostart else []), *args, name="ntari-vpn")
        assert node.lc.wait_ready(READY_TIMEOUT), "lifecycle services of ntari-vpn never appeared"
        return node

    def connect(p: Peer) -> Peer:
        # The peer's endpoint is the hub's side of its veth pair.
        return p.start(hub.public, f"{p.net.server_ip}:{hub.port}", f"{hub.net}.1", binary)

    hub.peer, hub.config, hub.start, hub.connect = peer, config, start, connect
    try:
        yield hub
    finally:
        for p in made:
            p.remove()
        subprocess.run(["ip", "link", "del", hub.iface], capture_output=True)
        # A tunnel killed along with its node leaves its control socket
        # (the next start of the node would remove it).
        Path(f"/var/run/wireguard/{hub.iface}.sock").unlink(missing_ok=True)


def tunnel_pid(node) -> int:
    env = wait_status(node, lambda p: p["daemon"] and p["daemon"]["running"], 10, "a running tunnel in status")
    return env["payload"]["daemon"]["pid"]


def handshake_with(iface: str, public: str, netns_of: Peer = None) -> int:
    """The latest handshake time `wg show` reports for ``public`` (0: none)."""
    argv = [WG, "show", iface, "latest-handshakes"]
    out = netns_of.net.run(argv, check=True).stdout if netns_of else subprocess.run(
        argv, capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        key, _, when = line.partition("\t")
        if key == public:
            return int(when)
    raise AssertionError(f"`wg show {iface}` does not list {public}:\n{out}")


def one_peer_up(vpn, impl: str = "wireguard-go"):
    """A healthy hub with one connected peer `riverside` that it can ping."""
    p = vpn.peer(impl)
    node = vpn.start([("riverside", p)])
    wait_health(node, True, READY_TIMEOUT)
    vpn.connect(p)
    out = p.ping(f"{vpn.net}.1")
    assert out.returncode == 0, out.stdout + out.stderr
    return p, node


def tcp_transfer(peer: Peer, hub_ip: str, size: int = 4 << 20) -> None:
    """``size`` bytes from the peer's namespace to a listener on the hub's
    tunnel address, checked byte for byte by their sha256."""
    import hashlib
    port = free_port(socket.SOCK_STREAM)
    srv = socket.socket()
    srv.bind((hub_ip, port))
    srv.listen(1)
    srv.settimeout(20)
    got = hashlib.sha256()
    received = [0]

    def serve():
        conn, _ = srv.accept()
        conn.settimeout(20)
        with conn:
            while True:
                chunk = conn.recv(1 << 16)
                if not chunk:
                    break
                got.update(chunk)
                received[0] += len(chunk)

    t = threading.Thread(target=serve)
    t.start()
    script = ("import socket,hashlib,sys;d=bytes(range(256))*(%d//256);s=socket.create_connection(('%s',%d),10);"
              "s.sendall(d);s.close();print(hashlib.sha256(d).hexdigest())") % (size, hub_ip, port)
    out = peer.net.run(["python3", "-c", script], timeout=60, check=True).stdout.strip()
    t.join(30)
    srv.close()
    assert received[0] == size and got.hexdigest() == out, f"{received[0]} of {size} bytes arrived intact"


@pytest.mark.parametrize("impl", ["wireguard-go", "boringtun"])
def test_traffic_flows_and_wg_show_lists_the_peer(vpn, impl):
    """boringtun (the node's tunnel) to wireguard-go (another
    implementation) and to boringtun: ping and a 4 MiB TCP transfer through
    the tunnel; `wg show` on the node's interface lists the peer with a
    fresh handshake; status, /ntari/vpn/peers and metrics say the same."""
    p, node = one_peer_up(vpn, impl)
    tcp_transfer(p, f"{vpn.net}.1")
    assert time.time() - handshake_with(vpn.iface, p.public) < 30
    shown = subprocess.run([WG, "show", vpn.iface], capture_output=True, text=True, check=True).stdout
    assert f"peer: {p.public}" in shown and "latest handshake" in shown, shown

    import json
    sample = node.peers.wait_for(lambda m: any(x["latest_handshake"] for x in json.loads(m.data)["peers"]),
                                 10, "a peer table with the handshake")
    table = json.loads(sample.data)
    assert table["version"] == 1 and table["interface"] == vpn.iface and table["public_key"] == vpn.public
    (entry,) = table["peers"]
    assert entry["name"] == "riverside" and entry["public_key"] == p.public and not entry["stale"]
    assert entry["rx_bytes"] > 0 and entry["allowed_ips"] == [f"{p.tunnel_ip}/32"]
    assert "private" not in sample.data and vpn.private not in sample.data

    env = wait_status(node, lambda x: x["detail"].get("peers_stale") == 0, 10, "no stale peer in status")
    detail = env["payload"]["detail"]
    assert detail["backend"] == "boringtun" and detail["public_key"] == vpn.public
    assert env["payload"]["daemons"][0]["name"] == "boringtun"
    import urllib.request
    text = urllib.request.urlopen(f"http://127.0.0.1:{node.metrics_port}/metrics", timeout=5).read().decode()
    line = next(l for l in text.splitlines() if l.startswith("wireguard_received_bytes_total{"))
    assert f'public_key="{p.public}"' in line and 'name="riverside"' in line and f'interface="{vpn.iface}"' in line
    assert 'ntari_node_daemon_up{daemon="boringtun",service="vpn"} 1' in text


def test_a_peer_without_handshake_is_stale_a_warning_not_unhealthy(vpn):
    """A configured peer that never answered: health stays true, the peer
    is `stale`, status lists a warning, /diagnostics says WARN."""
    p = vpn.peer()     # never started: nothing answers at its endpoint
    p.net.create()
    _, roaming = wg_key(WG)   # and one without an endpoint (it would call us)
    text = vpn.config([("silent", p)]) + f"""
[[peers]]
name = "roaming"
public_key = "{roaming}"
allowed_ips = ["{vpn.net}.9/32"]
"""
    node = vpn.start([], config_text=text)
    wait_health(node, True, READY_TIMEOUT)
    env = wait_status(node, lambda x: len(x["warnings"]) == 2, 10, "a warning per peer in status")
    assert env["payload"]["healthy"] is True
    assert "peer silent is stale: no handshake yet" in env["payload"]["warnings"]
    peers = {x["name"]: x for x in env["payload"]["detail"]["peers"]}
    # boringtun once carried one peer's endpoint over to the next of the same request.
    assert peers["roaming"]["endpoint"] is None and peers["silent"]["endpoint"] == p.endpoint, peers


def test_kill_9_of_the_tunnel_health_false_at_once_then_handshake_again(vpn):
    p, node = one_peer_up(vpn)
    pid = tunnel_pid(node)
    before = handshake_with(vpn.iface, p.public)
    payload = kill_daemon_and_see_restart(node, pid, "boringtun")
    assert payload["daemons"][0]["restarts"] == 1
    # The new tunnel has the same key and port: the peer's next packet
    # makes a new handshake, and traffic flows again.
    wait_until(lambda: p.ping(f"{vpn.net}.1", count=1).returncode == 0, 20, "ping through the new tunnel")
    assert handshake_with(vpn.iface, p.public) >= before


def test_node_sigkill_takes_the_tunnel_and_interface_within_a_second(vpn):
    p = vpn.peer()
    node = vpn.start([("riverside", p)])
    wait_health(node, True, READY_TIMEOUT)
    pid = tunnel_pid(node)
    node.proc.send_signal(signal.SIGKILL)
    killed = time.monotonic()
    wait_until(lambda: not pid_alive(pid) and not Path(f"/sys/class/net/{vpn.iface}").exists(), 1.0,
               "tunnel process and interface gone")
    print(f"node SIGKILL -> tunnel and interface gone after {(time.monotonic() - killed) * 1000:.0f} ms")
    # What OpenRC's respawn does: the same command line, healthy again.
    again = vpn.start([("riverside", p)])
    wait_health(again, True, READY_TIMEOUT)


def test_peers_change_live_the_tunnel_and_other_sessions_stay(vpn):
    """Adding and removing a peer (SIGHUP) keeps the tunnel process and the
    other peer's session: a ping running across the change loses nothing."""
    b, c = vpn.peer(), vpn.peer()
    node = vpn.start([("b", b)])
    wait_health(node, True, READY_TIMEOUT)
    vpn.connect(b)
    assert b.ping(f"{vpn.net}.1").returncode == 0
    pid = tunnel_pid(node)
    b_handshake = handshake_with(vpn.iface, b.public)

    pinger = b.net.popen(["ping", "-c", "30", "-i", "0.1", "-W", "1", f"{vpn.net}.1"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    time.sleep(0.5)
    node.config.write_text(vpn.config([("b", b), ("c", c)]))
    node.proc.send_signal(signal.SIGHUP)
    vpn.connect(c)
    wait_until(lambda: c.ping(f"{vpn.net}.1", count=1).returncode == 0, 10, "ping from the new peer")
    node.config.write_text(vpn.config([("b", b)]))
    node.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: c.public not in subprocess.run([WG, "show", vpn.iface, "peers"], capture_output=True,
                                                      text=True).stdout, 5, "the removed peer gone from wg show")
    out, _ = pinger.communicate(timeout=30)
    assert " 0% packet loss" in out, out
    assert tunnel_pid(node) == pid, "a peer change must not restart the tunnel"
    assert handshake_with(vpn.iface, b.public) == b_handshake, "b's session must be untouched"
    assert c.ping(f"{vpn.net}.1", count=1).returncode != 0, "the removed peer must be cut off"


BAD_FIELDS = [
    ("interface", 'interface = "a-name-far-too-long"', "interface"),
    ("backend", 'backend = "ipsec"', "backend"),
    ("addresses", 'addresses = ["10.1.2.3"]', "addresses"),
    ("listen_port", "listen_port = 70000", "listen_port"),
    ("mtu", "mtu = 100", "mtu"),
    ("public_key", 'public_key = "not-a-key"', "peers[0].public_key"),
    ("allowed_ips", 'allowed_ips = ["10.1.0.1/16"]', "peers[0].allowed_ips[0]"),
    ("endpoint", 'endpoint = "192.0.2.1"', "peers[0].endpoint"),
    ("keepalive", "persistent_keepalive = 0", "peers[0].persistent_keepalive"),
    ("unknown", "colour = 3", "colour"),
]


def _break(text: str, field: str, line: str) -> str:
    """The config with one field made invalid (or an unknown one added)."""
    key = line.split(" =")[0]
    lines = text.splitlines()
    if field == "unknown":
        return line + "\n" + text
    in_peer = field in ("public_key", "allowed_ips", "endpoint", "keepalive")
    for i, l in enumerate(lines):
        if l.startswith(key + " ") and (("[[peers]]" in "\n".join(lines[:i])) == in_peer):
            lines[i] = line
            return "\n".join(lines) + "\n"
    if in_peer:
        return text + line + "\n"
    return line + "\n" + text


def test_every_invalid_field_is_refused_by_name_and_the_tunnel_runs_on(vpn):
    p, node = one_peer_up(vpn)
    pid = tunnel_pid(node)
    good = node.config.read_text()
    for field, line, key in BAD_FIELDS:
        node.status.skip()
        node.config.write_text(_break(good, field, line))
        node.proc.send_signal(signal.SIGHUP)
        env = wait_status(node, lambda x: x["last_error"] and "reload refused" in x["last_error"], 10,
                          f"the reload of a bad {field} refused")
        reason = env["payload"]["last_error"]
        assert "vpn.toml:" in reason and key in reason, f"{field}: {reason}"
        assert env["payload"]["healthy"] is True and tunnel_pid(node) == pid, field
        node.config.write_text(good)
        node.proc.send_signal(signal.SIGHUP)
        wait_status(node, lambda x: not x["last_error"], 10, "the good config back")
    assert p.ping(f"{vpn.net}.1", count=1).returncode == 0


def test_a_peer_with_the_hubs_own_key_is_refused_at_configure(vpn):
    p = vpn.peer()
    text = vpn.config([("riverside", p)]).replace(p.public, vpn.public)
    node = vpn.start([], config_text=text, autostart=False)
    assert node.lc.change_state(T.CONFIGURE) is False
    env = wait_status(node, lambda x: x["last_error"], 5, "the refusal in status")
    assert "peers[0].public_key" in env["payload"]["last_error"] and "own public key" in env["payload"]["last_error"]
    assert node.lc.get_state().id == S.UNCONFIGURED and node.proc.alive()


def test_garbage_on_the_udp_port_gets_no_answer_and_changes_nothing(vpn):
    p, node = one_peer_up(vpn)
    pid = tunnel_pid(node)
    handshake = handshake_with(vpn.iface, p.public)
    script = ("import socket,os;s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);s.settimeout(1);"
              "[s.sendto(os.urandom(n),('%s',%d)) for n in (1,4,32,148,1500) for _ in range(20)];"
              "s.sendto(b'\\x01\\x00\\x00\\x00'+os.urandom(144),('%s',%d))\n"
              "try:\n print('ANSWER',s.recvfrom(2000))\nexcept socket.timeout:\n print('silent')"
              ) % (p.net.server_ip, vpn.port, p.net.server_ip, vpn.port)
    out = p.net.run(["python3", "-c", script], timeout=20, check=True).stdout
    assert out.strip() == "silent", out
    node.health.skip()
    assert all(m.data is True for m in node.health.collect(1.5)), "health must stay true"
    assert tunnel_pid(node) == pid
    assert handshake_with(vpn.iface, p.public) == handshake
    assert p.ping(f"{vpn.net}.1", count=1).returncode == 0


def test_deactivate_removes_the_interface_and_activate_brings_it_back(vpn):
    p = vpn.peer()
    node = vpn.start([("riverside", p)])
    wait_health(node, True, READY_TIMEOUT)
    pid = tunnel_pid(node)
    assert node.lc.change_state(T.DEACTIVATE) is True
    assert not pid_alive(pid) and not Path(f"/sys/class/net/{vpn.iface}").exists()
    assert not Path(f"/var/run/wireguard/{vpn.iface}.sock").exists()
    wait_health(node, False, 2)
    assert node.lc.change_state(T.ACTIVATE) is True
    wait_health(node, True, 10)
    vpn.connect(p)
    assert p.ping(f"{vpn.net}.1").returncode == 0


# Drop-in peer files (`peer_files`): what ntari-federation writes.

def write_dropin(path: Path, peers) -> None:
    """The drop-in document, written as its writers must: a temporary file,
    then a rename, so a reader never sees half of it."""
    import json
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"version": 1, "source": "test", "peers": peers}))
    os.replace(tmp, path)


def dropin_peer(name: str, public: str, ip: str, endpoint: str = None, not_after: float = None) -> dict:
    p = {"name": name, "public_key": public, "endpoint": endpoint, "allowed_ips": [f"{ip}/32"]}
    if not_after is not None:
        p["not_after"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(not_after))
    return p


def dump(iface: str) -> dict:
    """`wg show <iface> dump`: public key -> (endpoint, allowed ips)."""
    out = subprocess.run([WG, "show", iface, "dump"], capture_output=True, text=True, check=True).stdout
    rows = [line.split("\t") for line in out.splitlines()[1:]]
    return {r[0]: (r[2], r[3]) for r in rows}


def start_with_dropin(vpn, peers, **kw):
    """A healthy hub with ``peers`` in [[peers]] and a drop-in file (not
    written yet) in ``peer_files``; returns the node and the file."""
    path = vpn.dir / "federation" / "wireguard-peers.json"
    path.parent.mkdir(exist_ok=True)
    text = kw.pop("config_text", None) or vpn.config(peers, extra=f'peer_files = ["{path}"]')
    node = vpn.start(peers, config_text=text, **kw)
    wait_health(node, True, READY_TIMEOUT)
    return node, path


def test_drop_in_peers_come_and_go_live_and_carry_traffic(vpn):
    """A peer in the drop-in file is on the device within 3 s, named in
    status and /ntari/vpn/peers, and carries traffic; rewritten without it,
    it is gone within 3 s. Same tunnel process; the config peer's session
    is untouched."""
    import json
    p, q = vpn.peer(), vpn.peer()
    node, path = start_with_dropin(vpn, [("riverside", p)])
    vpn.connect(p)
    assert p.ping(f"{vpn.net}.1").returncode == 0
    pid = tunnel_pid(node)
    p_handshake = handshake_with(vpn.iface, p.public)

    write_dropin(path, [dropin_peer("federation:hillside", q.public, q.tunnel_ip, q.endpoint)])
    written = time.monotonic()
    wait_until(lambda: q.public in dump(vpn.iface), 3, "the drop-in peer in `wg show dump`")
    print(f"drop-in written -> peer on the device after {(time.monotonic() - written) * 1000:.0f} ms")
    assert dump(vpn.iface)[q.public] == (q.endpoint, f"{q.tunnel_ip}/32")
    vpn.connect(q)
    wait_until(lambda: q.ping(f"{vpn.net}.1", count=1).returncode == 0, 10, "ping through the drop-in peer")
    node.peers.wait_for(lambda m: any(x["name"] == "federation:hillside" and x["public_key"] == q.public
                                      for x in json.loads(m.data)["peers"]), 5, "the drop-in peer, named, on " + PEERS)
    env = wait_status(node, lambda x: any(e["name"] == "federation:hillside" for e in x["detail"]["peers"]), 5,
                      "the drop-in peer, named, in status")
    (entry,) = env["payload"]["detail"]["peer_files"]
    assert entry["path"] == str(path) and entry["peers"] == 1 and entry["error"] is None, entry

    write_dropin(path, [])
    wait_until(lambda: q.public not in dump(vpn.iface), 3, "the drop-in peer gone from `wg show dump`")
    assert q.ping(f"{vpn.net}.1", count=1).returncode != 0, "the removed peer must be cut off"
    assert tunnel_pid(node) == pid, "a drop-in change must not restart the tunnel"
    assert handshake_with(vpn.iface, p.public) == p_handshake, "the config peer's session must be untouched"
    assert p.ping(f"{vpn.net}.1", count=1).returncode == 0


def test_a_drop_in_peer_is_dropped_at_its_not_after_without_the_file_changing(vpn):
    node, path = start_with_dropin(vpn, [])
    _, short = wg_key(WG)
    _, long = wg_key(WG)
    not_after = int(time.time()) + 3   # whole seconds: 2 to 3 s from now
    write_dropin(path, [dropin_peer("short", short, f"{vpn.net}.20", not_after=not_after),
                        dropin_peer("long", long, f"{vpn.net}.21", not_after=time.time() + 3600)])
    wait_until(lambda: short in dump(vpn.iface) and long in dump(vpn.iface), 3, "both drop-in peers on the device")
    mtime = path.stat().st_mtime_ns
    wait_until(lambda: short not in dump(vpn.iface), not_after - time.time() + 3, "the expired peer gone")
    gone = time.time()
    assert gone >= not_after, f"removed {not_after - gone:.1f} s before its not_after"
    print(f"not_after -> peer removed after {(gone - not_after) * 1000:.0f} ms")
    assert long in dump(vpn.iface) and path.stat().st_mtime_ns == mtime


def test_a_bad_drop_in_file_is_a_warning_and_its_peers_stay(vpn):
    """Garbage in the file: status warnings name the file and the JSON
    path, the node stays healthy, the peers the file gave before stay; a
    good file again clears the warning."""
    node, path = start_with_dropin(vpn, [])
    _, a = wg_key(WG)
    good = [dropin_peer("a", a, f"{vpn.net}.30")]
    write_dropin(path, good)
    wait_until(lambda: a in dump(vpn.iface), 3, "the drop-in peer on the device")

    bad = dict(good[0], public_key="not-a-key")
    write_dropin(path, [bad])
    env = wait_status(node, lambda x: any(str(path) in w and "peers[0].public_key" in w for w in x["warnings"]), 5,
                      "a warning naming the file and the bad field")
    assert env["payload"]["healthy"] is True, env["payload"]
    (entry,) = env["payload"]["detail"]["peer_files"]
    assert "peers[0].public_key" in entry["error"] and entry["peers"] == 1, entry
    path.write_text("{ not json")
    wait_status(node, lambda x: any(str(path) in w and "key must be a string" in w for w in x["warnings"]), 5,
                "a warning for a file that is not JSON")
    node.health.skip()
    assert all(m.data is True for m in node.health.collect(1.5)), "health must stay true"
    assert a in dump(vpn.iface), "the peers the file gave before must stay"
    assert node.proc.alive()

    write_dropin(path, good)
    wait_status(node, lambda x: not any(str(path) in w for w in x["warnings"]), 5, "the warning gone")
    assert a in dump(vpn.iface)


def test_a_drop_in_peer_with_a_config_peers_key_is_ignored_with_a_warning(vpn):
    p = vpn.peer()
    node, path = start_with_dropin(vpn, [("riverside", p)])
    _, other = wg_key(WG)
    write_dropin(path, [dropin_peer("impostor", p.public, f"{vpn.net}.40", "192.0.2.9:51820"),
                        dropin_peer("other", other, f"{vpn.net}.41")])
    wait_until(lambda: other in dump(vpn.iface), 3, "the other drop-in peer on the device")
    env = wait_status(node, lambda x: any("`impostor`) ignored" in w and "[[peers]] `riverside`" in w
                                          for w in x["warnings"]), 5, "the ignored peer in status warnings")
    assert env["payload"]["healthy"] is True
    # The config's peer as the config says, not as the drop-in would have it.
    assert dump(vpn.iface)[p.public] == (p.endpoint, f"{p.tunnel_ip}/32")
    assert "impostor" not in [e["name"] for e in env["payload"]["detail"]["peers"]]


def test_drop_in_peers_are_back_after_a_tunnel_restart(vpn):
    """kill -9 of the tunnel: the new tunnel process gets the drop-in peers
    as well as the config's, and traffic flows through them again."""
    q = vpn.peer()
    node, path = start_with_dropin(vpn, [])
    write_dropin(path, [dropin_peer("federation:hillside", q.public, q.tunnel_ip, q.endpoint)])
    wait_until(lambda: q.public in dump(vpn.iface), 3, "the drop-in peer on the device")
    vpn.connect(q)
    wait_until(lambda: q.ping(f"{vpn.net}.1", count=1).returncode == 0, 10, "ping through the drop-in peer")
    kill_daemon_and_see_restart(node, tunnel_pid(node), "boringtun")
    assert dump(vpn.iface)[q.public] == (q.endpoint, f"{q.tunnel_ip}/32")
    wait_until(lambda: q.ping(f"{vpn.net}.1", count=1).returncode == 0, 20, "ping through the new tunnel")

"""Cooperatives in network namespaces, federated over real ntari-vpn tunnels
by real ntari-federation bridges: the harness of tests/ros2/test_federation.py
and ci/bench federation figures.

Layout (names unique per run, 4 random hex digits ``<t>``):
- an "internet" namespace ``ntf<t>-net`` holding a Linux bridge; each
  cooperative ``<coop>`` gets its own namespace ``ntf<t>-<i>`` joined to the
  bridge by a veth pair (``198.18.<k>.<i>/16``, RFC 2544 benchmark range);
  cutting a cooperative's "internet" is ``ip link set … down`` on its end;
- in each cooperative: its own loopback (so its own local DDS domain, on
  the test's ROS_DOMAIN_ID, Cyclone pinned to loopback by
  tests/cyclonedds-loopback.xml), a node key (``ntari-admin key init``),
  ntari-vpn (boringtun backend, interface ``wf<t><i>``, unique because the
  UAPI socket path /var/run/wireguard/<if>.sock is not per namespace,
  tunnel address ``10.<n>.0.<i>/24``, peers only from the federation's
  ``wireguard-peers.json``), and ntari-federation;
- agreements written here as YAML and signed by both parties with the real
  ``ntari-admin federation agreement sign``.

Everything started is ended by PID, then the namespaces are deleted (which
takes every veth and WireGuard interface with them).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

IP = "/usr/sbin/ip" if Path("/usr/sbin/ip").exists() else "ip"
REPO = Path(__file__).resolve().parents[2]
LOOPBACK_URI = "file://" + str(REPO / "tests" / "cyclonedds-loopback.xml")


def _run(argv: Sequence, check: bool = True, timeout: float = 20.0, **kw) -> subprocess.CompletedProcess:
    out = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=timeout, **kw)
    if check and out.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, argv))} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    return out


def rfc3339(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


class Coop:
    """One cooperative: its namespace, files and processes."""

    def __init__(self, fed: "Federation", name: str, index: int):
        self.fed, self.name, self.index = fed, name, index
        self.ns = f"ntf{fed.tag}-{index}"
        self.veth = f"ntf{fed.tag}c{index}"        # in the coop's namespace
        self.veth_net = f"ntf{fed.tag}n{index}"    # on the bridge
        self.iface = f"wf{fed.tag}{index}"
        self.address = f"198.18.{fed.octet}.{index}"
        self.tunnel_address = f"{fed.tunnel_net}.{index}"
        self.dir = fed.root / name
        self.procs: Dict[str, subprocess.Popen] = {}
        self.did = ""
        self.wg_public = ""

    # -- running things inside ------------------------------------------------
    def argv(self, argv: Sequence) -> List[str]:
        return [IP, "netns", "exec", self.ns, *[str(a) for a in argv]]

    def run(self, argv: Sequence, check: bool = True, timeout: float = 20.0, **kw) -> subprocess.CompletedProcess:
        return _run(self.argv(argv), check=check, timeout=timeout, **kw)

    def start(self, label: str, argv: Sequence, env: Optional[dict] = None) -> subprocess.Popen:
        log = open(self.dir / f"{label}.log", "wb")
        p = subprocess.Popen(self.argv(argv), env=env or self.fed.env, stdin=subprocess.DEVNULL,
                             stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs[label] = p
        return p

    def node_args(self, service: str, config: Path, metrics_port: int) -> List[str]:
        d = self.dir / service
        return ["--config", config, "--state-dir", d / "state", "--run-dir", d / "run",
                "--key", self.key, "--node-config", self.dir / "ntari.toml",
                "--metrics-port", str(metrics_port), "--probe-interval", "0.5", "--autostart"]

    @property
    def key(self) -> Path:
        return self.dir / "node.key"

    @property
    def agreements(self) -> Path:
        return self.dir / "agreements"

    @property
    def fed_run(self) -> Path:
        return self.dir / "federation" / "run"

    @property
    def fed_state(self) -> Path:
        return self.dir / "federation" / "state"

    def bridge_state(self) -> dict:
        try:
            return json.loads((self.fed_run / "bridge-state.json").read_text())
        except (OSError, ValueError):
            return {}

    def link(self, agreement: str) -> dict:
        for a in self.bridge_state().get("agreements", []):
            if a["id"] == agreement:
                return a
        return {}

    def wg_peers(self) -> List[str]:
        out = self.run(["wg", "show", self.iface, "peers"], check=False)
        return out.stdout.split() if out.returncode == 0 else []

    def unreachable(self, other: "Coop") -> None:
        """No direct path between this cooperative and ``other`` (both
        ways): a blackhole route to each other's address."""
        self.run([IP, "route", "add", "blackhole", f"{other.address}/32"])
        other.run([IP, "route", "add", "blackhole", f"{self.address}/32"])

    def cut(self) -> None:
        self.run([IP, "link", "set", self.veth, "down"])

    def restore(self) -> None:
        self.run([IP, "link", "set", self.veth, "up"])

    def logs(self) -> str:
        parts = []
        for label in self.procs:
            try:
                parts.append(f"--- {self.name} {label} ---\n" + "\n".join(
                    (self.dir / f"{label}.log").read_text(errors="replace").splitlines()[-60:]))
            except OSError:
                pass
        return "\n".join(parts)


class Federation:
    """Cooperatives and their agreements; see the module docstring."""

    def __init__(self, root: Path, bin_dir: Path, domain_id: int):
        rng = random.SystemRandom()
        self.tag = "%04x" % rng.randrange(1 << 16)
        self.octet = rng.randrange(1, 250)
        self.tunnel_net = f"10.{rng.randrange(100, 250)}.0"
        self.root, self.bin = root, bin_dir
        self.domain_id = domain_id
        self.net_ns = f"ntf{self.tag}-net"
        self.coops: Dict[str, Coop] = {}
        self.env = dict(os.environ, ROS_DOMAIN_ID=str(domain_id), CYCLONEDDS_URI=LOOPBACK_URI,
                        RUST_LOG=os.environ.get("NTARI_TEST_RUST_LOG", "info"))
        self._made = False

    def create(self) -> "Federation":
        self._made = True
        _run([IP, "netns", "add", self.net_ns])
        self._net([IP, "link", "add", "br0", "type", "bridge"])
        self._net([IP, "link", "set", "br0", "up"])
        self._net([IP, "link", "set", "lo", "up"])
        return self

    def _net(self, argv: Sequence) -> None:
        _run([IP, "netns", "exec", self.net_ns, *argv])

    def add(self, name: str, services: Sequence[str] = (), federation_extra: str = "") -> Coop:
        """A cooperative with ntari-vpn, ntari-federation and the given
        service nodes (``ntp``, ``dns``: the repo's examples/*.toml);
        ``federation_extra`` is appended to its federation.toml."""
        c = Coop(self, name, len(self.coops) + 1)
        self.coops[name] = c
        for d in ("vpn/state", "vpn/run", "federation/state", "federation/run", "agreements"):
            (c.dir / d).mkdir(parents=True, exist_ok=True)
        _run([IP, "netns", "add", c.ns])
        _run([IP, "link", "add", c.veth, "type", "veth", "peer", "name", c.veth_net])
        _run([IP, "link", "set", c.veth, "netns", c.ns])
        _run([IP, "link", "set", c.veth_net, "netns", self.net_ns])
        self._net([IP, "link", "set", c.veth_net, "master", "br0"])
        self._net([IP, "link", "set", c.veth_net, "up"])
        c.run([IP, "link", "set", "lo", "up"])
        c.run([IP, "addr", "add", f"{c.address}/16", "dev", c.veth])
        c.run([IP, "link", "set", c.veth, "up"])
        (c.dir / "ntari.toml").write_text(f'cooperative = "{name}"\nkey_path = "{c.key}"\n')
        out = _run([self.bin / "ntari-admin", "key", "init", "--node-config", c.dir / "ntari.toml"])
        c.did = next(l.split()[-1] for l in out.stdout.splitlines() if l.startswith("did:"))
        private = _run(["wg", "genkey"]).stdout.strip()
        key_file = c.dir / "vpn" / "state" / "private.key"
        key_file.write_text(private + "\n")
        key_file.chmod(0o600)
        c.wg_public = _run(["wg", "pubkey"], input=private + "\n").stdout.strip()
        (c.dir / "vpn.toml").write_text(
            f'interface = "{c.iface}"\nbackend = "boringtun"\naddresses = ["{c.tunnel_address}/24"]\n'
            f'listen_port = 51820\npeer_files = ["{c.fed_run / "wireguard-peers.json"}"]\n')
        (c.dir / "federation.toml").write_text(
            f'coop = "{name}"\nagreements_dir = "{c.agreements}"\ninterface = "{c.iface}"\nnode_key = "{c.key}"\n'
            + federation_extra)
        c.start("vpn", [self.bin / "ntari-vpn", *c.node_args("vpn", c.dir / "vpn.toml", 19704)])
        self.start_federation(c)
        for service in services:
            c.start(service, [self.bin / f"ntari-{service}",
                              *c.node_args(service, REPO / "examples" / f"{service}.toml", 19700 + len(c.procs))])
        return c

    def start_federation(self, c: Coop) -> subprocess.Popen:
        return c.start("federation", [self.bin / "ntari-federation",
                                      *c.node_args("federation", c.dir / "federation.toml", 19707)])

    def agreement(self, a: str, b: str, *, domain: int, exports_a: str = "", exports_b: str = "",
                  trust_a: str = "observer", trust_b: str = "observer", not_before: float = None,
                  not_after: float = None, relay: bool = False, sign: Sequence[str] = None,
                  agreement_id: str = None, install: bool = True, endpoints: bool = True,
                  version: int = 1) -> str:
        """Writes the agreement between coops ``a`` and ``b`` (signed by the
        parties named in ``sign``, default both) into the agreements dir of
        each; returns the YAML. ``exports_*`` are YAML blocks (indented by 4)
        under ``exports.<coop>``; ``endpoints=False`` leaves out both
        parties' WireGuard endpoints (members behind NAT, reached through
        a hub)."""
        ca, cb = self.coops[a], self.coops[b]
        ident = agreement_id or f"{a}-{b}".replace("_", "-")
        now = time.time()
        text = f"""kind: ntari/federation-agreement/v1
id: {ident}
version: {version}
parties:
  - coop: {a}
    did: {ca.did}
    wireguard_key: {ca.wg_public}
    tunnel_address: {ca.tunnel_address}
{f"    endpoint: {ca.address}:51820" if endpoints else ""}
  - coop: {b}
    did: {cb.did}
    wireguard_key: {cb.wg_public}
    tunnel_address: {cb.tunnel_address}
{f"    endpoint: {cb.address}:51820" if endpoints else ""}
valid:
  not_before: {rfc3339(not_before if not_before is not None else now - 60)}
  not_after: {rfc3339(not_after if not_after is not None else now + 86400)}
federation_domain: {domain}
exports:
  {a}:
{exports_a or "    topics: []"}
  {b}:
{exports_b or "    topics: []"}
trust:
  {a}: {trust_a}
  {b}: {trust_b}
relay: {"true" if relay else "false"}
"""
        path = self.root / f"{ident}.yaml"
        path.write_text(text)
        for signer in (sign if sign is not None else (a, b)):
            _run([self.bin / "ntari-admin", "federation", "agreement", "sign", path,
                  "--key", self.coops[signer].key, "--node-config", self.coops[signer].dir / "ntari.toml"])
        signed = path.read_text()
        if install:
            self.install(signed, ident, a, b)
        return signed

    def install(self, text: str, ident: str, *coops: str) -> None:
        for name in coops:
            tmp = self.coops[name].agreements / f".{ident}.tmp"
            tmp.write_text(text)
            tmp.rename(self.coops[name].agreements / f"{ident}.yaml")

    def observer(self, coop: str) -> "Observer":
        return Observer(self.coops[coop], self.env)

    def remove(self) -> None:
        if not self._made:
            return
        for c in self.coops.values():
            for p in c.procs.values():
                if p.poll() is None:
                    os.killpg(p.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for c in self.coops.values():
            for p in c.procs.values():
                try:
                    p.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    os.killpg(p.pid, signal.SIGKILL)
                    p.wait(5)
        for ns in [c.ns for c in self.coops.values()] + [self.net_ns]:
            pids = _run([IP, "netns", "pids", ns], check=False).stdout.split()
            for pid in pids:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
            _run([IP, "netns", "del", ns], check=False)
        for c in self.coops.values():
            Path(f"/var/run/wireguard/{c.iface}.sock").unlink(missing_ok=True)
        self._made = False

    def logs(self) -> str:
        return "\n".join(c.logs() for c in self.coops.values())


class Observer:
    """Real rclpy in a cooperative's namespace (tests/ros2/netns_observer.py
    under the ROS venv's Python), one JSON command per line."""

    PYTHON = REPO / ".venv-ros2" / "bin" / "python"
    SCRIPT = REPO / "tests" / "ros2" / "netns_observer.py"

    def __init__(self, coop: Coop, env: dict):
        e = dict(env, RMW_IMPLEMENTATION="rmw_fastrtps_cpp", ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
                 ROS_LOG_DIR=str(coop.dir / "roslog"))
        e.pop("ROS_STATIC_PEERS", None)
        self.proc = subprocess.Popen(coop.argv([self.PYTHON, self.SCRIPT]), env=e, text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=open(coop.dir / "observer.log", "ab"), start_new_session=True)
        self.messages: List[dict] = []
        assert self._reply(30).get("ready"), "rclpy observer did not start"

    def _line(self, timeout: float) -> Optional[dict]:
        import select
        r, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not r:
            return None
        line = self.proc.stdout.readline()
        return json.loads(line) if line else None

    def _reply(self, timeout: float = 10.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = self._line(deadline - time.monotonic())
            if m is None:
                break
            if "msg" in m:
                self.messages.append(m)
                continue
            return m
        return {}

    def ask(self, **cmd) -> dict:
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        return self._reply()

    def subscribe(self, topic: str, ros_type: str, latched: bool = False) -> None:
        assert self.ask(op="subscribe", topic=topic, type=ros_type, latched=latched).get("ok")

    def pump(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            m = self._line(max(0.0, deadline - time.monotonic()))
            if m and "msg" in m:
                self.messages.append(m)

    def received(self, topic: str) -> List[dict]:
        return [m for m in self.messages if m["msg"] == topic]

    def wait_message(self, topic: str, timeout: float, after: float = 0.0) -> Optional[dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for m in self.received(topic):
                if m["t"] > after:
                    return m
            self.pump(0.2)
        return None

    def nodes(self) -> List[str]:
        return self.ask(op="nodes").get("nodes", [])

    def topics(self) -> Dict[str, List[str]]:
        return self.ask(op="topics").get("topics", {})

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)

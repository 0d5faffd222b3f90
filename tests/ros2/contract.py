"""The graph contract of every NTARI node, as real ROS 2 must see it: ONE table.

Every test in tests/ros2 is parametrised over :data:`NODES`. An entry says
how to start the node (binary, config, command line; ntari-dhcp also needs
a client network) and which publishers, subscribers and services it has,
with their types and the QoS ROS would offer. rclpy must report exactly
these sets: an endpoint missing *or extra* fails.

:data:`STANDARD` holds the endpoints every node has: the lifecycle
services and ``~/transition_event``, the parameter services and
``/parameter_events``, and ``~/get_type_description``. Extend it there,
once, when libs/ntari-node gives every node more.

A new crate under services/ must add an entry to :data:`NODES`
(test_ros2_graph.py::test_every_service_crate_has_a_contract fails until it does).

Names: ``~/x`` is the node's private name (``/ntari/<node>/x``). Types are
ROS names (``std_msgs/msg/Bool``); the tests import the message classes
from the ROS Python packages of the same name.
"""

from __future__ import annotations

import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional

# Port helpers shared with tests/interop (every importer of this table,
# reference_endpoints.py in its own process too, gets them the same way).
_INTEROP = str(Path(__file__).resolve().parent.parent / "interop")
if _INTEROP not in sys.path:
    sys.path.append(_INTEROP)
from helpers import free_dns_port, free_port  # noqa: E402

REPO = Path(__file__).resolve().parent.parent.parent
EXAMPLES = REPO / "examples"

# ---------------------------------------------------------------------------
# QoS as ROS offers it
# ---------------------------------------------------------------------------

RELIABLE, BEST_EFFORT = "reliable", "best_effort"
VOLATILE, TRANSIENT_LOCAL = "volatile", "transient_local"


@dataclass(frozen=True)
class Qos:
    reliability: str
    durability: str
    depth: int          # keep-last depth (not visible in discovery: see README)


DEFAULT = Qos(RELIABLE, VOLATILE, 10)        # rmw_qos_profile_default
LATCHED = Qos(RELIABLE, TRANSIENT_LOCAL, 1)  # state topics a late subscriber must get


@dataclass(frozen=True)
class Topic:
    type: str
    qos: Qos = DEFAULT


# ---------------------------------------------------------------------------
# Standard endpoints of every node
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Endpoints:
    publishers: Dict[str, Topic] = field(default_factory=dict)
    subscribers: Dict[str, Topic] = field(default_factory=dict)
    services: Dict[str, str] = field(default_factory=dict)


STANDARD = Endpoints(
    publishers={
        "~/transition_event": Topic("lifecycle_msgs/msg/TransitionEvent"),
        # rclcpp's /parameter_events: reliable, volatile, keep-last 1000.
        "/parameter_events": Topic("rcl_interfaces/msg/ParameterEvent", Qos(RELIABLE, VOLATILE, 1000)),
    },
    subscribers={},
    services={
        "~/change_state": "lifecycle_msgs/srv/ChangeState",
        "~/get_state": "lifecycle_msgs/srv/GetState",
        "~/get_available_states": "lifecycle_msgs/srv/GetAvailableStates",
        "~/get_available_transitions": "lifecycle_msgs/srv/GetAvailableTransitions",
        "~/get_transition_graph": "lifecycle_msgs/srv/GetAvailableTransitions",
        "~/list_parameters": "rcl_interfaces/srv/ListParameters",
        "~/describe_parameters": "rcl_interfaces/srv/DescribeParameters",
        "~/get_parameters": "rcl_interfaces/srv/GetParameters",
        "~/get_parameter_types": "rcl_interfaces/srv/GetParameterTypes",
        "~/set_parameters": "rcl_interfaces/srv/SetParameters",
        "~/set_parameters_atomically": "rcl_interfaces/srv/SetParametersAtomically",
        "~/get_type_description": "type_description_interfaces/srv/GetTypeDescription",
    },
)


def runtime_publishers(service: str) -> Dict[str, Topic]:
    """What libs/ntari-node's service runtime publishes for every service node."""
    return {
        f"/ntari/{service}/health": Topic("std_msgs/msg/Bool"),
        f"/ntari/{service}/status": Topic("std_msgs/msg/String", LATCHED),
        "/diagnostics": Topic("diagnostic_msgs/msg/DiagnosticArray"),
    }


LEASES = "/ntari/dhcp/leases"
PEERS = "/ntari/vpn/peers"


# ---------------------------------------------------------------------------
# How nodes are started
# ---------------------------------------------------------------------------

@dataclass
class Running:
    """A started node: its process and what the tests need to talk to it."""
    contract: "NodeContract"
    proc: object                 # interop conftest NodeProcess
    dir: Path
    extra: Dict[str, object] = field(default_factory=dict)


class StartEnv:
    """What a start function gets from the test's fixture (tests/ros2/conftest.py):

    * ``launch(binary, *args, name=...)`` -> process, ended by PID at teardown;
    * ``binary(relative)`` -> path under NTARI_BIN_DIR (skips/fails if missing);
    * ``workdir(name)`` -> a fresh 0755 directory (dnsmasq drops to its own
      user and must read the node's run dir), short enough for Kea's socket;
    * ``client_net()`` -> a tests/interop/netns.py ClientNet, removed at teardown;
    * ``mark(text)``: processes whose command line holds ``text`` are the
      node's too (leftover checks), besides those naming its work dir;
    * ``args``: extra command-line arguments for the node;
    * ``probe_interval``: seconds between a service node's probes (default 0.5).
    """
    launch: Callable
    binary: Callable
    workdir: Callable
    client_net: Callable
    mark: Callable
    args: List[str]
    probe_interval: str = "0.5"


def _replace(text: str, old: str, new: str, what: str) -> str:
    """``text`` with ``old`` replaced; the example config must still contain it."""
    if old not in text:
        raise AssertionError(f"{what}: {old!r} is no longer in the example config; update tests/ros2/contract.py")
    return text.replace(old, new)


def _service_args(d: Path, config: Path, env: "StartEnv") -> List[str]:
    (d / "state").mkdir(exist_ok=True)
    return ["--config", str(config), "--state-dir", str(d / "state"), "--run-dir", str(d / "run"),
            "--key", str(d / "node.key"), "--node-config", str(d / "absent-ntari.toml"),
            "--metrics-port", "0", "--probe-interval", env.probe_interval, "--autostart"]


def start_example(c: "NodeContract", env: StartEnv) -> Running:
    d = env.workdir(c.key)
    proc = env.launch(env.binary(c.binary), "--autostart", *env.args, name=c.key)
    return Running(c, proc, d)


def start_ntp(c: "NodeContract", env: StartEnv) -> Running:
    """examples/ntp.toml (local stratum, no upstream, chronyd -x), on a free port."""
    d = env.workdir(c.key)
    cfg = d / "ntp.toml"
    cfg.write_text(_replace((EXAMPLES / "ntp.toml").read_text(), "serve_port = 11123",
                            f"serve_port = {free_port()}", "examples/ntp.toml"))
    proc = env.launch(env.binary(c.binary), *_service_args(d, cfg, env), *env.args, name=c.key)
    return Running(c, proc, d)


def start_dns(c: "NodeContract", env: StartEnv) -> Running:
    """examples/dns.toml (offline, loopback), on a free port."""
    d = env.workdir(c.key)
    port = free_dns_port()
    cfg = d / "dns.toml"
    cfg.write_text(_replace((EXAMPLES / "dns.toml").read_text(), "port = 15353", f"port = {port}",
                            "examples/dns.toml"))
    proc = env.launch(env.binary(c.binary), *_service_args(d, cfg, env), *env.args, name=c.key)
    return Running(c, proc, d, {"port": port, "domain": "coop.lan"})


def start_vpn(c: "NodeContract", env: StartEnv) -> Running:
    """examples/vpn.toml (boringtun here, as `auto` picks without the kernel
    module) with a unique interface name, a free port and a random tunnel
    network; its peer's endpoint moved onto a throw-away veth pair, where
    nothing answers, so no packet leaves the test's own network."""
    import random
    net = env.client_net()
    d = env.workdir(c.key)
    iface = "ntr2v%05x" % random.randrange(1 << 20)
    n = random.randrange(100, 250)
    text = (EXAMPLES / "vpn.toml").read_text()
    text = _replace(text, '"wg-coop"', f'"{iface}"', "examples/vpn.toml")
    text = _replace(text, "listen_port = 51820", f"listen_port = {free_port()}", "examples/vpn.toml")
    text = _replace(text, "10.77.", f"10.{n}.", "examples/vpn.toml")
    text = _replace(text, "10.78.", f"10.{n + 1}.", "examples/vpn.toml")
    text = _replace(text, '"192.0.2.10:51820"', f'"{net.net}.2:51820"', "examples/vpn.toml")
    cfg = d / "vpn.toml"
    cfg.write_text(text)
    # The tunnel process's command line names the interface, not the dir.
    env.mark(iface)
    proc = env.launch(env.binary(c.binary), *_service_args(d, cfg, env), *env.args, name=c.key)
    return Running(c, proc, d, {"net": net, "interface": iface})


def start_federation(c: "NodeContract", env: StartEnv) -> Running:
    """examples/federation/hub-a/federation.toml with an empty agreements
    dir of its own and the node's key: the bridge runs, with no partner."""
    d = env.workdir(c.key)
    (d / "agreements").mkdir()
    example = "examples/federation/hub-a/federation.toml"
    text = (EXAMPLES / "federation" / "hub-a" / "federation.toml").read_text()
    text = _replace(text, '# agreements_dir = "/etc/ntari/federation"', f'agreements_dir = "{d / "agreements"}"', example)
    text = _replace(text, '# node_key = "/etc/ntari/keys/node.ed25519"', f'node_key = "{d / "node.key"}"', example)
    cfg = d / "federation.toml"
    cfg.write_text(text)
    proc = env.launch(env.binary(c.binary), *_service_args(d, cfg, env), *env.args, name=c.key)
    return Running(c, proc, d)


def start_dhcp(c: "NodeContract", env: StartEnv) -> Running:
    """examples/dhcp.toml moved onto a throw-away veth pair: its server end
    instead of ntari-demo0, the pair's /24 instead of 192.168.77.0/24."""
    net = env.client_net()
    d = env.workdir(c.key)
    text = (EXAMPLES / "dhcp.toml").read_text()
    text = _replace(text, '"ntari-demo0"', f'"{net.server_if}"', "examples/dhcp.toml")
    text = _replace(text, "192.168.77.", f"{net.net}.", "examples/dhcp.toml")
    cfg = d / "dhcp.toml"
    cfg.write_text(text)
    proc = env.launch(env.binary(c.binary), *_service_args(d, cfg, env), *env.args, name=c.key)
    return Running(c, proc, d, {"net": net})


# ---------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class NodeContract:
    key: str                          # test id
    namespace: str
    name: str
    binary: str                       # relative to NTARI_BIN_DIR
    crate: Optional[str]              # package name of its crate under services/ (None: not a service)
    start: Callable[["NodeContract", StartEnv], Running]
    service: str                      # /ntari/<service>/health
    publishers: Dict[str, Topic]      # besides STANDARD's
    subscribers: Dict[str, Topic] = field(default_factory=dict)
    services: Dict[str, str] = field(default_factory=dict)
    daemon: Optional[str] = None      # the supervised daemon's process name
    has_status: bool = False          # /ntari/<service>/status + /diagnostics (the service runtime)
    # The /diagnostics level of the healthy node as started here: WARN where
    # the example config itself calls for attention.
    healthy_level: str = "OK"

    @property
    def fqn(self) -> str:
        return f"{self.namespace.rstrip('/')}/{self.name}"

    @property
    def health(self) -> str:
        return f"/ntari/{self.service}/health"

    @property
    def status(self) -> str:
        return f"/ntari/{self.service}/status"

    def expand(self, name: str) -> str:
        return self.fqn + name[1:] if name.startswith("~/") else name

    def all_publishers(self) -> Dict[str, Topic]:
        return {self.expand(k): v for k, v in {**STANDARD.publishers, **self.publishers}.items()}

    def all_subscribers(self) -> Dict[str, Topic]:
        return {self.expand(k): v for k, v in {**STANDARD.subscribers, **self.subscribers}.items()}

    def all_services(self) -> Dict[str, str]:
        return {self.expand(k): v for k, v in {**STANDARD.services, **self.services}.items()}

def start_identity(c: "NodeContract", env: StartEnv) -> Running:
    """examples/identity.toml (realm COOP.LAN, loopback) on free ports; the
    first configure provisions the realm in the test's own state dir."""
    d = env.workdir(c.key)
    text = (EXAMPLES / "identity.toml").read_text()
    for key, old in (("port", 13890), ("ldaps_port", 16360), ("port", 18800), ("kadmin_port", 17490),
                     ("kpasswd_port", 14640)):
        text = _replace(text, f"\n{key} = {old}\n", f"\n{key} = {free_port(socket.SOCK_STREAM)}\n",
                        "examples/identity.toml")
    cfg = d / "identity.toml"
    cfg.write_text(text)
    proc = env.launch(env.binary(c.binary), *_service_args(d, cfg, env), *env.args, name=c.key)
    return Running(c, proc, d)


def start_files(c: "NodeContract", env: StartEnv) -> Running:
    """examples/files.toml (smbd and NFS-Ganesha on loopback) on free ports;
    the shares are made in the test's own state dir."""
    d = env.workdir(c.key)
    text = (EXAMPLES / "files.toml").read_text()
    for old in ("port = 14450", "port = 20490"):
        text = _replace(text, f"\n{old}\n", f"\nport = {free_port(socket.SOCK_STREAM)}\n", "examples/files.toml")
    cfg = d / "files.toml"
    cfg.write_text(text)
    proc = env.launch(env.binary(c.binary), *_service_args(d, cfg, env), *env.args, name=c.key)
    return Running(c, proc, d)


NODES: List[NodeContract] = [
    NodeContract(
        key="example", namespace="/ntari", name="ntari_example_node",
        binary="examples/ntari_example_node", crate=None, start=start_example, service="example",
        publishers={"/ntari/example/health": Topic("std_msgs/msg/Bool")},
    ),
    NodeContract(
        key="ntp", namespace="/ntari", name="ntari_ntp_node",
        binary="ntari-ntp", crate="ntari-ntp", start=start_ntp, service="ntp",
        publishers=runtime_publishers("ntp"), daemon="chronyd", has_status=True,
    ),
    NodeContract(
        key="dns", namespace="/ntari", name="ntari_dns_node",
        binary="ntari-dns", crate="ntari-dns", start=start_dns, service="dns",
        publishers=runtime_publishers("dns"),
        subscribers={LEASES: Topic("std_msgs/msg/String", LATCHED)},
        daemon="dnsmasq", has_status=True,
    ),
    NodeContract(
        key="dhcp", namespace="/ntari", name="ntari_dhcp_node",
        binary="ntari-dhcp", crate="ntari-dhcp", start=start_dhcp, service="dhcp",
        publishers={**runtime_publishers("dhcp"), LEASES: Topic("std_msgs/msg/String", LATCHED)},
        daemon="kea-dhcp4", has_status=True,
    ),
    NodeContract(
        key="vpn", namespace="/ntari", name="ntari_vpn_node",
        binary="ntari-vpn", crate="ntari-vpn", start=start_vpn, service="vpn",
        publishers={**runtime_publishers("vpn"), PEERS: Topic("std_msgs/msg/String", LATCHED)},
        # The boringtun tunnel is the node binary itself (`ntari-vpn __boringtun`).
        # Its example peers never answer (nothing runs at their endpoints),
        # so both are stale: healthy, with a warning each.
        daemon="ntari-vpn", has_status=True, healthy_level="WARN",
    ),
    NodeContract(
        key="federation", namespace="/ntari", name="ntari_federation_node",
        binary="ntari-federation", crate="ntari-federation", start=start_federation, service="federation",
        publishers=runtime_publishers("federation"),
        # The bridge is the node binary itself (`ntari-federation __bridge`);
        # it is a graph participant of its own (/ntari/ntari_federation_bridge).
        # (its process name, cut to 15 characters by the kernel).
        daemon="ntari-federatio", has_status=True,
    ),
    NodeContract(
        key="identity", namespace="/ntari", name="ntari_identity_node",
        binary="ntari-identity", crate="ntari-identity", start=start_identity, service="identity",
        publishers=runtime_publishers("identity"),
        # Three daemons (slapd, krb5kdc, kadmind); status `daemon` is the first.
        daemon="slapd", has_status=True,
    ),
    NodeContract(
        key="files", namespace="/ntari", name="ntari_files_node",
        binary="ntari-files", crate="ntari-files", start=start_files, service="files",
        publishers=runtime_publishers("files"),
        # Two daemons (smbd, ganesha); status `daemon` is the first.
        daemon="smbd", has_status=True,
    ),
]

BY_KEY = {c.key: c for c in NODES}
SERVICE_NODES = [c for c in NODES if c.has_status]


def service_crates() -> Dict[str, Path]:
    """Package name -> Cargo.toml of every crate under services/."""
    import tomllib
    out = {}
    for manifest in sorted((REPO / "services").glob("*/Cargo.toml")):
        with open(manifest, "rb") as f:
            out[tomllib.load(f)["package"]["name"]] = manifest
    return out


def ids(contracts) -> List[str]:
    return [c.key for c in contracts]


__all__ = ["NODES", "BY_KEY", "SERVICE_NODES", "STANDARD", "DEFAULT", "LATCHED", "LEASES", "Qos", "Topic",
           "NodeContract", "Running", "StartEnv", "service_crates", "ids", "free_port", "free_dns_port",
           "RELIABLE", "BEST_EFFORT", "VOLATILE", "TRANSIENT_LOCAL", "REPO"]


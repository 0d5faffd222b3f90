"""pytest fixtures for the real-ROS 2 tests (rclpy from the PyPI Jazzy wheels).

Hermetic like tests/interop (whose launcher and helpers this reuses): each
test gets its own random ROS_DOMAIN_ID, for its rclpy context and for the
nodes it starts; every process is ended by PID (SIGTERM, then SIGKILL), its
output kept under tmp_path and shown when the test fails; network
namespaces are made and removed by the test.

Traffic stays on the host: our nodes and any Python cyclonedds participant
use tests/cyclonedds-loopback.xml (CYCLONEDDS_URI); rclpy defaults to
rmw_fastrtps_cpp with ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST (no multicast,
discovery to 127.0.0.1 only). The RMW is only a default (against a host's
ROS install any RMW set in the environment is kept, README.md); the
discovery range is always LOCALHOST and ROS_STATIC_PEERS is dropped.
rclpy's log files go to the session's temp dir (ROS_LOG_DIR), not ~/.ros.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import stat
import sys
import tempfile
import time
from pathlib import Path
from typing import List

HERE = Path(__file__).resolve().parent
INTEROP = HERE.parent / "interop"
LOOPBACK_URI = "file://" + str(HERE.parent / "cyclonedds-loopback.xml")

# Set before Cyclone (Python or C) or rclpy is loaded. Traffic stays on this host
# whatever the environment said: loopback Cyclone, LOCALHOST discovery, no static peers.
os.environ["CYCLONEDDS_URI"] = LOOPBACK_URI
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.pop("ROS_STATIC_PEERS", None)
os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")   # any RMW given is kept
os.environ.pop("ROS_DOMAIN_ID", None)                # every test passes its own
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(INTEROP))


def _load_interop_conftest():
    """tests/interop/conftest.py under another module name (ours is `conftest`)."""
    spec = importlib.util.spec_from_file_location("interop_conftest", INTEROP / "conftest.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["interop_conftest"] = mod
    spec.loader.exec_module(mod)
    return mod


interop = _load_interop_conftest()

import pytest  # noqa: E402

import contract  # noqa: E402
import netns  # noqa: E402
from rosobs import Observer  # noqa: E402

NodeProcess = interop.NodeProcess
find_binary = interop.find_binary
pick_domain_id = interop.pick_domain_id
udp_sockets_of = interop.udp_sockets_of


def node_environment(domain_id: int) -> dict:
    """The environment of processes under test: the test's domain, loopback
    Cyclone, info logs, and none of the ROS venv's library path (the wheels'
    bootstrap put it in LD_LIBRARY_PATH; daemons such as Kea must not load
    libraries from there)."""
    env = dict(os.environ)
    prefix = str(Path(sys.prefix).resolve())
    ld = [p for p in env.get("LD_LIBRARY_PATH", "").split(os.pathsep)
          if p and not str(Path(p).resolve()).startswith(prefix)]
    if ld:
        env["LD_LIBRARY_PATH"] = os.pathsep.join(ld)
    else:
        env.pop("LD_LIBRARY_PATH", None)
    env.update({
        "ROS_DOMAIN_ID": str(domain_id),
        "CYCLONEDDS_URI": LOOPBACK_URI,
        "RUST_LOG": os.environ.get("NTARI_TEST_RUST_LOG", "info"),
        "RUST_BACKTRACE": "1",
    })
    return env


def pytest_configure(config):
    # lark (rosidl's parser, imported by rclpy) still imports sre_parse
    config.addinivalue_line("filterwarnings", "ignore:module 'sre_:DeprecationWarning")


@pytest.fixture(scope="session", autouse=True)
def ros_log_dir(tmp_path_factory):
    """rclpy's log files in the session's temp dir (set before the first rclpy.init)."""
    d = tmp_path_factory.mktemp("ros_log")
    os.environ["ROS_LOG_DIR"] = str(d)
    return d


@pytest.fixture
def domain_id() -> int:
    return pick_domain_id()


@pytest.fixture
def ros(domain_id):
    """The rclpy observer (rosobs.Observer) on the test's domain."""
    obs = Observer(domain_id)
    try:
        yield obs
    finally:
        obs.close()


@pytest.fixture
def cyclone(domain_id):
    """A Python cyclonedds Graph (tests/interop/rosgraph.py) on the test's domain:
    the lifecycle client, since ROS 2 services do not cross RMW vendors."""
    from rosgraph import Graph
    g = Graph(domain_id)
    try:
        yield g
    finally:
        g.close()


class Launcher:
    """Starts processes and nodes for one test; everything ends at teardown:
    processes by PID, then network namespaces, then work dirs (copied into
    tmp_path first, for the failure report)."""

    def __init__(self, request, tmp_path: Path, domain_id: int):
        self.tmp_path = tmp_path
        self.domain_id = domain_id
        self.env = node_environment(domain_id)
        self.procs: List[NodeProcess] = []
        self.nets: List[netns.ClientNet] = []
        self.dirs: List[Path] = []
        self.markers: List[str] = []
        request.node._ntari_procs = self.procs

    def launch(self, binary, *args, env=None, name=None) -> NodeProcess:
        e = dict(self.env)
        if env:
            e.update(env)
        p = NodeProcess([binary, *args], e, self.tmp_path, name or f"{Path(str(binary)).name}-{len(self.procs)}")
        self.procs.append(p)
        return p

    def workdir(self, name: str) -> Path:
        d = Path(tempfile.mkdtemp(prefix=f"ntr2-{name}-"))
        d.chmod(0o755)
        self.dirs.append(d)
        return d

    def client_net(self) -> netns.ClientNet:
        why = netns.available()
        if why:
            pytest.fail(f"network namespaces needed ({why})", pytrace=False)
        net = netns.ClientNet(prefix="ntr")
        self.nets.append(net)
        net.create()
        return net

    def start(self, c: contract.NodeContract, *args: str, probe_interval: float = 0.5) -> contract.Running:
        """Start node ``c`` as its contract entry says (``args`` appended)."""
        env = contract.StartEnv()
        env.launch, env.binary, env.workdir, env.client_net = self.launch, find_binary, self.workdir, self.client_net
        env.mark = self.markers.append
        env.args = list(args)
        env.probe_interval = str(probe_interval)
        return c.start(c, env)

    def reference(self, pubs=(), subs=(), name: str = "ntari_ros2_reference") -> NodeProcess:
        """A reference rclpy node in its own process (reference_endpoints.py):
        ``pubs``/``subs`` are (topic, contract.Topic). Returns once it is ready."""
        argv = [sys.executable, str(HERE / "reference_endpoints.py"), "--domain", str(self.domain_id), "--node", name]
        for flag, items in (("--pub", pubs), ("--sub", subs)):
            for topic, t in items:
                argv += [flag, topic, t.type, t.qos.reliability, t.qos.durability, str(t.qos.depth)]
        # The full environment: this process's ROS bootstrap (LD_LIBRARY_PATH) included.
        env = dict(os.environ, ROS_DOMAIN_ID=str(self.domain_id))
        p = NodeProcess(argv, env, self.tmp_path, f"reference-{len(self.procs)}")
        self.procs.append(p)
        from helpers import wait_until
        wait_until(lambda: "ready" in p.stdout_path.read_text() or not p.alive(), 30, "the reference rclpy node")
        assert p.alive(), p.logs()
        return p

    def leftovers(self) -> List[int]:
        """PIDs of live processes whose command line names one of this test's
        work dirs (or a marker a start function gave): daemons our nodes
        started that are still running."""
        out = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == os.getpid():
                continue
            try:
                cmd = open(f"/proc/{entry}/cmdline", "rb").read().decode(errors="replace")
                state = open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if state != "Z" and any(str(m) in cmd for m in [*self.dirs, *self.markers]):
                out.append(int(entry))
        return out

    def close(self) -> None:
        for p in self.procs:
            p.stop(signal.SIGTERM)
        # A daemon that outlived its node (e.g. after a SIGKILL of the node) is
        # ended here by PID: it was started in this test's dirs, so it is ours.
        for sig in (signal.SIGTERM, signal.SIGKILL):
            pids = self.leftovers()
            for pid in pids:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + 3
            while pids and self.leftovers() and time.monotonic() < deadline:
                time.sleep(0.05)
        for net in self.nets:
            net.remove()
        # Markers are WireGuard interface names (ntari-vpn): a tunnel killed
        # along with its node leaves its control socket.
        for m in self.markers:
            Path(f"/var/run/wireguard/{m}.sock").unlink(missing_ok=True)
        for d in self.dirs:
            shutil.copytree(d, self.tmp_path / "work" / d.name, symlinks=True, dirs_exist_ok=True,
                            ignore_dangling_symlinks=True, ignore=_special_files)
            shutil.rmtree(d, ignore_errors=True)


def _special_files(directory, names):
    """Sockets and fifos (Kea's and chronyd's control sockets) are not copied,
    nor sparse files: slapd's LMDB map is 1 GiB on paper and a few hundred KiB
    on disk, and copytree would write out every hole (a few identity tests
    filled CI's disk that way)."""
    out = []
    for n in names:
        try:
            st = os.lstat(os.path.join(directory, n))
        except OSError:
            continue
        sparse = stat.S_ISREG(st.st_mode) and st.st_size > 1 << 20 and st.st_blocks * 512 < st.st_size // 2
        if stat.S_ISSOCK(st.st_mode) or stat.S_ISFIFO(st.st_mode) or sparse:
            out.append(n)
    return out


@pytest.fixture
def nodes(request, tmp_path, domain_id):
    """``nodes.start(contract, *args)``, ``nodes.launch(...)``, ``nodes.reference(...)``."""
    launcher = Launcher(request, tmp_path, domain_id)
    try:
        yield launcher
    finally:
        launcher.close()


# Attach the logs of the processes a failing test started (the same hook).
pytest_runtest_makereport = interop.pytest_runtest_makereport

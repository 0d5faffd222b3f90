"""pytest fixtures for the ROS 2 interop tests.

Why: each test must be hermetic.  It gets its own random ROS domain (so tests
running in parallel never hear each other), every DDS participant — ours and
the Rust binaries' — uses the loopback-only Cyclone configuration, and every
process a test starts is ended by PID (SIGTERM, then SIGKILL) when the test
ends, with its stdout/stderr kept under the test's tmp_path and shown when
the test fails.

Binaries come from ``$NTARI_BIN_DIR`` (default ``<repo>/target/debug``).  A
missing binary skips the test, unless ``NTARI_REQUIRE_BINARIES`` is set (CI),
in which case it fails.
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
LOOPBACK_CONFIG = HERE.parent / "cyclonedds-loopback.xml"
LOOPBACK_URI = "file://" + str(LOOPBACK_CONFIG)

# Workplace rule: DDS only on loopback.  Set before rosgraph (and so Cyclone)
# is imported, for this process and every child it starts.
os.environ["CYCLONEDDS_URI"] = LOOPBACK_URI
sys.path.insert(0, str(HERE))

from rosgraph import Graph  # noqa: E402

DEFAULT_BIN_DIR = REPO / "target" / "debug"


# ---------------------------------------------------------------------------
# Loopback checks
# ---------------------------------------------------------------------------

# Appended to CYCLONEDDS_URI to make Cyclone print its effective configuration.
TRACE_CONFIG_FRAGMENT = "<Tracing><Verbosity>config</Verbosity><OutputFile>stderr</OutputFile></Tracing>"


def udp_sockets_of(pid: int):
    """(address, port) of the IPv4/IPv6 UDP sockets owned by ``pid``."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    out = []
    for name, v6 in (("/proc/net/udp", False), ("/proc/net/udp6", True)):
        with open(name) as f:
            next(f)
            for line in f:
                cols = line.split()
                if cols[9] not in inodes:
                    continue
                hexaddr, hexport = cols[1].split(":")
                if v6:
                    addr = "::" if int(hexaddr, 16) == 0 else hexaddr
                else:
                    addr = ".".join(str(int(hexaddr[i:i + 2], 16)) for i in (6, 4, 2, 0))
                out.append((addr, int(hexport, 16)))
    return out


def assert_loopback_trace(trace: str, sockets) -> None:
    """Cyclone's config trace and the process's UDP sockets show loopback only:
    only ``lo`` selected, own address 127.0.0.1, no multicast, unicast peers on
    127.0.0.1; sockets bound to 127.0.0.1 (transmit) or ANY:<port> (Cyclone's
    unicast receive sockets, which never send)."""
    assert "selected interfaces: lo " in trace, trace[-3000:]
    assert "ownip: udp/127.0.0.1" in trace, trace[-3000:]
    assert "General/AllowMulticast/#text: false" in trace
    assert re.search(r"add_peer_address: add udp/127\.0\.0\.1:", trace)
    assert not re.search(r"add_peer_address: add udp/(?!127\.0\.0\.1:)", trace)
    assert sockets, "no UDP sockets found"
    for addr, _port in sockets:
        assert addr in ("127.0.0.1", "0.0.0.0"), sockets
    assert any(a == "127.0.0.1" for a, _ in sockets), sockets  # the transmit socket


# ---------------------------------------------------------------------------
# Domains
# ---------------------------------------------------------------------------

def _bound_udp_ports() -> set:
    """Local UDP ports currently bound on this host (from /proc/net/udp{,6})."""
    ports = set()
    for name in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            with open(name) as f:
                next(f)
                for line in f:
                    local = line.split()[1]
                    ports.add(int(local.rsplit(":", 1)[1], 16))
        except OSError:
            pass
    return ports


def pick_domain_id(low: int = 1, high: int = 200) -> int:
    """A random ROS_DOMAIN_ID in [low, high] whose DDSI port range looks unused.

    Randomness keeps parallel test processes apart; the port check (domain d
    uses UDP 7400 + 250*d .. +249) avoids a domain some other run is on now."""
    rng = random.SystemRandom()
    used = _bound_udp_ports()
    candidates = list(range(low, high + 1))
    rng.shuffle(candidates)
    for d in candidates:
        base = 7400 + 250 * d
        if not any(base <= p < base + 250 for p in used):
            return d
    return candidates[0]


@pytest.fixture
def domain_id() -> int:
    return pick_domain_id()


@pytest.fixture
def ros_env(domain_id) -> Dict[str, str]:
    """Environment for processes under test: our domain, loopback DDS, info logs."""
    env = dict(os.environ)
    env.update({
        "ROS_DOMAIN_ID": str(domain_id),
        "CYCLONEDDS_URI": LOOPBACK_URI,
        "RUST_LOG": os.environ.get("NTARI_TEST_RUST_LOG", "info"),
        "RUST_BACKTRACE": "1",
    })
    return env


@pytest.fixture
def graph(domain_id):
    """A Graph (Python DDS participant, ``enclave=/;``) on the test's domain."""
    g = Graph(domain_id)
    try:
        yield g
    finally:
        g.close()


# ---------------------------------------------------------------------------
# Binaries and processes
# ---------------------------------------------------------------------------

def bin_dir() -> Path:
    return Path(os.environ.get("NTARI_BIN_DIR", str(DEFAULT_BIN_DIR)))


def find_binary(relative: str) -> Path:
    """``$NTARI_BIN_DIR/<relative>``; skip (or fail under NTARI_REQUIRE_BINARIES) if absent."""
    path = bin_dir() / relative
    if path.is_file() and os.access(path, os.X_OK):
        return path
    msg = (f"binary {path} not found (build it with cargo, or set NTARI_BIN_DIR); "
           f"set NTARI_REQUIRE_BINARIES=1 to make this an error")
    if os.environ.get("NTARI_REQUIRE_BINARIES"):
        pytest.fail(msg, pytrace=False)
    pytest.skip(msg)


class NodeProcess:
    """A process started by a test; output goes to files; ended by PID."""

    def __init__(self, argv: List[str], env: Dict[str, str], log_dir: Path, name: str):
        self.argv = [str(a) for a in argv]
        self.name = name
        self.stdout_path = log_dir / f"{name}.stdout.log"
        self.stderr_path = log_dir / f"{name}.stderr.log"
        self._out = open(self.stdout_path, "wb")
        self._err = open(self.stderr_path, "wb")
        self.started_at = time.monotonic()
        # Own session: a Ctrl-C on pytest does not also hit the node, and the
        # node's own children stay in its process group for it to manage.
        self.popen = subprocess.Popen(self.argv, env=env, stdin=subprocess.DEVNULL,
                                      stdout=self._out, stderr=self._err, start_new_session=True)
        self.pid = self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    @property
    def returncode(self) -> Optional[int]:
        return self.popen.poll()

    def send_signal(self, sig: int) -> None:
        if self.alive():
            os.kill(self.pid, sig)

    def wait(self, timeout: float) -> Optional[int]:
        """Exit code, or None if still running after ``timeout`` seconds."""
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        """Send ``sig``; SIGKILL if it has not exited after ``timeout``; return the exit code."""
        if self.alive():
            self.send_signal(sig)
            if self.wait(timeout) is None:
                os.kill(self.pid, signal.SIGKILL)
                self.popen.wait(timeout=10)
        self._out.close()
        self._err.close()
        return self.popen.returncode

    def logs(self, tail: int = 200) -> str:
        parts = []
        for label, path in (("stdout", self.stdout_path), ("stderr", self.stderr_path)):
            try:
                lines = path.read_text(errors="replace").splitlines()
            except OSError:
                lines = []
            parts.append(f"--- {self.name} {label} ({path}) ---\n" + "\n".join(lines[-tail:]))
        return "\n".join(parts)


@pytest.fixture
def launch(request, tmp_path, ros_env):
    """``launch(binary, *args, env=None, name=None) -> NodeProcess``.

    Started processes are stopped by PID at teardown (SIGTERM, SIGKILL after
    10 s); their logs are attached to the report of a failing test."""
    procs: List[NodeProcess] = []
    request.node._ntari_procs = procs

    def _launch(binary, *args, env: Optional[Dict[str, str]] = None, name: Optional[str] = None) -> NodeProcess:
        e = dict(ros_env)
        if env:
            e.update(env)
        p = NodeProcess([binary, *args], e, tmp_path, name or f"{Path(binary).name}-{len(procs)}")
        procs.append(p)
        return p

    yield _launch
    for p in procs:
        p.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Attach the logs of the processes a failing test started."""
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        for p in getattr(item, "_ntari_procs", []):
            rep.sections.append((f"process {p.name} (pid {p.pid}, exit {p.returncode})", p.logs()))

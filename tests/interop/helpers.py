"""Small helpers the service-node tests and benchmarks share: free loopback
ports, process liveness, bounded waits, and reading a node's log and status.
"""

import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.request
from datetime import datetime
from pathlib import Path


def free_port(kind=socket.SOCK_DGRAM) -> int:
    """A loopback port free right now for ``kind`` (UDP by default)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_dns_port() -> int:
    """A loopback port free for both UDP and TCP (dnsmasq binds both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind(("127.0.0.1", 0))
            port = u.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
                try:
                    t.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no port free for both UDP and TCP")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:   # a zombie is dead for our purposes
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


def wg_key(wg: str = "wg") -> tuple:
    """A fresh WireGuard key pair (base64 private, public), from `wg`."""
    private = subprocess.run([wg, "genkey"], capture_output=True, text=True, check=True).stdout.strip()
    public = subprocess.run([wg, "pubkey"], input=private, capture_output=True, text=True, check=True).stdout.strip()
    return private, public


def write_key(path: Path, key: str) -> Path:
    """``key`` into ``path``, mode 0600 (WireGuard tools refuse others)."""
    path.write_text(key + "\n")
    path.chmod(0o600)
    return path


def parent_of(pid: int) -> int:
    """The parent pid of ``pid`` (0 if it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    return int(stat[stat.rindex(")") + 2:].split()[1])


def daemons_of(node_pid: int, comm: str) -> list:
    """PIDs of the processes named ``comm`` that node ``node_pid`` runs:
    each under its guard, so their parent's parent is the node."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            name = (entry / "comm").read_text().strip()
        except OSError:
            continue
        if name == comm and parent_of(parent_of(int(entry.name))) == node_pid:
            out.append(int(entry.name))
    return out


def wait_until(cond, timeout, what):
    """Polls ``cond`` every 50 ms; its first truthy value, or AssertionError."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def log_time(log: Path, needle: str):
    """Wall-clock time of the first node log line containing ``needle``."""
    for line in log.read_text(errors="replace").splitlines():
        if needle in line:
            return datetime.fromisoformat(line.split()[0].rstrip("Z") + "+00:00").timestamp()
    return None


def envelope(sample):
    """A /ntari/<svc>/status sample's signed envelope, as a dict."""
    return json.loads(sample.data)


def wait_status(node, predicate, timeout, what):
    """The first status envelope (from ``node.status``) whose payload matches."""
    return envelope(node.status.wait_for(lambda s: predicate(envelope(s)["payload"]), timeout=timeout, what=what))


def wait_health(node, value, timeout, what=None):
    return node.health.wait_for(lambda s: s.data is value, timeout=timeout, what=what or f"health={value}")


def kea_command(sock, command: str, arguments=None, timeout: float = 5.0) -> dict:
    """One command over a Kea control socket (unix, one JSON request per
    connection: Kea closes it after the reply); the reply as a dict."""
    req = {"command": command}
    if arguments is not None:
        req["arguments"] = arguments
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(sock))
        s.sendall(json.dumps(req).encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    return json.loads(data)


def metrics(port: int):
    """``{name: [(labels, value), ...]}`` from a node's Prometheus endpoint."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    out = {}
    for line in text.splitlines():
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)", line)
        if not m or line.startswith("#"):
            continue
        labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        out.setdefault(m.group(1), []).append((labels, float(m.group(3))))
    return out


def metric(port: int, name: str, **labels):
    """The value of ``name`` whose labels include ``labels``, or None."""
    for have, value in metrics(port).get(name, []):
        if all(have.get(k) == v for k, v in labels.items()):
            return value
    return None


def assert_configure_refused(node, text: str, where: str, file_name: str) -> None:
    """Writes ``text`` as the node's config, asks ``configure`` and checks it
    is refused: the node stays Unconfigured and alive, no daemon runs, and
    status says why, naming ``file_name:`` and ``where`` (a key)."""
    from ros_types import S, T  # the harness types; imported here to keep helpers light
    node.config.write_text(text)
    assert node.lc.change_state(T.CONFIGURE) is False, text
    assert node.lc.get_state().id == S.UNCONFIGURED
    assert node.proc.alive()
    # A status about an earlier refusal may still be on its way: wait for this one's.
    env = wait_status(node, lambda p: where in (p["last_error"] or ""), 5, f"the reason naming {where} in status")
    reason = env["payload"]["last_error"]
    assert reason.startswith("configure failed") and f"{file_name}:" in reason, reason
    assert env["payload"]["daemon"]["running"] is False


def kill_daemon_and_see_restart(node, pid: int, daemon: str, false_within: float = 1.0) -> dict:
    """``kill -9`` of the node's daemon ``pid``: health=false on the wire
    within ``false_within`` s, true again after the node's restart, and a
    status naming a new pid, one restart and the SIGKILL. Returns that
    status payload."""
    node.health.skip()
    killed = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    wait_health(node, False, false_within, f"health=false within {false_within} s of kill -9 of {daemon}")
    print(f"kill -9 of {daemon} -> health=false seen after {(time.monotonic() - killed) * 1000:.0f} ms")
    wait_health(node, True, 10, "health=true again after the restart")
    env = wait_status(node, lambda p: p["daemon"]["running"] and p["daemon"]["pid"] != pid, 10, f"a new {daemon}")
    payload = env["payload"]
    assert payload["daemon"]["restarts"] == 1, payload["daemon"]
    assert "SIGKILL" in (payload["daemon"]["last_exit"] or ""), payload["daemon"]
    assert not pid_alive(pid)
    return payload


def with_setting(good: str, bad: str) -> str:
    """TOML text ``good`` with one setting replaced (or added) by ``bad``:
    ``key = value`` at the top, ``[section]\nkey = value`` in that section,
    and an ``[[array]]`` table appended."""
    if bad.startswith("[["):
        return good + "\n" + bad + "\n"
    if bad.startswith("["):
        section, line = bad.split("\n")
        key_name = line.split("=")[0].strip()
        start = good.index(section + "\n")
        end = good.find("\n[", start + 1) % (len(good) + 1)
        have = re.compile(rf"^{re.escape(key_name)} = .*$", re.M).search(good, start, end)
        at = start + len(section) + 1
        return good[:have.start()] + line + good[have.end():] if have else good[:at] + line + "\n" + good[at:]
    key_name = bad.split("=")[0].strip()
    line = re.search(rf"^{re.escape(key_name)} = .*$", good, re.M)
    return good.replace(line.group(0), bad, 1) if line else bad + "\n" + good


def open_to_others(path: Path) -> None:
    """o+x on ``path`` and its parents below /tmp: a daemon that drops to its
    own user (slapd) or serves as ``nobody`` (smbd's guests) must walk down
    to its files, and pytest's base dirs are 0700."""
    for d in [path, *path.parents]:
        if d in (Path("/tmp"), Path("/")):
            break
        d.chmod(d.stat().st_mode | 0o001)


def start_service_node(launch, graph, tmp_path: Path, binary: Path, service: str, name: str, default_config,
                       config=None, watch=True, autostart=True, env=None):
    """Starts a service node in ``tmp_path/name`` (state, run, key, its
    ``<service>.toml``: ``config``, or ``default_config()`` the first time),
    probing every 0.5 s, watched on the graph unless ``watch`` is false.
    The namespace it returns has what every service test reads; a test
    adds its ports."""
    from types import SimpleNamespace
    from ros_types import Bool, String
    d = tmp_path / name
    (d / "state").mkdir(parents=True, exist_ok=True)
    cfg = d / f"{service}.toml"
    if config is not None or not cfg.exists():
        cfg.write_text(config if config is not None else default_config())
    metrics_port = free_port(socket.SOCK_STREAM)
    health = graph.subscribe(f"/ntari/{service}/health", Bool) if watch else None
    status = graph.subscribe(f"/ntari/{service}/status", String) if watch else None
    lc = graph.lifecycle_client(f"/ntari/ntari_{service}_node") if watch else None
    args = ["--config", str(cfg), "--state-dir", str(d / "state"), "--run-dir", str(d / "run"),
            "--key", str(d / "node.key"), "--node-config", str(d / "absent-ntari.toml"),
            "--metrics-port", str(metrics_port), "--probe-interval", "0.5"]
    if autostart:
        args.append("--autostart")
    proc = launch(binary, *args, env=env, name=f"ntari-{service}-{name}")
    return SimpleNamespace(proc=proc, lc=lc, health=health, status=status, config=cfg, dir=d,
                           state=d / "state", run=d / "run", metrics_port=metrics_port, tmp=tmp_path)

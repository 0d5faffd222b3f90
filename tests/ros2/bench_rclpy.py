#!/usr/bin/env python3
"""Benchmark (not a test): DESIGN.md §7 figures as a *real rclpy* subscriber
sees them, next to a Python cyclonedds subscriber in the same process, on
the same samples.

* start -> first health sample, and start -> first health=true
  (``--autostart``), from just before the process is spawned to the
  subscriber's callback; for the example node and ntari-ntp (median and max
  of ``--starts`` runs). Both subscribers exist before the process starts.
  Health is volatile: a sample written before the node's writer has matched
  a subscriber is lost, so a start can wait for the next 1 Hz tick or for
  the node's republish-on-new-subscriber;
* ``kill -9`` of chronyd under ntari-ntp -> health=false, p50/p99 over
  ``--kills`` kills. Five exits within 60 s are a crash loop by design (the
  node goes to Unconfigured); the script then configures and activates it
  again over the lifecycle services (Python cyclonedds, as bench_ntp.py
  does: ROS 2 services do not cross RMW vendors). For rclpy it also gives
  rmw's reception timestamp, i.e. without the executor's wake-up.

Both subscribers record arrival in callbacks (rclpy's executor thread,
Cyclone's listener thread), so neither waits on the other.

    RMW_IMPLEMENTATION=rmw_fastrtps_cpp ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST \\
      .venv-ros2/bin/python tests/ros2/bench_rclpy.py \\
      --ntp-binary target/release/ntari-ntp --example-binary target/release/examples/ntari_example_node
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
os.environ["CYCLONEDDS_URI"] = "file://" + str(HERE.parent / "cyclonedds-loopback.xml")
os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(HERE.parent / "interop"))

from cyclonedds.core import Listener  # noqa: E402

import contract  # noqa: E402
from bench_example import pick_domain_id  # noqa: E402
from bench_ntp import percentile  # noqa: E402
from rosgraph import DEFAULT_QOS, Graph, topic_name  # noqa: E402
from ros_types import Bool, T  # noqa: E402
from rosobs import Observer  # noqa: E402


_KEEP = []


class CycloneHealth:
    """Python cyclonedds subscriber of a health topic, timestamped in a listener."""

    def __init__(self, graph: Graph, topic: str):
        self.samples = []           # (monotonic, data)
        self.lock = threading.Lock()

        def on_data(reader):
            t = time.monotonic()
            for s in reader.take(N=64):
                if getattr(s.sample_info, "valid_data", False):
                    with self.lock:
                        self.samples.append((t, s.data))
        from cyclonedds.sub import DataReader
        from cyclonedds.qos import Qos, Policy
        # The listener (called on Cyclone's receive thread) and the reader live as
        # long as the graph: _KEEP holds them (freeing either while data flows crashes).
        self.listener = Listener(on_data_available=on_data)
        self.reader = DataReader(graph.participant, graph.topic(topic_name(topic), Bool),
                                 qos=DEFAULT_QOS + Qos(Policy.DataRepresentation(use_cdrv0_representation=True)),
                                 listener=self.listener)
        _KEEP.append(self)

    def first_after(self, t0, pred=lambda d: True):
        with self.lock:
            return next((t for t, d in self.samples if t >= t0 and pred(d)), None)


def rclpy_first_after(rec, t0, pred=lambda d: True):
    with rec._cond:
        return next((s for s in rec.samples if s.t >= t0 and pred(s.msg.data)), None)


def wait(cond, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.005)
    raise TimeoutError(what)


class Proc:
    """A node under test, ended by PID; `setpriv --pdeathsig TERM` (an exec, same
    PID) ends it in order should this script die first."""

    def __init__(self, argv, env, log):
        self.log = open(log, "w")
        argv = ["setpriv", "--pdeathsig", "TERM", *argv]
        self.popen = subprocess.Popen([str(a) for a in argv], env=env, stdin=subprocess.DEVNULL,
                                      stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)

    def stop(self):
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        self.log.close()


def node_env(domain):
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain), RUST_LOG="info")
    prefix = str(Path(sys.prefix).resolve())
    ld = [p for p in env.get("LD_LIBRARY_PATH", "").split(os.pathsep)
          if p and not str(Path(p).resolve()).startswith(prefix)]
    env.pop("LD_LIBRARY_PATH", None)
    if ld:
        env["LD_LIBRARY_PATH"] = os.pathsep.join(ld)
    return env


def ntp_argv(binary, work: Path, tag: str, probe_interval: str):
    cfg = work / "ntp.toml"
    if not cfg.exists():
        cfg.write_text((REPO / "examples" / "ntp.toml").read_text().replace(
            "serve_port = 11123", f"serve_port = {contract.free_port()}"))
    (work / "state").mkdir(exist_ok=True)
    return [binary, "--config", cfg, "--state-dir", work / "state", "--run-dir", work / f"run-{tag}",
            "--key", work / "node.key", "--node-config", work / "absent.toml", "--metrics-port", "0",
            "--probe-interval", probe_interval, "--autostart"]


def starts(label, argv_for, runs, env, work, ros, graph, health_topic, rows):
    rec = ros.subscribe(health_topic, "std_msgs/msg/Bool")
    cyc = CycloneHealth(graph, health_topic)
    first_r, true_r, first_c, true_c = [], [], [], []
    for i in range(runs):
        t0 = time.monotonic()
        p = Proc(argv_for(i), env, work / f"{label}-start{i}.log")
        try:
            s = wait(lambda: rclpy_first_after(rec, t0, lambda d: d is True), 20, f"{label}: rclpy health=true")
            c = wait(lambda: cyc.first_after(t0, lambda d: d is True), 20, f"{label}: cyclonedds health=true")
            first_r.append((rclpy_first_after(rec, t0).t - t0) * 1000)
            true_r.append((s.t - t0) * 1000)
            first_c.append((cyc.first_after(t0) - t0) * 1000)
            true_c.append((c - t0) * 1000)
        finally:
            p.stop()
        print(f"{label} start {i}: first sample rclpy {first_r[-1]:.1f} ms / cyclonedds {first_c[-1]:.1f} ms, "
              f"health=true rclpy {true_r[-1]:.1f} ms / cyclonedds {true_c[-1]:.1f} ms", flush=True)

    def fmt(v):
        return f"{statistics.median(v):.1f} ms (max {max(v):.1f})"
    rows.append((f"{label}: start → first health sample (median of {runs})", fmt(first_r), fmt(first_c), ""))
    rows.append((f"{label}: start → first health=true (median of {runs})", fmt(true_r), fmt(true_c),
                 "(discovery included)"))


def kills(binary, count, env, work, ros, graph, rows):
    rec = ros.subscribe("/ntari/ntp/health", "std_msgs/msg/Bool")
    status = ros.subscribe("/ntari/ntp/status", "std_msgs/msg/String", contract.Qos("reliable", "transient_local", 1))
    cyc = CycloneHealth(graph, "/ntari/ntp/health")
    lc = graph.lifecycle_client("/ntari/ntari_ntp_node")
    p = Proc(ntp_argv(binary, work, "kills", "5"), env, work / "ntp-kills.log")
    lat_r, lat_c, lat_rx = [], [], []
    try:
        assert lc.wait_ready(20), "lifecycle services of ntari-ntp never appeared"
        pid = None
        while len(lat_r) < count:
            def fresh(m, previous=pid):
                d = json.loads(m.data)["payload"]
                return d["healthy"] and d["daemon"]["running"] and d["daemon"]["pid"] != previous
            pid = json.loads(status.wait_for(fresh, 60, "a healthy status naming a new chronyd").msg.data)[
                "payload"]["daemon"]["pid"]
            wait(lambda: rclpy_first_after(rec, 0, lambda d: d is True) and cyc.first_after(0, lambda d: d is True),
                 10, "health=true on both")
            t_wall = time.time_ns()
            t_kill = time.monotonic()
            os.kill(pid, signal.SIGKILL)
            s = wait(lambda: rclpy_first_after(rec, t_kill, lambda d: d is False), 5, "rclpy health=false")
            c = wait(lambda: cyc.first_after(t_kill, lambda d: d is False), 5, "cyclonedds health=false")
            lat_r.append((s.t - t_kill) * 1000)
            lat_c.append((c - t_kill) * 1000)
            lat_rx.append((s.received_ns - t_wall) / 1e6)
            print(f"kill {len(lat_r)}: health=false rclpy {lat_r[-1]:.1f} ms (rmw reception {lat_rx[-1]:.1f} ms), "
                  f"cyclonedds {lat_c[-1]:.1f} ms", flush=True)
            # restarted after the backoff, or (crash loop) Unconfigured: configure + activate
            t_false = time.monotonic()
            deadline = t_false + 70
            while not rclpy_first_after(rec, t_false, lambda d: d is True):
                if time.monotonic() > deadline:
                    raise TimeoutError("health=true again")
                if lc.get_state().id == 1:
                    assert lc.change_state(T.CONFIGURE) and lc.change_state(T.ACTIVATE)
                time.sleep(0.2)
    finally:
        p.stop()
    n = len(lat_r)
    rows.append((f"chronyd kill -9 → health=false, p50 ({n} kills)", f"{percentile(lat_r, 50):.1f} ms",
                 f"{percentile(lat_c, 50):.1f} ms", ""))
    rows.append((f"chronyd kill -9 → health=false, p99 ({n} kills)", f"{percentile(lat_r, 99):.1f} ms",
                 f"{percentile(lat_c, 99):.1f} ms", "p99 ≤ 50 ms"))
    rows.append(("  the same, rclpy: rmw reception timestamp, p50 / p99",
                 f"{percentile(lat_rx, 50):.1f} / {percentile(lat_rx, 99):.1f} ms", "—", "(no executor wake-up)"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ntp-binary", type=Path, default=REPO / "target" / "release" / "ntari-ntp")
    ap.add_argument("--example-binary", type=Path,
                    default=REPO / "target" / "release" / "examples" / "ntari_example_node")
    ap.add_argument("--starts", type=int, default=11)
    ap.add_argument("--kills", type=int, default=20)
    args = ap.parse_args()
    for b in (args.ntp_binary, args.example_binary):
        if not b.exists():
            print(f"bench_rclpy: {b} not found (cargo build --release)", file=sys.stderr)
            return 2

    domain = pick_domain_id()
    work = Path(tempfile.mkdtemp(prefix="bench-rclpy-"))
    os.environ["ROS_LOG_DIR"] = str(work / "ros_log")
    env = node_env(domain)
    rows = []
    ros = Observer(domain, name="ntari_bench_observer")
    graph = Graph(domain)
    try:
        starts("example", lambda i: [args.example_binary, "--autostart"], args.starts, env, work, ros, graph,
               "/ntari/example/health", rows)
        starts("ntari-ntp", lambda i: ntp_argv(args.ntp_binary, work, f"s{i}", "5"), args.starts, env, work,
               ros, graph, "/ntari/ntp/health", rows)
        kills(args.ntp_binary, args.kills, env, work, ros, graph, rows)
    finally:
        graph.close()
        ros.close()
    print(f"\nrmw: {os.environ['RMW_IMPLEMENTATION']} (rclpy {__import__('importlib.metadata').metadata.version('ros-rclpy')}), "
          f"ROS_AUTOMATIC_DISCOVERY_RANGE={os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE']}, domain {domain}, logs {work}")
    print("\n| figure (release binaries) | real rclpy subscriber | Python cyclonedds subscriber | target (DESIGN.md §7) |")
    print("|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

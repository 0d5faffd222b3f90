#!/usr/bin/env python3
"""Benchmark ntari-ntp against the DESIGN.md §7 targets (not a pytest test).

Runs a stand-alone "upstream" chronyd (local stratum 8) and ntari-ntp
managing a second chronyd that syncs to it, all on loopback, then measures:

* start -> Active: the node's own log (process start to `to=active [3]`),
  split into the node's share and the daemon's (daemon spawned -> Active,
  i.e. chronyd answering its command socket), which the target excludes;
* daemon crash -> health=false on the wire: `kill -9` of chronyd, until an
  independent DDS subscriber (this script) receives health=false; p50/p99
  over --kills kills. Every fifth kill inside a minute is a crash loop by
  design (the node goes to Unconfigured); the script then configures and
  activates it again over the lifecycle services, as an operator would;
* idle RSS of the node (chronyd excluded) and idle CPU over a window, for
  the node alone and with its chronyc probe children;
* the stripped binary's size.

    .venv/bin/python tests/interop/bench_ntp.py --binary target/release/ntari-ntp
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
os.environ["CYCLONEDDS_URI"] = "file://" + str(HERE.parent / "cyclonedds-loopback.xml")
sys.path.insert(0, str(HERE))

from bench_example import Node, has_symtab, pick_domain_id, row  # noqa: E402
from helpers import free_port, log_time  # noqa: E402
from rosgraph import Graph  # noqa: E402
from ros_types import Bool, String, T  # noqa: E402

MIB = 1024 * 1024
CHRONYD = "/usr/sbin/chronyd"


def children_cpu_ticks(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()
    return int(fields[13]) + int(fields[14])        # cutime, cstime


def percentile(values, p):
    values = sorted(values)
    k = (len(values) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--binary", type=Path, default=HERE.parent.parent / "target" / "release" / "ntari-ntp")
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--starts", type=int, default=5)
    ap.add_argument("--cpu-window", type=float, default=30.0)
    args = ap.parse_args()
    if not args.binary.exists():
        print(f"bench_ntp: {args.binary} not found (cargo build --release -p ntari-ntp)", file=sys.stderr)
        return 2

    domain = pick_domain_id()
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain), RUST_LOG="info")
    work = Path(tempfile.mkdtemp(prefix="bench-ntp-"))
    upstream_port = free_port()
    (work / "up").mkdir()
    (work / "up" / "chrony.conf").write_text(
        f"port {upstream_port}\nbindaddress 127.0.0.1\nallow 127.0.0.1\nlocal stratum 8\ncmdport 0\n"
        f"bindcmdaddress /\npidfile {work}/up/pid\ndriftfile {work}/up/drift\n")
    up_log = open(work / "upstream.log", "w")
    upstream = Node(Path(CHRONYD), ["-d", "-x", "-u", "root", "-f", str(work / "up" / "chrony.conf")], env, up_log)

    config = work / "ntp.toml"
    config.write_text(
        f'servers = [{{ host = "127.0.0.1", port = {upstream_port}, minpoll = -4, maxpoll = -4 }}]\n'
        f'allow = ["127.0.0.1"]\nserve_port = {free_port()}\nbind_address = "127.0.0.1"\n'
        f'local_stratum = 0\nleave_clock_alone = true\n')

    def start_node(tag: str, probe_interval: str = "5"):
        log = work / f"node-{tag}.log"
        run = work / f"run-{tag}"
        node = Node(args.binary, ["--config", str(config), "--state-dir", str(work / "state"),
                                  "--run-dir", str(run), "--key", str(work / "node.key"),
                                  "--node-config", str(work / "absent.toml"),
                                  "--metrics-port", str(free_port(socket.SOCK_STREAM)),
                                  "--probe-interval", probe_interval, "--autostart"],
                    env, open(log, "w"))
        return node, log

    rows = []
    try:
        with Graph(domain) as graph:
            health = graph.subscribe("/ntari/ntp/health", Bool)
            status = graph.subscribe("/ntari/ntp/status", String)

            # start -> Active, from the node's own log.
            totals, node_share = [], []
            for i in range(args.starts):
                t0 = time.time()
                node, log = start_node(f"start{i}")
                deadline = time.monotonic() + 20
                while log_time(log, "to=active [3]") is None and time.monotonic() < deadline:
                    time.sleep(0.02)
                active, spawned = log_time(log, "to=active [3]"), log_time(log, "daemon started")
                node.stop()
                if active is None or spawned is None:
                    print(f"start {i}: never Active, see {log}", file=sys.stderr)
                    return 1
                totals.append((active - t0) * 1000)
                node_share.append((spawned - t0) * 1000)
                print(f"start {i}: Active after {totals[-1]:.1f} ms, of which chronyd start-up "
                      f"{(active - spawned) * 1000:.1f} ms", flush=True)
            rows.append(row(f"start → Active, node's share (median of {args.starts})",
                            f"{statistics.median(node_share):.1f} ms", "≤ 100 ms",
                            statistics.median(node_share) <= 100))
            rows.append(row("start → Active incl. chronyd start-up (median)",
                            f"{statistics.median(totals):.1f} ms", "(daemon time excluded)", None))

            # Idle figures and crash latency on one long-running node.
            node, log = start_node("main")
            lc = graph.lifecycle_client("/ntari/ntari_ntp_node")
            assert lc.wait_ready(20), "lifecycle services never appeared"
            health.wait_for(lambda s: s.data is True, timeout=20, what="health=true")
            time.sleep(10)
            rss = node.rss_kib() / 1024
            c0, k0, w0 = node.cpu_ticks(), children_cpu_ticks(node.pid), time.monotonic()
            time.sleep(args.cpu_window)
            c1, k1, w1 = node.cpu_ticks(), children_cpu_ticks(node.pid), time.monotonic()
            hz = os.sysconf("SC_CLK_TCK")
            cpu = (c1 - c0) / hz / (w1 - w0) * 100
            cpu_all = (c1 - c0 + k1 - k0) / hz / (w1 - w0) * 100
            rows.append(row("idle RSS of the node (chronyd excluded)", f"{rss:.1f} MiB", "≤ 8 MiB", rss <= 8))
            rows.append(row(f"idle CPU over {args.cpu_window:.0f} s, node", f"{cpu:.3f} % of one core",
                            "≤ 0.1 %", cpu <= 0.1))
            rows.append(row("idle CPU, node + its chronyc probes (every 5 s)", f"{cpu_all:.3f} % of one core",
                            "(informative)", None))

            latencies = []
            pid = None
            while len(latencies) < args.kills:
                def fresh_and_healthy(sample, previous=pid):
                    p = json.loads(sample.data)["payload"]
                    return p["healthy"] and p["daemon"]["running"] and p["daemon"]["pid"] != previous
                pid = json.loads(status.wait_for(fresh_and_healthy, timeout=30,
                                                 what="healthy status of a new chronyd").data)["payload"]["daemon"]["pid"]
                health.skip()
                t_kill = time.monotonic()
                os.kill(pid, signal.SIGKILL)
                health.wait_for(lambda s: s.data is False, timeout=5, what="health=false after kill")
                latencies.append((time.monotonic() - t_kill) * 1000)
                print(f"kill {len(latencies)}: health=false after {latencies[-1]:.1f} ms", flush=True)
                # Either restarted after the backoff, or (crash loop) back to
                # Unconfigured: then configure and activate again.
                deadline = time.monotonic() + 40
                while True:
                    try:
                        health.wait_for(lambda s: s.data is True, timeout=0.5, what="health=true again")
                        break
                    except TimeoutError:
                        if time.monotonic() > deadline:
                            raise
                        if lc.get_state().id == 1:   # Unconfigured after a crash loop
                            assert lc.change_state(T.CONFIGURE) and lc.change_state(T.ACTIVATE)
            p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
            rows.append(row(f"chronyd kill -9 → health=false seen by a subscriber, p50 ({len(latencies)} kills)",
                            f"{p50:.1f} ms", "", None))
            rows.append(row(f"chronyd kill -9 → health=false seen by a subscriber, p99 ({len(latencies)} kills)",
                            f"{p99:.1f} ms", "p99 ≤ 50 ms", p99 <= 50))
            node.stop()
    finally:
        upstream.stop()

    size = args.binary.stat().st_size / MIB
    stripped = not has_symtab(args.binary)
    rows.append(row(f"binary size ({args.binary.name}, {'stripped' if stripped else 'NOT stripped'})",
                    f"{size:.1f} MiB", "≤ 8 MiB", size <= 8 if stripped else None))
    print("\n| figure | measured | target (DESIGN.md §7) | verdict |\n|---|---|---|---|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Benchmark: idle memory of the core tier that exists so far (ntari-ntp,
ntari-dns, ntari-dhcp, each with its daemon), against DESIGN.md §7's
"whole core tier (6 nodes + 6 daemons), idle RSS ≤ 64 MiB".

Starts the three release nodes with the example configs (dhcp on a veth
pair of its own, the client end in a namespace, as in the tests), waits
until all three are healthy, lets them idle 10 s, and sums VmRSS of each
node and of its daemon. Only what was started here is stopped, by PID.

    .venv/bin/python tests/interop/bench_tier.py --bin-dir target/release
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
os.environ["CYCLONEDDS_URI"] = "file://" + str(HERE.parent / "cyclonedds-loopback.xml")
sys.path.insert(0, str(HERE))

import netns  # noqa: E402
from bench_example import pick_domain_id, row  # noqa: E402
from rosgraph import Graph  # noqa: E402
from ros_types import Bool  # noqa: E402

MIB = 1024 * 1024
TARGET_MIB = 64


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def children(pid: int) -> list:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bin-dir", default=str(ROOT / "target" / "release"))
    parser.add_argument("--idle", type=float, default=10.0, help="seconds of idling before measuring")
    args = parser.parse_args()
    bins = Path(args.bin_dir)
    domain = pick_domain_id()
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain))
    work = Path(tempfile.mkdtemp(prefix="bench-tier-"))
    work.chmod(0o755)   # dnsmasq reads its hosts files as user dnsmasq
    procs = {}
    with netns.ClientNet() as net:
        dhcp_toml = (ROOT / "examples" / "dhcp.toml").read_text() \
            .replace("ntari-demo0", net.server_if).replace("192.168.77", net.net)
        (work / "dhcp.toml").write_text(dhcp_toml)
        configs = {"ntp": ROOT / "examples" / "ntp.toml", "dns": ROOT / "examples" / "dns.toml",
                   "dhcp": work / "dhcp.toml"}
        try:
            for svc, cfg in configs.items():
                procs[svc] = subprocess.Popen(
                    [str(bins / f"ntari-{svc}"), "--config", str(cfg), "--state-dir", str(work / f"{svc}-state"),
                     "--run-dir", str(work / f"{svc}-run"), "--key", str(work / "node.key"),
                     "--node-config", str(work / "absent.toml"), "--metrics-port", "0", "--autostart"],
                    env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                    stderr=open(work / f"{svc}.log", "wb"))
            with Graph(domain) as graph:
                for svc in configs:
                    graph.subscribe(f"/ntari/{svc}/health", Bool).wait_for(
                        lambda s: s.data, timeout=30.0, what=f"{svc} healthy")
            time.sleep(args.idle)
            rows = []
            total = 0
            for svc, proc in procs.items():
                node = rss_bytes(proc.pid)
                daemons = sum(rss_bytes(c) for c in children(proc.pid))
                total += node + daemons
                rows.append(row(f"ntari-{svc}: node / daemon idle RSS", f"{node / MIB:.1f} / {daemons / MIB:.1f} MiB",
                                "", None))
            print("| figure | measured | target (DESIGN.md §7) | verdict |")
            print("|---|---|---|---|")
            for r in rows:
                print(r)
            print(row("core tier so far (3 nodes + 3 daemons), idle RSS", f"{total / MIB:.1f} MiB",
                      f"≤ {TARGET_MIB} MiB for 6 + 6", total <= TARGET_MIB * MIB))
        finally:
            for proc in procs.values():
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            for proc in procs.values():
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
            subprocess.run(["rm", "-rf", str(work)], check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())

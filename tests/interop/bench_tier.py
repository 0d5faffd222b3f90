#!/usr/bin/env python3
"""Benchmark: idle memory of the core tier that exists so far (ntari-ntp,
ntari-dns, ntari-dhcp, ntari-vpn, ntari-identity, ntari-files, each with its
daemons),
against DESIGN.md §7's "whole hub (every service node + daemons), idle RSS
≤ 128 MiB".

Starts the six release nodes with the example configs (dhcp on a veth
pair of its own, the client end in a namespace, as in the tests; vpn with
a unique interface name and its peers' endpoint on that veth pair, where
nothing answers; files on free ports), waits until all are healthy, lets
them idle 10 s, and sums VmRSS of each node, of the guard each daemon runs
under, and of the daemon itself (every process under a guard: smbd's
helpers too; not the node's own short-lived probe helpers, such as
ntari-files' smbstatus). RSS counts the pages a guard
shares with its node twice; PSS (proportional, /proc/<pid>/smaps_rollup)
does not, and is shown too. Only what was started here is stopped, by PID.

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
TARGET_MIB = 128   # DESIGN.md §7: the whole hub, every service node + daemons


def proc_field(pid: int, file: str, field: str) -> int:
    """Bytes of a kB ``field`` of /proc/<pid>/``file``; 0 if the process is gone
    (a daemon's per-connection child, a probe's helper)."""
    try:
        lines = Path(f"/proc/{pid}/{file}").read_text().splitlines()
    except (FileNotFoundError, ProcessLookupError):
        return 0
    for line in lines:
        if line.startswith(field):
            return int(line.split()[1]) * 1024
    return 0


def rss_bytes(pid: int) -> int:
    return proc_field(pid, "status", "VmRSS:")


def pss_bytes(pid: int) -> int:
    return proc_field(pid, "smaps_rollup", "Pss:")


def children(pid: int) -> list:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def descendants(pid: int) -> list:
    out = []
    for child in children(pid):
        out += [child, *descendants(child)]
    return out


def is_guard(pid: int) -> bool:
    try:
        return b"__ntari-guard" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bin-dir", default=str(ROOT / "target" / "release"))
    parser.add_argument("--idle", type=float, default=10.0, help="seconds of idling before measuring")
    args = parser.parse_args()
    from bench_files import config_text as files_config   # here: bench_files imports this module
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
        iface = "ntbt%05x" % (os.getpid() & 0xFFFFF)
        n = 100 + os.getpid() % 150
        vpn_toml = (ROOT / "examples" / "vpn.toml").read_text() \
            .replace('"wg-coop"', f'"{iface}"').replace("10.77.", f"10.{n}.").replace("10.78.", f"10.{n + 1}.") \
            .replace('"192.0.2.10:51820"', f'"{net.net}.2:51820"').replace("listen_port = 51820", "listen_port = 0")
        vpn_toml = vpn_toml.replace("listen_port = 0", f"listen_port = {40000 + os.getpid() % 20000}")
        (work / "vpn.toml").write_text(vpn_toml)
        (work / "files.toml").write_text(files_config()[0])
        configs = {"ntp": ROOT / "examples" / "ntp.toml", "dns": ROOT / "examples" / "dns.toml",
                   "dhcp": work / "dhcp.toml", "vpn": work / "vpn.toml",
                   # as-is: realm COOP.LAN on loopback; the first configure provisions it.
                   "identity": ROOT / "examples" / "identity.toml", "files": work / "files.toml"}
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
            total = total_pss = 0
            for svc, proc in procs.items():
                below = descendants(proc.pid)
                guards = [p for p in below if is_guard(p)]
                daemons = [p for g in guards for p in descendants(g)]
                node, guard, daemon = rss_bytes(proc.pid), sum(map(rss_bytes, guards)), sum(map(rss_bytes, daemons))
                pss = [pss_bytes(proc.pid), sum(map(pss_bytes, guards)), sum(map(pss_bytes, daemons))]
                total += node + guard + daemon
                total_pss += sum(pss)
                rows.append(row(f"ntari-{svc}: node / guard / daemon idle RSS (PSS)",
                                f"{node / MIB:.1f} / {guard / MIB:.1f} / {daemon / MIB:.1f} MiB "
                                f"({' / '.join(f'{x / MIB:.1f}' for x in pss)})", "", None))
            print("| figure | measured | target (DESIGN.md §7) | verdict |")
            print("|---|---|---|---|")
            for r in rows:
                print(r)
            print(row(f"core tier so far ({len(procs)} nodes + guards + daemons), idle RSS", f"{total / MIB:.1f} MiB",
                      f"≤ {TARGET_MIB} MiB for the whole hub", total <= TARGET_MIB * MIB))
            print(row("the same, PSS (shared pages counted once)", f"{total_pss / MIB:.1f} MiB", "", None))
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

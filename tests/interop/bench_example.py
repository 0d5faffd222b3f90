#!/usr/bin/env python3
"""Benchmark a service node binary against the DESIGN.md §7 targets.

Not a pytest test: timings belong in a benchmark run, not in pass/fail tests.
It measures, for one binary (default: the example node):

* start -> first health sample seen on the wire, and start -> health=true with
  ``--autostart`` (median of N runs).  These include DDS discovery between
  the node and this script's participant (which exists before the node
  starts): health is volatile, so a sample published before the node's writer
  has matched us is lost and the next one comes with the 1 Hz tick — expect
  a bimodal distribution (a few ms or about 1 s);
* start -> Active as logged by the node itself (its lifecycle log line's
  timestamp minus the wall-clock time just before the process was started),
  which excludes discovery;
* idle resident memory: VmRSS from /proc/<pid>/status after the node has been
  Active for a while;
* idle CPU: (utime+stime) from /proc/<pid>/stat over a window, as % of one core
  (resolution: one clock tick, usually 10 ms, over the window);
* the binary's size (the target is for a stripped release build).

and prints one markdown table row per figure with the target next to it.
DDS stays on loopback (tests/cyclonedds-loopback.xml) on a random domain.

    .venv/bin/python tests/interop/bench_example.py [--binary PATH] [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
LOOPBACK_URI = "file://" + str(HERE.parent / "cyclonedds-loopback.xml")
os.environ["CYCLONEDDS_URI"] = LOOPBACK_URI  # before Cyclone is loaded
sys.path.insert(0, str(HERE))

from rosgraph import Graph  # noqa: E402
from ros_types import Bool  # noqa: E402

HEALTH = "/ntari/example/health"
MIB = 1024 * 1024

# DESIGN.md §7
TARGET_START_MS = 100.0       # start -> Active (daemon ready time excluded)
TARGET_RSS_MIB = 8.0          # service node resident memory, idle, daemon excluded
TARGET_CPU_PCT = 0.1          # service node CPU, idle, % of one core
TARGET_BINARY_MIB = 8.0       # stripped binary


def default_binary() -> Path:
    bin_dir = Path(os.environ.get("NTARI_BIN_DIR", str(HERE.parent.parent / "target" / "debug")))
    return bin_dir / "examples" / "ntari_example_node"


def pick_domain_id() -> int:
    """A random domain in 1..200 whose DDSI ports (7400 + 250*d ...) are unused."""
    used = set()
    for name in ("/proc/net/udp", "/proc/net/udp6"):
        with open(name) as f:
            next(f)
            used.update(int(line.split()[1].rsplit(":", 1)[1], 16) for line in f)
    domains = list(range(1, 201))
    random.SystemRandom().shuffle(domains)
    return next((d for d in domains if not any(7400 + 250 * d <= p < 7650 + 250 * d for p in used)), domains[0])


class Node:
    """The binary under test, ended by PID (SIGTERM, then SIGKILL)."""

    def __init__(self, binary: Path, args, env, log):
        self.popen = subprocess.Popen([str(binary), *args], env=env, stdin=subprocess.DEVNULL,
                                      stdout=log, stderr=log, start_new_session=True)
        self.pid = self.popen.pid

    def stop(self, timeout: float = 10.0) -> int:
        if self.popen.poll() is None:
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.popen.wait(10)
        return self.popen.returncode

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def cpu_ticks(self) -> int:
        stat = Path(f"/proc/{self.pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) "
        return int(fields[11]) + int(fields[12])      # utime, stime (fields 14, 15)


def has_symtab(path: Path) -> bool:
    """Whether an ELF64 little-endian file still has a .symtab section."""
    import struct
    with open(path, "rb") as f:
        ident = f.read(64)
        if ident[:4] != b"\x7fELF" or ident[4] != 2:
            return False
        shoff, = struct.unpack_from("<Q", ident, 0x28)
        shentsize, shnum, shstrndx = struct.unpack_from("<HHH", ident, 0x3A)
        f.seek(shoff)
        table = f.read(shentsize * shnum)
        names_off, names_size = struct.unpack_from("<QQ", table, shstrndx * shentsize + 0x18)
        f.seek(names_off)
        names = f.read(names_size)
    for i in range(shnum):
        name_idx, = struct.unpack_from("<I", table, i * shentsize)
        if names[name_idx:names.index(b"\0", name_idx)] == b".symtab":
            return True
    return False


def logged_active_at(log: Path):
    """Wall-clock time (s) of the node's log line for reaching Active, or None.

    Expects the tracing line of ntari-node's lifecycle, e.g.
    ``2026-01-01T00:00:00.123456Z  INFO ... to=active [3]``."""
    from datetime import datetime
    for line in log.read_text(errors="replace").splitlines():
        if "to=active [3]" in line:
            stamp = line.split()[0].rstrip("Z")
            try:
                return datetime.fromisoformat(stamp + "+00:00").timestamp()
            except ValueError:
                return None
    return None


def row(figure: str, measured: str, target: str, ok) -> str:
    verdict = "n/a" if ok is None else ("ok" if ok else "**over target**")
    return f"| {figure} | {measured} | {target} | {verdict} |"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--binary", type=Path, default=default_binary())
    ap.add_argument("--runs", type=int, default=5, help="start-up runs (median is reported)")
    ap.add_argument("--idle", type=float, default=10.0, help="seconds Active before reading RSS")
    ap.add_argument("--cpu-window", type=float, default=20.0, help="seconds of idle CPU sampling")
    ap.add_argument("--timeout", type=float, default=20.0, help="bound on every wait")
    ap.add_argument("--domain", type=int, default=None)
    opts = ap.parse_args()

    if not opts.binary.is_file():
        print(f"binary {opts.binary} not found (build it, or pass --binary / set NTARI_BIN_DIR)", file=sys.stderr)
        return 2
    domain = opts.domain if opts.domain is not None else pick_domain_id()
    # info level: the node logs each lifecycle transition with a timestamp
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain), CYCLONEDDS_URI=LOOPBACK_URI, RUST_LOG="info")
    log = tempfile.NamedTemporaryFile(prefix="bench_example-", suffix=".log", delete=False)
    print(f"binary {opts.binary}, domain {domain}, node log {log.name}", file=sys.stderr)

    first_sample_ms, active_ms, logged_ms = [], [], []
    with Graph(domain) as graph:
        # start-up: first health sample, and health=true with --autostart
        for i in range(opts.runs):
            sub = graph.subscribe(HEALTH, Bool)
            run_log = tempfile.NamedTemporaryFile(prefix=f"bench_example-run{i + 1}-", suffix=".log")
            wall0, t0 = time.time(), time.monotonic()
            node = Node(opts.binary, ["--autostart"], env, run_log)
            try:
                first = sub.wait_for(timeout=opts.timeout, what="first health sample")
                first_sample_ms.append((time.monotonic() - t0) * 1000)
                if first.data is not True:
                    sub.wait_for(lambda s: s.data is True, timeout=opts.timeout, what="health=true")
                active_ms.append((time.monotonic() - t0) * 1000)
            finally:
                node.stop()
            at = logged_active_at(Path(run_log.name))
            if at is not None:
                logged_ms.append((at - wall0) * 1000)
            run_log.close()
            print(f"run {i + 1}: first sample {first_sample_ms[-1]:.1f} ms, health=true {active_ms[-1]:.1f} ms, "
                  f"Active per node log {f'{logged_ms[-1]:.1f} ms' if at is not None else 'n/a'}", file=sys.stderr)

        # idle: RSS after --idle s Active, then CPU over --cpu-window s
        sub = graph.subscribe(HEALTH, Bool)
        node = Node(opts.binary, ["--autostart"], env, log)
        try:
            sub.wait_for(lambda s: s.data is True, timeout=opts.timeout, what="health=true")
            time.sleep(opts.idle)
            rss_mib = node.rss_kib() / 1024
            hz = os.sysconf("SC_CLK_TCK")
            c0, t0 = node.cpu_ticks(), time.monotonic()
            time.sleep(opts.cpu_window)
            c1, t1 = node.cpu_ticks(), time.monotonic()
            cpu_pct = (c1 - c0) / hz / (t1 - t0) * 100
            resolution = 100 / hz / (t1 - t0)
            alive = node.popen.poll() is None
        finally:
            code = node.stop()

    size_mib = opts.binary.stat().st_size / MIB
    med_first = statistics.median(first_sample_ms)
    med_active = statistics.median(active_ms)
    print()
    print("| figure | measured | target (DESIGN.md §7) | verdict |")
    print("|---|---|---|---|")
    print(row(f"start → first health sample (median of {opts.runs}, incl. discovery)",
              f"{med_first:.0f} ms", f"≤ {TARGET_START_MS:.0f} ms (start → Active)", med_first <= TARGET_START_MS))
    print(row(f"start → health=true with --autostart (median of {opts.runs})",
              f"{med_active:.0f} ms", f"≤ {TARGET_START_MS:.0f} ms", med_active <= TARGET_START_MS))
    if logged_ms:
        med_logged = statistics.median(logged_ms)
        print(row(f"start → Active per the node's log (median of {len(logged_ms)}, no discovery)",
                  f"{med_logged:.0f} ms", f"≤ {TARGET_START_MS:.0f} ms", med_logged <= TARGET_START_MS))
    print(row(f"idle RSS after {opts.idle:.0f} s Active (VmRSS)",
              f"{rss_mib:.1f} MiB", f"≤ {TARGET_RSS_MIB:.0f} MiB", rss_mib <= TARGET_RSS_MIB))
    print(row(f"idle CPU over {opts.cpu_window:.0f} s (utime+stime, ±{resolution:.2f} %)",
              f"{cpu_pct:.2f} % of one core", f"≤ {TARGET_CPU_PCT} %", cpu_pct <= TARGET_CPU_PCT))
    stripped = "not stripped" if has_symtab(opts.binary) else "stripped"
    print(row(f"binary size ({opts.binary.name}, {stripped})", f"{size_mib:.1f} MiB",
              f"≤ {TARGET_BINARY_MIB:.0f} MiB (stripped release)",
              size_mib <= TARGET_BINARY_MIB if stripped == "stripped" else None))
    if not alive or code != 0:
        print(f"\nwarning: node alive during idle={alive}, exit code {code}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

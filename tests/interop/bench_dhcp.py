#!/usr/bin/env python3
"""Benchmark ntari-dhcp against the DESIGN.md §7 targets (not a pytest test).

A client network of its own (tests/interop/netns.py, ``wide``: a namespace
and a veth pair, the server end ``10.<n>.0.1/16`` in the root namespace,
the client end ``10.<n>.0.2/16`` in the namespace; a pool of ~65 000
addresses). ntari-dhcp (log_level "warn") serves the server end; a plain
kea-dhcp4 is started with the node's rendered ``<run-dir>/kea-dhcp4.conf``
(copied, only the control socket and the lease file moved to its own
directory; KEA_PIDFILE_DIR/KEA_LOCKFILE_DIR there too) and the node's own
command line. Both cannot serve one interface at once, so they take turns:

* DORA exchanges/s with ``perfdhcp -4 -r RATE -R CLIENTS -p SECONDS`` run in
  the namespace, rounds alternating (managed, plain, plain, managed, ...), a
  fresh lease file for each run (managed: deactivate, lease file removed,
  activate; plain: a new kea-dhcp4 on an empty file), so every run does
  CLIENTS new allocations. perfdhcp on one CPU, the Kea serving on the
  other. The default rate is near where Kea 2.2 saturates on a 2-CPU VM
  (~12 000/s on an empty lease file; beyond it drops grow and the
  throughput collapses). The verdict: the median of the per-round ratios
  managed/plain ≥ 0.98. The node is not on the packet path, but it follows
  every lease change Kea writes, which may cost Kea time: that is what this
  measures;
* start → Active from the node's own log (process start to `to=active [3]`),
  split into the node's share and Kea's start-up (daemon spawned → Active);
* idle RSS of the node (Kea excluded) after 10 s Active, and its idle CPU
  over a window (its probe every 5 s included);
* the stripped binary's size.

Only what was started here is stopped, by PID; the namespace and the veth
are removed at the end, also on error.

    .venv/bin/python tests/interop/bench_dhcp.py --binary target/release/ntari-dhcp
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
os.environ["CYCLONEDDS_URI"] = "file://" + str(HERE.parent / "cyclonedds-loopback.xml")
sys.path.insert(0, str(HERE))

import netns  # noqa: E402
from bench_example import Node, has_symtab, pick_domain_id, row  # noqa: E402
from helpers import daemons_of, free_port, kea_command, log_time  # noqa: E402
from rosgraph import Graph  # noqa: E402
from ros_types import T, Bool  # noqa: E402

MIB = 1024 * 1024
KEA = "/usr/sbin/kea-dhcp4"
NODE = "/ntari/ntari_dhcp_node"


def kea_children(node_pid: int):
    """PIDs of the kea-dhcp4 processes the node ``node_pid`` runs."""
    return daemons_of(node_pid, "kea-dhcp4")


def wait_kea_of(node_pid: int, not_pid=None, timeout: float = 10.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = [p for p in kea_children(node_pid) if p != not_pid]
        if pids:
            return pids[0]
        time.sleep(0.05)
    raise RuntimeError(f"no (new) kea-dhcp4 child of {node_pid}")


def wait_kea_ready(sock: Path, timeout: float = 10.0) -> None:
    """Kea answers status-get on ``sock`` and its DHCP sockets are open."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            reply = kea_command(sock, "status-get", timeout=1)
            last = reply
            if reply.get("result") == 0 and reply["arguments"].get("sockets", {}).get("status", "ready") == "ready":
                return
        except (OSError, ValueError) as e:
            last = e
        time.sleep(0.05)
    raise RuntimeError(f"kea-dhcp4 on {sock} not ready: {last}")


def perfdhcp(net, rate: int, clients: int, seconds: float, cpu=None):
    """(4-way exchanges/s, DISCOVER-OFFER drops, REQUEST-ACK drops) of one run."""
    pin = ["taskset", "-c", str(cpu)] if cpu is not None else []
    out = net.run([*pin, "perfdhcp", "-4", "-l", net.client_if, "-r", str(rate), "-R", str(clients),
                   "-p", str(int(seconds))], timeout=seconds + 60)
    text = out.stdout + out.stderr
    m = re.search(r"^Rate:\s+([\d.]+) 4-way exchanges/second", text, re.M)
    if not m:
        raise RuntimeError(f"perfdhcp printed no rate (exit {out.returncode}):\n{text}")
    drops = {}
    for section in ("DISCOVER-OFFER", "REQUEST-ACK"):
        d = re.search(rf"Statistics for: {section}\*+\n(?:.*\n)*?drops: (\d+)", text)
        drops[section] = int(d.group(1)) if d else -1
    return float(m.group(1)), drops["DISCOVER-OFFER"], drops["REQUEST-ACK"]


def remove_lease_files(directory: Path, name: str = "leases4.csv") -> None:
    """The lease file and its LFC companions (``.1``, ``.2``, ``.output``...)."""
    for p in directory.glob(name + "*"):
        p.unlink()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--binary", type=Path, default=HERE.parent.parent / "target" / "release" / "ntari-dhcp")
    ap.add_argument("--rounds", type=int, default=4, help="rounds of one managed and one plain run each")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--rate", type=int, default=12000, help="perfdhcp -r: DORA exchanges/s offered")
    ap.add_argument("--clients", type=int, default=0, help="perfdhcp -R (default: rate × seconds, all new)")
    ap.add_argument("--starts", type=int, default=5)
    ap.add_argument("--cpu-window", type=float, default=30.0)
    ap.add_argument("--no-pin", action="store_true", help="do not pin perfdhcp and kea-dhcp4 to separate CPUs")
    args = ap.parse_args()
    if not args.binary.exists():
        print(f"bench_dhcp: {args.binary} not found (cargo build --release -p ntari-dhcp)", file=sys.stderr)
        return 2
    if not Path(KEA).exists() or not shutil.which("perfdhcp"):
        print("bench_dhcp: needs kea-dhcp4 and perfdhcp (ci/setup.sh installs kea-dhcp4-server, kea-admin)",
              file=sys.stderr)
        return 2
    why = netns.available()
    if why:
        print(f"bench_dhcp: {why}", file=sys.stderr)
        return 2
    clients = args.clients or int(args.rate * args.seconds)
    if clients > 60000:
        print(f"bench_dhcp: {clients} clients do not fit the pool (~65 000); lower --rate/--seconds",
              file=sys.stderr)
        return 2

    domain = pick_domain_id()
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain), RUST_LOG="info")
    work = Path(tempfile.mkdtemp(prefix="bench-dhcp-"))   # short: Kea's socket path must fit
    net = netns.ClientNet(wide=True)
    rows = []
    node = None
    plain = None
    graph = None
    try:
        net.create()
        # perfdhcp sends from the client end's address.
        net.ip("addr", "add", f"{net.net}.0.2/16", "dev", net.client_if)
        config = work / "dhcp.toml"
        config.write_text(
            f'interfaces = ["{net.server_if}"]\nlease_time = 3600\nlog_level = "warn"\n'
            f'dns_servers = ["{net.server_ip}"]\ndomain_name = "bench.lan"\n'
            f'\n[[subnets]]\nsubnet = "{net.subnet}"\npools = ["{net.net}.1.0 - {net.net}.255.254"]\n'
            f'router = "{net.server_ip}"\n')
        state = work / "state"
        state.mkdir()

        def start_node(tag: str):
            log = work / f"node-{tag}.log"
            run = work / f"run-{tag}"
            n = Node(args.binary, ["--config", str(config), "--state-dir", str(state),
                                   "--run-dir", str(run), "--key", str(work / "node.key"),
                                   "--node-config", str(work / "absent.toml"),
                                   "--metrics-port", str(free_port(socket.SOCK_STREAM)),
                                   "--probe-interval", "5", "--autostart"],
                     env, open(log, "w"))
            return n, log, run

        # start -> Active, from the node's own log.
        totals, node_share = [], []
        for i in range(args.starts):
            t0 = time.time()
            n, log, _ = start_node(f"start{i}")
            deadline = time.monotonic() + 20
            while log_time(log, "to=active [3]") is None and time.monotonic() < deadline:
                time.sleep(0.02)
            active, spawned = log_time(log, "to=active [3]"), log_time(log, "daemon started")
            n.stop()
            if active is None or spawned is None:
                print(f"start {i}: never Active, see {log}", file=sys.stderr)
                return 1
            totals.append((active - t0) * 1000)
            node_share.append((spawned - t0) * 1000)
            print(f"start {i}: Active after {totals[-1]:.1f} ms, of which kea-dhcp4 start-up "
                  f"{(active - spawned) * 1000:.1f} ms", flush=True)
        rows.append(row(f"start → Active, node's share (median of {args.starts})",
                        f"{statistics.median(node_share):.1f} ms", "≤ 100 ms",
                        statistics.median(node_share) <= 100))
        rows.append(row("start → Active incl. kea-dhcp4 start-up (median)",
                        f"{statistics.median(totals):.1f} ms", "(daemon time excluded)", None))

        graph = Graph(domain)
        health = graph.subscribe("/ntari/dhcp/health", Bool)
        lc = graph.lifecycle_client(NODE)
        remove_lease_files(state)
        node, log, run = start_node("main")
        health.wait_for(lambda s: s.data is True, timeout=20, what="health=true")
        if not lc.wait_ready(10):
            raise RuntimeError("the node's lifecycle services never appeared")
        kea_pid = wait_kea_of(node.pid)

        # The plain kea-dhcp4: the node's command line and rendered file,
        # only the control socket and the lease file in its own directory.
        argv = [a.decode() for a in Path(f"/proc/{kea_pid}/cmdline").read_bytes().split(b"\0")[:-1]]
        rendered = run / "kea-dhcp4.conf"
        plain_dir = work / "plain"
        plain_dir.mkdir()
        doc = json.loads(rendered.read_text())
        d4 = doc["Dhcp4"]
        plain_sock = plain_dir / "kea4-ctrl.sock"
        d4["control-socket"]["socket-name"] = str(plain_sock)
        d4["lease-database"]["name"] = str(plain_dir / "leases4.csv")
        copy = plain_dir / "kea-dhcp4.conf"
        copy.write_text(json.dumps(doc, indent=2))
        if str(rendered) not in argv:
            print(f"bench_dhcp: {rendered} is not on the node's kea-dhcp4 command line {argv}", file=sys.stderr)
            return 1
        plain_argv = [a.replace(str(rendered), str(copy)) for a in argv[1:]]
        plain_env = dict(env, KEA_PIDFILE_DIR=str(plain_dir), KEA_LOCKFILE_DIR=str(plain_dir))
        print(f"node's kea-dhcp4: {' '.join(argv)}\nplain kea-dhcp4:  {KEA} {' '.join(plain_argv)}", flush=True)

        # Idle figures first: nothing but the node's own probes.
        time.sleep(10)
        rss = node.rss_kib() / 1024
        c0, w0 = node.cpu_ticks(), time.monotonic()
        time.sleep(args.cpu_window)
        c1, w1 = node.cpu_ticks(), time.monotonic()
        cpu = (c1 - c0) / os.sysconf("SC_CLK_TCK") / (w1 - w0) * 100

        cpus = sorted(os.sched_getaffinity(0))
        perf_cpu, kea_cpu = None, None
        if not args.no_pin and len(cpus) >= 2:
            perf_cpu, kea_cpu = cpus[0], cpus[1]
            print(f"pinned: kea-dhcp4 on CPU {kea_cpu}, perfdhcp on CPU {perf_cpu}", flush=True)

        def pin(pid):
            if kea_cpu is not None:
                os.sched_setaffinity(pid, {kea_cpu})

        # The node's Kea is serving now, on an empty lease file.
        active = True

        def managed_run():
            nonlocal kea_pid, active
            if not active:
                # Kea stopped by deactivate: empty its lease file, activate.
                remove_lease_files(state)
                health.skip()
                if not lc.change_state(T.ACTIVATE, timeout=15):
                    raise RuntimeError("activate refused")
                active = True
                health.wait_for(lambda s: s.data is True, timeout=20, what="health=true")
                kea_pid = wait_kea_of(node.pid)
                wait_kea_ready(run / "kea4-ctrl.sock")
            pin(kea_pid)
            result = perfdhcp(net, args.rate, clients, args.seconds, perf_cpu)
            # Only one server on the interface: the node's Kea stops.
            if not lc.change_state(T.DEACTIVATE, timeout=15):
                raise RuntimeError("deactivate refused")
            active = False
            return result

        def plain_run():
            nonlocal plain
            remove_lease_files(plain_dir)
            plain = Node(Path(KEA), plain_argv, plain_env, open(plain_dir / "kea.log", "a"))
            pin(plain.pid)
            wait_kea_ready(plain_sock)
            result = perfdhcp(net, args.rate, clients, args.seconds, perf_cpu)
            plain.stop()
            plain = None
            return result

        # Rounds ABBA...: managed, plain | plain, managed | ...
        managed, plain_rates, ratios = [], [], []
        drops = {"managed": [], "plain": []}
        for r in range(args.rounds):
            order = ["managed", "plain"] if r % 2 == 0 else ["plain", "managed"]
            got = {}
            for label in order:
                rate, d_offer, d_ack = managed_run() if label == "managed" else plain_run()
                got[label] = rate
                drops[label].append(d_offer + d_ack)
                print(f"round {r + 1}: {label:7s} {rate:9.0f} exchanges/s  drops {d_offer} DISCOVER-OFFER, "
                      f"{d_ack} REQUEST-ACK", flush=True)
            managed.append(got["managed"])
            plain_rates.append(got["plain"])
            ratios.append(got["managed"] / got["plain"])
        m, p = statistics.median(managed), statistics.median(plain_rates)
        ratio = statistics.median(ratios)
        what = f"median of {args.rounds} × {args.seconds:.0f} s, -r {args.rate} -R {clients}"
        rows.append(row(f"DORA exchanges/s through ntari-dhcp's kea-dhcp4 ({what})", f"{m:.0f}", "", None))
        rows.append(row(f"DORA exchanges/s, plain kea-dhcp4, same config ({what})", f"{p:.0f}", "", None))
        rows.append(row("drops per run (DISCOVER-OFFER + REQUEST-ACK), median managed / plain",
                        f"{statistics.median(drops['managed']):.0f} / {statistics.median(drops['plain']):.0f}",
                        "", None))
        rows.append(f"| managed / plain, median of the {len(ratios)} per-round ratios "
                    f"(range {min(ratios):.3f}–{max(ratios):.3f}) | {ratio:.3f} | ≥ 0.98 | "
                    f"{'ok' if ratio >= 0.98 else 'MISSED (below target)'} |")
        rows.append(row("idle RSS of the node after 10 s Active (kea-dhcp4 excluded)", f"{rss:.1f} MiB",
                        "≤ 8 MiB", rss <= 8))
        rows.append(row(f"idle CPU over {args.cpu_window:.0f} s, node (incl. its probe every 5 s)",
                        f"{cpu:.3f} % of one core", "≤ 0.1 %", cpu <= 0.1))
    finally:
        if plain is not None:
            plain.stop()
        if node is not None:
            node.stop()
        if graph is not None:
            graph.close()
        net.remove()

    size = args.binary.stat().st_size / MIB
    stripped = not has_symtab(args.binary)
    rows.append(row(f"binary size ({args.binary.name}, {'stripped' if stripped else 'NOT stripped'})",
                    f"{size:.1f} MiB", "≤ 8 MiB", size <= 8 if stripped else None))
    print("\n| figure | measured | target (DESIGN.md §7) | verdict |\n|---|---|---|---|")
    print("\n".join(rows))
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

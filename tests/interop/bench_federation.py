#!/usr/bin/env python3
"""Benchmark ntari-federation against the DESIGN.md §7 targets (not a pytest test).

"Federation bridge, added latency over direct DDS through the tunnel: p99
≤ 1 ms; 10 partner cooperatives on one hub."

Cooperatives in network namespaces (tests/interop/federation_net.py: each
its own loopback DDS domain, real ntari-vpn with boringtun, real
ntari-federation, agreements signed with the real ntari-admin). The
publisher and subscriber are Python cyclonedds (the interop venv), run
inside the namespaces with ``ip netns exec`` by this same script in
``--agent`` mode; the publisher poses as a ROS node (ros_discovery_info,
``typehash=`` user data, std_msgs/msg/String on ``rt/bench/…``).

* Latency: one sample every --interval ms for --seconds s, 1 KiB, the
  sender's ``time.monotonic_ns()`` in the payload (CLOCK_MONOTONIC is one
  clock for every namespace), the receiver's delta per sample; after 1 s of
  warm-up samples that are not counted. Two paths between the same two
  cooperatives, one after the other:
  - direct: publisher in coop_a and subscriber in coop_b on a shared DDS
    domain of their own over the same tunnel, with the bridge's own Cyclone
    configuration (link.rs ``domain_config``: the WireGuard interface only,
    multicast off, the partner's tunnel address as unicast peer);
  - bridged: publisher on coop_a's local domain, subscriber on coop_b's
    local domain, topic /remote/coop_a/bench/lat, through both bridges.
  Added latency = bridged − direct, at p50 and at p99.
* Throughput: the publisher writes 1 KiB samples as fast as its reliable
  keep-last-100 writer takes them for --burst s; written/s at the sender
  and received/s at the remote subscriber, both paths.
* Idle: after --settle s with the link up and no traffic, VmRSS of the
  federation node and of its bridge process (``ntari-federation __bridge``,
  below the node's guard), and their CPU (utime+stime, node + guard +
  bridge) over --cpu-window s, in % of one core.
* Joining: coop_a invites, coop_b joins, coop_a approves, all with the
  real ntari-admin: how long `join` takes, and from `approve` until
  coop_b's bridge imports coop_a's routes (the tunnel had to come up).
* Scale: a hub federated with --partners cooperatives (each agreement its
  own federation domain), all links up within --link-timeout s; the hub
  bridge's idle RSS and CPU, and the latency from the last partner to a
  subscriber in the hub (/remote/<partner>/bench/lat, one bridge pair).

Only what was started here is stopped, by PID; the namespaces go at the
end, also on error. Needs root, /dev/net/tun and wg.

    .venv/bin/python tests/interop/bench_federation.py --bin-dir target/release
"""

from __future__ import annotations

import argparse
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(HERE))

PYTHON = ROOT / ".venv" / "bin" / "python"
TOPIC = "/bench/lat"
STRING_TYPE = "std_msgs/msg/String"
# rosidl's RIHS01 hash of std_msgs/msg/String (Jazzy), as rmw puts it in user data.
STRING_TYPEHASH = "typehash=RIHS01_df668c740482bbd48fb39d76a70dfd4bd59db1288021743503259e948f6b1a18;"
EXPORTS = f"""    topics:
      - name: /bench/*
        type: {STRING_TYPE}"""
TARGET_ADDED_P99_MS = 1.0
TARGET_PARTNERS = 10
MIB = 1024 * 1024


def direct_config(domain: int, interface: str, partner: str) -> str:
    """link.rs ``domain_config``, verbatim but for the domain."""
    return (f'<CycloneDDS xmlns="https://cdds.io/config"><Domain Id="{domain}"><General><Interfaces>'
            f'<NetworkInterface name="{interface}" multicast="false"/></Interfaces><AllowMulticast>false'
            f'</AllowMulticast></General><Discovery><ParticipantIndex>auto</ParticipantIndex>'
            f'<MaxAutoParticipantIndex>4</MaxAutoParticipantIndex><Peers><Peer address="{partner}"/></Peers>'
            f'<SPDPInterval>2s</SPDPInterval><LeaseDuration>20s</LeaseDuration></Discovery></Domain></CycloneDDS>')


# -- the agent: publisher or subscriber inside a namespace ---------------------

def say(**m) -> None:
    print(json.dumps(m), flush=True)


def agent(args) -> int:
    from cyclonedds.core import Policy, Qos, ReadCondition, SampleState, ViewState, InstanceState, WaitSet
    from cyclonedds.util import duration
    from rosgraph import DiscoveryInfoPublisher, Graph, ros_qos, topic_name
    from ros_types import String

    graph = Graph(args.domain)
    qos = ros_qos(100)
    if args.agent == "sub":
        reader = graph.reader(topic_name(args.topic), String, qos)
        ws = WaitSet(graph.participant)
        ws.attach(ReadCondition(reader, SampleState.Any | ViewState.Any | InstanceState.Any))
        say(ready=True)
        deadline = time.monotonic() + args.timeout
        matched = False
        lat_ns, count, first, last, warm = [], 0, 0, 0, 0
        while time.monotonic() < deadline:
            if not matched and reader.get_subscription_matched_status().current_count > 0:
                matched = True
                say(matched=True)
            ws.wait(duration(milliseconds=100))
            samples = reader.take(N=256)
            now = time.monotonic_ns()
            done = False
            for s in samples:
                if not isinstance(getattr(s, "data", None), str):
                    continue
                kind, _, rest = s.data.partition(":")
                if kind == "end":
                    done = True
                    continue
                if kind == "w":
                    warm += 1
                    continue
                count += 1
                first = first or now
                last = now
                lat_ns.append(now - int(rest.split(":", 1)[0]))
            if done:
                break
        say(result=True, count=count, warm=warm, lat_us=[round(x / 1000, 1) for x in lat_ns],
            seconds=(last - first) / 1e9 if count > 1 else 0.0)
        return 0

    writer = graph.writer(topic_name(args.topic), String,
                          qos + Qos(Policy.Userdata(STRING_TYPEHASH.encode())))
    info = DiscoveryInfoPublisher(graph)   # kept: its writer goes with it
    info.add_node("/bench", "bench_pub", writers=[writer])
    say(ready=True)
    if sys.stdin.readline().strip() != "go":
        return 1
    pad = "x" * args.size

    def sample(kind: str, seq: int) -> String:
        head = f"{kind}:{time.monotonic_ns()}:{seq}:"
        return String(data=head + pad[len(head):])

    t_end = time.monotonic() + args.warmup
    seq = 0
    while time.monotonic() < t_end:
        writer.write(sample("w", seq))
        seq += 1
        time.sleep(0.01)
    written = 0
    start = time.monotonic()
    if args.interval > 0:
        step = args.interval / 1000
        nxt = start
        while nxt < start + args.seconds:
            writer.write(sample("m", written))
            written += 1
            nxt += step
            time.sleep(max(0.0, nxt - time.monotonic()))
    else:
        while time.monotonic() < start + args.seconds:
            writer.write(sample("m", written))
            written += 1
    took = time.monotonic() - start
    for _ in range(5):
        time.sleep(0.1)
        writer.write(String(data="end:"))
    say(result=True, written=written, seconds=took)
    time.sleep(2.0)   # let the reliable writer deliver before it goes
    return 0


# -- the orchestrator ----------------------------------------------------------

class Agent:
    def __init__(self, coop, role: str, domain: int, env: dict, topic: str, log: Path, **opts):
        argv = [PYTHON, Path(__file__), "--agent", role, "--domain", str(domain), "--topic", topic]
        for k, v in opts.items():
            argv += [f"--{k}", str(v)]
        self.proc = subprocess.Popen(coop.argv(argv), env=env, text=True, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=open(log, "ab"), start_new_session=True)

    def wait(self, key: str, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r, _, _ = select.select([self.proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
            if not r:
                break
            line = self.proc.stdout.readline()
            if not line:
                break
            m = json.loads(line)
            if key in m:
                return m
        raise RuntimeError(f"agent: no {key!r} within {timeout} s")

    def send(self, line: str) -> None:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def end(self) -> None:
        """Lets it exit on its own first (its participant then leaves the
        graph at once, not after a lease), then kills it."""
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


def measure(pub_coop, sub_coop, pub_domain, sub_domain, pub_env, sub_env, pub_topic, sub_topic, log_dir,
            *, interval: float, seconds: float, warmup: float = 1.0, match_timeout: float = 40.0) -> dict:
    """One publisher → subscriber run; the two results merged."""
    sub = Agent(sub_coop, "sub", sub_domain, sub_env, sub_topic, log_dir / "agent-sub.log",
                timeout=match_timeout + warmup + seconds + 30)
    pub = None
    try:
        sub.wait("ready", 20)
        pub = Agent(pub_coop, "pub", pub_domain, pub_env, pub_topic, log_dir / "agent-pub.log",
                    interval=interval, seconds=seconds, warmup=warmup, size=1024)
        pub.wait("ready", 20)
        sub.wait("matched", match_timeout)
        pub.send("go")
        p = pub.wait("result", warmup + seconds + 60)
        s = sub.wait("result", 60)
        return {"written": p["written"], "pub_seconds": p["seconds"], "count": s["count"],
                "sub_seconds": s["seconds"], "lat_us": s["lat_us"]}
    finally:
        for a in (pub, sub):
            if a is not None:
                a.end()


def descendants(pid: int) -> list:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    found = []
    for child in map(int, out.stdout.split()):
        found += [child, *descendants(child)]
    return found


def cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def node_processes(coop) -> dict:
    """The federation node (``ip netns exec`` execs it, same pid), its guard
    and its bridge (``__bridge`` in cmdline, not the guard)."""
    node = coop.procs["federation"].pid
    below = descendants(node)
    bridge = [p for p in below if b"__bridge" in cmdline(p) and b"__ntari-guard" not in cmdline(p)]
    return {"node": node, "bridge": bridge[0] if bridge else 0, "all": [node, *below]}


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def cpu_ticks(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()
    return int(fields[11]) + int(fields[12])


def idle_figures(coop, window: float) -> dict:
    procs = node_processes(coop)
    if not procs["bridge"]:
        raise RuntimeError(f"{coop.name}: no bridge process below the node {procs['node']}")
    before = {p: cpu_ticks(p) for p in procs["all"]}
    t0 = time.monotonic()
    time.sleep(window)
    dt = time.monotonic() - t0
    hz = os.sysconf("SC_CLK_TCK")
    cpu = {p: (cpu_ticks(p) - before[p]) / hz / dt * 100 for p in procs["all"]}
    return {"node_rss": rss_bytes(procs["node"]), "bridge_rss": rss_bytes(procs["bridge"]),
            "node_cpu": cpu[procs["node"]], "bridge_cpu": cpu[procs["bridge"]], "total_cpu": sum(cpu.values())}


def wait_links(fed, pairs, timeout: float) -> float:
    """Until every (coop, agreement) link sees its partner; seconds taken."""
    t0 = time.monotonic()
    while time.monotonic() < t0 + timeout:
        if all((c.link(a).get("link") or {}).get("partner_seen") for c, a in pairs):
            return time.monotonic() - t0
        time.sleep(0.5)
    down = [f"{c.name}:{a}={c.link(a) or 'absent'}" for c, a in pairs
            if not (c.link(a).get("link") or {}).get("partner_seen")]
    raise RuntimeError(f"links not up after {timeout} s: {down}")


def lat_summary(r: dict) -> tuple:
    from bench_ntp import percentile
    lat = r["lat_us"]
    if not lat:
        raise RuntimeError(f"no samples received: {r}")
    return percentile(lat, 50) / 1000, percentile(lat, 99) / 1000


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin-dir", type=Path, default=ROOT / "target" / "release")
    ap.add_argument("--seconds", type=float, default=10.0, help="latency run length")
    ap.add_argument("--interval", type=float, default=10.0, help="ms between latency samples")
    ap.add_argument("--burst", type=float, default=5.0, help="throughput run length, s")
    ap.add_argument("--settle", type=float, default=5.0, help="s idle with the link up before measuring")
    ap.add_argument("--cpu-window", type=float, default=20.0)
    ap.add_argument("--partners", type=int, default=TARGET_PARTNERS, help="cooperatives on the hub (0: skip)")
    ap.add_argument("--link-timeout", type=float, default=60.0)
    ap.add_argument("--no-join", action="store_true", help="skip the invite/join figures")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    # agent mode (run by the orchestrator inside a namespace)
    ap.add_argument("--agent", choices=("pub", "sub"))
    ap.add_argument("--domain", type=int)
    ap.add_argument("--topic")
    ap.add_argument("--timeout", type=float, default=120.0)
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--size", type=int, default=1024)
    args = ap.parse_args()
    if args.agent:
        return agent(args)

    import netns
    from bench_example import pick_domain_id, row
    from federation_net import Federation

    why = netns.available()
    if why is not None or not os.path.exists("/dev/net/tun") or shutil.which("wg") is None:
        print(f"bench_federation: needs root, ip netns, /dev/net/tun and wg: {why}", file=sys.stderr)
        return 2
    for b in ("ntari-federation", "ntari-vpn", "ntari-admin"):
        if not (args.bin_dir / b).is_file():
            print(f"bench_federation: {args.bin_dir / b} not found (cargo build --release -p {b})", file=sys.stderr)
            return 2
    local = pick_domain_id()
    # federation domains (in the namespaces only): never the local one
    fed_domains = [d for d in range(201, 233) if d != local]
    direct_domain = next(d for d in range(150, 200) if d != local)
    work = Path(tempfile.mkdtemp(prefix="bench-federation-"))
    print(f"bench_federation: binaries {args.bin_dir}, local domain {local}, work {work}", file=sys.stderr)
    rows = []

    # -- two cooperatives -------------------------------------------------------
    fed = Federation(work / "pair", args.bin_dir, local)
    try:
        fed.create()
        a, b = fed.add("coop_a"), fed.add("coop_b")
        fed.agreement("coop_a", "coop_b", domain=fed_domains[0], exports_a=EXPORTS, exports_b=EXPORTS)
        up = wait_links(fed, [(a, "coop-a-coop-b"), (b, "coop-a-coop-b")], args.link_timeout)
        print(f"pair: link up after {up:.1f} s", file=sys.stderr)
        time.sleep(args.settle)
        idle = idle_figures(a, args.cpu_window)
        print(f"pair idle: {idle}", file=sys.stderr)

        direct_env = lambda coop, peer: dict(fed.env, CYCLONEDDS_URI=direct_config(direct_domain, coop.iface,
                                                                                    peer.tunnel_address))
        paths = {
            "direct": dict(pub_domain=direct_domain, sub_domain=direct_domain, pub_env=direct_env(a, b),
                           sub_env=direct_env(b, a), pub_topic=TOPIC, sub_topic=TOPIC),
            "bridged": dict(pub_domain=local, sub_domain=local, pub_env=fed.env, sub_env=fed.env,
                            pub_topic=TOPIC, sub_topic="/remote/coop_a" + TOPIC),
        }
        lat, thr = {}, {}
        for name, p in paths.items():
            r = measure(a, b, **p, log_dir=fed.root, interval=args.interval, seconds=args.seconds)
            lat[name] = (*lat_summary(r), r)
            print(f"{name} latency: p50 {lat[name][0]:.3f} ms, p99 {lat[name][1]:.3f} ms, "
                  f"{r['count']}/{r['written']} received", file=sys.stderr)
        for name, p in paths.items():
            # a topic of its own: the latency run's writer may still be on the graph
            p = dict(p, pub_topic=p["pub_topic"].replace("/lat", "/thr"), sub_topic=p["sub_topic"].replace("/lat", "/thr"))
            r = measure(a, b, **p, log_dir=fed.root, interval=0, seconds=args.burst)
            thr[name] = r
            print(f"{name} throughput: {r['written']} written in {r['pub_seconds']:.1f} s, "
                  f"{r['count']} received", file=sys.stderr)
        stats = a.link("coop-a-coop-b").get("link", {})
        print(f"coop_a link counters: {json.dumps(stats)}", file=sys.stderr)
    except Exception:
        print(fed.logs(), file=sys.stderr)
        raise
    finally:
        fed.remove()

    d50, d99, dr = lat["direct"]
    b50, b99, br = lat["bridged"]
    n = len(br["lat_us"])
    rows.append(row(f"latency coop_a → coop_b, direct DDS over the tunnel, p50 / p99 ({len(dr['lat_us'])} samples "
                    f"of 1 KiB every {args.interval:g} ms)", f"{d50:.3f} / {d99:.3f} ms", "", None))
    rows.append(row(f"latency coop_a → coop_b through both bridges, p50 / p99 ({n} samples, "
                    f"{br['count']}/{br['written']} received)", f"{b50:.3f} / {b99:.3f} ms", "", None))
    rows.append(row("added latency of the bridge, p50", f"{b50 - d50:.3f} ms", "", None))
    rows.append(row("added latency of the bridge, p99", f"{b99 - d99:.3f} ms", f"≤ {TARGET_ADDED_P99_MS:g} ms",
                    b99 - d99 <= TARGET_ADDED_P99_MS))
    for name in ("direct", "bridged"):
        r = thr[name]
        rate_in = r["count"] / (r["sub_seconds"] or r["pub_seconds"] or 1)
        rows.append(row(f"1 KiB samples/s, {name}, reliable keep-last 100 ({args.burst:g} s): written / received",
                        f"{r['written'] / r['pub_seconds']:.0f} / {rate_in:.0f} "
                        f"({r['count']}/{r['written']} received)", "", None))
    rows.append(row(f"idle RSS after {args.settle:g} s link up, node / bridge (1 agreement)",
                    f"{idle['node_rss'] / MIB:.1f} / {idle['bridge_rss'] / MIB:.1f} MiB", "", None))
    rows.append(row(f"idle CPU over {args.cpu_window:g} s, node / bridge / node+guard+bridge (1 agreement)",
                    f"{idle['node_cpu']:.2f} / {idle['bridge_cpu']:.2f} / {idle['total_cpu']:.2f} % of a core",
                    "", None))

    # -- joining by invite --------------------------------------------------------
    if not args.no_join:
        fed = Federation(work / "join", args.bin_dir, local)
        try:
            fed.create()
            a, b = fed.add("coop_a"), fed.add("coop_b")
            for c in (a, b):
                deadline = time.monotonic() + 30
                while c.run(["wg", "show", c.iface, "public-key"], check=False).returncode != 0 \
                        or not c.bridge_state():
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"{c.name}: vpn or bridge not up")
                    time.sleep(0.2)
            hub = lambda c: ["--config", c.dir / "federation.toml", "--state-dir", c.fed_state,
                             "--run-dir", c.fed_run]
            admin = lambda c, *argv: c.run([fed.bin / "ntari-admin", "federation", *argv, *hub(c)], timeout=60)
            t0 = time.monotonic()
            code = admin(a, "invite", "--coop", "coop_b", "--trust", "observer", "--address", a.address,
                         "--no-qr", "--domain", str(fed_domains[0])).stdout.strip().splitlines()[-1]
            invite_s = time.monotonic() - t0
            deadline = time.monotonic() + 10
            while not (a.bridge_state().get("join") or {}).get("listening"):
                if time.monotonic() > deadline:
                    raise RuntimeError("the join endpoint did not open")
                time.sleep(0.05)
            t0 = time.monotonic()
            admin(b, "join", code)
            join_s = time.monotonic() - t0
            t0 = time.monotonic()
            admin(a, "approve", "coop-a-coop-b")
            approve_s = time.monotonic() - t0
            deadline = t0 + args.link_timeout
            while (b.link("coop-a-coop-b").get("link") or {}).get("routes_in", 0) == 0:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"coop_b imports nothing: {b.link('coop-a-coop-b')}")
                time.sleep(0.1)
            flowing_s = time.monotonic() - t0
            print(f"join: invite {invite_s:.2f} s, join {join_s:.2f} s, approve {approve_s:.2f} s, "
                  f"approve → imports {flowing_s:.1f} s", file=sys.stderr)
        except Exception:
            print(fed.logs(), file=sys.stderr)
            raise
        finally:
            fed.remove()
        rows.append(row("join by invite: `ntari-admin federation invite` (until the bridge's endpoint is open) / "
                        "`join` / `approve`, wall time",
                        f"{invite_s * 1000:.0f} / {join_s * 1000:.0f} / {approve_s * 1000:.0f} ms", "", None))
        rows.append(row("join by invite: from `approve` until the joiner's bridge imports the inviter's routes",
                        f"{flowing_s:.1f} s", "", None))

    # -- a hub and its partners -------------------------------------------------
    if args.partners > 0:
        n = args.partners
        fed = Federation(work / "hub", args.bin_dir, local)
        try:
            fed.create()
            t0 = time.monotonic()
            hub = fed.add("hub")
            partners = [fed.add(f"coop_{i}") for i in range(1, n + 1)]
            pairs = []
            for i, c in enumerate(partners):
                ident = f"hub-{c.name}".replace("_", "-")
                fed.agreement("hub", c.name, domain=fed_domains[1 + i], exports_b=EXPORTS)
                pairs += [(hub, ident), (c, ident)]
            up = wait_links(fed, pairs, args.link_timeout)
            setup = time.monotonic() - t0
            print(f"hub: {n} links up after {up:.1f} s ({setup:.1f} s with set-up)", file=sys.stderr)
            time.sleep(args.settle)
            hub_idle = idle_figures(hub, args.cpu_window)
            print(f"hub idle: {hub_idle}", file=sys.stderr)
            last = partners[-1]
            r = measure(last, hub, local, local, fed.env, fed.env, TOPIC, f"/remote/{last.name}{TOPIC}",
                        fed.root, interval=args.interval, seconds=args.seconds)
            h50, h99 = lat_summary(r)
            print(f"hub latency: p50 {h50:.3f} ms, p99 {h99:.3f} ms, {r['count']}/{r['written']}", file=sys.stderr)
        except Exception:
            print(fed.logs(), file=sys.stderr)
            raise
        finally:
            fed.remove()
        rows.append(row(f"hub with {n} partner cooperatives: set-up until every link is up (last node "
                        f"started → all up: {up:.1f} s)", f"{setup:.1f} s", f"{TARGET_PARTNERS} partners",
                        n >= TARGET_PARTNERS))
        rows.append(row(f"hub with {n} partners: idle RSS, node / bridge",
                        f"{hub_idle['node_rss'] / MIB:.1f} / {hub_idle['bridge_rss'] / MIB:.1f} MiB", "", None))
        rows.append(row(f"hub with {n} partners: idle CPU over {args.cpu_window:g} s, node / bridge / "
                        f"node+guard+bridge", f"{hub_idle['node_cpu']:.2f} / {hub_idle['bridge_cpu']:.2f} / "
                        f"{hub_idle['total_cpu']:.2f} % of a core", "", None))
        rows.append(row(f"hub with {n} partners: latency {last.name} → hub through both bridges, p50 / p99 "
                        f"({len(r['lat_us'])} samples, {r['count']}/{r['written']} received)",
                        f"{h50:.3f} / {h99:.3f} ms", "", None))
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    print("\n| figure | measured | target (DESIGN.md §7) | verdict |\n|---|---|---|---|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())

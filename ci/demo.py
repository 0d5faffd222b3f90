#!/usr/bin/env python3
"""The README demo: drive a running NTARI node the way an operator would with
the ros2 CLI. An independent DDS client (Python cyclonedds, tests/interop's
rosgraph) stands in for `ros2`, which cannot run here; each step prints the
ros2 command it stands for and what that command would show.

    demo.py <node fqn> <health topic> [<status topic>] [--dns-port PORT]
            [--dhcp-netns NS --dhcp-iface IFACE]
            [--vpn-peer-netns NS]
    demo.py --together DNS_PORT NS IFACE
    demo.py --federation PARTNER SERVICE
    (ROS_DOMAIN_ID, CYCLONEDDS_URI from env)

With --dns-port (ntari-dns, examples/dns.toml), the active node is also
asked names with dig, and a DHCP lease is published on /ntari/dhcp/leases
the way ntari-dhcp does, to show the client's name resolving. With
--dhcp-netns (ntari-dhcp, examples/dhcp.toml), a client in that namespace
gets a lease and the lease message is shown. With --vpn-peer-netns
(ntari-vpn, examples/vpn.toml, this process in the hub's namespace), the
wireguard-go peer "riverside-coop" waiting in that namespace is given the
hub's public key from status; pings cross the tunnel both ways and `wg
show` and /ntari/vpn/peers show the handshake. --together: ntari-dhcp and
ntari-dns run side by side; a client's lease makes its name resolve.
--federation PARTNER SERVICE (ci/demo-federation.sh, this process in the
other cooperative's namespace, on its own loopback DDS): the partner's
/remote/PARTNER/ntari/SERVICE/health arriving through ntari-federation,
and the proxy nodes under /remote/PARTNER/.
"""

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "interop"))

from rosgraph import Graph, ros_qos  # noqa: E402
from ros_types import Bool, String  # noqa: E402
import json  # noqa: E402


def say(command: str) -> None:
    print(f"\n$ {command}", flush=True)


def dig(port: int, name: str) -> str:
    out = subprocess.run(["dig", "+short", "+time=1", "+tries=1", "-p", str(port), "@127.0.0.1", name],
                         capture_output=True, text=True, timeout=10)
    return out.stdout.strip()


def dns_demo(graph: Graph, port: int) -> bool:
    """Static and wildcard names, then a DHCP client's name from a lease."""
    for name in ["hub.coop.lan", "anything.apps.coop.lan"]:
        say(f"dig +short -p {port} @127.0.0.1 {name}")
        print(dig(port, name) or "(no answer)")
    expiry = int(time.time()) + 3600
    lease = {"ip": "127.0.0.23", "mac": "52:54:00:12:34:56", "hostname": "laptop", "expiry": expiry}
    message = {"version": 1, "snapshot": False, "events": [dict(lease, event="granted")], "leases": [lease]}
    say("ros2 topic pub --once --qos-durability transient_local --qos-depth 1 /ntari/dhcp/leases "
        f"std_msgs/msg/String \"data: '{json.dumps(message)}'\"   # what ntari-dhcp publishes")
    writer = graph.publisher("/ntari/dhcp/leases", String, ros_qos(1, transient_local=True))
    writer.write(String(data=json.dumps(message)))
    say(f"dig +short -p {port} @127.0.0.1 laptop.coop.lan")
    deadline = time.monotonic() + 5.0
    answer = ""
    while time.monotonic() < deadline and not answer:
        answer = dig(port, "laptop.coop.lan")
        time.sleep(0.1)
    print(answer or "(no answer)")
    del writer
    return answer == "127.0.0.23"


def udhcpc(ns: str, iface: str, hostname: str) -> str:
    say(f"ip netns exec {ns} udhcpc -i {iface} -n -q -x hostname:{hostname} -s /bin/true")
    out = subprocess.run(["ip", "netns", "exec", ns, "udhcpc", "-i", iface, "-n", "-q", "-t", "5", "-T", "1",
                          "-x", f"hostname:{hostname}", "-s", "/bin/true"],
                         capture_output=True, text=True, timeout=30)
    print((out.stdout + out.stderr).strip())
    got = re.search(r"lease of (\S+) obtained", out.stdout + out.stderr)
    return got.group(1) if got else ""


def dhcp_demo(graph: Graph, ns: str, iface: str) -> bool:
    """A client gets a lease; the lease message shows it."""
    leases = graph.subscribe("/ntari/dhcp/leases", String, ros_qos(1, transient_local=True))
    leases.wait_for(lambda s: json.loads(s.data).get("snapshot"), timeout=10.0, what="the lease snapshot")
    ip = udhcpc(ns, iface, "laptop")
    say("ros2 topic echo --once --qos-durability transient_local /ntari/dhcp/leases")
    sample = leases.wait_for(lambda s: any(e["event"] == "granted" for e in json.loads(s.data)["events"]),
                             timeout=10.0, what="a granted event")
    print(json.dumps(json.loads(sample.data), indent=2))
    return bool(ip)


def run(argv, ns: str = None) -> subprocess.CompletedProcess:
    """Shows and runs a command (in namespace ``ns``); prints its output."""
    full = ["ip", "netns", "exec", ns, *argv] if ns else argv
    say(" ".join(full))
    out = subprocess.run(full, capture_output=True, text=True, timeout=30)
    print((out.stdout + out.stderr).rstrip())
    return out


def vpn_demo(graph: Graph, hub_status: dict, peer_ns: str) -> bool:
    """The riverside peer learns the hub's key; traffic crosses the tunnel."""
    hub_key = hub_status["detail"]["public_key"]
    peers = graph.subscribe("/ntari/vpn/peers", String, ros_qos(1, transient_local=True))
    run(["wg", "set", "wg-river", "peer", hub_key, "endpoint", "192.0.2.1:51820",
         "allowed-ips", "10.77.0.1/32", "persistent-keepalive", "25"], peer_ns)
    there = run(["ping", "-c", "3", "-i", "0.3", "-W", "2", "10.77.0.1"], peer_ns).returncode == 0
    back = run(["ping", "-c", "3", "-i", "0.3", "-W", "2", "10.77.0.2"]).returncode == 0
    run(["wg", "show", "wg-coop"])
    say("ros2 topic echo --once --qos-durability transient_local /ntari/vpn/peers")
    sample = peers.wait_for(lambda s: any(p["latest_handshake"] for p in json.loads(s.data)["peers"]),
                            timeout=15.0, what="a peer table with the handshake")
    print(json.dumps(json.loads(sample.data), indent=2))
    return there and back


def identity_demo(state: str, run_dir: str) -> bool:
    """A member of COOP.LAN: ntari-admin adds her, she logs in with kinit
    and reads the directory over StartTLS."""
    admin = ["target/debug/ntari-admin", "identity", "--config", "examples/identity.toml",
             "--state-dir", state, "--run-dir", run_dir]
    password = "Demo-password-42"
    say(f"echo '{password}' | ntari-admin identity user add alice --name 'Alice Example' --password-stdin")
    out = subprocess.run(admin + ["user", "add", "alice", "--name", "Alice Example", "--password-stdin"],
                         input=password + "\n", capture_output=True, text=True, timeout=30)
    print((out.stdout + out.stderr).rstrip())
    env = dict(os.environ, KRB5_CONFIG=f"{run_dir}/krb5.conf", KRB5CCNAME=f"FILE:{run_dir}/demo-ccache")
    say(f"echo '{password}' | KRB5_CONFIG={run_dir}/krb5.conf kinit alice")
    kinit = subprocess.run(["kinit", "alice"], input=password + "\n", capture_output=True, text=True, env=env,
                           timeout=30)
    print((kinit.stdout + kinit.stderr).rstrip())
    say("klist")
    print(subprocess.run(["klist"], capture_output=True, text=True, env=env, timeout=10).stdout.rstrip())
    say(f"LDAPTLS_CACERT={state}/tls/cert.pem ldapsearch -ZZ -x -H ldap://127.0.0.1:13890 "
        "-D uid=alice,ou=people,dc=coop,dc=lan -w … -b dc=coop,dc=lan '(uid=alice)' cn uidNumber krbPrincipalKey")
    search = subprocess.run(["ldapsearch", "-LLL", "-ZZ", "-x", "-H", "ldap://127.0.0.1:13890",
                             "-D", "uid=alice,ou=people,dc=coop,dc=lan", "-w", password, "-b", "dc=coop,dc=lan",
                             "(uid=alice)", "cn", "uidNumber", "krbPrincipalKey"],
                            capture_output=True, text=True, timeout=30,
                            env=dict(os.environ, LDAPTLS_CACERT=f"{state}/tls/cert.pem"))
    print((search.stdout + search.stderr).rstrip())
    print("(no krbPrincipalKey: nobody reads keys but the KDC, not even their owner)")
    return out.returncode == 0 and kinit.returncode == 0 and "cn: Alice Example" in search.stdout


def files_demo(state: str, run_dir: str) -> bool:
    """A member writes to her share over SMB; a guest puts a flyer on the
    public share, and a Linux machine reads it back over NFS."""
    member = f"demo{os.getpid()}"
    password = "Demo-password-42"
    admin = ["target/debug/ntari-admin", "files", "--run-dir", run_dir]
    say(f"echo '{password}' | ntari-admin files --run-dir {run_dir} user add {member} --password-stdin")
    out = subprocess.run(admin + ["user", "add", member, "--password-stdin"], input=password + "\n",
                         capture_output=True, text=True, timeout=30)
    print((out.stdout + out.stderr).rstrip())
    try:
        notes = Path(state).parent / "demo-notes.txt"
        notes.write_text("minutes of the general assembly\n")
        member_put = run(["smbclient", "-p", "14450", "-U", f"{member}%{password}", "//127.0.0.1/members",
                          "-c", f"put {notes} notes.txt; ls"])
        flyer = Path(state).parent / "demo-flyer.txt"
        flyer.write_text("Repair café on Saturday, 10:00, at the hub\n")
        guest_put = run(["smbclient", "-p", "14450", "-N", "//127.0.0.1/public", "-c", f"put {flyer} flyer.txt"])
        nfs = run(["nfs-cat", "nfs://127.0.0.1/public/flyer.txt?version=4&nfsport=20490"])
        return (out.returncode == 0 and member_put.returncode == 0 and guest_put.returncode == 0
                and nfs.stdout == flyer.read_text())
    finally:
        subprocess.run(admin + ["user", "remove", member], capture_output=True, timeout=30)


def together(dns_port: int, ns: str, iface: str) -> int:
    """ntari-dhcp hands out a lease; ntari-dns answers the client's name."""
    domain = int(os.environ.get("ROS_DOMAIN_ID", "0"))
    with Graph(domain) as graph:
        for topic in ["/ntari/dhcp/health", "/ntari/dns/health"]:
            say(f"ros2 topic echo --once {topic}")
            graph.subscribe(topic, Bool).wait_for(lambda s: s.data, timeout=20.0, what=f"{topic} true")
            print("data: true\n---")
        ip = udhcpc(ns, iface, "laptop")
        say(f"dig +short -p {dns_port} @127.0.0.1 laptop.coop.lan   # the name ntari-dns learnt from the lease")
        deadline = time.monotonic() + 5.0
        answer = ""
        while time.monotonic() < deadline and answer != ip:
            answer = dig(dns_port, "laptop.coop.lan")
            time.sleep(0.1)
        print(answer or "(no answer)")
        return 0 if ip and answer == ip else 1


def federation(partner: str, service: str) -> int:
    """The partner cooperative's health and nodes, seen on this one's graph."""
    domain = int(os.environ.get("ROS_DOMAIN_ID", "0"))
    remote = f"/remote/{partner}"
    topic = f"{remote}/ntari/{service}/health"
    proxy = f"{remote}/ntari/ntari_{service}_node"
    with Graph(domain) as graph:
        local = graph.subscribe("/ntari/federation/health", Bool)
        health = graph.subscribe(topic, Bool)
        status = graph.subscribe("/ntari/federation/status", String, ros_qos(1, transient_local=True))
        say("ros2 topic echo --once /ntari/federation/health   # this cooperative's bridge")
        local.wait_for(lambda s: s.data, timeout=30.0, what="/ntari/federation/health true")
        print("data: true\n---")
        say(f"ros2 topic echo {topic}   # {partner}'s ntari-ntp, through the tunnel (3 samples)")
        started = time.monotonic()
        try:
            for _ in range(3):
                sample = health.wait_for(timeout=60.0, what=f"a sample on {topic}")
                print(f"data: {str(sample.data).lower()}\n---", flush=True)
        except TimeoutError as e:
            print(f"demo: {e}", file=sys.stderr)
            return 1
        print(f"(3 samples within {time.monotonic() - started:.1f} s of the agreement's installation)")
        say(f"ros2 node list   # {partner}'s nodes are proxies under {remote}/")
        if not graph.wait_for_node(proxy, timeout=20.0):
            print(f"demo: {proxy} did not appear", file=sys.stderr)
            return 1
        for n in sorted(graph.nodes(), key=lambda n: n.fqn):
            print(n.fqn)
        say(f"ros2 node info {proxy}")
        info = graph.node(proxy)
        print(f"{proxy}\n  Publishers:")
        for t in info.publishers:
            print(f"    {t}")
        say("ros2 topic echo --once /ntari/federation/status   # signed JSON; the agreement's part")
        try:
            sample = status.wait_for(
                lambda s: any((a.get("link") or {}).get("routes_in") for a in
                              json.loads(s.data)["payload"]["detail"].get("agreements", [])),
                timeout=20.0, what="a status with the link's routes")
        except TimeoutError as e:
            print(f"demo: {e}", file=sys.stderr)
            return 1
        for a in json.loads(sample.data)["payload"]["detail"]["agreements"]:
            print(json.dumps(a, indent=2))
    return 0


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--together":
        return together(int(sys.argv[2]), sys.argv[3], sys.argv[4])
    if len(sys.argv) > 1 and sys.argv[1] == "--federation":
        return federation(sys.argv[2], sys.argv[3])
    parser = argparse.ArgumentParser()
    parser.add_argument("node")
    parser.add_argument("health_topic")
    parser.add_argument("status_topic", nargs="?")
    parser.add_argument("--dns-port", type=int)
    parser.add_argument("--dhcp-netns")
    parser.add_argument("--dhcp-iface")
    parser.add_argument("--vpn-peer-netns")
    parser.add_argument("--identity-dirs", nargs=2, metavar=("STATE", "RUN"))
    parser.add_argument("--files-dirs", nargs=2, metavar=("STATE", "RUN"))
    args = parser.parse_args()
    node, health_topic, status_topic = args.node, args.health_topic, args.status_topic
    domain = int(os.environ.get("ROS_DOMAIN_ID", "0"))
    with Graph(domain) as graph:
        health = graph.subscribe(health_topic, Bool)
        status = graph.subscribe(status_topic, String) if status_topic else None
        lifecycle = graph.lifecycle_client(node)
        if not graph.wait_for_node(node, timeout=15.0) or not lifecycle.wait_ready(timeout=15.0):
            print(f"demo: {node} did not appear on domain {domain}", file=sys.stderr)
            return 1

        say("ros2 node list")
        for n in sorted(graph.nodes(), key=lambda n: n.fqn):
            print(n.fqn)

        say(f"ros2 node info {node}")
        info = graph.node(node)
        print(f"{node}\n  Publishers:")
        for t in info.publishers:
            print(f"    {t}")
        print("  Service Servers:")
        for s in info.service_servers:
            print(f"    {s}")

        def echo_health(expect: bool) -> None:
            say(f"ros2 topic echo --once {health_topic}")
            sample = health.wait_for(lambda s: s.data == expect, timeout=5.0, what=f"health={expect}")
            print(f"data: {str(sample.data).lower()}\n---")

        def lifecycle_get() -> None:
            say(f"ros2 lifecycle get {node}")
            state = lifecycle.get_state()
            print(f"{state.label} [{state.id}]")

        lifecycle_get()
        echo_health(False)
        for step in ["configure", "activate"]:
            say(f"ros2 lifecycle set {node} {step}")
            ok = lifecycle.change_state(label=step)
            print("Transitioning successful" if ok else "Transitioning failed")
            if not ok:
                return 1
        lifecycle_get()
        echo_health(True)
        if status:
            say(f"ros2 topic echo --once {status_topic}   # signed JSON; payload shown")
            sample = status.wait_for(lambda s: json.loads(s.data)["payload"]["healthy"], timeout=15.0,
                                     what="a healthy status")
            envelope = json.loads(sample.data)
            print(f"issuer: {envelope['issuer']}\nsignature: {envelope['signature'][:32]}…")
            print(json.dumps(envelope["payload"], indent=2))
            hub_status = envelope["payload"]

        if args.dns_port and not dns_demo(graph, args.dns_port):
            print("demo: laptop.coop.lan did not resolve", file=sys.stderr)
            return 1
        if args.dhcp_netns and not dhcp_demo(graph, args.dhcp_netns, args.dhcp_iface):
            print("demo: the client got no lease", file=sys.stderr)
            return 1
        if args.vpn_peer_netns and not vpn_demo(graph, hub_status, args.vpn_peer_netns):
            print("demo: no traffic crossed the tunnel", file=sys.stderr)
            return 1

        if args.identity_dirs and not identity_demo(*args.identity_dirs):
            print("demo: the member could not log in or read the directory", file=sys.stderr)
            return 1

        if args.files_dirs and not files_demo(*args.files_dirs):
            print("demo: the share could not be written over SMB or read over NFS", file=sys.stderr)
            return 1

        say(f"ros2 lifecycle list {node}")
        for t in lifecycle.available_transitions():
            print(f"- {t.transition.label} [{t.transition.id}]\n\tStart: {t.start_state.label}\n\tGoal: {t.goal_state.label}")

        say(f"ros2 lifecycle set {node} deactivate")
        print("Transitioning successful" if lifecycle.change_state(label="deactivate") else "Transitioning failed")
        echo_health(False)
    return 0


if __name__ == "__main__":
    sys.exit(main())

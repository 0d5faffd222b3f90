"""DDS traffic of a test stays on the host.

Our nodes and Python cyclonedds use tests/cyclonedds-loopback.xml; rclpy
(rmw_fastrtps_cpp) runs with ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST, which
removes Fast DDS's multicast locators and sends discovery to 127.0.0.1 only
(initial peers) but does *not* restrict its UDP transport to the loopback
interface: it binds its receive sockets to 0.0.0.0 and opens one send
socket per interface (e.g. one bound to eth0's address), and announces the
unicast locators of every interface (see README.md). So for the rclpy
process the check is what happens on the wire: a packet socket sees every
RTPS packet of the test's domain on every interface while a node, rclpy and
Python cyclonedds discover each other and exchange data; none may be on
an interface other than lo, none may go to a multicast address.
"""

import ipaddress
import os
import socket
import struct
import subprocess
import threading
import time
from collections import Counter

import pytest

from conftest import LOOPBACK_URI, interop, udp_sockets_of
from contract import BY_KEY

ETH_P_ALL = 0x0003


class Sniffer:
    """Every RTPS packet on every interface, as (interface, destination,
    destination port, sender's GUID prefix); the test's participants are
    those whose packets use the domain's DDSI ports (7400 + 250 * domain ...
    + 249) on lo, and then *any* packet of theirs counts, whatever its port
    (Fast DDS also listens on 7000 + n, outside the domain's range)."""

    def __init__(self, domain_id: int):
        self.low = 7400 + 250 * domain_id
        self.high = self.low + 249
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        self.sock.settimeout(0.1)
        self.packets = Counter()           # (ifname, dst, dport, guid prefix hex) -> count
        self.in_range = set()              # GUID prefixes seen using the domain's ports
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                data, addr = self.sock.recvfrom(65535)
            except socket.timeout:
                continue
            except OSError:
                return
            self._inspect(addr[0], data)

    def _inspect(self, ifname, frame):
        if len(frame) < 14:
            return
        ethertype = struct.unpack("!H", frame[12:14])[0]
        ip = frame[14:]
        if ethertype == 0x0800 and len(ip) >= 20 and ip[9] == 17:
            header = (ip[0] & 0x0F) * 4
            dst = socket.inet_ntop(socket.AF_INET, ip[16:20])
        elif ethertype == 0x86DD and len(ip) >= 40 and ip[6] == 17:
            header = 40
            dst = socket.inet_ntop(socket.AF_INET6, ip[24:40])
        else:
            return
        udp = ip[header:]
        if len(udp) < 28 or udp[8:12] != b"RTPS":
            return
        sport, dport = struct.unpack("!HH", udp[:4])
        prefix = udp[16:28].hex()          # RTPS header: magic, version, vendor, GUID prefix
        self.packets[(ifname, dst, dport, prefix)] += 1
        if self.low <= sport <= self.high or self.low <= dport <= self.high:
            self.in_range.add(prefix)

    def ours(self):
        return {k: n for k, n in self.packets.items() if k[3] in self.in_range}

    def stop(self):
        if self._stop.is_set():
            return
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()


@pytest.fixture
def sniffer(domain_id):
    if os.geteuid() != 0:
        pytest.fail("needs root (a packet socket)", pytrace=False)
    s = Sniffer(domain_id)
    try:
        yield s
    finally:
        s.stop()


def host_addresses():
    out = subprocess.run(["ip", "-o", "addr", "show"], capture_output=True, text=True, check=True).stdout
    return {line.split()[3].split("/")[0] for line in out.splitlines() if len(line.split()) > 3}


def test_dds_traffic_of_rclpy_our_node_and_cyclonedds_stays_on_lo(sniffer, ros, cyclone, nodes, domain_id):
    # sniffer first: it sees the discovery of the rclpy context created for `ros`
    c = BY_KEY["example"]
    from ros_types import Bool
    cyc_health = cyclone.subscribe(c.health, Bool)
    health = ros.subscribe(c.health, "std_msgs/msg/Bool")
    running = nodes.start(c)
    # our node: the interop harness's loopback assertions on Cyclone's config trace and its sockets
    ros.wait_node(c, 20)
    health.wait_for(lambda m: m.data is True, 10, "health via rclpy")
    cyc_health.wait_for(lambda s: s.data is True, 10, "health via Python cyclonedds")
    node_sockets = udp_sockets_of(running.proc.pid)
    for addr, _port in node_sockets:
        assert addr in ("127.0.0.1", "0.0.0.0"), node_sockets

    # the rclpy process (Fast DDS and Python cyclonedds): no multicast receive port, and the
    # only specific addresses bound are this host's own
    mine = udp_sockets_of(os.getpid())
    spdp_mc, user_mc = 7400 + 250 * domain_id, 7401 + 250 * domain_id
    assert not [s for s in mine if s[1] in (spdp_mc, user_mc)], f"a multicast port is bound: {mine}"
    local = host_addresses() | {"0.0.0.0", "127.0.0.1", "::"}
    assert all(a in local for a, _ in mine), (mine, local)
    print(f"rclpy/test process UDP sockets: {sorted(mine)}")

    ros.subscribe("/ntari/ros2_test/probe", "std_msgs/msg/Bool")   # one more discovery round
    time.sleep(2.0)   # a window of traffic for the sniffer, not a wait for a condition
    sniffer.stop()
    ours = sniffer.ours()
    on_lo = sum(n for k, n in ours.items() if k[0] == "lo")
    elsewhere = {k: n for k, n in ours.items() if k[0] != "lo"}
    multicast = {k: n for k, n in ours.items() if ipaddress.ip_address(k[1]).is_multicast}
    # our node's, rclpy's and Python cyclonedds' participants at least
    assert len(sniffer.in_range) >= 3, f"the sniffer saw {len(sniffer.in_range)} participants: it is not working"
    assert on_lo > 0, "the sniffer saw no RTPS packet on lo: it is not working"
    assert not elsewhere, f"RTPS packets of domain {domain_id} on other interfaces: {elsewhere}"
    assert not multicast, f"RTPS packets of domain {domain_id} to multicast addresses: {multicast}"
    ports = sorted({k[2] for k in ours})
    print(f"{on_lo} RTPS packets of {len(sniffer.in_range)} participants of domain {domain_id}, all on lo, "
          f"none multicast; destination ports {ports}")


def test_our_node_cyclone_config_is_loopback_only(ros, nodes):
    """The interop harness's own assertion (Cyclone's config trace and sockets)
    for a node that rclpy talks to."""
    c = BY_KEY["example"]
    health = ros.subscribe(c.health, "std_msgs/msg/Bool")
    proc = nodes.launch(interop.find_binary(c.binary), "--autostart", name="example-traced",
                        env={"CYCLONEDDS_URI": LOOPBACK_URI + "," + interop.TRACE_CONFIG_FRAGMENT})
    health.wait_for(lambda m: m.data is True, 20, "health via rclpy")
    interop.assert_loopback_trace(proc.stderr_path.read_text(errors="replace"), udp_sockets_of(proc.pid))

"""A throw-away client network for DHCP tests: a network namespace and a
veth pair, the DHCP server's end in the root namespace, the client's end in
the namespace.

Why: a DHCP server answers broadcasts on a real interface, and the tests
must not touch any network but their own. The server (ntari-dhcp's Kea)
stays in the root namespace, where the node's DDS traffic is on loopback
next to the test's graph client; the clients (udhcpc, dhclient, perfdhcp)
run inside the namespace, so every DHCP packet stays on the veth pair.

Names are unique per use (6 random hex digits): namespace ``ntd-<hex>``,
root end ``ntd<hex>s`` (server), peer ``ntd<hex>c`` (client); interface
names stay within Linux's 15 characters. The server address is
``192.168.<n>.1/24`` with ``<n>`` random in 100..250 and not on any
interface yet (``wide=True``: ``10.<n>.0.1/16``, for benchmarks). :meth:`ClientNet.remove` ends the processes still running in
the namespace (by PID: only what the test started there can be in it),
deletes the root end (which deletes the peer too) and the namespace; it is
idempotent and safe after a partial :meth:`ClientNet.create`. Use it as a
context manager, or call ``remove`` in a ``finally``.

Needs root (ip netns / ip link).
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import List, Optional, Sequence

IP = "/usr/sbin/ip" if Path("/usr/sbin/ip").exists() else "ip"


def _ip(*args: str, check: bool = True, timeout: float = 10.0) -> subprocess.CompletedProcess:
    out = subprocess.run([IP, *args], capture_output=True, text=True, timeout=timeout)
    if check and out.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed ({out.returncode}): {out.stderr.strip()}")
    return out


def _used_prefixes(pattern: str) -> set:
    """Numbers captured by ``pattern`` in the host's IPv4 addresses and routes."""
    text = _ip("-4", "addr", "show", check=False).stdout + _ip("-4", "route", "show", check=False).stdout
    return {int(m) for m in re.findall(pattern, text)}


def available() -> Optional[str]:
    """None if namespaces can be made here, else why not."""
    if os.geteuid() != 0:
        return "needs root (ip netns, veth)"
    try:
        _ip("netns", "list")
    except (OSError, RuntimeError) as e:
        return f"ip netns does not work: {e}"
    return None


class ClientNet:
    """A client namespace and veth pair; see the module docstring."""

    def __init__(self, third_octet: Optional[int] = None, prefix: str = "ntd", wide: bool = False):
        rng = random.SystemRandom()
        tag = "%06x" % rng.randrange(1 << 24)
        self.ns = f"{prefix}-{tag}"
        self.server_if = f"{prefix}{tag}s"
        self.client_if = f"{prefix}{tag}c"
        assert len(self.server_if) <= 15 and len(self.client_if) <= 15
        if wide:
            # 10.<n>.0.0/16 (benchmarks: room for tens of thousands of leases)
            used = _used_prefixes(r"10\.(\d+)\.")
            n = rng.choice([n for n in range(100, 251) if n not in used])
            self.net = f"10.{n}"
            self.prefix_len = 16
            self.subnet = f"{self.net}.0.0/16"
            self.server_ip = f"{self.net}.0.1"
        else:
            if third_octet is None:
                used = _used_prefixes(r"192\.168\.(\d+)\.")
                third_octet = rng.choice([n for n in range(100, 251) if n not in used])
            self.net = f"192.168.{third_octet}"
            self.prefix_len = 24
            self.subnet = f"{self.net}.0/24"
            self.server_ip = f"{self.net}.1"
        self._created = False

    # -- set up / tear down -------------------------------------------------
    def create(self) -> "ClientNet":
        self._created = True   # from here on, remove() has something to do
        _ip("netns", "add", self.ns)
        _ip("link", "add", self.server_if, "type", "veth", "peer", "name", self.client_if)
        _ip("link", "set", self.client_if, "netns", self.ns)
        _ip("addr", "add", f"{self.server_ip}/{self.prefix_len}", "dev", self.server_if)
        _ip("link", "set", self.server_if, "up")
        self.ip("link", "set", "lo", "up")
        self.ip("link", "set", self.client_if, "up")
        # The veth needs a moment to have carrier on both ends.
        deadline = time.monotonic() + 5
        while "LOWER_UP" not in _ip("link", "show", self.server_if).stdout:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.server_if} has no carrier")
            time.sleep(0.02)
        return self

    def pids(self) -> List[int]:
        """PIDs of the processes running in the namespace now."""
        out = _ip("netns", "pids", self.ns, check=False)
        return [int(p) for p in out.stdout.split() if p.isdigit()]

    def remove(self) -> None:
        if not self._created:
            return
        # What runs in the namespace was started there by the test.
        for sig, wait in ((signal.SIGTERM, 2.0), (signal.SIGKILL, 2.0)):
            pids = self.pids()
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + wait
            while self.pids() and time.monotonic() < deadline:
                time.sleep(0.05)
        _ip("link", "del", self.server_if, check=False)   # takes the peer with it
        _ip("netns", "del", self.ns, check=False)
        self._created = False

    def __enter__(self) -> "ClientNet":
        try:
            return self.create()
        except BaseException:
            self.remove()
            raise

    def __exit__(self, *exc) -> None:
        self.remove()

    # -- running things in the namespace -----------------------------------
    def argv(self, argv: Sequence) -> List[str]:
        return [IP, "netns", "exec", self.ns, *[str(a) for a in argv]]

    def run(self, argv: Sequence, timeout: float = 30.0, check: bool = False, **kw) -> subprocess.CompletedProcess:
        """Run ``argv`` in the namespace; output captured as text."""
        out = subprocess.run(self.argv(argv), capture_output=True, text=True, timeout=timeout, **kw)
        if check and out.returncode != 0:
            raise RuntimeError(f"{' '.join(map(str, argv))} in {self.ns} failed ({out.returncode}):\n"
                               f"{out.stdout}\n{out.stderr}")
        return out

    def popen(self, argv: Sequence, **kw) -> subprocess.Popen:
        return subprocess.Popen(self.argv(argv), **kw)

    def ip(self, *args: str) -> subprocess.CompletedProcess:
        return self.run([IP, *args], check=True, timeout=10)

    def set_mac(self, mac: str) -> None:
        """Give the client interface a fixed hardware address."""
        self.ip("link", "set", self.client_if, "address", mac)

    def mac(self) -> str:
        out = self.ip("link", "show", self.client_if).stdout
        return re.search(r"link/ether ([0-9a-f:]{17})", out).group(1)

    def client_addresses(self) -> List[str]:
        """IPv4 addresses (with prefix) on the client interface."""
        out = self.ip("-4", "-o", "addr", "show", "dev", self.client_if).stdout
        return re.findall(r"inet (\S+)", out)

    def flush(self) -> None:
        self.ip("addr", "flush", "dev", self.client_if)

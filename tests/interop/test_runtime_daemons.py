"""The runtime's shapes of service, with examples/ntari_shell_node.rs (daemons
that are shell scripts): several named daemons, optional ones, none at all
with set-up/tear-down, and daemons whose helpers leave the process group or
change their user. Each must never outlive the node.

Processes are found by a marker in their command line (a `sleep` of a
duration unique to the test), so only what this test started is counted.
"""

from __future__ import annotations

import json
import os
import random
import signal
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from conftest import find_binary
from helpers import parent_of, pid_alive, wait_health, wait_status, wait_until
from ros_types import S, T, Bool, String

NODE = "/ntari/ntari_shell_node"
READY = 15.0


def marked(marker: str) -> list[int]:
    """Live processes whose command line contains ``marker``."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker in cmd and state != "Z" and "pytest" not in cmd:
            out.append(int(entry))
    return out


@pytest.fixture
def shell_node(launch, graph, tmp_path):
    default_binary = find_binary("examples/ntari_shell_node")
    marker = "%d.%04d" % (random.randrange(3000, 9000), random.randrange(10000))

    def start(config: str, *args, binary=None):
        d = tmp_path / "node"
        (d / "state").mkdir(parents=True, exist_ok=True)
        cfg = d / "shell.toml"
        cfg.write_text(config.replace("MARK", marker))
        node = SimpleNamespace(health=graph.subscribe("/ntari/shell/health", Bool),
                               status=graph.subscribe("/ntari/shell/status", String),
                               lc=graph.lifecycle_client(NODE), dir=d, config=cfg, marker=marker)
        node.argv = [binary or default_binary, "--config", cfg, "--state-dir", d / "state", "--run-dir", d / "run",
                     "--key", d / "node.key", "--node-config", d / "absent-ntari.toml",
                     "--metrics-port", "0", "--probe-interval", "0.3", "--autostart", *args]
        node.proc = launch(*node.argv, name="ntari-shell")
        assert node.lc.wait_ready(READY)
        return node

    return start


def daemons(node, predicate=lambda d: True, what="daemons in status"):
    env = wait_status(node, lambda p: p["daemons"] and predicate({d["name"]: d for d in p["daemons"]}), 10, what)
    return {d["name"]: d for d in env["payload"]["daemons"]}


TWO = """
[[daemons]]
name = "first"
script = "exec sleep MARK1"
[[daemons]]
name = "second"
script = "exec sleep MARK2"
"""


def test_several_daemons_each_supervised_on_its_own(shell_node):
    node = shell_node(TWO)
    wait_health(node, True, READY)
    ds = daemons(node, lambda d: d["first"]["running"] and d["second"]["running"])
    first, second = ds["first"]["pid"], ds["second"]["pid"]
    node.health.skip()
    os.kill(second, signal.SIGKILL)
    wait_health(node, False, 1.0, "health=false at once when one required daemon dies")
    wait_health(node, True, 10, "health again after its restart")
    ds = daemons(node, lambda d: d["second"]["running"] and d["second"]["pid"] != second, "a new second")
    assert ds["first"]["pid"] == first and ds["first"]["restarts"] == 0, "the other daemon is untouched"
    assert ds["second"]["restarts"] == 1 and "SIGKILL" in ds["second"]["last_exit"]
    env = wait_status(node, lambda p: True, 5, "status")
    assert env["payload"]["daemon"]["name"] == "first", "`daemon` is the first, for one-daemon tools"


def test_an_optional_daemon_does_not_make_the_service_unhealthy(shell_node):
    node = shell_node(TWO + 'required = false\n')   # applies to "second"
    wait_health(node, True, READY)
    ds = daemons(node, lambda d: d["second"]["running"])
    assert ds["second"]["required"] is False
    node.health.skip()
    os.kill(ds["second"]["pid"], signal.SIGKILL)
    assert all(m.data is True for m in node.health.collect(1.5)), "health must stay true"
    daemons(node, lambda d: d["second"]["running"] and d["second"]["restarts"] == 1, "the optional one restarted")


def test_a_crash_loop_names_the_daemon(shell_node):
    node = shell_node("""
[[daemons]]
name = "steady"
script = "exec sleep MARK1"
[[daemons]]
name = "flaky"
script = "sleep 0.3; echo flaky gives up; exit 3"
""")
    env = wait_status(node, lambda p: p["lifecycle_state"] == "unconfigured" and p["last_error"], 40,
                      "the crash loop to end in Unconfigured")
    reason = env["payload"]["last_error"]
    assert reason.startswith("flaky exited 5 times"), reason
    assert "exit status 3: flaky gives up" in reason, reason
    assert not marked(node.marker), "nothing of the daemons is left after ErrorProcessing"


ESCAPING = """
[[daemons]]
name = "forker"
# A helper in a session (and process group) of its own, as Samba's
# samba-dcerpcd leaves smbd's, and one that changes its user, as dnsmasq does.
script = "setsid sleep MARK1 & setpriv --reuid=nobody --regid=nogroup --clear-groups sleep MARK2 & exec sleep MARK3"
"""


def escaping_node(shell_node):
    """A healthy node running ESCAPING, its daemon and both helpers up."""
    node = shell_node(ESCAPING)
    wait_health(node, True, READY)
    wait_until(lambda: len(marked(node.marker)) >= 3, 5, "daemon and both helpers")
    return node


def test_node_sigkill_leaves_no_daemon_helper_or_guard(shell_node):
    node = escaping_node(shell_node)
    procs = marked(node.marker)
    guard = parent_of(daemons(node, lambda d: d["forker"]["running"])["forker"]["pid"])
    assert "__ntari-guard" in Path(f"/proc/{guard}/cmdline").read_bytes().decode()
    node.proc.send_signal(signal.SIGKILL)
    killed = time.monotonic()
    wait_until(lambda: not marked(node.marker) and not pid_alive(guard), 1.0,
               f"daemon, helpers {procs} and guard {guard} gone within 1 s of the node's SIGKILL")
    print(f"node SIGKILL -> all gone after {(time.monotonic() - killed) * 1000:.0f} ms")


def test_a_daemon_that_exits_takes_its_escaped_helpers_along(shell_node):
    node = escaping_node(shell_node)
    before = set(marked(node.marker))
    main = daemons(node, lambda d: d["forker"]["running"])["forker"]["pid"]
    os.kill(main, signal.SIGKILL)
    wait_until(lambda: not (set(marked(node.marker)) & before), 2.0, "the old helpers stopped with their daemon")
    daemons(node, lambda d: d["forker"]["running"] and d["forker"]["restarts"] == 1, "restarted")


def test_deactivate_stops_escaped_helpers_too(shell_node):
    node = escaping_node(shell_node)
    assert node.lc.change_state(T.DEACTIVATE) is True
    assert not marked(node.marker)


def test_a_killed_guard_leaves_the_daemon_to_the_node_which_stops_it(shell_node):
    node = shell_node(TWO)
    wait_health(node, True, READY)
    ds = daemons(node, lambda d: d["first"]["running"])
    daemon = ds["first"]["pid"]
    guard = parent_of(daemon)
    os.kill(guard, signal.SIGKILL)
    # The daemon re-parents to the node (a child subreaper), which stops it.
    wait_until(lambda: not pid_alive(daemon), 3, "the orphaned daemon stopped by the node")
    daemons(node, lambda d: d["first"]["running"] and d["first"]["pid"] != daemon, "a new first daemon")


def test_daemonless_set_up_and_tear_down_also_after_a_crash(shell_node):
    config = """
set_up = "echo up >> \\"$STATE_DIR/log\\"; touch \\"$RUN_DIR/iface\\""
tear_down = "echo down >> \\"$STATE_DIR/log\\"; rm -f \\"$RUN_DIR/iface\\""
probe = "test -e \\"$RUN_DIR/iface\\""
"""
    node = shell_node(config)
    wait_health(node, True, READY)
    env = wait_status(node, lambda p: True, 5, "status")
    assert env["payload"]["daemons"] == [] and env["payload"]["daemon"] is None
    log = node.dir / "state" / "log"
    iface = node.dir / "run" / "iface"
    assert log.read_text() == "up\n" and iface.exists()
    assert node.lc.change_state(T.DEACTIVATE) is True
    assert log.read_text() == "up\ndown\n" and not iface.exists()
    assert node.lc.change_state(T.ACTIVATE) is True
    wait_health(node, True, 5)
    # A crash: no tear-down then; the next start does it before anything.
    node.proc.send_signal(signal.SIGKILL)
    node.proc.wait(5)
    assert log.read_text() == "up\ndown\nup\n" and iface.exists()
    again = shell_node(config)
    wait_health(again, True, READY)
    assert log.read_text() == "up\ndown\nup\ndown\nup\n"
    # The probe is the health: the "interface" removed by hand -> unhealthy.
    iface.unlink()
    wait_health(again, False, 3, "health=false once the probe fails")


def test_daemons_restart_after_the_binary_was_replaced(shell_node, tmp_path):
    """An upgrade replaces the node's binary file while it runs: guards
    then come from the running binary (/proc/self/exe), so a restart works."""
    import shutil
    copy = tmp_path / "ntari_shell_node"
    shutil.copy2(find_binary("examples/ntari_shell_node"), copy)
    node = shell_node(TWO, binary=copy)
    wait_health(node, True, READY)
    first = daemons(node, lambda d: d["first"]["running"])["first"]["pid"]
    copy.unlink()
    os.kill(first, signal.SIGKILL)
    daemons(node, lambda d: d["first"]["running"] and d["first"]["pid"] != first, "first restarted")
    wait_health(node, True, 10)

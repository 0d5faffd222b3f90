"""ntari-ntp against the real chronyd, seen from an independent DDS client.

Two chronyd instances on loopback high ports: an "upstream" one the test
starts itself (local stratum 8, the cooperative's reference) and the one the
node manages, whose only server is the upstream. Every chronyd runs with -x
(the system clock is never touched). The node is driven and watched through
the graph exactly as `ros2 lifecycle` / `ros2 topic echo` would.
"""

import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest

from conftest import find_binary
from helpers import free_port, kill_daemon_and_see_restart, pid_alive, wait_health, wait_status, wait_until
from ros_types import S, T, Bool, DiagnosticArray, DiagnosticStatus, String

NODE = "/ntari/ntari_ntp_node"
HEALTH = "/ntari/ntp/health"
STATUS = "/ntari/ntp/status"
CHRONYD = "/usr/sbin/chronyd"
READY_TIMEOUT = 20.0


def node_toml(upstream_port: int, serve_port: int, extra: str = "") -> str:
    return f"""
servers = [{{ host = "127.0.0.1", port = {upstream_port}, minpoll = -4, maxpoll = -4 }}]
allow = ["127.0.0.1"]
serve_port = {serve_port}
bind_address = "127.0.0.1"
local_stratum = 0
leave_clock_alone = true
{extra}
"""


@pytest.fixture
def upstream(launch, tmp_path):
    """The cooperative's reference: a plain chronyd serving local stratum 8."""
    if not Path(CHRONYD).exists():
        pytest.fail("chronyd is not installed (ci/setup.sh installs chrony)")
    port = free_port()
    d = tmp_path / "upstream"
    d.mkdir()
    conf = d / "chrony.conf"
    conf.write_text(
        f"port {port}\nbindaddress 127.0.0.1\nallow 127.0.0.1\nlocal stratum 8\n"
        f"cmdport 0\nbindcmdaddress /\npidfile {d}/chronyd.pid\ndriftfile {d}/drift\n")
    proc = launch(CHRONYD, "-d", "-x", "-u", "root", "-f", str(conf), name="upstream-chronyd")
    return SimpleNamespace(port=port, proc=proc)


@pytest.fixture
def ntp_node(launch, graph, tmp_path, upstream):
    """``ntp_node(*args, config=None)`` starts ntari-ntp in temp dirs with
    its health/status subscriptions and lifecycle client already in place."""
    binary = find_binary("ntari-ntp")

    def _start(*args, config=None, wait_ready=True):
        node_dir = tmp_path / "node"
        (node_dir / "state").mkdir(parents=True, exist_ok=True)
        cfg = node_dir / "ntp.toml"
        cfg.write_text(config if config is not None else node_toml(upstream.port, free_port()))
        metrics_port = free_port(socket.SOCK_STREAM)
        health = graph.subscribe(HEALTH, Bool)
        status = graph.subscribe(STATUS, String)
        lc = graph.lifecycle_client(NODE)
        proc = launch(binary, "--config", str(cfg), "--state-dir", str(node_dir / "state"),
                      "--run-dir", str(node_dir / "run"), "--key", str(node_dir / "node.key"),
                      "--node-config", str(node_dir / "absent-ntari.toml"),
                      "--metrics-port", str(metrics_port), "--probe-interval", "0.5", *args, name="ntari-ntp")
        if wait_ready:
            assert lc.wait_ready(READY_TIMEOUT), "lifecycle services of ntari-ntp never appeared"
        return SimpleNamespace(proc=proc, lc=lc, health=health, status=status, config=cfg,
                               metrics_port=metrics_port, dir=node_dir)

    return _start


def daemon_pid(node) -> int:
    env = wait_status(node, lambda p: p["daemon"]["running"], 10, "a running chronyd in status")
    return env["payload"]["daemon"]["pid"]


def test_activate_health_true_and_client_syncs(ntp_node):
    node = ntp_node("--autostart")
    wait_health(node, True, 15)
    env = wait_status(node, lambda p: p["detail"].get("synchronised") is True, 30, "chronyd synchronised")
    payload = env["payload"]
    assert payload["lifecycle_state"] == "active" and payload["healthy"] is True
    assert payload["detail"]["stratum"] == 9, payload["detail"]     # upstream is stratum 8
    assert payload["service"] == "ntp" and payload["node"] == NODE
    assert payload["daemon"]["version"].startswith("chronyd (chrony) version")
    # A signed envelope: did:key issuer, 128-bit nonce, Ed25519 signature.
    assert env["issuer"].startswith("did:key:z6Mk")
    assert len(env["nonce"]) == 32 and len(env["signature"]) == 128
    assert abs(env["timestamp"] / 1000 - time.time()) < 60
    # Prometheus, with chrony_exporter's names.
    text = urllib.request.urlopen(f"http://127.0.0.1:{node.metrics_port}/metrics", timeout=5).read().decode()
    assert "chrony_tracking_stratum 9" in text
    assert 'ntari_node_healthy{service="ntp"} 1' in text


def test_kill_9_of_chronyd_health_false_at_once_and_restarted(ntp_node):
    node = ntp_node("--autostart")
    wait_health(node, True, 15)
    kill_daemon_and_see_restart(node, daemon_pid(node), "chronyd")


def test_a_crash_during_a_probe_is_not_held_up_by_the_probe(ntp_node):
    """chronyd stopped (SIGSTOP) leaves a probe (chronyc) waiting for its
    answer; killing chronyd then must give health=false at once, not after
    the probe's timeout."""
    node = ntp_node("--autostart")
    wait_health(node, True, 15)
    pid = daemon_pid(node)
    os.kill(pid, signal.SIGSTOP)
    time.sleep(0.8)   # probes run every 0.5 s: one is now waiting on chronyd
    node.health.skip()
    killed = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    wait_health(node, False, 0.15, "health=false at once although a probe was waiting")
    print(f"kill -9 during a probe -> health=false after {(time.monotonic() - killed) * 1000:.0f} ms")
    wait_health(node, True, 10, "health=true again after the restart")


def test_deactivate_stops_chronyd(ntp_node):
    node = ntp_node("--autostart")
    wait_health(node, True, 15)
    pid = daemon_pid(node)
    assert node.lc.change_state(T.DEACTIVATE) is True
    assert not pid_alive(pid), "chronyd still running after deactivate"
    wait_health(node, False, 2)
    assert node.lc.get_state().id == S.INACTIVE
    # And back: activate starts a fresh chronyd.
    assert node.lc.change_state(T.ACTIVATE) is True
    wait_health(node, True, 5)


def test_node_killed_with_sigkill_takes_chronyd_with_it(ntp_node):
    node = ntp_node("--autostart")
    wait_health(node, True, 15)
    pid = daemon_pid(node)
    node.proc.send_signal(signal.SIGKILL)
    wait_until(lambda: not pid_alive(pid), 5, "chronyd to die with its node")


def test_sigterm_is_an_orderly_shutdown(ntp_node, graph):
    node = ntp_node("--autostart")
    wait_health(node, True, 15)
    pid = daemon_pid(node)
    assert node.proc.stop(signal.SIGTERM, timeout=15) == 0
    assert not pid_alive(pid)
    assert graph.wait_node_gone(NODE, timeout=10)


@pytest.mark.parametrize("bad, where", [
    ("local_stratum = 99\n", "local_stratum"),
    ("servers = [{ host = \"127.0.0.1\", prot = 1 }]\n", "prot"),
    ("serve_port = \"ninety\"\n", "serve_port"),
    ("allow = [\"10.0.0.1/99\"]\n", "allow"),
    ("this is not toml\n", "ntp.toml:1"),
])
def test_invalid_config_fails_configure_and_the_node_stays_up(ntp_node, bad, where):
    node = ntp_node(config=bad)
    assert node.lc.change_state(T.CONFIGURE) is False
    assert node.lc.get_state().id == S.UNCONFIGURED
    assert node.proc.alive()
    env = wait_status(node, lambda p: p["last_error"] is not None, 5, "the reason in status")
    reason = env["payload"]["last_error"]
    assert "ntp.toml" in reason and where in reason, reason
    wait_health(node, False, 3)


def test_sighup_with_invalid_config_leaves_chronyd_untouched(ntp_node, upstream):
    node = ntp_node("--autostart")
    wait_health(node, True, 15)
    pid = daemon_pid(node)
    good = node.config.read_text()
    node.config.write_text(good + "local_stratum = 42\n")
    node.proc.send_signal(signal.SIGHUP)
    env = wait_status(node, lambda p: (p["last_error"] or "").startswith("reload refused"), 5, "reload refused")
    assert "local_stratum" in env["payload"]["last_error"]
    assert pid_alive(pid), "the running chronyd must be untouched"
    assert "local stratum 42" not in (node.dir / "run" / "chrony.conf").read_text()
    wait_health(node, True, 3)
    # A valid change restarts chronyd with the new file (chrony cannot reload).
    node.config.write_text(node_toml(upstream.port, free_port()))
    node.proc.send_signal(signal.SIGHUP)
    wait_status(node, lambda p: p["daemon"]["running"] and p["daemon"]["pid"] != pid, 10, "chronyd restarted")
    wait_health(node, True, 10)


def test_crash_loop_goes_through_errorprocessing_to_unconfigured(ntp_node):
    node = ntp_node("--autostart")
    wait_health(node, True, 15)
    node.lc.events.collect(0.5)   # forget configure/activate
    for i in range(5):
        pid = daemon_pid(node)
        os.kill(pid, signal.SIGKILL)
        if i < 4:   # restarts come after 1, 2, 4, 8 s
            wait_status(node, lambda p: p["daemon"]["running"] and p["daemon"]["pid"] != pid, 20,
                        f"restart {i + 1}")
    events = [(e.transition.id, e.goal_state.id) for e in node.lc.wait_events(3, timeout=10)]
    assert events == [(T.DEACTIVATE, S.DEACTIVATING), (T.ON_DEACTIVATE_ERROR, S.ERRORPROCESSING),
                      (T.ON_ERROR_SUCCESS, S.UNCONFIGURED)]
    assert node.lc.get_state().id == S.UNCONFIGURED
    env = wait_status(node, lambda p: "crash loop" in (p["last_error"] or ""), 5, "crash loop reason")
    assert env["payload"]["daemon"]["running"] is False
    assert node.proc.alive()


def test_check_config_subcommand(tmp_path, upstream):
    binary = find_binary("ntari-ntp")
    good = tmp_path / "good.toml"
    good.write_text(node_toml(upstream.port, free_port()))
    bad = tmp_path / "bad.toml"
    bad.write_text("local_stratum = 0\nservers = []\n")
    common = ["--node-config", str(tmp_path / "absent.toml"), "--key", str(tmp_path / "k")]
    ok = subprocess.run([str(binary), "--config", str(good), *common, "check-config"],
                        capture_output=True, text=True, timeout=30)
    assert ok.returncode == 0, ok.stderr
    assert "ok" in ok.stdout
    ko = subprocess.run([str(binary), "--config", str(bad), *common, "check-config"],
                        capture_output=True, text=True, timeout=30)
    assert ko.returncode != 0
    assert "bad.toml" in ko.stderr and "servers" in ko.stderr, ko.stderr


def test_stale_pid_file_naming_a_live_process_does_not_block_start(ntp_node, tmp_path):
    """After a crash or reboot chronyd's pid file may name a live, unrelated
    process; chronyd alone would refuse to start ("Another chronyd may
    already be running"). The node removes it before every start."""
    run = tmp_path / "node" / "run"
    run.mkdir(parents=True)
    (run / "chronyd.pid").write_text(f"{os.getpid()}\n")
    node = ntp_node("--autostart")
    wait_health(node, True, 15)


def test_diagnostics_follow_health(ntp_node, graph):
    """/diagnostics carries one DiagnosticStatus "ntari/ntp" (what
    rqt_robot_monitor and diagnostic_aggregator read): OK while healthy,
    ERROR with the reason after a crash loop or a failed configure."""
    diagnostics = graph.subscribe("/diagnostics", DiagnosticArray)
    node = ntp_node("--autostart")
    wait_health(node, True, 15)

    def ours(sample, level):
        return any(s.name == "ntari/ntp" and s.level == level for s in sample.status)

    sample = diagnostics.wait_for(lambda s: ours(s, DiagnosticStatus.OK), timeout=15, what="OK diagnostics")
    status = next(s for s in sample.status if s.name == "ntari/ntp")
    values = {kv.key: kv.value for kv in status.values}
    assert status.hardware_id == NODE
    assert values["lifecycle_state"] == "active" and values["daemon.name"] == "chronyd"
    assert values["stratum"].isdigit() and "synchronised" in values, values   # probe detail flattened
    assert node.lc.change_state(T.DEACTIVATE) is True
    diagnostics.wait_for(lambda s: not ours(s, DiagnosticStatus.OK), timeout=5, what="non-OK after deactivate")


def test_a_leftover_daemon_is_stopped_and_sigterm_meanwhile_waits(ntp_node, tmp_path, launch):
    """A node killed with SIGKILL may leave its daemon behind (one that
    changed its user lost the parent-death signal). The next start stops
    what the run dir's record names (SIGTERM, SIGKILL after the 10 s stop
    timeout for one that ignores it) before it starts its own; a SIGTERM to
    the node meanwhile is not fatal: the node finishes the step, then shuts
    down in order (exit 0)."""
    fake = tmp_path / "bin" / "chronyd"          # what the kernel would call it
    fake.parent.mkdir()
    shutil.copy("/bin/sleep", fake)
    # SIG_IGN survives exec: a leftover that ignores SIGTERM.
    leftover = launch("/bin/sh", "-c", f"trap '' TERM; exec {fake} 120", name="leftover")
    wait_until(lambda: Path(f"/proc/{leftover.pid}/comm").read_text().strip() == "chronyd", 5, "the fake leftover")
    start_time = Path(f"/proc/{leftover.pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    run = tmp_path / "node" / "run"
    run.mkdir(parents=True)
    (run / "ntari-chronyd.pid").write_text(f"{leftover.pid} {start_time} chronyd\n")

    node = ntp_node("--autostart", wait_ready=False)
    log = node.proc.stderr_path
    wait_until(lambda: "left behind" in log.read_text(errors="replace"), 10, "the node noticing the leftover")
    node.proc.send_signal(signal.SIGTERM)
    assert leftover.wait(15) == -signal.SIGKILL, "the leftover ignores SIGTERM: SIGKILL after the timeout"
    assert node.proc.wait(20) == 0, "SIGTERM during start-up: an orderly exit after it"
    text = log.read_text(errors="replace")
    assert "to=finalized" in text, "the shutdown transition ran"
    assert not (run / "ntari-chronyd.pid").exists()

"""ntari-admin against running service nodes (ntari-dns and ntari-ntp with
their example-like configs on loopback high ports), as an operator uses it.

Exit codes checked: 0 all Active and healthy, 1 unhealthy / transition
failed, 3 no answer, 4 no nodes, 5 unknown node, 6 file errors.
"""

import json
import signal
import stat
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from conftest import find_binary
from helpers import free_dns_port, free_port, wait_until
from rosgraph import DiscoveryInfoPublisher, ServiceServer

EXAMPLES = Path(__file__).resolve().parent.parent.parent / "examples"


@pytest.fixture
def admin(ros_env, tmp_path):
    """``admin(*args, timeout=…)``: runs ntari-admin on the test's domain;
    returns (exit code, stdout, stderr)."""
    binary = find_binary("ntari-admin")

    def _run(*args, timeout=60):
        out = subprocess.run([str(binary), "--node-config", str(tmp_path / "absent-ntari.toml"), *args],
                             env=ros_env, capture_output=True, text=True, timeout=timeout)
        return out.returncode, out.stdout, out.stderr

    _run.env = ros_env
    return _run


@pytest.fixture
def nodes(launch):
    """Starts ntari-dns (autostart, Active) and ntari-ntp (Unconfigured)."""
    work = Path(tempfile.mkdtemp(prefix="ntari-admin-test-"))
    work.chmod(0o755)   # dnsmasq reads its hosts files as user dnsmasq
    dns_cfg = work / "dns.toml"
    dns_cfg.write_text((EXAMPLES / "dns.toml").read_text().replace("port = 15353", f"port = {free_dns_port()}"))
    ntp_cfg = work / "ntp.toml"
    ntp_cfg.write_text((EXAMPLES / "ntp.toml").read_text().replace("serve_port = 11123",
                                                                 f"serve_port = {free_port()}"))
    common = ["--node-config", str(work / "absent.toml"), "--key", str(work / "node.key"),
              "--metrics-port", "0", "--probe-interval", "0.5"]
    dns = launch(find_binary("ntari-dns"), "--config", str(dns_cfg), "--state-dir", str(work / "dns-state"),
                 "--run-dir", str(work / "dns-run"), "--autostart", *common, name="ntari-dns")
    ntp = launch(find_binary("ntari-ntp"), "--config", str(ntp_cfg), "--state-dir", str(work / "ntp-state"),
                 "--run-dir", str(work / "ntp-run"), *common, name="ntari-ntp")
    yield dns, ntp
    for proc in (dns, ntp):
        if proc.alive():
            proc.stop()
    subprocess.run(["rm", "-rf", str(work)], check=False)


def status_json(admin):
    code, out, err = admin("status", "--json")
    return code, {n["service"]: n for n in json.loads(out)}, err


def test_no_nodes_is_its_own_exit_code(admin):
    code, out, _ = admin("status")
    assert code == 4, out
    assert "no NTARI service node" in out


def test_status_lifecycle_and_health_of_running_nodes(admin, nodes):
    # dns is Active, ntp Unconfigured: not all healthy → 1.
    def listed():
        code, by_service, _ = status_json(admin)
        return (code, by_service) if {"dns", "ntp"} <= set(by_service) and by_service["dns"]["healthy"] else None
    code, by_service = wait_until(listed, 20, "both nodes in status, dns healthy")
    assert code == 1
    dns, ntp = by_service["dns"], by_service["ntp"]
    assert dns["lifecycle_state"] == "active" and dns["healthy"] is True, dns
    assert dns["health_age_s"] is not None and dns["health_age_s"] < 2.5, dns
    assert dns["daemon"]["name"] == "dnsmasq" and dns["daemon"]["running"], dns
    assert "answering on" in dns["summary"] and dns["issuer"].startswith("did:key:"), dns
    assert ntp["lifecycle_state"] == "unconfigured" and ntp["healthy"] is False, ntp

    code, out, err = admin("lifecycle", "ntp", "get")
    assert (code, out.strip()) == (0, "unconfigured [1]"), err
    for step, now in [("configure", "inactive [2]"), ("activate", "active [3]")]:
        code, out, err = admin("lifecycle", "/ntari/ntari_ntp_node", step)
        assert code == 0 and now in out, (code, out, err)
    code, out, _ = admin("lifecycle", "ntari_ntp_node", "activate")
    assert code == 1, "activate from active is refused"

    wait_until(lambda: admin("status")[0] == 0, 20, "status exit 0 with every node healthy")
    code, table, _ = admin("status")
    assert "/ntari/ntari_ntp_node" in table and "chronyd" in table and "ok" in table, table


def test_unknown_vanished_and_silent_nodes(admin, nodes, graph):
    dns, ntp = nodes
    code, _, err = admin("lifecycle", "nosuch", "get", "--timeout", "2")
    assert code == 5 and "no node `nosuch`" in err, err
    wait_until(lambda: "ntp" in status_json(admin)[1], 20, "ntp listed")

    # A node that is on the graph and offers get_state but never answers
    # (posed by the test's own participant).
    discovery = DiscoveryInfoPublisher(graph)
    silent = ServiceServer(graph, "/ntari/ntari_silent_node/get_state", "lifecycle_msgs/srv/GetState",
                           handler=lambda request: None)
    discovery.add_node("/ntari", "ntari_silent_node", readers=[silent.reader], writers=[silent.writer])
    code, _, err = admin("lifecycle", "silent", "get", "--timeout", "2")
    assert code == 3 and "did not answer get_state" in err, (code, err)
    code, table, _ = admin("status", "--timeout", "2")
    assert code == 3 and "/ntari/ntari_silent_node" in table and "NO ANSWER" in table, (code, table)

    # A node that leaves the graph while a command waits for it.
    binary = find_binary("ntari-admin")
    waiting = subprocess.Popen([str(binary), "--node-config", "/nonexistent/ntari.toml", "lifecycle", "silent",
                                "get", "--timeout", "3"], env=admin.env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    time.sleep(1.5)   # found, its get_state request is waiting
    discovery.remove_node("/ntari", "ntari_silent_node")
    _, err = waiting.communicate(timeout=30)
    assert waiting.returncode == 3 and "left the graph during the command" in err, (waiting.returncode, err)

    # A node killed outright leaves the graph: status stops listing it and
    # a command for it finds no such node.
    ntp.send_signal(signal.SIGKILL)
    wait_until(lambda: "ntp" not in status_json(admin)[1], 30, "the killed node gone from status")
    code, _, err = admin("lifecycle", "ntp", "get", "--timeout", "2")
    assert code == 5, err


def test_watch_refreshes_until_interrupted(admin, nodes):
    binary = find_binary("ntari-admin")
    watch = subprocess.Popen([str(binary), "--node-config", "/nonexistent/ntari.toml", "watch", "--interval", "0.5"],
                             env=admin.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(4)
    watch.send_signal(signal.SIGINT)
    out, err = watch.communicate(timeout=15)
    assert watch.returncode == 0, err
    assert out.count("ntari-admin watch") >= 2, "refreshed more than once"
    assert "/ntari/ntari_dns_node" in out and "active" in out, out[-2000:]


def test_key_init_and_show(admin, tmp_path):
    key = tmp_path / "keys" / "node.ed25519"
    code, _, err = admin("key", "show", "--key", str(key))
    assert code == 6 and "ntari-admin key init" in err, err
    code, out, err = admin("key", "init", "--key", str(key))
    assert code == 0 and "created" in out, err
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    did = next(line.split()[1] for line in out.splitlines() if line.startswith("did:"))
    code, out, _ = admin("key", "init", "--key", str(key))
    assert code == 0 and "kept" in out and did in out
    code, out, _ = admin("key", "show", "--key", str(key))
    assert code == 0 and did in out and did.startswith("did:key:z6Mk")


def test_domain_render_and_its_errors(admin, tmp_path):
    config = tmp_path / "ntari.toml"
    config.write_text('cooperative = "riverside"\ndomain_id = 42\n'
                      'dds_interfaces = ["127.0.0.1"]\ndds_peers = ["127.0.0.1"]\n')
    out_file = tmp_path / "etc" / "cyclonedds.xml"
    binary = find_binary("ntari-admin")
    run = lambda cfg: subprocess.run([str(binary), "--node-config", str(cfg), "domain", "render",  # noqa: E731
                                      "--output", str(out_file)], capture_output=True, text=True, timeout=30)
    result = run(config)
    assert result.returncode == 0, result.stderr
    xml = out_file.read_text()
    assert '<Domain Id="42">' in xml and '<Peer address="127.0.0.1"/>' in xml, xml
    config.write_text('domain_id = 999\n')
    result = run(config)
    assert result.returncode == 6 and "ntari.toml:1" in result.stderr and "domain_id" in result.stderr, \
        result.stderr
    assert '<Domain Id="42">' in out_file.read_text(), "a refused render leaves the old file"
    # Like the nodes, a missing ntari.toml means the defaults (domain 0).
    result = run(tmp_path / "missing.toml")
    assert result.returncode == 0, result.stderr
    assert '<Domain Id="0">' in out_file.read_text()


def test_completions_and_man_page_come_from_the_command_line(admin):
    code, out, _ = admin("completions", "bash")
    assert code == 0 and "complete -F _ntari__admin" in out and "lifecycle" in out
    code, out, _ = admin("man")
    assert code == 0 and ".TH ntari-admin" in out and "lifecycle" in out, out[:200]
    code, _, err = admin("lifecycle", "dns", "explode")
    assert code == 2 and "invalid value 'explode'" in err, err

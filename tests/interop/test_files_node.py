"""ntari-files against the real smbd and NFS-Ganesha, with the members' real
clients (smbclient; nfs-cat from libnfs) and ntari-admin.

Every node runs in the test's temp dirs on 127.0.0.1 and free high ports.
The node is watched through the graph as `ros2 topic echo` would (health,
status), and its daemons are found by the pids its status names. Members
get Unix accounts of their own (Samba needs them): random names, removed
at the end whatever happens.
"""

import grp
import os
import random
import re
import signal
import socket
import string
import subprocess
import time
from pathlib import Path

import pytest

from conftest import find_binary
from helpers import (free_port, metric, open_to_others, pid_alive, start_service_node, wait_health, wait_status,
                     wait_until, with_setting)
from ros_types import S, T

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "files.toml"
DAEMONS = ("smbd", "ganesha")
PASSWORD = "Correct-horse-9"
# Processes that must never outlive a node (smbd's helpers included).
SAMBA_AND_NFS = ("smbd", "samba-dcerpcd", "rpcd_classic", "rpcd_winreg", "rpcd_lsad", "rpcd_epmapper",
                 "rpcd_fsrvp", "rpcd_mdssvc", "rpcd_spoolss", "ganesha.nfsd")


def config_text():
    """The example config on free ports."""
    text = EXAMPLE.read_text()
    for old in ("port = 14450", "port = 20490"):
        assert f"\n{old}\n" in text, f"examples/files.toml no longer has {old}"
        text = text.replace(f"\n{old}\n", f"\nport = {free_port(socket.SOCK_STREAM)}\n", 1)
    return text


def ports(text):
    found = [int(p) for p in re.findall(r"^port = (\d+)$", text, re.M)]
    return found[0], found[1]


@pytest.fixture
def members():
    """Random member names; their Unix accounts are deleted at the end."""
    made = []

    def _new():
        name = "ntf" + "".join(random.choices(string.ascii_lowercase, k=6))
        made.append(name)
        return name

    yield _new
    for name in made:
        subprocess.run(["userdel", name], capture_output=True, timeout=10)


@pytest.fixture
def files_node(launch, graph, tmp_path):
    """``files_node(name, config=None)`` starts ntari-files in temp dirs of
    its own (``config`` None: the example on free ports)."""
    binary = find_binary("ntari-files")
    # smbd serves guests as `nobody`, who must walk down to the shares:
    # pytest's base dirs are 0700.
    open_to_others(tmp_path)

    def _start(name="node", config=None, watch=True, autostart=True):
        node = start_service_node(launch, graph, tmp_path, binary, "files", name, config_text, config, watch,
                                  autostart)
        node.smb_port, node.nfs_port = ports(node.config.read_text())
        return node

    return _start


def admin(node, *args, password=None, check=True):
    cmd = [find_binary("ntari-admin"), "files", "--run-dir", str(node.run), *args]
    if password is not None:
        cmd.append("--password-stdin")
    r = subprocess.run(cmd, input=(password + "\n") if password is not None else None, capture_output=True,
                       text=True, timeout=60)
    if check:
        assert r.returncode == 0, f"{' '.join(args)}: {r.stdout}\n{r.stderr}"
    return r


def smbclient(node, share, commands, user=None, password=PASSWORD):
    auth = ["-N"] if user is None else ["-U", f"{user}%{password}"]
    return subprocess.run(["smbclient", "-p", str(node.smb_port), *auth, f"//127.0.0.1/{share}", "-c", commands],
                          capture_output=True, text=True, timeout=30, cwd=node.tmp)


def nfs_cat(node, path):
    return subprocess.run(["nfs-cat", f"nfs://127.0.0.1{path}?version=4&nfsport={node.nfs_port}"],
                          capture_output=True, timeout=30)


def ready(node):
    wait_health(node, True, 30)
    return wait_status(node, lambda p: p["healthy"] and "smb" in p["detail"] and "nfs" in p["detail"], 10,
                       "a healthy status")["payload"]


def daemon_pids(node):
    env = wait_status(node, lambda p: len(p["daemons"]) == 2 and all(d["running"] for d in p["daemons"]), 15,
                      "two running daemons in status")
    return {d["name"]: d for d in env["payload"]["daemons"]}


def processes(names):
    """{pid: comm} of every live process named one of ``names``."""
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            comm = (entry / "comm").read_text().strip()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if comm in names and state != "Z":
            out[int(entry.name)] = comm
    return out


def ours(pids, node):
    """The pids whose command line names this node's run dir."""
    out = {}
    for pid, comm in pids.items():
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if str(node.run) in cmd:
            out[pid] = comm
    return out


def test_example_config_members_and_guests_over_smb_the_same_file_over_nfs(files_node, members):
    """examples/files.toml as-is (on free ports): a member's files, the guest
    share, the refusals, NFS reading what SMB wrote, status and metrics."""
    node = files_node()
    payload = ready(node)
    assert [d["name"] for d in payload["daemons"]] == list(DAEMONS)
    smb = payload["detail"]["smb"]
    assert smb["dialect"] == "3.1.1" and smb["anonymous_tree_connect"] == "public connected", smb
    assert payload["detail"]["nfs"]["exports"] == [{"export": "/public", "ok": True, "entries": 0}]
    assert payload["daemon"]["version"].startswith("Version 4."), payload["daemon"]

    alice = members()
    admin(node, "user", "add", alice, password=PASSWORD)
    assert alice in admin(node, "user", "list").stdout.split()
    assert (node.state / "samba" / "private").stat().st_mode & 0o777 == 0o700
    (node.tmp / "minutes.txt").write_text("members' minutes\n")
    r = smbclient(node, "members", "put minutes.txt; get minutes.txt minutes-back.txt", user=alice)
    assert r.returncode == 0, r.stdout + r.stderr
    assert (node.tmp / "minutes-back.txt").read_text() == "members' minutes\n"
    assert (node.state / "shares" / "members" / "minutes.txt").stat().st_uid == int(
        subprocess.run(["id", "-u", alice], capture_output=True, text=True).stdout)

    # Another member edits her minutes: what members write belongs to them all.
    bob = members()
    admin(node, "user", "add", bob, password=PASSWORD)
    (node.tmp / "minutes.txt").write_text("members' minutes, amended\n")
    r = smbclient(node, "members", "put minutes.txt", user=bob)
    assert r.returncode == 0, r.stdout + r.stderr
    written = node.state / "shares" / "members" / "minutes.txt"
    assert written.read_text() == "members' minutes, amended\n"
    assert grp.getgrgid(written.stat().st_gid).gr_name == "ntari-members"
    assert bob in grp.getgrnam("ntari-members").gr_mem

    # Refused: a wrong password, and a guest on the members' share.
    r = smbclient(node, "members", "ls", user=alice, password="wrong-password")
    assert r.returncode != 0 and "NT_STATUS_LOGON_FAILURE" in r.stdout + r.stderr, r.stdout + r.stderr
    r = smbclient(node, "members", "ls")
    assert r.returncode != 0 and "NT_STATUS_ACCESS_DENIED" in r.stdout + r.stderr, r.stdout + r.stderr

    # Nobody lists the members' names anonymously (restrict anonymous = 2).
    r = subprocess.run(["rpcclient", "-p", str(node.smb_port), "-U%", "127.0.0.1", "-c", "enumdomusers"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode != 0 and alice not in r.stdout, r.stdout + r.stderr

    # The guest share, and the same file over NFS.
    flyer = os.urandom(200_000)
    (node.tmp / "flyer.bin").write_bytes(flyer)
    r = smbclient(node, "public", "put flyer.bin")
    assert r.returncode == 0, r.stdout + r.stderr
    r = nfs_cat(node, "/public/flyer.bin")
    assert r.returncode == 0 and r.stdout == flyer, r.stderr
    # The export is read-only: the probe lists it, and sees the file now.
    wait_status(node, lambda p: p["detail"].get("nfs", {}).get("exports", [{}])[0].get("entries") == 1, 10,
                "the export's one entry in status")

    # A member's session shows in status and metrics while she is connected.
    session = subprocess.Popen(["smbclient", "-p", str(node.smb_port), "-U", f"{alice}%{PASSWORD}",
                                "//127.0.0.1/members"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, text=True)
    try:
        env = wait_status(node, lambda p: any(s["user"] == alice for s in p["detail"]["smb"].get("sessions", [])),
                          10, "her session in status")
        assert {"share": "members", "machine": "127.0.0.1"} in env["payload"]["detail"]["smb"]["tree_connects"]
        assert env["payload"]["detail"]["smb"]["members"] == 2
        assert metric(node.metrics_port, "samba_client_count") >= 1
    finally:
        session.communicate("quit\n", timeout=10)
    assert metric(node.metrics_port, "samba_smb2_requests_total", operation="write") >= 2
    assert metric(node.metrics_port, "samba_smb2_write_bytes_total") >= 200_000
    assert metric(node.metrics_port, "ntari_files_probe_ok", protocol="nfs") == 1
    assert metric(node.metrics_port, "ntari_files_export_ok", export="/public") == 1
    assert metric(node.metrics_port, "ntari_node_daemon_up", daemon="ganesha") == 1
    # Her password is nowhere but the passdb.
    log = node.proc.stderr_path.read_text() + node.proc.stdout_path.read_text()
    assert PASSWORD not in log and PASSWORD not in (node.run / "smb.conf").read_text()

    # Removed: no login, no Unix account; her files stay.
    admin(node, "user", "remove", bob)
    admin(node, "user", "remove", alice)
    r = smbclient(node, "members", "ls", user=alice)
    assert r.returncode != 0
    assert subprocess.run(["id", alice], capture_output=True).returncode != 0
    assert (node.state / "shares" / "members" / "minutes.txt").exists()


def test_kill_9_of_each_daemon_health_false_at_once_and_the_other_untouched(files_node):
    node = files_node()
    ready(node)
    (node.tmp / "f.txt").write_text("x")
    for name in DAEMONS:
        before = daemon_pids(node)
        pid = before[name]["pid"]
        node.health.skip()
        os.kill(pid, signal.SIGKILL)
        wait_health(node, False, 1.0, f"health=false within 1 s of kill -9 of {name}")
        wait_health(node, True, 20, f"health=true again after {name} restarted")
        env = wait_status(node, lambda p: all(d["running"] for d in p["daemons"]) and any(
            d["name"] == name and d["pid"] != pid for d in p["daemons"]), 10, f"a new {name} in status")
        after = {d["name"]: d for d in env["payload"]["daemons"]}
        assert after[name]["restarts"] == before[name]["restarts"] + 1, after[name]
        assert "SIGKILL" in (after[name]["last_exit"] or ""), after[name]
        for other in DAEMONS:
            if other != name:
                assert after[other]["pid"] == before[other]["pid"], (name, other)
        assert not pid_alive(pid)
        assert smbclient(node, "public", f"put f.txt after-{name}.txt").returncode == 0
        assert nfs_cat(node, f"/public/after-{name}.txt").stdout == b"x"


def test_node_sigkill_leaves_no_samba_or_ganesha_process_anywhere(files_node, members):
    """smbd's helpers (samba-dcerpcd, rpcd_*), started by a member's share
    listing, leave its process group; they still end with the node."""
    node = files_node()
    ready(node)
    alice = members()
    admin(node, "user", "add", alice, password=PASSWORD)
    r = subprocess.run(["smbclient", "-p", str(node.smb_port), "-U", f"{alice}%{PASSWORD}", "-L", "127.0.0.1"],
                       capture_output=True, text=True, timeout=30)
    assert "public" in r.stdout and "members" in r.stdout, r.stdout + r.stderr
    running = wait_until(lambda: (lambda p: p if "samba-dcerpcd" in p.values() else None)(
        ours(processes(SAMBA_AND_NFS), node)), 10, "samba-dcerpcd started by the listing")
    print("before the SIGKILL:", sorted(set(running.values())))
    assert {"smbd", "samba-dcerpcd", "ganesha.nfsd"} <= set(running.values()), running
    os.kill(node.proc.pid, signal.SIGKILL)
    wait_until(lambda: not any(pid_alive(p) for p in running), 5, "every smbd, helper and ganesha gone")
    assert not ours(processes(SAMBA_AND_NFS), node), "a process of this node outlived it"
    # Respawned (as OpenRC would): serves again with the same shares.
    node = files_node()
    ready(node)
    assert smbclient(node, "public", "ls").returncode == 0


def test_live_share_and_export_add_keeps_connected_members(files_node, members):
    node = files_node()
    ready(node)
    alice = members()
    admin(node, "user", "add", alice, password=PASSWORD)
    before = {n: d["pid"] for n, d in daemon_pids(node).items()}
    (node.tmp / "one.txt").write_text("one")
    (node.tmp / "two.txt").write_text("two")
    # A member connected the whole time, in one smbclient session.
    session = subprocess.Popen(["smbclient", "-p", str(node.smb_port), "-U", f"{alice}%{PASSWORD}",
                                "//127.0.0.1/members"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, cwd=node.tmp)
    try:
        session.stdin.write("put one.txt\n")
        session.stdin.flush()
        wait_until(lambda: (node.state / "shares" / "members" / "one.txt").exists(), 10, "her first file")
        node.config.write_text(node.config.read_text() + """
[[shares]]
name = "projects"
path = "shares/projects"

[[exports]]
path = "shares/members"
clients = ["127.0.0.1/32"]
""")
        node.status.skip()
        os.kill(node.proc.pid, signal.SIGHUP)
        wait_status(node, lambda p: p["healthy"] and len(p["detail"]["nfs"]["exports"]) == 2
                    and p["detail"]["nfs"]["exports"][1]["ok"], 15, "the new export listed")
        # Her session is the same one: she goes on writing.
        session.stdin.write("put two.txt\n")
        session.stdin.flush()
        wait_until(lambda: (node.state / "shares" / "members" / "two.txt").exists(), 10,
                   "her second file, over the session opened before the reload")
    finally:
        out, _ = session.communicate("quit\n", timeout=10)
    assert "NT_STATUS" not in out, out
    assert {n: d["pid"] for n, d in daemon_pids(node).items()} == before, "a daemon was restarted"
    r = smbclient(node, "projects", "put one.txt", user=alice)
    assert r.returncode == 0, r.stdout + r.stderr
    assert nfs_cat(node, "/members/two.txt").stdout == b"two"


def test_lifecycle_cycle_keeps_share_contents_and_the_passdb(files_node, members):
    node = files_node()
    ready(node)
    alice = members()
    admin(node, "user", "add", alice, password=PASSWORD)
    (node.tmp / "keep.txt").write_text("keep")
    assert smbclient(node, "members", "put keep.txt", user=alice).returncode == 0
    passdb = (node.state / "samba" / "private" / "passdb.tdb").read_bytes()
    for t in (T.DEACTIVATE, T.CLEANUP):
        assert node.lc.change_state(t) is True, t
    assert (node.state / "shares" / "members" / "keep.txt").read_text() == "keep"
    assert (node.state / "samba" / "private" / "passdb.tdb").read_bytes() == passdb
    for t in (T.CONFIGURE, T.ACTIVATE):
        assert node.lc.change_state(t) is True, t
    ready(node)
    r = smbclient(node, "members", "get keep.txt keep-back.txt", user=alice)
    assert r.returncode == 0 and (node.tmp / "keep-back.txt").read_text() == "keep", r.stdout + r.stderr


BAD = [
    ('share_roots = ["/"]', "share_roots[0]"),
    ('[smb]\nmin_protocol = "NT1"', "smb.min_protocol"),
    ("[smb]\nencryption_required = true", "smb.min_protocol"),
    ("[smb]\nlisten = []", "smb.listen"),
    ('[smb]\nlisten = ["not-an-address"]', "smb.listen"),
    ("[smb]\nport = 70000", "smb.port"),
    ('[smb]\nworkgroup = "A%B"', "smb.workgroup"),
    ("[smb]\nstatus_interval = 0", "smb.status_interval"),
    ('[nfs]\nbackend = "knfsd"', "nfs.backend"),
    ("[nfs]\nport = 0", "nfs.port"),
    ('[nfs]\ngrace = "yes"', "nfs.grace"),
    ('[[shares]]\nname = "root"\npath = "/"', "shares[2].path"),
    ('[[shares]]\nname = "etc"\npath = "/etc"', "shares[2].path"),
    ('[[shares]]\nname = "bad name"\npath = "shares/x"', "shares[2].name"),
    ('[[shares]]\nname = "PUBLIC"\npath = "shares/x"', "shares[2].name"),
    ('[[shares]]\nname = "x"\npath = "shares/x"\nvalid_users = ["Bad User"]', "shares[2].valid_users[0]"),
    ('[[shares]]\nname = "x"\npath = "shares/../x"', "shares[2].path"),
    ('[[exports]]\npath = "shares/x"\nclients = []', "exports[1].clients"),
    ('[[exports]]\npath = "shares/x"\nclients = ["10.0.0.300/8"]', "exports[1].clients"),
    ('[[exports]]\npath = "shares/x"\nclients = ["10.0.0.0/8"]\nsquash = "some"', "exports[1].squash"),
    ('[[exports]]\npath = "/"\nclients = ["10.0.0.0/8"]', "exports[1].path"),
    ('sharez = []', "sharez"),
]


def test_an_invalid_config_is_refused_and_the_running_daemons_are_untouched(files_node):
    """Every field, wrong in turn, on reload (SIGHUP): refused naming file
    and key, the node Active, the same two daemons running."""
    node = files_node()
    ready(node)
    before = {n: d["pid"] for n, d in daemon_pids(node).items()}
    good = node.config.read_text()
    smb_conf = (node.run / "smb.conf").read_text()
    for bad, key in BAD:
        node.config.write_text(with_setting(good, bad))
        node.status.skip()
        os.kill(node.proc.pid, signal.SIGHUP)
        env = wait_status(node, lambda p: f": {key}" in (p["last_error"] or "") or f"`{key}`" in (
            p["last_error"] or ""), 10, f"the error naming {key}")
        err = env["payload"]["last_error"]
        assert "files.toml" in err and "untouched" in err, (bad, err)
        assert env["payload"]["lifecycle_state"] == "active", bad
        print(f"{key}: {err.split('files.toml', 1)[1]}")
    assert {n: d["pid"] for n, d in daemon_pids(node).items()} == before
    assert (node.run / "smb.conf").read_text() == smb_conf
    assert not (node.state / "shares" / "x").exists(), "a refused config made a directory"
    assert node.proc.alive()


def test_a_missing_or_file_share_path_is_refused_at_configure(files_node, tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    (root / "a-file").write_text("")
    base = config_text().replace('share_roots = ["shares"]', f'share_roots = ["shares", "{root}"]')
    node = files_node("refuse", config=base, autostart=False)
    assert node.lc.wait_ready(15)
    for path, why in ((root / "missing", "No such file"), (root / "a-file", "not a directory")):
        node.config.write_text(base + f'\n[[shares]]\nname = "x"\npath = "{path}"\n')
        assert node.lc.change_state(T.CONFIGURE) is False
        env = wait_status(node, lambda p: "shares[2].path" in (p["last_error"] or "") and why in p["last_error"],
                          5, f"the refusal: {why}")
        assert str(path) in env["payload"]["last_error"], env["payload"]["last_error"]
    assert node.lc.get_state().id == S.UNCONFIGURED and node.proc.alive()

    # An export on overlayfs (a container's root, say): NFS cannot serve it.
    for d in ("lower", "upper", "work", "merged"):
        (root / d).mkdir()
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                    f"lowerdir={root / 'lower'},upperdir={root / 'upper'},workdir={root / 'work'}",
                    str(root / "merged")], check=True, timeout=10)
    try:
        node.config.write_text(base + f'\n[[exports]]\npath = "{root / "merged"}"\nclients = ["127.0.0.1/32"]\n')
        assert node.lc.change_state(T.CONFIGURE) is False
        env = wait_status(node, lambda p: "overlayfs" in (p["last_error"] or ""), 5, "the overlayfs refusal")
        assert "exports[1].path" in env["payload"]["last_error"], env["payload"]["last_error"]
    finally:
        subprocess.run(["umount", str(root / "merged")], timeout=10)


def test_check_config_passes_on_a_fresh_machine_and_names_a_bad_key(tmp_path):
    cfg = tmp_path / "files.toml"
    cfg.write_text(config_text())
    cmd = [find_binary("ntari-files"), "--config", str(cfg), "--state-dir", str(tmp_path / "fresh-state"),
           "--run-dir", str(tmp_path / "fresh-run"), "--node-config", str(tmp_path / "absent.toml"), "check-config"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert not (tmp_path / "fresh-state").exists(), "check-config made the state dir"
    cfg.write_text(with_setting(config_text(), '[smb]\nmin_protocol = "NT1"'))
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "files.toml:" in r.stderr and "smb.min_protocol" in r.stderr, r.stderr


def test_an_export_the_server_cannot_list_makes_health_false_naming_it(files_node, tmp_path):
    """An export added live whose directory the server cannot read (root
    squashed, 0700, another owner): GETATTR alone would pass; the probe's
    READDIR does not, as an NFS client's would not."""
    root = tmp_path / "data"
    (root / "closed").mkdir(parents=True)
    os.chown(root / "closed", 12345, 12345)
    (root / "closed").chmod(0o700)
    text = config_text().replace('share_roots = ["shares"]', f'share_roots = ["shares", "{root}"]')
    node = files_node("closed", config=text)
    ready(node)
    node.health.skip()
    node.config.write_text(text + f'\n[[exports]]\npath = "{root / "closed"}"\nclients = ["127.0.0.1/32"]\n')
    os.kill(node.proc.pid, signal.SIGHUP)
    wait_health(node, False, 10, "health=false with an export that cannot be listed")
    env = wait_status(node, lambda p: "NFS4ERR_ACCESS" in (p["probe_error"] or ""), 15,
                      "the probe's READDIR refused, in status")
    assert "ganesha: exports not readable: /closed: READDIR: NFS4ERR_ACCESS" == env["payload"]["probe_error"], \
        env["payload"]["probe_error"]
    assert env["payload"]["lifecycle_state"] == "active"
    # The export taken out again: healthy, without a restart.
    node.config.write_text(text)
    os.kill(node.proc.pid, signal.SIGHUP)
    wait_health(node, True, 15, "health=true without the export")


def test_encryption_and_signing_required_members_get_in_encrypted(files_node, members):
    """A stricter server: SMB3 only, signing and encryption required. The
    probe's anonymous session is refused (and said so), the node is
    healthy, a member gets in with encryption, a guest does not."""
    text = config_text().replace('min_protocol = "SMB2_10"', 'min_protocol = "SMB3_00"').replace(
        "signing_required = false", "signing_required = true").replace(
        "encryption_required = false", "encryption_required = true")
    node = files_node("strict", config=text)
    payload = ready(node)
    smb = payload["detail"]["smb"]
    assert smb["signing_required"] is True and "ACCESS_DENIED" in smb["anonymous_tree_connect"], smb
    alice = members()
    admin(node, "user", "add", alice, password=PASSWORD)
    (node.tmp / "secret.txt").write_text("board minutes")
    r = subprocess.run(["smbclient", "-p", str(node.smb_port), "-U", f"{alice}%{PASSWORD}", "--client-protection=encrypt",
                        "//127.0.0.1/members", "-c", "put secret.txt"], capture_output=True, text=True,
                       timeout=30, cwd=node.tmp)
    assert r.returncode == 0, r.stdout + r.stderr
    assert smbclient(node, "public", "ls").returncode != 0, "a guest got in although encryption is required"
    assert wait_status(node, lambda p: True, 10, "a status")["payload"]["healthy"] is True

"""ntari-identity against the real slapd, krb5kdc and kadmind, with the
members' real clients (kinit, kvno, ldapsearch) and ntari-admin.

Every node provisions its own realm in the test's temp dirs; everything
listens on 127.0.0.1. The node is watched through the graph as `ros2 topic
echo` would (health, status), and its daemons are found by the pids its
status names.
"""

import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from conftest import find_binary, pick_domain_id
from helpers import (free_port, metric, open_to_others, pid_alive, start_service_node, wait_health, wait_status,
                     wait_until, with_setting)
from ros_types import S, T

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "identity.toml"
DAEMONS = ("slapd", "krb5kdc", "kadmind")
READY = 30.0
PASSWORD = "Correct-horse-9"


def config_text(domain="coop.lan", extra=""):
    """The example config on free ports (so tests never share one)."""
    text = EXAMPLE.read_text()
    if domain != "coop.lan":
        text = text.replace('domain = "coop.lan"', f'domain = "{domain}"').replace(
            'hostname = "hub.coop.lan"', f'hostname = "hub.{domain}"')
    for key, old in (("port", 13890), ("ldaps_port", 16360), ("port", 18800), ("kadmin_port", 17490),
                     ("kpasswd_port", 14640)):
        assert f"\n{key} = {old}\n" in text, f"examples/identity.toml no longer has {key} = {old}"
        text = text.replace(f"\n{key} = {old}\n", f"\n{key} = {free_port(socket.SOCK_STREAM)}\n", 1)
    return text + extra


def ports(text):
    """(ldap, kdc) ports of a config text."""
    found = [int(p) for p in re.findall(r"^port = (\d+)$", text, re.M)]
    return found[0], found[1]


@pytest.fixture
def identity_node(launch, graph, tmp_path):
    """``identity_node(name, config=None, graph_watch=True)`` starts ntari-identity in
    temp dirs of its own (``config`` None: the example on free ports)."""
    binary = find_binary("ntari-identity")
    # slapd drops to its own user, who must be able to walk down to its
    # database: pytest's base dirs are 0700.
    open_to_others(tmp_path)

    def _start(name="node", config=None, watch=True, env=None, autostart=True):
        node = start_service_node(launch, graph, tmp_path, binary, "identity", name, config_text, config, watch,
                                  autostart, env)
        node.ldap_port, node.kdc_port = ports(node.config.read_text())
        return node

    return _start


def admin(node, *args, password=None, check=True):
    """``ntari-admin identity <args>`` against ``node``'s dirs."""
    cmd = [find_binary("ntari-admin"), "identity", "--config", str(node.config),
           "--state-dir", str(node.state), "--run-dir", str(node.run), *args]
    if password is not None:
        cmd.append("--password-stdin")
    r = subprocess.run(cmd, input=(password + "\n") if password is not None else None, capture_output=True,
                       text=True, timeout=60)
    if check:
        assert r.returncode == 0, f"{' '.join(args)}: {r.stdout}\n{r.stderr}"
    return r


def krb_env(node, ccache_name="cc", conf=None):
    env = dict(os.environ)
    env["KRB5_CONFIG"] = str(conf or node.run / "krb5.conf")
    env["KRB5CCNAME"] = f"FILE:{node.tmp / ccache_name}"
    env.pop("KRB5_KDC_PROFILE", None)
    return env


def kinit(node, principal, password=PASSWORD, ccache="cc", conf=None, keytab=None):
    cmd = ["kinit", principal] if keytab is None else ["kinit", "-k", "-t", str(keytab), principal]
    return subprocess.run(cmd, input=None if keytab else password + "\n", capture_output=True, text=True,
                          env=krb_env(node, ccache, conf), timeout=20)


def ldapsearch(node, *args, starttls=True):
    env = dict(os.environ, LDAPTLS_CACERT=str(node.state / "tls" / "cert.pem"), LDAPCONF="/dev/null")
    cmd = ["ldapsearch", "-LLL", "-o", "nettimeout=5", "-H", f"ldap://127.0.0.1:{node.ldap_port}"]
    if starttls:
        cmd.append("-ZZ")
    return subprocess.run(cmd + list(args), capture_output=True, text=True, env=env, timeout=20)


def kadmin_local(node, query):
    env = dict(os.environ, KRB5_CONFIG=str(node.run / "krb5.conf"), KRB5_KDC_PROFILE=str(node.run / "kdc.conf"))
    return subprocess.run(["kadmin.local", "-q", query], capture_output=True, text=True, env=env, timeout=20)


def daemon_pids(node):
    env = wait_status(node, lambda p: len(p["daemons"]) == 3 and all(d["running"] for d in p["daemons"]), 15,
                      "three running daemons in status")
    return {d["name"]: d for d in env["payload"]["daemons"]}


def ready(node):
    wait_health(node, True, READY)
    return wait_status(node, lambda p: p["healthy"] and "krb5kdc" in p["detail"], 10, "a healthy status")["payload"]


def realm_containers(node):
    env = dict(os.environ)
    url = "ldapi://" + str(node.run / "slapd" / "ldapi").replace("/", "%2F") + "/"
    r = subprocess.run(["ldapsearch", "-Q", "-LLL", "-Y", "EXTERNAL", "-H", url, "-b", "dc=coop,dc=lan",
                        "(objectClass=krbRealmContainer)", "dn"], capture_output=True, text=True, env=env, timeout=20)
    assert r.returncode == 0, r.stderr
    return [l for l in r.stdout.splitlines() if l.startswith("dn:")]


def test_example_config_members_log_in_and_the_directory_is_locked_down(identity_node):
    """examples/identity.toml as-is: provision, a member's whole life, and
    every security default seen from the member's side."""
    node = identity_node("example", config=EXAMPLE.read_text())
    payload = ready(node)
    assert [d["name"] for d in payload["daemons"]] == list(DAEMONS)
    detail = payload["detail"]
    assert detail["slapd"]["ok"] and detail["kadmind"]["ok"]
    assert detail["krb5kdc"]["preauth_required"] is True, detail
    assert payload["daemon"]["version"].startswith("@(#) $OpenLDAP: slapd"), payload["daemon"]
    assert (node.state / "stash").stat().st_mode & 0o777 == 0o600
    assert (node.state / "tls" / "key.pem").stat().st_mode & 0o777 == 0o600

    # A member, who logs in with her password.
    admin(node, "user", "add", "alice", "--name", "Alice Example", password=PASSWORD)
    r = kinit(node, "alice")
    assert r.returncode == 0, r.stderr
    klist = subprocess.run(["klist", "-e"], capture_output=True, text=True, env=krb_env(node), timeout=10)
    assert "krbtgt/COOP.LAN@COOP.LAN" in klist.stdout and "aes256-cts-hmac-sha1-96" in klist.stdout, klist.stdout
    # Pre-authentication on every principal: the KDC first answered her
    # AS-REQ without it with PREAUTH_REQUIRED.
    assert "REQUIRES_PRE_AUTH" in kadmin_local(node, "getprinc alice").stdout
    kdc_log = (node.run / "krb5kdc.log").read_text()
    assert re.search(r"AS_REQ .*NEEDED_PREAUTH: alice@COOP.LAN", kdc_log), kdc_log[-2000:]

    # A weak password is refused with the policy's reason, and nothing is left.
    r = admin(node, "user", "add", "bob", password="short", check=False)
    assert r.returncode != 0 and "too short" in r.stderr.lower(), r.stderr
    assert "bob" not in admin(node, "user", "list").stdout
    assert "bob@COOP.LAN" not in kadmin_local(node, "listprincs").stdout

    # An RC4-only client gets nothing: the realm has AES keys only.
    rc4 = node.tmp / "krb5-rc4.conf"
    rc4.write_text((node.run / "krb5.conf").read_text().replace(
        "permitted_enctypes = aes256-cts-hmac-sha1-96 aes128-cts-hmac-sha1-96",
        "permitted_enctypes = rc4-hmac").replace("allow_weak_crypto = false", "allow_weak_crypto = true"))
    r = kinit(node, "alice", ccache="cc-rc4", conf=rc4)
    assert r.returncode != 0 and "encryption type" in r.stderr.lower(), r.stderr

    # A service principal for another hub service: kvno gets her a ticket.
    admin(node, "service", "add", "HTTP/web.coop.lan", "--keytab", str(node.tmp / "web.keytab"))
    r = subprocess.run(["kvno", "HTTP/web.coop.lan"], capture_output=True, text=True, env=krb_env(node), timeout=20)
    assert r.returncode == 0 and "kvno = " in r.stdout, r.stderr
    # A member machine's keytab logs in without a password.
    keytab = node.tmp / "m1.keytab"
    admin(node, "host", "add", "m1.coop.lan", "--keytab", str(keytab))
    assert keytab.stat().st_mode & 0o777 == 0o600
    r = kinit(node, "host/m1.coop.lan", ccache="cc-host", keytab=keytab)
    assert r.returncode == 0, r.stderr

    # LDAP: she reads the directory over StartTLS...
    dn = "uid=alice,ou=people,dc=coop,dc=lan"
    r = ldapsearch(node, "-x", "-D", dn, "-w", PASSWORD, "-b", "dc=coop,dc=lan", "(uid=alice)", "cn", "uidNumber")
    assert r.returncode == 0 and "cn: Alice Example" in r.stdout, r.stderr
    # ...but not her own keys or password hash,
    r = ldapsearch(node, "-x", "-D", dn, "-w", PASSWORD, "-b", dn, "-s", "base", "krbPrincipalKey", "userPassword")
    assert r.returncode == 0 and f"dn: {dn}" in r.stdout, r.stderr
    assert "krbPrincipalKey" not in r.stdout and "userPassword" not in r.stdout, r.stdout
    # ...and nobody reads anything anonymously, or binds in plain text.
    r = ldapsearch(node, "-x", "-b", "dc=coop,dc=lan", "(objectClass=*)", starttls=False)
    assert r.returncode != 0 and "anonymous bind disallowed" in r.stderr.lower(), (r.stdout, r.stderr)
    r = ldapsearch(node, "-x", "-D", dn, "-w", PASSWORD, "-b", "dc=coop,dc=lan", starttls=False)
    assert r.returncode == 13 and "confidentiality required" in r.stderr.lower(), (r.returncode, r.stderr)

    # Disabled: no ticket and no bind; enabled again: both.
    admin(node, "user", "disable", "alice")
    r = kinit(node, "alice", ccache="cc2")
    assert r.returncode != 0 and "revoked" in r.stderr.lower(), r.stderr
    r = ldapsearch(node, "-x", "-D", dn, "-w", PASSWORD, "-b", dn, "-s", "base", "cn")
    assert r.returncode == 49, (r.returncode, r.stderr)
    admin(node, "user", "enable", "alice")
    assert kinit(node, "alice", ccache="cc3").returncode == 0

    # Metrics: cn=Monitor under openldap_exporter's names, KDC counts.
    wait_until(lambda: (metric(node.metrics_port, "ntari_identity_kdc_requests_total", request="AS",
                               result="ISSUE") or 0) >= 3, 10, "the logins counted")
    assert metric(node.metrics_port, "openldap_monitor_counter_object",
                  dn="cn=Current,cn=Connections,cn=Monitor") >= 1
    assert metric(node.metrics_port, "openldap_monitor_operation", dn="cn=Bind,cn=Operations,cn=Monitor") >= 1
    assert metric(node.metrics_port, "ntari_node_daemon_up", daemon="kadmind") == 1


def test_kill_9_of_each_daemon_health_false_at_once_and_logins_come_back(identity_node):
    node = identity_node()
    ready(node)
    admin(node, "user", "add", "alice", password=PASSWORD)
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
        assert after[name]["pid"] != pid and after[name]["restarts"] == before[name]["restarts"] + 1, after[name]
        assert "SIGKILL" in (after[name]["last_exit"] or ""), after[name]
        # Only that daemon was restarted.
        for other in DAEMONS:
            if other != name:
                assert after[other]["pid"] == before[other]["pid"], (name, other)
        assert not pid_alive(pid)
        r = kinit(node, "alice", ccache=f"cc-{name}")
        assert r.returncode == 0, f"after kill -9 of {name}: {r.stderr}"


def test_node_sigkill_leaves_no_daemon_and_a_restart_reuses_the_realm(identity_node):
    node = identity_node()
    ready(node)
    admin(node, "user", "add", "alice", password=PASSWORD)
    pids = [d["pid"] for d in daemon_pids(node).values()]
    record = (node.state / "provisioned.json").read_text()
    os.kill(node.proc.pid, signal.SIGKILL)
    wait_until(lambda: not any(pid_alive(p) for p in pids), 5, "every daemon gone with the node")
    # Respawned (as OpenRC would): the same realm, not a second one.
    node = identity_node()
    ready(node)
    assert (node.state / "provisioned.json").read_text() == record
    assert len(realm_containers(node)) == 1
    assert kinit(node, "alice").returncode == 0
    # A lifecycle cycle (cleanup, configure again) keeps it too.
    for t in (T.DEACTIVATE, T.CLEANUP, T.CONFIGURE, T.ACTIVATE):
        assert node.lc.change_state(t) is True, t
    ready(node)
    assert len(realm_containers(node)) == 1 and kinit(node, "alice", ccache="cc2").returncode == 0
    log = node.proc.stderr_path.read_text() + node.proc.stdout_path.read_text()
    assert "provisioned the realm" not in log, "a configure provisioned again"


def test_provisioning_killed_midway_resumes_and_makes_one_realm(identity_node):
    """The node is SIGKILLed while it provisions (seen by its record's
    stage); the next start resumes, and there is exactly one realm."""
    for attempt in range(4):
        node = identity_node(f"mid{attempt}", watch=False)
        record = node.state / "provisioned.json"
        stage = None
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and stage is None:
            try:
                text = record.read_text()
            except OSError:
                text = ""
            m = re.search(r'"stage": "(\w+)"', text)
            if m:
                stage = m.group(1)
            else:
                time.sleep(0.002)
        os.kill(node.proc.pid, signal.SIGKILL)
        node.proc.wait(5)
        if stage in ("started", "directory", "realm"):
            break
    else:
        pytest.fail(f"never caught the provisioning mid-way (last stage seen: {stage})")
    print(f"killed at stage {stage} (attempt {attempt})")
    node = identity_node(f"mid{attempt}")
    ready(node)
    assert '"stage": "done"' in record.read_text()
    assert len(realm_containers(node)) == 1
    admin(node, "user", "add", "alice", password=PASSWORD)
    assert kinit(node, "alice").returncode == 0


def test_a_foreign_database_without_a_record_is_refused(identity_node):
    node = identity_node("foreign", autostart=False)
    (node.state / "ldap").mkdir()
    (node.state / "ldap" / "data.mdb").write_bytes(b"someone else's directory")
    assert node.lc.wait_ready(15)
    assert node.lc.change_state(T.CONFIGURE) is False
    env = wait_status(node, lambda p: "refusing to provision a second realm" in (p["last_error"] or ""), 5,
                      "the refusal in status")
    assert "realm" in env["payload"]["last_error"]
    assert (node.state / "ldap" / "data.mdb").read_bytes() == b"someone else's directory"
    assert not (node.state / "stash").exists()


def test_check_config_passes_on_a_fresh_machine_and_names_a_bad_key(tmp_path):
    """What OpenRC runs before every start and reload: on a state dir that
    does not exist yet (a fresh machine), then on a bad config."""
    open_to_others(tmp_path)
    cfg = tmp_path / "identity.toml"
    cfg.write_text(config_text())
    cmd = [find_binary("ntari-identity"), "--config", str(cfg), "--state-dir", str(tmp_path / "fresh-state"),
           "--run-dir", str(tmp_path / "fresh-run"), "--node-config", str(tmp_path / "absent.toml"), "check-config"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert not (tmp_path / "fresh-state" / "ldap").exists(), "check-config provisioned something"
    cfg.write_text(with_setting(config_text(), 'enctypes = ["rc4-hmac"]'))
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "identity.toml:" in r.stderr and "enctypes" in r.stderr, r.stderr


BAD = [
    ('realm = "coop.lan"', "realm"),
    ('domain = "other.lan"', "realm"),                      # a realm cannot be renamed
    ('base_dn = "ou=x,dc=lan"', "base_dn"),
    ('base_dn = "dc=other,dc=lan"', "base_dn"),             # nor its directory moved
    ('hostname = "-hub"', "hostname"),
    ('enctypes = ["aes256-cts-hmac-sha1-96", "rc4-hmac"]', "enctypes[1]"),
    ('enctypes = ["aes256-cts-hmac-sha384-192"]', "enctypes"),
    ("[ldap]\nlisten = []", "ldap.listen"),
    ('[ldap]\nuser = "nobody-here"', "ldap.user"),
    ("[ldap]\nldaps_port = {ldap_port}", "ldap.ldaps_port"),   # the ldap:// port again
    ("[kdc]\nport = 70000", "kdc.port"),
    ('[kdc]\nlisten = ["not-an-address"]', "kdc.listen"),
    ("[password_policy]\nmin_length = 3", "password_policy.min_length"),
    ("[password_policy]\nmin_classes = 6", "password_policy.min_classes"),
    ("[password_policy]\nhistory = 1000", "password_policy.history"),
    ('[password_policy]\nlockout = "soon"', "password_policy.lockout"),
    ('[tickets]\nmax_life = "forever"', "tickets.max_life"),
    ('[tickets]\nmax_renewable_life = "1h"', "tickets.max_renewable_life"),
    ('relam = "X"', "relam"),
]


def test_an_invalid_config_is_refused_and_the_running_daemons_are_untouched(identity_node):
    """Every setting, wrong in turn, on reload (SIGHUP): refused naming
    file and key, the node Active, the same three daemons running."""
    node = identity_node()
    ready(node)
    before = {n: d["pid"] for n, d in daemon_pids(node).items()}
    good = node.config.read_text()
    for bad, key in BAD:
        bad = bad.replace("{ldap_port}", str(node.ldap_port))
        node.config.write_text(with_setting(good, bad))
        node.status.skip()
        os.kill(node.proc.pid, signal.SIGHUP)
        env = wait_status(node, lambda p: f": {key}" in (p["last_error"] or "") or f"`{key}`" in (
            p["last_error"] or ""), 10, f"the error naming {key}")
        err = env["payload"]["last_error"]
        assert "identity.toml" in err and "untouched" in err, (bad, err)
        assert env["payload"]["lifecycle_state"] == "active", bad
        print(f"{key}: {err.split('identity.toml', 1)[1]}")
    after = {n: d["pid"] for n, d in daemon_pids(node).items()}
    assert after == before
    assert node.proc.alive()
    # A good change is applied: a longer minimum refuses her 15 characters.
    node.config.write_text(with_setting(good, "[password_policy]\nmin_length = 16"))
    node.status.skip()
    os.kill(node.proc.pid, signal.SIGHUP)
    wait_status(node, lambda p: p["healthy"] and p["last_error"] is None, 20, "the new policy in force")
    r = admin(node, "user", "add", "alice", password=PASSWORD, check=False)
    assert r.returncode != 0 and "at least 16 characters" in r.stderr, r.stderr
    # The good config again: accepted, and the realm still serves.
    node.config.write_text(good)
    node.status.skip()
    os.kill(node.proc.pid, signal.SIGHUP)
    wait_status(node, lambda p: p["healthy"] and p["last_error"] is None, 20, "the old policy back")
    admin(node, "user", "add", "alice", password=PASSWORD)
    assert kinit(node, "alice").returncode == 0


def test_cross_realm_trust_a_member_gets_a_ticket_for_the_other_cooperatives_service(identity_node):
    """Two cooperatives, COOP.LAN and OTHER.LAN, each its own node; the same
    shared secret given to `trust add` on both. alice@COOP.LAN then gets a
    service ticket for HTTP/web.other.lan@OTHER.LAN."""
    a = identity_node("a")
    ready(a)
    # The other cooperative's node on a DDS domain of its own (it has the
    # same node name); watched through its metrics.
    b_env = {"ROS_DOMAIN_ID": str(pick_domain_id(201, 230))}
    b = identity_node("b", config=config_text("other.lan"), watch=False, env=b_env)
    def b_healthy():
        try:
            return metric(b.metrics_port, "ntari_node_healthy", service="identity") == 1
        except OSError:     # not listening yet
            return False
    wait_until(b_healthy, READY, "the other cooperative's node healthy")
    secret = "a-shared-secret-for-the-trust-0042"
    admin(a, "trust", "add", "OTHER.LAN", "--kdc", f"127.0.0.1:{b.kdc_port}", password=secret)
    admin(b, "trust", "add", "COOP.LAN", "--kdc", f"127.0.0.1:{a.kdc_port}", password=secret)
    for node, realm in ((a, "OTHER.LAN"), (b, "COOP.LAN")):
        assert realm in admin(node, "trust", "list").stdout
    admin(a, "user", "add", "alice", password=PASSWORD)
    admin(b, "service", "add", "HTTP/web.other.lan", "--keytab", str(b.tmp / "web-other.keytab"))
    # Node A publishes OTHER.LAN's KDC in its krb5.conf after a reload.
    a.status.skip()
    os.kill(a.proc.pid, signal.SIGHUP)
    wait_until(lambda: "OTHER.LAN = {" in (a.run / "krb5.conf").read_text(), 15, "OTHER.LAN in krb5.conf")
    ready(a)
    assert kinit(a, "alice@COOP.LAN").returncode == 0
    r = subprocess.run(["kvno", "HTTP/web.other.lan@OTHER.LAN"], capture_output=True, text=True,
                       env=krb_env(a), timeout=20)
    assert r.returncode == 0 and "kvno = " in r.stdout, r.stderr
    klist = subprocess.run(["klist"], capture_output=True, text=True, env=krb_env(a), timeout=10).stdout
    assert "krbtgt/OTHER.LAN@COOP.LAN" in klist and "HTTP/web.other.lan@OTHER.LAN" in klist, klist
    # Without the trust, no ticket: remove it on B and ask again afresh.
    admin(b, "trust", "remove", "COOP.LAN")
    subprocess.run(["kdestroy"], env=krb_env(a), capture_output=True, timeout=10)
    assert kinit(a, "alice@COOP.LAN").returncode == 0
    r = subprocess.run(["kvno", "HTTP/web.other.lan@OTHER.LAN"], capture_output=True, text=True,
                       env=krb_env(a), timeout=20)
    assert r.returncode != 0, r.stdout

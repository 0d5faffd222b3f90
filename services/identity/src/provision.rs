//! First configure: make the realm, once.
//!
//! Provisioning runs at configure ([`Service::prepare`]), before the
//! supervised daemons exist, with a slapd of its own on the ldapi socket
//! only (killed with the node if the node dies: `setpriv --pdeathsig`).
//! It goes through four stages, each recorded in
//! `<state>/provisioned.json` (written atomically) before the next begins:
//!
//! 1. `started`: nothing made yet that cannot be thrown away;
//! 2. `directory`: the base tree is in the database (`slapadd`, offline);
//! 3. `realm`: the realm container, its master key and its stash exist
//!    (`kdb5_ldap_util create`);
//! 4. `done`: policy, probe and admin principals, keytabs, TLS certificate.
//!
//! A run killed mid-way resumes from the last recorded stage; the work of
//! the stage it was in is undone first (a half-loaded database is emptied,
//! a realm without its recorded stage is destroyed — no principal can be in
//! it yet). A state dir holding a database or a stash but no record is
//! refused: never a second realm over the first. Once `done`, configure
//! only checks that the config still names the same realm and base DN.
//!
//! [`Service::prepare`]: ntari_node::service::Service::prepare

use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ntari_node::fsutil::write_atomic;
use ntari_node::service::ConfigIssue;
use serde::{Deserialize, Serialize};

use crate::config::IdentityConfig;
use crate::daemons::{self, SlapdUser};
use crate::kadmin;
use crate::render::{Layout, ADMIN_PRINCIPAL, PROBE_PRINCIPAL};

/// How long one provisioning command may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Started,
    Directory,
    Realm,
    Done,
}

/// `<state>/provisioned.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub realm: String,
    pub base_dn: String,
    pub stage: Stage,
}

/// Why provisioning failed; becomes the configure error.
fn issue(key: &str, message: impl Into<String>) -> ConfigIssue {
    ConfigIssue::new(key, message)
}

pub fn read_record(layout: &Layout) -> Result<Option<Record>, ConfigIssue> {
    let path = layout.provision_record();
    match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text).map(Some).map_err(|e| {
            issue(
                "realm",
                format!("{} is unreadable ({e}); restore it from a backup, it records which realm this state dir holds", path.display()),
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(issue("realm", format!("{}: {e}", path.display()))),
    }
}

fn write_record(layout: &Layout, record: &Record) -> Result<(), ConfigIssue> {
    let text = serde_json::to_string_pretty(record).unwrap_or_default();
    write_atomic(&layout.provision_record(), text.as_bytes(), 0o600).map_err(|e| {
        issue(
            "realm",
            format!("writing {}: {e}", layout.provision_record().display()),
        )
    })
}

/// Provisions what is missing; a no-op (two checks) once done.
/// `render` writes the daemons' files into the run dir (the runtime
/// renders them after `prepare`, but provisioning needs them now).
pub fn provision(
    config: &IdentityConfig,
    layout: &Layout,
    render: impl Fn() -> Result<(), String>,
) -> Result<(), ConfigIssue> {
    let realm = config.realm();
    let base_dn = config.base_dn();
    let mut record = match read_record(layout)? {
        Some(record) => {
            if record.realm != realm {
                return Err(issue(
                    "realm",
                    format!(
                        "{} already holds realm {}, not {realm}: a realm cannot be renamed. Set realm = \"{}\" (or its domain) back, or give this realm its own state dir",
                        layout.state_dir.display(), record.realm, record.realm
                    ),
                ));
            }
            if record.base_dn != base_dn {
                return Err(issue(
                    "base_dn",
                    format!(
                        "{} already holds base DN {}, not {base_dn}",
                        layout.state_dir.display(),
                        record.base_dn
                    ),
                ));
            }
            if record.stage == Stage::Done {
                if !layout.stash().exists() {
                    return Err(issue(
                        "realm",
                        format!("the master key stash {} is missing: restore it from a backup (without it no key in the directory can be read)", layout.stash().display()),
                    ));
                }
                return Ok(());
            }
            tracing::warn!(stage = ?record.stage, "provisioning of {realm} was interrupted; resuming");
            record
        }
        None => {
            if dir_has_files(&layout.database_dir()) || layout.stash().exists() {
                return Err(issue(
                    "realm",
                    format!(
                        "{} holds a directory database or a master key stash but no {}: refusing to provision a second realm over it. Restore the record, or move the state dir away to start afresh",
                        layout.state_dir.display(),
                        layout.provision_record().display()
                    ),
                ));
            }
            let record = Record {
                realm: realm.clone(),
                base_dn: base_dn.clone(),
                stage: Stage::Started,
            };
            write_record(layout, &record)?;
            record
        }
    };
    let started = Instant::now();
    render().map_err(|e| issue("realm", format!("rendering the daemons' files: {e}")))?;
    let user = SlapdUser::resolve(config).map_err(|e| issue("ldap.user", e))?;
    daemons::prepare_dirs(layout, &user).map_err(|e| issue("realm", e))?;

    // slapd does not start without its TLS key.
    if !layout.tls_cert().exists() || !layout.tls_key().exists() {
        make_certificate(config, layout, &user)?;
    }
    if record.stage == Stage::Started {
        load_base_tree(config, layout, &user)?;
        record.stage = Stage::Directory;
        write_record(layout, &record)?;
    }
    let mut slapd = TempSlapd::start(layout, &user)?;
    let result = (|| {
        if record.stage == Stage::Directory {
            create_realm(config, layout, &slapd)?;
            record.stage = Stage::Realm;
            write_record(layout, &record)?;
        }
        finish(config, layout)?;
        record.stage = Stage::Done;
        write_record(layout, &record)
    })();
    slapd.stop();
    result?;
    tracing::info!(realm = %realm, ms = started.elapsed().as_millis() as u64, "provisioned the realm");
    Ok(())
}

fn dir_has_files(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .map(|mut d| d.next().is_some())
        .unwrap_or(false)
}

/// Stage 2: the base tree, loaded offline by `slapadd` into an empty
/// database (a half-loaded one from an interrupted run is emptied first).
fn load_base_tree(
    config: &IdentityConfig,
    layout: &Layout,
    user: &SlapdUser,
) -> Result<(), ConfigIssue> {
    let db = layout.database_dir();
    if let Ok(entries) = std::fs::read_dir(&db) {
        for entry in entries.flatten() {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    let base = config.base_dn();
    let first = base
        .split(',')
        .next()
        .and_then(|p| p.strip_prefix("dc="))
        .unwrap_or("coop");
    let mut ldif = format!(
        "dn: {base}\nobjectClass: dcObject\nobjectClass: organization\ndc: {first}\no: {realm}\n\n",
        realm = config.realm()
    );
    for ou in ["people", "groups", "hosts", "services"] {
        ldif.push_str(&format!(
            "dn: ou={ou},{base}\nobjectClass: organizationalUnit\nou: {ou}\n\n"
        ));
    }
    let mut command = Command::new("slapadd");
    command
        .args(["-q", "-f"])
        .arg(layout.slapd_conf())
        .args(["-b", &base]);
    run(
        command,
        Some(ldif.as_bytes()),
        "slapadd (loading the base tree)",
    )?;
    user.chown_tree(&db).map_err(|e| issue("ldap.user", e))
}

/// Stage 3: `kdb5_ldap_util create` with a random master password on its
/// stdin (never on a command line), which writes the stash.
fn create_realm(
    config: &IdentityConfig,
    layout: &Layout,
    slapd: &TempSlapd,
) -> Result<(), ConfigIssue> {
    let realm = config.realm();
    let url = format!("{}/", layout.ldapi_url());
    if slapd.realm_exists(config, layout) {
        // Made by the interrupted run, which did not get to record it: no
        // principal can be in it yet, so it is safe to make it again.
        tracing::warn!("destroying the half-made realm {realm} of an interrupted provisioning");
        let mut destroy = krb_command(layout, "kdb5_ldap_util");
        destroy.args(["-H", &url, "destroy", "-f", "-r", &realm]);
        run(destroy, None, "kdb5_ldap_util destroy")?;
    }
    let _ = std::fs::remove_file(layout.stash());
    let password = random_hex(32);
    let mut create = krb_command(layout, "kdb5_ldap_util");
    create
        .args([
            "-H",
            &url,
            "create",
            "-subtrees",
            &config.base_dn(),
            "-r",
            &realm,
            "-s",
            "-sf",
        ])
        .arg(layout.stash());
    run(
        create,
        Some(format!("{password}\n{password}\n").as_bytes()),
        "kdb5_ldap_util create (the realm)",
    )?;
    Ok(())
}

/// Stage 4, every step idempotent: the password policy, the probe and
/// admin principals with fresh keytabs.
fn finish(config: &IdentityConfig, layout: &Layout) -> Result<(), ConfigIssue> {
    sync_policy(config, layout).map_err(|e| issue("password_policy", e))?;
    for (principal, keytab) in [
        (PROBE_PRINCIPAL, layout.probe_keytab()),
        (ADMIN_PRINCIPAL, layout.admin_keytab()),
    ] {
        if kadmin::run(layout, &format!("getprinc {principal}")).is_err() {
            kadmin::run(layout, &format!("addprinc -randkey {principal}"))
                .map_err(|e| issue("realm", e))?;
        }
        let _ = std::fs::remove_file(&keytab);
        kadmin::run(
            layout,
            &format!("ktadd -k {} {principal}", keytab.display()),
        )
        .map_err(|e| issue("realm", e))?;
        set_mode(&keytab, 0o600).map_err(|e| issue("realm", e))?;
    }
    Ok(())
}

/// Makes kadmin's policy `default` (which every new principal gets) say
/// what `password_policy` says. Called at every slapd start, but it only
/// runs kadmin.local (two processes, ~30 ms of the node's start) when the
/// policy differs from the one last applied, recorded in
/// [`Layout::applied_policy`] once kadmin took it.
pub fn sync_policy(config: &IdentityConfig, layout: &Layout) -> Result<(), String> {
    let p = &config.password_policy;
    let options = format!(
        "-minlength {} -minclasses {} -history {} -maxfailure {} -failurecountinterval {}s -lockoutduration {}s",
        p.min_length,
        p.min_classes,
        p.history.max(1),
        p.max_failures,
        crate::config::seconds(&p.failure_interval),
        crate::config::seconds(&p.lockout),
    );
    let record = layout.applied_policy();
    if std::fs::read_to_string(&record).is_ok_and(|applied| applied == options) {
        return Ok(());
    }
    let verb = if kadmin::run(layout, "getpol default").is_ok() {
        "modpol"
    } else {
        "addpol"
    };
    kadmin::run(layout, &format!("{verb} {options} default"))?;
    write_atomic(&record, options.as_bytes(), 0o600)
        .map_err(|e| format!("{}: {e}", record.display()))
}

/// A self-signed certificate for StartTLS and ldaps (EC P-256, 10 years),
/// its key readable only by slapd's user. Members pin it or trust it by
/// its fingerprint (docs/services/identity.md).
fn make_certificate(
    config: &IdentityConfig,
    layout: &Layout,
    user: &SlapdUser,
) -> Result<(), ConfigIssue> {
    let host = config.hostname();
    let dir = layout.tls_dir();
    std::fs::create_dir_all(&dir)
        .map_err(|e| issue("hostname", format!("{}: {e}", dir.display())))?;
    let key_tmp = dir.join("key.pem.tmp");
    let cert_tmp = dir.join("cert.pem.tmp");
    let mut openssl = Command::new("openssl");
    openssl
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "3650",
        ])
        .args(["-subj", &format!("/CN={host}")])
        .args([
            "-addext",
            &format!("subjectAltName=DNS:{host},DNS:localhost,IP:127.0.0.1"),
        ])
        .arg("-keyout")
        .arg(&key_tmp)
        .arg("-out")
        .arg(&cert_tmp);
    run(openssl, None, "openssl req (the TLS certificate)")?;
    let finish = || -> Result<(), String> {
        set_mode(&key_tmp, 0o600)?;
        user.chown(&key_tmp)?;
        set_mode(&cert_tmp, 0o644)?;
        std::fs::rename(&key_tmp, layout.tls_key()).map_err(|e| e.to_string())?;
        std::fs::rename(&cert_tmp, layout.tls_cert()).map_err(|e| e.to_string())
    };
    finish().map_err(|e| issue("hostname", format!("installing the TLS certificate: {e}")))
}

fn set_mode(path: &Path, mode: u32) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// A command of MIT's with this realm's profile in its environment.
pub fn krb_command(layout: &Layout, program: &str) -> Command {
    let mut command = Command::new(program);
    command.envs(layout.krb5_env());
    command
}

fn run(command: Command, stdin: Option<&[u8]>, what: &str) -> Result<(), ConfigIssue> {
    let output = run_output(command, stdin).map_err(|e| issue("realm", format!("{what}: {e}")))?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let last = stderr
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("no output");
    Err(issue(
        "realm",
        format!("{what} failed ({}): {last}", output.status),
    ))
}

/// Runs a command to its end, killed after [`STEP_TIMEOUT`].
pub(crate) fn run_output(
    mut command: Command,
    stdin: Option<&[u8]>,
) -> Result<std::process::Output, String> {
    command
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot start {:?}: {e}", command.get_program()))?;
    if let (Some(data), Some(mut pipe)) = (stdin, child.stdin.take()) {
        let _ = pipe.write_all(data);
    }
    let deadline = Instant::now() + STEP_TIMEOUT;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => return child.wait_with_output().map_err(|e| e.to_string()),
            Ok(None) if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("no answer within {}s", STEP_TIMEOUT.as_secs()));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => return Err(e.to_string()),
        }
    }
}

fn random_hex(bytes: usize) -> String {
    use rand_core::RngCore;
    let mut buf = vec![0u8; bytes];
    rand_core::OsRng.fill_bytes(&mut buf);
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// The provisioning slapd: ldapi only, dies with the node.
struct TempSlapd {
    child: Option<Child>,
}

impl TempSlapd {
    fn start(layout: &Layout, user: &SlapdUser) -> Result<TempSlapd, ConfigIssue> {
        let _ = std::fs::remove_file(layout.ldapi_socket());
        let mut command = Command::new("setpriv");
        command
            .args(["--pdeathsig", "KILL", "--", "slapd", "-d", "none", "-h"])
            .arg(format!("{}/", layout.ldapi_url()))
            .arg("-f")
            .arg(layout.slapd_conf())
            .args(user.slapd_args())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let child = command
            .spawn()
            .map_err(|e| issue("realm", format!("cannot start slapd for provisioning: {e}")))?;
        let mut slapd = TempSlapd { child: Some(child) };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if daemons::ldapi_answers(layout) {
                return Ok(slapd);
            }
            if let Some(child) = slapd.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    let mut stderr = String::new();
                    if let Some(mut pipe) = child.stderr.take() {
                        let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
                    }
                    slapd.child = None;
                    // slapd's last lines are its shutdown; the reason is before them.
                    let last = stderr
                        .lines()
                        .rev()
                        .find(|l| {
                            !(l.trim().is_empty()
                                || l.contains("connections_destroy")
                                || l.contains("slapd stopped")
                                || l.contains("slapd destroy"))
                        })
                        .unwrap_or("no output");
                    return Err(issue(
                        "realm",
                        format!("slapd exited during provisioning ({status}): {last}"),
                    ));
                }
            }
            if Instant::now() > deadline {
                slapd.stop();
                return Err(issue(
                    "realm",
                    "slapd did not answer on ldapi within 10s during provisioning",
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn realm_exists(&self, config: &IdentityConfig, layout: &Layout) -> bool {
        let mut search = Command::new("ldapsearch");
        search
            .args([
                "-Q",
                "-LLL",
                "-Y",
                "EXTERNAL",
                "-H",
                &format!("{}/", layout.ldapi_url()),
            ])
            .args([
                "-s",
                "base",
                "-b",
                &format!("cn={},cn=krbContainer,{}", config.realm(), config.base_dn()),
                "dn",
            ]);
        run_output(search, None)
            .map(|o| o.status.success())
            .unwrap_or(false)
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for TempSlapd {
    fn drop(&mut self) {
        self.stop();
    }
}

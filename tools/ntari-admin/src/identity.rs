//! `ntari-admin identity user | group | host | service | trust`: the
//! cooperative's members, groups, hosts, services and trusted realms, in
//! ntari-identity's directory and KDC.
//!
//! Everything runs on the hub, as root, while ntari-identity is Active:
//! LDAP over slapd's ldapi socket with SASL EXTERNAL (root is the
//! directory's manager there), Kerberos through `kadmin.local` with the
//! realm's files (its queries on its stdin, so no password is ever on a
//! command line). A member is one entry, `uid=<uid>,ou=people,<base>`:
//! her account (inetOrgPerson, posixAccount), her password for simple
//! binds (userPassword, hashed by slapd) and her Kerberos principal
//! (krbPrincipalAux, added by kadmin on the same entry).
//!
//! Every change is undone, in reverse order, when a later step fails, so
//! a refused password leaves no entry behind.

use std::collections::{BTreeMap, HashSet};
use std::io::BufRead;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use clap::{Args, Subcommand};
use ldap3::exop::PasswordModify;
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, LdapError, Mod, Scope, SearchEntry};
use ntari_identity::config::{IdentityConfig, PasswordPolicy};
use ntari_identity::provision::{self, Stage};
use ntari_identity::render::{self, Layout};
use ntari_node::service::Paths;

use crate::Exit;

const DEFAULT_CONFIG: &str = "/etc/ntari/services/identity.toml";
const DEFAULT_STATE_DIR: &str = "/var/lib/ntari/identity";
const DEFAULT_RUN_DIR: &str = "/run/ntari/identity";

/// Every member's primary group.
const MEMBERS_GROUP: &str = "members";
const MEMBERS_GID: u32 = 10000;
/// First uidNumber of a member, first gidNumber of a group of ours.
const FIRST_UID: u32 = 10000;
const FIRST_GID: u32 = 10001;
/// krbTicketFlags: KRB5_KDB_DISALLOW_ALL_TIX (`-allow_tix`).
const DISALLOW_ALL_TIX: u64 = 0x40;
/// How long the LDAP connection may take to open.
const LDAP_TIMEOUT: Duration = Duration::from_secs(3);
/// Length of a generated cross-realm secret.
const SECRET_LEN: usize = 32;

/// Where ntari-identity keeps its things on this hub.
#[derive(Debug, Clone, Args)]
pub struct Hub {
    /// ntari-identity's config (domain, realm, ports, password policy); a
    /// missing file means the defaults.
    #[arg(long, global = true, value_name = "FILE", default_value = DEFAULT_CONFIG)]
    config: PathBuf,
    /// ntari-identity's state directory (the directory, the stash, trusts).
    #[arg(long, global = true, value_name = "DIR", default_value = DEFAULT_STATE_DIR)]
    state_dir: PathBuf,
    /// ntari-identity's run directory (krb5.conf, kdc.conf, the ldapi socket).
    #[arg(long, global = true, value_name = "DIR", default_value = DEFAULT_RUN_DIR)]
    run_dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct IdentityArgs {
    #[command(flatten)]
    hub: Hub,
    #[command(subcommand)]
    command: IdentityCommand,
}

#[derive(Debug, Subcommand)]
pub enum IdentityCommand {
    /// Members: an account, a password (Kerberos and LDAP) and a principal each.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// POSIX groups of members (every member is in `members`).
    Group {
        #[command(subcommand)]
        command: GroupCommand,
    },
    /// Machines: `host/<fqdn>` principals and their keytabs.
    Host {
        #[command(subcommand)]
        command: HostCommand,
    },
    /// Services: `<service>/<fqdn>` principals and their keytabs.
    Service {
        #[command(subcommand)]
        command: ServiceCommand,
    },
    /// Cross-realm trust with another cooperative's realm, both ways.
    Trust {
        #[command(subcommand)]
        command: TrustCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add a member: her entry under ou=people, her membership of
    /// `members`, her principal (the realm's password policy applies).
    Add {
        /// Login name: a-z, 0-9, '_', '.', '-', up to 32, not starting with a digit.
        uid: String,
        /// Full name [default: the uid].
        #[arg(long, value_name = "FULL NAME")]
        name: Option<String>,
        /// Mail address (`mail`).
        #[arg(long, value_name = "ADDRESS")]
        email: Option<String>,
        /// Read the password from the first line of stdin instead of the terminal.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Set a member's password (Kerberos and LDAP).
    Passwd {
        uid: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// No new tickets and no LDAP binds for the member (tickets she holds
    /// last until they expire).
    Disable { uid: String },
    /// Undo `disable`.
    Enable { uid: String },
    /// Remove the member: principal, entry, group memberships.
    Remove { uid: String },
    /// Members: uid, name, uidNumber, groups, disabled, last login.
    List {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum GroupCommand {
    /// Add a POSIX group under ou=groups.
    Add {
        name: String,
        /// Its gidNumber [default: the next free from 10001].
        #[arg(long, value_name = "N")]
        gid: Option<u32>,
    },
    /// Remove a group (not `members`).
    Remove { name: String },
    /// Add members to groups and take them out.
    Member {
        #[command(subcommand)]
        command: GroupMemberCommand,
    },
    /// Groups: name, gidNumber, members.
    List {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum GroupMemberCommand {
    Add { group: String, uid: String },
    Remove { group: String, uid: String },
}

#[derive(Debug, Subcommand)]
pub enum HostCommand {
    /// Add a machine: `cn=<fqdn>,ou=hosts`, principal `host/<fqdn>` with a
    /// random key, written to a keytab (mode 0600) to copy to the machine.
    Add {
        fqdn: String,
        /// Where to write the keytab [default: ./<fqdn>.keytab]; must not exist.
        #[arg(long, value_name = "FILE")]
        keytab: Option<PathBuf>,
    },
    /// Remove a machine: its principal and its entry.
    Remove { fqdn: String },
}

#[derive(Debug, Subcommand)]
pub enum ServiceCommand {
    /// Add a service: `cn=<svc>/<fqdn>,ou=services`, principal
    /// `<svc>/<fqdn>` with a random key, written to a keytab (mode 0600).
    Add {
        /// `<service>/<fqdn>`, e.g. `HTTP/files.coop.lan`.
        principal: String,
        /// Where to write the keytab [default: ./<svc>.<fqdn>.keytab]; must not exist.
        #[arg(long, value_name = "FILE")]
        keytab: Option<PathBuf>,
    },
    /// Remove a service: its principal and its entry.
    Remove { principal: String },
}

#[derive(Debug, Subcommand)]
pub enum TrustCommand {
    /// Trust another realm, both ways: `krbtgt/<REALM>@<OURS>` and
    /// `krbtgt/<OURS>@<REALM>` from a shared secret (the other hub runs the
    /// same with the same secret), and its KDC in krb5.conf after a reload.
    Add {
        /// The other realm, e.g. OTHER.LAN.
        realm: String,
        /// Its KDC as this hub reaches it.
        #[arg(long, value_name = "HOST:PORT")]
        kdc: String,
        /// Read the shared secret from the first line of stdin [default:
        /// generate one and print it once, for the other hub].
        #[arg(long)]
        password_stdin: bool,
    },
    /// End a trust: both krbtgt principals and the KDC line.
    Remove { realm: String },
    /// Trusted realms: KDC, and which of the two principals exist.
    List {
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(args: &IdentityArgs) -> anyhow::Result<Exit> {
    let mut dir = match Directory::open(&args.hub).await? {
        Ok(dir) => dir,
        Err(not_running) => {
            eprintln!("ntari-admin: {not_running}");
            return Ok(Exit::NoAnswer);
        }
    };
    let result = match &args.command {
        IdentityCommand::User { command } => user(&mut dir, command).await,
        IdentityCommand::Group { command } => group(&mut dir, command).await,
        IdentityCommand::Host { command } => match command {
            HostCommand::Add { fqdn, keytab } => {
                let fqdn = check_fqdn(fqdn)?;
                let keytab = keytab
                    .clone()
                    .unwrap_or_else(|| PathBuf::from(format!("{fqdn}.keytab")));
                add_keyed(&mut dir, &Keyed::host(&fqdn), &keytab).await
            }
            HostCommand::Remove { fqdn } => {
                remove_keyed(&mut dir, &Keyed::host(&check_fqdn(fqdn)?)).await
            }
        },
        IdentityCommand::Service { command } => match command {
            ServiceCommand::Add { principal, keytab } => {
                let (svc, fqdn) = check_service(principal)?;
                let keytab = keytab
                    .clone()
                    .unwrap_or_else(|| PathBuf::from(format!("{svc}.{fqdn}.keytab")));
                add_keyed(&mut dir, &Keyed::service(&svc, &fqdn), &keytab).await
            }
            ServiceCommand::Remove { principal } => {
                let (svc, fqdn) = check_service(principal)?;
                remove_keyed(&mut dir, &Keyed::service(&svc, &fqdn)).await
            }
        },
        IdentityCommand::Trust { command } => trust(&mut dir, command).await,
    };
    let _ = dir.ldap.unbind().await;
    result
}

// ---------------------------------------------------------------------------
// The directory and the KDC.

/// slapd over ldapi, bound as the manager, and the realm's files.
struct Directory {
    config: IdentityConfig,
    layout: Layout,
    base: String,
    realm: String,
    ldap: Ldap,
}

fn load_config(path: &Path) -> anyhow::Result<IdentityConfig> {
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let config = IdentityConfig::default();
            config
                .validate()
                .map_err(|issue| anyhow!("the built-in defaults: {issue}"))?;
            Ok(config)
        }
        _ => ntari_node::config::load_service_config(&ntari_identity::Identity::default(), path)
            .map_err(|e| anyhow!("{e}")),
    }
}

impl Directory {
    /// Ok(Err(message)) when slapd does not answer: ntari-identity is not running.
    async fn open(hub: &Hub) -> anyhow::Result<Result<Directory, String>> {
        let config = load_config(&hub.config)?;
        let layout = Layout::new(&Paths {
            config: hub.config.clone(),
            state_dir: hub.state_dir.clone(),
            run_dir: hub.run_dir.clone(),
        });
        let socket = layout.ldapi_socket();
        let not_running = |why: String| {
            tracing::debug!("ldapi: {why}");
            format!(
                "ntari-identity is not running (no answer on {}): start it with `rc-service ntari-identity start`",
                socket.display()
            )
        };
        let settings = LdapConnSettings::new().set_conn_timeout(LDAP_TIMEOUT);
        let (conn, mut ldap) =
            match LdapConnAsync::with_settings(settings, &layout.ldapi_url()).await {
                Ok(pair) => pair,
                Err(e) => return Ok(Err(not_running(e.to_string()))),
            };
        ldap3::drive!(conn);
        match tokio::time::timeout(LDAP_TIMEOUT, ldap.sasl_external_bind()).await {
            Ok(Ok(result)) if result.rc == 0 => {}
            Ok(Ok(result)) => bail!(
                "slapd on {} refused the SASL EXTERNAL bind ({}): run this as root on the hub",
                socket.display(),
                result_text(result.rc, &result.text)
            ),
            Ok(Err(e)) => return Ok(Err(not_running(ldap_text(&e)))),
            Err(_) => return Ok(Err(not_running("no answer to a bind within 3s".into()))),
        }
        let base = config.base_dn();
        let manager = format!("dn:cn=admin,{base}");
        let (exop, _) = ldap
            .extended(ldap3::exop::WhoAmI)
            .await
            .and_then(|r| r.success())
            .map_err(|e| anyhow!("Who am I? on {}: {}", socket.display(), ldap_text(&e)))?;
        let me = exop
            .val
            .map(|v| String::from_utf8_lossy(&v).into_owned())
            .unwrap_or_default();
        if !me.eq_ignore_ascii_case(&manager) {
            bail!(
                "slapd on {} knows this process as {:?}, not as its manager {manager:?}: run ntari-admin identity as root on the hub (and give the --config ntari-identity runs with)",
                socket.display(),
                if me.is_empty() { "anonymous" } else { &me }
            );
        }
        let realm = config.realm();
        match provision::read_record(&layout).map_err(|issue| anyhow!("{}", issue.message))? {
            Some(record) if record.realm != realm => bail!(
                "{} holds realm {}, but {} says {realm}: give the --config and --state-dir ntari-identity runs with",
                layout.state_dir.display(),
                record.realm,
                hub.config.display()
            ),
            Some(record) if record.stage == Stage::Done => {}
            Some(_) => bail!(
                "the realm {realm} in {} is not fully provisioned yet: wait until ntari-identity is Active (ntari-admin status)",
                layout.state_dir.display()
            ),
            None => bail!(
                "{} holds no realm ({} is missing): give the --state-dir ntari-identity runs with",
                layout.state_dir.display(),
                layout.provision_record().display()
            ),
        }
        Ok(Ok(Directory {
            config,
            layout,
            base,
            realm,
            ldap,
        }))
    }

    fn user_dn(&self, uid: &str) -> String {
        format!("uid={uid},ou=people,{}", self.base)
    }
    fn group_dn(&self, name: &str) -> String {
        format!("cn={name},ou=groups,{}", self.base)
    }
    fn ou(&self, ou: &str) -> String {
        format!("ou={ou},{}", self.base)
    }

    /// Entries under `base`; none if `base` itself does not exist.
    async fn search(
        &mut self,
        base: &str,
        scope: Scope,
        filter: &str,
        attrs: &[&str],
    ) -> anyhow::Result<Vec<SearchEntry>> {
        let result = self
            .ldap
            .search(base, scope, filter, attrs.to_vec())
            .await
            .map_err(|e| anyhow!("searching {base} for {filter}: {}", ldap_text(&e)))?;
        match result.1.rc {
            0 => Ok(result.0.into_iter().map(SearchEntry::construct).collect()),
            32 => Ok(Vec::new()),
            rc => bail!(
                "searching {base} for {filter}: {}",
                result_text(rc, &result.1.text)
            ),
        }
    }

    async fn exists(&mut self, dn: &str) -> anyhow::Result<bool> {
        Ok(!self
            .search(dn, Scope::Base, "(objectClass=*)", &["1.1"])
            .await?
            .is_empty())
    }

    async fn add(&mut self, dn: &str, attrs: Vec<(&str, Vec<String>)>) -> anyhow::Result<()> {
        let attrs: Vec<(String, HashSet<String>)> = attrs
            .into_iter()
            .map(|(name, values)| (name.to_string(), values.into_iter().collect()))
            .collect();
        self.ldap
            .add(dn, attrs)
            .await
            .and_then(|r| r.success())
            .map(|_| ())
            .map_err(|e| anyhow!("adding {dn}: {}", ldap_text(&e)))
    }

    /// Deletes `dn`; Ok(false) if it was not there.
    async fn delete(&mut self, dn: &str) -> anyhow::Result<bool> {
        let result = self
            .ldap
            .delete(dn)
            .await
            .map_err(|e| anyhow!("deleting {dn}: {}", ldap_text(&e)))?;
        match result.rc {
            0 => Ok(true),
            32 => Ok(false),
            rc => bail!("deleting {dn}: {}", result_text(rc, &result.text)),
        }
    }

    /// One modification; the LDAP result code (0, or 16/20 for a value
    /// that was not / was already there), any other code is an error.
    async fn modify(&mut self, dn: &str, change: Mod<String>) -> anyhow::Result<u32> {
        let result = self
            .ldap
            .modify(dn, vec![change])
            .await
            .map_err(|e| anyhow!("modifying {dn}: {}", ldap_text(&e)))?;
        match result.rc {
            0 | 16 | 20 => Ok(result.rc),
            rc => bail!("modifying {dn}: {}", result_text(rc, &result.text)),
        }
    }

    async fn add_member(&mut self, group_dn: &str, uid: &str) -> anyhow::Result<bool> {
        let change = Mod::Add("memberUid".to_string(), HashSet::from([uid.to_string()]));
        Ok(self.modify(group_dn, change).await? == 0)
    }

    async fn remove_member(&mut self, group_dn: &str, uid: &str) -> anyhow::Result<bool> {
        let change = Mod::Delete("memberUid".to_string(), HashSet::from([uid.to_string()]));
        Ok(self.modify(group_dn, change).await? == 0)
    }

    /// userPassword through the Password Modify operation, so that slapd
    /// hashes it with its password-hash.
    async fn set_ldap_password(&mut self, dn: &str, password: &str) -> anyhow::Result<()> {
        self.ldap
            .extended(PasswordModify {
                user_id: Some(dn),
                old_pass: None,
                new_pass: Some(password),
            })
            .await
            .and_then(|r| r.success())
            .map(|_| ())
            .map_err(|e| anyhow!("setting the LDAP password of {dn}: {}", ldap_text(&e)))
    }

    /// `kadmin.local` with this realm's files; Err is kadmin's reason.
    async fn kadmin(&self, query: &str) -> Result<String, String> {
        kadmin(&self.layout, query).await
    }

    /// Whether the principal exists (`getprinc`).
    async fn has_principal(&self, principal: &str) -> anyhow::Result<bool> {
        match self.kadmin(&format!("getprinc {}", quote(principal))).await {
            Ok(_) => Ok(true),
            Err(reason) if reason.contains("does not exist") => Ok(false),
            Err(reason) => bail!("kadmin.local getprinc {principal}: {reason}"),
        }
    }

    /// Deletes a principal; Ok(false) if it was not there.
    async fn delete_principal(&self, principal: &str) -> anyhow::Result<bool> {
        match self
            .kadmin(&format!("delprinc -force {}", quote(principal)))
            .await
        {
            Ok(_) => Ok(true),
            Err(reason) if reason.contains("does not exist") => Ok(false),
            Err(reason) => bail!("kadmin.local delprinc {principal}: {reason}"),
        }
    }

    fn principal(&self, name: &str) -> String {
        format!("{name}@{}", self.realm)
    }

    /// Used uidNumbers (of posixAccounts) or gidNumbers (of posixGroups).
    async fn numbers(&mut self, class: &str, attr: &str) -> anyhow::Result<Vec<u32>> {
        let base = self.base.clone();
        let entries = self
            .search(
                &base,
                Scope::Subtree,
                &format!("(objectClass={class})"),
                &[attr],
            )
            .await?;
        Ok(entries
            .iter()
            .filter_map(|e| first(e, attr).and_then(|v| v.parse().ok()))
            .collect())
    }
}

/// What to undo if a later step fails.
enum Undo {
    DeleteEntry(String),
    RemoveMember { group_dn: String, uid: String },
    DeletePrincipal(String),
}

/// The steps done so far, undone in reverse order on failure.
#[derive(Default)]
struct Steps(Vec<Undo>);

impl Steps {
    fn push(&mut self, undo: Undo) {
        self.0.push(undo);
    }

    /// Undoes every step; `error` gains what could not be undone.
    async fn undo(self, dir: &mut Directory, error: anyhow::Error) -> anyhow::Error {
        let mut left = Vec::new();
        for step in self.0.into_iter().rev() {
            let result = match &step {
                Undo::DeleteEntry(dn) => dir.delete(dn).await.map(|_| ()),
                Undo::RemoveMember { group_dn, uid } => {
                    dir.remove_member(group_dn, uid).await.map(|_| ())
                }
                Undo::DeletePrincipal(p) => dir.delete_principal(p).await.map(|_| ()),
            };
            if let Err(e) = result {
                left.push(format!("{e:#}"));
            }
        }
        if left.is_empty() {
            error
        } else {
            anyhow!(
                "{error:#}; undoing what was done failed too, fix by hand: {}",
                left.join("; ")
            )
        }
    }
}

/// `kadmin.local` with `query` on its stdin ([`ntari_identity::kadmin::run`]),
/// on the blocking pool.
async fn kadmin(layout: &Layout, query: &str) -> Result<String, String> {
    let (layout, query) = (layout.clone(), query.to_string());
    tokio::task::spawn_blocking(move || ntari_identity::kadmin::run(&layout, &query))
        .await
        .map_err(|e| format!("kadmin.local: {e}"))?
}

/// A query argument for kadmin's parser: double quotes, `""` for a quote.
fn quote(arg: &str) -> String {
    format!("\"{}\"", arg.replace('"', "\"\""))
}

/// `alice: password refused: Password is too short (policy: at least 12
/// characters, 2 classes)`; other refusals say the KDC refused.
fn password_refusal(who: &str, reason: &str, policy: &PasswordPolicy) -> String {
    let lower = reason.to_ascii_lowercase();
    if lower.contains("reuse") {
        format!(
            "{who}: password refused: {reason} (policy: none of the last {} passwords)",
            policy.history
        )
    } else if lower.contains("password") {
        format!(
            "{who}: password refused: {reason} (policy: at least {} characters, {} classes)",
            policy.min_length, policy.min_classes
        )
    } else {
        format!("{who}: the KDC refused: {reason}")
    }
}

fn result_text(rc: u32, text: &str) -> String {
    let name = match rc {
        1 => "operationsError",
        2 => "protocolError",
        8 => "strongerAuthRequired",
        16 => "noSuchAttribute",
        17 => "undefinedAttributeType",
        19 => "constraintViolation",
        20 => "attributeOrValueExists",
        21 => "invalidAttributeSyntax",
        32 => "noSuchObject",
        34 => "invalidDNSyntax",
        48 => "inappropriateAuthentication",
        49 => "invalidCredentials",
        50 => "insufficientAccessRights",
        53 => "unwillingToPerform",
        64 => "namingViolation",
        65 => "objectClassViolation",
        68 => "entryAlreadyExists",
        _ => "",
    };
    let mut out = format!("LDAP result {rc}");
    if !name.is_empty() {
        out.push_str(&format!(" ({name})"));
    }
    if !text.is_empty() {
        out.push_str(&format!(": {text}"));
    }
    out
}

fn ldap_text(e: &LdapError) -> String {
    match e {
        LdapError::LdapResult { result } => result_text(result.rc, &result.text),
        other => other.to_string(),
    }
}

fn first<'a>(entry: &'a SearchEntry, attr: &str) -> Option<&'a str> {
    entry
        .attrs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(attr))
        .and_then(|(_, v)| v.first())
        .map(String::as_str)
}

fn all<'a>(entry: &'a SearchEntry, attr: &str) -> Vec<&'a str> {
    entry
        .attrs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(attr))
        .map(|(_, v)| v.iter().map(String::as_str).collect())
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------
// Checks of names and numbers.

/// A login name: `[a-z_][a-z0-9_.-]{0,31}`.
fn check_uid(uid: &str) -> anyhow::Result<()> {
    check_posix_name(uid).map_err(|why| anyhow!("{uid:?} is not a user name: {why}"))
}

fn check_group(name: &str) -> anyhow::Result<()> {
    check_posix_name(name).map_err(|why| anyhow!("{name:?} is not a group name: {why}"))
}

fn check_posix_name(name: &str) -> Result<(), &'static str> {
    let mut chars = name.chars();
    match chars.next() {
        None => return Err("empty"),
        Some(c) if c.is_ascii_lowercase() || c == '_' => {}
        Some(_) => return Err("it must start with a-z or '_'"),
    }
    if name.len() > 32 {
        return Err("longer than 32 characters");
    }
    if !chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_.-".contains(c)) {
        return Err("only a-z, 0-9, '_', '.' and '-' are allowed");
    }
    Ok(())
}

/// A machine's fully qualified name, in lower case (principals are
/// case-sensitive; DNS names are not).
fn check_fqdn(fqdn: &str) -> anyhow::Result<String> {
    let name = fqdn.trim_end_matches('.').to_ascii_lowercase();
    ntari_node::validate::dns_name(&name)
        .map_err(|why| anyhow!("{fqdn:?} is not a host name: {why}"))?;
    if !name.contains('.') {
        bail!(
            "{fqdn:?} is not fully qualified: give the name with its domain, e.g. {name}.coop.lan"
        );
    }
    Ok(name)
}

/// `<service>/<fqdn>`: the service name as the service expects it (often
/// `HTTP`, `nfs`, `imap`), the host as [`check_fqdn`].
fn check_service(principal: &str) -> anyhow::Result<(String, String)> {
    let Some((svc, host)) = principal.split_once('/') else {
        bail!("{principal:?}: give <service>/<fqdn>, e.g. HTTP/files.coop.lan");
    };
    let valid = svc.len() <= 32
        && svc.starts_with(|c: char| c.is_ascii_alphabetic())
        && svc
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !valid {
        bail!("{principal:?}: {svc:?} is not a service name (letters, digits, '-', '_', up to 32, starting with a letter)");
    }
    match svc {
        "host" => bail!(
            "{principal:?}: host principals are made by `ntari-admin identity host add {host}`"
        ),
        "krbtgt" | "kadmin" | "K" => {
            bail!("{principal:?}: {svc}/… principals belong to the realm itself")
        }
        _ => {}
    }
    let fqdn = check_fqdn(host)?;
    Ok((svc.to_string(), fqdn))
}

/// A realm name, as the service's config checks it.
fn check_realm(realm: &str) -> anyhow::Result<()> {
    ntari_identity::config::check_realm(realm).map_err(|e| anyhow!("{e}"))
}

/// `host:port`, `a.b.c.d:port` or `[v6]:port`, with a port other than 0.
fn check_kdc(kdc: &str) -> anyhow::Result<()> {
    let bad = |why: &str| anyhow!("--kdc {kdc:?}: {why}; give HOST:PORT, e.g. hub.other.lan:88");
    let (host, port) = kdc.rsplit_once(':').ok_or_else(|| bad("no port"))?;
    match port.parse::<u16>() {
        Ok(p) if p > 0 => {}
        _ => return Err(bad(&format!("{port:?} is not a port"))),
    }
    if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        v6.parse::<std::net::Ipv6Addr>()
            .map_err(|_| bad(&format!("{v6:?} is not an IPv6 address")))?;
        return Ok(());
    }
    if host.parse::<std::net::Ipv4Addr>().is_ok() {
        return Ok(());
    }
    if host.contains(':') {
        return Err(bad("an IPv6 address goes in brackets"));
    }
    ntari_node::validate::dns_name(host).map_err(|why| bad(&why))
}

/// The next free number from `first`: one more than the highest in use
/// at or above it (numbers below `first` are not ours).
fn next_free(used: &[u32], first: u32) -> anyhow::Result<u32> {
    match used.iter().copied().filter(|n| *n >= first).max() {
        None => Ok(first),
        Some(max) => max
            .checked_add(1)
            .ok_or_else(|| anyhow!("no number is free after {max}")),
    }
}

/// The last word of a full name (the surname sn requires), else the uid.
fn surname(name: Option<&str>, uid: &str) -> String {
    name.and_then(|n| n.split_whitespace().last())
        .unwrap_or(uid)
        .to_string()
}

// ---------------------------------------------------------------------------
// Passwords.

/// A password from stdin's first line, or typed twice on the terminal.
pub(crate) fn read_password(from_stdin: bool, prompt: &str) -> anyhow::Result<String> {
    let password = if from_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("cannot read the password from stdin")?;
        line.strip_suffix('\n')
            .map(|l| l.strip_suffix('\r').unwrap_or(l))
            .unwrap_or(&line)
            .to_string()
    } else {
        let no_terminal = |e: std::io::Error| {
            anyhow!("cannot read a password from the terminal ({e}); give --password-stdin to read it from stdin")
        };
        let first = rpassword::prompt_password(format!("{prompt}: ")).map_err(no_terminal)?;
        let again =
            rpassword::prompt_password(format!("{prompt} (again): ")).map_err(no_terminal)?;
        if first != again {
            bail!("the two passwords differ; nothing was changed");
        }
        first
    };
    check_password_text(&password)?;
    Ok(password)
}

fn check_password_text(password: &str) -> anyhow::Result<()> {
    if password.is_empty() {
        bail!("empty password; nothing was changed");
    }
    if password
        .chars()
        .any(|c| c == '\n' || c == '\r' || c == '\0')
    {
        bail!("a password cannot contain a line break or NUL");
    }
    Ok(())
}

/// A random secret of [`SECRET_LEN`] characters with lower and upper
/// case letters, digits and punctuation (4 classes, whatever the policy).
fn random_secret() -> anyhow::Result<String> {
    use rand_core::RngCore;
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.+";
    let limit = 256 - 256 % ALPHABET.len();
    loop {
        let mut bytes = [0u8; 128];
        rand_core::OsRng
            .try_fill_bytes(&mut bytes)
            .map_err(|e| anyhow!("cannot read the system's random source: {e}"))?;
        let secret: String = bytes
            .iter()
            .filter(|b| (**b as usize) < limit)
            .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
            .take(SECRET_LEN)
            .collect();
        if secret.len() == SECRET_LEN && classes(&secret) == 4 {
            return Ok(secret);
        }
    }
}

/// Lower, upper, digit, other.
fn classes(text: &str) -> usize {
    let tests: [fn(&char) -> bool; 4] = [
        char::is_ascii_lowercase,
        char::is_ascii_uppercase,
        char::is_ascii_digit,
        |c| !c.is_ascii_alphanumeric(),
    ];
    tests.iter().filter(|t| text.chars().any(|c| t(&c))).count()
}

// ---------------------------------------------------------------------------
// Users.

async fn user(dir: &mut Directory, command: &UserCommand) -> anyhow::Result<Exit> {
    match command {
        UserCommand::Add {
            uid,
            name,
            email,
            password_stdin,
        } => user_add(dir, uid, name.as_deref(), email.as_deref(), *password_stdin).await,
        UserCommand::Passwd {
            uid,
            password_stdin,
        } => user_passwd(dir, uid, *password_stdin).await,
        UserCommand::Disable { uid } => user_allow(dir, uid, false).await,
        UserCommand::Enable { uid } => user_allow(dir, uid, true).await,
        UserCommand::Remove { uid } => user_remove(dir, uid).await,
        UserCommand::List { json } => user_list(dir, *json).await,
    }
}

/// The member's entry exists, or a refusal that says so.
async fn existing_user(dir: &mut Directory, uid: &str) -> anyhow::Result<String> {
    check_uid(uid)?;
    let dn = dir.user_dn(uid);
    if !dir.exists(&dn).await? {
        bail!("no user {uid} ({dn}); `ntari-admin identity user list` shows the members");
    }
    Ok(dn)
}

async fn user_add(
    dir: &mut Directory,
    uid: &str,
    name: Option<&str>,
    email: Option<&str>,
    password_stdin: bool,
) -> anyhow::Result<Exit> {
    check_uid(uid)?;
    let name = name.map(str::trim);
    if name == Some("") {
        bail!("--name is empty");
    }
    if let Some(email) = email {
        if !email.contains('@') || email.chars().any(char::is_whitespace) {
            bail!("--email {email:?} is not a mail address");
        }
    }
    let dn = dir.user_dn(uid);
    if dir.exists(&dn).await? {
        bail!("user {uid} exists ({dn})");
    }
    let principal = dir.principal(uid);
    if dir.has_principal(&principal).await? {
        bail!("user {uid}: the principal {principal} exists already (without a directory entry); remove it first with kadmin.local delprinc");
    }
    let password = read_password(password_stdin, &format!("Password for {principal}"))?;
    let uid_number = next_free(&dir.numbers("posixAccount", "uidNumber").await?, FIRST_UID)?;

    let mut attrs = vec![
        (
            "objectClass",
            vec!["inetOrgPerson".to_string(), "posixAccount".to_string()],
        ),
        ("uid", vec![uid.to_string()]),
        ("cn", vec![name.unwrap_or(uid).to_string()]),
        ("sn", vec![surname(name, uid)]),
        ("uidNumber", vec![uid_number.to_string()]),
        ("gidNumber", vec![MEMBERS_GID.to_string()]),
        ("homeDirectory", vec![format!("/home/{uid}")]),
        ("loginShell", vec!["/bin/sh".to_string()]),
    ];
    if let Some(email) = email {
        attrs.push(("mail", vec![email.to_string()]));
    }
    dir.add(&dn, attrs).await?;
    let mut steps = Steps::default();
    steps.push(Undo::DeleteEntry(dn.clone()));
    let result = async {
        let group_dn = dir.group_dn(MEMBERS_GROUP);
        if !dir.exists(&group_dn).await? {
            dir.add(
                &group_dn,
                vec![
                    ("objectClass", vec!["posixGroup".to_string()]),
                    ("cn", vec![MEMBERS_GROUP.to_string()]),
                    ("gidNumber", vec![MEMBERS_GID.to_string()]),
                ],
            )
            .await?;
            steps.push(Undo::DeleteEntry(group_dn.clone()));
        }
        if dir.add_member(&group_dn, uid).await? {
            steps.push(Undo::RemoveMember {
                group_dn: group_dn.clone(),
                uid: uid.to_string(),
            });
        }
        let query = format!(
            "addprinc -x {} -pw {} {}",
            quote(&format!("dn={dn}")),
            quote(&password),
            quote(&principal)
        );
        dir.kadmin(&query).await.map_err(|reason| {
            anyhow!(password_refusal(uid, &reason, &dir.config.password_policy))
        })?;
        steps.push(Undo::DeletePrincipal(principal.clone()));
        dir.set_ldap_password(&dn, &password).await
    }
    .await;
    if let Err(e) = result {
        return Err(steps.undo(dir, e).await);
    }
    println!("added user {uid}: {dn}, uidNumber {uid_number}, principal {principal}");
    Ok(Exit::Ok)
}

async fn user_passwd(dir: &mut Directory, uid: &str, password_stdin: bool) -> anyhow::Result<Exit> {
    let dn = existing_user(dir, uid).await?;
    let principal = dir.principal(uid);
    let password = read_password(password_stdin, &format!("New password for {principal}"))?;
    // Kerberos first: its policy decides whether the password is good.
    let query = format!("cpw -pw {} {}", quote(&password), quote(&principal));
    dir.kadmin(&query)
        .await
        .map_err(|reason| anyhow!(password_refusal(uid, &reason, &dir.config.password_policy)))?;
    dir.set_ldap_password(&dn, &password).await.map_err(|e| {
        anyhow!("{e:#}: the Kerberos password of {uid} is changed, the LDAP one is not; run `ntari-admin identity user passwd {uid}` again with another password")
    })?;
    println!("changed the password of {uid} ({principal})");
    Ok(Exit::Ok)
}

async fn user_allow(dir: &mut Directory, uid: &str, allow: bool) -> anyhow::Result<Exit> {
    existing_user(dir, uid).await?;
    let principal = dir.principal(uid);
    let flag = if allow { "+allow_tix" } else { "-allow_tix" };
    dir.kadmin(&format!("modprinc {flag} {}", quote(&principal)))
        .await
        .map_err(|reason| anyhow!("{uid}: kadmin.local modprinc {flag}: {reason}"))?;
    if allow {
        println!("enabled {uid}: tickets and LDAP binds allowed again");
    } else {
        println!("disabled {uid}: no new tickets, no LDAP binds (tickets already issued last until they expire)");
    }
    Ok(Exit::Ok)
}

async fn user_remove(dir: &mut Directory, uid: &str) -> anyhow::Result<Exit> {
    check_uid(uid)?;
    let dn = dir.user_dn(uid);
    let principal = dir.principal(uid);
    let has_entry = dir.exists(&dn).await?;
    let has_principal = dir.has_principal(&principal).await?;
    if !has_entry && !has_principal {
        bail!("no user {uid} ({dn}, {principal})");
    }
    if has_principal {
        dir.delete_principal(&principal).await?;
    }
    let base = dir.ou("groups");
    let filter = format!(
        "(&(objectClass=posixGroup)(memberUid={}))",
        ldap3::ldap_escape(uid)
    );
    let groups = dir.search(&base, Scope::Subtree, &filter, &["1.1"]).await?;
    for group in &groups {
        dir.remove_member(&group.dn, uid).await?;
    }
    if has_entry {
        dir.delete(&dn).await?;
    }
    println!("removed user {uid}");
    Ok(Exit::Ok)
}

/// `20261201220653Z` → `2026-12-01T22:06:53Z`; anything else as it is.
fn generalized_time(text: &str) -> String {
    let digits = text.strip_suffix('Z').unwrap_or(text);
    if digits.len() == 14 && digits.chars().all(|c| c.is_ascii_digit()) {
        format!(
            "{}-{}-{}T{}:{}:{}Z",
            &digits[0..4],
            &digits[4..6],
            &digits[6..8],
            &digits[8..10],
            &digits[10..12],
            &digits[12..14]
        )
    } else {
        text.to_string()
    }
}

/// (name, gidNumber, members) of every posixGroup, by name.
async fn groups(dir: &mut Directory) -> anyhow::Result<Vec<(String, Option<u32>, Vec<String>)>> {
    let base = dir.ou("groups");
    let entries = dir
        .search(
            &base,
            Scope::Subtree,
            "(objectClass=posixGroup)",
            &["cn", "gidNumber", "memberUid"],
        )
        .await?;
    let mut out: Vec<(String, Option<u32>, Vec<String>)> = entries
        .iter()
        .map(|e| {
            let mut members: Vec<String> =
                all(e, "memberUid").iter().map(|s| s.to_string()).collect();
            members.sort();
            (
                first(e, "cn").unwrap_or_default().to_string(),
                first(e, "gidNumber").and_then(|g| g.parse().ok()),
                members,
            )
        })
        .collect();
    out.sort();
    Ok(out)
}

async fn user_list(dir: &mut Directory, json: bool) -> anyhow::Result<Exit> {
    let base = dir.ou("people");
    let entries = dir
        .search(
            &base,
            Scope::Subtree,
            "(objectClass=posixAccount)",
            &[
                "uid",
                "cn",
                "mail",
                "uidNumber",
                "krbTicketFlags",
                "krbLastSuccessfulAuth",
                "krbPrincipalName",
            ],
        )
        .await?;
    let groups = groups(dir).await?;
    let mut rows: Vec<serde_json::Value> = entries
        .iter()
        .map(|e| {
            let uid = first(e, "uid").unwrap_or_default();
            let flags: u64 = first(e, "krbTicketFlags")
                .and_then(|f| f.parse().ok())
                .unwrap_or(0);
            let member_of: Vec<&str> = groups
                .iter()
                .filter(|(_, _, members)| members.iter().any(|m| m == uid))
                .map(|(name, _, _)| name.as_str())
                .collect();
            serde_json::json!({
                "uid": uid,
                "name": first(e, "cn"),
                "email": first(e, "mail"),
                "uid_number": first(e, "uidNumber").and_then(|n| n.parse::<u64>().ok()),
                "groups": member_of,
                "disabled": flags & DISALLOW_ALL_TIX != 0,
                "principal": first(e, "krbPrincipalName"),
                "last_login": first(e, "krbLastSuccessfulAuth").map(generalized_time),
            })
        })
        .collect();
    rows.sort_by(|a, b| a["uid"].as_str().cmp(&b["uid"].as_str()));
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(Exit::Ok);
    }
    if rows.is_empty() {
        println!("no users in {base}");
        return Ok(Exit::Ok);
    }
    println!(
        "{:<20} {:<26} {:>9}  {:<8} {:<20} GROUPS",
        "USER", "NAME", "UIDNUMBER", "STATE", "LAST LOGIN"
    );
    for r in &rows {
        let groups: Vec<&str> = r["groups"]
            .as_array()
            .map(|g| g.iter().filter_map(|v| v.as_str()).collect())
            .unwrap_or_default();
        let state = if r["principal"].is_null() {
            "no-krb"
        } else if r["disabled"] == true {
            "disabled"
        } else {
            "enabled"
        };
        println!(
            "{:<20} {:<26} {:>9}  {:<8} {:<20} {}",
            r["uid"].as_str().unwrap_or("?"),
            r["name"].as_str().unwrap_or("-"),
            r["uid_number"]
                .as_u64()
                .map_or("-".to_string(), |n| n.to_string()),
            state,
            r["last_login"].as_str().unwrap_or("never"),
            if groups.is_empty() {
                "-".to_string()
            } else {
                groups.join(",")
            }
        );
    }
    Ok(Exit::Ok)
}

// ---------------------------------------------------------------------------
// Groups.

async fn group(dir: &mut Directory, command: &GroupCommand) -> anyhow::Result<Exit> {
    match command {
        GroupCommand::Add { name, gid } => {
            check_group(name)?;
            let dn = dir.group_dn(name);
            if dir.exists(&dn).await? {
                bail!("group {name} exists ({dn})");
            }
            let used = dir.numbers("posixGroup", "gidNumber").await?;
            let gid = match *gid {
                Some(g) if used.contains(&g) => bail!("--gid {g}: another group has it"),
                Some(g) if g == MEMBERS_GID && name != MEMBERS_GROUP => {
                    bail!("--gid {g} is the gidNumber of `{MEMBERS_GROUP}`, every member's primary group")
                }
                Some(0) => bail!("--gid 0 is root's group"),
                Some(g) => g,
                None if name == MEMBERS_GROUP => MEMBERS_GID,
                None => next_free(&used, FIRST_GID)?,
            };
            dir.add(
                &dn,
                vec![
                    ("objectClass", vec!["posixGroup".to_string()]),
                    ("cn", vec![name.clone()]),
                    ("gidNumber", vec![gid.to_string()]),
                ],
            )
            .await?;
            println!("added group {name}: {dn}, gidNumber {gid}");
            Ok(Exit::Ok)
        }
        GroupCommand::Remove { name } => {
            check_group(name)?;
            if name == MEMBERS_GROUP {
                bail!("group {MEMBERS_GROUP} is every member's primary group (gidNumber {MEMBERS_GID}); it stays");
            }
            let dn = dir.group_dn(name);
            if !dir.delete(&dn).await? {
                bail!("no group {name} ({dn})");
            }
            println!("removed group {name}");
            Ok(Exit::Ok)
        }
        GroupCommand::Member { command } => {
            let (group, uid, add) = match command {
                GroupMemberCommand::Add { group, uid } => (group, uid, true),
                GroupMemberCommand::Remove { group, uid } => (group, uid, false),
            };
            check_group(group)?;
            let group_dn = dir.group_dn(group);
            if !dir.exists(&group_dn).await? {
                bail!("no group {group} ({group_dn}); `ntari-admin identity group list` shows the groups");
            }
            if add {
                existing_user(dir, uid).await?;
                if !dir.add_member(&group_dn, uid).await? {
                    bail!("{uid} is in group {group} already");
                }
                println!("added {uid} to group {group}");
            } else {
                check_uid(uid)?;
                if !dir.remove_member(&group_dn, uid).await? {
                    bail!("{uid} is not in group {group}");
                }
                println!("removed {uid} from group {group}");
            }
            Ok(Exit::Ok)
        }
        GroupCommand::List { json } => {
            let groups = groups(dir).await?;
            if *json {
                let rows: Vec<serde_json::Value> = groups
                    .iter()
                    .map(|(name, gid, members)| serde_json::json!({"group": name, "gid_number": gid, "members": members}))
                    .collect();
                println!("{}", serde_json::to_string_pretty(&rows)?);
                return Ok(Exit::Ok);
            }
            if groups.is_empty() {
                println!("no groups in {}", dir.ou("groups"));
                return Ok(Exit::Ok);
            }
            println!("{:<24} {:>9}  MEMBERS", "GROUP", "GIDNUMBER");
            for (name, gid, members) in &groups {
                println!(
                    "{:<24} {:>9}  {}",
                    name,
                    gid.map_or("-".to_string(), |g| g.to_string()),
                    if members.is_empty() {
                        "-".to_string()
                    } else {
                        members.join(",")
                    }
                );
            }
            Ok(Exit::Ok)
        }
    }
}

// ---------------------------------------------------------------------------
// Hosts and services: an entry, a principal with a random key, a keytab.

/// A host or a service.
struct Keyed {
    /// `host` or `service`, for messages.
    kind: &'static str,
    /// `ou=…` it lives under.
    ou: &'static str,
    /// Its cn and the principal's name (without the realm).
    name: String,
    /// The machine it runs on.
    fqdn: String,
}

impl Keyed {
    fn host(fqdn: &str) -> Keyed {
        Keyed {
            kind: "host",
            ou: "hosts",
            name: format!("host/{fqdn}"),
            fqdn: fqdn.to_string(),
        }
    }
    fn service(svc: &str, fqdn: &str) -> Keyed {
        Keyed {
            kind: "service",
            ou: "services",
            name: format!("{svc}/{fqdn}"),
            fqdn: fqdn.to_string(),
        }
    }
    /// The entry's cn: the fqdn of a host, `<svc>/<fqdn>` of a service.
    fn cn(&self) -> &str {
        if self.kind == "host" {
            &self.fqdn
        } else {
            &self.name
        }
    }
    fn dn(&self, dir: &Directory) -> String {
        format!("cn={},{}", self.cn(), dir.ou(self.ou))
    }
}

async fn add_keyed(dir: &mut Directory, what: &Keyed, keytab: &Path) -> anyhow::Result<Exit> {
    let dn = what.dn(dir);
    let principal = dir.principal(&what.name);
    if dir.exists(&dn).await? {
        bail!("{} {} exists ({dn})", what.kind, what.cn());
    }
    if dir.has_principal(&principal).await? {
        bail!("{} {}: the principal {principal} exists already (without a directory entry); remove it first with kadmin.local delprinc", what.kind, what.cn());
    }
    let keytab =
        std::path::absolute(keytab).with_context(|| format!("--keytab {}", keytab.display()))?;
    if keytab.symlink_metadata().is_ok() {
        bail!(
            "{} exists: remove it, or give another --keytab (a keytab is never added to)",
            keytab.display()
        );
    }
    let parent = keytab
        .parent()
        .filter(|p| p.is_dir())
        .ok_or_else(|| anyhow!("{}: its directory does not exist", keytab.display()))?
        .to_path_buf();
    dir.add(
        &dn,
        vec![
            ("objectClass", vec!["device".to_string()]),
            ("cn", vec![what.cn().to_string()]),
        ],
    )
    .await?;
    let mut steps = Steps::default();
    steps.push(Undo::DeleteEntry(dn.clone()));
    let result = async {
        dir.kadmin(&format!(
            "addprinc -randkey -x {} {}",
            quote(&format!("dn={dn}")),
            quote(&principal)
        ))
        .await
        .map_err(|reason| anyhow!("{principal}: the KDC refused: {reason}"))?;
        steps.push(Undo::DeletePrincipal(principal.clone()));
        write_keytab(dir, &principal, &parent, &keytab).await
    }
    .await;
    if let Err(e) = result {
        return Err(steps.undo(dir, e).await);
    }
    println!("{}", keytab.display());
    let next = if what.kind == "host" {
        format!("copy it to /etc/krb5.keytab on {} (mode 0600)", what.fqdn)
    } else {
        format!(
            "copy it to {} where the service reads its keytab (mode 0600, readable by the service only)",
            what.fqdn
        )
    };
    eprintln!(
        "added {} {}: principal {principal}, keytab {} (mode 0600)\nnext: {next}, then delete this copy",
        what.kind,
        what.cn(),
        keytab.display()
    );
    Ok(Exit::Ok)
}

/// `ktadd` into a private directory next to `target`, then linked to
/// `target` (never replacing a file that appeared meanwhile).
async fn write_keytab(
    dir: &Directory,
    principal: &str,
    parent: &Path,
    target: &Path,
) -> anyhow::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let private = parent.join(format!(".ntari-admin-keytab.{}", std::process::id()));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&private)
        .with_context(|| format!("cannot create {}", private.display()))?;
    let file = private.join("keytab");
    let result = async {
        dir.kadmin(&format!(
            "ktadd -k {} {}",
            quote(&file.display().to_string()),
            quote(principal)
        ))
        .await
        .map_err(|reason| anyhow!("{principal}: writing its keytab: {reason}"))?;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("chmod 0600 {}", file.display()))?;
        std::fs::hard_link(&file, target)
            .with_context(|| format!("cannot create {}", target.display()))
    }
    .await;
    let _ = std::fs::remove_file(&file);
    let _ = std::fs::remove_dir(&private);
    result
}

async fn remove_keyed(dir: &mut Directory, what: &Keyed) -> anyhow::Result<Exit> {
    let dn = what.dn(dir);
    let principal = dir.principal(&what.name);
    let has_entry = dir.exists(&dn).await?;
    let has_principal = dir.has_principal(&principal).await?;
    if !has_entry && !has_principal {
        bail!("no {} {} ({dn}, {principal})", what.kind, what.cn());
    }
    if has_principal {
        dir.delete_principal(&principal).await?;
    }
    if has_entry {
        dir.delete(&dn).await?;
    }
    println!("removed {} {} ({principal})", what.kind, what.cn());
    Ok(Exit::Ok)
}

// ---------------------------------------------------------------------------
// Trusts.

/// `krbtgt/<THEIRS>@<OURS>` (our members' tickets to their services) and
/// `krbtgt/<OURS>@<THEIRS>` (their members' tickets to ours).
fn trust_principals(ours: &str, theirs: &str) -> [String; 2] {
    [
        format!("krbtgt/{theirs}@{ours}"),
        format!("krbtgt/{ours}@{theirs}"),
    ]
}

/// The trusts file with `realm`'s line set to `kdc` (replacing an older
/// line of it), other lines kept as they are.
fn trusts_with(text: &str, realm: &str, kdc: &str) -> String {
    let mut out = trusts_without(text, realm).0;
    out.push_str(&format!("{realm} {kdc}\n"));
    out
}

/// The trusts file without `realm`'s lines, and whether there was one.
fn trusts_without(text: &str, realm: &str) -> (String, bool) {
    let mut out = String::new();
    let mut found = false;
    for line in text.lines() {
        if line.split_whitespace().next() == Some(realm) {
            found = true;
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    (out, found)
}

fn read_text(path: &Path) -> anyhow::Result<String> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(anyhow!("cannot read {}: {e}", path.display())),
    }
}

fn write_trusts(path: &Path, text: &str) -> anyhow::Result<()> {
    ntari_node::fsutil::write_atomic(path, text.as_bytes(), 0o644)
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Our KDC as another hub reaches it: a listen address of ours that is
/// neither unspecified nor loopback, else this hub's name.
fn our_kdc(config: &IdentityConfig) -> String {
    let port = config.kdc.port;
    match config
        .kdc
        .listen
        .iter()
        .find(|a| !a.is_unspecified() && !a.is_loopback())
    {
        Some(IpAddr::V4(a)) => format!("{a}:{port}"),
        Some(IpAddr::V6(a)) => format!("[{a}]:{port}"),
        None => format!("{}:{port}", config.hostname()),
    }
}

async fn trust(dir: &mut Directory, command: &TrustCommand) -> anyhow::Result<Exit> {
    let trusts = dir.layout.trusts();
    match command {
        TrustCommand::Add {
            realm,
            kdc,
            password_stdin,
        } => {
            check_realm(realm)?;
            check_kdc(kdc)?;
            if *realm == dir.realm {
                bail!("{realm} is this hub's own realm");
            }
            let text = read_text(&trusts)?;
            if trusts_without(&text, realm).1 {
                bail!(
                    "{realm} is trusted already ({}); `trust remove {realm}` first to change it",
                    trusts.display()
                );
            }
            let principals = trust_principals(&dir.realm, realm);
            for p in &principals {
                if dir.has_principal(p).await? {
                    bail!("{realm}: the principal {p} exists already; `ntari-admin identity trust remove {realm}` first");
                }
            }
            let generated = !*password_stdin;
            let secret = if generated {
                random_secret()?
            } else {
                read_password(true, "")?
            };
            let mut steps = Steps::default();
            for p in &principals {
                let query = format!(
                    "addprinc -requires_preauth -pw {} {}",
                    quote(&secret),
                    quote(p)
                );
                if let Err(reason) = dir.kadmin(&query).await {
                    let e = anyhow!(password_refusal(p, &reason, &dir.config.password_policy));
                    return Err(steps.undo(dir, e).await);
                }
                steps.push(Undo::DeletePrincipal(p.clone()));
            }
            if let Err(e) = write_trusts(&trusts, &trusts_with(&text, realm, kdc)) {
                return Err(steps.undo(dir, e).await);
            }
            println!(
                "trusting {realm} (KDC {kdc}): {} and {}",
                principals[0], principals[1]
            );
            if generated {
                println!("shared secret (shown once): {secret}");
                eprintln!(
                    "run on the other hub: ntari-admin identity trust add {} --kdc {} --password-stdin\n(and give it the secret above on stdin)",
                    dir.realm,
                    our_kdc(&dir.config)
                );
            }
            eprintln!("reload ntari-identity (rc-service ntari-identity reload) to publish it in krb5.conf");
            Ok(Exit::Ok)
        }
        TrustCommand::Remove { realm } => {
            check_realm(realm)?;
            let text = read_text(&trusts)?;
            let (rest, had_line) = trusts_without(&text, realm);
            let mut deleted = Vec::new();
            for p in trust_principals(&dir.realm, realm) {
                if dir.delete_principal(&p).await? {
                    deleted.push(p);
                }
            }
            if !had_line && deleted.is_empty() {
                bail!(
                    "no trust with {realm} (neither its principals nor a line in {})",
                    trusts.display()
                );
            }
            if had_line {
                write_trusts(&trusts, &rest)?;
            }
            println!(
                "removed the trust with {realm}{}",
                if deleted.is_empty() {
                    String::new()
                } else {
                    format!(": deleted {}", deleted.join(", "))
                }
            );
            if had_line {
                eprintln!("reload ntari-identity (rc-service ntari-identity reload) to drop it from krb5.conf");
            }
            Ok(Exit::Ok)
        }
        TrustCommand::List { json } => {
            let listed = dir
                .kadmin("listprincs krbtgt/*")
                .await
                .map_err(|reason| anyhow!("kadmin.local listprincs: {reason}"))?;
            let principals: HashSet<&str> = listed.split_whitespace().collect();
            let ours = dir.realm.clone();
            let mut realms: BTreeMap<String, Option<String>> = render::read_trusts(&trusts)
                .into_iter()
                .map(|t| (t.realm, Some(t.kdc)))
                .collect();
            // Principals of a trust whose line is gone still count.
            for p in &principals {
                let Some((service, realm)) =
                    p.strip_prefix("krbtgt/").and_then(|p| p.split_once('@'))
                else {
                    continue;
                };
                let other = if realm == ours { service } else { realm };
                if other != ours {
                    realms.entry(other.to_string()).or_insert(None);
                }
            }
            let rows: Vec<serde_json::Value> = realms
                .iter()
                .map(|(realm, kdc)| {
                    let [to_them, from_them] = trust_principals(&ours, realm);
                    serde_json::json!({
                        "realm": realm,
                        "kdc": kdc,
                        "outbound": principals.contains(to_them.as_str()),
                        "inbound": principals.contains(from_them.as_str()),
                    })
                })
                .collect();
            if *json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
                return Ok(Exit::Ok);
            }
            if rows.is_empty() {
                println!("no trusted realms");
                return Ok(Exit::Ok);
            }
            println!("{:<24} {:<28} {:<9} INBOUND", "REALM", "KDC", "OUTBOUND");
            let yes = |v: &serde_json::Value| if v == true { "yes" } else { "MISSING" };
            for r in &rows {
                println!(
                    "{:<24} {:<28} {:<9} {}",
                    r["realm"].as_str().unwrap_or("?"),
                    r["kdc"].as_str().unwrap_or("(not in krb5.conf)"),
                    yes(&r["outbound"]),
                    yes(&r["inbound"])
                );
            }
            Ok(Exit::Ok)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names() {
        for ok in ["alice", "_svc", "a", "bob.smith", "x-1_2", &"a".repeat(32)] {
            check_uid(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in [
            "",
            "Alice",
            "1abc",
            "-x",
            ".x",
            "a b",
            "a/b",
            "é",
            &"a".repeat(33),
            "a,b",
            "a=b",
        ] {
            assert!(check_uid(bad).is_err(), "{bad:?} accepted");
        }
        let e = check_uid("Alice").unwrap_err().to_string();
        assert_eq!(
            e,
            "\"Alice\" is not a user name: it must start with a-z or '_'"
        );
    }

    #[test]
    fn host_and_service_names() {
        assert_eq!(check_fqdn("WS1.Coop.Lan.").unwrap(), "ws1.coop.lan");
        assert!(check_fqdn("ws1")
            .unwrap_err()
            .to_string()
            .contains("not fully qualified"));
        assert!(check_fqdn("a..b").is_err());
        assert!(check_fqdn("a_b.lan").is_err());
        assert!(check_fqdn("a/b.lan").is_err());
        assert_eq!(
            check_service("HTTP/Files.coop.lan").unwrap(),
            ("HTTP".to_string(), "files.coop.lan".to_string())
        );
        assert!(check_service("files.coop.lan").is_err());
        assert!(check_service("host/a.lan")
            .unwrap_err()
            .to_string()
            .contains("host add"));
        assert!(check_service("krbtgt/A.LAN").is_err());
        assert!(check_service("1x/a.lan").is_err());
        assert!(check_service("a b/a.lan").is_err());
    }

    #[test]
    fn realms_and_kdcs() {
        check_realm("OTHER.LAN").unwrap();
        check_realm("CO-OP2.EXAMPLE").unwrap();
        for bad in ["", "other.lan", ".A", "A.", "A..B", "A B", "A@B"] {
            assert!(check_realm(bad).is_err(), "{bad:?}");
        }
        for ok in ["hub.other.lan:88", "10.9.0.2:88", "[fd00::2]:750"] {
            check_kdc(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in [
            "hub.other.lan",
            "hub:0",
            "hub:x",
            "fd00::2:88",
            "[nope]:88",
            "a b:88",
            ":88",
        ] {
            assert!(check_kdc(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn next_free_numbers() {
        assert_eq!(next_free(&[], 10000).unwrap(), 10000);
        assert_eq!(next_free(&[1000, 65534], 10000).unwrap(), 65535);
        assert_eq!(next_free(&[1000, 500], 10000).unwrap(), 10000);
        assert_eq!(next_free(&[10000, 10003, 10001], 10000).unwrap(), 10004);
        // The members group (10000) is below the first of ours.
        assert_eq!(next_free(&[10000], 10001).unwrap(), 10001);
        assert!(next_free(&[u32::MAX], 10000).is_err());
    }

    #[test]
    fn surnames() {
        assert_eq!(surname(Some("Alice B. Example"), "alice"), "Example");
        assert_eq!(surname(Some("Alice"), "alice"), "Alice");
        assert_eq!(surname(None, "alice"), "alice");
    }

    #[test]
    fn trusts_file() {
        let text = "OTHER.LAN 10.9.0.2:88\n# a comment\nTHIRD.LAN hub.third.lan:88\n";
        assert_eq!(
            trusts_with(text, "NEW.LAN", "kdc.new.lan:88"),
            "OTHER.LAN 10.9.0.2:88\n# a comment\nTHIRD.LAN hub.third.lan:88\nNEW.LAN kdc.new.lan:88\n"
        );
        assert_eq!(
            trusts_with(text, "OTHER.LAN", "10.9.0.3:88"),
            "# a comment\nTHIRD.LAN hub.third.lan:88\nOTHER.LAN 10.9.0.3:88\n"
        );
        assert_eq!(
            trusts_without(text, "OTHER.LAN"),
            (
                "# a comment\nTHIRD.LAN hub.third.lan:88\n".to_string(),
                true
            )
        );
        // OTHER.LANX is another realm.
        assert!(!trusts_without(text, "OTHER.LA").1);
        assert_eq!(trusts_with("", "A.LAN", "a:88"), "A.LAN a:88\n");
        assert_eq!(
            trusts_with("X.LAN x:88", "A.LAN", "a:88"),
            "X.LAN x:88\nA.LAN a:88\n"
        );
        // What the node reads back.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("trusts");
        write_trusts(&path, &trusts_with(text, "NEW.LAN", "kdc.new.lan:88")).unwrap();
        let read: Vec<(String, String)> = render::read_trusts(&path)
            .into_iter()
            .map(|t| (t.realm, t.kdc))
            .collect();
        assert!(read.contains(&("NEW.LAN".into(), "kdc.new.lan:88".into())));
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o644
        );
        assert_eq!(
            trust_principals("COOP.LAN", "OTHER.LAN"),
            [
                "krbtgt/OTHER.LAN@COOP.LAN".to_string(),
                "krbtgt/COOP.LAN@OTHER.LAN".to_string()
            ]
        );
    }

    #[test]
    fn refusal_messages() {
        let policy = PasswordPolicy::default();
        assert_eq!(
            password_refusal("alice", "Password is too short", &policy),
            "alice: password refused: Password is too short (policy: at least 12 characters, 2 classes)"
        );
        assert_eq!(
            password_refusal("alice", "Password does not contain enough character classes", &policy),
            "alice: password refused: Password does not contain enough character classes (policy: at least 12 characters, 2 classes)"
        );
        assert_eq!(
            password_refusal("alice", "Cannot reuse password", &policy),
            "alice: password refused: Cannot reuse password (policy: none of the last 5 passwords)"
        );
        assert_eq!(
            password_refusal("alice", "Principal or policy already exists", &policy),
            "alice: the KDC refused: Principal or policy already exists"
        );
    }

    #[test]
    fn quoting() {
        assert_eq!(quote("plain"), "\"plain\"");
        assert_eq!(quote("a \"b\" c"), "\"a \"\"b\"\" c\"");
        assert!(check_password_text("ok pass").is_ok());
        assert!(check_password_text("").is_err());
        assert!(check_password_text("a\nb").is_err());
    }

    #[test]
    fn times_and_secrets() {
        assert_eq!(generalized_time("20261201220653Z"), "2026-12-01T22:06:53Z");
        assert_eq!(generalized_time("garbage"), "garbage");
        let a = random_secret().unwrap();
        let b = random_secret().unwrap();
        assert_eq!(a.len(), SECRET_LEN);
        assert_ne!(a, b);
        assert_eq!(classes(&a), 4);
        assert!(a
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.+".contains(c)));
    }

    #[test]
    fn result_texts() {
        assert_eq!(result_text(68, ""), "LDAP result 68 (entryAlreadyExists)");
        assert_eq!(result_text(99, "odd"), "LDAP result 99: odd");
    }
}

//! The three daemons and what they need on disk: slapd (dropping to its
//! own user), then krb5kdc and kadmind, which read the directory over
//! ldapi as its root.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command as StdCommand, Stdio};

use nix::unistd::{Gid, Group, Uid, User};
use ntari_node::service::{Command, DaemonSpec};

use crate::config::IdentityConfig;
use crate::render::{slapd_urls, Layout};

pub const SLAPD: &str = "slapd";
pub const KRB5KDC: &str = "krb5kdc";
pub const KADMIND: &str = "kadmind";

/// The user slapd runs as once its ports are open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlapdUser {
    /// None: slapd keeps root (`ldap.user = "root"`, or no such user here).
    pub user: Option<(String, Uid, Gid)>,
}

impl SlapdUser {
    pub fn resolve(config: &IdentityConfig) -> Result<SlapdUser, String> {
        let lookup = |name: &str| User::from_name(name).ok().flatten();
        let user = match config.ldap.user.as_deref() {
            Some("root") => None,
            Some(name) => {
                Some(lookup(name).ok_or_else(|| format!("no user {name:?} on this machine"))?)
            }
            None => ["openldap", "ldap"].iter().find_map(|n| lookup(n)),
        };
        Ok(SlapdUser {
            user: user.map(|u| (u.name, u.uid, u.gid)),
        })
    }

    /// `-u <user> -g <group>` for slapd.
    pub fn slapd_args(&self) -> Vec<String> {
        match &self.user {
            None => Vec::new(),
            Some((name, _, gid)) => {
                let group = Group::from_gid(*gid)
                    .ok()
                    .flatten()
                    .map(|g| g.name)
                    .unwrap_or_else(|| gid.to_string());
                vec!["-u".into(), name.clone(), "-g".into(), group]
            }
        }
    }

    pub fn chown(&self, path: &Path) -> Result<(), String> {
        if let Some((_, uid, gid)) = &self.user {
            nix::unistd::chown(path, Some(*uid), Some(*gid))
                .map_err(|e| format!("chown {}: {e}", path.display()))?;
        }
        Ok(())
    }

    /// The directory and every file in it (the database is flat).
    pub fn chown_tree(&self, dir: &Path) -> Result<(), String> {
        self.chown(dir)?;
        for entry in std::fs::read_dir(dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?
            .flatten()
        {
            self.chown(&entry.path())?;
        }
        Ok(())
    }
}

/// slapd's user must be able to walk down to its database and its run dir:
/// an error naming the first directory on the way it cannot enter.
fn check_reachable(dir: &Path, user: &SlapdUser) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let Some((name, uid, gid)) = &user.user else {
        return Ok(());
    };
    for ancestor in dir.ancestors().skip(1) {
        let Ok(meta) = std::fs::metadata(ancestor) else {
            continue;
        };
        let mode = meta.mode();
        let enters = if meta.uid() == uid.as_raw() {
            mode & 0o100 != 0
        } else if meta.gid() == gid.as_raw() {
            mode & 0o010 != 0
        } else {
            mode & 0o001 != 0
        };
        if !enters {
            return Err(format!(
                "slapd runs as {name}, who cannot enter {} (mode {:o}): make it `chmod o+x`, or set ldap.user = \"root\"",
                ancestor.display(),
                mode & 0o7777
            ));
        }
    }
    Ok(())
}

/// The state dir (0700: the stash and keytabs are in it), the database
/// dir and slapd's run dir, owned by slapd's user.
pub fn prepare_dirs(layout: &Layout, user: &SlapdUser) -> Result<(), String> {
    check_reachable(&layout.state_dir, user)?;
    check_reachable(&layout.run_dir, user)?;
    let make = |dir: &Path, mode: u32| -> Result<(), String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
            .map_err(|e| format!("{}: {e}", dir.display()))
    };
    make(&layout.state_dir, 0o700)?;
    // slapd's user must pass through the state dir to its database.
    if let Some((_, _, gid)) = &user.user {
        nix::unistd::chown(&layout.state_dir, None, Some(*gid))
            .map_err(|e| format!("chown {}: {e}", layout.state_dir.display()))?;
        std::fs::set_permissions(&layout.state_dir, std::fs::Permissions::from_mode(0o710))
            .map_err(|e| format!("{}: {e}", layout.state_dir.display()))?;
    }
    make(&layout.database_dir(), 0o700)?;
    user.chown_tree(&layout.database_dir())?;
    make(&layout.tls_dir(), 0o755)?;
    make(&layout.slapd_run_dir(), 0o755)?;
    user.chown(&layout.slapd_run_dir())?;
    if layout.tls_key().exists() {
        user.chown(&layout.tls_key())?;
    }
    Ok(())
}

/// The KDC's and kadmind's log files, created (or narrowed) to 0600.
pub fn private_logs(layout: &Layout) -> Result<(), String> {
    use std::os::unix::fs::OpenOptionsExt;
    for path in [layout.kdc_log(), layout.kadmind_log()] {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&path)
            .and_then(|_| std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)))
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

/// The three daemons in start order. krb5kdc and kadmind exit at once if
/// slapd does not answer, so the runtime starts them only after
/// `daemon_started("slapd")` saw it answer.
pub fn specs(config: &IdentityConfig, layout: &Layout, user: &SlapdUser) -> Vec<DaemonSpec> {
    // `-d none`: foreground, and only what slapd logs at any level (its
    // errors) on stderr, which the runtime keeps as the daemon's last words.
    // `prlimit --nofile`: slapd sizes its connection table by its file
    // limit (see `ldap.max_open_files`); prlimit execs slapd, so the
    // supervised process is slapd itself.
    let nofile = config.ldap.max_open_files;
    let mut slapd_args = vec![
        format!("--nofile={nofile}:{nofile}"),
        "--".into(),
        SLAPD.into(),
        "-d".into(),
        "none".into(),
        "-h".into(),
        slapd_urls(config, layout),
        "-f".into(),
        layout.slapd_conf().display().to_string(),
    ];
    slapd_args.extend(user.slapd_args());
    let with_env = |mut command: Command| {
        for (k, v) in layout.krb5_env() {
            command = command.with_env(k, v);
        }
        command
    };
    vec![
        DaemonSpec::new(SLAPD, Command::new("prlimit", slapd_args))
            .with_stale_file(layout.slapd_pid())
            .with_stale_file(layout.ldapi_socket()),
        DaemonSpec::new(KRB5KDC, with_env(Command::new(KRB5KDC, ["-n"]))),
        DaemonSpec::new(KADMIND, with_env(Command::new(KADMIND, ["-nofork"]))),
    ]
}

/// `ldapwhoami -Y EXTERNAL` over the socket answered (provisioning only;
/// the node itself speaks LDAP in-process, see [`crate::probe`]). A socket
/// file alone is no proof: a dead slapd leaves it behind.
pub fn ldapi_answers(layout: &Layout) -> bool {
    if !layout.ldapi_socket().exists() {
        return false;
    }
    StdCommand::new("ldapwhoami")
        .args([
            "-Q",
            "-Y",
            "EXTERNAL",
            "-H",
            &format!("{}/", layout.ldapi_url()),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

//! `/etc/ntari/services/files.toml`: the cooperative's shares (SMB, for
//! Windows, macOS and Linux members) and exports (NFS, for Linux machines
//! and other hubs), and how the two servers listen.
//!
//! Invariants checked here (serde checks the types, [`FilesConfig::validate`]
//! the rest, each error naming its key): share names are unique and valid
//! for Samba, no share or export is `/` or outside `share_roots`, clients
//! are CIDRs, no two listeners share a port. What needs the disk (does the
//! path exist, is it a directory, does a symlink lead out of the roots) is
//! [`resolve_dirs`]'s, at configure.

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::{Component, Path, PathBuf};

use ipnet::IpNet;
use ntari_node::service::ConfigIssue;
use serde::{Deserialize, Serialize};

/// Every key is optional; defaults per field.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct FilesConfig {
    /// The only directories shares and exports may be in. A relative entry
    /// is under the state dir. Default `["/srv/ntari"]`.
    pub share_roots: Vec<PathBuf>,
    pub smb: Smb,
    pub nfs: Nfs,
    pub shares: Vec<Share>,
    pub exports: Vec<Export>,
}

/// How Samba's smbd serves the shares.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Smb {
    /// Run smbd at all. Default true.
    pub enabled: bool,
    /// Addresses smbd listens on (and nothing else). Default `["0.0.0.0"]`.
    pub listen: Vec<IpAddr>,
    /// Default 445, what every client expects.
    pub port: u16,
    /// Oldest dialect accepted: `SMB2_10` (Windows 7, old macOS),
    /// `SMB3_00`, `SMB3_02` or `SMB3_11` (Windows 10+). SMB1 is never
    /// offered. Default `SMB2_10`.
    pub min_protocol: String,
    /// Refuse clients that do not sign. Default false (Samba's default:
    /// signing when the client asks).
    pub signing_required: bool,
    /// Refuse clients that do not encrypt (SMB3 only, no guest access).
    /// Default false.
    pub encryption_required: bool,
    /// The Windows workgroup shown to members. Default `WORKGROUP`.
    pub workgroup: String,
    /// Shown next to the server's name. Default `NTARI hub`.
    pub server_string: String,
    /// `smbstatus` (sessions, tree connects, open files and counters in
    /// status and metrics) runs when a client connects or leaves, and at
    /// least every this many seconds, for the counters. Each run costs
    /// Samba's tools 40-50 ms of CPU. Default 300; 1 to 3600.
    pub status_interval: u64,
}

/// How the NFS server serves the exports.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Nfs {
    /// Run an NFS server at all. Default true.
    pub enabled: bool,
    /// `ganesha` (NFS-Ganesha, a user-space server: Debian) or `kernel`
    /// (the Linux nfsd through nfs-utils: Alpine, which has no Ganesha).
    /// Default `ganesha`.
    pub backend: String,
    /// The one address the server binds. Default `0.0.0.0`.
    pub listen: IpAddr,
    /// NFSv4 port. Default 2049.
    pub port: u16,
    /// Keep NFSv4's grace period after a (re)start, in which clients
    /// reclaim their locks and nobody may open new files (90 s). Default
    /// false: a hub restarted by OpenRC serves at once; members' locks are
    /// advisory anyway.
    pub grace: bool,
}

/// One SMB share.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Share {
    /// What members see (`\\hub\<name>`): letters, digits, `-`, `_`, `.`,
    /// at most 80, not `global`, `homes`, `printers` or `ipc$`.
    pub name: String,
    /// The directory. Relative: under the state dir, and the node makes it.
    /// Absolute: it must exist.
    pub path: PathBuf,
    /// Default false.
    #[serde(default)]
    pub read_only: bool,
    /// Anyone may connect without a password, as the `nobody` user.
    /// Default false: members only.
    #[serde(default)]
    pub guest: bool,
    /// Members who may connect; empty (default): every member.
    #[serde(default)]
    pub valid_users: Vec<String>,
    /// Unix groups whose members may connect, alongside `valid_users`.
    #[serde(default)]
    pub valid_groups: Vec<String>,
    /// A note about space (`"50 GB for the whole co-op"`), shown as the
    /// share's comment and in status. Not enforced: quotas are the disk's.
    #[serde(default)]
    pub quota_note: Option<String>,
}

/// One NFS export.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Export {
    /// The directory, as for shares.
    pub path: PathBuf,
    /// Where clients mount it (`hub:/<pseudo>` over NFSv4). Default `/` +
    /// the directory's last component.
    #[serde(default)]
    pub pseudo: Option<String>,
    /// Who may mount it: CIDRs (`192.168.7.0/24`, `10.99.0.2/32`).
    pub clients: Vec<IpNet>,
    /// Default true: exports are read-only unless said otherwise.
    #[serde(default = "yes")]
    pub read_only: bool,
    /// `root` (default: a client's root is `nobody` here), `all` (every
    /// client user is `nobody`) or `none` (a client's root is root here).
    #[serde(default = "root_squash")]
    pub squash: String,
}

fn yes() -> bool {
    true
}

fn root_squash() -> String {
    "root".into()
}

impl Default for FilesConfig {
    fn default() -> Self {
        FilesConfig {
            share_roots: vec![PathBuf::from("/srv/ntari")],
            smb: Smb::default(),
            nfs: Nfs::default(),
            shares: Vec::new(),
            exports: Vec::new(),
        }
    }
}

impl Default for Smb {
    fn default() -> Self {
        Smb {
            enabled: true,
            listen: vec![IpAddr::from([0, 0, 0, 0])],
            port: 445,
            min_protocol: "SMB2_10".into(),
            signing_required: false,
            encryption_required: false,
            workgroup: "WORKGROUP".into(),
            server_string: "NTARI hub".into(),
            status_interval: 300,
        }
    }
}

impl Default for Nfs {
    fn default() -> Self {
        Nfs {
            enabled: true,
            backend: "ganesha".into(),
            listen: IpAddr::from([0, 0, 0, 0]),
            port: 2049,
            grace: false,
        }
    }
}

/// Dialects smbd may be limited to, oldest first.
pub const SMB_DIALECTS: &[&str] = &["SMB2_10", "SMB3_00", "SMB3_02", "SMB3_11"];
/// Names smb.conf reserves for its own sections.
const RESERVED_SHARES: &[&str] = &["global", "homes", "printers", "print$", "ipc$"];

impl Export {
    /// The NFSv4 pseudo path: the configured one, or `/` + the last
    /// component of `path`.
    pub fn pseudo_path(&self) -> String {
        match &self.pseudo {
            Some(p) => p.clone(),
            None => format!(
                "/{}",
                self.path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            ),
        }
    }
}

impl FilesConfig {
    /// Everything that can be checked without the disk.
    pub fn validate(&self) -> Result<(), ConfigIssue> {
        if self.share_roots.is_empty() && !(self.shares.is_empty() && self.exports.is_empty()) {
            return Err(ConfigIssue::new(
                "share_roots",
                "empty, so no share or export is allowed; name the directories they may be in",
            ));
        }
        for (i, root) in self.share_roots.iter().enumerate() {
            check_dir_path(root, &format!("share_roots[{i}]"))?;
        }
        self.smb.validate()?;
        self.nfs.validate()?;
        if self.smb.enabled && self.nfs.enabled {
            for smb_address in &self.smb.listen {
                let overlaps = smb_address == &self.nfs.listen
                    || smb_address.is_unspecified()
                    || self.nfs.listen.is_unspecified();
                if overlaps && self.smb.port == self.nfs.port {
                    return Err(ConfigIssue::new(
                        "nfs.port",
                        format!("{} is smb.port too; give each its own", self.nfs.port),
                    ));
                }
            }
        }
        let mut names = HashSet::new();
        for (i, share) in self.shares.iter().enumerate() {
            let key = format!("shares[{i}]");
            share.validate(&key)?;
            if !names.insert(share.name.to_lowercase()) {
                return Err(ConfigIssue::new(
                    format!("{key}.name"),
                    format!(
                        "`{}` is already a share (names are case-insensitive)",
                        share.name
                    ),
                ));
            }
            self.check_in_roots(&share.path, &format!("{key}.path"))?;
        }
        let mut pseudos = HashSet::new();
        for (i, export) in self.exports.iter().enumerate() {
            let key = format!("exports[{i}]");
            self.check_in_roots(&export.path, &format!("{key}.path"))?;
            export.validate(&key)?;
            if !pseudos.insert(export.pseudo_path()) {
                return Err(ConfigIssue::new(
                    format!("{key}.pseudo"),
                    format!(
                        "`{}` is another export's pseudo path; set `pseudo` to tell them apart",
                        export.pseudo_path()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// A share or export path is inside one of the roots, by its words
    /// (relative paths compare with relative roots: both are under the
    /// state dir). Symlinks are [`resolve_dirs`]'s.
    fn check_in_roots(&self, path: &Path, key: &str) -> Result<(), ConfigIssue> {
        check_dir_path(path, key)?;
        if self.share_roots.iter().any(|root| path.starts_with(root)) {
            return Ok(());
        }
        let roots: Vec<String> = self
            .share_roots
            .iter()
            .map(|r| r.display().to_string())
            .collect();
        Err(ConfigIssue::new(
            key,
            format!(
                "{} is outside share_roots ({}); move it there or add its parent to share_roots",
                path.display(),
                roots.join(", ")
            ),
        ))
    }
}

/// Not empty, not `/`, no `..`, no `.`-only: a path whose meaning is plain.
fn check_dir_path(path: &Path, key: &str) -> Result<(), ConfigIssue> {
    if path.as_os_str().is_empty() {
        return Err(ConfigIssue::new(key, "empty path"));
    }
    if path.components().all(|c| matches!(c, Component::RootDir)) {
        return Err(ConfigIssue::new(
            key,
            "`/` would share the whole machine, its keys and passwords included; name a directory of its own",
        ));
    }
    if path
        .components()
        .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
    {
        return Err(ConfigIssue::new(
            key,
            format!("{}: write it without `.` or `..`", path.display()),
        ));
    }
    let text = path.to_string_lossy();
    if text.contains(['\n', '\r', '"', '\\', '%']) {
        return Err(ConfigIssue::new(
            key,
            format!(
                "{text:?}: a newline, quote, backslash or `%` cannot go into smb.conf or ganesha.conf"
            ),
        ));
    }
    Ok(())
}

impl Smb {
    fn validate(&self) -> Result<(), ConfigIssue> {
        if !self.enabled {
            return Ok(());
        }
        if self.listen.is_empty() {
            return Err(ConfigIssue::new(
                "smb.listen",
                "empty; give at least one address (or set smb.enabled = false)",
            ));
        }
        if self.port == 0 {
            return Err(ConfigIssue::new("smb.port", "0 is not a port"));
        }
        if !SMB_DIALECTS.contains(&self.min_protocol.as_str()) {
            return Err(ConfigIssue::new(
                "smb.min_protocol",
                format!(
                    "`{}` is not one of {}",
                    self.min_protocol,
                    SMB_DIALECTS.join(", ")
                ),
            ));
        }
        if self.encryption_required && self.min_protocol == "SMB2_10" {
            return Err(ConfigIssue::new(
                "smb.min_protocol",
                "SMB2_10 cannot encrypt, yet smb.encryption_required is true; use SMB3_00 or newer",
            ));
        }
        if !(1..=3600).contains(&self.status_interval) {
            return Err(ConfigIssue::new(
                "smb.status_interval",
                format!("{} is not between 1 and 3600 seconds", self.status_interval),
            ));
        }
        check_smb_word(&self.workgroup, "smb.workgroup", 15)?;
        check_smb_word(&self.server_string, "smb.server_string", 64)?;
        Ok(())
    }
}

impl Nfs {
    fn validate(&self) -> Result<(), ConfigIssue> {
        if !self.enabled {
            return Ok(());
        }
        if !matches!(self.backend.as_str(), "ganesha" | "kernel") {
            return Err(ConfigIssue::new(
                "nfs.backend",
                format!("`{}` is neither `ganesha` nor `kernel`", self.backend),
            ));
        }
        if self.port == 0 {
            return Err(ConfigIssue::new("nfs.port", "0 is not a port"));
        }
        Ok(())
    }
}

impl Share {
    fn validate(&self, key: &str) -> Result<(), ConfigIssue> {
        let name = &self.name;
        let name_ok = !name.is_empty()
            && name.len() <= 80
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !name_ok {
            return Err(ConfigIssue::new(
                format!("{key}.name"),
                format!("`{name}`: use 1 to 80 letters, digits, `-`, `_` or `.`"),
            ));
        }
        if RESERVED_SHARES.contains(&name.to_lowercase().as_str()) {
            return Err(ConfigIssue::new(
                format!("{key}.name"),
                format!("`{name}` is reserved by Samba; choose another name"),
            ));
        }
        if self.guest && !(self.valid_users.is_empty() && self.valid_groups.is_empty()) {
            return Err(ConfigIssue::new(
                format!("{key}.guest"),
                "a guest share is open to anyone, so valid_users/valid_groups would not apply; drop one of them",
            ));
        }
        for (j, user) in self.valid_users.iter().enumerate() {
            check_account_name(user, &format!("{key}.valid_users[{j}]"))?;
        }
        for (j, group) in self.valid_groups.iter().enumerate() {
            check_account_name(group, &format!("{key}.valid_groups[{j}]"))?;
        }
        if let Some(note) = &self.quota_note {
            check_smb_word(note, &format!("{key}.quota_note"), 200)?;
        }
        Ok(())
    }
}

impl Export {
    fn validate(&self, key: &str) -> Result<(), ConfigIssue> {
        if self.clients.is_empty() {
            return Err(ConfigIssue::new(
                format!("{key}.clients"),
                "empty, so nobody could mount it; list the networks that may (e.g. \"192.168.7.0/24\")",
            ));
        }
        if !matches!(self.squash.as_str(), "root" | "all" | "none") {
            return Err(ConfigIssue::new(
                format!("{key}.squash"),
                format!("`{}` is not one of root, all, none", self.squash),
            ));
        }
        let pseudo = self.pseudo_path();
        let pseudo_ok = pseudo.len() > 1
            && pseudo.starts_with('/')
            && pseudo.split('/').skip(1).all(|c| {
                !c.is_empty()
                    && c != "."
                    && c != ".."
                    && c.chars()
                        .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '-' | '_' | '.'))
            });
        if !pseudo_ok {
            return Err(ConfigIssue::new(
                format!("{key}.pseudo"),
                format!("`{pseudo}`: an absolute path like /public of letters, digits, `-`, `_`, `.`; not / itself"),
            ));
        }
        Ok(())
    }
}

/// Unix user or group names as smb.conf lists them (`valid users`).
fn check_account_name(name: &str, key: &str) -> Result<(), ConfigIssue> {
    let ok = !name.is_empty()
        && name.len() <= 32
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'))
        && !name.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err(ConfigIssue::new(
            key,
            format!(
                "`{name}`: a member name is 1 to 32 lower-case letters, digits, `-`, `_` or `.`"
            ),
        ))
    }
}

/// Free text that goes into smb.conf on one line.
fn check_smb_word(text: &str, key: &str, max: usize) -> Result<(), ConfigIssue> {
    if text.is_empty() || text.len() > max || text.chars().any(|c| c.is_control() || c == '%') {
        return Err(ConfigIssue::new(
            key,
            format!("{text:?}: 1 to {max} characters on one line, without `%`"),
        ));
    }
    Ok(())
}

/// A configured path made absolute: relative ones are under `state_dir`.
pub fn absolute(path: &Path, state_dir: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        state_dir.join(path)
    }
}

/// At configure: makes the relative share and export dirs (under the state
/// dir; mode 0777, since Samba's `valid users` decides who gets in, not
/// the Unix mode), then checks every path is a directory that, symlinks
/// followed, is still inside a root. Never removes or changes anything
/// that exists.
pub fn resolve_dirs(config: &FilesConfig, state_dir: &Path) -> Result<(), ConfigIssue> {
    for (i, root) in config.share_roots.iter().enumerate() {
        if root.is_relative() {
            make_dir(
                &absolute(root, state_dir),
                &format!("share_roots[{i}]"),
                0o755,
            )?;
        }
    }
    // The roots as the kernel resolves them, once (a missing absolute root
    // holds nothing, so it is left out).
    let roots: Vec<PathBuf> = config
        .share_roots
        .iter()
        .filter_map(|r| absolute(r, state_dir).canonicalize().ok())
        .collect();
    let shares = config
        .shares
        .iter()
        .enumerate()
        .map(|(i, s)| (format!("shares[{i}].path"), &s.path));
    let exports = config
        .exports
        .iter()
        .enumerate()
        .map(|(i, e)| (format!("exports[{i}].path"), &e.path));
    let export_count = config.exports.len();
    let entries: Vec<(String, &PathBuf)> = shares.chain(exports).collect();
    let first_export = entries.len() - export_count;
    for (index, (key, path)) in entries.into_iter().enumerate() {
        let full = absolute(path, state_dir);
        if path.is_relative() {
            make_dir(&full, &key, 0o777)?;
        }
        let meta = std::fs::metadata(&full).map_err(|e| {
            ConfigIssue::new(
                &key,
                format!("{}: {e}; create the directory first", full.display()),
            )
        })?;
        if !meta.is_dir() {
            return Err(ConfigIssue::new(
                &key,
                format!("{} is not a directory", full.display()),
            ));
        }
        let real = full
            .canonicalize()
            .map_err(|e| ConfigIssue::new(&key, format!("{}: {e}", full.display())))?;
        let inside = roots.iter().any(|root| real.starts_with(root));
        if index >= first_export && config.nfs.enabled && on_overlayfs(&real) {
            return Err(ConfigIssue::new(
                &key,
                format!(
                    "{} is on overlayfs, which NFS cannot export (no stable file handles: clients would get NOENT); keep exports on a real filesystem",
                    real.display()
                ),
            ));
        }
        if !inside || real == Path::new("/") {
            return Err(ConfigIssue::new(
                &key,
                format!(
                    "{} leads to {}, outside share_roots (a symlink?); share the real directory from inside a root",
                    full.display(),
                    real.display()
                ),
            ));
        }
    }
    Ok(())
}

fn on_overlayfs(path: &Path) -> bool {
    nix::sys::statfs::statfs(path)
        .is_ok_and(|fs| fs.filesystem_type() == nix::sys::statfs::OVERLAYFS_SUPER_MAGIC)
}

/// Creates `dir` (and parents) if missing; an existing one is left as it is.
fn make_dir(dir: &Path, key: &str, mode: u32) -> Result<(), ConfigIssue> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(dir)
        .and_then(|()| std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode)))
        .map_err(|e| ConfigIssue::new(key, format!("cannot create {}: {e}", dir.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> FilesConfig {
        toml::from_str(text).expect("parses")
    }

    fn issue(text: &str) -> ConfigIssue {
        parse(text).validate().expect_err("refused")
    }

    const SHARE: &str =
        "share_roots = [\"shares\"]\n[[shares]]\nname = \"pub\"\npath = \"shares/pub\"\n";

    #[test]
    fn defaults_are_valid_and_production_shaped() {
        let config = FilesConfig::default();
        config.validate().expect("valid");
        assert_eq!(config.smb.port, 445);
        assert_eq!(config.nfs.port, 2049);
        assert_eq!(config.smb.min_protocol, "SMB2_10");
        assert!(!config.nfs.grace);
    }

    #[test]
    fn the_example_is_valid() {
        let text = include_str!("../../../examples/files.toml");
        parse(text)
            .validate()
            .expect("examples/files.toml is valid");
    }

    #[test]
    fn root_and_outside_paths_are_refused_by_key() {
        let e = issue("share_roots = [\"/\"]");
        assert_eq!(e.key, "share_roots[0]");
        let e = issue(&SHARE.replace("shares/pub", "/"));
        assert_eq!(e.key, "shares[0].path");
        assert!(e.message.contains("whole machine"), "{e}");
        let e = issue(&SHARE.replace("shares/pub", "/etc"));
        assert_eq!(e.key, "shares[0].path");
        assert!(e.message.contains("outside share_roots"), "{e}");
        let e = issue(&SHARE.replace("shares/pub", "shares/../../x"));
        assert!(e.message.contains(".."), "{e}");
    }

    #[test]
    fn each_field_has_its_own_error() {
        let cases = [
            (SHARE.replace("\"pub\"", "\"a b\""), "shares[0].name"),
            (SHARE.replace("\"pub\"", "\"IPC$\""), "shares[0].name"),
            (
                format!("{SHARE}[[shares]]\nname = \"PUB\"\npath = \"shares/x\"\n"),
                "shares[1].name",
            ),
            (
                format!("{SHARE}guest = true\nvalid_users = [\"alice\"]\n"),
                "shares[0].guest",
            ),
            (
                format!("{SHARE}valid_users = [\"Al ice\"]\n"),
                "shares[0].valid_users[0]",
            ),
            (
                format!("{SHARE}quota_note = \"100%\"\n"),
                "shares[0].quota_note",
            ),
            ("[smb]\nmin_protocol = \"NT1\"\n".into(), "smb.min_protocol"),
            (
                "[smb]\nencryption_required = true\n".into(),
                "smb.min_protocol",
            ),
            ("[smb]\nlisten = []\n".into(), "smb.listen"),
            ("[smb]\nstatus_interval = 0\n".into(), "smb.status_interval"),
            ("[smb]\nport = 2049\n".into(), "nfs.port"),
            ("[nfs]\nbackend = \"knfsd\"\n".into(), "nfs.backend"),
            (
                "share_roots = [\"s\"]\n[[exports]]\npath = \"s/a\"\nclients = []\n".into(),
                "exports[0].clients",
            ),
            (
                "share_roots = [\"s\"]\n[[exports]]\npath = \"s/a\"\nclients = [\"10.0.0.0/8\"]\nsquash = \"some\"\n".into(),
                "exports[0].squash",
            ),
            (
                "share_roots = [\"s\"]\n[[exports]]\npath = \"s/a\"\nclients = [\"10.0.0.0/8\"]\n[[exports]]\npath = \"s/b/a\"\nclients = [\"10.0.0.0/8\"]\n".into(),
                "exports[1].pseudo",
            ),
            (
                "share_roots = [\"s\"]\n[[exports]]\npath = \"s/a\"\npseudo = \"/\"\nclients = [\"10.0.0.0/8\"]\n".into(),
                "exports[0].pseudo",
            ),
        ];
        for (text, key) in cases {
            let e = issue(&text);
            assert_eq!(e.key, key, "{text}: {e}");
        }
    }

    #[test]
    fn typos_and_bad_cidrs_fail_to_parse() {
        assert!(toml::from_str::<FilesConfig>("[smb]\nprot = 1\n").is_err());
        assert!(toml::from_str::<FilesConfig>(
            "[[exports]]\npath = \"a\"\nclients = [\"10.0.0.300/8\"]\n"
        )
        .is_err());
    }

    #[test]
    fn resolve_dirs_makes_relative_dirs_and_refuses_files_and_escapes() {
        let state = tempfile::tempdir().expect("tempdir");
        let config = parse(SHARE);
        resolve_dirs(&config, state.path()).expect("made");
        assert!(state.path().join("shares/pub").is_dir());

        // An absolute path that is missing, or a file.
        let root = tempfile::tempdir().expect("tempdir");
        let text = format!(
            "share_roots = [\"{r}\"]\n[[shares]]\nname = \"x\"\npath = \"{r}/missing\"\n",
            r = root.path().display()
        );
        let e = resolve_dirs(&parse(&text), state.path()).expect_err("missing");
        assert_eq!(e.key, "shares[0].path");
        std::fs::write(root.path().join("missing"), "").expect("write");
        let e = resolve_dirs(&parse(&text), state.path()).expect_err("a file");
        assert!(e.message.contains("not a directory"), "{e}");

        // A symlink out of the roots.
        std::fs::remove_file(root.path().join("missing")).expect("rm");
        std::os::unix::fs::symlink("/etc", root.path().join("missing")).expect("symlink");
        let e = resolve_dirs(&parse(&text), state.path()).expect_err("escapes");
        assert!(e.message.contains("outside share_roots"), "{e}");
    }
}

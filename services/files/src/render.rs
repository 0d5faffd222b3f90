//! Where every file lives ([`Layout`]) and the daemons' own config:
//! `smb.conf` for smbd, `ganesha.conf` for NFS-Ganesha, `exports` for the
//! kernel's nfsd.
//!
//! Invariant: everything a daemon writes is inside the node's dirs. The
//! state dir keeps what must survive (the passdb, Samba's secrets, NFSv4
//! client records); the run dir what does not (sockets, locks, pids,
//! logs). Nothing here names /etc/samba, /var/lib/samba or /var/log/samba.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ntari_node::service::Paths;

use crate::config::{absolute, Export, FilesConfig, Share};

pub const SMB_CONF: &str = "smb.conf";
/// smb.conf without its directories, for `testparm`: it refuses a config
/// whose state or cache dir does not exist yet, which is so at the first
/// configure and always in `check-config`'s scratch dir.
pub const SMB_CHECK_CONF: &str = "smb-check.conf";
pub const GANESHA_CONF: &str = "ganesha.conf";
pub const KERNEL_EXPORTS: &str = "exports";

/// Every path the node and its daemons use.
#[derive(Debug, Clone)]
pub struct Layout {
    pub state_dir: PathBuf,
    pub run_dir: PathBuf,
    /// Samba's `state directory`; its `private dir` is `private/` in it.
    pub samba_state: PathBuf,
    pub samba_private: PathBuf,
    pub samba_cache: PathBuf,
    /// The members' passwords (tdbsam).
    pub passdb: PathBuf,
    pub samba_lock: PathBuf,
    pub ncalrpc: PathBuf,
    /// Where smbd's helpers (samba-dcerpcd, rpcd_*) log; smbd itself logs
    /// to the node.
    pub samba_log: PathBuf,
    pub smb_conf: PathBuf,
    /// NFSv4 client records (Ganesha's RecoveryRoot): kept across restarts.
    pub ganesha_recovery: PathBuf,
    pub ganesha_conf: PathBuf,
    pub ganesha_log: PathBuf,
    pub ganesha_pid: PathBuf,
    pub kernel_exports: PathBuf,
}

impl Layout {
    pub fn new(paths: &Paths) -> Self {
        let state = &paths.state_dir;
        let run = &paths.run_dir;
        let samba_state = state.join("samba");
        let samba_private = samba_state.join("private");
        Layout {
            state_dir: state.clone(),
            run_dir: run.clone(),
            passdb: samba_private.join("passdb.tdb"),
            samba_cache: samba_state.join("cache"),
            samba_private,
            samba_state,
            samba_lock: run.join("samba-lock"),
            ncalrpc: run.join("ncalrpc"),
            samba_log: run.join("samba.log"),
            smb_conf: run.join(SMB_CONF),
            ganesha_recovery: state.join("ganesha"),
            ganesha_conf: run.join(GANESHA_CONF),
            ganesha_log: run.join("ganesha.log"),
            ganesha_pid: run.join("ganesha.pid"),
            kernel_exports: run.join(KERNEL_EXPORTS),
        }
    }

    /// Dirs that must exist before smbd or ganesha start, with their modes
    /// (private: 0700, as Samba insists).
    pub fn dirs(&self) -> Vec<(&Path, u32)> {
        vec![
            (&self.samba_state, 0o755),
            (&self.samba_private, 0o700),
            (&self.samba_cache, 0o755),
            (&self.samba_lock, 0o755),
            (&self.ncalrpc, 0o755),
            (&self.ganesha_recovery, 0o755),
        ]
    }
}

/// smb.conf: a standalone server, members in a tdbsam passdb, no NetBIOS,
/// no SMB1, no printers, no usershares.
pub fn smb_conf(config: &FilesConfig, layout: &Layout) -> String {
    let smb = &config.smb;
    let mut out =
        String::from("# Rendered by ntari-files from files.toml; edits here are overwritten.\n");
    let _ = writeln!(out, "[global]");
    let mut kv = |k: &str, v: &dyn std::fmt::Display| {
        let _ = writeln!(out, "  {k} = {v}");
    };
    kv("server role", &"standalone server");
    kv("workgroup", &smb.workgroup);
    kv("server string", &smb.server_string);
    if !smb.listen.iter().any(IpAddr::is_unspecified) {
        let addresses: Vec<String> = smb.listen.iter().map(IpAddr::to_string).collect();
        kv("interfaces", &addresses.join(" "));
        kv("bind interfaces only", &"yes");
    }
    kv("smb ports", &smb.port);
    kv("disable netbios", &"yes");
    kv("server min protocol", &smb.min_protocol);
    kv(
        "server signing",
        &if smb.signing_required {
            "mandatory"
        } else {
            "default"
        },
    );
    kv(
        "server smb encrypt",
        &if smb.encryption_required {
            "required"
        } else {
            "default"
        },
    );
    // Unknown user names become the guest only where a share allows guests.
    let any_guest = config.shares.iter().any(|s| s.guest);
    kv(
        "map to guest",
        &if any_guest { "bad user" } else { "never" },
    );
    // Defence in depth: no SMB login as root, whatever the passdb holds.
    kv("invalid users", &"root");
    // No anonymous IPC$: without it anyone on the LAN lists every
    // member's name (SAMR). Guest shares still work.
    kv("restrict anonymous", &2);
    kv(
        "passdb backend",
        &format!("tdbsam:{}", layout.passdb.display()),
    );
    kv("private dir", &layout.samba_private.display());
    kv("state directory", &layout.samba_state.display());
    kv("cache directory", &layout.samba_cache.display());
    kv("lock directory", &layout.samba_lock.display());
    kv("pid directory", &layout.run_dir.display());
    kv("ncalrpc dir", &layout.ncalrpc.display());
    kv("log file", &layout.samba_log.display());
    kv("max log size", &1000);
    kv("logging", &"file");
    kv("load printers", &"no");
    kv("printing", &"bsd");
    kv("printcap name", &"/dev/null");
    kv("disable spoolss", &"yes");
    kv("usershare path", &"");
    kv("unix password sync", &"no");
    kv("smbd profiling level", &"on");
    for share in &config.shares {
        out.push_str(&share_section(share, &layout.state_dir));
    }
    out
}

/// [`smb_conf`] without the lines naming the node's directories.
pub fn smb_check_conf(smb_conf: &str) -> String {
    const DIRS: &[&str] = &[
        "private dir",
        "state directory",
        "cache directory",
        "lock directory",
        "pid directory",
        "ncalrpc dir",
    ];
    smb_conf
        .lines()
        .filter(|l| {
            !DIRS
                .iter()
                .any(|d| l.trim_start().starts_with(&format!("{d} = ")))
        })
        .map(|l| format!("{l}\n"))
        .collect()
}

fn share_section(share: &Share, state_dir: &Path) -> String {
    let mut out = format!("\n[{}]\n", share.name);
    let mut kv = |k: &str, v: &str| {
        let _ = writeln!(out, "  {k} = {v}");
    };
    kv(
        "path",
        &absolute(&share.path, state_dir).display().to_string(),
    );
    if let Some(note) = &share.quota_note {
        kv("comment", note);
    }
    kv("read only", if share.read_only { "yes" } else { "no" });
    kv("guest ok", if share.guest { "yes" } else { "no" });
    if !share.guest {
        // What members write belongs to all members, so they can edit
        // each other's files. World-readable: an NFS export of the share
        // reads as `nobody` (root_squash); who may connect over SMB is
        // `valid users`' business.
        kv("force group", crate::members::MEMBERS_GROUP);
        kv("create mask", "0664");
        kv("directory mask", "2775");
    }
    let allowed: Vec<String> = share
        .valid_users
        .iter()
        .cloned()
        .chain(share.valid_groups.iter().map(|g| format!("@{g}")))
        .collect();
    if !allowed.is_empty() {
        kv("valid users", &allowed.join(" "));
    }
    out
}

/// A stable Export_Id for each export: Ganesha updates an export in place
/// by its id on SIGHUP, so an id must follow the export, not its position.
/// 1..=65000 from the pseudo path's FNV-1a hash, the next free one on a
/// collision (0 is Ganesha's pseudo root).
pub fn export_ids(exports: &[Export]) -> Vec<u16> {
    let mut taken = std::collections::HashSet::new();
    exports
        .iter()
        .map(|e| {
            let hash = e
                .pseudo_path()
                .bytes()
                .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                    (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
                });
            let mut id = u16::try_from(hash % 65000).unwrap_or(0) + 1;
            while !taken.insert(id) {
                id = id % 65000 + 1;
            }
            id
        })
        .collect()
}

/// ganesha.conf: NFSv4 only over TCP (no rpcbind, NLM or rquota needed),
/// AUTH_SYS, every export closed but to its listed clients.
pub fn ganesha_conf(config: &FilesConfig, layout: &Layout) -> String {
    let nfs = &config.nfs;
    let mut out =
        String::from("# Rendered by ntari-files from files.toml; edits here are overwritten.\n");
    let _ = writeln!(
        out,
        "NFS_CORE_PARAM {{\n  NFS_Port = {};\n  Bind_Addr = {};\n  Protocols = 4;\n  Enable_NLM = false;\n  Enable_RQUOTA = false;\n  Enable_UDP = false;\n}}",
        nfs.port, nfs.listen
    );
    let _ = writeln!(
        out,
        "NFSv4 {{\n  RecoveryRoot = \"{}\";\n  Graceless = {};\n}}",
        layout.ganesha_recovery.display(),
        !nfs.grace
    );
    let _ = writeln!(out, "NFS_KRB5 {{\n  Active_krb5 = false;\n}}");
    for (export, id) in config.exports.iter().zip(export_ids(&config.exports)) {
        let clients: Vec<String> = export.clients.iter().map(ToString::to_string).collect();
        let _ = writeln!(
            out,
            "EXPORT {{\n  Export_Id = {id};\n  Path = \"{}\";\n  Pseudo = \"{}\";\n  Access_Type = None;\n  Squash = {};\n  Protocols = 4;\n  Transports = TCP;\n  SecType = sys;\n  CLIENT {{\n    Clients = {};\n    Access_Type = {};\n    Protocols = 4;\n  }}\n  FSAL {{\n    Name = VFS;\n  }}\n}}",
            absolute(&export.path, &layout.state_dir).display(),
            export.pseudo_path(),
            ganesha_squash(&export.squash),
            clients.join(", "),
            if export.read_only { "RO" } else { "RW" },
        );
    }
    out
}

fn ganesha_squash(squash: &str) -> &'static str {
    match squash {
        "all" => "All_Squash",
        "none" => "No_Root_Squash",
        _ => "Root_Squash",
    }
}

/// The kernel nfsd's exports(5) lines. Clients mount the real path: the
/// kernel builds NFSv4's pseudo root from the exports themselves, so
/// `pseudo` does not apply.
pub fn kernel_exports(config: &FilesConfig, state_dir: &Path) -> String {
    let mut out =
        String::from("# Rendered by ntari-files from files.toml; edits here are overwritten.\n");
    for export in &config.exports {
        let squash = match export.squash.as_str() {
            "all" => "all_squash",
            "none" => "no_root_squash",
            _ => "root_squash",
        };
        let mode = if export.read_only { "ro" } else { "rw" };
        let clients: Vec<String> = export
            .clients
            .iter()
            .map(|c| format!("{c}({mode},{squash},sync,no_subtree_check,sec=sys)"))
            .collect();
        let _ = writeln!(
            out,
            "{} {}",
            absolute(&export.path, state_dir).display(),
            clients.join(" ")
        );
    }
    out
}

/// The path a probe asks the NFS server for: the pseudo path under
/// Ganesha, the real one under the kernel.
pub fn probe_path(config: &FilesConfig, export: &Export, state_dir: &Path) -> String {
    if config.nfs.backend == "kernel" {
        absolute(&export.path, state_dir).display().to_string()
    } else {
        export.pseudo_path()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> Layout {
        Layout::new(&Paths {
            config: "/etc/ntari/services/files.toml".into(),
            state_dir: "/var/lib/ntari/files".into(),
            run_dir: "/run/ntari/files".into(),
        })
    }

    fn example() -> FilesConfig {
        toml::from_str(include_str!("../../../examples/files.toml")).expect("example parses")
    }

    #[test]
    fn smb_conf_keeps_everything_in_the_nodes_dirs() {
        let conf = smb_conf(&example(), &layout());
        for line in conf.lines().filter(|l| l.contains('/')) {
            assert!(
                line.contains("/var/lib/ntari/files")
                    || line.contains("/run/ntari/files")
                    || line.contains("/dev/null")
                    || line.starts_with('#'),
                "{line}"
            );
        }
        assert!(
            conf.contains("passdb backend = tdbsam:/var/lib/ntari/files/samba/private/passdb.tdb")
        );
        assert!(conf.contains("disable netbios = yes"));
        assert!(conf.contains("bind interfaces only = yes"));
    }

    #[test]
    fn shares_render_their_access_rules() {
        let mut config = example();
        config.shares = toml::from_str::<FilesConfig>(
            "[[shares]]\nname = \"open\"\npath = \"shares/open\"\nguest = true\nread_only = true\n\
             [[shares]]\nname = \"team\"\npath = \"/srv/ntari/team\"\nvalid_users = [\"alice\"]\nvalid_groups = [\"board\"]\nquota_note = \"10 GB\"\n",
        )
        .expect("parses")
        .shares;
        let conf = smb_conf(&config, &layout());
        assert!(conf.contains("[open]\n  path = /var/lib/ntari/files/shares/open\n  read only = yes\n  guest ok = yes\n"), "{conf}");
        assert!(conf.contains("[team]\n  path = /srv/ntari/team\n  comment = 10 GB\n  read only = no\n  guest ok = no\n  force group = ntari-members\n  create mask = 0664\n  directory mask = 2775\n  valid users = alice @board\n"), "{conf}");
        assert!(conf.contains("map to guest = bad user"));
        config.shares.retain(|s| !s.guest);
        assert!(smb_conf(&config, &layout()).contains("map to guest = never"));
    }

    #[test]
    fn listening_everywhere_binds_no_interface_list() {
        let mut config = example();
        config.smb.listen = vec![IpAddr::from([0, 0, 0, 0])];
        let conf = smb_conf(&config, &layout());
        assert!(!conf.contains("interfaces"), "{conf}");
    }

    #[test]
    fn ganesha_conf_closes_exports_but_to_their_clients() {
        let conf = ganesha_conf(&example(), &layout());
        assert!(conf.contains("Protocols = 4;"));
        assert!(conf.contains("Access_Type = None;"));
        assert!(conf.contains("Clients = 127.0.0.1/32;"));
        assert!(conf.contains("RecoveryRoot = \"/var/lib/ntari/files/ganesha\";"));
        assert!(conf.contains("Graceless = true;"));
    }

    #[test]
    fn export_ids_follow_the_export_not_its_place() {
        let config: FilesConfig = toml::from_str(
            "[[exports]]\npath = \"s/a\"\nclients = [\"10.0.0.0/8\"]\n[[exports]]\npath = \"s/b\"\nclients = [\"10.0.0.0/8\"]\n",
        )
        .expect("parses");
        let ids = export_ids(&config.exports);
        let mut reversed = config.exports.clone();
        reversed.reverse();
        let ids_reversed = export_ids(&reversed);
        assert_eq!(ids[0], ids_reversed[1]);
        assert_eq!(ids[1], ids_reversed[0]);
        assert!(ids.iter().all(|&id| (1..=65000).contains(&id)));
    }

    #[test]
    fn kernel_exports_use_real_paths() {
        let text = kernel_exports(&example(), Path::new("/var/lib/ntari/files"));
        assert!(
            text.contains("/var/lib/ntari/files/shares/public 127.0.0.1/32(ro,root_squash,sync,no_subtree_check,sec=sys)"),
            "{text}"
        );
    }
}

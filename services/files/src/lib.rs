//! ntari-files: the cooperative's file sharing, Samba's smbd and an NFS
//! server (NFS-Ganesha, or the kernel's nfsd) behind one ROS 2 lifecycle
//! node.
//!
//! Windows, macOS and Linux members reach SMB shares with a password of
//! their own (or as guests, where a share allows it); Linux machines and
//! other hubs reach NFSv4 exports by address. Each server is a daemon of
//! its own, supervised and probed on its own.
//!
//! This crate is only what is specific to Samba and NFS (DESIGN.md §5):
//! - [`config`]: `/etc/ntari/services/files.toml`, its checks, and the
//!   share directories at configure;
//! - [`render`]: where everything lives, `smb.conf`, `ganesha.conf`, the
//!   kernel's `exports`;
//! - [`daemons`]: the daemon commands and the kernel backend's set-up;
//! - [`smb`] and [`nfs`]: the probes, over each protocol;
//! - [`samba`]: Samba's own tools (smbstatus, pdbedit, smbcontrol) with
//!   the node's smb.conf, and when to run them;
//! - [`stats`]: what `smbstatus` says, the status detail and the metrics;
//! - [`members`]: the passdb, through `pdbedit` (used by ntari-admin).
//!
//! Share and export changes reach the running servers live (`smbcontrol
//! reload-config`, SIGHUP to Ganesha, `exportfs -ra`): connected members
//! stay connected. Anything else restarts both.

pub mod config;
pub mod daemons;
pub mod members;
pub mod nfs;
pub mod render;
pub mod samba;
pub mod smb;
pub mod stats;

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ntari_node::service::{
    Command, ConfigIssue, DaemonSpec, MetricDesc, Paths, ProbeReport, Reload, RenderedFile, Service,
};

pub use config::FilesConfig;
use render::Layout;

/// Bound on one probe exchange.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a daemon may take to answer after its start.
const READY_TIMEOUT: Duration = Duration::from_secs(15);

/// The service, holding what smbd last said of itself (see
/// [`samba::refresh`]).
#[derive(Debug, Default)]
pub struct Files {
    stats: Arc<Mutex<samba::Cache>>,
}

/// Where a probe reaches a server listening on `listen`.
fn probe_address(listen: &[IpAddr], port: u16) -> SocketAddr {
    let addr = listen
        .iter()
        .copied()
        .find(|a| !a.is_unspecified())
        .unwrap_or(IpAddr::from([127, 0, 0, 1]));
    SocketAddr::new(addr, port)
}

fn smb_address(config: &FilesConfig) -> SocketAddr {
    probe_address(&config.smb.listen, config.smb.port)
}

fn nfs_address(config: &FilesConfig) -> SocketAddr {
    probe_address(&[config.nfs.listen], config.nfs.port)
}

/// The share the SMB probe's anonymous session connects to: a guest share
/// (so a tree connect to a real directory is proven) or else IPC$ (which
/// `restrict anonymous = 2` refuses: reported, not a failure).
fn probe_share(config: &FilesConfig) -> &str {
    config
        .shares
        .iter()
        .find(|s| s.guest)
        .map_or("IPC$", |s| s.name.as_str())
}

fn nfs_probe_paths(config: &FilesConfig, paths: &Paths) -> Vec<String> {
    config
        .exports
        .iter()
        .map(|e| render::probe_path(config, e, &paths.state_dir))
        .collect()
}

impl Files {
    /// SMB2 over the wire (every probe, in-process), and what smbd last
    /// said of its sessions, counters and members (see [`samba::refresh`]).
    async fn probe_smb(
        config: &FilesConfig,
        layout: &Layout,
        cache: Arc<Mutex<samba::Cache>>,
    ) -> Result<stats::Round, String> {
        // Before the probe connects: smbd forks a child for it too.
        let clients = samba::smbd_children(layout);
        let started = Instant::now();
        let share = probe_share(config);
        let smb = smb::probe(smb_address(config), share, PROBE_TIMEOUT).await?;
        let seconds = started.elapsed().as_secs_f64();
        samba::refresh(config, layout, clients, &cache);
        let cached = samba::lock(&cache).clone();
        Ok(stats::Round {
            smb: Some((smb, seconds)),
            probe_share: share.to_string(),
            status: cached.status,
            profile: cached.profile,
            members: cached.members,
            nfs: None,
        })
    }

    /// A NULL call, then every export's root looked up and listed. One
    /// export that cannot be listed fails the probe, naming it.
    async fn probe_nfs(
        config: &FilesConfig,
        paths: &Paths,
    ) -> Result<(Vec<nfs::ExportCheck>, f64), String> {
        let started = Instant::now();
        let checks = nfs::probe(
            nfs_address(config),
            &nfs_probe_paths(config, paths),
            PROBE_TIMEOUT,
        )
        .await?;
        let failed: Vec<String> = checks
            .iter()
            .filter_map(|c| {
                c.result
                    .as_ref()
                    .err()
                    .map(|e| format!("{}: {e}", c.pseudo))
            })
            .collect();
        if !failed.is_empty() {
            return Err(format!("exports not readable: {}", failed.join("; ")));
        }
        Ok((checks, started.elapsed().as_secs_f64()))
    }
}

impl Service for Files {
    type Config = FilesConfig;

    const NAME: &'static str = "files";
    const DAEMON: &'static str = "Samba (smbd) and NFS (NFS-Ganesha or the kernel's nfsd)";
    const METRICS_PORT: u16 = 9706;

    fn validate(&self, config: &FilesConfig) -> Result<(), ConfigIssue> {
        config.validate()
    }

    /// smb.conf and ganesha.conf or exports, mode 0644 (nothing secret:
    /// passwords are in the passdb, in the state dir).
    fn render(&self, config: &FilesConfig, paths: &Paths) -> Vec<RenderedFile> {
        let layout = Layout::new(paths);
        let mut files = Vec::new();
        if config.smb.enabled {
            let smb_conf = render::smb_conf(config, &layout);
            files.push(RenderedFile {
                name: render::SMB_CHECK_CONF.into(),
                contents: render::smb_check_conf(&smb_conf),
                mode: 0o644,
            });
            files.push(RenderedFile {
                name: render::SMB_CONF.into(),
                contents: smb_conf,
                mode: 0o644,
            });
        }
        if config.nfs.enabled && config.nfs.backend == "ganesha" {
            files.push(RenderedFile {
                name: render::GANESHA_CONF.into(),
                contents: render::ganesha_conf(config, &layout),
                mode: 0o644,
            });
        }
        if config.nfs.enabled && config.nfs.backend == "kernel" {
            files.push(RenderedFile {
                name: render::KERNEL_EXPORTS.into(),
                contents: render::kernel_exports(config, &paths.state_dir),
                mode: 0o644,
            });
        }
        files
    }

    /// The share and export dirs: relative ones made under the state dir,
    /// every one checked to be a directory inside share_roots; and the
    /// members' Unix group, which owns what members write.
    fn prepare(&self, config: &FilesConfig, paths: &Paths) -> Result<(), ConfigIssue> {
        config::resolve_dirs(config, &paths.state_dir)?;
        // smbd refuses a tree connect whose `force group` does not exist.
        if config.smb.enabled && config.shares.iter().any(|s| !s.guest) {
            members::ensure_members_group()
                .map_err(|e| ConfigIssue::new("shares", format!("the members' group: {e}")))?;
        }
        Ok(())
    }

    /// `testparm -s`: Samba's own parser over smb.conf (its twin without
    /// the node's dirs, see [`render::SMB_CHECK_CONF`]), non-zero on an
    /// unknown or malformed parameter. Ganesha has no parse-only mode (a
    /// "dump config" run daemonizes and serves); its file is made from
    /// checked values only, and the probe lists every export after a
    /// reload.
    fn check_command(&self, config: &FilesConfig, paths: &Paths) -> Option<Command> {
        config.smb.enabled.then(|| {
            Command::new(
                "testparm",
                [
                    "-s".to_string(),
                    "--suppress-prompt".into(),
                    paths
                        .run_dir
                        .join(render::SMB_CHECK_CONF)
                        .display()
                        .to_string(),
                ],
            )
        })
    }

    fn daemons(&self, config: &FilesConfig, paths: &Paths) -> Vec<DaemonSpec> {
        daemons::specs(config, &Layout::new(paths))
    }

    fn set_up(
        &self,
        config: &FilesConfig,
        paths: &Paths,
    ) -> impl Future<Output = Result<(), String>> + Send {
        let layout = Layout::new(paths);
        let result = daemons::prepare_dirs(&layout).and_then(|()| {
            if config.nfs.enabled && config.nfs.backend == "kernel" {
                daemons::kernel_set_up(config, &layout)
            } else {
                Ok(())
            }
        });
        async move { result }
    }

    /// Only the kernel backend leaves something behind (nfsd's threads,
    /// the exports link). Never the state dir: shares and the passdb stay.
    fn tear_down(
        &self,
        _config: Option<&FilesConfig>,
        _paths: &Paths,
    ) -> impl Future<Output = ()> + Send {
        daemons::kernel_tear_down();
        async {}
    }

    fn version_command(&self) -> Option<Command> {
        Some(Command::new("smbd", ["--version"]))
    }

    fn metrics(&self) -> &'static [MetricDesc] {
        stats::METRICS
    }

    /// Waits until the daemon answers over its protocol: smbd its first
    /// NEGOTIATE (80-320 ms), Ganesha a NULL call (15-30 ms).
    async fn daemon_started(
        &mut self,
        daemon: &str,
        config: &FilesConfig,
        _paths: &Paths,
    ) -> Result<(), String> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut last_error = String::new();
        while Instant::now() < deadline {
            let answer = match daemon {
                daemons::SMBD => {
                    smb::probe(smb_address(config), probe_share(config), PROBE_TIMEOUT)
                        .await
                        .map(|_| ())
                }
                daemons::GANESHA | daemons::MOUNTD => {
                    nfs::probe(nfs_address(config), &[], PROBE_TIMEOUT)
                        .await
                        .map(|_| ())
                }
                _ => Ok(()),
            };
            match answer {
                Ok(()) => return Ok(()),
                Err(e) => last_error = e,
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Err(format!(
            "{daemon} did not answer within {}s: {last_error}",
            READY_TIMEOUT.as_secs()
        ))
    }

    /// Both servers at once; the error names each one that failed.
    fn probe(
        &self,
        config: &FilesConfig,
        paths: &Paths,
    ) -> impl Future<Output = Result<ProbeReport, String>> + Send {
        let (config, paths) = (config.clone(), paths.clone());
        let cache = Arc::clone(&self.stats);
        async move {
            let layout = Layout::new(&paths);
            let smb = async {
                if config.smb.enabled {
                    Files::probe_smb(&config, &layout, cache).await.map(Some)
                } else {
                    Ok(None)
                }
            };
            let nfs = async {
                if config.nfs.enabled {
                    Files::probe_nfs(&config, &paths).await.map(Some)
                } else {
                    Ok(None)
                }
            };
            let (smb, nfs) = tokio::join!(smb, nfs);
            let nfs_name = if config.nfs.backend == "kernel" {
                "nfsd"
            } else {
                daemons::GANESHA
            };
            match (smb, nfs) {
                (Ok(smb), Ok(nfs)) => {
                    let mut round = smb.unwrap_or_default();
                    round.nfs = nfs;
                    let (mut detail, metrics) = stats::report(&round);
                    detail.insert("summary".into(), stats::summary(&config, &round).into());
                    detail.insert("shares".into(), shares_detail(&config, &paths));
                    Ok(ProbeReport {
                        detail,
                        metrics,
                        warnings: Vec::new(),
                    })
                }
                (smb, nfs) => {
                    let failed: Vec<String> = [(daemons::SMBD, smb.err()), (nfs_name, nfs.err())]
                        .into_iter()
                        .filter_map(|(d, e)| e.map(|e| format!("{d}: {e}")))
                        .collect();
                    Err(failed.join("; "))
                }
            }
        }
    }

    /// Live when only shares and exports changed: smbd re-reads smb.conf
    /// (members stay connected; a removed share's clients are cut off),
    /// Ganesha updates its exports on SIGHUP, exportfs re-exports. Any
    /// other change restarts both.
    fn reload(&self, old: &FilesConfig, new: &FilesConfig) -> Reload {
        let same_servers = old.smb == new.smb && old.nfs == new.nfs;
        if same_servers {
            Reload::Live
        } else {
            Reload::Restart
        }
    }

    fn apply_live(
        &self,
        config: &FilesConfig,
        paths: &Paths,
    ) -> impl Future<Output = Result<(), String>> + Send {
        let layout = Layout::new(paths);
        let config = config.clone();
        async move {
            if config.smb.enabled {
                samba::tool("smbcontrol", &["smbd", "reload-config"], &layout).await?;
            }
            if config.nfs.enabled && config.nfs.backend == "ganesha" {
                let text = std::fs::read_to_string(&layout.ganesha_pid)
                    .map_err(|e| format!("cannot read {}: {e}", layout.ganesha_pid.display()))?;
                let pid: i32 = text
                    .trim()
                    .parse()
                    .map_err(|_| format!("{} does not hold a pid", layout.ganesha_pid.display()))?;
                // A pid file can outlive its process; never signal another.
                let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                if comm.trim() != "ganesha.nfsd" {
                    return Err(format!(
                        "{} names pid {pid}, which is not ganesha.nfsd; the exports were not reloaded",
                        layout.ganesha_pid.display()
                    ));
                }
                nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGHUP,
                )
                .map_err(|e| format!("cannot signal Ganesha (pid {pid}): {e}"))?;
            }
            if config.nfs.enabled && config.nfs.backend == "kernel" {
                daemons::run("exportfs", &["-ra"])?;
            }
            Ok(())
        }
    }
}

/// The configured shares as status shows them (no member names: those
/// are in the passdb).
fn shares_detail(config: &FilesConfig, paths: &Paths) -> serde_json::Value {
    config
        .shares
        .iter()
        .map(|s| {
            serde_json::json!({
                "name": s.name,
                "path": config::absolute(&s.path, &paths.state_dir),
                "guest": s.guest,
                "read_only": s.read_only,
                "quota_note": s.quota_note,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths() -> Paths {
        Paths {
            config: "/etc/ntari/services/files.toml".into(),
            state_dir: "/var/lib/ntari/files".into(),
            run_dir: "/run/ntari/files".into(),
        }
    }

    #[test]
    fn commands() {
        let config = FilesConfig::default();
        let p = paths();
        assert_eq!(
            Files::default()
                .check_command(&config, &p)
                .map(|c| c.display()),
            Some("testparm -s --suppress-prompt /run/ntari/files/smb-check.conf".to_string())
        );
        let specs = Files::default().daemons(&config, &p);
        let names: Vec<_> = specs.iter().map(|s| s.name).collect();
        assert_eq!(names, ["smbd", "ganesha"]);
        assert_eq!(
            specs[0].command.display(),
            "smbd --foreground --no-process-group --debug-stdout -s /run/ntari/files/smb.conf"
        );
        assert_eq!(
            specs[1].command.display(),
            "ganesha.nfsd -F -f /run/ntari/files/ganesha.conf -L STDERR -p /run/ntari/files/ganesha.pid"
        );
        let mut kernel = config.clone();
        kernel.nfs.backend = "kernel".into();
        let specs = Files::default().daemons(&kernel, &p);
        assert_eq!(
            specs[1].command.display(),
            "rpc.mountd --foreground --no-nfs-version 3"
        );
    }

    #[test]
    fn only_share_and_export_changes_are_live() {
        let old = FilesConfig::default();
        let mut new = old.clone();
        new.share_roots = vec!["/srv".into()];
        assert_eq!(Files::default().reload(&old, &new), Reload::Live);
        new.smb.port = 1445;
        assert_eq!(Files::default().reload(&old, &new), Reload::Restart);
    }

    #[test]
    fn probes_reach_loopback_when_listening_everywhere() {
        let config = FilesConfig::default();
        assert_eq!(smb_address(&config).to_string(), "127.0.0.1:445");
        assert_eq!(nfs_address(&config).to_string(), "127.0.0.1:2049");
    }
}

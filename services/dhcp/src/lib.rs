//! ntari-dhcp: the NTARI OS address service, ISC Kea DHCPv4 (`kea-dhcp4`)
//! supervised by a ROS 2 lifecycle node, with its leases on the graph.
//!
//! The hub hands out addresses to the cooperative's LAN; no lease may ever
//! be lost. So Kea keeps its leases in its memfile database in the state
//! dir (never deleted by cleanup, survives every restart and crash), config
//! changes reach it live over its control socket (no restart, no lease
//! lost), and every lease change is published on `/ntari/dhcp/leases` for
//! ntari-dns and anyone else (schema: ntari_schemas::leases).
//!
//! This crate is only what is specific to Kea (DESIGN.md §5):
//! - [`config`]: `/etc/ntari/services/dhcp.toml` and its checks;
//! - [`render`]: Kea's JSON config;
//! - [`control`]: Kea's control socket (status-get, statistic-get-all,
//!   config-test, config-reload, lease4-get-all);
//! - [`stats`]: statistics as status detail and kea-exporter metrics;
//! - [`leases`]: the lease table and its events, from Kea's lease file.

pub mod config;
pub mod control;
pub mod leases;
pub mod render;
pub mod stats;

use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ntari_node::service::{
    Command, ConfigIssue, DaemonSpec, MetricDesc, Output, Paths, ProbeReport, Publication, Reload,
    RenderedFile, Service,
};
use ntari_schemas::leases::TOPIC;
use serde_json::{json, Value};

pub use config::DhcpConfig;
use leases::LeaseTracker;

const KEA_DHCP4: &str = "kea-dhcp4";
/// Control commands other than the lease snapshot answer fast.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);

/// The service, holding the lease table it publishes.
#[derive(Debug, Default)]
pub struct Dhcp {
    leases: LeaseTracker,
}

/// Kea's pid and lock files go to the run dir, not /run/kea. Kea 2.7.9
/// and later (Alpine's) also refuse a control socket outside
/// `KEA_CONTROL_SOCKET_DIR` and lease files outside `KEA_DHCP_DATA_DIR`;
/// Kea 2.2 (Debian 12) ignores those two.
fn kea_command(args: Vec<String>, paths: &Paths) -> Command {
    let run_dir = paths.run_dir.display().to_string();
    Command::new(KEA_DHCP4, args)
        .with_env("KEA_PIDFILE_DIR", run_dir.clone())
        .with_env("KEA_LOCKFILE_DIR", run_dir.clone())
        .with_env("KEA_CONTROL_SOCKET_DIR", run_dir)
        .with_env("KEA_DHCP_DATA_DIR", paths.state_dir.display().to_string())
}

fn hook_library(config: &DhcpConfig) -> PathBuf {
    render::lease_cmds_library(config.hooks_dir.as_deref()).unwrap_or_else(|| {
        // validate() refused this already; render something Kea names.
        config
            .hooks_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("/usr/lib/kea/hooks"))
            .join(render::LEASE_CMDS)
    })
}

impl Service for Dhcp {
    type Config = DhcpConfig;

    const NAME: &'static str = "dhcp";
    const DAEMON: &'static str = "kea-dhcp4";
    const METRICS_PORT: u16 = 9702;

    /// The config's checks, then that the lease_cmds hook is installed.
    fn validate(&self, config: &DhcpConfig) -> Result<(), ConfigIssue> {
        config.validate()?;
        if render::lease_cmds_library(config.hooks_dir.as_deref()).is_none() {
            let key = if config.hooks_dir.is_some() {
                "hooks_dir"
            } else {
                "interfaces"
            };
            return Err(ConfigIssue::new(
                key,
                format!(
                    "Kea's {} hook is not installed{}; install Kea's hooks (Debian: kea-dhcp4-server, Alpine: kea-hook-lease-cmds) or set hooks_dir",
                    render::LEASE_CMDS,
                    config
                        .hooks_dir
                        .as_ref()
                        .map(|d| format!(" in {}", d.display()))
                        .unwrap_or_default()
                ),
            ));
        }
        Ok(())
    }

    fn render(&self, config: &DhcpConfig, paths: &Paths) -> Vec<RenderedFile> {
        vec![RenderedFile {
            name: render::CONFIG_FILE.to_string(),
            contents: render::kea_config_text(config, paths, &hook_library(config)),
            mode: 0o644,
        }]
    }

    /// `kea-dhcp4 -t <conf>`: parses the config, checks every value and
    /// loads the hooks, without binding anything.
    fn check_command(&self, _config: &DhcpConfig, paths: &Paths) -> Option<Command> {
        Some(kea_command(
            vec![
                "-t".into(),
                render::config_path(paths).display().to_string(),
            ],
            paths,
        ))
    }

    /// `kea-dhcp4 -c <conf>`: Kea stays in the foreground and logs to
    /// stdout. It refuses to start while its pid file names a live process,
    /// which after a crash may be an unrelated one: that file is stale.
    fn daemons(&self, _config: &DhcpConfig, paths: &Paths) -> Vec<DaemonSpec> {
        let command = kea_command(
            vec![
                "-c".into(),
                render::config_path(paths).display().to_string(),
            ],
            paths,
        );
        vec![DaemonSpec::new(Self::DAEMON, command)
            .with_stale_file(paths.run_dir.join(render::PID_FILE))]
    }

    fn version_command(&self) -> Option<Command> {
        Some(Command::new(KEA_DHCP4, ["-V"]))
    }

    fn metrics(&self) -> &'static [MetricDesc] {
        stats::METRICS
    }

    /// `status-get` (Kea answers: the probe), then `statistic-get-all`.
    fn probe(
        &self,
        config: &DhcpConfig,
        paths: &Paths,
    ) -> impl Future<Output = Result<ProbeReport, String>> + Send {
        let socket = render::control_socket(paths);
        let config = config.clone();
        let leases = self.leases.len();
        async move {
            let status = control::command(&socket, "status-get", None, COMMAND_TIMEOUT).await?;
            let statistics =
                control::command(&socket, "statistic-get-all", None, COMMAND_TIMEOUT).await?;
            let kea_stats = stats::parse(&statistics.arguments, &config);
            let mut detail = kea_stats.detail(&config);
            let (assigned, total) = kea_stats
                .subnets
                .values()
                .fold((0.0, 0.0), |(a, t), s| (a + s.assigned, t + s.total));
            detail.insert(
                "summary".into(),
                json!(format!(
                    "serving {} on {}: {assigned} of {total} addresses assigned",
                    plural(config.subnets.len(), "subnet"),
                    config.interfaces.join(", ")
                )),
            );
            detail.insert("leases".into(), json!(leases));
            detail.insert("interfaces".into(), json!(config.interfaces));
            detail.insert(
                "kea".into(),
                json!({
                    "pid": status.arguments["pid"],
                    "uptime_s": status.arguments["uptime"],
                    "since_reload_s": status.arguments["reload"],
                }),
            );
            Ok(ProbeReport {
                detail,
                metrics: kea_stats.metrics,
                ..Default::default()
            })
        }
    }

    /// Every change is applied live: Kea re-reads its config on
    /// `config-reload`, keeping its leases and its process.
    fn reload(&self, _old: &DhcpConfig, _new: &DhcpConfig) -> Reload {
        Reload::Live
    }

    /// `config-test` with the rendered config (Kea checks it against what it
    /// runs: interfaces, hooks), then `config-reload` (Kea reads the file).
    fn apply_live(
        &self,
        _config: &DhcpConfig,
        paths: &Paths,
    ) -> impl Future<Output = Result<(), String>> + Send {
        let socket = render::control_socket(paths);
        let file = render::config_path(paths);
        async move {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
            let rendered: Value = serde_json::from_str(&text)
                .map_err(|e| format!("{} is not JSON: {e}", file.display()))?;
            control::command(&socket, "config-test", Some(rendered), COMMAND_TIMEOUT).await?;
            control::command(&socket, "config-reload", None, COMMAND_TIMEOUT).await?;
            tracing::info!("Kea runs the new config; its leases are kept");
            Ok(())
        }
    }

    /// A snapshot on every (re)start of Kea: on activation subscribers get
    /// the table as Kea loaded it.
    async fn daemon_started(
        &mut self,
        _daemon: &str,
        _config: &DhcpConfig,
        _paths: &Paths,
    ) -> Result<(), String> {
        self.leases.resync();
        Ok(())
    }

    fn outputs(&self) -> &'static [Output] {
        &[Output {
            topic: TOPIC,
            latched: true,
        }]
    }

    /// The first call after Kea started (and answers) publishes the
    /// snapshot, later ones the events Kea wrote to its lease file since.
    async fn refresh(&mut self, _config: &DhcpConfig, paths: &Paths) -> Vec<Publication> {
        let message = if self.leases.synced() {
            self.leases.follow(Instant::now())
        } else {
            let socket = render::control_socket(paths);
            match self.leases.sync(&socket, &render::lease_file(paths)).await {
                Ok(snapshot) => {
                    tracing::info!(leases = snapshot.leases.len(), "publishing the lease table");
                    Some(snapshot)
                }
                Err(e) => {
                    tracing::debug!(error = %e, "no lease snapshot yet");
                    None
                }
            }
        };
        message
            .map(|m| Publication {
                topic: TOPIC,
                json: m.to_json(),
            })
            .into_iter()
            .collect()
    }
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kea_gets_its_pid_and_lock_dirs_in_the_run_dir() {
        let paths = Paths {
            config: "/etc/ntari/services/dhcp.toml".into(),
            state_dir: "/var/lib/ntari/dhcp".into(),
            run_dir: "/run/ntari/dhcp".into(),
        };
        let config = DhcpConfig::default();
        let spec = Dhcp::default().daemons(&config, &paths).remove(0);
        let daemon = spec.command;
        assert_eq!(daemon.args, ["-c", "/run/ntari/dhcp/kea-dhcp4.conf"]);
        let env: Vec<(&str, &str)> = daemon
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            env,
            [
                ("KEA_PIDFILE_DIR", "/run/ntari/dhcp"),
                ("KEA_LOCKFILE_DIR", "/run/ntari/dhcp"),
                ("KEA_CONTROL_SOCKET_DIR", "/run/ntari/dhcp"),
                ("KEA_DHCP_DATA_DIR", "/var/lib/ntari/dhcp"),
            ]
        );
        let check = Dhcp::default().check_command(&config, &paths).unwrap();
        assert_eq!(check.args, ["-t", "/run/ntari/dhcp/kea-dhcp4.conf"]);
        assert_eq!(check.env, daemon.env);
        assert_eq!(
            spec.stale_files,
            [PathBuf::from("/run/ntari/dhcp/kea-dhcp4.kea-dhcp4.pid")]
        );
    }

    #[test]
    fn a_missing_hook_is_a_config_error() {
        let mut config: DhcpConfig = toml::from_str(
            "interfaces = [\"x\"]\n[[subnets]]\nsubnet = \"10.0.0.0/24\"\npools = [\"10.0.0.0/25\"]",
        )
        .unwrap();
        config.hooks_dir = Some("/nonexistent".into());
        let issue = Dhcp::default().validate(&config).unwrap_err();
        assert_eq!(issue.key, "hooks_dir");
        assert!(issue.message.contains("libdhcp_lease_cmds.so"), "{issue}");
    }

    #[test]
    fn leases_are_published_latched() {
        assert_eq!(
            Dhcp::default().outputs(),
            &[Output {
                topic: "/ntari/dhcp/leases",
                latched: true
            }]
        );
    }
}

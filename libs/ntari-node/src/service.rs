//! The contract between the shared runtime and one network service.
//!
//! A service crate (services/ntp, services/dns, …) implements [`Service`]:
//! what its TOML config looks like, how to render the daemon's own config
//! files, how the daemon checks them, how to run it in the foreground, how
//! to probe it over its real protocol, and what the probe says (status
//! detail and Prometheus samples). Everything else — lifecycle, supervision,
//! health, status, signing, metrics endpoint, config reload — is the
//! runtime's, the same for every service.

use std::future::Future;
use std::path::PathBuf;
use std::time::SystemTime;

use serde::de::DeserializeOwned;

/// Where a node keeps its files. Every path can be overridden on the
/// command line so tests run in temporary directories.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    /// The service's TOML config (default `/etc/ntari/services/<name>.toml`).
    pub config: PathBuf,
    /// Persistent daemon state, never deleted by cleanup
    /// (default `/var/lib/ntari/<name>`).
    pub state_dir: PathBuf,
    /// Rendered config, sockets, pid files (default `/run/ntari/<name>`).
    pub run_dir: PathBuf,
}

/// A program and its arguments, run without a shell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub program: String,
    pub args: Vec<String>,
}

impl Command {
    pub fn new(
        program: impl Into<String>,
        args: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        Command {
            program: program.into(),
            args: args.into_iter().map(Into::into).collect(),
        }
    }

    /// `program arg arg …`, for log lines and error messages.
    pub fn display(&self) -> String {
        std::iter::once(self.program.as_str())
            .chain(self.args.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// One file the daemon reads, rendered from the service config. The runtime
/// writes it atomically (temp file, fsync, rename) into the run dir.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedFile {
    /// File name relative to the run dir.
    pub name: String,
    pub contents: String,
    /// Unix permission bits.
    pub mode: u32,
}

/// A Prometheus metric family a service exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricDesc {
    pub name: &'static str,
    pub help: &'static str,
    pub labels: &'static [&'static str],
}

/// One value of a [`MetricDesc`], with its label values in the desc's order.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricSample {
    pub name: &'static str,
    pub label_values: Vec<String>,
    pub value: f64,
}

impl MetricSample {
    pub fn new(name: &'static str, value: f64) -> Self {
        MetricSample {
            name,
            label_values: Vec::new(),
            value,
        }
    }

    pub fn labelled(name: &'static str, label_values: &[&str], value: f64) -> Self {
        MetricSample {
            name,
            label_values: label_values.iter().map(|s| s.to_string()).collect(),
            value,
        }
    }
}

/// What one successful probe learned.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProbeReport {
    /// The service-specific part of `/ntari/<service>/status` (a JSON object).
    pub detail: serde_json::Map<String, serde_json::Value>,
    pub metrics: Vec<MetricSample>,
}

/// How changed files reach a running daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reload {
    /// Stop the daemon and start it again with the new files.
    Restart,
    /// The daemon re-reads its files on SIGHUP.
    Sighup,
    /// The daemon watches the changed files itself (dnsmasq's `--hostsdir`
    /// uses inotify): writing them is all it takes, and nothing the daemon
    /// holds in memory (a cache) is lost.
    Watched,
}

/// A topic whose data the service takes from the graph: std_msgs/msg/String
/// carrying JSON (DESIGN.md §2), e.g. `/ntari/dhcp/leases` for dns. The
/// runtime subscribes from start-up, whatever the lifecycle state, and hands
/// each sample to [`Service::on_input`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Input {
    /// Fully qualified ROS topic name.
    pub topic: &'static str,
    /// Subscribe transient-local, so the publisher's last sample arrives
    /// even when it was published before this node started. Use it for
    /// state (a lease table), matching a latched publisher.
    pub latched: bool,
}

/// A config value that parses but makes no sense, named by its TOML key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct ConfigIssue {
    /// Dotted TOML key, e.g. `upstream.servers[1]`.
    pub key: String,
    pub message: String,
}

impl ConfigIssue {
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigIssue {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// One network service, as the runtime sees it.
pub trait Service: Send + Sync + 'static {
    /// The service config: the contents of `/etc/ntari/services/<name>.toml`.
    /// Use `#[serde(deny_unknown_fields)]` so typos are reported, not ignored.
    type Config: DeserializeOwned + Clone + PartialEq + std::fmt::Debug + Send + Sync + 'static;

    /// Short name: `ntp` gives node `/ntari/ntari_ntp_node` and topics
    /// `/ntari/ntp/health`, `/ntari/ntp/status`.
    const NAME: &'static str;
    /// The upstream daemon's program name, for logs and status.
    const DAEMON: &'static str;
    /// 127.0.0.1 port of the Prometheus endpoint (DESIGN.md §1).
    const METRICS_PORT: u16;

    /// Checks what serde cannot express (ranges, addresses, consistency).
    fn validate(&self, config: &Self::Config) -> Result<(), ConfigIssue> {
        let _ = config;
        Ok(())
    }

    /// The daemon's config files.
    fn render(&self, config: &Self::Config, paths: &Paths) -> Vec<RenderedFile>;

    /// The daemon's own checker over the rendered files (`chronyd -p`,
    /// `dnsmasq --test`, `kea-dhcp4 -t`); non-zero exit fails configure.
    fn check_command(&self, config: &Self::Config, paths: &Paths) -> Option<Command>;

    /// The daemon in the foreground, logging to stdout/stderr.
    fn daemon_command(&self, config: &Self::Config, paths: &Paths) -> Command;

    /// Files a previous run may have left behind that would stop the daemon
    /// from starting (a pid file naming a process that exists again after a
    /// crash or reboot). The runtime removes them before every start: it
    /// knows its own daemon is not running then.
    fn stale_files(&self, config: &Self::Config, paths: &Paths) -> Vec<PathBuf> {
        let _ = (config, paths);
        Vec::new()
    }

    /// Prints the daemon's version (first line of its output is kept).
    fn version_command(&self) -> Option<Command> {
        None
    }

    /// The metric families [`Service::probe`] fills in.
    fn metrics(&self) -> &'static [MetricDesc];

    /// One real protocol exchange with the running daemon.
    fn probe(
        &self,
        config: &Self::Config,
        paths: &Paths,
    ) -> impl Future<Output = Result<ProbeReport, String>> + Send;

    /// How to apply `new` to a daemon running with `old`.
    fn reload(&self, old: &Self::Config, new: &Self::Config) -> Reload {
        let _ = (old, new);
        Reload::Restart
    }

    /// The graph topics this service reads; none by default.
    fn inputs(&self) -> &'static [Input] {
        &[]
    }

    /// A sample arrived on `topic`, one of [`Service::inputs`]. Update the
    /// service's own state from it; [`Service::render`] reads that state.
    /// `Ok(Some(how))`: the rendered files changed, the runtime re-renders,
    /// checks and applies them `how` (if configured, and the daemon runs).
    /// `Ok(None)`: nothing to do. `Err`: the sample is bad; the runtime logs
    /// the message with the topic, counts it in status, and drops it.
    fn on_input(&mut self, topic: &str, data: &str) -> Result<Option<Reload>, String> {
        let _ = (topic, data);
        Ok(None)
    }

    /// Called once a second, for state that changes with time alone (a
    /// lease that expires). Returns like [`Service::on_input`].
    fn on_tick(&mut self, now: SystemTime) -> Option<Reload> {
        let _ = now;
        None
    }
}

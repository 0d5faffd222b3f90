//! The contract between the shared runtime and one network service.
//!
//! A service crate (services/ntp, services/dns, …) implements [`Service`]:
//! what its TOML config looks like, how to render the daemons' own config
//! files, how the daemons check them, which daemons to run in the
//! foreground (none, one or several, see [`DaemonSpec`]), what to set up
//! before them and tear down after them, how to probe the service over its
//! real protocol, and what the probe says (status detail and Prometheus
//! samples). Everything else — lifecycle, supervision, health, status,
//! signing, metrics endpoint, config reload — is the runtime's, the same
//! for every service.

use std::future::Future;
use std::path::PathBuf;
use std::time::SystemTime;

use serde::de::DeserializeOwned;
use serde::Serialize;

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

/// A program, its arguments and extra environment, run without a shell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub program: String,
    pub args: Vec<String>,
    /// Added to the node's environment (Kea reads its pid and lock file
    /// directories from `KEA_PIDFILE_DIR` / `KEA_LOCKFILE_DIR`).
    pub env: Vec<(String, String)>,
}

impl Command {
    pub fn new(
        program: impl Into<String>,
        args: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        Command {
            program: program.into(),
            args: args.into_iter().map(Into::into).collect(),
            env: Vec::new(),
        }
    }

    /// The same command with `key=value` in its environment.
    pub fn with_env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Applies program, arguments and environment to a tokio command.
    pub fn to_tokio(&self) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(&self.program);
        command.args(&self.args).envs(self.env.iter().cloned());
        command
    }

    /// `KEY=value program arg arg …`, for log lines and error messages.
    pub fn display(&self) -> String {
        let env = self.env.iter().map(|(k, v)| format!("{k}={v}"));
        env.chain(std::iter::once(self.program.clone()))
            .chain(self.args.iter().cloned())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// One daemon process a service runs, supervised on its own: its own
/// process group and guard, restart with backoff, crash-loop detection, pid
/// and restarts in status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonSpec {
    /// Short name, unique within the service (`dnsmasq`, `slapd`): logs,
    /// status, the `daemon` metric label, `<run>/ntari-<name>.pid`.
    pub name: &'static str,
    /// The daemon in the foreground, logging to stdout/stderr.
    pub command: Command,
    /// Health needs this daemon running. An optional one is restarted as
    /// well, but health does not wait for it.
    pub required: bool,
    /// Files a previous run may have left behind that would stop the daemon
    /// from starting (a pid file naming a process that exists again after a
    /// crash or reboot). Removed before every start of this daemon: the
    /// runtime knows it is not running then.
    pub stale_files: Vec<PathBuf>,
}

impl DaemonSpec {
    /// A required daemon without stale files.
    pub fn new(name: &'static str, command: Command) -> Self {
        DaemonSpec {
            name,
            command,
            required: true,
            stale_files: Vec::new(),
        }
    }

    pub fn with_stale_file(mut self, path: PathBuf) -> Self {
        self.stale_files.push(path);
        self
    }

    /// Health does not depend on this daemon.
    pub fn optional(mut self) -> Self {
        self.required = false;
        self
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
    /// Something an admin should look at that does not make the service
    /// unhealthy (a VPN peer without a handshake for 3 minutes): status
    /// `warnings`, and `/diagnostics` at level WARN.
    pub warnings: Vec<String>,
}

/// How changed files reach a running daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reload {
    /// Stop the daemons, tear down, set up again and start them with the
    /// new files.
    Restart,
    /// The daemon re-reads its files on SIGHUP.
    Sighup,
    /// The service applies the new files itself, over the daemon's control
    /// channel ([`Service::apply_live`]: Kea's `config-test` then
    /// `config-reload`), without a restart. If that fails, the files are
    /// rolled back and the daemon keeps what it runs.
    Live,
    /// The daemon watches the changed files itself (dnsmasq's `--hostsdir`
    /// uses inotify): writing them is all it takes, and nothing the daemon
    /// holds in memory (a cache) is lost.
    Watched,
}

/// A topic the service publishes JSON documents on (std_msgs/msg/String),
/// e.g. `/ntari/dhcp/leases` for dhcp. Created at start-up; filled by
/// [`Service::refresh`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Output {
    /// Fully qualified ROS topic name.
    pub topic: &'static str,
    /// Transient-local with a history of one: a late subscriber gets the
    /// last document. Use it when each document is the whole state.
    pub latched: bool,
}

/// One document to publish on an [`Output`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publication {
    /// One of the service's [`Output`] topics.
    pub topic: &'static str,
    pub json: String,
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
    /// It is also `Serialize`: the runtime shows the effective config (with
    /// defaults) as read-only ROS parameters, so serialise it in the form
    /// the TOML file takes.
    type Config: DeserializeOwned
        + Serialize
        + Clone
        + PartialEq
        + std::fmt::Debug
        + Send
        + Sync
        + 'static;

    /// Short name: `ntp` gives node `/ntari/ntari_ntp_node` and topics
    /// `/ntari/ntp/health`, `/ntari/ntp/status`.
    const NAME: &'static str;
    /// The upstream software the node runs, for `--help` and logs
    /// (`dnsmasq`; `WireGuard`). The processes are [`Service::daemons`].
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

    /// Called at configure after [`Service::validate`], before rendering
    /// (never by `check-config`): create what the config names but does
    /// not exist yet, in the state dir (ntari-vpn's private key). An error
    /// fails configure.
    fn prepare(&self, config: &Self::Config, paths: &Paths) -> Result<(), ConfigIssue> {
        let _ = (config, paths);
        Ok(())
    }

    /// The daemon's own checker over the rendered files (`chronyd -p`,
    /// `dnsmasq --test`, `kea-dhcp4 -t`); non-zero exit fails configure.
    fn check_command(&self, config: &Self::Config, paths: &Paths) -> Option<Command>;

    /// The daemons to run while Active, in start order (they are stopped in
    /// the reverse order). None at all is fine: a service whose work is done
    /// by the kernel (WireGuard over netlink) only sets up and tears down.
    fn daemons(&self, config: &Self::Config, paths: &Paths) -> Vec<DaemonSpec>;

    /// Called at activate before any daemon starts, and after a
    /// [`Reload::Restart`] tore the old setup down: what the daemons need
    /// that no daemon makes (a kernel interface). An error fails activate.
    fn set_up(
        &self,
        config: &Self::Config,
        paths: &Paths,
    ) -> impl Future<Output = Result<(), String>> + Send {
        let _ = (config, paths);
        async { Ok(()) }
    }

    /// Undoes [`Service::set_up`] and removes what the daemons leave behind
    /// (an interface, a socket file). Called after the daemons stopped, at
    /// deactivate, cleanup, shutdown and ErrorProcessing, and at node start
    /// with `config` None, for what a previous run killed without an orderly
    /// shutdown left: keep in the run dir what that needs to know. Must be
    /// harmless when there is nothing to undo.
    fn tear_down(
        &self,
        config: Option<&Self::Config>,
        paths: &Paths,
    ) -> impl Future<Output = ()> + Send {
        let _ = (config, paths);
        async {}
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

    /// Applies the rendered files to the running daemon without a restart,
    /// for [`Reload::Live`]. An error leaves the daemon as it was; the
    /// runtime then rolls the files back and reports the message.
    fn apply_live(
        &self,
        config: &Self::Config,
        paths: &Paths,
    ) -> impl Future<Output = Result<(), String>> + Send {
        let _ = (config, paths);
        async { Err("this service cannot apply a config live".to_string()) }
    }

    /// Daemon `daemon` was just started (activate, or a restart after an
    /// exit). Wait here until it is ready for the next one to start, and do
    /// what it needs after every start (ntari-vpn configures its device;
    /// ntari-dhcp takes a new lease snapshot, since what it learnt from the
    /// previous run may be stale). An error counts as a failed start: the
    /// daemon is stopped and the error reported. The runtime bounds the wait
    /// by its activate timeout.
    fn daemon_started<'a>(
        &'a mut self,
        daemon: &'a str,
        config: &'a Self::Config,
        paths: &'a Paths,
    ) -> impl Future<Output = Result<(), String>> + Send + 'a {
        let _ = (daemon, config, paths);
        async { Ok(()) }
    }

    /// The topics this service publishes on; none by default.
    fn outputs(&self) -> &'static [Output] {
        &[]
    }

    /// Called while Active and the daemon runs, if the service has
    /// [`Service::outputs`]: what to publish now (the lease changes Kea
    /// wrote since the last call). Every second when idle, every quarter
    /// second for ten seconds after something was published. Keep it cheap
    /// when nothing changed; it runs on the node's one event loop.
    fn refresh<'a>(
        &'a mut self,
        config: &'a Self::Config,
        paths: &'a Paths,
    ) -> impl Future<Output = Vec<Publication>> + Send + 'a {
        let _ = (config, paths);
        async { Vec::new() }
    }
}

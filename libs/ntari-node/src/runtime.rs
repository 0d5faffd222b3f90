//! The runtime every service node binary runs: `ntari_node::runtime::main(MyService)`.
//!
//! It maps the ROS 2 lifecycle onto the daemon (DESIGN.md §3):
//! - configure: load and validate the TOML config, render the daemon's
//!   files atomically into the run dir, run the daemon's own checker;
//! - activate: start the daemon under supervision, wait for a good probe;
//! - deactivate: stop it (SIGTERM, then SIGKILL after a timeout);
//! - cleanup: forget the config and remove the rendered files (the state
//!   dir is never touched); shutdown: stop whatever runs;
//! - a daemon exit while Active makes health false at once and restarts it
//!   with exponential backoff; a crash loop deactivates with ERROR, which
//!   goes through ErrorProcessing to Unconfigured with the reason published.
//!
//! And it publishes, for `/ntari/SERVICE`: `health` (1 Hz and on change),
//! signed `status` JSON (10 s and on change), `/diagnostics`, and
//! Prometheus metrics on 127.0.0.1. It subscribes to the service's graph
//! inputs ([`Service::inputs`]) and re-renders the daemon's files when one
//! changes the service's state.
//!
//! Invariant: everything runs on one tokio current-thread runtime on the
//! main thread (daemons must be forked from the thread that lives as long
//! as the node, see `supervisor`), and only the event loop in [`run`]
//! changes the lifecycle state.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::{Parser, Subcommand};
use serde_json::{json, Map, Value};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{watch, Notify};

use crate::config::{self, NodeConfig};
use crate::fsutil;
use crate::graph::{qos, Context, Node, Publisher, Subscription, TypeDescriptionServer};
use crate::lifecycle::{CallbackResult, LifecycleCallbacks, LifecycleNode, State};
use crate::metrics::{self, Metrics};
use crate::msg::builtin_interfaces::Time;
use crate::msg::diagnostic_msgs::{DiagnosticArray, DiagnosticStatus, KeyValue};
use crate::msg::std_msgs::{Bool, Header, StringMsg};
use crate::parameters::{ParameterServer, Parameters};
use crate::service::{Input, Paths, ProbeReport, Publication, Reload, RenderedFile, Service};
use crate::signing::NodeKey;
use crate::supervisor::{self, Daemon, DaemonRecord, Supervisor};

/// Tunables with the defaults DESIGN.md fixes; tests shorten some.
#[derive(Debug, Clone)]
pub struct Timing {
    pub probe_interval: Duration,
    /// Health needs a successful probe at most this old.
    pub probe_freshness: Duration,
    pub activate_timeout: Duration,
    pub stop_timeout: Duration,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    pub crash_loop_window: Duration,
    pub crash_loop_exits: usize,
    pub status_interval: Duration,
    /// How often [`Service::refresh`] runs (services with outputs only)
    /// while nothing happens: waking up costs an idle node CPU.
    pub refresh_interval: Duration,
    /// …and for `refresh_busy_for` after it published something, since
    /// more usually follows (a burst of DHCP clients).
    pub refresh_busy_interval: Duration,
    pub refresh_busy_for: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            probe_interval: Duration::from_secs(5),
            probe_freshness: Duration::from_secs(16),
            activate_timeout: Duration::from_secs(30),
            stop_timeout: Duration::from_secs(10),
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            crash_loop_window: Duration::from_secs(60),
            crash_loop_exits: 5,
            status_interval: Duration::from_secs(10),
            refresh_interval: Duration::from_secs(1),
            refresh_busy_interval: Duration::from_millis(250),
            refresh_busy_for: Duration::from_secs(10),
        }
    }
}

/// The command line every service node shares.
#[derive(Debug, Parser)]
#[command(version)]
pub struct NodeArgs {
    /// The service config [default: /etc/ntari/services/SERVICE.toml]
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Node-wide settings: cooperative, domain id, key, log level.
    #[arg(long, value_name = "FILE", default_value = "/etc/ntari/ntari.toml")]
    pub node_config: PathBuf,
    /// Daemon state, kept across restarts [default: /var/lib/ntari/SERVICE]
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Rendered config, sockets, pid files [default: /run/ntari/SERVICE]
    #[arg(long, value_name = "DIR")]
    pub run_dir: Option<PathBuf>,
    /// The node's Ed25519 key (created on first start) [default: key_path in ntari.toml]
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// Port of the Prometheus endpoint on 127.0.0.1 (0: don't serve) [default: the service's]
    #[arg(long, value_name = "PORT")]
    pub metrics_port: Option<u16>,
    /// Configure and activate at start-up (what OpenRC does).
    #[arg(long)]
    pub autostart: bool,
    /// Seconds between probes of the daemon.
    #[arg(long, value_name = "SECONDS", default_value_t = 5.0)]
    pub probe_interval: f64,
    #[command(subcommand)]
    pub command: Option<NodeCommand>,
}

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// Validate the config files and the rendered daemon config, then exit
    /// (0: valid). Nothing running is touched.
    CheckConfig,
}

/// Runs a service node: parses the command line, then serves until SIGTERM.
pub fn main<S: Service>(service: S) -> ExitCode {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if argv.get(1).is_some_and(|a| a == crate::guard::GUARD_ARG) {
        crate::guard::run(&argv[2..]);
    }
    let args = match parse_args::<S>(std::env::args_os()) {
        Ok(args) => args,
        Err(e) => e.exit(),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ntari-{}: cannot start the async runtime: {e}", S::NAME);
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(service, args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ntari-{}: {e:#}", S::NAME);
            ExitCode::FAILURE
        }
    }
}

/// The shared command line, named and described for this service, with the
/// real default paths in its help.
fn parse_args<S: Service>(
    argv: impl IntoIterator<Item = std::ffi::OsString>,
) -> Result<NodeArgs, clap::Error> {
    use clap::{CommandFactory, FromArgMatches};
    let name = S::NAME;
    let command = NodeArgs::command()
        .name(format!("ntari-{name}"))
        .bin_name(format!("ntari-{name}"))
        .about(format!(
            "NTARI {name} service: {} supervised by the ROS 2 lifecycle node /ntari/ntari_{name}_node",
            S::DAEMON
        ))
        .mut_arg("config", |a| {
            a.help(format!("The service config [default: /etc/ntari/services/{name}.toml]"))
        })
        .mut_arg("state_dir", |a| {
            a.help(format!("Daemon state, kept across restarts [default: /var/lib/ntari/{name}]"))
        })
        .mut_arg("run_dir", |a| {
            a.help(format!("Rendered config, sockets, pid files [default: /run/ntari/{name}]"))
        })
        .mut_arg("metrics_port", |a| {
            a.help(format!(
                "Port of the Prometheus endpoint on 127.0.0.1, 0: don't serve [default: {}]",
                S::METRICS_PORT
            ))
        });
    NodeArgs::from_arg_matches(&command.try_get_matches_from(argv)?)
}

/// Logs to stderr (plain text unless it is a terminal), filtered by
/// `RUST_LOG` or else `level`. Every NTARI binary logs this way.
pub fn init_logging(level: &str) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    // A second init (tests) is harmless: keep the first subscriber.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

fn paths_for<S: Service>(args: &NodeArgs) -> Paths {
    let name = S::NAME;
    Paths {
        config: args
            .config
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("/etc/ntari/services/{name}.toml"))),
        state_dir: args
            .state_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("/var/lib/ntari/{name}"))),
        run_dir: args
            .run_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("/run/ntari/{name}"))),
    }
}

/// Runs the daemon's own checker; its output is the error message.
async fn run_check(command: &crate::service::Command) -> Result<(), String> {
    let output = command
        .to_tokio()
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(Duration::from_secs(30), output).await {
        Err(_) => Err(format!(
            "`{}` did not finish within 30 s",
            command.display()
        )),
        Ok(Err(e)) => Err(format!("cannot run `{}`: {e}", command.display())),
        Ok(Ok(out)) if out.status.success() => Ok(()),
        Ok(Ok(out)) => {
            let mut text = String::from_utf8_lossy(&out.stderr).trim().to_string();
            if text.is_empty() {
                text = String::from_utf8_lossy(&out.stdout).trim().to_string();
            }
            Err(format!(
                "`{}` rejected the rendered config ({}): {text}",
                command.display(),
                out.status
            ))
        }
    }
}

/// Renders `config` into `paths.run_dir` and runs the daemon's checker on
/// it. A rejected config is rolled back, so the files a running daemon
/// would re-read are never left half-new.
async fn render_checked<S: Service>(
    service: &S,
    config: &S::Config,
    paths: &Paths,
) -> Result<Rendered, String> {
    let files = service.render(config, paths);
    let previous = write_rendered(&paths.run_dir, &files)?;
    if let Some(check) = service.check_command(config, paths) {
        if let Err(e) = run_check(&check).await {
            restore_rendered(previous);
            return Err(e);
        }
    }
    Ok(Rendered { files, previous })
}

/// Files just written, and what they replaced, so a daemon that refuses
/// them live ([`Reload::Live`]) can get the old ones back.
#[derive(Debug)]
struct Rendered {
    files: Vec<RenderedFile>,
    previous: Vec<PreviousFile>,
}

/// A file's contents (None: it did not exist) and mode before a render.
type PreviousFile = (PathBuf, Option<Vec<u8>>, u32);

/// Writes rendered files atomically; returns what was there before so a
/// rejected config can be rolled back. A file whose contents and mode are
/// already right is left alone: a daemon that watches its files (dnsmasq's
/// hostsdir) then only re-reads what really changed. If one write fails,
/// the files written before it are restored.
fn write_rendered(run_dir: &Path, files: &[RenderedFile]) -> Result<Vec<PreviousFile>, String> {
    use std::os::unix::fs::PermissionsExt;
    let mut previous = Vec::new();
    for file in files {
        let path = run_dir.join(&file.name);
        let old = std::fs::read(&path).ok();
        let old_mode = std::fs::metadata(&path)
            .ok()
            .map(|m| m.permissions().mode() & 0o7777);
        if old.as_deref() == Some(file.contents.as_bytes()) && old_mode == Some(file.mode) {
            continue;
        }
        // A file may live in a subdirectory of the run dir (dnsmasq's hostsdir).
        let written = path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| fsutil::write_atomic(&path, file.contents.as_bytes(), file.mode));
        if let Err(e) = written {
            restore_rendered(previous);
            return Err(format!("cannot write {}: {e}", path.display()));
        }
        previous.push((path, old, old_mode.unwrap_or(file.mode)));
    }
    Ok(previous)
}

fn restore_rendered(previous: Vec<PreviousFile>) {
    for (path, contents, mode) in previous {
        let result = match contents {
            Some(bytes) => fsutil::write_atomic(&path, &bytes, mode),
            None => std::fs::remove_file(&path),
        };
        if let Err(e) = result {
            tracing::error!(path = %path.display(), error = %e, "could not restore the previous config file");
        }
    }
}

/// The service side of the node: config, daemons and probe results. It is
/// the lifecycle's callback object.
struct ServiceHost<S: Service> {
    service: S,
    paths: Paths,
    timing: Timing,
    /// The node binary, to run daemons under a guard (None in unit tests).
    guard: Option<PathBuf>,
    /// Added to every daemon's environment: `ROS_DOMAIN_ID` of the node's
    /// domain (which ntari.toml may set), so a daemon that joins the graph
    /// itself (ntari-federation's bridge) joins the node's domain.
    daemon_env: Vec<(String, String)>,
    config: Option<S::Config>,
    rendered: Vec<RenderedFile>,
    /// The service's daemons, in start order, as the config names them
    /// (planned at configure and activate). Kept across deactivation so
    /// restart counts survive a reconfigure.
    daemons: Vec<DaemonSlot>,
    /// `daemons` has been planned from a config at least once.
    daemons_planned: bool,
    /// Woken by every supervisor after a daemon exit.
    exits: Arc<Notify>,
    /// [`Service::set_up`] ran and [`Service::tear_down`] has not yet.
    set_up: bool,
    version: Option<String>,
    /// Set when a crash loop makes the runtime deactivate: the deactivate
    /// callback then reports ERROR so the node goes through ErrorProcessing.
    crash_loop: bool,
    last_probe: Option<Result<ProbeReport, String>>,
    last_good_probe: Option<Instant>,
    last_error: Option<String>,
    metrics: Arc<Metrics>,
    /// One per [`Service::inputs`] entry, in the same order.
    inputs: Vec<InputStats>,
    /// The effective config as read-only ROS parameters, for the
    /// parameter services (updated by [`ServiceHost::set_config`]).
    parameters: watch::Sender<Parameters>,
}

/// One of the service's daemons and its supervision state.
#[derive(Debug)]
struct DaemonSlot {
    name: &'static str,
    required: bool,
    supervisor: Supervisor,
    /// Set from a start until its exit has been handled.
    running: Option<Daemon>,
    restarts: u64,
    /// Exit times within the crash-loop window.
    recent_exits: VecDeque<Instant>,
    /// When set, the daemon is down and is started again at this time.
    restart_at: Option<tokio::time::Instant>,
    backoff: Duration,
}

impl DaemonSlot {
    fn is_running(&self) -> bool {
        self.running.as_ref().is_some_and(Daemon::is_running)
    }

    /// Its exit happened and has not been handled yet.
    fn exited(&self) -> bool {
        self.running.as_ref().is_some_and(|d| !d.is_running())
    }
}

/// What arrived on one graph input, for status.
#[derive(Debug, Clone, Default, PartialEq)]
struct InputStats {
    accepted: u64,
    rejected: u64,
    last_error: Option<String>,
}

impl<S: Service> ServiceHost<S> {
    /// Unconfigured, no daemon yet.
    fn new(
        service: S,
        paths: Paths,
        timing: Timing,
        metrics: Arc<Metrics>,
        guard: Option<PathBuf>,
    ) -> Self {
        ServiceHost {
            inputs: vec![InputStats::default(); service.inputs().len()],
            service,
            paths,
            timing,
            guard,
            daemon_env: Vec::new(),
            config: None,
            rendered: Vec::new(),
            daemons: Vec::new(),
            daemons_planned: false,
            exits: Arc::new(Notify::new()),
            set_up: false,
            version: None,
            crash_loop: false,
            last_probe: None,
            last_good_probe: None,
            last_error: None,
            metrics,
            parameters: watch::channel(Parameters::standard()).0,
        }
    }

    /// The only way `config` changes, so the parameters always show it.
    fn set_config(&mut self, config: Option<S::Config>) {
        let mut parameters = Parameters::standard();
        if let Some(config) = &config {
            match serde_json::to_value(config) {
                Ok(json) => parameters.insert_json(
                    "",
                    &json,
                    &format!("from {}", self.paths.config.display()),
                ),
                Err(e) => tracing::warn!(error = %e, "the config cannot be shown as parameters"),
            }
        }
        self.parameters.send_if_modified(|current| {
            let changed = *current != parameters;
            *current = parameters;
            changed
        });
        self.config = config;
    }

    fn fail(&mut self, message: String) -> CallbackResult {
        tracing::error!("{message}");
        self.last_error = Some(message);
        CallbackResult::Failure
    }

    /// Probes the service; `expect_failure` (start-up) logs failures at debug.
    async fn probe_logged(&mut self, expect_failure: bool) -> bool {
        let Some(config) = &self.config else {
            return false;
        };
        let started = Instant::now();
        let result = match tokio::time::timeout(
            self.timing.probe_interval.max(Duration::from_secs(2)),
            self.service.probe(config, &self.paths),
        )
        .await
        {
            Ok(r) => r,
            Err(_) => Err("probe timed out".to_string()),
        };
        let ok = result.is_ok();
        self.metrics.record_probe(ok, started.elapsed());
        match &result {
            Ok(report) => {
                self.metrics.update_service(&report.metrics);
                self.last_good_probe = Some(Instant::now());
            }
            Err(e) if expect_failure => {
                tracing::debug!(service = S::NAME, error = %e, "not answering yet")
            }
            Err(e) => tracing::warn!(service = S::NAME, error = %e, "probe failed"),
        }
        self.last_probe = Some(result);
        ok
    }

    async fn probe(&mut self) -> bool {
        self.probe_logged(false).await
    }

    /// Every required daemon runs (true for a service without daemons).
    fn daemons_running(&self) -> bool {
        self.daemons
            .iter()
            .all(|slot| !slot.required || slot.is_running())
    }

    fn probe_fresh(&self) -> bool {
        self.last_good_probe
            .is_some_and(|t| t.elapsed() <= self.timing.probe_freshness)
    }

    /// The process groups of the running daemons (their guards).
    fn daemon_groups(&self) -> Vec<u32> {
        self.daemons
            .iter()
            .filter_map(|slot| slot.running.as_ref().map(Daemon::group))
            .collect()
    }

    /// Makes the slots match the daemons the current config names, keeping
    /// the slots (and restart counts) of daemons that stay.
    fn plan_daemons(&mut self) {
        let specs = match &self.config {
            Some(config) => self.service.daemons(config, &self.paths),
            None => Vec::new(),
        };
        self.daemons_planned = true;
        let mut slots = std::mem::take(&mut self.daemons);
        self.daemons = specs
            .iter()
            .map(
                |spec| match slots.iter().position(|s| s.name == spec.name) {
                    Some(i) => {
                        let mut slot = slots.swap_remove(i);
                        slot.required = spec.required;
                        slot
                    }
                    None => DaemonSlot {
                        name: spec.name,
                        required: spec.required,
                        supervisor: Supervisor::new(
                            spec.name,
                            self.guard.clone(),
                            self.exits.clone(),
                        ),
                        running: None,
                        restarts: 0,
                        recent_exits: VecDeque::new(),
                        restart_at: None,
                        backoff: self.timing.backoff_initial,
                    },
                },
            )
            .collect();
    }

    /// Starts daemon `index` and waits for [`Service::daemon_started`].
    async fn start_daemon(&mut self, index: usize) -> Result<(), String> {
        let Some(config) = &self.config else {
            return Err("not configured".into());
        };
        let name = self.daemons[index].name;
        let Some(spec) = self
            .service
            .daemons(config, &self.paths)
            .into_iter()
            .find(|spec| spec.name == name)
        else {
            return Err(format!("the config no longer names daemon {name}"));
        };
        for stale in &spec.stale_files {
            match std::fs::remove_file(stale) {
                Ok(()) => {
                    tracing::info!(path = %stale.display(), "removed a stale file of the last run")
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(path = %stale.display(), error = %e, "could not remove a stale file")
                }
            }
        }
        let mut command = spec.command.clone();
        command.env.extend(self.daemon_env.iter().cloned());
        let slot = &mut self.daemons[index];
        let daemon = slot.supervisor.start(&command).map_err(|e| e.to_string())?;
        let record = DaemonRecord::of(daemon.pid(), &spec.command.program);
        let record_path = supervisor::record_path(&self.paths.run_dir, name);
        if let Err(e) = record.map_or(Ok(()), |r| r.save(&record_path)) {
            tracing::warn!(daemon = name, error = %e, "could not record the daemon's pid; if this node and its guard are killed, the next start cannot stop the daemon");
        }
        slot.running = Some(daemon);
        slot.restart_at = None;
        let ready = tokio::time::timeout(
            self.timing.activate_timeout,
            self.service.daemon_started(name, config, &self.paths),
        )
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "not ready within {} s",
                self.timing.activate_timeout.as_secs()
            ))
        });
        if let Err(e) = ready {
            self.stop_daemon(index).await;
            return Err(format!("{name} started but {e}"));
        }
        Ok(())
    }

    async fn stop_daemon(&mut self, index: usize) {
        let slot = &mut self.daemons[index];
        slot.restart_at = None;
        if let Some(daemon) = slot.running.take() {
            daemon.stop(self.timing.stop_timeout).await;
            let _ = std::fs::remove_file(supervisor::record_path(&self.paths.run_dir, slot.name));
        }
    }

    /// Set-up, then every daemon in order. On an error, what was started
    /// is stopped again.
    async fn start_all(&mut self) -> Result<(), String> {
        self.plan_daemons();
        if let Some(config) = &self.config {
            if !self.set_up {
                self.service.set_up(config, &self.paths).await?;
                self.set_up = true;
            }
        }
        for index in 0..self.daemons.len() {
            if let Err(e) = self.start_daemon(index).await {
                self.stop_all().await;
                return Err(e);
            }
        }
        Ok(())
    }

    /// Every daemon in reverse start order, then tear-down.
    async fn stop_all(&mut self) {
        for index in (0..self.daemons.len()).rev() {
            self.stop_daemon(index).await;
        }
        self.last_good_probe = None;
        if std::mem::take(&mut self.set_up) {
            self.service
                .tear_down(self.config.as_ref(), &self.paths)
                .await;
        }
    }

    /// `: <the daemon's last output line>` when it exited by itself (its
    /// last words are then usually the reason); nothing when a signal
    /// killed it, or it said nothing.
    fn last_words(slot: &DaemonSlot, exit: &str) -> String {
        if !exit.starts_with("exit status") {
            return String::new();
        }
        slot.supervisor
            .last_words()
            .map(|w| format!(": {}", w.trim()))
            .unwrap_or_default()
    }

    /// How daemon `index`'s last run ended, with its last words.
    fn exit_reason(&self, index: usize) -> String {
        let slot = &self.daemons[index];
        let exit = slot.supervisor.status().last_exit.unwrap_or_default();
        let words = Self::last_words(slot, &exit);
        format!("{exit}{words}")
    }

    /// Brings running daemons up to date with files just rendered for
    /// `self.config`. An error means the service refused them live and runs
    /// as before; the caller rolls the files back.
    async fn apply_to_daemon(&mut self, how: Reload) -> Result<(), String> {
        let any_running = self.daemons.iter().any(DaemonSlot::is_running);
        if how != Reload::Restart && !self.daemons.is_empty() && !any_running {
            return Ok(()); // the next start reads the new files
        }
        match how {
            Reload::Watched => {}
            Reload::Sighup => {
                for daemon in self.daemons.iter().filter_map(|s| s.running.as_ref()) {
                    daemon.hangup();
                }
            }
            Reload::Live => {
                if let Some(config) = &self.config {
                    self.service.apply_live(config, &self.paths).await?;
                }
            }
            Reload::Restart => {
                self.stop_all().await;
                if let Err(e) = self.start_all().await {
                    // Nothing runs to roll back to; the event loop's
                    // restart backoff takes over.
                    tracing::error!("restart with the new files failed: {e}");
                    self.last_error = Some(format!("restart with the new files failed: {e}"));
                    let at = tokio::time::Instant::now() + self.timing.backoff_initial;
                    for slot in &mut self.daemons {
                        slot.restart_at = Some(at);
                    }
                }
            }
        }
        Ok(())
    }

    /// A sample on input `index`: the service updates its state; if the
    /// daemon's files depend on it, they are re-rendered and applied.
    async fn take_input(&mut self, index: usize, topic: &str, data: &str, active: bool) {
        let result = self.service.on_input(topic, data);
        let stats = &mut self.inputs[index];
        match result {
            Err(e) => {
                tracing::warn!(topic, error = %e, "rejected a sample");
                stats.rejected += 1;
                stats.last_error = Some(e);
            }
            Ok(how) => {
                stats.accepted += 1;
                if let Some(how) = how {
                    self.rerender(how, active).await;
                }
            }
        }
    }

    /// What the service wants published now ([`Service::refresh`]).
    async fn refresh(&mut self) -> Vec<Publication> {
        let ServiceHost {
            service,
            config,
            paths,
            ..
        } = self;
        match config {
            Some(config) => service.refresh(config, paths).await,
            None => Vec::new(),
        }
    }

    /// Renders the current config with the service's current state (a
    /// changed input, a lease that expired) and applies it when `active`.
    /// Unconfigured: nothing to do, configure renders with the state then.
    async fn rerender(&mut self, how: Reload, active: bool) {
        let Some(config) = self.config.clone() else {
            return;
        };
        let rendered = match render_checked(&self.service, &config, &self.paths).await {
            Ok(rendered) => rendered,
            Err(e) => {
                // The previous files were restored; the daemon keeps them.
                tracing::error!("re-render after an input change refused: {e}");
                return;
            }
        };
        if active {
            if let Err(e) = self.apply_to_daemon(how).await {
                tracing::error!("{} refused the re-rendered files: {e}", S::NAME);
                restore_rendered(rendered.previous);
                return;
            }
        }
        self.rendered = rendered.files;
    }

    /// Configure minus the lifecycle: load, validate, render, check.
    async fn load_and_render(&mut self) -> Result<(S::Config, Rendered), String> {
        let config = config::load_service_config(&self.service, &self.paths.config)
            .map_err(|e| e.to_string())?;
        for dir in [&self.paths.run_dir, &self.paths.state_dir] {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        self.service
            .prepare(&config, &self.paths)
            .map_err(|e| format!("{}: {e}", self.paths.config.display()))?;
        let rendered = render_checked(&self.service, &config, &self.paths).await?;
        Ok((config, rendered))
    }
}

impl<S: Service> LifecycleCallbacks for ServiceHost<S> {
    async fn on_configure(&mut self) -> CallbackResult {
        match self.load_and_render().await {
            Ok((config, rendered)) => {
                self.set_config(Some(config));
                self.rendered = rendered.files;
                self.plan_daemons();
                if self.version.is_none() {
                    if let Some(cmd) = self.service.version_command() {
                        self.version = daemon_version(&cmd).await;
                    }
                }
                self.last_error = None;
                CallbackResult::Success
            }
            Err(e) => self.fail(format!("configure failed: {e}")),
        }
    }

    async fn on_activate(&mut self) -> CallbackResult {
        self.crash_loop = false;
        for slot in &mut self.daemons {
            slot.recent_exits.clear();
            slot.backoff = self.timing.backoff_initial;
        }
        if let Err(e) = self.start_all().await {
            return self.fail(format!("activate failed: {e}"));
        }
        let deadline = Instant::now() + self.timing.activate_timeout;
        loop {
            if let Some(index) = self
                .daemons
                .iter()
                .position(|s| s.required && !s.is_running())
            {
                let name = self.daemons[index].name;
                let reason = self.exit_reason(index);
                self.stop_all().await;
                return self.fail(format!(
                    "activate failed: {name} exited during start-up ({reason})"
                ));
            }
            if self.probe_logged(true).await {
                self.last_error = None;
                return CallbackResult::Success;
            }
            if Instant::now() >= deadline {
                let why = match &self.last_probe {
                    Some(Err(e)) => format!(" (last probe: {e})"),
                    _ => String::new(),
                };
                self.stop_all().await;
                return self.fail(format!(
                    "activate failed: {} did not answer a probe within {} s{why}",
                    S::DAEMON,
                    self.timing.activate_timeout.as_secs()
                ));
            }
            // Short: most daemons answer within tens of ms, and this wait
            // is most of "start → Active".
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn on_deactivate(&mut self) -> CallbackResult {
        self.stop_all().await;
        if self.crash_loop {
            CallbackResult::Error
        } else {
            CallbackResult::Success
        }
    }

    async fn on_cleanup(&mut self) -> CallbackResult {
        self.remove_rendered();
        self.set_config(None);
        CallbackResult::Success
    }

    async fn on_shutdown(&mut self, _from: State) -> CallbackResult {
        self.stop_all().await;
        CallbackResult::Success
    }

    async fn on_error(&mut self, _from: State) -> CallbackResult {
        self.stop_all().await;
        self.remove_rendered();
        self.set_config(None);
        CallbackResult::Success
    }
}

impl<S: Service> ServiceHost<S> {
    fn remove_rendered(&mut self) {
        for file in self.rendered.drain(..) {
            let path = self.paths.run_dir.join(&file.name);
            if let Err(e) = std::fs::remove_file(&path) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(path = %path.display(), error = %e, "could not remove rendered file");
                }
            }
        }
    }
}

async fn daemon_version(command: &crate::service::Command) -> Option<String> {
    let out = tokio::time::timeout(
        Duration::from_secs(5),
        command.to_tokio().kill_on_drop(true).output(),
    )
    .await
    .ok()?
    .ok()?;
    let text = if out.stdout.is_empty() {
        out.stderr
    } else {
        out.stdout
    };
    String::from_utf8_lossy(&text)
        .lines()
        .next()
        .map(|l| l.trim().to_string())
}

/// The node's graph-facing outputs.
struct Outputs {
    health: Publisher<Bool>,
    status: Publisher<StringMsg>,
    diagnostics: Publisher<DiagnosticArray>,
    /// The service's own topics ([`Service::outputs`]).
    service: Vec<(&'static str, Publisher<StringMsg>)>,
    last_health: Option<bool>,
    last_status: Option<Value>,
}

/// Starts the node and serves until SIGTERM/SIGINT.
pub async fn run<S: Service>(service: S, args: NodeArgs) -> anyhow::Result<()> {
    use anyhow::Context as _;

    let paths = paths_for::<S>(&args);
    let node_config = NodeConfig::load(&args.node_config, false)?;
    init_logging(&node_config.log_level);
    for note in &node_config.notes {
        tracing::info!("{note}");
    }

    if let Some(NodeCommand::CheckConfig) = args.command {
        return check_config(&service, &paths).await;
    }
    // First thing: a SIGTERM while a leftover daemon is stopped or the
    // autostart runs must wait for that step and then shut down in order,
    // not kill the node outright.
    let signals = Signals::install()?;

    let key_path = args
        .key
        .clone()
        .unwrap_or_else(|| node_config.key_path.clone());
    // load_or_create logs when it creates the key.
    let (key, _created) = NodeKey::load_or_create(&key_path)
        .with_context(|| "the node key is needed to sign status")?;

    let metrics = Arc::new(Metrics::new(S::NAME, service.metrics())?);
    let metrics_port = args.metrics_port.unwrap_or(S::METRICS_PORT);
    let (stop_metrics_tx, stop_metrics_rx) = watch::channel(false);
    if metrics_port != 0 {
        let listener = metrics::bind(metrics_port).await?;
        let m = metrics.clone();
        let mut stop = stop_metrics_rx.clone();
        tokio::spawn(async move {
            let shutdown = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            if let Err(e) = metrics::serve(listener, m, shutdown).await {
                tracing::error!(error = %e, "metrics endpoint stopped");
            }
        });
    }

    let context = Context::new(node_config.domain_id).context("cannot join the ROS 2 domain")?;
    let node = context.create_node("/ntari", &format!("ntari_{}_node", S::NAME))?;
    let mut outputs = Outputs {
        health: node.create_publisher(&format!("/ntari/{}/health", S::NAME), qos::DEFAULT)?,
        // Latched: a tool that starts late (ntari-admin status) gets the
        // last status at once instead of waiting up to 10 s.
        status: node.create_publisher(&format!("/ntari/{}/status", S::NAME), qos::LATCHED)?,
        diagnostics: node.create_publisher("/diagnostics", qos::DEFAULT)?,
        service: service
            .outputs()
            .iter()
            .map(|output| {
                let qos = if output.latched {
                    qos::LATCHED
                } else {
                    qos::DEFAULT
                };
                Ok((output.topic, node.create_publisher(output.topic, qos)?))
            })
            .collect::<anyhow::Result<_>>()?,
        last_health: None,
        last_status: None,
    };
    let timing = Timing {
        probe_interval: Duration::from_secs_f64(args.probe_interval.clamp(0.2, 3600.0)),
        probe_freshness: Duration::from_secs_f64(
            (args.probe_interval * 3.0 + 1.0).clamp(1.0, 10_800.0),
        ),
        ..Timing::default()
    };
    let inputs = subscribe_inputs(&node, service.inputs())?;
    let refusal = format!(
        "the settings of this node live in {}: edit that file, then `rc-service ntari-{} reload` \
         (or send the node SIGHUP)",
        paths.config.display(),
        S::NAME
    );
    // Helpers a daemon orphans re-parent to its guard; if a guard itself
    // dies, what it guarded re-parents here and is stopped (at the guard's exit).
    if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
        tracing::warn!(error = %e, "cannot become a child subreaper; a daemon's orphaned helpers would re-parent to PID 1");
    }
    let guard = std::env::current_exe()
        .map_err(|e| tracing::warn!(error = %e, "cannot find this node's binary to run daemons under a guard; using setpriv"))
        .ok();
    let mut host = ServiceHost::new(service, paths, timing, metrics.clone(), guard);
    host.daemon_env
        .push(("ROS_DOMAIN_ID".into(), context.domain_id().to_string()));
    // A previous run killed without an orderly shutdown, its guards too,
    // may have left daemons running and an interface set up: they would
    // hold what the new ones need.
    supervisor::stop_leftovers(&host.paths.run_dir, host.timing.stop_timeout).await;
    host.service.tear_down(None, &host.paths).await;
    let parameters = host.parameters.subscribe();
    let mut lifecycle = LifecycleNode::new(&node, host)?;
    tracing::info!(
        node = %node.fully_qualified_name(),
        domain = context.domain_id(),
        did = %key.did(),
        "started Unconfigured"
    );

    if args.autostart {
        for step in ["configure", "activate"] {
            if !matches!(
                lifecycle.trigger_label(step).await,
                Ok(CallbackResult::Success)
            ) {
                tracing::warn!(
                    step,
                    "autostart stopped; the node waits for lifecycle commands"
                );
                break;
            }
        }
    }
    // The standard services of every ROS node, after the autostart (14
    // endpoints would add ~8 ms to start -> Active, and nothing needs them
    // to get there). They run as tasks of their own beside the event loop:
    // they answer from the node's type cache and from the parameters the
    // host publishes, never from its state.
    tokio::spawn(TypeDescriptionServer::new(&node)?.serve());
    tokio::spawn(ParameterServer::new(&node, refusal)?.serve(parameters));
    serve(&node, &mut lifecycle, &mut outputs, &inputs, &key, signals).await;
    let _ = stop_metrics_tx.send(true);
    Ok(())
}

/// One subscription per graph input, in [`Service::inputs`] order.
fn subscribe_inputs(
    node: &Node,
    inputs: &'static [Input],
) -> anyhow::Result<Vec<(Input, Subscription<StringMsg>)>> {
    inputs
        .iter()
        .map(|input| {
            let qos = if input.latched {
                qos::LATCHED
            } else {
                qos::DEFAULT
            };
            Ok((*input, node.create_subscription(input.topic, qos)?))
        })
        .collect()
}

/// The next sample on any input (pending forever without inputs).
/// Cancel-safe, as `Subscription::recv` is.
async fn next_input(inputs: &[(Input, Subscription<StringMsg>)]) -> (usize, StringMsg) {
    use std::future::Future;
    use std::pin::Pin;
    use std::task::Poll;
    if inputs.is_empty() {
        return std::future::pending().await;
    }
    let mut receiving: Vec<Pin<Box<dyn Future<Output = StringMsg> + '_>>> = inputs
        .iter()
        .map(|(_, sub)| Box::pin(sub.recv()) as Pin<Box<dyn Future<Output = StringMsg>>>)
        .collect();
    std::future::poll_fn(|cx| {
        for (index, fut) in receiving.iter_mut().enumerate() {
            if let Poll::Ready(message) = fut.as_mut().poll(cx) {
                return Poll::Ready((index, message));
            }
        }
        Poll::Pending
    })
    .await
}

/// `check-config`: load, validate, render into a scratch dir, run the checker.
async fn check_config<S: Service>(service: &S, paths: &Paths) -> anyhow::Result<()> {
    let config = config::load_service_config(service, &paths.config)?;
    // A private, unpredictable directory: this may run as root.
    let scratch = tempfile::Builder::new()
        .prefix(&format!("ntari-{}-check-", S::NAME))
        .tempdir()?;
    let scratch_paths = Paths {
        run_dir: scratch.path().to_path_buf(),
        ..paths.clone()
    };
    match render_checked(service, &config, &scratch_paths).await {
        Ok(_) => {
            println!("{}: ok", paths.config.display());
            Ok(())
        }
        Err(e) => Err(anyhow::anyhow!("{}: {e}", paths.config.display())),
    }
}

/// The signals a node acts on. Installed once, early: from then on they
/// are queued for the event loop instead of ending the process.
struct Signals {
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> anyhow::Result<Self> {
        use anyhow::Context as _;
        let listen = |kind| signal(kind).context("cannot install signal handlers");
        Ok(Signals {
            terminate: listen(SignalKind::terminate())?,
            interrupt: listen(SignalKind::interrupt())?,
            hangup: listen(SignalKind::hangup())?,
        })
    }
}

/// How often the node looks for processes it adopted without a daemon
/// exit telling it to (see `supervisor::stop_adopted`).
const ADOPTED_SWEEP_INTERVAL: Duration = Duration::from_secs(30);

/// The event loop: lifecycle requests, daemon exits, probes, publishing,
/// restarts, SIGHUP reloads; returns after an orderly shutdown.
async fn serve<S: Service>(
    node: &Node,
    lifecycle: &mut LifecycleNode<ServiceHost<S>>,
    outputs: &mut Outputs,
    inputs: &[(Input, Subscription<StringMsg>)],
    key: &NodeKey,
    signals: Signals,
) {
    let Signals {
        terminate: mut sigterm,
        interrupt: mut sigint,
        hangup: mut sighup,
    } = signals;
    let exits = lifecycle.callbacks().exits.clone();
    let mut state_events = lifecycle.watch_state();
    let timing = lifecycle.callbacks().timing.clone();
    let mut health_tick = tokio::time::interval(Duration::from_secs(1));
    let mut probe_tick = tokio::time::interval(timing.probe_interval);
    let mut status_tick = tokio::time::interval(timing.status_interval);
    let mut refresh_tick = tokio::time::interval(timing.refresh_interval);
    // Set while refreshing at the busy pace: until when.
    let mut refresh_busy_until: Option<tokio::time::Instant> = None;
    let has_outputs = !outputs.service.is_empty();
    for tick in [
        &mut health_tick,
        &mut probe_tick,
        &mut status_tick,
        &mut refresh_tick,
    ] {
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    }
    // Set when a daemon exited while a probe or refresh was waiting on it:
    // handled first thing in the next round.
    let mut daemon_changed = false;
    let mut next_adopted_sweep = tokio::time::Instant::now() + ADOPTED_SWEEP_INTERVAL;

    loop {
        enum Event {
            Request(crate::lifecycle::LifecycleRequest),
            DaemonChanged,
            StateChanged,
            Restart,
            Probe,
            Health,
            Status,
            Reload,
            Input(usize, StringMsg),
            Refresh,
            Stop,
        }
        let event = if std::mem::take(&mut daemon_changed) {
            Event::DaemonChanged
        } else {
            let next_restart = lifecycle
                .callbacks()
                .daemons
                .iter()
                .filter_map(|slot| slot.restart_at)
                .min();
            let restart_sleep = async {
                match next_restart {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
            r = lifecycle.next_request() => Event::Request(r),
            () = exits.notified() => Event::DaemonChanged,
            _ = state_events.changed() => Event::StateChanged,
            () = restart_sleep => Event::Restart,
            _ = probe_tick.tick() => Event::Probe,
            _ = health_tick.tick() => Event::Health,
            () = outputs.health.subscriptions_changed() => Event::Health,
            _ = status_tick.tick() => Event::Status,
            _ = sighup.recv() => Event::Reload,
            (index, message) = next_input(inputs) => Event::Input(index, message),
            _ = refresh_tick.tick(), if has_outputs => Event::Refresh,
            _ = sigterm.recv() => Event::Stop,
            _ = sigint.recv() => Event::Stop,
            }
        };
        let mut force_publish = false;
        let health_tick_due = matches!(event, Event::Health);
        match event {
            Event::Request(r) => lifecycle.handle(r).await,
            Event::DaemonChanged => {
                while lifecycle.state() == State::Active {
                    let Some(index) = lifecycle
                        .callbacks()
                        .daemons
                        .iter()
                        .position(DaemonSlot::exited)
                    else {
                        break;
                    };
                    // Publish before anything slow: this is the figure
                    // "daemon crash → health=false on the wire".
                    publish_health(lifecycle, outputs, true);
                    on_daemon_exit(lifecycle, index).await;
                }
                // A guard that died (killed by hand) left its daemon to us.
                supervisor::stop_adopted(&lifecycle.callbacks().daemon_groups());
            }
            Event::StateChanged => {
                state_events.borrow_and_update();
                if lifecycle.state() != State::Active {
                    // A new activation starts with a clean slate.
                    for slot in &mut lifecycle.callbacks_mut().daemons {
                        slot.restart_at = None;
                        slot.backoff = timing.backoff_initial;
                    }
                }
                force_publish = true;
            }
            Event::Restart => {
                let now = tokio::time::Instant::now();
                let host = lifecycle.callbacks_mut();
                for index in 0..host.daemons.len() {
                    if host.daemons[index].restart_at.is_none_or(|at| at > now) {
                        continue;
                    }
                    let result = host.start_daemon(index).await;
                    let slot = &mut host.daemons[index];
                    match result {
                        Ok(()) => {
                            slot.restarts += 1;
                            host.metrics.inc_restarts(slot.name);
                            // The next probe tick finds out whether it answers.
                        }
                        Err(e) => {
                            let message = format!("restart of {} failed: {e}", slot.name);
                            tracing::error!("{message}");
                            slot.restart_at = Some(now + slot.backoff);
                            slot.backoff = (slot.backoff * 2).min(timing.backoff_max);
                            host.last_error = Some(message);
                        }
                    }
                }
            }
            Event::Probe => {
                if lifecycle.state() == State::Active && lifecycle.callbacks().daemons_running() {
                    let host = lifecycle.callbacks_mut();
                    // A daemon that dies while the probe waits on it must
                    // not wait for the probe's timeout: the exit is handled
                    // (health=false published) right away.
                    tokio::select! {
                        _ = host.probe() => {}
                        () = exits.notified() => {
                            daemon_changed = true;
                        }
                    }
                    // A daemon that stayed up a whole crash-loop window has
                    // recovered: the next crash starts the backoff afresh.
                    for slot in &mut host.daemons {
                        if slot
                            .running
                            .as_ref()
                            .is_some_and(|d| d.uptime() >= timing.crash_loop_window)
                        {
                            slot.backoff = timing.backoff_initial;
                        }
                    }
                }
            }
            Event::Health => {
                let active = lifecycle.state() == State::Active;
                let host = lifecycle.callbacks_mut();
                // Adoption happens when a guard dies, which the exit handling
                // sweeps for; this is only the safety net, and rare, since
                // a scan of /proc costs an idle node CPU.
                if tokio::time::Instant::now() >= next_adopted_sweep {
                    supervisor::stop_adopted(&host.daemon_groups());
                    next_adopted_sweep = tokio::time::Instant::now() + ADOPTED_SWEEP_INTERVAL;
                }
                if let Some(how) = host.service.on_tick(SystemTime::now()) {
                    host.rerender(how, active).await;
                }
            }
            Event::Status => force_publish = true,
            Event::Reload => reload(lifecycle).await,
            Event::Refresh => {
                if lifecycle.state() != State::Active || !lifecycle.callbacks().daemons_running() {
                    continue;
                }
                let publications = tokio::select! {
                    p = lifecycle.callbacks_mut().refresh() => p,
                    () = exits.notified() => {
                        daemon_changed = true;
                        Vec::new()
                    }
                };
                let now = tokio::time::Instant::now();
                let pace = if !publications.is_empty() {
                    let was_busy = refresh_busy_until.is_some();
                    refresh_busy_until = Some(now + timing.refresh_busy_for);
                    (!was_busy).then_some(timing.refresh_busy_interval)
                } else if refresh_busy_until.is_some_and(|until| now >= until) {
                    refresh_busy_until = None;
                    Some(timing.refresh_interval)
                } else {
                    None
                };
                if let Some(period) = pace {
                    refresh_tick = tokio::time::interval_at(now + period, period);
                    refresh_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                }
                if publications.is_empty() {
                    // Nothing changed: skip the status bookkeeping below.
                    continue;
                }
                for publication in publications {
                    publish_document(outputs, publication);
                }
            }
            Event::Input(index, message) => {
                let active = lifecycle.state() == State::Active;
                lifecycle
                    .callbacks_mut()
                    .take_input(index, inputs[index].0.topic, &message.data, active)
                    .await;
            }
            Event::Stop => break,
        }
        publish_health(lifecycle, outputs, health_tick_due);
        publish_status(node, lifecycle, outputs, key, force_publish);
    }
    if let Err(e) = lifecycle.shutdown().await {
        tracing::warn!(error = %e, "orderly shutdown refused");
    }
    publish_health(lifecycle, outputs, true);
    publish_status(node, lifecycle, outputs, key, true);
}

/// Handles the exit of daemon `index` while Active: schedules its restart
/// with backoff, or, after a crash loop, deactivates with ERROR
/// (→ ErrorProcessing → Unconfigured) naming the daemon.
async fn on_daemon_exit<S: Service>(lifecycle: &mut LifecycleNode<ServiceHost<S>>, index: usize) {
    let host = lifecycle.callbacks_mut();
    let exit = host.exit_reason(index);
    let window = host.timing.crash_loop_window;
    let crash_loop_exits = host.timing.crash_loop_exits;
    if host.daemons[index].required {
        // Health needs a new good probe of the restarted daemon.
        host.last_good_probe = None;
    }
    let slot = &mut host.daemons[index];
    slot.running = None;
    let _ = std::fs::remove_file(supervisor::record_path(&host.paths.run_dir, slot.name));
    let now = Instant::now();
    slot.recent_exits.push_back(now);
    while slot
        .recent_exits
        .front()
        .is_some_and(|t| now.duration_since(*t) > window)
    {
        slot.recent_exits.pop_front();
    }
    if slot.recent_exits.len() >= crash_loop_exits {
        let reason = format!(
            "{} exited {} times within {} s (last: {exit}); crash loop, giving up until reconfigured",
            slot.name,
            slot.recent_exits.len(),
            window.as_secs()
        );
        tracing::error!("{reason}");
        host.crash_loop = true;
        let _ = lifecycle.trigger_label("deactivate").await;
        let host = lifecycle.callbacks_mut();
        host.crash_loop = false;
        host.last_error = Some(reason);
        return;
    }
    let message = format!(
        "{} exited unexpectedly ({exit}); restarting in {:.0} s",
        slot.name,
        slot.backoff.as_secs_f64()
    );
    slot.restart_at = Some(tokio::time::Instant::now() + slot.backoff);
    slot.backoff = (slot.backoff * 2).min(host.timing.backoff_max);
    tracing::warn!("{message}");
    host.last_error = Some(message);
}

/// SIGHUP: re-read the config. An invalid one changes nothing that runs.
async fn reload<S: Service>(lifecycle: &mut LifecycleNode<ServiceHost<S>>) {
    let state = lifecycle.state();
    let host = lifecycle.callbacks_mut();
    let Some(old) = host.config.clone() else {
        tracing::info!("SIGHUP while unconfigured: nothing to reload (configure reads the file)");
        return;
    };
    let (new, rendered) = match host.load_and_render().await {
        Ok(loaded) => loaded,
        Err(e) => {
            let message = format!("reload refused, the running daemon is untouched: {e}");
            tracing::error!("{message}");
            host.last_error = Some(message);
            return;
        }
    };
    host.last_error = None;
    if new == old {
        tracing::info!("SIGHUP: config unchanged");
        return;
    }
    let how = host.service.reload(&old, &new);
    host.set_config(Some(new));
    if state != State::Active {
        host.rendered = rendered.files;
        tracing::info!("SIGHUP: new config will be used at the next activate");
        return;
    }
    match how {
        Reload::Sighup => tracing::info!("SIGHUP: {} asked to re-read its files", S::DAEMON),
        Reload::Watched => tracing::info!("SIGHUP: {} picks up the new files itself", S::DAEMON),
        Reload::Live => tracing::info!("SIGHUP: {} gets the new config live", S::DAEMON),
        Reload::Restart => tracing::info!("SIGHUP: restarting {} with the new config", S::DAEMON),
    }
    match host.apply_to_daemon(how).await {
        Ok(()) => host.rendered = rendered.files,
        Err(e) => {
            restore_rendered(rendered.previous);
            host.set_config(Some(old));
            let message = format!(
                "reload refused by {}, which keeps running its previous config: {e}",
                S::DAEMON
            );
            tracing::error!("{message}");
            host.last_error = Some(message);
        }
    }
}

fn publish_document(outputs: &Outputs, publication: Publication) {
    let Some((_, publisher)) = outputs
        .service
        .iter()
        .find(|(topic, _)| *topic == publication.topic)
    else {
        tracing::error!(
            topic = publication.topic,
            "the service published on a topic it did not declare"
        );
        return;
    };
    if let Err(e) = publisher.publish(&StringMsg {
        data: publication.json,
    }) {
        tracing::warn!(topic = publication.topic, error = %e, "could not publish");
    }
}

fn healthy<S: Service>(lifecycle: &LifecycleNode<ServiceHost<S>>) -> bool {
    let host = lifecycle.callbacks();
    lifecycle.state() == State::Active && host.daemons_running() && host.probe_fresh()
}

fn publish_health<S: Service>(
    lifecycle: &LifecycleNode<ServiceHost<S>>,
    outputs: &mut Outputs,
    force: bool,
) {
    let data = healthy(lifecycle);
    let host = lifecycle.callbacks();
    host.metrics.set_healthy(data);
    host.metrics.set_lifecycle_state(lifecycle.state().id());
    for slot in &host.daemons {
        let running = slot.running.as_ref().filter(|d| d.is_running());
        host.metrics.set_daemon(
            slot.name,
            running.is_some(),
            running.map(Daemon::uptime).unwrap_or_default(),
        );
    }
    if force || outputs.last_health != Some(data) {
        if let Err(e) = outputs.health.publish(&Bool { data }) {
            tracing::warn!(error = %e, "could not publish health");
        }
        outputs.last_health = Some(data);
    }
}

/// One daemon in status: `{name, required, running, pid, restarts,
/// last_exit}` (the published copy adds `uptime_s`).
fn daemon_status(slot: &DaemonSlot) -> Value {
    let running = slot.running.as_ref().filter(|d| d.is_running());
    json!({
        "name": slot.name,
        "required": slot.required,
        "running": running.is_some(),
        "pid": running.map(Daemon::pid),
        "restarts": slot.restarts,
        "last_exit": slot.supervisor.status().last_exit,
    })
}

/// The status payload: everything but the timestamp, nonce and signature
/// (the envelope adds those), so "changed" means a real change.
/// `daemons` lists every daemon; `daemon` repeats the first one with the
/// version, for tools written against one-daemon services (null when the
/// config names none; the upstream's name, not running, before a config).
fn status_payload<S: Service>(node: &Node, lifecycle: &LifecycleNode<ServiceHost<S>>) -> Value {
    let host = lifecycle.callbacks();
    let state = lifecycle.state();
    let (detail, warnings) = match &host.last_probe {
        Some(Ok(report)) => (
            Value::Object(report.detail.clone()),
            report.warnings.clone(),
        ),
        _ => (Value::Object(Map::new()), Vec::new()),
    };
    // Why the last probe failed, so an unhealthy node says why without its log.
    let probe_error = match &host.last_probe {
        Some(Err(e)) => Some(e.clone()),
        _ => None,
    };
    let daemons: Vec<Value> = host.daemons.iter().map(daemon_status).collect();
    // Before any config names the daemons, the upstream, not running.
    let first = match daemons.first() {
        Some(d) => Some(d.clone()),
        None if !host.daemons_planned => Some(json!({
            "name": S::DAEMON, "required": true, "running": false, "pid": null,
            "restarts": 0, "last_exit": null,
        })),
        None => None,
    }
    .map(|mut d| {
        d["version"] = json!(host.version);
        d
    });
    json!({
        "node": node.fully_qualified_name(),
        "service": S::NAME,
        "lifecycle_state": state.label(),
        "healthy": healthy(lifecycle),
        "version": host.version,
        "daemon": first,
        "daemons": daemons,
        "detail": detail,
        "warnings": warnings,
        "inputs": input_status(&host.service, &host.inputs),
        "last_error": host.last_error,
        "probe_error": probe_error,
    })
}

/// `{topic: {accepted, rejected, last_error}}` for status; null without inputs.
fn input_status<S: Service>(service: &S, stats: &[InputStats]) -> Value {
    if stats.is_empty() {
        return Value::Null;
    }
    let map = service
        .inputs()
        .iter()
        .zip(stats)
        .map(|(input, s)| {
            (
                input.topic.to_string(),
                json!({"accepted": s.accepted, "rejected": s.rejected, "last_error": s.last_error}),
            )
        })
        .collect();
    Value::Object(map)
}

fn publish_status<S: Service>(
    node: &Node,
    lifecycle: &LifecycleNode<ServiceHost<S>>,
    outputs: &mut Outputs,
    key: &NodeKey,
    force: bool,
) {
    let payload = status_payload(node, lifecycle);
    if !force && outputs.last_status.as_ref() == Some(&payload) {
        return;
    }
    // Uptime changes every second; it goes in the published copy only, so
    // it does not count as a change.
    let mut published = payload.clone();
    for (index, slot) in lifecycle.callbacks().daemons.iter().enumerate() {
        if let Some(d) = slot.running.as_ref().filter(|d| d.is_running()) {
            let uptime = json!(d.uptime().as_secs());
            published["daemons"][index]["uptime_s"] = uptime.clone();
            if index == 0 {
                published["daemon"]["uptime_s"] = uptime;
            }
        }
    }
    let signed = key
        .sign(published.clone())
        .map_err(|e| e.to_string())
        .and_then(|envelope| serde_json::to_string(&envelope).map_err(|e| e.to_string()));
    match signed {
        Ok(text) => {
            if let Err(e) = outputs.status.publish(&StringMsg { data: text }) {
                tracing::warn!(error = %e, "could not publish status");
            }
        }
        Err(e) => tracing::warn!(error = %e, "could not sign status"),
    }
    let _ = outputs.diagnostics.publish(&diagnostics::<S>(&published));
    outputs.last_status = Some(payload);
}

/// The status as one diagnostic_msgs/DiagnosticStatus, for
/// rqt_robot_monitor and diagnostic_aggregator.
fn diagnostics<S: Service>(status: &Value) -> DiagnosticArray {
    let healthy = status["healthy"].as_bool().unwrap_or(false);
    let state = status["lifecycle_state"].as_str().unwrap_or("unknown");
    let warnings: Vec<&str> = status["warnings"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let probe_error = status["probe_error"].as_str();
    let (level, message) = match (healthy, state, status["last_error"].as_str()) {
        (true, _, _) if !warnings.is_empty() => (DiagnosticStatus::WARN, warnings.join("; ")),
        (true, _, _) => (DiagnosticStatus::OK, "healthy".to_string()),
        (false, "active", Some(e)) => (DiagnosticStatus::ERROR, e.to_string()),
        (false, "active", None) => match probe_error {
            Some(e) => (DiagnosticStatus::ERROR, format!("probe failed: {e}")),
            None => (
                DiagnosticStatus::WARN,
                "waiting for a good probe".to_string(),
            ),
        },
        (false, _, Some(e)) => (DiagnosticStatus::ERROR, e.to_string()),
        (false, s, None) => (DiagnosticStatus::STALE, format!("not active ({s})")),
    };
    let mut values = vec![KeyValue::new("lifecycle_state", state)];
    let mut flatten = |prefix: &str, v: &Value| {
        if let Some(obj) = v.as_object() {
            for (k, v) in obj {
                let text = match v {
                    Value::String(s) => s.clone(),
                    Value::Null => continue,
                    other => other.to_string(),
                };
                values.push(KeyValue::new(&format!("{prefix}{k}"), &text));
            }
        }
    };
    flatten("daemon.", &status["daemon"]);
    for daemon in status["daemons"].as_array().into_iter().flatten() {
        let name = daemon["name"].as_str().unwrap_or_default();
        flatten(&format!("daemons.{name}."), daemon);
    }
    flatten("", &status["detail"]);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    DiagnosticArray {
        header: Header {
            stamp: Time {
                sec: i32::try_from(now.as_secs()).unwrap_or(i32::MAX),
                nanosec: now.subsec_nanos(),
            },
            frame_id: String::new(),
        },
        status: vec![DiagnosticStatus {
            level,
            name: format!("ntari/{}", S::NAME),
            message,
            hardware_id: status["node"].as_str().unwrap_or_default().to_string(),
            values,
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::{Command, DaemonSpec, MetricDesc};

    /// A service whose checker accepts a rendered file only if it says
    /// "good"; samples on its input `/picky/word` are appended to the file.
    #[derive(Default)]
    struct Picky {
        heard: String,
    }

    #[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
    #[serde(deny_unknown_fields)]
    struct PickyConfig {
        word: String,
    }

    impl Service for Picky {
        type Config = PickyConfig;
        const NAME: &'static str = "picky";
        const DAEMON: &'static str = "sleep";
        const METRICS_PORT: u16 = 0;

        fn render(&self, config: &PickyConfig, _paths: &Paths) -> Vec<RenderedFile> {
            vec![RenderedFile {
                name: "daemon.conf".into(),
                contents: format!("{}{}", config.word, self.heard),
                mode: 0o644,
            }]
        }
        fn check_command(&self, _config: &PickyConfig, paths: &Paths) -> Option<Command> {
            let file = paths.run_dir.join("daemon.conf").display().to_string();
            Some(Command::new("grep", ["-q", "good", file.as_str()]))
        }
        fn daemons(&self, _config: &PickyConfig, _paths: &Paths) -> Vec<DaemonSpec> {
            vec![DaemonSpec::new("sleep", Command::new("sleep", ["30"]))]
        }
        fn metrics(&self) -> &'static [MetricDesc] {
            &[]
        }
        async fn probe(
            &self,
            _config: &PickyConfig,
            _paths: &Paths,
        ) -> Result<ProbeReport, String> {
            Ok(ProbeReport::default())
        }
        fn inputs(&self) -> &'static [Input] {
            &[Input {
                topic: "/picky/word",
                latched: false,
            }]
        }
        fn on_input(&mut self, _topic: &str, data: &str) -> Result<Option<Reload>, String> {
            if data.is_empty() {
                return Err("an empty word".into());
            }
            // "live:x" is applied live, and refused live if x is "refuse".
            if let Some(word) = data.strip_prefix("live:") {
                self.heard = word.to_string();
                return Ok(Some(Reload::Live));
            }
            self.heard = data.to_string();
            Ok(Some(Reload::Watched))
        }
        async fn apply_live(&self, _config: &PickyConfig, _paths: &Paths) -> Result<(), String> {
            if self.heard == "refuse" {
                Err("refused live".into())
            } else {
                Ok(())
            }
        }
    }

    fn host(dir: &Path) -> ServiceHost<Picky> {
        let paths = Paths {
            config: dir.join("picky.toml"),
            state_dir: dir.join("state"),
            run_dir: dir.join("run"),
        };
        let metrics = Arc::new(Metrics::new("picky", &[]).unwrap());
        ServiceHost::new(Picky::default(), paths, Timing::default(), metrics, None)
    }

    #[tokio::test]
    async fn a_config_the_daemon_rejects_is_rolled_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut host = host(dir.path());
        let rendered = dir.path().join("run/daemon.conf");

        std::fs::write(&host.paths.config, "word = \"good\"\n").unwrap();
        host.load_and_render().await.unwrap();
        std::fs::write(&host.paths.config, "word = \"good, v2\"\n").unwrap();
        host.load_and_render().await.unwrap();
        assert_eq!(std::fs::read_to_string(&rendered).unwrap(), "good, v2");

        std::fs::write(&host.paths.config, "word = \"bad\"\n").unwrap();
        let err = host.load_and_render().await.unwrap_err();
        assert!(err.contains("rejected the rendered config"), "{err}");
        assert_eq!(
            std::fs::read_to_string(&rendered).unwrap(),
            "good, v2",
            "the files of the running daemon must be restored"
        );

        std::fs::write(&host.paths.config, "wrod = \"good\"\n").unwrap();
        let err = host.load_and_render().await.unwrap_err();
        assert!(
            err.contains("picky.toml:1") && err.contains("wrod"),
            "{err}"
        );
        assert_eq!(std::fs::read_to_string(&rendered).unwrap(), "good, v2");
    }

    #[tokio::test]
    async fn check_config_touches_nothing_that_runs() {
        let dir = tempfile::tempdir().unwrap();
        let paths = host(dir.path()).paths;
        std::fs::write(&paths.config, "word = \"bad\"\n").unwrap();
        let err = check_config(&Picky::default(), &paths)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("picky.toml") && err.contains("rejected"),
            "{err}"
        );
        std::fs::write(&paths.config, "word = \"good\"\n").unwrap();
        check_config(&Picky::default(), &paths).await.unwrap();
        assert!(
            !paths.run_dir.exists(),
            "check-config renders into a scratch dir only"
        );
    }

    #[tokio::test]
    async fn inputs_re_render_and_bad_samples_are_counted_not_applied() {
        let dir = tempfile::tempdir().unwrap();
        let mut host = host(dir.path());
        let rendered = dir.path().join("run/daemon.conf");

        // Unconfigured: the state is kept, configure renders with it.
        host.take_input(0, "/picky/word", "-early", false).await;
        assert!(!rendered.exists());
        std::fs::write(&host.paths.config, "word = \"good\"\n").unwrap();
        host.on_configure().await;
        assert_eq!(std::fs::read_to_string(&rendered).unwrap(), "good-early");

        host.take_input(0, "/picky/word", "-later", false).await;
        assert_eq!(std::fs::read_to_string(&rendered).unwrap(), "good-later");
        host.take_input(0, "/picky/word", "", false).await;
        assert_eq!(std::fs::read_to_string(&rendered).unwrap(), "good-later");
        let expected = InputStats {
            accepted: 2,
            rejected: 1,
            last_error: Some("an empty word".into()),
        };
        assert_eq!(host.inputs, [expected]);
        let status = input_status(&host.service, &host.inputs);
        assert_eq!(status["/picky/word"]["rejected"], 1);

        // A state the daemon's checker refuses is rolled back.
        host.set_config(Some(PickyConfig { word: "go".into() }));
        host.take_input(0, "/picky/word", "od", false).await;
        assert_eq!(std::fs::read_to_string(&rendered).unwrap(), "good");
        host.take_input(0, "/picky/word", "ne", false).await;
        assert_eq!(std::fs::read_to_string(&rendered).unwrap(), "good");
    }

    #[tokio::test]
    async fn parameters_show_the_config_the_node_runs() {
        use crate::msg::rcl_interfaces::ParameterValue;
        let dir = tempfile::tempdir().unwrap();
        let mut host = host(dir.path());
        let parameters = host.parameters.subscribe();
        let word = |p: &watch::Receiver<Parameters>| p.borrow().get("word").cloned();
        assert_eq!(word(&parameters), None, "unconfigured: no config to show");
        assert!(parameters.borrow().get("use_sim_time").is_some());

        std::fs::write(&host.paths.config, "word = \"good\"\n").unwrap();
        assert_eq!(host.on_configure().await, CallbackResult::Success);
        assert_eq!(word(&parameters), Some(ParameterValue::string("good")));

        // A config the checker refuses changes nothing shown.
        std::fs::write(&host.paths.config, "word = \"bad\"\n").unwrap();
        assert_eq!(host.on_configure().await, CallbackResult::Failure);
        assert_eq!(word(&parameters), Some(ParameterValue::string("good")));

        assert_eq!(host.on_cleanup().await, CallbackResult::Success);
        assert_eq!(word(&parameters), None);
    }

    #[tokio::test]
    async fn unchanged_files_are_not_rewritten() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let mut host = host(dir.path());
        let rendered = dir.path().join("run/daemon.conf");
        std::fs::write(&host.paths.config, "word = \"good\"\n").unwrap();
        host.load_and_render().await.unwrap();
        let inode = std::fs::metadata(&rendered).unwrap().ino();
        host.load_and_render().await.unwrap();
        assert_eq!(std::fs::metadata(&rendered).unwrap().ino(), inode);
        std::fs::write(&host.paths.config, "word = \"good again\"\n").unwrap();
        host.load_and_render().await.unwrap();
        assert_ne!(std::fs::metadata(&rendered).unwrap().ino(), inode);
    }

    #[tokio::test]
    async fn a_live_refusal_rolls_the_files_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut host = host(dir.path());
        let rendered = dir.path().join("run/daemon.conf");
        std::fs::write(&host.paths.config, "word = \"good\"\n").unwrap();
        assert_eq!(host.on_configure().await, CallbackResult::Success);
        host.start_all().await.unwrap();

        host.take_input(0, "/picky/word", "live:-ok", true).await;
        assert_eq!(std::fs::read_to_string(&rendered).unwrap(), "good-ok");
        host.take_input(0, "/picky/word", "live:refuse", true).await;
        assert_eq!(
            std::fs::read_to_string(&rendered).unwrap(),
            "good-ok",
            "files the daemon refused live are rolled back"
        );
        host.stop_all().await;
    }
}

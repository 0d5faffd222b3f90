//! ntari-vpn: the hub's WireGuard interface behind the
//! `/ntari/ntari_vpn_node` lifecycle node.
//!
//! The tunnel is boringtun (built in, run as its own supervised process),
//! wireguard-go, or the kernel's WireGuard (no process: set up and torn
//! down over netlink). Each is configured the way `wg(8)` configures it, so
//! `wg show <interface>` works on the node's interface. Peers change live;
//! anything else restarts the tunnel. `/ntari/vpn/peers` carries the peer
//! table (libs/ntari-schemas `peers`). More peers can come from drop-in
//! files other services write (`peer_files`, [`dropin`]).

pub mod config;
pub mod device;
pub mod dropin;
pub mod relay;
pub mod render;
pub mod stats;
pub mod tunnel;

use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use ntari_node::service::{
    Command, ConfigIssue, DaemonSpec, MetricDesc, Output, Paths, ProbeReport, Publication, Reload,
    RenderedFile, Service,
};
use ntari_schemas::peers::{PeerTable, TOPIC};

use crate::config::{Backend, VpnConfig};

/// How long a new tunnel process may take to open its control socket.
const TUNNEL_START_TIMEOUT: Duration = Duration::from_secs(10);

/// The service. Keeps the last peer table the probe read, to publish it
/// when it changes.
#[derive(Debug, Default)]
pub struct Vpn {
    /// Set by the probe (which only has `&self`), read by `refresh`.
    last_table: Mutex<Option<PeerTable>>,
    /// The config the device was last given (drop-in peers included), so
    /// a live change touches only the peers that changed.
    applied: Mutex<Option<VpnConfig>>,
    /// The drop-in peer files and what they give.
    dropins: Mutex<dropin::Watch>,
    /// The peers this hub forwards between, as last applied, and why the
    /// relay could not be set up (for warnings).
    relay: Mutex<(Vec<relay::Member>, Option<String>)>,
    published: Option<PeerTable>,
}

impl Vpn {
    fn private_key(config: &VpnConfig, paths: &Paths) -> Result<wireguard_control::Key, String> {
        config::read_key_file(&config.private_key_path(paths))
    }

    /// Key, port, peers (drop-in ones too: a new tunnel process must not
    /// lose them), then addresses, MTU and routes.
    async fn configure_device(
        &self,
        config: &VpnConfig,
        backend: Backend,
        paths: &Paths,
    ) -> Result<(), String> {
        let key = Self::private_key(config, paths)?;
        if let Ok(mut watch) = self.dropins.lock() {
            watch.set_own_key(key.get_public().to_base64());
        }
        let effective = self.with_dropins(config);
        for update in render::full(&effective, key, paths)? {
            device::apply(&config.interface, backend, update).await?;
        }
        self.remember_applied(&effective);
        device::configure_link(&effective).await?;
        // A new interface has forwarding off: set the relay up again.
        if let Ok(mut r) = self.relay.lock() {
            r.0.clear();
        }
        self.sync_relay(&config.interface).await;
        Ok(())
    }

    /// Forwarding between the peers a drop-in file lists for relaying; a
    /// failure is a warning (the tunnels themselves still work).
    async fn sync_relay(&self, iface: &str) {
        let members = match self.dropins.lock() {
            Ok(watch) => watch.relay_members(),
            Err(_) => return,
        };
        let unchanged = self
            .relay
            .lock()
            .is_ok_and(|r| r.0 == members && r.1.is_none());
        if unchanged {
            return;
        }
        let error = match relay::apply(iface, &members).await {
            Ok(()) => {
                let names: Vec<&str> = members.iter().map(|(n, _)| n.as_str()).collect();
                tracing::info!(members = ?names, "relay between peers set");
                None
            }
            Err(e) => {
                tracing::error!("cannot relay between peers: {e}");
                Some(format!(
                    "relay between {} peers not set up: {e}",
                    members.len()
                ))
            }
        };
        if let Ok(mut r) = self.relay.lock() {
            *r = (members, error);
        }
    }

    /// `config` plus the drop-in peers in effect now.
    fn with_dropins(&self, config: &VpnConfig) -> VpnConfig {
        match self.dropins.lock() {
            Ok(mut watch) => watch.effective(config, SystemTime::now()),
            Err(_) => config.clone(),
        }
    }

    fn remember_applied(&self, config: &VpnConfig) {
        if let Ok(mut applied) = self.applied.lock() {
            *applied = Some(config.clone());
        }
    }
}

impl Service for Vpn {
    type Config = VpnConfig;

    const NAME: &'static str = "vpn";
    const DAEMON: &'static str = "WireGuard";
    const METRICS_PORT: u16 = 9704;

    /// The config's own checks, and that no peer has the hub's own key
    /// when the key exists already.
    fn validate(&self, config: &VpnConfig) -> Result<(), ConfigIssue> {
        config.validate()?;
        if config.backend == Backend::WireguardGo && !on_path("wireguard-go") {
            return Err(ConfigIssue::new(
                "backend",
                "wireguard-go is not installed (apt/apk install wireguard-go), or use \"boringtun\"",
            ));
        }
        if config.backend == Backend::Kernel && !config::kernel_has_wireguard() {
            return Err(ConfigIssue::new(
                "backend",
                "this kernel has no WireGuard module loaded (`modprobe wireguard`); use \"auto\" or \"boringtun\"",
            ));
        }
        Ok(())
    }

    /// Creates the private key on first configure; checks it against the peers.
    fn prepare(&self, config: &VpnConfig, paths: &Paths) -> Result<(), ConfigIssue> {
        let path = config.private_key_path(paths);
        let (key, created) = config::load_or_create_private_key(&path)
            .map_err(|e| ConfigIssue::new("private_key_file", e))?;
        let public = key.get_public();
        if created {
            tracing::info!(path = %path.display(), public_key = %public.to_base64(), "created the hub's WireGuard key; give peers the public key");
        }
        config.check_own_key(&public)
    }

    /// Nothing: WireGuard takes its config over UAPI or netlink.
    fn render(&self, _config: &VpnConfig, _paths: &Paths) -> Vec<RenderedFile> {
        Vec::new()
    }

    fn check_command(&self, _config: &VpnConfig, _paths: &Paths) -> Option<Command> {
        None
    }

    /// boringtun (this binary) or `wireguard-go -f`; none for the kernel.
    /// A control socket a killed tunnel left would confuse `wg`: stale.
    fn daemons(&self, config: &VpnConfig, _paths: &Paths) -> Vec<DaemonSpec> {
        let iface = config.interface.clone();
        let socket = device::uapi_socket(&iface);
        match config.backend.resolve() {
            Backend::Kernel | Backend::Auto => Vec::new(),
            Backend::Boringtun => {
                let program = ntari_node::supervisor::own_binary().display().to_string();
                let command = Command::new(program, [tunnel::TUNNEL_ARG.to_string(), iface]);
                vec![DaemonSpec::new("boringtun", command).with_stale_file(socket)]
            }
            Backend::WireguardGo => {
                let command = Command::new("wireguard-go", ["-f".to_string(), iface])
                    .with_env("LOG_LEVEL", "error");
                vec![DaemonSpec::new("wireguard-go", command).with_stale_file(socket)]
            }
        }
    }

    /// Records the interface for a later tear-down; the kernel backend
    /// creates and configures its interface here.
    async fn set_up(&self, config: &VpnConfig, paths: &Paths) -> Result<(), String> {
        let backend = config.backend.resolve();
        let record = format!("{} {}\n", config.interface, backend.label());
        ntari_node::fsutil::write_atomic(
            &render::interface_record(paths),
            record.as_bytes(),
            0o644,
        )
        .map_err(|e| {
            format!(
                "cannot record the interface in {}: {e}",
                paths.run_dir.display()
            )
        })?;
        if backend == Backend::Kernel {
            device::create_kernel_interface(&config.interface).await?;
            self.configure_device(config, backend, paths).await?;
        }
        Ok(())
    }

    /// A new tunnel process: wait for its socket, then configure it all.
    async fn daemon_started(
        &mut self,
        _daemon: &str,
        config: &VpnConfig,
        paths: &Paths,
    ) -> Result<(), String> {
        device::wait_for_socket(&config.interface, TUNNEL_START_TIMEOUT).await?;
        self.configure_device(config, config.backend.resolve(), paths)
            .await
    }

    /// Removes what the recorded interface left: a kernel interface, a
    /// userspace one still there, a stale control socket.
    async fn tear_down(&self, _config: Option<&VpnConfig>, paths: &Paths) {
        let record_path = render::interface_record(paths);
        let Some((iface, backend)) = render::read_interface_record(&record_path) else {
            return;
        };
        if backend == Backend::Kernel.label() {
            if let Err(e) = device::delete_kernel_interface(&iface).await {
                tracing::warn!(interface = %iface, error = %e, "could not delete the interface");
            }
        } else {
            remove_dead_socket(&device::uapi_socket(&iface));
        }
        if let Err(e) = relay::remove(&iface).await {
            tracing::warn!(interface = %iface, error = %e, "could not remove the relay");
        }
        let _ = std::fs::remove_file(record_path);
    }

    fn metrics(&self) -> &'static [MetricDesc] {
        stats::METRICS
    }

    /// A device dump (UAPI `get=1` / netlink): the interface must exist and
    /// answer.
    async fn probe(&self, config: &VpnConfig, _paths: &Paths) -> Result<ProbeReport, String> {
        let backend = config.backend.resolve();
        if !device::interface_exists(&config.interface) {
            return Err(format!("interface {} does not exist", config.interface));
        }
        let dump = device::get(&config.interface, backend).await?;
        // The device knows its own public key: no key file read per probe.
        let own = dump.public_key.as_ref().map(|k| k.to_base64());
        // Named from what the device was given, drop-in peers included.
        let applied = self.applied.lock().ok().and_then(|a| a.clone());
        let named = applied.as_ref().unwrap_or(config);
        let table = stats::table(named, own, &dump, SystemTime::now());
        let mut report = stats::report(&table, backend.label());
        if let Ok(watch) = self.dropins.lock() {
            report.warnings.extend(watch.warnings());
            if !config.peer_files.is_empty() {
                report.detail.insert("peer_files".into(), watch.detail());
            }
        }
        let (members, relay_error) = self.relay.lock().map(|r| r.clone()).unwrap_or_default();
        report.warnings.extend(relay_error);
        if !members.is_empty() {
            if let Some(bytes) = relay::counters(&config.interface, &members).await {
                report.detail.insert("relay".into(), relay::detail(&bytes));
            }
        }
        if let Ok(mut last) = self.last_table.lock() {
            *last = Some(table);
        }
        Ok(report)
    }

    /// Peers change live; the interface itself (name, backend, addresses,
    /// port, MTU, key) only with a new tunnel.
    fn reload(&self, old: &VpnConfig, new: &VpnConfig) -> Reload {
        let without_peers = |c: &VpnConfig| VpnConfig {
            peers: Vec::new(),
            peer_files: Vec::new(),
            ..c.clone()
        };
        if without_peers(old) == without_peers(new) {
            Reload::Live
        } else {
            Reload::Restart
        }
    }

    /// A drop-in file changed or one of its peers expired: the peers are
    /// applied live.
    fn on_tick(&mut self, now: SystemTime) -> Option<Reload> {
        let watch = self.dropins.get_mut().ok()?;
        watch.tick(now).then_some(Reload::Live)
    }

    /// Sets the configured and drop-in peers and removes the others, then
    /// the routes; peers that stay keep their sessions.
    async fn apply_live(&self, config: &VpnConfig, paths: &Paths) -> Result<(), String> {
        let config = &self.with_dropins(config);
        let backend = config.backend.resolve();
        let current = device::get(&config.interface, backend).await?;
        let keys: Vec<_> = current
            .peers
            .iter()
            .map(|p| p.config.public_key.clone())
            .collect();
        let applied = self.applied.lock().ok().and_then(|a| a.clone());
        for update in render::peer_changes(applied.as_ref(), config, &keys, paths)? {
            device::apply(&config.interface, backend, update).await?;
        }
        self.remember_applied(config);
        device::sync_routes(config).await?;
        self.sync_relay(&config.interface).await;
        tracing::info!(peers = config.peers.len(), "peers applied live");
        Ok(())
    }

    fn outputs(&self) -> &'static [Output] {
        &[Output {
            topic: TOPIC,
            latched: true,
        }]
    }

    /// The peer table the last probe read, when it changed.
    async fn refresh(&mut self, _config: &VpnConfig, _paths: &Paths) -> Vec<Publication> {
        let latest = self.last_table.lock().ok().and_then(|t| t.clone());
        match latest {
            Some(table) if stats::changed(self.published.as_ref(), &table) => {
                let json = table.to_json();
                self.published = Some(table);
                vec![Publication { topic: TOPIC, json }]
            }
            _ => Vec::new(),
        }
    }
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// Removes a control socket nobody answers on.
fn remove_dead_socket(socket: &Path) {
    if socket.exists() && std::os::unix::net::UnixStream::connect(socket).is_err() {
        match std::fs::remove_file(socket) {
            Ok(()) => {
                tracing::info!(path = %socket.display(), "removed the control socket of a tunnel that is gone")
            }
            Err(e) => {
                tracing::warn!(path = %socket.display(), error = %e, "could not remove a stale control socket")
            }
        }
    }
}

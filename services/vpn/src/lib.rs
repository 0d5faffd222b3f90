//! ntari-vpn: the hub's WireGuard interface behind the
//! `/ntari/ntari_vpn_node` lifecycle node.
//!
//! The tunnel is boringtun (built in, run as its own supervised process),
//! wireguard-go, or the kernel's WireGuard (no process: set up and torn
//! down over netlink). Each is configured the way `wg(8)` configures it, so
//! `wg show <interface>` works on the node's interface. Peers change live;
//! anything else restarts the tunnel. `/ntari/vpn/peers` carries the peer
//! table (libs/ntari-schemas `peers`).

pub mod config;
pub mod device;
pub mod render;
pub mod stats;
pub mod tunnel;

use std::path::{Path, PathBuf};
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
    /// The config the device was last given, so a live change touches
    /// only the peers that changed.
    applied: Mutex<Option<VpnConfig>>,
    published: Option<PeerTable>,
}

impl Vpn {
    fn private_key(config: &VpnConfig, paths: &Paths) -> Result<wireguard_control::Key, String> {
        config::read_key_file(&config.private_key_path(paths))
    }

    /// Key, port, peers, then addresses, MTU and routes.
    async fn configure_device(
        &self,
        config: &VpnConfig,
        backend: Backend,
        paths: &Paths,
    ) -> Result<(), String> {
        for update in render::full(config, Self::private_key(config, paths)?, paths)? {
            device::apply(&config.interface, backend, update).await?;
        }
        self.remember_applied(config);
        device::configure_link(config).await
    }

    fn remember_applied(&self, config: &VpnConfig) {
        if let Ok(mut applied) = self.applied.lock() {
            *applied = Some(config.clone());
        }
    }
}

/// This binary, which runs the boringtun tunnel with [`tunnel::TUNNEL_ARG`].
fn own_binary() -> PathBuf {
    let path = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("/proc/self/exe"));
    ntari_node::supervisor::running_binary(&path).to_path_buf()
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
                let program = own_binary().display().to_string();
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
        let table = stats::table(config, own, &dump, SystemTime::now());
        let report = stats::report(&table, backend.label());
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
            ..c.clone()
        };
        if without_peers(old) == without_peers(new) {
            Reload::Live
        } else {
            Reload::Restart
        }
    }

    /// Sets the configured peers and removes the others, then the routes;
    /// peers that stay keep their sessions.
    async fn apply_live(&self, config: &VpnConfig, paths: &Paths) -> Result<(), String> {
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

//! ntari-federation: the bridge between cooperatives, behind the
//! `/ntari/ntari_federation_node` lifecycle node.
//!
//! The node supervises one daemon of its own, the bridge
//! ([`bridge`], this binary run as `ntari-federation __bridge`), which
//! does the DDS work on Cyclone itself: a participant per agreement on a
//! federation domain bound to ntari-vpn's WireGuard interface. The
//! agreements ([`agreement`], co-signed YAML in `/etc/ntari/federation`)
//! are the one source of truth: routes, proxy nodes and the partner's
//! WireGuard peer (`wireguard-peers.json`, which ntari-vpn reads) all come
//! from them and go with them. See docs/services/federation.md.

pub mod agreement;
pub mod audit;
pub mod bridge;
pub mod config;
pub mod invite;
pub mod join;
pub mod render;
pub mod stats;
pub mod trust;

use std::time::SystemTime;

use ntari_node::service::{
    Command, ConfigIssue, DaemonSpec, MetricDesc, Paths, ProbeReport, RenderedFile, Service,
};

use crate::config::FederationConfig;

/// The service.
#[derive(Debug, Default)]
pub struct Federation;

fn bridge_command(paths: &Paths, check: bool) -> Command {
    let program = ntari_node::supervisor::own_binary().display().to_string();
    let plan = paths.run_dir.join(render::PLAN_FILE).display().to_string();
    let mut args = vec![bridge::BRIDGE_ARG.to_string()];
    if check {
        args.push("--check".into());
    }
    args.push(plan);
    Command::new(program, args)
}

impl Service for Federation {
    type Config = FederationConfig;

    const NAME: &'static str = "federation";
    const DAEMON: &'static str = "the ntari-federation bridge (Cyclone DDS)";
    const METRICS_PORT: u16 = 9707;

    fn validate(&self, config: &FederationConfig) -> Result<(), ConfigIssue> {
        config.validate()
    }

    /// The directory where partners' revocations are kept.
    fn prepare(&self, _config: &FederationConfig, paths: &Paths) -> Result<(), ConfigIssue> {
        let dir = paths.state_dir.join("revocations");
        std::fs::create_dir_all(&dir).map_err(|e| {
            ConfigIssue::new("state_dir", format!("cannot create {}: {e}", dir.display()))
        })
    }

    fn render(&self, config: &FederationConfig, paths: &Paths) -> Vec<RenderedFile> {
        render::render(config, paths)
    }

    fn check_command(&self, _config: &FederationConfig, paths: &Paths) -> Option<Command> {
        Some(bridge_command(paths, true))
    }

    fn daemons(&self, _config: &FederationConfig, paths: &Paths) -> Vec<DaemonSpec> {
        vec![DaemonSpec::new("bridge", bridge_command(paths, false))]
    }

    /// What a killed bridge leaves: ntari-vpn must not keep the partners'
    /// peers of a bridge that is gone, nor the probe read its last state.
    async fn tear_down(&self, _config: Option<&FederationConfig>, paths: &Paths) {
        for name in [render::WIREGUARD_PEERS_FILE, render::STATE_FILE] {
            match std::fs::remove_file(paths.run_dir.join(name)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => tracing::warn!(file = name, error = %e, "cannot remove"),
            }
        }
    }

    fn metrics(&self) -> &'static [MetricDesc] {
        stats::METRICS
    }

    async fn probe(
        &self,
        _config: &FederationConfig,
        paths: &Paths,
    ) -> Result<ProbeReport, String> {
        stats::probe(&paths.run_dir.join(render::STATE_FILE), SystemTime::now())
    }
}

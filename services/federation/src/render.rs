//! What the node hands its bridge process: `<run>/bridge.json`, the
//! service config plus the node's paths, written atomically by the runtime
//! at configure. The bridge reads nothing else at start.

use std::path::{Path, PathBuf};

use ntari_node::service::{Paths, RenderedFile};
use serde::{Deserialize, Serialize};

use crate::config::FederationConfig;

pub const PLAN_FILE: &str = "bridge.json";
/// Written by the bridge every second; the node's probe reads it.
pub const STATE_FILE: &str = "bridge-state.json";
/// The WireGuard peers of the agreements in force, for ntari-vpn's
/// `peer_files`.
pub const WIREGUARD_PEERS_FILE: &str = "wireguard-peers.json";

/// The bridge process's whole configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BridgePlan {
    pub version: u32,
    pub coop: String,
    pub agreements_dir: PathBuf,
    /// Revocations the partner sent over the link, saved by the bridge.
    pub revocations_dir: PathBuf,
    pub audit_log: PathBuf,
    pub interface: String,
    pub node_key: PathBuf,
    pub max_sample_bytes: usize,
    /// Seconds before an unseen partner's proxies go.
    pub partner_timeout: u64,
    pub wireguard_peers: PathBuf,
    pub state_file: PathBuf,
    /// Invites made by `ntari-admin federation invite`.
    pub invites_dir: PathBuf,
    /// Drafts from joins, awaiting `ntari-admin federation approve`.
    pub pending_dir: PathBuf,
    /// Trust lowered by `ntari-admin federation set-trust`.
    pub trust_dir: PathBuf,
    pub join_listen: std::net::SocketAddr,
}

impl BridgePlan {
    pub fn new(config: &FederationConfig, paths: &Paths) -> Self {
        BridgePlan {
            version: 1,
            coop: config.coop.clone(),
            agreements_dir: config.agreements_dir.clone(),
            revocations_dir: paths.state_dir.join("revocations"),
            audit_log: paths.state_dir.join("audit.log"),
            interface: config.interface.clone(),
            node_key: config.node_key.clone(),
            max_sample_bytes: config.max_sample_bytes,
            partner_timeout: config.partner_timeout,
            wireguard_peers: paths.run_dir.join(WIREGUARD_PEERS_FILE),
            state_file: paths.run_dir.join(STATE_FILE),
            invites_dir: crate::invite::invites_dir(&paths.state_dir),
            pending_dir: crate::invite::pending_dir(&paths.state_dir),
            trust_dir: crate::trust::trust_dir(&paths.state_dir),
            join_listen: config.join_listen,
        }
    }

    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
        let plan: BridgePlan =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        if plan.version != 1 {
            return Err(format!(
                "{}: version {} is not one this bridge knows (1); install matching ntari-federation packages",
                path.display(),
                plan.version
            ));
        }
        Ok(plan)
    }
}

pub fn render(config: &FederationConfig, paths: &Paths) -> Vec<RenderedFile> {
    let plan = BridgePlan::new(config, paths);
    let contents = serde_json::to_string_pretty(&plan).unwrap_or_default() + "\n";
    vec![RenderedFile {
        name: PLAN_FILE.to_string(),
        contents,
        mode: 0o644,
    }]
}

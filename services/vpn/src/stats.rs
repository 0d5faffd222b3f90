//! What a device dump says: the peer table (`/ntari/vpn/peers`), status
//! detail, warnings for stale peers, and metrics named as
//! prometheus_wireguard_exporter names them.

use std::time::{SystemTime, UNIX_EPOCH};

use ntari_node::service::{MetricDesc, MetricSample, ProbeReport};
use ntari_schemas::peers::{self, Peer, PeerTable};
use serde_json::json;
use wireguard_control::Device;

use crate::config::VpnConfig;

const LABELS: &[&str] = &["interface", "public_key", "allowed_ips", "name"];

pub const METRICS: &[MetricDesc] = &[
    MetricDesc {
        name: "wireguard_sent_bytes_total",
        help: "Bytes sent to the peer",
        labels: LABELS,
    },
    MetricDesc {
        name: "wireguard_received_bytes_total",
        help: "Bytes received from the peer",
        labels: LABELS,
    },
    MetricDesc {
        name: "wireguard_latest_handshake_seconds",
        help: "Unix time of the peer's latest handshake (0: never)",
        labels: LABELS,
    },
];

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The peer table as of `now`. Peers are named from the config; one the
/// device has but the config does not (added by hand with `wg set`) is
/// listed as `(not in config)`.
pub fn table(
    config: &VpnConfig,
    own_public_key: Option<String>,
    device: &Device,
    now: SystemTime,
) -> PeerTable {
    let now = unix(now);
    let peers = device
        .peers
        .iter()
        .map(|p| {
            let key = p.config.public_key.to_base64();
            let name = config
                .peers
                .iter()
                .find(|c| c.public_key.trim() == key)
                .map_or_else(|| "(not in config)".to_string(), |c| c.name.clone());
            let latest = p.stats.last_handshake_time.map(unix).filter(|t| *t > 0);
            Peer {
                name,
                public_key: key,
                endpoint: p.config.endpoint.map(|e| e.to_string()),
                allowed_ips: p
                    .config
                    .allowed_ips
                    .iter()
                    .map(|a| format!("{}/{}", a.address, a.cidr))
                    .collect(),
                latest_handshake: latest,
                handshake_age_s: latest.map(|t| now.saturating_sub(t)),
                rx_bytes: p.stats.rx_bytes,
                tx_bytes: p.stats.tx_bytes,
                stale: Peer::is_stale(latest, now),
            }
        })
        .collect();
    PeerTable {
        version: peers::VERSION,
        interface: config.interface.clone(),
        public_key: own_public_key,
        listen_port: device.listen_port,
        as_of: now,
        peers,
    }
}

/// Status detail, warnings and metrics from a table.
pub fn report(table: &PeerTable, backend: &str) -> ProbeReport {
    let mut report = ProbeReport::default();
    let detail = &mut report.detail;
    detail.insert("interface".into(), json!(table.interface));
    detail.insert("backend".into(), json!(backend));
    detail.insert("public_key".into(), json!(table.public_key));
    detail.insert("listen_port".into(), json!(table.listen_port));
    detail.insert("peers_total".into(), json!(table.peers.len()));
    detail.insert(
        "peers_stale".into(),
        json!(table.peers.iter().filter(|p| p.stale).count()),
    );
    detail.insert(
        "peers".into(),
        json!(table
            .peers
            .iter()
            .map(|p| json!({
                "name": p.name,
                "public_key": p.public_key,
                "endpoint": p.endpoint,
                "handshake_age_s": p.handshake_age_s,
                "rx_bytes": p.rx_bytes,
                "tx_bytes": p.tx_bytes,
                "stale": p.stale,
            }))
            .collect::<Vec<_>>()),
    );
    for p in &table.peers {
        if p.stale {
            report.warnings.push(match p.handshake_age_s {
                Some(age) => format!("peer {} is stale: last handshake {age} s ago", p.name),
                None => format!("peer {} is stale: no handshake yet", p.name),
            });
        }
        let allowed = p.allowed_ips.join(",");
        let labels = [
            table.interface.as_str(),
            p.public_key.as_str(),
            allowed.as_str(),
            p.name.as_str(),
        ];
        report.metrics.extend([
            MetricSample::labelled("wireguard_sent_bytes_total", &labels, p.tx_bytes as f64),
            MetricSample::labelled("wireguard_received_bytes_total", &labels, p.rx_bytes as f64),
            MetricSample::labelled(
                "wireguard_latest_handshake_seconds",
                &labels,
                p.latest_handshake.unwrap_or(0) as f64,
            ),
        ]);
    }
    report
}

/// Whether `new` differs from `old` in more than counters and ages: what
/// makes a new `/ntari/vpn/peers` message worth sending.
pub fn changed(old: Option<&PeerTable>, new: &PeerTable) -> bool {
    let Some(old) = old else { return true };
    let key = |t: &PeerTable| {
        (
            t.public_key.clone(),
            t.listen_port,
            t.peers
                .iter()
                .map(|p| {
                    (
                        p.name.clone(),
                        p.public_key.clone(),
                        p.endpoint.clone(),
                        p.allowed_ips.clone(),
                        p.latest_handshake,
                        p.stale,
                    )
                })
                .collect::<Vec<_>>(),
        )
    };
    key(old) != key(new)
}

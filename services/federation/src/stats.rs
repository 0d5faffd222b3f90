//! The probe: the bridge's state file, written every second by its loop,
//! read back here. A file older than [`STALE_AFTER`] means the loop is
//! stuck, and the node unhealthy.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ntari_node::service::{MetricDesc, MetricSample, ProbeReport};
use serde::Deserialize;

pub const STALE_AFTER: Duration = Duration::from_secs(3);

pub const METRICS: &[MetricDesc] = &[
    MetricDesc {
        name: "ntari_federation_agreements",
        help: "Agreements in the agreements directory, by state (in_force, expired, revoked, tampered, ...)",
        labels: &["state"],
    },
    MetricDesc {
        name: "ntari_federation_partner_up",
        help: "1 while the partner's bridge is seen on the federation domain",
        labels: &["agreement", "partner"],
    },
    MetricDesc {
        name: "ntari_federation_routes",
        help: "Routes of an agreement: out = local writers exported, in = partner writers imported",
        labels: &["agreement", "direction"],
    },
    MetricDesc {
        name: "ntari_federation_samples_total",
        help: "Samples forwarded, by direction",
        labels: &["agreement", "direction"],
    },
    MetricDesc {
        name: "ntari_federation_dropped_total",
        help: "Samples or routes dropped: oversized, garbage (undecodable), rate (over max_rate_hz), unlisted (a route the agreement does not list)",
        labels: &["agreement", "reason"],
    },
];

#[derive(Debug, Deserialize)]
struct LinkState {
    state: String,
    partner_seen: bool,
    #[serde(default)]
    partner_last_seen_ms: Option<u64>,
    routes_out: usize,
    routes_in: usize,
    proxy_nodes: Vec<String>,
    samples_out: u64,
    samples_in: u64,
    dropped_oversized: u64,
    dropped_garbage: u64,
    dropped_rate: u64,
    refused_routes: u64,
    services: Vec<String>,
    requests: u64,
}

#[derive(Debug, Deserialize)]
struct AgreementState {
    id: String,
    file: String,
    partner: Option<String>,
    state: String,
    message: Option<String>,
    #[serde(default)]
    relayed_via: Option<String>,
    link: Option<LinkState>,
}

#[derive(Debug, Deserialize)]
struct BridgeState {
    version: u32,
    written_at_ms: u64,
    coop: String,
    did: Option<String>,
    agreements: Vec<AgreementState>,
    #[serde(default)]
    join: Option<JoinState>,
}

#[derive(Debug, Deserialize)]
struct JoinState {
    listening: bool,
    address: String,
    open_invites: usize,
    #[serde(default)]
    error: Option<String>,
}

pub fn probe(state_file: &Path, now: SystemTime) -> Result<ProbeReport, String> {
    let text = std::fs::read_to_string(state_file).map_err(|e| {
        format!(
            "the bridge has not reported yet ({}: {e})",
            state_file.display()
        )
    })?;
    let state: BridgeState = serde_json::from_str(&text)
        .map_err(|e| format!("{}: unreadable bridge state: {e}", state_file.display()))?;
    if state.version != 1 {
        return Err(format!(
            "{}: unknown state version {}",
            state_file.display(),
            state.version
        ));
    }
    let now_ms = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let age = Duration::from_millis(now_ms.saturating_sub(state.written_at_ms));
    if age > STALE_AFTER {
        return Err(format!(
            "the bridge's loop has not reported for {:.1} s: it is stuck or gone",
            age.as_secs_f64()
        ));
    }
    Ok(report(&state))
}

fn report(state: &BridgeState) -> ProbeReport {
    let mut report = ProbeReport::default();
    let mut by_state: std::collections::BTreeMap<&str, usize> = Default::default();
    let mut agreements = Vec::new();
    for a in &state.agreements {
        *by_state.entry(a.state.as_str()).or_default() += 1;
        if a.state != "in_force" {
            report.warnings.push(format!(
                "agreement {} ({}) is not used: {}",
                a.id,
                a.file,
                a.message.as_deref().unwrap_or(&a.state)
            ));
        }
        let mut entry = serde_json::json!({
            "id": a.id, "file": a.file, "partner": a.partner, "state": a.state, "message": a.message,
        });
        if let Some(hub) = &a.relayed_via {
            entry["relayed_via"] = hub.clone().into();
        }
        if let Some(link) = &a.link {
            if !link.state.starts_with("up") && link.state != "revoked" {
                report
                    .warnings
                    .push(format!("agreement {}: link {}", a.id, link.state));
            }
            let partner = a.partner.as_deref().unwrap_or("");
            report.metrics.push(MetricSample::labelled(
                "ntari_federation_partner_up",
                &[&a.id, partner],
                f64::from(u8::from(link.partner_seen)),
            ));
            for (direction, routes, samples) in [
                ("out", link.routes_out, link.samples_out),
                ("in", link.routes_in, link.samples_in),
            ] {
                report.metrics.push(MetricSample::labelled(
                    "ntari_federation_routes",
                    &[&a.id, direction],
                    routes as f64,
                ));
                report.metrics.push(MetricSample::labelled(
                    "ntari_federation_samples_total",
                    &[&a.id, direction],
                    samples as f64,
                ));
            }
            for (reason, n) in [
                ("oversized", link.dropped_oversized),
                ("garbage", link.dropped_garbage),
                ("rate", link.dropped_rate),
                ("unlisted", link.refused_routes),
            ] {
                report.metrics.push(MetricSample::labelled(
                    "ntari_federation_dropped_total",
                    &[&a.id, reason],
                    n as f64,
                ));
            }
            entry["link"] = serde_json::json!({
                "state": link.state, "partner_seen": link.partner_seen,
                "partner_last_seen_ms": link.partner_last_seen_ms,
                "routes_out": link.routes_out, "routes_in": link.routes_in,
                "proxy_nodes": link.proxy_nodes,
                "services": link.services, "requests": link.requests,
                "samples_out": link.samples_out, "samples_in": link.samples_in,
                "dropped": {"oversized": link.dropped_oversized, "garbage": link.dropped_garbage,
                            "rate": link.dropped_rate, "unlisted": link.refused_routes},
            });
        }
        agreements.push(entry);
    }
    for (s, n) in by_state {
        report.metrics.push(MetricSample::labelled(
            "ntari_federation_agreements",
            &[s],
            n as f64,
        ));
    }
    report
        .detail
        .insert("coop".into(), state.coop.clone().into());
    report.detail.insert("did".into(), state.did.clone().into());
    report.detail.insert("agreements".into(), agreements.into());
    if let Some(join) = &state.join {
        report.warnings.extend(join.error.clone());
        report.detail.insert(
            "join_endpoint".into(),
            serde_json::json!({"listening": join.listening, "address": join.address,
                "open_invites": join.open_invites}),
        );
    }
    report
}

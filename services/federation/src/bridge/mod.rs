//! The bridge process: `ntari-federation __bridge <run>/bridge.json`, run
//! and supervised by the node like any daemon (its own process group and
//! guard, restarted with backoff, gone with the node).
//!
//! Its one loop, once a second or at once when discovery has news or a
//! validity window opens or closes:
//! 1. takes what discovery learnt of the local graph (every writer, and
//!    which node owns it) and hands a snapshot to every link;
//! 2. re-checks the agreements when a file in the agreements or
//!    revocations directory changed, or a validity window opens or closes;
//! 3. makes the links match the agreements in force (a link per
//!    agreement, see [`link`]); a revoked agreement's link first tells
//!    the partner, then goes;
//! 4. writes `wireguard-peers.json` (for ntari-vpn) when the set of
//!    partners changes, and every second `bridge-state.json` (for the
//!    node's probe).
//!
//! Every decision goes into the hash-chained audit log.

mod audit;
mod enroll;
pub mod link;
pub mod local;
pub mod plan;
mod services;

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ntari_node::graph::{Context, GraphView};
use ntari_node::signing::NodeKey;
use ntari_schemas::federation::{agreement_signing_bytes, Agreement, Trust};
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, watch, Notify};

use crate::agreement::{self, AgreementError, Checked};
use crate::render::BridgePlan;
use crate::trust;
use audit::Audit;
use link::{Link, LinkSnapshot, PartnerDocument, RelayRoute, Shared};
use local::{LocalGraph, WriterTable};
use plan::LinkPlan;

/// The hidden first argument that makes the binary the bridge.
pub const BRIDGE_ARG: &str = "__bridge";

/// How often the loop runs with no news: it polls the agreement files
/// and writes the state file. Discovery, partners' revocations, a
/// validity window's edge and a revocation's delivery wake it at once.
const LOOP: Duration = Duration::from_secs(1);
const STATE_EVERY: Duration = Duration::from_secs(1);
/// Even with no file change, agreements are re-checked this often.
const RECHECK: Duration = Duration::from_secs(60);
/// A revoked agreement's link stays this long to deliver the revocation
/// (one round trip over the tunnel) before the peer and link go.
const REVOCATION_LINGER: Duration = Duration::from_millis(500);
/// ntari-vpn keeps a federation peer's NAT mapping open.
const PERSISTENT_KEEPALIVE: u16 = 25;

pub fn run(mut args: impl Iterator<Item = OsString>) -> ExitCode {
    ntari_node::runtime::init_logging("info");
    let (check_only, plan_path) = match (args.next(), args.next()) {
        (Some(flag), Some(path)) if flag == "--check" => (true, PathBuf::from(path)),
        (Some(path), None) => (false, PathBuf::from(path)),
        _ => {
            eprintln!("usage: ntari-federation {BRIDGE_ARG} [--check] <run dir>/bridge.json (started by the node itself)");
            return ExitCode::from(2);
        }
    };
    let plan = match BridgePlan::load(&plan_path) {
        Ok(plan) => plan,
        Err(e) => {
            eprintln!("ntari-federation bridge: {e}");
            return ExitCode::from(2);
        }
    };
    if check_only {
        return match check(&plan) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("ntari-federation: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ntari-federation bridge: cannot start its event loop: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(plan)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "the bridge stopped");
            ExitCode::FAILURE
        }
    }
}

/// What configure checks: the directories are usable. A bad agreement is
/// not a bad config: it is refused at run time and shown in status.
fn check(plan: &BridgePlan) -> Result<(), String> {
    if !plan.agreements_dir.is_dir() {
        return Err(format!(
            "agreements_dir {} is not a directory: create it (mode 0755) and put the co-signed agreements there",
            plan.agreements_dir.display()
        ));
    }
    std::fs::read_dir(&plan.agreements_dir)
        .map_err(|e| format!("agreements_dir {}: {e}", plan.agreements_dir.display()))?;
    // A missing key is fine here: the node creates its key on first start
    // (and the bridge refuses every agreement until it can read one). A key
    // that is there but unusable is a config error now.
    if !plan.node_key.exists() {
        return Ok(());
    }
    NodeKey::load(&plan.node_key).map_err(|e| {
        format!(
            "node_key {}: {e}; give this node's own key (the one `ntari-admin key show` reads), whose did:key the agreements name",
            plan.node_key.display()
        )
    })?;
    Ok(())
}

/// One agreement as the state file shows it.
#[derive(Debug, Clone, Serialize)]
struct AgreementReport {
    id: String,
    file: String,
    partner: Option<String>,
    /// `in_force`, or why not: `expired`, `revoked`, `tampered`, …
    state: String,
    message: Option<String>,
    /// The hub (coop) through which the partner is reached, if any.
    relayed_via: Option<String>,
    link: Option<LinkSnapshot>,
}

#[derive(Debug, Serialize)]
struct StateFile<'a> {
    version: u32,
    pid: u32,
    written_at_ms: u64,
    coop: &'a str,
    did: Option<&'a str>,
    agreements: Vec<AgreementReport>,
    join: JoinReport,
}

/// The join endpoint as the state file shows it.
#[derive(Debug, Serialize)]
struct JoinReport {
    listening: bool,
    address: String,
    open_invites: usize,
    error: Option<String>,
}

struct Bridge {
    plan: BridgePlan,
    did: Result<String, String>,
    shared: Arc<Shared>,
    graph_tx: watch::Sender<Arc<LocalGraph>>,
    /// The last check of every agreement file.
    checked: Vec<Checked>,
    /// Agreements in force, parsed, for verifying what the partner sends.
    in_force: HashMap<String, (Agreement, LinkPlan)>,
    /// Why an agreement that verified is still not used (not for this node).
    unusable: HashMap<String, String>,
    links: BTreeMap<String, Link>,
    /// Revoked links delivering their revocation, and when they go.
    lingering: Vec<(Link, Instant)>,
    fingerprint: Vec<(PathBuf, u64, u128)>,
    /// Agreements we signed that wait for the partner's signature: the
    /// bytes both signatures cover, which the partner's copy must match.
    awaiting: HashMap<String, Vec<u8>>,
    /// Trust we lowered with `set-trust`, by agreement.
    trust_caps: HashMap<String, Trust>,
    enrollment: enroll::Enrollment,
    /// From each hub we agreed relaying with (by agreement id): the other
    /// members it relays to.
    relay_routes: HashMap<String, Vec<RelayRoute>>,
    /// Agreements whose partner we reach through a hub: the hub's coop.
    relayed_via: HashMap<String, String>,
    /// On a hub: the peers ntari-vpn forwards between, as last written.
    relaying: Vec<String>,
    /// sha256 of each agreement file as last recorded in the audit log.
    seen: HashMap<String, String>,
    next_check: SystemTime,
    peers_written: Option<String>,
}

async fn serve(plan: BridgePlan) -> Result<(), String> {
    // First: a stop that comes while the graph is still being joined
    // still gets the orderly shutdown (links down, peers file emptied).
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| e.to_string())?;
    let key = NodeKey::load(&plan.node_key).map_err(|e| {
        format!(
            "cannot read this node's key {}: {e}",
            plan.node_key.display()
        )
    });
    let did = key
        .as_ref()
        .map(|k| k.did().to_string())
        .map_err(Clone::clone);
    if let Err(e) = &did {
        tracing::error!("{e}; every agreement is refused until it can be read");
    }
    let context =
        Context::from_env().map_err(|e| format!("cannot join the local ROS 2 domain: {e}"))?;
    let bridge_node = context
        .create_node("/ntari", "ntari_federation_bridge")
        .map_err(|e| e.to_string())?;
    let discovery = Arc::new(Notify::new());
    let watcher = context
        .watch_publications(discovery.clone())
        .map_err(|e| e.to_string())?;
    let mut view = GraphView::new(&context).map_err(|e| e.to_string())?;
    let audit_log = crate::audit::AuditLog::open(&plan.audit_log)
        .map_err(|e| tracing::error!(path = %plan.audit_log.display(), error = %e, "cannot open the audit log; nothing is recorded until it can be"))
        .ok();
    let (documents_tx, mut documents_rx) = mpsc::unbounded_channel();
    let shared = Arc::new(Shared {
        context: context.clone(),
        bridge_node,
        audit: Audit::new(audit_log),
        interface: plan.interface.clone(),
        max_sample_bytes: plan.max_sample_bytes,
        partner_timeout: Duration::from_secs(plan.partner_timeout),
        partner_documents: documents_tx,
    });
    shared.audit.record(
        "bridge_started",
        serde_json::json!({"coop": plan.coop, "did": did.as_ref().ok(), "pid": std::process::id()}),
    );
    let (graph_tx, _) = watch::channel(Arc::new(LocalGraph::default()));
    let enrollment = enroll::Enrollment::new(&plan, key.ok(), shared.audit.clone());
    let mut bridge = Bridge {
        plan,
        did,
        shared,
        graph_tx,
        checked: Vec::new(),
        in_force: HashMap::new(),
        unusable: HashMap::new(),
        links: BTreeMap::new(),
        lingering: Vec::new(),
        fingerprint: Vec::new(),
        awaiting: HashMap::new(),
        trust_caps: HashMap::new(),
        enrollment,
        relay_routes: HashMap::new(),
        relayed_via: HashMap::new(),
        relaying: Vec::new(),
        seen: HashMap::new(),
        next_check: SystemTime::now(),
        peers_written: None,
    };
    let mut writers = WriterTable::default();
    let mut last_state = Instant::now() - STATE_EVERY;
    let mut tick = tokio::time::interval(LOOP);
    loop {
        let changed = writers.apply(watcher.take());
        let snapshot = writers.snapshot(&mut view);
        if changed || **bridge.graph_tx.borrow() != snapshot {
            bridge.graph_tx.send_replace(Arc::new(snapshot));
        }
        bridge.check_agreements();
        bridge.reconcile().await;
        bridge.enrollment.reconcile(SystemTime::now());
        if last_state.elapsed() >= STATE_EVERY {
            bridge.write_state();
            last_state = Instant::now();
        }
        tokio::select! {
            _ = tick.tick() => {}
            _ = tokio::time::sleep(bridge.until_next_deadline()) => {}
            _ = discovery.notified() => {}
            _ = view.changed(LOOP) => {}
            Some((id, document)) = documents_rx.recv() => match document {
                PartnerDocument::Revocation(bytes) => bridge.partner_revoked(&id, &bytes),
                PartnerDocument::Agreement(text) => bridge.partner_approved(&id, &text),
                PartnerDocument::Relay(routes) => {
                    if bridge.relay_routes.get(&id) != Some(&routes) {
                        bridge.shared.audit.record("relay_routes_received", serde_json::json!({
                            "agreement": id, "members": routes.iter().map(|r| &r.coop).collect::<Vec<_>>()}));
                        bridge.relay_routes.insert(id, routes);
                    }
                }
            },
            _ = terminate.recv() => break,
        }
    }
    for (_, link) in std::mem::take(&mut bridge.links) {
        link.stop().await;
    }
    bridge.write_peers(&[]);
    Ok(())
}

/// Names, sizes and mtimes of the files a check reads.
fn fingerprint(dirs: &[&Path]) -> Vec<(PathBuf, u64, u128)> {
    let mut out = Vec::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for entry in entries.flatten() {
            if let Ok(meta) = entry.metadata() {
                let mtime = meta
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_nanos());
                out.push((entry.path(), meta.len(), mtime));
            }
        }
    }
    out.sort();
    out
}

fn kind_of(verdict: &Result<Agreement, agreement::AgreementError>) -> &'static str {
    match verdict {
        Ok(_) => "in_force",
        Err(e) => e.kind(),
    }
}

impl Bridge {
    /// Time until a validity window's edge or a revocation's delivery is
    /// over, so expiry takes effect on time rather than at the next tick.
    fn until_next_deadline(&self) -> Duration {
        let window = self
            .next_check
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO);
        let linger = self
            .lingering
            .iter()
            .map(|(_, until)| until.saturating_duration_since(Instant::now()))
            .min()
            .unwrap_or(LOOP);
        // A moment past the edge, so the check sees the new side of it.
        window.min(linger).min(LOOP) + Duration::from_millis(5)
    }

    fn check_agreements(&mut self) {
        let now = SystemTime::now();
        let fingerprint = fingerprint(&[
            &self.plan.agreements_dir,
            &self.plan.revocations_dir,
            &self.plan.trust_dir,
        ]);
        if fingerprint == self.fingerprint && now < self.next_check {
            return;
        }
        let files_changed = fingerprint != self.fingerprint;
        self.fingerprint = fingerprint;
        let checked = agreement::check_dir(
            &self.plan.agreements_dir,
            std::slice::from_ref(&self.plan.revocations_dir),
            now,
        );
        // Joins' drafts: missing only the partner's signature, ours valid.
        let mut drafts: HashMap<String, (Agreement, Vec<u8>)> = checked
            .iter()
            .filter(|c| matches!(&c.verdict, Err(AgreementError::MissingSignature { coop, .. }) if *coop != self.plan.coop))
            .filter_map(|c| Some((c.id.clone(), self.signed_by_us_only(&c.path, now)?)))
            .collect();
        let mut next = now + RECHECK;
        for c in &checked {
            if files_changed {
                self.audit_seen(c);
            }
            let before = self.checked.iter().find(|b| b.id == c.id);
            let changed = before.is_none_or(|b| kind_of(&b.verdict) != kind_of(&c.verdict));
            if changed || files_changed && before.is_none() {
                self.audit_verdict(c, drafts.contains_key(&c.id));
            }
            match &c.verdict {
                Ok(a) => next = next.min(a.not_after()),
                Err(agreement::AgreementError::NotYetValid { until, .. }) => {
                    if let Ok(t) = humantime::parse_rfc3339_weak(until) {
                        next = next.min(t);
                    }
                }
                Err(_) => {}
            }
        }
        self.next_check = next;
        self.in_force.clear();
        self.unusable.clear();
        self.awaiting.clear();
        if let Ok(did) = &self.did {
            let (caps, ignored) = trust::load(&self.plan.trust_dir, did);
            for why in ignored {
                tracing::warn!("trust file ignored: {why}");
            }
            self.trust_caps = caps;
        }
        for c in &checked {
            let (agreement, text, awaiting) = match &c.verdict {
                Ok(agreement) => (
                    agreement.clone(),
                    std::fs::read_to_string(&c.path).ok(),
                    false,
                ),
                Err(_) => match drafts.remove(&c.id) {
                    Some((agreement, signed)) => {
                        self.awaiting.insert(c.id.clone(), signed);
                        (agreement, None, true)
                    }
                    None => continue,
                },
            };
            let cap = self
                .trust_caps
                .get(&c.id)
                .copied()
                .unwrap_or(Trust::Trusted);
            match self
                .did
                .clone()
                .and_then(|did| plan::from_agreement(&agreement, &self.plan.coop, &did))
            {
                Ok(mut link_plan) => {
                    link_plan.document = text;
                    link_plan = link_plan.with_grant_at_most(cap);
                    if awaiting {
                        link_plan = link_plan.awaiting();
                    }
                    self.in_force.insert(c.id.clone(), (agreement, link_plan));
                }
                Err(e) => {
                    self.awaiting.remove(&c.id);
                    self.unusable.insert(c.id.clone(), e);
                }
            }
        }
        self.checked = checked;
    }

    /// The agreement in `path` if its one signature is ours, valid, and it
    /// is in its window: a draft from a join, awaiting the partner. With it,
    /// the bytes the signatures cover.
    fn signed_by_us_only(&self, path: &Path, now: SystemTime) -> Option<(Agreement, Vec<u8>)> {
        let did = self.did.as_ref().ok()?;
        let text = std::fs::read_to_string(path).ok()?;
        let agreement = Agreement::parse(&text).ok()?;
        let report = agreement::signature_report(&text, &agreement);
        let ours_valid = report
            .iter()
            .any(|(entry, ok)| entry.did == *did && *ok == Some(true));
        if !ours_valid || report.len() != 1 || !agreement.in_window(now) {
            return None;
        }
        let signed = agreement_signing_bytes(&text).ok()?;
        Some((agreement, signed))
    }

    /// The partner sent the co-signed text of an agreement we wait on:
    /// if it is exactly what we signed, and in force, it replaces our
    /// draft (atomically) and the link comes up in full.
    fn partner_approved(&mut self, id: &str, text: &str) {
        let Some(ours) = self.awaiting.get(id) else {
            return;
        };
        let verdict =
            agreement::verify_signed(text.as_bytes(), "the partner's copy").and_then(|a| {
                if agreement_signing_bytes(text).ok().as_ref() != Some(ours) {
                    Err(AgreementError::Tampered {
                        file: "the partner's copy".into(),
                        did: a
                            .other_party(&self.plan.coop)
                            .map(|p| p.did.clone())
                            .unwrap_or_default(),
                    })
                } else {
                    Ok(a)
                }
            });
        match verdict {
            Ok(agreement) if agreement.id == id => {
                let path = self.plan.agreements_dir.join(format!("{id}.yaml"));
                match ntari_node::fsutil::write_atomic(&path, text.as_bytes(), 0o644) {
                    Ok(()) => {
                        tracing::info!(agreement = id, "the partner approved the agreement");
                        self.shared.audit.record(
                            "agreement_approved_by_partner",
                            serde_json::json!({"agreement": id, "file": path.display().to_string()}),
                        );
                        self.next_check = SystemTime::now();
                        self.fingerprint.clear();
                    }
                    Err(e) => {
                        tracing::error!(agreement = id, file = %path.display(), error = %e, "cannot save the co-signed agreement")
                    }
                }
            }
            Ok(_) | Err(_) => {
                tracing::warn!(agreement = id, "ignored the partner's copy of the agreement: not the text we signed, co-signed");
                self.shared.audit.record(
                    "partner_agreement_refused",
                    serde_json::json!({"agreement": id}),
                );
            }
        }
    }

    /// `agreement_seen` for a file that is new or changed since the last
    /// check, with the sha256 of its bytes (what exactly was read).
    fn audit_seen(&mut self, c: &Checked) {
        let Ok(bytes) = std::fs::read(&c.path) else {
            return;
        };
        let digest: String = Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        if self.seen.get(&c.id) == Some(&digest) {
            return;
        }
        self.shared.audit.record(
            "agreement_seen",
            serde_json::json!({"agreement": c.id, "file": c.path.display().to_string(), "sha256": digest}),
        );
        self.seen.insert(c.id.clone(), digest);
    }

    /// `draft`: a join's draft signed by us alone, awaiting the partner.
    fn audit_verdict(&self, c: &Checked, draft: bool) {
        let file = c.path.display().to_string();
        match &c.verdict {
            Ok(a) => {
                self.shared.audit.record(
                    "signatures_checked",
                    serde_json::json!({"agreement": c.id, "file": file, "ok": true}),
                );
                self.shared.audit.record(
                    "agreement_in_force",
                    serde_json::json!({"agreement": c.id, "version": a.version, "file": file}),
                );
            }
            Err(e) => {
                let event = match e.kind() {
                    _ if draft => "agreement_awaiting_partner",
                    "expired" => "agreement_expired",
                    "revoked" => "revoked",
                    _ => "agreement_refused",
                };
                self.shared.audit.record(
                    event,
                    serde_json::json!({"agreement": c.id, "file": file, "reason": e.kind(), "message": e.to_string()}),
                );
            }
        }
    }

    /// Starts, keeps or stops links to match the agreements in force.
    async fn reconcile(&mut self) {
        let ids: Vec<String> = self.links.keys().cloned().collect();
        for id in ids {
            let keep = self
                .in_force
                .get(&id)
                .is_some_and(|(_, plan)| self.links.get(&id).is_some_and(|l| l.plan == *plan));
            if keep {
                continue;
            }
            let Some(link) = self.links.remove(&id) else {
                continue;
            };
            match self.revocation_text(&id) {
                Some(yaml) if !self.in_force.contains_key(&id) => {
                    link.revoke(yaml);
                    self.lingering
                        .push((link, Instant::now() + REVOCATION_LINGER));
                }
                _ => link.stop().await,
            }
        }
        let now = Instant::now();
        let (done, lingering): (Vec<_>, Vec<_>) = std::mem::take(&mut self.lingering)
            .into_iter()
            .partition(|(_, until)| *until <= now);
        self.lingering = lingering;
        for (link, _) in done {
            link.stop().await;
        }
        let mut used_domains: HashMap<u32, String> = self
            .links
            .values()
            .chain(self.lingering.iter().map(|(l, _)| l))
            .map(|l| (l.plan.domain, l.plan.agreement.clone()))
            .collect();
        let mut starts: Vec<LinkPlan> = self
            .in_force
            .values()
            .filter(|(_, plan)| !self.links.contains_key(&plan.agreement))
            .map(|(_, plan)| plan.clone())
            .collect();
        starts.sort_by(|a, b| a.agreement.cmp(&b.agreement));
        let local_domain = self.shared.context.domain_id();
        for plan in starts {
            if plan.domain == local_domain {
                self.unusable.insert(
                    plan.agreement.clone(),
                    format!(
                        "federation_domain {} is this hub's own ROS domain (domain_id in ntari.toml / ROS_DOMAIN_ID): the local graph would leak onto the tunnel; redraft with another federation_domain",
                        plan.domain
                    ),
                );
                continue;
            }
            if let Some(other) = used_domains.get(&plan.domain) {
                if *other != plan.agreement {
                    self.unusable.insert(
                        plan.agreement.clone(),
                        format!(
                            "federation_domain {} is already used by agreement {other} on this hub: give each partner its own domain (redraft and re-sign one of them)",
                            plan.domain
                        ),
                    );
                    continue;
                }
            }
            used_domains.insert(plan.domain, plan.agreement.clone());
            let id = plan.agreement.clone();
            let link = Link::start(plan, self.shared.clone(), self.graph_tx.subscribe());
            self.links.insert(id, link);
        }
        let peers: Vec<LinkPlan> = self
            .links
            .values()
            .chain(self.lingering.iter().map(|(l, _)| l))
            .map(|l| l.plan.clone())
            .collect();
        // Routes count only from hubs we (still) agree relaying with.
        let links = &self.links;
        self.relay_routes
            .retain(|id, _| links.get(id).is_some_and(|l| l.plan.relay));
        self.reconcile_relay();
        self.write_peers(&peers);
    }

    /// On a hub: the partners whose agreements allow relaying, if two or
    /// more, are relayed between; each is told the others' addresses.
    fn reconcile_relay(&mut self) {
        let members: Vec<&LinkPlan> = self
            .links
            .values()
            .map(|l| &l.plan)
            .filter(|p| p.relay && !p.awaiting_partner)
            .collect();
        let relaying = members.len() >= 2;
        for link in self.links.values() {
            let p = &link.plan;
            if !p.relay || p.awaiting_partner {
                continue;
            }
            let routes = members
                .iter()
                .filter(|m| relaying && m.agreement != p.agreement)
                .map(|m| RelayRoute {
                    coop: m.partner_coop.clone(),
                    tunnel_address: m.partner_address,
                })
                .collect();
            link.set_relay(routes);
        }
        let mut names: Vec<String> = if relaying {
            members
                .iter()
                .map(|p| format!("federation:{}", p.agreement))
                .collect()
        } else {
            Vec::new()
        };
        names.sort();
        if names != self.relaying {
            self.shared.audit.record(
                "relay_members",
                serde_json::json!({"members": members.iter().filter(|_| relaying).map(|p| &p.partner_coop).collect::<Vec<_>>()}),
            );
            self.relaying = names;
        }
    }

    /// Agreements whose partner has no endpoint of its own and is one a
    /// hub we agreed relaying with relays to, at the agreement's address:
    /// agreement id → the hub's agreement id.
    fn via_hub(&self, plans: &[LinkPlan]) -> HashMap<String, String> {
        let mut via = HashMap::new();
        for p in plans.iter().filter(|p| p.partner_endpoint.is_none()) {
            let hub = self.relay_routes.iter().find(|(hub, routes)| {
                **hub != p.agreement
                    && routes
                        .iter()
                        .any(|r| r.coop == p.partner_coop && r.tunnel_address == p.partner_address)
            });
            if let Some((hub, _)) = hub {
                via.insert(p.agreement.clone(), hub.clone());
            }
        }
        via
    }

    /// The revocation file for agreement `id`, if one exists.
    fn revocation_text(&self, id: &str) -> Option<String> {
        let name = format!("{id}.revoked.yaml");
        [&self.plan.agreements_dir, &self.plan.revocations_dir]
            .iter()
            .find_map(|dir| std::fs::read_to_string(dir.join(&name)).ok())
    }

    /// A partner's bridge sent a revocation for `id`.
    fn partner_revoked(&mut self, id: &str, bytes: &[u8]) {
        let Some((agreement, _)) = self.in_force.get(id) else {
            return;
        };
        match agreement::verify_revocation(bytes, agreement) {
            Ok(revocation) => {
                match agreement::save_revocation(&self.plan.revocations_dir, bytes, &revocation) {
                    Ok(path) => {
                        tracing::warn!(agreement = id, file = %path.display(), "the partner revoked the agreement")
                    }
                    Err(e) => {
                        tracing::error!(agreement = id, error = %e, "cannot save the partner's revocation; honouring it until restart")
                    }
                }
                self.shared.audit.record(
                    "revocation_received",
                    serde_json::json!({"agreement": id, "from": "partner"}),
                );
                // Re-check now: the saved file makes the agreement revoked.
                self.next_check = SystemTime::now();
                self.fingerprint.clear();
            }
            Err(e) => {
                tracing::warn!(agreement = id, error = %e, "ignored a revocation from the partner that does not verify");
                self.shared.audit.record(
                    "revocation_refused",
                    serde_json::json!({"agreement": id, "message": e.to_string()}),
                );
            }
        }
    }

    fn write_peers(&mut self, plans: &[LinkPlan]) {
        let host = |a: &std::net::IpAddr| format!("{a}/{}", if a.is_ipv4() { 32 } else { 128 });
        // A partner reached through a hub has no peer of its own: its
        // address is routed to the hub's peer.
        let via = self.via_hub(plans);
        self.relayed_via = via
            .iter()
            .filter_map(|(id, hub)| {
                Some((id.clone(), self.links.get(hub)?.plan.partner_coop.clone()))
            })
            .collect();
        let mut peers: Vec<serde_json::Value> = plans
            .iter()
            .filter(|p| !via.contains_key(&p.agreement))
            .map(|p| {
                let mut allowed = vec![host(&p.partner_address)];
                allowed.extend(
                    plans
                        .iter()
                        .filter(|q| via.get(&q.agreement) == Some(&p.agreement))
                        .map(|q| host(&q.partner_address)),
                );
                serde_json::json!({
                    "name": format!("federation:{}", p.agreement),
                    "public_key": p.partner_wireguard_key,
                    "endpoint": p.partner_endpoint,
                    "allowed_ips": allowed,
                    "persistent_keepalive": PERSISTENT_KEEPALIVE,
                    "not_after": humantime::format_rfc3339_seconds(p.not_after).to_string(),
                })
            })
            .collect();
        peers.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
        let mut document =
            serde_json::json!({"version": 1, "source": "ntari-federation", "peers": peers});
        if !self.relaying.is_empty() {
            document["relay"] = self.relaying.clone().into();
        }
        let text = format!("{document:#}\n");
        if self.peers_written.as_deref() == Some(text.as_str()) {
            return;
        }
        match ntari_node::fsutil::write_atomic(&self.plan.wireguard_peers, text.as_bytes(), 0o644) {
            Ok(()) => {
                let before: Vec<String> = self
                    .peers_written
                    .as_deref()
                    .and_then(|t| serde_json::from_str::<serde_json::Value>(t).ok())
                    .and_then(|v| v["peers"].as_array().cloned())
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|p| p["name"].as_str().map(str::to_string))
                    .collect();
                let after: Vec<String> = peers
                    .iter()
                    .filter_map(|p| p["name"].as_str().map(str::to_string))
                    .collect();
                for name in after.iter().filter(|n| !before.contains(n)) {
                    self.shared
                        .audit
                        .record("peer_added", serde_json::json!({"peer": name}));
                }
                for name in before.iter().filter(|n| !after.contains(n)) {
                    self.shared
                        .audit
                        .record("peer_removed", serde_json::json!({"peer": name}));
                }
                self.peers_written = Some(text);
            }
            Err(e) => {
                tracing::error!(path = %self.plan.wireguard_peers.display(), error = %e, "cannot write the WireGuard peers for ntari-vpn")
            }
        }
    }

    fn write_state(&self) {
        let agreements = self
            .checked
            .iter()
            .map(|c| {
                let link = self.links.get(&c.id).or_else(|| {
                    self.lingering
                        .iter()
                        .map(|(l, _)| l)
                        .find(|l| l.plan.agreement == c.id)
                });
                let unusable = self.unusable.get(&c.id);
                let (state, message) = match (&c.verdict, unusable) {
                    _ if self.awaiting.contains_key(&c.id) => (
                        "awaiting_partner".to_string(),
                        Some("signed by this hub; the partner's admin has not approved it yet (`ntari-admin federation approve` on their hub)".to_string()),
                    ),
                    (Ok(_), None) => ("in_force".to_string(), None),
                    (Ok(_), Some(why)) => ("not_used".to_string(), Some(why.clone())),
                    (Err(e), _) => (e.kind().to_string(), Some(e.to_string())),
                };
                AgreementReport {
                    id: c.id.clone(),
                    file: c.path.display().to_string(),
                    partner: self
                        .in_force
                        .get(&c.id)
                        .map(|(_, p)| p.partner_coop.clone()),
                    state,
                    message,
                    relayed_via: self.relayed_via.get(&c.id).cloned(),
                    link: link.map(Link::snapshot),
                }
            })
            .collect();
        let state = StateFile {
            version: 1,
            pid: std::process::id(),
            written_at_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            coop: &self.plan.coop,
            did: self.did.as_deref().ok(),
            agreements,
            join: JoinReport {
                listening: self.enrollment.is_listening(),
                address: self.enrollment.listen_address().to_string(),
                open_invites: self.enrollment.open_invites,
                error: self.enrollment.error().map(str::to_string),
            },
        };
        match serde_json::to_vec_pretty(&state) {
            Ok(bytes) => {
                if let Err(e) =
                    ntari_node::fsutil::write_atomic(&self.plan.state_file, &bytes, 0o644)
                {
                    tracing::warn!(path = %self.plan.state_file.display(), error = %e, "cannot write the bridge state");
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot serialise the bridge state"),
        }
    }
}

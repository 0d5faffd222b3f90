//! One agreement's link: a DDS participant on the agreement's federation
//! domain, bound to the WireGuard interface and pointed at the partner's
//! tunnel address, and the routes over it.
//!
//! On the federation domain each side publishes, under
//! `ntari_fed/<agreement>/<coop>/`:
//! - `graph`: a latched JSON manifest ([`Manifest`]) of the routes it
//!   exports: for each local writer of an exported topic, the topic, type,
//!   type hash, QoS and the node that owns the writer;
//! - `r/<route>`: one DDS topic per route, carrying that writer's samples
//!   byte for byte, with the original type name and QoS, so Cyclone itself
//!   re-delivers transient-local state (one last sample per original
//!   publisher) to a partner that joins late or comes back after a cut;
//! - `control`: a latched revocation, if one side revoked the agreement.
//!
//! The importing side republishes each route under
//! `/remote/<partner>/<topic>` from a proxy node
//! `/remote/<partner>/<node namespace>/<node name>`, so `ros2 node list`
//! shows the partner's nodes. Both sides enforce the agreement: the
//! exporter sends only what it lists, the importer takes only what the
//! agreement lists for the partner's direction (a route for anything else
//! is dropped and counted). Nothing under `/remote/` is exported unless the
//! agreement allows relaying, and writers of this bridge's own participant
//! (its proxies) are never exported, so no sample returns to where it came
//! from.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ntari_node::graph::{names, wire, Context, Node, RawReader, RawWriter};
use ntari_node::msg::std_msgs::StringMsg;
use ntari_node::rawdds::{Participant, Reader, Taken, Writer};
use ntari_node::EndpointQos;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinHandle;

use super::audit::Audit;
use super::local::{LocalGraph, LocalWriter};
use super::plan::{is_remote, LinkPlan, TopicRule};
use super::services::{self, Forwarder};

/// Largest manifest or control document accepted from a partner.
const MAX_DOCUMENT_BYTES: usize = 256 * 1024;
/// At most this many routes from one partner: a bound on what a broken or
/// hostile partner can make this bridge create.
const MAX_ROUTES_IN: usize = 1024;
/// Depth of the volatile routes' history on the federation domain, and the
/// most a partner's manifest may ask for.
const MAX_DEPTH: u32 = 100;
/// How often a link without its interface tries again.
const RETRY: Duration = Duration::from_secs(1);

const STRING_DDS_TYPE: &str = "std_msgs::msg::dds_::String_";

/// Counters of one link, shared with its forwarding tasks.
#[derive(Debug, Default)]
pub struct LinkCounters {
    pub samples_out: AtomicU64,
    pub samples_in: AtomicU64,
    pub dropped_oversized: AtomicU64,
    pub dropped_garbage: AtomicU64,
    pub dropped_rate: AtomicU64,
    /// Routes the partner offered that the agreement does not list.
    pub refused_routes: AtomicU64,
    /// Service requests forwarded, either way.
    pub requests: AtomicU64,
}

/// What the state file shows of a link.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LinkSnapshot {
    pub state: String,
    pub partner_seen: bool,
    /// When the partner's bridge was last seen (Unix ms), if ever.
    pub partner_last_seen_ms: Option<u64>,
    pub routes_out: usize,
    pub routes_in: usize,
    pub proxy_nodes: Vec<String>,
    pub samples_out: u64,
    pub samples_in: u64,
    pub dropped_oversized: u64,
    pub dropped_garbage: u64,
    pub dropped_rate: u64,
    pub refused_routes: u64,
    /// Services served to the partner / proxied from it.
    pub services: Vec<String>,
    pub requests: u64,
}

/// One exported route in the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestRoute {
    pub id: String,
    pub topic: String,
    #[serde(rename = "type")]
    pub ros_type: String,
    /// The original writer's user_data (`typehash=RIHS01_…;`).
    pub type_hash: String,
    pub reliable: bool,
    pub transient_local: bool,
    pub depth: u32,
    /// Fully qualified name of the node owning the original writer.
    pub node: String,
}

/// The `graph` document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub version: u32,
    pub agreement: String,
    pub coop: String,
    pub routes: Vec<ManifestRoute>,
}

/// The `control` document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Control {
    version: u32,
    /// A signed revocation, as the YAML text `ntari-admin` wrote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    revocation: Option<String>,
    /// The co-signed agreement, as in force on the sender's hub: how a
    /// joiner learns that its draft was approved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    agreement: Option<String>,
    /// From a hub: the other members it relays to, for a member whose
    /// agreement with the hub allows relaying.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    relay: Option<Vec<RelayRoute>>,
}

/// A member a hub relays to: reach `tunnel_address` through the hub.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelayRoute {
    pub coop: String,
    pub tunnel_address: std::net::IpAddr,
}

/// A document from the partner for the main loop to check.
#[derive(Debug, Clone)]
pub enum PartnerDocument {
    /// A revocation's YAML bytes.
    Revocation(Vec<u8>),
    /// The agreement's text, co-signed.
    Agreement(String),
    /// The members the partner, a hub, relays to.
    Relay(Vec<RelayRoute>),
}

/// Messages to a link's task.
enum Command {
    /// Tell the partner: this agreement is revoked (the YAML text).
    Revoke(String),
    /// Tell the partner (a member of ours, a hub): these are the others
    /// we relay to.
    Relay(Vec<RelayRoute>),
    /// Take the routes down (recording them) and end.
    Stop,
}

/// A running link. Dropping it stops the task and takes down its routes,
/// proxies and participant.
pub struct Link {
    pub plan: LinkPlan,
    counters: Arc<LinkCounters>,
    snapshot: Arc<Mutex<LinkSnapshot>>,
    commands: mpsc::UnboundedSender<Command>,
    task: JoinHandle<()>,
}

/// What every link shares: the local graph, the audit log, the limits.
pub struct Shared {
    pub context: Context,
    /// Owns the local readers of exported topics.
    pub bridge_node: Node,
    pub audit: Audit,
    pub interface: String,
    pub max_sample_bytes: usize,
    /// A partner unseen this long is gone, not cut off for a while: its
    /// proxies go, so nothing on the local graph keeps showing its last
    /// health as if it were current. They come back with the partner.
    pub partner_timeout: Duration,
    /// What a partner sent on the control topic, for the main loop to
    /// check and save: (agreement id, document).
    pub partner_documents: mpsc::UnboundedSender<(String, PartnerDocument)>,
}

impl Link {
    pub fn start(
        plan: LinkPlan,
        shared: Arc<Shared>,
        graph: watch::Receiver<Arc<LocalGraph>>,
    ) -> Link {
        let counters = Arc::new(LinkCounters::default());
        let snapshot = Arc::new(Mutex::new(LinkSnapshot {
            state: "starting".into(),
            ..LinkSnapshot::default()
        }));
        let (commands, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(run(
            plan.clone(),
            shared,
            graph,
            counters.clone(),
            snapshot.clone(),
            rx,
        ));
        Link {
            plan,
            counters,
            snapshot,
            commands,
            task,
        }
    }

    pub fn set_relay(&self, routes: Vec<RelayRoute>) {
        let _ = self.commands.send(Command::Relay(routes));
    }

    pub fn revoke(&self, revocation_yaml: String) {
        let _ = self.commands.send(Command::Revoke(revocation_yaml));
    }

    /// Takes the link down: routes, proxies, participant. Bounded: a task
    /// that does not end within a second is aborted (by drop).
    pub async fn stop(mut self) {
        let _ = self.commands.send(Command::Stop);
        let _ = tokio::time::timeout(Duration::from_secs(1), &mut self.task).await;
    }

    pub fn snapshot(&self) -> LinkSnapshot {
        let mut s = lock(&self.snapshot).clone();
        let c = &self.counters;
        s.samples_out = c.samples_out.load(Ordering::Relaxed);
        s.samples_in = c.samples_in.load(Ordering::Relaxed);
        s.dropped_oversized = c.dropped_oversized.load(Ordering::Relaxed);
        s.dropped_garbage = c.dropped_garbage.load(Ordering::Relaxed);
        s.dropped_rate = c.dropped_rate.load(Ordering::Relaxed);
        s.refused_routes = c.refused_routes.load(Ordering::Relaxed);
        s.requests = c.requests.load(Ordering::Relaxed);
        s
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The Cyclone configuration of a federation domain: only the WireGuard
/// interface, no multicast, the partner by unicast. SPDP every 2 s so a
/// partner is found again within seconds after the tunnel comes back; a
/// 20 s lease so that a cut of ten seconds does not lose it at all.
pub fn domain_config(domain: u32, interface: &str, partner: std::net::IpAddr) -> String {
    format!(
        r#"<CycloneDDS xmlns="https://cdds.io/config"><Domain Id="{domain}"><General><Interfaces><NetworkInterface name="{interface}" multicast="false"/></Interfaces><AllowMulticast>false</AllowMulticast></General><Discovery><ParticipantIndex>auto</ParticipantIndex><MaxAutoParticipantIndex>4</MaxAutoParticipantIndex><Peers><Peer address="{partner}"/></Peers><SPDPInterval>2s</SPDPInterval><LeaseDuration>20s</LeaseDuration></Discovery></Domain></CycloneDDS>"#
    )
}

fn fed_topic(plan: &LinkPlan, coop: &str, rest: &str) -> String {
    format!("ntari_fed/{}/{coop}/{rest}", plan.agreement)
}

/// Route id: 16 hex digits from the original writer's GUID, stable for as
/// long as that writer lives (a restarted node gets new routes, and its
/// old latched samples go with the old ones).
fn route_id(writer: &[u8; 16]) -> String {
    let digest = Sha256::digest(writer);
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

const LATCHED: EndpointQos = EndpointQos {
    reliable: true,
    transient_local: true,
    depth: 1,
};

fn route_qos(reliable: bool, transient_local: bool, depth: u32) -> EndpointQos {
    EndpointQos {
        reliable,
        transient_local,
        depth: if transient_local {
            1
        } else {
            depth.clamp(1, MAX_DEPTH)
        },
    }
}

/// A sample that can be forwarded: a known CDR encapsulation, and for the
/// types the bridge knows, a payload that decodes.
fn well_formed(ros_type: &str, payload: &[u8]) -> bool {
    if payload.len() < 4 || payload[0] != 0 || payload[1] > 1 {
        return false;
    }
    match ros_type {
        "std_msgs/msg/Bool" => wire::decode::<ntari_node::msg::std_msgs::Bool>(payload).is_ok(),
        "std_msgs/msg/String" => wire::decode::<StringMsg>(payload).is_ok(),
        _ => true,
    }
}

fn valid_type_hash(user_data: &str) -> bool {
    let Some(hex) = user_data
        .strip_prefix("typehash=RIHS01_")
        .and_then(|s| s.strip_suffix(';'))
    else {
        return false;
    };
    hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `/ntari/ntari_dns_node` of coop `a` → (`/remote/a/ntari`, `ntari_dns_node`).
fn proxy_node_name(partner: &str, node: &str) -> Option<(String, String)> {
    let (ns, name) = node.rsplit_once('/')?;
    let namespace = format!("/remote/{partner}{ns}");
    names::validate_namespace(&namespace).ok()?;
    names::validate_node_name(name).ok()?;
    Some((namespace, name.to_string()))
}

/// One local writer we export.
struct RouteOut {
    manifest: ManifestRoute,
    fed: Writer,
    min_interval: Option<Duration>,
    last_sent: Mutex<Option<Instant>>,
}

/// A local reader on one exported topic (per QoS class), and the task that
/// hands its samples to the routes of their writers.
struct Tap {
    task: JoinHandle<()>,
}

impl Drop for Tap {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type RoutesOut = Arc<Mutex<HashMap<[u8; 16], Arc<RouteOut>>>>;

/// One imported route: the federation reader, the proxy writer, the task.
struct RouteIn {
    manifest: ManifestRoute,
    proxy_node: String,
    task: JoinHandle<()>,
}

impl Drop for RouteIn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct LinkState {
    plan: LinkPlan,
    shared: Arc<Shared>,
    counters: Arc<LinkCounters>,
    fed: Option<FedEnds>,
    routes_out: RoutesOut,
    taps: HashMap<(String, String, bool, bool), Tap>,
    routes_in: HashMap<String, RouteIn>,
    proxies: HashMap<String, Arc<Node>>,
    /// Service forwarders, and the proxy nodes their proxies live on.
    services: Vec<Forwarder>,
    service_nodes: HashSet<String>,
    published_manifest: Option<Manifest>,
    /// Since when the partner's bridge is not seen, while we hold imports.
    partner_lost: Option<Instant>,
    /// On a hub: the other members it relays to, as last sent.
    relay_routes: Option<Vec<RelayRoute>>,
}

/// The link's own endpoints on the federation domain. Field order: the
/// endpoints go before the participant.
struct FedEnds {
    manifest_out: Writer,
    manifest_in: Reader,
    manifest_notify: Arc<Notify>,
    control_out: Writer,
    control_in: Reader,
    control_notify: Arc<Notify>,
    participant: Arc<Participant>,
}

async fn run(
    plan: LinkPlan,
    shared: Arc<Shared>,
    mut graph: watch::Receiver<Arc<LocalGraph>>,
    counters: Arc<LinkCounters>,
    snapshot: Arc<Mutex<LinkSnapshot>>,
    mut commands: mpsc::UnboundedReceiver<Command>,
) {
    let mut state = LinkState {
        plan,
        shared,
        counters,
        fed: None,
        routes_out: Arc::new(Mutex::new(HashMap::new())),
        taps: HashMap::new(),
        routes_in: HashMap::new(),
        proxies: HashMap::new(),
        services: Vec::new(),
        service_nodes: HashSet::new(),
        published_manifest: None,
        partner_lost: None,
        relay_routes: None,
    };
    let mut tick = tokio::time::interval(RETRY);
    loop {
        if state.fed.is_none() {
            match state.open() {
                Ok(()) => set_state(&snapshot, "up"),
                Err(e) => set_state(&snapshot, &format!("waiting: {e}")),
            }
        }
        if state.fed.is_some() {
            let local = graph.borrow_and_update().clone();
            state.reconcile_exports(&local);
            state.read_manifest();
            state.read_control();
            state.forget_partner_if_gone();
        }
        state.update_snapshot(&snapshot);
        let (manifest_notify, control_notify) = match &state.fed {
            Some(f) => (f.manifest_notify.clone(), f.control_notify.clone()),
            None => (Arc::new(Notify::new()), Arc::new(Notify::new())),
        };
        tokio::select! {
            _ = tick.tick() => {}
            changed = graph.changed() => if changed.is_err() { break },
            _ = manifest_notify.notified() => {}
            _ = control_notify.notified() => {}
            command = commands.recv() => match command {
                Some(Command::Revoke(yaml)) => {
                    state.drop_routes("revoked");
                    if state.fed.is_some() || state.open().is_ok() {
                        state.send_revocation(&yaml);
                    }
                    set_state(&snapshot, "revoked");
                    state.update_snapshot(&snapshot);
                    // Stay only to deliver the revocation, until stopped.
                    while let Some(command) = commands.recv().await {
                        if matches!(command, Command::Stop) {
                            break;
                        }
                    }
                    return;
                }
                Some(Command::Relay(routes)) => {
                    if state.relay_routes.as_ref() != Some(&routes) {
                        state.relay_routes = Some(routes);
                        state.publish_control();
                    }
                }
                Some(Command::Stop) | None => break,
            },
        }
    }
    state.drop_routes("stopped");
}

fn set_state(snapshot: &Mutex<LinkSnapshot>, text: &str) {
    let mut s = lock(snapshot);
    if s.state != text {
        s.state = text.to_string();
    }
}

impl LinkState {
    fn open(&mut self) -> Result<(), String> {
        let plan = self.plan.clone();
        let plan = &plan;
        let config = domain_config(plan.domain, &self.shared.interface, plan.partner_address);
        let user_data = format!(
            "ntari_federation={};agreement={};",
            plan.our_coop, plan.agreement
        );
        let participant = Participant::with_config(plan.domain, &config, &user_data).map_err(|e| {
            format!(
                "cannot join federation domain {} on interface {} ({e}); is ntari-vpn up with its tunnel address?",
                plan.domain, self.shared.interface
            )
        })?;
        let participant = Arc::new(participant);
        let manifest_notify = Arc::new(Notify::new());
        let control_notify = Arc::new(Notify::new());
        let (manifest_out, manifest_in) =
            document_pair(&participant, plan, "graph", &manifest_notify)?;
        let (control_out, control_in) =
            document_pair(&participant, plan, "control", &control_notify)?;
        let fed = FedEnds {
            manifest_out,
            manifest_in,
            manifest_notify,
            control_out,
            control_in,
            control_notify,
            participant,
        };
        self.fed = Some(fed);
        self.publish_control();
        self.start_services();
        self.shared.audit.record(
            "link_up",
            serde_json::json!({"agreement": plan.agreement, "partner": plan.partner_coop,
                "domain": plan.domain, "interface": self.shared.interface,
                "partner_address": plan.partner_address.to_string()}),
        );
        Ok(())
    }

    /// Serves our agreed services to a trusted partner, and proxies the
    /// partner's to us if it trusts us.
    fn start_services(&mut self) {
        let Some(fed) = &self.fed else { return };
        let participant = fed.participant.clone();
        let plan = self.plan.clone();
        for rule in plan.served_services() {
            match services::serve(
                &plan,
                rule,
                &participant,
                &self.shared.bridge_node,
                self.counters.clone(),
            ) {
                Ok(f) => self.services.push(f),
                Err(e) => {
                    tracing::warn!(service = %rule.name, error = %e, "cannot serve a service to the partner")
                }
            }
        }
        for rule in plan.callable_services() {
            let node =
                services::owner_node(&rule.name).and_then(|owner| self.proxy_node(owner).ok());
            let Some((fqn, node)) = node else {
                tracing::warn!(service = %rule.name, "cannot make a proxy node for this service");
                continue;
            };
            match services::proxy(&plan, rule, &participant, node, self.counters.clone()) {
                Ok(f) => {
                    self.service_nodes.insert(fqn);
                    self.services.push(f);
                }
                Err(e) => {
                    tracing::warn!(service = %rule.name, error = %e, "cannot proxy the partner's service")
                }
            }
        }
        if !self.services.is_empty() {
            self.shared.audit.record(
                "services_up",
                serde_json::json!({"agreement": plan.agreement,
                    "services": self.services.iter().map(|f| f.service.clone()).collect::<Vec<_>>()}),
            );
        }
    }

    /// The proxy node of the partner's node `node` (created if needed).
    fn proxy_node(&mut self, node: &str) -> Result<(String, Arc<Node>), String> {
        let (namespace, name) =
            proxy_node_name(&self.plan.partner_coop, node).ok_or("invalid node name")?;
        let fqn = names::node_fqn(&namespace, &name);
        if let Some(existing) = self.proxies.get(&fqn) {
            return Ok((fqn, existing.clone()));
        }
        let created = Arc::new(
            self.shared
                .context
                .create_node(&namespace, &name)
                .map_err(|e| e.to_string())?,
        );
        self.proxies.insert(fqn.clone(), created.clone());
        Ok((fqn, created))
    }

    /// Makes the exported routes match the local writers of listed topics.
    fn reconcile_exports(&mut self, local: &LocalGraph) {
        let Some(fed) = &self.fed else { return };
        let own = self.shared.context.participant_gid();
        let mut wanted: HashMap<[u8; 16], (&LocalWriter, &TopicRule)> = HashMap::new();
        for w in &local.writers {
            if w.participant[..12] == own[..12] || (is_remote(&w.topic) && !self.plan.relay) {
                continue;
            }
            if let Some(rule) = self.plan.export_rule(&w.topic, &w.ros_type) {
                wanted.insert(w.guid, (w, rule));
            }
        }
        let mut routes = lock(&self.routes_out);
        let gone: Vec<[u8; 16]> = routes
            .keys()
            .filter(|g| !wanted.contains_key(*g))
            .copied()
            .collect();
        for guid in gone {
            if let Some(route) = routes.remove(&guid) {
                self.shared.audit.record(
                    "route_down",
                    serde_json::json!({"agreement": self.plan.agreement, "direction": "out",
                        "route": route.manifest.id, "topic": route.manifest.topic,
                        "node": route.manifest.node,
                        "samples_out": self.counters.samples_out.load(Ordering::Relaxed)}),
                );
            }
        }
        for (guid, (w, rule)) in &wanted {
            if routes.contains_key(guid) {
                continue;
            }
            let manifest = ManifestRoute {
                id: route_id(guid),
                topic: w.topic.clone(),
                ros_type: w.ros_type.clone(),
                type_hash: w.user_data.clone(),
                reliable: w.qos.reliable,
                transient_local: w.qos.transient_local,
                depth: w.qos.depth,
                node: w.node.clone(),
            };
            let qos = route_qos(manifest.reliable, manifest.transient_local, manifest.depth);
            let fed_writer = match Writer::new(
                &fed.participant,
                &fed_topic(
                    &self.plan,
                    &self.plan.our_coop,
                    &format!("r/{}", manifest.id),
                ),
                &w.dds_type,
                &qos,
                &w.user_data,
                Arc::new(Notify::new()),
            ) {
                Ok(writer) => writer,
                Err(e) => {
                    tracing::warn!(topic = %w.topic, error = %e, "cannot create a federation writer");
                    continue;
                }
            };
            self.shared.audit.record(
                "route_up",
                serde_json::json!({"agreement": self.plan.agreement, "direction": "out",
                    "route": manifest.id, "topic": manifest.topic, "node": manifest.node,
                    "type": manifest.ros_type}),
            );
            routes.insert(
                *guid,
                Arc::new(RouteOut {
                    manifest,
                    fed: fed_writer,
                    min_interval: rule
                        .max_rate_hz
                        .filter(|r| *r > 0.0)
                        .map(|r| Duration::from_secs_f64(1.0 / r)),
                    last_sent: Mutex::new(None),
                }),
            );
        }
        // One tap per (topic, type, QoS class) that has routes.
        let classes: HashSet<(String, String, bool, bool)> = routes
            .values()
            .map(|r| {
                (
                    r.manifest.topic.clone(),
                    names::dds_type_name(&r.manifest.ros_type),
                    r.manifest.reliable,
                    r.manifest.transient_local,
                )
            })
            .collect();
        let mut manifest_routes: Vec<ManifestRoute> =
            routes.values().map(|r| r.manifest.clone()).collect();
        drop(routes);
        self.taps.retain(|class, _| classes.contains(class));
        for class in classes {
            if self.taps.contains_key(&class) {
                continue;
            }
            match self.tap(&class) {
                Ok(tap) => {
                    self.taps.insert(class, tap);
                }
                Err(e) => {
                    tracing::warn!(topic = %class.0, error = %e, "cannot subscribe to an exported topic")
                }
            }
        }
        manifest_routes.sort_by(|a, b| a.id.cmp(&b.id));
        let manifest = Manifest {
            version: 1,
            agreement: self.plan.agreement.clone(),
            coop: self.plan.our_coop.clone(),
            routes: manifest_routes,
        };
        if self.published_manifest.as_ref() != Some(&manifest) {
            match publish_json(&fed.manifest_out, &manifest) {
                Ok(()) => self.published_manifest = Some(manifest),
                Err(e) => tracing::warn!(error = %e, "cannot publish the federation manifest"),
            }
        }
    }

    fn tap(&self, class: &(String, String, bool, bool)) -> Result<Tap, String> {
        let (topic, dds_type, reliable, transient_local) = class;
        let qos = EndpointQos {
            reliable: *reliable,
            transient_local: *transient_local,
            // Room for every writer's latched sample arriving at once.
            depth: 32,
        };
        // Our reader announces no type hash: it only forwards, and rmw
        // accepts readers without one.
        let reader = RawReader::new(
            &self.shared.bridge_node,
            &names::topic_dds_name(topic),
            dds_type,
            "",
            qos,
            self.shared.max_sample_bytes,
        )
        .map_err(|e| e.to_string())?;
        let routes = self.routes_out.clone();
        let counters = self.counters.clone();
        let task = tokio::spawn(async move {
            let mut writers: HashMap<u64, [u8; 16]> = HashMap::new();
            loop {
                let (payload, handle) = reader.recv().await;
                let guid = match writers.get(&handle) {
                    Some(g) => *g,
                    None => match reader.writer_guid(handle) {
                        Some(g) => {
                            writers.insert(handle, g);
                            g
                        }
                        None => continue,
                    },
                };
                let Some(route) = lock(&routes).get(&guid).cloned() else {
                    continue;
                };
                if let Some(min) = route.min_interval {
                    let mut last = lock(&route.last_sent);
                    let now = Instant::now();
                    if last.is_some_and(|t| now.duration_since(t) < min) {
                        counters.dropped_rate.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    *last = Some(now);
                }
                match route.fed.write(&payload) {
                    Ok(()) => {
                        counters.samples_out.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        tracing::debug!(topic = %route.manifest.topic, error = %e, "could not forward a sample")
                    }
                }
            }
        });
        Ok(Tap { task })
    }

    /// Takes the partner's latest manifest and makes the imports match it.
    fn read_manifest(&mut self) {
        let Some(fed) = &self.fed else { return };
        if self.plan.awaiting_partner {
            // Nothing is imported before the agreement is co-signed; the
            // partner's routes are not even looked at.
            let _ = take_documents::<Manifest>(&fed.manifest_in, 64, &self.counters);
            return;
        }
        let mut latest = None;
        for m in take_documents::<Manifest>(&fed.manifest_in, 64, &self.counters) {
            if m.agreement == self.plan.agreement && m.coop == self.plan.partner_coop {
                latest = Some(m);
            } else {
                self.counters
                    .dropped_garbage
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
        if let Some(manifest) = latest {
            self.apply_manifest(manifest);
        }
    }

    fn apply_manifest(&mut self, manifest: Manifest) {
        let Some(fed) = &self.fed else { return };
        let participant = fed.participant.clone();
        let mut accepted: HashMap<String, ManifestRoute> = HashMap::new();
        for route in manifest.routes.into_iter().take(MAX_ROUTES_IN) {
            let allowed = route.id.len() == 16
                && route.id.bytes().all(|b| b.is_ascii_hexdigit())
                && names::validate_absolute_topic(&route.topic).is_ok()
                && valid_type_hash(&route.type_hash)
                && self
                    .plan
                    .import_rule(&route.topic, &route.ros_type)
                    .is_some()
                && proxy_node_name(&self.plan.partner_coop, &route.node).is_some();
            if allowed {
                accepted.insert(route.id.clone(), route);
            } else if !self.routes_in.contains_key(&route.id) {
                self.counters.refused_routes.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(agreement = %self.plan.agreement, topic = %route.topic, node = %route.node,
                    "the partner offered a route the agreement does not list; ignored");
            }
        }
        let gone: Vec<String> = self
            .routes_in
            .iter()
            .filter(|(id, r)| accepted.get(*id) != Some(&r.manifest))
            .map(|(id, _)| id.clone())
            .collect();
        for id in gone {
            if let Some(route) = self.routes_in.remove(&id) {
                self.record_route_in("route_down", &route.manifest);
            }
        }
        for (id, route) in accepted {
            if self.routes_in.contains_key(&id) {
                continue;
            }
            match self.import(&participant, route.clone()) {
                Ok(r) => {
                    self.record_route_in("route_up", &route);
                    self.routes_in.insert(id, r);
                }
                Err(e) => tracing::warn!(topic = %route.topic, error = %e, "cannot import a route"),
            }
        }
        let used: HashSet<&String> = self
            .routes_in
            .values()
            .map(|r| &r.proxy_node)
            .chain(self.service_nodes.iter())
            .collect();
        self.proxies.retain(|fqn, _| used.contains(fqn));
    }

    fn partner_seen(&self) -> bool {
        self.fed
            .as_ref()
            .is_some_and(|f| !f.manifest_in.matched_writer_handles().is_empty())
    }

    /// Drops the imports of a partner unseen for [`Shared::partner_timeout`].
    fn forget_partner_if_gone(&mut self) {
        if self.partner_seen() || self.routes_in.is_empty() {
            self.partner_lost = None;
            return;
        }
        let since = *self.partner_lost.get_or_insert_with(Instant::now);
        if since.elapsed() < self.shared.partner_timeout {
            return;
        }
        tracing::warn!(agreement = %self.plan.agreement, partner = %self.plan.partner_coop,
            "the partner's bridge has not been seen for {} s: its proxies go until it is back",
            self.shared.partner_timeout.as_secs());
        let ins: Vec<RouteIn> = self.routes_in.drain().map(|(_, r)| r).collect();
        for route in ins {
            self.record_route_in("route_down", &route.manifest);
        }
        let services: &HashSet<String> = &self.service_nodes;
        self.proxies.retain(|fqn, _| services.contains(fqn));
        self.partner_lost = None;
    }

    fn record_route_in(&self, event: &str, route: &ManifestRoute) {
        self.shared.audit.record(
            event,
            serde_json::json!({"agreement": self.plan.agreement, "direction": "in",
                "route": route.id, "topic": format!("/remote/{}{}", self.plan.partner_coop, route.topic),
                "node": route.node, "type": route.ros_type,
                "samples_in": self.counters.samples_in.load(Ordering::Relaxed)}),
        );
    }

    fn import(
        &mut self,
        participant: &Participant,
        route: ManifestRoute,
    ) -> Result<RouteIn, String> {
        let (fqn, node) = self.proxy_node(&route.node)?;
        let dds_type = names::dds_type_name(&route.ros_type);
        let qos = route_qos(route.reliable, route.transient_local, route.depth);
        let proxy = RawWriter::new(
            &node,
            &names::topic_dds_name(&format!(
                "/remote/{}{}",
                self.plan.partner_coop, route.topic
            )),
            &dds_type,
            &route.type_hash,
            qos,
        )
        .map_err(|e| e.to_string())?;
        let notify = Arc::new(Notify::new());
        let reader = Reader::new(
            participant,
            &fed_topic(
                &self.plan,
                &self.plan.partner_coop,
                &format!("r/{}", route.id),
            ),
            &dds_type,
            &qos,
            &route.type_hash,
            notify.clone(),
            self.shared.max_sample_bytes,
        )
        .map_err(|e| e.to_string())?;
        let counters = self.counters.clone();
        let ros_type = route.ros_type.clone();
        let latched = route.transient_local;
        let task = tokio::spawn(async move {
            // Keeps the proxy node alive as long as one of its routes is.
            let _node = node;
            let mut last: Option<[u8; 32]> = None;
            loop {
                for taken in reader.take(64) {
                    match taken {
                        Taken::Sample { payload, .. } => {
                            if !well_formed(&ros_type, &payload) {
                                counters.dropped_garbage.fetch_add(1, Ordering::Relaxed);
                                continue;
                            }
                            // A latched sample the partner re-delivers after a
                            // cut is the one we already forwarded.
                            if latched {
                                let digest: [u8; 32] = Sha256::digest(&payload).into();
                                if last == Some(digest) {
                                    continue;
                                }
                                last = Some(digest);
                            }
                            if proxy.write(&payload).is_ok() {
                                counters.samples_in.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        Taken::Oversized { .. } => {
                            counters.dropped_oversized.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                notify.notified().await;
            }
        });
        Ok(RouteIn {
            manifest: route,
            proxy_node: fqn,
            task,
        })
    }

    fn read_control(&mut self) {
        let Some(fed) = &self.fed else { return };
        for control in take_documents::<Control>(&fed.control_in, 16, &self.counters) {
            let id = self.plan.agreement.clone();
            if let Some(revocation) = control.revocation {
                let document = PartnerDocument::Revocation(revocation.into_bytes());
                let _ = self.shared.partner_documents.send((id.clone(), document));
            }
            // Only a link waiting for the partner's signature wants it.
            if let Some(agreement) = control.agreement.filter(|_| self.plan.awaiting_partner) {
                let document = PartnerDocument::Agreement(agreement);
                let _ = self.shared.partner_documents.send((id.clone(), document));
            }
            // Routes through a hub only where we agreed to relaying.
            if let Some(routes) = control.relay.filter(|_| self.plan.relay) {
                let _ = self
                    .shared
                    .partner_documents
                    .send((id, PartnerDocument::Relay(routes)));
            }
        }
    }

    /// The control document as things are: the agreement's text (for a
    /// joiner waiting for it) and, on a hub, the members it relays to.
    fn publish_control(&self) {
        let Some(fed) = &self.fed else { return };
        if self.plan.document.is_none() && self.relay_routes.is_none() {
            return;
        }
        let control = Control {
            version: 1,
            revocation: None,
            agreement: self.plan.document.clone(),
            relay: self.relay_routes.clone(),
        };
        if let Err(e) = publish_json(&fed.control_out, &control) {
            tracing::warn!(error = %e, "cannot send the control document to the partner");
        }
    }

    fn send_revocation(&self, yaml: &str) {
        if let Some(fed) = &self.fed {
            let control = Control {
                version: 1,
                revocation: Some(yaml.to_string()),
                agreement: None,
                relay: None,
            };
            if let Err(e) = publish_json(&fed.control_out, &control) {
                tracing::warn!(error = %e, "cannot send the revocation to the partner");
            }
        }
    }

    fn drop_routes(&mut self, why: &str) {
        let out: Vec<Arc<RouteOut>> = lock(&self.routes_out).drain().map(|(_, r)| r).collect();
        for route in out {
            self.shared.audit.record(
                "route_down",
                serde_json::json!({"agreement": self.plan.agreement, "direction": "out",
                    "route": route.manifest.id, "topic": route.manifest.topic, "why": why,
                    "samples_out": self.counters.samples_out.load(Ordering::Relaxed)}),
            );
        }
        self.taps.clear();
        self.services.clear();
        self.service_nodes.clear();
        let ins: Vec<RouteIn> = self.routes_in.drain().map(|(_, r)| r).collect();
        for route in ins {
            self.record_route_in("route_down", &route.manifest);
        }
        self.proxies.clear();
        if let Some(fed) = &self.fed {
            // An empty manifest tells the partner to drop its proxies now
            // rather than when the lease runs out.
            let empty = Manifest {
                version: 1,
                agreement: self.plan.agreement.clone(),
                coop: self.plan.our_coop.clone(),
                routes: Vec::new(),
            };
            let _ = publish_json(&fed.manifest_out, &empty);
            self.published_manifest = Some(empty);
        }
    }

    fn update_snapshot(&self, snapshot: &Mutex<LinkSnapshot>) {
        let partner_seen = self.partner_seen();
        let mut proxy_nodes: Vec<String> = self.proxies.keys().cloned().collect();
        proxy_nodes.sort();
        let mut s = lock(snapshot);
        s.partner_seen = partner_seen;
        if partner_seen {
            s.partner_last_seen_ms = Some(ntari_node::signing::now_unix_ms().max(0) as u64);
        }
        s.routes_out = lock(&self.routes_out).len();
        s.routes_in = self.routes_in.len();
        s.proxy_nodes = proxy_nodes;
        s.services = self.services.iter().map(|f| f.service.clone()).collect();
    }
}

/// Our latched writer of document `name` and the reader of the partner's.
fn document_pair(
    participant: &Participant,
    plan: &LinkPlan,
    name: &str,
    notify: &Arc<Notify>,
) -> Result<(Writer, Reader), String> {
    let string_hash = ntari_node::typehash::user_data_for(
        &<StringMsg as ntari_node::msg::RosMessage>::type_description(),
    );
    let ours = fed_topic(plan, &plan.our_coop, name);
    let theirs = fed_topic(plan, &plan.partner_coop, name);
    let writer = Writer::new(
        participant,
        &ours,
        STRING_DDS_TYPE,
        &LATCHED,
        &string_hash,
        Arc::new(Notify::new()),
    )
    .map_err(|e| e.to_string())?;
    let reader = Reader::new(
        participant,
        &theirs,
        STRING_DDS_TYPE,
        &LATCHED,
        &string_hash,
        notify.clone(),
        MAX_DOCUMENT_BYTES,
    )
    .map_err(|e| e.to_string())?;
    Ok((writer, reader))
}

fn publish_json<T: Serialize>(writer: &Writer, value: &T) -> Result<(), String> {
    let data = serde_json::to_string(value).map_err(|e| e.to_string())?;
    let payload = wire::encode(&StringMsg { data }).map_err(|e| e.to_string())?;
    writer.write(&payload).map_err(|e| e.to_string())
}

/// The JSON documents waiting on a federation reader; oversized and
/// undecodable samples are dropped and counted.
fn take_documents<T: serde::de::DeserializeOwned>(
    reader: &Reader,
    limit: usize,
    counters: &LinkCounters,
) -> Vec<T> {
    let mut documents = Vec::new();
    for taken in reader.take(limit) {
        match taken {
            Taken::Sample { payload, .. } => match decode_json(&payload) {
                Ok(document) => documents.push(document),
                Err(_) => {
                    counters.dropped_garbage.fetch_add(1, Ordering::Relaxed);
                }
            },
            Taken::Oversized { .. } => {
                counters.dropped_oversized.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    documents
}

fn decode_json<T: serde::de::DeserializeOwned>(payload: &[u8]) -> Result<T, String> {
    let message: StringMsg = wire::decode(payload).map_err(|e| e.to_string())?;
    serde_json::from_str(&message.data).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_nodes_live_under_remote() {
        assert_eq!(
            proxy_node_name("coop_a", "/ntari/ntari_dns_node"),
            Some(("/remote/coop_a/ntari".into(), "ntari_dns_node".into()))
        );
        assert_eq!(
            proxy_node_name("coop_a", "/talker"),
            Some(("/remote/coop_a".into(), "talker".into()))
        );
        assert_eq!(proxy_node_name("coop_a", "no-slash"), None);
        assert_eq!(proxy_node_name("coop_a", "/ntari/bad name"), None);
    }

    #[test]
    fn type_hashes_are_checked() {
        let good = format!("typehash=RIHS01_{};", "a".repeat(64));
        assert!(valid_type_hash(&good));
        assert!(!valid_type_hash("typehash=RIHS01_abc;"));
        assert!(!valid_type_hash(&format!(
            "typehash=RIHS01_{};x",
            "a".repeat(64)
        )));
        assert!(!valid_type_hash(""));
    }

    #[test]
    fn garbage_samples_are_recognised() {
        let good = wire::encode(&ntari_node::msg::std_msgs::Bool { data: true }).expect("encodes");
        assert!(well_formed("std_msgs/msg/Bool", &good));
        assert!(!well_formed("std_msgs/msg/Bool", &[0, 1, 0]));
        assert!(!well_formed("std_msgs/msg/Bool", &[7, 7, 0, 0, 1]));
        // A String whose length prefix runs past the end.
        assert!(!well_formed(
            "std_msgs/msg/String",
            &[0, 1, 0, 0, 0xff, 0xff, 0, 0, b'x']
        ));
        assert!(well_formed("some_pkg/msg/Unknown", &[0, 1, 0, 0, 1, 2, 3]));
    }

    #[test]
    fn route_ids_are_stable_per_writer() {
        let a = route_id(&[1; 16]);
        assert_eq!(a, route_id(&[1; 16]));
        assert_ne!(a, route_id(&[2; 16]));
        assert_eq!(a.len(), 16);
    }

    #[test]
    fn volatile_depth_is_bounded_and_latched_keeps_one() {
        assert_eq!(route_qos(true, true, 10).depth, 1);
        assert_eq!(route_qos(true, false, 0).depth, 1);
        assert_eq!(route_qos(false, false, 5000).depth, MAX_DEPTH);
    }
}

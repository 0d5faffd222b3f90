//! The ROS 2 graph, spoken as rmw_cyclonedds (Jazzy) speaks it.
//!
//! A [`Context`] is one DDS participant, like an rmw context; it owns the
//! `ros_discovery_info` writer through which `ros2 node list` learns which
//! nodes live in this process and which endpoints belong to each.
//! [`Node`]s are names in that table; publishers, subscriptions, service
//! servers and clients register their DDS GUIDs with their node for as long
//! as they live.
//!
//! Invariant: `ros_discovery_info` is republished whenever a node or an
//! endpoint is added or removed, under the same lock that changes the table,
//! so the latched sample is never older than the table.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

use crate::dds::{DdsError, EndpointQos, Participant, Writer};
use crate::msg::rmw_dds_common::{Gid, NodeEntitiesInfo, ParticipantEntitiesInfo};
use crate::msg::RosMessage;
use crate::typehash::{self, TypeDescription};

mod inbox;
pub mod names;
pub mod qos;
mod raw;
mod service;
mod topic;
mod type_description;
mod view;
pub mod wire;

pub use raw::{RawReader, RawWriter};
pub use service::{Request, RequestHeader, ServiceClient, ServiceServer};
pub use topic::{Publisher, Subscription};
pub use type_description::TypeDescriptionServer;
pub use view::GraphView;
pub use wire::WireError;

/// Largest message a subscription accepts; bigger samples are dropped with a
/// log line so a misbehaving peer cannot make a node buffer without bound.
pub const MAX_MESSAGE_SIZE: usize = 4 * 1024 * 1024;
/// Largest service request a server accepts (lifecycle requests are tiny).
pub const MAX_REQUEST_SIZE: usize = 64 * 1024;

/// Errors of the graph layer.
#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    #[error(transparent)]
    Dds(#[from] DdsError),
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error("invalid ROS name {name:?}: {why}")]
    InvalidName { name: String, why: &'static str },
    #[error("{0}")]
    DomainId(String),
    #[error("service {service} did not become available within {seconds:.1} s")]
    ServiceUnavailable { service: String, seconds: f64 },
    #[error("no reply from service {service} within {seconds:.1} s")]
    Timeout { service: String, seconds: f64 },
}

/// The largest domain id a ROS 2 participant can use with default ports.
pub use crate::config::MAX_DOMAIN_ID;

/// Reads `ROS_DOMAIN_ID` as rcl does: unset or empty means 0. The rules
/// live in `config`, which also applies them over ntari.toml's `domain_id`.
pub fn domain_id_from_env() -> Result<u32, GraphError> {
    crate::config::domain_id_with_env(0, std::env::var_os("ROS_DOMAIN_ID").as_deref())
        .map_err(|e| GraphError::DomainId(e.to_string()))
}

/// One node's row in `ros_discovery_info`, and the types its endpoints use.
struct NodeEntry {
    id: u64,
    namespace: String,
    name: String,
    readers: Vec<[u8; 16]>,
    writers: Vec<[u8; 16]>,
    /// What `~/get_type_description` can describe: rcl's node type cache.
    types: Vec<UsedType>,
}

/// A type some endpoints of a node use, by RIHS01 hash.
struct UsedType {
    hash: String,
    description: TypeDescription,
    /// Endpoints using it; the entry goes when the last one does.
    users: usize,
}

impl NodeEntry {
    fn add_type_user(&mut self, hash: &str, description: &TypeDescription) {
        match self.types.iter_mut().find(|t| t.hash == hash) {
            Some(used) => used.users += 1,
            None => self.types.push(UsedType {
                hash: hash.to_string(),
                description: description.clone(),
                users: 1,
            }),
        }
    }

    fn remove_type_user(&mut self, hash: &str) {
        if let Some(used) = self.types.iter_mut().find(|t| t.hash == hash) {
            used.users -= 1;
        }
        self.types.retain(|t| t.users > 0);
    }
}

pub(crate) struct ContextInner {
    // Field order matters for Drop: the writer goes before the participant.
    discovery: Writer,
    participant: Participant,
    participant_gid: [u8; 16],
    domain_id: u32,
    nodes: Mutex<Vec<NodeEntry>>,
    next_node_id: AtomicU64,
}

/// A process's membership of a ROS 2 domain: one DDS participant.
#[derive(Clone)]
pub struct Context {
    inner: Arc<ContextInner>,
}

impl Context {
    /// Joins the domain named by `ROS_DOMAIN_ID` (default 0). Cyclone itself
    /// honours `CYCLONEDDS_URI` for interfaces, peers and tracing.
    pub fn from_env() -> Result<Self, GraphError> {
        Self::new(domain_id_from_env()?)
    }

    pub fn new(domain_id: u32) -> Result<Self, GraphError> {
        if domain_id > MAX_DOMAIN_ID {
            return Err(GraphError::DomainId(format!(
                "domain id {domain_id} is out of range: ROS 2 domain ids are 0 to {MAX_DOMAIN_ID}"
            )));
        }
        // rmw_cyclonedds marks every participant with its security enclave.
        let participant = Participant::new(domain_id, "enclave=/;")?;
        let participant_gid = participant.guid()?;
        let discovery = Writer::new(
            &participant,
            "ros_discovery_info",
            &names::dds_type_name(ParticipantEntitiesInfo::TYPE_NAME),
            &qos::LATCHED,
            &typehash::user_data_for(&ParticipantEntitiesInfo::type_description()),
            Arc::new(Notify::new()),
        )?;
        let inner = Arc::new(ContextInner {
            discovery,
            participant,
            participant_gid,
            domain_id,
            nodes: Mutex::new(Vec::new()),
            next_node_id: AtomicU64::new(1),
        });
        inner.publish_discovery(&inner.lock_nodes())?;
        Ok(Context { inner })
    }

    pub fn domain_id(&self) -> u32 {
        self.inner.domain_id
    }

    /// The GUID of this context's DDS participant: every endpoint it
    /// creates shares its first 12 bytes.
    pub fn participant_gid(&self) -> [u8; 16] {
        self.inner.participant_gid
    }

    /// Watches every writer on the domain (builtin `DCPSPublication`);
    /// `notify` is woken when there is news.
    pub fn watch_publications(
        &self,
        notify: Arc<Notify>,
    ) -> Result<crate::dds::PublicationWatcher, GraphError> {
        Ok(crate::dds::PublicationWatcher::new(
            &self.inner.participant,
            notify,
        )?)
    }

    /// Adds a node `namespace/name` to this participant's graph entry.
    pub fn create_node(&self, namespace: &str, name: &str) -> Result<Node, GraphError> {
        names::validate_namespace(namespace)?;
        names::validate_node_name(name)?;
        let id = self.inner.next_node_id.fetch_add(1, Ordering::Relaxed);
        let mut nodes = self.inner.lock_nodes();
        nodes.push(NodeEntry {
            id,
            namespace: namespace.to_string(),
            name: name.to_string(),
            readers: Vec::new(),
            writers: Vec::new(),
            types: Vec::new(),
        });
        self.inner.publish_discovery(&nodes)?;
        Ok(Node {
            ctx: self.inner.clone(),
            id,
            namespace: namespace.to_string(),
            name: name.to_string(),
        })
    }
}

impl ContextInner {
    fn lock_nodes(&self) -> MutexGuard<'_, Vec<NodeEntry>> {
        // A panic while holding this lock cannot leave the table half-edited
        // (every edit is a single push/retain), so poisoning is ignored.
        self.nodes.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn publish_discovery(&self, nodes: &[NodeEntry]) -> Result<(), GraphError> {
        let gids = |v: &[[u8; 16]]| v.iter().map(|g| Gid { data: *g }).collect();
        let info = ParticipantEntitiesInfo {
            gid: Gid {
                data: self.participant_gid,
            },
            node_entities_info_seq: nodes
                .iter()
                .map(|n| NodeEntitiesInfo {
                    node_namespace: n.namespace.clone(),
                    node_name: n.name.clone(),
                    reader_gid_seq: gids(&n.readers),
                    writer_gid_seq: gids(&n.writers),
                })
                .collect(),
        };
        self.discovery.write(&wire::encode(&info)?)?;
        Ok(())
    }

    fn edit_node(&self, node_id: u64, edit: impl FnOnce(&mut NodeEntry)) {
        let mut nodes = self.lock_nodes();
        if let Some(entry) = nodes.iter_mut().find(|n| n.id == node_id) {
            edit(entry);
        }
        if let Err(e) = self.publish_discovery(&nodes) {
            tracing::warn!(error = %e, "could not republish ros_discovery_info");
        }
    }
}

/// Which side of a topic an endpoint is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EndpointKind {
    Reader,
    Writer,
}

/// An endpoint's entry in its node's discovery row and type cache;
/// removed on drop.
pub(crate) struct Registration {
    ctx: Arc<ContextInner>,
    node_id: u64,
    gid: [u8; 16],
    kind: EndpointKind,
    /// None for a raw endpoint, whose type this process does not know.
    type_hash: Option<String>,
}

impl Registration {
    /// `description` is the endpoint's message type, or for a service
    /// server or client the service type (what rcl registers).
    fn new(node: &Node, kind: EndpointKind, gid: [u8; 16], description: &TypeDescription) -> Self {
        Self::with_type(node, kind, gid, Some(description))
    }

    fn with_type(
        node: &Node,
        kind: EndpointKind,
        gid: [u8; 16],
        description: Option<&TypeDescription>,
    ) -> Self {
        let type_hash = description.map(typehash::rihs01_string);
        node.ctx.edit_node(node.id, |n| {
            match kind {
                EndpointKind::Reader => n.readers.push(gid),
                EndpointKind::Writer => n.writers.push(gid),
            }
            if let (Some(hash), Some(description)) = (&type_hash, description) {
                n.add_type_user(hash, description);
            }
        });
        Registration {
            ctx: node.ctx.clone(),
            node_id: node.id,
            gid,
            kind,
            type_hash,
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let (gid, kind, hash) = (self.gid, self.kind, &self.type_hash);
        self.ctx.edit_node(self.node_id, |n| {
            match kind {
                EndpointKind::Reader => n.readers.retain(|g| *g != gid),
                EndpointKind::Writer => n.writers.retain(|g| *g != gid),
            }
            if let Some(hash) = hash {
                n.remove_type_user(hash);
            }
        });
    }
}

/// A node's type cache, readable after the [`Node`] value is gone from
/// reach (a server task holds this, not the node).
#[derive(Clone)]
pub(crate) struct TypeCache {
    ctx: Arc<ContextInner>,
    node_id: u64,
}

impl TypeCache {
    /// The description of a type one of the node's endpoints uses, by its
    /// `RIHS01_…` hash.
    pub(crate) fn lookup(&self, hash: &str) -> Option<TypeDescription> {
        let nodes = self.ctx.lock_nodes();
        let node = nodes.iter().find(|n| n.id == self.node_id)?;
        node.types
            .iter()
            .find(|t| t.hash == hash)
            .map(|t| t.description.clone())
    }
}

/// A named ROS 2 node inside a [`Context`]. Dropping it removes it from the
/// graph (its endpoints keep their own registrations until they drop).
pub struct Node {
    ctx: Arc<ContextInner>,
    id: u64,
    namespace: String,
    name: String,
}

impl Node {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// `/namespace/name`, as `ros2 node list` prints it.
    pub fn fully_qualified_name(&self) -> String {
        names::node_fqn(&self.namespace, &self.name)
    }

    /// Expands a relative or `~/` name against this node.
    pub fn resolve(&self, name: &str) -> Result<String, GraphError> {
        names::resolve(&self.namespace, &self.name, name)
    }

    pub fn create_publisher<T: RosMessage>(
        &self,
        topic: &str,
        qos: EndpointQos,
    ) -> Result<Publisher<T>, GraphError> {
        Publisher::new(self, topic, qos)
    }

    pub fn create_subscription<T: RosMessage>(
        &self,
        topic: &str,
        qos: EndpointQos,
    ) -> Result<Subscription<T>, GraphError> {
        Subscription::new(self, topic, qos)
    }

    pub fn create_service<S: crate::msg::RosService>(
        &self,
        name: &str,
    ) -> Result<ServiceServer<S>, GraphError> {
        ServiceServer::new(self, name)
    }

    pub fn create_client<S: crate::msg::RosService>(
        &self,
        name: &str,
    ) -> Result<ServiceClient<S>, GraphError> {
        ServiceClient::new(self, name)
    }

    /// A fresh service/client id, rendered as rmw_cyclonedds renders it,
    /// for the `serviceid=`/`clientid=` user_data of raw service endpoints.
    pub fn new_endpoint_id(&self) -> Result<String, GraphError> {
        service::new_endpoint_id(self)
    }

    pub(crate) fn participant(&self) -> &Participant {
        &self.ctx.participant
    }

    pub(crate) fn type_cache(&self) -> TypeCache {
        TypeCache {
            ctx: self.ctx.clone(),
            node_id: self.id,
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let mut nodes = self.ctx.lock_nodes();
        nodes.retain(|n| n.id != self.id);
        if let Err(e) = self.ctx.publish_discovery(&nodes) {
            tracing::warn!(error = %e, "could not republish ros_discovery_info");
        }
    }
}

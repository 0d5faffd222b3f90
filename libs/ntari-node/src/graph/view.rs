//! Who is on the graph: the nodes every process announces on
//! `ros_discovery_info`, read the way `ros2 node list` reads them.
//!
//! Each participant's row (its latched `ParticipantEntitiesInfo`) is kept
//! per writer. A row counts only while its writer is still matched: a
//! process that exits, even killed, drops out of the list when Cyclone
//! loses its participant, without waiting for a new sample.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use super::{names, qos, Context, GraphError};
use crate::dds::{EndpointQos, Reader, Taken};
use crate::msg::rmw_dds_common::ParticipantEntitiesInfo;
use crate::msg::RosMessage;
use crate::typehash;

/// Enough rows for any one host's domain, taken as they arrive.
const ROWS: u32 = 256;

/// One node of a row: its fully qualified name and its writers' GUIDs.
type NodeRow = (String, Vec<[u8; 16]>);

/// The graph's nodes as announced on `ros_discovery_info`.
pub struct GraphView {
    reader: Reader,
    notify: Arc<Notify>,
    /// Writer instance handle → its nodes.
    rows: HashMap<u64, Vec<NodeRow>>,
}

impl GraphView {
    pub fn new(context: &Context) -> Result<GraphView, GraphError> {
        let notify = Arc::new(Notify::new());
        let reader = Reader::new(
            &context.inner.participant,
            "ros_discovery_info",
            &names::dds_type_name(ParticipantEntitiesInfo::TYPE_NAME),
            &EndpointQos {
                depth: ROWS,
                ..qos::LATCHED
            },
            &typehash::user_data_for(&ParticipantEntitiesInfo::type_description()),
            notify.clone(),
            super::MAX_MESSAGE_SIZE,
        )?;
        Ok(GraphView {
            reader,
            notify,
            rows: HashMap::new(),
        })
    }

    /// Takes the rows that arrived since the last call.
    fn take(&mut self) {
        for taken in self.reader.take(usize::MAX) {
            let Taken::Sample {
                payload,
                publication_handle,
            } = taken
            else {
                continue;
            };
            match super::wire::decode::<ParticipantEntitiesInfo>(&payload) {
                Ok(info) => {
                    let nodes = info
                        .node_entities_info_seq
                        .iter()
                        .map(|n| {
                            let writers = n.writer_gid_seq.iter().map(|g| g.data).collect();
                            (names::node_fqn(&n.node_namespace, &n.node_name), writers)
                        })
                        .collect();
                    self.rows.insert(publication_handle, nodes);
                }
                Err(e) => {
                    tracing::debug!(error = %e, "skipped an undecodable ros_discovery_info row")
                }
            }
        }
    }

    /// The fully qualified names of the nodes alive now, sorted; this
    /// process's own nodes included.
    pub fn nodes(&mut self) -> Vec<String> {
        self.refresh();
        let mut nodes: Vec<String> = self
            .rows
            .values()
            .flatten()
            .map(|(fqn, _)| fqn.clone())
            .collect();
        nodes.sort();
        nodes.dedup();
        nodes
    }

    /// Which node owns each writer announced now: writer GUID → the
    /// node's fully qualified name.
    pub fn writer_owners(&mut self) -> HashMap<[u8; 16], String> {
        self.refresh();
        let mut owners = HashMap::new();
        for (fqn, writers) in self.rows.values().flatten() {
            for gid in writers {
                owners.insert(*gid, fqn.clone());
            }
        }
        owners
    }

    fn refresh(&mut self) {
        self.take();
        let alive = self.reader.matched_writer_handles();
        self.rows.retain(|handle, _| alive.contains(handle));
    }

    /// Waits until the set of rows may have changed, at most `timeout`.
    pub async fn changed(&self, timeout: Duration) {
        let _ = tokio::time::timeout(timeout, self.notify.notified()).await;
    }
}

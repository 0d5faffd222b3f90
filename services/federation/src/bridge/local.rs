//! The local graph as the bridge needs it: every writer on the cooperative's
//! own domain, with its ROS topic and type and the node that owns it.

use std::collections::HashMap;

use ntari_node::graph::GraphView;
use ntari_node::rawdds::{DiscoveredWriter, WriterEvent};
use ntari_node::EndpointQos;

/// One ROS writer on the local domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalWriter {
    pub guid: [u8; 16],
    pub participant: [u8; 16],
    /// ROS topic name (`/ntari/dns/health`).
    pub topic: String,
    /// ROS type (`std_msgs/msg/Bool`).
    pub ros_type: String,
    pub dds_type: String,
    pub user_data: String,
    pub qos: EndpointQos,
    /// Fully qualified name of its node (`/ntari/ntari_dns_node`).
    pub node: String,
}

/// A snapshot the links reconcile against.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct LocalGraph {
    pub writers: Vec<LocalWriter>,
}

/// `pkg::msg::dds_::T_` → `pkg/msg/T`, the inverse of
/// `names::dds_type_name`; None for DDS types that are not ROS messages.
pub fn ros_type_of(dds_type: &str) -> Option<String> {
    let (prefix, short) = dds_type.rsplit_once("::dds_::")?;
    let short = short.strip_suffix('_')?;
    Some(format!("{}/{short}", prefix.replace("::", "/")))
}

/// Writers learnt from discovery, kept until they go.
#[derive(Default)]
pub struct WriterTable {
    writers: HashMap<[u8; 16], DiscoveredWriter>,
}

impl WriterTable {
    pub fn apply(&mut self, events: Vec<WriterEvent>) -> bool {
        let changed = !events.is_empty();
        for event in events {
            match event {
                WriterEvent::Alive(w) => {
                    self.writers.insert(w.guid, w);
                }
                WriterEvent::Gone(guid) => {
                    self.writers.remove(&guid);
                }
            }
        }
        changed
    }

    /// ROS topic writers whose node is known, sorted by GUID.
    pub fn snapshot(&self, view: &mut GraphView) -> LocalGraph {
        let owners = view.writer_owners();
        let mut writers: Vec<LocalWriter> = self
            .writers
            .values()
            .filter_map(|w| {
                let topic = w.topic.strip_prefix("rt")?.to_string();
                if !topic.starts_with('/') {
                    return None;
                }
                Some(LocalWriter {
                    guid: w.guid,
                    participant: w.participant,
                    ros_type: ros_type_of(&w.type_name)?,
                    dds_type: w.type_name.clone(),
                    user_data: String::from_utf8_lossy(&w.user_data).into_owned(),
                    qos: w.qos,
                    node: owners.get(&w.guid)?.clone(),
                    topic,
                })
            })
            .collect();
        writers.sort_by_key(|w| w.guid);
        LocalGraph { writers }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ros_types_from_dds_types() {
        assert_eq!(
            ros_type_of("std_msgs::msg::dds_::Bool_").as_deref(),
            Some("std_msgs/msg/Bool")
        );
        assert_eq!(
            ros_type_of(&ntari_node::graph::names::dds_type_name(
                "diagnostic_msgs/msg/DiagnosticArray"
            ))
            .as_deref(),
            Some("diagnostic_msgs/msg/DiagnosticArray")
        );
        assert_eq!(ros_type_of("DDS::ParticipantBuiltinTopicData"), None);
    }
}

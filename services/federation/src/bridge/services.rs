//! Services across a link, for a partner the serving side trusts and only
//! for the services the agreement names.
//!
//! Requests and replies travel as they are, the rmw_cyclonedds 16-byte
//! request header (client id, sequence number) intact, on
//! `ntari_fed/<agreement>/<server coop>/s/<service id>/rq` and `…/rr`:
//! - the calling side offers a proxy server
//!   `/remote/<partner>/<service>` on the proxy node of the service's
//!   node, and forwards each request over the link;
//! - the serving side is a client of the real service on its own graph:
//!   it writes the request unchanged (so the server's reply echoes the
//!   original header), takes the replies to requests it forwarded (and
//!   only those: the reply topic carries every client's replies) and sends
//!   them back, where the proxy server publishes them for the original
//!   client, which recognises its own header.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ntari_node::graph::{names, Node, RawReader, RawWriter};
use ntari_node::rawdds::{Participant, Reader, Taken, Writer};
use ntari_node::EndpointQos;
use sha2::{Digest, Sha256};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::link::LinkCounters;
use super::plan::{LinkPlan, ServiceRule};

/// Encapsulation header and request header: the shortest valid request.
const HEADER_END: usize = 4 + 16;
/// Largest request or reply forwarded (lifecycle and parameter calls are
/// tiny; a bound keeps a partner from filling memory).
const MAX_CALL_BYTES: usize = 64 * 1024;
/// A request unanswered this long is forgotten.
const PENDING_FOR: Duration = Duration::from_secs(30);
const MAX_PENDING: usize = 1024;
/// How long a request waits for the next hop's reader to be discovered
/// (a link or a service that just came up): a request written before
/// that would be lost, since service topics are volatile.
const MATCH_WAIT: Duration = Duration::from_secs(3);

/// Waits until `matched()` says a reader is there, at most [`MATCH_WAIT`].
async fn until_matched(matched: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + MATCH_WAIT;
    while !matched() {
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    true
}

const SERVICES_QOS: EndpointQos = EndpointQos {
    reliable: true,
    transient_local: false,
    depth: 10,
};

/// A running forwarder; dropping it stops it.
pub struct Forwarder {
    pub service: String,
    task: JoinHandle<()>,
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn service_id(name: &str) -> String {
    Sha256::digest(name.as_bytes())[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn fed_topics(plan: &LinkPlan, server_coop: &str, name: &str) -> (String, String) {
    let base = format!(
        "ntari_fed/{}/{server_coop}/s/{}",
        plan.agreement,
        service_id(name)
    );
    (format!("{base}/rq"), format!("{base}/rr"))
}

/// DDS request and reply types of `pkg/srv/T`.
fn dds_types(ros_type: &str) -> (String, String) {
    (
        names::dds_type_name(&format!("{ros_type}_Request")),
        names::dds_type_name(&format!("{ros_type}_Response")),
    )
}

/// The node a service belongs to: `/ntari/ntari_dns_node/get_state` →
/// `/ntari/ntari_dns_node` (lifecycle and parameter services are `~/…`).
pub fn owner_node(service: &str) -> Option<&str> {
    service
        .rsplit_once('/')
        .map(|(node, _)| node)
        .filter(|n| !n.is_empty())
}

fn header_of(payload: &[u8]) -> Option<[u8; 16]> {
    payload.get(4..HEADER_END)?.try_into().ok()
}

/// The serving side: our real service, called for the partner.
pub fn serve(
    plan: &LinkPlan,
    rule: &ServiceRule,
    fed: &Participant,
    bridge_node: &Node,
    counters: Arc<LinkCounters>,
) -> Result<Forwarder, String> {
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let (fed_rq, fed_rr) = fed_topics(plan, &plan.our_coop, &rule.name);
    let (request_type, reply_type) = dds_types(&rule.ros_type);
    let (local_rq, local_rr) = names::service_dds_names(&rule.name);
    let id = bridge_node.new_endpoint_id().map_err(|e| err(&e))?;
    let client_data = format!("clientid={id};");
    let to_server = RawWriter::new(
        bridge_node,
        &local_rq,
        &request_type,
        &client_data,
        SERVICES_QOS,
    )
    .map_err(|e| err(&e))?;
    let from_server = RawReader::new(
        bridge_node,
        &local_rr,
        &reply_type,
        &client_data,
        SERVICES_QOS,
        MAX_CALL_BYTES,
    )
    .map_err(|e| err(&e))?;
    let notify = Arc::new(Notify::new());
    let requests = Reader::new(
        fed,
        &fed_rq,
        &request_type,
        &SERVICES_QOS,
        "",
        notify.clone(),
        MAX_CALL_BYTES,
    )
    .map_err(|e| err(&e))?;
    let replies = Writer::new(
        fed,
        &fed_rr,
        &reply_type,
        &SERVICES_QOS,
        "",
        Arc::new(Notify::new()),
    )
    .map_err(|e| err(&e))?;
    let service = rule.name.clone();
    let task = tokio::spawn(async move {
        let mut pending: HashMap<[u8; 16], Instant> = HashMap::new();
        loop {
            tokio::select! {
                _ = notify.notified() => {
                    for taken in requests.take(64) {
                        let Taken::Sample { payload, .. } = taken else {
                            counters.dropped_oversized.fetch_add(1, Ordering::Relaxed);
                            continue;
                        };
                        let Some(header) = header_of(&payload) else {
                            counters.dropped_garbage.fetch_add(1, Ordering::Relaxed);
                            continue;
                        };
                        pending.retain(|_, at| at.elapsed() < PENDING_FOR);
                        if pending.len() >= MAX_PENDING {
                            counters.dropped_rate.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                        pending.insert(header, Instant::now());
                        if !until_matched(|| !to_server.matched_reader_user_data().is_empty()).await {
                            tracing::warn!(service = %service, "the service is not on this graph; a partner's request is dropped");
                            continue;
                        }
                        if to_server.write(&payload).is_ok() {
                            counters.requests.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                (reply, _) = from_server.recv() => {
                    let Some(header) = header_of(&reply) else { continue };
                    if pending.remove(&header).is_some() {
                        if let Err(e) = replies.write(&reply) {
                            tracing::debug!(service = %service, error = %e, "could not send a reply over the link");
                        }
                    }
                }
            }
        }
    });
    Ok(Forwarder {
        service: rule.name.clone(),
        task,
    })
}

/// The calling side: a proxy server for the partner's service on `node`
/// (the proxy of the service's own node).
pub fn proxy(
    plan: &LinkPlan,
    rule: &ServiceRule,
    fed: &Participant,
    node: Arc<Node>,
    counters: Arc<LinkCounters>,
) -> Result<Forwarder, String> {
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let (fed_rq, fed_rr) = fed_topics(plan, &plan.partner_coop, &rule.name);
    let (request_type, reply_type) = dds_types(&rule.ros_type);
    let proxied = format!("/remote/{}{}", plan.partner_coop, rule.name);
    let (local_rq, local_rr) = names::service_dds_names(&proxied);
    let id = node.new_endpoint_id().map_err(|e| err(&e))?;
    let server_data = format!("serviceid={id};");
    let from_clients = RawReader::new(
        &node,
        &local_rq,
        &request_type,
        &server_data,
        SERVICES_QOS,
        MAX_CALL_BYTES,
    )
    .map_err(|e| err(&e))?;
    let to_clients = RawWriter::new(&node, &local_rr, &reply_type, &server_data, SERVICES_QOS)
        .map_err(|e| err(&e))?;
    let requests = Writer::new(
        fed,
        &fed_rq,
        &request_type,
        &SERVICES_QOS,
        "",
        Arc::new(Notify::new()),
    )
    .map_err(|e| err(&e))?;
    let notify = Arc::new(Notify::new());
    let replies = Reader::new(
        fed,
        &fed_rr,
        &reply_type,
        &SERVICES_QOS,
        "",
        notify.clone(),
        MAX_CALL_BYTES,
    )
    .map_err(|e| err(&e))?;
    let proxied_name = proxied.clone();
    let task = tokio::spawn(async move {
        let _node = node;
        loop {
            tokio::select! {
                (request, _) = from_clients.recv() => {
                    if header_of(&request).is_none() {
                        counters.dropped_garbage.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    if !until_matched(|| !requests.matched_reader_user_data().is_empty()).await {
                        tracing::warn!(service = %proxied_name, "the partner does not serve this now; a request is dropped");
                        continue;
                    }
                    if requests.write(&request).is_ok() {
                        counters.requests.fetch_add(1, Ordering::Relaxed);
                    }
                }
                _ = notify.notified() => {
                    for taken in replies.take(64) {
                        match taken {
                            Taken::Sample { payload, .. } if header_of(&payload).is_some() => {
                                let _ = to_clients.write(&payload);
                            }
                            Taken::Sample { .. } => {
                                counters.dropped_garbage.fetch_add(1, Ordering::Relaxed);
                            }
                            Taken::Oversized { .. } => {
                                counters.dropped_oversized.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                }
            }
        }
    });
    Ok(Forwarder {
        service: proxied,
        task,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_belong_to_their_node() {
        assert_eq!(
            owner_node("/ntari/ntari_dns_node/get_state"),
            Some("/ntari/ntari_dns_node")
        );
        assert_eq!(owner_node("/get_state"), None);
    }

    #[test]
    fn service_types_follow_rmw_cyclonedds() {
        assert_eq!(
            dds_types("lifecycle_msgs/srv/GetState"),
            (
                "lifecycle_msgs::srv::dds_::GetState_Request_".to_string(),
                "lifecycle_msgs::srv::dds_::GetState_Response_".to_string()
            )
        );
    }

    #[test]
    fn the_header_is_bytes_4_to_20() {
        let mut p = vec![0, 1, 0, 0];
        p.extend(1..=16u8);
        assert_eq!(header_of(&p), Some(core::array::from_fn(|i| i as u8 + 1)));
        assert_eq!(header_of(&[0, 1, 0, 0, 1]), None);
    }
}

//! Services in the rmw_cyclonedds format.
//!
//! A service `/x/y` is a request topic `rq/x/yRequest` and a reply topic
//! `rr/x/yReply`. Every payload carries, right after the encapsulation
//! header, a 16-byte header: the client's request-writer instance handle and
//! a sequence number; replies echo it so each client can pick out its own.
//! Both endpoints of a server carry `serviceid=<id>;` in their user_data and
//! both endpoints of a client `clientid=<id>;`, which is how each side knows
//! the other's reader and writer belong together.

use std::collections::HashSet;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicI64, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio::time::{sleep, Instant};

use super::inbox::Inbox;
use super::{names, qos, wire, EndpointKind, GraphError, Node, Registration, MAX_REQUEST_SIZE};
use crate::dds::{Reader, Writer};
use crate::msg::{RosMessage, RosService};
use crate::typehash;

/// The 16 bytes in front of every request and reply body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestHeader {
    pub client_guid: u64,
    pub sequence: i64,
}

/// How a request or reply travels: header, then the body's fields.
#[derive(Serialize, Deserialize)]
struct Framed<T> {
    header: RequestHeader,
    body: T,
}

/// How long a server waits for a client's reply reader to be discovered
/// before answering anyway. rmw_cyclonedds waits 100 ms; discovery on a
/// busy Raspberry Pi can take longer, and an unanswered `ros2 lifecycle set`
/// costs an operator far more than this wait.
const CLIENT_DISCOVERY_WAIT: Duration = Duration::from_secs(1);
const POLL: Duration = Duration::from_millis(10);

static NEXT_ENDPOINT_ID: AtomicU32 = AtomicU32::new(1);

/// A unique client/service id: the participant's GUID prefix plus a counter,
/// rendered as rmw_cyclonedds renders it in user_data.
pub(crate) fn new_endpoint_id(node: &Node) -> Result<String, GraphError> {
    let mut id = node.participant().guid()?;
    let n = NEXT_ENDPOINT_ID.fetch_add(1, Ordering::Relaxed);
    id[12..].copy_from_slice(&n.to_be_bytes());
    Ok(endpoint_id_string(&id))
}

/// rmw_cyclonedds' rendering of a client/service id (`csid_to_string`):
/// C++ `std::hex << std::setw(2)` on the first byte only, so it is padded
/// with a space, then `.`-separated unpadded hex (" 1.10.a3.…").
fn endpoint_id_string(id: &[u8; 16]) -> String {
    let mut out = format!("{:2x}", id[0]);
    for b in &id[1..] {
        out.push_str(&format!(".{b:x}"));
    }
    out
}

/// The value of `key=` in a `k=v;k=v;` user_data string.
fn user_data_value(user_data: &[u8], key: &str) -> Option<String> {
    let text = std::str::from_utf8(user_data).ok()?;
    text.split(';').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then(|| v.to_string())
    })
}

/// user_data of the request-side and reply-side endpoints: the id shared
/// by both, then the type hash of the message each one carries (the
/// `_Request` and `_Response` types, as rmw_cyclonedds Jazzy does).
fn endpoint_user_data<S: RosService>(role: &str, id: &str) -> (String, String) {
    let with_hash = |desc| format!("{role}={id};{}", typehash::user_data_for(&desc));
    (
        with_hash(S::Request::type_description()),
        with_hash(S::Response::type_description()),
    )
}

/// How many distinct foreign clients a server remembers having warned
/// about; past that it forgets them all (and may warn again), so a flood of
/// new clients cannot grow the set without bound.
const FOREIGN_CLIENTS_REMEMBERED: usize = 256;

/// The DDS vendor of an endpoint, from the RTPS vendor id most vendors put
/// in the first two bytes of their GUIDs.
fn vendor_of(guid: &[u8; 16]) -> &'static str {
    match (guid[0], guid[1]) {
        (0x01, 0x01) => "RTI Connext DDS (rmw_connextdds)",
        (0x01, 0x0f) => "eProsima Fast DDS (rmw_fastrtps_cpp)",
        (0x01, 0x10) => "Eclipse Cyclone DDS, but not through rmw_cyclonedds_cpp",
        (0x01, 0x11) => "GurumNetworks GurumDDS (rmw_gurumdds_cpp)",
        _ => "an unknown DDS vendor",
    }
}

fn guid_string(guid: &[u8; 16]) -> String {
    guid.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(".")
}

/// One request taken by a [`ServiceServer`].
pub struct Request<S: RosService> {
    pub header: RequestHeader,
    pub body: S::Request,
    /// The client's `clientid`, when its writer advertised one.
    client_id: Option<String>,
}

/// Answers requests for one service.
pub struct ServiceServer<S: RosService> {
    _registrations: [Registration; 2],
    requests: Inbox,
    replies: Writer,
    name: String,
    /// GUIDs of request writers without `clientid=` already warned about.
    foreign_clients: Mutex<HashSet<[u8; 16]>>,
    _type: PhantomData<fn() -> S>,
}

impl<S: RosService> ServiceServer<S> {
    pub(crate) fn new(node: &Node, name: &str) -> Result<Self, GraphError> {
        let name = node.resolve(name)?;
        let (rq, rr) = names::service_dds_names(&name);
        let id = new_endpoint_id(node)?;
        let (request_user_data, reply_user_data) = endpoint_user_data::<S>("serviceid", &id);
        let notify = Arc::new(Notify::new());
        let reader = Reader::new(
            node.participant(),
            &rq,
            &names::dds_type_name(S::Request::TYPE_NAME),
            &qos::SERVICES,
            &request_user_data,
            notify.clone(),
            MAX_REQUEST_SIZE,
        )?;
        let replies = Writer::new(
            node.participant(),
            &rr,
            &names::dds_type_name(S::Response::TYPE_NAME),
            &qos::SERVICES,
            &reply_user_data,
            Arc::new(Notify::new()),
        )?;
        let service_type = S::type_description();
        let registrations = [
            Registration::new(node, EndpointKind::Reader, reader.guid()?, &service_type),
            Registration::new(node, EndpointKind::Writer, replies.guid()?, &service_type),
        ];
        Ok(ServiceServer {
            _registrations: registrations,
            requests: Inbox::new(reader, notify, rq),
            replies,
            name,
            foreign_clients: Mutex::new(HashSet::new()),
            _type: PhantomData,
        })
    }

    /// The resolved service name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Waits for the next well-formed request. Malformed ones (truncated,
    /// wrong encapsulation, bad CDR) are logged and dropped: without a
    /// readable header there is nobody to answer. So are requests from
    /// clients on another RMW (see [`Self::ignore_foreign_client`]).
    /// Cancel-safe.
    pub async fn next(&self) -> Request<S> {
        loop {
            let incoming = self.requests.next().await;
            let writer = self
                .requests
                .reader
                .matched_writer(incoming.publication_handle);
            let client_id = writer
                .as_ref()
                .and_then(|w| user_data_value(&w.user_data, "clientid"));
            if let (Some(writer), None) = (&writer, &client_id) {
                self.ignore_foreign_client(writer.guid, incoming.payload.len());
                continue;
            }
            match wire::decode::<Framed<S::Request>>(&incoming.payload) {
                Ok(framed) => {
                    return Request {
                        header: framed.header,
                        body: framed.body,
                        client_id,
                    };
                }
                Err(e) => tracing::warn!(
                    service = %self.name,
                    error = %e,
                    bytes = incoming.payload.len(),
                    "dropped a malformed request"
                ),
            }
        }
    }

    /// Every rmw_cyclonedds client marks its request writer with
    /// `clientid=`; a writer without it belongs to a client on another RMW
    /// (rmw_fastrtps keeps the request id outside the payload, so its
    /// requests lack the 16-byte header and cannot be answered in a form
    /// it would read). Warns once per client with what to do, then drops
    /// its requests quietly.
    fn ignore_foreign_client(&self, guid: [u8; 16], bytes: usize) {
        let mut seen = self
            .foreign_clients
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if seen.len() >= FOREIGN_CLIENTS_REMEMBERED {
            seen.clear();
        }
        if seen.insert(guid) {
            tracing::warn!(
                service = %self.name,
                client = %guid_string(&guid),
                vendor = vendor_of(&guid),
                "ignoring requests from a client on another ROS 2 middleware: ROS 2 services do \
                 not work across RMW vendors, and this node speaks rmw_cyclonedds_cpp. Run the \
                 caller with RMW_IMPLEMENTATION=rmw_cyclonedds_cpp (topics such as health and \
                 status can be watched from any RMW)"
            );
        } else {
            tracing::debug!(service = %self.name, client = %guid_string(&guid), bytes, "ignored a request from a client on another RMW");
        }
    }

    /// Sends the reply to `request`.
    ///
    /// Like rmw_cyclonedds, first waits (up to a second) until the client's
    /// reply reader is matched, so a reply to a freshly started client is
    /// not lost to discovery timing.
    pub async fn respond(
        &self,
        request: &Request<S>,
        response: &S::Response,
    ) -> Result<(), GraphError> {
        if let Some(client_id) = &request.client_id {
            let deadline = Instant::now() + CLIENT_DISCOVERY_WAIT;
            while !self
                .replies
                .matched_reader_user_data()
                .iter()
                .any(|ud| user_data_value(ud, "clientid").as_deref() == Some(client_id))
            {
                if Instant::now() >= deadline {
                    tracing::debug!(service = %self.name, client_id, "client reply reader not seen; replying anyway");
                    break;
                }
                sleep(POLL).await;
            }
        }
        let framed = Framed {
            header: request.header,
            body: response,
        };
        self.replies.write(&wire::encode(&framed)?)?;
        Ok(())
    }
}

/// Calls one service.
pub struct ServiceClient<S: RosService> {
    _registrations: [Registration; 2],
    requests: Writer,
    replies: Inbox,
    client_guid: u64,
    next_sequence: AtomicI64,
    name: String,
    _type: PhantomData<fn() -> S>,
}

impl<S: RosService> ServiceClient<S> {
    pub(crate) fn new(node: &Node, name: &str) -> Result<Self, GraphError> {
        let name = node.resolve(name)?;
        let (rq, rr) = names::service_dds_names(&name);
        let id = new_endpoint_id(node)?;
        let (request_user_data, reply_user_data) = endpoint_user_data::<S>("clientid", &id);
        let requests = Writer::new(
            node.participant(),
            &rq,
            &names::dds_type_name(S::Request::TYPE_NAME),
            &qos::SERVICES,
            &request_user_data,
            Arc::new(Notify::new()),
        )?;
        let notify = Arc::new(Notify::new());
        let reader = Reader::new(
            node.participant(),
            &rr,
            &names::dds_type_name(S::Response::TYPE_NAME),
            &qos::SERVICES,
            &reply_user_data,
            notify.clone(),
            super::MAX_MESSAGE_SIZE,
        )?;
        let service_type = S::type_description();
        let registrations = [
            Registration::new(node, EndpointKind::Writer, requests.guid()?, &service_type),
            Registration::new(node, EndpointKind::Reader, reader.guid()?, &service_type),
        ];
        Ok(ServiceClient {
            _registrations: registrations,
            client_guid: requests.instance_handle()?,
            requests,
            replies: Inbox::new(reader, notify, rr),
            next_sequence: AtomicI64::new(1),
            name,
            _type: PhantomData,
        })
    }

    /// True when one server's request reader and reply writer are both
    /// matched (same `serviceid`), as `rmw_service_server_is_available`.
    pub fn is_service_available(&self) -> bool {
        let readers: Vec<String> = self
            .requests
            .matched_reader_user_data()
            .iter()
            .filter_map(|ud| user_data_value(ud, "serviceid"))
            .collect();
        self.replies
            .reader
            .matched_writers_user_data()
            .iter()
            .filter_map(|ud| user_data_value(ud, "serviceid"))
            .any(|id| readers.contains(&id))
    }

    pub async fn wait_for_service(&self, timeout: Duration) -> Result<(), GraphError> {
        let deadline = Instant::now() + timeout;
        while !self.is_service_available() {
            if Instant::now() >= deadline {
                return Err(GraphError::ServiceUnavailable {
                    service: self.name.clone(),
                    seconds: timeout.as_secs_f64(),
                });
            }
            sleep(POLL).await;
        }
        Ok(())
    }

    /// Sends `request` and waits for the matching reply.
    ///
    /// Replies meant for other clients of the same service (every client
    /// receives every reply) and stale replies are skipped.
    pub async fn call(
        &self,
        request: &S::Request,
        timeout: Duration,
    ) -> Result<S::Response, GraphError> {
        let header = RequestHeader {
            client_guid: self.client_guid,
            sequence: self.next_sequence.fetch_add(1, Ordering::Relaxed),
        };
        self.requests.write(&wire::encode(&Framed {
            header,
            body: request,
        })?)?;
        let wait = async {
            loop {
                let incoming = self.replies.next().await;
                match wire::decode::<Framed<S::Response>>(&incoming.payload) {
                    Ok(framed) if framed.header == header => return framed.body,
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(service = %self.name, error = %e, "dropped a malformed reply")
                    }
                }
            }
        };
        tokio::time::timeout(timeout, wait)
            .await
            .map_err(|_| GraphError::Timeout {
                service: self.name.clone(),
                seconds: timeout.as_secs_f64(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_render_as_rmw_cyclonedds_does() {
        let mut id = [0u8; 16];
        id[0] = 1;
        id[1] = 0x10;
        id[15] = 0xab;
        assert_eq!(
            endpoint_id_string(&id),
            " 1.10.0.0.0.0.0.0.0.0.0.0.0.0.0.ab"
        );
    }

    #[test]
    fn vendors_from_the_guid_prefix() {
        let mut guid = [0u8; 16];
        guid[..2].copy_from_slice(&[0x01, 0x0f]);
        assert!(vendor_of(&guid).contains("Fast DDS"));
        guid[1] = 0x10;
        assert!(vendor_of(&guid).contains("not through rmw_cyclonedds_cpp"));
        guid[1] = 0x99;
        assert_eq!(vendor_of(&guid), "an unknown DDS vendor");
        assert_eq!(guid_string(&guid)[..6], *"01.99.");
    }

    #[test]
    fn user_data_lookup() {
        let ud = b"serviceid=01.02;typehash=RIHS01_ab;";
        assert_eq!(user_data_value(ud, "serviceid").as_deref(), Some("01.02"));
        assert_eq!(
            user_data_value(ud, "typehash").as_deref(),
            Some("RIHS01_ab")
        );
        assert_eq!(user_data_value(ud, "clientid"), None);
        assert_eq!(user_data_value(&[0xff, 0xfe], "clientid"), None);
    }

    #[test]
    fn header_is_sixteen_bytes_before_the_body() {
        let framed = Framed {
            header: RequestHeader {
                client_guid: 0x0102030405060708,
                sequence: 3,
            },
            body: 7u8,
        };
        let bytes = wire::encode(&framed).unwrap();
        assert_eq!(bytes.len(), 4 + 16 + 1);
        assert_eq!(&bytes[4..12], &0x0102030405060708u64.to_le_bytes());
        assert_eq!(&bytes[12..20], &3i64.to_le_bytes());
        assert_eq!(bytes[20], 7);
    }
}

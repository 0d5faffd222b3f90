//! Endpoints for samples this process does not decode: a bridge forwards
//! them as the bytes they are, under the type name and type hash the
//! original endpoint announced. They are registered with their node like
//! any other endpoint, so `ros2 node info` lists them, but add nothing to
//! its type cache (the process has no description of the type).

use std::sync::Arc;

use tokio::sync::Notify;

use super::inbox::{Inbox, Incoming};
use super::{EndpointKind, GraphError, Node, Registration};
use crate::dds::{EndpointQos, Reader, Writer};

/// Writes opaque CDR payloads (encapsulation header included) on one DDS
/// topic, as an endpoint of its node.
pub struct RawWriter {
    _registration: Registration,
    writer: Writer,
    matched: Arc<Notify>,
}

impl RawWriter {
    /// `dds_topic` and `dds_type` are DDS names (`rt/…`, `pkg::msg::dds_::T_`);
    /// `user_data` is what the endpoint announces (`typehash=RIHS01_…;`).
    pub fn new(
        node: &Node,
        dds_topic: &str,
        dds_type: &str,
        user_data: &str,
        qos: EndpointQos,
    ) -> Result<Self, GraphError> {
        let matched = Arc::new(Notify::new());
        let writer = Writer::new(
            node.participant(),
            dds_topic,
            dds_type,
            &qos,
            user_data,
            matched.clone(),
        )?;
        let registration =
            Registration::with_type(node, EndpointKind::Writer, writer.guid()?, None);
        Ok(RawWriter {
            _registration: registration,
            writer,
            matched,
        })
    }

    pub fn write(&self, payload: &[u8]) -> Result<(), GraphError> {
        Ok(self.writer.write(payload)?)
    }

    pub fn guid(&self) -> Result<[u8; 16], GraphError> {
        Ok(self.writer.guid()?)
    }

    /// The writer's instance handle (a service client's id in request headers).
    pub fn instance_handle(&self) -> Result<u64, GraphError> {
        Ok(self.writer.instance_handle()?)
    }

    /// user_data of every reader matched now.
    pub fn matched_reader_user_data(&self) -> Vec<Vec<u8>> {
        self.writer.matched_reader_user_data()
    }

    /// Resolves when a reader matches or goes away.
    pub async fn readers_changed(&self) {
        self.matched.notified().await
    }
}

/// Reads opaque CDR payloads from one DDS topic, as an endpoint of its node.
pub struct RawReader {
    _registration: Registration,
    inbox: Inbox,
}

impl RawReader {
    /// Samples larger than `max_sample_size` are dropped (and logged).
    pub fn new(
        node: &Node,
        dds_topic: &str,
        dds_type: &str,
        user_data: &str,
        qos: EndpointQos,
        max_sample_size: usize,
    ) -> Result<Self, GraphError> {
        let notify = Arc::new(Notify::new());
        let reader = Reader::new(
            node.participant(),
            dds_topic,
            dds_type,
            &qos,
            user_data,
            notify.clone(),
            max_sample_size,
        )?;
        let registration =
            Registration::with_type(node, EndpointKind::Reader, reader.guid()?, None);
        Ok(RawReader {
            _registration: registration,
            inbox: Inbox::new(reader, notify, dds_topic.to_string()),
        })
    }

    /// The next payload and the instance handle of its writer. Cancel-safe.
    pub async fn recv(&self) -> (Vec<u8>, u64) {
        let Incoming {
            payload,
            publication_handle,
        } = self.inbox.next().await;
        (payload, publication_handle)
    }

    /// A payload already received, if any.
    pub fn try_recv(&self) -> Option<(Vec<u8>, u64)> {
        self.inbox
            .try_next()
            .map(|i| (i.payload, i.publication_handle))
    }

    /// The GUID of the matched writer with this instance handle.
    pub fn writer_guid(&self, publication_handle: u64) -> Option<[u8; 16]> {
        self.inbox
            .reader
            .matched_writer(publication_handle)
            .map(|w| w.guid)
    }

    pub fn guid(&self) -> Result<[u8; 16], GraphError> {
        Ok(self.inbox.reader.guid()?)
    }
}

//! Typed publishers and subscriptions.

use std::marker::PhantomData;
use std::sync::Arc;

use tokio::sync::Notify;

use super::inbox::Inbox;
use super::{names, wire, EndpointKind, GraphError, Node, Registration, MAX_MESSAGE_SIZE};
use crate::dds::{EndpointQos, Reader, Writer};
use crate::msg::RosMessage;
use crate::typehash;

/// Publishes `T` on one ROS topic.
pub struct Publisher<T: RosMessage> {
    _registration: Registration,
    writer: Writer,
    matched: Arc<Notify>,
    topic: String,
    _type: PhantomData<fn(T)>,
}

impl<T: RosMessage> Publisher<T> {
    pub(crate) fn new(node: &Node, topic: &str, qos: EndpointQos) -> Result<Self, GraphError> {
        let topic = node.resolve(topic)?;
        let matched = Arc::new(Notify::new());
        let description = T::type_description();
        let writer = Writer::new(
            node.participant(),
            &names::topic_dds_name(&topic),
            &names::dds_type_name(T::TYPE_NAME),
            &qos,
            &typehash::user_data_for(&description),
            matched.clone(),
        )?;
        let registration =
            Registration::new(node, EndpointKind::Writer, writer.guid()?, &description);
        Ok(Publisher {
            _registration: registration,
            writer,
            matched,
            topic,
            _type: PhantomData,
        })
    }

    pub fn publish(&self, message: &T) -> Result<(), GraphError> {
        self.writer.write(&wire::encode(message)?)?;
        Ok(())
    }

    /// The resolved ROS topic name.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Resolves when a subscription matches or goes away. State-like topics
    /// (health) republish then, so a new `ros2 topic echo` sees the current
    /// value at once instead of at the next periodic tick.
    pub async fn subscriptions_changed(&self) {
        self.matched.notified().await
    }

    /// Number of subscriptions currently matched.
    pub fn matched_subscriptions(&self) -> usize {
        self.writer.matched_reader_user_data().len()
    }
}

/// Receives `T` from one ROS topic.
pub struct Subscription<T: RosMessage> {
    _registration: Registration,
    inbox: Inbox,
    topic: String,
    _type: PhantomData<fn() -> T>,
}

impl<T: RosMessage> Subscription<T> {
    pub(crate) fn new(node: &Node, topic: &str, qos: EndpointQos) -> Result<Self, GraphError> {
        let topic = node.resolve(topic)?;
        let notify = Arc::new(Notify::new());
        let dds_topic = names::topic_dds_name(&topic);
        let description = T::type_description();
        let reader = Reader::new(
            node.participant(),
            &dds_topic,
            &names::dds_type_name(T::TYPE_NAME),
            &qos,
            &typehash::user_data_for(&description),
            notify.clone(),
            MAX_MESSAGE_SIZE,
        )?;
        let registration =
            Registration::new(node, EndpointKind::Reader, reader.guid()?, &description);
        Ok(Subscription {
            _registration: registration,
            inbox: Inbox::new(reader, notify, dds_topic),
            topic,
            _type: PhantomData,
        })
    }

    /// The resolved ROS topic name.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    fn decode(&self, payload: &[u8]) -> Option<T> {
        match wire::decode(payload) {
            Ok(message) => Some(message),
            Err(e) => {
                tracing::warn!(topic = %self.topic, error = %e, "dropped an undecodable sample");
                None
            }
        }
    }

    /// The next message already received, if any (undecodable ones are
    /// logged and skipped).
    pub fn try_recv(&self) -> Option<T> {
        while let Some(incoming) = self.inbox.try_next() {
            if let Some(message) = self.decode(&incoming.payload) {
                return Some(message);
            }
        }
        None
    }

    /// Waits for the next well-formed message. Cancel-safe.
    pub async fn recv(&self) -> T {
        loop {
            let incoming = self.inbox.next().await;
            if let Some(message) = self.decode(&incoming.payload) {
                return message;
            }
        }
    }
}

//! The receiving half shared by subscriptions, service servers and clients:
//! a DDS reader whose listener wakes an async task.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::dds::{Reader, Taken};

/// How many samples to take from Cyclone per call; the rest wait there.
const TAKE_BATCH: usize = 32;

pub(crate) struct Inbox {
    pub(crate) reader: Reader,
    notify: Arc<Notify>,
    queue: Mutex<VecDeque<Taken>>,
    /// DDS topic name, for log lines.
    topic: String,
}

/// One payload and the instance handle of the writer that sent it.
pub(crate) struct Incoming {
    pub payload: Vec<u8>,
    pub publication_handle: u64,
}

impl Inbox {
    pub(crate) fn new(reader: Reader, notify: Arc<Notify>, topic: String) -> Self {
        Inbox {
            reader,
            notify,
            queue: Mutex::new(VecDeque::new()),
            topic,
        }
    }

    /// The next payload already received, if any. Oversized samples are
    /// logged and skipped here so callers only ever see bounded payloads.
    pub(crate) fn try_next(&self) -> Option<Incoming> {
        let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if queue.is_empty() {
                queue.extend(self.reader.take(TAKE_BATCH));
            }
            match queue.pop_front()? {
                Taken::Sample {
                    payload,
                    publication_handle,
                } => {
                    return Some(Incoming {
                        payload,
                        publication_handle,
                    })
                }
                Taken::Oversized { size, .. } => {
                    tracing::warn!(topic = %self.topic, size, "dropped an oversized sample");
                }
            }
        }
    }

    /// Waits for the next payload. Cancel-safe: nothing is lost if the
    /// future is dropped, because samples stay queued until returned.
    pub(crate) async fn next(&self) -> Incoming {
        loop {
            if let Some(incoming) = self.try_next() {
                return incoming;
            }
            // The listener stores a permit if it fires between try_next and
            // here, so this cannot miss a wake-up.
            self.notify.notified().await;
        }
    }
}

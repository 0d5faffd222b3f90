//! The join endpoint: a TCP listener that exists only while an invite is
//! pending (seed 004: the enrollment port opens for enrollment and closes
//! after). The main loop calls [`Enrollment::reconcile`] every second;
//! each connection is served by [`crate::join::serve`].

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use ntari_node::signing::{NodeKey, Verifier};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use super::audit::Audit;
use crate::invite::InviteStore;
use crate::join::{self, Inviter};
use crate::render::BridgePlan;

/// Joins served at once; more wait for their turn (each is bounded by
/// the message timeouts).
const CONCURRENT_JOINS: usize = 4;
/// How often the invites are read: the bridge's loop also runs at every
/// graph change, which must not mean reading every invite record again.
const LOOK_EVERY: Duration = Duration::from_secs(1);

pub struct Enrollment {
    listen: SocketAddr,
    invites: InviteStore,
    inviter: Option<Arc<Inviter>>,
    audit: Audit,
    server: Option<JoinHandle<()>>,
    /// The last bind error, so it is logged once, not every second.
    bind_error: Option<String>,
    /// Open invites seen at the last look.
    pub open_invites: usize,
    next_look: Instant,
}

impl Enrollment {
    /// Without a node key nothing can be signed, so the endpoint never opens.
    pub fn new(plan: &BridgePlan, key: Option<NodeKey>, audit: Audit) -> Enrollment {
        let invites = InviteStore::new(&plan.invites_dir);
        let inviter = key.map(|key| {
            let audit = audit.clone();
            Arc::new(Inviter {
                coop: plan.coop.clone(),
                key,
                invites: invites.clone(),
                pending_dir: plan.pending_dir.clone(),
                agreements_dir: plan.agreements_dir.clone(),
                verifier: Mutex::new(Verifier::new()),
                redeem: tokio::sync::Mutex::new(()),
                audit: Box::new(move |event, detail| audit.record(event, detail)),
            })
        });
        Enrollment {
            listen: plan.join_listen,
            invites,
            inviter,
            audit,
            server: None,
            bind_error: None,
            open_invites: 0,
            next_look: Instant::now(),
        }
    }

    pub fn is_listening(&self) -> bool {
        self.server.is_some()
    }

    pub fn listen_address(&self) -> SocketAddr {
        self.listen
    }

    /// Why the endpoint could not open, if it could not.
    pub fn error(&self) -> Option<&str> {
        self.bind_error.as_deref()
    }

    /// Opens the endpoint if an invite is pending, closes it if none is;
    /// looks at most once a [`LOOK_EVERY`].
    pub fn reconcile(&mut self, now: SystemTime) {
        if Instant::now() < self.next_look {
            return;
        }
        self.next_look = Instant::now() + LOOK_EVERY;
        self.open_invites = self.invites.open_count(now);
        let want = self.open_invites > 0;
        match (&self.server, want) {
            (None, true) => self.open(),
            (Some(_), false) => self.close(),
            (None, false) => self.bind_error = None,
            _ => {}
        }
    }

    fn open(&mut self) {
        let Some(inviter) = self.inviter.clone() else {
            return;
        };
        let listener = match std::net::TcpListener::bind(self.listen)
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .and_then(TcpListener::from_std)
        {
            Ok(l) => l,
            Err(e) => {
                let message = format!(
                    "cannot listen for joins on {} ({e}); set join_listen in federation.toml to a free address",
                    self.listen
                );
                if self.bind_error.as_deref() != Some(message.as_str()) {
                    tracing::error!("{message}");
                    self.bind_error = Some(message);
                }
                return;
            }
        };
        self.bind_error = None;
        self.audit.record(
            "join_endpoint_opened",
            serde_json::json!({"listen": self.listen.to_string(), "open_invites": self.open_invites}),
        );
        self.server = Some(tokio::spawn(accept_loop(listener, inviter)));
    }

    fn close(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
            self.audit.record(
                "join_endpoint_closed",
                serde_json::json!({"listen": self.listen.to_string(), "why": "no invite is pending"}),
            );
        }
    }
}

impl Drop for Enrollment {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

async fn accept_loop(listener: TcpListener, inviter: Arc<Inviter>) {
    let permits = Arc::new(Semaphore::new(CONCURRENT_JOINS));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "join endpoint: accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let inviter = inviter.clone();
        // Connections in flight end with the listener's task only when
        // they end themselves (bounded by the message timeouts): a join
        // that started while the invite was pending may finish.
        tokio::spawn(async move {
            join::serve(stream, peer, inviter).await;
            drop(permit);
        });
    }
}

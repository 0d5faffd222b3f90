//! The service nodes on the graph: found through `ros_discovery_info`
//! (not a config list), each read through its lifecycle `get_state`
//! service, its `/ntari/<svc>/health` and its signed `/ntari/<svc>/status`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ntari_node::graph::{qos, GraphView, Node, ServiceClient, Subscription};
use ntari_node::msg::lifecycle_msgs::{
    ChangeState, ChangeStateRequest, GetState, GetStateRequest, Transition,
};
use ntari_node::msg::std_msgs::{Bool, StringMsg};
use serde_json::{json, Value};

/// `/ntari/ntari_dns_node` → `dns`; None for nodes that are not NTARI
/// service nodes.
pub fn service_of(fqn: &str) -> Option<&str> {
    fqn.strip_prefix("/ntari/ntari_")?.strip_suffix("_node")
}

/// What the operator typed (`dns`, `ntari_dns_node`, `/ntari/ntari_dns_node`)
/// as one of `known`, if it names one.
pub fn resolve<'a>(wanted: &str, known: &'a [String]) -> Option<&'a String> {
    known.iter().find(|fqn| {
        fqn.as_str() == wanted
            || fqn.rsplit('/').next() == Some(wanted)
            || service_of(fqn) == Some(wanted)
    })
}

/// One service node being watched.
pub struct Watched {
    pub fqn: String,
    pub service: String,
    health: Subscription<Bool>,
    status: Subscription<StringMsg>,
    get_state: ServiceClient<GetState>,
    last_health: Option<(bool, Instant)>,
    last_status: Option<Value>,
}

/// What one look at a node found.
#[derive(Debug, Clone)]
pub struct Report {
    pub fqn: String,
    pub service: String,
    /// Lifecycle state label, or None if the node did not answer.
    pub state: Option<String>,
    pub healthy: Option<bool>,
    pub health_age: Option<Duration>,
    /// The status payload (signed envelope's `payload`).
    pub status: Option<Value>,
}

impl Report {
    /// Active and healthy.
    pub fn ok(&self) -> bool {
        self.state.as_deref() == Some("active") && self.healthy == Some(true)
    }

    pub fn to_json(&self) -> Value {
        let status = self.status.as_ref();
        json!({
            "node": self.fqn,
            "service": self.service,
            "lifecycle_state": self.state,
            "reachable": self.state.is_some(),
            "healthy": self.healthy,
            "health_age_s": self.health_age.map(|a| (a.as_secs_f64() * 10.0).round() / 10.0),
            "daemon": status.map(|s| s["daemon"].clone()),
            "summary": status.and_then(|s| s["detail"]["summary"].as_str()),
            "last_error": status.and_then(|s| s["last_error"].as_str()),
            "probe_error": status.and_then(|s| s["probe_error"].as_str()),
            "issuer": status.and_then(|s| s["_issuer"].as_str()),
        })
    }
}

impl Watched {
    pub fn new(node: &Node, fqn: &str) -> anyhow::Result<Watched> {
        let service = service_of(fqn).unwrap_or_default().to_string();
        Ok(Watched {
            fqn: fqn.to_string(),
            health: node.create_subscription(&format!("/ntari/{service}/health"), qos::DEFAULT)?,
            // Status is latched: the last one arrives at once.
            status: node.create_subscription(&format!("/ntari/{service}/status"), qos::LATCHED)?,
            get_state: node.create_client(&format!("{fqn}/get_state"))?,
            service,
            last_health: None,
            last_status: None,
        })
    }

    /// Takes the samples that arrived.
    pub fn drain(&mut self) {
        while let Some(sample) = self.health.try_recv() {
            self.last_health = Some((sample.data, Instant::now()));
        }
        while let Some(sample) = self.status.try_recv() {
            match serde_json::from_str::<Value>(&sample.data) {
                Ok(envelope) => {
                    let mut payload = envelope["payload"].clone();
                    payload["_issuer"] = envelope["issuer"].clone();
                    self.last_status = Some(payload);
                }
                Err(e) => tracing::debug!(node = %self.fqn, error = %e, "unreadable status"),
            }
        }
    }

    /// Asks the node's state and reports what is known.
    pub async fn report(&mut self, timeout: Duration) -> Report {
        let state = match self.get_state.wait_for_service(timeout).await {
            Ok(()) => self
                .get_state
                .call(&GetStateRequest::default(), timeout)
                .await
                .ok()
                .map(|r| r.current_state.label),
            Err(_) => None,
        };
        self.drain();
        Report {
            fqn: self.fqn.clone(),
            service: self.service.clone(),
            state,
            healthy: self.last_health.map(|(h, _)| h),
            health_age: self.last_health.map(|(_, at)| at.elapsed()),
            status: self.last_status.clone(),
        }
    }
}

/// The NTARI service nodes on the graph, kept up to date.
pub struct Monitor<'a> {
    node: &'a Node,
    view: GraphView,
    watched: BTreeMap<String, Watched>,
}

impl<'a> Monitor<'a> {
    pub fn new(node: &'a Node, view: GraphView) -> Monitor<'a> {
        Monitor {
            node,
            view,
            watched: BTreeMap::new(),
        }
    }

    /// Follows the service nodes alive now: new ones are watched, gone
    /// ones forgotten. Returns their names.
    pub fn update(&mut self) -> anyhow::Result<Vec<String>> {
        let alive: Vec<String> = self
            .view
            .nodes()
            .into_iter()
            .filter(|n| service_of(n).is_some())
            .collect();
        self.watched.retain(|fqn, _| alive.contains(fqn));
        for fqn in &alive {
            if !self.watched.contains_key(fqn) {
                self.watched
                    .insert(fqn.clone(), Watched::new(self.node, fqn)?);
            }
        }
        Ok(alive)
    }

    /// Lets discovery and the first samples arrive for `settle`.
    pub async fn settle(&mut self, settle: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + settle;
        while Instant::now() < deadline {
            self.view.changed(Duration::from_millis(100)).await;
            self.update()?;
            for w in self.watched.values_mut() {
                w.drain();
            }
        }
        Ok(())
    }

    pub async fn reports(&mut self, timeout: Duration) -> Vec<Report> {
        let mut out = Vec::new();
        for w in self.watched.values_mut() {
            out.push(w.report(timeout).await);
        }
        out
    }
}

/// The outcome of a lifecycle command, for exit codes.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Done(String),
    Refused(String),
    NoAnswer(String),
}

/// `get` or a transition by label, through the node's standard services.
pub async fn lifecycle(
    node: &Node,
    fqn: &str,
    command: &str,
    timeout: Duration,
) -> anyhow::Result<Outcome> {
    let get: ServiceClient<GetState> = node.create_client(&format!("{fqn}/get_state"))?;
    if get.wait_for_service(timeout).await.is_err() {
        return Ok(Outcome::NoAnswer(format!(
            "{fqn} did not offer its lifecycle services within {} s",
            timeout.as_secs()
        )));
    }
    let state = |r: Result<_, _>| -> Option<String> {
        r.ok()
            .map(|r: ntari_node::msg::lifecycle_msgs::GetStateResponse| {
                format!("{} [{}]", r.current_state.label, r.current_state.id)
            })
    };
    if command == "get" {
        return Ok(
            match state(get.call(&GetStateRequest::default(), timeout).await) {
                Some(s) => Outcome::Done(s),
                None => Outcome::NoAnswer(format!(
                    "{fqn} did not answer get_state within {} s",
                    timeout.as_secs()
                )),
            },
        );
    }
    let change: ServiceClient<ChangeState> = node.create_client(&format!("{fqn}/change_state"))?;
    if change.wait_for_service(timeout).await.is_err() {
        return Ok(Outcome::NoAnswer(format!(
            "{fqn} has no change_state service"
        )));
    }
    // id 0 and the label: the node picks the transition of that name from
    // its current state (shutdown exists from three states).
    let request = ChangeStateRequest {
        transition: Transition {
            id: 0,
            label: command.to_string(),
        },
    };
    // Transitions run the daemon (start, stop): allow them longer.
    let transition_timeout = timeout.max(Duration::from_secs(40));
    let reply = change.call(&request, transition_timeout).await;
    let now = state(get.call(&GetStateRequest::default(), timeout).await);
    Ok(match reply {
        Ok(r) if r.success => Outcome::Done(format!(
            "Transitioning successful; now {}",
            now.unwrap_or_else(|| "?".into())
        )),
        Ok(_) => Outcome::Refused(format!(
            "Transitioning failed: `{command}` was refused or its callback failed; {fqn} is {} (its status says why)",
            now.unwrap_or_else(|| "?".into())
        )),
        Err(e) => Outcome::NoAnswer(format!("{e}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_resolve_in_every_form() {
        let known = vec![
            "/ntari/ntari_dhcp_node".to_string(),
            "/ntari/ntari_dns_node".to_string(),
            "/other/thing".to_string(),
        ];
        for wanted in ["dns", "ntari_dns_node", "/ntari/ntari_dns_node"] {
            assert_eq!(
                resolve(wanted, &known).map(String::as_str),
                Some("/ntari/ntari_dns_node")
            );
        }
        assert_eq!(resolve("ntp", &known), None);
        assert_eq!(service_of("/ntari/ntari_dhcp_node"), Some("dhcp"));
        assert_eq!(service_of("/other/thing"), None);
    }
}

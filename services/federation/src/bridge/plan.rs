//! One agreement in force, reduced to what the bridge does with it: which
//! topics go which way, who may call what, where the partner is.

use std::net::IpAddr;
use std::time::SystemTime;

pub use ntari_schemas::federation::Trust;
use ntari_schemas::federation::{glob_matches, Agreement, Exports};

/// A topic one side exports: a name or glob, its type, an optional rate cap.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicRule {
    pub pattern: String,
    pub ros_type: String,
    pub max_rate_hz: Option<f64>,
}

/// A service one side lets the other call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceRule {
    pub name: String,
    pub ros_type: String,
}

/// What one direction of an agreement carries.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Direction {
    pub topics: Vec<TopicRule>,
    pub services: Vec<ServiceRule>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LinkPlan {
    pub agreement: String,
    pub version: u64,
    pub domain: u32,
    pub our_coop: String,
    pub partner_coop: String,
    pub partner_address: IpAddr,
    /// The partner's WireGuard public key (base64) and endpoint, for
    /// ntari-vpn.
    pub partner_wireguard_key: String,
    pub partner_endpoint: Option<String>,
    /// What we send, and what the partner sends us.
    pub export: Direction,
    pub import: Direction,
    /// The level we grant the partner, and the level it grants us.
    pub we_grant: Trust,
    pub they_grant: Trust,
    /// Things under `/remote/` may be re-exported.
    pub relay: bool,
    pub not_after: SystemTime,
    /// Signed by us, waiting for the partner's approval: the link carries
    /// only the control document (where the co-signed text will come),
    /// nothing else either way.
    pub awaiting_partner: bool,
    /// The agreement's text, sent to the partner in the control document
    /// (so a joiner waiting for our approval receives it).
    pub document: Option<String>,
}

impl LinkPlan {
    /// Grant at most `cap` (a level lowered by `set-trust`).
    pub fn with_grant_at_most(mut self, cap: Trust) -> Self {
        self.we_grant = self.we_grant.at_most(cap);
        self
    }

    /// The link of an agreement we signed and the partner has not: the
    /// tunnel and the control document only.
    pub fn awaiting(mut self) -> Self {
        self.awaiting_partner = true;
        self.we_grant = Trust::Untrusted;
        self.they_grant = Trust::Untrusted;
        self.export = Direction::default();
        self.import = Direction::default();
        self.document = None;
        self
    }

    /// A local topic we may send: listed for our direction, of the listed
    /// type, not an import (unless relaying), and the partner not untrusted.
    pub fn export_rule(&self, topic: &str, ros_type: &str) -> Option<&TopicRule> {
        if self.we_grant == Trust::Untrusted {
            return None;
        }
        find_rule(&self.export.topics, topic, ros_type, self.relay)
    }

    /// A topic the partner may send us, by the same rules from its side.
    pub fn import_rule(&self, topic: &str, ros_type: &str) -> Option<&TopicRule> {
        if self.they_grant == Trust::Untrusted {
            return None;
        }
        find_rule(&self.import.topics, topic, ros_type, self.relay)
    }

    /// Our services the partner may call: only when we trust it.
    pub fn served_services(&self) -> &[ServiceRule] {
        if self.we_grant == Trust::Trusted {
            &self.export.services
        } else {
            &[]
        }
    }

    /// The partner's services we may call: only when it trusts us.
    pub fn callable_services(&self) -> &[ServiceRule] {
        if self.they_grant == Trust::Trusted {
            &self.import.services
        } else {
            &[]
        }
    }
}

fn find_rule<'a>(
    rules: &'a [TopicRule],
    topic: &str,
    ros_type: &str,
    relay: bool,
) -> Option<&'a TopicRule> {
    if !relay && is_remote(topic) {
        return None;
    }
    rules
        .iter()
        .find(|r| r.ros_type == ros_type && glob_matches(&r.pattern, topic))
}

/// Under `/remote/`: something a bridge imported.
pub fn is_remote(name: &str) -> bool {
    name == "/remote" || name.starts_with("/remote/")
}

fn direction(exports: &Exports) -> Direction {
    Direction {
        topics: exports
            .topics
            .iter()
            .map(|t| TopicRule {
                pattern: t.name.clone(),
                ros_type: t.ros_type.clone(),
                max_rate_hz: t.max_rate_hz,
            })
            .collect(),
        services: exports
            .services
            .iter()
            .map(|s| ServiceRule {
                name: s.name.clone(),
                ros_type: s.ros_type.clone(),
            })
            .collect(),
    }
}

/// The link an agreement in force asks of this node (`coop`, key `did`);
/// an error says why this node cannot use it.
pub fn from_agreement(agreement: &Agreement, coop: &str, did: &str) -> Result<LinkPlan, String> {
    let ours = agreement.party(coop).ok_or_else(|| {
        format!(
            "this hub is `{coop}` (coop in federation.toml) but the agreement's parties are {}",
            agreement
                .parties
                .iter()
                .map(|p| p.coop.as_str())
                .collect::<Vec<_>>()
                .join(" and ")
        )
    })?;
    if ours.did != did {
        return Err(format!(
            "party {coop} has did {} but this node's key is {did}: the agreement was drafted for another machine",
            ours.did
        ));
    }
    let partner = agreement
        .other_party(coop)
        .ok_or_else(|| "the agreement has no second party".to_string())?;
    Ok(LinkPlan {
        agreement: agreement.id.clone(),
        version: u64::from(agreement.version),
        domain: agreement.federation_domain,
        our_coop: coop.to_string(),
        partner_coop: partner.coop.clone(),
        partner_address: partner.tunnel_address,
        partner_wireguard_key: partner.wireguard_key.clone(),
        partner_endpoint: partner.endpoint.clone(),
        export: direction(agreement.exports_of(coop)),
        import: direction(agreement.exports_of(&partner.coop)),
        we_grant: agreement.trust_granted_by(coop),
        they_grant: agreement.trust_granted_by(&partner.coop),
        relay: agreement.relay,
        not_after: agreement.not_after(),
        awaiting_partner: false,
        document: None,
    })
}

//! Federation agreements and revocations (YAML); see docs/schemas.md.
//!
//! An [`Agreement`] is what two cooperatives signed: who they are (node
//! DID, WireGuard key, tunnel address), when it holds, which topics and
//! services each sends to the other and the trust each grants. It lives in
//! `/etc/ntari/federation/<id>.yaml`; a [`Revocation`] (`<id>.revoked.yaml`)
//! ends it early.
//!
//! Typed parsing here (`deny_unknown_fields`, errors with the YAML path) is
//! for validation and messages. What is *signed* is not the typed value but
//! the document itself: the YAML parsed into a generic JSON value, minus the
//! top-level `signatures` (agreement) or `signature` (revocation) key, in
//! RFC 8785 (JCS) form — see [`agreement_signing_bytes`] — so a partner's
//! own tooling, in any language, can check the same bytes.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;
use std::time::SystemTime;

use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::wireguard_peers::{decode_key, parse_time};
use crate::SchemaError;

/// `kind` of an agreement; binds signatures to this document type.
pub const AGREEMENT_KIND: &str = "ntari/federation-agreement/v1";

/// `kind` of a revocation.
pub const REVOCATION_KIND: &str = "ntari/federation-revocation/v1";

/// Highest DDS domain id a federation domain may use (as ROS allows).
pub const MAX_DOMAIN: u32 = 232;

/// Longest revocation reason, in characters.
pub const MAX_REASON_LEN: usize = 1024;

/// A document that is not a usable agreement or revocation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocumentError {
    /// Not YAML of the schema: syntax, a type, an unknown or missing field.
    #[error("{0}")]
    Parse(SchemaError),
    /// The schema's shape, but a rule serde cannot express is broken.
    #[error("{0}")]
    Invalid(SchemaError),
}

impl DocumentError {
    pub fn schema(&self) -> &SchemaError {
        match self {
            DocumentError::Parse(e) | DocumentError::Invalid(e) => e,
        }
    }
}

/// An RFC 3339 UTC time as written in the document, and its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timestamp {
    pub time: SystemTime,
    pub text: String,
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let time = parse_time(&text).map_err(D::Error::custom)?;
        Ok(Timestamp { time, text })
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

/// The trust a party grants the other.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Trust {
    /// Topics and services.
    Trusted,
    /// Topics only.
    Observer,
    /// Nothing (also what a missing `trust.<coop>` means).
    #[default]
    Untrusted,
}

impl Trust {
    pub fn label(self) -> &'static str {
        match self {
            Trust::Trusted => "trusted",
            Trust::Observer => "observer",
            Trust::Untrusted => "untrusted",
        }
    }
}

/// One of the two cooperatives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Party {
    /// Cooperative name, a ROS name token: `[a-z][a-z0-9_]{0,31}`.
    pub coop: String,
    /// Its node key, `did:key:z6Mk…`; signs for the party.
    pub did: String,
    /// Its ntari-vpn public key, base64 of 32 bytes.
    pub wireguard_key: String,
    /// Its address inside the tunnel, no prefix.
    #[serde(deserialize_with = "ip_address")]
    pub tunnel_address: IpAddr,
    /// `host:port` where its WireGuard listens, if it listens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
}

/// When the agreement holds: `not_before <= now < not_after`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Validity {
    pub not_before: Timestamp,
    pub not_after: Timestamp,
}

/// A topic (or glob of topics) one party sends to the other.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicExport {
    /// A ROS topic name, or a glob: `*` is one name token, `**` any number
    /// (zero included).
    pub name: String,
    /// ROS type, `pkg/msg/Type`.
    #[serde(rename = "type")]
    pub ros_type: String,
    /// Forward at most this many samples per second, if set (> 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_rate_hz: Option<f64>,
}

/// A service of one party the other may call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceExport {
    /// Full ROS service name, no globs.
    pub name: String,
    /// ROS type, `pkg/srv/Type`.
    #[serde(rename = "type")]
    pub ros_type: String,
}

/// What one party sends to the other.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Exports {
    #[serde(default)]
    pub topics: Vec<TopicExport>,
    #[serde(default)]
    pub services: Vec<ServiceExport>,
}

static NO_EXPORTS: Exports = Exports {
    topics: Vec::new(),
    services: Vec::new(),
};

/// One party's signature over [`agreement_signing_bytes`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignatureEntry {
    pub did: String,
    /// Ed25519, 128 lowercase hex digits.
    pub signature: String,
}

/// `<id>.yaml`: see the module documentation and docs/schemas.md.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Agreement {
    /// Always [`AGREEMENT_KIND`].
    pub kind: String,
    /// `[a-z0-9][a-z0-9-]{0,62}`; the file is `<id>.yaml`.
    pub id: String,
    /// ≥ 1; a revocation of version N ends every version ≤ N.
    pub version: u32,
    /// Exactly two.
    pub parties: Vec<Party>,
    pub valid: Validity,
    /// DDS domain id used on the tunnel.
    pub federation_domain: u32,
    /// Per party coop: what it sends to the other. Missing = nothing.
    #[serde(default)]
    pub exports: BTreeMap<String, Exports>,
    /// Per party coop: the trust it grants the other. Missing = untrusted.
    #[serde(default)]
    pub trust: BTreeMap<String, Trust>,
    /// Whether names under `/remote/` (imports from a third party) may be
    /// exported.
    #[serde(default)]
    pub relay: bool,
    /// Not covered by the signatures themselves.
    #[serde(default)]
    pub signatures: Vec<SignatureEntry>,
}

impl Agreement {
    /// Parses and validates an agreement.
    pub fn parse(yaml: &str) -> Result<Agreement, DocumentError> {
        let agreement: Agreement = parse_yaml(yaml).map_err(DocumentError::Parse)?;
        agreement.validate().map_err(DocumentError::Invalid)?;
        Ok(agreement)
    }

    /// The rules serde cannot express; the error names the field.
    pub fn validate(&self) -> Result<(), SchemaError> {
        if self.kind != AGREEMENT_KIND {
            return Err(SchemaError::new(
                "kind",
                format!(
                    "`{}` is not a federation agreement; the first line must be `kind: {AGREEMENT_KIND}`",
                    self.kind
                ),
            ));
        }
        check_id(&self.id).map_err(|m| SchemaError::new("id", m))?;
        if self.version == 0 {
            return Err(SchemaError::new(
                "version",
                "must be 1 or more (raise it for every new text of the agreement)",
            ));
        }
        if self.parties.len() != 2 {
            return Err(SchemaError::new(
                "parties",
                format!(
                    "{} parties listed; an agreement has exactly two (one per cooperative)",
                    self.parties.len()
                ),
            ));
        }
        for (i, party) in self.parties.iter().enumerate() {
            let field = |f: &str| format!("parties[{i}].{f}");
            check_coop(&party.coop).map_err(|m| SchemaError::new(field("coop"), m))?;
            check_did(&party.did).map_err(|m| SchemaError::new(field("did"), m))?;
            decode_key(&party.wireguard_key)
                .map_err(|m| SchemaError::new(field("wireguard_key"), m))?;
            if let Some(endpoint) = &party.endpoint {
                crate::wireguard_peers::check_endpoint(endpoint)
                    .map_err(|m| SchemaError::new(field("endpoint"), m))?;
            }
        }
        let (a, b) = (&self.parties[0], &self.parties[1]);
        let same = |f: &str, what: &str| {
            SchemaError::new(
                format!("parties[1].{f}"),
                format!("the same {what} as parties[0]; the two parties must differ"),
            )
        };
        if a.coop == b.coop {
            return Err(same("coop", "cooperative name"));
        }
        if a.did == b.did {
            return Err(same("did", "DID"));
        }
        if a.wireguard_key == b.wireguard_key {
            return Err(same("wireguard_key", "WireGuard key"));
        }
        if a.tunnel_address == b.tunnel_address {
            return Err(same("tunnel_address", "tunnel address"));
        }
        if self.valid.not_before.time >= self.valid.not_after.time {
            return Err(SchemaError::new(
                "valid.not_after",
                format!(
                    "{} is not after not_before ({})",
                    self.valid.not_after, self.valid.not_before
                ),
            ));
        }
        if self.federation_domain > MAX_DOMAIN {
            return Err(SchemaError::new(
                "federation_domain",
                format!(
                    "{} is not a DDS domain id ROS can use (0..={MAX_DOMAIN})",
                    self.federation_domain
                ),
            ));
        }
        let coops = self.coops();
        for (coop, exports) in &self.exports {
            if !coops.contains(&coop.as_str()) {
                return Err(SchemaError::new(
                    format!("exports.{coop}"),
                    format!("`{coop}` is not a party; the keys are the parties' coop names"),
                ));
            }
            check_exports(exports)
                .map_err(|(field, m)| SchemaError::new(format!("exports.{coop}.{field}"), m))?;
        }
        for coop in self.trust.keys() {
            if !coops.contains(&coop.as_str()) {
                return Err(SchemaError::new(
                    format!("trust.{coop}"),
                    format!("`{coop}` is not a party; the keys are the parties' coop names"),
                ));
            }
        }
        let mut seen = BTreeSet::new();
        for (i, entry) in self.signatures.iter().enumerate() {
            let field = |f: &str| format!("signatures[{i}].{f}");
            check_did(&entry.did).map_err(|m| SchemaError::new(field("did"), m))?;
            check_signature_hex(&entry.signature)
                .map_err(|m| SchemaError::new(field("signature"), m))?;
            if !seen.insert(entry.did.as_str()) {
                return Err(SchemaError::new(
                    field("did"),
                    format!(
                        "a second signature of {}; remove one (sign again to replace it)",
                        entry.did
                    ),
                ));
            }
        }
        Ok(())
    }

    fn coops(&self) -> Vec<&str> {
        self.parties.iter().map(|p| p.coop.as_str()).collect()
    }

    /// The party named `coop`.
    pub fn party(&self, coop: &str) -> Option<&Party> {
        self.parties.iter().find(|p| p.coop == coop)
    }

    /// The party whose key is `did`.
    pub fn party_by_did(&self, did: &str) -> Option<&Party> {
        self.parties.iter().find(|p| p.did == did)
    }

    /// The party that is not `coop` (None if `coop` is not a party).
    pub fn other_party(&self, coop: &str) -> Option<&Party> {
        self.party(coop)?;
        self.parties.iter().find(|p| p.coop != coop)
    }

    /// What `coop` lists to send, as written (trust not applied; see
    /// [`Agreement::exported_topic`] for that).
    pub fn exports_of(&self, coop: &str) -> &Exports {
        self.exports.get(coop).unwrap_or(&NO_EXPORTS)
    }

    /// The trust `coop` grants the other party; missing = untrusted.
    pub fn trust_granted_by(&self, coop: &str) -> Trust {
        self.trust.get(coop).copied().unwrap_or_default()
    }

    pub fn not_before(&self) -> SystemTime {
        self.valid.not_before.time
    }

    pub fn not_after(&self) -> SystemTime {
        self.valid.not_after.time
    }

    /// `not_before <= now < not_after`.
    pub fn in_window(&self, now: SystemTime) -> bool {
        self.not_before() <= now && now < self.not_after()
    }

    /// The first export entry under which `from` sends topic `name` to the
    /// other party, with the semantics applied: nothing if `from` grants
    /// `untrusted`, nothing under `/remote/` unless `relay`.
    pub fn exported_topic(&self, from: &str, name: &str) -> Option<&TopicExport> {
        if self.trust_granted_by(from) == Trust::Untrusted {
            return None;
        }
        self.exports_of(from)
            .topics
            .iter()
            .find(|t| topic_allowed(&t.name, name, self.relay))
    }

    /// The export entry under which `from` serves service `name` to the
    /// other party: only when `from` grants `trusted`.
    pub fn exported_service(&self, from: &str, name: &str) -> Option<&ServiceExport> {
        if self.trust_granted_by(from) != Trust::Trusted || (!self.relay && is_remote(name)) {
            return None;
        }
        self.exports_of(from)
            .services
            .iter()
            .find(|s| s.name == name)
    }
}

/// `kind` of an agreement template (what an invite offers).
pub const TEMPLATE_KIND: &str = "ntari/federation-template/v1";

/// What an invite offers the cooperative that redeems it: the agreement
/// that `ntari-admin federation join` drafts, minus the parties (which the
/// join fills in) and the trust (which the invite and the joiner choose).
/// The exports are keyed by role, since the joiner's name is not known yet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Template {
    /// Always [`TEMPLATE_KIND`].
    pub kind: String,
    /// The agreement's id [default: `<inviter>-<joiner>`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// How long the agreement holds from the join, in days.
    #[serde(default = "default_template_days")]
    pub days: u32,
    /// The DDS domain on the tunnel [default: one no agreement of the
    /// inviter's uses, chosen when the invite is made].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub federation_domain: Option<u32>,
    /// What each role sends: keys `inviter` and `joiner`.
    #[serde(default)]
    pub exports: TemplateExports,
    #[serde(default)]
    pub relay: bool,
}

/// [`Template::exports`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateExports {
    #[serde(default)]
    pub inviter: Exports,
    #[serde(default)]
    pub joiner: Exports,
}

fn default_template_days() -> u32 {
    365
}

/// Longest validity a template may ask for.
pub const MAX_TEMPLATE_DAYS: u32 = 3660;

impl Template {
    /// Parses and validates a template.
    pub fn parse(yaml: &str) -> Result<Template, DocumentError> {
        let template: Template = parse_yaml(yaml).map_err(DocumentError::Parse)?;
        template.validate().map_err(DocumentError::Invalid)?;
        Ok(template)
    }

    /// What every cooperative's hub shows by default: each node's health
    /// and status, both ways.
    pub fn health_and_status() -> Template {
        let exports = Exports {
            topics: vec![
                TopicExport {
                    name: "/ntari/*/health".into(),
                    ros_type: "std_msgs/msg/Bool".into(),
                    max_rate_hz: None,
                },
                TopicExport {
                    name: "/ntari/*/status".into(),
                    ros_type: "std_msgs/msg/String".into(),
                    max_rate_hz: Some(1.0),
                },
            ],
            services: Vec::new(),
        };
        Template {
            kind: TEMPLATE_KIND.into(),
            id: None,
            days: default_template_days(),
            federation_domain: None,
            exports: TemplateExports {
                inviter: exports.clone(),
                joiner: exports,
            },
            relay: false,
        }
    }

    pub fn validate(&self) -> Result<(), SchemaError> {
        if self.kind != TEMPLATE_KIND {
            return Err(SchemaError::new(
                "kind",
                format!(
                    "`{}` is not an agreement template; the first line must be `kind: {TEMPLATE_KIND}`",
                    self.kind
                ),
            ));
        }
        if let Some(id) = &self.id {
            check_id(id).map_err(|m| SchemaError::new("id", m))?;
        }
        if !(1..=MAX_TEMPLATE_DAYS).contains(&self.days) {
            return Err(SchemaError::new(
                "days",
                format!("{} days: give 1 to {MAX_TEMPLATE_DAYS}", self.days),
            ));
        }
        if let Some(domain) = self.federation_domain.filter(|d| *d > MAX_DOMAIN) {
            return Err(SchemaError::new(
                "federation_domain",
                format!("{domain} is not a DDS domain id ROS can use (0..={MAX_DOMAIN})"),
            ));
        }
        // The same rules as an agreement's exports.
        for (role, exports) in [
            ("inviter", &self.exports.inviter),
            ("joiner", &self.exports.joiner),
        ] {
            check_exports(exports)
                .map_err(|(field, m)| SchemaError::new(format!("exports.{role}.{field}"), m))?;
        }
        Ok(())
    }
}

/// Topic and service entries well formed; the error's field is relative
/// to the `Exports`.
fn check_exports(exports: &Exports) -> Result<(), (String, String)> {
    for (i, topic) in exports.topics.iter().enumerate() {
        let field = |f: &str| format!("topics[{i}].{f}");
        check_ros_name(&topic.name, true).map_err(|m| (field("name"), m))?;
        check_ros_type(&topic.ros_type, "msg").map_err(|m| (field("type"), m))?;
        if let Some(rate) = topic.max_rate_hz {
            if !(rate.is_finite() && rate > 0.0) {
                return Err((
                    field("max_rate_hz"),
                    format!("{rate} is not a rate; give a number above 0 or leave it out"),
                ));
            }
        }
    }
    for (i, service) in exports.services.iter().enumerate() {
        let field = |f: &str| format!("services[{i}].{f}");
        check_ros_name(&service.name, false).map_err(|m| (field("name"), m))?;
        check_ros_type(&service.ros_type, "srv").map_err(|m| (field("type"), m))?;
    }
    Ok(())
}

impl Trust {
    /// How much a level allows: untrusted 0, observer 1, trusted 2.
    pub fn rank(self) -> u8 {
        match self {
            Trust::Untrusted => 0,
            Trust::Observer => 1,
            Trust::Trusted => 2,
        }
    }

    /// The lesser of two levels.
    pub fn at_most(self, cap: Trust) -> Trust {
        if cap.rank() < self.rank() {
            cap
        } else {
            self
        }
    }
}

/// `<id>.revoked.yaml`: ends agreement `agreement` at every version up to
/// `version`, signed inline by one of its parties.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Revocation {
    /// Always [`REVOCATION_KIND`].
    pub kind: String,
    /// The agreement's id.
    pub agreement: String,
    pub version: u32,
    pub revoked_at: Timestamp,
    /// did:key of the party that revoked.
    pub by: String,
    pub reason: String,
    /// Ed25519 over [`revocation_signing_bytes`], 128 lowercase hex digits.
    pub signature: String,
}

impl Revocation {
    /// Parses and validates a revocation (the signature is checked by the
    /// caller, which knows the agreement's parties).
    pub fn parse(yaml: &str) -> Result<Revocation, DocumentError> {
        let revocation: Revocation = parse_yaml(yaml).map_err(DocumentError::Parse)?;
        revocation.validate().map_err(DocumentError::Invalid)?;
        Ok(revocation)
    }

    pub fn validate(&self) -> Result<(), SchemaError> {
        if self.kind != REVOCATION_KIND {
            return Err(SchemaError::new(
                "kind",
                format!(
                    "`{}` is not a federation revocation; expected `kind: {REVOCATION_KIND}`",
                    self.kind
                ),
            ));
        }
        check_id(&self.agreement).map_err(|m| SchemaError::new("agreement", m))?;
        if self.version == 0 {
            return Err(SchemaError::new("version", "must be 1 or more"));
        }
        check_did(&self.by).map_err(|m| SchemaError::new("by", m))?;
        if self.reason.trim().is_empty() || self.reason.chars().count() > MAX_REASON_LEN {
            return Err(SchemaError::new(
                "reason",
                format!("say why, in 1 to {MAX_REASON_LEN} characters"),
            ));
        }
        check_signature_hex(&self.signature).map_err(|m| SchemaError::new("signature", m))
    }
}

/// The bytes an agreement's signatures cover: the YAML as a generic JSON
/// value without the top-level `signatures` key, in RFC 8785 form.
pub fn agreement_signing_bytes(yaml: &str) -> Result<Vec<u8>, SchemaError> {
    signing_bytes(yaml, "signatures")
}

/// The bytes a revocation's signature covers (without `signature`).
pub fn revocation_signing_bytes(yaml: &str) -> Result<Vec<u8>, SchemaError> {
    signing_bytes(yaml, "signature")
}

fn signing_bytes(yaml: &str, without: &str) -> Result<Vec<u8>, SchemaError> {
    let mut value: serde_json::Value = parse_yaml(yaml)?;
    let object = value.as_object_mut().ok_or_else(|| {
        SchemaError::new(
            ".",
            "the document is not a mapping of fields (`key: value` lines)",
        )
    })?;
    object.remove(without);
    jcs(&value)
}

/// RFC 8785 canonical JSON of `value`.
pub fn jcs(value: &serde_json::Value) -> Result<Vec<u8>, SchemaError> {
    serde_json_canonicalizer::to_vec(value)
        .map_err(|e| SchemaError::new(".", format!("cannot be put in canonical form: {e}")))
}

/// Parses YAML as `T`, naming the path of the first bad value and, when
/// the YAML parser knows it, the line.
fn parse_yaml<T: DeserializeOwned>(yaml: &str) -> Result<T, SchemaError> {
    let deserializer = serde_yaml_ng::Deserializer::from_str(yaml);
    serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let path = match e.path().to_string() {
            p if p == "?" || p.is_empty() => ".".to_string(),
            p => p,
        };
        let inner = e.into_inner();
        let location = inner.location();
        let mut message = inner.to_string();
        // serde_yaml_ng puts the path it knows and the position into the
        // text; we give the path in front and the line at the end.
        if let Some(i) = message.find(" at line ") {
            message.truncate(i);
        }
        // Its own path is coarser than ours (`parties[1]`): drop it.
        if let Some(i) = message.find(": ") {
            if path.starts_with(&message[..i]) || message[..i] == *"." {
                message.drain(..i + 2);
            }
        }
        if let Some(loc) = location {
            message.push_str(&format!(" (line {})", loc.line()));
        }
        SchemaError::new(path, message)
    })
}

fn ip_address<'de, D: Deserializer<'de>>(d: D) -> Result<IpAddr, D::Error> {
    let text = String::deserialize(d)?;
    text.parse().map_err(|_| {
        D::Error::custom(format!(
            "invalid IP address `{text}`: give one address without a prefix, e.g. 10.77.0.1 or fd77::1"
        ))
    })
}

/// Whether topic `name` falls under export `pattern`; never a name under
/// `/remote/` unless `relay`.
pub fn topic_allowed(pattern: &str, name: &str, relay: bool) -> bool {
    (relay || !is_remote(name)) && glob_matches(pattern, name)
}

fn is_remote(name: &str) -> bool {
    name == "/remote" || name.starts_with("/remote/")
}

/// Glob matching over `/`-separated ROS names: `*` is exactly one token,
/// `**` any number of tokens (zero included), anything else itself.
pub fn glob_matches(pattern: &str, name: &str) -> bool {
    let p: Vec<&str> = pattern.split('/').collect();
    let n: Vec<&str> = name.split('/').collect();
    // matches[j] = p[i..] matches n[j..], filled from the end; O(|p|·|n|)
    // whatever the number of `**`.
    let mut next = vec![false; n.len() + 1];
    next[n.len()] = true;
    for i in (0..p.len()).rev() {
        let mut cur = vec![false; n.len() + 1];
        for j in (0..=n.len()).rev() {
            cur[j] = match p[i] {
                "**" => next[j] || (j < n.len() && cur[j + 1]),
                "*" => j < n.len() && !n[j].is_empty() && next[j + 1],
                token => j < n.len() && n[j] == token && next[j + 1],
            };
        }
        next = cur;
    }
    next[0]
}

fn check_id(id: &str) -> Result<(), String> {
    let b = id.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 63
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{id}` is not an agreement id: 1 to 63 of a-z, 0-9 and `-`, not starting with `-` (the file is <id>.yaml)"
        ))
    }
}

fn check_coop(coop: &str) -> Result<(), String> {
    let b = coop.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 32
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{coop}` is not a cooperative name: 1 to 32 of a-z, 0-9 and `_`, starting with a letter (it becomes a ROS name token under /remote/)"
        ))
    }
}

const BASE58: &str = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";

/// The shape of an Ed25519 did:key (`did:key:z6Mk` and 44 more base58
/// digits); whether it is a valid key is checked where signatures are.
fn check_did(did: &str) -> Result<(), String> {
    let ok = did.len() == 56
        && did.starts_with("did:key:z6Mk")
        && did["did:key:z".len()..].chars().all(|c| BASE58.contains(c));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{did}` is not an Ed25519 did:key (did:key:z6Mk…, as `ntari-admin key show` prints)"
        ))
    }
}

fn check_signature_hex(signature: &str) -> Result<(), String> {
    if signature.len() == 128
        && signature
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        Ok(())
    } else {
        Err("not an Ed25519 signature (128 lowercase hex digits); sign the file again".into())
    }
}

/// A ROS name (`/ntari/dns/status`); with `glob`, tokens may be `*` or `**`.
fn check_ros_name(name: &str, glob: bool) -> Result<(), String> {
    let bad = |why: &str| {
        format!(
            "`{name}` is not a ROS name{}: {why}",
            if glob { " or glob" } else { "" }
        )
    };
    let rest = name
        .strip_prefix('/')
        .ok_or_else(|| bad("it must be absolute (start with `/`)"))?;
    if rest.is_empty() {
        return Err(bad("it has no name after `/`"));
    }
    for token in rest.split('/') {
        if glob && (token == "*" || token == "**") {
            continue;
        }
        if token.contains('*') {
            return Err(bad(if glob {
                "`*` and `**` stand for whole tokens only, like /ntari/*/health"
            } else {
                "no globs here; give the full name"
            }));
        }
        let mut chars = token.chars();
        let first_ok = chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
        if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(bad(
                "each `/`-separated token is letters, digits and `_`, not starting with a digit",
            ));
        }
    }
    Ok(())
}

/// `pkg/<kind>/Type`, e.g. `std_msgs/msg/Bool`.
fn check_ros_type(ros_type: &str, kind: &str) -> Result<(), String> {
    let parts: Vec<&str> = ros_type.split('/').collect();
    let ok = match parts.as_slice() {
        [pkg, k, name] => {
            pkg.chars().next().is_some_and(|c| c.is_ascii_lowercase())
                && pkg
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                && *k == kind
                && name.chars().next().is_some_and(|c| c.is_ascii_uppercase())
                && name.chars().all(|c| c.is_ascii_alphanumeric())
        }
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{ros_type}` is not a ROS type like package/{kind}/Name (e.g. {})",
            if kind == "msg" {
                "std_msgs/msg/Bool"
            } else {
                "lifecycle_msgs/srv/GetState"
            }
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    // Two well-formed DIDs (keys from seeds 1 and 2) and WireGuard keys.
    pub const DID_A: &str = "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp";
    pub const DID_B: &str = "did:key:z6MkkFmT8zELW5Ub1FdD6BXX5BjUMrW4qGzGbXzoxNqKHdnM";
    const WG_A: &str = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=";
    const WG_B: &str = "TrMvSoP4jYQlY6RIzBgbssQqY3vxI2Pi+y71lOWWXX0=";

    pub fn sample() -> String {
        format!(
            r#"# riverside and hillside
kind: ntari/federation-agreement/v1
id: riverside-hillside
version: 1
parties:
  - coop: riverside
    did: {DID_A}
    wireguard_key: {WG_A}
    tunnel_address: 10.77.0.1
    endpoint: 192.0.2.1:51820
  - coop: hillside
    did: {DID_B}
    wireguard_key: {WG_B}
    tunnel_address: 10.77.0.2
valid:
  not_before: 2026-12-01T00:00:00Z
  not_after: 2027-12-01T00:00:00Z
federation_domain: 77
exports:
  riverside:
    topics:
      - name: /ntari/*/health
        type: std_msgs/msg/Bool
        max_rate_hz: 5
      - name: /ntari/dns/status
        type: std_msgs/msg/String
    services:
      - name: /ntari/ntari_dns_node/get_state
        type: lifecycle_msgs/srv/GetState
  hillside:
    topics: []
    services: []
trust:
  riverside: trusted
  hillside: observer
"#
        )
    }

    fn invalid(yaml: &str) -> SchemaError {
        match Agreement::parse(yaml) {
            Err(DocumentError::Invalid(e)) => e,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    fn parse_err(yaml: &str) -> SchemaError {
        match Agreement::parse(yaml) {
            Err(DocumentError::Parse(e)) => e,
            other => panic!("expected Parse, got {other:?}"),
        }
    }

    #[test]
    fn sample_parses_with_helpers() {
        let a = Agreement::parse(&sample()).unwrap();
        assert_eq!(a.id, "riverside-hillside");
        assert_eq!(a.party("hillside").unwrap().did, DID_B);
        assert_eq!(a.other_party("riverside").unwrap().coop, "hillside");
        assert_eq!(a.other_party("hillside").unwrap().coop, "riverside");
        assert!(a.other_party("nobody").is_none());
        assert_eq!(a.party_by_did(DID_A).unwrap().coop, "riverside");
        assert_eq!(a.exports_of("riverside").topics.len(), 2);
        assert!(a.exports_of("hillside").topics.is_empty());
        assert!(a.exports_of("nobody").services.is_empty());
        assert_eq!(a.trust_granted_by("riverside"), Trust::Trusted);
        assert_eq!(a.trust_granted_by("hillside"), Trust::Observer);
        assert_eq!(a.trust_granted_by("nobody"), Trust::Untrusted);
        assert_eq!(
            a.not_before(),
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_083_200)
        );
        assert!(a.not_after() > a.not_before());
        assert!(a.in_window(a.not_before()));
        assert!(!a.in_window(a.not_after()));
        assert_eq!(a.valid.not_after.to_string(), "2027-12-01T00:00:00Z");
        assert_eq!(
            a.parties[0].tunnel_address,
            "10.77.0.1".parse::<IpAddr>().unwrap()
        );
        assert!(!a.relay);
        assert!(a.signatures.is_empty());
        assert_eq!(
            a.exported_topic("riverside", "/ntari/dns/health")
                .unwrap()
                .max_rate_hz,
            Some(5.0)
        );
        assert!(a.exported_topic("riverside", "/ntari/dns/leases").is_none());
        assert!(a
            .exported_service("riverside", "/ntari/ntari_dns_node/get_state")
            .is_some());
    }

    #[test]
    fn trust_limits_what_is_sent() {
        let yaml = sample().replace("riverside: trusted", "riverside: observer");
        let a = Agreement::parse(&yaml).unwrap();
        assert!(a.exported_topic("riverside", "/ntari/dns/status").is_some());
        assert!(a
            .exported_service("riverside", "/ntari/ntari_dns_node/get_state")
            .is_none());
        let yaml = sample().replace("riverside: trusted", "riverside: untrusted");
        let a = Agreement::parse(&yaml).unwrap();
        assert!(a.exported_topic("riverside", "/ntari/dns/status").is_none());
        // Missing trust entry = untrusted.
        let yaml = sample().replace("  riverside: trusted\n", "");
        let a = Agreement::parse(&yaml).unwrap();
        assert_eq!(a.trust_granted_by("riverside"), Trust::Untrusted);
        assert!(a.exported_topic("riverside", "/ntari/dns/status").is_none());
    }

    #[test]
    fn parse_errors_carry_the_yaml_path() {
        let e = parse_err(&sample().replace("10.77.0.2", "10.77.0.x"));
        assert_eq!(e.path, "parties[1].tunnel_address");
        assert!(
            e.message.starts_with("invalid IP address `10.77.0.x`"),
            "{e}"
        );
        assert!(e.message.contains("(line "), "{e}");
        assert!(e
            .to_string()
            .starts_with("parties[1].tunnel_address: invalid IP address"));

        let e = parse_err(&sample().replace("    endpoint: 192.0.2.1:51820\n", "    port: 1\n"));
        assert_eq!(e.path, "parties[0].port", "{e}");
        assert!(e.message.contains("unknown field"), "{e}");

        let e = parse_err(&sample().replace("observer", "friend"));
        assert_eq!(e.path, "trust.hillside", "{e}");
        let e = parse_err(&sample().replace("2027-12-01T00:00:00Z", "next year"));
        assert_eq!(e.path, "valid.not_after", "{e}");
        assert!(e.message.contains("RFC 3339"), "{e}");
        let e = parse_err(&sample().replace("federation_domain: 77", "federation_domain: -1"));
        assert_eq!(e.path, "federation_domain", "{e}");
        let e = parse_err(&sample().replace("version: 1\n", ""));
        assert!(e.message.contains("missing field `version`"), "{e}");
        let e = parse_err("kind: [unclosed\n");
        assert!(!e.message.is_empty());
        let e = parse_err("just text");
        assert_eq!(e.path, ".");
        parse_err("");
    }

    #[test]
    fn rules_serde_cannot_express() {
        let cases: Vec<(String, &str)> = vec![
            (
                sample().replace("kind: ntari/federation-agreement/v1", "kind: x"),
                "kind",
            ),
            (
                sample().replace("id: riverside-hillside", "id: River"),
                "id",
            ),
            (sample().replace("id: riverside-hillside", "id: -x"), "id"),
            (sample().replace("version: 1", "version: 0"), "version"),
            (
                sample().replace("coop: hillside", "coop: riverside"),
                "parties[1].coop",
            ),
            (
                sample().replace("coop: hillside", "coop: Hill"),
                "parties[1].coop",
            ),
            (
                sample().replace("coop: hillside", "coop: 9hill"),
                "parties[1].coop",
            ),
            (sample().replace(DID_B, DID_A), "parties[1].did"),
            (
                sample().replace(DID_B, "did:web:example.org"),
                "parties[1].did",
            ),
            (sample().replace(WG_B, WG_A), "parties[1].wireguard_key"),
            (sample().replace(WG_B, "short="), "parties[1].wireguard_key"),
            (
                sample().replace("10.77.0.2", "10.77.0.1"),
                "parties[1].tunnel_address",
            ),
            (
                sample().replace("192.0.2.1:51820", "192.0.2.1"),
                "parties[0].endpoint",
            ),
            (
                sample().replace("2026-12-01T00:00:00Z", "2027-12-01T00:00:00Z"),
                "valid.not_after",
            ),
            (
                sample().replace("federation_domain: 77", "federation_domain: 233"),
                "federation_domain",
            ),
            (
                sample().replace("  hillside:\n    topics", "  lowland:\n    topics"),
                "exports.lowland",
            ),
            (
                sample().replace("hillside: observer", "lowland: observer"),
                "trust.lowland",
            ),
            (
                sample().replace("/ntari/*/health", "/ntari/he*/health"),
                "exports.riverside.topics[0].name",
            ),
            (
                sample().replace("/ntari/*/health", "ntari/health"),
                "exports.riverside.topics[0].name",
            ),
            (
                sample().replace("/ntari/*/health", "/ntari//health"),
                "exports.riverside.topics[0].name",
            ),
            (
                sample().replace("/ntari/dns/status", "/ntari/9dns/status"),
                "exports.riverside.topics[1].name",
            ),
            (
                sample().replace("std_msgs/msg/Bool", "std_msgs/Bool"),
                "exports.riverside.topics[0].type",
            ),
            (
                sample().replace("max_rate_hz: 5", "max_rate_hz: 0"),
                "exports.riverside.topics[0].max_rate_hz",
            ),
            (
                sample().replace("/ntari/ntari_dns_node/get_state", "/ntari/*/get_state"),
                "exports.riverside.services[0].name",
            ),
            (
                sample().replace("lifecycle_msgs/srv/GetState", "lifecycle_msgs/msg/GetState"),
                "exports.riverside.services[0].type",
            ),
        ];
        for (yaml, path) in cases {
            let e = invalid(&yaml);
            assert_eq!(e.path, path, "{e}");
        }
        let one_party = {
            let s = sample();
            let start = s.find("  - coop: hillside").unwrap();
            let end = s.find("valid:").unwrap();
            format!("{}{}", &s[..start], &s[end..])
                .replace("  hillside:\n    topics: []\n    services: []\n", "")
                .replace("  hillside: observer\n", "")
        };
        assert_eq!(invalid(&one_party).path, "parties");
    }

    #[test]
    fn signatures_are_checked_for_shape_and_duplicates() {
        let sig = "ab".repeat(64);
        let with = |entries: &str| format!("{}signatures:\n{entries}", sample());
        let ok = with(&format!("  - did: {DID_A}\n    signature: {sig}\n"));
        assert_eq!(Agreement::parse(&ok).unwrap().signatures[0].did, DID_A);
        let upper = with(&format!(
            "  - did: {DID_A}\n    signature: {}\n",
            sig.to_uppercase()
        ));
        assert_eq!(invalid(&upper).path, "signatures[0].signature");
        let twice = with(&format!(
            "  - did: {DID_A}\n    signature: {sig}\n  - did: {DID_A}\n    signature: {sig}\n"
        ));
        assert_eq!(invalid(&twice).path, "signatures[1].did");
    }

    #[test]
    fn signing_bytes_are_jcs_without_signatures() {
        let yaml = "b: 2\n# comment\na: {y: [1, \"x\"], x: true}\nsignatures:\n  - did: d\n    signature: s\n";
        let bytes = agreement_signing_bytes(yaml).unwrap();
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            r#"{"a":{"x":true,"y":[1,"x"]},"b":2}"#
        );
        // Comments, layout, quoting and key order do not change the bytes;
        // the signatures do not either.
        let a = sample();
        let b = format!(
            "{}signatures: []\n",
            a.replace("# riverside and hillside\n", "")
                .replace("federation_domain: 77", "federation_domain:   77   # DDS")
                .replace("id: riverside-hillside", "id: 'riverside-hillside'")
        );
        assert_eq!(
            agreement_signing_bytes(&a).unwrap(),
            agreement_signing_bytes(&b).unwrap()
        );
        // Any change of content does.
        let c = a.replace("max_rate_hz: 5", "max_rate_hz: 6");
        assert_ne!(
            agreement_signing_bytes(&a).unwrap(),
            agreement_signing_bytes(&c).unwrap()
        );
        // Revocations drop `signature`, and only at the top level.
        let r = "signature: x\nreason: \"é\\n\"\nnested: {signature: 1}\n";
        assert_eq!(
            String::from_utf8(revocation_signing_bytes(r).unwrap()).unwrap(),
            "{\"nested\":{\"signature\":1},\"reason\":\"é\\n\"}"
        );
        assert!(agreement_signing_bytes("- a\n- b\n").is_err());
        assert!(agreement_signing_bytes("a: [").is_err());
    }

    #[test]
    fn jcs_follows_rfc8785() {
        // Key order by UTF-16 code units (U+1F600 sorts before U+FB33,
        // unlike in UTF-8) and ES6 number forms (RFC 8785 §3.2).
        let v: serde_json::Value = serde_json::from_str(
            r#"{"\ufb33":5,"\u20ac":1,"\ud83d\ude00":2,"\r":3,"1":4,"a":1.50,"b":1e21}"#,
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(jcs(&v).unwrap()).unwrap(),
            "{\"\\r\":3,\"1\":4,\"a\":1.5,\"b\":1e+21,\"€\":1,\"😀\":2,\"\u{fb33}\":5}"
        );
    }

    #[test]
    fn globs() {
        let cases = [
            ("/ntari/*/health", "/ntari/dns/health", true),
            ("/ntari/*/health", "/ntari/health", false),
            ("/ntari/*/health", "/ntari/a/b/health", false),
            ("/ntari/**", "/ntari/a/b/health", true),
            ("/ntari/**", "/ntari", true),
            ("/ntari/**/health", "/ntari/health", true),
            ("/ntari/**/health", "/ntari/a/b/health", true),
            ("/ntari/**/health", "/ntari/a/b/status", false),
            ("/**", "/anything/at/all", true),
            ("/ntari/dns/status", "/ntari/dns/status", true),
            ("/ntari/dns/status", "/ntari/dns/statusx", false),
            ("/ntari/*", "/ntari/", false),
            ("/*/*/**/x/**", "/a/b/x", true),
            ("/*/*/**/x/**", "/a/x", false),
        ];
        for (pattern, name, expected) in cases {
            assert_eq!(glob_matches(pattern, name), expected, "{pattern} {name}");
        }
        assert!(!topic_allowed(
            "/**",
            "/remote/lowland/ntari/dns/health",
            false
        ));
        assert!(!topic_allowed("/remote/**", "/remote/lowland/x", false));
        assert!(topic_allowed("/remote/**", "/remote/lowland/x", true));
        assert!(topic_allowed("/**", "/remotely/x", false));
        // Many `**` stay fast.
        let pattern = format!("{}/y", "/**".repeat(30));
        let name = "/a".repeat(200);
        assert!(!glob_matches(&pattern, &name));
    }

    #[test]
    fn relay_gates_remote_exports() {
        let yaml = sample().replace("/ntari/dns/status", "/remote/lowland/ntari/dns/status");
        let a = Agreement::parse(&yaml).unwrap();
        assert!(a
            .exported_topic("riverside", "/remote/lowland/ntari/dns/status")
            .is_none());
        let a = Agreement::parse(&format!("{yaml}relay: true\n")).unwrap();
        assert!(a
            .exported_topic("riverside", "/remote/lowland/ntari/dns/status")
            .is_some());
    }

    fn revocation() -> String {
        format!(
            "kind: ntari/federation-revocation/v1\nagreement: riverside-hillside\nversion: 1\n\
             revoked_at: 2026-12-01T12:00:00Z\nby: {DID_A}\nreason: \"the partnership ended\"\n\
             signature: {}\n",
            "0".repeat(128)
        )
    }

    #[test]
    fn templates() {
        let t = Template::parse(
            "kind: ntari/federation-template/v1\ndays: 30\nexports:\n  inviter:\n    topics:\n      - name: /ntari/*/health\n        type: std_msgs/msg/Bool\n",
        )
        .unwrap();
        assert_eq!(t.days, 30);
        assert_eq!(t.exports.inviter.topics.len(), 1);
        assert!(t.exports.joiner.topics.is_empty() && !t.relay);
        Template::health_and_status().validate().unwrap();
        let field = |yaml: &str| Template::parse(yaml).unwrap_err().schema().path.clone();
        assert_eq!(
            field("kind: ntari/federation-template/v1\ndays: 0\n"),
            "days"
        );
        assert_eq!(
            field("kind: ntari/federation-template/v1\nexports:\n  joiner:\n    topics:\n      - name: not a topic\n        type: std_msgs/msg/Bool\n"),
            "exports.joiner.topics[0].name"
        );
        assert_eq!(
            field("kind: ntari/federation-template/v1\nfederation_domain: 500\n"),
            "federation_domain"
        );
        assert!(matches!(
            Template::parse("kind: ntari/federation-template/v1\nparties: []\n"),
            Err(DocumentError::Parse(_))
        ));
        assert_eq!(Trust::Trusted.at_most(Trust::Observer), Trust::Observer);
        assert_eq!(Trust::Untrusted.at_most(Trust::Trusted), Trust::Untrusted);
    }

    #[test]
    fn revocations() {
        let r = Revocation::parse(&revocation()).unwrap();
        assert_eq!(r.agreement, "riverside-hillside");
        assert_eq!(r.revoked_at.text, "2026-12-01T12:00:00Z");
        assert_eq!(r.reason, "the partnership ended");
        let bad = |from: &str, to: &str| match Revocation::parse(&revocation().replace(from, to)) {
            Err(e) => e.schema().path.clone(),
            Ok(_) => panic!("{from} -> {to} accepted"),
        };
        assert_eq!(bad("revocation/v1", "revocation/v2"), "kind");
        assert_eq!(
            bad("agreement: riverside-hillside", "agreement: A"),
            "agreement"
        );
        assert_eq!(bad("version: 1", "version: 0"), "version");
        assert_eq!(bad(DID_A, "did:key:x"), "by");
        assert_eq!(bad("\"the partnership ended\"", "\" \""), "reason");
        assert_eq!(bad(&"0".repeat(128), "00"), "signature");
        assert_eq!(bad("reason:", "motive:"), "motive");
    }
}

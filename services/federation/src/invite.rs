//! Invites: how a cooperative offers another an agreement without anyone
//! copying keys by hand. See docs/services/federation.md, "Joining".
//!
//! `ntari-admin federation invite` makes an [`InviteRecord`] in
//! `<state_dir>/invites/<id>.json` and prints the [`InviteCode`] for the
//! partner's admin. The code carries a one-time secret; the record keeps
//! only [`proof_key`] of it, a hash, which is all the inviter needs to
//! check the joiner's HMAC (see [`crate::join`]). An invite is used once:
//! the bridge marks it redeemed before it answers the join.
//!
//! Invariants: a record's file is written atomically (temp, fsync,
//! rename) with mode 0600; a code verifies only with the signature of the
//! DID it names, so a changed byte is refused before anything is sent.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use ntari_node::signing::{self, NodeKey};
use ntari_node::typehash::to_hex;
use ntari_schemas::federation::{
    Agreement, Party, SignatureEntry, Template, Timestamp, Trust, Validity, AGREEMENT_KIND,
};
pub use ntari_schemas::wireguard_peers::{format_time, parse_time};
use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What every code starts with (and the version of its layout).
pub const CODE_PREFIX: &str = "ntari-invite-1.";
/// Signed bytes start with this line, so an invite signature is never
/// valid as any other document's.
const SIGNING_DOMAIN: &str = "ntari-invite-v1\n";
/// Longest code accepted (a real one is about 400 characters).
pub const MAX_CODE_LEN: usize = 2048;
/// Default port of the join endpoint.
pub const DEFAULT_JOIN_PORT: u16 = 9708;

/// Why a code or record is refused.
#[derive(Debug, thiserror::Error)]
pub enum InviteError {
    #[error("not an invite code: {0}")]
    Malformed(String),
    #[error("the invite code was changed or damaged: its signature does not verify with the DID it names; ask the inviting cooperative for a new code")]
    Tampered,
    #[error("the invite expired at {0}; ask the inviting cooperative for a new one")]
    Expired(String),
    #[error("{path}: {message}", path = path.display())]
    Io { path: PathBuf, message: String },
}

/// What the invite code says (all of it signed by `did`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InviteCode {
    pub v: u32,
    /// 16 hex digits; names the record on the inviter's side.
    pub id: String,
    /// The inviting cooperative and its node's DID.
    pub coop: String,
    pub did: String,
    /// The cooperative the invite is for.
    #[serde(rename = "for")]
    pub for_coop: String,
    /// `host:port` of the inviter's join endpoint.
    pub join: String,
    /// RFC 3339 UTC.
    pub expires: String,
    /// The trust the inviter grants the joiner.
    pub trust: Trust,
    /// 16 random bytes, base64url; proven, never sent, by the joiner.
    pub secret: String,
    /// Ed25519 by `did` over [`SIGNING_DOMAIN`] + JCS of the rest, base64url.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sig: String,
}

impl InviteCode {
    fn signing_bytes(&self) -> Vec<u8> {
        let mut unsigned = self.clone();
        unsigned.sig.clear();
        let value = serde_json::to_value(&unsigned).unwrap_or_default();
        let mut out = SIGNING_DOMAIN.as_bytes().to_vec();
        out.extend(serde_json_canonicalizer::to_vec(&value).unwrap_or_default());
        out
    }

    /// Signs with `key` (whose DID must be `self.did`) and encodes.
    pub fn encode(mut self, key: &NodeKey) -> String {
        self.sig.clear();
        let hex = key.sign_bytes(&self.signing_bytes());
        let sig = decode_hex(&hex).unwrap_or_default();
        self.sig = URL_SAFE_NO_PAD.encode(sig);
        let json = serde_json::to_vec(&self).unwrap_or_default();
        format!("{CODE_PREFIX}{}", URL_SAFE_NO_PAD.encode(json))
    }

    /// Decodes and checks the signature (not the expiry: see
    /// [`InviteCode::check_expiry`]).
    pub fn decode(text: &str) -> Result<InviteCode, InviteError> {
        let text = text.trim();
        if text.len() > MAX_CODE_LEN {
            return Err(InviteError::Malformed(format!(
                "{} characters; a code is about 400",
                text.len()
            )));
        }
        let body = text.strip_prefix(CODE_PREFIX).ok_or_else(|| {
            InviteError::Malformed(format!(
                "it does not start with `{CODE_PREFIX}` (copy the whole code, or it is from a newer ntari-admin)"
            ))
        })?;
        let json = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| InviteError::Tampered)?;
        let code: InviteCode = serde_json::from_slice(&json).map_err(|_| InviteError::Tampered)?;
        if code.v != 1 {
            return Err(InviteError::Malformed(format!(
                "layout version {} (this ntari-admin knows 1)",
                code.v
            )));
        }
        let sig = URL_SAFE_NO_PAD
            .decode(&code.sig)
            .map_err(|_| InviteError::Tampered)?;
        signing::verify_bytes(&code.did, &code.signing_bytes(), &to_hex(&sig))
            .map_err(|_| InviteError::Tampered)?;
        Ok(code)
    }

    pub fn check_expiry(&self, now: SystemTime) -> Result<(), InviteError> {
        let expires = parse_time(&self.expires).map_err(InviteError::Malformed)?;
        if now >= expires {
            return Err(InviteError::Expired(self.expires.clone()));
        }
        Ok(())
    }

    /// The key the joiner's HMAC uses (see [`proof_key`]).
    pub fn proof_key(&self) -> Result<[u8; 32], InviteError> {
        let secret = URL_SAFE_NO_PAD
            .decode(&self.secret)
            .map_err(|_| InviteError::Tampered)?;
        Ok(proof_key(&secret))
    }
}

/// The hash of the invite's secret that both sides key the HMAC with; the
/// inviter stores this and never the secret.
pub fn proof_key(secret: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"ntari-invite-proof-v1\n");
    h.update(secret);
    h.finalize().into()
}

/// HMAC-SHA256 of `message` under `key`, hex.
pub fn hmac_hex(key: &[u8; 32], message: &[u8]) -> String {
    // HMAC takes a key of any length; the error arm cannot happen.
    let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(key) else {
        return String::new();
    };
    mac.update(message);
    to_hex(&mac.finalize().into_bytes())
}

/// Whether `mac_hex` is the HMAC of `message` (in constant time).
pub fn hmac_matches(key: &[u8; 32], message: &[u8], mac_hex: &str) -> bool {
    let Some(tag) = decode_hex(mac_hex) else {
        return false;
    };
    let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(key) else {
        return false;
    };
    mac.update(message);
    mac.verify_slice(&tag).is_ok()
}

/// Where an invite stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum InviteState {
    Pending,
    /// A join succeeded: the draft agreement awaits the admin's approval.
    Redeemed {
        by_did: String,
        agreement: String,
        at: String,
    },
    /// The admin withdrew it before it was used.
    Withdrawn {
        at: String,
    },
}

/// `<state_dir>/invites/<id>.json`. (Not `deny_unknown_fields`: serde
/// cannot combine it with the flattened state.)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InviteRecord {
    pub version: u32,
    pub id: String,
    /// The cooperative it is for.
    pub for_coop: String,
    pub trust: Trust,
    pub created: String,
    pub expires: String,
    /// [`proof_key`] of the secret, hex.
    pub proof_key: String,
    /// Our party in the agreement to be drafted.
    pub inviter: Party,
    pub template: Template,
    /// The federation domain chosen for the agreement.
    pub federation_domain: u32,
    #[serde(flatten)]
    pub state: InviteState,
}

impl InviteRecord {
    pub fn expires_at(&self) -> SystemTime {
        parse_time(&self.expires).unwrap_or(SystemTime::UNIX_EPOCH)
    }

    /// Pending and not expired at `now`.
    pub fn is_open(&self, now: SystemTime) -> bool {
        self.state == InviteState::Pending && now < self.expires_at()
    }

    pub fn proof_key_bytes(&self) -> Option<[u8; 32]> {
        decode_hex(&self.proof_key)?.try_into().ok()
    }
}

/// A new invite: its record (to store) and its code (to hand over).
pub struct NewInvite<'a> {
    pub key: &'a NodeKey,
    pub inviter: Party,
    pub for_coop: String,
    pub trust: Trust,
    pub valid_for: Duration,
    pub join_endpoint: String,
    pub template: Template,
    pub federation_domain: u32,
}

pub fn create(new: NewInvite<'_>, now: SystemTime) -> (InviteRecord, String) {
    let mut id = [0u8; 8];
    let mut secret = [0u8; 16];
    OsRng.fill_bytes(&mut id);
    OsRng.fill_bytes(&mut secret);
    let id = to_hex(&id);
    let expires = format_time(now + new.valid_for);
    let record = InviteRecord {
        version: 1,
        id: id.clone(),
        for_coop: new.for_coop.clone(),
        trust: new.trust,
        created: format_time(now),
        expires: expires.clone(),
        proof_key: to_hex(&proof_key(&secret)),
        inviter: new.inviter.clone(),
        template: new.template,
        federation_domain: new.federation_domain,
        state: InviteState::Pending,
    };
    let code = InviteCode {
        v: 1,
        id,
        coop: new.inviter.coop,
        did: new.key.did().to_string(),
        for_coop: new.for_coop,
        join: new.join_endpoint,
        expires,
        trust: new.trust,
        secret: URL_SAFE_NO_PAD.encode(secret),
        sig: String::new(),
    }
    .encode(new.key);
    (record, code)
}

/// The invites directory.
#[derive(Debug, Clone)]
pub struct InviteStore {
    pub dir: PathBuf,
}

impl InviteStore {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        InviteStore { dir: dir.into() }
    }

    fn path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    pub fn save(&self, record: &InviteRecord) -> Result<(), InviteError> {
        let path = self.path(&record.id);
        let io = |message: String| InviteError::Io {
            path: path.clone(),
            message,
        };
        std::fs::create_dir_all(&self.dir).map_err(|e| io(e.to_string()))?;
        let text = serde_json::to_string_pretty(record).map_err(|e| io(e.to_string()))? + "\n";
        ntari_node::fsutil::write_atomic(&path, text.as_bytes(), 0o600)
            .map_err(|e| io(e.to_string()))
    }

    /// The record of invite `id`; None if there is none (an id that is
    /// not 16 hex digits has none).
    pub fn load(&self, id: &str) -> Result<Option<InviteRecord>, InviteError> {
        if id.len() != 16 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(None);
        }
        let path = self.path(id);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| InviteError::Io {
                    path,
                    message: format!("not an invite record: {e}"),
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(InviteError::Io {
                path,
                message: e.to_string(),
            }),
        }
    }

    /// Every readable record, by id; unreadable files are skipped (and
    /// returned, for a warning).
    pub fn all(&self) -> (Vec<InviteRecord>, Vec<String>) {
        let mut records = Vec::new();
        let mut bad = Vec::new();
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return (records, bad);
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            match std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
            {
                Ok(record) => records.push(record),
                Err(e) => bad.push(format!("{}: {e}", path.display())),
            }
        }
        records.sort_by(|a: &InviteRecord, b| a.id.cmp(&b.id));
        (records, bad)
    }

    /// How many invites are pending and unexpired at `now`.
    pub fn open_count(&self, now: SystemTime) -> usize {
        self.all().0.iter().filter(|r| r.is_open(now)).count()
    }
}

/// The agreement a join drafts: the template's terms between the
/// inviter and the joiner, valid from a minute ago (clock skew) for the
/// template's days, version 1, unsigned.
pub fn draft_agreement(
    record: &InviteRecord,
    joiner: &Party,
    joiner_grants: Trust,
    now: SystemTime,
) -> Agreement {
    let template = &record.template;
    let inviter = &record.inviter;
    let id = template
        .id
        .clone()
        .unwrap_or_else(|| format!("{}-{}", inviter.coop, joiner.coop).replace('_', "-"));
    let start = now - Duration::from_secs(60);
    let end = now + Duration::from_secs(u64::from(template.days) * 86_400);
    // Whole seconds, so the value is what the written text parses back to.
    let stamp = |t: SystemTime| {
        let text = format_time(t);
        Timestamp {
            time: parse_time(&text).unwrap_or(t),
            text,
        }
    };
    Agreement {
        kind: AGREEMENT_KIND.to_string(),
        id,
        version: 1,
        parties: vec![inviter.clone(), joiner.clone()],
        valid: Validity {
            not_before: stamp(start),
            not_after: stamp(end),
        },
        federation_domain: record.federation_domain,
        exports: [
            (inviter.coop.clone(), template.exports.inviter.clone()),
            (joiner.coop.clone(), template.exports.joiner.clone()),
        ]
        .into_iter()
        .collect(),
        trust: [
            (inviter.coop.clone(), record.trust),
            (joiner.coop.clone(), joiner_grants),
        ]
        .into_iter()
        .collect(),
        relay: template.relay,
        signatures: Vec::<SignatureEntry>::new(),
    }
}

/// The YAML of a drafted agreement, with a header saying where it came from.
pub fn agreement_yaml(agreement: &Agreement, invite_id: &str) -> String {
    let body = serde_yaml_ng::to_string(agreement).unwrap_or_default();
    format!(
        "# Drafted by a join (invite {invite_id}); approve on the inviting hub with\n#   ntari-admin federation approve {}\n{body}",
        agreement.id
    )
}

/// A party's tunnel address and the like, for messages: `Party` as sent.
pub fn party(
    coop: &str,
    did: &str,
    wireguard_key: &str,
    tunnel_address: IpAddr,
    endpoint: Option<String>,
) -> Party {
    Party {
        coop: coop.to_string(),
        did: did.to_string(),
        wireguard_key: wireguard_key.to_string(),
        tunnel_address,
        endpoint,
    }
}

pub fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Where the state directory keeps invites.
pub fn invites_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("invites")
}

/// Where drafts from joins wait for the admin's approval.
pub fn pending_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("pending")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_invite(key: &NodeKey) -> (InviteRecord, String) {
        let inviter = party(
            "coop_a",
            key.did(),
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            "10.77.0.1".parse().unwrap(),
            Some("192.0.2.1:51820".into()),
        );
        create(
            NewInvite {
                key,
                inviter,
                for_coop: "coop_b".into(),
                trust: Trust::Observer,
                valid_for: Duration::from_secs(3600),
                join_endpoint: "192.0.2.1:9708".into(),
                template: Template::health_and_status(),
                federation_domain: 77,
            },
            SystemTime::now(),
        )
    }

    #[test]
    fn a_code_round_trips_and_proves_the_same_key_as_the_record() {
        let key = NodeKey::generate().unwrap();
        let (record, code) = new_invite(&key);
        assert!(code.starts_with(CODE_PREFIX));
        assert!(code.len() < 600, "{} characters", code.len());
        let decoded = InviteCode::decode(&code).unwrap();
        assert_eq!(decoded.id, record.id);
        assert_eq!(decoded.for_coop, "coop_b");
        assert_eq!(
            decoded.proof_key().unwrap(),
            record.proof_key_bytes().unwrap()
        );
        // The record holds the hash only, never the secret.
        let stored = serde_json::to_string(&record).unwrap();
        assert!(!stored.contains(&decoded.secret));
    }

    #[test]
    fn any_changed_character_is_refused() {
        let key = NodeKey::generate().unwrap();
        let (_, code) = new_invite(&key);
        let body_start = CODE_PREFIX.len();
        for i in (body_start..code.len()).step_by(7) {
            let mut bytes = code.clone().into_bytes();
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            let changed = String::from_utf8(bytes).unwrap();
            assert!(
                InviteCode::decode(&changed).is_err(),
                "change at {i} accepted"
            );
        }
        assert!(matches!(
            InviteCode::decode("hello"),
            Err(InviteError::Malformed(_))
        ));
    }

    #[test]
    fn a_code_signed_by_another_key_is_refused() {
        let key = NodeKey::generate().unwrap();
        let other = NodeKey::generate().unwrap();
        let (_, code) = new_invite(&key);
        let mut decoded = InviteCode::decode(&code).unwrap();
        decoded.trust = Trust::Trusted;
        // Re-signed by a key that is not the DID in the code.
        let forged = decoded.encode(&other);
        assert!(matches!(
            InviteCode::decode(&forged),
            Err(InviteError::Tampered)
        ));
    }

    #[test]
    fn the_example_template_parses() {
        let text = include_str!("../../../examples/federation/template.yaml");
        let template = Template::parse(text).unwrap();
        assert_eq!(template.exports.inviter.topics.len(), 2);
    }

    #[test]
    fn hmac_checks_key_and_message() {
        let key = proof_key(b"secret");
        let mac = hmac_hex(&key, b"challenge");
        assert!(hmac_matches(&key, b"challenge", &mac));
        assert!(!hmac_matches(&key, b"challengE", &mac));
        assert!(!hmac_matches(&proof_key(b"other"), b"challenge", &mac));
        assert!(!hmac_matches(&key, b"challenge", "zz"));
    }

    #[test]
    fn the_draft_is_a_valid_agreement_with_the_invites_terms() {
        let key = NodeKey::generate().unwrap();
        let other = NodeKey::generate().unwrap();
        let (record, _) = new_invite(&key);
        let joiner = party(
            "coop_b",
            other.did(),
            "BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBA=",
            "10.77.0.2".parse().unwrap(),
            None,
        );
        let draft = draft_agreement(&record, &joiner, Trust::Observer, SystemTime::now());
        let yaml = agreement_yaml(&draft, &record.id);
        let parsed = Agreement::parse(&yaml).unwrap();
        assert_eq!(parsed.id, "coop-a-coop-b");
        assert_eq!(parsed.trust_granted_by("coop_a"), Trust::Observer);
        assert_eq!(parsed.federation_domain, 77);
        assert!(parsed.in_window(SystemTime::now()));
    }
}

//! The node key, its `did:key` identity, and signed envelopes.
//!
//! Every signature an NTARI node makes or checks (status messages, node
//! policy, federation agreements, admin commands) goes through this module,
//! so there is exactly one key format, one identity encoding and one
//! definition of "the bytes that were signed".
//!
//! # Key file
//!
//! Default path [`DEFAULT_KEY_PATH`] (`/etc/ntari/keys/node.ed25519`). The
//! file is one line of ASCII text:
//!
//! ```text
//! ntari-ed25519-v1 <64 lowercase hex digits>\n
//! ```
//!
//! The hex digits are the 32-byte Ed25519 secret key (the RFC 8032 "seed"
//! from which the key pair is derived). The trailing newline is optional
//! when reading. A text tag rather than 32 raw bytes, so that a wrong file
//! (an SSH key, a truncated copy) is recognised instead of silently used.
//! The file must be a regular file (a symlink to one is followed) with no
//! group/other permission bits (`mode & 0o077 == 0`). An operator can make
//! one by hand:
//!
//! ```text
//! umask 077; printf 'ntari-ed25519-v1 %s\n' "$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')" > node.ed25519
//! ```
//!
//! [`NodeKey::load_or_create`] creates the file when it is missing: parent
//! directories it has to create get mode 0700 (existing ones are left
//! alone), the key is written to a temporary file (mode 0600) in the same
//! directory, fsynced, then hard-linked into place — `link(2)` fails rather
//! than replace an existing file, so two nodes starting at once can never
//! clobber each other's key — and the directory is fsynced. A file that
//! exists but is unusable is never rewritten: the error says what to do.
//!
//! # Identity
//!
//! The node's identity is its `did:key` (W3C CCG did:key method):
//! `did:key:z` + base58btc(`0xed 0x01` ‖ 32-byte public key), i.e. the
//! multicodec `ed25519-pub` varint prefix and the multibase `z` prefix.
//! Such DIDs start with `did:key:z6Mk`.
//!
//! # Envelopes
//!
//! An [`Envelope`] is a JSON object with exactly the fields `v` (the
//! envelope version, the integer `2`), `issuer` (the signer's did:key),
//! `timestamp` (Unix time in **milliseconds**, an integer), `nonce` (128
//! random bits as 32 lowercase hex digits), `payload` (any JSON value) and
//! `signature` (the 64-byte Ed25519 signature as 128 lowercase hex
//! digits). Unknown fields are refused, because they would not be covered
//! by the signature.
//!
//! The signature of a version 2 envelope (what [`NodeKey::sign`] makes)
//! covers these bytes (UTF-8, `\n` = 0x0a, no trailing newline), see
//! [`Envelope::signing_bytes`]:
//!
//! ```text
//! ntari-envelope-v2\n{RFC 8785 (JCS) form of the envelope object without `signature`}
//! ```
//!
//! e.g. `ntari-envelope-v2\n{"issuer":"did:key:z6Mk…","nonce":"…","payload":{…},"timestamp":1750000000000,"v":2}`.
//! JCS (RFC 8785: keys sorted by UTF-16 code units, no whitespace, numbers
//! in their ECMAScript form) is what any language's JCS library produces,
//! so other tooling can verify without re-implementing a layout; for the
//! integer/string/boolean/null payloads NTARI sends, Python's
//! `json.dumps(obj, sort_keys=True, separators=(',', ':'), ensure_ascii=False)`
//! gives the same bytes.
//!
//! # Version 1 envelopes
//!
//! An envelope without `v` is version 1, which nodes signed before; it is
//! still verified, so old signatures stay checkable. Its signature covers:
//!
//! ```text
//! ntari-envelope-v1\n{issuer}\n{timestamp as decimal}\n{nonce}\n{canonical_json(payload)}
//! ```
//!
//! [`canonical_json`] is compact JSON (no whitespace) with object keys
//! sorted by their UTF-8 bytes at every depth, strings escaped as
//! serde_json escapes them (`"`, `\`, control characters; everything else
//! literal UTF-8) and numbers printed as serde_json prints them (integers
//! as integers, floats as the shortest round-trip form, e.g. `1.5`, `-0.0`, `1e+300`).
//! The sorting is done here explicitly rather than relying on serde_json's
//! map being a `BTreeMap`, which silently changes if any crate in the build
//! enables serde_json's `preserve_order` feature. Verifiers written in other
//! languages should keep to integers, strings, booleans, null, arrays and
//! objects in payloads; float formatting differs between JSON libraries.
//! Issuer and nonce can contain no newline (both are validated), so the
//! field boundaries are unambiguous. Any other `v` is refused.
//!
//! # Detached signatures
//!
//! Documents that carry their own signatures (federation agreements and
//! revocations) are signed over their own bytes — their JCS form — with
//! [`NodeKey::sign_bytes`] and checked with [`verify_bytes`] (strict
//! verification). Such bytes start with `{`, envelope signing bytes with
//! `ntari-envelope-`, so neither kind of signature passes for the other;
//! the documents carry a `kind` field for the same purpose among themselves.
//!
//! # Verification
//!
//! A [`Verifier`] accepts an envelope only if the issuer is a well-formed
//! Ed25519 did:key (and on its trust list, if it has one), the signature
//! verifies (strict RFC 8032 verification), the timestamp is within
//! ±[`DEFAULT_WINDOW_MS`] (5 minutes, inclusive) of the verifier's clock,
//! and the (issuer, nonce) pair has not been accepted before. See
//! [`Verifier`] for how the nonce memory stays bounded.

use std::collections::{BTreeSet, HashSet};
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use zeroize::Zeroizing;

/// Where a node's key lives unless configured otherwise (DESIGN §4).
pub const DEFAULT_KEY_PATH: &str = "/etc/ntari/keys/node.ed25519";

/// First word of the key file; versioned so the format can change later.
pub const KEY_FILE_TAG: &str = "ntari-ed25519-v1";

/// First line of the signed bytes of a version 1 envelope; binds
/// signatures to this envelope format so they cannot be replayed as some
/// other kind of signed message.
pub const ENVELOPE_DOMAIN: &str = "ntari-envelope-v1";

/// First line of the signed bytes of a version 2 envelope.
pub const ENVELOPE_DOMAIN_V2: &str = "ntari-envelope-v2";

/// The envelope version [`NodeKey::sign`] makes (its `v` field).
pub const ENVELOPE_VERSION: u32 = 2;

/// Accepted clock difference between signer and verifier, either way.
pub const DEFAULT_WINDOW_MS: i64 = 5 * 60 * 1000;

/// Default cap on remembered nonces. At roughly 150 bytes per entry this is
/// about 1.2 MiB at worst, and covers ~270 issuers each signing every 10 s
/// for the whole 10-minute span a nonce has to be remembered.
pub const DEFAULT_MAX_NONCES: usize = 8192;

/// Multicodec `ed25519-pub` (0xed) as an unsigned varint.
const ED25519_PUB_MULTICODEC: [u8; 2] = [0xed, 0x01];
const DID_KEY_PREFIX: &str = "did:key:";
/// Key file length without the trailing newline: tag, space, 64 hex digits.
const KEY_LINE_LEN: usize = KEY_FILE_TAG.len() + 1 + 64;

/// Problems with the node key file, or with the randomness needed to sign.
#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    #[error("node key {path}: cannot {action}: {source}", path = path.display())]
    Io {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: io::Error,
    },
    #[error(
        "node key {path} has mode {mode:04o}, so other users could read it; \
         refusing to use it: run `chmod 600 {path}` (and consider the key \
         compromised if others had access)",
        path = path.display()
    )]
    InsecurePermissions { path: PathBuf, mode: u32 },
    #[error(
        "node key {path} is not a regular file; remove or move it (a new key, \
         hence a new node DID, is then created) or put the node key there",
        path = path.display()
    )]
    NotRegularFile { path: PathBuf },
    #[error(
        "node key {path} is not an NTARI node key ({reason}); expected one line \
         `{KEY_FILE_TAG} <64 lowercase hex digits>`. The file was left untouched: \
         restore it from a backup, or move it away to create a new key (the node \
         DID will change)",
        path = path.display()
    )]
    BadFormat { path: PathBuf, reason: String },
    #[error("the operating system's random number generator failed: {0}")]
    Random(rand_core::Error),
}

/// Why a string is not an Ed25519 `did:key`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DidError {
    #[error("not a did:key (must start with `did:key:z`)")]
    NotDidKey,
    #[error("did:key is not valid base58btc: {0}")]
    Base58(String),
    #[error("did:key is not an Ed25519 key (multicodec prefix must be 0xed 0x01)")]
    NotEd25519,
    #[error("did:key holds {0} key bytes; an Ed25519 public key has 32")]
    WrongLength(usize),
    #[error("did:key holds bytes that are not a valid Ed25519 public key")]
    InvalidKey,
    #[error("did:key is not in canonical form")]
    NotCanonical,
}

/// Why a [`Verifier`] refused an envelope.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("envelope issuer {issuer:?} is not usable: {source}")]
    MalformedIssuer {
        issuer: String,
        #[source]
        source: DidError,
    },
    #[error("envelope issuer {issuer} is not on this verifier's trust list")]
    UntrustedIssuer { issuer: String },
    #[error("envelope nonce {nonce:?} is malformed (expected 32 lowercase hex digits)")]
    MalformedNonce { nonce: String },
    #[error("envelope signature is malformed (expected 128 lowercase hex digits)")]
    MalformedSignature,
    #[error("envelope from {issuer} has `v` {version}; this node reads 2 (and 1, which has no `v`): update it")]
    UnknownVersion { issuer: String, version: u32 },
    #[error("envelope signature does not verify for issuer {issuer}: it was altered or not made by that key")]
    BadSignature { issuer: String },
    #[error(
        "envelope from {issuer} is timestamped {timestamp} ms, {skew_ms} ms away \
         from this node's clock ({now} ms); at most {window_ms} ms is accepted — \
         check that both clocks are synchronised (NTP)"
    )]
    TimestampOutOfWindow {
        issuer: String,
        timestamp: i64,
        now: i64,
        skew_ms: u64,
        window_ms: i64,
    },
    #[error(
        "envelope from {issuer} (timestamp {timestamp} ms) is older than this \
         verifier's replay memory (which starts at {horizon} ms, because the \
         nonce cache overflowed or the clock stepped back), so it cannot be \
         checked for replay and is refused"
    )]
    BeyondReplayMemory {
        issuer: String,
        timestamp: i64,
        horizon: i64,
    },
    #[error("envelope from {issuer} with nonce {nonce} was already accepted: replay refused")]
    Replay { issuer: String, nonce: String },
}

/// The node's Ed25519 key pair and its did:key.
///
/// The secret is wiped from memory when the key is dropped (ed25519-dalek's
/// `zeroize` feature); `Debug` shows only the DID.
pub struct NodeKey {
    signing: SigningKey,
    did: String,
}

impl fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeKey")
            .field("did", &self.did)
            .finish_non_exhaustive()
    }
}

impl NodeKey {
    /// Key pair from a 32-byte Ed25519 secret (RFC 8032 seed). For tests,
    /// test vectors and tools; nodes use [`NodeKey::load_or_create`].
    pub fn from_secret_bytes(secret: &[u8; 32]) -> NodeKey {
        let signing = SigningKey::from_bytes(secret);
        let did = did_from_public_key(&signing.verifying_key());
        NodeKey { signing, did }
    }

    /// A fresh key from the OS random number generator (not saved).
    pub fn generate() -> Result<NodeKey, SigningError> {
        let mut secret = Zeroizing::new([0u8; 32]);
        OsRng
            .try_fill_bytes(&mut secret[..])
            .map_err(SigningError::Random)?;
        Ok(NodeKey::from_secret_bytes(&secret))
    }

    /// Loads the key at `path`, creating it first if it does not exist.
    /// Returns the key and whether it was created by this call.
    ///
    /// An existing file is never modified, whatever is wrong with it.
    pub fn load_or_create(path: impl AsRef<Path>) -> Result<(NodeKey, bool), SigningError> {
        let path = path.as_ref();
        match NodeKey::load(path) {
            Ok(key) => Ok((key, false)),
            Err(SigningError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                let key = NodeKey::generate()?;
                if create_key_file(path, &key)? {
                    tracing::info!(path = %path.display(), did = %key.did, "created node key");
                    Ok((key, true))
                } else {
                    // Another process created it between our open and link:
                    // use theirs, so every process agrees on one identity.
                    Ok((NodeKey::load(path)?, false))
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Loads an existing key file, refusing it if it is not a regular file,
    /// is accessible to group or others, or is not in the documented format.
    pub fn load(path: impl AsRef<Path>) -> Result<NodeKey, SigningError> {
        let path = path.as_ref();
        let io_err = |action, source| SigningError::Io {
            path: path.to_owned(),
            action,
            source,
        };
        // O_NONBLOCK so that a FIFO placed at the path cannot hang start-up;
        // it has no effect on regular files.
        let mut file = OpenOptions::new()
            .read(true)
            .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
            .open(path)
            .map_err(|e| io_err("open it", e))?;
        // Check the opened file itself, not the path, so the checks and the
        // read are about the same file.
        let meta = file.metadata().map_err(|e| io_err("stat it", e))?;
        if !meta.file_type().is_file() {
            return Err(SigningError::NotRegularFile {
                path: path.to_owned(),
            });
        }
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(SigningError::InsecurePermissions {
                path: path.to_owned(),
                mode,
            });
        }
        let mut contents = Zeroizing::new(Vec::with_capacity(KEY_LINE_LEN + 2));
        (&mut file)
            .take(KEY_LINE_LEN as u64 + 2)
            .read_to_end(&mut contents)
            .map_err(|e| io_err("read it", e))?;
        let secret = parse_key_file(&contents).map_err(|reason| SigningError::BadFormat {
            path: path.to_owned(),
            reason,
        })?;
        Ok(NodeKey::from_secret_bytes(&secret))
    }

    /// The node's identity, `did:key:z6Mk…`.
    pub fn did(&self) -> &str {
        &self.did
    }

    pub fn verifying_key(&self) -> VerifyingKey {
        self.signing.verifying_key()
    }

    /// Signs `payload` with the current time and a fresh random nonce.
    pub fn sign(&self, payload: Value) -> Result<Envelope, SigningError> {
        self.sign_at(payload, now_unix_ms())
    }

    /// Signs `payload` as of `timestamp_ms` (Unix milliseconds); for tests
    /// and for callers that already hold the time they want to state.
    pub fn sign_at(&self, payload: Value, timestamp_ms: i64) -> Result<Envelope, SigningError> {
        let mut nonce = [0u8; 16];
        OsRng
            .try_fill_bytes(&mut nonce)
            .map_err(SigningError::Random)?;
        Ok(self.sign_with_nonce(payload, timestamp_ms, hex_encode(&nonce)))
    }

    /// Detached Ed25519 signature over `bytes`, 128 lowercase hex digits
    /// (for documents that carry their signature; see the module docs).
    pub fn sign_bytes(&self, bytes: &[u8]) -> String {
        hex_encode(&self.signing.sign(bytes).to_bytes())
    }

    fn sign_with_nonce(&self, payload: Value, timestamp_ms: i64, nonce: String) -> Envelope {
        let mut env = Envelope {
            v: Some(ENVELOPE_VERSION),
            issuer: self.did.clone(),
            timestamp: timestamp_ms,
            nonce,
            payload,
            signature: String::new(),
        };
        let signature = self.signing.sign(&env.signing_bytes());
        env.signature = hex_encode(&signature.to_bytes());
        env
    }
}

/// A signed message; see the module documentation for the exact format.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    /// Envelope version: 2; absent in version 1 envelopes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub v: Option<u32>,
    /// did:key of the signer.
    pub issuer: String,
    /// Unix time in milliseconds when it was signed.
    pub timestamp: i64,
    /// 128 random bits, 32 lowercase hex digits; unique per issuer.
    pub nonce: String,
    pub payload: Value,
    /// Ed25519 signature over [`Envelope::signing_bytes`], 128 lowercase hex digits.
    pub signature: String,
}

impl Envelope {
    /// The exact bytes the signature covers: everything but the signature,
    /// in the layout of the envelope's version.
    pub fn signing_bytes(&self) -> Vec<u8> {
        match self.v {
            None => self.signing_bytes_v1(),
            Some(v) => {
                let object = serde_json::json!({
                    "v": v,
                    "issuer": self.issuer,
                    "timestamp": self.timestamp,
                    "nonce": self.nonce,
                    "payload": self.payload,
                });
                let domain = if v == ENVELOPE_VERSION {
                    ENVELOPE_DOMAIN_V2.to_string()
                } else {
                    format!("ntari-envelope-v{v}")
                };
                let mut out = domain.into_bytes();
                out.push(b'\n');
                // JCS of a serde_json::Value cannot fail (string keys, finite
                // numbers); should it, the bytes signed or checked are just
                // the domain line, which no verifier accepts for this content.
                if let Ok(jcs) = serde_json_canonicalizer::to_vec(&object) {
                    out.extend_from_slice(&jcs);
                }
                out
            }
        }
    }

    fn signing_bytes_v1(&self) -> Vec<u8> {
        let payload = canonical_json(&self.payload);
        let mut out = Vec::with_capacity(
            ENVELOPE_DOMAIN.len() + self.issuer.len() + self.nonce.len() + payload.len() + 24,
        );
        out.extend_from_slice(ENVELOPE_DOMAIN.as_bytes());
        out.push(b'\n');
        out.extend_from_slice(self.issuer.as_bytes());
        out.push(b'\n');
        out.extend_from_slice(self.timestamp.to_string().as_bytes());
        out.push(b'\n');
        out.extend_from_slice(self.nonce.as_bytes());
        out.push(b'\n');
        out.extend_from_slice(payload.as_bytes());
        out
    }
}

/// Deterministic compact JSON with object keys sorted (by UTF-8 bytes) at
/// every depth; see the module documentation.
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => write_json_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push('{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json_string(key, out);
                out.push(':');
                write_canonical(item, out);
            }
            out.push('}');
        }
    }
}

fn write_json_string(s: &str, out: &mut String) {
    // serde_json's string escaping is deterministic; serialising a &str
    // cannot fail, but fall back to an escape of our own rather than panic.
    match serde_json::to_string(s) {
        Ok(quoted) => out.push_str(&quoted),
        Err(_) => {
            out.push('"');
            for c in s.chars() {
                match c {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
                    c => out.push(c),
                }
            }
            out.push('"');
        }
    }
}

/// Checks a detached signature ([`NodeKey::sign_bytes`]) of `did` over
/// `bytes`, with strict RFC 8032 verification.
pub fn verify_bytes(did: &str, bytes: &[u8], signature_hex: &str) -> Result<(), VerifyError> {
    let key = public_key_from_did(did).map_err(|source| VerifyError::MalformedIssuer {
        issuer: did.to_owned(),
        source,
    })?;
    let signature = decode_hex_array::<64>(signature_hex)
        .map(|b| Signature::from_bytes(&b))
        .ok_or(VerifyError::MalformedSignature)?;
    key.verify_strict(bytes, &signature)
        .map_err(|_| VerifyError::BadSignature {
            issuer: did.to_owned(),
        })
}

/// `did:key:z…` for an Ed25519 public key.
pub fn did_from_public_key(key: &VerifyingKey) -> String {
    let mut bytes = [0u8; 34];
    bytes[..2].copy_from_slice(&ED25519_PUB_MULTICODEC);
    bytes[2..].copy_from_slice(key.as_bytes());
    format!("{DID_KEY_PREFIX}z{}", bs58::encode(bytes).into_string())
}

/// The Ed25519 public key named by a `did:key:z6Mk…` DID.
///
/// Only the canonical encoding is accepted (re-encoding the key gives back
/// the same string), so one key has exactly one DID and DIDs can be
/// compared as strings.
pub fn public_key_from_did(did: &str) -> Result<VerifyingKey, DidError> {
    let encoded = did
        .strip_prefix(DID_KEY_PREFIX)
        .and_then(|rest| rest.strip_prefix('z'))
        .ok_or(DidError::NotDidKey)?;
    let bytes = bs58::decode(encoded)
        .into_vec()
        .map_err(|e| DidError::Base58(e.to_string()))?;
    let key_bytes = bytes
        .strip_prefix(&ED25519_PUB_MULTICODEC[..])
        .ok_or(DidError::NotEd25519)?;
    let key_bytes: [u8; 32] = key_bytes
        .try_into()
        .map_err(|_| DidError::WrongLength(key_bytes.len()))?;
    let key = VerifyingKey::from_bytes(&key_bytes).map_err(|_| DidError::InvalidKey)?;
    if did_from_public_key(&key) != did {
        return Err(DidError::NotCanonical);
    }
    Ok(key)
}

/// Current wall-clock time in Unix milliseconds (negative before 1970).
pub fn now_unix_ms() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_millis()).map_or(i64::MIN, |ms| -ms),
    }
}

/// (issuer public key, nonce): what a replay would repeat.
type ReplayKey = ([u8; 32], u128);

/// Checks envelopes and remembers accepted nonces to refuse replays.
///
/// Memory: an accepted (issuer, nonce) is remembered, keyed by the
/// envelope's own timestamp, until that timestamp falls out of the
/// acceptance window — after which the timestamp check alone refuses a
/// replay, so the entry can go. The verifier keeps a *horizon*: envelopes
/// timestamped before it are refused with
/// [`VerifyError::BeyondReplayMemory`]. It advances to `now − window` as
/// time passes, and when more than `max_nonces` entries would be held the
/// oldest-timestamped entries are dropped and the horizon moves past them.
/// So memory is bounded by `max_nonces`, a replay is never accepted, and
/// under a flood (or after the clock steps back) the only cost is that
/// somewhat old envelopes are refused until the window catches up.
#[derive(Debug)]
pub struct Verifier {
    window_ms: i64,
    max_nonces: usize,
    trusted: Option<HashSet<[u8; 32]>>,
    seen: HashSet<ReplayKey>,
    by_time: BTreeSet<(i64, ReplayKey)>,
    horizon: i64,
}

impl Default for Verifier {
    fn default() -> Self {
        Verifier::new()
    }
}

impl Verifier {
    /// ±5 minutes, [`DEFAULT_MAX_NONCES`], any issuer.
    pub fn new() -> Verifier {
        Verifier {
            window_ms: DEFAULT_WINDOW_MS,
            max_nonces: DEFAULT_MAX_NONCES,
            trusted: None,
            seen: HashSet::new(),
            by_time: BTreeSet::new(),
            horizon: i64::MIN,
        }
    }

    /// Accepts timestamps within ±`window_ms` (clamped to ≥ 0) of now.
    pub fn with_window_ms(mut self, window_ms: i64) -> Verifier {
        self.window_ms = window_ms.max(0);
        self
    }

    /// Remembers at most `max_nonces` (at least 1) accepted nonces.
    pub fn with_max_nonces(mut self, max_nonces: usize) -> Verifier {
        self.max_nonces = max_nonces.max(1);
        self
    }

    /// Accepts only envelopes issued by these DIDs.
    pub fn with_trusted_issuers<I, S>(mut self, dids: I) -> Result<Verifier, DidError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let keys = dids
            .into_iter()
            .map(|did| public_key_from_did(did.as_ref()).map(|k| k.to_bytes()))
            .collect::<Result<HashSet<_>, _>>()?;
        self.trusted = Some(keys);
        Ok(self)
    }

    /// Number of nonces currently remembered.
    pub fn remembered_nonces(&self) -> usize {
        self.seen.len()
    }

    /// [`Verifier::verify`] against the system clock.
    pub fn verify_now<'e>(&mut self, env: &'e Envelope) -> Result<&'e Value, VerifyError> {
        self.verify(env, now_unix_ms())
    }

    /// Checks `env` as of `now_ms` (Unix milliseconds) and, if it is
    /// acceptable, records its nonce and returns its payload.
    pub fn verify<'e>(&mut self, env: &'e Envelope, now_ms: i64) -> Result<&'e Value, VerifyError> {
        self.expire(now_ms);

        let key =
            public_key_from_did(&env.issuer).map_err(|source| VerifyError::MalformedIssuer {
                issuer: env.issuer.clone(),
                source,
            })?;
        let key_bytes = key.to_bytes();
        if let Some(trusted) = &self.trusted {
            if !trusted.contains(&key_bytes) {
                return Err(VerifyError::UntrustedIssuer {
                    issuer: env.issuer.clone(),
                });
            }
        }
        let nonce = decode_hex_array::<16>(&env.nonce)
            .map(u128::from_be_bytes)
            .ok_or_else(|| VerifyError::MalformedNonce {
                nonce: env.nonce.clone(),
            })?;
        let signature = decode_hex_array::<64>(&env.signature)
            .map(|b| Signature::from_bytes(&b))
            .ok_or(VerifyError::MalformedSignature)?;
        if let Some(version) = env.v.filter(|v| *v != ENVELOPE_VERSION) {
            return Err(VerifyError::UnknownVersion {
                issuer: env.issuer.clone(),
                version,
            });
        }

        let skew_ms = now_ms.abs_diff(env.timestamp);
        if skew_ms > self.window_ms.unsigned_abs() {
            return Err(VerifyError::TimestampOutOfWindow {
                issuer: env.issuer.clone(),
                timestamp: env.timestamp,
                now: now_ms,
                skew_ms,
                window_ms: self.window_ms,
            });
        }
        key.verify_strict(&env.signing_bytes(), &signature)
            .map_err(|_| VerifyError::BadSignature {
                issuer: env.issuer.clone(),
            })?;

        if env.timestamp < self.horizon {
            return Err(VerifyError::BeyondReplayMemory {
                issuer: env.issuer.clone(),
                timestamp: env.timestamp,
                horizon: self.horizon,
            });
        }
        let replay_key = (key_bytes, nonce);
        if !self.seen.insert(replay_key) {
            return Err(VerifyError::Replay {
                issuer: env.issuer.clone(),
                nonce: env.nonce.clone(),
            });
        }
        self.by_time.insert((env.timestamp, replay_key));
        while self.seen.len() > self.max_nonces {
            match self.by_time.first() {
                Some(&(oldest, _)) => self.advance_horizon(oldest.saturating_add(1)),
                None => break,
            }
        }
        Ok(&env.payload)
    }

    /// Forgets nonces whose envelopes the timestamp check now refuses anyway.
    fn expire(&mut self, now_ms: i64) {
        self.advance_horizon(now_ms.saturating_sub(self.window_ms));
    }

    /// Moves the horizon forward (never back) and forgets every entry
    /// timestamped before it; the invariant is that every accepted envelope
    /// with `timestamp >= horizon` is still remembered.
    fn advance_horizon(&mut self, horizon: i64) {
        if horizon <= self.horizon {
            return;
        }
        self.horizon = horizon;
        while let Some(&(ts, key)) = self.by_time.first() {
            if ts >= horizon {
                break;
            }
            self.by_time.pop_first();
            self.seen.remove(&key);
        }
    }
}

/// Writes a new key file at `path` without ever replacing an existing one.
/// Returns false if a file appeared at `path` meanwhile (nothing written).
fn create_key_file(path: &Path, key: &NodeKey) -> Result<bool, SigningError> {
    let io_err = |action, source| SigningError::Io {
        path: path.to_owned(),
        action,
        source,
    };
    let file_name = path.file_name().ok_or_else(|| {
        io_err(
            "create it",
            io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"),
        )
    })?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(|e| io_err("create its directory", e))?;

    let mut suffix = [0u8; 8];
    OsRng
        .try_fill_bytes(&mut suffix)
        .map_err(SigningError::Random)?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(file_name);
    tmp_name.push(format!(
        ".tmp-{}-{}",
        std::process::id(),
        hex_encode(&suffix)
    ));
    let tmp = dir.join(tmp_name);

    let result = write_and_link(&tmp, path, key).map_err(|(action, e)| io_err(action, e));
    if let Err(e) = fs::remove_file(&tmp) {
        if e.kind() != io::ErrorKind::NotFound {
            tracing::warn!(path = %tmp.display(), error = %e, "cannot remove temporary key file");
        }
    }
    let linked = result?;
    File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err("sync its directory", e))?;
    Ok(linked)
}

fn write_and_link(
    tmp: &Path,
    path: &Path,
    key: &NodeKey,
) -> Result<bool, (&'static str, io::Error)> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(tmp)
        .map_err(|e| ("create a temporary key file next to it", e))?;
    // The umask can only remove bits from 0600; make it exactly 0600.
    file.set_permissions(fs::Permissions::from_mode(0o600))
        .map_err(|e| ("set the temporary key file's mode", e))?;
    let mut line = Zeroizing::new(String::with_capacity(KEY_LINE_LEN + 1));
    line.push_str(KEY_FILE_TAG);
    line.push(' ');
    let secret = Zeroizing::new(key.signing.to_bytes());
    push_hex(&secret[..], &mut line);
    line.push('\n');
    file.write_all(line.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| ("write the temporary key file", e))?;
    drop(file);
    match fs::hard_link(tmp, path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(("move the new key into place", e)),
    }
}

/// Parses the key file contents; the error is a reason for the operator.
fn parse_key_file(contents: &[u8]) -> Result<Zeroizing<[u8; 32]>, String> {
    let line = contents.strip_suffix(b"\n").unwrap_or(contents);
    if line.len() != KEY_LINE_LEN {
        return Err(format!(
            "{} bytes long, expected {} plus an optional newline",
            contents.len(),
            KEY_LINE_LEN
        ));
    }
    let hex = line
        .strip_prefix(KEY_FILE_TAG.as_bytes())
        .and_then(|rest| rest.strip_prefix(b" "))
        .ok_or_else(|| format!("does not start with `{KEY_FILE_TAG} `"))?;
    let hex = std::str::from_utf8(hex).map_err(|_| "key is not hex".to_owned())?;
    decode_hex_array::<32>(hex)
        .map(Zeroizing::new)
        .ok_or_else(|| "key is not 64 lowercase hex digits".to_owned())
}

fn hex_encode(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    push_hex(bytes, &mut s);
    s
}

fn push_hex(bytes: &[u8], out: &mut String) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
}

/// Strict lowercase hex of exactly N bytes; one encoding per value, so
/// nonces compare equal exactly when their strings do.
fn decode_hex_array<const N: usize>(s: &str) -> Option<[u8; N]> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        }
    }
    let s = s.as_bytes();
    if s.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (byte, pair) in out.iter_mut().zip(s.chunks_exact(2)) {
        *byte = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::os::unix::fs::MetadataExt;

    const NOW: i64 = 1_750_000_000_000;

    fn key(n: u8) -> NodeKey {
        NodeKey::from_secret_bytes(&[n; 32])
    }

    fn mode_of(path: &Path) -> u32 {
        fs::metadata(path).unwrap().mode() & 0o7777
    }

    fn write_with_mode(path: &Path, contents: &[u8], mode: u32) {
        fs::write(path, contents).unwrap();
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn key_created_with_mode_0600_and_reloaded_identically() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/sub/node.ed25519");
        let (created, was_created) = NodeKey::load_or_create(&path).unwrap();
        assert!(was_created);
        assert_eq!(mode_of(&path), 0o600);
        assert_eq!(mode_of(&dir.path().join("keys")), 0o700);
        assert_eq!(mode_of(&dir.path().join("keys/sub")), 0o700);
        // No temporary file left behind.
        let names: Vec<_> = fs::read_dir(dir.path().join("keys/sub"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("node.ed25519")]);

        let text = fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("ntari-ed25519-v1 "));
        assert!(text.ends_with('\n'));
        assert_eq!(text.len(), KEY_LINE_LEN + 1);

        let (reloaded, was_created) = NodeKey::load_or_create(&path).unwrap();
        assert!(!was_created);
        assert_eq!(reloaded.did(), created.did());
        assert_eq!(reloaded.signing.to_bytes(), created.signing.to_bytes());
        assert_eq!(
            NodeKey::load(&path).unwrap().verifying_key(),
            created.verifying_key()
        );
        assert!(created.did().starts_with("did:key:z6Mk"));
        // Debug must not show the secret.
        let debug = format!("{created:?}");
        assert!(debug.contains(created.did()));
        assert!(!debug.contains(&hex_encode(&created.signing.to_bytes())));
    }

    #[test]
    fn hand_written_key_file_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.ed25519");
        let line = format!("ntari-ed25519-v1 {}", "00".repeat(32));
        // Without trailing newline.
        write_with_mode(&path, line.as_bytes(), 0o600);
        assert_eq!(
            NodeKey::load(&path).unwrap().did(),
            "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp"
        );
        // Read-only for the owner is fine too.
        write_with_mode(&path, format!("{line}\n").as_bytes(), 0o400);
        assert!(NodeKey::load(&path).is_ok());
    }

    #[test]
    fn insecure_mode_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.ed25519");
        NodeKey::load_or_create(&path).unwrap();
        let before = fs::read(&path).unwrap();
        for mode in [0o640, 0o604, 0o660, 0o644, 0o610, 0o601] {
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
            let err = NodeKey::load_or_create(&path).unwrap_err();
            assert!(
                matches!(err, SigningError::InsecurePermissions { mode: m, .. } if m == mode),
                "{err}"
            );
            let msg = err.to_string();
            assert!(msg.contains(&path.display().to_string()), "{msg}");
            assert!(msg.contains("chmod 600"), "{msg}");
            assert_eq!(fs::read(&path).unwrap(), before);
        }
    }

    #[test]
    fn corrupt_or_short_key_refused_and_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.ed25519");
        let good = format!("ntari-ed25519-v1 {}\n", "ab".repeat(32));
        let cases: Vec<Vec<u8>> = vec![
            Vec::new(),
            b"ntari-ed25519-v1 abcd\n".to_vec(),
            vec![7u8; 32],
            good.as_bytes()[..good.len() - 3].to_vec(),
            good.replace("ntari-ed25519-v1", "ntari-ed25519-v2")
                .into_bytes(),
            good.replace("ab", "AB").into_bytes(),
            good.replacen("ab", "zz", 1).into_bytes(),
            format!("{good}\n").into_bytes(),
            format!("{good}extra").into_bytes(),
            vec![0xff; KEY_LINE_LEN],
            vec![b'x'; 100_000],
        ];
        for contents in cases {
            write_with_mode(&path, &contents, 0o600);
            let err = NodeKey::load_or_create(&path).unwrap_err();
            assert!(matches!(err, SigningError::BadFormat { .. }), "{err}");
            let msg = err.to_string();
            assert!(msg.contains(&path.display().to_string()), "{msg}");
            assert!(msg.contains("left untouched"), "{msg}");
            assert_eq!(fs::read(&path).unwrap(), contents, "key file was modified");
            assert_eq!(mode_of(&path), 0o600);
        }
    }

    #[test]
    fn non_regular_file_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.ed25519");
        fs::create_dir(&path).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o700)).unwrap();
        let err = NodeKey::load_or_create(&path).unwrap_err();
        assert!(matches!(err, SigningError::NotRegularFile { .. }), "{err}");
        assert!(err.to_string().contains(&path.display().to_string()));

        let fifo = dir.path().join("fifo.ed25519");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let err = NodeKey::load_or_create(&fifo).unwrap_err();
        assert!(matches!(err, SigningError::NotRegularFile { .. }), "{err}");
    }

    #[test]
    fn existing_file_is_never_replaced_by_creation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.ed25519");
        let first = key(9);
        write_with_mode(
            &path,
            format!("ntari-ed25519-v1 {}\n", hex_encode(&[9; 32])).as_bytes(),
            0o600,
        );
        // Simulates losing the creation race: the link must not clobber.
        assert!(!create_key_file(&path, &key(10)).unwrap());
        assert_eq!(NodeKey::load(&path).unwrap().did(), first.did());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn did_key_spec_test_vectors() {
        // w3c-ccg/did-method-key, test-vectors/ed25519-x25519.json: the
        // "seed" is the Ed25519 secret key, "publicKeyBase58" its public key.
        let vectors = [
            (
                [0u8; 32],
                "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp",
                "4zvwRjXUKGfvwnParsHAS3HuSVzV5cA4McphgmoCtajS",
            ),
            (
                {
                    let mut s = [0u8; 32];
                    s[31] = 1;
                    s
                },
                "did:key:z6MkjchhfUsD6mmvni8mCdXHw216Xrm9bQe2mBH1P5RDjVJG",
                "6ASf5EcmmEHTgDJ4X4ZT5vT6iHVJBXPg5AN5YoTCpGWt",
            ),
        ];
        for (seed, did, pub58) in vectors {
            let k = NodeKey::from_secret_bytes(&seed);
            assert_eq!(k.did(), did);
            let public = public_key_from_did(did).unwrap();
            assert_eq!(bs58::encode(public.as_bytes()).into_string(), pub58);
            assert_eq!(public, k.verifying_key());
        }
        // The example DID in the did:key specification parses and re-encodes.
        let spec = "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK";
        assert_eq!(
            did_from_public_key(&public_key_from_did(spec).unwrap()),
            spec
        );
    }

    #[test]
    fn did_round_trip_and_malformed_dids() {
        for n in 0..20 {
            let k = key(n);
            assert_eq!(public_key_from_did(k.did()).unwrap(), k.verifying_key());
        }
        let good = key(1).did().to_owned();
        // Roughly half of all 32-byte strings are not curve points.
        let invalid_point = (0u8..=255)
            .map(|n| [n; 32])
            .find(|b| VerifyingKey::from_bytes(b).is_err())
            .unwrap();
        let x25519 = "did:key:z6LShs9GGnqk85isEBzzshkuVWrVKsRp24GnDuHk8QWkARMW";
        let short = format!(
            "did:key:z{}",
            bs58::encode([0xed, 0x01, 1, 2, 3]).into_string()
        );
        let cases: Vec<(String, DidError)> = vec![
            (String::new(), DidError::NotDidKey),
            ("did:web:example.org".into(), DidError::NotDidKey),
            (good.replace("did:key:z", "did:key:m"), DidError::NotDidKey),
            (format!("{good}0"), DidError::Base58(String::new())),
            (x25519.into(), DidError::NotEd25519),
            (short, DidError::WrongLength(3)),
            (
                format!(
                    "did:key:z{}",
                    bs58::encode([&[0xed, 0x01][..], &[7; 33]].concat()).into_string()
                ),
                DidError::WrongLength(33),
            ),
            (
                format!(
                    "did:key:z{}",
                    bs58::encode([&[0xed, 0x01][..], &invalid_point[..]].concat()).into_string()
                ),
                DidError::InvalidKey,
            ),
            // A leading '1' in base58 is an extra zero byte.
            (
                good.replace("did:key:z", "did:key:z1"),
                DidError::NotEd25519,
            ),
        ];
        for (did, expected) in cases {
            let err = public_key_from_did(&did).unwrap_err();
            assert_eq!(
                std::mem::discriminant(&err),
                std::mem::discriminant(&expected),
                "{did}: {err}"
            );
        }
    }

    #[test]
    fn sign_then_verify() {
        let k = key(1);
        let payload =
            json!({"node": "/ntari/ntari_ntp_node", "healthy": true, "n": [1, 2.5, null]});
        let env = k.sign(payload.clone()).unwrap();
        assert_eq!(env.issuer, k.did());
        assert_eq!(env.nonce.len(), 32);
        assert_eq!(env.signature.len(), 128);
        assert_eq!(Verifier::new().verify_now(&env).unwrap(), &payload);

        // Through the wire (JSON text) and back.
        let env = k.sign_at(payload.clone(), NOW).unwrap();
        let text = serde_json::to_string(&env).unwrap();
        let parsed: Envelope = serde_json::from_str(&text).unwrap();
        let mut v = Verifier::new();
        assert_eq!(v.verify(&parsed, NOW + 1000).unwrap(), &payload);

        // Fresh nonces for each signature.
        let a = k.sign_at(json!(1), NOW).unwrap();
        let b = k.sign_at(json!(1), NOW).unwrap();
        assert_ne!(a.nonce, b.nonce);
    }

    #[test]
    fn signing_bytes_are_as_documented() {
        let k = key(1);
        let env = k.sign_with_nonce(
            json!({"b": 1, "a": "x", "é": [true, null]}),
            42,
            "0".repeat(32),
        );
        assert_eq!(env.v, Some(2));
        // Checked by hand against RFC 8785: keys sorted, no whitespace,
        // non-ASCII literal.
        let expected = format!(
            "ntari-envelope-v2\n{{\"issuer\":\"{}\",\"nonce\":\"{}\",\"payload\":{{\"a\":\"x\",\"b\":1,\"é\":[true,null]}},\"timestamp\":42,\"v\":2}}",
            k.did(),
            "0".repeat(32)
        );
        assert_eq!(String::from_utf8(env.signing_bytes()).unwrap(), expected);
        // On the wire `v` comes with the rest.
        let wire = serde_json::to_value(&env).unwrap();
        assert_eq!(wire["v"], json!(2));

        // Version 1: the old layout.
        let mut v1 = env.clone();
        v1.v = None;
        let expected = format!(
            "ntari-envelope-v1\n{}\n42\n{}\n{{\"a\":\"x\",\"b\":1,\"é\":[true,null]}}",
            k.did(),
            "0".repeat(32)
        );
        assert_eq!(v1.signing_bytes(), expected.as_bytes());
    }

    #[test]
    fn version_1_envelopes_still_verify() {
        // A v1 envelope as nodes sent them: no `v`, signed over the v1 layout.
        let k = key(1);
        let mut env = Envelope {
            v: None,
            issuer: k.did().to_owned(),
            timestamp: NOW,
            nonce: "ab".repeat(16),
            payload: json!({"healthy": true, "node": "/ntari/ntari_ntp_node"}),
            signature: String::new(),
        };
        env.signature = k.sign_bytes(&env.signing_bytes());
        let text = serde_json::to_string(&env).unwrap();
        assert!(!text.contains("\"v\""), "{text}");
        let parsed: Envelope = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed.v, None);
        assert!(Verifier::new().verify(&parsed, NOW).is_ok());

        // Relabelling it as v2 (or v2 as v1) breaks the signature.
        let mut relabelled = parsed.clone();
        relabelled.v = Some(2);
        assert!(matches!(
            Verifier::new().verify(&relabelled, NOW),
            Err(VerifyError::BadSignature { .. })
        ));
        let v2 = k.sign_at(json!({"x": 1}), NOW).unwrap();
        let mut as_v1 = v2.clone();
        as_v1.v = None;
        assert!(matches!(
            Verifier::new().verify(&as_v1, NOW),
            Err(VerifyError::BadSignature { .. })
        ));
        // Unknown versions are refused as such.
        let mut v3 = v2.clone();
        v3.v = Some(3);
        let err = Verifier::new().verify(&v3, NOW).unwrap_err();
        assert!(
            matches!(err, VerifyError::UnknownVersion { version: 3, .. }),
            "{err}"
        );
    }

    #[test]
    fn detached_signatures() {
        let k = key(1);
        let bytes = br#"{"id":"riverside-hillside","kind":"ntari/federation-agreement/v1"}"#;
        let sig = k.sign_bytes(bytes);
        assert_eq!(sig.len(), 128);
        assert!(sig
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        // Ed25519 is deterministic: same key and bytes, same signature.
        assert_eq!(sig, k.sign_bytes(bytes));
        assert!(verify_bytes(k.did(), bytes, &sig).is_ok());

        let mut changed = bytes.to_vec();
        changed[10] ^= 1;
        assert!(matches!(
            verify_bytes(k.did(), &changed, &sig),
            Err(VerifyError::BadSignature { .. })
        ));
        assert!(matches!(
            verify_bytes(key(2).did(), bytes, &sig),
            Err(VerifyError::BadSignature { .. })
        ));
        assert!(matches!(
            verify_bytes(k.did(), bytes, &sig.to_uppercase()),
            Err(VerifyError::MalformedSignature)
        ));
        assert!(matches!(
            verify_bytes(k.did(), bytes, &sig[..126]),
            Err(VerifyError::MalformedSignature)
        ));
        assert!(matches!(
            verify_bytes("did:key:zNope", bytes, &sig),
            Err(VerifyError::MalformedIssuer { .. })
        ));
        // An envelope signature never passes as a detached one over the
        // same payload, and the other way round.
        let env = k.sign_at(json!({"id": "riverside-hillside"}), NOW).unwrap();
        let payload = serde_json_canonicalizer::to_vec(&env.payload).unwrap();
        assert!(verify_bytes(k.did(), &payload, &env.signature).is_err());
    }

    #[test]
    fn unknown_fields_refused() {
        let env = key(1).sign_at(json!({}), NOW).unwrap();
        let mut value = serde_json::to_value(&env).unwrap();
        value["extra"] = json!("unsigned");
        assert!(serde_json::from_value::<Envelope>(value).is_err());
    }

    #[test]
    fn every_tamper_is_refused() {
        let k = key(1);
        let other = key(2);
        let env = k
            .sign_at(json!({"cmd": "restart", "svc": "dns"}), NOW)
            .unwrap();

        let mut payload = env.clone();
        payload.payload["svc"] = json!("dhcp");
        let mut issuer = env.clone();
        issuer.issuer = other.did().to_owned();
        let mut timestamp = env.clone();
        timestamp.timestamp += 1;
        let mut nonce = env.clone();
        let last = if env.nonce.ends_with('0') { "1" } else { "0" };
        nonce.nonce.replace_range(31..32, last);
        assert_ne!(nonce.nonce, env.nonce);
        let mut version = env.clone();
        version.v = None;
        let mut signature = env.clone();
        let flipped = if signature.signature.starts_with('0') {
            "1"
        } else {
            "0"
        };
        signature.signature.replace_range(0..1, flipped);

        for tampered in [payload, issuer, timestamp, nonce, version, signature] {
            let mut v = Verifier::new();
            let err = v.verify(&tampered, NOW).unwrap_err();
            assert!(matches!(err, VerifyError::BadSignature { .. }), "{err}");
            assert_eq!(v.remembered_nonces(), 0, "refused envelope was remembered");
        }

        // Malformed fields are reported as such.
        let mut v = Verifier::new();
        let mut bad = env.clone();
        bad.issuer = "did:key:zNope".into();
        assert!(matches!(
            v.verify(&bad, NOW),
            Err(VerifyError::MalformedIssuer { .. })
        ));
        let mut bad = env.clone();
        bad.nonce = env.nonce.to_uppercase();
        if bad.nonce != env.nonce {
            assert!(matches!(
                v.verify(&bad, NOW),
                Err(VerifyError::MalformedNonce { .. })
            ));
        }
        bad.nonce = "abc".into();
        assert!(matches!(
            v.verify(&bad, NOW),
            Err(VerifyError::MalformedNonce { .. })
        ));
        let mut bad = env.clone();
        bad.signature.pop();
        assert!(matches!(
            v.verify(&bad, NOW),
            Err(VerifyError::MalformedSignature)
        ));
        // The original still verifies.
        assert!(v.verify(&env, NOW).is_ok());
    }

    #[test]
    fn timestamp_window_edges() {
        let k = key(1);
        let w = DEFAULT_WINDOW_MS;
        for (offset, ok) in [
            (0, true),
            (w, true),
            (-w, true),
            (w + 1, false),
            (-w - 1, false),
            (i64::MAX / 2, false),
        ] {
            let env = k.sign_at(json!({}), NOW + offset).unwrap();
            let mut v = Verifier::new();
            let result = v.verify(&env, NOW);
            assert_eq!(result.is_ok(), ok, "offset {offset}: {result:?}");
            if !ok {
                let err = result.unwrap_err();
                assert!(
                    matches!(err, VerifyError::TimestampOutOfWindow { .. }),
                    "{err}"
                );
                assert!(err.to_string().contains("NTP"));
            }
        }
        // Extreme values do not overflow.
        let env = k.sign_at(json!({}), i64::MIN).unwrap();
        assert!(Verifier::new().verify(&env, i64::MAX).is_err());
    }

    #[test]
    fn replay_refused() {
        let k = key(1);
        let env = k.sign_at(json!({"x": 1}), NOW).unwrap();
        let mut v = Verifier::new();
        assert!(v.verify(&env, NOW).is_ok());
        let err = v.verify(&env, NOW + 1).unwrap_err();
        assert!(matches!(err, VerifyError::Replay { .. }), "{err}");
        // Still refused near the end of the window.
        assert!(v.verify(&env, NOW + DEFAULT_WINDOW_MS).is_err());
        // Once out of the window the timestamp check refuses it.
        let err = v.verify(&env, NOW + DEFAULT_WINDOW_MS + 1).unwrap_err();
        assert!(
            matches!(err, VerifyError::TimestampOutOfWindow { .. }),
            "{err}"
        );

        // The same nonce from another issuer is a different message.
        let mut v = Verifier::new();
        let a = k.sign_with_nonce(json!(1), NOW, "ab".repeat(16));
        let b = key(2).sign_with_nonce(json!(1), NOW, "ab".repeat(16));
        assert!(v.verify(&a, NOW).is_ok());
        assert!(v.verify(&b, NOW).is_ok());
        assert!(matches!(v.verify(&a, NOW), Err(VerifyError::Replay { .. })));
    }

    #[test]
    fn memory_stays_bounded() {
        let k = key(1);
        // Expiry by time: entries go once their timestamp leaves the window.
        let mut v = Verifier::new();
        for i in 0..40 {
            v.verify(
                &k.sign_at(json!(i), NOW + i * 1000).unwrap(),
                NOW + i * 1000,
            )
            .unwrap();
        }
        assert_eq!(v.remembered_nonces(), 40);
        let later = NOW + 39 * 1000 + DEFAULT_WINDOW_MS + 1;
        v.verify(&k.sign_at(json!("late"), later).unwrap(), later)
            .unwrap();
        assert_eq!(v.remembered_nonces(), 1);
        assert_eq!(v.by_time.len(), 1);

        // Hard cap: a flood within one window never holds more than the cap.
        let mut v = Verifier::new().with_max_nonces(16);
        let mut accepted = Vec::new();
        for i in 0..120 {
            let env = k.sign_at(json!(i), NOW + i).unwrap();
            v.verify(&env, NOW + 500).unwrap();
            assert!(v.remembered_nonces() <= 16);
            assert_eq!(v.seen.len(), v.by_time.len());
            accepted.push(env);
        }
        // No replay gets through: forgotten ones are refused by the horizon,
        // remembered ones as replays.
        for env in &accepted {
            let err = v.verify(env, NOW + 500).unwrap_err();
            assert!(
                matches!(
                    err,
                    VerifyError::Replay { .. } | VerifyError::BeyondReplayMemory { .. }
                ),
                "{err}"
            );
        }
        // Fresh envelopes are still accepted.
        assert!(v
            .verify(&k.sign_at(json!("new"), NOW + 600).unwrap(), NOW + 600)
            .is_ok());
    }

    #[test]
    fn clock_stepping_back_cannot_reopen_replays() {
        let k = key(1);
        let mut v = Verifier::new();
        let env = k.sign_at(json!(1), NOW).unwrap();
        v.verify(&env, NOW).unwrap();
        // Time passes: the entry is forgotten...
        v.verify(
            &k.sign_at(json!(2), NOW + DEFAULT_WINDOW_MS + 10).unwrap(),
            NOW + DEFAULT_WINDOW_MS + 10,
        )
        .unwrap();
        assert_eq!(v.remembered_nonces(), 1);
        // ...then the clock steps back to where `env` is in the window again.
        let err = v.verify(&env, NOW + 1).unwrap_err();
        assert!(
            matches!(err, VerifyError::BeyondReplayMemory { .. }),
            "{err}"
        );
    }

    #[test]
    fn trust_list() {
        let trusted = key(1);
        let stranger = key(2);
        let mut v = Verifier::new()
            .with_trusted_issuers([trusted.did()])
            .unwrap();
        assert!(v
            .verify(&trusted.sign_at(json!(1), NOW).unwrap(), NOW)
            .is_ok());
        let err = v
            .verify(&stranger.sign_at(json!(1), NOW).unwrap(), NOW)
            .unwrap_err();
        assert!(matches!(err, VerifyError::UntrustedIssuer { .. }), "{err}");
        assert!(Verifier::new()
            .with_trusted_issuers(["did:key:zbad"])
            .is_err());
    }

    #[test]
    fn canonical_json_independent_of_key_order() {
        let a: Value =
            serde_json::from_str(r#"{"b":1,"a":{"d":[{"y":2,"x":1}],"c":"é\n\"q\""},"A":null}"#)
                .unwrap();
        let b: Value = serde_json::from_str(
            r#"{ "A" : null, "a":{"c":"é\n\"q\"","d":[{"x":1,"y":2}]},"b":1 }"#,
        )
        .unwrap();
        let expected = r#"{"A":null,"a":{"c":"é\n\"q\"","d":[{"x":1,"y":2}]},"b":1}"#;
        assert_eq!(canonical_json(&a), expected);
        assert_eq!(canonical_json(&b), expected);

        // Built in different insertion orders, even with an order-preserving map.
        let mut m1 = serde_json::Map::new();
        m1.insert("z".into(), json!(1));
        m1.insert("m".into(), json!(true));
        let mut m2 = serde_json::Map::new();
        m2.insert("m".into(), json!(true));
        m2.insert("z".into(), json!(1));
        assert_eq!(
            canonical_json(&Value::Object(m1)),
            canonical_json(&Value::Object(m2))
        );

        // Same signature either way: a verifier that re-orders keys still verifies.
        let k = key(1);
        let env = k.sign_at(a, NOW).unwrap();
        let mut reordered = env.clone();
        reordered.payload = b;
        assert!(Verifier::new().verify(&reordered, NOW).is_ok());
    }

    #[test]
    fn canonical_json_scalars_are_stable_through_text() {
        let v = json!([
            0,
            -1,
            u64::MAX,
            i64::MIN,
            1.5,
            -0.0,
            1e300,
            0.1,
            "\u{1}\t",
            "🦀",
            [],
            {}
        ]);
        let c = canonical_json(&v);
        let reparsed: Value = serde_json::from_str(&c).unwrap();
        assert_eq!(canonical_json(&reparsed), c);
        assert_eq!(
            c,
            r#"[0,-1,18446744073709551615,-9223372036854775808,1.5,-0.0,1e+300,0.1,"\u0001\t","🦀",[],{}]"#
        );
    }
}

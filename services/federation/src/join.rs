//! The join protocol: how an invite is redeemed. Both ends are here, so
//! the one file says what each side checks.
//!
//! TCP, one JSON [`Envelope`] per line (at most [`MAX_MESSAGE_BYTES`],
//! each read within [`IO_TIMEOUT`]), every one signed by its sender's node
//! key, timestamped (±5 minutes) and carrying a fresh nonce:
//!
//! 1. joiner → inviter `join_hello`: the invite id, the joiner's party
//!    (coop, DID = the envelope's issuer, WireGuard key, tunnel address,
//!    endpoint) and the trust it grants;
//! 2. inviter → joiner `join_challenge`: the hello's nonce (so the inviter
//!    has signed the joiner's nonce) and the draft agreement;
//! 3. joiner → inviter `join_proof`: the challenge's nonce, an HMAC under
//!    the invite's proof key over the challenge's signed bytes (it proves
//!    the secret without sending it) and the joiner's signature of the
//!    draft;
//! 4. inviter → joiner `join_welcome`, after marking the invite redeemed
//!    and storing the draft for the admin's approval.
//!
//! Either side may answer `join_refused` with a reason instead. A nonce
//! is never accepted twice (the inviter's [`Verifier`] remembers them for
//! the timestamp window), so a recorded hello or proof replays nothing:
//! the challenge a replay gets has a new nonce, which the old proof does
//! not answer.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use ntari_node::signing::{self, Envelope, NodeKey, Verifier, VerifyError};
use ntari_schemas::federation::{agreement_signing_bytes, Agreement, Party, SignatureEntry, Trust};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::agreement;
use crate::invite::{self, InviteCode, InviteRecord, InviteState, InviteStore};

/// Longest message line accepted.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// Each message must arrive within this.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// The payload of every message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Message {
    JoinHello {
        invite: String,
        party: Party,
        grants: Trust,
    },
    JoinChallenge {
        invite: String,
        hello: String,
        agreement: String,
    },
    JoinProof {
        invite: String,
        challenge: String,
        mac: String,
        agreement_signature: String,
    },
    JoinWelcome {
        invite: String,
        agreement: String,
        proof: String,
    },
    JoinRefused {
        reason: String,
        message: String,
    },
}

/// A refusal: a short reason (for the audit log and tests) and what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} ({reason})")]
pub struct Refusal {
    pub reason: &'static str,
    pub message: String,
}

fn refuse(reason: &'static str, message: impl Into<String>) -> Refusal {
    Refusal {
        reason,
        message: message.into(),
    }
}

fn sign(key: &NodeKey, message: &Message) -> Result<Envelope, Refusal> {
    let payload = serde_json::to_value(message).map_err(|e| refuse("internal", e.to_string()))?;
    key.sign(payload)
        .map_err(|e| refuse("internal", format!("cannot sign: {e}")))
}

async fn send<W: AsyncWriteExt + Unpin>(w: &mut W, envelope: &Envelope) -> Result<(), Refusal> {
    let mut line = serde_json::to_vec(envelope).map_err(|e| refuse("internal", e.to_string()))?;
    line.push(b'\n');
    tokio::time::timeout(IO_TIMEOUT, w.write_all(&line))
        .await
        .map_err(|_| refuse("timeout", "the other side stopped reading"))?
        .map_err(|e| refuse("io", format!("cannot send: {e}")))
}

/// Reads one line (an envelope) within the limits.
async fn receive<R: AsyncBufReadExt + Unpin>(r: &mut R) -> Result<Envelope, Refusal> {
    let mut line = Vec::new();
    let mut limited = (&mut *r).take(MAX_MESSAGE_BYTES as u64 + 1);
    let n = tokio::time::timeout(IO_TIMEOUT, limited.read_until(b'\n', &mut line))
        .await
        .map_err(|_| {
            refuse(
                "timeout",
                format!("no message within {} s", IO_TIMEOUT.as_secs()),
            )
        })?
        .map_err(|e| refuse("io", e.to_string()))?;
    if n == 0 {
        return Err(refuse("closed", "the connection closed mid-join"));
    }
    if line.len() > MAX_MESSAGE_BYTES {
        return Err(refuse(
            "oversized",
            format!("a message over {MAX_MESSAGE_BYTES} bytes"),
        ));
    }
    serde_json::from_slice(&line).map_err(|e| {
        refuse(
            "malformed",
            format!("not a signed message (one JSON envelope per line): {e}"),
        )
    })
}

fn verify_error(e: VerifyError) -> Refusal {
    match e {
        VerifyError::Replay { .. } | VerifyError::BeyondReplayMemory { .. } => {
            refuse("replay", format!("{e}: a message is never accepted twice"))
        }
        VerifyError::TimestampOutOfWindow { .. } => refuse(
            "clock",
            format!("{e}: set both clocks right (NTP) and join again"),
        ),
        VerifyError::BadSignature { .. } => refuse("bad_signature", e.to_string()),
        other => refuse("malformed", other.to_string()),
    }
}

fn payload(envelope: &Envelope) -> Result<Message, Refusal> {
    serde_json::from_value(envelope.payload.clone())
        .map_err(|e| refuse("malformed", format!("not a join message: {e}")))
}

/// Records an audit event (name, detail).
pub type AuditFn = Box<dyn Fn(&str, serde_json::Value) + Send + Sync>;

/// What the inviting side's listener needs.
pub struct Inviter {
    pub coop: String,
    pub key: NodeKey,
    pub invites: InviteStore,
    /// Drafts awaiting approval go here.
    pub pending_dir: PathBuf,
    /// The agreements in force (to refuse a DID or name already taken).
    pub agreements_dir: PathBuf,
    /// Remembers every accepted nonce for the timestamp window.
    pub verifier: Mutex<Verifier>,
    /// Serialises redeeming, so one invite is redeemed once.
    pub redeem: tokio::sync::Mutex<()>,
    pub audit: AuditFn,
}

impl Inviter {
    fn verify(&self, envelope: &Envelope) -> Result<(), Refusal> {
        let mut verifier = self.verifier.lock().unwrap_or_else(|p| p.into_inner());
        verifier
            .verify_now(envelope)
            .map(|_| ())
            .map_err(verify_error)
    }
}

/// Serves one connection to the end: a redeemed invite, or a refusal
/// (sent to the peer when the connection still works, always audited).
pub async fn serve(stream: TcpStream, peer: SocketAddr, inviter: Arc<Inviter>) {
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    let mut context = serde_json::json!({"peer": peer.to_string()});
    match run_inviter(&mut r, &mut w, &inviter, &mut context).await {
        Ok(()) => {}
        Err(refusal) => {
            tracing::warn!(%peer, reason = refusal.reason, "join refused: {}", refusal.message);
            context["reason"] = refusal.reason.into();
            context["message"] = refusal.message.clone().into();
            (inviter.audit)("join_refused", context);
            if !matches!(refusal.reason, "io" | "closed" | "timeout") {
                let answer = Message::JoinRefused {
                    reason: refusal.reason.to_string(),
                    message: refusal.message,
                };
                if let Ok(envelope) = sign(&inviter.key, &answer) {
                    let _ = send(&mut w, &envelope).await;
                }
            }
        }
    }
    let _ = w.shutdown().await;
    // Read what the peer still sends (an oversized message's rest) for a
    // moment, so closing with unread data does not reset the connection
    // before the peer has read the refusal.
    let mut sink = [0u8; 16 * 1024];
    let drain = async {
        let mut total = 0usize;
        while let Ok(n @ 1..) = r.read(&mut sink).await {
            total += n;
            if total > 1 << 20 {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_millis(500), drain).await;
}

async fn run_inviter<R, W>(
    r: &mut R,
    w: &mut W,
    inviter: &Inviter,
    context: &mut serde_json::Value,
) -> Result<(), Refusal>
where
    R: AsyncBufReadExt + Unpin,
    W: AsyncWriteExt + Unpin,
{
    let hello = receive(r).await?;
    inviter.verify(&hello)?;
    let Message::JoinHello {
        invite: invite_id,
        party,
        grants,
    } = payload(&hello)?
    else {
        return Err(refuse("malformed", "expected join_hello first"));
    };
    context["invite"] = invite_id.clone().into();
    context["joiner_did"] = hello.issuer.clone().into();
    context["joiner_coop"] = party.coop.clone().into();
    if party.did != hello.issuer {
        return Err(refuse(
            "did_mismatch",
            format!(
                "the hello names DID {} but is signed by {}",
                party.did, hello.issuer
            ),
        ));
    }
    let now = SystemTime::now();
    let record = open_invite(inviter, &invite_id, now)?;
    if party.coop != record.for_coop {
        return Err(refuse(
            "wrong_coop",
            format!(
                "this invite is for cooperative `{}`, not `{}`",
                record.for_coop, party.coop
            ),
        ));
    }
    check_identity(inviter, &party)?;
    let draft = invite::draft_agreement(&record, &party, grants, now);
    let yaml = invite::agreement_yaml(&draft, &record.id);
    Agreement::parse(&yaml).map_err(|e| {
        refuse(
            "invalid_party",
            format!("the joiner's details do not make a valid agreement: {e}"),
        )
    })?;
    if inviter
        .agreements_dir
        .join(format!("{}.yaml", draft.id))
        .exists()
    {
        return Err(refuse(
            "agreement_exists",
            format!(
                "agreement `{}` exists on the inviting hub already; remove it there first",
                draft.id
            ),
        ));
    }
    let challenge = sign(
        &inviter.key,
        &Message::JoinChallenge {
            invite: invite_id.clone(),
            hello: hello.nonce.clone(),
            agreement: yaml.clone(),
        },
    )?;
    send(w, &challenge).await?;

    let proof = receive(r).await?;
    inviter.verify(&proof)?;
    if proof.issuer != hello.issuer {
        return Err(refuse(
            "did_mismatch",
            format!(
                "the proof is signed by {}, the hello by {}",
                proof.issuer, hello.issuer
            ),
        ));
    }
    let Message::JoinProof {
        invite,
        challenge: answered,
        mac,
        agreement_signature,
    } = payload(&proof)?
    else {
        return Err(refuse("malformed", "expected join_proof"));
    };
    if invite != invite_id || answered != challenge.nonce {
        return Err(refuse(
            "wrong_challenge",
            "the proof does not answer this connection's challenge (a replayed proof?)",
        ));
    }
    let key = record
        .proof_key_bytes()
        .ok_or_else(|| refuse("internal", "the invite record's proof_key is damaged"))?;
    if !invite::hmac_matches(&key, &challenge.signing_bytes(), &mac) {
        return Err(refuse(
            "bad_proof",
            "the proof does not show the invite's secret (a wrong or changed invite code)",
        ));
    }
    let signed = agreement_signing_bytes(&yaml).map_err(|e| refuse("internal", e.to_string()))?;
    signing::verify_bytes(&party.did, &signed, &agreement_signature).map_err(|_| {
        refuse(
            "bad_agreement_signature",
            "the joiner's signature of the draft agreement does not verify with its DID",
        )
    })?;
    let text = agreement::add_signature(
        &yaml,
        SignatureEntry {
            did: party.did.clone(),
            signature: agreement_signature,
        },
    )
    .map_err(|e| refuse("internal", e.to_string()))?;

    // Redeem: once, and on disk before the welcome says so.
    {
        let _guard = inviter.redeem.lock().await;
        let record = open_invite(inviter, &invite_id, SystemTime::now())?;
        let pending = inviter.pending_dir.join(format!("{}.yaml", draft.id));
        std::fs::create_dir_all(&inviter.pending_dir)
            .and_then(|()| ntari_node::fsutil::write_atomic(&pending, text.as_bytes(), 0o644))
            .map_err(|e| refuse("io", format!("cannot store {}: {e}", pending.display())))?;
        let redeemed = InviteRecord {
            state: InviteState::Redeemed {
                by_did: party.did.clone(),
                agreement: draft.id.clone(),
                at: invite::format_time(SystemTime::now()),
            },
            ..record
        };
        inviter
            .invites
            .save(&redeemed)
            .map_err(|e| refuse("io", e.to_string()))?;
    }
    context["agreement"] = draft.id.clone().into();
    (inviter.audit)("invite_redeemed", context.clone());
    tracing::info!(invite = %invite_id, agreement = %draft.id, coop = %party.coop, "invite redeemed; the draft awaits `ntari-admin federation approve`");
    let welcome = sign(
        &inviter.key,
        &Message::JoinWelcome {
            invite: invite_id,
            agreement: draft.id,
            proof: proof.nonce,
        },
    )?;
    send(w, &welcome).await
}

/// The invite's record if it can still be redeemed.
fn open_invite(inviter: &Inviter, id: &str, now: SystemTime) -> Result<InviteRecord, Refusal> {
    let record = inviter
        .invites
        .load(id)
        .map_err(|e| refuse("internal", e.to_string()))?
        .ok_or_else(|| {
            refuse(
                "unknown_invite",
                format!("no invite `{id}` on this hub (a changed code, or it was removed)"),
            )
        })?;
    match &record.state {
        InviteState::Pending if now < record.expires_at() => Ok(record),
        InviteState::Pending => Err(refuse(
            "expired",
            format!(
                "the invite expired at {}; ask for a new one",
                record.expires
            ),
        )),
        InviteState::Redeemed { at, .. } => Err(refuse(
            "redeemed",
            format!("the invite was used already ({at}); an invite is good for one join"),
        )),
        InviteState::Withdrawn { at } => Err(refuse(
            "withdrawn",
            format!("the inviting admin withdrew the invite ({at})"),
        )),
    }
}

/// Refuses a joiner whose DID or name belongs to another party of ours.
fn check_identity(inviter: &Inviter, party: &Party) -> Result<(), Refusal> {
    if party.did == inviter.key.did() || party.coop == inviter.coop {
        return Err(refuse(
            "did_claimed",
            "the joiner presents this hub's own DID or name",
        ));
    }
    for (coop, did, id) in known_parties(&[&inviter.agreements_dir, &inviter.pending_dir]) {
        if did == party.did && coop != party.coop {
            return Err(refuse(
                "did_claimed",
                format!(
                    "DID {did} is cooperative `{coop}` in agreement `{id}`, not `{}`",
                    party.coop
                ),
            ));
        }
        if coop == party.coop && did != party.did {
            return Err(refuse(
                "did_claimed",
                format!(
                    "cooperative `{coop}` has DID {did} in agreement `{id}`; this joiner's is {}",
                    party.did
                ),
            ));
        }
    }
    Ok(())
}

/// (coop, DID, agreement id) of every party in the agreements of `dirs`.
fn known_parties(dirs: &[&Path]) -> Vec<(String, String, String)> {
    dirs.iter()
        .flat_map(|dir| agreement::parse_dir(dir))
        .flat_map(|(_, a)| {
            a.parties
                .iter()
                .map(|p| (p.coop.clone(), p.did.clone(), a.id.clone()))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// What the joining side ends with.
#[derive(Debug, Clone)]
pub struct Joined {
    pub agreement_id: String,
    /// The draft with the joiner's signature, for its agreements dir.
    pub agreement_yaml: String,
}

/// Why a join failed, on the joining side.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error("cannot reach the inviting hub at {endpoint}: {message}")]
    Connect { endpoint: String, message: String },
    #[error("the inviting hub refused: {message} ({reason})")]
    Refused { reason: String, message: String },
    #[error("the inviting hub's answer does not hold: {0}")]
    BadAnswer(String),
    #[error("{0}")]
    Local(String),
}

/// Redeems `code` as `party` (whose DID is `key`'s), granting `grants`.
pub async fn join(
    code: &InviteCode,
    key: &NodeKey,
    party: Party,
    grants: Trust,
) -> Result<Joined, JoinError> {
    let endpoint = code.join.clone();
    let connect = |message: String| JoinError::Connect {
        endpoint: endpoint.clone(),
        message,
    };
    // The endpoint opens within a second of the invite: a join right
    // after it (a script, a quick admin) is refused a moment, not failed.
    let attempt = async {
        loop {
            match TcpStream::connect(&code.join).await {
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                other => return other,
            }
        }
    };
    let stream = tokio::time::timeout(IO_TIMEOUT, attempt)
        .await
        .map_err(|_| {
            connect(format!(
                "no answer within {} s (is the invite still pending there, and the port open?)",
                IO_TIMEOUT.as_secs()
            ))
        })?
        .map_err(|e| connect(e.to_string()))?;
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    // Only the inviter's DID may answer, within the clock window, once.
    let mut verifier = Verifier::new()
        .with_trusted_issuers([code.did.as_str()])
        .map_err(|e| JoinError::Local(format!("the invite's DID: {e}")))?;
    let local = |r: Refusal| JoinError::Local(r.to_string());
    let bad = |r: Refusal| JoinError::BadAnswer(r.to_string());

    let hello = sign(
        key,
        &Message::JoinHello {
            invite: code.id.clone(),
            party: party.clone(),
            grants,
        },
    )
    .map_err(local)?;
    send(&mut w, &hello).await.map_err(bad)?;
    let challenge = receive(&mut r).await.map_err(bad)?;
    verifier
        .verify_now(&challenge)
        .map_err(|e| JoinError::BadAnswer(format!("{e} (not the invite's hub?)")))?;
    let yaml = match payload(&challenge).map_err(bad)? {
        Message::JoinChallenge {
            invite,
            hello: answered,
            agreement,
        } if invite == code.id && answered == hello.nonce => agreement,
        Message::JoinRefused { reason, message } => {
            return Err(JoinError::Refused { reason, message })
        }
        _ => {
            return Err(JoinError::BadAnswer(
                "expected the challenge to our hello".into(),
            ))
        }
    };
    let draft = check_draft(&yaml, code, &party, grants)?;
    let signed = agreement_signing_bytes(&yaml).map_err(|e| JoinError::BadAnswer(e.to_string()))?;
    let agreement_signature = key.sign_bytes(&signed);
    let proof_key = code
        .proof_key()
        .map_err(|e| JoinError::Local(e.to_string()))?;
    let proof = sign(
        key,
        &Message::JoinProof {
            invite: code.id.clone(),
            challenge: challenge.nonce.clone(),
            mac: invite::hmac_hex(&proof_key, &challenge.signing_bytes()),
            agreement_signature: agreement_signature.clone(),
        },
    )
    .map_err(local)?;
    send(&mut w, &proof).await.map_err(bad)?;
    let welcome = receive(&mut r).await.map_err(bad)?;
    verifier
        .verify_now(&welcome)
        .map_err(|e| JoinError::BadAnswer(e.to_string()))?;
    match payload(&welcome).map_err(bad)? {
        Message::JoinWelcome {
            invite,
            agreement,
            proof: answered,
        } if invite == code.id && answered == proof.nonce && agreement == draft.id => {}
        Message::JoinRefused { reason, message } => {
            return Err(JoinError::Refused { reason, message })
        }
        _ => return Err(JoinError::BadAnswer("expected the welcome".into())),
    }
    let agreement_yaml = agreement::add_signature(
        &yaml,
        SignatureEntry {
            did: party.did.clone(),
            signature: agreement_signature,
        },
    )
    .map_err(|e| JoinError::Local(e.to_string()))?;
    Ok(Joined {
        agreement_id: draft.id,
        agreement_yaml,
    })
}

/// The draft must be what the invite promised: the inviter as the code
/// names it, us exactly as we said, the trust levels as agreed.
fn check_draft(
    yaml: &str,
    code: &InviteCode,
    us: &Party,
    grants: Trust,
) -> Result<Agreement, JoinError> {
    let bad = |m: String| JoinError::BadAnswer(format!("the draft agreement: {m}"));
    let draft = Agreement::parse(yaml).map_err(|e| bad(e.to_string()))?;
    if !draft.signatures.is_empty() {
        return Err(bad("it comes signed; a draft must not be".into()));
    }
    let inviter = draft
        .party(&code.coop)
        .ok_or_else(|| bad(format!("`{}` is not a party", code.coop)))?;
    if inviter.did != code.did {
        return Err(bad(format!(
            "`{}` has DID {}, the invite says {}",
            code.coop, inviter.did, code.did
        )));
    }
    if draft.party(&us.coop) != Some(us) {
        return Err(bad("our party is not as we sent it".into()));
    }
    if draft.trust_granted_by(&code.coop) != code.trust {
        return Err(bad(format!(
            "`{}` grants {}, the invite says {}",
            code.coop,
            draft.trust_granted_by(&code.coop).label(),
            code.trust.label()
        )));
    }
    if draft.trust_granted_by(&us.coop) != grants {
        return Err(bad(format!(
            "it has us grant {}, we grant {}",
            draft.trust_granted_by(&us.coop).label(),
            grants.label()
        )));
    }
    if !draft.in_window(SystemTime::now()) {
        return Err(bad("it is not valid now".into()));
    }
    Ok(draft)
}

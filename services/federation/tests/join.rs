//! The join protocol over real TCP on loopback: the inviter's
//! `join::serve` (as the bridge runs it) against the real joining client,
//! and against hand-made messages for every way a join can be bad.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use ntari_federation::invite::{self, InviteCode, InviteState, InviteStore, NewInvite};
use ntari_federation::join::{self, Inviter, JoinError, Message};
use ntari_node::signing::{Envelope, NodeKey, Verifier};
use ntari_schemas::federation::{Party, Template, Trust};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

const WG_A: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
const WG_B: &str = "BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBA=";

struct Hub {
    _dir: tempfile::TempDir,
    key: NodeKey,
    invites: InviteStore,
    inviter: Arc<Inviter>,
    address: SocketAddr,
    events: Arc<Mutex<Vec<(String, serde_json::Value)>>>,
}

impl Hub {
    async fn start() -> Hub {
        let dir = tempfile::tempdir().unwrap();
        let key_file = dir.path().join("node.key");
        let key = NodeKey::load_or_create(&key_file).unwrap().0;
        let invites = InviteStore::new(dir.path().join("invites"));
        let events: Arc<Mutex<Vec<(String, serde_json::Value)>>> = Arc::default();
        let log = events.clone();
        let inviter = Arc::new(Inviter {
            coop: "coop_a".into(),
            // The same key, loaded again (NodeKey is not Clone).
            key: NodeKey::load(&key_file).unwrap(),
            invites: invites.clone(),
            pending_dir: dir.path().join("pending"),
            agreements_dir: dir.path().join("agreements"),
            verifier: Mutex::new(Verifier::new()),
            redeem: tokio::sync::Mutex::new(()),
            audit: Box::new(move |event, detail| {
                log.lock().unwrap().push((event.to_string(), detail))
            }),
        });
        std::fs::create_dir_all(dir.path().join("agreements")).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let served = inviter.clone();
        tokio::spawn(async move {
            while let Ok((stream, peer)) = listener.accept().await {
                tokio::spawn(join::serve(stream, peer, served.clone()));
            }
        });
        Hub {
            _dir: dir,
            key,
            invites,
            inviter,
            address,
            events,
        }
    }

    fn invite(&self, for_coop: &str, valid_for: Duration, made: SystemTime) -> (String, String) {
        let inviter = invite::party(
            "coop_a",
            self.key.did(),
            WG_A,
            "10.77.0.1".parse().unwrap(),
            Some("192.0.2.1:51820".into()),
        );
        let (record, code) = invite::create(
            NewInvite {
                key: &self.key,
                inviter,
                for_coop: for_coop.into(),
                trust: Trust::Observer,
                valid_for,
                join_endpoint: self.address.to_string(),
                template: Template::health_and_status(),
                federation_domain: 77,
            },
            made,
        );
        self.invites.save(&record).unwrap();
        (record.id, code)
    }

    fn pending(&self, id: &str) -> std::path::PathBuf {
        self.inviter.pending_dir.join(format!("{id}.yaml"))
    }

    fn refusals(&self) -> Vec<String> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter(|(e, _)| e == "join_refused")
            .map(|(_, d)| d["reason"].as_str().unwrap_or("").to_string())
            .collect()
    }
}

fn joiner_party(key: &NodeKey, coop: &str) -> Party {
    invite::party(coop, key.did(), WG_B, "10.77.0.2".parse().unwrap(), None)
}

/// A raw client: one envelope per line.
struct Raw {
    r: BufReader<tokio::net::tcp::OwnedReadHalf>,
    w: tokio::net::tcp::OwnedWriteHalf,
}

impl Raw {
    async fn connect(address: SocketAddr) -> Raw {
        let (r, w) = TcpStream::connect(address).await.unwrap().into_split();
        Raw {
            r: BufReader::new(r),
            w,
        }
    }

    async fn send_line(&mut self, line: &[u8]) {
        self.w.write_all(line).await.unwrap();
        self.w.write_all(b"\n").await.unwrap();
    }

    async fn send(&mut self, envelope: &Envelope) {
        self.send_line(&serde_json::to_vec(envelope).unwrap()).await;
    }

    async fn receive(&mut self) -> Option<(Envelope, Message)> {
        let mut line = String::new();
        let n = tokio::time::timeout(Duration::from_secs(15), self.r.read_line(&mut line))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            return None;
        }
        let envelope: Envelope = serde_json::from_str(&line).unwrap();
        let message = serde_json::from_value(envelope.payload.clone()).unwrap();
        Some((envelope, message))
    }

    async fn refusal(&mut self) -> String {
        match self.receive().await {
            Some((_, Message::JoinRefused { reason, .. })) => reason,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }
}

fn signed(key: &NodeKey, message: &Message) -> Envelope {
    key.sign(serde_json::to_value(message).unwrap()).unwrap()
}

fn hello(key: &NodeKey, invite: &str, party: Party) -> Envelope {
    signed(
        key,
        &Message::JoinHello {
            invite: invite.into(),
            party,
            grants: Trust::Observer,
        },
    )
}

async fn real_join(code: &str, key: &NodeKey, coop: &str) -> Result<join::Joined, JoinError> {
    let code = InviteCode::decode(code).unwrap();
    join::join(&code, key, joiner_party(key, coop), Trust::Observer).await
}

#[tokio::test]
async fn a_join_redeems_the_invite_once_and_leaves_a_draft_both_can_sign() {
    let hub = Hub::start().await;
    let (id, code) = hub.invite("coop_b", Duration::from_secs(3600), SystemTime::now());
    let joiner = NodeKey::generate().unwrap();
    let joined = real_join(&code, &joiner, "coop_b").await.unwrap();
    assert_eq!(joined.agreement_id, "coop-a-coop-b");

    // The inviter holds the draft, signed by the joiner only…
    let pending = std::fs::read_to_string(hub.pending(&joined.agreement_id)).unwrap();
    assert_eq!(pending, joined.agreement_yaml);
    let err = ntari_federation::agreement::verify_signed(pending.as_bytes(), "draft").unwrap_err();
    assert_eq!(err.kind(), "missing_signature");
    // …which its approval completes.
    let both = ntari_federation::agreement::sign_agreement(&pending, &hub.key).unwrap();
    let agreement = ntari_federation::agreement::verify_signed(both.as_bytes(), "both").unwrap();
    assert_eq!(agreement.party("coop_b").unwrap().did, joiner.did());
    assert_eq!(agreement.trust_granted_by("coop_a"), Trust::Observer);

    let record = hub.invites.load(&id).unwrap().unwrap();
    assert!(
        matches!(record.state, InviteState::Redeemed { ref by_did, .. } if by_did == joiner.did())
    );
    assert!(hub
        .events
        .lock()
        .unwrap()
        .iter()
        .any(|(e, _)| e == "invite_redeemed"));

    // Single use: the same code again, even by the same joiner, is refused.
    match real_join(&code, &joiner, "coop_b").await {
        Err(JoinError::Refused { reason, .. }) => assert_eq!(reason, "redeemed"),
        other => panic!("a second join was not refused: {other:?}"),
    }
    assert_eq!(hub.refusals(), vec!["redeemed"]);
}

#[tokio::test]
async fn expired_withdrawn_unknown_and_wrong_coop_invites_are_refused() {
    let hub = Hub::start().await;
    let joiner = NodeKey::generate().unwrap();
    let two_hours_ago = SystemTime::now() - Duration::from_secs(7200);
    let (_, expired) = hub.invite("coop_b", Duration::from_secs(3600), two_hours_ago);
    assert!(InviteCode::decode(&expired)
        .unwrap()
        .check_expiry(SystemTime::now())
        .is_err());
    // A joiner that ignores the expiry still meets the inviter's check.
    let mut raw = Raw::connect(hub.address).await;
    let id = InviteCode::decode(&expired).unwrap().id;
    raw.send(&hello(&joiner, &id, joiner_party(&joiner, "coop_b")))
        .await;
    assert_eq!(raw.refusal().await, "expired");

    let (id, _) = hub.invite("coop_b", Duration::from_secs(3600), SystemTime::now());
    let record = hub.invites.load(&id).unwrap().unwrap();
    hub.invites
        .save(&invite::InviteRecord {
            state: InviteState::Withdrawn { at: "now".into() },
            ..record
        })
        .unwrap();
    let mut raw = Raw::connect(hub.address).await;
    raw.send(&hello(&joiner, &id, joiner_party(&joiner, "coop_b")))
        .await;
    assert_eq!(raw.refusal().await, "withdrawn");

    let mut raw = Raw::connect(hub.address).await;
    raw.send(&hello(
        &joiner,
        "0123456789abcdef",
        joiner_party(&joiner, "coop_b"),
    ))
    .await;
    assert_eq!(raw.refusal().await, "unknown_invite");

    let (_, code) = hub.invite("coop_b", Duration::from_secs(3600), SystemTime::now());
    match real_join(&code, &joiner, "coop_c").await {
        Err(JoinError::Refused { reason, .. }) => assert_eq!(reason, "wrong_coop"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        hub.refusals(),
        vec!["expired", "withdrawn", "unknown_invite", "wrong_coop"]
    );
}

#[tokio::test]
async fn a_code_with_another_secret_fails_the_proof_and_leaves_the_invite_usable() {
    let hub = Hub::start().await;
    let joiner = NodeKey::generate().unwrap();
    let (id, code) = hub.invite("coop_b", Duration::from_secs(3600), SystemTime::now());
    // The same invite id, another secret, re-signed with the inviter's own
    // key (the only way past the code's signature).
    let mut changed = InviteCode::decode(&code).unwrap();
    changed.secret = "AAAAAAAAAAAAAAAAAAAAAA".into();
    let changed = InviteCode::decode(&changed.encode(&hub.key)).unwrap();
    match join::join(
        &changed,
        &joiner,
        joiner_party(&joiner, "coop_b"),
        Trust::Observer,
    )
    .await
    {
        Err(JoinError::Refused { reason, .. }) => assert_eq!(reason, "bad_proof"),
        other => panic!("{other:?}"),
    }
    assert!(!hub.pending("coop-a-coop-b").exists());
    assert_eq!(
        hub.invites.load(&id).unwrap().unwrap().state,
        InviteState::Pending
    );
    // The real code still works.
    real_join(&code, &joiner, "coop_b").await.unwrap();
}

#[tokio::test]
async fn replayed_hellos_and_proofs_are_refused() {
    let hub = Hub::start().await;
    let joiner = NodeKey::generate().unwrap();
    let (id, code) = hub.invite("coop_b", Duration::from_secs(3600), SystemTime::now());
    let key = InviteCode::decode(&code).unwrap().proof_key().unwrap();

    // A first attempt, recorded, that stops before its proof is delivered.
    let first_hello = hello(&joiner, &id, joiner_party(&joiner, "coop_b"));
    let mut raw = Raw::connect(hub.address).await;
    raw.send(&first_hello).await;
    let (challenge, message) = raw.receive().await.unwrap();
    let Message::JoinChallenge { agreement, .. } = message else {
        panic!("{message:?}")
    };
    let signature =
        joiner.sign_bytes(&ntari_schemas::federation::agreement_signing_bytes(&agreement).unwrap());
    let recorded_proof = signed(
        &joiner,
        &Message::JoinProof {
            invite: id.clone(),
            challenge: challenge.nonce.clone(),
            mac: invite::hmac_hex(&key, &challenge.signing_bytes()),
            agreement_signature: signature,
        },
    );
    drop(raw);

    // The hello again: its nonce was seen.
    let mut raw = Raw::connect(hub.address).await;
    raw.send(&first_hello).await;
    assert_eq!(raw.refusal().await, "replay");

    // A fresh hello, then the recorded proof: it answers another challenge.
    let mut raw = Raw::connect(hub.address).await;
    raw.send(&hello(&joiner, &id, joiner_party(&joiner, "coop_b")))
        .await;
    raw.receive().await.unwrap();
    raw.send(&recorded_proof).await;
    assert_eq!(raw.refusal().await, "wrong_challenge");

    // The abandoned first attempt is on record too.
    assert_eq!(hub.refusals(), vec!["closed", "replay", "wrong_challenge"]);
    assert_eq!(
        hub.invites.load(&id).unwrap().unwrap().state,
        InviteState::Pending
    );
}

#[tokio::test]
async fn forged_signatures_and_claimed_dids_are_refused() {
    let hub = Hub::start().await;
    let joiner = NodeKey::generate().unwrap();
    let other = NodeKey::generate().unwrap();
    let (id, _) = hub.invite("coop_b", Duration::from_secs(3600), SystemTime::now());

    // Signed by one key, claiming another's DID in the envelope.
    let mut forged = hello(&joiner, &id, joiner_party(&other, "coop_b"));
    forged.issuer = other.did().to_string();
    let mut raw = Raw::connect(hub.address).await;
    raw.send(&forged).await;
    assert_eq!(raw.refusal().await, "bad_signature");

    // Signed properly, but the party names another's DID.
    let mut raw = Raw::connect(hub.address).await;
    raw.send(&hello(&joiner, &id, joiner_party(&other, "coop_b")))
        .await;
    assert_eq!(raw.refusal().await, "did_mismatch");

    // The DID of an existing partner under another name.
    write_agreement_with(&hub.inviter.agreements_dir, &hub.key, &joiner, "coop_c");
    let mut raw = Raw::connect(hub.address).await;
    raw.send(&hello(&joiner, &id, joiner_party(&joiner, "coop_b")))
        .await;
    assert_eq!(raw.refusal().await, "did_claimed");

    // The inviter's own DID.
    let mut raw = Raw::connect(hub.address).await;
    raw.send(&hello(&hub.key, &id, joiner_party(&hub.key, "coop_b")))
        .await;
    assert_eq!(raw.refusal().await, "did_claimed");

    // Ten minutes in the future.
    let future = ntari_node::signing::now_unix_ms() + 600_000;
    let payload = serde_json::to_value(Message::JoinHello {
        invite: id.clone(),
        party: joiner_party(&other, "coop_b"),
        grants: Trust::Observer,
    })
    .unwrap();
    let mut raw = Raw::connect(hub.address).await;
    raw.send(&other.sign_at(payload, future).unwrap()).await;
    assert_eq!(raw.refusal().await, "clock");
}

#[tokio::test]
async fn garbage_and_oversized_messages_are_refused_and_the_endpoint_keeps_serving() {
    let hub = Hub::start().await;
    let mut raw = Raw::connect(hub.address).await;
    raw.send_line(b"{\"not\": \"an envelope\"").await;
    assert_eq!(raw.refusal().await, "malformed");

    let mut raw = Raw::connect(hub.address).await;
    raw.send_line(&vec![b'x'; join::MAX_MESSAGE_BYTES + 10])
        .await;
    assert_eq!(raw.refusal().await, "oversized");

    // A well-signed envelope with a payload of the wrong kind.
    let joiner = NodeKey::generate().unwrap();
    let mut raw = Raw::connect(hub.address).await;
    raw.send(
        &joiner
            .sign(serde_json::json!({"type": "join_welcome"}))
            .unwrap(),
    )
    .await;
    assert_eq!(raw.refusal().await, "malformed");

    let (_, code) = hub.invite("coop_b", Duration::from_secs(3600), SystemTime::now());
    real_join(&code, &joiner, "coop_b").await.unwrap();
    assert_eq!(hub.refusals(), vec!["malformed", "oversized", "malformed"]);
}

/// An agreement in force between coop_a and `joiner` as `coop`.
fn write_agreement_with(dir: &Path, ours: &NodeKey, joiner: &NodeKey, coop: &str) {
    let text = format!(
        "kind: ntari/federation-agreement/v1\nid: a-{c}\nversion: 1\nparties:\n  - coop: coop_a\n    did: {a}\n    wireguard_key: {WG_A}\n    tunnel_address: 10.77.0.1\n  - coop: {coop}\n    did: {b}\n    wireguard_key: {WG_B}\n    tunnel_address: 10.77.0.9\nvalid:\n  not_before: \"2026-01-01T00:00:00Z\"\n  not_after: \"2099-01-01T00:00:00Z\"\nfederation_domain: 78\n",
        c = coop.replace('_', "-"),
        a = ours.did(),
        b = joiner.did(),
    );
    std::fs::write(dir.join(format!("a-{}.yaml", coop.replace('_', "-"))), text).unwrap();
}

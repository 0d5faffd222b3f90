//! `ntari-admin federation invite | join | approve | refuse | list |
//! set-trust | remove`: who this hub federates with, without copying keys
//! by hand. The protocol is `ntari_federation::join`; the files are
//! ntari-federation's (invites and drafts in its state directory,
//! agreements in its agreements directory), so the bridge picks every
//! change up within a second. Every change goes into the audit log.

use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _};
use clap::{Args, Subcommand, ValueEnum};
use ntari_federation::config::FederationConfig;
use ntari_federation::invite::{self, InviteCode, InviteState, InviteStore, NewInvite};
use ntari_federation::{agreement, audit, join, trust, Federation};
use ntari_node::signing::NodeKey;
use ntari_schemas::federation::{Agreement, Party, Template, Trust, MAX_DOMAIN};

use crate::Exit;

const DEFAULT_CONFIG: &str = "/etc/ntari/services/federation.toml";
const DEFAULT_STATE_DIR: &str = "/var/lib/ntari/federation";
const DEFAULT_RUN_DIR: &str = "/run/ntari/federation";

/// Where ntari-federation keeps its things on this hub.
#[derive(Debug, Clone, Args)]
pub struct Hub {
    /// ntari-federation's config (coop, agreements_dir, interface, node_key, join_listen).
    #[arg(long, value_name = "FILE", default_value = DEFAULT_CONFIG)]
    config: PathBuf,
    /// ntari-federation's state directory (invites, drafts, audit log).
    #[arg(long, value_name = "DIR", default_value = DEFAULT_STATE_DIR)]
    state_dir: PathBuf,
    /// ntari-federation's run directory (the bridge's live state).
    #[arg(long, value_name = "DIR", default_value = DEFAULT_RUN_DIR)]
    run_dir: PathBuf,
}

/// Our WireGuard details, when they are not read from the interface.
#[derive(Debug, Clone, Args)]
pub struct Tunnel {
    /// Our ntari-vpn public key [default: `wg show <interface> public-key`].
    #[arg(long, value_name = "BASE64")]
    wireguard_key: Option<String>,
    /// Our address inside the tunnel [default: the interface's first address].
    #[arg(long, value_name = "IP")]
    tunnel_address: Option<IpAddr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Level {
    Trusted,
    Observer,
    Untrusted,
}

/// What an invite may grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum InviteLevel {
    Trusted,
    Observer,
}

impl From<InviteLevel> for Trust {
    fn from(l: InviteLevel) -> Trust {
        match l {
            InviteLevel::Trusted => Trust::Trusted,
            InviteLevel::Observer => Trust::Observer,
        }
    }
}

impl From<Level> for Trust {
    fn from(l: Level) -> Trust {
        match l {
            Level::Trusted => Trust::Trusted,
            Level::Observer => Trust::Observer,
            Level::Untrusted => Trust::Untrusted,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum MemberCommand {
    /// Invite a cooperative: prints a one-time code (and its QR code) to
    /// hand to its admin, who runs `ntari-admin federation join <code>`.
    /// The join endpoint opens while the invite is pending and closes when
    /// it is used or expires.
    Invite {
        /// The cooperative invited (its `coop` name).
        #[arg(long, value_name = "NAME")]
        coop: String,
        /// What it may do here: observer (see topics) or trusted (also
        /// call the agreed services).
        #[arg(long, value_enum)]
        trust: InviteLevel,
        /// How long the code is good for (e.g. 30m, 24h, 7d).
        #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
        expires: Duration,
        /// The agreement offered (kind: ntari/federation-template/v1)
        /// [default: each side's /ntari/*/health and /ntari/*/status].
        #[arg(long, value_name = "FILE")]
        template: Option<PathBuf>,
        /// This hub's address as the invited cooperative reaches it (its
        /// public IP or name): the join endpoint and WireGuard are there.
        #[arg(long, value_name = "HOST")]
        address: String,
        /// ntari-vpn's listen_port.
        #[arg(long, default_value_t = 51820)]
        wireguard_port: u16,
        /// The federation domain [default: the template's, else the first
        /// from 77 up that no agreement or invite of this hub uses].
        #[arg(long)]
        domain: Option<u32>,
        /// Do not print the QR code.
        #[arg(long)]
        no_qr: bool,
        #[command(flatten)]
        hub: Hub,
        #[command(flatten)]
        tunnel: Tunnel,
    },
    /// Redeem an invite: prove the code to the inviting hub (the secret is
    /// never sent), receive the draft agreement, sign it, and wait for the
    /// inviting admin's approval (ntari-federation installs the co-signed
    /// agreement by itself when it comes).
    Join {
        /// The code, as `invite` printed it.
        code: String,
        /// What the inviting cooperative may do here.
        #[arg(long, value_enum, default_value = "observer")]
        trust: Level,
        /// Where our WireGuard listens (host:port), if the inviter can
        /// reach it; leave out behind NAT.
        #[arg(long, value_name = "HOST:PORT")]
        endpoint: Option<String>,
        #[command(flatten)]
        hub: Hub,
        #[command(flatten)]
        tunnel: Tunnel,
    },
    /// Co-sign a draft agreement a join left for approval; it is in force
    /// at once and the joiner receives it over the tunnel.
    Approve {
        /// The agreement id (`list` shows it).
        id: String,
        #[command(flatten)]
        hub: Hub,
    },
    /// Withdraw an invite not used yet: its code is refused from now on.
    Withdraw {
        /// The invite id (`list` shows it).
        invite: String,
        #[command(flatten)]
        hub: Hub,
    },
    /// Refuse a draft agreement a join left: it is removed, nothing flows.
    Refuse {
        id: String,
        #[arg(long, value_name = "TEXT")]
        reason: String,
        #[command(flatten)]
        hub: Hub,
    },
    /// Partners, invites and drafts: trust each way, validity, tunnel
    /// handshake age, when the partner was last seen.
    List {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        hub: Hub,
    },
    /// Lower (or restore) the trust this hub grants a partner, now and
    /// without the partner. Raising it above the agreement's level needs a
    /// new agreement version, co-signed.
    SetTrust {
        /// The partner cooperative.
        coop: String,
        #[arg(value_enum)]
        trust: Level,
        #[command(flatten)]
        hub: Hub,
    },
    /// End the federation with a partner: revokes the agreement (the
    /// partner is told over the tunnel) and drops its WireGuard peer.
    Remove {
        coop: String,
        #[arg(long, value_name = "TEXT")]
        reason: String,
        #[command(flatten)]
        hub: Hub,
    },
}

/// A hub's config and key, loaded.
struct Loaded {
    hub: Hub,
    config: FederationConfig,
    key: NodeKey,
}

impl Loaded {
    fn new(hub: &Hub) -> anyhow::Result<Loaded> {
        let config = ntari_node::config::load_service_config(&Federation, &hub.config)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let key = NodeKey::load(&config.node_key).with_context(|| {
            format!(
                "cannot read the node key {} (node_key in {}); is this the hub's own machine?",
                config.node_key.display(),
                hub.config.display()
            )
        })?;
        Ok(Loaded {
            hub: hub.clone(),
            config,
            key,
        })
    }

    fn audit(&self, event: &str, detail: serde_json::Value) {
        let path = self.hub.state_dir.join("audit.log");
        match audit::AuditLog::open(&path).and_then(|mut log| log.append(event, detail)) {
            Ok(()) => {}
            Err(e) => eprintln!(
                "ntari-admin: warning: cannot record {event} in {}: {e}",
                path.display()
            ),
        }
    }

    fn invites(&self) -> InviteStore {
        InviteStore::new(invite::invites_dir(&self.hub.state_dir))
    }

    fn pending_dir(&self) -> PathBuf {
        invite::pending_dir(&self.hub.state_dir)
    }

    fn agreement_path(&self, id: &str) -> PathBuf {
        self.config.agreements_dir.join(format!("{id}.yaml"))
    }

    /// Our party: coop, DID, WireGuard key and tunnel address.
    fn party(&self, tunnel: &Tunnel, endpoint: Option<String>) -> anyhow::Result<Party> {
        let wireguard_key = match &tunnel.wireguard_key {
            Some(k) => k.clone(),
            None => wg_public_key(&self.config.interface)?,
        };
        let tunnel_address = match tunnel.tunnel_address {
            Some(a) => a,
            None => interface_address(&self.config.interface)?,
        };
        Ok(invite::party(
            &self.config.coop,
            self.key.did(),
            &wireguard_key,
            tunnel_address,
            endpoint,
        ))
    }
}

pub async fn run(command: &MemberCommand, node_config: &Path) -> anyhow::Result<Exit> {
    match command {
        MemberCommand::Invite {
            coop,
            trust,
            expires,
            template,
            address,
            wireguard_port,
            domain,
            no_qr,
            hub,
            tunnel,
        } => {
            let hub = Loaded::new(hub)?;
            let local_domain = ntari_node::config::NodeConfig::load(node_config, false)
                .map_err(|e| anyhow::anyhow!("{e}"))?
                .domain_id;
            make_invite(
                &hub,
                local_domain,
                coop,
                (*trust).into(),
                *expires,
                template.as_deref(),
                address,
                *wireguard_port,
                *domain,
                tunnel,
                !*no_qr,
            )
        }
        MemberCommand::Join {
            code,
            trust,
            endpoint,
            hub,
            tunnel,
        } => {
            let hub = Loaded::new(hub)?;
            redeem(&hub, code, (*trust).into(), endpoint.clone(), tunnel).await
        }
        MemberCommand::Approve { id, hub } => approve(&Loaded::new(hub)?, id),
        MemberCommand::Withdraw { invite, hub } => withdraw(&Loaded::new(hub)?, invite),
        MemberCommand::Refuse { id, reason, hub } => refuse(&Loaded::new(hub)?, id, reason),
        MemberCommand::List { json, hub } => list(&Loaded::new(hub)?, *json),
        MemberCommand::SetTrust { coop, trust, hub } => {
            set_trust(&Loaded::new(hub)?, coop, (*trust).into())
        }
        MemberCommand::Remove { coop, reason, hub } => remove(&Loaded::new(hub)?, coop, reason),
    }
}

#[allow(clippy::too_many_arguments)]
fn make_invite(
    hub: &Loaded,
    local_domain: u32,
    for_coop: &str,
    trust: Trust,
    valid_for: Duration,
    template: Option<&Path>,
    address: &str,
    wireguard_port: u16,
    domain: Option<u32>,
    tunnel: &Tunnel,
    qr: bool,
) -> anyhow::Result<Exit> {
    if !ntari_federation::config::is_coop_name(for_coop) {
        bail!("--coop {for_coop:?}: not a cooperative name (lowercase letters, digits, '_', starting with a letter)");
    }
    if for_coop == hub.config.coop {
        bail!("--coop {for_coop}: that is this hub's own cooperative");
    }
    if valid_for < Duration::from_secs(60) || valid_for > Duration::from_secs(30 * 86_400) {
        bail!("--expires: give between 1m and 30d");
    }
    let template = match template {
        None => Template::health_and_status(),
        Some(path) => {
            let text = fs::read_to_string(path)
                .with_context(|| format!("cannot read the template {}", path.display()))?;
            Template::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
        }
    };
    let federation_domain = match domain.or(template.federation_domain) {
        Some(d) if d > MAX_DOMAIN => bail!("--domain {d}: give 0..={MAX_DOMAIN}"),
        Some(d) if d == local_domain => bail!(
            "--domain {d} is this hub's own ROS domain (domain_id in ntari.toml); the local graph would leak onto the tunnel: give another"
        ),
        Some(d) => d,
        None => free_domain(hub, local_domain)?,
    };
    let endpoint = format!("{}:{wireguard_port}", bracket(address));
    let inviter = hub.party(tunnel, Some(endpoint))?;
    let join_endpoint = format!("{}:{}", bracket(address), hub.config.join_listen.port());
    let now = SystemTime::now();
    let (record, code) = invite::create(
        NewInvite {
            key: &hub.key,
            inviter,
            for_coop: for_coop.to_string(),
            trust,
            valid_for,
            join_endpoint: join_endpoint.clone(),
            template,
            federation_domain,
        },
        now,
    );
    hub.invites().save(&record)?;
    hub.audit(
        "invite_created",
        serde_json::json!({"invite": record.id, "for": for_coop, "trust": trust.label(),
            "expires": record.expires, "federation_domain": federation_domain}),
    );
    if !endpoint_opens(&hub.hub.run_dir, Duration::from_secs(3)) {
        eprintln!(
            "ntari-admin: warning: ntari-federation has not opened the join endpoint on {} yet: is it running (rc-service ntari-federation status)? Its status says why not.",
            hub.config.join_listen
        );
    }
    if qr {
        match qrcode::QrCode::new(code.as_bytes()) {
            Ok(qr) => println!(
                "{}",
                qr.render::<qrcode::render::unicode::Dense1x2>()
                    .quiet_zone(true)
                    .build()
            ),
            Err(e) => eprintln!("ntari-admin: no QR code ({e}); copy the text below"),
        }
    }
    println!("{code}");
    eprintln!(
        "Invite {} for {for_coop} ({}), good until {}.\nOn {for_coop}'s hub:  ntari-admin federation join '<the code above>'\nThis hub listens for it on {join_endpoint}; then approve with:  ntari-admin federation approve <id>  (see `ntari-admin federation list`)",
        record.id,
        trust.label(),
        record.expires
    );
    Ok(Exit::Ok)
}

/// Whether the bridge's state file says the join endpoint listens,
/// within `wait` (its loop looks at the invites once a second).
/// No wait when the state file is missing or stale: no bridge runs.
fn endpoint_opens(run_dir: &Path, wait: Duration) -> bool {
    let deadline = std::time::Instant::now() + wait;
    loop {
        let state = fs::read_to_string(run_dir.join("bridge-state.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .unwrap_or_default();
        if state["join"]["listening"] == true {
            return true;
        }
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let written = state["written_at_ms"].as_u64().unwrap_or(0);
        let running = now_ms.saturating_sub(written) < 5_000;
        if !running || std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `[v6]` for a literal IPv6 address in `host:port`.
fn bracket(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

/// The first domain from 77 up that no agreement, draft or open invite of
/// this hub uses, and that is not the local ROS domain.
fn free_domain(hub: &Loaded, local_domain: u32) -> anyhow::Result<u32> {
    let mut used: Vec<u32> = [hub.config.agreements_dir.clone(), hub.pending_dir()]
        .iter()
        .flat_map(|dir| agreement::parse_dir(dir))
        .map(|(_, a)| a.federation_domain)
        .collect();
    let now = SystemTime::now();
    used.extend(
        hub.invites()
            .all()
            .0
            .iter()
            .filter(|r| r.is_open(now))
            .map(|r| r.federation_domain),
    );
    used.push(local_domain);
    (77..=MAX_DOMAIN)
        .chain(1..77)
        .find(|d| !used.contains(d))
        .context("every DDS domain is in use by an agreement; give --domain")
}

async fn redeem(
    hub: &Loaded,
    code_text: &str,
    grants: Trust,
    endpoint: Option<String>,
    tunnel: &Tunnel,
) -> anyhow::Result<Exit> {
    let code = InviteCode::decode(code_text)?;
    code.check_expiry(SystemTime::now())?;
    if code.for_coop != hub.config.coop {
        bail!(
            "this invite is for cooperative `{}`, and this hub is `{}` (coop in {})",
            code.for_coop,
            hub.config.coop,
            hub.hub.config.display()
        );
    }
    if let Some(endpoint) = &endpoint {
        ntari_schemas::wireguard_peers::check_endpoint(endpoint)
            .map_err(|m| anyhow::anyhow!("--endpoint: {m}"))?;
    }
    let party = hub.party(tunnel, endpoint)?;
    eprintln!("Joining {} ({}) at {} …", code.coop, code.did, code.join);
    let joined = match join::join(&code, &hub.key, party, grants).await {
        Ok(j) => j,
        Err(e) => {
            hub.audit(
                "join_failed",
                serde_json::json!({"invite": code.id, "inviter": code.coop, "message": e.to_string()}),
            );
            eprintln!("ntari-admin: {e}");
            return Ok(Exit::Unhealthy);
        }
    };
    let path = hub.agreement_path(&joined.agreement_id);
    if path.exists() {
        bail!(
            "{} exists already; the inviting hub holds the draft, but this one was not saved: move the old file away and ask for a new invite",
            path.display()
        );
    }
    fs::create_dir_all(&hub.config.agreements_dir)?;
    ntari_node::fsutil::write_atomic(&path, joined.agreement_yaml.as_bytes(), 0o644)
        .with_context(|| format!("cannot write {}", path.display()))?;
    hub.audit(
        "joined",
        serde_json::json!({"invite": code.id, "inviter": code.coop, "inviter_did": code.did,
            "agreement": joined.agreement_id, "file": path.display().to_string()}),
    );
    println!("{}", path.display());
    eprintln!(
        "Joined: agreement {} signed by this hub, saved as {}.\nIt takes effect when {}'s admin approves it (ntari-federation installs their co-signed copy by itself). `ntari-admin federation list` shows where it stands.",
        joined.agreement_id,
        path.display(),
        code.coop
    );
    Ok(Exit::Ok)
}

fn approve(hub: &Loaded, id: &str) -> anyhow::Result<Exit> {
    let pending = hub.pending_dir().join(format!("{id}.yaml"));
    let text = fs::read_to_string(&pending).with_context(|| {
        format!(
            "no draft `{id}` awaiting approval ({}); `ntari-admin federation list` shows the drafts",
            pending.display()
        )
    })?;
    let draft =
        Agreement::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", pending.display()))?;
    let joiner = draft
        .other_party(&hub.config.coop)
        .with_context(|| format!("{}: this hub is not a party", pending.display()))?;
    let joiner_signed = agreement::signature_report(&text, &draft)
        .iter()
        .any(|(e, ok)| e.did == joiner.did && *ok == Some(true));
    if !joiner_signed {
        bail!(
            "{}: the joiner's signature does not verify; refuse it",
            pending.display()
        );
    }
    let signed = agreement::sign_agreement(&text, &hub.key)?;
    let target = hub.agreement_path(id);
    agreement::verify_signed(signed.as_bytes(), &target.display().to_string())?;
    ntari_node::fsutil::write_atomic(&target, signed.as_bytes(), 0o644)
        .with_context(|| format!("cannot write {}", target.display()))?;
    fs::remove_file(&pending).with_context(|| format!("cannot remove {}", pending.display()))?;
    hub.audit(
        "agreement_approved",
        serde_json::json!({"agreement": id, "partner": joiner.coop, "partner_did": joiner.did,
            "file": target.display().to_string()}),
    );
    println!("{}", target.display());
    eprintln!(
        "Approved: {id} with {} is in force; the tunnel and the agreed topics follow within seconds.",
        joiner.coop
    );
    Ok(Exit::Ok)
}

fn withdraw(hub: &Loaded, id: &str) -> anyhow::Result<Exit> {
    let store = hub.invites();
    let Some(record) = store.load(id)? else {
        bail!("no invite `{id}` ({})", store.dir.display());
    };
    if record.state != InviteState::Pending {
        bail!("invite {id} is no longer pending; nothing to withdraw");
    }
    store.save(&invite::InviteRecord {
        state: InviteState::Withdrawn {
            at: invite::format_time(SystemTime::now()),
        },
        ..record
    })?;
    hub.audit("invite_withdrawn", serde_json::json!({"invite": id}));
    eprintln!("Withdrawn: invite {id} is refused from now on.");
    Ok(Exit::Ok)
}

fn refuse(hub: &Loaded, id: &str, reason: &str) -> anyhow::Result<Exit> {
    let pending = hub.pending_dir().join(format!("{id}.yaml"));
    fs::remove_file(&pending)
        .with_context(|| format!("no draft `{id}` awaiting approval ({})", pending.display()))?;
    hub.audit(
        "agreement_refused_by_admin",
        serde_json::json!({"agreement": id, "reason": reason}),
    );
    eprintln!("Refused: draft {id} removed; nothing was ever forwarded for it.");
    Ok(Exit::Ok)
}

/// Agreements of this hub whose other party is `coop` (in force or not).
fn agreements_with(hub: &Loaded, coop: &str) -> Vec<(PathBuf, Agreement)> {
    agreement::parse_dir(&hub.config.agreements_dir)
        .into_iter()
        .filter(|(_, a)| {
            a.other_party(&hub.config.coop)
                .is_some_and(|p| p.coop == coop)
        })
        .collect()
}

fn set_trust(hub: &Loaded, coop: &str, level: Trust) -> anyhow::Result<Exit> {
    let found = agreements_with(hub, coop);
    let Some((_, a)) = found.first() else {
        bail!(
            "no agreement with `{coop}` in {}",
            hub.config.agreements_dir.display()
        );
    };
    let granted = a.trust_granted_by(&hub.config.coop);
    if level.rank() > granted.rank() {
        bail!(
            "agreement {} lets this hub grant {coop} at most {}; to grant {}, draft version {} with it, and both sign (ntari-admin federation agreement sign)",
            a.id,
            granted.label(),
            level.label(),
            a.version + 1
        );
    }
    let dir = trust::trust_dir(&hub.hub.state_dir);
    if level == granted {
        trust::clear(&dir, &a.id)?;
    } else {
        trust::write(&dir, &hub.key, &a.id, coop, level).map_err(anyhow::Error::msg)?;
    }
    hub.audit(
        "trust_set",
        serde_json::json!({"agreement": a.id, "partner": coop, "trust": level.label(),
            "agreement_grants": granted.label()}),
    );
    eprintln!(
        "{coop} is now {} here (agreement {} allows up to {}); in effect within a second.",
        level.label(),
        a.id,
        granted.label()
    );
    Ok(Exit::Ok)
}

/// The partner's coop name in `a` (we are `ours`).
fn coop_name<'a>(a: &'a Agreement, ours: &str) -> &'a str {
    a.other_party(ours).map_or("", |p| p.coop.as_str())
}

fn remove(hub: &Loaded, coop: &str, reason: &str) -> anyhow::Result<Exit> {
    let found = agreements_with(hub, coop);
    if found.is_empty() {
        bail!(
            "no agreement with `{coop}` in {}",
            hub.config.agreements_dir.display()
        );
    }
    for (path, a) in &found {
        // A join's draft the partner never co-signed was never in force:
        // it goes, there is nothing to revoke.
        let draft_only = fs::read(path)
            .ok()
            .map(|bytes| agreement::verify_signed(&bytes, "draft"))
            .is_some_and(|v| matches!(v, Err(agreement::AgreementError::MissingSignature { coop: ref missing, .. }) if missing == coop_name(a, &hub.config.coop)));
        if draft_only {
            fs::remove_file(path).with_context(|| format!("cannot remove {}", path.display()))?;
            hub.audit(
                "draft_removed",
                serde_json::json!({"agreement": a.id, "partner": coop, "reason": reason,
                    "file": path.display().to_string()}),
            );
            eprintln!(
                "Removed the draft {} ({}): {coop} never approved it.",
                a.id,
                path.display()
            );
            continue;
        }
        let yaml = agreement::make_revocation(a, &hub.key, reason, SystemTime::now())?;
        let out = hub
            .config
            .agreements_dir
            .join(format!("{}{}", a.id, agreement::REVOKED_SUFFIX));
        ntari_node::fsutil::write_atomic(&out, yaml.as_bytes(), 0o644)
            .with_context(|| format!("cannot write {}", out.display()))?;
        let _ = trust::clear(&trust::trust_dir(&hub.hub.state_dir), &a.id);
        hub.audit(
            "partner_removed",
            serde_json::json!({"agreement": a.id, "partner": coop, "reason": reason,
                "file": path.display().to_string(), "revocation": out.display().to_string()}),
        );
        eprintln!(
            "Revoked {} ({}); {coop} is told over the tunnel.",
            a.id,
            out.display()
        );
    }
    Ok(Exit::Ok)
}

fn list(hub: &Loaded, json: bool) -> anyhow::Result<Exit> {
    let now = SystemTime::now();
    let state: serde_json::Value = fs::read_to_string(hub.hub.run_dir.join("bridge-state.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    let handshakes = wg_handshakes(&hub.config.interface);
    let (caps, _) = trust::load(&trust::trust_dir(&hub.hub.state_dir), hub.key.did());
    let mut rows = Vec::new();
    let revocations = [hub.hub.state_dir.join("revocations")];
    let parsed: std::collections::HashMap<PathBuf, Agreement> =
        agreement::parse_dir(&hub.config.agreements_dir)
            .into_iter()
            .collect();
    for c in agreement::check_dir(&hub.config.agreements_dir, &revocations, now) {
        let Some(a) = parsed.get(&c.path) else {
            rows.push(serde_json::json!({"agreement": c.id, "state": "unreadable"}));
            continue;
        };
        let Some(partner) = a.other_party(&hub.config.coop) else {
            continue;
        };
        let link = state["agreements"]
            .as_array()
            .and_then(|v| v.iter().find(|x| x["id"] == c.id.as_str()))
            .cloned()
            .unwrap_or_default();
        let granted = a.trust_granted_by(&hub.config.coop);
        let we_grant = caps.get(&a.id).map_or(granted, |cap| granted.at_most(*cap));
        // The file decides; the bridge's state (written every second) adds
        // detail, unless it still shows the draft the file no longer is.
        let state = match (&c.verdict, link["state"].as_str()) {
            (Ok(_), None | Some("awaiting_partner")) => "in_force".to_string(),
            (_, Some(s)) => s.to_string(),
            (Err(e), None) => e.kind().to_string(),
        };
        // Nothing flows either way until the partner co-signs.
        let pending = matches!(
            c.verdict,
            Err(agreement::AgreementError::MissingSignature { .. })
        );
        let (we, they) = if pending {
            ("untrusted (pending)", "untrusted (pending)")
        } else {
            (we_grant.label(), a.trust_granted_by(&partner.coop).label())
        };
        let state = match link["relayed_via"].as_str() {
            Some(hub) => format!("{state}, relayed via {hub}"),
            None => state,
        };
        rows.push(serde_json::json!({
            "partner": partner.coop, "agreement": a.id, "state": state,
            "relayed_via": link["relayed_via"],
            "we_grant": we, "they_grant": they,
            "valid_until": a.valid.not_after.text,
            "handshake_age_s": handshakes.iter().find(|(k, _)| *k == partner.wireguard_key).map(|(_, t)| *t),
            "last_seen_ms": link["link"]["partner_last_seen_ms"],
            "partner_seen": link["link"]["partner_seen"],
        }));
    }
    for (_, a) in agreement::parse_dir(&hub.pending_dir()) {
        let partner = a.other_party(&hub.config.coop).map(|p| p.coop.clone());
        rows.push(serde_json::json!({
            "partner": partner, "agreement": a.id, "state": "awaiting_approval",
            "we_grant": "untrusted (pending)", "they_grant": "untrusted (pending)",
            "valid_until": a.valid.not_after.text,
        }));
    }
    let invites: Vec<serde_json::Value> = hub
        .invites()
        .all()
        .0
        .iter()
        .map(|r| {
            let state = match &r.state {
                InviteState::Pending if r.is_open(now) => "pending".to_string(),
                InviteState::Pending => "expired".to_string(),
                InviteState::Redeemed { agreement, .. } => format!("redeemed ({agreement})"),
                InviteState::Withdrawn { .. } => "withdrawn".to_string(),
            };
            serde_json::json!({"invite": r.id, "for": r.for_coop, "trust": r.trust.label(),
                "expires": r.expires, "state": state})
        })
        .collect();
    if json {
        println!(
            "{:#}",
            serde_json::json!({"coop": hub.config.coop, "partners": rows, "invites": invites,
                "join_endpoint": state["join"]})
        );
        return Ok(Exit::Ok);
    }
    println!(
        "{:<16} {:<28} {:<30} {:<19} {:<19} {:<21} {:<10} LAST SEEN",
        "PARTNER", "AGREEMENT", "STATE", "WE GRANT", "THEY GRANT", "VALID UNTIL", "HANDSHAKE"
    );
    let now_ms = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    for r in &rows {
        let handshake = r["handshake_age_s"]
            .as_u64()
            .map_or("-".to_string(), |s| format!("{s}s ago"));
        let seen = match (r["partner_seen"].as_bool(), r["last_seen_ms"].as_u64()) {
            (Some(true), _) => "now".to_string(),
            (_, Some(ms)) => format!("{}s ago", now_ms.saturating_sub(ms) / 1000),
            _ => "never".to_string(),
        };
        println!(
            "{:<16} {:<28} {:<30} {:<19} {:<19} {:<21} {:<10} {seen}",
            r["partner"].as_str().unwrap_or("?"),
            r["agreement"].as_str().unwrap_or("?"),
            r["state"].as_str().unwrap_or("?"),
            r["we_grant"].as_str().unwrap_or("-"),
            r["they_grant"].as_str().unwrap_or("-"),
            r["valid_until"].as_str().unwrap_or("-"),
            handshake
        );
    }
    for i in &invites {
        println!(
            "invite {} for {} ({}), until {}: {}",
            i["invite"].as_str().unwrap_or("?"),
            i["for"].as_str().unwrap_or("?"),
            i["trust"].as_str().unwrap_or("?"),
            i["expires"].as_str().unwrap_or("?"),
            i["state"].as_str().unwrap_or("?")
        );
    }
    Ok(Exit::Ok)
}

/// `wg show <interface> public-key`.
fn wg_public_key(interface: &str) -> anyhow::Result<String> {
    let out = Command::new("wg")
        .args(["show", interface, "public-key"])
        .output()
        .context("cannot run `wg` (install wireguard-tools, or give --wireguard-key)")?;
    if !out.status.success() {
        bail!(
            "cannot read the WireGuard key of {interface} ({}): is ntari-vpn up? or give --wireguard-key",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The first address of `interface` (`ip -o addr show dev <if>`).
fn interface_address(interface: &str) -> anyhow::Result<IpAddr> {
    let out = Command::new("ip")
        .args(["-o", "addr", "show", "dev", interface])
        .output()
        .context("cannot run `ip` (give --tunnel-address)")?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|line| {
            let mut words = line.split_whitespace();
            words.find(|w| *w == "inet" || *w == "inet6")?;
            words.next()?.split('/').next()?.parse().ok()
        })
        .with_context(|| {
            format!("{interface} has no address: is ntari-vpn up? or give --tunnel-address")
        })
}

/// (peer public key, seconds since its last handshake) of each peer that
/// had one.
fn wg_handshakes(interface: &str) -> Vec<(String, u64)> {
    let Ok(out) = Command::new("wg")
        .args(["show", interface, "latest-handshakes"])
        .output()
    else {
        return Vec::new();
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| {
            let mut w = line.split_whitespace();
            let key = w.next()?.to_string();
            let at: u64 = w.next()?.parse().ok()?;
            (at > 0).then(|| (key, now.saturating_sub(at)))
        })
        .collect()
}

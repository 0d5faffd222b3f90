//! `ntari-admin federation`: agreements between cooperatives (draft, sign,
//! verify, show, revoke) and the bridge's audit log.
//!
//! The checks are the bridge's own (`ntari_federation::agreement`), so
//! `verify` says exactly what ntari-federation will say about a file.

use std::fmt::Write as _;
use std::fs;
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use clap::Subcommand;
use ntari_federation::{agreement, audit};
use ntari_node::config::NodeConfig;
use ntari_node::signing::NodeKey;
use ntari_schemas::federation::{Agreement, AGREEMENT_KIND};

use crate::Exit;

/// Default state directory of ntari-federation (the audit log is in it).
const DEFAULT_STATE_DIR: &str = "/var/lib/ntari/federation";

#[derive(Debug, Subcommand)]
pub enum FederationCommand {
    /// Federation agreements: the co-signed YAML files in
    /// /etc/ntari/federation that say what two cooperatives share.
    Agreement {
        #[command(subcommand)]
        command: AgreementCommand,
    },
    /// Print ntari-federation's audit log and check its hash chain; exit 1
    /// naming the first line where it breaks.
    Log {
        /// ntari-federation's state directory (holds audit.log).
        #[arg(long, value_name = "DIR", default_value = DEFAULT_STATE_DIR)]
        state_dir: PathBuf,
        /// Print the entries as JSON Lines, as stored.
        #[arg(long)]
        json: bool,
    },
    #[command(flatten)]
    Member(crate::membership::MemberCommand),
}

#[derive(Debug, Subcommand)]
pub enum AgreementCommand {
    /// Write a new agreement to edit: both parties, the validity window,
    /// the federation domain, empty exports. Our DID comes from the node
    /// key. Next: fill in `exports` and `trust`, send it to the partner,
    /// and both `sign` it.
    Draft(Box<DraftArgs>),
    /// Sign an agreement with this node's key (a party's), in place: adds
    /// our entry under `signatures:`, or replaces it. Only that block
    /// changes (it moves to the end of the file); comments stay.
    Sign {
        file: PathBuf,
        /// The node key [default: key_path in ntari.toml].
        #[arg(long, value_name = "FILE")]
        key: Option<PathBuf>,
        /// Write the signed agreement here instead of over FILE.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Is the agreement in force? Exit 0 if so, 1 if not, printing why
    /// (file, field, what to do), exactly as ntari-federation would.
    /// Revocations are looked for beside FILE and in each --revocations DIR.
    Verify {
        file: PathBuf,
        /// More directories of `<id>.revoked.yaml` files (e.g.
        /// /var/lib/ntari/federation/revocations, those received from the partner).
        #[arg(long, value_name = "DIR")]
        revocations: Vec<PathBuf>,
        /// Check as of this time (RFC 3339 UTC) instead of now.
        #[arg(long, value_name = "TIME")]
        at: Option<String>,
    },
    /// A summary for people: parties, validity, what goes each way under
    /// which trust, and each signature checked. Exit 0 if in force, 1 if not.
    Show {
        file: PathBuf,
        #[arg(long, value_name = "DIR")]
        revocations: Vec<PathBuf>,
    },
    /// End an agreement now: writes `<id>.revoked.yaml`, signed by this
    /// node's key, beside the agreement (or into --out). ntari-federation
    /// stops it and sends the revocation to the partner.
    Revoke {
        file: PathBuf,
        /// Why, for the partner and the audit log.
        #[arg(long, value_name = "TEXT")]
        reason: String,
        /// The node key [default: key_path in ntari.toml].
        #[arg(long, value_name = "FILE")]
        key: Option<PathBuf>,
        /// Directory to write the revocation into [default: FILE's directory].
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
}

#[derive(Debug, clap::Args)]
pub struct DraftArgs {
    /// Agreement id, `[a-z0-9][a-z0-9-]*` [default: <ours>-<theirs>].
    #[arg(long)]
    id: Option<String>,
    /// Our cooperative's name (`[a-z][a-z0-9_]*`).
    #[arg(long, value_name = "COOP")]
    ours: String,
    /// The partner cooperative's name.
    #[arg(long, value_name = "COOP")]
    theirs: String,
    /// Our node key, for our DID [default: key_path in ntari.toml].
    #[arg(long, value_name = "FILE")]
    key: Option<PathBuf>,
    /// Our DID, instead of reading it from the key.
    #[arg(long, value_name = "DID", conflicts_with = "key")]
    our_did: Option<String>,
    /// Our ntari-vpn public key (base64, as `wg show` prints it).
    #[arg(long, value_name = "BASE64")]
    our_wireguard_key: String,
    /// Our address inside the tunnel, e.g. 10.77.0.1.
    #[arg(long, value_name = "IP")]
    our_tunnel_address: IpAddr,
    /// Where our WireGuard listens (host:port), if the partner connects to us.
    #[arg(long, value_name = "HOST:PORT")]
    our_endpoint: Option<String>,
    /// The partner's node DID (`ntari-admin key show` on their node).
    #[arg(long, value_name = "DID")]
    their_did: String,
    /// The partner's ntari-vpn public key.
    #[arg(long, value_name = "BASE64")]
    their_wireguard_key: String,
    /// The partner's address inside the tunnel.
    #[arg(long, value_name = "IP")]
    their_tunnel_address: IpAddr,
    /// Where the partner's WireGuard listens, if we connect to it.
    #[arg(long, value_name = "HOST:PORT")]
    their_endpoint: Option<String>,
    /// Start of validity, RFC 3339 UTC [default: now].
    #[arg(long, value_name = "TIME")]
    not_before: Option<String>,
    /// Length of validity in days.
    #[arg(long, default_value_t = 365, value_name = "DAYS")]
    days: u32,
    /// DDS domain id on the tunnel (0..=232).
    #[arg(long, default_value_t = 77)]
    domain: u32,
    /// Write here instead of stdout (refuses to overwrite).
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

pub async fn run(command: &FederationCommand, node_config: &Path) -> anyhow::Result<Exit> {
    match command {
        FederationCommand::Member(command) => crate::membership::run(command, node_config).await,
        FederationCommand::Log { state_dir, json } => log(state_dir, *json),
        FederationCommand::Agreement { command } => match command {
            AgreementCommand::Draft(args) => draft(args, node_config),
            AgreementCommand::Sign { file, key, out } => {
                sign(file, key.as_deref(), out.as_deref(), node_config)
            }
            AgreementCommand::Verify {
                file,
                revocations,
                at,
            } => {
                let now = match at {
                    Some(t) => parse_time(t).context("--at")?,
                    None => SystemTime::now(),
                };
                verify(file, revocations, now)
            }
            AgreementCommand::Show { file, revocations } => show(file, revocations),
            AgreementCommand::Revoke {
                file,
                reason,
                key,
                out,
            } => revoke(file, reason, key.as_deref(), out.as_deref(), node_config),
        },
    }
}

fn load_key(key: Option<&Path>, node_config: &Path) -> anyhow::Result<(PathBuf, NodeKey)> {
    let path = match key {
        Some(p) => p.to_path_buf(),
        None => NodeConfig::load(node_config, false)?.key_path,
    };
    let key = NodeKey::load(&path).with_context(|| {
        format!(
            "no usable node key at {} (give --key, or create one with `ntari-admin key init`)",
            path.display()
        )
    })?;
    Ok((path, key))
}

fn parse_time(text: &str) -> anyhow::Result<SystemTime> {
    ntari_schemas::wireguard_peers::parse_time(text).map_err(anyhow::Error::msg)
}

fn read_text(file: &Path) -> anyhow::Result<String> {
    let meta = fs::metadata(file).with_context(|| format!("cannot read {}", file.display()))?;
    if meta.len() > agreement::MAX_FILE_SIZE {
        anyhow::bail!(
            "{}: larger than {} bytes; an agreement is a few KiB",
            file.display(),
            agreement::MAX_FILE_SIZE
        );
    }
    fs::read_to_string(file).with_context(|| format!("cannot read {} (UTF-8 text)", file.display()))
}

/// Writes atomically, keeping the mode of a file already there.
fn write_file(path: &Path, text: &str) -> anyhow::Result<()> {
    let mode = fs::metadata(path)
        .map(|m| m.permissions().mode() & 0o7777)
        .unwrap_or(0o644);
    ntari_node::fsutil::write_atomic(path, text.as_bytes(), mode)
        .with_context(|| format!("cannot write {}", path.display()))
}

fn draft(args: &DraftArgs, node_config: &Path) -> anyhow::Result<Exit> {
    let DraftArgs {
        id,
        ours,
        theirs,
        key,
        our_did,
        our_wireguard_key,
        our_tunnel_address,
        our_endpoint,
        their_did,
        their_wireguard_key,
        their_tunnel_address,
        their_endpoint,
        not_before,
        days,
        domain,
        out,
    } = args;
    let our_did = match our_did {
        Some(did) => did.clone(),
        None => load_key(key.as_deref(), node_config)?.1.did().to_owned(),
    };
    let id = id
        .clone()
        .unwrap_or_else(|| format!("{ours}-{theirs}").replace('_', "-"));
    let start = match not_before {
        Some(t) => parse_time(t).context("--not-before")?,
        None => SystemTime::now(),
    };
    let end = start + Duration::from_secs(u64::from(*days) * 86_400);
    let rfc = |t: SystemTime| humantime::format_rfc3339_seconds(t).to_string();

    let mut y = String::new();
    let party =
        |y: &mut String, coop: &str, did: &str, wg: &str, ip: &IpAddr, ep: &Option<String>| {
            let _ = writeln!(
            y,
            "  - coop: {coop}\n    did: {did}\n    wireguard_key: {wg}\n    tunnel_address: {ip}"
        );
            if let Some(ep) = ep {
                // Quoted: `[fd77::1]:51820` would be a YAML list otherwise.
                let _ = writeln!(y, "    endpoint: \"{ep}\"");
            }
        };
    let _ = writeln!(
        y,
        "# Federation agreement between {ours} and {theirs}, drafted by {ours} with\n\
         # `ntari-admin federation agreement draft`. Edit `exports` and `trust`,\n\
         # agree on the text with {theirs}, then both sign it:\n\
         #   ntari-admin federation agreement sign {id}.yaml\n\
         # and install the signed file as /etc/ntari/federation/{id}.yaml on both sides.\n\
         # Any change after signing needs both signatures again (raise `version`)."
    );
    let _ = writeln!(y, "kind: {AGREEMENT_KIND}\nid: {id}\nversion: 1\nparties:");
    party(
        &mut y,
        ours,
        &our_did,
        our_wireguard_key,
        our_tunnel_address,
        our_endpoint,
    );
    party(
        &mut y,
        theirs,
        their_did,
        their_wireguard_key,
        their_tunnel_address,
        their_endpoint,
    );
    let _ = writeln!(
        y,
        "# Quoted, so YAML 1.1 parsers (PyYAML) read strings, not dates, as we sign.\nvalid:\n  not_before: \"{}\"\n  not_after: \"{}\"\n# DDS domain id used on the tunnel (0..=232).\nfederation_domain: {domain}",
        rfc(start),
        rfc(end)
    );
    let _ = writeln!(
        y,
        "# What each cooperative sends to the other. Topic names may be globs: `*` is\n\
         # one name token, `**` any number. Imports appear under /remote/<coop>/.\n\
         exports:"
    );
    for coop in [ours, theirs] {
        let _ = writeln!(
            y,
            "  {coop}:\n    topics: []\n    #  - name: /ntari/*/health\n    #    type: std_msgs/msg/Bool\n    #    max_rate_hz: 5\n    services: []\n    #  - name: /ntari/ntari_dns_node/get_state\n    #    type: lifecycle_msgs/srv/GetState"
        );
    }
    let _ = writeln!(
        y,
        "# The trust each grants the other: trusted (topics and services), observer\n\
         # (topics only) or untrusted (nothing).\n\
         trust:\n  {ours}: observer\n  {theirs}: observer\n\
         # Whether names under /remote/ (a third party's) may be passed on.\n\
         relay: false"
    );
    // Refuse to hand out a draft that would not validate.
    if let Err(e) = Agreement::parse(&y) {
        anyhow::bail!("the draft is not a valid agreement: {e}");
    }
    match out {
        None => print!("{y}"),
        Some(path) => {
            if path.exists() {
                anyhow::bail!("{} exists; not overwritten", path.display());
            }
            write_file(path, &y)?;
            eprintln!("wrote {}", path.display());
        }
    }
    Ok(Exit::Ok)
}

fn sign(
    file: &Path,
    key: Option<&Path>,
    out: Option<&Path>,
    node_config: &Path,
) -> anyhow::Result<Exit> {
    let (_, key) = load_key(key, node_config)?;
    let text = read_text(file)?;
    let signed = match agreement::sign_agreement(&text, &key) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ntari-admin: {}", e.with_file(file));
            return Ok(Exit::Unhealthy);
        }
    };
    let target = out.unwrap_or(file);
    write_file(target, &signed)?;
    let a = Agreement::parse(&signed)?;
    let coop = a
        .party_by_did(key.did())
        .map(|p| p.coop.as_str())
        .unwrap_or("?");
    let have: Vec<&str> = a
        .parties
        .iter()
        .filter(|p| a.signatures.iter().any(|s| s.did == p.did))
        .map(|p| p.coop.as_str())
        .collect();
    println!(
        "{}: signed as {coop} ({}); signatures of {} of the 2 parties ({})",
        target.display(),
        key.did(),
        have.len(),
        have.join(", ")
    );
    Ok(Exit::Ok)
}

fn revocation_dirs(file: &Path, extra: &[PathBuf]) -> Vec<PathBuf> {
    let beside = match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut dirs = vec![beside];
    dirs.extend(extra.iter().cloned());
    dirs
}

fn verify(file: &Path, revocations: &[PathBuf], now: SystemTime) -> anyhow::Result<Exit> {
    let revs = agreement::load_revocations(&revocation_dirs(file, revocations));
    let checked = agreement::check_file(file, &revs, now);
    match checked.verdict {
        Ok(a) => {
            println!(
                "{}: in force: {} between {} and {}, version {}, until {}",
                file.display(),
                a.id,
                a.parties[0].coop,
                a.parties[1].coop,
                a.version,
                a.valid.not_after
            );
            Ok(Exit::Ok)
        }
        Err(e) => {
            eprintln!("{e}");
            Ok(Exit::Unhealthy)
        }
    }
}

fn show(file: &Path, revocations: &[PathBuf]) -> anyhow::Result<Exit> {
    let text = read_text(file)?;
    let a = match Agreement::parse(&text) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{}: {e}", file.display());
            return Ok(Exit::Unhealthy);
        }
    };
    let revs = agreement::load_revocations(&revocation_dirs(file, revocations));
    let verdict = agreement::check_file(file, &revs, SystemTime::now()).verdict;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "agreement {} version {} ({})",
        a.id,
        a.version,
        file.display()
    );
    match &verdict {
        Ok(_) => o.push_str("status: in force\n"),
        Err(e) => {
            let _ = writeln!(o, "status: NOT in force ({}): {e}", e.kind());
        }
    }
    let _ = writeln!(
        o,
        "valid: {} .. {}\nfederation domain: {}   relay: {}",
        a.valid.not_before,
        a.valid.not_after,
        a.federation_domain,
        if a.relay { "yes" } else { "no" }
    );
    o.push_str("parties:\n");
    for p in &a.parties {
        let _ = writeln!(
            o,
            "  {:<12} {}\n  {:<12} wireguard {}  tunnel {}  endpoint {}",
            p.coop,
            p.did,
            "",
            p.wireguard_key,
            p.tunnel_address,
            p.endpoint.as_deref().unwrap_or("-")
        );
    }
    for p in &a.parties {
        let Some(other) = a.other_party(&p.coop) else {
            continue;
        };
        let trust = a.trust_granted_by(&p.coop);
        let exports = a.exports_of(&p.coop);
        let _ = writeln!(
            o,
            "{} -> {} (as {}: {}):",
            p.coop,
            other.coop,
            trust.label(),
            match trust {
                ntari_schemas::federation::Trust::Trusted => "topics and services",
                ntari_schemas::federation::Trust::Observer => "topics only",
                ntari_schemas::federation::Trust::Untrusted => "nothing is sent",
            }
        );
        if exports.topics.is_empty() && exports.services.is_empty() {
            o.push_str("  (nothing listed)\n");
        }
        for t in &exports.topics {
            let rate = t
                .max_rate_hz
                .map(|r| format!("  at most {r} Hz"))
                .unwrap_or_default();
            let _ = writeln!(o, "  topic   {}  [{}]{rate}", t.name, t.ros_type);
        }
        for s in &exports.services {
            let served = if trust == ntari_schemas::federation::Trust::Trusted {
                ""
            } else {
                "  (not served: needs trusted)"
            };
            let _ = writeln!(o, "  service {}  [{}]{served}", s.name, s.ros_type);
        }
    }
    o.push_str("signatures:\n");
    let report = agreement::signature_report(&text, &a);
    for p in &a.parties {
        match report.iter().find(|(s, _)| s.did == p.did) {
            Some((_, Some(true))) => {
                let _ = writeln!(o, "  {:<12} ok", p.coop);
            }
            Some(_) => {
                let _ = writeln!(
                    o,
                    "  {:<12} BAD (does not verify: changed after signing)",
                    p.coop
                );
            }
            None => {
                let _ = writeln!(o, "  {:<12} missing", p.coop);
            }
        }
    }
    for (s, ok) in &report {
        if ok.is_none() {
            let _ = writeln!(o, "  {:<12} not a party: {}", "?", s.did);
        }
    }
    print!("{o}");
    Ok(if verdict.is_ok() {
        Exit::Ok
    } else {
        Exit::Unhealthy
    })
}

fn revoke(
    file: &Path,
    reason: &str,
    key: Option<&Path>,
    out: Option<&Path>,
    node_config: &Path,
) -> anyhow::Result<Exit> {
    let (_, key) = load_key(key, node_config)?;
    let text = read_text(file)?;
    let a = match Agreement::parse(&text) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{}: {e}", file.display());
            return Ok(Exit::Unhealthy);
        }
    };
    let yaml = match agreement::make_revocation(&a, &key, reason, SystemTime::now()) {
        Ok(y) => y,
        Err(e) => {
            eprintln!("ntari-admin: {}", e.with_file(file));
            return Ok(Exit::Unhealthy);
        }
    };
    let dir = match out {
        Some(d) => d.to_path_buf(),
        None => revocation_dirs(file, &[])[0].clone(),
    };
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join(format!("{}{}", a.id, agreement::REVOKED_SUFFIX));
    ntari_node::fsutil::write_atomic(&path, yaml.as_bytes(), 0o644)
        .with_context(|| format!("cannot write {}", path.display()))?;
    println!(
        "{}: revocation of {} (version {} and older) by {}",
        path.display(),
        a.id,
        a.version,
        key.did()
    );
    Ok(Exit::Ok)
}

fn log(state_dir: &Path, json: bool) -> anyhow::Result<Exit> {
    let path = state_dir.join("audit.log");
    match audit::verify_log(&path) {
        Ok(entries) => {
            for e in &entries {
                if json {
                    println!("{e}");
                } else {
                    println!(
                        "{:>6}  {}  {:<20} {}",
                        e["seq"],
                        e["time"].as_str().unwrap_or("?"),
                        e["event"].as_str().unwrap_or("?"),
                        e["detail"]
                    );
                }
            }
            eprintln!(
                "{}: {} entries, hash chain intact",
                path.display(),
                entries.len()
            );
            Ok(Exit::Ok)
        }
        Err(e @ audit::AuditError::Broken { .. }) => {
            eprintln!("ntari-admin: {e}");
            Ok(Exit::Unhealthy)
        }
        Err(e) => Err(e.into()),
    }
}

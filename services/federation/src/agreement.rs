//! Federation agreements on disk: is one in force, signing, revoking.
//!
//! An agreement (`<id>.yaml`, schema in `ntari_schemas::federation`) is in
//! force when it parses and validates, carries exactly one valid signature
//! from each party's DID and none from anyone else, `not_before <= now <
//! not_after`, and no revocation applies: one signed by either party, for
//! the same id, with `version >=` the agreement's, found beside the
//! agreements or in a revocations directory (those the partner sent over
//! the link). Every cause of refusal is its own [`AgreementError`] variant
//! whose message names the file and the field and says what to do.
//!
//! Signatures cover the JCS bytes of the document without its signatures
//! ([`federation::agreement_signing_bytes`]) and are made and checked by
//! `ntari_node::signing`, like every other signature of a node.
//!
//! [`sign_agreement`] edits the text rather than re-serialising it, so the
//! comments and layout the two cooperatives agreed on stay: it removes the
//! top-level `signatures:` block wherever it is and appends a new one at
//! the end of the file, then re-parses the result and refuses to return
//! it unless the signed content is unchanged.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use ntari_node::signing::{self, NodeKey};
use ntari_schemas::federation::{
    self, Agreement, DocumentError, Party, SignatureEntry, REVOCATION_KIND,
};
use ntari_schemas::SchemaError;

/// Larger files are refused unread: an agreement is a few KiB.
pub const MAX_FILE_SIZE: u64 = 1 << 20;

/// Agreement files end so; revocations end in [`REVOKED_SUFFIX`].
pub const AGREEMENT_SUFFIX: &str = ".yaml";
pub const REVOKED_SUFFIX: &str = ".revoked.yaml";

/// Why an agreement is not in force (or a document is not usable). The
/// message is `<file>: <field>: <what happened, what to do>`.
#[derive(Debug, thiserror::Error)]
pub enum AgreementError {
    #[error("{file}: {path}: {message}", path = error.path, message = error.message)]
    Parse { file: String, error: SchemaError },
    #[error("{file}: {path}: {message}", path = error.path, message = error.message)]
    Invalid { file: String, error: SchemaError },
    #[error(
        "{file}: signatures: the signature of {did} does not verify over the canonical form: \
         the file changed after it was signed; restore the signed text, or have both parties \
         sign the new one (`ntari-admin federation agreement sign`)"
    )]
    Tampered { file: String, did: String },
    #[error(
        "{file}: signatures: missing signature of {coop} ({did}); {coop} must sign it \
         (`ntari-admin federation agreement sign {file}` with its node key)"
    )]
    MissingSignature {
        file: String,
        coop: String,
        did: String,
    },
    #[error(
        "{file}: signatures: signature by {did}, which is not a party of this agreement; \
         only the two parties' node keys may sign: remove that entry"
    )]
    UnknownSigner { file: String, did: String },
    #[error("{file}: valid.not_before: not yet valid (until {until}); it comes into force then")]
    NotYetValid { file: String, until: String },
    #[error(
        "{file}: valid.not_after: expired (since {since}); agree on a new version with a \
         later not_after and have both parties sign it"
    )]
    Expired { file: String, since: String },
    #[error(
        "{file}: revoked by {by_coop} at {at}, reason: {reason} ({revocation}); it is no \
         longer in force: a new agreement needs a higher version, signed by both parties"
    )]
    Revoked {
        file: String,
        by_coop: String,
        at: String,
        reason: String,
        revocation: String,
    },
    #[error(
        "{file}: .: the file is {size} bytes, over the {MAX_FILE_SIZE} allowed; an agreement \
         is a few KiB: check it is the right file"
    )]
    TooLarge { file: String, size: u64 },
    #[error("{file}: .: cannot {action}: {source}")]
    Io {
        file: String,
        action: &'static str,
        #[source]
        source: io::Error,
    },
}

impl AgreementError {
    /// Short name of the cause, for status fields and metric labels.
    pub fn kind(&self) -> &'static str {
        match self {
            AgreementError::Parse { .. } => "parse",
            AgreementError::Invalid { .. } => "invalid",
            AgreementError::Tampered { .. } => "tampered",
            AgreementError::MissingSignature { .. } => "missing_signature",
            AgreementError::UnknownSigner { .. } => "unknown_signer",
            AgreementError::NotYetValid { .. } => "not_yet_valid",
            AgreementError::Expired { .. } => "expired",
            AgreementError::Revoked { .. } => "revoked",
            AgreementError::TooLarge { .. } => "too_large",
            AgreementError::Io { .. } => "io",
        }
    }

    /// The same error naming `file` (for callers that hold text, not a path).
    pub fn with_file(mut self, file: &Path) -> Self {
        let name = file.display().to_string();
        match &mut self {
            AgreementError::Parse { file, .. }
            | AgreementError::Invalid { file, .. }
            | AgreementError::Tampered { file, .. }
            | AgreementError::MissingSignature { file, .. }
            | AgreementError::UnknownSigner { file, .. }
            | AgreementError::NotYetValid { file, .. }
            | AgreementError::Expired { file, .. }
            | AgreementError::Revoked { file, .. }
            | AgreementError::TooLarge { file, .. }
            | AgreementError::Io { file, .. } => *file = name,
        }
        self
    }

    fn document(file: &str, error: DocumentError) -> Self {
        let file = file.to_owned();
        match error {
            DocumentError::Parse(error) => AgreementError::Parse { file, error },
            DocumentError::Invalid(error) => AgreementError::Invalid { file, error },
        }
    }

    fn invalid(file: &str, path: &str, message: impl Into<String>) -> Self {
        AgreementError::Invalid {
            file: file.to_owned(),
            error: SchemaError {
                path: path.to_owned(),
                message: message.into(),
            },
        }
    }
}

/// One agreement file and whether it is in force.
#[derive(Debug)]
pub struct Checked {
    /// From the file name (`<id>.yaml`).
    pub id: String,
    pub path: PathBuf,
    pub verdict: Result<Agreement, AgreementError>,
}

/// A revocation whose shape is valid; whether it applies to an agreement
/// (signed by one of its parties) is [`Revocation::signed_by`].
#[derive(Debug, Clone)]
pub struct Revocation {
    pub document: federation::Revocation,
    /// Where it came from (a file, or `received` for one from the link).
    pub source: String,
    signing_bytes: Vec<u8>,
}

impl Revocation {
    /// Parses a revocation (no signature check: that needs the agreement).
    pub fn parse(bytes: &[u8], source: &str) -> Result<Revocation, AgreementError> {
        let text = std::str::from_utf8(bytes).map_err(|_| {
            AgreementError::invalid(source, ".", "not UTF-8 text; a revocation is YAML")
        })?;
        let document =
            federation::Revocation::parse(text).map_err(|e| AgreementError::document(source, e))?;
        let signing_bytes =
            federation::revocation_signing_bytes(text).map_err(|error| AgreementError::Parse {
                file: source.to_owned(),
                error,
            })?;
        Ok(Revocation {
            document,
            source: source.to_owned(),
            signing_bytes,
        })
    }

    /// Reads and parses a revocation file.
    pub fn load(path: &Path) -> Result<Revocation, AgreementError> {
        let bytes = read_limited(path)?;
        Revocation::parse(&bytes, &path.display().to_string())
    }

    /// The party of `agreement` whose valid signature this carries.
    pub fn signed_by<'a>(&self, agreement: &'a Agreement) -> Result<&'a Party, AgreementError> {
        let d = &self.document;
        let party = agreement
            .party_by_did(&d.by)
            .ok_or_else(|| AgreementError::UnknownSigner {
                file: self.source.clone(),
                did: d.by.clone(),
            })?;
        signing::verify_bytes(&d.by, &self.signing_bytes, &d.signature).map_err(|_| {
            AgreementError::Tampered {
                file: self.source.clone(),
                did: d.by.clone(),
            }
        })?;
        Ok(party)
    }

    /// Whether this ends `agreement`: same id, version ≥ its version,
    /// signed by one of its parties.
    pub fn applies_to(&self, agreement: &Agreement) -> bool {
        self.document.agreement == agreement.id
            && self.document.version >= agreement.version
            && self.signed_by(agreement).is_ok()
    }
}

/// Every `*.yaml` agreement in `agreements_dir` (not `*.revoked.yaml`),
/// checked at `now`, revocations taken from `agreements_dir` and each of
/// `revocation_dirs`. Sorted by id. Never panics on any file content;
/// files larger than [`MAX_FILE_SIZE`] are refused. A missing directory
/// holds nothing; unreadable revocations are logged and skipped.
pub fn check_dir(
    agreements_dir: &Path,
    revocation_dirs: &[PathBuf],
    now: SystemTime,
) -> Vec<Checked> {
    let mut dirs = vec![agreements_dir.to_path_buf()];
    dirs.extend(revocation_dirs.iter().cloned());
    let revocations = load_revocations(&dirs);
    let mut checked: Vec<Checked> = files_ending(agreements_dir, AGREEMENT_SUFFIX)
        .into_iter()
        .filter(|p| !file_name(p).ends_with(REVOKED_SUFFIX))
        .map(|p| check_file(&p, &revocations, now))
        .collect();
    checked.sort_by(|a, b| a.id.cmp(&b.id).then_with(|| a.path.cmp(&b.path)));
    checked
}

/// Every `*.yaml` agreement in `dir` (not a revocation) that parses, by
/// path: as written, no signature, window or revocation check — for what
/// names, DIDs and domains are taken, and for drafts. Files over
/// [`MAX_FILE_SIZE`] and unreadable ones are skipped.
pub fn parse_dir(dir: &Path) -> Vec<(PathBuf, Agreement)> {
    files_ending(dir, AGREEMENT_SUFFIX)
        .into_iter()
        .filter(|p| !file_name(p).ends_with(REVOKED_SUFFIX))
        .filter(|p| fs::metadata(p).is_ok_and(|m| m.len() <= MAX_FILE_SIZE))
        .filter_map(|p| {
            let text = fs::read_to_string(&p).ok()?;
            Agreement::parse(&text).ok().map(|a| (p, a))
        })
        .collect()
}

/// Every parseable `*.revoked.yaml` in `dirs`; the others are logged.
pub fn load_revocations(dirs: &[PathBuf]) -> Vec<Revocation> {
    let mut out = Vec::new();
    for dir in dirs {
        for path in files_ending(dir, REVOKED_SUFFIX) {
            match Revocation::load(&path) {
                Ok(r) => out.push(r),
                Err(e) => tracing::warn!(error = %e, "ignoring a revocation that cannot be read"),
            }
        }
    }
    out
}

/// One agreement file checked at `now` against `revocations`.
pub fn check_file(path: &Path, revocations: &[Revocation], now: SystemTime) -> Checked {
    let name = file_name(path);
    let id = name
        .strip_suffix(AGREEMENT_SUFFIX)
        .unwrap_or(&name)
        .to_string();
    let verdict = check(path, &id, revocations, now);
    Checked {
        id,
        path: path.to_path_buf(),
        verdict,
    }
}

fn check(
    path: &Path,
    id: &str,
    revocations: &[Revocation],
    now: SystemTime,
) -> Result<Agreement, AgreementError> {
    let file = path.display().to_string();
    let bytes = read_limited(path)?;
    let agreement = verify_signed(&bytes, &file)?;
    if agreement.id != id {
        return Err(AgreementError::invalid(
            &file,
            "id",
            format!(
                "`{}`, but the file is named {id}{AGREEMENT_SUFFIX}; name it {}{AGREEMENT_SUFFIX}",
                agreement.id, agreement.id
            ),
        ));
    }
    if now < agreement.not_before() {
        return Err(AgreementError::NotYetValid {
            file,
            until: agreement.valid.not_before.text.clone(),
        });
    }
    if now >= agreement.not_after() {
        return Err(AgreementError::Expired {
            file,
            since: agreement.valid.not_after.text.clone(),
        });
    }
    for revocation in revocations {
        if revocation.document.agreement != agreement.id
            || revocation.document.version < agreement.version
        {
            continue;
        }
        match revocation.signed_by(&agreement) {
            Ok(party) => {
                return Err(AgreementError::Revoked {
                    file,
                    by_coop: party.coop.clone(),
                    at: revocation.document.revoked_at.text.clone(),
                    reason: revocation.document.reason.clone(),
                    revocation: revocation.source.clone(),
                })
            }
            Err(e) => tracing::warn!(error = %e, "ignoring a revocation that is not the parties'"),
        }
    }
    Ok(agreement)
}

/// Parses `bytes` as an agreement and checks its signatures (not the
/// validity window, not revocations).
pub fn verify_signed(bytes: &[u8], file: &str) -> Result<Agreement, AgreementError> {
    let text = std::str::from_utf8(bytes)
        .map_err(|_| AgreementError::invalid(file, ".", "not UTF-8 text; an agreement is YAML"))?;
    let agreement = Agreement::parse(text).map_err(|e| AgreementError::document(file, e))?;
    let signed =
        federation::agreement_signing_bytes(text).map_err(|error| AgreementError::Parse {
            file: file.to_owned(),
            error,
        })?;
    for entry in &agreement.signatures {
        if agreement.party_by_did(&entry.did).is_none() {
            return Err(AgreementError::UnknownSigner {
                file: file.to_owned(),
                did: entry.did.clone(),
            });
        }
    }
    // Parties in file order, so the message names the same one every time.
    for party in &agreement.parties {
        match agreement.signatures.iter().find(|s| s.did == party.did) {
            None => {
                return Err(AgreementError::MissingSignature {
                    file: file.to_owned(),
                    coop: party.coop.clone(),
                    did: party.did.clone(),
                })
            }
            Some(entry) => {
                signing::verify_bytes(&party.did, &signed, &entry.signature).map_err(|_| {
                    AgreementError::Tampered {
                        file: file.to_owned(),
                        did: party.did.clone(),
                    }
                })?
            }
        }
    }
    Ok(agreement)
}

/// Each signature of `agreement` (parsed from `text`) and whether it
/// verifies, for display; `None` for a signer that is not a party.
pub fn signature_report(text: &str, agreement: &Agreement) -> Vec<(SignatureEntry, Option<bool>)> {
    let signed = federation::agreement_signing_bytes(text).ok();
    agreement
        .signatures
        .iter()
        .map(|entry| {
            let ok = agreement.party_by_did(&entry.did).map(|_| {
                signed.as_deref().is_some_and(|bytes| {
                    signing::verify_bytes(&entry.did, bytes, &entry.signature).is_ok()
                })
            });
            (entry.clone(), ok)
        })
        .collect()
}

/// A revocation received as bytes (over the link): parse, check it is
/// signed by a party of `agreement` and names it; Ok = it applies.
pub fn verify_revocation(
    bytes: &[u8],
    agreement: &Agreement,
) -> Result<Revocation, AgreementError> {
    if bytes.len() as u64 > MAX_FILE_SIZE {
        return Err(AgreementError::TooLarge {
            file: "received revocation".into(),
            size: bytes.len() as u64,
        });
    }
    let revocation = Revocation::parse(bytes, "received revocation")?;
    let d = &revocation.document;
    if d.agreement != agreement.id {
        return Err(AgreementError::invalid(
            &revocation.source,
            "agreement",
            format!("names `{}`, not agreement `{}`", d.agreement, agreement.id),
        ));
    }
    if d.version < agreement.version {
        return Err(AgreementError::invalid(
            &revocation.source,
            "version",
            format!(
                "revokes up to version {}, the agreement in force is version {}",
                d.version, agreement.version
            ),
        ));
    }
    revocation.signed_by(agreement)?;
    Ok(revocation)
}

/// Writes a verified revocation into `dir` as `<id>.revoked.yaml`
/// atomically (temp file, fsync, rename, fsync of the directory). One
/// already there that revokes as many versions or more is kept.
pub fn save_revocation(dir: &Path, bytes: &[u8], revocation: &Revocation) -> io::Result<PathBuf> {
    fs::create_dir_all(dir)?;
    let path = dir.join(format!("{}{REVOKED_SUFFIX}", revocation.document.agreement));
    if let Ok(existing) = Revocation::load(&path) {
        if existing.document.agreement == revocation.document.agreement
            && existing.document.version >= revocation.document.version
        {
            return Ok(path);
        }
    }
    ntari_node::fsutil::write_atomic(&path, bytes, 0o644)?;
    Ok(path)
}

/// Adds (or replaces) `key`'s signature; returns the new text, in which
/// only the `signatures:` block changed (now the last thing in the file).
pub fn sign_agreement(yaml: &str, key: &NodeKey) -> Result<String, AgreementError> {
    const FILE: &str = "agreement";
    let agreement = Agreement::parse(yaml).map_err(|e| AgreementError::document(FILE, e))?;
    if agreement.party_by_did(key.did()).is_none() {
        return Err(AgreementError::UnknownSigner {
            file: FILE.into(),
            did: key.did().to_owned(),
        });
    }
    let signed =
        federation::agreement_signing_bytes(yaml).map_err(|error| AgreementError::Parse {
            file: FILE.into(),
            error,
        })?;
    let mine = SignatureEntry {
        did: key.did().to_owned(),
        signature: key.sign_bytes(&signed),
    };
    add_signature(yaml, mine)
}

/// Adds (or replaces) the signature `mine` of one of the parties (not
/// checked here: [`verify_signed`] does); only the `signatures:` block of
/// the text changes.
pub fn add_signature(yaml: &str, mine: SignatureEntry) -> Result<String, AgreementError> {
    const FILE: &str = "agreement";
    let agreement = Agreement::parse(yaml).map_err(|e| AgreementError::document(FILE, e))?;
    let signed =
        federation::agreement_signing_bytes(yaml).map_err(|error| AgreementError::Parse {
            file: FILE.into(),
            error,
        })?;
    // Parties first, in their order, then anything else that was there
    // (verification refuses strangers; signing does not hide them).
    let mut entries: Vec<SignatureEntry> = Vec::new();
    for party in &agreement.parties {
        if party.did == mine.did {
            entries.push(mine.clone());
        } else if let Some(e) = agreement.signatures.iter().find(|s| s.did == party.did) {
            entries.push(e.clone());
        }
    }
    entries.extend(
        agreement
            .signatures
            .iter()
            .filter(|s| agreement.party_by_did(&s.did).is_none())
            .cloned(),
    );

    let mut text = without_signatures_block(yaml);
    text.push_str("signatures:\n");
    for e in &entries {
        text.push_str(&format!(
            "  - did: {}\n    signature: {}\n",
            e.did, e.signature
        ));
    }
    let unchanged = federation::agreement_signing_bytes(&text).ok() == Some(signed)
        && Agreement::parse(&text).is_ok_and(|a| a.signatures == entries);
    if !unchanged {
        return Err(AgreementError::invalid(
            FILE,
            "signatures",
            "cannot replace the signatures block in this text; make `signatures:` the last \
             top-level key, in block style (`  - did: …` lines), or remove it, then sign again",
        ));
    }
    Ok(text)
}

/// `yaml` without its top-level `signatures:` key and the lines under it
/// (comments just before the next top-level key stay), ending in a newline.
fn without_signatures_block(yaml: &str) -> String {
    let mut out = String::with_capacity(yaml.len());
    let mut in_block = false;
    let mut held = String::new();
    for line in yaml.split_inclusive('\n') {
        let top_level_key = !line.starts_with([' ', '\t', '-', '#', '\n', '\r']);
        if top_level_key && (line.starts_with("signatures:") || line.starts_with("signatures :")) {
            in_block = true;
            held.clear();
            continue;
        }
        if !in_block {
            out.push_str(line);
            continue;
        }
        if line.starts_with('#') || line.trim().is_empty() {
            held.push_str(line);
        } else if top_level_key {
            in_block = false;
            out.push_str(&held);
            held.clear();
            out.push_str(line);
        } else {
            held.clear();
        }
    }
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    out
}

/// A signed revocation of `agreement` by `key` (one of its parties), as
/// YAML for `<id>.revoked.yaml`.
pub fn make_revocation(
    agreement: &Agreement,
    key: &NodeKey,
    reason: &str,
    now: SystemTime,
) -> Result<String, AgreementError> {
    let file = format!("{}{REVOKED_SUFFIX}", agreement.id);
    let party = agreement
        .party_by_did(key.did())
        .ok_or_else(|| AgreementError::UnknownSigner {
            file: file.clone(),
            did: key.did().to_owned(),
        })?;
    let revoked_at = humantime::format_rfc3339_seconds(now).to_string();
    let content = serde_json::json!({
        "kind": REVOCATION_KIND,
        "agreement": agreement.id,
        "version": agreement.version,
        "revoked_at": revoked_at,
        "by": key.did(),
        "reason": reason,
    });
    let signed = federation::jcs(&content).map_err(|error| AgreementError::Parse {
        file: file.clone(),
        error,
    })?;
    // A JSON string is a YAML double-quoted scalar with the same value.
    let quoted = serde_json::to_string(reason)
        .map_err(|e| AgreementError::invalid(&file, "reason", format!("cannot be written: {e}")))?;
    let text = format!(
        "# Revocation of federation agreement {id} (version {version} and older) by {coop}.\n\
         kind: {REVOCATION_KIND}\n\
         agreement: {id}\n\
         version: {version}\n\
         revoked_at: \"{revoked_at}\"\n\
         by: {did}\n\
         reason: {quoted}\n\
         signature: {signature}\n",
        id = agreement.id,
        version = agreement.version,
        coop = party.coop,
        did = key.did(),
        signature = key.sign_bytes(&signed),
    );
    // What we wrote must read back as what we signed (and validate).
    let revocation = Revocation::parse(text.as_bytes(), &file)?;
    if revocation.signing_bytes != signed {
        return Err(AgreementError::invalid(
            &file,
            "reason",
            "does not survive being written as YAML unchanged; use plain text",
        ));
    }
    Ok(text)
}

/// Reads at most [`MAX_FILE_SIZE`] bytes of a regular file.
fn read_limited(path: &Path) -> Result<Vec<u8>, AgreementError> {
    let file_label = || path.display().to_string();
    let io_err = |action, source| AgreementError::Io {
        file: file_label(),
        action,
        source,
    };
    // Not opened unless it is a regular file, so a FIFO cannot block us.
    let meta = fs::metadata(path).map_err(|e| io_err("stat it", e))?;
    if !meta.is_file() {
        return Err(AgreementError::invalid(
            &file_label(),
            ".",
            "not a regular file; agreements and revocations are plain files",
        ));
    }
    if meta.len() > MAX_FILE_SIZE {
        return Err(AgreementError::TooLarge {
            file: file_label(),
            size: meta.len(),
        });
    }
    let mut bytes = Vec::new();
    fs::File::open(path)
        .and_then(|f| f.take(MAX_FILE_SIZE + 1).read_to_end(&mut bytes))
        .map_err(|e| io_err("read it", e))?;
    if bytes.len() as u64 > MAX_FILE_SIZE {
        return Err(AgreementError::TooLarge {
            file: file_label(),
            size: bytes.len() as u64,
        });
    }
    Ok(bytes)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Files in `dir` whose name ends with `suffix`, hidden ones (temporary
/// files of atomic writes) left out; nothing if `dir` cannot be read.
fn files_ending(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot list federation files");
            return Vec::new();
        }
    };
    let mut out: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            let name = file_name(p);
            name.ends_with(suffix) && !name.starts_with('.')
        })
        .collect();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn key(n: u8) -> NodeKey {
        NodeKey::from_secret_bytes(&[n; 32])
    }

    const WG_A: &str = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=";
    const WG_B: &str = "TrMvSoP4jYQlY6RIzBgbssQqY3vxI2Pi+y71lOWWXX0=";

    /// 2026-12-01T00:00:00Z .. 2027-12-01T00:00:00Z.
    fn at(s: &str) -> SystemTime {
        humantime::parse_rfc3339(s).unwrap()
    }

    fn now() -> SystemTime {
        at("2027-01-01T00:00:00Z")
    }

    fn unsigned() -> String {
        format!(
            "# Riverside and Hillside, as agreed on 2026-11-20.\n\
             kind: ntari/federation-agreement/v1\n\
             id: riverside-hillside\n\
             version: 1\n\
             parties:\n\
             \x20 - coop: riverside\n\
             \x20   did: {}\n\
             \x20   wireguard_key: {WG_A}\n\
             \x20   tunnel_address: 10.77.0.1\n\
             \x20 - coop: hillside\n\
             \x20   did: {}\n\
             \x20   wireguard_key: {WG_B}\n\
             \x20   tunnel_address: 10.77.0.2\n\
             valid:\n\
             \x20 not_before: 2026-12-01T00:00:00Z\n\
             \x20 not_after: 2027-12-01T00:00:00Z\n\
             federation_domain: 77\n\
             exports:\n\
             \x20 riverside:\n\
             \x20   topics:\n\
             \x20     - name: /ntari/*/health   # every service's health\n\
             \x20       type: std_msgs/msg/Bool\n\
             trust:\n\
             \x20 riverside: observer\n",
            key(1).did(),
            key(2).did()
        )
    }

    fn signed() -> String {
        let once = sign_agreement(&unsigned(), &key(1)).unwrap();
        sign_agreement(&once, &key(2)).unwrap()
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        fs::write(&path, text).unwrap();
        path
    }

    fn verdict(text: &str) -> Result<Agreement, AgreementError> {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "riverside-hillside.yaml", text);
        check_file(&path, &[], now()).verdict
    }

    #[test]
    fn signed_by_both_in_either_order_is_in_force() {
        let text = signed();
        assert!(
            text.starts_with("# Riverside and Hillside"),
            "comments kept"
        );
        assert!(text.contains("# every service's health"));
        let a = verdict(&text).unwrap();
        assert_eq!(a.signatures.len(), 2);

        let other_order =
            sign_agreement(&sign_agreement(&unsigned(), &key(2)).unwrap(), &key(1)).unwrap();
        assert!(verdict(&other_order).is_ok());
        // Ed25519 is deterministic and entries are in party order.
        assert_eq!(other_order, text);
    }

    #[test]
    fn signing_again_replaces_the_entry() {
        let text = signed();
        let again = sign_agreement(&text, &key(1)).unwrap();
        assert_eq!(again, text);
        assert_eq!(again.matches("- did:").count(), 2);
        // A signatures block in the middle of the file is moved to the end.
        let sigs_at = text.find("signatures:").unwrap();
        let (body, sigs) = text.split_at(sigs_at);
        let trust_at = body.find("trust:").unwrap();
        let moved = format!("{}{sigs}# trust\n{}", &body[..trust_at], &body[trust_at..]);
        assert!(verdict(&moved).is_ok());
        let resigned = sign_agreement(&moved, &key(2)).unwrap();
        assert!(resigned.contains("# trust\ntrust:"));
        assert!(resigned.ends_with(&sigs[sigs.find("  - did").unwrap()..]));
        assert!(verdict(&resigned).is_ok());
        // A layout the text surgery cannot handle is refused, not mangled.
        let flow = format!(
            "{}signatures: [\n  {{did: {}, signature: {}}}\n]\n",
            unsigned(),
            key(1).did(),
            "0".repeat(128)
        );
        let err = sign_agreement(&flow, &key(2)).unwrap_err();
        assert_eq!(err.kind(), "invalid", "{err}");
    }

    #[test]
    fn every_refusal_has_its_own_message() {
        let text = signed();
        // One byte changed in a signed value.
        let tampered = text.replace("/ntari/*/health", "/ntari/*/healtH");
        let err = verdict(&tampered).unwrap_err();
        assert_eq!(err.kind(), "tampered");
        assert!(err.to_string().contains(&format!(
            "riverside-hillside.yaml: signatures: the signature of {} does not verify over the canonical form",
            key(1).did()
        )), "{err}");
        // Comment and layout changes are not tampering.
        assert!(verdict(&text.replace("# every service's health", "# all")).is_ok());

        let once = sign_agreement(&unsigned(), &key(1)).unwrap();
        let err = verdict(&once).unwrap_err();
        assert_eq!(err.kind(), "missing_signature");
        assert!(
            err.to_string().contains(&format!(
                "signatures: missing signature of hillside ({})",
                key(2).did()
            )),
            "{err}"
        );
        assert_eq!(
            verdict(&unsigned()).unwrap_err().kind(),
            "missing_signature"
        );

        let stranger = format!(
            "{text}  - did: {}\n    signature: {}\n",
            key(3).did(),
            key(3).sign_bytes(&federation::agreement_signing_bytes(&text).unwrap())
        );
        let err = verdict(&stranger).unwrap_err();
        assert_eq!(err.kind(), "unknown_signer");
        assert!(err.to_string().contains(&key(3).did().to_string()), "{err}");
        let err = sign_agreement(&unsigned(), &key(3)).unwrap_err();
        assert_eq!(err.kind(), "unknown_signer");

        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "riverside-hillside.yaml", &text);
        let err = check_file(&path, &[], at("2026-11-30T23:59:59Z"))
            .verdict
            .unwrap_err();
        assert_eq!(err.kind(), "not_yet_valid");
        assert!(
            err.to_string()
                .contains("not yet valid (until 2026-12-01T00:00:00Z)"),
            "{err}"
        );
        assert!(check_file(&path, &[], at("2026-12-01T00:00:00Z"))
            .verdict
            .is_ok());
        let err = check_file(&path, &[], at("2027-12-01T00:00:00Z"))
            .verdict
            .unwrap_err();
        assert_eq!(err.kind(), "expired");
        assert!(
            err.to_string()
                .contains("expired (since 2027-12-01T00:00:00Z)"),
            "{err}"
        );

        let err = verdict(&text.replace("10.77.0.2", "10.77.0.x")).unwrap_err();
        assert_eq!(err.kind(), "parse");
        assert!(err.to_string().contains(
            "riverside-hillside.yaml: parties[1].tunnel_address: invalid IP address `10.77.0.x`"
        ), "{err}");
        let err =
            verdict(&text.replace("federation_domain: 77", "federation_domain: 300")).unwrap_err();
        assert_eq!(err.kind(), "invalid");
        assert!(
            err.to_string().contains(": federation_domain: 300"),
            "{err}"
        );

        // The file name must be the id.
        let path = write(dir.path(), "other.yaml", &text);
        let err = check_file(&path, &[], now()).verdict.unwrap_err();
        assert_eq!(err.kind(), "invalid");
        assert!(err.to_string().contains("other.yaml: id: "), "{err}");

        // Garbage never panics.
        for junk in [
            &b"\xff\xfe\x00"[..],
            b"",
            b"[",
            b"- 1\n",
            b"kind: {",
            b"\x00\x01",
        ] {
            let path = write(dir.path(), "riverside-hillside.yaml", "");
            fs::write(&path, junk).unwrap();
            assert!(check_file(&path, &[], now()).verdict.is_err());
        }
        let big = format!("{text}#{}\n", "x".repeat(MAX_FILE_SIZE as usize));
        let path = write(dir.path(), "riverside-hillside.yaml", &big);
        assert_eq!(
            check_file(&path, &[], now()).verdict.unwrap_err().kind(),
            "too_large"
        );
        let missing = check_file(&dir.path().join("nope.yaml"), &[], now());
        assert_eq!(missing.verdict.unwrap_err().kind(), "io");
    }

    #[test]
    fn revocation_ends_it_from_either_place() {
        let text = signed();
        let a = verdict(&text).unwrap();
        let yaml = make_revocation(&a, &key(2), "the partnership ended", now()).unwrap();
        let revocation = verify_revocation(yaml.as_bytes(), &a).unwrap();
        assert_eq!(revocation.document.reason, "the partnership ended");
        assert_eq!(revocation.document.revoked_at.text, "2027-01-01T00:00:00Z");

        // Offline: beside the agreement.
        let etc = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        let received = state.path().join("revocations");
        write(etc.path(), "riverside-hillside.yaml", &text);
        write(etc.path(), "other-coop.yaml", "kind: nonsense\n");
        let checked = check_dir(etc.path(), std::slice::from_ref(&received), now());
        assert_eq!(
            checked.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
            ["other-coop", "riverside-hillside"]
        );
        assert!(checked[1].verdict.is_ok());
        write(etc.path(), "riverside-hillside.revoked.yaml", &yaml);
        let checked = check_dir(etc.path(), std::slice::from_ref(&received), now());
        assert_eq!(checked.len(), 2, "revocations are not agreements");
        let err = checked[1].verdict.as_ref().unwrap_err();
        assert_eq!(err.kind(), "revoked");
        assert!(
            err.to_string().contains(
                "revoked by hillside at 2027-01-01T00:00:00Z, reason: the partnership ended"
            ),
            "{err}"
        );

        // Received: in the state dir.
        fs::remove_file(etc.path().join("riverside-hillside.revoked.yaml")).unwrap();
        let saved = save_revocation(&received, yaml.as_bytes(), &revocation).unwrap();
        assert_eq!(saved, received.join("riverside-hillside.revoked.yaml"));
        let checked = check_dir(etc.path(), std::slice::from_ref(&received), now());
        assert_eq!(checked[1].verdict.as_ref().unwrap_err().kind(), "revoked");

        // A revocation for an older version does not end a newer one.
        let v2 = sign_agreement(
            &sign_agreement(&text.replace("version: 1", "version: 2"), &key(1)).unwrap(),
            &key(2),
        )
        .unwrap();
        write(etc.path(), "riverside-hillside.yaml", &v2);
        let checked = check_dir(etc.path(), std::slice::from_ref(&received), now());
        assert!(checked[1].verdict.is_ok());
        let a2 = checked[1].verdict.as_ref().unwrap();
        assert_eq!(
            verify_revocation(yaml.as_bytes(), a2).unwrap_err().kind(),
            "invalid"
        );
        // Saving an older revocation over a newer one keeps the newer.
        let newer = make_revocation(a2, &key(1), "again", now()).unwrap();
        let newer_rev = verify_revocation(newer.as_bytes(), a2).unwrap();
        save_revocation(&received, newer.as_bytes(), &newer_rev).unwrap();
        save_revocation(&received, yaml.as_bytes(), &revocation).unwrap();
        assert_eq!(fs::read_to_string(&saved).unwrap(), newer);
    }

    #[test]
    fn forged_revocations_do_not_apply() {
        let a = verdict(&signed()).unwrap();
        let yaml = make_revocation(&a, &key(1), "bye", now()).unwrap();
        // Changed after signing.
        let changed = yaml.replace("reason: \"bye\"", "reason: \"hello\"");
        assert_eq!(
            verify_revocation(changed.as_bytes(), &a)
                .unwrap_err()
                .kind(),
            "tampered"
        );
        // By a stranger.
        let mut b = a.clone();
        b.parties[0].did = key(3).did().to_owned();
        let stranger = make_revocation(&b, &key(3), "bye", now()).unwrap();
        assert_eq!(
            verify_revocation(stranger.as_bytes(), &a)
                .unwrap_err()
                .kind(),
            "unknown_signer"
        );
        assert_eq!(
            make_revocation(&a, &key(3), "x", now()).unwrap_err().kind(),
            "unknown_signer"
        );
        // Naming another agreement.
        let mut c = a.clone();
        c.id = "riverside-lowland".into();
        let other = make_revocation(&c, &key(1), "bye", now()).unwrap();
        assert_eq!(
            verify_revocation(other.as_bytes(), &a).unwrap_err().kind(),
            "invalid"
        );
        // None of them counts in a directory either.
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "riverside-hillside.yaml", &signed());
        write(dir.path(), "a.revoked.yaml", &changed);
        write(dir.path(), "b.revoked.yaml", &stranger);
        write(dir.path(), "c.revoked.yaml", &other);
        write(dir.path(), "d.revoked.yaml", "garbage: [");
        let checked = check_dir(dir.path(), &[], now());
        assert!(checked[0].verdict.is_ok(), "{:?}", checked[0].verdict);
        // Reasons with quotes, newlines and non-ASCII survive the YAML.
        let odd = make_revocation(&a, &key(1), "a \"b\"\n\tc: é # d", now()).unwrap();
        assert_eq!(
            verify_revocation(odd.as_bytes(), &a)
                .unwrap()
                .document
                .reason,
            "a \"b\"\n\tc: é # d"
        );
        assert_eq!(
            make_revocation(&a, &key(1), " ", now()).unwrap_err().kind(),
            "invalid"
        );
    }

    #[test]
    fn signatures_are_over_jcs_of_the_document() {
        // An independent reading: JCS of the YAML minus `signatures`.
        let text = signed();
        let a = Agreement::parse(&text).unwrap();
        let mut value: serde_json::Value = serde_yaml_ng::from_str(&text).unwrap();
        value.as_object_mut().unwrap().remove("signatures");
        let bytes = serde_json_canonicalizer::to_vec(&value).unwrap();
        assert!(bytes.starts_with(
            b"{\"exports\":{\"riverside\":{\"topics\":[{\"name\":\"/ntari/*/health\""
        ));
        for s in &a.signatures {
            signing::verify_bytes(&s.did, &bytes, &s.signature).unwrap();
        }
        let report = signature_report(&text, &a);
        assert!(report.iter().all(|(_, ok)| *ok == Some(true)));
        let _ = Duration::from_secs(1);
    }
}

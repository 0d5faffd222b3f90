//! Trust lowered locally: `ntari-admin federation set-trust`.
//!
//! An agreement says the most each side grants; lowering what we grant
//! needs no partner (raising it does: a new version, co-signed). A lowered
//! level is `<state_dir>/trust/<agreement>.json`, an [`Envelope`] signed by
//! this node's key, so a file written by anyone else is ignored (and
//! warned about). The bridge grants the lesser of the agreement's level
//! and this one.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use ntari_node::signing::{self, Envelope, NodeKey};
use ntari_schemas::federation::Trust;
use serde::{Deserialize, Serialize};

/// What a trust file's envelope carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustOverride {
    /// Always `trust_override`.
    #[serde(rename = "type")]
    pub kind: String,
    pub agreement: String,
    pub partner: String,
    pub trust: Trust,
}

pub fn trust_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("trust")
}

fn path(dir: &Path, agreement: &str) -> PathBuf {
    dir.join(format!("{agreement}.json"))
}

/// Signs and writes (atomically) the level we grant in `agreement`.
pub fn write(
    dir: &Path,
    key: &NodeKey,
    agreement: &str,
    partner: &str,
    trust: Trust,
) -> Result<PathBuf, String> {
    let payload = TrustOverride {
        kind: "trust_override".into(),
        agreement: agreement.into(),
        partner: partner.into(),
        trust,
    };
    let value = serde_json::to_value(&payload).map_err(|e| e.to_string())?;
    let envelope = key.sign(value).map_err(|e| e.to_string())?;
    let text = serde_json::to_string_pretty(&envelope).map_err(|e| e.to_string())? + "\n";
    let file = path(dir, agreement);
    std::fs::create_dir_all(dir)
        .and_then(|()| ntari_node::fsutil::write_atomic(&file, text.as_bytes(), 0o644))
        .map_err(|e| format!("cannot write {}: {e}", file.display()))?;
    Ok(file)
}

/// Removes the override of `agreement` (back to the agreement's level).
pub fn clear(dir: &Path, agreement: &str) -> std::io::Result<bool> {
    match std::fs::remove_file(path(dir, agreement)) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Every override signed by `our_did`, by agreement; and why each other
/// file was ignored.
pub fn load(dir: &Path, our_did: &str) -> (HashMap<String, Trust>, Vec<String>) {
    let mut levels = HashMap::new();
    let mut ignored = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return (levels, ignored);
    };
    for entry in entries.flatten() {
        let file = entry.path();
        if file.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        match read_one(&file, our_did) {
            Ok(o) => {
                levels.insert(o.agreement, o.trust);
            }
            Err(e) => ignored.push(format!("{}: {e}", file.display())),
        }
    }
    (levels, ignored)
}

fn read_one(file: &Path, our_did: &str) -> Result<TrustOverride, String> {
    let bytes = std::fs::read(file).map_err(|e| e.to_string())?;
    if bytes.len() > 64 * 1024 {
        return Err("larger than 64 KiB".into());
    }
    let envelope: Envelope = serde_json::from_slice(&bytes)
        .map_err(|e| format!("not a signed trust file ({e}); remove it"))?;
    if envelope.issuer != our_did {
        return Err(format!(
            "signed by {}, not this node; remove it or use `ntari-admin federation set-trust`",
            envelope.issuer
        ));
    }
    signing::verify_bytes(our_did, &envelope.signing_bytes(), &envelope.signature).map_err(
        |_| "its signature does not verify (changed by hand?); set it again".to_string(),
    )?;
    let o: TrustOverride =
        serde_json::from_value(envelope.payload).map_err(|e| format!("not a trust level: {e}"))?;
    if o.kind != "trust_override" || format!("{}.json", o.agreement) != file_name(file) {
        return Err("not the trust file of the agreement it is named after".into());
    }
    Ok(o)
}

fn file_name(file: &Path) -> String {
    file.file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_our_signed_files_count() {
        let dir = tempfile::tempdir().unwrap();
        let ours = NodeKey::generate().unwrap();
        let theirs = NodeKey::generate().unwrap();
        write(dir.path(), &ours, "a-b", "coop_b", Trust::Untrusted).unwrap();
        write(dir.path(), &theirs, "a-c", "coop_c", Trust::Trusted).unwrap();
        std::fs::write(dir.path().join("a-d.json"), "{").unwrap();
        let (levels, ignored) = load(dir.path(), ours.did());
        assert_eq!(levels.get("a-b"), Some(&Trust::Untrusted));
        assert_eq!(levels.len(), 1);
        assert_eq!(ignored.len(), 2, "{ignored:?}");
        // A hand edit breaks the signature.
        let file = dir.path().join("a-b.json");
        let text = std::fs::read_to_string(&file)
            .unwrap()
            .replace("untrusted", "trusted");
        std::fs::write(&file, text).unwrap();
        assert!(load(dir.path(), ours.did()).0.is_empty());
        assert!(clear(dir.path(), "a-b").unwrap());
    }
}

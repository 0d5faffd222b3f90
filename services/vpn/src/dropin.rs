//! Peers from drop-in files (`peer_files`, libs/ntari-schemas
//! `wireguard_peers`): ntari-federation's peers, added to the config's
//! `[[peers]]` without an admin editing `vpn.toml`.
//!
//! Each file is looked at once a second (mtime, size, inode: cheap) and
//! re-read when that changes. The peers in effect are the config's plus
//! the files' valid ones: a drop-in peer whose `not_after` has passed is
//! dropped (the file need not change), one that clashes with a config peer
//! (same key, overlapping allowed IPs) is ignored with a warning, since
//! the config is the admin's word. A file that does not parse keeps the
//! peers it gave before: a writer's slip must not cut a working tunnel.

use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use ipnet::IpNet;
use ntari_schemas::wireguard_peers::{DropInPeer, WireguardPeers};
use serde_json::json;

use crate::config::{self, PeerConfig, VpnConfig};

/// What a file looked like when last read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stamp {
    Missing,
    Present {
        mtime: Option<SystemTime>,
        size: u64,
        inode: u64,
    },
    /// It exists but cannot be looked at (a directory not ours).
    Unreadable,
}

#[derive(Debug)]
struct FileState {
    path: PathBuf,
    /// None: not looked at yet.
    stamp: Option<Stamp>,
    /// What the file gave when it last parsed.
    peers: Vec<DropInPeer>,
    /// Its `relay` list: peers to forward between.
    relay: Vec<String>,
    /// Why the file as it is now is not used.
    error: Option<String>,
}

/// A drop-in peer in effect.
#[derive(Debug, Clone, PartialEq)]
struct Merged {
    peer: PeerConfig,
    not_after: Option<SystemTime>,
}

/// The drop-in files and the peers they give.
#[derive(Debug, Default)]
pub struct Watch {
    files: Vec<FileState>,
    /// The config the drop-ins were last merged into; None before the
    /// device was first configured (nothing to watch for yet).
    base: Option<VpnConfig>,
    /// The hub's own public key: a drop-in peer with it is ignored.
    own_key: Option<String>,
    merged: Vec<Merged>,
    /// Drop-in peers ignored, and why.
    ignored: Vec<String>,
}

impl Watch {
    pub fn set_own_key(&mut self, key: String) {
        self.own_key = Some(key);
    }

    /// `config` with the drop-in peers in effect at `now` added: what the
    /// device is given. Files are looked at (and read if changed) first.
    pub fn effective(&mut self, config: &VpnConfig, now: SystemTime) -> VpnConfig {
        self.set_files(&config.peer_files);
        self.base = Some(config.clone());
        self.poll();
        self.merge(now);
        let mut effective = config.clone();
        effective
            .peers
            .extend(self.merged.iter().map(|m| m.peer.clone()));
        effective
    }

    /// Once a second: whether the drop-in peers in effect changed (a file
    /// changed, a peer expired), so the device needs the new set.
    pub fn tick(&mut self, now: SystemTime) -> bool {
        if self.base.is_none() {
            return false;
        }
        // The peers, or only whom to relay between (a file that changed
        // its `relay` list alone): both as they were before the poll.
        let before = (self.merged.clone(), self.relay_members());
        let files_changed = self.poll();
        let expired = self
            .merged
            .iter()
            .any(|m| m.not_after.is_some_and(|t| now >= t));
        if !files_changed && !expired {
            return false;
        }
        self.merge(now);
        (self.merged.clone(), self.relay_members()) != before
    }

    /// The peers in effect that a file asks this hub to forward between
    /// (name and allowed IPs), if at least two are: see [`crate::relay`].
    pub fn relay_members(&self) -> Vec<crate::relay::Member> {
        let members: Vec<crate::relay::Member> = self
            .files
            .iter()
            .flat_map(|f| f.relay.iter())
            .filter_map(|name| {
                let m = self.merged.iter().find(|m| &m.peer.name == name)?;
                Some((name.clone(), m.peer.allowed_ips.clone()))
            })
            .collect();
        if members.len() >= 2 {
            members
        } else {
            Vec::new()
        }
    }

    /// Bad files and ignored peers, for status `warnings`.
    pub fn warnings(&self) -> Vec<String> {
        self.files
            .iter()
            .filter_map(|f| f.error.clone())
            .chain(self.ignored.iter().cloned())
            .collect()
    }

    /// Status detail: each file, how many peers it gives, what is wrong.
    pub fn detail(&self) -> serde_json::Value {
        json!(self
            .files
            .iter()
            .map(|f| json!({
                "path": f.path.display().to_string(),
                "exists": !matches!(f.stamp, Some(Stamp::Missing) | None),
                "peers": f.peers.len(),
                "error": f.error,
            }))
            .collect::<Vec<_>>())
    }

    /// Follows a changed `peer_files`: files still listed keep their state.
    fn set_files(&mut self, paths: &[PathBuf]) {
        let mut old = std::mem::take(&mut self.files);
        for path in paths {
            let state = match old.iter().position(|f| &f.path == path) {
                Some(i) => old.swap_remove(i),
                None => FileState {
                    path: path.clone(),
                    stamp: None,
                    peers: Vec::new(),
                    relay: Vec::new(),
                    error: None,
                },
            };
            self.files.push(state);
        }
    }

    /// Re-reads the files whose stamp changed; whether any did.
    fn poll(&mut self) -> bool {
        let mut changed = false;
        for file in &mut self.files {
            // Stamp before reading: a write that lands after the stamp
            // changes it again, so the next tick reads the file again.
            let stamp = stamp(&file.path);
            if file.stamp == Some(stamp) {
                continue;
            }
            file.stamp = Some(stamp);
            changed = true;
            read(file, stamp);
        }
        changed
    }

    /// The drop-in peers in effect at `now`, and the ignored ones' warnings.
    fn merge(&mut self, now: SystemTime) {
        let Some(base) = &self.base else { return };
        let mut merged: Vec<Merged> = Vec::new();
        let mut ignored = Vec::new();
        for file in &self.files {
            let where_ = file.path.display();
            for (i, p) in file.peers.iter().enumerate() {
                if p.expired(now) {
                    if self
                        .merged
                        .iter()
                        .any(|m| m.peer.public_key == p.public_key)
                    {
                        tracing::info!(file = %where_, peer = %p.name, not_after = ?p.not_after, "drop-in peer expired: removed");
                    }
                    continue;
                }
                let ignore = |why: String| {
                    format!(
                        "peer file {where_}: peers[{i}] (`{}`) ignored: {why}",
                        p.name
                    )
                };
                match check(p, base, &merged, self.own_key.as_deref()) {
                    Ok(peer) => merged.push(Merged {
                        peer,
                        not_after: p.expires_at(),
                    }),
                    Err(why) => ignored.push(ignore(why)),
                }
            }
        }
        for warning in ignored.iter().filter(|w| !self.ignored.contains(w)) {
            tracing::warn!("{warning}");
        }
        self.merged = merged;
        self.ignored = ignored;
    }
}

/// The file's stamp now.
fn stamp(path: &Path) -> Stamp {
    match std::fs::metadata(path) {
        Ok(meta) => Stamp::Present {
            mtime: meta.modified().ok(),
            size: meta.len(),
            inode: meta.ino(),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Stamp::Missing,
        Err(_) => Stamp::Unreadable,
    }
}

/// Reads a file whose stamp changed into its state.
fn read(file: &mut FileState, stamp: Stamp) {
    let where_ = file.path.display().to_string();
    let parsed = match stamp {
        Stamp::Missing => {
            if !file.peers.is_empty() || file.error.is_some() {
                tracing::info!(file = %where_, "peer file gone: no drop-in peers from it");
            }
            file.peers.clear();
            file.relay.clear();
            file.error = None;
            return;
        }
        _ => std::fs::read_to_string(&file.path)
            .map_err(|e| format!("cannot read it: {e}"))
            .and_then(|text| WireguardPeers::parse(&text).map_err(|e| e.to_string())),
    };
    match parsed {
        Ok(document) => {
            tracing::info!(file = %where_, source = %document.source, peers = document.peers.len(), "read peer file");
            file.peers = document.peers;
            file.relay = document.relay;
            file.error = None;
        }
        Err(e) => {
            let message = format!(
                "peer file {where_}: {e}; the {} peers it gave before are kept",
                file.peers.len()
            );
            tracing::warn!("{message}");
            file.error = Some(message);
        }
    }
}

/// The drop-in peer as a config peer, unless it clashes with the config,
/// the hub itself or a drop-in peer already taken.
fn check(
    p: &DropInPeer,
    base: &VpnConfig,
    taken: &[Merged],
    own_key: Option<&str>,
) -> Result<PeerConfig, String> {
    if own_key == Some(p.public_key.as_str()) {
        return Err("its public key is the hub's own".into());
    }
    if let Some(c) = base
        .peers
        .iter()
        .find(|c| c.public_key.trim() == p.public_key)
    {
        return Err(format!(
            "its public key is that of [[peers]] `{}` (the config wins)",
            c.name
        ));
    }
    if let Some(m) = taken.iter().find(|m| m.peer.public_key == p.public_key) {
        return Err(format!(
            "its public key is that of drop-in peer `{}`",
            m.peer.name
        ));
    }
    let allowed_ips = p
        .allowed_ips
        .iter()
        .map(|a| {
            a.parse::<IpNet>()
                .map_err(|e| format!("allowed IP {a}: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let others = base
        .peers
        .iter()
        .map(|c| (format!("[[peers]] `{}`", c.name), c))
        .chain(
            taken
                .iter()
                .map(|m| (format!("drop-in peer `{}`", m.peer.name), &m.peer)),
        );
    for (who, other) in others {
        for net in &allowed_ips {
            if let Some(theirs) = other.allowed_ips.iter().find(|o| config::overlaps(o, net)) {
                return Err(format!(
                    "{net} overlaps {theirs} of {who}: WireGuard routes an address to one peer only"
                ));
            }
        }
    }
    // A name that does not resolve now would fail every tunnel start; it
    // is tried again when the file changes.
    if let Some(endpoint) = &p.endpoint {
        if endpoint.parse::<SocketAddr>().is_err() {
            config::resolve_endpoint(endpoint)?;
        }
    }
    Ok(PeerConfig {
        name: p.name.clone(),
        public_key: p.public_key.clone(),
        preshared_key_file: None,
        endpoint: p.endpoint.clone(),
        allowed_ips,
        persistent_keepalive: p.persistent_keepalive,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ntari_schemas::wireguard_peers::format_time;
    use std::time::Duration;

    const KEY_A: &str = "mJ0ZxMO5trSCDcStS5sAhW8fPSxAQXkxFF6f9F9mzUk=";
    const KEY_B: &str = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=";
    const KEY_C: &str = "ANbVsFdkUi0X/dRc6Nj0Xxwmi0ZyzzJs/rnf/gcuhVk=";

    fn config(dir: &Path) -> VpnConfig {
        let mut c: VpnConfig = toml::from_str(&format!(
            "addresses = [\"10.77.0.1/24\"]\n\
             [[peers]]\nname = \"a\"\npublic_key = \"{KEY_A}\"\nallowed_ips = [\"10.77.0.2/32\"]\n"
        ))
        .unwrap();
        c.peer_files = vec![dir.join("one.json"), dir.join("two.json")];
        c
    }

    fn peer(name: &str, key: &str, ip: &str, not_after: Option<SystemTime>) -> DropInPeer {
        DropInPeer {
            name: name.into(),
            public_key: key.into(),
            endpoint: Some("192.0.2.1:51820".into()),
            allowed_ips: vec![ip.into()],
            persistent_keepalive: Some(25),
            not_after: not_after.map(format_time),
        }
    }

    fn write(path: &Path, peers: Vec<DropInPeer>) {
        let text = WireguardPeers::new("test", peers).to_json();
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(tmp, path).unwrap();
    }

    fn names(c: &VpnConfig) -> Vec<&str> {
        c.peers.iter().map(|p| p.name.as_str()).collect()
    }

    #[test]
    fn files_add_peers_change_and_expire_them() {
        let dir = tempfile::tempdir().unwrap();
        let base = config(dir.path());
        let now = SystemTime::now();
        let mut watch = Watch::default();
        assert!(
            !watch.tick(now),
            "nothing to watch before the device is configured"
        );
        assert_eq!(
            names(&watch.effective(&base, now)),
            ["a"],
            "missing files: no peers"
        );
        assert!(!watch.tick(now));

        let soon = now + Duration::from_secs(60);
        write(
            &dir.path().join("one.json"),
            vec![
                peer("b", KEY_B, "10.77.0.3/32", None),
                peer("c", KEY_C, "10.77.0.4/32", Some(soon)),
            ],
        );
        assert!(watch.tick(now));
        assert!(!watch.tick(now), "a change is reported once");
        let effective = watch.effective(&base, now);
        assert_eq!(names(&effective), ["a", "b", "c"]);
        assert_eq!(effective.peers[1].persistent_keepalive, Some(25));
        assert!(watch.warnings().is_empty());

        assert!(watch.tick(soon), "c expired without the file changing");
        assert_eq!(names(&watch.effective(&base, soon)), ["a", "b"]);
        assert!(!watch.tick(soon + Duration::from_secs(1)));

        std::fs::remove_file(dir.path().join("one.json")).unwrap();
        assert!(watch.tick(soon));
        assert_eq!(names(&watch.effective(&base, soon)), ["a"]);
    }

    #[test]
    fn a_changed_relay_list_alone_is_a_change() {
        let dir = tempfile::tempdir().unwrap();
        let base = config(dir.path());
        let now = SystemTime::now();
        let mut watch = Watch::default();
        let one = dir.path().join("one.json");
        let peers = vec![
            peer("b", KEY_B, "10.77.0.3/32", None),
            peer("c", KEY_C, "10.77.0.4/32", None),
        ];
        write(&one, peers.clone());
        watch.effective(&base, now);
        assert!(watch.relay_members().is_empty());

        let mut doc = WireguardPeers::new("test", peers);
        doc.relay = vec!["b".into(), "c".into()];
        std::fs::write(&one, doc.to_json()).unwrap();
        assert!(watch.tick(now), "the relay list changed");
        let members = watch.relay_members();
        assert_eq!(members.len(), 2);
        assert_eq!(members[1].1, vec!["10.77.0.4/32".parse::<IpNet>().unwrap()]);

        // One member left: no relaying (a relay needs two).
        doc.relay = vec!["b".into()];
        std::fs::write(&one, doc.to_json()).unwrap();
        assert!(watch.tick(now));
        assert!(watch.relay_members().is_empty());
    }

    #[test]
    fn a_bad_file_keeps_its_peers_and_says_where() {
        let dir = tempfile::tempdir().unwrap();
        let base = config(dir.path());
        let now = SystemTime::now();
        let mut watch = Watch::default();
        let one = dir.path().join("one.json");
        write(&one, vec![peer("b", KEY_B, "10.77.0.3/32", None)]);
        assert_eq!(names(&watch.effective(&base, now)), ["a", "b"]);

        let text = WireguardPeers::new("test", vec![peer("b", KEY_B, "10.77.0.3/32", None)])
            .to_json()
            .replace(KEY_B, "nonsense");
        std::fs::write(&one, text).unwrap();
        assert!(!watch.tick(now), "the peers in effect did not change");
        let warnings = watch.warnings();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].contains(&one.display().to_string()),
            "{warnings:?}"
        );
        assert!(warnings[0].contains("peers[0].public_key"), "{warnings:?}");
        assert_eq!(names(&watch.effective(&base, now)), ["a", "b"]);
        assert_eq!(watch.detail()[0]["peers"], 1);

        write(&one, vec![]);
        assert!(watch.tick(now));
        assert!(watch.warnings().is_empty());
    }

    #[test]
    fn clashes_with_the_config_and_between_files_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let base = config(dir.path());
        let now = SystemTime::now();
        let mut watch = Watch::default();
        watch.set_own_key(KEY_C.into());
        write(
            &dir.path().join("one.json"),
            vec![
                peer("same-key", KEY_A, "10.77.0.9/32", None),
                peer("overlap", KEY_B, "10.77.0.0/30", None),
                peer("hub", KEY_C, "10.77.0.20/32", None),
            ],
        );
        write(
            &dir.path().join("two.json"),
            vec![
                peer("b", KEY_B, "10.77.0.3/32", None),
                peer("b-again", KEY_B, "10.77.0.5/32", None),
            ],
        );
        // b-again is refused by the schema (same key twice in a file).
        let effective = watch.effective(&base, now);
        assert_eq!(names(&effective), ["a"], "{:?}", watch.warnings());
        let warnings = watch.warnings().join("\n");
        assert!(
            warnings.contains("`same-key`) ignored: its public key is that of [[peers]] `a`"),
            "{warnings}"
        );
        assert!(
            warnings.contains("`overlap`) ignored: 10.77.0.0/30 overlaps 10.77.0.2/32"),
            "{warnings}"
        );
        assert!(
            warnings.contains("`hub`) ignored: its public key is the hub's own"),
            "{warnings}"
        );
        assert!(
            warnings.contains("two.json: peers[1].public_key"),
            "{warnings}"
        );

        write(
            &dir.path().join("two.json"),
            vec![peer("b", KEY_B, "10.77.0.3/32", None)],
        );
        assert!(watch.tick(now));
        let effective = watch.effective(&base, now);
        assert_eq!(names(&effective), ["a", "b"], "{:?}", watch.warnings());
        // overlap (KEY_B in one.json) is still ignored, now for its key too
        assert!(watch.warnings().iter().any(|w| w.contains("`overlap`")));
    }
}

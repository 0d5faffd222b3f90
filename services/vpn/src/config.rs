//! `/etc/ntari/services/vpn.toml`: the hub's WireGuard interface and its
//! peers.
//!
//! Invariants checked here (serde checks the types, [`VpnConfig::validate`]
//! the rest, each error naming its key): keys are 32-byte base64 as `wg`
//! prints them, no two peers share a key or a name, no two peers' allowed
//! IPs overlap (WireGuard would silently move the range to the last one),
//! endpoints carry a port.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use ntari_node::service::{ConfigIssue, Paths};
use serde::{Deserialize, Serialize};
use wireguard_control::Key;

/// Which WireGuard implementation carries the tunnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Backend {
    /// The kernel's where the module exists, else boringtun.
    Auto,
    /// The kernel's WireGuard, over netlink: no process at all.
    Kernel,
    /// boringtun, built into ntari-vpn, run as its own supervised process.
    Boringtun,
    /// wireguard-go (Debian/Alpine package `wireguard-go`).
    WireguardGo,
}

impl Backend {
    /// `Auto` made concrete for this machine.
    pub fn resolve(self) -> Backend {
        match self {
            Backend::Auto if kernel_has_wireguard() => Backend::Kernel,
            Backend::Auto => Backend::Boringtun,
            other => other,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Backend::Auto => "auto",
            Backend::Kernel => "kernel",
            Backend::Boringtun => "boringtun",
            Backend::WireguardGo => "wireguard-go",
        }
    }
}

/// The module is loaded (or built in). Where it is a loadable module not
/// yet loaded, `modprobe wireguard` at boot makes `auto` pick it.
pub fn kernel_has_wireguard() -> bool {
    Path::new("/sys/module/wireguard").exists()
}

/// The service config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VpnConfig {
    /// The WireGuard interface the node creates and owns (`wg show <it>`).
    #[serde(default = "default_interface")]
    pub interface: String,
    #[serde(default = "default_backend")]
    pub backend: Backend,
    /// The hub's addresses inside the tunnel, with their prefix
    /// (`10.77.0.1/24`): the prefix routes the whole tunnel network here.
    pub addresses: Vec<IpNet>,
    #[serde(default = "default_listen_port")]
    pub listen_port: u16,
    /// 1420 fits WireGuard's 80 bytes of overhead into a 1500-byte path.
    #[serde(default = "default_mtu")]
    pub mtu: u32,
    /// Created on first configure (mode 0600) when missing; relative paths
    /// are inside the state dir. Default `<state_dir>/private.key`.
    #[serde(default)]
    pub private_key_file: Option<PathBuf>,
    #[serde(default)]
    pub peers: Vec<PeerConfig>,
    /// Drop-in files of more peers (libs/ntari-schemas `wireguard_peers`),
    /// written by other services: ntari-federation's
    /// `/run/ntari/federation/wireguard-peers.json`. Re-read when they
    /// change; a missing one adds no peer. Absolute paths.
    #[serde(default)]
    pub peer_files: Vec<PathBuf>,
}

/// One peer: another hub, a member's machine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    /// Who it is, for status and metrics (`riverside-coop`).
    pub name: String,
    /// Base64, as `wg pubkey` prints it.
    pub public_key: String,
    /// A file holding a base64 preshared key (`wg genpsk`), for
    /// post-quantum resistance; relative paths are inside the state dir.
    #[serde(default)]
    pub preshared_key_file: Option<PathBuf>,
    /// `host:port` where the peer listens; leave out for a peer that
    /// connects to us (a laptop behind NAT).
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Addresses routed to this peer and accepted from it.
    pub allowed_ips: Vec<IpNet>,
    /// Seconds between keepalives, for a peer behind NAT (25 is usual).
    #[serde(default)]
    pub persistent_keepalive: Option<u16>,
}

fn default_interface() -> String {
    "wg0".into()
}
fn default_backend() -> Backend {
    Backend::Auto
}
fn default_listen_port() -> u16 {
    51820
}
fn default_mtu() -> u32 {
    1420
}

impl VpnConfig {
    /// The private key file, made absolute.
    pub fn private_key_path(&self, paths: &Paths) -> PathBuf {
        let file = self
            .private_key_file
            .clone()
            .unwrap_or_else(|| PathBuf::from("private.key"));
        paths.state_dir.join(file) // join keeps an absolute `file` as it is
    }

    /// Everything serde cannot check.
    pub fn validate(&self) -> Result<(), ConfigIssue> {
        ntari_node::validate::interface_name(&self.interface)
            .map_err(|e| ConfigIssue::new("interface", e))?;
        if self.addresses.is_empty() {
            return Err(ConfigIssue::new(
                "addresses",
                "give the hub at least one address inside the tunnel, e.g. [\"10.77.0.1/24\"]",
            ));
        }
        if self.listen_port == 0 {
            return Err(ConfigIssue::new(
                "listen_port",
                "0 would pick a random port peers cannot know; use 51820 or another fixed port",
            ));
        }
        if !(1280..=65535).contains(&self.mtu) {
            return Err(ConfigIssue::new(
                "mtu",
                format!(
                    "{} is outside 1280..=65535 (1420 suits a 1500-byte path)",
                    self.mtu
                ),
            ));
        }
        for (i, file) in self.peer_files.iter().enumerate() {
            if !file.is_absolute() {
                return Err(ConfigIssue::new(
                    format!("peer_files[{i}]"),
                    format!(
                        "`{}` is relative; give the whole path, e.g. /run/ntari/federation/wireguard-peers.json",
                        file.display()
                    ),
                ));
            }
            if self.peer_files[..i].contains(file) {
                return Err(ConfigIssue::new(
                    format!("peer_files[{i}]"),
                    format!("`{}` is listed twice", file.display()),
                ));
            }
        }
        for (i, peer) in self.peers.iter().enumerate() {
            let key = |field: &str| format!("peers[{i}].{field}");
            if peer.name.trim().is_empty() || peer.name.len() > 64 {
                return Err(ConfigIssue::new(
                    key("name"),
                    "give each peer a name of 1 to 64 characters",
                ));
            }
            if let Some(j) = self.peers[..i].iter().position(|p| p.name == peer.name) {
                return Err(ConfigIssue::new(
                    key("name"),
                    format!("`{}` is also the name of peers[{j}]", peer.name),
                ));
            }
            parse_key(&peer.public_key).map_err(|e| ConfigIssue::new(key("public_key"), e))?;
            if let Some(j) = self.peers[..i]
                .iter()
                .position(|p| p.public_key.trim() == peer.public_key.trim())
            {
                return Err(ConfigIssue::new(
                    key("public_key"),
                    format!("peers[{j}] has the same key; each peer needs its own"),
                ));
            }
            if let Some(endpoint) = &peer.endpoint {
                check_endpoint(endpoint).map_err(|e| ConfigIssue::new(key("endpoint"), e))?;
            }
            if peer.allowed_ips.is_empty() {
                return Err(ConfigIssue::new(
                    key("allowed_ips"),
                    "a peer without allowed IPs can send nothing; give its tunnel address, e.g. [\"10.77.0.2/32\"]",
                ));
            }
            for (k, net) in peer.allowed_ips.iter().enumerate() {
                if net.trunc() != *net {
                    return Err(ConfigIssue::new(
                        format!("peers[{i}].allowed_ips[{k}]"),
                        format!("{net} has host bits set; did you mean {}?", net.trunc()),
                    ));
                }
                for (j, other) in self.peers[..i].iter().enumerate() {
                    if let Some(theirs) = other.allowed_ips.iter().find(|o| overlaps(o, net)) {
                        return Err(ConfigIssue::new(
                            format!("peers[{i}].allowed_ips[{k}]"),
                            format!(
                                "{net} overlaps {theirs} of peers[{j}] (`{}`): WireGuard routes an address to one peer only",
                                other.name
                            ),
                        ));
                    }
                }
            }
            if peer.persistent_keepalive == Some(0) {
                return Err(ConfigIssue::new(
                    key("persistent_keepalive"),
                    "leave it out to turn keepalives off (0 is not an interval)",
                ));
            }
        }
        Ok(())
    }

    /// That no peer has the hub's own key (a copy-paste slip that makes
    /// the tunnel silently useless).
    pub fn check_own_key(&self, own_public: &Key) -> Result<(), ConfigIssue> {
        let own = own_public.to_base64();
        match self.peers.iter().position(|p| p.public_key.trim() == own) {
            Some(i) => Err(ConfigIssue::new(
                format!("peers[{i}].public_key"),
                "this is the hub's own public key; give the peer's key (`wg pubkey` on the peer)",
            )),
            None => Ok(()),
        }
    }
}

/// Whether two ranges share an address.
pub fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// A base64 WireGuard key.
pub fn parse_key(text: &str) -> Result<Key, String> {
    Key::from_base64(text.trim()).map_err(|_| {
        format!(
            "`{}` is not a WireGuard key (44 characters of base64, as `wg pubkey` prints)",
            text.trim()
        )
    })
}

/// `host:port` with a port.
fn check_endpoint(endpoint: &str) -> Result<(), String> {
    if endpoint.parse::<SocketAddr>().is_ok() {
        return Ok(());
    }
    let (host, port) = endpoint.rsplit_once(':').ok_or_else(|| {
        format!("`{endpoint}` needs a port: host:port, e.g. hub.example.org:51820")
    })?;
    port.parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("`{port}` in `{endpoint}` is not a port"))?;
    ntari_node::validate::dns_name(host)
        .map_err(|e| format!("`{host}` in `{endpoint}` is neither an address nor a name: {e}"))
}

/// The endpoint as an address, resolving a name now.
pub fn resolve_endpoint(endpoint: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = endpoint.parse() {
        return Ok(addr);
    }
    endpoint
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {endpoint}: {e}"))?
        .next()
        .ok_or_else(|| format!("{endpoint} resolves to no address"))
}

/// Reads a base64 key file (`wg genkey` output), refusing one others can read.
pub fn read_key_file(path: &Path) -> Result<Key, String> {
    use std::os::unix::fs::PermissionsExt;
    let meta =
        std::fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(format!(
            "{} can be read by others; `chmod 600` it (a leaked key lets anyone be this hub)",
            path.display()
        ));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    parse_key(&text).map_err(|_| {
        format!(
            "{} does not hold a WireGuard key (`wg genkey` makes one)",
            path.display()
        )
    })
}

/// The hub's private key, created (mode 0600, atomically) when the file
/// does not exist yet. Returns it and whether it was created.
pub fn load_or_create_private_key(path: &Path) -> Result<(Key, bool), String> {
    if path.exists() {
        return read_key_file(path).map(|k| (k, false));
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let key = Key::generate_private();
    ntari_node::fsutil::write_atomic(path, format!("{}\n", key.to_base64()).as_bytes(), 0o600)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok((key, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_A: &str = "mJ0ZxMO5trSCDcStS5sAhW8fPSxAQXkxFF6f9F9mzUk=";
    const KEY_B: &str = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=";

    fn parse(text: &str) -> VpnConfig {
        toml::from_str(text).unwrap()
    }

    fn base() -> String {
        format!(
            "addresses = [\"10.77.0.1/24\"]\n\
             [[peers]]\nname = \"a\"\npublic_key = \"{KEY_A}\"\nallowed_ips = [\"10.77.0.2/32\"]\n\
             [[peers]]\nname = \"b\"\npublic_key = \"{KEY_B}\"\nendpoint = \"192.0.2.1:51820\"\nallowed_ips = [\"10.77.0.3/32\", \"10.88.0.0/16\"]\n"
        )
    }

    fn issue(text: &str) -> ConfigIssue {
        parse(text).validate().unwrap_err()
    }

    #[test]
    fn defaults_and_a_good_config() {
        let c = parse(&base());
        c.validate().unwrap();
        assert_eq!(c.interface, "wg0");
        assert_eq!(c.listen_port, 51820);
        assert_eq!(c.mtu, 1420);
        assert_eq!(c.backend, Backend::Auto);
        assert!(c.peer_files.is_empty());
        let paths = Paths {
            config: "/x".into(),
            state_dir: "/var/lib/ntari/vpn".into(),
            run_dir: "/run".into(),
        };
        assert_eq!(
            c.private_key_path(&paths),
            PathBuf::from("/var/lib/ntari/vpn/private.key")
        );
    }

    #[test]
    fn each_mistake_names_its_key() {
        let cases = [
            (
                base().replace(KEY_B, "not-a-key"),
                "peers[1].public_key",
                "not a WireGuard key",
            ),
            (
                base().replace(KEY_B, KEY_A),
                "peers[1].public_key",
                "same key",
            ),
            (
                base().replace("name = \"b\"", "name = \"a\""),
                "peers[1].name",
                "also the name",
            ),
            (
                base().replace("10.88.0.0/16", "10.77.0.0/30"),
                "peers[1].allowed_ips[1]",
                "overlaps 10.77.0.2/32",
            ),
            (
                base().replace("10.88.0.0/16", "10.88.0.1/16"),
                "peers[1].allowed_ips[1]",
                "host bits",
            ),
            (
                base().replace("192.0.2.1:51820", "192.0.2.1"),
                "peers[1].endpoint",
                "port",
            ),
            (
                base().replace("192.0.2.1:51820", "hub.example.org:0"),
                "peers[1].endpoint",
                "not a port",
            ),
            (
                base().replace("addresses = [\"10.77.0.1/24\"]", "addresses = []"),
                "addresses",
                "at least one",
            ),
            (
                format!("interface = \"this-name-is-too-long\"\n{}", base()),
                "interface",
                "",
            ),
            (
                format!("listen_port = 0\n{}", base()),
                "listen_port",
                "fixed port",
            ),
            (format!("mtu = 100\n{}", base()), "mtu", "1280"),
            (
                format!("peer_files = [\"peers.json\"]\n{}", base()),
                "peer_files[0]",
                "relative",
            ),
            (
                format!("peer_files = [\"/a.json\", \"/a.json\"]\n{}", base()),
                "peer_files[1]",
                "twice",
            ),
        ];
        for (text, key, words) in cases {
            let e = issue(&text);
            assert_eq!(e.key, key, "{e}");
            assert!(e.message.contains(words), "{e}");
        }
        assert!(check_endpoint("hub.example.org:51820").is_ok());
        assert!(check_endpoint("[fd00::1]:51820").is_ok());
    }

    #[test]
    fn own_key_as_a_peer_is_refused() {
        let c = parse(&base());
        let own = parse_key(KEY_B).unwrap();
        let e = c.check_own_key(&own).unwrap_err();
        assert_eq!(e.key, "peers[1].public_key");
        c.check_own_key(&parse_key(KEY_A).unwrap().get_public())
            .unwrap();
    }

    #[test]
    fn private_key_is_created_once_private_and_refused_when_readable() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/private.key");
        let (key, created) = load_or_create_private_key(&path).unwrap();
        assert!(created);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let (again, created) = load_or_create_private_key(&path).unwrap();
        assert!(!created);
        assert_eq!(again.to_base64(), key.to_base64());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(read_key_file(&path).unwrap_err().contains("chmod 600"));
        std::fs::write(&path, "garbage").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(read_key_file(&path).unwrap_err().contains("wg genkey"));
    }
}

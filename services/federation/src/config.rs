//! `/etc/ntari/services/federation.toml`: which cooperative this hub is,
//! where its agreements are, and which WireGuard interface the federation
//! traffic may use.
//!
//! Invariants checked here (each error naming its key): `coop` is a ROS
//! name token (it becomes `/remote/<coop>/…` on the partner's graph), the
//! interface name fits Linux's 15 bytes, the sample limit is sane.

use std::net::SocketAddr;
use std::path::PathBuf;

use ntari_node::service::ConfigIssue;
use serde::{Deserialize, Serialize};

/// Largest sample forwarded in either direction unless configured.
pub const DEFAULT_MAX_SAMPLE_BYTES: usize = 1024 * 1024;

/// The service config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FederationConfig {
    /// This cooperative's name, exactly as its party entry in every
    /// agreement spells it.
    pub coop: String,
    /// The co-signed agreements, `<id>.yaml`, and offline revocations,
    /// `<id>.revoked.yaml`. Watched: a new, changed or removed file takes
    /// effect within a second, without a reload.
    #[serde(default = "default_agreements_dir")]
    pub agreements_dir: PathBuf,
    /// ntari-vpn's WireGuard interface. The federation domain's DDS
    /// participant binds only this interface and reaches each partner at
    /// its tunnel address (unicast: WireGuard has no multicast).
    pub interface: String,
    /// This node's key: each agreement's party for `coop` must carry its
    /// did:key, or the agreement is refused (signed for another machine).
    #[serde(default = "default_node_key")]
    pub node_key: PathBuf,
    /// Samples bigger than this are dropped and counted, both ways.
    #[serde(default = "default_max_sample_bytes")]
    pub max_sample_bytes: usize,
    /// Seconds a partner's bridge may be unseen (tunnel down, hub off)
    /// before its proxy nodes leave this graph, so that nothing keeps
    /// showing its last health as current. They come back with it.
    #[serde(default = "default_partner_timeout")]
    pub partner_timeout: u64,
    /// Where the join endpoint listens while an invite is pending (and
    /// only then): `ntari-admin federation invite` puts this port, at the
    /// address it is given, into the code.
    #[serde(default = "default_join_listen")]
    pub join_listen: SocketAddr,
}

fn default_join_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], crate::invite::DEFAULT_JOIN_PORT))
}

/// Three of the federation domain's 20 s leases.
pub const DEFAULT_PARTNER_TIMEOUT: u64 = 60;

fn default_partner_timeout() -> u64 {
    DEFAULT_PARTNER_TIMEOUT
}

fn default_agreements_dir() -> PathBuf {
    PathBuf::from("/etc/ntari/federation")
}

fn default_node_key() -> PathBuf {
    PathBuf::from(ntari_node::signing::DEFAULT_KEY_PATH)
}

fn default_max_sample_bytes() -> usize {
    DEFAULT_MAX_SAMPLE_BYTES
}

/// A ROS name token: what `/remote/<coop>/` can hold.
pub fn is_coop_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name.len() <= 32
}

impl FederationConfig {
    pub fn validate(&self) -> Result<(), ConfigIssue> {
        if !is_coop_name(&self.coop) {
            return Err(ConfigIssue::new(
                "coop",
                format!(
                    "{:?} is not a valid cooperative name: use lowercase letters, digits and '_', starting with a letter, at most 32 characters (it becomes /remote/<coop>/ on partners' graphs)",
                    self.coop
                ),
            ));
        }
        if self.interface.is_empty()
            || self.interface.len() > 15
            || self.interface.contains(['/', ' '])
        {
            return Err(ConfigIssue::new(
                "interface",
                format!(
                    "{:?} is not an interface name: give ntari-vpn's interface (`interface` in vpn.toml), at most 15 characters",
                    self.interface
                ),
            ));
        }
        if !(1024..=64 * 1024 * 1024).contains(&self.max_sample_bytes) {
            return Err(ConfigIssue::new(
                "max_sample_bytes",
                "must be between 1024 and 67108864",
            ));
        }
        if !(1..=86_400).contains(&self.partner_timeout) {
            return Err(ConfigIssue::new(
                "partner_timeout",
                "must be between 1 and 86400 seconds (default 60)",
            ));
        }
        if self.agreements_dir.as_os_str().is_empty() {
            return Err(ConfigIssue::new("agreements_dir", "must not be empty"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> FederationConfig {
        toml::from_str(
            r#"
            coop = "riverside"
            interface = "wg-coop"
            "#,
        )
        .expect("parses")
    }

    #[test]
    fn defaults_are_the_production_paths() {
        let c = config();
        assert_eq!(c.agreements_dir, PathBuf::from("/etc/ntari/federation"));
        assert_eq!(c.node_key, PathBuf::from("/etc/ntari/keys/node.ed25519"));
        assert_eq!(c.max_sample_bytes, DEFAULT_MAX_SAMPLE_BYTES);
        assert_eq!(c.partner_timeout, DEFAULT_PARTNER_TIMEOUT);
        assert!(c.validate().is_ok());
    }

    #[test]
    fn bad_values_name_their_key() {
        for (edit, key) in [
            (
                Box::new(|c: &mut FederationConfig| c.coop = "River-Side".into())
                    as Box<dyn Fn(&mut FederationConfig)>,
                "coop",
            ),
            (Box::new(|c| c.coop = String::new()), "coop"),
            (
                Box::new(|c| c.interface = "a-very-long-interface".into()),
                "interface",
            ),
            (Box::new(|c| c.max_sample_bytes = 10), "max_sample_bytes"),
            (Box::new(|c| c.partner_timeout = 0), "partner_timeout"),
        ] {
            let mut c = config();
            edit(&mut c);
            assert_eq!(c.validate().expect_err("refused").key, key);
        }
    }

    #[test]
    fn unknown_keys_are_refused() {
        let e = toml::from_str::<FederationConfig>(
            "coop = \"a\"\ninterface = \"wg0\"\nintreface = 1\n",
        )
        .expect_err("typo refused");
        assert!(e.to_string().contains("intreface"), "{e}");
    }
}

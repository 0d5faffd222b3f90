//! `/ntari/vpn/peers`: the WireGuard peers of the hub's tunnel and how each
//! is doing, for people (`ros2 topic echo`) and for federation, which needs
//! to know which partner's tunnel is up.
//!
//! Published by ntari-vpn, reliable and transient-local with a history of
//! one (`qos::LATCHED`): every message is the whole table, so a late
//! subscriber has the current state at once. It is published when the
//! table changes (a peer added or removed, a new endpoint, a handshake, a
//! peer going stale), not on every probe; transfer counters are as of
//! `as_of`. Example (one line on the wire):
//!
//! ```json
//! {"version":1,"interface":"wg0","public_key":"hJ3…=","listen_port":51820,"as_of":1764590000,
//!  "peers":[{"name":"riverside","public_key":"xTI…=","endpoint":"192.0.2.7:51820",
//!   "allowed_ips":["10.77.0.2/32"],"latest_handshake":1764589950,"handshake_age_s":50,
//!   "rx_bytes":18200,"tx_bytes":9400,"stale":false}]}
//! ```
//!
//! Never carries a private or preshared key.

use serde::{Deserialize, Serialize};

use crate::SchemaError;

/// The ROS topic.
pub const TOPIC: &str = "/ntari/vpn/peers";

/// The version this code reads and writes.
pub const VERSION: u32 = 1;

/// WireGuard's REJECT_AFTER_TIME: a session older than this is dead, so a
/// peer whose last handshake is older is `stale`.
pub const STALE_AFTER_S: u64 = 180;

/// The whole table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerTable {
    pub version: u32,
    /// The WireGuard interface (`wg show <interface>`).
    pub interface: String,
    /// The hub's own public key (base64), to give to its peers.
    pub public_key: Option<String>,
    pub listen_port: Option<u16>,
    /// Unix time the counters were read.
    pub as_of: u64,
    pub peers: Vec<Peer>,
}

/// One peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Peer {
    /// The name the config gives it (a cooperative, a member's laptop).
    pub name: String,
    /// Base64, as `wg show` prints it.
    pub public_key: String,
    /// Where its packets come from now (`host:port`); None before the first
    /// packet from a peer configured without an endpoint.
    pub endpoint: Option<String>,
    pub allowed_ips: Vec<String>,
    /// Unix time of the last handshake; None: never.
    pub latest_handshake: Option<u64>,
    /// Seconds from the last handshake to `as_of`.
    pub handshake_age_s: Option<u64>,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    /// No handshake for [`STALE_AFTER_S`] (or never): no session.
    pub stale: bool,
}

impl Peer {
    /// Whether a peer whose last handshake was at `latest` is stale `now`.
    pub fn is_stale(latest: Option<u64>, now: u64) -> bool {
        latest.is_none_or(|t| now.saturating_sub(t) > STALE_AFTER_S)
    }
}

impl PeerTable {
    pub fn to_json(&self) -> String {
        // Plain data with string keys: serialising cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Parses and checks a received table; refuses versions it does not know.
    pub fn parse(json: &str) -> Result<PeerTable, SchemaError> {
        #[derive(Deserialize)]
        struct Versioned {
            version: Option<u32>,
        }
        let versioned: Versioned = crate::parse(json)?;
        match versioned.version {
            Some(VERSION) => crate::parse(json),
            Some(other) => Err(SchemaError::new(
                "version",
                format!("version {other} is not understood (this reader knows {VERSION}); update the reader"),
            )),
            None => Err(SchemaError::new("version", "missing")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> PeerTable {
        PeerTable {
            version: VERSION,
            interface: "wg0".into(),
            public_key: Some("a".repeat(43) + "="),
            listen_port: Some(51820),
            as_of: 1_000,
            peers: vec![Peer {
                name: "riverside".into(),
                public_key: "b".repeat(43) + "=",
                endpoint: Some("192.0.2.7:51820".into()),
                allowed_ips: vec!["10.77.0.2/32".into()],
                latest_handshake: Some(950),
                handshake_age_s: Some(50),
                rx_bytes: 1,
                tx_bytes: 2,
                stale: false,
            }],
        }
    }

    #[test]
    fn round_trips_and_refuses_other_versions() {
        let t = table();
        assert_eq!(PeerTable::parse(&t.to_json()).unwrap(), t);
        let v2 = t.to_json().replace("\"version\":1", "\"version\":2");
        let err = PeerTable::parse(&v2).unwrap_err();
        assert_eq!(err.path, "version");
        assert!(err.message.contains("version 2"), "{err}");
        let err = PeerTable::parse("{\"interface\":\"wg0\"}").unwrap_err();
        assert_eq!(err.to_string(), "version: missing");
        let bad = t.to_json().replace("\"rx_bytes\":1", "\"rx_bytes\":\"x\"");
        assert!(PeerTable::parse(&bad)
            .unwrap_err()
            .path
            .contains("rx_bytes"));
    }

    #[test]
    fn staleness_follows_reject_after_time() {
        assert!(Peer::is_stale(None, 10));
        assert!(!Peer::is_stale(Some(1_000), 1_000 + STALE_AFTER_S));
        assert!(Peer::is_stale(Some(1_000), 1_001 + STALE_AFTER_S));
    }
}

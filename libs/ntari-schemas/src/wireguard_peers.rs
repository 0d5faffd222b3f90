//! The WireGuard peers drop-in file ntari-vpn reads; see docs/schemas.md.
//!
//! Not a graph topic: a file another service writes (atomically: temporary
//! file, then rename) and ntari-vpn's `peer_files` names, so peers can come
//! from somewhere other than the admin's `vpn.toml` (ntari-federation
//! writes `/run/ntari/federation/wireguard-peers.json` from the agreements
//! in force). ntari-vpn re-reads it when it changes and drops a peer whose
//! `not_after` has passed. Example:
//!
//! ```json
//! {"version":1,"source":"ntari-federation",
//!  "peers":[{"name":"federation:riverside-hillside","public_key":"xTI…=",
//!    "endpoint":"192.0.2.1:51820","allowed_ips":["10.77.0.1/32"],
//!    "persistent_keepalive":25,"not_after":"2027-12-01T00:00:00Z"}]}
//! ```
//!
//! Never carries a private or preshared key.

use std::net::{IpAddr, SocketAddr};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::SchemaError;

/// The version this code reads and writes.
pub const VERSION: u32 = 1;

/// Where ntari-federation writes its drop-in.
pub const FEDERATION_FILE: &str = "/run/ntari/federation/wireguard-peers.json";

/// Longest peer name (as `vpn.toml`'s `[[peers]]` allow).
pub const MAX_NAME_LEN: usize = 64;

/// The whole file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireguardPeers {
    pub version: u32,
    /// Who wrote the file (`ntari-federation`), for logs and warnings.
    pub source: String,
    pub peers: Vec<DropInPeer>,
    /// Names of peers of this file between which the hub forwards traffic
    /// (a hub relaying for members that cannot reach each other; each
    /// member's allowed IPs to every other's, nothing else). Fewer than
    /// two relays nothing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub relay: Vec<String>,
}

/// One peer, as a `[[peers]]` table of `vpn.toml` gives it (without a
/// preshared key), plus when it stops being one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DropInPeer {
    /// Who it is, for status and metrics (`federation:riverside-hillside`).
    pub name: String,
    /// Base64 of the 32-byte key, as `wg pubkey` prints it.
    pub public_key: String,
    /// `host:port` where the peer listens; None for one that connects to us.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// CIDRs routed to the peer and accepted from it, no host bits set.
    pub allowed_ips: Vec<String>,
    /// Seconds between keepalives; None: off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistent_keepalive: Option<u16>,
    /// RFC 3339 UTC (`2027-12-01T00:00:00Z`): from then on the peer is
    /// dropped, whether or not the file is rewritten. None: no end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<String>,
}

impl WireguardPeers {
    /// A document of the current version, for the writer.
    pub fn new(source: impl Into<String>, peers: Vec<DropInPeer>) -> Self {
        WireguardPeers {
            version: VERSION,
            source: source.into(),
            peers,
            relay: Vec::new(),
        }
    }

    /// The file's text: indented, for people who `cat` it, with a final
    /// newline.
    pub fn to_json(&self) -> String {
        // Plain data with string keys: serialising cannot fail.
        let mut text = serde_json::to_string_pretty(self).unwrap_or_default();
        text.push('\n');
        text
    }

    /// Reads and checks a file's text; refuses versions it does not know.
    pub fn parse(json: &str) -> Result<WireguardPeers, SchemaError> {
        // The version first, so a future format gets a version error
        // rather than a confusing one about some field.
        #[derive(Deserialize)]
        struct Versioned {
            version: Option<u32>,
        }
        let versioned: Versioned = crate::parse(json)?;
        let document: WireguardPeers = match versioned.version {
            Some(VERSION) => crate::parse(json)?,
            Some(other) => {
                return Err(SchemaError::new(
                    "version",
                    format!("version {other} is not understood (this reader knows {VERSION}); update the reader"),
                ))
            }
            None => return Err(SchemaError::new("version", "missing")),
        };
        document.validate()?;
        Ok(document)
    }

    /// What serde cannot check, each error naming its JSON path: keys,
    /// endpoints, CIDRs, times, and no key twice (WireGuard has one peer
    /// per key; the second would silently replace the first).
    pub fn validate(&self) -> Result<(), SchemaError> {
        if self.version != VERSION {
            return Err(SchemaError::new("version", format!("must be {VERSION}")));
        }
        if self.source.trim().is_empty() {
            return Err(SchemaError::new(
                "source",
                "name the writer, e.g. \"ntari-federation\"",
            ));
        }
        for (i, peer) in self.peers.iter().enumerate() {
            peer.validate().map_err(|(field, message)| {
                SchemaError::new(format!("peers[{i}].{field}"), message)
            })?;
            if let Some(j) = self.peers[..i]
                .iter()
                .position(|p| p.public_key == peer.public_key)
            {
                return Err(SchemaError::new(
                    format!("peers[{i}].public_key"),
                    format!("peers[{j}] has the same key; each peer needs its own"),
                ));
            }
            for (k, net) in peer.allowed_ips.iter().enumerate() {
                // Checked by peer.validate() above.
                let Ok(mine) = check_cidr(net) else { continue };
                for (j, other) in self.peers[..i].iter().enumerate() {
                    let theirs = other
                        .allowed_ips
                        .iter()
                        .find(|o| check_cidr(o).is_ok_and(|o| o.overlaps(&mine)));
                    if let Some(theirs) = theirs {
                        return Err(SchemaError::new(
                            format!("peers[{i}].allowed_ips[{k}]"),
                            format!("{net} overlaps {theirs} of peers[{j}]: WireGuard routes an address to one peer only"),
                        ));
                    }
                }
            }
        }
        for (i, name) in self.relay.iter().enumerate() {
            if !self.peers.iter().any(|p| &p.name == name) {
                return Err(SchemaError::new(
                    format!("relay[{i}]"),
                    format!("`{name}` is not the name of a peer in this file"),
                ));
            }
            if self.relay[..i].contains(name) {
                return Err(SchemaError::new(
                    format!("relay[{i}]"),
                    format!("`{name}` twice"),
                ));
            }
        }
        Ok(())
    }
}

impl DropInPeer {
    /// The field at fault (relative to the peer) and what is wrong.
    fn validate(&self) -> Result<(), (String, String)> {
        let err = |field: &str, message: String| (field.to_string(), message);
        if self.name.trim().is_empty() || self.name.len() > MAX_NAME_LEN {
            return Err(err(
                "name",
                format!("give the peer a name of 1 to {MAX_NAME_LEN} characters"),
            ));
        }
        decode_key(&self.public_key).map_err(|e| err("public_key", e))?;
        if let Some(endpoint) = &self.endpoint {
            check_endpoint(endpoint).map_err(|e| err("endpoint", e))?;
        }
        if self.allowed_ips.is_empty() {
            return Err(err(
                "allowed_ips",
                "a peer without allowed IPs can send nothing; give its tunnel address, e.g. [\"10.77.0.2/32\"]".into(),
            ));
        }
        for (k, net) in self.allowed_ips.iter().enumerate() {
            check_cidr(net).map_err(|e| err(&format!("allowed_ips[{k}]"), e))?;
        }
        if self.persistent_keepalive == Some(0) {
            return Err(err(
                "persistent_keepalive",
                "leave it out to turn keepalives off (0 is not an interval)".into(),
            ));
        }
        if let Some(text) = &self.not_after {
            parse_time(text).map_err(|e| err("not_after", e))?;
        }
        Ok(())
    }

    /// When the peer stops being one; None: never (or an unchecked peer
    /// whose `not_after` does not parse, which [`WireguardPeers::parse`]
    /// refuses).
    pub fn expires_at(&self) -> Option<SystemTime> {
        self.not_after.as_deref().and_then(|t| parse_time(t).ok())
    }

    /// Whether `not_after` has passed at `now`.
    pub fn expired(&self, now: SystemTime) -> bool {
        self.expires_at().is_some_and(|t| now >= t)
    }
}

/// An RFC 3339 time (`2027-12-01T00:00:00Z`).
pub fn parse_time(text: &str) -> Result<SystemTime, String> {
    humantime::parse_rfc3339_weak(text)
        .ok()
        .filter(|_| text.ends_with('Z') || text.ends_with('z'))
        .ok_or_else(|| format!("`{text}` is not an RFC 3339 UTC time like 2027-12-01T00:00:00Z"))
}

/// `t` as `not_after` takes it (RFC 3339 UTC, whole seconds).
pub fn format_time(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// A WireGuard key: standard base64 of exactly 32 bytes (44 characters,
/// one `=`), as `wg pubkey` prints it.
pub fn decode_key(text: &str) -> Result<[u8; 32], String> {
    let bad = || {
        format!("`{text}` is not a WireGuard key (44 characters of base64, as `wg pubkey` prints)")
    };
    let bytes = text.as_bytes();
    if bytes.len() != 44 || bytes[43] != b'=' {
        return Err(bad());
    }
    let mut bits: u32 = 0;
    let mut nbits = 0;
    let mut out = [0u8; 32];
    let mut n = 0;
    for &c in &bytes[..43] {
        let v = BASE64.iter().position(|&b| b == c).ok_or_else(bad)? as u32;
        bits = (bits << 6) | v;
        nbits += 6;
        if nbits >= 8 {
            nbits -= 8;
            out[n] = (bits >> nbits) as u8;
            n += 1;
            bits &= (1 << nbits) - 1;
        }
    }
    // 43 characters carry 258 bits: the 2 left over must be zero, or the
    // text is not the one encoding of any key.
    if bits != 0 {
        return Err(bad());
    }
    Ok(out)
}

/// `host:port`: an address (`[fd00::1]:51820`) or a DNS name, and a port
/// (agreements' party endpoints follow the same rule).
pub fn check_endpoint(endpoint: &str) -> Result<(), String> {
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
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    let name = host.strip_suffix('.').unwrap_or(host);
    if name.is_empty() || name.len() > 253 || !name.split('.').all(label_ok) {
        return Err(format!(
            "`{host}` in `{endpoint}` is neither an address nor a host name"
        ));
    }
    Ok(())
}

/// A parsed CIDR: address bits, prefix length, and whether it is IPv6.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cidr {
    bits: u128,
    prefix: u32,
    v6: bool,
}

impl Cidr {
    fn overlaps(&self, other: &Cidr) -> bool {
        let width = if self.v6 { 128 } else { 32 };
        let shorter = self.prefix.min(other.prefix);
        let mask = |bits: u128| {
            if shorter == 0 {
                0
            } else {
                bits >> (width - shorter)
            }
        };
        self.v6 == other.v6 && mask(self.bits) == mask(other.bits)
    }
}

/// `address/prefix` with no host bits set.
fn check_cidr(text: &str) -> Result<Cidr, String> {
    let bad = || format!("`{text}` is not a CIDR like 10.77.0.2/32");
    let (addr, prefix) = text.split_once('/').ok_or_else(bad)?;
    let addr: IpAddr = addr.parse().map_err(|_| bad())?;
    // u8::from_str alone would take "+5".
    if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let prefix: u32 = prefix.parse().map_err(|_| bad())?;
    let (bits, width) = match addr {
        IpAddr::V4(a) => (u128::from(u32::from(a)), 32),
        IpAddr::V6(a) => (u128::from(a), 128),
    };
    if prefix > width {
        return Err(format!("`{text}`: the prefix is at most {width}"));
    }
    // /0 of IPv6 would shift by 128: every bit is then a host bit.
    let host_mask = 1u128
        .checked_shl(width - prefix)
        .map_or(u128::MAX, |b| b - 1);
    if bits & host_mask != 0 {
        return Err(format!("`{text}` has host bits set"));
    }
    Ok(Cidr {
        bits,
        prefix,
        v6: width == 128,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    const KEY_A: &str = "mJ0ZxMO5trSCDcStS5sAhW8fPSxAQXkxFF6f9F9mzUk=";
    const KEY_B: &str = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=";

    fn peer(name: &str, key: &str) -> DropInPeer {
        DropInPeer {
            name: name.into(),
            public_key: key.into(),
            endpoint: Some("192.0.2.1:51820".into()),
            allowed_ips: vec!["10.77.0.1/32".into()],
            persistent_keepalive: Some(25),
            not_after: Some("2027-12-01T00:00:00Z".into()),
        }
    }

    #[test]
    fn round_trips_and_reads_the_documented_example() {
        let doc = WireguardPeers::new(
            "ntari-federation",
            vec![
                peer("federation:riverside-hillside", KEY_A),
                DropInPeer {
                    endpoint: None,
                    persistent_keepalive: None,
                    not_after: None,
                    allowed_ips: vec!["fd00:77::/64".into()],
                    ..peer("laptop", KEY_B)
                },
            ],
        );
        let json = doc.to_json();
        assert!(json.ends_with('\n'));
        assert_eq!(WireguardPeers::parse(&json).unwrap(), doc);
        let example = format!(
            r#"{{"version":1,"source":"ntari-federation",
              "peers":[{{"name":"federation:riverside-hillside","public_key":"{KEY_A}",
                "endpoint":null,"allowed_ips":["10.77.0.1/32"],
                "persistent_keepalive":25,"not_after":"2027-12-01T00:00:00Z"}}]}}"#
        );
        let parsed = WireguardPeers::parse(&example).unwrap();
        assert_eq!(parsed.peers[0].endpoint, None);
        let expiry = UNIX_EPOCH + Duration::from_secs(1_827_619_200);
        assert_eq!(parsed.peers[0].expires_at(), Some(expiry));
        assert!(!parsed.peers[0].expired(expiry - Duration::from_secs(1)));
        assert!(parsed.peers[0].expired(expiry));
        assert_eq!(format_time(expiry), "2027-12-01T00:00:00Z");
    }

    #[test]
    fn relay_names_peers_of_the_file() {
        let mut doc = WireguardPeers::new(
            "ntari-federation",
            vec![
                peer("federation:h-a", KEY_A),
                DropInPeer {
                    allowed_ips: vec!["10.77.0.3/32".into()],
                    ..peer("federation:h-c", KEY_B)
                },
            ],
        );
        doc.relay = vec!["federation:h-a".into(), "federation:h-c".into()];
        assert_eq!(WireguardPeers::parse(&doc.to_json()).unwrap(), doc);
        doc.relay.push("federation:h-x".into());
        assert_eq!(doc.validate().unwrap_err().path, "relay[2]");
        doc.relay = vec!["federation:h-a".into(), "federation:h-a".into()];
        assert_eq!(doc.validate().unwrap_err().path, "relay[1]");
        // Without relaying the field is not written at all.
        assert!(!WireguardPeers::new("x", Vec::new())
            .to_json()
            .contains("relay"));
    }

    #[test]
    fn errors_name_the_json_path() {
        let mut b = peer("b", KEY_B);
        b.allowed_ips = vec!["10.77.0.2/32".into(), "10.88.0.0/16".into()];
        let good = WireguardPeers::new("ntari-federation", vec![peer("a", KEY_A), b]);
        let json = serde_json::to_string(&good).unwrap();
        let cases = [
            ("{".to_string(), ".", ""),
            (
                json.replace("\"version\":1", "\"version\":2"),
                "version",
                "version 2",
            ),
            (json.replace("\"version\":1,", ""), "version", "missing"),
            (
                json.replace("\"source\":\"ntari-federation\"", "\"source\":\"\""),
                "source",
                "writer",
            ),
            (
                json.replacen("\"name\":\"a\"", "\"name\":\"a\",\"colour\":\"red\"", 1),
                "peers[0].colour",
                "unknown field",
            ),
            (
                json.replace(KEY_B, "not-a-key"),
                "peers[1].public_key",
                "not a WireGuard key",
            ),
            (
                json.replace(KEY_B, &KEY_B.replace("Dg=", "Dh=")),
                "peers[1].public_key",
                "not a WireGuard key",
            ),
            (
                json.replace(KEY_B, KEY_A),
                "peers[1].public_key",
                "same key",
            ),
            (
                json.replace("10.88.0.0/16", "10.0.0.0/8"),
                "peers[1].allowed_ips[1]",
                "overlaps 10.77.0.1/32 of peers[0]",
            ),
            (
                json.replacen("192.0.2.1:51820", "192.0.2.1", 1),
                "peers[0].endpoint",
                "port",
            ),
            (
                json.replacen("192.0.2.1:51820", "bad_host:51820", 1),
                "peers[0].endpoint",
                "host name",
            ),
            (
                json.replacen("10.77.0.1/32", "10.77.0.1/24", 1),
                "peers[0].allowed_ips[0]",
                "host bits",
            ),
            (
                json.replacen("10.77.0.1/32", "10.77.0.1", 1),
                "peers[0].allowed_ips[0]",
                "CIDR",
            ),
            (
                json.replacen("10.77.0.1/32", "10.77.0.1/33", 1),
                "peers[0].allowed_ips[0]",
                "at most 32",
            ),
            (
                json.replacen("[\"10.77.0.1/32\"]", "[]", 1),
                "peers[0].allowed_ips",
                "without allowed IPs",
            ),
            (
                json.replacen(
                    "\"persistent_keepalive\":25",
                    "\"persistent_keepalive\":0",
                    1,
                ),
                "peers[0].persistent_keepalive",
                "0",
            ),
            (
                json.replacen(
                    "\"persistent_keepalive\":25",
                    "\"persistent_keepalive\":70000",
                    1,
                ),
                "peers[0].persistent_keepalive",
                "",
            ),
            (
                json.replacen("2027-12-01T00:00:00Z", "next year", 1),
                "peers[0].not_after",
                "RFC 3339",
            ),
            (
                json.replacen("2027-12-01T00:00:00Z", "2027-12-01T00:00:00+01:00", 1),
                "peers[0].not_after",
                "UTC",
            ),
            (
                json.replacen("\"name\":\"a\"", "\"name\":\"\"", 1),
                "peers[0].name",
                "1 to 64",
            ),
            (
                json.replacen(
                    "\"allowed_ips\":[\"10.77.0.1/32\"]",
                    "\"allowed_ips\":[7]",
                    1,
                ),
                "peers[0].allowed_ips[0]",
                "",
            ),
        ];
        for (text, path, words) in cases {
            let err = WireguardPeers::parse(&text).unwrap_err();
            assert_eq!(err.path, path, "{text}: {err}");
            assert!(err.message.contains(words), "{text}: {err}");
        }
        WireguardPeers::parse(&json).unwrap();
    }

    #[test]
    fn keys_decode_to_their_bytes() {
        let zero = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
        assert_eq!(decode_key(zero).unwrap(), [0u8; 32]);
        let ones = "//////////////////////////////////////////8=";
        assert_eq!(decode_key(ones).unwrap(), [0xff; 32]);
        for bad in [
            "",
            &KEY_A[..43],
            "mJ0ZxMO5trSCDcStS5sAhW8fPSxAQXkxFF6f9F9mzUk",
            "mJ0ZxMO5trSCDcStS5sAhW8fPSxAQXkxFF6f9F9mz!k=",
        ] {
            assert!(decode_key(bad).is_err(), "{bad}");
        }
        assert!(check_cidr("fd00::/8").is_ok() && check_cidr("0.0.0.0/0").is_ok());
        assert!(check_cidr("10.0.0.0/+8").is_err());
        let c = |t: &str| check_cidr(t).unwrap();
        assert!(c("0.0.0.0/0").overlaps(&c("10.1.0.0/16")));
        assert!(c("10.1.0.0/16").overlaps(&c("10.1.2.3/32")));
        assert!(!c("10.1.0.0/16").overlaps(&c("10.2.0.0/16")));
        assert!(!c("::/0").overlaps(&c("10.0.0.0/8")));
        assert!(c("fd00::/8").overlaps(&c("fd00:77::1/128")));
        assert!(check_endpoint("[fd00::1]:51820").is_ok());
        assert!(check_endpoint("hub.example.org:51820").is_ok());
    }
}

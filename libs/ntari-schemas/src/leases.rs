//! `/ntari/dhcp/leases`: the DHCP server's leases, for everyone who needs
//! to know which machine has which address (ntari-dns gives them names).
//!
//! Published by ntari-dhcp, reliable and transient-local with a history of
//! one (`qos::LATCHED`). Every message carries the events that caused it
//! *and* the whole lease table after them, so the one sample a late
//! subscriber receives is enough to know the current state; nobody has to
//! replay a history. Events that happen close together (a burst of clients
//! after a power cut) travel in one message. Example (one line on the wire):
//!
//! ```json
//! {"version":1,"snapshot":false,
//!  "events":[{"event":"granted","ip":"192.168.50.23","mac":"52:54:00:12:34:56","hostname":"laptop","expiry":1763740800}],
//!  "leases":[{"ip":"192.168.50.23","mac":"52:54:00:12:34:56","hostname":"laptop","expiry":1763740800}]}
//! ```
//!
//! Size: about 100 bytes per lease and per event, so a table of 10 000
//! leases is a 1 MB sample, well within the 4 MiB a node accepts.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::SchemaError;

/// The ROS topic.
pub const TOPIC: &str = "/ntari/dhcp/leases";

/// The version this code reads and writes.
pub const VERSION: u32 = 1;

/// Longest hostname carried (a full DNS name is at most 253 characters).
pub const MAX_HOSTNAME_LEN: usize = 253;

/// What happened to a lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LeaseEvent {
    /// A new lease for a client.
    Granted,
    /// A client extended its lease.
    Renewed,
    /// A client gave its address back (or declined it).
    Released,
    /// A lease ran out without renewal.
    Expired,
}

impl LeaseEvent {
    pub fn label(self) -> &'static str {
        match self {
            LeaseEvent::Granted => "granted",
            LeaseEvent::Renewed => "renewed",
            LeaseEvent::Released => "released",
            LeaseEvent::Expired => "expired",
        }
    }
}

/// One lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The address leased.
    pub ip: IpAddr,
    /// The client's hardware address, `aa:bb:cc:dd:ee:ff`.
    pub mac: MacAddr,
    /// The name the client asked for (DHCP option 12 or 81), as sent: not
    /// checked against DNS rules here, a consumer that publishes names must
    /// check it. Absent when the client sent none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// When the lease ends, in seconds since the Unix epoch (UTC).
    pub expiry: u64,
}

/// Something that happened to one lease: the event and the lease as it was
/// then (for `released` and `expired`, as it was before it ended).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub event: LeaseEvent,
    #[serde(flatten)]
    pub lease: Lease,
}

/// One sample on [`TOPIC`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseMessage {
    /// Always [`VERSION`] when written by this code.
    pub version: u32,
    /// True when the message is the table as it is, with no events: sent
    /// when the publisher starts (or has lost track and re-reads the table).
    #[serde(default)]
    pub snapshot: bool,
    /// What happened since the previous message, oldest first.
    #[serde(default)]
    pub events: Vec<Event>,
    /// Every lease the server holds after the events (released and expired
    /// ones removed).
    pub leases: Vec<Lease>,
}

impl LeaseMessage {
    /// The whole table, with no events.
    pub fn snapshot(leases: Vec<Lease>) -> Self {
        LeaseMessage {
            version: VERSION,
            snapshot: true,
            events: Vec::new(),
            leases,
        }
    }

    /// `events` happened; `leases` is the table afterwards.
    pub fn events(events: Vec<Event>, leases: Vec<Lease>) -> Self {
        LeaseMessage {
            version: VERSION,
            snapshot: false,
            events,
            leases,
        }
    }

    /// Reads a sample, checking what serde cannot: the version first, then
    /// hostname lengths.
    pub fn parse(json: &str) -> Result<Self, SchemaError> {
        // The version first, so a future format gets a version error
        // rather than a confusing one about some field.
        #[derive(Deserialize)]
        struct Versioned {
            version: u32,
        }
        let Versioned { version } = crate::parse(json)?;
        if version != VERSION {
            return Err(SchemaError::new(
                "version",
                format!("version {version} is not understood here (this node reads {VERSION}); update it"),
            ));
        }
        let message: LeaseMessage = crate::parse(json)?;
        let events = message
            .events
            .iter()
            .enumerate()
            .map(|(i, e)| (format!("events[{i}]"), &e.lease));
        let table = message
            .leases
            .iter()
            .enumerate()
            .map(|(i, l)| (format!("leases[{i}]"), l));
        for (path, lease) in events.chain(table) {
            if let Some(name) = &lease.hostname {
                if name.len() > MAX_HOSTNAME_LEN {
                    return Err(SchemaError::new(
                        format!("{path}.hostname"),
                        format!(
                            "{} characters, at most {MAX_HOSTNAME_LEN} allowed",
                            name.len()
                        ),
                    ));
                }
            }
        }
        Ok(message)
    }

    /// The sample's text (one line of JSON).
    pub fn to_json(&self) -> String {
        // Serializing plain data (no maps with non-string keys) cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// A 48-bit hardware address. Parsed from `aa:bb:cc:dd:ee:ff` or
/// `aa-bb-cc-dd-ee-ff` (any case); always written lower case with colons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacAddr(pub [u8; 6]);

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl FromStr for MacAddr {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || format!("`{text}` is not a MAC address like 52:54:00:12:34:56");
        let parts: Vec<&str> = text.split([':', '-']).collect();
        if parts.len() != 6 {
            return Err(bad());
        }
        let mut bytes = [0u8; 6];
        for (byte, part) in bytes.iter_mut().zip(parts) {
            // from_str_radix alone would take "+5".
            if part.len() != 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(bad());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| bad())?;
        }
        Ok(MacAddr(bytes))
    }
}

impl Serialize for MacAddr {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MacAddr {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(ip: &str, name: Option<&str>) -> Lease {
        Lease {
            ip: ip.parse().unwrap(),
            mac: "52:54:00:12:34:56".parse().unwrap(),
            hostname: name.map(str::to_string),
            expiry: 1_763_740_800,
        }
    }

    #[test]
    fn round_trips_and_matches_the_documented_example() {
        let l = lease("192.168.50.23", Some("laptop"));
        let granted = Event {
            event: LeaseEvent::Granted,
            lease: l.clone(),
        };
        let msg = LeaseMessage::events(vec![granted], vec![l]);
        let json = msg.to_json();
        assert_eq!(
            json,
            r#"{"version":1,"snapshot":false,"events":[{"event":"granted","ip":"192.168.50.23","mac":"52:54:00:12:34:56","hostname":"laptop","expiry":1763740800}],"leases":[{"ip":"192.168.50.23","mac":"52:54:00:12:34:56","hostname":"laptop","expiry":1763740800}]}"#
        );
        assert_eq!(LeaseMessage::parse(&json).unwrap(), msg);
        let snapshot = LeaseMessage::snapshot(vec![lease("10.0.0.2", None)]);
        assert_eq!(LeaseMessage::parse(&snapshot.to_json()).unwrap(), snapshot);
        assert!(!snapshot.to_json().contains("hostname"));
    }

    #[test]
    fn unknown_fields_are_ignored_and_events_may_be_left_out() {
        let json = r#"{"version":1,"leases":[],"server":"x","leases_extra":{"a":1}}"#;
        let msg = LeaseMessage::parse(json).unwrap();
        assert!(msg.leases.is_empty() && msg.events.is_empty() && !msg.snapshot);
    }

    #[test]
    fn errors_name_the_bad_value() {
        let ok = r#"{"ip":"10.0.0.1","mac":"52:54:00:12:34:56","expiry":1}"#;
        let cases = [
            ("{".to_string(), "."),
            ("[]".to_string(), "."),
            (r#"{"version":2,"leases":[]}"#.to_string(), "version"),
            (r#"{"leases":[]}"#.to_string(), "."),
            (r#"{"version":1}"#.to_string(), "."),
            (
                r#"{"version":1,"events":[{"event":"stolen","ip":"10.0.0.1","mac":"52:54:00:12:34:56","expiry":1}],"leases":[]}"#.to_string(),
                "events[0]",
            ),
            (
                format!(r#"{{"version":1,"leases":[{ok},{{"ip":"10.0.0.300","mac":"52:54:00:12:34:56","expiry":1}}]}}"#),
                "leases[1].ip",
            ),
            (
                r#"{"version":1,"leases":[{"ip":"10.0.0.1","mac":"52:54:00:12:34","expiry":1}]}"#.to_string(),
                "leases[0].mac",
            ),
            (
                r#"{"version":1,"leases":[{"ip":"10.0.0.1","mac":"52:54:00:12:34:56","expiry":-5}]}"#.to_string(),
                "leases[0].expiry",
            ),
        ];
        for (json, path) in cases {
            let err = LeaseMessage::parse(&json).unwrap_err();
            assert!(err.path.starts_with(path), "{json}: {err}");
        }
        let long = "a".repeat(MAX_HOSTNAME_LEN + 1);
        let json = format!(
            r#"{{"version":1,"leases":[{{"ip":"10.0.0.1","mac":"52:54:00:12:34:56","hostname":"{long}","expiry":1}}]}}"#
        );
        let err = LeaseMessage::parse(&json).unwrap_err();
        assert_eq!(err.path, "leases[0].hostname", "{err}");
        assert!(err.to_string().contains("at most 253"), "{err}");
    }

    #[test]
    fn mac_addresses_parse_in_both_notations_and_print_one_way() {
        let mac: MacAddr = "52-54-00-AB-cd-EF".parse().unwrap();
        assert_eq!(mac.to_string(), "52:54:00:ab:cd:ef");
        for bad in [
            "",
            "52:54:00:ab:cd",
            "52:54:00:ab:cd:ef:01",
            "5:54:00:ab:cd:ef",
            "zz:54:00:ab:cd:ef",
            "+5:54:00:ab:cd:ef",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad}");
        }
    }
}

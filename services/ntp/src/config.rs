//! `/etc/ntari/services/ntp.toml`: what the admin writes, and the checks
//! serde cannot express. It serialises back to the same form, so the config
//! a node reports is one an admin could paste into the file.

use std::fmt;
use std::net::IpAddr;

use ntari_node::service::ConfigIssue;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// Poll exponents chrony accepts (chrony.conf(5): -7 … 24).
const POLL_RANGE: std::ops::RangeInclusive<i8> = -7..=24;

/// `/etc/ntari/services/ntp.toml`. Every key is optional; the defaults are
/// given per field. The default config alone is rejected by
/// [`NtpConfig::validate`] (no upstream and nobody to serve): an admin
/// chooses at least upstream servers or the LAN subnets to serve.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NtpConfig {
    /// Upstream NTP servers (chrony `server`). Each entry is a host name or
    /// address, or a table `{ host, port, iburst, prefer, minpoll, maxpoll }`.
    /// Default: none.
    pub servers: Vec<Upstream>,
    /// Upstream pools (chrony `pool`): names resolving to several servers.
    /// Same form as `servers`, plus `maxsources`. Default: none.
    pub pools: Vec<Upstream>,
    /// Subnets whose clients may query this node (chrony `allow`), in CIDR
    /// notation (`192.168.1.0/24`, `fd00::/8`) or single addresses. Default:
    /// none, i.e. chronyd is a client only and opens no server port.
    pub allow: Vec<String>,
    /// UDP port to serve NTP on (chrony `port`). 0 = never serve. Default 123.
    pub serve_port: u16,
    /// Local address for the NTP server socket (chrony `bindaddress`); one
    /// address only. Default: none (all addresses of the allowed family).
    pub bind_address: Option<IpAddr>,
    /// Stratum of the local fallback reference (chrony `local stratum N`),
    /// 1–15, so an offline cooperative still agrees on one time. 0 = no
    /// local reference. Default 10.
    pub local_stratum: u8,
    /// Adds `orphan` to the local reference, so several NTARI nodes using
    /// the same `local_stratum` and polling each other elect one time
    /// source instead of each serving their own. Default true.
    pub local_orphan: bool,
    /// Never adjust the system clock (`chronyd -x`): chronyd only measures
    /// and serves. For tests, containers and development machines; a
    /// production node must discipline its clock. Default false.
    pub leave_clock_alone: bool,
    /// Step the clock instead of slewing when it is off by more than this
    /// many seconds (chrony `makestep`). 0 = never step. Default 1.0.
    pub makestep_threshold: f64,
    /// …but only during the first this-many clock updates; -1 = always.
    /// Default 3.
    pub makestep_limit: i32,
    /// Default minimum poll exponent (2^n seconds, -7…24) for every upstream
    /// that sets none; chrony's default is 6 (64 s). Short intervals are for
    /// LAN or loopback servers only. Default: chrony's.
    pub minpoll: Option<i8>,
    /// Default maximum poll exponent for every upstream that sets none;
    /// chrony's default is 10 (1024 s). Default: chrony's.
    pub maxpoll: Option<i8>,
}

impl Default for NtpConfig {
    fn default() -> Self {
        NtpConfig {
            servers: Vec::new(),
            pools: Vec::new(),
            allow: Vec::new(),
            serve_port: 123,
            bind_address: None,
            local_stratum: 10,
            local_orphan: true,
            leave_clock_alone: false,
            makestep_threshold: 1.0,
            makestep_limit: 3,
            minpoll: None,
            maxpoll: None,
        }
    }
}

/// One upstream server or pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// Host name or IP address.
    pub host: String,
    /// UDP port; default chrony's (123).
    pub port: Option<u16>,
    /// Start with a burst of requests for a fast first sync. Default true.
    pub iburst: bool,
    /// Prefer this source over others. Default false.
    pub prefer: bool,
    /// Minimum poll exponent; default the config-wide `minpoll`.
    pub minpoll: Option<i8>,
    /// Maximum poll exponent; default the config-wide `maxpoll`.
    pub maxpoll: Option<i8>,
    /// Pools only: how many of the pool's servers to use (1–16); default
    /// chrony's (4).
    pub maxsources: Option<u8>,
}

impl Upstream {
    /// An upstream with default options.
    pub fn new(host: impl Into<String>) -> Self {
        Upstream {
            host: host.into(),
            port: None,
            iburst: true,
            prefer: false,
            minpoll: None,
            maxpoll: None,
            maxsources: None,
        }
    }
}

/// The table form of [`Upstream`]; kept apart so the string shorthand and
/// the table share one type while unknown keys are still rejected. Keys at
/// their default are left out when serialising, as an admin would.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct UpstreamTable {
    host: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    port: Option<u16>,
    #[serde(default = "default_true", skip_serializing_if = "is_true")]
    iburst: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    prefer: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    minpoll: Option<i8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    maxpoll: Option<i8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    maxsources: Option<u8>,
}

fn default_true() -> bool {
    true
}

fn is_true(value: &bool) -> bool {
    *value
}

fn is_false(value: &bool) -> bool {
    !*value
}

impl<'de> Deserialize<'de> for Upstream {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct UpstreamVisitor;

        impl<'de> Visitor<'de> for UpstreamVisitor {
            type Value = Upstream;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a host name or address, or a table with `host` and options")
            }

            fn visit_str<E: de::Error>(self, host: &str) -> Result<Upstream, E> {
                Ok(Upstream::new(host))
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Upstream, A::Error> {
                let t = UpstreamTable::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(Upstream {
                    host: t.host,
                    port: t.port,
                    iburst: t.iburst,
                    prefer: t.prefer,
                    minpoll: t.minpoll,
                    maxpoll: t.maxpoll,
                    maxsources: t.maxsources,
                })
            }
        }

        deserializer.deserialize_any(UpstreamVisitor)
    }
}

/// The inverse of the deserializer: the bare host when every option is at
/// its default, otherwise the table.
impl Serialize for Upstream {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if *self == Upstream::new(self.host.clone()) {
            return serializer.serialize_str(&self.host);
        }
        UpstreamTable {
            host: self.host.clone(),
            port: self.port,
            iburst: self.iburst,
            prefer: self.prefer,
            minpoll: self.minpoll,
            maxpoll: self.maxpoll,
            maxsources: self.maxsources,
        }
        .serialize(serializer)
    }
}

impl NtpConfig {
    /// Everything serde cannot check, named by TOML key.
    pub fn validate(&self) -> Result<(), ConfigIssue> {
        for (i, up) in self.servers.iter().enumerate() {
            check_upstream(&format!("servers[{i}]"), up, false, self)?;
        }
        for (i, up) in self.pools.iter().enumerate() {
            check_upstream(&format!("pools[{i}]"), up, true, self)?;
        }
        for (i, entry) in self.allow.iter().enumerate() {
            parse_subnet(entry).map_err(|m| ConfigIssue::new(format!("allow[{i}]"), m))?;
        }
        check_poll("minpoll", self.minpoll)?;
        check_poll("maxpoll", self.maxpoll)?;
        if let (Some(min), Some(max)) = (self.minpoll, self.maxpoll) {
            if min > max {
                return Err(ConfigIssue::new(
                    "minpoll",
                    format!("minpoll {min} is greater than maxpoll {max}"),
                ));
            }
        }
        if self.local_stratum > 15 {
            return Err(ConfigIssue::new(
                "local_stratum",
                format!(
                    "{} is outside 1–15 (0 disables the local reference)",
                    self.local_stratum
                ),
            ));
        }
        if !self.makestep_threshold.is_finite() || self.makestep_threshold < 0.0 {
            return Err(ConfigIssue::new(
                "makestep_threshold",
                "must be a number of seconds ≥ 0 (0 = never step the clock)",
            ));
        }
        if self.makestep_limit < -1 {
            return Err(ConfigIssue::new(
                "makestep_limit",
                "must be ≥ 0, or -1 to step at any update",
            ));
        }
        if self.serve_port == 0 && !self.allow.is_empty() {
            return Err(ConfigIssue::new(
                "allow",
                "serve_port = 0 turns serving off; remove `allow` or set serve_port",
            ));
        }
        if self.serve_port == 0 && self.bind_address.is_some() {
            return Err(ConfigIssue::new(
                "bind_address",
                "serve_port = 0 turns serving off; remove `bind_address` or set serve_port",
            ));
        }
        let has_upstream = !self.servers.is_empty() || !self.pools.is_empty();
        let serves = self.serve_port != 0 && !self.allow.is_empty();
        if !has_upstream && self.local_stratum == 0 {
            return Err(ConfigIssue::new(
                "servers",
                "no servers, no pools and local_stratum = 0: chronyd would have no time to follow or serve",
            ));
        }
        if !has_upstream && !serves {
            return Err(ConfigIssue::new(
                "servers",
                "no servers or pools, and nobody to serve (set `allow` and serve_port): chronyd would have nothing to do",
            ));
        }
        Ok(())
    }
}

/// Parses an `allow` entry: `addr/prefix` or a single address. Host bits
/// must be zero, so a typo such as `192.168.1.5/24` is reported rather than
/// silently widened.
pub fn parse_subnet(text: &str) -> Result<(IpAddr, u8), String> {
    let (addr_text, prefix_text) = match text.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (text, None),
    };
    let addr: IpAddr = addr_text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not an IP address or CIDR subnet"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix_text {
        None => max,
        Some(p) => p
            .trim()
            .parse::<u8>()
            .ok()
            .filter(|p| *p <= max)
            .ok_or_else(|| format!("{text:?}: prefix length must be 0–{max}"))?,
    };
    let network = mask(addr, prefix);
    if network != addr {
        return Err(format!(
            "{text:?} has host bits set; did you mean {network}/{prefix}?"
        ));
    }
    Ok((addr, prefix))
}

fn mask(addr: IpAddr, prefix: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let bits = u32::from(a);
            let m = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4((bits & m).into())
        }
        IpAddr::V6(a) => {
            let bits = u128::from(a);
            let m = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6((bits & m).into())
        }
    }
}

/// Host names go verbatim into chrony.conf, which has no quoting: anything
/// but a plain address or DNS name could smuggle in another directive.
fn check_host(host: &str) -> Result<(), String> {
    if host.is_empty() {
        return Err("must not be empty".into());
    }
    if host.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    ntari_node::validate::dns_name(host)
        .map_err(|e| format!("{host:?} is neither an IP address nor a valid host name ({e})"))
}

fn check_poll(key: &str, value: Option<i8>) -> Result<(), ConfigIssue> {
    match value {
        Some(v) if !POLL_RANGE.contains(&v) => Err(ConfigIssue::new(
            key,
            format!("{v} is outside chrony's poll range -7…24 (2^n seconds)"),
        )),
        _ => Ok(()),
    }
}

fn check_upstream(
    key: &str,
    up: &Upstream,
    is_pool: bool,
    config: &NtpConfig,
) -> Result<(), ConfigIssue> {
    check_host(&up.host).map_err(|m| ConfigIssue::new(format!("{key}.host"), m))?;
    if up.port == Some(0) {
        return Err(ConfigIssue::new(format!("{key}.port"), "must be 1–65535"));
    }
    check_poll(&format!("{key}.minpoll"), up.minpoll)?;
    check_poll(&format!("{key}.maxpoll"), up.maxpoll)?;
    if let (Some(min), Some(max)) = (up.minpoll.or(config.minpoll), up.maxpoll.or(config.maxpoll)) {
        if min > max {
            return Err(ConfigIssue::new(
                format!("{key}.minpoll"),
                format!("minpoll {min} is greater than maxpoll {max}"),
            ));
        }
    }
    match up.maxsources {
        Some(_) if !is_pool => Err(ConfigIssue::new(
            format!("{key}.maxsources"),
            "only pools take maxsources; use `pools` for a pool name",
        )),
        Some(n) if !(1..=16).contains(&n) => Err(ConfigIssue::new(
            format!("{key}.maxsources"),
            format!("{n} is outside 1–16"),
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_toml_forms() {
        let c: NtpConfig = toml::from_str(
            r#"
            servers = ["ntp.example.org", { host = "192.0.2.1", port = 1123, iburst = false, minpoll = 4 }]
            pools = [{ host = "pool.ntp.org", maxsources = 3 }]
            allow = ["192.168.1.0/24"]
            "#,
        )
        .unwrap();
        assert_eq!(c.servers[0], Upstream::new("ntp.example.org"));
        assert_eq!(c.servers[1].port, Some(1123));
        assert!(!c.servers[1].iburst);
        assert_eq!(c.servers[1].minpoll, Some(4));
        assert_eq!(c.pools[0].maxsources, Some(3));
        assert_eq!(c.serve_port, 123);
        assert_eq!(c.local_stratum, 10);
        assert!(c.validate().is_ok());

        let typo = toml::from_str::<NtpConfig>("servers = [{ host = \"a\", iburts = true }]");
        assert!(typo.unwrap_err().to_string().contains("iburts"));
        let typo = toml::from_str::<NtpConfig>("serve_prot = 123");
        assert!(typo.unwrap_err().to_string().contains("serve_prot"));
        assert!(toml::from_str::<NtpConfig>("bind_address = \"nope\"").is_err());
        assert!(toml::from_str::<NtpConfig>("serve_port = 70000").is_err());
    }

    fn issue_key(c: &NtpConfig) -> String {
        c.validate().unwrap_err().key
    }

    #[test]
    fn validation_names_the_key() {
        let base = NtpConfig {
            servers: vec![Upstream::new("ntp.example.org")],
            ..NtpConfig::default()
        };
        assert!(base.validate().is_ok());

        let mut c = base.clone();
        c.servers.push(Upstream::new("a.example\nallow all"));
        assert_eq!(issue_key(&c), "servers[1].host");
        let mut c = base.clone();
        c.servers[0].host = "-bad".into();
        assert_eq!(issue_key(&c), "servers[0].host");
        let mut c = base.clone();
        c.servers[0].port = Some(0);
        assert_eq!(issue_key(&c), "servers[0].port");
        let mut c = base.clone();
        c.servers[0].maxsources = Some(2);
        assert_eq!(issue_key(&c), "servers[0].maxsources");
        let mut c = base.clone();
        c.pools = vec![Upstream {
            maxsources: Some(17),
            ..Upstream::new("pool.ntp.org")
        }];
        assert_eq!(issue_key(&c), "pools[0].maxsources");
        let mut c = base.clone();
        c.servers[0].minpoll = Some(-8);
        assert_eq!(issue_key(&c), "servers[0].minpoll");
        let mut c = base.clone();
        c.minpoll = Some(6);
        c.servers[0].maxpoll = Some(4);
        assert_eq!(issue_key(&c), "servers[0].minpoll");
        let mut c = base.clone();
        c.minpoll = Some(5);
        c.maxpoll = Some(4);
        assert_eq!(issue_key(&c), "servers[0].minpoll");
        let mut c = base.clone();
        c.allow = vec!["10.0.0.0/8".into(), "10.1.2.3/8".into()];
        assert_eq!(issue_key(&c), "allow[1]");
        let mut c = base.clone();
        c.allow = vec!["10.0.0.0/33".into()];
        assert_eq!(issue_key(&c), "allow[0]");
        let mut c = base.clone();
        c.allow = vec!["lan".into()];
        assert_eq!(issue_key(&c), "allow[0]");
        let mut c = base.clone();
        c.local_stratum = 16;
        assert_eq!(issue_key(&c), "local_stratum");
        let mut c = base.clone();
        c.makestep_threshold = f64::NAN;
        assert_eq!(issue_key(&c), "makestep_threshold");
        let mut c = base.clone();
        c.makestep_limit = -2;
        assert_eq!(issue_key(&c), "makestep_limit");
        let mut c = base.clone();
        c.serve_port = 0;
        c.allow = vec!["192.168.0.0/16".into()];
        assert_eq!(issue_key(&c), "allow");
        let mut c = base.clone();
        c.serve_port = 0;
        c.bind_address = Some("127.0.0.1".parse().unwrap());
        assert_eq!(issue_key(&c), "bind_address");

        // Nothing to follow or serve.
        assert_eq!(issue_key(&NtpConfig::default()), "servers");
        let c = NtpConfig {
            local_stratum: 0,
            allow: vec!["127.0.0.1".into()],
            ..NtpConfig::default()
        };
        assert_eq!(issue_key(&c), "servers");
        // Local reference served to the LAN, no upstream: fine.
        let c = NtpConfig {
            allow: vec!["192.168.1.0/24".into(), "fd00::/8".into()],
            ..NtpConfig::default()
        };
        assert!(c.validate().is_ok());
    }

    #[test]
    fn subnets() {
        assert_eq!(
            parse_subnet("10.0.0.0/8").unwrap(),
            ("10.0.0.0".parse().unwrap(), 8)
        );
        assert_eq!(
            parse_subnet("127.0.0.1").unwrap(),
            ("127.0.0.1".parse().unwrap(), 32)
        );
        assert_eq!(parse_subnet("0.0.0.0/0").unwrap().1, 0);
        assert_eq!(parse_subnet("fd00::/8").unwrap().1, 8);
        assert_eq!(parse_subnet("::1").unwrap().1, 128);
        assert!(parse_subnet("fd00::1/8").unwrap_err().contains("fd00::/8"));
        assert!(parse_subnet("192.168.1.5/24")
            .unwrap_err()
            .contains("192.168.1.0/24"));
        assert!(parse_subnet("::/129").is_err());
        assert!(parse_subnet("10.0.0.0/x").is_err());
        assert!(parse_subnet("").is_err());
    }

    /// Serialising gives back the config it came from, in TOML (what an
    /// admin writes) and in JSON (what the node publishes).
    fn assert_round_trips(c: &NtpConfig) {
        let text = toml::to_string(c).unwrap();
        let back: NtpConfig = toml::from_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(&back, c, "{text}");
        let value = serde_json::to_value(c).unwrap();
        let back: NtpConfig = serde_json::from_value(value.clone()).unwrap();
        assert_eq!(&back, c, "{value}");
    }

    #[test]
    fn serialises_to_what_it_parses() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/ntp.toml");
        let example: NtpConfig = toml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        assert_round_trips(&example);
        assert_round_trips(&NtpConfig::default());

        // No field at its default, in NtpConfig or Upstream.
        let every = NtpConfig {
            servers: vec![
                Upstream::new("ntp.example.org"),
                Upstream {
                    host: "192.0.2.1".into(),
                    port: Some(1123),
                    iburst: false,
                    prefer: true,
                    minpoll: Some(4),
                    maxpoll: Some(8),
                    maxsources: None,
                },
            ],
            pools: vec![Upstream {
                maxsources: Some(3),
                ..Upstream::new("pool.ntp.org")
            }],
            allow: vec!["192.168.1.0/24".into(), "fd00::/8".into()],
            serve_port: 11123,
            bind_address: Some("::1".parse().unwrap()),
            local_stratum: 8,
            local_orphan: false,
            leave_clock_alone: true,
            makestep_threshold: 0.5,
            makestep_limit: -1,
            minpoll: Some(-2),
            maxpoll: Some(10),
        };
        assert!(every.validate().is_ok());
        assert_round_trips(&every);

        // Upstreams in the admin's form: the bare host, or only the keys set.
        let value = serde_json::to_value(&every).unwrap();
        assert_eq!(
            value["servers"],
            serde_json::json!([
                "ntp.example.org",
                { "host": "192.0.2.1", "port": 1123, "iburst": false, "prefer": true, "minpoll": 4, "maxpoll": 8 },
            ])
        );
        assert_eq!(
            value["pools"],
            serde_json::json!([{ "host": "pool.ntp.org", "maxsources": 3 }])
        );
        assert_eq!(value["bind_address"], serde_json::json!("::1"));
    }
}

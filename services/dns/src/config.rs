//! `/etc/ntari/services/dns.toml`: what the admin writes, and the checks
//! serde cannot express.

use std::collections::HashSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::str::FromStr;

use ntari_node::service::ConfigIssue;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use ntari_node::validate::{dns_name as check_dns_name, interface_name as check_interface_name};

/// dnsmasq's own ceiling is 5 000 000; a hub with 1 GB of RAM has no use
/// for more than this, and a typo (an extra zero or two) is caught.
pub const MAX_CACHE_SIZE: u32 = 1_000_000;

/// Every key is optional; the defaults are given per field.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct DnsConfig {
    /// Addresses to answer on (dnsmasq `listen-address`, with
    /// `bind-interfaces`: only these are bound, so other resolvers on the
    /// machine keep theirs). Default `["127.0.0.1"]`.
    pub listen_addresses: Vec<IpAddr>,
    /// Also answer on every address of these interfaces (dnsmasq
    /// `interface`), e.g. `["br-lan"]`. dnsmasq then answers on loopback
    /// too. Default: none.
    pub interfaces: Vec<String>,
    /// UDP and TCP port. Default 53.
    pub port: u16,
    /// The cooperative's local domain: names under it are answered from the
    /// hosts and leases known here and never forwarded (dnsmasq `local`,
    /// `domain`). Default `home.arpa` (RFC 8375, reserved for exactly this).
    pub domain: String,
    /// Upstream resolvers, tried for everything not answered locally:
    /// `"9.9.9.9"`, `"9.9.9.9#5353"`, `"9.9.9.9:5353"`, `"[2620:fe::fe]:53"`.
    /// None = offline mode: only local names resolve. Default: none.
    pub upstream_servers: Vec<Upstream>,
    /// Cached answers (dnsmasq `cache-size`); 0 = no cache. Default 1000.
    pub cache_size: u32,
    /// Cache "no such name" answers too (off: dnsmasq `no-negcache`).
    /// Default true.
    pub negative_cache: bool,
    /// Validate DNSSEC signatures of upstream answers (dnsmasq `dnssec`,
    /// with the IANA root trust anchors). Needs upstreams that pass DNSSEC
    /// records and a correct clock (ntari-ntp). Default false.
    pub dnssec: bool,
    /// Log every query to the node's log (dnsmasq `log-queries`). Useful
    /// when debugging; noisy. Default false.
    pub log_queries: bool,
    /// The user dnsmasq runs as after binding its ports (dnsmasq `user`);
    /// it must be able to read the run dir. Only applies when started as
    /// root. Default `dnsmasq` (created by Debian's and Alpine's packages).
    pub user: String,
    /// Static names, e.g. `{ name = "hub", addresses = ["192.168.50.1"] }`.
    /// A name without a dot gets `.<domain>`. Default: none.
    pub hosts: Vec<HostRecord>,
    /// A domain and every name under it answered with fixed addresses
    /// (dnsmasq `address=/domain/addr`), e.g. `{ domain = "apps.coop.lan",
    /// addresses = ["192.168.50.2"] }`. Default: none.
    pub wildcards: Vec<Wildcard>,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            listen_addresses: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
            interfaces: Vec::new(),
            port: 53,
            domain: "home.arpa".to_string(),
            upstream_servers: Vec::new(),
            cache_size: 1000,
            negative_cache: true,
            dnssec: false,
            log_queries: false,
            user: "dnsmasq".to_string(),
            hosts: Vec::new(),
            wildcards: Vec::new(),
        }
    }
}

/// One `[[hosts]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HostRecord {
    pub name: String,
    pub addresses: Vec<IpAddr>,
}

/// One `[[wildcards]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Wildcard {
    pub domain: String,
    pub addresses: Vec<IpAddr>,
}

/// An upstream resolver: an address and an optional port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Upstream {
    pub ip: IpAddr,
    pub port: Option<u16>,
}

impl Upstream {
    /// dnsmasq's notation, `ip#port` (also how `servers.bind` names it).
    pub fn dnsmasq_form(&self) -> String {
        format!("{}#{}", self.ip, self.port.unwrap_or(53))
    }
}

impl fmt::Display for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(&self.dnsmasq_form())
    }
}

impl FromStr for Upstream {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if let Ok(ip) = text.parse::<IpAddr>() {
            return Ok(Upstream { ip, port: None });
        }
        if let Ok(addr) = text.parse::<SocketAddr>() {
            return Ok(Upstream {
                ip: addr.ip(),
                port: Some(addr.port()),
            });
        }
        if let Some((ip, port)) = text.split_once('#') {
            if let (Ok(ip), Ok(port)) = (ip.parse(), port.parse()) {
                return Ok(Upstream {
                    ip,
                    port: Some(port),
                });
            }
        }
        Err(format!(
            "`{text}` is not an upstream server; write an IP address with an optional port: \
             \"9.9.9.9\", \"9.9.9.9#5353\", \"9.9.9.9:5353\" or \"[2620:fe::fe]:53\" \
             (names are not accepted: resolving them would need DNS)"
        ))
    }
}

impl<'de> Deserialize<'de> for Upstream {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// As the admin writes it: `"9.9.9.9"`, or `"9.9.9.9#5353"` with a port.
impl Serialize for Upstream {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.port {
            Some(_) => serializer.collect_str(self),
            None => serializer.collect_str(&self.ip),
        }
    }
}

impl DnsConfig {
    /// `name` as it resolves: names without a dot live in the local domain.
    pub fn qualify(&self, name: &str) -> String {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if name.contains('.') {
            name
        } else {
            format!("{name}.{}", self.domain.to_ascii_lowercase())
        }
    }

    /// Offline mode: nothing is forwarded.
    pub fn offline(&self) -> bool {
        self.upstream_servers.is_empty()
    }

    /// What the probe asks: the first listen address (loopback for a
    /// wildcard one), or loopback when only interfaces are given (dnsmasq
    /// adds loopback to them).
    pub fn probe_target(&self) -> SocketAddr {
        let ip = match self.listen_addresses.first() {
            Some(IpAddr::V4(v4)) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            Some(IpAddr::V6(v6)) if v6.is_unspecified() => {
                IpAddr::V6(std::net::Ipv6Addr::LOCALHOST)
            }
            Some(ip) => *ip,
            None => IpAddr::V4(Ipv4Addr::LOCALHOST),
        };
        SocketAddr::new(ip, self.port)
    }

    /// Everything serde cannot check, named by TOML key.
    pub fn validate(&self) -> Result<(), ConfigIssue> {
        if self.listen_addresses.is_empty() && self.interfaces.is_empty() {
            return Err(ConfigIssue::new(
                "listen_addresses",
                "empty, and no interfaces either: dnsmasq would answer nobody",
            ));
        }
        let mut seen = HashSet::new();
        for (i, ip) in self.listen_addresses.iter().enumerate() {
            if !seen.insert(ip) {
                return Err(ConfigIssue::new(
                    format!("listen_addresses[{i}]"),
                    format!("{ip} is listed twice"),
                ));
            }
        }
        for (i, name) in self.interfaces.iter().enumerate() {
            check_interface_name(name)
                .map_err(|m| ConfigIssue::new(format!("interfaces[{i}]"), m))?;
        }
        if self.port == 0 {
            return Err(ConfigIssue::new("port", "0 is not a port (DNS uses 53)"));
        }
        check_dns_name(&self.domain).map_err(|m| ConfigIssue::new("domain", m))?;
        let mut upstreams = HashSet::new();
        for (i, up) in self.upstream_servers.iter().enumerate() {
            let key = format!("upstream_servers[{i}]");
            if !upstreams.insert(up) {
                return Err(ConfigIssue::new(key, format!("{up} is listed twice")));
            }
            if up.port == Some(0) {
                return Err(ConfigIssue::new(key, "port 0 is not a port"));
            }
            let port = up.port.unwrap_or(53);
            let loops = port == self.port
                && (self.listen_addresses.contains(&up.ip)
                    || (up.ip.is_loopback() && !self.interfaces.is_empty()));
            if loops {
                return Err(ConfigIssue::new(
                    key,
                    format!("{up} is this resolver itself: queries would go round in a loop"),
                ));
            }
        }
        if self.cache_size > MAX_CACHE_SIZE {
            return Err(ConfigIssue::new(
                "cache_size",
                format!(
                    "{} entries is more than {MAX_CACHE_SIZE}; 1000-10000 suits a cooperative",
                    self.cache_size
                ),
            ));
        }
        check_user(&self.user).map_err(|m| ConfigIssue::new("user", m))?;
        let mut names = HashSet::new();
        for (i, host) in self.hosts.iter().enumerate() {
            check_dns_name(&host.name)
                .map_err(|m| ConfigIssue::new(format!("hosts[{i}].name"), m))?;
            if host.addresses.is_empty() {
                return Err(ConfigIssue::new(
                    format!("hosts[{i}].addresses"),
                    "empty: give the name at least one address",
                ));
            }
            if !names.insert(self.qualify(&host.name)) {
                return Err(ConfigIssue::new(
                    format!("hosts[{i}].name"),
                    format!(
                        "{} is already defined above; list all its addresses in one entry",
                        self.qualify(&host.name)
                    ),
                ));
            }
        }
        for (i, wildcard) in self.wildcards.iter().enumerate() {
            check_dns_name(&wildcard.domain)
                .map_err(|m| ConfigIssue::new(format!("wildcards[{i}].domain"), m))?;
            if wildcard.addresses.is_empty() {
                return Err(ConfigIssue::new(
                    format!("wildcards[{i}].addresses"),
                    "empty: give the domain at least one address",
                ));
            }
        }
        Ok(())
    }
}

/// A plain system user name; dnsmasq fails at start-up if it does not exist,
/// which `dnsmasq --test` does not catch, so the shape is checked here and
/// the existence at activate.
fn check_user(user: &str) -> Result<(), String> {
    let ok = !user.is_empty()
        && user.len() <= 32
        && user
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
        && !user.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!("`{user}` is not a user name"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstreams_parse_in_every_documented_form() {
        let cases = [
            ("9.9.9.9", "9.9.9.9#53"),
            ("9.9.9.9#5353", "9.9.9.9#5353"),
            ("9.9.9.9:5353", "9.9.9.9#5353"),
            ("[2620:fe::fe]:53", "2620:fe::fe#53"),
            ("2620:fe::fe", "2620:fe::fe#53"),
            ("2620:fe::fe#54", "2620:fe::fe#54"),
        ];
        for (text, want) in cases {
            let up: Upstream = text.parse().unwrap();
            assert_eq!(up.dnsmasq_form(), want, "{text}");
        }
        for bad in [
            "",
            "dns.quad9.net",
            "9.9.9.9#",
            "9.9.9.9#99999",
            "9.9.9.9:x",
            "9.9.9",
        ] {
            let err = bad.parse::<Upstream>().unwrap_err();
            assert!(err.contains("not an upstream server"), "{bad}: {err}");
        }
    }

    fn issue(config: &DnsConfig) -> ConfigIssue {
        config.validate().unwrap_err()
    }

    #[test]
    fn serialising_gives_back_what_the_admin_wrote() {
        // The node shows its config as ROS parameters from this form.
        let example = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../examples/dns.toml"
        ))
        .unwrap();
        let full = r#"
            listen_addresses = ["127.0.0.1", "::1"]
            interfaces = ["br-lan"]
            port = 5353
            domain = "coop.lan"
            upstream_servers = ["9.9.9.9", "9.9.9.9#5353", "[2620:fe::fe]:54"]
            cache_size = 50
            negative_cache = false
            dnssec = true
            log_queries = true
            user = "nobody"
            hosts = [{ name = "hub", addresses = ["10.0.0.1", "fd00::1"] }]
            wildcards = [{ domain = "apps.coop.lan", addresses = ["10.0.0.2"] }]
        "#;
        for text in [example.as_str(), full] {
            let config: DnsConfig = toml::from_str(text).unwrap();
            let again: DnsConfig = toml::from_str(&toml::to_string(&config).unwrap()).unwrap();
            assert_eq!(again, config);
        }
        let config: DnsConfig = toml::from_str(full).unwrap();
        let json = serde_json::to_value(&config).unwrap();
        assert_eq!(
            json["upstream_servers"],
            serde_json::json!(["9.9.9.9", "9.9.9.9#5353", "2620:fe::fe#54"])
        );
    }

    #[test]
    fn the_default_config_is_valid() {
        DnsConfig::default().validate().unwrap();
    }

    #[test]
    fn validation_names_the_key() {
        let base = DnsConfig::default;
        let cases: Vec<(DnsConfig, &str, &str)> = vec![
            (
                DnsConfig {
                    listen_addresses: vec![],
                    ..base()
                },
                "listen_addresses",
                "answer nobody",
            ),
            (
                DnsConfig {
                    listen_addresses: vec!["127.0.0.1".parse().unwrap(); 2],
                    ..base()
                },
                "listen_addresses[1]",
                "twice",
            ),
            (
                DnsConfig {
                    interfaces: vec!["eth0".into(), "eth0/../x".into()],
                    ..base()
                },
                "interfaces[1]",
                "interface name",
            ),
            (DnsConfig { port: 0, ..base() }, "port", "not a port"),
            (
                DnsConfig {
                    domain: "coop..lan".into(),
                    ..base()
                },
                "domain",
                "empty label",
            ),
            (
                DnsConfig {
                    upstream_servers: vec!["127.0.0.1#53".parse().unwrap()],
                    ..base()
                },
                "upstream_servers[0]",
                "loop",
            ),
            (
                DnsConfig {
                    upstream_servers: vec!["9.9.9.9".parse().unwrap(); 2],
                    ..base()
                },
                "upstream_servers[1]",
                "twice",
            ),
            (
                DnsConfig {
                    cache_size: 10_000_000,
                    ..base()
                },
                "cache_size",
                "more than",
            ),
            (
                DnsConfig {
                    user: "root; rm".into(),
                    ..base()
                },
                "user",
                "not a user name",
            ),
            (
                DnsConfig {
                    hosts: vec![HostRecord {
                        name: "bad_name".into(),
                        addresses: vec!["10.0.0.1".parse().unwrap()],
                    }],
                    ..base()
                },
                "hosts[0].name",
                "letters, digits",
            ),
            (
                DnsConfig {
                    hosts: vec![HostRecord {
                        name: "hub".into(),
                        addresses: vec![],
                    }],
                    ..base()
                },
                "hosts[0].addresses",
                "at least one",
            ),
            (
                DnsConfig {
                    hosts: vec![
                        HostRecord {
                            name: "hub".into(),
                            addresses: vec!["10.0.0.1".parse().unwrap()],
                        },
                        HostRecord {
                            name: "HUB.home.arpa".into(),
                            addresses: vec!["10.0.0.2".parse().unwrap()],
                        },
                    ],
                    ..base()
                },
                "hosts[1].name",
                "already defined",
            ),
            (
                DnsConfig {
                    wildcards: vec![Wildcard {
                        domain: "-apps.lan".into(),
                        addresses: vec!["10.0.0.1".parse().unwrap()],
                    }],
                    ..base()
                },
                "wildcards[0].domain",
                "hyphen",
            ),
        ];
        for (config, key, words) in cases {
            let issue = issue(&config);
            assert_eq!(issue.key, key, "{issue}");
            assert!(issue.message.contains(words), "{issue}");
        }
    }

    #[test]
    fn an_upstream_on_another_port_of_this_address_is_no_loop() {
        let config = DnsConfig {
            port: 15353,
            upstream_servers: vec!["127.0.0.1#15354".parse().unwrap()],
            ..DnsConfig::default()
        };
        config.validate().unwrap();
    }

    #[test]
    fn names_are_qualified_with_the_local_domain() {
        let config = DnsConfig {
            domain: "coop.lan".into(),
            ..DnsConfig::default()
        };
        assert_eq!(config.qualify("Hub"), "hub.coop.lan");
        assert_eq!(config.qualify("printer.coop.lan."), "printer.coop.lan");
        assert_eq!(config.qualify("nas.example.org"), "nas.example.org");
    }

    #[test]
    fn the_probe_asks_a_real_listening_address() {
        let mut config = DnsConfig {
            port: 5300,
            ..DnsConfig::default()
        };
        assert_eq!(config.probe_target().to_string(), "127.0.0.1:5300");
        config.listen_addresses = vec!["0.0.0.0".parse().unwrap()];
        assert_eq!(config.probe_target().to_string(), "127.0.0.1:5300");
        config.listen_addresses = vec!["::".parse().unwrap()];
        assert_eq!(config.probe_target().to_string(), "[::1]:5300");
        config.listen_addresses = vec![];
        config.interfaces = vec!["eth0".into()];
        assert_eq!(config.probe_target().to_string(), "127.0.0.1:5300");
    }
}

//! `/etc/ntari/services/dhcp.toml`: what the admin writes, and the checks
//! serde cannot express (every address where it belongs, nothing twice).

use std::collections::HashSet;
use std::fmt;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::str::FromStr;

use ntari_node::service::ConfigIssue;
use ntari_node::validate::{dns_name as check_dns_name, interface_name as check_interface_name};
use ntari_schemas::leases::MacAddr;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Every key but `interfaces` and `subnets` is optional; defaults per field.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct DhcpConfig {
    /// Interfaces Kea answers on, e.g. `["br-lan"]`. Required.
    pub interfaces: Vec<String>,
    /// Lease time in seconds (Kea `valid-lifetime`); clients renew at half
    /// of it. Default 3600.
    pub lease_time: u32,
    /// Option 15, the clients' DNS domain. Default: none.
    pub domain_name: Option<String>,
    /// Option 6, the resolvers clients use (the hub running ntari-dns).
    /// Default: none.
    pub dns_servers: Vec<Ipv4Addr>,
    /// Option 42, the time servers (the hub running ntari-ntp). Default: none.
    pub ntp_servers: Vec<Ipv4Addr>,
    /// Kea's log severity: `debug`, `info` (every lease), `warn`, `error`.
    /// Default `info`.
    pub log_level: LogLevel,
    /// Seconds between Kea's runs that reclaim expired leases (and so
    /// publish `expired` events). Default 10.
    pub reclaim_interval: u32,
    /// Where Kea's hook libraries are. Default: found among the usual
    /// places (Debian's multiarch dir, Alpine's /usr/lib/kea/hooks).
    pub hooks_dir: Option<PathBuf>,
    /// The networks served. Required.
    pub subnets: Vec<Subnet>,
}

impl Default for DhcpConfig {
    fn default() -> Self {
        DhcpConfig {
            interfaces: Vec::new(),
            lease_time: 3600,
            domain_name: None,
            dns_servers: Vec::new(),
            ntp_servers: Vec::new(),
            log_level: LogLevel::Info,
            reclaim_interval: 10,
            hooks_dir: None,
            subnets: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
}

impl LogLevel {
    /// Kea's name for it.
    pub fn kea_severity(self) -> &'static str {
        match self {
            LogLevel::Debug => "DEBUG",
            LogLevel::Info => "INFO",
            LogLevel::Warn => "WARN",
            LogLevel::Error => "ERROR",
        }
    }
}

/// One `[[subnets]]` table.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Subnet {
    /// Kea's subnet id; leases refer to it, so it must stay the same when
    /// subnets are added or reordered. Default: the position (1, 2, …).
    #[serde(default)]
    pub id: Option<u32>,
    /// `192.168.50.0/24`.
    pub subnet: Cidr,
    /// Address ranges handed out: `"192.168.50.100 - 192.168.50.199"`,
    /// `"192.168.50.100-192.168.50.199"` or a CIDR inside the subnet.
    #[serde(default)]
    pub pools: Vec<Pool>,
    /// Option 3, the default gateway.
    #[serde(default)]
    pub router: Option<Ipv4Addr>,
    /// Overrides of the top-level settings for this subnet.
    #[serde(default)]
    pub lease_time: Option<u32>,
    #[serde(default)]
    pub domain_name: Option<String>,
    #[serde(default)]
    pub dns_servers: Option<Vec<Ipv4Addr>>,
    #[serde(default)]
    pub ntp_servers: Option<Vec<Ipv4Addr>>,
    /// Fixed addresses by hardware address.
    #[serde(default)]
    pub reservations: Vec<Reservation>,
}

/// One `[[subnets.reservations]]` table.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Reservation {
    pub mac: MacAddr,
    pub ip: Ipv4Addr,
    #[serde(default)]
    pub hostname: Option<String>,
}

/// An IPv4 network, host bits zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub network: Ipv4Addr,
    pub prefix: u8,
}

impl Cidr {
    fn mask(self) -> u32 {
        if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(self.prefix))
        }
    }

    pub fn first(self) -> Ipv4Addr {
        self.network
    }

    pub fn last(self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) | !self.mask())
    }

    pub fn contains(self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.network)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || format!("`{text}` is not an IPv4 network like 192.168.50.0/24");
        let (ip, prefix) = text.trim().split_once('/').ok_or_else(bad)?;
        let network: Ipv4Addr = ip.parse().map_err(|_| bad())?;
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        if prefix > 32 {
            return Err(bad());
        }
        let cidr = Cidr { network, prefix };
        if u32::from(network) & !cidr.mask() != 0 {
            let fixed = Ipv4Addr::from(u32::from(network) & cidr.mask());
            return Err(format!(
                "`{text}` has host bits set; the network is {fixed}/{prefix}"
            ));
        }
        Ok(cidr)
    }
}

/// An address range, inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pool {
    pub first: Ipv4Addr,
    pub last: Ipv4Addr,
}

impl Pool {
    /// Kea's notation.
    pub fn kea_form(&self) -> String {
        format!("{} - {}", self.first, self.last)
    }

    fn overlaps(&self, other: &Pool) -> bool {
        self.first <= other.last && other.first <= self.last
    }
}

impl fmt::Display for Pool {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(&self.kea_form())
    }
}

impl FromStr for Pool {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        if text.contains('/') {
            let cidr: Cidr = text.parse()?;
            return Ok(Pool {
                first: cidr.first(),
                last: cidr.last(),
            });
        }
        let bad =
            || format!("`{text}` is not a pool like \"192.168.50.100 - 192.168.50.199\" or a CIDR");
        let (first, last) = text.split_once('-').ok_or_else(bad)?;
        let first: Ipv4Addr = first.trim().parse().map_err(|_| bad())?;
        let last: Ipv4Addr = last.trim().parse().map_err(|_| bad())?;
        if first > last {
            return Err(format!("`{text}`: the range ends before it starts"));
        }
        Ok(Pool { first, last })
    }
}

/// Values written as one string in dhcp.toml: parsed with `FromStr`,
/// written back with `Display` (the form the parser takes).
macro_rules! serde_as_string {
    ($type:ty) => {
        impl<'de> Deserialize<'de> for $type {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }

        impl Serialize for $type {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }
    };
}
serde_as_string!(Cidr);
serde_as_string!(Pool);

impl Subnet {
    /// The id Kea uses: `id`, or the 1-based position.
    pub fn kea_id(&self, index: usize) -> u32 {
        self.id
            .unwrap_or_else(|| u32::try_from(index + 1).unwrap_or(u32::MAX))
    }
}

impl DhcpConfig {
    /// Everything serde cannot check, named by TOML key.
    pub fn validate(&self) -> Result<(), ConfigIssue> {
        if self.interfaces.is_empty() {
            return Err(ConfigIssue::new(
                "interfaces",
                "empty: name the LAN interface(s) Kea answers on, e.g. [\"br-lan\"]",
            ));
        }
        for (i, name) in self.interfaces.iter().enumerate() {
            check_interface_name(name)
                .map_err(|m| ConfigIssue::new(format!("interfaces[{i}]"), m))?;
        }
        if self.lease_time == 0 {
            return Err(ConfigIssue::new("lease_time", "0 s: leases must last"));
        }
        if !(1..=3600).contains(&self.reclaim_interval) {
            return Err(ConfigIssue::new(
                "reclaim_interval",
                format!("{} s is outside 1-3600", self.reclaim_interval),
            ));
        }
        if let Some(domain) = &self.domain_name {
            check_dns_name(domain).map_err(|m| ConfigIssue::new("domain_name", m))?;
        }
        if self.subnets.is_empty() {
            return Err(ConfigIssue::new(
                "subnets",
                "none: add a [[subnets]] table with the network and a pool to hand out",
            ));
        }
        let mut ids = HashSet::new();
        for (i, subnet) in self.subnets.iter().enumerate() {
            let key = |field: &str| format!("subnets[{i}].{field}");
            let id = subnet.kea_id(i);
            if id == 0 {
                return Err(ConfigIssue::new(
                    key("id"),
                    "0 is not a subnet id (use 1 or more)",
                ));
            }
            if !ids.insert(id) {
                return Err(ConfigIssue::new(
                    key("id"),
                    format!("subnet id {id} is used twice; give each subnet its own `id`"),
                ));
            }
            for (j, other) in self.subnets[..i].iter().enumerate() {
                if subnet.subnet.contains(other.subnet.network)
                    || other.subnet.contains(subnet.subnet.network)
                {
                    return Err(ConfigIssue::new(
                        key("subnet"),
                        format!("{} overlaps subnets[{j}] ({})", subnet.subnet, other.subnet),
                    ));
                }
            }
            check_subnet(subnet, &key)?;
        }
        Ok(())
    }
}

fn check_subnet(subnet: &Subnet, key: &dyn Fn(&str) -> String) -> Result<(), ConfigIssue> {
    let net = subnet.subnet;
    for (p, pool) in subnet.pools.iter().enumerate() {
        if !net.contains(pool.first) || !net.contains(pool.last) {
            return Err(ConfigIssue::new(
                key(&format!("pools[{p}]")),
                format!("{} is not inside {net}", pool.kea_form()),
            ));
        }
        for (q, other) in subnet.pools[..p].iter().enumerate() {
            if pool.overlaps(other) {
                return Err(ConfigIssue::new(
                    key(&format!("pools[{p}]")),
                    format!("{} overlaps pools[{q}]", pool.kea_form()),
                ));
            }
        }
    }
    if subnet.pools.is_empty() && subnet.reservations.is_empty() {
        return Err(ConfigIssue::new(
            key("pools"),
            "empty, and no reservations: this subnet would hand out nothing",
        ));
    }
    if let Some(router) = subnet.router {
        if !net.contains(router) {
            return Err(ConfigIssue::new(
                key("router"),
                format!("{router} is not inside {net}: clients could not reach it"),
            ));
        }
    }
    if subnet.lease_time == Some(0) {
        return Err(ConfigIssue::new(key("lease_time"), "0 s: leases must last"));
    }
    if let Some(domain) = &subnet.domain_name {
        check_dns_name(domain).map_err(|m| ConfigIssue::new(key("domain_name"), m))?;
    }
    let mut macs = HashSet::new();
    let mut ips = HashSet::new();
    for (r, reservation) in subnet.reservations.iter().enumerate() {
        let rkey = |field: &str| key(&format!("reservations[{r}].{field}"));
        if !net.contains(reservation.ip) {
            return Err(ConfigIssue::new(
                rkey("ip"),
                format!("{} is not inside {net}", reservation.ip),
            ));
        }
        if !macs.insert(reservation.mac) {
            return Err(ConfigIssue::new(
                rkey("mac"),
                format!("{} has a reservation already", reservation.mac),
            ));
        }
        if !ips.insert(reservation.ip) {
            return Err(ConfigIssue::new(
                rkey("ip"),
                format!("{} is reserved already", reservation.ip),
            ));
        }
        if let Some(name) = &reservation.hostname {
            check_dns_name(name).map_err(|m| ConfigIssue::new(rkey("hostname"), m))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(toml_text: &str) -> DhcpConfig {
        toml::from_str(toml_text).unwrap()
    }

    const GOOD: &str = r#"
        interfaces = ["br-lan"]
        dns_servers = ["192.168.50.1"]
        [[subnets]]
        subnet = "192.168.50.0/24"
        pools = ["192.168.50.100 - 192.168.50.199", "192.168.50.200-192.168.50.209", "192.168.50.224/28"]
        router = "192.168.50.1"
        [[subnets.reservations]]
        mac = "52:54:00:12:34:56"
        ip = "192.168.50.10"
        hostname = "printer"
    "#;

    #[test]
    fn a_typical_config_is_valid() {
        let c = config(GOOD);
        c.validate().unwrap();
        let pools = &c.subnets[0].pools;
        assert_eq!(pools[1].kea_form(), "192.168.50.200 - 192.168.50.209");
        assert_eq!(pools[2].kea_form(), "192.168.50.224 - 192.168.50.239");
        assert_eq!(c.subnets[0].kea_id(0), 1);
    }

    #[test]
    fn serialising_gives_back_what_the_admin_wrote() {
        // The node shows its config as ROS parameters from this form.
        let example = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../examples/dhcp.toml"
        ))
        .unwrap();
        let full = r#"
            interfaces = ["br-lan", "wlan0"]
            lease_time = 600
            domain_name = "coop.lan"
            dns_servers = ["192.168.50.1"]
            ntp_servers = ["192.168.50.1"]
            log_level = "debug"
            reclaim_interval = 5
            hooks_dir = "/usr/lib/kea/hooks"
            [[subnets]]
            id = 7
            subnet = "192.168.50.0/24"
            pools = ["192.168.50.100 - 192.168.50.199", "192.168.50.224/28"]
            router = "192.168.50.1"
            lease_time = 60
            domain_name = "lab.coop.lan"
            dns_servers = ["192.168.50.2"]
            ntp_servers = []
            [[subnets.reservations]]
            mac = "52:54:00:12:34:56"
            ip = "192.168.50.10"
            hostname = "printer"
        "#;
        for text in [example.as_str(), full] {
            let c = config(text);
            let again: DhcpConfig = toml::from_str(&toml::to_string(&c).unwrap()).unwrap();
            assert_eq!(again, c);
        }
        let json = serde_json::to_value(config(GOOD)).unwrap();
        assert_eq!(
            json["subnets"][0]["pools"][2],
            "192.168.50.224 - 192.168.50.239"
        );
        assert_eq!(
            json["subnets"][0]["reservations"][0]["mac"],
            "52:54:00:12:34:56"
        );
        assert_eq!(json["log_level"], "info");
    }

    #[test]
    fn syntax_errors_are_serde_errors() {
        for bad in [
            r#"subnets = [{ subnet = "192.168.50.1/24" }]"#,
            r#"subnets = [{ subnet = "192.168.50.0/33" }]"#,
            r#"subnets = [{ subnet = "192.168.50.0/24", pools = ["192.168.50.9 - 192.168.50.1"] }]"#,
            r#"subnets = [{ subnet = "192.168.50.0/24", reservations = [{ mac = "52:54", ip = "192.168.50.2" }] }]"#,
            r#"log_level = "chatty""#,
            r#"dns_servers = ["::1"]"#,
        ] {
            assert!(toml::from_str::<DhcpConfig>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn validation_names_the_key() {
        let cases = [
            ("interfaces = []", "interfaces"),
            ("interfaces = [\"a/b\"]", "interfaces[0]"),
            ("lease_time = 0", "lease_time"),
            ("reclaim_interval = 0", "reclaim_interval"),
            ("domain_name = \"bad_name\"", "domain_name"),
        ];
        for (line, key) in cases {
            let mut c = config(&format!(
                "{line}\n{}",
                GOOD.replace("interfaces = [\"br-lan\"]", "")
            ));
            if !line.starts_with("interfaces") {
                c.interfaces = vec!["br-lan".into()];
            }
            assert_eq!(c.validate().unwrap_err().key, key, "{line}");
        }
        let mut c = config(GOOD);
        c.subnets.clear();
        assert_eq!(c.validate().unwrap_err().key, "subnets");

        let subnet_cases: [(&str, &str, &str); 9] = [
            ("pools = [\"192.168.51.1 - 192.168.51.9\"]", "subnets[0].pools[0]", "not inside"),
            (
                "pools = [\"192.168.50.1 - 192.168.50.9\", \"192.168.50.5 - 192.168.50.20\"]",
                "subnets[0].pools[1]",
                "overlaps",
            ),
            ("pools = []", "subnets[0].pools", "hand out nothing"),
            ("router = \"10.0.0.1\"\npools = [\"192.168.50.10/31\"]", "subnets[0].router", "not inside"),
            ("lease_time = 0\npools = [\"192.168.50.10/31\"]", "subnets[0].lease_time", "must last"),
            ("id = 0\npools = [\"192.168.50.10/31\"]", "subnets[0].id", "not a subnet id"),
            (
                "pools = [\"192.168.50.10/31\"]\n[[subnets.reservations]]\nmac = \"52:54:00:00:00:01\"\nip = \"10.1.1.1\"",
                "subnets[0].reservations[0].ip",
                "not inside",
            ),
            (
                "pools = [\"192.168.50.10/31\"]\n[[subnets.reservations]]\nmac = \"52:54:00:00:00:01\"\nip = \"192.168.50.2\"\n[[subnets.reservations]]\nmac = \"52:54:00:00:00:01\"\nip = \"192.168.50.3\"",
                "subnets[0].reservations[1].mac",
                "already",
            ),
            (
                "pools = [\"192.168.50.10/31\"]\n[[subnets.reservations]]\nmac = \"52:54:00:00:00:01\"\nip = \"192.168.50.2\"\nhostname = \"a b\"",
                "subnets[0].reservations[0].hostname",
                "letters, digits",
            ),
        ];
        for (body, key, words) in subnet_cases {
            let c = config(&format!(
                "interfaces = [\"br-lan\"]\n[[subnets]]\nsubnet = \"192.168.50.0/24\"\n{body}"
            ));
            let issue = c.validate().unwrap_err();
            assert_eq!(issue.key, key, "{body}: {issue}");
            assert!(issue.message.contains(words), "{body}: {issue}");
        }
    }

    #[test]
    fn subnets_may_not_overlap_or_share_ids() {
        let two = |a: &str, b: &str, ids: &str| {
            config(&format!(
                "interfaces = [\"x\"]\n[[subnets]]\nsubnet = \"{a}\"\npools = [\"{a}\"]\n{ids}\n[[subnets]]\nsubnet = \"{b}\"\npools = [\"{b}\"]"
            ))
        };
        two("10.0.0.0/24", "10.0.1.0/24", "").validate().unwrap();
        let issue = two("10.0.0.0/16", "10.0.1.0/24", "")
            .validate()
            .unwrap_err();
        assert_eq!(issue.key, "subnets[1].subnet");
        let issue = two("10.0.0.0/24", "10.0.1.0/24", "id = 2")
            .validate()
            .unwrap_err();
        assert_eq!(issue.key, "subnets[1].id");
    }

    #[test]
    fn cidr_arithmetic() {
        let c: Cidr = "192.168.50.0/24".parse().unwrap();
        assert_eq!(c.last().to_string(), "192.168.50.255");
        assert!(c.contains("192.168.50.7".parse().unwrap()));
        assert!(!c.contains("192.168.51.7".parse().unwrap()));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("8.8.8.8".parse().unwrap()));
        let err = "192.168.50.1/24".parse::<Cidr>().unwrap_err();
        assert!(err.contains("192.168.50.0/24"), "{err}");
    }
}

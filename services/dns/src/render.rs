//! The files dnsmasq reads, rendered from the config and the lease names.
//!
//! - `dnsmasq.conf`: every option; changing it means a restart;
//! - `hosts.d/static` and `hosts.d/leases`: hosts files in dnsmasq's
//!   `hostsdir`, which dnsmasq watches with inotify. A rewritten file
//!   (atomically renamed into place) is re-read by itself: its old names are
//!   flushed, the new ones added, and the rest of the cache is kept. That is
//!   why names change without a SIGHUP, which would empty the whole cache.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ntari_node::service::Paths;

use crate::config::DnsConfig;

/// The rendered dnsmasq config, relative to the run dir.
pub const CONFIG_FILE: &str = "dnsmasq.conf";
/// dnsmasq's `hostsdir`, relative to the run dir.
pub const HOSTS_DIR: &str = "hosts.d";
/// The `[[hosts]]` of the config.
pub const STATIC_HOSTS: &str = "hosts.d/static";
/// The names of DHCP clients, from `/ntari/dhcp/leases`.
pub const LEASE_HOSTS: &str = "hosts.d/leases";

/// IANA's root zone trust anchors (KSK-2017 and KSK-2024, from
/// https://data.iana.org/root-anchors/root-anchors.xml), as dnsmasq's
/// `trust-anchor` values.
const ROOT_TRUST_ANCHORS: [&str; 2] = [
    ".,20326,8,2,E06D44B80B8F1D39A95C0B0D7C65D08458E880409BBC683457104237C7F8EC8D",
    ".,38696,8,2,683D2D0ACB8C9B712A1948B27F741219298D0A450D612C483AF444A4C0FB2B16",
];

pub fn config_path(paths: &Paths) -> PathBuf {
    paths.run_dir.join(CONFIG_FILE)
}

/// `dnsmasq.conf`. DNS only: no `dhcp-range`, so dnsmasq's DHCP server
/// stays off (DHCP is ntari-dhcp's job).
pub fn dnsmasq_conf(config: &DnsConfig, paths: &Paths) -> String {
    let mut out = String::new();
    let mut line = |text: String| {
        out.push_str(&text);
        out.push('\n');
    };
    line(format!(
        "# Rendered by ntari-dns from {}; edit that file, not this one.",
        paths.config.display()
    ));
    line("# DNS only: no dhcp-range, DHCP is ntari-dhcp's job.".into());
    line(format!("port={}", config.port));
    for ip in &config.listen_addresses {
        line(format!("listen-address={ip}"));
    }
    for interface in &config.interfaces {
        line(format!("interface={interface}"));
    }
    // Bind only the addresses above, so another resolver on this machine
    // (or a second ntari-dns in a test) keeps its own.
    line("bind-interfaces".into());
    line(format!("user={}", config.user));
    // The node supervises dnsmasq; no pid file, logs to stderr (the node's log).
    line("pid-file=".into());
    line("log-facility=-".into());
    // Answers come from this file only: not /etc/resolv.conf, not /etc/hosts.
    line("no-resolv".into());
    line("no-hosts".into());
    // Never forward plain names or private reverse lookups upstream.
    line("domain-needed".into());
    line("bogus-priv".into());
    let domain = config.domain.trim_end_matches('.').to_ascii_lowercase();
    line(format!("domain={domain}"));
    line(format!("local=/{domain}/"));
    line(format!(
        "hostsdir={}",
        paths.run_dir.join(HOSTS_DIR).display()
    ));
    line(format!("cache-size={}", config.cache_size));
    if !config.negative_cache {
        line("no-negcache".into());
    }
    for server in &config.upstream_servers {
        line(format!("server={}", server.dnsmasq_form()));
    }
    for wildcard in &config.wildcards {
        let domain = wildcard.domain.trim_end_matches('.').to_ascii_lowercase();
        for ip in &wildcard.addresses {
            line(format!("address=/{domain}/{ip}"));
        }
    }
    if config.dnssec {
        line("dnssec".into());
        for anchor in ROOT_TRUST_ANCHORS {
            line(format!("trust-anchor={anchor}"));
        }
    }
    if config.log_queries {
        line("log-queries".into());
    }
    out
}

fn hosts_line(out: &mut String, ip: IpAddr, names: &[&str]) {
    // Writing to a String cannot fail.
    let _ = writeln!(out, "{ip} {}", names.join(" "));
}

/// `hosts.d/static`: the `[[hosts]]` entries. A name in the local domain
/// also answers by its bare label (`hub` as well as `hub.coop.lan`).
pub fn static_hosts(config: &DnsConfig) -> String {
    let mut out = String::from("# [[hosts]] of the ntari-dns config\n");
    for host in &config.hosts {
        let fqdn = config.qualify(&host.name);
        let bare = bare_label(config, &fqdn);
        for ip in &host.addresses {
            match bare {
                Some(label) => hosts_line(&mut out, *ip, &[&fqdn, label]),
                None => hosts_line(&mut out, *ip, &[&fqdn]),
            }
        }
    }
    out
}

/// The lease names that go into `hosts.d/leases`: `(fqdn, label, ip)`,
/// leaving out names a `[[hosts]]` entry already defines (static records
/// win).
pub fn lease_entries<'a>(
    config: &DnsConfig,
    names: &[(&'a str, IpAddr)],
) -> Vec<(String, &'a str, IpAddr)> {
    let static_names: Vec<String> = config
        .hosts
        .iter()
        .map(|h| config.qualify(&h.name))
        .collect();
    names
        .iter()
        .map(|&(label, ip)| (config.qualify(label), label, ip))
        .filter(|(fqdn, _, _)| !static_names.contains(fqdn))
        .collect()
}

/// `hosts.d/leases`: one line per lease name, `<ip> <label>.<domain> <label>`.
pub fn lease_hosts(config: &DnsConfig, names: &[(&str, IpAddr)]) -> String {
    let mut out = String::from("# DHCP clients, from /ntari/dhcp/leases\n");
    for (fqdn, label, ip) in lease_entries(config, names) {
        hosts_line(&mut out, ip, &[&fqdn, label]);
    }
    out
}

/// The label of `fqdn` if it is directly under the local domain.
fn bare_label<'a>(config: &DnsConfig, fqdn: &'a str) -> Option<&'a str> {
    let domain = config.domain.trim_end_matches('.').to_ascii_lowercase();
    let label = fqdn.strip_suffix(&domain)?.strip_suffix('.')?;
    (!label.contains('.')).then_some(label)
}

/// dnsmasq refuses nothing about a hostsdir at `--test`, so a run dir that
/// the unprivileged `user` cannot enter only shows at run time, as names
/// that never resolve. Returns the path it cannot pass, if any.
pub fn unreadable_for_others(dir: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let mut path = Some(dir);
    while let Some(p) = path {
        if let Ok(meta) = std::fs::metadata(p) {
            if meta.permissions().mode() & 0o001 == 0 {
                return Some(p.to_path_buf());
            }
        }
        path = p.parent();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{HostRecord, Wildcard};

    fn paths() -> Paths {
        Paths {
            config: "/etc/ntari/services/dns.toml".into(),
            state_dir: "/var/lib/ntari/dns".into(),
            run_dir: "/run/ntari/dns".into(),
        }
    }

    fn config() -> DnsConfig {
        DnsConfig {
            listen_addresses: vec![
                "192.168.50.1".parse().unwrap(),
                "127.0.0.1".parse().unwrap(),
            ],
            interfaces: vec!["br-lan".into()],
            domain: "Coop.Lan".into(),
            upstream_servers: vec![
                "9.9.9.9".parse().unwrap(),
                "[2620:fe::fe]:53".parse().unwrap(),
            ],
            cache_size: 5000,
            negative_cache: false,
            dnssec: true,
            log_queries: true,
            hosts: vec![
                HostRecord {
                    name: "hub".into(),
                    addresses: vec!["192.168.50.1".parse().unwrap(), "fd00::1".parse().unwrap()],
                },
                HostRecord {
                    name: "nas.example.org".into(),
                    addresses: vec!["192.168.50.9".parse().unwrap()],
                },
            ],
            wildcards: vec![Wildcard {
                domain: "apps.coop.lan".into(),
                addresses: vec!["192.168.50.2".parse().unwrap()],
            }],
            ..DnsConfig::default()
        }
    }

    #[test]
    fn dnsmasq_conf_has_every_option() {
        let conf = dnsmasq_conf(&config(), &paths());
        let lines: Vec<&str> = conf.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            lines,
            [
                "port=53",
                "listen-address=192.168.50.1",
                "listen-address=127.0.0.1",
                "interface=br-lan",
                "bind-interfaces",
                "user=dnsmasq",
                "pid-file=",
                "log-facility=-",
                "no-resolv",
                "no-hosts",
                "domain-needed",
                "bogus-priv",
                "domain=coop.lan",
                "local=/coop.lan/",
                "hostsdir=/run/ntari/dns/hosts.d",
                "cache-size=5000",
                "no-negcache",
                "server=9.9.9.9#53",
                "server=2620:fe::fe#53",
                "address=/apps.coop.lan/192.168.50.2",
                "dnssec",
                "trust-anchor=.,20326,8,2,E06D44B80B8F1D39A95C0B0D7C65D08458E880409BBC683457104237C7F8EC8D",
                "trust-anchor=.,38696,8,2,683D2D0ACB8C9B712A1948B27F741219298D0A450D612C483AF444A4C0FB2B16",
                "log-queries",
            ]
        );
        assert!(conf.contains("/etc/ntari/services/dns.toml"));
    }

    #[test]
    fn offline_defaults_render_no_server_and_no_optional_lines() {
        let conf = dnsmasq_conf(&DnsConfig::default(), &paths());
        assert!(!conf.contains("server="));
        for absent in [
            "no-negcache",
            "dnssec",
            "log-queries",
            "\naddress=",
            "\ninterface=",
        ] {
            assert!(!conf.contains(absent), "{absent} in\n{conf}");
        }
        assert!(conf.contains("local=/home.arpa/"));
    }

    #[test]
    fn static_hosts_answer_by_full_and_bare_name() {
        assert_eq!(
            static_hosts(&config()),
            "# [[hosts]] of the ntari-dns config\n\
             192.168.50.1 hub.coop.lan hub\n\
             fd00::1 hub.coop.lan hub\n\
             192.168.50.9 nas.example.org\n"
        );
    }

    #[test]
    fn lease_names_never_shadow_static_hosts() {
        let names = [
            ("hub", "192.168.50.77".parse().unwrap()),
            ("laptop", "192.168.50.23".parse().unwrap()),
        ];
        assert_eq!(
            lease_hosts(&config(), &names),
            "# DHCP clients, from /ntari/dhcp/leases\n192.168.50.23 laptop.coop.lan laptop\n"
        );
        assert_eq!(lease_entries(&config(), &names).len(), 1);
    }
}

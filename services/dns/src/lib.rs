//! ntari-dns: the NTARI OS name service, dnsmasq supervised by a ROS 2
//! lifecycle node.
//!
//! A cooperative's hub answers DNS for its LAN even with the uplink down
//! (offline mode: no upstream servers), forwards everything else upstream
//! when there is one, and resolves the names of its own machines: static
//! `[[hosts]]` from the config, and every DHCP client by the hostname it
//! sent, from the leases ntari-dhcp publishes on `/ntari/dhcp/leases`.
//!
//! This crate is only what is specific to dnsmasq (DESIGN.md §5):
//! - [`config`]: `/etc/ntari/services/dns.toml` and its checks;
//! - [`render`]: `dnsmasq.conf` and the two hosts files of its `hostsdir`;
//! - [`names`]: DNS name rules and the names leases give;
//! - [`stats`]: the probe, a CHAOS-class statistics query, and the metrics
//!   named as dnsmasq_exporter names them.
//!
//! dnsmasq runs in the foreground (`-k`), DNS only, logging to the node.
//! Name changes (a lease, a `[[hosts]]` edit) reach it through its
//! inotify-watched hostsdir: no restart and no SIGHUP, so the cache is
//! kept. Every other config change restarts it.

pub mod config;
pub mod names;
pub mod render;
pub mod stats;

use std::future::Future;
use std::time::{SystemTime, UNIX_EPOCH};

use ntari_node::service::{
    Command, ConfigIssue, DaemonSpec, Input, MetricDesc, Paths, ProbeReport, Reload, RenderedFile,
    Service,
};
use ntari_schemas::leases::{self, LeaseMessage};
use serde_json::{json, Value};

pub use config::DnsConfig;
use names::LeaseNames;

const DNSMASQ: &str = "dnsmasq";

/// The service, holding the lease names it has heard of.
#[derive(Debug, Default)]
pub struct Dns {
    leases: LeaseNames,
}

fn unix_now(now: SystemTime) -> u64 {
    now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()
}

impl Dns {
    /// `hosts.d/leases` as it is now.
    fn lease_hosts(&self, config: &DnsConfig) -> String {
        render::lease_hosts(config, &self.leases.live(unix_now(SystemTime::now())))
    }

    /// How many lease names `hosts.d/leases` holds now.
    fn lease_name_count(&self, config: &DnsConfig) -> usize {
        render::lease_entries(config, &self.leases.live(unix_now(SystemTime::now()))).len()
    }
}

impl Service for Dns {
    type Config = DnsConfig;

    const NAME: &'static str = "dns";
    const DAEMON: &'static str = "dnsmasq";
    const METRICS_PORT: u16 = 9701;

    /// The config's own checks, then that `user` exists here: dnsmasq
    /// dies at start-up on an unknown user, and `dnsmasq --test` misses it.
    fn validate(&self, config: &DnsConfig) -> Result<(), ConfigIssue> {
        config.validate()?;
        match nix::unistd::User::from_name(&config.user) {
            Ok(Some(_)) => Ok(()),
            Ok(None) => Err(ConfigIssue::new(
                "user",
                format!(
                    "no user `{}` on this machine; install dnsmasq's package (it creates `dnsmasq`) or name an existing unprivileged user",
                    config.user
                ),
            )),
            Err(e) => Err(ConfigIssue::new(
                "user",
                format!("cannot look up user `{}`: {e}", config.user),
            )),
        }
    }

    /// `dnsmasq.conf` and the hostsdir files, mode 0644: dnsmasq reads the
    /// hosts files after dropping privileges to `user`.
    fn render(&self, config: &DnsConfig, paths: &Paths) -> Vec<RenderedFile> {
        vec![
            RenderedFile {
                name: render::CONFIG_FILE.to_string(),
                contents: render::dnsmasq_conf(config, paths),
                mode: 0o644,
            },
            RenderedFile {
                name: render::STATIC_HOSTS.to_string(),
                contents: render::static_hosts(config),
                mode: 0o644,
            },
            RenderedFile {
                name: render::LEASE_HOSTS.to_string(),
                contents: self.lease_hosts(config),
                mode: 0o644,
            },
        ]
    }

    /// `dnsmasq --test`: parses every option and exits non-zero naming the
    /// bad line. It cannot see what only shows at start-up: an address not
    /// on this machine, a port in use, an unknown `user`; activate reports
    /// those from dnsmasq's own message.
    fn check_command(&self, _config: &DnsConfig, paths: &Paths) -> Option<Command> {
        Some(Command::new(
            DNSMASQ,
            [
                "--test".to_string(),
                format!("--conf-file={}", render::config_path(paths).display()),
            ],
        ))
    }

    /// `dnsmasq -k --conf-file=<run>/dnsmasq.conf`: foreground, logging to
    /// stderr (the conf says `log-facility=-`).
    fn daemons(&self, config: &DnsConfig, paths: &Paths) -> Vec<DaemonSpec> {
        if config.user != "root" {
            if let Some(dir) = render::unreadable_for_others(&paths.run_dir) {
                tracing::warn!(
                    dir = %dir.display(),
                    user = %config.user,
                    "dnsmasq drops privileges to this user, who cannot enter this directory: \
                     hosts files will not load and local names will not resolve. \
                     chmod o+x it, or choose another --run-dir"
                );
            }
        }
        let command = Command::new(
            DNSMASQ,
            [
                "--keep-in-foreground".to_string(),
                format!("--conf-file={}", render::config_path(paths).display()),
            ],
        );
        vec![DaemonSpec::new(Self::DAEMON, command)]
    }

    fn version_command(&self) -> Option<Command> {
        Some(Command::new(DNSMASQ, ["--version"]))
    }

    fn metrics(&self) -> &'static [MetricDesc] {
        stats::METRICS
    }

    /// One statistics query over UDP to the first listen address.
    fn probe(
        &self,
        config: &DnsConfig,
        _paths: &Paths,
    ) -> impl Future<Output = Result<ProbeReport, String>> + Send {
        let target = config.probe_target();
        let lease_names = self.lease_name_count(config);
        let static_names = config.hosts.len();
        let invalid = self.leases.invalid();
        let mode = if config.offline() {
            "offline"
        } else {
            "forwarding"
        };
        let domain = config.domain.clone();
        let upstreams = config.upstream_servers.len();
        let dnssec = config.dnssec;
        async move {
            let stats = stats::query_stats(target, stats::PROBE_TIMEOUT).await?;
            let mut detail = stats.detail();
            let summary = match upstreams {
                0 => format!("answering on {target}, offline: local names only"),
                n => format!("answering on {target}, forwarding to {n} upstream server(s)"),
            };
            detail.insert(
                "summary".into(),
                Value::String(format!(
                    "{summary}; {} static and {lease_names} DHCP client names in {domain}",
                    static_names
                )),
            );
            detail.insert("listen".into(), json!(target.to_string()));
            detail.insert("mode".into(), json!(mode));
            detail.insert("domain".into(), json!(domain));
            detail.insert("dnssec".into(), json!(dnssec));
            detail.insert(
                "names".into(),
                json!({"static": static_names, "leases": lease_names, "invalid_hostnames": invalid}),
            );
            Ok(ProbeReport {
                metrics: stats.metrics(lease_names),
                detail,
                ..Default::default()
            })
        }
    }

    /// Only `[[hosts]]` changed: the hostsdir files are rewritten and
    /// dnsmasq re-reads them itself, keeping its cache. Anything else
    /// (ports, upstreams, cache size, …) restarts it.
    fn reload(&self, old: &DnsConfig, new: &DnsConfig) -> Reload {
        let old_without_hosts = DnsConfig {
            hosts: new.hosts.clone(),
            ..old.clone()
        };
        if &old_without_hosts == new {
            Reload::Watched
        } else {
            Reload::Restart
        }
    }

    fn inputs(&self) -> &'static [Input] {
        &[Input {
            topic: leases::TOPIC,
            latched: true,
        }]
    }

    /// A lease message replaces the table; only a change in the names that
    /// resolve rewrites `hosts.d/leases` (a renewal alone does not).
    fn on_input(&mut self, _topic: &str, data: &str) -> Result<Option<Reload>, String> {
        let message = LeaseMessage::parse(data).map_err(|e| e.to_string())?;
        let changed = self
            .leases
            .replace(&message.leases, unix_now(SystemTime::now()));
        Ok(changed.then_some(Reload::Watched))
    }

    /// A lease ran out: its name goes, without waiting for ntari-dhcp to
    /// say so (it may be down).
    fn on_tick(&mut self, now: SystemTime) -> Option<Reload> {
        self.leases.expire(unix_now(now)).then_some(Reload::Watched)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use config::HostRecord;

    fn paths(dir: &std::path::Path) -> Paths {
        Paths {
            config: dir.join("dns.toml"),
            state_dir: dir.join("state"),
            run_dir: dir.join("run"),
        }
    }

    fn now() -> u64 {
        unix_now(SystemTime::now())
    }

    fn message(entries: &[(&str, &str, u64)]) -> String {
        let leases = entries
            .iter()
            .map(|(ip, name, expiry)| leases::Lease {
                ip: ip.parse().unwrap(),
                mac: "52:54:00:00:00:01".parse().unwrap(),
                hostname: Some(name.to_string()),
                expiry: *expiry,
            })
            .collect();
        LeaseMessage::snapshot(leases).to_json()
    }

    fn lease_file(dns: &Dns, config: &DnsConfig) -> String {
        let files = dns.render(config, &paths(std::path::Path::new("/x")));
        files
            .into_iter()
            .find(|f| f.name == render::LEASE_HOSTS)
            .unwrap()
            .contents
    }

    #[test]
    fn lease_messages_drive_the_lease_hosts_file() {
        let mut dns = Dns::default();
        let config = DnsConfig {
            domain: "coop.lan".into(),
            ..DnsConfig::default()
        };
        let later = now() + 3600;
        let first = message(&[("192.168.50.23", "Laptop", later)]);
        assert_eq!(
            dns.on_input(leases::TOPIC, &first),
            Ok(Some(Reload::Watched))
        );
        assert!(lease_file(&dns, &config).contains("192.168.50.23 laptop.coop.lan laptop\n"));
        // The same table again: nothing to do.
        assert_eq!(dns.on_input(leases::TOPIC, &first), Ok(None));

        let err = dns.on_input(leases::TOPIC, "{\"version\":1}").unwrap_err();
        assert!(err.contains("leases"), "{err}");
        assert!(
            lease_file(&dns, &config).contains("laptop.coop.lan"),
            "a bad message leaves the names alone"
        );

        assert_eq!(
            dns.on_input(leases::TOPIC, &message(&[])),
            Ok(Some(Reload::Watched))
        );
        assert!(!lease_file(&dns, &config).contains("laptop"));
    }

    #[test]
    fn the_tick_removes_expired_names() {
        let mut dns = Dns::default();
        let soon = now() + 2;
        dns.on_input(leases::TOPIC, &message(&[("10.0.0.2", "pi", soon)]))
            .unwrap();
        assert_eq!(dns.on_tick(SystemTime::now()), None);
        let after = UNIX_EPOCH + std::time::Duration::from_secs(soon);
        assert_eq!(dns.on_tick(after), Some(Reload::Watched));
    }

    #[test]
    fn only_host_record_changes_avoid_a_restart() {
        let old = DnsConfig::default();
        let hosts_changed = DnsConfig {
            hosts: vec![HostRecord {
                name: "hub".into(),
                addresses: vec!["10.0.0.1".parse().unwrap()],
            }],
            ..old.clone()
        };
        assert_eq!(Dns::default().reload(&old, &hosts_changed), Reload::Watched);
        let port_changed = DnsConfig {
            port: 5353,
            ..hosts_changed.clone()
        };
        assert_eq!(
            Dns::default().reload(&hosts_changed, &port_changed),
            Reload::Restart
        );
    }

    #[test]
    fn an_unknown_user_is_refused_before_dnsmasq_would_die_of_it() {
        let config = DnsConfig {
            user: "no-such-user-here".into(),
            ..DnsConfig::default()
        };
        let issue = Dns::default().validate(&config).unwrap_err();
        assert_eq!(issue.key, "user");
        assert!(
            issue.message.contains("no user `no-such-user-here`"),
            "{issue}"
        );
        let root = DnsConfig {
            user: "root".into(),
            ..DnsConfig::default()
        };
        Dns::default().validate(&root).unwrap();
    }

    #[test]
    fn the_service_reads_the_lease_topic_latched() {
        assert_eq!(
            Dns::default().inputs(),
            &[Input {
                topic: "/ntari/dhcp/leases",
                latched: true
            }]
        );
    }
}

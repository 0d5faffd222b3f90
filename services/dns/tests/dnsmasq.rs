//! Integration tests against the real dnsmasq, without the runtime: render
//! into a temp dir, run dnsmasq's own checker, run dnsmasq in the
//! foreground exactly as the runtime would (`daemons`), probe it,
//! and resolve names with `dig`. Loopback high ports only.
//!
//! The graph side (lifecycle, health, lease messages over DDS) is tested in
//! tests/interop/test_dns_node.py.

use std::fs;
use std::net::{TcpListener, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use ntari_dns::config::{HostRecord, Wildcard};
use ntari_dns::{render, Dns, DnsConfig};
use ntari_node::fsutil::write_atomic;
use ntari_node::service::{Paths, Reload, Service};
use ntari_schemas::leases::{Lease, LeaseMessage, TOPIC};
use tempfile::TempDir;

/// A config rendered into its own temp dir, as the runtime renders it.
struct Instance {
    dir: TempDir,
    paths: Paths,
    config: DnsConfig,
    dns: Dns,
}

impl Instance {
    fn new(config: DnsConfig) -> Instance {
        let dir = tempfile::tempdir().expect("tempdir");
        // dnsmasq reads the hosts files as the unprivileged user `dnsmasq`.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
        let paths = Paths {
            config: dir.path().join("dns.toml"),
            state_dir: dir.path().join("state"),
            run_dir: dir.path().join("run"),
        };
        let instance = Instance {
            dir,
            paths,
            config,
            dns: Dns::default(),
        };
        instance.write_files();
        instance
    }

    /// Renders and writes every file atomically, as the runtime does.
    fn write_files(&self) {
        for file in self.dns.render(&self.config, &self.paths) {
            let path = self.paths.run_dir.join(&file.name);
            fs::create_dir_all(path.parent().unwrap()).expect("mkdir");
            write_atomic(&path, file.contents.as_bytes(), file.mode).expect("write");
        }
    }

    fn check(&self) -> std::process::Output {
        let cmd = self
            .dns
            .check_command(&self.config, &self.paths)
            .expect("check command");
        std::process::Command::new(&cmd.program)
            .args(&cmd.args)
            .stdin(Stdio::null())
            .output()
            .expect("run dnsmasq --test")
    }

    fn start(&self) -> Daemon {
        let cmd = self
            .dns
            .daemons(&self.config, &self.paths)
            .remove(0)
            .command;
        Daemon::spawn(
            &cmd.program,
            &cmd.args,
            &self.dir.path().join("dnsmasq.log"),
        )
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("dnsmasq.log")).unwrap_or_default()
    }

    /// Probes until dnsmasq answers (it needs a few ms to bind).
    async fn probe_ready(&self) -> ntari_node::service::ProbeReport {
        let start = Instant::now();
        loop {
            match self.dns.probe(&self.config, &self.paths).await {
                Ok(report) => return report,
                Err(e) if start.elapsed() > Duration::from_secs(10) => {
                    panic!("dnsmasq never answered: {e}\nlog:\n{}", self.log())
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }

    fn dig(&self, name: &str) -> String {
        dig(self.config.port, name)
    }

    /// Digs until the answer is `want` (inotify takes a moment).
    fn dig_until(&self, name: &str, want: &str) {
        let start = Instant::now();
        loop {
            let got = self.dig(name);
            if got == want {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "{name}: `{got}`, expected `{want}`\nlog:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A process of ours, stopped by PID (SIGTERM, then SIGKILL) when dropped.
struct Daemon {
    child: Child,
}

impl Daemon {
    fn spawn(program: &str, args: &[String], log: &Path) -> Daemon {
        let log = fs::File::create(log).expect("log file");
        let child = std::process::Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn dnsmasq");
        Daemon { child }
    }

    fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = kill(self.pid(), Signal::SIGTERM);
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(2) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port free for both UDP and TCP on 127.0.0.1 (dnsmasq binds both).
fn free_port() -> u16 {
    for _ in 0..50 {
        let udp = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let port = udp.local_addr().expect("addr").port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port");
}

/// `dig +short`, one try: the answer lines joined by spaces.
fn dig(port: u16, name: &str) -> String {
    let out = std::process::Command::new("dig")
        .args([
            "+short",
            "+time=1",
            "+tries=1",
            "-p",
            &port.to_string(),
            "@127.0.0.1",
            name,
        ])
        .output()
        .expect("dig (bind9-dnsutils, installed by ci/setup.sh)");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// A plain dnsmasq the test starts itself, standing for the Internet: it
/// answers `*.up.example` with 10.1.1.1, cacheably (TTL 300), and logs
/// every query it gets.
struct Upstream {
    dir: TempDir,
    port: u16,
    _daemon: Daemon,
}

impl Upstream {
    fn start() -> Upstream {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let conf = dir.path().join("upstream.conf");
        fs::write(
            &conf,
            format!(
                "port={port}\nlisten-address=127.0.0.1\nbind-interfaces\nno-resolv\nno-hosts\n\
                 pid-file=\nuser=root\naddress=/up.example/10.1.1.1\nlocal-ttl=300\n\
                 log-queries\nlog-facility={}\n",
                dir.path().join("queries.log").display()
            ),
        )
        .expect("write upstream conf");
        let daemon = Daemon::spawn(
            "dnsmasq",
            &["-k".to_string(), format!("--conf-file={}", conf.display())],
            &dir.path().join("stderr.log"),
        );
        let start = Instant::now();
        while dig(port, "www.up.example") != "10.1.1.1" {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "upstream dnsmasq did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let upstream = Upstream {
            dir,
            port,
            _daemon: daemon,
        };
        upstream.clear_log();
        upstream
    }

    fn clear_log(&self) {
        fs::write(self.log_path(), "").expect("truncate");
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("queries.log")
    }

    /// How many times `name` was asked here.
    fn queries_for(&self, name: &str) -> usize {
        let needle = format!("] {name} from");
        fs::read_to_string(self.log_path())
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("query[") && l.contains(&needle))
            .count()
    }
}

fn host(name: &str, ip: &str) -> HostRecord {
    HostRecord {
        name: name.into(),
        addresses: vec![ip.parse().unwrap()],
    }
}

fn coop_config(port: u16) -> DnsConfig {
    DnsConfig {
        port,
        domain: "coop.lan".into(),
        hosts: vec![
            host("hub", "192.168.50.1"),
            host("nas.example.org", "192.168.50.9"),
        ],
        wildcards: vec![Wildcard {
            domain: "apps.coop.lan".into(),
            addresses: vec!["192.168.50.2".parse().unwrap()],
        }],
        ..DnsConfig::default()
    }
}

fn lease_message(entries: &[(&str, &str, u64)]) -> String {
    let leases = entries
        .iter()
        .map(|(ip, hostname, expiry)| Lease {
            ip: ip.parse().unwrap(),
            mac: "52:54:00:12:34:56".parse().unwrap(),
            hostname: Some(hostname.to_string()),
            expiry: *expiry,
        })
        .collect();
    LeaseMessage::snapshot(leases).to_json()
}

fn in_an_hour() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600
}

#[test]
fn checker_accepts_rendered_configs() {
    let full = DnsConfig {
        upstream_servers: vec![
            "9.9.9.9".parse().unwrap(),
            "[2620:fe::fe]:53".parse().unwrap(),
        ],
        interfaces: vec!["lo".into()],
        negative_cache: false,
        dnssec: true,
        log_queries: true,
        cache_size: 0,
        ..coop_config(15353)
    };
    for config in [DnsConfig::default(), coop_config(15353), full] {
        let inst = Instance::new(config);
        let out = inst.check();
        assert!(
            out.status.success(),
            "dnsmasq --test refused:\n{}\n{}",
            String::from_utf8_lossy(&out.stderr),
            fs::read_to_string(render::config_path(&inst.paths)).unwrap()
        );
    }
}

#[test]
fn checker_rejects_a_broken_config_with_dnsmasqs_message() {
    let inst = Instance::new(DnsConfig::default());
    let conf = render::config_path(&inst.paths);
    let mut text = fs::read_to_string(&conf).unwrap();
    text.push_str("cache-size=lots\n");
    fs::write(&conf, text).unwrap();
    let out = inst.check();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("dnsmasq.conf") && stderr.contains("line"),
        "dnsmasq names the file and line: {stderr}"
    );
}

#[tokio::test]
async fn probe_fails_when_nothing_listens() {
    let inst = Instance::new(DnsConfig {
        port: free_port(),
        ..DnsConfig::default()
    });
    let err = inst.dns.probe(&inst.config, &inst.paths).await.unwrap_err();
    // Loopback reports the closed port at once (ICMP), else the timeout.
    assert!(
        err.contains(&inst.config.port.to_string())
            && (err.contains("refused") || err.contains("did not answer")),
        "{err}"
    );
}

#[tokio::test]
async fn example_config_runs_as_is() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/dns.toml");
    let text = fs::read_to_string(&path).expect("examples/dns.toml");
    let config: DnsConfig = toml::from_str(&text).expect("example parses");
    Dns::default().validate(&config).expect("example is valid");
    // Its own port may be taken by a demo running alongside.
    let config = DnsConfig {
        port: free_port(),
        ..config
    };
    let inst = Instance::new(config);
    assert!(inst.check().status.success());
    let _dnsmasq = inst.start();
    let report = inst.probe_ready().await;
    assert_eq!(report.detail["cache"]["size"], 1000);
    assert_eq!(report.detail["mode"], "offline");
    assert_eq!(inst.dig("hub.coop.lan"), "127.0.0.1");
    assert_eq!(inst.dig("anything.apps.coop.lan"), "127.0.0.3");
}

#[tokio::test]
async fn static_wildcard_and_forwarded_names_resolve() {
    let upstream = Upstream::start();
    let inst = Instance::new(DnsConfig {
        upstream_servers: vec![format!("127.0.0.1#{}", upstream.port).parse().unwrap()],
        ..coop_config(free_port())
    });
    let _dnsmasq = inst.start();
    inst.probe_ready().await;
    assert_eq!(inst.dig("hub.coop.lan"), "192.168.50.1");
    assert_eq!(
        inst.dig("hub"),
        "192.168.50.1",
        "bare names of the local domain"
    );
    assert_eq!(inst.dig("nas.example.org"), "192.168.50.9");
    assert_eq!(inst.dig("apps.coop.lan"), "192.168.50.2");
    assert_eq!(inst.dig("a.b.apps.coop.lan"), "192.168.50.2");
    assert_eq!(inst.dig("www.up.example"), "10.1.1.1");
    // The local domain is never forwarded: an unknown name there is
    // answered here, at once.
    assert_eq!(inst.dig("nobody.coop.lan"), "");
    assert_eq!(upstream.queries_for("nobody.coop.lan"), 0);
    assert_eq!(upstream.queries_for("www.up.example"), 1);

    let report = inst.probe_ready().await;
    let server = format!("127.0.0.1#{}", upstream.port);
    assert_eq!(report.detail["mode"], "forwarding");
    assert_eq!(report.detail["upstream"][0]["server"], server.as_str());
    assert!(report.detail["upstream"][0]["queries"].as_u64().unwrap() >= 1);
    let forwarded = report
        .metrics
        .iter()
        .find(|m| m.name == "dnsmasq_servers_queries" && m.label_values == [server.as_str()])
        .expect("dnsmasq_servers_queries{server}");
    assert!(forwarded.value >= 1.0);
}

#[tokio::test]
async fn lease_names_come_and_go_and_the_cache_stays() {
    let upstream = Upstream::start();
    let mut inst = Instance::new(DnsConfig {
        upstream_servers: vec![format!("127.0.0.1#{}", upstream.port).parse().unwrap()],
        ..coop_config(free_port())
    });
    let dnsmasq = inst.start();
    inst.probe_ready().await;
    assert_eq!(inst.dig("www.up.example"), "10.1.1.1");
    assert_eq!(upstream.queries_for("www.up.example"), 1);

    // A laptop gets a lease; a client whose name is no DNS label gets one
    // too, and a lease claims the static name `hub`.
    let message = lease_message(&[
        ("192.168.50.23", "Laptop", in_an_hour()),
        ("192.168.50.24", "John's phone", in_an_hour()),
        ("192.168.50.25", "hub", in_an_hour()),
    ]);
    assert_eq!(
        inst.dns.on_input(TOPIC, &message),
        Ok(Some(Reload::Watched))
    );
    inst.write_files();
    inst.dig_until("laptop.coop.lan", "192.168.50.23");
    assert_eq!(inst.dig("laptop"), "192.168.50.23");
    assert_eq!(
        inst.dig("hub.coop.lan"),
        "192.168.50.1",
        "static records win"
    );
    let report = inst.probe_ready().await;
    assert_eq!(report.detail["names"]["leases"], 1);
    assert_eq!(report.detail["names"]["invalid_hostnames"], 1);

    // A static record added by config: rewritten files only, no restart.
    inst.config.hosts.push(host("printer", "192.168.50.3"));
    inst.write_files();
    inst.dig_until("printer.coop.lan", "192.168.50.3");

    // The laptop leaves.
    assert_eq!(
        inst.dns.on_input(TOPIC, &lease_message(&[])),
        Ok(Some(Reload::Watched))
    );
    inst.write_files();
    inst.dig_until("laptop.coop.lan", "");

    // All along, dnsmasq kept running and kept its cache: the forwarded
    // name is still answered from it, the upstream asked only once.
    assert_eq!(inst.dig("www.up.example"), "10.1.1.1");
    assert_eq!(
        upstream.queries_for("www.up.example"),
        1,
        "the cache was dropped"
    );
    assert!(
        kill(dnsmasq.pid(), None).is_ok(),
        "dnsmasq exited:\n{}",
        inst.log()
    );
}

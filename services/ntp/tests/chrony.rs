//! Integration tests against the real chronyd (4.x), without the runtime:
//! render into a temp dir, run chronyd's own checker, run chronyd in the
//! foreground exactly as the runtime would (`daemons`), and probe it
//! over its command socket. Loopback addresses only; every chronyd runs with
//! `-x` (leave_clock_alone) so the host clock is never touched.

use std::fs;
use std::net::UdpSocket;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use ntari_node::service::{Paths, ProbeReport, Service};
use ntari_ntp::{command_socket, Ntp, NtpConfig, Upstream, PID_FILE};
use serde_json::json;
use tempfile::TempDir;

/// A config rendered into its own temp dir.
struct Instance {
    dir: TempDir,
    paths: Paths,
    config: NtpConfig,
}

impl Instance {
    fn new(config: NtpConfig) -> Instance {
        let dir = tempfile::tempdir().expect("tempdir");
        let paths = Paths {
            config: dir.path().join("ntp.toml"),
            state_dir: dir.path().join("state"),
            run_dir: dir.path().join("run"),
        };
        fs::create_dir(&paths.state_dir).expect("state dir");
        fs::create_dir(&paths.run_dir).expect("run dir");
        // Like /run/ntari/ntp: readable by all. chronyd refuses a command
        // socket in such a directory, hence the socket subdirectory.
        fs::set_permissions(&paths.run_dir, fs::Permissions::from_mode(0o755)).expect("chmod");
        for file in Ntp.render(&config, &paths) {
            let path = paths.run_dir.join(&file.name);
            fs::write(&path, &file.contents).expect("write rendered file");
            fs::set_permissions(&path, fs::Permissions::from_mode(file.mode)).expect("chmod");
        }
        Instance { dir, paths, config }
    }

    fn check(&self) -> std::process::Output {
        let cmd = Ntp
            .check_command(&self.config, &self.paths)
            .expect("check command");
        std::process::Command::new(&cmd.program)
            .args(&cmd.args)
            .stdin(Stdio::null())
            .output()
            .expect("run chronyd -p")
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("chronyd.log")).unwrap_or_default()
    }

    async fn probe(&self) -> Result<ProbeReport, String> {
        Ntp.probe(&self.config, &self.paths).await
    }

    /// Probes until `done` holds or `limit` passes.
    async fn probe_until(
        &self,
        limit: Duration,
        what: &str,
        done: impl Fn(&ProbeReport) -> bool,
    ) -> ProbeReport {
        let start = Instant::now();
        let mut last = Err("never probed".to_string());
        while start.elapsed() < limit {
            last = self.probe().await;
            if let Ok(report) = &last {
                if done(report) {
                    return report.clone();
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "{what}: not reached within {limit:?}; last probe: {last:?}\nchronyd log:\n{}",
            self.log()
        );
    }
}

/// A running chronyd; stopped (SIGTERM, then SIGKILL) by PID when dropped.
struct Daemon {
    child: Child,
}

impl Daemon {
    fn start(inst: &Instance) -> Daemon {
        let cmd = Ntp.daemons(&inst.config, &inst.paths).remove(0).command;
        assert!(
            cmd.args.iter().any(|a| a == "-x"),
            "tests must leave the clock alone"
        );
        let log = fs::File::create(inst.dir.path().join("chronyd.log")).expect("log file");
        let child = std::process::Command::new(&cmd.program)
            .args(&cmd.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn chronyd");
        Daemon { child }
    }

    fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    fn signal(&self, signal: Signal) {
        kill(self.pid(), signal).expect("signal chronyd");
    }

    /// SIGTERM and wait; SIGKILL after `limit`.
    fn stop(&mut self, limit: Duration) -> ExitStatus {
        if let Ok(Some(status)) = self.child.try_wait() {
            return status;
        }
        let _ = kill(self.pid(), Signal::SIGTERM);
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            if start.elapsed() > limit {
                let _ = self.child.kill();
                return self.child.wait().expect("wait chronyd");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // A stopped chronyd would ignore SIGTERM until continued.
        let _ = kill(self.pid(), Signal::SIGCONT);
        self.stop(Duration::from_secs(2));
    }
}

/// A UDP port free on 127.0.0.1 right now. chronyd binds its NTP socket
/// with SO_REUSEPORT, so a clash would not fail loudly; a plain bind here
/// does fail on a port chronyd holds.
fn free_udp_port() -> u16 {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket.local_addr().expect("addr").port()
}

fn example_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/ntp.toml")
}

/// A stratum-8 local-reference server on 127.0.0.1:`port`.
fn server_config(port: u16) -> NtpConfig {
    NtpConfig {
        allow: vec!["127.0.0.1".into()],
        serve_port: port,
        bind_address: Some("127.0.0.1".parse().expect("addr")),
        local_stratum: 8,
        leave_clock_alone: true,
        ..NtpConfig::default()
    }
}

/// A client whose only source is 127.0.0.1:`port`, polled 4 times a second.
fn client_config(port: u16) -> NtpConfig {
    NtpConfig {
        servers: vec![Upstream {
            port: Some(port),
            minpoll: Some(-2),
            maxpoll: Some(-2),
            ..Upstream::new("127.0.0.1")
        }],
        serve_port: 0,
        local_stratum: 0,
        leave_clock_alone: true,
        ..NtpConfig::default()
    }
}

#[test]
fn checker_accepts_rendered_configs() {
    let port = free_udp_port();
    for config in [server_config(port), client_config(port)] {
        assert_eq!(Ntp.validate(&config), Ok(()));
        let inst = Instance::new(config);
        let out = inst.check();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{out:?}");
        // -p prints the parsed config back.
        assert!(stdout.contains("bindcmdaddress"), "{stdout}");
        // -p creates nothing: no socket dir, no pid file.
        assert!(!inst.paths.run_dir.join("chronyd").exists());
        assert!(!inst.paths.run_dir.join(PID_FILE).exists());
    }
}

#[test]
fn checker_rejects_a_broken_config_with_chronyds_message() {
    // validate() refuses stratum 16; render() does not re-check, so the
    // runtime's second line of defence, chronyd -p, must catch it too.
    let config = NtpConfig {
        local_stratum: 16,
        ..server_config(free_udp_port())
    };
    let issue = Ntp.validate(&config).expect_err("stratum 16 is invalid");
    assert_eq!(issue.key, "local_stratum");
    let inst = Instance::new(config);
    let out = inst.check();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        stderr.contains("Could not parse local directive"),
        "{stderr}"
    );
}

#[tokio::test]
async fn probe_fails_when_nothing_listens() {
    let inst = Instance::new(server_config(free_udp_port()));
    let err = inst.probe().await.expect_err("no chronyd");
    assert!(err.contains("chronyd did not answer"), "{err}");
    assert!(
        err.contains(&command_socket(&inst.paths).display().to_string()),
        "{err}"
    );
}

#[tokio::test]
async fn example_config_runs_as_is() {
    let text = fs::read_to_string(example_path()).expect("examples/ntp.toml");
    let config: NtpConfig = toml::from_str(&text).expect("example parses");
    assert_eq!(Ntp.validate(&config), Ok(()));
    assert!(
        config.leave_clock_alone,
        "the example must not touch the host clock"
    );
    let inst = Instance::new(config);
    let out = inst.check();
    assert!(out.status.success(), "{out:?}");

    let started = Instant::now();
    let mut daemon = Daemon::start(&inst);
    let report = inst
        .probe_until(Duration::from_secs(10), "example answers", |_| true)
        .await;
    eprintln!(
        "example chronyd answered its first probe after {:?}",
        started.elapsed()
    );
    assert_eq!(
        report.detail["synchronised"],
        json!(true),
        "{:?}",
        report.detail
    );
    assert_eq!(report.detail["reference_local"], json!(true));
    assert_eq!(report.detail["stratum"], json!(10));
    assert!(inst.paths.run_dir.join(PID_FILE).exists());

    // SIGTERM: exit 0, pid file and socket removed, drift file written.
    let status = daemon.stop(Duration::from_secs(5));
    assert!(status.success(), "{status:?}\n{}", inst.log());
    assert!(!inst.paths.run_dir.join(PID_FILE).exists());
    assert!(!command_socket(&inst.paths).exists());
    assert!(inst.paths.state_dir.join("chrony.drift").exists());
    // Nothing written outside the two dirs.
    let mut names: Vec<_> = fs::read_dir(inst.dir.path())
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["chronyd.log", "run", "state"]);
}

#[tokio::test]
async fn client_synchronises_to_a_local_stratum_server() {
    let port = free_udp_port();
    let server = Instance::new(server_config(port));
    let client = Instance::new(client_config(port));

    // Client first: it answers, but has nothing to follow yet. That is a
    // successful probe that says "not synchronised".
    let started = Instant::now();
    let _client_daemon = Daemon::start(&client);
    let report = client
        .probe_until(Duration::from_secs(10), "client answers", |_| true)
        .await;
    eprintln!("client chronyd answered after {:?}", started.elapsed());
    assert_eq!(report.detail["responding"], json!(true));
    assert_eq!(
        report.detail["synchronised"],
        json!(false),
        "{:?}",
        report.detail
    );
    assert_eq!(report.detail["leap_status"], json!("Not synchronised"));
    assert_eq!(report.detail["sources"]["total"], json!(1));

    let mut server_daemon = Daemon::start(&server);
    let report = server
        .probe_until(Duration::from_secs(10), "server on local reference", |r| {
            r.detail["synchronised"] == json!(true)
        })
        .await;
    assert_eq!(report.detail["reference_local"], json!(true));
    assert_eq!(report.detail["reference_id"], json!("7F7F0101"));
    assert_eq!(report.detail["stratum"], json!(8));

    let started = Instant::now();
    let report = client
        .probe_until(
            Duration::from_secs(30),
            "client synchronised to the server",
            |r| {
                r.detail["synchronised"] == json!(true)
                    && r.detail["reference_name"] == json!("127.0.0.1")
            },
        )
        .await;
    eprintln!("client synchronised after {:?}", started.elapsed());
    let d = &report.detail;
    assert_eq!(d["stratum"], json!(9), "server stratum + 1: {d:?}");
    assert_eq!(d["reference_id"], json!("7F000001"));
    assert_eq!(d["reference_local"], json!(false));
    assert_eq!(d["sources"]["selected"], json!(1));
    assert_eq!(d["sources"]["reachable"], json!(1));
    assert_eq!(
        d["summary"],
        json!("synchronised to 127.0.0.1 at stratum 9")
    );

    // The same samples through the runtime's Prometheus registry.
    let metrics = ntari_node::metrics::Metrics::new(Ntp::NAME, Ntp.metrics()).expect("registry");
    metrics.update_service(&report.metrics);
    let text = metrics.render();
    for line in [
        "chrony_tracking_stratum 9",
        "chrony_tracking_remote_reference 1",
        "ntari_ntp_synchronised 1",
        "chrony_sources_stratum{source_address=\"127.0.0.1\",source_name=\"127.0.0.1\"} 8",
        "chrony_sources_state_info{source_address=\"127.0.0.1\",source_mode=\"client\",source_name=\"127.0.0.1\",source_state=\"sync\"} 1",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
    assert!(
        text.contains("chrony_tracking_info{tracking_address=\"127.0.0.1\",tracking_name=\"127.0.0.1\",tracking_refid=\"7F000001\"} 1"),
        "{text}"
    );

    // The server counted the client's requests.
    let report = server.probe().await.expect("server probe");
    assert!(
        report.detail["ntp_requests_received"].as_u64().unwrap_or(0) > 0,
        "{:?}",
        report.detail
    );

    // A hung chronyd: the probe gives up after its 2 s limit and kills
    // chronyc, leaving no client socket behind.
    server_daemon.signal(Signal::SIGSTOP);
    let started = Instant::now();
    let err = server
        .probe()
        .await
        .expect_err("stopped chronyd cannot answer");
    let took = started.elapsed();
    server_daemon.signal(Signal::SIGCONT);
    assert!(err.contains("within 2000 ms"), "{err}");
    assert!(took < Duration::from_secs(3), "probe took {took:?}");
    let socket_dir = command_socket(&server.paths);
    let leftovers: Vec<_> = fs::read_dir(socket_dir.parent().expect("socket dir"))
        .expect("read socket dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("chronyc."))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    server
        .probe_until(Duration::from_secs(5), "server answers again", |_| true)
        .await;

    let status = server_daemon.stop(Duration::from_secs(5));
    assert!(
        status.success(),
        "SIGTERM must end chronyd with 0: {status:?}"
    );
}

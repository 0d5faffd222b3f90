//! Integration tests against the real kea-dhcp4 (2.2), without the runtime:
//! render into a temp dir, run Kea's checker, run Kea exactly as the
//! runtime would (`daemons`), talk to its control socket, and get
//! leases with busybox `udhcpc` from a network namespace. Each test creates
//! its own namespace and veth pair and removes them; Kea serves the root
//! end, so nothing leaves the pair.
//!
//! The graph side (lifecycle, health, lease events over DDS) is tested in
//! tests/interop/test_dhcp_node.py.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use ntari_dhcp::leases::{LeaseTracker, MIN_PUBLISH_INTERVAL};
use ntari_dhcp::{control, render, Dhcp, DhcpConfig};
use ntari_node::fsutil::write_atomic;
use ntari_node::service::{Paths, Service};
use ntari_schemas::leases::{LeaseEvent, LeaseMessage};
use serde_json::Value;
use tempfile::TempDir;

static NEXT: AtomicU32 = AtomicU32::new(0);

fn run(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .expect(args[0]);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A client namespace with a veth pair: `server` (in the root namespace,
/// `<prefix>.1/24`) and `client` (in the namespace). Removed on drop.
struct Net {
    ns: String,
    server: String,
    client: String,
    prefix: String,
}

impl Net {
    fn new() -> Net {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let tag = format!("{:x}{n}", std::process::id() % 0xfffff);
        // A /24 per test: 192.168.(100 + pid and counter)…
        let octet = 100 + (std::process::id() * 7 + n) % 150;
        let net = Net {
            ns: format!("ntk{tag}"),
            server: format!("ntk{tag}s"),
            client: format!("ntk{tag}c"),
            prefix: format!("192.168.{octet}"),
        };
        run(&["ip", "netns", "add", &net.ns]);
        run(&[
            "ip",
            "link",
            "add",
            &net.server,
            "type",
            "veth",
            "peer",
            "name",
            &net.client,
        ]);
        run(&["ip", "link", "set", &net.client, "netns", &net.ns]);
        run(&[
            "ip",
            "addr",
            "add",
            &format!("{}.1/24", net.prefix),
            "dev",
            &net.server,
        ]);
        run(&["ip", "link", "set", &net.server, "up"]);
        net.exec(&["ip", "link", "set", &net.client, "up"]);
        net.exec(&["ip", "link", "set", "lo", "up"]);
        net
    }

    fn exec(&self, args: &[&str]) {
        let mut all = vec!["ip", "netns", "exec", &self.ns];
        all.extend_from_slice(args);
        run(&all);
    }

    fn set_client_mac(&self, mac: &str) {
        self.exec(&["ip", "link", "set", &self.client, "address", mac]);
    }

    /// A udhcpc script that configures the address (a DHCPRELEASE is sent
    /// from it) and records what it got in `UDHCPC_LOG`.
    fn script(dir: &Path) -> PathBuf {
        let script = dir.join("udhcpc.sh");
        fs::write(
            &script,
            "#!/bin/sh\n\
             case \"$1\" in\n\
               bound|renew) ip addr flush dev \"$interface\"; ip addr add \"$ip/${mask:-24}\" dev \"$interface\" ;;\n\
               deconfig) ip addr flush dev \"$interface\" ;;\n\
             esac\n\
             echo \"$1 ip=$ip router=$router dns=$dns domain=$domain lease=$lease\" >> \"$UDHCPC_LOG\"\n",
        )
        .unwrap();
        fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
        script
    }

    fn udhcpc_command(&self, dir: &Path, hostname: &str, once: bool) -> (Command, PathBuf) {
        let log = dir.join("udhcpc.log");
        let _ = fs::remove_file(&log);
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &self.ns, "udhcpc", "-i", &self.client])
            .args(["-t", "5", "-T", "1", "-x", &format!("hostname:{hostname}")])
            .arg("-s")
            .arg(Self::script(dir))
            .env("UDHCPC_LOG", &log);
        if once {
            command.args(["-n", "-q"]);
        } else {
            command.args(["-f", "-R"]);
        }
        (command, log)
    }

    /// `udhcpc` once; returns what its script recorded (`bound ip=… …`).
    fn udhcpc(&self, dir: &Path, hostname: &str) -> String {
        let (mut command, log) = self.udhcpc_command(dir, hostname, true);
        let out = command.output().expect("udhcpc (ci/setup.sh installs it)");
        assert!(
            out.status.success(),
            "udhcpc got no lease: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        fs::read_to_string(&log).unwrap_or_default()
    }

    /// A lease, then a DHCPRELEASE: udhcpc only releases from its bound
    /// state, which `-q` never reaches, so it runs until bound and gets
    /// SIGUSR2 (release), then SIGTERM.
    fn udhcpc_and_release(&self, dir: &Path, hostname: &str) -> String {
        let (mut command, log) = self.udhcpc_command(dir, hostname, false);
        let mut child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("udhcpc");
        let pid = Pid::from_raw(child.id() as i32);
        let wait_for = |word: &str| {
            let start = Instant::now();
            while !fs::read_to_string(&log).unwrap_or_default().contains(word) {
                assert!(
                    start.elapsed() < Duration::from_secs(10),
                    "udhcpc: no {word}"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        };
        wait_for("bound ");
        let _ = kill(pid, Signal::SIGUSR2);
        std::thread::sleep(Duration::from_millis(300));
        let _ = kill(pid, Signal::SIGTERM);
        let _ = child.wait();
        fs::read_to_string(&log).unwrap_or_default()
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.server])
            .output();
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).output();
    }
}

/// A config rendered into its own temp dir, as the runtime renders it.
struct Instance {
    dir: TempDir,
    paths: Paths,
    config: DhcpConfig,
}

impl Instance {
    fn new(config: DhcpConfig) -> Instance {
        let dir = tempfile::tempdir().expect("tempdir");
        let paths = Paths {
            config: dir.path().join("dhcp.toml"),
            state_dir: dir.path().join("state"),
            run_dir: dir.path().join("run"),
        };
        fs::create_dir_all(&paths.state_dir).unwrap();
        let instance = Instance { dir, paths, config };
        instance.write_files();
        instance
    }

    fn write_files(&self) {
        Dhcp::default()
            .validate(&self.config)
            .expect("valid config");
        for file in Dhcp::default().render(&self.config, &self.paths) {
            let path = self.paths.run_dir.join(&file.name);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            write_atomic(&path, file.contents.as_bytes(), file.mode).unwrap();
        }
    }

    fn check(&self) -> std::process::Output {
        let cmd = Dhcp::default()
            .check_command(&self.config, &self.paths)
            .unwrap();
        Command::new(&cmd.program)
            .args(&cmd.args)
            .envs(cmd.env.iter().cloned())
            .output()
            .expect("kea-dhcp4 -t")
    }

    fn start(&self) -> Kea {
        let spec = Dhcp::default().daemons(&self.config, &self.paths).remove(0);
        let cmd = spec.command;
        for stale in spec.stale_files {
            let _ = fs::remove_file(stale);
        }
        let log = fs::File::create(self.dir.path().join("kea.log")).unwrap();
        let child = Command::new(&cmd.program)
            .args(&cmd.args)
            .envs(cmd.env.iter().cloned())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("kea-dhcp4 (ci/setup.sh installs kea-dhcp4-server)");
        let kea = Kea { child };
        let start = Instant::now();
        while !self.socket().exists() || !self.answers() {
            assert!(
                start.elapsed() < Duration::from_secs(15),
                "Kea did not answer on its control socket:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        kea
    }

    fn answers(&self) -> bool {
        std::os::unix::net::UnixStream::connect(self.socket()).is_ok()
    }

    fn socket(&self) -> PathBuf {
        render::control_socket(&self.paths)
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("kea.log")).unwrap_or_default()
    }

    async fn command(&self, name: &str) -> Value {
        control::command(&self.socket(), name, None, Duration::from_secs(5))
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}\n{}", self.log()))
            .arguments
    }
}

/// A running kea-dhcp4, killed by PID when dropped.
struct Kea {
    child: Child,
}

impl Kea {
    fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    fn kill9(&mut self) {
        let _ = kill(self.pid(), Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

impl Drop for Kea {
    fn drop(&mut self) {
        let _ = kill(self.pid(), Signal::SIGTERM);
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(5) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config_for(net: &Net, extra_subnet: &str) -> DhcpConfig {
    let p = &net.prefix;
    toml::from_str(&format!(
        r#"
        interfaces = ["{server}"]
        lease_time = 600
        domain_name = "coop.lan"
        dns_servers = ["{p}.1"]
        [[subnets]]
        subnet = "{p}.0/24"
        pools = ["{p}.100 - {p}.150"]
        router = "{p}.1"
        {extra_subnet}
        [[subnets.reservations]]
        mac = "52:54:00:aa:00:10"
        ip = "{p}.10"
        hostname = "printer"
        "#,
        server = net.server
    ))
    .expect("config")
}

/// Follows the lease file until a message with events arrives.
fn next_events(tracker: &mut LeaseTracker) -> Vec<(LeaseEvent, String, Option<String>)> {
    let start = Instant::now();
    let mut now = Instant::now() + MIN_PUBLISH_INTERVAL;
    loop {
        if let Some(LeaseMessage { events, .. }) = tracker.follow(now) {
            return events
                .into_iter()
                .map(|e| (e.event, e.lease.ip.to_string(), e.lease.hostname))
                .collect();
        }
        assert!(start.elapsed() < Duration::from_secs(10), "no lease event");
        std::thread::sleep(Duration::from_millis(50));
        now += MIN_PUBLISH_INTERVAL;
    }
}

#[test]
fn checker_accepts_the_example_and_rejects_what_only_kea_knows() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/dhcp.toml");
    let example: DhcpConfig = toml::from_str(&fs::read_to_string(path).unwrap()).unwrap();
    // The example serves the demo's veth; Kea's checker looks interfaces up.
    let config = DhcpConfig {
        interfaces: vec!["lo".into()],
        ..example
    };
    let inst = Instance::new(config);
    let out = inst.check();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    let missing = Instance::new(DhcpConfig {
        interfaces: vec!["ntari-nonexist".into()],
        ..inst.config.clone()
    });
    let out = missing.check();
    assert!(!out.status.success());
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("ntari-nonexist"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn clients_get_addresses_options_and_reservations_and_events_follow() {
    let net = Net::new();
    let inst = Instance::new(config_for(&net, ""));
    let _kea = inst.start();
    let p = net.prefix.clone();

    let report = Dhcp::default()
        .probe(&inst.config, &inst.paths)
        .await
        .unwrap_or_else(|e| panic!("probe: {e}\n{}", inst.log()));
    assert_eq!(report.detail["subnets"][0]["total"], 51);

    let mut tracker = LeaseTracker::default();
    let snapshot = tracker
        .sync(&inst.socket(), &render::lease_file(&inst.paths))
        .await
        .unwrap();
    assert!(snapshot.snapshot && snapshot.leases.is_empty());

    let got = net.udhcpc(inst.dir.path(), "laptop");
    assert!(
        got.contains(&format!(
            "bound ip={p}.100 router={p}.1 dns={p}.1 domain=coop.lan lease=600"
        )),
        "{got}"
    );
    assert_eq!(
        next_events(&mut tracker),
        [(
            LeaseEvent::Granted,
            format!("{p}.100"),
            Some("laptop".into())
        )]
    );

    // The same client again, a second later (Kea's times are in seconds;
    // the same line twice is no event): a renewal of the same address.
    std::thread::sleep(Duration::from_millis(1100));
    net.udhcpc(inst.dir.path(), "laptop");
    assert_eq!(
        next_events(&mut tracker),
        [(
            LeaseEvent::Renewed,
            format!("{p}.100"),
            Some("laptop".into())
        )]
    );

    // The reserved MAC gets its address, then gives it back.
    net.set_client_mac("52:54:00:aa:00:10");
    let got = net.udhcpc_and_release(inst.dir.path(), "whatever");
    assert!(got.contains(&format!("bound ip={p}.10 ")), "{got}");
    let events = next_events(&mut tracker);
    assert_eq!(
        events[0],
        (
            LeaseEvent::Granted,
            format!("{p}.10"),
            Some("printer".into())
        )
    );
    let released = if events.len() > 1 {
        events[1].clone()
    } else {
        next_events(&mut tracker)[0].clone()
    };
    assert_eq!(released.0, LeaseEvent::Released, "{}", inst.log());
    assert_eq!(released.1, format!("{p}.10"));

    let leases = inst.command("lease4-get-all").await;
    assert_eq!(leases["leases"].as_array().map(Vec::len), Some(1));
    assert_eq!(tracker.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn leases_survive_kill_9_and_config_changes_go_live() {
    let net = Net::new();
    let mut inst = Instance::new(config_for(&net, ""));
    let mut kea = inst.start();
    let p = net.prefix.clone();
    net.set_client_mac("52:54:00:aa:00:99");
    net.udhcpc(inst.dir.path(), "laptop");

    kea.kill9();
    let _kea = inst.start();
    let leases = inst.command("lease4-get-all").await;
    assert_eq!(
        leases["leases"][0]["ip-address"],
        format!("{p}.100"),
        "{}",
        inst.log()
    );
    assert_eq!(leases["leases"][0]["hostname"], "laptop");

    // A new reservation, live: config-test, config-reload, same process.
    let pid_before = inst.command("status-get").await["pid"].clone();
    inst.config = config_for(
        &net,
        &format!("[[subnets.reservations]]\nmac = \"52:54:00:aa:00:11\"\nip = \"{p}.11\""),
    );
    inst.write_files();
    Dhcp::default()
        .apply_live(&inst.config, &inst.paths)
        .await
        .unwrap_or_else(|e| panic!("apply_live: {e}\n{}", inst.log()));
    assert_eq!(inst.command("status-get").await["pid"], pid_before);
    net.set_client_mac("52:54:00:aa:00:11");
    let got = net.udhcpc(inst.dir.path(), "new");
    assert!(got.contains(&format!("bound ip={p}.11 ")), "{got}");
    let leases = inst.command("lease4-get-all").await;
    assert_eq!(
        leases["leases"].as_array().map(Vec::len),
        Some(2),
        "no lease lost"
    );

    // What Kea refuses live (an interface it cannot find) changes nothing.
    inst.config.interfaces = vec!["ntari-nonexist".into()];
    inst.write_files();
    let err = Dhcp::default()
        .apply_live(&inst.config, &inst.paths)
        .await
        .unwrap_err();
    assert!(
        err.contains("config-test") && err.contains("ntari-nonexist"),
        "{err}"
    );
    assert_eq!(inst.command("status-get").await["pid"], pid_before);
    net.set_client_mac("52:54:00:aa:00:12");
    let got = net.udhcpc(inst.dir.path(), "still-served");
    assert!(got.contains(&format!("bound ip={p}.")), "{got}");
}

//! `chrony.conf`, rendered from the config. It names every file chronyd
//! writes, all inside the run and state dirs, so chronyd touches nothing
//! else on the machine.

use std::path::{Path, PathBuf};

use ntari_node::service::Paths;

use crate::config::{parse_subnet, NtpConfig, Upstream};

/// The rendered chrony config, relative to the run dir.
pub const CONFIG_FILE: &str = "chrony.conf";
/// chronyd's pid file, relative to the run dir.
pub const PID_FILE: &str = "chronyd.pid";
/// Directory of the command socket, relative to the run dir. chronyd creates
/// it itself (mode 0750, owned by its user) and refuses a socket directory
/// that others can access, so the socket cannot live directly in a run dir
/// that is 0755.
pub const SOCKET_DIR: &str = "chronyd";
/// The command socket's file name inside [`SOCKET_DIR`].
pub const SOCKET_FILE: &str = "chronyd.sock";
/// chronyd's drift file, relative to the state dir.
pub const DRIFT_FILE: &str = "chrony.drift";

/// `<run_dir>/chrony.conf`.
pub fn config_path(paths: &Paths) -> PathBuf {
    paths.run_dir.join(CONFIG_FILE)
}

/// `<run_dir>/chronyd/chronyd.sock`, the Unix command socket.
pub fn command_socket(paths: &Paths) -> PathBuf {
    paths.run_dir.join(SOCKET_DIR).join(SOCKET_FILE)
}

fn upstream_line(kind: &str, up: &Upstream, config: &NtpConfig) -> String {
    let mut line = format!("{kind} {}", up.host);
    if let Some(port) = up.port {
        line.push_str(&format!(" port {port}"));
    }
    if up.iburst {
        line.push_str(" iburst");
    }
    if up.prefer {
        line.push_str(" prefer");
    }
    if let Some(p) = up.minpoll.or(config.minpoll) {
        line.push_str(&format!(" minpoll {p}"));
    }
    if let Some(p) = up.maxpoll.or(config.maxpoll) {
        line.push_str(&format!(" maxpoll {p}"));
    }
    if let Some(n) = up.maxsources {
        line.push_str(&format!(" maxsources {n}"));
    }
    line
}

/// chrony.conf has no quoting: a path with white space would be cut at the
/// first blank. Warn loudly; `chronyd -p` cannot notice.
fn warn_unsafe_path(what: &str, path: &Path) {
    let text = path.to_string_lossy();
    if text
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '#')
    {
        tracing::warn!(
            path = %text,
            "{what} contains white space, control characters or '#'; chrony.conf cannot quote it"
        );
    }
}

/// The chrony.conf text for `config` (see [`Ntp::render`](crate::Ntp#method.render)).
pub fn render_chrony_conf(config: &NtpConfig, paths: &Paths) -> String {
    warn_unsafe_path("state dir", &paths.state_dir);
    warn_unsafe_path("run dir", &paths.run_dir);
    let mut l: Vec<String> = vec![
        format!(
            "# Rendered by ntari-ntp from {}; changes here are overwritten.",
            paths.config.display()
        ),
        "# Directives: chrony.conf(5), chrony 4.x.".into(),
        String::new(),
        "# Files: state in the state dir, everything else in the run dir.".into(),
        format!("driftfile {}", paths.state_dir.join(DRIFT_FILE).display()),
        format!("pidfile {}", paths.run_dir.join(PID_FILE).display()),
        // ntari-ntp probes over this Unix socket; no UDP command port.
        format!("bindcmdaddress {}", command_socket(paths).display()),
        "cmdport 0".into(),
        String::new(),
        "# Serving.".into(),
        format!("port {}", config.serve_port),
    ];
    if let Some(addr) = config.bind_address {
        l.push(format!("bindaddress {addr}"));
    }
    for entry in &config.allow {
        // validate() has checked the syntax; render the normalised form.
        match parse_subnet(entry) {
            Ok((addr, prefix)) => l.push(format!("allow {addr}/{prefix}")),
            Err(_) => l.push(format!("allow {entry}")),
        }
    }
    if config.local_stratum > 0 {
        l.push(format!(
            "local stratum {}{}",
            config.local_stratum,
            if config.local_orphan { " orphan" } else { "" }
        ));
    }
    if config.makestep_threshold > 0.0 {
        l.push(String::new());
        l.push("# Clock.".into());
        l.push(format!(
            "makestep {} {}",
            config.makestep_threshold, config.makestep_limit
        ));
    }
    if !config.servers.is_empty() || !config.pools.is_empty() {
        l.push(String::new());
        l.push("# Upstream.".into());
    }
    for up in &config.servers {
        l.push(upstream_line("server", up, config));
    }
    for up in &config.pools {
        l.push(upstream_line("pool", up, config));
    }
    let mut text = l.join("\n");
    text.push('\n');
    text
}

/// The production paths, for the crate's unit tests.
#[cfg(test)]
pub(crate) fn default_paths() -> Paths {
    Paths {
        config: "/etc/ntari/services/ntp.toml".into(),
        state_dir: "/var/lib/ntari/ntp".into(),
        run_dir: "/run/ntari/ntp".into(),
    }
}

#[cfg(test)]
mod tests {
    use ntari_node::service::Service;

    use super::default_paths as paths;
    use super::*;
    use crate::Ntp;

    #[test]
    fn renders_chrony_conf() {
        let c = NtpConfig {
            servers: vec![Upstream {
                port: Some(11123),
                minpoll: Some(-2),
                ..Upstream::new("127.0.0.1")
            }],
            pools: vec![Upstream {
                maxsources: Some(3),
                ..Upstream::new("pool.ntp.org")
            }],
            allow: vec!["192.168.1.0/24".into(), "127.0.0.1".into()],
            bind_address: Some("192.168.1.1".parse().unwrap()),
            maxpoll: Some(-2),
            ..NtpConfig::default()
        };
        let files = Ntp.render(&c, &paths());
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].name, "chrony.conf");
        assert_eq!(files[0].mode, 0o644);
        let text = &files[0].contents;
        let directives: Vec<&str> = text
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect();
        assert_eq!(
            directives,
            [
                "driftfile /var/lib/ntari/ntp/chrony.drift",
                "pidfile /run/ntari/ntp/chronyd.pid",
                "bindcmdaddress /run/ntari/ntp/chronyd/chronyd.sock",
                "cmdport 0",
                "port 123",
                "bindaddress 192.168.1.1",
                "allow 192.168.1.0/24",
                "allow 127.0.0.1/32",
                "local stratum 10 orphan",
                "makestep 1 3",
                "server 127.0.0.1 port 11123 iburst minpoll -2 maxpoll -2",
                "pool pool.ntp.org iburst maxpoll -2 maxsources 3",
            ]
        );

        let c = NtpConfig {
            servers: vec![Upstream::new("ntp.example.org")],
            serve_port: 0,
            local_stratum: 0,
            makestep_threshold: 0.0,
            ..NtpConfig::default()
        };
        let text = render_chrony_conf(&c, &paths());
        assert!(text.contains("port 0\n"));
        assert!(!text.contains("local stratum"));
        assert!(!text.contains("makestep"));
        let c = NtpConfig {
            local_orphan: false,
            ..c
        };
        assert!(!render_chrony_conf(
            &NtpConfig {
                local_stratum: 8,
                ..c
            },
            &paths()
        )
        .contains("orphan"));
    }
}

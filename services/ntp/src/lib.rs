//! ntari-ntp: the NTARI OS time service, chrony (`chronyd`) supervised by a
//! ROS 2 lifecycle node.
//!
//! Time is a critical service in NTARI OS: DDS QoS timestamps (lifespan,
//! deadline, the ±5 min window of signed envelopes) all read the system
//! clock, so every node of a cooperative must agree on it even when the
//! cooperative is offline. chrony keeps the clock disciplined to upstream
//! servers, serves the LAN, and falls back to a *local stratum* reference so
//! an offline cooperative still shares one time.
//!
//! This crate is only what is specific to chrony (DESIGN.md §5):
//! - [`config`]: [`NtpConfig`], the contents of
//!   `/etc/ntari/services/ntp.toml`, and its checks;
//! - [`render`]: `chrony.conf` in the run dir (drift file in the state dir,
//!   pid file and command socket in the run dir, nothing elsewhere);
//! - [`stats`]: the probe, one `chronyc` exchange over the command socket,
//!   parsed into the status detail and chrony_exporter-named metrics;
//! - [`Ntp`], the `Service` impl: checker `chronyd -p -f <conf>`, daemon
//!   `chronyd -d -u root -f <conf> [-x]`.
//!
//! A probe succeeds when chronyd *answers*; whether it is synchronised is
//! reported in the detail (`synchronised`) and metrics, not as a probe
//! failure: an unsynchronised chronyd is still running, still serving its
//! clients with the "unsynchronised" leap indicator, and restarting it would
//! only throw away the measurements it has gathered so far.

pub mod config;
pub mod render;
pub mod stats;

use std::future::Future;

use ntari_node::service::{
    Command, ConfigIssue, DaemonSpec, MetricDesc, Paths, ProbeReport, Reload, RenderedFile, Service,
};

pub use config::{NtpConfig, Upstream};
pub use render::{command_socket, PID_FILE};
use render::{config_path, CONFIG_FILE};

/// Resolved through `PATH` (chronyd is in /usr/sbin on Debian and Alpine).
const CHRONYD: &str = "chronyd";

/// The NTARI time service: chronyd.
#[derive(Debug, Clone, Copy, Default)]
pub struct Ntp;

impl Service for Ntp {
    type Config = NtpConfig;

    const NAME: &'static str = "ntp";
    const DAEMON: &'static str = "chronyd";
    const METRICS_PORT: u16 = 9703;

    fn validate(&self, config: &NtpConfig) -> Result<(), ConfigIssue> {
        config.validate()
    }

    /// `chrony.conf` (mode 0644, no secrets) into the run dir.
    fn render(&self, config: &NtpConfig, paths: &Paths) -> Vec<RenderedFile> {
        vec![RenderedFile {
            name: CONFIG_FILE.to_string(),
            contents: render::render_chrony_conf(config, paths),
            mode: 0o644,
        }]
    }

    /// `chronyd -p -f <conf>` prints the parsed config and exits 1 on a
    /// syntax error (unknown directive, unparsable `allow`/`local`/`server`
    /// option). It cannot catch what only shows at run time: a bind address
    /// not on this host, a port in use (chronyd shares it silently, see
    /// docs/services/ntp.md), an unwritable drift file, unresolvable names,
    /// a socket directory with wrong permissions, or an out-of-range number
    /// that parses (e.g. `port 99999`). [`NtpConfig::validate`] covers the
    /// numeric ones.
    fn check_command(&self, _config: &NtpConfig, paths: &Paths) -> Option<Command> {
        Some(Command::new(
            CHRONYD,
            [
                "-p".to_string(),
                "-f".into(),
                config_path(paths).display().to_string(),
            ],
        ))
    }

    /// `chronyd -d -u root -f <conf> [-x]`: foreground, log to stderr
    /// (`-d`), keep root (`-u root`: chronyd would otherwise switch to its
    /// compiled-in user `_chrony`, which cannot write the run and state dirs
    /// the runtime created), `-x` when `leave_clock_alone`. chronyd refuses
    /// to start when its pid file names a live process, which after a crash
    /// can be an unrelated one that reused the pid: that file is stale.
    fn daemons(&self, config: &NtpConfig, paths: &Paths) -> Vec<DaemonSpec> {
        let mut args = vec![
            "-d".to_string(),
            "-u".into(),
            "root".into(),
            "-f".into(),
            config_path(paths).display().to_string(),
        ];
        if config.leave_clock_alone {
            args.push("-x".into());
        }
        vec![DaemonSpec::new(Self::DAEMON, Command::new(CHRONYD, args))
            .with_stale_file(paths.run_dir.join(PID_FILE))]
    }

    fn version_command(&self) -> Option<Command> {
        Some(Command::new(CHRONYD, ["--version"]))
    }

    fn metrics(&self) -> &'static [MetricDesc] {
        stats::METRICS
    }

    /// One `chronyc` exchange over the command socket (see
    /// [`stats::chronyc_command`]), killed after [`stats::PROBE_TIMEOUT`].
    /// Succeeds whenever chronyd answers, synchronised or not.
    fn probe(
        &self,
        _config: &NtpConfig,
        paths: &Paths,
    ) -> impl Future<Output = Result<ProbeReport, String>> + Send {
        let socket = command_socket(paths);
        async move {
            let stdout = stats::run_chronyc(&socket, stats::PROBE_TIMEOUT).await?;
            let status = stats::parse_chronyc_output(&stdout)?;
            Ok(status.probe_report())
        }
    }

    /// Always [`Reload::Restart`]: chronyd has no config reload, and it
    /// treats SIGHUP like SIGTERM (it exits). Some changes could be applied
    /// live with chronyc (`add server`/`delete`, `allow`/`deny`, `local`,
    /// `makestep`, `minpoll`/`maxpoll`, or `sourcedir` + `reload sources`),
    /// but not `port`, `bindaddress` or the files; a restart costs only the
    /// few seconds of an iburst.
    fn reload(&self, _old: &NtpConfig, _new: &NtpConfig) -> Reload {
        Reload::Restart
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::default_paths as paths;
    use crate::stats::chronyc_command;

    #[test]
    fn commands() {
        let c = NtpConfig::default();
        let p = paths();
        assert_eq!(
            Ntp.check_command(&c, &p).unwrap().display(),
            "chronyd -p -f /run/ntari/ntp/chrony.conf"
        );
        assert_eq!(
            Ntp.daemons(&c, &p)[0].command.display(),
            "chronyd -d -u root -f /run/ntari/ntp/chrony.conf"
        );
        let dev = NtpConfig {
            leave_clock_alone: true,
            ..c.clone()
        };
        assert_eq!(
            Ntp.daemons(&dev, &p)[0].command.display(),
            "chronyd -d -u root -f /run/ntari/ntp/chrony.conf -x"
        );
        assert_eq!(
            Ntp.version_command().unwrap().display(),
            "chronyd --version"
        );
        assert_eq!(
            chronyc_command(&command_socket(&p)).display(),
            "chronyc -h /run/ntari/ntp/chronyd/chronyd.sock -c -n -m tracking serverstats activity sources"
        );
        assert_eq!(Ntp.reload(&c, &dev), Reload::Restart);
    }
}

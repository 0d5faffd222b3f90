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
//! - [`NtpConfig`], the contents of `/etc/ntari/services/ntp.toml`;
//! - [`Ntp::render`]: `chrony.conf` in the run dir (drift file in the state
//!   dir, pid file and command socket in the run dir, nothing elsewhere);
//! - [`Ntp::check_command`]: `chronyd -p -f <conf>`;
//! - [`Ntp::daemon_command`]: `chronyd -d -u root -f <conf> [-x]`;
//! - [`Ntp::probe`]: one `chronyc` exchange over the command socket, parsed
//!   into the status detail and chrony_exporter-named metrics.
//!
//! A probe succeeds when chronyd *answers*; whether it is synchronised is
//! reported in the detail (`synchronised`) and metrics, not as a probe
//! failure: an unsynchronised chronyd is still running, still serving its
//! clients with the "unsynchronised" leap indicator, and restarting it would
//! only throw away the measurements it has gathered so far.

use std::fmt;
use std::future::Future;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use ntari_node::service::{
    Command, ConfigIssue, MetricDesc, MetricSample, Paths, ProbeReport, Reload, RenderedFile,
    Service,
};
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::{json, Map, Value};

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
/// Hard limit on one `chronyc` exchange; chronyc is killed after it.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Reference ID chronyd reports while its `local` reference is active
/// (127.127.1.1).
pub const LOCAL_REFERENCE_ID: u32 = 0x7F7F_0101;

/// Program names; resolved through `PATH` (chronyd is in /usr/sbin on
/// Debian and Alpine).
const CHRONYD: &str = "chronyd";
const CHRONYC: &str = "chronyc";

/// Poll exponents chrony accepts (chrony.conf(5): -7 … 24).
const POLL_RANGE: std::ops::RangeInclusive<i8> = -7..=24;

// ---------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------

/// `/etc/ntari/services/ntp.toml`. Every key is optional; the defaults are
/// given per field. The default config alone is rejected by
/// [`Ntp::validate`] (no upstream and nobody to serve): an admin chooses at
/// least upstream servers or the LAN subnets to serve.
#[derive(Debug, Clone, PartialEq, Deserialize)]
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
/// the table share one type while unknown keys are still rejected.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpstreamTable {
    host: String,
    #[serde(default)]
    port: Option<u16>,
    #[serde(default = "default_true")]
    iburst: bool,
    #[serde(default)]
    prefer: bool,
    #[serde(default)]
    minpoll: Option<i8>,
    #[serde(default)]
    maxpoll: Option<i8>,
    #[serde(default)]
    maxsources: Option<u8>,
}

fn default_true() -> bool {
    true
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

// ---------------------------------------------------------------------------
// Paths and commands
// ---------------------------------------------------------------------------

/// `<run_dir>/chrony.conf`.
pub fn config_path(paths: &Paths) -> PathBuf {
    paths.run_dir.join(CONFIG_FILE)
}

/// `<run_dir>/chronyd/chronyd.sock`, the Unix command socket.
pub fn command_socket(paths: &Paths) -> PathBuf {
    paths.run_dir.join(SOCKET_DIR).join(SOCKET_FILE)
}

/// The one chronyc exchange a probe makes: `-c` CSV output, `-n` no DNS,
/// `-m` several commands in one run (chronyc stops at the first failing one
/// and exits non-zero, so on success the line order below is fixed).
pub fn chronyc_command(socket: &Path) -> Command {
    Command::new(
        CHRONYC,
        [
            "-h".to_string(),
            socket.display().to_string(),
            "-c".into(),
            "-n".into(),
            "-m".into(),
            "tracking".into(),
            "serverstats".into(),
            "activity".into(),
            "sources".into(),
        ],
    )
}

/// Runs chronyc with a hard timeout; returns its stdout.
async fn run_chronyc(socket: &Path, timeout: Duration) -> Result<String, String> {
    let cmd = chronyc_command(socket);
    tracing::trace!(command = %cmd.display(), "probing chronyd");
    let child = tokio::process::Command::new(&cmd.program)
        .args(&cmd.args)
        // chronyc prints numbers with printf; pin the C locale so a decimal
        // comma can never reach the parser.
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", cmd.program))?;
    let pid = child.id();
    match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(Ok(out)) if out.status.success() => String::from_utf8(out.stdout)
            .map_err(|_| "chronyc printed non-UTF-8 output".to_string()),
        Ok(Ok(out)) => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let reason = stderr.trim();
            Err(format!(
                "chronyd did not answer on {} ({}): {}",
                socket.display(),
                out.status,
                if reason.is_empty() {
                    "no message"
                } else {
                    reason
                }
            ))
        }
        Ok(Err(e)) => Err(format!("waiting for chronyc: {e}")),
        Err(_) => {
            // The dropped future killed chronyc (kill_on_drop); a killed
            // chronyc leaves its client socket next to chronyd's.
            if let (Some(pid), Some(dir)) = (pid, socket.parent()) {
                let _ = std::fs::remove_file(dir.join(format!("chronyc.{pid}.sock")));
            }
            Err(format!(
                "chronyd did not answer on {} within {} ms",
                socket.display(),
                timeout.as_millis()
            ))
        }
    }
}

// ---------------------------------------------------------------------------
// Parsing chronyc CSV output
// ---------------------------------------------------------------------------

/// `chronyc -c tracking`: the system clock's reference and quality.
#[derive(Debug, Clone, PartialEq)]
pub struct Tracking {
    /// Reference ID (an IPv4 address, a hash of an IPv6 one, a refclock
    /// name, 7F7F0101 for the local reference, 0 when unsynchronised).
    pub reference_id: u32,
    /// The reference's address, or its reference ID as text for refclocks;
    /// empty for the local reference and when unsynchronised.
    pub reference_name: String,
    pub stratum: u32,
    /// Last reference update, seconds since the Unix epoch (0 = never).
    pub reference_time: f64,
    /// chronyd's current correction of the system clock, in seconds
    /// (chronyc's "System time"; negative: the clock is fast).
    pub system_time: f64,
    pub last_offset: f64,
    pub rms_offset: f64,
    /// Rate the clock would be wrong at without correction (ppm, positive =
    /// fast).
    pub frequency_ppm: f64,
    pub residual_frequency_ppm: f64,
    pub skew_ppm: f64,
    pub root_delay: f64,
    pub root_dispersion: f64,
    pub update_interval: f64,
    /// "Normal", "Insert second", "Delete second" or "Not synchronised".
    pub leap_status: String,
}

impl Tracking {
    /// chronyd considers its clock synchronised (to a source or to its
    /// local reference).
    pub fn synchronised(&self) -> bool {
        matches!(
            self.leap_status.as_str(),
            "Normal" | "Insert second" | "Delete second"
        )
    }

    /// The local fallback reference is active.
    pub fn reference_is_local(&self) -> bool {
        self.reference_id == LOCAL_REFERENCE_ID
    }

    /// The NTP server or peer the clock follows, if any.
    pub fn reference_address(&self) -> Option<IpAddr> {
        self.reference_name.parse().ok()
    }
}

/// Source mode, the first column of `chronyc sources`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceMode {
    /// `^`: an NTP server we are a client of.
    Server,
    /// `=`: a symmetric peer.
    Peer,
    /// `#`: a reference clock.
    RefClock,
}

impl SourceMode {
    /// chrony_exporter's `source_mode` label value.
    pub fn label(self) -> &'static str {
        match self {
            SourceMode::Server => "client",
            SourceMode::Peer => "peer",
            SourceMode::RefClock => "reference clock",
        }
    }
}

/// Source state, the second column of `chronyc sources`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceState {
    /// `*`: the selected reference.
    Selected,
    /// `+`: combined with the selected one.
    Combined,
    /// `-`: acceptable but not combined.
    NotCombined,
    /// `?`: unusable (unreachable, too few samples, …).
    Unusable,
    /// `x`: a falseticker, disagreeing with the majority.
    Falseticker,
    /// `~`: too variable.
    Jittery,
}

impl SourceState {
    /// chrony_exporter's `source_state` label value.
    pub fn label(self) -> &'static str {
        match self {
            SourceState::Selected => "sync",
            SourceState::Combined => "candidate",
            SourceState::NotCombined => "outlier",
            SourceState::Unusable => "unreach",
            SourceState::Falseticker => "falseticker",
            SourceState::Jittery => "jittery",
        }
    }
}

/// One line of `chronyc -c sources`.
#[derive(Debug, Clone, PartialEq)]
pub struct Source {
    pub mode: SourceMode,
    pub state: SourceState,
    /// Address (or refclock name).
    pub name: String,
    pub stratum: u32,
    /// Poll exponent: the interval is 2^poll seconds.
    pub poll: i32,
    /// Reachability register: one bit per the last 8 polls, newest lowest.
    pub reach: u8,
    /// Seconds since the last good sample; `None` when there was none.
    pub last_sample_age: Option<u32>,
    /// Offset of the last sample, adjusted for clock changes since.
    pub last_sample_offset: f64,
    /// Offset as measured.
    pub measured_offset: f64,
    /// Error margin of the last sample.
    pub last_sample_error: f64,
}

/// `chronyc -c serverstats`. chrony 4.3 prints eleven fields; older
/// versions fewer (missing ones are `None`), newer ones more (ignored).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServerStats {
    pub ntp_packets_received: u64,
    pub ntp_packets_dropped: u64,
    pub command_packets_received: u64,
    pub command_packets_dropped: u64,
    pub client_log_records_dropped: u64,
    pub nts_ke_connections_accepted: Option<u64>,
    pub nts_ke_connections_dropped: Option<u64>,
    pub authenticated_ntp_packets: Option<u64>,
    pub interleaved_ntp_packets: Option<u64>,
    pub ntp_timestamps_held: Option<u64>,
    pub ntp_timestamp_span_seconds: Option<u64>,
}

/// `chronyc -c activity`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Activity {
    pub online: u32,
    pub offline: u32,
    pub burst_online: u32,
    pub burst_offline: u32,
    /// Sources whose name is not resolved yet (pool placeholders count).
    pub unresolved: u32,
}

/// Everything one probe learned.
#[derive(Debug, Clone, PartialEq)]
pub struct ChronyStatus {
    pub tracking: Tracking,
    pub server_stats: ServerStats,
    pub activity: Activity,
    pub sources: Vec<Source>,
}

fn fields(line: &str, what: &str, min: usize) -> Result<Vec<String>, String> {
    let f: Vec<String> = line.trim().split(',').map(str::to_string).collect();
    if f.len() < min {
        return Err(format!(
            "chronyc {what}: expected at least {min} fields, got {}: {line:?}",
            f.len()
        ));
    }
    Ok(f)
}

fn num<T: std::str::FromStr>(f: &[String], i: usize, what: &str) -> Result<T, String> {
    let text = f.get(i).map(String::as_str).unwrap_or("");
    text.trim()
        .parse()
        .map_err(|_| format!("chronyc {what}: field {} is not a number: {text:?}", i + 1))
}

/// Parses one line of `chronyc -c tracking` (14 fields).
pub fn parse_tracking(line: &str) -> Result<Tracking, String> {
    const W: &str = "tracking";
    let f = fields(line, W, 14)?;
    let reference_id = u32::from_str_radix(f[0].trim(), 16)
        .map_err(|_| format!("chronyc tracking: bad reference ID {:?}", f[0]))?;
    Ok(Tracking {
        reference_id,
        reference_name: f[1].trim().to_string(),
        stratum: num(&f, 2, W)?,
        reference_time: num(&f, 3, W)?,
        system_time: num(&f, 4, W)?,
        last_offset: num(&f, 5, W)?,
        rms_offset: num(&f, 6, W)?,
        frequency_ppm: num(&f, 7, W)?,
        residual_frequency_ppm: num(&f, 8, W)?,
        skew_ppm: num(&f, 9, W)?,
        root_delay: num(&f, 10, W)?,
        root_dispersion: num(&f, 11, W)?,
        update_interval: num(&f, 12, W)?,
        leap_status: f[13].trim().to_string(),
    })
}

/// Parses one line of `chronyc -c sources` (10 fields).
pub fn parse_source(line: &str) -> Result<Source, String> {
    const W: &str = "sources";
    let f = fields(line, W, 10)?;
    let mode = match f[0].as_str() {
        "^" => SourceMode::Server,
        "=" => SourceMode::Peer,
        "#" => SourceMode::RefClock,
        other => return Err(format!("chronyc sources: unknown mode {other:?}")),
    };
    let state = match f[1].as_str() {
        "*" => SourceState::Selected,
        "+" => SourceState::Combined,
        "-" => SourceState::NotCombined,
        "?" => SourceState::Unusable,
        "x" => SourceState::Falseticker,
        "~" => SourceState::Jittery,
        other => return Err(format!("chronyc sources: unknown state {other:?}")),
    };
    // chronyc prints the reachability register in octal.
    let reach = u16::from_str_radix(f[5].trim(), 8)
        .map_err(|_| format!("chronyc sources: bad reachability {:?}", f[5]))?;
    // u32::MAX is chronyc's "no sample yet".
    let age: u32 = num(&f, 6, W)?;
    Ok(Source {
        mode,
        state,
        name: f[2].trim().to_string(),
        stratum: num(&f, 3, W)?,
        poll: num(&f, 4, W)?,
        reach: (reach & 0xff) as u8,
        last_sample_age: (age != u32::MAX).then_some(age),
        last_sample_offset: num(&f, 7, W)?,
        measured_offset: num(&f, 8, W)?,
        last_sample_error: num(&f, 9, W)?,
    })
}

/// Parses one line of `chronyc -c serverstats` (at least 5 fields).
pub fn parse_serverstats(line: &str) -> Result<ServerStats, String> {
    const W: &str = "serverstats";
    let f = fields(line, W, 5)?;
    let opt = |i: usize| -> Result<Option<u64>, String> {
        if i < f.len() {
            num(&f, i, W).map(Some)
        } else {
            Ok(None)
        }
    };
    Ok(ServerStats {
        ntp_packets_received: num(&f, 0, W)?,
        ntp_packets_dropped: num(&f, 1, W)?,
        command_packets_received: num(&f, 2, W)?,
        command_packets_dropped: num(&f, 3, W)?,
        client_log_records_dropped: num(&f, 4, W)?,
        nts_ke_connections_accepted: opt(5)?,
        nts_ke_connections_dropped: opt(6)?,
        authenticated_ntp_packets: opt(7)?,
        interleaved_ntp_packets: opt(8)?,
        ntp_timestamps_held: opt(9)?,
        ntp_timestamp_span_seconds: opt(10)?,
    })
}

/// Parses one line of `chronyc -c activity` (5 fields).
pub fn parse_activity(line: &str) -> Result<Activity, String> {
    const W: &str = "activity";
    let f = fields(line, W, 5)?;
    Ok(Activity {
        online: num(&f, 0, W)?,
        offline: num(&f, 1, W)?,
        burst_online: num(&f, 2, W)?,
        burst_offline: num(&f, 3, W)?,
        unresolved: num(&f, 4, W)?,
    })
}

/// Parses the stdout of [`chronyc_command`]: tracking, serverstats and
/// activity lines, then one line per source.
pub fn parse_chronyc_output(stdout: &str) -> Result<ChronyStatus, String> {
    let mut lines = stdout.lines().filter(|l| !l.trim().is_empty());
    let mut next = |what: &str| {
        lines
            .next()
            .ok_or_else(|| format!("chronyc printed no {what} line"))
    };
    let tracking = parse_tracking(next("tracking")?)?;
    let server_stats = parse_serverstats(next("serverstats")?)?;
    let activity = parse_activity(next("activity")?)?;
    let sources = lines.map(parse_source).collect::<Result<Vec<_>, _>>()?;
    Ok(ChronyStatus {
        tracking,
        server_stats,
        activity,
        sources,
    })
}

// ---------------------------------------------------------------------------
// Status detail and metrics
// ---------------------------------------------------------------------------

/// Source counts for the status detail.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SourceCounts {
    /// Sources with a resolved address.
    pub total: usize,
    /// The selected reference (`*`), 0 or 1.
    pub selected: usize,
    /// Combined with the selected one (`+`).
    pub combined: usize,
    /// Answered at least one of the last 8 polls.
    pub reachable: usize,
    pub falsetickers: usize,
}

impl ChronyStatus {
    pub fn source_counts(&self) -> SourceCounts {
        let mut c = SourceCounts {
            total: self.sources.len(),
            ..SourceCounts::default()
        };
        for s in &self.sources {
            match s.state {
                SourceState::Selected => c.selected += 1,
                SourceState::Combined => c.combined += 1,
                SourceState::Falseticker => c.falsetickers += 1,
                _ => {}
            }
            if s.reach != 0 {
                c.reachable += 1;
            }
        }
        c
    }

    /// One sentence for an operator.
    pub fn summary(&self) -> String {
        let t = &self.tracking;
        let c = self.source_counts();
        if !t.synchronised() {
            format!(
                "chronyd answers but is not synchronised: {} of {} sources reachable{}",
                c.reachable,
                c.total,
                if self.activity.unresolved > 0 {
                    format!(", {} names unresolved", self.activity.unresolved)
                } else {
                    String::new()
                }
            )
        } else if t.reference_is_local() {
            format!(
                "serving local time at stratum {} (no upstream selected; the cooperative agrees on time, UTC is not guaranteed)",
                t.stratum
            )
        } else {
            let name = if t.reference_name.is_empty() {
                format!("{:08X}", t.reference_id)
            } else {
                t.reference_name.clone()
            };
            format!("synchronised to {name} at stratum {}", t.stratum)
        }
    }

    /// The `detail` object of `/ntari/ntp/status`.
    pub fn detail(&self) -> Map<String, Value> {
        let t = &self.tracking;
        let c = self.source_counts();
        let s = &self.server_stats;
        let detail = json!({
            "responding": true,
            "synchronised": t.synchronised(),
            "summary": self.summary(),
            "leap_status": t.leap_status,
            "stratum": t.stratum,
            "reference_id": format!("{:08X}", t.reference_id),
            "reference_name": t.reference_name,
            "reference_local": t.reference_is_local(),
            "reference_time": t.reference_time,
            "system_time_seconds": t.system_time,
            "last_offset_seconds": t.last_offset,
            "rms_offset_seconds": t.rms_offset,
            "frequency_ppm": t.frequency_ppm,
            "residual_frequency_ppm": t.residual_frequency_ppm,
            "skew_ppm": t.skew_ppm,
            "root_delay_seconds": t.root_delay,
            "root_dispersion_seconds": t.root_dispersion,
            "update_interval_seconds": t.update_interval,
            "sources": {
                "total": c.total,
                "selected": c.selected,
                "combined": c.combined,
                "reachable": c.reachable,
                "falsetickers": c.falsetickers,
                "unresolved": self.activity.unresolved,
            },
            "ntp_requests_received": s.ntp_packets_received,
            "ntp_requests_dropped": s.ntp_packets_dropped,
        });
        match detail {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    }

    /// Samples for [`METRICS`].
    pub fn metrics(&self) -> Vec<MetricSample> {
        let t = &self.tracking;
        let mut m = Vec::with_capacity(14 + 11 + 8 * self.sources.len());
        let address = t
            .reference_address()
            .map(|a| a.to_string())
            .unwrap_or_default();
        m.push(MetricSample::labelled(
            "chrony_tracking_info",
            &[
                &address,
                &t.reference_name,
                &format!("{:08X}", t.reference_id),
            ],
            1.0,
        ));
        m.push(MetricSample::new(
            "chrony_tracking_last_offset_seconds",
            t.last_offset,
        ));
        m.push(MetricSample::new(
            "chrony_tracking_reference_timestamp_seconds",
            t.reference_time,
        ));
        m.push(MetricSample::new(
            "chrony_tracking_system_time_seconds",
            t.system_time,
        ));
        m.push(MetricSample::new(
            "chrony_tracking_remote_reference",
            if t.reference_address().is_some() {
                1.0
            } else {
                0.0
            },
        ));
        m.push(MetricSample::new(
            "chrony_tracking_rms_offset_seconds",
            t.rms_offset,
        ));
        m.push(MetricSample::new(
            "chrony_tracking_root_delay_seconds",
            t.root_delay,
        ));
        m.push(MetricSample::new(
            "chrony_tracking_root_dispersion_seconds",
            t.root_dispersion,
        ));
        m.push(MetricSample::new(
            "chrony_tracking_frequency_ppms",
            t.frequency_ppm,
        ));
        m.push(MetricSample::new(
            "chrony_tracking_residual_frequency_ppms",
            t.residual_frequency_ppm,
        ));
        m.push(MetricSample::new("chrony_tracking_skew_ppms", t.skew_ppm));
        m.push(MetricSample::new(
            "chrony_tracking_update_interval_seconds",
            t.update_interval,
        ));
        m.push(MetricSample::new(
            "chrony_tracking_stratum",
            f64::from(t.stratum),
        ));
        m.push(MetricSample::new(
            "ntari_ntp_synchronised",
            if t.synchronised() { 1.0 } else { 0.0 },
        ));

        for s in &self.sources {
            // chrony_exporter without DNS lookups: the name is the address.
            let labels: [&str; 2] = [&s.name, &s.name];
            m.push(MetricSample::labelled(
                "chrony_sources_reachability_ratio",
                &labels,
                f64::from(s.reach.count_ones()) / 8.0,
            ));
            m.push(MetricSample::labelled(
                "chrony_sources_reachability_success",
                &labels,
                f64::from(s.reach & 1),
            ));
            if let Some(age) = s.last_sample_age {
                m.push(MetricSample::labelled(
                    "chrony_sources_last_sample_age_seconds",
                    &labels,
                    f64::from(age),
                ));
                m.push(MetricSample::labelled(
                    "chrony_sources_last_sample_offset_seconds",
                    &labels,
                    s.last_sample_offset,
                ));
                m.push(MetricSample::labelled(
                    "chrony_sources_last_sample_error_margin_seconds",
                    &labels,
                    s.last_sample_error,
                ));
            }
            m.push(MetricSample::labelled(
                "chrony_sources_polling_interval_seconds",
                &labels,
                2f64.powi(s.poll),
            ));
            m.push(MetricSample::labelled(
                "chrony_sources_state_info",
                &[&s.name, &s.name, s.state.label(), s.mode.label()],
                1.0,
            ));
            m.push(MetricSample::labelled(
                "chrony_sources_stratum",
                &labels,
                f64::from(s.stratum),
            ));
        }

        let st = &self.server_stats;
        let counters: [(&'static str, Option<u64>); 11] = [
            (
                "chrony_serverstats_ntp_packets_received_total",
                Some(st.ntp_packets_received),
            ),
            (
                "chrony_serverstats_ntp_packets_dropped_total",
                Some(st.ntp_packets_dropped),
            ),
            (
                "chrony_serverstats_command_packets_received_total",
                Some(st.command_packets_received),
            ),
            (
                "chrony_serverstats_command_packets_dropped_total",
                Some(st.command_packets_dropped),
            ),
            (
                "chrony_serverstats_client_log_records_dropped_total",
                Some(st.client_log_records_dropped),
            ),
            (
                "chrony_serverstats_nts_ke_connections_accepted_total",
                st.nts_ke_connections_accepted,
            ),
            (
                "chrony_serverstats_nts_ke_connections_dropped_total",
                st.nts_ke_connections_dropped,
            ),
            (
                "chrony_serverstats_authenticated_ntp_packets_total",
                st.authenticated_ntp_packets,
            ),
            (
                "chrony_serverstats_interleaved_ntp_packets_total",
                st.interleaved_ntp_packets,
            ),
            (
                "chrony_serverstats_ntp_timestamps_held",
                st.ntp_timestamps_held,
            ),
            (
                "chrony_serverstats_ntp_timestamp_span_seconds",
                st.ntp_timestamp_span_seconds,
            ),
        ];
        for (name, value) in counters {
            if let Some(v) = value {
                // Counters up to 2^53 are exact in f64; chrony's are 32 bit.
                m.push(MetricSample::new(name, v as f64));
            }
        }
        m
    }

    /// What [`Ntp::probe`] returns.
    pub fn probe_report(&self) -> ProbeReport {
        ProbeReport {
            detail: self.detail(),
            metrics: self.metrics(),
        }
    }
}

const SOURCE_LABELS: &[&str] = &["source_address", "source_name"];

/// Metric families, named and labelled as superq/chrony_exporter names them
/// (tracking.go, sources.go, serverstats.go), plus `ntari_ntp_synchronised`.
pub static METRICS: &[MetricDesc] = &[
    MetricDesc {
        name: "chrony_tracking_info",
        help: "Chrony tracking info",
        labels: &["tracking_address", "tracking_name", "tracking_refid"],
    },
    MetricDesc {
        name: "chrony_tracking_last_offset_seconds",
        help: "Chrony tracking last offset in seconds",
        labels: &[],
    },
    MetricDesc {
        name: "chrony_tracking_reference_timestamp_seconds",
        help: "Chrony tracking Reference timestamp",
        labels: &[],
    },
    MetricDesc {
        name: "chrony_tracking_system_time_seconds",
        help: "Chrony tracking System time",
        labels: &[],
    },
    MetricDesc {
        name: "chrony_tracking_remote_reference",
        help: "Chrony tracking is connected to a remote source",
        labels: &[],
    },
    MetricDesc {
        name: "chrony_tracking_rms_offset_seconds",
        help: "Chrony tracking long-term average of the offset",
        labels: &[],
    },
    MetricDesc {
        name: "chrony_tracking_root_delay_seconds",
        help: "This is the total of the network path delays to the stratum-1 computer from which the computer is ultimately synchronised",
        labels: &[],
    },
    MetricDesc {
        name: "chrony_tracking_root_dispersion_seconds",
        help: "Chrony tracking total of all measurement errors to the NTP root",
        labels: &[],
    },
    MetricDesc {
        name: "chrony_tracking_frequency_ppms",
        help: "Rate by which the system's clock would be wrong if chronyd was not correcting it, in PPMs",
        labels: &[],
    },
    MetricDesc {
        name: "chrony_tracking_residual_frequency_ppms",
        help: "For the currently selected reference source, the difference between the frequency it suggests and the one currently in use, in PPMs",
        labels: &[],
    },
    MetricDesc {
        name: "chrony_tracking_skew_ppms",
        help: "The estimated error bound on the frequency, in PPMs",
        labels: &[],
    },
    MetricDesc {
        name: "chrony_tracking_update_interval_seconds",
        help: "The time elapsed since the last measurement from the reference source was processed, in seconds",
        labels: &[],
    },
    MetricDesc {
        name: "chrony_tracking_stratum",
        help: "Chrony tracking client stratum",
        labels: &[],
    },
    MetricDesc {
        name: "ntari_ntp_synchronised",
        help: "1 when chronyd reports its clock synchronised (leap status not 'Not synchronised'), to a source or to its local reference.",
        labels: &[],
    },
    MetricDesc {
        name: "chrony_sources_last_sample_age_seconds",
        help: "Chrony sources last good sample age in seconds",
        labels: SOURCE_LABELS,
    },
    MetricDesc {
        name: "chrony_sources_reachability_ratio",
        help: "Chrony sources ratio of packet reachability",
        labels: SOURCE_LABELS,
    },
    MetricDesc {
        name: "chrony_sources_reachability_success",
        help: "Chrony sources last poll reachability success",
        labels: SOURCE_LABELS,
    },
    MetricDesc {
        name: "chrony_sources_last_sample_offset_seconds",
        help: "Chrony sources last sample offset in seconds",
        labels: SOURCE_LABELS,
    },
    MetricDesc {
        name: "chrony_sources_last_sample_error_margin_seconds",
        help: "Chrony sources last sample margin of error in seconds",
        labels: SOURCE_LABELS,
    },
    MetricDesc {
        name: "chrony_sources_polling_interval_seconds",
        help: "Chrony sources polling interval in seconds",
        labels: SOURCE_LABELS,
    },
    MetricDesc {
        name: "chrony_sources_state_info",
        help: "Chrony sources state info",
        labels: &["source_address", "source_name", "source_state", "source_mode"],
    },
    MetricDesc {
        name: "chrony_sources_stratum",
        help: "Chrony sources stratum",
        labels: SOURCE_LABELS,
    },
    MetricDesc {
        name: "chrony_serverstats_ntp_packets_received_total",
        help: "The number of valid NTP requests received by the server.",
        labels: &[],
    },
    MetricDesc {
        name: "chrony_serverstats_nts_ke_connections_accepted_total",
        help: "The number of NTS-KE connections accepted by the server.",
        labels: &[],
    },
    MetricDesc {
        name: "chrony_serverstats_command_packets_received_total",
        help: "The number of command requests received by the server.",
        labels: &[],
    },
    MetricDesc {
        name: "chrony_serverstats_ntp_packets_dropped_total",
        help: "The number of NTP requests dropped by the server due to rate limiting.",
        labels: &[],
    },
    MetricDesc {
        name: "chrony_serverstats_nts_ke_connections_dropped_total",
        help: "The number of NTS-KE connections dropped by the server due to rate limiting.",
        labels: &[],
    },
    MetricDesc {
        name: "chrony_serverstats_command_packets_dropped_total",
        help: "The number of command requests dropped by the server due to rate limiting.",
        labels: &[],
    },
    MetricDesc {
        name: "chrony_serverstats_client_log_records_dropped_total",
        help: "The number of client log records dropped by the server to limit the memory use.",
        labels: &[],
    },
    MetricDesc {
        name: "chrony_serverstats_authenticated_ntp_packets_total",
        help: "The number of received NTP requests that were authenticated (with a symmetric key or NTS).",
        labels: &[],
    },
    MetricDesc {
        name: "chrony_serverstats_interleaved_ntp_packets_total",
        help: "The number of received NTP requests that were detected to be in the interleaved mode.",
        labels: &[],
    },
    MetricDesc {
        name: "chrony_serverstats_ntp_timestamps_held",
        help: "The number of pairs of receive and transmit timestamps that the server is currently holding in memory for clients using the interleaved mode.",
        labels: &[],
    },
    MetricDesc {
        name: "chrony_serverstats_ntp_timestamp_span_seconds",
        help: "The interval (in seconds) covered by the currently held NTP timestamps.",
        labels: &[],
    },
];

// ---------------------------------------------------------------------------
// Rendering
// ---------------------------------------------------------------------------

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

/// The chrony.conf text for `config` (see [`Ntp::render`]).
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
        format!(
            "bindcmdaddress {}",
            paths.run_dir.join(SOCKET_DIR).join(SOCKET_FILE).display()
        ),
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

// ---------------------------------------------------------------------------
// The service
// ---------------------------------------------------------------------------

/// The NTARI time service: chronyd.
#[derive(Debug, Clone, Copy, Default)]
pub struct Ntp;

impl Service for Ntp {
    type Config = NtpConfig;

    const NAME: &'static str = "ntp";
    const DAEMON: &'static str = "chronyd";
    const METRICS_PORT: u16 = 9703;

    fn validate(&self, config: &NtpConfig) -> Result<(), ConfigIssue> {
        for (i, up) in config.servers.iter().enumerate() {
            check_upstream(&format!("servers[{i}]"), up, false, config)?;
        }
        for (i, up) in config.pools.iter().enumerate() {
            check_upstream(&format!("pools[{i}]"), up, true, config)?;
        }
        for (i, entry) in config.allow.iter().enumerate() {
            parse_subnet(entry).map_err(|m| ConfigIssue::new(format!("allow[{i}]"), m))?;
        }
        check_poll("minpoll", config.minpoll)?;
        check_poll("maxpoll", config.maxpoll)?;
        if let (Some(min), Some(max)) = (config.minpoll, config.maxpoll) {
            if min > max {
                return Err(ConfigIssue::new(
                    "minpoll",
                    format!("minpoll {min} is greater than maxpoll {max}"),
                ));
            }
        }
        if config.local_stratum > 15 {
            return Err(ConfigIssue::new(
                "local_stratum",
                format!(
                    "{} is outside 1–15 (0 disables the local reference)",
                    config.local_stratum
                ),
            ));
        }
        if !config.makestep_threshold.is_finite() || config.makestep_threshold < 0.0 {
            return Err(ConfigIssue::new(
                "makestep_threshold",
                "must be a number of seconds ≥ 0 (0 = never step the clock)",
            ));
        }
        if config.makestep_limit < -1 {
            return Err(ConfigIssue::new(
                "makestep_limit",
                "must be ≥ 0, or -1 to step at any update",
            ));
        }
        if config.serve_port == 0 && !config.allow.is_empty() {
            return Err(ConfigIssue::new(
                "allow",
                "serve_port = 0 turns serving off; remove `allow` or set serve_port",
            ));
        }
        if config.serve_port == 0 && config.bind_address.is_some() {
            return Err(ConfigIssue::new(
                "bind_address",
                "serve_port = 0 turns serving off; remove `bind_address` or set serve_port",
            ));
        }
        let has_upstream = !config.servers.is_empty() || !config.pools.is_empty();
        let serves = config.serve_port != 0 && !config.allow.is_empty();
        if !has_upstream && config.local_stratum == 0 {
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

    /// `chrony.conf` (mode 0644, no secrets) into the run dir.
    fn render(&self, config: &NtpConfig, paths: &Paths) -> Vec<RenderedFile> {
        vec![RenderedFile {
            name: CONFIG_FILE.to_string(),
            contents: render_chrony_conf(config, paths),
            mode: 0o644,
        }]
    }

    /// `chronyd -p -f <conf>` prints the parsed config and exits 1 on a
    /// syntax error (unknown directive, unparsable `allow`/`local`/`server`
    /// option). It cannot catch what only shows at run time: a bind address
    /// not on this host, a port in use (chronyd shares it silently, see
    /// docs/services/ntp.md), an unwritable drift file, unresolvable names,
    /// a socket directory with wrong permissions, or an out-of-range number
    /// that parses (e.g. `port 99999`). [`Ntp::validate`] covers the
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
    /// the runtime created), `-x` when `leave_clock_alone`.
    fn daemon_command(&self, config: &NtpConfig, paths: &Paths) -> Command {
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
        Command::new(CHRONYD, args)
    }

    fn version_command(&self) -> Option<Command> {
        Some(Command::new(CHRONYD, ["--version"]))
    }

    /// chronyd refuses to start when its pid file names a live process,
    /// which after a crash can be an unrelated one that reused the pid.
    fn stale_files(&self, _config: &NtpConfig, paths: &Paths) -> Vec<std::path::PathBuf> {
        vec![paths.run_dir.join(PID_FILE)]
    }

    fn metrics(&self) -> &'static [MetricDesc] {
        METRICS
    }

    /// One `chronyc` exchange over the command socket (see
    /// [`chronyc_command`]), killed after [`PROBE_TIMEOUT`]. Succeeds
    /// whenever chronyd answers, synchronised or not.
    fn probe(
        &self,
        _config: &NtpConfig,
        paths: &Paths,
    ) -> impl Future<Output = Result<ProbeReport, String>> + Send {
        let socket = command_socket(paths);
        async move {
            let stdout = run_chronyc(&socket, PROBE_TIMEOUT).await?;
            let status = parse_chronyc_output(&stdout)?;
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

    // Captured from chronyd 4.3 (Debian) with `chronyc -c -n -m tracking
    // serverstats activity sources` over the command socket.

    /// A client synchronised to a stratum-10 server on 127.0.0.1.
    const CLIENT_SYNCED: &str = "\
7F000001,127.0.0.1,11,1795252463.990610560,-0.000001217,-0.000000008,0.000000019,-0.003,-0.000,0.033,0.000006697,0.000000819,0.3,Normal
0,0,23,0,0,0,0,0,0,0,0
1,0,0,0,0
^,*,127.0.0.1,10,-2,377,0,0.000000129,0.000000121,0.000003554
";

    /// A server with only its local reference (`local stratum 10 orphan`).
    const SERVER_LOCAL: &str = "\
7F7F0101,,10,1795252381.163577612,0.000000000,0.000000000,0.000000000,0.000,0.000,0.000,0.000000000,0.000000000,0.0,Normal
16,0,5,0,0,0,0,0,0,0,0
0,0,0,0,0
";

    /// Nothing reachable: a dead server and an unresolvable pool.
    const UNSYNCED: &str = "\
00000000,,0,0.000000000,0.000000000,0.000000000,0.000000000,0.000,0.000,0.000,1.000000000,1.000000000,0.0,Not synchronised
0,0,23,0,0,0,0,0,0,0,0
1,0,0,0,8
^,?,127.0.0.1,0,0,0,4294967295,0.000000000,0.000000000,0.000000000
";

    fn paths() -> Paths {
        Paths {
            config: "/etc/ntari/services/ntp.toml".into(),
            state_dir: "/var/lib/ntari/ntp".into(),
            run_dir: "/run/ntari/ntp".into(),
        }
    }

    fn sample<'a>(m: &'a [MetricSample], name: &str) -> Vec<&'a MetricSample> {
        m.iter().filter(|s| s.name == name).collect()
    }

    fn value(m: &[MetricSample], name: &str) -> f64 {
        let found = sample(m, name);
        assert_eq!(found.len(), 1, "{name}: {found:?}");
        found[0].value
    }

    #[test]
    fn parses_synchronised_client() {
        let st = parse_chronyc_output(CLIENT_SYNCED).unwrap();
        let t = &st.tracking;
        assert_eq!(t.reference_id, 0x7F00_0001);
        assert_eq!(t.reference_name, "127.0.0.1");
        assert_eq!(t.stratum, 11);
        assert!(t.synchronised());
        assert!(!t.reference_is_local());
        assert_eq!(t.reference_address(), Some("127.0.0.1".parse().unwrap()));
        assert_eq!(t.system_time, -0.000001217);
        assert_eq!(t.frequency_ppm, -0.003);
        assert_eq!(t.update_interval, 0.3);
        assert_eq!(st.server_stats.command_packets_received, 23);
        assert_eq!(st.server_stats.ntp_timestamp_span_seconds, Some(0));
        assert_eq!(st.activity.online, 1);
        assert_eq!(st.sources.len(), 1);
        let s = &st.sources[0];
        assert_eq!(
            (s.mode, s.state),
            (SourceMode::Server, SourceState::Selected)
        );
        assert_eq!(s.reach, 0o377);
        assert_eq!(s.poll, -2);
        assert_eq!(s.last_sample_age, Some(0));
        assert_eq!(s.last_sample_error, 0.000003554);

        let c = st.source_counts();
        assert_eq!((c.total, c.selected, c.reachable), (1, 1, 1));
        let d = st.detail();
        assert_eq!(d["synchronised"], json!(true));
        assert_eq!(d["stratum"], json!(11));
        assert_eq!(d["reference_id"], json!("7F000001"));
        assert_eq!(
            d["summary"],
            json!("synchronised to 127.0.0.1 at stratum 11")
        );
        assert_eq!(d["sources"]["selected"], json!(1));

        let m = st.metrics();
        assert_eq!(value(&m, "chrony_tracking_stratum"), 11.0);
        assert_eq!(value(&m, "chrony_tracking_remote_reference"), 1.0);
        assert_eq!(value(&m, "ntari_ntp_synchronised"), 1.0);
        assert_eq!(value(&m, "chrony_sources_polling_interval_seconds"), 0.25);
        assert_eq!(value(&m, "chrony_sources_reachability_ratio"), 1.0);
        let info = sample(&m, "chrony_tracking_info");
        assert_eq!(info[0].label_values, ["127.0.0.1", "127.0.0.1", "7F000001"]);
        let state = sample(&m, "chrony_sources_state_info");
        assert_eq!(
            state[0].label_values,
            ["127.0.0.1", "127.0.0.1", "sync", "client"]
        );
    }

    #[test]
    fn parses_local_reference_server() {
        let st = parse_chronyc_output(SERVER_LOCAL).unwrap();
        assert!(st.tracking.synchronised());
        assert!(st.tracking.reference_is_local());
        assert_eq!(st.tracking.reference_address(), None);
        assert!(st.sources.is_empty());
        assert_eq!(st.server_stats.ntp_packets_received, 16);
        let d = st.detail();
        assert_eq!(d["reference_local"], json!(true));
        assert!(d["summary"]
            .as_str()
            .unwrap()
            .starts_with("serving local time at stratum 10"));
        let m = st.metrics();
        assert_eq!(value(&m, "chrony_tracking_remote_reference"), 0.0);
        assert_eq!(
            value(&m, "chrony_serverstats_ntp_packets_received_total"),
            16.0
        );
        let info = sample(&m, "chrony_tracking_info");
        assert_eq!(info[0].label_values, ["", "", "7F7F0101"]);
    }

    #[test]
    fn unsynchronised_is_a_successful_parse() {
        let st = parse_chronyc_output(UNSYNCED).unwrap();
        assert!(!st.tracking.synchronised());
        assert_eq!(st.tracking.stratum, 0);
        let s = &st.sources[0];
        assert_eq!(s.state, SourceState::Unusable);
        assert_eq!(s.last_sample_age, None);
        let d = st.detail();
        assert_eq!(d["synchronised"], json!(false));
        assert_eq!(d["responding"], json!(true));
        assert_eq!(d["sources"]["unresolved"], json!(8));
        assert_eq!(
            d["summary"],
            json!("chronyd answers but is not synchronised: 0 of 1 sources reachable, 8 names unresolved")
        );
        let m = st.metrics();
        assert_eq!(value(&m, "ntari_ntp_synchronised"), 0.0);
        // No sample yet: no age/offset/error samples rather than 2^32-1.
        assert!(sample(&m, "chrony_sources_last_sample_age_seconds").is_empty());
        assert_eq!(value(&m, "chrony_sources_reachability_success"), 0.0);
        let state = sample(&m, "chrony_sources_state_info");
        assert_eq!(state[0].label_values[2], "unreach");
    }

    #[test]
    fn every_sample_has_a_desc_with_matching_labels() {
        for text in [CLIENT_SYNCED, SERVER_LOCAL, UNSYNCED] {
            let st = parse_chronyc_output(text).unwrap();
            for s in st.metrics() {
                let desc = METRICS.iter().find(|d| d.name == s.name);
                let desc = desc.unwrap_or_else(|| panic!("no desc for {}", s.name));
                assert_eq!(desc.labels.len(), s.label_values.len(), "{}", s.name);
            }
        }
        let mut names: Vec<_> = METRICS.iter().map(|d| d.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), METRICS.len(), "duplicate metric names");
    }

    #[test]
    fn rejects_bad_output() {
        assert!(parse_chronyc_output("").is_err());
        assert!(parse_chronyc_output("506 Cannot talk to daemon\n").is_err());
        let short = CLIENT_SYNCED.lines().next().unwrap();
        assert!(parse_chronyc_output(short)
            .unwrap_err()
            .contains("serverstats"));
        assert!(parse_tracking("ZZ,,1,2,3,4,5,6,7,8,9,10,11,Normal").is_err());
        assert!(parse_source("^,!,1.2.3.4,1,6,377,1,0,0,0").is_err());
        assert!(parse_source("^,*,1.2.3.4,1,6,9x,1,0,0,0").is_err());
        // Older chrony: 5 serverstats fields.
        let old = parse_serverstats("1,2,3,4,5").unwrap();
        assert_eq!(old.client_log_records_dropped, 5);
        assert_eq!(old.nts_ke_connections_accepted, None);
    }

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
        assert!(Ntp.validate(&c).is_ok());

        let typo = toml::from_str::<NtpConfig>("servers = [{ host = \"a\", iburts = true }]");
        assert!(typo.unwrap_err().to_string().contains("iburts"));
        let typo = toml::from_str::<NtpConfig>("serve_prot = 123");
        assert!(typo.unwrap_err().to_string().contains("serve_prot"));
        assert!(toml::from_str::<NtpConfig>("bind_address = \"nope\"").is_err());
        assert!(toml::from_str::<NtpConfig>("serve_port = 70000").is_err());
    }

    fn issue_key(c: &NtpConfig) -> String {
        Ntp.validate(c).unwrap_err().key
    }

    #[test]
    fn validation_names_the_key() {
        let base = NtpConfig {
            servers: vec![Upstream::new("ntp.example.org")],
            ..NtpConfig::default()
        };
        assert!(Ntp.validate(&base).is_ok());

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
        assert!(Ntp.validate(&c).is_ok());
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

    #[test]
    fn commands() {
        let c = NtpConfig::default();
        let p = paths();
        assert_eq!(
            Ntp.check_command(&c, &p).unwrap().display(),
            "chronyd -p -f /run/ntari/ntp/chrony.conf"
        );
        assert_eq!(
            Ntp.daemon_command(&c, &p).display(),
            "chronyd -d -u root -f /run/ntari/ntp/chrony.conf"
        );
        let dev = NtpConfig {
            leave_clock_alone: true,
            ..c.clone()
        };
        assert_eq!(
            Ntp.daemon_command(&dev, &p).display(),
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

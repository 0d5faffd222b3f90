//! The probe: one `chronyc` exchange over chronyd's command socket, parsed
//! into the status detail and into metrics named and labelled as
//! chrony_exporter names them, so existing dashboards work unchanged.

use std::net::IpAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use ntari_node::service::{Command, MetricDesc, MetricSample, ProbeReport};
use serde_json::{json, Map, Value};

/// Hard limit on one `chronyc` exchange; chronyc is killed after it.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Reference ID chronyd reports while its `local` reference is active
/// (127.127.1.1).
pub const LOCAL_REFERENCE_ID: u32 = 0x7F7F_0101;

/// Resolved through `PATH`, like chronyd.
const CHRONYC: &str = "chronyc";

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
pub(crate) async fn run_chronyc(socket: &Path, timeout: Duration) -> Result<String, String> {
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

    /// What [`Ntp::probe`](crate::Ntp#method.probe) returns.
    pub fn probe_report(&self) -> ProbeReport {
        ProbeReport {
            detail: self.detail(),
            metrics: self.metrics(),
            ..Default::default()
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
}

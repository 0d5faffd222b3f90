//! The probe: one real exchange with each daemon, in-process, and what
//! they report.
//!
//! - slapd: LDAP over the ldapi socket with `ldap3` — a SASL EXTERNAL bind,
//!   a base search of the suffix (the database answers, not only the
//!   listener), and one subtree search of `cn=Monitor` for the metrics
//!   (openldap_exporter's names: `openldap_monitor_counter_object{dn}`,
//!   `openldap_monitor_operation{dn}`).
//! - krb5kdc: a full AS exchange for the probe principal with its keytab
//!   ([`crate::kerberos`]): proves the KDC answers, finds the principal in
//!   the directory, demands pre-authentication and accepts the current key.
//! - kadmind: an ONC RPC call to its admin program (2112) over TCP, for a
//!   version it does not serve: the PROG_MISMATCH reply proves its RPC
//!   service answers, without an authentication attempt in its log every
//!   5 s; a GSS-authenticated call would need a ticket per probe.
//!
//! Why not `ldapsearch`/`kinit`/`kadmin`: the probe runs every 5 s, and a
//! process per exchange would cost more CPU than the rest of the node
//! (DESIGN.md §7: talk the daemon's protocol instead of spawning helpers).
//!
//! KDC request counts come from the KDC's own log file ([`KdcLog`]): MIT's
//! KDC has no statistics interface, but logs one line per request.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ldap3::{LdapConnAsync, Scope, SearchEntry};
use ntari_node::service::{MetricDesc, MetricSample};
use serde_json::{json, Map, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Bound of each daemon's exchange.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

pub const METRICS: &[MetricDesc] = &[
    MetricDesc {
        name: "ntari_identity_probe_seconds",
        help: "Round trip of the probe's exchange with each daemon",
        labels: &["daemon"],
    },
    MetricDesc {
        name: "ntari_identity_kdc_requests_total",
        help: "KDC requests since the node started, by request (AS, TGS) and result (ISSUE or the KDC's reason)",
        labels: &["request", "result"],
    },
    MetricDesc {
        name: "openldap_monitor_counter_object",
        help: "cn=Monitor (objectClass=monitorCounterObject) monitorCounter",
        labels: &["dn"],
    },
    MetricDesc {
        name: "openldap_monitor_operation",
        help: "cn=Operations,cn=Monitor (objectClass=monitorOperation) monitorOpCompleted",
        labels: &["dn"],
    },
];

/// What slapd said.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LdapReport {
    pub round_trip: Duration,
    /// `monitorCounter` by DN (connections, statistics).
    pub counters: BTreeMap<String, f64>,
    /// `monitorOpCompleted` by DN (bind, search, modify, …).
    pub operations: BTreeMap<String, f64>,
}

/// Bind over ldapi, search the suffix, read `cn=Monitor`.
pub async fn probe_ldap(ldapi_url: &str, base_dn: &str) -> Result<LdapReport, String> {
    let started = Instant::now();
    let work = async {
        let (conn, mut ldap) = LdapConnAsync::new(ldapi_url)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        ldap3::drive!(conn);
        ldap.sasl_external_bind()
            .await
            .and_then(|r| r.success())
            .map_err(|e| format!("SASL EXTERNAL bind: {e}"))?;
        let (base, _) = ldap
            .search(base_dn, Scope::Base, "(objectClass=*)", vec!["1.1"])
            .await
            .and_then(|r| r.success())
            .map_err(|e| format!("search of {base_dn}: {e}"))?;
        if base.is_empty() {
            return Err(format!("{base_dn} is not in the directory"));
        }
        let (entries, _) = ldap
            .search(
                "cn=Monitor",
                Scope::Subtree,
                "(|(objectClass=monitorCounterObject)(objectClass=monitorOperation))",
                vec!["monitorCounter", "monitorOpCompleted"],
            )
            .await
            .and_then(|r| r.success())
            .map_err(|e| format!("search of cn=Monitor: {e}"))?;
        let _ = ldap.unbind().await;
        let mut report = LdapReport::default();
        for entry in entries {
            let entry = SearchEntry::construct(entry);
            let value = |attr: &str| {
                entry
                    .attrs
                    .get(attr)
                    .and_then(|v| v.first())
                    .and_then(|v| v.parse::<f64>().ok())
            };
            if let Some(v) = value("monitorCounter") {
                report.counters.insert(entry.dn.clone(), v);
            }
            if let Some(v) = value("monitorOpCompleted") {
                report.operations.insert(entry.dn.clone(), v);
            }
        }
        Ok(report)
    };
    let mut report = tokio::time::timeout(PROBE_TIMEOUT, work)
        .await
        .map_err(|_| format!("no answer within {}s", PROBE_TIMEOUT.as_secs()))??;
    report.round_trip = started.elapsed();
    Ok(report)
}

/// Program number of kadmind's admin RPC (MIT's `KADM`).
const KADM_PROGRAM: u32 = 2112;

/// An ONC RPC (RFC 5531) call to kadmind's admin program for version 0,
/// which it does not have: the RPC layer answers PROG_MISMATCH with the
/// versions it serves, before any authentication — so kadmind logs
/// nothing (an unauthenticated NULL call would log an error every probe).
/// Ok with the round trip when that reply comes back for our xid.
pub async fn probe_kadmind(addr: SocketAddr) -> Result<Duration, String> {
    let started = Instant::now();
    let xid: u32 = rand_core::RngCore::next_u32(&mut rand_core::OsRng);
    let work = async {
        let mut stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let mut call = Vec::with_capacity(44);
        // Record mark: last fragment, 40 bytes.
        call.extend_from_slice(&(0x8000_0000u32 | 40).to_be_bytes());
        // xid, CALL, RPC v2, program, version 0, procedure 0 (NULL),
        // credential AUTH_NONE (flavor, length), verifier AUTH_NONE.
        for word in [xid, 0, 2, KADM_PROGRAM, 0, 0, 0, 0, 0, 0] {
            call.extend_from_slice(&word.to_be_bytes());
        }
        stream
            .write_all(&call)
            .await
            .map_err(|e| format!("send: {e}"))?;
        // mark, xid, REPLY, MSG_ACCEPTED, verifier (flavor, length 0),
        // accept_stat PROG_MISMATCH, low, high.
        let mut reply = [0u8; 36];
        stream
            .read_exact(&mut reply)
            .await
            .map_err(|e| format!("no RPC reply: {e}"))?;
        let word =
            |i: usize| u32::from_be_bytes([reply[i], reply[i + 1], reply[i + 2], reply[i + 3]]);
        if word(4) != xid || word(8) != 1 || word(12) != 0 || word(24) != 2 {
            return Err(format!(
                "not kadmind's answer (xid {:#x}, type {}, reply {}, accept {})",
                word(4),
                word(8),
                word(12),
                word(24)
            ));
        }
        Ok(())
    };
    tokio::time::timeout(PROBE_TIMEOUT, work)
        .await
        .map_err(|_| format!("no answer within {}s", PROBE_TIMEOUT.as_secs()))??;
    Ok(started.elapsed())
}

/// Counts of the KDC's log lines: `AS_REQ (…) 127.0.0.1: ISSUE: …`,
/// `… NEEDED_PREAUTH: …`, `… PREAUTH_FAILED: …`.
#[derive(Debug, Default)]
pub struct KdcLog {
    path: PathBuf,
    /// Bytes of the file already counted; None until the first read, which
    /// starts at the end (counts are since the node started).
    offset: Option<u64>,
    pub counts: BTreeMap<(String, String), u64>,
}

/// A log this big is emptied after it is read: the KDC appends
/// (`O_APPEND`), so it goes on writing at the new end.
const LOG_LIMIT: u64 = 8 << 20;
/// At most this much is read per probe.
const LOG_CHUNK: u64 = 1 << 20;

impl KdcLog {
    pub fn new(path: PathBuf) -> KdcLog {
        KdcLog {
            path,
            ..Default::default()
        }
    }

    /// Reads what the KDC wrote since the last call and counts it.
    pub fn update(&mut self) {
        let Ok(mut file) = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&self.path)
        else {
            return;
        };
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        let offset = match self.offset {
            None => {
                self.offset = Some(len);
                return;
            }
            Some(o) if o > len => 0, // emptied or replaced
            Some(o) => o,
        };
        let mut buf = Vec::new();
        if file.seek(SeekFrom::Start(offset)).is_err()
            || (&mut file).take(LOG_CHUNK).read_to_end(&mut buf).is_err()
        {
            return;
        }
        // Only whole lines; a partial last line is read again next time.
        let complete = buf
            .iter()
            .rposition(|&b| b == b'\n')
            .map(|i| i + 1)
            .unwrap_or(0);
        for line in String::from_utf8_lossy(&buf[..complete]).lines() {
            if let Some(key) = parse_kdc_line(line) {
                *self.counts.entry(key).or_default() += 1;
            }
        }
        let mut next = offset + complete as u64;
        if next >= LOG_LIMIT && next == len && file.set_len(0).is_ok() {
            next = 0;
        }
        self.offset = Some(next);
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Empties a daemon's log file once it is over the limit (kadmind's, which
/// nothing reads but an admin): the daemon appends, so it goes on at the
/// new end. The run dir is a tmpfs on NTARI OS; it must not fill.
pub fn trim_log(path: &Path) {
    if std::fs::metadata(path)
        .map(|m| m.len() > LOG_LIMIT)
        .unwrap_or(false)
    {
        if let Ok(file) = std::fs::OpenOptions::new().write(true).open(path) {
            let _ = file.set_len(0);
        }
    }
}

/// `(AS|TGS, result)` of one KDC log line, None for other lines.
pub fn parse_kdc_line(line: &str) -> Option<(String, String)> {
    let (request, rest) = if let Some(i) = line.find("AS_REQ (") {
        ("AS", &line[i..])
    } else if let Some(i) = line.find("TGS_REQ (") {
        ("TGS", &line[i..])
    } else {
        return None;
    };
    // `…etypes {…}) <address>: <RESULT>: …`
    let after = &rest[rest.find(") ")? + 2..];
    let mut parts = after.splitn(3, ": ");
    let _address = parts.next()?;
    let result = parts.next()?;
    if result.is_empty() || !result.chars().all(|c| c.is_ascii_uppercase() || c == '_') {
        return None;
    }
    Some((request.to_string(), result.to_string()))
}

/// Status detail and metrics of one round of the probe.
pub fn report(
    ldap: &LdapReport,
    kdc: &crate::kerberos::AsOutcome,
    kadmind: Duration,
    counts: &BTreeMap<(String, String), u64>,
) -> (Map<String, Value>, Vec<MetricSample>) {
    let ms = |d: Duration| (d.as_secs_f64() * 1e6).round() / 1e3;
    let mut metrics = vec![
        MetricSample::labelled(
            "ntari_identity_probe_seconds",
            &["slapd"],
            ldap.round_trip.as_secs_f64(),
        ),
        MetricSample::labelled(
            "ntari_identity_probe_seconds",
            &["krb5kdc"],
            kdc.round_trip.as_secs_f64(),
        ),
        MetricSample::labelled(
            "ntari_identity_probe_seconds",
            &["kadmind"],
            kadmind.as_secs_f64(),
        ),
    ];
    for ((request, result), n) in counts {
        metrics.push(MetricSample::labelled(
            "ntari_identity_kdc_requests_total",
            &[request, result],
            *n as f64,
        ));
    }
    for (dn, v) in &ldap.counters {
        metrics.push(MetricSample::labelled(
            "openldap_monitor_counter_object",
            &[dn],
            *v,
        ));
    }
    for (dn, v) in &ldap.operations {
        metrics.push(MetricSample::labelled(
            "openldap_monitor_operation",
            &[dn],
            *v,
        ));
    }
    let connections = ldap
        .counters
        .get("cn=Current,cn=Connections,cn=Monitor")
        .copied();
    let operations: Map<String, Value> = ldap
        .operations
        .iter()
        .filter_map(|(dn, v)| {
            let op = dn
                .strip_prefix("cn=")?
                .split(',')
                .next()?
                .to_ascii_lowercase();
            (dn.ends_with(",cn=Operations,cn=Monitor")).then(|| (op, json!(*v as u64)))
        })
        .collect();
    let mut requests: Map<String, Value> = Map::new();
    for ((request, result), n) in counts {
        let entry = requests.entry(request.clone()).or_insert_with(|| json!({}));
        if let Some(obj) = entry.as_object_mut() {
            obj.insert(result.clone(), json!(n));
        }
    }
    let mut detail = Map::new();
    detail.insert(
        "slapd".into(),
        json!({ "ok": true, "round_trip_ms": ms(ldap.round_trip), "connections": connections, "operations": operations }),
    );
    detail.insert(
        "krb5kdc".into(),
        json!({
            "ok": true,
            "round_trip_ms": ms(kdc.round_trip),
            "preauth_required": kdc.preauth_required,
            "enctype": kdc.enctype,
            "requests": requests,
        }),
    );
    detail.insert(
        "kadmind".into(),
        json!({ "ok": true, "round_trip_ms": ms(kadmind) }),
    );
    (detail, metrics)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kdc_lines() {
        let cases = [
            ("Dec 01 21:54:23 vm krb5kdc[18825](info): AS_REQ (2 etypes {aes256-cts-hmac-sha1-96(18), aes128-cts-hmac-sha1-96(17)}) 127.0.0.1: NEEDED_PREAUTH: alice@COOP.LAN for krbtgt/COOP.LAN@COOP.LAN, Additional pre-authentication required", Some(("AS", "NEEDED_PREAUTH"))),
            ("Dec 01 21:54:23 vm krb5kdc[18825](info): AS_REQ (2 etypes {aes256-cts-hmac-sha1-96(18), aes128-cts-hmac-sha1-96(17)}) 127.0.0.1: ISSUE: authtime 1764626063, etypes {rep=aes256-cts-hmac-sha1-96(18)}, alice@COOP.LAN for krbtgt/COOP.LAN@COOP.LAN", Some(("AS", "ISSUE"))),
            ("Dec 01 21:54:24 vm krb5kdc[18825](info): TGS_REQ (4 etypes {aes256-cts-hmac-sha1-96(18)}) 127.0.0.1: ISSUE: authtime 1, etypes {}, alice@COOP.LAN for host/x@COOP.LAN", Some(("TGS", "ISSUE"))),
            ("Dec 01 21:54:24 vm krb5kdc[1](info): AS_REQ (1 etypes {rc4-hmac(23)}) 127.0.0.1: BAD_ENCRYPTION_TYPE: bob@COOP.LAN for krbtgt/COOP.LAN@COOP.LAN, KDC has no support for encryption type", Some(("AS", "BAD_ENCRYPTION_TYPE"))),
            ("Dec 01 21:54:23 vm krb5kdc[18825](info): commencing operation", None),
            ("AS_REQ (garbage", None),
            ("TGS_REQ (1 etypes {x}) 1.2.3.4: lowercase: no", None),
        ];
        for (line, want) in cases {
            assert_eq!(
                parse_kdc_line(line),
                want.map(|(a, b)| (a.to_string(), b.to_string())),
                "{line}"
            );
        }
    }

    #[test]
    fn kdc_log_counts_new_whole_lines_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("kdc.log");
        let line = "x krb5kdc[1](info): AS_REQ (1 etypes {a(18)}) 127.0.0.1: ISSUE: y\n";
        std::fs::write(&path, line).expect("write");
        let mut log = KdcLog::new(path.clone());
        log.update(); // starts at the end
        assert!(log.counts.is_empty());
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .expect("open");
        std::io::Write::write_all(
            &mut f,
            format!("{line}{line}x krb5kdc[1](info): AS_REQ (1 etypes").as_bytes(),
        )
        .expect("append");
        log.update();
        assert_eq!(log.counts.get(&("AS".into(), "ISSUE".into())), Some(&2));
        std::io::Write::write_all(&mut f, b" {a(18)}) 1.2.3.4: PREAUTH_FAILED: z\n")
            .expect("append");
        log.update();
        assert_eq!(
            log.counts.get(&("AS".into(), "PREAUTH_FAILED".into())),
            Some(&1)
        );
        // Emptied by someone else: starts again from the top.
        std::fs::write(&path, line).expect("rewrite");
        log.update();
        assert_eq!(log.counts.get(&("AS".into(), "ISSUE".into())), Some(&3));
    }
}

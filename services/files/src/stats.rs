//! What Samba says about itself, and the metrics.
//!
//! `smbstatus --json` lists sessions, tree connects and open files;
//! `smbstatus --profile` prints smbd's counters (`smb2_read_count: 7`), on
//! because smb.conf says `smbd profiling level = on`. Both read smbd's
//! tdbs in the lock and state dirs, so they are run with the node's own
//! smb.conf. Names follow samba_exporter where it has one
//! (`samba_client_count`, `samba_locked_file_count`, …).

use std::collections::BTreeMap;

use ntari_node::service::{MetricDesc, MetricSample};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::nfs::ExportCheck;
use crate::smb::{SmbProbe, TreeConnect};

pub const METRICS: &[MetricDesc] = &[
    MetricDesc {
        name: "ntari_files_probe_ok",
        help: "1 if the last probe over this protocol passed",
        labels: &["protocol"],
    },
    MetricDesc {
        name: "ntari_files_probe_seconds",
        help: "How long the last probe over this protocol took",
        labels: &["protocol"],
    },
    MetricDesc {
        name: "samba_client_count",
        help: "SMB sessions open now",
        labels: &[],
    },
    MetricDesc {
        name: "samba_individual_user_count",
        help: "Distinct users with an SMB session now",
        labels: &[],
    },
    MetricDesc {
        name: "samba_share_count",
        help: "SMB tree connects (a client using a share) now",
        labels: &[],
    },
    MetricDesc {
        name: "samba_locked_file_count",
        help: "Files SMB clients hold open now",
        labels: &[],
    },
    MetricDesc {
        name: "samba_smb2_requests_total",
        help: "SMB2 requests smbd served, by operation (smbstatus --profile)",
        labels: &["operation"],
    },
    MetricDesc {
        name: "samba_smb2_read_bytes_total",
        help: "Bytes smbd sent in SMB2 READ replies, all shares",
        labels: &[],
    },
    MetricDesc {
        name: "samba_smb2_write_bytes_total",
        help: "Bytes smbd received in SMB2 WRITE requests, all shares",
        labels: &[],
    },
    MetricDesc {
        name: "ntari_files_members",
        help: "Members with an SMB password",
        labels: &[],
    },
    MetricDesc {
        name: "ntari_files_export_ok",
        help: "1 if the export's root could be looked up and listed over NFS",
        labels: &["export"],
    },
];

/// `smbstatus --json`, the parts we use. Samba writes ids as map keys.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct SmbStatus {
    #[serde(default)]
    pub sessions: BTreeMap<String, Session>,
    #[serde(default)]
    pub tcons: BTreeMap<String, Tcon>,
    #[serde(default)]
    pub open_files: BTreeMap<String, Value>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Session {
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub remote_machine: String,
    #[serde(default)]
    pub session_dialect: String,
    #[serde(default)]
    pub encryption: Degree,
    #[serde(default)]
    pub signing: Degree,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Degree {
    #[serde(default)]
    pub degree: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Tcon {
    #[serde(default)]
    pub service: String,
    #[serde(default)]
    pub machine: String,
}

pub fn parse_status(json: &str) -> Result<SmbStatus, String> {
    serde_json::from_str(json).map_err(|e| format!("smbstatus --json: {e}"))
}

/// `smb2_<op>_count` and the two byte counters from `smbstatus --profile`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Profile {
    pub requests: BTreeMap<String, f64>,
    pub read_bytes: f64,
    pub write_bytes: f64,
}

pub fn parse_profile(text: &str) -> Profile {
    let mut profile = Profile::default();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let Ok(value) = value.trim().parse::<f64>() else {
            continue;
        };
        let Some(op) = key.trim().strip_prefix("smb2_") else {
            continue;
        };
        if let Some(op) = op.strip_suffix("_count") {
            profile.requests.insert(op.to_string(), value);
        } else if op == "read_outbytes" {
            profile.read_bytes = value;
        } else if op == "write_inbytes" {
            profile.write_bytes = value;
        }
    }
    profile
}

/// What one probe round learned, for status and metrics.
#[derive(Debug, Default)]
pub struct Round {
    pub smb: Option<(SmbProbe, f64)>,
    /// The share the SMB probe connected to anonymously.
    pub probe_share: String,
    pub status: Option<SmbStatus>,
    pub profile: Option<Profile>,
    pub members: Option<usize>,
    pub nfs: Option<(Vec<ExportCheck>, f64)>,
}

/// The two samples every passed protocol probe gives.
fn probe_samples(protocol: &str, seconds: f64) -> [MetricSample; 2] {
    [
        MetricSample::labelled("ntari_files_probe_ok", &[protocol], 1.0),
        MetricSample::labelled("ntari_files_probe_seconds", &[protocol], seconds),
    ]
}

/// Status detail and metrics from one round.
pub fn report(round: &Round) -> (serde_json::Map<String, Value>, Vec<MetricSample>) {
    let mut detail = serde_json::Map::new();
    let mut metrics = Vec::new();
    if let Some((smb, seconds)) = &round.smb {
        metrics.extend(probe_samples("smb", *seconds));
        let tree_connect = match &smb.tree_connect {
            TreeConnect::Connected => json!(format!("{} connected", round.probe_share)),
            TreeConnect::Refused { step, status } => {
                json!(format!("{}: {step}: {status}", round.probe_share))
            }
        };
        let mut smb_detail = json!({
            "dialect": smb.dialect,
            "signing_required": smb.signing_required,
            "anonymous_tree_connect": tree_connect,
        });
        if let Some(status) = &round.status {
            let users: std::collections::BTreeSet<&str> = status
                .sessions
                .values()
                .map(|s| s.username.as_str())
                .collect();
            metrics.push(MetricSample::new(
                "samba_client_count",
                status.sessions.len() as f64,
            ));
            metrics.push(MetricSample::new(
                "samba_individual_user_count",
                users.len() as f64,
            ));
            metrics.push(MetricSample::new(
                "samba_share_count",
                status.tcons.len() as f64,
            ));
            metrics.push(MetricSample::new(
                "samba_locked_file_count",
                status.open_files.len() as f64,
            ));
            smb_detail["sessions"] = status
                .sessions
                .values()
                .map(|s| {
                    json!({
                        "user": s.username,
                        "machine": s.remote_machine,
                        "dialect": s.session_dialect,
                        "signing": s.signing.degree,
                        "encryption": s.encryption.degree,
                    })
                })
                .collect();
            smb_detail["tree_connects"] = status
                .tcons
                .values()
                .map(|t| json!({"share": t.service, "machine": t.machine}))
                .collect();
            smb_detail["open_files"] = json!(status.open_files.len());
        }
        if let Some(profile) = &round.profile {
            for (op, count) in &profile.requests {
                metrics.push(MetricSample::labelled(
                    "samba_smb2_requests_total",
                    &[op],
                    *count,
                ));
            }
            metrics.push(MetricSample::new(
                "samba_smb2_read_bytes_total",
                profile.read_bytes,
            ));
            metrics.push(MetricSample::new(
                "samba_smb2_write_bytes_total",
                profile.write_bytes,
            ));
        }
        if let Some(members) = round.members {
            metrics.push(MetricSample::new("ntari_files_members", members as f64));
            smb_detail["members"] = json!(members);
        }
        detail.insert("smb".into(), smb_detail);
    }
    if let Some((exports, seconds)) = &round.nfs {
        metrics.extend(probe_samples("nfs", *seconds));
        let list: Vec<Value> = exports
            .iter()
            .map(|e| {
                metrics.push(MetricSample::labelled(
                    "ntari_files_export_ok",
                    &[&e.pseudo],
                    f64::from(u8::from(e.result.is_ok())),
                ));
                match &e.result {
                    Ok(entries) => json!({"export": e.pseudo, "ok": true, "entries": entries}),
                    Err(error) => json!({"export": e.pseudo, "ok": false, "error": error}),
                }
            })
            .collect();
        detail.insert("nfs".into(), json!({ "exports": list }));
    }
    (detail, metrics)
}

/// One line for `ntari-admin status`: "2 shares, 1 export, 3 sessions, 12 members".
pub fn summary(config: &crate::FilesConfig, round: &Round) -> String {
    let plural = |n: usize, one: &str| format!("{n} {one}{}", if n == 1 { "" } else { "s" });
    let mut parts = vec![
        plural(config.shares.len(), "share"),
        plural(config.exports.len(), "export"),
    ];
    if let Some(status) = &round.status {
        parts.push(plural(status.sessions.len(), "session"));
    }
    if let Some(members) = round.members {
        parts.push(plural(members, "member"));
    }
    parts.join(", ")
}

/// Lines of `pdbedit -L` (`alice:1001:`): the members with a password.
pub fn count_members(pdbedit_list: &str) -> usize {
    pdbedit_list
        .lines()
        .filter(|l| l.contains(':') && !l.trim().is_empty())
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Captured from smbd 4.17 with one guest connected to `pub`.
    const STATUS: &str = r#"{"timestamp": "2026-12-02T01:07:04.168370+0000", "version": "4.17.12-Debian", "smb_conf": "/tmp/fx/run/smb.conf", "sessions": {"3628253267": {"session_id": "3628253267", "server_id": {"pid": "4081", "task_id": "0", "vnn": "4294967295", "unique_id": "13644897954134968428"}, "uid": 65534, "gid": 65534, "username": "nobody", "groupname": "nogroup", "remote_machine": "127.0.0.1", "hostname": "ipv4:127.0.0.1:46278", "session_dialect": "SMB3_11", "encryption": {"cipher": "-", "degree": "none"}, "signing": {"cipher": "-", "degree": "none"}}}, "tcons": {"2654957793": {"service": "pub", "server_id": {"pid": "4081", "task_id": "0", "vnn": "4294967295", "unique_id": "13644897954134968428"}, "tcon_id": "2654957793", "session_id": "3628253267", "machine": "127.0.0.1", "connected_at": "2026-12-02T01:07:03.173444+00:00", "encryption": {"cipher": "-", "degree": "none"}, "signing": {"cipher": "-", "degree": "none"}}}, "open_files": {}}"#;

    #[test]
    fn smbstatus_json_is_read() {
        let status = parse_status(STATUS).expect("parses");
        assert_eq!(status.sessions.len(), 1);
        let session = status.sessions.values().next().expect("one");
        assert_eq!(session.username, "nobody");
        assert_eq!(session.session_dialect, "SMB3_11");
        assert_eq!(
            status.tcons.values().next().map(|t| t.service.as_str()),
            Some("pub")
        );
        assert!(parse_status("{\"sessions\": 3}").is_err());
        assert!(parse_status("not json").is_err());
    }

    #[test]
    fn profile_counters_are_read() {
        let text = "smb2_negprot_count:      2\nsmb2_read_count:  1\nsmb2_read_outbytes:   5000080\nsmb2_write_inbytes: 5000112\nsmb2_read_time: 3234\nSMBread_count: 0\ngarbage\nsmb2_x_count: many\n";
        let p = parse_profile(text);
        assert_eq!(p.requests.get("negprot"), Some(&2.0));
        assert_eq!(p.requests.get("read"), Some(&1.0));
        assert_eq!(p.requests.len(), 2);
        assert_eq!(p.read_bytes, 5000080.0);
        assert_eq!(p.write_bytes, 5000112.0);
    }

    #[test]
    fn report_names_each_export() {
        let round = Round {
            nfs: Some((
                vec![
                    ExportCheck {
                        pseudo: "/public".into(),
                        result: Ok(3),
                    },
                    ExportCheck {
                        pseudo: "/gone".into(),
                        result: Err("LOOKUP: NFS4ERR_NOENT".into()),
                    },
                ],
                0.002,
            )),
            ..Round::default()
        };
        let (detail, metrics) = report(&round);
        assert_eq!(
            detail["nfs"]["exports"][1]["error"],
            "LOOKUP: NFS4ERR_NOENT"
        );
        assert!(metrics.iter().any(|m| m.name == "ntari_files_export_ok"
            && m.label_values == ["/gone"]
            && m.value == 0.0));
    }

    #[test]
    fn summary_counts_what_there_is() {
        let config: crate::FilesConfig = toml::from_str(
            "[[shares]]\nname = \"a\"\npath = \"s/a\"\n[[exports]]\npath = \"s/a\"\nclients = [\"10.0.0.0/8\"]\n",
        )
        .expect("parses");
        let round = Round {
            members: Some(12),
            ..Round::default()
        };
        assert_eq!(summary(&config, &round), "1 share, 1 export, 12 members");
    }

    #[test]
    fn members_are_counted() {
        assert_eq!(count_members("alice:1001:\nbob:1002:Bob\n\n"), 2);
        assert_eq!(count_members(""), 0);
    }
}

//! Kea's leases as `/ntari/dhcp/leases` messages (ntari_schemas::leases).
//!
//! Where the events come from: Kea's memfile database is an append-only
//! CSV file; every grant, renewal, release, decline and reclaimed expiry
//! appends one line. The node reads what was appended since it last looked
//! (every refresh: a second when idle, a quarter when busy), which costs
//! Kea nothing: no hook
//! script per lease, no command on its socket. The table it starts from is
//! Kea's own answer to `lease4-get-all` (lease_cmds hook), published as a
//! snapshot.
//!
//! Lines, by what they say:
//! - `valid_lifetime` 0: the lease was deleted (a DHCPRELEASE) → `released`;
//! - `state` 2 (expired-reclaimed) → `expired`; `state` 1 (declined) →
//!   `released` (the client does not have the address);
//! - `state` 0: a lease; new for its address or for another MAC →
//!   `granted`, else a later expiry or new hostname → `renewed`, and an
//!   identical line (Kea rewrote it) → nothing.
//!
//! Kea's lease file cleanup (LFC) renames the file and starts a new one; the
//! tail reads the renamed file to its end before it follows the new one.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::net::IpAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ntari_schemas::leases::{Event, Lease, LeaseEvent, LeaseMessage, MacAddr};
use serde_json::Value;

use crate::control;

/// After a message, events wait at least this long for the next one, so a
/// burst (a hundred clients after a power cut) costs a few tables, not a
/// hundred. The first event after a quiet spell goes out at once.
pub const MIN_PUBLISH_INTERVAL: Duration = Duration::from_secs(1);

const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(10);

/// Kea's lease states (lease.h).
const STATE_DEFAULT: u64 = 0;
const STATE_DECLINED: u64 = 1;
const STATE_EXPIRED_RECLAIMED: u64 = 2;

/// One line of Kea's lease file, the fields the node uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub ip: IpAddr,
    pub mac: Option<MacAddr>,
    pub valid_lifetime: u64,
    pub expire: u64,
    pub hostname: Option<String>,
    pub state: u64,
}

/// Column positions, from the file's header line.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Columns {
    address: usize,
    hwaddr: usize,
    valid_lifetime: usize,
    expire: usize,
    hostname: usize,
    state: Option<usize>,
}

impl Columns {
    fn from_header(line: &str) -> Option<Columns> {
        let names: Vec<&str> = line.trim().split(',').collect();
        let at = |name: &str| names.iter().position(|n| *n == name);
        Some(Columns {
            address: at("address")?,
            hwaddr: at("hwaddr")?,
            valid_lifetime: at("valid_lifetime")?,
            expire: at("expire")?,
            hostname: at("hostname")?,
            state: at("state"),
        })
    }

    fn parse(&self, line: &str) -> Option<Record> {
        let fields: Vec<&str> = line.trim_end_matches('\r').split(',').collect();
        let field = |i: usize| fields.get(i).copied();
        // Kea escapes commas inside values as "&#x2c".
        let hostname = field(self.hostname)?.replace("&#x2c", ",");
        Some(Record {
            ip: field(self.address)?.parse().ok()?,
            mac: field(self.hwaddr)?.parse().ok(),
            valid_lifetime: field(self.valid_lifetime)?.parse().ok()?,
            expire: field(self.expire)?.parse().ok()?,
            hostname: (!hostname.is_empty()).then_some(hostname),
            state: match self.state {
                Some(i) => field(i)?.parse().ok()?,
                None => STATE_DEFAULT,
            },
        })
    }
}

/// Follows Kea's lease file: the lines appended since the last read.
#[derive(Debug)]
pub struct CsvTail {
    path: PathBuf,
    /// The open file and its inode.
    file: Option<(File, u64)>,
    columns: Option<Columns>,
    /// An incomplete last line, kept until Kea finishes it.
    partial: Vec<u8>,
}

impl CsvTail {
    /// Starts at the file's current end (what is there is already known).
    pub fn at_end(path: &Path) -> CsvTail {
        let mut tail = CsvTail {
            path: path.to_path_buf(),
            file: None,
            columns: None,
            partial: Vec::new(),
        };
        if let Ok(mut file) = File::open(path) {
            if let Ok(meta) = file.metadata() {
                tail.columns = read_header(&mut file);
                if file.seek(SeekFrom::Start(meta.len())).is_ok() {
                    tail.file = Some((file, meta.ino()));
                }
            }
        }
        tail
    }

    /// Complete lines appended since the last call (header lines excluded),
    /// following a rotated or recreated file.
    pub fn read_new(&mut self) -> Vec<Record> {
        let mut bytes = Vec::new();
        let current_ino = std::fs::metadata(&self.path).ok().map(|m| m.ino());
        if let Some((file, ino)) = &mut self.file {
            // Whatever happened to the path, the open file may still hold
            // lines written before the rotation.
            let _ = file.read_to_end(&mut bytes);
            if current_ino != Some(*ino) {
                self.file = None;
            }
        }
        let mut records = self.take_lines(&bytes);
        if self.file.is_none() {
            if let Ok(file) = File::open(&self.path) {
                if let Ok(meta) = file.metadata() {
                    // A new file: read it from its start, header included.
                    self.file = Some((file, meta.ino()));
                    self.columns = None;
                    self.partial.clear();
                    let mut fresh = Vec::new();
                    if let Some((file, _)) = &mut self.file {
                        let _ = file.read_to_end(&mut fresh);
                    }
                    records.extend(self.take_lines(&fresh));
                }
            }
        }
        records
    }

    fn take_lines(&mut self, bytes: &[u8]) -> Vec<Record> {
        self.partial.extend_from_slice(bytes);
        let Some(end) = self.partial.iter().rposition(|&b| b == b'\n') else {
            return Vec::new();
        };
        let complete: Vec<u8> = self.partial.drain(..=end).collect();
        let mut records = Vec::new();
        for line in String::from_utf8_lossy(&complete).lines() {
            if line.starts_with("address,") {
                self.columns = Columns::from_header(line);
                continue;
            }
            match self.columns.as_ref().and_then(|c| c.parse(line)) {
                Some(record) => records.push(record),
                None if line.trim().is_empty() => {}
                None => tracing::debug!(line, "skipped a lease file line"),
            }
        }
        records
    }
}

fn read_header(file: &mut File) -> Option<Columns> {
    let mut start = vec![0u8; 4096];
    let n = file.read(&mut start).ok()?;
    let text = String::from_utf8_lossy(&start[..n]);
    Columns::from_header(text.lines().next()?)
}

/// The lease table and what is still to be published.
#[derive(Debug, Default)]
pub struct LeaseTracker {
    table: BTreeMap<IpAddr, Lease>,
    tail: Option<CsvTail>,
    pending: Vec<Event>,
    last_published: Option<Instant>,
}

impl LeaseTracker {
    /// Leases currently held.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// Whether the snapshot was taken.
    pub fn synced(&self) -> bool {
        self.tail.is_some()
    }

    /// Forgets where it was: the next refresh takes and publishes a new
    /// snapshot (after Kea started again, so subscribers see it is back).
    pub fn resync(&mut self) {
        self.tail = None;
    }

    /// Applies one lease file line; returns the event it is, if any.
    pub fn apply(&mut self, record: Record) -> Option<Event> {
        let removed = |event, lease| Some(Event { event, lease });
        if record.valid_lifetime == 0 {
            return self
                .table
                .remove(&record.ip)
                .and_then(|l| removed(LeaseEvent::Released, l));
        }
        match record.state {
            STATE_EXPIRED_RECLAIMED => self
                .table
                .remove(&record.ip)
                .and_then(|l| removed(LeaseEvent::Expired, l)),
            STATE_DECLINED => self
                .table
                .remove(&record.ip)
                .and_then(|l| removed(LeaseEvent::Released, l)),
            _ => {
                let mac = record.mac?; // not an Ethernet client: not published
                let lease = Lease {
                    ip: record.ip,
                    mac,
                    hostname: record.hostname,
                    expiry: record.expire,
                };
                let event = match self.table.get(&lease.ip) {
                    Some(old) if old == &lease => return None,
                    Some(old) if old.mac == lease.mac => LeaseEvent::Renewed,
                    _ => LeaseEvent::Granted,
                };
                self.table.insert(lease.ip, lease.clone());
                Some(Event { event, lease })
            }
        }
    }

    /// The table as a message.
    pub fn snapshot(&self) -> LeaseMessage {
        LeaseMessage::snapshot(self.table.values().cloned().collect())
    }

    /// Takes the table from Kea (`lease4-get-all`) and starts following the
    /// lease file; the snapshot message to publish.
    pub async fn sync(&mut self, socket: &Path, lease_file: &Path) -> Result<LeaseMessage, String> {
        // The file's end first: lines written while Kea answers are read
        // again afterwards, and applying a known lease again is a no-op.
        let tail = CsvTail::at_end(lease_file);
        let answer = control::command(socket, "lease4-get-all", None, SNAPSHOT_TIMEOUT).await?;
        self.table = parse_lease_list(&answer.arguments);
        self.tail = Some(tail);
        self.pending.clear();
        self.last_published = Some(Instant::now());
        Ok(self.snapshot())
    }

    /// Reads the lease file's new lines; a message when there are events to
    /// publish and [`MIN_PUBLISH_INTERVAL`] has passed since the last one.
    pub fn follow(&mut self, now: Instant) -> Option<LeaseMessage> {
        let records = self.tail.as_mut()?.read_new();
        for record in records {
            if let Some(event) = self.apply(record) {
                self.pending.push(event);
            }
        }
        let due = self
            .last_published
            .is_none_or(|t| now.duration_since(t) >= MIN_PUBLISH_INTERVAL);
        if self.pending.is_empty() || !due {
            return None;
        }
        self.last_published = Some(now);
        let events = std::mem::take(&mut self.pending);
        Some(LeaseMessage::events(
            events,
            self.table.values().cloned().collect(),
        ))
    }
}

/// `lease4-get-all`'s leases that are held (state default), as the schema
/// has them. Leases without an Ethernet MAC are left out.
pub fn parse_lease_list(arguments: &Value) -> BTreeMap<IpAddr, Lease> {
    let mut table = BTreeMap::new();
    let Some(list) = arguments["leases"].as_array() else {
        return table;
    };
    for entry in list {
        if entry["state"].as_u64().unwrap_or(STATE_DEFAULT) != STATE_DEFAULT {
            continue;
        }
        let ip = entry["ip-address"].as_str().and_then(|s| s.parse().ok());
        let mac = entry["hw-address"].as_str().and_then(|s| s.parse().ok());
        let cltt = entry["cltt"].as_u64();
        let valid = entry["valid-lft"].as_u64();
        let (Some(ip), Some(mac), Some(cltt), Some(valid)) = (ip, mac, cltt, valid) else {
            continue;
        };
        let hostname = entry["hostname"]
            .as_str()
            .filter(|h| !h.is_empty())
            .map(str::to_string);
        table.insert(
            ip,
            Lease {
                ip,
                mac,
                hostname,
                expiry: cltt + valid,
            },
        );
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const HEADER: &str =
        "address,hwaddr,client_id,valid_lifetime,expire,subnet_id,fqdn_fwd,fqdn_rev,hostname,state,user_context\n";

    fn line(ip: &str, mac: &str, valid: u64, expire: u64, host: &str, state: u64) -> String {
        format!("{ip},{mac},,{valid},{expire},1,0,0,{host},{state},\n")
    }

    fn append(path: &Path, text: &str) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
    }

    fn events(tracker: &mut LeaseTracker) -> Vec<(LeaseEvent, String)> {
        // Far enough apart that the throttle never holds anything back.
        tracker.last_published = None;
        tracker
            .follow(Instant::now())
            .map(|m| {
                m.events
                    .into_iter()
                    .map(|e| (e.event, e.lease.ip.to_string()))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn tracker_on(path: &Path) -> LeaseTracker {
        LeaseTracker {
            tail: Some(CsvTail::at_end(path)),
            ..LeaseTracker::default()
        }
    }

    #[test]
    fn lease_file_lines_become_events() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("leases4.csv");
        append(&path, HEADER);
        let mut t = tracker_on(&path);
        let mac = "52:54:00:00:00:01";

        append(&path, &line("10.0.0.5", mac, 3600, 5000, "laptop", 0));
        assert_eq!(events(&mut t), [(LeaseEvent::Granted, "10.0.0.5".into())]);
        // The same line again (Kea rewrote it): nothing.
        append(&path, &line("10.0.0.5", mac, 3600, 5000, "laptop", 0));
        assert_eq!(events(&mut t), []);
        append(&path, &line("10.0.0.5", mac, 3600, 6000, "laptop", 0));
        assert_eq!(events(&mut t), [(LeaseEvent::Renewed, "10.0.0.5".into())]);
        // A release: valid_lifetime 0.
        append(&path, &line("10.0.0.5", mac, 0, 2000, "laptop", 0));
        assert_eq!(events(&mut t), [(LeaseEvent::Released, "10.0.0.5".into())]);
        assert!(t.is_empty());
        // Granted, then reclaimed after expiry (state 2, hostname cleared).
        append(&path, &line("10.0.0.6", mac, 3, 2003, "pi", 0));
        append(&path, &line("10.0.0.6", mac, 3, 2003, "", 2));
        let got = events(&mut t);
        assert_eq!(
            got,
            [
                (LeaseEvent::Granted, "10.0.0.6".into()),
                (LeaseEvent::Expired, "10.0.0.6".into())
            ]
        );
        // Another MAC for a known address is a new grant.
        append(&path, &line("10.0.0.7", mac, 60, 3000, "", 0));
        append(
            &path,
            &line("10.0.0.7", "52:54:00:00:00:02", 60, 3000, "", 0),
        );
        assert_eq!(
            events(&mut t),
            [
                (LeaseEvent::Granted, "10.0.0.7".into()),
                (LeaseEvent::Granted, "10.0.0.7".into())
            ]
        );
        // Declined.
        append(
            &path,
            &line("10.0.0.7", "52:54:00:00:00:02", 60, 3000, "", 1),
        );
        assert_eq!(events(&mut t), [(LeaseEvent::Released, "10.0.0.7".into())]);
    }

    #[test]
    fn half_written_lines_wait_and_commas_are_unescaped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("leases4.csv");
        append(&path, HEADER);
        let mut t = tracker_on(&path);
        let full = line("10.0.0.5", "52:54:00:00:00:01", 60, 5000, "a&#x2cb", 0);
        append(&path, &full[..10]);
        assert_eq!(events(&mut t), []);
        append(&path, &full[10..]);
        assert_eq!(events(&mut t).len(), 1);
        assert_eq!(
            t.table.values().next().unwrap().hostname.as_deref(),
            Some("a,b")
        );
    }

    #[test]
    fn a_rotated_file_is_read_to_its_end_then_the_new_one_followed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("leases4.csv");
        append(&path, HEADER);
        let mut t = tracker_on(&path);
        let mac = "52:54:00:00:00:01";
        append(&path, &line("10.0.0.1", mac, 60, 5000, "", 0));
        // LFC: the file is renamed after one more line, a new one started.
        append(&path, &line("10.0.0.2", mac, 60, 5000, "", 0));
        std::fs::rename(&path, dir.path().join("leases4.csv.2")).unwrap();
        append(&path, HEADER);
        append(&path, &line("10.0.0.3", mac, 60, 5000, "", 0));
        let ips: Vec<String> = events(&mut t).into_iter().map(|(_, ip)| ip).collect();
        assert_eq!(ips, ["10.0.0.1", "10.0.0.2", "10.0.0.3"]);
        append(&path, &line("10.0.0.4", mac, 60, 5000, "", 0));
        assert_eq!(events(&mut t).len(), 1);
    }

    #[test]
    fn bursts_are_published_together_at_most_once_a_second() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("leases4.csv");
        append(&path, HEADER);
        let mut t = tracker_on(&path);
        let start = Instant::now();
        append(
            &path,
            &line("10.0.0.1", "52:54:00:00:00:01", 60, 5000, "", 0),
        );
        let first = t.follow(start).expect("the first event goes out at once");
        assert_eq!(first.events.len(), 1);
        for i in 2..=5 {
            append(
                &path,
                &line(&format!("10.0.0.{i}"), "52:54:00:00:00:01", 60, 5000, "", 0),
            );
            assert!(t.follow(start + Duration::from_millis(100 * i)).is_none());
        }
        let batch = t.follow(start + MIN_PUBLISH_INTERVAL).expect("due");
        assert_eq!(batch.events.len(), 4);
        assert_eq!(batch.leases.len(), 5);
        assert!(!batch.snapshot);
    }

    #[test]
    fn lease4_get_all_gives_the_held_leases() {
        let arguments = serde_json::json!({"leases": [
            {"ip-address": "10.0.0.1", "hw-address": "52:54:00:00:00:01", "hostname": "laptop",
             "cltt": 1000, "valid-lft": 60, "state": 0},
            {"ip-address": "10.0.0.2", "hw-address": "52:54:00:00:00:02", "hostname": "",
             "cltt": 1000, "valid-lft": 60, "state": 0},
            {"ip-address": "10.0.0.3", "hw-address": "52:54:00:00:00:03", "cltt": 1000,
             "valid-lft": 60, "state": 2},
            {"ip-address": "10.0.0.4", "hw-address": "", "cltt": 1000, "valid-lft": 60}
        ]});
        let table = parse_lease_list(&arguments);
        assert_eq!(table.len(), 2);
        let laptop = &table[&"10.0.0.1".parse::<IpAddr>().unwrap()];
        assert_eq!(laptop.expiry, 1060);
        assert_eq!(laptop.hostname.as_deref(), Some("laptop"));
        assert_eq!(table[&"10.0.0.2".parse::<IpAddr>().unwrap()].hostname, None);
        assert!(parse_lease_list(&serde_json::json!(null)).is_empty());
    }
}

//! The hash-chained audit log: `<state_dir>/audit.log`.
//!
//! JSON Lines; each line is the RFC 8785 (JCS) form of
//!
//! ```json
//! {"detail":{…},"event":"agreement_in_force","prev":"<64 hex>","seq":7,"time":"2026-12-01T12:00:00.123Z"}
//! ```
//!
//! `seq` counts from 1; `time` is RFC 3339 UTC with milliseconds; `prev` is
//! the SHA-256 (lowercase hex) of the previous line's bytes, without its
//! newline, and 64 zeros on the first line. So removing, reordering or
//! changing a line breaks the chain at the next line at the latest (a
//! change of the *last* line, or cutting lines off the end, cannot be seen
//! from the file alone — compare `seq` with what was seen before).
//!
//! Lines are appended with `O_APPEND` and fsynced one by one. A crash can
//! leave a torn last line (no newline). [`AuditLog::open`] never rewrites
//! what is there: it ends the torn line with a newline and appends a
//! `log_repaired` entry (`detail.torn_line`, `detail.torn_bytes`) whose
//! `prev` is the hash of the torn line's bytes and whose `seq` follows the
//! last complete entry. [`verify_log`] accepts a line that is not an
//! entry only when such a `log_repaired` entry follows it; a torn last line
//! not yet repaired is reported.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// `prev` of the first line.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// How much of the end of the log [`AuditLog::open`] reads to find the
/// last line; a longer line is refused.
const TAIL: u64 = 1 << 20;

/// Where and why the chain does not hold.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("{path}: cannot read it: {source}", path = path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: line {line}: {message}", path = path.display())]
    Broken {
        path: PathBuf,
        /// 1-based number of the first line at which the chain fails.
        line: usize,
        message: String,
    },
}

impl AuditError {
    /// The line of the first break, if the chain broke.
    pub fn line(&self) -> Option<usize> {
        match self {
            AuditError::Broken { line, .. } => Some(*line),
            AuditError::Io { .. } => None,
        }
    }
}

/// An open audit log, appending to its chain.
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    file: File,
    next_seq: u64,
    prev: String,
    /// The file's length after our last write: if it differs, another
    /// process appended.
    len: u64,
}

impl AuditLog {
    /// Opens (creating it and its directory if needed) the log at `path`
    /// and continues its chain; repairs a torn last line as the module
    /// documentation says.
    pub fn open(path: &Path) -> io::Result<AuditLog> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir)?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)?;
        // Not while another process is mid-append: its half line would
        // look torn.
        let guard = lock(&file)?;
        let len = file.metadata()?.len();
        let (start, tail) = read_tail(&mut file, len)?;

        let bad = |message: String| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {message}", path.display()),
            )
        };
        // The bytes after the last newline, if any, are a torn line.
        let complete_end = tail.iter().rposition(|&b| b == b'\n').map(|i| i + 1);
        let (complete, torn) = match complete_end {
            Some(end) => tail.split_at(end),
            None if start == 0 => tail.split_at(0),
            None => return Err(bad(format!("its last line is over {TAIL} bytes long"))),
        };
        let last_line = last_line(complete, start == 0)
            .ok_or_else(|| bad(format!("its last line is over {TAIL} bytes long")))?;
        let (mut next_seq, mut prev) = match last_line {
            None => (1, GENESIS.to_string()),
            Some(line) => {
                let entry = parse_entry(line).map_err(|e| {
                    bad(format!(
                        "its last line is not an audit entry ({e}); check it with \
                         `ntari-admin federation log`, then move the file away to start a new log"
                    ))
                })?;
                (entry.seq + 1, sha256_hex(line))
            }
        };

        let mut log = AuditLog {
            path: path.to_path_buf(),
            file,
            next_seq,
            prev: prev.clone(),
            len,
        };
        if !torn.is_empty() {
            // Lines before the torn one, to name it in the repair entry.
            let torn_line = count_lines(path)? + 1;
            tracing::warn!(
                path = %path.display(),
                line = torn_line,
                bytes = torn.len(),
                "audit log ends in a torn line (a crash mid-write); noting it with log_repaired"
            );
            log.file.write_all(b"\n")?;
            log.len += 1;
            // A torn line that is in fact a whole entry (only the newline
            // was lost) continues the chain like any other.
            if let Ok(entry) = parse_entry(torn) {
                if entry.seq == next_seq && entry.prev == prev {
                    next_seq += 1;
                }
            }
            prev = sha256_hex(torn);
            log.next_seq = next_seq;
            log.prev = prev;
            log.append(
                "log_repaired",
                json!({"torn_line": torn_line, "torn_bytes": torn.len()}),
            )?;
        }
        drop(guard);
        Ok(log)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one entry (`detail` should be an object) and fsyncs it.
    pub fn append(&mut self, event: &str, detail: Value) -> io::Result<()> {
        self.append_at(event, detail, SystemTime::now())
    }

    /// [`AuditLog::append`] with a given time (tests, replays of a clock).
    pub fn append_at(&mut self, event: &str, detail: Value, time: SystemTime) -> io::Result<()> {
        let entry = json!({
            "seq": self.next_seq,
            "time": humantime::format_rfc3339_millis(time).to_string(),
            "event": event,
            "detail": detail,
            "prev": self.prev,
        });
        // Another process (ntari-admin beside the bridge) may append too:
        // under the lock, continue from the file's real last line.
        let _guard = lock(&self.file)?;
        self.append_locked(entry)
    }

    fn append_locked(&mut self, mut entry: Value) -> io::Result<()> {
        let len = self.file.metadata()?.len();
        if len != self.len {
            if let Some((seq, prev)) = last_entry(&mut self.file, len)? {
                self.next_seq = seq + 1;
                self.prev = prev;
            }
            entry["seq"] = self.next_seq.into();
            entry["prev"] = self.prev.clone().into();
        }
        let mut line = serde_json_canonicalizer::to_vec(&entry)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        let hash = sha256_hex(&line);
        line.push(b'\n');
        // One write: with O_APPEND the line lands whole at the end unless
        // the process dies mid-write (the torn line `open` repairs).
        self.file.write_all(&line)?;
        self.file.sync_data()?;
        self.len = self.file.metadata()?.len();
        self.next_seq += 1;
        self.prev = hash;
        Ok(())
    }
}

/// An exclusive `flock` on the log, held until the guard drops. On a
/// duplicate of the descriptor: the lock belongs to the open file, which
/// both share.
fn lock(file: &File) -> io::Result<nix::fcntl::Flock<File>> {
    nix::fcntl::Flock::lock(file.try_clone()?, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, errno)| io::Error::from(errno))
}

/// `seq` and hash of the last complete line of a file `len` bytes long
/// (None for an empty one or one whose last line is no entry).
fn last_entry(file: &mut File, len: u64) -> io::Result<Option<(u64, String)>> {
    let (start, tail) = read_tail(file, len)?;
    // Whole lines only: a torn end is another writer's crash, not an entry.
    let end = tail.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let Some(Some(line)) = last_line(&tail[..end], start == 0) else {
        return Ok(None);
    };
    Ok(parse_entry(line)
        .ok()
        .map(|entry| (entry.seq, sha256_hex(line))))
}

/// Where the last [`TAIL`] bytes of a file `len` bytes long start, and
/// those bytes.
fn read_tail(file: &mut File, len: u64) -> io::Result<(u64, Vec<u8>)> {
    let start = len.saturating_sub(TAIL);
    file.seek(SeekFrom::Start(start))?;
    let mut tail = Vec::new();
    (&mut *file).take(len - start).read_to_end(&mut tail)?;
    Ok((start, tail))
}

/// The last line of `complete` (whole, newline-ended lines read from the
/// end of a file; `from_start` if they begin at its first byte): Some(None)
/// for no line at all, None when the line began before what was read.
fn last_line(complete: &[u8], from_start: bool) -> Option<Option<&[u8]>> {
    let body = complete.strip_suffix(b"\n").unwrap_or(complete);
    match body.iter().rposition(|&b| b == b'\n') {
        Some(i) => Some(Some(&body[i + 1..])),
        None if body.is_empty() => Some(None),
        None if from_start => Some(Some(body)),
        None => None,
    }
}

/// Reads the whole log and checks the chain; the entries in order, or the
/// first line where it breaks.
pub fn verify_log(path: &Path) -> Result<Vec<Value>, AuditError> {
    let bytes = fs::read(path).map_err(|source| AuditError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let broken = |line: usize, message: String| AuditError::Broken {
        path: path.to_path_buf(),
        line,
        message,
    };
    let mut lines: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
    // split() yields an empty piece after the final newline.
    let torn_tail = match lines.last() {
        Some([]) => {
            lines.pop();
            false
        }
        Some(_) => true,
        None => false,
    };
    let mut entries = Vec::new();
    let mut prev = GENESIS.to_string();
    let mut expected_seq = 1u64;
    let mut torn: Option<(usize, String)> = None;
    for (i, raw) in lines.iter().enumerate() {
        let number = i + 1;
        if torn_tail && number == lines.len() {
            return Err(broken(
                number,
                "the last line is incomplete (no newline): the writer crashed mid-write, or is \
                 writing right now; ntari-federation notes it with `log_repaired` when it next \
                 opens the log"
                    .into(),
            ));
        }
        let entry = match parse_entry(raw) {
            Ok(entry) => entry,
            Err(why) => {
                if let Some((line, why)) = torn {
                    return Err(broken(line, format!("not an audit entry: {why}")));
                }
                // Allowed only if a `log_repaired` entry follows.
                torn = Some((number, why));
                prev = sha256_hex(raw);
                continue;
            }
        };
        if let Some((line, why)) = torn.take() {
            if entry.event != "log_repaired" {
                return Err(broken(line, format!("not an audit entry: {why}")));
            }
        }
        if entry.prev != prev {
            return Err(broken(
                number,
                format!(
                    "`prev` does not match the hash of line {}: that line was changed, or lines \
                     were removed, inserted or reordered here",
                    number.saturating_sub(1)
                ),
            ));
        }
        if entry.seq != expected_seq {
            return Err(broken(
                number,
                format!(
                    "seq {} where {expected_seq} was expected: lines were removed, inserted or \
                     reordered here",
                    entry.seq
                ),
            ));
        }
        expected_seq += 1;
        prev = sha256_hex(raw);
        entries.push(entry.value);
    }
    if let Some((line, why)) = torn {
        return Err(broken(line, format!("not an audit entry: {why}")));
    }
    Ok(entries)
}

struct Entry {
    seq: u64,
    event: String,
    prev: String,
    value: Value,
}

/// One line as an entry: JSON with exactly the five fields, in JCS form.
fn parse_entry(raw: &[u8]) -> Result<Entry, String> {
    let value: Value = serde_json::from_slice(raw).map_err(|e| format!("not JSON ({e})"))?;
    let object = value.as_object().ok_or("not a JSON object")?;
    let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
    keys.sort_unstable();
    if keys != ["detail", "event", "prev", "seq", "time"] {
        return Err(format!(
            "fields {keys:?}, expected detail, event, prev, seq, time"
        ));
    }
    let seq = object["seq"].as_u64().ok_or("`seq` is not a count")?;
    let event = object["event"].as_str().ok_or("`event` is not a string")?;
    let prev = object["prev"].as_str().ok_or("`prev` is not a string")?;
    if prev.len() != 64
        || !prev
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err("`prev` is not 64 lowercase hex digits".into());
    }
    let time = object["time"].as_str().ok_or("`time` is not a string")?;
    humantime::parse_rfc3339(time).map_err(|_| format!("`time` {time:?} is not RFC 3339 UTC"))?;
    // Any edit that keeps the JSON valid but changes its bytes is caught
    // by the next `prev`; an edit of spacing or key order is caught here.
    let canonical = serde_json_canonicalizer::to_vec(&value).map_err(|e| e.to_string())?;
    if canonical != raw {
        return Err("not in canonical (RFC 8785) form: the line was edited".into());
    }
    Ok(Entry {
        seq,
        event: event.to_owned(),
        prev: prev.to_owned(),
        value,
    })
}

fn count_lines(path: &Path) -> io::Result<usize> {
    let mut file = File::open(path)?;
    let mut buf = [0u8; 64 * 1024];
    let mut n = 0;
    loop {
        let read = file.read(&mut buf)?;
        if read == 0 {
            return Ok(n);
        }
        n += buf[..read].iter().filter(|&&b| b == b'\n').count();
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log_with(n: usize) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/audit.log");
        let mut log = AuditLog::open(&path).unwrap();
        for i in 0..n {
            log.append("route_up", json!({"topic": "/ntari/dns/health", "n": i}))
                .unwrap();
        }
        (dir, path)
    }

    fn lines(path: &Path) -> Vec<String> {
        fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn write_lines(path: &Path, lines: &[String]) {
        fs::write(path, lines.join("\n") + "\n").unwrap();
    }

    /// Offset just after the last newline in `bytes`.
    fn lines_before_cut(bytes: &[u8]) -> usize {
        bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1)
    }

    fn broken_at(path: &Path) -> usize {
        let err = verify_log(path).unwrap_err();
        err.line().unwrap_or_else(|| panic!("{err}"))
    }

    #[test]
    fn chain_verifies_and_has_the_documented_shape() {
        let (_dir, path) = log_with(3);
        let entries = verify_log(&path).unwrap();
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[0]["seq"], 1);
        assert_eq!(entries[0]["prev"], GENESIS);
        assert_eq!(entries[2]["detail"]["n"], 2);
        let text = lines(&path);
        assert_eq!(entries[1]["prev"], sha256_hex(text[0].as_bytes()));
        assert!(text[0].starts_with(
            r#"{"detail":{"n":0,"topic":"/ntari/dns/health"},"event":"route_up","prev":"000"#
        ));
        let time = entries[0]["time"].as_str().unwrap();
        assert!(
            time.ends_with('Z') && time.len() == "2026-12-01T12:00:00.123Z".len(),
            "{time}"
        );
        // An empty log verifies too.
        let (_d, empty) = log_with(0);
        assert!(verify_log(&empty).unwrap().is_empty());
    }

    #[test]
    fn two_writers_keep_one_chain() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let mut bridge = AuditLog::open(&path).unwrap();
        let mut admin = AuditLog::open(&path).unwrap();
        for i in 0..3 {
            bridge.append("bridge", json!({"i": i})).unwrap();
            admin.append("admin", json!({"i": i})).unwrap();
        }
        let entries = verify_log(&path).unwrap();
        let seqs: Vec<u64> = entries.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
        assert_eq!(seqs, vec![1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn reopening_continues_the_chain() {
        let (_dir, path) = log_with(2);
        let mut log = AuditLog::open(&path).unwrap();
        log.append("peer_added", json!({"peer": "federation:a-b"}))
            .unwrap();
        drop(log);
        let entries = verify_log(&path).unwrap();
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[2]["seq"], 3);
        assert_eq!(entries[2]["event"], "peer_added");
    }

    #[test]
    fn edits_are_caught_at_the_right_line() {
        let (_dir, path) = log_with(5);
        let original = lines(&path);

        // A changed byte in a value: line 2 still parses, line 3's prev fails.
        let mut changed = original.clone();
        changed[1] = changed[1].replace("\"n\":1", "\"n\":7");
        write_lines(&path, &changed);
        let err = verify_log(&path).unwrap_err();
        assert_eq!(err.line(), Some(3), "{err}");
        assert!(err.to_string().contains("hash of line 2"), "{err}");

        // A changed byte that breaks the canonical form: caught on its line.
        let mut spaced = original.clone();
        spaced[1] = spaced[1].replacen("{", "{ ", 1);
        write_lines(&path, &spaced);
        assert_eq!(broken_at(&path), 2);

        // A deleted line.
        let mut deleted = original.clone();
        deleted.remove(2);
        write_lines(&path, &deleted);
        assert_eq!(broken_at(&path), 3);

        // Two lines swapped.
        let mut swapped = original.clone();
        swapped.swap(1, 2);
        write_lines(&path, &swapped);
        assert_eq!(broken_at(&path), 2);

        // The first line removed.
        write_lines(&path, &original[1..]);
        assert_eq!(broken_at(&path), 1);

        // A garbage line in the middle.
        let mut garbage = original.clone();
        garbage[3] = "hello".into();
        write_lines(&path, &garbage);
        assert_eq!(broken_at(&path), 4);

        write_lines(&path, &original);
        assert_eq!(verify_log(&path).unwrap().len(), 5);
    }

    #[test]
    fn torn_last_line_is_reported_then_repaired() {
        let (_dir, path) = log_with(3);
        let full = fs::read(&path).unwrap();
        // Cut the last line in the middle, as a crash mid-write would.
        let cut = full.len() - 20;
        fs::write(&path, &full[..cut]).unwrap();
        let err = verify_log(&path).unwrap_err();
        assert_eq!(err.line(), Some(3), "{err}");
        assert!(err.to_string().contains("incomplete"), "{err}");

        let mut log = AuditLog::open(&path).unwrap();
        log.append("route_down", json!({"samples": 10})).unwrap();
        drop(log);
        let text = fs::read(&path).unwrap();
        assert!(
            text.starts_with(&full[..cut]),
            "older bytes are never rewritten"
        );
        let entries = verify_log(&path).unwrap();
        let events: Vec<&str> = entries
            .iter()
            .map(|e| e["event"].as_str().unwrap())
            .collect();
        assert_eq!(
            events,
            ["route_up", "route_up", "log_repaired", "route_down"]
        );
        assert_eq!(entries[2]["seq"], 3);
        assert_eq!(entries[2]["detail"]["torn_line"], 3);
        // The torn line starts after the second line's newline.
        let third_line_start = lines_before_cut(&full[..cut]);
        assert_eq!(entries[2]["detail"]["torn_bytes"], cut - third_line_start);
        // Reopening again changes nothing more.
        drop(AuditLog::open(&path).unwrap());
        assert_eq!(verify_log(&path).unwrap().len(), 4);

        // Only the newline lost: the entry itself counts.
        let (_dir2, path2) = log_with(2);
        let full = fs::read(&path2).unwrap();
        fs::write(&path2, &full[..full.len() - 1]).unwrap();
        drop(AuditLog::open(&path2).unwrap());
        let entries = verify_log(&path2).unwrap();
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[2]["event"], "log_repaired");
        assert_eq!(entries[2]["seq"], 3);
    }

    #[test]
    fn a_damaged_last_line_refuses_to_continue() {
        let (_dir, path) = log_with(2);
        let mut text = lines(&path);
        text[1] = "not json".into();
        write_lines(&path, &text);
        let err = AuditLog::open(&path).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("not an audit entry"), "{err}");
    }
}

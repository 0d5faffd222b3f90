//! Running one upstream daemon in the foreground, and stopping it.
//!
//! Invariants:
//! - The daemon runs in its own process group, so stopping it reaches any
//!   helper it forks, and a Ctrl-C in the node's terminal is not delivered
//!   to it twice.
//! - The daemon never outlives the node: it is started through util-linux
//!   `setpriv --pdeathsig KILL`, so the kernel kills it when the node dies,
//!   even by SIGKILL. The parent-death signal fires when the *thread* that
//!   forked exits, so nodes spawn daemons from the main thread (the runtime
//!   is tokio's current-thread flavour).
//!   A daemon that changes its own user (dnsmasq drops to `dnsmasq`) loses
//!   that signal: Linux clears it on a change of credentials. For those the
//!   node keeps a [`DaemonRecord`] in its run dir, and a node that starts
//!   after a SIGKILL stops what the record names before anything else
//!   (OpenRC respawns a killed node at once), so the orphan neither keeps
//!   the daemon's ports nor serves an old config for long.
//! - Every exit is reported once on the [`DaemonStatus`] watch channel, with
//!   the run's generation number so stale reports are never confused with
//!   the current run.

use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::watch;

use crate::service::Command;

/// Where `setpriv` lives on Debian and Alpine (util-linux).
const SETPRIV: &str = "setpriv";
/// Daemon output lines longer than this are cut, so a runaway daemon
/// cannot make the node buffer without bound.
const MAX_LOG_LINE: usize = 4096;

/// Why a daemon could not be started or stopped.
#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error("cannot start `{command}`: {source} (is it installed and on PATH?)")]
    Spawn {
        command: String,
        source: std::io::Error,
    },
}

/// What the runtime knows about the daemon right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonStatus {
    /// Increases with every start; identifies one run.
    pub generation: u64,
    pub pid: Option<u32>,
    pub running: bool,
    /// How the last run ended, as text (`exit status: 1`, `signal: 9 (SIGKILL)`).
    pub last_exit: Option<String>,
}

/// A daemon process the node started.
#[derive(Debug)]
pub struct Daemon {
    name: &'static str,
    pid: u32,
    generation: u64,
    started: Instant,
    status: watch::Receiver<DaemonStatus>,
}

/// Starts and tracks runs of one daemon.
#[derive(Debug)]
pub struct Supervisor {
    name: &'static str,
    status_tx: watch::Sender<DaemonStatus>,
    generation: u64,
    use_setpriv: bool,
    /// The daemon's last non-empty output line: usually why it exited.
    /// Kept apart from the watch channel so a chatty daemon does not wake
    /// the event loop on every line.
    last_words: Arc<Mutex<Option<String>>>,
}

impl Supervisor {
    pub fn new(name: &'static str) -> Self {
        let use_setpriv = which(SETPRIV);
        if !use_setpriv {
            tracing::warn!(
                "`setpriv` (util-linux) not found: {name} will not be killed if this node is killed with SIGKILL"
            );
        }
        let (status_tx, _) = watch::channel(DaemonStatus {
            generation: 0,
            pid: None,
            running: false,
            last_exit: None,
        });
        Supervisor {
            name,
            status_tx,
            generation: 0,
            use_setpriv,
            last_words: Arc::new(Mutex::new(None)),
        }
    }

    /// A receiver that sees every start and exit.
    pub fn watch(&self) -> watch::Receiver<DaemonStatus> {
        self.status_tx.subscribe()
    }

    pub fn status(&self) -> DaemonStatus {
        self.status_tx.borrow().clone()
    }

    /// The last non-empty line the daemon wrote (stdout or stderr), if any:
    /// after an exit, usually its reason (`unknown user or group: x`).
    pub fn last_words(&self) -> Option<String> {
        self.last_words.lock().ok().and_then(|w| w.clone())
    }

    /// Starts the daemon. Its stdout and stderr become tracing events
    /// (target `daemon`), and its exit is reported on the watch channel.
    pub fn start(&mut self, command: &Command) -> Result<Daemon, SupervisorError> {
        // Checked here because behind setpriv a missing program would only
        // show up later as a quick exit.
        let found = if command.program.contains('/') {
            std::path::Path::new(&command.program).is_file()
        } else {
            which(&command.program)
        };
        if !found {
            return Err(SupervisorError::Spawn {
                command: command.display(),
                source: std::io::Error::from(std::io::ErrorKind::NotFound),
            });
        }
        let mut cmd = if self.use_setpriv {
            let mut c = tokio::process::Command::new(SETPRIV);
            c.args(["--pdeathsig", "KILL", "--", &command.program]);
            c
        } else {
            tokio::process::Command::new(&command.program)
        };
        cmd.args(&command.args)
            .envs(command.env.iter().cloned())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|source| SupervisorError::Spawn {
            command: command.display(),
            source,
        })?;
        let pid = child.id().unwrap_or(0);
        self.generation += 1;
        let generation = self.generation;
        let name = self.name;
        if let Ok(mut words) = self.last_words.lock() {
            *words = None; // a new run has said nothing yet
        }
        if let Some(out) = child.stdout.take() {
            tokio::spawn(forward_lines(name, pid, out, self.last_words.clone()));
        }
        if let Some(err) = child.stderr.take() {
            tokio::spawn(forward_lines(name, pid, err, self.last_words.clone()));
        }
        self.status_tx.send_modify(|s| {
            s.generation = generation;
            s.pid = Some(pid);
            s.running = true;
        });
        let status_tx = self.status_tx.clone();
        tokio::spawn(async move {
            let exit = match child.wait().await {
                Ok(status) => describe_exit(status),
                Err(e) => format!("lost track of the process: {e}"),
            };
            status_tx.send_modify(|s| {
                if s.generation == generation {
                    s.running = false;
                    s.pid = None;
                    s.last_exit = Some(exit);
                }
            });
        });
        tracing::info!(daemon = name, pid, command = %command.display(), "daemon started");
        Ok(Daemon {
            name,
            pid,
            generation,
            started: Instant::now(),
            status: self.watch(),
        })
    }
}

impl Daemon {
    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    pub fn is_running(&self) -> bool {
        let s = self.status.borrow();
        s.generation == self.generation && s.running
    }

    /// Resolves when this run has ended (at once if it already has).
    pub async fn exited(&mut self) {
        let generation = self.generation;
        // An error means the supervisor is gone; treat that as exited.
        let _ = self
            .status
            .wait_for(|s| s.generation != generation || !s.running)
            .await;
    }

    fn signal_group(&self, signal: Signal) {
        let Ok(pid) = i32::try_from(self.pid) else {
            return;
        };
        // ESRCH just means the group is already gone.
        if let Err(e) = killpg(Pid::from_raw(pid), signal) {
            if e != nix::errno::Errno::ESRCH {
                tracing::warn!(daemon = self.name, pid, %signal, error = %e, "could not signal daemon");
            }
        }
    }

    /// Sends SIGHUP (daemons that re-read their files on it).
    pub fn hangup(&self) {
        self.signal_group(Signal::SIGHUP);
    }

    /// SIGTERM to the process group, then SIGKILL after `timeout`.
    pub async fn stop(mut self, timeout: Duration) {
        if !self.is_running() {
            return;
        }
        self.signal_group(Signal::SIGTERM);
        if tokio::time::timeout(timeout, self.exited()).await.is_err() {
            tracing::warn!(
                daemon = self.name,
                pid = self.pid,
                "did not stop within {:.0} s of SIGTERM; sending SIGKILL",
                timeout.as_secs_f64()
            );
            self.signal_group(Signal::SIGKILL);
            self.exited().await;
        }
        tracing::info!(daemon = self.name, pid = self.pid, "daemon stopped");
    }
}

/// Which process a node's daemon is, kept in the run dir while it runs:
/// `<pid> <start time in clock ticks> <comm>`. The start time and name make
/// sure a record never names an unrelated process that reuses the pid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonRecord {
    pub pid: u32,
    pub start_time: u64,
    pub comm: String,
}

impl DaemonRecord {
    /// The record of process `pid`, which runs (or is about to exec)
    /// `program`: its start time from /proc, and the name the kernel gives
    /// the process once it runs `program` (the file name, cut to 15 bytes).
    pub fn of(pid: u32, program: &str) -> Option<Self> {
        let (start_time, _, _) = proc_stat(pid)?;
        let name = program.rsplit('/').next().unwrap_or(program);
        let mut cut = name.len().min(15);
        while !name.is_char_boundary(cut) {
            cut -= 1;
        }
        Some(DaemonRecord {
            pid,
            start_time,
            comm: name[..cut].to_string(),
        })
    }

    /// Writes the record atomically (a half-written one would be ignored,
    /// but never a wrong one used).
    pub fn save(&self, path: &std::path::Path) -> std::io::Result<()> {
        let text = format!("{} {} {}\n", self.pid, self.start_time, self.comm);
        crate::fsutil::write_atomic(path, text.as_bytes(), 0o644)
    }

    pub fn load(path: &std::path::Path) -> Option<Self> {
        let text = std::fs::read_to_string(path).ok()?;
        let mut parts = text.split_whitespace();
        let record = DaemonRecord {
            pid: parts.next()?.parse().ok()?,
            start_time: parts.next()?.parse().ok()?,
            comm: parts.next()?.to_string(),
        };
        parts.next().is_none().then_some(record)
    }

    /// True while the recorded process itself still runs (not a zombie, and
    /// not another process that got the same pid).
    pub fn is_alive(&self) -> bool {
        proc_stat(self.pid).is_some_and(|(start, comm, state)| {
            start == self.start_time && comm == self.comm && state != 'Z'
        })
    }
}

/// Start time, name and state of process `pid`, from /proc/<pid>/stat.
fn proc_stat(pid: u32) -> Option<(u64, String, char)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ...`: comm may hold spaces and parentheses.
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?.to_string();
    let mut rest = stat.get(close + 1..)?.split_whitespace();
    let state = rest.next()?.chars().next()?;
    // Field 22 of stat is the start time; `state` was field 3.
    let start_time = rest.nth(18)?.parse().ok()?;
    Some((start_time, comm, state))
}

/// Stops the daemon a previous run of this node left running, if the
/// record at `path` names one: SIGTERM to its process group, SIGKILL after
/// `timeout`. Removes the record. Returns the stopped daemon's record.
pub async fn stop_leftover(path: &std::path::Path, timeout: Duration) -> Option<DaemonRecord> {
    let record = DaemonRecord::load(path);
    let _ = std::fs::remove_file(path);
    let record = record.filter(DaemonRecord::is_alive)?;
    tracing::warn!(
        daemon = %record.comm,
        pid = record.pid,
        "stopping the daemon a previous run of this node left behind (the node was killed \
         without an orderly shutdown)"
    );
    let group = Pid::from_raw(i32::try_from(record.pid).ok()?);
    let signal = |sig: Signal| {
        // Its own process group, as we started it; else the process alone.
        if killpg(group, sig).is_err() {
            let _ = nix::sys::signal::kill(group, sig);
        }
    };
    signal(Signal::SIGTERM);
    let deadline = Instant::now() + timeout;
    while record.is_alive() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if record.is_alive() {
        signal(Signal::SIGKILL);
        while record.is_alive() && Instant::now() < deadline + Duration::from_secs(5) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    Some(record)
}

fn describe_exit(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(sig)) => match Signal::try_from(sig) {
            Ok(s) => format!("killed by signal {sig} ({s})"),
            Err(_) => format!("killed by signal {sig}"),
        },
        _ => status.to_string(),
    }
}

async fn forward_lines(
    name: &'static str,
    pid: u32,
    stream: impl AsyncRead + Unpin,
    last_words: Arc<Mutex<Option<String>>>,
) {
    let mut lines = BufReader::new(stream).lines();
    loop {
        match lines.next_line().await {
            Ok(Some(mut line)) => {
                if line.len() > MAX_LOG_LINE {
                    let mut cut = MAX_LOG_LINE;
                    while !line.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    line.truncate(cut);
                    line.push('…');
                }
                tracing::info!(target: "daemon", daemon = name, pid, "{line}");
                if !line.trim().is_empty() {
                    if let Ok(mut words) = last_words.lock() {
                        *words = Some(line);
                    }
                }
            }
            Ok(None) => return,
            Err(e) => {
                // Non-UTF-8 output ends line splitting; keep the daemon's
                // pipe drained so it never blocks on a full pipe.
                tracing::debug!(daemon = name, error = %e, "daemon output is not text; discarding the rest");
                let mut rest = lines.into_inner();
                let _ = tokio::io::copy(&mut rest, &mut tokio::io::sink()).await;
                return;
            }
        }
    }
}

fn which(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;

    fn sh(script: &str) -> Command {
        Command::new("sh", ["-c", script])
    }

    #[tokio::test]
    async fn reports_exit_and_generation() {
        let mut sup = Supervisor::new("sh");
        let mut first = sup.start(&sh("exit 3")).unwrap();
        first.exited().await;
        assert!(!first.is_running());
        let status = sup.status();
        assert_eq!(status.generation, 1);
        assert_eq!(status.last_exit.as_deref(), Some("exit status 3"));
        let second = sup.start(&sh("sleep 30")).unwrap();
        assert!(second.is_running());
        assert_eq!(sup.status().generation, 2);
        second.stop(Duration::from_secs(5)).await;
        assert!(sup.status().last_exit.unwrap().contains("SIGTERM"));
    }

    #[tokio::test]
    async fn sigterm_ignorers_get_sigkill_after_the_timeout() {
        let mut sup = Supervisor::new("sh");
        let daemon = sup
            .start(&sh("trap '' TERM; while :; do sleep 0.1; done"))
            .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let started = Instant::now();
        daemon.stop(Duration::from_millis(300)).await;
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert!(sup.status().last_exit.unwrap().contains("SIGKILL"));
    }

    #[tokio::test]
    async fn a_recorded_leftover_is_stopped_and_only_that() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ntari-sleep.pid");
        // A process group of its own, as the supervisor starts daemons.
        let mut leftover = std::process::Command::new("sleep")
            .arg("30")
            .process_group(0)
            .spawn()
            .unwrap();
        let record = DaemonRecord::of(leftover.id(), "/bin/sleep").unwrap();
        assert_eq!(record.comm, "sleep");
        record.save(&path).unwrap();
        assert_eq!(DaemonRecord::load(&path), Some(record.clone()));
        assert!(record.is_alive());

        // A record whose start time does not match names another process.
        let stranger = DaemonRecord {
            start_time: record.start_time + 1,
            ..record.clone()
        };
        stranger.save(&path).unwrap();
        assert_eq!(stop_leftover(&path, Duration::from_secs(2)).await, None);
        assert!(
            leftover.try_wait().unwrap().is_none(),
            "not ours: left alone"
        );
        assert!(!path.exists());

        record.save(&path).unwrap();
        assert_eq!(
            stop_leftover(&path, Duration::from_secs(2)).await,
            Some(record)
        );
        let status = leftover.wait().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(Signal::SIGTERM as i32));
        assert!(!path.exists());

        std::fs::write(&path, "garbage").unwrap();
        assert_eq!(stop_leftover(&path, Duration::from_secs(1)).await, None);
        assert_eq!(stop_leftover(&path, Duration::from_secs(1)).await, None);
    }

    #[test]
    fn a_record_names_the_process_as_the_kernel_will() {
        // comm is the program's file name, cut to 15 bytes (TASK_COMM_LEN).
        let me = std::process::id();
        let record = DaemonRecord::of(me, "/usr/sbin/a-daemon-with-a-long-name").unwrap();
        assert_eq!(record.comm, "a-daemon-with-a");
        assert_eq!(DaemonRecord::of(me, "kea-dhcp4").unwrap().comm, "kea-dhcp4");
        // This test process is not called that: the record is not "alive".
        assert!(!record.is_alive());
        assert_eq!(DaemonRecord::of(u32::MAX, "x"), None, "no such process");
    }

    #[tokio::test]
    async fn missing_programs_are_a_clear_error() {
        let mut sup = Supervisor::new("nope");
        let err = sup
            .start(&Command::new("/nonexistent/daemon", ["-x"]))
            .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("/nonexistent/daemon -x") && text.contains("installed"),
            "{text}"
        );
    }
}

//! Running one upstream daemon in the foreground, and stopping it.
//!
//! Invariants:
//! - The daemon runs in its own process group, so stopping it reaches any
//!   helper it forks, and a Ctrl-C in the node's terminal is not delivered
//!   to it twice.
//! - The daemon never outlives the node. A node binary started through
//!   `runtime::main` runs each daemon under a guard (see [`crate::guard`]):
//!   the guard leads the daemon's process group, adopts every helper the
//!   daemon orphans, and kills them all the moment the node is gone, even
//!   after a SIGKILL of the node and for daemons that changed their user.
//!   Without a guard (library tests) the daemon is started through
//!   util-linux `setpriv --pdeathsig KILL`, which holds only for daemons
//!   that keep their credentials. The parent-death signal fires when the
//!   *thread* that forked exits, so nodes spawn daemons from the main
//!   thread (the runtime is tokio's current-thread flavour).
//! - As a last line, the node keeps a [`DaemonRecord`] per daemon in its
//!   run dir, and a node that starts after a crash stops what the records
//!   name ([`stop_leftovers`]) before anything else, checking start time and
//!   name so it never touches a process it did not start.
//! - Every exit is reported once on the [`DaemonStatus`] watch channel, with
//!   the run's generation number so stale reports are never confused with
//!   the current run, and wakes the `exits` notifier shared by all of a
//!   node's supervisors.

use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::{watch, Notify};

use crate::service::Command;

/// Where `setpriv` lives on Debian and Alpine (util-linux).
const SETPRIV: &str = "setpriv";
/// Daemon output lines longer than this are cut, so a runaway daemon
/// cannot make the node buffer without bound.
const MAX_LOG_LINE: usize = 4096;
/// How long a guard may take to report its daemon's pid.
const GUARD_REPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a daemon could not be started or stopped.
#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error("cannot start `{command}`: {source} (is it installed and on PATH?)")]
    Spawn {
        command: String,
        source: std::io::Error,
    },
    #[error("cannot start `{command}`: {message}")]
    Guard { command: String, message: String },
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
    /// The daemon process itself.
    pid: u32,
    /// Its process group: the guard's pid, or the daemon's without a guard.
    group: u32,
    generation: u64,
    started: Instant,
    status: watch::Receiver<DaemonStatus>,
    /// The node's end of the guard's control socket. Dropping it (the node
    /// exits, however) makes the guard kill everything it guards.
    _guard_control: Option<UnixStream>,
}

/// Starts and tracks runs of one daemon.
#[derive(Debug)]
pub struct Supervisor {
    name: &'static str,
    status_tx: watch::Sender<DaemonStatus>,
    generation: u64,
    /// The node binary, which runs as a guard with [`crate::guard::GUARD_ARG`].
    guard: Option<PathBuf>,
    use_setpriv: bool,
    /// Woken after every exit.
    exits: Arc<Notify>,
    /// The daemon's last non-empty output line: usually why it exited.
    /// Kept apart from the watch channel so a chatty daemon does not wake
    /// the event loop on every line.
    last_words: Arc<Mutex<Option<String>>>,
}

impl Supervisor {
    /// A supervisor for daemon `name`. With `guard` (the node's own
    /// binary), daemons run under a guard; `exits` is woken after every exit.
    pub fn new(name: &'static str, guard: Option<PathBuf>, exits: Arc<Notify>) -> Self {
        let use_setpriv = guard.is_none() && which(SETPRIV);
        if guard.is_none() && !use_setpriv {
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
            guard,
            use_setpriv,
            exits,
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
        // Checked here because behind a guard or setpriv a missing program
        // would only show up later as a quick exit.
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
        let mut control = None;
        let mut cmd = if let Some(guard) = &self.guard {
            let (ours, theirs) = UnixStream::pair().map_err(|source| SupervisorError::Spawn {
                command: command.display(),
                source,
            })?;
            let mut c = tokio::process::Command::new(running_binary(guard));
            c.arg(crate::guard::GUARD_ARG)
                .arg(&command.program)
                .stdin(Stdio::from(OwnedFd::from(theirs)));
            control = Some(ours);
            c
        } else if self.use_setpriv {
            let mut c = tokio::process::Command::new(SETPRIV);
            c.args(["--pdeathsig", "KILL", "--", &command.program])
                .stdin(Stdio::null());
            c
        } else {
            let mut c = tokio::process::Command::new(&command.program);
            c.stdin(Stdio::null());
            c
        };
        cmd.args(&command.args)
            .envs(command.env.iter().cloned())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|source| SupervisorError::Spawn {
            command: command.display(),
            source,
        })?;
        let group = child.id().unwrap_or(0);
        let pid = match &control {
            Some(socket) => guard_report(socket).map_err(|message| SupervisorError::Guard {
                command: command.display(),
                message,
            })?,
            None => group,
        };
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
        let exits = self.exits.clone();
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
            exits.notify_one();
        });
        tracing::info!(daemon = name, pid, command = %command.display(), "daemon started");
        Ok(Daemon {
            name,
            pid,
            group,
            generation,
            started: Instant::now(),
            status: self.watch(),
            _guard_control: control,
        })
    }
}

/// `path`, this node's binary, or `/proc/self/exe` once `path` is gone (an
/// upgrade replaced the file): the kernel keeps the running binary, and a
/// guard of the same version as its node.
pub fn running_binary(path: &Path) -> &Path {
    if path.is_file() {
        path
    } else {
        Path::new("/proc/self/exe")
    }
}

/// This node's own binary, for a service whose daemon is the node binary
/// run with a hidden argument (ntari-vpn's boringtun tunnel,
/// ntari-federation's bridge).
pub fn own_binary() -> PathBuf {
    let path = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("/proc/self/exe"));
    running_binary(&path).to_path_buf()
}

/// The daemon's pid, as the guard reports it on the control socket: one
/// line, `pid <n>` or `error <why>`. The guard writes it right after its
/// fork, so the short blocking read does not hold up the event loop.
fn guard_report(socket: &UnixStream) -> Result<u32, String> {
    socket
        .set_read_timeout(Some(GUARD_REPORT_TIMEOUT))
        .map_err(|e| e.to_string())?;
    let line =
        read_line(socket).map_err(|e| format!("the guard did not report the daemon's pid: {e}"))?;
    let _ = socket.set_read_timeout(None);
    let line = line.trim();
    if let Some(why) = line.strip_prefix("error ") {
        return Err(why.to_string());
    }
    line.strip_prefix("pid ")
        .and_then(|pid| pid.parse().ok())
        .ok_or_else(|| format!("the guard said `{line}` instead of the daemon's pid"))
}

/// One line from the socket, read a byte at a time so that nothing after
/// the newline is consumed.
fn read_line(mut socket: &UnixStream) -> std::io::Result<String> {
    use std::io::Read;
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        match socket.read(&mut byte)? {
            0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            _ if byte[0] == b'\n' => break,
            _ if line.len() >= 4096 => return Err(std::io::ErrorKind::InvalidData.into()),
            _ => line.push(byte[0]),
        }
    }
    Ok(String::from_utf8_lossy(&line).into_owned())
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

    /// The process group the daemon runs in (its guard's pid).
    pub fn group(&self) -> u32 {
        self.group
    }

    fn signal_group(&self, signal: Signal) {
        let Ok(pid) = i32::try_from(self.group) else {
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
        let start_time = proc_stat(pid)?.start_time;
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
        proc_stat(self.pid).is_some_and(|p| {
            p.start_time == self.start_time && p.comm == self.comm && p.state != 'Z'
        })
    }
}

/// What /proc/<pid>/stat says of one process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProcStat {
    pub pid: Pid,
    pub comm: String,
    pub state: char,
    pub ppid: Pid,
    pub pgrp: Pid,
    /// Clock ticks since boot.
    pub start_time: u64,
}

pub(crate) fn proc_stat(pid: u32) -> Option<ProcStat> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid pgrp ...`: comm may hold spaces and parentheses.
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?.to_string();
    let mut rest = stat.get(close + 1..)?.split_whitespace();
    let state = rest.next()?.chars().next()?;
    let mut number = || rest.next()?.parse::<i32>().ok();
    let ppid = Pid::from_raw(number()?);
    let pgrp = Pid::from_raw(number()?);
    // Field 22 of stat is the start time; `pgrp` was field 5.
    let start_time = rest.nth(16)?.parse().ok()?;
    Some(ProcStat {
        pid: Pid::from_raw(i32::try_from(pid).ok()?),
        comm,
        state,
        ppid,
        pgrp,
        start_time,
    })
}

/// Every process this one can see.
pub(crate) fn processes() -> Vec<ProcStat> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(proc_stat)
        .collect()
}

/// Stops the processes this node adopted as a child subreaper: the
/// children whose parent died under them (a guard killed by hand, a
/// daemon's helper), which are not in the node's own process group (its
/// checkers and probes are) and not one of `own_groups` (its guards). They
/// get SIGKILL, to them and their group, and are reaped. Returns how many.
pub fn stop_adopted(own_groups: &[u32]) -> usize {
    use nix::sys::wait::{waitpid, WaitPidFlag};
    let me = nix::unistd::getpid();
    let my_group = nix::unistd::getpgrp();
    let mut stopped = 0;
    for p in processes() {
        let ours = own_groups
            .iter()
            .any(|g| i32::try_from(*g) == Ok(p.pid.as_raw()));
        if p.ppid != me || p.pgrp == my_group || ours {
            continue;
        }
        if p.state != 'Z' {
            tracing::warn!(
                pid = p.pid.as_raw(),
                comm = %p.comm,
                "stopping a process this node adopted (its parent, a daemon or guard, died)"
            );
            if p.pgrp == p.pid {
                let _ = killpg(p.pgrp, Signal::SIGKILL);
            }
            let _ = nix::sys::signal::kill(p.pid, Signal::SIGKILL);
            stopped += 1;
        }
        // Only this pid: never a status tokio waits for.
        let _ = waitpid(p.pid, Some(WaitPidFlag::WNOHANG));
    }
    stopped
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

/// The record file of daemon `name` in `run_dir`.
pub fn record_path(run_dir: &Path, name: &str) -> PathBuf {
    run_dir.join(format!("ntari-{name}.pid"))
}

/// [`stop_leftover`] for every daemon record in `run_dir`
/// (`ntari-*.pid`), whatever daemons the config names now.
pub async fn stop_leftovers(run_dir: &Path, timeout: Duration) -> Vec<DaemonRecord> {
    let Ok(entries) = std::fs::read_dir(run_dir) else {
        return Vec::new();
    };
    let records: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("ntari-") && n.ends_with(".pid"))
        })
        .collect();
    let mut stopped = Vec::new();
    for path in records {
        stopped.extend(stop_leftover(&path, timeout).await);
    }
    stopped
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
        let mut sup = Supervisor::new("sh", None, Arc::new(Notify::new()));
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
        let mut sup = Supervisor::new("sh", None, Arc::new(Notify::new()));
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
        let mut sup = Supervisor::new("nope", None, Arc::new(Notify::new()));
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

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

//! The guard: a small process between the node and each of its daemons, so
//! that nothing a daemon starts outlives the node.
//!
//! Why not just a parent-death signal: Linux clears it when a process
//! changes its credentials (dnsmasq and Kea drop to their own user), it is
//! never inherited by the helpers a daemon forks, and helpers that leave
//! the process group (Samba's samba-dcerpcd) re-parent to PID 1. A node
//! killed with SIGKILL then leaves a daemon holding its ports.
//!
//! The guard is the node binary itself, run again with [`GUARD_ARG`] as its
//! first argument (`runtime::main` dispatches on it), so there is nothing
//! else to install. It:
//! - is a child subreaper: every process its daemon forks and orphans
//!   re-parents to the guard, not to PID 1;
//! - starts the daemon in the guard's own process group, and tells the node
//!   the daemon's pid over its stdin, a Unix socket the node holds;
//! - notices when the node is gone (that socket reaches end of file, which
//!   the kernel guarantees however the node died) and SIGKILLs everything it
//!   guards at once;
//! - when the daemon exits, stops whatever the daemon left (SIGTERM with a
//!   grace period when the node asked for the stop, SIGKILL after a crash),
//!   then exits with the daemon's own status, so the node sees the daemon's
//!   exit as if it were its direct child.
//!
//! Invariant: the guard never outlives what it guards by more than the
//! grace period, and never touches a process that is not its descendant
//! (it signals only its own process group and its own children).
//!
//! Everything here is synchronous: signals are blocked (after the daemon
//! is started, which would inherit the mask) and taken with `sigwait`, so
//! no handler runs and no `unsafe` is needed.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{getpid, Pid};

/// The hidden first argument that makes a node binary run as a guard.
pub const GUARD_ARG: &str = "__ntari-guard";

/// How long helpers get after SIGTERM, once their daemon stopped on the
/// node's request, before they are killed.
const GRACE: Duration = Duration::from_secs(3);
/// After SIGKILL, how long to keep reaping re-parented descendants.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// How the daemon ended.
enum Exit {
    Code(i32),
    Signal(Signal),
}

/// Runs the guard over `argv` (program and arguments, after
/// [`GUARD_ARG`]); never returns.
pub fn run(argv: &[OsString]) -> ! {
    let code = match guard(argv) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("ntari guard: {message}");
            127
        }
    };
    std::process::exit(code)
}

fn guard(argv: &[OsString]) -> Result<i32, String> {
    let (program, args) = argv
        .split_first()
        .ok_or("usage: <node> __ntari-guard PROGRAM [ARG…]")?;
    // fd 0 is the node's end of a socket pair (a dup, close-on-exec, so the
    // daemon never holds it).
    let node =
        stdin_socket().map_err(|e| format!("stdin is not the node's control socket: {e}"))?;

    nix::sys::prctl::set_child_subreaper(true)
        .map_err(|e| format!("cannot become a child subreaper: {e}"))?;
    let mut report = &node;
    let child = match Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .spawn()
    {
        Ok(child) => child,
        Err(e) => {
            let _ = writeln!(
                report,
                "error cannot start {}: {e}",
                program.to_string_lossy()
            );
            return Ok(127);
        }
    };
    // Blocked only now: a child inherits the signal mask, and std's spawn
    // does not clear it (a daemon with SIGTERM blocked would never stop).
    // A SIGCHLD from before is not lost: the zombie waits for `reap`. A
    // SIGTERM in that window ends the guard; the daemon then re-parents to
    // the node, which stops what it adopts.
    let mut signals = SigSet::empty();
    for s in [
        Signal::SIGCHLD,
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGQUIT,
        Signal::SIGHUP,
        Signal::SIGUSR1,
    ] {
        signals.add(s);
    }
    signals
        .thread_block()
        .map_err(|e| format!("cannot block signals: {e}"))?;
    let daemon = Pid::from_raw(i32::try_from(child.id()).map_err(|e| e.to_string())?);
    // The node reads this line before it goes on.
    let _ = writeln!(report, "pid {daemon}");
    // std's Child is not waited on: the loop below reaps with waitpid(-1),
    // which also collects re-parented helpers.
    drop(child);

    let watcher = node
        .try_clone()
        .map_err(|e| format!("cannot watch the node: {e}"))?;
    std::thread::spawn(move || watch_node(watcher));

    let mut stop_requested = false;
    let mut check_children = true; // a daemon that died before the block
    loop {
        let signal = if std::mem::take(&mut check_children) {
            Ok(Signal::SIGCHLD)
        } else {
            signals.wait()
        };
        match signal {
            Ok(Signal::SIGCHLD) => {
                if let Some(exit) = reap(Some(daemon)) {
                    // An orderly stop gives helpers the grace a daemon gets;
                    // after a crash they are orphans of a dead daemon.
                    let first = if stop_requested {
                        Signal::SIGTERM
                    } else {
                        Signal::SIGKILL
                    };
                    stop_descendants(first);
                    return Ok(exit_like(exit));
                }
            }
            Ok(Signal::SIGUSR1) => {
                // The node is gone: nobody is left to report to.
                stop_descendants(Signal::SIGKILL);
                return Ok(1);
            }
            // The node signals our whole process group, so the daemon got
            // the same signal; remember that the stop was asked for.
            Ok(Signal::SIGTERM | Signal::SIGINT | Signal::SIGQUIT) => stop_requested = true,
            Ok(_) => {}
            Err(e) => return Err(format!("sigwait failed: {e}")),
        }
    }
}

/// Blocks until the node's end of the control socket closes, then wakes the
/// main loop with SIGUSR1.
fn watch_node(mut node: UnixStream) {
    let mut buf = [0u8; 64];
    loop {
        match node.read(&mut buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    let _ = kill(getpid(), Signal::SIGUSR1);
}

/// Reaps every child that has exited; returns the daemon's exit if it was
/// among them.
fn reap(daemon: Option<Pid>) -> Option<Exit> {
    let daemon = daemon.unwrap_or(Pid::from_raw(-1)); // waitpid never returns -1
    let mut exit = None;
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) if pid == daemon => exit = Some(Exit::Code(code)),
            Ok(WaitStatus::Signaled(pid, signal, _)) if pid == daemon => {
                exit = Some(Exit::Signal(signal))
            }
            Ok(WaitStatus::StillAlive) | Err(_) => return exit,
            Ok(_) => {}
        }
    }
}

/// Signals every process in the guard's process group and every child of
/// the guard (helpers re-parent here), `first` and then, after the grace
/// period, SIGKILL, until none is left or the time is up.
fn stop_descendants(first: Signal) {
    let me = getpid();
    let started = Instant::now();
    let mut signal = first;
    let give_up = if first == Signal::SIGKILL {
        KILL_WAIT
    } else {
        GRACE + KILL_WAIT
    };
    // Each process is signalled once per signal; a new pid (a grandchild
    // that just re-parented) gets it on the next round.
    let mut signalled: Vec<(Pid, Signal)> = Vec::new();
    loop {
        reap(None);
        let targets = crate::supervisor::processes()
            .into_iter()
            .filter(|p| p.pid != me && (p.pgrp == me || p.ppid == me))
            .collect::<Vec<_>>();
        if targets.is_empty() || started.elapsed() >= give_up {
            return;
        }
        if signal != Signal::SIGKILL && started.elapsed() >= GRACE {
            signal = Signal::SIGKILL;
        }
        for p in targets.iter().filter(|p| p.state != 'Z') {
            if !signalled.contains(&(p.pid, signal)) {
                let _ = kill(p.pid, signal);
                signalled.push((p.pid, signal));
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The guard's own exit status, the same as the daemon's: its exit code,
/// or death by the same signal.
fn exit_like(exit: Exit) -> i32 {
    match exit {
        Exit::Code(code) => code,
        Exit::Signal(signal) => {
            // No handler is installed, so unblocking and raising it ends
            // the guard the way the daemon ended (SIGKILL cannot be blocked).
            let _ = SigSet::from(signal).thread_unblock();
            let _ = kill(getpid(), signal);
            128 + signal as i32
        }
    }
}

/// A close-on-exec duplicate of fd 0, which the node made one end of a
/// Unix socket pair.
fn stdin_socket() -> std::io::Result<UnixStream> {
    use std::os::fd::AsFd;
    let fd = std::io::stdin().as_fd().try_clone_to_owned()?;
    let socket = UnixStream::from(fd);
    // A pipe or a file would pass as a UnixStream until the first socket
    // call; this makes the mistake show at once.
    socket.peer_addr()?;
    Ok(socket)
}

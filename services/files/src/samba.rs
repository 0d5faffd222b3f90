//! Samba's own tools — `smbstatus`, `pdbedit`, `smbcontrol` — run with the
//! node's smb.conf, and when to run them.
//!
//! They cost 20-50 ms of CPU a run, far more than everything else the node
//! does, so the probe never waits for them: [`refresh`] starts them in the
//! background when there is news, and the probe reports what they last
//! said ([`Cache`]).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::render::Layout;
use crate::stats;
use crate::FilesConfig;

/// Bound on one tool run.
const TOOL_TIMEOUT: Duration = Duration::from_secs(3);

/// What Samba's tools last said, and when (kept between probes).
#[derive(Debug, Clone, Default)]
pub struct Cache {
    pub status: Option<stats::SmbStatus>,
    pub profile: Option<stats::Profile>,
    pub members: Option<usize>,
    /// When smbstatus last ran.
    pub refreshed: Option<Instant>,
    /// smbd's children when smbstatus last ran (a change: a client came or went).
    pub smbd_children: Option<String>,
    /// The passdb's mtime when the members were counted.
    pub passdb_changed_at: Option<std::time::SystemTime>,
    /// A refresh is running.
    pub in_flight: bool,
}

/// smbd's children as the kernel lists them (`/proc/<pid>/task/<pid>/children`):
/// one per connected client besides its two helpers. None if smbd's pid
/// file or that file (a kernel without CONFIG_PROC_CHILDREN) is missing.
pub fn smbd_children(layout: &Layout) -> Option<String> {
    let text = std::fs::read_to_string(layout.run_dir.join("smbd.pid")).ok()?;
    let pid: u32 = text.trim().parse().ok()?;
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).ok()
}

/// The cache, even if a panicking thread held it (it holds plain data).
pub fn lock(cache: &Mutex<Cache>) -> std::sync::MutexGuard<'_, Cache> {
    cache
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A samba tool with the node's own smb.conf, its stdout.
pub async fn tool(program: &str, args: &[&str], layout: &Layout) -> Result<String, String> {
    let mut command = tokio::process::Command::new(program);
    command
        .arg("-s")
        .arg(&layout.smb_conf)
        .args(args)
        .kill_on_drop(true);
    let out = tokio::time::timeout(TOOL_TIMEOUT, command.output())
        .await
        .map_err(|_| format!("{program} did not finish within {TOOL_TIMEOUT:?}"))?
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{program} {}: {} {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Samba's tools cost 20-50 ms of CPU a run, far more than the probe,
/// so they run only when there is news, in the background (no probe,
/// and no activation, waits for them; the next probes report what they
/// found): `smbstatus` (sessions, then counters) when smbd's children
/// (`clients`, read before the probe connected) changed (it forks one
/// per client: someone came or went) or
/// `smb.status_interval` seconds passed; `pdbedit -L` when the passdb
/// changed.
pub fn refresh(
    config: &FilesConfig,
    layout: &Layout,
    clients: Option<String>,
    cache: &Arc<Mutex<Cache>>,
) {
    let interval = Duration::from_secs(config.smb.status_interval);
    let passdb_changed_at = std::fs::metadata(&layout.passdb)
        .and_then(|m| m.modified())
        .ok();
    let (status_due, members_due) = {
        let mut c = lock(cache);
        if c.in_flight {
            return;
        }
        let status_due = c.refreshed.is_none_or(|t| t.elapsed() >= interval)
            || (clients.is_some() && clients != c.smbd_children);
        let members_due = c.members.is_none() || c.passdb_changed_at != passdb_changed_at;
        c.in_flight = status_due || members_due;
        (status_due, members_due)
    };
    if !(status_due || members_due) {
        return;
    }
    let (cache, layout) = (Arc::clone(cache), layout.clone());
    tokio::spawn(async move {
        let status = if status_due {
            let (status, profile) = tokio::join!(
                tool("smbstatus", &["--json"], &layout),
                tool("smbstatus", &["--profile"], &layout),
            );
            Some((
                status.and_then(|s| stats::parse_status(&s)).ok(),
                profile.ok().map(|p| stats::parse_profile(&p)),
            ))
        } else {
            None
        };
        let members = if members_due {
            tool("pdbedit", &["-L"], &layout)
                .await
                .ok()
                .map(|m| stats::count_members(&m))
        } else {
            None
        };
        let mut c = lock(&cache);
        if let Some((status, profile)) = status {
            c.status = status;
            c.profile = profile;
            c.refreshed = Some(Instant::now());
            c.smbd_children = clients;
        }
        if members_due {
            c.members = members;
            c.passdb_changed_at = passdb_changed_at;
        }
        c.in_flight = false;
    });
}

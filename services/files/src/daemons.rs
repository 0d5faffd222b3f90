//! The daemons and what they need around them.
//!
//! - smbd in the foreground, in the guard's process group
//!   (`--no-process-group`), logging to the node. The helpers it starts
//!   for share listings (samba-dcerpcd, rpcd_*) leave its process group
//!   and would re-parent to PID 1; the runtime's guard is their subreaper,
//!   so they still end with the node.
//! - NFS-Ganesha in the foreground (`-F`), logging to the node (`-L
//!   STDERR`). It runs as root: Ganesha has no option to drop privileges.
//! - Or the kernel's nfsd: no process of ours serves NFS then. [`set_up`]
//!   starts the kernel threads and loads the exports; `rpc.mountd` (the
//!   kernel's export cache upcalls) is the supervised daemon.

use std::path::Path;

use ntari_node::service::{Command, DaemonSpec};

use crate::config::FilesConfig;
use crate::render::Layout;

pub const SMBD: &str = "smbd";
pub const GANESHA: &str = "ganesha";
pub const MOUNTD: &str = "mountd";

/// Where the kernel backend's exports file is linked, so `exportfs` (which
/// reads only /etc/exports and /etc/exports.d) finds it.
pub const KERNEL_EXPORTS_LINK: &str = "/etc/exports.d/ntari-files.exports";

pub fn specs(config: &FilesConfig, layout: &Layout) -> Vec<DaemonSpec> {
    let mut specs = Vec::new();
    if config.smb.enabled {
        let command = Command::new(
            "smbd",
            [
                "--foreground".to_string(),
                "--no-process-group".into(),
                "--debug-stdout".into(),
                "-s".into(),
                layout.smb_conf.display().to_string(),
            ],
        );
        // smbd refuses to start while its pid file names a live process,
        // which after a crash and a reboot may be anybody.
        specs.push(
            DaemonSpec::new(SMBD, command)
                .with_stale_file(layout.run_dir.join("smbd.pid"))
                .with_stale_file(layout.run_dir.join("samba-dcerpcd.pid")),
        );
    }
    if config.nfs.enabled && config.nfs.backend == "ganesha" {
        let command = Command::new(
            "ganesha.nfsd",
            [
                "-F".to_string(),
                "-f".into(),
                layout.ganesha_conf.display().to_string(),
                "-L".into(),
                "STDERR".into(),
                "-p".into(),
                layout.ganesha_pid.display().to_string(),
            ],
        );
        specs.push(DaemonSpec::new(GANESHA, command).with_stale_file(layout.ganesha_pid.clone()));
    }
    if config.nfs.enabled && config.nfs.backend == "kernel" {
        let command = Command::new("rpc.mountd", ["--foreground", "--no-nfs-version", "3"]);
        specs.push(DaemonSpec::new(MOUNTD, command));
    }
    specs
}

/// Makes the dirs smbd and Ganesha write to; an existing one keeps its
/// contents (the passdb is in one of them).
pub fn prepare_dirs(layout: &Layout) -> Result<(), String> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    for (dir, mode) in layout.dirs() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(mode)
            .create(dir)
            .and_then(|()| std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode)))
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    Ok(())
}

/// Kernel backend: link the rendered exports where exportfs looks, start
/// nfsd's threads (NFSv4 only, on the configured address and port), load
/// the exports.
pub fn kernel_set_up(config: &FilesConfig, layout: &Layout) -> Result<(), String> {
    let link = Path::new(KERNEL_EXPORTS_LINK);
    if let Some(dir) = link.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let _ = std::fs::remove_file(link);
    std::os::unix::fs::symlink(&layout.kernel_exports, link)
        .map_err(|e| format!("cannot link {}: {e}", link.display()))?;
    let port = config.nfs.port.to_string();
    let host = config.nfs.listen.to_string();
    run(
        "rpc.nfsd",
        &[
            "--no-nfs-version",
            "3",
            "--host",
            &host,
            "--port",
            &port,
            "8",
        ],
    )?;
    run("exportfs", &["-ra"])
}

/// Kernel backend: unload our exports, stop nfsd's threads, drop the link.
/// Harmless when nothing was set up.
pub fn kernel_tear_down() {
    if Path::new(KERNEL_EXPORTS_LINK).exists() {
        let _ = std::fs::remove_file(KERNEL_EXPORTS_LINK);
        let _ = run("exportfs", &["-ra"]);
        let _ = run("rpc.nfsd", &["0"]);
    }
}

/// Runs a short command, its stderr in the error.
pub fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{program} {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

//! Filesystem helpers shared by the runtime.
//!
//! [`write_atomic`] is how rendered daemon configs (and any other file a
//! daemon or a later start reads) reach the disk: a reader sees either the
//! old file or the complete new one, never a half-written one, and a crash
//! at any point leaves one of the two behind.

use std::ffi::{OsStr, OsString};
use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Distinguishes temp files of concurrent writers within one process; the
/// pid in the name distinguishes processes.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// How many taken temp names to skip before giving up (a name is only taken
/// if a writer crashed and left its temp file behind, or one runs right now).
const TEMP_ATTEMPTS: u32 = 64;

/// Replaces `path` with `contents`, atomically, with permission bits `mode`.
///
/// Writes a temp file in the same directory (same filesystem, so the rename
/// is atomic), created exclusively with `mode`, then write, fsync, rename
/// over `path`, fsync the directory (so the rename itself survives a crash).
/// `mode` is applied with fchmod as well, so the umask does not change it.
///
/// On any error before the rename, the temp file is removed and `path` is
/// untouched. If only the final directory fsync fails, the new contents are
/// already in place but may not survive a power loss; the error is still
/// returned. A symlink at `path` is replaced, not followed.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    let file_name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{}: not a file path", path.display()),
        )
    })?;
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let mode = mode & 0o7777;
    let (temp_path, file) = create_temp(dir, file_name, mode)?;
    if let Err(err) = fill_and_rename(file, &temp_path, path, contents, mode) {
        // Best effort: the write error is what the caller needs to see.
        let _ = fs::remove_file(&temp_path);
        return Err(err);
    }
    File::open(dir)?.sync_all()
}

/// Creates a fresh temp file next to the target; O_EXCL (`create_new`)
/// guarantees we never write into a file someone else also has open.
fn create_temp(dir: &Path, file_name: &OsStr, mode: u32) -> io::Result<(PathBuf, File)> {
    let mut last_err = None;
    for _ in 0..TEMP_ATTEMPTS {
        let mut name = OsString::from(".");
        name.push(file_name);
        name.push(format!(
            ".tmp-{}-{}",
            std::process::id(),
            TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let temp_path = dir.join(name);
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&temp_path)
        {
            Ok(file) => return Ok((temp_path, file)),
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => last_err = Some(err),
            Err(err) => return Err(err),
        }
    }
    Err(last_err.unwrap_or_else(|| io::Error::other("no free temp file name")))
}

fn fill_and_rename(
    mut file: File,
    temp_path: &Path,
    path: &Path,
    contents: &[u8],
    mode: u32,
) -> io::Result<()> {
    file.write_all(contents)?;
    // open(2) masked the mode with the umask; set exactly what was asked.
    file.set_permissions(Permissions::from_mode(mode))?;
    // Data must be on disk before the rename makes it visible, or a crash
    // could leave an empty file under the final name.
    file.sync_all()?;
    drop(file);
    fs::rename(temp_path, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    fn mode_of(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn creates_then_replaces_contents_without_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("chrony.conf");
        write_atomic(&target, b"old\n", 0o644).unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"old\n");

        // A reader that opened the old file keeps seeing it in full.
        let old_reader = fs::read(&target).unwrap();
        write_atomic(&target, b"new contents\n", 0o644).unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"new contents\n");
        assert_eq!(old_reader, b"old\n");
        assert_eq!(entries(dir.path()), vec!["chrony.conf"]);
    }

    #[test]
    fn sets_the_exact_mode_regardless_of_umask() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("key");
        write_atomic(&secret, b"k", 0o600).unwrap();
        assert_eq!(mode_of(&secret), 0o600);

        // 0o666 would lose group/other write bits to a 022 umask without
        // the explicit fchmod; replacing also changes the mode.
        write_atomic(&secret, b"k2", 0o666).unwrap();
        assert_eq!(mode_of(&secret), 0o666);
        write_atomic(&secret, b"k3", 0o440).unwrap();
        assert_eq!(mode_of(&secret), 0o440);
        assert_eq!(fs::read(&secret).unwrap(), b"k3");
    }

    #[test]
    fn paths_without_a_file_name_are_rejected() {
        assert!(write_atomic(Path::new(""), b"x", 0o644).is_err());
        assert!(write_atomic(Path::new("/"), b"x", 0o644).is_err());
    }

    #[test]
    fn failed_rename_removes_temp_and_keeps_old_target() {
        // The rename fails even as root: a file cannot replace a directory.
        // The temp file exists by then, so this exercises the cleanup.
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        fs::create_dir(&target).unwrap();
        fs::write(target.join("inside"), b"keep me").unwrap();

        assert!(write_atomic(&target, b"new", 0o644).is_err());
        assert!(target.is_dir());
        assert_eq!(fs::read(target.join("inside")).unwrap(), b"keep me");
        assert_eq!(entries(dir.path()), vec!["target"]);
    }

    #[test]
    fn parent_that_is_a_file_fails_without_side_effects() {
        // ENOTDIR also holds for root, unlike permission-based failures.
        let dir = tempfile::tempdir().unwrap();
        let not_a_dir = dir.path().join("plain");
        fs::write(&not_a_dir, b"original").unwrap();

        assert!(write_atomic(&not_a_dir.join("x.conf"), b"new", 0o644).is_err());
        assert_eq!(fs::read(&not_a_dir).unwrap(), b"original");
        assert_eq!(entries(dir.path()), vec!["plain"]);
    }

    #[test]
    fn skips_a_temp_name_left_behind_by_a_crashed_writer() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("f");
        // Occupy the next name this process would pick; other tests may
        // take counter values concurrently, so occupy a generous range.
        let next = TEMP_COUNTER.load(Ordering::Relaxed);
        for n in next..next + 8 {
            let stale = dir
                .path()
                .join(format!(".f.tmp-{}-{n}", std::process::id()));
            fs::write(stale, b"stale").unwrap();
        }
        write_atomic(&target, b"fresh", 0o644).unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"fresh");
        // The stale files are not ours to delete.
        assert_eq!(entries(dir.path()).len(), 9);
    }
}

//! Members' SMB passwords, in the node's tdbsam passdb (state dir), through
//! Samba's own `pdbedit` with the node's rendered smb.conf.
//!
//! Samba needs a Unix account behind every SMB user (files are owned by
//! it). A member without one gets a locked system account of her own
//! (`useradd --no-create-home --shell nologin`, comment [`MEMBER_GECOS`]);
//! `remove` deletes that account again, but never one it did not make.
//! Every member is in the group [`MEMBERS_GROUP`], which owns what is
//! written to the members' shares (smb.conf `force group`), so members can
//! edit each other's files there.
//!
//! Passwords go to pdbedit on its stdin (twice, as it asks), never on a
//! command line, never in a log.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

/// The GECOS of Unix accounts made for members: `remove` deletes only these.
pub const MEMBER_GECOS: &str = "ntari-files member";
/// The Unix group of all members.
pub const MEMBERS_GROUP: &str = "ntari-members";

#[derive(Debug, thiserror::Error)]
pub enum MemberError {
    #[error("{0}")]
    Invalid(String),
    #[error("`{program}` failed: {message}")]
    Tool { program: String, message: String },
    #[error("cannot run `{program}`: {source}; is Samba installed?")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
}

/// A member name Samba and useradd both take.
pub fn check_name(name: &str) -> Result<(), MemberError> {
    let ok = !name.is_empty()
        && name.len() <= 32
        && !name.starts_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(MemberError::Invalid(format!(
            "`{name}`: a member name is 1 to 32 lower-case letters, digits, `-`, `_` or `.`"
        )))
    }
}

fn run(program: &str, args: &[&str], stdin: Option<&str>) -> Result<String, MemberError> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| MemberError::Spawn {
            program: program.into(),
            source,
        })?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // A tool that exits before reading (bad arguments) closes the pipe;
        // its exit status then says what went wrong.
        let _ = pipe.write_all(input.as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|source| MemberError::Spawn {
            program: program.into(),
            source,
        })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let message = if stderr.trim().is_empty() {
            stdout.trim().to_string()
        } else {
            stderr.trim().to_string()
        };
        Err(MemberError::Tool {
            program: program.into(),
            message: format!("{} ({})", message, out.status),
        })
    }
}

fn pdbedit(smb_conf: &Path, args: &[&str], stdin: Option<&str>) -> Result<String, MemberError> {
    let conf = smb_conf.display().to_string();
    let mut all = vec!["-s", conf.as_str()];
    all.extend_from_slice(args);
    run("pdbedit", &all, stdin)
}

/// Members with a password, by name.
pub fn list(smb_conf: &Path) -> Result<Vec<String>, MemberError> {
    let out = pdbedit(smb_conf, &["-L"], None)?;
    Ok(out
        .lines()
        .filter_map(|l| l.split(':').next())
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .collect())
}

fn unix_account_exists(name: &str) -> bool {
    matches!(nix::unistd::User::from_name(name), Ok(Some(_)))
}

/// Adds a member: her Unix account if she has none, then her passdb entry
/// with `password`. An account made here is removed again if the passdb
/// refuses her.
pub fn add(smb_conf: &Path, name: &str, password: &str) -> Result<(), MemberError> {
    check_name(name)?;
    check_password(password)?;
    if list(smb_conf)?.iter().any(|m| m == name) {
        return Err(MemberError::Invalid(format!(
            "`{name}` is already a member; use `passwd` to change her password"
        )));
    }
    ensure_members_group()?;
    let made = if unix_account_exists(name) {
        refuse_system_account(name)?;
        false
    } else {
        make_unix_account(name)?;
        true
    };
    let twice = format!("{password}\n{password}\n");
    let joined = join_members_group(name);
    if let Err(e) = joined.and_then(|()| pdbedit(smb_conf, &["-a", "-t", "-u", name], Some(&twice)))
    {
        if made {
            let _ = remove_unix_account(name);
        } else {
            let _ = leave_members_group(name);
        }
        return Err(e);
    }
    Ok(())
}

/// Makes [`MEMBERS_GROUP`] (a system group) if it does not exist yet.
pub fn ensure_members_group() -> Result<(), MemberError> {
    if matches!(nix::unistd::Group::from_name(MEMBERS_GROUP), Ok(Some(_))) {
        return Ok(());
    }
    match run("groupadd", &["--system", MEMBERS_GROUP], None) {
        Err(MemberError::Spawn { .. }) => run("addgroup", &["-S", MEMBERS_GROUP], None).map(|_| ()),
        other => other.map(|_| ()),
    }
}

fn join_members_group(name: &str) -> Result<(), MemberError> {
    match run(
        "usermod",
        &["--append", "--groups", MEMBERS_GROUP, name],
        None,
    ) {
        Err(MemberError::Spawn { .. }) => run("addgroup", &[name, MEMBERS_GROUP], None).map(|_| ()),
        other => other.map(|_| ()),
    }
}

fn leave_members_group(name: &str) -> Result<(), MemberError> {
    match run("gpasswd", &["--delete", name, MEMBERS_GROUP], None) {
        Err(MemberError::Spawn { .. }) => run("delgroup", &[name, MEMBERS_GROUP], None).map(|_| ()),
        other => other.map(|_| ()),
    }
}

/// Sets a member's password.
pub fn passwd(smb_conf: &Path, name: &str, password: &str) -> Result<(), MemberError> {
    check_name(name)?;
    check_password(password)?;
    if !list(smb_conf)?.iter().any(|m| m == name) {
        return Err(MemberError::Invalid(format!(
            "`{name}` is not a member; add her first"
        )));
    }
    // `pdbedit -a` on an existing entry would fail; smbpasswd changes it.
    let twice = format!("{password}\n{password}\n");
    let conf = smb_conf.display().to_string();
    run("smbpasswd", &["-c", &conf, "-s", name], Some(&twice)).map(|_| ())
}

/// Removes a member's passdb entry, and her Unix account if it was made
/// for her. Her files stay where they are.
pub fn remove(smb_conf: &Path, name: &str) -> Result<(), MemberError> {
    check_name(name)?;
    if !list(smb_conf)?.iter().any(|m| m == name) {
        return Err(MemberError::Invalid(format!("`{name}` is not a member")));
    }
    pdbedit(smb_conf, &["-x", "-u", name], None)?;
    if made_for_a_member(name) {
        remove_unix_account(name)?;
    } else {
        // Her own account stays; only the membership goes.
        let _ = leave_members_group(name);
    }
    Ok(())
}

/// An existing account below uid 1000 that was not made for a member is
/// the system's (root, daemon users): an SMB password for it would let a
/// member act as that user in every share.
fn refuse_system_account(name: &str) -> Result<(), MemberError> {
    match nix::unistd::User::from_name(name) {
        Ok(Some(user)) if user.uid.as_raw() < 1000 && !made_for_a_member(name) => {
            Err(MemberError::Invalid(format!(
                "`{name}` is a system account (uid {}); choose another member name",
                user.uid
            )))
        }
        _ => Ok(()),
    }
}

fn made_for_a_member(name: &str) -> bool {
    matches!(nix::unistd::User::from_name(name), Ok(Some(u)) if u.gecos.to_str() == Ok(MEMBER_GECOS))
}

/// A system account that cannot log in: Debian's and Alpine's shadow
/// `useradd`, else BusyBox `adduser`.
fn make_unix_account(name: &str) -> Result<(), MemberError> {
    let nologin = ["/usr/sbin/nologin", "/sbin/nologin"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap_or("/bin/false");
    match run(
        "useradd",
        &[
            "--system",
            "--no-create-home",
            "--user-group",
            "--shell",
            nologin,
            "--comment",
            MEMBER_GECOS,
            name,
        ],
        None,
    ) {
        Err(MemberError::Spawn { .. }) => run(
            "adduser",
            &["-S", "-D", "-H", "-s", nologin, "-g", MEMBER_GECOS, name],
            None,
        )
        .map(|_| ()),
        other => other.map(|_| ()),
    }
}

fn remove_unix_account(name: &str) -> Result<(), MemberError> {
    match run("userdel", &[name], None) {
        Err(MemberError::Spawn { .. }) => run("deluser", &[name], None).map(|_| ()),
        other => other.map(|_| ()),
    }
}

/// Not empty, one line (pdbedit reads lines), at most 256 bytes.
pub fn check_password(password: &str) -> Result<(), MemberError> {
    if password.is_empty() || password.len() > 256 || password.contains(['\n', '\r', '\0']) {
        return Err(MemberError::Invalid(
            "a password is 1 to 256 characters on one line".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_passwords_are_checked_before_any_tool_runs() {
        assert!(check_name("alice").is_ok());
        assert!(check_name("al.ice-2_x").is_ok());
        for bad in ["", "Alice", "-rf", "a b", "a:b", &"x".repeat(33)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        assert!(check_password("correct horse").is_ok());
        assert!(check_password("").is_err());
        assert!(check_password("two\nlines").is_err());
        let e = add(Path::new("/nonexistent/smb.conf"), "Bad Name", "pw").expect_err("bad");
        assert!(e.to_string().contains("lower-case"), "{e}");
        let e = refuse_system_account("root").expect_err("root");
        assert!(e.to_string().contains("system account"), "{e}");
    }
}

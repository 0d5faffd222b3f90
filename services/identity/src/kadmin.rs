//! `kadmin.local`, the one way in to the realm's principals and policies
//! on the hub (provisioning, the policy sync, ntari-admin).
//!
//! The query goes on its stdin, never on its command line: `-pw <password>`
//! there would be visible in /proc while it runs. kadmin.local exits 1
//! only when it cannot start (no directory); a failed query exits 0 and
//! says why on stderr, among its own log lines (kdc.conf logs to STDERR),
//! so the stderr that is left once those are taken out decides.

use crate::provision::{krb_command, run_output};
use crate::render::Layout;

/// Runs `query`; its output (without banner and echo), or kadmin's reason.
pub fn run(layout: &Layout, query: &str) -> Result<String, String> {
    if query.contains(['\n', '\r', '\0']) {
        return Err("a kadmin query cannot contain a line break".into());
    }
    let command = krb_command(layout, "kadmin.local");
    let output = run_output(command, Some(format!("{query}\n").as_bytes()))
        .map_err(|e| format!("kadmin.local: {e}"))?;
    let complaint = kadmin_complaint(&String::from_utf8_lossy(&output.stderr));
    if !output.status.success() || !complaint.is_empty() {
        return Err(if complaint.is_empty() {
            format!("kadmin.local exited with {}", output.status)
        } else {
            complaint
        });
    }
    Ok(kadmin_output(&String::from_utf8_lossy(&output.stdout)))
}

/// kadmin's stdout without its banner, its prompts and the echo of the
/// query (which holds any `-pw`): what the query printed.
pub fn kadmin_output(stdout: &str) -> String {
    stdout
        .lines()
        .filter(|l| {
            !l.starts_with("Authenticating as principal") && !l.starts_with("kadmin.local:")
        })
        .map(|l| format!("{l}\n"))
        .collect()
}

/// kadmin's reasons from its stderr, without its notices and log lines,
/// each shortened to the reason (`add_principal: Password is too short
/// while creating "alice@COOP.LAN".` → `Password is too short`).
pub fn kadmin_complaint(stderr: &str) -> String {
    let reasons: Vec<String> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .filter(|l| !l.starts_with("Authenticating as principal"))
        .filter(|l| !l.starts_with("WARNING: no policy specified"))
        .filter(|l| !l.starts_with("No policy specified"))
        .filter(|l| !is_log_line(l))
        .map(kadmin_reason)
        .collect();
    reasons.join("; ")
}

/// A line of kadmin's own log on stderr (`Dec 01 22:06:53 host
/// kadmin.local[123](info): …`).
fn is_log_line(line: &str) -> bool {
    ["](info): ", "](notice): ", "](debug): "]
        .iter()
        .any(|tag| line.contains(tag))
        && line.contains('[')
}

fn kadmin_reason(line: &str) -> String {
    let mut text = line;
    // `add_principal: `, `change_password: `, `kadmin.local: `
    if let Some((head, rest)) = text.split_once(": ") {
        if !head.is_empty()
            && head
                .chars()
                .all(|c| c.is_ascii_lowercase() || c == '_' || c == '.')
        {
            text = rest;
        }
    }
    if let Some(i) = text.find(" while ") {
        text = &text[..i];
    }
    text.trim_end_matches('.').trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn complaints() {
        let stderr = "Dec 01 22:06:53 vm kadmin.local[32296](info): No dictionary file specified, continuing without one.\n\
                      add_principal: Password is too short while creating \"alice@COOP.LAN\".\n";
        assert_eq!(kadmin_complaint(stderr), "Password is too short");
        assert_eq!(
            kadmin_complaint(
                "change_password: Cannot reuse password while changing alice@COOP.LAN's key\n"
            ),
            "Cannot reuse password"
        );
        assert_eq!(
            kadmin_complaint("add_principal: Principal or policy already exists while creating \"alice@COOP.LAN\".\n"),
            "Principal or policy already exists"
        );
        assert_eq!(
            kadmin_complaint("Authenticating as principal root/admin@COOP.LAN with password.\n"),
            ""
        );
        assert_eq!(
            kadmin_complaint("No policy specified for alice@COOP.LAN; assigning \"default\"\n"),
            ""
        );
    }

    #[test]
    fn kadmin_stdout() {
        let out = "Authenticating as principal root/admin@COOP.LAN with password.\n\
                   kadmin.local:  listprincs krbtgt/*\n\
                   krbtgt/COOP.LAN@COOP.LAN\n\
                   kadmin.local:  ";
        assert_eq!(kadmin_output(out), "krbtgt/COOP.LAN@COOP.LAN\n");
        let echo =
            "kadmin.local:  addprinc -pw \"secret\" alice\nPrincipal \"alice@COOP.LAN\" created.\n";
        assert!(!kadmin_output(echo).contains("secret"));
    }
}

//! Checks of values that many service configs hold: DNS names and labels,
//! network interface names. Each returns a message for a `ConfigIssue`
//! that says what is wrong with the value, naming it.

/// Longest DNS name in text form (RFC 1035, without the final dot).
const MAX_NAME_LEN: usize = 253;
/// Longest label.
const MAX_LABEL_LEN: usize = 63;
/// Linux's IFNAMSIZ minus the terminating NUL.
const MAX_INTERFACE_LEN: usize = 15;

/// A host or domain name: dot-separated labels of letters, digits and
/// hyphens (RFC 952/1123), one trailing dot allowed.
pub fn dns_name(name: &str) -> Result<(), String> {
    let trimmed = name.strip_suffix('.').unwrap_or(name);
    if trimmed.is_empty() {
        return Err("empty: write a name like hub or coop.lan".to_string());
    }
    if trimmed.len() > MAX_NAME_LEN {
        return Err(format!(
            "`{name}` is {} characters, more than DNS allows ({MAX_NAME_LEN})",
            trimmed.len()
        ));
    }
    for label in trimmed.split('.') {
        dns_label(label).map_err(|m| format!("`{name}`: {m}"))?;
    }
    Ok(())
}

/// One label of a DNS name.
pub fn dns_label(label: &str) -> Result<(), String> {
    if label.is_empty() {
        return Err("empty label (two dots in a row?)".to_string());
    }
    if label.len() > MAX_LABEL_LEN {
        return Err(format!(
            "label `{label}` is longer than {MAX_LABEL_LEN} characters"
        ));
    }
    if !label
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return Err(format!(
            "label `{label}` may only hold letters, digits and hyphens"
        ));
    }
    if label.starts_with('-') || label.ends_with('-') {
        return Err(format!(
            "label `{label}` may not start or end with a hyphen"
        ));
    }
    Ok(())
}

/// A Linux network interface name: 1–15 visible ASCII characters, none of
/// `/`, `:` (aliases), `"` or `#` (which would break the files daemons read).
pub fn interface_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= MAX_INTERFACE_LEN
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_graphic() && !matches!(c, '/' | ':' | '"' | '#'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a network interface name (like eth0 or br-lan)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_rfc_1123() {
        for good in [
            "hub",
            "coop.lan",
            "coop.lan.",
            "a-1.b2",
            "x".repeat(63).as_str(),
        ] {
            dns_name(good).unwrap();
        }
        let long = format!("{}.lan", vec!["a".repeat(60); 5].join("."));
        for (bad, words) in [
            ("", "empty"),
            (".", "empty"),
            ("a..b", "empty label"),
            ("bad_name", "letters, digits"),
            ("-a.lan", "hyphen"),
            ("a-.lan", "hyphen"),
            ("sp ace", "letters, digits"),
            (&"x".repeat(64), "longer than 63"),
            (&long, "more than DNS allows"),
        ] {
            let err = dns_name(bad).unwrap_err();
            assert!(err.contains(words), "{bad}: {err}");
        }
    }

    #[test]
    fn interface_names_are_what_linux_allows() {
        for good in [
            "eth0",
            "br-lan",
            "eth0.100",
            "wg_coop",
            "x".repeat(15).as_str(),
        ] {
            interface_name(good).unwrap();
        }
        for bad in [
            "",
            ".",
            "..",
            "eth0/x",
            "eth0:1",
            "a b",
            "x\"y",
            "x".repeat(16).as_str(),
        ] {
            assert!(interface_name(bad).is_err(), "{bad}");
        }
    }
}

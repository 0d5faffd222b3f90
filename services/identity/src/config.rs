//! `/etc/ntari/services/identity.toml`: the cooperative's realm, where the
//! KDC and the directory listen, and the rules for passwords and tickets.
//!
//! Invariants checked here (serde checks the types, [`IdentityConfig::validate`]
//! the rest, each error naming its key): the realm is upper case, the base
//! DN is a plain `dc=…` chain, only AES enctypes are allowed, no two
//! listeners share a port, durations parse and are in range.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use ntari_node::service::ConfigIssue;
use ntari_node::validate::dns_name as check_dns_name;
use serde::{Deserialize, Serialize};

/// Enctypes a realm may use. DES, 3DES, RC4 and Camellia are refused: DES
/// and RC4 are broken, and every client NTARI supports speaks AES.
pub const AES_ENCTYPES: &[&str] = &[
    "aes256-cts-hmac-sha1-96",
    "aes128-cts-hmac-sha1-96",
    "aes256-cts-hmac-sha384-192",
    "aes128-cts-hmac-sha256-128",
];

/// Every key is optional; defaults per field.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct IdentityConfig {
    /// The cooperative's DNS domain (ntari-dns's `domain`). The realm and
    /// the base DN follow from it. Default `home.arpa`.
    pub domain: String,
    /// Kerberos realm. Default: `domain` in upper case (`coop.lan` →
    /// `COOP.LAN`). Fixed at first configure: a realm cannot be renamed.
    pub realm: Option<String>,
    /// Directory suffix. Default: one `dc=` per label of `domain`
    /// (`dc=coop,dc=lan`). Fixed at first configure, like the realm.
    pub base_dn: Option<String>,
    /// This hub's own name, in its certificate and its host principal.
    /// Default: the machine's host name under `domain`.
    pub hostname: Option<String>,
    pub ldap: Ldap,
    pub kdc: Kdc,
    pub password_policy: PasswordPolicy,
    pub tickets: Tickets,
    /// Enctypes of keys and tickets, strongest first; AES only. Default
    /// `aes256-cts-hmac-sha1-96`, `aes128-cts-hmac-sha1-96` (what every MIT,
    /// Heimdal and Windows client speaks).
    pub enctypes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Ldap {
    /// Addresses slapd listens on. Default `["0.0.0.0"]`.
    pub listen: Vec<IpAddr>,
    /// `ldap://` port; simple binds need StartTLS on it. Default 389.
    pub port: u16,
    /// `ldaps://` port, 0 = none. Default 636.
    pub ldaps_port: u16,
    /// The user slapd drops to after opening its ports. Default: `openldap`
    /// (Debian) or `ldap` (Alpine), whichever exists; `root` keeps root.
    pub user: Option<String>,
    /// slapd's file descriptor limit, so at most about this many clients
    /// at once. slapd sizes its connection table by it: at 20000 (a
    /// common system default) that table alone is ~12 MiB of its memory.
    /// Default 1024.
    pub max_open_files: u32,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Kdc {
    /// Addresses krb5kdc and kadmind listen on. Default `["0.0.0.0"]`.
    pub listen: Vec<IpAddr>,
    /// Kerberos (UDP and TCP). Default 88.
    pub port: u16,
    /// kadmind's admin protocol. Default 749.
    pub kadmin_port: u16,
    /// kadmind's password changing (`kpasswd`). Default 464.
    pub kpasswd_port: u16,
}

/// Applied as kadmin's policy `default`, which every new principal gets.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct PasswordPolicy {
    /// Shortest password. Default 12.
    pub min_length: u32,
    /// How many of the five classes (lower, upper, digits, punctuation,
    /// other) a password needs. Default 2.
    pub min_classes: u32,
    /// Earlier passwords a member may not reuse. Default 5.
    pub history: u32,
    /// Failed logins before the account locks; 0 = never. Default 5.
    pub max_failures: u32,
    /// Failures older than this are forgotten. Default `10m`.
    pub failure_interval: String,
    /// How long a locked account stays locked. Default `10m`.
    pub lockout: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Tickets {
    /// Longest ticket lifetime. Default `10h`.
    pub max_life: String,
    /// Longest renewal. Default `7d`.
    pub max_renewable_life: String,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        IdentityConfig {
            domain: "home.arpa".into(),
            realm: None,
            base_dn: None,
            hostname: None,
            ldap: Ldap::default(),
            kdc: Kdc::default(),
            password_policy: PasswordPolicy::default(),
            tickets: Tickets::default(),
            enctypes: vec![
                "aes256-cts-hmac-sha1-96".into(),
                "aes128-cts-hmac-sha1-96".into(),
            ],
        }
    }
}

impl Default for Ldap {
    fn default() -> Self {
        Ldap {
            listen: vec![IpAddr::from([0, 0, 0, 0])],
            port: 389,
            ldaps_port: 636,
            user: None,
            max_open_files: 1024,
        }
    }
}

impl Default for Kdc {
    fn default() -> Self {
        Kdc {
            listen: vec![IpAddr::from([0, 0, 0, 0])],
            port: 88,
            kadmin_port: 749,
            kpasswd_port: 464,
        }
    }
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        PasswordPolicy {
            min_length: 12,
            min_classes: 2,
            history: 5,
            max_failures: 5,
            failure_interval: "10m".into(),
            lockout: "10m".into(),
        }
    }
}

impl Default for Tickets {
    fn default() -> Self {
        Tickets {
            max_life: "10h".into(),
            max_renewable_life: "7d".into(),
        }
    }
}

impl IdentityConfig {
    /// The realm in force: `realm`, or `domain` in upper case.
    pub fn realm(&self) -> String {
        self.realm
            .clone()
            .unwrap_or_else(|| self.domain.trim_end_matches('.').to_ascii_uppercase())
    }

    /// The directory suffix in force: `base_dn`, or `dc=` per domain label.
    pub fn base_dn(&self) -> String {
        self.base_dn.clone().unwrap_or_else(|| {
            self.domain
                .trim_end_matches('.')
                .split('.')
                .map(|label| format!("dc={}", label.to_ascii_lowercase()))
                .collect::<Vec<_>>()
                .join(",")
        })
    }

    /// This hub's fully qualified name.
    pub fn hostname(&self) -> String {
        if let Some(name) = &self.hostname {
            return name.to_ascii_lowercase();
        }
        let short = nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_else(|| "hub".into());
        let short = short
            .split('.')
            .next()
            .unwrap_or("hub")
            .to_ascii_lowercase();
        format!("{short}.{}", self.domain.trim_end_matches('.'))
    }

    pub fn validate(&self) -> Result<(), ConfigIssue> {
        check_dns_name(&self.domain).map_err(|m| ConfigIssue::new("domain", m))?;
        if let Some(realm) = &self.realm {
            check_realm(realm).map_err(|m| ConfigIssue::new("realm", m))?;
        }
        if let Some(dn) = &self.base_dn {
            check_base_dn(dn).map_err(|m| ConfigIssue::new("base_dn", m))?;
        }
        if let Some(name) = &self.hostname {
            check_dns_name(name).map_err(|m| ConfigIssue::new("hostname", m))?;
        }
        if let Some(user) = &self.ldap.user {
            let is_name = !user.is_empty()
                && user
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c));
            if !is_name {
                return Err(ConfigIssue::new(
                    "ldap.user",
                    format!("{user:?} is not a user name"),
                ));
            }
            // Checked here, not when slapd starts: a reload with a user
            // this machine lacks must leave the running slapd alone.
            if user != "root" && !matches!(nix::unistd::User::from_name(user), Ok(Some(_))) {
                return Err(ConfigIssue::new(
                    "ldap.user",
                    format!("no user {user:?} on this machine (slapd drops to it after opening its ports)"),
                ));
            }
        }
        if !(64..=1_048_576).contains(&self.ldap.max_open_files) {
            return Err(ConfigIssue::new(
                "ldap.max_open_files",
                format!("{} is outside 64-1048576", self.ldap.max_open_files),
            ));
        }
        if self.ldap.listen.is_empty() {
            return Err(ConfigIssue::new(
                "ldap.listen",
                "empty: give at least one address (127.0.0.1 for this machine only)",
            ));
        }
        if self.kdc.listen.is_empty() {
            return Err(ConfigIssue::new(
                "kdc.listen",
                "empty: give at least one address (127.0.0.1 for this machine only)",
            ));
        }
        self.check_ports()?;
        self.check_policy()?;
        let max_life = parse_duration("tickets.max_life", &self.tickets.max_life)?;
        let renew = parse_duration(
            "tickets.max_renewable_life",
            &self.tickets.max_renewable_life,
        )?;
        if max_life < Duration::from_secs(5 * 60) {
            return Err(ConfigIssue::new(
                "tickets.max_life",
                "shorter than 5m: members would log in again every few minutes",
            ));
        }
        if renew < max_life {
            return Err(ConfigIssue::new(
                "tickets.max_renewable_life",
                format!(
                    "{} is shorter than tickets.max_life ({})",
                    self.tickets.max_renewable_life, self.tickets.max_life
                ),
            ));
        }
        if self.enctypes.is_empty() {
            return Err(ConfigIssue::new(
                "enctypes",
                "empty: give at least aes256-cts-hmac-sha1-96",
            ));
        }
        if !self.enctypes.iter().any(|e| e.contains("-hmac-sha1-96")) {
            return Err(ConfigIssue::new(
                "enctypes",
                "needs aes256-cts-hmac-sha1-96 or aes128-cts-hmac-sha1-96: the node's probe and most members' clients speak only those",
            ));
        }
        for (i, enctype) in self.enctypes.iter().enumerate() {
            if !AES_ENCTYPES.contains(&enctype.as_str()) {
                return Err(ConfigIssue::new(
                    format!("enctypes[{i}]"),
                    format!(
                        "{enctype:?} is not allowed: only AES enctypes ({})",
                        AES_ENCTYPES.join(", ")
                    ),
                ));
            }
        }
        Ok(())
    }

    fn check_ports(&self) -> Result<(), ConfigIssue> {
        let ports = [
            ("ldap.port", self.ldap.port),
            ("ldap.ldaps_port", self.ldap.ldaps_port),
            ("kdc.port", self.kdc.port),
            ("kdc.kadmin_port", self.kdc.kadmin_port),
            ("kdc.kpasswd_port", self.kdc.kpasswd_port),
        ];
        let mut seen: HashMap<u16, &str> = HashMap::new();
        for (key, port) in ports {
            if port == 0 {
                if key == "ldap.ldaps_port" {
                    continue;
                }
                return Err(ConfigIssue::new(key, "0 is not a port"));
            }
            if let Some(other) = seen.insert(port, key) {
                return Err(ConfigIssue::new(
                    key,
                    format!("port {port} is already {other}"),
                ));
            }
        }
        Ok(())
    }

    fn check_policy(&self) -> Result<(), ConfigIssue> {
        let p = &self.password_policy;
        if !(8..=256).contains(&p.min_length) {
            return Err(ConfigIssue::new(
                "password_policy.min_length",
                format!("{} is outside 8-256", p.min_length),
            ));
        }
        if !(1..=5).contains(&p.min_classes) {
            return Err(ConfigIssue::new(
                "password_policy.min_classes",
                format!("{} is outside 1-5", p.min_classes),
            ));
        }
        if p.history > 100 {
            return Err(ConfigIssue::new(
                "password_policy.history",
                format!("{} is over 100", p.history),
            ));
        }
        if p.max_failures > 1000 {
            return Err(ConfigIssue::new(
                "password_policy.max_failures",
                format!("{} is over 1000", p.max_failures),
            ));
        }
        parse_duration("password_policy.failure_interval", &p.failure_interval)?;
        parse_duration("password_policy.lockout", &p.lockout)?;
        Ok(())
    }
}

/// `10h`, `7d`, `90s` as humantime reads them; the error names the key.
pub fn parse_duration(key: &str, text: &str) -> Result<Duration, ConfigIssue> {
    let duration = humantime::parse_duration(text).map_err(|e| {
        ConfigIssue::new(
            key,
            format!("{text:?} is not a duration like 10h or 7d: {e}"),
        )
    })?;
    if duration > Duration::from_secs(10 * 365 * 86_400) {
        return Err(ConfigIssue::new(key, format!("{text} is over ten years")));
    }
    Ok(duration)
}

/// Whole seconds of a duration already validated (0 if it is not).
pub fn seconds(text: &str) -> u64 {
    humantime::parse_duration(text)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A realm name: upper-case letters, digits, dots and hyphens.
pub fn check_realm(realm: &str) -> Result<(), String> {
    if realm.is_empty() || realm.len() > 253 {
        return Err("a realm is 1-253 characters".into());
    }
    if !realm
        .chars()
        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '.' || c == '-')
    {
        return Err(format!(
            "{realm:?}: a realm is upper-case letters, digits, dots and hyphens, e.g. COOP.LAN"
        ));
    }
    if realm.starts_with('.') || realm.ends_with('.') || realm.contains("..") {
        return Err(format!("{realm:?}: empty label"));
    }
    Ok(())
}

fn check_base_dn(dn: &str) -> Result<(), String> {
    for part in dn.split(',') {
        let Some(value) = part.strip_prefix("dc=") else {
            return Err(format!(
                "{dn:?}: a base DN here is dc=… parts, e.g. dc=coop,dc=lan"
            ));
        };
        if value.is_empty() || !value.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(format!("{dn:?}: {part:?} is not a dc=<label> part"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> IdentityConfig {
        toml::from_str(text).expect("parses")
    }

    #[test]
    fn defaults_follow_the_domain() {
        let c = config("domain = \"coop.lan\"");
        assert_eq!(c.realm(), "COOP.LAN");
        assert_eq!(c.base_dn(), "dc=coop,dc=lan");
        assert!(c.hostname().ends_with(".coop.lan"));
        c.validate().expect("valid");
        assert_eq!(IdentityConfig::default().realm(), "HOME.ARPA");
    }

    #[test]
    fn the_example_is_valid() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../examples/identity.toml"
        ))
        .expect("examples/identity.toml");
        let c = config(&text);
        c.validate().expect("valid");
        assert_eq!(c.realm(), "COOP.LAN");
    }

    #[test]
    fn validation_names_the_key() {
        let cases = [
            ("realm = \"coop.lan\"", "realm"),
            ("base_dn = \"ou=x,dc=lan\"", "base_dn"),
            (
                "enctypes = [\"aes256-cts-hmac-sha1-96\", \"rc4-hmac\"]",
                "enctypes[1]",
            ),
            ("enctypes = []", "enctypes"),
            ("enctypes = [\"aes256-cts-hmac-sha384-192\"]", "enctypes"),
            ("[kdc]\nport = 389", "kdc.port"),
            ("[ldap]\nlisten = []", "ldap.listen"),
            (
                "[password_policy]\nmin_length = 4",
                "password_policy.min_length",
            ),
            (
                "[password_policy]\nmin_classes = 6",
                "password_policy.min_classes",
            ),
            (
                "[password_policy]\nlockout = \"soon\"",
                "password_policy.lockout",
            ),
            ("[tickets]\nmax_life = \"1m\"", "tickets.max_life"),
            (
                "[tickets]\nmax_renewable_life = \"1h\"",
                "tickets.max_renewable_life",
            ),
            ("domain = \"-bad\"", "domain"),
            ("[ldap]\nuser = \"a b\"", "ldap.user"),
            ("[ldap]\nmax_open_files = 10", "ldap.max_open_files"),
        ];
        for (text, key) in cases {
            let issue = config(text).validate().expect_err(text);
            assert_eq!(issue.key, key, "{text}: {issue}");
        }
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(toml::from_str::<IdentityConfig>("relam = \"X\"").is_err());
        assert!(toml::from_str::<IdentityConfig>("[kdc]\nprot = 88").is_err());
    }

    #[test]
    fn ldaps_can_be_off() {
        config("[ldap]\nldaps_port = 0").validate().expect("valid");
    }
}

//! TOML configuration: the node-wide `/etc/ntari/ntari.toml` and the
//! loader every service config goes through.
//!
//! Every error names the file, the line (and column when known) and the
//! dotted key, so an operator can go straight to the mistake:
//!
//! ```text
//! /etc/ntari/services/ntp.toml:7:12: upstream.servers[1]: invalid type: integer `3`, expected a string
//! /etc/ntari/ntari.toml:2: domain_id: 300 is out of range; ROS 2 domain ids are 0..=232
//! cannot read /etc/ntari/services/ntp.toml: No such file or directory (create it from examples/ntp.toml)
//! ```
//!
//! Syntax and type errors come from toml's own spans, tracked to a key path
//! by `serde_path_to_error`. Semantic errors ([`ConfigIssue`] from
//! [`Service::validate`]) carry only a dotted key; [`ConfigError::from_issue`]
//! finds that key's line in the text.

use std::ffi::OsStr;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::de::{self, DeserializeOwned, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess};
use serde::Deserialize;
use tracing::level_filters::LevelFilter;

use crate::service::{ConfigIssue, Service};

/// Where the node-wide config lives unless `--config`-style flags say otherwise.
pub const NODE_CONFIG_PATH: &str = "/etc/ntari/ntari.toml";
/// The cooperative name used when ntari.toml does not set one.
pub const DEFAULT_COOPERATIVE: &str = "unnamed-cooperative";
/// The node's Ed25519 key (DESIGN.md §4).
pub const DEFAULT_KEY_PATH: &str = "/etc/ntari/keys/node.ed25519";
pub const DEFAULT_LOG_LEVEL: &str = "info";
/// Highest ROS 2 domain id: Cyclone DDS derives ports from the id, and
/// above 232 they leave the valid UDP range with the default port mapping.
pub const MAX_DOMAIN_ID: u32 = 232;
/// The environment variable every ROS 2 tool reads the domain from.
pub const DOMAIN_ID_ENV: &str = "ROS_DOMAIN_ID";

/// An error in a config file (or in the environment that overrides it).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {}: {}{}", path.display(), io_reason(source), hint_suffix(hint))]
    Io {
        path: PathBuf,
        source: io::Error,
        /// What to do about it, e.g. `create it from examples/ntp.toml`.
        hint: Option<String>,
    },
    /// Not valid TOML, or not the shape the config type expects.
    #[error("{}", located(path, *line, *column, key, message))]
    Parse {
        path: PathBuf,
        /// 1-based; `None` when toml gives no position (a missing field of
        /// the top-level table).
        line: Option<usize>,
        /// 1-based, in characters.
        column: Option<usize>,
        /// Dotted key, e.g. `upstream.servers[1]`; empty for syntax errors
        /// that are not about one key.
        key: String,
        message: String,
    },
    /// Parses, but a value makes no sense (from [`ConfigIssue`]).
    #[error("{}", located(path, *line, None, key, message))]
    Invalid {
        path: PathBuf,
        /// 1-based line of the key (or of its nearest enclosing table when
        /// the key is absent from the file); `None` if neither is found.
        line: Option<usize>,
        key: String,
        message: String,
    },
    /// An environment variable that overrides the file is unusable.
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
}

impl ConfigError {
    /// A semantic error for `issue.key`, located in `text` (the contents of
    /// `path`). Best effort: an unknown or malformed key gives no line.
    pub fn from_issue(path: &Path, text: &str, issue: ConfigIssue) -> ConfigError {
        ConfigError::Invalid {
            path: path.to_path_buf(),
            line: locate_key(text, &issue.key).map(|(line, _)| line),
            key: issue.key,
            message: issue.message,
        }
    }

    /// Adds an operator hint to a [`ConfigError::Io`]; other kinds are
    /// returned unchanged (their message already says what is wrong).
    pub fn with_hint(self, new_hint: impl Into<String>) -> ConfigError {
        match self {
            ConfigError::Io { path, source, .. } => ConfigError::Io {
                path,
                source,
                hint: Some(new_hint.into()),
            },
            other => other,
        }
    }

    /// The file the error is about (`None` for environment errors).
    pub fn path(&self) -> Option<&Path> {
        match self {
            ConfigError::Io { path, .. }
            | ConfigError::Parse { path, .. }
            | ConfigError::Invalid { path, .. } => Some(path),
            ConfigError::Env { .. } => None,
        }
    }

    /// True when the file does not exist (callers may fall back to defaults).
    pub fn is_not_found(&self) -> bool {
        matches!(self, ConfigError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }
}

/// `No such file or directory`, without the ` (os error 2)` std appends:
/// operators need the reason, not the errno.
fn io_reason(err: &io::Error) -> String {
    let text = err.to_string();
    match (err.raw_os_error(), text.rfind(" (os error ")) {
        (Some(_), Some(at)) if text.ends_with(')') => text[..at].to_string(),
        _ => text,
    }
}

fn hint_suffix(hint: &Option<String>) -> String {
    hint.as_ref().map(|h| format!(" ({h})")).unwrap_or_default()
}

/// `<file>:<line>:<col>: <key>: <message>`, leaving out what is unknown.
fn located(
    path: &Path,
    line: Option<usize>,
    column: Option<usize>,
    key: &str,
    message: &str,
) -> String {
    let mut out = path.display().to_string();
    if let Some(line) = line {
        out.push_str(&format!(":{line}"));
        if let Some(column) = column {
            out.push_str(&format!(":{column}"));
        }
    }
    out.push_str(": ");
    if !key.is_empty() {
        out.push_str(key);
        out.push_str(": ");
    }
    out.push_str(message);
    out
}

/// Reads and parses `path` as `T`. A missing file is an [`ConfigError::Io`]
/// (see [`ConfigError::is_not_found`], [`ConfigError::with_hint`]).
pub fn load_toml<T: DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    parse_toml(&read_text(path)?, path)
}

/// Parses `text` as `T`; `origin` is the file name errors report.
pub fn parse_toml<T: DeserializeOwned>(text: &str, origin: &Path) -> Result<T, ConfigError> {
    let deserializer = toml::Deserializer::new(text);
    serde_path_to_error::deserialize(deserializer).map_err(|err| {
        let mut key = key_string(err.path());
        let inner = err.into_inner();
        // toml messages can span lines ("invalid table header\nexpected …");
        // keep each error on one log line.
        let message = inner.message().trim().replace('\n', "; ");
        let mut span = inner.span();
        // serde reports a missing field at its table; name the field itself.
        if let Some(field) = missing_field_name(&message) {
            if key.is_empty() {
                // The top-level table's span (0..0) means "somewhere in
                // the file", which is no position at all.
                span = None;
            }
            key = join_key(&key, field);
        }
        let position = span.and_then(|s| line_col(text, s.start));
        ConfigError::Parse {
            path: origin.to_path_buf(),
            line: position.map(|(line, _)| line),
            column: position.map(|(_, column)| column),
            key,
            message,
        }
    })
}

/// Reads, parses and validates one service's config.
pub fn load_service_config<S: Service>(service: &S, path: &Path) -> Result<S::Config, ConfigError> {
    let text = read_text(path).map_err(|err| {
        if err.is_not_found() {
            err.with_hint(format!(
                "create it from examples/{name}.toml in the source, or from /usr/share/doc/ntari-{name}/{name}.toml.example once installed",
                name = S::NAME
            ))
        } else {
            err
        }
    })?;
    parse_service_config(service, &text, path)
}

/// Parses and validates one service's config from `text` (read from `origin`).
pub fn parse_service_config<S: Service>(
    service: &S,
    text: &str,
    origin: &Path,
) -> Result<S::Config, ConfigError> {
    let config: S::Config = parse_toml(text, origin)?;
    service
        .validate(&config)
        .map_err(|issue| ConfigError::from_issue(origin, text, issue))?;
    Ok(config)
}

fn read_text(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        path: path.to_path_buf(),
        source,
        hint: None,
    })
}

fn key_string(path: &serde_path_to_error::Path) -> String {
    let key = path.to_string();
    // serde_path_to_error shows the top level as ".".
    if key == "." {
        String::new()
    } else {
        key
    }
}

fn join_key(parent: &str, field: &str) -> String {
    if parent.is_empty() {
        field.to_string()
    } else {
        format!("{parent}.{field}")
    }
}

/// The field of serde's "missing field `name`" message.
fn missing_field_name(message: &str) -> Option<&str> {
    message
        .strip_prefix("missing field `")?
        .split_once('`')
        .map(|(field, _)| field)
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
fn line_col(text: &str, offset: usize) -> Option<(usize, usize)> {
    let before = text.get(..offset)?;
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |at| at + 1);
    Some((line, before[line_start..].chars().count() + 1))
}

// ---------------------------------------------------------------------------
// Finding a dotted key's line.
//
// toml has no public span tree, but it attaches the span of the value being
// deserialized to any error raised there. So we walk the document with a
// visitor that follows the key path and fails on purpose where the key is
// (or where it should be, when absent), and read the span off that error.

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Key(String),
    Index(usize),
}

/// `upstream.servers[1]`, `peers[0].name`, `zones."example.org".ttl`.
fn parse_key_path(key: &str) -> Option<Vec<Segment>> {
    let mut segments = Vec::new();
    let mut chars = key.chars().peekable();
    // Whether a `.` or the start of the path came before: a key may follow.
    let mut expect_key = true;
    while let Some(&c) = chars.peek() {
        match c {
            '[' => {
                chars.next();
                let mut digits = String::new();
                for d in chars.by_ref() {
                    if d == ']' {
                        break;
                    }
                    digits.push(d);
                }
                segments.push(Segment::Index(digits.trim().parse().ok()?));
                expect_key = false;
            }
            '.' => {
                chars.next();
                if expect_key {
                    return None;
                }
                expect_key = true;
            }
            '"' if expect_key => {
                chars.next();
                let mut name = String::new();
                loop {
                    match chars.next()? {
                        '"' => break,
                        '\\' => name.push(chars.next()?),
                        other => name.push(other),
                    }
                }
                segments.push(Segment::Key(name));
                expect_key = false;
            }
            _ if expect_key => {
                let mut name = String::new();
                while let Some(&n) = chars.peek() {
                    if n == '.' || n == '[' {
                        break;
                    }
                    name.push(n);
                    chars.next();
                }
                segments.push(Segment::Key(name.trim().to_string()));
                expect_key = false;
            }
            _ => return None,
        }
    }
    if segments.is_empty() || expect_key {
        return None;
    }
    Some(segments)
}

/// Markers of the probe's deliberate errors, told apart from real ones.
const PROBE_FOUND: &str = "ntari config probe: found";
const PROBE_ABSENT: &str = "ntari config probe: absent at depth ";

/// Line and column of `key` in `text`, or of the nearest enclosing table
/// present in the file when `key` itself is absent (a defaulted field).
fn locate_key(text: &str, key: &str) -> Option<(usize, usize)> {
    let segments = parse_key_path(key)?;
    let probe = Probe {
        path: &segments,
        depth: 0,
    };
    let err = match probe.deserialize(toml::Deserializer::new(text)) {
        Ok(()) => return None,
        Err(err) => err,
    };
    let message = err.message();
    if message != PROBE_FOUND {
        // Absent at the top level: no table to point at.
        let depth: usize = message.strip_prefix(PROBE_ABSENT)?.parse().ok()?;
        if depth == 0 {
            return None;
        }
    }
    line_col(text, err.span()?.start)
}

struct Probe<'a> {
    path: &'a [Segment],
    depth: usize,
}

impl Probe<'_> {
    fn here<E: de::Error>(&self) -> Result<(), E> {
        if self.path.is_empty() {
            Err(E::custom(PROBE_FOUND))
        } else {
            Err(E::custom(format!("{PROBE_ABSENT}{}", self.depth)))
        }
    }
}

impl<'de> DeserializeSeed<'de> for Probe<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> de::Visitor<'de> for Probe<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any TOML value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Some((Segment::Key(wanted), rest)) = self.path.split_first() else {
            return self.here();
        };
        while let Some(key) = map.next_key::<String>()? {
            if &key == wanted {
                return map.next_value_seed(Probe {
                    path: rest,
                    depth: self.depth + 1,
                });
            }
            map.next_value::<IgnoredAny>()?;
        }
        self.here()
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Some((Segment::Index(wanted), rest)) = self.path.split_first() else {
            return self.here();
        };
        let mut index = 0;
        loop {
            if index == *wanted {
                let probe = Probe {
                    path: rest,
                    depth: self.depth + 1,
                };
                return match seq.next_element_seed(probe)? {
                    Some(()) => Ok(()),
                    None => self.here(),
                };
            }
            if seq.next_element::<IgnoredAny>()?.is_none() {
                return self.here();
            }
            index += 1;
        }
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.here()
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        self.here()
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        self.here()
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        self.here()
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        self.here()
    }
}

// ---------------------------------------------------------------------------
// /etc/ntari/ntari.toml

/// The node-wide settings shared by every service node on a host
/// (`/etc/ntari/ntari.toml`, DESIGN.md §4). Every field is optional, so a
/// fresh install starts without any file; see [`NodeConfig::notes`].
///
/// ```toml
/// cooperative = "riverside-commons"
/// domain_id = 0
/// key_path = "/etc/ntari/keys/node.ed25519"
/// log_level = "info"            # or "warn,ntari_node=debug"
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeConfig {
    /// Human-readable cooperative name (status, federation). Defaults to
    /// [`DEFAULT_COOPERATIVE`] so a volunteer's first start works; a note
    /// asks to set it, and federation should refuse the default.
    pub cooperative: String,
    /// ROS 2 domain, 0..=232. `ROS_DOMAIN_ID`, when set and not empty,
    /// takes precedence over the file, as it does for every ROS 2 tool, so
    /// `ros2` CLIs and nodes started from one shell agree.
    pub domain_id: u32,
    /// Ed25519 node key. A relative path is resolved against the
    /// directory of ntari.toml, so example configs run from any cwd.
    pub key_path: PathBuf,
    /// A tracing level (`trace`, `debug`, `info`, `warn`, `error`, `off`)
    /// or comma-separated `target=level` directives, optionally with one
    /// bare default level (`warn,ntari_node=debug`): the part of the
    /// `EnvFilter` syntax without span filters.
    pub log_level: String,
    /// Where DDS traffic goes, for `ntari-admin domain render`
    /// (/etc/ntari/cyclonedds.xml): interface names or addresses to use.
    /// Empty: Cyclone DDS chooses.
    pub dds_interfaces: Vec<String>,
    /// Unicast discovery peers (addresses). When set, multicast is off and
    /// participants find each other through these (and this host's own
    /// participant index range). Empty: multicast discovery.
    pub dds_peers: Vec<std::net::IpAddr>,
    /// What the operator should be told about how this config came to be
    /// (defaults used, env override). Logged by the caller once logging is
    /// set up, which needs `log_level` from here first. Not compared by `==`.
    #[serde(skip)]
    pub notes: Vec<String>,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            cooperative: DEFAULT_COOPERATIVE.to_string(),
            domain_id: 0,
            key_path: PathBuf::from(DEFAULT_KEY_PATH),
            log_level: DEFAULT_LOG_LEVEL.to_string(),
            dds_interfaces: Vec::new(),
            dds_peers: Vec::new(),
            notes: Vec::new(),
        }
    }
}

/// Notes describe provenance, not configuration: two configs with the same
/// settings are equal (a reload that changes nothing restarts nothing).
impl PartialEq for NodeConfig {
    fn eq(&self, other: &Self) -> bool {
        self.cooperative == other.cooperative
            && self.domain_id == other.domain_id
            && self.key_path == other.key_path
            && self.log_level == other.log_level
            && self.dds_interfaces == other.dds_interfaces
            && self.dds_peers == other.dds_peers
    }
}

impl Eq for NodeConfig {}

impl NodeConfig {
    /// Loads `path`, validates it and applies `ROS_DOMAIN_ID` from the
    /// process environment. A missing file is an error only if `required`;
    /// otherwise the defaults are returned with a note saying so.
    pub fn load(path: &Path, required: bool) -> Result<NodeConfig, ConfigError> {
        let env = std::env::var_os(DOMAIN_ID_ENV);
        Self::load_with_env(path, required, env.as_deref())
    }

    /// [`NodeConfig::load`] with the value of `ROS_DOMAIN_ID` passed in,
    /// so tests need not touch the process environment.
    pub fn load_with_env(
        path: &Path,
        required: bool,
        ros_domain_id: Option<&OsStr>,
    ) -> Result<NodeConfig, ConfigError> {
        let mut config = match read_text(path) {
            Ok(text) => Self::parse(&text, path)?,
            Err(err) if err.is_not_found() && !required => {
                let mut config = NodeConfig::default();
                config.notes.push(format!(
                    "{} not found; using built-in defaults",
                    path.display()
                ));
                config
            }
            Err(err) if err.is_not_found() => {
                return Err(err.with_hint("create it with at least `cooperative = \"<name>\"`"))
            }
            Err(err) => return Err(err),
        };
        if config.cooperative == DEFAULT_COOPERATIVE {
            config.notes.push(format!(
                "cooperative is not set in {}; using \"{DEFAULT_COOPERATIVE}\" \
                 (set `cooperative = \"<name>\"` before federating)",
                path.display()
            ));
        }
        let domain_id = domain_id_with_env(config.domain_id, ros_domain_id)?;
        if domain_id != config.domain_id {
            config.notes.push(format!(
                "{DOMAIN_ID_ENV}={domain_id} overrides domain_id = {} from {}",
                config.domain_id,
                path.display()
            ));
            config.domain_id = domain_id;
        }
        Ok(config)
    }

    /// Parses and validates ntari.toml `text` read from `origin` (no
    /// environment override). Resolves a relative `key_path` against the
    /// directory of `origin`.
    pub fn parse(text: &str, origin: &Path) -> Result<NodeConfig, ConfigError> {
        let mut config: NodeConfig = parse_toml(text, origin)?;
        config
            .validate()
            .map_err(|issue| ConfigError::from_issue(origin, text, issue))?;
        if config.key_path.is_relative() {
            if let Some(dir) = origin.parent() {
                config.key_path = dir.join(&config.key_path);
            }
        }
        Ok(config)
    }

    /// Checks what the types do not: the domain range, the log filter, a
    /// usable cooperative name.
    pub fn validate(&self) -> Result<(), ConfigIssue> {
        let name = self.cooperative.trim();
        if name.is_empty() {
            return Err(ConfigIssue::new("cooperative", "must not be empty"));
        }
        if name.chars().any(char::is_control) {
            return Err(ConfigIssue::new(
                "cooperative",
                "must not contain control characters",
            ));
        }
        check_domain_id(self.domain_id).map_err(|m| ConfigIssue::new("domain_id", m))?;
        if self.key_path.as_os_str().is_empty() {
            return Err(ConfigIssue::new("key_path", "must not be empty"));
        }
        validate_log_level(&self.log_level).map_err(|m| ConfigIssue::new("log_level", m))?;
        for (i, entry) in self.dds_interfaces.iter().enumerate() {
            if entry.parse::<std::net::IpAddr>().is_err() {
                crate::validate::interface_name(entry).map_err(|m| {
                    ConfigIssue::new(
                        format!("dds_interfaces[{i}]"),
                        format!("{m}, nor an address"),
                    )
                })?;
            }
        }
        Ok(())
    }
}

fn check_domain_id(id: u32) -> Result<(), String> {
    if id > MAX_DOMAIN_ID {
        Err(format!(
            "{id} is out of range; ROS 2 domain ids are 0..={MAX_DOMAIN_ID}"
        ))
    } else {
        Ok(())
    }
}

/// The domain id to use: `env` (the value of `ROS_DOMAIN_ID`) when set and
/// not empty, else `from_file`. Empty counts as unset, as in rcutils.
pub fn domain_id_with_env(from_file: u32, env: Option<&OsStr>) -> Result<u32, ConfigError> {
    let env_error = |message: String| ConfigError::Env {
        var: DOMAIN_ID_ENV.to_string(),
        message,
    };
    let Some(raw) = env else {
        return Ok(from_file);
    };
    let value = raw
        .to_str()
        .ok_or_else(|| env_error("is not valid UTF-8".to_string()))?
        .trim();
    if value.is_empty() {
        return Ok(from_file);
    }
    let id: u32 = value.parse().map_err(|_| {
        env_error(format!(
            "{value:?} is not a domain id (0..={MAX_DOMAIN_ID})"
        ))
    })?;
    check_domain_id(id).map_err(env_error)?;
    Ok(id)
}

/// Accepts what [`NodeConfig::log_level`] documents. Stricter than
/// `EnvFilter` on purpose: a bare word that is not a level (`inf`) would be
/// a target filter there and silently hide all other logs.
pub fn validate_log_level(filter: &str) -> Result<(), String> {
    const LEVELS: &str = "trace, debug, info, warn, error or off";
    let directives: Vec<&str> = filter
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .collect();
    if directives.is_empty() {
        return Err(format!("is empty; use one of {LEVELS}"));
    }
    for directive in directives {
        if directive.contains(['[', '{']) {
            return Err(format!(
                "`{directive}`: span filters are not supported; use `target=level`"
            ));
        }
        let level = match directive.split_once('=') {
            Some((target, level)) => {
                let target = target.trim();
                let valid_target = !target.is_empty()
                    && target
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | ':' | '-'));
                if !valid_target {
                    return Err(format!(
                        "`{directive}`: `{target}` is not a target (a module path like ntari_node::graph)"
                    ));
                }
                level.trim()
            }
            None => directive,
        };
        // LevelFilter also accepts "" (as error); a missing level is a typo.
        if level.is_empty() || LevelFilter::from_str(level).is_err() {
            return Err(format!(
                "`{directive}`: `{level}` is not a log level; use {LEVELS}, or target=level"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Serialize};
    use std::ffi::OsString;

    #[derive(Debug, Deserialize, Serialize, Clone, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Svc {
        name: String,
        #[serde(default)]
        upstream: Option<Upstream>,
        #[serde(default)]
        peers: Vec<Peer>,
    }

    #[derive(Debug, Deserialize, Serialize, Clone, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Upstream {
        servers: Vec<String>,
        port: u16,
    }

    #[derive(Debug, Deserialize, Serialize, Clone, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Peer {
        name: String,
    }

    const FILE: &str = "/etc/ntari/services/test.toml";

    fn parse_err(text: &str) -> String {
        parse_toml::<Svc>(text, Path::new(FILE))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn valid_service_config_parses() {
        let svc: Svc = parse_toml(
            "name = \"a\"\n[upstream]\nservers = [\"x\"]\nport = 123\n",
            Path::new(FILE),
        )
        .unwrap();
        assert_eq!(svc.upstream.unwrap().port, 123);
    }

    #[test]
    fn unknown_field_names_file_line_and_key() {
        assert_eq!(
            parse_err("name = \"a\"\nbogus = 1\n"),
            format!("{FILE}:2:1: bogus: unknown field `bogus`, expected one of `name`, `upstream`, `peers`")
        );
    }

    #[test]
    fn wrong_type_names_the_value_position() {
        assert_eq!(
            parse_err("\nname = 5\n"),
            format!("{FILE}:2:8: name: invalid type: integer `5`, expected a string")
        );
    }

    #[test]
    fn nested_table_key() {
        let text = "name = \"a\"\n[upstream]\nservers = [\"a\"]\nport = 99999\n";
        assert_eq!(
            parse_err(text),
            format!("{FILE}:4:8: upstream.port: invalid value: integer `99999`, expected u16")
        );
        let text = "name = \"a\"\n[upstream]\nservers = []\nport = 1\nextra = 2\n";
        assert_eq!(
            parse_err(text),
            format!(
                "{FILE}:5:1: upstream.extra: unknown field `extra`, expected `servers` or `port`"
            )
        );
    }

    #[test]
    fn array_element_key() {
        let text = "name = \"a\"\n[upstream]\nport = 1\nservers = [\n  \"a\",\n  3,\n]\n";
        assert_eq!(
            parse_err(text),
            format!(
                "{FILE}:6:3: upstream.servers[1]: invalid type: integer `3`, expected a string"
            )
        );
        let text = "name = \"a\"\n[[peers]]\nname = \"x\"\n[[peers]]\nnam = \"y\"\n";
        assert_eq!(
            parse_err(text),
            format!("{FILE}:5:1: peers[1].nam: unknown field `nam`, expected `name`")
        );
    }

    #[test]
    fn missing_field_names_the_field_and_its_table() {
        let text = "name = \"a\"\n\n[upstream]\nservers = []\n";
        assert_eq!(
            parse_err(text),
            format!("{FILE}:3:1: upstream.port: missing field `port`")
        );
        // A field missing from the top level has no meaningful position.
        assert_eq!(
            parse_err("peers = []\n"),
            format!("{FILE}: name: missing field `name`")
        );
        let err = parse_toml::<Svc>("", Path::new(FILE)).unwrap_err();
        assert!(
            matches!(&err, ConfigError::Parse { line: None, column: None, key, .. } if key == "name"),
            "{err:?}"
        );
    }

    #[test]
    fn invalid_syntax_has_position_but_no_key() {
        assert_eq!(
            parse_err("name = \"a\"\n[upstream\n"),
            format!("{FILE}:2:10: invalid table header; expected `.`, `]`")
        );
        let err = parse_err("name = \"a\"\nname = \"b\"\n");
        assert!(
            err.starts_with(&format!("{FILE}:2:1: duplicate key `name`")),
            "{err}"
        );
    }

    #[test]
    fn missing_file_is_an_io_error_with_hint() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ntp.toml");
        let err = load_toml::<Svc>(&path).unwrap_err();
        assert!(err.is_not_found());
        assert_eq!(
            err.to_string(),
            format!("cannot read {}: No such file or directory", path.display())
        );
        assert_eq!(
            err.with_hint("create it from examples/ntp.toml")
                .to_string(),
            format!(
                "cannot read {}: No such file or directory (create it from examples/ntp.toml)",
                path.display()
            )
        );
    }

    #[test]
    fn load_toml_reads_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("svc.toml");
        std::fs::write(&path, "name = \"a\"\nbogus = 1\n").unwrap();
        let err = load_toml::<Svc>(&path).unwrap_err();
        assert!(
            matches!(&err, ConfigError::Parse { path: p, line: Some(2), column: Some(1), key, .. }
                if p == &path && key == "bogus"),
            "{err:?}"
        );
    }

    #[test]
    fn key_paths_parse() {
        use Segment::{Index, Key};
        assert_eq!(
            parse_key_path("upstream.servers[1]"),
            Some(vec![
                Key("upstream".into()),
                Key("servers".into()),
                Index(1)
            ])
        );
        assert_eq!(
            parse_key_path("peers[0].name"),
            Some(vec![Key("peers".into()), Index(0), Key("name".into())])
        );
        assert_eq!(
            parse_key_path("zones.\"example.org\".ttl"),
            Some(vec![
                Key("zones".into()),
                Key("example.org".into()),
                Key("ttl".into())
            ])
        );
        assert_eq!(parse_key_path(""), None);
        assert_eq!(parse_key_path("a..b"), None);
        assert_eq!(parse_key_path("a."), None);
        assert_eq!(parse_key_path("a[x]"), None);
    }

    const DOC: &str = "\
name = \"a\"
when = 1979-05-27T07:32:00Z

[upstream]
port = 1
servers = [
  \"a\",
  \"b\",
]

[[peers]]
name = \"x\"

[[peers]]
name = \"y\"
inline = { deep = 1 }

[a.b.c]
z = 1
";

    fn line_of(key: &str) -> Option<usize> {
        locate_key(DOC, key).map(|(line, _)| line)
    }

    #[test]
    fn locates_keys_in_tables_arrays_and_arrays_of_tables() {
        assert_eq!(line_of("name"), Some(1));
        assert_eq!(line_of("when"), Some(2));
        assert_eq!(line_of("upstream"), Some(4));
        assert_eq!(line_of("upstream.port"), Some(5));
        assert_eq!(line_of("upstream.servers"), Some(6));
        assert_eq!(line_of("upstream.servers[1]"), Some(8));
        assert_eq!(line_of("peers[0]"), Some(11));
        assert_eq!(line_of("peers[1].name"), Some(15));
        assert_eq!(line_of("peers[1].inline.deep"), Some(16));
        assert_eq!(line_of("a.b.c.z"), Some(19));
    }

    #[test]
    fn absent_keys_point_at_the_enclosing_table_or_nowhere() {
        // A defaulted field: its table is where it would go.
        assert_eq!(line_of("upstream.timeout"), Some(4));
        assert_eq!(line_of("upstream.servers[7]"), Some(6));
        assert_eq!(line_of("peers[1].missing"), Some(14));
        // Absent at the top level, or not a key path: no line.
        assert_eq!(line_of("missing"), None);
        assert_eq!(line_of(""), None);
        assert_eq!(line_of("a..b"), None);
        assert_eq!(locate_key("not = = toml", "not"), None);
    }

    #[test]
    fn from_issue_names_file_line_and_key() {
        let issue = ConfigIssue::new("upstream.servers[1]", "\"b\" is not an address");
        let err = ConfigError::from_issue(Path::new(FILE), DOC, issue);
        assert_eq!(
            err.to_string(),
            format!("{FILE}:8: upstream.servers[1]: \"b\" is not an address")
        );
        let issue = ConfigIssue::new("nowhere", "bad");
        let err = ConfigError::from_issue(Path::new(FILE), DOC, issue);
        assert_eq!(err.to_string(), format!("{FILE}: nowhere: bad"));
    }

    struct TestService;

    impl Service for TestService {
        type Config = Svc;
        const NAME: &'static str = "test";
        const DAEMON: &'static str = "true";
        const METRICS_PORT: u16 = 9799;

        fn validate(&self, config: &Svc) -> Result<(), ConfigIssue> {
            match &config.upstream {
                Some(up) if up.port == 0 => Err(ConfigIssue::new("upstream.port", "must not be 0")),
                _ => Ok(()),
            }
        }

        fn render(&self, _: &Svc, _: &crate::service::Paths) -> Vec<crate::service::RenderedFile> {
            Vec::new()
        }

        fn check_command(
            &self,
            _: &Svc,
            _: &crate::service::Paths,
        ) -> Option<crate::service::Command> {
            None
        }

        fn daemons(&self, _: &Svc, _: &crate::service::Paths) -> Vec<crate::service::DaemonSpec> {
            Vec::new()
        }

        fn metrics(&self) -> &'static [crate::service::MetricDesc] {
            &[]
        }

        async fn probe(
            &self,
            _: &Svc,
            _: &crate::service::Paths,
        ) -> Result<crate::service::ProbeReport, String> {
            Ok(Default::default())
        }
    }

    #[test]
    fn service_config_is_parsed_then_validated() {
        let text = "name = \"a\"\n[upstream]\nservers = []\nport = 0\n";
        let err = parse_service_config(&TestService, text, Path::new(FILE)).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("{FILE}:4: upstream.port: must not be 0")
        );

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("test.toml");
        let err = load_service_config(&TestService, &path).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "cannot read {}: No such file or directory (create it from examples/test.toml in the source, or from /usr/share/doc/ntari-test/test.toml.example once installed)",
                path.display()
            )
        );
        std::fs::write(&path, "name = \"ok\"\n").unwrap();
        let svc = load_service_config(&TestService, &path).unwrap();
        assert_eq!(svc.name, "ok");
    }

    // ---- ntari.toml

    fn node_file(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ntari.toml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn absent_ntari_toml_gives_defaults_unless_required() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ntari.toml");
        let config = NodeConfig::load_with_env(&path, false, None).unwrap();
        assert_eq!(config, NodeConfig::default());
        assert_eq!(config.cooperative, "unnamed-cooperative");
        assert_eq!(config.domain_id, 0);
        assert_eq!(config.key_path, Path::new("/etc/ntari/keys/node.ed25519"));
        assert_eq!(config.log_level, "info");
        assert_eq!(config.notes.len(), 2, "{:?}", config.notes);
        assert!(config.notes[0].contains("not found; using built-in defaults"));
        assert!(config.notes[1].contains("cooperative is not set"));

        let err = NodeConfig::load_with_env(&path, true, None).unwrap_err();
        assert!(err.is_not_found());
        assert!(err.to_string().ends_with(
            "No such file or directory (create it with at least `cooperative = \"<name>\"`)"
        ));
    }

    #[test]
    fn full_ntari_toml_loads() {
        let (dir, path) = node_file(
            "cooperative = \"riverside\"\ndomain_id = 42\nkey_path = \"keys/node.ed25519\"\nlog_level = \"warn,ntari_node::graph=debug\"\n",
        );
        let config = NodeConfig::load_with_env(&path, true, None).unwrap();
        assert_eq!(config.cooperative, "riverside");
        assert_eq!(config.domain_id, 42);
        // Relative key paths are relative to the config file.
        assert_eq!(config.key_path, dir.path().join("keys/node.ed25519"));
        assert_eq!(config.log_level, "warn,ntari_node::graph=debug");
        assert!(config.notes.is_empty(), "{:?}", config.notes);
    }

    #[test]
    fn domain_id_out_of_range_names_the_key() {
        let (_dir, path) = node_file("cooperative = \"c\"\ndomain_id = 300\n");
        let err = NodeConfig::load_with_env(&path, true, None).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "{}:2: domain_id: 300 is out of range; ROS 2 domain ids are 0..=232",
                path.display()
            )
        );
        let (_dir, path) = node_file("domain_id = -1\n");
        let err = NodeConfig::load_with_env(&path, true, None).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "{}:1:13: domain_id: invalid value: integer `-1`, expected u32",
                path.display()
            )
        );
    }

    #[test]
    fn bad_log_level_names_the_key() {
        let (_dir, path) = node_file("cooperative = \"c\"\n\nlog_level = \"inf\"\n");
        let err = NodeConfig::load_with_env(&path, true, None).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "{}:3: log_level: `inf`: `inf` is not a log level; use trace, debug, info, warn, error or off, or target=level",
                path.display()
            )
        );
    }

    #[test]
    fn unknown_field_in_ntari_toml() {
        let (_dir, path) = node_file("cooperative = \"c\"\ndomain = 3\n");
        let err = NodeConfig::load_with_env(&path, true, None).unwrap_err();
        assert!(
            err.to_string().starts_with(&format!(
                "{}:2:1: domain: unknown field `domain`, expected one of",
                path.display()
            )),
            "{err}"
        );
    }

    #[test]
    fn log_level_syntax() {
        for ok in [
            "info",
            "WARN",
            "off",
            "3",
            "warn,ntari_node=debug",
            "a::b=trace, info",
        ] {
            assert_eq!(validate_log_level(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            " , ",
            "inf",
            "ntari_node",
            "=debug",
            "x=",
            "x=loud",
            "[span]=info",
        ] {
            assert!(validate_log_level(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cooperative_must_be_a_usable_name() {
        let (_dir, path) = node_file("cooperative = \"  \"\n");
        let err = NodeConfig::load_with_env(&path, true, None).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("{}:1: cooperative: must not be empty", path.display())
        );
    }

    #[test]
    fn ros_domain_id_env_takes_precedence_over_the_file() {
        assert_eq!(domain_id_with_env(3, None).unwrap(), 3);
        assert_eq!(domain_id_with_env(3, Some(OsStr::new(""))).unwrap(), 3);
        assert_eq!(domain_id_with_env(3, Some(OsStr::new(" 7 "))).unwrap(), 7);
        assert_eq!(domain_id_with_env(3, Some(OsStr::new("0"))).unwrap(), 0);
        assert_eq!(
            domain_id_with_env(3, Some(OsStr::new("233")))
                .unwrap_err()
                .to_string(),
            "environment variable ROS_DOMAIN_ID: 233 is out of range; ROS 2 domain ids are 0..=232"
        );
        assert_eq!(
            domain_id_with_env(3, Some(OsStr::new("abc")))
                .unwrap_err()
                .to_string(),
            "environment variable ROS_DOMAIN_ID: \"abc\" is not a domain id (0..=232)"
        );
        {
            use std::os::unix::ffi::OsStringExt;
            let not_utf8 = OsString::from_vec(vec![0xff]);
            assert!(domain_id_with_env(3, Some(&not_utf8)).is_err());
        }

        let (_dir, path) = node_file("cooperative = \"c\"\ndomain_id = 3\n");
        let config = NodeConfig::load_with_env(&path, true, Some(OsStr::new("9"))).unwrap();
        assert_eq!(config.domain_id, 9);
        assert_eq!(config.notes.len(), 1);
        assert!(config.notes[0].starts_with("ROS_DOMAIN_ID=9 overrides domain_id = 3"));
        // Same settings, different provenance: still equal.
        let mut plain = config.clone();
        plain.notes.clear();
        assert_eq!(config, plain);
    }
}

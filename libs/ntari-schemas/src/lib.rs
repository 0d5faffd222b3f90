//! The JSON documents NTARI services exchange on the graph.
//!
//! Project-specific data travels as `std_msgs/msg/String` carrying JSON
//! (DESIGN.md §2), so a plain `ros2 topic echo` shows it without a custom
//! message package. Each document is defined here, once, and used by both
//! its publisher and its subscribers; docs/schemas.md describes them for
//! people.
//!
//! Compatibility rule: every document carries `version`. Adding an optional
//! field keeps the version (readers ignore fields they do not know);
//! anything else bumps it, and a reader refuses versions it does not know.

pub mod federation;
pub mod leases;
pub mod peers;
pub mod wireguard_peers;

/// A document that does not match its schema, with where it went wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct SchemaError {
    /// JSON path of the offending value (`leases[2].ip`), or `.` for the
    /// whole document.
    pub path: String,
    pub message: String,
}

impl SchemaError {
    fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        SchemaError {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// Parses `json` as `T`, naming the path of the first bad value.
fn parse<T: serde::de::DeserializeOwned>(json: &str) -> Result<T, SchemaError> {
    let mut deserializer = serde_json::Deserializer::from_str(json);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        // serde_path_to_error says `?` when it never got inside the document.
        let path = match e.path().to_string() {
            p if p == "?" => ".".to_string(),
            p => p,
        };
        let inner = e.into_inner();
        // serde_json appends " at line L column C"; for a one-line sample
        // the path says more.
        let text = inner.to_string();
        let message = match text.rfind(" at line ") {
            Some(i) => text[..i].to_string(),
            None => text,
        };
        SchemaError::new(path, message)
    })
}

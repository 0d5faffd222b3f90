//! Kea's control channel: JSON commands over its unix socket.
//!
//! One command per connection: write `{"command": …, "arguments": …}`,
//! read the answer until Kea closes the connection. The answer is
//! `{"result": 0|1|2|3, "text": …, "arguments": …}`: 0 success, 1 error,
//! 2 unsupported command, 3 success with nothing to show (no leases).

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

/// The largest answer read (lease4-get-all of a big network is megabytes).
const MAX_ANSWER: u64 = 64 * 1024 * 1024;

/// A command's successful answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// 0 or 3 (3: "empty", e.g. no leases).
    pub result: i64,
    pub text: String,
    pub arguments: Value,
}

/// Sends `command` (with `arguments`, if any) and returns the answer; a
/// non-success result is an error carrying Kea's text.
pub async fn command(
    socket: &Path,
    command: &str,
    arguments: Option<Value>,
    timeout: Duration,
) -> Result<Answer, String> {
    let exchange = async {
        let mut stream = UnixStream::connect(socket).await.map_err(|e| {
            format!(
                "cannot connect to Kea's control socket {}: {e}",
                socket.display()
            )
        })?;
        let mut request = json!({ "command": command });
        if let Some(arguments) = arguments {
            request["arguments"] = arguments;
        }
        stream
            .write_all(request.to_string().as_bytes())
            .await
            .map_err(|e| format!("cannot send `{command}` to Kea: {e}"))?;
        let mut buffer = Vec::new();
        (&mut stream)
            .take(MAX_ANSWER)
            .read_to_end(&mut buffer)
            .await
            .map_err(|e| format!("no answer from Kea to `{command}`: {e}"))?;
        Ok::<_, String>(buffer)
    };
    let buffer = tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| {
            format!(
                "Kea did not answer `{command}` within {} s",
                timeout.as_secs()
            )
        })??;
    parse_answer(command, &buffer)
}

/// Reads Kea's answer to `command`.
pub fn parse_answer(command: &str, bytes: &[u8]) -> Result<Answer, String> {
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| format!("Kea's answer to `{command}` is not JSON: {e}"))?;
    // Through kea-ctrl-agent answers come as a one-element list; directly,
    // as the object.
    let value = match value {
        Value::Array(mut list) if list.len() == 1 => list.remove(0),
        other => other,
    };
    let result = value["result"]
        .as_i64()
        .ok_or_else(|| format!("Kea's answer to `{command}` has no result"))?;
    let text = value["text"].as_str().unwrap_or_default().to_string();
    match result {
        0 | 3 => Ok(Answer {
            result,
            text,
            arguments: value["arguments"].clone(),
        }),
        2 => Err(format!("Kea does not support `{command}`: {text}")),
        _ => Err(format!("Kea refused `{command}`: {text}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read_and_refusals_are_errors() {
        let ok = parse_answer("status-get", br#"{"result": 0, "arguments": {"pid": 7}}"#).unwrap();
        assert_eq!(ok.arguments["pid"], 7);
        let empty = parse_answer(
            "lease4-get-all",
            br#"{"result": 3, "text": "0 IPv4 lease(s) found."}"#,
        )
        .unwrap();
        assert_eq!(empty.result, 3);
        let agent =
            parse_answer("status-get", br#"[{"result": 0, "arguments": {"pid": 8}}]"#).unwrap();
        assert_eq!(agent.arguments["pid"], 8);
        let err = parse_answer("config-test", br#"{"result": 1, "text": "bad pool"}"#).unwrap_err();
        assert_eq!(err, "Kea refused `config-test`: bad pool");
        let err = parse_answer(
            "x",
            br#"{"result": 2, "text": "'x' command not supported."}"#,
        )
        .unwrap_err();
        assert!(err.contains("does not support"), "{err}");
        assert!(parse_answer("x", b"{").unwrap_err().contains("not JSON"));
        assert!(parse_answer("x", b"{}").unwrap_err().contains("no result"));
    }

    #[tokio::test]
    async fn a_missing_socket_is_a_clear_error() {
        let err = command(
            Path::new("/nonexistent/kea.sock"),
            "status-get",
            None,
            Duration::from_secs(1),
        )
        .await
        .unwrap_err();
        assert!(err.contains("/nonexistent/kea.sock"), "{err}");
    }
}

//! `~/get_type_description`: the description of any type the node's
//! endpoints use, as rcl's type description service serves it, so tools
//! can decode a topic whose message package they do not have installed.
//!
//! Like rcl, the type is looked up by its `RIHS01_…` hash alone (the
//! request's `type_name` is not checked), a malformed hash answers "Failed
//! to parse type hash" and an unknown one "Type not currently in use by this
//! node". One difference: the `.msg` sources (`type_sources`) are not
//! carried in the binary, so that list is always empty.

use super::{GraphError, Node, ServiceServer, TypeCache};
use crate::msg::type_description_interfaces::{
    GetTypeDescription, GetTypeDescriptionRequest, GetTypeDescriptionResponse,
};

/// Serves `~/get_type_description` for one node.
pub struct TypeDescriptionServer {
    server: ServiceServer<GetTypeDescription>,
    cache: TypeCache,
}

impl TypeDescriptionServer {
    pub fn new(node: &Node) -> Result<Self, GraphError> {
        Ok(TypeDescriptionServer {
            server: node.create_service("~/get_type_description")?,
            cache: node.type_cache(),
        })
    }

    /// Answers requests until the task is dropped. Spawn it beside the
    /// node's own event loop: it needs nothing from it.
    pub async fn serve(self) {
        loop {
            let request = self.server.next().await;
            let response = self.answer(&request.body);
            if let Err(e) = self.server.respond(&request, &response).await {
                tracing::warn!(error = %e, "could not answer get_type_description");
            }
        }
    }

    fn answer(&self, request: &GetTypeDescriptionRequest) -> GetTypeDescriptionResponse {
        let failure = |reason: &str| GetTypeDescriptionResponse {
            failure_reason: reason.to_string(),
            ..GetTypeDescriptionResponse::default()
        };
        if !is_rihs01(&request.type_hash) {
            return failure("Failed to parse type hash");
        }
        match self.cache.lookup(&request.type_hash) {
            Some(description) => GetTypeDescriptionResponse {
                successful: true,
                type_description: (&description).into(),
                ..GetTypeDescriptionResponse::default()
            },
            None => failure("Type not currently in use by this node"),
        }
    }
}

/// `RIHS01_` and 64 hex digits, as `rosidl_parse_type_hash_string` wants.
fn is_rihs01(text: &str) -> bool {
    text.strip_prefix("RIHS01_")
        .is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_strings() {
        let good = format!("RIHS01_{}", "ab".repeat(32));
        assert!(is_rihs01(&good));
        assert!(!is_rihs01(&good[..good.len() - 1]));
        assert!(!is_rihs01(&good.replace("RIHS01", "RIHS02")));
        assert!(!is_rihs01(&format!("RIHS01_{}", "zz".repeat(32))));
        assert!(!is_rihs01(""));
    }
}

//! ROS names and how rmw_cyclonedds maps them onto DDS names.

use crate::graph::GraphError;

/// Checks one name token: `[A-Za-z_][A-Za-z0-9_]*`, as rcl requires.
fn valid_token(token: &str) -> bool {
    let mut chars = token.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Validates a node name (a single token, no slashes).
pub fn validate_node_name(name: &str) -> Result<(), GraphError> {
    if valid_token(name) {
        Ok(())
    } else {
        Err(GraphError::InvalidName {
            name: name.to_string(),
            why: "a node name is letters, digits and '_', not starting with a digit (ROS names allow no dots or dashes)",
        })
    }
}

/// Validates an absolute namespace such as `/` or `/ntari/remote`.
pub fn validate_namespace(namespace: &str) -> Result<(), GraphError> {
    if namespace == "/" {
        return Ok(());
    }
    validate_absolute(namespace)
}

/// A fully qualified topic or service name (`/ntari/dns/health`).
pub fn validate_absolute_topic(name: &str) -> Result<(), GraphError> {
    validate_absolute(name)
}

fn validate_absolute(name: &str) -> Result<(), GraphError> {
    let ok = name.starts_with('/') && !name.ends_with('/') && name[1..].split('/').all(valid_token);
    if ok {
        Ok(())
    } else {
        Err(GraphError::InvalidName {
            name: name.to_string(),
            why: "expected '/'-separated tokens of letters, digits and '_' (no dots, no empty parts, no trailing '/')",
        })
    }
}

/// The fully qualified name of a node: `/ns/name`.
pub fn node_fqn(namespace: &str, name: &str) -> String {
    if namespace == "/" {
        format!("/{name}")
    } else {
        format!("{namespace}/{name}")
    }
}

/// Expands a topic or service name the way rcl does: absolute names stay,
/// `~/x` is under the node's own name, anything else is under its namespace.
pub fn resolve(namespace: &str, node_name: &str, name: &str) -> Result<String, GraphError> {
    let full = if name.starts_with('/') {
        name.to_string()
    } else if name == "~" {
        node_fqn(namespace, node_name)
    } else if let Some(rest) = name.strip_prefix("~/") {
        format!("{}/{rest}", node_fqn(namespace, node_name))
    } else if namespace == "/" {
        format!("/{name}")
    } else {
        format!("{namespace}/{name}")
    };
    validate_absolute(&full)?;
    Ok(full)
}

/// DDS topic of a ROS topic: `/a/b` → `rt/a/b`.
pub fn topic_dds_name(full_name: &str) -> String {
    format!("rt{full_name}")
}

/// DDS request and reply topics of a ROS service.
pub fn service_dds_names(full_name: &str) -> (String, String) {
    (
        format!("rq{full_name}Request"),
        format!("rr{full_name}Reply"),
    )
}

/// DDS type of a ROS type: `pkg/msg/T` → `pkg::msg::dds_::T_`.
pub fn dds_type_name(ros_type: &str) -> String {
    match ros_type.rsplit_once('/') {
        Some((prefix, short)) => format!("{}::dds_::{short}_", prefix.replace('/', "::")),
        None => format!("{ros_type}_"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_names_follow_rmw_cyclonedds() {
        assert_eq!(
            dds_type_name("std_msgs/msg/Bool"),
            "std_msgs::msg::dds_::Bool_"
        );
        assert_eq!(
            dds_type_name("lifecycle_msgs/srv/ChangeState_Request"),
            "lifecycle_msgs::srv::dds_::ChangeState_Request_"
        );
    }

    #[test]
    fn topic_and_service_names() {
        assert_eq!(topic_dds_name("/ntari/dns/health"), "rt/ntari/dns/health");
        assert_eq!(
            service_dds_names("/ntari/ntari_dns_node/get_state"),
            (
                "rq/ntari/ntari_dns_node/get_stateRequest".to_string(),
                "rr/ntari/ntari_dns_node/get_stateReply".to_string()
            )
        );
    }

    #[test]
    fn resolution() {
        assert_eq!(
            resolve("/ntari", "n", "example/health").unwrap(),
            "/ntari/example/health"
        );
        assert_eq!(
            resolve("/ntari", "n", "/diagnostics").unwrap(),
            "/diagnostics"
        );
        assert_eq!(
            resolve("/ntari", "n", "~/get_state").unwrap(),
            "/ntari/n/get_state"
        );
        assert_eq!(resolve("/", "n", "chatter").unwrap(), "/chatter");
        assert_eq!(resolve("/", "n", "~/x").unwrap(), "/n/x");
    }

    #[test]
    fn invalid_names_are_refused_with_a_reason() {
        for bad in ["remote.coop/x", "/a//b", "/a/", "1abc", "a-b", ""] {
            assert!(resolve("/ntari", "n", bad).is_err(), "{bad:?} accepted");
        }
        for bad in ["", "ntari.dns", "9lives", "a/b"] {
            assert!(validate_node_name(bad).is_err(), "{bad:?} accepted");
        }
        for bad in ["ntari", "/ntari/", "//", "/a.b"] {
            assert!(validate_namespace(bad).is_err(), "{bad:?} accepted");
        }
        assert!(validate_namespace("/").is_ok());
        assert!(validate_namespace("/remote/coop_a").is_ok());
    }
}

//! ROS 2 parameters, read-only: what `ros2 param list/get/describe/dump`
//! see of a node.
//!
//! A service node's settings live in its TOML file, not in ROS parameters;
//! the parameters *show* the effective config (defaults filled in) so an
//! operator can read what a node runs with the usual ROS tools. Every set
//! is refused with a reason that says where to change it instead.
//!
//! The services (`~/list_parameters`, `~/describe_parameters`,
//! `~/get_parameters`, `~/get_parameter_types`, `~/set_parameters`,
//! `~/set_parameters_atomically`) answer as rclcpp's do: names are
//! dot-separated, `list_parameters` follows rclcpp's prefix and depth rules,
//! and a get/describe/types request naming an undeclared parameter gets an
//! empty answer. Every change is published on `/parameter_events`.

use std::collections::BTreeMap;

use serde_json::Value;
use tokio::sync::watch;

use crate::graph::{qos, GraphError, Node, Publisher, Request, ServiceServer};
use crate::msg::builtin_interfaces::Time;
use crate::msg::rcl_interfaces::{
    DescribeParameters, DescribeParametersResponse, GetParameterTypes, GetParameterTypesResponse,
    GetParameters, GetParametersResponse, ListParameters, ListParametersRequest,
    ListParametersResponse, ListParametersResult, Parameter, ParameterDescriptor, ParameterEvent,
    ParameterValue, SetParameters, SetParametersAtomically, SetParametersAtomicallyResponse,
    SetParametersResponse, SetParametersResult,
};

const SEPARATOR: char = '.';

/// One parameter: its value and a line saying where it comes from.
#[derive(Debug, Clone, PartialEq)]
struct Entry {
    value: ParameterValue,
    description: String,
}

/// A node's parameters by name, sorted (as `ros2 param list` prints them).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Parameters {
    entries: BTreeMap<String, Entry>,
}

impl Parameters {
    pub fn new() -> Self {
        Self::default()
    }

    /// The two parameters every Jazzy rclcpp node declares, with the values
    /// that are true of ours: it runs on the system clock, and it serves
    /// `~/get_type_description`.
    pub fn standard() -> Self {
        let mut p = Self::new();
        p.insert(
            "use_sim_time",
            ParameterValue::bool(false),
            "always false: this node runs on the system clock",
        );
        p.insert(
            "start_type_description_service",
            ParameterValue::bool(true),
            "always true: ~/get_type_description is served",
        );
        p
    }

    pub fn insert(&mut self, name: &str, value: ParameterValue, description: &str) {
        self.entries.insert(
            name.to_string(),
            Entry {
                value,
                description: description.to_string(),
            },
        );
    }

    /// Adds every leaf of a JSON document (a serialised config) as a
    /// parameter: tables become dotted prefixes, a list of plain values of
    /// one kind becomes an array parameter, a list of tables is numbered
    /// (`hosts.0.name`), and absent options (`null`) are left out.
    pub fn insert_json(&mut self, prefix: &str, value: &Value, description: &str) {
        let join = |key: &str| {
            if prefix.is_empty() {
                key.to_string()
            } else {
                format!("{prefix}{SEPARATOR}{key}")
            }
        };
        match value {
            Value::Null => {}
            Value::Object(map) => {
                for (key, v) in map {
                    self.insert_json(&join(key), v, description);
                }
            }
            Value::Array(items) => match array_value(items) {
                Some(array) => self.insert(prefix, array, description),
                None => {
                    for (i, v) in items.iter().enumerate() {
                        self.insert_json(&join(&i.to_string()), v, description);
                    }
                }
            },
            scalar => {
                if let Some(v) = scalar_value(scalar) {
                    self.insert(prefix, v, description);
                }
            }
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn get(&self, name: &str) -> Option<&ParameterValue> {
        self.entries.get(name).map(|e| &e.value)
    }

    /// `~/list_parameters`, as rclcpp's `NodeParameters::list_parameters`:
    /// no prefixes and depth 0 lists everything; otherwise a name is listed
    /// if it has fewer than `depth` separators (no prefixes), or equals a
    /// prefix, or lies under one within `depth` more levels. `prefixes` of
    /// the answer are the listed names minus their last component.
    pub fn list(&self, prefixes: &[String], depth: u64) -> ListParametersResult {
        let recursive = depth == ListParametersRequest::DEPTH_RECURSIVE;
        let shallow = |name: &str| (name.matches(SEPARATOR).count() as u64) < depth;
        let mut result = ListParametersResult::default();
        for name in self.entries.keys() {
            let listed = if prefixes.is_empty() {
                recursive || shallow(name)
            } else {
                prefixes.iter().any(|prefix| {
                    name == prefix
                        || name
                            .strip_prefix(prefix.as_str())
                            .and_then(|rest| rest.strip_prefix(SEPARATOR))
                            .is_some_and(|rest| recursive || shallow(rest))
                })
            };
            if !listed {
                continue;
            }
            result.names.push(name.clone());
            if let Some((parent, _)) = name.rsplit_once(SEPARATOR) {
                if !result.prefixes.iter().any(|p| p == parent) {
                    result.prefixes.push(parent.to_string());
                }
            }
        }
        result
    }

    /// The entries for `names`, or None if any is not declared (rclcpp
    /// then answers with an empty list).
    fn all_of(&self, names: &[String]) -> Option<Vec<(&String, &Entry)>> {
        names
            .iter()
            .map(|n| self.entries.get_key_value(n))
            .collect()
    }

    /// What changed from `old` to `self`, as a `/parameter_events` message
    /// (None if nothing did).
    fn event_since(&self, old: &Parameters, node: &str) -> Option<ParameterEvent> {
        let parameter = |name: &String, value: &ParameterValue| Parameter {
            name: name.clone(),
            value: value.clone(),
        };
        let mut event = ParameterEvent {
            stamp: Time::now(),
            node: node.to_string(),
            ..ParameterEvent::default()
        };
        for (name, entry) in &self.entries {
            match old.entries.get(name) {
                None => event.new_parameters.push(parameter(name, &entry.value)),
                Some(before) if before.value != entry.value => {
                    event.changed_parameters.push(parameter(name, &entry.value))
                }
                Some(_) => {}
            }
        }
        for (name, entry) in &old.entries {
            if !self.entries.contains_key(name) {
                event.deleted_parameters.push(parameter(name, &entry.value));
            }
        }
        let changed = !(event.new_parameters.is_empty()
            && event.changed_parameters.is_empty()
            && event.deleted_parameters.is_empty());
        changed.then_some(event)
    }
}

fn scalar_value(value: &Value) -> Option<ParameterValue> {
    match value {
        Value::Bool(b) => Some(ParameterValue::bool(*b)),
        Value::Number(n) => Some(match (n.as_i64(), n.is_u64()) {
            (Some(i), _) => ParameterValue::integer(i),
            // A u64 beyond i64 keeps its exact digits as a string.
            (None, true) => ParameterValue::string(n.to_string()),
            (None, false) => ParameterValue::double(n.as_f64().unwrap_or(f64::NAN)),
        }),
        Value::String(s) => Some(ParameterValue::string(s.clone())),
        Value::Null | Value::Array(_) | Value::Object(_) => None,
    }
}

/// A list of plain values of one kind as one array parameter; None for
/// lists that hold tables, lists, or mixed kinds. An empty list is an
/// empty string array (its element type cannot be known).
fn array_value(items: &[Value]) -> Option<ParameterValue> {
    if items.iter().all(Value::is_string) {
        let strings = items.iter().filter_map(Value::as_str).map(String::from);
        return Some(ParameterValue::string_array(strings.collect()));
    }
    if items.iter().all(Value::is_boolean) {
        return Some(ParameterValue::bool_array(
            items.iter().filter_map(Value::as_bool).collect(),
        ));
    }
    if items.iter().all(Value::is_i64) {
        return Some(ParameterValue::integer_array(
            items.iter().filter_map(Value::as_i64).collect(),
        ));
    }
    if items.iter().all(Value::is_number) {
        return Some(ParameterValue::double_array(
            items.iter().filter_map(Value::as_f64).collect(),
        ));
    }
    None
}

/// Serves a node's parameters read-only and publishes their changes.
pub struct ParameterServer {
    node_name: String,
    /// Why a set is refused and what to do instead, for the reply.
    refusal: String,
    events: Publisher<ParameterEvent>,
    list: ServiceServer<ListParameters>,
    describe: ServiceServer<DescribeParameters>,
    get: ServiceServer<GetParameters>,
    get_types: ServiceServer<GetParameterTypes>,
    set: ServiceServer<SetParameters>,
    set_atomically: ServiceServer<SetParametersAtomically>,
}

/// One request taken from any of the parameter services.
enum ParameterRequest {
    List(Request<ListParameters>),
    Describe(Request<DescribeParameters>),
    Get(Request<GetParameters>),
    GetTypes(Request<GetParameterTypes>),
    Set(Request<SetParameters>),
    SetAtomically(Request<SetParametersAtomically>),
}

impl ParameterServer {
    /// Creates the six services and the `/parameter_events` publisher.
    /// `refusal` completes "parameter 'x' cannot be set: …" in replies to
    /// a set: say where the setting really lives.
    pub fn new(node: &Node, refusal: impl Into<String>) -> Result<Self, GraphError> {
        Ok(ParameterServer {
            node_name: node.fully_qualified_name(),
            refusal: refusal.into(),
            events: node.create_publisher("/parameter_events", qos::PARAMETER_EVENTS)?,
            list: node.create_service("~/list_parameters")?,
            describe: node.create_service("~/describe_parameters")?,
            get: node.create_service("~/get_parameters")?,
            get_types: node.create_service("~/get_parameter_types")?,
            set: node.create_service("~/set_parameters")?,
            set_atomically: node.create_service("~/set_parameters_atomically")?,
        })
    }

    /// Serves until the sender of `parameters` is dropped: answers requests
    /// from the latest set, and publishes an event for each new set (the
    /// first one announces every parameter as new, as a starting rclcpp
    /// node does). Spawn it beside the node's event loop.
    pub async fn serve(self, mut parameters: watch::Receiver<Parameters>) {
        let mut current = Parameters::new();
        loop {
            let latest = parameters.borrow_and_update().clone();
            if let Some(event) = latest.event_since(&current, &self.node_name) {
                if let Err(e) = self.events.publish(&event) {
                    tracing::warn!(error = %e, "could not publish /parameter_events");
                }
            }
            current = latest;
            let request = tokio::select! {
                changed = parameters.changed() => match changed {
                    Ok(()) => continue,
                    Err(_) => return,
                },
                r = self.list.next() => ParameterRequest::List(r),
                r = self.describe.next() => ParameterRequest::Describe(r),
                r = self.get.next() => ParameterRequest::Get(r),
                r = self.get_types.next() => ParameterRequest::GetTypes(r),
                r = self.set.next() => ParameterRequest::Set(r),
                r = self.set_atomically.next() => ParameterRequest::SetAtomically(r),
            };
            if let Err(e) = self.answer(&current, request).await {
                tracing::warn!(error = %e, "could not answer a parameter request");
            }
        }
    }

    fn refuse(&self, name: &str, params: &Parameters) -> SetParametersResult {
        let what = if params.entries.contains_key(name) {
            "it is read-only"
        } else {
            "no such parameter"
        };
        SetParametersResult {
            successful: false,
            reason: format!(
                "parameter '{name}' cannot be set ({what}): {}",
                self.refusal
            ),
        }
    }

    async fn answer(
        &self,
        params: &Parameters,
        request: ParameterRequest,
    ) -> Result<(), GraphError> {
        match request {
            ParameterRequest::List(r) => {
                let result = params.list(&r.body.prefixes, r.body.depth);
                self.list
                    .respond(&r, &ListParametersResponse { result })
                    .await
            }
            ParameterRequest::Describe(r) => {
                let descriptors = params
                    .all_of(&r.body.names)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(name, entry)| ParameterDescriptor {
                        name: name.clone(),
                        type_: entry.value.type_,
                        description: entry.description.clone(),
                        additional_constraints: format!("read-only: {}", self.refusal),
                        read_only: true,
                        ..ParameterDescriptor::default()
                    })
                    .collect();
                self.describe
                    .respond(&r, &DescribeParametersResponse { descriptors })
                    .await
            }
            ParameterRequest::Get(r) => {
                let values = params
                    .all_of(&r.body.names)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(_, entry)| entry.value.clone())
                    .collect();
                self.get
                    .respond(&r, &GetParametersResponse { values })
                    .await
            }
            ParameterRequest::GetTypes(r) => {
                let types = params
                    .all_of(&r.body.names)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(_, entry)| entry.value.type_)
                    .collect();
                self.get_types
                    .respond(&r, &GetParameterTypesResponse { types })
                    .await
            }
            ParameterRequest::Set(r) => {
                let results = r
                    .body
                    .parameters
                    .iter()
                    .map(|p| self.refuse(&p.name, params))
                    .collect();
                tracing::info!(node = %self.node_name, "refused a set_parameters request: parameters are read-only");
                self.set
                    .respond(&r, &SetParametersResponse { results })
                    .await
            }
            ParameterRequest::SetAtomically(r) => {
                let names: Vec<&str> = r.body.parameters.iter().map(|p| p.name.as_str()).collect();
                let result = match names.first() {
                    Some(first) => self.refuse(first, params),
                    None => SetParametersResult {
                        successful: false,
                        reason: format!("no parameters given; {}", self.refusal),
                    },
                };
                tracing::info!(node = %self.node_name, "refused a set_parameters_atomically request: parameters are read-only");
                self.set_atomically
                    .respond(&r, &SetParametersAtomicallyResponse { result })
                    .await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msg::rcl_interfaces::parameter_type as pt;
    use serde_json::json;

    fn sample() -> Parameters {
        let mut p = Parameters::standard();
        p.insert_json(
            "",
            &json!({
                "port": 15353,
                "domain": "coop.lan",
                "dnssec": false,
                "ratio": 0.5,
                "user": null,
                "listen": {"addresses": ["127.0.0.1", "::1"], "interfaces": []},
                "ports": [1, 2],
                "mixed": [1, 2.5],
                "hosts": [{"name": "hub", "ip": "10.0.0.1"}, {"name": "nas", "ip": "10.0.0.2"}],
                "big": u64::MAX,
            }),
            "from dns.toml",
        );
        p
    }

    fn names(r: &ListParametersResult) -> Vec<&str> {
        r.names.iter().map(String::as_str).collect()
    }

    #[test]
    fn json_leaves_become_typed_parameters() {
        let p = sample();
        assert_eq!(p.get("port"), Some(&ParameterValue::integer(15353)));
        assert_eq!(p.get("dnssec").map(|v| v.type_), Some(pt::BOOL));
        assert_eq!(p.get("ratio"), Some(&ParameterValue::double(0.5)));
        assert_eq!(p.get("user"), None, "absent options are not parameters");
        assert_eq!(
            p.get("listen.addresses"),
            Some(&ParameterValue::string_array(vec![
                "127.0.0.1".into(),
                "::1".into()
            ]))
        );
        assert_eq!(
            p.get("listen.interfaces"),
            Some(&ParameterValue::string_array(vec![]))
        );
        assert_eq!(
            p.get("ports"),
            Some(&ParameterValue::integer_array(vec![1, 2]))
        );
        assert_eq!(
            p.get("mixed"),
            Some(&ParameterValue::double_array(vec![1.0, 2.5]))
        );
        assert_eq!(p.get("hosts.1.name"), Some(&ParameterValue::string("nas")));
        assert_eq!(
            p.get("big"),
            Some(&ParameterValue::string(u64::MAX.to_string()))
        );
        assert_eq!(p.get("use_sim_time"), Some(&ParameterValue::bool(false)));
    }

    #[test]
    fn list_follows_rclcpp() {
        let p = sample();
        let all = p.list(&[], ListParametersRequest::DEPTH_RECURSIVE);
        assert_eq!(all.names.len(), p.len());
        assert!(all.prefixes.contains(&"hosts.0".to_string()));
        assert!(all.prefixes.contains(&"listen".to_string()));

        // depth 1 without prefixes: only names without a separator.
        let top = p.list(&[], 1);
        assert!(names(&top).contains(&"port"));
        assert!(!names(&top).iter().any(|n| n.contains('.')));
        assert!(top.prefixes.is_empty());

        let listen = p.list(&["listen".into()], 0);
        assert_eq!(names(&listen), ["listen.addresses", "listen.interfaces"]);
        assert_eq!(listen.prefixes, ["listen"]);

        // Under "hosts" one level down is "hosts.0" (no parameter itself);
        // two levels reach the names.
        assert!(p.list(&["hosts".into()], 1).names.is_empty());
        assert_eq!(p.list(&["hosts".into()], 2).names.len(), 4);
        // A prefix must end at a separator: "host" is not "hosts".
        assert!(p.list(&["host".into()], 0).names.is_empty());
        // A prefix that is itself a name lists it.
        assert_eq!(names(&p.list(&["port".into()], 1)), ["port"]);
    }

    #[test]
    fn undeclared_names_empty_the_answer_as_rclcpp_does() {
        let p = sample();
        assert_eq!(
            p.all_of(&["port".into(), "domain".into()]).map(|v| v.len()),
            Some(2)
        );
        assert!(p.all_of(&["port".into(), "nope".into()]).is_none());
    }

    #[test]
    fn events_list_new_changed_and_deleted() {
        let old = sample();
        assert!(old.event_since(&old, "/n").is_none());
        let first = old.event_since(&Parameters::new(), "/n").unwrap();
        assert_eq!(first.new_parameters.len(), old.len());
        assert_eq!(first.node, "/n");

        let mut new = Parameters::standard();
        new.insert_json("", &json!({"port": 53, "extra": true}), "x");
        let e = new.event_since(&old, "/n").unwrap();
        let n = |v: &[Parameter]| v.iter().map(|p| p.name.clone()).collect::<Vec<_>>();
        assert_eq!(n(&e.new_parameters), ["extra"]);
        assert_eq!(n(&e.changed_parameters), ["port"]);
        assert!(n(&e.deleted_parameters).contains(&"domain".to_string()));
        assert!(!n(&e.deleted_parameters).contains(&"use_sim_time".to_string()));
    }
}

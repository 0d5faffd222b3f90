//! RIHS01 type hashes, computed as rosidl_generator_type_description does.
//!
//! Jazzy endpoints advertise `typehash=RIHS01_<hex>;` in their user_data. The
//! hash is the SHA-256 of a JSON rendering of the type description with
//! default values removed. See [`hashable_json`] for the exact rendering rules.
//!
//! Reference: ros2/rosidl
//! `rosidl_generator_type_description/rosidl_generator_type_description/__init__.py`
//! (`serialize_field_type`, `extract_full_type_description`,
//! `calculate_type_hash`) and ros2/rcl_interfaces
//! `type_description_interfaces/msg/FieldType.msg` for the type ids.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use sha2::{Digest, Sha256};

/// Field type ids of `type_description_interfaces/msg/FieldType`.
///
/// Arrays, bounded sequences and unbounded sequences of a value type use the
/// value type's id plus [`field_type::ARRAY_OFFSET`],
/// [`field_type::BOUNDED_SEQUENCE_OFFSET`] or
/// [`field_type::UNBOUNDED_SEQUENCE_OFFSET`]; the [`FieldType`] constructors
/// apply them.
pub mod field_type {
    pub const NOT_SET: u8 = 0;
    /// A type defined in another `.msg`/`.idl` file.
    pub const NESTED_TYPE: u8 = 1;
    pub const INT8: u8 = 2;
    /// Also what `.msg` `char` becomes (rosidl_adapter maps `char` to `uint8`).
    pub const UINT8: u8 = 3;
    pub const INT16: u8 = 4;
    pub const UINT16: u8 = 5;
    pub const INT32: u8 = 6;
    pub const UINT32: u8 = 7;
    pub const INT64: u8 = 8;
    pub const UINT64: u8 = 9;
    pub const FLOAT: u8 = 10;
    pub const DOUBLE: u8 = 11;
    pub const LONG_DOUBLE: u8 = 12;
    /// IDL `char`; a `.msg` `char` is `uint8` instead, see [`UINT8`].
    pub const CHAR: u8 = 13;
    pub const WCHAR: u8 = 14;
    pub const BOOLEAN: u8 = 15;
    /// `.msg` `byte` (IDL `octet`).
    pub const BYTE: u8 = 16;
    pub const STRING: u8 = 17;
    pub const WSTRING: u8 = 18;
    pub const FIXED_STRING: u8 = 19;
    pub const FIXED_WSTRING: u8 = 20;
    pub const BOUNDED_STRING: u8 = 21;
    pub const BOUNDED_WSTRING: u8 = 22;

    /// `T[N]`: value type id + 48 (e.g. `FIELD_TYPE_UINT8_ARRAY` = 51).
    pub const ARRAY_OFFSET: u8 = 48;
    /// `T[<=N]`: value type id + 96.
    pub const BOUNDED_SEQUENCE_OFFSET: u8 = 96;
    /// `T[]`: value type id + 144.
    pub const UNBOUNDED_SEQUENCE_OFFSET: u8 = 144;
}

/// Name of the member rosidl adds to structures that declare no field.
pub const EMPTY_STRUCT_DUMMY_FIELD: &str = "structure_needs_at_least_one_member";

/// `type_description_interfaces/msg/FieldType`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldType {
    pub type_id: u8,
    pub capacity: u64,
    pub string_capacity: u64,
    pub nested_type_name: String,
}

impl FieldType {
    /// A primitive or unbounded string type, e.g. `field_type::BOOLEAN`.
    pub fn primitive(type_id: u8) -> Self {
        FieldType {
            type_id,
            capacity: 0,
            string_capacity: 0,
            nested_type_name: String::new(),
        }
    }

    /// `string`.
    pub fn string() -> Self {
        Self::primitive(field_type::STRING)
    }

    /// `string<=N`.
    pub fn bounded_string(max_len: u64) -> Self {
        FieldType {
            string_capacity: max_len,
            ..Self::primitive(field_type::BOUNDED_STRING)
        }
    }

    /// A message type, by its full name, e.g. `builtin_interfaces/msg/Time`.
    pub fn nested(type_name: &str) -> Self {
        FieldType {
            nested_type_name: type_name.to_owned(),
            ..Self::primitive(field_type::NESTED_TYPE)
        }
    }

    /// `T[N]`; `element` is the value type (primitive, string or nested).
    pub fn array(element: FieldType, len: u64) -> Self {
        element.wrapped(field_type::ARRAY_OFFSET, len)
    }

    /// `T[<=N]`.
    pub fn bounded_sequence(element: FieldType, max_len: u64) -> Self {
        element.wrapped(field_type::BOUNDED_SEQUENCE_OFFSET, max_len)
    }

    /// `T[]`.
    pub fn sequence(element: FieldType) -> Self {
        element.wrapped(field_type::UNBOUNDED_SEQUENCE_OFFSET, 0)
    }

    // The element keeps its string capacity and nested name, as
    // `serialize_field_type` reads both from the value type.
    fn wrapped(self, offset: u8, capacity: u64) -> Self {
        FieldType {
            type_id: self.type_id.saturating_add(offset),
            capacity,
            ..self
        }
    }
}

/// `type_description_interfaces/msg/Field`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub name: String,
    pub field_type: FieldType,
    /// The `.msg` default as rosidl writes it (`False`, `True`, `0`), empty
    /// for none. Served by `~/get_type_description`, never hashed.
    pub default_value: String,
}

impl Field {
    pub fn new(name: &str, field_type: FieldType) -> Self {
        Field {
            name: name.to_owned(),
            field_type,
            default_value: String::new(),
        }
    }

    /// The same field with a `.msg` default value (`bool read_only false`
    /// becomes `with_default("False")`, as rosidl renders it).
    pub fn with_default(mut self, value: &str) -> Self {
        self.default_value = value.to_owned();
        self
    }
}

/// `type_description_interfaces/msg/IndividualTypeDescription`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndividualTypeDescription {
    pub type_name: String,
    pub fields: Vec<Field>,
}

impl IndividualTypeDescription {
    /// A type and its fields in declaration order. An empty field list gets
    /// the `uint8 structure_needs_at_least_one_member` that rosidl inserts,
    /// because that member is what rosidl hashes (and puts on the wire).
    pub fn new(type_name: &str, mut fields: Vec<Field>) -> Self {
        if fields.is_empty() {
            fields.push(Field::new(
                EMPTY_STRUCT_DUMMY_FIELD,
                FieldType::primitive(field_type::UINT8),
            ));
        }
        IndividualTypeDescription {
            type_name: type_name.to_owned(),
            fields,
        }
    }

    fn nested_names(&self) -> impl Iterator<Item = &str> {
        self.fields
            .iter()
            .map(|f| f.field_type.nested_type_name.as_str())
            .filter(|n| !n.is_empty())
    }
}

/// `type_description_interfaces/msg/TypeDescription`: the type itself and
/// every type it references, transitively.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeDescription {
    pub type_description: IndividualTypeDescription,
    pub referenced_type_descriptions: Vec<IndividualTypeDescription>,
}

impl TypeDescription {
    /// Builds a full description from a type's own fields and the full
    /// descriptions of the types its fields use.
    ///
    /// Like rosidl's `extract_full_type_description`, the referenced list is
    /// the transitive closure of nested type names starting at this type,
    /// deduplicated and sorted by type name. Descriptions in `referenced`
    /// that the type does not reach are left out; a name that no description
    /// provides is left out too (see [`TypeDescription::missing_references`]).
    pub fn build(type_name: &str, fields: Vec<Field>, referenced: &[TypeDescription]) -> Self {
        let top = IndividualTypeDescription::new(type_name, fields);

        // First description seen for a name wins; all copies of a given ROS
        // type are identical anyway.
        let mut known: BTreeMap<&str, &IndividualTypeDescription> = BTreeMap::new();
        for td in referenced {
            for d in std::iter::once(&td.type_description).chain(&td.referenced_type_descriptions) {
                known.entry(d.type_name.as_str()).or_insert(d);
            }
        }

        let mut reached: BTreeSet<&str> = BTreeSet::new();
        let mut queue: Vec<&str> = top.nested_names().collect();
        while let Some(name) = queue.pop() {
            if reached.insert(name) {
                if let Some(d) = known.get(name) {
                    queue.extend(d.nested_names());
                }
            }
        }

        // BTreeSet iterates in byte order, which is Python's `sorted()` order
        // for these ASCII names.
        let referenced_type_descriptions = reached
            .iter()
            .filter_map(|name| known.get(name).map(|d| (*d).clone()))
            .collect();
        TypeDescription {
            type_description: top,
            referenced_type_descriptions,
        }
    }

    /// Nested type names used by this description (at any depth) that have
    /// no entry in `referenced_type_descriptions`. Empty for a complete one.
    pub fn missing_references(&self) -> Vec<String> {
        let present: BTreeSet<&str> = self
            .referenced_type_descriptions
            .iter()
            .map(|d| d.type_name.as_str())
            .collect();
        let used: BTreeSet<&str> = std::iter::once(&self.type_description)
            .chain(&self.referenced_type_descriptions)
            .flat_map(|d| d.nested_names())
            .collect();
        used.difference(&present).map(|s| (*s).to_owned()).collect()
    }

    /// The full description of one referenced type (or of this type itself),
    /// with its own transitive references. `None` if the name is unknown.
    pub fn extract(&self, type_name: &str) -> Option<TypeDescription> {
        let all: Vec<TypeDescription> = std::iter::once(&self.type_description)
            .chain(&self.referenced_type_descriptions)
            .map(|d| TypeDescription {
                type_description: d.clone(),
                referenced_type_descriptions: Vec::new(),
            })
            .collect();
        let target = all
            .iter()
            .find(|d| d.type_description.type_name == type_name)?;
        Some(TypeDescription::build(
            type_name,
            target.type_description.fields.clone(),
            &all,
        ))
    }
}

/// Names of the three messages rosidl derives from service `pkg/srv/Name`.
pub fn service_message_names(service_type: &str) -> (String, String, String) {
    (
        format!("{service_type}_Request"),
        format!("{service_type}_Response"),
        format!("{service_type}_Event"),
    )
}

/// Description of `pkg/srv/Name_Event`, the message rosidl generates for
/// service introspection: `ServiceEventInfo info`, `Request[<=1] request`,
/// `Response[<=1] response`.
///
/// `event_info` is the description of `service_msgs/msg/ServiceEventInfo`
/// (passed in so this module stays independent of the message module).
pub fn service_event_description(
    service_type: &str,
    request: &TypeDescription,
    response: &TypeDescription,
    event_info: &TypeDescription,
) -> TypeDescription {
    let (_, _, event_name) = service_message_names(service_type);
    let fields = vec![
        Field::new(
            "info",
            FieldType::nested(&event_info.type_description.type_name),
        ),
        Field::new(
            "request",
            FieldType::bounded_sequence(FieldType::nested(&request.type_description.type_name), 1),
        ),
        Field::new(
            "response",
            FieldType::bounded_sequence(FieldType::nested(&response.type_description.type_name), 1),
        ),
    ];
    TypeDescription::build(
        &event_name,
        fields,
        &[request.clone(), response.clone(), event_info.clone()],
    )
}

/// Description of service `pkg/srv/Name` as rosidl hashes it (`add_srv`):
/// fields `request_message`, `response_message`, `event_message`, and the
/// request, response, event and everything they reference.
pub fn service_description(
    service_type: &str,
    request: &TypeDescription,
    response: &TypeDescription,
    event_info: &TypeDescription,
) -> TypeDescription {
    let event = service_event_description(service_type, request, response, event_info);
    let fields = vec![
        Field::new(
            "request_message",
            FieldType::nested(&request.type_description.type_name),
        ),
        Field::new(
            "response_message",
            FieldType::nested(&response.type_description.type_name),
        ),
        Field::new(
            "event_message",
            FieldType::nested(&event.type_description.type_name),
        ),
    ];
    TypeDescription::build(
        service_type,
        fields,
        &[request.clone(), response.clone(), event],
    )
}

/// The exact text rosidl hashes: `json.dumps` of
/// `{"type_description": ..., "referenced_type_descriptions": [...]}` with
/// `separators=(', ', ': ')`, `ensure_ascii=True`, insertion key order and
/// `default_value` removed from every field.
pub fn hashable_json(desc: &TypeDescription) -> String {
    let mut out = String::with_capacity(256);
    out.push_str("{\"type_description\": ");
    write_individual(&mut out, &desc.type_description);
    out.push_str(", \"referenced_type_descriptions\": [");
    for (i, d) in desc.referenced_type_descriptions.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        write_individual(&mut out, d);
    }
    out.push_str("]}");
    out
}

fn write_individual(out: &mut String, d: &IndividualTypeDescription) {
    out.push_str("{\"type_name\": ");
    write_json_string(out, &d.type_name);
    out.push_str(", \"fields\": [");
    for (i, f) in d.fields.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str("{\"name\": ");
        write_json_string(out, &f.name);
        // Writing to a String cannot fail.
        let _ = write!(
            out,
            ", \"type\": {{\"type_id\": {}, \"capacity\": {}, \"string_capacity\": {}, \"nested_type_name\": ",
            f.field_type.type_id, f.field_type.capacity, f.field_type.string_capacity
        );
        write_json_string(out, &f.field_type.nested_type_name);
        out.push_str("}}");
    }
    out.push_str("]}");
}

/// A JSON string literal as Python's `json.dumps(..., ensure_ascii=True)`
/// writes it: `\"`, `\\`, `\n`, `\r`, `\t`, `\b`, `\f`, and `\uXXXX`
/// (lowercase hex, UTF-16 surrogate pairs) for everything else outside
/// printable ASCII `' '..='~'`.
fn write_json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
        }
    }
    out.push('"');
}

/// SHA-256 of [`hashable_json`]: the RIHS01 hash value.
pub fn type_hash(desc: &TypeDescription) -> [u8; 32] {
    Sha256::digest(hashable_json(desc).as_bytes()).into()
}

/// Lowercase hex of `bytes`.
pub fn to_hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// `RIHS01_<64 hex digits>`, as `rosidl_stringify_type_hash` renders it.
pub fn rihs01_string(desc: &TypeDescription) -> String {
    format!("RIHS01_{}", to_hex(&type_hash(desc)))
}

/// Endpoint user_data entry: `typehash=RIHS01_<hex>;`
/// (as rmw_dds_common `encode_type_hash_for_user_data_qos` writes it).
pub fn user_data_for(desc: &TypeDescription) -> String {
    format!("typehash={};", rihs01_string(desc))
}

#[cfg(test)]
mod tests {
    use super::field_type::*;
    use super::*;

    fn time() -> TypeDescription {
        TypeDescription::build(
            "builtin_interfaces/msg/Time",
            vec![
                Field::new("sec", FieldType::primitive(INT32)),
                Field::new("nanosec", FieldType::primitive(UINT32)),
            ],
            &[],
        )
    }

    #[test]
    fn json_matches_python_json_dumps() {
        // Expected text produced by python3 json.dumps(d, ensure_ascii=True,
        // separators=(', ', ': ')) on the dict rosidl builds for std_msgs/Bool.
        let bool_desc = TypeDescription::build(
            "std_msgs/msg/Bool",
            vec![Field::new("data", FieldType::primitive(BOOLEAN))],
            &[],
        );
        assert_eq!(
            hashable_json(&bool_desc),
            "{\"type_description\": {\"type_name\": \"std_msgs/msg/Bool\", \"fields\": \
             [{\"name\": \"data\", \"type\": {\"type_id\": 15, \"capacity\": 0, \
             \"string_capacity\": 0, \"nested_type_name\": \"\"}}]}, \
             \"referenced_type_descriptions\": []}"
        );
    }

    #[test]
    fn string_escaping_matches_python() {
        // Reference: python3 -c 'import json; print(json.dumps("a\"\\\n\x01\x7fé😀"))'
        let mut s = String::new();
        write_json_string(&mut s, "a\"\\\n\u{1}\u{7f}é😀");
        assert_eq!(s, r#""a\"\\\n\u0001\u007f\u00e9\ud83d\ude00""#);
    }

    #[test]
    fn pinned_std_msgs_bool_and_string() {
        let bool_desc = TypeDescription::build(
            "std_msgs/msg/Bool",
            vec![Field::new("data", FieldType::primitive(BOOLEAN))],
            &[],
        );
        assert_eq!(
            rihs01_string(&bool_desc),
            "RIHS01_feb91e995ff9ebd09c0cb3d2aed18b11077585839fb5db80193b62d74528f6c9"
        );
        let string_desc = TypeDescription::build(
            "std_msgs/msg/String",
            vec![Field::new("data", FieldType::string())],
            &[],
        );
        assert_eq!(
            user_data_for(&string_desc),
            "typehash=RIHS01_df668c740482bbd48fb39d76a70dfd4bd59db1288021743503259e948f6b1a18;"
        );
    }

    #[test]
    fn empty_struct_gets_dummy_member() {
        // std_msgs/msg/Empty; hash published in generated rosidl code and
        // `ros2 interface show --type-description-hashes` outputs.
        let empty = TypeDescription::build("std_msgs/msg/Empty", vec![], &[]);
        assert_eq!(
            empty.type_description.fields[0].name,
            EMPTY_STRUCT_DUMMY_FIELD
        );
        assert_eq!(
            rihs01_string(&empty),
            "RIHS01_20b625256f32d5dbc0d04fee44f43c41e51c70d3502f84b4a08e7a9c26a96312"
        );
    }

    #[test]
    fn references_are_transitive_deduplicated_and_sorted() {
        let header = TypeDescription::build(
            "std_msgs/msg/Header",
            vec![
                Field::new("stamp", FieldType::nested("builtin_interfaces/msg/Time")),
                Field::new("frame_id", FieldType::string()),
            ],
            &[time()],
        );
        let outer = TypeDescription::build(
            "x/msg/Outer",
            vec![
                Field::new("h", FieldType::nested("std_msgs/msg/Header")),
                Field::new(
                    "t",
                    FieldType::array(FieldType::nested("builtin_interfaces/msg/Time"), 2),
                ),
            ],
            // Time is given twice (directly and via Header): kept once.
            &[header.clone(), time()],
        );
        let names: Vec<&str> = outer
            .referenced_type_descriptions
            .iter()
            .map(|d| d.type_name.as_str())
            .collect();
        assert_eq!(
            names,
            ["builtin_interfaces/msg/Time", "std_msgs/msg/Header"]
        );
        assert!(outer.missing_references().is_empty());
        assert_eq!(outer.extract("std_msgs/msg/Header"), Some(header));
    }

    #[test]
    fn missing_reference_is_reported() {
        let d = TypeDescription::build(
            "x/msg/A",
            vec![Field::new("b", FieldType::nested("x/msg/B"))],
            &[],
        );
        assert_eq!(d.missing_references(), ["x/msg/B"]);
    }

    #[test]
    fn container_type_ids() {
        assert_eq!(
            FieldType::array(FieldType::primitive(UINT8), 16).type_id,
            51
        );
        let bs = FieldType::bounded_sequence(FieldType::nested("a/msg/B"), 1);
        assert_eq!(
            (bs.type_id, bs.capacity, bs.nested_type_name.as_str()),
            (97, 1, "a/msg/B")
        );
        let us = FieldType::sequence(FieldType::bounded_string(256));
        assert_eq!((us.type_id, us.capacity, us.string_capacity), (165, 0, 256));
    }

    #[test]
    fn pinned_turtlesim_spawn_service() {
        // A service with a non-empty request pins the service/event layout
        // (bounded sequences with capacity 1). Expected values: generated
        // turtlesim/srv/detail/spawn__description.c (rosidl_generator_c).
        let service_event_info = TypeDescription::build(
            "service_msgs/msg/ServiceEventInfo",
            vec![
                Field::new("event_type", FieldType::primitive(UINT8)),
                Field::new("stamp", FieldType::nested("builtin_interfaces/msg/Time")),
                Field::new(
                    "client_gid",
                    FieldType::array(FieldType::primitive(UINT8), 16),
                ),
                Field::new("sequence_number", FieldType::primitive(INT64)),
            ],
            &[time()],
        );
        let req = TypeDescription::build(
            "turtlesim/srv/Spawn_Request",
            vec![
                Field::new("x", FieldType::primitive(FLOAT)),
                Field::new("y", FieldType::primitive(FLOAT)),
                Field::new("theta", FieldType::primitive(FLOAT)),
                Field::new("name", FieldType::string()),
            ],
            &[],
        );
        let resp = TypeDescription::build(
            "turtlesim/srv/Spawn_Response",
            vec![Field::new("name", FieldType::string())],
            &[],
        );
        let srv = service_description("turtlesim/srv/Spawn", &req, &resp, &service_event_info);
        assert!(srv.missing_references().is_empty());
        assert_eq!(
            rihs01_string(&srv),
            "RIHS01_a71be24836f772debd6187dc8618cc47700d2602c7a3e2228bad67a8f5fd27b4"
        );
        let event =
            service_event_description("turtlesim/srv/Spawn", &req, &resp, &service_event_info);
        assert_eq!(
            rihs01_string(&event),
            "RIHS01_f94cc84d7779e9674f6c7b9f0bd85c49aafe37d9fa020731e508168356d01ec1"
        );
        assert_eq!(
            rihs01_string(&req),
            "RIHS01_1e6ade2639543952ce3471ce7df5a75ec62040cebe60fca7c49be96cab87e47c"
        );
    }
}

//! `type_description_interfaces` (ros2/rcl_interfaces, jazzy): type
//! descriptions as messages, and the `~/get_type_description` service with
//! which tools fetch the description of a type a node uses.
//!
//! The same structures exist in [`crate::typehash`] for hashing; the
//! `From` conversions here turn those into what goes on the wire.

use serde::{Deserialize, Serialize};

use super::{ros_service, RosMessage};
use crate::typehash::{self, field_type, TypeDescription as Description};

fn field(name: &str, field_type: typehash::FieldType) -> typehash::Field {
    typehash::Field::new(name, field_type)
}

/// `type_description_interfaces/msg/FieldType`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct FieldType {
    pub type_id: u8,
    pub capacity: u64,
    pub string_capacity: u64,
    pub nested_type_name: String,
}

impl RosMessage for FieldType {
    const TYPE_NAME: &'static str = "type_description_interfaces/msg/FieldType";

    fn type_description() -> Description {
        use typehash::FieldType as T;
        Description::build(
            Self::TYPE_NAME,
            vec![
                field("type_id", T::primitive(field_type::UINT8)).with_default("0"),
                field("capacity", T::primitive(field_type::UINT64)),
                field("string_capacity", T::primitive(field_type::UINT64)),
                field("nested_type_name", T::bounded_string(255)),
            ],
            &[],
        )
    }
}

/// `type_description_interfaces/msg/Field`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Field {
    pub name: String,
    #[serde(rename = "type")]
    pub type_: FieldType,
    pub default_value: String,
}

impl RosMessage for Field {
    const TYPE_NAME: &'static str = "type_description_interfaces/msg/Field";

    fn type_description() -> Description {
        use typehash::FieldType as T;
        Description::build(
            Self::TYPE_NAME,
            vec![
                field("name", T::string()),
                field("type", T::nested(FieldType::TYPE_NAME)),
                field("default_value", T::string()),
            ],
            &[FieldType::type_description()],
        )
    }
}

/// `type_description_interfaces/msg/IndividualTypeDescription`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct IndividualTypeDescription {
    pub type_name: String,
    pub fields: Vec<Field>,
}

impl RosMessage for IndividualTypeDescription {
    const TYPE_NAME: &'static str = "type_description_interfaces/msg/IndividualTypeDescription";

    fn type_description() -> Description {
        use typehash::FieldType as T;
        Description::build(
            Self::TYPE_NAME,
            vec![
                field("type_name", T::bounded_string(255)),
                field("fields", T::sequence(T::nested(Field::TYPE_NAME))),
            ],
            &[Field::type_description()],
        )
    }
}

/// `type_description_interfaces/msg/TypeDescription`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TypeDescription {
    pub type_description: IndividualTypeDescription,
    pub referenced_type_descriptions: Vec<IndividualTypeDescription>,
}

impl RosMessage for TypeDescription {
    const TYPE_NAME: &'static str = "type_description_interfaces/msg/TypeDescription";

    fn type_description() -> Description {
        use typehash::FieldType as T;
        let individual = || T::nested(IndividualTypeDescription::TYPE_NAME);
        Description::build(
            Self::TYPE_NAME,
            vec![
                field("type_description", individual()),
                field("referenced_type_descriptions", T::sequence(individual())),
            ],
            &[IndividualTypeDescription::type_description()],
        )
    }
}

impl From<&typehash::IndividualTypeDescription> for IndividualTypeDescription {
    fn from(d: &typehash::IndividualTypeDescription) -> Self {
        IndividualTypeDescription {
            type_name: d.type_name.clone(),
            fields: d
                .fields
                .iter()
                .map(|f| Field {
                    name: f.name.clone(),
                    type_: FieldType {
                        type_id: f.field_type.type_id,
                        capacity: f.field_type.capacity,
                        string_capacity: f.field_type.string_capacity,
                        nested_type_name: f.field_type.nested_type_name.clone(),
                    },
                    default_value: f.default_value.clone(),
                })
                .collect(),
        }
    }
}

impl From<&Description> for TypeDescription {
    fn from(d: &Description) -> Self {
        TypeDescription {
            type_description: (&d.type_description).into(),
            referenced_type_descriptions: d
                .referenced_type_descriptions
                .iter()
                .map(Into::into)
                .collect(),
        }
    }
}

/// Two string fields, as `KeyValue` and `TypeSource` have them.
fn strings(type_name: &str, names: &[&str]) -> Description {
    let fields = names
        .iter()
        .map(|n| field(n, typehash::FieldType::string()))
        .collect();
    Description::build(type_name, fields, &[])
}

/// `type_description_interfaces/msg/TypeSource`: the `.msg`/`.idl` text a
/// type was generated from.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TypeSource {
    pub type_name: String,
    pub encoding: String,
    pub raw_file_contents: String,
}

impl RosMessage for TypeSource {
    const TYPE_NAME: &'static str = "type_description_interfaces/msg/TypeSource";

    fn type_description() -> Description {
        strings(
            Self::TYPE_NAME,
            &["type_name", "encoding", "raw_file_contents"],
        )
    }
}

/// `type_description_interfaces/msg/KeyValue`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct KeyValue {
    pub key: String,
    pub value: String,
}

impl RosMessage for KeyValue {
    const TYPE_NAME: &'static str = "type_description_interfaces/msg/KeyValue";

    fn type_description() -> Description {
        strings(Self::TYPE_NAME, &["key", "value"])
    }
}

/// `type_description_interfaces/srv/GetTypeDescription_Request`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct GetTypeDescriptionRequest {
    pub type_name: String,
    /// `RIHS01_<hex>`: the type is looked up by this, as rcl does.
    pub type_hash: String,
    pub include_type_sources: bool,
}

impl RosMessage for GetTypeDescriptionRequest {
    const TYPE_NAME: &'static str = "type_description_interfaces/srv/GetTypeDescription_Request";

    fn type_description() -> Description {
        use typehash::FieldType as T;
        Description::build(
            Self::TYPE_NAME,
            vec![
                field("type_name", T::string()),
                field("type_hash", T::string()),
                field("include_type_sources", T::primitive(field_type::BOOLEAN))
                    .with_default("True"),
            ],
            &[],
        )
    }
}

/// `type_description_interfaces/srv/GetTypeDescription_Response`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct GetTypeDescriptionResponse {
    pub successful: bool,
    pub failure_reason: String,
    pub type_description: TypeDescription,
    pub type_sources: Vec<TypeSource>,
    pub extra_information: Vec<KeyValue>,
}

impl RosMessage for GetTypeDescriptionResponse {
    const TYPE_NAME: &'static str = "type_description_interfaces/srv/GetTypeDescription_Response";

    fn type_description() -> Description {
        use typehash::FieldType as T;
        Description::build(
            Self::TYPE_NAME,
            vec![
                field("successful", T::primitive(field_type::BOOLEAN)),
                field("failure_reason", T::string()),
                field("type_description", T::nested(TypeDescription::TYPE_NAME)),
                field(
                    "type_sources",
                    T::sequence(T::nested(TypeSource::TYPE_NAME)),
                ),
                field(
                    "extra_information",
                    T::sequence(T::nested(KeyValue::TYPE_NAME)),
                ),
            ],
            &[
                TypeDescription::type_description(),
                TypeSource::type_description(),
                KeyValue::type_description(),
            ],
        )
    }
}

ros_service!(
    /// `type_description_interfaces/srv/GetTypeDescription`.
    GetTypeDescription,
    "type_description_interfaces/srv/GetTypeDescription",
    GetTypeDescriptionRequest,
    GetTypeDescriptionResponse
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msg::{from_cdr_le, to_cdr_le, RosService};
    use crate::typehash::rihs01_string;

    #[test]
    fn pinned_hashes() {
        // Expected values: `type_hashes` of share/type_description_interfaces/
        // {msg,srv}/*.json in the ros-jazzy-type-description-interfaces 2.0.3 wheel.
        let expected = [
            (
                rihs01_string(&FieldType::type_description()),
                "RIHS01_a70b6dd919645a03a3586f7f821defbc886ea3e531a1d95cc0f380a3973ccaa6",
            ),
            (
                rihs01_string(&Field::type_description()),
                "RIHS01_c0b01379cd4226281285ccaf6be46653968f855f7c5e41614ff5d7a854efef7c",
            ),
            (
                rihs01_string(&IndividualTypeDescription::type_description()),
                "RIHS01_55c827d86c3c141bdd318fe6c22e11190e4d3b37c8f4f9751a084aa05ce96560",
            ),
            (
                rihs01_string(&TypeDescription::type_description()),
                "RIHS01_739f2508c9fa3a6f330913ff5b9d25fb74159a077da71e1087f51a60c12a080b",
            ),
            (
                rihs01_string(&TypeSource::type_description()),
                "RIHS01_faeaec7596c04ecf5b6e99ad225e4c7cbb997ad5435f793526fb3984d011aae5",
            ),
            (
                rihs01_string(&KeyValue::type_description()),
                "RIHS01_274fe56bf14f33c7512e34c646a37579ee36779f745f049a9760763e817f0c42",
            ),
            (
                rihs01_string(&GetTypeDescription::type_description()),
                "RIHS01_69b9c19c1021405984cc60dbbb1edceb147a6538b411d812ba6afabeed962cd5",
            ),
            (
                rihs01_string(&GetTypeDescriptionRequest::type_description()),
                "RIHS01_470f56ccbcf13d55c78c8b735fb12da03e639e5acded994426c89d94778d9e28",
            ),
            (
                rihs01_string(&GetTypeDescriptionResponse::type_description()),
                "RIHS01_648c49d976240861a482f961c5621ddd0d2135d8cce6f297a76d4f6376d93b75",
            ),
        ];
        for (got, want) in expected {
            assert_eq!(got, want);
        }
    }

    #[test]
    fn a_description_becomes_a_message_with_its_defaults() {
        let desc = GetTypeDescriptionRequest::type_description();
        let msg = TypeDescription::from(&desc);
        assert_eq!(
            msg.type_description.type_name,
            GetTypeDescriptionRequest::TYPE_NAME
        );
        let flag = &msg.type_description.fields[2];
        assert_eq!(
            (
                flag.name.as_str(),
                flag.type_.type_id,
                flag.default_value.as_str()
            ),
            ("include_type_sources", field_type::BOOLEAN, "True")
        );
        let bytes = to_cdr_le(&msg).unwrap();
        assert_eq!(from_cdr_le::<TypeDescription>(&bytes).unwrap().0, msg);
    }
}

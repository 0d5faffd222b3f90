//! `rcl_interfaces` (ros2/rcl_interfaces, jazzy): parameters — values,
//! descriptors, the `/parameter_events` message and the six parameter
//! services every rclcpp/rclpy node serves under `~/`.

use serde::{Deserialize, Serialize};

use super::builtin_interfaces::Time;
use super::{ros_service, RosMessage};
use crate::typehash::{field_type, Field, FieldType, TypeDescription};

/// `rcl_interfaces/msg/ParameterType`: the type ids of [`ParameterValue::type_`].
pub mod parameter_type {
    pub const NOT_SET: u8 = 0;
    pub const BOOL: u8 = 1;
    pub const INTEGER: u8 = 2;
    pub const DOUBLE: u8 = 3;
    pub const STRING: u8 = 4;
    pub const BYTE_ARRAY: u8 = 5;
    pub const BOOL_ARRAY: u8 = 6;
    pub const INTEGER_ARRAY: u8 = 7;
    pub const DOUBLE_ARRAY: u8 = 8;
    pub const STRING_ARRAY: u8 = 9;
}

fn string_field(name: &str) -> Field {
    Field::new(name, FieldType::string())
}

fn string_sequence(name: &str) -> Field {
    Field::new(name, FieldType::sequence(FieldType::string()))
}

fn primitive(name: &str, type_id: u8) -> Field {
    Field::new(name, FieldType::primitive(type_id))
}

/// `rcl_interfaces/msg/ParameterValue`: a type id and one slot per type;
/// only the slot of `type_` is meaningful.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ParameterValue {
    #[serde(rename = "type")]
    pub type_: u8,
    pub bool_value: bool,
    pub integer_value: i64,
    pub double_value: f64,
    pub string_value: String,
    pub byte_array_value: Vec<u8>,
    pub bool_array_value: Vec<bool>,
    pub integer_array_value: Vec<i64>,
    pub double_array_value: Vec<f64>,
    pub string_array_value: Vec<String>,
}

impl ParameterValue {
    pub fn bool(value: bool) -> Self {
        ParameterValue {
            type_: parameter_type::BOOL,
            bool_value: value,
            ..Self::default()
        }
    }

    pub fn integer(value: i64) -> Self {
        ParameterValue {
            type_: parameter_type::INTEGER,
            integer_value: value,
            ..Self::default()
        }
    }

    pub fn double(value: f64) -> Self {
        ParameterValue {
            type_: parameter_type::DOUBLE,
            double_value: value,
            ..Self::default()
        }
    }

    pub fn string(value: impl Into<String>) -> Self {
        ParameterValue {
            type_: parameter_type::STRING,
            string_value: value.into(),
            ..Self::default()
        }
    }

    pub fn bool_array(values: Vec<bool>) -> Self {
        ParameterValue {
            type_: parameter_type::BOOL_ARRAY,
            bool_array_value: values,
            ..Self::default()
        }
    }

    pub fn integer_array(values: Vec<i64>) -> Self {
        ParameterValue {
            type_: parameter_type::INTEGER_ARRAY,
            integer_array_value: values,
            ..Self::default()
        }
    }

    pub fn double_array(values: Vec<f64>) -> Self {
        ParameterValue {
            type_: parameter_type::DOUBLE_ARRAY,
            double_array_value: values,
            ..Self::default()
        }
    }

    pub fn string_array(values: Vec<String>) -> Self {
        ParameterValue {
            type_: parameter_type::STRING_ARRAY,
            string_array_value: values,
            ..Self::default()
        }
    }
}

impl RosMessage for ParameterValue {
    const TYPE_NAME: &'static str = "rcl_interfaces/msg/ParameterValue";

    fn type_description() -> TypeDescription {
        use field_type::*;
        let sequence = |name: &str, type_id| {
            Field::new(name, FieldType::sequence(FieldType::primitive(type_id)))
        };
        TypeDescription::build(
            Self::TYPE_NAME,
            vec![
                primitive("type", UINT8),
                primitive("bool_value", BOOLEAN),
                primitive("integer_value", INT64),
                primitive("double_value", DOUBLE),
                string_field("string_value"),
                sequence("byte_array_value", BYTE),
                sequence("bool_array_value", BOOLEAN),
                sequence("integer_array_value", INT64),
                sequence("double_array_value", DOUBLE),
                string_sequence("string_array_value"),
            ],
            &[],
        )
    }
}

/// `rcl_interfaces/msg/Parameter`: `string name`, `ParameterValue value`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Parameter {
    pub name: String,
    pub value: ParameterValue,
}

impl RosMessage for Parameter {
    const TYPE_NAME: &'static str = "rcl_interfaces/msg/Parameter";

    fn type_description() -> TypeDescription {
        TypeDescription::build(
            Self::TYPE_NAME,
            vec![
                string_field("name"),
                Field::new("value", FieldType::nested(ParameterValue::TYPE_NAME)),
            ],
            &[ParameterValue::type_description()],
        )
    }
}

/// `rcl_interfaces/msg/FloatingPointRange`.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct FloatingPointRange {
    pub from_value: f64,
    pub to_value: f64,
    pub step: f64,
}

impl RosMessage for FloatingPointRange {
    const TYPE_NAME: &'static str = "rcl_interfaces/msg/FloatingPointRange";

    fn type_description() -> TypeDescription {
        use field_type::DOUBLE;
        TypeDescription::build(
            Self::TYPE_NAME,
            vec![
                primitive("from_value", DOUBLE),
                primitive("to_value", DOUBLE),
                primitive("step", DOUBLE),
            ],
            &[],
        )
    }
}

/// `rcl_interfaces/msg/IntegerRange`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct IntegerRange {
    pub from_value: i64,
    pub to_value: i64,
    pub step: u64,
}

impl RosMessage for IntegerRange {
    const TYPE_NAME: &'static str = "rcl_interfaces/msg/IntegerRange";

    fn type_description() -> TypeDescription {
        use field_type::{INT64, UINT64};
        TypeDescription::build(
            Self::TYPE_NAME,
            vec![
                primitive("from_value", INT64),
                primitive("to_value", INT64),
                primitive("step", UINT64),
            ],
            &[],
        )
    }
}

/// `rcl_interfaces/msg/ParameterDescriptor`. The ranges are bounded
/// sequences of at most one element.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ParameterDescriptor {
    pub name: String,
    #[serde(rename = "type")]
    pub type_: u8,
    pub description: String,
    pub additional_constraints: String,
    pub read_only: bool,
    pub dynamic_typing: bool,
    pub floating_point_range: Vec<FloatingPointRange>,
    pub integer_range: Vec<IntegerRange>,
}

impl RosMessage for ParameterDescriptor {
    const TYPE_NAME: &'static str = "rcl_interfaces/msg/ParameterDescriptor";

    fn type_description() -> TypeDescription {
        use field_type::{BOOLEAN, UINT8};
        let range = |name: &str, type_name: &str| {
            Field::new(
                name,
                FieldType::bounded_sequence(FieldType::nested(type_name), 1),
            )
        };
        TypeDescription::build(
            Self::TYPE_NAME,
            vec![
                string_field("name"),
                primitive("type", UINT8),
                string_field("description"),
                string_field("additional_constraints"),
                primitive("read_only", BOOLEAN).with_default("False"),
                primitive("dynamic_typing", BOOLEAN).with_default("False"),
                range("floating_point_range", FloatingPointRange::TYPE_NAME),
                range("integer_range", IntegerRange::TYPE_NAME),
            ],
            &[
                FloatingPointRange::type_description(),
                IntegerRange::type_description(),
            ],
        )
    }
}

/// `rcl_interfaces/msg/SetParametersResult`: `bool successful`, `string reason`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SetParametersResult {
    pub successful: bool,
    pub reason: String,
}

impl RosMessage for SetParametersResult {
    const TYPE_NAME: &'static str = "rcl_interfaces/msg/SetParametersResult";

    fn type_description() -> TypeDescription {
        TypeDescription::build(
            Self::TYPE_NAME,
            vec![
                primitive("successful", field_type::BOOLEAN),
                string_field("reason"),
            ],
            &[],
        )
    }
}

/// `rcl_interfaces/msg/ListParametersResult`: `string[] names`, `string[] prefixes`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ListParametersResult {
    pub names: Vec<String>,
    pub prefixes: Vec<String>,
}

impl RosMessage for ListParametersResult {
    const TYPE_NAME: &'static str = "rcl_interfaces/msg/ListParametersResult";

    fn type_description() -> TypeDescription {
        TypeDescription::build(
            Self::TYPE_NAME,
            vec![string_sequence("names"), string_sequence("prefixes")],
            &[],
        )
    }
}

/// `rcl_interfaces/msg/ParameterEvent`, published on `/parameter_events`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ParameterEvent {
    pub stamp: Time,
    /// Fully qualified name of the node whose parameters changed.
    pub node: String,
    pub new_parameters: Vec<Parameter>,
    pub changed_parameters: Vec<Parameter>,
    pub deleted_parameters: Vec<Parameter>,
}

impl RosMessage for ParameterEvent {
    const TYPE_NAME: &'static str = "rcl_interfaces/msg/ParameterEvent";

    fn type_description() -> TypeDescription {
        let parameters = |name: &str| {
            Field::new(
                name,
                FieldType::sequence(FieldType::nested(Parameter::TYPE_NAME)),
            )
        };
        TypeDescription::build(
            Self::TYPE_NAME,
            vec![
                Field::new("stamp", FieldType::nested(Time::TYPE_NAME)),
                string_field("node"),
                parameters("new_parameters"),
                parameters("changed_parameters"),
                parameters("deleted_parameters"),
            ],
            &[Time::type_description(), Parameter::type_description()],
        )
    }
}

/// Declares a request or response message: a struct with one field and
/// its description (every parameter service message has a single field).
macro_rules! one_field_message {
    ($(#[$doc:meta])* $name:ident, $ros:literal, $field:ident: $rust:ty => $field_type:expr, [$($refs:expr),*]) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
        pub struct $name {
            pub $field: $rust,
        }

        impl RosMessage for $name {
            const TYPE_NAME: &'static str = $ros;

            fn type_description() -> TypeDescription {
                TypeDescription::build(
                    Self::TYPE_NAME,
                    vec![Field::new(stringify!($field), $field_type)],
                    &[$($refs),*],
                )
            }
        }
    };
}

/// `rcl_interfaces/srv/ListParameters_Request`: `string[] prefixes`,
/// `uint64 depth` (0: [`ListParametersRequest::DEPTH_RECURSIVE`]).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ListParametersRequest {
    pub prefixes: Vec<String>,
    pub depth: u64,
}

impl ListParametersRequest {
    pub const DEPTH_RECURSIVE: u64 = 0;
}

impl RosMessage for ListParametersRequest {
    const TYPE_NAME: &'static str = "rcl_interfaces/srv/ListParameters_Request";

    fn type_description() -> TypeDescription {
        TypeDescription::build(
            Self::TYPE_NAME,
            vec![
                string_sequence("prefixes"),
                primitive("depth", field_type::UINT64),
            ],
            &[],
        )
    }
}

one_field_message!(
    /// `rcl_interfaces/srv/ListParameters_Response`.
    ListParametersResponse, "rcl_interfaces/srv/ListParameters_Response",
    result: ListParametersResult => FieldType::nested(ListParametersResult::TYPE_NAME),
    [ListParametersResult::type_description()]
);
ros_service!(
    /// `rcl_interfaces/srv/ListParameters`.
    ListParameters, "rcl_interfaces/srv/ListParameters",
    ListParametersRequest, ListParametersResponse
);

one_field_message!(
    /// `rcl_interfaces/srv/DescribeParameters_Request`.
    DescribeParametersRequest, "rcl_interfaces/srv/DescribeParameters_Request",
    names: Vec<String> => FieldType::sequence(FieldType::string()), []
);
one_field_message!(
    /// `rcl_interfaces/srv/DescribeParameters_Response`.
    DescribeParametersResponse, "rcl_interfaces/srv/DescribeParameters_Response",
    descriptors: Vec<ParameterDescriptor> =>
        FieldType::sequence(FieldType::nested(ParameterDescriptor::TYPE_NAME)),
    [ParameterDescriptor::type_description()]
);
ros_service!(
    /// `rcl_interfaces/srv/DescribeParameters`.
    DescribeParameters, "rcl_interfaces/srv/DescribeParameters",
    DescribeParametersRequest, DescribeParametersResponse
);

one_field_message!(
    /// `rcl_interfaces/srv/GetParameters_Request`.
    GetParametersRequest, "rcl_interfaces/srv/GetParameters_Request",
    names: Vec<String> => FieldType::sequence(FieldType::string()), []
);
one_field_message!(
    /// `rcl_interfaces/srv/GetParameters_Response`.
    GetParametersResponse, "rcl_interfaces/srv/GetParameters_Response",
    values: Vec<ParameterValue> =>
        FieldType::sequence(FieldType::nested(ParameterValue::TYPE_NAME)),
    [ParameterValue::type_description()]
);
ros_service!(
    /// `rcl_interfaces/srv/GetParameters`.
    GetParameters, "rcl_interfaces/srv/GetParameters",
    GetParametersRequest, GetParametersResponse
);

one_field_message!(
    /// `rcl_interfaces/srv/GetParameterTypes_Request`.
    GetParameterTypesRequest, "rcl_interfaces/srv/GetParameterTypes_Request",
    names: Vec<String> => FieldType::sequence(FieldType::string()), []
);
one_field_message!(
    /// `rcl_interfaces/srv/GetParameterTypes_Response`.
    GetParameterTypesResponse, "rcl_interfaces/srv/GetParameterTypes_Response",
    types: Vec<u8> => FieldType::sequence(FieldType::primitive(field_type::UINT8)), []
);
ros_service!(
    /// `rcl_interfaces/srv/GetParameterTypes`.
    GetParameterTypes, "rcl_interfaces/srv/GetParameterTypes",
    GetParameterTypesRequest, GetParameterTypesResponse
);

one_field_message!(
    /// `rcl_interfaces/srv/SetParameters_Request`.
    SetParametersRequest, "rcl_interfaces/srv/SetParameters_Request",
    parameters: Vec<Parameter> => FieldType::sequence(FieldType::nested(Parameter::TYPE_NAME)),
    [Parameter::type_description()]
);
one_field_message!(
    /// `rcl_interfaces/srv/SetParameters_Response`.
    SetParametersResponse, "rcl_interfaces/srv/SetParameters_Response",
    results: Vec<SetParametersResult> =>
        FieldType::sequence(FieldType::nested(SetParametersResult::TYPE_NAME)),
    [SetParametersResult::type_description()]
);
ros_service!(
    /// `rcl_interfaces/srv/SetParameters`.
    SetParameters, "rcl_interfaces/srv/SetParameters",
    SetParametersRequest, SetParametersResponse
);

one_field_message!(
    /// `rcl_interfaces/srv/SetParametersAtomically_Request`.
    SetParametersAtomicallyRequest, "rcl_interfaces/srv/SetParametersAtomically_Request",
    parameters: Vec<Parameter> => FieldType::sequence(FieldType::nested(Parameter::TYPE_NAME)),
    [Parameter::type_description()]
);
one_field_message!(
    /// `rcl_interfaces/srv/SetParametersAtomically_Response`.
    SetParametersAtomicallyResponse, "rcl_interfaces/srv/SetParametersAtomically_Response",
    result: SetParametersResult => FieldType::nested(SetParametersResult::TYPE_NAME),
    [SetParametersResult::type_description()]
);
ros_service!(
    /// `rcl_interfaces/srv/SetParametersAtomically`.
    SetParametersAtomically, "rcl_interfaces/srv/SetParametersAtomically",
    SetParametersAtomicallyRequest, SetParametersAtomicallyResponse
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msg::{from_cdr_le, to_cdr_le, RosService};
    use crate::typehash::rihs01_string;

    fn hash<T: RosMessage>() -> String {
        rihs01_string(&T::type_description())
    }

    fn service_hash<S: RosService>() -> String {
        rihs01_string(&S::type_description())
    }

    #[test]
    fn pinned_message_hashes() {
        // Expected values: `type_hashes` of share/rcl_interfaces/msg/*.json in
        // the ros-jazzy-rcl-interfaces 2.0.3 wheel (rosidl-generated).
        let expected = [
            (
                hash::<ParameterValue>(),
                "RIHS01_115fc089a387e23c7ecd3525c9189c379109119d6ab82e8dfbde0fdf6a7f9b68",
            ),
            (
                hash::<Parameter>(),
                "RIHS01_ddfe6442cffc462317adb5c92536a7b6dd55858c5c3e1e328165a6b73c2831af",
            ),
            (
                hash::<FloatingPointRange>(),
                "RIHS01_e6af23a23c177fee5f3075c8b1e435162a9b63c863d78c06017460b49684262d",
            ),
            (
                hash::<IntegerRange>(),
                "RIHS01_f7b7fdc0f65f07702e099218e13288c3963bcb9345bde78b560e6cd19800fc5a",
            ),
            (
                hash::<ParameterDescriptor>(),
                "RIHS01_52175dbfda6c51153101d33d2a9da05743f66f02d5ab2ca9ec4709b46b73d704",
            ),
            (
                hash::<SetParametersResult>(),
                "RIHS01_cfcc0fb0371ee5159b403960ef4300f8f9d2f1fd6117c8666b7f9654d528a9b1",
            ),
            (
                hash::<ListParametersResult>(),
                "RIHS01_237ae3428413dcbcfb452b510c42355f3a2b021dc091afa3e18526d57022f1cd",
            ),
            (
                hash::<ParameterEvent>(),
                "RIHS01_043e627780fcad87a22d225bc2a037361dba713fca6a6b9f4b869a5aa0393204",
            ),
        ];
        for (got, want) in expected {
            assert_eq!(got, want);
        }
    }

    #[test]
    fn pinned_service_hashes() {
        // share/rcl_interfaces/srv/*.json of the same wheel: the service,
        // and its request and response messages.
        let expected = [
            (
                service_hash::<ListParameters>(),
                "RIHS01_3e6062bfbb27bfb8730d4cef2558221f51a11646d78e7bb30a1e83afac3aad9d",
            ),
            (
                hash::<ListParametersRequest>(),
                "RIHS01_a1b0b5d6b967a5b8ac5bc8563c3ea678f349e312a6a4967227c5a96bc5ce38df",
            ),
            (
                hash::<ListParametersResponse>(),
                "RIHS01_31b937b82de3612426be79f231e386259f97e8dc843e3f2845288b4bfa296bdd",
            ),
            (
                service_hash::<DescribeParameters>(),
                "RIHS01_845b484d71eb0673dae682f2e3ba3c4851a65a3dcfb97bddd82c5b57e91e4cff",
            ),
            (
                hash::<DescribeParametersRequest>(),
                "RIHS01_05dd1c2bc87dec2627105c8070d6f9725c781a4f2ab852975bf105462b82b644",
            ),
            (
                hash::<DescribeParametersResponse>(),
                "RIHS01_ad6747319613c6131589e062e095b469a46cc764f7d0f12a001a49e6cd893995",
            ),
            (
                service_hash::<GetParameters>(),
                "RIHS01_bf9803d5c74cf989a5de3e0c2e99444599a627c7ff75f97b8c05b01003675cbc",
            ),
            (
                hash::<GetParametersRequest>(),
                "RIHS01_135a9e1c3d7cebef792f6687d7ddf99949b21a0bd9a320d863a9110a3f5cf4d6",
            ),
            (
                hash::<GetParametersResponse>(),
                "RIHS01_9fa773b46e39cc5d02db6224d8fd520bb9caeeffc2b27c96c1e59431baba9f2a",
            ),
            (
                service_hash::<GetParameterTypes>(),
                "RIHS01_da199c878688b3e530bdfe3ca8f74cb9fa0c303101e980a9e8f260e25e1c80ca",
            ),
            (
                hash::<GetParameterTypesRequest>(),
                "RIHS01_87d7ec5ef545d4daa289d500025d31fb2437bc8b8365ca367161c4dac4be33fd",
            ),
            (
                hash::<GetParameterTypesResponse>(),
                "RIHS01_ac1335dce67c478e669434f6ac2fbff34fcd529580f272d3006785ba8b54e47f",
            ),
            (
                service_hash::<SetParameters>(),
                "RIHS01_56eed9a67e169f9cb6c1f987bc88f868c14a8fc9f743a263bc734c154015d7e0",
            ),
            (
                hash::<SetParametersRequest>(),
                "RIHS01_130d46386b7e84ea9ecf60608a4d83cbe5e5cb7c6cc5b712b7a4e3a6c254e932",
            ),
            (
                hash::<SetParametersResponse>(),
                "RIHS01_7a0e8140a0b8d98308fa81a5403a766e610af29a239caf54b7553227906fc266",
            ),
            (
                service_hash::<SetParametersAtomically>(),
                "RIHS01_0e192ef259c07fc3c07a13191d27002222e65e00ccec653ca05e856f79285fcd",
            ),
            (
                hash::<SetParametersAtomicallyRequest>(),
                "RIHS01_db0bd950ed5ed867a0e90b225e44dea382d762c0762ff3e0ee842190042a59e5",
            ),
            (
                hash::<SetParametersAtomicallyResponse>(),
                "RIHS01_31b1a38c5b0b9d893ee24da45f69638f4561c78461d82d52750f429b534502b8",
            ),
        ];
        for (got, want) in expected {
            assert_eq!(got, want);
        }
    }

    #[test]
    fn parameter_value_round_trips_with_alignment() {
        let v = ParameterValue {
            double_array_value: vec![1.5, -2.0],
            ..ParameterValue::string("x")
        };
        let bytes = to_cdr_le(&v).unwrap();
        // type (1) then bool (1), padding to 8, i64, f64, "x": the layout
        // rosidl's CDR gives, checked by Python cyclonedds in the interop tests.
        assert_eq!(&bytes[..2], &[parameter_type::STRING, 0]);
        assert_eq!(from_cdr_le::<ParameterValue>(&bytes).unwrap().0, v);
    }
}

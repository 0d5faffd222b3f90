//! `diagnostic_msgs` (ros2/common_interfaces, jazzy): `DiagnosticArray`,
//! `DiagnosticStatus`, `KeyValue`.

use serde::{Deserialize, Serialize};

use super::std_msgs::Header;
use super::RosMessage;
use crate::typehash::{field_type, Field, FieldType, TypeDescription};

/// `diagnostic_msgs/msg/KeyValue`: `string key`, `string value`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct KeyValue {
    pub key: String,
    pub value: String,
}

impl KeyValue {
    pub fn new(key: &str, value: impl Into<String>) -> Self {
        KeyValue {
            key: key.to_owned(),
            value: value.into(),
        }
    }
}

impl RosMessage for KeyValue {
    const TYPE_NAME: &'static str = "diagnostic_msgs/msg/KeyValue";

    fn type_description() -> TypeDescription {
        TypeDescription::build(
            Self::TYPE_NAME,
            vec![
                Field::new("key", FieldType::string()),
                Field::new("value", FieldType::string()),
            ],
            &[],
        )
    }
}

/// `diagnostic_msgs/msg/DiagnosticStatus`: `byte level`, `string name`,
/// `string message`, `string hardware_id`, `KeyValue[] values`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct DiagnosticStatus {
    pub level: u8,
    pub name: String,
    pub message: String,
    pub hardware_id: String,
    pub values: Vec<KeyValue>,
}

impl DiagnosticStatus {
    // Possible levels of operation (`byte` constants).
    pub const OK: u8 = 0;
    pub const WARN: u8 = 1;
    pub const ERROR: u8 = 2;
    pub const STALE: u8 = 3;
}

impl RosMessage for DiagnosticStatus {
    const TYPE_NAME: &'static str = "diagnostic_msgs/msg/DiagnosticStatus";

    fn type_description() -> TypeDescription {
        TypeDescription::build(
            Self::TYPE_NAME,
            vec![
                // `.msg` `byte` is IDL `octet`: FIELD_TYPE_BYTE, not UINT8.
                Field::new("level", FieldType::primitive(field_type::BYTE)),
                Field::new("name", FieldType::string()),
                Field::new("message", FieldType::string()),
                Field::new("hardware_id", FieldType::string()),
                Field::new(
                    "values",
                    FieldType::sequence(FieldType::nested(KeyValue::TYPE_NAME)),
                ),
            ],
            &[KeyValue::type_description()],
        )
    }
}

/// `diagnostic_msgs/msg/DiagnosticArray`: `std_msgs/Header header`,
/// `DiagnosticStatus[] status`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct DiagnosticArray {
    pub header: Header,
    pub status: Vec<DiagnosticStatus>,
}

impl RosMessage for DiagnosticArray {
    const TYPE_NAME: &'static str = "diagnostic_msgs/msg/DiagnosticArray";

    fn type_description() -> TypeDescription {
        TypeDescription::build(
            Self::TYPE_NAME,
            vec![
                Field::new("header", FieldType::nested(Header::TYPE_NAME)),
                Field::new(
                    "status",
                    FieldType::sequence(FieldType::nested(DiagnosticStatus::TYPE_NAME)),
                ),
            ],
            &[
                Header::type_description(),
                DiagnosticStatus::type_description(),
            ],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msg::builtin_interfaces::Time;
    use crate::msg::{from_cdr_le, to_cdr_le};
    use crate::typehash::rihs01_string;

    #[test]
    fn pinned_hashes() {
        // Published in rosidl-generated code: diagnostic_msgs__msg__*__TYPE_HASH
        // / *_EXPECTED_HASH in diagnostic_msgs/msg/detail/*__struct.h and
        // *__description.c (e.g. hpmicro/hpm_sdk middleware/microros/kilted/
        // include/diagnostic_msgs/...; definitions identical on jazzy).
        assert_eq!(
            rihs01_string(&KeyValue::type_description()),
            "RIHS01_d68081eaa540288c5440753baecef0c4e16e81a5f78ad68902ded5100413bb42"
        );
        assert_eq!(
            rihs01_string(&DiagnosticStatus::type_description()),
            "RIHS01_b0e3e692ea2d54a8af2f4ef1930e81556a2db55216b771f8a7d2724ed47bf0e4"
        );
        assert_eq!(
            rihs01_string(&DiagnosticArray::type_description()),
            "RIHS01_5a8a36efb05fb25070fa0fb3810290c0e6cd4862b54a8fb975a1ee8dc55a333e"
        );
    }

    #[test]
    fn cdr_diagnostic_array() {
        // Expected bytes: Python cyclonedds 11.0.1, IdlStructs with typenames
        // "diagnostic_msgs::msg::dds_::{DiagnosticArray_,DiagnosticStatus_,
        // KeyValue_}" and "std_msgs::msg::dds_::Header_" (level: `byte`),
        // `.serialize(endianness=Little, use_version_2=False)`, 4-byte
        // encapsulation header stripped.
        let m = DiagnosticArray {
            header: Header {
                stamp: Time {
                    sec: 10,
                    nanosec: 20,
                },
                frame_id: String::new(),
            },
            status: vec![DiagnosticStatus {
                level: DiagnosticStatus::WARN,
                name: "ntari_dns_node: dns".into(),
                message: "probe slow".into(),
                hardware_id: "hub-1".into(),
                values: vec![KeyValue::new("pid", "42"), KeyValue::new("restarts", "0")],
            }],
        };
        let expected = [
            0x0a, 0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00,
            0x6e, 0x74, 0x61, 0x72, 0x69, 0x5f, 0x64, 0x6e, 0x73, 0x5f, 0x6e, 0x6f, 0x64, 0x65,
            0x3a, 0x20, 0x64, 0x6e, 0x73, 0x00, 0x0b, 0x00, 0x00, 0x00, 0x70, 0x72, 0x6f, 0x62,
            0x65, 0x20, 0x73, 0x6c, 0x6f, 0x77, 0x00, 0x00, 0x06, 0x00, 0x00, 0x00, 0x68, 0x75,
            0x62, 0x2d, 0x31, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00,
            0x70, 0x69, 0x64, 0x00, 0x03, 0x00, 0x00, 0x00, 0x34, 0x32, 0x00, 0x00, 0x09, 0x00,
            0x00, 0x00, 0x72, 0x65, 0x73, 0x74, 0x61, 0x72, 0x74, 0x73, 0x00, 0x00, 0x00, 0x00,
            0x02, 0x00, 0x00, 0x00, 0x30, 0x00,
        ];
        assert_eq!(to_cdr_le(&m).ok(), Some(expected.to_vec()));
        assert_eq!(
            from_cdr_le::<DiagnosticArray>(&expected).ok(),
            Some((m, expected.len()))
        );
    }
}

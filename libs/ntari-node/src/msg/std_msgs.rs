//! `std_msgs` (ros2/common_interfaces, jazzy): `Bool`, `String`, `Header`.

use serde::{Deserialize, Serialize};

use super::builtin_interfaces::Time;
use super::RosMessage;
use crate::typehash::{field_type, Field, FieldType, TypeDescription};

/// `std_msgs/msg/Bool`: `bool data`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct Bool {
    pub data: bool,
}

impl RosMessage for Bool {
    const TYPE_NAME: &'static str = "std_msgs/msg/Bool";

    fn type_description() -> TypeDescription {
        TypeDescription::build(
            Self::TYPE_NAME,
            vec![Field::new(
                "data",
                FieldType::primitive(field_type::BOOLEAN),
            )],
            &[],
        )
    }
}

/// `std_msgs/msg/String`: `string data` (named `StringMsg` to keep Rust's
/// `String` usable).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct StringMsg {
    pub data: String,
}

impl RosMessage for StringMsg {
    const TYPE_NAME: &'static str = "std_msgs/msg/String";

    fn type_description() -> TypeDescription {
        TypeDescription::build(
            Self::TYPE_NAME,
            vec![Field::new("data", FieldType::string())],
            &[],
        )
    }
}

/// `std_msgs/msg/Header`: `builtin_interfaces/Time stamp`, `string frame_id`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct Header {
    pub stamp: Time,
    pub frame_id: String,
}

impl RosMessage for Header {
    const TYPE_NAME: &'static str = "std_msgs/msg/Header";

    fn type_description() -> TypeDescription {
        TypeDescription::build(
            Self::TYPE_NAME,
            vec![
                Field::new("stamp", FieldType::nested(Time::TYPE_NAME)),
                Field::new("frame_id", FieldType::string()),
            ],
            &[Time::type_description()],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msg::{from_cdr_le, to_cdr_le};
    use crate::typehash::{rihs01_string, user_data_for};

    #[test]
    fn pinned_hashes() {
        // Bool and String: the Jazzy values given in the design brief, also
        // published by several projects from `ros2 interface show
        // --type-description-hashes` on jazzy. Header: rosidl-generated
        // std_msgs__msg__Header__EXPECTED_HASH in `*__description.c` files.
        assert_eq!(
            rihs01_string(&Bool::type_description()),
            "RIHS01_feb91e995ff9ebd09c0cb3d2aed18b11077585839fb5db80193b62d74528f6c9"
        );
        assert_eq!(
            user_data_for(&StringMsg::type_description()),
            "typehash=RIHS01_df668c740482bbd48fb39d76a70dfd4bd59db1288021743503259e948f6b1a18;"
        );
        assert_eq!(
            rihs01_string(&Header::type_description()),
            "RIHS01_f49fb3ae2cf070f793645ff749683ac6b06203e41c891e17701b1cb597ce6a01"
        );
    }

    // Expected bytes below: Python cyclonedds 11.0.1, IdlStruct with
    // typename "std_msgs::msg::dds_::<Name>_" and the same fields,
    // `.serialize(endianness=Little, use_version_2=False)`, with the 4-byte
    // encapsulation header `00 01 00 00` stripped.

    #[test]
    fn cdr_bool() {
        let m = Bool { data: true };
        assert_eq!(to_cdr_le(&m).ok(), Some(vec![0x01]));
        assert_eq!(from_cdr_le::<Bool>(&[0x01]).ok(), Some((m, 1)));
    }

    #[test]
    fn cdr_string() {
        let m = StringMsg {
            data: "{\"ok\":true}".into(),
        };
        let expected = [
            0x0c, 0x00, 0x00, 0x00, 0x7b, 0x22, 0x6f, 0x6b, 0x22, 0x3a, 0x74, 0x72, 0x75, 0x65,
            0x7d, 0x00,
        ];
        assert_eq!(to_cdr_le(&m).ok(), Some(expected.to_vec()));
        assert_eq!(
            from_cdr_le::<StringMsg>(&expected).ok(),
            Some((m, expected.len()))
        );
    }

    #[test]
    fn cdr_header() {
        let m = Header {
            stamp: Time {
                sec: 1_700_000_000,
                nanosec: 5,
            },
            frame_id: "map".into(),
        };
        let expected = [
            0x00, 0xf1, 0x53, 0x65, 0x05, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x6d, 0x61,
            0x70, 0x00,
        ];
        assert_eq!(to_cdr_le(&m).ok(), Some(expected.to_vec()));
        assert_eq!(
            from_cdr_le::<Header>(&expected).ok(),
            Some((m, expected.len()))
        );
    }
}

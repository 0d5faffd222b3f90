//! `service_msgs` (ros2/rcl_interfaces, jazzy): `ServiceEventInfo`, which
//! every service's `_Event` message references and so enters every service
//! type hash.

use serde::{Deserialize, Serialize};

use super::builtin_interfaces::Time;
use super::RosMessage;
use crate::typehash::{field_type, Field, FieldType, TypeDescription};

/// `service_msgs/msg/ServiceEventInfo`: `uint8 event_type`,
/// `builtin_interfaces/Time stamp`, `char[16] client_gid`,
/// `int64 sequence_number`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct ServiceEventInfo {
    pub event_type: u8,
    pub stamp: Time,
    pub client_gid: [u8; 16],
    pub sequence_number: i64,
}

impl ServiceEventInfo {
    pub const REQUEST_SENT: u8 = 0;
    pub const REQUEST_RECEIVED: u8 = 1;
    pub const RESPONSE_SENT: u8 = 2;
    pub const RESPONSE_RECEIVED: u8 = 3;
}

impl RosMessage for ServiceEventInfo {
    const TYPE_NAME: &'static str = "service_msgs/msg/ServiceEventInfo";

    fn type_description() -> TypeDescription {
        TypeDescription::build(
            Self::TYPE_NAME,
            vec![
                Field::new("event_type", FieldType::primitive(field_type::UINT8)),
                Field::new("stamp", FieldType::nested(Time::TYPE_NAME)),
                // `.msg` `char` is IDL `uint8`.
                Field::new(
                    "client_gid",
                    FieldType::array(FieldType::primitive(field_type::UINT8), 16),
                ),
                Field::new("sequence_number", FieldType::primitive(field_type::INT64)),
            ],
            &[Time::type_description()],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msg::{from_cdr_le, to_cdr_le};
    use crate::typehash::rihs01_string;

    #[test]
    fn pinned_hash() {
        // service_msgs__msg__ServiceEventInfo__EXPECTED_HASH in every
        // rosidl-generated `srv/detail/*__description.c` (e.g. turtlesim's).
        assert_eq!(
            rihs01_string(&ServiceEventInfo::type_description()),
            "RIHS01_41bcbbe07a75c9b52bc96bfd5c24d7f0fc0a08c0cb7921b3373c5732345a6f45"
        );
    }

    #[test]
    fn cdr_bytes() {
        // Expected bytes: Python cyclonedds 11.0.1, IdlStruct typename
        // "service_msgs::msg::dds_::ServiceEventInfo_" (client_gid:
        // array[uint8, 16]), `.serialize(endianness=Little,
        // use_version_2=False)`, 4-byte encapsulation header stripped.
        let mut client_gid = [0u8; 16];
        for (i, b) in client_gid.iter_mut().enumerate() {
            *b = i as u8;
        }
        let m = ServiceEventInfo {
            event_type: ServiceEventInfo::RESPONSE_SENT,
            stamp: Time { sec: 3, nanosec: 4 },
            client_gid,
            sequence_number: -5,
        };
        let expected = [
            0x02, 0x00, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x01,
            0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f,
            0x00, 0x00, 0x00, 0x00, 0xfb, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        ];
        assert_eq!(to_cdr_le(&m).ok(), Some(expected.to_vec()));
        assert_eq!(
            from_cdr_le::<ServiceEventInfo>(&expected).ok(),
            Some((m, expected.len()))
        );
    }
}

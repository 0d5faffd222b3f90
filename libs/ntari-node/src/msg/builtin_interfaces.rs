//! `builtin_interfaces` (ros2/rcl_interfaces, jazzy): `Time`, `Duration`.

use serde::{Deserialize, Serialize};

use super::RosMessage;
use crate::typehash::{field_type, Field, FieldType, TypeDescription};

/// `builtin_interfaces/msg/Time`: `int32 sec`, `uint32 nanosec`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub struct Time {
    pub sec: i32,
    pub nanosec: u32,
}

impl Time {
    /// Splits nanoseconds since the epoch into `sec`/`nanosec`. Seconds
    /// saturate at the `i32` range (rclcpp's own conversion would overflow).
    pub fn from_nanos(nanos: i64) -> Self {
        let sec = nanos.div_euclid(1_000_000_000);
        // rem_euclid keeps nanosec in 0..1e9, as ROS requires.
        let nanosec = nanos.rem_euclid(1_000_000_000) as u32;
        Time {
            sec: sec.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32,
            nanosec,
        }
    }

    /// The wall clock now (0 if the clock is before 1970).
    pub fn now() -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        Self::from_nanos(nanos)
    }
}

impl RosMessage for Time {
    const TYPE_NAME: &'static str = "builtin_interfaces/msg/Time";

    fn type_description() -> TypeDescription {
        sec_nanosec(Self::TYPE_NAME)
    }
}

/// `builtin_interfaces/msg/Duration`: `int32 sec`, `uint32 nanosec`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub struct Duration {
    pub sec: i32,
    pub nanosec: u32,
}

impl RosMessage for Duration {
    const TYPE_NAME: &'static str = "builtin_interfaces/msg/Duration";

    fn type_description() -> TypeDescription {
        sec_nanosec(Self::TYPE_NAME)
    }
}

// Time and Duration have the same fields; only the type name differs.
fn sec_nanosec(type_name: &str) -> TypeDescription {
    TypeDescription::build(
        type_name,
        vec![
            Field::new("sec", FieldType::primitive(field_type::INT32)),
            Field::new("nanosec", FieldType::primitive(field_type::UINT32)),
        ],
        &[],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msg::{from_cdr_le, to_cdr_le};
    use crate::typehash::rihs01_string;

    #[test]
    fn pinned_hashes() {
        // Published in rosidl-generated `*__description.c` files as
        // builtin_interfaces__msg__Time__EXPECTED_HASH / ..Duration.. (e.g.
        // hpmicro/hpm_sdk middleware/microros/kilted/include/builtin_interfaces/...).
        assert_eq!(
            rihs01_string(&Time::type_description()),
            "RIHS01_b106235e25a4c5ed35098aa0a61a3ee9c9b18d197f398b0e4206cea9acf9c197"
        );
        assert_eq!(
            rihs01_string(&Duration::type_description()),
            "RIHS01_e8d009f659816f758b75334ee1a9ca5b5c0b859843261f14c7f937349599d93b"
        );
    }

    #[test]
    fn time_from_nanos() {
        assert_eq!(
            Time::from_nanos(1_500_000_001),
            Time {
                sec: 1,
                nanosec: 500_000_001
            }
        );
        assert_eq!(
            Time::from_nanos(-1),
            Time {
                sec: -1,
                nanosec: 999_999_999
            }
        );
    }

    #[test]
    fn cdr_bytes() {
        // Expected bytes: Python cyclonedds 11.0.1, IdlStruct
        // typename="builtin_interfaces::msg::dds_::Time_" {sec: int32,
        // nanosec: uint32}, Time(sec=-2, nanosec=123456789).serialize(
        // use_version_2=False), 4-byte encapsulation header stripped.
        let t = Time {
            sec: -2,
            nanosec: 123_456_789,
        };
        let expected = [0xfe, 0xff, 0xff, 0xff, 0x15, 0xcd, 0x5b, 0x07];
        assert_eq!(to_cdr_le(&t).ok(), Some(expected.to_vec()));
        assert_eq!(from_cdr_le::<Time>(&expected).ok(), Some((t, 8)));
    }
}

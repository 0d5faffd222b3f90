//! `rmw_dds_common` (ros2/rmw_dds_common, jazzy): the `ros_discovery_info`
//! graph messages.
//!
//! Jazzy `Gid.msg` is `char[16] data` (16 bytes since rmw_dds_common 2.0.0,
//! "Change Gid.msg to be 16 bytes", ros2/rmw_dds_common#68; 24 bytes before).

use serde::{Deserialize, Serialize};

use super::RosMessage;
use crate::typehash::{field_type, Field, FieldType, TypeDescription};

/// Size of `rmw_dds_common/msg/Gid.data` on jazzy.
pub const GID_SIZE: usize = 16;

/// Max length of `NodeEntitiesInfo` namespace and name (`string<=256`).
pub const NODE_NAME_MAX_LEN: usize = 256;

/// `rmw_dds_common/msg/Gid`: `char[16] data` (a DDS GUID).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub struct Gid {
    pub data: [u8; GID_SIZE],
}

impl RosMessage for Gid {
    const TYPE_NAME: &'static str = "rmw_dds_common/msg/Gid";

    fn type_description() -> TypeDescription {
        TypeDescription::build(
            Self::TYPE_NAME,
            // `.msg` `char` is `uint8` in IDL, so FIELD_TYPE_UINT8_ARRAY.
            vec![Field::new(
                "data",
                FieldType::array(FieldType::primitive(field_type::UINT8), GID_SIZE as u64),
            )],
            &[],
        )
    }
}

/// `rmw_dds_common/msg/NodeEntitiesInfo`: `string<=256 node_namespace`,
/// `string<=256 node_name`, `Gid[] reader_gid_seq`, `Gid[] writer_gid_seq`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct NodeEntitiesInfo {
    pub node_namespace: String,
    pub node_name: String,
    pub reader_gid_seq: Vec<Gid>,
    pub writer_gid_seq: Vec<Gid>,
}

impl RosMessage for NodeEntitiesInfo {
    const TYPE_NAME: &'static str = "rmw_dds_common/msg/NodeEntitiesInfo";

    fn type_description() -> TypeDescription {
        let max = NODE_NAME_MAX_LEN as u64;
        TypeDescription::build(
            Self::TYPE_NAME,
            vec![
                Field::new("node_namespace", FieldType::bounded_string(max)),
                Field::new("node_name", FieldType::bounded_string(max)),
                Field::new(
                    "reader_gid_seq",
                    FieldType::sequence(FieldType::nested(Gid::TYPE_NAME)),
                ),
                Field::new(
                    "writer_gid_seq",
                    FieldType::sequence(FieldType::nested(Gid::TYPE_NAME)),
                ),
            ],
            &[Gid::type_description()],
        )
    }
}

/// `rmw_dds_common/msg/ParticipantEntitiesInfo`: `Gid gid`,
/// `NodeEntitiesInfo[] node_entities_info_seq`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct ParticipantEntitiesInfo {
    pub gid: Gid,
    pub node_entities_info_seq: Vec<NodeEntitiesInfo>,
}

impl RosMessage for ParticipantEntitiesInfo {
    const TYPE_NAME: &'static str = "rmw_dds_common/msg/ParticipantEntitiesInfo";

    fn type_description() -> TypeDescription {
        TypeDescription::build(
            Self::TYPE_NAME,
            vec![
                Field::new("gid", FieldType::nested(Gid::TYPE_NAME)),
                Field::new(
                    "node_entities_info_seq",
                    FieldType::sequence(FieldType::nested(NodeEntitiesInfo::TYPE_NAME)),
                ),
            ],
            &[
                Gid::type_description(),
                NodeEntitiesInfo::type_description(),
            ],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msg::{from_cdr_le, to_cdr_le};
    use crate::typehash::rihs01_string;

    #[test]
    fn pinned_hashes() {
        // ParticipantEntitiesInfo: the Jazzy value given in the design brief.
        // Gid / NodeEntitiesInfo: rosidl-generated rmw_dds_common
        // *__description.c (`rmw_dds_common__msg__Gid__get_type_hash`, ...).
        assert_eq!(
            rihs01_string(&Gid::type_description()),
            "RIHS01_ab6f21cfbb0a6dbb837161e1110c2051a2850ed9f9c53944d7115d9bcebedf71"
        );
        assert_eq!(
            rihs01_string(&NodeEntitiesInfo::type_description()),
            "RIHS01_8ffef65ee2d088c63b1e8fcd31e800ba9fc8dbe0ee15ca60d1676de5218087a7"
        );
        assert_eq!(
            rihs01_string(&ParticipantEntitiesInfo::type_description()),
            "RIHS01_91a0593bacdcc50ea9bdcf849a938b128412cc1ea821245c663bcd26f83c295e"
        );
    }

    fn gid(base: u8) -> Gid {
        let mut data = [0u8; GID_SIZE];
        for (i, b) in data.iter_mut().enumerate() {
            *b = base.wrapping_add(i as u8);
        }
        Gid { data }
    }

    #[test]
    fn cdr_participant_entities_info() {
        // Expected bytes: Python cyclonedds 11.0.1, IdlStructs with typenames
        // "rmw_dds_common::msg::dds_::{Gid_,NodeEntitiesInfo_,
        // ParticipantEntitiesInfo_}" (data: array[uint8, 16], names:
        // bounded_str[256]), `.serialize(endianness=Little,
        // use_version_2=False)`, 4-byte encapsulation header stripped.
        let m = ParticipantEntitiesInfo {
            gid: gid(0x10),
            node_entities_info_seq: vec![NodeEntitiesInfo {
                node_namespace: "/ntari".into(),
                node_name: "ntari_dns_node".into(),
                reader_gid_seq: vec![gid(0x20)],
                writer_gid_seq: vec![gid(0x30), gid(0x40)],
            }],
        };
        let expected = [
            0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d,
            0x1e, 0x1f, 0x01, 0x00, 0x00, 0x00, 0x07, 0x00, 0x00, 0x00, 0x2f, 0x6e, 0x74, 0x61,
            0x72, 0x69, 0x00, 0x00, 0x0f, 0x00, 0x00, 0x00, 0x6e, 0x74, 0x61, 0x72, 0x69, 0x5f,
            0x64, 0x6e, 0x73, 0x5f, 0x6e, 0x6f, 0x64, 0x65, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00,
            0x20, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28, 0x29, 0x2a, 0x2b, 0x2c, 0x2d,
            0x2e, 0x2f, 0x02, 0x00, 0x00, 0x00, 0x30, 0x31, 0x32, 0x33, 0x34, 0x35, 0x36, 0x37,
            0x38, 0x39, 0x3a, 0x3b, 0x3c, 0x3d, 0x3e, 0x3f, 0x40, 0x41, 0x42, 0x43, 0x44, 0x45,
            0x46, 0x47, 0x48, 0x49, 0x4a, 0x4b, 0x4c, 0x4d, 0x4e, 0x4f,
        ];
        assert_eq!(to_cdr_le(&m).ok(), Some(expected.to_vec()));
        assert_eq!(
            from_cdr_le::<ParticipantEntitiesInfo>(&expected).ok(),
            Some((m, expected.len()))
        );
    }
}

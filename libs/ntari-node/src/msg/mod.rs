//! ROS 2 message and service types used by NTARI nodes.
//!
//! Each type is a plain serde struct whose field order is the `.msg` field
//! order, so CDR (de)serialisation through `cdr-encoding` matches what
//! rosidl-generated code puts on the wire. Each also carries its ROS type
//! name and a [`TypeDescription`] from which the Jazzy RIHS01 type hash is
//! computed (see [`crate::typehash`]).

use serde::{de::DeserializeOwned, Serialize};

use crate::typehash::TypeDescription;

pub mod builtin_interfaces;
pub mod diagnostic_msgs;
pub mod lifecycle_msgs;
pub mod rcl_interfaces;
pub mod rmw_dds_common;
pub mod service_msgs;
pub mod std_msgs;
pub mod type_description_interfaces;

/// A ROS 2 message type (`pkg/msg/Name`, or a service's `pkg/srv/Name_Request`).
pub trait RosMessage: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// Fully qualified ROS name, e.g. `std_msgs/msg/Bool`.
    const TYPE_NAME: &'static str;

    /// The type's own description plus every type it references, as rosidl
    /// builds it for hashing.
    fn type_description() -> TypeDescription;
}

/// A ROS 2 service type (`pkg/srv/Name`).
pub trait RosService: Send + Sync + 'static {
    /// Fully qualified ROS name, e.g. `lifecycle_msgs/srv/GetState`.
    const TYPE_NAME: &'static str;
    type Request: RosMessage;
    type Response: RosMessage;

    /// The service type description (request, response and event message
    /// fields) that rosidl hashes for the service as a whole.
    fn type_description() -> TypeDescription;
}

/// Description of service `service_type` built from its request and
/// response messages, as rosidl hashes it (see
/// [`crate::typehash::service_description`]). Services implement
/// [`RosService::type_description`] with this.
pub fn service_type_description<Req: RosMessage, Resp: RosMessage>(
    service_type: &str,
) -> TypeDescription {
    crate::typehash::service_description(
        service_type,
        &Req::type_description(),
        &Resp::type_description(),
        &service_msgs::ServiceEventInfo::type_description(),
    )
}

/// Declares service type `$name` (a unit struct) from its request and
/// response messages, with the type description rosidl hashes for it.
macro_rules! ros_service {
    ($(#[$doc:meta])* $name:ident, $ros:literal, $request:ty, $response:ty) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
        pub struct $name;

        impl $crate::msg::RosService for $name {
            const TYPE_NAME: &'static str = $ros;
            type Request = $request;
            type Response = $response;

            fn type_description() -> $crate::typehash::TypeDescription {
                $crate::msg::service_type_description::<$request, $response>(Self::TYPE_NAME)
            }
        }
    };
}
pub(crate) use ros_service;

/// DDS type name of a ROS type: `pkg/msg/Name` → `pkg::msg::dds_::Name_`
/// (also `pkg/srv/Name_Request` → `pkg::srv::dds_::Name_Request_`).
pub fn dds_type_name(ros_type_name: &str) -> String {
    match ros_type_name.rsplit_once('/') {
        Some((prefix, name)) => format!("{}::dds_::{}_", prefix.replace('/', "::"), name),
        None => format!("{ros_type_name}_"),
    }
}

/// Little-endian plain CDR (XCDR1) encoding of a message body, without the
/// 4-byte encapsulation header.
pub fn to_cdr_le<T: Serialize>(msg: &T) -> Result<Vec<u8>, cdr_encoding::Error> {
    cdr_encoding::to_vec::<T, byteorder::LittleEndian>(msg)
}

/// Decodes a little-endian CDR body (encapsulation header already removed).
/// Returns the value and the number of bytes consumed.
pub fn from_cdr_le<T: DeserializeOwned>(body: &[u8]) -> Result<(T, usize), cdr_encoding::Error> {
    cdr_encoding::from_bytes::<T, byteorder::LittleEndian>(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dds_type_names() {
        assert_eq!(
            dds_type_name("std_msgs/msg/Bool"),
            "std_msgs::msg::dds_::Bool_"
        );
        assert_eq!(
            dds_type_name("lifecycle_msgs/srv/GetState_Request"),
            "lifecycle_msgs::srv::dds_::GetState_Request_"
        );
    }
}

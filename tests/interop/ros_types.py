"""ROS 2 message and service types as Python ``cyclonedds`` IDL structs.

Why this exists: nothing in the test environment can run ROS 2, yet the tests
must talk to our Rust nodes exactly as ``ros2 topic echo`` / ``ros2 lifecycle``
would.  rmw_cyclonedds_cpp (Jazzy) puts a ROS type ``pkg/msg/T`` on the wire
as the DDS type ``pkg::msg::dds_::T_``, serialised as plain XCDR1 (CDR,
encapsulation ``00 01 00 00``, little endian).  A Python ``IdlStruct`` with
the same type name and the same field list produces the same bytes, so it is
a faithful stand-in for the ROS client tools.

Field lists were checked against the Jazzy sources: ros2/rcl_interfaces
(lifecycle_msgs, builtin_interfaces), ros2/common_interfaces (std_msgs,
diagnostic_msgs) and ros2/rmw_dds_common (Gid is ``char[16]`` since Iron, i.e.
16 bytes; ParticipantEntitiesInfo, NodeEntitiesInfo).

Services: rmw_cyclonedds prefixes every request and reply payload with a
16-byte header (``uint64 client_guid``, ``int64 sequence_number``) right after
the encapsulation header.  Here that header is modelled as the first two
fields of every ``*_Request`` / ``*_Response`` struct (it is 8-byte aligned
and 16 bytes long, so the alignment of the real fields is unchanged).
A request or response with no fields carries rosidl's dummy member
``uint8 structure_needs_at_least_one_member``.

XCDR1: these structs are final, non-optional and keyless, for which the
Python binding's native representation is XCDR1; ``rosgraph`` additionally
pins writers to XCDR1 with the DataRepresentation QoS policy (see there).
"""

from dataclasses import dataclass, field

from cyclonedds.idl import IdlStruct
from cyclonedds.idl.types import array, int32, int64, sequence, uint8, uint32, uint64

__all__ = [
    # std_msgs / builtin_interfaces
    "Bool", "String", "Time", "Header",
    # diagnostic_msgs
    "KeyValue", "DiagnosticStatus", "DiagnosticArray",
    # rmw_dds_common
    "Gid", "NodeEntitiesInfo", "ParticipantEntitiesInfo",
    # lifecycle_msgs
    "State", "Transition", "TransitionDescription", "TransitionEvent",
    "ChangeState_Request", "ChangeState_Response",
    "GetState_Request", "GetState_Response",
    "GetAvailableStates_Request", "GetAvailableStates_Response",
    "GetAvailableTransitions_Request", "GetAvailableTransitions_Response",
    "SERVICE_TYPES", "dds_type_name",
    # ids and labels
    "STATE_LABELS", "TRANSITION_LABELS", "S", "T",
]


def dds_type_name(ros_type: str) -> str:
    """``pkg/msg/T`` -> ``pkg::msg::dds_::T_`` (the rmw_cyclonedds mangling)."""
    pkg, kind, name = ros_type.split("/")
    return f"{pkg}::{kind}::dds_::{name}_"


# --------------------------------------------------------------------------
# std_msgs, builtin_interfaces
# --------------------------------------------------------------------------

@dataclass
class Bool(IdlStruct, typename="std_msgs::msg::dds_::Bool_"):
    data: bool = False


@dataclass
class String(IdlStruct, typename="std_msgs::msg::dds_::String_"):
    data: str = ""


@dataclass
class Time(IdlStruct, typename="builtin_interfaces::msg::dds_::Time_"):
    sec: int32 = 0
    nanosec: uint32 = 0


@dataclass
class Header(IdlStruct, typename="std_msgs::msg::dds_::Header_"):
    stamp: Time = field(default_factory=Time)
    frame_id: str = ""


# --------------------------------------------------------------------------
# diagnostic_msgs
# --------------------------------------------------------------------------

@dataclass
class KeyValue(IdlStruct, typename="diagnostic_msgs::msg::dds_::KeyValue_"):
    key: str = ""
    value: str = ""


@dataclass
class DiagnosticStatus(IdlStruct, typename="diagnostic_msgs::msg::dds_::DiagnosticStatus_"):
    OK = 0
    WARN = 1
    ERROR = 2
    STALE = 3

    level: uint8 = 0  # ``byte`` in the .msg; one octet on the wire
    name: str = ""
    message: str = ""
    hardware_id: str = ""
    values: sequence[KeyValue] = field(default_factory=list)


@dataclass
class DiagnosticArray(IdlStruct, typename="diagnostic_msgs::msg::dds_::DiagnosticArray_"):
    header: Header = field(default_factory=Header)
    status: sequence[DiagnosticStatus] = field(default_factory=list)


# --------------------------------------------------------------------------
# rmw_dds_common: the ``ros_discovery_info`` topic behind ``ros2 node list``
# --------------------------------------------------------------------------

@dataclass
class Gid(IdlStruct, typename="rmw_dds_common::msg::dds_::Gid_"):
    """16-byte DDS GUID of a participant, reader or writer (Jazzy: ``char[16]``)."""
    data: array[uint8, 16] = field(default_factory=lambda: [0] * 16)

    @classmethod
    def from_bytes(cls, raw: bytes) -> "Gid":
        assert len(raw) == 16, raw
        return cls(list(raw))

    def to_bytes(self) -> bytes:
        return bytes(self.data)


@dataclass
class NodeEntitiesInfo(IdlStruct, typename="rmw_dds_common::msg::dds_::NodeEntitiesInfo_"):
    node_namespace: str = ""
    node_name: str = ""
    reader_gid_seq: sequence[Gid] = field(default_factory=list)
    writer_gid_seq: sequence[Gid] = field(default_factory=list)


@dataclass
class ParticipantEntitiesInfo(IdlStruct, typename="rmw_dds_common::msg::dds_::ParticipantEntitiesInfo_"):
    gid: Gid = field(default_factory=Gid)
    node_entities_info_seq: sequence[NodeEntitiesInfo] = field(default_factory=list)


# --------------------------------------------------------------------------
# lifecycle_msgs (jazzy)
# --------------------------------------------------------------------------

class S:
    """lifecycle_msgs/msg/State ids."""
    UNKNOWN = 0
    UNCONFIGURED = 1
    INACTIVE = 2
    ACTIVE = 3
    FINALIZED = 4
    CONFIGURING = 10
    CLEANINGUP = 11
    SHUTTINGDOWN = 12
    ACTIVATING = 13
    DEACTIVATING = 14
    ERRORPROCESSING = 15


class T:
    """lifecycle_msgs/msg/Transition ids (jazzy numbering)."""
    CREATE = 0
    CONFIGURE = 1
    CLEANUP = 2
    ACTIVATE = 3
    DEACTIVATE = 4
    UNCONFIGURED_SHUTDOWN = 5
    INACTIVE_SHUTDOWN = 6
    ACTIVE_SHUTDOWN = 7
    DESTROY = 8
    ON_CONFIGURE_SUCCESS = 10
    ON_CONFIGURE_FAILURE = 11
    ON_CONFIGURE_ERROR = 12
    ON_CLEANUP_SUCCESS = 20
    ON_CLEANUP_FAILURE = 21
    ON_CLEANUP_ERROR = 22
    ON_ACTIVATE_SUCCESS = 30
    ON_ACTIVATE_FAILURE = 31
    ON_ACTIVATE_ERROR = 32
    ON_DEACTIVATE_SUCCESS = 40
    ON_DEACTIVATE_FAILURE = 41
    ON_DEACTIVATE_ERROR = 42
    ON_SHUTDOWN_SUCCESS = 50
    ON_SHUTDOWN_FAILURE = 51
    ON_SHUTDOWN_ERROR = 52
    ON_ERROR_SUCCESS = 60
    ON_ERROR_FAILURE = 61
    ON_ERROR_ERROR = 62
    CALLBACK_SUCCESS = 97
    CALLBACK_FAILURE = 98
    CALLBACK_ERROR = 99


# State labels as registered by rcl_lifecycle/src/default_state_machine.c.
STATE_LABELS = {
    S.UNKNOWN: "unknown",
    S.UNCONFIGURED: "unconfigured",
    S.INACTIVE: "inactive",
    S.ACTIVE: "active",
    S.FINALIZED: "finalized",
    S.CONFIGURING: "configuring",
    S.CLEANINGUP: "cleaningup",
    S.SHUTTINGDOWN: "shuttingdown",
    S.ACTIVATING: "activating",
    S.DEACTIVATING: "deactivating",
    S.ERRORPROCESSING: "errorprocessing",
}

# Transition labels as registered by rcl (jazzy default_state_machine.c):
# the public transitions carry their verb ("shutdown" for all three shutdown
# transitions); every result transition carries transition_success /
# transition_failure / transition_error.
TRANSITION_LABELS = {
    T.CONFIGURE: "configure",
    T.CLEANUP: "cleanup",
    T.ACTIVATE: "activate",
    T.DEACTIVATE: "deactivate",
    T.UNCONFIGURED_SHUTDOWN: "shutdown",
    T.INACTIVE_SHUTDOWN: "shutdown",
    T.ACTIVE_SHUTDOWN: "shutdown",
    **{i: "transition_success" for i in (10, 20, 30, 40, 50, 60)},
    **{i: "transition_failure" for i in (11, 21, 31, 41, 51, 61)},
    **{i: "transition_error" for i in (12, 22, 32, 42, 52, 62)},
}


@dataclass
class State(IdlStruct, typename="lifecycle_msgs::msg::dds_::State_"):
    id: uint8 = 0
    label: str = ""


@dataclass
class Transition(IdlStruct, typename="lifecycle_msgs::msg::dds_::Transition_"):
    id: uint8 = 0
    label: str = ""


@dataclass
class TransitionDescription(IdlStruct, typename="lifecycle_msgs::msg::dds_::TransitionDescription_"):
    transition: Transition = field(default_factory=Transition)
    start_state: State = field(default_factory=State)
    goal_state: State = field(default_factory=State)


@dataclass
class TransitionEvent(IdlStruct, typename="lifecycle_msgs::msg::dds_::TransitionEvent_"):
    timestamp: uint64 = 0  # jazzy: nanoseconds, not a builtin_interfaces/Time
    transition: Transition = field(default_factory=Transition)
    start_state: State = field(default_factory=State)
    goal_state: State = field(default_factory=State)


# Service types.  The first two fields are the rmw_cyclonedds request header.

@dataclass
class ChangeState_Request(IdlStruct, typename="lifecycle_msgs::srv::dds_::ChangeState_Request_"):
    client_guid: uint64 = 0
    sequence_number: int64 = 0
    transition: Transition = field(default_factory=Transition)


@dataclass
class ChangeState_Response(IdlStruct, typename="lifecycle_msgs::srv::dds_::ChangeState_Response_"):
    client_guid: uint64 = 0
    sequence_number: int64 = 0
    success: bool = False


@dataclass
class GetState_Request(IdlStruct, typename="lifecycle_msgs::srv::dds_::GetState_Request_"):
    client_guid: uint64 = 0
    sequence_number: int64 = 0
    structure_needs_at_least_one_member: uint8 = 0


@dataclass
class GetState_Response(IdlStruct, typename="lifecycle_msgs::srv::dds_::GetState_Response_"):
    client_guid: uint64 = 0
    sequence_number: int64 = 0
    current_state: State = field(default_factory=State)


@dataclass
class GetAvailableStates_Request(IdlStruct, typename="lifecycle_msgs::srv::dds_::GetAvailableStates_Request_"):
    client_guid: uint64 = 0
    sequence_number: int64 = 0
    structure_needs_at_least_one_member: uint8 = 0


@dataclass
class GetAvailableStates_Response(IdlStruct, typename="lifecycle_msgs::srv::dds_::GetAvailableStates_Response_"):
    client_guid: uint64 = 0
    sequence_number: int64 = 0
    available_states: sequence[State] = field(default_factory=list)


@dataclass
class GetAvailableTransitions_Request(
        IdlStruct, typename="lifecycle_msgs::srv::dds_::GetAvailableTransitions_Request_"):
    client_guid: uint64 = 0
    sequence_number: int64 = 0
    structure_needs_at_least_one_member: uint8 = 0


@dataclass
class GetAvailableTransitions_Response(
        IdlStruct, typename="lifecycle_msgs::srv::dds_::GetAvailableTransitions_Response_"):
    client_guid: uint64 = 0
    sequence_number: int64 = 0
    available_transitions: sequence[TransitionDescription] = field(default_factory=list)


# ROS service type name -> (request struct, response struct)
SERVICE_TYPES = {
    "lifecycle_msgs/srv/ChangeState": (ChangeState_Request, ChangeState_Response),
    "lifecycle_msgs/srv/GetState": (GetState_Request, GetState_Response),
    "lifecycle_msgs/srv/GetAvailableStates": (GetAvailableStates_Request, GetAvailableStates_Response),
    "lifecycle_msgs/srv/GetAvailableTransitions": (
        GetAvailableTransitions_Request, GetAvailableTransitions_Response),
}

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

import types
from dataclasses import dataclass, field

from cyclonedds.idl import IdlStruct
from cyclonedds.idl.types import array, float64, int32, int64, sequence, uint8, uint32, uint64

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
    # rcl_interfaces (parameters), type_description_interfaces
    "ParameterValue", "Parameter", "ParameterDescriptor", "SetParametersResult",
    "ListParametersResult", "ParameterEvent", "P",
    "TypeDescriptionMsg", "GetTypeDescription_Request", "GetTypeDescription_Response",
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


# --------------------------------------------------------------------------
# rcl_interfaces: parameters (jazzy .msg/.srv files, field for field)
# --------------------------------------------------------------------------

class P:
    """rcl_interfaces/msg/ParameterType."""
    NOT_SET = 0
    BOOL = 1
    INTEGER = 2
    DOUBLE = 3
    STRING = 4
    BYTE_ARRAY = 5
    BOOL_ARRAY = 6
    INTEGER_ARRAY = 7
    DOUBLE_ARRAY = 8
    STRING_ARRAY = 9


@dataclass
class ParameterValue(IdlStruct, typename="rcl_interfaces::msg::dds_::ParameterValue_"):
    type: uint8 = 0
    bool_value: bool = False
    integer_value: int64 = 0
    double_value: float64 = 0.0
    string_value: str = ""
    byte_array_value: sequence[uint8] = field(default_factory=list)
    bool_array_value: sequence[bool] = field(default_factory=list)
    integer_array_value: sequence[int64] = field(default_factory=list)
    double_array_value: sequence[float64] = field(default_factory=list)
    string_array_value: sequence[str] = field(default_factory=list)

    def python(self):
        """The value as Python sees it (None when not set)."""
        return {
            P.NOT_SET: None, P.BOOL: self.bool_value, P.INTEGER: self.integer_value,
            P.DOUBLE: self.double_value, P.STRING: self.string_value,
            P.BYTE_ARRAY: list(self.byte_array_value), P.BOOL_ARRAY: list(self.bool_array_value),
            P.INTEGER_ARRAY: list(self.integer_array_value),
            P.DOUBLE_ARRAY: list(self.double_array_value),
            P.STRING_ARRAY: list(self.string_array_value),
        }[self.type]


@dataclass
class Parameter(IdlStruct, typename="rcl_interfaces::msg::dds_::Parameter_"):
    name: str = ""
    value: ParameterValue = field(default_factory=ParameterValue)


@dataclass
class FloatingPointRange(IdlStruct, typename="rcl_interfaces::msg::dds_::FloatingPointRange_"):
    from_value: float64 = 0.0
    to_value: float64 = 0.0
    step: float64 = 0.0


@dataclass
class IntegerRange(IdlStruct, typename="rcl_interfaces::msg::dds_::IntegerRange_"):
    from_value: int64 = 0
    to_value: int64 = 0
    step: uint64 = 0


@dataclass
class ParameterDescriptor(IdlStruct, typename="rcl_interfaces::msg::dds_::ParameterDescriptor_"):
    name: str = ""
    type: uint8 = 0
    description: str = ""
    additional_constraints: str = ""
    read_only: bool = False
    dynamic_typing: bool = False
    floating_point_range: sequence[FloatingPointRange, 1] = field(default_factory=list)
    integer_range: sequence[IntegerRange, 1] = field(default_factory=list)


@dataclass
class SetParametersResult(IdlStruct, typename="rcl_interfaces::msg::dds_::SetParametersResult_"):
    successful: bool = False
    reason: str = ""


@dataclass
class ListParametersResult(IdlStruct, typename="rcl_interfaces::msg::dds_::ListParametersResult_"):
    names: sequence[str] = field(default_factory=list)
    prefixes: sequence[str] = field(default_factory=list)


@dataclass
class ParameterEvent(IdlStruct, typename="rcl_interfaces::msg::dds_::ParameterEvent_"):
    stamp: Time = field(default_factory=Time)
    node: str = ""
    new_parameters: sequence[Parameter] = field(default_factory=list)
    changed_parameters: sequence[Parameter] = field(default_factory=list)
    deleted_parameters: sequence[Parameter] = field(default_factory=list)


def _service(name: str, request_fields, response_fields):
    """Request and response structs of ``pkg/srv/Name`` with the rmw header.

    ``*_fields`` are ``(name, type, default)``; a callable default is a
    factory (lists, nested structs)."""
    pkg, _, srv = name.split("/")
    made = []
    for suffix, fields in (("Request", request_fields), ("Response", response_fields)):
        fields = [("client_guid", uint64, 0), ("sequence_number", int64, 0), *fields]

        def body(ns, fields=fields):
            ns["__annotations__"] = {k: t for k, t, _ in fields}
            for k, _, d in fields:
                ns[k] = field(default_factory=d) if callable(d) else d

        cls = types.new_class(f"{srv}_{suffix}", (IdlStruct,),
                              {"typename": f"{pkg}::srv::dds_::{srv}_{suffix}_"}, body)
        made.append(dataclass(cls))
    return tuple(made)


_names = ("names", sequence[str], list)
PARAMETER_SERVICES = {
    "rcl_interfaces/srv/ListParameters": _service(
        "rcl_interfaces/srv/ListParameters",
        [("prefixes", sequence[str], list), ("depth", uint64, 0)],
        [("result", ListParametersResult, ListParametersResult)]),
    "rcl_interfaces/srv/DescribeParameters": _service(
        "rcl_interfaces/srv/DescribeParameters",
        [_names], [("descriptors", sequence[ParameterDescriptor], list)]),
    "rcl_interfaces/srv/GetParameters": _service(
        "rcl_interfaces/srv/GetParameters",
        [_names], [("values", sequence[ParameterValue], list)]),
    "rcl_interfaces/srv/GetParameterTypes": _service(
        "rcl_interfaces/srv/GetParameterTypes",
        [_names], [("types", sequence[uint8], list)]),
    "rcl_interfaces/srv/SetParameters": _service(
        "rcl_interfaces/srv/SetParameters",
        [("parameters", sequence[Parameter], list)],
        [("results", sequence[SetParametersResult], list)]),
    "rcl_interfaces/srv/SetParametersAtomically": _service(
        "rcl_interfaces/srv/SetParametersAtomically",
        [("parameters", sequence[Parameter], list)],
        [("result", SetParametersResult, SetParametersResult)]),
}


# --------------------------------------------------------------------------
# type_description_interfaces
# --------------------------------------------------------------------------

@dataclass
class FieldType(IdlStruct, typename="type_description_interfaces::msg::dds_::FieldType_"):
    type_id: uint8 = 0
    capacity: uint64 = 0
    string_capacity: uint64 = 0
    nested_type_name: str = ""   # string<=255: the same bytes on the wire


@dataclass
class Field(IdlStruct, typename="type_description_interfaces::msg::dds_::Field_"):
    name: str = ""
    type: FieldType = field(default_factory=FieldType)
    default_value: str = ""


@dataclass
class IndividualTypeDescription(
        IdlStruct, typename="type_description_interfaces::msg::dds_::IndividualTypeDescription_"):
    type_name: str = ""
    fields: sequence[Field] = field(default_factory=list)


@dataclass
class TypeDescriptionMsg(IdlStruct, typename="type_description_interfaces::msg::dds_::TypeDescription_"):
    type_description: IndividualTypeDescription = field(default_factory=IndividualTypeDescription)
    referenced_type_descriptions: sequence[IndividualTypeDescription] = field(default_factory=list)


@dataclass
class TypeSource(IdlStruct, typename="type_description_interfaces::msg::dds_::TypeSource_"):
    type_name: str = ""
    encoding: str = ""
    raw_file_contents: str = ""


@dataclass
class TdKeyValue(IdlStruct, typename="type_description_interfaces::msg::dds_::KeyValue_"):
    key: str = ""
    value: str = ""


GetTypeDescription_Request, GetTypeDescription_Response = _service(
    "type_description_interfaces/srv/GetTypeDescription",
    [("type_name", str, ""), ("type_hash", str, ""), ("include_type_sources", bool, True)],
    [("successful", bool, False), ("failure_reason", str, ""),
     ("type_description", TypeDescriptionMsg, TypeDescriptionMsg),
     ("type_sources", sequence[TypeSource], list),
     ("extra_information", sequence[TdKeyValue], list)])


# ROS service type name -> (request struct, response struct)
SERVICE_TYPES = {
    "lifecycle_msgs/srv/ChangeState": (ChangeState_Request, ChangeState_Response),
    "lifecycle_msgs/srv/GetState": (GetState_Request, GetState_Response),
    "lifecycle_msgs/srv/GetAvailableStates": (GetAvailableStates_Request, GetAvailableStates_Response),
    "lifecycle_msgs/srv/GetAvailableTransitions": (
        GetAvailableTransitions_Request, GetAvailableTransitions_Response),
    **PARAMETER_SERVICES,
    "type_description_interfaces/srv/GetTypeDescription": (
        GetTypeDescription_Request, GetTypeDescription_Response),
}

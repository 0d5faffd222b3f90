//! QoS profiles, named as in rmw's `rmw_qos_profile_*`.

use crate::dds::EndpointQos;

/// `rmw_qos_profile_default`: reliable, volatile, keep-last 10.
pub const DEFAULT: EndpointQos = EndpointQos {
    reliable: true,
    transient_local: false,
    depth: 10,
};

/// `rmw_qos_profile_services_default`: reliable, volatile, keep-last 10.
pub const SERVICES: EndpointQos = DEFAULT;

/// Latched state such as `ros_discovery_info` or a lease snapshot:
/// reliable, transient-local, keep-last 1.
pub const LATCHED: EndpointQos = EndpointQos {
    reliable: true,
    transient_local: true,
    depth: 1,
};

/// `rmw_qos_profile_sensor_data`: best-effort, volatile, keep-last 5.
pub const SENSOR_DATA: EndpointQos = EndpointQos {
    reliable: false,
    transient_local: false,
    depth: 5,
};

/// `rmw_qos_profile_parameter_events`: reliable, volatile, keep-last 1000.
pub const PARAMETER_EVENTS: EndpointQos = EndpointQos {
    reliable: true,
    transient_local: false,
    depth: 1000,
};

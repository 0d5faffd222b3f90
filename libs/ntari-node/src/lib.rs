//! Shared runtime of NTARI OS service nodes.
//!
//! - [`graph`]: the ROS 2 graph (topics, services, `ros_discovery_info`)
//!   spoken as rmw_cyclonedds speaks it, directly on Cyclone DDS;
//! - [`lifecycle`]: the ROS 2 managed-node state machine and its services;
//! - [`msg`]: the ROS message and service types the nodes use;
//! - [`typehash`]: Jazzy RIHS01 type hashes for endpoint user_data;
//! - [`parameters`]: read-only ROS parameters showing the effective config.
//!
//! `dds` is the only module with `unsafe` code (see its invariants).
//! Nothing here is specific to one network service.

pub mod config;
mod dds;
pub mod fsutil;
pub mod graph;
pub mod guard;
pub mod lifecycle;
pub mod metrics;
pub mod msg;
pub mod parameters;
pub mod runtime;
pub mod service;
pub mod signing;
pub mod supervisor;
pub mod typehash;
pub mod validate;

pub use dds::{DdsError, EndpointQos};
/// Raw DDS access for a bridge that forwards samples of types it does not
/// know (ntari-federation): participants on domains of their own, opaque
/// readers and writers, discovery of every writer on a domain.
pub mod rawdds {
    pub use crate::dds::{
        DiscoveredWriter, Participant, PublicationWatcher, Reader, Taken, Writer, WriterEvent,
    };
}

//! ROS 2 managed (lifecycle) nodes: the pure state machine and the node
//! that drives it over the graph.

mod node;
pub mod state_machine;

pub use node::{LifecycleCallbacks, LifecycleNode, LifecycleRequest};
pub use state_machine::{CallbackResult, LifecycleError, State, StateMachine, TransitionInfo};

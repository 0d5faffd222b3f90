//! The ROS 2 managed-node (lifecycle) state machine, as a pure value.
//!
//! This reproduces rcl's default state machine (ros2/rcl, branch jazzy,
//! `rcl_lifecycle/src/default_state_machine.c`) and the way rclcpp_lifecycle
//! drives it (`rclcpp_lifecycle/src/lifecycle_node_interface_impl.cpp`,
//! `change_state`): ids and labels are exactly rcl's, so `ros2 lifecycle
//! get/set/list` and any lifecycle manager see our nodes as ordinary managed
//! nodes. There is no I/O here: the node runs the user callbacks and
//! publishes `~/transition_event` with what [`StateMachine::start`] and
//! [`StateMachine::complete`] return.
//!
//! A `change_state` request is handled as rclcpp does it:
//! 1. [`StateMachine::start`]: the requested transition (a non-empty label
//!    takes precedence over the id) moves a primary state to a transition
//!    state;
//! 2. the node runs [`State::callback`] of that transition state;
//! 3. [`StateMachine::complete`] with the callback's result follows the
//!    `transition_success` / `transition_failure` / `transition_error` edge;
//! 4. if that edge led to `errorprocessing`, the node runs `on_error` and calls
//!    [`StateMachine::complete`] once more (success: `unconfigured`, failure or
//!    error: `finalized`).

use std::fmt;

/// Transition ids of `lifecycle_msgs/msg/Transition` (jazzy).
///
/// `CREATE` and `DESTROY` exist in the message but rcl registers no such
/// transition, so requesting them is rejected, as in rcl.
pub mod transition_id {
    pub const CREATE: u8 = 0;
    pub const CONFIGURE: u8 = 1;
    pub const CLEANUP: u8 = 2;
    pub const ACTIVATE: u8 = 3;
    pub const DEACTIVATE: u8 = 4;
    pub const UNCONFIGURED_SHUTDOWN: u8 = 5;
    pub const INACTIVE_SHUTDOWN: u8 = 6;
    pub const ACTIVE_SHUTDOWN: u8 = 7;
    pub const DESTROY: u8 = 8;
    pub const ON_CONFIGURE_SUCCESS: u8 = 10;
    pub const ON_CONFIGURE_FAILURE: u8 = 11;
    pub const ON_CONFIGURE_ERROR: u8 = 12;
    pub const ON_CLEANUP_SUCCESS: u8 = 20;
    pub const ON_CLEANUP_FAILURE: u8 = 21;
    pub const ON_CLEANUP_ERROR: u8 = 22;
    pub const ON_ACTIVATE_SUCCESS: u8 = 30;
    pub const ON_ACTIVATE_FAILURE: u8 = 31;
    pub const ON_ACTIVATE_ERROR: u8 = 32;
    pub const ON_DEACTIVATE_SUCCESS: u8 = 40;
    pub const ON_DEACTIVATE_FAILURE: u8 = 41;
    pub const ON_DEACTIVATE_ERROR: u8 = 42;
    pub const ON_SHUTDOWN_SUCCESS: u8 = 50;
    pub const ON_SHUTDOWN_FAILURE: u8 = 51;
    pub const ON_SHUTDOWN_ERROR: u8 = 52;
    pub const ON_ERROR_SUCCESS: u8 = 60;
    pub const ON_ERROR_FAILURE: u8 = 61;
    pub const ON_ERROR_ERROR: u8 = 62;
    pub const CALLBACK_SUCCESS: u8 = 97;
    pub const CALLBACK_FAILURE: u8 = 98;
    pub const CALLBACK_ERROR: u8 = 99;
}

/// Transition labels as rcl registers them (`rcl_lifecycle_*_label`).
///
/// All three shutdown transitions share the label `shutdown`; all result
/// transitions share the three `transition_*` labels. Labels are therefore
/// only unique within one state's valid transitions.
pub mod transition_label {
    pub const CONFIGURE: &str = "configure";
    pub const CLEANUP: &str = "cleanup";
    pub const ACTIVATE: &str = "activate";
    pub const DEACTIVATE: &str = "deactivate";
    pub const SHUTDOWN: &str = "shutdown";
    pub const SUCCESS: &str = "transition_success";
    pub const FAILURE: &str = "transition_failure";
    pub const ERROR: &str = "transition_error";
}

/// A state of `lifecycle_msgs/msg/State`, with rcl's id and label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    Unknown,
    Unconfigured,
    Inactive,
    Active,
    Finalized,
    Configuring,
    CleaningUp,
    ShuttingDown,
    Activating,
    Deactivating,
    ErrorProcessing,
}

/// Which user callback a transition state runs (rclcpp keys its callbacks by
/// the transition state's id: `on_configure` for `configuring`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Callback {
    Configure,
    Cleanup,
    Activate,
    Deactivate,
    Shutdown,
    Error,
}

impl State {
    /// Every state, in rcl's registration order: what `~/get_available_states`
    /// answers.
    pub const ALL: [State; 11] = [
        State::Unknown,
        State::Unconfigured,
        State::Inactive,
        State::Active,
        State::Finalized,
        State::Configuring,
        State::CleaningUp,
        State::ShuttingDown,
        State::Activating,
        State::Deactivating,
        State::ErrorProcessing,
    ];

    /// The `lifecycle_msgs/msg/State` id.
    pub fn id(self) -> u8 {
        match self {
            State::Unknown => 0,
            State::Unconfigured => 1,
            State::Inactive => 2,
            State::Active => 3,
            State::Finalized => 4,
            State::Configuring => 10,
            State::CleaningUp => 11,
            State::ShuttingDown => 12,
            State::Activating => 13,
            State::Deactivating => 14,
            State::ErrorProcessing => 15,
        }
    }

    /// rcl's label (what `~/get_state` answers).
    pub fn label(self) -> &'static str {
        match self {
            State::Unknown => "unknown",
            State::Unconfigured => "unconfigured",
            State::Inactive => "inactive",
            State::Active => "active",
            State::Finalized => "finalized",
            State::Configuring => "configuring",
            State::CleaningUp => "cleaningup",
            State::ShuttingDown => "shuttingdown",
            State::Activating => "activating",
            State::Deactivating => "deactivating",
            State::ErrorProcessing => "errorprocessing",
        }
    }

    /// The state with this `lifecycle_msgs/msg/State` id, if any.
    pub fn from_id(id: u8) -> Option<State> {
        State::ALL.into_iter().find(|s| s.id() == id)
    }

    /// Primary states (ids 0–4) are where a node rests; transition states
    /// (10–15) only exist while a callback runs.
    pub fn is_primary(self) -> bool {
        self.id() < 10
    }

    /// The user callback this transition state runs; `None` for primary states.
    pub fn callback(self) -> Option<Callback> {
        match self {
            State::Configuring => Some(Callback::Configure),
            State::CleaningUp => Some(Callback::Cleanup),
            State::ShuttingDown => Some(Callback::Shutdown),
            State::Activating => Some(Callback::Activate),
            State::Deactivating => Some(Callback::Deactivate),
            State::ErrorProcessing => Some(Callback::Error),
            State::Unknown
            | State::Unconfigured
            | State::Inactive
            | State::Active
            | State::Finalized => None,
        }
    }
}

/// Written like `ros2 lifecycle get` prints a state: `inactive [2]`.
impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} [{}]", self.label(), self.id())
    }
}

/// One edge of the graph: a `lifecycle_msgs/msg/TransitionDescription`, and
/// the content of a `~/transition_event` when taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransitionInfo {
    pub id: u8,
    pub label: &'static str,
    pub start: State,
    pub goal: State,
}

/// Written like `ros2 lifecycle list` prints a transition: `activate [3]`.
impl fmt::Display for TransitionInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} [{}]", self.label, self.id)
    }
}

/// What a user callback returned (rclcpp's `CallbackReturn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallbackResult {
    Success,
    Failure,
    Error,
}

impl CallbackResult {
    /// The `TRANSITION_CALLBACK_*` id (97, 98, 99) rclcpp uses as its
    /// `CallbackReturn` value.
    pub fn id(self) -> u8 {
        match self {
            CallbackResult::Success => transition_id::CALLBACK_SUCCESS,
            CallbackResult::Failure => transition_id::CALLBACK_FAILURE,
            CallbackResult::Error => transition_id::CALLBACK_ERROR,
        }
    }

    /// The label of the result transition rclcpp triggers for this result.
    pub fn label(self) -> &'static str {
        match self {
            CallbackResult::Success => transition_label::SUCCESS,
            CallbackResult::Failure => transition_label::FAILURE,
            CallbackResult::Error => transition_label::ERROR,
        }
    }
}

/// How a transition was asked for, kept so errors can echo it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requested {
    Id(u8),
    Label(String),
}

impl fmt::Display for Requested {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Requested::Id(id) => match graph_label_of(*id) {
                Some(label) => write!(f, "{label} [{id}]"),
                None => write!(f, "[{id}]"),
            },
            Requested::Label(label) => write!(f, "\"{label}\""),
        }
    }
}

/// Why a transition request or completion was refused. The state machine is
/// left unchanged in every case.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LifecycleError {
    /// The id names no transition of the default state machine (this includes
    /// `create` 0 and `destroy` 8, which rcl never registers).
    #[error(
        "unknown transition id {id} (the node is {state}; available: {})",
        list(.available)
    )]
    UnknownTransitionId {
        id: u8,
        state: State,
        available: Vec<TransitionInfo>,
    },
    /// The label names no transition of the default state machine (labels are
    /// case-sensitive, as rcl compares them with strcmp).
    #[error(
        "unknown transition label \"{label}\" (the node is {state}; available: {})",
        list(.available)
    )]
    UnknownTransitionLabel {
        label: String,
        state: State,
        available: Vec<TransitionInfo>,
    },
    /// A real transition, but not one leaving the current state.
    #[error(
        "transition {requested} is not available from state {state} (available: {})",
        list(.available)
    )]
    NotAvailable {
        requested: Requested,
        state: State,
        available: Vec<TransitionInfo>,
    },
    /// A transition is already running its callback; a new one can only start
    /// from a primary state.
    #[error("the node is busy in transition state {state}; retry once it reaches a primary state")]
    Busy { state: State },
    /// `complete` was called while no transition was running.
    #[error("no transition is in progress: the node is in primary state {state}")]
    NotInTransition { state: State },
}

/// Renders the available transitions for an operator-facing error message.
fn list(available: &[TransitionInfo]) -> String {
    if available.is_empty() {
        return "none".to_owned();
    }
    available
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Shorthand for the graph table below.
const fn t(id: u8, label: &'static str, start: State, goal: State) -> TransitionInfo {
    TransitionInfo {
        id,
        label,
        start,
        goal,
    }
}

/// Every transition of rcl's default state machine, in rcl's registration
/// order (`_register_transitions`). rcl appends each transition both to the
/// map and to its start state's valid transitions, so filtering this table by
/// start state gives each state's transitions in rcl's order too.
const GRAPH: [TransitionInfo; 25] = {
    use transition_id as id;
    use transition_label as l;
    use State::*;
    [
        t(id::CONFIGURE, l::CONFIGURE, Unconfigured, Configuring),
        t(id::ON_CONFIGURE_SUCCESS, l::SUCCESS, Configuring, Inactive),
        t(
            id::ON_CONFIGURE_FAILURE,
            l::FAILURE,
            Configuring,
            Unconfigured,
        ),
        t(
            id::ON_CONFIGURE_ERROR,
            l::ERROR,
            Configuring,
            ErrorProcessing,
        ),
        t(id::CLEANUP, l::CLEANUP, Inactive, CleaningUp),
        t(id::ON_CLEANUP_SUCCESS, l::SUCCESS, CleaningUp, Unconfigured),
        t(id::ON_CLEANUP_FAILURE, l::FAILURE, CleaningUp, Inactive),
        t(id::ON_CLEANUP_ERROR, l::ERROR, CleaningUp, ErrorProcessing),
        t(id::ACTIVATE, l::ACTIVATE, Inactive, Activating),
        t(id::ON_ACTIVATE_SUCCESS, l::SUCCESS, Activating, Active),
        t(id::ON_ACTIVATE_FAILURE, l::FAILURE, Activating, Inactive),
        t(id::ON_ACTIVATE_ERROR, l::ERROR, Activating, ErrorProcessing),
        t(id::DEACTIVATE, l::DEACTIVATE, Active, Deactivating),
        t(
            id::ON_DEACTIVATE_SUCCESS,
            l::SUCCESS,
            Deactivating,
            Inactive,
        ),
        t(id::ON_DEACTIVATE_FAILURE, l::FAILURE, Deactivating, Active),
        t(
            id::ON_DEACTIVATE_ERROR,
            l::ERROR,
            Deactivating,
            ErrorProcessing,
        ),
        t(
            id::UNCONFIGURED_SHUTDOWN,
            l::SHUTDOWN,
            Unconfigured,
            ShuttingDown,
        ),
        t(id::INACTIVE_SHUTDOWN, l::SHUTDOWN, Inactive, ShuttingDown),
        t(id::ACTIVE_SHUTDOWN, l::SHUTDOWN, Active, ShuttingDown),
        t(id::ON_SHUTDOWN_SUCCESS, l::SUCCESS, ShuttingDown, Finalized),
        t(id::ON_SHUTDOWN_FAILURE, l::FAILURE, ShuttingDown, Finalized),
        t(
            id::ON_SHUTDOWN_ERROR,
            l::ERROR,
            ShuttingDown,
            ErrorProcessing,
        ),
        t(
            id::ON_ERROR_SUCCESS,
            l::SUCCESS,
            ErrorProcessing,
            Unconfigured,
        ),
        t(id::ON_ERROR_FAILURE, l::FAILURE, ErrorProcessing, Finalized),
        t(id::ON_ERROR_ERROR, l::ERROR, ErrorProcessing, Finalized),
    ]
};

/// The label of a registered transition id, for error messages.
fn graph_label_of(id: u8) -> Option<&'static str> {
    GRAPH.iter().find(|t| t.id == id).map(|t| t.label)
}

/// The valid transitions leaving `state`, in rcl's order.
fn transitions_from(state: State) -> impl Iterator<Item = &'static TransitionInfo> {
    GRAPH.iter().filter(move |t| t.start == state)
}

/// One managed node's lifecycle state. Not thread-safe by itself: the node
/// keeps it behind its own lock, as rclcpp keeps `state_machine_mutex_`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateMachine {
    current: State,
}

impl Default for StateMachine {
    fn default() -> Self {
        Self::new()
    }
}

impl StateMachine {
    /// A machine in `unconfigured`, where rcl puts every new managed node.
    pub fn new() -> Self {
        Self {
            current: State::Unconfigured,
        }
    }

    /// The current state (what `~/get_state` answers).
    pub fn state(&self) -> State {
        self.current
    }

    /// Every state, in rcl's order (what `~/get_available_states` answers).
    pub fn available_states() -> &'static [State] {
        &State::ALL
    }

    /// The current state's valid transitions in rcl's order (what
    /// `~/get_available_transitions` answers). In a transition state these
    /// are the three result transitions; in `finalized` there are none.
    pub fn available_transitions(&self) -> Vec<TransitionInfo> {
        transitions_from(self.current).copied().collect()
    }

    /// Every registered transition in rcl's order (what
    /// `~/get_transition_graph` answers).
    pub fn transition_graph() -> Vec<TransitionInfo> {
        GRAPH.to_vec()
    }

    /// Resolves a `change_state` request against the current state without
    /// changing it. As in rclcpp's `on_change_state`, a non-empty label takes
    /// precedence and the id is then ignored (`ros2 service call` leaves the
    /// id at 0 when only a label is given).
    pub fn lookup(&self, id: u8, label: &str) -> Result<TransitionInfo, LifecycleError> {
        if !self.current.is_primary() {
            return Err(LifecycleError::Busy {
                state: self.current,
            });
        }
        let found = if label.is_empty() {
            transitions_from(self.current).find(|t| t.id == id)
        } else {
            transitions_from(self.current).find(|t| t.label == label)
        };
        if let Some(transition) = found {
            return Ok(*transition);
        }
        let state = self.current;
        let available = self.available_transitions();
        if label.is_empty() {
            if graph_label_of(id).is_some() {
                Err(LifecycleError::NotAvailable {
                    requested: Requested::Id(id),
                    state,
                    available,
                })
            } else {
                Err(LifecycleError::UnknownTransitionId {
                    id,
                    state,
                    available,
                })
            }
        } else if GRAPH.iter().any(|t| t.label == label) {
            Err(LifecycleError::NotAvailable {
                requested: Requested::Label(label.to_owned()),
                state,
                available,
            })
        } else {
            Err(LifecycleError::UnknownTransitionLabel {
                label: label.to_owned(),
                state,
                available,
            })
        }
    }

    /// Starts a requested transition: primary state -> transition state.
    /// Returns the transition taken, which the node publishes on
    /// `~/transition_event` before running [`State::callback`] of the new
    /// state. On error nothing changes.
    pub fn start(&mut self, id: u8, label: &str) -> Result<TransitionInfo, LifecycleError> {
        let transition = self.lookup(id, label)?;
        self.current = transition.goal;
        Ok(transition)
    }

    /// Finishes the running transition with its callback's result, following
    /// the `transition_success` / `transition_failure` / `transition_error`
    /// edge of the current transition state, as rclcpp does with
    /// `rcl_lifecycle_trigger_transition_by_label`. After an `Error` the
    /// machine is in `errorprocessing`: run `on_error` and call this again.
    pub fn complete(&mut self, result: CallbackResult) -> Result<TransitionInfo, LifecycleError> {
        if self.current.is_primary() {
            return Err(LifecycleError::NotInTransition {
                state: self.current,
            });
        }
        let label = result.label();
        match transitions_from(self.current).find(|t| t.label == label) {
            Some(transition) => {
                self.current = transition.goal;
                Ok(*transition)
            }
            // Unreachable with the default graph (every transition state has
            // all three result edges); kept as an error rather than a panic.
            None => Err(LifecycleError::NotAvailable {
                requested: Requested::Label(label.to_owned()),
                state: self.current,
                available: self.available_transitions(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::transition_id as tid;
    use super::*;
    use std::collections::HashSet;

    const PRIMARY: [State; 4] = [
        State::Unconfigured,
        State::Inactive,
        State::Active,
        State::Finalized,
    ];
    const TRANSITIONAL: [State; 6] = [
        State::Configuring,
        State::CleaningUp,
        State::ShuttingDown,
        State::Activating,
        State::Deactivating,
        State::ErrorProcessing,
    ];
    const RESULTS: [CallbackResult; 3] = [
        CallbackResult::Success,
        CallbackResult::Failure,
        CallbackResult::Error,
    ];

    fn info(id: u8, label: &'static str, start: State, goal: State) -> TransitionInfo {
        TransitionInfo {
            id,
            label,
            start,
            goal,
        }
    }

    /// A machine driven (through the public API only) into `target`.
    fn reach(target: State) -> StateMachine {
        use CallbackResult::*;
        let path: &[(Option<u8>, Option<CallbackResult>)] = match target {
            State::Unconfigured => &[],
            State::Configuring => &[(Some(tid::CONFIGURE), None)],
            State::Inactive => &[(Some(tid::CONFIGURE), Some(Success))],
            State::CleaningUp => &[
                (Some(tid::CONFIGURE), Some(Success)),
                (Some(tid::CLEANUP), None),
            ],
            State::Activating => &[
                (Some(tid::CONFIGURE), Some(Success)),
                (Some(tid::ACTIVATE), None),
            ],
            State::Active => &[
                (Some(tid::CONFIGURE), Some(Success)),
                (Some(tid::ACTIVATE), Some(Success)),
            ],
            State::Deactivating => &[
                (Some(tid::CONFIGURE), Some(Success)),
                (Some(tid::ACTIVATE), Some(Success)),
                (Some(tid::DEACTIVATE), None),
            ],
            State::ShuttingDown => &[(Some(tid::UNCONFIGURED_SHUTDOWN), None)],
            State::Finalized => &[(Some(tid::UNCONFIGURED_SHUTDOWN), Some(Success))],
            State::ErrorProcessing => &[(Some(tid::CONFIGURE), Some(Error))],
            State::Unknown => panic!("unknown is never reachable"),
        };
        let mut sm = StateMachine::new();
        for (id, result) in path {
            if let Some(id) = id {
                sm.start(*id, "").expect("path start");
            }
            if let Some(result) = result {
                sm.complete(*result).expect("path complete");
            }
        }
        assert_eq!(sm.state(), target);
        sm
    }

    #[test]
    fn state_ids_labels_and_kinds_match_rcl() {
        // (state, id, label, primary, callback)
        let table = [
            (State::Unknown, 0, "unknown", true, None),
            (State::Unconfigured, 1, "unconfigured", true, None),
            (State::Inactive, 2, "inactive", true, None),
            (State::Active, 3, "active", true, None),
            (State::Finalized, 4, "finalized", true, None),
            (
                State::Configuring,
                10,
                "configuring",
                false,
                Some(Callback::Configure),
            ),
            (
                State::CleaningUp,
                11,
                "cleaningup",
                false,
                Some(Callback::Cleanup),
            ),
            (
                State::ShuttingDown,
                12,
                "shuttingdown",
                false,
                Some(Callback::Shutdown),
            ),
            (
                State::Activating,
                13,
                "activating",
                false,
                Some(Callback::Activate),
            ),
            (
                State::Deactivating,
                14,
                "deactivating",
                false,
                Some(Callback::Deactivate),
            ),
            (
                State::ErrorProcessing,
                15,
                "errorprocessing",
                false,
                Some(Callback::Error),
            ),
        ];
        assert_eq!(
            State::ALL.to_vec(),
            table.iter().map(|r| r.0).collect::<Vec<_>>()
        );
        assert_eq!(StateMachine::available_states(), &State::ALL);
        for (state, id, label, primary, callback) in table {
            assert_eq!(state.id(), id, "{state:?}");
            assert_eq!(state.label(), label, "{state:?}");
            assert_eq!(state.is_primary(), primary, "{state:?}");
            assert_eq!(state.callback(), callback, "{state:?}");
            assert_eq!(State::from_id(id), Some(state));
        }
        let ids: HashSet<u8> = table.iter().map(|r| r.1).collect();
        for id in 0..=u8::MAX {
            if !ids.contains(&id) {
                assert_eq!(State::from_id(id), None, "id {id}");
            }
        }
    }

    #[test]
    fn new_machine_is_unconfigured() {
        assert_eq!(StateMachine::new().state(), State::Unconfigured);
        assert_eq!(StateMachine::default(), StateMachine::new());
    }

    #[test]
    fn transition_graph_is_rcls_in_registration_order() {
        use State::*;
        let expected = vec![
            info(1, "configure", Unconfigured, Configuring),
            info(10, "transition_success", Configuring, Inactive),
            info(11, "transition_failure", Configuring, Unconfigured),
            info(12, "transition_error", Configuring, ErrorProcessing),
            info(2, "cleanup", Inactive, CleaningUp),
            info(20, "transition_success", CleaningUp, Unconfigured),
            info(21, "transition_failure", CleaningUp, Inactive),
            info(22, "transition_error", CleaningUp, ErrorProcessing),
            info(3, "activate", Inactive, Activating),
            info(30, "transition_success", Activating, Active),
            info(31, "transition_failure", Activating, Inactive),
            info(32, "transition_error", Activating, ErrorProcessing),
            info(4, "deactivate", Active, Deactivating),
            info(40, "transition_success", Deactivating, Inactive),
            info(41, "transition_failure", Deactivating, Active),
            info(42, "transition_error", Deactivating, ErrorProcessing),
            info(5, "shutdown", Unconfigured, ShuttingDown),
            info(6, "shutdown", Inactive, ShuttingDown),
            info(7, "shutdown", Active, ShuttingDown),
            info(50, "transition_success", ShuttingDown, Finalized),
            info(51, "transition_failure", ShuttingDown, Finalized),
            info(52, "transition_error", ShuttingDown, ErrorProcessing),
            info(60, "transition_success", ErrorProcessing, Unconfigured),
            info(61, "transition_failure", ErrorProcessing, Finalized),
            info(62, "transition_error", ErrorProcessing, Finalized),
        ];
        assert_eq!(StateMachine::transition_graph(), expected);
        let ids: HashSet<u8> = expected.iter().map(|t| t.id).collect();
        assert_eq!(ids.len(), expected.len(), "transition ids are unique");
    }

    #[test]
    fn available_transitions_per_state() {
        // (state, [(id, label)]) in rcl's order.
        let table: [(State, &[(u8, &str)]); 10] = [
            (State::Unconfigured, &[(1, "configure"), (5, "shutdown")]),
            (
                State::Inactive,
                &[(2, "cleanup"), (3, "activate"), (6, "shutdown")],
            ),
            (State::Active, &[(4, "deactivate"), (7, "shutdown")]),
            (State::Finalized, &[]),
            (
                State::Configuring,
                &[
                    (10, "transition_success"),
                    (11, "transition_failure"),
                    (12, "transition_error"),
                ],
            ),
            (
                State::CleaningUp,
                &[
                    (20, "transition_success"),
                    (21, "transition_failure"),
                    (22, "transition_error"),
                ],
            ),
            (
                State::Activating,
                &[
                    (30, "transition_success"),
                    (31, "transition_failure"),
                    (32, "transition_error"),
                ],
            ),
            (
                State::Deactivating,
                &[
                    (40, "transition_success"),
                    (41, "transition_failure"),
                    (42, "transition_error"),
                ],
            ),
            (
                State::ShuttingDown,
                &[
                    (50, "transition_success"),
                    (51, "transition_failure"),
                    (52, "transition_error"),
                ],
            ),
            (
                State::ErrorProcessing,
                &[
                    (60, "transition_success"),
                    (61, "transition_failure"),
                    (62, "transition_error"),
                ],
            ),
        ];
        for (state, expected) in table {
            let got = reach(state).available_transitions();
            let got: Vec<(u8, &str)> = got
                .iter()
                .inspect(|t| assert_eq!(t.start, state))
                .map(|t| (t.id, t.label))
                .collect();
            assert_eq!(got, expected, "from {state:?}");
        }
    }

    /// Every requestable transition: (from, id, label, goal transition state).
    const REQUESTABLE: [(State, u8, &str, State); 7] = [
        (State::Unconfigured, 1, "configure", State::Configuring),
        (State::Unconfigured, 5, "shutdown", State::ShuttingDown),
        (State::Inactive, 2, "cleanup", State::CleaningUp),
        (State::Inactive, 3, "activate", State::Activating),
        (State::Inactive, 6, "shutdown", State::ShuttingDown),
        (State::Active, 4, "deactivate", State::Deactivating),
        (State::Active, 7, "shutdown", State::ShuttingDown),
    ];

    /// Every result edge: (transition state, result, id, label, goal).
    const RESULT_EDGES: [(State, CallbackResult, u8, &str, State); 18] = {
        use CallbackResult::*;
        use State::*;
        [
            (Configuring, Success, 10, "transition_success", Inactive),
            (Configuring, Failure, 11, "transition_failure", Unconfigured),
            (Configuring, Error, 12, "transition_error", ErrorProcessing),
            (CleaningUp, Success, 20, "transition_success", Unconfigured),
            (CleaningUp, Failure, 21, "transition_failure", Inactive),
            (CleaningUp, Error, 22, "transition_error", ErrorProcessing),
            (Activating, Success, 30, "transition_success", Active),
            (Activating, Failure, 31, "transition_failure", Inactive),
            (Activating, Error, 32, "transition_error", ErrorProcessing),
            (Deactivating, Success, 40, "transition_success", Inactive),
            (Deactivating, Failure, 41, "transition_failure", Active),
            (Deactivating, Error, 42, "transition_error", ErrorProcessing),
            (ShuttingDown, Success, 50, "transition_success", Finalized),
            (ShuttingDown, Failure, 51, "transition_failure", Finalized),
            (ShuttingDown, Error, 52, "transition_error", ErrorProcessing),
            (
                ErrorProcessing,
                Success,
                60,
                "transition_success",
                Unconfigured,
            ),
            (
                ErrorProcessing,
                Failure,
                61,
                "transition_failure",
                Finalized,
            ),
            (ErrorProcessing, Error, 62, "transition_error", Finalized),
        ]
    };

    fn result_edge(state: State, result: CallbackResult) -> (u8, &'static str, State) {
        RESULT_EDGES
            .iter()
            .find(|e| e.0 == state && e.1 == result)
            .map(|e| (e.2, e.3, e.4))
            .expect("result edge")
    }

    #[test]
    fn every_valid_transition_by_id_and_by_label_with_every_result() {
        for (from, id, label, via) in REQUESTABLE {
            // by id (empty label) and by label (id left at 0, as the CLI sends)
            for (req_id, req_label) in [(id, ""), (0, label)] {
                for result in RESULTS {
                    let mut sm = reach(from);
                    let started = sm.start(req_id, req_label).expect("start");
                    assert_eq!(started, info(id, label, from, via), "{from:?} {label}");
                    assert_eq!(sm.state(), via);

                    let (rid, rlabel, goal) = result_edge(via, result);
                    let done = sm.complete(result).expect("complete");
                    assert_eq!(done, info(rid, rlabel, via, goal), "{via:?} {result:?}");
                    assert_eq!(sm.state(), goal);

                    if goal == State::ErrorProcessing {
                        for on_error in RESULTS {
                            let mut sm = sm.clone();
                            let (eid, elabel, egoal) =
                                result_edge(State::ErrorProcessing, on_error);
                            let done = sm.complete(on_error).expect("complete on_error");
                            assert_eq!(done, info(eid, elabel, State::ErrorProcessing, egoal));
                            assert_eq!(sm.state(), egoal);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn error_processing_success_recovers_to_unconfigured_else_finalized() {
        for via in [
            State::Configuring,
            State::CleaningUp,
            State::Activating,
            State::Deactivating,
            State::ShuttingDown,
        ] {
            for (on_error, id, goal) in [
                (CallbackResult::Success, 60, State::Unconfigured),
                (CallbackResult::Failure, 61, State::Finalized),
                (CallbackResult::Error, 62, State::Finalized),
            ] {
                let mut sm = reach(via);
                let to_error = sm.complete(CallbackResult::Error).expect("error");
                assert_eq!(to_error.goal, State::ErrorProcessing);
                assert_eq!(sm.state().callback(), Some(Callback::Error));
                let done = sm.complete(on_error).expect("on_error");
                assert_eq!((done.id, done.goal), (id, goal), "{via:?} {on_error:?}");
                assert_eq!(sm.state(), goal);
            }
        }
    }

    #[test]
    fn shutdown_from_every_primary_state() {
        for (from, id) in [
            (State::Unconfigured, 5),
            (State::Inactive, 6),
            (State::Active, 7),
        ] {
            let mut sm = reach(from);
            let started = sm.start(0, "shutdown").expect("shutdown by label");
            assert_eq!(
                started,
                info(id, "shutdown", from, State::ShuttingDown),
                "{from:?}"
            );
            assert_eq!(sm.state().callback(), Some(Callback::Shutdown));
            // shutdown failure still finalizes (rcl: shutdown_failure -> finalized)
            let done = sm.complete(CallbackResult::Failure).expect("complete");
            assert_eq!(done.id, 51);
            assert_eq!(sm.state(), State::Finalized);

            let mut sm = reach(from);
            sm.start(id, "").expect("shutdown by id");
            sm.complete(CallbackResult::Success).expect("complete");
            assert_eq!(sm.state(), State::Finalized);
        }
    }

    #[test]
    fn every_other_id_is_rejected_from_primary_states_without_change() {
        let registered: HashSet<u8> = GRAPH.iter().map(|t| t.id).collect();
        for from in PRIMARY {
            let valid: HashSet<u8> = REQUESTABLE
                .iter()
                .filter(|r| r.0 == from)
                .map(|r| r.1)
                .collect();
            for id in 0..=u8::MAX {
                if valid.contains(&id) {
                    continue;
                }
                let mut sm = reach(from);
                let err = sm.start(id, "").expect_err("must be rejected");
                assert_eq!(sm.state(), from, "id {id} from {from:?}");
                let available = sm.available_transitions();
                let expected = if registered.contains(&id) {
                    LifecycleError::NotAvailable {
                        requested: Requested::Id(id),
                        state: from,
                        available,
                    }
                } else {
                    LifecycleError::UnknownTransitionId {
                        id,
                        state: from,
                        available,
                    }
                };
                assert_eq!(err, expected, "id {id} from {from:?}");
            }
        }
    }

    #[test]
    fn create_and_destroy_are_not_registered() {
        for id in [tid::CREATE, tid::DESTROY] {
            let err = StateMachine::new().lookup(id, "").expect_err("rejected");
            assert!(
                matches!(err, LifecycleError::UnknownTransitionId { id: got, .. } if got == id)
            );
        }
    }

    #[test]
    fn unknown_labels_are_rejected_without_change() {
        // Case matters (rcl uses strcmp); pre-Dashing labels are gone.
        let labels = [
            "CONFIGURE",
            "Configure",
            " configure",
            "configure ",
            "configur",
            "create",
            "destroy",
            "unconfigured_shutdown",
            "inactive_shutdown",
            "active_shutdown",
            "configure_success",
            "errorprocessing_failure",
            "on_configure",
            "success",
            "transition_callback_success",
        ];
        for from in PRIMARY {
            for label in labels {
                for id in [0, 1, 3, 5] {
                    let mut sm = reach(from);
                    let err = sm.start(id, label).expect_err("rejected");
                    assert_eq!(sm.state(), from);
                    assert_eq!(
                        err,
                        LifecycleError::UnknownTransitionLabel {
                            label: label.to_owned(),
                            state: from,
                            available: sm.available_transitions(),
                        },
                        "{label:?} from {from:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn labels_valid_elsewhere_are_rejected_without_change() {
        let all_labels: HashSet<&str> = GRAPH.iter().map(|t| t.label).collect();
        assert_eq!(all_labels.len(), 8);
        for from in PRIMARY {
            let valid: HashSet<&str> = REQUESTABLE
                .iter()
                .filter(|r| r.0 == from)
                .map(|r| r.2)
                .collect();
            for label in &all_labels {
                if valid.contains(label) {
                    continue;
                }
                let mut sm = reach(from);
                let err = sm.start(0, label).expect_err("rejected");
                assert_eq!(sm.state(), from);
                assert_eq!(
                    err,
                    LifecycleError::NotAvailable {
                        requested: Requested::Label((*label).to_owned()),
                        state: from,
                        available: sm.available_transitions(),
                    },
                    "{label:?} from {from:?}"
                );
            }
        }
    }

    #[test]
    fn label_takes_precedence_over_id() {
        // (from, id, label, expected id or None when rejected)
        let table: [(State, u8, &str, Option<u8>); 7] = [
            (State::Unconfigured, 3, "configure", Some(1)),
            (State::Unconfigured, 99, "configure", Some(1)),
            (State::Unconfigured, 7, "shutdown", Some(5)),
            // id 1 is valid here, but the label decides and is not
            (State::Unconfigured, 1, "activate", None),
            (State::Inactive, 5, "shutdown", Some(6)),
            (State::Inactive, 2, "activate", Some(3)),
            (State::Active, 1, "deactivate", Some(4)),
        ];
        for (from, id, label, expected) in table {
            let mut sm = reach(from);
            match expected {
                Some(expected) => {
                    assert_eq!(sm.start(id, label).map(|t| t.id), Ok(expected));
                }
                None => {
                    assert!(matches!(
                        sm.start(id, label),
                        Err(LifecycleError::NotAvailable { .. })
                    ));
                    assert_eq!(sm.state(), from);
                }
            }
        }
    }

    #[test]
    fn start_in_a_transition_state_is_busy() {
        let labels = [
            "",
            "configure",
            "shutdown",
            "transition_success",
            "transition_error",
            "bogus",
        ];
        for via in TRANSITIONAL {
            for id in 0..=u8::MAX {
                for label in labels {
                    let mut sm = reach(via);
                    assert_eq!(
                        sm.start(id, label),
                        Err(LifecycleError::Busy { state: via }),
                        "{id} {label:?} in {via:?}"
                    );
                    assert_eq!(
                        sm.lookup(id, label),
                        Err(LifecycleError::Busy { state: via })
                    );
                    assert_eq!(sm.state(), via);
                }
            }
        }
    }

    #[test]
    fn complete_in_a_primary_state_is_rejected() {
        for from in PRIMARY {
            for result in RESULTS {
                let mut sm = reach(from);
                assert_eq!(
                    sm.complete(result),
                    Err(LifecycleError::NotInTransition { state: from })
                );
                assert_eq!(sm.state(), from);
            }
        }
    }

    #[test]
    fn finalized_rejects_everything() {
        let mut sm = reach(State::Finalized);
        assert!(sm.available_transitions().is_empty());
        let all_labels: HashSet<&str> = GRAPH.iter().map(|t| t.label).collect();
        for id in 0..=u8::MAX {
            assert!(sm.start(id, "").is_err(), "id {id}");
        }
        for label in all_labels {
            assert!(sm.start(0, label).is_err(), "{label}");
        }
        for result in RESULTS {
            assert!(sm.complete(result).is_err());
        }
        assert_eq!(sm.state(), State::Finalized);
    }

    #[test]
    fn full_cycle_and_repeat() {
        let mut sm = StateMachine::new();
        let steps: [(&str, CallbackResult, State); 5] = [
            ("configure", CallbackResult::Success, State::Inactive),
            ("activate", CallbackResult::Success, State::Active),
            ("deactivate", CallbackResult::Success, State::Inactive),
            ("cleanup", CallbackResult::Success, State::Unconfigured),
            ("shutdown", CallbackResult::Success, State::Finalized),
        ];
        for _ in 0..3 {
            for (label, result, goal) in &steps[..4] {
                sm.start(0, label).expect("start");
                sm.complete(*result).expect("complete");
                assert_eq!(sm.state(), *goal);
            }
        }
        let (label, result, goal) = steps[4];
        sm.start(0, label).expect("start");
        sm.complete(result).expect("complete");
        assert_eq!(sm.state(), goal);
    }

    #[test]
    fn callback_results_map_to_rclcpp_ids_and_labels() {
        let table = [
            (CallbackResult::Success, 97, "transition_success"),
            (CallbackResult::Failure, 98, "transition_failure"),
            (CallbackResult::Error, 99, "transition_error"),
        ];
        for (result, id, label) in table {
            assert_eq!(result.id(), id);
            assert_eq!(result.label(), label);
        }
    }

    #[test]
    fn error_messages_are_readable() {
        let sm = reach(State::Inactive);
        let cases = [
            (
                sm.lookup(5, "").expect_err("x").to_string(),
                "transition shutdown [5] is not available from state inactive [2] \
                 (available: cleanup [2], activate [3], shutdown [6])",
            ),
            (
                sm.lookup(0, "deactivate").expect_err("x").to_string(),
                "transition \"deactivate\" is not available from state inactive [2] \
                 (available: cleanup [2], activate [3], shutdown [6])",
            ),
            (
                sm.lookup(9, "").expect_err("x").to_string(),
                "unknown transition id 9 (the node is inactive [2]; \
                 available: cleanup [2], activate [3], shutdown [6])",
            ),
            (
                sm.lookup(0, "start").expect_err("x").to_string(),
                "unknown transition label \"start\" (the node is inactive [2]; \
                 available: cleanup [2], activate [3], shutdown [6])",
            ),
            (
                reach(State::Finalized)
                    .lookup(1, "")
                    .expect_err("x")
                    .to_string(),
                "transition configure [1] is not available from state finalized [4] \
                 (available: none)",
            ),
            (
                reach(State::Activating)
                    .lookup(3, "")
                    .expect_err("x")
                    .to_string(),
                "the node is busy in transition state activating [13]; \
                 retry once it reaches a primary state",
            ),
            (
                StateMachine::new()
                    .complete(CallbackResult::Success)
                    .expect_err("x")
                    .to_string(),
                "no transition is in progress: the node is in primary state unconfigured [1]",
            ),
        ];
        for (got, expected) in cases {
            assert_eq!(got, expected);
        }
    }
}

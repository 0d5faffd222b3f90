//! A ROS 2 managed node on the graph: the state machine, its five services
//! under `~/`, the `~/transition_event` topic and the user's callbacks.
//!
//! Invariant: the state only changes inside [`LifecycleNode::trigger`], and
//! every change is published on `~/transition_event` and to
//! [`LifecycleNode::watch_state`] before the next one starts.

use std::future::Future;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::watch;

use super::state_machine::{
    Callback, CallbackResult, LifecycleError, State, StateMachine, TransitionInfo,
};
use crate::graph::{qos, GraphError, Node, Publisher, Request, ServiceServer};
use crate::msg::lifecycle_msgs as lm;

/// What a managed node does on each transition. Every callback defaults to
/// success, so a node implements only the ones it needs.
///
/// Returning [`CallbackResult::Failure`] leaves the node where it was (as
/// rcl defines per transition); [`CallbackResult::Error`] sends it through
/// ErrorProcessing, where `on_error` decides between Unconfigured and
/// Finalized.
pub trait LifecycleCallbacks: Send {
    fn on_configure(&mut self) -> impl Future<Output = CallbackResult> + Send {
        async { CallbackResult::Success }
    }
    fn on_cleanup(&mut self) -> impl Future<Output = CallbackResult> + Send {
        async { CallbackResult::Success }
    }
    fn on_activate(&mut self) -> impl Future<Output = CallbackResult> + Send {
        async { CallbackResult::Success }
    }
    fn on_deactivate(&mut self) -> impl Future<Output = CallbackResult> + Send {
        async { CallbackResult::Success }
    }
    /// `from` is the primary state the shutdown started in.
    fn on_shutdown(&mut self, from: State) -> impl Future<Output = CallbackResult> + Send {
        let _ = from;
        async { CallbackResult::Success }
    }
    /// `from` is the transition state in which the error happened.
    fn on_error(&mut self, from: State) -> impl Future<Output = CallbackResult> + Send {
        let _ = from;
        async { CallbackResult::Success }
    }
}

fn state_msg(state: State) -> lm::State {
    lm::State {
        id: state.id(),
        label: state.label().to_string(),
    }
}

fn description(t: &TransitionInfo) -> lm::TransitionDescription {
    lm::TransitionDescription {
        transition: lm::Transition {
            id: t.id,
            label: t.label.to_string(),
        },
        start_state: state_msg(t.start),
        goal_state: state_msg(t.goal),
    }
}

fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// A managed node: owns the state machine and serves the lifecycle services.
pub struct LifecycleNode<C: LifecycleCallbacks> {
    machine: StateMachine,
    callbacks: C,
    node_name: String,
    events: Publisher<lm::TransitionEvent>,
    change_state: ServiceServer<lm::ChangeState>,
    get_state: ServiceServer<lm::GetState>,
    get_available_states: ServiceServer<lm::GetAvailableStates>,
    get_available_transitions: ServiceServer<lm::GetAvailableTransitions>,
    get_transition_graph: ServiceServer<lm::GetAvailableTransitions>,
    state_tx: watch::Sender<State>,
}

/// One request taken from any of the lifecycle services, to be passed to
/// [`LifecycleNode::handle`].
pub enum LifecycleRequest {
    ChangeState(Request<lm::ChangeState>),
    GetState(Request<lm::GetState>),
    GetAvailableStates(Request<lm::GetAvailableStates>),
    GetAvailableTransitions(Request<lm::GetAvailableTransitions>),
    GetTransitionGraph(Request<lm::GetAvailableTransitions>),
}

impl<C: LifecycleCallbacks> LifecycleNode<C> {
    /// Creates the lifecycle services and topic on `node`. The node starts
    /// Unconfigured, like every ROS 2 managed node.
    pub fn new(node: &Node, callbacks: C) -> Result<Self, GraphError> {
        let machine = StateMachine::new();
        let (state_tx, _) = watch::channel(machine.state());
        Ok(LifecycleNode {
            events: node.create_publisher("~/transition_event", qos::DEFAULT)?,
            change_state: node.create_service("~/change_state")?,
            get_state: node.create_service("~/get_state")?,
            get_available_states: node.create_service("~/get_available_states")?,
            get_available_transitions: node.create_service("~/get_available_transitions")?,
            get_transition_graph: node.create_service("~/get_transition_graph")?,
            node_name: node.fully_qualified_name(),
            machine,
            callbacks,
            state_tx,
        })
    }

    pub fn state(&self) -> State {
        self.machine.state()
    }

    /// A receiver that sees every state the node passes through.
    pub fn watch_state(&self) -> watch::Receiver<State> {
        self.state_tx.subscribe()
    }

    pub fn callbacks(&self) -> &C {
        &self.callbacks
    }

    pub fn callbacks_mut(&mut self) -> &mut C {
        &mut self.callbacks
    }

    fn announce(&self, transition: &TransitionInfo) {
        tracing::info!(
            node = %self.node_name,
            transition = %transition,
            from = %transition.start,
            to = %transition.goal,
            "lifecycle"
        );
        let event = lm::TransitionEvent {
            timestamp: now_nanos(),
            transition: lm::Transition {
                id: transition.id,
                label: transition.label.to_string(),
            },
            start_state: state_msg(transition.start),
            goal_state: state_msg(transition.goal),
        };
        if let Err(e) = self.events.publish(&event) {
            tracing::warn!(error = %e, "could not publish transition_event");
        }
        self.state_tx.send_replace(transition.goal);
    }

    async fn run_callback(&mut self, state: State, from: State) -> CallbackResult {
        match state.callback() {
            Some(Callback::Configure) => self.callbacks.on_configure().await,
            Some(Callback::Cleanup) => self.callbacks.on_cleanup().await,
            Some(Callback::Activate) => self.callbacks.on_activate().await,
            Some(Callback::Deactivate) => self.callbacks.on_deactivate().await,
            Some(Callback::Shutdown) => self.callbacks.on_shutdown(from).await,
            Some(Callback::Error) => self.callbacks.on_error(from).await,
            None => CallbackResult::Success,
        }
    }

    fn complete(&mut self, result: CallbackResult) {
        match self.machine.complete(result) {
            Ok(t) => self.announce(&t),
            // Only reachable if called outside a transition state, which
            // trigger never does; log rather than panic a running service.
            Err(e) => tracing::error!(error = %e, "lifecycle state machine refused to complete"),
        }
    }

    /// Runs one transition as rclcpp's `change_state` does: enter the
    /// transition state, run its callback, follow the result, and on error
    /// run `on_error` from ErrorProcessing.
    ///
    /// Returns the primary callback's result (`ChangeState` answers
    /// `success` only for [`CallbackResult::Success`]).
    pub async fn trigger(&mut self, id: u8, label: &str) -> Result<CallbackResult, LifecycleError> {
        let from = self.machine.state();
        let started = self.machine.start(id, label)?;
        self.announce(&started);
        let result = self.run_callback(started.goal, from).await;
        self.complete(result);
        if self.machine.state() == State::ErrorProcessing {
            let error_result = self
                .run_callback(State::ErrorProcessing, started.goal)
                .await;
            self.complete(error_result);
        }
        Ok(result)
    }

    /// Triggers the transition with this label (`configure`, `activate`, …).
    pub async fn trigger_label(&mut self, label: &str) -> Result<CallbackResult, LifecycleError> {
        self.trigger(0, label).await
    }

    /// Shuts the node down from whichever primary state it is in; a
    /// Finalized node stays as it is.
    pub async fn shutdown(&mut self) -> Result<(), LifecycleError> {
        if self.machine.state() != State::Finalized {
            self.trigger_label("shutdown").await?;
        }
        Ok(())
    }

    /// Waits for the next request on any lifecycle service. Cancel-safe, so
    /// a node's own event loop can `select!` on it beside other events.
    pub async fn next_request(&self) -> LifecycleRequest {
        tokio::select! {
            r = self.change_state.next() => LifecycleRequest::ChangeState(r),
            r = self.get_state.next() => LifecycleRequest::GetState(r),
            r = self.get_available_states.next() => LifecycleRequest::GetAvailableStates(r),
            r = self.get_available_transitions.next() => LifecycleRequest::GetAvailableTransitions(r),
            r = self.get_transition_graph.next() => LifecycleRequest::GetTransitionGraph(r),
        }
    }

    /// Serves the lifecycle services until `stop` completes, then shuts the
    /// node down. Requests are handled one at a time, so a stop never cuts a
    /// transition in half.
    pub async fn serve_until(&mut self, stop: impl Future<Output = ()>) {
        tokio::pin!(stop);
        loop {
            let request = tokio::select! {
                r = self.next_request() => r,
                () = &mut stop => break,
            };
            self.handle(request).await;
        }
        if let Err(e) = self.shutdown().await {
            tracing::warn!(node = %self.node_name, error = %e, "orderly shutdown refused");
        }
    }

    /// Answers one request (running a transition for `change_state`).
    pub async fn handle(&mut self, request: LifecycleRequest) {
        if let Err(e) = self.answer(request).await {
            tracing::warn!(node = %self.node_name, error = %e, "could not send a lifecycle reply");
        }
    }

    async fn answer(&mut self, request: LifecycleRequest) -> Result<(), GraphError> {
        match request {
            LifecycleRequest::ChangeState(req) => {
                let t = &req.body.transition;
                let success = match self.trigger(t.id, &t.label).await {
                    Ok(result) => result == CallbackResult::Success,
                    Err(e) => {
                        tracing::warn!(node = %self.node_name, error = %e, "change_state refused");
                        false
                    }
                };
                self.change_state
                    .respond(&req, &lm::ChangeStateResponse { success })
                    .await?;
            }
            LifecycleRequest::GetState(req) => {
                let response = lm::GetStateResponse {
                    current_state: state_msg(self.machine.state()),
                };
                self.get_state.respond(&req, &response).await?;
            }
            LifecycleRequest::GetAvailableStates(req) => {
                let response = lm::GetAvailableStatesResponse {
                    available_states: StateMachine::available_states()
                        .iter()
                        .map(|s| state_msg(*s))
                        .collect(),
                };
                self.get_available_states.respond(&req, &response).await?;
            }
            LifecycleRequest::GetAvailableTransitions(req) => {
                let response = lm::GetAvailableTransitionsResponse {
                    available_transitions: self
                        .machine
                        .available_transitions()
                        .iter()
                        .map(description)
                        .collect(),
                };
                self.get_available_transitions
                    .respond(&req, &response)
                    .await?;
            }
            LifecycleRequest::GetTransitionGraph(req) => {
                let response = lm::GetAvailableTransitionsResponse {
                    available_transitions: StateMachine::transition_graph()
                        .iter()
                        .map(description)
                        .collect(),
                };
                self.get_transition_graph.respond(&req, &response).await?;
            }
        }
        Ok(())
    }
}

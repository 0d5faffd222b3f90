//! `/ntari/ntari_example_node`: the smallest NTARI managed node.
//!
//! It supervises nothing; it shows the contract every service node keeps:
//! it starts Unconfigured, is driven with the standard lifecycle services
//! (`ros2 lifecycle set /ntari/ntari_example_node configure`), and publishes
//! `/ntari/example/health` (std_msgs/msg/Bool) at 1 Hz and at once on every
//! change: true only while Active.
//!
//! Run it with `cargo run --example ntari_example_node -- --autostart`.

use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, ValueEnum};
use ntari_node::graph::{qos, Context, Publisher, TypeDescriptionServer};
use ntari_node::lifecycle::{CallbackResult, LifecycleCallbacks, LifecycleNode, State};
use ntari_node::msg::rcl_interfaces::ParameterValue;
use ntari_node::msg::std_msgs::Bool;
use ntari_node::parameters::{ParameterServer, Parameters};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

/// A transition whose callback can be told to misbehave, for trying out
/// the failure and error paths of the lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Step {
    Configure,
    Cleanup,
    Activate,
    Deactivate,
    Shutdown,
}

/// The NTARI example lifecycle node (no daemon; health follows the state).
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Configure and activate at start-up, as OpenRC starts service nodes.
    #[arg(long)]
    autostart: bool,
    /// Make this transition's callback return FAILURE (repeatable).
    #[arg(long, value_name = "TRANSITION")]
    fail_on: Vec<Step>,
    /// Make this transition's callback return ERROR (repeatable).
    #[arg(long, value_name = "TRANSITION")]
    error_on: Vec<Step>,
}

struct Example {
    fail_on: Vec<Step>,
    error_on: Vec<Step>,
}

impl Example {
    fn outcome(&self, step: Step) -> CallbackResult {
        if self.error_on.contains(&step) {
            CallbackResult::Error
        } else if self.fail_on.contains(&step) {
            CallbackResult::Failure
        } else {
            CallbackResult::Success
        }
    }
}

impl LifecycleCallbacks for Example {
    async fn on_configure(&mut self) -> CallbackResult {
        self.outcome(Step::Configure)
    }
    async fn on_cleanup(&mut self) -> CallbackResult {
        self.outcome(Step::Cleanup)
    }
    async fn on_activate(&mut self) -> CallbackResult {
        self.outcome(Step::Activate)
    }
    async fn on_deactivate(&mut self) -> CallbackResult {
        self.outcome(Step::Deactivate)
    }
    async fn on_shutdown(&mut self, _from: State) -> CallbackResult {
        self.outcome(Step::Shutdown)
    }
}

/// Publishes health once a second, whenever the state changes, and when a
/// new subscriber appears (so it does not wait for the next tick).
async fn publish_health(health: &Publisher<Bool>, mut state: watch::Receiver<State>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        let data = *state.borrow_and_update() == State::Active;
        if let Err(e) = health.publish(&Bool { data }) {
            tracing::warn!(error = %e, "could not publish health");
        }
        tokio::select! {
            _ = tick.tick() => {}
            () = health.subscriptions_changed() => {}
            changed = state.changed() => if changed.is_err() { return },
        }
    }
}

/// The standard parameters plus the options the node was started with.
fn command_line_parameters(args: &Args) -> Parameters {
    let steps = |steps: &[Step]| {
        let names = steps.iter().filter_map(|s| s.to_possible_value());
        ParameterValue::string_array(names.map(|v| v.get_name().to_string()).collect())
    };
    let mut parameters = Parameters::standard();
    let from = "from the command line";
    parameters.insert("autostart", ParameterValue::bool(args.autostart), from);
    parameters.insert("fail_on", steps(&args.fail_on), from);
    parameters.insert("error_on", steps(&args.error_on), from);
    parameters
}

/// Resolves on SIGTERM or SIGINT. The handlers are installed when this is
/// called, not when the future is first polled: call it before the node
/// appears on the graph, or a SIGTERM sent as soon as a test (or OpenRC)
/// sees the node would still kill it the default way.
fn termination() -> impl std::future::Future<Output = ()> {
    let streams = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    );
    async move {
        match streams {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            _ => {
                tracing::error!("cannot listen for SIGTERM/SIGINT; stop with SIGKILL");
                std::future::pending::<()>().await
            }
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    ntari_node::runtime::init_logging("info");
    let terminated = termination();

    let context = Context::from_env().context("cannot join the ROS 2 domain")?;
    let node = context.create_node("/ntari", "ntari_example_node")?;
    let health = node.create_publisher::<Bool>("example/health", qos::DEFAULT)?;
    // The standard services of every ROS node: its type descriptions, and
    // its command line as read-only parameters.
    tokio::spawn(TypeDescriptionServer::new(&node)?.serve());
    let (_parameters, parameters_rx) = watch::channel(command_line_parameters(&args));
    let refusal = "the example node is set by its command line (--autostart, --fail-on, \
                   --error-on): restart it with other options";
    tokio::spawn(ParameterServer::new(&node, refusal)?.serve(parameters_rx));
    let mut lifecycle = LifecycleNode::new(
        &node,
        Example {
            fail_on: args.fail_on,
            error_on: args.error_on,
        },
    )?;
    tracing::info!(
        node = %node.fully_qualified_name(),
        domain = context.domain_id(),
        "started Unconfigured"
    );

    let state = lifecycle.watch_state();
    let serve = async {
        if args.autostart {
            for step in ["configure", "activate"] {
                match lifecycle.trigger_label(step).await {
                    Ok(CallbackResult::Success) => {}
                    outcome => {
                        tracing::warn!(step, ?outcome, "autostart stopped");
                        break;
                    }
                }
            }
        }
        lifecycle.serve_until(terminated).await;
    };
    tokio::select! {
        () = serve => {}
        () = publish_health(&health, state) => {}
    }
    // The last word on the wire: not healthy any more.
    health.publish(&Bool { data: false })?;
    tracing::info!("shut down");
    Ok(())
}

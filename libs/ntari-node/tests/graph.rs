//! The graph layer over real Cyclone DDS traffic on loopback: two
//! participants (two `Context`s) in one process, each test on its own domain.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Once;
use std::time::Duration;

use ntari_node::graph::{qos, Context};
use ntari_node::lifecycle::{CallbackResult, LifecycleCallbacks, LifecycleNode, State};
use ntari_node::msg::lifecycle_msgs as lm;
use ntari_node::msg::std_msgs::{Bool, StringMsg};
use ntari_node::msg::{RosMessage, RosService};
use ntari_node::typehash::TypeDescription;
use serde::{Deserialize, Serialize};
use tokio::time::{sleep, timeout, Instant};

const WAIT: Duration = Duration::from_secs(10);

/// Pins all DDS traffic to loopback and gives each test its own domain.
fn domain() -> u32 {
    static LOOPBACK: Once = Once::new();
    static NEXT: AtomicU32 = AtomicU32::new(0);
    LOOPBACK.call_once(|| {
        let xml = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/cyclonedds-loopback.xml"
        );
        std::env::set_var("CYCLONEDDS_URI", format!("file://{xml}"));
    });
    // Spread over 10..=209 by pid so concurrent test binaries rarely collide.
    10 + (std::process::id() * 13 + NEXT.fetch_add(1, Ordering::Relaxed)) % 200
}

async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_and_subscribe_across_participants() {
    let d = domain();
    let a = Context::new(d).unwrap();
    let b = Context::new(d).unwrap();
    let talker = a.create_node("/ntari", "talker").unwrap();
    let listener = b.create_node("/ntari", "listener").unwrap();
    let publisher = talker
        .create_publisher::<StringMsg>("chatter", qos::DEFAULT)
        .unwrap();
    let subscription = listener
        .create_subscription::<StringMsg>("/ntari/chatter", qos::DEFAULT)
        .unwrap();
    assert_eq!(publisher.topic(), "/ntari/chatter");
    eventually("publisher to match", || {
        publisher.matched_subscriptions() > 0
    })
    .await;
    publisher
        .publish(&StringMsg {
            data: "héllo".into(),
        })
        .unwrap();
    let got = timeout(WAIT, subscription.recv())
        .await
        .expect("no message");
    assert_eq!(got.data, "héllo");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latched_topics_reach_late_subscribers() {
    let d = domain();
    let a = Context::new(d).unwrap();
    let b = Context::new(d).unwrap();
    let node = a.create_node("/", "latcher").unwrap();
    let publisher = node
        .create_publisher::<Bool>("latched", qos::LATCHED)
        .unwrap();
    publisher.publish(&Bool { data: true }).unwrap();
    let late = b.create_node("/", "late").unwrap();
    let subscription = late
        .create_subscription::<Bool>("/latched", qos::LATCHED)
        .unwrap();
    let got = timeout(WAIT, subscription.recv())
        .await
        .expect("no latched sample");
    assert!(got.data);
}

struct Recorder {
    activate: CallbackResult,
}

impl LifecycleCallbacks for Recorder {
    async fn on_activate(&mut self) -> CallbackResult {
        self.activate
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_node_is_driven_through_its_services() {
    let d = domain();
    let server_ctx = Context::new(d).unwrap();
    let client_ctx = Context::new(d).unwrap();
    let node = server_ctx.create_node("/ntari", "managed").unwrap();
    let mut lifecycle = LifecycleNode::new(
        &node,
        Recorder {
            activate: CallbackResult::Success,
        },
    )
    .unwrap();
    let mut state = lifecycle.watch_state();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        lifecycle
            .serve_until(async {
                let _ = stop_rx.await;
            })
            .await;
        lifecycle.state()
    });

    let admin = client_ctx.create_node("/", "admin").unwrap();
    let events = admin
        .create_subscription::<lm::TransitionEvent>("/ntari/managed/transition_event", qos::DEFAULT)
        .unwrap();
    let change = admin
        .create_client::<lm::ChangeState>("/ntari/managed/change_state")
        .unwrap();
    let get = admin
        .create_client::<lm::GetState>("/ntari/managed/get_state")
        .unwrap();
    let transitions = admin
        .create_client::<lm::GetAvailableTransitions>("/ntari/managed/get_available_transitions")
        .unwrap();
    change.wait_for_service(WAIT).await.unwrap();
    get.wait_for_service(WAIT).await.unwrap();
    transitions.wait_for_service(WAIT).await.unwrap();

    let current = get
        .call(&lm::GetStateRequest::default(), WAIT)
        .await
        .unwrap();
    assert_eq!(current.current_state.id, State::Unconfigured.id());

    let by_id = |id: u8| lm::ChangeStateRequest {
        transition: lm::Transition {
            id,
            label: String::new(),
        },
    };
    // Activate from Unconfigured is not a transition: refused, state kept.
    assert!(!change.call(&by_id(3), WAIT).await.unwrap().success);
    assert!(change.call(&by_id(1), WAIT).await.unwrap().success);
    let by_label = lm::ChangeStateRequest {
        transition: lm::Transition {
            id: 0,
            label: "activate".into(),
        },
    };
    assert!(change.call(&by_label, WAIT).await.unwrap().success);
    assert_eq!(*state.borrow_and_update(), State::Active);

    let available = transitions
        .call(&lm::GetAvailableTransitionsRequest::default(), WAIT)
        .await
        .unwrap();
    let ids: Vec<u8> = available
        .available_transitions
        .iter()
        .map(|t| t.transition.id)
        .collect();
    assert_eq!(ids, [4, 7], "from Active: deactivate and shutdown, as rcl");

    // configure, its success, activate, its success: four events in order.
    let mut seen = Vec::new();
    while seen.len() < 4 {
        let e = timeout(WAIT, events.recv())
            .await
            .expect("missing transition_event");
        seen.push((e.transition.id, e.start_state.id, e.goal_state.id));
    }
    assert_eq!(seen, [(1, 1, 10), (10, 10, 2), (3, 2, 13), (30, 13, 3)]);

    stop_tx.send(()).unwrap();
    let final_state = timeout(WAIT, server).await.unwrap().unwrap();
    assert_eq!(
        final_state,
        State::Finalized,
        "stop performs an orderly shutdown"
    );
}

/// A service whose request claims to be ChangeState but carries other bytes:
/// how a confused or hostile peer looks from the node's side.
struct BogusChangeState;

#[derive(Debug, Serialize, Deserialize)]
struct BogusRequest {
    junk: Vec<u8>,
}

impl RosMessage for BogusRequest {
    const TYPE_NAME: &'static str = "lifecycle_msgs/srv/ChangeState_Request";
    fn type_description() -> TypeDescription {
        lm::ChangeStateRequest::type_description()
    }
}

impl RosService for BogusChangeState {
    const TYPE_NAME: &'static str = "lifecycle_msgs/srv/ChangeState";
    type Request = BogusRequest;
    type Response = lm::ChangeStateResponse;
    fn type_description() -> TypeDescription {
        lm::ChangeState::type_description()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_are_dropped_and_the_node_keeps_serving() {
    let d = domain();
    let server_ctx = Context::new(d).unwrap();
    let client_ctx = Context::new(d).unwrap();
    let node = server_ctx.create_node("/ntari", "sturdy").unwrap();
    let mut lifecycle = LifecycleNode::new(
        &node,
        Recorder {
            activate: CallbackResult::Error,
        },
    )
    .unwrap();
    let server = tokio::spawn(async move {
        lifecycle.serve_until(std::future::pending()).await;
    });
    let admin = client_ctx.create_node("/", "admin").unwrap();
    let bogus = admin
        .create_client::<BogusChangeState>("/ntari/sturdy/change_state")
        .unwrap();
    let change = admin
        .create_client::<lm::ChangeState>("/ntari/sturdy/change_state")
        .unwrap();
    let get = admin
        .create_client::<lm::GetState>("/ntari/sturdy/get_state")
        .unwrap();
    bogus.wait_for_service(WAIT).await.unwrap();
    change.wait_for_service(WAIT).await.unwrap();
    get.wait_for_service(WAIT).await.unwrap();

    // A string length far past the end of the payload: undecodable, dropped.
    let junk = BogusRequest {
        junk: vec![0, 0xff, 0xff, 0xff, 0x7f],
    };
    let reply = bogus.call(&junk, Duration::from_millis(500)).await;
    assert!(
        reply.is_err(),
        "a malformed request must not be answered: {reply:?}"
    );
    // Bigger than the 64 KiB request limit: dropped before decoding.
    let huge = BogusRequest {
        junk: vec![b'a'; 200 * 1024],
    };
    assert!(bogus.call(&huge, Duration::from_millis(500)).await.is_err());

    // An unknown transition id gets an answer: success = false.
    let unknown = lm::ChangeStateRequest {
        transition: lm::Transition {
            id: 77,
            label: String::new(),
        },
    };
    assert!(!change.call(&unknown, WAIT).await.unwrap().success);

    // Activate returns ERROR: ErrorProcessing, then on_error → Unconfigured.
    let configure = lm::ChangeStateRequest {
        transition: lm::Transition {
            id: 1,
            label: String::new(),
        },
    };
    assert!(change.call(&configure, WAIT).await.unwrap().success);
    let activate = lm::ChangeStateRequest {
        transition: lm::Transition {
            id: 3,
            label: String::new(),
        },
    };
    assert!(!change.call(&activate, WAIT).await.unwrap().success);
    let now = get
        .call(&lm::GetStateRequest::default(), WAIT)
        .await
        .unwrap();
    assert_eq!(now.current_state.id, State::Unconfigured.id());
    assert!(!server.is_finished(), "the node must survive bad input");
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_go_to_the_client_that_asked() {
    let d = domain();
    let server_ctx = Context::new(d).unwrap();
    let client_ctx = Context::new(d).unwrap();
    let node = server_ctx.create_node("/", "answerer").unwrap();
    let mut lifecycle = LifecycleNode::new(
        &node,
        Recorder {
            activate: CallbackResult::Success,
        },
    )
    .unwrap();
    let server = tokio::spawn(async move { lifecycle.serve_until(std::future::pending()).await });
    let admin = client_ctx.create_node("/", "two_clients").unwrap();
    let first = admin
        .create_client::<lm::GetState>("/answerer/get_state")
        .unwrap();
    let second = admin
        .create_client::<lm::GetState>("/answerer/get_state")
        .unwrap();
    first.wait_for_service(WAIT).await.unwrap();
    second.wait_for_service(WAIT).await.unwrap();
    // Both clients see both replies on the wire; each must take only its own.
    let request = lm::GetStateRequest::default();
    let (a, b) = tokio::join!(first.call(&request, WAIT), second.call(&request, WAIT));
    assert_eq!(a.unwrap().current_state.label, "unconfigured");
    assert_eq!(b.unwrap().current_state.label, "unconfigured");
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_time_out_when_nobody_serves() {
    let ctx = Context::new(domain()).unwrap();
    let node = ctx.create_node("/", "lonely").unwrap();
    let client = node
        .create_client::<lm::GetState>("/nobody/get_state")
        .unwrap();
    let err = client
        .wait_for_service(Duration::from_millis(200))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("/nobody/get_state"), "{err}");
    let err = client
        .call(&lm::GetStateRequest::default(), Duration::from_millis(200))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no reply"), "{err}");
}

//! The Prometheus endpoint every service node serves on
//! `127.0.0.1:<port>/metrics` (DESIGN.md §1).
//!
//! [`Metrics`] holds one registry with two kinds of families:
//! - the service's own, one gauge family per [`MetricDesc`], named exactly as
//!   the well-known exporters name them (chrony_exporter, dnsmasq_exporter,
//!   kea-exporter, …) so existing dashboards and alerts work unchanged;
//! - the node's own, `ntari_node_*`, each carrying the constant label
//!   `service="<name>"`.
//!
//! [`serve`] is a deliberately small HTTP/1 server: it only answers
//! `GET`/`HEAD /metrics` (and a pointer at `/`), never reads request bodies,
//! limits header size and header-read time, and caps concurrent connections,
//! so a misbehaving local client cannot pin memory or the node.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus::{
    Gauge, GaugeVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use crate::service::{MetricDesc, MetricSample};

/// Content type of the Prometheus text exposition format 0.0.4.
pub const CONTENT_TYPE_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Errors building the registry or opening the endpoint.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// A metric family could not be created or registered (invalid or
    /// duplicate name, invalid label name).
    #[error("metric family `{name}`: {source}")]
    Register {
        name: String,
        #[source]
        source: prometheus::Error,
    },
    /// The listening socket could not be opened.
    #[error("cannot serve metrics on 127.0.0.1:{port}: {source}; {hint}")]
    Bind {
        port: u16,
        hint: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// The metrics of one service node. Cheap to share behind an `Arc`; every
/// setter takes `&self`.
pub struct Metrics {
    registry: Registry,
    /// Service families by name, with their label count.
    service: HashMap<&'static str, (GaugeVec, usize)>,
    healthy: IntGauge,
    lifecycle_state: IntGauge,
    daemon_up: IntGaugeVec,
    daemon_restarts: IntCounterVec,
    daemon_uptime: GaugeVec,
    probe_success: IntGauge,
    probe_duration: Gauge,
    last_probe_success: Gauge,
    /// Serialises `update_service` against `render`, so a scrape never sees
    /// the empty moment between reset and refill.
    update_lock: Mutex<()>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("service_families", &self.service.len())
            .finish_non_exhaustive()
    }
}

fn register<C>(registry: &Registry, name: &str, collector: C) -> Result<C, MetricsError>
where
    C: prometheus::core::Collector + Clone + 'static,
{
    registry
        .register(Box::new(collector.clone()))
        .map_err(|source| MetricsError::Register {
            name: name.to_string(),
            source,
        })?;
    Ok(collector)
}

fn reg_err(name: &str) -> impl FnOnce(prometheus::Error) -> MetricsError + '_ {
    move |source| MetricsError::Register {
        name: name.to_string(),
        source,
    }
}

impl Metrics {
    /// A registry with the node families (labelled `service="<service>"`)
    /// and one gauge family per entry of `descs`.
    pub fn new(service: &str, descs: &'static [MetricDesc]) -> Result<Metrics, MetricsError> {
        let registry = Registry::new();
        let node_opts = |name: &str, help: &str| {
            Opts::new(name, help).const_label("service", service.to_string())
        };

        macro_rules! node_metric {
            ($ty:ty, $name:expr, $help:expr) => {{
                let m = <$ty>::with_opts(node_opts($name, $help)).map_err(reg_err($name))?;
                register(&registry, $name, m)?
            }};
        }

        let healthy = node_metric!(
            IntGauge,
            "ntari_node_healthy",
            "1 when the node is Active, its daemon is alive and the last probe succeeded recently."
        );
        let lifecycle_state = node_metric!(
            IntGauge,
            "ntari_node_lifecycle_state",
            "ROS 2 lifecycle state id of the node (1 unconfigured, 2 inactive, 3 active, 4 finalized, 10-15 transitioning)."
        );
        // One series per daemon, labelled `daemon`.
        macro_rules! daemon_metric {
            ($ty:ty, $name:expr, $help:expr) => {{
                let m = <$ty>::new(node_opts($name, $help), &["daemon"]).map_err(reg_err($name))?;
                register(&registry, $name, m)?
            }};
        }
        let daemon_up = daemon_metric!(
            IntGaugeVec,
            "ntari_node_daemon_up",
            "1 when the supervised daemon process is running."
        );
        let daemon_restarts = daemon_metric!(
            IntCounterVec,
            "ntari_node_daemon_restarts_total",
            "Times the supervisor restarted the daemon after it exited."
        );
        let daemon_uptime = daemon_metric!(
            GaugeVec,
            "ntari_node_daemon_uptime_seconds",
            "Seconds since the current daemon process started (0 when it is not running)."
        );
        let probe_success = node_metric!(
            IntGauge,
            "ntari_node_probe_success",
            "1 when the last protocol probe of the daemon succeeded."
        );
        let probe_duration = node_metric!(
            Gauge,
            "ntari_node_probe_duration_seconds",
            "Duration of the last protocol probe in seconds."
        );
        let last_probe_success = node_metric!(
            Gauge,
            "ntari_node_last_probe_success_timestamp_seconds",
            "Unix time of the last successful protocol probe."
        );

        let build_name = "ntari_node_build_info";
        let build_info = GaugeVec::new(
            node_opts(
                build_name,
                "Always 1; the version label is the node's version.",
            ),
            &["version"],
        )
        .map_err(reg_err(build_name))?;
        let build_info = register(&registry, build_name, build_info)?;
        build_info
            .get_metric_with_label_values(&[env!("CARGO_PKG_VERSION")])
            .map_err(reg_err(build_name))?
            .set(1.0);

        let mut families = HashMap::with_capacity(descs.len());
        for desc in descs {
            // prometheus refuses an empty help string; a missing help should
            // not stop a node from starting.
            let help = if desc.help.is_empty() {
                desc.name
            } else {
                desc.help
            };
            // No `service` const label here: these families keep the exact
            // shape of the upstream exporters'.
            let vec = GaugeVec::new(Opts::new(desc.name, help), desc.labels)
                .map_err(reg_err(desc.name))?;
            let vec = register(&registry, desc.name, vec)?;
            families.insert(desc.name, (vec, desc.labels.len()));
        }

        Ok(Metrics {
            registry,
            service: families,
            healthy,
            lifecycle_state,
            daemon_up,
            daemon_restarts,
            daemon_uptime,
            probe_success,
            probe_duration,
            last_probe_success,
            update_lock: Mutex::new(()),
        })
    }

    /// `ntari_node_healthy`.
    pub fn set_healthy(&self, healthy: bool) {
        self.healthy.set(i64::from(healthy));
    }

    /// `ntari_node_lifecycle_state`: a lifecycle_msgs/State id.
    pub fn set_lifecycle_state(&self, state_id: u8) {
        self.lifecycle_state.set(i64::from(state_id));
    }

    /// `ntari_node_daemon_restarts_total{daemon}` += 1.
    pub fn inc_restarts(&self, daemon: &str) {
        self.daemon_restarts.with_label_values(&[daemon]).inc();
    }

    /// `ntari_node_daemon_up{daemon}` and `ntari_node_daemon_uptime_seconds{daemon}`.
    pub fn set_daemon(&self, daemon: &str, up: bool, uptime: Duration) {
        self.daemon_up
            .with_label_values(&[daemon])
            .set(i64::from(up));
        self.daemon_uptime.with_label_values(&[daemon]).set(if up {
            uptime.as_secs_f64()
        } else {
            0.0
        });
    }

    /// Records one probe: `ntari_node_probe_success`,
    /// `ntari_node_probe_duration_seconds` and, on success,
    /// `ntari_node_last_probe_success_timestamp_seconds` (now).
    pub fn record_probe(&self, success: bool, duration: Duration) {
        self.probe_success.set(i64::from(success));
        self.probe_duration.set(duration.as_secs_f64());
        if success {
            // A clock before 1970 is not worth failing a probe over.
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0);
            self.last_probe_success.set(now);
        }
    }

    /// Replaces every service family's series with `samples`. Series not in
    /// `samples` disappear (a removed NTP source, an expired lease pool).
    /// Samples with an unknown name or the wrong number of label values are
    /// skipped with a warning.
    pub fn update_service(&self, samples: &[MetricSample]) {
        // A poisoned lock only means another updater panicked; the guarded
        // data is `()`, so carrying on is safe.
        let _guard = self.update_lock.lock().unwrap_or_else(|e| e.into_inner());
        for (vec, _) in self.service.values() {
            vec.reset();
        }
        for sample in samples {
            let Some((vec, label_count)) = self.service.get(sample.name) else {
                tracing::warn!(
                    metric = sample.name,
                    "skipping sample of an undeclared metric"
                );
                continue;
            };
            if sample.label_values.len() != *label_count {
                tracing::warn!(
                    metric = sample.name,
                    expected = *label_count,
                    got = sample.label_values.len(),
                    "skipping sample with the wrong number of label values"
                );
                continue;
            }
            match vec.get_metric_with_label_values(&sample.label_values) {
                Ok(gauge) => gauge.set(sample.value),
                Err(e) => {
                    tracing::warn!(metric = sample.name, error = %e, "skipping sample");
                }
            }
        }
    }

    /// The registry in the Prometheus text format.
    pub fn render(&self) -> String {
        let families = {
            let _guard = self.update_lock.lock().unwrap_or_else(|e| e.into_inner());
            self.registry.gather()
        };
        let mut out = String::with_capacity(4096);
        if let Err(e) = TextEncoder::new().encode_utf8(&families, &mut out) {
            // Only reachable with malformed families, which `new` rejects;
            // serve what was encoded rather than nothing.
            tracing::warn!(error = %e, "encoding metrics failed");
        }
        out
    }

    /// The underlying registry, for callers that add their own collectors.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }
}

/// Opens `127.0.0.1:port` for [`serve`].
pub async fn bind(port: u16) -> Result<TcpListener, MetricsError> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    TcpListener::bind(addr).await.map_err(|source| {
        let hint = match source.kind() {
            std::io::ErrorKind::AddrInUse => {
                "the port is already in use (another node or exporter?): stop that process or choose a free port with --metrics-port"
            }
            std::io::ErrorKind::PermissionDenied => {
                "permission denied: choose a port above 1023 with --metrics-port"
            }
            _ => "choose another port with --metrics-port",
        };
        MetricsError::Bind { port, hint, source }
    })
}

/// Limits of the metrics server.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Time a client has to send a complete request head, also while a
    /// kept-alive connection is idle (slowloris protection).
    pub header_read_timeout: Duration,
    /// Connections served at once; further ones are closed at accept.
    pub max_connections: usize,
    /// A connection is asked to close after this long, whatever it does,
    /// so a client that stops reading responses cannot hold a slot forever.
    pub max_connection_age: Duration,
    /// On shutdown, how long open connections get to finish.
    pub shutdown_grace: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            header_read_timeout: Duration::from_secs(10),
            max_connections: 16,
            max_connection_age: Duration::from_secs(300),
            shutdown_grace: Duration::from_secs(1),
        }
    }
}

/// Largest request head (request line + headers) accepted; larger ones get
/// 431 and the connection is closed. hyper's minimum is 8 KiB.
const MAX_HEAD_BYTES: usize = 16 * 1024;

/// Serves `metrics` on `listener` with [`ServeOptions::default`] until
/// `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), MetricsError> {
    serve_with(listener, metrics, ServeOptions::default(), shutdown).await
}

/// [`serve`] with explicit limits.
pub async fn serve_with(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    options: ServeOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<(), MetricsError> {
    let permits = Arc::new(Semaphore::new(options.max_connections.max(1)));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout)
        .max_buf_size(MAX_HEAD_BYTES)
        .max_headers(64);
    let builder = Arc::new(builder);

    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            // Reap finished connection tasks so the set stays small.
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Usually EMFILE or a connection reset before accept:
                        // transient, so back off briefly instead of spinning
                        // or giving up.
                        tracing::warn!(error = %e, "metrics: accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let Ok(permit) = permits.clone().try_acquire_owned() else {
                    tracing::debug!(%peer, "metrics: too many connections, closing");
                    drop(stream);
                    continue;
                };
                let metrics = metrics.clone();
                let builder = builder.clone();
                let mut stop_rx = stop_rx.clone();
                let options = options.clone();
                tasks.spawn(async move {
                    let _permit = permit;
                    let service = hyper::service::service_fn(move |req| {
                        let metrics = metrics.clone();
                        async move { Ok::<_, Infallible>(respond(&metrics, &req)) }
                    });
                    let conn = builder.serve_connection(TokioIo::new(stream), service);
                    tokio::pin!(conn);
                    let age = tokio::time::sleep(options.max_connection_age);
                    tokio::pin!(age);
                    let result = tokio::select! {
                        r = conn.as_mut() => r,
                        _ = stop_rx.changed() => {
                            conn.as_mut().graceful_shutdown();
                            finish(conn, options.shutdown_grace).await
                        }
                        () = &mut age => {
                            conn.as_mut().graceful_shutdown();
                            finish(conn, options.header_read_timeout).await
                        }
                    };
                    if let Err(e) = result {
                        tracing::debug!(%peer, error = %e, "metrics: connection error");
                    }
                });
            }
        }
    }

    drop(listener);
    // Ask every connection to finish its current response, then drop the
    // stragglers.
    let _ = stop_tx.send(true);
    let drain = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(options.shutdown_grace, drain)
        .await
        .is_err()
    {
        tasks.abort_all();
    }
    Ok(())
}

/// Drives a connection that was asked to shut down, for at most `grace`.
async fn finish<F>(conn: F, grace: Duration) -> Result<(), hyper::Error>
where
    F: Future<Output = Result<(), hyper::Error>>,
{
    // A timeout here just means we drop the socket; not an error worth
    // reporting beyond the debug log of the caller.
    tokio::time::timeout(grace, conn).await.unwrap_or(Ok(()))
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// Routes one request. The body is never read: no endpoint takes one, and
/// hyper closes the connection rather than drain a large unread body.
fn respond(metrics: &Metrics, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    if path != "/metrics" && path != "/" {
        return text(
            StatusCode::NOT_FOUND,
            "not found; metrics are at /metrics\n",
        );
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut resp = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        resp.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return resp;
    }
    if path == "/" {
        return text(
            StatusCode::OK,
            "NTARI OS service node: Prometheus metrics at /metrics\n",
        );
    }
    // hyper sends no body for HEAD but keeps the Content-Length.
    let mut resp = text(StatusCode::OK, metrics.render());
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE_TEXT));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    static DESCS: &[MetricDesc] = &[
        MetricDesc {
            name: "chrony_tracking_stratum",
            help: "Stratum of the local clock.",
            labels: &[],
        },
        MetricDesc {
            name: "chrony_sources_last_sample_offset_seconds",
            help: "Offset of the last sample of each source.",
            labels: &["source_address", "source_name"],
        },
    ];

    fn metrics() -> Metrics {
        Metrics::new("ntp", DESCS).expect("metrics")
    }

    #[test]
    fn metrics_is_send_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Metrics>();
    }

    #[test]
    fn render_has_node_families_with_service_label() {
        let m = metrics();
        m.set_healthy(true);
        m.set_lifecycle_state(3);
        m.inc_restarts("chronyd");
        m.inc_restarts("chronyd");
        m.set_daemon("chronyd", true, Duration::from_secs(42));
        m.record_probe(true, Duration::from_millis(250));
        m.update_service(&[MetricSample::new("chrony_tracking_stratum", 2.0)]);
        let out = m.render();
        for line in [
            "# HELP ntari_node_healthy ",
            "# TYPE ntari_node_healthy gauge",
            "ntari_node_healthy{service=\"ntp\"} 1",
            "# TYPE ntari_node_lifecycle_state gauge",
            "ntari_node_lifecycle_state{service=\"ntp\"} 3",
            "ntari_node_daemon_up{daemon=\"chronyd\",service=\"ntp\"} 1",
            "# TYPE ntari_node_daemon_restarts_total counter",
            "ntari_node_daemon_restarts_total{daemon=\"chronyd\",service=\"ntp\"} 2",
            "ntari_node_daemon_uptime_seconds{daemon=\"chronyd\",service=\"ntp\"} 42",
            "ntari_node_probe_success{service=\"ntp\"} 1",
            "ntari_node_probe_duration_seconds{service=\"ntp\"} 0.25",
            "# TYPE ntari_node_last_probe_success_timestamp_seconds gauge",
            "ntari_node_last_probe_success_timestamp_seconds{service=\"ntp\"} ",
            &format!(
                "ntari_node_build_info{{service=\"ntp\",version=\"{}\"}} 1",
                env!("CARGO_PKG_VERSION")
            ),
            "# HELP chrony_tracking_stratum Stratum of the local clock.",
            "# TYPE chrony_tracking_stratum gauge",
            "chrony_tracking_stratum 2",
        ] {
            assert!(out.contains(line), "missing {line:?} in\n{out}");
        }
        // A failed probe keeps the last success time but clears success.
        m.record_probe(false, Duration::from_secs(1));
        m.set_daemon("chronyd", false, Duration::from_secs(42));
        let out = m.render();
        assert!(out.contains("ntari_node_probe_success{service=\"ntp\"} 0"));
        assert!(
            out.contains("ntari_node_daemon_uptime_seconds{daemon=\"chronyd\",service=\"ntp\"} 0")
        );
        assert!(
            !out.contains("ntari_node_last_probe_success_timestamp_seconds{service=\"ntp\"} 0\n")
        );
    }

    #[test]
    fn update_service_drops_vanished_series() {
        let m = metrics();
        let name = "chrony_sources_last_sample_offset_seconds";
        m.update_service(&[
            MetricSample::labelled(name, &["192.0.2.1", "a.example"], 0.001),
            MetricSample::labelled(name, &["192.0.2.2", "b.example"], -0.002),
        ]);
        let out = m.render();
        assert!(out.contains("source_address=\"192.0.2.1\""), "{out}");
        assert!(out.contains("source_address=\"192.0.2.2\""), "{out}");
        m.update_service(&[MetricSample::labelled(
            name,
            &["192.0.2.1", "a.example"],
            0.003,
        )]);
        let out = m.render();
        assert!(out.contains(
            "chrony_sources_last_sample_offset_seconds{source_address=\"192.0.2.1\",source_name=\"a.example\"} 0.003"
        ), "{out}");
        assert!(!out.contains("192.0.2.2"), "{out}");
    }

    #[test]
    fn bad_samples_are_skipped() {
        let m = metrics();
        let name = "chrony_sources_last_sample_offset_seconds";
        m.update_service(&[
            MetricSample::labelled(name, &["only-one"], 1.0),
            MetricSample::labelled(name, &["a", "b", "c"], 1.0),
            MetricSample::labelled("chrony_tracking_stratum", &["extra"], 1.0),
            MetricSample::new("no_such_metric", 1.0),
            MetricSample::new("chrony_tracking_stratum", 3.0),
        ]);
        let out = m.render();
        assert!(out.contains("chrony_tracking_stratum 3"), "{out}");
        assert!(!out.contains("only-one"), "{out}");
        assert!(!out.contains(name), "{out}");
        assert!(!out.contains("no_such_metric"), "{out}");
    }

    #[test]
    fn invalid_descs_are_errors() {
        static DUP: &[MetricDesc] = &[
            MetricDesc {
                name: "x_total",
                help: "x",
                labels: &[],
            },
            MetricDesc {
                name: "x_total",
                help: "x",
                labels: &[],
            },
        ];
        static BAD_NAME: &[MetricDesc] = &[MetricDesc {
            name: "bad-name",
            help: "x",
            labels: &[],
        }];
        static CLASH: &[MetricDesc] = &[MetricDesc {
            name: "ntari_node_healthy",
            help: "x",
            labels: &[],
        }];
        static NO_HELP: &[MetricDesc] = &[MetricDesc {
            name: "fine",
            help: "",
            labels: &["l"],
        }];
        for descs in [DUP, BAD_NAME, CLASH] {
            let err = Metrics::new("t", descs).expect_err("must fail");
            assert!(matches!(err, MetricsError::Register { .. }), "{err}");
        }
        assert!(Metrics::new("t", NO_HELP).is_ok());
    }

    #[tokio::test]
    async fn bind_error_names_port_and_flag() {
        let first = bind(0).await.expect("bind");
        let port = first.local_addr().expect("addr").port();
        let err = bind(port).await.expect_err("port in use");
        let msg = err.to_string();
        assert!(msg.contains(&port.to_string()), "{msg}");
        assert!(msg.contains("--metrics-port"), "{msg}");
    }

    struct Server {
        addr: SocketAddr,
        stop: Option<tokio::sync::oneshot::Sender<()>>,
        task: tokio::task::JoinHandle<Result<(), MetricsError>>,
    }

    async fn start(options: ServeOptions) -> Server {
        let m = Arc::new(metrics());
        m.set_healthy(true);
        let listener = bind(0).await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(serve_with(listener, m, options, async {
            let _ = rx.await;
        }));
        Server {
            addr,
            stop: Some(tx),
            task,
        }
    }

    /// Sends `raw`, reads until the server closes (or `limit`), returns what
    /// was read; `None` when the connection was refused or reset.
    async fn exchange(addr: SocketAddr, raw: &[u8], limit: Duration) -> Option<String> {
        let mut s = TcpStream::connect(addr).await.ok()?;
        // The server may close before reading everything we send.
        let _ = s.write_all(raw).await;
        let mut buf = Vec::new();
        match tokio::time::timeout(limit, s.read_to_end(&mut buf)).await {
            Ok(Ok(_)) => Some(String::from_utf8_lossy(&buf).into_owned()),
            Ok(Err(_)) => None,
            Err(_) => panic!("server did not close within {limit:?}"),
        }
    }

    async fn get(addr: SocketAddr, method: &str, path: &str) -> String {
        let req = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        exchange(addr, req.as_bytes(), Duration::from_secs(5))
            .await
            .expect("response")
    }

    async fn assert_alive(addr: SocketAddr) {
        let r = get(addr, "GET", "/metrics").await;
        assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    }

    #[tokio::test]
    async fn serves_routes() {
        let srv = start(ServeOptions::default()).await;
        let r = get(srv.addr, "GET", "/metrics").await;
        assert!(r.starts_with("HTTP/1.1 200"), "{r}");
        assert!(
            r.to_ascii_lowercase()
                .contains("content-type: text/plain; version=0.0.4; charset=utf-8"),
            "{r}"
        );
        assert!(r.contains("ntari_node_healthy{service=\"ntp\"} 1"), "{r}");

        let r = get(srv.addr, "HEAD", "/metrics").await;
        assert!(r.starts_with("HTTP/1.1 200"), "{r}");
        assert!(!r.contains("ntari_node_healthy"), "{r}");

        let r = get(srv.addr, "GET", "/").await;
        assert!(
            r.starts_with("HTTP/1.1 200") && r.contains("/metrics"),
            "{r}"
        );

        let r = get(srv.addr, "GET", "/nope").await;
        assert!(r.starts_with("HTTP/1.1 404"), "{r}");

        let r = get(srv.addr, "POST", "/metrics").await;
        assert!(r.starts_with("HTTP/1.1 405"), "{r}");
        assert!(r.to_ascii_lowercase().contains("allow: get, head"), "{r}");

        // A body that is never read does not keep the server waiting.
        let req = b"PUT /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\nabc";
        let r = exchange(srv.addr, req, Duration::from_secs(5))
            .await
            .unwrap_or_default();
        assert!(r.is_empty() || r.starts_with("HTTP/1.1 405"), "{r}");

        // Keep-alive: two requests on one connection.
        let mut s = TcpStream::connect(srv.addr).await.expect("connect");
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .expect("write");
        let mut buf = String::new();
        tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut buf))
            .await
            .expect("in time")
            .expect("read");
        assert_eq!(buf.matches("HTTP/1.1 200").count(), 2, "{buf}");
    }

    #[tokio::test]
    async fn survives_garbage_and_huge_request_line() {
        let srv = start(ServeOptions::default()).await;
        let garbage: Vec<u8> = (0..4096u32).map(|i| (i * 7919 % 251) as u8).collect();
        let r = exchange(srv.addr, &garbage, Duration::from_secs(5))
            .await
            .unwrap_or_default();
        assert!(r.is_empty() || r.starts_with("HTTP/1.1 400"), "{r}");
        assert_alive(srv.addr).await;

        let mut huge = b"GET /".to_vec();
        huge.extend(std::iter::repeat_n(b'a', 100 * 1024));
        huge.extend_from_slice(b" HTTP/1.1\r\nHost: x\r\n\r\n");
        let r = exchange(srv.addr, &huge, Duration::from_secs(5))
            .await
            .unwrap_or_default();
        assert!(r.is_empty() || r.starts_with("HTTP/1.1 4"), "{r}");
        assert_alive(srv.addr).await;
    }

    #[tokio::test]
    async fn stalled_client_is_cut_off() {
        let srv = start(ServeOptions {
            header_read_timeout: Duration::from_millis(200),
            ..ServeOptions::default()
        })
        .await;
        let started = std::time::Instant::now();
        // Half a request, then silence: the server must close by itself.
        let r = exchange(
            srv.addr,
            b"GET /metrics HTTP/1.1\r\nHost:",
            Duration::from_secs(5),
        )
        .await;
        assert!(started.elapsed() < Duration::from_secs(3));
        assert!(!r.unwrap_or_default().contains("200 OK"));
        // An idle kept-alive connection is closed the same way.
        let r = exchange(srv.addr, b"", Duration::from_secs(5)).await;
        assert!(r.unwrap_or_default().is_empty());
        assert_alive(srv.addr).await;
    }

    #[tokio::test]
    async fn excess_connections_are_closed() {
        let srv = start(ServeOptions {
            header_read_timeout: Duration::from_millis(500),
            max_connections: 4,
            ..ServeOptions::default()
        })
        .await;
        // Fill every slot with a silent client.
        let mut held = Vec::new();
        for _ in 0..4 {
            held.push(TcpStream::connect(srv.addr).await.expect("connect"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        let r = exchange(
            srv.addr,
            b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            Duration::from_secs(2),
        )
        .await;
        assert!(
            r.unwrap_or_default().is_empty(),
            "excess connection was served"
        );
        // Once the silent ones time out, slots are free again.
        tokio::time::sleep(Duration::from_millis(800)).await;
        assert_alive(srv.addr).await;
        drop(held);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn many_concurrent_clients() {
        let srv = start(ServeOptions::default()).await;
        let mut clients = JoinSet::new();
        for _ in 0..64 {
            let addr = srv.addr;
            clients.spawn(async move {
                exchange(
                    addr,
                    b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                    Duration::from_secs(10),
                )
                .await
                .unwrap_or_default()
            });
        }
        let mut ok = 0;
        while let Some(r) = clients.join_next().await {
            let r = r.expect("client task");
            // Each client is either served or closed at accept, never hung.
            assert!(r.is_empty() || r.starts_with("HTTP/1.1 200"), "{r}");
            ok += usize::from(!r.is_empty());
        }
        assert!(ok > 0);
        assert_alive(srv.addr).await;
    }

    #[tokio::test]
    async fn stops_on_shutdown() {
        let mut srv = start(ServeOptions::default()).await;
        assert_alive(srv.addr).await;
        // An open idle connection must not delay shutdown past the grace.
        let _idle = TcpStream::connect(srv.addr).await.expect("connect");
        tokio::time::sleep(Duration::from_millis(50)).await;
        if let Some(stop) = srv.stop.take() {
            let _ = stop.send(());
        }
        let res = tokio::time::timeout(Duration::from_secs(3), srv.task)
            .await
            .expect("server stopped in time")
            .expect("server task");
        assert!(res.is_ok());
        assert!(TcpStream::connect(srv.addr).await.is_err());
    }
}

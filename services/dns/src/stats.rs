//! The probe: real DNS exchanges with dnsmasq, asking its statistics.
//!
//! dnsmasq answers queries of class CHAOS, type TXT, for `cachesize.bind`,
//! `insertions.bind`, `evictions.bind`, `misses.bind`, `hits.bind`,
//! `auth.bind` and `servers.bind` (dnsmasq(8), "NOTES"). dnsmasq 2.90
//! refuses a message with more than one question, so, like
//! dnsmasq_exporter, the probe sends seven queries (all at once, on one
//! socket, told apart by id). The answers prove the resolver's query path
//! works and carry the status and the metrics (named as dnsmasq_exporter
//! names them).

use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, RecordType};
use ntari_node::service::{MetricDesc, MetricSample};
use serde_json::{json, Map, Value};

/// How long the probe waits for dnsmasq's answers.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The names asked, in the order of their query ids.
pub const STATS_NAMES: [&str; 7] = [
    "cachesize.bind.",
    "insertions.bind.",
    "evictions.bind.",
    "misses.bind.",
    "hits.bind.",
    "auth.bind.",
    "servers.bind.",
];

/// What one `servers.bind` string says about an upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerStats {
    /// `ip#port`, as in the config's `upstream_servers`.
    pub server: String,
    pub queries: u64,
    pub failed: u64,
}

/// dnsmasq's statistics; a counter it did not answer stays None.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DnsmasqStats {
    pub cache_size: Option<u64>,
    pub insertions: Option<u64>,
    pub evictions: Option<u64>,
    pub misses: Option<u64>,
    pub hits: Option<u64>,
    pub auth: Option<u64>,
    pub servers: Vec<ServerStats>,
}

/// A CHAOS TXT query for `name` with message id `id`.
pub fn stats_query(id: u16, name: &str) -> Result<Vec<u8>, String> {
    let mut message = Message::new();
    message
        .set_id(id)
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(true);
    let name = Name::from_ascii(name).map_err(|e| format!("{name}: {e}"))?;
    let mut query = Query::query(name, RecordType::TXT);
    query.set_query_class(DNSClass::CH);
    message.add_query(query);
    message
        .to_vec()
        .map_err(|e| format!("cannot encode the query: {e}"))
}

/// Per TXT record of an answer: the owner name (lower case) and its strings.
pub fn answer_records(message: &Message) -> Result<Vec<(String, Vec<String>)>, String> {
    if message.message_type() != MessageType::Response {
        return Err("a query, not an answer".to_string());
    }
    if message.response_code() != ResponseCode::NoError {
        return Err(format!(
            "dnsmasq answered a statistics query with {}",
            message.response_code()
        ));
    }
    let records = message
        .answers()
        .iter()
        .filter_map(|record| match record.data() {
            RData::TXT(txt) => Some((
                record.name().to_ascii().to_ascii_lowercase(),
                txt.iter()
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .collect(),
            )),
            _ => None,
        })
        .collect();
    Ok(records)
}

impl DnsmasqStats {
    /// Takes in one TXT record of an answer.
    pub fn record(&mut self, name: &str, strings: &[String]) -> Result<(), String> {
        if name == "servers.bind." {
            for entry in strings {
                self.servers.push(parse_server(entry)?);
            }
            return Ok(());
        }
        let slot = match name {
            "cachesize.bind." => &mut self.cache_size,
            "insertions.bind." => &mut self.insertions,
            "evictions.bind." => &mut self.evictions,
            "misses.bind." => &mut self.misses,
            "hits.bind." => &mut self.hits,
            "auth.bind." => &mut self.auth,
            _ => return Ok(()), // not asked; ignore
        };
        let text = strings.first().map(String::as_str).unwrap_or_default();
        *slot = Some(
            text.trim()
                .parse()
                .map_err(|_| format!("{name} is `{text}`, not a count"))?,
        );
        Ok(())
    }
}

/// `127.0.0.1#53 12 0`: server, queries sent, queries failed.
fn parse_server(entry: &str) -> Result<ServerStats, String> {
    let fields: Vec<&str> = entry.split_whitespace().collect();
    let bad = || format!("servers.bind entry `{entry}` is not `server queries failed`");
    let [server, queries, failed] = fields[..] else {
        return Err(bad());
    };
    Ok(ServerStats {
        server: server.to_string(),
        queries: queries.parse().map_err(|_| bad())?,
        failed: failed.parse().map_err(|_| bad())?,
    })
}

/// Sends the seven statistics queries to `target` over UDP and collects
/// the answers, ignoring datagrams that answer nothing asked.
pub async fn query_stats(target: SocketAddr, timeout: Duration) -> Result<DnsmasqStats, String> {
    let first_id = random_id();
    let local: SocketAddr = if target.is_ipv4() {
        ([127, 0, 0, 1], 0).into()
    } else {
        (std::net::Ipv6Addr::LOCALHOST, 0).into()
    };
    let socket = tokio::net::UdpSocket::bind(local)
        .await
        .map_err(|e| format!("cannot open a UDP socket: {e}"))?;
    socket
        .connect(target)
        .await
        .map_err(|e| format!("cannot reach {target}: {e}"))?;
    let mut pending: Vec<u16> = Vec::new();
    for (i, name) in STATS_NAMES.iter().enumerate() {
        let id = first_id.wrapping_add(i as u16);
        socket
            .send(&stats_query(id, name)?)
            .await
            .map_err(|e| format!("cannot send to {target}: {e}"))?;
        pending.push(id);
    }
    let mut stats = DnsmasqStats::default();
    let mut buffer = vec![0u8; 4096];
    let exchange = async {
        while !pending.is_empty() {
            let n = socket
                .recv(&mut buffer)
                .await
                .map_err(|e| format!("no answer from {target}: {e}"))?;
            // Noise (unparsable, or answering nothing we asked) is ignored;
            // a refusal of one of our queries fails the probe.
            let Ok(message) = Message::from_vec(&buffer[..n]) else {
                continue;
            };
            let Some(index) = pending.iter().position(|&id| id == message.id()) else {
                continue;
            };
            pending.swap_remove(index);
            for (name, strings) in answer_records(&message)? {
                stats.record(&name, &strings)?;
            }
        }
        Ok::<(), String>(())
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| format!("{target} did not answer within {} s", timeout.as_secs()))??;
    if stats.cache_size.is_none() {
        return Err("dnsmasq's answers lack cachesize.bind".to_string());
    }
    Ok(stats)
}

/// A query id nobody can guess in advance; enough to pair a loopback
/// answer with its question, with no RNG crate needed.
fn random_id() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    hasher.finish() as u16
}

/// The metric families the probe fills in: dnsmasq_exporter's names, plus
/// `dnsmasq_leases` (there: DHCP leases in dnsmasq's lease file; here: the
/// names ntari-dns publishes for ntari-dhcp's leases).
pub static METRICS: &[MetricDesc] = &[
    MetricDesc {
        name: "dnsmasq_cachesize",
        help: "configured size of the DNS cache",
        labels: &[],
    },
    MetricDesc {
        name: "dnsmasq_insertions",
        help: "DNS cache insertions",
        labels: &[],
    },
    MetricDesc {
        name: "dnsmasq_evictions",
        help: "DNS cache evictions: numbers of entries which replaced an unexpired cache entry",
        labels: &[],
    },
    MetricDesc {
        name: "dnsmasq_misses",
        help: "DNS cache misses: queries which had to be forwarded",
        labels: &[],
    },
    MetricDesc {
        name: "dnsmasq_hits",
        help: "DNS queries answered locally (cache hits)",
        labels: &[],
    },
    MetricDesc {
        name: "dnsmasq_auth",
        help: "DNS queries for authoritative zones",
        labels: &[],
    },
    MetricDesc {
        name: "dnsmasq_servers_queries",
        help: "DNS queries on upstream server",
        labels: &["server"],
    },
    MetricDesc {
        name: "dnsmasq_servers_queries_failed",
        help: "DNS queries failed on upstream server",
        labels: &["server"],
    },
    MetricDesc {
        name: "dnsmasq_leases",
        help: "Names of DHCP clients (from /ntari/dhcp/leases) this resolver answers",
        labels: &[],
    },
];

impl DnsmasqStats {
    pub fn metrics(&self, lease_names: usize) -> Vec<MetricSample> {
        let mut out = Vec::new();
        for (name, value) in [
            ("dnsmasq_cachesize", self.cache_size),
            ("dnsmasq_insertions", self.insertions),
            ("dnsmasq_evictions", self.evictions),
            ("dnsmasq_misses", self.misses),
            ("dnsmasq_hits", self.hits),
            ("dnsmasq_auth", self.auth),
        ] {
            if let Some(v) = value {
                out.push(MetricSample::new(name, v as f64));
            }
        }
        for s in &self.servers {
            out.push(MetricSample::labelled(
                "dnsmasq_servers_queries",
                &[&s.server],
                s.queries as f64,
            ));
            out.push(MetricSample::labelled(
                "dnsmasq_servers_queries_failed",
                &[&s.server],
                s.failed as f64,
            ));
        }
        out.push(MetricSample::new("dnsmasq_leases", lease_names as f64));
        out
    }

    /// The cache and upstream part of the status detail.
    pub fn detail(&self) -> Map<String, Value> {
        let mut detail = Map::new();
        detail.insert(
            "cache".into(),
            json!({
                "size": self.cache_size,
                "insertions": self.insertions,
                "evictions": self.evictions,
                "hits": self.hits,
                "misses": self.misses,
            }),
        );
        detail.insert(
            "upstream".into(),
            Value::Array(
                self.servers
                    .iter()
                    .map(|s| json!({"server": s.server, "queries": s.queries, "failed": s.failed}))
                    .collect(),
            ),
        );
        detail
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::rdata::TXT;
    use hickory_proto::rr::Record;

    /// An answer as dnsmasq 2.90 sends it, built the other way round.
    fn answer(code: ResponseCode, name: &str, strings: &[&str]) -> Message {
        let query = Message::from_vec(&stats_query(9, name).unwrap()).unwrap();
        let mut message = Message::new();
        message
            .set_id(9)
            .set_message_type(MessageType::Response)
            .set_op_code(OpCode::Query)
            .set_response_code(code);
        message.add_queries(query.queries().to_vec());
        let mut record = Record::from_rdata(
            Name::from_ascii(name).unwrap(),
            0,
            RData::TXT(TXT::new(strings.iter().map(|s| s.to_string()).collect())),
        );
        record.set_dns_class(DNSClass::CH);
        message.add_answer(record);
        message
    }

    fn take(stats: &mut DnsmasqStats, name: &str, strings: &[&str]) -> Result<(), String> {
        let wire = answer(ResponseCode::NoError, name, strings)
            .to_vec()
            .unwrap();
        let records = answer_records(&Message::from_vec(&wire).unwrap())?;
        for (name, strings) in records {
            stats.record(&name, &strings)?;
        }
        Ok(())
    }

    #[test]
    fn each_query_asks_one_counter_in_chaos_class() {
        for name in STATS_NAMES {
            let query = Message::from_vec(&stats_query(7, name).unwrap()).unwrap();
            assert_eq!(query.id(), 7);
            assert_eq!(query.queries().len(), 1, "dnsmasq refuses more");
            let q = &query.queries()[0];
            assert_eq!(q.query_class(), DNSClass::CH);
            assert_eq!(q.query_type(), RecordType::TXT);
            assert_eq!(q.name().to_ascii(), name);
        }
    }

    #[test]
    fn answers_become_stats_metrics_and_detail() {
        let mut stats = DnsmasqStats::default();
        for (name, strings) in [
            ("cachesize.bind.", &["150"][..]),
            ("insertions.bind.", &["1"]),
            ("evictions.bind.", &["0"]),
            ("misses.bind.", &["3"]),
            ("hits.bind.", &["15"]),
            ("auth.bind.", &["0"]),
            ("servers.bind.", &["127.0.0.1#15399 3 0", "9.9.9.9#53 10 2"]),
        ] {
            take(&mut stats, name, strings).unwrap();
        }
        assert_eq!(stats.cache_size, Some(150));
        assert_eq!(stats.hits, Some(15));
        assert_eq!(
            stats.servers[1],
            ServerStats {
                server: "9.9.9.9#53".into(),
                queries: 10,
                failed: 2
            }
        );
        let metrics = stats.metrics(4);
        let value = |name: &str, label: Option<&str>| {
            metrics
                .iter()
                .find(|m| m.name == name && label.is_none_or(|l| m.label_values == [l]))
                .map(|m| m.value)
        };
        assert_eq!(value("dnsmasq_cachesize", None), Some(150.0));
        assert_eq!(
            value("dnsmasq_servers_queries_failed", Some("9.9.9.9#53")),
            Some(2.0)
        );
        assert_eq!(value("dnsmasq_leases", None), Some(4.0));
        for m in &metrics {
            assert!(METRICS
                .iter()
                .any(|d| d.name == m.name && d.labels.len() == m.label_values.len()));
        }
        assert_eq!(stats.detail()["cache"]["misses"], 3);
    }

    #[test]
    fn bad_answers_are_errors_not_zeroes() {
        let refused = answer(ResponseCode::Refused, "cachesize.bind.", &[]);
        assert!(answer_records(&refused).unwrap_err().contains("Refused"));
        let mut stats = DnsmasqStats::default();
        let err = take(&mut stats, "cachesize.bind.", &["lots"]).unwrap_err();
        assert!(err.contains("not a count"), "{err}");
        let err = take(&mut stats, "servers.bind.", &["x 1"]).unwrap_err();
        assert!(err.contains("servers.bind entry"), "{err}");
        take(&mut stats, "version.bind.", &["dnsmasq-2.90"]).unwrap();
        assert_eq!(stats, DnsmasqStats::default(), "unasked names are ignored");
    }

    #[test]
    fn query_ids_vary() {
        let ids: std::collections::HashSet<u16> = (0..32).map(|_| random_id()).collect();
        assert!(ids.len() > 16);
    }
}

//! Kea's statistics (`statistic-get-all`) as status detail and as metrics
//! with kea-exporter's names, so its dashboards work unchanged.

use std::collections::BTreeMap;

use ntari_node::service::{MetricDesc, MetricSample};
use serde_json::{json, Map, Value};

use crate::config::DhcpConfig;

const SUBNET: &[&str] = &["subnet", "subnet_id"];
const POOL: &[&str] = &["subnet", "subnet_id", "pool"];

pub static METRICS: &[MetricDesc] = &[
    MetricDesc {
        name: "kea_dhcp4_packets_sent_total",
        help: "Packets sent",
        labels: &["operation"],
    },
    MetricDesc {
        name: "kea_dhcp4_packets_received_total",
        help: "Packets received",
        labels: &["operation"],
    },
    MetricDesc {
        name: "kea_dhcp4_allocations_failed_total",
        help: "Allocation fail count",
        labels: &["subnet", "subnet_id", "context"],
    },
    MetricDesc {
        name: "kea_dhcp4_addresses_assigned_total",
        help: "Assigned addresses",
        labels: POOL,
    },
    MetricDesc {
        name: "kea_dhcp4_addresses_declined_total",
        help: "Declined counts",
        labels: POOL,
    },
    MetricDesc {
        name: "kea_dhcp4_addresses_declined_reclaimed_total",
        help: "Declined addresses that were reclaimed",
        labels: POOL,
    },
    MetricDesc {
        name: "kea_dhcp4_addresses_reclaimed_total",
        help: "Expired addresses that were reclaimed",
        labels: POOL,
    },
    MetricDesc {
        name: "kea_dhcp4_addresses_total",
        help: "Size of subnet address pool",
        labels: POOL,
    },
    MetricDesc {
        name: "kea_dhcp4_reservation_conflicts_total",
        help: "Reservation conflict count",
        labels: SUBNET,
    },
    MetricDesc {
        name: "kea_dhcp4_leases_reused_total",
        help: "Number of times an IPv4 lease has been renewed in memory",
        labels: SUBNET,
    },
];

/// Global statistic → (metric, operation).
fn packet_metric(name: &str) -> Option<(&'static str, &str)> {
    let op = name.strip_prefix("pkt4-")?;
    if let Some(op) = op.strip_suffix("-sent") {
        return matches!(op, "ack" | "nak" | "offer")
            .then_some(("kea_dhcp4_packets_sent_total", op));
    }
    if let Some(op) = op.strip_suffix("-received") {
        return matches!(
            op,
            "discover"
                | "offer"
                | "request"
                | "ack"
                | "nak"
                | "release"
                | "decline"
                | "inform"
                | "unknown"
        )
        .then_some(("kea_dhcp4_packets_received_total", op));
    }
    match op {
        "parse-failed" => Some(("kea_dhcp4_packets_received_total", "parse-failed")),
        "receive-drop" => Some(("kea_dhcp4_packets_received_total", "drop")),
        _ => None,
    }
}

/// `subnet[1].pool[0].assigned-addresses` → (1, Some(0), "assigned-addresses").
fn split_subnet_key(name: &str) -> Option<(u32, Option<usize>, &str)> {
    let rest = name.strip_prefix("subnet[")?;
    let (id, rest) = rest.split_once("].")?;
    let id = id.parse().ok()?;
    if let Some(rest) = rest.strip_prefix("pool[") {
        let (pool, stat) = rest.split_once("].")?;
        return Some((id, Some(pool.parse().ok()?), stat));
    }
    Some((id, None, rest))
}

/// The newest value of a statistic (`[[value, "timestamp"], …]`).
fn newest(samples: &Value) -> Option<f64> {
    samples.get(0)?.get(0)?.as_f64()
}

/// Per subnet, what status shows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SubnetStats {
    pub assigned: f64,
    pub total: f64,
    pub declined: f64,
}

/// What one `statistic-get-all` said.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KeaStats {
    pub metrics: Vec<MetricSample>,
    pub subnets: BTreeMap<u32, SubnetStats>,
}

/// Reads `statistic-get-all`'s arguments, labelling subnets and pools with
/// the config's CIDRs and ranges (statistics of subnets no longer in the
/// config are dropped, as kea-exporter does).
pub fn parse(arguments: &Value, config: &DhcpConfig) -> KeaStats {
    let subnets: BTreeMap<u32, &crate::config::Subnet> = config
        .subnets
        .iter()
        .enumerate()
        .map(|(i, s)| (s.kea_id(i), s))
        .collect();
    let mut out = KeaStats::default();
    let Some(map) = arguments.as_object() else {
        return out;
    };
    for (name, samples) in map {
        let Some(value) = newest(samples) else {
            continue;
        };
        if let Some((metric, op)) = packet_metric(name) {
            out.metrics
                .push(MetricSample::labelled(metric, &[op], value));
            continue;
        }
        // Kea 2.2 counts allocation failures only server-wide (later
        // versions per subnet too): exported with empty subnet labels.
        if let Some(context) = name.strip_prefix("v4-allocation-fail-") {
            out.metrics.push(MetricSample::labelled(
                "kea_dhcp4_allocations_failed_total",
                &["", "", context],
                value,
            ));
            continue;
        }
        let Some((id, pool, stat)) = split_subnet_key(name) else {
            continue; // global sums; the per-subnet ones are exported
        };
        let Some(subnet) = subnets.get(&id) else {
            continue;
        };
        let cidr = subnet.subnet.to_string();
        let id_text = id.to_string();
        let pool_label = match pool {
            Some(p) => match subnet.pools.get(p) {
                Some(range) => range.kea_form(),
                None => continue,
            },
            None => String::new(),
        };
        let pool_metric = match stat {
            "assigned-addresses" => Some("kea_dhcp4_addresses_assigned_total"),
            "declined-addresses" => Some("kea_dhcp4_addresses_declined_total"),
            "reclaimed-declined-addresses" => Some("kea_dhcp4_addresses_declined_reclaimed_total"),
            "reclaimed-leases" => Some("kea_dhcp4_addresses_reclaimed_total"),
            "total-addresses" => Some("kea_dhcp4_addresses_total"),
            _ => None,
        };
        if let Some(metric) = pool_metric {
            out.metrics.push(MetricSample::labelled(
                metric,
                &[&cidr, &id_text, &pool_label],
                value,
            ));
            if pool.is_none() {
                let entry = out.subnets.entry(id).or_default();
                match stat {
                    "assigned-addresses" => entry.assigned = value,
                    "total-addresses" => entry.total = value,
                    "declined-addresses" => entry.declined = value,
                    _ => {}
                }
            }
            continue;
        }
        if pool.is_some() {
            continue;
        }
        if let Some(context) = stat.strip_prefix("v4-allocation-fail-") {
            out.metrics.push(MetricSample::labelled(
                "kea_dhcp4_allocations_failed_total",
                &[&cidr, &id_text, context],
                value,
            ));
        } else if stat == "v4-reservation-conflicts" {
            out.metrics.push(MetricSample::labelled(
                "kea_dhcp4_reservation_conflicts_total",
                &[&cidr, &id_text],
                value,
            ));
        } else if stat == "v4-lease-reuses" {
            out.metrics.push(MetricSample::labelled(
                "kea_dhcp4_leases_reused_total",
                &[&cidr, &id_text],
                value,
            ));
        }
    }
    out
}

impl KeaStats {
    /// `[{id, subnet, assigned, total, declined}]` for status.
    pub fn detail(&self, config: &DhcpConfig) -> Map<String, Value> {
        let subnets: Vec<Value> = config
            .subnets
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let id = s.kea_id(i);
                let stats = self.subnets.get(&id).cloned().unwrap_or_default();
                // Kea's statistics are counts; status shows them as such.
                json!({
                    "id": id,
                    "subnet": s.subnet.to_string(),
                    "assigned": stats.assigned as u64,
                    "total": stats.total as u64,
                    "declined": stats.declined as u64,
                })
            })
            .collect();
        let mut detail = Map::new();
        detail.insert("subnets".into(), Value::Array(subnets));
        detail
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> DhcpConfig {
        toml::from_str(
            r#"
            interfaces = ["x"]
            [[subnets]]
            subnet = "192.168.77.0/24"
            pools = ["192.168.77.100 - 192.168.77.150"]
            "#,
        )
        .unwrap()
    }

    #[test]
    fn statistics_become_kea_exporter_metrics() {
        // Shaped like Kea 2.2's answer (newest sample first).
        let arguments = json!({
            "pkt4-received": [[10, "t"], [9, "t"]],
            "pkt4-discover-received": [[4, "t"], [3, "t"]],
            "pkt4-offer-sent": [[4, "t"]],
            "pkt4-receive-drop": [[1, "t"]],
            "v4-allocation-fail-no-pools": [[3, "t"]],
            "cumulative-assigned-addresses": [[2, "t"]],
            "subnet[1].assigned-addresses": [[2, "t"]],
            "subnet[1].total-addresses": [[51, "t"]],
            "subnet[1].declined-addresses": [[0, "t"]],
            "subnet[1].pool[0].assigned-addresses": [[2, "t"]],
            "subnet[1].v4-allocation-fail-no-pools": [[0, "t"]],
            "subnet[1].v4-reservation-conflicts": [[0, "t"]],
            "subnet[9].assigned-addresses": [[5, "t"]],
        });
        let stats = parse(&arguments, &config());
        let find = |name: &str, labels: &[&str]| {
            stats
                .metrics
                .iter()
                .find(|m| m.name == name && m.label_values == labels)
                .map(|m| m.value)
        };
        assert_eq!(
            find("kea_dhcp4_packets_received_total", &["discover"]),
            Some(4.0)
        );
        assert_eq!(
            find("kea_dhcp4_packets_received_total", &["drop"]),
            Some(1.0)
        );
        assert_eq!(find("kea_dhcp4_packets_sent_total", &["offer"]), Some(4.0));
        assert_eq!(
            find(
                "kea_dhcp4_addresses_assigned_total",
                &["192.168.77.0/24", "1", ""]
            ),
            Some(2.0)
        );
        assert_eq!(
            find(
                "kea_dhcp4_addresses_assigned_total",
                &["192.168.77.0/24", "1", "192.168.77.100 - 192.168.77.150"]
            ),
            Some(2.0)
        );
        assert_eq!(
            find(
                "kea_dhcp4_allocations_failed_total",
                &["192.168.77.0/24", "1", "no-pools"]
            ),
            Some(0.0)
        );
        assert!(
            !stats
                .metrics
                .iter()
                .any(|m| m.label_values.first().map(String::as_str) == Some("9")),
            "a subnet no longer configured is dropped"
        );
        for m in &stats.metrics {
            let desc = METRICS.iter().find(|d| d.name == m.name).expect(m.name);
            assert_eq!(desc.labels.len(), m.label_values.len(), "{}", m.name);
        }
        let detail = stats.detail(&config());
        assert_eq!(detail["subnets"][0]["assigned"], 2);
        assert_eq!(detail["subnets"][0]["total"], 51);
        assert_eq!(
            find("kea_dhcp4_allocations_failed_total", &["", "", "no-pools"]),
            Some(3.0)
        );
    }

    #[test]
    fn odd_answers_give_no_metrics_not_errors() {
        assert_eq!(parse(&json!(null), &config()), KeaStats::default());
        let stats = parse(
            &json!({"subnet[x].assigned-addresses": [[1, "t"]], "pkt4-received": []}),
            &config(),
        );
        assert!(stats.metrics.is_empty());
    }
}

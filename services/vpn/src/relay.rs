//! Forwarding between peers: a hub relaying for members that cannot reach
//! each other (seed 003). The peers come from a drop-in file's `relay`
//! list (ntari-federation writes it only for members whose agreements
//! with this hub both allow relaying).
//!
//! Two things, and only while at least two members are listed:
//! - IP forwarding on the WireGuard interface alone
//!   (`/proc/sys/net/ipv4/conf/<if>/forwarding`), never globally;
//! - an nftables table `inet ntari_relay_<if>` whose forward chain
//!   accepts, with a counter, traffic from each member's addresses to
//!   every other member's, in and out of the interface, and drops every
//!   other packet that would be forwarded from it (so no member reaches
//!   the hub's other networks, or the internet, through it).
//!
//! The counters are the relayed bytes per member, for status. Without
//! `nft` nothing is forwarded: the warning says to install nftables.

use std::time::Duration;

use ipnet::IpNet;
use serde_json::{json, Value};

const NFT_TIMEOUT: Duration = Duration::from_secs(5);

/// A peer relayed for: its name and allowed IPs.
pub type Member = (String, Vec<IpNet>);

/// Bytes one member sent through the relay, and received through it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberBytes {
    pub name: String,
    pub sent: u64,
    pub received: u64,
}

fn table_name(iface: &str) -> String {
    let safe: String = iface
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("ntari_relay_{safe}")
}

/// The nft script that (re)creates the table, atomically.
pub fn ruleset(iface: &str, members: &[Member]) -> String {
    let table = table_name(iface);
    let mut rules = String::new();
    for (i, (_, from)) in members.iter().enumerate() {
        for (j, (_, to)) in members.iter().enumerate() {
            if i == j {
                continue;
            }
            for src in from {
                for dst in to {
                    let family = match (src, dst) {
                        (IpNet::V4(_), IpNet::V4(_)) => "ip",
                        (IpNet::V6(_), IpNet::V6(_)) => "ip6",
                        _ => continue,
                    };
                    rules.push_str(&format!(
                        "    iifname \"{iface}\" oifname \"{iface}\" {family} saddr {src} {family} daddr {dst} counter accept comment \"relay {i}>{j}\"\n"
                    ));
                }
            }
        }
    }
    // `add` then `delete` makes the delete safe when the table is absent;
    // the whole file is one transaction.
    format!(
        "add table inet {table}\ndelete table inet {table}\ntable inet {table} {{\n  chain forward {{\n    type filter hook forward priority 0; policy accept;\n{rules}    iifname \"{iface}\" counter drop comment \"not relayed\"\n  }}\n}}\n"
    )
}

async fn nft(args: &[&str], stdin: Option<&str>) -> Result<String, String> {
    use tokio::io::AsyncWriteExt;
    let mut command = tokio::process::Command::new("nft");
    command
        .args(args)
        .stdin(if stdin.is_some() {
            std::process::Stdio::piped()
        } else {
            std::process::Stdio::null()
        })
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut child = command.spawn().map_err(|e| {
        format!("cannot run `nft` ({e}): relaying needs nftables (apk/apt install nftables)")
    })?;
    if let (Some(text), Some(mut input)) = (stdin, child.stdin.take()) {
        input
            .write_all(text.as_bytes())
            .await
            .map_err(|e| format!("nft: {e}"))?;
    }
    let out = tokio::time::timeout(NFT_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| format!("`nft {}` did not finish", args.join(" ")))?
        .map_err(|e| format!("nft: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "`nft {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn set_forwarding(iface: &str, on: bool) -> Result<(), String> {
    let path = format!("/proc/sys/net/ipv4/conf/{iface}/forwarding");
    std::fs::write(&path, if on { "1\n" } else { "0\n" })
        .map_err(|e| format!("cannot write {path}: {e}"))
}

/// Makes the relay match `members` (fewer than two: no relay at all).
/// The table first, then forwarding: never a moment of forwarding
/// without the filter.
pub async fn apply(iface: &str, members: &[Member]) -> Result<(), String> {
    if members.len() < 2 {
        return remove(iface).await;
    }
    nft(&["-f", "-"], Some(&ruleset(iface, members))).await?;
    set_forwarding(iface, true)
}

/// No relay: forwarding off on the interface, the table gone.
pub async fn remove(iface: &str) -> Result<(), String> {
    let forwarding = format!("/proc/sys/net/ipv4/conf/{iface}/forwarding");
    if std::path::Path::new(&forwarding).exists() {
        set_forwarding(iface, false)?;
    }
    let table = table_name(iface);
    match nft(&["list", "table", "inet", &table], None).await {
        Ok(_) => nft(&["delete", "table", "inet", &table], None)
            .await
            .map(|_| ()),
        // No table (or no nft): nothing to remove.
        Err(_) => Ok(()),
    }
}

/// Relayed bytes per member, from the table's counters.
pub async fn counters(iface: &str, members: &[Member]) -> Option<Vec<MemberBytes>> {
    let json = nft(&["-j", "list", "table", "inet", &table_name(iface)], None)
        .await
        .ok()?;
    let parsed: Value = serde_json::from_str(&json).ok()?;
    Some(tally(&parsed, members))
}

/// Sums `relay i>j` counters into per-member sent/received bytes.
fn tally(parsed: &Value, members: &[Member]) -> Vec<MemberBytes> {
    let mut out: Vec<MemberBytes> = members
        .iter()
        .map(|(name, _)| MemberBytes {
            name: name.clone(),
            sent: 0,
            received: 0,
        })
        .collect();
    for item in parsed["nftables"].as_array().into_iter().flatten() {
        let rule = &item["rule"];
        let Some(pair) = rule["comment"]
            .as_str()
            .and_then(|c| c.strip_prefix("relay "))
        else {
            continue;
        };
        let Some((i, j)) = pair
            .split_once('>')
            .and_then(|(i, j)| Some((i.parse::<usize>().ok()?, j.parse::<usize>().ok()?)))
        else {
            continue;
        };
        let bytes = rule["expr"]
            .as_array()
            .into_iter()
            .flatten()
            .find_map(|e| e["counter"]["bytes"].as_u64())
            .unwrap_or(0);
        if let Some(m) = out.get_mut(i) {
            m.sent += bytes;
        }
        if let Some(m) = out.get_mut(j) {
            m.received += bytes;
        }
    }
    out
}

/// Status detail for the relay.
pub fn detail(bytes: &[MemberBytes]) -> Value {
    json!(bytes
        .iter()
        .map(|m| json!({"peer": m.name, "relayed_sent_bytes": m.sent, "relayed_received_bytes": m.received}))
        .collect::<Vec<_>>())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members() -> Vec<Member> {
        vec![
            (
                "federation:h-a".into(),
                vec!["10.77.0.2/32".parse().unwrap()],
            ),
            (
                "federation:h-c".into(),
                vec!["10.77.0.3/32".parse().unwrap()],
            ),
        ]
    }

    #[test]
    fn the_ruleset_accepts_member_pairs_and_drops_the_rest() {
        let text = ruleset("wg-hub", &members());
        assert!(text.contains("table inet ntari_relay_wg_hub"));
        assert!(text.contains(
            "ip saddr 10.77.0.2/32 ip daddr 10.77.0.3/32 counter accept comment \"relay 0>1\""
        ));
        assert!(text.contains(
            "ip saddr 10.77.0.3/32 ip daddr 10.77.0.2/32 counter accept comment \"relay 1>0\""
        ));
        assert!(text.contains("iifname \"wg-hub\" counter drop"));
        // The drop comes after every accept.
        assert!(text.find("drop").unwrap() > text.rfind("accept").unwrap());
    }

    #[test]
    fn counters_add_up_per_member() {
        let parsed = json!({"nftables": [
            {"metainfo": {}},
            {"rule": {"comment": "relay 0>1", "expr": [{"match": {}}, {"counter": {"packets": 3, "bytes": 300}}]}},
            {"rule": {"comment": "relay 1>0", "expr": [{"counter": {"packets": 1, "bytes": 50}}]}},
            {"rule": {"comment": "not relayed", "expr": [{"counter": {"packets": 9, "bytes": 900}}]}},
        ]});
        let t = tally(&parsed, &members());
        assert_eq!((t[0].sent, t[0].received), (300, 50));
        assert_eq!((t[1].sent, t[1].received), (50, 300));
    }
}

//! `kea-dhcp4.conf`, Kea's JSON, rendered from the config.
//!
//! Fixed by the node, not by the admin: the control socket and pid/lock
//! files live in the run dir, the memfile lease database in the state dir
//! (never deleted by cleanup), the lease_cmds hook is loaded (the node lists
//! leases with it), Kea logs to stdout (the node's log) without its own
//! timestamps.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use ntari_node::service::Paths;
use serde_json::{json, Value};

use crate::config::{DhcpConfig, Subnet};

/// The rendered config, relative to the run dir.
pub const CONFIG_FILE: &str = "kea-dhcp4.conf";
/// Kea's control socket, relative to the run dir.
pub const CONTROL_SOCKET: &str = "kea4-ctrl.sock";
/// The memfile lease database, relative to the state dir.
pub const LEASE_FILE: &str = "leases4.csv";
/// Kea names its pid file after the config file: `<stem>.kea-dhcp4.pid`.
pub const PID_FILE: &str = "kea-dhcp4.kea-dhcp4.pid";
/// The hook that gives `lease4-get-all`.
pub const LEASE_CMDS: &str = "libdhcp_lease_cmds.so";

/// Where distributions put Kea's hooks: Debian's multiarch directories,
/// then Alpine's and Fedora's.
const HOOK_DIRS: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu/kea/hooks",
    "/usr/lib/aarch64-linux-gnu/kea/hooks",
    "/usr/lib/arm-linux-gnueabihf/kea/hooks",
    "/usr/lib/kea/hooks",
    "/usr/lib64/kea/hooks",
];

pub fn config_path(paths: &Paths) -> PathBuf {
    paths.run_dir.join(CONFIG_FILE)
}

pub fn control_socket(paths: &Paths) -> PathBuf {
    paths.run_dir.join(CONTROL_SOCKET)
}

pub fn lease_file(paths: &Paths) -> PathBuf {
    paths.state_dir.join(LEASE_FILE)
}

/// The lease_cmds library: in `hooks_dir` if given, else the first of
/// the usual places that has it.
pub fn lease_cmds_library(hooks_dir: Option<&Path>) -> Option<PathBuf> {
    match hooks_dir {
        Some(dir) => Some(dir.join(LEASE_CMDS)).filter(|p| p.is_file()),
        None => HOOK_DIRS
            .iter()
            .map(|dir| Path::new(dir).join(LEASE_CMDS))
            .find(|p| p.is_file()),
    }
}

fn option(name: &str, data: String) -> Value {
    json!({ "name": name, "data": data })
}

fn addresses(list: &[Ipv4Addr]) -> String {
    list.iter()
        .map(Ipv4Addr::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Options 6, 15 and 42 from whichever of the given values are set.
fn common_options(
    dns: Option<&[Ipv4Addr]>,
    domain: Option<&str>,
    ntp: Option<&[Ipv4Addr]>,
) -> Vec<Value> {
    let mut options = Vec::new();
    if let Some(dns) = dns.filter(|d| !d.is_empty()) {
        options.push(option("domain-name-servers", addresses(dns)));
    }
    if let Some(domain) = domain {
        options.push(option(
            "domain-name",
            domain.trim_end_matches('.').to_string(),
        ));
    }
    if let Some(ntp) = ntp.filter(|n| !n.is_empty()) {
        options.push(option("ntp-servers", addresses(ntp)));
    }
    options
}

fn subnet_json(index: usize, subnet: &Subnet) -> Value {
    let mut options = Vec::new();
    if let Some(router) = subnet.router {
        options.push(option("routers", router.to_string()));
    }
    options.extend(common_options(
        subnet.dns_servers.as_deref(),
        subnet.domain_name.as_deref(),
        subnet.ntp_servers.as_deref(),
    ));
    let reservations: Vec<Value> = subnet
        .reservations
        .iter()
        .map(|r| {
            let mut v = json!({ "hw-address": r.mac.to_string(), "ip-address": r.ip.to_string() });
            if let Some(name) = &r.hostname {
                v["hostname"] = json!(name);
            }
            v
        })
        .collect();
    let mut v = json!({
        "id": subnet.kea_id(index),
        "subnet": subnet.subnet.to_string(),
        "pools": subnet.pools.iter().map(|p| json!({ "pool": p.kea_form() })).collect::<Vec<_>>(),
        "option-data": options,
        "reservations": reservations,
    });
    if let Some(lease_time) = subnet.lease_time {
        v["valid-lifetime"] = json!(lease_time);
    }
    v
}

/// The whole Kea config. `hook` is the lease_cmds library to load.
pub fn kea_config(config: &DhcpConfig, paths: &Paths, hook: &Path) -> Value {
    json!({
        "Dhcp4": {
            "interfaces-config": { "interfaces": config.interfaces },
            "control-socket": {
                "socket-type": "unix",
                "socket-name": control_socket(paths).display().to_string(),
            },
            "lease-database": {
                "type": "memfile",
                "persist": true,
                "name": lease_file(paths).display().to_string(),
                "lfc-interval": 3600,
            },
            "hooks-libraries": [{ "library": hook.display().to_string() }],
            "expired-leases-processing": {
                "reclaim-timer-wait-time": config.reclaim_interval,
            },
            "valid-lifetime": config.lease_time,
            // Clients renew at 50 % and rebind at 87.5 % of the lease.
            "calculate-tee-times": true,
            "option-data": common_options(
                Some(&config.dns_servers),
                config.domain_name.as_deref(),
                Some(&config.ntp_servers),
            ),
            "subnet4": config
                .subnets
                .iter()
                .enumerate()
                .map(|(i, s)| subnet_json(i, s))
                .collect::<Vec<_>>(),
            "loggers": [
                {
                    "name": "kea-dhcp4",
                    // The node's log adds time and origin.
                    "output_options": [{ "output": "stdout", "pattern": "%-5p [%c] %m\n" }],
                    "severity": config.log_level.kea_severity(),
                },
                {
                    // Not every probe's status-get: only problems.
                    "name": "kea-dhcp4.commands",
                    "output_options": [{ "output": "stdout", "pattern": "%-5p [%c] %m\n" }],
                    "severity": "WARN",
                },
            ],
        }
    })
}

/// The file's text: pretty JSON, so an admin can read what Kea runs.
pub fn kea_config_text(config: &DhcpConfig, paths: &Paths, hook: &Path) -> String {
    let mut text =
        serde_json::to_string_pretty(&kea_config(config, paths, hook)).unwrap_or_default();
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths() -> Paths {
        Paths {
            config: "/etc/ntari/services/dhcp.toml".into(),
            state_dir: "/var/lib/ntari/dhcp".into(),
            run_dir: "/run/ntari/dhcp".into(),
        }
    }

    #[test]
    fn kea_config_has_every_setting_in_its_place() {
        let config: DhcpConfig = toml::from_str(
            r#"
            interfaces = ["br-lan"]
            lease_time = 7200
            domain_name = "coop.lan"
            dns_servers = ["192.168.50.1", "192.168.50.2"]
            ntp_servers = ["192.168.50.1"]
            log_level = "warn"
            reclaim_interval = 5
            [[subnets]]
            id = 7
            subnet = "192.168.50.0/24"
            pools = ["192.168.50.100-192.168.50.199"]
            router = "192.168.50.1"
            lease_time = 600
            dns_servers = ["192.168.50.3"]
            [[subnets.reservations]]
            mac = "52-54-00-12-34-56"
            ip = "192.168.50.10"
            hostname = "printer"
            "#,
        )
        .unwrap();
        let v = kea_config(&config, &paths(), Path::new("/hooks/libdhcp_lease_cmds.so"));
        let d = &v["Dhcp4"];
        assert_eq!(d["interfaces-config"]["interfaces"], json!(["br-lan"]));
        assert_eq!(
            d["control-socket"]["socket-name"],
            "/run/ntari/dhcp/kea4-ctrl.sock"
        );
        assert_eq!(
            d["lease-database"]["name"],
            "/var/lib/ntari/dhcp/leases4.csv"
        );
        assert_eq!(d["lease-database"]["persist"], true);
        assert_eq!(
            d["hooks-libraries"][0]["library"],
            "/hooks/libdhcp_lease_cmds.so"
        );
        assert_eq!(d["expired-leases-processing"]["reclaim-timer-wait-time"], 5);
        assert_eq!(d["valid-lifetime"], 7200);
        assert_eq!(
            d["option-data"],
            json!([
                {"name": "domain-name-servers", "data": "192.168.50.1, 192.168.50.2"},
                {"name": "domain-name", "data": "coop.lan"},
                {"name": "ntp-servers", "data": "192.168.50.1"},
            ])
        );
        let s = &d["subnet4"][0];
        assert_eq!(s["id"], 7);
        assert_eq!(s["valid-lifetime"], 600);
        assert_eq!(
            s["pools"],
            json!([{"pool": "192.168.50.100 - 192.168.50.199"}])
        );
        assert_eq!(
            s["option-data"],
            json!([
                {"name": "routers", "data": "192.168.50.1"},
                {"name": "domain-name-servers", "data": "192.168.50.3"},
            ])
        );
        assert_eq!(
            s["reservations"],
            json!([{"hw-address": "52:54:00:12:34:56", "ip-address": "192.168.50.10", "hostname": "printer"}])
        );
        assert_eq!(d["loggers"][0]["severity"], "WARN");
    }

    #[test]
    fn an_explicit_hooks_dir_must_hold_the_hook() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(lease_cmds_library(Some(dir.path())), None);
        std::fs::write(dir.path().join(LEASE_CMDS), b"").unwrap();
        assert_eq!(
            lease_cmds_library(Some(dir.path())),
            Some(dir.path().join(LEASE_CMDS))
        );
    }
}

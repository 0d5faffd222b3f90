//! The config in the device's terms: a `wireguard_control::DeviceUpdate`
//! (what `wg setconf` would set) and the routes for the peers' allowed IPs.
//!
//! WireGuard takes its config over UAPI or netlink, not from a file, so
//! nothing is written to the run dir; this module is the "render" step of
//! the other services all the same.
//!
//! A config becomes a list of updates with at most one peer each, applied
//! in order: boringtun's UAPI parser carries a peer's endpoint, keepalive,
//! preshared key and `remove` over into the next peer of the same request
//! (upstream and defguard's fork alike), so one request per peer is the
//! only safe form.

use std::path::Path;

use ipnet::IpNet;
use ntari_node::service::Paths;
use wireguard_control::{AllowedIp, DeviceUpdate, Key, PeerConfigBuilder};

use crate::config::{self, PeerConfig, VpnConfig};

/// The peer as WireGuard takes it. Replaces its allowed IPs, so a changed
/// list is applied as a whole; a missing preshared key is unset.
pub fn peer(peer: &PeerConfig, paths: &Paths) -> Result<PeerConfigBuilder, String> {
    let key = config::parse_key(&peer.public_key)?;
    let allowed: Vec<AllowedIp> = peer
        .allowed_ips
        .iter()
        .map(|net| AllowedIp {
            address: net.addr(),
            cidr: net.prefix_len(),
        })
        .collect();
    let mut builder = PeerConfigBuilder::new(&key)
        .replace_allowed_ips()
        .add_allowed_ips(&allowed);
    builder = match &peer.preshared_key_file {
        Some(file) => {
            builder.set_preshared_key(config::read_key_file(&paths.state_dir.join(file))?)
        }
        None => builder.unset_preshared_key(),
    };
    if let Some(endpoint) = &peer.endpoint {
        builder = builder.set_endpoint(config::resolve_endpoint(endpoint)?);
    }
    builder = match peer.persistent_keepalive {
        Some(seconds) => builder.set_persistent_keepalive_interval(seconds),
        None => builder.unset_persistent_keepalive(),
    };
    Ok(builder)
}

/// Everything: key, port and no peers (`replace_peers`), then each
/// configured peer.
pub fn full(
    config: &VpnConfig,
    private_key: Key,
    paths: &Paths,
) -> Result<Vec<DeviceUpdate>, String> {
    let mut plan = vec![DeviceUpdate::new()
        .set_private_key(private_key)
        .set_listen_port(config.listen_port)
        .replace_peers()];
    for p in &config.peers {
        let builder = peer(p, paths).map_err(|e| format!("peer {}: {e}", p.name))?;
        plan.push(DeviceUpdate::new().add_peer(builder));
    }
    Ok(plan)
}

/// The peer changes from `applied` (the config the device was last given;
/// None: unknown) to `config`, for a device whose peers are now `current`
/// (public keys): the removals, then the additions. A peer whose settings
/// changed is removed and added again (boringtun refuses to modify a peer
/// in place); peers that stay as they were are not touched, so their
/// sessions go on.
pub fn peer_changes(
    applied: Option<&VpnConfig>,
    config: &VpnConfig,
    current: &[Key],
    paths: &Paths,
) -> Result<Vec<DeviceUpdate>, String> {
    let wanted = config
        .peers
        .iter()
        .map(|p| config::parse_key(&p.public_key).map(|k| (k, p)))
        .collect::<Result<Vec<_>, _>>()?;
    let mut removals = Vec::new();
    let mut additions = Vec::new();
    for key in current
        .iter()
        .filter(|k| !wanted.iter().any(|(w, _)| w == *k))
    {
        removals.push(DeviceUpdate::new().remove_peer_by_key(key));
    }
    for (key, peer_config) in &wanted {
        let before = applied.and_then(|a| {
            a.peers
                .iter()
                .find(|p| p.public_key.trim() == key.to_base64())
        });
        let on_device = current.contains(key);
        let changed = on_device && before.is_some_and(|b| b != *peer_config);
        if changed {
            removals.push(DeviceUpdate::new().remove_peer_by_key(key));
        }
        if !on_device || changed {
            let builder =
                peer(peer_config, paths).map_err(|e| format!("peer {}: {e}", peer_config.name))?;
            additions.push(DeviceUpdate::new().add_peer(builder));
        }
    }
    removals.extend(additions);
    Ok(removals)
}

/// Routes to install on the interface: every allowed IP that the
/// interface's own addresses do not already make on-link.
pub fn routes(config: &VpnConfig) -> Vec<IpNet> {
    let on_link: Vec<IpNet> = config.addresses.iter().map(IpNet::trunc).collect();
    let mut routes: Vec<IpNet> = config
        .peers
        .iter()
        .flat_map(|p| p.allowed_ips.iter().copied())
        .filter(|net| !on_link.iter().any(|l| l.contains(net)))
        .collect();
    routes.sort();
    routes.dedup();
    routes
}

/// Where `--run-dir` keeps the name and backend of the interface this node
/// set up, so a node that starts after a crash can tear it down.
pub fn interface_record(paths: &Paths) -> std::path::PathBuf {
    paths.run_dir.join("interface")
}

/// `<interface> <backend>`, as written to [`interface_record`].
pub fn read_interface_record(path: &Path) -> Option<(String, String)> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut words = text.split_whitespace();
    Some((words.next()?.to_string(), words.next()?.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> VpnConfig {
        toml::from_str(
            "addresses = [\"10.77.0.1/24\"]\n\
             [[peers]]\nname = \"a\"\npublic_key = \"mJ0ZxMO5trSCDcStS5sAhW8fPSxAQXkxFF6f9F9mzUk=\"\n\
             allowed_ips = [\"10.77.0.2/32\", \"10.90.0.0/16\"]\n",
        )
        .unwrap()
    }

    #[test]
    fn on_link_allowed_ips_need_no_route() {
        let routes = routes(&config());
        assert_eq!(routes, vec!["10.90.0.0/16".parse::<IpNet>().unwrap()]);
    }

    #[test]
    fn only_new_changed_and_dropped_peers_are_touched_one_per_update() {
        let paths = Paths {
            config: "/x".into(),
            state_dir: "/nonexistent".into(),
            run_dir: "/nonexistent".into(),
        };
        let old = config();
        let kept = config::parse_key(&old.peers[0].public_key).unwrap();
        let gone = Key::generate_private().get_public();
        // DeviceUpdate has no getters; its Debug output shows the plan.
        let plan = |updates: &[DeviceUpdate]| -> Vec<String> {
            updates.iter().map(|u| format!("{u:?}")).collect()
        };
        let peers_in = |u: &String| u.matches("PeerConfigBuilder").count();

        let updates =
            plan(&peer_changes(Some(&old), &old, &[gone.clone(), kept.clone()], &paths).unwrap());
        assert_eq!(updates.len(), 1, "unchanged peers untouched: {updates:?}");
        assert!(updates[0].contains("remove_me: true"));

        let mut new = old.clone();
        new.peers[0].persistent_keepalive = Some(25);
        let updates =
            plan(&peer_changes(Some(&old), &new, std::slice::from_ref(&kept), &paths).unwrap());
        assert_eq!(
            updates.len(),
            2,
            "changed: removed, then added: {updates:?}"
        );
        assert!(updates[0].contains("remove_me: true"));
        assert!(
            updates[1].contains("persistent_keepalive_interval: Some(25)")
                && !updates[1].contains("remove_me: true")
        );
        assert!(updates
            .iter()
            .all(|u| peers_in(u) == 1 && !u.contains("replace_peers: true")));

        let updates = plan(&peer_changes(None, &new, &[], &paths).unwrap());
        assert_eq!(updates.len(), 1);
        assert!(updates[0].contains("Some(25)"), "new on the device: added");

        let full = plan(&full(&new, Key::generate_private(), &paths).unwrap());
        assert_eq!(full.len(), 2);
        assert!(full[0].contains("replace_peers: true") && peers_in(&full[0]) == 0);
        assert_eq!(peers_in(&full[1]), 1);
    }
}

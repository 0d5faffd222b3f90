//! `ntari-admin domain render`: /etc/ntari/cyclonedds.xml from ntari.toml,
//! run by the `ntari-domain` OpenRC service before any node starts.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::Path;

use ntari_node::config::NodeConfig;

/// The Cyclone DDS config for this node's domain.
pub fn cyclonedds_xml(config: &NodeConfig, source: &Path) -> String {
    let mut xml = String::new();
    // Writing to a String cannot fail.
    let _ = writeln!(xml, r#"<?xml version="1.0" encoding="UTF-8"?>"#);
    let _ = writeln!(
        xml,
        "<!-- Rendered by `ntari-admin domain render` from {}; edit that file. -->",
        source.display()
    );
    let _ = writeln!(xml, r#"<CycloneDDS xmlns="https://cdds.io/config">"#);
    let _ = writeln!(xml, r#"  <Domain Id="{}">"#, config.domain_id);
    let unicast = !config.dds_peers.is_empty();
    if !config.dds_interfaces.is_empty() || unicast {
        let _ = writeln!(xml, "    <General>");
        if !config.dds_interfaces.is_empty() {
            let _ = writeln!(xml, "      <Interfaces>");
            for entry in &config.dds_interfaces {
                let attribute = if entry.parse::<IpAddr>().is_ok() {
                    "address"
                } else {
                    "name"
                };
                let multicast = if unicast { r#" multicast="false""# } else { "" };
                let _ = writeln!(
                    xml,
                    r#"        <NetworkInterface {attribute}="{entry}"{multicast}/>"#
                );
            }
            let _ = writeln!(xml, "      </Interfaces>");
        }
        if unicast {
            let _ = writeln!(xml, "      <AllowMulticast>false</AllowMulticast>");
        }
        let _ = writeln!(xml, "    </General>");
    }
    if unicast {
        // Unicast discovery reaches participants on a peer through the
        // ports of participant indices; 32 per host covers every node.
        let _ = writeln!(xml, "    <Discovery>");
        let _ = writeln!(xml, "      <ParticipantIndex>auto</ParticipantIndex>");
        let _ = writeln!(
            xml,
            "      <MaxAutoParticipantIndex>31</MaxAutoParticipantIndex>"
        );
        let _ = writeln!(xml, "      <Peers>");
        for peer in &config.dds_peers {
            let _ = writeln!(xml, r#"        <Peer address="{peer}"/>"#);
        }
        let _ = writeln!(xml, "      </Peers>");
        let _ = writeln!(xml, "    </Discovery>");
    }
    let _ = writeln!(xml, "  </Domain>");
    let _ = writeln!(xml, "</CycloneDDS>");
    xml
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_unicast_matches_the_test_config() {
        let config: NodeConfig = NodeConfig::parse(
            "domain_id = 7\ndds_interfaces = [\"127.0.0.1\"]\ndds_peers = [\"127.0.0.1\"]\n",
            Path::new("ntari.toml"),
        )
        .unwrap();
        let xml = cyclonedds_xml(&config, Path::new("/etc/ntari/ntari.toml"));
        for line in [
            r#"<Domain Id="7">"#,
            r#"<NetworkInterface address="127.0.0.1" multicast="false"/>"#,
            "<AllowMulticast>false</AllowMulticast>",
            "<ParticipantIndex>auto</ParticipantIndex>",
            r#"<Peer address="127.0.0.1"/>"#,
        ] {
            assert!(xml.contains(line), "{line} missing in\n{xml}");
        }
    }

    #[test]
    fn defaults_leave_the_network_to_cyclone() {
        let xml = cyclonedds_xml(&NodeConfig::default(), Path::new("/etc/ntari/ntari.toml"));
        assert!(xml.contains(r#"<Domain Id="0">"#));
        assert!(!xml.contains("<General>") && !xml.contains("<Discovery>"));
        let named = NodeConfig {
            dds_interfaces: vec!["br-lan".into()],
            ..NodeConfig::default()
        };
        assert!(
            cyclonedds_xml(&named, Path::new("x")).contains(r#"<NetworkInterface name="br-lan"/>"#)
        );
    }
}

//! `ntari-dhcp`: ISC Kea DHCPv4 behind the /ntari/ntari_dhcp_node lifecycle
//! node; see docs/services/dhcp.md.

fn main() -> std::process::ExitCode {
    ntari_node::runtime::main(ntari_dhcp::Dhcp::default())
}

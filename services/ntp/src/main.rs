//! `ntari-ntp`: chrony behind the ROS 2 lifecycle node `/ntari/ntari_ntp_node`.
//! Everything but chrony itself lives in `ntari_ntp::Ntp` and the shared
//! runtime; see docs/services/ntp.md.

fn main() -> std::process::ExitCode {
    ntari_node::runtime::main(ntari_ntp::Ntp)
}

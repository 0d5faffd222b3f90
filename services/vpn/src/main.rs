//! `ntari-vpn`: WireGuard behind the /ntari/ntari_vpn_node lifecycle node.
//! `ntari-vpn __boringtun <interface>` (hidden) is the tunnel process the
//! node itself starts for the boringtun backend.

use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    if args
        .next()
        .is_some_and(|a| a == ntari_vpn::tunnel::TUNNEL_ARG)
    {
        return ntari_vpn::tunnel::run(args);
    }
    ntari_node::runtime::main(ntari_vpn::Vpn::default())
}

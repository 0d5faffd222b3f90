//! `ntari-federation`: the federation bridge behind the
//! /ntari/ntari_federation_node lifecycle node.
//! `ntari-federation __bridge <run>/bridge.json` (hidden) is the bridge
//! process the node itself starts.

use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    if args
        .next()
        .is_some_and(|a| a == ntari_federation::bridge::BRIDGE_ARG)
    {
        return ntari_federation::bridge::run(args);
    }
    ntari_node::runtime::main(ntari_federation::Federation)
}

//! The boringtun backend's process: `ntari-vpn __boringtun <interface>`
//! runs boringtun's userspace device (a tun interface and the UAPI socket
//! `wg` talks to) in the foreground until SIGTERM.
//!
//! Why its own process and not a thread of the node: a tunnel crash is then
//! a daemon crash the runtime sees, restarts and reports, and the node
//! itself stays up; the node is never in the data path.

use std::ffi::OsString;
use std::process::ExitCode;

use defguard_boringtun::device::{DeviceConfig, DeviceHandle};

/// The hidden first argument that runs the tunnel instead of the node.
pub const TUNNEL_ARG: &str = "__boringtun";

pub fn run(mut args: impl Iterator<Item = OsString>) -> ExitCode {
    ntari_node::runtime::init_logging("info");
    let Some(interface) = args.next().and_then(|a| a.into_string().ok()) else {
        eprintln!("usage: ntari-vpn {TUNNEL_ARG} <interface>");
        return ExitCode::from(2);
    };
    // Packet threads: one per core, at most four (boringtun's default).
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get().min(4));
    let config = DeviceConfig {
        n_threads: threads,
        use_connected_socket: true,
        use_multi_queue: true,
        uapi_fd: -1,
    };
    match DeviceHandle::new(&interface, config) {
        Ok(mut device) => {
            tracing::info!(
                interface,
                threads,
                "boringtun tunnel up; waiting for its configuration over UAPI"
            );
            // Returns when boringtun's event loop ends (it handles SIGTERM).
            device.wait();
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("cannot create WireGuard interface {interface}: {e:?} (is /dev/net/tun there, and is this root?)");
            ExitCode::FAILURE
        }
    }
}

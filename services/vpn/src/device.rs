//! Talking to the WireGuard device: through innernet's `wireguard-control`
//! (UAPI for userspace devices, netlink for the kernel's), and iproute2's
//! `ip` for addresses and routes, which WireGuard itself does not set.
//!
//! Calls into wireguard-control block (a Unix socket or a netlink socket);
//! they run on tokio's blocking pool under a timeout, so a hung tunnel
//! process cannot hang the node's event loop.

use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use wireguard_control::{Backend as WgBackend, Device, DeviceUpdate, InterfaceName};

use crate::config::{Backend, VpnConfig};

/// How long one exchange with the device may take.
const DEVICE_TIMEOUT: Duration = Duration::from_secs(3);

/// Where userspace WireGuard implementations put their control socket
/// (the cross-platform UAPI), and where `wg` looks for it.
pub fn uapi_socket(interface: &str) -> PathBuf {
    PathBuf::from(format!("/var/run/wireguard/{interface}.sock"))
}

fn wg_backend(backend: Backend) -> WgBackend {
    match backend {
        Backend::Kernel => WgBackend::Kernel,
        _ => WgBackend::Userspace,
    }
}

fn name(interface: &str) -> Result<InterfaceName, String> {
    interface
        .parse()
        .map_err(|e| format!("interface name `{interface}`: {e}"))
}

async fn blocking<T: Send + 'static>(
    what: &str,
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<T, String> {
    match tokio::time::timeout(DEVICE_TIMEOUT, tokio::task::spawn_blocking(f)).await {
        Err(_) => Err(format!(
            "{what}: no answer within {} s",
            DEVICE_TIMEOUT.as_secs()
        )),
        Ok(Err(e)) => Err(format!("{what}: {e}")),
        Ok(Ok(result)) => result.map_err(|e| format!("{what}: {e}")),
    }
}

/// The device's state and peers (`wg show`).
pub async fn get(interface: &str, backend: Backend) -> Result<Device, String> {
    let iface = name(interface)?;
    quiet_stdout();
    blocking("reading the device", move || {
        Device::get(&iface, wg_backend(backend))
    })
    .await
}

/// Applies `update` to an existing device.
pub async fn apply(interface: &str, backend: Backend, update: DeviceUpdate) -> Result<(), String> {
    let iface = name(interface)?;
    if backend != Backend::Kernel
        && std::os::unix::net::UnixStream::connect(uapi_socket(interface)).is_err()
    {
        // wireguard-control would start a wireguard-go of its own here,
        // outside any supervision; the tunnel process must be ours.
        return Err(format!(
            "the tunnel's control socket {} does not answer",
            uapi_socket(interface).display()
        ));
    }
    blocking("configuring the device", move || {
        update.apply(&iface, wg_backend(backend))
    })
    .await
}

/// Removes a kernel interface (userspace ones vanish with their process).
pub async fn delete_kernel_interface(interface: &str) -> Result<(), String> {
    let iface = name(interface)?;
    blocking("deleting the interface", move || {
        Device::get(&iface, WgBackend::Kernel)?.delete()
    })
    .await
}

/// Waits until the tunnel process answers on its control socket.
pub async fn wait_for_socket(interface: &str, timeout: Duration) -> Result<(), String> {
    let socket = uapi_socket(interface);
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if std::os::unix::net::UnixStream::connect(&socket).is_ok() {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!(
                "its control socket {} did not appear",
                socket.display()
            ));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// wireguard-control prints UAPI keys it does not know to stdout
/// (boringtun answers `own_public_key`), once per probe. Nothing else of
/// the node writes to stdout once it runs (it logs to stderr), so stdout
/// goes to /dev/null from the first exchange with a device on.
fn quiet_stdout() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        use std::os::fd::AsRawFd;
        if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
            let _ = nix::unistd::dup2(null.as_raw_fd(), std::io::stdout().as_raw_fd());
        }
    });
}

/// Runs `ip <args>`; its error output is the message.
async fn ip(args: &[&str]) -> Result<String, String> {
    let out = tokio::time::timeout(
        DEVICE_TIMEOUT,
        tokio::process::Command::new("ip")
            .args(args)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .map_err(|_| format!("`ip {}` did not finish", args.join(" ")))?
    .map_err(|e| format!("cannot run `ip` (install iproute2): {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Whether a network interface of that name exists here.
pub fn interface_exists(interface: &str) -> bool {
    PathBuf::from(format!("/sys/class/net/{interface}")).exists()
}

/// Creates a kernel WireGuard interface (no-op if it exists).
pub async fn create_kernel_interface(interface: &str) -> Result<(), String> {
    if interface_exists(interface) {
        return Ok(());
    }
    ip(&["link", "add", "dev", interface, "type", "wireguard"])
        .await
        .map(|_| ())
        .map_err(|e| format!("{e} (is the wireguard kernel module loaded? `modprobe wireguard`, or use backend = \"boringtun\")"))
}

/// MTU, addresses, link up, and the routes of [`crate::render::routes`];
/// addresses and routes the config no longer names are removed.
pub async fn configure_link(config: &VpnConfig) -> Result<(), String> {
    let iface = config.interface.as_str();
    let mtu = config.mtu.to_string();
    ip(&["link", "set", "dev", iface, "mtu", &mtu, "up"]).await?;
    let current = addresses(iface).await?;
    for net in &config.addresses {
        if !current.contains(net) {
            ip(&["address", "add", &net.to_string(), "dev", iface]).await?;
        }
    }
    for net in current.iter().filter(|n| !config.addresses.contains(n)) {
        ip(&["address", "del", &net.to_string(), "dev", iface]).await?;
    }
    sync_routes(config).await
}

/// The interface's routes made equal to the allowed IPs' (live peer
/// changes); the kernel's own on-link routes are left alone.
pub async fn sync_routes(config: &VpnConfig) -> Result<(), String> {
    let iface = config.interface.as_str();
    let wanted = crate::render::routes(config);
    let current = static_routes(iface).await?;
    for net in &wanted {
        ip(&["route", "replace", &net.to_string(), "dev", iface]).await?;
    }
    for net in current.iter().filter(|n| !wanted.contains(n)) {
        ip(&["route", "del", &net.to_string(), "dev", iface]).await?;
    }
    Ok(())
}

/// `ip -j address show dev <iface>`: its addresses with prefix.
async fn addresses(iface: &str) -> Result<Vec<IpNet>, String> {
    let json = ip(&["-j", "address", "show", "dev", iface]).await?;
    let parsed: serde_json::Value = serde_json::from_str(&json)
        .map_err(|e| format!("unexpected `ip -j address` output: {e}"))?;
    Ok(parsed
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|link| link["addr_info"].as_array().cloned().unwrap_or_default())
        .filter_map(|a| {
            format!("{}/{}", a["local"].as_str()?, a["prefixlen"].as_u64()?)
                .parse()
                .ok()
        })
        .collect())
}

/// Routes on the interface not made by the kernel for its addresses.
async fn static_routes(iface: &str) -> Result<Vec<IpNet>, String> {
    let mut out = Vec::new();
    for family in ["-4", "-6"] {
        let json = ip(&[family, "-j", "route", "show", "dev", iface]).await?;
        let parsed: serde_json::Value =
            serde_json::from_str(if json.trim().is_empty() { "[]" } else { &json })
                .map_err(|e| format!("unexpected `ip -j route` output: {e}"))?;
        for route in parsed.as_array().into_iter().flatten() {
            if route["protocol"].as_str() == Some("kernel") {
                continue;
            }
            let Some(dst) = route["dst"].as_str() else {
                continue;
            };
            let dst = if dst.contains('/') {
                dst.to_string()
            } else if dst.contains(':') {
                format!("{dst}/128")
            } else {
                format!("{dst}/32")
            };
            if let Ok(net) = dst.parse() {
                out.push(net);
            }
        }
    }
    Ok(out)
}

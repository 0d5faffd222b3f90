//! `ntari-identity`: slapd, krb5kdc and kadmind behind the ROS 2 lifecycle
//! node `/ntari/ntari_identity_node`. Everything but the daemons lives in
//! `ntari_identity::Identity` and the shared runtime; see
//! docs/services/identity.md.

fn main() -> std::process::ExitCode {
    ntari_node::runtime::main(ntari_identity::Identity::default())
}

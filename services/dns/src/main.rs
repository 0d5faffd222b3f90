//! `ntari-dns`: dnsmasq behind the /ntari/ntari_dns_node lifecycle node.

fn main() -> std::process::ExitCode {
    ntari_node::runtime::main(ntari_dns::Dns::default())
}

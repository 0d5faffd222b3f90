//! `ntari-files`: smbd and an NFS server behind the ROS 2 lifecycle node
//! `/ntari/ntari_files_node`. Everything but the daemons lives in
//! `ntari_files::Files` and the shared runtime; see docs/services/files.md.

fn main() -> std::process::ExitCode {
    ntari_node::runtime::main(ntari_files::Files::default())
}

//! `ntari-admin files user add | passwd | remove | list`: the members who
//! may use ntari-files' SMB shares, and their passwords.
//!
//! Runs on the hub, as root, once ntari-files has been configured: the
//! passdb is named by the smb.conf it rendered into its run dir, and
//! Samba's own tools (pdbedit, smbpasswd) change it. smbd reads the passdb
//! at each login, so changes apply at once, without a reload.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use ntari_files::members;
use ntari_files::render::SMB_CONF;

use crate::identity::read_password;
use crate::Exit;

const DEFAULT_RUN_DIR: &str = "/run/ntari/files";

#[derive(Debug, Args)]
pub struct FilesArgs {
    /// ntari-files' run directory (its smb.conf names the passdb).
    #[arg(long, global = true, value_name = "DIR", default_value = DEFAULT_RUN_DIR)]
    run_dir: PathBuf,
    #[command(subcommand)]
    command: FilesCommand,
}

#[derive(Debug, Subcommand)]
pub enum FilesCommand {
    /// Members with an SMB password.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add a member and set her password (a locked Unix account is made
    /// for her if she has none: Samba needs one to own her files).
    Add {
        /// Login name: a-z, 0-9, '_', '.', '-', up to 32.
        name: String,
        /// Read the password from the first line of stdin instead of the terminal.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Set a member's password.
    Passwd {
        name: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Remove a member (and the Unix account made for her); her files stay.
    Remove { name: String },
    /// The members, one per line.
    List,
}

pub fn run(args: &FilesArgs) -> anyhow::Result<Exit> {
    let smb_conf = args.run_dir.join(SMB_CONF);
    if !smb_conf.is_file() {
        eprintln!(
            "ntari-admin: {} does not exist: ntari-files has not been configured with this run dir (start it, or give --run-dir)",
            smb_conf.display()
        );
        return Ok(Exit::NoAnswer);
    }
    let FilesCommand::User { command } = &args.command;
    match command {
        UserCommand::Add {
            name,
            password_stdin,
        } => {
            members::check_name(name)?;
            let password = read_password(*password_stdin, &format!("Password for {name}"))?;
            members::add(&smb_conf, name, &password)?;
            println!("added member {name}");
        }
        UserCommand::Passwd {
            name,
            password_stdin,
        } => {
            members::check_name(name)?;
            let password = read_password(*password_stdin, &format!("New password for {name}"))?;
            members::passwd(&smb_conf, name, &password)?;
            println!("changed the password of {name}");
        }
        UserCommand::Remove { name } => {
            members::remove(&smb_conf, name)?;
            println!("removed member {name}");
        }
        UserCommand::List => {
            for name in members::list(&smb_conf)? {
                println!("{name}");
            }
        }
    }
    Ok(Exit::Ok)
}

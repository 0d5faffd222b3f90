//! `ntari-admin`: the operator's view of an NTARI node.
//!
//! - `status` / `watch`: every service node on the ROS 2 domain, found
//!   through the graph, with lifecycle state, health and key status fields;
//! - `lifecycle <node> get|configure|activate|deactivate|cleanup|shutdown`;
//! - `key show|init`: the node key and its DID;
//! - `domain render`: /etc/ntari/cyclonedds.xml from ntari.toml (the
//!   `ntari-domain` OpenRC service);
//! - `federation agreement draft|sign|verify|show|revoke`, `federation
//!   log`: agreements with other cooperatives and the bridge's audit log;
//! - `completions <shell>`, `man`: generated from this command line.
//!
//! Exit codes are the [`Exit`] values, so scripts (the seed's health check)
//! can tell "unhealthy" from "could not ask".

mod domain;
mod federation;
mod files;
mod identity;
mod membership;
mod nodes;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use ntari_node::config::{NodeConfig, NODE_CONFIG_PATH};
use ntari_node::graph::{Context, GraphView};
use ntari_node::signing::NodeKey;

use nodes::{Monitor, Outcome, Report};

/// Exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Exit {
    Ok = 0,
    /// A node is not Active and healthy, or a transition failed.
    Unhealthy = 1,
    // 2 is clap's: bad command line.
    /// A node did not answer in time, or left the graph mid-command.
    NoAnswer = 3,
    /// No NTARI service node on the domain.
    NoNodes = 4,
    /// The node named is not on the graph.
    UnknownNode = 5,
    /// A file (ntari.toml, the key, the output) could not be used.
    Failure = 6,
}

#[derive(Debug, Parser)]
#[command(
    name = "ntari-admin",
    version,
    about = "Operate an NTARI OS node: the state and health of every service node, lifecycle commands, the node key, federation agreements"
)]
struct Args {
    /// Node-wide settings (domain id, key path); ROS_DOMAIN_ID overrides the domain.
    #[arg(long, global = true, value_name = "FILE", default_value = NODE_CONFIG_PATH)]
    node_config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Every NTARI service node on the domain: lifecycle state, health, age
    /// of the last health sample, daemon, summary. Exit 0 only if all are
    /// Active and healthy.
    Status {
        /// One JSON array instead of the table.
        #[arg(long)]
        json: bool,
        /// Seconds to discover nodes and wait for their answers.
        #[arg(long, default_value_t = 3.0, value_name = "SECONDS")]
        timeout: f64,
    },
    /// Drive a node through the standard lifecycle services (as `ros2
    /// lifecycle get/set` does).
    Lifecycle {
        /// `dns`, `ntari_dns_node` or `/ntari/ntari_dns_node`.
        node: String,
        #[arg(value_enum)]
        command: LifecycleCommand,
        /// Seconds to find the node and for it to answer.
        #[arg(long, default_value_t = 5.0, value_name = "SECONDS")]
        timeout: f64,
    },
    /// A live view of `status`, refreshed until Ctrl-C.
    Watch {
        /// Seconds between refreshes.
        #[arg(long, default_value_t = 2.0, value_name = "SECONDS")]
        interval: f64,
    },
    /// The node's Ed25519 key and DID.
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// The DDS domain's config.
    Domain {
        #[command(subcommand)]
        command: DomainCommand,
    },
    /// Federation with other cooperatives: invites and joins, partners
    /// (list, set-trust, remove), agreements (draft, sign, verify, show,
    /// revoke) and ntari-federation's audit log.
    Federation {
        #[command(subcommand)]
        command: federation::FederationCommand,
    },
    /// The cooperative's members, groups, hosts, services and trusted
    /// realms in ntari-identity (on the hub, as root, while it runs).
    Identity {
        #[command(flatten)]
        command: identity::IdentityArgs,
    },
    /// The members who may use ntari-files' SMB shares, and their
    /// passwords (on the hub, as root, once it is configured).
    Files {
        #[command(flatten)]
        command: files::FilesArgs,
    },
    /// Print shell completions for `ntari-admin`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) of `ntari-admin`.
    Man,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LifecycleCommand {
    Get,
    Configure,
    Activate,
    Deactivate,
    Cleanup,
    Shutdown,
}

impl LifecycleCommand {
    fn label(self) -> &'static str {
        match self {
            LifecycleCommand::Get => "get",
            LifecycleCommand::Configure => "configure",
            LifecycleCommand::Activate => "activate",
            LifecycleCommand::Deactivate => "deactivate",
            LifecycleCommand::Cleanup => "cleanup",
            LifecycleCommand::Shutdown => "shutdown",
        }
    }
}

#[derive(Debug, Subcommand)]
enum KeyCommand {
    /// Print the key's path, DID and public key.
    Show {
        /// The key file [default: key_path in ntari.toml].
        #[arg(long, value_name = "FILE")]
        key: Option<PathBuf>,
    },
    /// Create the key if it does not exist (mode 0600), then show it.
    Init {
        /// The key file [default: key_path in ntari.toml].
        #[arg(long, value_name = "FILE")]
        key: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum DomainCommand {
    /// Write the Cyclone DDS config for the domain in ntari.toml, atomically.
    Render {
        #[arg(long, value_name = "FILE", default_value = "/etc/ntari/cyclonedds.xml")]
        output: PathBuf,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    ntari_node::runtime::init_logging("warn");
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ntari-admin: cannot start the async runtime: {e}");
            return ExitCode::from(Exit::Failure as u8);
        }
    };
    let exit = match runtime.block_on(run(args)) {
        Ok(exit) => exit,
        Err(e) => {
            eprintln!("ntari-admin: {e:#}");
            Exit::Failure
        }
    };
    ExitCode::from(exit as u8)
}

fn seconds(value: f64) -> Duration {
    Duration::from_secs_f64(value.clamp(0.1, 3600.0))
}

fn node_config(args: &Args) -> anyhow::Result<NodeConfig> {
    Ok(NodeConfig::load(&args.node_config, false)?)
}

async fn run(args: Args) -> anyhow::Result<Exit> {
    match &args.command {
        Command::Status { json, timeout } => status(&args, *json, seconds(*timeout)).await,
        Command::Lifecycle {
            node,
            command,
            timeout,
        } => lifecycle(&args, node, *command, seconds(*timeout)).await,
        Command::Watch { interval } => watch(&args, seconds(*interval)).await,
        Command::Key { command } => key(&args, command),
        Command::Domain {
            command: DomainCommand::Render { output },
        } => {
            // Like the nodes: a missing ntari.toml means the defaults.
            let config = node_config(&args)?;
            let xml = domain::cyclonedds_xml(&config, &args.node_config);
            if let Some(dir) = output.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
            }
            ntari_node::fsutil::write_atomic(output, xml.as_bytes(), 0o644)
                .with_context(|| format!("cannot write {}", output.display()))?;
            println!(
                "{}: domain {} from {}",
                output.display(),
                config.domain_id,
                args.node_config.display()
            );
            Ok(Exit::Ok)
        }
        Command::Federation { command } => federation::run(command, &args.node_config).await,
        Command::Identity { command } => identity::run(command).await,
        Command::Files { command } => files::run(command),
        Command::Completions { shell } => {
            clap_complete::generate(
                *shell,
                &mut Args::command(),
                "ntari-admin",
                &mut std::io::stdout(),
            );
            Ok(Exit::Ok)
        }
        Command::Man => {
            clap_mangen::Man::new(Args::command()).render(&mut std::io::stdout())?;
            Ok(Exit::Ok)
        }
    }
}

/// Joins the domain as the node `/ntari/ntari_admin_<pid>`.
fn join(args: &Args) -> anyhow::Result<(Context, ntari_node::graph::Node)> {
    let config = node_config(args)?;
    let context = Context::new(config.domain_id).context("cannot join the ROS 2 domain")?;
    let node = context.create_node("/ntari", &format!("ntari_admin_{}", std::process::id()))?;
    Ok((context, node))
}

async fn status(args: &Args, json: bool, timeout: Duration) -> anyhow::Result<Exit> {
    let (context, node) = join(args)?;
    let mut monitor = Monitor::new(&node, GraphView::new(&context)?);
    // Discovery plus at least one 1 Hz health sample.
    monitor
        .settle(
            timeout
                .min(Duration::from_millis(1500))
                .max(Duration::from_millis(1200)),
        )
        .await?;
    let reports = monitor.reports(timeout).await;
    if json {
        let list: Vec<_> = reports.iter().map(Report::to_json).collect();
        println!("{}", serde_json::to_string_pretty(&list)?);
    } else {
        print_table(&reports, context.domain_id());
    }
    Ok(verdict(&reports))
}

fn verdict(reports: &[Report]) -> Exit {
    if reports.is_empty() {
        Exit::NoNodes
    } else if reports.iter().any(|r| r.state.is_none()) {
        Exit::NoAnswer
    } else if reports.iter().all(Report::ok) {
        Exit::Ok
    } else {
        Exit::Unhealthy
    }
}

fn print_table(reports: &[Report], domain: u32) {
    if reports.is_empty() {
        println!("no NTARI service node on ROS domain {domain}");
        return;
    }
    println!(
        "{:<26} {:<13} {:<8} {:>6}  {:<22} SUMMARY",
        "NODE", "STATE", "HEALTH", "AGE", "DAEMON"
    );
    for r in reports {
        let health = match r.healthy {
            Some(true) => "ok",
            Some(false) => "FAIL",
            None => "-",
        };
        let age = r
            .health_age
            .map(|a| format!("{:.1}s", a.as_secs_f64()))
            .unwrap_or_else(|| "-".into());
        let status = r.status.as_ref();
        let daemon = status
            .map(|s| {
                let d = &s["daemon"];
                match d["pid"].as_u64() {
                    Some(pid) => format!(
                        "{} {pid} r{}",
                        d["name"].as_str().unwrap_or("?"),
                        d["restarts"].as_u64().unwrap_or(0)
                    ),
                    None => format!("{} stopped", d["name"].as_str().unwrap_or("?")),
                }
            })
            .unwrap_or_else(|| "-".into());
        let summary = status
            .and_then(|s| s["last_error"].as_str().map(|e| format!("error: {e}")))
            .or_else(|| {
                status.and_then(|s| s["probe_error"].as_str().map(|e| format!("probe: {e}")))
            })
            .or_else(|| status.and_then(|s| s["detail"]["summary"].as_str().map(str::to_string)))
            .unwrap_or_default();
        println!(
            "{:<26} {:<13} {:<8} {:>6}  {:<22} {}",
            r.fqn,
            r.state.as_deref().unwrap_or("NO ANSWER"),
            health,
            age,
            daemon,
            summary
        );
    }
}

async fn lifecycle(
    args: &Args,
    wanted: &str,
    command: LifecycleCommand,
    timeout: Duration,
) -> anyhow::Result<Exit> {
    let (context, node) = join(args)?;
    let mut view = GraphView::new(&context)?;
    let deadline = tokio::time::Instant::now() + timeout;
    // Look until the node shows up or the time is over.
    let fqn = loop {
        let known = view.nodes();
        if let Some(fqn) = nodes::resolve(wanted, &known) {
            break fqn.clone();
        }
        if tokio::time::Instant::now() >= deadline {
            let services: Vec<&String> = known
                .iter()
                .filter(|n| nodes::service_of(n).is_some())
                .collect();
            eprintln!(
                "ntari-admin: no node `{wanted}` on ROS domain {}; service nodes seen: {}",
                context.domain_id(),
                if services.is_empty() {
                    "none".to_string()
                } else {
                    services
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            );
            return Ok(Exit::UnknownNode);
        }
        view.changed(Duration::from_millis(100)).await;
    };
    match nodes::lifecycle(&node, &fqn, command.label(), timeout).await? {
        Outcome::Done(text) => {
            println!("{text}");
            Ok(Exit::Ok)
        }
        Outcome::Refused(text) => {
            eprintln!("ntari-admin: {text}");
            Ok(Exit::Unhealthy)
        }
        Outcome::NoAnswer(text) => {
            let gone = !view.nodes().contains(&fqn);
            if gone {
                eprintln!("ntari-admin: {fqn} left the graph during the command ({text})");
            } else {
                eprintln!("ntari-admin: {text}");
            }
            Ok(Exit::NoAnswer)
        }
    }
}

async fn watch(args: &Args, interval: Duration) -> anyhow::Result<Exit> {
    let (context, node) = join(args)?;
    let mut monitor = Monitor::new(&node, GraphView::new(&context)?);
    let mut stop = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        monitor.settle(Duration::from_millis(300)).await?;
        let reports = monitor.reports(Duration::from_secs(2)).await;
        let mut out = std::io::stdout().lock();
        // Clear the screen and go home, as `watch(1)` does.
        write!(out, "\x1b[2J\x1b[H")?;
        writeln!(
            out,
            "ntari-admin watch — ROS domain {} — every {:.0} s, Ctrl-C to leave\n",
            context.domain_id(),
            interval.as_secs_f64()
        )?;
        drop(out);
        print_table(&reports, context.domain_id());
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.recv() => return Ok(Exit::Ok),
            _ = term.recv() => return Ok(Exit::Ok),
        }
    }
}

fn key(args: &Args, command: &KeyCommand) -> anyhow::Result<Exit> {
    let (path, create) = match command {
        KeyCommand::Show { key } => (key.clone(), false),
        KeyCommand::Init { key } => (key.clone(), true),
    };
    let path = match path {
        Some(p) => p,
        None => node_config(args)?.key_path,
    };
    let key = if create {
        let (key, created) = NodeKey::load_or_create(&path)?;
        if created {
            println!("created {}", path.display());
        } else {
            println!("{} exists; kept", path.display());
        }
        key
    } else {
        NodeKey::load(&path).with_context(|| {
            format!(
                "no usable key at {} (create one with `ntari-admin key init`)",
                path.display()
            )
        })?
    };
    println!("path: {}", path.display());
    println!("did:  {}", key.did());
    println!(
        "public key (hex): {}",
        key.verifying_key()
            .as_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    Ok(Exit::Ok)
}

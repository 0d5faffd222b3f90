//! `/ntari/ntari_shell_node`: a service whose daemons are shell scripts.
//!
//! It exists to try out and test the shapes of service the runtime
//! supports without any real daemon: several named daemons, optional ones,
//! none at all with set-up and tear-down hooks, daemons that fork helpers
//! escaping their process group or change their user. Config example:
//!
//! ```toml
//! set_up = "touch \"$RUN_DIR/up\""          # optional, at activate
//! tear_down = "rm -f \"$RUN_DIR/up\""       # optional, after the daemons
//! probe = "test -e \"$RUN_DIR/up\""         # optional; default: always fine
//! [[daemons]]
//! name = "worker"
//! script = "exec sleep 1000"
//! required = true                           # default true
//! ```
//!
//! Scripts run with `sh -c`, with `RUN_DIR` and `STATE_DIR` set. The
//! tear-down script is copied into the run dir at set-up, so a node that
//! starts after a crash can run it without a config: the pattern a real
//! service follows for what it must undo.

use std::path::Path;

use ntari_node::service::{
    Command, ConfigIssue, DaemonSpec, MetricDesc, Paths, ProbeReport, RenderedFile, Service,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ShellConfig {
    #[serde(default)]
    set_up: Option<String>,
    #[serde(default)]
    tear_down: Option<String>,
    #[serde(default)]
    probe: Option<String>,
    #[serde(default)]
    daemons: Vec<ShellDaemon>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ShellDaemon {
    name: String,
    script: String,
    #[serde(default = "yes")]
    required: bool,
}

fn yes() -> bool {
    true
}

struct Shell;

/// DaemonSpec names are `'static` (real services name theirs in code);
/// names from the config are leaked once each.
fn intern(name: &str) -> &'static str {
    static NAMES: std::sync::Mutex<Vec<&'static str>> = std::sync::Mutex::new(Vec::new());
    let mut names = NAMES.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(known) = names.iter().find(|n| **n == name) {
        return known;
    }
    let leaked: &'static str = Box::leak(name.to_string().into_boxed_str());
    names.push(leaked);
    leaked
}

/// Where set-up keeps the tear-down script for the next start.
fn tear_down_file(paths: &Paths) -> std::path::PathBuf {
    paths.run_dir.join("tear-down.sh")
}

fn shell(script: &str, paths: &Paths) -> Command {
    Command::new("sh", ["-c", script])
        .with_env("RUN_DIR", paths.run_dir.display().to_string())
        .with_env("STATE_DIR", paths.state_dir.display().to_string())
}

async fn run(script: &str, paths: &Paths) -> Result<(), String> {
    let status = shell(script, paths)
        .to_tokio()
        .stdin(std::process::Stdio::null())
        .status()
        .await
        .map_err(|e| e.to_string())?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{script}` failed ({status})"))
    }
}

impl Service for Shell {
    type Config = ShellConfig;
    const NAME: &'static str = "shell";
    const DAEMON: &'static str = "sh";
    const METRICS_PORT: u16 = 0;

    fn validate(&self, config: &ShellConfig) -> Result<(), ConfigIssue> {
        for (i, d) in config.daemons.iter().enumerate() {
            if config.daemons[..i].iter().any(|o| o.name == d.name) {
                return Err(ConfigIssue::new(
                    format!("daemons[{i}].name"),
                    "names must be unique",
                ));
            }
        }
        Ok(())
    }

    fn render(&self, _config: &ShellConfig, _paths: &Paths) -> Vec<RenderedFile> {
        Vec::new()
    }

    fn check_command(&self, _config: &ShellConfig, _paths: &Paths) -> Option<Command> {
        None
    }

    fn daemons(&self, config: &ShellConfig, paths: &Paths) -> Vec<DaemonSpec> {
        config
            .daemons
            .iter()
            .map(|d| {
                let spec = DaemonSpec::new(intern(&d.name), shell(&d.script, paths));
                if d.required {
                    spec
                } else {
                    spec.optional()
                }
            })
            .collect()
    }

    async fn set_up(&self, config: &ShellConfig, paths: &Paths) -> Result<(), String> {
        if let Some(script) = &config.tear_down {
            ntari_node::fsutil::write_atomic(&tear_down_file(paths), script.as_bytes(), 0o644)
                .map_err(|e| e.to_string())?;
        }
        match &config.set_up {
            Some(script) => run(script, paths).await,
            None => Ok(()),
        }
    }

    async fn tear_down(&self, _config: Option<&ShellConfig>, paths: &Paths) {
        let file = tear_down_file(paths);
        if let Ok(script) = std::fs::read_to_string(&file) {
            if let Err(e) = run(&script, paths).await {
                tracing::warn!("tear-down: {e}");
            }
            let _ = std::fs::remove_file(Path::new(&file));
        }
    }

    fn metrics(&self) -> &'static [MetricDesc] {
        &[]
    }

    async fn probe(&self, config: &ShellConfig, paths: &Paths) -> Result<ProbeReport, String> {
        if let Some(script) = &config.probe {
            run(script, paths).await?;
        }
        Ok(ProbeReport::default())
    }
}

fn main() -> std::process::ExitCode {
    ntari_node::runtime::main(Shell)
}

//! `mesh agent -config-file FILE… -config-dir DIR… [-log-level LEVEL]`: runs a server of a
//! datacenter until SIGINT or SIGTERM.

use std::path::PathBuf;

use clap::Args;
use tracing_subscriber::EnvFilter;

use crate::agent::ConfigSources;
use crate::cli::{Failure, eprint_line};
use crate::config::AgentConfig;

/// `mesh agent`.
#[derive(Debug, Args)]
pub(crate) struct AgentArgs {
    /// A configuration file, HCL or JSON (repeatable; later files win)
    #[arg(long = "config-file", value_name = "FILE")]
    pub(crate) config_file: Vec<PathBuf>,
    /// A directory whose .hcl and .json files are read in name order (repeatable)
    #[arg(long = "config-dir", value_name = "DIR")]
    pub(crate) config_dir: Vec<PathBuf>,
    /// Log level: trace, debug, info, warn, err (RUST_LOG, when set, wins; default: the
    /// configuration's log_level, else info)
    #[arg(long = "log-level", value_name = "LEVEL")]
    pub(crate) log_level: Option<String>,
}

/// Loads the configuration, starts logging, runs the agent; returns the exit code.
pub(crate) fn run(args: AgentArgs) -> i32 {
    match run_agent(args) {
        Ok(()) => 0,
        Err(failure) => {
            eprint_line(&failure.message());
            1
        }
    }
}

fn run_agent(args: AgentArgs) -> Result<(), Failure> {
    let sources = ConfigSources {
        files: args.config_file,
        dirs: args.config_dir,
    };
    // Read once here, so that a bad file is reported before anything starts and the log
    // level it sets applies from the first line; `run_from` reads the same sources again
    // (and again on every reload).
    let config = AgentConfig::load(&sources.files, &sources.dirs)
        .map_err(|e| Failure::new("loading configuration", e))?;
    let level = args.log_level.or_else(|| configured_log_level(&config));
    let runtime = long_running("mesh-agent", level.as_deref())?;
    runtime
        .block_on(crate::agent::run_from(sources))
        .map_err(|e| Failure::new("running agent", e))
}

/// What a command that runs until stopped sets up: logging to stderr at `level` (`RUST_LOG`,
/// when set and valid, wins) and a multi-threaded runtime whose threads are named `name`.
pub(crate) fn long_running(
    name: &str,
    level: Option<&str>,
) -> Result<tokio::runtime::Runtime, Failure> {
    let filter = log_filter(std::env::var("RUST_LOG").ok().as_deref(), level)?;
    // A second initialisation (tests running the CLI in one process) keeps the first.
    // Colours only on a terminal: a log file or a journal gets plain text.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name(name)
        .build()
        .map_err(|e| Failure::new("starting the runtime", e))
}

/// The configuration's `log_level` (`info` unless a file says otherwise).
fn configured_log_level(config: &AgentConfig) -> Option<String> {
    Some(config.log_level.clone()).filter(|l| !l.trim().is_empty())
}

/// The log filter: `RUST_LOG` when set and valid, else the level (Consul's names: `err` is
/// `error`), else `info`.
fn log_filter(rust_log: Option<&str>, level: Option<&str>) -> Result<EnvFilter, Failure> {
    if let Some(spec) = rust_log.filter(|s| !s.trim().is_empty()) {
        return EnvFilter::try_new(spec).map_err(|e| Failure::new("reading RUST_LOG", e));
    }
    let level = level.unwrap_or("info").trim().to_ascii_lowercase();
    let level = match level.as_str() {
        "err" => "error",
        "warning" => "warn",
        l @ ("trace" | "debug" | "info" | "warn" | "error" | "off") => l,
        _ => {
            return Err(Failure::usage(format!(
                "Invalid log level: {level:?}. Valid log levels are: trace, debug, info, warn, err, off"
            )));
        }
    };
    EnvFilter::try_new(level).map_err(|e| Failure::new("setting the log level", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_levels() {
        assert!(log_filter(None, None).is_ok());
        assert!(log_filter(None, Some("err")).is_ok());
        assert!(log_filter(None, Some("DEBUG")).is_ok());
        assert!(log_filter(Some("mesh=trace"), Some("bogus")).is_ok());
        let bad = log_filter(None, Some("loud"))
            .err()
            .map(|f| f.message())
            .unwrap_or_default();
        assert!(bad.contains("Invalid log level: \"loud\""), "{bad}");
    }
}

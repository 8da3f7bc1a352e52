//! `mesh connect …`: the Connect command group.
//!
//! Today it holds `mesh connect ca get-config|set-config`. **Extension point:** the data-plane
//! commands `mesh connect envoy …` and `mesh connect proxy …` are added here, each as a new
//! variant of [`ConnectCommand`] with its own module under `cli/` and an arm in
//! [`ConnectCommand::run`]. Those commands run until stopped, so `run` hands each variant the
//! process (it returns the exit code) instead of the short-lived runtime the API commands
//! share: a long-running command builds its own runtime, as `mesh agent` does.

use clap::Subcommand;

use crate::cli::ca::ConnectCaCommand;
use crate::cli::run_api;

/// `mesh connect …`.
#[derive(Debug, Subcommand)]
pub(crate) enum ConnectCommand {
    /// The Connect CA's configuration.
    Ca {
        #[command(subcommand)]
        command: ConnectCaCommand,
    },
    // Extension point: `Envoy(envoy::EnvoyArgs)` and `Proxy(proxy::ProxyArgs)` go here.
}

impl ConnectCommand {
    /// Runs the command; returns the exit code.
    pub(crate) fn run(self) -> i32 {
        match self {
            ConnectCommand::Ca { command } => run_api(command.run()),
        }
    }
}

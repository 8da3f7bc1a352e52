//! `mesh connect …`: the Connect command group: the CA's configuration
//! (`mesh connect ca get-config|set-config`) and the data-plane processes
//! (`mesh connect proxy|envoy|gateway`, in `proxy`). The data-plane commands run until
//! stopped, so they own the process (each builds its own runtime, as `mesh agent` does)
//! instead of sharing the short-lived runtime of the API commands.

use clap::Subcommand;

use crate::cli::ca::ConnectCaCommand;
use crate::cli::proxy::{self, ProxyArgs};
use crate::cli::run_api;

/// `mesh connect …`.
#[derive(Debug, Subcommand)]
pub(crate) enum ConnectCommand {
    /// The Connect CA's configuration.
    Ca {
        #[command(subcommand)]
        command: ConnectCaCommand,
    },
    /// Runs a sidecar (-sidecar-for ID) or a mesh gateway (-mesh-gateway -register …).
    Proxy(ProxyArgs),
    /// The same as `proxy`, under the name Consul's guides use.
    Envoy(ProxyArgs),
    /// Runs a mesh gateway (`proxy -mesh-gateway`).
    Gateway(ProxyArgs),
}

impl ConnectCommand {
    /// Runs the command; returns the exit code.
    pub(crate) fn run(self) -> i32 {
        match self {
            ConnectCommand::Ca { command } => run_api(command.run()),
            ConnectCommand::Proxy(args) | ConnectCommand::Envoy(args) => proxy::run(args, false),
            ConnectCommand::Gateway(args) => proxy::run(args, true),
        }
    }
}

//! The `mesh` command line: `mesh agent`, and the commands that speak an agent's HTTP API
//! (`mesh acl …`, `mesh config …`, `mesh services …`, `mesh intention …`, `mesh ca roots`,
//! `mesh connect ca …`, `mesh members`, `mesh reload`, `mesh leave`,
//! `mesh operator raft list-peers`), with Consul's flags, output and exit codes.
//!
//! Flags are written Go style, as Consul's documentation writes them (`-name web`,
//! `-token=X`, `-rules @file`); the `--name` form works too. Exit codes: 0 success, 1 any
//! error (usage errors included), and `mesh intention check` answers 2 for "denied".
//! Errors go to stderr as `Error <doing what>: <cause>: <cause>…`.
//!
//! Where things live: `argv` (Go-style flags to clap's), `flags` (the HTTP flags every
//! API command takes, and the agent they reach), `output` (Consul's tables and key/value
//! blocks), one module per command group; `proxy` runs the data-plane processes
//! (`mesh connect proxy|envoy|gateway`).

use std::ffi::OsString;
use std::io::Write;

use clap::{Parser, Subcommand};

mod acl;
mod agent;
mod argv;
mod ca;
mod cluster;
mod config_entry;
mod connect;
mod flags;
mod intention;
mod output;
mod proxy;
mod services;

#[cfg(test)]
mod tests;

/// Runs the command line `args` (the program name first); returns the exit code.
pub fn main(args: Vec<OsString>) -> i32 {
    let cli = match Cli::try_parse_from(argv::go_style(args)) {
        Ok(cli) => cli,
        Err(e) => return report_usage(&e),
    };
    cli.command.run()
}

/// `mesh`: a service mesh that speaks Consul's API.
#[derive(Debug, Parser)]
#[command(
    name = "mesh",
    version,
    about = "mesh: an embeddable service mesh, run and driven as Consul is",
    long_about = None,
    disable_help_subcommand = true,
    subcommand_required = true,
    arg_required_else_help = true
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Every command.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Runs a server of a datacenter from Consul-style configuration files.
    Agent(agent::AgentArgs),
    /// Manages ACL policies, tokens and roles.
    Acl {
        #[command(subcommand)]
        command: acl::AclCommand,
    },
    /// Writes, reads, lists and deletes config entries.
    Config {
        #[command(subcommand)]
        command: config_entry::ConfigCommand,
    },
    /// Registers and deregisters services with the agent.
    Services {
        #[command(subcommand)]
        command: services::ServicesCommand,
    },
    /// Creates, checks and removes intentions.
    Intention {
        #[command(subcommand)]
        command: intention::IntentionCommand,
    },
    /// Shows the Connect CA's roots.
    Ca {
        #[command(subcommand)]
        command: ca::CaCommand,
    },
    /// Connect: the CA's configuration (and, added beside it, the proxies).
    Connect {
        #[command(subcommand)]
        command: connect::ConnectCommand,
    },
    /// Lists the members of the datacenter.
    Members(cluster::MembersArgs),
    /// Makes the agent re-read its configuration files.
    Reload(cluster::ReloadArgs),
    /// Asks the agent to leave its datacenter and stop.
    Leave(cluster::LeaveArgs),
    /// Operator tools.
    Operator {
        #[command(subcommand)]
        command: cluster::OperatorCommand,
    },
    /// Prints the mesh version.
    Version,
}

impl Command {
    /// Runs the command; returns the exit code.
    pub(crate) fn run(self) -> i32 {
        match self {
            Command::Agent(args) => agent::run(args),
            Command::Connect { command } => command.run(),
            Command::Version => {
                emit(&format!("Mesh v{}", env!("CARGO_PKG_VERSION")));
                0
            }
            Command::Acl { command } => run_api(command.run()),
            Command::Config { command } => run_api(command.run()),
            Command::Services { command } => run_api(command.run()),
            Command::Intention { command } => run_api(command.run()),
            Command::Ca { command } => run_api(command.run()),
            Command::Members(args) => run_api(args.run()),
            Command::Reload(args) => run_api(args.run()),
            Command::Leave(args) => run_api(args.run()),
            Command::Operator { command } => run_api(command.run()),
        }
    }
}

/// What a command printed and how it ends.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Outcome {
    /// Printed on stdout (a newline is added when missing).
    pub(crate) text: String,
    /// The exit code.
    pub(crate) code: i32,
}

impl Outcome {
    /// Success with `text`.
    pub(crate) fn ok(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            code: 0,
        }
    }
}

/// Why a command failed: what it was doing and the cause. Printed as
/// `Error <doing>: <cause chain>`, exit code 1.
#[derive(Debug, thiserror::Error)]
#[error("{doing}")]
pub(crate) struct Failure {
    doing: String,
    #[source]
    source: Box<dyn std::error::Error + Send + Sync>,
}

impl Failure {
    /// A failure while `doing` (`"creating policy"`), caused by `source`.
    pub(crate) fn new(
        doing: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self {
            doing: doing.into(),
            source: source.into(),
        }
    }

    /// Wrong or missing arguments that clap cannot see (one of two flags, a file's content).
    pub(crate) fn usage(message: impl Into<String>) -> Self {
        Self::new("parsing arguments", message.into())
    }

    /// `Error <doing>: <cause chain>`.
    pub(crate) fn message(&self) -> String {
        format!("Error {}", crate::error_chain(self))
    }
}

/// `Result::map_err` into a [`Failure`] while `doing`.
pub(crate) trait Doing<T> {
    /// The error, as the cause of a failure while `doing`.
    fn doing(self, doing: &str) -> Result<T, Failure>;
}

impl<T, E> Doing<T> for Result<T, E>
where
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn doing(self, doing: &str) -> Result<T, Failure> {
        self.map_err(|e| Failure::new(doing, e))
    }
}

/// Runs an API command on a current-thread runtime: prints its text or its error.
pub(crate) fn run_api(fut: impl std::future::Future<Output = Result<Outcome, Failure>>) -> i32 {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprint_line(&Failure::new("starting the runtime", e).message());
            return 1;
        }
    };
    match rt.block_on(fut) {
        Ok(outcome) => {
            if !outcome.text.is_empty() {
                emit(&outcome.text);
            }
            outcome.code
        }
        Err(failure) => {
            eprint_line(&failure.message());
            1
        }
    }
}

/// Prints clap's help, version or usage error; 0 for the first two, 1 otherwise.
fn report_usage(e: &clap::Error) -> i32 {
    use clap::error::ErrorKind;
    let text = argv::go_style_text(&e.render().to_string());
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            emit(&text);
            0
        }
        _ => {
            let mut err = std::io::stderr().lock();
            let _ = err.write_all(text.as_bytes());
            1
        }
    }
}

/// Writes `text` and a newline (unless it ends with one) to stdout; a closed pipe is not an
/// error worth a panic.
pub(crate) fn emit(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    if !text.ends_with('\n') {
        let _ = out.write_all(b"\n");
    }
    let _ = out.flush();
}

/// Writes `text` and a newline to stderr.
pub(crate) fn eprint_line(text: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{text}");
}

//! A running `mesh agent`.
//!
//! Placeholder contract (being written): `run(config)`.

use crate::config::AgentConfig;

/// Why the agent stopped or could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// Anything.
    #[error("{0}")]
    Other(String),
}

/// Runs the agent until SIGINT/SIGTERM.
pub async fn run(_config: AgentConfig) -> Result<(), AgentError> {
    Err(AgentError::Other("not implemented yet".into()))
}

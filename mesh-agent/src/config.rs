//! Consul-style agent configuration.
//!
//! Placeholder contract (being written): `AgentConfig::load(files, dirs)`,
//! `AgentConfig::datacenter_config()`.

use std::path::PathBuf;

/// Why a configuration cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Anything else.
    #[error("{0}")]
    Invalid(String),
}

/// The agent's settings.
#[derive(Debug, Clone, Default)]
pub struct AgentConfig {}

impl AgentConfig {
    /// Reads and merges config files and the `.json`/`.hcl` files of config dirs, in order.
    pub fn load(_files: &[PathBuf], _dirs: &[PathBuf]) -> Result<Self, ConfigError> {
        Err(ConfigError::Invalid("not implemented yet".into()))
    }
}

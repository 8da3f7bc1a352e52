//! The answer of an intention check.

use serde::Serialize;

/// The answer to "may this client reach this service?" with the reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Authorization {
    /// Whether the connection is allowed.
    pub authorized: bool,
    /// What decided: the matched intention or the default.
    pub reason: String,
}

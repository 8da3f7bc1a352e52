//! Tokens carried by replication requests and the authorizer hook the primary calls.

use std::fmt;

use crate::table::TableName;

/// The secret of an ACL token. Its `Debug` and `Display` never show the secret.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SecretToken(String);

impl SecretToken {
    /// Wraps a secret.
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    /// The secret itself, for the authorizer that resolves it.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretToken(<redacted>)")
    }
}

/// What a request asks the primary to do, for the [`Authorizer`] to decide.
///
/// The authorizer maps the table to the permission it needs; Consul's replication token holds
/// `acl = "write"` (ACL tables, unredacted tokens), `operator = "write"` (CA state) and
/// `service_prefix "" { policy = "read" }` (config entries and intentions).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Op {
    /// Read a whole global table to replicate it.
    Replicate {
        /// The table.
        table: TableName,
    },
    /// Write one record of a global table (a write forwarded from a secondary); asked once per
    /// record of a transaction, so the authorizer can check the object the id names.
    Write {
        /// The table.
        table: TableName,
        /// The record id.
        id: String,
    },
}

impl Op {
    /// The table the operation touches.
    pub fn table(&self) -> &TableName {
        match self {
            Self::Replicate { table } | Self::Write { table, .. } => table,
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Replicate { table } => write!(f, "replicate {table}"),
            Self::Write { table, id } => write!(f, "write {table}/{id}"),
        }
    }
}

/// A refusal by the authorizer, saying what refused (the rule, the missing permission).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("permission denied: {reason}")]
pub struct Denied {
    /// What refused, for the log and the caller (never the secret).
    pub reason: String,
}

impl Denied {
    /// A refusal with its reason.
    pub fn new(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
        }
    }
}

/// The hook through which the primary checks every replication and forwarded-write request.
pub trait Authorizer: Send + Sync + 'static {
    /// Allows `op` for the holder of `token`, or says why not.
    fn authorize(&self, token: &SecretToken, op: Op) -> Result<(), Denied>;
}

/// Risky authorizers, for tests and examples only.
pub mod danger {
    use super::{Authorizer, Denied, Op, SecretToken};

    /// Allows every operation for every token (ACLs disabled).
    #[derive(Debug, Clone, Copy, Default)]
    pub struct AllowAll;

    impl Authorizer for AllowAll {
        fn authorize(&self, _token: &SecretToken, _op: Op) -> Result<(), Denied> {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_is_redacted() {
        let t = SecretToken::new("s3cr3t-abc");
        assert!(!format!("{t:?}").contains("s3cr3t"));
        assert_eq!(t.expose_secret(), "s3cr3t-abc");
    }

    #[test]
    fn allow_all_allows() -> Result<(), Box<dyn std::error::Error>> {
        let op = Op::Write {
            table: TableName::new("x")?,
            id: "a".into(),
        };
        assert_eq!(op.to_string(), "write x/a");
        assert!(
            danger::AllowAll
                .authorize(&SecretToken::new(""), op)
                .is_ok()
        );
        Ok(())
    }
}

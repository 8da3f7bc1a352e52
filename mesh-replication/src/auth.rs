//! Tokens carried by replication requests and the authorizer hook the primary calls.

use std::fmt;

use crate::record::TxnOp;
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

impl From<&mesh_core::TokenSecret> for SecretToken {
    fn from(s: &mesh_core::TokenSecret) -> Self {
        Self::new(s.expose_secret())
    }
}

impl fmt::Debug for SecretToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretToken(<redacted>)")
    }
}

/// What a request asks the primary to do, for the [`Authorizer`] to decide.
///
/// A forwarded write is asked once per operation of its transaction, with the whole operation
/// (table, id and the value that will be stored), so the authorizer decides on exactly what
/// will be enforced: no operation is ever authorized by another one of the same transaction.
/// Consul's replication token holds `acl = "write"` (ACL tables, unredacted tokens),
/// `operator = "write"` (CA state) and `service_prefix "" { policy = "read" }` (config entries
/// and intentions).
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum Op<'a> {
    /// Read a whole global table to replicate it.
    Replicate {
        /// The table.
        table: &'a TableName,
    },
    /// Apply one operation of a write (forwarded from a secondary, or made locally).
    Write(&'a TxnOp),
    /// Enroll a server of another datacenter: have the primary sign a certificate for that
    /// server's identity, which then opens mTLS on the server port (see
    /// [`Enroller`](crate::Enroller)). Touches no table.
    Enroll,
}

impl Op<'_> {
    /// The table the operation touches (none for [`Op::Enroll`]).
    pub fn table(&self) -> Option<&TableName> {
        match self {
            Self::Replicate { table } => Some(table),
            Self::Write(op) => Some(op.table()),
            Self::Enroll => None,
        }
    }
}

impl fmt::Display for Op<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Replicate { table } => write!(f, "replicate {table}"),
            Self::Write(TxnOp::Upsert { table, id, .. }) => write!(f, "write {table}/{id}"),
            Self::Write(TxnOp::Delete { table, id, .. }) => write!(f, "delete {table}/{id}"),
            Self::Enroll => f.write_str("enroll a server"),
        }
    }
}

/// Why the authorizer refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeniedKind {
    /// The token does not resolve or lacks the permission.
    Permission,
    /// The operation itself is refused whatever the token: its value does not decode or
    /// validate, or its id disagrees with its content.
    Invalid,
}

/// A refusal by the authorizer, saying what refused (the rule, the missing permission, the
/// invalid field).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {reason}", match .kind { DeniedKind::Permission => "permission denied", DeniedKind::Invalid => "invalid record" })]
pub struct Denied {
    /// Permission or validity.
    pub kind: DeniedKind,
    /// What refused, for the log and the caller (never the secret).
    pub reason: String,
}

impl Denied {
    /// A permission refusal with its reason.
    pub fn new(reason: impl Into<String>) -> Self {
        Self {
            kind: DeniedKind::Permission,
            reason: reason.into(),
        }
    }

    /// A refusal of an operation that is invalid whatever the token.
    pub fn invalid(reason: impl Into<String>) -> Self {
        Self {
            kind: DeniedKind::Invalid,
            reason: reason.into(),
        }
    }
}

/// The hook through which the primary checks every replication and forwarded-write request.
pub trait Authorizer: Send + Sync + 'static {
    /// Allows `op` for the holder of `token`, or says why not.
    fn authorize(&self, token: &SecretToken, op: Op<'_>) -> Result<(), Denied>;
}

/// Risky authorizers, for tests and examples only.
pub mod danger {
    use super::{Authorizer, Denied, Op, SecretToken};

    /// Allows every operation for every token (ACLs disabled).
    #[derive(Debug, Clone, Copy, Default)]
    pub struct AllowAll;

    impl Authorizer for AllowAll {
        fn authorize(&self, _token: &SecretToken, _op: Op<'_>) -> Result<(), Denied> {
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
        let txn = TxnOp::Delete {
            table: TableName::new("x")?,
            id: "a".into(),
            cas: None,
        };
        let op = Op::Write(&txn);
        assert_eq!(op.to_string(), "delete x/a");
        assert!(
            danger::AllowAll
                .authorize(&SecretToken::new(""), op)
                .is_ok()
        );
        Ok(())
    }
}

//! The trust domain of a mesh and the cluster id it is made from.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::names::{NameError, NameErrorReason};

/// The longest DNS name accepted as a trust domain (RFC 1035 §3.1, without the final dot).
pub const MAX_DOMAIN_LEN: usize = 253;

/// The domain every Consul-style trust domain ends in. Consul hard-codes it, independent of the
/// agents' DNS domain (see docs/consul-compatibility.md, 'Trust domain').
pub const SIGNING_DOMAIN: &str = "consul";

/// Why a string is not a valid cluster id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid cluster id {0:?}: expected a lower-case UUID (8-4-4-4-12 hex digits)")]
pub struct ClusterIdError(pub String);

/// Why a string is not a valid trust domain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrustDomainError {
    /// The whole name is empty or longer than [`MAX_DOMAIN_LEN`].
    #[error("invalid trust domain {0:?}: must be 1 to {MAX_DOMAIN_LEN} characters")]
    Length(String),
    /// One dot-separated label breaks the label rules.
    #[error("invalid trust domain {domain:?}: label {label:?} {reason}")]
    Label {
        /// The rejected input.
        domain: String,
        /// The offending label.
        label: String,
        /// The rule it broke.
        reason: NameErrorReason,
    },
}

/// The id of a mesh cluster: a random UUID chosen by the primary datacenter on first start.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClusterId(String);

impl ClusterId {
    /// Builds a version-4 UUID from 16 random bytes (the caller supplies the randomness).
    pub fn from_random_bytes(mut b: [u8; 16]) -> Self {
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        let mut s = String::with_capacity(36);
        for (i, byte) in b.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                s.push('-');
            }
            s.push_str(&format!("{byte:02x}"));
        }
        Self(s)
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for ClusterId {
    type Err = ClusterIdError;
    fn from_str(s: &str) -> Result<Self, ClusterIdError> {
        let groups: Vec<&str> = s.split('-').collect();
        let lens = [8, 4, 4, 4, 12];
        let ok = groups.len() == lens.len()
            && groups.iter().zip(lens).all(|(g, n)| {
                g.len() == n
                    && g.bytes()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            });
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(ClusterIdError(s.to_owned()))
        }
    }
}

impl fmt::Display for ClusterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ClusterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClusterId({})", self.0)
    }
}

/// A trust domain: the host part of every SPIFFE ID in one mesh, `<cluster-id>.consul`.
///
/// Parsing accepts any lower-cased DNS name (Consul's own tests use short names such as
/// `domain1` or `1234.consul`); [`TrustDomain::from_cluster_id`] builds the canonical form.
/// Upper-case input is folded to lower case, as Consul does when it compares hosts.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TrustDomain(String);

impl TrustDomain {
    /// `<cluster-id>.consul`, the trust domain of a mesh whose primary chose `id`.
    pub fn from_cluster_id(id: &ClusterId) -> Self {
        Self(format!("{}.{SIGNING_DOMAIN}", id.0))
    }

    /// Parses a trust domain; see the type's docs for what is accepted.
    pub fn new(s: &str) -> Result<Self, TrustDomainError> {
        if s.is_empty() || s.len() > MAX_DOMAIN_LEN {
            return Err(TrustDomainError::Length(s.to_owned()));
        }
        let lower = s.to_ascii_lowercase();
        for label in lower.split('.') {
            check_domain_label(label).map_err(|reason| TrustDomainError::Label {
                domain: s.to_owned(),
                label: label.to_owned(),
                reason,
            })?;
        }
        Ok(Self(lower))
    }

    /// The text before the first `.`: the cluster id for a canonical trust domain.
    pub fn cluster_id(&self) -> &str {
        self.0.split('.').next().unwrap_or(&self.0)
    }

    /// The text after the first `.`, if any (`consul` for a canonical trust domain).
    pub fn domain(&self) -> Option<&str> {
        self.0.split_once('.').map(|(_, d)| d)
    }

    /// The trust domain as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The signing URI of this trust domain, `spiffe://<td>`.
    pub fn signing_uri(&self) -> String {
        format!("spiffe://{}", self.0)
    }
}

/// Label rules inside a domain: the name rules (input is already folded to lower case).
fn check_domain_label(label: &str) -> Result<(), NameErrorReason> {
    crate::names::check_label("label", label).map_err(|e: NameError| e.reason)
}

impl FromStr for TrustDomain {
    type Err = TrustDomainError;
    fn from_str(s: &str) -> Result<Self, TrustDomainError> {
        Self::new(s)
    }
}

impl fmt::Display for TrustDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for TrustDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TrustDomain({})", self.0)
    }
}

impl Serialize for TrustDomain {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for TrustDomain {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::new(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_id_from_bytes_is_v4_uuid() {
        let id = ClusterId::from_random_bytes([0xff; 16]);
        assert_eq!(id.as_str(), "ffffffff-ffff-4fff-bfff-ffffffffffff");
        assert_eq!(id.as_str().parse::<ClusterId>().unwrap(), id);
    }

    #[test]
    fn cluster_id_refuses_bad_shapes() {
        for bad in [
            "",
            "1234",
            "11111111-2222-3333-4444-55555555555",
            "11111111-2222-3333-4444-55555555555G",
            "11111111-2222-3333-4444-55555555555A",
        ] {
            assert!(bad.parse::<ClusterId>().is_err(), "{bad}");
        }
    }

    #[test]
    fn trust_domain_from_cluster_id() {
        let id: ClusterId = "11111111-2222-3333-4444-555555555555".parse().unwrap();
        let td = TrustDomain::from_cluster_id(&id);
        assert_eq!(td.as_str(), "11111111-2222-3333-4444-555555555555.consul");
        assert_eq!(td.cluster_id(), id.as_str());
        assert_eq!(td.domain(), Some("consul"));
        assert_eq!(
            td.signing_uri(),
            "spiffe://11111111-2222-3333-4444-555555555555.consul"
        );
    }

    #[test]
    fn trust_domain_folds_case_and_refuses_junk() {
        assert_eq!(
            TrustDomain::new("ABC.Consul").unwrap().as_str(),
            "abc.consul"
        );
        for bad in ["", ".consul", "a..b", "a.", "a b.consul", "a/b", "x:80"] {
            assert!(TrustDomain::new(bad).is_err(), "{bad:?}");
        }
        assert!(TrustDomain::new(&"a.".repeat(127)).is_err());
    }
}

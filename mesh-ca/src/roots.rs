//! The CA roots list, shaped like Consul's `/v1/connect/ca/roots` (see
//! docs/consul-compatibility.md, 'CA roots list').

use mesh_core::TrustDomain;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// One root of the mesh (Consul's `CARoot`).
///
/// Unlike Consul, `RotatedOutAt` is part of the JSON (`null` while the root is active), so a
/// reader can tell how long an old root has been kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaRoot {
    /// SHA-1 fingerprint of the root DER, colon hex.
    #[serde(rename = "ID")]
    pub id: String,
    /// `Consul CA Primary Cert` and the like.
    #[serde(rename = "Name")]
    pub name: String,
    /// Low 64 bits of the root's serial.
    #[serde(rename = "SerialNumber")]
    pub serial_number: u64,
    /// Colon-hex SubjectKeyId of the certificate that signs leaves under this root (the root
    /// itself in the primary, the local intermediate in a secondary).
    #[serde(rename = "SigningKeyID")]
    pub signing_key_id: String,
    /// The cluster id the root was created under.
    #[serde(rename = "ExternalTrustDomain")]
    pub external_trust_domain: String,
    /// Start of the root's validity.
    #[serde(rename = "NotBefore", with = "time::serde::rfc3339")]
    pub not_before: OffsetDateTime,
    /// End of the root's validity.
    #[serde(rename = "NotAfter", with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    /// The root certificate, PEM, with a trailing newline.
    #[serde(rename = "RootCert")]
    pub root_cert: String,
    /// Intermediates presented with leaves: cross-signed certificates first, the local signing
    /// intermediate last.
    #[serde(
        rename = "IntermediateCerts",
        default,
        deserialize_with = "null_as_empty"
    )]
    pub intermediate_certs: Vec<String>,
    /// Whether new leaves are signed under this root.
    #[serde(rename = "Active")]
    pub active: bool,
    /// When the root stopped being active.
    #[serde(
        rename = "RotatedOutAt",
        with = "time::serde::rfc3339::option",
        default
    )]
    pub rotated_out_at: Option<OffsetDateTime>,
    /// `ec` or `rsa`.
    #[serde(rename = "PrivateKeyType")]
    pub private_key_type: String,
    /// Key size in bits.
    #[serde(rename = "PrivateKeyBits")]
    pub private_key_bits: u32,
    /// Index at which the root was added.
    #[serde(rename = "CreateIndex", default)]
    pub create_index: u64,
    /// Index of the root's last change.
    #[serde(rename = "ModifyIndex", default)]
    pub modify_index: u64,
}

/// The roots view (Consul's `IndexedCARoots`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootsView {
    /// ID of the root with `Active = true`.
    #[serde(rename = "ActiveRootID")]
    pub active_root_id: String,
    /// `<cluster-id>.consul`.
    #[serde(rename = "TrustDomain")]
    pub trust_domain: String,
    /// Every root still trusted, oldest first.
    #[serde(rename = "Roots")]
    pub roots: Vec<CaRoot>,
    /// Bumped on every change (for blocking queries and watches).
    #[serde(rename = "Index", default)]
    pub index: u64,
}

impl RootsView {
    /// The active root, if any.
    pub fn active_root(&self) -> Option<&CaRoot> {
        self.roots
            .iter()
            .find(|r| r.id == self.active_root_id && r.active)
    }

    /// The trust domain, parsed. `None` when empty or invalid (a CA that has not finished
    /// initialising).
    pub fn trust_domain(&self) -> Option<TrustDomain> {
        if self.trust_domain.is_empty() {
            return None;
        }
        self.trust_domain.parse().ok()
    }

    /// Every root and intermediate PEM concatenated (Consul's `?pem=true`).
    pub fn pem_bundle(&self) -> String {
        let mut out = String::new();
        for r in &self.roots {
            push_pem(&mut out, &r.root_cert);
            for i in &r.intermediate_certs {
                push_pem(&mut out, i);
            }
        }
        out
    }

    /// The root certificates only, PEM, concatenated.
    pub fn roots_pem(&self) -> String {
        let mut out = String::new();
        for r in &self.roots {
            push_pem(&mut out, &r.root_cert);
        }
        out
    }

    /// JSON in Consul's shape.
    pub fn to_json(&self) -> String {
        // Serializing plain strings, numbers and RFC 3339 times cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Parses the JSON form.
    pub fn from_json(s: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(s)
    }
}

fn push_pem(out: &mut String, pem: &str) {
    out.push_str(pem);
    if !pem.ends_with('\n') {
        out.push('\n');
    }
}

/// Consul's pretty provider name in root names: `consul` → `Consul`, `aws-pca` → `Aws-Pca`.
pub(crate) fn root_name(provider: &str) -> String {
    let mut out = String::with_capacity(provider.len() + 16);
    let mut upper = true;
    for c in provider.chars() {
        if upper {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        upper = c == '-';
    }
    out.push_str(" CA Primary Cert");
    out
}

/// Reads `null` (Go's nil slice, as Consul's API writes it) as an empty list.
fn null_as_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(Option::<Vec<String>>::deserialize(d)?.unwrap_or_default())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may panic on unexpected errors
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(root_name("consul"), "Consul CA Primary Cert");
        assert_eq!(root_name("vault"), "Vault CA Primary Cert");
        assert_eq!(root_name("aws-pca"), "Aws-Pca CA Primary Cert");
    }

    #[test]
    fn empty_view() {
        let v = RootsView {
            active_root_id: String::new(),
            trust_domain: String::new(),
            roots: vec![],
            index: 0,
        };
        assert!(v.active_root().is_none());
        assert!(v.trust_domain().is_none());
        assert_eq!(v.pem_bundle(), "");
        assert!(RootsView::from_json("{").is_err());
        assert_eq!(RootsView::from_json(&v.to_json()).unwrap(), v);
    }
}

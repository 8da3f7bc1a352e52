//! Private keys of CAs and leaves, and the secret wrapper that keeps them out of logs.

use std::fmt;
use std::sync::Arc;

use rcgen::{
    KeyPair, PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384, PKCS_RSA_SHA256, PublicKeyData,
};
use rustls::pki_types::PrivatePkcs8KeyDer;
use rustls::pki_types::pem::PemObject;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The kinds of key a CA can hold.
///
/// EC P-256 is the default. RSA keys cannot be generated with the ring backend: an RSA CA key
/// comes from a [`KeySource`] supplied by the caller (for example one that reads a PKCS#8 file,
/// or runs `openssl genpkey`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeySpec {
    /// ECDSA on NIST P-256, signing with SHA-256.
    EcP256,
    /// ECDSA on NIST P-384, signing with SHA-384 (ring pairs P-384 with SHA-384 only).
    EcP384,
    /// RSA 2048, PKCS#1 v1.5 with SHA-256.
    Rsa2048,
    /// RSA 4096, PKCS#1 v1.5 with SHA-256.
    Rsa4096,
}

impl KeySpec {
    /// `ec` or `rsa`, as in Consul's `PrivateKeyType`.
    pub fn type_name(self) -> &'static str {
        match self {
            Self::EcP256 | Self::EcP384 => "ec",
            Self::Rsa2048 | Self::Rsa4096 => "rsa",
        }
    }

    /// The size in bits, as in Consul's `PrivateKeyBits`.
    pub fn bits(self) -> u32 {
        match self {
            Self::EcP256 => 256,
            Self::EcP384 => 384,
            Self::Rsa2048 => 2048,
            Self::Rsa4096 => 4096,
        }
    }
}

/// Why a key could not be made or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// ring cannot generate RSA keys; supply one through a [`KeySource`].
    #[error("RSA key generation is not available with the ring backend; supply a PKCS#8 RSA key")]
    RsaGenerationUnavailable,
    /// Key generation failed.
    #[error("key generation failed")]
    Generate(#[source] rcgen::Error),
    /// The bytes are not a PKCS#8 key of a supported kind (P-256, P-384, RSA 2048/4096).
    #[error("not a supported PKCS#8 private key (EC P-256, EC P-384, RSA 2048 or 4096)")]
    Unsupported,
    /// The PEM holds no `PRIVATE KEY` block.
    #[error("no PKCS#8 PRIVATE KEY block in PEM input")]
    NotPem,
    /// A key source handed back a key of another kind than asked for.
    #[error("key source returned a {got:?} key, {want:?} was asked for")]
    WrongKind {
        /// The kind asked for.
        want: KeySpec,
        /// The kind returned.
        got: KeySpec,
    },
    /// An external key source failed.
    #[error("key source failed: {0}")]
    Source(String),
}

/// A private key. Its `Debug` output never shows key material; it can only be serialized
/// explicitly through [`PrivateKey::to_pkcs8_pem`].
pub struct PrivateKey {
    pair: KeyPair,
    spec: KeySpec,
}

impl PrivateKey {
    /// Generates a key with ring. EC only: RSA gives [`KeyError::RsaGenerationUnavailable`].
    pub fn generate(spec: KeySpec) -> Result<Self, KeyError> {
        let alg = match spec {
            KeySpec::EcP256 => &PKCS_ECDSA_P256_SHA256,
            KeySpec::EcP384 => &PKCS_ECDSA_P384_SHA384,
            KeySpec::Rsa2048 | KeySpec::Rsa4096 => return Err(KeyError::RsaGenerationUnavailable),
        };
        let pair = KeyPair::generate_for(alg).map_err(KeyError::Generate)?;
        Ok(Self { pair, spec })
    }

    /// Reads a PKCS#8 key (DER). EC P-256, EC P-384 and RSA 2048/4096 are accepted.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, KeyError> {
        let pkcs8 = PrivatePkcs8KeyDer::from(der);
        for (alg, ec) in [
            (&PKCS_ECDSA_P256_SHA256, Some(KeySpec::EcP256)),
            (&PKCS_ECDSA_P384_SHA384, Some(KeySpec::EcP384)),
            (&PKCS_RSA_SHA256, None),
        ] {
            let Ok(pair) = KeyPair::from_pkcs8_der_and_sign_algo(&pkcs8, alg) else {
                continue;
            };
            let spec = match ec {
                Some(s) => s,
                None => match rsa_bits(&pair.subject_public_key_info()) {
                    Some(2048) => KeySpec::Rsa2048,
                    Some(4096) => KeySpec::Rsa4096,
                    _ => return Err(KeyError::Unsupported),
                },
            };
            return Ok(Self { pair, spec });
        }
        Err(KeyError::Unsupported)
    }

    /// Reads the first `PRIVATE KEY` (PKCS#8) block of a PEM text.
    pub fn from_pkcs8_pem(pem: &str) -> Result<Self, KeyError> {
        let der =
            PrivatePkcs8KeyDer::from_pem_slice(pem.as_bytes()).map_err(|_| KeyError::NotPem)?;
        Self::from_pkcs8_der(der.secret_pkcs8_der())
    }

    /// The kind of this key.
    pub fn spec(&self) -> KeySpec {
        self.spec
    }

    /// The DER SubjectPublicKeyInfo of the public half.
    pub fn public_key_spki(&self) -> Vec<u8> {
        self.pair.subject_public_key_info()
    }

    /// The key as PKCS#8 PEM, wrapped so that it does not leak through `Debug`.
    pub fn to_pkcs8_pem(&self) -> SecretString {
        SecretString(self.pair.serialize_pem())
    }

    /// The key as PKCS#8 DER, for rustls.
    pub fn to_pkcs8_der(&self) -> PrivatePkcs8KeyDer<'static> {
        PrivatePkcs8KeyDer::from(self.pair.serialize_der())
    }

    pub(crate) fn pair(&self) -> &KeyPair {
        &self.pair
    }

    pub(crate) fn into_pair(self) -> KeyPair {
        self.pair
    }

    /// A copy of this key (re-read from its PKCS#8 form).
    pub fn try_clone(&self) -> Result<Self, KeyError> {
        Self::from_pkcs8_der(self.pair.serialized_der())
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrivateKey")
            .field("spec", &self.spec)
            .field("key", &"[redacted]")
            .finish()
    }
}

/// Where CA keys come from. The default, [`RingKeySource`], generates EC keys; RSA keys need a
/// source that supplies them.
pub trait KeySource: Send + Sync {
    /// A fresh key of the given kind.
    fn new_key(&self, spec: KeySpec) -> Result<PrivateKey, KeyError>;
}

impl<F> KeySource for F
where
    F: Fn(KeySpec) -> Result<PrivateKey, KeyError> + Send + Sync,
{
    fn new_key(&self, spec: KeySpec) -> Result<PrivateKey, KeyError> {
        self(spec)
    }
}

/// Generates EC keys with ring; refuses RSA.
#[derive(Debug, Clone, Copy, Default)]
pub struct RingKeySource;

impl KeySource for RingKeySource {
    fn new_key(&self, spec: KeySpec) -> Result<PrivateKey, KeyError> {
        PrivateKey::generate(spec)
    }
}

/// Shared handle to a key source.
pub type SharedKeySource = Arc<dyn KeySource>;

/// A string that holds a secret (a PEM private key). `Debug` and `Display` print
/// `[redacted]`; [`SecretString::expose`] gives the text. It serializes as the plain string,
/// because exported CA state must be able to restore the key.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct SecretString(String);

impl SecretString {
    /// Wraps a secret.
    pub fn new(s: String) -> Self {
        Self(s)
    }

    /// The secret text. Callers must not log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl Serialize for SecretString {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for SecretString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Self)
    }
}

/// The modulus size of an RSA SubjectPublicKeyInfo.
fn rsa_bits(spki: &[u8]) -> Option<usize> {
    use x509_parser::prelude::FromDer;
    use x509_parser::public_key::PublicKey;
    let (_, info) = x509_parser::x509::SubjectPublicKeyInfo::from_der(spki).ok()?;
    match info.parsed().ok()? {
        PublicKey::RSA(rsa) => Some(rsa.key_size()),
        _ => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may panic on unexpected errors
mod tests {
    use super::*;

    #[test]
    fn ec_keys_round_trip_and_redact() {
        for spec in [KeySpec::EcP256, KeySpec::EcP384] {
            let k = PrivateKey::generate(spec).unwrap();
            let pem = k.to_pkcs8_pem();
            assert!(pem.expose().contains("BEGIN PRIVATE KEY"));
            assert_eq!(format!("{pem:?}"), "[redacted]");
            assert_eq!(format!("{pem}"), "[redacted]");
            let dbg = format!("{k:?}");
            assert!(!dbg.contains("BEGIN") && dbg.contains("redacted"), "{dbg}");
            let k2 = PrivateKey::from_pkcs8_pem(pem.expose()).unwrap();
            assert_eq!(k2.spec(), spec);
            assert_eq!(k2.public_key_spki(), k.public_key_spki());
        }
    }

    #[test]
    fn rsa_generation_is_refused() {
        assert!(matches!(
            PrivateKey::generate(KeySpec::Rsa2048),
            Err(KeyError::RsaGenerationUnavailable)
        ));
        assert!(RingKeySource.new_key(KeySpec::Rsa4096).is_err());
    }

    #[test]
    fn bad_key_input() {
        assert!(matches!(
            PrivateKey::from_pkcs8_pem("nope"),
            Err(KeyError::NotPem)
        ));
        assert!(matches!(
            PrivateKey::from_pkcs8_der(&[1, 2, 3]),
            Err(KeyError::Unsupported)
        ));
    }
}

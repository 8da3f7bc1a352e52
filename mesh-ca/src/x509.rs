//! Small X.509 helpers: key ids, fingerprints, PEM, and a parsed summary of a certificate.

use std::fmt::Write as _;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use time::OffsetDateTime;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;

/// Consul's key id: SHA-256 of the DER SubjectPublicKeyInfo, all 32 bytes (not RFC 5280's SHA-1).
pub fn key_id(spki_der: &[u8]) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, spki_der)
        .as_ref()
        .to_vec()
}

/// Lower-case hex bytes joined with `:` (Consul's `HexString`).
pub fn colon_hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 3);
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            s.push(':');
        }
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// A root's ID (Consul's `CARoot.ID`): the SHA-1 fingerprint of its DER, colon hex.
pub fn root_id(der: &[u8]) -> String {
    colon_hex(ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, der).as_ref())
}

/// PEM-encodes one certificate, with a trailing newline.
pub fn cert_pem(der: &[u8]) -> String {
    pem_block("CERTIFICATE", der)
}

/// PEM-encodes one block with 64-column base64, trailing newline included.
pub fn pem_block(label: &str, der: &[u8]) -> String {
    const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut b64 = String::with_capacity(der.len().div_ceil(3) * 4);
    for chunk in der.chunks(3) {
        let n = chunk.len();
        let v = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= n {
                b64.push(B64[((v >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                b64.push('=');
            }
        }
    }
    let mut out = String::with_capacity(b64.len() + b64.len() / 64 + 64);
    let _ = writeln!(out, "-----BEGIN {label}-----");
    for line in b64.as_bytes().chunks(64) {
        // base64 output is ASCII, so every chunk is valid UTF-8
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    let _ = writeln!(out, "-----END {label}-----");
    out
}

/// Every `CERTIFICATE` block of a PEM text, in order. Malformed blocks are an error.
pub fn certs_from_pem(
    pem: &str,
) -> Result<Vec<CertificateDer<'static>>, rustls::pki_types::pem::Error> {
    CertificateDer::pem_slice_iter(pem.as_bytes()).collect()
}

/// The facts mesh reads from a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// Serial number, big-endian bytes.
    pub serial: Vec<u8>,
    /// The low 64 bits of the serial (Go's `SerialNumber.Uint64()`).
    pub serial_u64: u64,
    /// SubjectKeyIdentifier, if present.
    pub subject_key_id: Option<Vec<u8>>,
    /// AuthorityKeyIdentifier key id, if present.
    pub authority_key_id: Option<Vec<u8>>,
    /// Start of validity.
    pub not_before: OffsetDateTime,
    /// End of validity.
    pub not_after: OffsetDateTime,
    /// URI SANs.
    pub uris: Vec<String>,
    /// DNS SANs.
    pub dns_names: Vec<String>,
    /// BasicConstraints cA.
    pub is_ca: bool,
    /// BasicConstraints pathLenConstraint.
    pub path_len: Option<u32>,
    /// DER SubjectPublicKeyInfo.
    pub spki: Vec<u8>,
    /// Subject common name, if any.
    pub common_name: Option<String>,
    /// DER of the subject name.
    pub subject_raw: Vec<u8>,
    /// DER of the issuer name.
    pub issuer_raw: Vec<u8>,
}

/// Why a certificate could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed certificate: {0}")]
pub struct CertParseError(pub String);

impl CertInfo {
    /// Parses a DER certificate. Never panics on any input.
    pub fn parse(der: &[u8]) -> Result<Self, CertParseError> {
        let (_, cert) =
            x509_parser::parse_x509_certificate(der).map_err(|e| CertParseError(e.to_string()))?;
        let serial = cert.tbs_certificate.raw_serial().to_vec();
        let serial_u64 = serial
            .iter()
            .rev()
            .take(8)
            .rev()
            .fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
        let mut info = CertInfo {
            serial,
            serial_u64,
            subject_key_id: None,
            authority_key_id: None,
            not_before: cert.validity().not_before.to_datetime(),
            not_after: cert.validity().not_after.to_datetime(),
            uris: Vec::new(),
            dns_names: Vec::new(),
            is_ca: false,
            path_len: None,
            spki: cert.tbs_certificate.subject_pki.raw.to_vec(),
            common_name: cert
                .subject()
                .iter_common_name()
                .next()
                .and_then(|cn| cn.as_str().ok())
                .map(str::to_owned),
            subject_raw: cert.subject().as_raw().to_vec(),
            issuer_raw: cert.issuer().as_raw().to_vec(),
        };
        for ext in cert.extensions() {
            match ext.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(k) => {
                    info.subject_key_id = Some(k.0.to_vec())
                }
                ParsedExtension::AuthorityKeyIdentifier(a) => {
                    info.authority_key_id = a.key_identifier.as_ref().map(|k| k.0.to_vec());
                }
                ParsedExtension::BasicConstraints(bc) => {
                    info.is_ca = bc.ca;
                    info.path_len = bc.path_len_constraint;
                }
                ParsedExtension::SubjectAlternativeName(san) => {
                    for n in &san.general_names {
                        match n {
                            GeneralName::URI(u) => info.uris.push((*u).to_owned()),
                            GeneralName::DNSName(d) => info.dns_names.push((*d).to_owned()),
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(info)
    }
}

/// Whether `cert_der` carries a valid signature by the key in `issuer_spki_der`.
pub(crate) fn signed_by(cert_der: &[u8], issuer_spki_der: &[u8]) -> bool {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(cert_der) else {
        return false;
    };
    let Ok((_, spki)) = x509_parser::x509::SubjectPublicKeyInfo::from_der(issuer_spki_der) else {
        return false;
    };
    cert.verify_signature(Some(&spki)).is_ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may panic on unexpected errors
mod tests {
    use super::*;

    #[test]
    fn hex_and_ids() {
        assert_eq!(colon_hex(&[0xa1, 0xb2, 0x03]), "a1:b2:03");
        assert_eq!(colon_hex(&[]), "");
        assert_eq!(key_id(b"x").len(), 32);
        assert_eq!(root_id(b"abc").len(), 20 * 3 - 1);
    }

    #[test]
    fn pem_round_trip() {
        for len in 0..10 {
            let der: Vec<u8> = (0..len * 37).map(|i| i as u8).collect();
            let pem = pem_block("CERTIFICATE", &der);
            assert!(pem.ends_with("-----END CERTIFICATE-----\n"));
            if len > 0 {
                let back = certs_from_pem(&pem).unwrap();
                assert_eq!(back[0].as_ref(), der.as_slice());
            }
        }
    }

    #[test]
    fn garbage_never_panics() {
        assert!(CertInfo::parse(&[]).is_err());
        assert!(CertInfo::parse(&[0x30, 0x03, 0x02, 0x01, 0x01]).is_err());
        assert!(!signed_by(&[1, 2], &[3]));
    }
}

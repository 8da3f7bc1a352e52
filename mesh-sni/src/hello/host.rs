//! SNI host name validation over borrowed bytes.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::error::HostNameError;

/// Longest host name: 255 octets on the wire minus the length bytes.
pub(super) const MAX_HOST_NAME_LEN: usize = 253;
/// Longest DNS label.
pub(super) const MAX_LABEL_LEN: usize = 63;

/// Checks that `raw` is an ASCII DNS host name (letters, digits, hyphens
/// inside labels, underscores tolerated) and not an IP literal, and returns it
/// as a `&str` borrowing the same bytes. Case is kept as sent.
#[inline]
pub(super) fn validate(raw: &[u8]) -> Result<&str, HostNameError> {
    if is_host_name(raw) {
        // ASCII only, so this cannot fail; it makes the `&str` without a copy.
        if let Ok(name) = std::str::from_utf8(raw) {
            return Ok(name);
        }
    }
    diagnose(raw)
}

/// Byte classes of host name bytes for [`is_host_name`].
const BAD: u8 = 0;
const LABEL: u8 = 1;
const HYPHEN: u8 = 2;
const DOT: u8 = 3;
static CLASS: [u8; 256] = {
    let mut table = [BAD; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        table[i] = if b.is_ascii_alphanumeric() || b == b'_' {
            LABEL
        } else if b == b'-' {
            HYPHEN
        } else if b == b'.' {
            DOT
        } else {
            BAD
        };
        i += 1;
    }
    table
};

/// The fast check: true only for names [`diagnose`] accepts too. One table
/// look-up per byte; label edges and lengths are looked at only at dots.
#[inline]
fn is_host_name(raw: &[u8]) -> bool {
    fn label_ok(label: &[u8]) -> bool {
        !label.is_empty()
            && label.len() <= MAX_LABEL_LEN
            && label.first() != Some(&b'-')
            && label.last() != Some(&b'-')
    }
    if raw.is_empty() || raw.len() > MAX_HOST_NAME_LEN {
        return false;
    }
    let mut label_start = 0;
    for (at, &byte) in raw.iter().enumerate() {
        // A u8 always indexes a 256-entry table.
        match CLASS[usize::from(byte)] {
            LABEL | HYPHEN => {}
            DOT => {
                if !label_ok(raw.get(label_start..at).unwrap_or_default()) {
                    return false;
                }
                label_start = at + 1;
            }
            _ => return false,
        }
    }
    let last = raw.get(label_start..).unwrap_or_default();
    label_ok(last) && !last.iter().all(u8::is_ascii_digit)
}

/// The full check, rule by rule, naming the first rule broken.
#[cold]
pub(super) fn diagnose(raw: &[u8]) -> Result<&str, HostNameError> {
    if raw.is_empty() {
        return Err(HostNameError::Empty);
    }
    if raw.len() > MAX_HOST_NAME_LEN {
        return Err(HostNameError::TooLong { len: raw.len() });
    }
    let mut label_start = 0usize;
    let mut prev = b'.';
    let mut numeric_label = true;
    for (at, &byte) in raw.iter().enumerate() {
        match byte {
            b'.' => {
                if at == label_start {
                    return Err(HostNameError::EmptyLabel { at });
                }
                if prev == b'-' {
                    return Err(HostNameError::HyphenAtLabelEdge { at: at - 1 });
                }
                label_start = at + 1;
                numeric_label = true;
            }
            b'0'..=b'9' => {}
            b'a'..=b'z' | b'A'..=b'Z' | b'_' => numeric_label = false,
            b'-' => {
                if at == label_start {
                    return Err(HostNameError::HyphenAtLabelEdge { at });
                }
                numeric_label = false;
            }
            _ => {
                if byte == b':' && is_ipv6(raw) {
                    return Err(HostNameError::IpLiteral);
                }
                return Err(HostNameError::BadByte { byte, at });
            }
        }
        // For any byte but a dot, `label_start <= at`.
        if byte != b'.' && at - label_start >= MAX_LABEL_LEN {
            return Err(HostNameError::LabelTooLong { at: label_start });
        }
        prev = byte;
    }
    match prev {
        b'.' => return Err(HostNameError::TrailingDot),
        b'-' => {
            return Err(HostNameError::HyphenAtLabelEdge { at: raw.len() - 1 });
        }
        _ => {}
    }
    // Only ASCII bytes got here, so this cannot fail; it is how the bytes
    // become a `&str` without copying.
    let name = std::str::from_utf8(raw).map_err(|e| HostNameError::BadByte {
        byte: raw.get(e.valid_up_to()).copied().unwrap_or(0),
        at: e.valid_up_to(),
    })?;
    if numeric_label {
        return Err(if name.parse::<Ipv4Addr>().is_ok() {
            HostNameError::IpLiteral
        } else {
            HostNameError::NumericLastLabel
        });
    }
    Ok(name)
}

fn is_ipv6(raw: &[u8]) -> bool {
    std::str::from_utf8(raw).is_ok_and(|s| s.parse::<Ipv6Addr>().is_ok())
}

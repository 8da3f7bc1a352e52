//! Common names of CA certificates (Consul's `CACN`; see docs/consul-compatibility.md, 'CA
//! certificates').

/// The CN of a CA certificate: `<pri|sec>-<uid8>.<provider>.ca.<td8>.consul`.
///
/// `uid8` is `unique_id` lower-cased, stripped to `[a-z0-9]` and cut to 8 characters;
/// `provider` is sanitised the same way and cut to 32; `td8` is the first 8 characters of
/// `cluster_id` (the Consul provider passes the cluster id, so this is the first UUID group).
/// This is the order Consul's code emits, not the one its doc comment describes.
pub fn ca_common_name(provider: &str, unique_id: &str, cluster_id: &str, primary: bool) -> String {
    let kind = if primary { "pri" } else { "sec" };
    format!(
        "{kind}-{}.{}.ca.{}.consul",
        truncate(&sanitize(unique_id), 8),
        truncate(&sanitize(provider), 32),
        truncate(cluster_id, 8),
    )
}

/// Consul's `CompactUID`: 8 random bytes read as a little-endian `u64`, reinterpreted as `i64`
/// and written in base 36 (possibly with a leading `-`), cut to 8 characters.
pub fn compact_uid(random: [u8; 8]) -> String {
    let v = i64::from_le_bytes(random);
    let mut digits = Vec::with_capacity(14);
    let mut n = v.unsigned_abs();
    loop {
        let d = (n % 36) as u8;
        digits.push(if d < 10 { b'0' + d } else { b'a' + d - 10 });
        n /= 36;
        if n == 0 {
            break;
        }
    }
    if v < 0 {
        digits.push(b'-');
    }
    digits.reverse();
    let s: String = digits.into_iter().map(char::from).collect();
    truncate(&s, 8).to_owned()
}

fn sanitize(s: &str) -> String {
    s.to_ascii_lowercase()
        .chars()
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        .collect()
}

fn truncate(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may panic on unexpected errors
mod tests {
    use super::*;

    #[test]
    fn compact_uid_shapes() {
        assert_eq!(compact_uid([0; 8]), "0");
        assert_eq!(compact_uid([35, 0, 0, 0, 0, 0, 0, 0]), "z");
        // -1 as i64: "-1"
        assert_eq!(compact_uid([0xff; 8]), "-1");
        // i64::MIN: long negative number, cut to 8 characters.
        let min = compact_uid([0, 0, 0, 0, 0, 0, 0, 0x80]);
        assert_eq!(min.len(), 8);
        assert!(min.starts_with('-'));
        let cn = ca_common_name("consul", &min, "11111111-2222", true);
        assert!(cn.starts_with("pri-") && !cn.starts_with("pri--"), "{cn}");
    }

    #[test]
    fn long_provider_is_truncated() {
        let cn = ca_common_name(&"x".repeat(40), "a", "b", false);
        assert_eq!(cn, format!("sec-a.{}.ca.b.consul", "x".repeat(32)));
    }
}

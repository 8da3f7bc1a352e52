//! Typed values read from document nodes: each refuses the wrong type with the key and the
//! position, and never quotes a value that may be a secret.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use mesh::core::DatacenterName as Datacenter;
use mesh::intentions::acl::DefaultPolicy;

use super::decode::{Doc, R};
use super::syntax::{Entry, Node, Value};

impl Doc<'_> {
    // === typed values ===

    pub(super) fn string(&self, key: &str, node: &Node) -> R<String> {
        match &node.value {
            Value::Str(s) => Ok(s.clone()),
            _ => Err(self.wrong_type(key, node, "a string")),
        }
    }

    pub(super) fn nonempty_string(&self, key: &str, node: &Node) -> R<String> {
        let s = self.string(key, node)?;
        if s.is_empty() {
            return Err(self.invalid(key, node.start, "must not be empty"));
        }
        Ok(s)
    }

    pub(super) fn path(&self, key: &str, node: &Node) -> R<PathBuf> {
        Ok(PathBuf::from(self.nonempty_string(key, node)?))
    }

    pub(super) fn bool(&self, key: &str, node: &Node) -> R<bool> {
        match &node.value {
            Value::Bool(b) => Ok(*b),
            _ => Err(self.wrong_type(key, node, "a bool (true or false)")),
        }
    }

    /// An integer; a whole number written as a float (`8500.0`) counts, as JSON numbers
    /// decode in Consul.
    pub(super) fn int(&self, key: &str, node: &Node) -> R<i64> {
        let Value::Num(text) = &node.value else {
            return Err(self.wrong_type(key, node, "a number"));
        };
        whole(text).ok_or_else(|| self.invalid(key, node.start, "expected a whole number"))
    }

    pub(super) fn string_list(&self, key: &str, node: &Node) -> R<Vec<String>> {
        let Value::List(items) = &node.value else {
            return Err(self.wrong_type(key, node, "a list of strings"));
        };
        items
            .iter()
            .map(|n| match &n.value {
                Value::Str(s) => Ok(s.clone()),
                _ => Err(self.wrong_type(key, n, "a string")),
            })
            .collect()
    }

    /// The bodies of a block: an object, or a list of objects (HCL 1 writes repeated blocks
    /// that way; Consul accepts both).
    pub(super) fn blocks<'n>(&self, key: &str, node: &'n Node) -> R<Vec<&'n [Entry]>> {
        match &node.value {
            Value::Map(entries) => Ok(vec![entries.as_slice()]),
            Value::List(items) => items
                .iter()
                .map(|n| match &n.value {
                    Value::Map(entries) => Ok(entries.as_slice()),
                    _ => Err(self.wrong_type(key, n, "an object")),
                })
                .collect(),
            _ => Err(self.wrong_type(key, node, "an object")),
        }
    }

    pub(super) fn datacenter(&self, key: &str, node: &Node) -> R<Datacenter> {
        // Consul lower-cases datacenter names before checking them.
        let s = self.string(key, node)?.to_ascii_lowercase();
        Datacenter::new(s).map_err(|e| self.invalid(key, node.start, e.to_string()))
    }

    pub(super) fn ip(&self, key: &str, node: &Node) -> R<IpAddr> {
        let s = self.string(key, node)?;
        let t = s.trim();
        if t.contains("{{") {
            return Err(self.invalid(
                key,
                node.start,
                "go-sockaddr templates are not supported: write the IP address",
            ));
        }
        if t.starts_with("unix://") {
            return Err(self.invalid(key, node.start, "unix sockets are not supported"));
        }
        if t.split_whitespace().nth(1).is_some() {
            return Err(self.invalid(
                key,
                node.start,
                "mesh listens on one address: write a single IP address",
            ));
        }
        let bare = t
            .strip_prefix('[')
            .and_then(|x| x.strip_suffix(']'))
            .unwrap_or(t);
        bare.parse::<IpAddr>()
            .map_err(|_| self.invalid(key, node.start, format!("{t:?} is not an IP address")))
    }

    pub(super) fn policy(&self, key: &str, node: &Node) -> R<DefaultPolicy> {
        match self.string(key, node)?.as_str() {
            "allow" => Ok(DefaultPolicy::Allow),
            "deny" => Ok(DefaultPolicy::Deny),
            other => Err(self.invalid(
                key,
                node.start,
                format!("{other:?} is not a policy: use \"allow\" or \"deny\""),
            )),
        }
    }

    /// A port: negative turns the listener off (Consul writes -1), 0 lets the system choose.
    pub(super) fn port(&self, key: &str, node: &Node) -> R<i64> {
        let n = self.int(key, node)?;
        if n > i64::from(u16::MAX) {
            return Err(self.invalid(
                key,
                node.start,
                format!("invalid port {n}: at most 65535 (-1 turns the listener off)"),
            ));
        }
        Ok(n.max(-1))
    }

    /// `retry_join_wan`, `primary_gateways`: `host:port` (or `host`) entries.
    pub(super) fn addresses_list(&self, key: &str, node: &Node) -> R<Vec<String>> {
        let list = self.string_list(key, node)?;
        for s in &list {
            if s.trim().is_empty() {
                return Err(self.invalid(key, node.start, "an entry is empty"));
            }
            if s.contains("provider=") {
                return Err(self.invalid(
                    key,
                    node.start,
                    "cloud auto-join (provider=...) is not supported: list host:port addresses",
                ));
            }
            if s.contains("{{") {
                return Err(self.invalid(
                    key,
                    node.start,
                    "go-sockaddr templates are not supported: write the address",
                ));
            }
        }
        Ok(list.into_iter().map(|s| s.trim().to_owned()).collect())
    }

    pub(super) fn token(&self, key: &str, node: &Node) -> R<String> {
        // Never echo the value: the type is all an error says.
        self.string(key, node)
    }

    // === weakly typed values (connect.ca_config, as Consul's CA providers decode it) ===

    pub(super) fn weak_string(&self, key: &str, node: &Node) -> R<String> {
        match &node.value {
            Value::Str(s) => Ok(s.clone()),
            Value::Num(n) => Ok(n.clone()),
            _ => Err(self.wrong_type(key, node, "a string")),
        }
    }

    pub(super) fn weak_i64(&self, key: &str, node: &Node) -> R<i64> {
        match &node.value {
            Value::Num(n) => whole(n),
            Value::Str(s) => s.trim().parse().ok(),
            Value::Bool(b) => Some(i64::from(*b)),
            _ => None,
        }
        .ok_or_else(|| self.wrong_type(key, node, "a whole number"))
    }

    pub(super) fn weak_u32(&self, key: &str, node: &Node) -> R<u32> {
        let n = self.weak_i64(key, node)?;
        u32::try_from(n).map_err(|_| self.invalid(key, node.start, format!("{n} is out of range")))
    }

    pub(super) fn weak_f64(&self, key: &str, node: &Node) -> R<f64> {
        match &node.value {
            Value::Num(n) => n.parse().ok(),
            Value::Str(s) => s.trim().parse().ok(),
            Value::Bool(b) => Some(f64::from(u8::from(*b))),
            _ => None,
        }
        .ok_or_else(|| self.wrong_type(key, node, "a number"))
    }

    pub(super) fn weak_bool(&self, key: &str, node: &Node) -> R<bool> {
        match &node.value {
            Value::Bool(b) => Some(*b),
            Value::Num(n) => n.parse::<f64>().ok().map(|f| f != 0.0),
            Value::Str(s) => match s.as_str() {
                "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
                "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
                _ => None,
            },
            _ => None,
        }
        .ok_or_else(|| self.wrong_type(key, node, "a bool"))
    }

    /// A Go duration string (`72h`, `1h30m`), or a number of nanoseconds.
    pub(super) fn weak_duration(&self, key: &str, node: &Node) -> R<Duration> {
        match &node.value {
            Value::Str(s) => mesh::ca::parse_go_duration(s)
                .map_err(|e| self.invalid(key, node.start, e.to_string())),
            Value::Num(n) => whole(n)
                .and_then(|v| u64::try_from(v).ok())
                .map(Duration::from_nanos)
                .ok_or_else(|| {
                    self.invalid(
                        key,
                        node.start,
                        "a number is read as nanoseconds and must be a non-negative whole number",
                    )
                }),
            _ => Err(self.wrong_type(key, node, "a duration such as \"72h\"")),
        }
    }
}

/// A JSON number's text as an integer, if it is a whole number in range.
fn whole(text: &str) -> Option<i64> {
    if let Ok(n) = text.parse::<i64>() {
        return Some(n);
    }
    let f: f64 = text.parse().ok()?;
    // The range check keeps the cast exact: no saturation, no fraction.
    (f.fract() == 0.0 && (-9.0e15..=9.0e15).contains(&f)).then_some(f as i64)
}

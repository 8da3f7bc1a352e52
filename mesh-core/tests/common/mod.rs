//! Helpers shared by the vector tests.
#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::error::Error;

use serde_json::Value;

/// Loads `testdata/consul/<file>` and checks that `count` matches the vectors.
pub fn load(file: &str) -> Vec<Value> {
    let path = format!("{}/../testdata/consul/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let doc: Value = serde_json::from_str(&text).unwrap();
    let vectors = doc["vectors"].as_array().unwrap().clone();
    assert_eq!(
        doc["count"].as_u64().unwrap() as usize,
        vectors.len(),
        "{file}: count"
    );
    vectors
}

/// An error and all its sources, joined by ": ".
pub fn chain(e: &dyn Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(src) = cur {
        s.push_str(": ");
        s.push_str(&src.to_string());
        cur = src.source();
    }
    s
}

/// `v` as a string, treating null as "".
pub fn str_of(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

/// Tracks which vectors were checked and which were skipped on purpose (with the reason), and
/// at the end asserts that every vector was one or the other.
pub struct Ledger {
    file: &'static str,
    total: usize,
    checked: Vec<String>,
    skipped: BTreeMap<String, &'static str>,
}

impl Ledger {
    pub fn new(file: &'static str, total: usize) -> Self {
        Self {
            file,
            total,
            checked: Vec::new(),
            skipped: BTreeMap::new(),
        }
    }

    pub fn checked(&mut self, name: &str) {
        self.checked.push(name.to_owned());
    }

    pub fn skipped(&mut self, name: &str, reason: &'static str) {
        assert!(
            self.skipped.insert(name.to_owned(), reason).is_none(),
            "duplicate {name}"
        );
    }

    pub fn finish(self) {
        for (name, reason) in &self.skipped {
            eprintln!("{}: not followed on purpose: {name}: {reason}", self.file);
        }
        eprintln!(
            "{}: {} checked, {} skipped",
            self.file,
            self.checked.len(),
            self.skipped.len()
        );
        assert_eq!(
            self.checked.len() + self.skipped.len(),
            self.total,
            "{}: every vector",
            self.file
        );
    }
}

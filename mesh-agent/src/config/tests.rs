//! Unit tests of the parsers and positions.

#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

use std::path::Path;
use std::time::Instant;

use proptest::prelude::*;

use super::error::{position_at, positions_at};
use super::syntax::{Node, ParseErrorKind, Value};
use super::{AgentConfig, ConfigError, Format, MAX_DEPTH, hcl, json};

/// The tree without spans, for comparing what two texts mean.
#[derive(Debug, PartialEq)]
enum Plain {
    Null,
    Bool(bool),
    Num(String),
    Str(String),
    List(Vec<Plain>),
    Map(Vec<(String, Plain)>),
}

fn plain(n: &Node) -> Plain {
    match &n.value {
        Value::Null => Plain::Null,
        Value::Bool(b) => Plain::Bool(*b),
        Value::Num(s) => Plain::Num(s.clone()),
        Value::Str(s) => Plain::Str(s.clone()),
        Value::List(items) => Plain::List(items.iter().map(plain).collect()),
        Value::Map(entries) => Plain::Map(
            entries
                .iter()
                .map(|e| (e.key.clone(), plain(&e.value)))
                .collect(),
        ),
    }
}

fn map(entries: Vec<(&str, Plain)>) -> Plain {
    Plain::Map(
        entries
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
    )
}

fn s(v: &str) -> Plain {
    Plain::Str(v.to_owned())
}

fn n(v: &str) -> Plain {
    Plain::Num(v.to_owned())
}

#[test]
fn hcl_blocks_attributes_and_the_json_like_form() {
    let text = "a = 1\nb { c = \"x\" d: true, \"e\" = [1, -2.5e3,] }\nf g \"h\" { }\n";
    let tree = plain(&hcl::parse(text).unwrap());
    assert_eq!(
        tree,
        map(vec![
            ("a", n("1")),
            (
                "b",
                map(vec![
                    ("c", s("x")),
                    ("d", Plain::Bool(true)),
                    ("e", Plain::List(vec![n("1"), n("-2.5e3")])),
                ])
            ),
            ("f", map(vec![("g", map(vec![("h", map(vec![]))]))])),
        ])
    );
    // Positions of keys are byte offsets of where they are written.
    let root = hcl::parse(text).unwrap();
    let Value::Map(entries) = &root.value else {
        panic!()
    };
    assert_eq!(entries.iter().map(|e| e.at).collect::<Vec<_>>(), [0, 6, 48]);
}

#[test]
fn hcl_line_ends_comments_heredocs_and_escapes() {
    let text = "a = \"\\U0001F600\\u00e9\\x\"";
    let e = hcl::parse(text).unwrap_err();
    assert!(matches!(&e.kind, ParseErrorKind::Syntax(m) if m.contains("invalid escape")));
    let tree = plain(
        &hcl::parse(
            "a = \"\\U0001F600\\u00e9\\a\"\r\nb = <<EOF\r\nx\r\n  EOF\r\n# c\r\nd = -0x10 /* e */ f = 0\r\n",
        )
        .unwrap(),
    );
    assert_eq!(
        tree,
        map(vec![
            ("a", s("😀é\u{7}")),
            ("b", s("x\n")),
            ("d", n("-16")),
            ("f", n("0")),
        ])
    );
    for bad in [
        "a = <<EOF\nno end",
        "a = <<\nEOF",
        "a = 1x",
        "a = 0x",
        "a = \"\\uD800\"",
        "a = \"\\uDC00\"",
        "a = \"x\ny\"",
        "= 1",
        "a",
        "a =",
        "a = b",
        "a = [1 2]",
        "a { b = 1",
        "}",
    ] {
        assert!(hcl::parse(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn json_is_strict() {
    for bad in [
        "{\"a\": 1,}",
        "{\"a\": [1,]}",
        "{a: 1}",
        "{\"a\": 01}",
        "{\"a\": .5}",
        "{\"a\": 1.}",
        "{\"a\": +1}",
        "{\"a\": 'x'}",
        "{\"a\": \"\t\"}",
        "{\"a\": \"\\x41\"}",
        "{\"a\": tru}",
        "{} // comment",
        "{\"a\": 1} {\"b\": 2}",
        "[{}]",
        "\"x\"",
    ] {
        assert!(json::parse(bad).is_err(), "{bad:?}");
    }
    let tree =
        plain(&json::parse(" {\"a\": null, \"b\": [true, false, -0, 1E+2], \"c\": {}} ").unwrap());
    assert_eq!(
        tree,
        map(vec![
            ("a", Plain::Null),
            (
                "b",
                Plain::List(vec![
                    Plain::Bool(true),
                    Plain::Bool(false),
                    n("-0"),
                    n("1E+2")
                ])
            ),
            ("c", map(vec![])),
        ])
    );
}

#[test]
fn depth_limit_is_exact() {
    // MAX_DEPTH levels below the top level parse; one more does not.
    let ok_hcl = format!("{}{}", "a {".repeat(MAX_DEPTH), "}".repeat(MAX_DEPTH));
    assert!(hcl::parse(&ok_hcl).is_ok());
    let deep_hcl = format!(
        "{}{}",
        "a {".repeat(MAX_DEPTH + 1),
        "}".repeat(MAX_DEPTH + 1)
    );
    assert_eq!(
        hcl::parse(&deep_hcl).unwrap_err().kind,
        ParseErrorKind::TooDeep
    );
    let ok_json = format!(
        "{}{}",
        "{\"a\":".repeat(MAX_DEPTH),
        "{}".to_owned() + &"}".repeat(MAX_DEPTH)
    );
    assert!(json::parse(&ok_json).is_ok());
    let deep_json = format!(
        "{}{}",
        "{\"a\":".repeat(MAX_DEPTH + 1),
        "{}".to_owned() + &"}".repeat(MAX_DEPTH + 1)
    );
    assert_eq!(
        json::parse(&deep_json).unwrap_err().kind,
        ParseErrorKind::TooDeep
    );
    let ok_list = format!("a = {}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
    assert!(hcl::parse(&ok_list).is_ok());
    let labels = format!("{}{{}}", "a ".repeat(MAX_DEPTH));
    assert!(hcl::parse(&labels).is_ok());
    let labels = format!("{}{{}}", "a ".repeat(MAX_DEPTH + 1));
    assert_eq!(
        hcl::parse(&labels).unwrap_err().kind,
        ParseErrorKind::TooDeep
    );
}

#[test]
fn positions_count_lines_and_characters() {
    let text = "ab\néé x\n\nz";
    assert_eq!(position_at(text, 0).to_string(), "1:1");
    assert_eq!(position_at(text, 3).to_string(), "2:1");
    assert_eq!(position_at(text, 8).to_string(), "2:4");
    assert_eq!(position_at(text, 4).to_string(), "2:1"); // inside 'é': its start
    assert_eq!(position_at(text, 100).to_string(), "4:2");
    let offsets = [8, 0, 100, 3, 4, 11];
    let batch = positions_at(text, &offsets);
    for (o, p) in offsets.iter().zip(batch) {
        assert_eq!(p, position_at(text, *o), "offset {o}");
    }
}

/// A JSON object as text, any shape up to a small depth (no nulls: HCL has none).
fn json_text() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(serde_json::Value::from),
        "\\PC{0,12}".prop_map(serde_json::Value::from),
    ];
    let value = leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..5).prop_map(serde_json::Value::from),
            proptest::collection::btree_map("\\PC{0,8}", inner, 0..5)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    });
    proptest::collection::btree_map("\\PC{0,8}", value, 0..6).prop_map(|m| {
        serde_json::to_string_pretty(&serde_json::Value::Object(m.into_iter().collect())).unwrap()
    })
}

proptest! {
    /// HCL reads a JSON document as JSON does (HCL 1 reads `{` documents as JSON), and the
    /// JSON parser agrees with serde_json.
    #[test]
    fn hcl_reads_json_as_json(text in json_text()) {
        let j = json::parse(&text).unwrap();
        let h = hcl::parse(&text).unwrap();
        prop_assert_eq!(plain(&j), plain(&h));
        let reference: serde_json::Value = serde_json::from_str(&text).unwrap();
        prop_assert_eq!(to_serde(&j), reference);
    }

    /// A batch of positions equals positions computed one by one.
    #[test]
    fn batch_positions_agree(text in "[a\n\u{e9}\u{1F600}]{0,40}", offsets in proptest::collection::vec(0usize..60, 0..10)) {
        let batch = positions_at(&text, &offsets);
        for (o, p) in offsets.iter().zip(batch) {
            prop_assert_eq!(p, position_at(&text, *o));
        }
    }
}

fn to_serde(n: &Node) -> serde_json::Value {
    match &n.value {
        Value::Null => serde_json::Value::Null,
        Value::Bool(b) => (*b).into(),
        Value::Num(t) => serde_json::from_str(t).unwrap(),
        Value::Str(t) => t.clone().into(),
        Value::List(items) => items.iter().map(to_serde).collect(),
        Value::Map(entries) => serde_json::Value::Object(
            entries
                .iter()
                .map(|e| (e.key.clone(), to_serde(&e.value)))
                .collect(),
        ),
    }
}

#[test]
fn a_megabyte_is_read_in_linear_time() {
    // Shapes that would be quadratic with a position computed per key or per warning.
    let line = "ui_config { enabled = true }  ports { grpc = 8502 }  node_name = \"n\"\n";
    let many_warnings = line.repeat((super::MAX_FILE_SIZE as usize - 1) / line.len());
    let mut keys = String::new();
    let mut i = 0;
    while keys.len() < super::MAX_FILE_SIZE as usize - 64 {
        keys.push_str(&format!("node_meta {{ k{i} = \"v\" }}\n"));
        i += 1;
    }
    let nested = format!(
        "{}{}",
        "service { name = \"s\" meta = { a = \"b\" } }\n".repeat(10_000),
        "acl { tokens { agent = \"a\" } }\n".repeat(10_000)
    );
    for text in [many_warnings, keys, nested] {
        let started = Instant::now();
        let c = AgentConfig::from_str(&text, Format::Hcl, Path::new("big.hcl")).unwrap();
        assert!(c.warnings.len() <= 3, "one warning per key and file");
        assert!(
            started.elapsed().as_secs() < 20,
            "{:?} for {} bytes",
            started.elapsed(),
            text.len()
        );
    }
    // An error at the very end of a large file.
    let text = format!("{}oops", "a = 1\n".repeat(100_000));
    let e = AgentConfig::from_str(&text, Format::Hcl, Path::new("big.hcl")).unwrap_err();
    assert!(
        matches!(
            e,
            ConfigError::Syntax {
                line: 100_001,
                column: 5,
                ..
            }
        ),
        "{e:?}"
    );
}

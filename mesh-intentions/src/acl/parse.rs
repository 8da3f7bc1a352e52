//! Parsing ACL rules text (HCL v1 syntax, or JSON) into [`Rules`].
//!
//! Consul parses rules with HCL v1, which accepts several attributes on one line
//! (`service "web" { policy = "write" intentions = "read" }`). HCL 2 parsers refuse that form,
//! so this module parses the small HCL subset ACL rules use itself: `name = "string"`
//! attributes, `block "label" { ... }` blocks, `#`, `//` and `/* */` comments, optional commas.
//! Every error carries a 1-based line:column position.
//!
//! JSON (chosen when the first non-blank character is `{`) mirrors HCL:
//! `{"service": {"web": {"policy": "write"}}, "keyring": "deny"}`. Several JSON objects one
//! after another are read as ONE document holding their union (Consul's guide ships a
//! `mesh-gateway-policy.json` written that way); a key set in two of them is a duplicate.
//!
//! Stricter than Consul, on purpose:
//! * a single-valued rule set twice, or the same (block, name) twice, is refused;
//! * unknown keys and attributes are refused with [`RulesError::UnknownKey`] /
//!   [`RulesError::UnknownAttribute`] (Consul silently ignores them, which turns a typo such as
//!   `servce "web" {...}` into a policy that grants nothing without telling anyone);
//! * the deprecated `identity` / `identity_prefix` blocks (discarded by Consul) are refused.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

use super::level::AccessLevel;
use super::rules::{Family, Grant, MatchKind, Rules, SingleRule};

/// Longest rules text accepted, in bytes.
pub const MAX_RULES_LEN: usize = 4 * 1024 * 1024;

/// A 1-based line and column (in characters) in rules text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Position {
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1, counted in characters.
    pub column: usize,
}

impl Position {
    fn at(text: &str, offset: usize) -> Self {
        let offset = offset.min(text.len());
        let before = text.get(..offset).unwrap_or(text);
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
        Self { line, column }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// Renders ` at L:C` or nothing.
struct At(Option<Position>);

impl fmt::Display for At {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(p) => write!(f, " at {p}"),
            None => Ok(()),
        }
    }
}

/// Renders ` for block "name"` or nothing.
struct For<'a>(&'a str, Option<&'a str>);

impl fmt::Display for For<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.1 {
            Some(n) => write!(f, " for {} {:?}", self.0, n),
            None => Ok(()),
        }
    }
}

/// Why rules text was refused. Messages start like Consul's (`Failed to parse ACL rules: ...`,
/// `Invalid service policy: ...`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RulesError {
    /// Malformed HCL or JSON.
    #[error("Failed to parse ACL rules: {message}{}", At(*position))]
    Syntax {
        /// What is wrong.
        message: String,
        /// Where (always set for HCL; set for JSON when the JSON parser knows it).
        position: Option<Position>,
    },
    /// The text is longer than [`MAX_RULES_LEN`].
    #[error("Failed to parse ACL rules: rules text is {len} bytes, the limit is {MAX_RULES_LEN}")]
    TooLong {
        /// The length seen.
        len: usize,
    },
    /// A single-valued rule or a block attribute was set twice.
    #[error(
        "Failed to parse ACL rules: The argument {key:?}{} was already set. Each argument can only be defined once",
        At(*position)
    )]
    DuplicateKey {
        /// The key set twice.
        key: String,
        /// Where the second occurrence is.
        position: Option<Position>,
    },
    /// The same block and name appears twice (`service "web"` twice).
    #[error("Failed to parse ACL rules: {block} {name:?}{} is defined more than once", At(*position))]
    DuplicateRule {
        /// The block name (`service_prefix`).
        block: String,
        /// The repeated name.
        name: String,
        /// Where the second occurrence is.
        position: Option<Position>,
    },
    /// A top-level key that is no ACL resource (Consul ignores these; mesh refuses them).
    #[error("Failed to parse ACL rules: unknown rule {key:?}{}", At(*position))]
    UnknownKey {
        /// The key.
        key: String,
        /// Where it is.
        position: Option<Position>,
    },
    /// An attribute a block does not have (only `policy`, plus `intentions` for services).
    #[error("Failed to parse ACL rules: unknown attribute {attribute:?} in {block} {name:?}{}", At(*position))]
    UnknownAttribute {
        /// The block name.
        block: String,
        /// The block's label.
        name: String,
        /// The unknown attribute.
        attribute: String,
        /// Where it is.
        position: Option<Position>,
    },
    /// A value of the wrong shape (a block where a string is needed, a number, a list...).
    #[error("Failed to parse ACL rules: {key:?} must be {expected}, found {found}{}", At(*position))]
    WrongType {
        /// The key whose value is wrong.
        key: String,
        /// What is needed.
        expected: &'static str,
        /// What was found.
        found: &'static str,
        /// Where it is.
        position: Option<Position>,
    },
    /// A block without exactly one name label (`service { ... }`, `service "a" "b" { ... }`).
    #[error("Failed to parse ACL rules: block {block:?} needs exactly one name, found {labels}{}", At(*position))]
    BadLabels {
        /// The block name.
        block: String,
        /// How many labels it had.
        labels: usize,
        /// Where it is.
        position: Option<Position>,
    },
    /// A level that is not valid for the rule (`Invalid service policy: "nope" ...`).
    #[error("Invalid {rule} policy: {value:?}{}{}", For(rule, name.as_deref()), At(*position))]
    InvalidLevel {
        /// The rule (`service`, `service_prefix intentions`, `acl`).
        rule: String,
        /// The block's name, for named rules.
        name: Option<String>,
        /// The refused value.
        value: String,
        /// Where it is.
        position: Option<Position>,
    },
    /// A block without its `policy` attribute.
    #[error("Invalid {block} policy: missing \"policy\" for {block} {name:?}{}", At(*position))]
    MissingPolicy {
        /// The block name.
        block: String,
        /// The block's label.
        name: String,
        /// Where the block is.
        position: Option<Position>,
    },
}

/// Parses rules text: JSON when the first non-blank character is `{`, else HCL. Empty text is
/// an empty rule set. Never panics.
pub fn parse_rules(text: &str) -> Result<Rules, RulesError> {
    if text.len() > MAX_RULES_LEN {
        return Err(RulesError::TooLong { len: text.len() });
    }
    if text.trim_start().starts_with('{') {
        parse_json(text)
    } else {
        parse_hcl(text)
    }
}

/// Parses HCL rules text (the HCL v1 subset described in the module docs).
pub fn parse_hcl(text: &str) -> Result<Rules, RulesError> {
    if text.len() > MAX_RULES_LEN {
        return Err(RulesError::TooLong { len: text.len() });
    }
    let items = HclParser::new(text).document()?;
    build(items)
}

/// Parses JSON rules text: one object, or several objects one after another (their union).
pub fn parse_json(text: &str) -> Result<Rules, RulesError> {
    if text.len() > MAX_RULES_LEN {
        return Err(RulesError::TooLong { len: text.len() });
    }
    let mut items = Vec::new();
    let stream = serde_json::Deserializer::from_str(text).into_iter::<JsonNode>();
    let mut docs = 0usize;
    for doc in stream {
        let doc = doc.map_err(|e| RulesError::Syntax {
            message: json_message(&e),
            position: (e.line() > 0).then_some(Position {
                line: e.line(),
                column: e.column(),
            }),
        })?;
        docs += 1;
        let JsonNode::Object(entries) = doc else {
            return Err(RulesError::Syntax {
                message: format!(
                    "a rules document must be a JSON object, found {}",
                    doc.kind()
                ),
                position: None,
            });
        };
        for (key, value) in entries {
            json_items(key, value, &mut items)?;
        }
    }
    if docs == 0 {
        return Err(RulesError::Syntax {
            message: "empty JSON document".to_owned(),
            position: None,
        });
    }
    build(items)
}

fn json_message(e: &serde_json::Error) -> String {
    // serde_json appends " at line L column C"; the position is kept separately.
    let s = e.to_string();
    match s.rfind(" at line ") {
        Some(i) => s[..i].to_owned(),
        None => s,
    }
}

// ---------------------------------------------------------------------------------------------
// The raw document shared by both syntaxes.

#[derive(Debug)]
enum RawValue {
    Str(String),
    Other(&'static str),
}

impl RawValue {
    fn kind(&self) -> &'static str {
        match self {
            Self::Str(_) => "a string",
            Self::Other(k) => k,
        }
    }
}

#[derive(Debug)]
struct RawAttr {
    key: String,
    value: RawValue,
    pos: Option<Position>,
}

#[derive(Debug)]
enum RawItem {
    Attr(RawAttr),
    Block {
        ident: String,
        labels: Vec<String>,
        attrs: Vec<RawAttr>,
        pos: Option<Position>,
    },
}

fn build(items: Vec<RawItem>) -> Result<Rules, RulesError> {
    let mut rules = Rules::new();
    for item in items {
        match item {
            RawItem::Attr(attr) => {
                let Some(single) = SingleRule::from_name(&attr.key) else {
                    if Family::from_block_name(&attr.key).is_some() {
                        return Err(RulesError::WrongType {
                            key: attr.key,
                            expected: "a block with a name",
                            found: attr.value.kind(),
                            position: attr.pos,
                        });
                    }
                    return Err(RulesError::UnknownKey {
                        key: attr.key,
                        position: attr.pos,
                    });
                };
                let RawValue::Str(value) = attr.value else {
                    return Err(RulesError::WrongType {
                        key: attr.key,
                        expected: "a string",
                        found: attr.value.kind(),
                        position: attr.pos,
                    });
                };
                if value.is_empty() {
                    // "" means unset, but still counts for the duplicate check.
                    if rules.single(single).is_some() {
                        return Err(RulesError::DuplicateKey {
                            key: attr.key,
                            position: attr.pos,
                        });
                    }
                    continue;
                }
                let level = AccessLevel::parse(&value)
                    .filter(|l| *l != AccessLevel::List)
                    .ok_or_else(|| RulesError::InvalidLevel {
                        rule: single.as_str().to_owned(),
                        name: None,
                        value: value.clone(),
                        position: attr.pos,
                    })?;
                rules.set_single(single, level).map_err(|e| match e {
                    RulesError::DuplicateKey { key, .. } => RulesError::DuplicateKey {
                        key,
                        position: attr.pos,
                    },
                    other => other,
                })?;
            }
            RawItem::Block {
                ident,
                labels,
                attrs,
                pos,
            } => {
                let Some((family, kind)) = Family::from_block_name(&ident) else {
                    if SingleRule::from_name(&ident).is_some() {
                        return Err(RulesError::WrongType {
                            key: ident,
                            expected: "a string",
                            found: "a block",
                            position: pos,
                        });
                    }
                    return Err(RulesError::UnknownKey {
                        key: ident,
                        position: pos,
                    });
                };
                let [name] =
                    <[String; 1]>::try_from(labels).map_err(|l| RulesError::BadLabels {
                        block: ident.clone(),
                        labels: l.len(),
                        position: pos,
                    })?;
                let grant = block_grant(family, kind, &name, attrs, pos)?;
                rules.add_at(family, kind, name, grant, pos)?;
            }
        }
    }
    Ok(rules)
}

fn block_grant(
    family: Family,
    kind: MatchKind,
    name: &str,
    attrs: Vec<RawAttr>,
    pos: Option<Position>,
) -> Result<Grant, RulesError> {
    let block = family.block_name(kind);
    let mut policy: Option<(String, Option<Position>)> = None;
    let mut intentions: Option<(String, Option<Position>)> = None;
    for attr in attrs {
        let slot = match attr.key.as_str() {
            "policy" => &mut policy,
            "intentions" if family == Family::Service => &mut intentions,
            _ => {
                return Err(RulesError::UnknownAttribute {
                    block: block.to_owned(),
                    name: name.to_owned(),
                    attribute: attr.key,
                    position: attr.pos,
                });
            }
        };
        if slot.is_some() {
            return Err(RulesError::DuplicateKey {
                key: attr.key,
                position: attr.pos,
            });
        }
        let RawValue::Str(v) = attr.value else {
            return Err(RulesError::WrongType {
                key: attr.key,
                expected: "a string",
                found: attr.value.kind(),
                position: attr.pos,
            });
        };
        *slot = Some((v, attr.pos));
    }
    let Some((policy_text, policy_pos)) = policy else {
        return Err(RulesError::MissingPolicy {
            block: block.to_owned(),
            name: name.to_owned(),
            position: pos,
        });
    };
    let policy = AccessLevel::parse(&policy_text)
        .filter(|l| *l != AccessLevel::List || family.allows_list())
        .ok_or_else(|| RulesError::InvalidLevel {
            rule: block.to_owned(),
            name: Some(name.to_owned()),
            value: policy_text.clone(),
            position: policy_pos,
        })?;
    let intentions = match intentions {
        None => None,
        Some((t, _)) if t.is_empty() => None,
        Some((t, p)) => Some(
            AccessLevel::parse(&t)
                .filter(|l| *l != AccessLevel::List)
                .ok_or_else(|| RulesError::InvalidLevel {
                    rule: format!("{block} intentions"),
                    name: Some(name.to_owned()),
                    value: t.clone(),
                    position: p,
                })?,
        ),
    };
    Ok(Grant { policy, intentions })
}

// ---------------------------------------------------------------------------------------------
// JSON

/// A JSON value that keeps every object entry in order, duplicates included.
#[derive(Debug)]
enum JsonNode {
    Str(String),
    Object(Vec<(String, JsonNode)>),
    Other(&'static str),
}

impl JsonNode {
    fn kind(&self) -> &'static str {
        match self {
            Self::Str(_) => "a string",
            Self::Object(_) => "an object",
            Self::Other(k) => k,
        }
    }
}

impl<'de> Deserialize<'de> for JsonNode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = JsonNode;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<JsonNode, E> {
        Ok(JsonNode::Str(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<JsonNode, E> {
        Ok(JsonNode::Str(v))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<JsonNode, E> {
        Ok(JsonNode::Other("a boolean"))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<JsonNode, E> {
        Ok(JsonNode::Other("a number"))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<JsonNode, E> {
        Ok(JsonNode::Other("a number"))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<JsonNode, E> {
        Ok(JsonNode::Other("a number"))
    }
    fn visit_unit<E: de::Error>(self) -> Result<JsonNode, E> {
        Ok(JsonNode::Other("null"))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<JsonNode, A::Error> {
        // Consume (serde_json bounds the nesting depth), keep nothing.
        while seq.next_element::<de::IgnoredAny>()?.is_some() {}
        Ok(JsonNode::Other("a list"))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<JsonNode, A::Error> {
        let mut entries = Vec::new();
        while let Some((k, v)) = map.next_entry::<String, JsonNode>()? {
            entries.push((k, v));
        }
        Ok(JsonNode::Object(entries))
    }
}

fn json_items(key: String, value: JsonNode, out: &mut Vec<RawItem>) -> Result<(), RulesError> {
    match value {
        JsonNode::Str(s) => out.push(RawItem::Attr(RawAttr {
            key,
            value: RawValue::Str(s),
            pos: None,
        })),
        JsonNode::Other(k) => out.push(RawItem::Attr(RawAttr {
            key,
            value: RawValue::Other(k),
            pos: None,
        })),
        JsonNode::Object(entries) => {
            if Family::from_block_name(&key).is_none() {
                if SingleRule::from_name(&key).is_some() {
                    return Err(RulesError::WrongType {
                        key,
                        expected: "a string",
                        found: "an object",
                        position: None,
                    });
                }
                return Err(RulesError::UnknownKey {
                    key,
                    position: None,
                });
            }
            // `{"service": {"a": {...}, "b": {...}}}` is one block per name.
            for (name, body) in entries {
                let JsonNode::Object(attrs) = body else {
                    return Err(RulesError::WrongType {
                        key: format!("{key}.{name}"),
                        expected: "an object",
                        found: body.kind(),
                        position: None,
                    });
                };
                let attrs = attrs
                    .into_iter()
                    .map(|(k, v)| RawAttr {
                        key: k,
                        value: match v {
                            JsonNode::Str(s) => RawValue::Str(s),
                            other => RawValue::Other(other.kind()),
                        },
                        pos: None,
                    })
                    .collect();
                out.push(RawItem::Block {
                    ident: key.clone(),
                    labels: vec![name],
                    attrs,
                    pos: None,
                });
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// HCL (v1 subset)

#[derive(Debug, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Eq,
    LBrace,
    RBrace,
    Comma,
    Other(&'static str),
    Eof,
}

impl Tok {
    fn describe(&self) -> String {
        match self {
            Self::Ident(s) => format!("identifier {s:?}"),
            Self::Str(_) => "a string".to_owned(),
            Self::Eq => "'='".to_owned(),
            Self::LBrace => "'{'".to_owned(),
            Self::RBrace => "'}'".to_owned(),
            Self::Comma => "','".to_owned(),
            Self::Other(k) => (*k).to_owned(),
            Self::Eof => "end of input".to_owned(),
        }
    }
}

struct HclParser<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> HclParser<'a> {
    fn new(text: &'a str) -> Self {
        Self {
            text,
            bytes: text.as_bytes(),
            pos: 0,
        }
    }

    fn position(&self, offset: usize) -> Option<Position> {
        Some(Position::at(self.text, offset))
    }

    fn syntax(&self, offset: usize, message: impl Into<String>) -> RulesError {
        RulesError::Syntax {
            message: message.into(),
            position: self.position(offset),
        }
    }

    fn document(mut self) -> Result<Vec<RawItem>, RulesError> {
        let mut items = Vec::new();
        loop {
            let (tok, at) = self.next()?;
            match tok {
                Tok::Eof => return Ok(items),
                Tok::Comma => continue,
                Tok::Ident(key) | Tok::Str(key) => items.push(self.item(key, at)?),
                other => {
                    return Err(self.syntax(
                        at,
                        format!("expected a rule name, found {}", other.describe()),
                    ));
                }
            }
        }
    }

    /// After the first key of an item: `= value` or `label* { body }`.
    fn item(&mut self, key: String, key_at: usize) -> Result<RawItem, RulesError> {
        let mut labels = Vec::new();
        loop {
            let (tok, at) = self.next()?;
            match tok {
                Tok::Eq if labels.is_empty() => {
                    let value = self.value(&key, key_at)?;
                    return Ok(RawItem::Attr(RawAttr {
                        key,
                        value,
                        pos: self.position(key_at),
                    }));
                }
                Tok::Ident(l) | Tok::Str(l) => labels.push(l),
                Tok::LBrace => {
                    let attrs = self.block_body()?;
                    return Ok(RawItem::Block {
                        ident: key,
                        labels,
                        attrs,
                        pos: self.position(key_at),
                    });
                }
                other => {
                    return Err(self.syntax(
                        at,
                        format!(
                            "expected '=' or '{{' after {key:?}, found {}",
                            other.describe()
                        ),
                    ));
                }
            }
        }
    }

    fn block_body(&mut self) -> Result<Vec<RawAttr>, RulesError> {
        let mut attrs = Vec::new();
        loop {
            let (tok, at) = self.next()?;
            match tok {
                Tok::RBrace => return Ok(attrs),
                Tok::Comma => continue,
                Tok::Ident(key) | Tok::Str(key) => {
                    let (eq, eq_at) = self.next()?;
                    match eq {
                        Tok::Eq => {}
                        Tok::LBrace => {
                            return Err(RulesError::WrongType {
                                key,
                                expected: "a string",
                                found: "a block",
                                position: self.position(at),
                            });
                        }
                        other => {
                            return Err(self.syntax(
                                eq_at,
                                format!("expected '=' after {key:?}, found {}", other.describe()),
                            ));
                        }
                    }
                    let value = self.value(&key, at)?;
                    attrs.push(RawAttr {
                        key,
                        value,
                        pos: self.position(at),
                    });
                }
                Tok::Eof => return Err(self.syntax(at, "unclosed block: expected '}'")),
                other => {
                    return Err(self.syntax(
                        at,
                        format!(
                            "expected an attribute name or '}}', found {}",
                            other.describe()
                        ),
                    ));
                }
            }
        }
    }

    /// The value of attribute `key`. Objects and lists are refused here, before their
    /// contents could confuse the rest of the parse.
    fn value(&mut self, key: &str, key_at: usize) -> Result<RawValue, RulesError> {
        let (tok, at) = self.next()?;
        let nested = |found| RulesError::WrongType {
            key: key.to_owned(),
            expected: if Family::from_block_name(key).is_some() {
                "a block with a name"
            } else {
                "a string"
            },
            found,
            position: Some(Position::at(self.text, key_at)),
        };
        match tok {
            Tok::Str(s) => Ok(RawValue::Str(s)),
            Tok::Ident(i) if i == "true" || i == "false" => Ok(RawValue::Other("a boolean")),
            Tok::Other("a list") => Err(nested("a list")),
            Tok::Other(k) => Ok(RawValue::Other(k)),
            Tok::LBrace => Err(nested("an object")),
            other => Err(self.syntax(at, format!("expected a value, found {}", other.describe()))),
        }
    }

    fn next(&mut self) -> Result<(Tok, usize), RulesError> {
        self.skip_blank()?;
        let start = self.pos;
        let Some(&b) = self.bytes.get(self.pos) else {
            return Ok((Tok::Eof, start));
        };
        let tok =
            match b {
                b'=' => {
                    self.pos += 1;
                    Tok::Eq
                }
                b'{' => {
                    self.pos += 1;
                    Tok::LBrace
                }
                b'}' => {
                    self.pos += 1;
                    Tok::RBrace
                }
                b',' => {
                    self.pos += 1;
                    Tok::Comma
                }
                b'"' => Tok::Str(self.string()?),
                b'[' => {
                    // A list value: it is a type error for every ACL attribute, reported by the
                    // caller; stop here rather than parse it.
                    self.pos += 1;
                    Tok::Other("a list")
                }
                b'<' if self.bytes.get(self.pos + 1) == Some(&b'<') => {
                    return Err(
                        self.syntax(start, "heredoc strings are not supported in ACL rules")
                    );
                }
                b'0'..=b'9' | b'-' | b'.' => {
                    while self.bytes.get(self.pos).is_some_and(|c| {
                        c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'+')
                    }) {
                        self.pos += 1;
                    }
                    Tok::Other("a number")
                }
                c if c.is_ascii_alphabetic() || c == b'_' => {
                    while self.bytes.get(self.pos).is_some_and(|c| {
                        c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.')
                    }) {
                        self.pos += 1;
                    }
                    Tok::Ident(
                        self.text
                            .get(start..self.pos)
                            .unwrap_or_default()
                            .to_owned(),
                    )
                }
                _ => {
                    let c = self
                        .text
                        .get(start..)
                        .and_then(|s| s.chars().next())
                        .unwrap_or('?');
                    return Err(self.syntax(start, format!("unexpected character {c:?}")));
                }
            };
        Ok((tok, start))
    }

    fn skip_blank(&mut self) -> Result<(), RulesError> {
        loop {
            match self.bytes.get(self.pos) {
                Some(b' ' | b'\t' | b'\r' | b'\n') => self.pos += 1,
                Some(b'#') => self.skip_line(),
                Some(b'/') if self.bytes.get(self.pos + 1) == Some(&b'/') => self.skip_line(),
                Some(b'/') if self.bytes.get(self.pos + 1) == Some(&b'*') => {
                    let start = self.pos;
                    let rest = self.text.get(self.pos + 2..).unwrap_or_default();
                    match rest.find("*/") {
                        Some(end) => self.pos += 2 + end + 2,
                        None => return Err(self.syntax(start, "unterminated comment")),
                    }
                }
                _ => return Ok(()),
            }
        }
    }

    fn skip_line(&mut self) {
        while self.bytes.get(self.pos).is_some_and(|b| *b != b'\n') {
            self.pos += 1;
        }
    }

    /// A double-quoted string with `\"`, `\\`, `\/`, `\n`, `\r`, `\t`, `\uXXXX` and
    /// `\UXXXXXXXX` escapes. A raw newline ends it with an error, as in HCL v1.
    fn string(&mut self) -> Result<String, RulesError> {
        let start = self.pos;
        self.pos += 1; // opening quote
        let mut out = String::new();
        loop {
            let rest = self.text.get(self.pos..).unwrap_or_default();
            let Some(c) = rest.chars().next() else {
                return Err(self.syntax(start, "unterminated string"));
            };
            match c {
                '"' => {
                    self.pos += 1;
                    return Ok(out);
                }
                '\n' => return Err(self.syntax(self.pos, "newline in string")),
                '\\' => {
                    let esc_at = self.pos;
                    let Some(e) = rest.get(1..).and_then(|r| r.chars().next()) else {
                        return Err(self.syntax(start, "unterminated string"));
                    };
                    self.pos += 1 + e.len_utf8();
                    match e {
                        '"' => out.push('"'),
                        '\\' => out.push('\\'),
                        '/' => out.push('/'),
                        'n' => out.push('\n'),
                        'r' => out.push('\r'),
                        't' => out.push('\t'),
                        'u' | 'U' => {
                            let n = if e == 'u' { 4 } else { 8 };
                            let hex = self.text.get(self.pos..self.pos + n).unwrap_or_default();
                            let ch = (hex.len() == n && hex.bytes().all(|b| b.is_ascii_hexdigit()))
                                .then(|| u32::from_str_radix(hex, 16).ok())
                                .flatten()
                                .and_then(char::from_u32)
                                .ok_or_else(|| self.syntax(esc_at, "invalid unicode escape"))?;
                            self.pos += n;
                            out.push(ch);
                        }
                        other => {
                            return Err(self.syntax(esc_at, format!("invalid escape \\{other}")));
                        }
                    }
                }
                c => {
                    self.pos += c.len_utf8();
                    out.push(c);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hcl_errors_carry_line_and_column() {
        let err =
            parse_rules("acl = \"read\"\nservice \"web\" {\n  policy = \"nope\"\n}\n").unwrap_err();
        assert!(matches!(
            err,
            RulesError::InvalidLevel {
                position: Some(Position { line: 3, column: 3 }),
                ..
            }
        ));
        assert_eq!(
            err.to_string(),
            "Invalid service policy: \"nope\" for service \"web\" at 3:3"
        );
        let err = parse_rules("acl = \"read\"\nacl = \"write\"").unwrap_err();
        assert_eq!(
            err.to_string(),
            "Failed to parse ACL rules: The argument \"acl\" at 2:1 was already set. Each argument can only be defined once"
        );
        let err = parse_rules("service \"web\" {\n policy = \"read\"\n").unwrap_err();
        assert!(
            matches!(
                err,
                RulesError::Syntax {
                    position: Some(Position { line: 3, .. }),
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn unknown_keys_and_attributes_are_refused() {
        assert!(matches!(
            parse_rules("servce \"web\" { policy = \"read\" }"),
            Err(RulesError::UnknownKey { key, .. }) if key == "servce"
        ));
        assert!(matches!(
            parse_rules("node \"n\" { policy = \"read\" intentions = \"read\" }"),
            Err(RulesError::UnknownAttribute { attribute, .. }) if attribute == "intentions"
        ));
        assert!(matches!(
            parse_rules("{\"identity\": {\"x\": {\"policy\": \"read\"}}}"),
            Err(RulesError::UnknownKey { .. })
        ));
    }

    #[test]
    fn wrong_shapes_are_refused() {
        for text in [
            "acl = 1",
            "acl = [\"read\"]",
            "acl { policy = \"read\" }",
            "service = \"web\"",
            "service \"a\" \"b\" { policy = \"read\" }",
            "service { policy = \"read\" }",
            "service \"web\" { policy = true }",
            "{\"service\": {\"web\": \"read\"}}",
            "{\"acl\": {\"x\": 1}}",
            "[1]",
            "{\"acl\": \"read\"} [1]",
            "acl = \"read",
            "acl = <<EOF\nread\nEOF",
            "/* open",
            "acl = \"\\q\"",
            "acl = \"\\u12\"",
        ] {
            assert!(parse_rules(text).is_err(), "{text:?} must be refused");
        }
    }

    #[test]
    fn comments_commas_and_escapes() {
        let r = parse_rules(
            "# c\n// c\n/* c */ key_prefix \"a\\u0041\\\"\" { policy = \"list\", }, operator = \"read\"",
        )
        .unwrap();
        assert_eq!(r.single(SingleRule::Operator), Some(AccessLevel::Read));
        assert!(r.get(Family::Key, MatchKind::Prefix, "aA\"").is_some());
    }

    #[test]
    fn concatenated_json_documents_are_one_union() {
        let text = "{\n\"node_prefix\": {\n\"\": {\n\"policy\": \"read\"\n}\n}\n}\n{\n\"service_prefix\": {\n\"\": {\n\"policy\": \"read\"\n}\n}\n}\n{\n\"service\": {\n\"mesh-gateway\": {\n\"policy\": \"write\"\n}\n}\n}\n";
        let r = parse_rules(text).unwrap();
        assert_eq!(r.named_len(), 3);
        assert!(matches!(
            parse_rules("{\"acl\":\"read\"}{\"acl\":\"read\"}"),
            Err(RulesError::DuplicateKey { .. })
        ));
        assert!(matches!(
            parse_rules("{\"acl\":\"read\",\"acl\":\"read\"}"),
            Err(RulesError::DuplicateKey { .. })
        ));
    }
}

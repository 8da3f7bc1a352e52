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
// The error types live with `Rules` (whose methods return them too), so that this module
// depends on `rules` and not the other way round; they are re-exported from here as before.
pub use super::rules::{MAX_RULES_LEN, Position, RulesError};

impl Position {
    /// The position of byte `offset` in `text`. Scans the text up to `offset`: call it only
    /// when an error is reported, never per item (that made parsing quadratic).
    fn at(text: &str, offset: usize) -> Self {
        let offset = offset.min(text.len());
        let before = text.get(..offset).unwrap_or(text);
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
        Self { line, column }
    }
}

/// Turns the byte offsets kept in the raw document into positions, lazily: only an error
/// pays for one (a single scan of the text), so parsing stays linear in the text.
#[derive(Clone, Copy)]
struct Locate<'a>(&'a str);

impl Locate<'_> {
    fn at(self, offset: Option<usize>) -> Option<Position> {
        offset.map(|o| Position::at(self.0, o))
    }
}

impl Rules {
    /// Parses rules text: JSON when the first non-blank character is `{`, else HCL.
    /// See [`crate::acl::parse_rules`].
    pub fn parse(text: &str) -> Result<Self, RulesError> {
        parse_rules(text)
    }
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
    build(Locate(text), items)
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
    // JSON items carry no offsets: serde_json reports positions of syntax errors only.
    build(Locate(text), items)
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

/// Items keep the byte offset where they start (`None` for JSON), not a [`Position`]:
/// [`Locate`] turns it into one only for an error.
#[derive(Debug)]
struct RawAttr {
    key: String,
    value: RawValue,
    at: Option<usize>,
}

#[derive(Debug)]
enum RawItem {
    Attr(RawAttr),
    Block {
        ident: String,
        labels: Vec<String>,
        attrs: Vec<RawAttr>,
        at: Option<usize>,
    },
}

fn build(loc: Locate<'_>, items: Vec<RawItem>) -> Result<Rules, RulesError> {
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
                            position: loc.at(attr.at),
                        });
                    }
                    return Err(RulesError::UnknownKey {
                        key: attr.key,
                        position: loc.at(attr.at),
                    });
                };
                let RawValue::Str(value) = attr.value else {
                    return Err(RulesError::WrongType {
                        key: attr.key,
                        expected: "a string",
                        found: attr.value.kind(),
                        position: loc.at(attr.at),
                    });
                };
                if value.is_empty() {
                    // "" means unset, but still counts for the duplicate check.
                    if rules.single(single).is_some() {
                        return Err(RulesError::DuplicateKey {
                            key: attr.key,
                            position: loc.at(attr.at),
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
                        position: loc.at(attr.at),
                    })?;
                rules.set_single(single, level).map_err(|e| match e {
                    RulesError::DuplicateKey { key, .. } => RulesError::DuplicateKey {
                        key,
                        position: loc.at(attr.at),
                    },
                    other => other,
                })?;
            }
            RawItem::Block {
                ident,
                labels,
                attrs,
                at,
            } => {
                let Some((family, kind)) = Family::from_block_name(&ident) else {
                    if SingleRule::from_name(&ident).is_some() {
                        return Err(RulesError::WrongType {
                            key: ident,
                            expected: "a string",
                            found: "a block",
                            position: loc.at(at),
                        });
                    }
                    return Err(RulesError::UnknownKey {
                        key: ident,
                        position: loc.at(at),
                    });
                };
                let [name] =
                    <[String; 1]>::try_from(labels).map_err(|l| RulesError::BadLabels {
                        block: ident.clone(),
                        labels: l.len(),
                        position: loc.at(at),
                    })?;
                let grant = block_grant(loc, family, kind, &name, attrs, at)?;
                rules
                    .add(family, kind, name, grant)
                    .map_err(|e| e.located(loc.at(at)))?;
            }
        }
    }
    Ok(rules)
}

fn block_grant(
    loc: Locate<'_>,
    family: Family,
    kind: MatchKind,
    name: &str,
    attrs: Vec<RawAttr>,
    at: Option<usize>,
) -> Result<Grant, RulesError> {
    let block = family.block_name(kind);
    let mut policy: Option<(String, Option<usize>)> = None;
    let mut intentions: Option<(String, Option<usize>)> = None;
    for attr in attrs {
        let slot = match attr.key.as_str() {
            "policy" => &mut policy,
            "intentions" if family == Family::Service => &mut intentions,
            _ => {
                return Err(RulesError::UnknownAttribute {
                    block: block.to_owned(),
                    name: name.to_owned(),
                    attribute: attr.key,
                    position: loc.at(attr.at),
                });
            }
        };
        if slot.is_some() {
            return Err(RulesError::DuplicateKey {
                key: attr.key,
                position: loc.at(attr.at),
            });
        }
        let RawValue::Str(v) = attr.value else {
            return Err(RulesError::WrongType {
                key: attr.key,
                expected: "a string",
                found: attr.value.kind(),
                position: loc.at(attr.at),
            });
        };
        *slot = Some((v, attr.at));
    }
    let Some((policy_text, policy_at)) = policy else {
        return Err(RulesError::MissingPolicy {
            block: block.to_owned(),
            name: name.to_owned(),
            position: loc.at(at),
        });
    };
    let policy = AccessLevel::parse(&policy_text)
        .filter(|l| *l != AccessLevel::List || family.allows_list())
        .ok_or_else(|| RulesError::InvalidLevel {
            rule: block.to_owned(),
            name: Some(name.to_owned()),
            value: policy_text.clone(),
            position: loc.at(policy_at),
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
                    position: loc.at(p),
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
            at: None,
        })),
        JsonNode::Other(k) => out.push(RawItem::Attr(RawAttr {
            key,
            value: RawValue::Other(k),
            at: None,
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
                        at: None,
                    })
                    .collect();
                out.push(RawItem::Block {
                    ident: key.clone(),
                    labels: vec![name],
                    attrs,
                    at: None,
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

    /// The position of `offset`, for an error (see [`Locate`]).
    fn position(&self, offset: usize) -> Option<Position> {
        Locate(self.text).at(Some(offset))
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
                        at: Some(key_at),
                    }));
                }
                Tok::Ident(l) | Tok::Str(l) => labels.push(l),
                Tok::LBrace => {
                    let attrs = self.block_body()?;
                    return Ok(RawItem::Block {
                        ident: key,
                        labels,
                        attrs,
                        at: Some(key_at),
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
                        at: Some(at),
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
            position: self.position(key_at),
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

    /// Error messages, positions included, exactly as they were before positions became lazy
    /// (recorded from the eager implementation).
    #[test]
    fn error_messages_and_positions_are_stable() {
        let cases: &[(&str, &str)] = &[
            (
                "acl = \"read\"\nacl = \"write\"",
                "Failed to parse ACL rules: The argument \"acl\" at 2:1 was already set. Each argument can only be defined once",
            ),
            (
                "acl = \"\"\nacl = \"read\"\n  acl = \"\"",
                "Failed to parse ACL rules: The argument \"acl\" at 3:3 was already set. Each argument can only be defined once",
            ),
            (
                "service \"web\" {\n  policy = \"read\"\n  policy = \"write\"\n}",
                "Failed to parse ACL rules: The argument \"policy\" at 3:3 was already set. Each argument can only be defined once",
            ),
            (
                "service \"web\" { policy = \"read\" }\n\n  service \"web\" { policy = \"write\" }",
                "Failed to parse ACL rules: service \"web\" at 3:3 is defined more than once",
            ),
            (
                "servce \"web\" { policy = \"read\" }",
                "Failed to parse ACL rules: unknown rule \"servce\" at 1:1",
            ),
            (
                "# héllo wörld\n  bogus = \"x\"",
                "Failed to parse ACL rules: unknown rule \"bogus\" at 2:3",
            ),
            (
                "node \"n\" {\n\tpolicy = \"read\"\n\tintentions = \"read\"\n}",
                "Failed to parse ACL rules: unknown attribute \"intentions\" in node \"n\" at 3:2",
            ),
            (
                "node \"n\" { policy = \"read\" colour = \"blue\" }",
                "Failed to parse ACL rules: unknown attribute \"colour\" in node \"n\" at 1:28",
            ),
            (
                "service = \"web\"",
                "Failed to parse ACL rules: \"service\" must be a block with a name, found a string at 1:1",
            ),
            (
                "acl { policy = \"read\" }",
                "Failed to parse ACL rules: \"acl\" must be a string, found a block at 1:1",
            ),
            (
                "acl = 1",
                "Failed to parse ACL rules: \"acl\" must be a string, found a number at 1:1",
            ),
            (
                "x\n  acl = [\"read\"]",
                "Failed to parse ACL rules: expected '=' or '{' after \"x\", found '=' at 2:7",
            ),
            (
                "acl = { a = \"b\" }",
                "Failed to parse ACL rules: \"acl\" must be a string, found an object at 1:1",
            ),
            (
                "service \"web\" { policy = true }",
                "Failed to parse ACL rules: \"policy\" must be a string, found a boolean at 1:17",
            ),
            (
                "service \"web\" { policy = 12 }",
                "Failed to parse ACL rules: \"policy\" must be a string, found a number at 1:17",
            ),
            (
                "service \"web\" { sub { } }",
                "Failed to parse ACL rules: \"sub\" must be a string, found a block at 1:17",
            ),
            (
                "service \"a\" \"b\" { policy = \"read\" }",
                "Failed to parse ACL rules: block \"service\" needs exactly one name, found 2 at 1:1",
            ),
            (
                "service { policy = \"read\" }",
                "Failed to parse ACL rules: block \"service\" needs exactly one name, found 0 at 1:1",
            ),
            (
                "operator = \"nope\"",
                "Invalid operator policy: \"nope\" at 1:1",
            ),
            (
                "operator = \"list\"",
                "Invalid operator policy: \"list\" at 1:1",
            ),
            (
                "service \"é\" {\n  policy = \"nope\"\n}",
                "Invalid service policy: \"nope\" for service \"é\" at 2:3",
            ),
            (
                "service \"web\" { policy = \"list\" }",
                "Invalid service policy: \"list\" for service \"web\" at 1:17",
            ),
            (
                "key_prefix \"\" { policy = \"lst\" }",
                "Invalid key_prefix policy: \"lst\" for key_prefix \"\" at 1:17",
            ),
            (
                "service \"web\" {\n policy = \"read\"\n intentions = \"list\"\n}",
                "Invalid service intentions policy: \"list\" for service intentions \"web\" at 3:2",
            ),
            (
                "service \"web\" {\n intentions = \"read\"\n}",
                "Invalid service policy: missing \"policy\" for service \"web\" at 1:1",
            ),
            (
                "/* a\nb */ service \"web\" {\n policy = \"read\"\n",
                "Failed to parse ACL rules: unclosed block: expected '}' at 4:1",
            ),
            (
                "acl = \"read",
                "Failed to parse ACL rules: unterminated string at 1:7",
            ),
            (
                "acl = \"re\nad\"",
                "Failed to parse ACL rules: newline in string at 1:10",
            ),
            (
                "acl = <<EOF\nread\nEOF",
                "Failed to parse ACL rules: heredoc strings are not supported in ACL rules at 1:7",
            ),
            (
                "/* open",
                "Failed to parse ACL rules: unterminated comment at 1:1",
            ),
            (
                "acl = \"\\q\"",
                "Failed to parse ACL rules: invalid escape \\q at 1:8",
            ),
            (
                "acl = \"\\u12\"",
                "Failed to parse ACL rules: invalid unicode escape at 1:8",
            ),
            (
                "acl = \"\\uD800\"",
                "Failed to parse ACL rules: invalid unicode escape at 1:8",
            ),
            (
                "acl = \"read\" }",
                "Failed to parse ACL rules: expected a rule name, found '}' at 1:14",
            ),
            (
                "acl \"read\"",
                "Failed to parse ACL rules: expected '=' or '{' after \"acl\", found end of input at 1:11",
            ),
            (
                "acl = = \"read\"",
                "Failed to parse ACL rules: expected a value, found '=' at 1:7",
            ),
            (
                "service \"web\" { = }",
                "Failed to parse ACL rules: expected an attribute name or '}', found '=' at 1:17",
            ),
            (
                "service \"web\" { policy = }",
                "Failed to parse ACL rules: expected a value, found '}' at 1:26",
            ),
            (
                "service \"web\" { policy \"x\" }",
                "Failed to parse ACL rules: expected '=' after \"policy\", found a string at 1:24",
            ),
            (
                "  ;",
                "Failed to parse ACL rules: unexpected character ';' at 1:3",
            ),
            (
                "é = \"read\"",
                "Failed to parse ACL rules: unexpected character 'é' at 1:1",
            ),
            (
                "service \"web\" { policy = \"read\" }, service \"api\" { policy = \"write\", intentions = \"deny\" } ,acl=\"read\"\n  key \"k\" { policy = \"deny\" } key \"k\" { policy = \"read\" }",
                "Failed to parse ACL rules: key \"k\" at 2:31 is defined more than once",
            ),
            (
                "service \"éé\" { policy = \"read\" bogus = \"1\" }",
                "Failed to parse ACL rules: unknown attribute \"bogus\" in service \"éé\" at 1:32",
            ),
            (
                "key \"ü\" { policy = \"read\" }\r\nkey \"ü\" { policy = \"read\" }",
                "Failed to parse ACL rules: key \"ü\" at 2:1 is defined more than once",
            ),
            (
                "{\"acl\": \"read\",\n \"acl\": \"write\"}",
                "Failed to parse ACL rules: The argument \"acl\" was already set. Each argument can only be defined once",
            ),
            ("{\"acl\": \"nope\"}", "Invalid acl policy: \"nope\""),
            (
                "{\"service\": {\"web\": {\"policy\": \"read\", \"bogus\": \"x\"}}}",
                "Failed to parse ACL rules: unknown attribute \"bogus\" in service \"web\"",
            ),
            (
                "{\"service\": {\"web\": {\"policy\": \"read\"}}}\n{\"service\": {\"web\": {\"policy\": \"write\"}}}",
                "Failed to parse ACL rules: service \"web\" is defined more than once",
            ),
            (
                "{\"acl\": \"read\"\n  \"x\"}",
                "Failed to parse ACL rules: expected `,` or `}` at 2:3",
            ),
        ];
        for (text, want) in cases {
            let got = match parse_rules(text) {
                Ok(r) => format!("OK {}", r.to_json()),
                Err(e) => e.to_string(),
            };
            assert_eq!(&got, want, "{text:?}");
        }
    }

    fn hcl_services(n: usize) -> String {
        (0..n)
            .map(|i| format!("service \"svc-{i}\" {{ policy = \"read\" }}\n"))
            .collect()
    }

    fn json_services(n: usize) -> String {
        let body: Vec<String> = (0..n)
            .map(|i| format!("\"svc-{i}\": {{\"policy\": \"read\"}}"))
            .collect();
        format!("{{\"service\": {{\n{}\n}}}}", body.join(",\n"))
    }

    /// 100,000 rules (about 4 MB, the size limit) parse, every rule kept. Positions used to be
    /// computed by rescanning the text for every item, which took minutes here.
    #[test]
    fn a_100k_rule_policy_parses() {
        let n = 100_000;
        let hcl = hcl_services(n);
        assert!(hcl.len() <= MAX_RULES_LEN);
        let r = parse_rules(&hcl).unwrap();
        assert_eq!(r.named_len(), n);
        let g = r
            .get(Family::Service, MatchKind::Exact, "svc-99999")
            .unwrap();
        assert_eq!(g.policy, AccessLevel::Read);
        let json = json_services(n);
        assert!(json.len() <= MAX_RULES_LEN);
        let j = parse_rules(&json).unwrap();
        assert_eq!(j, r);
    }

    /// An error after many rules still names its exact line and column.
    #[test]
    fn errors_late_in_a_large_policy_have_exact_positions() {
        let n = 20_000;
        let mut hcl = hcl_services(n);
        hcl.push_str("service \"svc-7\" {\n  policy = \"write\"\n}\n");
        assert_eq!(
            parse_rules(&hcl).unwrap_err().to_string(),
            format!(
                "Failed to parse ACL rules: service \"svc-7\" at {}:1 is defined more than once",
                n + 1
            )
        );
        let mut hcl = hcl_services(n);
        hcl.push_str("  service \"ü\" { policy = \"read\" bogus = \"x\" }\n");
        assert_eq!(
            parse_rules(&hcl).unwrap_err().to_string(),
            format!(
                "Failed to parse ACL rules: unknown attribute \"bogus\" in service \"ü\" at {}:33",
                n + 1
            )
        );
        let mut hcl = hcl_services(n);
        hcl.push_str("acl = \"read\"\n\nacl = \"write\"");
        assert!(matches!(
            parse_rules(&hcl),
            Err(RulesError::DuplicateKey { position: Some(Position { line, column: 1 }), .. }) if line == n + 3
        ));
    }
}

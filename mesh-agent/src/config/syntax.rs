//! The document tree both syntaxes parse into, and what the two parsers share.
//!
//! Nodes keep byte offsets, not line/column positions: a position costs a scan of the text,
//! so it is computed only for an error or a warning, which keeps parsing linear.

use super::MAX_DEPTH;

/// A value with the byte span it was read from.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Node {
    pub(super) value: Value,
    /// Byte offset of the first character.
    pub(super) start: usize,
    /// Byte offset just past the last character.
    pub(super) end: usize,
}

/// A value of either syntax.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Value {
    /// JSON `null` (HCL has none).
    Null,
    Bool(bool),
    /// A number, as JSON number text (HCL hex numbers are converted to decimal).
    Num(String),
    Str(String),
    List(Vec<Node>),
    /// An object or block: entries in the order written, repeated keys kept.
    Map(Vec<Entry>),
}

impl Value {
    /// The kind, for "expected X, found Y" messages (never the value itself: it may be a secret).
    pub(super) fn kind(&self) -> &'static str {
        match self {
            Self::Null => "null",
            Self::Bool(_) => "a bool",
            Self::Num(_) => "a number",
            Self::Str(_) => "a string",
            Self::List(_) => "a list",
            Self::Map(_) => "an object",
        }
    }
}

/// `key = value`, `"key": value` or `key { ... }`.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Entry {
    pub(super) key: String,
    /// Byte offset of the key.
    pub(super) at: usize,
    pub(super) value: Node,
}

/// Why a document does not parse, at a byte offset.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct ParseError {
    pub(super) offset: usize,
    pub(super) kind: ParseErrorKind,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) enum ParseErrorKind {
    Syntax(String),
    TooDeep,
}

impl ParseError {
    pub(super) fn syntax(offset: usize, message: impl Into<String>) -> Self {
        Self {
            offset,
            kind: ParseErrorKind::Syntax(message.into()),
        }
    }
}

/// A byte cursor over the text, shared by both parsers.
pub(super) struct Cursor<'a> {
    pub(super) text: &'a str,
    pub(super) bytes: &'a [u8],
    pub(super) pos: usize,
}

impl<'a> Cursor<'a> {
    pub(super) fn new(text: &'a str) -> Self {
        Self {
            text,
            bytes: text.as_bytes(),
            pos: 0,
        }
    }

    pub(super) fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    pub(super) fn peek_at(&self, ahead: usize) -> Option<u8> {
        self.bytes.get(self.pos + ahead).copied()
    }

    /// The character at the cursor, for messages.
    pub(super) fn describe_here(&self) -> String {
        match self.text.get(self.pos..).and_then(|s| s.chars().next()) {
            None => "end of file".to_owned(),
            Some(c) if c.is_control() => format!("character {:?}", c),
            Some(c) => format!("'{c}'"),
        }
    }

    pub(super) fn unexpected(&self, expected: &str) -> ParseError {
        ParseError::syntax(
            self.pos,
            format!("expected {expected}, found {}", self.describe_here()),
        )
    }

    /// Refuses an opening (`{` or `[`) that would make `depth` exceed [`MAX_DEPTH`].
    pub(super) fn check_depth(&self, depth: usize) -> Result<(), ParseError> {
        if depth > MAX_DEPTH {
            return Err(ParseError {
                offset: self.pos,
                kind: ParseErrorKind::TooDeep,
            });
        }
        Ok(())
    }

    /// Reads a double-quoted string; the cursor is on the opening quote. `json` selects JSON's
    /// rules (only JSON escapes, no raw control characters); otherwise HCL's (Go escapes too,
    /// raw tabs allowed, no raw newline).
    pub(super) fn string(&mut self, json: bool) -> Result<String, ParseError> {
        let open = self.pos;
        self.pos += 1;
        let mut out = String::new();
        loop {
            // Copy the run of ordinary characters in one go.
            let run_start = self.pos;
            while let Some(b) = self.peek() {
                if b == b'"' || b == b'\\' || b < 0x20 {
                    break;
                }
                self.pos += 1;
            }
            // The run ends at an ASCII byte or at the end, so it is on a char boundary.
            out.push_str(self.text.get(run_start..self.pos).unwrap_or_default());
            match self.peek() {
                None => return Err(ParseError::syntax(open, "unterminated string")),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => self.escape(json, &mut out)?,
                Some(b'\t') if !json => {
                    out.push('\t');
                    self.pos += 1;
                }
                Some(b'\n') => {
                    return Err(ParseError::syntax(
                        open,
                        "unterminated string (a line ends inside it)",
                    ));
                }
                Some(_) => {
                    return Err(ParseError::syntax(
                        self.pos,
                        format!(
                            "control character {} in a string: escape it",
                            self.describe_here()
                        ),
                    ));
                }
            }
        }
    }

    fn escape(&mut self, json: bool, out: &mut String) -> Result<(), ParseError> {
        let at = self.pos;
        self.pos += 1;
        let Some(c) = self.peek() else {
            return Err(ParseError::syntax(at, "unterminated string"));
        };
        self.pos += 1;
        let simple = match c {
            b'"' => Some('"'),
            b'\\' => Some('\\'),
            b'/' => Some('/'),
            b'b' => Some('\u{8}'),
            b'f' => Some('\u{c}'),
            b'n' => Some('\n'),
            b'r' => Some('\r'),
            b't' => Some('\t'),
            b'a' if !json => Some('\u{7}'),
            b'v' if !json => Some('\u{b}'),
            b'\'' if !json => Some('\''),
            _ => None,
        };
        if let Some(ch) = simple {
            out.push(ch);
            return Ok(());
        }
        match c {
            b'u' => {
                let first = self.hex(4, at)?;
                let code = if (0xD800..0xDC00).contains(&first) {
                    // A high surrogate must be followed by `\u` and a low surrogate.
                    if self.peek() == Some(b'\\') && self.peek_at(1) == Some(b'u') {
                        self.pos += 2;
                        let second = self.hex(4, at)?;
                        if !(0xDC00..0xE000).contains(&second) {
                            return Err(ParseError::syntax(at, "invalid unicode surrogate pair"));
                        }
                        0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
                    } else {
                        return Err(ParseError::syntax(at, "lone unicode surrogate"));
                    }
                } else {
                    first
                };
                let ch = char::from_u32(code)
                    .ok_or_else(|| ParseError::syntax(at, "invalid unicode escape"))?;
                out.push(ch);
                Ok(())
            }
            b'U' if !json => {
                let code = self.hex(8, at)?;
                let ch = char::from_u32(code)
                    .ok_or_else(|| ParseError::syntax(at, "invalid unicode escape"))?;
                out.push(ch);
                Ok(())
            }
            _ if c.is_ascii_graphic() => Err(ParseError::syntax(
                at,
                format!("invalid escape sequence \\{} in a string", char::from(c)),
            )),
            _ => Err(ParseError::syntax(
                at,
                "invalid escape sequence in a string",
            )),
        }
    }

    fn hex(&mut self, digits: usize, at: usize) -> Result<u32, ParseError> {
        let mut v: u32 = 0;
        for _ in 0..digits {
            let d = self
                .peek()
                .and_then(|b| (b as char).to_digit(16))
                .ok_or_else(|| ParseError::syntax(at, "invalid unicode escape"))?;
            v = v.saturating_mul(16).saturating_add(d);
            self.pos += 1;
        }
        Ok(v)
    }

    /// Reads a JSON-grammar number (`-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`) and
    /// returns its text.
    pub(super) fn json_number(&mut self) -> Result<String, ParseError> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => {
                self.pos += 1;
                if self.peek().is_some_and(|b| b.is_ascii_digit()) {
                    return Err(ParseError::syntax(
                        start,
                        "a number may not start with 0 (octal numbers are not supported)",
                    ));
                }
            }
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(self.unexpected("a digit")),
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if !self.peek().is_some_and(|b| b.is_ascii_digit()) {
                return Err(self.unexpected("a digit after '.'"));
            }
            self.digits();
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if !self.peek().is_some_and(|b| b.is_ascii_digit()) {
                return Err(self.unexpected("a digit in the exponent"));
            }
            self.digits();
        }
        Ok(self
            .text
            .get(start..self.pos)
            .unwrap_or_default()
            .to_owned())
    }

    fn digits(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.pos += 1;
        }
    }
}

//! A parser for the HCL (version 1) subset Consul agent configuration uses.
//!
//! Accepted: attributes `key = value`; blocks `key { ... }` and `key "label" { ... }` (the
//! same as `key { "label" { ... } }`); the JSON-like form `"key": value` (Consul's guide writes
//! `connect { "enabled": true }` in HCL files); several attributes on one line, separated by
//! spaces or commas; strings with Go/JSON escapes; heredocs (`<<EOF`, `<<-EOF`); numbers
//! (decimal, with fraction and exponent, or `0x` hex); `true`/`false`; lists `[a, b,]`;
//! objects as values (`key = { ... }`); comments `#`, `//`, `/* */`. A document whose first
//! token is `{` is read as one object, as HCL 1 reads a JSON file.
//!
//! Not accepted: interpolation is not evaluated (`"${x}"` is the literal text, as in Consul),
//! octal numbers, bare identifiers as values.
//!
//! Linear in the text; nesting is bounded by [`MAX_DEPTH`](super::MAX_DEPTH); never panics.

use super::syntax::{Cursor, Entry, Node, ParseError, Value};

/// Parses an HCL document into a root object node.
pub(super) fn parse(text: &str) -> Result<Node, ParseError> {
    let mut c = Cursor::new(text);
    skip_ws(&mut c)?;
    let start = c.pos;
    let entries = if c.peek() == Some(b'{') {
        // The whole document is one object (HCL 1 reads JSON files this way).
        c.pos += 1;
        let entries = body(&mut c, 0, Some(start))?;
        skip_ws(&mut c)?;
        if c.peek().is_some() {
            return Err(c.unexpected("end of file after the object"));
        }
        entries
    } else {
        body(&mut c, 0, None)?
    };
    Ok(Node {
        value: Value::Map(entries),
        start,
        end: c.pos,
    })
}

/// Skips blanks, line ends and comments.
fn skip_ws(c: &mut Cursor<'_>) -> Result<(), ParseError> {
    loop {
        match c.peek() {
            Some(b' ' | b'\t' | b'\n' | b'\r') => c.pos += 1,
            Some(b'#') => skip_line(c),
            Some(b'/') if c.peek_at(1) == Some(b'/') => skip_line(c),
            Some(b'/') if c.peek_at(1) == Some(b'*') => {
                let open = c.pos;
                c.pos += 2;
                loop {
                    match c.peek() {
                        None => return Err(ParseError::syntax(open, "unterminated comment")),
                        Some(b'*') if c.peek_at(1) == Some(b'/') => {
                            c.pos += 2;
                            break;
                        }
                        Some(_) => c.pos += 1,
                    }
                }
            }
            _ => return Ok(()),
        }
    }
}

fn skip_line(c: &mut Cursor<'_>) {
    while let Some(b) = c.peek() {
        if b == b'\n' {
            break;
        }
        c.pos += 1;
    }
}

/// Reads the items of a body at `depth` until `}` (when `open` is the offset of the `{`) or
/// the end of the text (the top level).
fn body(c: &mut Cursor<'_>, depth: usize, open: Option<usize>) -> Result<Vec<Entry>, ParseError> {
    let mut entries = Vec::new();
    loop {
        skip_ws(c)?;
        match c.peek() {
            None => {
                return match open {
                    Some(at) => Err(ParseError::syntax(
                        at,
                        "unclosed '{': expected '}' before the end of the file",
                    )),
                    None => Ok(entries),
                };
            }
            Some(b'}') if open.is_some() => {
                c.pos += 1;
                return Ok(entries);
            }
            Some(_) => {
                entries.push(item(c, depth)?);
                skip_ws(c)?;
                if c.peek() == Some(b',') {
                    c.pos += 1;
                }
            }
        }
    }
}

fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_'
}

fn is_ident_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.')
}

fn ident(c: &mut Cursor<'_>) -> String {
    let start = c.pos;
    while c.peek().is_some_and(is_ident_char) {
        c.pos += 1;
    }
    c.text.get(start..c.pos).unwrap_or_default().to_owned()
}

/// A key: an identifier or a quoted string.
fn key(c: &mut Cursor<'_>) -> Result<String, ParseError> {
    match c.peek() {
        Some(b'"') => c.string(false),
        Some(b) if is_ident_start(b) => Ok(ident(c)),
        _ => Err(c.unexpected("a key")),
    }
}

/// One item of a body: `key = value`, `key: value`, `key { }` or `key "label" ... { }`.
fn item(c: &mut Cursor<'_>, depth: usize) -> Result<Entry, ParseError> {
    let at = c.pos;
    let mut keys = vec![(key(c)?, at)];
    loop {
        skip_ws(c)?;
        match c.peek() {
            Some(b'=' | b':') if keys.len() == 1 => {
                c.pos += 1;
                skip_ws(c)?;
                let v = value(c, depth)?;
                let (key, at) = keys.pop().unwrap_or_default();
                return Ok(Entry { key, at, value: v });
            }
            Some(b'{') => {
                // `a b c { }` is `a { b { c { } } }`: the body sits keys.len() levels down.
                let v = object(c, depth + keys.len())?;
                return Ok(nest(keys, v));
            }
            Some(b'"') => {
                let at = c.pos;
                keys.push((c.string(false)?, at));
            }
            Some(b) if is_ident_start(b) => {
                let at = c.pos;
                keys.push((ident(c), at));
            }
            _ if keys.len() == 1 => return Err(c.unexpected("'=', ':' or '{' after the key")),
            _ => return Err(c.unexpected("'{' after the block labels")),
        }
        // Each label opens one more level: refuse before reading further.
        c.check_depth(depth + keys.len())?;
    }
}

/// Builds `a { b { c = body } }` from the keys of a labelled block.
fn nest(mut keys: Vec<(String, usize)>, mut inner: Node) -> Entry {
    let end = inner.end;
    while keys.len() > 1 {
        let (key, at) = keys.pop().unwrap_or_default();
        inner = Node {
            value: Value::Map(vec![Entry {
                key,
                at,
                value: inner,
            }]),
            start: at,
            end,
        };
    }
    let (key, at) = keys.pop().unwrap_or_default();
    Entry {
        key,
        at,
        value: inner,
    }
}

/// `{ body }` at `depth`; the cursor is on the `{`.
fn object(c: &mut Cursor<'_>, depth: usize) -> Result<Node, ParseError> {
    c.check_depth(depth)?;
    let start = c.pos;
    c.pos += 1;
    let entries = body(c, depth, Some(start))?;
    Ok(Node {
        value: Value::Map(entries),
        start,
        end: c.pos,
    })
}

/// A value whose containers (if it is one) sit at `depth + 1`.
fn value(c: &mut Cursor<'_>, depth: usize) -> Result<Node, ParseError> {
    let start = c.pos;
    let v = match c.peek() {
        Some(b'"') => Value::Str(c.string(false)?),
        Some(b'<') if c.peek_at(1) == Some(b'<') => Value::Str(heredoc(c)?),
        Some(b'{') => return object(c, depth + 1),
        Some(b'[') => Value::List(list(c, depth + 1)?),
        Some(b'-' | b'0'..=b'9') => Value::Num(number(c)?),
        Some(b) if is_ident_start(b) => {
            let word = ident(c);
            match word.as_str() {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                _ => {
                    return Err(ParseError::syntax(
                        start,
                        "expected a value, found an identifier (strings are written in double quotes)",
                    ));
                }
            }
        }
        _ => return Err(c.unexpected("a value")),
    };
    Ok(Node {
        value: v,
        start,
        end: c.pos,
    })
}

fn list(c: &mut Cursor<'_>, depth: usize) -> Result<Vec<Node>, ParseError> {
    c.check_depth(depth)?;
    let open = c.pos;
    c.pos += 1;
    let mut items = Vec::new();
    loop {
        skip_ws(c)?;
        match c.peek() {
            Some(b']') => {
                c.pos += 1;
                return Ok(items);
            }
            None => {
                return Err(ParseError::syntax(
                    open,
                    "unclosed '[': expected ']' before the end of the file",
                ));
            }
            Some(_) => {}
        }
        items.push(value(c, depth)?);
        skip_ws(c)?;
        match c.peek() {
            Some(b',') => c.pos += 1,
            Some(b']') | None => {}
            _ => return Err(c.unexpected("',' or ']' in a list")),
        }
    }
}

/// A number: JSON's grammar, or `0x` hex (converted to decimal). Must end at a delimiter.
fn number(c: &mut Cursor<'_>) -> Result<String, ParseError> {
    let start = c.pos;
    let negative = c.peek() == Some(b'-');
    let hex_at = if negative { 1 } else { 0 };
    let text =
        if c.peek_at(hex_at) == Some(b'0') && matches!(c.peek_at(hex_at + 1), Some(b'x' | b'X')) {
            c.pos += hex_at + 2;
            let digits_start = c.pos;
            while c.peek().is_some_and(|b| b.is_ascii_hexdigit()) {
                c.pos += 1;
            }
            let digits = c.text.get(digits_start..c.pos).unwrap_or_default();
            let v = u64::from_str_radix(digits, 16)
                .map_err(|_| ParseError::syntax(start, "invalid hexadecimal number"))?;
            if negative {
                format!("-{v}")
            } else {
                v.to_string()
            }
        } else {
            c.json_number()?
        };
    if c.peek().is_some_and(is_ident_char) {
        return Err(c.unexpected("a delimiter after the number"));
    }
    Ok(text)
}

/// `<<EOF` ... `EOF` or `<<-EOF` (indented: the common leading blanks are removed). The value
/// ends with a line end, as in HCL 1.
fn heredoc(c: &mut Cursor<'_>) -> Result<String, ParseError> {
    let open = c.pos;
    c.pos += 2;
    let indented = c.peek() == Some(b'-');
    if indented {
        c.pos += 1;
    }
    if !c.peek().is_some_and(is_ident_start) {
        return Err(c.unexpected("a heredoc anchor (such as EOF)"));
    }
    let anchor = ident(c);
    if c.peek() == Some(b'\r') {
        c.pos += 1;
    }
    if c.peek() != Some(b'\n') {
        return Err(c.unexpected("a line end after the heredoc anchor"));
    }
    c.pos += 1;
    let mut lines: Vec<&str> = Vec::new();
    loop {
        if c.pos >= c.bytes.len() {
            return Err(ParseError::syntax(
                open,
                format!("unterminated heredoc: no line holding only {anchor}"),
            ));
        }
        let rest = c.text.get(c.pos..).unwrap_or_default();
        let (line, advance) = match rest.find('\n') {
            Some(i) => (&rest[..i], i + 1),
            None => (rest, rest.len()),
        };
        c.pos += advance;
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.trim() == anchor {
            break;
        }
        lines.push(line);
    }
    let cut = if indented {
        lines
            .iter()
            .filter(|l| !l.trim().is_empty())
            .map(|l| l.len() - l.trim_start_matches([' ', '\t']).len())
            .min()
            .unwrap_or(0)
    } else {
        0
    };
    let mut out = String::new();
    for l in lines {
        // The cut is made of ASCII blanks, so it ends on a char boundary (or the line is shorter).
        out.push_str(l.get(cut..).unwrap_or(""));
        out.push('\n');
    }
    Ok(out)
}

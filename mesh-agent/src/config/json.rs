//! A strict JSON parser (RFC 8259) into the document tree: one object per file, no comments,
//! no trailing commas. Unlike `serde_json::Value` it keeps key order, repeated keys, byte spans
//! (so that service definitions are passed on as the exact text written) and positions for
//! errors, and it refuses nesting deeper than [`MAX_DEPTH`](super::MAX_DEPTH).

use super::syntax::{Cursor, Entry, Node, ParseError, Value};

/// Parses a JSON configuration document: exactly one object, whose entries are returned.
pub(super) fn parse(text: &str) -> Result<Node, ParseError> {
    let mut c = Cursor::new(text);
    skip_ws(&mut c);
    if c.peek().is_none() {
        return Err(ParseError::syntax(
            c.pos,
            "empty document: a JSON configuration file holds one object",
        ));
    }
    if c.peek() != Some(b'{') {
        return Err(c.unexpected("'{' (a JSON configuration file holds one object)"));
    }
    let root = value(&mut c, 0)?;
    skip_ws(&mut c);
    if c.peek().is_some() {
        return Err(c.unexpected("end of file after the object"));
    }
    Ok(root)
}

fn skip_ws(c: &mut Cursor<'_>) {
    while matches!(c.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        c.pos += 1;
    }
}

/// Reads a value whose containers sit at `depth` (the root object is level 0).
fn value(c: &mut Cursor<'_>, depth: usize) -> Result<Node, ParseError> {
    let start = c.pos;
    let v = match c.peek() {
        Some(b'{') => {
            c.check_depth(depth)?;
            c.pos += 1;
            Value::Map(object_body(c, depth)?)
        }
        Some(b'[') => {
            c.check_depth(depth)?;
            c.pos += 1;
            Value::List(list_body(c, depth)?)
        }
        Some(b'"') => Value::Str(c.string(true)?),
        Some(b'-' | b'0'..=b'9') => Value::Num(c.json_number()?),
        Some(b't') => literal(c, "true", Value::Bool(true))?,
        Some(b'f') => literal(c, "false", Value::Bool(false))?,
        Some(b'n') => literal(c, "null", Value::Null)?,
        _ => return Err(c.unexpected("a JSON value")),
    };
    Ok(Node {
        value: v,
        start,
        end: c.pos,
    })
}

fn literal(c: &mut Cursor<'_>, word: &str, v: Value) -> Result<Value, ParseError> {
    if c.bytes.get(c.pos..c.pos + word.len()) == Some(word.as_bytes()) {
        c.pos += word.len();
        Ok(v)
    } else {
        Err(c.unexpected("a JSON value"))
    }
}

fn object_body(c: &mut Cursor<'_>, depth: usize) -> Result<Vec<Entry>, ParseError> {
    let mut entries = Vec::new();
    skip_ws(c);
    if c.peek() == Some(b'}') {
        c.pos += 1;
        return Ok(entries);
    }
    loop {
        skip_ws(c);
        if c.peek() != Some(b'"') {
            return Err(c.unexpected("a key in double quotes"));
        }
        let at = c.pos;
        let key = c.string(true)?;
        skip_ws(c);
        if c.peek() != Some(b':') {
            return Err(c.unexpected("':' after the key"));
        }
        c.pos += 1;
        skip_ws(c);
        let v = value(c, depth + 1)?;
        entries.push(Entry { key, at, value: v });
        skip_ws(c);
        match c.peek() {
            Some(b',') => c.pos += 1,
            Some(b'}') => {
                c.pos += 1;
                return Ok(entries);
            }
            _ => return Err(c.unexpected("',' or '}'")),
        }
    }
}

fn list_body(c: &mut Cursor<'_>, depth: usize) -> Result<Vec<Node>, ParseError> {
    let mut items = Vec::new();
    skip_ws(c);
    if c.peek() == Some(b']') {
        c.pos += 1;
        return Ok(items);
    }
    loop {
        skip_ws(c);
        items.push(value(c, depth + 1)?);
        skip_ws(c);
        match c.peek() {
            Some(b',') => c.pos += 1,
            Some(b']') => {
                c.pos += 1;
                return Ok(items);
            }
            _ => return Err(c.unexpected("',' or ']'")),
        }
    }
}

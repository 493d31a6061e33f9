//! A fast path for reading the plain, block-style YAML that Kubernetes manifests are written in.
//!
//! [`manifest::read_documents`] (libyaml through `serde_yaml`) spends about 60 µs on a typical
//! 1.3 KB pod manifest, more than the whole budget of `hostgate check` (20,000 manifests/s). Most
//! manifests use a small part of YAML: block mappings and sequences, single-line plain and quoted
//! scalars, comments, `{}` and `[]`. [`read_documents`] reads exactly that subset itself, and hands
//! anything else (anchors, tags, block scalars, flow collections, multi-line scalars, tabs,
//! unusual scalars, errors of any kind) to [`manifest::read_documents`], so that results and
//! error messages are always those of the full reader.
//!
//! Why it stays (issue 12, measured with `cargo bench --bench yaml` on this 2-core machine,
//! shared and busy at the time, so compare within a row): reading 1,000 pods shaped like
//! `bench/gen-workload.py`'s into typed objects took 28 ms through this fast path (35,700
//! pods/s), 241 ms with `serde-saphyr` 2.2 straight into the typed `Pod` (4,150/s, 12 %), 564 ms
//! with `serde-saphyr` and the position tree findings need (1,770/s, 5 %), and 113 ms through
//! libyaml into a `Value` and the checked decoder (8,800/s). On the upstream manifests in
//! `tests/data/upstream` (some of which take the full reader) it was 17,000, 3,900 (23 %) and
//! 1,700 documents/s (10 %). No maintained crate with positions comes near the 90 % that would
//! justify deleting this reader; positions come instead from the lines it already splits
//! ([`Parsed::locate`]), for free on clean objects. Typed reading straight from the tree (the
//! second fast path, `check::objects`) pays too: 35,700 against 27,800 pods/s through the
//! path-tracking decoder, which stays the reference for every error. Both fast paths share one
//! tree ([`Node`]) and one `Deserializer`.
//!
//! The rule that keeps this correct: the fast path either produces exactly the value the full
//! reader produces, or gives up. Plain scalars are resolved with `serde_yaml`'s own rules (null,
//! booleans, integers, floats), and any scalar that would become something other than a string,
//! `null`, a boolean or a plain decimal integer makes it give up. The tests compare both readers
//! on generated and mutated documents.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use super::position::{Position, Segment};
use crate::manifest::{self, Document, EXPANSION_FACTOR, MAX_NODES, ReadError};

/// Splits `bytes` into documents like [`manifest::read_documents`], with the same results and
/// errors, faster for plain block-style YAML.
pub fn read_documents(bytes: &[u8]) -> (Vec<Document>, Option<ReadError>) {
    match parse(bytes) {
        Some(docs) => (
            docs.into_iter()
                .map(|d| Document {
                    index: d.index,
                    value: d.node.to_value(),
                })
                .collect(),
            None,
        ),
        None => manifest::read_documents(bytes),
    }
}

/// Deepest nesting the fast path follows (`serde_yaml` stops at 128).
const MAX_DEPTH: usize = 100;
/// Longest implicit key the fast path accepts (libyaml refuses keys over 1024 characters).
const MAX_KEY: usize = 1000;

/// One non-empty document read by the fast path.
#[derive(Debug, Clone, PartialEq)]
pub struct FastDocument<'a> {
    /// 1-based position in the file, counted as [`manifest::read_documents`] counts.
    pub index: usize,
    /// 1-based line of the document's first content line.
    pub line: usize,
    /// The document.
    pub node: Node<'a>,
    /// Its lines in [`Parsed`], for locating fields.
    lines: std::ops::Range<usize>,
}

/// A YAML node that borrows its strings from the text where it can.
///
/// [`Node::to_value`] gives exactly the value [`manifest::read_documents`] gives, and `&Node`
/// is a [`serde::Deserializer`] that makes the same visitor calls as `&serde_json::Value`, so
/// typed objects can be read without building a `Value` first.
#[derive(Debug, Clone, PartialEq)]
pub enum Node<'a> {
    /// `~`, `null`, or nothing.
    Null,
    /// `true` / `false` in their three spellings.
    Bool(bool),
    /// A non-negative decimal integer.
    U64(u64),
    /// A negative decimal integer.
    I64(i64),
    /// A string.
    Str(Cow<'a, str>),
    /// A mapping, in document order, without duplicate keys.
    Map(Vec<(Cow<'a, str>, Node<'a>)>),
    /// A sequence.
    Seq(Vec<Node<'a>>),
}

impl<'a> Node<'a> {
    /// The value [`manifest::read_documents`] reads for this node.
    pub fn to_value(&self) -> Value {
        match self {
            Node::Null => Value::Null,
            Node::Bool(b) => Value::Bool(*b),
            Node::U64(n) => Value::from(*n),
            Node::I64(n) => Value::from(*n),
            Node::Str(s) => Value::String(s.clone().into_owned()),
            Node::Map(entries) => Value::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.clone().into_owned(), v.to_value()))
                    .collect::<Map<String, Value>>(),
            ),
            Node::Seq(items) => Value::Array(items.iter().map(Node::to_value).collect()),
        }
    }

    /// The value of `key` in a mapping.
    pub fn get(&self, key: &str) -> Option<&Node<'a>> {
        match self {
            Node::Map(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Node::Str(s) => Some(s),
            _ => None,
        }
    }
}

/// The documents of `bytes`, or `None` when the fast path does not apply (then
/// [`manifest::read_documents`] must read them).
pub fn parse(bytes: &[u8]) -> Option<Vec<FastDocument<'_>>> {
    parse_file(bytes).map(|p| p.docs)
}

/// A file read by the fast path: its documents, and the lines they were read from (kept so that
/// findings can be located without reading the file again).
#[derive(Debug, Clone)]
pub struct Parsed<'a> {
    /// The non-empty documents.
    pub docs: Vec<FastDocument<'a>>,
    lines: Vec<Line<'a>>,
}

impl Parsed<'_> {
    /// Where `path` is in `doc` (one of [`Parsed::docs`]): the position of its deepest node
    /// that the document has.
    pub fn locate(&self, doc: &FastDocument<'_>, path: &[Segment<'_>]) -> Position {
        let lines = self.lines.get(doc.lines.clone()).unwrap_or(&[]);
        locate_lines(lines, path).unwrap_or(Position {
            line: doc.line,
            column: 1,
        })
    }
}

/// Walks `path` through block-style lines the fast path has accepted, by indentation.
fn locate_lines(lines: &[Line<'_>], path: &[Segment<'_>]) -> Option<Position> {
    let first = lines.first()?;
    let mut at = Position {
        line: first.number,
        column: first.indent + 1,
    };
    // The current node: its lines (lo..hi), its indentation, and for a mapping that starts on
    // a sequence item's line (`- name: x`), that first entry's text, column and line.
    let (mut lo, mut hi, mut indent) = (0, lines.len(), first.indent);
    let mut pending: Option<(&str, usize, usize)> = None;
    let mut leaf = false;
    for segment in path {
        if leaf {
            break;
        }
        match segment {
            Segment::Key(want) => {
                let key_of = |text: &str| match split_key(text) {
                    Split::Key(k, rest) => (k == *want).then_some(rest.is_empty()),
                    _ => None,
                };
                let mut found = None;
                if let Some((text, column, number)) = pending.take()
                    && let Some(block) = key_of(text)
                {
                    found = Some((lo, column, number, block));
                }
                if found.is_none() {
                    found = (lo..hi).find_map(|i| {
                        let l = lines[i];
                        (l.indent == indent && !is_seq_item(l.text))
                            .then(|| key_of(l.text))
                            .flatten()
                            .map(|block| (i + 1, l.indent, l.number, block))
                    });
                }
                let Some((start, column, number, block)) = found else {
                    break;
                };
                at = Position {
                    line: number,
                    column: column + 1,
                };
                if !block {
                    leaf = true;
                    continue;
                }
                let end = (start..hi)
                    .find(|&j| {
                        let l = lines[j];
                        !(l.indent > column || (l.indent == column && is_seq_item(l.text)))
                    })
                    .unwrap_or(hi);
                if start == end {
                    leaf = true;
                    continue;
                }
                (lo, hi, indent) = (start, end, lines[start].indent);
            }
            Segment::Index(n) => {
                pending = None;
                let Some((i, l)) = (lo..hi)
                    .map(|i| (i, lines[i]))
                    .filter(|(_, l)| l.indent == indent && is_seq_item(l.text))
                    .nth(*n)
                else {
                    break;
                };
                let after = &l.text[1..];
                let item = after.trim_start_matches(' ');
                let column = l.indent + 1 + (after.len() - item.len());
                // The item's content, as serde-saphyr places a node.
                at = Position {
                    line: l.number,
                    column: column + 1,
                };
                let end = (i + 1..hi)
                    .find(|&j| lines[j].indent <= indent)
                    .unwrap_or(hi);
                match split_key(item) {
                    Split::Key(..) => {
                        pending = Some((item, column, l.number));
                        (lo, hi, indent) = (i + 1, end, column);
                    }
                    _ => leaf = true,
                }
            }
        }
    }
    Some(at)
}

/// Like [`parse`], keeping the lines for [`Parsed::locate`].
pub fn parse_file(bytes: &[u8]) -> Option<Parsed<'_>> {
    let text = std::str::from_utf8(bytes).ok()?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if !printable(text) {
        return None;
    }
    let first = text.trim_start_matches([' ', '\n', '\r']);
    if first.starts_with(['{', '[']) {
        // JSON, or YAML flow style: the full reader handles both (and JSON quickly).
        return None;
    }
    let budget = MAX_NODES.min(text.len().saturating_mul(EXPANSION_FACTOR).max(1024));
    let lines = split_lines(text)?;

    // Documents: the lines before the first `---` (if there are any), then one per `---`.
    let mut starts: Vec<usize> = Vec::new();
    if lines.first().is_some_and(|l| !l.separator) {
        starts.push(0);
    }
    for (i, l) in lines.iter().enumerate() {
        if l.separator {
            starts.push(i + 1);
        }
    }
    let mut docs = Vec::new();
    for (k, &start) in starts.iter().enumerate() {
        let end = match starts.get(k + 1) {
            Some(next) => next - 1,
            None => lines.len(),
        };
        let body = &lines[start..end];
        if body.is_empty() {
            continue;
        }
        let mut p = Parser {
            lines: body,
            pos: 0,
            nodes: 0,
            budget,
        };
        let node = p.block_node(body[0].indent, 0)?;
        if p.pos != body.len() {
            return None;
        }
        docs.push(FastDocument {
            index: k + 1,
            line: body[0].number,
            node,
            lines: start..end,
        });
    }
    Some(Parsed { docs, lines })
}

/// The 1-based line of the first content line of each document (by document index), found by
/// scanning for `---` separators; used for locations when the fast path does not apply. JSON
/// streams get the line of their first value only.
pub fn document_lines(bytes: &[u8]) -> Vec<Option<usize>> {
    let text = String::from_utf8_lossy(bytes);
    let first_content = text
        .split('\n')
        .position(|l| {
            let t = l.trim();
            !t.is_empty() && !t.starts_with('#')
        })
        .map(|i| i + 1);
    if text.trim_start().starts_with(['{', '[']) {
        return vec![first_content];
    }
    let mut lines: Vec<Option<usize>> = Vec::new();
    let mut open = false;
    for (n, raw) in text.split('\n').enumerate() {
        let t = raw.trim_end();
        if t.starts_with("---") && (t.len() == 3 || t.as_bytes()[3] == b' ') {
            lines.push(None);
            open = true;
            continue;
        }
        let content = t.trim_start();
        if content.is_empty() || content.starts_with('#') {
            continue;
        }
        if !open {
            lines.push(None);
            open = true;
        }
        if let Some(last) = lines.last_mut()
            && last.is_none()
        {
            *last = Some(n + 1);
        }
    }
    lines
}

/// Whether every character is one libyaml reads as printable, with `\n` (or `\r\n`) as the only
/// line breaks and no tabs (which YAML forbids in indentation).
fn printable(text: &str) -> bool {
    let bytes = text.as_bytes();
    let mut ascii = true;
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'\n' | 0x20..=0x7e => {}
            b'\r' if bytes.get(i + 1) == Some(&b'\n') => {}
            0x80..=0xff => ascii = false,
            _ => return false,
        }
    }
    ascii
        || text.chars().all(|c| {
            c.is_ascii()
                || !(('\u{80}'..='\u{9f}').contains(&c)
                    || matches!(
                        c,
                        '\u{2028}' | '\u{2029}' | '\u{feff}' | '\u{fffe}' | '\u{ffff}'
                    ))
        })
}

#[derive(Debug, Clone, Copy)]
struct Line<'a> {
    /// 1-based line number.
    number: usize,
    indent: usize,
    /// Content after the indentation, trailing spaces removed. Never empty, never a comment.
    text: &'a str,
    /// A `---` document separator.
    separator: bool,
}

/// Non-blank, non-comment lines. `None` for document markers the fast path does not handle.
fn split_lines(text: &str) -> Option<Vec<Line<'_>>> {
    let mut out = Vec::with_capacity(text.len() / 16);
    for (n, raw) in text.split('\n').enumerate() {
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        let content = raw.trim_start_matches(' ');
        let indent = raw.len() - content.len();
        let content = content.trim_end_matches(' ');
        if content.is_empty() || content.starts_with('#') {
            continue;
        }
        if indent == 0 {
            if let Some(rest) = content.strip_prefix("---") {
                if rest.is_empty()
                    || (rest.starts_with(' ') && rest.trim_start_matches(' ').starts_with('#'))
                {
                    out.push(Line {
                        number: n + 1,
                        indent,
                        text: content,
                        separator: true,
                    });
                    continue;
                }
                if rest.starts_with(' ') {
                    // `--- value`: content on the separator line.
                    return None;
                }
            }
            if content.starts_with("...") || content.starts_with('%') {
                return None;
            }
        }
        out.push(Line {
            number: n + 1,
            indent,
            text: content,
            separator: false,
        });
    }
    Some(out)
}

struct Parser<'l, 'a> {
    lines: &'l [Line<'a>],
    pos: usize,
    nodes: usize,
    budget: usize,
}

impl<'a> Parser<'_, 'a> {
    fn peek(&self) -> Option<Line<'a>> {
        self.lines.get(self.pos).copied()
    }

    fn count(&mut self) -> Option<()> {
        self.nodes += 1;
        (self.nodes <= self.budget).then_some(())
    }

    /// The block node whose first line is the current line, at `indent`.
    fn block_node(&mut self, indent: usize, depth: usize) -> Option<Node<'a>> {
        if depth > MAX_DEPTH {
            return None;
        }
        let line = self.peek()?;
        if is_seq_item(line.text) {
            self.sequence(indent, depth)
        } else {
            self.mapping(indent, None, depth)
        }
    }

    /// A block mapping at `indent`. `first` is the first entry when it sits on a sequence item's
    /// line (`- name: x`).
    fn mapping(&mut self, indent: usize, first: Option<&'a str>, depth: usize) -> Option<Node<'a>> {
        self.count()?;
        let mut map: Vec<(Cow<'a, str>, Node<'a>)> = Vec::new();
        let mut pending = first;
        loop {
            let text = match pending.take() {
                Some(t) => t,
                None => match self.peek() {
                    None => break,
                    Some(l) if l.indent < indent => break,
                    Some(l) if l.indent > indent || is_seq_item(l.text) => return None,
                    Some(l) => {
                        self.pos += 1;
                        l.text
                    }
                },
            };
            let Split::Key(key, rest) = split_key(text) else {
                return None;
            };
            let value = if rest.is_empty() {
                match self.peek() {
                    Some(l) if l.indent > indent => self.block_node(l.indent, depth + 1)?,
                    Some(l) if l.indent == indent && is_seq_item(l.text) => {
                        self.sequence(indent, depth + 1)?
                    }
                    _ => {
                        self.count()?;
                        Node::Null
                    }
                }
            } else {
                let v = inline_scalar(rest)?;
                self.count()?;
                if self.peek().is_some_and(|l| l.indent > indent) {
                    return None;
                }
                v
            };
            map.push((key, value));
        }
        if has_duplicates(&map) {
            return None;
        }
        Some(Node::Map(map))
    }

    /// A block sequence at `indent`; the current line is its first item.
    fn sequence(&mut self, indent: usize, depth: usize) -> Option<Node<'a>> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.count()?;
        let mut items = Vec::new();
        loop {
            let line = match self.peek() {
                None => break,
                Some(l) if l.indent < indent => break,
                Some(l) if l.indent > indent => return None,
                Some(l) if !is_seq_item(l.text) => break,
                Some(l) => l,
            };
            self.pos += 1;
            let after = &line.text[1..];
            let item = after.trim_start_matches(' ');
            if item.is_empty() || is_seq_item(item) || item.starts_with('#') {
                return None;
            }
            let column = indent + 1 + (after.len() - item.len());
            let value = match split_key(item) {
                Split::Key(..) => self.mapping(column, Some(item), depth + 1)?,
                Split::NotKey => {
                    let v = inline_scalar(item)?;
                    self.count()?;
                    if self.peek().is_some_and(|l| l.indent > indent) {
                        return None;
                    }
                    v
                }
                Split::Bail => return None,
            };
            items.push(value);
        }
        Some(Node::Seq(items))
    }
}

fn is_seq_item(text: &str) -> bool {
    text == "-" || text.starts_with("- ")
}

enum Split<'a> {
    /// `key: rest` (rest empty when the value is on the following lines).
    Key(Cow<'a, str>, &'a str),
    /// A scalar, not a mapping entry.
    NotKey,
    /// Something the fast path does not handle.
    Bail,
}

/// Splits `key: value`.
fn split_key(text: &str) -> Split<'_> {
    let bytes = text.as_bytes();
    match bytes[0] {
        b'"' | b'\'' => {
            let Some((key, end)) = quoted(text) else {
                return Split::Bail;
            };
            let after = text[end..].trim_start_matches(' ');
            if end > MAX_KEY {
                return Split::Bail;
            }
            match after.strip_prefix(':') {
                Some("") => Split::Key(key, ""),
                Some(rest) if rest.starts_with(' ') => Split::Key(key, value_text(rest)),
                Some(_) => Split::Bail,
                None if after.is_empty()
                    || after.starts_with('#') && text[end..].starts_with(' ') =>
                {
                    Split::NotKey
                }
                None => Split::Bail,
            }
        }
        b'?' | b':' | b'-' if bytes.len() == 1 || bytes[1] == b' ' => Split::Bail,
        b'[' | b']' | b'{' | b'}' | b',' | b'&' | b'*' | b'!' | b'|' | b'>' | b'%' | b'@'
        | b'`' | b'#' => Split::NotKey,
        _ => {
            for i in 0..bytes.len() {
                match bytes[i] {
                    b':' if i + 1 == bytes.len() || bytes[i + 1] == b' ' => {
                        let key = text[..i].trim_end_matches(' ');
                        if key.len() > MAX_KEY || !plain_string(key) {
                            return Split::Bail;
                        }
                        return Split::Key(Cow::Borrowed(key), value_text(&text[i + 1..]));
                    }
                    b'#' if i > 0 && bytes[i - 1] == b' ' => return Split::NotKey,
                    _ => {}
                }
            }
            Split::NotKey
        }
    }
}

/// The value text after `:`: leading spaces and a lone comment removed.
fn value_text(rest: &str) -> &str {
    let rest = rest.trim_start_matches(' ');
    if rest.starts_with('#') { "" } else { rest }
}

/// A single-line scalar, or `{}` / `[]`.
fn inline_scalar(text: &str) -> Option<Node<'_>> {
    let bytes = text.as_bytes();
    match bytes[0] {
        b'"' | b'\'' => {
            let (s, end) = quoted(text)?;
            end_of_value(&text[end..])?;
            Some(Node::Str(s))
        }
        b'{' | b'[' => {
            let close = if bytes[0] == b'{' { b'}' } else { b']' };
            if bytes.get(1) != Some(&close) {
                return None;
            }
            end_of_value(&text[2..])?;
            Some(if close == b'}' {
                Node::Map(Vec::new())
            } else {
                Node::Seq(Vec::new())
            })
        }
        b']' | b'}' | b',' | b'&' | b'*' | b'!' | b'|' | b'>' | b'%' | b'@' | b'`' | b'#' => None,
        b'?' | b':' | b'-' if bytes.len() == 1 || bytes[1] == b' ' => None,
        _ => {
            let mut end = bytes.len();
            for i in 0..bytes.len() {
                match bytes[i] {
                    b':' if i + 1 == bytes.len() || bytes[i + 1] == b' ' => return None,
                    b'#' if bytes[i - 1] == b' ' => {
                        end = i;
                        break;
                    }
                    _ => {}
                }
            }
            resolve_plain(text[..end].trim_end_matches(' '))
        }
    }
}

/// What may follow a quoted scalar or `{}` on its line: nothing, or spaces and a comment.
fn end_of_value(rest: &str) -> Option<()> {
    if rest.is_empty() {
        return Some(());
    }
    let trimmed = rest.trim_start_matches(' ');
    (rest.starts_with(' ') && (trimmed.is_empty() || trimmed.starts_with('#'))).then_some(())
}

/// A quoted scalar that closes on this line: its value and the byte offset after the closing
/// quote.
fn quoted(text: &str) -> Option<(Cow<'_, str>, usize)> {
    let quote = text.as_bytes()[0];
    let body = &text[1..];
    if quote == b'\'' {
        let mut out = String::new();
        let mut rest = body;
        loop {
            let i = rest.find('\'')?;
            if rest[i + 1..].starts_with('\'') {
                out.push_str(&rest[..=i]);
                rest = &rest[i + 2..];
            } else {
                let consumed = body.len() - rest.len() + i + 1;
                if out.is_empty() {
                    return Some((Cow::Borrowed(&body[..i]), 1 + consumed));
                }
                out.push_str(&rest[..i]);
                return Some((Cow::Owned(out), 1 + consumed));
            }
        }
    }
    let plain_end = body.find(['"', '\\'])?;
    if body.as_bytes()[plain_end] == b'"' {
        return Some((Cow::Borrowed(&body[..plain_end]), 1 + plain_end + 1));
    }
    let mut out = String::from(&body[..plain_end]);
    let mut chars = body[plain_end..].char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((Cow::Owned(out), 1 + plain_end + i + 1)),
            '\\' => {
                let (_, e) = chars.next()?;
                let simple = match e {
                    '\\' => Some('\\'),
                    '"' => Some('"'),
                    '/' => Some('/'),
                    ' ' => Some(' '),
                    'n' => Some('\n'),
                    't' => Some('\t'),
                    'r' => Some('\r'),
                    '0' => Some('\0'),
                    'a' => Some('\u{7}'),
                    'b' => Some('\u{8}'),
                    'v' => Some('\u{b}'),
                    'f' => Some('\u{c}'),
                    'e' => Some('\u{1b}'),
                    'N' => Some('\u{85}'),
                    '_' => Some('\u{a0}'),
                    'L' => Some('\u{2028}'),
                    'P' => Some('\u{2029}'),
                    _ => None,
                };
                if let Some(c) = simple {
                    out.push(c);
                    continue;
                }
                let digits = match e {
                    'x' => 2,
                    'u' => 4,
                    'U' => 8,
                    _ => return None,
                };
                let mut code = 0u32;
                for _ in 0..digits {
                    let (_, h) = chars.next()?;
                    code = code * 16 + h.to_digit(16)?;
                }
                out.push(char::from_u32(code)?);
            }
            c => out.push(c),
        }
    }
    None
}

/// Whether a mapping repeats a key (the fast path leaves that to the full reader).
fn has_duplicates(map: &[(Cow<'_, str>, Node<'_>)]) -> bool {
    if map.len() <= 16 {
        return map
            .iter()
            .enumerate()
            .any(|(i, (k, _))| map[..i].iter().any(|(other, _)| other == k));
    }
    let mut keys: Vec<&str> = map.iter().map(|(k, _)| k.as_ref()).collect();
    keys.sort_unstable();
    keys.windows(2).any(|w| w[0] == w[1])
}

/// A plain scalar resolved as `serde_yaml` does, for the cases the fast path takes.
fn resolve_plain(s: &str) -> Option<Node<'_>> {
    match s {
        "" | "~" | "null" | "Null" | "NULL" => return Some(Node::Null),
        "true" | "True" | "TRUE" => return Some(Node::Bool(true)),
        "false" | "False" | "FALSE" => return Some(Node::Bool(false)),
        _ => {}
    }
    let digits = s.strip_prefix('-').unwrap_or(s);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        if digits.len() > 1 && digits.starts_with('0') {
            return None;
        }
        return if s.starts_with('-') {
            s.parse::<i64>()
                .ok()
                .map(|n| if n == 0 { Node::U64(0) } else { Node::I64(n) })
        } else {
            s.parse::<u64>().ok().map(Node::U64)
        };
    }
    plain_string(s).then_some(Node::Str(Cow::Borrowed(s)))
}

/// Whether a plain scalar is certainly a string for `serde_yaml`: not null, not a boolean, not
/// a number in any of the forms it reads.
fn plain_string(s: &str) -> bool {
    let Some(&first) = s.as_bytes().first() else {
        return false;
    };
    if matches!(
        s,
        "~" | "null" | "Null" | "NULL" | "true" | "True" | "TRUE" | "false" | "False" | "FALSE"
    ) {
        return false;
    }
    // Numbers start with a digit, a sign, a dot, or (`inf`, `nan`) one of these letters.
    if first.is_ascii_alphabetic() && !matches!(first, b'i' | b'I' | b'n' | b'N') {
        return true;
    }
    !yaml_number(s)
}

/// `serde_yaml`'s number resolution (`visit_int`, then `parse_f64`), reduced to "is a number".
fn yaml_number(s: &str) -> bool {
    // Every integer and every finite float has a digit; without one only YAML's own spellings
    // of infinity and NaN are numbers.
    if !s.bytes().any(|b| b.is_ascii_digit()) {
        return matches!(
            s,
            ".inf"
                | ".Inf"
                | ".INF"
                | "+.inf"
                | "+.Inf"
                | "+.INF"
                | "-.inf"
                | "-.Inf"
                | "-.INF"
                | ".nan"
                | ".NaN"
                | ".NAN"
        );
    }
    fn radix_int(s: &str) -> bool {
        let unsigned = s.strip_prefix('+').unwrap_or(s);
        let negative = s.strip_prefix('-');
        for (prefix, radix) in [("0x", 16), ("0o", 8), ("0b", 2)] {
            if let Some(rest) = unsigned.strip_prefix(prefix)
                && !rest.starts_with(['+', '-'])
                && u128::from_str_radix(rest, radix).is_ok()
            {
                return true;
            }
            if let Some(rest) = negative.and_then(|n| n.strip_prefix(prefix))
                && i128::from_str_radix(&format!("-{rest}"), radix).is_ok()
            {
                return true;
            }
        }
        false
    }
    fn leading_zero_digits(s: &str) -> bool {
        let s = s.strip_prefix(['-', '+']).unwrap_or(s);
        s.len() > 1 && s.starts_with('0') && s[1..].bytes().all(|b| b.is_ascii_digit())
    }
    if radix_int(s) {
        return true;
    }
    if !leading_zero_digits(s) {
        let unsigned = s.strip_prefix('+').unwrap_or(s);
        let unsigned_ok = !unsigned.starts_with(['+', '-']) && unsigned.parse::<u128>().is_ok();
        if unsigned_ok || s.parse::<i128>().is_ok() {
            return true;
        }
    }
    if leading_zero_digits(s) {
        return false;
    }
    let unpositive = match s.strip_prefix('+') {
        Some(u) if u.starts_with(['+', '-']) => return false,
        Some(u) => u,
        None => s,
    };
    matches!(unpositive, ".inf" | ".Inf" | ".INF")
        || matches!(s, "-.inf" | "-.Inf" | "-.INF" | ".nan" | ".NaN" | ".NAN")
        || unpositive.parse::<f64>().is_ok_and(f64::is_finite)
}

/// Why a typed object could not be read from a [`Node`]. The caller then reads the object the
/// slow way, which names the field at fault; this error is never shown.
#[derive(Debug)]
pub struct NodeError(String);

impl fmt::Display for NodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NodeError {}

impl de::Error for NodeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        NodeError(msg.to_string())
    }
}

/// Mirrors `impl Deserializer for &serde_json::Value`: the same visitor calls for the same tree.
impl<'de> Deserializer<'de> for &'de Node<'_> {
    type Error = NodeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, NodeError> {
        match self {
            Node::Null => visitor.visit_unit(),
            Node::Bool(b) => visitor.visit_bool(*b),
            Node::U64(n) => visitor.visit_u64(*n),
            Node::I64(n) => visitor.visit_i64(*n),
            Node::Str(s) => visitor.visit_borrowed_str(s),
            Node::Map(entries) => {
                let mut access = Entries {
                    iter: entries.iter(),
                    value: None,
                };
                let out = visitor.visit_map(&mut access)?;
                match access.iter.len() {
                    0 => Ok(out),
                    _ => Err(de::Error::custom("map not fully read")),
                }
            }
            Node::Seq(items) => {
                let mut access = Items { iter: items.iter() };
                let out = visitor.visit_seq(&mut access)?;
                match access.iter.len() {
                    0 => Ok(out),
                    _ => Err(de::Error::custom("sequence not fully read")),
                }
            }
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, NodeError> {
        match self {
            Node::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, NodeError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, NodeError> {
        Err(de::Error::custom("enums are read the slow way"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        unit unit_struct seq tuple tuple_struct map struct identifier ignored_any
    }
}

struct Entries<'de, 'a> {
    iter: std::slice::Iter<'de, (Cow<'a, str>, Node<'a>)>,
    value: Option<&'de Node<'a>>,
}

impl<'de> MapAccess<'de> for Entries<'de, '_> {
    type Error = NodeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, NodeError> {
        match self.iter.next() {
            Some((k, v)) => {
                self.value = Some(v);
                seed.deserialize(de::value::BorrowedStrDeserializer::new(k))
                    .map(Some)
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, NodeError> {
        match self.value.take() {
            Some(v) => seed.deserialize(v),
            None => Err(de::Error::custom("value without key")),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.iter.len())
    }
}

struct Items<'de, 'a> {
    iter: std::slice::Iter<'de, Node<'a>>,
}

impl<'de> SeqAccess<'de> for Items<'de, '_> {
    type Error = NodeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, NodeError> {
        self.iter.next().map(|n| seed.deserialize(n)).transpose()
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.iter.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    /// The full reader's answer.
    fn full(text: &str) -> (Vec<Document>, Option<ReadError>) {
        manifest::read_documents(text.as_bytes())
    }

    /// The fast path must agree with the full reader whenever it answers.
    fn agrees(text: &str) -> bool {
        match parse(text.as_bytes()) {
            None => false,
            Some(fast) => {
                let docs: Vec<Document> = fast
                    .iter()
                    .map(|d| Document {
                        index: d.index,
                        value: d.node.to_value(),
                    })
                    .collect();
                for d in &fast {
                    let via_serde = Value::deserialize(&d.node).expect("deserializes");
                    assert_eq!(via_serde, d.node.to_value());
                }
                let (want, err) = full(text);
                assert_eq!(
                    err, None,
                    "fast path accepted what the full reader refuses:\n{text}"
                );
                assert_eq!(docs, want, "fast path differs on:\n{text}");
                true
            }
        }
    }

    const POD: &str = r#"# a comment
apiVersion: v1
kind: Pod
metadata:
  name: pod-00010   # trailing comment
  namespace: "kube-system"
  labels: {}
  annotations:
    example.com/owner: 'team''s'
    "quoted key": "a \"b\" \\ c\u00e9"
spec:
  hostNetwork: true
  priority: -5
  nodeSelector:
    kubernetes.io/os: windows
  containers:
  - name: main
    image: mcr.microsoft.com/windows/nanoserver:ltsc2022
    command:
    - powershell.exe
    - -Command
    - Start-Sleep 3600
    ports:
      - containerPort: 8080
        hostPort: 0
    env:
    -   name: VAR_0
        value: "1"
    -   name: EMPTY
        value:
    resources:
      limits: {cpu: 500m, memory: 256Mi}
    volumeMounts:
    - name: logs
      mountPath: C:\logs
  volumes: []
  securityContext:
    windowsOptions:
      hostProcess: true
      runAsUserName: NT AUTHORITY\SYSTEM
---
---
# only a comment
---
apiVersion: v1
kind: Service
"#;

    #[test]
    fn reads_typical_manifests_like_the_full_reader() {
        // The flow mapping makes the fast path give up; without it, the fast path answers.
        assert!(!agrees(POD));
        let pod = POD.replace(
            "{cpu: 500m, memory: 256Mi}",
            "\n        cpu: 500m\n        memory: 256Mi",
        );
        assert!(agrees(&pod), "fast path gave up");
        let (docs, _) = full(&pod);
        assert_eq!(docs.iter().map(|d| d.index).collect::<Vec<_>>(), [1, 4]);
        let fast = parse(pod.as_bytes()).expect("fast");
        assert_eq!(fast.iter().map(|d| d.line).collect::<Vec<_>>(), [2, 47]);
        let lines = document_lines(POD.as_bytes());
        assert_eq!(lines[0], Some(2));
        assert_eq!(lines[3], Some(45));
        assert_eq!(document_lines(b"\n{\"a\": 1}"), [Some(2)]);
        assert!(agrees("---\na: 1\n"));
        assert!(agrees("a: 1\n---\n"));
        assert!(agrees("a: 1\r\nb:\r\n- x\r\n"));
        assert!(agrees(""));
        assert!(agrees("# nothing\n"));
        assert!(agrees("- a\n- b: 1\n  c: 2\n-   d: [] # x\n"));
    }

    #[test]
    fn scalars_resolve_like_serde_yaml() {
        let scalars = [
            "1",
            "0",
            "-0",
            "-1",
            "007",
            "-007",
            "+1",
            "1_000",
            "0x1F",
            "0o17",
            "0b11",
            "-0x1F",
            "1e3",
            "1E3",
            "1.5",
            ".5",
            "5.",
            "-1.5",
            "+1.5",
            "inf",
            "-inf",
            "+inf",
            ".inf",
            "-.inf",
            ".Inf",
            "nan",
            "NaN",
            ".nan",
            ".NaN",
            "infinity",
            "Infinity",
            "INF",
            "yes",
            "no",
            "on",
            "off",
            "y",
            "n",
            "Y",
            "N",
            "True",
            "TRUE",
            "tRue",
            "false",
            "Null",
            "NULL",
            "nULL",
            "~",
            "null",
            "0.1.2",
            "1.2.3",
            "2001-12-14",
            "12:30:00",
            "1e",
            "e1",
            "0xZZ",
            "1__0",
            "100m",
            "128Mi",
            "1Gi",
            "ci",
            "nanoserver",
            "info",
            "abc",
            "deadbeef",
            "18446744073709551615",
            "18446744073709551616",
            "-9223372036854775808",
            "-9223372036854775809",
            "340282366920938463463374607431768211456",
            "0x",
            "0x-1",
            "-0x-1",
            "++1",
            "+-1",
            "--1",
            "-",
            "--",
            "---",
            "-a",
            "-.5",
            "+.5",
            "1.0e+5",
            "0.0",
            "00",
            "0e0",
            "0x0",
            "+0",
            "-+0",
            "ü",
            "ünï",
            "C:\\logs",
            "a'b",
            "a\"b",
            "a,b",
            "a[0]",
            "a{b}",
            "a#b",
            "@x",
            "`x",
            "%x",
            "?x",
            ":x",
            "x:y",
            "<<",
            "=",
            "x\\y",
            "+.inf",
            ".NAN",
            "0b2",
            "0o8",
            "0xg",
        ];
        for s in scalars {
            for doc in [format!("k: {s}\n"), format!("- {s}\n"), format!("{s}: v\n")] {
                agrees(&doc);
            }
        }
        // Merge keys are ordinary keys for the full reader too.
        agrees("<<:\n  a: 1\nb: 2\n");
        // The common ones do take the fast path.
        for s in [
            "1",
            "-1",
            "100m",
            "ci",
            "nanoserver",
            "true",
            "~",
            "C:\\logs",
        ] {
            assert!(agrees(&format!("k: {s}\n")), "{s}");
        }
    }

    #[test]
    fn gives_up_on_what_it_does_not_handle() {
        let cases = [
            "a: &x 1\nb: *x\n",
            "a: !!str 1\n",
            "a: |\n  text\n",
            "a: >\n  text\n",
            "a: {b: 1}\n",
            "a: [1, 2]\n",
            "a: multi\n  line\n",
            "a: \"open\n  quote\"\n",
            "a:\n\tb: 1\n",
            "%YAML 1.2\n---\na: 1\n",
            "a: 1\n...\n",
            "--- a\n",
            "? a\n: b\n",
            "a: 1\na: 2\n",
            "- - a\n",
            "-\n  a: 1\n",
            "a:\n  scalar on its own line\n",
            "a: b: c\n",
            "a: b:\n",
            "{\"a\": 1}\n",
            "plain\n",
        ];
        for text in cases {
            assert!(parse(text.as_bytes()).is_none(), "{text:?}");
        }
        // Through the public function, the full reader still answers.
        let (docs, err) = read_documents(b"a: &x 1\nb: *x\n");
        assert_eq!(err, None);
        assert_eq!(docs[0].value["b"], 1);
    }

    #[test]
    fn refuses_nothing_that_the_full_reader_refuses() {
        let bad = [
            "a:\n  b: 1\n c: 2\n",
            "a: 1\n  b: 2\n",
            "- a\nb: 1\n",
            "a: 1\n- b\n",
            "- a: 1\n   b: 2\n",
            "a: \"x\"y\n",
            "a: 'x'y\n",
            "a: {}x\n",
            "a: \u{1}\n",
            "a: \"\\q\"\n",
            "a: -\n",
            "a: \"x\" # c\n  b: 1\n",
        ];
        for text in bad {
            assert!(parse(text.as_bytes()).is_none(), "{text:?}");
            assert!(read_documents(text.as_bytes()).1.is_some(), "{text:?}");
        }
    }

    /// A small deterministic generator (xorshift), so the test needs no dependency.
    pub(super) struct Rng(pub(super) u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        pub(super) fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    const WORDS: &[&str] = &[
        "a",
        "name",
        "x-y",
        "kubernetes.io/os",
        "100m",
        "1",
        "-1",
        "0",
        "true",
        "False",
        "~",
        "null",
        "ci",
        "1.5",
        "1e3",
        "0x10",
        "007",
        "'q'",
        "\"d\"",
        "\"e\\\"s\"",
        "'it''s'",
        "{}",
        "[]",
        "C:\\x",
        "a b",
        "a #c",
        "NT AUTHORITY\\SYSTEM",
        "-v=2",
        "yes",
        "ü",
        ".inf",
        "+1",
    ];

    const KEYS: &[&str] = &[
        "a",
        "name",
        "x-y",
        "kubernetes.io/os",
        "'q k'",
        "\"d k\"",
        "100m",
        "07",
    ];

    fn gen_key(r: &mut Rng, out: &mut String) {
        out.push_str(KEYS[r.below(KEYS.len())]);
        out.push_str(&format!("{}:", r.below(100)));
    }

    fn gen_scalar(r: &mut Rng, out: &mut String) {
        out.push(' ');
        out.push_str(WORDS[r.below(WORDS.len())]);
        out.push('\n');
    }

    /// Writes a value after `key:` (the cursor is after the colon), ending with a newline.
    pub(super) fn gen_node(r: &mut Rng, indent: usize, depth: usize, out: &mut String) {
        if depth > 3 || r.below(3) == 0 {
            return gen_scalar(r, out);
        }
        out.push('\n');
        let nested = indent + 1 + r.below(3);
        if r.below(2) == 0 {
            for _ in 0..1 + r.below(3) {
                out.push_str(&" ".repeat(nested));
                gen_key(r, out);
                gen_node(r, nested, depth + 1, out);
            }
        } else {
            let dash = if r.below(2) == 0 { indent } else { nested };
            for _ in 0..1 + r.below(3) {
                out.push_str(&" ".repeat(dash));
                out.push('-');
                gen_item(r, dash, depth + 1, out);
            }
        }
    }

    /// Writes a sequence item after its `-`.
    fn gen_item(r: &mut Rng, dash: usize, depth: usize, out: &mut String) {
        if depth > 3 || r.below(2) == 0 {
            return gen_scalar(r, out);
        }
        let spaces = 1 + r.below(3);
        out.push_str(&" ".repeat(spaces));
        let column = dash + 1 + spaces;
        for j in 0..1 + r.below(3) {
            if j > 0 {
                out.push_str(&" ".repeat(column));
            }
            gen_key(r, out);
            gen_node(r, column, depth + 1, out);
        }
    }

    fn mutate(r: &mut Rng, text: &str) -> String {
        let mut bytes = text.as_bytes().to_vec();
        for _ in 0..1 + r.below(3) {
            if bytes.is_empty() {
                break;
            }
            let at = r.below(bytes.len());
            let ops = [b' ', b':', b'-', b'#', b'\'', b'"', b'\n', b'x', b'0', b'{'];
            match r.below(3) {
                0 => {
                    bytes.remove(at);
                }
                1 => bytes.insert(at, ops[r.below(ops.len())]),
                _ => bytes[at] = ops[r.below(ops.len())],
            }
        }
        String::from_utf8(bytes).unwrap_or_default()
    }

    #[test]
    fn agrees_with_the_full_reader_on_generated_and_mutated_documents() {
        let mut r = Rng(0x9e37_79b9_7f4a_7c15);
        let mut fast = 0;
        for _ in 0..std::env::var("YAML_FUZZ")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(3000)
        {
            let mut doc = String::new();
            for k in 0..1 + r.below(4) {
                doc.push_str(&format!("k{k}:"));
                gen_node(&mut r, 0, 0, &mut doc);
            }
            if agrees(&doc) {
                fast += 1;
            }
            for _ in 0..3 {
                let m = mutate(&mut r, &doc);
                if parse(m.as_bytes()).is_some() {
                    agrees(&m);
                }
            }
        }
        // Some words (`1.5`, `0x10`, `007`…) always make it give up; the others should not.
        assert!(
            fast > 300,
            "the fast path should take many generated documents: {fast}"
        );
    }
}

#[cfg(test)]
mod locate_tests {
    use super::*;
    use crate::check::position::{self, segments};

    /// Every path to every node of `node`, in the apiserver's notation.
    fn paths(node: &Node<'_>, prefix: &str, out: &mut Vec<String>) {
        match node {
            Node::Map(entries) => {
                for (k, v) in entries {
                    let p = if k.contains(['.', '[', ']']) || k.is_empty() {
                        format!("{prefix}[{k}]")
                    } else if prefix.is_empty() {
                        k.to_string()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    out.push(p.clone());
                    paths(v, &p, out);
                }
            }
            Node::Seq(items) => {
                for (i, v) in items.iter().enumerate() {
                    let p = format!("{prefix}[{i}]");
                    out.push(p.clone());
                    paths(v, &p, out);
                }
            }
            _ => {}
        }
    }

    /// The line locator and serde-saphyr's positions agree on every node of `text`.
    fn agree(text: &str) -> usize {
        let parsed = parse_file(text.as_bytes()).expect("fast path applies");
        let trees = position::trees(text.as_bytes());
        assert_eq!(trees.len(), parsed.docs.len(), "{text}");
        let mut n = 0;
        for (d, tree) in parsed.docs.iter().zip(&trees) {
            let mut all = Vec::new();
            paths(&d.node, "", &mut all);
            for p in all {
                // serde-saphyr reads keys such as `0735` as numbers (YAML 1.2), and prints
                // them back differently; Kubernetes field names never look like that.
                let s = segments(&p);
                let numeric = |seg: &position::Segment<'_>| {
                    matches!(seg, position::Segment::Key(k)
                        if k.starts_with(|c: char| c.is_ascii_digit() || "+-.".contains(c)))
                };
                if s.iter().any(numeric) {
                    continue;
                }
                assert_eq!(parsed.locate(d, &s), tree.locate(&s), "{p} in\n{text}");
                n += 1;
            }
        }
        n
    }

    #[test]
    fn the_line_locator_agrees_with_serde_saphyr() {
        let manifest = "# leading comment\napiVersion: apps/v1\nkind: DaemonSet\nmetadata:\n  name: csi-proxy\n  annotations:\n    microsoft.com/hostprocess-inherit-user: \"true\"\nspec:\n  template:\n    spec:\n      nodeSelector:\n        kubernetes.io/os: windows\n      containers:\n      -   name: a   # odd indentation after the dash\n          image: x\n          args:\n          - -v=2\n          securityContext:\n            windowsOptions:\n              hostProcess: true\n      - name: b\n        'quoted key': 1\n      volumes:\n      - name: v\n        hostPath:\n          path: C:\\var\n---\n- a\n- b:\n  - c\n";
        let n = agree(manifest);
        assert!(n > 25, "{n}");
        assert_eq!(agree(&manifest.replace('\n', "\r\n")), n);
        assert_eq!(agree(&format!("\u{feff}{manifest}")), n);
        // Missing paths stop at the deepest ancestor, like the tree.
        let parsed = parse_file(manifest.as_bytes()).expect("fast");
        let trees = position::trees(manifest.as_bytes());
        for p in [
            "spec.template.spec.containers[1].resources.limits.cpu",
            "spec.template.spec.containers[7]",
            "spec.template.spec.volumes[0].hostPath.path.deeper",
            "metadata.annotations[microsoft.com/hostprocess-rootfs-location]",
            "status",
        ] {
            let s = segments(p);
            assert_eq!(
                parsed.locate(&parsed.docs[0], &s),
                trees[0].locate(&s),
                "{p}"
            );
        }
    }

    #[test]
    fn the_line_locator_agrees_on_generated_documents() {
        let mut r = super::tests::Rng(0x2545_f491_4f6c_dd1d);
        let mut compared = 0;
        for _ in 0..500 {
            let mut doc = String::new();
            for k in 0..1 + r.below(4) {
                doc.push_str(&format!("k{k}:"));
                super::tests::gen_node(&mut r, 0, 0, &mut doc);
            }
            if parse(doc.as_bytes()).is_some() {
                compared += agree(&doc);
            }
        }
        assert!(compared > 200, "{compared}");
    }
}

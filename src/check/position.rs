//! Where a field is in the file: the line and column of the key (or sequence item) that a
//! finding's field path names, so that code-scanning annotations land on the offending field
//! rather than on the object's first line.
//!
//! Three locators, run only for objects that have findings (and for other files only once per
//! file), so the cost of a clean run is unchanged:
//!
//! - documents the fast path read ([`super::yaml`]) are located on the lines it already split,
//!   by indentation ([`super::yaml::Parsed::locate`]): no second parse;
//! - JSON is scanned once per file into a tree of positions ([`PositionTree`]) without building
//!   values (exports from `kubectl get -o json` can hold thousands of objects);
//! - other YAML (flow style, anchors, block scalars) is parsed once per file by `serde-saphyr`
//!   (already built for kube's kubeconfig reading) into the same tree. It is slow — about
//!   0.6 ms per pod-sized document, see `benches/yaml.rs` — but such files are hand-written and
//!   small; the tests hold the other two locators to its answers.
//!
//! A path that goes deeper than the document (a required field that is missing) is located at
//! its deepest ancestor that the document has.

use std::fmt;

use serde::Serialize;
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

/// A 1-based line and column (columns count characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Position {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// One step of a field path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment<'p> {
    /// A mapping key: `.name`, or `[key]` when the key is not a field name
    /// (`annotations[microsoft.com/hostprocess-inherit-user]`).
    Key(&'p str),
    /// A sequence index: `[3]`.
    Index(usize),
}

/// Splits a field path in the apiserver's notation (`spec.containers[0].image`,
/// `metadata.annotations[a.b/c]`) into segments.
pub fn segments(path: &str) -> Vec<Segment<'_>> {
    let mut out = Vec::new();
    let mut rest = path;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('[') {
            let end = after.find(']').unwrap_or(after.len());
            let inner = &after[..end];
            out.push(match inner.parse::<usize>() {
                Ok(i) => Segment::Index(i),
                Err(_) => Segment::Key(inner),
            });
            rest = after.get(end + 1..).unwrap_or("");
        } else {
            let rest_no_dot = rest.strip_prefix('.').unwrap_or(rest);
            let end = rest_no_dot.find(['.', '[']).unwrap_or(rest_no_dot.len());
            if end > 0 {
                out.push(Segment::Key(&rest_no_dot[..end]));
            }
            rest = &rest_no_dot[end..];
        }
    }
    out
}

/// A document's nodes with their positions, from `serde-saphyr`.
#[derive(Debug, Clone, PartialEq)]
pub struct PositionTree {
    position: Position,
    kind: TreeKind,
}

#[derive(Debug, Clone, PartialEq)]
enum TreeKind {
    Map(Vec<(String, Position, PositionTree)>),
    Seq(Vec<PositionTree>),
    Scalar,
}

impl PositionTree {
    /// The position of the deepest node of `path` that exists (the key's position for mapping
    /// entries, the item's for sequence items).
    pub fn locate(&self, path: &[Segment<'_>]) -> Position {
        let mut node = self;
        let mut at = self.position;
        for segment in path {
            let next = match (&node.kind, segment) {
                (TreeKind::Map(entries), Segment::Key(k)) => entries
                    .iter()
                    .find(|(key, _, _)| key == k)
                    .map(|(_, pos, child)| (*pos, child)),
                (TreeKind::Seq(items), Segment::Index(i)) => items.get(*i).map(|c| (c.position, c)),
                _ => None,
            };
            match next {
                Some((pos, child)) => {
                    at = pos;
                    node = child;
                }
                None => break,
            }
        }
        at
    }
}

fn position(line: u64, column: u64) -> Position {
    Position {
        line: usize::try_from(line).unwrap_or(usize::MAX),
        column: usize::try_from(column).unwrap_or(usize::MAX),
    }
}

impl<'de> Deserialize<'de> for PositionTree {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let spanned = Spanned::<TreeKind>::deserialize(d)?;
        Ok(PositionTree {
            position: position(spanned.referenced.line(), spanned.referenced.column()),
            kind: spanned.value,
        })
    }
}

/// A mapping key of any scalar type, as text.
struct KeyText(String);

impl<'de> Deserialize<'de> for KeyText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = KeyText;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a scalar key")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<KeyText, E> {
                Ok(KeyText(v.to_owned()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_unit<E: de::Error>(self) -> Result<KeyText, E> {
                Ok(KeyText(String::new()))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for TreeKind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = TreeKind;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any YAML node")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<TreeKind, A::Error> {
                let mut entries = Vec::new();
                while let Some(key) = map.next_key::<Spanned<KeyText>>()? {
                    let value = map.next_value::<PositionTree>()?;
                    let at = position(key.referenced.line(), key.referenced.column());
                    entries.push((key.value.0, at, value));
                }
                Ok(TreeKind::Map(entries))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<TreeKind, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<PositionTree>()? {
                    items.push(item);
                }
                Ok(TreeKind::Seq(items))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<TreeKind, E> {
                Ok(TreeKind::Scalar)
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<TreeKind, E> {
                Ok(TreeKind::Scalar)
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<TreeKind, E> {
                Ok(TreeKind::Scalar)
            }
            fn visit_i128<E: de::Error>(self, _: i128) -> Result<TreeKind, E> {
                Ok(TreeKind::Scalar)
            }
            fn visit_u128<E: de::Error>(self, _: u128) -> Result<TreeKind, E> {
                Ok(TreeKind::Scalar)
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<TreeKind, E> {
                Ok(TreeKind::Scalar)
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<TreeKind, E> {
                Ok(TreeKind::Scalar)
            }
            fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<TreeKind, E> {
                Ok(TreeKind::Scalar)
            }
            fn visit_unit<E: de::Error>(self) -> Result<TreeKind, E> {
                Ok(TreeKind::Scalar)
            }
            fn visit_none<E: de::Error>(self) -> Result<TreeKind, E> {
                Ok(TreeKind::Scalar)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<TreeKind, D::Error> {
                TreeKind::deserialize(d)
            }
        }
        d.deserialize_any(V)
    }
}

/// The position trees of a file's non-empty documents, in order: the n-th tree belongs to the
/// n-th document [`crate::manifest::read_documents`] returns (both leave out empty and null
/// documents). Empty when the file cannot be parsed for positions (the caller then falls back
/// to each document's first line).
pub fn trees(bytes: &[u8]) -> Vec<PositionTree> {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return Vec::new();
    };
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let trimmed = text.trim_start();
    if trimmed.starts_with(['{', '[']) {
        let json = json_trees(text, trimmed);
        if !json.is_empty() {
            return json;
        }
    }
    serde_saphyr::from_multiple::<PositionTree>(text).unwrap_or_default()
}

/// A JSON stream (one value, or several concatenated), scanned for positions without building
/// values: `kubectl get -o json` exports are often large, and serde-saphyr reads about 1,700
/// pods/s where this scanner is bound by memory bandwidth. Empty when the text is not JSON (YAML
/// flow style starts the same way).
fn json_trees(text: &str, trimmed: &str) -> Vec<PositionTree> {
    let lead = text.len() - trimmed.len();
    let consumed = &text[..lead];
    let mut scan = JsonScanner {
        bytes: text.as_bytes(),
        at: lead,
        line: 1 + consumed.matches('\n').count(),
        column: 1 + consumed
            .rsplit('\n')
            .next()
            .map_or(0, |l| l.chars().count()),
    };
    let mut out = Vec::new();
    loop {
        scan.whitespace();
        if scan.at >= scan.bytes.len() {
            return out;
        }
        let null = scan.bytes[scan.at..].starts_with(b"null");
        match scan.value(0) {
            Some(_) if null => {}
            Some(tree) => out.push(tree),
            None => return Vec::new(),
        }
    }
}

/// Deepest nesting the scanner follows (as `serde_json`, which stops at 128).
const MAX_JSON_DEPTH: usize = 128;

struct JsonScanner<'t> {
    bytes: &'t [u8],
    at: usize,
    line: usize,
    /// 1-based, in characters.
    column: usize,
}

impl JsonScanner<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn bump(&mut self) {
        if let Some(b) = self.peek() {
            self.at += 1;
            if b == b'\n' {
                self.line += 1;
                self.column = 1;
            } else if b & 0xc0 != 0x80 {
                // A UTF-8 continuation byte is part of the previous character.
                self.column += 1;
            }
        }
    }

    fn whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.bump();
        }
    }

    fn here(&self) -> Position {
        Position {
            line: self.line,
            column: self.column,
        }
    }

    fn expect(&mut self, b: u8) -> Option<()> {
        (self.peek()? == b).then(|| self.bump())
    }

    fn value(&mut self, depth: usize) -> Option<PositionTree> {
        if depth > MAX_JSON_DEPTH {
            return None;
        }
        self.whitespace();
        let position = self.here();
        let kind = match self.peek()? {
            b'{' => {
                self.bump();
                let mut entries = Vec::new();
                self.whitespace();
                if self.peek()? == b'}' {
                    self.bump();
                } else {
                    loop {
                        self.whitespace();
                        let at = self.here();
                        let key = self.string()?;
                        self.whitespace();
                        self.expect(b':')?;
                        let child = self.value(depth + 1)?;
                        entries.push((key, at, child));
                        self.whitespace();
                        match self.peek()? {
                            b',' => self.bump(),
                            b'}' => {
                                self.bump();
                                break;
                            }
                            _ => return None,
                        }
                    }
                }
                TreeKind::Map(entries)
            }
            b'[' => {
                self.bump();
                let mut items = Vec::new();
                self.whitespace();
                if self.peek()? == b']' {
                    self.bump();
                } else {
                    loop {
                        items.push(self.value(depth + 1)?);
                        self.whitespace();
                        match self.peek()? {
                            b',' => self.bump(),
                            b']' => {
                                self.bump();
                                break;
                            }
                            _ => return None,
                        }
                    }
                }
                TreeKind::Seq(items)
            }
            b'"' => {
                self.string()?;
                TreeKind::Scalar
            }
            b'-' | b'0'..=b'9' | b't' | b'f' | b'n' => {
                let start = self.at;
                while self
                    .peek()
                    .is_some_and(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'+' | b'.'))
                {
                    self.bump();
                }
                (self.at > start).then_some(TreeKind::Scalar)?
            }
            _ => return None,
        };
        Some(PositionTree { position, kind })
    }

    /// A string, decoded (keys are compared with field names).
    fn string(&mut self) -> Option<String> {
        self.expect(b'"')?;
        let start = self.at;
        let mut escaped = false;
        loop {
            let b = self.peek()?;
            self.bump();
            match b {
                b'"' => break,
                b'\\' => {
                    escaped = true;
                    self.bump();
                }
                _ => {}
            }
        }
        let raw = std::str::from_utf8(&self.bytes[start..self.at - 1]).ok()?;
        if !escaped {
            return Some(raw.to_owned());
        }
        serde_json::from_str(&format!("\"{raw}\"")).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_split_into_keys_and_indexes() {
        assert_eq!(
            segments("spec.containers[0].securityContext.windowsOptions.hostProcess"),
            [
                Segment::Key("spec"),
                Segment::Key("containers"),
                Segment::Index(0),
                Segment::Key("securityContext"),
                Segment::Key("windowsOptions"),
                Segment::Key("hostProcess"),
            ]
        );
        assert_eq!(
            segments("spec.template.metadata.annotations[microsoft.com/hostprocess-inherit-user]"),
            [
                Segment::Key("spec"),
                Segment::Key("template"),
                Segment::Key("metadata"),
                Segment::Key("annotations"),
                Segment::Key("microsoft.com/hostprocess-inherit-user"),
            ]
        );
        assert_eq!(
            segments("spec.volumes[2].hostPath.path"),
            [
                Segment::Key("spec"),
                Segment::Key("volumes"),
                Segment::Index(2),
                Segment::Key("hostPath"),
                Segment::Key("path"),
            ]
        );
        assert_eq!(segments(""), []);
    }

    #[test]
    fn trees_locate_keys_items_and_the_deepest_existing_ancestor() {
        let text = "\u{feff}kind: Pod\r\nspec:\r\n  containers:\r\n  - name: a\r\n    securityContext: {windowsOptions: {hostProcess: true}}\r\n";
        let trees = trees(text.as_bytes());
        let t = &trees[0];
        let at = |p: &str| t.locate(&segments(p));
        assert_eq!(at("kind"), Position { line: 1, column: 1 });
        assert_eq!(at("spec.containers"), Position { line: 3, column: 3 });
        assert_eq!(at("spec.containers[0]"), Position { line: 4, column: 5 });
        assert_eq!(
            at("spec.containers[0].securityContext.windowsOptions.hostProcess"),
            Position {
                line: 5,
                column: 40
            }
        );
        // Missing below: the deepest ancestor that exists.
        assert_eq!(
            at("spec.containers[0].resources.limits.cpu"),
            Position { line: 4, column: 5 }
        );
    }

    /// Every node's position, by path, in document order.
    fn all_positions(t: &PositionTree, prefix: String, out: &mut Vec<(String, Position)>) {
        out.push((prefix.clone(), t.position));
        match &t.kind {
            TreeKind::Map(entries) => {
                for (k, at, child) in entries {
                    let p = format!("{prefix}[{k}]");
                    out.push((format!("{p}:key"), *at));
                    all_positions(child, p, out);
                }
            }
            TreeKind::Seq(items) => {
                for (i, child) in items.iter().enumerate() {
                    all_positions(child, format!("{prefix}[{i}]"), out);
                }
            }
            TreeKind::Scalar => {}
        }
    }

    #[test]
    fn the_json_scanner_agrees_with_serde_saphyr() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/upstream");
        let mut texts: Vec<String> = std::fs::read_dir(dir)
            .expect("upstream data")
            .map(|e| std::fs::read_to_string(e.expect("entry").path()).expect("read"))
            .flat_map(|yaml| {
                crate::manifest::read_documents(yaml.as_bytes())
                    .0
                    .into_iter()
                    .map(|d| serde_json::to_string_pretty(&d.value).expect("json"))
                    .collect::<Vec<_>>()
            })
            .collect();
        texts.push(
            r#"{"a\"b": {"\u00e9t\u00e9": [1, -2.5e3, true, null, "x\ny"]}, "é": {}, "z": []}"#
                .to_owned(),
        );
        assert!(texts.len() >= 6);
        for text in &texts {
            let ours = json_trees(text, text.trim_start());
            let theirs = serde_saphyr::from_str::<PositionTree>(text).expect("saphyr");
            assert_eq!(ours.len(), 1, "{text}");
            let (mut a, mut b) = (Vec::new(), Vec::new());
            all_positions(&ours[0], String::new(), &mut a);
            all_positions(&theirs, String::new(), &mut b);
            assert_eq!(a, b, "{text}");
        }
        // Not JSON (YAML flow style): nothing, so the caller asks serde-saphyr.
        assert!(json_trees("{a: 1}", "{a: 1}").is_empty());
        // Too deep: nothing rather than a stack overflow.
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert!(json_trees(&deep, &deep).is_empty());
    }

    #[test]
    fn json_streams_are_located_value_by_value() {
        let text = "{\"kind\": \"Pod\",\n \"spec\": {\"containers\": [{\"name\": \"a\"}]}}\n  {\"kind\": \"Pod\",\n   \"spec\": {}}\n";
        let trees = trees(text.as_bytes());
        assert_eq!(
            trees[0].locate(&segments("spec.containers[0].name")),
            Position {
                line: 2,
                column: 27
            }
        );
        assert_eq!(
            trees[1].locate(&segments("kind")),
            Position { line: 3, column: 4 }
        );
        assert_eq!(
            trees[1].locate(&segments("spec")),
            Position { line: 4, column: 4 }
        );
    }
}

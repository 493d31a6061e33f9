//! Reading manifests: multi-document YAML or JSON text into JSON values, safely.
//!
//! Inputs come from users and CI pipelines, so reading is bounded: the text must be UTF-8 and not
//! binary, and a document may not expand (YAML aliases) into more than [`MAX_NODES`] values or
//! more than [`EXPANSION_FACTOR`] times its own size. Every error says which document failed and
//! where.

use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Values one document may expand to, whatever its size.
pub const MAX_NODES: usize = 4_000_000;
/// How many values per input byte a document may expand to (aliases re-use subtrees).
pub const EXPANSION_FACTOR: usize = 8;

/// A document that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// The bytes are not text.
    #[error("binary data (NUL byte at offset {offset}), not YAML or JSON")]
    Binary {
        /// Offset of the first NUL byte.
        offset: usize,
    },
    /// The bytes are not UTF-8.
    #[error("not UTF-8 text (invalid byte at offset {offset})")]
    NotUtf8 {
        /// Offset of the first invalid byte.
        offset: usize,
    },
    /// The YAML or JSON does not parse.
    #[error("document {document}: {message}")]
    Syntax {
        /// 1-based document index.
        document: usize,
        /// The parser's message, with line and column.
        message: String,
    },
    /// The document expands to too many values.
    #[error("document {document}: expands to more than {limit} values (YAML alias bomb?)")]
    TooLarge {
        /// 1-based document index.
        document: usize,
        /// The limit that was hit.
        limit: usize,
    },
}

/// One document of a file.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// 1-based position in the file (`---`-separated documents, or concatenated JSON values).
    pub index: usize,
    /// The document. Empty documents are skipped.
    pub value: Value,
}

/// Splits `bytes` into documents. JSON (text starting with `{` or `[` that parses as JSON) is read
/// as a stream of JSON values; anything else as multi-document YAML. Stops at the first error, returning what was
/// read before it as well.
pub fn read_documents(bytes: &[u8]) -> (Vec<Document>, Option<ReadError>) {
    if let Some(offset) = bytes.iter().position(|b| *b == 0) {
        return (Vec::new(), Some(ReadError::Binary { offset }));
    }
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            return (
                Vec::new(),
                Some(ReadError::NotUtf8 {
                    offset: e.valid_up_to(),
                }),
            );
        }
    };
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let budget = MAX_NODES.min(text.len().saturating_mul(EXPANSION_FACTOR).max(1024));
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        // Probably JSON, which serde_json reads much faster; YAML flow style (`{a: 1}`) starts
        // the same way, so fall back to YAML when the first document is not JSON.
        let (docs, err) = read_json(trimmed);
        if !(docs.is_empty() && matches!(err, Some(ReadError::Syntax { document: 1, .. }))) {
            return (docs, err);
        }
    }
    read_yaml(text, budget)
}

/// JSON has no aliases, so a document cannot expand beyond its own size: no budget is needed.
fn read_json(text: &str) -> (Vec<Document>, Option<ReadError>) {
    let mut docs = Vec::new();
    for (i, value) in serde_json::Deserializer::from_str(text)
        .into_iter::<Value>()
        .enumerate()
    {
        let index = i + 1;
        match value {
            Ok(Value::Null) => {}
            Ok(value) => docs.push(Document { index, value }),
            Err(e) => {
                return (
                    docs,
                    Some(ReadError::Syntax {
                        document: index,
                        message: e.to_string(),
                    }),
                );
            }
        }
    }
    (docs, None)
}

fn read_yaml(text: &str, budget: usize) -> (Vec<Document>, Option<ReadError>) {
    let mut docs = Vec::new();
    for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let index = i + 1;
        let nodes = Cell::new(0);
        match (Bounded {
            nodes: &nodes,
            budget,
        })
        .deserialize(doc)
        {
            Ok(value) if value.is_null() => {}
            Ok(value) => docs.push(Document { index, value }),
            Err(e) => {
                let err = if nodes.get() > budget {
                    ReadError::TooLarge {
                        document: index,
                        limit: budget,
                    }
                } else {
                    ReadError::Syntax {
                        document: index,
                        message: e.to_string(),
                    }
                };
                return (docs, Some(err));
            }
        }
    }
    (docs, None)
}

/// Builds a `serde_json::Value`, counting nodes and failing past the budget.
struct Bounded<'a> {
    nodes: &'a Cell<usize>,
    budget: usize,
}

impl Bounded<'_> {
    fn count<E: de::Error>(&self) -> Result<(), E> {
        let n = self.nodes.get() + 1;
        self.nodes.set(n);
        if n > self.budget {
            Err(E::custom("document expands to too many values"))
        } else {
            Ok(())
        }
    }

    fn child(&self) -> Bounded<'_> {
        Bounded {
            nodes: self.nodes,
            budget: self.budget,
        }
    }
}

impl<'de> DeserializeSeed<'de> for Bounded<'_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Bounded<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML or JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        self.count()?;
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        self.count()?;
        Ok(Value::from(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        self.count()?;
        Ok(Value::from(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        self.count()?;
        // JSON has no NaN or infinity; YAML's `.nan`/`.inf` become null like serde_json does.
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        self.count()?;
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        self.count()?;
        Ok(Value::String(v))
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        self.count()?;
        Ok(Value::Null)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        self.count()?;
        Ok(Value::Null)
    }

    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }

    fn visit_newtype_struct<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        self.count()?;
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(v) = seq.next_element_seed(self.child())? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        self.count()?;
        let mut out = Map::new();
        while let Some(key) = map.next_key_seed(KeySeed)? {
            let value = map.next_value_seed(self.child())?;
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

/// Map keys: strings, or scalars rendered as strings (YAML allows `1: x`, JSON does not).
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = String;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
        d.deserialize_any(self)
    }
}

impl Visitor<'_> for KeySeed {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string or scalar map key")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        Ok(v.to_owned())
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<String, E> {
        Ok(v)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_unit<E: de::Error>(self) -> Result<String, E> {
        Ok("null".to_owned())
    }
}

/// Deserializes a JSON value into `T`, reporting the field path of a type error
/// (`spec.securityContext.windowsOptions.hostProcess: invalid type: string "true", expected a
/// boolean`).
pub fn from_value<T: serde::de::DeserializeOwned>(value: Value) -> Result<T, FieldError> {
    // Path tracking costs about three times a plain deserialization, so it only runs again to
    // explain a failure.
    match T::deserialize(&value) {
        Ok(t) => Ok(t),
        Err(plain) => match serde_path_to_error::deserialize::<_, T>(value) {
            Err(e) => {
                let path = e.path().to_string();
                Err(FieldError {
                    path: if path == "." { String::new() } else { path },
                    message: e.into_inner().to_string(),
                })
            }
            Ok(_) => Err(FieldError {
                path: String::new(),
                message: plain.to_string(),
            }),
        },
    }
}

/// A value of the wrong type somewhere in a document.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct FieldError {
    /// Field path (`spec.containers[0].image`); empty for the document itself.
    pub path: String,
    /// The deserializer's message.
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_multi_document_with_empty_docs() {
        let (docs, err) = read_documents(b"---\na: 1\n---\n# only a comment\n---\nb: [x]\n");
        assert_eq!(err, None);
        let idx: Vec<_> = docs.iter().map(|d| d.index).collect();
        assert_eq!(idx, [1, 3]);
        assert_eq!(docs[1].value["b"][0], "x");
    }

    #[test]
    fn json_stream() {
        let (docs, err) = read_documents(b"{\"a\": 1}\n{\"b\": 2} [3]");
        assert_eq!(err, None);
        assert_eq!(docs.len(), 3);
        assert_eq!(docs[2].index, 3);
    }

    #[test]
    fn yaml_flow_style_is_not_mistaken_for_json() {
        let (docs, err) = read_documents(b"{a: 1, b: [x]}");
        assert_eq!(err, None);
        assert_eq!(docs[0].value["b"][0], "x");
    }

    #[test]
    fn truncated_yaml_names_document_and_position() {
        let (docs, err) = read_documents(b"a: 1\n---\nb: [1, 2\n");
        assert_eq!(docs.len(), 1);
        let err = err.expect("error").to_string();
        assert!(err.starts_with("document 2: "), "{err}");
        assert!(err.contains("line"), "{err}");
    }

    #[test]
    fn alias_bomb_is_refused() {
        let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        let mut prev = 'a';
        for name in ['b', 'c', 'd', 'e', 'f', 'g', 'h', 'i'] {
            bomb.push_str(&format!("{name}: &{name} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"));
            prev = name;
        }
        let (_, err) = read_documents(bomb.as_bytes());
        let err = err.expect("refused");
        assert!(
            matches!(
                err,
                ReadError::TooLarge { document: 1, .. } | ReadError::Syntax { document: 1, .. }
            ),
            "{err}"
        );
    }

    #[test]
    fn binary_and_non_utf8() {
        assert_eq!(
            read_documents(b"a: 1\n\0\x01").1,
            Some(ReadError::Binary { offset: 5 })
        );
        assert_eq!(
            read_documents(b"a: \xff").1,
            Some(ReadError::NotUtf8 { offset: 3 })
        );
    }

    #[test]
    fn field_errors_carry_paths() {
        #[derive(serde::Deserialize, Debug)]
        struct Inner {
            #[allow(dead_code)]
            flag: bool,
        }
        #[derive(serde::Deserialize, Debug)]
        struct Outer {
            #[allow(dead_code)]
            items: Vec<Inner>,
        }
        let err =
            from_value::<Outer>(serde_json::json!({"items": [{"flag": true}, {"flag": "true"}]}))
                .expect_err("type error");
        assert_eq!(err.path, "items[1].flag");
        assert!(err.message.contains("expected a boolean"), "{err}");
    }
}

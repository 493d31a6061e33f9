//! Request bodies: one file (`--body`) or a list file (`--body-list`, one path per line, cycled
//! in order like `bench/wrk-admission.lua`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;

use crate::review::request_uid;

/// One request body and, for AdmissionReview bodies, its `request.uid`.
#[derive(Debug, Clone)]
pub struct Body {
    /// The bytes sent.
    pub bytes: Bytes,
    /// `request.uid`, checked against the answer with `--expect-review`.
    pub uid: Option<String>,
}

impl Body {
    /// A body from bytes.
    pub fn new(bytes: impl Into<Bytes>) -> Self {
        let bytes = bytes.into();
        let uid = request_uid(&bytes);
        Body { bytes, uid }
    }
}

/// The paths named by a list file: one per line; blank lines and lines starting with `#` are
/// skipped; relative paths are taken relative to the current directory (as wrk does).
pub fn parse_list(text: &str) -> Vec<PathBuf> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(PathBuf::from)
        .collect()
}

fn read(path: &Path) -> anyhow::Result<Body> {
    let bytes = std::fs::read(path)
        .map_err(|e| anyhow::anyhow!("cannot read body file {}: {e}", path.display()))?;
    Ok(Body::new(bytes))
}

/// Loads the bodies; with neither option, one empty body.
pub fn load(body: Option<&Path>, list: Option<&Path>) -> anyhow::Result<Vec<Body>> {
    let mut out = Vec::new();
    if let Some(p) = body {
        out.push(read(p)?);
    }
    if let Some(l) = list {
        let text = std::fs::read_to_string(l)
            .map_err(|e| anyhow::anyhow!("cannot read body list {}: {e}", l.display()))?;
        let paths = parse_list(&text);
        anyhow::ensure!(!paths.is_empty(), "body list {} names no file", l.display());
        for p in paths {
            out.push(read(&p)?);
        }
    }
    if out.is_empty() {
        out.push(Body::new(Bytes::new()));
    }
    Ok(out)
}

/// Hands out bodies in a cycle shared by all workers.
#[derive(Debug)]
pub struct Cycle {
    bodies: Arc<[Body]>,
    next: AtomicUsize,
}

impl Cycle {
    /// A cycle over `bodies` (at least one).
    ///
    /// # Panics
    /// If `bodies` is empty ([`load`] never returns an empty list).
    pub fn new(bodies: Vec<Body>) -> Self {
        assert!(!bodies.is_empty(), "at least one body");
        Cycle {
            bodies: bodies.into(),
            next: AtomicUsize::new(0),
        }
    }

    /// The next body.
    pub fn next_body(&self) -> &Body {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.bodies.len();
        &self.bodies[i]
    }

    /// How many distinct bodies there are.
    pub fn len(&self) -> usize {
        self.bodies.len()
    }

    /// Never true.
    pub fn is_empty(&self) -> bool {
        self.bodies.is_empty()
    }

    /// Total size of the distinct bodies.
    pub fn total_bytes(&self) -> usize {
        self.bodies.iter().map(|b| b.bytes.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_skips_blanks_and_comments() {
        let l = parse_list("a.json\n\n  # comment\n /abs/b.json \r\nc.json");
        assert_eq!(
            l,
            vec![
                PathBuf::from("a.json"),
                PathBuf::from("/abs/b.json"),
                PathBuf::from("c.json")
            ]
        );
    }

    #[test]
    fn cycle_goes_round_in_order() {
        let c = Cycle::new(vec![Body::new("a"), Body::new("b"), Body::new("c")]);
        let got: Vec<_> = (0..7)
            .map(|_| c.next_body().bytes.clone())
            .collect::<Vec<_>>();
        let want: Vec<Bytes> = ["a", "b", "c", "a", "b", "c", "a"]
            .iter()
            .map(|s| Bytes::from_static(s.as_bytes()))
            .collect();
        assert_eq!(got, want);
        assert_eq!(c.total_bytes(), 3);
    }

    #[test]
    fn load_files_and_lists() {
        let dir = std::env::temp_dir().join(format!("loadgen-bodies-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("tmp dir");
        let a = dir.join("a.json");
        let b = dir.join("b.json");
        std::fs::write(&a, r#"{"request":{"uid":"A"}}"#).expect("write");
        std::fs::write(&b, "plain").expect("write");
        let list = dir.join("list");
        std::fs::write(&list, format!("{}\n{}\n", a.display(), b.display())).expect("write");
        let got = load(Some(&b), Some(&list)).expect("load");
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].uid, None);
        assert_eq!(got[1].uid.as_deref(), Some("A"));
        assert!(load(None, Some(&dir.join("missing"))).is_err());
        let empty = dir.join("empty");
        std::fs::write(&empty, "# nothing\n").expect("write");
        assert!(load(None, Some(&empty)).is_err());
        assert_eq!(load(None, None).expect("default").len(), 1);
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}

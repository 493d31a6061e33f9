//! Image references: pattern matching, normalisation and digest pinning.

use std::borrow::Cow;

use globset::{GlobBuilder, GlobMatcher};

/// A compiled `allow.images` pattern.
#[derive(Debug, Clone)]
pub struct ImagePattern {
    text: String,
    matcher: Matcher,
}

/// Most patterns are a literal or a literal followed by one `*` or `**`; those are matched
/// without the glob engine, which costs far more than a prefix comparison on the admission path.
#[derive(Debug, Clone)]
enum Matcher {
    Exact,
    /// `literal*` (rest must not contain `/`) or `literal**` (anything).
    Prefix {
        len: usize,
        cross_slash: bool,
    },
    Glob(GlobMatcher),
}

const GLOB_META: &[char] = &['*', '?', '[', ']', '{', '}', '\\'];

impl ImagePattern {
    /// Compiles a pattern: `*` stops at `/`, `**` crosses it, `?` is one character, `[…]` a class.
    pub fn new(text: &str) -> Result<Self, globset::Error> {
        let glob = GlobBuilder::new(text)
            .literal_separator(true)
            .backslash_escape(true)
            .build()?;
        let (literal, wildcard) = match text.strip_suffix("**") {
            Some(l) => (l, Some(true)),
            None => match text.strip_suffix('*') {
                Some(l) => (l, Some(false)),
                None => (text, None),
            },
        };
        let matcher = if literal.contains(GLOB_META) {
            Matcher::Glob(glob.compile_matcher())
        } else {
            match wildcard {
                None => Matcher::Exact,
                Some(cross_slash) => Matcher::Prefix {
                    len: literal.len(),
                    cross_slash,
                },
            }
        };
        Ok(ImagePattern {
            text: text.to_owned(),
            matcher,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    fn is_match(&self, image: &str) -> bool {
        match &self.matcher {
            Matcher::Exact => image == self.text,
            Matcher::Prefix { len, cross_slash } => {
                image.len() >= *len
                    && image.as_bytes()[..*len] == self.text.as_bytes()[..*len]
                    && (*cross_slash || !image[*len..].contains('/'))
            }
            Matcher::Glob(g) => g.is_match(image),
        }
    }
}

/// Whether `image`, as written or fully qualified, matches one of `patterns`.
pub fn allowed(patterns: &[ImagePattern], image: &str) -> bool {
    if patterns.iter().any(|p| p.is_match(image)) {
        return true;
    }
    let normalized = normalize(image);
    matches!(normalized, Cow::Owned(_)) && patterns.iter().any(|p| p.is_match(&normalized))
}

/// The fully qualified form of an image reference, as the container runtime resolves it:
/// `nginx` → `docker.io/library/nginx:latest`, `org/app@sha256:…` → `docker.io/org/app@sha256:…`.
pub fn normalize(image: &str) -> Cow<'_, str> {
    let (name, suffix_start) = match image.find('@') {
        Some(at) => (&image[..at], at),
        None => {
            // A tag is a ':' after the last '/'.
            let last_slash = image.rfind('/').map_or(0, |i| i + 1);
            match image[last_slash..].find(':') {
                Some(colon) => (&image[..last_slash + colon], last_slash + colon),
                None => (image, image.len()),
            }
        }
    };
    let suffix = &image[suffix_start..];
    let first = name.split('/').next().unwrap_or("");
    let has_registry =
        name.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    let needs_tag = suffix.is_empty();
    if has_registry && !needs_tag {
        return Cow::Borrowed(image);
    }
    let mut out = String::with_capacity(image.len() + 24);
    if !has_registry {
        out.push_str("docker.io/");
        if !name.contains('/') {
            out.push_str("library/");
        }
    }
    out.push_str(name);
    if needs_tag {
        out.push_str(":latest");
    } else {
        out.push_str(suffix);
    }
    Cow::Owned(out)
}

/// Whether the reference is pinned by a well-formed sha256 digest.
pub fn has_digest(image: &str) -> bool {
    const MARK: &[u8] = b"@sha256:";
    const HEX: usize = 64;
    let b = image.as_bytes();
    let Some(name_len) = b.len().checked_sub(MARK.len() + HEX) else {
        return false;
    };
    name_len > 0
        && &b[name_len..name_len + MARK.len()] == MARK
        && b[name_len + MARK.len()..]
            .iter()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn normalizes_like_the_runtime() {
        let cases = [
            ("nginx", "docker.io/library/nginx:latest"),
            ("nginx:1.25", "docker.io/library/nginx:1.25"),
            ("org/app", "docker.io/org/app:latest"),
            ("localhost/app", "localhost/app:latest"),
            (
                "registry.example:5000/app",
                "registry.example:5000/app:latest",
            ),
            (
                "registry.example:5000/app:v1",
                "registry.example:5000/app:v1",
            ),
            (
                "mcr.microsoft.com/oss/kubernetes/pause:3.9",
                "mcr.microsoft.com/oss/kubernetes/pause:3.9",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(normalize(input), want, "{input}");
        }
        let pinned = format!("org/app@{DIGEST}");
        assert_eq!(normalize(&pinned), format!("docker.io/org/app@{DIGEST}"));
    }

    #[test]
    fn patterns_respect_path_separators() {
        let p = |s| ImagePattern::new(s).expect("valid pattern");
        let pats = [
            p("registry.example/csi-proxy@sha256:*"),
            p("docker.io/library/*"),
        ];
        assert!(allowed(
            &pats,
            &format!("registry.example/csi-proxy@{DIGEST}")
        ));
        assert!(allowed(&pats, "nginx:1.25"));
        assert!(!allowed(&pats, "registry.example/csi-proxy:v1"));
        assert!(!allowed(&pats, "registry.example/evil/csi-proxy@sha256:00"));
        let exact = [p("registry.example/app:v1")];
        assert!(allowed(&exact, "registry.example/app:v1"));
        assert!(!allowed(&exact, "registry.example/app:v10"));
        let glob = [p("registry.example/app:v[12]")];
        assert!(allowed(&glob, "registry.example/app:v2"));
        assert!(!allowed(&glob, "registry.example/app:v3"));
        let deep = [p("mcr.microsoft.com/oss/**")];
        assert!(allowed(
            &deep,
            "mcr.microsoft.com/oss/kubernetes/kube-proxy:v1.30"
        ));
        assert!(!allowed(&deep, "mcr.microsoft.com.evil.io/oss/x"));
    }

    #[test]
    fn digest_pinning() {
        assert!(has_digest(&format!("registry.example/app@{DIGEST}")));
        assert!(has_digest(&format!("registry.example/app:v1@{DIGEST}")));
        assert!(!has_digest("registry.example/app:v1"));
        assert!(!has_digest("registry.example/app@sha256:abc"));
        assert!(!has_digest(&format!("@{DIGEST}")));
        assert!(!has_digest(&format!("app@{}", DIGEST.to_uppercase())));
    }
}

//! Windows host paths for `hostPath` checks: `C:\var\lib\kubelet`, `c:/var/lib/kubelet`,
//! `\\.\pipe\name`, `\\server\share\dir`.
//!
//! A path rooted without a drive (`/var/lib/kubelet`) resolves against the current drive of the
//! kubelet, which is the system drive `C:` on every supported Windows node; it is treated as such.
//!
//! Paths are compared by component and case-insensitively (NTFS and the object manager are
//! case-insensitive by default); `/` and `\` are the same separator. A path with a `..` component
//! is never inside anything: the kubelet would resolve it on the host, after us.

/// A parsed absolute Windows path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WinPath {
    root: String,
    components: Vec<String>,
}

/// Why a path cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WinPathError {
    /// Not rooted at a drive, a device (`\\.\`), or a UNC share.
    #[error("must be an absolute Windows path (C:\\dir, \\\\.\\pipe\\name or \\\\server\\share)")]
    NotAbsolute,
    /// Contains a `..` component.
    #[error("must not contain '..'")]
    ParentComponent,
}

fn is_sep(c: char) -> bool {
    c == '\\' || c == '/'
}

impl WinPath {
    /// Parses an absolute path.
    pub fn parse(path: &str) -> Result<Self, WinPathError> {
        let (root, rest) = split_root(path).ok_or(WinPathError::NotAbsolute)?;
        let mut components = Vec::new();
        for part in rest.split(is_sep) {
            match part {
                "" | "." => {}
                ".." => return Err(WinPathError::ParentComponent),
                p => components.push(p.to_lowercase()),
            }
        }
        Ok(WinPath { root, components })
    }

    /// Whether `self` is `prefix` or lies below it.
    pub fn starts_with(&self, prefix: &WinPath) -> bool {
        self.root == prefix.root
            && self.components.len() >= prefix.components.len()
            && self
                .components
                .iter()
                .zip(&prefix.components)
                .all(|(a, b)| a == b)
    }
}

/// Splits off the root: `c:` for drives, `\\.\pipe`-style device roots and `\\server\share` for
/// UNC paths (the first two components belong to the root).
fn split_root(path: &str) -> Option<(String, &str)> {
    let b = path.as_bytes();
    if b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b':' {
        let rest = &path[2..];
        // `C:foo` is relative to the current directory of drive C.
        if !rest.is_empty() && !rest.starts_with(is_sep) {
            return None;
        }
        return Some((format!("{}:", (b[0] as char).to_ascii_lowercase()), rest));
    }
    let mut chars = path.chars();
    if chars.next().is_some_and(is_sep) && chars.next().is_some_and(is_sep) {
        let rest = &path[2..];
        let mut parts = rest.splitn(3, is_sep);
        let host = parts.next().filter(|h| !h.is_empty())?;
        let share = parts.next().filter(|s| !s.is_empty() && *s != "..")?;
        let tail = parts.next().unwrap_or("");
        return Some((
            format!("\\\\{}\\{}", host.to_lowercase(), share.to_lowercase()),
            tail,
        ));
    }
    if path.starts_with(is_sep) {
        return Some(("c:".to_owned(), path));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> WinPath {
        WinPath::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn prefix_by_component_case_insensitive() {
        let kubelet = p(r"C:\var\lib\kubelet");
        assert!(p(r"C:\var\lib\kubelet").starts_with(&kubelet));
        assert!(p(r"c:/var/lib/kubelet/pods").starts_with(&kubelet));
        assert!(p(r"C:\VAR\Lib\Kubelet\\plugins\").starts_with(&kubelet));
        assert!(!p(r"C:\var\lib\kubelet-evil").starts_with(&kubelet));
        assert!(!p(r"D:\var\lib\kubelet").starts_with(&kubelet));
        assert!(!p(r"C:\var\lib").starts_with(&kubelet));
        assert!(p(r"C:\").starts_with(&p("C:")));
        assert!(p(r"C:\Windows\System32").starts_with(&p(r"C:\")));
    }

    #[test]
    fn pipes_and_unc() {
        let pipes = p(r"\\.\pipe");
        assert!(p(r"\\.\pipe\csi-proxy-filesystem-v1").starts_with(&pipes));
        assert!(!p(r"\\server\pipe\x").starts_with(&pipes));
        assert!(p(r"\\Server\Share\dir").starts_with(&p(r"\\server\share")));
    }

    #[test]
    fn rejects_relative_and_traversal() {
        assert_eq!(WinPath::parse(r"var\lib"), Err(WinPathError::NotAbsolute));
        assert_eq!(WinPath::parse(r"C:var"), Err(WinPathError::NotAbsolute));
        assert!(p("/var/lib/kubelet").starts_with(&p(r"C:\var\lib")));
        assert_eq!(WinPath::parse(r"\\"), Err(WinPathError::NotAbsolute));
        assert_eq!(
            WinPath::parse(r"C:\var\lib\kubelet\..\..\..\Windows"),
            Err(WinPathError::ParentComponent)
        );
        assert_eq!(WinPath::parse(r"\\.\.."), Err(WinPathError::NotAbsolute));
    }
}

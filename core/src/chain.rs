//! An error with its causes, for logs and one-line refusals.

use std::error::Error;
use std::fmt;

/// Displays an error and each of its causes once: `outer: cause: root cause`. Every error type
/// in hostgate displays only its own layer and keeps the cause in `source()`, so this is the one
/// way to print a whole failure.
#[derive(Debug, Clone, Copy)]
pub struct Chain<'a>(pub &'a dyn Error);

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(s) = source {
            write!(f, ": {s}")?;
            source = s.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] Middle);

    #[derive(Debug, thiserror::Error)]
    #[error("middle")]
    struct Middle(#[source] std::io::Error);

    #[test]
    fn each_cause_is_printed_once_in_order() {
        let e = Outer(Middle(std::io::Error::other("root")));
        assert_eq!(Chain(&e).to_string(), "outer: middle: root");
        let alone = std::io::Error::other("alone");
        assert_eq!(Chain(&alone).to_string(), "alone");
    }
}

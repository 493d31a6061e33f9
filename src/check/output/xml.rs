//! Just enough XML writing for JUnit reports: escaping that is correct for any input.

use std::fmt::Write as _;

/// Escapes text for an XML attribute value (in double quotes) or element content. Characters
/// XML 1.0 cannot carry at all (most control characters, lone surrogates cannot occur in Rust
/// strings, U+FFFE/U+FFFF) are written as `\u{…}` instead.
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Kept in content, but attribute normalisation would turn them into spaces.
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            '\t' => out.push_str("&#9;"),
            c if allowed(c) => out.push(c),
            c => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
        }
    }
    out
}

/// XML 1.0 `Char`, less the discouraged C1 controls.
fn allowed(c: char) -> bool {
    matches!(c, '\u{20}'..='\u{7e}' | '\u{a0}'..='\u{d7ff}' | '\u{e000}'..='\u{fffd}' | '\u{10000}'..)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_replaces_forbidden_characters() {
        assert_eq!(escape("a<b>&\"c'"), "a&lt;b&gt;&amp;&quot;c&apos;");
        assert_eq!(escape("x\u{1}y\u{fffe}\u{85}"), "x\\u{1}y\\u{fffe}\\u{85}");
        assert_eq!(escape("l1\nl2"), "l1&#10;l2");
        assert_eq!(escape("ünï 日本"), "ünï 日本");
    }
}

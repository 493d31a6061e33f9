//! The CRI container log format, as containerd writes it and `kubectl logs` reads it.
//!
//! Each line is `<RFC 3339 timestamp with nanoseconds> <stdout|stderr> <F|P> <text>`: `F` ends a
//! line of the container's output, `P` is a piece of a longer line that continues in the next
//! record of the same stream (containerd splits lines longer than `max_container_log_line_size`).

use std::fs;
use std::path::Path;

use crate::HarnessError;

/// Which output stream a log record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// One record of a CRI log file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// The timestamp as written (RFC 3339, nanoseconds).
    pub time: String,
    pub stream: Stream,
    /// `true` for a `P` record: the line continues in the next record of this stream.
    pub partial: bool,
    pub text: String,
}

/// Parses every record of `text`; `path` only names the source in errors.
pub fn parse_cri_log(path: &str, text: &str) -> Result<Vec<LogLine>, HarnessError> {
    text.lines()
        .enumerate()
        .map(|(i, line)| {
            parse_line(line).ok_or_else(|| HarnessError::LogFormat {
                path: path.to_owned(),
                line: i + 1,
                text: line.to_owned(),
            })
        })
        .collect()
}

fn parse_line(line: &str) -> Option<LogLine> {
    let mut parts = line.splitn(4, ' ');
    let time = parts.next()?;
    let stream = match parts.next()? {
        "stdout" => Stream::Stdout,
        "stderr" => Stream::Stderr,
        _ => return None,
    };
    let partial = match parts.next()? {
        "F" => false,
        "P" => true,
        _ => return None,
    };
    // An empty output line is written as `… F ` or, by some writers, `… F`.
    let text = parts.next().unwrap_or("");
    if time.len() < 20 || !time.contains('T') {
        return None;
    }
    Some(LogLine {
        time: time.to_owned(),
        stream,
        partial,
        text: text.to_owned(),
    })
}

/// Joins partial records with the rest of their line, per stream, into whole lines, in the
/// order in which the lines were completed.
pub fn join_partials(records: &[LogLine]) -> Vec<(Stream, String)> {
    let mut pending: [String; 2] = Default::default();
    let mut out = Vec::new();
    for r in records {
        let slot = &mut pending[r.stream as usize];
        slot.push_str(&r.text);
        if !r.partial {
            out.push((r.stream, std::mem::take(slot)));
        }
    }
    for (i, rest) in pending.into_iter().enumerate() {
        if !rest.is_empty() {
            let stream = if i == 0 {
                Stream::Stdout
            } else {
                Stream::Stderr
            };
            out.push((stream, rest));
        }
    }
    out
}

/// Reads a CRI log file into whole `(stream, line)` pairs (partial records joined).
pub fn read_cri_log(path: &Path) -> Result<Vec<(Stream, String)>, HarnessError> {
    let text = fs::read_to_string(path)
        .map_err(|e| HarnessError::io(format!("reading {}", path.display()), e))?;
    Ok(join_partials(&parse_cri_log(
        &path.display().to_string(),
        &text,
    )?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_joins() {
        let text = "2024-01-02T03:04:05.123456789Z stdout F out\n\
                    2024-01-02T03:04:05.2Z stderr P er\n\
                    2024-01-02T03:04:05.3Z stdout F two words \n\
                    2024-01-02T03:04:05.4Z stderr F r\n\
                    2024-01-02T03:04:05.5Z stdout F\n";
        let records = parse_cri_log("t", text).expect("parse");
        assert_eq!(records.len(), 5);
        assert!(records[1].partial);
        assert_eq!(records[2].text, "two words ");
        assert_eq!(
            join_partials(&records),
            vec![
                (Stream::Stdout, "out".to_owned()),
                (Stream::Stdout, "two words ".to_owned()),
                (Stream::Stderr, "err".to_owned()),
                (Stream::Stdout, String::new()),
            ]
        );
    }

    #[test]
    fn rejects_other_lines() {
        for bad in [
            "hello",
            "2024-01-02T03:04:05Z stdin F x",
            "2024-01-02T03:04:05Z stdout X x",
        ] {
            assert!(parse_cri_log("t", bad).is_err(), "{bad}");
        }
    }
}

//! Container logs: the CRI log file format (what containerd writes and `kubectl logs` reads)
//! and the agent's console output.
//!
//! One record per line: `<RFC3339Nano timestamp> <stdout|stderr> <F|P> <content>\n`. A line
//! longer than [`MAX_LOG_LINE`] bytes is cut into partial records (`P`) followed by a full one
//! (`F`), like containerd's `max_container_log_line_size` (16 KiB by default).

use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

/// containerd's default maximum log line size; longer lines are split.
pub const MAX_LOG_LINE: usize = 16 * 1024;

/// A standard stream of a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

impl Stream {
    /// `stdout` or `stderr`, as in the CRI log format.
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

impl fmt::Display for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Go's `time.RFC3339Nano` in UTC: `2006-01-02T15:04:05.999999999Z`, trailing zeros of the
/// fraction removed (and the dot with them when it is zero), as containerd writes it.
pub fn rfc3339_nano(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let nanos = since.subsec_nanos();
    let days = i64::try_from(secs / 86_400).unwrap_or(i64::MAX);
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    let mut out = format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    );
    if nanos != 0 {
        let frac = format!("{nanos:09}");
        out.push('.');
        out.push_str(frac.trim_end_matches('0'));
    }
    out.push('Z');
    out
}

/// Howard Hinnant's `civil_from_days`: days since 1970-01-01 → (year, month, day).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    (
        y,
        u32::try_from(m).unwrap_or(1),
        u32::try_from(d).unwrap_or(1),
    )
}

/// One CRI log record, newline included.
pub fn cri_record(timestamp: &str, stream: Stream, partial: bool, content: &[u8]) -> Vec<u8> {
    let tag = if partial { "P" } else { "F" };
    let mut out = Vec::with_capacity(timestamp.len() + content.len() + 12);
    out.extend_from_slice(timestamp.as_bytes());
    out.push(b' ');
    out.extend_from_slice(stream.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(tag.as_bytes());
    out.push(b' ');
    out.extend_from_slice(content);
    out.push(b'\n');
    out
}

/// Cuts a byte stream into log records: complete lines (without their `\n`) are full records;
/// a line that reaches `max` bytes without a newline is emitted as a partial record.
#[derive(Debug)]
pub struct LineSplitter {
    buf: Vec<u8>,
    max: usize,
}

impl LineSplitter {
    /// A splitter for records of at most `max` bytes (at least 1).
    pub fn new(max: usize) -> Self {
        Self {
            buf: Vec::new(),
            max: max.max(1),
        }
    }

    /// Feeds bytes; calls `emit(content, partial)` for every record they complete. A buffer
    /// that reaches `max` bytes is held until the next byte shows whether the line ends there.
    pub fn push(&mut self, mut data: &[u8], emit: &mut impl FnMut(&[u8], bool)) {
        while let Some(&first) = data.first() {
            if self.buf.len() >= self.max {
                if first == b'\n' {
                    emit(&self.buf, false);
                    data = &data[1..];
                } else {
                    emit(&self.buf, true);
                }
                self.buf.clear();
                continue;
            }
            let room = self.max - self.buf.len();
            let window = &data[..data.len().min(room)];
            match window.iter().position(|b| *b == b'\n') {
                Some(nl) => {
                    if self.buf.is_empty() {
                        emit(&window[..nl], false);
                    } else {
                        self.buf.extend_from_slice(&window[..nl]);
                        emit(&self.buf, false);
                        self.buf.clear();
                    }
                    data = &data[nl + 1..];
                }
                None => {
                    self.buf.extend_from_slice(window);
                    data = &data[window.len()..];
                }
            }
        }
    }

    /// Ends the stream: an unterminated last line is emitted as a full record.
    pub fn finish(&mut self, emit: &mut impl FnMut(&[u8], bool)) {
        if !self.buf.is_empty() {
            emit(&self.buf, false);
            self.buf.clear();
        }
    }
}

/// Where the agent shows container output besides the log files.
pub trait LogSink: Send + Sync + fmt::Debug {
    /// One record of `container`'s `stream`.
    fn record(&self, container: &str, stream: Stream, content: &[u8], partial: bool);
}

/// Writes `[<container>] <line>` to the agent's standard output (both streams; a partial
/// record is shown as a line of its own).
#[derive(Debug, Default, Clone, Copy)]
pub struct ConsoleSink;

impl LogSink for ConsoleSink {
    fn record(&self, container: &str, _stream: Stream, content: &[u8], _partial: bool) {
        let mut line = Vec::with_capacity(container.len() + content.len() + 4);
        line.push(b'[');
        line.extend_from_slice(container.as_bytes());
        line.extend_from_slice(b"] ");
        line.extend_from_slice(content);
        line.push(b'\n');
        // Console output is best effort: a closed stdout must not stop the container.
        let _ = io::stdout().lock().write_all(&line);
    }
}

/// Collects records in memory (tests, embedding).
#[derive(Debug, Default)]
pub struct MemorySink {
    records: Mutex<Vec<(String, Stream, String)>>,
}

impl MemorySink {
    /// Everything recorded so far: container, stream, content (lossy UTF-8).
    pub fn records(&self) -> Vec<(String, Stream, String)> {
        self.records
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl LogSink for MemorySink {
    fn record(&self, container: &str, stream: Stream, content: &[u8], _partial: bool) {
        self.records
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((
                container.to_owned(),
                stream,
                String::from_utf8_lossy(content).into_owned(),
            ));
    }
}

/// Reads `reader` to its end and writes every record to `file` (CRI format) and `sink`.
/// Write errors on the file are reported once and otherwise ignored: the container keeps
/// running, as with containerd.
pub(crate) fn pump(
    mut reader: impl Read,
    stream: Stream,
    container: &str,
    file: Option<&Mutex<File>>,
    sink: Option<&Arc<dyn LogSink>>,
) {
    let mut splitter = LineSplitter::new(MAX_LOG_LINE);
    let mut buf = vec![0u8; 8192];
    let mut file_failed = false;
    let mut emit = |content: &[u8], partial: bool| {
        if let Some(file) = file {
            let record = cri_record(&rfc3339_nano(SystemTime::now()), stream, partial, content);
            let result = file
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .write_all(&record);
            if let Err(err) = result
                && !file_failed
            {
                file_failed = true;
                tracing::warn!(container, %stream, error = %err, "cannot write the container log file");
            }
        }
        if let Some(sink) = sink {
            sink.record(container, stream, content, partial);
        }
    };
    loop {
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => splitter.push(&buf[..n], &mut emit),
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => {
                tracing::warn!(container, %stream, error = %err, "cannot read container output");
                break;
            }
        }
    }
    splitter.finish(&mut emit);
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn timestamps_like_go_rfc3339nano() {
        let at = |secs: u64, nanos: u32| rfc3339_nano(UNIX_EPOCH + Duration::new(secs, nanos));
        assert_eq!(at(0, 0), "1970-01-01T00:00:00Z");
        assert_eq!(at(0, 1), "1970-01-01T00:00:00.000000001Z");
        assert_eq!(at(1_700_000_000, 123_000_000), "2023-11-14T22:13:20.123Z");
        assert_eq!(
            at(1_700_000_000, 123_456_789),
            "2023-11-14T22:13:20.123456789Z"
        );
        assert_eq!(at(951_782_400, 500_000_000), "2000-02-29T00:00:00.5Z"); // leap day
        assert_eq!(at(4_107_542_399, 0), "2100-02-28T23:59:59Z"); // 2100 is not a leap year
        assert_eq!(at(4_107_542_400, 0), "2100-03-01T00:00:00Z");
        assert_eq!(at(253_402_300_799, 0), "9999-12-31T23:59:59Z");
        assert_eq!(
            rfc3339_nano(UNIX_EPOCH - Duration::from_secs(1)),
            "1970-01-01T00:00:00Z"
        );
    }

    #[test]
    fn cri_records() {
        let ts = "2024-01-02T03:04:05.06Z";
        assert_eq!(
            cri_record(ts, Stream::Stdout, false, b"hello world"),
            b"2024-01-02T03:04:05.06Z stdout F hello world\n"
        );
        assert_eq!(
            cri_record(ts, Stream::Stderr, true, b""),
            b"2024-01-02T03:04:05.06Z stderr P \n"
        );
    }

    fn split(max: usize, chunks: &[&[u8]]) -> Vec<(String, bool)> {
        let mut s = LineSplitter::new(max);
        let mut out = Vec::new();
        let mut emit = |c: &[u8], p: bool| out.push((String::from_utf8_lossy(c).into_owned(), p));
        for chunk in chunks {
            s.push(chunk, &mut emit);
        }
        s.finish(&mut emit);
        out
    }

    fn recs(items: &[(&str, bool)]) -> Vec<(String, bool)> {
        items.iter().map(|(s, p)| ((*s).to_owned(), *p)).collect()
    }

    #[test]
    fn splitting_lines() {
        assert_eq!(
            split(100, &[b"a\nb", b"c\n\nd"]),
            recs(&[("a", false), ("bc", false), ("", false), ("d", false)])
        );
        // Long lines become partial records then a full one.
        assert_eq!(
            split(4, &[b"abcdefghij\n"]),
            recs(&[("abcd", true), ("efgh", true), ("ij", false)])
        );
        // Exactly max bytes then a newline: one full record, no empty partial.
        assert_eq!(
            split(4, &[b"abcd", b"\nxy\n"]),
            recs(&[("abcd", false), ("xy", false)])
        );
        assert_eq!(split(4, &[b"abcd\n"]), recs(&[("abcd", false)]));
        // Exactly max bytes at the end of the stream: one full record.
        assert_eq!(split(4, &[b"abcd"]), recs(&[("abcd", false)]));
        assert_eq!(
            split(4, &[b"abcd", b"e"]),
            recs(&[("abcd", true), ("e", false)])
        );
        assert_eq!(split(4, &[]), recs(&[]));
        assert_eq!(split(4, &[b"\n"]), recs(&[("", false)]));
        // Byte-at-a-time input gives the same result.
        let bytes = b"hello\nworld, this is long\nend";
        let one_by_one: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(split(8, &one_by_one), split(8, &[bytes]));
    }

    #[test]
    fn pump_writes_file_and_sink() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("0.log");
        let file = Mutex::new(File::create(&path).expect("create"));
        let sink: Arc<dyn LogSink> = Arc::new(MemorySink::default());
        pump(
            &b"one\ntwo"[..],
            Stream::Stderr,
            "c",
            Some(&file),
            Some(&sink),
        );
        let text = std::fs::read_to_string(&path).expect("read");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        for (line, want) in lines.iter().zip(["one", "two"]) {
            let mut parts = line.splitn(4, ' ');
            let ts = parts.next().expect("timestamp");
            assert!(ts.ends_with('Z') && ts.contains('T'), "{ts}");
            assert_eq!(parts.next(), Some("stderr"));
            assert_eq!(parts.next(), Some("F"));
            assert_eq!(parts.next(), Some(want));
        }
    }
}

//! Platform-neutral decisions of the Windows backend, compiled and tested everywhere: the job object name,
//! the `CreateProcessW` command line and environment block, job notification messages and
//! wait timeouts. `windows_backend.rs` only marshals these into Win32 calls.
//!
//! Strings are UTF-16 code units (`&[u16]`), as `OsStrExt::encode_wide` yields them on Windows.

use std::time::Duration;

use super::JobName;

/// Prefix of every job object name (`hostgate_<job name>`).
pub const JOB_OBJECT_PREFIX: &str = "hostgate_";

/// `JOB_OBJECT_MSG_ACTIVE_PROCESS_LIMIT`.
pub const JOB_OBJECT_MSG_ACTIVE_PROCESS_LIMIT: u32 = 3;
/// `JOB_OBJECT_MSG_ACTIVE_PROCESS_ZERO`.
pub const JOB_OBJECT_MSG_ACTIVE_PROCESS_ZERO: u32 = 4;
/// `JOB_OBJECT_MSG_NEW_PROCESS`.
pub const JOB_OBJECT_MSG_NEW_PROCESS: u32 = 6;
/// `JOB_OBJECT_MSG_EXIT_PROCESS`.
pub const JOB_OBJECT_MSG_EXIT_PROCESS: u32 = 7;
/// `JOB_OBJECT_MSG_ABNORMAL_EXIT_PROCESS`.
pub const JOB_OBJECT_MSG_ABNORMAL_EXIT_PROCESS: u32 = 8;
/// `JOB_OBJECT_MSG_JOB_MEMORY_LIMIT`.
pub const JOB_OBJECT_MSG_JOB_MEMORY_LIMIT: u32 = 10;

/// `INFINITE` for the Win32 wait functions.
pub const INFINITE: u32 = u32::MAX;

/// The Win32 object name of a job: `hostgate_<name>`.
pub fn job_object_name(name: &JobName) -> String {
    format!("{JOB_OBJECT_PREFIX}{name}")
}

/// `s` as a NUL-terminated UTF-16 string.
pub fn wide_nul(s: &str) -> Vec<u16> {
    s.encode_utf16().chain(std::iter::once(0)).collect()
}

const NUL: u16 = 0;
const SPACE: u16 = b' ' as u16;
const TAB: u16 = b'\t' as u16;
const QUOTE: u16 = b'"' as u16;
const BACKSLASH: u16 = b'\\' as u16;
const EQUALS: u16 = b'=' as u16;

/// The NUL-terminated command line for `CreateProcessW` (with a null `lpApplicationName`):
/// the program always in quotes (it cannot contain one), then each argument quoted by the
/// MSVC / `CommandLineToArgvW` rules, as Rust's `std` does: an argument is quoted when it is
/// empty or has a space or tab; inside quotes, `n` backslashes before a `"` become `2n + 1`
/// followed by `\"`, and `n` backslashes before the closing quote become `2n`.
pub fn command_line(program: &[u16], args: &[Vec<u16>]) -> Result<Vec<u16>, &'static str> {
    if program.is_empty() {
        return Err("the program must not be empty");
    }
    if program.contains(&NUL) || args.iter().any(|a| a.contains(&NUL)) {
        return Err("the program and arguments must not contain NUL characters");
    }
    if program.contains(&QUOTE) {
        return Err("the program path must not contain '\"'");
    }
    let mut cmd =
        Vec::with_capacity(program.len() + 3 + args.iter().map(|a| a.len() + 3).sum::<usize>());
    cmd.push(QUOTE);
    cmd.extend_from_slice(program);
    cmd.push(QUOTE);
    for arg in args {
        cmd.push(SPACE);
        append_arg(&mut cmd, arg);
    }
    cmd.push(NUL);
    Ok(cmd)
}

fn append_arg(cmd: &mut Vec<u16>, arg: &[u16]) {
    let quote = arg.is_empty() || arg.iter().any(|c| *c == SPACE || *c == TAB);
    if quote {
        cmd.push(QUOTE);
    }
    let mut backslashes = 0usize;
    for &c in arg {
        if c == BACKSLASH {
            backslashes += 1;
        } else {
            if c == QUOTE {
                cmd.extend(std::iter::repeat_n(BACKSLASH, backslashes + 1));
            }
            backslashes = 0;
        }
        cmd.push(c);
    }
    if quote {
        cmd.extend(std::iter::repeat_n(BACKSLASH, backslashes));
        cmd.push(QUOTE);
    }
}

/// Upper-cases ASCII letters only: the ordinal, case-insensitive order Windows uses for
/// environment names (for the ASCII names that matter here).
fn fold(c: u16) -> u16 {
    if (u16::from(b'a')..=u16::from(b'z')).contains(&c) {
        c - 32
    } else {
        c
    }
}

fn key_cmp(a: &[u16], b: &[u16]) -> std::cmp::Ordering {
    a.iter().map(|c| fold(*c)).cmp(b.iter().map(|c| fold(*c)))
}

/// The `CREATE_UNICODE_ENVIRONMENT` block for exactly `vars`: `NAME=value\0…\0`, sorted by
/// name case-insensitively as Windows expects; a later duplicate name (in any case) replaces
/// an earlier one. Names must be non-empty and contain no `=` after the first character (a
/// leading `=` is allowed, as in `=C:`); nothing may contain NUL.
pub fn environment_block(vars: &[(Vec<u16>, Vec<u16>)]) -> Result<Vec<u16>, &'static str> {
    let mut sorted: Vec<&(Vec<u16>, Vec<u16>)> = Vec::with_capacity(vars.len());
    for var in vars {
        let (key, value) = var;
        if key.is_empty() {
            return Err("environment variable names must not be empty");
        }
        if key[1..].contains(&EQUALS) {
            return Err("environment variable names must not contain '='");
        }
        if key.contains(&NUL) || value.contains(&NUL) {
            return Err("environment variables must not contain NUL characters");
        }
        match sorted.iter().position(|(k, _)| key_cmp(k, key).is_eq()) {
            Some(i) => sorted[i] = var,
            None => sorted.push(var),
        }
    }
    sorted.sort_by(|(a, _), (b, _)| key_cmp(a, b));
    let mut block = Vec::new();
    for (key, value) in sorted {
        block.extend_from_slice(key);
        block.push(EQUALS);
        block.extend_from_slice(value);
        block.push(NUL);
    }
    if block.is_empty() {
        block.push(NUL);
    }
    block.push(NUL);
    Ok(block)
}

/// A job object notification read from its I/O completion port
/// (`lpNumberOfBytesTransferred` = message, `lpOverlapped` = process id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobMessage {
    /// The last process of the job exited.
    ActiveProcessZero,
    /// A process was added to the job.
    NewProcess(u32),
    /// A process exited.
    ExitProcess(u32),
    /// A process exited abnormally (unhandled exception, …).
    AbnormalExitProcess(u32),
    /// A process could not be created because of the active process limit.
    ActiveProcessLimit,
    /// A process tried to commit memory beyond the job memory limit.
    JobMemoryLimit(u32),
    /// Any other message (time limits, notification limits, …).
    Other(u32),
}

impl JobMessage {
    /// Decodes a completion packet.
    pub fn from_packet(message: u32, process_id: usize) -> Self {
        let pid = u32::try_from(process_id).unwrap_or(u32::MAX);
        match message {
            JOB_OBJECT_MSG_ACTIVE_PROCESS_ZERO => Self::ActiveProcessZero,
            JOB_OBJECT_MSG_NEW_PROCESS => Self::NewProcess(pid),
            JOB_OBJECT_MSG_EXIT_PROCESS => Self::ExitProcess(pid),
            JOB_OBJECT_MSG_ABNORMAL_EXIT_PROCESS => Self::AbnormalExitProcess(pid),
            JOB_OBJECT_MSG_ACTIVE_PROCESS_LIMIT => Self::ActiveProcessLimit,
            JOB_OBJECT_MSG_JOB_MEMORY_LIMIT => Self::JobMemoryLimit(pid),
            other => Self::Other(other),
        }
    }
}

/// What the notification thread has seen so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Notifications {
    /// Incremented for every message: waiters compare it to detect news.
    pub generation: u64,
    /// `JOB_OBJECT_MSG_JOB_MEMORY_LIMIT` messages.
    pub memory_limit_events: u64,
    /// `JOB_OBJECT_MSG_ACTIVE_PROCESS_LIMIT` messages.
    pub process_limit_events: u64,
    /// `JOB_OBJECT_MSG_ACTIVE_PROCESS_ZERO` messages.
    pub emptied: u64,
}

impl Notifications {
    /// Records one message.
    pub fn record(&mut self, message: JobMessage) {
        self.generation = self.generation.wrapping_add(1);
        match message {
            JobMessage::JobMemoryLimit(_) => self.memory_limit_events += 1,
            JobMessage::ActiveProcessLimit => self.process_limit_events += 1,
            JobMessage::ActiveProcessZero => self.emptied += 1,
            JobMessage::NewProcess(_)
            | JobMessage::ExitProcess(_)
            | JobMessage::AbnormalExitProcess(_)
            | JobMessage::Other(_) => {}
        }
    }
}

/// A Win32 wait timeout for `d`: whole milliseconds rounded up, always finite
/// (at most `INFINITE - 1`, about 49.7 days; callers loop for longer waits).
pub fn wait_millis(d: Duration) -> u32 {
    u32::try_from(d.as_micros().div_ceil(1000))
        .unwrap_or(u32::MAX)
        .min(INFINITE - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(s: &str) -> Vec<u16> {
        s.encode_utf16().collect()
    }

    fn s(v: &[u16]) -> String {
        String::from_utf16(v).expect("utf-16")
    }

    #[test]
    fn object_name() {
        let name = JobName::new("kube-proxy_0").expect("name");
        assert_eq!(job_object_name(&name), "hostgate_kube-proxy_0");
        assert_eq!(wide_nul("ab"), vec![97, 98, 0]);
    }

    /// Expected strings follow the MSVC rules (and Rust std's tests for them).
    #[test]
    fn command_lines() {
        let cases: &[(&str, &[&str], &str)] = &[
            ("prog", &[], "\"prog\""),
            (
                "C:\\Program Files\\x.exe",
                &["a"],
                "\"C:\\Program Files\\x.exe\" a",
            ),
            ("p", &["aaa", "bbb", "ccc"], "\"p\" aaa bbb ccc"),
            ("p", &[""], "\"p\" \"\""),
            ("p", &["a b"], "\"p\" \"a b\""),
            ("p", &["a\tb"], "\"p\" \"a\tb\""),
            ("p", &["a\"b"], "\"p\" a\\\"b"),
            ("p", &["a\\\"b"], "\"p\" a\\\\\\\"b"),
            ("p", &["a\\b"], "\"p\" a\\b"),
            ("p", &["a b\\"], "\"p\" \"a b\\\\\""),
            ("p", &["a b\\\\"], "\"p\" \"a b\\\\\\\\\""),
            (
                "p",
                &["\\\\server\\share dir\\"],
                "\"p\" \"\\\\server\\share dir\\\\\"",
            ),
            ("p", &["\"quoted\""], "\"p\" \\\"quoted\\\""),
            (
                "p",
                &["-c", "echo 'hi there'"],
                "\"p\" -c \"echo 'hi there'\"",
            ),
            ("p", &["unicodé ✓"], "\"p\" \"unicodé ✓\""),
        ];
        for (program, args, want) in cases {
            let args: Vec<Vec<u16>> = args.iter().map(|a| w(a)).collect();
            let got = command_line(&w(program), &args).expect("valid");
            assert_eq!(got.last(), Some(&0), "NUL-terminated");
            assert_eq!(s(&got[..got.len() - 1]), *want, "{program} {args:?}");
        }
    }

    #[test]
    fn command_line_rejects() {
        assert!(command_line(&[], &[]).is_err());
        assert!(command_line(&w("a\"b"), &[]).is_err());
        assert!(command_line(&w("a\0b"), &[]).is_err());
        assert!(command_line(&w("p"), &[w("x\0")]).is_err());
    }

    #[test]
    fn environment_blocks() {
        let vars = |pairs: &[(&str, &str)]| -> Vec<(Vec<u16>, Vec<u16>)> {
            pairs.iter().map(|(k, v)| (w(k), w(v))).collect()
        };
        assert_eq!(environment_block(&[]).expect("empty"), vec![0, 0]);
        let block =
            environment_block(&vars(&[("b", "2"), ("A", "1"), ("Path", "C:\\x")])).expect("block");
        assert_eq!(s(&block), "A=1\0b=2\0Path=C:\\x\0\0");
        // Case-insensitive replacement keeps the later spelling and value.
        let block =
            environment_block(&vars(&[("PATH", "a"), ("x", "1"), ("Path", "b")])).expect("block");
        assert_eq!(s(&block), "Path=b\0x=1\0\0");
        // Empty values and a leading '=' are fine.
        let block = environment_block(&vars(&[("=C:", "C:\\"), ("E", "")])).expect("block");
        assert_eq!(s(&block), "=C:=C:\\\0E=\0\0");
        // Ordering is ordinal after ASCII upper-casing: '_' (0x5F) sorts after letters.
        let block = environment_block(&vars(&[("_A", "1"), ("z", "2")])).expect("block");
        assert_eq!(s(&block), "z=2\0_A=1\0\0");
        for bad in [("", "x"), ("A=B", "x"), ("A\0", "x"), ("A", "x\0")] {
            assert!(environment_block(&vars(&[bad])).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn messages() {
        let cases = [
            (4, 0, JobMessage::ActiveProcessZero),
            (6, 42, JobMessage::NewProcess(42)),
            (7, 42, JobMessage::ExitProcess(42)),
            (8, 42, JobMessage::AbnormalExitProcess(42)),
            (3, 0, JobMessage::ActiveProcessLimit),
            (10, 7, JobMessage::JobMemoryLimit(7)),
            (1, 0, JobMessage::Other(1)),
            (7, usize::MAX, JobMessage::ExitProcess(u32::MAX)),
        ];
        let mut n = Notifications::default();
        for (msg, pid, want) in cases {
            let got = JobMessage::from_packet(msg, pid);
            assert_eq!(got, want);
            n.record(got);
        }
        assert_eq!(
            n,
            Notifications {
                generation: 8,
                memory_limit_events: 1,
                process_limit_events: 1,
                emptied: 1,
            }
        );
    }

    #[test]
    fn wait_timeouts() {
        assert_eq!(wait_millis(Duration::ZERO), 0);
        assert_eq!(wait_millis(Duration::from_micros(1)), 1);
        assert_eq!(wait_millis(Duration::from_millis(1500)), 1500);
        assert_eq!(wait_millis(Duration::from_secs(u64::MAX)), INFINITE - 1);
    }
}

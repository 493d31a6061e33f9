//! Opening the standard streams containerd gives a task: FIFOs on Linux (containerd holds the
//! other end), named pipes on Windows.

use std::fs::{File, OpenOptions};
use std::io;

/// Opens `path` for the process's standard input (`input`) or an output stream.
///
/// An output FIFO is opened read-write so that the open never blocks, whether or not
/// containerd has opened its reading end yet; the shim's own descriptor is closed once the
/// process has its copy, so containerd still sees the end of the stream when the process and
/// its children are gone. An input FIFO is opened read-only without blocking, then switched
/// back to blocking reads.
#[cfg(unix)]
pub fn open(path: &str, input: bool) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    if !input {
        return OpenOptions::new().read(true).write(true).open(path);
    }
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let flags = nix::fcntl::fcntl(&file, nix::fcntl::FcntlArg::F_GETFL)?;
    let mut flags = nix::fcntl::OFlag::from_bits_truncate(flags);
    flags.remove(nix::fcntl::OFlag::O_NONBLOCK);
    nix::fcntl::fcntl(&file, nix::fcntl::FcntlArg::F_SETFL(flags))?;
    Ok(file)
}

/// Opens a named pipe (or file) containerd created for the task.
#[cfg(not(unix))]
pub fn open(path: &str, input: bool) -> io::Result<File> {
    open_pipe_client(path, input)
}

/// The Windows form, compiled and tested everywhere: containerd serves each stream as a named
/// pipe (`\\.\pipe\…`) that the shim opens as a client, reading or writing.
pub fn open_pipe_client(path: &str, input: bool) -> io::Result<File> {
    if input {
        OpenOptions::new().read(true).open(path)
    } else {
        OpenOptions::new().write(true).open(path)
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::io::{Read as _, Write as _};

    #[test]
    fn pipe_clients_read_and_write() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("stream");
        std::fs::write(&path, "in").expect("write");
        let p = path.to_str().expect("utf-8");
        let mut got = String::new();
        open_pipe_client(p, true)
            .expect("reader")
            .read_to_string(&mut got)
            .expect("read");
        assert_eq!(got, "in");
        open_pipe_client(p, false)
            .expect("writer")
            .write_all(b"x")
            .expect("write");
        assert!(open_pipe_client(&format!("{p}.missing"), true).is_err());
    }

    #[test]
    fn fifos_open_without_a_peer_and_deliver_data() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("out");
        nix::unistd::mkfifo(&out, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("fifo");
        let path = out.to_str().expect("utf-8");
        let mut writer = open(path, false).expect("opens without a reader");
        let mut reader = File::open(&out).expect("reader");
        writer.write_all(b"hello").expect("write");
        drop(writer);
        let mut got = String::new();
        reader.read_to_string(&mut got).expect("read to the end");
        assert_eq!(got, "hello");

        let input = dir.path().join("in");
        nix::unistd::mkfifo(&input, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("fifo");
        let path = input.to_str().expect("utf-8");
        let mut stdin = open(path, true).expect("opens without a writer");
        let mut feeder = OpenOptions::new().write(true).open(&input).expect("writer");
        feeder.write_all(b"in").expect("write");
        drop(feeder);
        let mut got = String::new();
        stdin.read_to_string(&mut got).expect("read");
        assert_eq!(got, "in");
    }
}

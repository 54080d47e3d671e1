//! Reading the task descriptor: from `--task FILE`, or from stdin when stdin
//! is a pipe or a regular file. A terminal or a socket on fd 0 is refused at
//! once instead of blocking: Airflow 3 hands its supervisor's comms socket
//! to the task as stdin, and a forgotten redirect in a shell would otherwise
//! wait forever for typing.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::path::{Path, PathBuf};

use crate::exit::ErrorKind;
use crate::task::descriptor::MAX_DESCRIPTOR_BYTES;

const REDIRECT_HINT: &str = "pass the descriptor with a redirect (`bq-backfill run < task.json`) or with `--task task.json`";

/// Why no descriptor could be read.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// fd 0 is a terminal.
    #[error("stdin is a terminal, not a task descriptor")]
    StdinIsTerminal,
    /// fd 0 is a socket (Airflow 3's supervisor channel, typically).
    #[error("stdin is a socket, not a task descriptor")]
    StdinIsSocket,
    /// fd 0 is not open.
    #[error("stdin is closed")]
    StdinClosed,
    /// The `--task` file could not be opened.
    #[error("cannot open task file `{}`", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Reading failed midway.
    #[error("cannot read {what}")]
    Read {
        what: String,
        #[source]
        source: io::Error,
    },
    /// More than 1 MiB: refused before parsing.
    #[error("{what} is larger than 1 MiB")]
    TooLarge { what: String },
    /// Nothing but whitespace.
    #[error("{what} is empty")]
    Empty { what: String },
}

impl InputError {
    /// How to fix it.
    pub fn hint(&self) -> String {
        match self {
            InputError::StdinIsTerminal | InputError::StdinClosed => REDIRECT_HINT.to_string(),
            InputError::StdinIsSocket => format!(
                "{REDIRECT_HINT}; under Airflow 3 stdin is the task supervisor's socket, so a redirect or --task is required"
            ),
            InputError::Open { .. } => "check the path given to --task (relative paths are relative to the working directory)".to_string(),
            InputError::Read { .. } => REDIRECT_HINT.to_string(),
            InputError::TooLarge { .. } => "a descriptor is a small JSON object; for many partitions use a start/end range rather than a list".to_string(),
            InputError::Empty { .. } => format!("{REDIRECT_HINT}; the input must be a JSON task descriptor"),
        }
    }

    /// What kind of error this is (its exit code and name).
    pub fn kind(&self) -> ErrorKind {
        match self {
            InputError::TooLarge { .. } => ErrorKind::InvalidDescriptor,
            _ => ErrorKind::NoInput,
        }
    }

    /// The process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        self.kind().code()
    }
}

/// What fd 0 is, as far as reading a descriptor is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StdinKind {
    /// A pipe, FIFO, regular file or character device: readable.
    Readable,
    Terminal,
    Socket,
    Closed,
}

/// Classifies a file descriptor with `isatty` and `fstat`.
pub fn stdin_kind(fd: BorrowedFd<'_>) -> StdinKind {
    let raw = fd.as_raw_fd();
    // SAFETY: `raw` is a valid open descriptor for the lifetime of `fd`;
    // `isatty` only queries it.
    if unsafe { libc::isatty(raw) } == 1 {
        return StdinKind::Terminal;
    }
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `st` points to writable memory of the right size; fstat
    // initialises it on success (checked before reading).
    let rc = unsafe { libc::fstat(raw, st.as_mut_ptr()) };
    if rc != 0 {
        return StdinKind::Closed;
    }
    // SAFETY: fstat returned 0, so `st` is initialised.
    let st = unsafe { st.assume_init() };
    if st.st_mode & libc::S_IFMT == libc::S_IFSOCK {
        StdinKind::Socket
    } else {
        StdinKind::Readable
    }
}

/// Reads at most [`MAX_DESCRIPTOR_BYTES`] from `r`; more is an error, and
/// nothing beyond the limit (plus one byte) is read.
pub fn read_capped(r: impl Read, what: &str) -> Result<Vec<u8>, InputError> {
    let mut buf = Vec::new();
    r.take(MAX_DESCRIPTOR_BYTES as u64 + 1)
        .read_to_end(&mut buf)
        .map_err(|source| InputError::Read {
            what: what.to_string(),
            source,
        })?;
    if buf.len() > MAX_DESCRIPTOR_BYTES {
        return Err(InputError::TooLarge {
            what: what.to_string(),
        });
    }
    if buf.iter().all(u8::is_ascii_whitespace) {
        return Err(InputError::Empty {
            what: what.to_string(),
        });
    }
    Ok(buf)
}

/// Reads the descriptor bytes: from `task` when given (`-` means stdin),
/// otherwise from `stdin`, which must be neither a terminal nor a socket.
pub fn read_descriptor<R: Read + AsFd>(
    task: Option<&Path>,
    stdin: R,
) -> Result<Vec<u8>, InputError> {
    match task {
        Some(path) if path != Path::new("-") => {
            let file = File::open(path).map_err(|source| InputError::Open {
                path: path.to_path_buf(),
                source,
            })?;
            read_capped(file, &format!("task file `{}`", path.display()))
        }
        _ => {
            match stdin_kind(stdin.as_fd()) {
                StdinKind::Terminal => return Err(InputError::StdinIsTerminal),
                StdinKind::Socket => return Err(InputError::StdinIsSocket),
                StdinKind::Closed => return Err(InputError::StdinClosed),
                StdinKind::Readable => {}
            }
            read_capped(stdin, "the descriptor on stdin")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exit;
    use std::io::{Seek, Write};
    use std::os::unix::net::UnixStream;

    fn file_with(bytes: &[u8]) -> File {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(bytes).unwrap();
        f.rewind().unwrap();
        f
    }

    #[test]
    fn reads_stdin_when_it_is_a_file() {
        let got = read_descriptor(None, file_with(b"{\"job\": \"x\"}")).unwrap();
        assert_eq!(got, b"{\"job\": \"x\"}");
    }

    #[test]
    fn task_file_wins_over_stdin() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("task.json");
        std::fs::write(&path, b"{}").unwrap();
        let (sock, _peer) = UnixStream::pair().unwrap();
        assert_eq!(read_descriptor(Some(&path), sock).unwrap(), b"{}");
    }

    #[test]
    fn dash_means_stdin() {
        let got = read_descriptor(Some(Path::new("-")), file_with(b"{ }")).unwrap();
        assert_eq!(got, b"{ }");
    }

    #[test]
    fn refuses_a_socket() {
        let (sock, _peer) = UnixStream::pair().unwrap();
        let err = read_descriptor(None, sock).unwrap_err();
        assert!(matches!(err, InputError::StdinIsSocket), "{err:?}");
        assert_eq!(err.exit_code(), exit::NO_INPUT);
        assert!(err.hint().contains("--task"));
    }

    #[test]
    fn missing_file() {
        let err = read_descriptor(Some(Path::new("/nonexistent/task.json")), file_with(b"{}"))
            .unwrap_err();
        assert!(matches!(err, InputError::Open { .. }));
        assert_eq!(err.exit_code(), exit::NO_INPUT);
    }

    #[test]
    fn size_cap_and_empty() {
        let big = vec![b' '; MAX_DESCRIPTOR_BYTES + 10];
        let err = read_descriptor(None, file_with(&big)).unwrap_err();
        assert!(matches!(err, InputError::TooLarge { .. }));
        assert_eq!(err.exit_code(), exit::INVALID_DESCRIPTOR);
        let exact = vec![b'x'; MAX_DESCRIPTOR_BYTES];
        assert_eq!(
            read_descriptor(None, file_with(&exact)).unwrap().len(),
            MAX_DESCRIPTOR_BYTES
        );
        let err = read_descriptor(None, file_with(b" \n\t")).unwrap_err();
        assert!(matches!(err, InputError::Empty { .. }));
        assert_eq!(err.exit_code(), exit::NO_INPUT);
    }

    #[test]
    fn cap_bounds_what_is_read() {
        // An endless source: reading must stop just past the cap.
        let err = read_capped(io::repeat(b'a'), "stream").unwrap_err();
        assert!(matches!(err, InputError::TooLarge { .. }));
    }
}

//! Task logs on the wire: which of an attempt's two logs a request names (`stream`), and how
//! big one chunk of a log may be. The executor keeps them as `stdout.log` and `stderr.log` in
//! the attempt's folder.

use std::fmt;
use std::str::FromStr;

/// Most bytes of a log in one `LogChunk`.
pub const LOG_CHUNK_BYTES: usize = 64 * 1024;

/// One of an attempt's logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogStream {
    Stdout,
    Stderr,
}

impl LogStream {
    /// The wire name: `stdout` or `stderr`.
    pub fn name(self) -> &'static str {
        match self {
            LogStream::Stdout => "stdout",
            LogStream::Stderr => "stderr",
        }
    }

    /// The file in the attempt's folder.
    pub fn file_name(self) -> &'static str {
        match self {
            LogStream::Stdout => "stdout.log",
            LogStream::Stderr => "stderr.log",
        }
    }

    /// The stream a request's `stream` field names (empty: stdout).
    pub fn from_wire(text: &str) -> Result<LogStream, UnknownStream> {
        if text.is_empty() {
            Ok(LogStream::Stdout)
        } else {
            text.parse()
        }
    }
}

impl fmt::Display for LogStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A `stream` that is neither `stdout` nor `stderr`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("stream {0:?} is unknown; expected stdout or stderr")]
pub struct UnknownStream(pub String);

impl FromStr for LogStream {
    type Err = UnknownStream;

    fn from_str(text: &str) -> Result<LogStream, UnknownStream> {
        match text {
            "stdout" => Ok(LogStream::Stdout),
            "stderr" => Ok(LogStream::Stderr),
            other => Err(UnknownStream(other.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_stream_is_stdout_and_only_the_two_names_parse() {
        assert_eq!(LogStream::from_wire(""), Ok(LogStream::Stdout));
        for s in [LogStream::Stdout, LogStream::Stderr] {
            assert_eq!(LogStream::from_wire(s.name()), Ok(s));
        }
        let e = LogStream::from_wire("../stdout").expect_err("not a stream");
        assert_eq!(
            e.to_string(),
            "stream \"../stdout\" is unknown; expected stdout or stderr"
        );
    }
}

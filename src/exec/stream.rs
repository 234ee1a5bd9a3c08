//! A long-running command's output as it arrives, line by line
//! ([`OutputStream`], from [`super::SshTransport::exec_stream`]).
//!
//! The remote command runs under a small POSIX `sh` wrapper ([`stream_line`])
//! that kills it, with its whole process group, as soon as its standard input
//! ends. Its standard input is the SSH channel, so the command dies when the
//! stream is stopped ([`OutputStream::stop`] sends EOF), when the connection
//! drops, and when the process holding the connection dies (even by
//! `kill -9`): no remote command outlives its reader.

use std::collections::VecDeque;

use russh::client::Msg;
use russh::{Channel, ChannelMsg};

use super::ExecError;
use crate::template::shell_quote;

/// The shell line that runs `command` (already rendered) until its standard
/// input ends: the command gets `/dev/null` as stdin, a watcher reads the
/// real one and, at its end, sends SIGTERM to the process group (the
/// session sshd made for the command). When the command ends by itself its
/// exit status is the wrapper's and the watcher is stopped.
pub fn stream_line(command: &str) -> String {
    format!(
        "exec 3<&0 </dev/null; sh -c {} 3<&- & c=$!; {{ while read -r _; do :; done <&3; kill -TERM 0; }} & w=$!; exec 3<&-; wait \"$c\"; s=$?; kill \"$w\" 2>/dev/null; exit \"$s\"",
        shell_quote(command)
    )
}

/// What a streamed command produced next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEvent {
    /// One line of standard output (without its line ending; lossy UTF-8).
    Stdout(String),
    /// One line of standard error.
    Stderr(String),
    /// The command ended: its exit code, or `None` when it was killed by a
    /// signal (or the channel closed without a status). The last event.
    Exit(Option<i32>),
}

/// Bytes cut into lines at `\n` (a `\r` before it is dropped).
#[derive(Debug, Default)]
struct LineBuf {
    buf: Vec<u8>,
}

fn text(bytes: &[u8]) -> String {
    let line = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    String::from_utf8_lossy(line).into_owned()
}

impl LineBuf {
    /// Adds `data`; returns the lines it completed.
    fn push(&mut self, data: &[u8]) -> Vec<String> {
        self.buf.extend_from_slice(data);
        let mut lines = Vec::new();
        while let Some(i) = self.buf.iter().position(|b| *b == b'\n') {
            let rest = self.buf.split_off(i + 1);
            lines.push(text(&self.buf));
            self.buf = rest;
        }
        lines
    }

    /// The last line, if it had no line ending.
    fn finish(&mut self) -> Option<String> {
        (!self.buf.is_empty()).then(|| text(&std::mem::take(&mut self.buf)))
    }
}

/// A running command's output, line by line, as it arrives.
pub struct OutputStream {
    host: String,
    channel: Channel<Msg>,
    stdout: LineBuf,
    stderr: LineBuf,
    ready: VecDeque<StreamEvent>,
    exit: Option<i32>,
    ended: bool,
}

impl OutputStream {
    pub(super) fn new(host: String, channel: Channel<Msg>) -> OutputStream {
        OutputStream { host, channel, stdout: LineBuf::default(), stderr: LineBuf::default(), ready: VecDeque::new(), exit: None, ended: false }
    }

    /// The next line or the end; `None` after [`StreamEvent::Exit`].
    pub async fn next(&mut self) -> Option<StreamEvent> {
        loop {
            if let Some(e) = self.ready.pop_front() {
                return Some(e);
            }
            if self.ended {
                return None;
            }
            match self.channel.wait().await {
                Some(ChannelMsg::Data { data }) => self.ready.extend(self.stdout.push(&data).into_iter().map(StreamEvent::Stdout)),
                Some(ChannelMsg::ExtendedData { data, ext: 1 }) => self.ready.extend(self.stderr.push(&data).into_iter().map(StreamEvent::Stderr)),
                Some(ChannelMsg::ExitStatus { exit_status }) => self.exit = i32::try_from(exit_status).ok(),
                Some(ChannelMsg::Close) | None => {
                    self.ready.extend(self.stdout.finish().map(StreamEvent::Stdout));
                    self.ready.extend(self.stderr.finish().map(StreamEvent::Stderr));
                    self.ready.push_back(StreamEvent::Exit(self.exit));
                    self.ended = true;
                }
                Some(_) => {}
            }
        }
    }

    /// Ends the command: closes its standard input, so the wrapper kills
    /// its process group. Keep calling [`OutputStream::next`] for the lines
    /// it printed meanwhile and its end.
    pub async fn stop(&self) -> Result<(), ExecError> {
        self.channel.eof().await.map_err(|e| ExecError::Session { host: self.host.clone(), detail: e.to_string() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_become_lines_across_chunks() {
        let mut b = LineBuf::default();
        assert_eq!(b.push(b"1\n2"), ["1"]);
        assert_eq!(b.push(b"3\r\n\n4"), ["23", ""]);
        assert_eq!(b.finish(), Some("4".to_string()));
        assert_eq!(b.finish(), None);
    }

    #[test]
    fn the_wrapper_quotes_the_command() {
        let line = stream_line("echo 'a b'; vmstat 1");
        assert!(line.contains(r#"sh -c 'echo '\''a b'\''; vmstat 1' 3<&- &"#), "{line}");
        assert!(line.ends_with("exit \"$s\""), "{line}");
    }
}

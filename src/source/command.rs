//! Command sources: a command's standard output stored as one file (for
//! example `pg_dump -Fc app` as `db/app.dump`). Its standard error is kept
//! (the last few KiB) and its exit status decides whether the source
//! succeeded: a failed command is never stored as if it were a good backup.

use std::io::Read;
use std::process::{Command, Stdio};

/// How much of a command's standard error is kept for the report.
const STDERR_TAIL: usize = 4096;

/// A command whose output is backed up as a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandSource {
    /// Shell command line, run with `sh -c` (and recorded in the snapshot).
    pub command: String,
    /// Where its output appears in the snapshot, relative to the root
    /// (e.g. `db/app.dump`).
    pub filename: String,
    /// Run this program and arguments directly instead of `sh -c command`.
    pub argv: Option<Vec<String>>,
    /// Extra environment (how credentials reach a command: never argv).
    pub env: Vec<(String, String)>,
    /// The source kind recorded in the snapshot (`command`, `postgres`).
    pub kind: String,
    /// Facts recorded with the source (e.g. PostgreSQL row counts).
    pub details: Option<serde_json::Value>,
}

impl CommandSource {
    /// A `sh -c` command source as given on the command line.
    pub fn shell(command: impl Into<String>, filename: impl Into<String>) -> Self {
        CommandSource {
            command: command.into(),
            filename: filename.into(),
            argv: None,
            env: Vec::new(),
            kind: "command".into(),
            details: None,
        }
    }
}

impl CommandSource {
    /// The path components of `filename`, refusing anything that is not a
    /// plain relative path.
    pub fn components(&self) -> crate::Result<Vec<Vec<u8>>> {
        let parts: Vec<Vec<u8>> = self
            .filename
            .split('/')
            .filter(|p| !p.is_empty())
            .map(|p| p.as_bytes().to_vec())
            .collect();
        if parts.is_empty() {
            return Err(crate::Error::InvalidInput(format!(
                "--stdin-filename {:?} is empty",
                self.filename
            )));
        }
        for p in &parts {
            crate::format::tree::check_name(p).map_err(|why| {
                crate::Error::InvalidInput(format!("--stdin-filename {:?}: {why}", self.filename))
            })?;
        }
        Ok(parts)
    }
}

/// Why a command source failed; the message ends with the last of its
/// standard error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CommandFailed {
    /// Waiting for it failed.
    #[error("waiting for the command: {0}")]
    Wait(std::io::Error),
    /// It exited with a status other than 0.
    #[error("command exited with status {code}{}", tail(stderr))]
    Exit {
        /// The exit status.
        code: i32,
        /// The end of its standard error.
        stderr: String,
    },
    /// A signal ended it.
    #[error("command was killed ({status}){}", tail(stderr))]
    Killed {
        /// How it ended, e.g. `signal: 9 (SIGKILL)`.
        status: String,
        /// The end of its standard error.
        stderr: String,
    },
}

/// `: TAIL`, or nothing when the command wrote nothing to stderr.
fn tail(stderr: &str) -> String {
    if stderr.is_empty() {
        String::new()
    } else {
        format!(": {stderr}")
    }
}

/// A running command: read its stdout, then call [`Running::finish`].
pub struct Running {
    child: std::process::Child,
    stderr: Option<std::thread::JoinHandle<Vec<u8>>>,
}

impl Running {
    /// Starts the source's command with stdin closed and stdout/stderr piped.
    pub fn start(source: &CommandSource) -> std::io::Result<(Running, std::process::ChildStdout)> {
        let mut cmd = match &source.argv {
            Some(argv) => {
                let mut c = Command::new(&argv[0]);
                c.args(&argv[1..]);
                c
            }
            None => {
                let mut c = Command::new("sh");
                c.arg("-c").arg(&source.command);
                c
            }
        };
        let mut child = cmd
            .envs(source.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut err = child.stderr.take().expect("stderr is piped");
        let stderr = std::thread::spawn(move || {
            let mut tail = Vec::new();
            let mut buf = [0u8; 8192];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                tail.extend_from_slice(&buf[..n]);
                if tail.len() > 2 * STDERR_TAIL {
                    tail.drain(..tail.len() - STDERR_TAIL);
                }
            }
            let start = tail.len().saturating_sub(STDERR_TAIL);
            tail.split_off(start)
        });
        Ok((
            Running {
                child,
                stderr: Some(stderr),
            },
            stdout,
        ))
    }

    /// Waits for the command. `Ok(stderr tail)` on exit status 0, otherwise
    /// an error naming the status and the end of its standard error.
    pub fn finish(mut self) -> Result<String, CommandFailed> {
        let status = self.child.wait().map_err(CommandFailed::Wait)?;
        let tail = self.stderr_tail();
        if status.success() {
            Ok(tail)
        } else {
            Err(match status.code() {
                Some(code) => CommandFailed::Exit { code, stderr: tail },
                None => CommandFailed::Killed {
                    status: status.to_string(),
                    stderr: tail,
                },
            })
        }
    }

    /// Kills the command (after a read error) and returns the end of its
    /// standard error.
    pub fn abort(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.stderr_tail()
    }

    fn stderr_tail(&mut self) -> String {
        let bytes = self
            .stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        String::from_utf8_lossy(&bytes).trim().to_owned()
    }
}

//! Process exit codes, as README documents them.

/// What `vault` exits with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    /// Success.
    Ok = 0,
    /// The operation failed.
    Failure = 1,
    /// The command line was wrong.
    Usage = 2,
    /// A snapshot was made but some inputs could not be read.
    Partial = 3,
    /// Verification found damage or a mismatch.
    Damage = 4,
    /// Stopped by SIGINT/SIGTERM (after cleaning up).
    Interrupted = 130,
}

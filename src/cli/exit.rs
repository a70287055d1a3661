//! Process exit codes, as README documents them, and the one place that
//! turns an error into one.

use vault::ErrorKind;

/// What `vault` exits with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    /// Success.
    Ok = 0,
    /// The operation failed (or `vault status` found something that needs attention).
    Failure = 1,
    /// The command line or the configuration is wrong.
    Usage = 2,
    /// A snapshot was made but some inputs could not be read.
    Partial = 3,
    /// Verification found damage or a mismatch.
    Damage = 4,
    /// `vault status` could not run (an unreadable repository, an
    /// unwritable Prometheus file).
    CouldNotRun = 5,
    /// Interrupted (SIGINT, SIGTERM, SIGHUP), as shells report it.
    Interrupted = 130,
}

/// A command-line mistake found by the CLI itself (exit 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Returns early with a [`UsageError`] built like `format!`.
macro_rules! usage {
    ($($arg:tt)*) => {
        return Err(anyhow::Error::new($crate::cli::exit::UsageError(format!($($arg)*))))
    };
}
pub(crate) use usage;

/// The exit code for a failed command: the first cause in the chain that
/// says what sort of failure it was decides.
pub fn for_error(e: &anyhow::Error) -> ExitCode {
    for cause in e.chain() {
        if cause.is::<UsageError>() || cause.is::<vault::settings::SettingsError>() {
            return ExitCode::Usage;
        }
        if let Some(e) = cause.downcast_ref::<vault::Error>() {
            return for_kind(e.kind());
        }
        if let Some(e) = cause.downcast_ref::<vault::error::CryptoError>() {
            return for_kind(e.kind());
        }
    }
    ExitCode::Failure
}

/// The exit code for a library error kind: what the caller asked for is
/// wrong or names nothing (2), damage (4), cancelled (130), else 1.
pub fn for_kind(kind: ErrorKind) -> ExitCode {
    match kind {
        ErrorKind::InvalidInput | ErrorKind::NotFound => ExitCode::Usage,
        ErrorKind::Damage => ExitCode::Damage,
        ErrorKind::Cancelled => ExitCode::Interrupted,
        _ => ExitCode::Failure,
    }
}

/// Whether `e` is a write to a closed pipe (`vault snapshots | head`),
/// which ends the command quietly and successfully.
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            || c.downcast_ref::<vault::Error>().is_some_and(|v| {
                matches!(v, vault::Error::Io { error, .. }
                    if error.kind() == std::io::ErrorKind::BrokenPipe)
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_reach_the_documented_codes() {
        let e = anyhow::Error::new(vault::Error::InvalidInput("x".into())).context("opening");
        assert_eq!(for_error(&e), ExitCode::Usage);
        let e = anyhow::Error::new(vault::Error::format("tree/x", "bad"));
        assert_eq!(for_error(&e), ExitCode::Damage);
        let denied = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        let e = anyhow::Error::new(vault::Error::io("/srv/x", denied));
        assert_eq!(for_error(&e), ExitCode::Failure);
        let e = anyhow::Error::new(UsageError("bad flag".into())).context("parsing");
        assert_eq!(for_error(&e), ExitCode::Usage);
        assert_eq!(
            for_error(&anyhow::anyhow!("something else")),
            ExitCode::Failure
        );
        let pipe = std::io::Error::from(std::io::ErrorKind::BrokenPipe);
        assert!(is_broken_pipe(&anyhow::Error::new(pipe).context("writing")));
    }
}

//! SIGINT, SIGTERM and SIGHUP for commands whose library work can be
//! cancelled (`restore --verify`, `drill`): the library never installs
//! signal handlers or exits the process; the CLI turns a signal into a
//! [`vault::Cancel`] request, and the library stops, removes its sandbox
//! and scratch cluster, and returns `Error::Cancelled` (exit 130).
//!
//! A signal that arrives while no work listens for it (nothing to clean
//! up), or a second signal, exits at once; if the library has not finished
//! cleaning up within a minute, the process exits anyway.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::exit::ExitCode;

/// How long cleanup after a signal may take before the process just exits.
const CLEANUP_GRACE: Duration = Duration::from_secs(60);

/// Installs the handler; returns the token it cancels.
pub fn cancel_on_signals() -> vault::Cancel {
    let cancel = vault::Cancel::new();
    let token = cancel.clone();
    let signals = AtomicUsize::new(0);
    let installed = ctrlc::set_handler(move || {
        let first = signals.fetch_add(1, Ordering::SeqCst) == 0;
        if !first || !token.cancel() {
            std::process::exit(ExitCode::Interrupted as i32);
        }
        std::thread::spawn(|| {
            std::thread::sleep(CLEANUP_GRACE);
            std::process::exit(ExitCode::Interrupted as i32);
        });
    });
    if let Err(e) = installed {
        tracing::warn!(
            "cannot handle SIGINT/SIGTERM (an interrupted drill may leave its scratch cluster for the next drill to remove): {e}"
        );
    }
    cancel
}

/// Maps a library result to the process's outcome: a cancellation the
/// library cleaned up after is exit 130 with a line saying so.
pub fn interrupted<T>(
    result: vault::Result<T>,
    cancel: &vault::Cancel,
) -> anyhow::Result<Result<T, ExitCode>> {
    match result {
        Ok(v) => Ok(Ok(v)),
        Err(e) if cancel.is_cancelled() && e.kind() == vault::ErrorKind::Cancelled => {
            eprintln!("vault: interrupted; the drill's sandbox and scratch cluster were removed");
            Ok(Err(ExitCode::Interrupted))
        }
        Err(e) => Err(e.into()),
    }
}

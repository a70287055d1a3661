//! Everything the CLI prints goes through here: one module per report, and
//! the shared pieces (sizes, sanitised names, errors, JSON).

pub mod backup;
pub mod check;
pub mod copy;
pub mod diff;
pub mod drill;
pub mod find;
pub mod keys;
pub mod ls;
pub mod maintain;
pub mod restore;
pub mod snapshots;
pub mod stats;
pub mod status;

use std::io::Write;

/// Certificates expiring within this many days are reported.
pub const CERT_WARN_DAYS: i64 = 30;

/// Prints an error chain to stderr as `vault: error: …: …`.
pub fn error(e: &anyhow::Error) {
    error_line(&format!("{e:#}"));
}

/// Prints one error line to stderr as `vault: error: MESSAGE`.
pub fn error_line(message: &str) {
    let _ = writeln!(
        std::io::stderr(),
        "vault: error: {}",
        sanitize_lines(message)
    );
}

/// Prints one warning line to stderr as `vault: warning: MESSAGE`.
pub fn warning(message: &str) {
    let _ = writeln!(
        std::io::stderr(),
        "vault: warning: {}",
        sanitize_lines(message)
    );
}

/// Escapes control characters (newlines included) so that a name from a
/// repository — a file name, a host, a path — prints as one unambiguous
/// field: it can neither drive the terminal nor print a fake line.
pub fn sanitize(s: &str) -> String {
    vault::format::escape::escape(s)
}

/// Like [`sanitize`], line by line, for messages vault itself breaks into
/// lines (an error with its `help:` line).
pub fn sanitize_lines(s: &str) -> String {
    s.split('\n').map(sanitize).collect::<Vec<_>>().join("\n")
}

/// A byte count for humans: `1.5 GiB`.
pub fn size(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Writes command output to stdout (see `outln!`).
pub fn write_out(args: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args) {
        stdout_failed(&e);
    }
}

/// Ends the process after a failed write to stdout: quietly with exit 0
/// when the reader went away (a closed pipe), else with exit 1.
fn stdout_failed(e: &std::io::Error) -> ! {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    error_line(&format!("writing to standard output: {e}"));
    std::process::exit(1);
}

/// Prints one JSON document on stdout.
pub fn json<T: serde::Serialize>(value: &T) {
    let mut out = std::io::stdout().lock();
    let written = serde_json::to_writer_pretty(&mut out, value)
        .map_err(std::io::Error::from)
        .and_then(|()| writeln!(out));
    if let Err(e) = written {
        stdout_failed(&e);
    }
}

/// A point in time as every table and listing prints it: UTC, marked with
/// `Z`, to the second (RFC 3339, as the library's messages and the JSON
/// output write times), e.g. `2026-11-30T02:35:14Z`.
pub fn time(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A file time (nanoseconds since the epoch, as trees record it) as
/// [`time`] prints it.
pub fn time_ns(ns: i64) -> String {
    time(chrono::DateTime::from_timestamp_nanos(ns))
}

/// `1 tree`, `2 trees`: a count with its noun in the right number.
pub fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// `1 pack`, `2 packs`: [`plural`] for nouns that take an `s`.
pub fn count(n: u64, noun: &str) -> String {
    plural(n, noun, &format!("{noun}s"))
}

/// Milliseconds for humans.
pub fn duration_ms(ms: u64) -> String {
    if ms < 10_000 {
        format!("{:.2} s", ms as f64 / 1000.0)
    } else {
        format!("{:.0} s", ms as f64 / 1000.0)
    }
}

/// Writes `bytes` to stdout as they are; a closed pipe (`vault man | head`)
/// is not an error.
pub fn raw(bytes: &[u8]) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

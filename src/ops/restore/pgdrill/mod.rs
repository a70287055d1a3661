//! Database drills: every PostgreSQL dump restored from a snapshot is loaded
//! into a throwaway cluster and every table's row count is compared with
//! the count recorded at backup time.
//!
//! A dump is hostile input: an ordinary role in the backed-up database
//! chooses much of what it contains, and a writer key holder can forge all
//! of it. Nothing in it may run outside the scratch database or see
//! anything of value, so:
//!
//! - [`load`]: the dump is loaded, and its rows counted, by a role without
//!   superuser, CREATEROLE, pg_execute_server_program, pg_read_server_files
//!   or pg_write_server_files; only the extensions it needs are created
//!   beforehand as superuser, and only from the server's installed ones;
//!   a dump that cannot load that way is a named failure, never a skip;
//! - [`confine`]: the cluster and every tool that reads the dump run as a
//!   dedicated OS user (never root, never the drill's own user), with an
//!   environment built from an allow-list, no capabilities and
//!   `no_new_privs`; without a way to switch users the drill refuses
//!   (unless `--pg-url` names a server the operator prepared);
//! - [`cluster`]: the cluster lives in a 0700 directory of that user's,
//!   listens on a Unix socket only, and is always stopped and removed, on
//!   cancellation too, and by the next drill after a SIGKILL;
//! - source names and dump paths from the (writer-forgeable) snapshot
//!   header are checked like tree entry names, and the dump is opened
//!   beneath the sandbox without following any symlink.

mod cluster;
mod confine;
mod load;
mod toc;

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

pub use confine::{DEFAULT_DRILL_USER, DrillUser, useradd_line};

use crate::cancel::Cancel;
use crate::error::{Error, Result};
use crate::format::snapshot::{Snapshot, SourceStatus};

/// One table: rows recorded at backup time and rows found after restore.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TableCheck {
    /// `schema.table` as PostgreSQL quotes it.
    pub table: String,
    /// Rows recorded in the snapshot header (absent: a table the header
    /// does not know).
    pub expected: Option<u64>,
    /// Rows found in the restored database (absent: the table is missing).
    pub found: Option<u64>,
}

/// Why a dump failed its drill.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DumpFailure {
    /// The snapshot header names it with an unsafe path, or what is there
    /// is not a regular file (a symlink, a device).
    Refused,
    /// The scratch cluster (or the `--pg-url` server) could not be prepared.
    Setup,
    /// It needs an extension this host's PostgreSQL does not have.
    MissingExtension,
    /// It does something only a superuser may (an event trigger, an
    /// untrusted language, a subscription…): drills never load as superuser.
    NeedsSuperuser,
    /// pg_restore or the row count failed for another reason.
    LoadFailed,
    /// Loading and counting took longer than the drill's time limit
    /// (`--db-load-timeout`); the database was dropped.
    TimedOut,
    /// It loaded, and some table's row count differs from the recorded one.
    Mismatch,
}

impl DumpFailure {
    /// What happened, as words that follow "database dump" in reports.
    pub fn describe(self) -> &'static str {
        match self {
            DumpFailure::Refused => "refused",
            DumpFailure::Setup => "not checked: the drill could not start",
            DumpFailure::MissingExtension => "needs an extension this host does not have",
            DumpFailure::NeedsSuperuser => {
                "needs superuser to load (drills never load dumps as superuser)"
            }
            DumpFailure::LoadFailed => "did not load",
            DumpFailure::TimedOut => "did not load within the time limit",
            DumpFailure::Mismatch => "row counts differ",
        }
    }
}

/// One dump's drill.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DumpCheck {
    /// The dump's path in the snapshot (`postgres/app.dump`).
    pub name: String,
    /// Whether it restored and every count matched.
    pub passed: bool,
    /// Why it failed, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<DumpFailure>,
    /// Why it could not be checked, if it could not.
    pub error: Option<String>,
    /// Every table, expected and found.
    pub tables: Vec<TableCheck>,
}

impl DumpCheck {
    fn failed(name: &str, failure: DumpFailure, error: String) -> DumpCheck {
        DumpCheck {
            name: name.to_owned(),
            passed: false,
            failure: Some(failure),
            error: Some(error),
            tables: Vec::new(),
        }
    }
}

/// How drills load PostgreSQL dumps.
#[derive(Debug, Clone)]
pub struct DatabaseDrill {
    /// A PostgreSQL server the operator prepared for drills (`--pg-url`,
    /// libpq conninfo): dumps load there as the conninfo's role, which must
    /// not be privileged, into a database created and dropped per dump.
    /// `None`: a scratch cluster per drill, run as `drill_user`.
    pub pg_url: Option<String>,
    /// libpq variables for clients of `pg_url` (PGPASSFILE, PGSSLMODE… from
    /// the drill's environment); a scratch cluster never sees them.
    pub pg_env: Vec<(String, String)>,
    /// The unprivileged OS user that runs the scratch cluster and every
    /// tool reading a dump.
    pub drill_user: String,
    /// How long loading one dump and counting its rows may take; past it
    /// the dump fails as [`DumpFailure::TimedOut`] and its database is
    /// dropped (a dump can sleep or loop in a constraint).
    pub load_timeout: Duration,
    /// Load into a `--pg-url` server even as a role that is, or can
    /// become, a superuser or holds CREATEROLE or a pg_*_server_* role
    /// (the operator's explicit choice; off by default).
    pub pg_url_trust_privileged: bool,
    /// Where drills make their private directories: the restore sandbox and
    /// the scratch cluster's data and socket directory. The CLI passes the
    /// process's temporary directory (`TMPDIR`, else `/tmp`).
    pub work_dir: PathBuf,
}

/// The default of [`DatabaseDrill::load_timeout`]: four hours per dump.
pub const DEFAULT_LOAD_TIMEOUT: Duration = Duration::from_secs(4 * 3600);

impl Default for DatabaseDrill {
    fn default() -> Self {
        DatabaseDrill {
            pg_url: None,
            pg_env: Vec::new(),
            drill_user: DEFAULT_DRILL_USER.into(),
            load_timeout: DEFAULT_LOAD_TIMEOUT,
            pg_url_trust_privileged: false,
            work_dir: PathBuf::from("/tmp"),
        }
    }
}

impl DatabaseDrill {
    /// Checks, before anything is restored, that dumps can be loaded the
    /// safe way: the drill user exists, is unprivileged and not the drill's
    /// own, and this process can switch to it. A `--pg-url` server is the
    /// operator's to isolate and needs no switch, but it must answer and
    /// its role must not be privileged (unless trusted): a server the drill
    /// cannot use is the operator's mistake, reported here before any work
    /// rather than recorded as a failed drill of every database.
    pub fn preflight(&self) -> Result<()> {
        if let Some(url) = &self.pg_url {
            return match load::Target::prepared(
                url,
                &self.pg_env,
                self.pg_url_trust_privileged,
                &Cancel::new(),
            ) {
                Ok(_) => Ok(()),
                Err(Fail::Cancelled) => Err(cancelled()),
                Err(Fail::Failed(_, why)) => Err(Error::InvalidInput(format!(
                    "{why}; no dump was loaded and no drill recorded (fix the server or \
                     --pg-url / [drill] pg_url, or leave it out for a scratch cluster)"
                ))),
            };
        }
        DrillUser::resolve(&self.drill_user)
            .map(|_| ())
            .map_err(|e| Error::InvalidInput(e.to_string()))
    }
}

/// Why one step of a database drill stopped.
pub(crate) enum Fail {
    /// The drill was cancelled: stop, clean up, report nothing.
    Cancelled,
    /// The dump failed, for this reason.
    Failed(DumpFailure, String),
}

impl Fail {
    fn setup(msg: impl Into<String>) -> Fail {
        Fail::Failed(DumpFailure::Setup, msg.into())
    }

    /// A load-time failure, named [`DumpFailure::NeedsSuperuser`] when the
    /// error says privileges were missing.
    fn load(msg: impl Into<String>) -> Fail {
        let msg = msg.into();
        let kind = if toc::needs_superuser(&msg) {
            DumpFailure::NeedsSuperuser
        } else {
            DumpFailure::LoadFailed
        };
        Fail::Failed(kind, msg)
    }

    /// The same failure, as a setup step named `what`.
    fn into_setup(self, what: &str) -> Fail {
        match self {
            Fail::Failed(_, m) => Fail::setup(format!("{what}: {m}")),
            other => other,
        }
    }
}

fn cancelled() -> Error {
    Error::Cancelled { operation: "drill" }
}

/// A source name from a snapshot header that is not a safe relative path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("source name {name:?} is not a safe relative path: {why}")]
pub struct UnsafeSourceName {
    /// The name as the header gives it.
    pub name: String,
    /// What is wrong with one of its entries.
    pub why: &'static str,
}

/// Checks that a source name from the snapshot header is a relative path
/// of entries that are each a valid tree entry name (no `..`, nothing
/// absolute, no empty component, no NUL).
pub fn check_source_name(name: &str) -> std::result::Result<(), UnsafeSourceName> {
    for part in name.split('/') {
        crate::format::tree::check_name(part.as_bytes()).map_err(|why| UnsafeSourceName {
            name: name.to_owned(),
            why,
        })?;
    }
    Ok(())
}

/// Why a restored dump cannot be opened for a drill.
#[derive(Debug, thiserror::Error)]
enum OpenDumpError {
    /// The source name is not a safe relative path.
    #[error(transparent)]
    UnsafeName(#[from] UnsafeSourceName),
    /// The sandbox directory cannot be opened.
    #[error("{}: {error}", sandbox.display())]
    Sandbox {
        sandbox: PathBuf,
        error: std::io::Error,
    },
    /// The dump is a symlink or lies beneath one.
    #[error("{name}: a symlink, or a path through one; a dump must be a regular file")]
    Symlink { name: String },
    /// Opening or looking at the dump failed.
    #[error("{name}: {error}")]
    Io { name: String, error: std::io::Error },
    /// The dump is not a regular file.
    #[error("{name}: not a regular file")]
    NotAFile { name: String },
}

/// Opens the dump `name` beneath `sandbox`, following no symlink on the
/// way. `Ok(None)`: nothing there (not restored, e.g. left out by
/// `--include`).
fn open_dump(sandbox: &Path, name: &str) -> std::result::Result<Option<File>, OpenDumpError> {
    use rustix::fs::{Mode, OFlags, ResolveFlags};
    check_source_name(name)?;
    let dir = File::open(sandbox).map_err(|error| OpenDumpError::Sandbox {
        sandbox: sandbox.to_owned(),
        error,
    })?;
    let fd = rustix::fs::openat2(
        &dir,
        name,
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK,
        Mode::empty(),
        ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
    );
    let io = |error: std::io::Error| OpenDumpError::Io {
        name: name.to_owned(),
        error,
    };
    let file = match fd {
        Ok(fd) => File::from(fd),
        Err(rustix::io::Errno::NOENT) => return Ok(None),
        Err(rustix::io::Errno::LOOP | rustix::io::Errno::XDEV) => {
            return Err(OpenDumpError::Symlink {
                name: name.to_owned(),
            });
        }
        Err(e) => return Err(io(e.into())),
    };
    let meta = file.metadata().map_err(io)?;
    if !meta.is_file() {
        return Err(OpenDumpError::NotAFile {
            name: name.to_owned(),
        });
    }
    Ok(Some(file))
}

/// Whether `snapshot` has a database dump to drill (among paths `wanted`).
pub fn has_dumps(snapshot: &Snapshot, wanted: &dyn Fn(&str) -> bool) -> bool {
    snapshot
        .sources
        .iter()
        .any(|s| s.kind == "postgres" && s.status == SourceStatus::Ok && wanted(&s.name))
}

/// Drills every PostgreSQL dump of `snapshot` restored under `sandbox`:
/// into a scratch cluster, or into the server `opts.pg_url` names. Returns
/// nothing when the snapshot has no database source, and
/// [`Error::Cancelled`] (after cleaning up) when cancelled.
pub fn check_dumps(
    sandbox: &Path,
    snapshot: &Snapshot,
    opts: &DatabaseDrill,
    cancel: &Cancel,
) -> Result<Vec<DumpCheck>> {
    let _listening = cancel.listen();
    let mut checks = Vec::new();
    let mut todo = Vec::new();
    let mut seen = std::collections::HashSet::new();
    // A forged header may name one dump many times: each is loaded once.
    for source in snapshot
        .sources
        .iter()
        .filter(|s| s.kind == "postgres" && s.status == SourceStatus::Ok)
        .filter(|s| seen.insert(s.name.as_str()))
    {
        match open_dump(sandbox, &source.name) {
            Ok(Some(file)) => todo.push((source, file)),
            Ok(None) => {}
            Err(e) => checks.push(DumpCheck::failed(
                &source.name,
                DumpFailure::Refused,
                e.to_string(),
            )),
        }
    }
    if todo.is_empty() {
        return Ok(checks);
    }
    let target = match &opts.pg_url {
        Some(url) => {
            load::Target::prepared(url, &opts.pg_env, opts.pg_url_trust_privileged, cancel)
        }
        None => DrillUser::resolve(&opts.drill_user)
            .map_err(|e| Fail::Failed(DumpFailure::Setup, e.to_string()))
            .and_then(|user| load::Target::scratch(user, &opts.work_dir, cancel)),
    };
    let target = match target {
        Ok(t) => t,
        Err(Fail::Cancelled) => return Err(cancelled()),
        Err(Fail::Failed(kind, e)) => {
            for (source, _) in &todo {
                checks.push(DumpCheck::failed(&source.name, kind, e.clone()));
            }
            return Ok(checks);
        }
    };
    let mut tag = [0u8; 6];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut tag);
    for (i, (source, file)) in todo.iter().enumerate() {
        cancel.check("drill")?;
        let expected: BTreeMap<String, u64> = source
            .details
            .as_ref()
            .and_then(|d| d.get("row_counts"))
            .and_then(|c| serde_json::from_value(c.clone()).ok())
            .unwrap_or_default();
        let db = format!("vault_drill_{}_{i}", hex::encode(tag));
        let (loaded, timed_out) =
            with_deadline(cancel, opts.load_timeout, |c| target.load(file, &db, c));
        checks.push(match loaded {
            Ok(found) => compare(&source.name, &expected, &found),
            Err(Fail::Cancelled) if timed_out && !cancel.is_cancelled() => {
                // Its statements may still run in the server: the
                // database goes, and its sessions with it.
                target.discard(&db);
                DumpCheck::failed(
                    &source.name,
                    DumpFailure::TimedOut,
                    format!(
                        "loading the dump and counting its rows took longer than the drill's \
                         time limit of {} s (--db-load-timeout); stopped and dropped",
                        opts.load_timeout.as_secs()
                    ),
                )
            }
            Err(Fail::Cancelled) => return Err(cancelled()),
            Err(Fail::Failed(kind, e)) => DumpCheck::failed(&source.name, kind, e),
        });
    }
    Ok(checks)
}

/// Runs `f` with a token that is cancelled when `cancel` is, or once
/// `limit` has passed; returns its result and whether the time ran out.
fn with_deadline<T>(cancel: &Cancel, limit: Duration, f: impl FnOnce(&Cancel) -> T) -> (T, bool) {
    let token = Cancel::new();
    let done = Arc::new(AtomicBool::new(false));
    let timed_out = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (parent, token) = (cancel.clone(), token.clone());
        let (done, timed_out) = (done.clone(), timed_out.clone());
        let deadline = Instant::now().checked_add(limit);
        std::thread::spawn(move || {
            while !done.load(Ordering::SeqCst) {
                if parent.is_cancelled() {
                    token.cancel();
                    return;
                }
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    timed_out.store(true, Ordering::SeqCst);
                    token.cancel();
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    let out = f(&token);
    done.store(true, Ordering::SeqCst);
    let _ = watcher.join();
    (out, timed_out.load(Ordering::SeqCst))
}

fn compare(
    name: &str,
    expected: &BTreeMap<String, u64>,
    found: &BTreeMap<String, u64>,
) -> DumpCheck {
    let mut tables: Vec<TableCheck> = expected
        .iter()
        .map(|(t, n)| TableCheck {
            table: t.clone(),
            expected: Some(*n),
            found: found.get(t).copied(),
        })
        .collect();
    tables.extend(
        found
            .iter()
            .filter(|(t, _)| !expected.contains_key(*t))
            .map(|(t, n)| TableCheck {
                table: t.clone(),
                expected: None,
                found: Some(*n),
            }),
    );
    let passed = tables.iter().all(|t| t.expected == t.found);
    DumpCheck {
        name: name.to_owned(),
        passed,
        failure: (!passed).then_some(DumpFailure::Mismatch),
        error: None,
        tables,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compare_names_missing_extra_and_short_tables() {
        let exp: BTreeMap<String, u64> = [("public.a".into(), 3), ("public.b".into(), 1)].into();
        let ok = compare("x", &exp, &exp.clone());
        assert!(ok.passed);
        let found: BTreeMap<String, u64> = [("public.a".into(), 2), ("public.c".into(), 5)].into();
        let bad = compare("x", &exp, &found);
        assert!(!bad.passed);
        assert!(bad.tables.contains(&TableCheck {
            table: "public.a".into(),
            expected: Some(3),
            found: Some(2)
        }));
        assert!(bad.tables.contains(&TableCheck {
            table: "public.b".into(),
            expected: Some(1),
            found: None
        }));
        assert!(bad.tables.contains(&TableCheck {
            table: "public.c".into(),
            expected: None,
            found: Some(5)
        }));
        assert_eq!(bad.failure, Some(DumpFailure::Mismatch));
    }

    #[test]
    fn a_deadline_cancels_the_work_and_says_so() {
        let parent = Cancel::new();
        let (waited, timed_out) = with_deadline(&parent, Duration::from_millis(100), |c| {
            let start = Instant::now();
            while !c.is_cancelled() && start.elapsed() < Duration::from_secs(30) {
                std::thread::sleep(Duration::from_millis(5));
            }
            c.is_cancelled()
        });
        assert!(waited && timed_out);
        let (quick, timed_out) =
            with_deadline(&parent, Duration::from_secs(30), |c| c.is_cancelled());
        assert!(!quick && !timed_out);
        parent.cancel();
        let (seen, timed_out) = with_deadline(&parent, Duration::from_secs(30), |c| {
            let start = Instant::now();
            while !c.is_cancelled() && start.elapsed() < Duration::from_secs(30) {
                std::thread::sleep(Duration::from_millis(5));
            }
            c.is_cancelled()
        });
        assert!(seen && !timed_out, "a signal is not a timeout");
    }

    #[test]
    fn source_names_are_checked_like_tree_entry_names() {
        for ok in ["postgres/app.dump", "db/x y.dump", "a"] {
            assert!(check_source_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "/etc/passwd",
            "../etc/passwd",
            "postgres/../../x",
            "postgres//app.dump",
            "postgres/./app.dump",
            "postgres/app.dump/",
            "",
            "a\0b",
        ] {
            assert!(check_source_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn dumps_are_opened_beneath_the_sandbox_without_following_symlinks() {
        let d = tempfile::tempdir().unwrap();
        let sb = d.path();
        std::fs::create_dir_all(sb.join("postgres")).unwrap();
        std::fs::write(sb.join("postgres/app.dump"), b"PGDMP").unwrap();
        std::fs::write(d.path().join("secret"), b"s").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", sb.join("postgres/link.dump")).unwrap();
        std::os::unix::fs::symlink(sb.join("postgres"), sb.join("via")).unwrap();
        assert!(open_dump(sb, "postgres/app.dump").unwrap().is_some());
        assert!(open_dump(sb, "postgres/none.dump").unwrap().is_none());
        for bad in [
            "postgres/link.dump",
            "via/app.dump",
            "/etc/passwd",
            "../secret",
            "postgres",
        ] {
            assert!(open_dump(sb, bad).is_err(), "{bad}");
        }
        nix::unistd::mkfifo(
            &sb.join("postgres/fifo.dump"),
            nix::sys::stat::Mode::S_IRWXU,
        )
        .unwrap();
        let e = open_dump(sb, "postgres/fifo.dump").unwrap_err().to_string();
        assert!(e.contains("not a regular file"), "{e}");
    }
}

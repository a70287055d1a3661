//! `vault backup --dry-run`: walk the sources with the same excludes and
//! say what a backup would store, without reading any file's content,
//! running any command, connecting to any database or writing anything.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::Mutex;

use crossbeam_channel::bounded;
use serde::Serialize;

use super::BackupOptions;
use super::pipeline::Failure;
use super::walk::{Event, Walker};
use crate::error::Result;
use crate::format::index::Index;
use crate::format::snapshot::InputError;

/// What a backup would store.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DryRunReport {
    /// Every entry that would be stored (absolute paths, escaped), in walk
    /// order: directories, files and other entries.
    pub entries: Vec<String>,
    /// Regular files.
    pub files: u64,
    /// Directories.
    pub dirs: u64,
    /// Other entries (symlinks, devices, fifos, sockets).
    pub other: u64,
    /// Bytes of file content (sizes as listed; nothing is read).
    pub bytes: u64,
    /// Command sources that would run (`--from-command`), as given.
    pub commands: Vec<String>,
    /// Databases that would be dumped, conninfo without any password.
    pub databases: Vec<String>,
    /// Inputs that could not be listed.
    pub errors: Vec<InputError>,
}

/// Walks `opts`'s sources as [`super::run`] would and reports what it would
/// store. Fails like a backup when the options are invalid (a bad exclude
/// pattern, a relative or missing source).
pub fn dry_run(opts: &BackupOptions) -> Result<DryRunReport> {
    let paths = super::normalized_paths(opts)?;
    let pg_names = crate::source::postgres::source_names(&opts.postgres, &opts.postgres_names)
        .map_err(|e| crate::error::Error::InvalidInput(e.to_string()))?;
    let index = Index::default();
    let errors = Mutex::new(Vec::<InputError>::new());
    // Commands are listed, never run: the walk sees only paths.
    let stats = super::Stats::default();
    let sink = super::pipeline::BlobSink::new(&index, &stats);
    let walker = Walker::new(&paths, &[], &opts.excludes, None, &sink, &errors)?
        .exclude_if_present(&opts.exclude_if_present)
        .one_file_system(opts.one_file_system);
    let mut report = DryRunReport {
        commands: opts
            .commands
            .iter()
            .map(|c| format!("{} -> {}", c.command, c.filename))
            .collect(),
        databases: opts
            .postgres
            .iter()
            .zip(&pg_names)
            .map(|(c, name)| match name {
                Some(n) => format!(
                    "{} as postgres/{n}.dump",
                    crate::source::postgres::redacted(c)
                ),
                None => crate::source::postgres::redacted(c),
            })
            .collect(),
        ..Default::default()
    };
    let failure = Failure::default();
    std::thread::scope(|s| {
        let (events_tx, events_rx) = bounded::<Vec<Event>>(16);
        let (jobs_tx, jobs_rx) = bounded(256);
        // Nothing is read: every job is dropped unanswered.
        s.spawn(move || for _ in jobs_rx {});
        s.spawn(|| walker.walk(events_tx, jobs_tx, &failure));
        let mut dir = PathBuf::from("/");
        let mut depth = 0usize;
        for e in events_rx.iter().flatten() {
            let shown =
                |p: &std::path::Path| crate::format::escape::escape_bytes(p.as_os_str().as_bytes());
            match e {
                Event::Enter(node) => {
                    dir.push(OsStr::from_bytes(&node.name.0));
                    depth += 1;
                    report.dirs += 1;
                    report.entries.push(format!("{}/", shown(&dir)));
                }
                Event::Leave => {
                    if depth > 0 {
                        dir.pop();
                        depth -= 1;
                    }
                }
                Event::Other(node) => {
                    report.other += 1;
                    report
                        .entries
                        .push(shown(&dir.join(OsStr::from_bytes(&node.name.0))));
                }
                Event::File { path, stamp, .. } => {
                    // Nothing is read: the small file's bytes never come.
                    sink.in_flight().release(stamp.reserved);
                    report.files += 1;
                    report.bytes += stamp.size;
                    report.entries.push(shown(&path));
                }
            }
        }
    });
    report.errors = errors.into_inner().expect("errors lock");
    Ok(report)
}

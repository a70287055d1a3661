//! Backup: walk sources → read (parallel) → chunk → keyed id → known? skip :
//! compress (parallel) → pack → encrypt → upload → index → snapshot header.
//!
//! The snapshot header is written last, after every pack and index it needs:
//! an interrupted backup leaves only packs and index files that the next
//! backup reuses and prune cleans up.

mod assemble;
mod cache;
pub mod changes;
mod dry_run;
mod inflight;
mod journal;
mod own_index;
mod pipeline;
pub mod seen;
mod shelf;
pub mod squeeze;
mod stale;
#[cfg(test)]
mod tests;

pub use dry_run::{DryRunReport, dry_run};
pub use journal::Recovered;
pub use pipeline::{BlobEncoder, Stats, encode_blob, small_blob_level};
mod walk;

use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender, bounded, unbounded};

use crate::error::{Error, Result};
use crate::format::id::{PackId, SnapshotId};
use crate::format::snapshot::{InputError, Snapshot, SourceRecord, SourceStatus};
use crate::repo::{ObjectKind, Repository};
pub use crate::source::command::CommandSource;
use assemble::{Assembled, FileRecords, assemble};
use cache::{CacheWriter, FileCache};
use journal::Journal;
use pipeline::{BlobSink, Failure, RawBlob};
use walk::{Event, FileJob, Walker};

/// What to back up and how.
#[derive(Debug, Clone, Default)]
pub struct BackupOptions {
    /// Paths to back up (files or directories).
    pub paths: Vec<PathBuf>,
    /// Commands whose standard output is stored as a file.
    pub commands: Vec<CommandSource>,
    /// PostgreSQL databases (libpq conninfo strings) dumped natively.
    pub postgres: Vec<String>,
    /// The names of the `postgres` sources, in the same order (empty or
    /// missing: the database's name); a dump is `postgres/<name>.dump`.
    pub postgres_names: Vec<String>,
    /// Exclude patterns: without `/` they match a file name anywhere; with
    /// `/` they match the whole absolute path.
    pub excludes: Vec<String>,
    /// Leave out directories holding an entry of one of these names.
    pub exclude_if_present: Vec<String>,
    /// Stay on the file system of each source path.
    pub one_file_system: bool,
    /// Tags recorded in the snapshot.
    pub tags: Vec<String>,
    /// Host name to record (default: this machine's).
    pub host: Option<String>,
    /// Where the per-host file cache lives; `None` disables it.
    pub cache_dir: Option<PathBuf>,
    /// Threads reading and chunking files (0: automatic).
    pub read_threads: usize,
    /// Threads compressing blobs (0: one per core).
    pub compress_threads: usize,
    /// Counters the run updates as it goes, for a progress display.
    pub progress: Option<std::sync::Arc<Stats>>,
    /// Where to send each file's change since this host's last backup, as
    /// it is decided ([`changes`]); the counts are in
    /// [`BackupOutcome::changes`].
    pub list_changes: Option<changes::ChangeList>,
}

/// The result of a backup run.
#[derive(Debug, Clone)]
pub struct BackupOutcome {
    /// The new snapshot's id.
    pub id: SnapshotId,
    /// Its header.
    pub snapshot: Snapshot,
    /// Packs an interrupted backup on this host had uploaded without
    /// indexing them, checked and indexed by this run (from the upload
    /// journal in the cache directory).
    pub resumed: Recovered,
    /// Command sources whose output looked already compressed or
    /// encrypted: such output never deduplicates from one backup to the next.
    pub compressed_outputs: Vec<CompressedOutput>,
    /// With [`BackupOptions::list_changes`]: how many files from the
    /// source paths are new, changed or unchanged since this host's last
    /// backup of them ([`changes`]).
    pub changes: Option<changes::ChangeCounts>,
}

/// A command source whose output looked already compressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompressedOutput {
    /// Where the output is stored in the snapshot (`/stdin`, `/db/app.dump`).
    pub path: String,
    /// What gave it away: a format's magic number (`zstd`, `gzip`, `xz`,
    /// `bzip2`) or `incompressible` (its first MiB did not shrink).
    pub why: &'static str,
}

fn username() -> String {
    nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| nix::unistd::getuid().to_string())
}

/// Makes a source path absolute and free of `.` and `..`: the parent is
/// resolved through the file system, the last component is kept as is (a
/// symlink given as a source is backed up as a symlink).
fn normalize_source(p: &std::path::Path) -> Result<PathBuf> {
    let abs = std::path::absolute(p).map_err(|e| Error::io(p, e))?;
    let lexical: PathBuf = {
        let mut out = PathBuf::from("/");
        for c in abs.components() {
            match c {
                std::path::Component::ParentDir => {
                    out.pop();
                }
                std::path::Component::Normal(n) => out.push(n),
                _ => {}
            }
        }
        out
    };
    let resolved = match abs.file_name() {
        Some(name) => abs
            .parent()
            .and_then(|dir| std::fs::canonicalize(dir).ok())
            .map(|dir| dir.join(name)),
        None => std::fs::canonicalize(&abs).ok(),
    };
    Ok(resolved.unwrap_or(lexical))
}

/// Runs a backup of `opts.paths` into `repo` (writer or owner key).
pub fn run(repo: &Repository, opts: &BackupOptions) -> Result<BackupOutcome> {
    let started = Instant::now();
    let time = chrono::Utc::now();
    // Phase 1: what to back up, as which host.
    let pg_names = crate::source::postgres::source_names(&opts.postgres, &opts.postgres_names)
        .map_err(|e| Error::InvalidInput(e.to_string()))?;
    let host = series_host(repo, opts)?;
    let (paths, path_names) = source_paths(opts)?;
    // Phase 2: what this backup may deduplicate against.
    let Baseline {
        index,
        own,
        journal,
        resumed,
    } = dedup_baseline(repo, opts, &host)?;
    // Phase 3: PostgreSQL transactions, open until their dumps are stored.
    let Databases {
        commands,
        sessions,
        failed: failed_sources,
    } = open_databases(opts, &pg_names);
    let wanted_names: Vec<String> = path_names
        .iter()
        .cloned()
        .chain(commands.iter().map(|c| c.filename.clone()))
        .collect();
    let host_dir = opts
        .cache_dir
        .as_deref()
        .and_then(|d| crate::repo::cache::HostDir::open(d, &repo.config().id, &host).ok());
    let parent = find_parent(repo, host_dir.as_ref(), &host, &wanted_names)?;
    let (cache, mut cache_writer) = file_cache(repo, opts, &host, &paths);
    // Files modified in the last second could change again within the
    // same timestamp tick; leave them out so they are always re-read.
    let fresh_ns = time.timestamp_nanos_opt().unwrap_or(i64::MAX) - 1_000_000_000;

    let errors = Mutex::new(Vec::<InputError>::new());
    let failure = Failure::default();
    let own_stats = Stats::default();
    let stats: &Stats = opts.progress.as_deref().unwrap_or(&own_stats);
    let sink = BlobSink::new(&index, stats);
    let walker = Walker::new(
        &paths,
        &commands,
        &opts.excludes,
        cache.as_ref(),
        &sink,
        &errors,
    )?
    .exclude_if_present(&opts.exclude_if_present)
    .one_file_system(opts.one_file_system);

    // Phase 4: the pipeline (walk, read, chunk, compress, pack, upload,
    // index), bounded channels between its stages.
    let stages = Stages {
        repo,
        sink: &sink,
        stats,
        own: &own,
        journal: journal.as_ref(),
        errors: &errors,
        failure: &failure,
        threads: thread_counts(opts),
    };
    let records = FileRecords {
        next_cache: cache_writer.as_mut().map(|w| (w, fresh_ns)),
        list_changes: opts.list_changes.clone(),
    };
    let assembled = run_pipeline(&stages, &walker, records);
    if let Some(e) = failure.take() {
        return Err(e);
    }
    let Assembled {
        root,
        totals,
        certificates,
        compressed_outputs,
        changes,
    } = assembled?;

    for session in sessions {
        session.finish();
    }
    // The next file cache is completed and synced beside the snapshot's
    // checks and upload (a sync of some 15 MB for 200,000 files), and put
    // in place once the snapshot is written.
    std::thread::scope(|s| {
        let sealing = cache_writer.map(|w| s.spawn(move || (w.path().to_owned(), w.seal())));
        let outcome = write_snapshot(
            repo,
            opts,
            &sink,
            stats,
            Written {
                started,
                time,
                host,
                path_names,
                wanted_names,
                commands,
                errors,
                failed_sources,
                root,
                totals,
                certificates,
                parent,
                host_dir: host_dir.as_ref(),
            },
        )?;
        if let Some(sealing) = sealing {
            let (path, sealed) = sealing.join().expect("the file cache thread");
            if let Err(e) = sealed.and_then(|c| c.put_in_place()) {
                tracing::warn!("could not save the file cache {}: {e}", path.display());
            }
        }
        Ok(BackupOutcome {
            resumed,
            compressed_outputs,
            changes,
            ..outcome
        })
    })
}

/// What [`write_snapshot`] records.
struct Written<'a> {
    started: Instant,
    time: chrono::DateTime<chrono::Utc>,
    host: String,
    path_names: Vec<String>,
    wanted_names: Vec<String>,
    commands: Vec<CommandSource>,
    errors: Mutex<Vec<InputError>>,
    failed_sources: Vec<(SourceRecord, InputError)>,
    root: crate::format::id::TreeId,
    totals: crate::format::snapshot::Totals,
    certificates: Vec<crate::format::snapshot::CertInfo>,
    parent: Option<SnapshotId>,
    host_dir: Option<&'a crate::repo::cache::HostDir>,
}

/// Phase 5 of a backup: the snapshot header, once the packs it relies on
/// are found still stored. The outcome's other fields are left empty.
fn write_snapshot(
    repo: &Repository,
    opts: &BackupOptions,
    sink: &BlobSink<'_>,
    stats: &Stats,
    w: Written<'_>,
) -> Result<BackupOutcome> {
    let Written {
        started,
        time,
        host,
        path_names,
        wanted_names,
        commands,
        errors,
        failed_sources,
        root,
        mut totals,
        certificates,
        parent,
        host_dir,
    } = w;
    let (sources, errors) = outcome_per_source(
        &path_names,
        &commands,
        errors.into_inner().expect("errors lock"),
        failed_sources,
        totals.files + totals.dirs,
    )?;
    totals.blobs_added = stats.blobs_added.load(Ordering::Relaxed);
    totals.bytes_added = stats.bytes_added.load(Ordering::Relaxed);
    totals.bytes_stored = stats.bytes_stored.load(Ordering::Relaxed);
    totals.duration_ms = started.elapsed().as_millis() as u64;
    let snapshot = Snapshot {
        time,
        host,
        user: username(),
        tags: opts.tags.clone(),
        sources,
        root,
        totals,
        errors,
        certificates,
        parent,
        program_version: env!("CARGO_PKG_VERSION").into(),
    };
    ensure_still_stored(repo, &sink.relied_packs())?;
    let id = repo.put_signed_json(ObjectKind::Snapshot, &snapshot)?;
    if let Some(d) = host_dir {
        d.remember_snapshot(&wanted_names, &id);
    }
    Ok(BackupOutcome {
        id: SnapshotId(id),
        snapshot,
        resumed: Default::default(),
        compressed_outputs: Vec::new(),
        changes: None,
    })
}

/// The file cache of the last backup of these paths (when the options name
/// a cache directory), and the writer of the next one, written as the
/// files go by, in walk order.
fn file_cache(
    repo: &Repository,
    opts: &BackupOptions,
    host: &str,
    paths: &[PathBuf],
) -> (Option<FileCache>, Option<CacheWriter>) {
    let cache = opts
        .cache_dir
        .as_ref()
        .filter(|d| {
            crate::repo::cache::private_root(d)
                .map_err(|e| {
                    tracing::warn!(
                        "file cache in {} not usable, reading every file: {e}",
                        d.display()
                    )
                })
                .is_ok()
        })
        .map(|d| FileCache::load(d, &repo.config().id, host, paths));
    let writer = cache.as_ref().and_then(|c| {
        c.writer()
            .map_err(|e| tracing::warn!("could not write the file cache: {e}"))
            .ok()
    });
    (cache, writer)
}

/// What the stages of the pipeline (phase 4) share.
struct Stages<'a> {
    repo: &'a Repository,
    sink: &'a BlobSink<'a>,
    stats: &'a Stats,
    own: &'a own_index::OwnIndex,
    journal: Option<&'a Journal>,
    errors: &'a Mutex<Vec<InputError>>,
    failure: &'a Failure,
    /// Compressing and reading threads.
    threads: (usize, usize),
}

/// Phase 4 of a backup: runs the walker, the readers and the storing
/// stages on their threads, assembling the trees on this one.
fn run_pipeline(
    st: &Stages<'_>,
    walker: &Walker<'_>,
    records: FileRecords<'_>,
) -> Result<Assembled> {
    std::thread::scope(|s| {
        let raw_tx = spawn_storing(s, st);
        let ev_rx = spawn_reading(s, st, walker, &raw_tx);
        let result = assemble(
            ev_rx, &raw_tx, st.repo, st.sink, st.errors, st.failure, records,
        );
        if result.is_err() {
            st.failure.halt();
        }
        drop(raw_tx);
        result
    })
}

/// Starts the stages that store blobs (compress, pack, upload, index);
/// returns where blobs go in.
fn spawn_storing<'s, 'e: 's>(
    s: &'s std::thread::Scope<'s, 'e>,
    st: &'e Stages<'e>,
) -> Sender<RawBlob> {
    let (raw_tx, raw_rx) = bounded::<RawBlob>(64);
    let (cmp_tx, cmp_rx) = bounded(64);
    // A rendezvous: a finished pack waits in the packer until an
    // uploader is free, so at most one pack more than there are uploaders
    // is held (one being filled, the others being uploaded). Their buffers
    // go back to the packer for later packs. A store written one object at
    // a time (a local directory: a copy into the page cache, synced later
    // with its index file) gets one buffer: the packer waits for that
    // short write instead of holding a second pack.
    let uploaders = st.repo.storage().parallel_writes().clamp(1, 4);
    let buffers = if uploaders == 1 { 1 } else { uploaders + 1 };
    let (up_tx, up_rx) = bounded(0);
    // Room for every buffer, so none is dropped and made again.
    let (spare_tx, spare_rx) = bounded::<Vec<u8>>(uploaders + 1);
    let (done_tx, done_rx) = unbounded();
    let level = st.repo.config().compression_level;
    let salt_id = st.repo.keys().blob_ids().salt_id().copied();
    for _ in 0..st.threads.0 {
        let (rx, tx) = (raw_rx.clone(), cmp_tx.clone());
        s.spawn(move || pipeline::compressor(rx, tx, level, salt_id, st.failure));
    }
    drop((raw_rx, cmp_tx));
    s.spawn(move || {
        pipeline::packer(
            cmp_rx,
            up_tx,
            spare_rx,
            buffers as u64,
            st.repo,
            st.stats,
            st.failure,
        )
    });
    for _ in 0..uploaders {
        let (rx, tx, spare) = (up_rx.clone(), done_tx.clone(), spare_tx.clone());
        s.spawn(move || {
            pipeline::uploader(rx, tx, spare, st.repo, st.journal, st.stats, st.failure)
        });
    }
    drop((up_rx, done_tx, spare_tx));
    s.spawn(move || pipeline::indexer(done_rx, st.repo, st.own, st.journal, st.failure));
    raw_tx
}

/// Walk events queued for the assembler. A file's event holds its slot and
/// the channel its reader answers on (about 1 KiB together), made before the
/// file is read: 1,024 of them keep the walker well ahead of the assembler
/// (64 jobs are queued for the readers, a large file or up to
/// [`walk::SMALL_JOB_FILES`] small ones each) in about 1 MiB; 4,096 held
/// 4 MiB.
/// They travel in batches of at most [`walk::EVENT_BATCH`].
const EVENT_QUEUE: usize = 1024;

/// Starts the walker and the file readers; returns the walk's events.
fn spawn_reading<'s, 'e: 's>(
    s: &'s std::thread::Scope<'s, 'e>,
    st: &'e Stages<'e>,
    walker: &'e Walker<'e>,
    raw_tx: &Sender<RawBlob>,
) -> Receiver<Vec<Event>> {
    let (job_tx, job_rx) = bounded::<FileJob>(64);
    let (ev_tx, ev_rx) = bounded::<Vec<Event>>(EVENT_QUEUE / walk::EVENT_BATCH);
    for _ in 0..st.threads.1 {
        let (rx, tx) = (job_rx.clone(), raw_tx.clone());
        s.spawn(move || walk::reader(rx, tx, st.repo, st.sink, st.failure));
    }
    drop(job_rx);
    // The walk keeps its directories on a stack of its own (heap), so a
    // hostile directory nest needs no large thread stack.
    std::thread::Builder::new()
        .name("walker".into())
        .spawn_scoped(s, move || walker.walk(ev_tx, job_tx, st.failure))
        .expect("spawn the walker thread");
    ev_rx
}

/// What a backup may deduplicate against, and where it records what it
/// uploads (see [`dedup_baseline`]).
struct Baseline {
    /// Blobs already stored in packs this backup may rely on.
    index: crate::format::index::Index,
    /// The index files this host wrote itself.
    own: own_index::OwnIndex,
    /// The journal of packs uploaded but not yet indexed.
    journal: Option<Journal>,
    /// What the journal of a killed run gave back.
    resumed: journal::Recovered,
}

/// Phase 2 of a backup: loads the index it may deduplicate against (owner
/// attested and its own index files, in packs still stored and not marked
/// for deletion) and indexes the packs a killed run left in its journal.
fn dedup_baseline(repo: &Repository, opts: &BackupOptions, host: &str) -> Result<Baseline> {
    // Deduplicate only against claims that can be relied on: index files
    // the owner signed (it read the blobs back) and those this host wrote
    // itself (in its cache record, or signed by its own signing key).
    // Another host's index file may be planted: a backup relying on it
    // would not restore. Hosts sharing the shared writer key of `vault
    // init` share its signatures too, and so trust each other's index
    // files: they are one trust domain (they can forge each other's series
    // as well); `vault key add-host` gives a host its own.
    let host_dir = opts.cache_dir.as_deref().and_then(|d| {
        crate::repo::cache::HostDir::open(d, &repo.config().id, host)
            .map_err(|e| tracing::warn!("cache directory not usable, going on without: {e}"))
            .ok()
    });
    let mut own = own_index::OwnIndex::load(host_dir.as_ref());
    let own_key = repo.keys().writer().host().map(|h| h.certificate().key);
    let loaded = repo.load_dedup_index(&|id, signer| {
        own.contains(id) || (signer.is_some() && signer == own_key.as_ref().map(|k| k.as_bytes()))
    })?;
    own.retain(
        &loaded
            .files
            .iter()
            .filter_map(|k| crate::repo::id_from_key(k))
            .collect(),
    );
    // The packs in storage, as listed right after the index files were read
    // (each prefix is listed once per backup).
    let (mut index, condemned, stored) = (loaded.index, loaded.condemned, loaded.stored);
    // Packs a killed run uploaded but never indexed: indexed now, once
    // checked, so that this run reuses them.
    let journal = host_dir.as_ref().and_then(|d| {
        Journal::open(d)
            .map_err(|e| tracing::warn!("upload journal disabled: {e}"))
            .ok()
    });
    let mut resumed = journal::Recovered::default();
    if let Some(j) = &journal {
        match j.recover(repo, &stored, &mut index, &own) {
            Ok(r) => resumed = r,
            Err(e) => tracing::warn!("upload journal: could not index the packs it lists: {e}"),
        }
    }
    // Dedupe only against packs that are really stored and that prune has
    // not marked for deletion: an index entry pointing nowhere (or soon
    // nowhere) must not make a backup skip a blob.
    index.retain_packs(|p| stored.contains_key(p) && !condemned.contains_key(p));
    Ok(Baseline {
        index,
        own,
        journal,
        resumed,
    })
}

/// The command sources of the PostgreSQL databases (a dump, and the
/// globals when the role may read them), the open transactions whose
/// snapshots the dumps read, and a failed source for each database that
/// could not be reached.
struct Databases {
    commands: Vec<CommandSource>,
    sessions: Vec<crate::source::postgres::PgSnapshot>,
    failed: Vec<(SourceRecord, InputError)>,
}

/// Phase 3 of a backup: opens a transaction in every PostgreSQL database
/// (it stays open, and its snapshot valid, until the dump is stored).
fn open_databases(opts: &BackupOptions, names: &[Option<String>]) -> Databases {
    let mut commands = opts.commands.clone();
    let mut sessions = Vec::new();
    let mut failed_sources: Vec<(SourceRecord, InputError)> = Vec::new();
    for (conninfo, given) in opts.postgres.iter().zip(names) {
        match crate::source::postgres::PgSnapshot::begin(conninfo) {
            Ok(session) => {
                let session = session.named(given.as_deref());
                commands.push(session.dump_source());
                match session.globals_source() {
                    Some(globals) => commands.push(globals),
                    None => tracing::warn!(
                        "postgres/{}: globals {}",
                        session.name,
                        crate::source::postgres::GLOBALS_SKIPPED
                    ),
                }
                sessions.push(session);
            }
            Err(message) => {
                let db = given.clone().unwrap_or_else(|| {
                    crate::source::postgres::conninfo_env(conninfo)
                        .ok()
                        .and_then(|env| env.into_iter().find(|(k, _)| k == "PGDATABASE"))
                        .map_or_else(|| "postgres".to_owned(), |(_, v)| v)
                });
                let name = format!("postgres/{db}.dump");
                failed_sources.push((
                    SourceRecord {
                        kind: "postgres".into(),
                        name: name.clone(),
                        paths: Vec::new(),
                        status: SourceStatus::Failed,
                        command: None,
                        details: Some(
                            serde_json::json!({ "conninfo": crate::source::postgres::redacted(conninfo) }),
                        ),
                    },
                    InputError {
                        path: format!("/{name}"),
                        message: message.to_string(),
                    },
                ));
            }
        }
    }
    Databases {
        commands,
        sessions,
        failed: failed_sources,
    }
}

/// The new snapshot's parent: the last snapshot of the same sources this
/// host's cache remembers, if it is still stored (one existence check,
/// where listing every header of a fleet's history would cost a request or
/// a file per header); else the newest snapshot of the same host and
/// sources. The parent is only recorded, never relied on.
fn find_parent(
    repo: &Repository,
    host_dir: Option<&crate::repo::cache::HostDir>,
    host: &str,
    wanted_names: &[String],
) -> Result<Option<crate::format::id::SnapshotId>> {
    if let Some(id) = host_dir.and_then(|d| d.last_snapshot(wanted_names))
        && repo
            .storage()
            .exists(&ObjectKind::Snapshot.key(&id))
            .unwrap_or(false)
    {
        return Ok(Some(crate::format::id::SnapshotId(id)));
    }
    Ok(repo
        .snapshot_heads()?
        .into_iter()
        .rev()
        .find(|h| h.host == host && h.sources == wanted_names)
        .map(|h| h.id))
}

/// Phase 1 of a backup: the host it records. A host key signs only its own
/// series: the header names the host its certificate names.
fn series_host(repo: &Repository, opts: &BackupOptions) -> Result<String> {
    Ok(match (repo.keys().writer().host_name(), &opts.host) {
        (Some(own), Some(asked)) if own != asked => {
            return Err(Error::WrongKey(format!(
                "this writer key is host {own:?}'s and signs only that host's backups; it \
                 cannot record host {asked:?} (drop --host / VAULT_HOST, or use that host's key)"
            )));
        }
        (Some(own), _) => own.to_owned(),
        (None, asked) => asked.clone().unwrap_or_else(crate::source::host::hostname),
    })
}

/// The source paths, absolute and normalized; refuses a backup with no
/// source at all (also what `--dry-run` lists).
pub(super) fn normalized_paths(opts: &BackupOptions) -> Result<Vec<PathBuf>> {
    if opts.paths.is_empty() && opts.commands.is_empty() && opts.postgres.is_empty() {
        return Err(Error::InvalidInput(
            "nothing to back up: give at least one path".into(),
        ));
    }
    opts.paths.iter().map(|p| normalize_source(p)).collect()
}

/// Phase 1 of a backup: the source paths, absolute and normalized, with
/// their names; refuses a backup with nothing to read.
fn source_paths(opts: &BackupOptions) -> Result<(Vec<PathBuf>, Vec<String>)> {
    let paths = normalized_paths(opts)?;
    let path_names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    if opts.commands.is_empty()
        && opts.postgres.is_empty()
        && !paths.iter().any(|p| p.symlink_metadata().is_ok())
    {
        return Err(Error::NotFound(format!(
            "nothing could be read, no snapshot made: none of the source paths exists ({})",
            path_names.join(", ")
        )));
    }
    Ok((paths, path_names))
}

/// Compression and read threads: as asked, else one compressor per core
/// and between two and eight readers.
fn thread_counts(opts: &BackupOptions) -> (usize, usize) {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let compress = match opts.compress_threads {
        0 => cores,
        n => n,
    };
    let read = match opts.read_threads {
        0 => cores.clamp(2, 8),
        n => n,
    };
    (compress, read)
}

/// Phase 5 of a backup: how each source fared, with the databases that
/// could not be reached; refuses a snapshot in which every source failed.
fn outcome_per_source(
    path_names: &[String],
    commands: &[CommandSource],
    mut errors: Vec<InputError>,
    failed: Vec<(SourceRecord, InputError)>,
    entries_read: u64,
) -> Result<(Vec<SourceRecord>, Vec<InputError>)> {
    let mut sources = source_records(path_names, commands, &errors, entries_read);
    for (record, error) in failed {
        sources.push(record);
        errors.push(error);
    }
    if sources.iter().all(|s| s.status == SourceStatus::Failed) {
        let first = errors
            .first()
            .map(|e| format!("{}: {}", e.path, e.message))
            .unwrap_or_default();
        return Err(Error::NothingRead(first));
    }
    Ok((sources, errors))
}

/// One record per source with its status. A command whose output could not
/// be stored completely has failed; paths are partial when some entries
/// could not be read, failed when nothing was.
fn source_records(
    path_names: &[String],
    commands: &[CommandSource],
    errors: &[InputError],
    entries_read: u64,
) -> Vec<SourceRecord> {
    let command_path = |c: &CommandSource| format!("/{}", c.filename.trim_matches('/'));
    let mut out = Vec::new();
    if !path_names.is_empty() {
        let path_errors = errors
            .iter()
            .filter(|e| !commands.iter().any(|c| e.path == command_path(c)))
            .count();
        let all_missing = path_names.iter().all(|p| {
            errors
                .iter()
                .any(|e| &e.path == p && e.message.starts_with("source path"))
        });
        let status = if path_errors == 0 {
            SourceStatus::Ok
        } else if all_missing || entries_read == 0 {
            SourceStatus::Failed
        } else {
            SourceStatus::Partial
        };
        out.push(SourceRecord {
            kind: "paths".into(),
            name: path_names.join(" "),
            paths: path_names.to_vec(),
            status,
            command: None,
            details: None,
        });
    }
    for c in commands {
        let failed = errors.iter().any(|e| e.path == command_path(c));
        out.push(SourceRecord {
            kind: c.kind.clone(),
            name: c.filename.clone(),
            paths: Vec::new(),
            status: if failed {
                SourceStatus::Failed
            } else {
                SourceStatus::Ok
            },
            command: Some(c.command.clone()),
            details: c.details.clone(),
        });
    }
    out
}

/// Fails when a pack this run deduplicated against is gone: a prune whose
/// grace period was shorter than this backup deleted it, and a snapshot
/// written now would point at nothing. Better no snapshot than a broken one.
fn ensure_still_stored(
    repo: &Repository,
    relied: &std::collections::HashSet<PackId>,
) -> Result<()> {
    if relied.is_empty() {
        return Ok(());
    }
    let stored: std::collections::HashSet<PackId> =
        crate::repo::list_packs(repo.storage().as_ref())?
            .into_keys()
            .collect();
    let mut gone: Vec<&PackId> = relied.iter().filter(|p| !stored.contains(p)).collect();
    gone.sort();
    match gone.first() {
        None => Ok(()),
        Some(first) => Err(Error::Conflict(format!(
            "{} pack(s) this backup reuses were deleted while it ran (first: {first}) — a prune \
             with a grace period shorter than this backup; no snapshot was written, run the \
             backup again (it stores what is missing)",
            gone.len()
        ))),
    }
}

//! One restore, as named phases over explicit state:
//!
//! 1. **plan** (main thread): walk the snapshot's trees, count every entry
//!    against the header's totals, create directories, symlinks, fifos and
//!    (when allowed) devices relative to their parent's handle, and queue
//!    each regular file's segments;
//! 2. **files** (worker threads, at the same time): write, verify and commit
//!    the queued files;
//! 3. **finish**: make the hard links, then apply every directory's
//!    metadata deepest first, each reopened beneath the target and checked
//!    to be the directory restore created; flush to disk.
//!
//! Plan and files stream through a bounded channel, so memory does not grow
//! with the number or size of files. Whole small files go to the workers
//! in batches of one directory ([`BATCH_FILES`], read in the order
//! their blobs are stored), so that two workers
//! rarely create and link entries in the same directory at once (they
//! would wait on its lock); each segment of a large file goes on its own.
//! While the workers write, a flusher thread starts writing what they
//! wrote to disk every [`FLUSH_EVERY`] bytes (`syncfs` on its own thread),
//! so the final flush finds little left instead of the whole restore.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crossbeam_channel::{Sender, bounded};
use globset::GlobSet;

use super::batch::{BATCH_BYTES, BATCH_FILES, Batcher};
use super::budget::Budget;
use super::direct::AlignedBuf;
use super::dirs::{Created, DirStack};
use super::files::{self, Commit, Finished, Segment, Step};
use super::fsops::{Dir, FileId, Handle};
use super::links::{Links, Place, Role};
use super::overwrite::{self, Decision, Overwrite};
use super::policy::{Applied, MetaWriter, Owners, Withheld, WithheldKind};
use super::{Problem, ProblemKind, RestoreOptions, RestoreReport, include_set, included};
use crate::error::{Error, Result};
use crate::format::id::SnapshotId;
use crate::format::index::Index;
use crate::format::snapshot::Snapshot;
use crate::format::tree::{Node, NodeKind};
use crate::repo::treewalk::{self, Next, Visit};
use crate::repo::{BlobReader, Repository};

/// Segments of large files read and queued for writing, in all, beyond
/// one a worker (each holds a segment buffer, about 2.3 MiB).
const WRITE_AHEAD: usize = 4;
// The queued buffers stay within 10 MiB whatever the number of workers.
const _: () = assert!(WRITE_AHEAD * files::SEGMENT_BUF <= 10 << 20);

/// How many read segments each of `threads` workers may queue for its
/// write-behind thread: [`WRITE_AHEAD`] shared out (two each for two
/// workers, none from five on), so that memory does not grow with cores.
fn write_ahead(threads: usize) -> usize {
    WRITE_AHEAD / threads.max(1)
}

/// Batches and segments queued for the workers.
/// (A batch holds up to [`BATCH_FILES`] planned files, about 2.5 KB each.)
const QUEUED: usize = 4;

/// Bytes (each file counted with one block more, for its inode and entry)
/// written between two background flushes.
const FLUSH_EVERY: u64 = 64 << 20;

/// What every phase reads, and the report the workers add to.
struct Shared<'a> {
    repo: &'a Repository,
    opts: &'a RestoreOptions,
    index: Index,
    target: Arc<Dir>,
    meta: MetaWriter,
    report: Mutex<RestoreReport>,
    /// The inodes of hard-link groups' first members, once committed.
    committed: Mutex<HashMap<PathBuf, FileId>>,
    /// Bytes written so far (with a block per file), to pace the flusher.
    written: AtomicU64,
}

impl Shared<'_> {
    fn problem(&self, path: &Path, kind: ProblemKind, message: String) {
        self.report
            .lock()
            .expect("report lock")
            .problems
            .push(Problem {
                path: path.display().to_string(),
                kind,
                message,
            });
    }

    fn withheld(&self, path: &Path, items: Vec<(WithheldKind, String)>) {
        if items.is_empty() {
            return;
        }
        let mut r = self.report.lock().expect("report lock");
        for (kind, detail) in items {
            r.withheld.add(Withheld {
                path: path.display().to_string(),
                kind,
                detail,
            });
        }
    }

    /// An existing entry was left as it was; `same` is its inode when it is
    /// identical to the snapshot's (later hard links may point at it).
    fn kept(&self, path: &Path, node: &Node, same: Option<FileId>) {
        self.report.lock().expect("report lock").skipped += 1;
        if let (Some(_), Some(id)) = (&node.hardlink, same) {
            self.committed
                .lock()
                .expect("committed lock")
                .insert(path.to_owned(), id);
        }
    }

    /// How an entry restored at `at` in `dir` takes its name, or `None`
    /// when the existing entry there stays (counted) or cannot be looked
    /// at (reported).
    fn commit_for(&self, dir: &Dir, at: &Place, node: &Node) -> Option<Commit> {
        let mode = self.opts.overwrite;
        if dir.fresh() {
            // Restore made this directory empty in this run and entry names
            // are unique: nothing has the name (an entry that appears
            // meanwhile is still never replaced unawares, see `Commit`).
            return Some(Commit {
                replacing: false,
                no_replace: mode == Overwrite::Never,
            });
        }
        match overwrite::decide(mode, dir, &at.name, node, &self.meta) {
            Ok(Decision::Keep(same)) => {
                self.kept(&at.rel, node, same.as_ref().map(FileId::of));
                None
            }
            Ok(d) => Some(Commit {
                replacing: d == Decision::Replace,
                no_replace: mode == Overwrite::Never,
            }),
            Err(e) => {
                self.problem(
                    &at.rel,
                    ProblemKind::Write,
                    format!("cannot look at what is in the target already: {e}"),
                );
                None
            }
        }
    }

    fn applied(&self, path: &Path, applied: Applied) {
        self.withheld(path, applied.withheld);
        if let Some(m) = applied.problem {
            self.problem(path, ProblemKind::Metadata, m);
        }
    }

    /// Reopens the directory at `rel` beneath the target (the target itself
    /// for the empty path), checking it is still the inode `id`.
    fn reopen(&self, rel: &Path, id: FileId) -> std::io::Result<Arc<Dir>> {
        if rel.as_os_str().is_empty() && id == self.target.id() {
            return Ok(self.target.clone());
        }
        self.target.reopen(rel, id).map(Arc::new)
    }
}

/// The plan phase's state.
struct Plan {
    includes: Option<GlobSet>,
    selection: super::Selection,
    any_included: bool,
    budget: Budget,
    stack: DirStack,
    /// Directories created, in walk order (parents first).
    created: Vec<Created>,
    links: Links,
    /// Whole files of the current directory not handed out yet.
    batch: Batcher<Segment>,
}

/// One restore of one snapshot into one target.
pub struct Restorer<'a> {
    snapshot: &'a Snapshot,
    id: &'a SnapshotId,
    started: Instant,
    shared: Shared<'a>,
    plan: Plan,
}

impl<'a> Restorer<'a> {
    /// Loads the index and opens (or creates) the target.
    pub fn new(
        repo: &'a Repository,
        id: &'a SnapshotId,
        snapshot: &'a Snapshot,
        opts: &'a RestoreOptions,
    ) -> Result<Self> {
        repo.keys().require_owner("restore")?;
        let started = Instant::now();
        let includes = include_set(&opts.include)?;
        let selection = super::Selection::new(&opts.include, &opts.exclude)?;
        let (index, damaged_index) = repo.load_index()?;
        let target = Dir::open_target(&opts.target)
            .map_err(|e| Error::InvalidInput(format!("target {}: {e}", opts.target.display())))?;
        let shown = std::fs::canonicalize(&opts.target).unwrap_or_else(|_| opts.target.clone());
        let target = Arc::new(target);
        if let Some(p) = &opts.progress {
            p.start("files", snapshot.totals.files, snapshot.totals.bytes);
        }
        let mut report = RestoreReport {
            snapshot: id.to_hex(),
            target: shown.display().to_string(),
            ..Default::default()
        };
        for e in damaged_index {
            report.problems.push(Problem {
                path: String::new(),
                kind: ProblemKind::Damaged,
                message: e.to_string(),
            });
        }
        Ok(Restorer {
            snapshot,
            id,
            started,
            plan: Plan {
                includes,
                selection,
                any_included: false,
                budget: Budget::new(&snapshot.totals),
                stack: DirStack::new(target.clone()),
                created: Vec::new(),
                links: Links::default(),
                batch: Batcher::new(BATCH_FILES, BATCH_BYTES),
            },
            shared: Shared {
                repo,
                opts,
                index,
                target,
                meta: MetaWriter {
                    as_root: nix::unistd::geteuid().is_root(),
                    policy: opts.policy,
                    owners: Owners::default(),
                },
                report: Mutex::new(report),
                committed: Mutex::new(HashMap::new()),
                written: AtomicU64::new(0),
            },
        })
    }

    /// Runs every phase and returns the report.
    pub fn run(mut self) -> Result<RestoreReport> {
        self.plan_and_write_files()?;
        if !self.plan.any_included && !self.shared.opts.include.is_empty() {
            return Err(Error::NotFound(format!(
                "--include {} matched nothing in snapshot {}",
                self.shared.opts.include.join(", "),
                self.id.short()
            )));
        }
        self.finish_links();
        self.finish_dirs();
        if !self.shared.opts.verify {
            self.sync();
        }
        let mut report = self.shared.report.into_inner().expect("report lock");
        report.dirs = self.plan.created.len() as u64;
        report.duration_ms = self.started.elapsed().as_millis() as u64;
        Ok(report)
    }

    /// Phases 1 and 2: the walk plans on this thread while workers write.
    fn plan_and_write_files(&mut self) -> Result<()> {
        let threads = match self.shared.opts.threads {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        };
        let shared = &self.shared;
        let plan = &mut self.plan;
        let root = self.snapshot.root;
        std::thread::scope(|s| -> Result<()> {
            let (tx, rx) = bounded::<Vec<Segment>>(QUEUED);
            // A drill does not flush at all (it re-reads and deletes).
            let (flush, flushes) = bounded::<()>(1);
            if !shared.opts.verify {
                s.spawn(move || {
                    for () in flushes {
                        // Best effort: the final flush reports errors.
                        let _ = nix::unistd::syncfs(shared.target.file());
                    }
                });
            }
            let ahead = write_ahead(threads);
            for _ in 0..threads {
                let rx = rx.clone();
                // Each worker's write-behind thread: writes around the page
                // cache wait for the disk, and meanwhile the worker reads
                // its next segments, up to `ahead` of them queued, so that a
                // moment when the disk is slow does not stop it.
                let (writes, to_write) = bounded::<files::Pending>(ahead);
                // Buffers come back for the next segments (at most
                // `ahead + 2` a worker: one gathering, `ahead` queued, one
                // being written).
                let (give_back, given_back) = bounded::<AlignedBuf>(ahead + 2);
                let writer_flush = flush.clone();
                s.spawn(move || {
                    for pending in to_write {
                        let (done, spare) = files::complete(pending, &shared.meta);
                        if let Some(buf) = spare {
                            let _ = give_back.try_send(buf);
                        }
                        report_file(shared, done, &writer_flush);
                    }
                });
                let flush = flush.clone();
                s.spawn(move || {
                    let mut reader = BlobReader::new(shared.repo);
                    let mut spare = None;
                    for work in rx {
                        for seg in work {
                            if spare.is_none() {
                                spare = given_back.try_recv().ok();
                            }
                            let step = files::process(
                                seg,
                                &mut reader,
                                &shared.index,
                                &shared.meta,
                                shared.opts.verify,
                                &mut spare,
                            );
                            match step {
                                Step::Done(done) => report_file(shared, done, &flush),
                                // The write-behind thread is gone only if
                                // it panicked: the worker writes itself.
                                Step::Write(pending) => {
                                    if let Err(e) = writes.send(pending) {
                                        let (done, _) =
                                            files::complete(e.into_inner(), &shared.meta);
                                        report_file(shared, done, &flush);
                                    }
                                }
                            }
                        }
                    }
                });
            }
            drop((rx, flush));
            let walked = treewalk::walk(shared.repo, &shared.index, &root, &mut |v| {
                plan.visit(shared, &tx, v)
            })
            .and_then(|()| plan.hand_out(&tx));
            drop(tx);
            walked
        })
    }

    /// Phase 3a: hard links, now that every first member is committed.
    fn finish_links(&mut self) {
        let shared = &self.shared;
        let committed = shared.committed.lock().expect("committed lock").clone();
        let mut last: Option<(PathBuf, Arc<Dir>)> = None;
        let mut dir_of = |rel: &Path, id: FileId| -> std::io::Result<Arc<Dir>> {
            if let Some((p, d)) = &last
                && p == rel
                && d.id() == id
            {
                return Ok(d.clone());
            }
            let d = shared.reopen(rel, id)?;
            last = Some((rel.to_owned(), d.clone()));
            Ok(d)
        };
        for link in &self.plan.links.pending {
            let first = self.plan.links.first(&link.group);
            let Some(&inode) = committed.get(&first.rel) else {
                shared.problem(
                    &link.at.rel,
                    ProblemKind::Write,
                    if shared.opts.overwrite == Overwrite::Always {
                        "not restored: the first entry of its hard-link group failed".into()
                    } else {
                        "not restored: the first entry of its hard-link group failed, or was \
                         left as it was in the target (--overwrite)"
                            .into()
                    },
                );
                continue;
            };
            let mode = shared.opts.overwrite;
            let made = dir_of(&first.parent, first.parent_id).and_then(|from| {
                let here = dir_of(&link.at.parent, link.at.parent_id)?;
                let existing = here.stat_child(&link.at.name)?;
                let keep = match (&existing, mode) {
                    (None, _) | (Some(_), Overwrite::Always) => false,
                    (Some(_), Overwrite::Never) => true,
                    // Already this very inode: nothing to change.
                    (Some(st), Overwrite::IfChanged) => FileId::of(st) == inode,
                };
                if keep {
                    return Ok(Linked::Kept);
                }
                let tmp = here.link_from(&from, &first.name, inode)?;
                let committed = if mode == Overwrite::Never {
                    here.commit_new(&tmp, &link.at.name)
                } else {
                    here.commit(&tmp, &link.at.name).map(|()| true)
                };
                match committed {
                    Ok(true) if existing.is_some() => Ok(Linked::Replaced),
                    Ok(true) => Ok(Linked::Created),
                    Ok(false) => {
                        here.remove_temp(&tmp);
                        Ok(Linked::Kept)
                    }
                    Err(e) => {
                        here.remove_temp(&tmp);
                        Err(e)
                    }
                }
            });
            let mut r = shared.report.lock().expect("report lock");
            match made {
                Ok(Linked::Created) => r.other += 1,
                Ok(Linked::Replaced) => {
                    r.other += 1;
                    r.replaced += 1;
                }
                Ok(Linked::Kept) => r.skipped += 1,
                Err(e) => {
                    drop(r);
                    shared.problem(&link.at.rel, ProblemKind::Write, format!("hard link: {e}"))
                }
            }
        }
    }

    /// Phase 3b: directory metadata, deepest first (a read-only directory
    /// must not stop its children from being finished), each reopened
    /// beneath the target and checked to be the one restore created.
    fn finish_dirs(&self) {
        let shared = &self.shared;
        for d in self.plan.created.iter().rev() {
            match shared.target.reopen(&d.rel, d.id) {
                Ok(dir) => shared.applied(
                    &d.rel,
                    shared
                        .meta
                        .apply(&Handle::Open(dir.file()), &d.node, None, None),
                ),
                Err(e) => shared.problem(
                    &d.rel,
                    ProblemKind::Metadata,
                    format!("directory metadata not applied: {e}"),
                ),
            }
        }
    }

    /// Phase 3c: flush the target's file system.
    fn sync(&self) {
        if let Err(e) = nix::unistd::syncfs(self.shared.target.file()) {
            self.shared.problem(
                Path::new(""),
                ProblemKind::Write,
                format!("flushing the restored files to disk: {e}"),
            );
        }
    }
}

/// How one pending hard link ended.
enum Linked {
    Created,
    Replaced,
    Kept,
}

/// Phase 2, on a worker or its write-behind thread: counts a finished file
/// (`None`: the segment did not finish one) in the progress and the report,
/// and asks the flusher to start on what was written every
/// [`FLUSH_EVERY`] bytes.
fn report_file(
    shared: &Shared<'_>,
    done: Option<(Arc<files::FileState>, Finished)>,
    flush: &Sender<()>,
) {
    let Some((st, finished)) = done else {
        return;
    };
    crate::ops::progress::advance(&shared.opts.progress, 1, st.size());
    let dirt = if st.written_direct() {
        2 * 4096
    } else {
        st.size() + 4096
    };
    let before = shared.written.fetch_add(dirt, Ordering::Relaxed);
    if before / FLUSH_EVERY != (before + dirt) / FLUSH_EVERY {
        // Already asked and not started yet: that flush takes this too.
        let _ = flush.try_send(());
    }
    match finished {
        Finished::Ok {
            bytes,
            id,
            problem,
            withheld,
            replaced,
        } => {
            if let Some(id) = id {
                shared
                    .committed
                    .lock()
                    .expect("committed lock")
                    .insert(st.rel.clone(), id);
            }
            let mut r = shared.report.lock().expect("report lock");
            r.files += 1;
            r.bytes += bytes;
            r.verified += u64::from(shared.opts.verify);
            r.replaced += u64::from(replaced);
            drop(r);
            shared.applied(&st.rel, Applied { problem, withheld });
        }
        Finished::Kept => shared.report.lock().expect("report lock").skipped += 1,
        Finished::Failed((kind, message)) => shared.problem(&st.rel, kind, message),
    }
}

impl Plan {
    /// Queues a file's segments: a whole small file joins the batch of its
    /// directory, handed out when full or when the walk moves on to another
    /// directory; each segment of a larger file goes on its own.
    fn queue(&mut self, tx: &Sender<Vec<Segment>>, segments: Vec<Segment>) -> Result<()> {
        let mut segments = segments;
        if let [seg] = segments.as_slice()
            && seg.whole()
            && seg.file_size() < BATCH_BYTES
        {
            let seg = segments.pop().expect("one segment");
            let size = seg.file_size();
            for batch in self
                .batch
                .add(seg, size, |a, b| Arc::ptr_eq(a.dir(), b.dir()))
            {
                send(tx, batch)?;
            }
            return Ok(());
        }
        self.hand_out(tx)?;
        for seg in segments {
            send(tx, vec![seg])?;
        }
        Ok(())
    }

    /// Hands the current batch to the workers.
    fn hand_out(&mut self, tx: &Sender<Vec<Segment>>) -> Result<()> {
        match self.batch.take() {
            Some(batch) => send(tx, batch),
            None => Ok(()),
        }
    }

    /// Phase 1: one step of the walk.
    fn visit(
        &mut self,
        shared: &Shared<'_>,
        tx: &Sender<Vec<Segment>>,
        v: Visit<'_>,
    ) -> Result<Next> {
        let (path, node) = match v {
            Visit::Damaged { path, error } => {
                shared.problem(
                    path,
                    ProblemKind::reading(&error),
                    format!("directory not restored: {error}"),
                );
                return Ok(Next::Skip);
            }
            Visit::Leave { .. } => {
                self.stack.pop();
                return Ok(Next::Descend);
            }
            Visit::Entry { path, node } => (path, node),
        };
        shared.opts.cancel.check("restore")?;
        if let Err(why) = self.budget.spend(node) {
            shared.problem(
                Path::new(""),
                ProblemKind::Damaged,
                format!("{why}; restore stopped (a crafted or damaged snapshot)"),
            );
            return Ok(Next::Stop);
        }
        if self.stack.failed() {
            return Ok(Next::Skip);
        }
        if self.selection.excluded(path) {
            return Ok(Next::Skip);
        }
        let want = included(&self.includes, path);
        if node.kind == NodeKind::Dir {
            self.stack.push(path, node);
            if want {
                self.any_included = true;
                if self.make_dirs(shared).is_none() {
                    self.stack.pop();
                    return Ok(Next::Skip);
                }
            }
            return Ok(Next::Descend);
        }
        if !want {
            return Ok(Next::Skip);
        }
        self.any_included = true;
        let Some((dir, parent)) = self.make_dirs(shared) else {
            return Ok(Next::Skip);
        };
        if let Err(w) = shared.meta.policy.admits(node) {
            shared.withheld(path, vec![w]);
            return Ok(Next::Skip);
        }
        let at = Place::new(path, &parent, dir.id());
        if let Some(group) = &node.hardlink {
            match self.links.classify(group, node, at.clone()) {
                Role::Linked => return Ok(Next::Skip),
                Role::First => {}
                Role::Disagrees => shared.problem(
                    path,
                    ProblemKind::Metadata,
                    "not hard-linked: it differs from the first entry of its hard-link group; \
                     restored on its own as recorded"
                        .into(),
                ),
            }
        }
        let Some(commit) = shared.commit_for(&dir, &at, node) else {
            return Ok(Next::Skip);
        };
        if node.kind == NodeKind::File {
            let mode = shared.meta.policy.screen(node).mode;
            match files::plan(path, &dir, node, mode, &shared.index, commit) {
                Ok(segments) => self.queue(tx, segments)?,
                Err((kind, message)) => shared.problem(path, kind, message),
            }
        } else {
            make_special(shared, &dir, &at, node, commit);
        }
        Ok(Next::Skip)
    }

    /// Creates the directories on the current path; `None` (reported) when
    /// one cannot be made.
    fn make_dirs(&mut self, shared: &Shared<'_>) -> Option<(Arc<Dir>, PathBuf)> {
        match self.stack.materialize(&mut self.created) {
            Ok(top) => Some(top),
            Err(e) => {
                shared.problem(&e.rel, ProblemKind::Write, e.error.to_string());
                None
            }
        }
    }
}

/// Gives work to the workers (who only stop taking it when they are gone),
/// a batch's files in the order their blobs are stored.
fn send(tx: &Sender<Vec<Segment>>, mut work: Vec<Segment>) -> Result<()> {
    files::in_pack_order(&mut work);
    tx.send(work).map_err(|_| Error::Cancelled {
        operation: "restore",
    })
}

/// Creates a symlink, fifo or device in `dir`, sets its metadata on its
/// handle, and renames it into place.
fn make_special(shared: &Shared<'_>, dir: &Dir, at: &Place, node: &Node, commit: Commit) {
    let (special, tmp) = match dir.create_special(node) {
        Ok(Some(made)) => made,
        Ok(None) => return,
        Err(e) => {
            shared.problem(&at.rel, ProblemKind::Write, e.to_string());
            return;
        }
    };
    let applied = shared.meta.apply(&Handle::Path(&special), node, None, None);
    let id = special.id();
    let committed = if commit.no_replace {
        dir.commit_new(&tmp, OsStr::new(&at.name))
    } else {
        dir.commit(&tmp, OsStr::new(&at.name)).map(|()| true)
    };
    match committed {
        Ok(false) => {
            dir.remove_temp(&tmp);
            shared.report.lock().expect("report lock").skipped += 1;
            return;
        }
        Ok(true) => {
            let mut r = shared.report.lock().expect("report lock");
            r.other += 1;
            r.replaced += u64::from(commit.replacing);
            drop(r);
            if node.hardlink.is_some()
                && let Ok(id) = id
            {
                shared
                    .committed
                    .lock()
                    .expect("committed lock")
                    .insert(at.rel.clone(), id);
            }
        }
        Err(e) => {
            dir.remove_temp(&tmp);
            shared.problem(&at.rel, ProblemKind::Write, e.to_string());
        }
    }
    shared.applied(&at.rel, applied);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_read_ahead_of_their_writes_hold_a_bounded_amount_of_memory() {
        // Two workers (two cores) may each read two segments ahead.
        assert_eq!(write_ahead(2), 2);
        assert_eq!(write_ahead(0), WRITE_AHEAD);
        for threads in 1..=256 {
            // Queued segments in all, whatever the number of cores: at
            // most WRITE_AHEAD buffers beyond the two a worker always had.
            assert!(threads * write_ahead(threads) <= WRITE_AHEAD, "{threads}");
        }
        assert_eq!(write_ahead(5), 0);
    }
}

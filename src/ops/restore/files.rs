//! Restoring regular files: each file is split into segments of consecutive
//! blobs so that both cores work on a large file at once. Segments are
//! written with positional writes into one new file, created unnamed
//! (`O_TMPFILE`, with its final permission bits) in its parent directory's
//! handle, or under a temporary name where that cannot be done; the worker
//! that finishes the last segment checks the whole-file BLAKE3, applies
//! metadata on the open file and links it under its name (or renames it
//! into place) within the same directory handle.
//!
//! A file of several segments is written around the page cache
//! (`O_DIRECT`, see `direct.rs`): workers read, decrypt and check their
//! segments' blobs at the same time, each into a buffer of its own, and
//! then take turns in file order to add the segment to the whole-file hash
//! (in memory) and pass on the partial block where it meets the next; the
//! whole blocks are then written by both at once, each worker's by its
//! write-behind thread while the worker reads its next segments. A segment
//! waits for the one before it, so each worker reads one segment at a
//! time; what it has read waits to be written in a short queue of its own
//! (`restorer.rs`), so memory stays bounded.
//!
//! Files come back sparse: every aligned 4 KiB block that is all zeros is
//! skipped rather than written, so it stays a hole (a file of several
//! segments is sized up front, a file of one is sized at the end when its
//! last block was a hole). A file of several segments written around the
//! page cache is also allocated ahead of its writes, a window at a time,
//! so that both workers' direct writes are overwrites the file system lets
//! run at once (`direct.rs`); its runs of zero blocks are then given back
//! (punched) instead of skipped. Holes are not recorded at backup (a hole reads as zeros
//! and is stored like any run of zeros, deduplicated); they are found again
//! on restore, so a file that was fully allocated zeros comes back sparse
//! too.

use std::ffi::OsString;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};

use super::ProblemKind;
use super::direct::{self, ALIGN, AlignedBuf};
use super::fsops::{Dir, FileId, Handle};
use super::policy::{MetaWriter, WithheldKind};
use crate::format::id::{BlobId, Id, PackId};
use crate::format::index::Index;
use crate::format::tree::Node;
use crate::repo::BlobReader;

/// Blobs per segment, at most.
const SEGMENT_BLOBS: usize = 256;

/// Bytes per segment: a segment ends with the blob that reaches this
/// (only a single blob can make it larger).
const SEGMENT_BYTES: u64 = 2 << 20;

/// A segment buffer's capacity: a segment's padding, [`SEGMENT_BYTES`], and
/// the one blob that may pass it (the default chunker's are at most 64 KiB).
pub(super) const SEGMENT_BUF: usize = ALIGN + SEGMENT_BYTES as usize + (256 << 10);

/// Bytes gathered before one positional write.
const WRITE_BUF: usize = 1 << 20;

/// Blocks of zeros this size (aligned in the file) are left as holes.
const HOLE_BLOCK: u64 = 4096;

/// Files from this size on are sent to disk as they are written, so that
/// the final flush finds little left to write (and waits about as long
/// from one run to the next) instead of all of it at once.
const WRITEBACK_FROM: u64 = 8 << 20;

type Failure = (ProblemKind, String);

/// One file being restored.
pub struct FileState {
    /// Path relative to the snapshot root (for reports).
    pub rel: PathBuf,
    dir: Arc<Dir>,
    name: OsString,
    node: Node,
    /// Permission bits (the policy's).
    mode: u32,
    /// The new file and where it is: made by the plan for a file of several
    /// segments (the workers share it), by the worker for a file of one
    /// (so that creating small files is spread over the workers too).
    made: OnceLock<(File, Staged)>,
    failure: Mutex<Option<Failure>>,
    /// The whole-file hash so far: a single-segment file is hashed as it is
    /// written, a file of several segments in order as its segments are
    /// done (`None` once hashing failed, or before a single-segment file
    /// is written: a small file checked in memory needs none, and the
    /// hasher is most of this state's size).
    hash: Mutex<Option<Box<blake3::Hasher>>>,
    /// Whose turn it is to hash and write (files of several segments).
    order: Mutex<Order>,
    /// Wakes the workers waiting for their turn.
    turn: Condvar,
    single: bool,
    /// Written around the page cache (when the file system took it).
    direct: bool,
    /// Allocated ahead of the writes: runs of zero blocks are given back,
    /// not skipped.
    allocated: Option<direct::Ahead>,
    /// The end of the last data written (single-segment files are sized
    /// from it at the end).
    written_end: AtomicU64,
    commit: Commit,
}

/// The segments of a file of several, in file order.
struct Order {
    /// Segment `k` spans `bounds[k]..bounds[k + 1]`.
    bounds: Vec<u64>,
    /// Segments before this one are hashed and written (or failed).
    next: usize,
    /// The bytes after the last aligned block written, to be written with
    /// the next segment's first bytes.
    carry: Vec<u8>,
    /// Writes go around the page cache (until the file system refuses).
    direct: bool,
    /// Segments written (or failed), in any order.
    written: usize,
    /// A worker panicked on one of this file's segments: its turn never
    /// comes, so nobody waits for it ([`TurnGuard`]).
    abandoned: bool,
}

/// Held by a worker while it has a segment of a file of several: if the
/// worker panics (a bug), the file's turns are marked abandoned and the
/// workers waiting for theirs are woken, so the restore fails with the
/// panic instead of waiting for ever.
struct TurnGuard<'a> {
    order: &'a Mutex<Order>,
    turn: &'a Condvar,
}

impl Drop for TurnGuard<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let mut order = self
                .order
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            order.abandoned = true;
            drop(order);
            self.turn.notify_all();
        }
    }
}

/// Waits until segment `k` is next in file order; `None` if the file's
/// turns were abandoned.
fn wait_turn<'a>(
    order: &'a Mutex<Order>,
    turn: &Condvar,
    k: usize,
) -> Option<std::sync::MutexGuard<'a, Order>> {
    let mut order = order.lock().expect("order lock");
    while order.next != k {
        if order.abandoned {
            return None;
        }
        order = turn.wait(order).expect("order lock");
    }
    Some(order)
}

/// Where a file is while it is written.
enum Staged {
    /// Unnamed (`O_TMPFILE`); `mode` is the permission bits it was created
    /// with, when known.
    Unnamed { mode: Option<u32> },
    /// Under this temporary name.
    Named(OsString),
}

impl FileState {
    /// Removes what a failed file left (an unnamed file goes with its
    /// handle).
    fn discard(&self) {
        if let Some((_, Staged::Named(tmp))) = self.made.get() {
            self.dir.remove_temp(tmp);
        }
    }

    /// Creates the new file unless the plan did.
    fn make(&self) -> Result<&File, Failure> {
        if self.made.get().is_none() {
            let made = create(&self.dir, self.mode, self.commit)
                .map_err(|e| (ProblemKind::Write, e.to_string()))?;
            let _ = self.made.set(made);
        }
        self.made
            .get()
            .map(|(f, _)| f)
            .ok_or_else(|| (ProblemKind::Write, "the new file was not created".into()))
    }
}

/// Creates the new file that will hold `node` in `dir`: unnamed, with the
/// permission bits `mode`, unless it is to replace an existing entry or
/// the file system cannot.
fn create(dir: &Dir, mode: u32, commit: Commit) -> std::io::Result<(File, Staged)> {
    if !commit.replacing
        && let Some(f) = dir.create_unnamed(mode)?
    {
        return Ok((
            f,
            Staged::Unnamed {
                mode: dir.created_mode(mode),
            },
        ));
    }
    let (f, tmp) = dir.create_temp_file()?;
    Ok((f, Staged::Named(tmp)))
}

/// How a finished file takes its final name.
#[derive(Debug, Clone, Copy, Default)]
pub struct Commit {
    /// Something had the name when the file was planned.
    pub replacing: bool,
    /// Never replace an existing entry (`--overwrite never`).
    pub no_replace: bool,
}

impl FileState {
    /// The file's recorded size.
    pub fn size(&self) -> u64 {
        self.node.size
    }

    /// Its data was written around the page cache: nothing of it is left
    /// for a flush to write but its last partial block.
    pub fn written_direct(&self) -> bool {
        self.direct
    }
}

/// A run of consecutive blobs of one file and where they go.
pub struct Segment {
    state: Arc<FileState>,
    /// Which segment of its file.
    k: usize,
    blobs: std::ops::Range<usize>,
    offset: u64,
    /// Where the file's first blob is stored (its first indexed location),
    /// to read a batch's files in pack order.
    place: Option<(PackId, u32)>,
}

impl Segment {
    /// Whether this is a whole file (of one segment): such files are
    /// handed to the workers in batches of one directory.
    pub fn whole(&self) -> bool {
        self.state.single
    }

    /// The directory the file goes into.
    pub fn dir(&self) -> &Arc<Dir> {
        &self.state.dir
    }

    /// The file's recorded size.
    pub fn file_size(&self) -> u64 {
        self.state.node.size
    }

    /// Where its file's first blob is stored: the pack and the offset in
    /// it (`None` for an empty file). Reading a batch's files in this
    /// order moves each worker's pack reader forward only, instead of
    /// back to chunks it already decrypted.
    pub fn place(&self) -> Option<(PackId, u32)> {
        self.place
    }
}

/// Puts a batch of whole files in the order their first blobs are stored
/// (pack, then offset; empty files first), so that a worker's pack reader
/// moves forward through each pack instead of going back to decrypt a
/// chunk again: backups compress in parallel, so a directory's blobs are
/// stored close together but not in walk order.
pub fn in_pack_order(batch: &mut [Segment]) {
    batch.sort_by_key(Segment::place);
}

/// What finishing a file produced.
pub enum Finished {
    /// Restored.
    Ok {
        /// Its size.
        bytes: u64,
        /// The inode now under its final name (hard-link group members only).
        id: Option<FileId>,
        /// Metadata that could not be applied, if any.
        problem: Option<String>,
        /// What the restore policy withheld.
        withheld: Vec<(WithheldKind, String)>,
        /// It replaced an existing entry.
        replaced: bool,
    },
    /// An entry that appeared under its name while it was written was
    /// kept (`--overwrite never`); nothing was written.
    Kept,
    /// Failed; nothing is left under its final name.
    Failed(Failure),
}

/// Creates the new file in `dir` (permission bits `mode`, the policy's)
/// and splits the file into segments.
pub fn plan(
    rel: &Path,
    dir: &Arc<Dir>,
    node: &Node,
    mode: u32,
    index: &Index,
    commit: Commit,
) -> Result<Vec<Segment>, Failure> {
    // Where each segment starts: (offset, first blob).
    let mut offsets: Vec<u64> = Vec::new();
    let mut starts: Vec<usize> = Vec::new();
    let mut pos = 0u64;
    let mut lengths_agree = true;
    let mut place = None;
    // A small file's blobs are salted (format 3): the index records their
    // lengths rounded up, so it is written in one segment, and its size
    // checked against what verifies (its blobs' lengths are not looked up).
    let small = node.size <= crate::format::salt::SALTED_MAX;
    for (i, id) in node.content.iter().enumerate() {
        let known = if i == 0 {
            place = index.get(id).map(|l| (l.pack, l.offset));
            place.is_some()
        } else {
            index.contains(id)
        };
        if !known {
            return Err((
                ProblemKind::Damaged,
                format!("blob {id} is in no index (lost pack or index file)"),
            ));
        }
        let last = offsets.last().copied().unwrap_or(0);
        if starts.is_empty()
            || i - starts[starts.len() - 1] >= SEGMENT_BLOBS
            || pos - last >= SEGMENT_BYTES
        {
            offsets.push(pos);
            starts.push(i);
        }
        if small {
            continue;
        }
        match index.agreed_raw_length(id) {
            Some(len) => pos += len as u64,
            // Index files disagree on this blob (one may be planted): write
            // the file in one segment, sized by what actually verifies.
            None => lengths_agree = false,
        }
    }
    if !lengths_agree || small {
        offsets.truncate(1);
        starts.truncate(1);
    } else if pos != node.size {
        return Err((
            ProblemKind::Damaged,
            format!(
                "blobs add up to {pos} bytes, the snapshot says {}",
                node.size
            ),
        ));
    }
    let segments = offsets.len().max(1);
    let made = OnceLock::new();
    let mut direct = false;
    let mut allocated = None;
    if segments > 1 {
        let (file, staged) =
            create(dir, mode, commit).map_err(|e| (ProblemKind::Write, e.to_string()))?;
        // Sized up front, so that blocks of zeros never written read as
        // zeros (holes) whichever segment ends first; the budget already
        // holds the size to what the header declares.
        if let Err(e) = file.set_len(node.size) {
            if let Staged::Named(tmp) = &staged {
                dir.remove_temp(tmp);
            }
            return Err((ProblemKind::Write, e.to_string()));
        }
        // Refused (`false`) or failed: written through the page cache.
        direct = direct::set_direct(&file, true).unwrap_or(false);
        if direct {
            allocated = direct::Ahead::start(&file, node.size, direct::ALLOCATE_AHEAD);
        }
        let _ = made.set((file, staged));
    }
    let state = Arc::new(FileState {
        rel: rel.to_owned(),
        dir: dir.clone(),
        name: rel.file_name().expect("entries have a name").to_owned(),
        node: node.clone(),
        mode,
        made,
        failure: Mutex::new(None),
        hash: Mutex::new((segments > 1).then(|| Box::new(blake3::Hasher::new()))),
        order: Mutex::new(Order {
            bounds: offsets.iter().copied().chain([node.size]).collect(),
            next: 0,
            carry: Vec::new(),
            direct,
            written: 0,
            abandoned: false,
        }),
        turn: Condvar::new(),
        single: segments == 1,
        direct,
        allocated,
        written_end: AtomicU64::new(0),
        commit,
    });
    if offsets.is_empty() {
        offsets.push(0);
    }
    let ends: Vec<usize> = starts
        .iter()
        .skip(1)
        .copied()
        .chain([node.content.len()])
        .collect();
    Ok(offsets
        .into_iter()
        .enumerate()
        .map(|(k, offset)| Segment {
            state: state.clone(),
            k,
            blobs: if segments == 1 {
                0..node.content.len()
            } else {
                starts[k]..ends[k]
            },
            offset,
            place,
        })
        .collect())
}

/// What a worker has left of a segment once [`process`] returns.
pub enum Step {
    /// Nothing: `Some` when the worker finished the file.
    Done(Option<(Arc<FileState>, Finished)>),
    /// A segment of a file of several, hashed in turn, whose whole blocks
    /// are still to be written with [`complete`]. Writes around the page
    /// cache wait for the disk; a worker hands this to a write-behind
    /// thread and reads its next segment meanwhile.
    Write(Pending),
}

/// A segment's whole blocks, ready to be written ([`complete`]).
pub struct Pending {
    st: Arc<FileState>,
    /// The buffer, how many of its bytes are whole blocks, and where in
    /// the file they go (`None`: the file failed, nothing to write).
    ready: Option<(AlignedBuf, usize, u64)>,
    /// Writes go around the page cache.
    direct: bool,
    verify: bool,
}

/// Writes one segment, or for a file of several, reads it into `spare`
/// (a buffer kept from an earlier segment, if any) and hashes it in turn,
/// leaving its blocks to write ([`Step::Write`]). The worker that writes a
/// file's last segment finishes the file and gets `Some`.
pub fn process(
    seg: Segment,
    reader: &mut BlobReader<'_>,
    index: &Index,
    meta: &MetaWriter,
    verify: bool,
    spare: &mut Option<AlignedBuf>,
) -> Step {
    let st = &seg.state;
    if st.single {
        if let Some(outcome) = write_small_new(st, reader, index, meta, verify) {
            return Step::Done(Some((seg.state.clone(), outcome)));
        }
        if !verify {
            // Hashed as it is written (a drill hashes what is on disk).
            st.hash
                .lock()
                .expect("hash lock")
                .get_or_insert_with(|| Box::new(blake3::Hasher::new()));
        }
        if st.failure.lock().expect("failure lock").is_none()
            && let Err(f) = write_segment(&seg, reader, index)
        {
            st.failure.lock().expect("failure lock").get_or_insert(f);
        }
        let outcome = finish(st, meta, verify);
        return Step::Done(Some((seg.state.clone(), outcome)));
    }
    let _guard = TurnGuard {
        order: &st.order,
        turn: &st.turn,
    };
    let failed = st.failure.lock().expect("failure lock").is_some();
    let gathered = (!failed).then(|| {
        let buf = spare.take().unwrap_or_else(|| AlignedBuf::new(0));
        gather(&seg, reader, index, buf)
    });
    match in_turn(st, &seg, gathered, verify) {
        Some(pending) => Step::Write(pending),
        None => Step::Done(None),
    }
}

/// Reads, decrypts and checks the blobs of segment `seg` of a file of
/// several into a buffer, placed so that the segment's first byte is as
/// far from an aligned address as the segment is from an aligned offset in
/// the file (the bytes before it are left for the previous segment's last
/// partial block).
fn gather(
    seg: &Segment,
    reader: &mut BlobReader<'_>,
    index: &Index,
    mut buf: AlignedBuf,
) -> Result<AlignedBuf, Failure> {
    let st = &seg.state;
    let expect = {
        let order = st.order.lock().expect("order lock");
        order.bounds[seg.k + 1] - order.bounds[seg.k]
    };
    let pad = (seg.offset % ALIGN as u64) as usize;
    // A worker keeps its buffers from one segment to the next, each sized
    // once for any segment of the default chunker: buffers of this size
    // freed and made again would stay with the allocator, not the system.
    // A larger segment (larger blobs) grows it below, once its lengths are
    // checked.
    if buf.capacity() < SEGMENT_BUF {
        buf = AlignedBuf::new(SEGMENT_BUF);
    }
    // Where each blob goes: the index's lengths agree for every blob of a
    // file written in segments (see `plan`), and each blob is checked to
    // be exactly that long, so these places are what the blobs hold.
    let ids = &st.node.content[seg.blobs.clone()];
    let mut places = Vec::with_capacity(ids.len());
    let mut end = 0u64;
    for (i, id) in ids.iter().enumerate() {
        let (Some(len), Some(loc)) = (index.agreed_raw_length(id), index.get(id)) else {
            return Err((
                ProblemKind::Damaged,
                format!("blob {id} is in no index (lost pack or index file)"),
            ));
        };
        // A segment ends once it holds SEGMENT_BYTES, so with every blob
        // within the chunker's limit its buffer stays bounded.
        if len > reader.max_raw(loc.kind) {
            return Err((
                ProblemKind::Damaged,
                format!("blob {id}: the index claims {len} bytes, over the limit"),
            ));
        }
        places.push(((loc.pack, loc.offset), i, end, len as usize));
        end += u64::from(len);
        // Never past where the next segment starts (nor so past the
        // recorded size): the index's lengths would be a lie.
        if end > expect {
            return Err(past_the_end(st.node.size));
        }
    }
    if end != expect {
        return Err((
            ProblemKind::Mismatch,
            format!(
                "the blobs from offset {} hold fewer bytes than the index records",
                seg.offset
            ),
        ));
    }
    // Read in pack order: parallel compression leaves a file's blobs a
    // little out of order in its packs, and reading them in file order
    // would decrypt the chunks they share again at each step back.
    places.sort_unstable_by_key(|&(at, i, _, _)| (at, i));
    buf.reset(pad + expect as usize);
    let out = buf.as_mut_slice();
    let mut prev: Option<(&BlobId, usize)> = None;
    for &(_, i, at, len) in &places {
        let at = pad + at as usize;
        match prev {
            // The same blob twice (runs of zeros, repeated pages): copied.
            Some((p, from)) if p == &ids[i] => out.copy_within(from..from + len, at),
            _ => reader
                .read_indexed_into(&ids[i], index, &mut out[at..at + len])
                .map_err(|e| (ProblemKind::reading(&e), e.to_string()))?,
        }
        prev = Some((&ids[i], at));
    }
    Ok(buf)
}

/// The failure for content longer than the snapshot records.
fn past_the_end(size: u64) -> Failure {
    (
        ProblemKind::Mismatch,
        format!("content runs past the {size} bytes the snapshot records"),
    )
}

/// Waits for segment `seg`'s turn (every segment before it hashed), then
/// adds what [`gather`] read to the whole-file hash (not in a drill, which
/// re-reads the file from disk) and takes over the partial block the
/// previous segment left. Its whole blocks are left for [`complete`], out
/// of turn. `None` if the turn never comes (a worker panicked).
///
/// The segment that is next is always held by a worker that is not
/// waiting (segments are handed out in file order, and each worker
/// finishes a segment, but for writing its blocks, before it takes
/// another), so this never waits for ever.
fn in_turn(
    st: &Arc<FileState>,
    seg: &Segment,
    gathered: Option<Result<AlignedBuf, Failure>>,
    verify: bool,
) -> Option<Pending> {
    let mut order = wait_turn(&st.order, &st.turn, seg.k)?;
    let mut ready = None;
    match gathered {
        // An earlier segment failed: nothing more is written.
        None => {}
        Some(Err(f)) => {
            st.failure.lock().expect("failure lock").get_or_insert(f);
        }
        Some(Ok(mut buf)) => {
            let failed = st.failure.lock().expect("failure lock").is_some();
            let pad = (seg.offset % ALIGN as u64) as usize;
            if !failed {
                let mut hash = st.hash.lock().expect("hash lock");
                if verify {
                    *hash = None;
                } else if let Some(h) = hash.as_mut() {
                    h.update(&buf.as_slice()[pad..]);
                }
                drop(hash);
                match carry_in(&mut order, &mut buf, seg.offset) {
                    Ok(whole) => ready = Some((buf, whole, seg.offset - pad as u64)),
                    Err(e) => fail(st, e),
                }
            }
        }
    }
    order.next += 1;
    let direct = order.direct;
    drop(order);
    st.turn.notify_all();
    Some(Pending {
        st: st.clone(),
        ready,
        direct,
        verify,
    })
}

/// Writes a segment's whole blocks (segments of one file are written at
/// the same time, in any order). The last of a file's segments to be
/// written also writes the file's last partial block and finishes the
/// file: it alone returns `Some`. The buffer is given back for reuse.
pub fn complete(
    p: Pending,
    meta: &MetaWriter,
) -> (Option<(Arc<FileState>, Finished)>, Option<AlignedBuf>) {
    let Pending {
        st,
        ready,
        mut direct,
        verify,
    } = p;
    let mut spare = None;
    if let Some((buf, whole, at)) = ready {
        let data = &buf.as_slice()[..whole];
        match st.made.get() {
            Some((file, _)) => {
                if let Some(ahead) = &st.allocated {
                    ahead.through(file, at + whole as u64);
                }
                match write_blocks(file, data, at, &mut direct, st.allocated.is_some()) {
                    Ok(()) if !direct && st.node.size >= WRITEBACK_FROM => {
                        start_writeback(file, at, whole as u64)
                    }
                    Ok(()) => {}
                    Err(e) => fail(&st, e),
                }
            }
            None => fail(&st, std::io::Error::other("the new file was not created")),
        }
        spare = Some(buf);
    }
    let mut order = st.order.lock().expect("order lock");
    order.direct &= direct;
    order.written += 1;
    if order.written + 1 < order.bounds.len() {
        return (None, spare);
    }
    // Every segment is written: the file's last partial block.
    let failed = st.failure.lock().expect("failure lock").is_some();
    if !failed && let Some((file, _)) = st.made.get() {
        let end = st.node.size;
        if let Err(e) = write_tail(file, &mut order, end, st.allocated.is_some()) {
            fail(&st, e);
        }
    }
    drop(order);
    let outcome = finish(&st, meta, verify);
    (Some((st.clone(), outcome)), spare)
}

/// Records a write error as the file's failure (the first one stays).
fn fail(st: &FileState, e: std::io::Error) {
    st.failure
        .lock()
        .expect("failure lock")
        .get_or_insert((ProblemKind::Write, e.to_string()));
}

/// Puts the partial block the previous segment left (`order.carry`) in
/// front of `buf` (whose bytes from `offset % ALIGN` on are the segment at
/// `offset`) and keeps the partial block at its end for the next segment.
/// Returns how many bytes of `buf` are whole blocks, to be written at
/// `offset` rounded down to a block.
fn carry_in(order: &mut Order, buf: &mut AlignedBuf, offset: u64) -> std::io::Result<usize> {
    let pad = (offset % ALIGN as u64) as usize;
    if order.carry.len() != pad {
        return Err(std::io::Error::other(
            "segments do not meet (the index's lengths disagree with the blobs)",
        ));
    }
    buf.as_mut_slice()[..pad].copy_from_slice(&order.carry);
    let data = buf.as_slice();
    let whole = data.len() / ALIGN * ALIGN;
    order.carry.clear();
    order.carry.extend_from_slice(&data[whole..]);
    Ok(whole)
}

/// Writes the file's last partial block (what the last segment carried
/// out; it ends at `end`) through the page cache (giving it back if it is
/// zeros and the file was `allocated` ahead).
fn write_tail(file: &File, order: &mut Order, end: u64, allocated: bool) -> std::io::Result<()> {
    if order.carry.is_empty() {
        return Ok(());
    }
    if order.direct {
        direct::set_direct(file, false)?;
        order.direct = false;
    }
    let at = end - order.carry.len() as u64;
    write_sparse_or_give_back(
        &order.carry,
        at,
        |b, o| file.write_all_at(b, o),
        |o, len| {
            if allocated {
                direct::deallocate(file, o, len)
            }
        },
    )
    .map(|_| ())
}

/// Writes whole aligned blocks `data` at `at` (holes for blocks of
/// zeros, given back if the file was `allocated` ahead), around the
/// page cache while `direct`; on the file system's refusal (`EINVAL`)
/// turns that off and writes through the page cache.
fn write_blocks(
    file: &File,
    data: &[u8],
    at: u64,
    direct: &mut bool,
    allocated: bool,
) -> std::io::Result<()> {
    let give_back = |o: u64, len: u64| {
        if allocated {
            direct::deallocate(file, o, len)
        }
    };
    write_sparse_or_give_back(
        data,
        at,
        |b, o| {
            if *direct {
                match file.write_all_at(b, o) {
                    Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
                    r => return r,
                }
            }
            if *direct {
                direct::set_direct(file, false)?;
                *direct = false;
            }
            file.write_all_at(b, o)
        },
        give_back,
    )
    .map(|_| ())
}

fn write_segment(seg: &Segment, reader: &mut BlobReader<'_>, index: &Index) -> Result<(), Failure> {
    let st = &seg.state;
    let file = st.make()?;
    let mut offset = seg.offset;
    let mut inline = st.hash.lock().expect("hash lock");
    let write = |data: &[u8], offset: u64| -> Result<(), Failure> {
        let end = write_sparse(data, offset, |b, o| file.write_all_at(b, o))
            .map_err(|e| (ProblemKind::Write, e.to_string()))?;
        st.written_end.fetch_max(end, Ordering::Relaxed);
        if st.node.size >= WRITEBACK_FROM {
            start_writeback(file, offset, data.len() as u64);
        }
        Ok(())
    };
    if let [id] = &st.node.content[seg.blobs.clone()] {
        // One blob (most small files): written from where it was read.
        let data = reader
            .read_file_blob(id, st.node.slice(), index)
            .map_err(|e| (ProblemKind::reading(&e), e.to_string()))?;
        if offset + data.len() as u64 > st.node.size {
            return Err(past_the_end(st.node.size));
        }
        if let Some(h) = inline.as_mut() {
            h.update(&data);
        }
        return write(&data, offset);
    }
    // Gather the segment and write it with few large writes: concurrent
    // small writes into one file contend on its inode lock.
    let mut buf: Vec<u8> = Vec::with_capacity(WRITE_BUF.min(st.node.size as usize));
    let flush = |buf: &mut Vec<u8>, offset: &mut u64| -> Result<(), Failure> {
        write(buf, *offset)?;
        *offset += buf.len() as u64;
        buf.clear();
        Ok(())
    };
    for id in &st.node.content[seg.blobs.clone()] {
        let data = reader
            .read_indexed(id, index)
            .map_err(|e| (ProblemKind::reading(&e), e.to_string()))?;
        // Never write past the recorded size: a restore writes no more than
        // the snapshot declares, whatever the blobs hold.
        if offset + (buf.len() + data.len()) as u64 > st.node.size {
            return Err(past_the_end(st.node.size));
        }
        if let Some(h) = inline.as_mut() {
            h.update(&data);
        }
        buf.extend_from_slice(&data);
        if buf.len() >= WRITE_BUF {
            flush(&mut buf, &mut offset)?;
        }
    }
    flush(&mut buf, &mut offset)
}

/// The cheapest safe way to restore a small file: a file of at most one
/// blob, new in a directory this restore made out of sight (under a
/// temporary name, or beneath one, until the restore ends, see
/// [`Dir::create_new_file`]).
/// Its blob is read and checked against its id, and its content against
/// the whole-file hash and size, in memory *before* anything is created;
/// then the file is created under its final name (`O_CREAT|O_EXCL|
/// O_NOFOLLOW`, with its permission bits), written, given its metadata on
/// the open handle, and closed: no unnamed inode to link (`O_TMPFILE` puts
/// the inode on the file system's orphan list and `linkat` takes it off
/// again, a journaled update each) and no temporary name to rename. A
/// write that fails removes the file again.
///
/// `None` when the file is not such a file, or when something has its
/// name (only another process of the restoring user could have put it
/// there): the general path decides then.
fn write_small_new(
    st: &FileState,
    reader: &mut BlobReader<'_>,
    index: &Index,
    meta: &MetaWriter,
    verify: bool,
) -> Option<Finished> {
    if verify
        || !st.dir.hidden()
        || st.commit.replacing
        || st.node.content.len() > 1
        || st.made.get().is_some()
        || st.failure.lock().expect("failure lock").is_some()
    {
        return None;
    }
    let data = match st.node.content.first() {
        Some(id) => match reader.read_file_blob(id, st.node.slice(), index) {
            Ok(data) => data,
            Err(e) => return Some(Finished::Failed((ProblemKind::reading(&e), e.to_string()))),
        },
        None => Vec::new(),
    };
    if data.len() as u64 > st.node.size {
        return Some(Finished::Failed(past_the_end(st.node.size)));
    }
    let hash: Id = blake3::hash(&data).into();
    if Some(hash) != st.node.hash || data.len() as u64 != st.node.size {
        return Some(Finished::Failed((
            ProblemKind::Mismatch,
            format!(
                "restored content ({} bytes) differs from the snapshot's hash or size ({} bytes)",
                data.len(),
                st.node.size
            ),
        )));
    }
    let file = match st.dir.create_new_file(&st.name, st.mode) {
        Ok(Some(f)) => f,
        Ok(None) => return None,
        Err(e) => return Some(Finished::Failed((ProblemKind::Write, e.to_string()))),
    };
    let written = write_sparse(&data, 0, |b, o| file.write_all_at(b, o)).and_then(|end| {
        if end < st.node.size {
            file.set_len(st.node.size)?;
        }
        match st.node.hardlink {
            Some(_) => FileId::of_file(&file).map(Some),
            None => Ok(None),
        }
    });
    let id = match written {
        Ok(id) => id,
        Err(e) => {
            drop(file);
            let mut why = e.to_string();
            if let Err(e) = st.dir.remove_failed(&st.name) {
                why = format!("{why}; removing what was written: {e}");
            }
            return Some(Finished::Failed((ProblemKind::Write, why)));
        }
    };
    // Metadata last: its times say the file is done.
    let applied = meta.apply(
        &Handle::Open(&file),
        &st.node,
        Some(st.dir.new_owner()),
        st.dir.created_mode(st.mode),
    );
    Some(Finished::Ok {
        bytes: st.node.size,
        id,
        problem: applied.problem,
        withheld: applied.withheld,
        replaced: false,
    })
}

fn finish(st: &FileState, meta: &MetaWriter, verify: bool) -> Finished {
    match check_and_commit(st, meta, verify) {
        Ok(done) => done,
        Err(f) => {
            st.discard();
            Finished::Failed(f)
        }
    }
}

fn check_and_commit(st: &FileState, meta: &MetaWriter, verify: bool) -> Result<Finished, Failure> {
    if let Some(f) = st.failure.lock().expect("failure lock").take() {
        return Err(f);
    }
    let write_err = |e: std::io::Error| (ProblemKind::Write, e.to_string());
    let Some((file, staged)) = st.made.get() else {
        return Err((ProblemKind::Write, "the new file was not created".into()));
    };
    // A single-segment file whose last block was a hole (or that is empty
    // of data) is sized now.
    if st.single && st.written_end.load(Ordering::Relaxed) < st.node.size {
        file.set_len(st.node.size).map_err(write_err)?;
    }
    let inline: Option<Id> = st
        .hash
        .lock()
        .expect("hash lock")
        .take()
        .map(|h| h.finalize().into());
    let (hash, size) = match inline {
        Some(h) if !verify => (h, st.node.size),
        // A drill: hash what is on disk; a file of several segments was
        // written around the page cache and is read back the same way.
        _ if !st.single => direct::hash_from_disk(file).map_err(write_err)?,
        _ => hash_reader(&mut PositionalReader { file, pos: 0 }).map_err(write_err)?,
    };
    if Some(hash) != st.node.hash || size != st.node.size {
        return Err((
            ProblemKind::Mismatch,
            format!(
                "restored content ({size} bytes) differs from the snapshot's hash or size ({} bytes)",
                st.node.size
            ),
        ));
    }
    let mode_is = match *staged {
        Staged::Unnamed { mode } => mode,
        Staged::Named(_) => None,
    };
    let applied = meta.apply(
        &Handle::Open(file),
        &st.node,
        Some(st.dir.new_owner()),
        mode_is,
    );
    // Only a hard-link group's first member needs its inode known.
    let id = match st.node.hardlink {
        Some(_) => Some(FileId::of_file(file).map_err(write_err)?),
        None => None,
    };
    let mut replaced = st.commit.replacing;
    match staged {
        Staged::Named(tmp) if st.commit.no_replace => {
            if !st.dir.commit_new(tmp, &st.name).map_err(write_err)? {
                st.dir.remove_temp(tmp);
                return Ok(Finished::Kept);
            }
        }
        Staged::Named(tmp) => st.dir.commit(tmp, &st.name).map_err(write_err)?,
        Staged::Unnamed { .. } => {
            if !st.dir.link_unnamed(file, &st.name).map_err(write_err)? {
                // Something took the name while the file was written.
                if st.commit.no_replace {
                    return Ok(Finished::Kept);
                }
                let tmp = st.dir.link_unnamed_temp(file).map_err(write_err)?;
                if let Err(e) = st.dir.commit(&tmp, &st.name) {
                    st.dir.remove_temp(&tmp);
                    return Err(write_err(e));
                }
                replaced = true;
            }
        }
    }
    Ok(Finished::Ok {
        bytes: st.node.size,
        id,
        problem: applied.problem,
        withheld: applied.withheld,
        replaced,
    })
}

/// Writes `buf` at `offset` with `write`, skipping every
/// [`HOLE_BLOCK`]-aligned block of zeros (they read as zeros once the file
/// is sized) and writing each run of other blocks in one call. Returns the
/// end of the last run written (0 when nothing was).
fn write_sparse(
    buf: &[u8],
    offset: u64,
    write: impl FnMut(&[u8], u64) -> std::io::Result<()>,
) -> std::io::Result<u64> {
    write_sparse_or_give_back(buf, offset, write, |_, _| {})
}

/// [`write_sparse`], telling `zeros` where each run of skipped blocks of
/// zeros lies (offset, length), so that a file allocated up front can give
/// them back.
fn write_sparse_or_give_back(
    buf: &[u8],
    offset: u64,
    mut write: impl FnMut(&[u8], u64) -> std::io::Result<()>,
    mut zeros: impl FnMut(u64, u64),
) -> std::io::Result<u64> {
    let mut written = 0u64;
    // Ends the run of blocks `start..end` (zeros or not).
    let mut end_run = |start: usize, end: usize, of_zeros: bool| {
        if of_zeros {
            zeros(offset + start as u64, (end - start) as u64);
        } else {
            write(&buf[start..end], offset + start as u64)?;
            written = offset + end as u64;
        }
        std::io::Result::Ok(())
    };
    // The run so far: where it starts and whether it is zeros.
    let mut run: Option<(usize, bool)> = None;
    let mut i = 0usize;
    while i < buf.len() {
        let at = offset + i as u64;
        let end = (((at / HOLE_BLOCK + 1) * HOLE_BLOCK - offset) as usize).min(buf.len());
        let of_zeros = is_zero(&buf[i..end]);
        match run {
            Some((_, z)) if z == of_zeros => {}
            Some((start, z)) => {
                end_run(start, i, z)?;
                run = Some((i, of_zeros));
            }
            None => run = Some((i, of_zeros)),
        }
        i = end;
    }
    if let Some((start, z)) = run {
        end_run(start, buf.len(), z)?;
    }
    Ok(written)
}

/// Starts writing `len` bytes at `offset` of `file` to disk without waiting
/// for them (Linux's `POSIX_FADV_DONTNEED` starts writeback of the dirty
/// pages in the range, and drops only pages that are already clean). Best
/// effort: the final flush writes whatever this did not.
fn start_writeback(file: &File, offset: u64, len: u64) {
    let _ = rustix::fs::fadvise(
        file,
        offset,
        std::num::NonZeroU64::new(len),
        rustix::fs::Advice::DontNeed,
    );
}

/// Whether every byte of `b` is zero (eight at a time).
fn is_zero(b: &[u8]) -> bool {
    let (words, rest) = b.split_at(b.len() - b.len() % 8);
    words
        .chunks_exact(8)
        .all(|w| u64::from_ne_bytes(w.try_into().expect("8 bytes")) == 0)
        && rest.iter().all(|&x| x == 0)
}

/// Reads a file from its start through positional reads (the file handle
/// is shared by the workers writing its segments).
struct PositionalReader<'f> {
    file: &'f File,
    pos: u64,
}

impl Read for PositionalReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.file.read_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// BLAKE3 and length of everything `r` yields.
pub fn hash_reader(r: &mut dyn Read) -> std::io::Result<(Id, u64)> {
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = r.read(&mut buf)?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
    Ok((h.finalize().into(), n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    use crate::format::id::BlobId;
    use crate::format::index::{IndexedBlob, IndexedPack};
    use crate::format::pack::BlobKind;
    use crate::format::tree::NodeKind;

    fn file_node(name: &str, content: &[u8], blobs: Vec<BlobId>) -> Node {
        Node {
            size: content.len() as u64,
            content: blobs,
            hash: Some(Id::of_bytes(content)),
            ..Node::bare(name.as_bytes(), NodeKind::File)
        }
    }

    #[test]
    fn a_batch_is_read_in_the_order_its_blobs_are_stored() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = Arc::new(Dir::open_target(tmp.path()).unwrap());
        let packs = [PackId::of_bytes(b"first"), PackId::of_bytes(b"second")];
        // Walk order f0..f4; where each file's blob was stored (f4 is
        // empty: no blob).
        let stored = [(1, 40u32), (0, 900), (0, 100), (1, 0)];
        let contents: Vec<Vec<u8>> = (0..4).map(|i| format!("file {i}").into_bytes()).collect();
        let ids: Vec<BlobId> = contents
            .iter()
            .map(|c| BlobId::keyed(&[7; 32], c))
            .collect();
        let mut index = Index::compact();
        for (p, pack) in packs.iter().enumerate() {
            index.add_pack(&IndexedPack {
                id: *pack,
                kind: BlobKind::Data,
                blobs: (0..4)
                    .filter(|&i| stored[i].0 == p)
                    .map(|i| IndexedBlob {
                        id: ids[i],
                        offset: stored[i].1,
                        length: 30,
                        raw_length: contents[i].len() as u32,
                    })
                    .collect(),
            });
        }
        index.finish();
        let mut batch: Vec<Segment> = (0..5)
            .map(|i| {
                let (content, blobs) = match i {
                    4 => (Vec::new(), Vec::new()),
                    _ => (contents[i].clone(), vec![ids[i]]),
                };
                let name = format!("f{i}");
                let node = file_node(&name, &content, blobs);
                let mut segs = plan(
                    Path::new(&name),
                    &dir,
                    &node,
                    0o644,
                    &index,
                    Commit::default(),
                )
                .unwrap_or_else(|e| panic!("{e:?}"));
                assert_eq!(segs.len(), 1);
                segs.pop().unwrap()
            })
            .collect();
        for (i, seg) in batch.iter().enumerate().take(4) {
            assert_eq!(seg.place(), Some((packs[stored[i].0], stored[i].1)));
        }
        assert_eq!(batch[4].place(), None);
        in_pack_order(&mut batch);
        let order: Vec<String> = batch
            .iter()
            .map(|s| s.state.rel.display().to_string())
            .collect();
        let mut expect: Vec<(Option<(PackId, u32)>, String)> = (0..4)
            .map(|i| (Some((packs[stored[i].0], stored[i].1)), format!("f{i}")))
            .chain([(None, "f4".to_owned())])
            .collect();
        expect.sort();
        let expect: Vec<String> = expect.into_iter().map(|(_, n)| n).collect();
        assert_eq!(order, expect);
        // Within one pack, by offset.
        let pos = |n: &str| order.iter().position(|o| o == n).unwrap();
        assert!(pos("f2") < pos("f1"));
        assert!(pos("f3") < pos("f0"));
    }

    #[test]
    fn sparse_writes_leave_zero_blocks_as_holes_and_keep_every_byte() {
        let f = tempfile::tempfile().expect("temp file");
        let size = 8 << 20;
        f.set_len(size).unwrap();
        // Data straddling block boundaries, at an unaligned offset, with a
        // megabyte of zeros between; then a buffer that is zeros only.
        let mut buf = vec![0u8; 3 << 20];
        buf[10] = 1;
        buf[4095..4097].copy_from_slice(&[2, 3]);
        buf[(2 << 20) + 5] = 4;
        let offset = 1000;
        let w = |b: &[u8], o: u64| f.write_all_at(b, o);
        write_sparse(&buf, offset, w).unwrap();
        write_sparse(&vec![0u8; 1 << 20], 5 << 20, w).unwrap();
        let mut back = vec![0u8; size as usize];
        f.read_exact_at(&mut back, 0).unwrap();
        assert_eq!(
            &back[offset as usize..offset as usize + buf.len()],
            &buf[..]
        );
        assert!(back[..offset as usize].iter().all(|&b| b == 0));
        assert!(back[offset as usize + buf.len()..].iter().all(|&b| b == 0));
        // Four blocks hold data; the rest of the 8 MiB is holes (where the
        // file system has them).
        let blocks = f.metadata().unwrap().blocks();
        assert!(blocks * 512 <= 64 * 1024, "{blocks} blocks allocated");
    }

    /// Writes `content` as segments starting at `cuts` through
    /// [`carry_in`], [`write_blocks`] and [`write_tail`], with `O_DIRECT` on (when the file system takes
    /// it) or off, and the file allocated ahead in windows of `allocate`
    /// bytes or not (as the plan and [`complete`] do for direct writes).
    /// Also says whether it was allocated.
    fn write_in_segments(
        dir: &Path,
        content: &[u8],
        cuts: &[usize],
        direct: bool,
        allocate: Option<u64>,
    ) -> (File, bool) {
        let f = tempfile::tempfile_in(dir).unwrap();
        f.set_len(content.len() as u64).unwrap();
        let mut order = Order {
            bounds: Vec::new(),
            next: 0,
            carry: Vec::new(),
            direct: direct && direct::set_direct(&f, true).unwrap(),
            written: 0,
            abandoned: false,
        };
        let ahead = allocate.and_then(|w| direct::Ahead::start(&f, content.len() as u64, w));
        let allocated = ahead.is_some();
        let ends: Vec<usize> = cuts
            .iter()
            .skip(1)
            .copied()
            .chain([content.len()])
            .collect();
        for (&start, &end) in cuts.iter().zip(&ends) {
            let pad = start % ALIGN;
            let mut buf = AlignedBuf::new(pad);
            buf.reset(pad);
            buf.extend(&content[start..end]);
            let whole = carry_in(&mut order, &mut buf, start as u64).unwrap();
            let at = (start - pad) as u64;
            if let Some(ahead) = &ahead {
                ahead.through(&f, at + whole as u64);
            }
            write_blocks(
                &f,
                &buf.as_slice()[..whole],
                at,
                &mut order.direct,
                allocated,
            )
            .unwrap();
        }
        write_tail(&f, &mut order, content.len() as u64, allocated).unwrap();
        (f, allocated)
    }

    #[test]
    fn a_worker_that_panics_on_a_segment_never_leaves_the_next_one_waiting() {
        let order = Mutex::new(Order {
            bounds: vec![0, 10, 20],
            next: 0,
            carry: Vec::new(),
            direct: false,
            written: 0,
            abandoned: false,
        });
        let turn = Condvar::new();
        std::thread::scope(|s| {
            // Segment 1 waits for segment 0, whose worker panics.
            let waiter = s.spawn(|| wait_turn(&order, &turn, 1).is_some());
            let crashed = s.spawn(|| {
                let _guard = TurnGuard {
                    order: &order,
                    turn: &turn,
                };
                panic!("a bug while gathering segment 0");
            });
            assert!(crashed.join().is_err());
            assert!(!waiter.join().unwrap(), "the waiter gives up its turn");
        });
        assert!(order.lock().unwrap().abandoned);
        // Without a panic the guard changes nothing.
        let order = Mutex::new(Order {
            bounds: vec![0, 10],
            next: 0,
            carry: Vec::new(),
            direct: false,
            written: 0,
            abandoned: false,
        });
        drop(TurnGuard {
            order: &order,
            turn: &turn,
        });
        assert!(wait_turn(&order, &turn, 0).is_some());
    }

    #[test]
    fn segments_written_around_the_page_cache_keep_every_byte_and_the_holes() {
        let dir = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).unwrap();
        // Odd sizes, segments meeting inside blocks, a megabyte of zeros
        // across a segment boundary, and a last partial block.
        let size = (5 << 20) + 4097 + 13;
        let mut content: Vec<u8> = (0..size).map(|i| (i % 251) as u8 | 1).collect();
        content[(2 << 20) + 100..(3 << 20) + 100].fill(0);
        let cuts = [
            0,
            4095,
            5000,
            (2 << 20) + 7,
            (2 << 20) + 8,
            4 << 20,
            size - 1,
        ];
        for (direct, allocate) in [(true, None), (false, None), (true, Some(1 << 20))] {
            let (f, allocated) = write_in_segments(dir.path(), &content, &cuts, direct, allocate);
            let mut back = vec![0u8; size];
            f.read_exact_at(&mut back, 0).unwrap();
            assert!(back == content, "direct {direct}: content differs");
            assert_eq!(f.metadata().unwrap().len(), size as u64);
            // The aligned megabyte of zeros less its edges is a hole, also
            // in a file whose every block was allocated first (its
            // edges, and a block of the file system's own for the extents
            // that windows and holes make, may stay).
            let blocks = f.metadata().unwrap().blocks() * 512;
            assert!(
                blocks <= (size as u64) - (1 << 20) + 3 * 4096,
                "direct {direct}, allocated {allocated}: {blocks}"
            );
        }
    }

    #[test]
    fn a_file_allocated_up_front_gives_back_its_zero_blocks_and_keeps_its_data() {
        let dir = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).unwrap();
        // 6 MiB and a partial block: zeros only but for a block at 1 MiB
        // and the start of the partial block.
        let size = (6 << 20) + 100;
        let mut content = vec![0u8; size];
        content[(1 << 20)..(1 << 20) + 4096].fill(7);
        content[size - 100..size - 50].fill(9);
        let cuts = [0, 3 << 20, (3 << 20) + 5];
        // Windows of 1 MiB: allocated a window ahead, then given back.
        let (f, allocated) = write_in_segments(dir.path(), &content, &cuts, true, Some(1 << 20));
        let mut back = vec![0u8; size];
        f.read_exact_at(&mut back, 0).unwrap();
        assert!(back == content, "content differs");
        if !allocated {
            return; // this file system allocates nothing ahead: nothing to give back
        }
        // Two blocks of data are left (and at most one more the file
        // system keeps): without giving back, 6 MiB stay allocated.
        let blocks = f.metadata().unwrap().blocks() * 512;
        assert!(blocks <= 3 * 4096, "{blocks} bytes allocated");
    }

    #[test]
    fn a_direct_write_the_kernel_refuses_is_written_through_the_page_cache() {
        let dir = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).unwrap();
        let f = tempfile::tempfile_in(dir.path()).unwrap();
        if !direct::set_direct(&f, true).unwrap() {
            return; // this file system takes no O_DIRECT: nothing to refuse
        }
        // Misaligned in memory: the kernel says EINVAL, as a file system
        // that refuses direct writes does.
        let mut raw = AlignedBuf::new(2 * ALIGN + 1);
        raw.extend(&[9u8; 2 * ALIGN + 1]);
        let data = &raw.as_slice()[1..];
        let mut direct = true;
        write_blocks(&f, data, 0, &mut direct, false).unwrap();
        assert!(!direct, "direct writes are off once refused");
        let mut back = vec![0u8; 2 * ALIGN];
        f.read_exact_at(&mut back, 0).unwrap();
        assert!(back.iter().all(|&b| b == 9));
        let flags = rustix::fs::fcntl_getfl(&f).unwrap();
        assert!(!flags.contains(rustix::fs::OFlags::DIRECT));
    }

    #[test]
    fn zero_detection_sees_the_last_odd_bytes() {
        assert!(is_zero(&[0; 13]));
        let mut b = [0u8; 13];
        b[12] = 1;
        assert!(!is_zero(&b));
        b[12] = 0;
        b[3] = 1;
        assert!(!is_zero(&b));
        assert!(is_zero(&[]));
    }
}

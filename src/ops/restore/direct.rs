//! Writing a large file's data around the page cache (`O_DIRECT`).
//!
//! Copying a restored file into fresh page cache costs the kernel far more
//! than the disk write itself (allocating and charging every page), and a
//! restore of a large tree writes little else. A file of several segments
//! is therefore written with `O_DIRECT`, which needs the file offset, the
//! length and the memory address of every write aligned to [`ALIGN`]: each
//! segment is gathered in an [`AlignedBuf`] placed so that its first byte
//! sits at the same distance from an aligned address as from an aligned
//! file offset, and the writer carries the partial block at the end of one
//! segment over to the next (see `files.rs`). The last partial block of the
//! file is written through the page cache. A file system that refuses
//! `O_DIRECT` (`EINVAL`, e.g. tmpfs on older kernels) gets ordinary writes.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Mutex;

pub use crate::storage::direct::{ALIGN, AlignedBuf, set_direct};

/// How far ahead of a file's direct writes its blocks are allocated.
pub const ALLOCATE_AHEAD: u64 = 64 << 20;

/// A file of several segments allocated ahead of its direct writes, one
/// window at a time: the writes are then overwrites, which ext4 and XFS
/// let two threads do in one file at once, where writes into a hole each
/// hold the inode's lock until their data is on disk. Windows, not the
/// whole file, so that a snapshot's huge file of zeros (cheap to store,
/// restored as holes) never reserves more than a window of disk at once.
pub struct Ahead {
    len: u64,
    window: u64,
    /// Allocated up to here.
    to: Mutex<u64>,
}

impl Ahead {
    /// Allocates the first window of `file` (`len` bytes, already sized);
    /// `None` if the file system allocates nothing ahead (nothing changes).
    pub fn start(file: &File, len: u64, window: u64) -> Option<Ahead> {
        let to = len.min(window.max(1));
        (to > 0 && allocate(file, 0, to)).then(|| Ahead {
            len,
            window: window.max(1),
            to: Mutex::new(to),
        })
    }

    /// Makes sure the bytes before `end` are allocated, a window past
    /// them at most. Best effort: a write into blocks not allocated is
    /// still right, only not at once with the other's.
    pub fn through(&self, file: &File, end: u64) {
        let mut to = self.to.lock().expect("allocation lock");
        if end <= *to {
            return;
        }
        let next = self.len.min(end.max(*to) + self.window);
        if allocate(file, *to, next - *to) {
            *to = next;
        }
    }
}

fn allocate(file: &File, at: u64, len: u64) -> bool {
    rustix::fs::fallocate(file, rustix::fs::FallocateFlags::KEEP_SIZE, at, len).is_ok()
}

/// Gives back the blocks of `len` bytes at `at` of an allocated file (a run
/// of zeros the restore skipped), so that it is a hole again. Best effort:
/// blocks left allocated still read as zeros.
pub fn deallocate(file: &File, at: u64, len: u64) {
    let _ = rustix::fs::fallocate(
        file,
        rustix::fs::FallocateFlags::PUNCH_HOLE | rustix::fs::FallocateFlags::KEEP_SIZE,
        at,
        len,
    );
}

/// BLAKE3 and length of all of `file`, read from the disk with direct
/// reads (a drill proves what the disk holds, not the page cache); through
/// the page cache when the file system refuses direct reads.
pub fn hash_from_disk(file: &File) -> io::Result<(crate::format::id::Id, u64)> {
    let direct = set_direct(file, true)?;
    let mut h = blake3::Hasher::new();
    let mut buf = AlignedBuf::new(1 << 20);
    buf.reset(1 << 20);
    let mut pos = 0u64;
    let result = loop {
        let k = match file.read_at(buf.as_mut_slice(), pos) {
            Ok(k) => k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => break Err(e),
        };
        if k == 0 {
            break Ok(());
        }
        h.update(&buf.as_slice()[..k]);
        pos += k as u64;
        // A direct read stops short only at the end of the file.
        if direct && k % ALIGN != 0 {
            break Ok(());
        }
    };
    if direct {
        set_direct(file, false)?;
    }
    result.map(|()| (h.finalize().into(), pos))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn a_file_is_allocated_a_window_ahead_of_its_writes_never_more() {
        let dir = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).unwrap();
        let f = tempfile::tempfile_in(dir.path()).unwrap();
        let mib = 1u64 << 20;
        // A 64 MiB file (of zeros, say) in windows of 1 MiB.
        f.set_len(64 * mib).unwrap();
        let allocated = |f: &File| f.metadata().unwrap().blocks() * 512;
        let Some(ahead) = Ahead::start(&f, 64 * mib, mib) else {
            return; // this file system allocates nothing ahead
        };
        assert_eq!(allocated(&f), mib, "the first window only");
        ahead.through(&f, mib / 2);
        assert_eq!(allocated(&f), mib, "within the window: nothing more");
        ahead.through(&f, 3 * mib + 5);
        let now = allocated(&f);
        assert!(now > 3 * mib && now <= 5 * mib, "{now}");
        // The end of the file bounds the last window.
        ahead.through(&f, 64 * mib);
        assert_eq!(allocated(&f), 64 * mib);
        let small = tempfile::tempfile_in(dir.path()).unwrap();
        small.set_len(10_000).unwrap();
        Ahead::start(&small, 10_000, ALLOCATE_AHEAD).unwrap();
        assert!(allocated(&small) <= 16 << 10, "{}", allocated(&small));
    }

    #[test]
    fn a_file_hashed_from_disk_is_hashed_whole_whatever_its_size() {
        let dir = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).unwrap();
        for size in [0usize, 1, 4095, 4096, 4097, (1 << 20) + 13, 3 << 20] {
            let path = dir.path().join(format!("f{size}"));
            let data: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
            std::fs::write(&path, &data).unwrap();
            let f = File::open(&path).unwrap();
            let (id, n) = hash_from_disk(&f).unwrap();
            assert_eq!(n, size as u64);
            assert_eq!(id, crate::format::id::Id::from(blake3::hash(&data)));
        }
    }
}

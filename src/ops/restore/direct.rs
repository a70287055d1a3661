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

use rustix::fs::{OFlags, fcntl_getfl, fcntl_setfl};

/// Alignment of offsets, lengths and addresses of direct writes and reads.
pub const ALIGN: usize = 4096;

/// A byte buffer whose usable part starts at an [`ALIGN`]-aligned address.
/// Bytes are only ever appended within its capacity (the vector never
/// moves), so nothing is zeroed that is not written.
pub struct AlignedBuf {
    raw: Vec<u8>,
    start: usize,
}

impl AlignedBuf {
    /// An empty buffer that holds `capacity` bytes without moving.
    pub fn new(capacity: usize) -> Self {
        let mut raw: Vec<u8> = Vec::with_capacity(capacity + ALIGN);
        let start = raw.as_ptr().align_offset(ALIGN);
        // `align_offset` may give up (usize::MAX) in theory; an unaligned
        // buffer only makes direct writes fail, which falls back.
        let start = if start < ALIGN { start } else { 0 };
        raw.resize(start, 0);
        AlignedBuf { raw, start }
    }

    /// How many bytes it holds without moving.
    pub fn capacity(&self) -> usize {
        self.raw.capacity() - self.start
    }

    /// The bytes held.
    pub fn as_slice(&self) -> &[u8] {
        &self.raw[self.start..]
    }

    /// The bytes held, writable.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.raw[self.start..]
    }

    /// Holds `len` zeros (to be overwritten), keeping the capacity.
    pub fn reset(&mut self, len: usize) {
        self.raw.truncate(self.start);
        if len > self.capacity() {
            *self = AlignedBuf::new(len);
        }
        self.raw.resize(self.start + len, 0);
    }

    /// Appends `data`, moving the bytes held to a larger buffer (aligned
    /// again) when they do not fit.
    pub fn extend(&mut self, data: &[u8]) {
        let len = self.as_slice().len();
        if len + data.len() > self.capacity() {
            let mut bigger = AlignedBuf::new((len + data.len()).max(2 * self.capacity()));
            bigger.extend(self.as_slice());
            *self = bigger;
        }
        self.raw.extend_from_slice(data);
    }
}

/// Turns `O_DIRECT` on or off for `file`'s open file description; `false`
/// when the file system does not take it.
pub fn set_direct(file: &File, on: bool) -> io::Result<bool> {
    let flags = fcntl_getfl(file)?;
    let want = if on {
        flags | OFlags::DIRECT
    } else {
        flags - OFlags::DIRECT
    };
    if want == flags {
        return Ok(true);
    }
    match fcntl_setfl(file, want) {
        Ok(()) => Ok(true),
        Err(rustix::io::Errno::INVAL) if on => Ok(false),
        Err(e) => Err(e.into()),
    }
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

    #[test]
    fn aligned_buffers_stay_aligned_as_they_grow() {
        for cap in [0, 1, 4095, 4096, 1 << 20] {
            let mut b = AlignedBuf::new(cap);
            assert_eq!(b.as_slice().as_ptr().align_offset(ALIGN), 0);
            assert!(b.capacity() >= cap);
            let before = b.capacity();
            b.extend(&vec![7u8; cap]);
            assert_eq!(b.capacity(), before, "no move while it fits");
            b.extend(&vec![1u8; before - cap + 5]);
            assert_eq!(b.as_slice().as_ptr().align_offset(ALIGN), 0);
            assert_eq!(b.as_slice().len(), before + 5);
            assert!(b.as_slice()[..cap].iter().all(|&x| x == 7));
            assert!(b.as_slice()[cap..].iter().all(|&x| x == 1));
            let grown = b.capacity();
            b.reset(3);
            assert_eq!((b.as_slice(), b.capacity()), (&[0u8; 3][..], grown));
            assert_eq!(b.as_slice().as_ptr().align_offset(ALIGN), 0);
        }
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

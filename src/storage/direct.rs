//! Writing packs around the page cache (`O_DIRECT`).
//!
//! A backup writes packs it will not read again soon. Through the page
//! cache each megabyte costs kernel time (most of all in fresh memory, as
//! on a virtual machine whose free memory went back to its host) and pushes
//! the host's own working set out of the cache. [`write_around_cache`]
//! writes the aligned bulk of a buffer with `O_DIRECT` from a small aligned
//! staging buffer, and the unaligned tail through the cache ([`AlignedBuf`]
//! holds bytes at an aligned address, for this and for restore's own direct
//! writes). A filesystem that refuses `O_DIRECT` (tmpfs on older kernels,
//! some FUSE filesystems) gets ordinary writes: the bytes are the same
//! either way, and durability is still the caller's `fsync`.
//!
//! Packs are read through the cache: reading them with `O_DIRECT` waits
//! for the device with nothing read ahead (`check --read-data` took 1.2 to
//! 1.5 s where cached reads of the same cold packs take 1.0 s), and
//! dropping their pages once read made a restore's readers, which reopen
//! packs they let go of, read them from disk again.

use std::cell::RefCell;
use std::fs::File;
use std::io::{self, Write};

use rustix::fs::{OFlags, fcntl_getfl, fcntl_setfl};

/// Alignment of `O_DIRECT` offsets, lengths and buffer addresses: 4096 bytes
/// suits every logical block size in use (512 or 4096).
pub const ALIGN: usize = 4096;

/// Bytes staged per direct write (one aligned buffer per writing thread).
const STAGE: usize = 512 * 1024;

/// Buffers shorter than this are written through the cache: a direct write
/// waits for the device, which only pays for large writes.
pub const DIRECT_MIN: usize = 256 * 1024;

thread_local! {
    /// This thread's staging buffer (allocated on first use).
    static STAGING: RefCell<AlignedBuf> = RefCell::new(AlignedBuf::new(0));
}

/// How [`write_around_cache`] wrote a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    /// Bytes written with `O_DIRECT` (from the start).
    pub direct: usize,
    /// Bytes written through the page cache (the rest).
    pub cached: usize,
}

/// Writes all of `data` at `file`'s current position (a new, empty file:
/// the position must be a multiple of [`ALIGN`] for the direct part),
/// bypassing the page cache for its aligned bulk when the filesystem allows.
/// The file is left without `O_DIRECT`.
pub fn write_around_cache(file: &File, data: &[u8]) -> io::Result<Written> {
    let aligned = data.len() / ALIGN * ALIGN;
    let direct = if data.len() >= DIRECT_MIN && matches!(set_direct(file, true), Ok(true)) {
        let done = write_direct(file, &data[..aligned]);
        set_direct(file, false)?;
        done
    } else {
        0
    };
    (&*file).write_all(&data[direct..])?;
    Ok(Written {
        direct,
        cached: data.len() - direct,
    })
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

/// Writes `data` (a multiple of [`ALIGN`] long) through the staging buffer
/// while the filesystem accepts direct writes; returns how many bytes it
/// wrote. The first refused or short write ends it: the caller writes the
/// rest through the cache from that point, where the file's position is.
fn write_direct(file: &File, data: &[u8]) -> usize {
    STAGING.with(|staging| {
        let mut staging = staging.borrow_mut();
        staging.reset(STAGE);
        let window = staging.as_mut_slice();
        let mut done = 0;
        for piece in data.chunks(STAGE) {
            let window = &mut window[..piece.len()];
            window.copy_from_slice(piece);
            match (&*file).write(window) {
                Ok(n) => {
                    done += n;
                    if n < piece.len() {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
        done
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes that differ at every offset, so a misplaced piece shows.
    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 + i / 4093) as u8).collect()
    }

    fn write_and_read(dir: &std::path::Path, len: usize) -> (Written, Vec<u8>, Vec<u8>) {
        let data = pattern(len);
        let path = dir.join(format!("object-{len}"));
        let file = File::create_new(&path).unwrap();
        let written = write_around_cache(&file, &data).unwrap();
        drop(file);
        (written, data, std::fs::read(&path).unwrap())
    }

    const LENGTHS: [usize; 9] = [
        0,
        1,
        ALIGN - 1,
        ALIGN,
        DIRECT_MIN - 1,
        DIRECT_MIN,
        DIRECT_MIN + 1,
        STAGE + ALIGN + 17,
        5 * STAGE + 123,
    ];

    #[test]
    fn every_length_reads_back_byte_for_byte_with_only_the_aligned_bulk_direct() {
        // The crate's own directory: a disk filesystem (ext4 here), not tmpfs.
        let dir = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).unwrap();
        let takes_direct = {
            let f = File::create_new(dir.path().join("probe")).unwrap();
            set_direct(&f, true).unwrap()
        };
        for len in LENGTHS {
            let (written, data, back) = write_and_read(dir.path(), len);
            assert_eq!(back, data, "{len} bytes read back");
            assert_eq!(written.direct + written.cached, len);
            assert_eq!(written.direct % ALIGN, 0, "{len}: direct part aligned");
            if len < DIRECT_MIN || !takes_direct {
                assert_eq!(written.direct, 0, "{len}: small, or no O_DIRECT here");
            } else {
                assert_eq!(written.direct, len / ALIGN * ALIGN, "{len}: bulk direct");
            }
        }
    }

    #[test]
    fn a_filesystem_without_direct_writes_gets_the_same_bytes() {
        // tmpfs refuses O_DIRECT on older kernels and takes it on newer ones:
        // either way the object must read back whole.
        let Ok(dir) = tempfile::tempdir_in("/dev/shm") else {
            return;
        };
        for len in LENGTHS {
            let (written, data, back) = write_and_read(dir.path(), len);
            assert_eq!(back, data, "{len} bytes read back from tmpfs");
            assert_eq!(written.direct + written.cached, len);
        }
    }

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
    fn the_file_is_left_without_direct_writes() {
        let dir = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).unwrap();
        let file = File::create_new(dir.path().join("object")).unwrap();
        write_around_cache(&file, &pattern(DIRECT_MIN + 5)).unwrap();
        let flags = fcntl_getfl(&file).unwrap();
        assert!(!flags.contains(OFlags::DIRECT));
        // And an unaligned write after it still works.
        (&file).write_all(b"tail").unwrap();
        assert_eq!(file.metadata().unwrap().len(), (DIRECT_MIN + 9) as u64);
    }
}

//! Reading and writing packs around the page cache (`O_DIRECT`).
//!
//! A backup writes packs it will not read again, and a restore or a check
//! reads each pack once. Through the page cache each megabyte costs kernel
//! time (most of all in fresh memory, as on a virtual machine whose free
//! memory went back to its host) and pushes the host's own working set out
//! of the cache. [`write_around_cache`] writes the aligned bulk of a buffer
//! with `O_DIRECT` from a small aligned staging buffer, and the unaligned
//! tail through the cache; [`DirectReader`] reads aligned windows into an
//! aligned buffer. A filesystem that refuses `O_DIRECT` (tmpfs on older
//! kernels, some FUSE filesystems) gets ordinary reads and writes: the bytes
//! are the same either way, and durability is still the caller's `fsync`.

use std::cell::RefCell;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;

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
    /// This thread's staging buffer, `STAGE + ALIGN` bytes so that an aligned
    /// window of `STAGE` bytes always fits (allocated on first use).
    static STAGING: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
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
    let direct = if data.len() >= DIRECT_MIN && set_direct(file, true) {
        let done = write_direct(file, &data[..aligned]);
        if !set_direct(file, false) {
            return Err(io::Error::other("cannot clear O_DIRECT on the file"));
        }
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

/// Turns `O_DIRECT` on or off; whether the filesystem took it.
fn set_direct(file: &File, on: bool) -> bool {
    let Ok(flags) = fcntl_getfl(file) else {
        return false;
    };
    let flags = if on {
        flags | OFlags::DIRECT
    } else {
        flags - OFlags::DIRECT
    };
    fcntl_setfl(file, flags).is_ok()
}

/// Writes `data` (a multiple of [`ALIGN`] long) through the staging buffer
/// while the filesystem accepts direct writes; returns how many bytes it
/// wrote. The first refused or short write ends it: the caller writes the
/// rest through the cache from that point, where the file's position is.
fn write_direct(file: &File, data: &[u8]) -> usize {
    STAGING.with(|staging| {
        let mut staging = staging.borrow_mut();
        if staging.len() < STAGE + ALIGN {
            *staging = vec![0; STAGE + ALIGN];
        }
        let start = staging.as_ptr().align_offset(ALIGN);
        let Some(window) = staging.get_mut(start..start + STAGE) else {
            return 0;
        };
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

/// Bytes a [`DirectReader`] reads at once (an age chunk is 64 KiB).
const WINDOW: usize = 256 * 1024;

/// A file read through an aligned window with `O_DIRECT` (or, where the
/// filesystem refuses it, the same reads through the cache): each read of
/// the window is one aligned `pread`, and seeks cost nothing until the
/// next read.
pub struct DirectReader {
    file: File,
    /// `WINDOW + ALIGN` bytes; the window starts at `start`.
    buf: Vec<u8>,
    start: usize,
    /// File offset of the window's first byte, and how many bytes it holds.
    at: u64,
    held: usize,
    pos: u64,
    len: u64,
}

impl DirectReader {
    /// Wraps `file` (open for reading), turning `O_DIRECT` on if the
    /// filesystem takes it.
    pub fn new(file: File) -> io::Result<DirectReader> {
        let len = file.metadata()?.len();
        set_direct(&file, true);
        let buf = vec![0u8; WINDOW + ALIGN];
        let start = buf.as_ptr().align_offset(ALIGN).min(ALIGN);
        Ok(DirectReader {
            file,
            buf,
            start,
            at: 0,
            held: 0,
            pos: 0,
            len,
        })
    }

    /// Fills the window with the aligned block holding `pos` and what
    /// follows it.
    fn fill(&mut self, pos: u64) -> io::Result<()> {
        let at = pos / ALIGN as u64 * ALIGN as u64;
        let window = &mut self.buf[self.start..self.start + WINDOW];
        let mut held = 0;
        while held < WINDOW {
            match self.file.read_at(&mut window[held..], at + held as u64) {
                Ok(0) => break,
                // A short direct read leaves the next one unaligned: the rest
                // of this window is read through the cache.
                Ok(n) if n % ALIGN != 0 => {
                    held += n;
                    set_direct(&self.file, false);
                }
                Ok(n) => held += n,
                Err(e)
                    if e.raw_os_error() == Some(libc::EINVAL) && set_direct(&self.file, false) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.at = at;
        self.held = held;
        Ok(())
    }
}

impl Read for DirectReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() || self.pos >= self.len {
            return Ok(0);
        }
        if self.pos < self.at || self.pos >= self.at + self.held as u64 {
            self.fill(self.pos)?;
        }
        let from = (self.pos - self.at) as usize;
        let n = out.len().min(self.held.saturating_sub(from));
        let window = &self.buf[self.start..self.start + self.held];
        out[..n].copy_from_slice(&window[from..from + n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for DirectReader {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let pos = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = pos.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek before the start of the pack",
            )
        })?;
        Ok(self.pos)
    }
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
            set_direct(&f, true)
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
    fn a_direct_reader_reads_any_range_as_written() {
        let dir = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).unwrap();
        let shm = tempfile::tempdir_in("/dev/shm").ok();
        let dirs = std::iter::once(dir.path()).chain(shm.as_ref().map(|d| d.path()));
        for dir in dirs {
            for len in [0, 1, ALIGN + 3, WINDOW - 1, WINDOW + 1, 3 * WINDOW + 4097] {
                let (_, data, _) = write_and_read(dir, len);
                let file = File::open(dir.join(format!("object-{len}"))).unwrap();
                let mut r = DirectReader::new(file).unwrap();
                let mut all = Vec::new();
                r.read_to_end(&mut all).unwrap();
                assert_eq!(all, data, "{len} bytes read whole");
                // Backwards and forwards, across windows, and past the end.
                for (from, want) in [(len / 2, 70_000), (1, 10), (len.saturating_sub(5), 100)] {
                    let at = r.seek(SeekFrom::Start(from as u64)).unwrap();
                    assert_eq!(at, from as u64);
                    let mut got = Vec::new();
                    (&mut r).take(want as u64).read_to_end(&mut got).unwrap();
                    let end = (from + want).min(len).max(from.min(len));
                    assert_eq!(got, data[from.min(len)..end], "{len}: {want} from {from}");
                }
                assert_eq!(r.seek(SeekFrom::End(0)).unwrap(), len as u64);
                assert!(r.seek(SeekFrom::Current(-(len as i64) - 1)).is_err());
            }
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

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

pub use crate::storage::direct::{ALIGN, AlignedBuf, set_direct};

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

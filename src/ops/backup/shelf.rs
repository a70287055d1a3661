//! The shelf: small files stored in this run's bundles so far, by content
//! and owner, so that a file identical to one of them (another
//! directory's, the same owner's) is named where that one is instead of
//! being stored again. Never across owners: a user could otherwise learn
//! from what is stored whether another's file holds a guess.
//!
//! Every small file of a backup passes here, on the assembler's thread,
//! which every file waits for. The files are kept in the order they were
//! shelved, and a compact table finds them by the first 8 bytes of their
//! content hash and their owner: 24 bytes a slot, where a table of whole
//! keys and places took about 100 bytes a slot, 1.5 MiB in all, and a
//! cache miss on most inserts.
//!
//! The hash is plain BLAKE3 of bytes a local user may choose, so a user can
//! make files whose first 8 bytes of hash agree (about 2^32 tries). The
//! whole key is compared before a file is named where another is, so such
//! a file is never confused with another; and the owner is part of the
//! slot's key, so it can only push the user's own files off the shelf
//! (they are then stored again), never another owner's.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::format::id::{BlobId, Id};

/// A small file's content and owner: whole-file hash, size, uid.
pub type ShelfKey = (Id, u64, u32);

/// Where a shelved file is: its bundle (or blob of its own) and its offset
/// in the bundle.
pub type ShelfPlace = (BlobId, Option<u64>);

/// Most files the shelf remembers; full, it starts again.
pub const SHELF_FILES: usize = 16_384;

/// Small files stored in this run, by content and owner.
#[derive(Default)]
pub struct Shelf {
    /// The index in `files` of the file shelved last whose hash starts
    /// with the key's 8 bytes and whose owner is the key's. Another such
    /// file replaces it: the shelf then forgets the first, which is stored
    /// again if met again, never confused with the second.
    slots: HashMap<(u64, u32), u32, BuildHasherDefault<PrefixHasher>>,
    files: Vec<(ShelfKey, ShelfPlace)>,
}

impl Shelf {
    /// Where a file with `key` was stored in this run, if the shelf
    /// remembers it.
    pub fn get(&self, key: &ShelfKey) -> Option<ShelfPlace> {
        let &at = self.slots.get(&slot(key))?;
        let (shelved, place) = &self.files[at as usize];
        (shelved == key).then_some(*place)
    }

    /// Remembers that the file with `key` is stored at `place`.
    pub fn insert(&mut self, key: ShelfKey, place: ShelfPlace) {
        if self.files.len() >= SHELF_FILES {
            self.slots.clear();
            self.files.clear();
        }
        let at = u32::try_from(self.files.len()).expect("the shelf holds at most SHELF_FILES");
        self.slots.insert(slot(&key), at);
        self.files.push((key, place));
    }
}

/// A file's slot: the first 8 bytes of its content hash (already uniformly
/// spread, so the table uses them as they are) and its owner.
fn slot(key: &ShelfKey) -> (u64, u32) {
    let mut first = [0u8; 8];
    first.copy_from_slice(&key.0.0[..8]);
    (u64::from_le_bytes(first), key.2)
}

/// A hasher for slots ([`slot`]): the hash bytes pass through, the owner
/// is mixed in.
#[derive(Default)]
pub struct PrefixHasher(u64);

impl Hasher for PrefixHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }

    fn write_u32(&mut self, n: u32) {
        self.0 ^= u64::from(n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(first: u8, rest: u8, size: u64, uid: u32) -> ShelfKey {
        let mut h = [rest; 32];
        h[..8].copy_from_slice(&[first; 8]);
        (Id(h), size, uid)
    }

    fn place(n: u8) -> ShelfPlace {
        (BlobId(Id([n; 32])), Some(u64::from(n)))
    }

    #[test]
    fn a_shelved_file_is_found_only_by_its_whole_key() {
        let mut shelf = Shelf::default();
        shelf.insert(key(1, 1, 10, 0), place(7));
        assert_eq!(shelf.get(&key(1, 1, 10, 0)), Some(place(7)));
        // Another owner, size, or hash after the first 8 bytes: not it.
        assert_eq!(shelf.get(&key(1, 1, 10, 1000)), None);
        assert_eq!(shelf.get(&key(1, 1, 11, 0)), None);
        assert_eq!(shelf.get(&key(1, 2, 10, 0)), None);
        assert_eq!(shelf.get(&key(2, 1, 10, 0)), None);
    }

    #[test]
    fn files_sharing_a_hash_prefix_are_never_confused() {
        let mut shelf = Shelf::default();
        shelf.insert(key(1, 1, 10, 0), place(7));
        // Same first 8 bytes, another file: it takes the slot, the first
        // is forgotten (stored again if met again), never answered for
        // the second.
        shelf.insert(key(1, 2, 10, 0), place(8));
        assert_eq!(shelf.get(&key(1, 2, 10, 0)), Some(place(8)));
        assert_eq!(shelf.get(&key(1, 1, 10, 0)), None);
    }

    #[test]
    fn vector_a_users_colliding_hash_prefix_never_pushes_another_owners_file_off_the_shelf() {
        // A local user chooses its files' bytes, so it can make one whose
        // hash begins as another owner's file's does (about 2^32 tries;
        // here simply given).
        let mut shelf = Shelf::default();
        shelf.insert(key(1, 1, 10, 0), place(7));
        shelf.insert(key(1, 2, 10, 1000), place(8));
        // Both stay: the victim's identical files still share its copy.
        assert_eq!(shelf.get(&key(1, 1, 10, 0)), Some(place(7)));
        assert_eq!(shelf.get(&key(1, 2, 10, 1000)), Some(place(8)));
        // And the user's own key with the victim's hash finds nothing.
        assert_eq!(shelf.get(&key(1, 1, 10, 1000)), None);
    }

    #[test]
    fn a_full_shelf_starts_again() {
        let mut shelf = Shelf::default();
        for i in 0..SHELF_FILES as u32 {
            let mut h = [0u8; 32];
            h[..4].copy_from_slice(&i.to_le_bytes());
            shelf.insert((Id(h), 1, 0), place(1));
        }
        assert_eq!(shelf.files.len(), SHELF_FILES);
        assert_eq!(shelf.get(&(Id([0; 32]), 1, 0)), Some(place(1)));
        shelf.insert(key(9, 9, 1, 0), place(9));
        assert_eq!(shelf.files.len(), 1);
        assert_eq!(shelf.slots.len(), 1);
        assert_eq!(shelf.get(&(Id([0; 32]), 1, 0)), None);
        assert_eq!(shelf.get(&key(9, 9, 1, 0)), Some(place(9)));
    }
}

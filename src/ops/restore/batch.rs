//! Whole small files are handed to the workers in batches of one directory:
//! two workers creating and linking entries in the same directory at once
//! wait on its lock, so a directory's files should mostly go to one of
//! them. A batch is handed out when it is full (files or bytes) or when
//! the walk moves on to a file of another directory; order is kept.

/// Whole files handed to a worker at once, at most (all in one directory):
/// enough for most directories to go whole to one worker (two workers
/// linking into one directory wait on its lock; at 64 a directory of 100
/// files went to both).
pub const BATCH_FILES: usize = 256;

/// Bytes of whole files in one batch, at most; files this large or larger
/// go on their own.
pub const BATCH_BYTES: u64 = 4 << 20;

/// Files of one directory gathered for one worker.
pub struct Batcher<T> {
    items: Vec<T>,
    bytes: u64,
    max_items: usize,
    max_bytes: u64,
}

impl<T> Batcher<T> {
    /// Batches of at most `max_items` files, handed out once they hold
    /// `max_bytes` or more.
    pub fn new(max_items: usize, max_bytes: u64) -> Self {
        Batcher {
            items: Vec::new(),
            bytes: 0,
            max_items: max_items.max(1),
            max_bytes,
        }
    }

    /// Adds a file of `size` bytes; `same_dir` says whether two files go
    /// into the same directory. Returns the batches to hand out now, in
    /// order: the previous directory's, and this one once full.
    pub fn add(&mut self, item: T, size: u64, same_dir: impl Fn(&T, &T) -> bool) -> Vec<Vec<T>> {
        let mut out = Vec::new();
        if self.items.first().is_some_and(|f| !same_dir(f, &item)) {
            out.extend(self.take());
        }
        self.bytes = self.bytes.saturating_add(size);
        self.items.push(item);
        if self.items.len() >= self.max_items || self.bytes >= self.max_bytes {
            out.extend(self.take());
        }
        out
    }

    /// The batch gathered so far, if any.
    pub fn take(&mut self) -> Option<Vec<T>> {
        self.bytes = 0;
        (!self.items.is_empty()).then(|| std::mem::take(&mut self.items))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_of_two_hundred_config_files_goes_whole_to_one_worker() {
        let mut b = Batcher::new(BATCH_FILES, BATCH_BYTES);
        let mut batches = Vec::new();
        for dir in 0..3u32 {
            for file in 0..200u32 {
                let size = 1_000 + u64::from(file * 37 % 4_000);
                batches.extend(b.add((dir, file), size, |a, b| a.0 == b.0));
            }
        }
        batches.extend(b.take());
        let sizes: Vec<usize> = batches.iter().map(Vec::len).collect();
        assert_eq!(sizes, [200, 200, 200]);
    }

    #[test]
    fn batches_hold_one_directory_in_order_and_respect_both_limits() {
        let mut b = Batcher::new(3, 100);
        // (directory, file number, size)
        let files = [
            (1, 0, 10),
            (1, 1, 10),
            (1, 2, 10),
            (1, 3, 10),
            (2, 4, 60),
            (2, 5, 50),
            (2, 6, 1),
            (3, 7, 1),
            (1, 8, 1),
        ];
        let mut batches = Vec::new();
        for f in files {
            batches.extend(b.add(f, f.2, |a, b| a.0 == b.0));
        }
        batches.extend(b.take());
        assert!(b.take().is_none());
        let numbers: Vec<Vec<u32>> = batches
            .iter()
            .map(|batch| batch.iter().map(|f| f.1).collect())
            .collect();
        // Full at 3 files; full at 100 bytes; a new directory hands out
        // the last one's files first.
        assert_eq!(
            numbers,
            [
                vec![0, 1, 2],
                vec![3],
                vec![4, 5],
                vec![6],
                vec![7],
                vec![8]
            ]
        );
        for batch in &batches {
            assert!(batch.iter().all(|f| f.0 == batch[0].0));
        }
    }
}

//! Reads: whole objects, and seekable streams through ranged GETs whose
//! windows are shared by every reader of the storage.
//!
//! On a versioned bucket every read is of the object's first version (see
//! `versions`): vault never replaces an object, so a later version is
//! someone else's overwrite.

use std::collections::{HashMap, VecDeque};
use std::io::{Read, Seek, SeekFrom};
use std::sync::{Arc, Mutex};

use aws_sdk_s3::operation::head_object::HeadObjectOutput;

use super::S3Storage;
use super::error::classify;
use super::retry::{backoff, collect};
use crate::storage::StorageError;

/// Bytes fetched per ranged GET when streaming an object.
pub(super) const READ_WINDOW: u64 = 4 << 20;

/// How many more times a GET answered "not found" is asked again (see
/// [`S3Storage::fetch`]): about 0.75 to 1.5 s with the default backoff.
pub(super) const NOT_FOUND_WAITS: u32 = 2;

/// Windows of objects kept for readers; objects are immutable, so a
/// window fetched once serves every reader of this storage.
const CACHED_WINDOWS: usize = 8;

/// Which window: the object key and the window's start offset.
type WindowId = (String, u64);

/// One cached window: filled by the first reader that needs it (the others
/// wait on its lock), with the object's total length.
type WindowSlot = Arc<Mutex<Option<(Arc<Vec<u8>>, u64)>>>;

/// The [`READ_WINDOW`]-aligned windows most recently fetched, shared by all
/// readers (restore workers read the same packs, partly out of order): each
/// window of a pack is fetched about once instead of once per reader and
/// per backward seek. At most [`CACHED_WINDOWS`] × 4 MiB stay in memory.
#[derive(Default)]
pub(super) struct WindowCache {
    /// The windows, and their keys oldest first (for eviction).
    slots: Mutex<(HashMap<WindowId, WindowSlot>, VecDeque<WindowId>)>,
}

impl S3Storage {
    /// The window of `key` starting at `start` (a multiple of
    /// [`READ_WINDOW`]) and the object's length, from the shared cache or
    /// one ranged GET.
    pub(super) fn window(
        &self,
        key: &str,
        start: u64,
    ) -> Result<(Arc<Vec<u8>>, u64), StorageError> {
        let slot = {
            let mut guard = self.windows.slots.lock().expect("window cache lock");
            let (slots, order) = &mut *guard;
            let id = (key.to_owned(), start);
            let slot = slots
                .entry(id.clone())
                .or_insert_with(|| {
                    order.push_back(id);
                    WindowSlot::default()
                })
                .clone();
            while order.len() > CACHED_WINDOWS {
                if let Some(old) = order.pop_front() {
                    slots.remove(&old);
                }
            }
            slot
        };
        let mut filled = slot.lock().expect("window slot lock");
        if let Some((data, len)) = &*filled {
            return Ok((data.clone(), *len));
        }
        let (data, len) = self.fetch(key, Some((start, READ_WINDOW)))?;
        let data = Arc::new(data);
        *filled = Some((data.clone(), len));
        Ok((data, len))
    }

    /// GETs `key` (a byte range of it, when given): its first version on a
    /// bucket that keeps versions. Returns the body and the object's total
    /// length.
    ///
    /// Until the storage knows whether the bucket keeps versions, the
    /// current version is read and the answer tells (a version id means
    /// yes; otherwise the bucket is asked once): a request that fails costs
    /// no extra request.
    ///
    /// vault GETs only objects it has listed or that something it read
    /// names, so a "not found" may be a store that has not caught up with a
    /// recent PUT (an eventually consistent one): it is asked again
    /// [`NOT_FOUND_WAITS`] times, after the usual backoff, before the
    /// object counts as missing.
    pub(super) fn fetch(
        &self,
        key: &str,
        range: Option<(u64, u64)>,
    ) -> Result<(Vec<u8>, u64), StorageError> {
        let mut waits = 0;
        loop {
            match self.fetch_current(key, range) {
                Err(StorageError::NotFound { .. }) if waits < NOT_FOUND_WAITS => {
                    waits += 1;
                    let delay = backoff(self.tuning.retry_base, waits);
                    tracing::info!(
                        "{key}: not found; asking again in {} ms in case the store lags",
                        delay.as_millis()
                    );
                    std::thread::sleep(delay);
                }
                other => return other,
            }
        }
    }

    /// One [`S3Storage::fetch`] without waiting for a lagging store.
    fn fetch_current(
        &self,
        key: &str,
        range: Option<(u64, u64)>,
    ) -> Result<(Vec<u8>, u64), StorageError> {
        let first_version = |s: &Self| {
            s.with_read_version(key, |v| s.fetch_version(key, range, v))
                .map(|(body, total, _)| (body, total))
        };
        if self.knows_versioned() == Some(true) {
            return first_version(self);
        }
        let (body, total, current) = self.fetch_version(key, range, None)?;
        if !self.versioned_given(current.as_deref()) {
            return Ok((body, total));
        }
        let first = self.read_version(key)?;
        let same = match (&first, &current) {
            (None, _) => true,
            (Some(f), Some(c)) => f == c,
            // Written before versioning was enabled: S3 names it "null".
            (Some(f), None) => f == "null",
        };
        if same {
            Ok((body, total))
        } else {
            first_version(self)
        }
    }

    /// GETs one version of `key` (`None`: the current one); returns the
    /// body, the object's total length and the version id read.
    pub(super) fn fetch_version(
        &self,
        key: &str,
        range: Option<(u64, u64)>,
        version: Option<&str>,
    ) -> Result<(Vec<u8>, u64, Option<String>), StorageError> {
        let full = self.full(key);
        let (client, bucket, idle) = (&self.client, &self.bucket, self.tuning.read_timeout);
        self.retry(key, "GET", || {
            let full = &full;
            async move {
                let mut req = client
                    .get_object()
                    .bucket(bucket)
                    .key(full)
                    .set_version_id(version.map(str::to_owned));
                if let Some((start, len)) = range {
                    req = req.range(format!("bytes={}-{}", start, start + len - 1));
                }
                let resp = req.send().await.map_err(|e| classify(key, e))?;
                let length = resp.content_length().map(|n| n.max(0) as u64);
                let read = resp.version_id().map(str::to_owned);
                let total = resp
                    .content_range()
                    .and_then(|r| r.rsplit('/').next())
                    .and_then(|t| t.parse().ok())
                    .or(length)
                    .unwrap_or(0);
                let body = collect(resp.body, length, idle).await?;
                Ok((body, total, read))
            }
        })
    }

    /// HEADs `key`'s current version.
    pub(super) fn head(&self, key: &str) -> Result<HeadObjectOutput, StorageError> {
        self.head_version(key, None)
    }

    /// HEADs one version of `key` (`None`: the current one).
    pub(super) fn head_version(
        &self,
        key: &str,
        version: Option<&str>,
    ) -> Result<HeadObjectOutput, StorageError> {
        let full = self.full(key);
        let (client, bucket) = (&self.client, &self.bucket);
        self.retry(key, "HEAD", || {
            let full = &full;
            async move {
                client
                    .head_object()
                    .bucket(bucket)
                    .key(full)
                    .set_version_id(version.map(str::to_owned))
                    .send()
                    .await
                    .map_err(|e| classify(key, e))
            }
        })
    }
}

/// Streams an object through ranged GETs, one window at a time.
pub(super) struct RangeReader {
    pub(super) storage: S3Storage,
    pub(super) key: String,
    pub(super) len: u64,
    pub(super) pos: u64,
    pub(super) window_start: u64,
    pub(super) window: Arc<Vec<u8>>,
}

impl RangeReader {
    /// A reader of `key` positioned at its start.
    pub(super) fn open(storage: &S3Storage, key: &str) -> Result<Self, StorageError> {
        let (window, total) = storage.window(key, 0)?;
        Ok(RangeReader {
            storage: storage.clone(),
            key: key.to_owned(),
            len: total.max(window.len() as u64),
            pos: 0,
            window_start: 0,
            window,
        })
    }
}

impl Read for RangeReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pos >= self.len || buf.is_empty() {
            return Ok(0);
        }
        let in_window = self.pos >= self.window_start
            && self.pos < self.window_start + self.window.len() as u64;
        if !in_window {
            let start = self.pos - self.pos % READ_WINDOW;
            let (data, _) = self
                .storage
                .window(&self.key, start)
                .map_err(std::io::Error::other)?;
            if start + data.len() as u64 <= self.pos {
                return Ok(0);
            }
            self.window_start = start;
            self.window = data;
        }
        let off = (self.pos - self.window_start) as usize;
        let n = buf.len().min(self.window.len() - off);
        buf[..n].copy_from_slice(&self.window[off..off + n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for RangeReader {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        let target = match to {
            SeekFrom::Start(n) => n as i128,
            SeekFrom::End(d) => self.len as i128 + d as i128,
            SeekFrom::Current(d) => self.pos as i128 + d as i128,
        };
        if target < 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "seek before the start",
            ));
        }
        self.pos = target as u64;
        Ok(self.pos)
    }
}

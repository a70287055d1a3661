//! Listing objects, and the multipart uploads a killed backup left behind.

use aws_sdk_s3::error::ProvideErrorMetadata;

use super::S3Storage;
use super::error::classify;
use super::lock::to_chrono;
use crate::storage::{ObjectInfo, PendingUpload, StorageError};

impl S3Storage {
    /// Every object under `prefix`, sorted by key; on a bucket that keeps
    /// versions, from its versions (see `versions`).
    pub(super) fn list_objects(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StorageError> {
        if self.versioned() {
            match self.list_versioned(prefix) {
                Ok(out) => return Ok(out),
                Err(StorageError::Refused { message, .. }) => {
                    self.versions_unusable(&format!("listing versions was refused ({message})"));
                }
                Err(e) => return Err(e),
            }
        }
        let full = self.full(prefix);
        let (mut out, last) = self.list_range(prefix, &full, None, None, true)?;
        if let Some(last) = last {
            // More than one page: the rest is listed as ranges split at
            // the next character, in parallel. vault's names there are hex
            // (ids, or a hex fan-out directory), so 16 ranges share the
            // keys about evenly; other names are listed all the same, only
            // less evenly.
            let mut bounds: Vec<String> = "123456789abcdef"
                .chars()
                .map(|c| format!("{full}{c}"))
                .filter(|b| *b > last)
                .collect();
            bounds.insert(0, last);
            let ranges: Vec<(String, Option<String>)> = bounds
                .iter()
                .enumerate()
                .map(|(i, lo)| (lo.clone(), bounds.get(i + 1).cloned()))
                .collect();
            let listed = std::thread::scope(|s| {
                let workers: Vec<_> = ranges
                    .iter()
                    .map(|(lo, hi)| {
                        s.spawn(|| self.list_range(prefix, &full, Some(lo), hi.as_deref(), false))
                    })
                    .collect();
                workers
                    .into_iter()
                    .map(|w| w.join().expect("a listing thread never panics"))
                    .collect::<Vec<_>>()
            });
            for range in listed {
                out.extend(range?.0);
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    /// The objects under `full` after `after` (exclusive) up to `until`
    /// (inclusive), page by page; with `one_page`, only the first page,
    /// and the last key seen if the listing goes on.
    fn list_range(
        &self,
        prefix: &str,
        full: &str,
        after: Option<&str>,
        until: Option<&str>,
        one_page: bool,
    ) -> Result<(Vec<ObjectInfo>, Option<String>), StorageError> {
        let (client, bucket) = (&self.client, &self.bucket);
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self.retry(prefix, "LIST", || {
                let token = &token;
                async move {
                    client
                        .list_objects_v2()
                        .bucket(bucket)
                        .prefix(full)
                        // The token carries the position once there is one.
                        .set_start_after(after.filter(|_| token.is_none()).map(str::to_owned))
                        .set_continuation_token(token.clone())
                        .send()
                        .await
                        .map_err(|e| classify(prefix, e))
                }
            })?;
            let mut last = None;
            for obj in page.contents() {
                let Some(k) = obj.key() else { continue };
                if until.is_some_and(|u| k > u) {
                    return Ok((out, None));
                }
                last = Some(k);
                out.push(ObjectInfo {
                    key: self.relative(k),
                    size: obj.size().unwrap_or(0).max(0) as u64,
                    modified: obj.last_modified().and_then(to_chrono),
                });
            }
            token = page.next_continuation_token().map(str::to_owned);
            if token.is_none() || page.is_truncated() != Some(true) {
                return Ok((out, None));
            }
            if let (true, Some(last)) = (one_page, last) {
                return Ok((out, Some(last.to_owned())));
            }
        }
    }

    /// Multipart uploads under the prefix that were never completed or aborted.
    pub(super) fn uploads(&self) -> Result<Vec<PendingUpload>, StorageError> {
        let (client, bucket, prefix) = (&self.client, &self.bucket, &self.prefix);
        let mut out = Vec::new();
        let mut markers: (Option<String>, Option<String>) = (None, None);
        loop {
            let page = self.retry(prefix, "ListMultipartUploads", || {
                let markers = &markers;
                async move {
                    client
                        .list_multipart_uploads()
                        .bucket(bucket)
                        .prefix(prefix)
                        .set_key_marker(markers.0.clone())
                        .set_upload_id_marker(markers.1.clone())
                        .send()
                        .await
                        .map_err(|e| classify(prefix, e))
                }
            })?;
            for u in page.uploads() {
                let (Some(k), Some(id)) = (u.key(), u.upload_id()) else {
                    continue;
                };
                out.push(PendingUpload {
                    key: self.relative(k),
                    upload_id: id.to_owned(),
                    started: u.initiated().and_then(to_chrono),
                });
            }
            if page.is_truncated() != Some(true) {
                break;
            }
            markers = (
                page.next_key_marker().map(str::to_owned),
                page.next_upload_id_marker().map(str::to_owned),
            );
            if markers.0.is_none() {
                break;
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key).then(a.upload_id.cmp(&b.upload_id)));
        Ok(out)
    }

    /// Aborts one multipart upload; one already gone is fine.
    pub(super) fn abort(&self, upload: &PendingUpload) -> Result<(), StorageError> {
        let full = self.full(&upload.key);
        let (client, bucket, key) = (&self.client, &self.bucket, upload.key.as_str());
        self.retry(key, "AbortMultipartUpload", || {
            let full = &full;
            async move {
                match client
                    .abort_multipart_upload()
                    .bucket(bucket)
                    .key(full)
                    .upload_id(&upload.upload_id)
                    .send()
                    .await
                {
                    Ok(_) => Ok(()),
                    // Already gone (aborted, or completed after all).
                    Err(e) if e.code() == Some("NoSuchUpload") => Ok(()),
                    Err(e) => Err(classify(key, e)),
                }
            }
        })
    }
}

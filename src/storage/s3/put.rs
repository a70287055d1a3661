//! Puts: one PUT, or a multipart upload for large objects, each with
//! `If-None-Match: *` so that an existing object is never overwritten; and
//! write-once by name for objects not named by their content.

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use base64::Engine as _;
use md5::Digest as _;

use super::S3Storage;
use super::error::{Failure, classify, io_err, status_of};
use super::lock::{retain_until, s3_mode};
use crate::storage::{ObjectLock, PendingUpload, PutOutcome, StorageError};

/// Objects up to this size carry `Content-MD5` even without retention:
/// S3 wants an integrity header on every put into a bucket with default
/// retention, and Content-MD5 is the one every S3-compatible store accepts.
const ALWAYS_MD5_BELOW: usize = 1 << 20;

/// Base64 MD5, sent as `Content-MD5`.
pub(super) fn content_md5(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(data))
}

impl S3Storage {
    /// Puts `data` under `key` unless it exists, as the [`crate::storage::Storage`]
    /// contract says, with the repository's retention.
    pub(super) fn put_object(&self, key: &str, data: &[u8]) -> Result<PutOutcome, StorageError> {
        if !crate::storage::named_by_content(key) {
            return self.put_named(key, data, self.current_lock());
        }
        if data.len() as u64 > self.tuning.multipart_threshold {
            self.put_multipart(key, data)
        } else {
            self.put_single(key, data, self.current_lock())
                .map(|(o, _)| o)
        }
    }

    /// Write-once for an object that is not named by its content (config,
    /// keys): two different contents may race for the name, and some
    /// S3-compatible stores accept `If-None-Match: *` on an existing key
    /// and overwrite it. So: check before writing, put with
    /// `If-None-Match: *`, then find out whose bytes won.
    ///
    /// On a bucket that keeps versions the answer is exact: the first
    /// version wins, and it is the one every reader reads. Elsewhere the
    /// object is read back and compared: a writer whose bytes are not there
    /// gets [`PutOutcome::AlreadyExists`]. On a bucket that keeps no
    /// versions writers of one name take turns first (`claim.rs`), so that
    /// a store ignoring `If-None-Match` cannot let a later put replace an
    /// earlier one both writers saw as theirs. Only owner operations (init,
    /// add-owner, rotate-writer, host certificates) write such objects.
    pub(super) fn put_named(
        &self,
        key: &str,
        data: &[u8],
        lock: Option<ObjectLock>,
    ) -> Result<PutOutcome, StorageError> {
        let versioned = self.versioned();
        // On a bucket that keeps versions a key hidden by a delete marker
        // still exists (its first version is what readers read).
        let exists = match versioned.then(|| self.read_version(key)) {
            Some(Ok(Some(_))) => Ok(()),
            Some(Err(e)) => Err(e),
            // Versions cannot be read with these credentials: ask HEAD.
            None | Some(Ok(None)) => self.head(key).map(|_| ()),
        };
        match exists {
            Ok(()) => return Ok(PutOutcome::AlreadyExists),
            Err(StorageError::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
        if !versioned {
            // No version history to tell the first writer: take turns
            // (claim.rs), then read back whose bytes are there.
            let outcome =
                self.put_claimed(key, || self.put_single(key, data, lock).map(|(o, _)| o))?;
            if outcome == PutOutcome::AlreadyExists {
                return Ok(outcome);
            }
            let (now, _, _) = self.fetch_version(key, None, None)?;
            return Ok(if now == data {
                PutOutcome::Created
            } else {
                PutOutcome::AlreadyExists
            });
        }
        let (outcome, version) = self.put_single(key, data, lock)?;
        if outcome == PutOutcome::AlreadyExists {
            return Ok(outcome);
        }
        if let Some(ours) = version {
            self.forget_versions(key);
            let first = self.read_version(key)?;
            return Ok(if first.as_deref() == Some(ours.as_str()) {
                PutOutcome::Created
            } else {
                tracing::warn!(
                    "{key}: another writer wrote this name first; its version stays the one \
                     read, ours is left as a later version"
                );
                PutOutcome::AlreadyExists
            });
        }
        let (now, _, _) = self.fetch_version(key, None, None)?;
        Ok(if now == data {
            PutOutcome::Created
        } else {
            PutOutcome::AlreadyExists
        })
    }

    /// One PUT with `If-None-Match: *` and `lock`'s retention; returns the
    /// outcome and the new version's id (on a bucket that keeps versions).
    pub(super) fn put_single(
        &self,
        key: &str,
        data: &[u8],
        lock: Option<ObjectLock>,
    ) -> Result<(PutOutcome, Option<String>), StorageError> {
        let full = self.full(key);
        let class = self
            .tuning
            .storage_class
            .as_deref()
            .map(aws_sdk_s3::types::StorageClass::from);
        let md5 = (lock.is_some() || data.len() < ALWAYS_MD5_BELOW).then(|| content_md5(data));
        let (client, bucket) = (&self.client, &self.bucket);
        self.retry(key, "PUT", || {
            let (full, md5, class) = (&full, &md5, &class);
            async move {
                let mut req = client
                    .put_object()
                    .bucket(bucket)
                    .key(full)
                    .if_none_match("*")
                    .set_storage_class(class.clone())
                    .set_content_md5(md5.clone())
                    .body(ByteStream::from(data.to_vec()));
                if let Some(l) = &lock {
                    req = req
                        .object_lock_mode(s3_mode(l.mode))
                        .object_lock_retain_until_date(retain_until(l));
                }
                match req.send().await {
                    Ok(out) => Ok((PutOutcome::Created, out.version_id().map(str::to_owned))),
                    Err(e) if status_of(&e) == Some(412) => Ok((PutOutcome::AlreadyExists, None)),
                    Err(e) => Err(classify(key, e)),
                }
            }
        })
    }

    /// Uploads `data` in parts of `part_size`, completing with
    /// `If-None-Match: *`; aborts the upload on any failure.
    fn put_multipart(&self, key: &str, data: &[u8]) -> Result<PutOutcome, StorageError> {
        // Objects are content-addressed: an existing one already holds these
        // bytes, so skip the upload (the If-None-Match on completion still
        // guards against a writer racing us).
        match self.head(key) {
            Ok(_) => return Ok(PutOutcome::AlreadyExists),
            Err(StorageError::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
        let full = self.full(key);
        let lock = self.current_lock();
        let class = self
            .tuning
            .storage_class
            .as_deref()
            .map(aws_sdk_s3::types::StorageClass::from);
        let (client, bucket) = (&self.client, &self.bucket);
        let upload_id = self.retry(key, "CreateMultipartUpload", || {
            let (full, class) = (&full, &class);
            async move {
                let mut req = client
                    .create_multipart_upload()
                    .bucket(bucket)
                    .key(full)
                    .set_storage_class(class.clone());
                if let Some(l) = &lock {
                    req = req
                        .object_lock_mode(s3_mode(l.mode))
                        .object_lock_retain_until_date(retain_until(l));
                }
                let out = req.send().await.map_err(|e| classify(key, e))?;
                out.upload_id().map(str::to_owned).ok_or_else(|| {
                    Failure::Final(io_err(key, "CreateMultipartUpload returned no upload id"))
                })
            }
        })?;
        let mut result = self.upload_parts(key, &full, &upload_id, data, lock.is_some());
        if let (Ok((PutOutcome::Created, version)), Some(l)) = (&result, &lock)
            && let Err(e) = self.ensure_retention(key, version.as_deref(), l)
        {
            result = Err(e);
        }
        if !matches!(result, Ok((PutOutcome::Created, _))) {
            let upload = PendingUpload {
                key: key.to_owned(),
                upload_id: upload_id.clone(),
                started: None,
            };
            if let Err(e) = self.abort(&upload) {
                tracing::warn!(
                    "{key}: could not abort multipart upload {upload_id} ({e}); \
                     `vault check --storage --clean-uploads` removes it later"
                );
            }
        }
        result.map(|(o, _)| o)
    }

    fn upload_parts(
        &self,
        key: &str,
        full: &str,
        upload_id: &str,
        data: &[u8],
        locked: bool,
    ) -> Result<(PutOutcome, Option<String>), StorageError> {
        let (client, bucket) = (&self.client, &self.bucket);
        let mut parts = Vec::new();
        for (i, chunk) in data.chunks(self.tuning.part_size as usize).enumerate() {
            let number = i as i32 + 1;
            let md5 = locked.then(|| content_md5(chunk));
            let etag = self.retry(key, &format!("UploadPart {number}"), || {
                let md5 = &md5;
                async move {
                    let out = client
                        .upload_part()
                        .bucket(bucket)
                        .key(full)
                        .upload_id(upload_id)
                        .part_number(number)
                        .set_content_md5(md5.clone())
                        .body(ByteStream::from(chunk.to_vec()))
                        .send()
                        .await
                        .map_err(|e| classify(key, e))?;
                    Ok(out.e_tag().map(str::to_owned))
                }
            })?;
            parts.push(
                CompletedPart::builder()
                    .part_number(number)
                    .set_e_tag(etag)
                    .build(),
            );
        }
        let done = CompletedMultipartUpload::builder()
            .set_parts(Some(parts))
            .build();
        let outcome = self.retry(key, "CompleteMultipartUpload", || {
            let done = &done;
            async move {
                match client
                    .complete_multipart_upload()
                    .bucket(bucket)
                    .key(full)
                    .upload_id(upload_id)
                    .multipart_upload(done.clone())
                    .if_none_match("*")
                    .send()
                    .await
                {
                    Ok(out) => Ok((PutOutcome::Created, out.version_id().map(str::to_owned))),
                    Err(e) if status_of(&e) == Some(412) => Ok((PutOutcome::AlreadyExists, None)),
                    Err(e) => Err(classify(key, e)),
                }
            }
        });
        match outcome {
            // A retried completion whose first attempt did complete finds the
            // upload gone; the object is there if that is what happened.
            Err(StorageError::NotFound { .. }) => match self.head(key) {
                Ok(h) if h.content_length() == Some(data.len() as i64) => {
                    Ok((PutOutcome::Created, h.version_id().map(str::to_owned)))
                }
                _ => Err(io_err(
                    key,
                    "the multipart upload vanished before completion",
                )),
            },
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_md5_is_base64_of_the_digest() {
        assert_eq!(content_md5(b""), "1B2M2Y8AsgTpgAmY7PhCfg==");
    }
}

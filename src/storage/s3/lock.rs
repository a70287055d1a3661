//! S3 Object Lock: retention on every object put, lengthening it, asking
//! until when an object is retained, and deletes that say why they were
//! refused.

use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::types::{ObjectLockMode, ObjectLockRetentionMode};
use chrono::{DateTime, Utc};

use super::S3Storage;
use super::error::classify;
use crate::storage::Storage as _;
use crate::storage::{LockMode, LockState, ObjectLock, StorageError};

pub(super) fn to_chrono(t: &aws_sdk_s3::primitives::DateTime) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(t.secs(), t.subsec_nanos())
}

pub(super) fn s3_mode(mode: LockMode) -> ObjectLockMode {
    match mode {
        LockMode::Governance => ObjectLockMode::Governance,
        LockMode::Compliance => ObjectLockMode::Compliance,
    }
}

fn retention_mode(mode: LockMode) -> ObjectLockRetentionMode {
    match mode {
        LockMode::Governance => ObjectLockRetentionMode::Governance,
        LockMode::Compliance => ObjectLockRetentionMode::Compliance,
    }
}

/// The retain-until date for an object put now.
pub(super) fn retain_until(lock: &ObjectLock) -> aws_sdk_s3::primitives::DateTime {
    aws_sdk_s3::primitives::DateTime::from_secs(
        Utc::now().timestamp() + i64::from(lock.days) * 86_400,
    )
}

impl S3Storage {
    pub(super) fn current_lock(&self) -> Option<ObjectLock> {
        *self.lock.lock().expect("lock setting is never poisoned")
    }

    /// Whether the bucket has Object Lock, and its default retention.
    pub(super) fn lock_configuration(&self) -> Result<LockState, StorageError> {
        let (client, bucket) = (&self.client, &self.bucket);
        let out = self.retry("config", "GetObjectLockConfiguration", || async move {
            match client
                .get_object_lock_configuration()
                .bucket(bucket)
                .send()
                .await
            {
                Ok(out) => Ok(Some(out)),
                Err(e) if e.code() == Some("ObjectLockConfigurationNotFoundError") => Ok(None),
                Err(e) => Err(classify("config", e)),
            }
        })?;
        let Some(conf) = out.as_ref().and_then(|o| o.object_lock_configuration()) else {
            return Ok(LockState::Off);
        };
        if conf.object_lock_enabled() != Some(&aws_sdk_s3::types::ObjectLockEnabled::Enabled) {
            return Ok(LockState::Off);
        }
        let default = conf
            .rule()
            .and_then(|r| r.default_retention())
            .and_then(|d| {
                let mode = match d.mode()? {
                    aws_sdk_s3::types::ObjectLockRetentionMode::Compliance => LockMode::Compliance,
                    _ => LockMode::Governance,
                };
                let days = match (d.days(), d.years()) {
                    (Some(days), _) => days,
                    (None, Some(years)) => years.saturating_mul(365),
                    _ => return None,
                };
                Some(ObjectLock {
                    mode,
                    days: u32::try_from(days).ok()?,
                })
            });
        Ok(LockState::Enabled { default })
    }

    /// Checks that the bucket has Object Lock enabled.
    pub(super) fn require_object_lock(&self) -> Result<(), StorageError> {
        match self.lock_configuration()? {
            LockState::Enabled { .. } => Ok(()),
            _ => Err(StorageError::Unsupported {
                location: self.location(),
                reason: format!(
                    "bucket {:?} does not have Object Lock enabled; S3 enables Object Lock only \
                     when a bucket is created (aws s3api create-bucket \
                     --object-lock-enabled-for-bucket) or on a versioned bucket, so use such a \
                     bucket or drop --object-lock-days",
                    self.bucket
                ),
            }),
        }
    }

    /// Until when the version of `key` that reads use is retained.
    pub(super) fn retained_until(&self, key: &str) -> Result<Option<DateTime<Utc>>, StorageError> {
        let head = self.with_read_version(key, |v| self.head_version(key, v))?;
        if head.object_lock_legal_hold_status()
            == Some(&aws_sdk_s3::types::ObjectLockLegalHoldStatus::On)
        {
            return Ok(Some(DateTime::<Utc>::MAX_UTC));
        }
        Ok(head
            .object_lock_retain_until_date()
            .and_then(to_chrono)
            .filter(|t| *t > Utc::now()))
    }

    /// Lengthens the retention of the version of `key` that reads use.
    pub(super) fn lengthen_lock(
        &self,
        key: &str,
        until: DateTime<Utc>,
    ) -> Result<(), StorageError> {
        match self.current_lock() {
            Some(lock) => self.with_read_version(key, |v| {
                self.put_retention(
                    key,
                    v,
                    &lock,
                    aws_sdk_s3::primitives::DateTime::from_secs(until.timestamp()),
                )
            }),
            None => Ok(()),
        }
    }

    /// Makes sure a completed multipart object carries its retention. S3
    /// applies the lock given to CreateMultipartUpload; some S3-compatible
    /// stores (moto among them) drop it, so check, and set it if missing.
    pub(super) fn ensure_retention(
        &self,
        key: &str,
        version: Option<&str>,
        lock: &ObjectLock,
    ) -> Result<(), StorageError> {
        if self
            .head_version(key, version)?
            .object_lock_retain_until_date()
            .is_some()
        {
            return Ok(());
        }
        self.put_retention(key, version, lock, retain_until(lock))
    }

    /// Sets the retention of a version of `key` (`None`: the current one)
    /// to `until` in `lock`'s mode (S3 only allows lengthening it).
    fn put_retention(
        &self,
        key: &str,
        version: Option<&str>,
        lock: &ObjectLock,
        until: aws_sdk_s3::primitives::DateTime,
    ) -> Result<(), StorageError> {
        let full = self.full(key);
        let (client, bucket) = (&self.client, &self.bucket);
        self.retry(key, "PutObjectRetention", || {
            let full = &full;
            async move {
                let retention = aws_sdk_s3::types::ObjectLockRetention::builder()
                    .mode(retention_mode(lock.mode))
                    .retain_until_date(until)
                    .build();
                client
                    .put_object_retention()
                    .bucket(bucket)
                    .key(full)
                    .set_version_id(version.map(str::to_owned))
                    .retention(retention)
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| classify(key, e))
            }
        })
    }

    /// Deletes the current version of `key` by its version id: without it,
    /// a versioned bucket only adds a delete marker, and a locked version
    /// would stay (and be billed) while the object looked gone.
    pub(super) fn delete_current(&self, key: &str) -> Result<(), StorageError> {
        let head = self.head(key)?;
        self.delete_version(key, head.version_id())
    }

    /// Deletes one version of `key` (`None`: an unversioned object). A
    /// refusal says until when the version is retained, when it is.
    pub(super) fn delete_version(
        &self,
        key: &str,
        version: Option<&str>,
    ) -> Result<(), StorageError> {
        let full = self.full(key);
        let (client, bucket) = (&self.client, &self.bucket);
        let result = self.retry(key, "DELETE", || {
            let full = &full;
            async move {
                client
                    .delete_object()
                    .bucket(bucket)
                    .key(full)
                    .set_version_id(version.map(str::to_owned))
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| classify(key, e))
            }
        });
        let Err(StorageError::Refused {
            key,
            status,
            message,
        }) = result
        else {
            return result;
        };
        let retained = self.head_version(&key, version).ok().and_then(|h| {
            let until = h
                .object_lock_retain_until_date()
                .and_then(to_chrono)
                .filter(|t| *t > Utc::now())?;
            Some((
                h.object_lock_mode().map_or("?", |m| m.as_str()).to_owned(),
                until,
            ))
        });
        Err(StorageError::Refused {
            message: match retained {
                Some((mode, until)) => format!(
                    "{message}; the object is under Object Lock ({mode}) until {} and cannot \
                     be deleted before then",
                    until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                ),
                None => message,
            },
            key,
            status,
        })
    }
}

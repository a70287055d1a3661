//! Buckets that keep versions: vault reads each object's first version,
//! lists what was overwritten, and deletes every version of what it deletes.
//!
//! vault never replaces an object: content-addressed objects are put with
//! `If-None-Match: *`, and everything else is written once by name. On a
//! bucket that keeps versions (versioning enabled or suspended, and every
//! Object Lock bucket), a later version of a key is therefore someone
//! else's overwrite — a compromised host that left out `If-None-Match`, or
//! a store that ignored it — and the first version is what vault wrote.
//! Reading it makes such an overwrite harmless; `vault check --storage`
//! reports it ([`crate::storage::Rewritten`]).
//!
//! Reading by version needs s3:GetBucketVersioning, s3:ListBucketVersions
//! and s3:GetObjectVersion. Credentials without them read current versions,
//! as on an unversioned bucket (with a warning).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};

use aws_sdk_s3::error::ProvideErrorMetadata;

use super::S3Storage;
use super::error::{Failure, classify, status_of};
use crate::storage::Storage as _;
use crate::storage::{ObjectInfo, Rewritten, StorageError, Versioning};

/// The text of the first `<name>…</name>` element in `xml`.
fn xml_element(xml: &str, name: &str) -> Option<String> {
    let start = xml.find(&format!("<{name}>"))? + name.len() + 2;
    let len = xml[start..].find(&format!("</{name}>"))?;
    Some(xml[start..start + len].trim().to_owned())
}

/// Per-storage state of version reads.
#[derive(Default)]
pub(super) struct VersionState {
    /// Whether the bucket keeps versions; asked once.
    versioned: OnceLock<bool>,
    /// Set when the credentials may not read versions.
    unusable: AtomicBool,
    /// Key → the version id of its first version, as listed.
    first: Mutex<HashMap<String, String>>,
}

/// One version with content.
#[derive(Debug, Clone)]
pub(super) struct Version {
    pub id: String,
    pub etag: Option<String>,
    pub size: u64,
    pub modified: Option<chrono::DateTime<chrono::Utc>>,
}

/// Everything a bucket holds under one key.
#[derive(Debug, Clone, Default)]
pub(super) struct KeyVersions {
    /// Versions with content, newest first (S3's order).
    pub versions: Vec<Version>,
    /// Delete marker version ids.
    pub markers: Vec<String>,
    /// Whether the newest entry is a delete marker.
    pub hidden: bool,
}

impl KeyVersions {
    /// The first version written.
    pub fn first(&self) -> Option<&Version> {
        self.versions.last()
    }
}

impl S3Storage {
    /// The bucket's versioning state.
    pub(super) fn bucket_versioning(&self) -> Result<Versioning, StorageError> {
        let (client, bucket) = (&self.client, &self.bucket);
        let status = self.retry("", "GetBucketVersioning", || async move {
            match client.get_bucket_versioning().bucket(bucket).send().await {
                Ok(out) => Ok(out.status().map(|s| s.as_str().to_owned())),
                // A store whose answer names its root element differently
                // from S3's (moto) fails the SDK's parsing with a 200: read
                // the Status element from the body itself.
                Err(e) if status_of(&e) == Some(200) => {
                    let body = e
                        .raw_response()
                        .and_then(|r| r.body().bytes())
                        .map(String::from_utf8_lossy)
                        .unwrap_or_default();
                    Ok(xml_element(&body, "Status"))
                }
                Err(e) => Err(classify("", e)),
            }
        })?;
        Ok(match status.as_deref() {
            Some("Enabled") => Versioning::Enabled,
            Some("Suspended") => Versioning::Suspended,
            _ => Versioning::Off,
        })
    }

    /// Whether reads go by first version, when already known.
    pub(super) fn knows_versioned(&self) -> Option<bool> {
        if self.versions.unusable.load(Ordering::Relaxed) {
            return Some(false);
        }
        self.versions.versioned.get().copied()
    }

    /// [`S3Storage::versioned`], told by a successful read of a current
    /// version: one that has a version id comes from a bucket that keeps
    /// versions; without one, the bucket is asked.
    pub(super) fn versioned_given(&self, version: Option<&str>) -> bool {
        if let Some(known) = self.knows_versioned() {
            return known;
        }
        if version.is_some() {
            return *self.versions.versioned.get_or_init(|| true);
        }
        self.versioned()
    }

    /// Whether reads go by first version: the bucket keeps versions and
    /// these credentials may read them.
    pub(super) fn versioned(&self) -> bool {
        if self.versions.unusable.load(Ordering::Relaxed) {
            return false;
        }
        *self
            .versions
            .versioned
            .get_or_init(|| match self.bucket_versioning() {
                Ok(v) => v != Versioning::Off,
                Err(e) => {
                    tracing::info!(
                        "{}: cannot tell whether the bucket keeps versions ({e}); reading current \
                     versions",
                        self.location()
                    );
                    false
                }
            })
    }

    /// Stops reading by version (the credentials may not), once, with a warning.
    pub(super) fn versions_unusable(&self, why: &str) {
        if !self.versions.unusable.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "{}: {why}; reading current object versions, so an overwritten object reads \
                 as damaged (give the owner's credentials s3:ListBucketVersions and \
                 s3:GetObjectVersion)",
                self.location()
            );
        }
    }

    /// The version of `key` that reads use: its first version on a bucket
    /// that keeps versions, `None` (the current one) elsewhere.
    pub(super) fn read_version(&self, key: &str) -> Result<Option<String>, StorageError> {
        if !self.versioned() {
            return Ok(None);
        }
        if let Some(v) = self.versions.first.lock().expect("version cache").get(key) {
            return Ok(Some(v.clone()));
        }
        match self.key_versions(key) {
            Ok(all) => {
                let first = all.first().ok_or_else(|| StorageError::NotFound {
                    key: key.to_owned(),
                })?;
                self.remember_first(key, &first.id);
                Ok(Some(first.id.clone()))
            }
            Err(StorageError::Refused { message, .. }) => {
                self.versions_unusable(&format!("listing versions was refused ({message})"));
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Runs `op` on the version reads use, falling back to the current
    /// version when reading versions is refused.
    pub(super) fn with_read_version<T>(
        &self,
        key: &str,
        op: impl Fn(Option<&str>) -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        let version = self.read_version(key)?;
        match op(version.as_deref()) {
            Err(StorageError::Refused { message, .. }) if version.is_some() => {
                self.versions_unusable(&format!("reading a version was refused ({message})"));
                op(None)
            }
            other => other,
        }
    }

    fn remember_first(&self, key: &str, version: &str) {
        self.versions
            .first
            .lock()
            .expect("version cache")
            .insert(key.to_owned(), version.to_owned());
    }

    pub(super) fn forget_versions(&self, key: &str) {
        self.versions
            .first
            .lock()
            .expect("version cache")
            .remove(key);
    }

    /// Every version under `prefix`, by key.
    pub(super) fn all_versions(
        &self,
        prefix: &str,
    ) -> Result<BTreeMap<String, KeyVersions>, StorageError> {
        let full = self.full(prefix);
        let (client, bucket) = (&self.client, &self.bucket);
        let mut out: BTreeMap<String, KeyVersions> = BTreeMap::new();
        let mut markers: (Option<String>, Option<String>) = (None, None);
        loop {
            let page = self.retry(prefix, "ListObjectVersions", || {
                let (full, markers) = (&full, &markers);
                async move {
                    client
                        .list_object_versions()
                        .bucket(bucket)
                        .prefix(full)
                        .set_key_marker(markers.0.clone())
                        .set_version_id_marker(markers.1.clone())
                        .send()
                        .await
                        .map_err(|e| {
                            if status_of(&e) == Some(501) || e.code() == Some("NotImplemented") {
                                Failure::Final(StorageError::Refused {
                                    key: prefix.to_owned(),
                                    status: 501,
                                    message: "the store does not list object versions".into(),
                                })
                            } else {
                                classify(prefix, e)
                            }
                        })
                }
            })?;
            for v in page.versions() {
                let (Some(k), Some(id)) = (v.key(), v.version_id()) else {
                    continue;
                };
                let entry = out.entry(self.relative(k)).or_default();
                if v.is_latest() == Some(true) {
                    entry.hidden = false;
                }
                entry.versions.push(Version {
                    id: id.to_owned(),
                    etag: v.e_tag().map(str::to_owned),
                    size: v.size().unwrap_or(0).max(0) as u64,
                    modified: v.last_modified().and_then(super::lock::to_chrono),
                });
            }
            for m in page.delete_markers() {
                let (Some(k), Some(id)) = (m.key(), m.version_id()) else {
                    continue;
                };
                let entry = out.entry(self.relative(k)).or_default();
                if m.is_latest() == Some(true) {
                    entry.hidden = true;
                }
                entry.markers.push(id.to_owned());
            }
            if page.is_truncated() != Some(true) {
                break;
            }
            markers = (
                page.next_key_marker().map(str::to_owned),
                page.next_version_id_marker().map(str::to_owned),
            );
            if markers.0.is_none() {
                break;
            }
        }
        Ok(out)
    }

    /// Everything the bucket holds under exactly `key`.
    pub(super) fn key_versions(&self, key: &str) -> Result<KeyVersions, StorageError> {
        Ok(self.all_versions(key)?.remove(key).unwrap_or_default())
    }

    /// Lists like [`crate::storage::Storage::list`], from the versions: every
    /// key with at least one version that has content (even when a delete
    /// marker hides it), with the size and time of its first version, which
    /// reads then use.
    pub(super) fn list_versioned(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StorageError> {
        let mut out = Vec::new();
        for (key, all) in self.all_versions(prefix)? {
            let Some(first) = all.first() else { continue };
            self.remember_first(&key, &first.id);
            out.push(ObjectInfo {
                key,
                size: first.size,
                modified: first.modified,
            });
        }
        Ok(out)
    }

    /// Objects with more than one version, or hidden by a delete marker.
    pub(super) fn rewritten_objects(&self) -> Result<Vec<Rewritten>, StorageError> {
        if !self.versioned() {
            return Ok(Vec::new());
        }
        let all = match self.all_versions("") {
            Ok(all) => all,
            Err(StorageError::Refused { message, .. }) => {
                self.versions_unusable(&format!("listing versions was refused ({message})"));
                return Ok(Vec::new());
            }
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        for (key, all) in all {
            if key.starts_with(crate::storage::PROBE_PREFIX) || all.versions.is_empty() {
                continue;
            }
            if all.versions.len() < 2 && !all.hidden {
                continue;
            }
            let contents: HashSet<Option<&str>> =
                all.versions.iter().map(|v| v.etag.as_deref()).collect();
            out.push(Rewritten {
                key,
                versions: all.versions.len(),
                contents: contents.len(),
                hidden: all.hidden,
            });
        }
        Ok(out)
    }

    /// Deletes `key` for good: every version and delete marker of it on a
    /// bucket that keeps versions, so that nothing of it stays (or is read
    /// as its first version later). A version under retention refuses.
    pub(super) fn delete_everything(&self, key: &str) -> Result<(), StorageError> {
        if !self.versioned() {
            return self.delete_current(key);
        }
        let all = match self.key_versions(key) {
            Ok(all) => all,
            Err(StorageError::Refused { message, .. }) => {
                self.versions_unusable(&format!("listing versions was refused ({message})"));
                return self.delete_current(key);
            }
            Err(e) => return Err(e),
        };
        self.forget_versions(key);
        for m in &all.markers {
            self.delete_version(key, Some(m))?;
        }
        if all.versions.is_empty() {
            return Err(StorageError::NotFound {
                key: key.to_owned(),
            });
        }
        // Newest first: what vault wrote goes last, so a refusal (retention)
        // leaves it, not an overwrite, as the object's first version.
        for v in &all.versions {
            self.delete_version(key, Some(&v.id))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_element_is_read_whatever_the_root_element() {
        let moto = "<?xml version=\"1.0\"?><GetBucketVersioningResponse xmlns=\"x\">\
                    <Status>Enabled</Status></GetBucketVersioningResponse>";
        assert_eq!(xml_element(moto, "Status").as_deref(), Some("Enabled"));
        assert_eq!(xml_element("<VersioningConfiguration/>", "Status"), None);
        assert_eq!(xml_element("<Status>Enabled", "Status"), None);
    }
}

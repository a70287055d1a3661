//! How to reach an S3 bucket and how to shape requests: explicit options,
//! resolved by the caller (the CLI reads flags, the environment and the
//! configuration file). Always compiled, so that a build without the `s3`
//! feature still accepts them.

use std::path::PathBuf;
use std::time::Duration;

use crate::storage::StorageError;

/// The smallest part S3 accepts (except the last one).
#[cfg_attr(not(feature = "s3"), allow(dead_code))]
pub(crate) const MIN_PART_SIZE: u64 = 5 << 20;

/// Connection and request settings for an S3 repository. Anything left
/// `None` comes from the AWS SDK's own chain (its environment variables,
/// profiles, instance roles), which the SDK reads itself.
#[derive(Debug, Clone)]
pub struct S3Options {
    /// Endpoint URL of an S3-compatible store.
    pub endpoint: Option<String>,
    /// Region.
    pub region: Option<String>,
    /// Static access key id and secret.
    pub credentials: Option<(String, String)>,
    /// Path-style addressing (needed by most self-hosted stores); always on
    /// when `endpoint` is set.
    pub path_style: bool,
    /// Attempts per request before giving up (default 6).
    pub max_attempts: u32,
    /// Backoff before the second attempt, doubled for each later one up to
    /// 30 s, with jitter (default 500 ms).
    pub retry_base: Duration,
    /// How long one request may take until the response starts (sending
    /// the request body included), and how long a response body may stall,
    /// before the attempt counts as failed (default 120 s, enough for a
    /// 32 MiB PUT at 280 KB/s).
    pub read_timeout: Duration,
    /// Objects larger than this are uploaded in parts (default 32 MiB).
    /// Default-sized 16 MiB packs stay one PUT; packs from
    /// `--pack-size-mib 64` and up go multipart.
    pub multipart_threshold: u64,
    /// Size of each part (default 16 MiB, at least 5 MiB).
    pub part_size: u64,
    /// Storage class of new objects, e.g. `STANDARD_IA` or `GLACIER_IR`
    /// (default: the bucket's). Choose one that allows immediate reads:
    /// restores and drills read packs directly.
    pub storage_class: Option<String>,
    /// AWS profile to use (default: the SDK's).
    pub profile: Option<String>,
    /// AWS shared credentials file (default: the SDK's), e.g. one handed
    /// over by systemd.
    pub credentials_file: Option<PathBuf>,
}

impl Default for S3Options {
    fn default() -> Self {
        S3Options {
            endpoint: None,
            region: None,
            credentials: None,
            path_style: false,
            max_attempts: 6,
            retry_base: Duration::from_millis(500),
            read_timeout: Duration::from_secs(120),
            multipart_threshold: 32 << 20,
            part_size: 16 << 20,
            storage_class: None,
            profile: None,
            credentials_file: None,
        }
    }
}

/// The request settings, checked.
#[derive(Debug, Clone)]
#[cfg_attr(not(feature = "s3"), allow(dead_code))]
pub(crate) struct Tuning {
    pub max_attempts: u32,
    pub retry_base: Duration,
    pub read_timeout: Duration,
    pub multipart_threshold: u64,
    pub part_size: u64,
    pub storage_class: Option<String>,
}

impl S3Options {
    /// Checks the request settings; `url` names the repository in errors.
    #[cfg_attr(not(feature = "s3"), allow(dead_code))]
    pub(crate) fn tuning(&self, url: &str) -> Result<Tuning, StorageError> {
        let bad = |reason: String| StorageError::Unsupported {
            location: url.to_owned(),
            reason,
        };
        if self.max_attempts == 0 {
            return Err(bad("at least one attempt per request is needed".into()));
        }
        if self.read_timeout.is_zero() {
            return Err(bad("the S3 timeout must be at least one second".into()));
        }
        if !(MIN_PART_SIZE..=5 << 30).contains(&self.part_size) {
            return Err(bad(format!(
                "part size {} bytes is outside S3's 5 MiB–5 GiB",
                self.part_size
            )));
        }
        let storage_class = match self.storage_class.as_deref().map(str::trim) {
            None => None,
            Some(c)
                if !c.is_empty()
                    && c.bytes()
                        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_') =>
            {
                Some(c.to_owned())
            }
            Some(c) => {
                return Err(bad(format!(
                    "{c:?} is not an S3 storage class such as STANDARD_IA"
                )));
            }
        };
        Ok(Tuning {
            max_attempts: self.max_attempts.min(100),
            retry_base: self.retry_base,
            read_timeout: self.read_timeout,
            multipart_threshold: self.multipart_threshold,
            part_size: self.part_size,
            storage_class,
        })
    }
}

/// `s3://bucket/prefix` split into bucket and prefix (without slashes at
/// either end). A URL carrying credentials (`s3://user:secret@bucket`) is
/// refused without echoing them.
pub fn parse_url(url: &str) -> Result<(String, String), StorageError> {
    let invalid = |why: &str| StorageError::InvalidLocation(why.to_owned());
    let rest = url
        .strip_prefix("s3://")
        .ok_or_else(|| invalid("not an s3:// URL"))?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.contains('@') || bucket.contains(':') {
        return Err(invalid(
            "the s3:// URL carries credentials or a port (user:secret@…): credentials never \
             belong in the repository URL; use the AWS credentials chain or [s3] \
             credentials_file, and [s3] endpoint for the server",
        ));
    }
    if bucket.is_empty() {
        return Err(invalid("the s3:// URL names no bucket"));
    }
    Ok((bucket.to_owned(), prefix.trim_matches('/').to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_refuse_parts_below_5_mib() {
        let s = S3Options {
            part_size: 1 << 20,
            ..Default::default()
        };
        assert!(matches!(
            s.tuning("s3://b/p"),
            Err(StorageError::Unsupported { .. })
        ));
    }

    #[test]
    fn options_refuse_a_storage_class_that_is_not_one() {
        let s = S3Options {
            storage_class: Some("standard ia; rm".into()),
            ..Default::default()
        };
        assert!(s.tuning("s3://b/p").is_err());
        let s = S3Options {
            storage_class: Some(" STANDARD_IA ".into()),
            ..Default::default()
        };
        assert_eq!(
            s.tuning("s3://b/p").unwrap().storage_class.as_deref(),
            Some("STANDARD_IA")
        );
    }

    #[test]
    fn urls_split_into_bucket_and_prefix_and_credentials_are_never_echoed() {
        assert_eq!(
            parse_url("s3://b/x/y/").unwrap(),
            ("b".to_owned(), "x/y".to_owned())
        );
        assert_eq!(
            parse_url("s3://b").unwrap(),
            ("b".to_owned(), String::new())
        );
        assert!(parse_url("s3:///x").is_err());
        let err = parse_url("s3://AKIAEXAMPLE:hunter2@bucket/x").unwrap_err();
        let text = err.to_string();
        assert!(
            !text.contains("hunter2") && !text.contains("AKIAEXAMPLE"),
            "{text}"
        );
        assert!(text.contains("credentials"), "{text}");
    }
}

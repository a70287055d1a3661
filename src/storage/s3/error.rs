//! S3 errors sorted into what a retry can fix and what it cannot, and
//! mapped to [`StorageError`]s that name the object key.

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};

use crate::storage::StorageError;

/// How one failed attempt ends.
pub(super) enum Failure {
    /// Another attempt may succeed (5xx, throttling, timeouts, dropped
    /// connections, truncated bodies); carries the cause for the final message.
    Transient(String),
    /// No connection could be made at all (refused, or the host name does
    /// not resolve): transient once the endpoint has answered, a
    /// misconfiguration before that. Carries the cause.
    Unreachable(String),
    /// No retry can help.
    Final(StorageError),
}

/// An I/O-kind storage error for `key` with message `e`.
pub(super) fn io_err(key: &str, e: impl std::fmt::Display) -> StorageError {
    StorageError::Io {
        key: key.to_owned(),
        error: std::io::Error::other(e.to_string()),
    }
}

/// The HTTP status of a failed request, when the server answered.
pub(super) fn status_of<E>(e: &SdkError<E>) -> Option<u16> {
    e.raw_response().map(|r| r.status().as_u16())
}

/// Status, code and message of a service error, for messages.
pub(super) fn describe<E: ProvideErrorMetadata>(status: Option<u16>, e: &E) -> String {
    let status = status.map_or(String::new(), |s| format!("HTTP {s} "));
    format!(
        "{status}{}: {}",
        e.code().unwrap_or("error"),
        e.message().unwrap_or("(no message)")
    )
}

/// What is missing when the SDK could not even build a request: no
/// credentials anywhere in the chain, or no region. One plain line that
/// says what to set, instead of the SDK's nested debug structures.
fn misconfiguration<E>(e: &SdkError<E>) -> Option<String>
where
    E: std::error::Error + 'static,
{
    let SdkError::DispatchFailure(d) = e else {
        return None;
    };
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(d.as_connector_error()?);
    while let Some(c) = cause {
        let text = c.to_string();
        if text.contains("no credentials found")
            || text.contains("credential provider was not enabled")
        {
            return Some(
                "S3 has no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or name a \
                 profile ([s3] profile, AWS_PROFILE) or a credentials file ([s3] \
                 credentials_file, AWS_SHARED_CREDENTIALS_FILE)"
                    .into(),
            );
        }
        if text.contains("credentials provider was not properly configured") {
            let mut inner = c;
            while let Some(next) = inner.source() {
                inner = next;
            }
            return Some(format!(
                "S3 credentials cannot be loaded: {}",
                inner.to_string().trim_start_matches("other: ")
            ));
        }
        if text.contains("region must be set") {
            return Some(
                "S3 has no region: set AWS_REGION or [s3] region (most S3-compatible stores \
                 accept any, e.g. us-east-1)"
                    .into(),
            );
        }
        cause = c.source();
    }
    None
}

/// The error and its causes as one plain line (`a: b: c`), without the
/// SDK's debug rendering of its structures; a cause whose text the
/// previous one already ends with is left out.
pub(super) fn plain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = vec![e.to_string()];
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !parts.last().is_some_and(|p| p.ends_with(&text)) {
            parts.push(text);
        }
        cause = c.source();
    }
    parts.join(": ")
}

/// Whether a dispatch failure is a connection that could not be made at
/// all: refused, or a host name that does not resolve.
fn unreachable<E>(e: &SdkError<E>) -> bool
where
    E: std::error::Error + 'static,
{
    let SdkError::DispatchFailure(d) = e else {
        return false;
    };
    let Some(root) = d.as_connector_error() else {
        return false;
    };
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(root);
    while let Some(c) = cause {
        if c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused)
        {
            return true;
        }
        let text = c.to_string();
        if text.starts_with("dns error") || text.contains("failed to lookup address") {
            return true;
        }
        cause = c.source();
    }
    false
}

/// Sorts an SDK error into transient and final.
pub(super) fn classify<E>(key: &str, e: SdkError<E>) -> Failure
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    if let Some(why) = misconfiguration(&e) {
        return Failure::Final(StorageError::Misconfigured(why));
    }
    match &e {
        SdkError::TimeoutError(_) => Failure::Transient("timed out".into()),
        SdkError::DispatchFailure(d) if d.is_timeout() => {
            Failure::Transient("timed out waiting for the server".into())
        }
        SdkError::DispatchFailure(_) if unreachable(&e) => Failure::Unreachable(plain(&e)),
        SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => Failure::Transient(plain(&e)),
        SdkError::ServiceError(_) => {
            let status = status_of(&e);
            // 501: the store does not implement the request; asking again
            // will not change that.
            let transient = matches!(status, Some(s) if (s >= 500 && s != 501) || s == 429)
                || matches!(
                    e.code(),
                    Some(
                        "SlowDown"
                            | "RequestTimeout"
                            | "InternalError"
                            | "ServiceUnavailable"
                            | "ThrottlingException"
                            | "ConditionalRequestConflict"
                    )
                );
            if transient {
                Failure::Transient(describe(status, &e))
            } else {
                Failure::Final(map_sdk(key, e))
            }
        }
        _ => Failure::Final(map_sdk(key, e)),
    }
}

/// Maps a final SDK error to a [`StorageError`] naming `key`.
pub(super) fn map_sdk<E>(key: &str, e: SdkError<E>) -> StorageError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let status = status_of(&e);
    let code = e.code().map(str::to_owned);
    if code.as_deref() == Some("NoSuchBucket") {
        return io_err(
            key,
            "the bucket does not exist (create it, or check the s3:// URL and endpoint)",
        );
    }
    if status == Some(404) || matches!(code.as_deref(), Some("NoSuchKey") | Some("NotFound")) {
        return StorageError::NotFound {
            key: key.to_owned(),
        };
    }
    if status == Some(403) || code.as_deref() == Some("AccessDenied") {
        return StorageError::Refused {
            key: key.to_owned(),
            status: status.unwrap_or(403),
            message: describe(None, &e),
        };
    }
    if status == Some(501) || code.as_deref() == Some("NotImplemented") {
        return StorageError::Unsupported {
            location: key.to_owned(),
            reason: format!(
                "the store does not implement this request ({})",
                describe(status, &e)
            ),
        };
    }
    if matches!(e, SdkError::ServiceError(_)) {
        return io_err(key, describe(status, &e));
    }
    io_err(key, plain(&e))
}

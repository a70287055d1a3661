//! S3 errors sorted into what a retry can fix and what it cannot, and
//! mapped to [`StorageError`]s that name the object key.

use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

use crate::storage::StorageError;

/// How one failed attempt ends.
pub(super) enum Failure {
    /// Another attempt may succeed (5xx, throttling, timeouts, dropped
    /// connections, truncated bodies); carries the cause for the final message.
    Transient(String),
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

/// Sorts an SDK error into transient and final.
pub(super) fn classify<E>(key: &str, e: SdkError<E>) -> Failure
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match &e {
        SdkError::TimeoutError(_) => Failure::Transient("timed out".into()),
        SdkError::DispatchFailure(d) if d.is_timeout() => {
            Failure::Transient("timed out waiting for the server".into())
        }
        SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            Failure::Transient(DisplayErrorContext(&e).to_string())
        }
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
    io_err(key, DisplayErrorContext(e))
}

//! vault's own retries: every request (including reading a GET's body,
//! which the SDK does not retry) is retried with exponential backoff and
//! jitter on 5xx, throttling, timeouts and dropped connections, never on
//! other 4xx such as 403, 404 or 412. When the attempts are spent, the
//! error names the key, the number of attempts and the last cause.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;

use super::S3Storage;
use super::error::Failure;
use crate::storage::StorageError;

impl S3Storage {
    /// Runs `op` until it succeeds, fails for good, or the attempts are spent.
    pub(super) fn retry<T, F, Fut>(
        &self,
        key: &str,
        what: &str,
        mut op: F,
    ) -> Result<T, StorageError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Failure>>,
    {
        self.runtime.block_on(async {
            let mut attempt = 0;
            loop {
                attempt += 1;
                let cause = match op().await {
                    Ok(v) => {
                        self.reached.store(true, Ordering::Relaxed);
                        return Ok(v);
                    }
                    Err(Failure::Final(e)) => return Err(e),
                    Err(Failure::Unreachable(cause)) if !self.reached.load(Ordering::Relaxed) => {
                        return Err(StorageError::Misconfigured(format!(
                            "S3 endpoint {} cannot be reached ({cause}); check AWS_ENDPOINT_URL \
                             or [s3] endpoint",
                            self.endpoint
                        )));
                    }
                    Err(Failure::Transient(cause) | Failure::Unreachable(cause)) => cause,
                };
                if attempt >= self.tuning.max_attempts {
                    return Err(StorageError::RetriesExhausted {
                        key: key.to_owned(),
                        attempts: attempt,
                        last: format!("{what}: {cause}"),
                    });
                }
                let delay = backoff(self.tuning.retry_base, attempt);
                tracing::info!(
                    "{key}: {what} attempt {attempt} failed ({cause}); retrying in {} ms",
                    delay.as_millis()
                );
                tokio::time::sleep(delay).await;
            }
        })
    }
}

/// Exponential backoff with jitter: half the doubled delay, plus a random
/// share of the other half; capped at 30 s.
pub(super) fn backoff(base: Duration, attempt: u32) -> Duration {
    let full = base
        .saturating_mul(1 << (attempt - 1).min(16))
        .min(Duration::from_secs(30));
    let half = full / 2;
    half + half.mul_f64(rand::Rng::r#gen::<f64>(&mut rand::thread_rng()))
}

/// Reads a whole body, failing (transiently) when the server stalls for
/// longer than `idle` or the body is shorter than announced.
pub(super) async fn collect(
    mut body: ByteStream,
    expected: Option<u64>,
    idle: Duration,
) -> Result<Vec<u8>, Failure> {
    let mut out = Vec::with_capacity(expected.unwrap_or(0).min(64 << 20) as usize);
    loop {
        match tokio::time::timeout(idle, body.next()).await {
            Err(_) => {
                return Err(Failure::Transient(format!(
                    "no data for {} s while reading the body",
                    idle.as_secs()
                )));
            }
            Ok(None) => break,
            Ok(Some(Ok(chunk))) => out.extend_from_slice(&chunk),
            Ok(Some(Err(e))) => {
                return Err(Failure::Transient(format!(
                    "connection lost while reading the body: {}",
                    super::error::plain(&e)
                )));
            }
        }
    }
    match expected {
        Some(n) if n != out.len() as u64 => Err(Failure::Transient(format!(
            "body ended after {} of {n} bytes",
            out.len()
        ))),
        _ => Ok(out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        let base = Duration::from_millis(100);
        for attempt in 1..6 {
            let d = backoff(base, attempt);
            let full = base * (1 << (attempt - 1));
            assert!(d >= full / 2 && d <= full, "{attempt}: {d:?}");
        }
        assert!(backoff(base, 40) <= Duration::from_secs(30));
    }
}

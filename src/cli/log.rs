//! Log lines in the one style of everything else vault says on stderr:
//! `vault: warning: …`, `vault: error: …` (`info`, `debug`, `trace` with
//! `VAULT_LOG`), no timestamp (the journal and terminals have their own),
//! control characters escaped as in every other message.

use std::fmt;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Formats each event as `vault: LEVEL: MESSAGE`.
pub struct Plain;

/// The word a level prints as.
fn word(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "error",
        Level::WARN => "warning",
        Level::INFO => "info",
        Level::DEBUG => "debug",
        Level::TRACE => "trace",
    }
}

impl<S, N> FormatEvent<S, N> for Plain
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut message = String::new();
        ctx.format_fields(Writer::new(&mut message), event)?;
        writeln!(
            writer,
            "vault: {}: {}",
            word(event.metadata().level()),
            super::render::sanitize_lines(&message)
        )
    }
}

/// Starts logging to stderr, filtered by `VAULT_LOG` (default: warnings,
/// with the AWS SDK's and fuser's own warnings hidden).
pub fn init() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("VAULT_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(
            "warn,aws_config=error,aws_runtime=error,aws_smithy_runtime=error,aws_sdk_s3=error,\
             fuser=error",
        )
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .event_format(Plain)
        .init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_print_as_the_words_of_other_messages() {
        assert_eq!(word(&Level::WARN), "warning");
        assert_eq!(word(&Level::ERROR), "error");
    }
}

//! A live progress line for long commands, on a terminal only: under
//! systemd or in a pipe nothing is drawn and the final report says it all.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use vault::ops::backup::Stats;

use super::render::size;

/// Draws backup counters until dropped.
pub struct BackupProgress {
    bar: Option<ProgressBar>,
    stop: Option<std::sync::mpsc::Sender<()>>,
    ticker: Option<std::thread::JoinHandle<()>>,
}

impl BackupProgress {
    /// Starts drawing `stats` when stderr is a terminal and `quiet` is
    /// false (e.g. with `--json`); otherwise does nothing.
    pub fn start(stats: &Arc<Stats>, quiet: bool) -> Self {
        if quiet || !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            return BackupProgress {
                bar: None,
                stop: None,
                ticker: None,
            };
        }
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{spinner} {elapsed} {msg}").expect("a valid template"),
        );
        let draw = |b: &ProgressBar, s: &Stats| {
            b.set_message(format!(
                "read {}, new {}, uploaded {}",
                size(s.bytes_scanned.load(Ordering::Relaxed)),
                size(s.bytes_added.load(Ordering::Relaxed)),
                size(s.bytes_stored.load(Ordering::Relaxed)),
            ));
            b.tick();
        };
        draw(&bar, stats);
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let (b, s) = (bar.clone(), Arc::clone(stats));
        let ticker = std::thread::spawn(move || {
            // Dropping the sender (or sending) ends the loop.
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                rx.recv_timeout(Duration::from_millis(200))
            {
                draw(&b, &s);
            }
        });
        BackupProgress {
            bar: Some(bar),
            stop: Some(tx),
            ticker: Some(ticker),
        }
    }
}

impl Drop for BackupProgress {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.ticker.take() {
            let _ = t.join();
        }
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
    }
}

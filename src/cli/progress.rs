//! A live progress line for long commands, on a terminal only: under
//! systemd or in a pipe nothing is drawn and the final report says it all.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use vault::ops::backup::Stats;
use vault::ops::progress::Progress;

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

/// Draws a [`Progress`] (items and bytes of the expected totals, with an
/// estimate of the time left) until dropped; on a terminal only.
pub struct Meter {
    shown: Option<(ProgressBar, Arc<Progress>)>,
    _drawing: BackupProgress,
}

/// One frame of a [`Meter`].
fn draw_meter(b: &ProgressBar, p: &Progress) {
    let r = p.read();
    if r.unit.is_empty() {
        b.set_message("starting");
        return;
    }
    // The estimate follows bytes when there are any, else items.
    let (done, total) = if r.bytes_total > 0 {
        (r.bytes_done, r.bytes_total)
    } else {
        (r.items_done, r.items_total)
    };
    b.set_length(total.max(done));
    b.set_position(done);
    b.set_message(format!(
        "{}/{} {}, {}/{}",
        r.items_done,
        r.items_total,
        r.unit,
        size(r.bytes_done),
        size(r.bytes_total)
    ));
}

impl Meter {
    /// Starts drawing `progress` when stderr is a terminal and `quiet` is
    /// false (e.g. with `--json`).
    pub fn start(progress: &Arc<Progress>, quiet: bool) -> Self {
        if quiet || !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            return Meter {
                shown: None,
                _drawing: BackupProgress {
                    bar: None,
                    stop: None,
                    ticker: None,
                },
            };
        }
        let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{spinner} {elapsed} {msg}, about {eta} left")
                .expect("a valid template"),
        );
        draw_meter(&bar, progress);
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let (b, p) = (bar.clone(), Arc::clone(progress));
        let ticker = std::thread::spawn(move || {
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                rx.recv_timeout(Duration::from_millis(200))
            {
                draw_meter(&b, &p);
            }
        });
        Meter {
            shown: Some((bar.clone(), Arc::clone(progress))),
            _drawing: BackupProgress {
                bar: Some(bar),
                stop: Some(tx),
                ticker: Some(ticker),
            },
        }
    }
}

impl Drop for Meter {
    /// Draws the final counts once (past the redraw rate limit) before the
    /// line is cleared.
    fn drop(&mut self) {
        if let Some((b, p)) = self.shown.take() {
            draw_meter(&b, &p);
            b.finish();
        }
    }
}

//! `vault backup` output.

use std::io::Write;
use std::sync::{Arc, Mutex};

use serde_json::json;

use super::{count, duration_ms, sanitize, size};
use vault::ops::backup::BackupOutcome;
use vault::ops::backup::changes::{ChangeList, FileChange};

/// The new snapshot as a JSON value (with `change_counts` when listing).
fn value(out: &BackupOutcome) -> serde_json::Value {
    let s = &out.snapshot;
    let mut v = json!({
        "id": out.id,
        "snapshot": s,
        "complete": s.is_complete(),
        "resumed": out.resumed,
        "compressed_outputs": out.compressed_outputs.iter()
            .map(|c| json!({"path": c.path, "why": c.why}))
            .collect::<Vec<_>>(),
    });
    if let Some(counts) = &out.changes {
        v["change_counts"] = json!(counts);
    }
    v
}

/// Prints the new snapshot as JSON.
pub fn json(out: &BackupOutcome) {
    super::json(&value(out));
}

/// `backup --list` on stdout, written as the backup decides each file and
/// never held: text lines (`new`, `changed` or `unchanged` and the path),
/// or, with `--json`, the `changes` array of the one JSON document, opened
/// before the backup and closed with the rest of the document after it
/// (or with `"error"` when the backup fails, so stdout is always one valid
/// document). A closed stdout ends the list, not the backup.
pub struct ChangeStream {
    json: bool,
    state: Mutex<StreamState>,
}

/// What a [`ChangeStream`] remembers: whether the next JSON entry is the
/// first, and the first write error.
struct StreamState {
    first: bool,
    failed: Option<std::io::Error>,
}

impl ChangeStream {
    /// A stream in text or JSON; JSON opens its document now.
    pub fn start(json: bool) -> Arc<Self> {
        let s = Arc::new(ChangeStream {
            json,
            state: Mutex::new(StreamState {
                first: true,
                failed: None,
            }),
        });
        if json {
            s.write(format_args!("{{\n  \"changes\": ["));
        }
        s
    }

    /// The sink the backup sends each file's change to.
    pub fn list(self: &Arc<Self>) -> ChangeList {
        let s = Arc::clone(self);
        ChangeList(Arc::new(move |c: &FileChange| s.file(c)))
    }

    fn file(&self, c: &FileChange) {
        if self.json {
            let first = std::mem::replace(&mut self.state.lock().expect("list lock").first, false);
            let entry = serde_json::to_string(c).expect("a change serializes");
            let sep = if first { "" } else { "," };
            self.write(format_args!("{sep}\n    {entry}"));
        } else {
            self.write(format_args!(
                "{:<9} {}\n",
                c.change.word(),
                sanitize(&c.path)
            ));
        }
    }

    /// Writes to stdout unless an earlier write failed.
    fn write(&self, what: std::fmt::Arguments<'_>) {
        let mut state = self.state.lock().expect("list lock");
        if state.failed.is_some() {
            return;
        }
        let mut out = std::io::stdout().lock();
        if let Err(e) = out.write_fmt(what).and_then(|()| out.flush()) {
            state.failed = Some(e);
        }
    }

    /// Ends the list after a backup: text prints the counts; JSON closes
    /// the array and writes the rest of the document.
    pub fn finish(&self, out: &BackupOutcome) {
        let counts = out.changes.unwrap_or_default();
        if self.json {
            let rest = serde_json::to_string_pretty(&value(out)).expect("JSON");
            let rest = rest.strip_prefix('{').unwrap_or(&rest);
            self.write(format_args!("\n  ],{rest}\n"));
        } else {
            outln!(
                "files: {} new, {} changed, {} unchanged",
                counts.new,
                counts.changed,
                counts.unchanged
            );
        }
        self.cut_short();
    }

    /// Ends the JSON document of a failed backup with its error.
    pub fn fail(&self, error: &anyhow::Error) {
        if self.json {
            let error = serde_json::to_string(&format!("{error:#}")).expect("JSON");
            self.write(format_args!(
                "\n  ],\n  \"complete\": false,\n  \"error\": {error}\n}}\n"
            ));
        }
        self.cut_short();
    }

    /// Warns when stdout failed while listing.
    fn cut_short(&self) {
        if let Some(e) = &self.state.lock().expect("list lock").failed {
            eprintln!("vault: warning: the change list was cut short: {e}");
        }
    }
}

/// Prints what the backup did for humans.
pub fn text(out: &BackupOutcome) {
    let t = &out.snapshot.totals;
    outln!("snapshot {} saved", out.id.short());
    outln!(
        "  {}, {}, {} ({} read, the rest unchanged)",
        count(t.files, "file"),
        count(t.dirs, "dir"),
        size(t.bytes),
        count(t.files_read, "file")
    );
    outln!(
        "  added {}, {} raw, {} stored, in {}",
        count(t.blobs_added, "new blob"),
        size(t.bytes_added),
        size(t.bytes_stored),
        duration_ms(t.duration_ms)
    );
    if out.resumed.packs > 0 {
        outln!(
            "  reused {}, {}, that an interrupted backup had uploaded",
            count(out.resumed.packs as u64, "pack"),
            size(out.resumed.bytes)
        );
    }
}

/// Warns on stderr about every input that could not be read, and about
/// command output that was already compressed.
pub fn warnings(out: &BackupOutcome) {
    for e in &out.snapshot.errors {
        eprintln!(
            "vault: warning: could not read {}: {}",
            sanitize(&e.path),
            sanitize(&e.message)
        );
    }
    for c in &out.compressed_outputs {
        let what = match c.why {
            "incompressible" => "does not compress (its first MiB did not shrink)".to_owned(),
            format => format!("is {format}-compressed"),
        };
        eprintln!(
            "vault: warning: the command output stored as {} {what}: compressed output never \
             deduplicates, so every backup stores all of it again; have the command write \
             uncompressed output (pg_dump -Z0 / --compress=0, no gzip or zstd in the pipe), \
             or back PostgreSQL up with vault's native --postgres source",
            sanitize(&c.path)
        );
    }
}

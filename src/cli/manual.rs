//! The manual pages' own sections: what clap_mangen renders from the flags
//! (NAME, SYNOPSIS, OPTIONS, SUBCOMMANDS) is followed on vault(1) by EXIT
//! STATUS, ENVIRONMENT, FILES and EXAMPLES, and vault.toml(5) is built from
//! docs/vault.toml.example so that the page and the example cannot drift.

use std::fmt::Write;

/// The example configuration file, every key with its comment.
const EXAMPLE: &str = include_str!("../../docs/vault.toml.example");

/// Escapes text for roff: backslashes, and a leading `.` or `'` that
/// would read as a request.
fn esc(text: &str) -> String {
    let t = text.replace('\\', "\\e").replace('-', "\\-");
    if t.starts_with('.') || t.starts_with('\'') {
        format!("\\&{t}")
    } else {
        t
    }
}

/// A `.TP` item: a bold tag and its paragraph.
fn item(out: &mut String, tag: &str, text: &str) {
    let _ = write!(out, ".TP\n\\fB{}\\fR\n{}\n", esc(tag), esc(text));
}

/// EXIT STATUS, ENVIRONMENT, FILES and EXAMPLES for vault(1).
pub fn vault_sections() -> String {
    let mut s = String::from(".SH \"EXIT STATUS\"\n");
    for (code, text) in [
        (
            "0",
            "Success (also when the reader of standard output goes away, as in `vault snapshots | head -n 1`).",
        ),
        (
            "1",
            "The operation failed, with nothing half-written (a wrong key, a permission or storage failure, a concurrent change); for `vault status`: something needs attention.",
        ),
        (
            "2",
            "A usage or configuration error: a bad flag value, a name that matches nothing (snapshot, owner, path), an insecure key file, an invalid configuration file.",
        ),
        (
            "3",
            "A snapshot was made but some inputs could not be read (they are listed in the snapshot header).",
        ),
        (
            "4",
            "Verification found damage or a mismatch (restore --verify, check, drill, a damaged tree in ls, diff, find, stats).",
        ),
        (
            "5",
            "`vault status` could not run (an unreadable repository, an unwritable Prometheus file).",
        ),
        (
            "130",
            "Interrupted by SIGINT, SIGTERM or SIGHUP, after cleaning up.",
        ),
    ] {
        item(&mut s, code, text);
    }
    s.push_str(".SH ENVIRONMENT\nFlags win over these; these win over the configuration file.\n");
    for (var, text) in [
        (
            "VAULT_REPO",
            "The repository (-r): a directory, file:///path or s3://bucket/prefix.",
        ),
        (
            "VAULT_IDENTITY",
            "The key file (-i): the writer key, or an owner's age or ssh identity.",
        ),
        (
            "VAULT_PASSPHRASE_FILE",
            "A file holding a passphrase owner's passphrase (never a flag).",
        ),
        (
            "VAULT_NEW_PASSPHRASE_FILE",
            "The new passphrase for `vault key passwd`.",
        ),
        (
            "VAULT_CONFIG",
            "The configuration file (--config) [default: /etc/vault/vault.toml when it exists].",
        ),
        (
            "VAULT_CACHE_DIR",
            "The local cache directory (--cache-dir) [default: $XDG_CACHE_HOME/vault, ~/.cache/vault, /var/cache/vault for root].",
        ),
        (
            "VAULT_FETCH_JOBS",
            "Metadata objects fetched at once (--fetch-jobs).",
        ),
        ("VAULT_HOST", "The host name recorded in snapshots."),
        (
            "VAULT_LOG",
            "Log filter (tracing EnvFilter syntax, e.g. debug or vault=debug).",
        ),
        (
            "VAULT_S3_MAX_ATTEMPTS, VAULT_S3_RETRY_BASE_MS, VAULT_S3_TIMEOUT_SECS",
            "S3 retries: attempts (6), first backoff in ms (500), request timeout in seconds (120).",
        ),
        (
            "VAULT_S3_MULTIPART_THRESHOLD_MIB, VAULT_S3_PART_SIZE_MIB",
            "S3 multipart uploads: above 32 MiB, in 16 MiB parts.",
        ),
        (
            "VAULT_S3_STORAGE_CLASS, VAULT_S3_PATH_STYLE",
            "The storage class of new objects; path-style addressing (1).",
        ),
        (
            "AWS_ENDPOINT_URL, AWS_REGION, AWS_PROFILE, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SHARED_CREDENTIALS_FILE",
            "The standard AWS chain for S3 repositories.",
        ),
        (
            "VAULT_KEEP_*, VAULT_PRUNE_GRACE, VAULT_MAX_BACKUP_AGE, VAULT_MAX_DRILL_AGE, VAULT_CERTIFICATE_WARNING, VAULT_PROMETHEUS_FILE, VAULT_DRILL_USER, VAULT_DB_LOAD_TIMEOUT, VAULT_COPY_TO",
            "The flags of the same names of forget, prune, status, drill and copy.",
        ),
    ] {
        item(&mut s, var, text);
    }
    s.push_str(".SH FILES\n");
    for (file, text) in [
        (
            "/etc/vault/vault.toml",
            "The configuration file; see vault.toml(5).",
        ),
        (
            "/etc/vault/writer.key",
            "The usual place of a backup host's writer key (mode 0600).",
        ),
        (
            "/etc/vault/owner.key",
            "The owner key, on the drill host only (mode 0600); keep another copy offline.",
        ),
        (
            "~/.cache/vault, /var/cache/vault",
            "The local cache: metadata, the file cache, the upload journal.",
        ),
        (
            "/usr/lib/systemd/system/vault-*.service, vault-*.timer",
            "Units written by `vault systemd` (packaged, not enabled).",
        ),
        (
            "/usr/share/doc/vault/examples/vault.toml.example",
            "Every configuration key with its meaning.",
        ),
    ] {
        item(&mut s, file, text);
    }
    s.push_str(".SH EXAMPLES\n");
    for (what, cmd) in [
        (
            "Create an owner key and a repository, with a writer key for the backup host:",
            "vault key generate --output owner.key\nvault init -r /srv/backup --owner age1... --writer-key-out /etc/vault/writer.key",
        ),
        (
            "Back up, then list the snapshots:",
            "vault backup -r /srv/backup -i /etc/vault/writer.key --tag nightly /etc /var/lib/app\nvault snapshots -r /srv/backup -i /etc/vault/writer.key",
        ),
        (
            "Restore the newest snapshot of one host, or prove it restores:",
            "vault restore -r /srv/backup -i owner.key latest --host web1 --target /srv/restore\nvault restore -r /srv/backup -i owner.key latest --verify",
        ),
        (
            "See what changed, find a file, browse:",
            "vault diff -r /srv/backup -i owner.key 3fa1c2d0 latest\nvault find -r /srv/backup -i owner.key '*.conf' --host web1\nvault mount -r /srv/backup -i owner.key /mnt/vault",
        ),
        (
            "Apply a retention policy and free the space:",
            "vault forget -r /srv/backup -i owner.key --keep-daily 14 --keep-weekly 8 --prune",
        ),
        (
            "Watch it from monitoring:",
            "vault status -r /srv/backup -i /etc/vault/writer.key --prometheus /var/lib/node_exporter/vault.prom",
        ),
    ] {
        let _ = write!(
            s,
            ".PP\n{}\n.PP\n.nf\n.RS 4\n{}\n.RE\n.fi\n",
            esc(what),
            esc(cmd)
        );
    }
    s.push_str(".SH \"SEE ALSO\"\nvault.toml(5), vault\\-backup(1), vault\\-restore(1), age(1), systemd.timer(5)\n");
    s
}

/// Whether a comment is a commented-out `key = value`.
fn is_setting(comment: &str) -> bool {
    comment.split_once(" = ").is_some_and(|(k, _)| {
        !k.is_empty() && k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
    })
}

/// vault.toml(5), from the example file: its opening comment is the
/// description, each table a section, each key an item with its comment.
pub fn config_page(version: &str) -> String {
    let mut s = format!(
        ".TH VAULT.TOML 5 \"\" \"vault {}\" \"File Formats\"\n.SH NAME\nvault.toml \\- vault's \
         configuration file\n.SH SYNOPSIS\n/etc/vault/vault.toml (or \\-\\-config FILE, or VAULT_CONFIG)\n\
         .SH DESCRIPTION\n",
        esc(version)
    );
    let mut comments: Vec<String> = Vec::new();
    let mut in_intro = true;
    for line in EXAMPLE.lines() {
        let t = line.trim();
        if let Some(c) = t.strip_prefix('#') {
            let c = c.strip_prefix(' ').unwrap_or(c);
            if in_intro {
                // The first line names the file (the SYNOPSIS says it).
                if !c.starts_with("vault configuration file") {
                    let _ = writeln!(s, "{}", if c.is_empty() { ".PP".into() } else { esc(c) });
                }
            } else if is_setting(c) {
                // A setting left commented out: documented like the others.
                let mut text = std::mem::take(&mut comments);
                text.push(format!("Example: {c} (commented out in the example)"));
                let key = c.split('=').next().unwrap_or(c).trim();
                item(&mut s, key, &text.join(" "));
            } else {
                comments.push(c.to_owned());
            }
            continue;
        }
        if t.is_empty() {
            if in_intro {
                in_intro = false;
                s.push_str(".SH KEYS\nThe top-level keys:\n");
            }
            // A comment block not followed by a key is a note of its own.
            if !comments.is_empty() {
                let _ = writeln!(s, ".PP\n{}", esc(&comments.join(" ")));
                comments.clear();
            }
            continue;
        }
        in_intro = false;
        if t.starts_with('[') {
            let _ = writeln!(s, ".SH \"{}\"", esc(t));
            if !comments.is_empty() {
                let _ = writeln!(s, "{}", esc(&comments.join(" ")));
                comments.clear();
            }
            continue;
        }
        let (setting, trailing) = match t.split_once(" #") {
            Some((a, b)) => (a.trim(), Some(b.trim())),
            None => (t, None),
        };
        let key = setting.split('=').next().unwrap_or(setting).trim();
        let mut text: Vec<String> = std::mem::take(&mut comments);
        text.extend(trailing.map(str::to_owned));
        text.push(format!("Example: {setting}"));
        item(&mut s, key, &text.join(" "));
    }
    s.push_str(
        ".SH \"SEE ALSO\"\nvault(1); `vault config check` validates a file and names every problem \
         as FILE:LINE:COLUMN.\n",
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_page_documents_every_key_of_the_example() {
        let page = config_page("0.1.0");
        for key in [
            "repository",
            "passphrase_file",
            "keep_daily",
            "prometheus_file",
            "conninfo",
            "pg_url",
        ] {
            assert!(page.contains(&format!("\\fB{key}\\fR")), "{key} missing");
        }
        for table in ["[s3]", "[[backup.command]]", "[retention]", "[status]"] {
            assert!(
                page.contains(&format!(".SH \"{table}\"")),
                "{table} missing"
            );
        }
        // No line may start a roff request by accident.
        assert!(page.lines().all(|l| !l.starts_with('\'')));
    }
}

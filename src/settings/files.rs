//! `vault config check`'s look at the key and secret files a configuration
//! names: they must exist, be regular files and be closed to group and
//! others (as vault and libpq require at run time), and the keys vault reads
//! itself must belong to the caller or root. Only metadata is read.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use super::{Problem, Settings};

/// Files created by systemd's `LoadCredential=` exist only while the unit runs.
const CREDENTIALS_DIR: &str = "/run/credentials/";

/// Every key file named by `s`, with the dotted key naming it.
fn key_files(s: &Settings) -> Vec<(String, &Path)> {
    let mut all: Vec<(String, Option<&Path>)> = vec![
        ("identity".into(), s.identity.as_deref()),
        ("passphrase_file".into(), s.passphrase_file.as_deref()),
        (
            "s3.credentials_file".into(),
            s.s3.credentials_file.as_deref(),
        ),
    ];
    if let Some(b) = &s.backup {
        for (i, pg) in b.postgres.iter().enumerate() {
            all.push((
                format!("backup.postgres[{i}].passfile"),
                pg.passfile.as_deref(),
            ));
        }
    }
    all.push(("drill.identity".into(), s.drill.identity.as_deref()));
    all.into_iter()
        .filter_map(|(k, p)| p.map(|p| (k, p)))
        .collect()
}

/// How the file named by the dotted key `key` comes to exist: each kind
/// of file has its own maker, and `vault key generate` makes only an
/// owner's age identity.
fn how_to_make(key: &str, path: &Path) -> String {
    let p = path.display();
    match key {
        "identity" => format!(
            "put the writer key there: made by `vault init --writer-key-out {p}`, or by an \
             owner with `vault key add-host HOST --writer-key-out {p}` (a key of this host's own) \
             or `vault key rotate-writer --writer-key-out {p}`; on a drill host, an owner key \
             (`vault key generate --output {p}`)"
        ),
        "drill.identity" => format!(
            "put an owner key there (`vault key generate --output {p}` makes one; `vault key \
             add-owner` admits it)"
        ),
        "passphrase_file" => {
            format!(
                "write the owner's passphrase into it (`install -m 0600 /dev/null {p}`, then edit it)"
            )
        }
        "s3.credentials_file" => format!(
            "write an AWS shared credentials file there (`[default]` with aws_access_key_id and \
             aws_secret_access_key; `install -m 0600 /dev/null {p}` first)"
        ),
        _ => format!(
            "write a pgpass file there (lines of host:port:database:user:password; \
             `install -m 0600 /dev/null {p}` first)"
        ),
    }
}

/// Checks every key file named by `s`.
pub fn check(s: &Settings) -> Vec<Problem> {
    let mut out = Vec::new();
    for (key, path) in key_files(s) {
        let short = key.rsplit('.').next().unwrap_or(&key).to_owned();
        let problem = |message: String, help: String| {
            Problem::new(&s.file, s.location(&key), message).with_help(help)
        };
        match std::fs::metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if path.starts_with(CREDENTIALS_DIR) {
                    continue;
                }
                out.push(problem(
                    format!("`{short}`: {} does not exist", path.display()),
                    format!("{}, or correct the path", how_to_make(&key, path)),
                ));
            }
            Err(e) => out.push(problem(
                format!("`{short}`: cannot inspect {}: {e}", path.display()),
                "run the check as the user the service runs as".into(),
            )),
            Ok(m) if !m.is_file() => out.push(problem(
                format!("`{short}`: {} is not a regular file", path.display()),
                "name the file itself, not a directory or device".into(),
            )),
            Ok(m) if m.permissions().mode() & 0o077 != 0 => out.push(problem(
                format!(
                    "`{short}`: {} is accessible by group or others (mode {:04o})",
                    path.display(),
                    m.permissions().mode() & 0o7777
                ),
                format!(
                    "run `chmod 600 {}` (and chown it to the service user)",
                    path.display()
                ),
            )),
            // vault reads these itself and refuses another user's file
            // (crypto::read_key_file); the SDK and libpq read the others.
            Ok(m)
                if ["identity", "passphrase_file", "drill.identity"].contains(&key.as_str())
                    && m.uid() != 0
                    && m.uid() != nix::unistd::geteuid().as_raw() =>
            {
                out.push(problem(
                    format!(
                        "`{short}`: {} belongs to user id {}, not to you (user id {}) or root",
                        path.display(),
                        m.uid(),
                        nix::unistd::geteuid().as_raw()
                    ),
                    "chown it to the user that runs vault (and run the check as that user)".into(),
                ))
            }
            Ok(_) => {}
        }
    }
    if let Some(prom) = &s.status.prometheus_file {
        prometheus_dir(s, prom, &mut out);
    }
    out
}

/// The Prometheus file is written atomically (a temporary file renamed in
/// its directory): the directory must exist; the file itself need not yet.
fn prometheus_dir(s: &Settings, prom: &Path, out: &mut Vec<Problem>) {
    let Some(dir) = prom.parent().filter(|d| !d.as_os_str().is_empty()) else {
        return;
    };
    let problem = |message: String, help: String| {
        Problem::new(&s.file, s.location("status.prometheus_file"), message).with_help(help)
    };
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => out.push(problem(
            format!("`prometheus_file`: {} is not a directory", dir.display()),
            "name a file inside node_exporter's textfile directory".into(),
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => out.push(problem(
            format!(
                "`prometheus_file`: the directory {} does not exist",
                dir.display()
            ),
            format!(
                "create it (`mkdir -p {}`), or name node_exporter's textfile directory \
                 (its --collector.textfile.directory)",
                dir.display()
            ),
        )),
        Err(e) => out.push(problem(
            format!("`prometheus_file`: cannot inspect {}: {e}", dir.display()),
            "run the check as the user the service runs as".into(),
        )),
    }
}

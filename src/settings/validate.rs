//! Checks on values that types alone cannot express: absolute paths, the
//! repository's form, passwords inside conninfo strings, limits, sources.
//! Pure: nothing here touches the file system.

use std::collections::HashSet;
use std::path::{Component, Path};

use super::schema::{Found, Spans};
use super::{BackupConfig, Settings};

/// Largest accepted `keep_*` count.
pub const MAX_KEEP: u32 = 100_000;

const PGPASS_HELP: &str = "put the password in a pgpass file (mode 0600) and name it with \
                           `passfile`; it becomes PGPASSFILE";

/// Every problem with the values of `s`; `spans` locates them.
pub fn validate(s: &Settings, spans: &Spans) -> Vec<Found> {
    let mut v = Checker {
        spans,
        out: Vec::new(),
    };
    if let Some(repo) = &s.repository
        && let Err((message, help)) = repository(repo)
    {
        v.err("repository", message, Some(help));
    }
    v.path(
        "identity",
        s.identity.as_deref(),
        "/etc/vault/writer.key",
        false,
    );
    v.path(
        "passphrase_file",
        s.passphrase_file.as_deref(),
        "/run/credentials/vault-backup.service/passphrase",
        false,
    );
    v.path(
        "cache_dir",
        s.cache_dir.as_deref(),
        "/var/cache/vault",
        true,
    );
    if let Some(h) = &s.host
        && (h.trim().is_empty() || h.chars().any(|c| c.is_whitespace() || c.is_control()))
    {
        v.err(
            "host",
            "`host` must be a non-empty name without spaces",
            Some("write e.g. \"db1\", or leave it out to record this machine's host name"),
        );
    }
    s3(&mut v, s);
    if let Some(b) = &s.backup {
        backup(&mut v, b);
    }
    retention(&mut v, s);
    drill(&mut v, s);
    v.path(
        "status.prometheus_file",
        s.status.prometheus_file.as_deref(),
        "/var/lib/prometheus/node-exporter/vault.prom",
        true,
    );
    v.out
}

struct Checker<'a> {
    spans: &'a Spans,
    out: Vec<Found>,
}

impl Checker<'_> {
    fn err(&mut self, at: &str, message: impl Into<String>, help: Option<&str>) {
        self.out.push(Found {
            span: self.spans.value(at).unwrap_or(0..0),
            message: message.into(),
            help: help.map(str::to_owned),
        });
    }

    /// An optional path must be absolute; `echo` shows the value (off for
    /// keys where a secret might have been written by mistake).
    fn path(&mut self, at: &str, p: Option<&Path>, example: &str, echo: bool) {
        let Some(p) = p else { return };
        let key = at.rsplit('.').next().unwrap_or(at);
        let key = key.split('[').next().unwrap_or(key);
        if p.as_os_str().is_empty() {
            self.err(
                at,
                format!("`{key}` is empty"),
                Some(&format!("write an absolute path, e.g. {example}")),
            );
        } else if !p.is_absolute() {
            let shown = if echo {
                format!(" (not {:?})", p.display().to_string())
            } else {
                String::new()
            };
            self.err(
                at,
                format!("`{key}` must be an absolute path{shown}: services run from /, so a relative path names the wrong file"),
                Some(&format!("write an absolute path, e.g. {example}")),
            );
        }
    }
}

/// Checks the repository string: a directory, `file:///path` or `s3://bucket[/prefix]`.
pub fn repository(repo: &str) -> Result<(), (String, &'static str)> {
    const HELP: &str =
        "write an absolute directory (/srv/vault), file:///srv/vault or s3://bucket/prefix";
    if repo.trim().is_empty() {
        return Err(("`repository` is empty".into(), HELP));
    }
    // `user:secret@` in a URL is a credential: say so, never echo it.
    let authority = repo
        .split_once("://")
        .map_or(repo, |(_, rest)| rest)
        .split('/')
        .next()
        .unwrap_or("");
    if authority.contains('@') {
        return Err((
            "`repository` carries credentials (user:secret@…): they never belong in the \
             repository; put the access key in the file `[s3] credentials_file` names"
                .into(),
            HELP,
        ));
    }
    if let Some(rest) = repo.strip_prefix("s3://") {
        let bucket = rest.split('/').next().unwrap_or("");
        let valid = (3..=63).contains(&bucket.len())
            && bucket
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
            && !bucket.starts_with(['-', '.'])
            && !bucket.ends_with(['-', '.']);
        if bucket.is_empty() {
            return Err(("`repository` names no S3 bucket".into(), HELP));
        }
        if !valid {
            return Err((
                format!(
                    "`repository`: {bucket:?} is not a valid S3 bucket name (3-63 lower-case letters, digits, `-` and `.`)"
                ),
                HELP,
            ));
        }
        return Ok(());
    }
    if let Some(rest) = repo.strip_prefix("file://") {
        return if rest.starts_with('/') {
            Ok(())
        } else {
            Err(("`repository`: a file:// URL needs an absolute path (three slashes: file:///srv/vault)".into(), HELP))
        };
    }
    if let Some((scheme, _)) = repo.split_once("://") {
        return Err((
            format!("`repository`: unsupported scheme `{scheme}://`"),
            HELP,
        ));
    }
    if !repo.starts_with('/') {
        return Err((
            format!("`repository` must be an absolute path (not {repo:?}): services run from /"),
            HELP,
        ));
    }
    Ok(())
}

/// Whether a libpq conninfo (key=value or URI) carries a password.
pub fn conninfo_has_password(conninfo: &str) -> bool {
    if let Ok(env) = crate::source::postgres::conninfo_env(conninfo)
        && env.iter().any(|(k, _)| k == "PGPASSWORD")
    {
        return true;
    }
    let lower = conninfo.to_ascii_lowercase();
    for scheme in ["postgresql://", "postgres://"] {
        if let Some(rest) = lower.trim().strip_prefix(scheme) {
            let authority = rest.split(['/', '?']).next().unwrap_or("");
            if let Some((userinfo, _)) = authority.rsplit_once('@')
                && userinfo.contains(':')
            {
                return true;
            }
        }
    }
    lower
        .match_indices("password")
        .any(|(i, w)| lower[i + w.len()..].trim_start().starts_with('='))
}

fn s3(v: &mut Checker<'_>, s: &Settings) {
    let c = &s.s3;
    if let Some(e) = &c.endpoint {
        let rest = e
            .strip_prefix("https://")
            .or_else(|| e.strip_prefix("http://"));
        match rest {
            None => v.err(
                "s3.endpoint",
                "`endpoint` must be an http:// or https:// URL",
                Some("write e.g. \"https://s3.example.net\""),
            ),
            Some(r) if r.split('/').next().unwrap_or("").contains('@') => v.err(
                "s3.endpoint",
                "`endpoint` carries credentials (user:secret@…); secrets never go in the configuration file",
                Some("put the AWS keys in a shared credentials file (mode 0600) and name it with `credentials_file`"),
            ),
            Some("") => {
                v.err("s3.endpoint", "`endpoint` names no host", None)
            }
            Some(_) => {}
        }
    }
    for (key, value) in [("region", &c.region), ("profile", &c.profile)] {
        if value.as_deref().is_some_and(|x| x.trim().is_empty()) {
            v.err(
                &format!("s3.{key}"),
                format!("`{key}` is empty"),
                Some("leave it out instead"),
            );
        }
    }
    if let Some(class) = &c.storage_class
        && (class.is_empty()
            || !class
                .chars()
                .all(|ch| ch.is_ascii_uppercase() || ch.is_ascii_digit() || ch == '_'))
    {
        v.err(
            "s3.storage_class",
            "`storage_class` must be an S3 storage class name",
            Some("write e.g. \"STANDARD\", \"STANDARD_IA\" or \"GLACIER_IR\""),
        );
    }
    v.path(
        "s3.credentials_file",
        c.credentials_file.as_deref(),
        "/run/credentials/vault-backup.service/aws",
        false,
    );
}

fn backup(v: &mut Checker<'_>, b: &BackupConfig) {
    if b.source_count() == 0 {
        let span = v.spans.key("backup").unwrap_or(0..0);
        v.out.push(Found {
            span,
            message: "[backup] has no source: nothing would be backed up".into(),
            help: Some(
                "add `paths = [\"/etc\"]`, a [[backup.command]] or a [[backup.postgres]]".into(),
            ),
        });
    }
    for (i, p) in b.paths.iter().enumerate() {
        v.path(&format!("backup.paths[{i}]"), Some(p), "/etc", true);
    }
    for (i, pat) in b.exclude.iter().enumerate() {
        if let Err(e) = globset::Glob::new(pat) {
            v.err(
                &format!("backup.exclude[{i}]"),
                format!("exclude pattern {pat:?} is not a valid glob: {}", e.kind()),
                Some("`*.tmp` matches a name anywhere; `/var/cache/**` matches a whole path"),
            );
        }
    }
    for (i, tag) in b.tags.iter().enumerate() {
        if tag.trim().is_empty() || tag.contains(',') || tag.chars().any(char::is_control) {
            v.err(
                &format!("backup.tags[{i}]"),
                "a tag must be non-empty, without commas or control characters",
                Some("write e.g. \"nightly\""),
            );
        }
    }
    for (i, pat) in b.keystores.iter().enumerate() {
        let at = format!("backup.keystores[{i}]");
        if !pat.starts_with('/') {
            v.err(
                &at,
                format!("keystore pattern {pat:?} must be absolute"),
                Some("write e.g. \"/etc/ssl/**/*.pem\""),
            );
        } else if let Err(e) = globset::Glob::new(pat) {
            v.err(
                &at,
                format!("keystore pattern {pat:?} is not a valid glob: {}", e.kind()),
                None,
            );
        }
    }
    let mut seen = HashSet::new();
    for (i, c) in b.command.iter().enumerate() {
        let at = format!("backup.command[{i}]");
        let rel = Path::new(&c.path);
        let clean = !c.path.is_empty()
            && !c.path.ends_with('/')
            && rel.components().all(|x| matches!(x, Component::Normal(_)));
        if !clean {
            v.err(
                &format!("{at}.path"),
                format!(
                    "`path` {:?} must be a relative path inside the snapshot, without `.` or `..`",
                    c.path
                ),
                Some("write e.g. \"ldap/data.ldif\""),
            );
        } else if !seen.insert(rel.to_owned()) {
            v.err(
                &format!("{at}.path"),
                format!(
                    "`path` {:?} is used by an earlier [[backup.command]]",
                    c.path
                ),
                Some("give every command its own path"),
            );
        }
        if c.run.trim().is_empty() {
            v.err(
                &format!("{at}.run"),
                "`run` is empty",
                Some("write the command, e.g. \"slapcat -n 1\""),
            );
        }
    }
    let conninfos: Vec<String> = b.postgres.iter().map(|p| p.conninfo.clone()).collect();
    let names: Vec<String> = b
        .postgres
        .iter()
        .map(|p| p.name.clone().unwrap_or_default())
        .collect();
    if let Err(e) = crate::source::postgres::source_names(&conninfos, &names) {
        let at = b
            .postgres
            .iter()
            .position(|p| {
                p.name
                    .as_deref()
                    .is_some_and(|n| crate::source::postgres::check_name(n).is_err())
            })
            .map_or("backup.postgres".to_owned(), |i| {
                format!("backup.postgres[{i}].name")
            });
        v.err(&at, e.to_string(), Some("name = \"app-replica\""));
    }
    for (i, pg) in b.postgres.iter().enumerate() {
        let at = format!("backup.postgres[{i}]");
        conninfo(v, &format!("{at}.conninfo"), "conninfo", &pg.conninfo, true);
        v.path(
            &format!("{at}.passfile"),
            pg.passfile.as_deref(),
            "/run/credentials/vault-backup.service/pgpass",
            false,
        );
    }
}

/// A conninfo must carry no password; `strict` also requires the form
/// `vault backup --postgres` understands.
fn conninfo(v: &mut Checker<'_>, at: &str, key: &str, text: &str, strict: bool) {
    if conninfo_has_password(text) {
        v.err(
            at,
            format!("`{key}` contains a password; secrets never go in the configuration file"),
            Some(PGPASS_HELP),
        );
    } else if text.trim().is_empty() {
        v.err(
            at,
            format!("`{key}` is empty"),
            Some("write e.g. \"dbname=app host=/run/postgresql\""),
        );
    } else if strict && let Err(e) = crate::source::postgres::conninfo_env(text) {
        v.err(
            at,
            format!("`{key}`: {e}"),
            Some(
                "write key=value settings, e.g. \"dbname=app host=/run/postgresql user=backup\", \
                 or a URI, e.g. \"postgresql://backup@db.example/app\"",
            ),
        );
    }
}

fn retention(v: &mut Checker<'_>, s: &Settings) {
    let r = &s.retention;
    let counts = r.counts();
    for (key, n) in &counts {
        if *n > MAX_KEEP {
            v.err(
                &format!("retention.{key}"),
                format!("`{key}` = {n} is more than {MAX_KEEP}"),
                Some("keep_* counts are numbers of snapshots or periods; use a smaller number"),
            );
        }
    }
    if !counts.is_empty() && counts.iter().all(|(_, n)| *n == 0) && r.keep_within.is_none() {
        let (first, _) = counts[0];
        v.err(
            &format!("retention.{first}"),
            "[retention] keeps nothing: every keep_* is 0, so forget would remove every snapshot",
            Some("keep at least one, e.g. `keep_last = 1`"),
        );
    }
}

fn drill(v: &mut Checker<'_>, s: &Settings) {
    let d = &s.drill;
    v.path(
        "drill.identity",
        d.identity.as_deref(),
        "/etc/vault/owner.key",
        false,
    );
    if let Some(p) = d.period_days
        && !(1..=3650).contains(&p)
    {
        v.err(
            "drill.period_days",
            format!("`period_days` = {p} is outside 1..=3650"),
            Some("write e.g. 30: every pack is re-read once a month"),
        );
    }
    if let Some(url) = &d.pg_url {
        // As strict as `--pg-url`: a value the drill cannot use would fail
        // every drill of every database, long after this check passed.
        conninfo(v, "drill.pg_url", "pg_url", url, true);
    }
    if let Some(u) = &d.user {
        let valid = u.len() <= 32
            && u.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && u.chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
        if !valid || u == "root" {
            v.err(
                "drill.user",
                format!("`user` = {u:?} is not an unprivileged user name"),
                Some("name a dedicated user for the scratch PostgreSQL cluster, e.g. \"vault-drill\""),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_forms() {
        for ok in [
            "/srv/vault",
            "file:///srv/vault",
            "s3://bucket",
            "s3://my.bucket-1/host1/x",
        ] {
            assert!(repository(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "  ",
            "srv/vault",
            "file://srv",
            "s3://",
            "s3:///x",
            "s3://Bucket/x",
            "sftp://h/x",
            "s3://ab",
        ] {
            assert!(repository(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn credentials_in_the_repository_url_are_named_but_never_echoed() {
        for repo in [
            "s3://AKIAEXAMPLE:hunter2@bucket/x",
            "s3://hunter2@bucket",
            "AKIAEXAMPLE:hunter2@host:/srv/vault",
        ] {
            let (message, _) = repository(repo).unwrap_err();
            assert!(message.contains("carries credentials"), "{message}");
            assert!(
                !message.contains("hunter2") && !message.contains("AKIAEXAMPLE"),
                "{message}"
            );
        }
        assert!(repository("/srv/vault@2026").is_ok());
    }

    #[test]
    fn passwords_in_conninfo_are_found() {
        assert!(conninfo_has_password("dbname=app password=hunter2"));
        assert!(conninfo_has_password("dbname=app password = 'x y'"));
        assert!(conninfo_has_password("dbname=app PASSWORD='unterminated"));
        assert!(conninfo_has_password("postgresql://u:hunter2@db/app"));
        assert!(conninfo_has_password("postgres://db/app?password=x"));
        assert!(!conninfo_has_password("dbname=app host=/run/postgresql"));
        assert!(!conninfo_has_password("postgresql://u@db/app"));
        assert!(!conninfo_has_password("dbname=app passfile=/run/pgpass"));
    }
}

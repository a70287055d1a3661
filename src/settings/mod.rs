//! The configuration file: one TOML file, `/etc/vault/vault.toml` by default.
//!
//! # Where settings come from
//!
//! Every setting can come from four places; the first that gives it wins:
//!
//! 1. a command-line flag (`-r`, `-i`, `--keep-daily`, …),
//! 2. a `VAULT_*` environment variable (`VAULT_REPO`, `VAULT_IDENTITY`,
//!    `VAULT_PASSPHRASE_FILE`, `VAULT_CACHE_DIR`, `VAULT_HOST`, …),
//! 3. this file,
//! 4. the built-in default.
//!
//! The file is found through `--config FILE`, else `VAULT_CONFIG` (which
//! must then name an existing file), else `/etc/vault/vault.toml` if it
//! exists; without any, vault runs on flags and environment alone
//! ([`Settings::load_for_cli`]).
//!
//! # Checks
//!
//! [`Settings::from_toml`] is pure: it parses and validates text and never
//! touches the file system. Every problem carries the file, line and column
//! of the offending key or value ([`Problem`]). Unknown keys are errors
//! (listing the allowed ones and suggesting a near miss); so is anything
//! that looks like a secret — a key named like a password, token or secret
//! key, a password in a PostgreSQL conninfo, an age secret key anywhere,
//! even in a comment. Secrets live in their own files, named here by
//! `identity`, `passphrase_file`, `[s3] credentials_file` and
//! `[[backup.postgres]] passfile`; no message ever repeats a secret.
//! [`Settings::check_files`] then looks at those files (exists, regular,
//! mode 0600 or stricter) without reading them: what `vault config check`
//! runs.
//!
//! The schema is documented, key by key, in `docs/vault.toml.example`.

mod error;
mod files;
mod schema;
mod validate;

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::format::duration;
pub use crate::format::duration::{format as format_duration, parse as parse_duration};
pub use error::{Location, Problem, SettingsError};
pub use validate::conninfo_has_password;

/// Where the configuration file is looked for when none is named.
pub const SYSTEM_PATH: &str = "/etc/vault/vault.toml";

/// Separates a message from its help inside serde's custom error strings.
const HELP_MARK: &str = "\nhelp: ";

/// A parsed and validated configuration file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Repository: an absolute directory path, `file:///path` or `s3://bucket[/prefix]`.
    pub repository: Option<String>,
    /// Identity file opening the repository (the writer key on backup hosts).
    pub identity: Option<PathBuf>,
    /// File holding the passphrase of a passphrase owner (as `VAULT_PASSPHRASE_FILE`).
    pub passphrase_file: Option<PathBuf>,
    /// Directory of the per-host file cache.
    pub cache_dir: Option<PathBuf>,
    /// Host name recorded in snapshots (default: this machine's).
    pub host: Option<String>,
    /// S3 connection settings (used when the repository is `s3://`).
    #[serde(default)]
    pub s3: S3Config,
    /// What `vault backup` backs up; `None` when the file has no `[backup]`.
    pub backup: Option<BackupConfig>,
    /// What `vault forget` keeps and whether it prunes.
    #[serde(default)]
    pub retention: RetentionConfig,
    /// What `vault drill` does.
    #[serde(default)]
    pub drill: DrillConfig,
    /// Thresholds and output of `vault status`.
    #[serde(default)]
    pub status: StatusConfig,
    /// The file these settings were read from.
    #[serde(skip)]
    pub file: PathBuf,
    /// Where each key and value is written (see [`Settings::location`]).
    #[serde(skip)]
    locations: BTreeMap<String, Location>,
}

/// `[s3]`: how to reach an S3 or S3-compatible store. Credentials never
/// appear here, only the file that holds them.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    /// Endpoint URL of an S3-compatible store (`https://…`); AWS when absent.
    pub endpoint: Option<String>,
    /// Region.
    pub region: Option<String>,
    /// Path-style addressing (most self-hosted stores need it).
    pub path_style: Option<bool>,
    /// Storage class of new objects (`STANDARD_IA`, …).
    pub storage_class: Option<String>,
    /// Profile in the AWS shared config and credentials files.
    pub profile: Option<String>,
    /// AWS shared credentials file holding the access key (mode 0600).
    pub credentials_file: Option<PathBuf>,
}

/// `[backup]`: the sources of `vault backup`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupConfig {
    /// Absolute paths to back up.
    #[serde(default)]
    pub paths: Vec<PathBuf>,
    /// Exclude patterns: without `/` they match a name anywhere, with `/` a whole path.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Tags recorded in every snapshot.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Absolute glob patterns of keystores and certificates whose expiry
    /// `vault status` watches. vault records the certificates of every
    /// keystore it backs up anyway; this list names the ones an operator
    /// wants watched by name (a pattern that matches nothing is worth a warning).
    #[serde(default)]
    pub keystores: Vec<String>,
    /// Commands whose standard output is stored as a file (`[[backup.command]]`).
    #[serde(default)]
    pub command: Vec<CommandConfig>,
    /// PostgreSQL databases dumped natively (`[[backup.postgres]]`).
    #[serde(default)]
    pub postgres: Vec<PostgresConfig>,
}

impl BackupConfig {
    /// How many sources there are (paths, commands and databases).
    pub fn source_count(&self) -> usize {
        self.paths.len() + self.command.len() + self.postgres.len()
    }
}

/// `[[backup.command]]`: one command source (`--from-command`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandConfig {
    /// Where the output appears in the snapshot (`--stdin-filename`), relative.
    pub path: String,
    /// The command, run with `sh -c`; its exit status decides success.
    pub run: String,
}

/// `[[backup.postgres]]`: one database dumped natively (`--postgres`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresConfig {
    /// libpq conninfo, without a password.
    pub conninfo: String,
    /// pgpass file holding the password; becomes `PGPASSFILE`.
    pub passfile: Option<PathBuf>,
    /// The source's name (`--postgres-name`): its dump is
    /// `postgres/<name>.dump` instead of the database's name.
    pub name: Option<String>,
}

/// `[retention]`: what `vault forget` keeps, per host and source.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    /// Keep the newest N snapshots.
    pub keep_last: Option<u32>,
    /// Keep the newest snapshot of each of the last N hours.
    pub keep_hourly: Option<u32>,
    /// Keep the newest snapshot of each of the last N days.
    pub keep_daily: Option<u32>,
    /// Keep the newest snapshot of each of the last N weeks.
    pub keep_weekly: Option<u32>,
    /// Keep the newest snapshot of each of the last N months.
    pub keep_monthly: Option<u32>,
    /// Keep the newest snapshot of each of the last N years.
    pub keep_yearly: Option<u32>,
    /// Keep every snapshot younger than this.
    #[serde(default, deserialize_with = "deserialize_duration_opt")]
    pub keep_within: Option<Duration>,
    /// Run prune after forget.
    pub prune: Option<bool>,
    /// Prune deletes only objects unreferenced for longer than this.
    #[serde(default, deserialize_with = "deserialize_duration_opt")]
    pub grace: Option<Duration>,
}

impl RetentionConfig {
    /// The `keep_*` counts that are set, by name.
    pub fn counts(&self) -> Vec<(&'static str, u32)> {
        [
            ("keep_last", self.keep_last),
            ("keep_hourly", self.keep_hourly),
            ("keep_daily", self.keep_daily),
            ("keep_weekly", self.keep_weekly),
            ("keep_monthly", self.keep_monthly),
            ("keep_yearly", self.keep_yearly),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect()
    }

    /// One line for humans: `last 3, daily 14, within 2d; prune (grace 24h)`.
    pub fn describe(&self) -> String {
        let mut parts: Vec<String> = self
            .counts()
            .iter()
            .map(|(k, v)| format!("{} {v}", k.trim_start_matches("keep_")))
            .collect();
        if let Some(d) = self.keep_within {
            parts.push(format!("within {}", duration::format(d)));
        }
        let mut s = if parts.is_empty() {
            "not set".to_owned()
        } else {
            parts.join(", ")
        };
        if self.prune == Some(true) {
            s.push_str("; prune after forget");
            if let Some(g) = self.grace {
                s.push_str(&format!(" (grace {})", duration::format(g)));
            }
        }
        s
    }
}

/// `[drill]`: what `vault drill` uses on the drill host.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DrillConfig {
    /// Owner identity file used by drills.
    pub identity: Option<PathBuf>,
    /// Re-read every pack once within this many days.
    pub period_days: Option<u32>,
    /// Also verify a randomly chosen older snapshot.
    pub random_older: Option<bool>,
    /// Load database dumps into this PostgreSQL server (conninfo, no password)
    /// instead of a throwaway cluster.
    pub pg_url: Option<String>,
    /// The unprivileged OS user the scratch PostgreSQL cluster runs as
    /// (`--drill-user`, default `vault-drill`).
    pub user: Option<String>,
    /// How long loading one database dump and counting its rows may take
    /// (`--db-load-timeout`, default 4h).
    #[serde(default, deserialize_with = "deserialize_duration_opt")]
    pub db_load_timeout: Option<Duration>,
}

/// `[status]`: when `vault status` complains, and where it writes metrics.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusConfig {
    /// Alert when the last backup of a source is older than this.
    #[serde(default, deserialize_with = "deserialize_duration_opt")]
    pub max_backup_age: Option<Duration>,
    /// Alert when the last passed drill is older than this.
    #[serde(default, deserialize_with = "deserialize_duration_opt")]
    pub max_drill_age: Option<Duration>,
    /// Warn about certificates that expire within this.
    #[serde(default, deserialize_with = "deserialize_duration_opt")]
    pub certificate_warning: Option<Duration>,
    /// Prometheus textfile-collector file to write.
    pub prometheus_file: Option<PathBuf>,
}

impl Settings {
    /// Parses and validates `text`, the content of `file` (named in
    /// messages only; nothing is read). Returns every problem found by the
    /// stage that failed: secrets and unknown keys first, then types, then values.
    pub fn from_toml(text: &str, file: &Path) -> Result<Settings, SettingsError> {
        match Settings::from_toml_lenient(text, file) {
            (Some(s), problems) if problems.is_empty() => Ok(s),
            (_, problems) => Err(SettingsError::Invalid(problems)),
        }
    }

    /// Like [`Settings::from_toml`], but also returns what could be read
    /// when there are problems: the settings with every key a problem was
    /// found in set aside (`None` when the text is not TOML, holds a secret
    /// or has a value of the wrong type that could not be set aside), so
    /// that `vault config check` can look at the files it names in the same
    /// run. Never a problem-free `None`.
    pub fn from_toml_lenient(text: &str, file: &Path) -> (Option<Settings>, Vec<Problem>) {
        let problem = |f: schema::Found| {
            let mut p = Problem::new(file, Some(Location::of_span(text, &f.span)), f.message);
            p.help = f.help;
            p
        };
        let invalid = |mut found: Vec<schema::Found>| -> Vec<Problem> {
            found.sort_by_key(|f| f.span.start);
            found.into_iter().map(problem).collect()
        };
        let mut found = schema::age_secrets(text);
        let root = match toml::de::DeTable::parse(text) {
            Ok(root) => root,
            Err(e) => {
                found.push(from_toml_error(&e, "TOML syntax error: "));
                return (None, invalid(found));
            }
        };
        let (spans, walked) = schema::walk(root.get_ref());
        if !found.is_empty() {
            // An age secret somewhere: stop here, so that no later message
            // can repeat any part of it.
            found.extend(walked);
            return (None, invalid(found));
        }
        found.extend(walked);
        let converted: Result<Settings, toml::de::Error> = if spans.dropped.is_empty() {
            toml::from_str(text)
        } else {
            // Convert what is left once the keys already reported are set
            // aside, so that their neighbours' values are checked too.
            toml::from_str::<toml::Table>(text).and_then(|mut t| {
                for path in &spans.dropped {
                    remove_path(&mut t, path);
                }
                toml::Value::Table(t).try_into()
            })
        };
        let mut settings = match converted {
            Ok(s) => s,
            Err(_) if !found.is_empty() => return (None, invalid(found)),
            Err(e) => {
                // Name the key whose value has the wrong type.
                let key = e.span().and_then(|at| {
                    spans
                        .values
                        .iter()
                        .find(|(_, s)| **s == at)
                        .map(|(k, _)| format!("`{k}`: "))
                });
                return (
                    None,
                    invalid(vec![from_toml_error(&e, &key.unwrap_or_default())]),
                );
            }
        };
        // A table's own findings (`[backup] has no source`) may only say
        // that one of its keys was set aside above: leave those out.
        let parents: Vec<Range<usize>> = spans
            .dropped
            .iter()
            .flat_map(|d| {
                d.match_indices('.')
                    .map(|(i, _)| &d[..i])
                    .collect::<Vec<_>>()
            })
            .filter_map(|p| spans.key(p))
            .collect();
        found.extend(
            validate::validate(&settings, &spans)
                .into_iter()
                .filter(|f| !parents.contains(&f.span)),
        );
        settings.file = file.to_owned();
        settings.locations = spans
            .keys
            .iter()
            .chain(spans.values.iter().filter(|(k, _)| k.ends_with(']')))
            .map(|(k, span)| (k.clone(), Location::of_span(text, span)))
            .collect();
        (Some(settings), invalid(found))
    }

    /// Reads and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Settings, SettingsError> {
        Settings::from_toml(&Settings::read_text(path)?, path)
    }

    /// Reads the file at `path` for `vault config check`: what could be
    /// read of it (see [`Settings::from_toml_lenient`]) and every problem.
    pub fn load_lenient(path: &Path) -> Result<(Option<Settings>, Vec<Problem>), SettingsError> {
        Ok(Settings::from_toml_lenient(
            &Settings::read_text(path)?,
            path,
        ))
    }

    /// The text of the file at `path` (UTF-8, or an error naming it).
    fn read_text(path: &Path) -> Result<String, SettingsError> {
        let read_err = |error| SettingsError::Read {
            path: path.to_owned(),
            error,
        };
        let bytes = std::fs::read(path).map_err(read_err)?;
        let text = String::from_utf8(bytes).map_err(|_| {
            read_err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "not UTF-8 text",
            ))
        })?;
        Ok(text)
    }

    /// The file the CLI should read: `explicit` (from `--config` or
    /// `VAULT_CONFIG`, which must then exist: [`Settings::load`] reports
    /// it), else [`default_path`].
    pub fn locate(explicit: Option<&Path>) -> Option<PathBuf> {
        explicit.map(Path::to_owned).or_else(default_path)
    }

    /// What every command calls: the settings of the located file, or
    /// `None` when there is no file (flags and environment only). A named
    /// file that is missing or invalid is an error.
    pub fn load_for_cli(explicit: Option<&Path>) -> Result<Option<Settings>, SettingsError> {
        Settings::locate(explicit)
            .map(|p| Settings::load(&p))
            .transpose()
    }

    /// Where the key at dotted `path` (`retention.keep_daily`,
    /// `backup.postgres[0].passfile`) is written, for messages that point
    /// back into the file.
    pub fn location(&self, path: &str) -> Option<Location> {
        self.locations.get(path).copied()
    }

    /// Checks the key and secret files the settings name: each must exist,
    /// be a regular file and not be accessible by group or others. Nothing
    /// is read. Files under `/run/credentials/` exist only while their
    /// systemd unit runs and are skipped when absent.
    pub fn check_files(&self) -> Vec<Problem> {
        files::check(self)
    }
}

/// The default configuration file when none is named (the CLI names one
/// from `--config` or `VAULT_CONFIG`): `/etc/vault/vault.toml` if it
/// exists, else none.
pub fn default_path() -> Option<PathBuf> {
    default_path_in(Path::new(SYSTEM_PATH))
}

fn default_path_in(system: &Path) -> Option<PathBuf> {
    system.exists().then(|| system.to_owned())
}

/// Removes the key at dotted `path` (`retention.keep_daily`,
/// `backup.postgres[0].passfile`) from `t`; an element path removes its
/// whole list. Paths that are not there are ignored.
fn remove_path(t: &mut toml::Table, path: &str) {
    fn split(seg: &str) -> (&str, Option<usize>) {
        match seg.strip_suffix(']').and_then(|s| s.rsplit_once('[')) {
            Some((name, i)) => (name, i.parse().ok()),
            None => (seg, None),
        }
    }
    let mut segs: Vec<&str> = path.split('.').collect();
    let Some(last) = segs.pop() else {
        return;
    };
    let mut cur = t;
    for seg in segs {
        let (name, index) = split(seg);
        let next = match (cur.get_mut(name), index) {
            (Some(toml::Value::Array(a)), Some(i)) => a.get_mut(i),
            (Some(v), None) => Some(v),
            _ => None,
        };
        let Some(toml::Value::Table(next)) = next else {
            return;
        };
        cur = next;
    }
    cur.remove(split(last).0);
}

/// A toml error as a located message (its help split off), without the
/// source excerpt toml would print (it could show a secret).
fn from_toml_error(e: &toml::de::Error, prefix: &str) -> schema::Found {
    let raw = e.message().trim();
    let (message, help) = match raw.split_once(HELP_MARK) {
        Some((m, h)) => (m, Some(h.to_owned())),
        None => (raw, None),
    };
    let message = message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    schema::Found {
        span: e.span().unwrap_or(0..0),
        message: format!("{prefix}{message}"),
        help,
    }
}

/// Serde adapter for `Option<Duration>` fields written as duration strings.
fn deserialize_duration_opt<'de, D>(de: D) -> Result<Option<Duration>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let text = String::deserialize(de)?;
    duration::parse(&text)
        .map(Some)
        .map_err(|e| serde::de::Error::custom(format!("{e}{}{}", HELP_MARK, duration::HELP)))
}

#[cfg(test)]
mod tests;

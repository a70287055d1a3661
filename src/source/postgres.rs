//! The native PostgreSQL source.
//!
//! In one `REPEATABLE READ` transaction vault exports a snapshot
//! (`pg_export_snapshot()`), records the server version and the exact row
//! count of every table, and keeps the transaction open while
//! `pg_dump --snapshot=<id>` dumps that same snapshot: the dump and the
//! counts see the same data, whatever writes run meanwhile. Connection
//! settings reach `psql`, `pg_dump` and `pg_dumpall` through `PG*`
//! environment variables, never through their command lines.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use super::command::CommandSource;

const SENTINEL: &str = "__vault_end_of_reply__";

/// psql script printing `schema.table|count` for every user table (names
/// as `format('%I.%I')` quotes them). Used at backup time inside the dump's
/// snapshot, and by drills on the restored database.
pub const COUNT_ROWS_SQL: &str = "SELECT format('SELECT %L || ''|'' || count(*) FROM %s', t, t) FROM (\n\
   SELECT format('%I.%I', n.nspname, c.relname) AS t FROM pg_class c\n\
   JOIN pg_namespace n ON n.oid = c.relnamespace\n\
   WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')\n\
     AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'\n\
   ORDER BY 1) tables \\gexec\n";

/// psql flags for scripted use: no psqlrc, quiet, unaligned, tuples only,
/// stop at the first error, never prompt for a password.
pub const PSQL_ARGS: [&str; 7] = [
    "-X",
    "-q",
    "-A",
    "-t",
    "-v",
    "ON_ERROR_STOP=1",
    "--no-password",
];

/// A row count line that is not `schema.table|count`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unexpected count row {0:?}")]
pub struct BadCountRow(pub String);

/// Parses `schema.table|count` lines.
pub fn parse_counts(rows: &[String]) -> Result<BTreeMap<String, u64>, BadCountRow> {
    let mut out = BTreeMap::new();
    for row in rows.iter().filter(|r| !r.is_empty()) {
        let bad = || BadCountRow(row.clone());
        let (table, count) = row.rsplit_once('|').ok_or_else(bad)?;
        let count = count.parse().map_err(|_| bad())?;
        out.insert(table.to_owned(), count);
    }
    Ok(out)
}

/// Why a conninfo string cannot be used ([`conninfo_env`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConninfoError {
    /// Not `key=value` pairs.
    #[error("conninfo: expected key=value pairs")]
    NotKeyValue,
    /// A quoted value has no closing quote.
    #[error("conninfo: unterminated quote after {0}=")]
    UnterminatedQuote(String),
    /// A setting libpq has that vault does not pass on.
    #[error("conninfo: unsupported setting {0:?}")]
    Unsupported(String),
    /// A URI's IPv6 host has no closing bracket.
    #[error("conninfo: unterminated [ in the URI's host")]
    UnterminatedBracket,
    /// A URI's query holds something other than `key=value`.
    #[error("conninfo: expected key=value in the URI's query, got {0:?}")]
    QueryNotKeyValue(String),
    /// A `%` not followed by two hex digits.
    #[error("conninfo: a bad %-escape in the URI")]
    BadEscape,
    /// The decoded URI is not UTF-8.
    #[error("conninfo: the URI is not UTF-8 once decoded")]
    NotUtf8,
}

/// A PostgreSQL source name [`check_name`] refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "PostgreSQL source name {0:?}: use 1 to 64 letters, digits, `.`, `_` and `-`, \
     not starting with `.` or `-` (e.g. \"app-replica\")"
)]
pub struct BadSourceName(pub String);

/// Why [`source_names`] refuses the names given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceNamesError {
    /// More names than sources.
    #[error(
        "{names} PostgreSQL source names for {sources} --postgres sources: give one name per \
         source, in the same order (an empty name keeps the database's name)"
    )]
    TooMany {
        /// How many names were given.
        names: usize,
        /// How many sources were given.
        sources: usize,
    },
    /// A name is not a valid source name.
    #[error(transparent)]
    BadName(#[from] BadSourceName),
    /// Two sources would be stored under one name.
    #[error(
        "two PostgreSQL sources would both be stored as postgres/{name}.dump: {first} and \
         {second}; give them different names (--postgres-name, or name = \"…\" in \
         [[backup.postgres]])"
    )]
    Duplicate {
        /// The name both would have.
        name: String,
        /// The first source's conninfo, without its password.
        first: String,
        /// The second source's conninfo, without its password.
        second: String,
    },
}

/// Checks a PostgreSQL source name (`--postgres-name`, `name =` in
/// `[[backup.postgres]]`): 1 to 64 letters, digits, `.`, `_` and `-`, not
/// starting with `.` or `-`; it becomes the file name of the dump.
pub fn check_name(name: &str) -> Result<(), BadSourceName> {
    let ok = (1..=64).contains(&name.len())
        && !name.starts_with(['.', '-'])
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(BadSourceName(name.to_owned()))
    }
}

/// The names the `conninfos` go by in a snapshot (`names[i]`, empty or
/// missing: the conninfo's `dbname`), refusing a bad name, more names than
/// sources, and two sources of one name (naming both, without passwords).
/// A source whose conninfo names no database is left out of the duplicate
/// check (its name is known once connected).
pub fn source_names(
    conninfos: &[String],
    names: &[String],
) -> Result<Vec<Option<String>>, SourceNamesError> {
    if names.len() > conninfos.len() {
        return Err(SourceNamesError::TooMany {
            names: names.len(),
            sources: conninfos.len(),
        });
    }
    let mut out = Vec::with_capacity(conninfos.len());
    let mut seen: BTreeMap<String, &str> = BTreeMap::new();
    for (i, conninfo) in conninfos.iter().enumerate() {
        let given = names.get(i).filter(|n| !n.is_empty()).cloned();
        if let Some(n) = &given {
            check_name(n)?;
        }
        let effective = given.clone().or_else(|| {
            conninfo_env(conninfo)
                .ok()
                .and_then(|env| env.into_iter().find(|(k, _)| k == "PGDATABASE"))
                .map(|(_, v)| v)
        });
        if let Some(name) = effective
            && let Some(first) = seen.insert(name.clone(), conninfo)
        {
            return Err(SourceNamesError::Duplicate {
                first: redacted(first),
                second: redacted(conninfo),
                name,
            });
        }
        out.push(given);
    }
    Ok(out)
}

/// Maps a libpq conninfo string (`dbname=app host=/run/postgresql`) to the
/// `PG*` environment variables that carry the same settings.
pub fn conninfo_env(conninfo: &str) -> Result<Vec<(String, String)>, ConninfoError> {
    let trimmed = conninfo.trim();
    if let Some(uri) = trimmed
        .strip_prefix("postgresql://")
        .or_else(|| trimmed.strip_prefix("postgres://"))
    {
        return uri_env(uri);
    }
    let mut out = Vec::new();
    let mut rest = trimmed;
    while !rest.is_empty() {
        let eq = rest.find('=').ok_or(ConninfoError::NotKeyValue)?;
        let key = rest[..eq].trim().to_owned();
        rest = rest[eq + 1..].trim_start();
        let value;
        if let Some(quoted) = rest.strip_prefix('\'') {
            let mut v = String::new();
            let mut chars = quoted.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            v.push(n);
                        }
                    }
                    '\'' => {
                        end = Some(i + 1);
                        break;
                    }
                    c => v.push(c),
                }
            }
            let end = end.ok_or_else(|| ConninfoError::UnterminatedQuote(key.clone()))?;
            value = v;
            rest = quoted[end..].trim_start();
        } else {
            let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
            value = rest[..end].to_owned();
            rest = rest[end..].trim_start();
        }
        out.push((setting_var(&key)?.to_owned(), value));
    }
    Ok(out)
}

/// The `PG*` variable of a conninfo setting.
fn setting_var(key: &str) -> Result<&'static str, ConninfoError> {
    Ok(match key {
        "host" => "PGHOST",
        "hostaddr" => "PGHOSTADDR",
        "port" => "PGPORT",
        "dbname" => "PGDATABASE",
        "user" => "PGUSER",
        "password" => "PGPASSWORD",
        "passfile" => "PGPASSFILE",
        "service" => "PGSERVICE",
        "options" => "PGOPTIONS",
        "application_name" => "PGAPPNAME",
        "connect_timeout" => "PGCONNECT_TIMEOUT",
        "sslmode" => "PGSSLMODE",
        "sslrootcert" => "PGSSLROOTCERT",
        "sslcert" => "PGSSLCERT",
        "sslkey" => "PGSSLKEY",
        "target_session_attrs" => "PGTARGETSESSIONATTRS",
        other => return Err(ConninfoError::Unsupported(other.to_owned())),
    })
}

/// A `postgresql://[user[:password]@][host][:port][/dbname][?key=value&…]`
/// URI as `PG*` variables (percent-escapes decoded, so a socket directory
/// is written `%2Frun%2Fpostgresql`). A password in it becomes PGPASSWORD,
/// which callers refuse like `password=`.
fn uri_env(uri: &str) -> Result<Vec<(String, String)>, ConninfoError> {
    let (main, query) = uri.split_once('?').unwrap_or((uri, ""));
    let (authority, dbname) = main.split_once('/').unwrap_or((main, ""));
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let mut out = Vec::new();
    let mut push = |key: &str, raw: &str| -> Result<(), ConninfoError> {
        if !raw.is_empty() {
            out.push((setting_var(key)?.to_owned(), percent_decode(raw)?));
        }
        Ok(())
    };
    if let Some(u) = userinfo {
        let (user, password) = u.split_once(':').unwrap_or((u, ""));
        push("user", user)?;
        push("password", password)?;
    }
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (h, rest) = v6
            .split_once(']')
            .ok_or(ConninfoError::UnterminatedBracket)?;
        (h, rest.strip_prefix(':').unwrap_or(""))
    } else {
        hostport.split_once(':').unwrap_or((hostport, ""))
    };
    push("host", host)?;
    push("port", port)?;
    push("dbname", dbname)?;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').ok_or_else(|| {
            ConninfoError::QueryNotKeyValue(pair.split('=').next().unwrap_or("").to_owned())
        })?;
        push(&percent_decode(k)?, v)?;
    }
    Ok(out)
}

/// Decodes `%XX` escapes.
fn percent_decode(text: &str) -> Result<String, ConninfoError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or(ConninfoError::BadEscape)?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| ConninfoError::NotUtf8)
}

/// The conninfo with any password removed, for messages and the snapshot.
pub fn redacted(conninfo: &str) -> String {
    match conninfo_env(conninfo) {
        Ok(env) => env
            .iter()
            .filter(|(k, _)| k != "PGPASSWORD")
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" "),
        Err(_) => "<unparsable conninfo>".into(),
    }
}

/// What a dump's details say under `globals` when the backup role could not
/// dump roles and tablespaces; `vault status` shows it.
pub const GLOBALS_SKIPPED: &str = "not dumped: the role is not a superuser, so roles and \
     tablespaces are not in this snapshot (back up as a superuser, or keep `pg_dumpall \
     --globals-only` elsewhere)";

/// An open `REPEATABLE READ` transaction holding an exported snapshot.
pub struct PgSnapshot {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    env: Vec<(String, String)>,
    /// The exported snapshot id, for `pg_dump --snapshot`.
    pub snapshot_id: String,
    /// `SHOW server_version`.
    pub server_version: String,
    /// The database connected to.
    pub database: String,
    /// The source's name: its dump is `postgres/<name>.dump` (the database
    /// name unless the operator gave one, [`PgSnapshot::named`]).
    pub name: String,
    /// Whether the connected role may dump roles and tablespaces.
    pub superuser: bool,
    /// Exact row count of every table, by `schema.table`.
    pub counts: BTreeMap<String, u64>,
}

/// Why [`PgSnapshot::begin`] could not open a snapshot of a database.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The conninfo cannot be used.
    #[error(transparent)]
    Conninfo(#[from] ConninfoError),
    /// psql could not be started.
    #[error("cannot run psql: {0}")]
    Spawn(std::io::Error),
    /// psql stopped, with this status and standard error.
    #[error("psql failed ({status}){}", psql_stderr(stderr))]
    Failed {
        /// How psql ended.
        status: std::process::ExitStatus,
        /// Its standard error, trimmed.
        stderr: String,
    },
    /// psql stopped and could not be waited for.
    #[error("psql failed: {0}")]
    Wait(std::io::Error),
    /// The server's reply to the opening queries is not what they ask for.
    #[error("unexpected reply from the server: {0:?}")]
    UnexpectedReply(Vec<String>),
    /// A row count line is malformed.
    #[error(transparent)]
    Counts(#[from] BadCountRow),
}

/// `: STDERR`, or nothing when psql said nothing.
fn psql_stderr(stderr: &str) -> String {
    if stderr.is_empty() {
        String::new()
    } else {
        format!(": {stderr}")
    }
}

impl PgSnapshot {
    /// Connects, starts the transaction, exports the snapshot and counts rows.
    pub fn begin(conninfo: &str) -> Result<PgSnapshot, SnapshotError> {
        let env = conninfo_env(conninfo)?;
        let mut child = Command::new("psql")
            .args(PSQL_ARGS)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(SnapshotError::Spawn)?;
        let stdin = child.stdin.take().expect("piped");
        let stdout = BufReader::new(child.stdout.take().expect("piped"));
        let mut s = PgSnapshot {
            child,
            stdin,
            stdout,
            env,
            snapshot_id: String::new(),
            server_version: String::new(),
            database: String::new(),
            name: String::new(),
            superuser: false,
            counts: BTreeMap::new(),
        };
        let head = s.ask(
            "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY;\n\
             SELECT pg_export_snapshot();\n\
             SHOW server_version;\n\
             SELECT current_database();\n\
             SELECT rolsuper FROM pg_roles WHERE rolname = current_user;\n",
        )?;
        let [snapshot, version, database, superuser] = head.as_slice() else {
            return Err(SnapshotError::UnexpectedReply(head));
        };
        s.snapshot_id = snapshot.clone();
        s.server_version = version.clone();
        s.database = database.clone();
        s.name = database.clone();
        s.superuser = superuser == "t";
        let rows = s.ask(COUNT_ROWS_SQL)?;
        s.counts = parse_counts(&rows)?;
        Ok(s)
    }

    /// Sends SQL, then a sentinel; returns the non-empty lines before it.
    fn ask(&mut self, sql: &str) -> Result<Vec<String>, SnapshotError> {
        let sent = writeln!(self.stdin, "{sql}\\echo {SENTINEL}").and_then(|_| self.stdin.flush());
        if sent.is_err() {
            return Err(self.failure());
        }
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            match self.stdout.read_line(&mut line) {
                Ok(0) | Err(_) => return Err(self.failure()),
                Ok(_) => {}
            }
            let line = line.trim_end_matches(['\r', '\n']).to_owned();
            if line == SENTINEL {
                return Ok(lines);
            }
            if !line.is_empty() {
                lines.push(line);
            }
        }
    }

    /// psql stopped: its exit status and standard error say why.
    fn failure(&mut self) -> SnapshotError {
        let _ = self.child.kill();
        let out = self.child.wait();
        let mut err = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut e, &mut err);
        }
        match out {
            Ok(status) => SnapshotError::Failed {
                status,
                stderr: err.trim().to_owned(),
            },
            Err(e) => SnapshotError::Wait(e),
        }
    }

    /// Names the source `name` (dump `postgres/<name>.dump`) instead of
    /// its database's name; `None` keeps the database's name.
    pub fn named(mut self, name: Option<&str>) -> Self {
        if let Some(n) = name {
            self.name = n.to_owned();
        }
        self
    }

    /// The dump of this snapshot as a command source (`postgres/<db>.dump`,
    /// custom format, uncompressed so that unchanged rows dedupe).
    pub fn dump_source(&self) -> CommandSource {
        let argv: Vec<String> = [
            "pg_dump",
            "--format=custom",
            "--compress=0",
            "--no-password",
            &format!("--snapshot={}", self.snapshot_id),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let details = serde_json::json!({
            "globals": if self.superuser { "dumped" } else { GLOBALS_SKIPPED },
            "database": self.database,
            "server_version": self.server_version,
            "snapshot": self.snapshot_id,
            "format": "custom",
            "row_counts": self.counts,
        });
        CommandSource {
            command: argv.join(" "),
            filename: format!("postgres/{}.dump", self.name),
            argv: Some(argv),
            env: self.env.clone(),
            kind: "postgres".into(),
            details: Some(details),
        }
    }

    /// Roles and tablespaces (`pg_dumpall --globals-only`), when the role
    /// may read them (a superuser); otherwise the dump's details say
    /// [`GLOBALS_SKIPPED`] and the backup warns.
    pub fn globals_source(&self) -> Option<CommandSource> {
        if !self.superuser {
            return None;
        }
        let argv: Vec<String> = [
            "pg_dumpall",
            "--globals-only",
            "--no-password",
            "-l",
            &self.database,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        Some(CommandSource {
            command: argv.join(" "),
            filename: format!("postgres/{}.globals.sql", self.name),
            argv: Some(argv),
            env: self.env.clone(),
            kind: "postgres-globals".into(),
            details: Some(serde_json::json!({ "server_version": self.server_version })),
        })
    }

    /// Ends the transaction (after the dump has finished).
    pub fn finish(mut self) {
        let _ = self.stdin.write_all(b"COMMIT;\n\\q\n");
        let _ = self.stdin.flush();
        drop(self.stdin);
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conninfo_maps_to_environment_and_redacts_passwords() {
        let env = conninfo_env("dbname=app host=/run/postgresql password='s3 cr\\'et' port=5433")
            .unwrap();
        assert!(env.contains(&("PGDATABASE".into(), "app".into())));
        assert!(env.contains(&("PGPASSWORD".into(), "s3 cr'et".into())));
        assert!(env.contains(&("PGPORT".into(), "5433".into())));
        let shown = redacted("dbname=app password=hunter2");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert_eq!(
            conninfo_env("dbname=app bogus=1"),
            Err(ConninfoError::Unsupported("bogus".into()))
        );
        let uri = conninfo_env("postgresql://app_ro@%2Frun%2Fpostgresql:5433/app?sslmode=disable")
            .unwrap();
        assert_eq!(
            uri,
            [
                ("PGUSER", "app_ro"),
                ("PGHOST", "/run/postgresql"),
                ("PGPORT", "5433"),
                ("PGDATABASE", "app"),
                ("PGSSLMODE", "disable"),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
        );
        let v6 = conninfo_env("postgres://[::1]:6000/db").unwrap();
        assert!(v6.contains(&("PGHOST".into(), "::1".into())));
        assert!(v6.contains(&("PGPORT".into(), "6000".into())));
        let pw = conninfo_env("postgresql://u:s3cr%40t@db/app").unwrap();
        assert!(pw.contains(&("PGPASSWORD".into(), "s3cr@t".into())));
        assert!(!redacted("postgresql://u:s3cr%40t@db/app").contains("s3cr"));
        assert!(conninfo_env("postgresql://db/app?bogus=1").is_err());
        assert!(conninfo_env("postgresql://db/app?sslmode").is_err());
        assert!(conninfo_env("postgresql://db/a%zzp").is_err());
        assert_eq!(
            conninfo_env("dbname='open"),
            Err(ConninfoError::UnterminatedQuote("dbname".into()))
        );
        assert_eq!(
            conninfo_env("postgresql://db/a%zzp")
                .unwrap_err()
                .to_string(),
            "conninfo: a bad %-escape in the URI"
        );
    }

    #[test]
    fn source_names_refuse_duplicates_and_bad_names() {
        let c = |s: &str| s.to_owned();
        let two = [c("host=/a dbname=app"), c("host=/b dbname=app password=x")];
        let e = source_names(&two, &[]).unwrap_err().to_string();
        assert!(
            e.contains("postgres/app.dump") && e.contains("=/a ") && e.contains("=/b "),
            "{e}"
        );
        assert!(!e.contains("=x"), "never a password: {e}");
        assert_eq!(
            source_names(&two, &[c(""), c("app-replica")]).unwrap(),
            [None, Some(c("app-replica"))]
        );
        // A name that collides with another source's database name.
        assert!(source_names(&two, &[c("app")]).is_err());
        for bad in ["", ".hidden", "-x", "a/b", "..", "é", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_name("app_2.replica-1").is_ok());
        assert!(source_names(&two[..1], &[c("a"), c("b")]).is_err());
        // No dbname: left to the server, not a duplicate yet.
        assert!(source_names(&[c("host=/a"), c("host=/b")], &[]).is_ok());
        assert_eq!(
            check_name("-x").unwrap_err().to_string(),
            "PostgreSQL source name \"-x\": use 1 to 64 letters, digits, `.`, `_` and `-`, \
             not starting with `.` or `-` (e.g. \"app-replica\")"
        );
        assert_eq!(
            source_names(&two[..1], &[c("a"), c("b")])
                .unwrap_err()
                .to_string(),
            "2 PostgreSQL source names for 1 --postgres sources: give one name per source, \
             in the same order (an empty name keeps the database's name)"
        );
        assert_eq!(
            e,
            "two PostgreSQL sources would both be stored as postgres/app.dump: PGHOST=/a \
             PGDATABASE=app and PGHOST=/b PGDATABASE=app; give them different names (--postgres-name, or \
             name = \"…\" in [[backup.postgres]])"
        );
    }
}

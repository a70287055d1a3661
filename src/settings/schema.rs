//! The shape of the configuration file, checked on the parsed TOML tree
//! before any value is converted: unknown keys (with the allowed ones and a
//! near miss), keys that look like secrets, and age secret keys anywhere in
//! the text. This runs first so that no later message can echo a secret.
//!
//! The walk also records where every key and value is written, so that the
//! checks after deserialization can point at the offending line and column.

use std::collections::BTreeMap;
use std::ops::Range;

use toml::de::{DeTable, DeValue};

/// Allowed keys of each table, by schema name (`backup.command` covers
/// every `[[backup.command]]`).
pub const SECTIONS: &[(&str, &[&str])] = &[
    (
        "",
        &[
            "repository",
            "identity",
            "passphrase_file",
            "cache_dir",
            "host",
            "s3",
            "backup",
            "retention",
            "drill",
            "status",
        ],
    ),
    (
        "s3",
        &[
            "endpoint",
            "region",
            "path_style",
            "storage_class",
            "profile",
            "credentials_file",
        ],
    ),
    (
        "backup",
        &[
            "paths",
            "exclude",
            "tags",
            "keystores",
            "command",
            "postgres",
        ],
    ),
    ("backup.command", &["path", "run"]),
    ("backup.postgres", &["conninfo", "passfile", "name"]),
    (
        "retention",
        &[
            "keep_last",
            "keep_hourly",
            "keep_daily",
            "keep_weekly",
            "keep_monthly",
            "keep_yearly",
            "keep_within",
            "prune",
            "grace",
        ],
    ),
    (
        "drill",
        &["identity", "period_days", "random_older", "pg_url", "user"],
    ),
    (
        "status",
        &[
            "max_backup_age",
            "max_drill_age",
            "certificate_warning",
            "prometheus_file",
        ],
    ),
];

/// Parts of key names that mark a secret value.
const SECRET_WORDS: &[&str] = &[
    "password",
    "passwd",
    "secret",
    "token",
    "passphrase",
    "access_key",
    "private_key",
    "api_key",
];

/// The marker that begins every age X25519 secret key.
const AGE_SECRET: &str = "AGE-SECRET-KEY-";

/// A problem found by the walk: where (a byte span), what, and what instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// Where in the text.
    pub span: Range<usize>,
    /// What is wrong.
    pub message: String,
    /// What to write instead.
    pub help: Option<String>,
}

/// Where each key and value is written, by dotted path
/// (`retention.keep_daily`, `backup.paths[1]`, `backup.postgres[0].passfile`).
#[derive(Debug, Clone, Default)]
pub struct Spans {
    /// Span of each key as written.
    pub keys: BTreeMap<String, Range<usize>>,
    /// Span of each value (array elements included).
    pub values: BTreeMap<String, Range<usize>>,
    /// Keys already reported (unknown, secret-looking or of the wrong
    /// type): left out when the rest is converted, so that one run reports
    /// every problem and no later message repeats their values.
    pub dropped: Vec<String>,
}

impl Spans {
    /// The span of the value at `path`, else of its key, else of the
    /// nearest enclosing value.
    pub fn value(&self, path: &str) -> Option<Range<usize>> {
        self.values
            .get(path)
            .or_else(|| self.keys.get(path))
            .cloned()
            .or_else(|| parent(path).and_then(|p| self.value(p)))
    }

    /// The span of the key at `path` (for errors about a whole table).
    pub fn key(&self, path: &str) -> Option<Range<usize>> {
        self.keys.get(path).cloned()
    }
}

fn parent(path: &str) -> Option<&str> {
    path.rfind(['.', '[']).map(|i| &path[..i])
}

/// Finds every `AGE-SECRET-KEY-` in `text` (comments included).
pub fn age_secrets(text: &str) -> Vec<Found> {
    let upper = text.to_ascii_uppercase();
    upper
        .match_indices(AGE_SECRET)
        .map(|(i, _)| Found {
            span: i..i + AGE_SECRET.len(),
            message: "an age secret key (AGE-SECRET-KEY-…) is written in the configuration file; \
                      secrets never go in it"
                .into(),
            help: Some(
                "keep the key in its own file (mode 0600, made by `vault key generate --output FILE`) \
                 and name that file with `identity` (or `identity` in [drill])"
                    .into(),
            ),
        })
        .collect()
}

/// Walks the document: records spans, reports unknown and secret-looking keys.
pub fn walk(root: &DeTable<'_>) -> (Spans, Vec<Found>) {
    let mut spans = Spans::default();
    let mut found = Vec::new();
    walk_table(root, "", "", &mut spans, &mut found);
    (spans, found)
}

fn allowed(section: &str) -> Option<&'static [&'static str]> {
    SECTIONS
        .iter()
        .find(|(name, _)| *name == section)
        .map(|(_, keys)| *keys)
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
    }
}

/// How a section is named in messages: `[retention]`, `[[backup.command]]`.
pub fn section_name(section: &str) -> String {
    match section {
        "" => "the top-level table".into(),
        "backup.command" | "backup.postgres" => format!("[[{section}]]"),
        s => format!("[{s}]"),
    }
}

fn walk_table(
    table: &DeTable<'_>,
    section: &str,
    path: &str,
    spans: &mut Spans,
    found: &mut Vec<Found>,
) {
    let keys = allowed(section).unwrap_or(&[]);
    for (k, v) in table.iter() {
        let key: &str = k.get_ref();
        let full = join(path, key);
        spans.keys.insert(full.clone(), k.span());
        spans.values.insert(full.clone(), v.span());
        if !keys.contains(&key) {
            found.push(unknown_key(key, section, keys, k.span()));
            spans.dropped.push(full);
            continue;
        }
        let child = join(section, key);
        if let Some((message, help)) = type_problem(&child, key, v.get_ref()) {
            found.push(Found {
                span: v.span(),
                message: format!("`{key}` in {} {message}", section_name(section)),
                help,
            });
            spans.dropped.push(full);
            continue;
        }
        let is_section = allowed(&child).is_some();
        match v.get_ref() {
            DeValue::Table(t) if is_section => walk_table(t, &child, &full, spans, found),
            DeValue::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    let at = format!("{full}[{i}]");
                    spans.values.insert(at.clone(), item.span());
                    if let (true, DeValue::Table(t)) = (is_section, item.get_ref()) {
                        walk_table(t, &child, &at, spans, found);
                    }
                }
            }
            _ => {}
        }
    }
}

/// What a value must be, by dotted schema name.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Bool,
    Count,
    Duration,
    TextList,
    Table,
    TableList,
}

fn kind_of(schema_name: &str) -> Kind {
    match schema_name {
        "s3" | "backup" | "retention" | "drill" | "status" => Kind::Table,
        "backup.command" | "backup.postgres" => Kind::TableList,
        "backup.paths" | "backup.exclude" | "backup.tags" | "backup.keystores" => Kind::TextList,
        "s3.path_style" | "retention.prune" | "drill.random_older" => Kind::Bool,
        "drill.period_days" => Kind::Count,
        k if k.starts_with("retention.keep_") && k != "retention.keep_within" => Kind::Count,
        "retention.keep_within"
        | "retention.grace"
        | "status.max_backup_age"
        | "status.max_drill_age"
        | "status.certificate_warning" => Kind::Duration,
        _ => Kind::Text,
    }
}

/// How a value is written, for messages (never the value itself).
fn written_as(v: &DeValue<'_>) -> &'static str {
    match v {
        DeValue::String(_) => "text",
        DeValue::Integer(_) => "a number",
        DeValue::Float(_) => "a decimal number",
        DeValue::Boolean(_) => "true/false",
        DeValue::Datetime(_) => "a date",
        DeValue::Array(_) => "a list",
        DeValue::Table(_) => "a table",
    }
}

/// Why `v` cannot be the value of the key `schema_name` names (`key` as
/// written), in words an operator uses: `(message, help)`.
fn type_problem(schema_name: &str, key: &str, v: &DeValue<'_>) -> Option<(String, Option<String>)> {
    let got = written_as(v);
    let quoted_number = |v: &DeValue<'_>| match v {
        DeValue::String(t) => t.trim().parse::<u64>().ok(),
        _ => None,
    };
    match (kind_of(schema_name), v) {
        (Kind::Text, DeValue::String(_))
        | (Kind::Bool, DeValue::Boolean(_))
        | (Kind::Table, DeValue::Table(_)) => None,
        (Kind::Text, _) => Some((
            format!("must be text in double quotes, not {got}"),
            Some(format!("write {key} = \"…\"")),
        )),
        (Kind::Bool, _) => Some((
            format!("must be true or false, not {got}"),
            Some(format!("write {key} = true (without quotes)")),
        )),
        (Kind::Table, _) => Some((
            format!("must be a section, not {got}"),
            Some(format!(
                "write [{schema_name}] on its own line, then its keys"
            )),
        )),
        (Kind::Count, DeValue::Integer(i)) => {
            let digits: String = i.as_str().chars().filter(|c| *c != '_').collect();
            match i128::from_str_radix(&digits, i.radix()) {
                Ok(n) if (0..=i128::from(u32::MAX)).contains(&n) => None,
                _ => Some((
                    format!("must be a whole number from 0 to {}", u32::MAX),
                    Some(format!("write e.g. {key} = 14")),
                )),
            }
        }
        (Kind::Count, _) => Some((
            format!("must be a whole number, not {got}"),
            Some(match quoted_number(v) {
                Some(n) => format!("write {key} = {n}, without quotes"),
                None => format!("write e.g. {key} = 14"),
            }),
        )),
        (Kind::Duration, DeValue::String(t)) => crate::format::duration::parse(t).err().map(|e| {
            (
                format!("is not a duration: {e}"),
                Some(crate::format::duration::HELP.into()),
            )
        }),
        (Kind::Duration, _) => Some((
            format!("must be a duration in double quotes, not {got}"),
            Some(crate::format::duration::HELP.into()),
        )),
        (Kind::TextList, DeValue::Array(items)) => items
            .iter()
            .position(|i| !matches!(i.get_ref(), DeValue::String(_)))
            .map(|n| {
                (
                    format!(
                        "must be a list of texts in double quotes; item {} is {}",
                        n + 1,
                        written_as(items[n].get_ref())
                    ),
                    Some(format!("write {key} = [\"…\", \"…\"]")),
                )
            }),
        (Kind::TextList, _) => Some((
            format!("must be a list in square brackets, not {got}"),
            Some(format!("write {key} = [\"…\"], even for one")),
        )),
        (Kind::TableList, DeValue::Array(items))
            if items
                .iter()
                .all(|i| matches!(i.get_ref(), DeValue::Table(_))) =>
        {
            None
        }
        (Kind::TableList, _) => Some((
            format!("must be written as [[{schema_name}]] sections, not {got}"),
            Some(format!(
                "write [[{schema_name}]] on its own line, then its keys"
            )),
        )),
    }
}

fn unknown_key(key: &str, section: &str, keys: &[&str], span: Range<usize>) -> Found {
    // A secret pasted where a key goes (`AGE-SECRET-KEY-1… = 1`) is never
    // repeated: [`age_secrets`] has reported it already, by position only.
    if key.to_ascii_uppercase().contains(AGE_SECRET) {
        return Found {
            span,
            message: format!(
                "a key in {} holds an age secret key; secrets never go in the configuration file",
                section_name(section)
            ),
            help: Some(secret_help(section).into()),
        };
    }
    let lower = key.to_ascii_lowercase();
    if SECRET_WORDS.iter().any(|w| lower.contains(w)) {
        return Found {
            span,
            message: format!(
                "`{key}` in {} looks like a secret; secrets never go in the configuration file \
                 (it is readable by more than the service and travels into backups and config management)",
                section_name(section)
            ),
            help: Some(secret_help(section).into()),
        };
    }
    let mut message = format!(
        "unknown key `{key}` in {}; expected one of {}",
        section_name(section),
        keys.join(", ")
    );
    let help = if let Some(near) = near_miss(key, keys) {
        message.push_str(&format!("; did you mean `{near}`?"));
        Some(format!("write `{near}`"))
    } else {
        SECTIONS
            .iter()
            .find(|(name, ks)| *name != section && ks.contains(&key))
            .map(|(name, _)| format!("`{key}` belongs in {}", section_name(name)))
    };
    Found {
        span,
        message,
        help,
    }
}

fn secret_help(section: &str) -> &'static str {
    match section {
        "" => {
            "put a passphrase in a file only vault can read (e.g. a systemd credential) and name it \
             with `passphrase_file`; an age key goes in its own file named by `identity`"
        }
        "s3" => {
            "put the AWS keys in a shared credentials file (mode 0600) and name it with \
             `credentials_file`, or leave them to the environment (LoadCredential=, an instance role)"
        }
        "backup.postgres" | "drill" => {
            "put the password in a pgpass file (mode 0600) and name it with `passfile`; \
             it becomes PGPASSFILE"
        }
        _ => {
            "put the secret in a file (mode 0600) and name that file with `identity`, \
             `passphrase_file`, `credentials_file` or `passfile`"
        }
    }
}

/// The allowed key closest to `key`, when it is close enough to be a typo
/// (a few edits, or one is the start of the other: `period` for `period_days`).
pub fn near_miss<'a>(key: &str, keys: &[&'a str]) -> Option<&'a str> {
    let key = key.to_ascii_lowercase();
    let prefix = |a: &str, b: &str| a.len() >= 4 && b.starts_with(a);
    keys.iter()
        .map(|k| {
            let d = if prefix(&key, k) || prefix(k, &key) {
                1
            } else {
                edit_distance(&key, k)
            };
            (d, *k)
        })
        .filter(|(d, k)| *d <= (k.len() / 4).max(2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Levenshtein distance, with a swap of two neighbours counting as one edit.
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = v;
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> (Spans, Vec<Found>) {
        let root = DeTable::parse(text).expect("valid TOML");
        walk(root.get_ref())
    }

    #[test]
    fn near_misses_are_suggested() {
        let keys = allowed("retention").unwrap();
        assert_eq!(near_miss("keep_dayly", keys), Some("keep_daily"));
        assert_eq!(near_miss("kep_last", keys), Some("keep_last"));
        assert_eq!(near_miss("keep_wekly", keys), Some("keep_weekly"));
        assert_eq!(near_miss("colour", keys), None);
        assert_eq!(
            near_miss("keep", keys),
            Some("keep_last"),
            "first of equals"
        );
        assert_eq!(
            near_miss("period", allowed("drill").unwrap()),
            Some("period_days")
        );
        assert_eq!(edit_distance("ab", "ba"), 1);
    }

    #[test]
    fn unknown_key_lists_allowed_keys_and_points_at_it() {
        let text = "[retention]\nkeep_daily = 1\nkeep_dayly = 14\n";
        let (_, found) = check(text);
        assert_eq!(found.len(), 1);
        let f = &found[0];
        assert_eq!(&text[f.span.clone()], "keep_dayly");
        assert!(
            f.message
                .contains("unknown key `keep_dayly` in [retention]")
        );
        assert!(f.message.contains("expected one of keep_last, keep_hourly"));
        assert!(f.message.contains("did you mean `keep_daily`?"));
    }

    #[test]
    fn key_in_the_wrong_section_is_pointed_to_the_right_one() {
        let (_, found) = check("keep_daily = 3\n");
        assert_eq!(
            found[0].help.as_deref(),
            Some("`keep_daily` belongs in [retention]")
        );
    }

    #[test]
    fn unknown_keys_inside_arrays_of_tables() {
        let (_, found) = check("[[backup.command]]\npath = \"a\"\nrun = \"b\"\ncmd = \"c\"\n");
        assert_eq!(found.len(), 1);
        assert!(found[0].message.contains("in [[backup.command]]"));
    }

    #[test]
    fn an_age_secret_written_as_a_key_is_not_echoed() {
        // Found by the `settings` fuzz target.
        let secret = format!("AGE-SECRET-KEY-1{}", "Q".repeat(58));
        let (_, found) = check(&format!("[backup]\n{secret} = 1\n"));
        assert!(!found.is_empty());
        for f in &found {
            assert!(!f.message.contains(&secret[..20]), "{f:?}");
            assert!(
                !f.help.as_deref().unwrap_or("").contains(&secret[..20]),
                "{f:?}"
            );
        }
    }

    #[test]
    fn secret_keys_are_refused_without_echoing_the_value() {
        let text = "[s3]\nsecret_access_key = \"wJalrXUtnFEMI\"\n[[backup.postgres]]\nconninfo = \"x\"\npassword = \"hunter2\"\n";
        let (_, found) = check(text);
        assert_eq!(found.len(), 2);
        for f in &found {
            assert!(f.message.contains("looks like a secret"), "{f:?}");
            assert!(!f.message.contains("wJalr") && !f.message.contains("hunter2"));
        }
        assert!(found.iter().any(|f| {
            f.help
                .as_deref()
                .is_some_and(|h| h.contains("credentials_file"))
        }));
        assert!(
            found
                .iter()
                .any(|f| f.help.as_deref().is_some_and(|h| h.contains("passfile")))
        );
    }

    #[test]
    fn age_secret_keys_are_found_anywhere() {
        let text = "# AGE-SECRET-KEY-1QQQ\nidentity = \"age-secret-key-1xyz\"\n";
        let found = age_secrets(text);
        assert_eq!(found.len(), 2);
        assert!(!found[0].message.contains("1QQQ"));
    }

    #[test]
    fn spans_are_recorded_for_values_and_elements() {
        let text =
            "[backup]\npaths = [\"/etc\", \"rel\"]\n[[backup.postgres]]\nconninfo = \"dbname=a\"\n";
        let (spans, found) = check(text);
        assert!(found.is_empty(), "{found:?}");
        assert_eq!(&text[spans.value("backup.paths[1]").unwrap()], "\"rel\"");
        assert_eq!(
            &text[spans.value("backup.postgres[0].conninfo").unwrap()],
            "\"dbname=a\""
        );
        assert!(
            spans.value("backup.postgres[0].passfile").is_some(),
            "a missing key falls back to its table"
        );
    }
}

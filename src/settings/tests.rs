//! Tests of parsing and validation, on text only.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use super::*;

const FILE: &str = "/etc/vault/vault.toml";

fn parse(text: &str) -> Result<Settings, SettingsError> {
    Settings::from_toml(text, Path::new(FILE))
}

/// The problems of an invalid text, as displayed.
fn problems(text: &str) -> Vec<String> {
    match parse(text) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e.problems().iter().map(ToString::to_string).collect(),
    }
}

fn one_problem(text: &str) -> String {
    let p = problems(text);
    assert_eq!(p.len(), 1, "{p:#?}");
    p.into_iter().next().unwrap()
}

#[test]
fn the_documented_example_parses() {
    let text = include_str!("../../docs/vault.toml.example");
    let s = parse(text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.repository.as_deref(), Some("s3://backups-example/db1"));
    assert_eq!(
        s.identity.as_deref(),
        Some(Path::new("/etc/vault/writer.key"))
    );
    assert_eq!(s.host.as_deref(), Some("db1"));
    assert_eq!(s.s3.path_style, Some(true));
    assert_eq!(s.s3.storage_class.as_deref(), Some("STANDARD_IA"));
    let b = s.backup.as_ref().unwrap();
    assert_eq!(b.paths.len(), 2);
    assert_eq!(b.command[0].path, "ldap/data.ldif");
    assert_eq!(b.command[0].run, "slapcat -n 1");
    assert_eq!(
        b.postgres[0].passfile.as_deref(),
        Some(Path::new("/run/credentials/vault-backup.service/pgpass"))
    );
    assert_eq!(b.source_count(), 4);
    assert_eq!(b.keystores.len(), 2);
    assert_eq!(s.retention.keep_daily, Some(14));
    assert_eq!(
        s.retention.keep_within,
        Some(Duration::from_secs(2 * 86400))
    );
    assert_eq!(s.retention.grace, Some(Duration::from_secs(24 * 3600)));
    assert_eq!(s.retention.prune, Some(true));
    assert_eq!(s.drill.period_days, Some(30));
    assert_eq!(
        s.status.max_backup_age,
        Some(Duration::from_secs(26 * 3600))
    );
    assert_eq!(
        s.retention.describe(),
        "last 3, hourly 0, daily 14, weekly 8, monthly 12, yearly 3, within 2d; prune after forget (grace 1d)"
    );
    assert_eq!(s.file, Path::new(FILE));
    let at = s.location("backup.postgres[0].passfile").unwrap();
    assert_eq!(
        text.lines()
            .nth(at.line - 1)
            .unwrap()
            .trim_start()
            .split(' ')
            .next(),
        Some("passfile")
    );
}

#[test]
fn an_empty_file_is_valid_and_sets_nothing() {
    let s = parse("").unwrap();
    assert!(s.repository.is_none() && s.backup.is_none());
    assert_eq!(s.retention.describe(), "not set");
}

#[test]
fn typo_reports_line_column_allowed_keys_and_suggestion() {
    let p = one_problem("[retention]\nkeep_last = 3\n  keep_dayly = 14\n");
    assert!(p.starts_with(&format!("{FILE}:3:3: unknown key `keep_dayly` in [retention]; expected one of keep_last, keep_hourly, keep_daily")), "{p}");
    assert!(p.contains("did you mean `keep_daily`?"), "{p}");
    assert!(p.contains("\n  help: write `keep_daily`"), "{p}");
}

#[test]
fn every_unknown_key_is_reported_in_file_order() {
    let p = problems("colour = 1\n[status]\nmax_age = \"1d\"\n[drill]\nperiod = 3\n");
    assert_eq!(p.len(), 3, "{p:#?}");
    assert!(p[0].starts_with(&format!("{FILE}:1:1:")));
    assert!(p[1].starts_with(&format!("{FILE}:3:1:")));
    assert!(p[2].starts_with(&format!("{FILE}:5:1:")) && p[2].contains("`period_days`"));
}

#[test]
fn syntax_errors_carry_line_and_column() {
    let p = one_problem("repository = \"/srv/vault\"\n[backup\npaths = []\n");
    assert!(p.starts_with(&format!("{FILE}:2:")), "{p}");
    assert!(p.contains("TOML syntax error"), "{p}");
    assert!(!p.contains('|'), "no source excerpt: {p}");
}

#[test]
fn type_errors_carry_line_and_column() {
    let p = one_problem("[retention]\nkeep_daily = \"14\"\n");
    assert!(
        p.starts_with(&format!(
            "{FILE}:2:14: `retention.keep_daily`: invalid type"
        )),
        "{p}"
    );
    let p = one_problem("[retention]\nkeep_daily = -1\n");
    assert!(p.starts_with(&format!("{FILE}:2:14:")), "{p}");
}

#[test]
fn durations_are_checked_with_help() {
    let p = one_problem("[status]\nmax_backup_age = \"26 hours\"\n");
    assert!(p.starts_with(&format!("{FILE}:2:18:")), "{p}");
    assert!(p.contains("is not a duration"), "{p}");
    assert!(
        p.contains("\n  help: write a whole number and a unit"),
        "{p}"
    );
}

#[test]
fn secrets_are_refused_and_never_echoed() {
    let cases = [
        ("password = \"hunter2\"\n", "passphrase_file"),
        (
            "[s3]\nsecret_access_key = \"hunter2\"\n",
            "credentials_file",
        ),
        (
            "[s3]\naws_access_key_id = \"hunter2\"\n",
            "credentials_file",
        ),
        ("[drill]\napi_token = \"hunter2\"\n", "passfile"),
        (
            "[backup]\npaths = [\"/etc\"]\n[[backup.postgres]]\nconninfo = \"dbname=app password=hunter2\"\n",
            "passfile",
        ),
        (
            "[drill]\npg_url = \"postgresql://u:hunter2@db/x\"\n",
            "passfile",
        ),
        ("identity = \"AGE-SECRET-KEY-1HUNTER2\"\n", "identity"),
        (
            "# AGE-SECRET-KEY-1HUNTER2\n[retention]\nkeep_daily = \"AGE-SECRET-KEY-1HUNTER2\"\n",
            "identity",
        ),
        (
            "[s3]\nendpoint = \"https://AKIA:hunter2@s3.example.net\"\n",
            "credentials_file",
        ),
        ("passphrase_file = \"hunter2\"\n", "absolute path"),
    ];
    for (text, hint) in cases {
        let all = problems(text).join("\n");
        assert!(
            !all.to_ascii_lowercase().contains("hunter2"),
            "secret echoed:\n{all}"
        );
        assert!(all.contains(hint), "{text}\n{all}");
    }
}

#[test]
fn a_secret_stops_before_type_errors_that_would_echo_it() {
    let all = problems("token = \"x\"\n[retention]\nkeep_daily = \"hunter2\"\n").join("\n");
    assert!(!all.contains("hunter2"), "{all}");
}

#[test]
fn paths_must_be_absolute() {
    let p = one_problem("cache_dir = \"cache\"\n");
    assert!(
        p.starts_with(&format!(
            "{FILE}:1:13: `cache_dir` must be an absolute path (not \"cache\")"
        )),
        "{p}"
    );
    assert!(
        p.contains("help: write an absolute path, e.g. /var/cache/vault"),
        "{p}"
    );
    let p = problems(
        "[backup]\npaths = [\"/etc\", \"var/lib\"]\n[[backup.postgres]]\nconninfo = \"dbname=a\"\npassfile = \"pgpass\"\n[status]\nprometheus_file = \"x.prom\"\n",
    );
    assert_eq!(p.len(), 3, "{p:#?}");
    assert!(p[0].starts_with(&format!("{FILE}:2:18:")), "{p:#?}");
    assert!(
        p[1].contains("`passfile` must be an absolute path:"),
        "{p:#?}"
    );
    assert!(p[2].contains("`prometheus_file`"), "{p:#?}");
}

#[test]
fn repository_must_be_a_directory_file_url_or_s3() {
    for bad in ["", "backups", "sftp://host/x", "s3://", "file://rel"] {
        let p = one_problem(&format!("repository = \"{bad}\"\n"));
        assert!(p.starts_with(&format!("{FILE}:1:14: `repository`")), "{p}");
        assert!(p.contains("help: write an absolute directory"), "{p}");
    }
    for ok in [
        "/srv/vault",
        "file:///srv/vault",
        "s3://bucket",
        "s3://bucket/host1",
    ] {
        parse(&format!("repository = \"{ok}\"\n")).unwrap();
    }
}

#[test]
fn backup_needs_a_source() {
    let p = one_problem("[backup]\ntags = [\"x\"]\n");
    assert!(
        p.starts_with(&format!("{FILE}:1:2: [backup] has no source")),
        "{p}"
    );
    parse("[[backup.command]]\npath = \"a/b\"\nrun = \"true\"\n").unwrap();
}

#[test]
fn command_paths_are_relative_and_distinct() {
    for bad in ["/abs", "../up", "a/../b", "", "./a", "dir/"] {
        let p = one_problem(&format!(
            "[[backup.command]]\npath = \"{bad}\"\nrun = \"true\"\n"
        ));
        assert!(
            p.contains("must be a relative path inside the snapshot"),
            "{bad}: {p}"
        );
        assert!(p.starts_with(&format!("{FILE}:2:8:")), "{p}");
    }
    let p = one_problem(
        "[[backup.command]]\npath = \"a\"\nrun = \"x\"\n[[backup.command]]\npath = \"a\"\nrun = \"y\"\n",
    );
    assert!(
        p.starts_with(&format!("{FILE}:5:8:")) && p.contains("earlier"),
        "{p}"
    );
}

#[test]
fn retention_limits() {
    let p = one_problem("[retention]\nkeep_daily = 100001\n");
    assert!(p.contains("more than 100000"), "{p}");
    parse("[retention]\nkeep_daily = 100000\n").unwrap();
    let p = one_problem("[retention]\nkeep_daily = 0\nkeep_last = 0\n");
    assert!(p.contains("keeps nothing"), "{p}");
    parse("[retention]\nkeep_daily = 0\nkeep_within = \"3d\"\n").unwrap();
    parse("[retention]\nprune = true\ngrace = \"1d\"\n").unwrap();
}

#[test]
fn other_values() {
    let cases = [
        (
            "[backup]\npaths = [\"/\"]\nexclude = [\"a[\"]\n",
            "not a valid glob",
        ),
        (
            "[backup]\npaths = [\"/\"]\nkeystores = [\"*.pem\"]\n",
            "must be absolute",
        ),
        (
            "[backup]\npaths = [\"/\"]\ntags = [\"a,b\"]\n",
            "a tag must",
        ),
        (
            "[[backup.postgres]]\nconninfo = \"dbname=a colour=red\"\n",
            "unsupported setting",
        ),
        ("[drill]\nperiod_days = 0\n", "outside 1..=3650"),
        (
            "[drill]\nuser = \"root\"\n",
            "not an unprivileged user name",
        ),
        ("[drill]\nuser = \"a b\"\n", "not an unprivileged user name"),
        (
            "[s3]\nendpoint = \"s3.example.net\"\n",
            "http:// or https://",
        ),
        ("[s3]\nstorage_class = \"standard\"\n", "storage class"),
        ("host = \"two words\"\n", "`host`"),
    ];
    for (text, needle) in cases {
        let p = one_problem(text);
        assert!(p.contains(needle), "{text}\n{p}");
        assert!(
            p.starts_with(&format!("{FILE}:")) && p.matches(':').count() >= 3,
            "{p}"
        );
    }
}

#[test]
fn a_named_file_comes_before_the_system_file() {
    let dir = tempfile::tempdir().unwrap();
    let system = dir.path().join("vault.toml");
    assert_eq!(default_path_in(&system), None);
    std::fs::write(&system, "").unwrap();
    assert_eq!(default_path_in(&system), Some(system.clone()));
    let named = dir.path().join("missing.toml");
    assert_eq!(Settings::locate(Some(&named)), Some(named.clone()));
    match Settings::load(&named) {
        Err(SettingsError::Read { path, .. }) => assert_eq!(path, named),
        other => panic!("{other:?}"),
    }
    assert!(matches!(Settings::load_for_cli(Some(&system)), Ok(Some(_))));
}

#[test]
fn check_files_reports_missing_and_open_key_files() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("writer.key");
    let open = dir.path().join("owner.key");
    for p in [&good, &open] {
        std::fs::write(p, "not read").unwrap();
    }
    std::fs::set_permissions(&good, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o644)).unwrap();
    let text = format!(
        "identity = {:?}\n[s3]\ncredentials_file = {:?}\n[drill]\nidentity = {:?}\n[[backup.postgres]]\nconninfo = \"dbname=a\"\npassfile = \"/run/credentials/x.service/pgpass\"\n",
        good,
        dir.path().join("missing"),
        open
    );
    let s = parse(&text).unwrap();
    let p: Vec<String> = s.check_files().iter().map(ToString::to_string).collect();
    assert_eq!(p.len(), 2, "{p:#?}");
    assert!(
        p[0].starts_with(&format!("{FILE}:3:1: `credentials_file`:"))
            && p[0].contains("does not exist"),
        "{p:#?}"
    );
    assert!(
        p[1].starts_with(&format!("{FILE}:5:1: `identity`:")),
        "{p:#?}"
    );
    assert!(
        p[1].contains("accessible by group or others (mode 0644)"),
        "{p:#?}"
    );
    assert!(p[1].contains("help: run `chmod 600"), "{p:#?}");
    let dir_as_key = format!("identity = {:?}\n", dir.path());
    let p = parse(&dir_as_key).unwrap().check_files();
    assert!(p[0].message.contains("not a regular file"), "{p:?}");
}

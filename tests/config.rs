//! `vault config check`: the real binary on real files, asserting on what
//! an operator reads.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::{assert_code, assert_contains, assert_success, run, stderr, stdout};

/// A temporary directory with a 0600 key file, and a place for vault.toml.
struct Setup {
    dir: tempfile::TempDir,
    key: PathBuf,
    file: PathBuf,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("writer.key");
        fs::write(&key, "not a real key; config check never reads it\n").unwrap();
        fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap();
        let file = dir.path().join("vault.toml");
        Setup { dir, key, file }
    }

    /// Writes `text` to vault.toml and runs `vault config check --config FILE`.
    fn check(&self, text: &str) -> std::process::Output {
        fs::write(&self.file, text).unwrap();
        run(&["config", "check", "--config", self.file.to_str().unwrap()])
    }

    /// A valid file using this setup's key and repository directory.
    fn valid(&self) -> String {
        format!(
            "repository = {repo:?}\nidentity = {key:?}\n\n[backup]\npaths = [\"/etc\"]\n\n\
             [[backup.command]]\npath = \"ldap/data.ldif\"\nrun = \"slapcat -n 1\"\n\n\
             [retention]\nkeep_daily = 14\nkeep_weekly = 8\n",
            repo = self.dir.path().join("repo"),
            key = self.key,
        )
    }

    fn name(&self) -> String {
        self.file.display().to_string()
    }
}

/// One run reports the content's problems and the files' problems
/// together (a missing key file, a group-readable one, a missing
/// Prometheus directory), each once, in file order; each missing file's
/// hint names the command that makes that kind of file.
#[test]
fn config_check_reports_file_problems_in_the_same_run_with_the_right_maker() {
    let s = Setup::new();
    let d = s.dir.path();
    let open_key = d.join("open.key");
    fs::write(&open_key, "x\n").unwrap();
    fs::set_permissions(&open_key, fs::Permissions::from_mode(0o644)).unwrap();
    let text = format!(
        "repository = {repo:?}\nidentity = {writer:?}\npassphrase_file = {open:?}\n\n\
         [retention]\nkeep_last = 200000\nkeep_dayly = 3\n\n\
         [drill]\nidentity = {owner:?}\n\n\
         [status]\nprometheus_file = {prom:?}\nmax_backup_age = \"1 day\"\n",
        repo = d.join("repo"),
        writer = d.join("missing-writer.key"),
        open = open_key,
        owner = d.join("missing-owner.key"),
        prom = d.join("no-such-dir/vault.prom"),
    );
    let out = s.check(&text);
    assert_code(&out, 2);
    let err = stderr(&out);
    let lines: Vec<&str> = err.lines().filter(|l| !l.starts_with("  help:")).collect();
    let at = |needle: &str| {
        lines
            .iter()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("{needle:?} not in:\n{err}"))
    };
    let order = [
        at("missing-writer.key does not exist"),
        at("open.key is accessible by group or others"),
        at("`keep_last` = 200000 is more than 100000"),
        at("unknown key `keep_dayly`"),
        at("missing-owner.key does not exist"),
        at("the directory"),
        at("`max_backup_age`"),
    ];
    assert!(order.windows(2).all(|w| w[0] < w[1]), "file order: {err}");
    assert_contains(&err, &format!("{}: 7 problems", s.name()));
    // The writer key comes from init / add-host / rotate-writer; the drill's
    // owner key from key generate.
    let help_after = |needle: &str| lines_after(&err, needle);
    let writer_help = help_after("missing-writer.key does not exist");
    assert_contains(&writer_help, "vault init --writer-key-out");
    assert_contains(&writer_help, "vault key add-host HOST --writer-key-out");
    let owner_help = help_after("missing-owner.key does not exist");
    assert_contains(&owner_help, "vault key generate --output");
    assert!(!owner_help.contains("writer"), "{owner_help}");
    assert_contains(&help_after("the directory"), "mkdir -p");

    // A relative path is one problem, not also a missing directory.
    let out = s.check(&format!(
        "repository = {:?}\n[status]\nprometheus_file = \"rel/vault.prom\"\n",
        d.join("repo")
    ));
    assert_code(&out, 2);
    assert_contains(&stderr(&out), "1 problem");
}

/// The `help:` line that follows the first line containing `needle`.
fn lines_after(text: &str, needle: &str) -> String {
    let mut it = text.lines().skip_while(|l| !l.contains(needle));
    it.next();
    it.next().unwrap_or_default().to_owned()
}

#[test]
fn valid_file_is_ok_with_a_summary() {
    let s = Setup::new();
    let out = s.check(&s.valid());
    assert_code(&out, 0);
    let text = stdout(&out);
    assert_contains(&text, &format!("{}: ok", s.name()));
    assert_contains(&text, "repository: /");
    assert_contains(&text, "sources: 2: 1 path, 1 command, 0 databases");
    assert_contains(&text, "retention: daily 14, weekly 8");
}

#[test]
fn global_flag_before_the_command_and_the_environment_work_too() {
    let s = Setup::new();
    fs::write(&s.file, s.valid()).unwrap();
    let out = run(&["--config", s.file.to_str().unwrap(), "config", "check"]);
    assert_code(&out, 0);
    let out = Command::new(crate::util::vault_bin())
        .args(["config", "check", "--json"])
        .env("VAULT_CONFIG", &s.file)
        .output()
        .unwrap();
    assert_code(&out, 0);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["valid"], true);
    assert_eq!(v["file"], s.name());
    assert_eq!(v["summary"]["retention"], "daily 14, weekly 8");
}

#[test]
fn missing_named_file_is_a_usage_error() {
    let s = Setup::new();
    let out = run(&["config", "check", "--config", s.file.to_str().unwrap()]);
    assert_code(&out, 2);
    assert_contains(&stderr(&out), &s.name());
    assert_contains(&stderr(&out), "cannot read the configuration file");
    if !Path::new("/etc/vault/vault.toml").exists() {
        let out = run(&["config", "check"]);
        assert_code(&out, 2);
        assert_contains(&stderr(&out), "no configuration file: pass --config FILE");
    }
}

#[test]
fn typo_is_reported_with_line_column_and_suggestion() {
    let s = Setup::new();
    let text = s.valid().replace("keep_weekly", "keep_dayly");
    let line = text
        .lines()
        .position(|l| l.starts_with("keep_dayly"))
        .unwrap()
        + 1;
    let out = s.check(&text);
    assert_code(&out, 2);
    let err = stderr(&out);
    assert_contains(
        &err,
        &format!(
            "{}:{line}:1: unknown key `keep_dayly` in [retention]; expected one of keep_last, keep_hourly, keep_daily",
            s.name()
        ),
    );
    assert_contains(&err, "did you mean `keep_daily`?");
    assert_contains(&err, "\n  help: write `keep_daily`");
    assert_contains(&err, &format!("{}: 1 problem", s.name()));
}

#[test]
fn syntax_error_is_reported_with_line_and_column() {
    let s = Setup::new();
    let out = s.check("repository = \"/srv/vault\"\n[retention\nkeep_daily = 3\n");
    assert_code(&out, 2);
    let err = stderr(&out);
    assert_contains(&err, &format!("{}:2:", s.name()));
    assert_contains(&err, "TOML syntax error");
}

#[test]
fn password_in_conninfo_is_refused_without_echoing_it() {
    let s = Setup::new();
    let text = format!(
        "{}\n[[backup.postgres]]\nconninfo = \"dbname=app password=Tr0ub4dor\"\n",
        s.valid()
    );
    let line = text
        .lines()
        .position(|l| l.starts_with("conninfo"))
        .unwrap()
        + 1;
    for args in [vec![], vec!["--json"]] {
        fs::write(&s.file, &text).unwrap();
        let mut all = vec!["config", "check", "--config", s.file.to_str().unwrap()];
        all.extend(args);
        let out = run(&all);
        assert_code(&out, 2);
        let both = format!("{}{}", stdout(&out), stderr(&out));
        assert!(!both.contains("Tr0ub4dor"), "password echoed:\n{both}");
        assert_contains(&both, "`conninfo` contains a password");
        assert_contains(&both, "passfile");
        if all.contains(&"--json") {
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(v["valid"], false);
            assert_eq!(v["problems"][0]["line"], line);
            assert_eq!(v["problems"][0]["column"], 12);
        } else {
            assert_contains(&both, &format!("{}:{line}:12:", s.name()));
        }
    }
}

#[test]
fn relative_path_is_refused() {
    let s = Setup::new();
    let out = s.check(&s.valid().replace("paths = [\"/etc\"]", "paths = [\"etc\"]"));
    assert_code(&out, 2);
    let err = stderr(&out);
    assert_contains(&err, "`paths` must be an absolute path (not \"etc\")");
    assert_contains(&err, "help: write an absolute path, e.g. /etc");
}

#[test]
fn insecure_key_file_is_reported() {
    let s = Setup::new();
    fs::set_permissions(&s.key, fs::Permissions::from_mode(0o644)).unwrap();
    let out = s.check(&s.valid());
    assert_code(&out, 2);
    let err = stderr(&out);
    assert_contains(
        &err,
        &format!(
            "{}:2:1: `identity`: {} is accessible by group or others (mode 0644)",
            s.name(),
            s.key.display()
        ),
    );
    assert_contains(&err, &format!("help: run `chmod 600 {}`", s.key.display()));
}

/// A repository, a source tree and a config file that names them.
fn configured() -> (crate::util::Env, PathBuf, PathBuf) {
    let env = crate::util::Env::new();
    let src = env.path("src");
    crate::util::write(&src.join("etc/app.conf"), b"port = 1\n");
    crate::util::write(&src.join("etc/skip.tmp"), b"scratch\n");
    let file = env.path("vault.toml");
    fs::write(
        &file,
        format!(
            "repository = \"{}\"\nidentity = \"{}\"\ncache_dir = \"{}\"\nhost = \"cfg-host\"\n\n\
             [backup]\npaths = [\"{}\"]\nexclude = [\"*.tmp\"]\ntags = [\"nightly\"]\n\n\
             [[backup.command]]\npath = \"cmd/out.txt\"\nrun = \"echo from-config\"\n\n\
             [retention]\nkeep_last = 1\n\n[status]\nmax_backup_age = \"26h\"\n",
            env.repo.display(),
            env.writer_key.display(),
            env.cache.display(),
            src.display()
        ),
    )
    .unwrap();
    (env, src, file)
}

#[test]
fn commands_take_repository_keys_sources_and_retention_from_the_file() {
    let (env, src, file) = configured();
    let cfg = file.to_str().unwrap();
    for _ in 0..2 {
        let out = run(&["--config", cfg, "backup", "--json"]);
        crate::util::assert_success(&out);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["snapshot"]["host"], "cfg-host", "{v}");
        assert_eq!(v["snapshot"]["tags"][0], "nightly");
        assert_eq!(v["snapshot"]["sources"].as_array().unwrap().len(), 2, "{v}");
    }
    let out = run(&[
        "--config",
        cfg,
        "ls",
        "-i",
        env.owner_key.to_str().unwrap(),
        "latest",
    ]);
    crate::util::assert_success(&out);
    let listing = stdout(&out);
    assert_contains(&listing, "app.conf");
    assert_contains(&listing, "cmd/out.txt");
    assert!(
        !listing.contains("skip.tmp"),
        "exclude from the file applies"
    );

    // A flag beats the file: forget needs the owner key, not the file's writer key.
    let out = run(&["--config", cfg, "forget"]);
    assert_code(&out, 1);
    assert_contains(&stderr(&out), "forget needs an owner key");
    let out = run(&[
        "--config",
        cfg,
        "forget",
        "-i",
        env.owner_key.to_str().unwrap(),
    ]);
    crate::util::assert_success(&out);
    assert_contains(&stdout(&out), "kept 1 snapshot, removed 1");
    let out = run(&["--config", cfg, "snapshots", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 1);
    let _ = src;
}

#[test]
fn an_invalid_file_stops_only_what_needs_it_and_no_config_skips_it() {
    let (env, src, file) = configured();
    let text = fs::read_to_string(&file)
        .unwrap()
        .replace("keep_last", "keep_lastt");
    fs::write(&file, text).unwrap();
    let cfg = file.to_str().unwrap();
    // Backup, forget, status act on the file's settings: they stop, with
    // the location and the command that lists every problem.
    for cmd in ["backup", "forget", "status"] {
        let out = run(&["--config", cfg, cmd]);
        assert_code(&out, 2);
        let err = stderr(&out);
        assert_contains(&err, &format!("{}:", file.display()));
        assert_contains(&err, "keep_lastt");
        assert_contains(&err, "vault config check");
    }
    // Reading a repository named on the command line goes on, with a warning.
    let repo = env.repo.to_str().unwrap();
    let writer = env.writer_key.to_str().unwrap();
    let out = run(&[
        "--config",
        cfg,
        "snapshots",
        "-r",
        repo,
        "-i",
        writer,
        "--json",
    ]);
    assert_success(&out);
    assert_contains(&stderr(&out), "warning");
    assert_contains(&stderr(&out), "keep_lastt");
    let out = run(&["--config", cfg, "completions", "bash"]);
    assert_success(&out);
    // --no-config reads no file at all, even the one VAULT_CONFIG names.
    let out = Command::new(crate::util::vault_bin())
        .args([
            "--no-config",
            "backup",
            "-r",
            repo,
            "-i",
            writer,
            "--no-cache",
        ])
        .arg(src.to_str().unwrap())
        .env("VAULT_CONFIG", &file)
        .output()
        .unwrap();
    assert_success(&out);
    assert!(stderr(&out).is_empty(), "{}", stderr(&out));
}

/// With an invalid file, the read-only commands on a repository named on
/// the command line (diff, find, stats; tag, which names its snapshots)
/// warn and go on, and so does every way of reading help or the version:
/// the operator must be able to read `vault backup --help` to fix the file.
/// Copy and check still stop.
#[test]
fn an_invalid_file_leaves_reading_commands_and_help_working() {
    let (env, _src, file) = configured();
    let text = fs::read_to_string(&file)
        .unwrap()
        .replace("keep_last", "keep_lastt");
    fs::write(&file, text).unwrap();
    let cfg = file.to_str().unwrap();
    let repo = env.repo.to_str().unwrap();
    let owner = env.owner_key.to_str().unwrap();
    let writer = env.writer_key.to_str().unwrap();
    assert_success(&run(&[
        "--no-config",
        "backup",
        "-r",
        repo,
        "-i",
        writer,
        "--no-cache",
        _src.to_str().unwrap(),
    ]));
    let with_repo = |cmd: &[&str], key: &str| {
        let mut a = vec!["--config", cfg];
        a.extend(cmd);
        a.extend(["-r", repo, "-i", key]);
        run(&a)
    };
    for (cmd, key) in [
        (vec!["diff", "latest", "latest"], owner),
        (vec!["find", "*"], owner),
        (vec!["stats"], writer),
        (vec!["stats", "latest"], owner),
    ] {
        let out = with_repo(&cmd, key);
        assert_success(&out);
        let err = stderr(&out);
        assert_contains(&err, "keep_lastt");
        assert_contains(&err, "the configuration file is not used");
    }
    let list = run(&[
        "--no-config",
        "snapshots",
        "-r",
        repo,
        "-i",
        writer,
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    let id = v[0]["id"].as_str().unwrap().to_owned();
    let out = with_repo(&["tag", &id, "--add", "checked"], owner);
    assert_success(&out);
    for args in [
        vec!["--config", cfg, "--help"],
        vec!["--config", cfg, "--version"],
        vec!["--config", cfg, "backup", "--help"],
        vec!["--config", cfg, "backup", "-h"],
        vec!["--config", cfg, "help", "backup"],
    ] {
        let out = run(&args);
        assert_success(&out);
        assert!(!stdout(&out).is_empty(), "{args:?} printed nothing");
    }
    assert_contains(
        &stdout(&run(&["--config", cfg, "backup", "--help"])),
        "--exclude-file",
    );
    // What acts on the file's settings still stops, help or not elsewhere.
    for cmd in [vec!["copy", "--to", "/nonexistent"], vec!["check"]] {
        let out = with_repo(&cmd, owner);
        assert_code(&out, 2);
        assert_contains(&stderr(&out), "vault config check");
    }
    // `--help` after `--` is an argument, not a request for help.
    let out = run(&["--config", cfg, "backup", "--", "--help"]);
    assert_code(&out, 2);
    assert_contains(&stderr(&out), "keep_lastt");
}

#[test]
fn a_passphrase_owner_opens_through_the_configured_passphrase_file() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let pass = dir.path().join("pass");
    fs::write(&pass, "correct horse battery staple\n").unwrap();
    fs::set_permissions(&pass, fs::Permissions::from_mode(0o600)).unwrap();
    let writer = dir.path().join("writer.key");
    let out = Command::new(crate::util::vault_bin())
        .args(["init", "-r", repo.to_str().unwrap(), "--owner-passphrase"])
        .args(["--writer-key-out", writer.to_str().unwrap()])
        .env("VAULT_PASSPHRASE_FILE", &pass)
        .output()
        .unwrap();
    crate::util::assert_success(&out);
    let src = dir.path().join("src");
    crate::util::write(&src.join("a"), b"a");
    crate::util::backup_no_cache(&repo, &writer, &src);
    let file = dir.path().join("vault.toml");
    fs::write(
        &file,
        format!(
            "repository = \"{}\"\npassphrase_file = \"{}\"\n",
            repo.display(),
            pass.display()
        ),
    )
    .unwrap();
    // ls reads trees: only an owner can; the passphrase comes from the file.
    let out = run(&["--config", file.to_str().unwrap(), "ls", "latest"]);
    crate::util::assert_success(&out);
    assert_contains(&stdout(&out), "a");
}

#[test]
fn sources_on_the_command_line_mean_only_these() {
    let (env, src, file) = configured();
    let cfg = file.to_str().unwrap();
    let other = env.path("other");
    crate::util::write(&other.join("cron.d/job"), b"* * * * * true\n");
    let kinds = |out: &std::process::Output| -> Vec<(String, String)> {
        assert_success(out);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["snapshot"]["sources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["kind"].as_str().unwrap().to_owned(),
                    s["name"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    let out = run(&["--config", cfg, "backup", "--json", other.to_str().unwrap()]);
    assert_eq!(
        kinds(&out),
        vec![("paths".to_owned(), other.display().to_string())]
    );
    let out = run(&[
        "--config",
        cfg,
        "backup",
        "--json",
        "--from-command",
        "echo only",
        "--stdin-filename",
        "only.txt",
    ]);
    assert_eq!(
        kinds(&out),
        vec![("command".to_owned(), "only.txt".to_owned())]
    );
    // Without sources on the command line, the file's all run.
    let out = run(&["--config", cfg, "backup", "--json"]);
    let all = kinds(&out);
    assert!(
        all.contains(&("paths".to_owned(), src.display().to_string())),
        "{all:?}"
    );
    assert!(all.iter().any(|(k, _)| k == "command"), "{all:?}");
}

#[test]
fn credentials_in_an_s3_repository_url_are_refused_without_echoing_them() {
    let s = Setup::new();
    let text = s.valid().replacen(
        &format!("repository = {:?}", s.dir.path().join("repo")),
        "repository = \"s3://AKIAEXAMPLE:Tr0ub4dor@bucket/host1\"",
        1,
    );
    assert!(text.contains("Tr0ub4dor"));
    for args in [vec![], vec!["--json"]] {
        fs::write(&s.file, &text).unwrap();
        let mut all = vec!["config", "check", "--config", s.file.to_str().unwrap()];
        all.extend(args);
        let out = run(&all);
        assert_code(&out, 2);
        let both = format!("{}{}", stdout(&out), stderr(&out));
        assert!(
            !both.contains("Tr0ub4dor") && !both.contains("AKIAEXAMPLE"),
            "credentials echoed:\n{both}"
        );
        assert_contains(&both, "`repository` carries credentials");
    }
}

#[test]
fn a_key_file_owned_by_another_user_is_reported_and_refused_at_run_time() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test chowns a key file and must run as root"
    );
    let s = Setup::new();
    std::os::unix::fs::chown(&s.key, Some(65534), Some(65534)).unwrap();
    let out = s.check(&s.valid());
    assert_code(&out, 2);
    assert_contains(
        &stderr(&out),
        &format!(
            "`identity`: {} belongs to user id 65534, not to you (user id 0) or root",
            s.key.display()
        ),
    );
    // At run time a real writer key chowned to nobody is refused before it
    // is parsed; the same key owned by root opens the repository.
    let env = crate::util::Env::new();
    let snapshots = || {
        run(&[
            "snapshots",
            "-r",
            env.repo.to_str().unwrap(),
            "-i",
            env.writer_key.to_str().unwrap(),
        ])
    };
    assert_code(&snapshots(), 0);
    std::os::unix::fs::chown(&env.writer_key, Some(65534), Some(65534)).unwrap();
    let out = snapshots();
    assert_code(&out, 1);
    assert_contains(
        &stderr(&out),
        "key file belongs to user id 65534, not to you",
    );
}

#[test]
fn config_check_reports_every_problem_in_one_run_in_plain_words() {
    let s = Setup::new();
    let text = format!(
        "{}[s3]\npath_style = \"yes\"\n[drill]\nperiod_days = \"30\"\nrandom_older = 1\n\
         pg_url = \"localhost\"\n[status]\nmax_backup_age = 26\nmax_drill_age = \"8 days\"\n\
         prometheus_file = {:?}\n",
        s.valid(),
        s.dir.path().join("no-such-dir/vault.prom"),
    );
    let out = s.check(&text);
    assert_code(&out, 2);
    let err = stderr(&out);
    for want in [
        "`path_style` in [s3] must be true or false, not text",
        "`period_days` in [drill] must be a whole number, not text",
        "write period_days = 30, without quotes",
        "`random_older` in [drill] must be true or false, not a number",
        "`pg_url`",
        "`max_backup_age` in [status] must be a duration in double quotes, not a number",
        "`max_drill_age` in [status] is not a duration",
        // The file checks run in the same run: the Prometheus file's
        // directory must exist.
        "`prometheus_file`: the directory",
        "7 problems",
    ] {
        assert_contains(&err, want);
    }
    for jargon in ["u32", "invalid type", "boolean", "a string"] {
        assert!(!err.contains(jargon), "{jargon:?} in:\n{err}");
    }
    // Alone, the same problem.
    let prom = s.dir.path().join("no-such-dir/vault.prom");
    let out = s.check(&format!(
        "{}[status]\nprometheus_file = {prom:?}\n",
        s.valid()
    ));
    assert_code(&out, 2);
    assert_contains(&stderr(&out), "the directory");
    assert_contains(&stderr(&out), "does not exist");
    assert_contains(&stderr(&out), "mkdir -p");
    fs::create_dir(s.dir.path().join("no-such-dir")).unwrap();
    assert_code(
        &s.check(&format!(
            "{}[status]\nprometheus_file = {prom:?}\n",
            s.valid()
        )),
        0,
    );
}

#[test]
fn a_bad_pg_url_is_a_usage_error_before_any_work() {
    let env = crate::util::Env::new();
    let src = env.path("src");
    crate::util::write(&src.join("a"), b"a");
    let id = env.backup(&[&src]);
    let drills = || fs::read_dir(env.repo.join("drills")).map_or(0, |d| d.count());
    for (args, msg) in [
        (vec!["drill", "--pg-url", "localhost"], "--pg-url: "),
        (vec!["drill", "--pg-url", " "], "--pg-url is empty"),
        (
            vec!["drill", "--pg-url", "host=db password=Tr0ub4dor"],
            "contains a password",
        ),
        (
            vec!["restore", &id, "--verify", "--pg-url", "localhost"],
            "--pg-url: ",
        ),
    ] {
        let (cmd, rest) = args.split_first().unwrap();
        let out = env.vault(&[cmd], &env.owner_key, rest);
        assert_code(&out, 2);
        assert_contains(&stderr(&out), msg);
        assert!(!stderr(&out).contains("Tr0ub4dor"));
        assert_eq!(drills(), 0, "{args:?} recorded a drill");
    }
    // Before any work: not even the repository is opened.
    let out = run(&[
        "drill",
        "-r",
        "/nonexistent/repo",
        "-i",
        env.owner_key.to_str().unwrap(),
        "--pg-url",
        "localhost",
    ]);
    assert_code(&out, 2);
    assert_contains(&stderr(&out), "--pg-url");
    // The configuration file's pg_url is checked the same way.
    let file = env.path("vault.toml");
    fs::write(&file, "[drill]\npg_url = \"localhost\"\n").unwrap();
    let out = run(&["config", "check", "--config", file.to_str().unwrap()]);
    assert_code(&out, 2);
    assert_contains(&stderr(&out), "`pg_url`");
}

/// `[drill] db_load_timeout` is the default of `--db-load-timeout` for
/// `vault drill` and `vault restore --verify` (a drill unit runs with the
/// file's settings only): a value the flag refuses is refused from the
/// file too, and the flag beats the file.
#[test]
fn drill_db_load_timeout_comes_from_the_file() {
    let (env, _src, file) = configured();
    let text = fs::read_to_string(&file).unwrap();
    fs::write(
        &file,
        format!("{text}\n[drill]\ndb_load_timeout = \"0s\"\n"),
    )
    .unwrap();
    let cfg = file.to_str().unwrap();
    crate::util::assert_success(&run(&["config", "check", "--config", cfg]));
    let owner = env.owner_key.to_str().unwrap();
    let out = run(&["--config", cfg, "drill", "-i", owner]);
    assert_code(&out, 2);
    assert_contains(&stderr(&out), "the time limit must be above zero");
    let target = env.path("t");
    let out = run(&[
        "--config",
        cfg,
        "restore",
        "-i",
        owner,
        "latest",
        "--verify",
        "--target",
        target.to_str().unwrap(),
    ]);
    assert_code(&out, 2);
    assert_contains(&stderr(&out), "the time limit must be above zero");
    crate::util::assert_success(&run(&["--config", cfg, "backup"]));
    let out = run(&[
        "--config",
        cfg,
        "drill",
        "-i",
        owner,
        "--db-load-timeout",
        "1h",
    ]);
    crate::util::assert_success(&out);
}

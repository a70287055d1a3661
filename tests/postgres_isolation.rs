//! Database drills keep a dump away from what the drill host holds
//! (issue 11): the scratch cluster and every tool reading the dump run as
//! the drill user (`vault-drill`), with nothing of the drill's environment,
//! no capabilities, in a 0700 directory of their own; a drill that cannot
//! switch users refuses; the cluster goes away on SIGINT/SIGTERM, and after
//! a SIGKILL the next drill removes it (issue 14).
//!
//! The drills here are held at a *gate*: loading table `gated` waits until
//! the test puts a row into table `gate` (at most 60 s), so that the test
//! can look at the running cluster without guessing at timing.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::postgres::*;
use crate::util::*;

/// The drill user the tests' drills switch to (scripts/install-test-deps.sh).
pub const DRILL_USER: &str = "vault-drill";
/// The unprivileged user `vault systemd` runs the drill service as.
pub const SERVICE_USER: &str = "vault";
/// What every planted secret contains.
pub const FAKE_SECRET: &str = "fake-owner-secret-7c1d2e";

/// uid and gid of `name`.
pub fn ids_of(name: &str) -> (u32, u32) {
    let u = nix::unistd::User::from_name(name)
        .unwrap()
        .unwrap_or_else(|| panic!("user {name} missing: run scripts/install-test-deps.sh"));
    (u.uid.as_raw(), u.gid.as_raw())
}

/// A database whose drill waits at the gate.
fn make_gated_db(pg: &PgServer) {
    pg.sql("postgres", "CREATE DATABASE app");
    pg.sql(
        "app",
        "CREATE TABLE gate (open boolean);
         CREATE FUNCTION public.wait_for_gate() RETURNS boolean LANGUAGE plpgsql AS $$
         BEGIN
           IF current_database() <> 'app' THEN
             FOR i IN 1..1200 LOOP
               EXIT WHEN EXISTS (SELECT 1 FROM public.gate);
               PERFORM pg_catalog.pg_sleep(0.05);
             END LOOP;
             DELETE FROM public.gate; -- the row counts stay as recorded
           END IF;
           RETURN true;
         END $$;
         CREATE TABLE gated (id int CHECK (public.wait_for_gate()));
         INSERT INTO gated VALUES (1);",
    );
}

/// The secrets a drill host holds: a key file only the drill's user may
/// read, in a credentials directory, and variables naming them.
pub struct Secrets {
    pub dir: PathBuf,
    pub file: PathBuf,
}

impl Secrets {
    /// Plants them in `env`, owned by `owner` (root when `None`).
    pub fn plant(env: &Env, owner: Option<&str>) -> Secrets {
        let dir = env.path("credentials");
        fs::create_dir_all(&dir).unwrap();
        let file = dir.join("owner.key");
        fs::write(&file, FAKE_SECRET).unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
        if let Some(o) = owner {
            let (uid, gid) = ids_of(o);
            for p in [&dir, &file] {
                nix::unistd::chown(p, Some(uid.into()), Some(gid.into())).unwrap();
            }
        }
        Secrets { dir, file }
    }

    /// Gives `cmd` the variables a drill service has.
    pub fn to(&self, cmd: &mut Command) {
        cmd.env("CREDENTIALS_DIRECTORY", &self.dir)
            .env("VAULT_TEST_TOKEN", FAKE_SECRET)
            .env("AWS_SECRET_ACCESS_KEY", FAKE_SECRET)
            .env("AWS_ACCESS_KEY_ID", "AKIAFAKE")
            .env("PGPASSWORD", FAKE_SECRET);
    }
}

/// `restore latest --verify` run as the `vault` service user, with the
/// capabilities the drill unit gives it (`caps`) or none.
pub fn drill_as_service_user(env: &Env, extra: &[&str], caps: bool) -> Command {
    let (uid, gid) = ids_of(SERVICE_USER);
    drill_tmp(env);
    let chown = Command::new("chown")
        .arg("-R")
        .arg(format!("{uid}:{gid}"))
        .arg(env.dir.path())
        .status()
        .unwrap();
    assert!(chown.success());
    let mut cmd = Command::new("setpriv");
    cmd.args([
        &format!("--reuid={SERVICE_USER}"),
        &format!("--regid={SERVICE_USER}"),
        "--init-groups",
    ]);
    if caps {
        cmd.args([
            "--inh-caps=+setuid,+setgid",
            "--ambient-caps=+setuid,+setgid",
        ]);
    }
    cmd.arg("--")
        .arg(vault_bin())
        .args([
            "restore",
            "-r",
            env.repo.to_str().unwrap(),
            "-i",
            env.owner_key.to_str().unwrap(),
            "latest",
            "--verify",
        ])
        .args(extra)
        .env("TMPDIR", drill_tmp(env));
    cmd
}

/// psql as root on a scratch cluster's socket (root may enter its 0700
/// directory); `None` while it does not answer.
fn scratch_sql(dir: &Path, db: &str, sql: &str) -> Option<String> {
    let out = Command::new("psql")
        .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .env("PGHOST", dir)
        .env("PGPORT", "5432")
        .env("PGUSER", "vault_admin")
        .env("PGDATABASE", db)
        .env("PGCONNECT_TIMEOUT", "5")
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// A drill waiting at the gate.
pub struct Held {
    pub dir: PathBuf,
    pub postmaster: u32,
}

/// Waits (bounded) until `child`'s scratch cluster is loading the gated
/// table.
pub fn wait_until_held(env: &Env, child: &mut Child) -> Held {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        assert!(
            Instant::now() < deadline,
            "the drill never reached the gate"
        );
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut err);
            }
            panic!("the drill ended ({status}) before reaching the gate: {err}");
        }
        if let [name] = scratch_clusters(env).as_slice() {
            let dir = drill_tmp(env).join(name);
            let pid = fs::read_to_string(dir.join("postmaster.pid"))
                .ok()
                .and_then(|t| t.lines().next()?.trim().parse().ok());
            let waiting = scratch_sql(
                &dir,
                "postgres",
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'PgSleep'",
            );
            if let (Some(postmaster), Some("1")) = (pid, waiting.as_deref()) {
                return Held { dir, postmaster };
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Lets a held drill go on.
pub fn open_gate(held: &Held) {
    let db = scratch_sql(
        &held.dir,
        "postgres",
        "SELECT datname FROM pg_database WHERE datname LIKE 'vault_drill_%'",
    )
    .expect("the scratch database");
    scratch_sql(&held.dir, &db, "INSERT INTO public.gate VALUES (true)").expect("gate opened");
}

/// `pid`'s children.
fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for t in fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
    {
        if let Ok(c) = fs::read_to_string(t.path().join("children")) {
            out.extend(c.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
        }
    }
    out
}

/// Variables a confined program may have: the allow-list, libpq's
/// connection settings, and what pg_ctl and the server set themselves.
const ALLOWED_ENV: [&str; 16] = [
    "PGLOCALEDIR",
    "PWD",
    "SHLVL",
    "PATH",
    "LANG",
    "LC_ALL",
    "HOME",
    "PGSYSCONFDIR",
    "PGPASSFILE",
    "PGHOST",
    "PGPORT",
    "PGUSER",
    "PGDATABASE",
    "PGAPPNAME",
    "PGDATA",
    "PG_GRANDPARENT_PID",
];

/// Asserts that process `pid` runs as the drill user with no supplementary
/// group, no capability, no_new_privs, and nothing of the drill's
/// environment.
fn assert_confined(pid: u32, drill: (u32, u32)) {
    let Ok(status) = fs::read_to_string(format!("/proc/{pid}/status")) else {
        return; // ended meanwhile
    };
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_else(|| panic!("{name} missing in {status}"))
            .trim()
            .to_owned()
    };
    let (uid, gid) = drill;
    assert_eq!(
        field("Uid:"),
        format!("{uid}\t{uid}\t{uid}\t{uid}"),
        "pid {pid}: {status}"
    );
    assert_eq!(
        field("Gid:"),
        format!("{gid}\t{gid}\t{gid}\t{gid}"),
        "pid {pid}: {status}"
    );
    assert_eq!(field("Groups:"), "", "pid {pid}: supplementary groups");
    for cap in ["CapInh:", "CapPrm:", "CapEff:", "CapAmb:"] {
        assert_eq!(field(cap), "0000000000000000", "pid {pid}: {cap}");
    }
    assert_eq!(field("NoNewPrivs:"), "1", "pid {pid}");
    let environ = fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
    let vars: Vec<String> = environ
        .split(|b| *b == 0)
        .filter(|v| !v.is_empty())
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect();
    let unexpected: Vec<&String> = vars
        .iter()
        .filter(|v| !ALLOWED_ENV.contains(&v.split('=').next().unwrap()) || v.contains(FAKE_SECRET))
        .collect();
    assert!(
        unexpected.is_empty(),
        "pid {pid}'s environment holds {unexpected:?}"
    );
}

/// Checks everything a held drill runs, from the outside.
fn assert_held_drill_is_confined(env: &Env, drill_pid: u32, held: &Held, secrets: &Secrets) {
    let drill = ids_of(DRILL_USER);
    let meta = fs::metadata(&held.dir).unwrap();
    assert_eq!(
        meta.uid(),
        drill.0,
        "the scratch directory is the drill user's"
    );
    assert_eq!(meta.mode() & 0o777, 0o700, "and nobody else's");
    // The server, its backends (one is running the dump's code), and the
    // tools the drill started (pg_restore, held at the gate).
    let mut pids = vec![held.postmaster];
    pids.extend(children(held.postmaster));
    let tools = children(drill_pid);
    assert!(!tools.is_empty(), "pg_restore is running");
    pids.extend(&tools);
    for pid in pids {
        assert_confined(pid, drill);
    }
    // No TCP listener.
    assert_eq!(
        scratch_sql(&held.dir, "postgres", "SHOW listen_addresses").as_deref(),
        Some("")
    );
    // The drill user cannot reach the drill's secrets or restored files.
    let sandbox = fs::read_dir(drill_tmp(env))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("vault-verify-")
        })
        .expect("the drill's sandbox");
    for target in [
        &secrets.file,
        &sandbox.join("postgres/app.dump"),
        &env.owner_key,
    ] {
        let out = Command::new("runuser")
            .args(["-u", DRILL_USER, "--", "cat"])
            .arg(target)
            .output()
            .unwrap();
        assert!(
            !out.status.success(),
            "the drill user read {}",
            target.display()
        );
    }
}

fn spawn_held(mut cmd: Command, secrets: &Secrets) -> Child {
    secrets.to(&mut cmd);
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn finish(child: Child) -> (std::process::Output, serde_json::Value) {
    let out = child.wait_with_output().unwrap();
    let v = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (out, v)
}

/// Whether process `pid` runs (a zombie nobody reaped yet does not).
pub fn running(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|s| {
        !s.lines()
            .any(|l| l.starts_with("State:") && l.contains("Z"))
    })
}

/// How many drill records the repository holds.
pub fn drill_records(env: &Env) -> usize {
    fs::read_dir(env.repo.join("drills")).map_or(0, |d| d.count())
}

fn assert_gone(env: &Env, held: &Held) {
    assert!(
        scratch_clusters(env).is_empty(),
        "the cluster's directory was removed"
    );
    assert!(!running(held.postmaster), "the scratch postmaster is gone");
}

#[test]
fn scratch_cluster_runs_as_the_drill_user_with_nothing_of_the_drills() {
    let pg = PgServer::start();
    make_gated_db(&pg);
    let env = Env::new();
    assert_success(&env.backup_json(&["--postgres", &pg.conninfo("app")]).0);
    let secrets = Secrets::plant(&env, None);
    let mut cmd = drill_command(&env, &["--json"]);
    cmd.env("VAULT_IDENTITY", &env.owner_key);
    let mut child = spawn_held(cmd, &secrets);
    let held = wait_until_held(&env, &mut child);
    assert_held_drill_is_confined(&env, child.id(), &held, &secrets);
    open_gate(&held);
    let (out, v) = finish(child);
    assert_success(&out);
    assert_eq!(v["report"]["databases"][0]["passed"], true, "{v}");
    assert_gone(&env, &held);
}

#[test]
fn a_drill_without_root_switches_users_with_the_two_capabilities_of_its_unit() {
    let pg = PgServer::start();
    make_gated_db(&pg);
    let env = Env::new();
    assert_success(&env.backup_json(&["--postgres", &pg.conninfo("app")]).0);
    let secrets = Secrets::plant(&env, Some(SERVICE_USER));
    let mut cmd = drill_as_service_user(&env, &["--json"], true);
    cmd.env("VAULT_IDENTITY", &env.owner_key);
    let mut child = spawn_held(cmd, &secrets);
    let held = wait_until_held(&env, &mut child);
    let status = fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap();
    let (service_uid, _) = ids_of(SERVICE_USER);
    assert!(
        status.contains(&format!("Uid:\t{service_uid}\t")),
        "the drill itself runs as {SERVICE_USER}: {status}"
    );
    assert_held_drill_is_confined(&env, child.id(), &held, &secrets);
    open_gate(&held);
    let (out, v) = finish(child);
    assert_success(&out);
    assert_eq!(v["report"]["databases"][0]["passed"], true, "{v}");
    assert_gone(&env, &held);
}

#[test]
fn a_drill_that_cannot_switch_users_refuses_and_says_how() {
    let pg = PgServer::start();
    make_app_db(&pg);
    pg.sql("postgres", "CREATE ROLE drill LOGIN CREATEDB");
    let env = Env::new();
    assert_success(&env.backup_json(&["--postgres", &pg.conninfo("app")]).0);
    let out = drill_as_service_user(&env, &[], false).output().unwrap();
    assert_code(&out, 2);
    let err = stderr(&out);
    for needle in [
        "CAP_SETUID and CAP_SETGID",
        "vault systemd",
        "--pg-url",
        "as root",
    ] {
        assert_contains(&err, needle);
    }
    // Refused before restoring anything: no sandbox, no cluster, no record.
    let left: Vec<_> = fs::read_dir(drill_tmp(&env)).unwrap().flatten().collect();
    assert!(left.is_empty(), "{left:?}");
    assert_eq!(drill_records(&env), 0);
    // A server the operator prepared needs no switch.
    let out = drill_as_service_user(
        &env,
        &["--json", "--pg-url", &pg.conninfo_as("drill", "postgres")],
        false,
    )
    .output()
    .unwrap();
    assert_success(&out);
}

#[test]
fn a_missing_or_privileged_drill_user_is_refused_before_restoring() {
    let (_pg, env, _) = app_backed_up();
    let out = drill_command(&env, &["--drill-user", "vault-no-such-user"])
        .output()
        .unwrap();
    assert_code(&out, 2);
    assert_contains(
        &stderr(&out),
        "useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin vault-no-such-user",
    );
    let out = drill_command(&env, &[])
        .env("VAULT_DRILL_USER", "root")
        .output()
        .unwrap();
    assert_code(&out, 2);
    assert_contains(&stderr(&out), "root");
    let out = env.vault(&["drill"], &env.owner_key, &["--drill-user", "root"]);
    assert_code(&out, 2);
    assert_contains(&stderr(&out), "unprivileged");
    assert_eq!(drill_records(&env), 0);
}

#[test]
fn drill_interrupted_by_a_signal_leaves_no_cluster_behind() {
    let pg = PgServer::start();
    make_gated_db(&pg);
    let env = Env::new();
    assert_success(&env.backup_json(&["--postgres", &pg.conninfo("app")]).0);
    let secrets = Secrets::plant(&env, None);
    for signal in [nix::sys::signal::SIGTERM, nix::sys::signal::SIGINT] {
        let mut child = spawn_held(drill_command(&env, &[]), &secrets);
        let held = wait_until_held(&env, &mut child);
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), signal).unwrap();
        let (out, _) = finish(child);
        assert_eq!(out.status.code(), Some(130), "{signal}: {}", stderr(&out));
        assert_contains(&stderr(&out), "interrupted");
        assert_gone(&env, &held);
        let left: Vec<_> = fs::read_dir(drill_tmp(&env)).unwrap().flatten().collect();
        assert!(left.is_empty(), "{signal}: sandbox left: {left:?}");
        assert_eq!(drill_records(&env), 0);
    }
}

#[test]
fn a_drill_killed_outright_leaves_a_cluster_the_next_drill_removes() {
    let pg = PgServer::start();
    make_gated_db(&pg);
    let env = Env::new();
    assert_success(&env.backup_json(&["--postgres", &pg.conninfo("app")]).0);
    let secrets = Secrets::plant(&env, None);
    let mut child = spawn_held(drill_command(&env, &[]), &secrets);
    let held = wait_until_held(&env, &mut child);
    child.kill().unwrap();
    child.wait().unwrap();
    // What SIGKILL leaves: the server still running, the restored files.
    assert!(running(held.postmaster));
    assert_eq!(scratch_clusters(&env).len(), 1);
    let sandboxes = || {
        fs::read_dir(drill_tmp(&env))
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("vault-verify-"))
            .count()
    };
    assert_eq!(sandboxes(), 1);
    // The next drill (of another database, which does not wait) cleans up.
    pg.sql("postgres", "CREATE DATABASE other");
    pg.sql(
        "other",
        "CREATE TABLE t AS SELECT generate_series(1, 10) AS id",
    );
    assert_success(&env.backup_json(&["--postgres", &pg.conninfo("other")]).0);
    let (out, v) = drill(&env);
    assert_success(&out);
    assert_eq!(v["report"]["databases"][0]["passed"], true);
    assert_contains(&stderr(&out), "left behind by drill process");
    assert_gone(&env, &held);
    assert_eq!(sandboxes(), 0, "the killed drill's sandbox was removed too");
}

#[test]
fn forged_source_names_never_reach_pg_restore() {
    let (_pg, env, v) = app_backed_up();
    // A writer key holder rewrites the header: the dump's source now also
    // appears under names that lead out of the sandbox.
    let id = v["id"].as_str().unwrap();
    let repo = open_repo(&env.repo, &env.writer_key);
    let mut snap: vault::format::snapshot::Snapshot =
        repo.get_json(&format!("snapshots/{id}")).unwrap();
    let dump = snap
        .sources
        .iter()
        .find(|s| s.kind == "postgres")
        .unwrap()
        .clone();
    let bad = [
        "/etc/passwd",
        "../../etc/shadow",
        "postgres/../../../etc/passwd",
        "postgres//app.dump",
    ];
    for name in bad {
        let mut s = dump.clone();
        s.name = name.into();
        snap.sources.push(s);
    }
    snap.time += chrono::Duration::seconds(1);
    // Signed with the writer key, as its holder can: the header counts.
    repo.put_signed_json(vault::repo::ObjectKind::Snapshot, &snap)
        .unwrap();
    let (out, v) = drill(&env);
    assert_code(&out, 4);
    let dbs = v["report"]["databases"].as_array().unwrap();
    assert_eq!(dbs.len(), 1 + bad.len());
    for name in bad {
        let d = dbs.iter().find(|d| d["name"] == name).unwrap();
        assert_eq!(d["failure"], "refused", "{d}");
        assert_contains(d["error"].as_str().unwrap(), "not a safe relative path");
    }
    let good = dbs
        .iter()
        .find(|d| d["name"] == "postgres/app.dump")
        .unwrap();
    assert_eq!(good["passed"], true, "{good}");
}

#[test]
fn a_dump_needing_extensions_loads_with_them_created_beforehand() {
    let pg = PgServer::start();
    pg.sql("postgres", "CREATE DATABASE ext");
    pg.sql(
        "ext",
        "CREATE SCHEMA extensions;
         COMMENT ON SCHEMA extensions IS 'where extensions live';
         CREATE EXTENSION citext WITH SCHEMA extensions;
         CREATE EXTENSION dblink;
         CREATE EXTENSION \"uuid-ossp\";
         CREATE TABLE people (name extensions.citext, id uuid DEFAULT public.uuid_generate_v4());
         INSERT INTO people (name) SELECT 'p' || g FROM generate_series(1, 25) g;",
    );
    let env = Env::new();
    assert_success(&env.backup_json(&["--postgres", &pg.conninfo("ext")]).0);
    let (out, v) = drill(&env);
    assert_success(&out);
    let db = &v["report"]["databases"][0];
    assert_eq!(db["passed"], true, "{db}");
    let people = db["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == "public.people")
        .unwrap();
    assert_eq!(people["found"], 25);
}

/// A `--pg-url` the drill cannot use is the operator's mistake: exit 2
/// naming `why` before any work, no report, no drill record (so `vault
/// status` does not blame the backups for it).
fn refused_before_any_work(env: &Env, out: &std::process::Output, why: &str) {
    assert_code(out, 2);
    let err = stderr(out);
    assert_contains(&err, "--pg-url");
    assert_contains(&err, why);
    assert_contains(&err, "no drill recorded");
    assert!(out.stdout.is_empty(), "no report: {}", stdout(out));
    let drills = env.repo.join("drills");
    let records = fs::read_dir(&drills).map_or(0, |d| d.count());
    assert_eq!(records, 0, "no drill record in {}", drills.display());
}

/// A `--pg-url` whose server does not answer, or that names a database
/// that does not exist, is refused before anything is restored: exit 2,
/// no drill record, and `vault status` shows no failed drill. The same
/// backup then passes its drill against the right URL.
#[test]
fn an_unusable_pg_url_is_refused_before_any_work_and_records_no_drill() {
    let pg = PgServer::start();
    make_app_db(&pg);
    pg.sql("postgres", "CREATE ROLE drill LOGIN CREATEDB;");
    let env = Env::new();
    assert_success(&env.backup_json(&["--postgres", &pg.conninfo("app")]).0);
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let nowhere = format!("postgresql://drill@127.0.0.1:{closed}/postgres");
    let out = drill_command(&env, &["--pg-url", &nowhere])
        .output()
        .unwrap();
    refused_before_any_work(&env, &out, &format!("port {closed} failed"));
    // `vault drill` too, with the URL from the configuration file.
    let cfg = env.path("vault.toml");
    fs::write(
        &cfg,
        format!(
            "[drill]\npg_url = \"{}\"\n",
            pg.conninfo_as("drill", "nosuchdb")
        ),
    )
    .unwrap();
    let out = Command::new(vault_bin())
        .args(["--config", cfg.to_str().unwrap(), "drill", "-r"])
        .arg(&env.repo)
        .arg("-i")
        .arg(&env.owner_key)
        .env("TMPDIR", drill_tmp(&env))
        .output()
        .unwrap();
    refused_before_any_work(&env, &out, "nosuchdb");
    let out = env.vault(&["status"], &env.writer_key, &[]);
    assert!(!stdout(&out).contains("a drill failed"), "{}", stdout(&out));

    let (out, v) = {
        let out = drill_command(
            &env,
            &["--json", "--pg-url", &pg.conninfo_as("drill", "postgres")],
        )
        .output()
        .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        (out, v)
    };
    assert_success(&out);
    assert_eq!(v["report"]["databases"][0]["passed"], true, "{v}");
}

#[test]
fn a_prepared_server_must_not_load_as_a_privileged_role() {
    let pg = PgServer::start();
    make_app_db(&pg);
    pg.sql(
        "postgres",
        "CREATE ROLE maker LOGIN CREATEDB CREATEROLE;
         CREATE ROLE runner LOGIN CREATEDB;
         GRANT pg_execute_server_program TO runner;",
    );
    let env = Env::new();
    assert_success(&env.backup_json(&["--postgres", &pg.conninfo("app")]).0);
    for (role, why) in [
        ("postgres", "postgres (superuser)"),
        ("maker", "maker (CREATEROLE)"),
        ("runner", "pg_execute_server_program"),
    ] {
        let out = drill_command(
            &env,
            &["--json", "--pg-url", &pg.conninfo_as(role, "postgres")],
        )
        .output()
        .unwrap();
        refused_before_any_work(&env, &out, why);
    }
    let left = pg.sql(
        "postgres",
        "SELECT count(*) FROM pg_database WHERE datname LIKE 'vault_drill_%'",
    );
    assert_eq!(left, "0", "nothing was created");
}

/// Two hostile dumps: one whose CHECK constraint sleeps an hour on every
/// row, one whose CHECK constraint counts a generate_series of 10^12 rows,
/// each only outside its production database (an ordinary role can make
/// both). With `--db-load-timeout 3s` each ends as the named failure
/// `timed_out`, the drill goes on to the next dump (an honest one passes)
/// and exits 4, and the scratch cluster is removed. Control: the sleeping
/// dump loaded outside vault does sleep.
#[test]
fn a_dump_that_sleeps_or_spins_while_loading_ends_as_a_timed_out_drill() {
    let pg = PgServer::start();
    make_app_db(&pg);
    pg.sql("postgres", "CREATE DATABASE sleepy");
    pg.sql(
        "sleepy",
        "CREATE FUNCTION public.nap() RETURNS boolean LANGUAGE plpgsql AS $$
         BEGIN
           IF current_database() <> 'sleepy' THEN PERFORM pg_catalog.pg_sleep(3600); END IF;
           RETURN true;
         END $$;
         CREATE TABLE t (id int CHECK (public.nap()));
         INSERT INTO t VALUES (1), (2);",
    );
    pg.sql("postgres", "CREATE DATABASE spin");
    pg.sql(
        "spin",
        "CREATE FUNCTION public.spin() RETURNS boolean LANGUAGE plpgsql AS $$
         BEGIN
           IF current_database() <> 'spin' THEN
             PERFORM count(*) FROM (SELECT pg_catalog.generate_series(1, 1000000000000::bigint)) s;
           END IF;
           RETURN true;
         END $$;
         CREATE TABLE t (id int CHECK (public.spin()));
         INSERT INTO t VALUES (1);",
    );
    let env = Env::new();
    let (out, _) = env.backup_json(&[
        "--postgres",
        &pg.conninfo("sleepy"),
        "--postgres",
        &pg.conninfo("spin"),
        "--postgres",
        &pg.conninfo("app"),
    ]);
    assert_success(&out);

    let started = Instant::now();
    let out = drill_command(&env, &["--json", "--db-load-timeout", "3s"])
        .output()
        .unwrap();
    let took = started.elapsed();
    assert_code(&out, 4);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let dbs = v["report"]["databases"].as_array().unwrap();
    let by_name = |n: &str| {
        dbs.iter()
            .find(|d| d["name"].as_str().unwrap().contains(n))
            .unwrap_or_else(|| panic!("no {n} in {v}"))
    };
    for hostile in ["sleepy", "spin"] {
        let d = by_name(hostile);
        assert_eq!(d["failure"], "timed_out", "{d}");
        assert_contains(d["error"].as_str().unwrap(), "--db-load-timeout");
    }
    assert_eq!(by_name("app")["passed"], true, "{v}");
    assert!(took < Duration::from_secs(120), "the drill took {took:?}");
    assert!(scratch_clusters(&env).is_empty(), "the cluster was removed");
    assert_eq!(drill_records(&env), 1, "a failed drill is recorded");

    // Control: outside vault, the same dump sleeps in its CHECK constraint.
    let dump = env.path("sleepy.dump");
    let out = Command::new("pg_dump")
        .args(["-Fc", "-f", dump.to_str().unwrap(), "sleepy"])
        .env("PGHOST", pg.dir.path())
        .env("PGPORT", "5432")
        .env("PGUSER", "postgres")
        .output()
        .unwrap();
    assert_success(&out);
    pg.sql("postgres", "CREATE DATABASE control");
    let mut restore = Command::new("pg_restore")
        .args(["--no-owner", "-d", "control"])
        .arg(&dump)
        .env("PGHOST", pg.dir.path())
        .env("PGPORT", "5432")
        .env("PGUSER", "postgres")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let sleeping = loop {
        let n = pg.sql(
            "postgres",
            "SELECT count(*) FROM pg_stat_activity WHERE datname = 'control' AND wait_event = 'PgSleep'",
        );
        if n == "1" {
            break true;
        }
        if Instant::now() > deadline || restore.try_wait().unwrap().is_some() {
            break false;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = restore.kill();
    let _ = restore.wait();
    pg.sql("postgres", "DROP DATABASE control WITH (FORCE)");
    assert!(sleeping, "control: the payload did not sleep outside vault");
}

/// `--pg-url` loads dumps as its conninfo's role: a role that can read or
/// write server files, or that may become a superuser through a role it is
/// a member of, is refused by name before any work (exit 2, no drill
/// recorded, nothing created); `--pg-url-trust-superuser` is the operator's explicit
/// override (the drill then loads, with a warning), and means nothing
/// without `--pg-url`.
#[test]
fn a_prepared_servers_privileged_role_is_refused_unless_the_operator_trusts_it() {
    let pg = PgServer::start();
    make_app_db(&pg);
    pg.sql(
        "postgres",
        "CREATE ROLE reader LOGIN CREATEDB;
         GRANT pg_read_server_files TO reader;
         CREATE ROLE writer LOGIN CREATEDB;
         GRANT pg_write_server_files TO writer;
         CREATE ROLE boss SUPERUSER NOLOGIN;
         CREATE ROLE heir LOGIN CREATEDB;
         GRANT boss TO heir;",
    );
    let env = Env::new();
    assert_success(&env.backup_json(&["--postgres", &pg.conninfo("app")]).0);
    for (role, why) in [
        ("reader", "pg_read_server_files"),
        ("writer", "pg_write_server_files"),
        ("heir", "boss (superuser)"),
    ] {
        let out = drill_command(
            &env,
            &["--json", "--pg-url", &pg.conninfo_as(role, "postgres")],
        )
        .output()
        .unwrap();
        refused_before_any_work(&env, &out, why);
    }
    let left = pg.sql(
        "postgres",
        "SELECT count(*) FROM pg_database WHERE datname LIKE 'vault_drill_%'",
    );
    assert_eq!(left, "0", "nothing was created");

    // The operator's explicit choice: the superuser loads it.
    let out = drill_command(
        &env,
        &[
            "--json",
            "--pg-url",
            &pg.conninfo_as("postgres", "postgres"),
            "--pg-url-trust-superuser",
        ],
    )
    .output()
    .unwrap();
    assert_success(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["report"]["databases"][0]["passed"], true, "{v}");
    assert_contains(&stderr(&out), "--pg-url-trust-superuser");
    let out = drill_command(&env, &["--pg-url-trust-superuser"])
        .output()
        .unwrap();
    assert_code(&out, 2);
    assert_contains(&stderr(&out), "--pg-url");
}

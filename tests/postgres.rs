//! The native PostgreSQL source, against a real PostgreSQL server that the
//! harness starts (initdb + pg_ctl as the `postgres` user, on a Unix socket
//! in a temporary directory, so no port can clash).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::*;

/// A throwaway PostgreSQL cluster, stopped and removed on drop.
pub struct PgServer {
    pub dir: tempfile::TempDir,
    bin: PathBuf,
}

pub fn pg_bin() -> PathBuf {
    let mut versions: Vec<PathBuf> = fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL server binaries in /usr/lib/postgresql (scripts/install-test-deps.sh installs them)")
        .map(|e| e.unwrap().path().join("bin"))
        .filter(|p| p.join("initdb").exists())
        .collect();
    versions.sort();
    versions
        .pop()
        .expect("an initdb under /usr/lib/postgresql/*/bin")
}

fn as_postgres(bin: &Path, tool: &str, args: &[&str]) {
    let out = Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .arg(bin.join(tool))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{tool} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl PgServer {
    pub fn start() -> PgServer {
        assert!(
            nix::unistd::geteuid().is_root(),
            "the PostgreSQL tests start a cluster as the postgres user and must run as root"
        );
        let dir = tempfile::Builder::new()
            .prefix("vault-pg-")
            .tempdir()
            .unwrap();
        let pg = nix::unistd::User::from_name("postgres")
            .unwrap()
            .expect("a postgres user");
        nix::unistd::chown(dir.path(), Some(pg.uid), Some(pg.gid)).unwrap();
        // Others may reach the socket (a drill running as the `vault` user);
        // the data directory inside stays 0700.
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let bin = pg_bin();
        let data = dir.path().join("data");
        as_postgres(
            &bin,
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
            ],
        );
        let opts = format!(
            "-k {} -c listen_addresses='' -p 5432 -c fsync=off",
            dir.path().display()
        );
        let log = dir.path().join("server.log");
        as_postgres(
            &bin,
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-o",
                &opts,
                "-l",
                log.to_str().unwrap(),
                "-w",
                "start",
            ],
        );
        PgServer { dir, bin }
    }

    pub fn conninfo(&self, db: &str) -> String {
        self.conninfo_as("postgres", db)
    }

    /// The conninfo of `db` as role `user`.
    pub fn conninfo_as(&self, user: &str, db: &str) -> String {
        format!(
            "host={} port=5432 user={user} dbname={db}",
            self.dir.path().display()
        )
    }

    /// Runs SQL with psql; returns its unaligned, tuples-only output.
    pub fn sql(&self, db: &str, sql: &str) -> String {
        self.sql_as("postgres", db, sql)
    }

    /// Runs SQL with psql as role `user`.
    pub fn sql_as(&self, user: &str, db: &str, sql: &str) -> String {
        let out = Command::new("psql")
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .env("PGHOST", self.dir.path())
            .env("PGPORT", "5432")
            .env("PGUSER", user)
            .env("PGDATABASE", db)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "psql {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    /// pg_restore a custom-format dump into a new database, as the
    /// superuser (`--no-owner`: what a drill did before it loaded dumps as
    /// an unprivileged role, and the control of every attack vector).
    pub fn restore_dump(&self, dump: &Path, db: &str) {
        self.sql("postgres", &format!("CREATE DATABASE {db}"));
        let out = Command::new("pg_restore")
            .args(["--no-owner", "-d", db])
            .arg(dump)
            .env("PGHOST", self.dir.path())
            .env("PGPORT", "5432")
            .env("PGUSER", "postgres")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg_restore: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .args(["-D", data.to_str().unwrap(), "-m", "immediate", "stop"])
            .output();
    }
}

pub fn make_app_db(pg: &PgServer) {
    pg.sql("postgres", "CREATE DATABASE app");
    pg.sql(
        "app",
        "CREATE TABLE orders (id serial PRIMARY KEY, note text);
         CREATE SCHEMA billing;
         CREATE TABLE billing.\"Invoices\" (id int);
         INSERT INTO orders (note) SELECT 'order ' || g FROM generate_series(1, 5000) g;
         INSERT INTO billing.\"Invoices\" SELECT g FROM generate_series(1, 42) g;",
    );
}

/// A PostgreSQL server holding the `app` database, a workspace, and the
/// `--json` result of a successful backup of `app` into it.
pub fn app_backed_up() -> (PgServer, Env, serde_json::Value) {
    let pg = PgServer::start();
    make_app_db(&pg);
    let env = Env::new();
    let (out, v) = env.backup_json(&["--postgres", &pg.conninfo("app")]);
    assert_success(&out);
    (pg, env, v)
}

#[test]
fn native_dump_records_row_counts_and_restores_into_postgres() {
    let (pg, env, v) = app_backed_up();
    let sources = v["snapshot"]["sources"].as_array().unwrap();
    let dump = sources
        .iter()
        .find(|s| s["kind"] == "postgres")
        .expect("postgres source");
    assert_eq!(dump["status"], "ok");
    assert_eq!(dump["name"], "postgres/app.dump");
    let d = &dump["details"];
    assert_eq!(d["row_counts"]["public.orders"], 5000);
    assert_eq!(d["row_counts"]["billing.\"Invoices\""], 42);
    assert!(
        d["server_version"]
            .as_str()
            .unwrap()
            .starts_with(char::is_numeric)
    );
    assert!(dump["command"].as_str().unwrap().contains("--snapshot="));
    assert_eq!(d["globals"], "dumped");
    let globals = sources
        .iter()
        .find(|s| s["kind"] == "postgres-globals")
        .expect("globals source");
    assert_eq!(globals["status"], "ok");

    let target = env.path("t");
    assert_success(&env.restore("latest", &target));
    assert!(
        fs::read_to_string(target.join("postgres/app.globals.sql"))
            .unwrap()
            .contains("CREATE ROLE")
    );
    pg.restore_dump(&target.join("postgres/app.dump"), "scratch");
    assert_eq!(pg.sql("scratch", "SELECT count(*) FROM orders"), "5000");
    assert_eq!(
        pg.sql("scratch", "SELECT count(*) FROM billing.\"Invoices\""),
        "42"
    );
}

#[test]
fn dump_and_counts_agree_while_writes_run() {
    let pg = PgServer::start();
    make_app_db(&pg);
    let env = Env::new();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (out, v) = std::thread::scope(|s| {
        let writer = s.spawn(|| {
            // Bounded: at most 400 batches while the backup runs.
            for i in 0..400 {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                pg.sql(
                    "app",
                    &format!(
                        "INSERT INTO orders (note) SELECT 'live {i}' FROM generate_series(1, 50)"
                    ),
                );
            }
        });
        let r = env.backup_json(&["--postgres", &pg.conninfo("app")]);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        writer.join().unwrap();
        r
    });
    assert_success(&out);
    let recorded = v["snapshot"]["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["kind"] == "postgres")
        .unwrap()["details"]["row_counts"]["public.orders"]
        .as_u64()
        .unwrap();
    let target = env.path("t");
    assert_success(&env.restore("latest", &target));
    pg.restore_dump(&target.join("postgres/app.dump"), "scratch");
    let restored: u64 = pg
        .sql("scratch", "SELECT count(*) FROM orders")
        .parse()
        .unwrap();
    assert_eq!(
        restored, recorded,
        "the dump and the recorded count see the same snapshot"
    );
    assert!(recorded >= 5000);
}

#[test]
fn a_failing_database_source_fails_the_run() {
    let pg = PgServer::start();
    make_app_db(&pg);
    let env = Env::new();
    let src = env.path("src");
    sample_tree(&src);
    let (out, v) = env.backup_json(&[
        "--postgres",
        &pg.conninfo("no_such_db"),
        src.to_str().unwrap(),
    ]);
    assert_code(&out, 3);
    let failed = source_of_kind(&v, "postgres");
    assert_eq!(failed["status"], "failed");
    assert_contains(
        v["snapshot"]["errors"][0]["message"].as_str().unwrap(),
        "no_such_db",
    );

    let (out, _) = env.backup_json(&["--postgres", &pg.conninfo("no_such_db")]);
    assert_code(&out, 1);
    assert_contains(&stderr(&out), "nothing could be read");
}

#[test]
fn passwords_never_reach_a_command_line() {
    let pg = PgServer::start();
    make_app_db(&pg);
    let env = Env::new();
    let secret = "pw-7f3a9c-never-on-argv";

    // A password in --postgres would sit in vault's own argv: refused, and
    // the refusal does not repeat it.
    let with_pw = format!("{} password={secret}", pg.conninfo("app"));
    let (out, _) = env.backup_json(&["--postgres", &with_pw]);
    assert_code(&out, 2);
    assert_contains(&stderr(&out), "PGPASSFILE");
    assert!(!stderr(&out).contains(secret));

    // From the environment it reaches psql and pg_dump, never their argv.
    let done = std::sync::atomic::AtomicBool::new(false);
    let seen = std::thread::scope(|s| {
        let watcher = s.spawn(|| {
            let mut seen = Vec::new();
            let mut samples = 0;
            // Bounded sampling of every process's argv while the backup runs.
            while !done.load(std::sync::atomic::Ordering::Relaxed) && samples < 20_000 {
                samples += 1;
                for e in fs::read_dir("/proc").unwrap().flatten() {
                    // The refused run above put the password in its own
                    // argv on purpose; on a loaded machine /proc may still
                    // show it for a moment. Anything else is a leak.
                    if let Ok(cmd) = fs::read(e.path().join("cmdline"))
                        && String::from_utf8_lossy(&cmd).contains(secret)
                        && !String::from_utf8_lossy(&cmd).contains(&with_pw)
                    {
                        seen.push(String::from_utf8_lossy(&cmd).replace('\0', " "));
                    }
                }
            }
            seen
        });
        let out = Command::new(vault_bin())
            .args([
                "backup",
                "-r",
                env.repo.to_str().unwrap(),
                "-i",
                env.writer_key.to_str().unwrap(),
            ])
            .args(["--no-cache", "--json", "--postgres", &pg.conninfo("app")])
            .env("PGPASSWORD", secret)
            .output()
            .unwrap();
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        assert_success(&out);
        assert!(!String::from_utf8_lossy(&out.stdout).contains(secret));
        assert!(!stderr(&out).contains(secret));
        watcher.join().unwrap()
    });
    assert!(seen.is_empty(), "password on a command line: {seen:?}");
}

/// The drill's private temporary directory (so that parallel tests can
/// tell their scratch clusters apart), traversable by the postgres user.
pub fn drill_tmp(env: &Env) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let tmp = env.path("tmp");
    fs::create_dir_all(&tmp).unwrap();
    fs::set_permissions(env.dir.path(), fs::Permissions::from_mode(0o711)).unwrap();
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o1777)).unwrap();
    tmp
}

pub fn drill_command(env: &Env, extra: &[&str]) -> Command {
    let mut cmd = Command::new(vault_bin());
    cmd.args([
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

pub fn drill(env: &Env) -> (std::process::Output, serde_json::Value) {
    let out = drill_command(env, &["--json"]).output().unwrap();
    let v = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (out, v)
}

pub fn scratch_clusters(env: &Env) -> Vec<String> {
    fs::read_dir(drill_tmp(env))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("vault-drill-pg-"))
        .collect()
}

#[test]
fn verify_loads_the_dump_into_a_scratch_cluster_and_compares_every_table() {
    let (_pg, env, _) = app_backed_up();
    let (out, v) = drill(&env);
    assert_success(&out);
    assert_eq!(v["passed"], true);
    let db = &v["report"]["databases"][0];
    assert_eq!(db["name"], "postgres/app.dump");
    assert_eq!(db["passed"], true);
    let orders = db["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == "public.orders")
        .unwrap();
    assert_eq!(
        (orders["expected"].as_u64(), orders["found"].as_u64()),
        (Some(5000), Some(5000))
    );
    let text = drill_command(&env, &[]).output().unwrap();
    assert_success(&text);
    assert_contains(&stdout(&text), "every row count matches");
    assert!(scratch_clusters(&env).is_empty(), "scratch cluster removed");
}

#[test]
fn verify_fails_naming_a_table_that_lost_rows() {
    let (_pg, env, v) = app_backed_up();
    // Forge a snapshot whose recorded counts disagree with the dump: as if
    // the dump had lost rows of public.orders.
    let id = v["id"].as_str().unwrap();
    let repo = open_repo(&env.repo, &env.owner_key);
    let mut snap: vault::format::snapshot::Snapshot =
        repo.get_json(&format!("snapshots/{id}")).unwrap();
    for s in &mut snap.sources {
        if let Some(d) = s.details.as_mut() {
            d["row_counts"]["public.orders"] = 5001.into();
        }
    }
    snap.time += chrono::Duration::seconds(1);
    repo.put_signed_json(vault::repo::ObjectKind::Snapshot, &snap)
        .unwrap();
    let (out, v) = drill(&env);
    assert_code(&out, 4);
    assert_eq!(v["passed"], false);
    let problems = v["report"]["problems"].to_string();
    assert!(
        problems.contains("public.orders") && problems.contains("expected 5001 rows, found 5000"),
        "{problems}"
    );
}

#[test]
fn verify_catches_a_corrupted_dump() {
    let (_pg, env, _) = app_backed_up();
    // Damage the pack holding the dump's content.
    let mut packs: Vec<PathBuf> = Vec::new();
    for d in fs::read_dir(env.repo.join("data")).unwrap().flatten() {
        packs.extend(fs::read_dir(d.path()).unwrap().flatten().map(|e| e.path()));
    }
    let pack = packs
        .iter()
        .max_by_key(|p| fs::metadata(p).unwrap().len())
        .unwrap();
    let mut b = fs::read(pack).unwrap();
    let n = b.len() / 2;
    b[n] ^= 0xff;
    fs::write(pack, b).unwrap();
    let (out, v) = drill(&env);
    assert_code(&out, 4);
    assert_eq!(v["passed"], false);
    assert_contains(&v["report"]["problems"].to_string(), "app.dump");
}

#[test]
fn a_role_that_cannot_dump_globals_warns_records_it_and_status_shows_it() {
    let pg = PgServer::start();
    make_app_db(&pg);
    // An application's backup role: reads every table, is no superuser.
    pg.sql(
        "postgres",
        "CREATE ROLE reader LOGIN; GRANT pg_read_all_data TO reader",
    );
    let env = Env::new();
    let (out, v) = env.backup_json(&["--postgres", &pg.conninfo_as("reader", "app")]);
    assert_success(&out);
    assert_contains(
        &stderr(&out),
        "globals not dumped: the role is not a superuser",
    );
    let sources = v["snapshot"]["sources"].as_array().unwrap();
    assert!(!sources.iter().any(|s| s["kind"] == "postgres-globals"));
    let dump = sources.iter().find(|s| s["kind"] == "postgres").unwrap();
    assert_eq!(dump["status"], "ok", "a missing globals file is no failure");
    assert!(
        dump["details"]["globals"]
            .as_str()
            .unwrap()
            .starts_with("not dumped"),
        "{dump}"
    );
    let status = env.vault(&["status"], &env.owner_key, &[]);
    assert_contains(&stdout(&status), "note:");
    assert_contains(
        &stdout(&status),
        "roles and tablespaces are not in this snapshot",
    );
}

#[test]
fn verify_can_use_a_given_server_and_drops_its_scratch_database() {
    let pg = PgServer::start();
    make_app_db(&pg);
    // The operator's drill role: may create databases, nothing more.
    pg.sql("postgres", "CREATE ROLE drill LOGIN CREATEDB");
    let env = Env::new();
    let (out, _) = env.backup_json(&["--postgres", &pg.conninfo("app")]);
    assert_success(&out);
    let out = env.vault(
        &["restore"],
        &env.owner_key,
        &[
            "latest",
            "--verify",
            "--json",
            "--pg-url",
            &pg.conninfo_as("drill", "postgres"),
        ],
    );
    assert_success(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["report"]["databases"][0]["passed"], true);
    let left = pg.sql(
        "postgres",
        "SELECT count(*) FROM pg_database WHERE datname LIKE 'vault_drill_%'",
    );
    assert_eq!(left, "0", "the scratch database was dropped");
}

#[test]
fn pg_dump_killed_mid_stream_is_a_failed_source() {
    let pg = PgServer::start();
    make_app_db(&pg);
    let env = Env::new();
    let src = env.path("src");
    sample_tree(&src);
    // pg_dump dies of SIGPIPE after the first KiB: the pipeline's status
    // (pipefail) is non-zero, as when pg_dump is killed for any reason.
    let cmd = format!(
        "set -o pipefail; PGHOST={} PGUSER=postgres pg_dump -Fc -Z0 app | head -c 1024",
        pg.conninfo("app")
            .split_whitespace()
            .next()
            .unwrap()
            .trim_start_matches("host=")
    );
    let (out, v) = env.backup_json(&[
        "--from-command",
        &format!("bash -c '{cmd}'"),
        "--stdin-filename",
        "db/app.dump",
        src.to_str().unwrap(),
    ]);
    assert_code(&out, 3);
    let failed = source_of_kind(&v, "command");
    assert_eq!(failed["status"], "failed");
    assert_contains(
        v["snapshot"]["errors"][0]["message"].as_str().unwrap(),
        "exited with status",
    );
}

/// `--postgres` takes a `postgresql://` URI (the socket directory
/// percent-escaped) as well as key=value pairs, and refuses a password in
/// the URI as it refuses `password=`, without repeating it.
#[test]
fn a_postgresql_uri_is_accepted_and_a_password_in_it_refused() {
    let pg = PgServer::start();
    make_app_db(&pg);
    let env = Env::new();
    let socket = pg.dir.path().display().to_string().replace('/', "%2F");
    let uri = format!("postgresql://postgres@{socket}:5432/app");
    let (out, v) = env.backup_json(&["--postgres", &uri]);
    assert_success(&out);
    let source = v["snapshot"]["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["kind"] == "postgres")
        .cloned()
        .unwrap_or_else(|| panic!("no postgres source in {v}"));
    assert_eq!(source["status"], "ok", "{source}");
    assert_eq!(
        source["details"]["row_counts"]["public.orders"], 5000,
        "{source}"
    );

    let secret = "uri-pw-4b1e";
    let with_pw = format!("postgresql://postgres:{secret}@{socket}:5432/app");
    let (out, _) = env.backup_json(&["--postgres", &with_pw]);
    assert_code(&out, 2);
    assert!(!stderr(&out).contains(secret), "{}", stderr(&out));
}

/// docs/RECOVERY.md step 4: the dump streamed by `vault dump` into
/// `pg_restore` of a live server, all or nothing, then one table from the
/// dump saved as a file; row counts match the snapshot header's.
#[test]
fn the_runbook_restores_a_dump_into_a_live_server() {
    let (pg, env, v) = app_backed_up();
    let counts = source_of_kind(&v, "postgres")["details"]["row_counts"].clone();
    pg.sql(
        "postgres",
        "CREATE DATABASE app_restored TEMPLATE template0",
    );
    let pipe = format!(
        "{} --no-config dump -r {} -i {} latest postgres/app.dump | pg_restore --no-owner \
         --dbname app_restored --exit-on-error --single-transaction",
        vault_bin().display(),
        env.repo.display(),
        env.owner_key.display()
    );
    let out = Command::new("bash")
        .args(["-o", "pipefail", "-c", &pipe])
        .env("PGHOST", pg.dir.path())
        .env("PGPORT", "5432")
        .env("PGUSER", "postgres")
        .output()
        .unwrap();
    assert_success(&out);
    assert_eq!(
        pg.sql("app_restored", "SELECT count(*) FROM public.orders"),
        counts["public.orders"].to_string()
    );
    assert_eq!(
        pg.sql("app_restored", "SELECT count(*) FROM billing.\"Invoices\""),
        counts["billing.\"Invoices\""].to_string()
    );
    // One table's rows from the dump as a file, into a database that has
    // lost them.
    let file = env.path("app.dump");
    let out = env.vault(&["dump"], &env.owner_key, &["latest", "postgres/app.dump"]);
    assert_success(&out);
    std::fs::write(&file, &out.stdout).unwrap();
    pg.sql("app_restored", "TRUNCATE public.orders");
    let out = Command::new("pg_restore")
        .args([
            "--dbname",
            "app_restored",
            "--table",
            "orders",
            "--data-only",
        ])
        .arg(&file)
        .env("PGHOST", pg.dir.path())
        .env("PGPORT", "5432")
        .env("PGUSER", "postgres")
        .output()
        .unwrap();
    assert_success(&out);
    assert_eq!(
        pg.sql("app_restored", "SELECT count(*) FROM public.orders"),
        "5000"
    );
}

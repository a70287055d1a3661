//! Two databases of the same name from different servers in one snapshot:
//! `--postgres-name` / `name =` in `[[backup.postgres]]` name the dump,
//! the drill and the status line; two sources of one name are refused
//! before anything is written, naming both.

use std::fs;

use crate::postgres::{PgServer, drill, drill_tmp, make_app_db};
use crate::util::*;

#[test]
fn two_app_databases_from_two_servers_share_a_snapshot() {
    let (primary, replica) = (PgServer::start(), PgServer::start());
    make_app_db(&primary);
    make_app_db(&replica);
    replica.sql("app", "DELETE FROM orders WHERE id > 1000");
    let env = Env::new();
    let (p, r) = (primary.conninfo("app"), replica.conninfo("app"));

    // Same database name twice, no names: refused, naming both sources.
    let (out, _) = env.backup_json(&["--postgres", &p, "--postgres", &r]);
    assert_code(&out, 2);
    let err = stderr(&out);
    assert_contains(&err, "postgres/app.dump");
    assert_contains(&err, &primary.dir.path().display().to_string());
    assert_contains(&err, &replica.dir.path().display().to_string());
    assert_contains(&err, "--postgres-name");
    // A bad name, and two names after one source.
    let (out, _) = env.backup_json(&["--postgres", &p, "--postgres-name", "../etc"]);
    assert_code(&out, 2);
    assert_contains(&stderr(&out), "\"../etc\"");
    let (out, _) = env.backup_json(&[
        "--postgres",
        &p,
        "--postgres-name",
        "a",
        "--postgres-name",
        "b",
    ]);
    assert_code(&out, 2);
    assert_contains(
        &stderr(&out),
        "--postgres-name \"a\" and \"b\" both follow the same --postgres",
    );
    assert!(
        snapshot_ids_in(env.repo.to_str().unwrap(), &env.writer_key).is_empty(),
        "nothing written"
    );

    // Named: a name applies to the --postgres it follows, so the primary
    // keeps its database's name and the replica is app-replica.
    let (out, v) = env.backup_json(&[
        "--postgres",
        &p,
        "--postgres",
        &r,
        "--postgres-name",
        "app-replica",
    ]);
    assert_success(&out);
    let names: Vec<&str> = v["snapshot"]["sources"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["kind"] == "postgres")
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["postgres/app.dump", "postgres/app-replica.dump"]);
    let replica_source = v["snapshot"]["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "postgres/app-replica.dump")
        .unwrap();
    assert_eq!(replica_source["details"]["database"], "app");
    assert_eq!(
        replica_source["details"]["row_counts"]["public.orders"],
        1000
    );

    // The drill loads both, each against its own row counts.
    let (out, d) = drill(&env);
    assert_success(&out);
    let dbs = d["report"]["databases"].as_array().unwrap();
    let by_name = |n: &str| {
        dbs.iter()
            .find(|x| x["name"] == n)
            .unwrap_or_else(|| panic!("{n}: {d}"))
    };
    assert_eq!(by_name("postgres/app.dump")["passed"], true);
    assert_eq!(by_name("postgres/app-replica.dump")["passed"], true);
    // Status names each source.
    let out = env.vault(&["status"], &env.writer_key, &["--json"]);
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let sources: Vec<&str> = s["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["source"].as_str().unwrap())
        .collect();
    assert!(
        sources.contains(&"postgres:postgres/app-replica.dump")
            && sources.contains(&"postgres:postgres/app.dump"),
        "{sources:?}"
    );
    drop(drill_tmp(&env));

    // The same from a config file; `config check` refuses duplicates.
    let config = env.path("vault.toml");
    let entry = |c: &str, name: Option<&str>| {
        format!(
            "[[backup.postgres]]\nconninfo = {c:?}\n{}",
            name.map(|n| format!("name = {n:?}\n")).unwrap_or_default()
        )
    };
    fs::write(
        &config,
        format!("[backup]\n{}{}", entry(&p, None), entry(&r, None)),
    )
    .unwrap();
    let out = run(&["config", "check", "--config", config.to_str().unwrap()]);
    assert_code(&out, 2);
    let said = format!("{}{}", stdout(&out), stderr(&out));
    assert_contains(&said, "postgres/app.dump");
    assert_contains(&said, "backup.postgres");
    fs::write(
        &config,
        format!(
            "[backup]\n{}{}",
            entry(&p, None),
            entry(&r, Some("app-replica"))
        ),
    )
    .unwrap();
    let out = run(&[
        "--config",
        config.to_str().unwrap(),
        "backup",
        "-r",
        env.repo.to_str().unwrap(),
        "-i",
        env.writer_key.to_str().unwrap(),
        "--no-cache",
        "--json",
    ]);
    assert_success(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        v["snapshot"]["sources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["name"] == "postgres/app-replica.dump"),
        "{v}"
    );
}

/// A `--postgres-name` names the `--postgres` it follows; one that follows
/// none, or an empty one, is refused before anything is read or written.
#[test]
fn a_postgres_name_must_follow_its_source() {
    let env = Env::new();
    let db = "dbname=app host=/nonexistent";
    for (args, needle) in [
        (
            vec!["--postgres-name", "early", "--postgres", db],
            "follows none on the command line",
        ),
        (
            vec!["--postgres", db, "--postgres-name", ""],
            "--postgres-name needs a name",
        ),
        (
            vec![
                "--postgres",
                db,
                "--postgres-name",
                "a",
                "--postgres-name",
                "b",
            ],
            "both follow the same --postgres",
        ),
    ] {
        let (out, _) = env.backup_json(&args);
        assert_code(&out, 2);
        assert_contains(&stderr(&out), needle);
    }
    assert!(
        snapshot_ids_in(env.repo.to_str().unwrap(), &env.writer_key).is_empty(),
        "nothing written"
    );
}

//! `vault status`: backup and drill ages per source against thresholds,
//! with the writer key, as JSON and as a Prometheus textfile.

use std::fs;

use crate::util::*;

#[test]
fn status_needs_a_passed_drill_and_a_fresh_backup() {
    let env = Env::new();
    let src = env.path("src");
    sample_tree(&src);
    env.backup(&[&src]);

    // The writer key is enough; without a drill the source needs attention.
    let out = env.vault(&["status"], &env.writer_key, &[]);
    assert_code(&out, 1);
    assert_contains(&stdout(&out), "no passed restore drill");

    assert_success(&env.vault(&["drill"], &env.owner_key, &[]));
    let prom = env.path("metrics/vault.prom");
    fs::create_dir_all(prom.parent().unwrap()).unwrap();
    let out = env.vault(
        &["status"],
        &env.writer_key,
        &["--json", "--prometheus", prom.to_str().unwrap()],
    );
    assert_success(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], true, "{v}");
    let source = &v["sources"][0];
    assert_eq!(source["source"], format!("paths:{}", src.display()));
    assert!(source["backup_age_seconds"].as_i64().unwrap() < 600);
    assert!(source["last_passed_drill"].is_string());
    let text = fs::read_to_string(&prom).unwrap();
    assert_contains(&text, "vault_status_ok 1\n");
    assert_contains(
        &text,
        &format!(
            "vault_source_ok{{host=\"{}\",source=\"paths:{}\"}} 1\n",
            v["sources"][0]["host"].as_str().unwrap(),
            src.display()
        ),
    );
    let mode = fs::metadata(&prom).unwrap().permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o644
    );
    assert_eq!(
        fs::read_dir(prom.parent().unwrap()).unwrap().count(),
        1,
        "no temp file left"
    );

    // A threshold the backup cannot meet makes it stale, named in the output.
    let out = env.vault(
        &["status"],
        &env.writer_key,
        &[
            "--max-backup-age",
            "0s",
            "--prometheus",
            prom.to_str().unwrap(),
        ],
    );
    assert_code(&out, 1);
    assert_contains(&stdout(&out), "last complete backup is");
    assert_contains(&fs::read_to_string(&prom).unwrap(), "vault_status_ok 0\n");
}

#[test]
fn a_failed_drill_after_the_last_pass_is_reported() {
    let env = Env::new();
    let src = env.path("src");
    write(&src.join("f"), &noise(100_000, 5));
    env.backup(&[&src]);
    assert_success(&env.vault(&["drill"], &env.owner_key, &[]));
    // Damage every data pack, then drill again: it fails and status says so.
    for dir in fs::read_dir(env.repo.join("data")).unwrap() {
        for pack in fs::read_dir(dir.unwrap().path()).unwrap() {
            let p = pack.unwrap().path();
            let mut bytes = fs::read(&p).unwrap();
            let n = bytes.len();
            bytes[n / 2] ^= 0xff;
            fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
            fs::write(&p, bytes).unwrap();
        }
    }
    let out = env.vault(&["drill"], &env.owner_key, &[]);
    assert!(!out.status.success());
    let out = env.vault(&["status"], &env.writer_key, &[]);
    assert_code(&out, 1);
    assert_contains(&stdout(&out), "a drill failed at");
}

/// The status table stays aligned when a source label is longer than its
/// column: the header's "last backup" starts where each row's age does.
#[test]
fn status_table_stays_aligned_with_long_source_labels() {
    let env = Env::new();
    let src = env.path("a-source-directory-with-a-rather-long-name/and-a-subdirectory");
    sample_tree(&src);
    env.backup(&[&src]);
    let out = env.vault(&["status"], &env.writer_key, &[]);
    assert_code(&out, 1);
    let text = stdout(&out);
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    let row = lines.next().unwrap();
    assert!(row.contains("paths:"), "{text}");
    let column = header.find("last backup").unwrap();
    assert!(
        row.len() > column && row[column..].starts_with(|c: char| c.is_ascii_digit()),
        "the age does not start under its header:\n{text}"
    );
    assert_eq!(&row[column - 2..column], "  ", "{text}");
}

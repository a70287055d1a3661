//! `vault systemd`: the units it writes pass `systemd-analyze verify`, and
//! existing units are only replaced with --force.

use std::path::Path;
use std::process::Command;

use crate::util::*;

const UNITS: [&str; 4] = [
    "vault-backup.service",
    "vault-backup.timer",
    "vault-drill.service",
    "vault-drill.timer",
];

/// Writes the units into `dir/units` with credential files that exist.
fn write_units(dir: &Path, extra: &[&str]) -> std::process::Output {
    for name in ["writer.key", "owner.key", "aws"] {
        write(&dir.join("etc").join(name), b"secret\n");
    }
    let cred = |name: &str| format!("{name}:{}", dir.join("etc").join(name).display());
    let (w, o, a) = (cred("writer.key"), cred("owner.key"), cred("aws"));
    let out_dir = dir.join("units");
    let repo = dir.join("repo");
    let mut args = vec![
        "systemd",
        "--user",
        "vault",
        "--group",
        "vault",
        "--output",
        out_dir.to_str().unwrap(),
        "--credential",
        &w,
        "--credential",
        &o,
        "--credential",
        &a,
        "--read-path",
        "/etc",
        "--write-path",
        repo.to_str().unwrap(),
        "--on-calendar",
        "*-*-* 02:30",
    ];
    args.extend(extra);
    run(&args)
}

#[test]
fn written_units_pass_systemd_analyze_verify() {
    let dir = tempfile::tempdir().unwrap();
    let out = write_units(dir.path(), &[]);
    assert_success(&out);
    let files: Vec<_> = UNITS
        .iter()
        .map(|u| dir.path().join("units").join(u))
        .collect();
    for f in &files {
        assert!(f.is_file(), "{} not written", f.display());
    }
    let service = std::fs::read_to_string(&files[0]).unwrap();
    assert_contains(
        &service,
        &format!("ExecStart={} --config", vault_bin().display()),
    );
    let verify = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .args(&files)
        .current_dir(dir.path())
        .output()
        .expect(
            "systemd-analyze is missing: run scripts/install-test-deps.sh (Debian package systemd)",
        );
    let text = format!("{}{}", stdout(&verify), stderr(&verify));
    let ours: Vec<&str> = text.lines().filter(|l| l.contains("vault-")).collect();
    assert!(
        verify.status.success() && ours.is_empty(),
        "systemd-analyze verify ({:?}) complained:\n{text}",
        verify.status.code()
    );
}

#[test]
fn existing_units_are_replaced_only_with_force() {
    let dir = tempfile::tempdir().unwrap();
    let timer = dir.path().join("units/vault-drill.timer");
    write(&timer, b"# the operator's own\n");
    let out = write_units(dir.path(), &[]);
    assert_code(&out, 2);
    assert_contains(&stderr(&out), "--force");
    assert_eq!(std::fs::read(&timer).unwrap(), b"# the operator's own\n");
    assert!(!dir.path().join("units/vault-backup.service").exists());

    assert_success(&write_units(dir.path(), &["--force"]));
    assert_contains(
        &std::fs::read_to_string(&timer).unwrap(),
        "OnCalendar=weekly",
    );
}

#[test]
fn units_print_to_stdout_without_output() {
    let out = run(&["systemd", "--user", "vault"]);
    assert_success(&out);
    let text = stdout(&out);
    for u in UNITS {
        assert_contains(&text, &format!("# {u}\n"));
    }
    assert_contains(&text, "LoadCredential=writer.key:/etc/vault/writer.key");
    let out = run(&["systemd", "--user", "vault", "--credential", "nocolon"]);
    assert_code(&out, 2);
}

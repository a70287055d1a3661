//! `vault systemd`: the units it writes pass `systemd-analyze verify`, and
//! existing units are only replaced with --force.

use std::path::Path;
use std::process::Command;

use crate::util::*;

const BACKUP_UNITS: [&str; 2] = ["vault-backup.service", "vault-backup.timer"];
const DRILL_UNITS: [&str; 4] = [
    "vault-drill.service",
    "vault-drill.timer",
    "vault-forget.service",
    "vault-forget.timer",
];

/// A directory outside /tmp and the build directory (an installed-looking
/// place) holding a copy of the vault binary, for ExecStart=.
fn installed_copy() -> (tempfile::TempDir, std::path::PathBuf) {
    let home = std::env::var_os("HOME").expect("HOME");
    let base = Path::new(&home).join(".cache");
    std::fs::create_dir_all(&base).unwrap();
    let dir = tempfile::Builder::new()
        .prefix("vault-units-test")
        .tempdir_in(&base)
        .unwrap();
    let bin = dir.path().join("vault");
    std::fs::copy(vault_bin(), &bin).unwrap();
    (dir, bin)
}

/// Writes the units into `dir/units` with credential files that exist and
/// a configuration file naming a local repository, a Prometheus file, a
/// cache directory and a retention policy.
fn write_units(dir: &Path, bin: &Path, extra: &[&str]) -> std::process::Output {
    for name in ["writer.key", "owner.key", "aws"] {
        write(&dir.join("etc").join(name), b"secret\n");
    }
    let config = dir.join("etc/vault.toml");
    write(
        &config,
        format!(
            "repository = {:?}\ncache_dir = {:?}\n[retention]\nkeep_daily = 7\n[status]\n\
             prometheus_file = {:?}\n",
            dir.join("repo"),
            dir.join("cache"),
            dir.join("prom/vault.prom"),
        )
        .as_bytes(),
    );
    let cred = |name: &str| format!("{name}:{}", dir.join("etc").join(name).display());
    let a = cred("aws");
    let out_dir = dir.join("units");
    let mut args = vec![
        "systemd",
        "--user",
        "vault",
        "--group",
        "vault",
        "--vault-bin",
        bin.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
        "--output",
        out_dir.to_str().unwrap(),
        "--credential",
        &a,
        "--read-path",
        "/etc",
        "--on-calendar",
        "*-*-* 02:30",
    ];
    args.extend(extra);
    run(&args)
}

#[test]
fn written_units_pass_systemd_analyze_verify() {
    let dir = tempfile::tempdir().unwrap();
    let (_installed, bin) = installed_copy();
    let w = format!("writer.key:{}", dir.path().join("etc/writer.key").display());
    let o = format!("owner.key:{}", dir.path().join("etc/owner.key").display());
    assert_success(&write_units(dir.path(), &bin, &["--credential", &w]));
    assert_success(&write_units(
        dir.path(),
        &bin,
        &["--drill", "--credential", &o],
    ));
    let files: Vec<_> = BACKUP_UNITS
        .iter()
        .chain(&DRILL_UNITS)
        .map(|u| dir.path().join("units").join(u))
        .collect();
    for f in &files {
        assert!(f.is_file(), "{} not written", f.display());
    }
    let read = |name: &str| std::fs::read_to_string(dir.path().join("units").join(name)).unwrap();
    let backup = read("vault-backup.service");
    assert_contains(&backup, &format!("ExecStart={} --config", bin.display()));
    // The configuration file's paths: the local repository and the
    // Prometheus directory are writable, its cache directory is the cache.
    for u in [
        "vault-backup.service",
        "vault-drill.service",
        "vault-forget.service",
    ] {
        let text = read(u);
        assert_contains(
            &text,
            &format!("ReadWritePaths={}\n", dir.path().join("repo").display()),
        );
        assert_contains(
            &text,
            &format!("ReadWritePaths={}\n", dir.path().join("prom").display()),
        );
        assert_contains(
            &text,
            &format!(
                "LoadCredential=aws:{}",
                dir.path().join("etc/aws").display()
            ),
        );
        // Every command reads the file's cache_dir: drill and forget too
        // must be able to write it under ProtectSystem=strict.
        assert_contains(
            &text,
            &format!(
                "Environment=VAULT_CACHE_DIR={}\n",
                dir.path().join("cache").display()
            ),
        );
        assert_contains(
            &text,
            &format!("ReadWritePaths={}\n", dir.path().join("cache").display()),
        );
        assert!(!text.contains("CacheDirectory="), "{u}: {text}");
    }
    // The owner key only on the drill host's units.
    assert!(!backup.contains("owner.key"), "{backup}");
    assert_contains(
        &read("vault-drill.service"),
        "Environment=VAULT_IDENTITY=%d/owner.key",
    );
    assert_contains(&read("vault-forget.service"), "forget\n");
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
    let (_installed, bin) = installed_copy();
    let timer = dir.path().join("units/vault-drill.timer");
    write(&timer, b"# the operator's own\n");
    let out = write_units(dir.path(), &bin, &["--drill"]);
    assert_code(&out, 2);
    assert_contains(&stderr(&out), "--force");
    assert_eq!(std::fs::read(&timer).unwrap(), b"# the operator's own\n");
    assert!(!dir.path().join("units/vault-drill.service").exists());

    assert_success(&write_units(dir.path(), &bin, &["--drill", "--force"]));
    assert_contains(
        &std::fs::read_to_string(&timer).unwrap(),
        "OnCalendar=weekly",
    );
}

#[test]
fn units_print_to_stdout_without_output() {
    let (_installed, bin) = installed_copy();
    let b = bin.to_str().unwrap();
    let out = run(&[
        "systemd",
        "--user",
        "vault",
        "--vault-bin",
        b,
        "--config",
        "/nonexistent/vault.toml",
    ]);
    assert_success(&out);
    let text = stdout(&out);
    for u in BACKUP_UNITS {
        assert_contains(&text, &format!("# {u}\n"));
    }
    assert!(
        !text.contains("vault-drill"),
        "drill units only with --drill"
    );
    assert!(!text.contains("owner.key"));
    assert_contains(&text, "LoadCredential=writer.key:/etc/vault/writer.key");
    let out = run(&[
        "systemd",
        "--user",
        "vault",
        "--vault-bin",
        b,
        "--drill",
        "--config",
        "/nonexistent/vault.toml",
    ]);
    assert_success(&out);
    let text = stdout(&out);
    assert_contains(&text, "# vault-drill.service\n");
    assert!(
        !text.contains("vault-backup") && !text.contains("vault-forget"),
        "{text}"
    );
    assert_contains(&text, "LoadCredential=owner.key:/etc/vault/owner.key");
    // Without a cache_dir the drill gets systemd's cache directory, as the
    // backup does, instead of a home directory that may not exist.
    assert_contains(&text, "CacheDirectory=vault\n");
    assert_contains(&text, "Environment=VAULT_CACHE_DIR=%C/vault\n");
}

#[test]
fn systemd_refuses_bad_input_before_writing_anything() {
    let dir = tempfile::tempdir().unwrap();
    let (_installed, bin) = installed_copy();
    let b = bin.to_str().unwrap();
    let out_dir = dir.path().join("units");
    let o = out_dir.to_str().unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--credential", "nocolon"], "NAME:PATH"),
        (vec!["--credential", "site:/etc/x"], "is not one vault uses"),
        (
            vec!["--credential", "owner.key:/etc/vault/owner.key"],
            "drill host",
        ),
        (
            vec![
                "--drill",
                "--credential",
                "writer.key:/etc/vault/writer.key",
            ],
            "backup host",
        ),
        (vec!["--on-calendar", "dayly"], "calendar expression"),
        (
            vec!["--drill", "--drill-on-calendar", "every sunday"],
            "calendar expression",
        ),
        (vec!["--user", "vault-nosuch-user"], "useradd --system"),
        (vec!["--group", "vault-nosuch-group"], "groupadd"),
        (vec!["--vault-bin", "/nonexistent/vault"], "does not exist"),
    ];
    for (extra, msg) in cases {
        let mut args = vec![
            "systemd",
            "--output",
            o,
            "--config",
            "/nonexistent/vault.toml",
        ];
        if !extra.contains(&"--user") {
            args.extend(["--user", "vault"]);
        }
        if !extra.contains(&"--vault-bin") {
            args.extend(["--vault-bin", b]);
        }
        args.extend(&extra);
        let out = run(&args);
        assert_code(&out, 2);
        assert_contains(&stderr(&out), msg);
        assert!(!out_dir.exists(), "{extra:?} wrote units");
    }
    // This test binary lives in a build directory; a copy under /tmp is
    // hidden by PrivateTmp=: both refused as ExecStart.
    let out = run(&[
        "systemd",
        "--user",
        "vault",
        "--config",
        "/nonexistent/vault.toml",
    ]);
    assert_code(&out, 2);
    // A checkout under /tmp (a CI clone, say) is refused as a temporary
    // directory first.
    let err = stderr(&out);
    assert!(
        err.contains("build directory") || err.contains("a temporary directory"),
        "{err}"
    );
    let tmp_bin = dir.path().join("vault");
    std::fs::copy(vault_bin(), &tmp_bin).unwrap();
    let out = run(&[
        "systemd",
        "--user",
        "vault",
        "--vault-bin",
        tmp_bin.to_str().unwrap(),
    ]);
    assert_code(&out, 2);
    assert_contains(&stderr(&out), "temporary directory");
    // An invalid configuration file stops it too: systemd reads the file
    // its units pass to vault itself, so --no-config does not skip it, and
    // the message names the place in the file.
    let config = dir.path().join("bad.toml");
    write(&config, b"[retention]\nkeep_daily = \"7\"\n");
    let c = config.to_str().unwrap();
    for global in [&[][..], &["--no-config"][..]] {
        let mut args = global.to_vec();
        args.extend([
            "systemd",
            "--user",
            "vault",
            "--vault-bin",
            b,
            "--config",
            c,
        ]);
        let out = run(&args);
        assert_code(&out, 2);
        let err = stderr(&out);
        assert_contains(&err, &format!("{c}:2:"));
        assert_contains(&err, "vault config check");
    }
    // A package's units read no file.
    let out = run(&[
        "systemd",
        "--for-package",
        "--user",
        "vault",
        "--vault-bin",
        "/usr/bin/vault",
        "--config",
        c,
    ]);
    assert_success(&out);
}

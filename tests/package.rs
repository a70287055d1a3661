//! Installing and reading vault: the manual pages' operator sections,
//! vault.toml(5), and the Debian package `scripts/package.sh` builds,
//! unpacked (never installed) and checked.

use std::fs;
use std::path::Path;
use std::process::Command;

use crate::util::*;

/// `man --warnings -l PAGE`'s complaints, or None without `man`.
fn man_warnings(page: &Path) -> Option<String> {
    let out = Command::new("man")
        .args(["--warnings", "-l"])
        .arg(page)
        .env("MANWIDTH", "100")
        .env("MAN_KEEP_FORMATTING", "0")
        .output()
        .ok()?;
    assert!(
        out.status.success(),
        "man -l {}: {}",
        page.display(),
        stderr(&out)
    );
    Some(stderr(&out))
}

#[test]
fn man_pages_have_exit_status_environment_files_examples_and_a_config_page() {
    let out = run(&["--no-config", "man"]);
    assert_success(&out);
    let page = stdout(&out);
    for section in [
        ".SH \"EXIT STATUS\"",
        ".SH ENVIRONMENT",
        ".SH FILES",
        ".SH EXAMPLES",
        ".SH OPTIONS",
    ] {
        assert_contains(&page, section);
    }
    assert_contains(&page, "VAULT_PASSPHRASE_FILE");
    assert_contains(&page, "\\fB130\\fR");
    let dir = tempfile::tempdir().unwrap();
    let man1 = dir.path().join("share/man/man1");
    let out = run(&["--no-config", "man", "--output", man1.to_str().unwrap()]);
    assert_success(&out);
    let five = dir.path().join("share/man/man5/vault.toml.5");
    let config = fs::read_to_string(&five).unwrap();
    assert!(config.starts_with(".TH VAULT.TOML 5"), "{config}");
    for key in [
        "\\fBkeep_daily\\fR",
        ".SH \"[retention]\"",
        "\\fBpassphrase_file\\fR",
    ] {
        assert_contains(&config, key);
    }
    assert!(man1.join("vault-diff.1").is_file());
    assert_contains(
        &fs::read_to_string(man1.join("vault.1")).unwrap(),
        ".SH \"EXIT STATUS\"",
    );
    // Both render without a roff warning where man is installed.
    for p in [man1.join("vault.1"), five] {
        if let Some(w) = man_warnings(&p) {
            assert!(w.trim().is_empty(), "{}: {w}", p.display());
        }
    }
    let out = run(&["--no-config", "man", "vault.conf"]);
    assert_code(&out, 2);
    assert_contains(&stderr(&out), "possible values: vault, vault.toml");
}

/// Why the package cannot be built here, if it cannot: dpkg-deb is on
/// every Debian; strip comes with binutils (the Rust toolchain's linker).
fn packaging_unavailable() -> Option<String> {
    for (tool, arg) in [("dpkg-deb", "--version"), ("strip", "--version")] {
        if Command::new(tool).arg(arg).output().is_err() {
            return Some(format!(
                "{tool} is not installed (apt-get install dpkg binutils)"
            ));
        }
    }
    None
}

#[test]
fn the_deb_unpacks_into_a_working_binary_pages_completions_and_units() {
    if let Some(why) = packaging_unavailable() {
        println!(
            "SKIPPED the_deb_unpacks_into_a_working_binary_pages_completions_and_units: {why}"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new("bash")
        .arg("scripts/package.sh")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("VAULT_PACKAGE_BIN", vault_bin())
        .env("VAULT_PACKAGE_OUT", dir.path().join("out"))
        .output()
        .unwrap();
    assert_success(&out);
    let deb = stdout(&out).lines().last().unwrap().to_owned();
    assert!(
        deb.ends_with("_amd64.deb") || deb.ends_with(".deb"),
        "{deb}"
    );
    let info = Command::new("dpkg-deb")
        .args(["-I", &deb])
        .output()
        .unwrap();
    assert_success(&info);
    assert_contains(&stdout(&info), "Package: vault");
    assert_contains(&stdout(&info), "postinst");
    assert_contains(&stdout(&info), "Depends: ");
    assert_contains(&stdout(&info), "libc6");
    // Staged in a temporary directory: nothing left in the source tree.
    let tree = Path::new(env!("CARGO_MANIFEST_DIR"));
    assert!(!tree.join(".deb-stage").exists(), "staged in the tree");
    // A binary that is not there: an error naming it, no package.
    let missing = dir.path().join("no-such-vault");
    let bad = Command::new("bash")
        .arg("scripts/package.sh")
        .current_dir(tree)
        .env("VAULT_PACKAGE_BIN", &missing)
        .env("VAULT_PACKAGE_OUT", dir.path().join("bad"))
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert_contains(&stderr(&bad), "no-such-vault");
    assert!(
        !dir.path().join("bad").exists(),
        "no package for a bad binary"
    );

    // Unpacked into a temporary directory, never installed.
    let root = dir.path().join("root");
    let x = Command::new("dpkg-deb")
        .arg("-x")
        .arg(&deb)
        .arg(&root)
        .output()
        .unwrap();
    assert_success(&x);
    let version = Command::new(root.join("usr/bin/vault"))
        .arg("--version")
        .output()
        .unwrap();
    assert_success(&version);
    assert_eq!(
        stdout(&version).trim(),
        format!("vault {}", env!("CARGO_PKG_VERSION"))
    );
    for f in [
        "usr/share/man/man1/vault.1.gz",
        "usr/share/man/man1/vault-restore.1.gz",
        "usr/share/man/man5/vault.toml.5.gz",
        "usr/share/bash-completion/completions/vault",
        "usr/share/zsh/vendor-completions/_vault",
        "usr/share/fish/vendor_completions.d/vault.fish",
        "usr/share/doc/vault/examples/vault.toml.example",
        "usr/share/doc/vault/README.md",
        "usr/share/doc/vault/SECURITY.md",
        "usr/share/doc/vault/RECOVERY.md",
    ] {
        let m = fs::metadata(root.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
        assert!(m.len() > 0, "{f} is empty");
    }
    // No debug info in the packaged binary.
    let sections = Command::new("objdump")
        .arg("-h")
        .arg(root.join("usr/bin/vault"))
        .output();
    if let Ok(s) = sections {
        assert!(!stdout(&s).contains(".debug_info"), "debug info packaged");
    }

    let units_dir = root.join("usr/lib/systemd/system");
    let mut units: Vec<String> = fs::read_dir(&units_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    units.sort();
    assert_eq!(
        units,
        [
            "vault-backup.service",
            "vault-backup.timer",
            "vault-drill.service",
            "vault-drill.timer"
        ]
    );
    for u in &units {
        let text = fs::read_to_string(units_dir.join(u)).unwrap();
        if u.ends_with(".service") {
            assert_contains(&text, "ExecStart=/usr/bin/vault ");
            assert_contains(&text, "User=vault\n");
        }
    }
    // systemd-analyze verify against the unpacked tree as the root (its
    // ExecStart= binary is the unpacked one), with this machine's own
    // targets beside the units so that their dependencies resolve.
    let copy = Command::new("cp")
        .args(["-an", "/usr/lib/systemd/system/."])
        .arg(&units_dir)
        .output()
        .unwrap();
    assert_success(&copy);
    let verify = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(format!("--root={}", root.display()))
        .args(&units)
        .output()
        .expect("systemd-analyze is missing: run scripts/install-test-deps.sh");
    let text = format!("{}{}", stdout(&verify), stderr(&verify));
    assert!(
        verify.status.success() && !text.contains("vault-"),
        "systemd-analyze verify complained:\n{text}"
    );
}

#[test]
fn units_for_a_package_name_an_absolute_vault_bin() {
    let out = run(&["--no-config", "systemd", "--for-package", "--user", "vault"]);
    assert_code(&out, 2);
    assert_contains(&stderr(&out), "--vault-bin");
    let out = run(&[
        "--no-config",
        "systemd",
        "--for-package",
        "--user",
        "vault",
        "--vault-bin",
        "bin/vault",
    ]);
    assert_code(&out, 2);
    assert_contains(
        &stderr(&out),
        "--vault-bin bin/vault: must be an absolute path",
    );
    // The binary need not exist on the building machine, nor the user.
    let out = run(&[
        "--no-config",
        "systemd",
        "--for-package",
        "--user",
        "vault-pkg-user-absent",
        "--vault-bin",
        "/opt/nowhere/vault",
    ]);
    assert_success(&out);
    assert_contains(&stdout(&out), "ExecStart=/opt/nowhere/vault ");
}

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

//! `vault completions` and `vault man`: generated from the command-line
//! definitions, so they list every command.

use crate::util::*;

#[test]
fn bash_completion_lists_the_commands() {
    let out = run(&["completions", "bash"]);
    assert_success(&out);
    let text = stdout(&out);
    for word in [
        "_vault()",
        "backup",
        "restore",
        "systemd",
        "complete -F _vault",
    ] {
        assert_contains(&text, word);
    }
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let out = run(&["completions", shell]);
        assert_success(&out);
        assert_contains(&stdout(&out), "restore");
    }
    assert_code(&run(&["completions", "tcsh"]), 2);
}

#[test]
fn man_page_prints_and_writes_one_page_per_command() {
    let out = run(&["man"]);
    assert_success(&out);
    let page = stdout(&out);
    // clap_mangen defines the \*(Aq string (.ie/.el) before the title.
    let first = page
        .lines()
        .find(|l| !l.starts_with(".ie ") && !l.starts_with(".el "))
        .unwrap_or_default();
    assert!(
        first.starts_with(".TH vault 1"),
        "page starts with:\n{page}"
    );
    assert_contains(&page, "backup");

    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("man1");
    assert_success(&run(&["man", "--output", out_dir.to_str().unwrap()]));
    for name in [
        "vault.1",
        "vault-backup.1",
        "vault-restore.1",
        "vault-key-generate.1",
        "vault-key-passwd.1",
        "vault-tag.1",
        "vault-systemd.1",
    ] {
        let text =
            std::fs::read_to_string(out_dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(text.contains(".TH "), "{name} has no .TH");
    }
}

/// The runbook and the README name commands and flags that exist, and the
/// README sends a new operator to `vault drill` and to the runbook.
#[test]
fn the_recovery_runbook_uses_real_commands_and_the_readme_links_it() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    assert_contains(&readme, "run `vault drill` once");
    assert_contains(&readme, "(docs/RECOVERY.md)");
    let runbook = std::fs::read_to_string(root.join("docs/RECOVERY.md")).unwrap();
    let mut checked = 0;
    for line in runbook.lines().map(str::trim) {
        let Some(rest) = line.strip_prefix("vault --no-config ") else {
            continue;
        };
        let words: Vec<&str> = rest.split_whitespace().collect();
        let cmd = words[0];
        let out = run(&["--no-config", cmd, "--help"]);
        assert_success(&out);
        let help = stdout(&out);
        for flag in words.iter().filter(|w| w.starts_with("--")) {
            assert_contains(&help, flag);
        }
        checked += 1;
    }
    assert!(checked >= 8, "only {checked} commands found in the runbook");
}

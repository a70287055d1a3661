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
    ] {
        let text =
            std::fs::read_to_string(out_dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(text.contains(".TH "), "{name} has no .TH");
    }
}

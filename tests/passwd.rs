//! `vault key passwd`: a passphrase owner's passphrase changes; the new one
//! is asked twice; the old owner file goes only after the new one opens;
//! bad input changes nothing; an interrupted change is finished by a rerun.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;

use crate::util::*;

struct PassRepo {
    dir: tempfile::TempDir,
    repo: PathBuf,
    writer: PathBuf,
}

impl PassRepo {
    fn new() -> PassRepo {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("repo");
        let writer = dir.path().join("writer.key");
        let r = PassRepo { dir, repo, writer };
        let pass = r.pass("old horse");
        let out = r.vault(
            &[
                "init",
                "--owner-passphrase",
                "--owner-name",
                "safe",
                "--writer-key-out",
                r.writer.to_str().unwrap(),
            ],
            &pass,
        );
        assert_success(&out);
        r
    }

    /// A 0600 file holding `p`.
    fn pass(&self, p: &str) -> PathBuf {
        let f = self
            .dir
            .path()
            .join(format!("pass-{}", p.replace(' ', "_")));
        fs::write(&f, format!("{p}\n")).unwrap();
        fs::set_permissions(&f, fs::Permissions::from_mode(0o600)).unwrap();
        f
    }

    fn vault(&self, args: &[&str], pass: &Path) -> Output {
        let (cmd, rest) = args.split_first().unwrap();
        let mut all = vec![*cmd];
        if *cmd == "key" {
            all.push(rest[0]);
            all.extend(["-r", self.repo.to_str().unwrap()]);
            all.extend(&rest[1..]);
        } else {
            all.extend(["-r", self.repo.to_str().unwrap()]);
            all.extend(rest);
        }
        std::process::Command::new(vault_bin())
            .args(&all)
            .env("VAULT_PASSPHRASE_FILE", pass)
            .env_remove("VAULT_CONFIG")
            .env_remove("VAULT_IDENTITY")
            .env_remove("VAULT_NEW_PASSPHRASE_FILE")
            .output()
            .unwrap()
    }

    fn opens_with(&self, p: &str) -> bool {
        self.vault(&["snapshots"], &self.pass(p)).status.success()
    }

    fn owner_files(&self) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(self.repo.join("keys/owners"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    fn passwd(&self, old: &str, new_file: &Path) -> Output {
        self.vault(
            &[
                "key",
                "passwd",
                "--new-passphrase-file",
                new_file.to_str().unwrap(),
            ],
            &self.pass(old),
        )
    }
}

#[test]
fn passwd_changes_the_passphrase_and_refuses_bad_input_first() {
    let r = PassRepo::new();
    let src = r.dir.path().join("src");
    write(&src.join("a"), b"a");
    backup_no_cache(&r.repo, &r.writer, &src);
    let before = fs::read(r.repo.join("keys/owners/safe.age")).unwrap();
    let unchanged = |r: &PassRepo| {
        assert_eq!(r.owner_files(), vec!["safe.age".to_owned()]);
        assert_eq!(
            fs::read(r.repo.join("keys/owners/safe.age")).unwrap(),
            before
        );
        assert!(r.opens_with("old horse"));
    };
    // A wrong current passphrase, an empty new one, the same one again, no
    // new passphrase without a terminal, an owner key instead of a passphrase.
    let out = r.passwd("wrong horse", &r.pass("new horse"));
    assert_code(&out, 1);
    assert_contains(&stderr(&out), "wrong passphrase or key");
    unchanged(&r);
    let empty = r.dir.path().join("empty");
    fs::write(&empty, "\n").unwrap();
    fs::set_permissions(&empty, fs::Permissions::from_mode(0o600)).unwrap();
    let out = r.passwd("old horse", &empty);
    assert!(!out.status.success());
    assert_contains(&stderr(&out), "empty");
    unchanged(&r);
    let out = r.passwd("old horse", &r.pass("old horse"));
    assert_code(&out, 2);
    assert_contains(&stderr(&out), "the new passphrase is the current one");
    unchanged(&r);
    let out = r.vault(&["key", "passwd"], &r.pass("old horse"));
    assert_code(&out, 2);
    assert_contains(&stderr(&out), "--new-passphrase-file");
    unchanged(&r);
    let out = r.passwd("old horse", &r.dir.path().join("missing"));
    assert!(!out.status.success());
    assert_contains(&stderr(&out), "missing");
    unchanged(&r);
    // Another owner under the name the change would use is never touched.
    let other = r.repo.join("keys/owners/safe.new.age");
    fs::write(&other, b"someone else's owner file").unwrap();
    let out = r.passwd("old horse", &r.pass("new horse"));
    assert!(!out.status.success());
    assert_contains(&stderr(&out), "safe.new.age exists");
    assert_eq!(fs::read(&other).unwrap(), b"someone else's owner file");
    fs::remove_file(&other).unwrap();
    unchanged(&r);

    let out = r.passwd("old horse", &r.pass("new horse"));
    assert_success(&out);
    assert!(!stdout(&out).contains("new horse") && !stderr(&out).contains("new horse"));
    assert_eq!(r.owner_files(), vec!["safe.age".to_owned()]);
    assert!(r.opens_with("new horse"));
    assert!(!r.opens_with("old horse"), "the old passphrase is gone");
    let target = r.dir.path().join("t");
    let out = r.vault(
        &["restore", "latest", "--target", target.to_str().unwrap()],
        &r.pass("new horse"),
    );
    assert_success(&out);
}

#[test]
fn passwd_refuses_an_owner_that_is_not_a_passphrase() {
    let env = Env::new();
    // An age-key owner opened with -i has no passphrase to change; passwd
    // takes no -i at all.
    let out = run(&[
        "key",
        "passwd",
        "-r",
        env.repo.to_str().unwrap(),
        "-i",
        env.owner_key.to_str().unwrap(),
    ]);
    assert_code(&out, 2);
}

#[test]
fn an_interrupted_passwd_is_finished_by_running_it_again() {
    let r = PassRepo::new();
    assert_success(&r.passwd("old horse", &r.pass("new horse")));
    // The state a crash leaves after the old file went, before the final
    // one was written: only the verified `.new` copy.
    fs::rename(
        r.repo.join("keys/owners/safe.age"),
        r.repo.join("keys/owners/safe.new.age"),
    )
    .unwrap();
    assert!(r.opens_with("new horse"));
    assert_success(&r.passwd("new horse", &r.pass("third horse")));
    assert_eq!(r.owner_files(), vec!["safe.age".to_owned()]);
    assert!(r.opens_with("third horse"));
    assert!(!r.opens_with("new horse"));
}

#[test]
fn passwd_asks_the_new_passphrase_twice_at_a_prompt() {
    let r = PassRepo::new();
    let attempt = |typed: &str| {
        let line = format!(
            "{} key passwd -r {}",
            vault_bin().display(),
            r.repo.display()
        );
        let mut child = std::process::Command::new("script")
            .args(["-qec", &line, "/dev/null"])
            .env_remove("VAULT_CONFIG")
            .env_remove("VAULT_PASSPHRASE_FILE")
            .env_remove("VAULT_NEW_PASSPHRASE_FILE")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("script (util-linux)");
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().unwrap();
            stdin.write_all(typed.as_bytes()).unwrap();
        }
        child.wait_with_output().unwrap()
    };
    let out = attempt("old horse\nnew horse\nother horse\n");
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert_contains(&stdout(&out), "the two passphrases differ");
    assert!(r.opens_with("old horse"));
    let out = attempt("old horse\n\n");
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert_contains(&stdout(&out), "an empty passphrase is refused");
    assert!(r.opens_with("old horse"));
    let out = attempt("old horse\nnew horse\nnew horse\n");
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(r.opens_with("new horse"));
    assert!(!r.opens_with("old horse"));
}

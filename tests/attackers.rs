//! The attackers of docs/SECURITY.md, each holding only what it really
//! holds, for the named attack vectors (`attacks_*.rs`).
//!
//! - [`StorageAttacker`]: write access to a local repository's directory and
//!   no key at all. It reads the plain `config` (public recipients) and can
//!   seal documents to those recipients with the age crate, as anyone could
//!   with the `age` command-line tool.
//! - [`WriterAttacker`]: a compromised backup host: the writer key and write
//!   access to the storage. It uses vault's own library opened with the
//!   writer key, which grants exactly what the key grants.
//! - [`peak_rss_mib`]: runs vault under GNU time to measure its peak memory.

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::str::FromStr;

use vault::repo::Repository;

use crate::util::open_repo;

/// Someone who can read and write the repository's files, without any key.
pub struct StorageAttacker {
    pub root: PathBuf,
}

impl StorageAttacker {
    pub fn new(root: &Path) -> Self {
        StorageAttacker {
            root: root.to_owned(),
        }
    }

    /// The plain `config` object.
    pub fn config(&self) -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(self.root.join("config")).unwrap()).unwrap()
    }

    /// The public recipients every sealed document goes to (owner, writer).
    pub fn recipients(&self) -> Vec<age::x25519::Recipient> {
        let c = self.config();
        ["owner_recipient", "writer_recipient"]
            .iter()
            .map(|k| age::x25519::Recipient::from_str(c[k].as_str().unwrap()).unwrap())
            .collect()
    }

    /// Seals `json` the way vault seals documents: zstd, then age to the
    /// public recipients.
    pub fn seal(&self, json: &[u8]) -> Vec<u8> {
        self.seal_with(|w| w.write_all(json).unwrap())
    }

    /// Like [`StorageAttacker::seal`], streaming the JSON through `write`
    /// (for documents far larger than their sealed form).
    pub fn seal_with(&self, write: impl FnOnce(&mut dyn Write)) -> Vec<u8> {
        let recipients = self.recipients();
        self.encrypt_to(
            recipients
                .iter()
                .map(|r| r as &dyn age::Recipient)
                .collect(),
            write,
        )
    }

    /// zstd then age to `recipients`.
    pub fn encrypt_to(
        &self,
        recipients: Vec<&dyn age::Recipient>,
        write: impl FnOnce(&mut dyn Write),
    ) -> Vec<u8> {
        let mut out = Vec::new();
        let enc = age::Encryptor::with_recipients(recipients.into_iter()).unwrap();
        let mut age_w = enc.wrap_output(&mut out).unwrap();
        {
            let mut z = zstd::stream::write::Encoder::new(&mut age_w, 3).unwrap();
            write(&mut z);
            z.finish().unwrap();
        }
        age_w.finish().unwrap();
        out
    }

    /// Stores `bytes` under `prefix` named by their BLAKE3, as vault names
    /// objects; returns the key.
    pub fn plant(&self, prefix: &str, bytes: &[u8]) -> String {
        let key = format!("{prefix}{}", blake3::hash(bytes).to_hex());
        let path = self.root.join(&key);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
        key
    }

    /// Seals documents from `make` (age is randomised) until one is named
    /// before every object under `prefix`, and plants it: readers meet it
    /// first.
    pub fn plant_first(&self, prefix: &str, make: impl Fn() -> Vec<u8>) -> String {
        let first = self.list(prefix).into_iter().map(|(k, _)| k).min();
        loop {
            let bytes = make();
            let key = format!("{prefix}{}", blake3::hash(&bytes).to_hex());
            if first.as_ref().is_none_or(|f| key < *f) {
                return self.plant(prefix, &bytes);
            }
        }
    }

    /// Every object under `prefix` (recursively) with its size, sorted.
    pub fn list(&self, prefix: &str) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        let mut stack = vec![self.root.join(prefix)];
        while let Some(d) = stack.pop() {
            let Ok(rd) = std::fs::read_dir(&d) else {
                continue;
            };
            for e in rd {
                let e = e.unwrap();
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    let key = p
                        .strip_prefix(&self.root)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned();
                    out.push((key, e.metadata().unwrap().len()));
                }
            }
        }
        out.sort();
        out
    }

    /// Every stored pack: (id, folder, size).
    pub fn packs(&self) -> Vec<(String, &'static str, u64)> {
        let mut out = Vec::new();
        for folder in ["data", "tree"] {
            for (key, size) in self.list(folder) {
                let id = key.rsplit('/').next().unwrap().to_owned();
                out.push((id, folder, size));
            }
        }
        out
    }
}

/// A compromised backup host: the writer key and the storage.
pub struct WriterAttacker {
    pub repo: Repository,
}

impl WriterAttacker {
    pub fn new(root: &Path, writer_key: &Path) -> Self {
        let repo = open_repo(root, writer_key);
        assert!(
            !repo.keys().is_owner(),
            "a writer attacker holds no owner key"
        );
        WriterAttacker { repo }
    }
}

/// Runs the vault binary with `args` under GNU time; returns its output and
/// its peak resident memory in MiB.
pub fn peak_rss_mib(vault: &Path, args: &[&str]) -> (Output, u64) {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("rss");
    let out = Command::new("/usr/bin/time")
        .arg("-f")
        .arg("%M")
        .arg("-o")
        .arg(&report)
        .arg(vault)
        .args(args)
        .env_remove("VAULT_REPO")
        .env_remove("VAULT_IDENTITY")
        .env_remove("VAULT_PASSPHRASE_FILE")
        .env_remove("VAULT_CONFIG")
        .output()
        .expect("run vault under /usr/bin/time (GNU time; scripts/install-test-deps.sh)");
    let kib: u64 = std::fs::read_to_string(&report)
        .unwrap()
        .lines()
        .last()
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    (out, kib / 1024)
}

//! What the criterion benches share: deterministic test data, a work
//! directory, and a fresh repository opened with its writer key.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use vault::format::chunk::ChunkerParams;
use vault::format::config::{DEFAULT_COMPRESSION_LEVEL, DEFAULT_PACK_SIZE};
use vault::repo::{Access, InitOptions, OwnerSpec, Repository};
use vault::storage::{LocalStorage, Storage};

/// A small deterministic PRNG (splitmix64), so every run sees the same data.
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number below `n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// Fills `out` with random bytes (hot_paths' keystores).
    #[allow(dead_code)]
    pub fn fill(&mut self, out: &mut [u8]) {
        for c in out.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            c.copy_from_slice(&v[..c.len()]);
        }
    }
}

/// A config-file-like text of about `len` bytes: `key_N = value-M` lines
/// of `words`, with M below `values`.
pub fn config_like(rng: &mut Rng, len: usize, words: &[&str], values: u64) -> Vec<u8> {
    let mut out = String::from("# generated configuration\n[main]\n");
    while out.len() < len {
        let k = words[rng.below(words.len() as u64) as usize];
        let v = words[rng.below(words.len() as u64) as usize];
        out.push_str(&format!(
            "{k}_{} = {v}-{}\n",
            rng.below(100),
            rng.below(values)
        ));
    }
    out.into_bytes()
}

/// A new work directory named `prefix…` under $VAULT_BENCH_TMP (default:
/// the system temp dir; point it at a disk-backed directory if /tmp is a
/// tmpfs), removed when dropped.
pub fn work_dir(prefix: &str) -> tempfile::TempDir {
    let base: PathBuf = std::env::var_os("VAULT_BENCH_TMP")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    fs::create_dir_all(&base).unwrap();
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(&base)
        .unwrap()
}

/// A new owner identity written to `<dir>/owner.key` (0600, as vault
/// requires): its path and its recipient, for `Access::IdentityFile`.
#[allow(dead_code)]
pub fn owner_key(dir: &Path) -> (PathBuf, String) {
    use std::os::unix::fs::PermissionsExt;
    let (secret, recipient) = vault::crypto::generate_x25519();
    let path = dir.join("owner.key");
    fs::write(&path, secret.as_bytes()).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    (path, recipient)
}

/// A repository in its own temporary directory (`<dir>/repo`).
pub struct TempRepo {
    /// The directory, removed when dropped.
    pub _dir: tempfile::TempDir,
    /// The repository, opened with its writer key.
    pub repo: Repository,
}

/// Initializes a repository in a new directory under `parent` and opens it
/// with its writer key, as `vault backup -i WRITER` does.
pub fn temp_repo(parent: &Path, owner_recipient: &str) -> TempRepo {
    let dir = tempfile::Builder::new()
        .prefix("repo-")
        .tempdir_in(parent)
        .unwrap();
    let writer = dir.path().join("writer.key");
    let storage: Arc<dyn Storage> = Arc::new(LocalStorage::new(dir.path().join("repo")));
    Repository::init(
        storage.clone(),
        &InitOptions {
            owner: OwnerSpec::Recipients(vec![owner_recipient.to_owned()]),
            owner_name: "bench".into(),
            writer_key_out: writer.clone(),
            chunker: ChunkerParams::default(),
            pack_size: DEFAULT_PACK_SIZE,
            compression_level: DEFAULT_COMPRESSION_LEVEL,
            object_lock: None,
        },
    )
    .unwrap();
    let repo = Repository::open(storage, Access::IdentityFile(&writer)).unwrap();
    TempRepo { _dir: dir, repo }
}

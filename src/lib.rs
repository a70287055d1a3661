//! vault: encrypted, deduplicated backups that prove they restore.
//!
//! # Layout
//!
//! The folders are the layers; each one uses only those listed before it.
//!
//! - [`error`]: the library's error type, one enum per layer (storage,
//!   crypto) wrapped in [`Error`], and its [`ErrorKind`]; it names no other
//!   module.
//! - [`cancel`]: the cancellation token the CLI sets on SIGINT/SIGTERM and
//!   long operations check.
//! - [`crypto`]: the only module that uses age (recipients, identities,
//!   streams), and the ed25519 signatures of format 2.
//! - [`format`]: the repository format — ids, chunker, packs, index files,
//!   trees, snapshot headers, signature frames, `config` — pure types and
//!   byte layouts, no I/O.
//! - [`storage`]: the `Storage` trait (write-once objects) and its backends
//!   (local directory, S3).
//! - [`repo`]: the [`repo::Repository`] handle: open, keys and owners,
//!   sealed objects, reading and verifying blobs, walking trees.
//! - [`source`]: what a backup reads: file metadata, command output,
//!   PostgreSQL dumps, keystores.
//! - [`ops`]: one module per operation — backup, restore (and `--verify`
//!   drills, which load database dumps as an unprivileged role in a scratch
//!   cluster run as another OS user; `dump`), check, prune, copy, forget,
//!   drill, status.
//! - [`settings`]: the configuration file (`/etc/vault/vault.toml`), parsed
//!   and validated with line-precise errors.
//! - [`deploy`]: hardened systemd units for the nightly backup and weekly drill.
//!
//! The command-line tool (`src/cli`, in the binary) sits on top: it parses
//! flags, resolves settings, prompts, renders reports and maps each error's
//! [`ErrorKind`] to an exit code. The library never prints.
//!
//! # Example
//!
//! Create a repository, back a directory up with the writer key (which
//! cannot read what it wrote), list the snapshots and restore with the
//! owner key:
//!
//! ```
//! use std::sync::Arc;
//!
//! use vault::crypto;
//! use vault::format::chunk::ChunkerParams;
//! use vault::ops::backup::{self, BackupOptions};
//! use vault::ops::restore::{self, RestoreOptions};
//! use vault::repo::{Access, InitOptions, OwnerSpec, Repository};
//! use vault::storage::Storage;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let location = dir.path().join("repo");
//! let storage = || -> vault::Result<Arc<dyn Storage>> {
//!     let s3 = vault::storage::S3Options::default(); // a local directory needs none
//!     Ok(Arc::from(vault::storage::open(location.to_str().expect("UTF-8"), &s3)?))
//! };
//!
//! // The owner: an age identity kept offline (written with mode 0600).
//! let (identity, recipient) = crypto::generate_x25519();
//! let owner_key = dir.path().join("owner.key");
//! crypto::write_key_file(&owner_key, &identity)?;
//!
//! // init: the repository, its owner, and a writer key for backup hosts.
//! let writer_key = dir.path().join("writer.key");
//! Repository::init(
//!     storage()?,
//!     &InitOptions {
//!         owner: OwnerSpec::Recipients(vec![recipient]),
//!         owner_name: "ops".into(),
//!         writer_key_out: writer_key.clone(),
//!         chunker: ChunkerParams::default(),
//!         pack_size: 16 << 20,
//!         compression_level: 3,
//!         object_lock: None,
//!     },
//! )?;
//!
//! // backup, on the backup host, with the writer key.
//! let source = dir.path().join("etc");
//! std::fs::create_dir(&source)?;
//! std::fs::write(source.join("app.conf"), "listen = 8443\n")?;
//! let writer = Repository::open(storage()?, Access::IdentityFile(&writer_key))?;
//! let made = backup::run(
//!     &writer,
//!     &BackupOptions {
//!         paths: vec![source.clone()],
//!         host: Some("web1".into()),
//!         ..Default::default()
//!     },
//! )?;
//! assert!(made.snapshot.is_complete());
//!
//! // list, and restore with the owner key.
//! let owner = Repository::open(storage()?, Access::IdentityFile(&owner_key))?;
//! let (snapshots, damaged) = owner.snapshots()?;
//! assert!(damaged.is_empty());
//! let (id, snapshot) = &snapshots[0];
//! assert_eq!(*id, made.id);
//! let target = dir.path().join("restored");
//! let report = restore::restore(
//!     &owner,
//!     id,
//!     snapshot,
//!     &RestoreOptions {
//!         target: target.clone(),
//!         ..Default::default()
//!     },
//! )?;
//! assert!(!report.failed());
//! let restored = target.join(source.strip_prefix("/")?).join("app.conf");
//! assert_eq!(std::fs::read_to_string(restored)?, "listen = 8443\n");
//! # Ok(())
//! # }
//! ```

#![forbid(unsafe_code)]

pub mod cancel;
pub mod crypto;
pub mod deploy;
pub mod error;
pub mod format;
pub mod ops;
pub mod repo;
pub mod settings;
pub mod source;
pub mod storage;

pub use cancel::Cancel;
pub use error::{Error, ErrorKind, Result};
pub use format::id::{BlobId, Id, PackId, SnapshotId, TreeId};

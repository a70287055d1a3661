//! vault: encrypted, deduplicated backups that prove they restore.
//!
//! # Layout
//!
//! The folders are the layers; each one uses only those listed before it.
//!
//! - [`error`]: the library's error type.
//! - [`cancel`]: the cancellation token the CLI sets on SIGINT/SIGTERM and
//!   long operations check.
//! - [`format`]: the repository format — ids, chunker, packs, index files,
//!   trees, snapshot headers, `config` — pure types and byte layouts, no I/O.
//! - [`crypto`]: the only module that uses age (recipients, identities, streams).
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
//! flags, resolves settings and renders reports. The library never prints.

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
pub use format::id::Id;

//! vault: encrypted, deduplicated backups that prove they restore.
//!
//! # Layout
//!
//! - [`crypto`]: the only module that uses age (recipients, identities, streams).
//! - [`storage`]: the `Storage` trait (write-once objects) and its backends.
//! - [`repo`]: repository layout, config, keys, and the [`repo::Repository`] handle.
//! - [`chunk`], [`pack`], [`index`], [`tree`], [`snapshot`]: the on-repository
//!   format, pure data and transforms with no I/O of their own.
//! - [`backup`]: walk → read → chunk → id → compress → pack → encrypt → upload.
//! - [`restore`]: restore, `--verify` drills, and `dump` as tar.
//! - [`check`]: structure, data and storage checks.
//! - [`copy`]: copy snapshots to a second repository made with `vault init --like`.
//! - [`forget`]: apply a retention policy per host and source set.
//! - [`status`]: last backup and last passed drill per source, for alerts and Prometheus.
//! - [`prune`]: repack and delete what no snapshot needs, safely beside running backups.
//! - [`drill`]: what a weekly timer runs: verify the latest snapshots, a random older one and a slice of the packs.
//! - [`systemd`]: hardened service and timer units for the nightly backup and weekly drill.
//! - [`retention`]: which snapshots a `--keep-*` policy keeps (pure, clock passed in).
//! - [`settings`]: the configuration file (`/etc/vault/vault.toml`), parsed and validated with line-precise errors.
//!
//! The library never prints: commands return reports that the CLI renders.

#![forbid(unsafe_code)]

pub mod backup;
pub mod check;
pub mod chunk;
pub mod copy;
pub mod crypto;
pub mod drill;
pub mod error;
pub mod forget;
pub mod id;
pub mod index;
pub mod keystore;
pub mod pack;
pub mod prune;
pub mod repo;
pub mod restore;
pub mod retention;
pub mod settings;
pub mod snapshot;
pub mod status;
pub mod storage;
pub mod systemd;
pub mod tree;
pub mod treewalk;

pub use error::{Error, Result};
pub use id::Id;

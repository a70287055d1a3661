//! What a backup reads: file metadata, command output, PostgreSQL dumps and
//! the certificates in keystores.
//!
//! A source never writes to the repository; the backup operation
//! (the backup operation, one layer up) turns what a source yields into blobs.

pub mod command;
pub mod host;
pub mod keystore;
pub mod meta;
pub mod postgres;

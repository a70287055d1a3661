//! The repository format: pure types and byte layouts, no I/O.
//!
//! Everything stored in a repository is described here — ids, the chunker's
//! parameters, pack trailers, index files, trees, snapshot headers, the
//! plain `config` object — so that a reader of this folder alone knows what
//! lies in storage. Nothing here touches the file system, storage or the
//! process; the repository layer above seals these bytes with age.

pub mod chunk;
pub mod config;
pub mod drill;
pub mod duration;
pub mod escape;
pub mod id;
pub mod index;
pub mod lock;
pub mod pack;
pub mod retirement;
pub mod salt;
pub mod signature;
pub mod snapshot;
#[cfg(test)]
pub(crate) mod testdata;
pub mod tree;

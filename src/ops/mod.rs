//! Operations on a repository: each one a command's whole job.
//!
//! They orchestrate the layers below ([`crate::repo`], [`crate::source`],
//! [`crate::format`]) and return reports that the CLI renders; none of them
//! prints.

pub mod backup;
pub mod check;
pub mod copy;
pub mod diff;
pub mod drill;
pub mod find;
pub mod forget;
pub mod lock;
pub mod mount;
pub mod prune;
pub mod restore;
pub mod retention;
pub mod stats;
pub mod status;
pub mod tag;

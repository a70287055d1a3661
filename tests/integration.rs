//! vault's integration tests: one binary, one module per area. Every test
//! runs the real `vault` binary against a real repository on disk.

mod attackers;
mod util;

mod attacks_history;
mod attacks_storage;
mod attacks_writer_data;
mod backup_restore;
mod bad_input;
mod cache;
mod cli_surface;
mod command_source;
mod config;
mod copy;
mod crash_resume;
mod docs;
mod drill;
mod exit_codes;
mod files_from;
mod filters;
mod fleet;
mod forget;
mod format_fixtures;
mod keys;
mod keystores;
mod killmatrix;
mod options;
mod overwrite;
mod passwd;
mod postgres;
mod postgres_attacks;
mod postgres_isolation;
mod postgres_names;
mod progress;
mod prune;
mod restore_attacks;
mod restore_without_vault;
mod retire;
mod s3;
mod sparse;
mod status;
mod tag;
mod trust;
mod units;

//! How vault is installed on a host: systemd units rendered from settings.

pub mod systemd;

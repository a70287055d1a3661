//! Per-host writer keys (`vault key add-host`): one signing identity per
//! backed-up host, so that a compromised host can forge only its own series.
//!
//! A host writer key holds the shared writer material (the X25519 identity
//! that reads index files and snapshot headers, and the chunk-id key, so
//! that hosts still deduplicate against owner-attested data) plus a signing
//! key of its own, certified by the repository owner for one host name.
//! Backups made with it record that host name and sign every header and
//! index file with that key.

use std::path::Path;

use serde::Serialize;

use super::Repository;
use super::keys::HostKey;
use crate::crypto;
use crate::error::{Error, Result};
use crate::format::signature::{HostCertificate, valid_host_name};

/// What `vault key add-host` made.
#[derive(Debug, Clone, Serialize)]
pub struct AddedHost {
    /// The host name.
    pub host: String,
    /// The certificate's object key (`keys/hosts/<host>/<key>.json`).
    pub object: String,
    /// The certificate.
    pub certificate: HostCertificate,
}

impl Repository {
    /// Makes a writer key for host `name` and writes it to `writer_key_out`
    /// (mode 0600, never replacing a file), then stores its certificate
    /// under `keys/hosts/`. Owner only; format 2 only. Running it again for
    /// the same name makes another key for that host (the old one stays
    /// valid: host keys are not revocable short of `vault key rotate-writer`
    /// and a new key for every host).
    pub fn add_host(&self, name: &str, writer_key_out: &Path) -> Result<AddedHost> {
        self.keys().require_owner("adding a host key")?;
        if !valid_host_name(name) {
            return Err(Error::InvalidInput(format!(
                "host name {name:?} must be 1-64 characters of letters, digits, '.', '_', '-', \
                 not starting with '.' or '-'"
            )));
        }
        if self.config().version < 2 {
            return Err(Error::InvalidInput(
                "this repository is format 1, whose writer keys cannot sign; host keys need a \
                 format-2 repository (`vault init` a new one; see docs/FORMAT.md)"
                    .into(),
            ));
        }
        let owner = self
            .keys()
            .owner_signing_key()
            .ok_or(Error::OwnerKeyRequired {
                operation: "adding a host key",
            })?;
        let mut writer = self.keys().writer().clone_shared().with_host(owner, name);
        if self.config().version >= 3 {
            // Format 3: a salt of its own, so no other host's key can
            // confirm guesses of this host's small files.
            let identity = self
                .keys()
                .owner_identity()
                .ok_or(Error::OwnerKeyRequired {
                    operation: "adding a host key",
                })?;
            writer = writer.with_salt(identity);
        }
        let certificate = writer
            .host()
            .map(HostKey::certificate)
            .cloned()
            .expect("with_host sets a host key");
        crypto::write_key_file(writer_key_out, &writer.to_text())?;
        match self.put_host_certificate(&certificate) {
            Ok(object) => Ok(AddedHost {
                host: name.to_owned(),
                object,
                certificate,
            }),
            Err(e) => {
                // The key is still valid without its stored certificate
                // (every header it signs carries it), but the shared key
                // could then go on writing this host's series: start over.
                let _ = std::fs::remove_file(writer_key_out);
                Err(e)
            }
        }
    }
}

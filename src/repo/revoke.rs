//! Host key revocation (`vault key revoke-host`, and the retired shared
//! writer key at `vault key rotate-writer`).
//!
//! A revocation is an owner-signed statement, stored as plain JSON under
//! `keys/revoked/<key hex>.json`, that nothing the key signs and storage
//! receives from then on may be relied on. Time is bounded by storage, as
//! header times already are ([`super::trust::bounded_time`]): the cutoff is
//! the earlier of the time the owner wrote in the revocation and the time
//! storage received the revocation object, and a document signed by the key
//! counts only when storage received it strictly before the cutoff. A
//! document whose upload time the storage does not report is treated as
//! received after it. So the revoked host's earlier snapshots keep their
//! trust (they were stored before), and whatever it signs later does not,
//! whatever time it writes inside.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::Repository;
use super::trust::{HOSTS_PREFIX, Signer};
use crate::crypto::sign::PublicKey;
use crate::error::{Error, Result};
use crate::format::signature::{HostCertificate, HostRevocation, valid_host_name};
use crate::storage::{ObjectInfo, PutOutcome, StorageError};

/// Prefix of the revocations.
pub const REVOKED_PREFIX: &str = "keys/revoked/";

/// The largest revocation object read (a planted one must not cost much).
const MAX_REVOCATION: u64 = 4096;

/// Revoked signing keys, each with its cutoff: documents it signed that
/// storage received at or after the cutoff do not count.
#[derive(Debug, Clone, Default)]
pub struct Revocations {
    cutoffs: HashMap<PublicKey, DateTime<Utc>>,
}

impl Revocations {
    /// The cutoff of `key`, if it is revoked.
    pub fn cutoff(&self, key: &PublicKey) -> Option<DateTime<Utc>> {
        self.cutoffs.get(key).copied()
    }

    /// Whether nothing is revoked.
    pub fn is_empty(&self) -> bool {
        self.cutoffs.is_empty()
    }

    /// Adds a revocation with its cutoff (the earlier wins).
    pub fn insert(&mut self, key: PublicKey, cutoff: DateTime<Utc>) {
        let e = self.cutoffs.entry(key).or_insert(cutoff);
        *e = (*e).min(cutoff);
    }

    /// Why a document signed by `signer` and received by storage at
    /// `stored` (`None`: unknown) does not count, if it is revoked.
    pub fn refusal(&self, signer: &Signer, stored: Option<DateTime<Utc>>) -> Option<String> {
        let Signer::Host(c) = signer else {
            return None;
        };
        let cutoff = self.cutoff(&c.key)?;
        let when = cutoff.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        match stored {
            Some(s) if s < cutoff => None,
            Some(_) => Some(format!(
                "signed by {}, whose key was revoked at {when}, and stored after that",
                signer.describe()
            )),
            None => Some(format!(
                "signed by {}, whose key was revoked at {when}, and the storage does not say \
                 when it was stored",
                signer.describe()
            )),
        }
    }
}

/// The object key of the revocation of `key`.
pub fn revocation_key(key: &PublicKey) -> String {
    format!("{REVOKED_PREFIX}{key}.json")
}

/// What `vault key revoke-host` revoked.
#[derive(Debug, Clone, Serialize)]
pub struct RevokedHost {
    /// The host name.
    pub host: String,
    /// Each revoked key with its revocation object and cutoff.
    pub keys: Vec<RevokedKey>,
}

/// One revoked key.
#[derive(Debug, Clone, Serialize)]
pub struct RevokedKey {
    /// The public signing key.
    pub key: PublicKey,
    /// The revocation object (`keys/revoked/<key>.json`).
    pub object: String,
    /// Documents it signed that storage received from then on do not count.
    pub cutoff: DateTime<Utc>,
    /// False when an earlier revocation was already stored.
    pub new: bool,
}

/// A revocation as `vault key list` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ListedRevocation {
    /// The host name of the revoked certificate (`*`: a shared writer key).
    pub host: String,
    /// The revoked public signing key.
    pub key: PublicKey,
    /// Documents it signed that storage received from then on do not count.
    pub cutoff: DateTime<Utc>,
}

impl Repository {
    /// Every revocation the repository owner signed for this repository,
    /// with its host and cutoff, sorted by host (for `vault key list`).
    pub fn revocation_list(&self) -> Result<Vec<ListedRevocation>> {
        let mut out: Vec<ListedRevocation> = self
            .valid_revocations()?
            .into_iter()
            .map(|(obj, _, r)| ListedRevocation {
                cutoff: obj.modified.map_or(r.revoked, |m| r.revoked.min(m)),
                host: r.host,
                key: r.key,
            })
            .collect();
        out.sort_by(|a, b| (&a.host, a.cutoff).cmp(&(&b.host, b.cutoff)));
        Ok(out)
    }

    /// Every revocation under `keys/revoked/` that the repository owner
    /// signed for this repository (others are ignored with a warning:
    /// anyone with storage access can add files). A format-1 writer key
    /// cannot check them and gets none (format 1 has no host keys).
    pub fn revocations(&self) -> Result<Revocations> {
        let mut out = Revocations::default();
        for (obj, _, r) in self.valid_revocations()? {
            let cutoff = match obj.modified {
                Some(m) => r.revoked.min(m),
                None => r.revoked,
            };
            out.insert(r.key, cutoff);
        }
        Ok(out)
    }

    /// Stores in `target` (a copy target, sharing this repository's keys)
    /// every revocation of this one that it lacks, byte for byte, so that a
    /// key revoked here counts for nothing there either. Returns how many
    /// were stored.
    pub fn copy_revocations_to(&self, target: &Repository) -> Result<u64> {
        let mut stored = 0;
        for (obj, bytes, _) in self.valid_revocations()? {
            if target.storage().put(&obj.key, &bytes)? == PutOutcome::Created {
                stored += 1;
            }
        }
        Ok(stored)
    }

    /// The revocation objects that verify, with their listing and bytes.
    fn valid_revocations(&self) -> Result<Vec<(ObjectInfo, Vec<u8>, HostRevocation)>> {
        let mut out = Vec::new();
        let Some(owner) = self.keys().owner_signing_public().copied() else {
            return Ok(out);
        };
        for obj in self.storage().list(REVOKED_PREFIX)? {
            if obj.size > MAX_REVOCATION {
                tracing::warn!("{}: too large for a revocation; ignored", obj.key);
                continue;
            }
            let bytes = match self.storage().get(&obj.key) {
                Ok(b) => b,
                Err(StorageError::NotFound { .. }) => continue,
                Err(e) => return Err(e.into()),
            };
            let Ok(r) = serde_json::from_slice::<HostRevocation>(&bytes) else {
                tracing::warn!("{}: not a host key revocation; ignored", obj.key);
                continue;
            };
            if r.repository != self.config().id
                || !owner.verify(&r.message(), &r.signature)
                || obj.key != revocation_key(&r.key)
            {
                tracing::warn!(
                    "{}: not a revocation the repository owner signed for this repository \
                     under its own name; ignored",
                    obj.key
                );
                continue;
            }
            out.push((obj, bytes, r));
        }
        Ok(out)
    }

    /// For a writer key: refuses a host key the owner revoked.
    pub(crate) fn check_writer_not_revoked(&self) -> Result<()> {
        let Some(host) = self.keys().writer().host() else {
            return Ok(());
        };
        let c = host.certificate();
        match self.revocations()?.cutoff(&c.key) {
            None => Ok(()),
            Some(at) => Err(Error::WrongKey(format!(
                "this writer key ({}) was revoked at {} (`vault key revoke-host`); nothing it \
                 signs from then on counts: ask an owner for a new key (`vault key add-host`)",
                Signer::Host(c.clone()).describe(),
                at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ))),
        }
    }

    /// Revokes every key the owner certified for host `name` (owner only):
    /// the certificates under `keys/hosts/<name>/` and those carried in the
    /// snapshot headers that name it. Refuses a name with no key.
    pub fn revoke_host(&self, name: &str) -> Result<RevokedHost> {
        self.keys().require_owner("revoking a host key")?;
        if !valid_host_name(name) {
            return Err(Error::InvalidInput(format!(
                "host name {name:?} must be 1-64 characters of letters, digits, '.', '_', '-', \
                 not starting with '.' or '-'"
            )));
        }
        let mut certs: Vec<HostCertificate> = self
            .host_certificates()?
            .into_iter()
            .filter(|c| c.host == name)
            .collect();
        for r in self.verified_snapshots()?.records {
            if let Signer::Host(c) = r.signer
                && c.host == name
            {
                certs.push(c);
            }
        }
        certs.sort_by_key(|c| c.key);
        certs.dedup_by_key(|c| c.key);
        if certs.is_empty() {
            return Err(Error::NotFound(format!(
                "host {name:?} has no key of its own (nothing under {HOSTS_PREFIX}{name}/ nor in \
                 any snapshot header); `vault key list` shows the hosts"
            )));
        }
        let mut keys = Vec::new();
        for c in &certs {
            keys.push(self.revoke_certificate(c)?);
        }
        Ok(RevokedHost {
            host: name.to_owned(),
            keys,
        })
    }

    /// Stores the owner's revocation of the key `c` certifies, or finds the
    /// one already stored (owner only).
    pub(crate) fn revoke_certificate(&self, c: &HostCertificate) -> Result<RevokedKey> {
        let owner = self
            .keys()
            .owner_signing_key()
            .ok_or(Error::OwnerKeyRequired {
                operation: "revoking a host key",
            })?;
        let revoked = Utc::now();
        let mut r = HostRevocation {
            repository: self.config().id.clone(),
            host: c.host.clone(),
            key: c.key,
            revoked,
            signature: owner.sign(b""),
        };
        r.signature = owner.sign(&r.message());
        let object = revocation_key(&c.key);
        let json = serde_json::to_vec_pretty(&r).expect("revocations serialize");
        let new = match self.storage().put(&object, &json)? {
            PutOutcome::Created => true,
            PutOutcome::AlreadyExists => false,
        };
        let cutoff = self
            .revocations()?
            .cutoff(&c.key)
            .ok_or_else(|| Error::format(&object, "stored, but not a valid revocation"))?;
        Ok(RevokedKey {
            key: c.key,
            object,
            cutoff,
            new,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::sign::SigningKey;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn a_revoked_key_counts_only_for_what_storage_received_before_the_cutoff() {
        let owner = SigningKey::generate();
        let key = SigningKey::generate();
        let mut c = HostCertificate {
            repository: "r".into(),
            host: "web1".into(),
            generation: 0,
            key: key.public(),
            created: t("2026-01-01T00:00:00Z"),
            signature: owner.sign(b""),
        };
        c.signature = owner.sign(&c.message());
        let signer = Signer::Host(c);
        let mut revs = Revocations::default();
        assert!(revs.refusal(&signer, None).is_none());
        revs.insert(key.public(), t("2026-02-01T00:00:00Z"));
        revs.insert(key.public(), t("2026-03-01T00:00:00Z"));
        assert_eq!(revs.cutoff(&key.public()), Some(t("2026-02-01T00:00:00Z")));
        assert!(
            revs.refusal(&signer, Some(t("2026-01-31T23:59:59Z")))
                .is_none()
        );
        assert!(
            revs.refusal(&signer, Some(t("2026-02-01T00:00:00Z")))
                .is_some()
        );
        assert!(revs.refusal(&signer, None).unwrap().contains("revoked"));
        assert!(revs.refusal(&Signer::Owner, None).is_none());
    }
}

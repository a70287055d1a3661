//! Who wrote what, and what may be relied on (format 2).
//!
//! Every snapshot header, index file and drill record that vault writes is
//! signed ([`crate::format::signature`]): by the repository owner signing
//! key, or by a host key the owner certified. Here those signatures are
//! checked and turned into decisions:
//!
//! - a snapshot header is **trusted** when the owner signed it, or a host
//!   key certified for the host the header names (the shared writer key that
//!   `vault init` makes may sign any host name, except those of hosts that
//!   have had a key of their own since before the header was stored). Only
//!   trusted headers count for `latest`, retention, drills and status: a
//!   compromised host can forge its own series, never another host's;
//! - a header's time is bounded by when storage received it: a header dated
//!   after its own upload (plus [`UPLOAD_SLACK_MINUTES`]) counts as dated at
//!   the upload, so a forged header cannot jump ahead of backups made after it;
//! - a drill record counts only when the owner signed it (drills need the
//!   owner key), so a writer cannot turn `vault status` green.
//!
//! In a format-1 repository nothing was signed: headers and drill records
//! are **legacy**, used as before but with the upload-time bound.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};

use crate::crypto::sign::PublicKey;
use crate::error::{Error, Result};
use crate::format::drill::DrillRecord;
use crate::format::id::{Id, SnapshotId};
use crate::format::signature::{
    HostCertificate, SignatureBlock, SignedBy, SignedKind, document_message, valid_host_name,
};
use crate::format::snapshot::Snapshot;
use crate::repo::keys::RepoKeys;
use crate::repo::{ObjectKind, Repository};
use crate::storage::{PutOutcome, StorageError};

/// How long after its upload a snapshot header may be dated (clock skew
/// between the host and the storage).
pub const UPLOAD_SLACK_MINUTES: i64 = 5;

/// Prefix of the host certificates `vault key add-host` stores.
pub const HOSTS_PREFIX: &str = "keys/hosts/";

/// Who signed a sealed document, as far as the caller can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signer {
    /// No signature (format 1, or written by a format-1 writer key).
    Unsigned,
    /// Signed, but the caller holds no key to check it with (a format-1
    /// writer key pins no owner signing key).
    Unverifiable,
    /// A signature that does not verify, or a key the owner did not certify.
    Invalid(String),
    /// The repository owner signing key.
    Owner,
    /// A host key the owner certified.
    Host(HostCertificate),
}

impl Signer {
    /// A short description for listings (`owner`, `host web1`, `unsigned`).
    pub fn describe(&self) -> String {
        match self {
            Signer::Unsigned => "unsigned".into(),
            Signer::Unverifiable => "signed (not checkable with this key)".into(),
            Signer::Invalid(why) => format!("bad signature: {why}"),
            Signer::Owner => "owner".into(),
            Signer::Host(c) if c.is_shared() => "shared writer key".into(),
            Signer::Host(c) => format!("host {}", c.host),
        }
    }
}

/// Checks a signature block against the owner signing key the caller knows.
pub fn check_block(
    keys: &RepoKeys,
    repo_id: &str,
    kind: SignedKind,
    json: &[u8],
    block: Option<SignatureBlock>,
) -> Signer {
    let Some(b) = block else {
        return Signer::Unsigned;
    };
    let Some(owner) = keys.owner_signing_public() else {
        return Signer::Unverifiable;
    };
    check_block_with(owner, repo_id, kind, json, b)
}

fn check_block_with(
    owner: &PublicKey,
    repo_id: &str,
    kind: SignedKind,
    json: &[u8],
    b: SignatureBlock,
) -> Signer {
    let invalid = |why: &str| Signer::Invalid(why.to_owned());
    if !b
        .key
        .verify(&document_message(kind, repo_id, json), &b.signature)
    {
        return invalid("the signature does not verify");
    }
    match (b.by, b.certificate) {
        (SignedBy::Owner, None) if b.key == *owner => Signer::Owner,
        (SignedBy::Owner, _) => invalid("signed as the owner with another key"),
        (SignedBy::Host, None) => invalid("a host signature without a certificate"),
        (SignedBy::Host, Some(c)) => match certificate_problem(&c, owner, repo_id) {
            None if c.key == b.key => Signer::Host(c),
            None => invalid("the certificate is for another key"),
            Some(why) => Signer::Invalid(why),
        },
    }
}

/// Why `c` is not a valid host certificate of this repository, if it is not.
fn certificate_problem(c: &HostCertificate, owner: &PublicKey, repo_id: &str) -> Option<String> {
    if c.repository != repo_id {
        Some("the host certificate is for another repository".into())
    } else if !(c.is_shared() || valid_host_name(&c.host)) {
        Some(format!(
            "the host certificate names an invalid host {:?}",
            c.host
        ))
    } else if !owner.verify(&c.message(), &c.signature) {
        Some("the host certificate is not signed by the repository owner".into())
    } else {
        None
    }
}

/// Whether a header, a drill record or an index file may be relied on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// Signed by the owner or by the host it names.
    Trusted,
    /// Format 1: nothing is signed; used as before, with the upload bound.
    Legacy,
    /// Not to be relied on, and why.
    Untrusted(String),
}

impl Trust {
    /// Trusted or legacy.
    pub fn usable(&self) -> bool {
        !matches!(self, Trust::Untrusted(_))
    }
}

/// One snapshot header with what vault knows about who wrote it and when.
#[derive(Debug, Clone)]
pub struct SnapshotRecord {
    /// The snapshot id.
    pub id: SnapshotId,
    /// The header, with `time` bounded by the upload time
    /// ([`SnapshotRecord::recorded_time`] keeps what the header says).
    pub snapshot: Snapshot,
    /// The time written in the header.
    pub recorded_time: DateTime<Utc>,
    /// When storage received it, if the storage says.
    pub uploaded: Option<DateTime<Utc>>,
    /// Who signed it.
    pub signer: Signer,
    /// Whether it counts.
    pub trust: Trust,
    /// When the owner revoked the key that signed it, if it did (the header
    /// was stored before, or it would not count).
    pub key_revoked: Option<DateTime<Utc>>,
}

/// Every readable snapshot header, with trust decided.
#[derive(Debug, Default)]
pub struct SnapshotSet {
    /// Oldest first (by bounded time, then id).
    pub records: Vec<SnapshotRecord>,
    /// Headers that could not be read.
    pub damaged: Vec<Error>,
}

impl SnapshotSet {
    /// The headers that count (trusted or legacy), oldest first, as
    /// `(id, header)` with bounded times.
    pub fn usable(&self) -> Vec<(SnapshotId, Snapshot)> {
        self.records
            .iter()
            .filter(|r| r.trust.usable())
            .map(|r| (r.id, r.snapshot.clone()))
            .collect()
    }

    /// The headers that do not count, with the reason.
    pub fn untrusted(&self) -> impl Iterator<Item = (&SnapshotRecord, &str)> {
        self.records.iter().filter_map(|r| match &r.trust {
            Trust::Untrusted(why) => Some((r, why.as_str())),
            _ => None,
        })
    }
}

/// A header's time bounded by its upload time (plus the slack).
pub fn bounded_time(recorded: DateTime<Utc>, uploaded: Option<DateTime<Utc>>) -> DateTime<Utc> {
    match uploaded {
        Some(u) => recorded.min(u + Duration::minutes(UPLOAD_SLACK_MINUTES)),
        None => recorded,
    }
}

/// For each header that repeats an earlier one's signed content, the id of
/// the first copy (earliest upload, then smallest id). A signature covers
/// the document, not the name it is stored under, so a writer able to
/// read another host's header can store it again, re-encrypted, under as
/// many new names as it likes; without this, the copies would fill
/// retention's "last N" slots and push the host's real snapshots out.
fn originals(read: &[(Id, Snapshot, Signer, Option<DateTime<Utc>>)]) -> HashMap<Id, Id> {
    // Content hash → (upload time, id) of each copy.
    type Copies = Vec<(Option<DateTime<Utc>>, Id)>;
    let mut groups: HashMap<Id, Copies> = HashMap::new();
    for (id, snapshot, _, uploaded) in read {
        let json = serde_json::to_vec(snapshot).expect("headers always serialize");
        groups
            .entry(Id::of_bytes(&json))
            .or_default()
            .push((*uploaded, *id));
    }
    let mut out = HashMap::new();
    for mut copies in groups.into_values().filter(|g| g.len() > 1) {
        // Earliest upload first; a storage without upload times: by id.
        copies.sort_by_key(|(uploaded, id)| (uploaded.unwrap_or(DateTime::<Utc>::MAX_UTC), *id));
        let first = copies[0].1;
        for (_, id) in &copies[1..] {
            out.insert(*id, first);
        }
    }
    out
}

/// Decides whether a header signed by `signer` counts. `registered` maps
/// each host with a key of its own to the earliest time the owner certified
/// one (the shared writer key may not write that host's series after it).
pub fn snapshot_trust(
    format: u32,
    snapshot: &Snapshot,
    signer: &Signer,
    stored: DateTime<Utc>,
    registered: &HashMap<String, DateTime<Utc>>,
) -> Trust {
    match signer {
        Signer::Owner => Trust::Trusted,
        Signer::Host(c) if !c.is_shared() => {
            if snapshot.host == c.host {
                Trust::Trusted
            } else {
                Trust::Untrusted(format!(
                    "signed by host {}'s key but names host {:?}: host keys sign only their own \
                     series",
                    c.host, snapshot.host
                ))
            }
        }
        Signer::Host(_) => match registered.get(&snapshot.host) {
            Some(since) if stored > *since => Trust::Untrusted(format!(
                "signed by the shared writer key, but host {:?} has had its own key since {}",
                snapshot.host,
                since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            )),
            _ => Trust::Trusted,
        },
        Signer::Unsigned | Signer::Unverifiable if format < 2 => Trust::Legacy,
        Signer::Unsigned => Trust::Untrusted("not signed".into()),
        Signer::Unverifiable => Trust::Untrusted("its signature cannot be checked".into()),
        Signer::Invalid(why) => Trust::Untrusted(why.clone()),
    }
}

/// A drill record that counts: signed by the owner (drills need the owner
/// key), or, in a format-1 repository, any readable one.
pub fn drill_trust(format: u32, signer: &Signer) -> Trust {
    match signer {
        Signer::Owner => Trust::Trusted,
        Signer::Unsigned | Signer::Unverifiable if format < 2 => Trust::Legacy,
        Signer::Host(c) => Trust::Untrusted(format!(
            "signed by {} instead of the repository owner",
            Signer::Host(c.clone()).describe()
        )),
        Signer::Unsigned => Trust::Untrusted("not signed by the repository owner".into()),
        Signer::Unverifiable => Trust::Untrusted("its signature cannot be checked".into()),
        Signer::Invalid(why) => Trust::Untrusted(why.clone()),
    }
}

/// Retirement records read from a repository.
#[derive(Debug, Default)]
pub struct RetireSet {
    /// Records that count (owner-signed).
    pub usable: Vec<crate::format::retirement::RetireRecord>,
    /// Records that do not, as messages naming the object and the reason.
    pub untrusted: Vec<String>,
    /// Records that could not be read.
    pub unreadable: Vec<String>,
}

/// Drill records read from a repository.
#[derive(Debug, Default)]
pub struct DrillSet {
    /// Records that count.
    pub usable: Vec<DrillRecord>,
    /// Records that do not, as messages naming the object and the reason.
    pub untrusted: Vec<String>,
    /// Records that could not be read.
    pub unreadable: Vec<String>,
}

impl Repository {
    /// Every snapshot header with its signer, trust and bounded time.
    pub fn verified_snapshots(&self) -> Result<SnapshotSet> {
        let mut set = SnapshotSet::default();
        // One listing, then the cache or parallel fetches (documents.rs).
        let docs =
            self.read_signed_documents::<Snapshot>(ObjectKind::Snapshot, SignedKind::Snapshot)?;
        let mut read = Vec::with_capacity(docs.read.len());
        for (_, id, (s, signer)) in docs.read {
            read.push((id, s, signer, docs.uploaded.get(&id).copied()));
        }
        set.damaged
            .extend(docs.unreadable.into_iter().map(|u| u.error));
        let mut registered = self.host_registry()?;
        for (_, _, signer, _) in &read {
            if let Signer::Host(c) = signer
                && !c.is_shared()
            {
                note_host(&mut registered, c);
            }
        }
        let format = self.config().version;
        let revoked = self.revocations()?;
        let originals = originals(&read);
        for (id, mut snapshot, signer, uploaded) in read {
            let replay_of = originals.get(&id).copied();
            let recorded_time = snapshot.time;
            snapshot.time = bounded_time(recorded_time, uploaded);
            let stored = uploaded.unwrap_or(recorded_time);
            let mut trust = match replay_of {
                // The same signed header stored again under a new name (any
                // writer can re-encrypt a header it can read): one
                // snapshot, counted once.
                Some(first) => Trust::Untrusted(format!(
                    "a copy of snapshot {} (the same signed header stored again)",
                    first.short()
                )),
                None => snapshot_trust(format, &snapshot, &signer, stored, &registered),
            };
            let key_revoked = match &signer {
                Signer::Host(c) => revoked.cutoff(&c.key),
                _ => None,
            };
            // A revoked key's header counts only if storage received it
            // before the revocation.
            if trust.usable()
                && let Some(why) = revoked.refusal(&signer, uploaded)
            {
                trust = Trust::Untrusted(why);
            }
            set.records.push(SnapshotRecord {
                id: SnapshotId(id),
                snapshot,
                recorded_time,
                uploaded,
                signer,
                trust,
                key_revoked,
            });
        }
        set.records
            .sort_by(|a, b| a.snapshot.time.cmp(&b.snapshot.time).then(a.id.cmp(&b.id)));
        Ok(set)
    }

    /// Every drill record, sorted into those that count and those that do not.
    pub fn verified_drills(&self) -> Result<DrillSet> {
        let mut set = DrillSet::default();
        let format = self.config().version;
        let docs =
            self.read_signed_documents::<DrillRecord>(ObjectKind::Drill, SignedKind::Drill)?;
        for (key, id, (mut record, signer)) in docs.read {
            match drill_trust(format, &signer) {
                Trust::Untrusted(why) => set.untrusted.push(format!("{key}: {why}")),
                _ => {
                    record.time = bounded_time(record.time, docs.uploaded.get(&id).copied());
                    set.usable.push(record);
                }
            }
        }
        set.unreadable
            .extend(docs.unreadable.iter().map(|u| u.error.to_string()));
        Ok(set)
    }

    /// Every retirement record that counts (signed by the repository
    /// owner), with messages for those that do not or cannot be read.
    pub fn verified_retirements(&self) -> Result<RetireSet> {
        let mut set = RetireSet::default();
        let docs = self.read_signed_documents::<crate::format::retirement::RetireRecord>(
            ObjectKind::Retirement,
            SignedKind::Retirement,
        )?;
        for (key, _, (record, signer)) in docs.read {
            match signer {
                Signer::Owner => set.usable.push(record),
                other => set.untrusted.push(format!(
                    "{key}: not signed by the repository owner ({})",
                    other.describe()
                )),
            }
        }
        set.unreadable
            .extend(docs.unreadable.iter().map(|u| u.error.to_string()));
        Ok(set)
    }

    /// Hosts with a key of their own, each with the earliest time the owner
    /// certified one, from the certificates under `keys/hosts/` that verify.
    /// (Certificates carried in signed headers count too; see
    /// [`Repository::verified_snapshots`].)
    pub fn host_registry(&self) -> Result<HashMap<String, DateTime<Utc>>> {
        let mut out = HashMap::new();
        for c in self.host_certificates()? {
            note_host(&mut out, &c);
        }
        Ok(out)
    }

    /// The host certificates under `keys/hosts/` that the repository owner
    /// signed (others are ignored: anyone with storage access can add files).
    /// A format-1 writer key cannot check them and gets none.
    pub fn host_certificates(&self) -> Result<Vec<HostCertificate>> {
        let Some(owner) = self.keys().owner_signing_public().copied() else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for obj in self.storage().list(HOSTS_PREFIX)? {
            if obj.size > 4096 {
                continue;
            }
            let bytes = match self.storage().get(&obj.key) {
                Ok(b) => b,
                Err(StorageError::NotFound { .. }) => continue,
                Err(e) => return Err(e.into()),
            };
            let Ok(c) = serde_json::from_slice::<HostCertificate>(&bytes) else {
                tracing::warn!("{}: not a host certificate; ignored", obj.key);
                continue;
            };
            match certificate_problem(&c, &owner, &self.config().id) {
                None if !c.is_shared() && obj.key == host_certificate_key(&c) => out.push(c),
                None => tracing::warn!("{}: stored under the wrong name; ignored", obj.key),
                Some(why) => tracing::warn!("{}: {why}; ignored", obj.key),
            }
        }
        Ok(out)
    }

    /// Stores a host certificate under `keys/hosts/` (owner only).
    pub(crate) fn put_host_certificate(&self, c: &HostCertificate) -> Result<String> {
        let key = host_certificate_key(c);
        let json = serde_json::to_vec_pretty(c).expect("certificates serialize");
        match self.storage().put(&key, &json)? {
            PutOutcome::Created => Ok(key),
            PutOutcome::AlreadyExists => Err(Error::Conflict(format!(
                "{key} already exists; run the command again (a new key is made each time)"
            ))),
        }
    }
}

/// The object key of a host certificate: `keys/hosts/<host>/<key hex>.json`.
pub fn host_certificate_key(c: &HostCertificate) -> String {
    format!("{HOSTS_PREFIX}{}/{}.json", c.host, c.key)
}

fn note_host(map: &mut HashMap<String, DateTime<Utc>>, c: &HostCertificate) {
    let e = map.entry(c.host.clone()).or_insert(c.created);
    *e = (*e).min(c.created);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::sign::SigningKey;
    use crate::format::snapshot::{SourceStatus, test_snapshot};

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn cert(owner: &SigningKey, host: &str, key: &SigningKey, created: &str) -> HostCertificate {
        let mut c = HostCertificate {
            repository: "repo".into(),
            host: host.into(),
            generation: 0,
            key: key.public(),
            created: t(created),
            signature: owner.sign(b""),
        };
        c.signature = owner.sign(&c.message());
        c
    }

    fn block(key: &SigningKey, c: Option<HostCertificate>, json: &[u8]) -> SignatureBlock {
        SignatureBlock {
            by: if c.is_some() {
                SignedBy::Host
            } else {
                SignedBy::Owner
            },
            key: key.public(),
            certificate: c,
            signature: key.sign(&document_message(SignedKind::Snapshot, "repo", json)),
        }
    }

    #[test]
    fn blocks_are_checked_against_the_owner_key() {
        let owner = SigningKey::generate();
        let host = SigningKey::generate();
        let json = b"{}";
        let check = |b| check_block_with(&owner.public(), "repo", SignedKind::Snapshot, json, b);
        assert_eq!(check(block(&owner, None, json)), Signer::Owner);
        let c = cert(&owner, "web1", &host, "2026-01-01T00:00:00Z");
        assert_eq!(
            check(block(&host, Some(c.clone()), json)),
            Signer::Host(c.clone())
        );
        // A host signing as the owner, a self-made certificate, a signature
        // over other bytes, and another kind of document all fail.
        assert!(matches!(
            check(block(&host, None, json)),
            Signer::Invalid(_)
        ));
        let forged = cert(&host, "web2", &host, "2026-01-01T00:00:00Z");
        assert!(matches!(
            check(block(&host, Some(forged), json)),
            Signer::Invalid(_)
        ));
        assert!(matches!(
            check(block(&host, Some(c.clone()), b"{ }")),
            Signer::Invalid(_)
        ));
        let b = block(&host, Some(c), json);
        assert!(matches!(
            check_block_with(&owner.public(), "repo", SignedKind::Index, json, b),
            Signer::Invalid(_)
        ));
    }

    #[test]
    fn hosts_sign_only_their_own_series_and_the_shared_key_loses_registered_hosts() {
        let owner = SigningKey::generate();
        let k = SigningKey::generate();
        let web1 = Signer::Host(cert(&owner, "web1", &k, "2026-01-01T00:00:00Z"));
        let shared = Signer::Host(cert(&owner, "*", &k, "2025-01-01T00:00:00Z"));
        let snap = |host| test_snapshot(t("2026-02-01T00:00:00Z"), host, "/etc", SourceStatus::Ok);
        let none = HashMap::new();
        let stored = t("2026-02-01T00:10:00Z");
        assert_eq!(
            snapshot_trust(2, &snap("web1"), &web1, stored, &none),
            Trust::Trusted
        );
        assert!(!snapshot_trust(2, &snap("db1"), &web1, stored, &none).usable());
        assert_eq!(
            snapshot_trust(2, &snap("db1"), &shared, stored, &none),
            Trust::Trusted
        );
        let registered = HashMap::from([("db1".to_owned(), t("2026-01-15T00:00:00Z"))]);
        assert!(!snapshot_trust(2, &snap("db1"), &shared, stored, &registered).usable());
        // Stored before db1 got its key: still db1's shared-key history.
        let early = t("2026-01-10T00:00:00Z");
        assert!(snapshot_trust(2, &snap("db1"), &shared, early, &registered).usable());
        assert!(!snapshot_trust(2, &snap("web1"), &Signer::Unsigned, stored, &none).usable());
        assert_eq!(
            snapshot_trust(1, &snap("web1"), &Signer::Unsigned, stored, &none),
            Trust::Legacy
        );
        assert!(!drill_trust(2, &web1).usable());
        assert!(!drill_trust(2, &Signer::Unsigned).usable());
        assert_eq!(drill_trust(2, &Signer::Owner), Trust::Trusted);
    }

    #[test]
    fn a_header_dated_after_its_upload_counts_as_dated_at_the_upload() {
        let up = t("2026-02-01T10:00:00Z");
        assert_eq!(
            bounded_time(t("2026-02-01T09:00:00Z"), Some(up)),
            t("2026-02-01T09:00:00Z")
        );
        assert_eq!(
            bounded_time(t("2026-02-01T10:03:00Z"), Some(up)),
            t("2026-02-01T10:03:00Z")
        );
        assert_eq!(
            bounded_time(t("2026-02-01T10:45:00Z"), Some(up)),
            t("2026-02-01T10:05:00Z")
        );
        assert_eq!(
            bounded_time(t("2026-02-01T10:45:00Z"), None),
            t("2026-02-01T10:45:00Z")
        );
    }
}

//! What a storage really does against a writer that turns hostile: the
//! facts `vault init` and `vault check --storage` find out about an S3
//! bucket, and the plain statement of what a compromised host can destroy.
//!
//! The threat: a backup host holds credentials that can put objects. On a
//! bucket without versioning, a put that leaves out `If-None-Match`
//! replaces any object (pack, index file, snapshot header, key, config);
//! conditional writes only keep honest writers from overwriting each other.
//! Only a bucket that keeps earlier versions (versioning, which every
//! Object Lock bucket has) keeps what vault wrote, and vault then reads each
//! object's first version.

use serde::Serialize;

use super::ObjectLock;

/// Key prefix of the probe objects written to test conditional writes;
/// prune removes old ones.
pub const PROBE_PREFIX: &str = "probes/";

/// Whether a bucket keeps earlier versions of objects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state", content = "reason")]
pub enum Versioning {
    /// Every overwrite and delete keeps the earlier version.
    Enabled,
    /// Was enabled once: versions from then are kept, new writes replace.
    Suspended,
    /// Never enabled: an overwrite destroys the earlier content.
    Off,
    /// Could not be found out (the reason: refused, not implemented…).
    Unknown(String),
}

/// Whether a bucket can retain objects under S3 Object Lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum LockState {
    /// Object Lock is enabled; `default` is the bucket's default retention.
    Enabled {
        /// Retention applied to every new object by the bucket itself.
        default: Option<ObjectLock>,
    },
    /// Not enabled.
    Off,
    /// Could not be found out.
    Unknown {
        /// Why.
        reason: String,
    },
}

/// The outcome of one probe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "result", content = "reason")]
pub enum Probe {
    /// It held.
    Yes,
    /// It did not.
    No,
    /// The probe could not tell (the reason).
    Unknown(String),
}

/// What a storage protects against, found out by asking and by probing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Protection {
    /// The storage location.
    pub location: String,
    /// Bucket versioning.
    pub versioning: Versioning,
    /// Bucket Object Lock.
    pub object_lock: LockState,
    /// The retention this repository puts on each object it writes.
    pub repository_lock: Option<ObjectLock>,
    /// Whether a second put with `If-None-Match: *` of the probe key was
    /// refused (a store that accepts it would let two writers of one name
    /// overwrite each other).
    pub conditional_writes: Probe,
    /// Whether the credentials in use could delete the probe (every version
    /// of it on a versioned bucket).
    pub can_delete: Probe,
    /// The probe object, when it could not be removed.
    pub probe_left: Option<String>,
}

impl Protection {
    /// Whether objects are retained under Object Lock (by the repository or
    /// the bucket's default).
    pub fn retained(&self) -> Option<ObjectLock> {
        match &self.object_lock {
            LockState::Enabled { default } => self.repository_lock.or(*default),
            _ => None,
        }
    }

    /// Whether an overwrite keeps what vault wrote (versions kept).
    pub fn keeps_versions(&self) -> bool {
        self.versioning == Versioning::Enabled
            || matches!(self.object_lock, LockState::Enabled { .. })
    }

    /// Whether a host with put rights alone can destroy the repository.
    pub fn destroyable_by_writers(&self) -> bool {
        !self.keeps_versions()
    }

    /// The facts, one line each.
    pub fn facts(&self) -> Vec<String> {
        let versioning = match &self.versioning {
            Versioning::Enabled => "enabled".to_owned(),
            Versioning::Suspended => "suspended (new writes replace earlier content)".to_owned(),
            Versioning::Off => "off".to_owned(),
            Versioning::Unknown(r) => format!("unknown ({r})"),
        };
        let lock = match (&self.object_lock, self.retained()) {
            (LockState::Enabled { .. }, Some(l)) => format!(
                "enabled; objects retained {} days in {} mode",
                l.days,
                l.mode.as_s3()
            ),
            (LockState::Enabled { .. }, None) => "enabled, but no retention is applied".into(),
            (LockState::Off, _) => "off".into(),
            (LockState::Unknown { reason }, _) => format!("unknown ({reason})"),
        };
        let conditional = match &self.conditional_writes {
            Probe::Yes => "honoured (a second put of the probe was refused)".to_owned(),
            Probe::No => "IGNORED (a second put of the probe replaced it)".to_owned(),
            Probe::Unknown(r) => format!("unknown ({r})"),
        };
        let delete = match (&self.can_delete, &self.probe_left) {
            (Probe::Yes, _) => "these credentials can delete objects".to_owned(),
            (Probe::No, Some(k)) => format!(
                "these credentials cannot delete objects (probe {k} left behind; prune removes it)"
            ),
            (Probe::No, None) => "these credentials cannot delete objects".to_owned(),
            (Probe::Unknown(r), _) => {
                format!("whether these credentials can delete is unknown ({r})")
            }
        };
        vec![
            format!("bucket versioning: {versioning}"),
            format!("Object Lock: {lock}"),
            format!("conditional writes (If-None-Match: *): {conditional}"),
            delete,
        ]
    }

    /// What a compromised host can destroy here, in plain words.
    pub fn verdict(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(l) = self.retained() {
            out.push(format!(
                "A compromised host cannot destroy what is stored here for {} days after each \
                 upload: Object Lock keeps every version, an overwrite only adds a version, and \
                 vault reads each object's first version.",
                l.days
            ));
            if l.mode == super::LockMode::Governance {
                out.push(
                    "In governance mode, credentials with s3:BypassGovernanceRetention can \
                     still delete: never give them to a backup host."
                        .into(),
                );
            }
        } else if self.keeps_versions() {
            out.push(
                "A compromised host whose credentials lack s3:DeleteObjectVersion cannot \
                 destroy what is stored here: an overwrite or delete keeps the earlier version, \
                 vault reads each object's first version, and `vault check --storage` lists \
                 every object overwritten since. Credentials with s3:DeleteObjectVersion can \
                 destroy everything."
                    .into(),
            );
            if self.can_delete == Probe::Yes {
                out.push(
                    "These credentials can delete object versions: give backup hosts \
                     credentials with only s3:PutObject, s3:GetObject and s3:ListBucket."
                        .into(),
                );
            }
        } else {
            out.push(
                "A compromised host holding only s3:PutObject can overwrite, and so destroy, \
                 every object here (packs, index files, snapshots, keys, config): \
                 If-None-Match protects honest writers from each other, not from an attacker. \
                 Enable bucket versioning (aws s3api put-bucket-versioning --bucket BUCKET \
                 --versioning-configuration Status=Enabled) or use an Object Lock bucket with \
                 `vault init --object-lock-days`."
                    .into(),
            );
        }
        if self.conditional_writes == Probe::No {
            out.push(if self.keeps_versions() {
                "This store ignores If-None-Match: for config and keys vault reads the first \
                 version written, so a second writer of the same name cannot replace it."
                    .into()
            } else {
                "This store ignores If-None-Match: vault writes config and keys only after \
                 taking its turn (a claim object under claims/, listed before the write), so two \
                 owners writing the same name at once cannot both believe they wrote it; objects \
                 named by their content are unaffected (the same name holds the same bytes)."
                    .into()
            });
        }
        out
    }
}

/// An object that storage holds more than one version of, or that a delete
/// marker hides: on a bucket that keeps versions, the trace of someone
/// overwriting or deleting what vault wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rewritten {
    /// The object key.
    pub key: String,
    /// How many versions with content there are.
    pub versions: usize,
    /// How many different contents (by ETag) they hold.
    pub contents: usize,
    /// Whether the newest entry is a delete marker.
    pub hidden: bool,
}

impl Rewritten {
    /// Whether this is a sign of tampering (rather than a retried upload of
    /// the same bytes).
    pub fn is_tampering(&self) -> bool {
        self.contents > 1 || self.hidden
    }

    /// What happened, for a check finding.
    pub fn describe(&self) -> String {
        if self.hidden {
            format!(
                "hidden by a delete marker ({} version(s) kept): someone deleted it without \
                 deleting its versions; vault still reads its first version",
                self.versions
            )
        } else if self.contents > 1 {
            format!(
                "overwritten: {} versions with {} different contents, so its current version \
                 is not the one vault wrote; vault reads the first version, so restores are \
                 unaffected, but someone holding write credentials to this bucket replaced it",
                self.versions, self.contents
            )
        } else {
            format!(
                "stored {} times with identical content (a retried upload); harmless",
                self.versions
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::LockMode;

    fn protection(versioning: Versioning, lock: LockState) -> Protection {
        Protection {
            location: "s3://b/p".into(),
            versioning,
            object_lock: lock,
            repository_lock: None,
            conditional_writes: Probe::Yes,
            can_delete: Probe::No,
            probe_left: None,
        }
    }

    #[test]
    fn an_unversioned_bucket_is_said_to_be_destroyable_by_any_writer() {
        let p = protection(Versioning::Off, LockState::Off);
        assert!(p.destroyable_by_writers());
        let text = p.verdict().join(" ");
        assert!(text.contains("can overwrite, and so destroy"), "{text}");
        assert!(text.contains("put-bucket-versioning"), "{text}");
        let p = protection(Versioning::Suspended, LockState::Off);
        assert!(p.destroyable_by_writers(), "suspended keeps nothing new");
    }

    #[test]
    fn a_versioned_bucket_is_safe_from_writers_without_version_delete_rights() {
        let mut p = protection(Versioning::Enabled, LockState::Off);
        assert!(!p.destroyable_by_writers());
        let text = p.verdict().join(" ");
        assert!(
            text.contains("lack s3:DeleteObjectVersion cannot destroy"),
            "{text}"
        );
        assert!(!text.contains("These credentials can delete"), "{text}");
        p.can_delete = Probe::Yes;
        assert!(
            p.verdict()
                .join(" ")
                .contains("These credentials can delete")
        );
    }

    #[test]
    fn a_lock_bucket_names_its_retention_and_the_governance_bypass() {
        let mut p = protection(Versioning::Enabled, LockState::Enabled { default: None });
        p.repository_lock = Some(ObjectLock {
            mode: LockMode::Governance,
            days: 30,
        });
        let text = p.verdict().join(" ");
        assert!(text.contains("for 30 days"), "{text}");
        assert!(text.contains("BypassGovernanceRetention"), "{text}");
        assert!(
            p.facts()[1].contains("30 days in GOVERNANCE"),
            "{:?}",
            p.facts()
        );
    }

    #[test]
    fn ignored_conditional_writes_are_reported() {
        let mut p = protection(Versioning::Enabled, LockState::Off);
        p.conditional_writes = Probe::No;
        assert!(p.facts()[2].contains("IGNORED"));
        assert!(p.verdict().join(" ").contains("ignores If-None-Match"));
    }

    #[test]
    fn a_retried_upload_is_not_tampering_but_a_new_content_is() {
        let same = Rewritten {
            key: "data/ab/x".into(),
            versions: 2,
            contents: 1,
            hidden: false,
        };
        assert!(!same.is_tampering());
        assert!(same.describe().contains("harmless"));
        let changed = Rewritten {
            contents: 2,
            ..same.clone()
        };
        assert!(changed.is_tampering());
        assert!(changed.describe().contains("overwritten"));
        let hidden = Rewritten {
            hidden: true,
            ..same
        };
        assert!(hidden.is_tampering());
    }
}

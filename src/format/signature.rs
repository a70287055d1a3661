//! Signatures on sealed documents and host certificates (format v2).
//!
//! A signed sealed document's plaintext (what age decrypts) is
//!
//! ```text
//! zstd skippable frame (magic 0x184D2A5B): the signature block, compact JSON
//! zstd frame: the document's JSON
//! ```
//!
//! zstd decoders skip skippable frames, so `age -d | zstd -dc` still prints
//! exactly the document, and readers that know nothing of signatures (vault
//! of format v1, `scripts/restore-without-vault`) read it unchanged. The
//! signature covers the exact JSON bytes, so nothing is re-serialized to
//! check it. Pure bytes and types; no I/O, no key handling.

use serde::{Deserialize, Serialize};

use crate::crypto::sign::{PublicKey, Signature};

/// The magic number of the skippable zstd frame holding a signature block
/// (one of the sixteen skippable-frame magics, 0x184D2A50–0x184D2A5F).
pub const FRAME_MAGIC: u32 = 0x184D_2A5B;

/// The largest signature block accepted (a planted object must not make a
/// reader allocate much before anything is checked).
pub const MAX_BLOCK: usize = 4096;

/// The host name of the shared writer key that `vault init` makes: its
/// certificate names no host, and it may sign any host's series except
/// those of hosts that have a key of their own.
pub const SHARED_HOST: &str = "*";

/// What a signature covers: the kind of document, so that a signed index
/// file can never pass for a snapshot header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignedKind {
    /// `snapshots/<id>`.
    Snapshot,
    /// `index/<id>`.
    Index,
    /// `drills/<id>`.
    Drill,
    /// `locks/<id>` (format 2: prune and copy take only owner-signed locks
    /// into account).
    Lock,
    /// `retired/<id>` (only owner-signed records count).
    Retirement,
}

impl SignedKind {
    /// The word used in the signed message.
    pub fn as_str(self) -> &'static str {
        match self {
            SignedKind::Snapshot => "snapshot",
            SignedKind::Index => "index",
            SignedKind::Drill => "drill",
            SignedKind::Lock => "lock",
            SignedKind::Retirement => "retirement",
        }
    }
}

/// Who signed: the repository owner, or a host key certified by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SignedBy {
    /// The repository owner signing key.
    Owner,
    /// A host signing key; the block carries its certificate.
    Host,
}

/// The signature block in a signed document's skippable frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignatureBlock {
    /// Owner or host.
    pub by: SignedBy,
    /// The public key that made `signature`.
    pub key: PublicKey,
    /// For a host: the owner's certificate for `key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<HostCertificate>,
    /// The signature over [`document_message`].
    pub signature: Signature,
}

/// The message a document signature covers:
/// `"vault 2026 signed <kind>\n<repository id>\n"` followed by the JSON bytes.
pub fn document_message(kind: SignedKind, repo_id: &str, json: &[u8]) -> Vec<u8> {
    let mut m = format!("vault 2026 signed {}\n{repo_id}\n", kind.as_str()).into_bytes();
    m.extend_from_slice(json);
    m
}

/// A host certificate: the owner's statement that `key` may sign the series
/// of `host`. Carried in the host's writer key file, in every block the host
/// signs, and (as plain JSON, public) under `keys/hosts/`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostCertificate {
    /// The repository.
    pub repository: String,
    /// The host name (`*`: the shared writer key).
    pub host: String,
    /// The writer key generation the host key was made with.
    pub generation: u32,
    /// The host's public signing key.
    pub key: PublicKey,
    /// When the owner made it (whole seconds): once a host has a key of its
    /// own, the shared writer key may no longer write its series.
    pub created: chrono::DateTime<chrono::Utc>,
    /// The owner's signature over [`HostCertificate::message`].
    pub signature: Signature,
}

impl HostCertificate {
    /// The message the owner signs:
    /// `"vault 2026 host certificate\n<repository>\n<host>\n<generation>\n<key hex>\n<created, RFC 3339>"`.
    pub fn message(&self) -> Vec<u8> {
        format!(
            "vault 2026 host certificate\n{}\n{}\n{}\n{}\n{}",
            self.repository,
            self.host,
            self.generation,
            self.key,
            self.created
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        )
        .into_bytes()
    }

    /// Whether it is the shared writer key's certificate.
    pub fn is_shared(&self) -> bool {
        self.host == SHARED_HOST
    }
}

/// A host key revocation: the owner's statement that nothing `key` signs
/// and storage received at or after `revoked` may be relied on. Stored (as
/// plain JSON, public) under `keys/revoked/` by `vault key revoke-host` and
/// `vault key rotate-writer` (for the retired shared writer key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostRevocation {
    /// The repository.
    pub repository: String,
    /// The host name of the revoked certificate (`*`: a shared writer key).
    pub host: String,
    /// The revoked public signing key.
    pub key: PublicKey,
    /// When the owner revoked it.
    pub revoked: chrono::DateTime<chrono::Utc>,
    /// The owner's signature over [`HostRevocation::message`].
    pub signature: Signature,
}

impl HostRevocation {
    /// The message the owner signs:
    /// `"vault 2026 host revocation\n<repository>\n<host>\n<key hex>\n<revoked, RFC 3339, Z, fraction as needed>"`.
    pub fn message(&self) -> Vec<u8> {
        format!(
            "vault 2026 host revocation\n{}\n{}\n{}\n{}",
            self.repository,
            self.host,
            self.key,
            self.revoked
                .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
        )
        .into_bytes()
    }
}

/// A host name as certificates and `vault key add-host` accept it: 1–64
/// ASCII letters, digits, `.`, `_`, `-`, not starting with `.` or `-`.
pub fn valid_host_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        && !name.starts_with(['.', '-'])
}

/// Prepends the skippable frame holding `block` to `compressed`.
pub fn frame(block: &SignatureBlock, compressed: &[u8]) -> Vec<u8> {
    let json = serde_json::to_vec(block).expect("signature blocks serialize");
    let mut out = Vec::with_capacity(8 + json.len() + compressed.len());
    out.extend_from_slice(&FRAME_MAGIC.to_le_bytes());
    out.extend_from_slice(&(json.len() as u32).to_le_bytes());
    out.extend_from_slice(&json);
    out.extend_from_slice(compressed);
    out
}

/// Why [`unframe`] refuses a leading signature frame.
#[derive(Debug, thiserror::Error)]
pub enum BadFrame {
    /// The frame claims more bytes than a block may have, or than follow.
    #[error("signature block of {0} bytes is malformed")]
    Malformed(usize),
    /// The frame's bytes are not a signature block.
    #[error("signature block is not valid: {0}")]
    Invalid(serde_json::Error),
}

/// Splits a sealed plaintext into its signature block (if it starts with
/// one) and the rest (the zstd frame of the document). A leading frame that
/// is too large or not a valid block is an error: it was not written by vault.
pub fn unframe(plaintext: &[u8]) -> Result<(Option<SignatureBlock>, &[u8]), BadFrame> {
    if plaintext.len() < 8 || plaintext[..4] != FRAME_MAGIC.to_le_bytes() {
        return Ok((None, plaintext));
    }
    let len = u32::from_le_bytes(plaintext[4..8].try_into().expect("4 bytes")) as usize;
    if len > MAX_BLOCK || plaintext.len() < 8 + len {
        return Err(BadFrame::Malformed(len));
    }
    let block = serde_json::from_slice(&plaintext[8..8 + len]).map_err(BadFrame::Invalid)?;
    Ok((Some(block), &plaintext[8 + len..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::sign::SigningKey;

    #[test]
    fn a_framed_document_still_decompresses_with_plain_zstd() {
        let k = SigningKey::generate();
        let json = br#"{"a":1}"#;
        let block = SignatureBlock {
            by: SignedBy::Owner,
            key: k.public(),
            certificate: None,
            signature: k.sign(&document_message(SignedKind::Index, "r", json)),
        };
        let compressed = zstd::bulk::compress(json, 3).unwrap();
        let framed = frame(&block, &compressed);
        // What `zstd -dc` does: skip the skippable frame.
        assert_eq!(zstd::stream::decode_all(&framed[..]).unwrap(), json);
        let (got, rest) = unframe(&framed).unwrap();
        assert_eq!(got.unwrap(), block);
        assert_eq!(rest, &compressed[..]);
        let (none, all) = unframe(&compressed).unwrap();
        assert!(none.is_none() && all == &compressed[..]);
        // A huge claimed length is refused before anything is parsed.
        let mut bad = framed.clone();
        bad[4..8].copy_from_slice(&(1u32 << 30).to_le_bytes());
        assert_eq!(
            unframe(&bad).unwrap_err().to_string(),
            "signature block of 1073741824 bytes is malformed"
        );
    }

    #[test]
    fn messages_separate_kinds_repositories_and_hosts() {
        let m = |k, r| document_message(k, r, b"{}");
        assert_ne!(m(SignedKind::Snapshot, "r"), m(SignedKind::Index, "r"));
        assert_ne!(m(SignedKind::Snapshot, "r"), m(SignedKind::Snapshot, "s"));
        let owner = SigningKey::generate();
        let cert = |host: &str, generation| {
            let mut c = HostCertificate {
                repository: "r".into(),
                host: host.into(),
                generation,
                key: SigningKey::generate().public(),
                created: chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
                signature: owner.sign(b""),
            };
            c.signature = owner.sign(&c.message());
            c
        };
        let a = cert("web1", 0);
        let mut b = a.clone();
        b.host = "web2".into();
        assert!(!owner.public().verify(&b.message(), &b.signature));
        b = a.clone();
        b.generation = 1;
        assert!(!owner.public().verify(&b.message(), &b.signature));
        assert!(owner.public().verify(&a.message(), &a.signature));
        assert!(cert("*", 0).is_shared() && !a.is_shared());
        assert!(valid_host_name("web-1.example"));
        for bad in ["", "*", ".x", "-x", "a/b", "a b", &"x".repeat(65)] {
            assert!(!valid_host_name(bad), "{bad:?}");
        }
    }
}

//! One cache entry: a document's verified JSON and the signature verdict,
//! bound to its object key by a keyed BLAKE3 hash.
//!
//! ```text
//! "VLTCACH1"            8 bytes, the entry format
//! tag                   32 bytes: BLAKE3 keyed with the view's key over
//!                       len(object key) (u64 LE) ‖ object key ‖ body
//! body:
//!   verdict length      u32 LE
//!   verdict             JSON (who signed the document, as checked on fetch)
//!   document            the JSON the sealed object decrypted to
//! ```
//!
//! The tag is checked on every read: a truncated, damaged or planted entry
//! (one made without the view's key), or one copied under another name,
//! does not open.

use serde::{Deserialize, Serialize};

use crate::format::signature::HostCertificate;
use crate::repo::trust::Signer;

/// The first bytes of every entry.
const MAGIC: &[u8; 8] = b"VLTCACH1";
const TAG: usize = 32;

/// [`Signer`], as stored in an entry.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
enum Verdict {
    Unsigned,
    Unverifiable,
    Invalid(String),
    Owner,
    Host(HostCertificate),
}

impl From<&Signer> for Verdict {
    fn from(s: &Signer) -> Self {
        match s {
            Signer::Unsigned => Verdict::Unsigned,
            Signer::Unverifiable => Verdict::Unverifiable,
            Signer::Invalid(why) => Verdict::Invalid(why.clone()),
            Signer::Owner => Verdict::Owner,
            Signer::Host(c) => Verdict::Host(c.clone()),
        }
    }
}

impl From<Verdict> for Signer {
    fn from(v: Verdict) -> Self {
        match v {
            Verdict::Unsigned => Signer::Unsigned,
            Verdict::Unverifiable => Signer::Unverifiable,
            Verdict::Invalid(why) => Signer::Invalid(why),
            Verdict::Owner => Signer::Owner,
            Verdict::Host(c) => Signer::Host(c),
        }
    }
}

fn tag(key: &[u8; 32], object_key: &str, body: &[u8]) -> blake3::Hash {
    let mut h = blake3::Hasher::new_keyed(key);
    h.update(&(object_key.len() as u64).to_le_bytes());
    h.update(object_key.as_bytes());
    h.update(body);
    h.finalize()
}

/// An entry's body: the verdict and the document (also a record of the
/// document digests, which are tagged as a whole).
pub(super) fn body(signer: &Signer, json: &[u8]) -> Vec<u8> {
    let verdict = serde_json::to_vec(&Verdict::from(signer)).expect("verdicts serialize");
    let mut body = Vec::with_capacity(4 + verdict.len() + json.len());
    body.extend_from_slice(&(verdict.len() as u32).to_le_bytes());
    body.extend_from_slice(&verdict);
    body.extend_from_slice(json);
    body
}

/// The verdict and the document of a [`body`].
pub(super) fn open_body(body: &[u8]) -> Result<(Signer, &[u8]), &'static str> {
    if body.len() < 4 {
        return Err("truncated");
    }
    let len = u32::from_le_bytes(body[..4].try_into().expect("4 bytes")) as usize;
    let Some(end) = 4usize.checked_add(len).filter(|e| *e <= body.len()) else {
        return Err("malformed verdict");
    };
    let verdict: Verdict =
        serde_json::from_slice(&body[4..end]).map_err(|_| "malformed verdict")?;
    Ok((verdict.into(), &body[end..]))
}

/// The bytes of an entry for `object_key`.
pub(super) fn seal(key: &[u8; 32], object_key: &str, signer: &Signer, json: &[u8]) -> Vec<u8> {
    let body = body(signer, json);
    let mut out = Vec::with_capacity(MAGIC.len() + TAG + body.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(tag(key, object_key, &body).as_bytes());
    out.extend_from_slice(&body);
    out
}

/// Opens an entry: the verdict and the document JSON, or why it does not
/// open.
pub(super) fn open(
    key: &[u8; 32],
    object_key: &str,
    mut bytes: Vec<u8>,
) -> Result<(Signer, Vec<u8>), &'static str> {
    let head = MAGIC.len() + TAG;
    if bytes.len() < head + 4 || &bytes[..MAGIC.len()] != MAGIC {
        return Err("truncated or not a cache entry");
    }
    let stored: [u8; TAG] = bytes[MAGIC.len()..head].try_into().expect("32 bytes");
    // blake3::Hash compares in constant time.
    if tag(key, object_key, &bytes[head..]) != blake3::Hash::from(stored) {
        return Err("its hash does not match (damaged, or not written with this key)");
    }
    let (signer, json) = open_body(&bytes[head..])?;
    let end = bytes.len() - json.len();
    let json = bytes.split_off(end);
    Ok((signer, json))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_opens_only_with_its_key_and_name_and_intact() {
        let k = [7u8; 32];
        let e = seal(&k, "snapshots/ab", &Signer::Owner, b"{\"a\":1}");
        let (s, json) = open(&k, "snapshots/ab", e.clone()).unwrap();
        assert_eq!((s, json.as_slice()), (Signer::Owner, &b"{\"a\":1}"[..]));
        assert!(
            open(&[8u8; 32], "snapshots/ab", e.clone()).is_err(),
            "other key"
        );
        assert!(open(&k, "snapshots/cd", e.clone()).is_err(), "other name");
        assert!(open(&k, "snapshots/ab", e[..e.len() - 1].to_vec()).is_err());
        assert!(open(&k, "snapshots/ab", e[..20].to_vec()).is_err());
        let mut flipped = e.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(open(&k, "snapshots/ab", flipped).is_err());
        let inv = seal(&k, "index/x", &Signer::Invalid("no".into()), b"[]");
        assert_eq!(
            open(&k, "index/x", inv).unwrap().0,
            Signer::Invalid("no".into())
        );
    }
}

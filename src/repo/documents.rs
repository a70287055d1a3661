//! Sealed JSON documents (index files, snapshot headers, drill records,
//! prune locks): the one reader for them, bounded, and the one loop that
//! lists a prefix, reads every document, skips what vanished and sorts what
//! could not be read into damaged and foreign.
//!
//! Anyone who can write to the storage can plant a document sealed to the
//! public recipients in `config`, so every document is hostile input:
//! - its stored size is bounded before it is read;
//! - its JSON is bounded by a ratio to its stored size plus a little slack,
//!   and by a cap per kind. Honest index files are mostly hex ids, which
//!   zstd shrinks about threefold, so a 19 KB index file may inflate to
//!   1.3 MB, never to 222 MB; honest headers stay under 30x even when they
//!   list hundreds of thousands of unreadable files;
//! - per command (per open [`Repository`]), the slack is one pool shared by
//!   every document read: beyond it each document gets only its ratio, so
//!   everything one command decompresses is bounded by what is stored (a
//!   thousand planted files cost a thousand times their size, never more)
//!   plus the pool.
//!
//! In format 2 a document's plaintext starts with a signature block (a zstd
//! skippable frame, [`crate::format::signature`]); it is split off here and
//! checked by [`Repository::get_signed_json`] and
//! [`Repository::read_signed_documents`].
//!
//! A document that breaks a bound although its bytes match its name was
//! not written by vault: it is reported as foreign, like one the owner key
//! cannot open or that is not a document of this format.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde::de::DeserializeOwned;

use crate::error::{CryptoError, Error, Result};
use crate::format::id::Id;
use crate::format::signature::{FRAME_MAGIC, MAX_BLOCK, SignatureBlock, SignedKind};
use crate::repo::trust::{self, Signer};
use crate::repo::{ObjectKind, Repository, cache, fetch, id_from_key};
use crate::storage::{ListedKey, ObjectInfo, StorageError};

/// How large a sealed document of one kind may be.
#[derive(Debug, Clone, Copy)]
struct Limit {
    /// Largest stored object read.
    stored: u64,
    /// JSON may be this many times the stored size...
    ratio: u64,
    /// ...plus this much...
    slack: u64,
    /// ...and never more than this.
    cap: u64,
}

const MIB: u64 = 1 << 20;

/// Decompression slack one command may spend over all documents.
pub const SLACK_PER_COMMAND: u64 = 256 * MIB;

/// The slack left to one open repository (one command).
#[derive(Debug)]
pub struct Slack(std::sync::atomic::AtomicU64);

impl Default for Slack {
    fn default() -> Self {
        Slack(std::sync::atomic::AtomicU64::new(SLACK_PER_COMMAND))
    }
}

impl Slack {
    fn left(&self) -> u64 {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn spend(&self, n: u64) {
        let _ = self.0.fetch_update(
            std::sync::atomic::Ordering::Relaxed,
            std::sync::atomic::Ordering::Relaxed,
            |left| Some(left.saturating_sub(n)),
        );
    }
}

fn limit(kind: ObjectKind) -> Limit {
    match kind {
        // Index files are hex ids and small numbers: honest ones inflate
        // about 3x (measured), so 16x is a wide margin.
        ObjectKind::Index => Limit {
            stored: 1 << 30,
            ratio: 16,
            slack: MIB,
            cap: 1 << 30,
        },
        // Headers may list many unreadable paths, which compress better:
        // 300,000 sequentially named ones measured 29x.
        ObjectKind::Snapshot => Limit {
            stored: 1 << 30,
            ratio: 128,
            slack: 64 * MIB,
            cap: 1 << 30,
        },
        ObjectKind::Drill | ObjectKind::Lock | ObjectKind::Retirement => Limit {
            stored: 16 * MIB,
            ratio: 64,
            slack: MIB,
            cap: 16 * MIB,
        },
        ObjectKind::Pack(_) => Limit {
            stored: 0,
            ratio: 0,
            slack: 0,
            cap: 0,
        },
    }
}

impl Limit {
    /// The ratio's share of the bound for a document of `stored` bytes.
    fn by_ratio(self, stored: u64) -> u64 {
        stored.saturating_mul(self.ratio)
    }

    /// The bound, with at most `slack_left` of slack.
    fn json_for(self, stored: u64, slack_left: u64) -> u64 {
        self.by_ratio(stored)
            .saturating_add(self.slack.min(slack_left))
            .min(self.cap)
    }
}

/// The kind of sealed document a key names, from its prefix.
fn kind_of(key: &str) -> Option<ObjectKind> {
    [
        ObjectKind::Index,
        ObjectKind::Snapshot,
        ObjectKind::Drill,
        ObjectKind::Lock,
        ObjectKind::Retirement,
    ]
    .into_iter()
    .find(|k| key.starts_with(k.prefix()))
}

/// The signature kind of documents of `kind`, if they are signed.
fn signed_kind(kind: ObjectKind) -> Option<SignedKind> {
    match kind {
        ObjectKind::Index => Some(SignedKind::Index),
        ObjectKind::Snapshot => Some(SignedKind::Snapshot),
        ObjectKind::Drill => Some(SignedKind::Drill),
        ObjectKind::Retirement => Some(SignedKind::Retirement),
        _ => None,
    }
}

/// Why a document could not be read, sorted for the caller.
#[derive(Debug)]
enum Failure {
    /// Deleted between the listing and the read (forget, prune).
    Vanished,
    /// Its bytes no longer match its name, or it could not be fetched, or
    /// it is larger than vault reads: possibly a genuine document, damaged.
    Damaged(Error),
    /// Its bytes match its name, yet the repository owner key cannot open
    /// it, or it opens to something that is not a document of this format:
    /// vault never wrote it.
    Foreign(Error),
}

/// A document that could not be read.
#[derive(Debug)]
pub struct Unreadable {
    /// Its object key.
    pub key: String,
    /// What went wrong.
    pub error: Error,
    /// Whether it is provably not vault's own: its bytes match its name and
    /// yet the repository owner key cannot open it, or it opens to something
    /// vault does not write. Only an owner key can tell; for a writer key
    /// this is always false.
    pub foreign: bool,
}

impl std::fmt::Display for Unreadable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.error)
    }
}

/// Every document under one prefix.
#[derive(Debug)]
pub struct Documents<T> {
    /// The documents read: key, id and content, in listing order.
    pub read: Vec<(String, Id, T)>,
    /// The documents that could not be read.
    pub unreadable: Vec<Unreadable>,
    /// When storage received each document read, where the listing says.
    pub uploaded: HashMap<Id, chrono::DateTime<chrono::Utc>>,
}

/// A listed object, as [`Storage::list`](crate::storage::Storage::list) or
/// [`Storage::list_keys`](crate::storage::Storage::list_keys) gives it.
pub(crate) trait Listed: Clone + Sync {
    /// The object's key.
    fn key(&self) -> &str;
    /// Its size, if listed.
    fn size(&self) -> Option<u64>;
    /// When storage received it, if listed.
    fn modified(&self) -> Option<chrono::DateTime<chrono::Utc>>;
}

impl Listed for ObjectInfo {
    fn key(&self) -> &str {
        &self.key
    }
    fn size(&self) -> Option<u64> {
        Some(self.size)
    }
    fn modified(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        self.modified
    }
}

impl Listed for ListedKey {
    fn key(&self) -> &str {
        &self.key
    }
    fn size(&self) -> Option<u64> {
        self.size
    }
    fn modified(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        None
    }
}

/// Turns a document's JSON (with who signed it) into what the caller keeps,
/// or says why it is not a valid document (an error `E` whose message
/// follows "not a valid document: ").
/// JSON one batch of [`Repository::visit_listed`] may hold: two documents
/// of the largest size `vault prune` writes (index files of
/// [`crate::repo::attest::BLOBS_PER_FILE`] blobs, about 7.5 MiB of JSON),
/// parsed in parallel, so that loading millions of blobs holds little more
/// than the index being built (10 M blobs: 449 MiB warm, 475 MiB cold,
/// against 469 and 530 with 32 MiB).
pub const BATCH_JSON: u64 = 16 * MIB;

/// How many of `rest` (at least one) the next batch reads: at most `jobs`
/// times 4, and no more than [`BATCH_JSON`] of JSON by the best guess
/// there is. A listed size is sealed, compressed JSON, which inflates
/// about 3 times (module docs): that is the guess. A size not
/// listed is taken to be the largest JSON seen so far, or, before any was
/// seen, an even share of the budget among the workers.
fn batch_len(rest: &[(impl Listed, Id)], jobs: usize, largest: u64) -> usize {
    let unknown = if largest == 0 {
        BATCH_JSON / jobs as u64
    } else {
        largest
    };
    let mut bytes = 0u64;
    let mut n = 0;
    for (obj, _) in rest.iter().take(jobs * 4) {
        let guess = obj.size().map_or(unknown, |s| s.saturating_mul(3));
        if n > 0 && bytes.saturating_add(guess) > BATCH_JSON {
            break;
        }
        bytes = bytes.saturating_add(guess);
        n += 1;
    }
    n.max(1)
}

type Decode<'a, T, E> = dyn Fn(&[u8], &Signer) -> std::result::Result<T, E> + 'a;

impl<T> Documents<T> {
    /// Files the outcome of reading listed object `obj` (named `id`).
    fn take(&mut self, obj: &impl Listed, id: Id, result: std::result::Result<T, Failure>) {
        match result {
            Ok(doc) => {
                if let Some(t) = obj.modified() {
                    self.uploaded.insert(id, t);
                }
                self.read.push((obj.key().to_owned(), id, doc));
            }
            Err(Failure::Vanished) => {}
            Err(Failure::Damaged(error)) => self.unreadable.push(Unreadable {
                key: obj.key().to_owned(),
                error,
                foreign: false,
            }),
            Err(Failure::Foreign(error)) => self.unreadable.push(Unreadable {
                key: obj.key().to_owned(),
                error,
                foreign: true,
            }),
        }
    }

    /// The unreadable documents that may be vault's own (damaged).
    pub fn damaged(&self) -> impl Iterator<Item = &Unreadable> {
        self.unreadable.iter().filter(|u| !u.foreign)
    }

    /// The unreadable documents vault provably did not write.
    pub fn foreign(&self) -> impl Iterator<Item = &Unreadable> {
        self.unreadable.iter().filter(|u| u.foreign)
    }
}

impl Repository {
    /// Reads, checks and decrypts a sealed JSON document by key, within the
    /// bounds of its kind (see the module docs). Its signature, if any, is
    /// not looked at: see [`Repository::get_signed_json`].
    pub fn get_json<T: DeserializeOwned>(&self, key: &str) -> Result<T> {
        self.get_document(key, None).map(|(v, _)| v)
    }

    /// Like [`Repository::get_json`], and tells who signed the document.
    pub fn get_signed_json<T: DeserializeOwned>(
        &self,
        key: &str,
        kind: SignedKind,
    ) -> Result<(T, Signer)> {
        self.get_document(key, Some(kind))
    }

    fn get_document<T: DeserializeOwned>(
        &self,
        key: &str,
        signed: Option<SignedKind>,
    ) -> Result<(T, Signer)> {
        match self.read_cached(key, None, signed) {
            Ok(v) => Ok(v),
            Err(Failure::Vanished) => Err(StorageError::NotFound {
                key: key.to_owned(),
            }
            .into()),
            Err(Failure::Damaged(e) | Failure::Foreign(e)) => Err(e),
        }
    }

    /// Lists `kind`'s prefix and reads every document under it. Names that
    /// are not 64 hex digits are ignored; documents deleted since the
    /// listing are skipped.
    pub fn read_documents<T: DeserializeOwned + Send>(
        &self,
        kind: ObjectKind,
    ) -> Result<Documents<T>> {
        let docs = self.read_documents_as::<T>(kind, None)?;
        Ok(Documents {
            read: docs
                .read
                .into_iter()
                .map(|(key, id, (doc, _))| (key, id, doc))
                .collect(),
            unreadable: docs.unreadable,
            uploaded: docs.uploaded,
        })
    }

    /// Like [`Repository::read_documents`], with each document's signer.
    pub fn read_signed_documents<T: DeserializeOwned + Send>(
        &self,
        kind: ObjectKind,
        signed: SignedKind,
    ) -> Result<Documents<(T, Signer)>> {
        self.read_documents_as::<T>(kind, Some(signed))
    }

    /// Like [`Repository::read_signed_documents`], but hands each
    /// document's JSON to `parse` (with its id and signer) in listing order
    /// and keeps only what `parse` returns. Documents are fetched
    /// [`Repository::fetch_jobs`] at a time, in batches of a few times
    /// that, so only one batch's JSON is held at once. An `Err` from
    /// `parse` (an error saying why) makes the document unreadable, like
    /// one that is not valid JSON.
    pub fn visit_signed_documents<T, E: std::fmt::Display>(
        &self,
        kind: ObjectKind,
        signed: SignedKind,
        parse: impl FnMut(&Id, &[u8], &Signer) -> std::result::Result<T, E>,
    ) -> Result<Documents<(T, Signer)>> {
        let listed = self.list_documents(kind)?;
        let mut parse = parse;
        Ok(self.visit_listed(
            &listed,
            signed,
            |_, json, _| Ok(json.to_vec()),
            |id, json, signer| parse(id, &json, signer),
        ))
    }

    /// [`Repository::visit_signed_documents`] over documents listed before
    /// (by [`Repository::list_documents`]), in two steps: `prepare` runs
    /// on the fetch workers, in parallel, on each document's JSON as it is
    /// read (so the JSON is dropped there and only what `prepare` makes
    /// waits for its turn), and `finish` on the caller, in listing order.
    /// An `Err` from either makes the document unreadable. A batch holds
    /// at most about [`BATCH_JSON`] of JSON (see [`batch_len`]).
    pub(crate) fn visit_listed<P: Send, T, E: std::fmt::Display>(
        &self,
        listed: &[(impl Listed, Id)],
        signed: SignedKind,
        prepare: impl Fn(&Id, &[u8], &Signer) -> std::result::Result<P, E> + Sync,
        mut finish: impl FnMut(&Id, P, &Signer) -> std::result::Result<T, E>,
    ) -> Documents<(T, Signer)> {
        let mut out = Documents {
            read: Vec::new(),
            unreadable: Vec::new(),
            uploaded: HashMap::new(),
        };
        let jobs = self.fetch_jobs().max(1);
        let largest = AtomicU64::new(0);
        let mut rest = listed;
        while !rest.is_empty() {
            let (batch, tail) = rest.split_at(batch_len(rest, jobs, largest.load(Relaxed)));
            rest = tail;
            let fetched = fetch::bounded_map(batch, jobs, |(obj, id)| {
                self.read_cached_with(obj.key(), obj.size(), Some(signed), &|json, signer| {
                    largest.fetch_max(json.len() as u64, Relaxed);
                    prepare(id, json, signer)
                })
            });
            for ((obj, id), result) in batch.iter().zip(fetched) {
                let result =
                    result.and_then(|(prepared, signer)| match finish(id, prepared, &signer) {
                        Ok(doc) => Ok((doc, signer)),
                        Err(e) => Err(self.not_a_document(obj.key(), e)),
                    });
                out.take(obj, *id, result);
            }
        }
        out
    }

    /// What a document that decrypts but does not parse is: foreign to an
    /// owner (vault never wrote it), damage to anyone else.
    fn not_a_document(&self, key: &str, why: impl std::fmt::Display) -> Failure {
        let error = Error::format(key, format!("not a valid document: {why}"));
        if self.keys().is_owner() {
            Failure::Foreign(error)
        } else {
            Failure::Damaged(error)
        }
    }

    /// Lists `kind`'s prefix once and forgets the cache entries of
    /// documents no longer listed.
    pub(crate) fn list_documents(&self, kind: ObjectKind) -> Result<Vec<(ObjectInfo, Id)>> {
        let listed: Vec<(ObjectInfo, Id)> = self
            .storage()
            .list(kind.prefix())?
            .into_iter()
            .filter_map(|o| id_from_key(&o.key).map(|id| (o, id)))
            .collect();
        self.forget_unlisted(kind, &listed);
        Ok(listed)
    }

    /// [`Repository::list_documents`] by [`Storage::list_keys`]
    /// (crate::storage::Storage::list_keys): no upload times, and sizes
    /// only where listing gives them at no cost. For readers that need
    /// neither (a backup's index and parent).
    pub(crate) fn list_document_keys(&self, kind: ObjectKind) -> Result<Vec<(ListedKey, Id)>> {
        let listed: Vec<(ListedKey, Id)> = self
            .storage()
            .list_keys(kind.prefix())?
            .into_iter()
            .filter_map(|o| id_from_key(&o.key).map(|id| (o, id)))
            .collect();
        self.forget_unlisted(kind, &listed);
        Ok(listed)
    }

    /// Forgets the cache entries of `kind` not in `listed`.
    fn forget_unlisted(&self, kind: ObjectKind, listed: &[(impl Listed, Id)]) {
        if let Some(c) = &self.meta_cache {
            let ids: HashSet<Id> = listed.iter().map(|(_, id)| *id).collect();
            let gone = c.forget_unlisted(kind, &ids);
            if gone > 0 {
                tracing::debug!("metadata cache: forgot {gone} deleted {}", kind.prefix());
            }
        }
    }

    /// Lists `kind`'s prefix once, forgets the cache entries of documents
    /// no longer listed, and reads the rest: from the cache where an
    /// intact entry is, else fetched, [`Repository::fetch_jobs`] at a time.
    fn read_documents_as<T: DeserializeOwned + Send>(
        &self,
        kind: ObjectKind,
        signed: Option<SignedKind>,
    ) -> Result<Documents<(T, Signer)>> {
        let listed = self.list_documents(kind)?;
        match (self.cached(), signed, cache::documents_digest(kind)) {
            (Some(c), Some(signed), Some(name)) => {
                Ok(self.read_digested(c, (kind, name), &listed, signed))
            }
            _ => Ok(self.read_listed(&listed, signed)),
        }
    }

    /// [`Repository::read_listed`] of signed documents through the cache's
    /// documents digest `name` ([`cache::documents_digest`]): those read
    /// before come from its records, as they would from their entries
    /// (the verdict of the one signature check made when the document was
    /// fetched, and its JSON, under the view's tag); the others are read
    /// as usual and added to it.
    fn read_digested<T: DeserializeOwned + Send>(
        &self,
        c: &cache::MetaCache,
        (kind, name): (ObjectKind, &str),
        listed: &[(ObjectInfo, Id)],
        signed: SignedKind,
    ) -> Documents<(T, Signer)> {
        let digest = c.digest(name);
        let mut results: Vec<Option<std::result::Result<(T, Signer), Failure>>> =
            Vec::with_capacity(listed.len());
        let mut unseen = Vec::new();
        for (i, (_, id)) in listed.iter().enumerate() {
            let known = digest
                .records
                .get(id)
                .and_then(|r| cache::open_document_record(r))
                .and_then(|(signer, json)| {
                    serde_json::from_slice::<T>(json)
                        .ok()
                        .map(|doc| (doc, signer))
                });
            if known.is_none() {
                unseen.push(i);
            }
            results.push(known.map(Ok));
        }
        let fetched = fetch::bounded_map(&unseen, self.fetch_jobs(), |&i| {
            let obj = &listed[i].0;
            self.read_cached_with(&obj.key, Some(obj.size), Some(signed), &|json, _| {
                serde_json::from_slice::<T>(json).map(|doc| (doc, json.to_vec()))
            })
        });
        let mut added = Vec::new();
        for (&i, result) in unseen.iter().zip(fetched) {
            results[i] = Some(result.map(|((doc, json), signer)| {
                // As for entries: only what fits its kind's ratio to its
                // stored size, so that padding cannot fill the digest.
                let stored = listed[i].0.size;
                if json.len() <= cache::MAX_DIGESTED_DOCUMENT
                    && json.len() as u64 <= limit(kind).by_ratio(stored)
                {
                    added.push((listed[i].1, cache::document_record(&signer, &json)));
                }
                (doc, signer)
            }));
        }
        let ids: HashSet<Id> = listed.iter().map(|(_, id)| *id).collect();
        c.save_digest(digest, added, &ids);
        let mut out = Documents {
            read: Vec::new(),
            unreadable: Vec::new(),
            uploaded: HashMap::new(),
        };
        for ((obj, id), result) in listed.iter().zip(results) {
            out.take(obj, *id, result.expect("every listed document was read"));
        }
        out
    }

    /// [`Repository::read_documents_as`] over documents listed before (by
    /// [`Repository::list_documents`]).
    pub(crate) fn read_listed<T: DeserializeOwned + Send>(
        &self,
        listed: &[(impl Listed, Id)],
        signed: Option<SignedKind>,
    ) -> Documents<(T, Signer)> {
        let results = fetch::bounded_map(listed, self.fetch_jobs(), |(obj, _)| {
            self.read_cached::<T>(obj.key(), obj.size(), signed)
        });
        let mut out = Documents {
            read: Vec::new(),
            unreadable: Vec::new(),
            uploaded: HashMap::new(),
        };
        for ((obj, id), result) in listed.iter().zip(results) {
            out.take(obj, *id, result);
        }
        out
    }

    /// Reads a document from the metadata cache if an intact entry is
    /// there, else from storage (caching what it verified).
    ///
    /// An entry holds the JSON exactly as it was decrypted, checked against
    /// its bounds and parsed on the first fetch, and the verdict of the
    /// signature check done then: the object is immutable (its name is the
    /// hash of its bytes) and the verdict depends only on those bytes and
    /// on the owner signing key this view pins, so neither is checked
    /// again; the entry's own tag is, on every read.
    fn read_cached<T: DeserializeOwned>(
        &self,
        key: &str,
        listed_size: Option<u64>,
        signed: Option<SignedKind>,
    ) -> std::result::Result<(T, Signer), Failure> {
        self.read_cached_with(key, listed_size, signed, &|json, _| {
            serde_json::from_slice(json)
        })
    }

    /// [`Repository::read_cached`] with the JSON handed to `decode` (with
    /// the signer) instead of deserialized.
    fn read_cached_with<T, E: std::fmt::Display>(
        &self,
        key: &str,
        listed_size: Option<u64>,
        signed: Option<SignedKind>,
        decode: &Decode<'_, T, E>,
    ) -> std::result::Result<(T, Signer), Failure> {
        if let (Some(c), Some(kind), Some(id)) = (self.cached(), kind_of(key), id_from_key(key))
            && cache::caches(kind)
            && let Some((verdict, json)) = c.get(kind, &id, limit(kind).cap + MIB)
        {
            let signer = if signed.is_some() {
                verdict
            } else {
                Signer::Unsigned
            };
            match decode(&json, &signer) {
                Ok(doc) => return Ok((doc, signer)),
                Err(_) => c.discard(kind, &id),
            }
        }
        self.read_document(key, listed_size, signed, decode)
    }

    fn read_document<T, E: std::fmt::Display>(
        &self,
        key: &str,
        listed_size: Option<u64>,
        signed: Option<SignedKind>,
        decode: &Decode<'_, T, E>,
    ) -> std::result::Result<(T, Signer), Failure> {
        let limit = kind_of(key).map_or(limit(ObjectKind::Lock), limit);
        if let Some(size) = listed_size
            && size > limit.stored
        {
            return Err(Failure::Damaged(Error::format(
                key,
                format!("{size} bytes, more than vault reads for such a document"),
            )));
        }
        let stored = match listed_size {
            // Listed within bounds: one plain read.
            Some(_) => match self.storage().get(key) {
                Ok(b) if b.len() as u64 <= limit.stored => b,
                Ok(_) => self.fetch_bounded(key, limit.stored)?,
                Err(StorageError::NotFound { .. }) => return Err(Failure::Vanished),
                Err(e) => return Err(Failure::Damaged(e.into())),
            },
            None => self.fetch_bounded(key, limit.stored)?,
        };
        if let Some(id) = id_from_key(key)
            && Id::of_bytes(&stored) != id
        {
            return Err(Failure::Damaged(Error::format(
                key,
                "content does not match its name (damaged object)",
            )));
        }
        // From here on the bytes are exactly what was written under this
        // name; any failure means the writer was not vault (for an owner).
        let owner = self.keys().is_owner();
        let foreign = |why: String| {
            if owner {
                Failure::Foreign(Error::format(
                    key,
                    format!(
                        "{why}; its bytes match its name, so vault never wrote it (planted by \
                         someone with write access to the storage)"
                    ),
                ))
            } else {
                Failure::Damaged(Error::format(key, why))
            }
        };
        let stream = match self.keys().keyring().decrypt_stream(&stored[..], key) {
            Ok(s) => s,
            Err(CryptoError::NoMatchingKey { .. }) => {
                return Err(foreign("not sealed to the repository owner key".into()));
            }
            Err(CryptoError::Decrypt { reason, .. }) => {
                return Err(foreign(format!("not a valid age file: {reason}")));
            }
            Err(e) => return Err(Failure::Damaged(e.into())),
        };
        // Format 2: a signature block in a skippable frame ahead of the
        // compressed document.
        let (block, stream) = split_frame(stream)
            .map_err(|e| foreign(format!("not a valid sealed document: {e}")))?;
        let max_json = limit.json_for(stored.len() as u64, self.doc_slack.left());
        let mut json = Vec::new();
        zstd::stream::read::Decoder::new(stream)
            .and_then(|d| d.take(max_json + 1).read_to_end(&mut json))
            .map_err(|e| foreign(format!("not a valid sealed document: {e}")))?;
        if json.len() as u64 > max_json {
            // vault's own documents stay far below the bound (module docs).
            return Err(foreign(format!(
                "decompresses to more than {max_json} bytes of JSON ({} stored bytes): refused \
                 as a decompression bomb",
                stored.len()
            )));
        }
        self.doc_slack
            .spend((json.len() as u64).saturating_sub(limit.by_ratio(stored.len() as u64)));
        // Cached with the verdict of its own kind's signature check, so
        // that a later signed read of the entry gets the same answer.
        let kind = kind_of(key);
        let cache = self
            .meta_cache
            .as_ref()
            .zip(kind.filter(|k| cache::caches(*k)))
            .zip(id_from_key(key));
        let check = match (&cache, signed) {
            (Some(_), _) => kind.and_then(signed_kind),
            (None, s) => s,
        };
        let verdict = match check {
            Some(k) => trust::check_block(self.keys(), &self.config().id, k, &json, block),
            None => Signer::Unsigned,
        };
        let signer = if signed.is_some() {
            verdict.clone()
        } else {
            Signer::Unsigned
        };
        // Decoded before it is cached: only documents that parse are kept.
        let doc =
            decode(&json, &signer).map_err(|e| foreign(format!("not a valid document: {e}")))?;
        // Only what fits its kind's ratio is cached: a document that needed
        // slack is read from storage every time, so that it is charged
        // against each command's pool and padding cannot fill the cache.
        let within_ratio = json.len() as u64 <= limit.by_ratio(stored.len() as u64);
        if let Some(((c, kind), id)) = cache.filter(|_| within_ratio) {
            c.put(kind, &id, &verdict, &json);
        }
        Ok((doc, signer))
    }

    /// Puts a document this command has just stored (`json`, signed with
    /// `block`, sealed into `stored_len` bytes under `id`) into the metadata
    /// cache, with the verdict a read of the stored object would give: the
    /// same checks on the same bytes. The index files a backup writes are
    /// then not fetched, decrypted and checked again by the next command
    /// on this host. The ratio rule of reads applies (documents that would
    /// need slack are not cached). Returns the verdict cached, if cached.
    pub(crate) fn remember_written(
        &self,
        kind: ObjectKind,
        id: &Id,
        json: &[u8],
        block: Option<SignatureBlock>,
        stored_len: u64,
    ) -> Option<Signer> {
        let c = self.meta_cache.as_ref().filter(|_| cache::caches(kind))?;
        if json.len() as u64 > limit(kind).by_ratio(stored_len) {
            return None;
        }
        let verdict = match signed_kind(kind) {
            Some(k) => trust::check_block(self.keys(), &self.config().id, k, json, block),
            None => Signer::Unsigned,
        };
        c.put(kind, id, &verdict, json);
        Some(verdict)
    }

    /// Reads an object, refusing one larger than `max` bytes.
    fn fetch_bounded(&self, key: &str, max: u64) -> std::result::Result<Vec<u8>, Failure> {
        let mut r = match self.storage().open(key) {
            Ok(r) => r,
            Err(StorageError::NotFound { .. }) => return Err(Failure::Vanished),
            Err(e) => return Err(Failure::Damaged(e.into())),
        };
        let mut stored = Vec::new();
        r.by_ref()
            .take(max + 1)
            .read_to_end(&mut stored)
            .map_err(|e| Failure::Damaged(StorageError::from_io(key, e).into()))?;
        if stored.len() as u64 > max {
            return Err(Failure::Damaged(Error::format(
                key,
                format!("more than {max} bytes, more than vault reads for such a document"),
            )));
        }
        Ok(stored)
    }
}

/// Splits a decrypted document stream into its signature block (format 2,
/// see [`crate::format::signature::unframe`]) and the compressed rest.
fn split_frame<'a, R: Read + 'a>(
    mut r: R,
) -> std::io::Result<(Option<SignatureBlock>, Box<dyn Read + 'a>)> {
    let mut head = Vec::with_capacity(8);
    (&mut r).take(8).read_to_end(&mut head)?;
    if head.len() < 8 || head[..4] != FRAME_MAGIC.to_le_bytes() {
        return Ok((None, Box::new(std::io::Cursor::new(head).chain(r))));
    }
    let len = u32::from_le_bytes(head[4..8].try_into().expect("4 bytes")) as usize;
    let bad = |why: String| std::io::Error::new(std::io::ErrorKind::InvalidData, why);
    if len > MAX_BLOCK {
        return Err(bad(format!("signature block of {len} bytes is malformed")));
    }
    let mut raw = vec![0; len];
    r.read_exact(&mut raw)
        .map_err(|_| bad(format!("signature block of {len} bytes is malformed")))?;
    let block = serde_json::from_slice(&raw)
        .map_err(|e| bad(format!("signature block is not valid: {e}")))?;
    Ok((Some(block), Box::new(r)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(sizes: &[Option<u64>]) -> Vec<(ListedKey, Id)> {
        sizes
            .iter()
            .enumerate()
            .map(|(i, &size)| {
                let key = format!("index/{i}");
                (ListedKey { key, size }, Id::of_bytes(&i.to_le_bytes()))
            })
            .collect()
    }

    #[test]
    fn a_batch_holds_about_its_json_budget_whatever_the_documents_sizes() {
        // Many small listed documents: as many as the workers take.
        assert_eq!(batch_len(&listed(&[Some(4 << 10); 500]), 32, 0), 128);
        // Listed sizes inflate about 3x: 2.5 MB stored, about 7.5 MB of
        // JSON (a compacted index file), so two fit in 16 MiB.
        assert_eq!(batch_len(&listed(&[Some(2_500_000); 100]), 32, 0), 2);
        // Sizes not listed (a local directory): a share of the budget per
        // worker before any document was read...
        assert_eq!(batch_len(&listed(&[None; 100]), 4, 0), 4);
        // ...then the largest JSON seen.
        assert_eq!(batch_len(&listed(&[None; 100]), 4, 30 << 20), 1);
        assert_eq!(batch_len(&listed(&[None; 100]), 4, 1 << 20), 16);
        assert_eq!(batch_len(&listed(&[None; 100]), 4, 7 << 20), 2);
        // One document larger than the budget is still read, alone.
        assert_eq!(batch_len(&listed(&[Some(1 << 30), Some(1)]), 32, 0), 1);
        assert_eq!(batch_len(&listed(&[Some(1)]), 32, 0), 1);
    }

    #[test]
    fn limits_scale_with_the_stored_size_and_stop_at_the_cap() {
        let l = limit(ObjectKind::Index);
        assert_eq!(l.json_for(19_000, SLACK_PER_COMMAND), 16 * 19_000 + MIB);
        assert_eq!(
            l.json_for(19_000, 10),
            16 * 19_000 + 10,
            "the pool runs dry"
        );
        assert_eq!(l.json_for(u64::MAX, SLACK_PER_COMMAND), 1 << 30);
        assert!(limit(ObjectKind::Snapshot).json_for(0, SLACK_PER_COMMAND) >= 16 * MIB);
        let pool = Slack::default();
        pool.spend(SLACK_PER_COMMAND - 5);
        pool.spend(10);
        assert_eq!(pool.left(), 0);
        assert_eq!(kind_of("index/ab"), Some(ObjectKind::Index));
        assert_eq!(kind_of("drills/ab"), Some(ObjectKind::Drill));
        assert_eq!(kind_of("data/ab/cd"), None);
    }
}

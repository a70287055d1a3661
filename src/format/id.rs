//! Content ids: 32-byte BLAKE3 digests shown as lowercase hex.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A 32-byte identifier: the BLAKE3 hash of a stored object, or the keyed
/// BLAKE3 hash of a blob's plaintext.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Id(pub [u8; 32]);

impl Id {
    /// The plain BLAKE3 hash of `bytes` (object names).
    pub fn of_bytes(bytes: &[u8]) -> Self {
        Id(*blake3::hash(bytes).as_bytes())
    }

    /// The keyed BLAKE3 hash of `bytes` (blob ids).
    pub fn keyed(key: &[u8; 32], bytes: &[u8]) -> Self {
        Id(*blake3::keyed_hash(key, bytes).as_bytes())
    }

    /// Full lowercase hex form.
    pub fn to_hex(&self) -> String {
        let digits = self.hex_digits();
        std::str::from_utf8(&digits)
            .expect("hex digits are ASCII")
            .to_owned()
    }

    /// The 64 lowercase hex digits, on the stack: trees and index files
    /// write millions of ids, each without an allocation (`hex::encode`
    /// collects `char`s into a `String` one by one).
    fn hex_digits(&self) -> [u8; 64] {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut out = [0u8; 64];
        for (pair, b) in out.chunks_exact_mut(2).zip(self.0) {
            pair[0] = DIGITS[usize::from(b >> 4)];
            pair[1] = DIGITS[usize::from(b & 0xf)];
        }
        out
    }

    /// The first 8 hex digits, used in human output.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..4])
    }
}

impl AsRef<Id> for Id {
    fn as_ref(&self) -> &Id {
        self
    }
}

impl From<blake3::Hash> for Id {
    fn from(h: blake3::Hash) -> Self {
        Id(*h.as_bytes())
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Id({})", self.short())
    }
}

/// The error for a string that is not 64 hex digits.
#[derive(Debug, thiserror::Error)]
#[error("not a 64-digit hex id: {0:?}")]
pub struct ParseIdError(String);

/// The value of each hex digit (either case); 0xff for other bytes.
const HEX: [u8; 256] = {
    let mut t = [0xffu8; 256];
    let mut i = 0;
    while i < 10 {
        t[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        t[b'a' as usize + i] = 10 + i as u8;
        t[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    t
};

impl FromStr for Id {
    type Err = ParseIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // By hand rather than `hex::decode_to_slice`: index files hold
        // millions of ids, and this is most of their parse time.
        let bad = || ParseIdError(s.to_owned());
        let b = s.as_bytes();
        if b.len() != 64 {
            return Err(bad());
        }
        let mut out = [0u8; 32];
        for (o, pair) in out.iter_mut().zip(b.chunks_exact(2)) {
            let (hi, lo) = (HEX[pair[0] as usize], HEX[pair[1] as usize]);
            if (hi | lo) & 0xf0 != 0 {
                return Err(bad());
            }
            *o = hi << 4 | lo;
        }
        Ok(Id(out))
    }
}

impl Serialize for Id {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let digits = self.hex_digits();
        s.serialize_str(std::str::from_utf8(&digits).expect("hex digits are ASCII"))
    }
}

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // A visitor rather than a `String`: index files hold millions of
        // ids, parsed without an allocation each.
        struct HexId;
        impl serde::de::Visitor<'_> for HexId {
            type Value = Id;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a 64-digit hex id")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Id, E> {
                s.parse().map_err(E::custom)
            }
        }
        d.deserialize_str(HexId)
    }
}

/// Declares an id of one kind of object: the same 32 bytes and hex form as
/// [`Id`] (so the format does not change), but a type of its own, so that
/// a tree id cannot be passed where a snapshot id is meant without saying so.
macro_rules! typed_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Id);

        impl $name {
            /// The untyped id (for storage keys and index lookups).
            pub fn id(&self) -> &Id {
                &self.0
            }

            /// Full lowercase hex form.
            pub fn to_hex(&self) -> String {
                self.0.to_hex()
            }

            /// The first 8 hex digits, used in human output.
            pub fn short(&self) -> String {
                self.0.short()
            }
        }

        impl AsRef<Id> for $name {
            fn as_ref(&self) -> &Id {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0.short())
            }
        }

        impl FromStr for $name {
            type Err = ParseIdError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                s.parse().map($name)
            }
        }
    };
}

typed_id!(
    /// A snapshot: the name of its header object under `snapshots/`.
    SnapshotId
);
typed_id!(
    /// A tree blob: the keyed hash of a directory listing's plaintext.
    TreeId
);
typed_id!(
    /// A blob (a chunk of file content or a tree): the keyed hash of its
    /// plaintext, the key of the index.
    BlobId
);
typed_id!(
    /// A pack: the plain hash of its stored bytes, its name under `data/`
    /// or `tree/`.
    PackId
);

impl BlobId {
    /// The keyed BLAKE3 hash of a blob's plaintext.
    pub fn keyed(key: &[u8; 32], bytes: &[u8]) -> Self {
        BlobId(Id::keyed(key, bytes))
    }
}

impl PackId {
    /// The name of a pack whose stored bytes are `bytes`.
    pub fn of_bytes(bytes: &[u8]) -> Self {
        PackId(Id::of_bytes(bytes))
    }
}

impl TreeId {
    /// The same id as the blob that holds the tree (for index lookups).
    pub fn blob(&self) -> BlobId {
        BlobId(self.0)
    }
}

impl From<TreeId> for BlobId {
    fn from(tree: TreeId) -> Self {
        tree.blob()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_rejects_garbage() {
        let id = Id::of_bytes(b"hello");
        assert_eq!(id.to_hex().parse::<Id>().unwrap(), id);
        assert_eq!(id.to_hex(), hex::encode(id.0));
        let all = Id(std::array::from_fn(|i| (i * 8 + 7) as u8));
        assert_eq!(all.to_hex(), hex::encode(all.0));
        assert_eq!(
            serde_json::to_string(&all).unwrap(),
            format!("\"{}\"", hex::encode(all.0))
        );
        assert!("abc".parse::<Id>().is_err());
        assert!("zz".repeat(32).parse::<Id>().is_err());
        assert!(format!("{}g", &id.to_hex()[1..]).parse::<Id>().is_err());
        assert!(format!("{}0", id.to_hex()).parse::<Id>().is_err());
        assert_eq!(id.to_hex().to_uppercase().parse::<Id>().unwrap(), id);
    }

    #[test]
    fn typed_ids_keep_the_hex_form() {
        let id = Id::of_bytes(b"tree");
        let tree = TreeId(id);
        assert_eq!(
            serde_json::to_string(&tree).unwrap(),
            serde_json::to_string(&id).unwrap()
        );
        assert_eq!(tree.to_hex().parse::<TreeId>().unwrap(), tree);
        let back: SnapshotId = serde_json::from_str(&format!("\"{id}\"")).unwrap();
        assert_eq!(back.id(), &id);
    }

    #[test]
    fn keyed_differs_from_plain() {
        let key = [7u8; 32];
        assert_ne!(Id::keyed(&key, b"x"), Id::of_bytes(b"x"));
        assert_ne!(Id::keyed(&key, b"x"), Id::keyed(&[8u8; 32], b"x"));
    }
}

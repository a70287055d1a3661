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
        hex::encode(self.0)
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

impl FromStr for Id {
    type Err = ParseIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| ParseIdError(s.to_owned()))?;
        Ok(Id(out))
    }
}

impl Serialize for Id {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_rejects_garbage() {
        let id = Id::of_bytes(b"hello");
        assert_eq!(id.to_hex().parse::<Id>().unwrap(), id);
        assert!("abc".parse::<Id>().is_err());
        assert!("zz".repeat(32).parse::<Id>().is_err());
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

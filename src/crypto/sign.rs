//! Ed25519 signatures: who wrote a snapshot header, an index file, a drill
//! record or the config.
//!
//! age encrypts but does not authenticate senders: anyone holding the public
//! recipients in `config` can seal an object that decrypts. Signatures close
//! that gap. The repository owner signing key is derived from the repository
//! owner key, so every owner holds it and nobody else can; host signing keys
//! are random and certified by the owner signing key. vault implements no
//! cryptography: keys, signatures and verification are ed25519-dalek's
//! (strict verification, so a signature has one valid encoding).

use std::fmt;
use std::str::FromStr;

use super::ExposeSecret;
use zeroize::Zeroizing;

/// BLAKE3 derive-key context of the repository owner signing key's seed,
/// derived from the repository owner key's `AGE-SECRET-KEY-1…` line.
pub const OWNER_SIGNING_CONTEXT: &str = "vault 2026 owner signing key";

/// A secret ed25519 signing key (zeroized on drop by ed25519-dalek).
#[derive(Clone)]
pub struct SigningKey(ed25519_dalek::SigningKey);

/// A public ed25519 key, written as 64 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKey([u8; 32]);

/// An ed25519 signature, written as 128 hex digits.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature([u8; 64]);

impl SigningKey {
    /// A new random key (a host signing key).
    pub fn generate() -> Self {
        let mut seed = Zeroizing::new([0u8; 32]);
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, seed.as_mut());
        SigningKey(ed25519_dalek::SigningKey::from_bytes(&seed))
    }

    /// The repository owner signing key: its seed is
    /// `BLAKE3-derive-key(OWNER_SIGNING_CONTEXT, owner AGE-SECRET-KEY-1… line)`,
    /// so only holders of the repository owner key can compute it.
    pub fn derive_owner(owner: &super::X25519Identity) -> Self {
        let secret = owner.secret_line();
        let seed = Zeroizing::new(blake3::derive_key(
            OWNER_SIGNING_CONTEXT,
            secret.expose_secret().as_bytes(),
        ));
        SigningKey(ed25519_dalek::SigningKey::from_bytes(&seed))
    }

    /// Parses the 64-hex-digit seed written in a writer key file.
    pub fn from_seed_hex(text: &str) -> Option<Self> {
        let mut seed = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(text.trim(), seed.as_mut()).ok()?;
        Some(SigningKey(ed25519_dalek::SigningKey::from_bytes(&seed)))
    }

    /// The seed as 64 hex digits (for the key file only; it is the secret).
    pub fn seed_hex(&self) -> Zeroizing<String> {
        Zeroizing::new(hex::encode(self.0.to_bytes()))
    }

    /// The public half.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key().to_bytes())
    }

    /// Signs `message`.
    pub fn sign(&self, message: &[u8]) -> Signature {
        use ed25519_dalek::Signer;
        Signature(self.0.sign(message).to_bytes())
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the secret.
        write!(f, "SigningKey(public {})", self.public())
    }
}

impl PublicKey {
    /// Whether `signature` is a valid signature of `message` by this key.
    /// Strict: small-order keys and non-canonical signatures are refused.
    pub fn verify(&self, message: &[u8], signature: &Signature) -> bool {
        let Ok(key) = ed25519_dalek::VerifyingKey::from_bytes(&self.0) else {
            return false;
        };
        let sig = ed25519_dalek::Signature::from_bytes(&signature.0);
        key.verify_strict(message, &sig).is_ok()
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

/// A public signing key or a signature that is not the hex it must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseSignError {
    /// Not 64 hex digits.
    #[error("not a public signing key (64 hex digits)")]
    PublicKey,
    /// Not 128 hex digits.
    #[error("not a signature (128 hex digits)")]
    Signature,
}

impl FromStr for PublicKey {
    type Err = ParseSignError;
    fn from_str(s: &str) -> Result<Self, ParseSignError> {
        let mut b = [0u8; 32];
        hex::decode_to_slice(s.trim(), &mut b).map_err(|_| ParseSignError::PublicKey)?;
        Ok(PublicKey(b))
    }
}

impl fmt::Display for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({self})")
    }
}

impl FromStr for Signature {
    type Err = ParseSignError;
    fn from_str(s: &str) -> Result<Self, ParseSignError> {
        let mut b = [0u8; 64];
        hex::decode_to_slice(s.trim(), &mut b).map_err(|_| ParseSignError::Signature)?;
        Ok(Signature(b))
    }
}

macro_rules! hex_serde {
    ($t:ty) => {
        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}
hex_serde!(PublicKey);
hex_serde!(Signature);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_only_for_their_key_and_message() {
        let k = SigningKey::generate();
        let sig = k.sign(b"snapshot");
        assert!(k.public().verify(b"snapshot", &sig));
        assert!(!k.public().verify(b"snapshot!", &sig));
        assert!(!SigningKey::generate().public().verify(b"snapshot", &sig));
        let mut bad = sig;
        bad.0[10] ^= 1;
        assert!(!k.public().verify(b"snapshot", &bad));
        // Round trips through text.
        let again = SigningKey::from_seed_hex(&k.seed_hex()).unwrap();
        assert_eq!(again.public(), k.public());
        assert_eq!(
            k.public().to_string().parse::<PublicKey>().unwrap(),
            k.public()
        );
        assert_eq!(sig.to_string().parse::<Signature>().unwrap(), sig);
        assert!(!format!("{k:?}").contains(k.seed_hex().as_str()));
    }

    #[test]
    fn the_owner_signing_key_is_derived_from_the_owner_key_only() {
        let owner = super::super::X25519Identity::generate();
        let a = SigningKey::derive_owner(&owner);
        let b = SigningKey::derive_owner(&owner);
        assert_eq!(a.public(), b.public());
        let other = SigningKey::derive_owner(&super::super::X25519Identity::generate());
        assert_ne!(a.public(), other.public());
    }

    #[test]
    fn a_small_order_public_key_verifies_nothing() {
        // The identity point: with non-strict verification some crafted
        // signatures would verify for every message.
        let mut id = [0u8; 32];
        id[0] = 1;
        let k = PublicKey(id);
        let zero = Signature([0; 64]);
        assert!(!k.verify(b"anything", &zero));
    }
}

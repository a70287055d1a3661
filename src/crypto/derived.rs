//! Objects sealed with a secret derived from the repository owner key
//! (age's scrypt recipient): only owners can make or open them, so they are
//! authenticated as well as secret.

use std::io::{Read, Write};

use age::secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

use super::identity::X25519Identity;
use super::seal::map_decrypt;
use crate::error::CryptoError;

/// scrypt work factor (log2 N) for objects sealed with a secret derived from
/// the repository owner key ([`derived_passphrase`]). That secret carries 256
/// bits of entropy, so stretching it adds nothing; a low factor keeps opening a
/// repository fast.
pub const DERIVED_WORK_FACTOR: u8 = 10;

/// The highest scrypt work factor accepted when opening an object sealed with
/// a derived secret: an object planted with a huge factor must not stall
/// every owner for hours.
const DERIVED_MAX_WORK_FACTOR: u8 = 14;

/// A high-entropy passphrase derived from an X25519 identity:
/// the hex of `BLAKE3-derive-key(context, identity string)`, where the
/// identity string is its `AGE-SECRET-KEY-1…` line. Only holders of the
/// identity can compute it, so an age file sealed with it (scrypt) is both
/// secret and authenticated as written by one of them. With the tools:
/// `printf %s "$SECRET_KEY_LINE" | b3sum --derive-key CONTEXT --no-names`.
pub fn derived_passphrase(id: &X25519Identity, context: &str) -> SecretString {
    let secret = id.secret_line();
    let key = Zeroizing::new(blake3::derive_key(
        context,
        secret.expose_secret().as_bytes(),
    ));
    SecretString::from(hex::encode(&key[..]))
}

/// Encrypts `plaintext` with a derived passphrase ([`derived_passphrase`])
/// as age's scrypt recipient, work factor [`DERIVED_WORK_FACTOR`].
pub fn seal_derived(plaintext: &[u8], passphrase: &SecretString) -> Result<Vec<u8>, CryptoError> {
    let mut recipient = age::scrypt::Recipient::new(passphrase.clone());
    recipient.set_work_factor(DERIVED_WORK_FACTOR);
    let enc = age::Encryptor::with_recipients(std::iter::once(&recipient as &dyn age::Recipient))
        .map_err(|e| CryptoError::Encrypt(e.to_string()))?;
    let mut out = Vec::with_capacity(plaintext.len() + 256);
    let mut w = enc
        .wrap_output(&mut out)
        .map_err(|e| CryptoError::Encrypt(e.to_string()))?;
    w.write_all(plaintext)
        .and_then(|()| w.finish().map(|_| ()))
        .map_err(|e| CryptoError::Encrypt(e.to_string()))?;
    Ok(out)
}

/// Decrypts an object sealed by [`seal_derived`]. A file not sealed with
/// this passphrase (forged, or not a scrypt file at all) fails with
/// [`CryptoError::NoMatchingKey`] or [`CryptoError::Decrypt`].
pub fn open_derived(
    ciphertext: &[u8],
    passphrase: &SecretString,
    object: &str,
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let dec = age::Decryptor::new(ciphertext).map_err(|e| map_decrypt(e, object))?;
    if !dec.is_scrypt() {
        return Err(CryptoError::NoMatchingKey {
            object: object.to_owned(),
        });
    }
    let mut id = age::scrypt::Identity::new(passphrase.clone());
    id.set_max_work_factor(DERIVED_MAX_WORK_FACTOR);
    let mut r = dec
        .decrypt(std::iter::once(&id as &dyn age::Identity))
        .map_err(|e| map_decrypt(e, object))?;
    let mut out = Zeroizing::new(Vec::new());
    r.read_to_end(&mut out).map_err(|e| CryptoError::Decrypt {
        object: object.to_owned(),
        reason: e.to_string(),
    })?;
    Ok(out)
}

//! Encrypting and decrypting whole objects and streams.

use std::io::{self, Read, Seek, SeekFrom, Write};

use age::secrecy::SecretString;

use super::identity::Identity;
use crate::error::CryptoError;

/// scrypt work factor (log2 N) for owner files wrapped with a person's
/// passphrase: 2^18 costs 256 MiB and about a second, as age recommends.
pub const PASSPHRASE_WORK_FACTOR: u8 = 18;

/// The highest scrypt work factor accepted when unwrapping an owner file
/// with a passphrase (2^20: 1 GiB, a few seconds). Every passphrase open
/// tries every owner file, and anyone who can write to the storage can
/// plant one: age's own limit follows the machine's speed and let a factor
/// of 23 cost every open 8 GiB.
pub const PASSPHRASE_MAX_WORK_FACTOR: u8 = 20;

/// What an object is encrypted to.
pub enum Seal<'a> {
    /// One or more public-key recipients.
    Recipients(Vec<&'a (dyn age::Recipient + Send + Sync)>),
    /// A passphrase (age scrypt); used only to wrap the repository owner key.
    Passphrase(&'a SecretString),
}

fn encryptor(seal: &Seal<'_>) -> Result<age::Encryptor, CryptoError> {
    match seal {
        Seal::Recipients(rs) => {
            age::Encryptor::with_recipients(rs.iter().map(|r| *r as &dyn age::Recipient))
                .map_err(|e| CryptoError::Encrypt(e.to_string()))
        }
        Seal::Passphrase(p) => {
            let mut recipient = age::scrypt::Recipient::new((*p).clone());
            recipient.set_work_factor(PASSPHRASE_WORK_FACTOR);
            age::Encryptor::with_recipients(std::iter::once(&recipient as &dyn age::Recipient))
                .map_err(|e| CryptoError::Encrypt(e.to_string()))
        }
    }
}

/// Encrypts `plaintext` into a complete age file.
pub fn encrypt(plaintext: &[u8], seal: &Seal<'_>) -> Result<Vec<u8>, CryptoError> {
    let mut out = Vec::with_capacity(plaintext.len() + 256);
    let mut w = encrypt_stream(&mut out, seal)?;
    w.write_all(plaintext)
        .map_err(|e| CryptoError::Encrypt(e.to_string()))?;
    w.finish()
        .map_err(|e| CryptoError::Encrypt(e.to_string()))?;
    Ok(out)
}

/// An age stream being written; [`EncryptStream::finish`] completes it.
pub struct EncryptStream<W: Write>(age::stream::StreamWriter<W>);

impl<W: Write> EncryptStream<W> {
    /// Writes the last chunk and returns the underlying writer. A stream
    /// dropped without it is truncated, and fails to decrypt.
    pub fn finish(self) -> io::Result<W> {
        self.0.finish()
    }
}

impl<W: Write> Write for EncryptStream<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// Starts an age stream written to `out`. The caller must call
/// [`EncryptStream::finish`].
pub fn encrypt_stream<W: Write>(out: W, seal: &Seal<'_>) -> Result<EncryptStream<W>, CryptoError> {
    encryptor(seal)?
        .wrap_output(out)
        .map(EncryptStream)
        .map_err(|e| CryptoError::Encrypt(e.to_string()))
}

/// An age stream being read: the plaintext, authenticated chunk by chunk
/// (a damaged or truncated chunk is a read error). Seekable when the
/// ciphertext is.
pub struct DecryptStream<R: Read>(age::stream::StreamReader<R>);

impl<R: Read> Read for DecryptStream<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl<R: Read + Seek> Seek for DecryptStream<R> {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.0.seek(pos)
    }
}

/// The keys a caller may decrypt with.
#[derive(Default)]
pub struct Keyring {
    identities: Vec<Identity>,
    passphrase: Option<SecretString>,
}

impl Keyring {
    /// A keyring holding `identities`.
    pub fn new(identities: Vec<Identity>) -> Self {
        Keyring {
            identities,
            passphrase: None,
        }
    }

    /// A keyring holding only a passphrase (for scrypt-wrapped owner keys).
    pub fn with_passphrase(passphrase: SecretString) -> Self {
        Keyring {
            identities: Vec::new(),
            passphrase: Some(passphrase),
        }
    }

    /// Adds one identity.
    pub fn push(&mut self, identity: Identity) {
        self.identities.push(identity);
    }

    /// Opens an age stream for reading; `object` names it in errors.
    pub fn decrypt_stream<R: Read>(
        &self,
        input: R,
        object: &str,
    ) -> Result<DecryptStream<R>, CryptoError> {
        let dec = age::Decryptor::new(input).map_err(|e| map_decrypt(e, object))?;
        let is_scrypt = dec.is_scrypt();
        let scrypt;
        let ids: Vec<&dyn age::Identity> = if is_scrypt {
            let p = self
                .passphrase
                .as_ref()
                .ok_or_else(|| CryptoError::NoMatchingKey {
                    object: object.to_owned(),
                })?;
            let mut id = age::scrypt::Identity::new(p.clone());
            id.set_max_work_factor(PASSPHRASE_MAX_WORK_FACTOR);
            scrypt = id;
            vec![&scrypt]
        } else {
            self.identities
                .iter()
                .map(|i| i.as_ref() as &dyn age::Identity)
                .collect()
        };
        dec.decrypt(ids.into_iter())
            .map(DecryptStream)
            .map_err(|e| match e {
                // A wrong passphrase fails the scrypt stanza's AEAD: that
                // is the wrong key, not a damaged object.
                age::DecryptError::DecryptionFailed if is_scrypt => CryptoError::NoMatchingKey {
                    object: object.to_owned(),
                },
                other => map_decrypt(other, object),
            })
    }

    /// Decrypts a whole age file held in memory.
    pub fn decrypt(&self, ciphertext: &[u8], object: &str) -> Result<Vec<u8>, CryptoError> {
        let mut r = self.decrypt_stream(ciphertext, object)?;
        let mut out = Vec::with_capacity(ciphertext.len());
        r.read_to_end(&mut out).map_err(|e| CryptoError::Decrypt {
            object: object.to_owned(),
            reason: e.to_string(),
        })?;
        Ok(out)
    }
}

/// Names `object` in a decryption error, telling "not for these keys" apart.
pub(super) fn map_decrypt(e: age::DecryptError, object: &str) -> CryptoError {
    match e {
        age::DecryptError::NoMatchingKeys => CryptoError::NoMatchingKey {
            object: object.to_owned(),
        },
        other => CryptoError::Decrypt {
            object: object.to_owned(),
            reason: other.to_string(),
        },
    }
}

//! The only module that talks to age: recipients, identities, and
//! encryption and decryption of whole objects and of streams.
//!
//! Every vault object is a standard age file, so everything here can be
//! reproduced with the `age` command-line tool.

use std::fs;
use std::io::{self, BufReader, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use age::secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

use crate::error::CryptoError;

/// A parsed age recipient that can be used from several threads.
pub type Recipient = Box<dyn age::Recipient + Send + Sync>;

/// A parsed age identity that can be used from several threads.
pub type Identity = Box<dyn age::Identity + Send + Sync>;

/// Parses one recipient: `age1…` (X25519), `ssh-ed25519 …` or `ssh-rsa …`.
pub fn parse_recipient(text: &str) -> Result<Recipient, CryptoError> {
    let text = text.trim();
    if text.to_ascii_uppercase().contains("SECRET-KEY") || text.contains("PRIVATE KEY") {
        // Never echo what looks like a private key into logs.
        return Err(CryptoError::BadRecipient(
            "<a private key, not a recipient: pass the public key>".into(),
        ));
    }
    if text.starts_with("age1") {
        return age::x25519::Recipient::from_str(text)
            .map(|r| Box::new(r) as Recipient)
            .map_err(|_| CryptoError::BadRecipient(text.to_owned()));
    }
    if text.starts_with("ssh-") {
        return age::ssh::Recipient::from_str(text)
            .map(|r| Box::new(r) as Recipient)
            .map_err(|_| CryptoError::BadRecipient(text.to_owned()));
    }
    Err(CryptoError::BadRecipient(text.to_owned()))
}

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

/// Starts an age stream written to `out`. The caller must call `finish()`.
pub fn encrypt_stream<W: Write>(
    out: W,
    seal: &Seal<'_>,
) -> Result<age::stream::StreamWriter<W>, CryptoError> {
    encryptor(seal)?
        .wrap_output(out)
        .map_err(|e| CryptoError::Encrypt(e.to_string()))
}

/// scrypt work factor (log2 N) for objects sealed with a secret derived from
/// the repository owner key ([`derived_passphrase`]). That secret carries 256
/// bits of entropy, so stretching it adds nothing; a low factor keeps opening a
/// repository fast.
pub const DERIVED_WORK_FACTOR: u8 = 10;

/// scrypt work factor (log2 N) for owner files wrapped with a person's
/// passphrase: 2^18 costs 256 MiB and about a second, as age recommends.
pub const PASSPHRASE_WORK_FACTOR: u8 = 18;

/// The highest scrypt work factor accepted when unwrapping an owner file
/// with a passphrase (2^20: 1 GiB, a few seconds). Every passphrase open
/// tries every owner file, and anyone who can write to the storage can
/// plant one: age's own limit follows the machine's speed and let a factor
/// of 23 cost every open 8 GiB.
pub const PASSPHRASE_MAX_WORK_FACTOR: u8 = 20;

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
pub fn derived_passphrase(id: &age::x25519::Identity, context: &str) -> SecretString {
    let secret = id.to_string();
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
    ) -> Result<age::stream::StreamReader<R>, CryptoError> {
        let dec = age::Decryptor::new(input).map_err(|e| map_decrypt(e, object))?;
        let scrypt;
        let ids: Vec<&dyn age::Identity> = if dec.is_scrypt() {
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
            .map_err(|e| map_decrypt(e, object))
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

fn map_decrypt(e: age::DecryptError, object: &str) -> CryptoError {
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

/// Reads a key file after checking that group and others cannot read it.
pub fn read_key_file(path: &Path) -> Result<Zeroizing<String>, crate::Error> {
    // Open first, then check the open file: no window to swap the file.
    let mut f = fs::File::open(path).map_err(|e| crate::Error::io(path, e))?;
    let meta = f.metadata().map_err(|e| crate::Error::io(path, e))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(CryptoError::InsecureKeyFile {
            path: path.to_owned(),
            mode,
        }
        .into());
    }
    let mut text = Zeroizing::new(String::new());
    f.read_to_string(&mut text)
        .map_err(|e| crate::Error::io(path, e))?;
    Ok(text)
}

/// Writes a new key file with mode 0600; refuses to replace an existing file.
pub fn write_key_file(path: &Path, contents: &str) -> Result<(), crate::Error> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| crate::Error::io(path, e))?;
    f.write_all(contents.as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| crate::Error::io(path, e))
}

/// Parses the identities in an identity file's text: age X25519 lines, or one
/// ssh private key (ed25519 or rsa; an encrypted one asks for its passphrase).
pub fn parse_identities(text: &str, path: &Path) -> Result<Vec<Identity>, CryptoError> {
    let bad = || CryptoError::BadIdentityFile {
        path: path.to_owned(),
    };
    if text.contains("AGE-SECRET-KEY-") {
        let file =
            age::IdentityFile::from_buffer(BufReader::new(text.as_bytes())).map_err(|_| bad())?;
        let ids = file.into_identities().map_err(|_| bad())?;
        if ids.is_empty() {
            return Err(bad());
        }
        return Ok(ids);
    }
    if text.contains("PRIVATE KEY-----") {
        let id = age::ssh::Identity::from_buffer(
            BufReader::new(text.as_bytes()),
            Some(path.display().to_string()),
        )
        .map_err(|_| bad())?;
        if let age::ssh::Identity::Unsupported(_) = id {
            return Err(bad());
        }
        return Ok(vec![Box::new(id.with_callbacks(PassphraseCallbacks))]);
    }
    Err(bad())
}

/// Generates a new X25519 identity; returns (identity file text, recipient).
pub fn generate_x25519() -> (Zeroizing<String>, String) {
    let id = age::x25519::Identity::generate();
    let recipient = id.to_public().to_string();
    let text = Zeroizing::new(format!(
        "# created: {}\n# public key: {recipient}\n{}\n",
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        id.to_string().expose_secret()
    ));
    (text, recipient)
}

/// Parses a single X25519 identity line (`AGE-SECRET-KEY-1…`) out of `text`.
pub fn parse_x25519(text: &str) -> Option<age::x25519::Identity> {
    text.lines()
        .map(str::trim)
        .find(|l| l.starts_with("AGE-SECRET-KEY-"))
        .and_then(|l| age::x25519::Identity::from_str(l).ok())
}

static CONFIGURED_PASSPHRASE_FILE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// Names the passphrase file used when `VAULT_PASSPHRASE_FILE` is not set
/// (the configuration file's `passphrase_file`); set once, at start.
pub fn set_configured_passphrase_file(path: PathBuf) {
    let _ = CONFIGURED_PASSPHRASE_FILE.set(path);
}

/// The passphrase file in effect: `VAULT_PASSPHRASE_FILE`, else the
/// configured one.
pub fn passphrase_file() -> Option<PathBuf> {
    std::env::var_os("VAULT_PASSPHRASE_FILE")
        .map(PathBuf::from)
        .or_else(|| CONFIGURED_PASSPHRASE_FILE.get().cloned())
}

/// Reads a passphrase from the passphrase file ([`passphrase_file`]), or
/// prompts on a terminal.
pub fn obtain_passphrase(prompt: &str) -> Result<SecretString, crate::Error> {
    if let Some(path) = passphrase_file() {
        let text = read_key_file(&path)?;
        let line = text.lines().next().unwrap_or("").to_owned();
        if line.is_empty() {
            return Err(crate::Error::Usage(format!(
                "{}: the passphrase file is empty",
                path.display()
            )));
        }
        return Ok(SecretString::from(line));
    }
    if io::IsTerminal::is_terminal(&io::stdin()) {
        let p = rpassword::prompt_password(prompt).map_err(|e| crate::Error::io("/dev/tty", e))?;
        return Ok(SecretString::from(p));
    }
    Err(CryptoError::NoPassphrase.into())
}

/// age callbacks that supply passphrases for encrypted ssh keys.
#[derive(Clone, Copy)]
struct PassphraseCallbacks;

impl age::Callbacks for PassphraseCallbacks {
    fn display_message(&self, message: &str) {
        tracing::info!("{message}");
    }
    fn confirm(&self, _: &str, _: &str, _: Option<&str>) -> Option<bool> {
        None
    }
    fn request_public_string(&self, _: &str) -> Option<String> {
        None
    }
    fn request_passphrase(&self, description: &str) -> Option<SecretString> {
        obtain_passphrase(&format!("{description}: ")).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn x25519_pair() -> (age::x25519::Identity, Recipient) {
        let id = age::x25519::Identity::generate();
        let r = Box::new(id.to_public()) as Recipient;
        (id, r)
    }

    #[test]
    fn round_trip_to_two_recipients() {
        let (a, ra) = x25519_pair();
        let (b, rb) = x25519_pair();
        let ct = encrypt(
            b"secret data",
            &Seal::Recipients(vec![ra.as_ref(), rb.as_ref()]),
        )
        .unwrap();
        for id in [a, b] {
            let ring = Keyring::new(vec![Box::new(id)]);
            assert_eq!(ring.decrypt(&ct, "obj").unwrap(), b"secret data");
        }
    }

    #[test]
    fn wrong_key_is_named() {
        let (_, ra) = x25519_pair();
        let (other, _) = x25519_pair();
        let ct = encrypt(b"x", &Seal::Recipients(vec![ra.as_ref()])).unwrap();
        let err = Keyring::new(vec![Box::new(other)])
            .decrypt(&ct, "data/ab/cd")
            .unwrap_err();
        assert!(matches!(err, CryptoError::NoMatchingKey { .. }), "{err}");
        assert!(err.to_string().contains("data/ab/cd"));
    }

    #[test]
    fn stream_fails_to_decrypt_truncated_file() {
        let (a, ra) = x25519_pair();
        let data = vec![42u8; 200_000];
        let ct = encrypt(&data, &Seal::Recipients(vec![ra.as_ref()])).unwrap();
        let ring = Keyring::new(vec![Box::new(a)]);
        let err = ring.decrypt(&ct[..ct.len() - 100], "pack").unwrap_err();
        assert!(matches!(err, CryptoError::Decrypt { .. }), "{err}");
    }

    #[test]
    fn parses_recipient_kinds_and_rejects_garbage() {
        let (_, r) = x25519_pair();
        drop(r);
        let id = age::x25519::Identity::generate();
        assert!(parse_recipient(&id.to_public().to_string()).is_ok());
        assert!(
            parse_recipient(
                "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHsKLqeplhpW+uObz5dvMgjz1OxfM/XXUB+VHtZ6isGN"
            )
            .is_ok()
        );
        assert!(parse_recipient("age1nope").is_err());
        assert!(parse_recipient("hello").is_err());
    }

    #[test]
    fn derived_seal_round_trips_and_needs_the_identity() {
        let id = age::x25519::Identity::generate();
        let p = derived_passphrase(&id, "vault test context");
        assert_eq!(p.expose_secret().len(), 64);
        let ct = seal_derived(b"generation", &p).unwrap();
        assert_eq!(&open_derived(&ct, &p, "obj").unwrap()[..], b"generation");
        let other = derived_passphrase(&age::x25519::Identity::generate(), "vault test context");
        assert!(open_derived(&ct, &other, "obj").is_err());
        let (_, r) = x25519_pair();
        let public = encrypt(b"x", &Seal::Recipients(vec![r.as_ref()])).unwrap();
        assert!(matches!(
            open_derived(&public, &p, "obj"),
            Err(CryptoError::NoMatchingKey { .. })
        ));
    }
}

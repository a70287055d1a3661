//! Recipients and identities: parsing them, and vault's own X25519 keys.

use std::io::BufReader;
use std::path::Path;
use std::str::FromStr;

use age::secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

use super::passphrase::{NoPassphrase, PassphraseSource};
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

/// An age X25519 identity: the repository owner key and the writer keys.
#[derive(Clone)]
pub struct X25519Identity(age::x25519::Identity);

impl X25519Identity {
    /// A new random identity.
    pub fn generate() -> Self {
        X25519Identity(age::x25519::Identity::generate())
    }

    /// Parses one `AGE-SECRET-KEY-1…` line.
    pub fn from_line(line: &str) -> Option<Self> {
        age::x25519::Identity::from_str(line.trim())
            .ok()
            .map(X25519Identity)
    }

    /// Its public recipient, `age1…`.
    pub fn recipient(&self) -> String {
        self.0.to_public().to_string()
    }

    /// Its secret line, `AGE-SECRET-KEY-1…` (for key files only).
    pub fn secret_line(&self) -> SecretString {
        self.0.to_string()
    }

    /// Its public half as a recipient to encrypt to.
    pub fn to_recipient(&self) -> Recipient {
        Box::new(self.0.to_public())
    }

    /// A copy usable in a [`super::Keyring`].
    pub fn to_identity(&self) -> Identity {
        Box::new(self.0.clone())
    }
}

/// Generates a new X25519 identity; returns (identity file text, recipient).
pub fn generate_x25519() -> (Zeroizing<String>, String) {
    let id = X25519Identity::generate();
    let recipient = id.recipient();
    let text = Zeroizing::new(format!(
        "# created: {}\n# public key: {recipient}\n{}\n",
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        id.secret_line().expose_secret()
    ));
    (text, recipient)
}

/// The first X25519 identity line (`AGE-SECRET-KEY-1…`) in `text`, parsed.
pub fn parse_x25519(text: &str) -> Option<X25519Identity> {
    text.lines()
        .map(str::trim)
        .find(|l| l.starts_with("AGE-SECRET-KEY-"))
        .and_then(X25519Identity::from_line)
}

/// Parses the identities in an identity file's text: age X25519 lines, or
/// one unencrypted ssh private key (ed25519 or rsa). An encrypted ssh key is
/// refused; [`parse_identities_with`] asks a passphrase source for it.
pub fn parse_identities(text: &str, path: &Path) -> Result<Vec<Identity>, crate::Error> {
    parse_identities_with(text, path, &NoPassphrase)
}

/// Like [`parse_identities`]; an encrypted ssh key is opened with the
/// passphrase `passphrases` gives, once, here (never later, mid-operation).
pub fn parse_identities_with(
    text: &str,
    path: &Path,
    passphrases: &dyn PassphraseSource,
) -> Result<Vec<Identity>, crate::Error> {
    let bad = || CryptoError::BadIdentityFile {
        path: path.to_owned(),
    };
    if text.contains("AGE-SECRET-KEY-") {
        let file =
            age::IdentityFile::from_buffer(BufReader::new(text.as_bytes())).map_err(|_| bad())?;
        let ids = file.into_identities().map_err(|_| bad())?;
        if ids.is_empty() {
            return Err(bad().into());
        }
        return Ok(ids);
    }
    if text.contains("PRIVATE KEY-----") {
        let id = age::ssh::Identity::from_buffer(
            BufReader::new(text.as_bytes()),
            Some(path.display().to_string()),
        )
        .map_err(|_| bad())?;
        let id = match id {
            age::ssh::Identity::Unsupported(_) => return Err(bad().into()),
            age::ssh::Identity::Unencrypted(key) => age::ssh::Identity::Unencrypted(key),
            age::ssh::Identity::Encrypted(key) => {
                let purpose = format!("the encrypted ssh key {}", path.display());
                let passphrase = passphrases.passphrase(&purpose)?;
                let key = key
                    .decrypt(passphrase)
                    .map_err(|_| CryptoError::WrongKeyPassphrase {
                        path: path.to_owned(),
                    })?;
                age::ssh::Identity::Unencrypted(key)
            }
        };
        return Ok(vec![Box::new(id)]);
    }
    Err(bad().into())
}

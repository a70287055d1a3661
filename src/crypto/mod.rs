//! The only module that talks to age: recipients, identities, and
//! encryption and decryption of whole objects and of streams.
//!
//! Every vault object is a standard age file, so everything here can be
//! reproduced with the `age` command-line tool. The rest of vault names no
//! age type: it holds [`X25519Identity`], [`Recipient`], [`Identity`],
//! [`Keyring`], [`EncryptStream`] and [`DecryptStream`] from here.
//!
//! Passphrases come from a [`PassphraseSource`] the caller supplies; this
//! module never prompts and never reads the environment.

mod derived;

mod identity;
mod keyfile;
mod passphrase;
mod seal;
pub mod sign;

pub use crate::error::CryptoError;
pub use age::secrecy::{ExposeSecret, SecretString};
pub use derived::{DERIVED_WORK_FACTOR, derived_passphrase, open_derived, seal_derived};
pub use identity::{
    Identity, Recipient, X25519Identity, generate_x25519, parse_identities, parse_identities_with,
    parse_recipient, parse_x25519,
};
pub use keyfile::{read_key_file, write_key_file};
pub use passphrase::{GivenPassphrase, NoPassphrase, PassphraseFile, PassphraseSource};
pub use seal::{DecryptStream, EncryptStream, Keyring, Seal, encrypt, encrypt_stream};

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn x25519_pair() -> (X25519Identity, Recipient) {
        let id = X25519Identity::generate();
        let r = id.to_recipient();
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
            let ring = Keyring::new(vec![id.to_identity()]);
            assert_eq!(ring.decrypt(&ct, "obj").unwrap(), b"secret data");
        }
    }

    #[test]
    fn wrong_key_is_named() {
        let (_, ra) = x25519_pair();
        let (other, _) = x25519_pair();
        let ct = encrypt(b"x", &Seal::Recipients(vec![ra.as_ref()])).unwrap();
        let err = Keyring::new(vec![other.to_identity()])
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
        let ring = Keyring::new(vec![a.to_identity()]);
        let err = ring.decrypt(&ct[..ct.len() - 100], "pack").unwrap_err();
        assert!(matches!(err, CryptoError::Decrypt { .. }), "{err}");
    }

    #[test]
    fn decrypt_stream_seeks_within_the_plaintext() {
        use std::io::{Read, Seek, SeekFrom};
        let (a, ra) = x25519_pair();
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let ct = encrypt(&data, &Seal::Recipients(vec![ra.as_ref()])).unwrap();
        let ring = Keyring::new(vec![a.to_identity()]);
        let mut s = ring
            .decrypt_stream(std::io::Cursor::new(ct), "pack")
            .unwrap();
        let mut buf = [0u8; 16];
        s.seek(SeekFrom::Start(200_000)).unwrap();
        s.read_exact(&mut buf).unwrap();
        assert_eq!(buf, data[200_000..200_016]);
        s.seek(SeekFrom::Start(5)).unwrap();
        s.read_exact(&mut buf).unwrap();
        assert_eq!(buf, data[5..21]);
    }

    #[test]
    fn parses_recipient_kinds_and_rejects_garbage() {
        let id = X25519Identity::generate();
        assert!(parse_recipient(&id.recipient()).is_ok());
        assert!(
            parse_recipient(
                "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHsKLqeplhpW+uObz5dvMgjz1OxfM/XXUB+VHtZ6isGN"
            )
            .is_ok()
        );
        assert!(parse_recipient("age1nope").is_err());
        assert!(parse_recipient("hello").is_err());
        let secret = id.secret_line();
        let err = parse_recipient(secret.expose_secret()).err().unwrap();
        assert!(!err.to_string().contains(secret.expose_secret()), "{err}");
    }

    #[test]
    fn x25519_identity_lines_round_trip() {
        let id = X25519Identity::generate();
        let text = format!("# comment\n{}\n", id.secret_line().expose_secret());
        let parsed = parse_x25519(&text).expect("finds the secret line");
        assert_eq!(parsed.recipient(), id.recipient());
        assert!(X25519Identity::from_line("AGE-SECRET-KEY-1NOTAKEY").is_none());
        assert!(parse_x25519("no key here").is_none());
    }

    #[test]
    fn derived_seal_round_trips_and_needs_the_identity() {
        let id = X25519Identity::generate();
        let p = derived_passphrase(&id, "vault test context");
        assert_eq!(p.expose_secret().len(), 64);
        let ct = seal_derived(b"generation", &p).unwrap();
        assert_eq!(&open_derived(&ct, &p, "obj").unwrap()[..], b"generation");
        let other = derived_passphrase(&X25519Identity::generate(), "vault test context");
        assert!(open_derived(&ct, &other, "obj").is_err());
        let (_, r) = x25519_pair();
        let public = encrypt(b"x", &Seal::Recipients(vec![r.as_ref()])).unwrap();
        assert!(matches!(
            open_derived(&public, &p, "obj"),
            Err(CryptoError::NoMatchingKey { .. })
        ));
    }

    /// An ssh-ed25519 key pair made by ssh-keygen, encrypted with `passphrase`.
    fn ssh_keygen(dir: &std::path::Path, passphrase: &str) -> (std::path::PathBuf, String) {
        let key = dir.join("id_ed25519");
        let st = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", passphrase, "-f"])
            .arg(&key)
            .status()
            .expect("ssh-keygen (openssh-client) is installed");
        assert!(st.success());
        let public = std::fs::read_to_string(dir.join("id_ed25519.pub")).unwrap();
        let public = public.split_whitespace().take(2).collect::<Vec<_>>();
        (key, public.join(" "))
    }

    #[test]
    fn an_encrypted_ssh_key_opens_with_the_passphrase_its_source_gives() {
        let dir = tempfile::tempdir().unwrap();
        let (key, public) = ssh_keygen(dir.path(), "open sesame");
        let text = std::fs::read_to_string(&key).unwrap();
        let r = parse_recipient(&public).unwrap();
        let ct = encrypt(b"owner key", &Seal::Recipients(vec![r.as_ref()])).unwrap();

        let given = GivenPassphrase(SecretString::from("open sesame".to_owned()));
        let ids = parse_identities_with(&text, &key, &given).unwrap();
        assert_eq!(Keyring::new(ids).decrypt(&ct, "o").unwrap(), b"owner key");

        // From a passphrase file, checked like a key file.
        let file = dir.path().join("pass");
        std::fs::write(&file, "open sesame\n").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let ids = parse_identities_with(&text, &key, &PassphraseFile(file.clone())).unwrap();
        assert_eq!(Keyring::new(ids).decrypt(&ct, "o").unwrap(), b"owner key");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            parse_identities_with(&text, &key, &PassphraseFile(file)),
            Err(crate::Error::Crypto(CryptoError::InsecureKeyFile { .. }))
        ));
    }

    #[test]
    fn an_encrypted_ssh_key_without_a_passphrase_or_with_a_wrong_one_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let (key, _) = ssh_keygen(dir.path(), "open sesame");
        let text = std::fs::read_to_string(&key).unwrap();
        let err = parse_identities(&text, &key).err().unwrap();
        assert!(
            matches!(&err, crate::Error::Crypto(CryptoError::NoPassphrase { purpose })
                if purpose.contains("id_ed25519")),
            "{err}"
        );
        let wrong = GivenPassphrase(SecretString::from("guess".to_owned()));
        let err = parse_identities_with(&text, &key, &wrong).err().unwrap();
        assert!(
            matches!(
                err,
                crate::Error::Crypto(CryptoError::WrongKeyPassphrase { .. })
            ),
            "{err}"
        );
    }
}

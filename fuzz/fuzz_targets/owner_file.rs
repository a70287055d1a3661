//! Owner files: `keys/owners/<name>.age` as age ciphertext (header and
//! payload parsing with a fixed identity), the owner key text it wraps (the
//! identity line and the pinned writer recipient), a user's identity file,
//! and `keys/writers/<n>.age` (scrypt with a derived passphrase).
#![no_main]

use std::sync::OnceLock;

use age::secrecy::SecretString;
use libfuzzer_sys::fuzz_target;
use vault::crypto::{Keyring, open_derived, parse_identities, parse_x25519};
use vault::repo::keys::{WriterKey, check_writer_pin};

struct Fixed {
    owner: age::x25519::Identity,
    writer: WriterKey,
    passphrase: SecretString,
}

fn fixed() -> &'static Fixed {
    static F: OnceLock<Fixed> = OnceLock::new();
    F.get_or_init(|| {
        let owner = age::x25519::Identity::generate();
        Fixed {
            writer: WriterKey::generate(
                "00112233445566778899aabbccddeeff",
                &owner.to_public().to_string(),
            ),
            passphrase: SecretString::from("00".repeat(32)),
            owner,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let f = fixed();
    let ring = Keyring::new(vec![Box::new(f.owner.clone())]);
    let _ = ring.decrypt(data, "keys/owners/fuzz.age");
    let _ = open_derived(data, &f.passphrase, "keys/writers/1.age");
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(id) = parse_x25519(text) {
        assert!(text.contains("AGE-SECRET-KEY-"));
        let _ = id.recipient();
    }
    if check_writer_pin(text, &f.writer).is_ok() {
        assert!(text.contains(&f.writer.recipient()));
    }
    // An ssh key's passphrase is asked for only when it decrypts, never here.
    let _ = parse_identities(text, std::path::Path::new("fuzz.key"));
});

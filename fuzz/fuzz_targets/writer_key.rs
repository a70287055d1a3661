//! The writer key file (and the plaintext of `keys/writer.age` and
//! `keys/writers/<n>.age`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use vault::repo::keys::WriterKey;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Some(w) = WriterKey::parse(text) else {
        return;
    };
    // The text it writes parses back to the same key.
    let again = WriterKey::parse(&w.to_text()).expect("own text parses");
    assert_eq!(again.recipient(), w.recipient());
    assert_eq!(again.generation(), w.generation());
    assert_eq!(again.repo_id(), w.repo_id());
    assert_eq!(*again.to_text(), *w.to_text());
});

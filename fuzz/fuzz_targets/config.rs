//! The plaintext `config` object: every field range-checked.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(c) = vault::repo::parse_config(data) else {
        return;
    };
    // Every format this vault reads (format 1 repositories stay readable),
    // format 2 on with its signing key and signature.
    assert!((vault::format::config::OLDEST_FORMAT_VERSION..=vault::format::config::FORMAT_VERSION)
        .contains(&c.version));
    assert_eq!(c.version >= 2, c.owner_signing_key.is_some());
    assert!((1 << 20..=1 << 30).contains(&c.pack_size));
    assert!((1..=22).contains(&c.compression_level));
    assert!(c.chunker.validate().is_ok());
    let json = serde_json::to_vec_pretty(&c).expect("serializes");
    vault::repo::parse_config(&json).expect("what parses round-trips");
});
